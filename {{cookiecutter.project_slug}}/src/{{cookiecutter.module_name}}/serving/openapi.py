"""The OpenAPI document: request bodies come from the loaded model's schema, so it is
built on demand and rebuilt when another version is served."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..ids import MAX_ID_LENGTH
from ..schema import Target
from .server import CHAMPION, Server


def invocations_schema(record: dict[str, Any]) -> dict[str, Any]:
    """MLflow's scoring request: exactly one of its keys."""
    records = {"type": "array", "items": record, "minItems": 1}
    return {
        "type": "object",
        "description": "Exactly one of the keys below, as MLflow's scoring server takes.",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array"}},
                },
                "required": ["columns", "data"],
            },
            "dataframe_records": records,
            "instances": records,
            "inputs": records,
        },
        "minProperties": 1,
        "maxProperties": 1,
    }


def feedback_schema(target: Target | None, limit: int) -> dict[str, Any]:
    """/feedback's body: the checks parse_items makes, so clients (and fuzzers) know them."""
    actual: dict[str, Any] = {"description": "the true class or value"}
    if target is not None and target.classes is not None:
        actual["enum"] = list(target.classes)
    elif target is not None:
        actual["type"] = "number"
    item = {
        "type": "object",
        "required": ["id", "actual"],
        "properties": {
            "id": {
                "type": "string",
                "description": "a prediction_id",
                "minLength": 1,
                "maxLength": MAX_ID_LENGTH,
                # printable: no control characters
                "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$",
            },
            "actual": actual,
        },
        "additionalProperties": False,
    }
    return {"type": "array", "items": item, "minItems": 1, "maxItems": limit}


def link_feedback(paths: dict[str, Any], target: Target) -> None:
    """Links from each prediction to /feedback with its id: what a client does once the true
    label is known, and what a stateful fuzzer follows (an example label stands in)."""
    feedback = paths.get("/feedback", {}).get("post")
    if feedback is None:
        return
    example: Any = target.classes[0] if target.classes else target.minimum or 0.0
    for route in ("/predict", "/invocations"):
        responses = paths.get(route, {}).get("post", {}).get("responses", {})
        if "200" in responses:
            responses["200"]["links"] = {
                "LabelThePrediction": {
                    "operationId": feedback["operationId"],
                    "requestBody": [{"id": "$response.body#/prediction_ids/0", "actual": example}],
                    "description": "the true label of the first prediction, once it is known",
                }
            }


def document(app: FastAPI, server: Server) -> dict[str, Any]:
    champion = server.variants.get(CHAMPION)
    if app.openapi_schema and champion and app.state.openapi_version == champion.model.version:
        return app.openapi_schema
    built = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = built.setdefault("components", {}).setdefault("schemas", {})
    record: dict[str, Any] = {"type": "object"}
    if champion is not None:
        components["PredictRequest"] = champion.parser.json_schema()
        record = champion.parser.record.model_json_schema(by_alias=True)
    else:
        components["PredictRequest"] = {"type": "object"}
    components["InvocationsRequest"] = invocations_schema(record)
    target = champion.model.schema.target if champion is not None else None
    components["FeedbackRequest"] = feedback_schema(target, server.settings.feedback_max_items)
    if target is not None:
        link_feedback(built["paths"], target)
    app.openapi_schema = built
    app.state.openapi_version = champion.model.version if champion else None
    return built
