"""Ground truth: checking a label against the target, and scoring labelled predictions.

The same arithmetic serves `/feedback` (each recorded label adds to the live counters),
`feedback --labels` and `compare-live` (a labelled window at once), so the live metrics
and the offline report agree. The metrics are the evaluate stage's, computed from sums:
classification — accuracy, F1 (the positive class, `classes[1]`, when there are two; the
mean over classes otherwise) and log loss; regression — MAE, RMSE and R².
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .schema import Label, Target

# A probability of 0 for the true class would make the log loss infinite (sklearn clips too).
EPSILON = 1e-15
# The metrics computed live, by task, and which way is better (True: higher).
LIVE_METRICS: dict[str, dict[str, bool]] = {
    "classification": {"accuracy": True, "f1": True, "log_loss": False},
    "regression": {"mae": False, "rmse": False, "r2": True},
}


def shown(value: Any) -> str:
    """A value in an error message: short, and never an error itself (a list nested a
    thousand deep has no repr, nor an integer of thousands of digits)."""
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "an object"
    try:
        text = repr(value)
    except ValueError:
        return "an integer too long to show"
    return text if len(text) <= 40 else text[:39] + "…"


def check_actual(value: Any, target: Target) -> tuple[Label | None, str | None]:
    """The label as the target spells it, or why it is refused."""
    if isinstance(value, list | dict):
        return None, f"{shown(value)} is not a label: send a class or a number"
    if target.classes is not None:
        for known in target.classes:
            # JSON and CSV give 1 or "1" for the class 1: the same label (but true is not 1).
            same = str(value) == str(known)
            if same or (value == known and not isinstance(value, bool)):
                return known, None
        classes = ", ".join(map(shown, target.classes[:10]))
        return None, f"{shown(value)} is not a class of the target (one of {classes})"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None, f"{shown(value)} is not a number"
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer past float's range
        return None, f"{shown(value)} is not a number"
    if not math.isfinite(number):
        return None, f"{shown(value)} is not a finite number"
    return number, None


@dataclass
class Sums:
    """What a set of labelled rows adds up to: every metric is a ratio of these."""

    rows: int = 0
    correct: int = 0
    log_loss: float = 0.0
    # per class: [true positives, false positives, false negatives]
    classes: dict[str, list[int]] = field(default_factory=dict)
    abs_error: float = 0.0
    squared_error: float = 0.0
    actual: float = 0.0
    actual_squared: float = 0.0

    def add(
        self,
        prediction: Any,
        probabilities: Sequence[float] | None,
        actual: Any,
        classes: Sequence[Label] | None,
    ) -> None:
        self.rows += 1
        if classes is None:
            error = float(prediction) - float(actual)
            self.abs_error += abs(error)
            self.squared_error += error * error
            self.actual += float(actual)
            self.actual_squared += float(actual) ** 2
            return
        predicted, truth = str(prediction), str(actual)
        self.correct += predicted == truth
        names = [str(known) for known in classes]
        if probabilities is not None and truth in names:
            self.log_loss -= math.log(max(float(probabilities[names.index(truth)]), EPSILON))
        for name in f1_classes(classes):
            counts = self.classes.setdefault(name, [0, 0, 0])
            counts[0] += predicted == name and truth == name
            counts[1] += predicted == name and truth != name
            counts[2] += predicted != name and truth == name

    def metrics(self, task: str) -> dict[str, float]:
        if not self.rows:
            return {}
        n = self.rows
        if task == "regression":
            total = self.actual_squared - self.actual**2 / n
            return {
                "mae": self.abs_error / n,
                "rmse": math.sqrt(self.squared_error / n),
                "r2": 1 - self.squared_error / total if total > 0 else float("nan"),
            }
        scores = [
            2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
            for tp, fp, fn in self.classes.values()
        ]
        return {
            "accuracy": self.correct / n,
            "f1": sum(scores) / len(scores) if scores else float("nan"),
            "log_loss": self.log_loss / n,
        }


def f1_classes(classes: Sequence[Label]) -> list[str]:
    """The classes F1 averages over: the positive one of two, else every class."""
    names = [str(known) for known in classes]
    return names[1:] if len(names) == 2 else names
