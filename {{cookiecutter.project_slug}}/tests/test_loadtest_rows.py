"""The load test's records (loadtest/sample_rows.py) are ones the API accepts.

On a model trained from a mixed CSV (numbers, categories, missing values), with and
without its training profile. locust itself is not needed: `make loadtest` runs it.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.artifact import PROFILE
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)

LOADTEST = Path(__file__).resolve().parents[1] / "loadtest"


def load_sample_rows() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sample_rows", LOADTEST / "sample_rows.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample_rows = load_sample_rows()


@pytest.fixture(scope="module")
def model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
) -> Path:
    path = tmp_path_factory.mktemp("model")
    write_model_dir(path, make_frame(rows=200), Path(__file__).resolve().parents[1], "1")
    return path


def accepted(model_dir: Path, records: list[dict[str, Any]]) -> None:
    with TestClient(create_app(ServeSettings(model_dir=model_dir))) as client:
        deadline = time.monotonic() + 20
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health/ready").json()
            time.sleep(0.02)
        for record in records[:20]:  # one at a time, as the load test sends them
            answer = client.post("/predict", json=record)
            assert answer.status_code == 200, (record, answer.text)
        answer = client.post("/predict", json=records)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == len(records)


def test_records_follow_the_training_profile(model_dir: Path) -> None:
    sampler = sample_rows.RowSampler.from_model_dir(model_dir, seed=0)
    assert sampler.source == "training profile"
    records = sampler.records(300)
    colours = {record["colour"] for record in records}
    assert {"red", "green", "blue", None} <= colours  # every category, and missing ones
    sizes = [record["size"] for record in records if record["size"] is not None]
    assert len(sizes) < len(records)  # size was missing in training, so sometimes here
    assert 40 < sum(sizes) / len(sizes) < 60  # around the training mean (50)
    accepted(model_dir, records)


def test_without_a_profile_the_schema_ranges_serve(model_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "model"
    shutil.copytree(model_dir, bare)
    (bare / PROFILE).unlink()
    sampler = sample_rows.RowSampler.from_model_dir(bare, seed=1)
    assert sampler.source.startswith("schema ranges")
    accepted(bare, sampler.records(50))


def test_no_exported_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(sample_rows.MissingModelError, match="make pipeline export-model"):
        sample_rows.RowSampler.from_model_dir(tmp_path / "absent")
