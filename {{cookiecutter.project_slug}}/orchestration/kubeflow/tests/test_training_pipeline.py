{%- set slug = cookiecutter.project_slug -%}
"""The pipeline compiled and checked, then run for real with kfp.local.

The runs share the DVC remote and the MLflow store of conftest.py, in order: a run
prepares, trains, evaluates and registers the champion, each step in a workspace of its
own; a run whose gate cannot be met skips register and fails on `gate-missed`.
"""

from __future__ import annotations

import json
import subprocess
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


def test_one_component_per_stage_in_the_train_image(compiled: Any) -> None:
    spec, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert set(spec["components"]) >= {f"comp-{stage}" for stage in [*STAGES, "gate-missed"]}
    steps = (PROJECT / "pipelines" / "steps.py").read_text(encoding="utf-8")
    for stage in STAGES:
        container = executors[f"exec-{stage}"]["container"]
        assert container["image"] == training.TRAIN_IMAGE
        assert container["command"] == ["python", "-c", steps, stage]
        assert container["resources"]["resourceCpuRequest"] == "1"
        assert container["resources"]["resourceMemoryLimit"] == "4Gi"
    assert executors["exec-gate-missed"]["container"]["image"] == training.TRAIN_IMAGE
    assert training.TRAIN_IMAGE.startswith(f"ghcr.io/{{ cookiecutter.github_owner | lower }}/{SLUG}-train")


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
    for stage in STAGES:
        pod = executors[f"exec-{stage}"]
        assert pod["securityContext"] == {
            "runAsUser": "10001",
            "runAsGroup": "10001",
            "runAsNonRoot": True,
        }
        assert pod["emptyDirMounts"] == [
            {"volumeName": "workspace", "mountPath": "/workspace", "sizeLimit": "10Gi"}
        ]
        [config] = pod["configMapAsEnv"]
        assert config["configMapName"] == f"{SLUG}-config"
        assert config["optional"] is True
        secrets = {secret["secretName"]: secret for secret in pod["secretAsEnv"]}
        assert set(secrets) == {f"{SLUG}-mlflow", f"{SLUG}-dvc"}
        assert all(secret["optional"] for secret in secrets.values())
        dvc = {item["secretKey"]: item["envVar"] for item in secrets[f"{SLUG}-dvc"]["keyToEnv"]}
        assert dvc["DVC_REMOTE_URL"] == "DVC_REMOTE_URL"
        assert dvc["AWS_ACCESS_KEY_ID"] == "DVC_REMOTE_ACCESS_KEY_ID"
        assert int(pod["activeDeadlineSeconds"]) == (14400 if stage == "train" else 1800)


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
