"""Settings from the environment, parameters from params.yaml, and the pipeline's paths.

Settings say where things run (tracking server, model name); parameters say what the
pipeline does and are tracked by DVC. The paths here are the ones dvc.yaml names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ParamsError, SettingsError

__all__ = ["Params", "ParamsError", "Paths", "Settings", "load_params", "settings_errors"]

Task = Literal["classification", "regression"]
ModelKind = Literal[
    "hist_gradient_boosting", "random_forest", "linear", "xgboost", "lightgbm", "custom"
]

# Whether a larger value of each metric is better; evaluate and register share it.
METRIC_DIRECTIONS: dict[str, bool] = {
    "accuracy": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


# Chosen when the project was generated; MLFLOW_TRACKING_URI in the environment or .env wins.
DEFAULT_TRACKING_URI = "{{ cookiecutter.mlflow_tracking_uri }}"


class Paths:
    """Files the stages exchange, relative to the project root (see dvc.yaml)."""

    sample = Path("data/raw/sample.csv")
    train = Path("data/processed/train.csv")
    test = Path("data/processed/test.csv")
    schema = Path("data/processed/schema.json")
    split = Path("data/processed/split.json")  # rows per split, production rows among them
    model = Path("models/model")
    profile = Path("models/profile.json")
    run = Path("models/run.json")
    metrics = Path("metrics/test.json")
    plots = Path("plots")
    model_card = Path("reports/model_card.md")
    figures = Path("reports/figures")  # the card's images, named as figures.FILES names them
    registration = Path("reports/registration.json")


class Settings(BaseSettings):
    """Read from the environment, then `.env`, then these defaults."""

    # An empty variable (as CI sets for a missing secret) means "use the default".
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    # The trailing commas keep one layout whatever the slug's length.
    mlflow_tracking_uri: str = Field(
        DEFAULT_TRACKING_URI,
        description="MLflow tracking server or database",
    )
    model_name: str = Field(
        "{{ cookiecutter.project_slug }}",
        description="registered model name",
    )
    experiment_name: str = Field(
        "{{ cookiecutter.project_slug }}",
        description="MLflow experiment of the runs",
    )
    params_path: Path = Field(Path("params.yaml"), description="the pipeline's parameters")
    prediction_store_url: str = Field(
        "sqlite:///build/predictions.db",
        description="database of served rows and their labels, shared by every worker and "
        "replica (SQLAlchemy URL); 'off': no store, no /feedback",
    )
    feedback_min_rows: int = Field(
        100, ge=1, description="labelled rows a window needs before live metrics count"
    )


# The value that turns an optional part off (an empty variable means "the default").
OFF = "off"


def enabled(value: str) -> str:
    """The setting's value, or "" when it says off."""
    return "" if value.strip().lower() in ("", OFF) else value


def env_name(kind: type[BaseSettings], field: str) -> str:
    return f"{kind.model_config.get('env_prefix', '')}{field}".upper()


@contextmanager
def settings_errors(kind: type[BaseSettings], flags: Mapping[str, Any]) -> Iterator[None]:
    """Around reading `kind`: its ValidationError as one SettingsError naming each value.

    A value from `flags` (what was typed after --<field-name>) is named as the flag,
    any other as its environment variable.
    """
    try:
        yield
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = item["msg"].removeprefix("Value error, ")
            if not item["loc"]:  # a rule across fields
                problems.append(message)
                continue
            field = str(item["loc"][0])
            where = f"--{field.replace('_', '-')}" if field in flags else env_name(kind, field)
            problems.append(f"{where}={item.get('input')!r}: {message}")
        raise SettingsError("; ".join(problems)) from error


class _Strict(BaseModel):
    # A misspelt key in params.yaml is an error, not a silently ignored value.
    model_config = ConfigDict(extra="forbid")


class DataParams(_Strict):
    path: Path = Paths.sample
    production: Path = Path("data/raw/production.csv")  # `collect` writes it, not a stage
    target: str = "target"
    test_size: float = Field(0.2, gt=0, lt=1)
    min_rows: int = Field(50, ge=10)
    categorical: list[str] = []
    # A column naming the entity each row is about, and one with the time it was observed:
    # neither is a feature. The feature store joins on them.
    entity_key: str | None = None
    timestamp: str | None = None


class HistGradientBoostingParams(_Strict):
    max_iter: int = Field(200, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)
    l2_regularization: float = Field(0.0, ge=0)


class RandomForestParams(_Strict):
    n_estimators: int = Field(200, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)


class LinearParams(_Strict):
    # Ridge's alpha for regression, 1/C of logistic regression for classification.
    regularization: float = Field(1.0, gt=0)


class XGBoostParams(_Strict):
    n_estimators: int = Field(200, ge=1)
    max_depth: int = Field(6, ge=0)
    learning_rate: float = Field(0.1, gt=0)
    subsample: float = Field(1.0, gt=0, le=1)
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    min_child_weight: float = Field(1.0, ge=0)
    reg_lambda: float = Field(1.0, ge=0)


class LightGBMParams(_Strict):
    n_estimators: int = Field(200, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    num_leaves: int = Field(31, ge=2)
    max_depth: int = Field(-1, ge=-1)  # -1: no limit
    min_child_samples: int = Field(20, ge=1)
    subsample: float = Field(1.0, gt=0, le=1)
    colsample_bytree: float = Field(1.0, gt=0, le=1)
    reg_lambda: float = Field(0.0, ge=0)


class TrainParams(_Strict):
    model: ModelKind
    hist_gradient_boosting: HistGradientBoostingParams = HistGradientBoostingParams()
    random_forest: RandomForestParams = RandomForestParams()
    linear: LinearParams = LinearParams()
    xgboost: XGBoostParams = XGBoostParams()
    lightgbm: LightGBMParams = LightGBMParams()
    # Keyword arguments of custom.build_estimator, for `model: custom` (yours to define).
    custom: dict[str, Any] = {}

    def chosen(self) -> dict[str, Any]:
        """The hyper-parameters of the chosen model, as params.yaml gives them."""
        values = getattr(self, self.model)
        return dict(values) if isinstance(values, dict) else values.model_dump()


class EvaluateParams(_Strict):
    # metric -> threshold: at least for metrics where larger is better, at most otherwise
    gate: dict[str, float] = {}

    @field_validator("gate")
    @classmethod
    def _known_metrics(cls, gate: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(gate) - set(METRIC_DIRECTIONS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRIC_DIRECTIONS)}")
        return gate


class RegistryParams(_Strict):
    primary_metric: str

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRIC_DIRECTIONS:
            raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRIC_DIRECTIONS)}")
        return metric


class Params(_Strict):
    task: Task
    seed: int = 42
    data: DataParams = DataParams()
    train: TrainParams
    evaluate: EvaluateParams = EvaluateParams()
    registry: RegistryParams

    @model_validator(mode="after")
    def _metrics_fit_the_task(self) -> Params:
        allowed = TASK_METRICS[self.task]
        for where, metrics in (
            ("evaluate.gate", list(self.evaluate.gate)),
            ("registry.primary_metric", [self.registry.primary_metric]),
        ):
            wrong = [metric for metric in metrics if metric not in allowed]
            if wrong:
                raise ValueError(f"{where}: {wrong} not computed for {self.task}; use {allowed}")
        return self


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
