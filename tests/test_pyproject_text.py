"""The rendered pyproject.toml: free text UTF-8 and exactly as typed; pins elsewhere that
must agree with its requirements."""

from __future__ import annotations

import re
from typing import Any

from baked import template_defaults
from combinations import HOSTILE_TEXT
from conftest import bake_project
from packaging.requirements import Requirement
from packaging.version import Version

AUTHOR = "Zoë Müller"


def test_free_text_is_written_as_typed(cookies_session: Any) -> None:
    project = bake_project(cookies_session, {"author_name": AUTHOR, "description": HOSTILE_TEXT})
    raw = project.read("pyproject.toml")
    metadata = project.load("pyproject.toml")["project"]
    assert metadata["description"] == HOSTILE_TEXT
    assert metadata["authors"] == [{"name": AUTHOR, "email": template_defaults()["author_email"]}]
    # not \u escapes (valid TOML, but not what anyone reading the file typed)
    assert f'name = "{AUTHOR}"' in raw
    assert "漢字 ✓" in raw
    assert "\\u" not in raw


def test_the_tracking_server_is_no_older_than_its_clients(cookies_session: Any) -> None:
    """docker-compose's MLflow server (tracking/requirements.txt) satisfies the floor the
    project's own MLflow client requires, so the stack serves what the client calls."""
    project = bake_project(cookies_session, {"docker_compose": "yes"})
    train = project.load("pyproject.toml")["project"]["optional-dependencies"]["train"]
    (client,) = [Requirement(text) for text in train if Requirement(text).name == "mlflow"]
    floors = [spec.version for spec in client.specifier if spec.operator == ">="]
    assert floors, f"the client's requirement {client} has no >= floor"
    pins = re.findall(r"^mlflow==(\S+)$", project.read("tracking/requirements.txt"), re.M)
    assert len(pins) == 1, pins
    server = Version(pins[0])
    assert client.specifier.contains(server), f"server {server} outside client's {client}"
    assert server.release[:1] == Version(floors[0]).release[:1], "one major version"
