"""End to end: the rendered prediction server under real uvicorn, over real HTTP.

One rendered project runs its pipeline and exports the champion; the tests then start
`<slug> serve` as users and the Docker image do, and talk to it over 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from baked import TOOLS_BIN, BakedProject, free_port
from services import Postgres

# One rendered project for the module: its tests run on one test worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve-e2e")]
RECORD_SCRIPT = """
import csv, json, sys
rows = list(csv.DictReader(open("data/processed/test.csv")))
print(json.dumps([{k: float(v) for k, v in row.items() if k != "target"} for row in rows]))
"""


def call(url: str, body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


@contextmanager
def serving(
    project: BakedProject,
    command: list[str] | None = None,
    cwd: Path | None = None,
    base_env: dict[str, str] | None = None,
    **env: str,
) -> Iterator[str]:
    """`<slug> serve` (or `command`) in the background until the block ends; yields its URL."""
    port = free_port()
    settings = {"PORT": str(port), "HOST": "127.0.0.1", **env}
    process = subprocess.Popen(
        command or [str(project.path / ".venv/bin" / project.path.name), "serve"],
        cwd=cwd or project.path,
        env={**(base_env or os.environ), **settings},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            try:
                if call(f"{base}/health/ready")[0] == 200:
                    break
            except OSError:  # refused, reset, or a read timed out while starting
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


COUNTS_SCRIPT = """
import json, sys
from pathlib import Path
from prometheus_client.mmap_dict import MmapedDict
counts = {}
for path in Path(sys.argv[1]).glob("counter_*.db"):
    for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
        _, name, labels, _ = json.loads(key)  # metric, sample, labels, help
        if name == "ml_http_requests_total" and labels.get("route") == "/predict" and value:
            counts[path.name] = counts.get(path.name, 0) + value
print(json.dumps(counts))
"""


def predictions_per_worker(project: BakedProject, metrics_dir: Path) -> dict[str, float]:
    """/predict requests each worker counted, read from its own samples file."""
    script = project.check(".venv/bin/python", "-c", COUNTS_SCRIPT, str(metrics_dir))
    return dict(json.loads(script.stdout))


@pytest.fixture(scope="module")
def project(exported_project: BakedProject) -> BakedProject:
    return exported_project


@pytest.fixture(scope="module")
def records(project: BakedProject) -> list[dict[str, float]]:
    return list(json.loads(project.check(".venv/bin/python", "-c", RECORD_SCRIPT).stdout))


def test_two_workers_share_their_metrics(
    project: BakedProject, records: list[dict[str, float]], tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale samples of an earlier run")
    log_dir = tmp_path / "log"
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with serving(
        project,
        MODEL_DIR="build/model",
        WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        PREDICTION_LOG_DIR=str(log_dir),
        PREDICTION_STORE_URL=store,
    ) as base:
        assert not (metrics_dir / "counter_999999.db").exists(), "the directory is wiped at start"
        # Concurrent requests until both workers have answered some (the kernel decides who).
        sent, per_worker = 0, dict[str, float]()
        while len(per_worker) < 2 and sent < 2000:
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(lambda r: call(f"{base}/predict", r)[0], records[:40]))
            assert set(statuses) == {200}
            sent += len(statuses)
            per_worker = predictions_per_worker(project, metrics_dir)
        assert len(per_worker) == 2, f"one worker answered every request: {per_worker}"
        assert sum(per_worker.values()) == sent
        labels = 'method="POST",route="/predict",status="200",variant="champion"'
        line = "ml_http_requests_total{" + labels + "}"
        for _ in range(6):  # whichever worker answers the scrape reports both workers' counts
            text = call(f"{base}/metrics")[1]
            counts = [
                float(row.rsplit(" ", 1)[1]) for row in text.splitlines() if row.startswith(line)
            ]
            assert counts == [float(sent)], counts
        assert "ml_model_ready 1.0" in text

        # Labels for rows both workers served, in one request: one worker answers it and
        # finds the other's ids in the shared store (no false 404).
        served = {path.name: logged_ids(path) for path in log_dir.glob("predictions-*.jsonl")}
        assert len(served) == 2, served.keys()
        ids = [row_id for rows in served.values() for row_id in rows[:400]]
        status, answer = call(f"{base}/feedback", [{"id": i, "actual": 1} for i in ids])
        assert status == 200, answer
        assert (answer["recorded"], answer["unknown"]) == (len(ids), 0)
        assert feedback_rows(call(f"{base}/metrics")[1]) == len(ids)


def logged_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_replicas_share_one_prediction_store_in_postgresql(
    project: BakedProject, records: list[dict[str, float]], tmp_path: Path
) -> None:
    """Two servers (as two pods would be) on one PostgreSQL store: an id served by one is
    labelled through the other, and a second label through the first is a duplicate."""
    database = Postgres("predictions", "store-secret", "predictions")
    database.create()
    try:
        url = database.uri("postgresql+psycopg", password=True)
        with (
            serving(
                project,
                MODEL_DIR="build/model",
                PREDICTION_STORE_URL=url,
                PREDICTION_LOG_DIR=str(tmp_path / "a"),
            ) as first,
            serving(
                project,
                MODEL_DIR="build/model",
                PREDICTION_STORE_URL=url,
                PREDICTION_LOG_DIR=str(tmp_path / "b"),
            ) as second,
        ):
            ids = call(f"{first}/predict", records[:50])[1]["prediction_ids"]
            body = [{"id": row_id, "actual": 0} for row_id in ids]
            labelled = call(f"{second}/feedback", body)[1]
            assert (labelled["recorded"], labelled["unknown"]) == (50, 0)
            again = call(f"{first}/feedback", body)[1]
            assert again["duplicate"] == 50
            recorded = [feedback_rows(call(f"{base}/metrics")[1]) for base in (first, second)]
        assert recorded == [0, 50], "each label is counted once, where it was recorded"
    finally:
        database.remove()


def feedback_rows(page: str) -> float:
    return sum(
        float(row.rsplit(" ", 1)[1])
        for row in page.splitlines()
        if row.startswith("ml_feedback_rows_total{")
    )


def test_mlflow_scoring_client_gets_the_same_answers(
    project: BakedProject, records: list[dict[str, float]]
) -> None:
    with serving(project, MODEL_DIR="build/model") as base:
        ours = call(f"{base}/predict", records)[1]["predictions"]
        port = base.rsplit(":", 1)[1]
        script = (
            "import json, sys\n"
            "import pandas as pd\n"
            "from mlflow.pyfunc.scoring_server.client import ScoringServerClient\n"
            f"client = ScoringServerClient('127.0.0.1', {port})\n"
            "client.wait_server_ready(timeout=30)\n"
            "frame = pd.DataFrame(json.load(sys.stdin))\n"
            "print(json.dumps(client.invoke(frame).get_predictions(predictions_format='ndarray').tolist()))\n"
        )
        result = subprocess.run(
            [str(project.path / ".venv/bin/python"), "-c", script],
            input=json.dumps(records),
            capture_output=True,
            text=True,
            check=True,
            cwd=project.path,
        )
    assert json.loads(result.stdout) == ours


def test_schemathesis_finds_no_server_error(project: BakedProject, tmp_path: Path) -> None:
    with serving(project, MODEL_DIR="build/model") as base:
        result = subprocess.run(
            [
                str(TOOLS_BIN / "schemathesis"),
                "run",
                f"{base}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "60",
                "--suppress-health-check",
                "all",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            cwd=tmp_path,  # schemathesis keeps a cache in its working directory
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout[-6000:]
    assert "8 selected / 8 total" in result.stdout, summary  # /predict, /invocations, /feedback
    assert "No issues found" in result.stdout, summary


def test_reload_under_load_fails_no_request(
    project: BakedProject, records: list[dict[str, float]]
) -> None:
    cli = str(project.path / ".venv/bin" / project.path.name)
    # a second version of the same model, then serve the registry with polling on
    project.check(cli, "register")
    with serving(project, RELOAD_SECONDS="0.5") as base:
        assert call(f"{base}/model")[1]["version"] == "1"
        statuses: list[int] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                statuses.append(call(f"{base}/predict", records[:10])[0])

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1)
        project.check(cli, "promote", "2")
        deadline = time.monotonic() + 60
        while call(f"{base}/model")[1]["version"] != "2":
            assert time.monotonic() < deadline, "the server did not pick up the new champion"
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        for worker in workers:
            worker.join()
    assert len(statuses) > 50
    assert set(statuses) == {200}, f"{len([s for s in statuses if s != 200])} failed requests"
    project.check(cli, "promote", "1")


def test_docs_and_openapi_are_served(project: BakedProject) -> None:
    with serving(project, MODEL_DIR="build/model") as base:
        status, page = call(f"{base}/docs")
        assert status == 200
        assert "swagger" in page.lower()
        document = call(f"{base}/openapi.json")[1]
        record = document["components"]["schemas"]["PredictRequest"]["oneOf"][0]
        assert "mean_radius" in record["properties"]
        smoke = project.check(
            str(project.path / ".venv/bin" / project.path.name), "smoke", "--url", base
        )
        assert "predicted" in smoke.stdout
    refused = project.run(
        str(project.path / ".venv/bin" / project.path.name), "smoke", "--url", base
    )
    assert refused.returncode == 1
    assert "smoke test failed" in refused.stderr


def test_drift_check_on_the_pipeline_data(project: BakedProject, tmp_path: Path) -> None:
    """`drift` against the registry's champion and the exported copy, on real pipeline data."""
    cli = str(project.path / ".venv/bin" / project.path.name)
    test_split = str(project.path / "data/processed/test.csv")
    for where in ([], ["--model-dir", "build/model"]):
        output = tmp_path / f"same{len(where)}"
        result = project.run(cli, "drift", "--current", test_split, "--output", str(output), *where)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((output / "drift.json").read_text(encoding="utf-8"))
        assert report["detected"] is False
        assert report["prediction"] is not None
        assert (output / "drift.md").is_file()
    shifted = tmp_path / "shifted.csv"
    script = (
        "import pandas as pd, sys; frame = pd.read_csv(sys.argv[1]); "
        "frame['mean_radius'] *= 1.5; frame.to_csv(sys.argv[2], index=False)"
    )
    project.check(".venv/bin/python", "-c", script, test_split, str(shifted))
    output = tmp_path / "shifted"
    result = project.run(cli, "drift", "--current", str(shifted), "--output", str(output))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mean_radius" in json.loads((output / "drift.json").read_text())["drifted"]
