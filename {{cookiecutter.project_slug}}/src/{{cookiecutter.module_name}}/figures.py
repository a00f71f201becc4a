"""Evaluation figures: the PNGs `evaluate` draws for the model card and the MLflow run.

All 640 x 480 pixels, drawn on matplotlib Figure objects with the Agg canvas (no display,
no pyplot state), so they draw in CI, in a container and on a server alike:
- classification: ROC and precision-recall curves, the confusion matrix, a reliability
  (calibration) curve;
- regression: predicted against actual, residuals against predicted;
- both: permutation importance on the test split (top 15), each metric against the gate,
  and this model beside the champion on one plot when there is a champion.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import METRIC_DIRECTIONS, Task
from .metrics import metric_value

WIDTH, HEIGHT, DPI = 6.4, 4.8, 100  # inches at DPI: 640 x 480 pixels
TOP_FEATURES = 15
IMPORTANCE_REPEATS = 5
IMPORTANCE_ROWS = 2000  # a sample of a larger test split: the ranking, not every row, matters
# The name each figure has in the card and on disk.
FILES = {
    "roc": "ROC curve",
    "precision_recall": "Precision-recall curve",
    "confusion_matrix": "Confusion matrix",
    "calibration": "Reliability (calibration) curve",
    "predicted_vs_actual": "Predicted vs actual",
    "residuals": "Residuals vs predicted",
    "importance": "Permutation importance",
    "gate": "Test metrics against the gate",
    "champion": "This model and the champion",
}


@contextmanager
def figure(path: Path) -> Iterator[Any]:
    """Axes to draw on; the figure is saved to `path` when the block ends."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawing = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    FigureCanvasAgg(drawing)
    axes = drawing.add_subplot()
    yield axes
    drawing.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # No metadata: the same model draws the same bytes, so DVC sees no change.
    drawing.savefig(path, dpi=DPI, metadata={"Software": None})


def positive_scores(model: Any, features: pd.DataFrame, labels: pd.Series) -> tuple[Any, Any]:
    """(truth, score) for the binary curves: the second class, or one-vs-rest micro-average."""
    from sklearn.preprocessing import label_binarize

    classes = list(model.classes_)
    probabilities = model.predict_proba(features)
    if len(classes) == 2:
        return (labels == classes[1]).to_numpy(), probabilities[:, 1]
    return label_binarize(labels, classes=classes).ravel(), probabilities.ravel()


def roc(axes: Any, truth: Any, scores: Any, label: str, style: str = "-") -> None:
    from sklearn.metrics import auc, roc_curve

    fpr, tpr, _ = roc_curve(truth, scores)
    axes.plot(fpr, tpr, linestyle=style, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=FILES["roc"])
    axes.legend(loc="lower right")


def predicted_vs_actual(
    axes: Any, actual: Any, predicted: Any, label: str, marker: str = "o"
) -> None:
    axes.scatter(actual, predicted, s=12, alpha=0.6, label=label, marker=marker)
    low, high = float(np.min(actual)), float(np.max(actual))
    axes.plot([low, high], [low, high], linestyle=":", color="grey")
    axes.set(xlabel="actual", ylabel="predicted", title=FILES["predicted_vs_actual"])
    axes.legend(loc="upper left")


def classification_figures(
    model: Any, features: pd.DataFrame, labels: pd.Series, folder: Path
) -> list[Path]:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay

    truth, scores = positive_scores(model, features, labels)
    with figure(folder / "roc.png") as axes:
        roc(axes, truth, scores, "test split")
    with figure(folder / "precision_recall.png") as axes:
        PrecisionRecallDisplay.from_predictions(truth, scores, ax=axes, name="test split")
        axes.set_title(FILES["precision_recall"])
    with figure(folder / "confusion_matrix.png") as axes:
        predicted = pd.Series(model.predict(features), index=labels.index)
        ConfusionMatrixDisplay.from_predictions(
            labels.astype(str), predicted.astype(str), ax=axes, colorbar=False
        )
        axes.set_title(f"{FILES['confusion_matrix']} (test split)")
    with figure(folder / "calibration.png") as axes:
        observed, expected = calibration_curve(truth, scores, n_bins=10)
        axes.plot(expected, observed, marker="o", label="test split")
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
        axes.set(
            xlabel="predicted probability",
            ylabel="observed frequency",
            title=FILES["calibration"],
        )
        axes.legend(loc="upper left")
    names = ("roc", "precision_recall", "confusion_matrix", "calibration")
    return [folder / f"{name}.png" for name in names]


def regression_figures(
    model: Any, features: pd.DataFrame, labels: pd.Series, folder: Path
) -> list[Path]:
    actual = labels.to_numpy(dtype=float)
    predicted = np.asarray(model.predict(features), dtype=float)
    with figure(folder / "predicted_vs_actual.png") as axes:
        predicted_vs_actual(axes, actual, predicted, "test split")
    with figure(folder / "residuals.png") as axes:
        axes.scatter(predicted, actual - predicted, s=12, alpha=0.6)
        axes.axhline(0, linestyle=":", color="grey")
        axes.set(xlabel="predicted", ylabel="actual - predicted", title=FILES["residuals"])
    return [folder / "predicted_vs_actual.png", folder / "residuals.png"]


def permutation_importance(
    model: Any, features: pd.DataFrame, labels: pd.Series, task: Task, metric: str, seed: int
) -> pd.DataFrame:
    """How much `metric` worsens when each feature's values are shuffled (mean, std).

    scikit-learn's permutation_importance calls predict once per feature and repeat; here
    every shuffled copy goes into one frame and one predict call, which is what costs.
    """
    if len(features) > IMPORTANCE_ROWS:
        features = features.sample(IMPORTANCE_ROWS, random_state=seed)
        labels = labels.loc[features.index]
    rng = np.random.default_rng(seed)
    copies = [features]
    for name in features.columns:
        for _ in range(IMPORTANCE_REPEATS):
            shuffled = features.copy()
            shuffled[name] = features[name].to_numpy()[rng.permutation(len(features))]
            copies.append(shuffled)
    stacked = pd.concat(copies, ignore_index=True)
    predicted = np.asarray(model.predict(stacked))
    probabilities = model.predict_proba(stacked) if task == "classification" else None
    classes = list(model.classes_) if task == "classification" else []
    rows, truth = len(features), labels.to_numpy()

    def block_score(block: int) -> float:
        part = slice(block * rows, (block + 1) * rows)
        chance = probabilities[part] if probabilities is not None else None
        return metric_value(metric, truth, predicted[part], chance, classes)

    baseline = block_score(0)
    sign = 1.0 if METRIC_DIRECTIONS[metric] else -1.0
    drops = np.array(
        [sign * (baseline - block_score(block)) for block in range(1, len(copies))]
    ).reshape(len(features.columns), IMPORTANCE_REPEATS)
    return pd.DataFrame(
        {"mean": drops.mean(axis=1), "std": drops.std(axis=1)}, index=features.columns
    ).sort_values("mean", ascending=False)


def importance_figure(importance: pd.DataFrame, metric: str, path: Path) -> Path:
    top = importance.head(TOP_FEATURES).iloc[::-1]  # barh draws bottom-up: largest on top
    with figure(path) as axes:
        axes.barh([str(name) for name in top.index], top["mean"], xerr=top["std"])
        axes.axvline(0, color="grey", linewidth=0.8)
        axes.set(
            xlabel=f"{metric} lost when the feature is shuffled",
            title=f"{FILES['importance']} (test split, top {TOP_FEATURES})",
        )
    return path


def gate_figure(scores: dict[str, float], gate: dict[str, float], path: Path) -> Path:
    """Each metric as a bar; the gate's threshold, where it sets one, as a red mark."""
    names = list(scores)
    with figure(path) as axes:
        bars = axes.bar(names, [scores[name] for name in names], color="tab:blue")
        for bar, name in zip(bars, names, strict=True):
            if name in gate:
                left = bar.get_x()
                axes.hlines(gate[name], left, left + bar.get_width(), colors="tab:red", lw=3)
        axes.set(title=f"{FILES['gate']} (red: the threshold)")
    return path


def champion_figure(
    task: Task, models: dict[str, Any], features: pd.DataFrame, labels: pd.Series, path: Path
) -> Path:
    """The models on the same axes: ROC curves, or predicted against actual."""
    with figure(path) as axes:
        # dashed and crosses for the champion: identical models stay visible as two
        styles = (("-", "o"), ("--", "x"))
        for (name, model), (style, marker) in zip(models.items(), styles, strict=False):
            if task == "classification":
                truth, scores = positive_scores(model, features, labels)
                roc(axes, truth, scores, name, style)
            else:
                actual = labels.to_numpy(dtype=float)
                predicted_vs_actual(axes, actual, model.predict(features), name, marker)
        axes.set_title(FILES["champion"])
    return path
