"""The rendered Dockerfile, unchanged, built by a real engine and run as the manifests say.

podman (tests/containers.py) builds the serve target through the project's own
`make docker-build` (DOCKER= a podman wrapper) and runs it with the security context,
volumes and environment of the rendered production Deployment. The train target, with
the retrain and drift CronJobs' containers, runs against the tracking stack
(tests/test_tracking_stack_e2e.py).
"""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from baked import BakedProject, free_port
from containers import ROOT, Image, answering, docker_command, ensure_bases, podman
from test_loadtest_e2e import report, run_loadtest
from test_serve_e2e import RECORD_SCRIPT, call

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve-e2e")]
TRAINING_ONLY = ("sklearn", "pandas", "mlflow", "skops", "dvc", "xgboost", "lightgbm")


def rendered_overlay(project: BakedProject, overlay: str) -> list[dict[str, Any]]:
    output = subprocess.run(
        ["kubectl", "kustomize", f"deploy/k8s/overlays/{overlay}"],
        cwd=project.path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def pod_options(
    project: BakedProject, kind: str, name: str, overrides: dict[str, str] | None = None
) -> tuple[list[str], dict[str, Any]]:
    """`podman run` options for the first container of the production overlay's `kind`
    whose name contains `name`.

    Its user, read-only root, capabilities, privilege escalation, a tmpfs where it mounts
    an emptyDir, its env and the ConfigMap's. Returns the options and the container spec.
    """
    objects = rendered_overlay(project, "production")
    (workload,) = [
        item for item in objects if item["kind"] == kind and name in item["metadata"]["name"]
    ]
    template = workload["spec"]["jobTemplate"] if kind == "CronJob" else workload
    pod = template["spec"]["template"]["spec"]
    spec = pod["containers"][0]
    security = {**pod["securityContext"], **spec["securityContext"]}
    options = [f"--user={security['runAsUser']}:{security['runAsGroup']}"]
    if security["readOnlyRootFilesystem"]:
        options.append("--read-only")
    options += [f"--cap-drop={cap}" for cap in security["capabilities"]["drop"]]
    if security["allowPrivilegeEscalation"] is False:
        options.append("--security-opt=no-new-privileges")
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    options += [
        f"--tmpfs={mount['mountPath']}"
        for mount in spec["volumeMounts"]
        if mount["name"] in empty_dirs
    ]
    configmaps = {
        item["metadata"]["name"]: item["data"] for item in objects if item["kind"] == "ConfigMap"
    }
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]])
    # values, and the pod's own namespace from the downward API
    fields = {"metadata.namespace": workload["metadata"]["namespace"]}
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
    env.update(overrides or {})
    options += [f"--env={key}={value}" for key, value in env.items()]
    return options, spec


@pytest.fixture(scope="module")
def project(exported_project: BakedProject) -> BakedProject:
    return exported_project


@pytest.fixture(scope="module")
def docker(project: BakedProject) -> str:
    ensure_bases(project.path / "Dockerfile")
    return f"DOCKER={docker_command()}"


@pytest.fixture(scope="module")
def serve_image(project: BakedProject, docker: str) -> Image:
    project.check(
        "make", "docker-build", docker, "IMAGE=localhost/images-e2e", "TAG=serve", timeout=2400
    )
    return Image("localhost/images-e2e:serve")


@pytest.fixture(scope="module")
def running(project: BakedProject, serve_image: Image) -> Iterator[tuple[str, str]]:
    """The serve image as the production Deployment runs it; yields (container, URL).

    Only PORT differs from the manifest: the host network is the only one here.
    """
    port = free_port()
    options, spec = pod_options(project, "Deployment", project.path.name, {"PORT": str(port)})
    assert spec["image"].split(":")[0].endswith(f"/{project.path.name}")
    with answering(serve_image, port, "/health/ready", *options) as running:
        yield running


def test_the_serve_image_answers_as_the_pod_spec_runs_it(
    project: BakedProject, running: tuple[str, str]
) -> None:
    name, base = running
    records = json.loads(project.check(".venv/bin/python", "-c", RECORD_SCRIPT).stdout)[:5]
    status, answer = call(f"{base}/predict", records)
    assert status == 200, answer
    assert len(answer["predictions"]) == 5
    ids = answer["prediction_ids"]
    deadline = time.monotonic() + 10  # the log's writer thread runs after the answer
    while True:
        out = podman("logs", name).stdout.splitlines()
        logged = [json.loads(line) for line in out if line.startswith('{"id":')]
        if {line["id"] for line in logged} >= set(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {line["id"] for line in logged} >= set(ids), "the prediction log goes to stdout"
    status, answer = call(f"{base}/predict", [{"mean_radius": "wide"}])
    assert status == 422
    assert "mean_radius" in json.dumps(answer)
    identity = podman("exec", name, "id", "-u").stdout.strip()
    assert identity == "10001"
    written = podman("exec", name, "touch", "/app/x", check=False)
    assert written.returncode != 0, "the root filesystem is read-only"
    assert "Read-only file system" in written.stderr
    smoke = project.check(f".venv/bin/{project.path.name}", "smoke", "--url", base)
    assert "predicted" in smoke.stdout
    metrics = podman("exec", name, "sh", "-c", "ls /tmp/prometheus").stdout.split()
    assert any(file.endswith(".db") for file in metrics), "metrics go to the tmpfs /tmp"


def test_the_container_passes_the_load_test(
    project: BakedProject, running: tuple[str, str]
) -> None:
    _, base = running
    result = run_loadtest(project, base, LOADTEST_MAX_ERROR_RATE="0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    total = report(project)["Aggregated"]
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0


def test_the_image_healthcheck_passes(serve_image: Image, running: tuple[str, str]) -> None:
    name, _ = running
    assert "/health/live" in " ".join(serve_image.healthcheck)
    checked = podman("healthcheck", "run", name, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_serve_image_holds_no_training_library(
    project: BakedProject, serve_image: Image
) -> None:
    script = (
        "import importlib.util, json; "
        f"print(json.dumps([m for m in {TRAINING_ONLY!r} if importlib.util.find_spec(m)]))"
    )
    found = serve_image.run("python", "-c", script).stdout
    assert json.loads(found) == [], "the compiled runtime needs none of them"
    runtime = json.loads(project.read("build/model/extra_files/runtime.json"))
    assert runtime["predictor"] == "compiled"
    size = serve_image.size_mb
    (ROOT / "serve-image-size.txt").write_text(f"{size:.0f} MB\n", encoding="utf-8")
    print(f"serve image: {size:.0f} MB")


def test_the_images_carry_labels_and_an_sbom(project: BakedProject, serve_image: Image) -> None:
    labels = serve_image.config["Labels"]
    revision = project.check("git", "rev-parse", "HEAD").stdout.strip()
    assert labels["org.opencontainers.image.revision"] == revision
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.source"].endswith(f"/{project.path.name}")
    sbom = json.loads(serve_image.run("cat", "/app/sbom.cdx.json").stdout)
    assert sbom["bomFormat"] == "CycloneDX"
    components = {item["name"]: item.get("version") for item in sbom["components"]}
    locked = tomllib.loads(project.read("uv.lock"))
    pins = {package["name"]: package.get("version") for package in locked["package"]}
    for name in ("fastapi", "numpy", "uvicorn"):
        assert components[name] == pins[name], name
    assert "scikit-learn" not in components, "the SBOM lists what the image installs"
