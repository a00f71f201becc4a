from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.module_name }}.artifact import (
    EXTRA,
    REGISTRY,
    write_extra_files,
)
from {{ cookiecutter.module_name }}.config import load_params
from {{ cookiecutter.module_name }}.profile import build_profile
from {{ cookiecutter.module_name }}.runtime import plan
from {{ cookiecutter.module_name }}.schema import (
    infer_schema,
    to_model_frame,
)
from {{ cookiecutter.module_name }}.train import build_pipeline

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def wait_ready(client: TestClient, seconds: float = 30) -> None:
    """Until the app's /health/ready answers 200 (the model loads in the background)."""
    deadline = time.monotonic() + seconds
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health/ready").json()
        time.sleep(0.02)


@pytest.fixture(scope="session", autouse=True)
def prediction_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Servers the tests start log and store their predictions here, not in build/."""
    path = tmp_path_factory.mktemp("predictions")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREDICTION_LOG_DIR", str(path))
        patch.setenv("PREDICTION_STORE_URL", f"sqlite:///{path / 'predictions.db'}")
        yield path


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT


def mixed_frame(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features with missing values; the label depends on both."""
    rng = np.random.default_rng(seed)
    size = rng.normal(50, 10, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    noise = rng.normal(0, 1, rows)
    label = np.where((size > 50) ^ (colour == "red"), "yes", "no")
    frame = pd.DataFrame({"size": size, "colour": colour, "noise": noise, "label": label})
    frame.loc[::7, "size"] = np.nan
    frame.loc[::11, "colour"] = np.nan
    return frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return mixed_frame()


@pytest.fixture(scope="session")
def make_frame() -> Callable[..., pd.DataFrame]:
    return mixed_frame


def model_dir_of(path: Path, frame: pd.DataFrame, project_root: Path, version: str) -> Any:
    """A model directory as `export-model` writes it, from a pipeline fitted on `frame`."""
    params = load_params(project_root / "params.yaml")
    params.task = "classification"
    params.train.model = "random_forest"
    params.train.random_forest.n_estimators = 20
    schema = infer_schema(frame, "label", "classification")
    features = to_model_frame(frame, schema)
    pipeline = build_pipeline(schema, params).fit(features, frame["label"])
    serving = plan(pipeline, features, schema)
    assert serving.runtime.predictor == "compiled", serving.runtime.reason
    profile = build_profile(features, pipeline.predict(features), schema)
    (path / EXTRA).mkdir(parents=True, exist_ok=True)
    write_extra_files(path / EXTRA, schema, profile, serving.runtime, serving.compiled)
    metadata = {"name": "test-model", "version": version, "alias": "champion", "run_id": "r1"}
    (path / REGISTRY).write_text(json.dumps(metadata), encoding="utf-8")
    return pipeline


@pytest.fixture(scope="session")
def write_model_dir() -> Callable[..., Any]:
    return model_dir_of
