"""`make help` of the rendered project: every target, readable in a pipe and on a terminal."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from baked import BakedProject
from conftest import bake_project

HELP = ["make", "--no-print-directory", "help"]


@pytest.fixture(scope="module")
def project(cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, {})


def phony_targets(project: BakedProject) -> list[str]:
    """The targets the Makefile and make/*.mk declare .PHONY: the commands of the project."""
    names = ["Makefile", *(f"make/{mk.name}" for mk in sorted(project.path.glob("make/*.mk")))]
    return sorted(
        target
        for name in names
        for line in project.read(name).splitlines()
        if line.startswith(".PHONY:")
        for target in line.removeprefix(".PHONY:").split()
    )


def listed_targets(shown: str) -> list[str]:
    """The first word of each line of the list (a blank line ends it: the variables follow)."""
    return sorted(line.split()[0] for line in shown.split("\n\n")[0].splitlines())


def test_help_in_a_pipe_is_plain_readable_text(project: BakedProject) -> None:
    assert len(list(project.path.glob("make/*.mk"))) == 4  # the default renders every part
    shown = project.check("bash", "-c", f"set -o pipefail; {' '.join(HELP)} | cat").stdout
    assert "\x1b[" not in shown
    assert "$(" not in shown
    assert listed_targets(shown) == phony_targets(project)
    # the variables the descriptions name, with their values
    assert "MODEL_DIR=build/model" in shown
    assert f"IMAGE=ghcr.io/your-github-handle/{project.path.name}" in shown


def test_help_on_a_terminal_is_in_colour(project: BakedProject) -> None:
    primary, secondary = os.openpty()
    with subprocess.Popen(
        HELP, cwd=project.path, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary
    ) as make:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other end is closed, make is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(primary)
    assert make.returncode == 0
    shown = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "\x1b[36mhelp" in shown
    plain = shown.replace("\x1b[36m", "").replace("\x1b[0m", "")
    assert listed_targets(plain) == phony_targets(project)
