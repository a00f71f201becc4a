"""No request body gets a server error: fuzzing every route that takes one.

Bodies of any bytes, depth, width, encoding and content type go to /predict,
/invocations and /feedback of a served model; each answer must be a 2xx, or a 4xx with
a `detail` saying what is wrong, and the server must stay ready. The strategies aim at
what breaks parsers: JSON nested past any recursion limit, bytes that are not UTF-8,
numbers out of every range, a wrong type in one field, near misses of MLflow's formats,
CSV with quotes, NUL and huge fields. Then schemathesis generates valid and invalid
requests from /openapi.json, and follows its links (a prediction, then its label). The
assertions are on the status class and readiness only, never on a list of cases.

Two models: one with a categorical feature (the validating path) and an all-numeric one
(the fast path straight into numpy).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response as CheckedResponse
from schemathesis.generation import GenerationMode

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.serving.requests import (
    MLFLOW_KEYS,
)
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)

from conftest import wait_ready

ROUTES = ["/predict", "/invocations", "/feedback"]
JSON_TYPES = ["application/json", "application/json; charset=utf-16"]
CSV_TYPES = ["text/csv", "text/csv; charset=latin-1"]
CONTENT_TYPES = [
    *JSON_TYPES,
    *CSV_TYPES,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
]
# Literals no float or int of the server's parser holds as given.
EXTREME_NUMBERS = [
    "1e999",
    "-1e999",
    "1e-999",
    "NaN",
    "Infinity",
    "-Infinity",
    "-0.0",
    "1" + "0" * 30,
    "1" + "0" * 400,
    "9" * 5000,
    "-" + "9" * 5000,
    "0." + "0" * 5000 + "1",
]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# Hypothesis raises the interpreter's recursion limit while it runs a test; a server runs
# with the limit it starts with, this one.
SERVER_RECURSION_LIMIT = sys.getrecursionlimit()
# Shallow, around the parsers' limits (Python's recursion limit, orjson's 1024 levels), and
# far past them.
DEPTHS = (
    st.integers(1, 50) | st.integers(SERVER_RECURSION_LIMIT - 60, 1100) | st.integers(1100, 100_000)
)


@st.composite
def nested(draw: st.DrawFn, places: tuple[str, ...]) -> bytes:
    """JSON nested up to 100,000 levels: bare, under an MLflow key, or as a label or id."""
    depth = draw(DEPTHS)
    opener = draw(st.sampled_from(["[", '{"a":']))
    closer = "]" if opener == "[" else "}"
    body = opener * depth + draw(st.sampled_from(["", "1", "null"])) + closer * depth
    place = draw(st.sampled_from(places))
    if place in ("actual", "id"):
        other = {"actual": '"id": "a"', "id": '"actual": 1'}[place]
        return ('[{"' + place + '": ' + body + ", " + other + "}]").encode()
    return ('{"' + place + '": ' + body + "}" if place else body).encode()


def record_strategies(names: list[str], valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Records one mistake away from `valid`: a field of another type, missing or unknown."""
    wrong_type = st.builds(
        lambda name, value: {**valid, name: value}, st.sampled_from(names), json_values
    )
    missing = st.builds(
        lambda name: {key: value for key, value in valid.items() if key != name},
        st.sampled_from(names),
    )
    unknown = st.builds(lambda name, value: {**valid, name: value}, st.text(max_size=8), scalars)
    return wrong_type | missing | unknown


@st.composite
def extreme_number(draw: st.DrawFn, names: list[str], valid: dict[str, Any]) -> bytes:
    """A valid record whose one field holds an out-of-range literal."""
    name = draw(st.sampled_from(names))
    text = json.dumps({**valid, name: "@@"})
    return text.replace('"@@"', draw(st.sampled_from(EXTREME_NUMBERS))).encode()


@st.composite
def near_split(draw: st.DrawFn, names: list[str], valid: dict[str, Any]) -> dict[str, Any]:
    """dataframe_split of the right shape, one column name or value of any kind."""
    columns: list[Any] = list(names)
    rows = [[valid[name] for name in names] for _ in range(draw(st.integers(1, 3)))]
    spot = draw(st.integers(0, len(names) - 1))
    if draw(st.booleans()):
        columns[spot] = draw(json_values | st.lists(scalars, max_size=2))
    else:
        rows[0][spot] = draw(json_values)
    return {"dataframe_split": {"columns": columns, "data": rows}}


def mlflow_near_misses(names: list[str], record: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """MLflow's scoring formats with one part wrong."""
    keys = st.sampled_from([*MLFLOW_KEYS, "dataframe", "records", "Instances", "data"])
    rows = st.lists(st.lists(json_values, max_size=4), max_size=4)
    columns = st.lists(st.sampled_from(names) | json_values, max_size=len(names) + 1)
    split = st.fixed_dictionaries(
        {"columns": columns | json_values, "data": rows | json_values},
        optional={"index": json_values, "dtypes": json_values},
    )
    return st.one_of(
        st.dictionaries(keys, json_values, min_size=1, max_size=2),
        st.builds(lambda value: {"dataframe_split": value}, split),
        st.builds(lambda key, value: {key: value}, keys, st.lists(record, max_size=3)),
        st.builds(lambda key, value: {key: value, "params": {"x": 1}}, keys, st.lists(record)),
        st.builds(
            lambda key, value: {key: value},
            keys,
            st.dictionaries(st.sampled_from(names), st.lists(scalars, max_size=3), max_size=3),
        ),
    )


def feedback_near_misses() -> st.SearchStrategy[Any]:
    item = st.fixed_dictionaries(
        {"id": json_values, "actual": json_values},
        optional={"extra": json_values},
    )
    return st.lists(item | json_values, max_size=4) | json_values


@st.composite
def csv_bodies(draw: st.DrawFn, names: list[str]) -> bytes:
    cell = st.text(max_size=12) | st.sampled_from(['"', '""', "\x00", "\r\n", ",", "1" * 200_000])
    header = draw(st.lists(st.sampled_from(names) | st.text(max_size=6), max_size=len(names) + 1))
    rows = draw(st.lists(st.lists(cell, max_size=len(names) + 1), max_size=3))
    lines = [",".join(header), *(",".join(row) for row in rows)]
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    return "\n".join(lines).encode(encoding, "replace")


def bodies(names: list[str], valid: dict[str, Any], route: str) -> st.SearchStrategy[bytes]:
    """Any JSON or bytes, or a near miss of what `route` takes."""
    record = record_strategies(names, valid)
    encoded = st.builds(
        lambda value, codec: json.dumps(value).encode(codec, "replace"),
        json_values,
        st.sampled_from(["utf-16", "utf-32", "latin-1", "utf-8-sig"]),
    )
    anywhere = st.one_of(
        json_values.map(dumps), nested(("", *MLFLOW_KEYS)), encoded, st.binary(max_size=200)
    )
    aimed = {
        "/predict": st.one_of(
            extreme_number(names, valid),
            record.map(dumps),
            st.lists(record, max_size=3).map(dumps),
        ),
        "/invocations": st.one_of(
            mlflow_near_misses(names, record).map(dumps),
            near_split(names, valid).map(dumps),
            extreme_number(names, valid).map(lambda body: b'{"inputs": [' + body + b"]}"),
            csv_bodies(names),
        ),
        "/feedback": feedback_near_misses().map(dumps) | nested(("actual", "id")),
    }
    return aimed[route] | anywhere


@st.composite
def requests(
    draw: st.DrawFn, names: list[str], valid: dict[str, Any], route: str
) -> tuple[str, bytes]:
    """A content type and a body: mostly the type the body is written in, or any."""
    body = draw(bodies(names, valid, route))
    family = CSV_TYPES if body.startswith(tuple(name.encode() for name in names)) else JSON_TYPES
    return draw(st.sampled_from(family) | st.sampled_from(CONTENT_TYPES)), body


@pytest.fixture(
    scope="module", params=["mixed", "numeric"], ids=["categorical-model", "numeric-model"]
)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """A served model, a valid record for it, and a prediction store for /feedback."""
    frame = make_frame(rows=200)
    if request.param == "numeric":
        frame = frame.drop(columns=["colour"])
    path = tmp_path_factory.mktemp("model")
    write_model_dir(path, frame, Path(__file__).resolve().parents[1], "7")
    store = tmp_path_factory.mktemp("store") / "predictions.db"
    settings = ServeSettings(
        model_dir=path,
        max_batch_rows=50,
        max_body_bytes=2_000_000,
        prediction_store_url=f"sqlite:///{store}",
    )
    valid = frame.drop(columns=["label"]).dropna().iloc[0].to_dict()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        assert client.post("/predict", json=valid).status_code == 200
        yield client, valid


@contextmanager
def server_recursion_limit() -> Iterator[None]:
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(SERVER_RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


def check_answer(response: Any, context: Any) -> None:
    assert response.status_code < 500, (context, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["detail"], (context, response.text[:300])


@pytest.mark.parametrize("route", ROUTES)
def test_no_body_gets_a_server_error(served: tuple[TestClient, dict[str, Any]], route: str) -> None:
    client, valid = served
    names = list(valid)

    @FUZZ
    @given(request=requests(names, valid, route))
    def post(request: tuple[str, bytes]) -> None:
        kind, body = request
        with server_recursion_limit():
            response = client.post(route, content=body, headers={"content-type": kind})
        check_answer(response, (route, kind, body[:200]))

    post()
    assert client.get("/health/ready").status_code == 200


def test_the_openapi_operations_give_no_server_error(
    served: tuple[TestClient, dict[str, Any]],
) -> None:
    """schemathesis' valid and invalid requests for every operation, through the client."""
    client, _ = served
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} >= set(ROUTES)
    cases = st.one_of(
        operation.as_strategy(generation_mode=mode)
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )

    @settings(FUZZ, max_examples=60)
    @given(case=cases)
    def call(case: Any) -> None:
        with server_recursion_limit():
            response = send(client, case)
        case.validate_response(response, checks=[not_a_server_error])

    call()
    assert client.get("/health/ready").status_code == 200


def send(client: TestClient, case: Any) -> CheckedResponse:
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), bytes | str):  # raw bodies: httpx calls them content
        kwargs["content"] = kwargs.pop("data")
    return CheckedResponse.from_any(client.request(**kwargs))


def test_stateful_runs_of_prediction_then_label_give_no_server_error(
    served: tuple[TestClient, dict[str, Any]],
) -> None:
    """schemathesis follows the links of /openapi.json: each prediction, then its label."""
    client, _ = served
    document = client.get("/openapi.json").json()
    links = document["paths"]["/predict"]["post"]["responses"]["200"]["links"]
    assert "LabelThePrediction" in links
    machine = schemathesis.openapi.from_dict(document).as_state_machine()
    labelled = feedback_rows(client)

    class PredictThenLabel(machine):  # type: ignore[misc, valid-type]
        def call(self, case: Any, **kwargs: Any) -> CheckedResponse:
            with server_recursion_limit():
                return send(client, case)

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    run_state_machine_as_test(
        PredictThenLabel,
        settings=settings(
            max_examples=15,
            stateful_step_count=4,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert client.get("/health/ready").status_code == 200
    assert feedback_rows(client) > labelled, "no prediction was labelled through the link"


def feedback_rows(client: TestClient) -> float:
    """Labels recorded so far (ml_feedback_rows_total, every model version)."""
    lines = client.get("/metrics").text.splitlines()
    counted = [line for line in lines if line.startswith("ml_feedback_rows_total")]
    return sum(float(line.split()[-1]) for line in counted)
