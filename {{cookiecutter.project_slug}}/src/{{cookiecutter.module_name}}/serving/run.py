"""`serve`: uvicorn with the settings' host, port and workers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .settings import ServeSettings


def prepare_metrics_dir() -> Path:
    """A clean PROMETHEUS_MULTIPROC_DIR shared by the workers (samples of an earlier run go)."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    directory = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    # Set before any worker imports prometheus_client, which reads it at import.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def serve(settings: ServeSettings) -> None:
    import uvicorn

    if settings.workers > 1:
        prepare_metrics_dir()
    else:
        # One process: samples stay in memory. The multiprocess files cost a tenth of
        # the event loop's time (a pid check and an mmap write per sample).
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    uvicorn.run(
        f"{__name__.split('.')[0]}.api:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,  # the metrics count every request
        log_level="info",
    )
