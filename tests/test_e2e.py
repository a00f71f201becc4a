"""End to end: every supported combination installs itself and passes its own checks.

Each rendered project runs its own `make setup` (uv, a fresh .venv) on the Python it
asks for, `make lint` (ruff, ruff format, mypy --strict) and `make test`, exactly as a
user would. One test per combination, so the combinations spread over test workers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from baked import BakedProject, template_defaults
from combinations import SUPPORTED_COMBINATIONS
from conftest import install_project

pytestmark = pytest.mark.e2e


# Combinations whose own e2e module installs them once and runs these checks on that install.
CHECKED_ELSEWHERE = {"feast": "test_feature_store_e2e.py"}


@pytest.mark.parametrize(
    "combination",
    [param for param in SUPPORTED_COMBINATIONS if param.id not in CHECKED_ELSEWHERE],
)
def test_combination_installs_lints_and_passes_its_tests(
    cookies_session: Any, combination: dict[str, Any]
) -> None:
    check_combination(install_project(cookies_session, combination), combination)


def check_combination(project: BakedProject, combination: dict[str, Any]) -> None:
    """The installed project's Python, lint, tests, config, make help and DVC remote."""
    answers = {**template_defaults(), **combination}

    version = project.check(".venv/bin/python", "-c", "import sys; print(sys.version)").stdout
    assert version.startswith(answers["python_version"] + "."), version

    project.check("make", "lint")
    tests = project.check("make", "test", timeout=900).stdout
    assert " passed" in tests
    assert " failed" not in tests

    if answers["orchestrator"] == "airflow":
        # Airflow's own environment, the DAG parsed and run three times with dag.test().
        dag_tests = project.check("make", "airflow-test", timeout=1500).stdout
        assert " 5 passed" in dag_tests, dag_tests[-2000:]
    if answers["orchestrator"] == "kubeflow":
        # kfp's own environment; the pipeline compiled, checked and run with kfp.local twice.
        pipeline_tests = project.check("make", "kfp-test", timeout=1500).stdout
        assert " 8 passed" in pipeline_tests, pipeline_tests[-2000:]

    resolved = json.loads(project.check(f".venv/bin/{project.path.name}", "config").stdout)
    assert resolved["params"]["task"] == answers["task"]
    assert resolved["settings"]["mlflow_tracking_uri"] == answers["mlflow_tracking_uri"]

    shown = project.check("make", "help").stdout
    makefiles = ["Makefile", *sorted(p.name for p in (project.path / "make").glob("*.mk"))]
    lines = [
        line
        for name in makefiles
        for line in project.read(name if name == "Makefile" else f"make/{name}").splitlines()
    ]
    targets = [
        line.split(":")[0] for line in lines if line[:1].isalpha() and ":" in line and "## " in line
    ]
    assert targets
    assert [target for target in targets if target not in shown] == []

    if answers["initialize_git"] == "yes":
        url = project.check(".venv/bin/dvc", "config", "remote.storage.url", "--project")
        if answers["dvc_remote"] not in ("local", "none"):
            assert url.stdout.strip() == answers["dvc_remote_url"]
