"""The rendered GitHub Actions workflows: valid, least privilege, and runnable here.

Static, for every supported combination with ci=github: each workflow validates against
GitHub's schema (offline), is copied verbatim (no cookiecutter variable can reach it),
and is hardened (read-only default token, per-job grants from an allow-list, no
credentials left by checkout, no expression inside a script, no secret printed, pinned
actions, concurrency groups, timeouts, the uv cache). Every `make <target>` a step runs
is a target of the rendered Makefile, and every `<slug> <command>` those targets run is a
command of the rendered CLI. The deploy targets run against a stand-in `kubectl` that
renders what `kubectl apply -k` would apply and keeps what was applied.

End to end (marker e2e): ci.yml's test job, step by step as written, in a rendered and
installed project (the `uses:` steps are GitHub's and skipped); then train.yml's training
job, drift.yml's check on the pipeline's own data and on drifted data, and `make
k8s-smoke`'s Job run against the exported model (tests/kubectl_stand_in.py). The jobs no test runs
here say why in NOT_RUN_HERE: the image build and its Trivy scan, pip-audit (its answer
changes as advisories are published), pushes, clusters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from baked import TEMPLATE_DIR, TOOLS_BIN, BakedProject, free_port, template_defaults
from combinations import SUPPORTED_COMBINATIONS
from conftest import bake_project, install_project, setup_env
from kubectl_stand_in import stand_in_kubectl

WORKFLOWS = ("ci.yml", "train.yml", "deploy.yml", "drift.yml", "batch.yml")


def answers_of(param: Any) -> dict[str, Any]:
    return {**template_defaults(), **cast(dict[str, Any], param.values[0])}


GITHUB_COMBINATIONS = [
    param for param in SUPPORTED_COMBINATIONS if answers_of(param)["ci"] == "github"
]
READ = {"contents": "read"}
# Least privilege: every job's permissions (a job without its own gets the top level's).
PERMISSIONS: dict[str, dict[str, dict[str, str]]] = {
    "ci.yml": {
        "test": READ,
        "audit": READ,
        "image": READ,
        "deploy": {"contents": "read", "packages": "write"},
    },
    "train.yml": {"train": READ, "lock": {"contents": "write", "pull-requests": "write"}},
    "deploy.yml": {
        "image": {"contents": "read", "packages": "write"},
        "staging": READ,
        "production": READ,
        "rollback": READ,
    },
    "drift.yml": {"check": READ, "alert": {"issues": "write", "actions": "write"}},
    "batch.yml": {"score": READ},
}
# The jobs that write to the repository run none of the project's code: no make, and
# only these actions.
NO_PROJECT_CODE = {("train.yml", "lock"), ("drift.yml", "alert")}
WRITING_JOB_ACTIONS = {
    "actions/checkout",
    "actions/download-artifact",
    "peter-evans/create-pull-request",
}
# The jobs the end-to-end tests run here (run_job), and those no test runs, with why: their
# steps are checked statically (schema, permissions, targets, the calls below).
RUN_HERE = {
    ("ci.yml", "test"),
    ("train.yml", "train"),
    ("drift.yml", "check"),
    ("batch.yml", "score"),
    ("deploy.yml", "rollback"),
}
NOT_RUN_HERE = {
    ("ci.yml", "audit"): "pip-audit asks PyPI, whose answer changes as advisories are published",
    ("ci.yml", "image"): "Docker builds on GitHub's cache; Trivy's action and its DB are GitHub's",
    ("ci.yml", "deploy"): "calls deploy.yml, whose jobs are listed here on their own",
    ("deploy.yml", "image"): "pushes to ghcr.io",
    ("deploy.yml", "staging"): "a cluster (its targets run here against a stand-in kubectl)",
    ("deploy.yml", "production"): "a cluster (its targets run here against a stand-in kubectl)",
    ("train.yml", "lock"): "opens a pull request, and runs none of the project's code",
    ("drift.yml", "alert"): "files an issue, and runs none of the project's code",
}
# An action by the commit a release tag named, the release in a comment (Dependabot keeps
# both current); a moved tag cannot change what runs.
PINNED = re.compile(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}")
PINNED_LINE = re.compile(r"\s*(- )?uses: [\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+")
# A job that calls a reusable workflow of the repository.
LOCAL_WORKFLOW = re.compile(r"\./\.github/workflows/[\w-]+\.yml")
# The one kind of condition a step here is gated with: a path of the project exists.
HASH_FILES = re.compile(r"hashFiles\('([^']+)'\) != ''")
# Jobs gated on the Kubernetes manifests, through the image job's output.
KUBERNETES_JOB = "needs.image.outputs.kubernetes == 'true'"
QUOTED = re.compile(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"")
MAKE = re.compile(r"(?:^|[\s;&|(])make((?:\s+[^\s;&|<>()]+)*)")


def load(project: BakedProject, name: str) -> dict[str, Any]:
    workflow = yaml.safe_load(project.read(f".github/workflows/{name}"))
    assert isinstance(workflow, dict)
    if True in workflow:  # YAML 1.1 reads the key `on` as a boolean
        workflow["on"] = workflow.pop(True)
    return workflow


def rendered_workflows(project: BakedProject) -> list[str]:
    return sorted(path.name for path in (project.path / ".github/workflows").glob("*.yml"))


def make_targets(script: str) -> list[str]:
    """The targets of every `make` a script runs (not those named in strings or comments)."""
    targets: list[str] = []
    for line in script.splitlines():
        code = QUOTED.sub("''", line.split(" #")[0])
        if code.lstrip().startswith("#"):
            continue
        for match in MAKE.finditer(code):
            for word in shlex.split(match.group(1)):
                if not word.startswith("-") and "=" not in word:
                    targets.append(word)
    return targets


def active(project: BakedProject, job: dict[str, Any], step: dict[str, Any]) -> bool:
    """Whether the step runs for this project: gates on a path it lacks say no."""
    if KUBERNETES_JOB in str(job.get("if", "")) and not project.has_file(
        "deploy/k8s/base/kustomization.yaml"
    ):
        return False
    gate = HASH_FILES.search(str(step.get("if", "")))
    return gate is None or any(project.path.glob(gate.group(1)))


def referenced_targets(project: BakedProject) -> dict[str, set[str]]:
    """Every make target a step that runs for this project calls, with where it is called."""
    found: dict[str, set[str]] = {}
    for name in rendered_workflows(project):
        for job_name, job in load(project, name)["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step and active(project, job, step):
                    for target in make_targets(step["run"]):
                        found.setdefault(target, set()).add(f"{name}:{job_name}")
    return found


def makefile_targets(project: BakedProject) -> set[str]:
    database = project.run("make", "-pRrq", "__no_such_target__").stdout
    files = database.split("# Files", 1)[1]
    return set(re.findall(r"^([a-zA-Z0-9][\w.-]*):(?!=)", files, flags=re.MULTILINE))


def cli_commands(project: BakedProject) -> set[str]:
    source = project.read(f"src/{project.module}/cli.py")
    return set(re.findall(r'@command\(\s*"([a-z][a-z-]*)"', source))


def cli_calls(project: BakedProject, dry_run: str) -> set[str]:
    """`<slug> <command>` in make's dry-run output (not the slug inside paths and names)."""
    slug = re.escape(project.path.name)
    return set(re.findall(rf"(?:^|[\s;&|(]){slug}\s+([a-z][a-z-]*)", dry_run, re.MULTILINE))


@pytest.fixture(scope="module", params=GITHUB_COMBINATIONS)
def baked(request: pytest.FixtureRequest, cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, request.param)


@pytest.fixture
def answers(baked: BakedProject) -> dict[str, Any]:
    return {**template_defaults(), **baked.answers}


def test_the_combinations_with_github_ci_cover_every_optional_part() -> None:
    covered = [answers_of(param) for param in GITHUB_COMBINATIONS]
    for option, values in {
        "deploy": {"kubernetes", "none"},
        "monitoring": {"prometheus", "none"},
        "docker_compose": {"yes", "no"},
    }.items():
        assert {answers[option] for answers in covered} == values, option


def test_the_workflows_are_rendered(baked: BakedProject, answers: dict[str, Any]) -> None:
    names = set(rendered_workflows(baked))
    required = {"ci.yml", "train.yml", "deploy.yml", "batch.yml"}
    if answers["monitoring"] == "prometheus":
        required.add("drift.yml")
    assert required <= names <= set(WORKFLOWS)


def test_workflows_are_copied_verbatim(baked: BakedProject) -> None:
    # _copy_without_render: the GitHub expressions survive, no cookiecutter variable can.
    template = TEMPLATE_DIR / "{{cookiecutter.project_slug}}/.github/workflows"
    for name in rendered_workflows(baked):
        assert baked.read(f".github/workflows/{name}") == (template / name).read_text("utf-8")
        assert "cookiecutter" not in baked.read(f".github/workflows/{name}")


def test_workflows_and_dependabot_validate(baked: BakedProject, answers: dict[str, Any]) -> None:
    checker = str(TOOLS_BIN / "check-jsonschema")
    workflows = [f".github/workflows/{name}" for name in rendered_workflows(baked)]
    baked.check(checker, "--builtin-schema", "vendor.github-workflows", *workflows)
    baked.check(checker, "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml")
    ecosystems = {
        update["package-ecosystem"] for update in baked.load(".github/dependabot.yml")[0]["updates"]
    }
    expected = {"uv", "github-actions", "docker"}
    if answers["docker_compose"] == "yes":
        expected.add("docker-compose")
    assert ecosystems == expected


def test_permissions_are_least_privilege(baked: BakedProject) -> None:
    for name in rendered_workflows(baked):
        workflow = load(baked, name)
        assert workflow["permissions"] == READ, name
        for job_name, job in workflow["jobs"].items():
            effective = job.get("permissions", workflow["permissions"])
            assert effective == PERMISSIONS[name][job_name], f"{name}:{job_name}"
            if (name, job_name) in NO_PROJECT_CODE:
                scripts = [step["run"] for step in job["steps"] if "run" in step]
                assert [make_targets(script) for script in scripts if make_targets(script)] == []
                used = {
                    step["uses"].split("@")[0] for step in job.get("steps", []) if "uses" in step
                }
                assert used <= WRITING_JOB_ACTIONS, f"{name}:{job_name}"


def test_scripts_take_no_expressions_and_print_no_secret(baked: BakedProject) -> None:
    for name in rendered_workflows(baked):
        for job_name, job in load(baked, name)["jobs"].items():
            for step in job.get("steps", []):
                if "run" not in step:
                    continue
                where = f"{name}:{job_name}:{step.get('name', step['run'][:40])}"
                # inputs, event payloads, secrets: through env:, never inlined in a script
                assert "${{" not in step["run"], where
                secret_variables = [
                    key
                    for key, value in {**job.get("env", {}), **step.get("env", {})}.items()
                    if "secrets." in str(value) or "github.token" in str(value)
                ]
                for line in step["run"].splitlines():
                    printed = re.search(r"\b(echo|printf|cat)\b", line)
                    if printed and not re.search(r"[|>]", line[printed.end() :]):
                        for variable in secret_variables:
                            assert not re.search(rf"\$\{{?{variable}\b", line), f"{where}: {line}"


def test_expressions_name_what_exists(baked: BakedProject) -> None:
    """What actionlint would catch first: steps, jobs and inputs named in expressions exist."""
    for name in rendered_workflows(baked):
        workflow = load(baked, name)
        dispatch = (workflow["on"] or {}).get("workflow_dispatch") or {}
        declared_inputs = set(dispatch.get("inputs", {}))
        for job_name, job in workflow["jobs"].items():
            text = yaml.safe_dump(job)
            ids = {step["id"] for step in job.get("steps", []) if "id" in step}
            needs = job.get("needs", [])
            needs = {needs} if isinstance(needs, str) else set(needs)
            where = f"{name}:{job_name}"
            assert set(re.findall(r"\bsteps\.([\w-]+)\.", text)) <= ids, where
            assert set(re.findall(r"\bneeds\.([\w-]+)\.", text)) <= needs, where
            assert set(re.findall(r"\binputs\.([\w-]+)", text)) <= declared_inputs, where
            for need in needs:
                outputs = set(workflow["jobs"][need].get("outputs", {}))
                used = set(re.findall(rf"\bneeds\.{need}\.outputs\.([\w-]+)", text))
                assert used <= outputs, f"{where}: needs.{need}.outputs"


def test_checkout_keeps_no_credentials_and_actions_are_pinned(baked: BakedProject) -> None:
    for name in rendered_workflows(baked):
        for job_name, job in load(baked, name)["jobs"].items():
            for step in job.get("steps", []):
                uses = step.get("uses")
                if uses is None:
                    continue
                assert PINNED.fullmatch(uses), f"{name}:{job_name}: {uses}"
                if uses.startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, f"{name}:{job_name}"
                if uses.startswith("astral-sh/setup-uv@"):
                    assert step["with"]["enable-cache"] is True, f"{name}:{job_name}"


def test_concurrency_and_timeouts(baked: BakedProject) -> None:
    for name in rendered_workflows(baked):
        workflow = load(baked, name)
        if name != "deploy.yml":  # its groups are per environment, at job level (below)
            assert workflow["concurrency"]["group"], name
        for job_name, job in workflow["jobs"].items():
            if LOCAL_WORKFLOW.fullmatch(job.get("uses", "")):
                continue  # the called workflow's jobs have their own timeouts
            assert 0 < job["timeout-minutes"] <= 120, f"{name}:{job_name}"
    # retraining queues; nothing cancels it half-way
    assert load(baked, "train.yml")["concurrency"]["cancel-in-progress"] is False


def test_each_environment_deploys_one_run_at_a_time_and_rollback_waits_for_none(
    baked: BakedProject,
) -> None:
    deploy = load(baked, "deploy.yml")
    assert "concurrency" not in deploy  # one group for all would queue a rollback behind it
    jobs = deploy["jobs"]
    for environment in ("staging", "production"):
        job = jobs[environment]
        assert job["environment"] == environment
        assert job["concurrency"] == {
            "group": f"deploy-{environment}",
            "cancel-in-progress": False,
        }
    assert "concurrency" not in jobs["rollback"]
    assert "needs" not in jobs["rollback"]  # by hand only: it waits for no deployment
    assert jobs["rollback"]["if"] == "github.event_name == 'workflow_dispatch'"
    # a failed release is rolled back inside the approved production job, not by a job
    # that would wait for a reviewer again
    production = jobs["production"]["steps"]
    undo = [step for step in production if "k8s-rollback" in make_targets(step.get("run", ""))]
    assert [step["if"] for step in undo] == ["failure() && steps.rollout.outputs.started == 'true'"]
    names = [step.get("name", "") for step in production]
    assert names.index(undo[0]["name"]) > names.index("Rollout begins")


def test_delivery_follows_ci_on_the_same_commit(baked: BakedProject) -> None:
    ci, deploy = load(baked, "ci.yml"), load(baked, "deploy.yml")
    # only release tags (v and three numbers) start a delivery; any tag would reach production
    assert ci["on"]["push"] == {"branches": ["main"], "tags": ["v[0-9]+.[0-9]+.[0-9]+"]}
    caller = ci["jobs"]["deploy"]
    assert caller["uses"] == "./.github/workflows/deploy.yml"
    assert caller["needs"] == "test"
    assert caller["if"] == "github.event_name == 'push'"
    assert caller["secrets"] == "inherit"
    # deploy.yml starts from nothing else: no push of its own beside CI
    assert set(deploy["on"]) == {"workflow_call", "workflow_dispatch"}
    assert deploy["on"]["workflow_call"] is None
    assert set(deploy["on"]["workflow_dispatch"]["inputs"]["rollback"]["options"]) == {
        "staging",
        "production",
    }
    jobs = deploy["jobs"]
    assert jobs["image"]["if"] == "github.event_name != 'workflow_dispatch'"
    assert jobs["production"]["if"].startswith("github.ref_type == 'tag' && ")
    assert jobs["production"]["needs"] == ["image", "staging"]


def test_deployments_apply_the_digests_the_build_pushed(baked: BakedProject) -> None:
    jobs = load(baked, "deploy.yml")["jobs"]
    image = jobs["image"]
    builds = {
        step["id"]: step
        for step in image["steps"]
        if step.get("uses", "").startswith("docker/build-push-action@")
    }
    assert set(builds) == {"serve-build", "train-build"}
    assert all(step["with"]["push"] is True for step in builds.values())
    for part in ("serve", "train"):
        assert image["outputs"][f"{part}-digest"] == (
            f"${{{{ steps.{part}-build.outputs.digest || steps.retag.outputs.{part}-digest }}}}"
        )
    # main builds; a release tag builds nothing (it re-tags what main built and deployed)
    steps = {step.get("id", step.get("name", step.get("uses"))): step for step in image["steps"]}
    for name in ("serve-build", "train-build", "model", "serve", "train"):
        assert steps[name]["if"] == "github.ref_type != 'tag'", name
    assert steps["retag"]["if"] == "github.ref_type == 'tag'"
    for environment in ("staging", "production"):
        [release] = [
            step
            for step in jobs[environment]["steps"]
            if "k8s-release" in make_targets(step.get("run", ""))
        ]
        assert release["env"]["DIGEST"] == "${{ needs.image.outputs.serve-digest }}"
        assert release["env"]["TRAIN_DIGEST"] == "${{ needs.image.outputs.train-digest }}"
        assert 'DIGEST="$DIGEST" TRAIN_DIGEST="$TRAIN_DIGEST"' in release["run"]
        assert "TAG" not in release["env"]
    # an image whose model was trained on the runner is tagged so that no release finds it
    assert "suffix=${{ steps.model.outputs.suffix }}" in steps["serve"]["with"]["tags"]
    assert 'echo "suffix=-unregistered"' in steps["model"]["run"]


STAND_IN_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >> "$DOCKER_LOG"
case "$*" in
  "buildx imagetools inspect --raw "*)
    name="${5%:*}"; tag="${5##*:}"
    [ -f "$REGISTRY/$(basename "$name"):$tag" ] || { echo "not found" >&2; exit 1; }
    cat "$REGISTRY/$(basename "$name"):$tag";;
esac
"""


def test_a_release_tag_retags_the_digests_ci_built_on_main(
    baked: BakedProject, tmp_path: Path
) -> None:
    """The retag step, run with a stand-in `docker` over a directory as the registry."""
    [step] = [
        s for s in load(baked, "deploy.yml")["jobs"]["image"]["steps"] if s.get("id") == "retag"
    ]
    sha = "1" * 40
    registry = tmp_path / "registry"
    registry.mkdir()
    (tmp_path / "docker").write_text(STAND_IN_DOCKER, encoding="utf-8")
    (tmp_path / "docker").chmod(0o755)
    env = {
        "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
        "DOCKER_LOG": str(tmp_path / "docker.log"),
        "REGISTRY": str(registry),
        "IMAGE": "ghcr.io/acme/shop",
        "GITHUB_SHA": sha,
        "GITHUB_REF_NAME": "v1.2.3",
        "RUNNER_TEMP": str(tmp_path),
    }

    def retag() -> tuple[subprocess.CompletedProcess[str], str]:
        output = tmp_path / "output"
        output.write_text("", encoding="utf-8")
        result = baked.run("bash", "-eo", "pipefail", "-c", step["run"],
                           env={**env, "GITHUB_OUTPUT": str(output)})  # fmt: skip
        return result, output.read_text("utf-8")

    # a commit main never built: nothing is tagged
    result, outputs = retag()
    assert result.returncode == 1
    assert f"No image ghcr.io/acme/shop:{sha}" in result.stdout
    assert "create" not in (tmp_path / "docker.log").read_text("utf-8")
    # built without a registry: its model was trained on the runner
    (registry / f"shop:{sha}-unregistered").write_text("{}", encoding="utf-8")
    result, outputs = retag()
    assert result.returncode == 1
    assert "trained on the runner" in result.stdout
    # built by main with the registry's champion: the same digests, the version added
    digests = {}
    for name, manifest in (("shop", '{"api": 1}'), ("shop-train", '{"train": 1}')):
        (registry / f"{name}:{sha}").write_text(manifest, encoding="utf-8")
        digests[name] = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    result, outputs = retag()
    assert result.returncode == 0, result.stderr
    assert outputs.splitlines() == [
        f"serve-digest={digests['shop']}",
        f"train-digest={digests['shop-train']}",
    ]
    creates = [
        line
        for line in (tmp_path / "docker.log").read_text("utf-8").splitlines()
        if "create" in line
    ]
    assert creates == [
        "buildx imagetools create --tag ghcr.io/acme/shop:1.2.3 "
        f"ghcr.io/acme/shop@{digests['shop']}",
        "buildx imagetools create --tag ghcr.io/acme/shop-train:1.2.3 "
        f"ghcr.io/acme/shop-train@{digests['shop-train']}",
    ]


def test_every_action_is_pinned_to_a_commit_with_its_release(baked: BakedProject) -> None:
    for name in rendered_workflows(baked):
        for number, line in enumerate(baked.read(f".github/workflows/{name}").splitlines(), 1):
            if re.match(r"\s*(- )?uses: ", line) and not LOCAL_WORKFLOW.search(line):
                assert PINNED_LINE.fullmatch(line), f"{name}:{number}: {line.strip()}"
    dependabot = yaml.safe_load(baked.read(".github/dependabot.yml"))
    assert "github-actions" in [update["package-ecosystem"] for update in dependabot["updates"]]


def test_ci_gates_the_optional_checks_on_their_files(baked: BakedProject) -> None:
    steps = {
        target: step
        for step in load(baked, "ci.yml")["jobs"]["test"]["steps"]
        if "run" in step
        for target in make_targets(step["run"])
    }
    assert steps["k8s-validate"]["if"] == "hashFiles('deploy/k8s/**') != ''"
    assert steps["monitoring-check"]["if"] == "hashFiles('monitoring/**') != ''"
    # the pipeline smoke run never needs the project's tracking server
    assert steps["pipeline"]["env"]["MLFLOW_TRACKING_URI"] == "sqlite:///mlflow.db"
    ci = load(baked, "ci.yml")
    assert ci["jobs"]["image"]["if"] == "github.event_name == 'pull_request'"
    builds = [
        step for step in ci["jobs"]["image"]["steps"] if "build-push-action" in step.get("uses", "")
    ]
    assert [step["with"]["push"] for step in builds] == [False, False]
    assert all(step["with"]["cache-from"].startswith("type=gha") for step in builds)
    # the deploy jobs' gate on the manifests is the image job's output of that name
    deploy = load(baked, "deploy.yml")
    names = next(step for step in deploy["jobs"]["image"]["steps"] if step.get("id") == "names")
    assert "[ -d deploy/k8s ]" in names["run"]
    assert (
        deploy["jobs"]["image"]["outputs"]["kubernetes"] == "${{ steps.names.outputs.kubernetes }}"
    )
    for job in ("staging", "production"):
        assert KUBERNETES_JOB in deploy["jobs"][job]["if"]


def test_every_job_is_run_here_or_says_why_not(baked: BakedProject) -> None:
    names = rendered_workflows(baked)
    jobs = {(name, job) for name in names for job in load(baked, name)["jobs"]}
    listed = {key for key in RUN_HERE | set(NOT_RUN_HERE) if key[0] in names}
    assert jobs == listed
    assert RUN_HERE.isdisjoint(NOT_RUN_HERE)
    # the audit is in a job of its own, which no test here runs
    for name, job_name in RUN_HERE & jobs:
        for step in load(baked, name)["jobs"][job_name]["steps"]:
            assert "audit" not in make_targets(step.get("run", "")), f"{name}:{job_name}"


def test_the_api_image_is_scanned_as_it_was_built(baked: BakedProject) -> None:
    job = load(baked, "ci.yml")["jobs"]["image"]
    steps = job.get("steps", [])
    serve = next(step for step in steps if step.get("with", {}).get("target") == "serve")
    (scan,) = [step for step in steps if step.get("uses", "").startswith("aquasecurity/trivy-")]
    assert scan["uses"].startswith("aquasecurity/trivy-action@")
    # the scan reads the image the build loaded into the runner's Docker, under that name
    assert serve["with"]["load"] is True
    assert serve["with"]["tags"] == scan["with"]["image-ref"] == "${{ env.API_IMAGE }}"
    assert job["env"]["API_IMAGE"]
    assert steps.index(scan) > steps.index(serve)
    assert scan["with"]["severity"] == "HIGH,CRITICAL"
    assert scan["with"]["ignore-unfixed"] is True
    assert scan["with"]["exit-code"] == "1"


def test_the_audit_job_runs_pip_audit_on_exactly_the_lock(
    baked: BakedProject, answers: dict[str, Any], tmp_path: Path
) -> None:
    job = load(baked, "ci.yml")["jobs"]["audit"]
    assert [make_targets(step["run"]) for step in job.get("steps", []) if "run" in step] == [
        ["audit"]
    ]
    assert "needs" not in job  # it fails on its own, whatever the tests say
    ignore = baked.read(".pip-audit-ignore")
    assert all(line.startswith("#") for line in ignore.splitlines())  # no ID as rendered

    def pip_audit(project: BakedProject) -> list[str]:
        dry_run = project.check("make", "-n", "audit").stdout.splitlines()
        exported = next(line for line in dry_run if " export " in line)
        assert shlex.split(exported)[1:] == [
            "export",
            "--frozen",
            "--no-hashes",
            "--all-extras",
            "--all-groups",
            "--no-emit-project",
            "--quiet",
            "--output-file",
            "build/requirements-audit.txt",
        ]
        (audit,) = [line for line in dry_run if " pip-audit " in line]
        words = shlex.split(audit)
        start = words.index("tool")
        assert words[start : start + 6] == [
            "tool",
            "run",
            "--python",
            answers["python_version"],
            "--from",
            words[start + 5],
        ]
        assert re.fullmatch(r"pip-audit==\d+\.\d+\.\d+", words[start + 5])
        flags = words[start + 7 :]
        # the exported lock as it is: no resolution, no install, a failure to read one fails
        assert {"--strict", "--disable-pip", "--no-deps"} <= set(flags)
        assert flags[flags.index("--requirement") + 1] == "build/requirements-audit.txt"
        return [flags[i + 1] for i, flag in enumerate(flags) if flag == "--ignore-vuln"]

    assert pip_audit(baked) == []
    # each ID of .pip-audit-ignore, one a line with its reason, is ignored; comments are not IDs
    copy = BakedProject(tmp_path / baked.path.name, baked.answers)
    shutil.copytree(baked.path, copy.path, ignore=shutil.ignore_patterns(".git"))
    (copy.path / ".pip-audit-ignore").write_text(
        ignore + "GHSA-abcd-efgh-ijkl  # only in the CLI's --serve, never run here\n"
        "  PYSEC-2024-12 # dev tool only; # upgrade when 2.0 is out\n\n",
        encoding="utf-8",
    )
    assert pip_audit(copy) == ["GHSA-abcd-efgh-ijkl", "PYSEC-2024-12"]


def test_every_make_target_a_step_runs_exists(baked: BakedProject) -> None:
    referenced = referenced_targets(baked)
    assert {"setup", "lint", "test", "docker-lint", "pipeline", "summary"} <= set(referenced)
    missing = {
        target: where
        for target, where in referenced.items()
        if target not in makefile_targets(baked)
    }
    assert missing == {}


def test_every_cli_command_those_targets_run_exists(baked: BakedProject) -> None:
    targets = sorted(referenced_targets(baked))
    dry_run = baked.check("make", "-n", *targets).stdout
    called = cli_calls(baked, dry_run)
    assert "serve" in called
    assert called <= cli_commands(baked)


def test_deploy_targets_apply_what_the_overlays_render(baked: BakedProject, tmp_path: Path) -> None:
    if not baked.has_file("deploy/k8s/base/kustomization.yaml"):
        pytest.skip("deploy=none renders no manifests")
    env = stand_in_kubectl(tmp_path)
    log, applied = Path(env["KUBECTL_LOG"]), Path(env["KUBECTL_APPLIED"])
    image = "ghcr.io/acme-corp/some-repo"
    digests = ["sha256:" + letter * 64 for letter in "abcd"]
    # as CI deploys (by the digests its build pushed), and by hand with a tag
    releases = {
        "staging": [
            ([f"DIGEST={digests[0]}", f"TRAIN_DIGEST={digests[1]}"], digests[0], digests[1]),
            ([f"DIGEST={digests[2]}", f"TRAIN_DIGEST={digests[3]}"], digests[2], digests[3]),
        ],
        "production": [
            ([f"DIGEST={digests[0]}", f"TRAIN_DIGEST={digests[1]}"], digests[0], digests[1]),
            ([f"DIGEST={digests[2]}", f"TRAIN_DIGEST={digests[3]}"], digests[2], digests[3]),
        ],
        "canary": [(["TAG=0123abc"], ":0123abc", ":0123abc"), (["TAG=4567def"], ":4567def", "")],
    }
    for overlay, steps in releases.items():
        seen = []
        for refs, api_ref, train_ref in steps:
            api_image = f"{image}{'@' if api_ref.startswith('sha') else ''}{api_ref}"
            train_image = f"{image}-train{'@' if train_ref.startswith('sha') else ''}{train_ref}"
            log.unlink(missing_ok=True)
            baked.check("make", "k8s-release", f"ENV={overlay}", f"IMAGE={image}", *refs, env=env)
            docs = [doc for doc in yaml.safe_load_all(applied.read_text("utf-8")) if doc]
            deployments = [doc for doc in docs if doc["kind"] == "Deployment"]
            assert len(deployments) == 1
            deployment = deployments[0]["metadata"]
            namespace, name = deployment["namespace"], deployment["name"]
            assert {doc["metadata"].get("namespace", namespace) for doc in docs} == {namespace}
            containers = deployments[0]["spec"]["template"]["spec"]["containers"]
            assert containers[0]["name"] == "api"
            assert containers[0]["image"] == api_image
            for cronjob in (doc for doc in docs if doc["kind"] == "CronJob"):
                job = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                assert [c["image"] for c in job["containers"]] == [train_image]
            calls = log.read_text("utf-8").splitlines()
            assert f"apply -k build/k8s/release-{overlay}" in calls
            assert f"-n {namespace} rollout status deployment/{name} --timeout=10m" in calls
            has_jobs = any(doc["kind"] == "CronJob" for doc in docs)
            seen.append((api_image, train_image if has_jobs else ""))
        # the releases are recorded in the namespace, newest last
        history = baked.check(
            "kubectl", "-n", namespace, "get", f"configmap/{name}-releases",
            "-o", "jsonpath={.data.history}", env=env,
        ).stdout  # fmt: skip
        assert [(r["api"], r["train"]) for r in json.loads(history)] == seen
        # a rollback re-applies the images recorded before the last release, the CronJobs'
        # included; a second one has nowhere earlier to go (no back and forth)
        log.unlink()
        baked.check("make", "k8s-rollback", f"ENV={overlay}", env=env)
        docs = [doc for doc in yaml.safe_load_all(applied.read_text("utf-8")) if doc]
        [rolled] = [doc for doc in docs if doc["kind"] == "Deployment"]
        assert rolled["spec"]["template"]["spec"]["containers"][0]["image"] == seen[0][0]
        for cronjob in (doc for doc in docs if doc["kind"] == "CronJob"):
            job = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            assert [c["image"] for c in job["containers"]] == [seen[0][1]]
        assert f"-n {namespace} rollout status deployment/{name} --timeout=10m" in (
            log.read_text("utf-8").splitlines()
        )
        again = baked.run("make", "k8s-rollback", f"ENV={overlay}", env=env)
        assert again.returncode == 2, again.stderr
        assert "no earlier release recorded" in again.stderr
        # the smoke test is a Job in that namespace calling the Service by its name
        smoke = baked.check("make", "-n", "k8s-smoke", f"ENV={overlay}").stdout
        assert f"-n {namespace} get deployment/{name} " in smoke
        assert f"-n {namespace} apply -f -" in smoke
    # a digest that is not one, or half a pair, applies nothing
    for refs in (
        [f"DIGEST={digests[0]}", "TRAIN_DIGEST=latest"],
        [f"DIGEST={digests[0]}"],
    ):
        log.unlink(missing_ok=True)
        refused = baked.run("make", "k8s-release", "ENV=staging", f"IMAGE={image}", *refs, env=env)
        assert refused.returncode != 0, refs
        assert "sha256:<64 hex" in refused.stderr, refused.stderr
        assert not log.exists()
    # ENV never reaches a shell unchecked
    bad = baked.run("make", "k8s-release", "ENV=staging; touch pwned", env=env)
    assert bad.returncode != 0
    assert "use one of" in bad.stderr
    assert not (baked.path / "pwned").exists()


def test_only_ci_decides_what_runs_in_production(baked: BakedProject, tmp_path: Path) -> None:
    """make k8s-deploy would apply the overlays' newTag over the digest CI deployed."""
    if not baked.has_file("deploy/k8s/base/kustomization.yaml"):
        pytest.skip("deploy=none renders no manifests")
    env = stand_in_kubectl(tmp_path)
    for overlay in ("production", "canary"):
        refused = baked.run("make", "k8s-deploy", f"ENV={overlay}", env=env)
        assert refused.returncode == 2, refused.stderr
        assert f"make k8s-release ENV={overlay}" in refused.stderr
        assert not Path(env["KUBECTL_STATE"]).exists(), "nothing was applied"


def test_a_failed_smoke_job_fails_the_target(baked: BakedProject, tmp_path: Path) -> None:
    if not baked.has_file("deploy/k8s/smoke-job.yaml"):
        pytest.skip("deploy=none renders no manifests")
    slug, digest = baked.path.name, "sha256:" + "f" * 64
    fake = tmp_path / "bin"
    fake.mkdir()
    # a CLI whose server never answers and whose smoke test fails, as against a bad release
    (fake / slug).write_text(
        '#!/bin/sh\n[ "$1" = serve ] && exec sleep 60\necho "not ready" >&2\nexit 1\n',
        encoding="utf-8",
    )
    (fake / slug).chmod(0o755)
    env = stand_in_kubectl(tmp_path / "kubectl", fake)
    baked.check(
        "make", "k8s-release", "ENV=staging", "IMAGE=ghcr.io/acme/x",
        f"DIGEST={digest}", f"TRAIN_DIGEST={digest}", env=env,
    )  # fmt: skip
    failed = baked.run("make", "k8s-smoke", "ENV=staging", env=env)
    assert failed.returncode != 0
    assert f"smoke test failed (job/{slug}-smoke): {slug}-staging/service/{slug}" in failed.stderr
    assert "not ready" in failed.stdout + failed.stderr, "the Job's log is shown"


def test_the_smoke_job_calls_the_service_from_inside(baked: BakedProject) -> None:
    if not baked.has_file("deploy/k8s/smoke-job.yaml"):
        pytest.skip("deploy=none renders no manifests")
    slug = baked.path.name
    job = yaml.safe_load(baked.read("deploy/k8s/smoke-job.yaml"))
    [service] = [
        doc
        for doc in yaml.safe_load_all(
            baked.check("kubectl", "kustomize", "deploy/k8s/overlays/production").stdout
        )
        if doc and doc["kind"] == "Service"
    ]
    [container] = job["spec"]["template"]["spec"]["containers"]
    url = container["command"][container["command"].index("--url") + 1]
    port = service["spec"]["ports"][0]["port"]
    assert url == f"http://{service['metadata']['name']}:{port}"
    assert container["command"][:2] == [slug, "smoke"]
    assert "smoke" in cli_commands(baked)
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# --- end to end ---------------------------------------------------------------------------

GITHUB_RUNNER = {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/my-ml-service"}


def run_job(
    project: BakedProject,
    workflow: str,
    job_name: str,
    runner: Path,
    env: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    conditions: dict[str, bool] | None = None,
) -> dict[str, str]:
    """The job's `run:` steps, in order, as a runner runs them (bash -eo pipefail, the
    GITHUB_* files); `uses:` steps are GitHub's and skipped. An expression in an `env:`
    value stands for `values[key]`, else "" (an unset secret or variable); a step's `if:`
    is evaluated when it tests for files (hashFiles), else looked up in `conditions`.
    Returns the step outputs written to GITHUB_OUTPUT."""
    assert (workflow, job_name) in RUN_HERE, NOT_RUN_HERE.get((workflow, job_name), "unlisted")
    runner.mkdir(parents=True, exist_ok=True)
    document = load(project, workflow)
    job = document["jobs"][job_name]
    base = {
        **{key: str(value) for key, value in document.get("env", {}).items()},
        **GITHUB_RUNNER,
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_SHA": "0" * 40,
        "GITHUB_STEP_SUMMARY": str(runner / "summary.md"),
        "GITHUB_ENV": str(runner / "env"),
        "RUNNER_TEMP": str(runner),
        **(env or {}),
    }
    outputs: dict[str, str] = {}
    for step in job.get("steps", []):
        if "uses" in step:
            continue
        condition = step.get("if")
        if condition is not None:
            gate = HASH_FILES.fullmatch(str(condition))
            if gate is None:
                assert condition in (conditions or {}), f"{workflow}:{job_name}: `if: {condition}`?"
                if not (conditions or {})[condition]:
                    continue
            elif not any(project.path.glob(gate.group(1))):
                continue
        step_env = {
            key: (values or {}).get(key, "") if "${{" in str(value) else str(value)
            for key, value in {**job.get("env", {}), **step.get("env", {})}.items()
        }
        output = runner / "output"
        output.write_text("", encoding="utf-8")
        result = project.run(
            "bash",
            "--noprofile",
            "--norc",
            "-eo",
            "pipefail",
            "-c",
            step["run"],
            env={**base, **step_env, "GITHUB_OUTPUT": str(output)},
            timeout=1500,
        )
        assert result.returncode == 0, (
            f"{workflow}:{job_name}: step {step.get('name', step['run'])!r} exited "
            f"{result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n"
            f"{result.stderr[-4000:]}"
        )
        for line in output.read_text("utf-8").splitlines():
            key, _, value = line.partition("=")
            outputs[key] = value
        # what a step appends to GITHUB_ENV is in the environment of the steps after it
        if Path(base["GITHUB_ENV"]).exists():
            for line in Path(base["GITHUB_ENV"]).read_text("utf-8").splitlines():
                key, _, value = line.partition("=")
                base[key] = value
    return outputs


@pytest.fixture(scope="module")
def installed(cookies_session: Any) -> BakedProject:
    return install_project(cookies_session, {})


@pytest.fixture(scope="module")
def ci_runner(installed: BakedProject, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ci.yml's test job, run here step by step; the runner's directory (job summary…)."""
    runner = tmp_path_factory.mktemp("ci-runner")
    env = {**setup_env(template_defaults()), "PORT": str(free_port())}
    run_job(installed, "ci.yml", "test", runner, env=env)
    return runner


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_the_ci_test_job_passes_here_step_by_step(installed: BakedProject, ci_runner: Path) -> None:
    summary = (ci_runner / "summary.md").read_text("utf-8")
    assert "## Test metrics" in summary
    assert "# Model card" in summary
    assert "Quality gate: passed." in summary
    assert installed.has_file("build/model/registry.json")  # what the image job ships
    assert installed.has_file("dvc.lock")


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_the_cli_commands_the_workflows_run_are_in_its_help(installed: BakedProject) -> None:
    dry_run = installed.check("make", "-n", *sorted(referenced_targets(installed))).stdout
    shown = installed.check(f".venv/bin/{installed.path.name}", "--help").stdout
    listed = set(re.findall(r"^\s{4}([a-z][a-z-]*)\s", shown, re.MULTILINE))
    assert cli_calls(installed, dry_run) <= listed


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_the_train_job_runs_here(installed: BakedProject, ci_runner: Path, tmp_path: Path) -> None:
    env = setup_env(template_defaults())
    # a runner's disk is gone after the job: a local DVC remote is refused in CI...
    refused = installed.run("make", "ci-remote-check", env={**env, **GITHUB_RUNNER})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "the DVC remote is a local path (" in refused.stderr, refused.stderr
    assert "-dvc-storage)" in refused.stderr, refused.stderr
    assert "ALLOW_LOCAL_DVC_REMOTE=true" in refused.stderr
    # ...unless the disk outlives it, as this machine's does. No secrets: tracking falls
    # back to sqlite; the DVC remote is the local folder.
    env["ALLOW_LOCAL_DVC_REMOTE"] = "true"
    run_job(installed, "train.yml", "train", tmp_path, env=env)
    assert "# Retraining" in (tmp_path / "summary.md").read_text("utf-8")
    assert "# Model card" in installed.read("build/summary.md")
    remote = installed.path.parent / f"{installed.path.name}-dvc-storage"
    assert any(path.is_file() for path in remote.rglob("*")), "ci-push pushed nothing"


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_the_drift_check_tells_drift_from_no_drift(
    installed: BakedProject, ci_runner: Path, tmp_path: Path
) -> None:
    env = setup_env(template_defaults())
    clean = run_job(
        installed,
        "drift.yml",
        "check",
        tmp_path / "clean",
        env=env,
        values={"CURRENT": "data/processed/test.csv"},
    )
    assert clean == {"detected": "false", "degraded": "false"}
    installed.check(
        ".venv/bin/python",
        "-c",
        "import pandas as pd; frame = pd.read_csv('data/processed/test.csv');"
        "features = [c for c in frame.columns if c != 'target'];"
        "frame[features] = frame[features] * 3 + 1; frame.to_csv('build/drifted.csv', index=False)",
    )
    drifted = run_job(
        installed,
        "drift.yml",
        "check",
        tmp_path / "drifted",
        env=env,
        values={"CURRENT": "build/drifted.csv"},
    )
    assert drifted == {"detected": "true", "degraded": "false"}
    assert "drift" in (tmp_path / "drifted/summary.md").read_text("utf-8").lower()


LABELLED_STORE = """
import sys
from {module}.prediction_store import PredictionStore, Stored
store = PredictionStore(sys.argv[1])
right = sys.argv[2] == "right"
rows = [Stored(f"id-{{n}}", 1.0e9, "m", "1", "champion", None, 1, [0.1, 0.9]) for n in range(150)]
store.add_predictions(rows)
store.add_labels([(row.id, 1 if right else 0) for row in rows])
"""


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_the_drift_cronjob_script_tells_its_three_outcomes_apart(
    installed: BakedProject, ci_runner: Path, tmp_path: Path
) -> None:
    """The drift CronJob's script as kustomize renders it, run here with the project's
    environment for the image's: 0 no drift, 1 drift, 2 a problem to fix (the Job ends),
    3 could not check (the Job retries: the podFailurePolicy fails the Job on 1 and 2 only)."""
    slug = installed.path.name
    docs = yaml.safe_load_all(
        installed.check("kubectl", "kustomize", "deploy/k8s/overlays/production").stdout
    )
    [cronjob] = [
        doc
        for doc in docs
        if doc and doc["kind"] == "CronJob" and doc["metadata"]["name"] == f"{slug}-drift"
    ]
    assert cronjob["spec"]["suspend"] is True, "nothing to check until DRIFT_CURRENT_URL is set"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    [fail, ignore] = job["podFailurePolicy"]["rules"]
    assert fail["action"] == "FailJob"
    assert fail["onExitCodes"]["values"] == [1, 2]
    assert ignore == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    [container] = job["template"]["spec"]["containers"]
    script = container["args"][0]
    sample = installed.path / "data/raw/sample.csv"
    shifted = tmp_path / "shifted.csv"
    installed.check(
        ".venv/bin/python",
        "-c",
        "import pandas as pd, sys; frame = pd.read_csv(sys.argv[1]).drop(columns=['target']); "
        "frame['mean_radius'] *= 2; frame.to_csv(sys.argv[2], index=False)",
        str(sample),
        str(shifted),
    )
    registry = f"sqlite:///{installed.path / 'mlflow.db'}"
    cases = {
        "no drift": ({"DRIFT_CURRENT_URL": sample.as_uri()}, 0),
        "drift": ({"DRIFT_CURRENT_URL": shifted.as_uri()}, 1),
        "no URL": ({}, 2),
        "no file there": ({"DRIFT_CURRENT_URL": (tmp_path / "absent.csv").as_uri()}, 2),
        "no backend for it": ({"DRIFT_CURRENT_URL": "nosuchprotocol://bucket/x.csv"}, 2),
        "storage out of reach": ({"DRIFT_CURRENT_URL": "ftp://127.0.0.1:9/x.csv"}, 3),
        "registry out of reach": (
            {
                "DRIFT_CURRENT_URL": sample.as_uri(),
                "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            },
            3,
        ),
    }
    path = f"{installed.path / '.venv/bin'}{os.pathsep}{os.environ['PATH']}"
    for case, (variables, expected) in cases.items():
        workspace = tmp_path / case.replace(" ", "-")
        workspace.mkdir()
        env = {"PATH": path, "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": registry, **variables}
        if "DRIFT_CURRENT_URL" not in variables:
            env["DRIFT_CURRENT_URL"] = ""
        result = subprocess.run(
            [*container["command"], script],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == expected, f"{case}: {output[-2000:]}"
        assert "Traceback" not in output, f"{case}: {output[-2000:]}"


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_the_drift_workflow_retrains_on_live_performance_below_the_gate(
    installed: BakedProject, ci_runner: Path, tmp_path: Path
) -> None:
    env = setup_env(template_defaults())
    outputs = {}
    for labels in ("right", "wrong"):
        store = f"sqlite:///{tmp_path / labels}.db"
        script = LABELLED_STORE.format(module=installed.module)
        installed.check(".venv/bin/python", "-c", script, store, labels)
        values = {"PREDICTION_STORE_URL": store}
        outputs[labels] = run_job(
            installed, "drift.yml", "check", tmp_path / labels, env=env, values=values
        )
    assert outputs["right"] == {"detected": "false", "degraded": "false"}
    assert outputs["wrong"] == {"detected": "false", "degraded": "true"}
    summary = (tmp_path / "wrong/summary.md").read_text("utf-8")
    assert "below the gate: v1 champion: accuracy = 0.0000" in summary


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_the_batch_job_scores_a_file_and_keeps_its_rejects(
    installed: BakedProject, ci_runner: Path, tmp_path: Path
) -> None:
    env = setup_env(template_defaults())
    # the registry the ci job filled (a secret here; without one the job trains first)
    values = {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}
    rejected_step = {"steps.score.outputs.rejected == 'true'": False}
    # a file DVC tracks, not in the workspace: read from DVC's storage through dvc://
    (installed.path / "data/raw/sample.csv").unlink()
    values["INPUT"] = "data/raw/sample.csv"
    clean = run_job(installed, "batch.yml", "score", tmp_path / "clean", env, values, rejected_step)
    installed.check(".venv/bin/dvc", "checkout", "data/raw/sample.csv")
    assert clean == {"rejected": "false"}
    summary = (tmp_path / "clean/summary.md").read_text("utf-8")
    assert "Input: `dvc://data/raw/sample.csv`" in summary
    assert "Rows scored: 569" in summary
    assert not installed.has_file("build/batch/predictions.csv.rejects.csv")

    installed.check(
        ".venv/bin/python", "-c",
        "import pandas as pd; frame = pd.read_csv('data/processed/test.csv');"
        "frame = frame.astype({'mean_radius': object}); frame.loc[0, 'mean_radius'] = 'wide';"
        "frame.to_csv('build/bad.csv', index=False)",
    )  # fmt: skip
    values["INPUT"] = "build/bad.csv"
    bad = run_job(installed, "batch.yml", "score", tmp_path / "bad", env, values, rejected_step)
    assert bad == {"rejected": "true"}
    rejects = installed.read("build/batch/predictions.csv.rejects.csv").splitlines()
    assert rejects == ["line,field,reason", "2,mean_radius,not a number: wide"]
    assert "Rejected rows: 1" in (tmp_path / "bad/summary.md").read_text("utf-8")


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_k8s_smoke_runs_a_job_that_calls_the_service(
    installed: BakedProject, ci_runner: Path, tmp_path: Path
) -> None:
    slug, digest = installed.path.name, "sha256:" + "e" * 64
    env = stand_in_kubectl(tmp_path, installed.path / ".venv/bin")
    missing = installed.run("make", "k8s-smoke", "ENV=staging", env=env)
    assert missing.returncode == 2
    assert f"{slug}-staging has no deployment/{slug}" in missing.stderr
    installed.check(
        "make", "k8s-release", "ENV=staging", "IMAGE=ghcr.io/acme/x",
        f"DIGEST={digest}", f"TRAIN_DIGEST={digest}", env=env,
    )  # fmt: skip
    result = installed.check("make", "k8s-smoke", "ENV=staging", env=env)
    assert "predicted" in result.stdout
    assert f"smoke test passed: {slug}-staging/service/{slug}" in result.stdout
    state = json.loads(Path(env["KUBECTL_STATE"]).read_text("utf-8"))
    job = state[f"{slug}-staging/Job/{slug}-smoke"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/acme/x@{digest}", "the image the API runs"


@pytest.mark.e2e
@pytest.mark.xdist_group("workflows-e2e")
def test_the_rollback_job_runs_here(
    installed: BakedProject, ci_runner: Path, tmp_path: Path
) -> None:
    # a second registered version of the same run, made champion: something to roll back
    installed.check(f".venv/bin/{installed.path.name}", "register")
    installed.check("make", "promote", "VERSION=2")
    slug = installed.path.name
    env = {
        **setup_env(template_defaults()),
        **stand_in_kubectl(tmp_path, installed.path / ".venv/bin"),
    }
    image, digests = "ghcr.io/acme/x", ["sha256:" + letter * 64 for letter in "12"]
    for digest in digests:  # two releases: the rollback goes back to the first
        installed.check(
            "make", "k8s-release", "ENV=production", f"IMAGE={image}",
            f"DIGEST={digest}", f"TRAIN_DIGEST={digest}", env=env,
        )  # fmt: skip
    Path(env["KUBECTL_LOG"]).unlink()
    run_job(
        installed,
        "deploy.yml",
        "rollback",
        tmp_path / "runner",
        env=env,
        values={
            "TARGET": "production",
            "KUBE_CONFIG": "YXBpVmVyc2lvbjogdjEK",  # base64 of a stand-in kubeconfig
            "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db",
        },
        conditions={"github.event_name == 'workflow_dispatch' && inputs.model": True},
    )
    calls = Path(env["KUBECTL_LOG"]).read_text("utf-8").splitlines()
    assert "apply -k build/k8s/release-production" in calls
    state = json.loads(Path(env["KUBECTL_STATE"]).read_text("utf-8"))
    deployment = state[f"{slug}-production/Deployment/{slug}"]["spec"]["template"]["spec"]
    assert deployment["containers"][0]["image"] == f"{image}@{digests[0]}"
    assert state[f"{slug}-production/Job/{slug}-smoke"]["status"]["conditions"][0]["type"] == (
        "Complete"
    )
    assert (tmp_path / "runner/kubeconfig").read_text("utf-8") == "apiVersion: v1\n"
    champion = [
        line
        for line in installed.check("make", "models").stdout.splitlines()
        if "@champion" in line
    ]
    assert [line.split()[0] for line in champion] == ["1"]
