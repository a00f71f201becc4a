"""Server settings, from the environment (HOST, PORT, WORKERS, MODEL_DIR, …) or `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..config import Settings


class ServeSettings(Settings):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    # An exported model directory (`export-model`); unset = models:/<name>@<alias>.
    model_dir: Path | None = None
    model_alias: str = "champion"
    # Seconds between checks that the alias still names the loaded version; 0 = never.
    reload_seconds: float = Field(0.0, ge=0)
    # Share of requests answered by the challenger alias instead; 0 = no canary.
    canary_fraction: float = Field(0.0, ge=0, le=1)
    canary_alias: str = "challenger"
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(10_000_000, ge=1024)
    # Requests waiting to be predicted are merged into one call of at most this many rows.
    merge_rows: int = Field(4096, ge=1)
