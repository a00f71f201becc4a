"""Settings from the environment and parameters from params.yaml.

Settings say where things run (tracking server, model name); parameters say what the
pipeline does and are tracked by DVC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

Task = Literal["classification", "regression"]
ModelKind = Literal["hist_gradient_boosting", "random_forest", "linear"]


class Settings(BaseSettings):
    """Read from the environment, then `.env`, then these defaults."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    mlflow_tracking_uri: str = "{{ cookiecutter.mlflow_tracking_uri }}"
    model_name: str = "{{ cookiecutter.project_slug }}"
    params_path: Path = Path("params.yaml")


class _Strict(BaseModel):
    # A misspelt key in params.yaml is an error, not a silently ignored value.
    model_config = ConfigDict(extra="forbid")


class DataParams(_Strict):
    path: Path | None = None
    target: str = "target"
    test_size: float = Field(0.2, gt=0, lt=1)


class TrainParams(_Strict):
    model: ModelKind


class Params(_Strict):
    task: Task
    seed: int = 42
    data: DataParams = DataParams()
    train: TrainParams


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


def load_params(path: Path) -> Params:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"{path}: cannot read: {error}") from error
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '<root>'}: {item['msg']}"
            for item in error.errors()
        )
        raise ParamsError(f"{path}: {problems}") from error
