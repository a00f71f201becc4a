"""The prediction log: each served row as one JSON line, written off the event loop.

A line holds the row's id, the time, the model's name, version and variant, its inputs,
the prediction and, for a classifier, the probabilities. The inputs are the raw request
values: personal data, possibly. `PREDICTION_LOG_DIR=off` turns the log off and
`PREDICTION_LOG_OMIT=inputs` leaves fields out.

The server never waits for it. `write` puts the request's rows on a queue and returns;
a writer thread turns them into lines and appends them. When the queue holds
`PREDICTION_LOG_QUEUE_ROWS` rows already (the disk cannot keep up) or a write fails (the
disk is full, the directory unwritable), the rows are dropped and counted in
`ml_prediction_log_rows_total{outcome="dropped"}`, and the request is answered as usual.

Files: `<dir>/predictions-<pid>.jsonl`, one per worker process so that workers never
interleave, rotated to `predictions-<pid>-<n>.jsonl` past `PREDICTION_LOG_MAX_BYTES`;
the oldest rotated files go while all of them exceed `PREDICTION_LOG_KEEP_BYTES`.
`PREDICTION_LOG_DIR=-` writes the lines to standard output instead (the image does: the
container runtime keeps them and no volume can fill).

The same thread hands the rows to the prediction store (`prediction_store.py`), where
`/feedback` finds them by id; rows it cannot store are dropped and counted in
`ml_prediction_store_rows_total{outcome="dropped"}`.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from prometheus_client import Counter

from ..inference import Array, Inputs
from ..prediction_store import PredictionStore, Stored
from ..schema import FeatureSchema

log = logging.getLogger(__name__)
# How often the writer forgets store rows older than PREDICTION_STORE_KEEP_DAYS.
PRUNE_EVERY_SECONDS = 600.0
# The writer gathers what arrives for this long into one write and one commit: woken per
# request, it would take the GIL (and the store a transaction) as often as requests come.
GATHER_SECONDS = 0.05


@dataclass
class Served:
    """One answered request, as the route saw it (rendered into lines by the writer)."""

    ids: list[str]
    model: str
    version: str
    variant: str
    schema: FeatureSchema
    inputs: Inputs
    predictions: Array
    probabilities: Array | None
    at: float


def records(served: Served) -> list[dict[str, Any]]:
    """The request's rows as log records (NaN, a missing number, becomes None)."""
    numeric, categorical = served.schema.numeric, served.schema.categorical
    numbers = served.inputs.numeric.tolist()
    predictions = served.predictions.tolist()
    probabilities = None if served.probabilities is None else served.probabilities.tolist()
    milliseconds = int(served.at % 1 * 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(served.at)) + f".{milliseconds:03d}Z"
    texts = dict(zip(categorical, served.inputs.categorical, strict=True))
    out = []
    for row, row_id in enumerate(served.ids):
        inputs = dict(zip(numeric, numbers[row], strict=True))
        inputs.update({name: values[row] for name, values in texts.items()})
        out.append(
            {
                "id": row_id,
                "ts": stamp,
                "model": served.model,
                "version": served.version,
                "variant": served.variant,
                "inputs": {
                    name: None if value != value else value  # NaN: JSON has no NaN
                    for name, value in inputs.items()
                },
                "prediction": predictions[row],
                "probabilities": None if probabilities is None else probabilities[row],
            }
        )
    return out


def lines(rows: list[dict[str, Any]], omit: frozenset[str]) -> bytes:
    """Records as JSON lines, without the omitted fields."""
    if omit:
        rows = [{key: value for key, value in row.items() if key not in omit} for row in rows]
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def stored(rows: list[dict[str, Any]], at: float, omit: frozenset[str]) -> list[Stored]:
    """Records as the prediction store keeps them (omitted inputs are not kept either)."""
    return [
        Stored(
            id=row["id"],
            served_at=at,
            model=row["model"],
            version=row["version"],
            variant=row["variant"],
            inputs=None if "inputs" in omit else row["inputs"],
            prediction=row["prediction"],
            probabilities=row["probabilities"],
        )
        for row in rows
    ]


class Rotating:
    """Appends to `<dir>/predictions-<pid>.jsonl`, rotating and pruning by size."""

    def __init__(self, directory: Path, max_bytes: int, keep_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.keep_bytes = keep_bytes
        self.stem = f"predictions-{os.getpid()}"
        self.handle: IO[bytes] | None = None
        self.size = 0
        self.rotations = 0

    @property
    def current(self) -> Path:
        return self.directory / f"{self.stem}.jsonl"

    def write(self, data: bytes) -> None:
        if self.handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.handle = self.current.open("ab")
            self.size = self.handle.tell()
        self.handle.write(data)
        self.handle.flush()
        self.size += len(data)
        if self.size >= self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        self.close()
        self.rotations += 1
        self.current.rename(self.directory / f"{self.stem}-{time.time_ns()}.jsonl")
        rotated = sorted(
            (path for path in self.directory.glob("predictions-*-*.jsonl")),
            key=lambda path: path.stat().st_mtime_ns,
        )
        total = sum(path.stat().st_size for path in rotated)
        while rotated and total > self.keep_bytes:
            oldest = rotated.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class Stdout:
    def write(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def close(self) -> None:
        pass


class PredictionLog:
    """Hands served rows to a writer thread; drops and counts what it cannot keep."""

    def __init__(
        self,
        target: str,
        rows_total: Counter,
        max_bytes: int = 50_000_000,
        keep_bytes: int = 500_000_000,
        queue_rows: int = 100_000,
        omit: frozenset[str] = frozenset(),
        store: PredictionStore | None = None,
        store_rows: Counter | None = None,  # required with a store
        keep_seconds: float = 30 * 86400.0,
    ) -> None:
        self.store = store
        if store is not None and store_rows is None:
            raise ValueError("a prediction store needs its rows counter")
        self.store_rows = store_rows
        self.keep_seconds = keep_seconds
        self.pruned_at = 0.0
        self.enabled = bool(target) or store is not None
        self.sink: Rotating | Stdout | None = None
        if target == "-":
            self.sink = Stdout()
        elif target:
            self.sink = Rotating(Path(target), max_bytes, keep_bytes)
        self.written = rows_total.labels("written")
        self.dropped = rows_total.labels("dropped")
        self.queue_rows = queue_rows
        self.omit = omit
        self.pending = 0  # rows queued and not yet written
        self.lock = threading.Lock()
        self.queue: queue.SimpleQueue[Served | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.warned = False

    def start(self) -> None:
        if self.enabled and self.thread is None:
            self.thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self.thread.start()

    def write(self, served: Served) -> None:
        """Queue a request's rows; never blocks, never raises."""
        if not self.enabled:
            return
        rows = len(served.ids)
        with self.lock:
            if self.pending + rows > self.queue_rows:
                self.dropped.inc(rows)
                return
            self.pending += rows
        self.queue.put(served)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self.pending

    def stop(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(timeout=10)
            self.thread = None
        if self.sink is not None:
            self.sink.close()

    def _store(self, rows: list[Stored]) -> None:
        store, counted = self.store, self.store_rows
        if store is None or counted is None:
            return
        try:
            if rows:
                store.add_predictions(rows)
            counted.labels("written").inc(len(rows))
            now = time.time()
            if now - self.pruned_at > PRUNE_EVERY_SECONDS:
                self.pruned_at = now
                store.prune(now - self.keep_seconds)
        except Exception as error:  # the database is down or full: the rows go, serving goes on
            counted.labels("dropped").inc(len(rows))
            self._warn("prediction store: rows dropped (%s)", error)

    def _warn(self, message: str, error: Exception) -> None:
        if not self.warned:
            log.warning(message, error)
            self.warned = True

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            if batch[0] is not None:
                time.sleep(GATHER_SECONDS)
            while True:  # everything queued meanwhile goes in one write
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            served = [item for item in batch if item is not None]
            rows = sum(len(item.ids) for item in served)
            made = [(item.at, records(item)) for item in served]
            if self.sink is not None:
                try:
                    data = b"".join(lines(rows_of, self.omit) for _, rows_of in made)
                    if data:
                        self.sink.write(data)
                    self.written.inc(rows)
                except Exception as error:  # a full disk, an unwritable directory: drop, go on
                    self.dropped.inc(rows)
                    self._warn("prediction log: rows dropped (%s)", error)
            if self.store is not None:
                self._store([row for at, rows_of in made for row in stored(rows_of, at, self.omit)])
            with self.lock:
                self.pending -= rows
            if len(served) < len(batch):  # None: stop
                return
