"""Finding and loading the model to serve: an exported directory or the MLflow registry.

A model directory is an MLflow model (as `train` writes it and the registry stores it)
whose `extra_files/` hold the feature schema, the drift profile and the compiled numpy
model. `export-model` adds `registry.json` (name, version, alias, run id) so a server
that never talks to the registry still reports what it serves.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import inference
from ..config import Settings
from ..inference import Array, CompiledModel, Inputs
from ..schema import FeatureSchema

METADATA = "registry.json"


class Predictor(Protocol):
    def predict(self, inputs: Inputs) -> tuple[Array, Array | None]: ...


@dataclass
class LoadedModel:
    name: str
    version: str
    alias: str
    run_id: str | None
    schema: FeatureSchema
    predictor: Predictor
    source: str
    profile: dict[str, Any] | None = None  # the training data's, for drift; see profile.py
    load_seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)

    @property
    def classes(self) -> list[Any] | None:
        return self.schema.target.classes


class SklearnPredictor:
    """For a pipeline `compile_pipeline` could not turn into arrays (needs the train extra)."""

    def __init__(self, model_dir: Path, schema: FeatureSchema) -> None:
        from ..model_io import load_model_dir

        self.pipeline = load_model_dir(model_dir)
        self.schema = schema

    def predict(self, inputs: Inputs) -> tuple[Array, Array | None]:
        import pandas as pd

        frame = pd.DataFrame(inputs.numeric, columns=self.schema.numeric)
        for name, values in zip(self.schema.categorical, inputs.categorical, strict=True):
            frame[name] = pd.Series(values, dtype=object).where(lambda s: s.notna(), np.nan)
        frame = frame[self.schema.names]
        predictions = np.asarray(self.pipeline.predict(frame))
        if self.schema.task == "classification":
            return predictions, np.asarray(self.pipeline.predict_proba(frame))
        return predictions, None


def read_model_dir(path: Path, alias: str, defaults: dict[str, Any]) -> LoadedModel:
    started = time.perf_counter()
    extra = path / "extra_files"
    if not (extra / "schema.json").is_file():
        raise FileNotFoundError(f"{path} is not a model directory of this project (no schema)")
    schema = FeatureSchema.load(extra / "schema.json")
    compiled = extra / inference.FILENAME
    predictor: Predictor
    if compiled.is_file():
        predictor = CompiledModel.load(compiled)
    else:
        predictor = SklearnPredictor(path, schema)
    metadata = {**defaults}
    if (path / METADATA).is_file():
        metadata |= json.loads((path / METADATA).read_text(encoding="utf-8"))
    model = LoadedModel(
        name=str(metadata.get("name", "local")),
        version=str(metadata.get("version", "unknown")),
        alias=alias,
        run_id=metadata.get("run_id"),
        schema=schema,
        predictor=predictor,
        source=str(path),
        profile=read_json(extra / "profile.json"),
    )
    warm_up(model)
    model.load_seconds = time.perf_counter() - started
    return model


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def warm_up(model: LoadedModel) -> None:
    """One prediction, so the first request does not pay for lazy set-up."""
    numbers = [
        ((feature.minimum or 0.0) + (feature.maximum or 0.0)) / 2
        for feature in model.schema.features
        if feature.kind == "numeric"
    ]
    categories: list[list[str | None]] = [
        [feature.categories[0] if feature.categories else None]
        for feature in model.schema.features
        if feature.kind == "categorical"
    ]
    model.predictor.predict(Inputs(np.array([numbers], dtype=float), categories))


def registry_version(settings: Settings, alias: str) -> tuple[str, str | None]:
    """(version, run id) that `alias` names in the registry now."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias(settings.model_name, alias)
    return str(version.version), version.run_id


def download(settings: Settings, alias: str, destination: Path) -> Path:
    """The model `alias` names, downloaded with a registry.json describing it."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    version, run_id = registry_version(settings, alias)
    uri = f"models:/{settings.model_name}/{version}"
    destination.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
    metadata = {"name": settings.model_name, "version": version, "alias": alias, "run_id": run_id}
    (path / METADATA).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return path


def load(settings: Settings, model_dir: Path | None, alias: str) -> LoadedModel:
    """From `model_dir` when given, else from models:/<name>@<alias>."""
    if model_dir is not None:
        return read_model_dir(model_dir, alias, {"name": settings.model_name})
    started = time.perf_counter()
    path = download(settings, alias, Path(tempfile.mkdtemp(prefix="model-")))
    model = read_model_dir(path, alias, {})
    model.source = f"models:/{settings.model_name}@{alias}"
    model.load_seconds = time.perf_counter() - started
    return model


def current_version(settings: Settings, model_dir: Path | None, alias: str) -> str:
    """The version a reload would load now."""
    if model_dir is None:
        return registry_version(settings, alias)[0]
    metadata = model_dir / METADATA
    if not metadata.is_file():
        return "unknown"
    return str(json.loads(metadata.read_text(encoding="utf-8")).get("version", "unknown"))
