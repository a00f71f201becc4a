"""A render without an optional part does not describe it.

The post-gen hook removes each part's files (hooks/post_gen_project.py); the files every
render keeps must then not name them: no `.github/workflows/` in the Makefile, no drift
check in the Dockerfile, no `make/compose.mk` in a project without it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from baked import BakedProject
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

# (option, the value that removes the part): what names the part, matched ignoring case.
# Bare "prometheus" is not here: every server exports /metrics through prometheus-client
# (test_prometheus_client_is_not_the_monitoring_part), monitoring or not.
PART_NAMES = {
    ("ci", "none"): [
        r"\.github\b",
        r"\bworkflows?\b",
        r"github actions",
        r"dependabot",
        r"trivy",
        r"\b(ci|train|deploy|drift)\.yml\b",
    ],
    ("deploy", "none"): [
        r"kubernetes",
        r"\bdeploy/",
        r"kustomiz",
        r"kubectl",
        r"\bk8s\b",
        r"cronjob",
    ],
    ("monitoring", "none"): [
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
    ("docker_compose", "no"): [
        r"\bcompose\b",
        r"\btracking/",
        r"minio",
        r"stack-(up|down)",
    ],
    ("orchestrator", "none"): [
        r"airflow",
        r"\bdags/",
        r"orchestration/",
        r"\bDAG\b",
    ],
}
# A path of each part (its files: the hook's remove_* functions).
PART_PATHS = {
    "ci": ".github",
    "deploy": "deploy",
    "monitoring": "monitoring",
    "docker_compose": "docker-compose.yml",
    "orchestrator": "dags",
}
# Every part in: the defaults, but for the parts whose default is off.
FULL = {"orchestrator": "airflow"}
MINIMAL = dict(PART_NAMES.keys())  # every part removed
# Each part removed alone (its names must go even where the other parts mention it), and
# all at once.
RENDERS = [
    pytest.param(MINIMAL, id="minimal"),
    *(pytest.param({option: value}, id=f"{option}={value}") for option, value in PART_NAMES),
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
        for (option, value), part_names in PART_NAMES.items()
        if answers.get(option) == value
        for pattern in part_names
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
    assert [option for option in answers if (project.path / PART_PATHS[option]).exists()] == []
    found = leftovers(project, answers)
    assert found == [], "\n".join(found)


@pytest.fixture(scope="module")
def full_project(cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, FULL)


@pytest.mark.parametrize(("option", "value"), list(PART_NAMES))
def test_the_names_are_those_of_the_full_render(
    full_project: BakedProject, option: str, value: str
) -> None:
    """The full render has every part, and its describing files use each of the names:
    they are the words a leftover would be written in, not ones no render ever has."""
    assert (full_project.path / PART_PATHS[option]).exists()
    text = "\n".join(full_project.read(name) for name in describing_files(full_project))
    unused = [
        pattern
        for pattern in PART_NAMES[(option, value)]
        if not re.search(pattern, text, re.IGNORECASE)
    ]
    assert unused == []


def test_prometheus_client_is_not_the_monitoring_part(cookies_session: Any) -> None:
    """Why bare "prometheus" may stay: the server exports /metrics without monitoring too."""
    project = bake_project(cookies_session, MINIMAL)
    serve = project.load("pyproject.toml")["project"]["optional-dependencies"]["serve"]
    assert any(requirement.startswith("prometheus-client") for requirement in serve)
    routes = project.read(f"src/{project.module}/serving/routes/metrics.py")
    assert '@router.get("/metrics"' in routes
    assert "PROMETHEUS_MULTIPROC_DIR" in project.read("Dockerfile")
