"""The template's lifecycle with cruft: create, the template changes, update, diff.

The template is copied into a git repository of its own with two commits: as it is,
then with one line more in the README and Makefile templates. Each combination is
created from the first commit and updated to the second.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from baked import TEMPLATE_DIR, TOOLS_BIN
from combinations import SUPPORTED_COMBINATIONS

CRUFT = str(TOOLS_BIN / "cruft")
README_LINE = "Template change: a line every project's README gains."
MAKEFILE_LINE = "# Template change: a line every project's Makefile gains."


def run(*command: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def copy_working_tree(destination: Path) -> None:
    """The template's files as they are on disk, committed or not (what the suite tests)."""
    listed = run(
        "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=TEMPLATE_DIR
    )
    for relative in filter(None, listed.stdout.split("\0")):
        source = TEMPLATE_DIR / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(template repository, its first commit); its HEAD carries the README and Makefile change."""
    repo = tmp_path_factory.mktemp("template") / "cookiecutter-mlops"
    copy_working_tree(repo)
    run("git", "init", "--quiet", "-b", "main", cwd=repo)
    run("git", "add", "--all", cwd=repo)
    run("git", "commit", "--quiet", "--no-verify", "-m", "template", cwd=repo)
    first = run("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    project = repo / "{{cookiecutter.project_slug}}"
    with (project / "README.md").open("a", encoding="utf-8") as readme:
        readme.write(f"\n{README_LINE}\n")
    with (project / "Makefile").open("a", encoding="utf-8") as makefile:
        makefile.write(f"\n{MAKEFILE_LINE}\n")
    run("git", "commit", "--quiet", "--no-verify", "-am", "change README and Makefile", cwd=repo)
    return repo, first


def cruft_create(template: tuple[Path, str], answers: dict[str, Any], output: Path) -> Path:
    repo, first = template
    context = json.dumps(answers)
    created = run(
        CRUFT, "create", "--no-input", "--checkout", first, "--extra-context", context,
        "--output-dir", str(output), str(repo), cwd=output,
    )  # fmt: skip
    assert "git add .cruft.json" in created.stdout
    (project,) = [path for path in output.iterdir() if path.is_dir()]
    return project


def commit_all(project: Path, message: str) -> None:
    if not (project / ".git").is_dir():
        run("git", "init", "--quiet", "-b", "main", cwd=project)
    run("git", "add", "--all", cwd=project)
    run("git", "commit", "--quiet", "--no-verify", "-m", message, cwd=project)


@pytest.mark.parametrize("answers", SUPPORTED_COMBINATIONS)
def test_cruft_update_applies_the_template_change(
    answers: dict[str, Any], template_repo: tuple[Path, str], tmp_path: Path
) -> None:
    project = cruft_create(template_repo, answers, tmp_path)
    commit_all(project, "record the template version")
    assert run(CRUFT, "check", cwd=project, check=False).returncode == 1  # out of date
    # The diff to the new template is the change, nothing of git's.
    pending = run(CRUFT, "diff", "--checkout", "main", cwd=project).stdout
    touched = sorted(
        set(re.findall(r"^\+\+\+ upstream-template-new/(\S+)", pending, flags=re.MULTILINE))
    )
    assert touched == ["Makefile", "README.md"], pending

    updated = run(CRUFT, "update", "--skip-apply-ask", "--checkout", "main", cwd=project)

    # The scratch renders cruft diffs are quiet: no second "Created … Next steps".
    assert "Created" not in updated.stdout, updated.stdout
    assert "Next steps" not in updated.stdout, updated.stdout
    assert README_LINE in (project / "README.md").read_text(encoding="utf-8")
    assert MAKEFILE_LINE in (project / "Makefile").read_text(encoding="utf-8")
    changed = run("git", "status", "--porcelain", cwd=project).stdout.split("\n")
    assert sorted(line[3:] for line in changed if line) == [".cruft.json", "Makefile", "README.md"]
    assert not list(project.rglob("*.rej"))
    assert run(CRUFT, "diff", "--exit-code", "--checkout", "main", cwd=project).stdout == ""
    run(CRUFT, "check", "--checkout", "main", cwd=project)
