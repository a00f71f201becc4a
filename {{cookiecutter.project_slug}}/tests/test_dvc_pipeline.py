"""dvc.yaml and the code agree on every path, parameter and command."""

from __future__ import annotations

from pathlib import Path

import yaml

from {{ cookiecutter.module_name }}.cli import COMMANDS
from {{ cookiecutter.module_name }}.config import (
    Paths,
    load_params,
)


def stage_paths(entries: list[object]) -> set[str]:
    return {next(iter(entry)) if isinstance(entry, dict) else str(entry) for entry in entries}


def test_stage_outputs_are_the_paths_the_code_writes(project_root: Path) -> None:
    pipeline = yaml.safe_load((project_root / "dvc.yaml").read_text(encoding="utf-8"))
    written = set()
    for stage in pipeline["stages"].values():
        for key in ("outs", "metrics", "plots"):
            written |= stage_paths(stage.get(key, []))
    expected = {
        str(path)
        for name, path in vars(Paths).items()
        if not name.startswith("_") and isinstance(path, Path)
    }
    assert written == expected


def test_every_stage_runs_a_cli_command_and_reads_known_params(project_root: Path) -> None:
    pipeline = yaml.safe_load((project_root / "dvc.yaml").read_text(encoding="utf-8"))
    params = load_params(project_root / "params.yaml").model_dump()
    for name, stage in pipeline["stages"].items():
        program, command = stage["cmd"].split()
        assert program == "{{ cookiecutter.project_slug }}"
        assert command == name
        assert command in COMMANDS
        for param in stage.get("params", []):
            assert param.split(".")[0] in params, (name, param)
