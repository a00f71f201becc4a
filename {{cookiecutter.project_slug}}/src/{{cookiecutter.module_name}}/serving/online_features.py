"""Records that name only an entity: their features come from the online feature store.

A /predict record is either every feature, as always, or the entity key alone
(`{"<key>": "000042"}`, beside an optional `prediction_id`). The server reads that
entity's latest values from the online store and answers as if the client had sent them.

- An entity the store does not know: 404, naming the id.
- A value the store lacks: null where the feature could be missing in training,
  otherwise 422 naming the feature and the entity.
- The store out of reach: 503 for records naming entities; records with every feature
  never touch it, and /health/ready stays about the model.

One store client serves the process. Reads run in a worker thread, one at a time: the
requests that arrive while one runs share the next (one call for all their entities), so
under load Feast's per-call cost is paid once for many requests. Each read is timed and
counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from ..config import load_params
from ..features import FEATURE_SERVICE, FEATURE_VIEW, StoreSettings, import_feast, open_store
from ..ids import ID_FIELD
from ..schema import FeatureSchema
from .metrics import LATENCY_BUCKETS
from .requests import RequestError

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)
TIMESTAMP_SUFFIX = "__ts"  # Feast's key of a feature's event time in to_dict()
OPEN_WAIT_SECONDS = 30.0
# One read takes the waiting requests' entities up to this many (a request's own, at least).
MAX_ENTITIES_PER_READ = 1000


@dataclass
class _Wanted:
    ids: list[str]
    answer: asyncio.Future[list[dict[str, Any]]]


class OnlineFeatures:
    """The online store's client, the entity key it answers for, and its metrics."""

    def __init__(
        self,
        registry: CollectorRegistry,
        params_path: Path,
        settings: StoreSettings | None = None,
    ) -> None:
        self.settings = settings or StoreSettings()
        self.store: FeatureStore | None = None
        self.service: Any = None
        # The key's name from params.yaml (the image has it), so that a record naming only
        # the key is told from a mistyped one even while the store cannot be reached.
        self.key = (load_params(params_path).data.entity_key or "") if params_path.is_file() else ""
        self.opened = asyncio.Event()
        self.opening: asyncio.Task[None] | None = None
        self.open_error: str | None = None
        self.waiting: deque[_Wanted] = deque()
        self.reader: asyncio.Task[None] | None = None
        self.latency = Histogram(
            "ml_feature_store_read_duration_seconds",
            "Time one read of the online feature store took (the entities of every request "
            "waiting for it)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.reads = Counter(
            "ml_feature_store_reads",
            "Reads of the online feature store, by outcome (ok, error)",
            ["outcome"],
            registry=registry,
        )
        self.entities = Counter(
            "ml_feature_store_entities",
            "Entities looked up in the online feature store, by outcome (found, unknown)",
            ["outcome"],
            registry=registry,
        )

    def open(self) -> None:
        """Feast's client and the entity key its FeatureView joins on (imports Feast: slow)."""
        store = open_store(self.settings)
        view = store.get_feature_view(FEATURE_VIEW)
        key = view.entity_columns[0].name
        if self.key and key != self.key:
            log.warning("params.yaml names the entity key %r, the registry %r", self.key, key)
        self.key = key
        self.service = store.get_feature_service(FEATURE_SERVICE)
        self.store = store

    async def imported_then(self, loading: Awaitable[None]) -> None:
        """Import Feast, then run `loading` (the model's) while the store opens.

        The import holds the interpreter's lock for seconds: done before the server is
        ready, it never slows a request. Opening the store needs the network: it runs apart
        and never holds readiness back.
        """
        await asyncio.to_thread(import_feast)
        self.opening = asyncio.create_task(self.start())
        await loading

    async def start(self) -> None:
        """Open in the background; until it has, entity records wait (then get a 503)."""
        try:
            await asyncio.to_thread(self.open)
            self.open_error = None
        except Exception as error:  # the store's files or registry out of reach
            self.open_error = f"{type(error).__name__}: {error}"
            log.exception("could not open the feature store (%s)", self.settings.feature_store_yaml)
        finally:
            self.opened.set()

    async def fill(self, body: bytes, schema: FeatureSchema) -> bytes:
        """The /predict body with each entity-only record replaced by the entity's features."""
        key = self.key
        if not key or f'"{key}"'.encode() not in body:
            return body  # no record names the key: nothing to read (the common, fast case)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body  # the parser says what is wrong with it
        single = isinstance(payload, dict)
        records = [payload] if single else payload
        if not isinstance(records, list):
            return body
        wanted = {
            index: record[key]
            for index, record in enumerate(records)
            if isinstance(record, dict) and set(record) - {ID_FIELD} == {key}
        }
        if not wanted:
            return body
        await self.ready()
        ids = self.checked_ids(wanted, single)
        found = dict(zip(ids, await self.read(list(ids.values())), strict=True))
        unknown = [index for index, values in found.items() if not values]
        self.entities.labels("found").inc(len(found) - len(unknown))
        if unknown:
            self.entities.labels("unknown").inc(len(unknown))
            raise RequestError(
                404,
                [
                    {"loc": self.loc(index, single), "msg": f"unknown entity {ids[index]!r}"}
                    for index in unknown
                ],
            )
        filled = list(records)
        for index, values in found.items():
            record = self.record(values, ids[index], schema, index, single)
            if ID_FIELD in records[index]:
                record[ID_FIELD] = records[index][ID_FIELD]
            filled[index] = record
        return orjson.dumps(filled[0] if single else filled)

    async def ready(self) -> None:
        if not self.opened.is_set():
            waiter = asyncio.ensure_future(self.opened.wait())
            await asyncio.wait({waiter}, timeout=OPEN_WAIT_SECONDS)
            waiter.cancel()
        if self.store is None and self.opened.is_set():
            await self.start()  # a registry that was out of reach may be back
        if self.store is None:
            raise RequestError(503, f"the feature store is not available: {self.open_error}")

    def loc(self, index: int, single: bool) -> list[Any]:
        return ["body", self.key] if single else ["body", index, self.key]

    def checked_ids(self, wanted: dict[int, Any], single: bool) -> dict[int, str]:
        """Entity ids as the store keeps them (text); an id of another kind is a 422."""
        problems = [
            {"loc": self.loc(index, single), "msg": "an entity id is a non-empty text or integer"}
            for index, value in wanted.items()
            if isinstance(value, bool) or not isinstance(value, str | int) or value == ""
        ]
        if problems:
            raise RequestError(422, problems)
        return {index: str(value) for index, value in wanted.items()}

    async def read(self, ids: list[str]) -> list[dict[str, Any]]:
        """Each entity's latest values ({}: the store does not know the entity)."""
        answer: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.waiting.append(_Wanted(ids, answer))
        if self.reader is None or self.reader.done():
            self.reader = asyncio.create_task(self.read_waiting())
        return await answer

    async def read_waiting(self) -> None:
        """Read for the waiting requests, one store call at a time, until none wait."""
        while self.waiting:
            batch = [self.waiting.popleft()]
            count = len(batch[0].ids)
            while self.waiting and count + len(self.waiting[0].ids) <= MAX_ENTITIES_PER_READ:
                batch.append(self.waiting.popleft())
                count += len(batch[-1].ids)
            unique = list(dict.fromkeys(entity for wanted in batch for entity in wanted.ids))
            started = time.perf_counter()
            try:
                rows = await asyncio.to_thread(self.read_now, unique)
            except Exception as error:  # Redis down, a file gone: these requests get a 503
                self.reads.labels("error").inc()
                log.warning("online feature store read failed: %s: %s", type(error).__name__, error)
                for wanted in batch:
                    failure = RequestError(
                        503, f"the feature store is not available: {type(error).__name__}"
                    )
                    failure.__cause__ = error
                    if not wanted.answer.done():
                        wanted.answer.set_exception(failure)
                continue
            self.latency.observe(time.perf_counter() - started)
            self.reads.labels("ok").inc()
            found = dict(zip(unique, rows, strict=True))
            for wanted in batch:
                if not wanted.answer.done():
                    wanted.answer.set_result([found[entity] for entity in wanted.ids])

    def read_now(self, ids: list[str]) -> list[dict[str, Any]]:
        if self.store is None:
            raise RuntimeError("the feature store is not open")
        columns = self.store.get_online_features(
            features=self.service, entity_rows=[{self.key: entity} for entity in ids]
        ).to_dict(include_event_timestamps=True)
        names = [
            name for name in columns if name != self.key and not name.endswith(TIMESTAMP_SUFFIX)
        ]
        rows: list[dict[str, Any]] = []
        for row in range(len(ids)):
            # Feast answers an unknown entity with no time for any of its features.
            known = any(columns[name + TIMESTAMP_SUFFIX][row] for name in names)
            rows.append({name: columns[name][row] for name in names} if known else {})
        return rows

    def record(
        self, values: dict[str, Any], entity: str, schema: FeatureSchema, index: int, single: bool
    ) -> dict[str, Any]:
        """The model's record from a known entity's values, or why there is none."""
        record: dict[str, Any] = {}
        missing = []
        for feature in schema.features:
            if feature.name not in values:
                raise RequestError(
                    503, f"the feature store has no feature {feature.name!r}; run `feast apply`"
                )
            value = values[feature.name]
            if isinstance(value, float) and math.isnan(value):
                value = None
            if value is None and not feature.nullable:
                missing.append(feature.name)
            record[feature.name] = value
        if missing:
            where = self.loc(index, single)[:-1]
            raise RequestError(
                422,
                [
                    {
                        "loc": [*where, name],
                        "msg": f"entity {entity!r} has no value of {name!r} in the feature "
                        "store, and the model had none missing in training",
                    }
                    for name in missing
                ],
            )
        return record
