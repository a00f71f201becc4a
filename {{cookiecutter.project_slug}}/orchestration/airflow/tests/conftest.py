"""A throwaway Airflow, and a copy of the project for the DAG to run in.

Airflow reads its settings when it is imported, so they are set here, before any test
module imports it: AIRFLOW_HOME and a sqlite database in a temporary directory, the DAG
folder of the copy, and a sqlite MLflow store in the copy, so the runs touch neither this
project's files nor its tracking server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[3]
# The prefix of the DAG's variables.
PREFIX = "{{ cookiecutter.module_name }}".upper()
WORK = Path(tempfile.mkdtemp(prefix="airflow-test-"))
COPY = WORK / PROJECT.name
AIRFLOW_HOME = WORK / "airflow-home"
# What the copy leaves out: environments, caches, the local MLflow store and build output.
SKIPPED = {
    ".tools",
    "build",
    "mlflow.db",
    "mlruns",
    "mlartifacts",
    ".dvc/cache",
    ".dvc/tmp",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


def skipped(directory: str, names: list[str]) -> set[str]:
    relative = Path(directory).relative_to(PROJECT)
    return {
        name
        for name in names
        if (relative / name).as_posix() in SKIPPED
        or name.startswith(".venv")
        or name == "__pycache__"
    }


shutil.copytree(PROJECT, COPY, ignore=skipped, symlinks=True)
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
(COPY / ".venv").symlink_to(PROJECT / ".venv")
DVC = str(PROJECT / ".venv" / "bin" / "dvc")
# The copy's outputs are the project's: DVC finds them in the project's cache. Its pushes
# go to a remote of its own, never to the project's.
for dvc_args in (
    ["cache", "dir", "--local", str(PROJECT / ".dvc" / "cache")],
    ["remote", "add", "--local", "--force", "--default", "dag-tests", str(WORK / "dvc-remote")],
):
    subprocess.run([DVC, *dvc_args], cwd=COPY, check=True, capture_output=True)
AIRFLOW_HOME.mkdir()
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(COPY / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        f"{PREFIX}_PROJECT_DIR": str(COPY),
        f"{PREFIX}_RUNNER": "local",
        # A failing step fails its test at once instead of after retries with backoff.
        f"{PREFIX}_TASK_RETRIES": "0",
        "MLFLOW_TRACKING_URI": f"sqlite:///{COPY}/mlflow.db",
        "DVC_NO_ANALYTICS": "1",
    }
)
subprocess.run(
    [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
    check=True,
    capture_output=True,
)
