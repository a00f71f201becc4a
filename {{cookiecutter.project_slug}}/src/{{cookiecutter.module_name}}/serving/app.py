"""The FastAPI application; `api.create_app()` adds the observers uvicorn runs it with."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from orjson import dumps
from prometheus_client import CollectorRegistry

from .. import __version__
from ..artifact import LoadedModel, current_version, load
from .batching import Batcher
from .metrics import Metrics, MetricsMiddleware
from .observer import NoObserver, Observer
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
        self.metrics.ready.set(1 if CHAMPION in self.variants else 0)
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


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def create_app(
    settings: ServeSettings | None = None, observer: ObserverFactory = NoObserver
) -> FastAPI:
    settings = settings or ServeSettings()
    server = Server(settings, observer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.batcher.start()
        server.settled = asyncio.Event()
        # Loading runs in the background so /health/live answers while it does.
        tasks = [asyncio.create_task(server.load_all()), asyncio.create_task(server.observer.run())]
        if settings.reload_seconds > 0:
            tasks.append(asyncio.create_task(server.poll()))
        yield
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await server.batcher.stop()

    app = FastAPI(
        title="{{ cookiecutter.project_slug }}",
        version=__version__,
        description="Predictions from the model registered as "
        f"`{settings.model_name}@{settings.model_alias}`.",
        lifespan=lifespan,
    )
    app.state.server = server
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        if error.status != 503:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            server.metrics.validation_errors.labels(route, str(error.status)).inc()
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    async def choose(request: Request) -> tuple[str, Variant]:
        variant, chosen = await server.pick()
        request.state.variant = variant  # labels this request's metrics
        return variant, chosen

    async def predict(variant: str, chosen: Variant, inputs: Any) -> tuple[Any, Any]:
        predictions, probabilities = await server.batcher.predict(chosen.model, inputs)
        server.metrics.predicted(variant, predictions, chosen.model.schema.task)
        if variant == CHAMPION:
            server.observer.predicted(inputs, predictions)
        return predictions, probabilities

    predict_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}
            },
        }
    }

    @app.post("/predict", openapi_extra=predict_body, tags=["predictions"])
    async def predict_records(request: Request) -> Response:
        """One record or a list of records, keyed by feature name."""
        variant, chosen = await choose(request)
        if media_type(request) != "application/json":
            raise RequestError(415, "send application/json")
        inputs = chosen.parser.parse_predict(await read_body(request, settings.max_body_bytes))
        predictions, probabilities = await predict(variant, chosen, inputs)
        model = chosen.model
        answer: dict[str, Any] = {"predictions": predictions.tolist()}
        if probabilities is not None:
            answer["classes"] = model.classes
            answer["probabilities"] = probabilities.round(6).tolist()
        answer["model"] = {"name": model.name, "version": model.version, "alias": model.alias}
        answer["variant"] = variant
        return Response(dumps(answer), media_type="application/json")

    invocations_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InvocationsRequest"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    }

    @app.post("/invocations", openapi_extra=invocations_body, tags=["predictions"])
    async def invocations(request: Request) -> Response:
        """MLflow's scoring protocol, as `mlflow models serve` answers it."""
        variant, chosen = await choose(request)
        kind = media_type(request)
        if kind not in ("application/json", "text/csv"):
            raise RequestError(415, "send application/json or text/csv")
        body = await read_body(request, settings.max_body_bytes)
        inputs = chosen.parser.parse_invocations(body, kind)
        predictions, _ = await predict(variant, chosen, inputs)
        return Response(dumps({"predictions": predictions.tolist()}), media_type="application/json")

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "alive"}

    @app.get("/health/ready", tags=["health"], responses={503: {"description": "Not ready"}})
    async def ready() -> JSONResponse:
        """The champion model is loaded and warm."""
        if CHAMPION not in server.variants:
            detail = server.load_error or "loading the model"
            return JSONResponse({"status": "not ready", "detail": detail}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/ping", tags=["health"])
    async def ping() -> Response:
        """MLflow's health check: 200 once the model is loaded, else 404."""
        return Response("\n", status_code=200 if CHAMPION in server.variants else 404)

    @app.get("/version", tags=["health"])
    async def version() -> PlainTextResponse:
        """The server's version, as MLflow's /version answers it."""
        return PlainTextResponse(__version__)

    @app.get("/model", tags=["model"], responses={503: {"description": "Not loaded"}})
    async def model_info() -> JSONResponse:
        """What each variant serves: name, version, alias, run, schema, load time."""
        if CHAMPION not in server.variants:
            return JSONResponse({"detail": "the model is not loaded yet"}, status_code=503)
        variants = {
            variant: {
                "name": chosen.model.name,
                "version": chosen.model.version,
                "alias": chosen.model.alias,
                "run_id": chosen.model.run_id,
                "source": chosen.model.source,
                "loaded_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(chosen.model.loaded_at)
                ),
                "load_seconds": round(chosen.model.load_seconds, 3),
            }
            for variant, chosen in server.variants.items()
        }
        schema = server.variants[CHAMPION].model.schema.model_dump(mode="json")
        return JSONResponse({**variants[CHAMPION], "variants": variants, "schema": schema})

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = server.metrics.exposition()
        return Response(body, media_type=content_type)

    def openapi() -> dict[str, Any]:
        # Request bodies come from the loaded model's schema, so they are built on demand.
        champion = server.variants.get(CHAMPION)
        if app.openapi_schema and champion and app.state.openapi_version == champion.model.version:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        record: dict[str, Any] = {"type": "object"}
        if champion is not None:
            components["PredictRequest"] = champion.parser.json_schema()
            record = champion.parser.record.model_json_schema(by_alias=True)
        else:
            components["PredictRequest"] = {"type": "object"}
        records = {"type": "array", "items": record, "minItems": 1}
        components["InvocationsRequest"] = {
            "type": "object",
            "description": "Exactly one of the keys below, as MLflow's scoring server takes.",
            "properties": {
                "dataframe_split": {
                    "type": "object",
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": {"type": "array", "items": {"type": "array"}},
                    },
                    "required": ["columns", "data"],
                },
                "dataframe_records": records,
                "instances": records,
                "inputs": records,
            },
            "minProperties": 1,
            "maxProperties": 1,
        }
        app.openapi_schema = document
        app.state.openapi_version = champion.model.version if champion else None
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    return app
