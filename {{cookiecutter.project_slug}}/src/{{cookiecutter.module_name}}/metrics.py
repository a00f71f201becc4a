"""Model quality: the metrics of each task, which way is better, the quality gate."""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import METRIC_DIRECTIONS, TASK_METRICS, Task


def score(model: Any, features: Any, labels: Any, task: Task) -> dict[str, float]:
    """The task's metrics of a fitted model on (features, labels)."""
    predicted = model.predict(features)
    if task == "regression":
        return score_outputs(labels, predicted, None, [], task)
    return score_outputs(
        labels, predicted, model.predict_proba(features), list(model.classes_), task
    )


def score_outputs(
    labels: Any, predicted: Any, probabilities: Any, classes: list[Any], task: Task
) -> dict[str, float]:
    """The task's metrics of predictions (and class probabilities) against the labels."""
    return {
        name: metric_value(name, labels, predicted, probabilities, classes)
        for name in TASK_METRICS[task]
    }


def metric_value(
    name: str, labels: Any, predicted: Any, probabilities: Any, classes: list[Any]
) -> float:
    """One metric; `probabilities` (columns in `classes` order) only for classification."""
    from sklearn import metrics

    binary = len(classes) == 2
    if name == "rmse":
        value = np.sqrt(metrics.mean_squared_error(labels, predicted))
    elif name == "mae":
        value = metrics.mean_absolute_error(labels, predicted)
    elif name == "r2":
        value = metrics.r2_score(labels, predicted)
    elif name == "accuracy":
        value = metrics.accuracy_score(labels, predicted)
    elif name == "f1" and binary:
        # model.classes_ is sorted, so column 1 is the class roc_auc_score calls positive
        value = metrics.f1_score(labels, predicted, pos_label=classes[1])
    elif name == "f1":
        value = metrics.f1_score(labels, predicted, average="macro")
    elif name == "roc_auc" and binary:
        value = metrics.roc_auc_score(labels, probabilities[:, 1])
    elif name == "roc_auc":
        value = metrics.roc_auc_score(labels, probabilities, multi_class="ovr", labels=classes)
    elif name == "log_loss":
        value = metrics.log_loss(labels, probabilities, labels=classes)
    else:
        raise KeyError(f"unknown metric {name!r}")
    return float(value)


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
