"""Every command's bad input: one `error:` line that names the value, the documented exit."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.module_name }}.cli import (
    PROG,
    build_parser,
    main,
)
from {{ cookiecutter.module_name }}.errors import (
    EXIT_CHECK_FAILED,
    EXIT_ERROR,
)
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def workdir(tmp_path: Path, project_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with params.yaml and nothing the pipeline writes yet."""
    shutil.copy(project_root / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    for name in ("PORT", "MODEL_DIR", "PARAMS_PATH", "MLFLOW_TRACKING_URI", "MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    return tmp_path


CASES = [
    # (command line, environment, exit status, what the line must say)
    (["config"], {"PARAMS_PATH": "absent.yaml"}, EXIT_ERROR, "absent.yaml: cannot read"),
    (["prepare"], {}, EXIT_ERROR, "data/raw/sample.csv: no such file"),
    (["train"], {}, EXIT_ERROR, f"train.csv: no such file — run `{PROG} prepare` first"),
    (["evaluate"], {}, EXIT_ERROR, f"test.csv: no such file — run `{PROG} prepare` first"),
    (["register"], {}, EXIT_ERROR, f"test.json: no such file — run `{PROG} evaluate` first"),
    (["promote", "v3"], {}, EXIT_ERROR, "version 'v3' is not a number"),
    (["models"], {}, EXIT_ERROR, "no registered model named"),
    (["export-model"], {}, EXIT_ERROR, "is registered yet — run `make pipeline` first"),
    (["export-model", "--output", "params.yaml"], {}, EXIT_ERROR, "params.yaml: is a file"),
    (["runtime", "--model-dir", "nowhere"], {}, EXIT_ERROR, "nowhere: no such directory"),
    (["serve"], {"PORT": "abc"}, EXIT_ERROR, "PORT='abc': Input should be a valid integer"),
    (["serve", "--port", "0"], {}, EXIT_ERROR, "--port='0': Input should be greater than"),
    (["serve", "--workers", "0"], {"WORKERS": "2"}, EXIT_ERROR, "--workers='0'"),
    (["serve"], {"MODEL_DIR": "nowhere"}, EXIT_ERROR, "MODEL_DIR: nowhere: no such directory"),
    (["serve", "--model-dir", "."], {}, EXIT_ERROR, "--model-dir: . is not a model directory"),
]


@pytest.mark.parametrize(("argv", "env", "status", "message"), CASES)
def test_bad_input_is_one_line_naming_it(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    status: int,
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert main(argv) == status

    error = capsys.readouterr().err
    assert error.startswith("error: "), error
    assert message in error
    assert len(error.strip().splitlines()) == 1, error


def test_smoke_against_a_closed_port_says_no_server_answered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    assert main(["smoke", "--url", url]) == EXIT_CHECK_FAILED

    error = capsys.readouterr().err
    assert f"{url}: no server answered (" in error
    assert "is it running there?" in error


def test_serve_help_lists_every_setting_with_its_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name, field in ServeSettings.model_fields.items():
        assert f"--{name.replace('_', '-')}" in shown
        assert f"[{name.upper()}; default:" in shown
        assert field.description, f"{name} has no description"
    assert "exit status: 0 done; 2 a problem to fix" in shown


def test_a_serve_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from {{ cookiecutter.module_name }} import cli
    from {{ cookiecutter.module_name }}.serving import run

    started: list[ServeSettings] = []
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setenv("HOST", "127.0.0.1")  # restored afterwards, as PORT is
    monkeypatch.setattr(run, "serve", started.append)

    assert cli.main(["serve", "--port", "9200", "--host", "localhost"]) == 0

    (settings,) = started
    assert (settings.port, settings.workers, settings.host) == (9200, 3, "localhost")
    # uvicorn's workers read the environment: the flags are there for them.
    assert (os.environ["PORT"], os.environ["HOST"]) == ("9200", "localhost")


def test_serve_without_model_dir_needs_mlflow(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The serve image has no MLflow: without MODEL_DIR, serve stops at once and says why
    instead of starting a server that never gets ready; with MLflow it serves the registry."""
    from {{ cookiecutter.module_name }} import cli
    from {{ cookiecutter.module_name }}.serving import run

    started: list[ServeSettings] = []
    monkeypatch.setattr(run, "serve", started.append)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # importlib finds no such module

    assert cli.main(["serve"]) == EXIT_ERROR

    error = capsys.readouterr().err
    assert error.startswith("error: MODEL_DIR is not set and MLflow is not installed"), error
    assert "/app/model" in error
    assert len(error.strip().splitlines()) == 1, error
    assert started == []

    monkeypatch.delitem(sys.modules, "mlflow")  # installed here (the train extra)
    assert cli.main(["serve"]) == 0
    assert [settings.model_dir for settings in started] == [None]
