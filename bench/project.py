"""What every benchmark starts from: the default project rendered and installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
TOOLS = Path(sys.executable).parent
SLUG = "my-ml-service"


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """The command's output; exits with its output when it fails."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def default_project(
    scratch: Path, *targets: str, answers: tuple[str, ...] = ()
) -> tuple[Path, dict[str, str]]:
    """Render into `scratch` (default answers but `answers`, key=value), run `make setup`
    and `targets`; (project, env with its venv)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1"}
    # as on a user's machine: the first import writes bytecode, later processes reuse it
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PATH"] = f"{TOOLS}{os.pathsep}{env['PATH']}"
    run(
        [str(TOOLS / "cookiecutter"), "--no-input", "-o", str(scratch), str(TEMPLATE), *answers],
        TEMPLATE,
        env,
    )
    project = scratch / SLUG
    run(["make", "setup", *targets], project, env)
    env["PATH"] = f"{project / '.venv/bin'}{os.pathsep}{env['PATH']}"
    return project, env
