"""Free text in the rendered pyproject.toml: UTF-8 as typed, and exactly what was typed."""

from __future__ import annotations

from typing import Any

from baked import template_defaults
from combinations import HOSTILE_TEXT
from conftest import bake_project

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
