"""The scheduled drift check's outcome as Prometheus metrics, pushed to a Pushgateway, so
that alerts see it (the Job's log is not the only record):

    python -m {{ cookiecutter.module_name }}.monitoring.publish <exit status> reports/drift/drift.json

DRIFT_PUSHGATEWAY_URL names the Pushgateway (http://host:9091); the group is job
`drift-check` and the pod's namespace (POD_NAMESPACE, else `local`). A check that
ran (status 0 or 1) replaces the group: its status, verdict, per-feature PSI and the time
of this last success. One that could not run (2, 3) updates only the status and the time
of the attempt, so the last verdict stays visible. Standard library only; a Pushgateway
out of reach is a warning, never a change of the check's exit status.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PREFIX = "ml_batch_drift"
HELP = {
    "check_status": "Exit status of the last drift check: 0 none, 1 drift, 2 fix, 3 unreachable",
    "check_timestamp_seconds": "When the last drift check ended",
    "last_success_timestamp_seconds": "When a drift check last ran to a verdict",
    "detected": "1 when the last check found drift",
    "features_drifted": "Features at the alert level in the last check",
    "rows": "Rows of the data the last check compared",
    "psi": "Population stability index of each feature in the last check",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(status: int, report: dict[str, Any] | None, now: float) -> str:
    """The metrics in Prometheus' text format."""
    samples: list[tuple[str, str, float]] = [
        ("check_status", "", status),
        ("check_timestamp_seconds", "", now),
    ]
    if report is not None:
        samples += [
            ("last_success_timestamp_seconds", "", now),
            ("detected", "", float(bool(report["detected"]))),
            ("features_drifted", "", len(report["drifted"])),
            ("rows", "", report["rows"]),
        ]
        samples += [
            ("psi", '{feature="' + _label(feature["name"]) + '"}', feature["psi"])
            for feature in report["features"]
            if feature.get("psi") is not None and math.isfinite(feature["psi"])
        ]
    lines: list[str] = []
    for name, labels, value in samples:
        metric = f"{PREFIX}_{name}"
        if f"# TYPE {metric} gauge" not in lines:
            lines += [f"# HELP {metric} {HELP[name]}", f"# TYPE {metric} gauge"]
        lines.append(f"{metric}{labels} {value}")
    return "\n".join(lines) + "\n"


def push(url: str, namespace: str, body: str, replace: bool) -> None:
    """PUT replaces the group's metrics; POST only those of the same names."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"DRIFT_PUSHGATEWAY_URL={url}: an http:// or https:// URL")
    path = f"/metrics/job/drift-check/namespace/{urllib.parse.quote(namespace, safe='')}"
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url.rstrip("/") + path,
        data=body.encode(),
        method="PUT" if replace else "POST",
        headers={"Content-Type": "text/plain; version=0.0.4"},
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[0].isdigit():
        print("usage: publish <exit status> <drift.json>", file=sys.stderr)
        return 2
    url = os.environ.get("DRIFT_PUSHGATEWAY_URL", "")
    if not url:
        return 0
    status, path = int(args[0]), Path(args[1])
    ran = status in (0, 1) and path.is_file()
    report = json.loads(path.read_text(encoding="utf-8")) if ran else None
    namespace = os.environ.get("POD_NAMESPACE") or "local"
    try:
        push(url, namespace, exposition(status, report, time.time()), replace=ran)
    except (OSError, ValueError) as error:
        print(f"warning: the drift metrics did not reach {url}: {error}", file=sys.stderr)
        return 0
    print(f"drift metrics pushed to {url} (job drift-check, namespace {namespace})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
