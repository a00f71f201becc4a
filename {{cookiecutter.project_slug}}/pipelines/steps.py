{%- set cli = cookiecutter.project_slug -%}
"""One stage of dvc.yaml in a workspace of its own: the steps of the Kubeflow pipeline.

Both variants of the pipeline run these functions. Its container components run this
file in the train image (the compiled pipeline carries its source, so the image needs
nothing new); the local variant's lightweight components import it (kfp.local). It uses
the standard library and PyYAML, which both environments have, and imports nothing of
the project: the stages are the project's CLI, run by `dvc repro`.

A step starts from nothing but the project's files, as a pod does:
1. copy the project (the image's /app, or this checkout) into an empty workspace;
2. write the state the previous step handed on: dvc.lock and the outputs DVC does not
   cache (run ids, metrics, the split's counts), a few kilobytes;
3. apply the run's parameters to params.yaml;
4. `dvc repro --pull` of its stage: the inputs come from the DVC remote;
5. push the stage's outputs to the remote, and hand on the new state.
Data and models pass through the DVC remote, the model versions through MLflow's
registry (train logs, register registers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

CLI = "{{ cli }}"
STAGES = ("prepare", "train", "evaluate", "register")
PASSED = "passed"
# What the CLI prints when evaluate's metrics miss params.yaml's evaluate.gate.
GATE_FAILED = "quality gate failed"
# The pipeline's parameters, and the key of params.yaml each one sets.
PARAM_KEYS = {
    "model": "train.model",
    "seed": "seed",
    "test_size": "data.test_size",
    "gate": "evaluate.gate",
}
# Not copied into a workspace from a directory without git (the image's /app, a copy
# without a repository): environments, caches, local stores and build output. From a git
# checkout, a workspace gets what git would commit.
SKIPPED_NAMES = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
SKIPPED_PATHS = {".git", ".tools", "build", "mlflow.db", "mlartifacts", "mlruns"}
SKIPPED_PATHS |= {".dvc/cache", ".dvc/tmp", ".dvc/config.local"}
REMOTE = "pipeline"
# DVC_REMOTE_<OPTION> variables set options of the remote (DVC_REMOTE_ACCESS_KEY_ID is
# its access_key_id): the remote's credentials, apart from those of MLflow's artifact store.
REMOTE_OPTION_PREFIX = "DVC_REMOTE_"


class StepError(Exception):
    """A step cannot run as configured; the message says what to set."""


def run(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=cwd, env=env, check=True)  # noqa: S603 (the project's own tools)


def output(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    return subprocess.run(  # noqa: S603 (the project's own tools)
        args, cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def copy_project(source: Path, workspace: Path, env: Mapping[str, str]) -> None:
    """The project as a pod has it: tracked and new files, no outputs, caches or stores."""
    if not (source / ".git").exists():

        def skipped(directory: str, names: list[str]) -> set[str]:
            relative = Path(directory).relative_to(source)
            return {
                name
                for name in names
                if name in SKIPPED_NAMES
                or name.startswith(".venv")
                or (relative / name).as_posix() in SKIPPED_PATHS
            }

        shutil.copytree(source, workspace, ignore=skipped, symlinks=True, dirs_exist_ok=True)
        return
    listed = output(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], source, env
    )
    for relative in filter(None, listed.split("\0")):
        if (source / relative).is_file():  # not a file deleted from the working tree
            (workspace / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, workspace / relative)


def environment(source: Path) -> dict[str, str]:
    """The steps' environment: the project's tools first on PATH, no DVC analytics."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    tools = source / ".venv" / "bin"
    if tools.is_dir():
        env["PATH"] = f"{tools}{os.pathsep}{env.get('PATH', '')}"
    return env


def tracking_uri(source: Path, env: Mapping[str, str]) -> str:
    """The project's MLflow tracking URI; a relative sqlite path, made absolute in `source`.

    Every step must reach the same registry: a sqlite file in a workspace would be a
    registry of one step.
    """
    uri = env.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        settings = json.loads(output([CLI, "config"], cwd=source, env=env))["settings"]
        uri = settings["mlflow_tracking_uri"]
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str((source / uri.removeprefix(prefix)).resolve())
    return uri


def remote_url(source: Path, env: Mapping[str, str], create_local: bool) -> str:
    """DVC_REMOTE_URL, else the project's default remote (a local path made absolute)."""
    url = env.get("DVC_REMOTE_URL", "")
    if not url:
        name = subprocess.run(
            ["dvc", "remote", "default"],  # noqa: S607
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if name:
            url = output(["dvc", "config", f"remote.{name}.url"], cwd=source, env=env)
    if not url:
        if not create_local:
            raise StepError(
                "no DVC remote: the steps pass data through one; set DVC_REMOTE_URL "
                "(the Secret {{ cli }}-dvc in a cluster)"
            )
        url = str(source / "build" / "kfp" / "dvc-remote")
    if "://" in url:
        return url
    path = Path(url) if Path(url).is_absolute() else (source / ".dvc" / url).resolve()
    if create_local:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        raise StepError(
            f"the DVC remote {path} does not exist here: set DVC_REMOTE_URL to storage every "
            "step reaches (the Secret {{ cli }}-dvc in a cluster)"
        )
    return str(path)


def set_param(params: dict[str, Any], dotted: str, value: Any) -> bool:
    """Set params[a][b] for 'a.b'; True when that changed it."""
    *parents, key = dotted.split(".")
    node = params
    for parent in parents:
        node = node.setdefault(parent, {})
    if node.get(key) == value:
        return False
    node[key] = value
    return True


def apply_params(workspace: Path, values: Mapping[str, Any]) -> None:
    """The run's parameters into params.yaml (rewritten only when one differs)."""
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    changed = [set_param(params, PARAM_KEYS[name], value) for name, value in values.items()]
    if any(changed):
        path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def stage_outputs(workspace: Path) -> dict[str, list[tuple[str, bool]]]:
    """Each stage's outputs in dvc.yaml (outs, metrics, plots), and whether DVC caches it."""
    pipeline = yaml.safe_load((workspace / "dvc.yaml").read_text(encoding="utf-8"))
    found: dict[str, list[tuple[str, bool]]] = {}
    for name, stage in pipeline["stages"].items():
        found[name] = []
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                # a path, or {path: options}
                [(path, options)] = entry.items() if isinstance(entry, dict) else [(entry, {})]
                found[name].append((path, (options or {}).get("cache", True) is not False))
    return found


def handed_on(workspace: Path) -> dict[str, str]:
    """dvc.lock, params.yaml and every file output that DVC does not cache (git's part)."""
    paths = ["dvc.lock", "params.yaml"]
    for outputs in stage_outputs(workspace).values():
        paths += [path for path, cached in outputs if not cached]
    return {
        path: (workspace / path).read_text(encoding="utf-8")
        for path in paths
        if (workspace / path).is_file()
    }


def restore(workspace: Path, state: str) -> None:
    """Write the files the previous step handed on (none for the first step)."""
    if not state:
        return
    for relative, text in json.loads(state).items():
        path = (workspace / relative).resolve()
        if not path.is_relative_to(workspace.resolve()):
            raise StepError(f"the state names a file outside the project: {relative}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def quoted(value: str) -> str:
    """A value of DVC's config file (configobj: quotes keep '#' and ',' literal)."""
    for quote in "\"'":
        if quote not in value and "\n" not in value:
            return f"{quote}{value}{quote}"
    raise StepError(f"a DVC setting holds both kinds of quote or a line break: {value[:20]}…")


def configure_dvc(workspace: Path, url: str, env: Mapping[str, str]) -> None:
    """.dvc/config.local: no git, caches in the workspace, the remote and its options.

    Written as one file rather than by `dvc config` and `dvc remote modify`, a second
    each. Options come from DVC_REMOTE_<OPTION> (its credentials), never echoed.
    """
    options = {
        name.removeprefix(REMOTE_OPTION_PREFIX).lower(): value
        for name, value in env.items()
        if name.startswith(REMOTE_OPTION_PREFIX) and value
    }
    options["url"] = url
    core = {
        "no_scm": "true",  # a pod has no git
        "site_cache_dir": str(workspace / ".dvc" / "tmp" / "site"),
        "remote": REMOTE,
    }
    lines = ["[core]", *(f"    {key} = {quoted(value)}" for key, value in core.items())]
    lines.append(f"['remote \"{REMOTE}\"']")
    lines += [f"    {key} = {quoted(value)}" for key, value in sorted(options.items())]
    (workspace / ".dvc" / "config.local").write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextmanager
def workspace_for(stage: str, given: Path | None) -> Iterator[Path]:
    """The given (empty) workspace, or a temporary one removed afterwards."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        if any(given.iterdir()):
            raise StepError(f"the workspace {given} is not empty")
        yield given
        return
    with tempfile.TemporaryDirectory(prefix=f"{CLI}-{stage}-") as directory:
        yield Path(directory)


def share_artifacts(workspace: Path, uri: str) -> None:
    """With a sqlite store, artifacts go beside the database, as for the project itself.

    The experiment records the mlartifacts directory of the step that created it: a link
    to one that outlives the workspace.
    """
    if uri.startswith("sqlite:///"):
        shared = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
        shared.mkdir(parents=True, exist_ok=True)
        (workspace / "mlartifacts").symlink_to(shared)


def reproduce(stage: str, workspace: Path, env: Mapping[str, str], force: bool) -> str:
    """`dvc repro --pull` of the stage; return "passed", or the reason the gate missed."""
    # prepare runs `sample` before it; every later step runs its own stage only.
    scope = [] if stage == "prepare" else ["--single-item"]
    repro = ["dvc", "repro", "--pull", *(["--force"] if force else []), *scope, stage]
    print("+", " ".join(repro), flush=True)
    result = subprocess.run(  # noqa: S603 (the project's own tools)
        repro, cwd=workspace, env=env, stderr=subprocess.PIPE, text=True, check=False
    )
    sys.stderr.write(result.stderr)
    if result.returncode == 0:
        return PASSED
    reasons = [line for line in result.stderr.splitlines() if GATE_FAILED in line]
    if stage != "evaluate" or not reasons:
        raise subprocess.CalledProcessError(result.returncode, repro)
    return reasons[0].removeprefix("error: ")


def push(stage: str, workspace: Path, env: Mapping[str, str]) -> None:
    """The stage's cached outputs to the remote, for the next steps.

    Even when dvc.lock did not change: DVC re-runs an unchanged stage whose outputs are
    missing from the remote, and identical outputs leave the lock as it was.
    """
    if stage == "prepare":
        run(["dvc", "push", "--with-deps", stage], workspace, env)  # sample's outputs too
    elif any(cached for _, cached in stage_outputs(workspace)[stage]):
        run(["dvc", "push", stage], workspace, env)


def run_step(
    stage: str,
    *,
    source: Path,
    state: str,
    params: Mapping[str, Any],
    force: bool,
    workspace: Path | None = None,
    create_local_remote: bool = False,
) -> tuple[str, str]:
    """Run `stage` from `source` and `state`; return the state to hand on, and the gate.

    The gate is "passed", or evaluate's reason where the metrics missed it. Any other
    failure raises: a missed gate is a result, a failed command is an error.
    """
    if stage not in STAGES:
        raise StepError(f"no stage {stage!r}: one of {', '.join(STAGES)}")
    source = source.resolve()
    env = environment(source)
    env["MLFLOW_TRACKING_URI"] = tracking_uri(source, env)
    url = remote_url(source, env, create_local_remote)
    with workspace_for(stage, workspace) as root:
        copy_project(source, root, env)
        restore(root, state)
        apply_params(root, params)
        configure_dvc(root, url, env)
        share_artifacts(root, env["MLFLOW_TRACKING_URI"])
        gate = reproduce(stage, root, env, force)
        if gate == PASSED:
            push(stage, root, env)
        return json.dumps(handed_on(root)), gate


def parse_bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"not true or false: {text!r}")
    return text.lower() == "true"


def main(argv: Sequence[str] | None = None) -> int:
    """The container components' entry point (`python -c <this file> <stage> …`)."""
    parser = argparse.ArgumentParser(prog="steps", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--source", type=Path, default=Path("/app"), help="the project")
    parser.add_argument("--workspace", type=Path, help="an empty directory to run in")
    parser.add_argument("--state", default="", help="what the previous step handed on")
    parser.add_argument("--model", help="train.model")
    parser.add_argument("--seed", type=int, help="seed")
    parser.add_argument("--test-size", type=float, help="data.test_size")
    parser.add_argument("--gate", type=json.loads, help="evaluate.gate, as JSON")
    parser.add_argument("--force", type=parse_bool, default=False)
    parser.add_argument("--state-out", type=Path, required=True)
    parser.add_argument("--gate-out", type=Path, required=True)
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in PARAM_KEYS}
    params = {name: value for name, value in given.items() if value is not None}
    try:
        state, gate = run_step(
            args.stage,
            source=args.source,
            state=args.state,
            params=params,
            force=args.force,
            workspace=args.workspace,
        )
    except StepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, value in ((args.state_out, state), (args.gate_out, gate)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value, encoding="utf-8")
    print(f"gate: {gate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
