"""The project's one command line, installed as a console script named after the project.

The pipeline stages in dvc.yaml call these commands; they work on their own too.
Heavy libraries are imported inside the commands, after the cheap checks of their
files and values, so `--help` and a mistyped path answer at once.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import Paths, Settings, env_name, load_params, settings_errors
from .errors import (
    EXIT_CHECK_FAILED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    DataError,
    ProjectError,
    SettingsError,
)
from .outages import explain

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .prediction_store import PredictionStore

PROG = "{{ cookiecutter.project_slug }}"
Handler = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, tuple[Handler, str, str]] = {}
EXIT_STATUS = (
    f"exit status: {EXIT_OK} done; {EXIT_ERROR} a problem to fix, printed as one `error:` line "
    "(a file, flag, setting or parameter, a model or alias not registered); "
    f"{EXIT_UNAVAILABLE} a tracking server, database or bucket that failed or was out of "
    "reach, one `error:` line too (try again later)"
)


def command(name: str, help_text: str, check_failed: str = "") -> Callable[[Handler], Handler]:
    """Register a command; `check_failed` says when it exits 1 (a check said no)."""
    status = f"{EXIT_STATUS}; {EXIT_CHECK_FAILED} {check_failed}" if check_failed else EXIT_STATUS

    def register_command(handler: Handler) -> Handler:
        COMMANDS[name] = (handler, help_text, status)
        return handler

    return register_command


def require_file(path: Path, hint: str) -> Path:
    """Fail before any heavy import when an input file is missing."""
    if not path.is_file():
        raise DataError(f"{path}: no such file — {hint}")
    return path


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

    frame = write_sample(params.task, Paths.sample, params.data.entity_key, params.data.timestamp)
    print(f"wrote {Paths.sample}: {len(frame)} rows, {len(frame.columns)} columns")
    return 0


@command("prepare", "validate the raw data, infer the feature schema, split train/test")
def prepare(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    from .data import prepare as run_prepare

    schema = run_prepare(params)
{%- if cookiecutter.feature_store == "feast" %}
    from .features import write_source

    print(f"wrote {write_source(params, schema)}: the feature store's source")
{%- endif %}
    kinds = f"{len(schema.numeric)} numeric, {len(schema.categorical)} categorical"
    print(f"prepared {params.data.path}: {len(schema.features)} features ({kinds})")
    return 0


@command("train", "fit the model on the train split and log it to MLflow")
def train(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    for path in (Paths.train, Paths.schema):
        require_file(path, f"run `{PROG} prepare` first")
    from .train import train as run_train

    show(run_train(params, settings))
    return 0


{% if cookiecutter.feature_store == "feast" -%}
@command("publish-features", "copy the feature source to FEATURE_SOURCE_URL (s3://…)")
def publish_features(args: argparse.Namespace, settings: Settings) -> int:
    from .features import StoreSettings, publish_source

    with settings_errors(StoreSettings, {}):
        store_settings = StoreSettings()
    show(publish_source(store_settings))
    return 0


@command("materialize", "load the online feature store up to the newest time in the data")
def materialize(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    from .features import StoreSettings
    from .features import materialize as run_materialize

    with settings_errors(StoreSettings, {}):
        store_settings = StoreSettings()
    show(run_materialize(params, store_settings))
    return 0


{% endif -%}
@command("evaluate", "score the test split, write metrics, plots, model card; apply the gate")
def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    require_file(Paths.test, f"run `{PROG} prepare` first")
    require_file(Paths.run, f"run `{PROG} train` first")
    from .evaluate import evaluate as run_evaluate

    show(run_evaluate(params, settings))
    return 0


@command("register", "register the model; @champion moves only if it is better")
def register(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    require_file(Paths.metrics, f"run `{PROG} evaluate` first")
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
    if not args.version.isdigit():
        raise ProjectError(f"version {args.version!r} is not a number — `{PROG} models` lists them")
    from .registry import promote as run_promote

    previous = run_promote(_client(settings), settings.model_name, args.version)
    if previous == args.version:
        print(f"{settings.model_name}@champion is already v{args.version}: nothing changed")
    else:
        print(f"{settings.model_name}@champion: v{previous or '-'} -> v{args.version}")
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

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ProjectError(f"--output {output}: is a file — give a directory to write")
    from .artifact import REGISTRY, ArtifactError, Runtime, download

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


@command(
    "runtime",
    "how an exported model is served; --check: it loads with what is installed",
    "when --check finds the installed packages cannot serve it",
)
def runtime(args: argparse.Namespace, settings: Settings) -> int:
    from .artifact import Runtime, check_model_dir, read_model_dir

    path = Path(args.model_dir)
    check_model_dir(path)
    record = Runtime.load(path)
    print(f"{path}: served as {record.describe()}")
    if not args.check:
        return 0
    problems = record.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_CHECK_FAILED
    model = read_model_dir(path, "check", {})  # loads it and predicts one row
    print(f"loaded and answered in {model.load_seconds:.2f} s")
    return 0


@command(
    "predict",
    "score a CSV or Parquet file of any size; bad rows go to <output>.rejects.csv",
    "when some rows were rejected (the others are scored)",
)
def predict(args: argparse.Namespace, settings: Settings) -> int:
    source, output = str(args.input), str(args.output)
    if args.engine:
        return predict_on_engine(args, settings)
    from .batch_scoring import file_format, open_source, predict_file, url_filesystem

    file_format(source)
    file_format(output)
    open_source(source)[0].close()  # a missing file or backend, before the model loads
    if "://" in output:
        url_filesystem(output)
    model_dir = Path(args.model_dir) if args.model_dir else None
    from .artifact import check_model_dir, load

    if model_dir is not None:
        check_model_dir(model_dir)
    model = load(settings, model_dir, args.alias)
    summary = predict_file(model, source, output, args.keep, args.chunk_rows, args.predictor)
    print(f"{summary.line()} -> {args.output}")
    if summary.rejected:
        print(f"rejected rows: {args.output}.rejects.csv", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def predict_on_engine(args: argparse.Namespace, settings: Settings) -> int:
    """`predict --engine dask`: a directory of Parquet files, one task per file."""
    model_dir = Path(args.model_dir) if args.model_dir else None
    from .artifact import check_model_dir

    if model_dir is not None:
        check_model_dir(model_dir)
    from .engines import predict_dataset

    summary, workers = predict_dataset(
        str(args.input), str(args.output), model_dir, args.alias, args.keep, args.chunk_rows,
        args.workers,
    )  # fmt: skip
    print(f"{summary.line()} on {workers} {args.engine} worker(s) -> {args.output}")
    if summary.rejected:
        print(f"rejected rows: {args.output}/*.rejects.csv", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _store(settings: Settings) -> PredictionStore:
    from .config import enabled

    url = enabled(settings.prediction_store_url)
    if not url:
        raise ProjectError("PREDICTION_STORE_URL is off: there is no prediction store to read")
    from .prediction_store import PredictionStore

    return PredictionStore(url)


@command("feedback", "record a CSV of labels (prediction_id, actual), joined with the log")
def feedback(args: argparse.Namespace, settings: Settings) -> int:
    labels = require_file(Path(args.labels), "give a CSV with the columns prediction_id, actual")
    schema_path = require_file(Paths.schema, f"run `{PROG} prepare` first (the target's classes)")
    from .ground_truth import by_model, import_labels, report_lines
    from .schema import FeatureSchema

    schema = FeatureSchema.load(schema_path)
    rejects = labels.with_name(labels.stem + ".rejects.csv")
    result = import_labels(_store(settings), labels, Path(args.log), schema, rejects)
    print(
        f"{labels}: {result.recorded} labels recorded, {result.duplicate} already labelled "
        f"(the first label kept), {result.rejected} refused"
        + (f" (see {rejects})" if result.rejected else "")
    )
    groups = by_model(result.rows, schema)
    for line in report_lines(groups, schema.task, settings.feedback_min_rows):
        print(line)
    return EXIT_OK


@command(
    "compare-live",
    "compare @champion and @challenger on the same labelled window; --promote acts on it",
    "when the challenger is not better beyond noise (or has too few labels)",
)
def compare_live(args: argparse.Namespace, settings: Settings) -> int:
    schema_path = require_file(Paths.schema, f"run `{PROG} prepare` first")
    import time

    from .ground_truth import compare
    from .schema import FeatureSchema

    schema = FeatureSchema.load(schema_path)
    since = time.time() - args.hours * 3600
    rows = list(_store(settings).labelled(since=since, variants=("champion", "challenger")))
    result = compare(rows, schema, settings.feedback_min_rows)
    test = "one-sided Welch z test on per-row errors"
    print(f"labels of the last {args.hours:g} h, compared on {result.metric} ({test})")
    for variant, side in (("champion", result.champion), ("challenger", result.challenger)):
        if side is None:
            print(f"  {variant}: no labelled rows")
            continue
        version, sums = side
        metrics = sums.metrics(schema.task)
        scores = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
        print(f"  {variant} v{version}: {sums.rows} labelled rows; {scores}")
    verdict = "promote the challenger" if result.promote else "keep the champion"
    print(f"recommendation: {verdict}: {result.reason}")
    if not result.promote:
        return EXIT_CHECK_FAILED
    if args.promote and result.challenger is not None:
        from .registry import alias_version
        from .registry import promote as run_promote

        client = _client(settings)
        version = result.challenger[0]
        current = alias_version(client, settings.model_name, "challenger")
        if current is None or current.version != version:
            raise ProjectError(
                f"@challenger is v{current.version if current else '-'} now, not the v{version} "
                "the labels are for: compare again"
            )
        previous = run_promote(client, settings.model_name, version)
        print(f"{settings.model_name}@champion: v{previous or '-'} -> v{version}")
    return EXIT_OK


@command(
    "check-live",
    "live metrics of recent labels against the evaluate stage's gate; exit 1 when one misses",
    "when a version's live metric misses the gate",
)
def check_live(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    schema_path = require_file(Paths.schema, f"run `{PROG} prepare` first")
    import time

    from .ground_truth import by_model, gate_misses, report_lines
    from .schema import FeatureSchema

    schema = FeatureSchema.load(schema_path)
    rows = _store(settings).labelled(since=time.time() - args.hours * 3600)
    groups = by_model(rows, schema)
    print(f"labels of the last {args.hours:g} h")
    for line in report_lines(groups, schema.task, settings.feedback_min_rows) or ["none"]:
        print(f"  {line}")
    misses = gate_misses(groups, schema.task, params.evaluate.gate, settings.feedback_min_rows)
    for miss in misses:
        print(f"below the gate: {miss}")
    return EXIT_CHECK_FAILED if misses else EXIT_OK


@command("collect", "turn labelled production rows into data/raw/production.csv (DVC-tracked)")
def collect(args: argparse.Namespace, settings: Settings) -> int:
    params = load_params(settings.params_path)
    from .collect import collect as run_collect

    rejects = params.data.production.with_name(params.data.production.stem + ".rejects.csv")
    result = run_collect(params, _store(settings), rejects)
    print(
        f"{result.path}: {result.added} new labelled rows, {result.total} in all; "
        f"{result.rejected} refused" + (f" (see {rejects})" if result.rejected else "")
    )
    print(result.tracked)
    if result.added:
        print("next: dvc repro (prepare adds them; train, evaluate and register follow)")
    return EXIT_OK


{% if cookiecutter.monitoring == "prometheus" -%}
@command(
    "drift",
    "compare a CSV of new data with the model's training data; exit 1 on drift",
    "when drift is detected",
)
def drift(args: argparse.Namespace, settings: Settings) -> int:
    current = require_file(Path(args.current), "give the CSV of new data to compare")
    if current.stat().st_size == 0:
        raise DataError(f"{current}: the file is empty (0 bytes); a header row is needed")
    model_dir = Path(args.model_dir) if args.model_dir else None
    from .artifact import check_model_dir

    if model_dir is not None:
        check_model_dir(model_dir)
    from .monitoring.settings import DriftSettings

    with settings_errors(DriftSettings, {}):
        thresholds = DriftSettings().thresholds()
    from .monitoring.check import run_check
    from .monitoring.report import verdict, write_reports

    report, model = run_check(settings, current, model_dir, args.alias, thresholds)
    for path in write_reports(report, model, current, Path(args.output), args.format or ["md"]):
        print(f"wrote {path}")
    print(verdict(report))
    return EXIT_CHECK_FAILED if report.detected else EXIT_OK


{% endif -%}
@command("serve", "start the prediction server; every setting is a flag or a variable")
def serve(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the pipeline's stages do not depend on the server's settings.
    from .serving.settings import ServeSettings

    typed = {name: value for name, value in vars(args).items() if value is not None}
    flags = {name: typed[name] for name in ServeSettings.model_fields if name in typed}
    with settings_errors(ServeSettings, flags):
        served = ServeSettings(**flags)
    if served.model_dir is not None:
        from .artifact import ArtifactError, check_model_dir

        try:
            check_model_dir(served.model_dir)
        except ArtifactError as error:
            where = "--model-dir" if "model_dir" in flags else "MODEL_DIR"
            raise ArtifactError(f"{where}: {error}") from error
    elif importlib.util.find_spec("mlflow") is None:
        # The serve image has no MLflow: without MODEL_DIR it could never load a model.
        raise SettingsError(
            "MODEL_DIR is not set and MLflow is not installed, so models:/"
            f"{served.model_name}@{served.model_alias} cannot be loaded — set MODEL_DIR "
            "(or --model-dir) to a folder `export-model` wrote (the image's is /app/model), "
            "or install the train extra to serve from the registry"
        )
    # uvicorn's workers read the settings again: the flags reach them as variables.
    for name, value in flags.items():
        os.environ[env_name(ServeSettings, name)] = value
    from .serving.run import serve as run_server

    run_server(served)
    return EXIT_OK


@command(
    "smoke",
    "check a running server: ready, then one prediction from its schema",
    "when the server is not ready in time or answers wrong",
)
def smoke(args: argparse.Namespace, settings: Settings) -> int:
    from .serving.smoke import smoke as check

    try:
        print(check(args.url, wait_seconds=args.wait))
    except RuntimeError as error:
        print(f"smoke test failed: {error}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per server setting, named after it, with its variable and default."""
    from .serving.settings import ServeSettings

    for name, field in ServeSettings.model_fields.items():
        default = "unset" if field.default is None else field.default
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            metavar=name.split("_")[-1].upper(),
            help=f"{field.description} [{env_name(ServeSettings, name)}; default: {default}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, help_text, status) in COMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, description=help_text, epilog=status)
        if name == "serve":
            add_serve_flags(subparser)
        if name == "promote":
            subparser.add_argument("version", help="registry version number, e.g. 3")
        if name == "smoke":
            subparser.add_argument(
                "--url", default="http://127.0.0.1:8000", help="default: http://127.0.0.1:8000"
            )
            subparser.add_argument(
                "--wait", type=float, default=0, help="seconds to wait for ready; default: 0"
            )
{%- if cookiecutter.monitoring == "prometheus" %}
        if name == "drift":
            subparser.add_argument("--current", required=True, help="CSV of the new data")
            subparser.add_argument("--model-dir", help="an exported model (default: the registry)")
            subparser.add_argument("--alias", default="champion", help="default: champion")
            subparser.add_argument(
                "--output", default="reports/drift", help="default: reports/drift"
            )
            subparser.add_argument(
                "--format",
                choices=["md", "html"],
                action="append",
                help="report format, once per format wanted; default: md",
            )
{%- endif %}
        if name == "predict":
            subparser.add_argument(
                "--input", required=True, help="CSV or Parquet: a path or a URL (s3://, dvc://…)"
            )
            subparser.add_argument(
                "--output", required=True, help="CSV or Parquet to write: a path or a URL"
            )
            subparser.add_argument("--model-dir", help="an exported model (default: the registry)")
            subparser.add_argument("--alias", default="champion", help="default: champion")
            subparser.add_argument(
                "--keep", nargs="*", default=[], metavar="COL", help="input columns to copy"
            )
            subparser.add_argument(
                "--chunk-rows", type=int, default=50_000, help="rows per chunk; default: 50000"
            )
            subparser.add_argument(
                "--engine",
                choices=["dask"],
                help="score a directory of Parquet files on a Dask cluster (make engine-setup)",
            )
            subparser.add_argument(
                "--workers", type=int, default=2, help="--engine's local workers; default: 2"
            )
            subparser.add_argument(
                "--predictor",
                choices=["auto", "numpy", "library"],
                default="auto",
                help="numpy: the compiled arrays; library: the pipeline itself; default: auto "
                "(the library for long jobs of tree ensembles)",
            )
        if name == "feedback":
            subparser.add_argument(
                "--labels", required=True, help="CSV with the columns prediction_id, actual"
            )
            subparser.add_argument(
                "--log",
                default="build/predictions",
                help="the log's directory; default: build/predictions",
            )
        if name == "check-live":
            subparser.add_argument(
                "--hours", type=float, default=24.0, help="the labelled window; default: 24"
            )
        if name == "compare-live":
            subparser.add_argument(
                "--hours", type=float, default=24.0, help="the labelled window; default: 24"
            )
            subparser.add_argument(
                "--promote", action="store_true", help="move @champion when the challenger wins"
            )
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
    handler, _, _ = COMMANDS[args.command]
    settings: Settings | None = None
    try:
        with settings_errors(Settings, {}):
            settings = Settings()
        return handler(args, settings)
    except ProjectError as error:  # one line a user can act on; anything else is a bug
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        outage = explain(error, settings.mlflow_tracking_uri if settings else "")
        if outage is None:
            raise
        print(f"error: {outage}", file=sys.stderr)
        return EXIT_UNAVAILABLE
