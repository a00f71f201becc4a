"""Server settings: `serve --port 9000`, PORT=9000 in the environment, or `.env`.

Every field is a `serve` flag and an environment variable of the same name; a flag wins.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..config import Settings


class ServeSettings(Settings):
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every one)")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    model_dir: Path | None = Field(
        None,
        description="an exported model (`export-model`); unset: models:/<name>@<alias>, "
        "which needs MLflow (the train extra; the image has none)",
    )
    model_alias: str = Field("champion", description="registry alias served")
    reload_seconds: float = Field(
        0.0, ge=0, description="seconds between checks that the alias moved; 0: never"
    )
    canary_fraction: float = Field(
        0.0, ge=0, le=1, description="share of requests the canary alias answers; 0: none"
    )
    canary_alias: str = Field("challenger", description="registry alias of the canary")
    max_batch_rows: int = Field(1000, ge=1, description="rows one request may hold")
    max_body_bytes: int = Field(10_000_000, ge=1024, description="largest request body")
    merge_rows: int = Field(
        4096, ge=1, description="waiting requests are merged into one call of at most these rows"
    )
    prediction_log_dir: str = Field(
        "build/predictions",
        description="where each served row is logged as JSON lines; '-': stdout; 'off': none",
    )
    prediction_log_max_bytes: int = Field(
        50_000_000, ge=1024, description="a log file is rotated past this size"
    )
    prediction_log_keep_bytes: int = Field(
        500_000_000, ge=0, description="rotated log files are removed, oldest first, past this"
    )
    prediction_log_queue_rows: int = Field(
        100_000, ge=1, description="rows waiting for the log writer; more are dropped, counted"
    )
    prediction_log_omit: str = Field(
        "", description="comma-separated fields left out of the log, e.g. 'inputs'"
    )
    prediction_store_keep_days: float = Field(
        30.0, gt=0, description="served rows older than this leave the prediction store"
    )
    feedback_max_items: int = Field(1000, ge=1, description="labels one /feedback request may hold")
