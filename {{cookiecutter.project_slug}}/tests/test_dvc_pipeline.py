"""dvc.yaml and the code agree on every path, parameter, command and source file."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from {{ cookiecutter.module_name }} import cli
from {{ cookiecutter.module_name }}.cli import COMMANDS
from {{ cookiecutter.module_name }}.config import (
    Paths,
    load_params,
)
{%- if cookiecutter.feature_store == "feast" %}
from {{ cookiecutter.module_name }}.features import SOURCE_FILE
{%- endif %}


def stage_paths(entries: list[object]) -> set[str]:
    return {next(iter(entry)) if isinstance(entry, dict) else str(entry) for entry in entries}


def test_stage_outputs_are_the_paths_the_code_writes(project_root: Path) -> None:
    pipeline = yaml.safe_load((project_root / "dvc.yaml").read_text(encoding="utf-8"))
    written = set()
    for stage in pipeline["stages"].values():
        for key in ("outs", "metrics", "plots"):
            written |= stage_paths(stage.get(key, []))
    expected = {
        str(path)
        for name, path in vars(Paths).items()
        if not name.startswith("_") and isinstance(path, Path)
    }
{%- if cookiecutter.feature_store == "feast" %}
    # prepare writes Feast's source; Feast the registry and the online store where
    # feature_store.yaml says.
    expected.add(str(SOURCE_FILE))
    repo = project_root / "feature_repo"
    store = yaml.safe_load((repo / "feature_store.yaml").read_text(encoding="utf-8"))
    for path in (store["registry"], store["online_store"]["path"]):
        expected.add((repo / path).resolve().relative_to(project_root.resolve()).as_posix())
{%- endif %}
    assert written == expected


def test_every_stage_runs_a_cli_command_and_reads_known_params(project_root: Path) -> None:
    pipeline = yaml.safe_load((project_root / "dvc.yaml").read_text(encoding="utf-8"))
    params = load_params(project_root / "params.yaml").model_dump()
    for name, stage in pipeline["stages"].items():
{%- if cookiecutter.feature_store == "feast" %}
        if name == "features":  # Feast's own command registers feature_repo/'s objects
            assert stage["cmd"] == "feast -c feature_repo apply"
            continue
{%- endif %}
        program, command = stage["cmd"].split()
        assert program == "{{ cookiecutter.project_slug }}"
        assert command == name
        assert command in COMMANDS
        for param in stage.get("params", []):
            assert param.split(".")[0] in params, (name, param)


PACKAGE = Path(cli.__file__).parent


def module_file(dotted: str) -> Path | None:
    """The file of a module of this package ('a.b' -> a/b.py or a/b/__init__.py)."""
    base = PACKAGE.joinpath(*dotted.split(".")) if dotted else PACKAGE
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path, tree: ast.AST) -> set[Path]:
    """The package's files `tree` (code of `path`) imports, at run time."""
    here = path.relative_to(PACKAGE).with_suffix("").parts
    if path.name == "__init__.py":
        here = (*here[:-1], "")
    found: set[Path] = set()
    type_checking: set[ast.AST] = {
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    }
    skipped = {child for block in type_checking for child in ast.walk(block)} - type_checking
    for node in ast.walk(tree):
        if node in skipped or not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        parent = list(here[: len(here) - node.level])
        base = ".".join([*parent, *(node.module.split(".") if node.module else [])])
        # importing a.b runs a/__init__.py first
        for depth in range(len(parent) + 1):
            found.add(module_file(".".join(parent[:depth])) or PACKAGE / "__init__.py")
        prefix = base.split(".") if base else []
        for depth in range(1, len(prefix) + 1):
            file = module_file(".".join(prefix[:depth]))
            if file is not None:
                found.add(file)
        for alias in node.names:  # `from . import tracking` names a module
            file = module_file(f"{base}.{alias.name}" if base else alias.name)
            if file is not None:
                found.add(file)
    return found


def closure(start: set[Path], seen: set[Path]) -> set[Path]:
    """`start`, and what they import, and so on; `seen` holds files already followed."""
    pending = list(start)
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        pending += imported(path, ast.parse(path.read_text(encoding="utf-8")))
    return seen


def stage_sources(command: str) -> set[Path]:
    """What `<cli> <command>` imports: cli.py's module level, its handler, and on from there."""
    source = (PACKAGE / "cli.py").read_text(encoding="utf-8")
    module = ast.parse(source)
    handler = COMMANDS[command][0].__name__
    top_level = ast.Module(
        body=[node for node in module.body if not isinstance(node, ast.FunctionDef)],
        type_ignores=[],
    )
    (function,) = [
        node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == handler
    ]
    cli_file = PACKAGE / "cli.py"
    start = {PACKAGE / "__init__.py"} | imported(cli_file, top_level) | imported(cli_file, function)
    return closure(start, {cli_file})


{% if cookiecutter.feature_store == "feast" -%}
def definitions_sources(project_root: Path) -> set[Path]:
    """What `feast apply` imports of the package through feature_repo/definitions.py."""
    source = project_root / "feature_repo" / "definitions.py"
    start = {PACKAGE / "__init__.py"}
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE.name):
            file = module_file(str(node.module).removeprefix(PACKAGE.name).lstrip("."))
            if file is not None:
                start.add(file)
    return closure(start, set())


{% endif -%}
def test_each_stage_depends_on_exactly_the_code_it_imports(project_root: Path) -> None:
    """Edit a module a stage imports and `dvc status` reports that stage; no other edit does."""
    pipeline = yaml.safe_load((project_root / "dvc.yaml").read_text(encoding="utf-8"))
    source_root = PACKAGE.relative_to(project_root).as_posix()
    mismatched = {}
    for name, stage in pipeline["stages"].items():
        listed = sorted(
            dep for dep in stage.get("deps", []) if str(dep).startswith(source_root + "/")
        )
{%- if cookiecutter.feature_store == "feast" %}
        sources = definitions_sources(project_root) if name == "features" else stage_sources(name)
{%- else %}
        sources = stage_sources(name)
{%- endif %}
        imports = sorted(path.relative_to(project_root).as_posix() for path in sources)
        if listed != imports:
            mismatched[name] = imports
    assert not mismatched, "set these deps in dvc.yaml (the stages' imports):\n" + yaml.dump(
        mismatched
    )
