"""Model quality: the metrics of each task, which way is better, the quality gate."""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import METRIC_DIRECTIONS, Task


def score(model: Any, features: Any, labels: Any, task: Task) -> dict[str, float]:
    """The task's metrics of a fitted model on (features, labels)."""
    from sklearn import metrics

    predicted = model.predict(features)
    if task == "regression":
        return {
            "rmse": float(np.sqrt(metrics.mean_squared_error(labels, predicted))),
            "mae": float(metrics.mean_absolute_error(labels, predicted)),
            "r2": float(metrics.r2_score(labels, predicted)),
        }
    classes = list(model.classes_)
    probabilities = model.predict_proba(features)
    if len(classes) == 2:
        # model.classes_ is sorted, so column 1 is the class roc_auc_score calls positive
        f1 = metrics.f1_score(labels, predicted, pos_label=classes[1])
        roc_auc = metrics.roc_auc_score(labels, probabilities[:, 1])
    else:
        f1 = metrics.f1_score(labels, predicted, average="macro")
        roc_auc = metrics.roc_auc_score(labels, probabilities, multi_class="ovr", labels=classes)
    return {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "f1": float(f1),
        "roc_auc": float(roc_auc),
        "log_loss": float(metrics.log_loss(labels, probabilities, labels=classes)),
    }


def is_better(metric: str, candidate: float, incumbent: float) -> bool:
    """Strictly better: a tie keeps the incumbent."""
    return candidate > incumbent if METRIC_DIRECTIONS[metric] else candidate < incumbent


def gate_failures(scores: dict[str, float], gate: dict[str, float]) -> list[str]:
    """Metrics that miss their threshold, as readable sentences."""
    failures = []
    for metric, threshold in gate.items():
        value = scores[metric]
        higher = METRIC_DIRECTIONS[metric]
        if (value < threshold) if higher else (value > threshold):
            bound = "at least" if higher else "at most"
            failures.append(f"{metric} = {value:.4f}, the gate asks for {bound} {threshold}")
    return failures
