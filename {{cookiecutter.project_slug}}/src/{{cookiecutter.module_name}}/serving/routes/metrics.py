"""/metrics: Prometheus' exposition of every process's samples."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..server import ServerDep

router = APIRouter()


@router.get("/metrics", tags=["health"], include_in_schema=False)
async def metrics(server: ServerDep) -> Response:
    body, content_type = server.metrics.exposition()
    return Response(body, media_type=content_type)
