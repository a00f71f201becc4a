"""evaluate's figures: PNGs of the expected size, linked from the card, logged to MLflow.

The stages run in-process on the small mixed CSV, for the task params.yaml names, against
a temporary sqlite MLflow store; a second model then meets the first as champion.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from {{ cookiecutter.module_name }}.artifact import (
    load_pipeline,
)
from {{ cookiecutter.module_name }}.config import (
    Params,
    Paths,
    Settings,
    Task,
    load_params,
)
from {{ cookiecutter.module_name }}.data import (
    prepare,
    read_split,
)
from {{ cookiecutter.module_name }}.evaluate import (
    evaluate,
)
from {{ cookiecutter.module_name }}.figures import (
    permutation_importance,
)
from {{ cookiecutter.module_name }}.registry import (
    register,
)
from {{ cookiecutter.module_name }}.schema import (
    FeatureSchema,
    to_model_frame,
)
from {{ cookiecutter.module_name }}.train import (
    train,
)
{%- if cookiecutter.feature_store == "feast" %}

from feature_store_support import build_store, with_identity
{%- endif %}

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES: dict[str, set[str]] = {
    "classification": {"roc", "precision_recall", "confusion_matrix", "calibration"},
    "regression": {"predicted_vs_actual", "residuals"},
}
BOTH = {"importance", "gate"}
PROJECT = Path(__file__).resolve().parents[1]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG, f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def card_images(card: str) -> list[str]:
    return re.findall(r"!\[[^\]]+\]\(([^)]+)\)", card)


def task_params(project_root: Path, task: Task) -> Params:
    params = load_params(project_root / "params.yaml")
    params.task = task
    params.data.path = Path("mixed.csv")
    params.data.target = "label" if task == "classification" else "amount"
    params.train.model = "random_forest"
    params.train.random_forest.n_estimators = 20
    params.evaluate.gate = {}
    params.registry.primary_metric = "roc_auc" if task == "classification" else "rmse"
    return params


@pytest.fixture(scope="module")
def evaluated(
    tmp_path_factory: pytest.TempPathFactory, make_frame: Callable[..., pd.DataFrame]
) -> Iterator[tuple[Params, Settings]]:
    """A project-shaped folder where prepare, train and evaluate ran (relative paths)."""
    task: Task = load_params(PROJECT / "params.yaml").task
    root = tmp_path_factory.mktemp(task)
    frame = make_frame(rows=200)
    # the regression target depends on size and colour, not on noise
    frame["amount"] = frame["size"].fillna(50) * 2 + (frame["colour"] == "red") * 30
    frame = frame.drop(columns=["label" if task == "regression" else "amount"])
    before = Path.cwd()
    params = task_params(PROJECT, task)
{%- if cookiecutter.feature_store == "feast" %}
    frame = with_identity(frame, params)
{%- endif %}
    frame.to_csv(root / "mixed.csv", index=False)
    settings = Settings(
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        model_name=f"figures-{task}",
        experiment_name=f"figures-{task}",
    )
    os.chdir(root)
    try:
        prepare(params)
{%- if cookiecutter.feature_store == "feast" %}
        build_store(root, params)  # train reads its features from the store
{%- endif %}
        train(params, settings)
        evaluate(params, settings)
        yield params, settings
    finally:
        os.chdir(before)


def test_figures_are_640_by_480_pngs_linked_from_the_card(
    evaluated: tuple[Params, Settings],
) -> None:
    params, _ = evaluated
    expected = FIGURES[params.task] | BOTH
    drawn = {path.stem for path in Paths.figures.glob("*.png")}
    assert drawn == expected
    for name in expected:
        assert png_size(Paths.figures / f"{name}.png") == (640, 480)
    card = Paths.model_card.read_text(encoding="utf-8")
    links = card_images(card)
    assert {Path(link).stem for link in links} == expected
    for link in links:  # relative to the card, as GitHub and MLflow resolve them
        assert not Path(link).is_absolute()
        assert (Paths.model_card.parent / link).is_file(), link
    assert "No @champion yet" in card


def test_figures_are_logged_to_the_training_run(evaluated: tuple[Params, Settings]) -> None:
    params, settings = evaluated
    run_id = json.loads(Paths.run.read_text(encoding="utf-8"))["run_id"]
    client = MlflowClient(settings.mlflow_tracking_uri)
    logged = {Path(item.path).name for item in client.list_artifacts(run_id, "figures")}
    assert logged == {f"{name}.png" for name in FIGURES[params.task] | BOTH}


def test_permutation_importance_ranks_what_the_label_depends_on_above_noise(
    evaluated: tuple[Params, Settings],
) -> None:
    params, _ = evaluated
    schema = FeatureSchema.load(Paths.schema)
    raw, labels = read_split(Paths.test, schema)
    features = to_model_frame(raw, schema)
    model = load_pipeline(Paths.model)
    metric = params.registry.primary_metric
    importance = permutation_importance(model, features, labels, params.task, metric, seed=0)
    assert list(importance.columns) == ["mean", "std"]
    assert importance["mean"]["size"] > importance["mean"]["noise"]
    assert importance["mean"]["colour"] > importance["mean"]["noise"]
    assert importance.index[-1] == "noise"


def test_the_card_shows_a_new_model_beside_the_champion(
    evaluated: tuple[Params, Settings],
) -> None:
    params, settings = evaluated
    first = register(params, settings)
    assert first["champion"] == first["version"]
    # a weaker challenger: fewer trees, another seed
    params.train.random_forest.n_estimators = 3
    params.seed += 1
    train(params, settings)
    scores = evaluate(params, settings)
    card = Paths.model_card.read_text(encoding="utf-8")
    header = f"| metric | this model | @champion (v{first['version']}) |"
    assert header in card
    metric = params.registry.primary_metric
    row = next(line for line in card.splitlines() if line.startswith(f"| {metric} ◀ |"))
    this_model, champion = (float(cell) for cell in row.strip("|").split("|")[1:])
    assert this_model == pytest.approx(scores[metric], abs=1e-4)
    assert champion == pytest.approx(first["challenger_score"], abs=1e-4)
    assert "](figures/champion.png)" in card
    assert png_size(Paths.figures / "champion.png") == (640, 480)
