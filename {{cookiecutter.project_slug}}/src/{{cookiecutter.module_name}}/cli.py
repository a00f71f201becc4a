"""The project's one command line, installed as a console script named after the project.

The pipeline stages in dvc.yaml call these commands; they work on their own too.
Heavy libraries are imported inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import __version__
from .config import Settings, load_params
from .errors import ProjectError
from .outages import explain

if TYPE_CHECKING:
    from mlflow import MlflowClient

PROG = "{{ cookiecutter.project_slug }}"
Handler = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, tuple[Handler, str]] = {}


def command(name: str, help_text: str) -> Callable[[Handler], Handler]:
    def register_command(handler: Handler) -> Handler:
        COMMANDS[name] = (handler, help_text)
        return handler

    return register_command


def show(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


@command("config", "print the settings and parameters in effect")
def show_config(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    show({"settings": settings.model_dump(mode="json"), "params": params.model_dump(mode="json")})
    return 0


@command("sample", "write the sample dataset scikit-learn ships for the task to data/raw/")
def sample(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    from .config import Paths
    from .data import write_sample

    frame = write_sample(params.task)
    print(f"wrote {Paths.sample}: {len(frame)} rows, {len(frame.columns)} columns")
    return 0


@command("prepare", "validate the raw data, infer the feature schema, split train/test")
def prepare(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    from .data import prepare as run_prepare

    schema = run_prepare(params)
    kinds = f"{len(schema.numeric)} numeric, {len(schema.categorical)} categorical"
    print(f"prepared {params.data.path}: {len(schema.features)} features ({kinds})")
    return 0


@command("train", "fit the model on the train split and log it to MLflow")
def train(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    from .train import train as run_train

    show(run_train(params, settings))
    return 0


@command("evaluate", "score the test split, write metrics, plots, model card; apply the gate")
def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    from .evaluate import evaluate as run_evaluate

    show(run_evaluate(params, settings))
    return 0


@command("register", "register the model; @champion moves only if it is better")
def register(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    from .registry import register as run_register

    show(run_register(params, settings))
    return 0


def _client(settings: Settings) -> MlflowClient:
    from mlflow import MlflowClient

    from .tracking import configure

    configure(settings)
    return MlflowClient()


@command("promote", "give a version the @champion alias (the previous one is recorded)")
def promote(args: argparse.Namespace, settings: Settings) -> int:
    from .registry import promote as run_promote

    previous = run_promote(_client(settings), settings.model_name, args.version)
    print(f"{settings.model_name}@champion: v{previous} -> v{args.version}")
    return 0


@command("rollback", "move @champion back to the version it replaced")
def rollback(args: argparse.Namespace, settings: Settings) -> int:
    from .registry import rollback as run_rollback

    current, previous = run_rollback(_client(settings), settings.model_name)
    print(f"{settings.model_name}@champion: v{current} -> v{previous}")
    return 0


@command("models", "list registered versions with their aliases and scores")
def models(args: argparse.Namespace, settings: Settings) -> int:
    from .registry import list_versions

    rows = list_versions(_client(settings), settings.model_name)
    print(f"{'version':>7}  {'aliases':<22} {'score':<10} decision")
    for row in rows:
        aliases = ",".join(f"@{alias}" for alias in row["aliases"])
        score = row["score"][:8] if row["score"] else ""
        print(f"{row['version']:>7}  {aliases:<22} {score:<10} {row['decision']}")
    return 0


@command("export-model", "copy a registered model, its schema and profile to a directory")
def export_model(args: argparse.Namespace, settings: Settings) -> int:
    import shutil
    from pathlib import Path

    from .artifact import REGISTRY, ArtifactError, Runtime, download

    output = Path(args.output)
    with tempfile.TemporaryDirectory() as scratch:
        downloaded = download(settings, args.alias, Path(scratch))
        runtime = Runtime.load(downloaded)
        if runtime.predictor == "none":
            raise ArtifactError(f"{settings.model_name}@{args.alias}: {runtime.reason}")
        shutil.rmtree(output, ignore_errors=True)
        shutil.copytree(downloaded, output)
    metadata = json.loads((output / REGISTRY).read_text(encoding="utf-8"))
    print(f"exported {settings.model_name} v{metadata['version']} (@{args.alias}) to {output}")
    print(f"served as {runtime.describe()}")
    return 0


@command("runtime", "how an exported model is served; --check: it loads with what is installed")
def runtime(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from .artifact import Runtime, read_model_dir

    path = Path(args.model_dir)
    record = Runtime.load(path)
    print(f"{path}: served as {record.describe()}")
    if not args.check:
        return 0
    problems = record.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    model = read_model_dir(path, "check", {})  # loads it and predicts one row
    print(f"loaded and answered in {model.load_seconds:.2f} s")
    return 0


{% if cookiecutter.monitoring == "prometheus" -%}
@command("drift", "compare a CSV of new data with the model's training data; exit 1 on drift")
def drift(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from .monitoring.check import run_check
    from .monitoring.report import verdict, write_reports
    from .monitoring.settings import DriftSettings

    model_dir = Path(args.model_dir) if args.model_dir else None
    current = Path(args.current)
    thresholds = DriftSettings().thresholds()
    report, model = run_check(settings, current, model_dir, args.alias, thresholds)
    for path in write_reports(report, model, current, Path(args.output), args.format):
        print(f"wrote {path}")
    print(verdict(report))
    return 1 if report.detected else 0


{% endif -%}
@command("serve", "start the prediction server (HOST, PORT, WORKERS, MODEL_DIR, …)")
def serve(args: argparse.Namespace, settings: Settings) -> int:
    from .serving.run import serve as run_server
    from .serving.settings import ServeSettings

    run_server(ServeSettings())
    return 0


@command("smoke", "check a running server: ready, then one prediction from its schema")
def smoke(args: argparse.Namespace, settings: Settings) -> int:
    from .serving.smoke import smoke as check

    try:
        print(check(args.url, wait_seconds=args.wait))
    except RuntimeError as error:
        print(f"smoke test failed: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        if name == "promote":
            subparser.add_argument("version", help="registry version number, e.g. 3")
        if name == "smoke":
            subparser.add_argument("--url", default="http://127.0.0.1:8000")
            subparser.add_argument(
                "--wait", type=float, default=0, help="seconds to wait for ready"
            )
{%- if cookiecutter.monitoring == "prometheus" %}
        if name == "drift":
            subparser.add_argument("--current", required=True, help="CSV of the new data")
            subparser.add_argument("--model-dir", help="an exported model (default: the registry)")
            subparser.add_argument("--alias", default="champion", help="default: champion")
            subparser.add_argument(
                "--output", default="reports/drift", help="default: reports/drift"
            )
            subparser.add_argument("--format", choices=["md", "html"], default="md")
{%- endif %}
        if name == "export-model":
            subparser.add_argument("--alias", default="champion", help="default: champion")
            subparser.add_argument("--output", default="build/model", help="default: build/model")
        if name == "runtime":
            subparser.add_argument(
                "--model-dir", default="build/model", help="default: build/model"
            )
            subparser.add_argument(
                "--check", action="store_true", help="exit 1 unless what serves it is installed"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler, _ = COMMANDS[args.command]
    settings: Settings | None = None
    try:
        settings = Settings()
        return handler(args, settings)
    except ProjectError as error:  # one line a user can act on; anything else is a bug
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        outage = explain(error, settings.mlflow_tracking_uri if settings else "")
        if outage is None:
            raise
        print(f"error: {outage}", file=sys.stderr)
        return 2
