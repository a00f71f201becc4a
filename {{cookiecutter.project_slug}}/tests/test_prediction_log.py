"""The prediction log: what was served, off the event loop; dropped and counted, never
failing a request."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)

RECORD = {"size": 51.5, "colour": "red", "noise": 0.25}


@pytest.fixture(scope="module")
def model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
) -> Path:
    path = tmp_path_factory.mktemp("model")
    write_model_dir(path, make_frame(rows=200), Path(__file__).resolve().parents[1], "5")
    return path


def started(settings: ServeSettings) -> TestClient:
    client = TestClient(create_app(settings))
    client.__enter__()
    deadline = time.monotonic() + 20
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return client


def logged(client: TestClient) -> None:
    """Wait for the writer thread: the log is written after the answer, not before."""
    assert client.app.state.server.prediction_log.flush()  # type: ignore[attr-defined]


def counted(client: TestClient, outcome: str) -> float:
    text = client.get("/metrics").text
    sample = 'ml_prediction_log_rows_total{outcome="' + outcome + '"} '
    found = re.search(re.escape(sample) + r"(\S+)", text)
    return float(found.group(1)) if found else 0.0


def read_lines(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("predictions-*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def test_each_served_row_is_logged_as_it_was_answered(model_dir: Path, tmp_path: Path) -> None:
    client = started(ServeSettings(model_dir=model_dir, prediction_log_dir=str(tmp_path)))
    try:
        own = {**RECORD, "prediction_id": "o-1"}
        rows = [RECORD, {**RECORD, "colour": None, "size": 60.0}, own]
        answer = client.post("/predict", json=rows).json()
        invoked = client.post("/invocations", json={"dataframe_records": [RECORD]}).json()
        logged(client)
        assert counted(client, "written") == 4
    finally:
        client.__exit__(None, None, None)
    lines = read_lines(tmp_path)
    assert [line["id"] for line in lines] == [*answer["prediction_ids"], *invoked["prediction_ids"]]
    assert lines[2]["id"] == "o-1"
    assert [line["prediction"] for line in lines[:3]] == answer["predictions"]
    logged_probabilities = [line["probabilities"] for line in lines[:3]]
    assert np.allclose(logged_probabilities, answer["probabilities"], atol=1e-6)
    assert lines[1]["inputs"] == {"size": 60.0, "colour": None, "noise": 0.25}
    assert {line["model"] for line in lines} == {answer["model"]["name"]}
    assert {line["version"] for line in lines} == {"5"}
    assert {line["variant"] for line in lines} == {"champion"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["ts"])


def test_fields_can_be_left_out_and_the_log_turned_off(model_dir: Path, tmp_path: Path) -> None:
    settings = ServeSettings(
        model_dir=model_dir, prediction_log_dir=str(tmp_path / "on"), prediction_log_omit="inputs"
    )
    client = started(settings)
    try:
        client.post("/predict", json=RECORD)
        logged(client)
    finally:
        client.__exit__(None, None, None)
    (line,) = read_lines(tmp_path / "on")
    assert "inputs" not in line
    assert "prediction" in line

    client = started(ServeSettings(model_dir=model_dir, prediction_log_dir=""))
    try:
        assert client.post("/predict", json=RECORD).status_code == 200
        assert counted(client, "written") == counted(client, "dropped") == 0
    finally:
        client.__exit__(None, None, None)


def test_an_unwritable_log_drops_rows_and_the_server_answers(
    model_dir: Path, tmp_path: Path
) -> None:
    # A file where the directory should be: every write fails, as on a full or read-only
    # disk (tests run as root, who may write into a read-only directory).
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("", encoding="utf-8")
    client = started(ServeSettings(model_dir=model_dir, prediction_log_dir=str(blocked / "log")))
    try:
        for _ in range(3):
            assert client.post("/predict", json=[RECORD, RECORD]).status_code == 200
        logged(client)
        assert counted(client, "dropped") == 6
        assert counted(client, "written") == 0
    finally:
        client.__exit__(None, None, None)


def test_rows_beyond_the_queue_are_dropped_not_waited_for(model_dir: Path, tmp_path: Path) -> None:
    settings = ServeSettings(
        model_dir=model_dir, prediction_log_dir=str(tmp_path), prediction_log_queue_rows=2
    )
    client = started(settings)
    try:
        assert client.post("/predict", json=[RECORD] * 3).status_code == 200  # more than fits
        assert client.post("/predict", json=[RECORD] * 2).status_code == 200
        logged(client)
        assert counted(client, "dropped") == 3
        assert counted(client, "written") == 2
    finally:
        client.__exit__(None, None, None)


def test_files_rotate_by_size_and_are_kept_up_to_a_total(model_dir: Path, tmp_path: Path) -> None:
    settings = ServeSettings(
        model_dir=model_dir,
        prediction_log_dir=str(tmp_path),
        prediction_log_max_bytes=2048,
        prediction_log_keep_bytes=6000,
    )
    client = started(settings)
    try:
        for _ in range(40):
            client.post("/predict", json=[RECORD] * 5)
            logged(client)  # one write per request, so each can rotate
        assert counted(client, "written") == 200
    finally:
        client.__exit__(None, None, None)
    rotated = sorted(tmp_path.glob("predictions-*-*.jsonl"))
    assert len(rotated) >= 2
    assert sum(path.stat().st_size for path in rotated) <= 6000
    assert all(path.stat().st_size >= 2048 for path in rotated)


def test_standard_output_takes_the_lines_in_kubernetes(
    model_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    client = started(ServeSettings(model_dir=model_dir, prediction_log_dir="-"))
    try:
        answer = client.post("/predict", json=RECORD).json()
        logged(client)
    finally:
        client.__exit__(None, None, None)
    out = capfd.readouterr().out.splitlines()
    lines = [json.loads(line) for line in out if line.startswith("{")]
    assert [line["id"] for line in lines] == answer["prediction_ids"]
