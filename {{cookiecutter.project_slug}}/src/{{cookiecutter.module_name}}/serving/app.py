"""The FastAPI application; `api.create_app()` adds the observers uvicorn runs it with.

The routes live in `routes/`, one router per concern; each depends on the `Server`
(`server.ServerDep`), which holds the models, the batcher and the metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .. import __version__
from . import openapi
from .metrics import MetricsMiddleware
from .observer import NoObserver
from .requests import RequestError
from .routes import feedback, health, metrics, predictions
from .server import ObserverFactory, Server
from .settings import ServeSettings


def create_app(
    settings: ServeSettings | None = None, observer: ObserverFactory = NoObserver
) -> FastAPI:
    settings = settings or ServeSettings()
    server = Server(settings, observer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.batcher.start()
        server.prediction_log.start()
        server.settled = asyncio.Event()
        # Loading runs in the background so /health/live answers while it does.
{%- if cookiecutter.feature_store == "feast" %}
        # Feast imports first (seconds of the interpreter's lock, never under traffic).
        loading = server.online.imported_then(server.load_all())
{%- else %}
        loading = server.load_all()
{%- endif %}
        tasks = [asyncio.create_task(loading), asyncio.create_task(server.observer.run())]
        if settings.reload_seconds > 0:
            tasks.append(asyncio.create_task(server.poll()))
        yield
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await server.batcher.stop()
        await asyncio.to_thread(server.prediction_log.flush)
        server.prediction_log.stop()
        if server.store is not None:
            server.store.close()

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

    for routes in (predictions, feedback, health, metrics):
        app.include_router(routes.router)
    app.openapi = lambda: openapi.document(app, server)  # type: ignore[method-assign]
    return app
