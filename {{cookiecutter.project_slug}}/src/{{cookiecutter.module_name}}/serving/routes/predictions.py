"""/predict (records keyed by feature name) and /invocations (MLflow's protocol)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from orjson import dumps

from ...ids import REQUEST_ID_HEADER, answer_ids, problem
from ..bodies import media_type, read_body
from ..requests import Parsed, RequestError
from ..server import ServerDep

router = APIRouter(tags=["predictions"])


def row_ids(request: Request, parsed: Parsed) -> list[str]:
    """Each answered row's id: its record's, else the request's X-Request-ID, else new."""
    header = request.headers.get(REQUEST_ID_HEADER)
    if header is not None:
        why = problem(header)
        if why is not None:
            raise RequestError(422, [{"loc": ["header", "X-Request-ID"], "msg": why}])
    return answer_ids(parsed.ids, header, parsed.inputs.rows)


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}
        },
    }
}
INVOCATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InvocationsRequest"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@router.post("/predict", openapi_extra=PREDICT_BODY)
async def predict_records(request: Request, server: ServerDep) -> Response:
    """One record or a list of records, keyed by feature name{{ " (or only the entity key)" if cookiecutter.feature_store == "feast" }}."""
    variant, chosen = await server.choose(request)
    if media_type(request) != "application/json":
        raise RequestError(415, "send application/json")
    body = await read_body(request, server.settings.max_body_bytes)
{%- if cookiecutter.feature_store == "feast" %}
    body = await server.online.fill(body, chosen.model.schema)  # entity-only records
{%- endif %}
    parsed = chosen.parser.parse_predict(body)
    ids = row_ids(request, parsed)
    predictions, probabilities = await server.predict(variant, chosen, parsed.inputs, ids)
    model = chosen.model
    answer: dict[str, Any] = {"predictions": predictions.tolist(), "prediction_ids": ids}
    if probabilities is not None:
        answer["classes"] = model.classes
        answer["probabilities"] = probabilities.round(6).tolist()
    answer["model"] = {"name": model.name, "version": model.version, "alias": model.alias}
    answer["variant"] = variant
    return Response(dumps(answer), media_type="application/json")


@router.post("/invocations", openapi_extra=INVOCATIONS_BODY)
async def invocations(request: Request, server: ServerDep) -> Response:
    """MLflow's scoring protocol, as `mlflow models serve` answers it."""
    variant, chosen = await server.choose(request)
    kind = media_type(request)
    if kind not in ("application/json", "text/csv"):
        raise RequestError(415, "send application/json or text/csv")
    body = await read_body(request, server.settings.max_body_bytes)
    parsed = chosen.parser.parse_invocations(body, kind)
    ids = row_ids(request, parsed)
    predictions, _ = await server.predict(variant, chosen, parsed.inputs, ids)
    # MLflow's clients read "predictions" and ignore the other keys
    answer = {"predictions": predictions.tolist(), "prediction_ids": ids}
    return Response(dumps(answer), media_type="application/json")
