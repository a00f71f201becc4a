from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.module_name }} import __version__
from {{ cookiecutter.module_name }}.cli import main


def test_config_prints_settings_and_params(
    project_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project_root)

    assert main(["config"]) == 0

    resolved = json.loads(capsys.readouterr().out)
    assert resolved["params"]["task"] == "{{ cookiecutter.task }}"
    assert resolved["settings"]["model_name"]


def test_bad_params_exit_2_with_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = "task: clustering\ntrain:\n  model: linear\n"
    (tmp_path / "params.yaml").write_text(params, encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    assert main(["config"]) == 2

    assert "task" in capsys.readouterr().err


def test_module_entry_point_reports_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", main.__module__.split(".")[0], "--version"],
        capture_output=True,
        text=True,
        check=True,
    )

    assert __version__ in result.stdout
