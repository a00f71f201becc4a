"""Check rendered manifests before a cluster sees them (`make k8s-validate`).

- Every object against the Kubernetes API's schemas of one version, strictly: an unknown
  or misspelt field is an error, as is a kind that version does not have.
- The Prometheus Operator's ServiceMonitor and PrometheusRule, whose schemas are CRDs on
  the cluster: their required fields, and alert rules equal to monitoring/prometheus/alerts.yml
  but for their annotations.
- Selectors: the Service, PodDisruptionBudget, NetworkPolicies and ServiceMonitor select
  pods (or the Service) that exist, the autoscaler scales a Deployment that exists, and
  the port names agree from the ServiceMonitor to the container.

    python deploy/k8s/check_manifests.py --kubernetes-version 1.32.0 build/k8s/*.yaml

Needs pyyaml and kubernetes-validate: `uv run --no-project --with kubernetes-validate …`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

Doc = dict[str, Any]
OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
ALERTS = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus" / "alerts.yml"


def name_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def check_schema(doc: Doc, version: str) -> Iterator[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        yield f"{name_of(doc)}: {where}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError:
        kind = f"{doc.get('apiVersion')} {doc.get('kind')}"
        yield f"{name_of(doc)}: Kubernetes {version} has no {kind}"


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a set of labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = (
            expression["key"],
            expression["operator"],
            expression.get("values", []),
        )
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_templates(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(owner, pod template) of every Deployment and CronJob."""
    for doc in docs:
        if doc["kind"] == "Deployment":
            yield doc, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]


def check_service_monitor(doc: Doc, docs: list[Doc]) -> Iterator[str]:
    spec = doc.get("spec") or {}
    endpoints = spec.get("endpoints") or []
    if "selector" not in spec:
        yield f"{name_of(doc)}: spec.selector is required"
        return
    if not endpoints:
        yield f"{name_of(doc)}: spec.endpoints lists nothing to scrape"
    services = [
        s
        for s in docs
        if s["kind"] == "Service" and matches(spec["selector"], s["metadata"].get("labels", {}))
    ]
    if not services:
        yield f"{name_of(doc)}: spec.selector matches no Service's labels"
    for endpoint in endpoints:
        port = endpoint.get("port")
        for service in services:
            if port not in {named.get("name") for named in service["spec"]["ports"]}:
                yield f"{name_of(doc)}: endpoint port {port!r} is not a port of {name_of(service)}"


def check_prometheus_rule(doc: Doc) -> Iterator[str]:
    groups = (doc.get("spec") or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        yield f"{name_of(doc)}: spec.groups is required"
        return
    for group in groups:
        if not group.get("name"):
            yield f"{name_of(doc)}: a group has no name"
        for rule in group.get("rules") or []:
            if "expr" not in rule or ("alert" in rule) == ("record" in rule):
                yield f"{name_of(doc)}: rule {rule} needs expr and one of alert or record"
    if ALERTS.is_file():
        alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
        if without_annotations(alerts) != without_annotations(groups):
            yield f"{name_of(doc)}: spec.groups differ from {ALERTS.name}: copy the groups over"


def without_annotations(groups: list[Doc]) -> list[Doc]:
    """The rule groups but their annotations (the PrometheusRule's name kubectl commands)."""
    return [
        {
            **group,
            "rules": [
                {k: v for k, v in rule.items() if k != "annotations"}
                for rule in group.get("rules") or []
            ],
        }
        for group in groups
    ]


def port_names(template: Doc) -> set[str]:
    containers = template["spec"]["containers"]
    return {port.get("name") for container in containers for port in container.get("ports", [])}


def check_selectors(docs: list[Doc]) -> Iterator[str]:
    templates = [template for _, template in pod_templates(docs)]
    deployments = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Deployment"}

    def selected(selector: Mapping[str, Any]) -> list[Doc]:
        return [t for t in templates if matches(selector, t["metadata"].get("labels", {}))]

    for doc in docs:
        kind, spec = doc["kind"], doc.get("spec") or {}
        if kind == "Service":
            pods = selected({"matchLabels": spec.get("selector", {})})
            if not pods:
                yield f"{name_of(doc)}: spec.selector matches no pod"
            for port in spec.get("ports", []):
                target = port.get("targetPort")
                if isinstance(target, str) and any(target not in port_names(p) for p in pods):
                    yield f"{name_of(doc)}: targetPort {target!r} is not a port of its pods"
        elif kind == "PodDisruptionBudget" and not selected(spec.get("selector") or {}):
            yield f"{name_of(doc)}: spec.selector matches no pod"
        elif kind == "NetworkPolicy" and not selected(spec.get("podSelector") or {}):
            yield f"{name_of(doc)}: spec.podSelector matches no pod"
        elif (
            kind == "HorizontalPodAutoscaler" and spec["scaleTargetRef"]["name"] not in deployments
        ):
            yield f"{name_of(doc)}: scales {spec['scaleTargetRef']['name']}, no Deployment here"


def check(docs: list[Doc], version: str) -> Iterator[str]:
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) not in OPERATOR_KINDS:
            yield from check_schema(doc, version)
        elif doc["kind"] == "ServiceMonitor":
            yield from check_service_monitor(doc, docs)
        else:
            yield from check_prometheus_rule(doc)
    yield from check_selectors(docs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", default="1.32.0")
    parser.add_argument(
        "files", nargs="+", type=Path, help="rendered manifests (kubectl kustomize)"
    )
    args = parser.parse_args(argv)
    failed = False
    for path in args.files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
        problems = list(check(docs, args.kubernetes_version))
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
        if not problems:
            print(f"{path}: {len(docs)} objects valid for Kubernetes {args.kubernetes_version}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
