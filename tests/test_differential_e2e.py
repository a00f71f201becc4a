"""Differential: the project's server against `mlflow models serve`, body for body.

Both serve the same model (the default project's @champion: ours from its export, MLflow
from the registry) on 127.0.0.1. Each generated body, valid or not, JSON or CSV, goes to
both servers' /invocations, and the answers must agree:

- MLflow 2xx: ours 2xx with the same predictions;
- MLflow 4xx: ours 4xx;
- MLflow 5xx: ours 4xx (a bad body is the client's problem, never a server error);

except for the deliberate differences below, each with its reason. The table of cases,
agreements and differences goes to build/differential.md for the README.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from baked import TEMPLATE_DIR, BakedProject, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve-e2e")]

TABLE = TEMPLATE_DIR / "build" / "differential.md"
JSON = "application/json"
CSV = "text/csv"
SEED = 17
CASES_PER_KIND = 6
# Where MLflow answers 2xx and ours 4xx on purpose: kind of body -> the reason.
DELIBERATE = {
    "unknown column": "an unknown field is refused by name; MLflow drops it silently",
    "null value": "null only where training had missing values; MLflow passes NaN on",
    "boolean value": "a boolean is not a number; MLflow reads true as 1.0",
    "params beside the rows": "the model takes no params; MLflow ignores them",
}

Rows = list[dict[str, float]]
Case = tuple[str, str, bytes]  # kind, content type, body


def call(url: str, body: bytes, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def started(
    command: list[str], cwd: Path, env: dict[str, str], ready: str, log: Path
) -> subprocess.Popen[bytes]:
    """The server, once `ready` answers 200; its output goes to `log` (MLflow writes a lot,
    and a pipe nobody reads would block it)."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(ready, timeout=5) as response:
                if response.status == 200:
                    return process
        except OSError:  # refused, reset, or a read timed out while starting
            pass
        assert time.monotonic() < deadline, f"{command[:4]} never became ready"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def servers(
    exported_project: BakedProject, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(ours, MLflow's) base URLs, both serving the champion."""
    project = exported_project
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}
    # MLflow starts `uvicorn` from PATH: the project's.
    env["PATH"] = f"{project.path / '.venv/bin'}{os.pathsep}{env['PATH']}"
    ours_port, mlflow_port = free_port(), free_port()
    logs = tmp_path_factory.mktemp("servers")
    ours = started(
        [str(project.path / ".venv/bin" / project.path.name), "serve"],
        project.path,
        {**env, "MODEL_DIR": "build/model", "PORT": str(ours_port), "HOST": "127.0.0.1"},
        f"http://127.0.0.1:{ours_port}/health/ready",
        logs / "ours.log",
    )
    model = f"models:/{project.path.name}@champion"
    mlflow = started(
        [
            *(str(project.path / ".venv/bin/mlflow"), "models", "serve", "-m", model),
            *("--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port)),
        ],
        project.path,
        env,
        f"http://127.0.0.1:{mlflow_port}/ping",
        logs / "mlflow.log",
    )
    try:
        yield f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{mlflow_port}"
    finally:
        for process in (ours, mlflow):
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def rows(exported_project: BakedProject) -> Rows:
    with (exported_project.path / "data/processed/test.csv").open(encoding="utf-8") as file:
        return [
            {name: float(value) for name, value in row.items() if name != "target"}
            for row in csv.DictReader(file)
        ]


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def split(rows: Rows) -> dict[str, Any]:
    columns = list(rows[0])
    return {"columns": columns, "data": [[row[name] for name in columns] for row in rows]}


def as_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def generated_cases(rows: Rows) -> list[Case]:
    """Bodies of every kind below, CASES_PER_KIND of each, from a seeded generator."""
    rng = random.Random(SEED)

    def some() -> Rows:
        return [dict(row) for row in rng.sample(rows, rng.randint(1, 5))]

    def changed(value: Any) -> Rows:
        chosen = some()
        chosen[0][rng.choice(list(chosen[0]))] = value
        return chosen

    def formats(records: list[dict[str, Any]]) -> bytes:
        key = rng.choice(["dataframe_split", "dataframe_records", "instances", "inputs"])
        return dumps({key: split(records) if key == "dataframe_split" else records})

    def without_one() -> list[dict[str, Any]]:
        chosen = some()
        gone = rng.choice(list(chosen[0]))
        return [{name: value for name, value in row.items() if name != gone} for row in chosen]

    def shuffled() -> bytes:
        chosen = some()
        names = list(chosen[0])
        rng.shuffle(names)
        return dumps(
            {"dataframe_split": {"columns": names, "data": [[r[n] for n in names] for r in chosen]}}
        )

    def deep() -> bytes:
        depth = rng.randint(2_000, 60_000)
        return b'{"dataframe_split": ' + b"[" * depth + b"]" * depth + b"}"

    def nan_body() -> bytes:
        token = rng.choice(["NaN", "Infinity", "-Infinity"])
        return formats(changed("@@")).replace(b'"@@"', token.encode())

    kinds: dict[str, Callable[[], Case]] = {
        "valid JSON": lambda: ("valid JSON", JSON, formats(some())),
        "valid CSV": lambda: ("valid CSV", CSV, as_csv(some())),
        "columns in another order": lambda: ("columns in another order", JSON, shuffled()),
        "integers for floats": lambda: (
            "integers for floats",
            JSON,
            formats([{name: round(value) for name, value in row.items()} for row in some()]),
        ),
        "missing column": lambda: ("missing column", JSON, formats(without_one())),
        "missing column, CSV": lambda: ("missing column, CSV", CSV, as_csv(without_one())),
        "unknown column": lambda: (
            "unknown column",
            JSON,
            formats([{**row, "not_a_feature": 1.0} for row in some()]),
        ),
        "text in a number": lambda: ("text in a number", JSON, formats(changed("abc"))),
        "text in a number, CSV": lambda: ("text in a number, CSV", CSV, as_csv(changed("abc"))),
        "null value": lambda: ("null value", JSON, formats(changed(None))),
        "NaN or Infinity": lambda: ("NaN or Infinity", JSON, nan_body()),
        "boolean value": lambda: ("boolean value", JSON, formats(changed(rng.random() < 0.5))),
        "list in a value": lambda: ("list in a value", JSON, formats(changed([1.0, 2.0]))),
        "index in dataframe_split": lambda: (
            "index in dataframe_split",
            JSON,
            dumps(
                {"dataframe_split": {**split(chosen := some()), "index": list(range(len(chosen)))}}
            ),
        ),
        "lists for records": lambda: (
            "lists for records",
            JSON,
            dumps({rng.choice(["instances", "inputs"]): split(some())["data"]}),
        ),
        "params beside the rows": lambda: (
            "params beside the rows",
            JSON,
            dumps({"dataframe_records": some(), "params": {"threshold": 0.5}}),
        ),
        "header only, CSV": lambda: (
            "header only, CSV",
            CSV,
            as_csv(some()).split(b"\n")[0] + b"\n",
        ),
        "no rows": lambda: (
            "no rows",
            JSON,
            dumps({"dataframe_split": {"columns": list(rows[0]), "data": []}}),
        ),
        "no known key": lambda: (
            "no known key",
            JSON,
            dumps({rng.choice(["data", "records", "dataframe"]): some()}),
        ),
        "two keys": lambda: (
            "two keys",
            JSON,
            dumps({"dataframe_records": some(), "instances": some()}),
        ),
        "truncated JSON": lambda: (
            "truncated JSON",
            JSON,
            (body := formats(some()))[: rng.randint(1, len(body) - 1)],
        ),
        "not UTF-8": lambda: ("not UTF-8", JSON, b'{"inputs": [{"a": "\xff\xfe"}]}'),
        "deeply nested JSON": lambda: ("deeply nested JSON", JSON, deep()),
        "not JSON or CSV": lambda: ("not JSON or CSV", "text/plain", formats(some())),
    }
    return [make() for make in kinds.values() for _ in range(CASES_PER_KIND)]


def verdict(kind: str, ours: tuple[int, Any], theirs: tuple[int, Any]) -> str:
    """'agree', 'deliberate', or what breaks the rules."""
    (status, answer), (reference, expected) = ours, theirs
    if status >= 500:
        return f"ours {status}"
    if 200 <= reference < 300:
        if 200 <= status < 300:
            same = answer["predictions"] == expected["predictions"]
            return "agree" if same else "other predictions"
        return "deliberate" if kind in DELIBERATE else f"MLflow {reference}, ours {status}"
    if 400 <= status < 500:
        return "agree"
    return f"MLflow {reference}, ours {status}"


def test_ours_agrees_with_mlflow_models_serve(servers: tuple[str, str], rows: Rows) -> None:
    ours, theirs = servers
    outcomes: Counter[tuple[str, str]] = Counter()
    broken: list[str] = []
    statuses: dict[str, Counter[str]] = {}
    for kind, content_type, body in generated_cases(rows):
        mine = call(f"{ours}/invocations", body, content_type)
        reference = call(f"{theirs}/invocations", body, content_type)
        outcome = verdict(kind, mine, reference)
        outcomes[kind, "agree" if outcome == "agree" else outcome] += 1
        statuses.setdefault(kind, Counter())[f"{reference[0]} / {mine[0]}"] += 1
        if outcome not in ("agree", "deliberate"):
            broken.append(f"{kind}: {outcome}: {body[:120]!r} -> {str(mine[1])[:200]}")
    write_table(outcomes, statuses)
    assert broken == [], "\n".join(broken)
    # Every deliberate difference is one MLflow really has (else it is no longer needed).
    assert {kind for kind, outcome in outcomes if outcome == "deliberate"} == set(DELIBERATE)
    # MLflow fails some bodies with a 5xx, which ours answers with a 4xx.
    assert any(status.startswith("5") for count in statuses.values() for status in count)


def write_table(outcomes: Counter[tuple[str, str]], statuses: dict[str, Counter[str]]) -> None:
    lines = [
        "| body | cases | agree | deliberate | status (MLflow / ours) |",
        "|---|---|---|---|---|",
    ]
    for kind, seen in statuses.items():
        shown = ", ".join(f"{pair} x{count}" for pair, count in sorted(seen.items()))
        lines.append(
            f"| {kind} | {sum(seen.values())} | {outcomes[kind, 'agree']} "
            f"| {outcomes[kind, 'deliberate']} | {shown} |"
        )
    total = sum(outcomes.values())
    agreed = sum(count for (_, outcome), count in outcomes.items() if outcome == "agree")
    lines.append(f"| all | {total} | {agreed} | {total - agreed} | |")
    reasons = [f"- {kind}: {reason}." for kind, reason in DELIBERATE.items()]
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join([*lines, "", *reasons]) + "\n", encoding="utf-8")
