{%- set slug = cookiecutter.project_slug -%}
"""The pipeline compiled and checked, then run for real with kfp.local.

The runs share the DVC remote and the MLflow store of conftest.py, in order: a run
prepares, trains, evaluates and registers the champion, each step in a workspace of its
own; a run whose gate cannot be met skips register and fails on `gate-missed`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import local
import pytest
import training
import yaml

from conftest import PROJECT, REMOTE, WORK

SLUG = "{{ slug }}"
STAGES = ["prepare", "train", "evaluate", "register"]
PARAMS = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))
RUNS = WORK / "runs"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec and its Kubernetes platform spec, as make kfp-compile writes them."""
    output = training.compile_pipeline(tmp_path_factory.mktemp("compiled") / "training.yaml")
    spec, platform = yaml.safe_load_all(output.read_text(encoding="utf-8"))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def models() -> str:
    return subprocess.run(
        [str(PROJECT / ".venv" / "bin" / SLUG), "models"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def handed_on(task: str) -> dict[str, str]:
    """The state a task of the latest local run handed on."""
    run = sorted(RUNS.iterdir())[-1]  # named by the time it started
    output = json.loads((run / task / "executor_output.json").read_text(encoding="utf-8"))
    return dict(json.loads(output["parameterValues"]["next_state"]))


def retrain_pod() -> dict[str, Any]:
    """The retrain CronJob's pod, whose settings every step's pod has."""
    path = PROJECT / "deploy" / "k8s" / "overlays" / "production" / "retrain-cronjob.yaml"
    cronjob = yaml.safe_load(path.read_text(encoding="utf-8"))
    return dict(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])


def test_one_component_per_stage_in_the_train_image(compiled: Any) -> None:
    spec, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert set(spec["components"]) >= {f"comp-{stage}" for stage in [*STAGES, "gate-missed"]}
    steps = (PROJECT / "pipelines" / "steps.py").read_text(encoding="utf-8")
    [retrain] = retrain_pod()["containers"]
    for stage in STAGES:
        container = executors[f"exec-{stage}"]["container"]
        assert container["image"] == training.TRAIN_IMAGE
        assert container["command"] == ["python", "-c", steps, stage]
        resources = container["resources"]
        assert resources["resourceCpuRequest"] == retrain["resources"]["requests"]["cpu"]
        assert resources["resourceMemoryRequest"] == retrain["resources"]["requests"]["memory"]
        assert resources["resourceCpuLimit"] == retrain["resources"]["limits"]["cpu"]
        assert resources["resourceMemoryLimit"] == retrain["resources"]["limits"]["memory"]
    assert executors["exec-gate-missed"]["container"]["image"] == training.TRAIN_IMAGE
    owner = "{{ cookiecutter.github_owner | lower }}"
    assert training.TRAIN_IMAGE.startswith(f"ghcr.io/{owner}/{SLUG}-train")


def test_the_parameters_default_to_params_yaml(compiled: Any) -> None:
    spec, _ = compiled
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["model"]["defaultValue"] == PARAMS["train"]["model"]
    assert inputs["seed"]["defaultValue"] == PARAMS["seed"]
    assert inputs["test_size"]["defaultValue"] == PARAMS["data"]["test_size"]
    assert inputs["gate"]["defaultValue"] == PARAMS["evaluate"]["gate"]
    assert inputs["force"]["defaultValue"] is False


def test_register_runs_only_where_the_gate_passed(compiled: Any) -> None:
    spec, _ = compiled
    components = spec["components"]
    branches = {
        name: component["dag"]["tasks"]
        for name, component in components.items()
        if "dag" in component
    }
    [(if_name, if_tasks)] = [(n, t) for n, t in branches.items() if "register" in t]
    [(else_name, _)] = [(n, t) for n, t in branches.items() if "gate-missed" in t]
    conditions = {
        task["componentRef"]["name"]: task["triggerPolicy"]["condition"]
        for tasks in branches.values()
        for task in tasks.values()
        if "triggerPolicy" in task
    }
    gate = "inputs.parameter_values['pipelinechannel--evaluate-gate_result']"
    assert conditions[if_name] == f"{gate} == 'passed'"
    assert conditions[else_name] == f"!({gate} == 'passed')"
    assert if_tasks["register"]["inputs"]["parameters"]["state"] == {
        "componentInputParameter": "pipelinechannel--evaluate-next_state"
    }
    root = spec["root"]["dag"]["tasks"]
    assert root["train"]["inputs"]["parameters"]["state"]["taskOutputParameter"] == {
        "outputParameterKey": "next_state",
        "producerTask": "prepare",
    }


def test_the_pods_run_as_the_retrain_cronjob(compiled: Any) -> None:
    _, executors = compiled
    retrain = retrain_pod()
    [container] = retrain["containers"]
    context = retrain["securityContext"]
    sources = {
        ref["name"]: ref.get("optional", False)
        for source in container["envFrom"]
        for ref in [source.get("configMapRef") or source["secretRef"]]
    }
    for stage in STAGES:
        pod = executors[f"exec-{stage}"]
        # kfp-kubernetes sets these three of the security context (pipelines/README.md).
        assert pod["securityContext"] == {
            "runAsUser": str(context["runAsUser"]),
            "runAsGroup": str(context["runAsGroup"]),
            "runAsNonRoot": context["runAsNonRoot"],
        }
        assert pod["emptyDirMounts"] == [
            {"volumeName": "workspace", "mountPath": container["workingDir"], "sizeLimit": "10Gi"}
        ]
        configs = {
            tuple(item["envVar"] for item in config["keyToEnv"]): config
            for config in pod["configMapAsEnv"]
        }
        required = configs[("MLFLOW_TRACKING_URI",)]
        assert sources[required["configMapName"]] is False  # required by both
        assert required.get("optional", False) is False
        secrets = {secret["secretName"]: secret for secret in pod["secretAsEnv"]}
        assert all(sources[name] for name in secrets), "optional in the CronJob as well"
        assert all(secret["optional"] for secret in secrets.values())
        dvc = {item["secretKey"]: item["envVar"] for item in secrets[f"{SLUG}-dvc"]["keyToEnv"]}
        assert dvc["DVC_REMOTE_URL"] == "DVC_REMOTE_URL"
        # the remote's keys never replace those of MLflow's artifact store
        assert dvc["AWS_ACCESS_KEY_ID"] == "DVC_REMOTE_ACCESS_KEY_ID"
        deadline = int(pod["activeDeadlineSeconds"])
        assert deadline == (14400 if stage == "train" else 1800)
        assert deadline <= retrain_deadline()


def retrain_deadline() -> int:
    path = PROJECT / "deploy" / "k8s" / "overlays" / "production" / "retrain-cronjob.yaml"
    cronjob = yaml.safe_load(path.read_text(encoding="utf-8"))
    return int(cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"])


def test_caching_is_off_and_transient_failures_retry(compiled: Any) -> None:
    spec, _ = compiled
    tasks = {
        name: task
        for component in [spec["root"], *spec["components"].values()]
        for name, task in component.get("dag", {}).get("tasks", {}).items()
    }
    for stage in STAGES:
        assert tasks[stage]["cachingOptions"] == {}, stage  # enableCache left out: false
        assert tasks[stage]["retryPolicy"]["maxRetryCount"] == 2
    assert "retryPolicy" not in tasks["gate-missed"]


def placeholder(reference: str) -> str:
    """A kfp runtime placeholder, '{' '{$.…}' '}', which the KFP backend fills in."""
    return "{" * 2 + "$." + reference + "}" * 2


def test_the_compiled_command_runs_a_step(compiled: Any, tmp_path: Path) -> None:
    """prepare's command and arguments as the pod gets them, run by the project's Python
    (the image's has the same packages), with this checkout in place of the image's /app."""
    spec, _ = compiled
    container = spec["deploymentSpec"]["executors"]["exec-prepare"]["container"]
    inputs = {
        "state": "",
        "model": PARAMS["train"]["model"],
        "seed": str(PARAMS["seed"]),
        "test_size": str(PARAMS["data"]["test_size"]),
        "gate": json.dumps(PARAMS["evaluate"]["gate"]),
        "force": "false",
    }
    outputs = {"next_state": tmp_path / "next_state", "gate_result": tmp_path / "gate_result"}
    values = {placeholder(f"inputs.parameters['{name}']"): value for name, value in inputs.items()}
    values |= {
        placeholder(f"outputs.parameters['{name}'].output_file"): str(path)
        for name, path in outputs.items()
    }
    values["/workspace"] = str(tmp_path / "workspace")
    args = [values.get(arg, arg) for arg in container["args"]]
    assert not [arg for arg in args if arg.startswith(placeholder(""))]
    python, *command = container["command"]

    subprocess.run(
        [str(PROJECT / ".venv" / "bin" / python), *command, *args, "--source", str(PROJECT)],
        check=True,
    )

    assert outputs["gate_result"].read_text() == "passed"
    state = json.loads(outputs["next_state"].read_text())
    assert {"sample", "prepare"} <= set(yaml.safe_load(state["dvc.lock"])["stages"])
    assert json.loads(state["data/processed/split.json"])["train"] > 0


def test_a_run_registers_the_champion_through_the_remote_and_the_registry() -> None:
    local.run({"force": False}, root=RUNS)

    assert "@champion" in models()
    state = handed_on("run-stage-4")
    registration = json.loads(state["reports/registration.json"])
    assert registration["champion"] == registration["version"] == "1"
    lock = yaml.safe_load(state["dvc.lock"])
    assert set(STAGES) <= set(lock["stages"])
    # The steps shared nothing but the remote: what the lock names is there.
    outs = {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }
    stored = {path.parent.name + path.name for path in (REMOTE / "files" / "md5").glob("*/*")}
    for path in ("data/processed/train.csv", "data/processed/test.csv", "models/model"):
        assert outs[path] in stored, path


def test_a_missed_gate_skips_register_and_fails_the_run() -> None:
    metric = next(iter(PARAMS["evaluate"]["gate"]))
    # A threshold no model reaches, in the direction the metric is gated.
    unreachable = -1.0 if metric in ("rmse", "mae", "log_loss") else 2.0

    with pytest.raises(RuntimeError, match="gate-missed"):
        local.run({"force": False, "gate": {metric: unreachable}}, root=RUNS)

    assert "@champion" in models()
    versions = [line.split()[0] for line in models().splitlines()[1:] if line.strip()]
    assert versions == ["1"]
    assert not (sorted(RUNS.iterdir())[-1] / "run-stage-4").exists()
