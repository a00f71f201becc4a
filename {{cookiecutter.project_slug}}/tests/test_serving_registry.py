"""The server on models from an MLflow registry: aliases, canary, reload, pipeline runtime."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.artifact import (
    Runtime,
    write_extra_files,
)
from {{ cookiecutter.module_name }}.cli import main
from {{ cookiecutter.module_name }}.config import load_params
from {{ cookiecutter.module_name }}.profile import build_profile
from {{ cookiecutter.module_name }}.runtime import plan
from {{ cookiecutter.module_name }}.schema import (
    infer_schema,
    to_model_frame,
)
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)
from {{ cookiecutter.module_name }}.train import build_pipeline

RECORD = {"size": 51.5, "colour": "red", "noise": 0.25}
NAME = "served-model"


def log_version(
    frame: pd.DataFrame, trees: int, scratch: Path, compiled: bool = True, servable: bool = True
) -> str:
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params.task = "classification"
    params.train.model = "random_forest"
    params.train.random_forest.n_estimators = trees
    schema = infer_schema(frame, "label", "classification")
    features = to_model_frame(frame, schema)
    pipeline = build_pipeline(schema, params).fit(features, frame["label"])
    serving = plan(pipeline, features, schema)
    runtime, arrays = serving.runtime, serving.compiled
    if not compiled:  # as train records a pipeline the compiler cannot reproduce
        runtime, arrays = Runtime("pipeline", reason="not compiled", extras=["pipeline"]), None
    if not servable:  # as train records a class defined in a notebook
        runtime, arrays = Runtime("none", reason="step 'model': __main__.Mine is defined"), None
    scratch.mkdir(parents=True, exist_ok=True)
    profile = build_profile(features, pipeline.predict(features), schema)
    extra = write_extra_files(scratch, schema, profile, runtime, arrays)
    import skops.io

    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            extra_files=extra,
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
        )
    return str(mlflow.register_model(info.model_uri, NAME).version)


def wait_for(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, make_frame: Callable[..., pd.DataFrame]
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("serving", artifact_location=(root / "art").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    frame = make_frame(rows=200)
    client = MlflowClient(uri)
    client.set_registered_model_alias(NAME, "champion", log_version(frame, 10, root / "a"))
    client.set_registered_model_alias(NAME, "challenger", log_version(frame, 30, root / "b"))
    yield uri
    shutil.rmtree(root, ignore_errors=True)


def test_serves_the_champion_alias(registry: str) -> None:
    settings = ServeSettings(mlflow_tracking_uri=registry, model_name=NAME)
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200)
        info = client.get("/model").json()
        assert (info["name"], info["version"], info["alias"]) == (NAME, "1", "champion")
        assert info["source"] == f"models:/{NAME}@champion"
        assert client.post("/predict", json=RECORD).status_code == 200


def test_canary_sends_a_share_to_the_challenger(registry: str) -> None:
    settings = ServeSettings(mlflow_tracking_uri=registry, model_name=NAME, canary_fraction=0.3)
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: len(client.get("/model").json().get("variants", {})) == 2)
        answers = [client.post("/predict", json=RECORD).json() for _ in range(300)]
        variants = Counter(answer["variant"] for answer in answers)
        versions = {answer["variant"]: answer["model"]["version"] for answer in answers}
        metrics = client.get("/metrics").text
    assert versions == {"champion": "1", "challenger": "2"}
    assert 50 <= variants["challenger"] <= 130  # 30% of 300, well inside binomial spread
    assert 'ml_predictions_total{label="' in metrics
    assert 'route="/predict",status="200",variant="challenger"' in metrics
    assert (
        'ml_model_info{alias="challenger",name="served-model",variant="challenger",version="2"} 1.0'
        in metrics
    )


def test_reloads_when_the_alias_moves(registry: str) -> None:
    client = MlflowClient(registry)
    settings = ServeSettings(mlflow_tracking_uri=registry, model_name=NAME, reload_seconds=0.2)
    try:
        with TestClient(create_app(settings)) as server:
            wait_for(lambda: server.get("/health/ready").status_code == 200)
            client.set_registered_model_alias(NAME, "champion", "2")
            failures = 0

            def moved() -> bool:
                nonlocal failures
                failures += server.post("/predict", json=RECORD).status_code != 200
                return bool(server.get("/model").json()["version"] == "2")

            wait_for(moved)
            assert failures == 0
    finally:
        client.set_registered_model_alias(NAME, "champion", "1")


def test_a_model_whose_runtime_is_its_pipeline_is_served_by_it(
    registry: str, tmp_path: Path, make_frame: Callable[..., pd.DataFrame]
) -> None:
    frame = make_frame(rows=200)
    version = log_version(frame, 10, tmp_path / "plain", compiled=False)
    MlflowClient(registry).set_registered_model_alias(NAME, "plain", version)
    settings = ServeSettings(mlflow_tracking_uri=registry, model_name=NAME, model_alias="plain")
    records = json.loads(frame.drop(columns=["label"]).head(20).to_json(orient="records"))
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200)
        answer = client.post("/predict", json=records).json()
    assert answer["classes"] == ["no", "yes"]
    assert len(answer["probabilities"]) == 20
    assert np.all(np.isclose(np.sum(answer["probabilities"], axis=1), 1.0))


def test_export_refuses_a_model_nothing_can_serve(
    registry: str,
    tmp_path: Path,
    make_frame: Callable[..., pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    version = log_version(make_frame(rows=200), 10, tmp_path / "none", servable=False)
    MlflowClient(registry).set_registered_model_alias(NAME, "unservable", version)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    monkeypatch.setenv("MODEL_NAME", NAME)
    output = tmp_path / "exported"

    code = main(["export-model", "--alias", "unservable", "--output", str(output)])

    assert code == 2
    assert "step 'model': __main__.Mine is defined" in capsys.readouterr().err
    assert not output.exists()


def test_an_alias_that_names_nothing_lists_those_that_do(
    registry: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    monkeypatch.setenv("MODEL_NAME", NAME)

    assert main(["export-model", "--alias", "nope"]) == 2

    error = capsys.readouterr().err
    assert error.startswith(f"error: {NAME} has no @nope — use one of: @challenger (v2), @cham")
    assert len(error.splitlines()) == 1


def test_promote_to_the_current_champion_says_nothing_changed(
    registry: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    monkeypatch.setenv("MODEL_NAME", NAME)
    champion = MlflowClient(registry).get_model_version_by_alias(NAME, "champion").version

    assert main(["promote", str(champion)]) == 0

    assert capsys.readouterr().out == f"{NAME}@champion is already v{champion}: nothing changed\n"
    assert main(["promote", "99"]) == 2
    assert f"{NAME} has no version 99" in capsys.readouterr().err
