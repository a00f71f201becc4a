"""The stages in-process on a small mixed CSV, against a temporary sqlite MLflow store."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from {{ cookiecutter.module_name }}.artifact import (
    PROFILE,
    SCHEMA,
    Runtime,
)
from {{ cookiecutter.module_name }}.config import (
    Params,
    Paths,
    Settings,
    load_params,
)
from {{ cookiecutter.module_name }}.data import prepare
from {{ cookiecutter.module_name }}.errors import (
    GateError,
    RegistryError,
)
from {{ cookiecutter.module_name }}.evaluate import evaluate
from {{ cookiecutter.module_name }}.registry import (
    list_versions,
    promote,
    register,
    rollback,
)
from {{ cookiecutter.module_name }}.train import train
{%- if cookiecutter.feature_store == "feast" %}

from feature_store_support import build_store, with_identity
{%- endif %}


@pytest.fixture(scope="module")
def workspace(
    tmp_path_factory: pytest.TempPathFactory, make_frame: Callable[..., pd.DataFrame]
) -> Iterator[Path]:
    """A project-shaped folder to run the stages in (they use relative paths)."""
    root = tmp_path_factory.mktemp("workspace")
{%- if cookiecutter.feature_store == "feast" %}
    frame = with_identity(make_frame(rows=200), make_params(Path(__file__).resolve().parents[1]))
{%- else %}
    frame = make_frame(rows=200)
{%- endif %}
    frame.to_csv(root / "mixed.csv", index=False)
    before = Path.cwd()
    os.chdir(root)
    yield root
    os.chdir(before)


@pytest.fixture(scope="module")
def settings(workspace: Path) -> Settings:
    return Settings(
        mlflow_tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}",
        model_name="test-model",
        experiment_name="test-experiment",
    )


def make_params(project_root: Path, model: str = "random_forest", **gate: float) -> Params:
    params = load_params(project_root / "params.yaml")
    params.task = "classification"
    params.data.path = Path("mixed.csv")
    params.data.target = "label"
    params.train.model = model  # type: ignore[assignment]
    params.train.random_forest.n_estimators = 30
    params.evaluate.gate = gate
    params.registry.primary_metric = "roc_auc"
    return params


@pytest.fixture(scope="module")
def first(workspace: Path, settings: Settings) -> dict[str, object]:
    params = make_params(Path(__file__).resolve().parents[1])
    prepare(params)
{%- if cookiecutter.feature_store == "feast" %}
    build_store(workspace, params)  # train reads its features from the store
{%- endif %}
    run = train(params, settings)
    evaluate(params, settings)
    return {"run": run, "registration": register(params, settings)}


def test_first_model_becomes_champion(first: dict[str, object], settings: Settings) -> None:
    registration = first["registration"]
    assert isinstance(registration, dict)
    assert registration["decision"] == "promoted: no champion yet"
    client = MlflowClient(settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    challenger = client.get_model_version_by_alias(settings.model_name, "challenger")
    assert str(champion.version) == str(challenger.version) == registration["version"]
    assert champion.tags["decision"] == "promoted: no champion yet"


def test_training_run_is_fully_logged(first: dict[str, object], settings: Settings) -> None:
    run_record = first["run"]
    assert isinstance(run_record, dict)
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(str(run_record["run_id"]))
    assert run.data.params["train.model"] == "random_forest"
    assert {"train_roc_auc", "test_roc_auc", "test_accuracy"} <= set(run.data.metrics)
    assert {"git_commit", "dvc_params_hash"} <= set(run.data.tags)
    assert run.data.tags["quality_gate"] == "passed"
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"schema.json", "profile.json", "model_card.md", "plots"} <= artifacts
    # the model directory carries its schema, profile and how it is served
    assert (Paths.model / SCHEMA).is_file()
    assert (Paths.model / PROFILE).is_file()
    assert Runtime.load(Paths.model).predictor == "compiled"
    assert run.data.tags["serving.predictor"] == "compiled"
    assert json.loads(Paths.metrics.read_text(encoding="utf-8"))["roc_auc"] > 0.8


def test_artifacts_stay_out_of_the_deprecated_mlruns_store(
    first: dict[str, object], workspace: Path
) -> None:
    assert (workspace / "mlartifacts").is_dir()
    assert not (workspace / "mlruns").exists()


def test_challenger_that_is_not_better_keeps_the_champion(
    first: dict[str, object], settings: Settings
) -> None:
    champion_before = MlflowClient(settings.mlflow_tracking_uri).get_model_version_by_alias(
        settings.model_name, "champion"
    )
    # Same data, same params: the same scores, and a tie keeps the incumbent.
    params = make_params(Path(__file__).resolve().parents[1])
    train(params, settings)
    evaluate(params, settings)
    registration = register(params, settings)

    client = MlflowClient(settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert str(champion.version) == str(champion_before.version)
    challenger = client.get_model_version_by_alias(settings.model_name, "challenger")
    assert str(challenger.version) == registration["version"]
    assert challenger.tags["decision"].startswith("kept champion")
    assert float(challenger.tags["champion_score"]) == pytest.approx(
        float(challenger.tags["challenger_score"])
    )


def test_promote_and_rollback(first: dict[str, object], settings: Settings) -> None:
    client = MlflowClient(settings.mlflow_tracking_uri)
    name = settings.model_name
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    challenger = str(client.get_model_version_by_alias(name, "challenger").version)
    assert champion != challenger

    assert promote(client, name, challenger) == champion
    assert str(client.get_model_version_by_alias(name, "champion").version) == challenger
    assert client.get_model_version(name, challenger).tags["previous_champion"] == champion

    assert rollback(client, name) == (challenger, champion)
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion

    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(client, name)
    with pytest.raises(RegistryError, match="no version 999"):
        promote(client, name, "999")

    rows = list_versions(client, name)
    versions = [int(row["version"]) for row in rows]
    assert versions == sorted(versions, reverse=True)
    assert "champion" in next(row for row in rows if row["version"] == champion)["aliases"]


def test_gate_failure_stops_with_the_metric_named(
    first: dict[str, object], settings: Settings
) -> None:
    params = make_params(Path(__file__).resolve().parents[1], roc_auc=1.01)
    with pytest.raises(GateError, match=r"roc_auc = .*at least 1.01"):
        evaluate(params, settings)
    card = Paths.model_card.read_text(encoding="utf-8")
    assert "Quality gate: **failed**" in card
