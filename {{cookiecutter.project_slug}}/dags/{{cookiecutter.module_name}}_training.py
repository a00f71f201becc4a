{%- set cli = cookiecutter.project_slug -%}
{%- set owner = cookiecutter.github_owner | lower -%}
"""The Airflow DAG of the project's pipeline, step by step.

Its id: `{{ cookiecutter.module_name }}_training`.

Every task runs one of the project's own commands (the CLI or `dvc repro` of one stage),
so this file imports nothing from the project and parses in Airflow's environment alone
(make airflow-setup). The DAG run's `runner` param says where the commands run: `local`,
in the project directory; `kubernetes`, in a pod of the train image, from the pod
template beside this file. See dags/README.md.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, BaseOperator, Connection, Param, TriggerRule, task
from airflow.sdk.exceptions import AirflowNotFoundException

MODULE = "{{ cookiecutter.module_name }}"
PREFIX = MODULE.upper()  # of the variables this file reads
DAG_ID = f"{MODULE}_training"
CLI = "{{ cli }}"
HERE = Path(__file__).resolve().parent
# Read from the environment at parse time: no Variable or database read while parsing.
PROJECT_DIR = Path(os.environ.get(f"{PREFIX}_PROJECT_DIR", HERE.parent))
SCHEDULE = os.environ.get(f"{PREFIX}_TRAINING_SCHEDULE", "@daily") or None
RUNNER = os.environ.get(f"{PREFIX}_RUNNER", "local")
IMAGE = f"ghcr.io/{{ owner }}/{CLI}-train"
TRAIN_IMAGE = os.environ.get(f"{PREFIX}_TRAIN_IMAGE", f"{IMAGE}:latest")
NAMESPACE = os.environ.get(f"{PREFIX}_NAMESPACE", CLI)
POD_TEMPLATE = HERE / f"{MODULE}_step_pod.yaml"
NOTIFY_CONN_ID = f"{MODULE}_notify"

# The checks that can ask for a retrain. Each prints one word as its last line (the
# task's XCom); an exit status other than the command's "found it" status fails the task.
CHECKS = {
    "check_changes": (
        "rc=0; dvc status --quiet || rc=$?; "
        'case $rc in 0) echo clean;; 1) echo changed;; *) exit "$rc";; esac'
    ),
    "check_drift": (
        'if [ -z "$CURRENT_DATA" ]; then echo "no current data (the current_data param)"; '
        "echo none; exit 0; fi; "
        f'rc=0; {CLI} drift --current "$CURRENT_DATA" || rc=$?; '
        'case $rc in 0) echo none;; 1) echo drift;; *) exit "$rc";; esac'
    ),
    "check_live": (
        # Before the pipeline's first run there is no model whose labels to check.
        '[ -f dvc.lock ] || { echo "the pipeline has not run here yet"; echo ok; exit 0; }; '
        f'rc=0; {CLI} check-live --hours "$LIVE_HOURS" || rc=$?; '
        'case $rc in 0) echo ok;; 1) echo degraded;; *) exit "$rc";; esac'
    ),
}
# The words above that ask for a retrain.
RETRAIN_WORDS = {"changed", "drift", "degraded"}
IF_REMOTE = (
    'if [ -n "$(dvc remote list)" ]; then {}; '
    'else echo "no DVC remote configured: nothing to {}"; fi'
)
# The pipeline's steps: prepare includes `sample`, the stage that writes the sample data.
STEPS = {
    "pull_data": IF_REMOTE.format("dvc pull --allow-missing", "pull"),
    "prepare": "dvc repro $REPRO_FLAGS prepare",
    "train": "dvc repro $REPRO_FLAGS --single-item train",
    "evaluate": "dvc repro $REPRO_FLAGS --single-item evaluate",
    "register": "dvc repro $REPRO_FLAGS --single-item register",
    "push_data": IF_REMOTE.format("dvc push", "push"),
}
# In a pod, the project is the image's copy in /workspace (a volume: the root filesystem
# is read-only), refreshed by the first step of each run, as the retrain CronJob does.
POD_SETUP = (
    "set -eu; cd /workspace; "
    "dvc config --local core.site_cache_dir /tmp/dvc; "
    'if [ -n "${DVC_REMOTE_URL:-}" ]; then '
    'dvc remote add --local --force --default pod "$DVC_REMOTE_URL"; fi'
)
POD_REFRESH = r"find /app -mindepth 1 -maxdepth 1 ! -name .venv -exec cp -R {} /workspace/ \;"

log = logging.getLogger(__name__)


def step_env(params: dict[str, Any]) -> dict[str, str]:
    """What the commands read from the DAG run's params."""
    return {
        "REPRO_FLAGS": "--force" if params["force"] else "",
        "CURRENT_DATA": str(params["current_data"]),
        "LIVE_HOURS": str(params["live_hours"]),
    }


class ProjectStep(BaseOperator):
    """One of the project's commands, run where the DAG run's `runner` param says."""

    def __init__(self, *, command: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.command = command

    def execute(self, context: Any) -> Any:
        params = context["params"]
        if params["runner"] == "kubernetes":
            return self.pod_operator(params).execute(context)
        return self.local_operator(params).execute(context)

    def local_operator(self, params: dict[str, Any]) -> BashOperator:
        env = {
            **step_env(params),
            "PATH": f"{PROJECT_DIR / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        }
        return BashOperator(
            task_id=self.task_id,
            bash_command=self.command,
            cwd=str(PROJECT_DIR),
            env=env,
            append_env=True,
            do_xcom_push=self.do_xcom_push,
        )

    def pod_operator(self, params: dict[str, Any]) -> KubernetesPodOperator:
        setup = POD_SETUP + (f"; {POD_REFRESH}" if self.task_id == "pull_data" else "")
        script = f"{setup}; {self.command}"
        if self.do_xcom_push:
            # The pod's XCom is the JSON in /airflow/xcom/return.json: the last line, as locally.
            script = (
                f"{setup}; ( {self.command} ) > /tmp/step.out; cat /tmp/step.out; "
                """printf '"%s"' "$(tail -n 1 /tmp/step.out)" > /airflow/xcom/return.json"""
            )
        return KubernetesPodOperator(
            task_id=self.task_id,
            name=f"{CLI}-{self.task_id.replace('_', '-')}",
            namespace=NAMESPACE,
            image=TRAIN_IMAGE,
            pod_template_file=str(POD_TEMPLATE),
            cmds=["sh", "-c"],
            arguments=[script],
            env_vars=step_env(params),
            do_xcom_push=self.do_xcom_push,
            get_logs=True,
            on_finish_action="delete_succeeded_pod",
        )


def log_failure(context: Any) -> None:
    """The failed task's last try, in the worker's log as soon as it fails."""
    ti = context["ti"]
    log.error(
        "%s.%s failed on try %s: %s", DAG_ID, ti.task_id, ti.try_number, context.get("exception")
    )


def webhook_url() -> str | None:
    """The notify connection's URL, or None where the connection is not defined."""
    try:
        conn = Connection.get(NOTIFY_CONN_ID)
    except AirflowNotFoundException:
        return None
    host = conn.host or ""
    if "://" not in host:
        scheme = "https" if conn.conn_type == "https" else "http"
        host = f"{scheme}://{host}"
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    return f"{host}{port}{path}"


def post(message: dict[str, Any]) -> None:
    url = webhook_url()
    if url is None:
        log.info("no %s connection: not notifying %s", NOTIFY_CONN_ID, message)
        return
    request = urllib.request.Request(  # noqa: S310 (the URL is the operator's own connection)
        url, data=json.dumps(message).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        log.info("notified %s: HTTP %s", url, response.status)


def registration(params: dict[str, Any]) -> Any:
    """reports/registration.json, where the run's files are here to read (the local runner)."""
    path = PROJECT_DIR / "reports" / "registration.json"
    if params["runner"] != "local" or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


default_args = {
    "retries": int(os.environ.get(f"{PREFIX}_TASK_RETRIES", "2")),
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(minutes=30),
    "on_failure_callback": log_failure,
}

with DAG(
    dag_id=DAG_ID,
    description="Check, then retrain, evaluate and register the model where something asks for it",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Two runs would race on one workspace and on @champion.
    max_active_runs=1,
    default_args=default_args,
    params={
        "runner": Param(RUNNER, enum=["local", "kubernetes"], description="where the steps run"),
        "force": Param(False, type="boolean", description="retrain even when nothing asks for it"),
        "current_data": Param(
            "", type="string", description="a CSV of new data for the drift check"
        ),
        "live_hours": Param(24, type="number", description="the labelled window of the live check"),
    },
    tags=[CLI, "training"],
) as dag:
    pull_data = ProjectStep(task_id="pull_data", command=STEPS["pull_data"], do_xcom_push=False)
    checks = [ProjectStep(task_id=name, command=command) for name, command in CHECKS.items()]

    @task.branch
    def decide(**context: Any) -> str:
        """Retrain when a check asks for it or the run's `force` param does; else skip."""
        words = context["ti"].xcom_pull(task_ids=list(CHECKS))
        reasons = [
            f"{name}: {word}"
            for name, word in zip(CHECKS, words, strict=True)
            if word in RETRAIN_WORDS
        ]
        if context["params"]["force"]:
            reasons.append("force")
        log.info("retrain: %s", ", ".join(reasons) or "nothing asks for it")
        context["ti"].xcom_push(key="reasons", value=reasons)
        return "prepare" if reasons else "skip_training"

    skip_training = EmptyOperator(task_id="skip_training")
    prepare = ProjectStep(task_id="prepare", command=STEPS["prepare"], do_xcom_push=False)
    train = ProjectStep(
        task_id="train",
        command=STEPS["train"],
        do_xcom_push=False,
        execution_timeout=timedelta(hours=4),
    )
    # A missed quality gate is not transient: no retry.
    evaluate = ProjectStep(
        task_id="evaluate", command=STEPS["evaluate"], do_xcom_push=False, retries=0
    )
    register = ProjectStep(task_id="register", command=STEPS["register"], do_xcom_push=False)
    push_data = ProjectStep(task_id="push_data", command=STEPS["push_data"], do_xcom_push=False)

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def notify(**context: Any) -> None:
        reasons = context["ti"].xcom_pull(task_ids="decide", key="reasons") or []
        post(
            {
                "dag_id": DAG_ID,
                "run_id": context["run_id"],
                "outcome": "retrained" if reasons else "skipped",
                "reasons": reasons,
                "registration": registration(context["params"]),
            }
        )

    @task(trigger_rule=TriggerRule.ONE_FAILED)
    def notify_failure(**context: Any) -> None:
        states = context["ti"].get_task_states(dag_id=DAG_ID, run_ids=[context["run_id"]])
        failed = sorted(
            task_id
            for task_id, state in states.get(context["run_id"], {}).items()
            if state == "failed"
        )
        post({"dag_id": DAG_ID, "run_id": context["run_id"], "outcome": "failed", "failed": failed})

    steps = [pull_data, *checks, prepare, train, evaluate, register, push_data]
    branch = decide()
    pull_data >> checks >> branch >> [prepare, skip_training]
    prepare >> train >> evaluate >> register >> push_data
    [push_data, skip_training] >> notify()
    steps >> notify_failure()

if __name__ == "__main__":
    dag.test()
