"""Raw data in, validated and split data out: the `sample` and `prepare` stages.

`prepare` reads `data.path` plus `data.production` (rows `collect` took from production,
each with its `prediction_id`). The split is a hash of each row's values, salted with the
seed: a row lands on the same side whatever else the data holds, so rows in test stay in
test as data grows, a test row never moves into training, and a production row equal to
a row of `data.path` lands beside it.

When params.yaml names an entity key and an event timestamp (`data.entity_key`,
`data.timestamp`), those columns identify a row and its time: they are checked, kept in
the splits and left out of the model's features.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd

from .config import Params, Paths, Task
from .errors import DataError
from .ids import ID_FIELD, RESERVED_NAMES
from .schema import FeatureSchema, infer_schema, is_numeric, read_csv

# The sample each task trains on when params.yaml names no CSV of yours.
SAMPLE_DATASETS: dict[str, str] = {
    "classification": "load_breast_cancer",
    "regression": "load_diabetes",
}


# The sample's event times: row i happened SAMPLE_START + i hours (fixed, so reruns match).
SAMPLE_START = "2025-01-01T00:00:00Z"


def sample_entity_ids(rows: int) -> list[str]:
    """The sample's entity ids: row i (scikit-learn's order) is entity f"{i + 1:06d}"."""
    return [f"{index + 1:06d}" for index in range(rows)]


def write_sample(
    task: Task,
    path: Path = Paths.sample,
    entity_key: str | None = None,
    timestamp: str | None = None,
) -> pd.DataFrame:
    """Write the dataset scikit-learn ships for `task` as a CSV with a `target` column,
    led by an entity id and an event timestamp column when their names are given."""
    from sklearn import datasets

    frame: pd.DataFrame = getattr(datasets, SAMPLE_DATASETS[task])(as_frame=True).frame
    # "mean radius" -> "mean_radius": names that work as JSON keys and Python identifiers
    frame.columns = [re.sub(r"\W+", "_", str(name)).strip("_").lower() for name in frame.columns]
    if timestamp:
        times = pd.Timestamp(SAMPLE_START) + pd.to_timedelta(range(len(frame)), unit="h")
        frame.insert(0, timestamp, times.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if entity_key:
        frame.insert(0, entity_key, sample_entity_ids(len(frame)))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def read_raw(params: Params) -> pd.DataFrame:
    path = params.data.path
    if not path.is_file():
        raise DataError(f"{path}: no such file — put your CSV there or fix data.path")
    return read_csv(path, categorical=[*params.data.categorical, *identity_columns(params)])


def identity_columns(params: Params) -> list[str]:
    """The entity key and the event timestamp: columns of the data, not features."""
    return [name for name in (params.data.entity_key, params.data.timestamp) if name]


def read_production(params: Params, columns: list[str]) -> pd.DataFrame | None:
    """The collected production rows (None when there are none yet), ids kept."""
    path = params.data.production
    if not path.is_file() or path.stat().st_size == 0:
        return None
    text = [*params.data.categorical, *identity_columns(params), ID_FIELD]
    frame = read_csv(path, categorical=text)
    expected = [ID_FIELD, *columns]
    if list(frame.columns) != expected:
        missing = [name for name in expected if name not in frame.columns]
        extra = [name for name in frame.columns if name not in expected]
        raise DataError(
            f"{path}: columns differ from {params.data.path} plus {ID_FIELD!r} "
            f"(missing {missing}, unexpected {extra}); run `collect` again"
        )
    if frame[ID_FIELD].isna().any() or frame[ID_FIELD].duplicated().any():
        raise DataError(f"{path}: column {ID_FIELD!r} has empty or repeated ids")
    return frame


def row_keys(frame: pd.DataFrame) -> list[str]:
    """A key per row that depends on its values only."""
    return ["\x1f".join(map(repr, row)) for row in frame.itertuples(index=False, name=None)]


def in_test(keys: list[str], params: Params) -> list[bool]:
    """Whether each key's row belongs to the test split: its salted hash, as a fraction."""
    salt = str(params.seed).encode()
    fractions = (
        int.from_bytes(hashlib.blake2b(key.encode(), key=salt, digest_size=8).digest(), "big")
        / 2**64
        for key in keys
    )
    return [fraction < params.data.test_size for fraction in fractions]


def expectation_problems(frame: pd.DataFrame, params: Params) -> list[str]:
    """Everything wrong with the raw data, each message naming the column concerned."""
    target = params.data.target
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:20]))
        return [f"target column {target!r} not found (data.target); columns are: {columns}"]
    problems = []
    if len(frame) < params.data.min_rows:
        problems.append(f"only {len(frame)} rows; data.min_rows asks for {params.data.min_rows}")
    if len(frame.columns) - len(identity_columns(params)) < 2:
        problems.append(f"no feature columns besides the target {target!r}")
    for name in params.data.categorical:
        if name not in frame.columns:
            problems.append(f"column {name!r} is listed in data.categorical but not in the data")
    for name in RESERVED_NAMES:
        if name in frame.columns:
            problems.append(
                f"column {name!r} is a reserved name (the id a client gives a prediction); "
                "rename it in the CSV"
            )
    problems += identity_problems(frame, params)
    for name in frame.columns:
        if frame[name].isna().all():
            problems.append(f"column {name!r} is empty in every row")
    labels = frame[target]
    if labels.isna().any() and not labels.isna().all():
        problems.append(f"target column {target!r} has {int(labels.isna().sum())} missing values")
    labels = labels.dropna()
    if labels.empty:
        return problems
    if params.task == "classification":
        counts = labels.value_counts()
        if len(counts) < 2:
            problems.append(
                f"target column {target!r} has one class ({counts.index[0]!r}); "
                "classification needs at least two"
            )
        elif counts.min() < 2:
            rare = list(counts[counts < 2].index[:5])
            problems.append(f"target column {target!r}: classes {rare} have a single row")
    elif not is_numeric(labels):
        problems.append(f"target column {target!r} is not numeric; regression needs numbers")
    elif labels.nunique() < 2:
        problems.append(f"target column {target!r} is constant; there is nothing to learn")
    return problems


def identity_problems(frame: pd.DataFrame, params: Params) -> list[str]:
    """The entity key and event timestamp: present, ids set, times parseable, pairs unique."""
    key, timestamp = params.data.entity_key, params.data.timestamp
    problems = []
    for name, param in ((key, "data.entity_key"), (timestamp, "data.timestamp")):
        if name and name not in frame.columns:
            problems.append(f"column {name!r} ({param}) not found")
    if key and key in frame.columns and frame[key].isna().any():
        empty = int(frame[key].isna().sum())
        problems.append(f"column {key!r} (data.entity_key) has {empty} empty id(s)")
    if timestamp and timestamp in frame.columns:
        parsed = event_times(frame[timestamp])
        bad = frame[timestamp][parsed.isna()]
        if not bad.empty:
            problems.append(
                f"column {timestamp!r} (data.timestamp) has {len(bad)} value(s) that are not "
                f"times, first {bad.iloc[0]!r}; write ISO 8601, e.g. 2025-01-31T12:00:00Z"
            )
        elif key and key in frame.columns:
            repeated = frame.duplicated(subset=[key, timestamp])
            if repeated.any():
                first = frame[repeated].iloc[0]
                problems.append(
                    f"columns {key!r}, {timestamp!r}: {int(repeated.sum())} repeated pair(s), "
                    f"first ({first[key]!r}, {first[timestamp]!r}); one row per entity and time"
                )
    return problems


def event_times(column: pd.Series) -> pd.Series:
    """Times as UTC timestamps (naive ones are taken as UTC); NaT where unparseable."""
    return pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")


def split(
    frame: pd.DataFrame, params: Params, keys: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test rows by the salted hash of each row's values (or of `keys`)."""
    test = in_test(row_keys(frame) if keys is None else keys, params)
    chosen = pd.Series(test, index=frame.index)
    return frame[~chosen], frame[chosen]


def prepare(params: Params) -> FeatureSchema:
    """Read, check, describe and split the raw data; write the `prepare` stage's outputs."""
    raw = read_raw(params)
    production = read_production(params, [str(name) for name in raw.columns])
    # Keys from each file as read: concatenating may retype a column (ints to floats).
    keys = row_keys(raw)
    frame = raw
    if production is not None:
        rows = production.drop(columns=[ID_FIELD])
        keys += row_keys(rows)
        frame = pd.concat([raw, rows], ignore_index=True)
    problems = expectation_problems(frame, params)
    if problems:
        sources = f"{params.data.path}" + (
            f" + {params.data.production}" if production is not None else ""
        )
        raise DataError(f"{sources}: " + "; ".join(problems))
    schema = infer_schema(
        frame,
        params.data.target,
        params.task,
        params.data.categorical,
        exclude=identity_columns(params),
    )
    train, test = split(frame, params, keys)
    Paths.train.parent.mkdir(parents=True, exist_ok=True)
    train.to_csv(Paths.train, index=False)
    test.to_csv(Paths.test, index=False)
    schema.save(Paths.schema)
    from_production = pd.Series(range(len(frame))) >= len(raw)
    counts = {
        "train": len(train),
        "test": len(test),
        "production_train": int(from_production[train.index].sum()),
        "production_test": int(from_production[test.index].sum()),
    }
    Paths.split.write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return schema


def read_split(path: Path, schema: FeatureSchema) -> tuple[pd.DataFrame, pd.Series]:
    """A split written by `prepare`, as (raw feature columns, target)."""
    frame = read_csv(path, categorical=schema.categorical)
    return frame[schema.names], frame[schema.target.name]
