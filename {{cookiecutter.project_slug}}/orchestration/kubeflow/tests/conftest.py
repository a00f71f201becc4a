"""A DVC remote and an MLflow store of the tests' own, set before any test runs a step.

The local variant of the pipeline runs each step from this checkout in a workspace of
its own; the steps reach the remote and the registry these variables name, so the runs
touch neither this project's files nor its tracking server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[3]
WORK = Path(tempfile.mkdtemp(prefix="kfp-test-"))
REMOTE = WORK / "dvc-remote"
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
REMOTE.mkdir()
os.environ.update(
    {
        "DVC_REMOTE_URL": str(REMOTE),
        "MLFLOW_TRACKING_URI": f"sqlite:///{WORK}/mlflow.db",
        "DVC_NO_ANALYTICS": "1",
    }
)
# pipelines/ is a folder of scripts, not a package: its modules import each other by name.
sys.path.insert(0, str(PROJECT / "pipelines"))
