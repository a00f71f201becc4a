"""MLflow set-up shared by the stages: tracking URI, experiment, run provenance."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow

from .config import Paths, Settings

# With a database as the store and no server (sqlite:///mlflow.db, postgresql://…),
# artifacts go here (git-ignored) rather than to ./mlruns, the folder of MLflow's
# deprecated file store.
LOCAL_ARTIFACTS = Path("mlartifacts")
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


def check_database(uri: str) -> None:
    """Connect once to a database server the URI names, and raise if that fails.

    MLflow retries a refused database connection for about 100 seconds before it says
    why; a wrong password or a stopped server should be reported at once.
    """
    scheme = uri.split(":")[0].split("+")[0]
    if scheme not in DATABASES or scheme == "sqlite":
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


# A uv environment has no pip, and the requirements are pinned without it: not a problem.
NO_PIP = "Failed to resolve installed pip version"


def not_the_pip_note(record: logging.LogRecord) -> bool:
    return NO_PIP not in str(record.msg)


def quiet_mlflow() -> None:
    """Warnings only, for problems, and no progress bars in logs (MLFLOW_* variables win)."""
    if not sys.stderr.isatty():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if "MLFLOW_LOGGING_LEVEL" not in os.environ:  # MLflow's INFO notes are routine
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    environment = logging.getLogger("mlflow.utils.environment")
    if not_the_pip_note not in environment.filters:
        environment.addFilter(not_the_pip_note)


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI; return the experiment id."""
    quiet_mlflow()
    check_database(settings.mlflow_tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        experiment_id = str(experiment.experiment_id)
    else:
        location = None
        if settings.mlflow_tracking_uri.split(":")[0].split("+")[0] in DATABASES:
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


def log_figures(settings: Settings) -> None:
    """evaluate's figures to the training run, beside where the card goes (its links work).

    Logged by evaluate itself: a step of an orchestrator hands on files, not folders.
    """
    run_id = str(json.loads(Paths.run.read_text(encoding="utf-8"))["run_id"])
    configure(settings)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifacts(str(Paths.figures), artifact_path=Paths.figures.name)


def git_commit() -> str:
    """The commit the code was run from, with '-dirty' for uncommitted changes."""
    git = shutil.which("git")
    if git is None:
        return "unknown"

    def output(*args: str) -> str:
        # S603: a fixed argument list for the git found on PATH, no shell, no user input
        run = subprocess.run([git, *args], capture_output=True, text=True, check=True)  # noqa: S603
        return run.stdout.strip()

    try:
        commit = output("rev-parse", "HEAD")
        dirty = output("status", "--porcelain", "--untracked-files=no")
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
