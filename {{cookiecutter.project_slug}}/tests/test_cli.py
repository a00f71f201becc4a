from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.module_name }} import __version__
from {{ cookiecutter.module_name }}.artifact import RUNTIME
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


def test_runtime_checks_that_the_model_loads_with_what_is_installed(
    tmp_path: Path,
    project_root: Path,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_model_dir(tmp_path, make_frame(rows=100), project_root, "1")

    assert main(["runtime", "--model-dir", str(tmp_path), "--check"]) == 0
    shown = capsys.readouterr().out
    assert "served as compiled numpy arrays" in shown
    assert "loaded and answered" in shown

    record = json.loads((tmp_path / RUNTIME).read_text(encoding="utf-8"))
    record.update(predictor="pipeline", extras=["pipeline"], packages={"scikit-learn": "0.1"})
    (tmp_path / RUNTIME).write_text(json.dumps(record), encoding="utf-8")
    assert main(["runtime", "--model-dir", str(tmp_path), "--check"]) == 1
    assert "scikit-learn: the model was trained with 0.1, installed is" in capsys.readouterr().err
