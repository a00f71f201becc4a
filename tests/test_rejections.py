"""Rejected answers, through the real `cookiecutter` command: a clear line, nothing left."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from baked import TEMPLATE_DIR, TOOLS_BIN
from combinations import UNSUPPORTED_COMBINATIONS


def run_cookiecutter(
    output_dir: Path, answers: dict[str, Any], template: str = str(TEMPLATE_DIR)
) -> subprocess.CompletedProcess[str]:
    """From the template's folder, as its README shows, so a relative template works."""
    return subprocess.run(
        [
            str(TOOLS_BIN / "cookiecutter"),
            "--no-input",
            "--output-dir",
            str(output_dir),
            template,
            *(f"{key}={value}" for key, value in answers.items()),
        ],
        cwd=TEMPLATE_DIR,
        env={**os.environ, "PWD": str(TEMPLATE_DIR)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_until_empty(directory: Path, seconds: float = 5) -> list[str]:
    """The hook removes the parents of a slug like 'a/b' right after cookiecutter exits."""
    deadline = time.monotonic() + seconds
    while (left := sorted(p.name for p in directory.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize(("answers", "key", "reason"), UNSUPPORTED_COMBINATIONS)
def test_rejected_with_one_clear_line_and_nothing_left(
    tmp_path: Path, answers: dict[str, Any], key: str, reason: str
) -> None:
    result = run_cookiecutter(tmp_path, answers)

    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if line.startswith(f"ERROR: {key}: ")]
    assert len(ours) == 1, result.stderr
    assert reason in ours[0]
    assert " — " in ours[0], "each line says how to fix it"
    assert "nothing was generated" in result.stderr
    assert 'File "pre_gen_project' not in result.stderr, "the hook itself must not crash"
    assert "Traceback" not in result.stderr, "cookiecutter's traceback adds nothing to the line"
    (to_fix,) = [line for line in result.stderr.splitlines() if line.startswith("Your answers")]
    assert key in to_fix
    assert result.stderr.rstrip().splitlines()[-1].lstrip().startswith("cookiecutter --no-input")
    assert wait_until_empty(tmp_path) == []


def test_the_printed_command_renders_once_the_field_is_fixed(tmp_path: Path) -> None:
    """No answer is lost: the last line is the command, with every answer that was typed."""
    answers = {"project_name": "Zoë's Model", "task": "regression", "author_email": "zoe@"}
    rejected = run_cookiecutter(tmp_path, answers, template=".")
    assert rejected.returncode == 1
    command = shlex.split(rejected.stderr.rstrip().splitlines()[-1])
    assert command[1:5] == ["--no-input", "--output-dir", str(tmp_path), "."]
    assert "author_email=zoe@" in command
    assert "task=regression" in command
    assert "model=hist_gradient_boosting" not in command, "defaults are left out"

    fixed = [part.replace("=zoe@", "=zoe@example.com") for part in command]
    fixed[0] = str(TOOLS_BIN / "cookiecutter")
    subprocess.run(fixed, cwd=TEMPLATE_DIR, capture_output=True, text=True, timeout=120, check=True)

    project = tmp_path / "zoe-s-model"
    (params,) = yaml.safe_load_all((project / "params.yaml").read_text(encoding="utf-8"))
    assert params["task"] == "regression"
    assert "zoe@example.com" in (project / "pyproject.toml").read_text(encoding="utf-8")


def test_choice_outside_the_list_is_refused_before_rendering(tmp_path: Path) -> None:
    result = run_cookiecutter(tmp_path, {"python_version": "2.7"})

    assert result.returncode != 0
    assert "python_version" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_name_with_no_letters_leaves_nothing(tmp_path: Path) -> None:
    # Its slug is empty, so cookiecutter stops before any hook: the folder would be
    # the output folder itself. Nothing may be created either way.
    result = run_cookiecutter(tmp_path / "out", {"project_name": "!!!"})

    assert result.returncode != 0
    assert list(tmp_path.iterdir()) == []
