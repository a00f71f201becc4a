"""The Kubernetes manifests of every combination that renders them, checked offline.

Each overlay is rendered by the project's own `make k8s-render` (kubectl kustomize), then:
strict schemas of a pinned Kubernetes version for every core object, the required fields
of the Prometheus Operator's objects, Pod Security "restricted" and probes and resources
on every pod spec, selectors that select what they should, and ports that agree with
the server's settings.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from baked import TOOLS_BIN, BakedProject, template_defaults
from combinations import SUPPORTED_COMBINATIONS
from conftest import bake_project
from kubectl_stand_in import stand_in_kubectl

Doc = dict[str, Any]

K8S_VERSION = "1.32.0"
# The oldest Kubernetes the manifests support (the API's preStop sleep action is on by
# default from 1.30): make k8s-validate checks it too, and the README states it.
K8S_MIN_VERSION = "1.30.0"
K8S_VERSIONS = (K8S_MIN_VERSION, K8S_VERSION)
OVERLAYS = ("staging", "production", "canary", "blue-green")
# Where each overlay deploys: canary and blue-green are ways of running production.
NAMESPACE_OF = {
    overlay: "staging" if overlay == "staging" else "production" for overlay in OVERLAYS
}
COLORS = ("blue", "green")
LIVE_FILE = "deploy/k8s/overlays/blue-green/live.yaml"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# The longest slug whose derived names all fit Kubernetes' limits: <slug>-retrain is a
# CronJob name (at most 52 characters, its Jobs' pods add a suffix to a 63-character label).
LONGEST_SLUG = "retail-customer-lifetime-value-forecast-apis"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# `uv run --no-project --with PKG CMD…` for `make k8s-validate`: this venv already has PKG.
UV_SHIM = """#!/bin/sh
[ "$1 $2 $3" = "run --no-project --with" ] || { echo "unexpected uv call: $*" >&2; exit 97; }
shift 4
exec "$@"
"""


# feature_store=feast: the API and the materialize job read Redis and the shared registry
# through the production settings of feature_repo/.
FEAST_ENV = {"feast": {"FEATURE_STORE_YAML": "feature_repo/feature_store.production.yaml"}}


def answers_of(param: Any) -> dict[str, Any]:
    return {**template_defaults(), **param.values[0]}


KUBERNETES_COMBINATIONS = [
    pytest.param(param.values[0], id=param.id)
    for param in SUPPORTED_COMBINATIONS
    if answers_of(param)["deploy"] == "kubernetes"
] + [
    pytest.param(
        {"project_slug": LONGEST_SLUG, "github_owner": "Org-With-Capitals", "initialize_git": "no"},
        id="k8s-longest-slug",
    ),
    # the materialize CronJob and the API's online-store settings, checked like the rest
    pytest.param({"feature_store": "feast", "initialize_git": "no"}, id="k8s-feast"),
]


@pytest.fixture(scope="module", params=KUBERNETES_COMBINATIONS)
def baked(request: pytest.FixtureRequest, cookies_session: Any) -> BakedProject:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is needed to render the kustomize overlays (see .ci/run)")
    return bake_project(cookies_session, request.param)


@pytest.fixture(scope="module")
def answers(baked: BakedProject) -> dict[str, Any]:
    return {**template_defaults(), **baked.answers}


@pytest.fixture(scope="module")
def rendered(baked: BakedProject) -> dict[str, list[Doc]]:
    """`make k8s-render`: every overlay in build/k8s/<overlay>.yaml, parsed."""
    output = baked.check("make", "--no-print-directory", "k8s-render").stdout
    assert output.splitlines() == [f"rendered build/k8s/{overlay}.yaml" for overlay in OVERLAYS]
    return {
        overlay: [doc for doc in yaml.safe_load_all(baked.read(f"build/k8s/{overlay}.yaml")) if doc]
        for overlay in OVERLAYS
    }


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    return found


def pod_templates(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(owner, pod template) of every Deployment and CronJob."""
    for doc in docs:
        if doc["kind"] == "Deployment":
            yield doc, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]


def labels_of(template: Doc) -> dict[str, str]:
    return dict(template["metadata"].get("labels", {}))


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """matchLabels and matchExpressions (In) against a set of labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "only In is used in these manifests"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def api_container(template: Doc) -> Doc:
    containers: list[Doc] = template["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "api"]
    return container


def serve_port(baked: BakedProject) -> int:
    settings = baked.read(f"src/{baked.module}/serving/settings.py")
    found = re.search(r"port: int = Field\((\d+)", settings)
    assert found is not None, "the server's default port moved: update this test"
    return int(found.group(1))


def test_makefile_has_the_kubernetes_targets(baked: BakedProject) -> None:
    makefile = baked.read("make/kubernetes.mk")  # included by the Makefile
    for target in ("k8s-render", "k8s-validate", "k8s-deploy", "k8s-switch"):
        assert re.search(rf"^{target}:.*## \S", makefile, re.MULTILINE), target
    for overlay in ("production", "blue-green"):
        dry_run = baked.check("make", "-n", "k8s-deploy", f"ENV={overlay}", "UV=/bin/true").stdout
        assert f"kubectl apply -k deploy/k8s/overlays/{overlay}" in dry_run
        for version in K8S_VERSIONS:
            assert f"--kubernetes-version {version}" in dry_run


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_core_object_passes_strict_schemas(
    baked: BakedProject, rendered: dict[str, list[Doc]], version: str
) -> None:
    files = [f"build/k8s/{overlay}.yaml" for overlay in OVERLAYS]
    result = baked.check(str(TOOLS_BIN / "kubernetes-validate"), "--strict", "-k", version, *files)
    passed = re.findall(r"^INFO \S+ passed for resource (\S+) against", result.stdout, re.MULTILINE)
    core = [doc for docs in rendered.values() for doc in docs if doc["kind"] not in OPERATOR_KINDS]
    assert len(passed) == len(core), result.stdout
    warnings = re.findall(r"^WARN .*$", result.stdout, re.MULTILINE)
    assert all("ServiceMonitor" in w or "PrometheusRule" in w for w in warnings), warnings


def test_the_minimum_version_is_the_one_stated_and_it_matters(
    baked: BakedProject, rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """kubernetes.mk, the README and this test name one minimum, and it is not arbitrary:
    older schemas (1.28) have no preStop sleep action, which the API uses."""
    makefile = baked.read("make/kubernetes.mk")
    assert re.search(rf"^K8S_MIN_VERSION := {re.escape(K8S_MIN_VERSION)}$", makefile, re.M)
    assert re.search(rf"^K8S_VERSION \?= {re.escape(K8S_VERSION)}$", makefile, re.M)
    readme = " ".join(baked.read("README.md").split())
    minor = K8S_MIN_VERSION.rsplit(".", 1)[0]
    assert f"*Kubernetes {minor} or later*" in readme
    assert f"`K8S_MIN_VERSION` ({K8S_MIN_VERSION})" in readme
    deployment = one(rendered["staging"], "Deployment", baked.path.name)
    assert api_container(deployment["spec"]["template"])["lifecycle"]["preStop"] == {
        "sleep": {"seconds": 5}
    }
    single = tmp_path / "deployment.yaml"
    single.write_text(yaml.safe_dump(deployment), encoding="utf-8")
    validate = str(TOOLS_BIN / "kubernetes-validate")
    older = baked.run(validate, "--strict", "-k", "1.28.0", str(single))
    assert older.returncode == 1
    assert "'sleep' was unexpected" in older.stdout


def test_strict_validation_catches_an_unknown_field(
    baked: BakedProject, rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """The schemas work offline and strict mode bites: a misspelt field fails."""
    deployment = copy.deepcopy(one(rendered["staging"], "Deployment", baked.path.name))
    api_container(deployment["spec"]["template"])["readinessprobe"] = {}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment), encoding="utf-8")
    result = baked.run(
        str(TOOLS_BIN / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(broken)
    )
    assert result.returncode == 1
    assert "readinessprobe" in result.stdout


def test_make_k8s_validate_passes(baked: BakedProject, tmp_path: Path) -> None:
    shim = tmp_path / "uv"
    shim.write_text(UV_SHIM, encoding="utf-8")
    shim.chmod(0o755)
    result = baked.check("make", "--no-print-directory", "k8s-validate", f"UV={shim}")
    for overlay in OVERLAYS:
        for version in K8S_VERSIONS:
            assert re.search(
                rf"^build/k8s/{overlay}\.yaml: \d+ objects valid for Kubernetes {version}$",
                result.stdout,
                re.MULTILINE,
            ), result.stdout


def test_check_manifests_reports_broken_references(
    baked: BakedProject, answers: dict[str, Any], rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """deploy/k8s/check_manifests.py, which make k8s-validate runs, finds what schemas cannot."""
    docs = copy.deepcopy(rendered["production"])
    slug = baked.path.name
    one(docs, "Service", slug)["spec"]["ports"][0]["targetPort"] = "web"
    one(docs, "PodDisruptionBudget", slug)["spec"]["selector"]["matchLabels"]["track"] = "x"
    one(docs, "HorizontalPodAutoscaler", slug)["spec"]["scaleTargetRef"]["name"] = "other"
    expected = ["targetPort 'web'", "PodDisruptionBudget", "scales other"]
    if answers["monitoring"] == "prometheus":
        one(docs, "ServiceMonitor", slug)["spec"]["endpoints"][0]["port"] = "metrics"
        one(docs, "PrometheusRule", slug)["spec"]["groups"][0]["rules"].pop()
        expected += ["endpoint port 'metrics'", "differ from alerts.yml"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    result = baked.run(str(TOOLS_BIN / "python"), "deploy/k8s/check_manifests.py", str(broken))
    assert result.returncode == 1
    for fragment in expected:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_operator_objects_follow_the_monitoring_option(
    baked: BakedProject, answers: dict[str, Any], rendered: dict[str, list[Doc]]
) -> None:
    slug = baked.path.name
    kinds = {overlay: {doc["kind"] for doc in docs} for overlay, docs in rendered.items()}
    assert not kinds["canary"] & OPERATOR_KINDS
    if answers["monitoring"] == "none":
        for overlay, docs in rendered.items():
            assert not kinds[overlay] & OPERATOR_KINDS
            assert not any(doc["apiVersion"].startswith("monitoring.coreos.com") for doc in docs)
            cronjobs = sorted(doc["metadata"]["name"] for doc in of_kind(docs, "CronJob"))
            expected = {
                "canary": [],
                "staging": [f"{slug}-batch"],
            }.get(overlay, [f"{slug}-batch", f"{slug}-retrain"])
            if answers["feature_store"] == "feast" and overlay != "canary":
                expected = sorted([*expected, f"{slug}-materialize"])
            assert cronjobs == expected, "the drift command only exists with monitoring=prometheus"
        return
    for overlay in ("staging", "production", "blue-green"):
        docs = rendered[overlay]
        monitor = one(docs, "ServiceMonitor", slug)
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["selector"]["matchLabels"]
        # Every series scraped, and so every alert, carries the overlay's environment.
        environment = {"targetLabel": "environment", "replacement": NAMESPACE_OF[overlay]}
        assert monitor["spec"]["endpoints"] == [
            {
                "port": "http",
                "path": "/metrics",
                "interval": "15s",
                "scrapeTimeout": "10s",
                "relabelings": [environment],
            }
        ]
        assert monitor["metadata"]["namespace"] == f"{slug}-{NAMESPACE_OF[overlay]}"
        rule = one(docs, "PrometheusRule", slug)
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule["metadata"]["namespace"] == f"{slug}-{NAMESPACE_OF[overlay]}"
        groups = rule["spec"]["groups"]
        assert groups
        for group in groups:
            assert group["name"]
            assert group["rules"]
            for alert in group["rules"]:
                if "record" in alert:  # the live-performance recording rules
                    assert set(alert) <= {"record", "expr", "labels"}, alert
                    assert alert["expr"]
                    continue
                assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, alert
                assert alert["alert"]
                assert alert["expr"]
                assert alert["labels"]["severity"] in {"critical", "warning"}
        assert one(docs, "CronJob", f"{slug}-drift")


def without_annotations(groups: list[Doc]) -> list[Doc]:
    """The rule groups but the rules' annotations (the PrometheusRule's name kubectl)."""
    return [
        {
            **group,
            "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in group["rules"]],
        }
        for group in groups
    ]


def annotations_of(groups: list[Doc]) -> dict[str, dict[str, str]]:
    return {
        r["alert"]: r["annotations"] for group in groups for r in group["rules"] if "alert" in r
    }


def test_prometheus_rule_mirrors_the_alerts_file(
    baked: BakedProject, rendered: dict[str, list[Doc]]
) -> None:
    """Whenever both exist, the PrometheusRule carries monitoring/prometheus/alerts.yml, its
    runbook commands for Kubernetes: kubectl in the alert's namespace, no docker."""
    rule_file = "deploy/k8s/components/monitoring/prometheusrule.yaml"
    alerts_file = "monitoring/prometheus/alerts.yml"
    if not (baked.has_file(rule_file) and baked.has_file(alerts_file)):
        pytest.skip("monitoring=none renders neither")
    (alerts,) = baked.load(alerts_file)
    (rule,) = baked.load(rule_file)
    assert list(rule["spec"]) == ["groups"]
    assert without_annotations(rule["spec"]["groups"]) == without_annotations(alerts["groups"])
    logs = f"kubectl -n {{{{ $labels.namespace }}}} logs deploy/{baked.path.name}"
    for overlay in ("staging", "production", "blue-green"):
        groups = one(rendered[overlay], "PrometheusRule", baked.path.name)["spec"]["groups"]
        assert groups == rule["spec"]["groups"]
        annotations = annotations_of(groups)
        assert annotations.keys() == annotations_of(alerts["groups"]).keys()
        for alert, texts in annotations.items():
            assert not any("docker" in text for text in texts.values()), alert
        for alert in ("ApiDown", "ModelNotReady", "HighErrorRate"):
            assert logs in " ".join(annotations[alert]["description"].split()), alert


def test_prometheus_rule_passes_promtool(
    baked: BakedProject, rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """The PrometheusRule's groups as Prometheus loads them: its kubectl templates expand."""
    if not baked.has_file("deploy/k8s/components/monitoring/prometheusrule.yaml"):
        pytest.skip("monitoring=none renders no PrometheusRule")
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is needed (apt-get install prometheus)")
    rules = tmp_path / "rules.yml"
    spec = one(rendered["production"], "PrometheusRule", baked.path.name)["spec"]
    rules.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = baked.run(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_monitoring_objects_carry_the_release_label(
    baked: BakedProject, answers: dict[str, Any], rendered: dict[str, list[Doc]]
) -> None:
    """kube-prometheus-stack selects both by `release`, set in one place, and only them."""
    if answers["monitoring"] == "none":
        pytest.skip("monitoring=none renders no operator object")
    component = "deploy/k8s/components/monitoring"
    assert baked.read(f"{component}/kustomization.yaml").count("value: kube-prometheus-stack") == 1
    for name in ("servicemonitor.yaml", "prometheusrule.yaml"):
        (doc,) = baked.load(f"{component}/{name}")
        assert "release" not in doc["metadata"]["labels"], f"{name}: set in kustomization.yaml"
    for overlay in ("staging", "production", "blue-green"):
        for doc in rendered[overlay]:
            release = doc["metadata"].get("labels", {}).get("release")
            expected = "kube-prometheus-stack" if doc["kind"] in OPERATOR_KINDS else None
            assert release == expected, (overlay, doc["kind"])


def test_every_pod_spec_is_restricted(rendered: dict[str, list[Doc]]) -> None:
    """Pod Security Standards "restricted", the image's UID/GID, no token, requests and limits."""
    for overlay, docs in rendered.items():
        templates = list(pod_templates(docs))
        assert templates, overlay
        for owner, template in templates:
            where = f"{overlay}: {owner['kind']}/{owner['metadata']['name']}"
            spec = template["spec"]
            assert spec["securityContext"] == {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            }, where
            assert spec["automountServiceAccountToken"] is False, where
            assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec), where
            volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
            for volume in volumes.values():
                assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, where
            containers = spec["containers"] + spec.get("initContainers", [])
            for container in containers:
                assert container["securityContext"] == {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                }, where
                assert all("hostPort" not in port for port in container.get("ports", [])), where
                resources = container["resources"]
                for bound in ("requests", "limits"):
                    assert set(resources[bound]) == {"cpu", "memory"}, where
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be writable"
                for name in mounts.values():
                    assert "emptyDir" in volumes[name], f"{where}: {name} is not scratch space"


def test_api_pods_probe_health_and_listen_where_the_server_does(
    baked: BakedProject, rendered: dict[str, list[Doc]]
) -> None:
    port = serve_port(baked)
    for overlay, docs in rendered.items():
        for deployment in of_kind(docs, "Deployment"):
            template = deployment["spec"]["template"]
            container = api_container(template)
            (http,) = container["ports"]
            assert http == {"name": "http", "containerPort": port, "protocol": "TCP"}
            env = {item["name"]: item["value"] for item in container["env"]}
            assert env == {
                "HOST": "0.0.0.0",
                "PORT": str(port),
                "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus",
                "PREDICTION_LOG_DIR": "-",  # stdout: no volume to fill
                **FEAST_ENV.get(baked.answers.get("feature_store", "none"), {}),
            }
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in template["spec"]["volumes"]}
            assert "emptyDir" in volumes[mounts[env["PROMETHEUS_MULTIPROC_DIR"]]]
            probes = {
                kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
                for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            }
            assert probes == {
                "startupProbe": ("/health/ready", "http"),
                "readinessProbe": ("/health/ready", "http"),
                "livenessProbe": ("/health/live", "http"),
            }, overlay
            startup = container["startupProbe"]
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "model load"
            assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
            assert "replicas" not in deployment["spec"] or deployment["metadata"]["name"].endswith(
                "-canary"
            ), "the autoscaler owns the stable Deployment's replicas"
            for constraint in template["spec"]["topologySpreadConstraints"]:
                assert selects(constraint["labelSelector"], labels_of(template)), overlay
            own_pods = deployment["spec"]["selector"]
            assert selects(own_pods, labels_of(template))


def test_selectors_and_ports_match(baked: BakedProject, rendered: dict[str, list[Doc]]) -> None:
    slug = baked.path.name
    stable_template = one(rendered["production"], "Deployment", slug)["spec"]["template"]
    canary_template = one(rendered["canary"], "Deployment", f"{slug}-canary")["spec"]["template"]
    for overlay in ("staging", "production"):
        docs = rendered[overlay]
        templates = [template for _, template in pod_templates(docs)]
        api = [labels_of(t) for t in templates if labels_of(t).get("track")]
        jobs = [labels_of(t) for t in templates if not labels_of(t).get("track")]
        assert len(api) == 1
        assert jobs

        def selected(selector: Mapping[str, Any], docs: list[Doc] = docs) -> list[dict[str, str]]:
            return [labels_of(t) for _, t in pod_templates(docs) if selects(selector, labels_of(t))]

        service = one(docs, "Service", slug)
        assert selected({"matchLabels": service["spec"]["selector"]}) == api
        assert selects({"matchLabels": service["spec"]["selector"]}, labels_of(canary_template))
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
        ]
        pdb = one(docs, "PodDisruptionBudget", slug)
        assert selected(pdb["spec"]["selector"]) == api
        hpa = one(docs, "HorizontalPodAutoscaler", slug)
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"], target["name"]) == (
            "apps/v1",
            "Deployment",
            slug,
        )
        assert one(docs, "Deployment", slug)
        api_policy = one(docs, "NetworkPolicy", slug)
        assert selected(api_policy["spec"]["podSelector"]) == api
        assert api_policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
        jobs_policy = one(docs, "NetworkPolicy", f"{slug}-jobs")
        assert selected(jobs_policy["spec"]["podSelector"]) == jobs
        assert "ingress" not in jobs_policy["spec"]
        assert jobs_policy["spec"]["policyTypes"] == ["Ingress"]
        for monitor in of_kind(docs, "ServiceMonitor"):
            assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
            ports = {port["name"] for port in service["spec"]["ports"]}
            assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
            assert monitor["spec"]["podTargetLabels"] == ["track"]
        for service_account in of_kind(docs, "ServiceAccount"):
            assert service_account["automountServiceAccountToken"] is False
        for _, template in pod_templates(docs):
            assert template["spec"]["serviceAccountName"] == slug
    # Stable and canary pods belong to one Deployment each.
    stable = one(rendered["production"], "Deployment", slug)["spec"]["selector"]
    canary = one(rendered["canary"], "Deployment", f"{slug}-canary")["spec"]["selector"]
    assert not selects(stable, labels_of(canary_template))
    assert not selects(canary, labels_of(stable_template))


def test_overlays_set_their_environment(
    baked: BakedProject, answers: dict[str, Any], rendered: dict[str, list[Doc]]
) -> None:
    slug = baked.path.name
    image = f"ghcr.io/{answers['github_owner'].lower()}/{slug}"
    uri = answers["mlflow_tracking_uri"]
    in_cluster = "http://mlflow.mlflow.svc.cluster.local:5000"
    expected_uri = in_cluster if uri.startswith("sqlite") else uri
    bounds = {"staging": (1, 2), "production": (3, 10), "blue-green": (3, 10)}
    workers = {"staging": "1", "production": "2", "canary": "2", "blue-green": "2"}
    for overlay, docs in rendered.items():
        namespace = f"{slug}-{NAMESPACE_OF[overlay]}"
        for doc in docs:
            assert doc["metadata"].get("namespace", doc["metadata"]["name"]) == namespace
        (config,) = of_kind(docs, "ConfigMap")
        assert config["data"]["MLFLOW_TRACKING_URI"] == expected_uri
        assert config["data"]["MODEL_NAME"] == slug
        assert config["data"]["WORKERS"] == workers[overlay]
        for owner, template in pod_templates(docs):
            container = template["spec"]["containers"][0]
            train = owner["kind"] == "CronJob"
            assert container["image"] == f"{image}{'-train' if train else ''}:0.1.0"
            refs = [ref.get("configMapRef", ref.get("secretRef")) for ref in container["envFrom"]]
            assert refs[0] == {"name": config["metadata"]["name"]}
            name = owner["metadata"]["name"]
            if name == f"{slug}-materialize":
                # storage keys as the retraining gets them, then the feature store's Secret
                secrets = [f"{slug}-dvc", f"{slug}-feature-store"]
                assert refs[1:] == [{"name": secret, "optional": True} for secret in secrets]
                continue
            # the jobs talk to MLflow and storage; the API serves its baked-in model
            secrets = [f"{slug}-mlflow", f"{slug}-dvc"] if train else []
            # the servers and the retraining read the prediction store
            if not train or name == f"{slug}-retrain":
                secrets.append(f"{slug}-prediction-store")
            expected = [{"name": secret, "optional": True} for secret in secrets]
            if not train and answers["feature_store"] == "feast":
                expected.append({"name": f"{slug}-feature-store"})  # required: no Redis, no pod
            assert refs[1:] == expected
        if overlay == "canary":
            assert {doc["kind"] for doc in docs} == {"Deployment", "ConfigMap"}
            continue
        (namespace_doc,) = of_kind(docs, "Namespace")
        assert namespace_doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
            "restricted"
        )
        hpas = of_kind(docs, "HorizontalPodAutoscaler")
        assert len(hpas) == len(of_kind(docs, "Deployment")), "one autoscaler per Deployment"
        for hpa in (doc["spec"] for doc in hpas):
            assert (hpa["minReplicas"], hpa["maxReplicas"]) == bounds[overlay]
            (metric,) = hpa["metrics"]
            assert metric["resource"]["name"] == "cpu"


def test_canary_is_production_but_for_image_and_track(
    baked: BakedProject, rendered: dict[str, list[Doc]]
) -> None:
    slug = baked.path.name
    production = copy.deepcopy(one(rendered["production"], "Deployment", slug))
    canary = copy.deepcopy(one(rendered["canary"], "Deployment", f"{slug}-canary"))
    assert canary["spec"].pop("replicas") == 1
    for deployment, track in ((production, "stable"), (canary, "canary")):
        template = deployment["spec"]["template"]
        assert template["metadata"]["labels"].pop("track") == track
        assert deployment["spec"]["selector"]["matchLabels"].pop("track") == track
        for constraint in template["spec"]["topologySpreadConstraints"]:
            constraint["labelSelector"]["matchLabels"].pop("track", None)
        container = api_container(template)
        container["envFrom"][0]["configMapRef"]["name"] = "config"
        container.pop("image")
        deployment.pop("metadata")
    assert canary == production
    production_config = dict(of_kind(rendered["production"], "ConfigMap")[0]["data"])
    jobs_settings = (
        "DRIFT_CURRENT_URL",
        "DRIFT_PUSHGATEWAY_URL",
        "BATCH_INPUT_URL",
        "BATCH_OUTPUT_URL",
    )
    for job_setting in jobs_settings:
        production_config.pop(job_setting, None)  # the jobs', not the API's
    assert of_kind(rendered["canary"], "ConfigMap")[0]["data"] == production_config


def test_jobs_run_the_pipeline_batch_scoring_and_the_drift_check(
    baked: BakedProject, answers: dict[str, Any], rendered: dict[str, list[Doc]]
) -> None:
    slug = baked.path.name
    # retraining: in production only (one schedule racing for @champion, not two)
    assert not [job for job in of_kind(rendered["staging"], "CronJob") if "retrain" in str(job)]
    retrain = one(rendered["production"], "CronJob", f"{slug}-retrain")
    job = retrain["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    assert job["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ]
    steps = job["template"]["spec"]["containers"][0]["args"][0]
    assert "\ndvc pull\n" in steps, "every file dvc.lock names, strictly"
    assert "--allow-missing" not in steps
    order = ["dvc pull", " collect;", "\ndvc repro\n", "\ndvc push\n", "log_artifact"]
    assert [steps.index(step) for step in order] == sorted(steps.index(step) for step in order)
    for overlay in ("staging", "production"):
        docs = rendered[overlay]
        for cronjob in of_kind(docs, "CronJob"):
            spec = cronjob["spec"]
            assert spec["concurrencyPolicy"] == "Forbid"
            assert spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
            assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
        batch = one(docs, "CronJob", f"{slug}-batch")["spec"]["jobTemplate"]["spec"]
        script = batch["template"]["spec"]["containers"][0]["args"][0]
        assert (
            f'exec {slug} predict --input "$BATCH_INPUT_URL" --output "$BATCH_OUTPUT_URL" '
            "--alias champion" in script
        )
        (rule,) = batch["podFailurePolicy"]["rules"]
        assert rule["onExitCodes"]["values"] == [1, 2], "rejected rows and bad input: no retry"
        (config,) = of_kind(docs, "ConfigMap")
        assert {"BATCH_INPUT_URL", "BATCH_OUTPUT_URL"} <= set(config["data"])
        if answers["monitoring"] == "prometheus":
            cronjob = one(docs, "CronJob", f"{slug}-drift")["spec"]
            assert cronjob["suspend"] is True, "suspended until DRIFT_CURRENT_URL is set"
            drift = cronjob["jobTemplate"]["spec"]
            script = drift["template"]["spec"]["containers"][0]["args"][0]
            assert f"{slug} drift --current current.csv --alias champion" in script
            assert f"python -m {baked.module}.monitoring.publish" in script
            fail, ignore = drift["podFailurePolicy"]["rules"]
            assert fail["action"] == "FailJob"
            # drift and a problem to fix end the Job; 3, could not check, is retried
            assert fail["onExitCodes"]["values"] == [1, 2]
            assert ignore == {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            }


def test_materialize_job_fills_the_online_store_the_api_reads(
    baked: BakedProject, answers: dict[str, Any], rendered: dict[str, list[Doc]]
) -> None:
    """feature_store=feast: in every namespace with an API of its own, a CronJob of the train
    image applies the definitions, then materializes, with the production settings and the
    Secret <slug>-feature-store, which the API reads too; none without feast."""
    slug = baked.path.name
    settings = "feature_repo/feature_store.production.yaml"
    if answers["feature_store"] != "feast":
        for docs in rendered.values():
            assert not [doc for doc in docs if "materialize" in doc["metadata"]["name"]]
            assert "feature-store" not in yaml.safe_dump_all(docs)
        assert not baked.has_file("deploy/k8s/base/materialize-cronjob.yaml")
        assert "materialize" not in baked.read("deploy/k8s/base/kustomization.yaml")
        return
    image = f"ghcr.io/{answers['github_owner'].lower()}/{slug}-train:0.1.0"
    assert baked.has_file(settings)
    for overlay in ("staging", "production", "blue-green"):
        docs = rendered[overlay]
        cronjob = one(docs, "CronJob", f"{slug}-materialize")
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        job = cronjob["spec"]["jobTemplate"]["spec"]
        pod = job["template"]
        assert labels_of(pod)["app.kubernetes.io/component"] == "materialize"
        (container,) = pod["spec"]["containers"]
        assert container["name"] == "materialize"
        assert container["image"] == image, "the train image: the project and feast's CLI"
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["FEATURE_STORE_YAML"] == settings
        secrets = [ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref]
        assert secrets == [f"{slug}-dvc", f"{slug}-feature-store"], "the Secret's keys win"
        script = container["args"][0]
        for key in ("REDIS_CONNECTION_STRING", "FEATURE_REGISTRY_URL", "FEATURE_SOURCE_URL"):
            assert key in script, f"{key} is checked before anything runs"
        apply = 'feast -c feature_repo -f "$FEATURE_STORE_YAML" apply'
        materialize = f"exec {slug} materialize"
        assert apply in script
        assert materialize in script
        assert script.index("exit 2") < script.index(apply) < script.index(materialize)
        # a setting to fix ends the Job; an outage is retried; a drain is no try
        fail, ignore = job["podFailurePolicy"]["rules"]
        assert fail["action"] == "FailJob"
        assert fail["onExitCodes"] == {
            "containerName": "materialize",
            "operator": "In",
            "values": [2],
        }
        assert ignore == {
            "action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
        }
        assert job["backoffLimit"] == 2
        jobs_policy = one(docs, "NetworkPolicy", f"{slug}-jobs")
        assert selects(jobs_policy["spec"]["podSelector"], labels_of(pod))
        # the API reads the same Secret (required) with the same settings
        for deployment in of_kind(docs, "Deployment"):
            api = api_container(deployment["spec"]["template"])
            assert {"name": "FEATURE_STORE_YAML", "value": settings} in api["env"]
            assert {"secretRef": {"name": f"{slug}-feature-store"}} in api["envFrom"]
    assert not of_kind(rendered["canary"], "CronJob")
    (settings_doc,) = baked.load(settings)
    assert settings_doc["registry"] == "${FEATURE_REGISTRY_URL}"
    assert settings_doc["online_store"] == {
        "type": "redis",
        "connection_string": "${REDIS_CONNECTION_STRING}",
    }
    assert settings_doc["provider"] == "local"
    assert settings_doc["offline_store"] == {"type": "file"}
    assert settings_doc["entity_key_serialization_version"] == 3
    local = "feature_repo/feature_store.yaml"
    if baked.has_file(local):  # one project: the local and production settings share it
        (local_doc,) = baked.load(local)
        assert settings_doc["project"] == local_doc["project"]
    section = kubernetes_section(baked)
    assert f"create secret generic {slug}-feature-store" in section
    for key in ("REDIS_CONNECTION_STRING", "FEATURE_REGISTRY_URL", "FEATURE_SOURCE_URL"):
        assert f"--from-literal={key}=" in section
        assert f"- `{key}`:" in section


def kubernetes_section(baked: BakedProject) -> str:
    """The README's Kubernetes section, on one line."""
    readme = baked.read("README.md")
    section = readme.split("\n## Kubernetes\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(section.split())


def test_the_api_gets_no_mlflow_credentials(
    baked: BakedProject, rendered: dict[str, list[Doc]]
) -> None:
    """The serve image has no MLflow and serves its baked-in model: tracking credentials
    and artifact store keys would only widen what a compromised API pod could reach."""
    slug = baked.path.name
    for overlay, docs in rendered.items():
        deployments = of_kind(docs, "Deployment")
        assert deployments, overlay
        for deployment in deployments:
            container = api_container(deployment["spec"]["template"])
            refs = container["envFrom"]
            secrets = [ref["secretRef"]["name"] for ref in refs if "secretRef" in ref]
            feast = baked.answers.get("feature_store") == "feast"
            expected = [f"{slug}-prediction-store"] + ([f"{slug}-feature-store"] if feast else [])
            assert secrets == expected, (overlay, secrets)
            assert not [v for v in container.get("env", []) if "valueFrom" in v], overlay
    section = kubernetes_section(baked)
    assert f"`{slug}-mlflow` goes to the jobs" in section
    assert "The API gets neither" in section


def test_pods_pull_with_the_optional_registry_secret(
    baked: BakedProject, rendered: dict[str, list[Doc]]
) -> None:
    """One optional pull secret for private images, through the ServiceAccount every pod
    runs as: a missing Secret does not stop public images (the kubelet pulls anonymously)."""
    slug = baked.path.name
    for overlay, docs in rendered.items():
        accounts = of_kind(docs, "ServiceAccount")
        # the canary's pods run in production's namespace, as production's ServiceAccount
        assert len(accounts) == (0 if overlay == "canary" else 1), overlay
        for account in accounts:
            assert account["metadata"]["name"] == slug
            assert account["imagePullSecrets"] == [{"name": f"{slug}-registry"}]
        for _, template in pod_templates(docs):
            assert template["spec"]["serviceAccountName"] == slug
            assert "imagePullSecrets" not in template["spec"], "the ServiceAccount's apply"
    section = kubernetes_section(baked)
    assert f"create secret docker-registry {slug}-registry" in section
    assert "--docker-server=ghcr.io" in section
    assert "read:packages" in section
    assert "public images run" in section


def test_readme_states_the_cluster_requirements(baked: BakedProject) -> None:
    section = kubernetes_section(baked)
    assert "**Requirements.**" in section
    assert "*metrics-server*" in section
    assert "HorizontalPodAutoscaler" in section
    assert "*Cluster-scoped rights for the deploy credential*" in section
    assert "`namespaces`" in section
    assert "*`kubectl delete -k` deletes the Namespace*" in section
    assert "the Secrets you created by hand included" in section
    assert "preStop" in section
    # the registry-backed server is not offered on the cluster
    assert "never reads the registry" in section
    for path in ("deploy/k8s/base/networkpolicy.yaml", "deploy/k8s/base/api/deployment.yaml"):
        assert "registry-backed" not in baked.read(path), path


def test_names_fit_kubernetes_limits(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        for doc in docs:
            name, kind = doc["metadata"]["name"], doc["kind"]
            assert len(name) <= 253, name
            assert DNS_SUBDOMAIN.fullmatch(name), name
            if kind in {"Service", "Namespace"}:
                assert len(name) <= 63, name
                assert (DNS_1035_LABEL if kind == "Service" else DNS_LABEL).fullmatch(name), name
            if kind == "CronJob":
                assert len(name) <= 52, f"{name}: its Jobs' names must stay within 63"
            labelled = [doc, *(template for owner, template in pod_templates([doc]))]
            for item in labelled:
                for value in item["metadata"].get("labels", {}).values():
                    assert len(value) <= 63, value
                    assert LABEL_VALUE.fullmatch(value), value


# --- blue-green ---------------------------------------------------------------------------


def keyed(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def without_color(value: Any, color: str, slug: str) -> Any:
    """`value` with the colour taken out: no `color: <color>` label, <slug>-<color> named <slug>."""
    if isinstance(value, dict):
        return {
            key: without_color(item, color, slug)
            for key, item in value.items()
            if (key, item) != ("color", color)
        }
    if isinstance(value, list):
        return [without_color(item, color, slug) for item in value]
    return slug if value == f"{slug}-{color}" else value


def test_blue_green_is_production_with_its_api_in_two_colors(
    baked: BakedProject, rendered: dict[str, list[Doc]]
) -> None:
    """Production's objects, but its Deployment, autoscaler and disruption budget twice."""
    slug = baked.path.name
    production, blue_green = keyed(rendered["production"]), keyed(rendered["blue-green"])
    per_color = ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget")
    shared = {key for key in production if key[0] not in per_color}
    assert set(blue_green) == shared | {
        (kind, f"{slug}-{color}") for kind in per_color for color in COLORS
    }
    for key in shared - {("Service", slug), ("ServiceMonitor", slug)}:
        assert blue_green[key] == production[key], key
    service = copy.deepcopy(blue_green[("Service", slug)])
    assert service["spec"]["selector"].pop("color") == "blue"
    assert service == production[("Service", slug)]
    if ("ServiceMonitor", slug) in production:
        monitor = copy.deepcopy(blue_green[("ServiceMonitor", slug)])
        assert monitor["spec"]["podTargetLabels"] == ["track", "color"]
        monitor["spec"]["podTargetLabels"].remove("color")
        assert monitor == production[("ServiceMonitor", slug)]
    for color in COLORS:
        for kind in per_color:
            colored = blue_green[(kind, f"{slug}-{color}")]
            assert colored["metadata"]["labels"]["color"] == color
            assert without_color(colored, color, slug) == production[(kind, slug)], (kind, color)


def test_blue_green_selectors_pick_one_color(
    baked: BakedProject, rendered: dict[str, list[Doc]]
) -> None:
    slug = baked.path.name
    docs = rendered["blue-green"]
    templates = {
        owner["metadata"]["name"]: labels_of(template)
        for owner, template in pod_templates(docs)
        if owner["kind"] == "Deployment"
    }
    assert {name: labels["color"] for name, labels in templates.items()} == {
        f"{slug}-{color}": color for color in COLORS
    }

    def selected(selector: Mapping[str, Any]) -> list[str]:
        return [name for name, labels in templates.items() if selects(selector, labels)]

    service = one(docs, "Service", slug)
    assert selected({"matchLabels": service["spec"]["selector"]}) == [f"{slug}-blue"]
    assert selected(one(docs, "NetworkPolicy", slug)["spec"]["podSelector"]) == list(templates)
    for color in COLORS:
        name = f"{slug}-{color}"
        assert selected(one(docs, "Deployment", name)["spec"]["selector"]) == [name]
        assert selected(one(docs, "PodDisruptionBudget", name)["spec"]["selector"]) == [name]
        target = one(docs, "HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)


@pytest.fixture
def copied(baked: BakedProject, tmp_path: Path) -> BakedProject:
    """A copy of the project that a test may edit (the module's other tests share `baked`)."""
    shutil.copytree(baked.path, tmp_path / baked.path.name, symlinks=True)
    return BakedProject(tmp_path / baked.path.name, baked.answers)


def project_files(project: BakedProject) -> dict[str, bytes]:
    return {
        name: (project.path / name).read_bytes()
        for name in project.files()
        if not name.startswith("build/")
    }


def test_make_k8s_switch_changes_the_service_selector_only(copied: BakedProject) -> None:
    slug = copied.path.name
    overlay = "deploy/k8s/overlays/blue-green"
    files = project_files(copied)
    before = copied.check("kubectl", "kustomize", overlay).stdout

    switched = copied.check("make", "--no-print-directory", "k8s-switch", "COLOR=green")
    assert switched.stdout.splitlines()[-1].strip() == f"kubectl apply -k {overlay}"
    assert "commit" in switched.stdout.lower()
    changed = project_files(copied)
    assert {name for name in files if files[name] != changed[name]} == {LIVE_FILE}
    assert set(changed) == set(files)
    after = copied.check("kubectl", "kustomize", overlay).stdout
    old, new = (keyed([doc for doc in yaml.safe_load_all(text) if doc]) for text in (before, after))
    assert set(new) == set(old)
    assert [key for key in old if old[key] != new[key]] == [("Service", slug)]
    selector = new[("Service", slug)]["spec"]["selector"]
    assert (old[("Service", slug)]["spec"]["selector"]["color"], selector["color"]) == (
        "blue",
        "green",
    )
    service = copy.deepcopy(new[("Service", slug)])
    service["spec"]["selector"]["color"] = "blue"
    assert service == old[("Service", slug)]
    green = one(list(new.values()), "Deployment", f"{slug}-green")["spec"]["template"]
    assert selects({"matchLabels": selector}, labels_of(green))

    again = copied.check("make", "--no-print-directory", "k8s-switch", "COLOR=green")
    assert "already" in again.stdout
    assert project_files(copied) == changed

    copied.check("make", "--no-print-directory", "k8s-switch", "COLOR=blue")
    assert project_files(copied) == files
    assert copied.check("kubectl", "kustomize", overlay).stdout == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["COLOR=purple"], "COLOR=purple"),
        (["COLOR=Green"], "COLOR=Green"),
        (["COLOR=blue green"], "COLOR=blue green"),
        (["COLOR=green; touch pwned"], "COLOR=green; touch pwned"),
        (["COLOR="], "COLOR is not set"),
        ([], "COLOR is not set"),
    ],
)
def test_make_k8s_switch_refuses_a_bad_color(
    copied: BakedProject, arguments: list[str], message: str
) -> None:
    files = project_files(copied)
    result = copied.run("make", "k8s-switch", *arguments, env={"COLOR": ""})
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "COLOR=blue or COLOR=green" in result.stderr
    assert project_files(copied) == files


def test_blue_green_releases_to_the_idle_color(copied: BakedProject, tmp_path: Path) -> None:
    """k8s-release ENV=blue-green: IMAGE:TAG to the idle colour, the live one left out."""
    slug, image = copied.path.name, "ghcr.io/acme-corp/some-repo"
    env = stand_in_kubectl(tmp_path)
    log, applied = Path(env["KUBECTL_LOG"]), Path(env["KUBECTL_APPLIED"])
    namespace = f"{slug}-production"
    for live, idle in (("blue", "green"), ("green", "blue")):
        log.unlink(missing_ok=True)
        release = copied.check(
            "make", "k8s-release", "ENV=blue-green", f"IMAGE={image}", "TAG=0123abc", env=env
        )
        assert log.read_text("utf-8").splitlines() == [
            f"apply -k build/k8s/release-blue-green -l color!={live}",
            f"-n {namespace} rollout status deployment/{slug}-{idle} --timeout=10m",
        ]
        assert f"make k8s-switch COLOR={idle}" in release.stdout
        docs = keyed([doc for doc in yaml.safe_load_all(applied.read_text("utf-8")) if doc])
        for color, expected in ((idle, f"{image}:0123abc"), (live, f"{slug}:0.1.0")):
            template = docs[("Deployment", f"{slug}-{color}")]["spec"]["template"]
            assert api_container(template)["image"].endswith(expected), color
        # what `-l color!=<live>` lets through: everything but the live colour's objects
        left_out = [
            key
            for key, doc in docs.items()
            if doc["metadata"].get("labels", {}).get("color") == live
        ]
        assert sorted(left_out) == sorted(
            (kind, f"{slug}-{live}")
            for kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget")
        )
        log.unlink()
        rollback = copied.run("make", "k8s-rollback", "ENV=blue-green", env=env)
        assert rollback.returncode == 2
        assert f"make k8s-switch COLOR={idle}" in rollback.stderr
        assert not log.exists(), "nothing was rolled back"
        copied.check("make", "k8s-switch", f"COLOR={idle}")
