"""`predict --engine dask`: a partitioned Parquet dataset scored on a Dask cluster.

Each file of the input is one task, and each task runs the local path (batch_scoring's
`predict_file`) on its file: the same checks, predictions and rejects, one output file
(and one `.rejects.csv`) per input file. The cluster is the one DASK_SCHEDULER_ADDRESS
names (Dask's own setting: `dask scheduler`, dask-kubernetes, a Dask Gateway…), or a
local one of `workers` processes with a thread each. Workers load the model themselves:
from the model directory (it must be on storage they all read) or from the registry.

Dask is not in the project's environment: `make engine-setup` puts it, with the
project, in `.venv-dask` (the `dask` dependency group).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .batch_scoring import Summary, predict_file, url_filesystem
from .errors import DataError, ProjectError

ENGINES = ("dask",)


class EngineError(ProjectError):
    """The engine is not installed here, or its cluster cannot be reached."""


@dataclass(frozen=True)
class Task:
    source: str
    output: str
    model_dir: str | None
    alias: str
    keep: tuple[str, ...]
    chunk_rows: int


@dataclass
class Done:
    summary: Summary
    worker: str


def partitions(source: str) -> list[str]:
    """The Parquet files of a dataset: a directory (or URL prefix) of them, or a glob."""
    if "://" in source:
        filesystem, location = url_filesystem(source)
        protocol = source.split("://", 1)[0]
        pattern = location if "*" in location else f"{location.rstrip('/')}/*.parquet"
        return sorted(f"{protocol}://{path}" for path in filesystem.glob(pattern))
    path = Path(source)  # a directory, or a glob in its last part: parts/part-*.parquet
    files = path.glob("*.parquet") if path.is_dir() else path.parent.glob(path.name)
    return sorted(str(file) for file in files if file.suffix == ".parquet")


@lru_cache(maxsize=2)
def worker_model(model_dir: str | None, alias: str) -> Any:
    """The model, loaded once per worker process."""
    from .artifact import load
    from .config import Settings

    return load(Settings(), Path(model_dir) if model_dir else None, alias)


def score_partition(task: Task) -> Done:
    """Runs on a worker: the local path on one file."""
    model = worker_model(task.model_dir, task.alias)
    summary = predict_file(model, task.source, task.output, list(task.keep), task.chunk_rows)
    return Done(summary, f"{os.uname().nodename}:{os.getpid()}")


def client(workers: int) -> Any:
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise EngineError(
            "the dask engine is not installed in this environment: `make engine-setup` "
            "installs it in .venv-dask, and `make predict-dask INPUT= OUTPUT=` runs it"
        ) from error
    if dask.config.get("scheduler-address", None):
        return Client()  # DASK_SCHEDULER_ADDRESS: an existing cluster
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    local = Client(cluster)
    local.wait_for_workers(workers)  # every worker up before the tasks are placed
    return local


def predict_dataset(
    source: str,
    output: str,
    model_dir: Path | None,
    alias: str,
    keep: list[str],
    chunk_rows: int,
    workers: int,
) -> tuple[Summary, int]:
    """Score every file of `source` into `output`/<same name>; (totals, workers used)."""
    files = partitions(source)
    if not files:
        raise DataError(f"{source}: no .parquet files — give a directory of them or a glob")
    target = output.rstrip("/")
    if "://" not in target:
        Path(target).mkdir(parents=True, exist_ok=True)
    tasks = [
        Task(file, f"{target}/{Path(file.split('://')[-1]).name}",
             str(model_dir.resolve()) if model_dir else None, alias, tuple(keep), chunk_rows)
        for file in files
    ]  # fmt: skip
    started = time.perf_counter()
    with client(workers) as dask_client:
        futures = dask_client.map(score_partition, tasks, pure=False)
        done: list[Done] = dask_client.gather(futures)
    total = Summary(seconds=time.perf_counter() - started)
    for part in done:
        total.rows += part.summary.rows
        total.scored += part.summary.scored
        total.rejected += part.summary.rejected
    return total, len({part.worker for part in done})
