{%- set slug = cookiecutter.project_slug -%}
"""The Kubeflow pipeline (kfp 2) of the project's stages: compile it, or submit it.

    python pipelines/training.py compile [--output pipelines/training.yaml]
    python pipelines/training.py submit [--output pipelines/training.yaml]

Each stage is a component running in the train image: prepare, train, evaluate, then
register only where evaluate's gate passed, else `gate-missed` fails the run with the
reason. The steps are pipelines/steps.py, whose source the compiled pipeline carries;
this file imports nothing of the project. See pipelines/README.md.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler, dsl, kubernetes

HERE = Path(__file__).resolve().parent
SLUG = "{{ slug }}"
PREFIX = "{{ cookiecutter.module_name.upper() }}"  # of the variables this file reads
NAME = f"{SLUG}-training"
IMAGE = f"ghcr.io/{{ cookiecutter.github_owner | lower }}/{SLUG}-train"
# Read when the pipeline is compiled: pin a digest (…-train@sha256:…) for production.
TRAIN_IMAGE = os.environ.get(f"{PREFIX}_TRAIN_IMAGE", f"{IMAGE}:latest")
OUTPUT = HERE / "training.yaml"
# The defaults of the pipeline's parameters: params.yaml when the pipeline is compiled.
PARAMS = yaml.safe_load((HERE.parent / "params.yaml").read_text(encoding="utf-8"))
STEPS_SOURCE = (HERE / "steps.py").read_text(encoding="utf-8")

# As the retrain CronJob's pod: its user, resources and configuration.
USER = 10001
RESOURCES = {"cpu": ("1", "2"), "memory": ("2Gi", "4Gi")}  # (request, limit)
CONFIG_MAP = f"{SLUG}-config"
# A tracking server every pod reaches: a step without one would not run (a sqlite file in
# a pod dies with it). The names have defaults.
CONFIG_REQUIRED = ("MLFLOW_TRACKING_URI",)
CONFIG_OPTIONAL = ("EXPERIMENT_NAME", "MODEL_NAME")
# Secret -> {key: variable}. The two Secrets may hold keys of the same name for different
# stores: DVC's reach the steps as DVC_REMOTE_* options of the remote, MLflow's as the
# variables MLflow reads.
SECRETS = {
    f"{SLUG}-mlflow": {
        key: key
        for key in (
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "MLFLOW_S3_ENDPOINT_URL",
        )
    },
    f"{SLUG}-dvc": {
        "DVC_REMOTE_URL": "DVC_REMOTE_URL",
        "AWS_ACCESS_KEY_ID": "DVC_REMOTE_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "DVC_REMOTE_SECRET_ACCESS_KEY",
        "AZURE_STORAGE_CONNECTION_STRING": "DVC_REMOTE_CONNECTION_STRING",
    },
}
# Seconds a step may run (the pod's activeDeadlineSeconds).
TIMEOUTS = {"train": 4 * 3600}
DEFAULT_TIMEOUT = 1800

Step = Callable[..., dsl.PipelineTask]


def container_step(stage: str) -> Any:
    """The component of one stage: steps.py in the train image."""

    def component(
        state: str,
        model: str,
        seed: int,
        test_size: float,
        gate: dict,
        force: bool,
        next_state: dsl.OutputPath(str),
        gate_result: dsl.OutputPath(str),
    ) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(
            image=TRAIN_IMAGE,
            command=["python", "-c", STEPS_SOURCE, stage],
            args=[
                *("--workspace", "/workspace", "--state", state),
                *("--model", model, "--seed", seed, "--test-size", test_size),
                *("--gate", gate, "--force", force),
                *("--state-out", next_state, "--gate-out", gate_result),
            ],
        )

    component.__name__ = stage
    return dsl.container_component(component)


@dsl.container_component
def gate_missed(reason: str) -> dsl.ContainerSpec:
    """Fail the run with evaluate's reason: no new version was registered."""
    return dsl.ContainerSpec(
        image=TRAIN_IMAGE, command=["sh", "-c", 'echo "error: $0" >&2; exit 1', reason]
    )


STAGES = ("prepare", "train", "evaluate", "register")
COMPONENTS = {stage: container_step(stage) for stage in STAGES}


def in_cluster(task: dsl.PipelineTask, stage: str) -> dsl.PipelineTask:
    """What the step's pod gets in the cluster: the retrain CronJob's settings."""
    task.set_caching_options(False)  # the data and the registry change between runs
    (cpu_request, cpu_limit), (memory_request, memory_limit) = RESOURCES.values()
    task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory_request).set_memory_limit(memory_limit)
    task.set_env_variable("HOME", "/tmp")  # noqa: S108 (the image's user has no home)
    kubernetes.set_security_context(task, run_as_user=USER, run_as_group=USER, run_as_non_root=True)
    kubernetes.empty_dir_mount(
        task, volume_name="workspace", mount_path="/workspace", size_limit="10Gi"
    )
    for keys, optional in ((CONFIG_REQUIRED, False), (CONFIG_OPTIONAL, True)):
        kubernetes.use_config_map_as_env(
            task, CONFIG_MAP, {key: key for key in keys}, optional=optional
        )
    for secret, keys in SECRETS.items():
        kubernetes.use_secret_as_env(task, secret, keys, optional=True)
    kubernetes.set_timeout(task, TIMEOUTS.get(stage, DEFAULT_TIMEOUT))
    return task


def cluster_step(stage: str, **inputs: Any) -> dsl.PipelineTask:
    task = in_cluster(COMPONENTS[stage](**inputs), stage)
    # Retried for what is transient (a node drained, a store that blinked); a missed gate
    # is an output of evaluate, not a failure.
    return task.set_retry(
        num_retries=2, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="1800s"
    )


def cluster_gate_missed(reason: Any) -> dsl.PipelineTask:
    task = gate_missed(reason=reason).set_caching_options(False)
    kubernetes.set_security_context(task, run_as_user=USER, run_as_group=USER, run_as_non_root=True)
    return task


def build(step: Step, missed: Callable[[Any], dsl.PipelineTask]) -> Any:
    """The pipeline, given how to make the task of a stage and of a missed gate."""

    @dsl.pipeline(name=NAME, description="Prepare, train, evaluate; register if the gate passes")
    def training(
        model: str = PARAMS["train"]["model"],
        seed: int = PARAMS["seed"],
        test_size: float = PARAMS["data"]["test_size"],
        gate: dict = PARAMS["evaluate"]["gate"],
        force: bool = False,
    ) -> None:
        run = {"model": model, "seed": seed, "test_size": test_size, "gate": gate, "force": force}
        prepare = step("prepare", state="", **run)
        train = step("train", state=prepare.outputs["next_state"], **run)
        evaluate = step("evaluate", state=train.outputs["next_state"], **run)
        with dsl.If(evaluate.outputs["gate_result"] == "passed", name="gate-passed"):
            step("register", state=evaluate.outputs["next_state"], **run)
        with dsl.Else(name="gate-missed"):
            missed(evaluate.outputs["gate_result"])

    return training


def compile_pipeline(output: Path) -> Path:
    compiler.Compiler().compile(build(cluster_step, cluster_gate_missed), str(output))
    return output


def submit(package: Path) -> str:
    """Send the compiled pipeline to the KFP API at KFP_HOST; return the run's id."""
    from kfp import Client

    host = os.environ.get("KFP_HOST", "")
    if not host:
        raise SystemExit("error: KFP_HOST: set it to the KFP API (https://…/pipeline)")
    client = Client(
        host=host,
        existing_token=os.environ.get("KFP_TOKEN") or None,
        namespace=os.environ.get("KFP_NAMESPACE") or None,
    )
    arguments = json.loads(os.environ.get("KFP_ARGUMENTS") or "{}")
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        experiment_name=os.environ.get("KFP_EXPERIMENT") or SLUG,
        namespace=os.environ.get("KFP_NAMESPACE") or None,
        enable_caching=False,
    )
    return str(result.run_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["compile", "submit"])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the compiled pipeline")
    args = parser.parse_args(argv)
    package = compile_pipeline(args.output)
    print(f"compiled {package} (image {TRAIN_IMAGE})")
    if args.command == "submit":
        print(f"submitted: run {submit(package)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
