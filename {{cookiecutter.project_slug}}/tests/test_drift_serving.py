"""Drift where it runs: the server's rolling window and gauges, and the `drift` command."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.artifact import SCHEMA
from {{ cookiecutter.module_name }}.cli import main
from {{ cookiecutter.module_name }}.inference import Inputs
from {{ cookiecutter.module_name }}.monitoring.window import (
    UNSEEN_LABEL,
    RollingWindow,
)
from {{ cookiecutter.module_name }}.schema import FeatureSchema
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
    write_model_dir(path, make_frame(rows=400), Path(__file__).resolve().parents[1], "3")
    return path


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    moved = frame.copy()
    moved["size"] += 25  # two and a half standard deviations
    return moved


def test_window_keeps_the_latest_rows_in_fixed_arrays(model_dir: Path) -> None:
    schema = FeatureSchema.load(model_dir / SCHEMA)
    window = RollingWindow(schema, size=5)
    arrays = (window.numeric, window.categorical, window.predictions)
    for start in range(0, 12, 3):  # 12 rows in batches of 3, then one larger than the window
        rows = np.arange(start, start + 3, dtype=float)
        numeric = np.column_stack([rows, -rows])
        colours: list[str | None] = ["red", None, "teal"]
        window.add(Inputs(numeric, [colours]), np.array(["yes", "no", "yes"]))
    assert window.rows == 5
    columns = window.columns()
    assert sorted(columns["size"].tolist()) == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert sorted(columns["noise"].tolist()) == [-11.0, -10.0, -9.0, -8.0, -7.0]
    assert Counter(columns["colour"].tolist()) == {None: 2, UNSEEN_LABEL: 2, "red": 1}
    assert sorted(window.predicted().tolist()) == ["no", "no", "yes", "yes", "yes"]
    big = np.arange(20, dtype=float)
    window.add(Inputs(np.column_stack([big, big]), [["blue"] * 20]), np.array(["no"] * 20))
    assert sorted(window.columns()["size"].tolist()) == [15.0, 16.0, 17.0, 18.0, 19.0]
    assert (window.numeric, window.categorical, window.predictions) == arrays  # never reallocated


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    features = frame.drop(columns=["label"]).astype(object)
    return features.where(features.notna(), None).to_dict(orient="records")


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def checked(client: TestClient, records: list[dict[str, Any]]) -> str:
    """Metrics text once a drift check ran on `records`."""
    for start in range(0, len(records), 100):
        answer = client.post("/predict", json=records[start : start + 100])
        assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 20
    while True:
        text = client.get("/metrics").text
        if metric(text, "ml_drift_last_check_timestamp_seconds"):
            return text
        assert time.monotonic() < deadline, "no drift check ran"
        time.sleep(0.05)


@pytest.mark.parametrize("moved", [False, True])
def test_server_publishes_drift_gauges(
    model_dir: Path,
    make_frame: Callable[..., pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
    moved: bool,
) -> None:
    monkeypatch.setenv("DRIFT_INTERVAL_SECONDS", "0.1")
    monkeypatch.setenv("DRIFT_MIN_ROWS", "300")
    frame = make_frame(rows=300, seed=9)
    with TestClient(create_app(ServeSettings(model_dir=model_dir))) as client:
        text = checked(client, records_of(shifted(frame) if moved else frame))
    size_psi = metric(text, 'ml_feature_drift_psi{feature="size"}')
    noise_psi = metric(text, 'ml_feature_drift_psi{feature="noise"}')
    assert size_psi is not None
    assert noise_psi is not None
    assert noise_psi < 0.25
    assert metric(text, "ml_drift_window_rows") == 300.0
    assert metric(text, "ml_prediction_drift_psi") is not None
    if moved:
        assert size_psi > 0.25
        assert metric(text, "ml_drift_detected") == 1.0
    else:
        assert size_psi < 0.25
        assert metric(text, "ml_drift_detected") == 0.0


def test_no_check_before_the_window_holds_enough_rows(
    model_dir: Path, make_frame: Callable[..., pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFT_INTERVAL_SECONDS", "0.05")
    monkeypatch.setenv("DRIFT_MIN_ROWS", "500")
    with TestClient(create_app(ServeSettings(model_dir=model_dir))) as client:
        answer = client.post("/predict", json=records_of(make_frame(rows=100, seed=9)))
        assert answer.status_code == 200
        time.sleep(0.3)
        text = client.get("/metrics").text
    assert metric(text, "ml_drift_window_rows") == 100.0
    assert metric(text, "ml_drift_last_check_timestamp_seconds") == 0.0
    assert metric(text, "ml_drift_detected") == 0.0
    assert metric(text, 'ml_feature_drift_psi{feature="size"}') is None


def run_drift(
    tmp_path: Path, model_dir: Path, frame: pd.DataFrame | None, *extra: str
) -> tuple[int, dict[str, Any] | None]:
    current = tmp_path / "current.csv"
    if frame is not None:
        frame.to_csv(current, index=False)
    output = tmp_path / "drift"
    where = ["--current", str(current), "--model-dir", str(model_dir), "--output", str(output)]
    code = main(["drift", *where, *extra])
    data = output / "drift.json"
    return code, json.loads(data.read_text(encoding="utf-8")) if data.is_file() else None


def test_drift_command_passes_on_data_like_training(
    model_dir: Path, make_frame: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    code, report = run_drift(tmp_path, model_dir, make_frame(rows=500, seed=11))
    assert code == 0
    assert report is not None
    assert report["detected"] is False
    assert [feature["name"] for feature in report["features"]] == ["size", "colour", "noise"]
    assert report["prediction"]["status"] == "ok"
    assert report["model"]["version"] == "3"
    table = (tmp_path / "drift" / "drift.md").read_text(encoding="utf-8")
    assert "| size | numeric |" in table
    assert "no drift" in table


def test_drift_command_fails_on_shifted_data_naming_the_feature(
    model_dir: Path,
    make_frame: Callable[..., pd.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = shifted(make_frame(rows=500, seed=12)).drop(columns=["label"])  # no target: fine
    frame.loc[::4, "colour"] = "teal"
    code, report = run_drift(tmp_path, model_dir, frame, "--format", "html")
    assert code == 1
    assert report is not None
    assert report["drifted"] == ["size", "colour"]
    colour = next(feature for feature in report["features"] if feature["name"] == "colour")
    assert colour["unseen_examples"] == ["teal"]
    page = (tmp_path / "drift" / "drift.html").read_text(encoding="utf-8")
    assert '<tr class="alert"><td>size</td>' in page
    assert "DRIFT: features size, colour" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda frame: frame.drop(columns=["noise"]), "['noise'] missing"),
        (lambda frame: frame.assign(size="tall"), "'size' must be numeric, found 'tall'"),
        (lambda frame: frame.iloc[:0], "no rows"),
        (None, "no such file"),
    ],
)
def test_drift_command_refuses_bad_input_by_name(
    model_dir: Path,
    make_frame: Callable[..., pd.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[pd.DataFrame], pd.DataFrame] | None,
    message: str,
) -> None:
    frame = change(make_frame(rows=50)) if change else None
    code, report = run_drift(tmp_path, model_dir, frame)
    assert code == 2
    assert report is None
    assert message in capsys.readouterr().err


def test_drift_command_needs_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_drift(tmp_path, tmp_path / "nowhere", pd.DataFrame({"size": [1.0]}))
    assert code == 2
    assert "nowhere" in capsys.readouterr().err


def test_drift_command_refuses_an_empty_file_and_an_unknown_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert main(["drift", "--current", str(empty)]) == 2
    assert "empty.csv: the file is empty (0 bytes)" in capsys.readouterr().err

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("DRIFT_PSI_ALERT", "high")
    current = tmp_path / "current.csv"
    current.write_text("size\n1.0\n", encoding="utf-8")
    assert main(["drift", "--current", str(current)]) == 2
    assert "DRIFT_PSI_ALERT='high': Input should be a valid number" in capsys.readouterr().err
    monkeypatch.delenv("DRIFT_PSI_ALERT")
    assert main(["drift", "--current", str(current), "--alias", "nope"]) == 2
    error = capsys.readouterr().err
    assert "is registered yet — run `make pipeline` first" in error
    assert len(error.splitlines()) == 1
