"""Bake every supported combination and check what it renders, statically."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from baked import LEFTOVER_JINJA, TEMPLATE_DIR, TOOLS_BIN, BakedProject, template_defaults
from combinations import SUPPORTED_COMBINATIONS
from conftest import bake_project
from dockerfile import chain, stages

ALWAYS = [
    ".dvc/.gitignore",
    ".dvc/config",
    ".dockerignore",
    ".dvcignore",
    ".env.example",
    ".gitignore",
    ".pip-audit-ignore",
    ".pre-commit-config.yaml",
    ".python-version",
    "LICENSE",
    "Makefile",
    "Dockerfile",
    "README.md",
    "data/raw/production.csv",
    "dvc.yaml",
    "loadtest/locustfile.py",
    "loadtest/sample_rows.py",
    "make/loadtest.mk",
    "params.yaml",
    "pyproject.toml",
    "src/{module}/__init__.py",
    "src/{module}/__main__.py",
    "src/{module}/api.py",
    "src/{module}/artifact.py",
    "src/{module}/batch_scoring.py",
    "src/{module}/cli.py",
    "src/{module}/collect.py",
    "src/{module}/compiler.py",
    "src/{module}/config.py",
    "src/{module}/custom.py",
    "src/{module}/data.py",
    "src/{module}/engines.py",
    "src/{module}/errors.py",
    "src/{module}/estimators.py",
    "src/{module}/evaluate.py",
    "src/{module}/figures.py",
    "src/{module}/feedback.py",
    "src/{module}/ground_truth.py",
    "src/{module}/ids.py",
    "src/{module}/inference.py",
    "src/{module}/metrics.py",
    "src/{module}/outages.py",
    "src/{module}/prediction_store.py",
    "src/{module}/profile.py",
    "src/{module}/registry.py",
    "src/{module}/runtime.py",
    "src/{module}/schema.py",
    "src/{module}/serving/__init__.py",
    "src/{module}/serving/app.py",
    "src/{module}/serving/batching.py",
    "src/{module}/serving/bodies.py",
    "src/{module}/serving/live_metrics.py",
    "src/{module}/serving/metrics.py",
    "src/{module}/serving/observer.py",
    "src/{module}/serving/openapi.py",
    "src/{module}/serving/prediction_log.py",
    "src/{module}/serving/requests.py",
    "src/{module}/serving/routes/__init__.py",
    "src/{module}/serving/routes/feedback.py",
    "src/{module}/serving/routes/health.py",
    "src/{module}/serving/routes/metrics.py",
    "src/{module}/serving/routes/predictions.py",
    "src/{module}/serving/run.py",
    "src/{module}/serving/server.py",
    "src/{module}/serving/settings.py",
    "src/{module}/serving/smoke.py",
    "src/{module}/tracking.py",
    "src/{module}/train.py",
    "src/{module}/py.typed",
    "tests/conftest.py",
    "tests/test_batch_scoring.py",
    "tests/test_cli.py",
    "tests/test_cli_errors.py",
    "tests/test_compiler.py",
    "tests/test_config.py",
    "tests/test_data.py",
    "tests/test_dvc_pipeline.py",
    "tests/test_feedback.py",
    "tests/test_figures.py",
    "tests/test_ground_truth.py",
    "tests/test_loadtest_rows.py",
    "tests/test_metrics.py",
    "tests/test_outages.py",
    "tests/test_pipeline.py",
    "tests/test_prediction_ids.py",
    "tests/test_prediction_log.py",
    "tests/test_schema.py",
    "tests/test_serving.py",
    "tests/test_serving_fuzz.py",
    "tests/test_serving_registry.py",
    "tests/test_train.py",
]
# (option, value that keeps the files)
OPTION_FILES = {
    ("ci", "github"): [
        ".github/dependabot.yml",
        ".github/workflows/ci.yml",
        ".github/workflows/deploy.yml",
        ".github/workflows/train.yml",
        ".github/workflows/batch.yml",
    ],
    ("deploy", "kubernetes"): [
        "make/kubernetes.mk",
        "deploy/k8s/base/api/deployment.yaml",
        "deploy/k8s/base/api/kustomization.yaml",
        "deploy/k8s/base/batch-predict-cronjob.yaml",
        "deploy/k8s/base/hpa.yaml",
        "deploy/k8s/base/kustomization.yaml",
        "deploy/k8s/base/networkpolicy.yaml",
        "deploy/k8s/base/pdb.yaml",
        "deploy/k8s/base/service.yaml",
        "deploy/k8s/base/serviceaccount.yaml",
        "deploy/k8s/check_manifests.py",
        "deploy/k8s/overlays/blue-green/api/kustomization.yaml",
        "deploy/k8s/overlays/blue-green/blue/kustomization.yaml",
        "deploy/k8s/overlays/blue-green/green/kustomization.yaml",
        "deploy/k8s/overlays/blue-green/kustomization.yaml",
        "deploy/k8s/overlays/blue-green/live.yaml",
        "deploy/k8s/overlays/canary/kustomization.yaml",
        "deploy/k8s/overlays/production/kustomization.yaml",
        "deploy/k8s/overlays/production/namespace.yaml",
        "deploy/k8s/overlays/production/retrain-cronjob.yaml",
        "deploy/k8s/overlays/staging/kustomization.yaml",
        "deploy/k8s/overlays/staging/namespace.yaml",
        "deploy/k8s/releases.py",
        "deploy/k8s/smoke-job.yaml",
    ],
    ("monitoring", "prometheus"): [
        "make/monitoring.mk",
        "monitoring/alertmanager/alertmanager.yml",
        "monitoring/grafana/dashboards/prediction-api.json",
        "monitoring/grafana/provisioning/dashboards/dashboards.yml",
        "monitoring/grafana/provisioning/datasources/prometheus.yml",
        "monitoring/prometheus/alerts.yml",
        "monitoring/prometheus/prometheus.yml",
        "monitoring/prometheus/tests/alerts_test.yml",
        "src/{module}/monitoring/__init__.py",
        "src/{module}/monitoring/charts.py",
        "src/{module}/monitoring/check.py",
        "src/{module}/monitoring/drift.py",
        "src/{module}/monitoring/online.py",
        "src/{module}/monitoring/publish.py",
        "src/{module}/monitoring/report.py",
        "src/{module}/monitoring/settings.py",
        "src/{module}/monitoring/window.py",
        "tests/test_drift.py",
        "tests/test_drift_serving.py",
    ],
    ("orchestrator", "airflow"): [
        "dags/README.md",
        "dags/{module}_step_pod.yaml",
        "dags/{module}_training.py",
        "make/airflow.mk",
        "orchestration/airflow/pyproject.toml",
        "orchestration/airflow/tests/conftest.py",
        "orchestration/airflow/tests/test_training_dag.py",
    ],
    ("orchestrator", "kubeflow"): [
        "make/kubeflow.mk",
        "orchestration/kubeflow/pyproject.toml",
        "orchestration/kubeflow/tests/conftest.py",
        "orchestration/kubeflow/tests/test_training_pipeline.py",
        "pipelines/.gitignore",
        "pipelines/README.md",
        "pipelines/local.py",
        "pipelines/steps.py",
        "pipelines/training.py",
    ],
    ("feature_store", "feast"): [
        "feature_repo/definitions.py",
        "feature_repo/feature_store.production.yaml",
        "feature_repo/feature_store.yaml",
        "make/features.mk",
        "src/{module}/features.py",
        "src/{module}/serving/online_features.py",
        "tests/feature_store_support.py",
        "tests/test_feature_store.py",
    ],
    ("docker_compose", "yes"): [
        "docker-compose.yml",
        "make/compose.mk",
        "tracking/Dockerfile",
        "tracking/requirements.txt",
        "tracking/server.sh",
    ],
}
# Files kept only when two options both keep them: the compose file of the monitoring services.
COMBINED_FILES = {
    (("monitoring", "prometheus"), ("docker_compose", "yes")): ["docker-compose.monitoring.yml"],
    (("monitoring", "prometheus"), ("ci", "github")): [".github/workflows/drift.yml"],
    # the Prometheus Operator's objects and the drift check, a kustomize component
    (("deploy", "kubernetes"), ("monitoring", "prometheus")): [
        "deploy/k8s/components/monitoring/drift-cronjob.yaml",
        "deploy/k8s/components/monitoring/kustomization.yaml",
        "deploy/k8s/components/monitoring/prometheusrule.yaml",
        "deploy/k8s/components/monitoring/servicemonitor.yaml",
    ],
    # the CronJob that fills Feast's online store
    (("deploy", "kubernetes"), ("feature_store", "feast")): [
        "deploy/k8s/base/materialize-cronjob.yaml",
    ],
}


def expected_files(answers: dict[str, Any], module: str) -> list[str]:
    files = [name.format(module=module) for name in ALWAYS]
    for (option, value), option_files in OPTION_FILES.items():
        if answers[option] == value:
            files += [name.format(module=module) for name in option_files]
    for conditions, combined_files in COMBINED_FILES.items():
        if all(answers[option] == value for option, value in conditions):
            files += combined_files
    return sorted(files)


@pytest.fixture(scope="module", params=SUPPORTED_COMBINATIONS)
def baked(request: pytest.FixtureRequest, cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, request.param)


@pytest.fixture
def answers(baked: BakedProject) -> dict[str, Any]:
    return {**template_defaults(), **baked.answers}


def test_exactly_the_expected_files(baked: BakedProject, answers: dict[str, Any]) -> None:
    assert baked.files() == expected_files(answers, baked.module)


def test_git_repository_matches_the_option(baked: BakedProject, answers: dict[str, Any]) -> None:
    assert (baked.path / ".git").is_dir() == (answers["initialize_git"] == "yes")
    if answers["initialize_git"] == "yes":
        status = baked.check("git", "status", "--porcelain").stdout
        assert status == "", f"first commit left files out:\n{status}"
        assert baked.check("git", "branch", "--show-current").stdout.strip() == "main"


def test_no_jinja_left(baked: BakedProject) -> None:
    leftovers = [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {match.group()}"
        for name, text in baked.text_files()
        for match in LEFTOVER_JINJA.finditer(text)
    ]
    assert leftovers == []


def test_structured_files_parse(baked: BakedProject) -> None:
    structured = [
        name
        for name in baked.files()
        if name.endswith((".yml", ".yaml", ".toml", ".json")) or name == ".dvc/config"
    ]
    assert "pyproject.toml" in structured
    for name in structured:
        assert baked.load(name) is not None, name


def test_python_compiles(baked: BakedProject) -> None:
    for name in baked.files():
        if name.endswith(".py"):
            compile(baked.read(name), name, "exec")


def test_ruff_lint_and_format(baked: BakedProject) -> None:
    baked.check(str(TOOLS_BIN / "ruff"), "check", "--no-cache", ".")
    baked.check(str(TOOLS_BIN / "ruff"), "format", "--no-cache", "--check", ".")


def test_ruff_keeps_the_security_rules_on(baked: BakedProject) -> None:
    lint = baked.load("pyproject.toml")["tool"]["ruff"]["lint"]
    assert "S" in lint["select"]  # flake8-bandit
    assert not [rule for rule in lint.get("ignore", []) if rule.startswith("S")]
    # only the tests are let off: assert, and running the project's own CLI
    assert lint["per-file-ignores"] == {"**/tests/**": ["S101", "S603", "S607"]}


def test_free_text_survives_rendering(baked: BakedProject, answers: dict[str, Any]) -> None:
    project = baked.load("pyproject.toml")["project"]
    assert project["description"] == answers["description"]
    author = {"name": answers["author_name"], "email": answers["author_email"]}
    assert project["authors"] == [author]
    readme = baked.read("README.md")
    assert readme.startswith(f"# {answers['project_name']}\n")
    assert answers["description"] in readme
    assert answers["author_name"] in baked.read("LICENSE")


def test_pyproject_follows_the_answers(baked: BakedProject, answers: dict[str, Any]) -> None:
    pyproject = baked.load("pyproject.toml")
    project = pyproject["project"]
    slug, module = baked.path.name, baked.module
    assert project["name"] == slug
    assert project["scripts"] == {slug: f"{module}.cli:main"}
    assert project["requires-python"] == f">={answers['python_version']}"
    assert pyproject["tool"]["mypy"]["python_version"] == answers["python_version"]
    assert baked.read(".python-version").strip() == answers["python_version"]
    owner = answers["github_owner"]
    assert project["urls"]["Repository"] == f"https://github.com/{owner}/{slug}"
    spdx = {"Proprietary": "LicenseRef-Proprietary"}.get(answers["open_source_license"])
    assert project["license"] == (spdx or answers["open_source_license"])


def test_dvc_remote_follows_the_answers(baked: BakedProject, answers: dict[str, Any]) -> None:
    config = baked.load(".dvc/config")
    train = baked.load("pyproject.toml")["project"]["optional-dependencies"]["train"]
    extra = {"s3": "dvc[s3]", "gcs": "dvc[gs]", "azure": "dvc[azure]"}.get(answers["dvc_remote"])
    assert [req for req in train if req.startswith("dvc")] == [f"{extra or 'dvc'}>=3.50"]
    if answers["dvc_remote"] == "none":
        assert config.sections() == []
        return
    assert config["core"]["remote"] == "storage"
    url = config["'remote \"storage\"'"]["url"]
    if answers["dvc_remote"] != "local":
        assert url == answers["dvc_remote_url"]
    elif answers["dvc_remote_url"]:
        assert url == answers["dvc_remote_url"]  # absolute path kept as given
    else:
        # relative to .dvc/, i.e. a folder beside the project
        assert url == f"../../{baked.path.name}-dvc-storage"


def test_params_follow_the_answers(baked: BakedProject, answers: dict[str, Any]) -> None:
    (params,) = baked.load("params.yaml")
    assert params["task"] == answers["task"]
    assert params["train"]["model"] == answers["model"]


def test_tracking_uri_is_the_default_setting(baked: BakedProject, answers: dict[str, Any]) -> None:
    uri = answers["mlflow_tracking_uri"]
    assert f"MLFLOW_TRACKING_URI={uri}\n" in baked.read(".env.example")
    assert f'DEFAULT_TRACKING_URI = "{uri}"\n' in baked.read(f"src/{baked.module}/config.py")
    train = baked.load("pyproject.toml")["project"]["optional-dependencies"]["train"]
    drivers = [dep for dep in train if dep.startswith("psycopg")]
    expected = {
        "postgresql": ["psycopg[binary]>=3.2"],
        "postgresql+psycopg2": ["psycopg2-binary>=2.9"],
    }
    assert drivers == expected.get(uri.split("://")[0], [])


def test_tool_pins_agree(baked: BakedProject) -> None:
    """pre-commit, the project's dev group and the template's own checks use one ruff."""
    dev = baked.load("pyproject.toml")["dependency-groups"]["dev"]
    (hooks,) = baked.load(".pre-commit-config.yaml")
    revs = {repo["repo"].rsplit("/", 1)[-1]: repo.get("rev") for repo in hooks["repos"]}
    template_dev = tomllib.loads((TEMPLATE_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    ruff_pin = next(dep for dep in template_dev["dependency-groups"]["dev"] if "ruff" in dep)
    assert ruff_pin in dev
    assert revs["ruff-pre-commit"] == "v" + ruff_pin.split("==")[1]
    assert any(dep.startswith("mypy==") for dep in dev)


def test_license_text_matches_the_choice(baked: BakedProject, answers: dict[str, Any]) -> None:
    first_line = {
        "MIT": "MIT License",
        "Apache-2.0": "Apache License",
        "BSD-3-Clause": "BSD 3-Clause License",
        "Proprietary": "Copyright (c)",
    }[answers["open_source_license"]]
    assert baked.read("LICENSE").lstrip().startswith(first_line)


def test_workflows_validate_against_the_github_schema(baked: BakedProject) -> None:
    workflows = [name for name in baked.files() if name.startswith(".github/workflows/")]
    if not workflows:
        pytest.skip("ci=none renders no workflows")
    baked.check(
        str(TOOLS_BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        *workflows,
    )
    baked.check(
        str(TOOLS_BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.dependabot",
        ".github/dependabot.yml",
    )


def test_kustomize_overlays_render(baked: BakedProject) -> None:
    if not baked.has_file("deploy/k8s/base/kustomization.yaml"):
        pytest.skip("deploy=none renders no manifests")
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is needed to render the kustomize overlays (see .ci/run)")
    for overlay in ("staging", "production"):
        rendered = baked.check("kubectl", "kustomize", f"deploy/k8s/overlays/{overlay}").stdout
        docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
        namespaces = {doc["metadata"].get("namespace", doc["metadata"]["name"]) for doc in docs}
        assert namespaces == {f"{baked.path.name}-{overlay}"}


def test_dockerfile_is_lint_clean_and_agrees_with_the_server(
    baked: BakedProject, answers: dict[str, Any]
) -> None:
    baked.check(str(TOOLS_BIN / "hadolint"), "Dockerfile")
    all_stages = stages(baked.read("Dockerfile"))
    serve, train = chain(all_stages, "serve"), chain(all_stages, "train")
    assert list(all_stages)[-1] == "serve", "a plain `docker build` gives the API image"
    assert all_stages["base"].parent == f"python:{answers['python_version']}-slim"
    settings = baked.read(f"src/{baked.module}/serving/settings.py")
    port = re.search(r"port: int = Field\((\d+)", settings)
    assert port is not None
    for stage_chain in (serve, train):
        users = [i.arguments for s in stage_chain for i in s.instructions if i.keyword == "USER"]
        assert users == ["10001:10001"], "numeric non-root user, so runAsNonRoot can check it"
    instructions = {i.keyword: i.arguments for i in serve[-1].instructions}
    assert instructions["EXPOSE"] == port.group(1)
    assert f"PORT={port.group(1)}" in instructions["ENV"]
    assert "/health/live" in instructions["HEALTHCHECK"]
    assert json.loads(instructions["CMD"]) == [baked.path.name, "serve"]
    # both images install what uv.lock pins, and nothing past it
    runs = [i.arguments for s in all_stages.values() for i in s.instructions if i.keyword == "RUN"]
    installs = [run for run in runs if re.search(r"\buv\b", run)]
    assert len(installs) == 4, installs
    assert all(run.startswith("uv sync --frozen --no-dev ") for run in installs), installs
    assert not [run for run in runs if "pip " in run]
    copied = [i.arguments for i in all_stages["builder"].instructions if i.keyword == "COPY"]
    assert any("uv.lock" in arguments.split() for arguments in copied)
    assert "uv.lock" not in baked.read(".dockerignore").split()


def test_prometheus_config_is_valid(baked: BakedProject) -> None:
    if not baked.has_file("monitoring/prometheus/prometheus.yml"):
        pytest.skip("monitoring=none renders no Prometheus config")
    if shutil.which("promtool") is None:
        pytest.fail("promtool is needed (apt-get install prometheus, see .ci/run)")
    baked.check("promtool", "check", "config", "monitoring/prometheus/prometheus.yml")


def tree_digest(path: Path) -> str:
    """Hash of every file's path and content outside .git, plus whether .git exists."""
    digest = hashlib.sha256(str((path / ".git").exists()).encode())
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def option_variants() -> list[Any]:
    """For every option, one answer other than its default."""
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    free_text = {
        "project_name": {"project_name": "Other Name"},
        "project_slug": {"project_slug": "other-slug"},
        "module_name": {"module_name": "other_module"},
        "description": {"description": "Another description"},
        "author_name": {"author_name": "Someone Else"},
        "author_email": {"author_email": "else@example.org"},
        "github_owner": {"github_owner": "another-owner"},
        "mlflow_tracking_uri": {"mlflow_tracking_uri": "http://127.0.0.1:5000"},
        "dvc_remote_url": {"dvc_remote_url": "/srv/dvc"},
    }
    remote_urls = {"s3": "s3://bucket/path", "gcs": "gs://bucket/path", "azure": "azure://c/path"}
    variants = []
    for key, value in context.items():
        if key.startswith("_"):
            continue
        if not isinstance(value, list):
            variants.append(pytest.param(free_text[key], id=key))
            continue
        for choice in value[1:]:
            answers = {key: choice}
            if key == "dvc_remote" and choice in remote_urls:
                answers["dvc_remote_url"] = remote_urls[choice]
            variants.append(pytest.param(answers, id=f"{key}={choice}"))
    return variants


@pytest.fixture(scope="module")
def default_digest(cookies_session: Any) -> str:
    return tree_digest(bake_project(cookies_session, {}).path)


@pytest.mark.parametrize("variant", option_variants())
def test_every_option_changes_the_render(
    variant: dict[str, Any], cookies_session: Any, default_digest: str
) -> None:
    assert tree_digest(bake_project(cookies_session, variant).path) != default_digest
