"""Ground truth through /feedback: checked, recorded once per id, counted as live metrics."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn import metrics

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.config import load_params
from {{ cookiecutter.module_name }}.feedback import (
    LIVE_METRICS,
    Sums,
    check_actual,
)
from {{ cookiecutter.module_name }}.prediction_store import (
    PredictionStore,
)
from {{ cookiecutter.module_name }}.schema import Target
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)


@pytest.fixture(scope="module")
def model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
) -> Path:
    path = tmp_path_factory.mktemp("model")
    write_model_dir(path, make_frame(rows=200), Path(__file__).resolve().parents[1], "7")
    return path


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def client(model_dir: Path, store_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = ServeSettings(
        model_dir=model_dir,
        prediction_store_url=store_url,
        prediction_log_dir=str(tmp_path / "log"),
        feedback_max_items=50,
    )
    with TestClient(create_app(settings)) as started:
        deadline = time.monotonic() + 20
        while started.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield started


def served(client: TestClient, frame: pd.DataFrame) -> dict[str, Any]:
    records = frame.drop(columns=["label"]).astype(object)
    records = records.where(records.notna(), None).to_dict(orient="records")
    answer = client.post("/predict", json=records).json()
    assert client.app.state.server.prediction_log.flush()  # type: ignore[attr-defined]
    return dict(answer)


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one series in a /metrics page (0 when absent)."""
    for line in metrics_text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_labels_are_recorded_once_and_counted(
    client: TestClient, make_frame: Callable[..., pd.DataFrame]
) -> None:
    frame = make_frame(rows=40, seed=5)
    answer = served(client, frame)
    ids = answer["prediction_ids"]
    labels = frame["label"].tolist()
    body = [{"id": row_id, "actual": label} for row_id, label in zip(ids, labels, strict=True)]
    result = client.post("/feedback", json=body).json()
    assert result["recorded"] == 40
    assert {item["status"] for item in result["results"]} == {201}

    # A second label for the same id keeps the first; an id never served is a 404 entry.
    again = client.post(
        "/feedback", json=[{"id": ids[0], "actual": "no"}, {"id": "never-served", "actual": "yes"}]
    ).json()
    assert [item["status"] for item in again["results"]] == [409, 404]
    assert "no prediction" in again["results"][1]["detail"]

    page = client.get("/metrics").text
    who = {"version": "7", "variant": "champion"}
    rows = sample(page, "ml_feedback_rows_total", **who)
    correct = sample(page, "ml_feedback_correct_total", **who)
    assert rows == 40
    expected = metrics.accuracy_score(labels, answer["predictions"])
    assert correct / rows == pytest.approx(expected)
    log_loss = sample(page, "ml_feedback_log_loss_total", **who) / rows
    classes = answer["classes"]
    assert log_loss == pytest.approx(
        metrics.log_loss(labels, answer["probabilities"], labels=classes), rel=1e-4
    )
    positive = classes[1]
    parts = {
        outcome: sample(page, "ml_feedback_class_rows_total", **who, outcome=outcome)
        for outcome in ("tp", "fp", "fn")
    }
    f1 = 2 * parts["tp"] / (2 * parts["tp"] + parts["fp"] + parts["fn"])
    assert f1 == pytest.approx(metrics.f1_score(labels, answer["predictions"], pos_label=positive))
    assert sample(page, "ml_feedback_items_total", outcome="duplicate") == 1
    assert sample(page, "ml_feedback_items_total", outcome="unknown_id") == 1
    assert sample(page, "ml_feedback_min_rows") == 100
    # params.yaml's gate, for the metrics computed live (this model is a classifier)
    gate = load_params(Path("params.yaml")).evaluate.gate
    live = {name: value for name, value in gate.items() if name in LIVE_METRICS["classification"]}
    exported = {name: sample(page, "ml_quality_gate", metric=name) for name in live}
    assert exported == live
    assert "roc_auc" not in page  # not computed live, so not exported
    assert sample(page, "ml_feedback_label_delay_seconds_count", variant="champion") == 40


def test_a_bad_item_refuses_the_request_and_records_nothing(
    client: TestClient, make_frame: Callable[..., pd.DataFrame], store_url: str
) -> None:
    ids = served(client, make_frame(rows=3, seed=6))["prediction_ids"]
    body = [
        {"id": ids[0], "actual": "yes"},
        {"id": ids[1], "actual": "maybe"},
        {"id": "", "actual": "no"},
        {"id": ids[2]},
        {"id": ids[2], "actual": "no", "extra": 1},
    ]
    response = client.post("/feedback", json=body)
    assert response.status_code == 422
    where = [tuple(item["loc"]) for item in response.json()["detail"]]
    assert where == [
        ("body", 1, "actual"),
        ("body", 2, "id"),
        ("body", 3, "actual"),
        ("body", 4, "extra"),
    ]
    assert "'maybe' is not a class" in response.json()["detail"][0]["msg"]
    assert list(PredictionStore(store_url).labelled()) == []

    as_json, as_csv = {"content-type": "application/json"}, {"content-type": "text/csv"}
    assert client.post("/feedback", content=b"[{", headers=as_json).status_code == 400
    assert client.post("/feedback", content=b"id,actual", headers=as_csv).status_code == 415
    assert client.post("/feedback", json=[]).status_code == 422
    assert client.post("/feedback", json={"id": ids[0]}).status_code == 422
    too_many = [{"id": ids[0], "actual": "yes"}] * 51
    assert client.post("/feedback", json=too_many).status_code == 413


def test_the_documented_body_is_the_one_checked(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body = document["components"]["schemas"]["FeedbackRequest"]
    assert body["maxItems"] == 50  # FEEDBACK_MAX_ITEMS
    item = body["items"]["properties"]
    assert item["actual"]["enum"] == ["no", "yes"]  # the model's classes
    pattern = re.compile(item["id"]["pattern"])
    assert pattern.match("a-b_7")
    assert not pattern.match("a\nb")
    assert item["id"]["maxLength"] == 128


def test_without_a_store_feedback_says_so(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICTION_STORE_URL", "off")  # an empty variable means the default
    settings = ServeSettings(model_dir=model_dir)
    with TestClient(create_app(settings)) as started:
        while started.get("/health/ready").status_code != 200:
            time.sleep(0.02)
        response = started.post("/feedback", json=[{"id": "a", "actual": "yes"}])
    assert response.status_code == 503
    assert response.json()["detail"] == "feedback is off: PREDICTION_STORE_URL is off"


def test_labels_are_checked_against_the_target() -> None:
    classes = Target(name="y", classes=[0, 1])
    assert check_actual("1", classes) == (1, None)
    assert check_actual(1, classes) == (1, None)
    assert check_actual(2, classes)[1] == "2 is not a class of the target (one of 0, 1)"
    assert check_actual(True, classes)[1] == "True is not a class of the target (one of 0, 1)"
    values = Target(name="y", minimum=0.0, maximum=5.0)
    assert check_actual("2.5", values) == (2.5, None)
    assert check_actual(float("nan"), values)[1] == "nan is not a finite number"
    assert check_actual("inf", values)[1] == "'inf' is not a finite number"
    assert check_actual("x", values)[1] == "'x' is not a number"
    assert check_actual(None, values)[1] == "None is not a number"
    deep: list[object] = []
    for _ in range(5000):  # deeper than repr can go
        deep = [deep]
    for target in (classes, values):
        assert check_actual(deep, target)[1] == "a list is not a label: send a class or a number"
        assert check_actual({"a": 1}, target)[1] == (
            "an object is not a label: send a class or a number"
        )
    assert check_actual("z" * 100, classes)[1].startswith("'zzz")
    assert len(check_actual("z" * 100, classes)[1]) < 100


def test_regression_sums_match_scikit_learn() -> None:
    actual = [3.0, -1.5, 2.0, 7.25, 0.0]
    predicted = [2.5, -1.0, 2.0, 6.0, 0.5]
    sums = Sums()
    for guess, truth in zip(predicted, actual, strict=True):
        sums.add(guess, None, truth, None)
    scores = sums.metrics("regression")
    assert scores["mae"] == pytest.approx(metrics.mean_absolute_error(actual, predicted))
    assert scores["rmse"] == pytest.approx(math.sqrt(metrics.mean_squared_error(actual, predicted)))
    assert scores["r2"] == pytest.approx(metrics.r2_score(actual, predicted))


def test_multiclass_f1_is_the_mean_over_classes() -> None:
    classes = ["a", "b", "c"]
    actual = ["a", "b", "c", "a", "b", "c", "a"]
    predicted = ["a", "b", "b", "a", "c", "c", "b"]
    sums = Sums()
    for guess, truth in zip(predicted, actual, strict=True):
        sums.add(guess, [1 / 3] * 3, truth, classes)
    scores = sums.metrics("classification")
    assert scores["f1"] == pytest.approx(metrics.f1_score(actual, predicted, average="macro"))
    assert scores["accuracy"] == pytest.approx(metrics.accuracy_score(actual, predicted))
    assert scores["log_loss"] == pytest.approx(math.log(3))
