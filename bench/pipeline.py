"""Wall time and peak memory of the default project's pipeline, after install.

Renders the default project into a temporary folder, runs its `make setup` (not timed),
then times `dvc repro` from scratch and again with nothing changed, under GNU time.
The figures go in the template's README.

    .venv/bin/python bench/pipeline.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from project import default_project

TARGET_SECONDS = 60.0


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """(wall seconds, peak resident KiB of the largest process) of `command`."""
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command], cwd=cwd, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    if wall is None or peak is None:
        sys.exit(f"no figures from /usr/bin/time:\n{result.stderr[-2000:]}")
    hours, minutes, seconds = wall.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds), int(peak.group(1))


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        project, env = default_project(Path(scratch))
        cold, cold_peak = timed(["dvc", "repro"], project, env)
        again, _ = timed(["dvc", "repro"], project, env)
    cores = os.cpu_count()
    print(f"default project pipeline (dvc repro, 5 stages), {cores} cores, after make setup:")
    print(f"  first run      {cold:6.1f} s   peak {cold_peak / 1024:6.0f} MiB (largest process)")
    print(f"  no-op re-run   {again:6.1f} s")
    print(f"  target {TARGET_SECONDS:.0f} s: first run is {cold / TARGET_SECONDS:.2f}x the target")


if __name__ == "__main__":
    main()
