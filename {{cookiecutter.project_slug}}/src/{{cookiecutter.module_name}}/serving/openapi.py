"""The OpenAPI document: request bodies come from the loaded model's schema, so it is
built on demand and rebuilt when another version is served."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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
    app.openapi_schema = built
    app.state.openapi_version = champion.model.version if champion else None
    return built
