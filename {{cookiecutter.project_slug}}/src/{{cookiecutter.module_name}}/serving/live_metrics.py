"""Live model performance as Prometheus counters, by model version and variant.

Each label `/feedback` records adds its row to counters in the process that recorded it
(the store records each id once, whichever process or pod receives it). Counters and
sums add up across processes and pods; the metrics are their ratios, computed by the
recording rules in monitoring/prometheus/alerts.yml over a window:
accuracy = correct / rows, log loss = log_loss / rows, F1 from per-class true/false
positives and false negatives, MAE = abs_error / rows, RMSE = sqrt(squared_error / rows),
R² = 1 - squared_error / (actual_squared - actual² / rows).

The evaluate stage's gate (params.yaml) and the minimum labelled rows are gauges, so the
rules compare with them and keep no copy of either number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..feedback import LIVE_METRICS, Sums, f1_classes
from ..schema import Label

# Label delay buckets: a minute to a month.
DELAY_BUCKETS = (60.0, 300.0, 1800.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0)


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        per_model = ["version", "variant"]
        self.rows = Counter(
            "ml_feedback_rows", "Labelled rows recorded", per_model, registry=registry
        )
        self.correct = Counter(
            "ml_feedback_correct", "Labelled rows predicted right", per_model, registry=registry
        )
        self.log_loss = Counter(
            "ml_feedback_log_loss", "Sum of the rows' log loss", per_model, registry=registry
        )
        self.class_rows = Counter(
            "ml_feedback_class_rows",
            "Labelled rows by class and outcome (tp, fp, fn): the parts of F1",
            [*per_model, "class", "outcome"],
            registry=registry,
        )
        self.abs_error = Counter(
            "ml_feedback_abs_error", "Sum of absolute errors", per_model, registry=registry
        )
        self.squared_error = Counter(
            "ml_feedback_squared_error", "Sum of squared errors", per_model, registry=registry
        )
        # A sum of labels can fall, a counter cannot: positive and negative parts apart.
        self.actual = Counter(
            "ml_feedback_actual",
            "Sum of the labels' positive parts (sign=positive) and negative parts' magnitude",
            [*per_model, "sign"],
            registry=registry,
        )
        self.actual_squared = Counter(
            "ml_feedback_actual_squared", "Sum of squared labels", per_model, registry=registry
        )
        self.delay = Histogram(
            "ml_feedback_label_delay_seconds",
            "Time from a prediction to its label",
            ["variant"],
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.outcomes = Counter(
            "ml_feedback_items",
            "Feedback items by outcome (recorded, duplicate, unknown_id)",
            ["outcome"],
            registry=registry,
        )
        self.min_rows = Gauge(
            "ml_feedback_min_rows",
            "Labelled rows a window needs before its live metrics are published",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.gate = Gauge(
            "ml_quality_gate",
            "The evaluate stage's gate threshold (params.yaml) of each live metric",
            ["metric"],
            registry=registry,
            multiprocess_mode="livemax",
        )

    def publish_settings(self, task: str, min_rows: int, gate: dict[str, float]) -> None:
        self.min_rows.set(min_rows)
        for metric in LIVE_METRICS[task]:
            if metric in gate:
                self.gate.labels(metric).set(gate[metric])

    def start(self, task: str, version: str, variant: str, classes: Sequence[Label] | None) -> None:
        """Series at 0 for a newly loaded model, so that a window sees its first labels."""
        names = [self.rows]
        if task == "classification":
            names += [self.correct, self.log_loss]
            for name in f1_classes(classes or []):
                for outcome in ("tp", "fp", "fn"):
                    self.class_rows.labels(version, variant, name, outcome)
        else:
            names += [self.abs_error, self.squared_error, self.actual_squared]
            for sign in ("positive", "negative"):
                self.actual.labels(version, variant, sign)
        for counter in names:
            counter.labels(version, variant)
        self.delay.labels(variant)

    def add(
        self,
        version: str,
        variant: str,
        prediction: Any,
        probabilities: Sequence[float] | None,
        actual: Any,
        classes: Sequence[Label] | None,
        delay: float,
    ) -> None:
        """One recorded label: what it adds to each sum (feedback.Sums does the arithmetic)."""
        one = Sums()
        one.add(prediction, probabilities, actual, classes)
        self.rows.labels(version, variant).inc()
        self.delay.labels(variant).observe(max(delay, 0.0))
        if classes is None:
            self.abs_error.labels(version, variant).inc(one.abs_error)
            self.squared_error.labels(version, variant).inc(one.squared_error)
            sign = "positive" if one.actual >= 0 else "negative"
            self.actual.labels(version, variant, sign).inc(abs(one.actual))
            self.actual_squared.labels(version, variant).inc(one.actual_squared)
            return
        self.correct.labels(version, variant).inc(one.correct)
        self.log_loss.labels(version, variant).inc(one.log_loss)
        for name, (tp, fp, fn) in one.classes.items():
            for outcome, count in (("tp", tp), ("fp", fp), ("fn", fn)):
                if count:
                    self.class_rows.labels(version, variant, name, outcome).inc(count)
