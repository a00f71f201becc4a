"""Unit tests of the hooks' functions, imported directly (no rendering)."""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import post_gen_project as post
import pre_gen_project as pre
import pytest
from baked import TEMPLATE_DIR, template_defaults
from combinations import HOSTILE_NAME, HOSTILE_TEXT


@pytest.fixture
def answers() -> dict[str, Any]:
    """Default answers as cookiecutter would render them."""
    values = template_defaults()
    values["project_slug"] = "my-ml-service"
    values["module_name"] = "my_ml_service"
    return values


def problems(answers: dict[str, Any], **changes: Any) -> list[pre.Problem]:
    return pre.validate({**answers, **changes})


def test_defaults_are_valid(answers: dict[str, Any]) -> None:
    assert problems(answers) == []


def test_problem_is_one_line_naming_key_reason_and_fix() -> None:
    line = str(pre.Problem("author_email", "'x' is not an email address", "use name@domain.tld"))
    assert line == "ERROR: author_email: 'x' is not an email address — use name@domain.tld"


@pytest.mark.parametrize("key", ["project_name", "description", "author_name"])
@pytest.mark.parametrize(
    "text",
    [
        HOSTILE_NAME,
        HOSTILE_TEXT,
        "key: value # not a comment",
        "'",
        '"',
        "\\",
        "${HOME} $(rm -rf /) `id`",
        "Ünïcödé 名前 🚀",
        "[link](http://x) *bold* _it_",
    ],
)
def test_unusual_text_is_accepted(answers: dict[str, Any], key: str, text: str) -> None:
    assert problems(answers, **{key: text}) == []


@pytest.mark.parametrize("key", ["project_name", "description", "author_name"])
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("one\ntwo", "line break"),
        ("tab\there", "control character"),
        ("nul\x00", "control character"),
        ("<b>bold</b>", "'<' or '>'"),
        ("{" + "{ cookiecutter.x }}", "Jinja"),
        ("{" + "% if x %}", "Jinja"),
        ("x" * 301, "characters long"),
    ],
)
def test_text_that_would_break_a_file_is_rejected(
    answers: dict[str, Any], key: str, text: str, reason: str
) -> None:
    found = problems(answers, **{key: text})
    assert [p.key for p in found] == [key]
    assert reason in found[0].what


@pytest.mark.parametrize("key", ["project_name", "author_name"])
def test_names_must_not_be_empty(answers: dict[str, Any], key: str) -> None:
    assert [p.key for p in problems(answers, **{key: "  "})] == [key]


def test_description_may_be_empty(answers: dict[str, Any]) -> None:
    assert problems(answers, description="") == []


@pytest.mark.parametrize("slug", ["a", "ml-2", "3d-model", "x" * 63])
def test_valid_slugs(answers: dict[str, Any], slug: str) -> None:
    without_kubernetes = {**answers, "deploy": "none"}
    found = problems(without_kubernetes, project_slug=slug)
    assert [p for p in found if p.key == "project_slug"] == []


@pytest.mark.parametrize(("slug", "valid"), [("a" * 44, True), ("a" * 45, False), ("3d", False)])
def test_kubernetes_names_bound_the_slug(answers: dict[str, Any], slug: str, valid: bool) -> None:
    found = problems({**answers, "deploy": "kubernetes"}, project_slug=slug)
    assert [p.key for p in found if p.key == "project_slug"] == ([] if valid else ["project_slug"])


@pytest.mark.parametrize(
    "slug", ["", "My-Project", "my_project", "-lead", "trail-", "a/b", "../up", "x" * 64, "é"]
)
def test_invalid_slugs(answers: dict[str, Any], slug: str) -> None:
    assert [p.key for p in problems(answers, project_slug=slug)] == ["project_slug"]


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("3d_model", "identifier"),
        ("My_Module", "identifier"),
        ("my-module", "identifier"),
        ("", "identifier"),
        ("class", "keyword"),
        ("json", "standard library"),
        ("logging", "standard library"),
        ("mlflow", "shadows a package"),
        ("sklearn", "shadows a package"),
        ("pandas", "shadows a package"),
        ("test", "shadows a package"),
    ],
)
def test_invalid_module_names(answers: dict[str, Any], module: str, reason: str) -> None:
    found = problems(answers, module_name=module)
    assert [p.key for p in found] == ["module_name"]
    assert reason in found[0].what


@pytest.mark.parametrize("email", ["a@b.io", "first.last+tag@sub.example.co.uk"])
def test_valid_emails(answers: dict[str, Any], email: str) -> None:
    assert problems(answers, author_email=email) == []


@pytest.mark.parametrize("email", ["", "plain", "a@b", "a b@c.io", "a@b.c", '"q"@x.io', "a@@b.io"])
def test_invalid_emails(answers: dict[str, Any], email: str) -> None:
    assert [p.key for p in problems(answers, author_email=email)] == ["author_email"]


@pytest.mark.parametrize("owner", ["-x", "x-", "a--b", "a b", "a_b", "x" * 40, ""])
def test_invalid_github_owner_rejected_when_used(answers: dict[str, Any], owner: str) -> None:
    for ci, deploy in [("github", "none"), ("none", "kubernetes"), ("github", "kubernetes")]:
        found = problems(answers, github_owner=owner, ci=ci, deploy=deploy)
        assert [p.key for p in found] == ["github_owner"]


def test_github_owner_unchecked_without_github_or_kubernetes(answers: dict[str, Any]) -> None:
    assert problems(answers, github_owner="not checked", ci="none", deploy="none") == []


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///mlflow.db",
        "sqlite:////var/lib/mlflow/mlflow.db",
        "http://127.0.0.1:5000",
        "https://mlflow.example.com",
        "postgresql://user@db:5432/mlflow",
        "postgresql+psycopg2://user@db/mlflow",
        "databricks",
        "databricks://my-profile",
    ],
)
def test_supported_tracking_uris(answers: dict[str, Any], uri: str) -> None:
    assert problems(answers, mlflow_tracking_uri=uri) == []


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("./mlruns", "file store"),
        ("file:///tmp/mlruns", "file store"),
        ("mlruns", "file store"),
        ("sqlite://", "no database file"),
        ("sqlite:///", "no database file"),
        ("http://", "no host"),
        ("postgresql:///db", "no host"),
        ("ftp://host/x", "not supported"),
        (" sqlite:///mlflow.db", "padded"),
        ("postgresql://user:secret@db/mlflow", "password"),
        ("https://mlflow.example.com/" + "x" * 60, "characters long"),
        ("", "empty"),
    ],
)
def test_unsupported_tracking_uris(answers: dict[str, Any], uri: str, reason: str) -> None:
    found = problems(answers, mlflow_tracking_uri=uri)
    assert [p.key for p in found] == ["mlflow_tracking_uri"]
    assert reason in found[0].what


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("local", ""),
        ("local", "/srv/dvc"),
        ("local", "../shared-dvc"),
        ("s3", "s3://bucket/path"),
        ("gcs", "gs://bucket"),
        ("azure", "azure://container/path"),
        ("none", ""),
    ],
)
def test_supported_dvc_remotes(answers: dict[str, Any], remote: str, url: str) -> None:
    assert problems(answers, dvc_remote=remote, dvc_remote_url=url) == []


@pytest.mark.parametrize(
    ("remote", "url", "reason"),
    [
        ("s3", "", "required"),
        ("gcs", "", "required"),
        ("azure", "", "required"),
        ("s3", "gs://bucket", "does not match"),
        ("gcs", "s3://bucket", "does not match"),
        ("azure", "azure://", "does not match"),
        ("local", "s3://bucket", "takes a directory"),
        ("none", "/srv/dvc", "ignore"),
    ],
)
def test_unsupported_dvc_remotes(
    answers: dict[str, Any], remote: str, url: str, reason: str
) -> None:
    found = problems(answers, dvc_remote=remote, dvc_remote_url=url)
    assert [p.key for p in found] == ["dvc_remote_url"]
    assert reason in found[0].what


@pytest.mark.parametrize("key", sorted(pre.CHOICES))
def test_choices_outside_the_list_are_rejected(answers: dict[str, Any], key: str) -> None:
    assert [p.key for p in problems(answers, **{key: "bogus"})] == [key]


def test_kubeflow_needs_kubernetes(answers: dict[str, Any]) -> None:
    [found] = problems(answers, orchestrator="kubeflow", deploy="none")
    assert found.key == "orchestrator"
    assert "deploy=kubernetes" in found.fix
    assert problems(answers, orchestrator="kubeflow", deploy="kubernetes") == []
    assert problems(answers, orchestrator="airflow", deploy="none") == []


def test_every_problem_is_reported_at_once(answers: dict[str, Any]) -> None:
    found = problems(answers, author_email="x", module_name="json", dvc_remote="s3")
    assert {p.key for p in found} == {"author_email", "module_name", "dvc_remote_url"}


def test_main_prints_each_problem_and_returns_1(
    answers: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    answers = {
        **answers,
        "author_email": "x",
        "python_version": "2.7",
        "_output_dir": str(tmp_path),
    }
    assert pre.main(answers) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("ERROR: python_version: '2.7' is not supported — choose one of")
    assert lines[1].startswith("ERROR: author_email:")
    assert "nothing was generated" in lines[-3]
    assert lines[-2].startswith("Your answers are kept in this command: fix python_version, ")
    assert lines[-1].startswith("  cookiecutter --no-input")


def test_main_returns_0_and_prints_nothing_for_valid_answers(
    answers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert pre.main(answers) == 0
    assert capsys.readouterr() == ("", "")


def test_created_parents_are_those_inside_the_output_dir(tmp_path: Path) -> None:
    out = str(tmp_path)
    assert pre.created_parents("a/b/c", out) == [tmp_path / "a" / "b", tmp_path / "a"]
    assert pre.created_parents("plain", out) == []
    assert pre.created_parents("../escape/x", out) == []
    assert pre.created_parents("a/../b", out) == [tmp_path / "a"]


# post_gen_project


ORCHESTRATOR_FILES = {
    "airflow": ["dags/pkg_training.py", "make/airflow.mk", "orchestration/airflow/pyproject.toml"],
    "kubeflow": ["make/kubeflow.mk", "orchestration/kubeflow/pyproject.toml", "pipelines/steps.py"],
}


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """A stand-in for a rendered project: the paths the post-gen hook acts on."""
    root = tmp_path / "project"
    for relative in [
        ".github/workflows/ci.yml",
        "deploy/k8s/base/kustomization.yaml",
        "monitoring/prometheus/prometheus.yml",
        "docker-compose.yml",
        "make/compose.mk",
        "make/kubernetes.mk",
        "make/monitoring.mk",
        "src/pkg/__init__.py",
        *ORCHESTRATOR_FILES["airflow"],
        *ORCHESTRATOR_FILES["kubeflow"],
        *(f"licenses/{name}" for name in ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary")),
    ]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(relative, encoding="utf-8")
    return root


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_prune_keeps_everything_the_answers_enable(rendered: Path, answers: dict[str, Any]) -> None:
    post.prune(rendered, answers)
    assert tree(rendered) == [
        ".github/workflows/ci.yml",
        "LICENSE",
        "deploy/k8s/base/kustomization.yaml",
        "docker-compose.yml",
        "make/compose.mk",
        "make/kubernetes.mk",
        "make/monitoring.mk",
        "monitoring/prometheus/prometheus.yml",
        "src/pkg/__init__.py",
    ]
    assert (rendered / "LICENSE").read_text(encoding="utf-8") == "licenses/MIT"


def test_prune_removes_what_the_answers_disable(rendered: Path, answers: dict[str, Any]) -> None:
    disabled = {"ci": "none", "deploy": "none", "monitoring": "none", "docker_compose": "no"}
    post.prune(rendered, {**answers, **disabled, "open_source_license": "Apache-2.0"})
    assert tree(rendered) == ["LICENSE", "src/pkg/__init__.py"]
    assert not (rendered / "make").exists()
    assert (rendered / "LICENSE").read_text(encoding="utf-8") == "licenses/Apache-2.0"


@pytest.mark.parametrize("orchestrator", ["none", "airflow", "kubeflow"])
def test_prune_keeps_the_chosen_orchestrator_only(
    rendered: Path, answers: dict[str, Any], orchestrator: str
) -> None:
    post.prune(rendered, {**answers, "orchestrator": orchestrator})
    every = {name for files in ORCHESTRATOR_FILES.values() for name in files}
    kept = [name for name in tree(rendered) if name in every]
    assert kept == sorted(ORCHESTRATOR_FILES.get(orchestrator, []))
    assert (rendered / "orchestration").exists() == (orchestrator != "none")


# The feature store's production part: its settings and the CronJob filling Redis.
FEAST_PRODUCTION_FILES = [
    "deploy/k8s/base/materialize-cronjob.yaml",
    "feature_repo/feature_store.production.yaml",
]


@pytest.mark.parametrize("feature_store", ["none", "feast"])
def test_prune_keeps_the_feature_stores_production_files_with_feast_only(
    rendered: Path, answers: dict[str, Any], feature_store: str
) -> None:
    for relative in FEAST_PRODUCTION_FILES:
        (rendered / relative).parent.mkdir(parents=True, exist_ok=True)
        (rendered / relative).write_text(relative, encoding="utf-8")
    post.prune(rendered, {**answers, "feature_store": feature_store})
    kept = [name for name in tree(rendered) if name in FEAST_PRODUCTION_FILES]
    assert kept == (FEAST_PRODUCTION_FILES if feature_store == "feast" else [])
    assert (rendered / "feature_repo").exists() == (feature_store == "feast")


def test_init_git_commits_everything_on_main(rendered: Path, answers: dict[str, Any]) -> None:
    report = post.init_git(rendered, answers)
    assert "first commit" in report
    assert post.git(rendered, "status", "--porcelain").stdout == ""
    log = post.git(rendered, "log", "--format=%s").stdout.splitlines()
    assert log == ["Initial commit from cookiecutter-mlops"]
    assert post.git(rendered, "branch", "--show-current").stdout.strip() == "main"


def test_init_git_uses_the_author_when_git_has_no_identity(
    rendered: Path, answers: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.delenv(f"GIT_{name}_NAME", raising=False)
        monkeypatch.delenv(f"GIT_{name}_EMAIL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    answers = {**answers, "author_name": "Ada O'Neil", "author_email": "ada@example.com"}

    assert "first commit" in post.init_git(rendered, answers)

    author = post.git(rendered, "log", "--format=%an <%ae>").stdout.strip()
    assert author == "Ada O'Neil <ada@example.com>"


def test_init_git_skips_inside_an_existing_repository(
    rendered: Path, answers: dict[str, Any]
) -> None:
    subprocess.run(["git", "init", "-q", str(rendered.parent)], check=True)
    assert "already inside a git repository" in post.init_git(rendered, answers)
    assert not (rendered / ".git").exists()


def test_init_git_skips_cleanly_without_git(
    rendered: Path, answers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert post.init_git(rendered, answers).startswith("git not found")
    assert not (rendered / ".git").exists()


def test_next_steps_name_the_project_and_commands(tmp_path: Path) -> None:
    text = post.next_steps(tmp_path / "my-ml-service", "git repository created")
    assert "cd my-ml-service" in text
    assert "make setup" in text
    assert "git repository created" in text


def test_rerun_command_keeps_the_changed_answers_and_the_rejected(
    answers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PWD", str(tmp_path))
    typed = {
        **answers,
        "task": "regression",
        "author_email": "zoe@",
        "description": "two\nlines",
        "_template": "gh:acme/cookiecutter-mlops",
        "_output_dir": str(tmp_path),
        "_repo_dir": str(TEMPLATE_DIR),
    }
    command = pre.rerun_command(typed, ["author_email", "description"])
    assert command == (
        "cookiecutter --no-input gh:acme/cookiecutter-mlops $'description=two\\x0alines' "
        "author_email=zoe@ task=regression"
    )


def test_rerun_command_names_another_output_dir(
    answers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PWD", str(tmp_path / "elsewhere"))
    typed = {**answers, "_template": ".", "_output_dir": str(tmp_path), "author_email": "x"}
    command = pre.rerun_command(typed, ["author_email"])
    assert command.startswith(f"cookiecutter --no-input --output-dir {tmp_path} . author_email=x")


def test_rerun_command_under_cruft_passes_the_answers_as_extra_context(
    answers: dict[str, Any],
) -> None:
    typed = {**answers, "_template": "/srv/template", "_commit": "abc", "author_email": "x"}
    command = shlex.split(pre.rerun_command(typed, ["author_email"]))
    assert command[:4] == ["cruft", "create", "--no-input", "--extra-context"]
    assert json.loads(command[4])["author_email"] == "x"
    assert command[5] == "/srv/template"


def test_cruft_scratch_renders_are_recognised(answers: dict[str, Any], tmp_path: Path) -> None:
    scratch = Path(tempfile.mkdtemp()) / "my-ml-service"
    by_cruft = {**answers, "_commit": "abc"}
    by_cookiecutter = {**by_cruft, "_output_dir": str(scratch.parent)}
    assert post.is_cruft_scratch_render(by_cruft, scratch.resolve())
    assert not post.is_cruft_scratch_render(by_cookiecutter, scratch.resolve())
    assert not post.is_cruft_scratch_render(by_cruft, tmp_path / "my-ml-service")
    scratch.parent.rmdir()


def test_next_steps_under_cruft_say_to_commit_cruft_json(tmp_path: Path) -> None:
    text = post.next_steps(tmp_path / "my-ml-service", None, cruft=True)
    assert "git add .cruft.json" in text
