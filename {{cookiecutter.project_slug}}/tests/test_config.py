from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.module_name }}.config import (
    DEFAULT_TRACKING_URI,
    ParamsError,
    Settings,
    load_params,
)


def test_project_params_load(project_root: Path) -> None:
    params = load_params(project_root / "params.yaml")

    assert params.task == "{{ cookiecutter.task }}"
    assert params.train.model == "{{ cookiecutter.model }}"
    assert 0 < params.data.test_size < 1


def test_invalid_value_names_the_key(tmp_path: Path, project_root: Path) -> None:
    text = (project_root / "params.yaml").read_text(encoding="utf-8")
    text = text.replace("model: {{ cookiecutter.model }}", "model: catboost")
    bad = tmp_path / "params.yaml"
    bad.write_text(text, encoding="utf-8")

    with pytest.raises(ParamsError, match=r"train\.model"):
        load_params(bad)


def test_misspelt_key_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("task: regression\ntrain:\n  model: linear\n  modle: linear\n", encoding="utf-8")

    with pytest.raises(ParamsError, match=r"train\.modle"):
        load_params(bad)


def test_missing_file_is_a_params_error(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "absent.yaml")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("MODEL_NAME", "other-model")

    settings = Settings()

    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.model_name == "other-model"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MODEL_NAME", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here

    settings = Settings()

    assert settings.mlflow_tracking_uri == DEFAULT_TRACKING_URI
    assert settings.model_name == "{{ cookiecutter.project_slug }}"
