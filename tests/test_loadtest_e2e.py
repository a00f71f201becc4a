"""End to end: the rendered project's `make loadtest` (locust) and its pass/fail thresholds.

The default project, its pipeline run and @champion exported, serves `build/model` under
real uvicorn; the real `make loadtest` runs locust (a pinned uv tool environment, outside
uv.lock) against it for a few seconds, and against a port where nothing listens.
"""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Iterator, Sequence

import pytest
from baked import BakedProject, free_port
from test_serve_e2e import serving

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve-e2e")]
REPORT_DIR = "build/loadtest"


def run_loadtest(
    project: BakedProject,
    url: str,
    users: int = 4,
    duration: str = "5s",
    make_args: Sequence[str] = (),
    timeout: float = 300,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """`make loadtest URL=<url> USERS=<users> DURATION=<duration> <make_args…>` in `project`.

    `env` goes into make's environment (e.g. LOADTEST_P99_MS="200"); `make_args` onto its
    command line. The report is in `project.path / REPORT_DIR` afterwards (see `report`).
    """
    return project.run(
        "make",
        "loadtest",
        f"URL={url}",
        f"USERS={users}",
        f"DURATION={duration}",
        *make_args,
        env=env,
        timeout=timeout,
    )


def report(project: BakedProject) -> dict[str, dict[str, str]]:
    """locust's stats CSV of the last run, one row per request name ("Aggregated": all)."""
    with (project.path / REPORT_DIR / "locust_stats.csv").open(encoding="utf-8") as stats:
        return {row["Name"]: row for row in csv.DictReader(stats)}


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def project(exported_project: BakedProject) -> BakedProject:
    return exported_project


@pytest.fixture(scope="module")
def server(project: BakedProject) -> Iterator[str]:
    """The exported model served as the image serves it; yields its URL."""
    with serving(project, MODEL_DIR="build/model") as base:
        yield base


def test_loadtest_passes_against_the_real_server(project: BakedProject, server: str) -> None:
    # a zero error budget: any failed request would fail the run
    result = run_loadtest(project, server, LOADTEST_MAX_ERROR_RATE="0")
    assert result.returncode == 0, output(result)[-4000:]
    assert "loadtest passed:" in result.stdout, output(result)[-4000:]
    rows = report(project)
    assert int(rows["Aggregated"]["Request Count"]) > 0, rows
    assert int(rows["Aggregated"]["Failure Count"]) == 0, rows
    assert int(rows["/predict"]["Request Count"]) > 0, rows
    assert int(rows["/health/ready"]["Failure Count"]) == 0, rows
    assert (project.path / REPORT_DIR / "report.html").is_file()


def test_an_impossible_p99_threshold_fails_and_says_so(project: BakedProject, server: str) -> None:
    result = run_loadtest(project, server, duration="3s", make_args=["LOADTEST_P99_MS=0.001"])
    assert result.returncode != 0, output(result)[-4000:]
    assert "loadtest FAILED: p99 latency" in output(result), output(result)[-4000:]
    assert "> LOADTEST_P99_MS=0.001" in output(result)
    assert "LOADTEST_MAX_ERROR_RATE=" not in result.stderr  # no request failed


def test_no_server_fails_on_the_error_rate(project: BakedProject) -> None:
    result = run_loadtest(project, f"http://127.0.0.1:{free_port()}", duration="3s")
    assert result.returncode != 0, output(result)[-4000:]
    assert "loadtest FAILED: error rate 100.00%" in output(result), output(result)[-4000:]
    assert "> LOADTEST_MAX_ERROR_RATE=0.01" in output(result)
    assert "Connection refused" in output(result)
