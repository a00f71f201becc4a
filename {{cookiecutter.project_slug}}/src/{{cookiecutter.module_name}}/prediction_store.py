"""The prediction store: what was served under each id, and the label it later got.

`/feedback` looks a prediction up here by id, so the store is shared by everything that
serves: every worker of one server through one SQLite file (the default,
`sqlite:///build/predictions.db`), every replica through one PostgreSQL database
(`PREDICTION_STORE_URL=postgresql+psycopg://…`). A label is recorded once per id,
whichever process receives it first; that is what makes the live metrics, counted where
each label is recorded, add up across processes and pods.

The server writes its served rows from the prediction log's writer thread, never on a
request's path. `feedback --labels`, `collect` and `compare-live` read the store offline.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

try:  # the serve set has orjson: a tenth of json's time for a row's inputs
    import orjson

    def _dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

except ImportError:  # the offline commands without the serve set

    def _dumps(value: Any) -> str:
        return json.dumps(value)


METADATA = sa.MetaData()
PREDICTIONS = sa.Table(
    "predictions",
    METADATA,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("served_at", sa.Float, nullable=False, index=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("variant", sa.String(32), nullable=False),
    sa.Column("inputs", sa.Text, nullable=True),  # JSON; null when the log omits inputs
    sa.Column("prediction", sa.Text, nullable=False),  # JSON
    sa.Column("probabilities", sa.Text, nullable=True),  # JSON, classifiers only
)
LABELS = sa.Table(
    "labels",
    METADATA,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("actual", sa.Text, nullable=False),  # JSON
    sa.Column("labelled_at", sa.Float, nullable=False, index=True),
)
CREATE_TRIES = 20
# Rows of one INSERT: SQLite allows 32766 bound values, PostgreSQL 65535 (8 per row).
CHUNK_ROWS = 2000


@dataclass(frozen=True)
class Stored:
    """One served row, as the store keeps it."""

    id: str
    served_at: float
    model: str
    version: str
    variant: str
    inputs: dict[str, Any] | None
    prediction: Any
    probabilities: list[float] | None


@dataclass(frozen=True)
class Labelled:
    """A served row and the label it got."""

    prediction: Stored
    actual: Any
    labelled_at: float


def _stored(row: Any) -> Stored:
    return Stored(
        id=row.id,
        served_at=row.served_at,
        model=row.model,
        version=row.version,
        variant=row.variant,
        inputs=None if row.inputs is None else json.loads(row.inputs),
        prediction=json.loads(row.prediction),
        probabilities=None if row.probabilities is None else json.loads(row.probabilities),
    )


class PredictionStore:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if str(path) not in ("", ":memory:"):
                path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite: a writer waits up to 30 s for another process's write, not fail at once.
        connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_wal)
        # Workers and replicas start together: one creates the tables, the others find
        # them on a later try (create_all checks, then creates, and can lose the race).
        for attempt in range(CREATE_TRIES):
            try:
                METADATA.create_all(self.engine)
                break
            except sa.exc.DBAPIError:
                if attempt == CREATE_TRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing(index_elements=["id"])

    def add_predictions(self, rows: Sequence[Stored]) -> None:
        """Keep served rows; an id seen before keeps its first row.

        One multi-row INSERT per chunk, in the driver's own SQL: an executemany steps
        SQLite once per row and hands the GIL back and forth each time, which the
        server's event loop, sharing the process with this writer, pays for in latency.
        """
        values = [
            (
                row.id,
                row.served_at,
                row.model,
                row.version,
                row.variant,
                None if row.inputs is None else _dumps(row.inputs),
                _dumps(row.prediction),
                None if row.probabilities is None else _dumps(row.probabilities),
            )
            for row in rows
        ]
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        one_row = "(" + ", ".join([mark] * len(PREDICTIONS.columns)) + ")"
        # Only the table's own column names and placeholders: every value is bound.
        head = f"INSERT INTO predictions ({', '.join(PREDICTIONS.columns.keys())}) VALUES "  # noqa: S608
        with self.engine.begin() as connection:
            for start in range(0, len(values), CHUNK_ROWS):
                chunk = values[start : start + CHUNK_ROWS]
                sql = head + ", ".join([one_row] * len(chunk)) + " ON CONFLICT (id) DO NOTHING"
                params = tuple(value for row in chunk for value in row)
                connection.exec_driver_sql(sql, params)

    def lookup(self, ids: Iterable[str]) -> dict[str, Stored]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Stored] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), CHUNK_ROWS):
                chunk = wanted[start : start + CHUNK_ROWS]
                query = sa.select(PREDICTIONS).where(PREDICTIONS.c.id.in_(chunk))
                for row in connection.execute(query):
                    found[row.id] = _stored(row)
        return found

    def add_labels(self, labels: Sequence[tuple[str, Any]], at: float | None = None) -> list[bool]:
        """Record (id, actual) pairs; True where the id had no label yet (the first wins).

        One statement per row, so that each row's outcome is known even when another
        process labels the same id at the same moment.
        """
        stamp = time.time() if at is None else at
        inserted = []
        with self.engine.begin() as connection:
            for row_id, actual in labels:
                values = {"id": row_id, "actual": json.dumps(actual), "labelled_at": stamp}
                # RETURNING names the row only when it was inserted (rowcount is not
                # reliable for ON CONFLICT DO NOTHING across drivers).
                result = connection.execute(self._insert(LABELS).returning(LABELS.c.id), values)
                inserted.append(result.first() is not None)
        return inserted

    def labelled(self, since: float = 0.0, variants: Sequence[str] = ()) -> Iterator[Labelled]:
        """Labelled rows, oldest label first; `since`: labelled at or after (Unix time)."""
        query = (
            sa.select(PREDICTIONS, LABELS.c.actual, LABELS.c.labelled_at)
            .join(LABELS, LABELS.c.id == PREDICTIONS.c.id)
            .where(LABELS.c.labelled_at >= since)
            .order_by(LABELS.c.labelled_at, PREDICTIONS.c.id)
        )
        if variants:
            query = query.where(PREDICTIONS.c.variant.in_(list(variants)))
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                yield Labelled(_stored(row), json.loads(row.actual), row.labelled_at)

    def prune(self, before: float) -> int:
        """Forget rows served before `before` (Unix time), and their labels."""
        with self.engine.begin() as connection:
            old = sa.select(PREDICTIONS.c.id).where(PREDICTIONS.c.served_at < before)
            connection.execute(LABELS.delete().where(LABELS.c.id.in_(old)))
            result = connection.execute(
                PREDICTIONS.delete().where(PREDICTIONS.c.served_at < before)
            )
        return int(result.rowcount)

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_wal(connection: Any, _record: Any) -> None:
    # WAL: readers (a /feedback lookup) never wait for the writer thread, nor it for them.
    # The mode stays with the file: when another process holds the lock to set it, it is set.
    cursor = connection.cursor()
    with suppress(sqlite3.OperationalError):
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
