"""Drift settings, from the environment (DRIFT_PSI_ALERT=0.3, …) or `.env`."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .drift import Thresholds


class DriftSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFT_", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    psi_warn: float = Field(Thresholds.psi_warn, gt=0)
    psi_alert: float = Field(Thresholds.psi_alert, gt=0)
    alpha: float = Field(Thresholds.alpha, gt=0, lt=1)
    ks_max_rows: int = Field(Thresholds.ks_max_rows, ge=0)
    # The server: recent rows kept (memory does not grow with traffic), rows needed
    # before a check means anything, and seconds between checks.
    window_rows: int = Field(10_000, ge=1)
    min_rows: int = Field(500, ge=1)
    interval_seconds: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def warn_below_alert(self) -> DriftSettings:
        if self.psi_warn > self.psi_alert:
            raise ValueError(f"psi_warn ({self.psi_warn}) is above psi_alert ({self.psi_alert})")
        return self

    def thresholds(self) -> Thresholds:
        return Thresholds(self.psi_warn, self.psi_alert, self.alpha, self.ks_max_rows)
