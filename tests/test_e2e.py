"""End to end: every supported combination installs itself and passes its own checks.

Each rendered project runs its own `make setup` (uv, a fresh .venv), `make lint`
(ruff, ruff format, mypy --strict) and `make test`, exactly as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from baked import TOOLS_BIN, BakedProject, template_defaults
from combinations import SUPPORTED_COMBINATIONS
from conftest import bake_project

pytestmark = pytest.mark.e2e


def find_python(version: str) -> str | None:
    """An interpreter for `version`: uv's discovery first, then pyenv's installs."""
    found = subprocess.run(
        [str(TOOLS_BIN / "uv"), "python", "find", "--no-python-downloads", version],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 0:
        return found.stdout.strip()
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"))
    return str(candidates[-1]) if candidates else None


def setup_env(answers: dict[str, Any]) -> dict[str, str]:
    version = answers["python_version"]
    python = find_python(version)
    if python is None:
        pytest.fail(f"no Python {version} interpreter here: .ci/run must provide it")
    return {"UV_PYTHON": python, "UV_NO_PROGRESS": "1"}


@pytest.fixture(scope="module", params=SUPPORTED_COMBINATIONS)
def installed(request: pytest.FixtureRequest, cookies_session: Any) -> BakedProject:
    project = bake_project(cookies_session, request.param)
    answers = {**template_defaults(), **request.param}
    project.check("make", "setup", env=setup_env(answers), timeout=1200)
    return project


def test_installs_on_the_chosen_python(installed: BakedProject) -> None:
    answers = {**template_defaults(), **installed.answers}
    version = installed.check(".venv/bin/python", "-c", "import sys; print(sys.version)").stdout
    assert version.startswith(answers["python_version"] + ".")


def test_make_lint_passes(installed: BakedProject) -> None:
    installed.check("make", "lint")


def test_make_test_passes(installed: BakedProject) -> None:
    result = installed.check("make", "test")
    assert " passed" in result.stdout
    assert " failed" not in result.stdout


def test_console_script_prints_the_config(installed: BakedProject) -> None:
    slug = installed.path.name
    resolved = json.loads(installed.check(f".venv/bin/{slug}", "config").stdout)
    answers = {**template_defaults(), **installed.answers}
    assert resolved["params"]["task"] == answers["task"]
    assert resolved["settings"]["mlflow_tracking_uri"] == answers["mlflow_tracking_uri"]


def test_make_help_lists_every_target(installed: BakedProject) -> None:
    makefile = installed.read("Makefile")
    targets = [
        line.split(":")[0]
        for line in makefile.splitlines()
        if line and line[0].isalpha() and ":" in line and "##" in line
    ]
    shown = installed.check("make", "help").stdout
    assert targets
    for target in targets:
        assert target in shown


def test_dvc_pushes_to_the_configured_remote(installed: BakedProject) -> None:
    answers = {**template_defaults(), **installed.answers}
    if answers["initialize_git"] == "no":
        pytest.skip("initialize_git=no: DVC needs a git repository")
    dvc = ".venv/bin/dvc"
    url = installed.check(dvc, "config", "remote.storage.url").stdout.strip()
    if answers["dvc_remote"] != "local":
        assert url == answers["dvc_remote_url"]
        return
    (installed.path / "data").mkdir(exist_ok=True)
    (installed.path / "data" / "probe.csv").write_text("x\n1\n", encoding="utf-8")
    installed.check(dvc, "add", "data/probe.csv")
    installed.check(dvc, "push")
    # The default remote is a folder beside the project, not inside it.
    storage = installed.path.parent / f"{installed.path.name}-dvc-storage"
    if answers["dvc_remote_url"]:
        storage = installed.path / answers["dvc_remote_url"]
    assert any(path.is_file() for path in storage.rglob("*")), f"nothing pushed to {storage}"
