"""Prediction ids: one per scored row, the same kind from the server and from `predict`.

A client may give its own (a `prediction_id` field in a record, or the `X-Request-ID`
header); otherwise each row gets a random 128-bit id as 32 hex digits. The field's name
is reserved here: no feature column may take it (`prepare` refuses one that does).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

ID_FIELD = "prediction_id"
REQUEST_ID_HEADER = "x-request-id"
RESERVED_NAMES = (ID_FIELD,)
MAX_ID_LENGTH = 128


def new_ids(rows: int) -> Any:
    """`rows` random ids (numpy strings), made at once: cheap for a million rows."""
    digits = os.urandom(16 * rows).hex().encode("ascii")
    return np.frombuffer(digits, dtype="S32").astype(str)


def problem(value: Any) -> str | None:
    """Why a client's id is refused, or None when it is a usable id."""
    if not isinstance(value, str) or not value:
        return "an id is a non-empty string"
    if len(value) > MAX_ID_LENGTH or not value.isprintable():
        return f"an id is at most {MAX_ID_LENGTH} printable characters"
    return None


def answer_ids(given: list[str | None] | None, header: str | None, rows: int) -> list[str]:
    """The id of each answered row: the record's own, else the request's (suffixed by the
    row's index when there are several rows), else a new one."""
    made = new_ids(rows).tolist()
    if header:
        made = [header] if rows == 1 else [f"{header}-{index}" for index in range(rows)]
    if given is None:
        return list(made)
    return [own if own is not None else fresh for own, fresh in zip(given, made, strict=True)]
