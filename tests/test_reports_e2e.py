"""The reports people look at, from the default project's own pipeline run.

- The model card's figures: files the card and the README link to, drawn by `make pipeline`.
- The HTML drift report of a planted shift (one feature of the sample data scaled by 1.6),
  opened in headless Chromium (Debian's `chromium`): the DOM must put the shifted feature
  first with its bars drawn; a screenshot of the first screen must show both colours of
  bars; Chromium's network log must hold no request the page made. A control page that
  does fetch proves the log would show one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from baked import BakedProject

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve-e2e")]

SHIFTED = "worst_texture"  # a feature of breast_cancer, the default project's sample data
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The bars' colours in monitoring/charts.py: training grey, current blue.
TRAINING, CURRENT = "9e9e9e", "1f77b4"
COUNT_COLOURS = """
import json, sys
from PIL import Image
image = Image.open(sys.argv[1]).convert("RGB")
counts = {}
for count, colour in image.getcolors(image.width * image.height):
    counts[bytes(colour).hex()] = count
print(json.dumps({"size": image.size, "counts": counts}))
"""


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed: scripts/system-tools.sh installs it"
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def page_requests(net_log: Path) -> list[str]:
    """URLs a page asked for; Chromium's own traffic (updates, time) has no origin."""
    log = json.loads(net_log.read_text(encoding="utf-8"))
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    return [
        event["params"]["url"]
        for event in log["events"]
        if names[event["type"]] == "URL_REQUEST_START_JOB"
        and "url" in event.get("params", {})
        and event["params"].get("initiator") != "not an origin"
    ]


class Sections(HTMLParser):
    """The report's feature sections in document order, with their bars' heights."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[dict[str, Any]] = []
        self.summary = ""
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "section" and "feature" in classes:
            self.sections.append({"id": found["id"], "classes": classes, "bars": []})
        elif tag == "rect" and self.sections and set(classes) & {"training", "current"}:
            self.sections[-1]["bars"].append((classes[0], float(found["height"] or 0)))
        elif found.get("id") == "summary":
            self._in_summary = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._in_summary = False

    def handle_data(self, data: str) -> None:
        if self._in_summary:
            self.summary += data


@pytest.fixture(scope="module")
def drift_report(exported_project: BakedProject) -> Path:
    project = exported_project
    project.check(
        ".venv/bin/python",
        "-c",
        "import pandas as pd; frame = pd.read_csv('data/raw/sample.csv'); "
        f"frame['{SHIFTED}'] *= 1.6; "
        "frame.drop(columns=['target']).to_csv('build/shifted.csv', index=False)",
    )
    result = project.run("make", "drift", "CURRENT=build/shifted.csv", timeout=300)
    assert result.returncode != 0, "make drift must exit non-zero on drift"
    assert f"DRIFT: features {SHIFTED}" in result.stdout, result.stdout + result.stderr
    return project.path / "reports" / "drift" / "drift.html"


def test_the_drift_report_puts_the_drifted_feature_first_with_its_bars(
    drift_report: Path, tmp_path: Path
) -> None:
    dom = chromium(tmp_path / "profile", "--dump-dom", drift_report.as_uri()).stdout
    parsed = Sections()
    parsed.feed(dom)
    assert parsed.summary.startswith(f"DRIFT: features {SHIFTED}."), parsed.summary
    assert len(parsed.sections) == 30  # every feature of breast_cancer has its section
    first = parsed.sections[0]
    assert first["id"] == f"feature-{SHIFTED}"
    assert "alert" in first["classes"]
    heights: dict[str, list[float]] = {"training": [], "current": []}
    for kind, height in first["bars"]:
        heights[kind].append(height)
    assert len(heights["training"]) == len(heights["current"]) >= 3
    assert max(heights["training"]) > 0
    assert max(heights["current"]) > 0
    assert heights["training"] != heights["current"]


def test_the_drift_report_fetches_nothing_and_draws_its_first_screen(
    exported_project: BakedProject, drift_report: Path, tmp_path: Path
) -> None:
    control = tmp_path / "control.html"
    control.write_text('<!doctype html><img src="http://127.0.0.1:9/x.png">', encoding="utf-8")
    net_log = f"--log-net-log={tmp_path / 'control.json'}"
    chromium(tmp_path / "control", net_log, "--dump-dom", control.as_uri())  # exits once loaded
    assert page_requests(tmp_path / "control.json") == ["http://127.0.0.1:9/x.png"]

    shot, log = tmp_path / "first-screen.png", tmp_path / "net.json"
    chromium(
        tmp_path / "profile",
        "--hide-scrollbars",
        "--window-size=1000,560",  # the summary and the first feature's chart, no more
        f"--screenshot={shot}",
        f"--log-net-log={log}",
        drift_report.as_uri(),
    )
    assert page_requests(log) == []
    assert not re.search(r"(src|href)=", drift_report.read_text(encoding="utf-8"))
    measured = json.loads(
        exported_project.check(".venv/bin/python", "-c", COUNT_COLOURS, str(shot)).stdout
    )
    assert measured["size"] == [1000, 560]
    counts = measured["counts"]
    for colour in (TRAINING, CURRENT):
        assert counts.get(colour, 0) > 200, f"no bars of #{colour} drawn"


def test_the_card_and_the_readme_show_figures_the_pipeline_drew(
    exported_project: BakedProject,
) -> None:
    project = exported_project
    card = project.read("reports/model_card.md")
    links = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", card)
    assert {Path(link).name for link in links} >= {"roc.png", "importance.png", "gate.png"}
    for link in links:
        assert (project.path / "reports" / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    readme = re.findall(r"!\[[^\]]+\]\((reports/figures/[^)]+)\)", project.read("README.md"))
    assert readme == ["reports/figures/roc.png"]
    assert (project.path / readme[0]).is_file()
