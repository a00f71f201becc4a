"""Batch scoring: a CSV or Parquet file of any size, read and written in chunks.

Every row is checked by the API's rules (serving/requests.py), applied a column at a
time: a finite number where the schema says numeric, a category seen in training, null
only where training had missing values. A row that breaks a rule is not scored: it goes
to `<output>.rejects.csv` as one line per problem (`line`, `field`, `reason`), and the
job goes on. `line` is the CSV line (the header is line 1), or the 1-based row of a
Parquet file.

The input is a local path or an fsspec URL (`s3://…`, `gs://…`, `dvc://path` for a file
this repository tracks with DVC); so is the output. The output and its rejects are
written to `.partial` files renamed at the end (or uploaded at the end, for a URL): a job
that fails leaves the previous output as it was.

Large chunks of a tree ensemble are scored by the library itself when it is installed
(with the `train` extra): the numpy walk of inference.py wins on small batches only
(bench/batch.py measures both); see `ChunkScorer`.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .errors import DataError
from .ids import ID_FIELD, new_ids
from .inference import CompiledModel, Inputs
from .schema import FeatureSchema, as_category_strings

if TYPE_CHECKING:
    import pandas as pd

    from .artifact import LoadedModel

# Rows per chunk: memory is bounded by this, not by the file.
CHUNK_ROWS = 50_000
# On large batches numpy's level-by-level tree walk is slower than the libraries' compiled
# one; from these many rows a chunk goes to the library (bench/batch.py, 1 thread on both
# sides). Linear models stay with numpy at every size.
LIBRARY_FROM_ROWS = {
    "random_forest": 2_000,
    "hist_gradient_boosting": 1_000,
    "xgboost": 1_000,
    "lightgbm": 500,
}
# Loading the library costs seconds (importing scikit-learn, reading the pipeline): "auto"
# loads it once numpy's estimated time for the rest of the file exceeds this.
SWITCH_AFTER_SECONDS = 10.0
REJECT_COLUMNS = ["line", "field", "reason"]
# What reads each URL scheme, and what installs it (fsspec names the package only).
BACKENDS = {
    "s3": "s3fs (uv add 'dvc[s3]')",
    "gs": "gcsfs (uv add 'dvc[gs]')",
    "gcs": "gcsfs (uv add 'dvc[gs]')",
    "az": "adlfs (uv add 'dvc[azure]')",
    "abfs": "adlfs (uv add 'dvc[azure]')",
    "http": "aiohttp (uv add 'fsspec[http]')",
    "https": "aiohttp (uv add 'fsspec[http]')",
}


def file_format(path: str) -> str:
    suffix = Path(path.split("?")[0]).suffix.lower()
    if suffix in (".csv", ".parquet", ".pq"):
        return "parquet" if suffix != ".csv" else "csv"
    raise DataError(f"{path}: give a .csv or .parquet file")


def url_filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of a URL and the path on it; a scheme nothing reads is named."""
    import fsspec

    scheme = url.split("://", 1)[0]
    try:
        filesystem, location = fsspec.core.url_to_fs(url)
    except ValueError as error:
        raise DataError(f"{url}: no filesystem reads {scheme}:// URLs ({error})") from error
    except ImportError as error:
        needs = BACKENDS.get(scheme, f"the fsspec backend of {scheme}://")
        raise DataError(f"{url}: reading {scheme}:// URLs needs {needs}: {error}") from error
    return filesystem, str(location)


def open_source(source: str) -> tuple[IO[bytes], int]:
    """The input opened for reading, and its size in bytes; a missing one is named."""
    if "://" not in source:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{source}: no such file — give the CSV or Parquet file to score")
        return path.open("rb"), path.stat().st_size
    filesystem, location = url_filesystem(source)
    try:
        size = int(filesystem.size(location))
        return filesystem.open(location, "rb"), size
    except FileNotFoundError as error:
        raise DataError(f"{source}: no such file") from error


def rejects_name(output: str) -> str:
    return f"{output}.rejects.csv"


def publish(staged: Path, url: str) -> None:
    """Upload a staged file to `url` (or remove what is there when nothing was staged)."""
    filesystem, location = url_filesystem(url)
    if staged.is_file():
        filesystem.put_file(str(staged), location)
    elif filesystem.exists(location):
        filesystem.rm(location)


def read_chunks(
    handle: IO[bytes], kind: str, schema: FeatureSchema, rows: int, keep: list[str], name: str
) -> Iterator[pd.DataFrame]:
    """The file `name` in frames of at most `rows` rows; an unreadable CSV is named."""
    import pandas as pd

    if kind == "csv":
        # categories and kept columns stay text: '007' is copied as '007', not as 7
        text = {*schema.categorical, *(column for column in keep if column not in schema.numeric)}
        try:
            with pd.read_csv(handle, chunksize=rows, dtype=dict.fromkeys(text, str)) as reader:
                yield from reader
        except pd.errors.EmptyDataError as error:
            raise DataError(f"{name}: the file is empty; a header row is needed") from error
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            detail = " ".join(str(error).split())
            raise DataError(f"{name}: not a readable CSV: {detail}") from error
        return
    import pyarrow.parquet as pq

    with pq.ParquetFile(handle) as parquet:
        for batch in parquet.iter_batches(batch_size=rows):
            yield batch.to_pandas()


def parquet_rows(handle: IO[bytes]) -> int:
    import pyarrow.parquet as pq

    rows = int(pq.ParquetFile(handle).metadata.num_rows)
    handle.seek(0)
    return rows


@dataclass
class Checked:
    """A chunk split into the rows the model takes and the problems of the others."""

    good: Any  # boolean mask over the chunk's rows
    inputs: Inputs
    rejects: pd.DataFrame


def check_chunk(frame: pd.DataFrame, schema: FeatureSchema, first_line: int) -> Checked:
    """The API's rules, column-wise; `first_line` is the line number of the first row."""
    import pandas as pd

    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise DataError(f"feature column(s) {missing} missing")
    rows = len(frame)
    lines = np.arange(first_line, first_line + rows)
    good = np.ones(rows, dtype=bool)
    problems: list[pd.DataFrame] = []

    def reject(where: Any, name: str, reason: str, column: Any = None) -> None:
        """Reject the rows `where` marks; with `column`, the reason quotes their value."""
        if not where.any():
            return
        good[where] = False
        reasons: Any = reason
        if column is not None:  # text only for the rejected rows: cheap when they are few
            reasons = [f"{reason}: {value}" for value in column.to_numpy(dtype=object)[where]]
        problems.append(pd.DataFrame({"line": lines[where], "field": name, "reason": reasons}))

    numeric, categorical = [], []
    for feature in schema.features:
        column = frame[feature.name]
        absent = column.isna().to_numpy()
        if feature.kind == "numeric":
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
            reject(~absent & np.isnan(values), feature.name, "not a number", column)
            reject(np.isinf(values), feature.name, "not a finite number")
            numeric.append(values)
        else:
            strings = as_category_strings(column).to_numpy(dtype=object)
            seen = np.isin(strings, np.array(feature.categories or [], dtype=object))
            reject(~absent & ~seen, feature.name, "a category not seen in training", column)
            categorical.append(strings)
        if not feature.nullable:
            reject(absent, feature.name, "missing (it was never missing in training)")
    numbers = np.column_stack(numeric) if numeric else np.empty((rows, 0))
    inputs = Inputs(
        numeric=numbers[good],
        categorical=[
            [None if value != value else value for value in strings[good]]  # NaN: missing
            for strings in categorical
        ],
    )
    rejects = pd.concat(problems) if problems else pd.DataFrame(columns=REJECT_COLUMNS)
    return Checked(good, inputs, rejects.sort_values("line", kind="stable"))


def uses_library(family: str, rows: int) -> bool:
    """Whether the library beats the numpy walk on a chunk of `rows` rows of this family."""
    return rows >= LIBRARY_FROM_ROWS.get(family, sys.maxsize)


def model_frame(inputs: Inputs, schema: FeatureSchema) -> pd.DataFrame:
    """Checked inputs as the pipeline takes them: what `to_model_frame` makes of the rows,
    without parsing the columns a second time."""
    import pandas as pd

    # the numbers as one block (no copy), as a DataFrame of one dtype holds them
    frame = pd.DataFrame(inputs.numeric, columns=schema.numeric, copy=False)
    if not schema.categorical:
        return frame
    for name, values in zip(schema.categorical, inputs.categorical, strict=True):
        text = np.array(values, dtype=object)
        frame[name] = np.where(pd.isna(text), np.nan, text)  # missing: NaN, as in training
    return frame[schema.names]


def library_predictions(pipeline: Any, inputs: Inputs, schema: FeatureSchema) -> tuple[Any, Any]:
    """The pipeline's predictions (and probabilities, for a classifier) of checked rows."""
    features = model_frame(inputs, schema)
    if schema.task != "classification":
        return np.asarray(pipeline.predict(features)), None
    probabilities = np.asarray(pipeline.predict_proba(features), dtype=float)
    # what the classifiers' own predict does, without computing the model twice
    classes = np.asarray(pipeline.classes_)
    return classes[np.argmax(probabilities, axis=1)], probabilities


class ChunkScorer:
    """The model's predictions for a checked chunk, from numpy or from the library.

    `predictor`: "numpy" (the compiled arrays the server uses), "library" (the pipeline
    itself: scikit-learn, XGBoost or LightGBM) or "auto": numpy, and the library for the
    chunks where it is faster (`uses_library`) once a tree ensemble's job looks long
    enough to repay its load (`switch`). Both give the same model: `train` proved the
    compiled arrays reproduce the pipeline.
    """

    def __init__(self, model: LoadedModel, predictor: str = "auto") -> None:
        self.model = model
        compiled = model.predictor
        self.compiled = isinstance(compiled, CompiledModel)
        self.family = str(compiled.meta["model"]) if isinstance(compiled, CompiledModel) else ""
        self.requested = predictor
        self.tried = False
        self.pipeline: Any = None
        self.chunks = {"numpy": 0, "library": 0}  # which scored how many, for the summary
        if predictor == "library" or not self.compiled:
            self.pipeline = self._load()
            if self.pipeline is None:
                raise DataError(f"{model.source} has compiled arrays only: use --predictor numpy")

    def _load(self) -> Any:
        """The pipeline, or None when the model directory has none (compiled arrays only)."""
        from .artifact import load_pipeline

        self.tried = True
        directory = self.model.directory
        if directory is None or not (directory / "MLmodel").is_file():
            return None
        return load_pipeline(directory)

    def switch(self, remaining_seconds: float) -> None:
        """Load the library (once) when numpy would take long enough to repay its import."""
        if self.requested != "auto" or self.tried or remaining_seconds < SWITCH_AFTER_SECONDS:
            return
        if self.family not in LIBRARY_FROM_ROWS:
            return
        try:
            self.pipeline = self._load()
        except ImportError:  # a serving-only install: numpy for good
            self.pipeline = None

    def uses_library(self, rows: int) -> bool:
        if self.pipeline is None:
            return False
        if not self.compiled or self.requested == "library":
            return True
        return self.requested == "auto" and uses_library(self.family, rows)

    def predict(self, checked: Checked) -> tuple[Any, Any]:
        if self.uses_library(checked.inputs.rows):
            self.chunks["library"] += 1
            return library_predictions(self.pipeline, checked.inputs, self.model.schema)
        self.chunks["numpy"] += 1
        return self.model.predictor.predict(checked.inputs)


def scored(frame: pd.DataFrame, checked: Checked, scorer: ChunkScorer, keep: list[str]) -> Any:
    import pandas as pd

    model = scorer.model
    predictions, probabilities = scorer.predict(checked)
    out = {name: frame[name].to_numpy()[checked.good] for name in keep}
    out["prediction"] = np.asarray(predictions)
    if probabilities is not None:
        for index, label in enumerate(model.classes or []):
            out[f"proba_{label}"] = probabilities[:, index]
    rows = int(checked.good.sum())
    out["model_name"] = np.full(rows, model.name, dtype=object)
    out["model_version"] = np.full(rows, model.version, dtype=object)
    out[ID_FIELD] = new_ids(rows)
    return pd.DataFrame(out)


# A CSV value that must be quoted; Arrow's writer would then quote every string.
NEEDS_QUOTES = r'[,"\r\n]'


def is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def csv_bytes(frame: pd.DataFrame, table: Any, header: bool) -> bytes:
    """A chunk as CSV, quoted only where needed (as pandas and the csv module quote).

    Arrow writes it, unquoted, unless a text value holds a comma, a quote or a line break:
    then pandas does, which quotes that value only.
    """
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    text = [column for column in table.columns if is_text(column.type)]
    if any(pc.any(pc.match_substring_regex(column, NEEDS_QUOTES)).as_py() for column in text):
        return str(frame.to_csv(header=header, index=False, lineterminator="\n")).encode("utf-8")
    body = io.BytesIO()
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    pacsv.write_csv(table, body, write_options=options)
    if not header:
        return body.getvalue()
    names = io.StringIO()
    csv.writer(names, lineterminator="\n").writerow(table.column_names)
    return names.getvalue().encode("utf-8") + body.getvalue()


@dataclass
class Writer:
    """Appends frames to `<path>.partial` (CSV or Parquet, the header or schema from the
    first frame); `finish` renames it to `path`, `discard` removes it.

    Both go through Arrow: pandas' `to_csv` took a quarter of a 1M-row job.
    """

    path: Path
    kind: str
    started: bool = False
    schema: Any = field(default=None, repr=False)
    handle: Any = field(default=None, repr=False)

    @property
    def partial(self) -> Path:
        return self.path.with_name(self.path.name + ".partial")

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = self._conform(pa.Table.from_pandas(frame, preserve_index=False))
        if self.kind == "csv":
            if self.handle is None:
                self.handle = self.partial.open("wb")
            self.handle.write(csv_bytes(frame, table, header=not self.started))
        else:
            if self.handle is None:
                self.handle = pq.ParquetWriter(self.partial, table.schema)
            self.handle.write_table(table)
        self.started = True

    def _conform(self, table: Any) -> Any:
        """Later chunks take the first chunk's types (a kept column all empty in one
        chunk, say); a column that cannot is named."""
        if self.schema is None:
            self.schema = table.schema
            return table
        if table.schema.equals(self.schema):
            return table
        for name, kind in zip(self.schema.names, self.schema.types, strict=True):
            try:
                table.column(name).cast(kind)
            except Exception as error:  # pyarrow's ArrowInvalid, ArrowNotImplementedError
                raise DataError(
                    f"column {name!r} changes type between chunks ({kind} first, "
                    f"{table.column(name).type} later): {error}"
                ) from error
        return table.cast(self.schema)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def finish(self) -> None:
        self.close()
        if self.started:
            self.partial.replace(self.path)
        else:
            self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)


@dataclass
class Summary:
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    chunks: dict[str, int] = field(default_factory=dict)  # chunks per predictor

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        by = ", ".join(f"{count} by {name}" for name, count in self.chunks.items() if count)
        return (
            f"{self.rows} rows: {self.scored} scored, {self.rejected} rejected, "
            f"in {self.seconds:.1f} s ({rate:,.0f} rows/s)" + (f"; chunks: {by}" if by else "")
        )


class Progress:
    """A bar on a terminal; a plain line per chunk otherwise (logs, CI, Kubernetes)."""

    def __init__(self, total: int, unit: str) -> None:
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, unit_scale=True, file=sys.stderr)

    def update(self, done: int, summary: Summary) -> None:
        if self.bar is None:
            print(summary.line(), file=sys.stderr, flush=True)
            return
        self.bar.set_postfix_str(f"{summary.rows:,} rows, {summary.rejected:,} rejected")
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def predict_file(
    model: LoadedModel,
    source: str,
    output: str,
    keep: list[str],
    chunk_rows: int = CHUNK_ROWS,
    predictor: str = "auto",
) -> Summary:
    """Score `source` into `output` (a path or a URL); rejected rows into its .rejects.csv."""
    remote = "://" in output
    staging = Path(tempfile.mkdtemp(prefix="predict-")) if remote else None
    local = staging / Path(output.split("?")[0]).name if staging else Path(output)
    try:
        summary = score_into(model, source, local, keep, chunk_rows, predictor)
        if remote:  # whole files, once they are complete
            publish(Path(rejects_name(str(local))), rejects_name(output))
            publish(local, output)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return summary


def score_into(
    model: LoadedModel,
    source: str,
    output: Path,
    keep: list[str],
    chunk_rows: int,
    predictor: str,
) -> Summary:
    kind, source_kind = file_format(str(output)), file_format(source)
    handle, size = open_source(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(output, kind)
    rejects = Writer(Path(rejects_name(str(output))), "csv")
    summary, started = Summary(), time.perf_counter()
    first_line = 2 if source_kind == "csv" else 1
    scorer = ChunkScorer(model, predictor)
    with handle:
        # CSV: how far into the file (bytes); Parquet: rows, from its footer
        total = size if source_kind == "csv" else parquet_rows(handle)
        progress = Progress(total, "B" if source_kind == "csv" else " rows")
        try:
            chunks = read_chunks(handle, source_kind, model.schema, chunk_rows, keep, source)
            for frame in chunks:
                unknown = [name for name in keep if name not in frame.columns]
                if unknown:
                    raise DataError(f"{source}: --keep column(s) {unknown} not in the file")
                checked = check_chunk(frame, model.schema, first_line + summary.rows)
                writer.write(scored(frame, checked, scorer, keep))
                if len(checked.rejects):
                    rejects.write(checked.rejects)
                summary.rows += len(frame)
                summary.scored += int(checked.good.sum())
                summary.rejected += int((~checked.good).sum())
                summary.seconds = time.perf_counter() - started
                summary.chunks = dict(scorer.chunks)
                done = handle.tell() if source_kind == "csv" else summary.rows
                progress.update(done, summary)
                if done:
                    scorer.switch(summary.seconds * (total - done) / done)
        except BaseException:
            writer.discard()
            rejects.discard()
            raise
        finally:
            progress.close()
    writer.finish()
    rejects.finish()
    return summary
