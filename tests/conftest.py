from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from baked import TEMPLATE_DIR, TOOLS_BIN, BakedProject, template_defaults

# DVC and MLflow must not phone home from tests, and git needs an identity to commit.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GIT_AUTHOR_NAME", "Template Tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@example.com")
os.environ.setdefault("GIT_COMMITTER_NAME", "Template Tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@example.com")
# Each rendered project's first process writes the bytecode of what it imports (MLflow,
# scikit-learn, pandas); with this set, every later process would compile them again.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def pytest_configure(config: pytest.Config) -> None:
    # pytest-cookies renders the template given by --template; default to this repository.
    config.option.template = str(TEMPLATE_DIR)
    # cookiecutter's own command puts the template on sys.path for its local_extensions
    # before the prompts; pytest-cookies prompts before it does.
    if str(TEMPLATE_DIR) not in sys.path:
        sys.path.append(str(TEMPLATE_DIR))


def bake_project(cookies: Any, answers: dict[str, Any]) -> BakedProject:
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, f"baking {answers} failed: {result.exception!r}"
    assert result.exit_code == 0
    return BakedProject(Path(result.project_path), answers)


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
    """Environment for `make setup`: the interpreter the project asks for."""
    version = answers["python_version"]
    python = find_python(version)
    if python is None:
        pytest.fail(f"no Python {version} interpreter here: .ci/run must provide it")
    return {"UV_PYTHON": python, "UV_NO_PROGRESS": "1"}


def install_project(cookies: Any, answers: dict[str, Any]) -> BakedProject:
    """Bake, then the project's own `make setup` on the Python version it asks for."""
    project = bake_project(cookies, answers)
    project.check("make", "setup", env=setup_env({**template_defaults(), **answers}), timeout=1200)
    return project


@pytest.fixture(scope="session")
def exported_project(cookies_session: Any) -> BakedProject:
    """The default project installed, its pipeline run and @champion exported to build/model.

    Shared by the serving and monitoring end-to-end modules (one xdist group, one worker).
    """
    baked = install_project(cookies_session, {})
    baked.check("make", "pipeline", "export-model", timeout=1200)
    return baked


# Tests whose xdist_group pytest-xdist could not apply (see the pin of pytest).
UNGROUPED: list[str] = []


@pytest.hookimpl(trylast=True)  # after xdist has put each test's group into its id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Slowest first, so the test workers finish together rather than one waiting on the tail.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)
    if getattr(config.option, "loadgroup", False):
        grouped = [item.nodeid for item in items if item.get_closest_marker("xdist_group")]
        UNGROUPED.extend(nodeid for nodeid in grouped if "@" not in nodeid)


@pytest.fixture(scope="session", autouse=True)
def groups_hold() -> None:
    """Fail, rather than let every worker build a group's project and images anew."""
    if UNGROUPED:
        pytest.fail(
            f"xdist_group is not applied ({UNGROUPED[0]} has no @group in its id): this "
            "pytest and pytest-xdist do not work together; see the pin in pyproject.toml"
        )
