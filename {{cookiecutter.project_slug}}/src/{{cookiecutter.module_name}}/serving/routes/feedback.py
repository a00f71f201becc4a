"""/feedback: the true outcome of served predictions, by prediction id.

The body is a list of `{"id": ..., "actual": ...}`. Every item is checked first (the id,
and the label against the target: a known class, or a finite number); one bad item
refuses the request with a 422 naming it, and nothing is recorded. Then each item gets
its own status in the answer: 201 recorded, 404 no prediction has that id, 409 the id
was labelled before (the first label stays).

Ids are looked up in the prediction store, which every worker and replica writes to,
so an id served by another process is found.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...feedback import check_actual
from ...ids import problem
from ...prediction_store import PredictionStore, Stored
from ..bodies import media_type, read_body
from ..requests import RequestError
from ..server import CHAMPION, Server, ServerDep

router = APIRouter(tags=["feedback"])
# A row served a moment ago may still be on its way to the store: look once more after this.
SETTLE_SECONDS = 0.25
FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}
        },
    }
}


def parse_items(body: bytes, server: Server, limit: int) -> list[tuple[str, Any]]:
    """(id, label) pairs, or a RequestError naming every bad item."""
    champion = server.variants.get(CHAMPION)
    if champion is None:
        raise RequestError(503, "the model is not loaded yet")
    target = champion.model.schema.target
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(400, f"the body is not JSON: {error}") from None
    if not isinstance(items, list) or not items:
        raise RequestError(422, [{"loc": ["body"], "msg": "send a non-empty list of {id, actual}"}])
    if len(items) > limit:
        raise RequestError(413, f"{len(items)} items; at most {limit} per request")
    pairs, errors = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"loc": ["body", index], "msg": "an item is an object {id, actual}"})
            continue
        for key in sorted(set(item) - {"id", "actual"}):
            errors.append({"loc": ["body", index, key], "msg": "unknown field"})
        if "actual" not in item:
            errors.append({"loc": ["body", index, "actual"], "msg": "field required"})
        why = problem(item.get("id"))
        if why is not None:
            errors.append({"loc": ["body", index, "id"], "msg": why})
        label, wrong = check_actual(item.get("actual"), target)
        if "actual" in item and wrong is not None:
            errors.append({"loc": ["body", index, "actual"], "msg": wrong})
        if why is None:  # a string: anything else has no safe str() (a list nested a thousand deep)
            pairs.append((item["id"], label))
    if errors:
        raise RequestError(422, errors)
    return pairs


def record(
    server: Server, store: PredictionStore, pairs: list[tuple[str, Any]]
) -> list[dict[str, Any]]:
    """Look the ids up, keep the first label of each, count what was recorded (a thread)."""
    found = store.lookup(row_id for row_id, _ in pairs)
    if len(found) < len({row_id for row_id, _ in pairs}):
        server.prediction_log.flush(timeout=SETTLE_SECONDS)  # this worker's rows
        time.sleep(SETTLE_SECONDS)  # another worker's
        found = store.lookup(row_id for row_id, _ in pairs)
    known = [(row_id, label) for row_id, label in pairs if row_id in found]
    now = time.time()
    inserted = iter(store.add_labels(known, at=now))
    results = []
    for row_id, label in pairs:
        served: Stored | None = found.get(row_id)
        if served is None:
            results.append({"id": row_id, "status": 404, "detail": "no prediction has this id"})
            server.live.outcomes.labels("unknown_id").inc()
        elif not next(inserted):
            results.append(
                {"id": row_id, "status": 409, "detail": "labelled before; kept the first"}
            )
            server.live.outcomes.labels("duplicate").inc()
        else:
            results.append({"id": row_id, "status": 201})
            server.live.outcomes.labels("recorded").inc()
            model = server.variants.get(served.variant) or server.variants[CHAMPION]
            server.live.add(
                served.version,
                served.variant,
                served.prediction,
                served.probabilities,
                label,
                model.model.schema.target.classes,
                now - served.served_at,
            )
    return results


@router.post("/feedback", openapi_extra=FEEDBACK_BODY)
async def feedback(request: Request, server: ServerDep) -> Response:
    """The true outcome of served predictions: `[{"id": ..., "actual": ...}]`."""
    store = server.store
    if store is None:
        raise RequestError(503, "feedback is off: PREDICTION_STORE_URL is off")
    if media_type(request) != "application/json":
        raise RequestError(415, "send application/json")
    body = await read_body(request, server.settings.max_body_bytes)
    pairs = parse_items(body, server, server.settings.feedback_max_items)
    results = await asyncio.to_thread(record, server, store, pairs)
    counts = {"recorded": 0, "unknown": 0, "duplicate": 0}
    for result in results:
        counts[{201: "recorded", 404: "unknown", 409: "duplicate"}[result["status"]]] += 1
    return Response(orjson.dumps({**counts, "results": results}), media_type="application/json")
