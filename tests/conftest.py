from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from baked import TEMPLATE_DIR, BakedProject

# DVC and MLflow must not phone home from tests, and git needs an identity to commit.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GIT_AUTHOR_NAME", "Template Tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@example.com")
os.environ.setdefault("GIT_COMMITTER_NAME", "Template Tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@example.com")


def pytest_configure(config: pytest.Config) -> None:
    # pytest-cookies renders the template given by --template; default to this repository.
    config.option.template = str(TEMPLATE_DIR)


def bake_project(cookies: Any, answers: dict[str, Any]) -> BakedProject:
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, f"baking {answers} failed: {result.exception!r}"
    assert result.exit_code == 0
    return BakedProject(Path(result.project_path), answers)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Slowest first, so the test workers finish together rather than one waiting on the tail.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)
