"""A rendered project and the questions tests ask of it."""

from __future__ import annotations

import configparser
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
TOOLS_BIN = Path(sys.executable).parent

# Jinja that survived rendering. GitHub expressions (${{ … }}) and Prometheus/Grafana
# templates ({{ $labels.x }}) are legitimate in the files that use them.
LEFTOVER_JINJA = re.compile(r"\{%|\{#|(?<!\$)\{\{(?!\s*\$)")


def free_port() -> int:
    """A TCP port nothing listens on right now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def template_defaults() -> dict[str, Any]:
    """The first value of every option, as cookiecutter would pick it with --no-input."""
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    return {
        key: value[0] if isinstance(value, list) else value
        for key, value in context.items()
        if not key.startswith("_")
    }


@dataclass
class BakedProject:
    path: Path
    answers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return str(self.answers.get("module_name") or self.path.name.replace("-", "_"))

    def files(self) -> list[str]:
        """Every file, relative, outside .git."""
        return sorted(
            str(path.relative_to(self.path))
            for path in self.path.rglob("*")
            if path.is_file() and ".git" not in path.relative_to(self.path).parts[:1]
        )

    def has_file(self, relative: str) -> bool:
        return (self.path / relative).is_file()

    def read(self, relative: str) -> str:
        return (self.path / relative).read_text(encoding="utf-8")

    def text_files(self) -> Iterator[tuple[str, str]]:
        for relative in self.files():
            try:
                yield relative, self.read(relative)
            except UnicodeDecodeError:
                continue

    def load(self, relative: str) -> Any:
        """Parse a YAML (all documents), TOML, JSON or DVC config file."""
        text = self.read(relative)
        if relative.endswith((".yml", ".yaml")):
            return list(yaml.safe_load_all(text))
        if relative.endswith(".toml"):
            return tomllib.loads(text)
        if relative.endswith(".json"):
            return json.loads(text)
        if relative == ".dvc/config":
            parser = configparser.ConfigParser()
            parser.read_string(text)
            return parser
        raise ValueError(f"no parser for {relative}")

    def run(
        self, *command: str, env: Mapping[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the project; tools of the template's venv come first on PATH."""
        full_env = {**os.environ, **(env or {})}
        full_env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{full_env.get('PATH', '')}"
        return subprocess.run(
            command,
            cwd=self.path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def check(self, *command: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Like run, but fail the test with the command's output when it fails."""
        result = self.run(*command, **kwargs)
        assert result.returncode == 0, (
            f"{' '.join(command)} exited {result.returncode} in {self.path}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
        return result
