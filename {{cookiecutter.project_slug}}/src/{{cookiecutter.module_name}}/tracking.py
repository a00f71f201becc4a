"""MLflow set-up shared by the stages: tracking URI, experiment, run provenance."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import mlflow

from .config import Paths, Settings

# With a local sqlite store, artifacts go here (git-ignored) rather than to ./mlruns,
# the folder of MLflow's deprecated file store.
LOCAL_ARTIFACTS = Path("mlartifacts")


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI; return the experiment id."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        experiment_id = str(experiment.experiment_id)
    else:
        location = None
        if settings.mlflow_tracking_uri.startswith("sqlite:"):
            location = LOCAL_ARTIFACTS.resolve().as_uri()
        experiment_id = mlflow.create_experiment(
            settings.experiment_name, artifact_location=location
        )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_test_results(settings: Settings, scores: dict[str, float], passed: bool) -> str:
    """Add the evaluate stage's results to the training run; return its run id."""
    run_id = str(json.loads(Paths.run.read_text(encoding="utf-8"))["run_id"])
    configure(settings)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{name}": value for name, value in scores.items()})
        mlflow.log_artifact(str(Paths.model_card))
        mlflow.log_artifacts(str(Paths.plots), artifact_path="plots")
        mlflow.set_tag("quality_gate", "passed" if passed else "failed")
    return run_id


def git_commit() -> str:
    """The commit the code was run from, with '-dirty' for uncommitted changes."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        commit = subprocess.run(
            [git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def params_hash(values: Any) -> str:
    """Stable hash of the parameters a stage depends on (as DVC records them)."""
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, the way MLflow params and DVC name them."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
