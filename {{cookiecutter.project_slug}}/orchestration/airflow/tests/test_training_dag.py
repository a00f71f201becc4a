"""The training DAG, parsed and run for real: dag.test() runs every task in this process.

Each run names its `force` param: dag.test() keeps the conf of the previous run.

The runs share the copy of the project conftest.py makes, in order: a forced run trains
and registers, a second run finds nothing to do, a run whose gate fails ends on the
failure path and notifies.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from airflow.dag_processing.dagbag import DagBag

from conftest import COPY, PREFIX

MODULE = "{{ cookiecutter.module_name }}"
SLUG = "{{ cookiecutter.project_slug }}"
DAG_ID = f"{MODULE}_training"
CLI = COPY / ".venv" / "bin" / SLUG
IMAGE = f"ghcr.io/{{ cookiecutter.github_owner | lower }}/{SLUG}-train"
STEPS = ["prepare", "train", "evaluate", "register", "push_data"]


@pytest.fixture(scope="module")
def dag() -> Any:
    bag = DagBag(dag_folder=str(COPY / "dags"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


class Sink(BaseHTTPRequestHandler):
    """A webhook that keeps what it is sent."""

    received: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    server = HTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # An Airflow connection from the environment, as a deployment would define it.
    url = f"http://127.0.0.1:{server.server_port}/hooks/training"
    monkeypatch.setenv(f"AIRFLOW_CONN_{PREFIX}_NOTIFY", url)
    Sink.received.clear()
    yield Sink.received
    server.shutdown()


def test_the_dag_parses_with_its_steps_in_order(dag: Any) -> None:
    checks = sorted(task_id for task_id in dag.task_ids if task_id.startswith("check_"))
    assert "check_changes" in checks
    assert "check_live" in checks
    assert set(dag.task_ids) == {
        "pull_data",
        *checks,
        "decide",
        "skip_training",
        *STEPS,
        "notify",
        "notify_failure",
    }
    assert dag.get_task("pull_data").downstream_task_ids == {*checks, "notify_failure"}
    for check in checks:
        assert dag.get_task(check).downstream_task_ids == {"decide", "notify_failure"}
    assert dag.get_task("decide").downstream_task_ids == {"prepare", "skip_training"}
    for upstream, downstream in itertools.pairwise(STEPS):
        assert dag.get_task(upstream).downstream_task_ids == {downstream, "notify_failure"}
    assert dag.get_task("notify").upstream_task_ids == {"push_data", "skip_training"}
    assert dag.get_task("evaluate").retries == 0
    assert dag.get_task("train").retries == int(os.environ[f"{PREFIX}_TASK_RETRIES"])
    assert dag.max_active_runs == 1


def test_a_forced_run_trains_and_registers_the_champion(dag: Any, webhook: list[Any]) -> None:
    run = dag.test(run_conf={"force": True})

    assert str(run.state) == "success", states(run)
    assert states(run)["register"] == "success"
    assert states(run)["skip_training"] == "skipped"
    registration = json.loads((COPY / "reports" / "registration.json").read_text())
    assert registration["champion"] == registration["version"] == "1"
    models = subprocess.run(
        [str(CLI), "models"], cwd=COPY, capture_output=True, text=True, check=True
    ).stdout
    assert "@champion" in models
    [message] = webhook
    assert message["outcome"] == "retrained"
    assert message["reasons"][-1] == "force"
    assert message["registration"]["champion"] == "1"


def test_a_run_with_nothing_changed_skips_training(dag: Any, webhook: list[Any]) -> None:
    run = dag.test(run_conf={"force": False})

    assert str(run.state) == "success", states(run)
    ran = states(run)
    assert ran["skip_training"] == "success"
    assert {ran[step] for step in STEPS} == {"skipped"}
    assert [message["outcome"] for message in webhook] == ["skipped"]


def test_a_missed_gate_fails_the_run_and_notifies(dag: Any, webhook: list[Any]) -> None:
    params_path = COPY / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    metric = next(iter(params["evaluate"]["gate"]))
    # A threshold no model reaches, in the direction the metric is gated.
    params["evaluate"]["gate"][metric] = -1.0 if metric in ("rmse", "mae", "log_loss") else 2.0
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        run = dag.test(run_conf={"force": False})
    finally:
        params_path.write_text(original)

    ran = states(run)
    assert str(run.state) == "failed", ran
    assert ran["evaluate"] == "failed"
    assert ran["register"] == "upstream_failed"
    assert ran["notify"] == "upstream_failed"
    assert ran["notify_failure"] == "success"
    [message] = webhook
    assert message["outcome"] == "failed"
    assert message["failed"] == ["evaluate"]


def test_the_kubernetes_runner_builds_the_step_pod_from_the_template(dag: Any) -> None:
    template = yaml.safe_load((COPY / "dags" / f"{MODULE}_step_pod.yaml").read_text())
    [expected] = template["spec"]["containers"]
    params = {"runner": "kubernetes", "force": False, "current_data": "", "live_hours": 24}

    pod = dag.get_task("train").pod_operator(params).build_pod_request_obj(dry_run=True)

    [container] = pod.spec.containers
    assert container.image == os.environ.get(f"{PREFIX}_TRAIN_IMAGE", f"{IMAGE}:latest")
    assert container.command == ["sh", "-c"]
    assert container.args[0].endswith("dvc repro $REPRO_FLAGS --single-item train")
    assert container.resources.to_dict() == {**expected["resources"], "claims": None}
    context = container.security_context
    assert context.read_only_root_filesystem is True
    assert context.allow_privilege_escalation is False
    assert context.capabilities.drop == ["ALL"]
    assert pod.spec.security_context.run_as_user == 10001
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.service_account_name == template["spec"]["serviceAccountName"]
    sources = [source.to_dict() for source in container.env_from]
    assert [s["config_map_ref"]["name"] for s in sources if s["config_map_ref"]] == [
        f"{SLUG}-config"
    ]
    env = {variable.name: variable.value for variable in container.env}
    assert env["HOME"] == "/tmp"  # noqa: S108 (the pod's own emptyDir)
    assert env["REPRO_FLAGS"] == ""
    claims = [
        v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.persistent_volume_claim
    ]
    assert claims == [f"{SLUG}-pipeline-workspace"]
    assert Path(dag.get_task("train").pod_operator(params).pod_template_file).is_file()
