"""The prediction server through FastAPI's TestClient, on a model trained from a mixed CSV."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.artifact import (
    EXTRA,
    REGISTRY,
)
from {{ cookiecutter.module_name }}.schema import (
    infer_schema,
    to_model_frame,
)
from {{ cookiecutter.module_name }}.serving import (
    server as server_module,
)
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)
from {{ cookiecutter.module_name }}.serving.smoke import (
    sample_record,
)

from conftest import wait_ready


@pytest.fixture(scope="module")
def model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
) -> Path:
    path = tmp_path_factory.mktemp("model")
    write_model_dir(path, make_frame(rows=200), Path(__file__).resolve().parents[1], "7")
    return path


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    settings = ServeSettings(model_dir=model_dir, max_batch_rows=50, max_body_bytes=20_000)
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        yield test_client


RECORD = {"size": 51.5, "colour": "red", "noise": 0.25}


def test_health_version_and_ping(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    assert client.get("/health/ready").json() == {"status": "ready"}
    assert client.get("/ping").status_code == 200
    assert client.get("/version").text


def test_model_describes_what_is_served(client: TestClient) -> None:
    info = client.get("/model").json()
    assert (info["name"], info["version"], info["alias"], info["run_id"]) == (
        "test-model",
        "7",
        "champion",
        "r1",
    )
    assert [feature["name"] for feature in info["schema"]["features"]] == [
        "size",
        "colour",
        "noise",
    ]
    assert info["loaded_at"].endswith("Z")


def test_predict_one_record(client: TestClient) -> None:
    answer = client.post("/predict", json=RECORD).json()
    assert answer["predictions"][0] in ("yes", "no")
    assert answer["classes"] == ["no", "yes"]
    assert sum(answer["probabilities"][0]) == pytest.approx(1.0, abs=1e-5)
    assert answer["model"] == {"name": "test-model", "version": "7", "alias": "champion"}


def test_predict_many_with_missing_values(client: TestClient) -> None:
    records = [RECORD, {**RECORD, "size": None}, {**RECORD, "colour": None}]
    answer = client.post("/predict", json=records).json()
    assert len(answer["predictions"]) == 3


def test_predictions_match_the_pipeline(
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
    tmp_path: Path,
) -> None:
    frame = make_frame(rows=200)
    pipeline = write_model_dir(tmp_path, frame, Path(__file__).resolve().parents[1], "1")
    schema = infer_schema(frame, "label", "classification")
    records = json.loads(frame.drop(columns=["label"]).head(40).to_json(orient="records"))
    with TestClient(create_app(ServeSettings(model_dir=tmp_path))) as fresh:
        wait_ready(fresh)
        answer = fresh.post("/predict", json=records).json()
    expected = pipeline.predict_proba(to_model_frame(frame.head(40), schema))
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-6)


@pytest.mark.parametrize(
    "payload",
    [
        {
            "dataframe_split": {
                "columns": ["size", "colour", "noise"],
                "data": [[51.5, "red", 0.25]],
            }
        },
        {
            "dataframe_split": {
                "index": [0],
                "columns": ["noise", "size", "colour"],
                "data": [[0.25, 51.5, "red"]],
            }
        },
        {"dataframe_records": [RECORD]},
        {"instances": [RECORD]},
        {"inputs": {"size": [51.5], "colour": ["red"], "noise": [0.25]}},
    ],
)
def test_invocations_speaks_mlflow(client: TestClient, payload: dict[str, Any]) -> None:
    expected = client.post("/predict", json=RECORD).json()["predictions"]
    answer = client.post("/invocations", json=payload).json()
    assert answer.keys() == {"predictions", "prediction_ids"}
    assert answer["predictions"] == expected


def test_invocations_takes_csv(client: TestClient) -> None:
    body = "size,colour,noise\n51.5,red,0.25\n,blue,1.0\n"
    answer = client.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == 2


@pytest.mark.parametrize(
    "body",
    [
        "size,colour,noise\r51.5,red\r\xb7p",  # bare carriage returns (found by schemathesis)
        "size,colour,noise\n51.5,red,0.2\x005",  # a NUL byte
        "size,colour,noise\n" + "1" * 200_000 + ",red,0.25\n",  # over the csv field limit
        'size,colour,noise\n"51.5,red,0.25\n',  # a quote never closed
    ],
)
def test_malformed_csv_gets_a_4xx(client: TestClient, body: str) -> None:
    headers = {"Content-Type": "text/csv"}
    answer = client.post("/invocations", content=body.encode(), headers=headers)
    assert 400 <= answer.status_code < 500, answer.text


def field_errors(response: Any) -> list[tuple[Any, ...]]:
    return [tuple(item["loc"]) for item in response.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**RECORD, "size": "big"}, "size"),
        ({**RECORD, "size": True}, "size"),
        ({key: value for key, value in RECORD.items() if key != "noise"}, "noise"),
        ({**RECORD, "extra": 1}, "extra"),
        ({**RECORD, "colour": "purple"}, "colour"),
        ({**RECORD, "noise": None}, "noise"),
        ([RECORD, {**RECORD, "size": [1]}], "size"),
    ],
)
def test_bad_records_get_422_naming_the_field(client: TestClient, body: Any, field: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert any(loc[-1] == field for loc in field_errors(response)), response.json()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_by_name(client: TestClient, literal: str) -> None:
    body = '{"size": ' + literal + ', "colour": "red", "noise": 0.1}'
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert field_errors(response)[0][-1] == "size"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"[]", "application/json", 422),
        (b'{"size": ', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (json.dumps(RECORD).encode(), "text/plain", 415),
        (json.dumps(RECORD).encode(), "", 415),
        (json.dumps([RECORD] * 51).encode(), "application/json", 413),
        (b" " * 30_000, "application/json", 413),
        (b'"just a string"', "application/json", 422),
    ],
)
def test_bad_requests_get_4xx(
    client: TestClient, body: bytes, content_type: str, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"dataframe_records": [RECORD], "instances": [RECORD]},
        {"dataframe_split": {"columns": ["size"], "data": [[1.0, 2.0]]}},
        {"dataframe_split": {"columns": ["size", "colour", "noise"], "data": [[1.0, "red"]]}},
        {"dataframe_split": [1, 2]},
        {"inputs": {"size": [1.0, 2.0], "colour": ["red"], "noise": [0.1]}},
        {"dataframe_records": "nope"},
        {"instances": [RECORD], "params": {"x": 1}},
    ],
)
def test_bad_invocations_get_422(client: TestClient, payload: dict[str, Any]) -> None:
    response = client.post("/invocations", json=payload)
    assert response.status_code == 422, response.text


def test_refusals_are_counted(client: TestClient) -> None:
    def refused() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith('ml_request_validation_errors_total{route="/predict",status="422"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = refused()
    client.post("/predict", json={**RECORD, "colour": "purple"})
    assert refused() == before + 1


def test_metrics_count_requests_predictions_and_model(client: TestClient) -> None:
    client.post("/predict", json=[RECORD, RECORD])
    text = client.get("/metrics").text
    assert (
        'ml_http_requests_total{method="POST",route="/predict",status="200",variant="champion"}'
        in text
    )
    assert (
        'ml_http_request_duration_seconds_bucket{le="0.005",route="/predict",variant="champion"}'
        in text
    )
    assert "ml_predictions_total{" in text
    assert (
        'ml_model_info{alias="champion",name="test-model",variant="champion",version="7"} 1.0'
        in text
    )
    assert "ml_model_ready 1.0" in text
    assert "ml_http_requests_in_flight" in text


def test_unknown_paths_share_one_metrics_label(client: TestClient) -> None:
    assert client.get("/nowhere/123").status_code == 404
    text = client.get("/metrics").text
    assert (
        'ml_http_requests_total{method="GET",route="unmatched",status="404",variant="none"}' in text
    )
    assert "/nowhere" not in text


def test_openapi_documents_the_request_from_the_schema(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    request = document["components"]["schemas"]["PredictRequest"]
    record = request["oneOf"][0]
    assert set(record["properties"]) == {"size", "colour", "noise"}
    assert record["additionalProperties"] is False
    assert set(record["required"]) == {"size", "colour", "noise"}
    colour = json.dumps(record["properties"]["colour"])
    assert "blue" in colour
    assert "red" in colour
    assert request["oneOf"][1]["maxItems"] == 50


def test_smoke_record_is_valid_for_the_schema(client: TestClient) -> None:
    schema = client.get("/model").json()["schema"]
    answer = client.post("/predict", json=sample_record(schema))
    assert answer.status_code == 200, answer.text


def test_not_ready_until_a_model_loads(tmp_path: Path) -> None:
    with TestClient(create_app(ServeSettings(model_dir=tmp_path / "absent"))) as lonely:
        time.sleep(0.2)
        ready = lonely.get("/health/ready")
        assert ready.status_code == 503
        assert "absent" in ready.json()["detail"]
        assert lonely.get("/health/live").status_code == 200
        assert lonely.get("/ping").status_code == 404
        assert lonely.post("/predict", json=RECORD).status_code == 503


def test_a_request_during_loading_waits_for_the_model(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = server_module.load

    def slow_load(*args: Any) -> Any:
        time.sleep(0.5)  # a model that takes a while to load
        return real_load(*args)

    monkeypatch.setattr(server_module, "load", slow_load)
    with TestClient(create_app(ServeSettings(model_dir=model_dir))) as starting:
        started = time.monotonic()
        answer = starting.post("/predict", json=RECORD)
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started >= 0.3, "the request arrived before the model"


def test_reload_swaps_in_a_new_exported_model(
    tmp_path: Path, make_frame: Callable[..., pd.DataFrame], write_model_dir: Callable[..., Any]
) -> None:
    root = Path(__file__).resolve().parents[1]
    write_model_dir(tmp_path, make_frame(rows=200), root, "1")
    settings = ServeSettings(model_dir=tmp_path, reload_seconds=0.1)
    with TestClient(create_app(settings)) as reloading:
        wait_ready(reloading)
        assert reloading.get("/model").json()["version"] == "1"
        staged = tmp_path.parent / "staged"
        write_model_dir(staged, make_frame(rows=200, seed=5), root, "2")
        # the model first, then the metadata that announces it
        shutil.copytree(staged / EXTRA, tmp_path / EXTRA, dirs_exist_ok=True)
        shutil.copy(staged / REGISTRY, tmp_path / REGISTRY)
        deadline = time.monotonic() + 10
        while reloading.get("/model").json()["version"] != "2":
            assert reloading.post("/predict", json=RECORD).status_code == 200
            assert time.monotonic() < deadline
        assert reloading.post("/predict", json=RECORD).json()["model"]["version"] == "2"
        metrics = reloading.get("/metrics").text
        assert 'variant="champion",version="1"} 0.0' in metrics
        assert 'variant="champion",version="2"} 1.0' in metrics
