"""End to end: a real Prometheus scrapes the rendered server and evaluates its alerts.

The default project runs its pipeline and exports the champion; `<slug> serve` runs on
127.0.0.1 with drift checked every second, and `prometheus` runs the rendered
prometheus.yml and alerts.yml, pointed at that server and scraping every second. After
some valid, invalid and then drifted traffic the Prometheus HTTP API must show: the
target up, every alert rule and every Grafana query valid PromQL over metrics the server
really exposes (the dashboard's queries return series), and the drift and
validation-error alerts on their way to firing while the others stay quiet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from baked import BakedProject, free_port
from test_monitoring import (
    ALERTS,
    DASHBOARDS,
    PROMETHEUS,
    metric_names,
    panel_queries,
    pushed_metrics,
)
from test_serve_e2e import RECORD_SCRIPT, call, serving

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve-e2e")]
# Grafana's interval variable, as Grafana would set it for a short time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}
# Seconds to wait for something Prometheus has to scrape or evaluate first.
PATIENCE = 60
# Test rows with their true class: [record, label] pairs.
LABELLED_SCRIPT = """
import csv, json
rows = list(csv.DictReader(open("data/processed/test.csv")))
print(json.dumps([
    [{k: float(v) for k, v in row.items() if k != "target"}, int(float(row["target"]))]
    for row in rows
]))
"""
# Labelled rows the live metrics wait for (FEEDBACK_MIN_ROWS; the default is 100).
MIN_LABELLED = 100


@dataclass
class Stack:
    api: str
    prometheus: str
    project: BakedProject
    # Served rows not labelled yet: (prediction id, true class)
    unlabelled: list[tuple[str, int]]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; fails the test unless Prometheus accepts it."""
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = self.get(url)
        assert body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def get(self, url: str) -> Any:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # 400: the body says what is wrong
            return json.loads(error.read())

    def metric_names(self) -> set[str]:
        return set(self.get(f"{self.prometheus}/api/v1/label/__name__/values")["data"])

    def active_alerts(self) -> dict[str, str]:
        alerts = self.get(f"{self.prometheus}/api/v1/alerts")["data"]["alerts"]
        return {alert["labels"]["alertname"]: alert["state"] for alert in alerts}

    def wait_for(self, expr: str, what: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + PATIENCE
        while not (result := self.query(expr)):
            assert time.monotonic() < deadline, f"{what}: {expr} stayed empty"
            time.sleep(0.5)
        return result


@contextmanager
def prometheus(project: BakedProject, api_port: int, workdir: Path) -> Iterator[str]:
    """The rendered configuration, aimed at 127.0.0.1 and fast; yields the base URL."""
    prometheus_bin = shutil.which("prometheus")
    if prometheus_bin is None:
        pytest.fail("prometheus is needed (apt-get install prometheus)")
    (config,) = project.load(PROMETHEUS)
    config_dir = (project.path / PROMETHEUS).parent
    port = free_port()
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(config_dir / name) for name in config["rule_files"]]
    del config["alerting"]  # no Alertmanager here: /api/v1/alerts shows the alerts
    for job in config["scrape_configs"]:
        own = job["job_name"] == "prometheus"
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port if own else api_port}"]}]
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if call(f"{base}/-/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus never became ready"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def project(exported_project: BakedProject) -> BakedProject:
    return exported_project


@pytest.fixture(scope="module")
def stack(project: BakedProject, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    records = json.loads(project.check(".venv/bin/python", "-c", RECORD_SCRIPT).stdout)
    # Drift checked every second, from 20 rows on (defaults: 60 s, 500 rows).
    workdir = tmp_path_factory.mktemp("served")
    with serving(
        project,
        MODEL_DIR="build/model",
        DRIFT_INTERVAL_SECONDS="1",
        DRIFT_MIN_ROWS="20",
        FEEDBACK_MIN_ROWS=str(MIN_LABELLED),
        PREDICTION_LOG_DIR=str(workdir / "log"),
        PREDICTION_STORE_URL=f"sqlite:///{workdir / 'store.db'}",
    ) as api:
        api_port = int(api.rsplit(":", 1)[1])
        with prometheus(project, api_port, tmp_path_factory.mktemp("prometheus")) as base:
            stack = Stack(api, base, project, [])
            stack.wait_for(f'up{{job="{project.path.name}"}} == 1', "the API target is up")
            sent = send_traffic(api, records)
            # Scraped after the last request: every count is in Prometheus.
            total = f'sum(ml_http_requests_total{{route="/predict"}}) == {sent}'
            stack.wait_for(total, "Prometheus scraped the traffic")
            stack.wait_for("ml_drift_window_rows >= 20", "the drift window filled")
            stack.wait_for("ml_drift_last_check_timestamp_seconds", "a drift check ran")
            stack.unlabelled = serve_labelled(project, api, rows=500)
            # True labels for 200 of them: the live metrics appear, and they pass the gate.
            send_labels(api, stack.unlabelled[:200], wrong=False)
            del stack.unlabelled[:200]
            stack.wait_for('ml:live_metric{metric="accuracy"} > 0.9', "live accuracy recorded")
            time.sleep(3)  # a few more evaluations of the alert rules
            assert "ModelPerformanceDegraded" not in stack.active_alerts()
            yield stack


def serve_labelled(project: BakedProject, api: str, rows: int) -> list[tuple[str, int]]:
    """Predict `rows` test rows (cycling through them); their ids and true classes."""
    labelled = json.loads(project.check(".venv/bin/python", "-c", LABELLED_SCRIPT).stdout)
    chosen = [labelled[index % len(labelled)] for index in range(rows)]
    served = []
    for start in range(0, rows, 50):
        batch = chosen[start : start + 50]
        status, answer = call(f"{api}/predict", [record for record, _ in batch])
        assert status == 200, answer
        served += list(zip(answer["prediction_ids"], [label for _, label in batch], strict=True))
    return served


def send_labels(api: str, rows: list[tuple[str, int]], wrong: bool) -> None:
    body = [{"id": row_id, "actual": 1 - label if wrong else label} for row_id, label in rows]
    status, answer = call(f"{api}/feedback", body)
    assert status == 200, answer
    assert answer["recorded"] == len(rows), answer


def send_traffic(api: str, records: list[dict[str, float]]) -> int:
    """Predictions and invalid requests, spread over a few scrapes so rates see them grow.

    Returns how many requests went to /predict.
    """
    bad = [
        ({"not_a_feature": 1.0}, "application/json", 422),
        (b"{not json", "application/json", 400),
        (b"a,b\n1,2\n", "text/plain", 415),
    ]
    sent = 0
    for number, start in enumerate(range(0, len(records), 10)):
        batch = records[start : start + 10]
        assert call(f"{api}/predict", batch)[0] == 200
        split = {"columns": list(batch[0]), "data": [list(row.values()) for row in batch]}
        assert call(f"{api}/invocations", {"dataframe_split": split})[0] == 200
        body, content_type, status = bad[number % len(bad)]
        assert call(f"{api}/predict", body, content_type)[0] == status
        sent += 2
        time.sleep(0.3)
    return sent


def test_the_api_target_is_up(stack: Stack) -> None:
    (up,) = stack.query(f'up{{job="{stack.project.path.name}"}}')
    assert up["value"][1] == "1"
    ready = stack.query("ml_model_ready")
    assert [series["value"][1] for series in ready] == ["1"]
    (info,) = stack.query("ml_model_info == 1")
    assert info["metric"]["alias"] == "champion"
    assert info["metric"]["variant"] == "champion"


def test_alert_rules_are_valid_over_exposed_metrics(stack: Stack) -> None:
    (document,) = stack.project.load(ALERTS)
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    # the scheduled drift check's metrics come from a Pushgateway, which this stack lacks
    present = stack.metric_names() | pushed_metrics(stack.project)
    for rule in rules:
        stack.query(rule["expr"])
        missing = metric_names(rule["expr"]) - present
        assert not missing, f"{rule.get('alert', rule.get('record'))}: Prometheus has no {missing}"
    deadline = time.monotonic() + PATIENCE
    while True:
        groups = stack.get(f"{stack.prometheus}/api/v1/rules")["data"]["groups"]
        evaluated = [rule for group in groups for rule in group["rules"]]
        if len(evaluated) == len(rules) and all(r["health"] != "unknown" for r in evaluated):
            break
        assert time.monotonic() < deadline, "Prometheus did not evaluate every rule"
        time.sleep(0.5)
    for rule in evaluated:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_dashboard_queries_return_series(stack: Stack) -> None:
    present = stack.metric_names()
    boards = [
        stack.project.load(name)
        for name in stack.project.files()
        if name.startswith(DASHBOARDS + "/") and name.endswith(".json")
    ]
    queries = [expr for board in boards for expr in panel_queries(board)]
    assert len(queries) > 10
    for expr in queries:
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
        missing = metric_names(expr) - present
        assert not missing, f"{expr}: Prometheus has no {missing}"
        assert stack.query(expr), f"{expr} returned no series"
    psi = stack.query("ml_feature_drift_psi")
    assert {series["metric"]["feature"] for series in psi} >= {"mean_radius"}


def test_drift_and_invalid_requests_raise_their_alerts(stack: Stack) -> None:
    records = json.loads(stack.project.check(".venv/bin/python", "-c", RECORD_SCRIPT).stdout)
    drifted = [{name: value * 5 + 100 for name, value in row.items()} for row in records]
    for _ in range(3):
        for start in range(0, len(drifted), 20):
            assert call(f"{stack.api}/predict", drifted[start : start + 20])[0] == 200
    stack.wait_for("ml_drift_detected == 1", "the server reports drift")
    deadline = time.monotonic() + PATIENCE
    while not {"DataDriftDetected", "ValidationErrorSpike"} <= set(stack.active_alerts()):
        assert time.monotonic() < deadline, f"alerts: {stack.active_alerts()}"
        time.sleep(0.5)
    active = stack.active_alerts()
    # `for:` is minutes long: pending now, firing only if the condition holds that long.
    assert active["DataDriftDetected"] == "pending"
    quiet = {"ApiDown", "ModelNotReady", "HighErrorRate", "NoPredictionTraffic"}
    assert not quiet & set(active), active


def test_wrong_labels_raise_model_performance_degraded(stack: Stack) -> None:
    # 300 wrong labels after 200 true ones: live accuracy about 0.4, under the gate's 0.85.
    send_labels(stack.api, stack.unlabelled, wrong=True)
    (gate,) = stack.query('ml_quality_gate{metric="accuracy"}')
    assert gate["value"][1] == "0.85", "the gate of params.yaml"
    stack.wait_for('ml:live_metric{metric="accuracy"} < 0.5', "live accuracy fell")
    deadline = time.monotonic() + PATIENCE
    while "ModelPerformanceDegraded" not in stack.active_alerts():
        assert time.monotonic() < deadline, f"alerts: {stack.active_alerts()}"
        time.sleep(0.5)
    alerts = stack.get(f"{stack.prometheus}/api/v1/alerts")["data"]["alerts"]
    (degraded,) = [a for a in alerts if a["labels"]["alertname"] == "ModelPerformanceDegraded"]
    assert degraded["state"] == "pending"  # `for: 30m`
    assert degraded["labels"]["metric"] == "accuracy"
    assert degraded["labels"]["variant"] == "champion"
    quiet = {"ApiDown", "ModelNotReady", "HighErrorRate", "PredictionLogDropping"}
    assert not quiet & set(stack.active_alerts()), stack.active_alerts()
