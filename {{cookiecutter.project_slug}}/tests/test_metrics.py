from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LogisticRegression

from {{ cookiecutter.module_name }}.metrics import (
    gate_failures,
    is_better,
    score,
)
from {{ cookiecutter.module_name }}.profile import build_profile
from {{ cookiecutter.module_name }}.schema import (
    infer_schema,
    to_model_frame,
)


def test_classification_metrics_of_a_perfect_model() -> None:
    features = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    labels = pd.Series(["a", "a", "a", "b", "b", "b"])
    model = LogisticRegression(C=100).fit(features, labels)

    scores = score(model, features, labels, "classification")

    assert scores["accuracy"] == 1.0
    assert scores["f1"] == 1.0
    assert scores["roc_auc"] == 1.0
    assert 0 < scores["log_loss"] < 0.3


def test_regression_metrics_of_a_constant_model() -> None:
    features = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    labels = pd.Series([1.0, 3.0, 1.0, 3.0])
    model = DummyRegressor().fit(features, labels)

    scores = score(model, features, labels, "regression")

    assert scores == pytest.approx({"rmse": 1.0, "mae": 1.0, "r2": 0.0})


@pytest.mark.parametrize(
    ("metric", "candidate", "incumbent", "better"),
    [
        ("roc_auc", 0.91, 0.90, True),
        ("roc_auc", 0.90, 0.90, False),
        ("rmse", 10.0, 12.0, True),
        ("rmse", 12.0, 10.0, False),
        ("log_loss", 0.2, 0.3, True),
    ],
)
def test_is_better_follows_the_metric_direction(
    metric: str, candidate: float, incumbent: float, better: bool
) -> None:
    assert is_better(metric, candidate, incumbent) is better


def test_gate_reports_each_missed_threshold() -> None:
    scores = {"roc_auc": 0.8, "accuracy": 0.95, "log_loss": 0.7}
    failures = gate_failures(scores, {"roc_auc": 0.9, "accuracy": 0.9, "log_loss": 0.5})
    assert failures == [
        "roc_auc = 0.8000, the gate asks for at least 0.9",
        "log_loss = 0.7000, the gate asks for at most 0.5",
    ]
    assert gate_failures(scores, {"accuracy": 0.9}) == []


def test_profile_bins_numbers_counts_categories_and_missing(frame: pd.DataFrame) -> None:
    schema = infer_schema(frame, "label", "classification")
    features = to_model_frame(frame, schema)

    profile = build_profile(features, frame["label"].to_numpy(), schema)

    size = profile["features"]["size"]
    assert len(size["frequencies"]) == len(size["edges"]) + 1
    assert sum(size["frequencies"]) == pytest.approx(1.0)
    assert size["missing"] == pytest.approx(frame["size"].isna().mean())
    colour = profile["features"]["colour"]
    assert set(colour["frequencies"]) == {"red", "green", "blue"}
    assert colour["unseen"] == 0.0
    assert set(profile["prediction"]["frequencies"]) == {"yes", "no"}
    assert profile["rows"] == len(frame)
    assert np.all(np.diff(size["edges"]) > 0)
