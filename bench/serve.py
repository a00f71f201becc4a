"""The rendered prediction server against `mlflow models serve`, side by side.

Renders the default project and runs its pipeline; then, for each model family asked for
(`dvc exp run -S train.model=<family>` for the ones other than the default), exports that
version and starts (a) the project's server on the export and (b) `mlflow models serve
--env-manager local` on the same registry version, both on 127.0.0.1 with the same
number of workers, and drives each with the same wrk command (same connections, threads
and duration). Prints requests/s, p50/p99 latency, rows/s, time from process start to
ready, the ratios, and the installed size of the serve-only dependency set against the
full development environment. Our server runs with its defaults, the prediction log on;
for the default model it is also run with the log and the store off, to show what they cost.

With --features, a second project (feature_store=feast) is rendered and run: its server
answers the same rows sent in full and as entity ids only, from the SQLite online store
and from a redis-server on 127.0.0.1 (target: entity p99 <= 2x the full-record p99).

    .venv/bin/python bench/serve.py [--models hist_gradient_boosting,xgboost,lightgbm]
                                    [--workers 1] [--connections 32] [--seconds 10]
                                    [--features]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from project import SLUG, TOOLS, default_project, run

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], started: float) -> float:
    while True:
        if process.poll() is not None:
            sys.exit(f"server exited while starting: {process.args!r}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)


def wrk(
    url: str, body: Path, args: argparse.Namespace, scratch: Path, connections: int = 0
) -> dict[str, float]:
    script = scratch / "post.lua"
    script.write_text(LUA, encoding="utf-8")
    env = {**os.environ, "BODY_FILE": str(body)}
    connections = connections or args.connections
    common = ["-t", "1", "-c", str(connections), "-s", str(script), "--latency", url]
    subprocess.run(["wrk", "-d", "2s", *common], env=env, capture_output=True, check=True)
    out = subprocess.run(
        ["wrk", "-d", f"{args.seconds}s", *common], env=env, capture_output=True, text=True
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"{url}: {errors.group(1)} failed responses\n{out}")

    def percentile(name: str) -> float:
        value, unit = re.search(rf"{name}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rate, "p50": percentile("50"), "p99": percentile("99")}


def site_packages_mib(venv: Path) -> float:
    (site,) = venv.glob("lib/python*/site-packages")
    total = sum(path.stat().st_size for path in site.rglob("*") if path.is_file())
    return total / 2**20


def start(
    command: list[str], cwd: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return process, started


def bodies(project: Path, scratch: Path) -> dict[str, Path]:
    with (project / "data/processed/test.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = [name for name in rows[0] if name != "target"]
    records = [{name: float(row[name]) for name in columns} for row in rows]
    while len(records) < 100:
        records += records
    files = {}
    for size in (1, 100):
        chosen = records[:size]
        split = {"columns": columns, "data": [[r[c] for c in columns] for r in chosen]}
        files[f"invocations-{size}"] = scratch / f"invocations-{size}.json"
        files[f"invocations-{size}"].write_text(json.dumps({"dataframe_split": split}))
        files[f"predict-{size}"] = scratch / f"predict-{size}.json"
        files[f"predict-{size}"].write_text(json.dumps(chosen if size > 1 else chosen[0]))
    return files


DEFAULT_MODEL = "hist_gradient_boosting"
# The ceiling: the least a FastAPI route can do for /invocations under the same uvicorn
# (one worker, uvloop, httptools, no access log): read the body, send our answer's bytes.
CEILING_APP = """
import os
from fastapi import FastAPI, Request
from fastapi.responses import Response

ANSWER = open(os.environ["CEILING_ANSWER"], "rb").read()
app = FastAPI()


@app.post("/invocations")
async def invocations(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")
"""
CEILING_CONNECTIONS = (8, 32)


def export(project: Path, env: dict[str, str], family: str) -> tuple[str, str]:
    """(exported directory, registry version) of `family`, trained if it is not the default."""
    if family == DEFAULT_MODEL:
        alias = "champion"
    else:
        run([".venv/bin/dvc", "exp", "run", "-S", f"train.model={family}"], project, env)
        alias = "challenger"
    output = f"build/{family}"
    command = [f".venv/bin/{SLUG}", "export-model", "--alias", alias, "--output", output]
    run(command, project, env)
    record = json.loads((project / output / "extra_files/runtime.json").read_text())
    if record["predictor"] != "compiled":
        sys.exit(f"{family}: not compiled ({record['reason']}); this benchmark measures arrays")
    return output, json.loads((project / output / "registry.json").read_text())["version"]


def measure(
    project: Path,
    env: dict[str, str],
    family: str,
    files: dict[str, Path],
    args: argparse.Namespace,
    scratch: Path,
) -> tuple[dict[str, dict[str, float]], float, float]:
    model_dir, version = export(project, env, family)
    ours_port, mlflow_port = free_port(), free_port()
    ours_env = {**env, "MODEL_DIR": model_dir, "PORT": str(ours_port)}
    ours_env["WORKERS"] = str(args.workers)
    ours, started = start([f".venv/bin/{SLUG}", "serve"], project, ours_env)
    ours_ready = wait_ready(f"http://127.0.0.1:{ours_port}/health/ready", ours, started)
    mlflow_command = [".venv/bin/mlflow", "models", "serve", "-m", f"models:/{SLUG}/{version}"]
    mlflow_command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port)]
    mlflow_command += ["-w", str(args.workers)]
    reference, started = start(mlflow_command, project, env)
    mlflow_ready = wait_ready(f"http://127.0.0.1:{mlflow_port}/ping", reference, started)
    try:
        results: dict[str, dict[str, float]] = {}
        for size in (1, 100):
            body = files[f"invocations-{size}"]
            results[f"mlflow /invocations {size}"] = wrk(
                f"http://127.0.0.1:{mlflow_port}/invocations", body, args, scratch
            )
            results[f"ours /invocations {size}"] = wrk(
                f"http://127.0.0.1:{ours_port}/invocations", body, args, scratch
            )
            results[f"ours /predict {size}"] = wrk(
                f"http://127.0.0.1:{ours_port}/predict", files[f"predict-{size}"], args, scratch
            )
    finally:
        for process in (ours, reference):
            process.terminate()
            process.wait(timeout=30)
    return results, ours_ready, mlflow_ready


def log_overhead(
    project: Path,
    env: dict[str, str],
    files: dict[str, Path],
    args: argparse.Namespace,
    scratch: Path,
) -> None:
    """Our server on the default export with the prediction log and store on (the
    default) and off."""
    results: dict[str, dict[str, float]] = {}
    for state, setting in (("on", ""), ("off", "off")):  # empty: the default, on
        port = free_port()
        server_env = {**env, "MODEL_DIR": f"build/{DEFAULT_MODEL}", "PORT": str(port),
                      "WORKERS": str(args.workers), "PREDICTION_LOG_DIR": setting,
                      "PREDICTION_STORE_URL": setting}  # fmt: skip
        server, started = start([f".venv/bin/{SLUG}", "serve"], project, server_env)
        wait_ready(f"http://127.0.0.1:{port}/health/ready", server, started)
        try:
            for size in (1, 100):
                url = f"http://127.0.0.1:{port}/predict"
                results[f"log {state} {size}"] = wrk(url, files[f"predict-{size}"], args, scratch)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\nprediction log and store, {DEFAULT_MODEL}, /predict")
    print(f"{'log / rows':<28}{'req/s':>10}{'rows/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, figures in results.items():
        rows = int(name.rsplit(" ", 1)[1])
        print(f"{name:<28}{figures['rps']:>10.0f}{figures['rps'] * rows:>11.0f}"
              f"{figures['p50']:>9.2f}{figures['p99']:>9.2f}")  # fmt: skip
    for size in (1, 100):
        on, off = results[f"log on {size}"], results[f"log off {size}"]
        print(f"  {size:>3} rows: throughput x{on['rps'] / off['rps']:.2f} with the log, "
              f"p99 x{on['p99'] / off['p99']:.2f}")  # fmt: skip


def post(url: str, body: Path) -> bytes:
    request = urllib.request.Request(
        url, data=body.read_bytes(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def ceiling(
    project: Path,
    env: dict[str, str],
    files: dict[str, Path],
    args: argparse.Namespace,
    scratch: Path,
) -> None:
    """1-row /invocations from `make serve` (the registry's @champion, default settings,
    the log on) and from the export, against the minimal route, at 8 and 32 connections.
    Each server runs alone while it is measured."""
    body = files["invocations-1"]
    (scratch / "ceiling.py").write_text(CEILING_APP, encoding="utf-8")
    ours = [f".venv/bin/{SLUG}", "serve"]
    servers = {
        "make serve (registry)": (ours, {}),
        "exported model": (ours, {"MODEL_DIR": f"build/{DEFAULT_MODEL}"}),
        "minimal FastAPI route": (
            [".venv/bin/uvicorn", "ceiling:app", "--app-dir", str(scratch), "--no-access-log"],
            {"CEILING_ANSWER": str(scratch / "answer.json")},
        ),
    }
    results: dict[tuple[str, int], dict[str, float]] = {}
    for name, (command, extra) in servers.items():
        port = free_port()
        server_env = {**env, **extra, "PORT": str(port), "WORKERS": "1"}
        argv = command + (["--port", str(port)] if "uvicorn" in command[0] else [])
        server, started = start(argv, project, server_env)
        ready = "/health/ready" if command is ours else "/docs"
        wait_ready(f"http://127.0.0.1:{port}{ready}", server, started)
        url = f"http://127.0.0.1:{port}/invocations"
        try:
            if command is ours:  # the ceiling answers with exactly our bytes
                (scratch / "answer.json").write_bytes(post(url, body))
            for connections in CEILING_CONNECTIONS:
                results[name, connections] = wrk(url, body, args, scratch, connections)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("\nagainst the ceiling: 1-row /invocations, 1 worker, the log on")
    print(f"{'server':<24}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'req/s x':>9}{'p99 x':>8}")  # fmt: skip
    for (name, connections), figures in results.items():
        top = results["minimal FastAPI route", connections]
        print(f"{name:<24}{connections:>6}{figures['rps']:>9.0f}{figures['p50']:>9.2f}"
              f"{figures['p99']:>9.2f}{figures['rps'] / top['rps']:>9.2f}"
              f"{figures['p99'] / top['p99']:>8.2f}")  # fmt: skip
    print("  targets, against the minimal route: req/s x >= 0.5, p99 x <= 1.5")


def entity_bodies(project: Path, scratch: Path) -> dict[str, Path]:
    """The test split's rows, in full and as their entity ids, 1 and 100 per request."""
    with (project / "data/processed/test.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    identity = ("entity_id", "event_timestamp", "target")
    full = [{k: float(v) for k, v in row.items() if k not in identity} for row in rows]
    keys = [{"entity_id": row["entity_id"]} for row in rows]
    while len(full) < 100:
        full, keys = full + full, keys + keys
    files = {}
    for kind, records in (("full", full), ("entity", keys)):
        for size in (1, 100):
            path = files[f"{kind} {size}"] = scratch / f"features-{kind}-{size}.json"
            path.write_text(json.dumps(records[:size] if size > 1 else records[0]))
    return files


def features(args: argparse.Namespace, scratch: Path) -> None:
    """The feast project's /predict: full records against entity ids, SQLite and Redis."""
    root = scratch / "features"
    root.mkdir()
    project, env = default_project(
        root, "pipeline", "export-model", answers=("feature_store=feast",)
    )
    files = entity_bodies(project, scratch)
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    production = {
        "FEATURE_STORE_YAML": "feature_repo/feature_store.production.yaml",
        "FEATURE_REGISTRY_URL": str(scratch / "redis-registry.db"),
        "REDIS_CONNECTION_STRING": f"127.0.0.1:{redis_port}",
    }
    results: dict[str, dict[str, float]] = {}
    try:
        store_env = {**env, **production}
        yaml = production["FEATURE_STORE_YAML"]
        run([".venv/bin/feast", "-c", "feature_repo", "-f", yaml, "apply"], project, store_env)
        run([f".venv/bin/{SLUG}", "materialize"], project, store_env)
        for store, extra in (("sqlite", {}), ("redis", production)):
            port = free_port()
            server_env = {**env, **extra, "MODEL_DIR": "build/model", "PORT": str(port),
                          "WORKERS": str(args.workers)}  # fmt: skip
            server, started = start([f".venv/bin/{SLUG}", "serve"], project, server_env)
            wait_ready(f"http://127.0.0.1:{port}/health/ready", server, started)
            url = f"http://127.0.0.1:{port}/predict"
            try:
                for name, body in files.items():
                    results[f"{store} {name}"] = wrk(url, body, args, scratch)
            finally:
                server.terminate()
                server.wait(timeout=30)
    finally:
        redis.terminate()
        redis.wait(timeout=30)
    print("\nfeature store (feature_store=feast), /predict: every feature sent, or the entity id")
    print(f"{'store / record / rows':<28}{'req/s':>10}{'rows/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, figures in results.items():
        rows = int(name.rsplit(" ", 1)[1])
        print(f"{name:<28}{figures['rps']:>10.0f}{figures['rps'] * rows:>11.0f}"
              f"{figures['p50']:>9.2f}{figures['p99']:>9.2f}")  # fmt: skip
    for store in ("sqlite", "redis"):
        for size in (1, 100):
            entity, full = results[f"{store} entity {size}"], results[f"{store} full {size}"]
            print(f"  {store:<6} {size:>3} rows: entity p99 x{entity['p99'] / full['p99']:.2f} "
                  f"of the full record's (target <= 2), throughput "
                  f"x{entity['rps'] / full['rps']:.2f}")  # fmt: skip
    serve_venv = scratch / "features-serve-venv"
    run([str(TOOLS / "uv"), "venv", "-q", str(serve_venv)], project, env)
    install = [str(TOOLS / "uv"), "pip", "install", "-q", "--python", str(serve_venv)]
    run([*install, ".[serve]"], project, env)
    print(f"  installed serve set with Feast: {site_packages_mib(serve_venv):.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=f"{DEFAULT_MODEL},xgboost,lightgbm")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--features", action="store_true", help="also the feast project's entity requests"
    )
    parser.add_argument(
        "--only-features", action="store_true", help="only the feast project's entity requests"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    if args.only_features:
        with tempfile.TemporaryDirectory() as temporary:
            features(args, Path(temporary))
        return
    with tempfile.TemporaryDirectory() as temporary:
        scratch = Path(temporary)
        if args.features:
            features(args, scratch)
        project, env = default_project(scratch, "pipeline")
        files = bodies(project, scratch)
        print(
            f"{os.cpu_count()} cores, {args.workers} worker(s) each, "
            f"wrk -t1 -c{args.connections} -d{args.seconds}s"
        )
        for family in args.models.split(","):
            report(family, *measure(project, env, family, files, args, scratch))
        if DEFAULT_MODEL in args.models.split(","):
            log_overhead(project, env, files, args, scratch)
            ceiling(project, env, files, args, scratch)

        serve_venv = scratch / "serve-venv"
        run([str(TOOLS / "uv"), "venv", "-q", str(serve_venv)], project, env)
        run(
            [str(TOOLS / "uv"), "pip", "install", "-q", "--python", str(serve_venv), ".[serve]"],
            project,
            env,
        )
        serve_size = site_packages_mib(serve_venv)
        full_size = site_packages_mib(project / ".venv")
    print(
        f"installed size: serve set {serve_size:.0f} MiB, full dev environment "
        f"{full_size:.0f} MiB (x{serve_size / full_size:.2f}, target <= 0.5)"
    )


def report(
    family: str, results: dict[str, dict[str, float]], ours_ready: float, mlflow_ready: float
) -> None:
    print(f"\n{family}")
    print(f"{'server / route / rows':<28}{'req/s':>10}{'rows/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, figures in results.items():
        rows = int(name.rsplit(" ", 1)[1])
        print(
            f"{name:<28}{figures['rps']:>10.0f}{figures['rps'] * rows:>11.0f}"
            f"{figures['p50']:>9.2f}{figures['p99']:>9.2f}"
        )

    def ratio(key: str, other: str) -> float:
        return results[key]["rps"] / results[other]["rps"]

    def p99(key: str, other: str) -> float:
        return results[key]["p99"] / results[other]["p99"]

    print("ratios, ours / mlflow (targets: throughput >= 10, p99 <= 0.1, start <= 0.33):")
    for size in (1, 100):
        for route in ("/invocations", "/predict"):
            ours, theirs = f"ours {route} {size}", f"mlflow /invocations {size}"
            print(
                f"  {route:<13} {size:>3} rows: throughput x{ratio(ours, theirs):6.1f}   "
                f"p99 x{p99(ours, theirs):6.3f}"
            )
    print(
        f"  ready after start: ours {ours_ready:.1f} s, mlflow {mlflow_ready:.1f} s "
        f"(x{ours_ready / mlflow_ready:.2f})"
    )


if __name__ == "__main__":
    main()
