"""A render without an optional part does not describe it.

The post-gen hook removes each part's files (hooks/post_gen_project.py); the files every
render keeps must then not name them: no `.github/workflows/` in the Makefile, no drift
check in the Dockerfile, no `make/compose.mk` in a project without it.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

import pytest
from baked import TEMPLATE_DIR, BakedProject, template_defaults
from conftest import bake_project

# The files every render has, where the optional parts are described (make/*.mk: those
# the render has).
DESCRIBING = [
    "README.md",
    "Makefile",
    "Dockerfile",
    "pyproject.toml",
    ".env.example",
    ".dockerignore",
]


class Part(NamedTuple):
    option: str
    kept_by: str  # the value of the option that renders the part; any other removes it
    path: str  # a path of its files (the hook's remove_* functions)
    names: list[str]  # what names the part, matched ignoring case


# Bare "prometheus" is not here: every server exports /metrics through prometheus-client
# (test_prometheus_client_is_not_the_monitoring_part), monitoring or not.
PARTS = {
    "ci": Part(
        "ci",
        "github",
        ".github",
        [
            r"\.github\b",
            r"\bworkflows?\b",
            r"github actions",
            r"dependabot",
            r"trivy",
            r"\b(ci|train|deploy|drift)\.yml\b",
        ],
    ),
    "deploy": Part(
        "deploy",
        "kubernetes",
        "deploy",
        [r"kubernetes", r"\bdeploy/", r"kustomiz", r"kubectl", r"\bk8s\b", r"cronjob"],
    ),
    "monitoring": Part(
        "monitoring",
        "prometheus",
        "monitoring",
        [
            r"monitoring",
            r"grafana",
            r"alertmanager",
            r"promtool",
            r"amtool",
            r"prometheus\.yml",
            r"prometheus operator",
            r"servicemonitor",
            r"prometheusrule",
            r"drift",
        ],
    ),
    "docker_compose": Part(
        "docker_compose",
        "yes",
        "docker-compose.yml",
        [r"\bcompose\b", r"\btracking/", r"minio", r"stack-(up|down)"],
    ),
    "airflow": Part(
        "orchestrator",
        "airflow",
        "dags",
        [r"airflow", r"\bdags/", r"orchestration/airflow", r"\bDAG\b"],
    ),
    "kubeflow": Part(
        "orchestrator",
        "kubeflow",
        "pipelines",
        [r"kubeflow", r"\bkfp\b", r"\bpipelines/", r"orchestration/kubeflow"],
    ),
    "feature_store": Part(
        "feature_store",
        "feast",
        "feature_repo",
        [r"feast", r"redis", r"feature_repo", r"materiali[sz]e", r"feature-store"],
    ),
}


def choices(option: str) -> list[str]:
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    return list(context[option])


def removed(part: Part, answers: dict[str, Any]) -> bool:
    return bool({**template_defaults(), **answers}[part.option] != part.kept_by)


# Every part removed at once, and each value that removes a part on its own (its names
# must go even where the other parts mention it: orchestrator=kubeflow names no Airflow).
MINIMAL = {"ci": "none", "deploy": "none", "monitoring": "none", "docker_compose": "no"}
MINIMAL["orchestrator"] = "none"
MINIMAL["feature_store"] = "none"
REMOVING = sorted(
    {(part.option, value) for part in PARTS.values() for value in choices(part.option)}
    - {(part.option, part.kept_by) for part in PARTS.values() if part.option != "orchestrator"}
)
RENDERS = [
    pytest.param(MINIMAL, id="minimal"),
    *(pytest.param({option: value}, id=f"{option}={value}") for option, value in REMOVING),
]


def describing_files(project: BakedProject) -> list[str]:
    """The fixed list, the render's make/*.mk, and its monitoring configs' comments."""
    configs = sorted((project.path / "monitoring").rglob("*.yml"))
    return [
        *DESCRIBING,
        *(f"make/{mk.name}" for mk in sorted(project.path.glob("make/*.mk"))),
        *(str(config.relative_to(project.path)) for config in configs),
    ]


def leftovers(project: BakedProject, answers: dict[str, Any]) -> list[str]:
    """Every line of the describing files that names a part the answers removed."""
    patterns = [
        re.compile(pattern, re.IGNORECASE)
        for part in PARTS.values()
        if removed(part, answers)
        for pattern in part.names
    ]
    return [
        f"{name}:{number}: /{pattern.pattern}/: {line.strip()}"
        for name in describing_files(project)
        for number, line in enumerate(project.read(name).splitlines(), 1)
        for pattern in patterns
        if pattern.search(line)
    ]


@pytest.mark.parametrize("answers", RENDERS)
def test_removed_parts_are_not_described(cookies_session: Any, answers: dict[str, Any]) -> None:
    project = bake_project(cookies_session, answers)
    gone = [part for part in PARTS.values() if removed(part, answers)]
    assert gone
    assert [part.path for part in gone if (project.path / part.path).exists()] == []
    found = leftovers(project, answers)
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("name", list(PARTS))
def test_the_names_are_those_of_the_render_with_the_part(cookies_session: Any, name: str) -> None:
    """A render with the part uses each of its names in its describing files: they are the
    words a leftover would be written in, not ones no render ever has."""
    part = PARTS[name]
    project = bake_project(cookies_session, {part.option: part.kept_by})
    assert (project.path / part.path).exists()
    text = "\n".join(project.read(name) for name in describing_files(project))
    unused = [pattern for pattern in part.names if not re.search(pattern, text, re.IGNORECASE)]
    assert unused == []


def test_prometheus_client_is_not_the_monitoring_part(cookies_session: Any) -> None:
    """Why bare "prometheus" may stay: the server exports /metrics without monitoring too."""
    project = bake_project(cookies_session, MINIMAL)
    serve = project.load("pyproject.toml")["project"]["optional-dependencies"]["serve"]
    assert any(requirement.startswith("prometheus-client") for requirement in serve)
    routes = project.read(f"src/{project.module}/serving/routes/metrics.py")
    assert '@router.get("/metrics"' in routes
    assert "PROMETHEUS_MULTIPROC_DIR" in project.read("Dockerfile")
