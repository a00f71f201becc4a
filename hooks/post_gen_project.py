"""Shape the rendered project to the answers: prune, pick the license, init git.

Runs inside the new project directory. Nothing here touches the network, and a
failing git step only warns: the rendered project is never thrown away for it.

`cruft update` and `cruft diff` render the template twice into temporary folders and
diff the results: there the hook prunes but neither creates a repository nor prints
next steps (the rendered pyproject.toml also tells cruft to skip `.git`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# See pre_gen_project.py: tojson escapes single quotes, so this literal cannot break.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

Answers = Mapping[str, Any]


def remove(root: Path, *relative_paths: str) -> None:
    for relative in relative_paths:
        path = root / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def remove_github_ci(root: Path) -> None:
    remove(root, ".github")


def remove_kubernetes(root: Path) -> None:
    remove(root, "deploy", "make/kubernetes.mk")


def remove_monitoring(root: Path, module_name: str) -> None:
    """Prometheus, Alertmanager and Grafana files, their compose services, drift detection."""
    remove(root, "monitoring", "docker-compose.monitoring.yml", f"src/{module_name}/monitoring")
    remove(root, "make/monitoring.mk")
    remove(root, "tests/test_drift.py", "tests/test_drift_serving.py")
    remove(root, "deploy/k8s/components")  # the kustomize component of the monitoring objects
    remove(root, ".github/workflows/drift.yml")


def remove_docker_compose(root: Path) -> None:
    remove(
        root, "docker-compose.yml", "docker-compose.monitoring.yml", "make/compose.mk", "tracking"
    )


def remove_airflow(root: Path) -> None:
    """The Airflow DAG, its pod template, its environment and its tests."""
    remove(root, "dags", "orchestration/airflow", "make/airflow.mk")


def remove_kubeflow(root: Path) -> None:
    """The Kubeflow pipeline, its steps, its environment and its tests."""
    remove(root, "pipelines", "orchestration/kubeflow", "make/kubeflow.mk")


def remove_feature_store(root: Path, module_name: str) -> None:
    """Feast's repository, its glue and its tests; the CronJob that fills the online store."""
    remove(root, "feature_repo", f"src/{module_name}/features.py")
    remove(root, f"src/{module_name}/serving/online_features.py")
    remove(root, "tests/test_feature_store.py", "tests/feature_store_support.py")
    remove(root, "make/features.mk")
    remove(root, "deploy/k8s/base/materialize-cronjob.yaml")


def remove_if_empty(directory: Path) -> None:
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def select_license(root: Path, license_name: str) -> None:
    """Keep licenses/<name> as LICENSE; the other texts go."""
    (root / "licenses" / license_name).replace(root / "LICENSE")
    remove(root, "licenses")


def prune(root: Path, answers: Answers) -> None:
    if answers["ci"] == "none":
        remove_github_ci(root)
    if answers["deploy"] == "none":
        remove_kubernetes(root)
    if answers["monitoring"] == "none":
        remove_monitoring(root, answers["module_name"])
    if answers["docker_compose"] == "no":
        remove_docker_compose(root)
    if answers["orchestrator"] != "airflow":
        remove_airflow(root)
    if answers["orchestrator"] != "kubeflow":
        remove_kubeflow(root)
    remove_if_empty(root / "orchestration")
    if answers["feature_store"] == "none":
        remove_feature_store(root, answers["module_name"])
    select_license(root, answers["open_source_license"])
    remove_if_empty(root / "make")  # no optional part, no make/*.mk


def git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def init_git(root: Path, answers: Answers) -> str:
    """git init + first commit; returns a one-line report of what happened."""
    if shutil.which("git") is None:
        return "git not found: skipped 'git init' (install git, then run it yourself)"
    if git(root.parent, "rev-parse", "--is-inside-work-tree").stdout.strip() == "true":
        return "already inside a git repository: skipped 'git init'"
    steps = [("init", "--quiet"), ("checkout", "--quiet", "-b", "main"), ("add", "--all")]
    for step in steps:
        result = git(root, *step)
        if result.returncode != 0:
            return f"'git {step[0]}' failed ({result.stderr.strip()}): commit the project yourself"
    identity: list[str] = []
    if not git(root, "config", "user.email").stdout.strip():
        identity = ["-c", f"user.name={answers['author_name']}"]
        identity += ["-c", f"user.email={answers['author_email']}"]
    # A template must not stop on a signing passphrase prompt or a global commit hook.
    commit = git(
        root,
        *identity,
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        "Initial commit from cookiecutter-mlops",
    )
    if commit.returncode != 0:
        return f"'git commit' failed ({commit.stderr.strip()}): commit the project yourself"
    return "git repository created on branch main with a first commit (DVC is set up in .dvc/)"


def rendered_by_cruft(answers: Answers) -> bool:
    # cruft adds _commit; cookiecutter's own command line adds _output_dir.
    return "_commit" in answers and "_output_dir" not in answers


def is_cruft_scratch_render(answers: Answers, root: Path) -> bool:
    """A render cruft makes to compute a diff: in a fresh tmpXXXX folder of the temp dir."""
    scratch = root.parent
    in_temp = scratch.parent == Path(tempfile.gettempdir()).resolve()
    return rendered_by_cruft(answers) and in_temp and scratch.name.startswith("tmp")


def next_steps(root: Path, git_report: str | None, cruft: bool = False) -> str:
    lines = [f"Created {root}"]
    if git_report:
        lines.append(git_report)
    lines += ["Next steps:", f"  cd {root.name}"]
    if cruft:  # cruft writes .cruft.json after this hook, so after the first commit
        lines.append("  git add .cruft.json && git commit -m 'Record the template version'")
    lines += [
        "  make setup   # .venv with uv, the project installed with its train, serve and dev sets",
        "  make test    # the project's tests",
        "  make help    # every target",
    ]
    return "\n".join(lines)


def main(answers: Answers, root: Path) -> int:
    prune(root, answers)
    if is_cruft_scratch_render(answers, root):
        return 0
    git_report = init_git(root, answers) if answers["initialize_git"] == "yes" else None
    print(next_steps(root, git_report, cruft=rendered_by_cruft(answers)))
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(ANSWERS_JSON), Path.cwd()))
