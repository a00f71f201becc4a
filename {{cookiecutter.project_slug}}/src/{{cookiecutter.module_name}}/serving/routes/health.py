"""Whether the server answers and what it serves: health, MLflow's /ping and /version,
and /model."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ... import __version__
from ..server import CHAMPION, ServerDep

router = APIRouter()


@router.get("/health/live", tags=["health"])
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "alive"}


@router.get("/health/ready", tags=["health"], responses={503: {"description": "Not ready"}})
async def ready(server: ServerDep) -> JSONResponse:
    """The champion model is loaded and warm."""
    if CHAMPION not in server.variants:
        detail = server.load_error or "loading the model"
        return JSONResponse({"status": "not ready", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/ping", tags=["health"])
async def ping(server: ServerDep) -> Response:
    """MLflow's health check: 200 once the model is loaded, else 404."""
    return Response("\n", status_code=200 if CHAMPION in server.variants else 404)


@router.get("/version", tags=["health"])
async def version() -> PlainTextResponse:
    """The server's version, as MLflow's /version answers it."""
    return PlainTextResponse(__version__)


@router.get("/model", tags=["model"], responses={503: {"description": "Not loaded"}})
async def model_info(server: ServerDep) -> JSONResponse:
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
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(chosen.model.loaded_at)),
            "load_seconds": round(chosen.model.load_seconds, 3),
        }
        for variant, chosen in server.variants.items()
    }
    schema = server.variants[CHAMPION].model.schema.model_dump(mode="json")
    return JSONResponse({**variants[CHAMPION], "variants": variants, "schema": schema})
