"""The model artifact: the one definition of a model directory, and how it is loaded.

A model directory is an MLflow model (as `train` saves it and the registry stores it):

    MLmodel, model.skops, …          MLflow's files: the scikit-learn pipeline
    extra_files/schema.json          the feature schema (schema.py)
    extra_files/profile.json         the training data's drift profile (profile.py)
    extra_files/runtime.json         how it is served: `Runtime` below, decided by `train`
    extra_files/inference.npz        the compiled numpy model, when runtime.json says so
    registry.json                    name, version, alias, run id (`export-model` adds it)

`train`, `export-model`, the server, `drift`, the image build and the tests all go
through this module. It imports neither the server nor the monitoring code, and nothing
heavy at import: scikit-learn, pandas and MLflow only where a pipeline or the registry is
used.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import yaml

from .config import Settings
from .errors import ProjectError
from .inference import Array, CompiledModel, Inputs
from .schema import FeatureSchema

EXTRA = "extra_files"
SCHEMA = f"{EXTRA}/schema.json"
PROFILE = f"{EXTRA}/profile.json"
RUNTIME = f"{EXTRA}/runtime.json"
COMPILED = f"{EXTRA}/inference.npz"
REGISTRY = "registry.json"


class ArtifactError(ProjectError):
    """A model directory that is missing, incomplete, or not servable here."""


@dataclass
class Runtime:
    """How the model is served, as `train` decided and proved it (see compiler.py).

    predictor: "compiled" (numpy arrays, no model library needed), "pipeline" (the
    scikit-learn pipeline itself, with `extras` of pyproject.toml installed at exactly
    `packages`' versions, and the Debian `system` packages they need) or "none" (nothing
    can serve it; `reason` says why and `export-model` refuses it).
    """

    predictor: Literal["compiled", "pipeline", "none"]
    reason: str = ""  # why it is not compiled
    extras: list[str] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)
    system: list[str] = field(default_factory=list)
    compiled_from: dict[str, str] = field(default_factory=dict)
    max_error: float | None = None  # compiled vs pipeline, on the proof rows

    @classmethod
    def load(cls, path: Path) -> Runtime:
        file = path / RUNTIME
        if not file.is_file():
            raise ArtifactError(f"{path}: no {RUNTIME} (trained before it existed): retrain")
        return cls(**json.loads(file.read_text(encoding="utf-8")))

    def describe(self) -> str:
        if self.predictor == "compiled":
            made = ", ".join(f"{name} {version}" for name, version in self.compiled_from.items())
            return f"compiled numpy arrays (from {made}; largest difference {self.max_error:.2g})"
        if self.predictor == "none":
            return f"not servable: {self.reason}"
        pins = ", ".join(f"{name}=={version}" for name, version in self.packages.items())
        system = f"; Debian packages {', '.join(self.system)}" if self.system else ""
        return f"the pipeline, with extras {', '.join(self.extras)} ({pins}){system}: {self.reason}"

    def problems(self) -> list[str]:
        """What the installed packages lack to serve this model; empty when all is there."""
        if self.predictor == "none":
            return [self.reason]
        found = []
        for name, wanted in self.packages.items():
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed = None
            if installed != wanted:
                found.append(
                    f"{name}: the model was trained with {wanted}, installed is "
                    f"{installed or 'nothing'} (uv.lock must pin what trained it: retrain or "
                    "restore the lock)"
                )
        return found


def write_extra_files(
    directory: Path,
    schema: FeatureSchema,
    profile: dict[str, Any],
    runtime: Runtime,
    compiled: CompiledModel | None,
) -> list[str]:
    """The files `train` attaches to the MLflow model, written under `directory`."""
    written = []
    for relative, text in (
        (SCHEMA, schema.model_dump_json(indent=2)),
        (PROFILE, json.dumps(profile, indent=2)),
        (RUNTIME, json.dumps(asdict(runtime), indent=2)),
    ):
        path = directory / Path(relative).name
        path.write_text(text + "\n", encoding="utf-8")
        written.append(str(path))
    if compiled is not None:
        path = directory / Path(COMPILED).name
        compiled.save(path)
        written.append(str(path))
    return written


def load_pipeline(path: Path) -> Any:
    """The scikit-learn pipeline of a model directory, without importing MLflow.

    Reads the skops file the MLmodel names, with the trusted types recorded at training:
    the directory is this project's own training output. Seconds faster than MLflow's
    loader on every stage and server start.
    """
    from . import custom, estimators  # noqa: F401 - skops imports them for their classes

    mlmodel = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
    flavor = mlmodel["flavors"]["sklearn"]
    if flavor.get("serialization_format") != "skops":
        return load_pipeline_uri(str(path))
    import skops.io

    trusted = flavor.get("skops_trusted_types") or []
    return skops.io.load(path / flavor["pickled_model"], trusted=trusted)


def load_pipeline_uri(uri: str) -> Any:
    """The scikit-learn pipeline behind an MLflow URI (models:/name@alias, runs:/…, a path)."""
    import mlflow.sklearn

    from . import custom, estimators  # noqa: F401 - skops imports them for their classes

    return mlflow.sklearn.load_model(uri)


class Predictor(Protocol):
    @property
    def classes(self) -> list[Any] | None: ...

    def predict(self, inputs: Inputs) -> tuple[Array, Array | None]: ...


class PipelinePredictor:
    """Serves the pipeline itself: needs the extras runtime.json names."""

    def __init__(self, path: Path, schema: FeatureSchema, runtime: Runtime) -> None:
        try:
            self.pipeline = load_pipeline(path)
        except ImportError as error:
            extras = " ".join(f"--extra {extra}" for extra in runtime.extras)
            raise ArtifactError(
                f"{path} is served by its pipeline, which needs {error.name or error}: "
                f"install the extras it records (uv sync --extra serve {extras})"
            ) from error
        self.schema = schema

    @property
    def classes(self) -> list[Any] | None:
        if self.schema.task != "classification":
            return None
        labels = self.pipeline.classes_
        return [label.item() if isinstance(label, np.generic) else label for label in labels]

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


@dataclass
class LoadedModel:
    name: str
    version: str
    alias: str
    run_id: str | None
    schema: FeatureSchema
    predictor: Predictor
    runtime: Runtime
    source: str
    directory: Path | None = None  # the model directory it was read from
    profile: dict[str, Any] | None = None  # the training data's, for drift; see profile.py
    load_seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)

    @property
    def classes(self) -> list[Any] | None:
        """Class labels in the order of the predicted probabilities."""
        return self.predictor.classes


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_model_dir(path: Path, alias: str, defaults: dict[str, Any]) -> LoadedModel:
    """A model directory, its predictor chosen by runtime.json (never by what is installed)."""
    started = time.perf_counter()
    check_model_dir(path)
    schema = FeatureSchema.load(path / SCHEMA)
    runtime = Runtime.load(path)
    predictor: Predictor
    if runtime.predictor == "compiled":
        predictor = CompiledModel.load(path / COMPILED)
    elif runtime.predictor == "pipeline":
        predictor = PipelinePredictor(path, schema, runtime)
    else:
        raise ArtifactError(f"{path}: {runtime.reason}")
    record = {**defaults, **(read_json(path / REGISTRY) or {})}
    model = LoadedModel(
        name=str(record.get("name", "local")),
        version=str(record.get("version", "unknown")),
        alias=alias,
        run_id=record.get("run_id"),
        schema=schema,
        predictor=predictor,
        runtime=runtime,
        source=str(path),
        directory=path,
        profile=read_json(path / PROFILE),
    )
    warm_up(model)
    model.load_seconds = time.perf_counter() - started
    return model


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

    from .tracking import check_database, quiet_mlflow

    quiet_mlflow()
    check_database(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    try:
        version = client.get_model_version_by_alias(settings.model_name, alias)
    except Exception as error:
        if getattr(error, "error_code", "") not in NOT_FOUND:
            raise
        raise ArtifactError(missing_alias(client, settings, alias)) from error
    return str(version.version), version.run_id


# MLflow's codes for a registered model or alias that does not exist (per store).
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def missing_alias(client: Any, settings: Settings, alias: str) -> str:
    """Why models:/<name>@<alias> names nothing, and what does exist."""
    name = settings.model_name
    try:
        aliases: dict[str, Any] = client.get_registered_model(name).aliases
    except Exception as error:
        if getattr(error, "error_code", "") not in NOT_FOUND:
            raise
        return f"no model named {name!r} is registered yet — run `make pipeline` first"
    known = ", ".join(f"@{known} (v{version})" for known, version in sorted(aliases.items()))
    return f"{name} has no @{alias} — use one of: {known or 'none yet'}, or `promote <version>`"


def check_model_dir(path: Path) -> None:
    """Fail at once, before anything heavy is imported, when `path` is no model directory."""
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such directory — `export-model --output DIR` writes one")
    if not (path / SCHEMA).is_file():
        raise ArtifactError(
            f"{path} is not a model directory of this project (no {SCHEMA}) — "
            "give the folder `export-model` wrote"
        )


def download(settings: Settings, alias: str, destination: Path) -> Path:
    """The model `alias` names, downloaded with a registry.json describing it."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    version, run_id = registry_version(settings, alias)
    uri = f"models:/{settings.model_name}/{version}"
    destination.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
    record = {"name": settings.model_name, "version": version, "alias": alias, "run_id": run_id}
    (path / REGISTRY).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
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
    record = read_json(model_dir / REGISTRY) or {}
    return str(record.get("version", "unknown"))
