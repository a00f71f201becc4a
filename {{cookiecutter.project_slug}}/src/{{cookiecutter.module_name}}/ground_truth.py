"""Labels offline: `feedback --labels` (a CSV of labels joined with the prediction log)
and `compare-live` (champion and challenger on the same labelled window).

Both work on the prediction store, the one `/feedback` writes to, so labels given in
bulk and labels given live are recorded once per id and counted the same way.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import DataError
from .feedback import LIVE_METRICS, Sums, check_actual
from .ids import ID_FIELD, problem
from .prediction_store import Labelled, PredictionStore, Stored
from .schema import FeatureSchema

LABEL_COLUMNS = (ID_FIELD, "actual")
# compare-live: a difference counts when this unlikely under "no difference" (one-sided).
SIGNIFICANCE = 0.05


@dataclass
class Imported:
    recorded: int = 0
    duplicate: int = 0
    rejected: int = 0
    rows: list[Labelled] = field(default_factory=list)


def read_labels(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a labels CSV with the columns prediction_id and actual."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in LABEL_COLUMNS if name not in (reader.fieldnames or [])]
        if missing:
            found = ", ".join(reader.fieldnames or []) or "none"
            raise DataError(f"{path}: column {missing[0]!r} not found (columns: {found})")
        yield from enumerate(reader, start=2)


def read_log(directory: Path, wanted: set[str]) -> dict[str, Stored]:
    """The prediction log's rows whose id is wanted (every file, rotated ones too)."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no prediction log here (--log, PREDICTION_LOG_DIR)")
    found: dict[str, Stored] = {}
    for path in sorted(directory.glob("predictions-*.jsonl")):
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line cut short by a crash: the others still count
                row_id = record.get("id")
                if row_id in wanted and row_id not in found:
                    found[row_id] = Stored(
                        id=row_id,
                        served_at=stamp(record["ts"]),
                        model=record["model"],
                        version=str(record["version"]),
                        variant=record["variant"],
                        inputs=record.get("inputs"),
                        prediction=record["prediction"],
                        probabilities=record.get("probabilities"),
                    )
    return found


def stamp(text: str) -> float:
    """The log's UTC time (2026-12-02T15:40:01.112Z) as Unix time."""
    import calendar

    seconds, _, fraction = text.rstrip("Z").partition(".")
    parsed = time.strptime(seconds, "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(parsed) + (float(f"0.{fraction}") if fraction else 0.0)


def import_labels(
    store: PredictionStore, labels: Path, log_dir: Path, schema: FeatureSchema, rejects: Path
) -> Imported:
    """Record a CSV of labels: rows the log has and whose label fits the target.

    Rows that cannot be recorded (no such id in the log, a bad id or label) go to
    `rejects` with the reason; the others are recorded, the first label of an id kept.
    """
    rows = list(read_labels(labels))
    log = read_log(log_dir, {row[ID_FIELD] for _, row in rows})
    good: list[tuple[str, Any]] = []
    refused: list[dict[str, str]] = []
    for number, row in rows:
        row_id, why = row[ID_FIELD], problem(row[ID_FIELD])
        label, wrong = check_actual(row["actual"], schema.target)
        reason = (
            f"{ID_FIELD}: {why}" if why else
            f"actual: {wrong}" if wrong else
            f"{ID_FIELD}: not in the prediction log" if row_id not in log else ""
        )  # fmt: skip
        if reason:
            refused.append({"line": str(number), **row, "reason": reason})
        else:
            good.append((row_id, label))
    result = Imported(rejected=len(refused))
    if refused:
        with rejects.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle, ["line", *LABEL_COLUMNS, "reason"], extrasaction="ignore"
            )
            writer.writeheader()
            writer.writerows(refused)
    store.add_predictions([log[row_id] for row_id, _ in good])
    now = time.time()
    for (row_id, label), inserted in zip(good, store.add_labels(good, at=now), strict=True):
        if inserted:
            result.recorded += 1
            result.rows.append(Labelled(log[row_id], label, now))
        else:
            result.duplicate += 1
    return result


def by_model(rows: Iterable[Labelled], schema: FeatureSchema) -> dict[tuple[str, str], Sums]:
    """Sums of labelled rows by (version, variant)."""
    groups: dict[tuple[str, str], Sums] = defaultdict(Sums)
    classes = schema.target.classes
    for row in rows:
        served = row.prediction
        groups[served.version, served.variant].add(
            served.prediction, served.probabilities, row.actual, classes
        )
    return dict(groups)


def report_lines(groups: dict[tuple[str, str], Sums], task: str, min_rows: int) -> list[str]:
    lines = []
    for (version, variant), sums in sorted(groups.items()):
        if sums.rows < min_rows:
            lines.append(
                f"v{version} {variant}: {sums.rows} labelled rows, "
                f"under FEEDBACK_MIN_ROWS ({min_rows}): no metrics"
            )
            continue
        scores = ", ".join(f"{name} {value:.4f}" for name, value in sums.metrics(task).items())
        lines.append(f"v{version} {variant}: {sums.rows} labelled rows; {scores}")
    return lines


@dataclass
class Comparison:
    champion: tuple[str, Sums] | None
    challenger: tuple[str, Sums] | None
    metric: str
    p_value: float | None
    promote: bool
    reason: str


def errors_of(rows: list[Labelled], task: str) -> list[float]:
    """Per row: 1 when wrong (classification) or the squared error (regression)."""
    if task == "classification":
        return [float(str(row.prediction.prediction) != str(row.actual)) for row in rows]
    return [(float(row.prediction.prediction) - float(row.actual)) ** 2 for row in rows]


def one_sided_p(champion: list[float], challenger: list[float]) -> float:
    """P(the challenger's mean error is this much lower | no true difference).

    Welch's z statistic on the per-row errors (accuracy: a two-proportion test; squared
    error: a difference of means); the normal approximation holds from the few hundred
    rows FEEDBACK_MIN_ROWS asks for.
    """

    def mean_var(values: list[float]) -> tuple[float, float]:
        mean = sum(values) / len(values)
        return mean, sum((value - mean) ** 2 for value in values) / max(len(values) - 1, 1)

    (m1, v1), (m2, v2) = mean_var(champion), mean_var(challenger)
    spread = math.sqrt(v1 / len(champion) + v2 / len(challenger))
    if spread == 0:
        return 0.0 if m2 < m1 else 1.0
    z = (m1 - m2) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))


def compare(rows: list[Labelled], schema: FeatureSchema, min_rows: int) -> Comparison:
    """The latest version of each variant in the window, and whether to promote."""
    task = schema.task
    metric = "accuracy" if task == "classification" else "rmse"
    latest: dict[str, str] = {}
    for row in rows:  # oldest label first: the last seen is the latest version
        latest[row.prediction.variant] = row.prediction.version
    chosen = {
        variant: [
            row for row in rows
            if row.prediction.variant == variant and row.prediction.version == version
        ]
        for variant, version in latest.items()
    }  # fmt: skip
    sides = {}
    for variant in ("champion", "challenger"):
        if variant in chosen:
            sums = by_model(chosen[variant], schema)[latest[variant], variant]
            sides[variant] = (latest[variant], sums)
    champion, challenger = sides.get("champion"), sides.get("challenger")
    if champion is None or challenger is None:
        missing = "champion" if champion is None else "challenger"
        reason = f"no labelled {missing} rows in the window"
        return Comparison(champion, challenger, metric, None, False, reason)
    short = [name for name, (_, sums) in sides.items() if sums.rows < min_rows]
    if short:
        reason = f"under FEEDBACK_MIN_ROWS ({min_rows}) labelled rows for {', '.join(short)}"
        return Comparison(champion, challenger, metric, None, False, reason)
    p_value = one_sided_p(
        errors_of(chosen["champion"], task), errors_of(chosen["challenger"], task)
    )
    better = LIVE_METRICS[task][metric]
    ours, theirs = challenger[1].metrics(task)[metric], champion[1].metrics(task)[metric]
    improved = ours > theirs if better else ours < theirs
    if improved and p_value < SIGNIFICANCE:
        reason = f"the challenger is better beyond noise (p = {p_value:.4f} < {SIGNIFICANCE})"
        return Comparison(champion, challenger, metric, p_value, True, reason)
    reason = f"no difference beyond noise (p = {p_value:.4f}; promotion needs < {SIGNIFICANCE})"
    return Comparison(champion, challenger, metric, p_value, False, reason)


def gate_misses(
    groups: dict[tuple[str, str], Sums], task: str, gate: dict[str, float], min_rows: int
) -> list[str]:
    """The live metrics worse than the evaluate stage's gate, by version and variant
    (what ModelPerformanceDegraded watches), for groups of at least `min_rows` rows."""
    from .metrics import gate_failures

    misses = []
    for (version, variant), sums in sorted(groups.items()):
        if sums.rows < min_rows:
            continue
        scores = sums.metrics(task)
        live_gate = {name: value for name, value in gate.items() if name in scores}
        misses += [f"v{version} {variant}: {miss}" for miss in gate_failures(scores, live_gate)]
    return misses
