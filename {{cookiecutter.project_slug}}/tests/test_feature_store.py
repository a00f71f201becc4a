"""The feature store, for real: Feast applied, materialized, read point-in-time and online.

One folder holds a prepared dataset with entity ids and event times, the registry `feast
apply` writes from it and the SQLite online store `materialize` loads. Entity 000001 has
a second row, written a year after its first: it must never reach the first row's label.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.config import (
    Params,
    Paths,
    load_params,
)
from {{ cookiecutter.module_name }}.data import (
    event_times,
    expectation_problems,
    prepare,
)
from {{ cookiecutter.module_name }}.errors import DataError
from {{ cookiecutter.module_name }}.features import (
    SOURCE_FILE,
    StoreSettings,
    open_store,
    publish_source,
    training_frame,
)
from {{ cookiecutter.module_name }}.schema import (
    FeatureSchema,
    read_csv,
    to_model_frame,
)
from {{ cookiecutter.module_name }}.serving.online_features import OnlineFeatures
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)

from conftest import wait_ready
from feature_store_support import PROJECT_ROOT, build_store, with_identity

LATER = pd.Timedelta(days=365)
LATE_NOISE = 99.0


def store_params() -> Params:
    params = load_params(PROJECT_ROOT / "params.yaml")
    params.task = "classification"
    params.data.path = Path("rows.csv")
    params.data.target = "label"
    params.evaluate.gate = {}
    params.registry.primary_metric = "roc_auc"
    return params


def rows(make_frame: Callable[..., pd.DataFrame], params: Params) -> pd.DataFrame:
    """200 labelled rows with ids and times, entity 000001 seen again a year later."""
    frame = with_identity(make_frame(rows=200), params)
    later = frame.iloc[[0]].copy()
    timestamp = str(params.data.timestamp)
    later[timestamp] = (event_times(later[timestamp]) + LATER).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    later["noise"] = LATE_NOISE
    return pd.concat([frame, later], ignore_index=True)


@pytest.fixture(scope="module")
def params() -> Params:
    return store_params()


@pytest.fixture(scope="module")
def store_root(
    tmp_path_factory: pytest.TempPathFactory,
    make_frame: Callable[..., pd.DataFrame],
    params: Params,
) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("feature-store")
    before = Path.cwd()
    os.chdir(root)
    try:
        rows(make_frame, params).to_csv("rows.csv", index=False)
        prepare(params)
        build_store(root, params)
        yield root
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def schema(store_root: Path) -> FeatureSchema:
    return FeatureSchema.load(store_root / Paths.schema)


def test_ids_and_times_are_not_features(schema: FeatureSchema, params: Params) -> None:
    assert schema.names == ["size", "colour", "noise"]
    assert params.data.entity_key not in schema.names
    assert params.data.timestamp not in schema.names


def test_the_source_holds_ids_times_and_features_not_labels(
    store_root: Path, params: Params
) -> None:
    source = pd.read_parquet(store_root / SOURCE_FILE)
    assert list(source.columns) == [
        params.data.entity_key,
        params.data.timestamp,
        "size",
        "colour",
        "noise",
    ]
    assert len(source) == 201
    assert str(source[params.data.timestamp].dt.tz) == "UTC"


def test_history_equals_the_prepared_data(
    store_root: Path, params: Params, schema: FeatureSchema
) -> None:
    features, labels = training_frame(open_store(), Paths.train, params, schema)
    prepared = read_csv(Paths.train, categorical=[*schema.categorical, "entity_id"])
    assert len(features) == len(prepared) > 100
    pd.testing.assert_frame_equal(
        to_model_frame(features, schema).reset_index(drop=True),
        to_model_frame(prepared, schema).reset_index(drop=True),
    )
    assert labels.tolist() == prepared["label"].tolist()


def test_a_later_value_never_reaches_an_earlier_label(
    store_root: Path, params: Params, schema: FeatureSchema
) -> None:
    first = read_csv(Path("rows.csv"), categorical=["entity_id"]).iloc[0]
    start = event_times(pd.Series([first["event_timestamp"]]))[0]
    labels = pd.DataFrame(
        {
            "entity_id": ["000001"] * 3,
            "event_timestamp": [
                (start - pd.Timedelta(hours=1)).isoformat(),  # before any value
                (start + pd.Timedelta(hours=1)).isoformat(),  # after the first value only
                (start + LATER + pd.Timedelta(hours=1)).isoformat(),  # after both
            ],
            "label": ["no", "no", "no"],
        }
    )
    labels.to_csv("labels.csv", index=False)
    features, _ = training_frame(open_store(), Path("labels.csv"), params, schema)
    noise = features["noise"].tolist()
    assert np.isnan(noise[0])
    assert noise[1] == pytest.approx(first["noise"])
    assert noise[1] != LATE_NOISE
    assert noise[2] == LATE_NOISE


def test_the_online_store_answers_the_latest_values(store_root: Path) -> None:
    store = open_store()
    online = store.get_online_features(
        features=store.get_feature_service("model_inputs"),
        entity_rows=[{"entity_id": "000001"}, {"entity_id": "000002"}],
    ).to_dict()
    assert online["noise"][0] == LATE_NOISE
    source = pd.read_parquet(SOURCE_FILE)
    second = source[source["entity_id"] == "000002"].iloc[0]
    assert online["noise"][1] == pytest.approx(second["noise"])


def test_publishing_copies_the_source_where_the_store_reads_it(
    store_root: Path, tmp_path: Path
) -> None:
    assert publish_source(StoreSettings())["copied"] == 0  # the local store reads it in place
    target = tmp_path / "bucket" / "features.parquet"
    published = publish_source(StoreSettings(feature_source_url=str(target)))
    assert published["copied"] == target.stat().st_size == SOURCE_FILE.stat().st_size
    pd.testing.assert_frame_equal(pd.read_parquet(target), pd.read_parquet(SOURCE_FILE))


def test_publishing_without_a_source_names_the_file(
    store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"features\.parquet: no such file"):
        publish_source(StoreSettings(feature_source_url=str(tmp_path / "out.parquet")))
    assert not (tmp_path / "out.parquet").exists()


def test_concurrent_reads_share_one_store_call(store_root: Path) -> None:
    registry = CollectorRegistry()
    online = OnlineFeatures(registry, store_root / "params.yaml")
    online.open()
    wanted = [["000001"], ["000002", "000003"], ["000002"], ["nobody"]]

    async def together() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(*(online.read(ids) for ids in wanted)))

    answers = asyncio.run(together())
    # through JSON, as the server sends them (a missing value, NaN, becomes null)
    assert orjson.dumps(answers) == orjson.dumps([online.read_now(ids) for ids in wanted])
    assert answers[3] == [{}]  # unknown
    assert registry.get_sample_value("ml_feature_store_reads_total", {"outcome": "ok"}) == 1.0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda frame: frame.drop(columns=["entity_id"]),
            "'entity_id' (data.entity_key) not found",
        ),
        (lambda frame: frame.assign(entity_id=None), "'entity_id' (data.entity_key) has 200 empty"),
        (
            lambda frame: frame.assign(event_timestamp="yesterday"),
            "'event_timestamp' (data.timestamp) has 200 value(s) that are not times",
        ),
        (
            lambda frame: frame.assign(entity_id="same", event_timestamp="2025-01-01T00:00:00Z"),
            "columns 'entity_id', 'event_timestamp': 199 repeated pair(s)",
        ),
    ],
)
def test_bad_ids_and_times_are_named(
    make_frame: Callable[..., pd.DataFrame],
    params: Params,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    named: str,
) -> None:
    frame = change(with_identity(make_frame(rows=200), params))
    problems = " ".join(expectation_problems(frame, params))
    assert named in problems


# The server: a model trained on the same rows, records naming only their entity.


@pytest.fixture(scope="module")
def client(
    store_root: Path,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
) -> Iterator[TestClient]:
    model_dir = store_root / "model"
    write_model_dir(model_dir, make_frame(rows=200), PROJECT_ROOT, "3")
    with TestClient(create_app(ServeSettings(model_dir=model_dir))) as test_client:
        wait_ready(test_client)
        yield test_client


def full_record(entity: str) -> dict[str, Any]:
    """The entity's latest row in the source, as a client would send it in full."""
    source = pd.read_parquet(SOURCE_FILE)
    row = source[source["entity_id"] == entity].sort_values("event_timestamp").iloc[-1]
    record = {name: row[name] for name in ("size", "colour", "noise")}
    return {name: None if pd.isna(value) else value for name, value in record.items()}


def test_an_entity_is_answered_as_its_full_record(client: TestClient) -> None:
    entities = ["000001", "000002", "000008"]  # 000008 has no size: nullable, so it passes
    assert full_record("000008")["size"] is None
    by_entity = client.post("/predict", json=[{"entity_id": e} for e in entities]).json()
    in_full = client.post("/predict", json=[full_record(e) for e in entities]).json()
    assert by_entity["probabilities"] == in_full["probabilities"]
    assert by_entity["predictions"] == in_full["predictions"]
    one = client.post("/predict", json={"entity_id": "000002", "prediction_id": "p-1"}).json()
    assert one["prediction_ids"] == ["p-1"]
    assert one["probabilities"] == [in_full["probabilities"][1]]
    mixed = client.post("/predict", json=[full_record("000002"), {"entity_id": "000002"}]).json()
    assert mixed["probabilities"][0] == mixed["probabilities"][1]


def test_unknown_entities_are_404_naming_each_id(client: TestClient) -> None:
    answer = client.post(
        "/predict", json=[{"entity_id": "000002"}, {"entity_id": "nobody"}, {"entity_id": 2}]
    )
    assert answer.status_code == 404
    assert answer.json()["detail"] == [
        {"loc": ["body", 1, "entity_id"], "msg": "unknown entity 'nobody'"},
        {"loc": ["body", 2, "entity_id"], "msg": "unknown entity '2'"},  # ids are text
    ]
    single = client.post("/predict", json={"entity_id": "nobody"})
    assert single.status_code == 404
    assert single.json()["detail"][0]["loc"] == ["body", "entity_id"]


def test_an_id_of_another_kind_is_422(client: TestClient) -> None:
    for value in (True, None, "", [1], 1.5):
        answer = client.post("/predict", json={"entity_id": value})
        assert answer.status_code == 422, value
        assert answer.json()["detail"][0]["loc"] == ["body", "entity_id"]


def test_a_value_missing_where_training_had_none_is_422_naming_it(
    client: TestClient, store_root: Path, params: Params
) -> None:
    store = open_store()
    row = pd.DataFrame(
        {
            "entity_id": ["no-noise"],
            "event_timestamp": [pd.Timestamp("2026-01-01", tz="UTC")],
            "size": [50.0],
            "colour": ["red"],
            "noise": [np.nan],
        }
    )
    store.write_to_online_store("model_features", row)
    answer = client.post("/predict", json=[{"entity_id": "000002"}, {"entity_id": "no-noise"}])
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {
            "loc": ["body", 1, "noise"],
            "msg": "entity 'no-noise' has no value of 'noise' in the feature store, "
            "and the model had none missing in training",
        }
    ]


def test_a_store_outage_fails_entity_requests_only(client: TestClient, store_root: Path) -> None:
    # The online table out of the store's reach (SQLite keeps its file open, so the table
    # is renamed rather than the file moved): reads fail as with a database that is down.
    table = f"{open_store().project}_model_features"
    with sqlite3.connect(store_root / "data/feast/online.db") as database:
        database.execute(f"ALTER TABLE {table} RENAME TO away")
    try:
        down = client.post("/predict", json={"entity_id": "000002"})
        full = client.post("/predict", json=full_record("000002"))
        ready = client.get("/health/ready")
    finally:
        with sqlite3.connect(store_root / "data/feast/online.db") as database:
            database.execute(f"ALTER TABLE away RENAME TO {table}")
    assert down.status_code == 503
    assert "feature store" in down.json()["detail"]
    assert full.status_code == 200
    assert ready.status_code == 200
    assert client.post("/predict", json={"entity_id": "000002"}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'ml_feature_store_reads_total{outcome="error"} 1.0' in metrics
    assert "ml_feature_store_read_duration_seconds_count" in metrics
    assert 'ml_feature_store_entities_total{outcome="unknown"}' in metrics


def test_full_records_never_need_a_store_that_cannot_open(
    store_root: Path,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("FEATURE_STORE_YAML", str(tmp_path / "absent.yaml"))
    model_dir = tmp_path / "model"
    write_model_dir(model_dir, make_frame(rows=200), PROJECT_ROOT, "1")
    with TestClient(create_app(ServeSettings(model_dir=model_dir))) as fresh:
        wait_ready(fresh)
        assert fresh.post("/predict", json=full_record("000002")).status_code == 200
        down = fresh.post("/predict", json={"entity_id": "000002"})
        assert down.status_code == 503
        assert "absent.yaml" in down.json()["detail"]
        mistyped = fresh.post("/predict", json={"entity": "000002"})  # not the key: 422
        assert mistyped.status_code == 422
        assert fresh.get("/health/ready").status_code == 200
