"""The models a server answers with, by variant, and how they are loaded and swapped."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from ..artifact import LoadedModel, current_version, load
from ..config import enabled
from ..inference import Inputs
from ..prediction_store import PredictionStore
from .batching import Batcher
from .live_metrics import LiveMetrics
from .metrics import Metrics
from .observer import Observer
{%- if cookiecutter.feature_store == "feast" %}
from .online_features import OnlineFeatures
{%- endif %}
from .prediction_log import PredictionLog, Served
from .requests import RequestError, RequestParser
from .settings import ServeSettings

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"
# A prediction request that arrives while the model loads waits this long rather than fail.
LOAD_WAIT_SECONDS = 30.0
# What watches the champion's predictions, given the registry its metrics go to.
ObserverFactory = Callable[[CollectorRegistry], Observer]


@dataclass
class Variant:
    """A loaded model and the request parser built from its schema."""

    model: LoadedModel
    parser: RequestParser


class Server:
    """Models by variant, swapped whole: a request keeps the variant it started with."""

    def __init__(self, settings: ServeSettings, observer: ObserverFactory) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.observer = observer(self.metrics.registry)
        self.batcher = Batcher(settings.merge_rows)
        omit = frozenset(name.strip() for name in settings.prediction_log_omit.split(",") if name)
        self.live = LiveMetrics(self.metrics.registry)
        store_url = enabled(settings.prediction_store_url)
        self.store = PredictionStore(store_url) if store_url else None
        self.prediction_log = PredictionLog(
            enabled(settings.prediction_log_dir),
            self.metrics.prediction_log_rows,
            max_bytes=settings.prediction_log_max_bytes,
            keep_bytes=settings.prediction_log_keep_bytes,
            queue_rows=settings.prediction_log_queue_rows,
            omit=omit,
            store=self.store,
            store_rows=self.metrics.prediction_store_rows,
            keep_seconds=settings.prediction_store_keep_days * 86400,
        )
{%- if cookiecutter.feature_store == "feast" %}
        self.online = OnlineFeatures(self.metrics.registry, settings.params_path)
{%- endif %}
        self.variants: dict[str, Variant] = {}
        self.load_error: str | None = None
        self.settled: asyncio.Event | None = None  # set once the first load finished

    def aliases(self) -> dict[str, str]:
        wanted = {CHAMPION: self.settings.model_alias}
        if self.settings.canary_fraction > 0:
            wanted[CHALLENGER] = self.settings.canary_alias
        return wanted

    async def load(self, variant: str, alias: str) -> None:
        model = await asyncio.to_thread(load, self.settings, self.settings.model_dir, alias)
        replaced = self.variants.get(variant)
        self.variants[variant] = Variant(
            model, RequestParser(model.schema, self.settings.max_batch_rows)
        )
        self.metrics.model_loaded(variant, model, replaced.model if replaced else None)
        if variant == CHAMPION:
            self.observer.model_loaded(model)
            self.live.publish_settings(
                model.schema.task, self.settings.feedback_min_rows, quality_gate(self.settings)
            )
        self.live.start(model.schema.task, model.version, variant, model.schema.target.classes)
        self.metrics.ready.set(1 if CHAMPION in self.variants else 0)
        # What is loaded now (libraries, the model) lives as long as the server: out of the
        # collector's sight, the full collections that requests trigger stay short.
        gc.collect()
        gc.freeze()
        log.info(
            "%s: serving %s version %s from %s", variant, model.name, model.version, model.source
        )

    async def load_all(self) -> None:
        for variant, alias in self.aliases().items():
            try:
                await self.load(variant, alias)
            except Exception as error:  # reported by /health/ready; a reload may retry
                self.load_error = f"{variant} ({alias}): {error}"
                log.exception("could not load the %s model", variant)
        if self.settled is not None:
            self.settled.set()

    async def poll(self) -> None:
        """Reload a variant when its alias (or exported directory) names another version."""
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            for variant, alias in self.aliases().items():
                try:
                    version = await asyncio.to_thread(
                        current_version, self.settings, self.settings.model_dir, alias
                    )
                    loaded = self.variants.get(variant)
                    if loaded is None or loaded.model.version != version:
                        await self.load(variant, alias)
                        self.load_error = None
                except Exception as error:
                    self.load_error = f"{variant} ({alias}): {error}"
                    log.exception("reload of the %s model failed", variant)

    async def pick(self) -> tuple[str, Variant]:
        if CHAMPION not in self.variants and self.settled is not None:
            # Another worker may already be ready and taking traffic: wait, do not fail.
            # asyncio.wait returns at the timeout instead of raising (whose class differs on 3.10).
            waiter = asyncio.ensure_future(self.settled.wait())
            await asyncio.wait({waiter}, timeout=LOAD_WAIT_SECONDS)
            waiter.cancel()
        champion = self.variants.get(CHAMPION)
        if champion is None:
            raise RequestError(503, "the model is not loaded yet")
        challenger = self.variants.get(CHALLENGER)
        if challenger is not None and random.random() < self.settings.canary_fraction:  # noqa: S311
            return CHALLENGER, challenger
        return CHAMPION, champion

    async def choose(self, request: Request) -> tuple[str, Variant]:
        """The variant that answers this request, recorded on it for its metrics."""
        variant, chosen = await self.pick()
        request.state.variant = variant
        return variant, chosen

    async def predict(
        self, variant: str, chosen: Variant, inputs: Inputs, ids: list[str]
    ) -> tuple[Any, Any]:
        """The model's answer for `inputs`, counted, watched and logged under `ids`."""
        started = time.time()
        predictions, probabilities = await self.batcher.predict(chosen.model, inputs)
        model = chosen.model
        self.metrics.predicted(variant, predictions, model.schema.task)
        if variant == CHAMPION:
            self.observer.predicted(inputs, predictions)
        self.prediction_log.write(
            Served(ids, model.name, model.version, variant, model.schema, inputs,
                   predictions, probabilities, started)
        )  # fmt: skip
        return predictions, probabilities


def quality_gate(settings: ServeSettings) -> dict[str, float]:
    """The evaluate stage's gate from params.yaml; none when the file is not there."""
    if not settings.params_path.is_file():
        return {}
    from ..config import load_params

    return dict(load_params(settings.params_path).evaluate.gate)


async def current_server(request: Request) -> Server:
    """The app's server: what every route depends on (async, so no thread is used)."""
    server: Server = request.app.state.server
    return server


ServerDep = Annotated[Server, Depends(current_server)]
