"""The orchestrators, offline: Airflow's step pod is the retrain CronJob's pod; neither
the DAG nor the Kubeflow pipeline imports the project.

The DAG and the pipeline are parsed, compiled and run for real by the rendered project's
`make airflow-test` and `make kfp-test` (tests/test_e2e.py, the combinations with each
orchestrator; the kfp tests check the compiled pods against the CronJob). Here, the pod
template's security context, resources and configuration, against the CronJob they must
match, and the strict schema of a Pod.
"""

from __future__ import annotations

import ast
import sys
from typing import Any

import pytest
from baked import TOOLS_BIN, BakedProject
from conftest import bake_project

Doc = dict[str, Any]
K8S_VERSION = "1.32.0"


@pytest.fixture(scope="module")
def baked(cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, {"orchestrator": "airflow", "deploy": "kubernetes"})


def step_pod(baked: BakedProject) -> Doc:
    [pod] = baked.load(f"dags/{baked.module}_step_pod.yaml")
    return dict(pod)


def retrain_pod(baked: BakedProject) -> Doc:
    [cronjob] = baked.load("deploy/k8s/overlays/production/retrain-cronjob.yaml")
    return dict(cronjob["spec"]["jobTemplate"]["spec"]["template"])


def test_the_step_pod_runs_as_the_retrain_cronjob_does(baked: BakedProject) -> None:
    pod, cronjob = step_pod(baked)["spec"], retrain_pod(baked)["spec"]
    for key in ("securityContext", "serviceAccountName", "automountServiceAccountToken"):
        assert pod[key] == cronjob[key], key
    assert pod["enableServiceLinks"] == cronjob["enableServiceLinks"]
    assert pod["restartPolicy"] == "Never"
    # KubernetesPodOperator sets its image and command on the container named `base`.
    [container] = pod["containers"]
    [retrain] = cronjob["containers"]
    assert container["name"] == "base"
    assert "image" not in container
    for key in ("securityContext", "resources", "envFrom", "env", "workingDir"):
        assert container[key] == retrain[key], key


def test_the_step_pods_share_a_workspace_claim_and_keep_tmp_scratch(baked: BakedProject) -> None:
    spec = step_pod(baked)["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    [container] = spec["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert volumes[mounts["/tmp"]] == {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}
    claim = volumes[mounts["/workspace"]]["persistentVolumeClaim"]["claimName"]
    assert claim == f"{baked.path.name}-pipeline-workspace"
    assert claim in baked.read("dags/README.md")


def test_the_step_pod_passes_the_strict_pod_schema(baked: BakedProject) -> None:
    result = baked.check(
        str(TOOLS_BIN / "kubernetes-validate"),
        "--strict",
        "-k",
        K8S_VERSION,
        f"dags/{baked.module}_step_pod.yaml",
    )
    assert "passed for resource" in result.stdout, result.stdout


def test_the_dag_file_imports_nothing_of_the_project(baked: BakedProject) -> None:
    text = baked.read(f"dags/{baked.module}_training.py")
    imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert imports
    assert not [line for line in imports if baked.module in line]


@pytest.fixture(scope="module")
def kubeflow(cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, {"orchestrator": "kubeflow"})


def test_the_pipeline_files_import_nothing_of_the_project(kubeflow: BakedProject) -> None:
    for name in ("training.py", "local.py", "steps.py"):
        text = kubeflow.read(f"pipelines/{name}")
        imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
        assert imports, name
        assert not [line for line in imports if kubeflow.module in line], name


def test_the_steps_use_only_what_the_train_image_and_kfp_both_have(kubeflow: BakedProject) -> None:
    """steps.py runs in the train image's Python and in .venv-kfp: the standard library and
    PyYAML (which DVC and kfp both require)."""
    tree = ast.parse(kubeflow.read("pipelines/steps.py"))
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level
    }
    assert modules - sys.stdlib_module_names == {"yaml"}
