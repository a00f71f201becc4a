"""The interactive questions: every option has a label, and typed answers are used."""

from __future__ import annotations

import json
import subprocess
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
    answers = ["Fraud Detector", "", "", "", "", "", "", "2", "2", "3"] + [""] * 9
    result = subprocess.run(
        [str(TOOLS_BIN / "cookiecutter"), "--output-dir", str(tmp_path), str(TEMPLATE_DIR)],
        input="\n".join(answers) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "[1/19] Project name" in result.stdout
    assert "3.12" in result.stdout
    project = BakedProject(tmp_path / "fraud-detector")
    assert project.read(".python-version").strip() == "3.12"
    (params,) = project.load("params.yaml")
    assert params["task"] == "regression"
    assert params["train"]["model"] == "linear"
    assert project.has_file("src/fraud_detector/cli.py")
