"""Prometheus metrics of the server, correct with one worker or several.

With several uvicorn workers each process writes its samples to files in
PROMETHEUS_MULTIPROC_DIR (`serve` empties it at start) and /metrics adds them up;
gauges say how: in-flight requests are summed over live workers, model facts take the
maximum.
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from ..artifact import LoadedModel
from ..inference import Array

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "ml_http_requests",
            "HTTP requests by route, method, status code and model variant",
            ["route", "method", "status", "variant"],
            registry=registry,
        )
        self.latency = Histogram(
            "ml_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and model variant",
            ["route", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "ml_http_requests_in_flight",
            "Requests being answered",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.validation_errors = Counter(
            "ml_request_validation_errors",
            "Requests refused because of their content, by route and status code",
            ["route", "status"],
            registry=registry,
        )
        self.predictions = Counter(
            "ml_predictions",
            "Predicted rows, by model variant and predicted class (regression: 'value')",
            ["variant", "label"],
            registry=registry,
        )
        self.model_info = Gauge(
            "ml_model_info",
            "The model each variant serves (1) or served before a reload (0)",
            ["variant", "name", "version", "alias"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.model_load_seconds = Gauge(
            "ml_model_load_duration_seconds",
            "Time the last model load took, by variant",
            ["variant"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.model_loaded_at = Gauge(
            "ml_model_last_reload_timestamp_seconds",
            "Unix time the variant's model was last (re)loaded",
            ["variant"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "ml_model_ready",
            "1 when the champion model is loaded and warm",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.prediction_log_rows = Counter(
            "ml_prediction_log_rows",
            "Served rows the prediction log wrote, or dropped (queue full, write failed)",
            ["outcome"],
            registry=registry,
        )
        self.prediction_store_rows = Counter(
            "ml_prediction_store_rows",
            "Served rows the prediction store kept, or dropped (database unreachable)",
            ["outcome"],
            registry=registry,
        )
        self._values: Histogram | None = None

    def model_loaded(self, variant: str, model: LoadedModel, replaced: LoadedModel | None) -> None:
        if replaced is not None:
            self.model_info.labels(variant, replaced.name, replaced.version, replaced.alias).set(0)
        self.model_info.labels(variant, model.name, model.version, model.alias).set(1)
        self.model_load_seconds.labels(variant).set(model.load_seconds)
        self.model_loaded_at.labels(variant).set(time.time())
        if model.schema.task == "regression" and self._values is None:
            target = model.schema.target
            low, high = target.minimum or 0.0, target.maximum or 1.0
            self._values = Histogram(
                "ml_prediction_value",
                "Predicted values, by model variant (buckets span the training target)",
                ["variant"],
                buckets=tuple(float(edge) for edge in np.linspace(low, high, 11)),
                registry=self.registry,
            )

    def predicted(self, variant: str, predictions: Array, task: str) -> None:
        if task == "regression":
            self.predictions.labels(variant, "value").inc(len(predictions))
            if self._values is not None:
                histogram = self._values.labels(variant)
                for value in predictions.tolist():
                    histogram.observe(value)
            return
        # Counted in Python: np.unique on text costs more than the prediction of a few rows.
        for label, count in Tally(str(value) for value in predictions.tolist()).items():
            self.predictions.labels(variant, label).inc(count)

    def exposition(self) -> tuple[bytes, str]:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.in_flight.dec()
            path = getattr(scope.get("route"), "path", "unmatched")
            variant = scope.get("state", {}).get("variant", "none")  # set by prediction routes
            self.metrics.requests.labels(path, scope["method"], str(status), variant).inc()
            self.metrics.latency.labels(path, variant).observe(time.perf_counter() - started)
