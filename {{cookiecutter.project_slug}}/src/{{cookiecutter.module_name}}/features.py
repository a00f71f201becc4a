"""The feature store (Feast): its objects, the training matrix and the online store's load.

`feature_repo/definitions.py` calls `definitions()`, so the FeatureView's fields are the
schema's features (data/processed/schema.json, inferred by `prepare`): one list, no second
one written by hand. `prepare` writes the source, `data/processed/features.parquet`.

- `training_frame`: the train split's labels joined point-in-time to the features (each
  label gets the newest feature values at or before its own time, never later ones).
- `materialize`: the online store filled with each entity's latest values, up to the
  newest time in the source (a fixed end, so the stage gives the same store every run).

Which store: FEATURE_STORE_YAML, feature_repo/feature_store.yaml (SQLite, local files) by
default, feature_repo/feature_store.production.yaml (Redis, S3) in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import Params
from .errors import DataError
from .schema import FeatureSchema

if TYPE_CHECKING:  # Feast and pandas load in seconds: only the commands that read use them
    import pandas as pd
    from feast import FeatureStore

# Feast before 0.40 reports usage statistics unless this is set.
os.environ.setdefault("FEAST_USAGE", "False")
# Importing Feast sets these for its own metrics; they would switch the server's /metrics to
# Prometheus' multi-process files, which this process does not write.
PROMETHEUS_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")

REPO = Path("feature_repo")
# The offline source `prepare` writes beside the splits (dvc.yaml names it).
SOURCE_FILE = Path("data/processed/features.parquet")
FEATURE_VIEW = "model_features"
FEATURE_SERVICE = "model_inputs"
SOURCE = "prepared_rows"
# The source as `prepare` writes it, relative to the repository (Feast resolves it there).
LOCAL_SOURCE = "../data/processed/features.parquet"


@contextmanager
def feast_imports() -> Iterator[None]:
    """Around an import of Feast: the process's Prometheus settings as they were."""
    saved = {name: os.environ.get(name) for name in PROMETHEUS_VARIABLES}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_feast() -> None:
    """Import Feast now: it takes seconds, holding the interpreter's lock."""
    with feast_imports():
        import feast  # noqa: F401


class StoreSettings(BaseSettings):
    """Which feature store: read from the environment, then `.env`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    feature_store_yaml: Path = Field(
        REPO / "feature_store.yaml",
        description="Feast's configuration: feature_store.yaml (SQLite) or "
        "feature_store.production.yaml (Redis, S3)",
    )
    feature_source_url: str = Field(
        LOCAL_SOURCE,
        description="the FileSource's Parquet file: relative to feature_repo/, or s3://…",
    )


def identity(params: Params) -> tuple[str, str]:
    """The entity key and event timestamp columns; a DataError when params.yaml lacks one."""
    key, timestamp = params.data.entity_key, params.data.timestamp
    if not key or not timestamp:
        raise DataError("params.yaml: the feature store needs data.entity_key and data.timestamp")
    return key, timestamp


def write_source(params: Params, schema: FeatureSchema) -> Path:
    """The source from the prepared splits: every row's id, time and features, no label."""
    import pandas as pd

    from .config import Paths
    from .data import event_times
    from .schema import read_csv, to_model_frame

    key, timestamp = identity(params)
    text = [key, timestamp, *schema.categorical]
    rows = pd.concat([read_csv(path, categorical=text) for path in (Paths.train, Paths.test)])
    columns = {key: rows[key].astype(str), timestamp: event_times(rows[timestamp])}
    source = pd.concat([pd.DataFrame(columns), to_model_frame(rows, schema)], axis=1)
    source.sort_values([timestamp, key]).to_parquet(SOURCE_FILE, index=False)
    return SOURCE_FILE


def definitions(params: Params, schema: FeatureSchema, source_path: str) -> list[Any]:
    """The entity, the source, the FeatureView of the schema's features, the FeatureService."""
    with feast_imports():
        from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
        from feast.types import Float64, String

    key, timestamp = identity(params)
    entity = Entity(name=key, join_keys=[key], value_type=ValueType.STRING)
    source = FileSource(name=SOURCE, path=source_path, timestamp_field=timestamp)
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=[entity],
        ttl=timedelta(0),  # 0: values never expire; the newest one always answers
        schema=[
            Field(name=feature.name, dtype=Float64 if feature.kind == "numeric" else String)
            for feature in schema.features
        ],
        source=source,
        online=True,
    )
    service = FeatureService(name=FEATURE_SERVICE, features=[view])
    return [entity, source, view, service]


def open_store(settings: StoreSettings | None = None) -> FeatureStore:
    with feast_imports():
        from feast import FeatureStore

    settings = settings or StoreSettings()
    if not settings.feature_store_yaml.is_file():
        raise DataError(f"{settings.feature_store_yaml}: no such file (FEATURE_STORE_YAML)")
    return FeatureStore(repo_path=str(REPO), fs_yaml_file=settings.feature_store_yaml)


def training_frame(
    store: FeatureStore, split: Path, params: Params, schema: FeatureSchema
) -> tuple[pd.DataFrame, pd.Series]:
    """(features, labels) for the rows of `split`: each label (an entity id and a time)
    joined point-in-time to the store's features; the split's own feature values unused."""
    import pandas as pd

    from .data import event_times
    from .schema import read_csv

    key, timestamp = identity(params)
    rows = read_csv(split, categorical=[key, timestamp])
    target = schema.target.name
    order = "__row"  # Feast may return the rows in another order
    entities = pd.DataFrame(
        {
            key: rows[key].astype(str).to_numpy(),
            timestamp: event_times(rows[timestamp]).to_numpy(),
            target: rows[target].to_numpy(),
            order: range(len(rows)),
        }
    )
    joined = store.get_historical_features(
        entity_df=entities, features=store.get_feature_service(FEATURE_SERVICE)
    ).to_df()
    # Feast may reorder the rows, and leaves out a label that no value precedes: such a
    # row comes back with its features missing.
    joined = joined.set_index(order).reindex(range(len(rows)))
    labels = pd.Series(rows[target].to_numpy(), name=target)
    return joined[schema.names].reset_index(drop=True), labels


def source_location(settings: StoreSettings) -> str:
    """FEATURE_SOURCE_URL as pyarrow opens it: s3://… as is, a path relative to feature_repo/."""
    url = settings.feature_source_url
    if "://" in url or Path(url).is_absolute():
        return url
    return str((REPO / url).resolve())


def publish_source(settings: StoreSettings) -> dict[str, Any]:
    """Copy the source `prepare` wrote to FEATURE_SOURCE_URL (s3://…), where the production
    store's `feast apply` and `materialize` read it (S3 credentials and AWS_ENDPOINT_URL
    from the environment)."""
    import pyarrow.fs as pafs

    if not SOURCE_FILE.is_file():
        raise DataError(f"{SOURCE_FILE}: no such file; run `dvc repro prepare` first")
    target = source_location(settings)
    local = SOURCE_FILE.resolve()
    answer = {"source": str(SOURCE_FILE), "url": settings.feature_source_url}
    if target == str(local):
        return {**answer, "copied": 0}  # the local store reads the file where it is
    try:
        filesystem, path = pafs.FileSystem.from_uri(target)
        if isinstance(filesystem, pafs.LocalFileSystem):  # S3 has no folders to make
            filesystem.create_dir(path.rpartition("/")[0], recursive=True)
        pafs.copy_files(str(local), path, destination_filesystem=filesystem)
        copied = filesystem.get_file_info(path).size
    except (OSError, ValueError) as error:
        url = settings.feature_source_url
        raise DataError(f"{url}: cannot write the feature source: {error}") from error
    return {**answer, "copied": copied}


def source_times(params: Params, settings: StoreSettings) -> pd.Series:
    """The event times in the FeatureView's source, wherever it is (a path or s3://)."""
    import pyarrow.parquet as pq

    _, timestamp = identity(params)
    path = source_location(settings)
    try:
        table = pq.read_table(path, columns=[timestamp])
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: cannot read the feature source: {error}") from error
    return table.column(timestamp).to_pandas()


def materialize(params: Params, settings: StoreSettings) -> dict[str, Any]:
    """Load the online store with every row from the source's oldest time to its newest."""
    with feast_imports():
        from feast import FeatureStore
        from feast.infra.online_stores.helpers import get_online_store_from_config
        from feast.repo_config import load_repo_config

    config = load_repo_config(REPO, settings.feature_store_yaml)
    registry = str(config.registry.path)
    with tempfile.TemporaryDirectory() as scratch:
        config = load_repo_config(REPO, settings.feature_store_yaml)
        if "://" not in registry:
            # A registry file is the `features` stage's output, which DVC checks, and Feast
            # records every load in it: the load uses a copy.
            copy = Path(scratch) / "registry.db"
            shutil.copyfile(REPO / registry, copy)
            config.registry_config = str(copy)
        store = FeatureStore(repo_path=str(REPO), config=config)
        times = source_times(params, settings)
        if times.empty:
            raise DataError(f"{settings.feature_source_url}: the feature source has no rows")
        start, end = times.min().to_pydatetime(), times.max().to_pydatetime()
        view = store.get_feature_view(FEATURE_VIEW)
        entities = [store.get_entity(name) for name in view.entities]
        # The tables `feast apply` creates: this stage may run on a store apply did not touch.
        online = get_online_store_from_config(store.config.online_store)
        online.update(store.config, [], [view], [], entities, partial=True)
        # Feast prints its progress: to stderr, so that the command's output is its JSON.
        with contextlib.redirect_stdout(sys.stderr):
            store.materialize(start_date=start, end_date=end + timedelta(microseconds=1))
    return {
        "feature_view": FEATURE_VIEW,
        "rows": len(times),
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
