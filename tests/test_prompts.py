"""The interactive questions: every option has a label, and typed answers are used."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import time
import tomllib
from pathlib import Path

from baked import TEMPLATE_DIR, TOOLS_BIN, BakedProject


def test_every_option_has_a_human_label() -> None:
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    options = {key for key in context if not key.startswith("_")}
    prompts = context["__prompts__"]
    assert set(prompts) == options
    for key in options:
        value = context[key]
        if isinstance(value, list):
            labels = prompts[key]
            assert labels["__prompt__"]
            assert set(labels) - {"__prompt__"} == set(value), key


def test_answers_typed_at_the_prompts_are_used(tmp_path: Path) -> None:
    # Enter keeps a default; choices are answered by their number.
    answers = ["Fraud Detector", "", "", "", "", "", "", "2", "2", "3"] + [""] * 11
    result = subprocess.run(
        [str(TOOLS_BIN / "cookiecutter"), "--output-dir", str(tmp_path), str(TEMPLATE_DIR)],
        input="\n".join(answers) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "[1/21] Project name" in result.stdout
    assert "3.12" in result.stdout
    project = BakedProject(tmp_path / "fraud-detector")
    assert project.read(".python-version").strip() == "3.12"
    (params,) = project.load("params.yaml")
    assert params["task"] == "regression"
    assert params["train"]["model"] == "linear"
    assert project.has_file("src/fraud_detector/cli.py")


def run_in_terminal(command: list[str], typed: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run `command` on a pseudo-terminal, as a user at a shell; what it wrote, ANSI stripped."""
    main_fd, terminal = pty.openpty()
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    os.write(main_fd, ("\n".join(typed) + "\n").encode())
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal closed: the command exited
            break
        if not chunk:
            break
        output += chunk
    os.close(main_fd)
    code = process.wait(timeout=10)
    return code, re.sub(r"\x1b\[[0-9;]*m", "", output.decode(errors="replace"))


def test_a_bad_answer_is_asked_again_at_once_in_a_terminal(tmp_path: Path) -> None:
    # The bad email is answered at prompt 6 and asked again before prompt 7 is shown.
    typed = ["Fraud Detector", "", "", "", "", "not-an-email", "zoe@example.com"] + [""] * 15
    command = [str(TOOLS_BIN / "cookiecutter"), "--output-dir", str(tmp_path), str(TEMPLATE_DIR)]
    code, output = run_in_terminal(command, typed)

    assert code == 0, output
    error = "ERROR: author_email: 'not-an-email' is not an email address — use name@domain.tld"
    assert output.index(error) < output.index("[7/21]")
    assert "Traceback" not in output
    project = BakedProject(tmp_path / "fraud-detector")
    assert tomllib.loads(project.read("pyproject.toml"))["project"]["authors"][0]["email"] == (
        "zoe@example.com"
    )
