"""Live drift: the champion's recent inputs and predictions, checked on a schedule.

The server hands every answered batch to `predicted` (cheap: rows are copied into a
fixed window) and the check runs every DRIFT_INTERVAL_SECONDS in a thread, never per
request. Results are Prometheus gauges; with several workers each checks its own
window and /metrics shows the highest score.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from ..artifact import LoadedModel
from ..inference import Array, Inputs
from .drift import DriftReport, compare
from .settings import DriftSettings
from .window import RollingWindow

log = logging.getLogger(__name__)


class DriftMonitor:
    def __init__(self, registry: CollectorRegistry, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self.model: LoadedModel | None = None
        self.window: RollingWindow | None = None
        self.feature_psi = Gauge(
            "ml_feature_drift_psi",
            "PSI of each feature's recent values against training",
            ["feature"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.prediction_psi = Gauge(
            "ml_prediction_drift_psi",
            "PSI of recent predictions against the predictions on the training data",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.detected = Gauge(
            "ml_drift_detected",
            "1 when a feature or the predictions crossed the drift alert level",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.window_rows = Gauge(
            "ml_drift_window_rows",
            "Recent rows the drift check looks at",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.last_check = Gauge(
            "ml_drift_last_check_timestamp_seconds",
            "Unix time of the last drift check",
            registry=registry,
            multiprocess_mode="livemax",
        )

    def model_loaded(self, model: LoadedModel) -> None:
        """A new champion: start a fresh window against its profile."""
        self.model = model
        self.window = None
        if model.profile is None:
            log.warning("model %s v%s has no drift profile", model.name, model.version)
            return
        self.window = RollingWindow(model.schema, self.settings.window_rows)

    def predicted(self, inputs: Inputs, predictions: Array) -> None:
        if self.window is not None:
            self.window.add(inputs, predictions)
            self.window_rows.set(self.window.rows)

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Array], Array] | None:
        """(profile, columns, predictions) to check, copied; None until min_rows are held."""
        window, model = self.window, self.model
        if window is None or model is None or model.profile is None:
            return None
        if window.rows < self.settings.min_rows:
            return None
        return model.profile, window.columns(), window.predicted()

    def publish(self, report: DriftReport) -> None:
        for column in report.features:
            self.feature_psi.labels(column.name).set(column.psi)
        if report.prediction is not None:
            self.prediction_psi.set(report.prediction.psi)
        self.detected.set(1 if report.detected else 0)
        self.last_check.set(time.time())
        if report.detected:
            log.warning("drift detected: features %s", report.drifted or "none (predictions)")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_seconds)
            # Copied here, between requests, so no batch is half-written; compared in a thread.
            snapshot = self.snapshot()
            if snapshot is None:
                continue
            try:
                report = await asyncio.to_thread(compare, *snapshot, self.settings.thresholds())
            except Exception:  # a failed check must not stop the next ones
                log.exception("drift check failed")
                continue
            self.publish(report)
