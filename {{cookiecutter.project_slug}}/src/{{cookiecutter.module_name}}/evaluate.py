"""The `evaluate` stage: test-set metrics, DVC plots, figures, the model card, the gate."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .artifact import load_pipeline
from .config import METRIC_DIRECTIONS, Params, Paths, Settings
from .data import read_split
from .errors import GateError
from .metrics import gate_failures, score
from .schema import FeatureSchema, to_model_frame


def write_plots(model: Any, features: pd.DataFrame, labels: pd.Series, task: str) -> None:
    """CSV files that dvc.yaml's plots section draws (`dvc plots show`)."""
    Paths.plots.mkdir(parents=True, exist_ok=True)
    predicted = model.predict(features)
    if task == "regression":
        actual = labels.to_numpy(dtype=float)
        frame = pd.DataFrame({"actual": actual, "predicted": predicted})
        frame["residual"] = frame["actual"] - frame["predicted"]
        frame.to_csv(Paths.plots / "predictions.csv", index=False)
        return
    from sklearn.metrics import roc_curve
    from sklearn.preprocessing import label_binarize

    frame = pd.DataFrame(
        {
            "actual": labels.astype(str),
            "predicted": pd.Series(predicted, index=labels.index).astype(str),
        }
    )
    frame.to_csv(Paths.plots / "predictions.csv", index=False)
    classes = list(model.classes_)
    probabilities = model.predict_proba(features)
    if len(classes) == 2:
        truth, scores = (labels == classes[1]).to_numpy(), probabilities[:, 1]
    else:  # micro-averaged one-vs-rest
        truth, scores = label_binarize(labels, classes=classes).ravel(), probabilities.ravel()
    fpr, tpr, _ = roc_curve(truth, scores)
    pd.DataFrame({"fpr": fpr, "tpr": tpr}).to_csv(Paths.plots / "roc.csv", index=False)


@dataclass
class Comparison:
    """This model against @champion on the same test split, for the card."""

    version: str | None = None  # the champion's; None: there is no champion yet
    this_model: bool = False  # the champion is the model evaluated (evaluate ran again)
    scores: dict[str, float] = field(default_factory=dict)  # empty: it could not score
    figure: Path | None = None


def draw_figures(
    params: Params, model: Any, features: pd.DataFrame, labels: pd.Series, scores: dict[str, float]
) -> list[Path]:
    """The task's figures, permutation importance and the gate, in Paths.figures."""
    from . import figures

    shutil.rmtree(Paths.figures, ignore_errors=True)  # no figure of an earlier run lingers
    draw = figures.classification_figures
    if params.task == "regression":
        draw = figures.regression_figures
    drawn = draw(model, features, labels, Paths.figures)
    metric = params.registry.primary_metric
    importance = figures.permutation_importance(
        model, features, labels, params.task, metric, params.seed
    )
    drawn.append(figures.importance_figure(importance, metric, Paths.figures / "importance.png"))
    drawn.append(figures.gate_figure(scores, params.evaluate.gate, Paths.figures / "gate.png"))
    return drawn


def compare_with_champion(
    params: Params, settings: Settings, model: Any, features: pd.DataFrame, labels: pd.Series
) -> Comparison:
    """Score @champion on this test split and draw both models on the same axes."""
    from .figures import champion_figure
    from .registry import load_champion

    champion = load_champion(settings)
    if champion is None:
        return Comparison()
    run_id = json.loads(Paths.run.read_text(encoding="utf-8"))["run_id"]
    if champion.run_id == run_id:
        return Comparison(champion.version, this_model=True)
    if champion.pipeline is None:
        return Comparison(champion.version)
    try:
        scores = score(champion.pipeline, features, labels, params.task)
    except (KeyError, ValueError):  # e.g. the features changed since it was trained
        return Comparison(champion.version)
    models = {"this model": model, f"champion v{champion.version}": champion.pipeline}
    path = champion_figure(params.task, models, features, labels, Paths.figures / "champion.png")
    return Comparison(champion.version, scores=scores, figure=path)


def image(path: Path) -> str:
    """A Markdown image link relative to the card, so it renders on GitHub and in MLflow."""
    from .figures import FILES

    return f"![{FILES[path.stem]}]({path.relative_to(Paths.model_card.parent).as_posix()})"


def champion_section(comparison: Comparison, scores: dict[str, float], metric: str) -> list[str]:
    lines = ["## Against the champion", ""]
    if comparison.version is None:
        return [*lines, "No @champion yet: `register` makes this model the champion.", ""]
    champion = f"@champion (v{comparison.version})"
    if comparison.this_model:
        return [*lines, f"This model is {champion}.", ""]
    if not comparison.scores:
        return [
            *lines,
            f"{champion} cannot score this test split (it was trained on other features or "
            "its code is gone): `register` promotes this model.",
            "",
        ]
    lines += [f"| metric | this model | {champion} |", "|---|---|---|"]
    for name, value in scores.items():
        marker = " ◀" if name == metric else ""
        lines.append(f"| {name}{marker} | {value:.4f} | {comparison.scores[name]:.4f} |")
    lines += [
        "",
        f"Both scored on this test split. `register` promotes this model only if its {metric} "
        "(◀) is better.",
        "",
    ]
    if comparison.figure is not None:
        lines += [image(comparison.figure), ""]
    return lines


def model_card(
    params: Params,
    schema: FeatureSchema,
    scores: dict[str, float],
    failures: list[str],
    rows: dict[str, int],
    figures: list[Path],
    comparison: Comparison,
) -> str:
    chosen = params.train.model
    hyperparameters = params.train.chosen()
    target = schema.target
    if target.classes is not None:
        target_text = f"classes {', '.join(map(str, target.classes))}"
    else:
        target_text = f"values from {target.minimum:g} to {target.maximum:g}"
    lines = [
        "# Model card",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC by `evaluate`.",
        "",
        "## Model",
        "",
        f"- Task: {params.task}; estimator: `{chosen}` in a scikit-learn Pipeline",
        f"- Hyperparameters: `{json.dumps(hyperparameters)}`; seed {params.seed}",
        "",
        "## Data",
        "",
        f"- Source: `{params.data.path}`; target `{target.name}` ({target_text})",
        f"- Rows: {rows['train']} for training, {rows['test']} held out for testing "
        f"(test_size {params.data.test_size})",
        f"- Production rows (`{params.data.production}`, labelled through feedback): "
        f"{rows.get('production_train', 0)} in training, {rows.get('production_test', 0)} in test",
        "",
        "## Features",
        "",
        "| feature | kind | missing values seen | range or categories |",
        "|---|---|---|---|",
    ]
    for feature in schema.features:
        if feature.kind == "numeric":
            spread = f"{feature.minimum:g} to {feature.maximum:g}"
        else:
            categories = feature.categories or []
            spread = ", ".join(categories[:8]) + (" …" if len(categories) > 8 else "")
        missing = "yes" if feature.nullable else "no"
        lines.append(f"| {feature.name} | {feature.kind} | {missing} | {spread} |")
    lines += ["", "## Test metrics", "", "| metric | value | gate |", "|---|---|---|"]
    for metric, value in scores.items():
        threshold = params.evaluate.gate.get(metric)
        gate = ""
        if threshold is not None:
            gate = f"{'≥' if METRIC_DIRECTIONS[metric] else '≤'} {threshold}"
        lines.append(f"| {metric} | {value:.4f} | {gate} |")
    verdict = "**failed**: " + "; ".join(failures) if failures else "passed"
    lines += ["", f"Quality gate: {verdict}.", ""]
    lines += champion_section(comparison, scores, params.registry.primary_metric)
    lines += ["## Figures", "", "On the test split.", ""]
    lines += [line for path in figures for line in (image(path), "")]
    lines += [
        "## Intended use",
        "",
        "Predictions for rows shaped like the training data (the features above), from the",
        "same population. The API rejects inputs that break the feature schema.",
        "",
        "## Limits",
        "",
        "- Metrics come from one held-out split; expect variation on new data.",
        "- Numeric values outside the ranges above and categories not listed were never seen",
        "  in training: predictions there are extrapolations (unknown categories are ignored).",
        "- No fairness or bias analysis has been run; do that before consequential use.",
        "- Watch for drift: the reference profile of the training data is logged with the model.",
        "",
    ]
    return "\n".join(lines)


def evaluate(params: Params, settings: Settings) -> dict[str, float]:
    """Score the trained model on the test split; raise GateError if the gate is missed.

    The figures reach the MLflow run here, the metrics and card with `register`; a model
    that fails the gate has them logged here.
    """
    schema = FeatureSchema.load(Paths.schema)
    raw, labels = read_split(Paths.test, schema)
    features = to_model_frame(raw, schema)
    model = load_pipeline(Paths.model)
    scores = score(model, features, labels, params.task)
    Paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    Paths.metrics.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    write_plots(model, features, labels, params.task)

    failures = gate_failures(scores, params.evaluate.gate)
    rows = {"train": len(read_split(Paths.train, schema)[1]), "test": len(labels)}
    if Paths.split.is_file():
        rows.update(json.loads(Paths.split.read_text(encoding="utf-8")))
    Paths.model_card.parent.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(params, model, features, labels, scores)
    comparison = compare_with_champion(params, settings, model, features, labels)
    card = model_card(params, schema, scores, failures, rows, figures, comparison)
    Paths.model_card.write_text(card, encoding="utf-8")
    from . import tracking

    tracking.log_figures(settings)
    if failures:
        tracking.log_test_results(settings, scores, passed=False)
        raise GateError("quality gate failed: " + "; ".join(failures))
    return scores
