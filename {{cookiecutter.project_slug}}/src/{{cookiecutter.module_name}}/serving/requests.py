"""Requests in, model inputs out: the API's contract, built from the feature schema.

`/predict` takes one JSON record or a list of them; `/invocations` takes MLflow's
scoring formats (dataframe_split, dataframe_records, instances, inputs; JSON or CSV).
Every record is checked against the schema the model was trained with: numbers must be
finite numbers, categories one of the values seen in training (an unseen category is
rejected rather than silently ignored by the model), null only where the training data
had missing values, and no field may be missing or unknown. Problems raise
RequestError with an HTTP status and a body naming the field.

A record may carry its own id in the `prediction_id` field (a column, in CSV and
dataframe_split): it is taken out before validation and returned with the inputs.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from ..ids import ID_FIELD, problem
from ..inference import Inputs
from ..schema import FeatureSchema

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


@dataclass
class Parsed:
    """A request's model inputs, and the ids its records gave (None: it gave none)."""

    inputs: Inputs
    ids: list[str | None] | None = None


class RequestError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _errors(error: ValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]


class RequestParser:
    """Validates records against one model's schema and turns them into `Inputs`."""

    def __init__(self, schema: FeatureSchema, max_rows: int) -> None:
        self.schema = schema
        self.max_rows = max_rows
        fields: dict[str, Any] = {}
        self.numeric_keys: list[str] = []
        self.categorical_keys: list[str] = []
        for index, feature in enumerate(schema.features):
            key = f"f{index}"  # feature names need not be identifiers; they are the aliases
            annotation: Any
            if feature.kind == "numeric":
                annotation = FiniteNumber
                self.numeric_keys.append(key)
                about = f"number seen from {feature.minimum:g} to {feature.maximum:g} in training"
            else:
                annotation = Literal[tuple(feature.categories or [""])]
                self.categorical_keys.append(key)
                about = "one of the categories seen in training"
            if feature.nullable:
                annotation = annotation | None
                about += "; null when missing"
            fields[key] = (annotation, Field(alias=feature.name, description=about))
        self.record: type[BaseModel] = create_model(
            "Record", __config__=ConfigDict(extra="forbid", frozen=True), **fields
        )
        self.records = TypeAdapter(list[self.record])  # type: ignore[name-defined]

    def json_schema(self) -> dict[str, Any]:
        """Request body of /predict: one record or a non-empty list of them."""
        record = self.record.model_json_schema(by_alias=True)
        return {
            "oneOf": [
                record,
                {"type": "array", "items": record, "minItems": 1, "maxItems": self.max_rows},
            ]
        }

    def check_rows(self, rows: int) -> None:
        if rows == 0:
            raise RequestError(422, [{"loc": ["body"], "msg": "send at least one record"}])
        if rows > self.max_rows:
            raise RequestError(413, f"{rows} records; at most {self.max_rows} per request")

    def from_records(
        self, records: Any, prefix: tuple[Any, ...] = ("body",), fast: bool = False
    ) -> Inputs:
        if not isinstance(records, list):
            raise RequestError(422, [{"loc": list(prefix), "msg": "expected a list of records"}])
        self.check_rows(len(records))
        plain = self._numeric_records(records) if fast else None
        if plain is not None:
            return plain
        try:
            validated = self.records.validate_python(records)
        except ValidationError as error:
            raise RequestError(422, _errors(error, prefix)) from error
        rows = [record.__dict__ for record in validated]
        numeric = np.array(
            [[row[key] for key in self.numeric_keys] for row in rows], dtype=float
        ).reshape(len(rows), len(self.numeric_keys))
        categorical = [[row[key] for row in rows] for key in self.categorical_keys]
        return Inputs(numeric=numeric, categorical=categorical)

    def parse_predict(self, body: bytes) -> Parsed:
        payload = _json(body)
        fast = _no_booleans(body)
        if isinstance(payload, dict):
            records, ids = _take_ids([payload], ("body",), single=True)
            return Parsed(self.from_records(records, prefix=("body",), fast=fast), ids)
        records, ids = _take_ids(payload, ("body",))
        return Parsed(self.from_records(records, fast=fast), ids)

    def parse_invocations(self, body: bytes, content_type: str) -> Parsed:
        if content_type == "text/csv":
            return self.from_csv(body)
        payload = _json(body)
        if not isinstance(payload, dict):
            raise RequestError(422, [{"loc": ["body"], "msg": f"expected one of {MLFLOW_KEYS}"}])
        keys = [key for key in MLFLOW_KEYS if key in payload]
        unknown = sorted(set(payload) - {*MLFLOW_KEYS, "params"})
        if payload.get("params"):  # MLflow ignores params a model does not declare
            raise RequestError(
                422, [{"loc": ["body", "params"], "msg": "this model takes no params"}]
            )
        if len(keys) != 1 or unknown:
            raise RequestError(
                422, [{"loc": ["body"], "msg": f"give exactly one of {MLFLOW_KEYS}"}]
            )
        key = keys[0]
        data = payload[key]
        if key == "dataframe_split":
            split, ids = _take_split_ids(data)
            return Parsed(self.from_split(split, fast=_no_booleans(body)), ids)
        if isinstance(data, dict):  # columns -> values, the other pandas orientation
            data = _columns_to_records(data, key)
        records, ids = _take_ids(data, ("body", key))
        inputs = self.from_records(records, prefix=("body", key), fast=_no_booleans(body))
        return Parsed(inputs, ids)

    def from_split(self, split: Any, fast: bool = True) -> Inputs:
        prefix = ("body", "dataframe_split")
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise RequestError(422, [{"loc": list(prefix), "msg": "needs 'columns' and 'data'"}])
        columns, data = split.get("columns"), split["data"]
        self.check_rows(len(data))
        numeric = self._numeric_split(columns, data) if fast else None
        if numeric is not None:
            return numeric
        if not isinstance(columns, list) or not all(isinstance(row, list) for row in data):
            raise RequestError(
                422, [{"loc": list(prefix), "msg": "'columns' and each row of 'data' are lists"}]
            )
        if not _column_names(columns):
            raise RequestError(
                422, [{"loc": [*prefix, "columns"], "msg": "every column name is a string"}]
            )
        if any(len(row) != len(columns) for row in data):
            raise RequestError(
                422, [{"loc": [*prefix, "data"], "msg": "every row needs one value per column"}]
            )
        return self.from_records([dict(zip(columns, row, strict=True)) for row in data], prefix)

    def _numeric_split(self, columns: Any, data: list[Any]) -> Inputs | None:
        """All-numeric schemas: straight into numpy, no per-value Python objects.

        None means "not plainly valid": the checked path then accepts it or says why.
        """
        names = self.schema.names
        if self.categorical_keys or not _column_names(columns) or len(columns) != len(names):
            return None
        if set(columns) != set(names):
            return None
        try:
            values = np.array(data)
        except ValueError:  # ragged rows
            return None
        # text, null or nesting give another dtype or shape
        if values.dtype.kind not in "fi" or values.shape != (len(data), len(names)):
            return None
        values = values.astype(float)
        if not np.isfinite(values).all():
            return None
        if columns != names:
            values = values[:, [columns.index(name) for name in names]]
        return Inputs(numeric=values, categorical=[])

    def _numeric_records(self, records: list[Any]) -> Inputs | None:
        """The same fast path for records: every record exactly the schema's keys."""
        names = self.schema.names
        if self.categorical_keys:
            return None
        expected = set(names)
        if not all(isinstance(record, dict) and record.keys() == expected for record in records):
            return None
        return self._numeric_split(names, [[record[name] for name in names] for record in records])

    def from_csv(self, body: bytes) -> Parsed:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RequestError(400, "CSV must be UTF-8") from error
        try:
            # newline="": a carriage return inside a field is data, as csv expects
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as error:
            raise RequestError(400, f"malformed CSV: {error}") from error
        numeric = set(self.schema.numeric)
        records: list[dict[str, Any]] = []
        for row in rows:
            if None in row:
                raise RequestError(
                    422, [{"loc": ["body", len(records)], "msg": "more values than columns"}]
                )
            record: dict[str, Any] = {}
            for name, value in row.items():
                if name == ID_FIELD and not value:
                    continue  # an empty id cell: the row gets a new id
                if value == "" or value is None:
                    record[name] = None
                elif name in numeric:
                    record[name] = _number(value)
                else:
                    record[name] = value
            records.append(record)
        records, ids = _take_ids(records, ("body",))
        return Parsed(self.from_records(records), ids)


def _checked_id(value: Any, loc: list[Any]) -> str:
    why = problem(value)
    if why is not None:
        raise RequestError(422, [{"loc": [*loc, ID_FIELD], "msg": why}])
    return str(value)


def _take_ids(
    records: Any, prefix: tuple[Any, ...], single: bool = False
) -> tuple[Any, list[str | None] | None]:
    """Records without their id field, and the ids (None when no record has one)."""
    if not isinstance(records, list) or not any(
        isinstance(record, dict) and ID_FIELD in record for record in records
    ):
        return records, None
    stripped: list[Any] = []
    ids: list[str | None] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or ID_FIELD not in record:
            stripped.append(record)
            ids.append(None)
            continue
        loc = list(prefix) if single else [*prefix, index]
        ids.append(_checked_id(record[ID_FIELD], loc))
        stripped.append({name: value for name, value in record.items() if name != ID_FIELD})
    return stripped, ids


def _take_split_ids(split: Any) -> tuple[Any, list[str | None] | None]:
    """dataframe_split without its id column, and the ids; a malformed split is left as it
    is for `from_split` to name what is wrong."""
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        return split, None
    columns, data = split["columns"], split.get("data")
    if ID_FIELD not in columns or not isinstance(data, list):
        return split, None
    if not all(isinstance(row, list) and len(row) == len(columns) for row in data):
        return split, None
    at = columns.index(ID_FIELD)
    loc = ["body", "dataframe_split", "data"]
    ids: list[str | None] = [_checked_id(row[at], [*loc, index]) for index, row in enumerate(data)]
    kept = {
        **split,
        "columns": columns[:at] + columns[at + 1 :],
        "data": [row[:at] + row[at + 1 :] for row in data],
    }
    return kept, ids


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass  # strict JSON failed; NaN, Infinity and big integers parse below
    try:
        return json.loads(body)
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    except ValueError as error:  # not JSON, not text, or an integer of thousands of digits
        raise RequestError(400, f"malformed JSON: {str(error)[:200]}") from None


def _column_names(columns: Any) -> bool:
    return isinstance(columns, list) and all(isinstance(name, str) for name in columns)


def _no_booleans(body: bytes) -> bool:
    # numpy reads true as 1.0; a body with booleans anywhere takes the checked path
    return b"true" not in body and b"false" not in body


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # validation names the field


def _columns_to_records(columns: dict[str, Any], key: str) -> list[dict[str, Any]]:
    values = list(columns.values())
    if not all(isinstance(column, list) for column in values):
        raise RequestError(422, [{"loc": ["body", key], "msg": "expected lists of values"}])
    lengths = {len(column) for column in values}
    if len(lengths) > 1:
        raise RequestError(422, [{"loc": ["body", key], "msg": "columns of unequal length"}])
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]
