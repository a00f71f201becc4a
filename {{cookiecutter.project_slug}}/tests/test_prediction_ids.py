"""Every answered row has an id: the client's own, or a new one."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.ids import (
    ID_FIELD,
    MAX_ID_LENGTH,
    RESERVED_NAMES,
)
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)

RECORD = {"size": 51.5, "colour": "red", "noise": 0.25}
NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
) -> Path:
    path = tmp_path_factory.mktemp("model")
    write_model_dir(path, make_frame(rows=200), Path(__file__).resolve().parents[1], "3")
    return path


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServeSettings(model_dir=model_dir))) as test_client:
        deadline = time.monotonic() + 20
        while test_client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield test_client


def test_the_id_field_is_reserved_in_one_place() -> None:
    assert ID_FIELD == "prediction_id"
    assert ID_FIELD in RESERVED_NAMES


def test_every_answered_row_gets_a_new_id(client: TestClient) -> None:
    answers = [
        client.post("/predict", json=RECORD).json(),
        client.post("/predict", json=[RECORD, RECORD, RECORD]).json(),
        client.post("/invocations", json={"dataframe_records": [RECORD, RECORD]}).json(),
        client.post(
            "/invocations",
            content="size,colour,noise\n51.5,red,0.25\n,blue,1.0\n",
            headers={"Content-Type": "text/csv"},
        ).json(),
    ]
    ids = [answer["prediction_ids"] for answer in answers]
    assert [len(row_ids) for row_ids in ids] == [1, 3, 2, 2]
    every = [one for row_ids in ids for one in row_ids]
    assert all(NEW_ID.fullmatch(one) for one in every), every
    assert len(set(every)) == len(every)


def test_a_client_gives_its_own_ids(client: TestClient) -> None:
    mixed = [{**RECORD, ID_FIELD: "order-17"}, RECORD]
    ids = client.post("/predict", json=mixed).json()["prediction_ids"]
    assert ids[0] == "order-17"
    assert NEW_ID.fullmatch(ids[1])

    split = {"columns": ["size", ID_FIELD, "colour", "noise"], "data": [[51.5, "a", "red", 0.2]]}
    answer = client.post("/invocations", json={"dataframe_split": split}).json()
    assert answer["prediction_ids"] == ["a"]
    without = client.post("/invocations", json={"dataframe_records": [RECORD]}).json()
    assert answer["predictions"] == without["predictions"]

    csv = f"size,colour,noise,{ID_FIELD}\n51.5,red,0.25,x1\n51.5,red,0.25,\n"
    answer = client.post("/invocations", content=csv, headers={"Content-Type": "text/csv"}).json()
    assert answer["prediction_ids"][0] == "x1"
    assert NEW_ID.fullmatch(answer["prediction_ids"][1]), "an empty cell: a new id"

    header = {"X-Request-ID": "req-9"}
    assert client.post("/predict", json=RECORD, headers=header).json()["prediction_ids"] == [
        "req-9"
    ]
    batch = [RECORD, {**RECORD, ID_FIELD: "own"}, RECORD]
    ids = client.post("/predict", json=batch, headers=header).json()["prediction_ids"]
    assert ids == ["req-9-0", "own", "req-9-2"], "the record's own id wins over the request's"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({**RECORD, ID_FIELD: ""}, ["body", ID_FIELD]),
        ({**RECORD, ID_FIELD: 17}, ["body", ID_FIELD]),
        ([RECORD, {**RECORD, ID_FIELD: "x" * (MAX_ID_LENGTH + 1)}], ["body", 1, ID_FIELD]),
        ([RECORD, {**RECORD, ID_FIELD: None}], ["body", 1, ID_FIELD]),
    ],
)
def test_a_bad_id_gets_422_naming_it(client: TestClient, body: Any, loc: list[Any]) -> None:
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == loc


def test_a_bad_request_id_header_gets_422_naming_it(client: TestClient) -> None:
    long = {"X-Request-ID": "r" * (MAX_ID_LENGTH + 1)}
    answer = client.post("/predict", json=RECORD, headers=long)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["header", "X-Request-ID"]


def test_mlflow_s_own_client_reads_invocations(model_dir: Path, client: TestClient) -> None:
    """Real HTTP on 127.0.0.1: MLflow's scoring client takes the answer with its ids."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(ServeSettings(model_dir=model_dir)), host="127.0.0.1", port=port,
        log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        mlflow_client = ScoringServerClient("127.0.0.1", port)
        mlflow_client.wait_server_ready(timeout=30)
        frame = pd.DataFrame([RECORD, {**RECORD, "colour": "blue"}])
        answer = mlflow_client.invoke(frame)
        predictions = answer.get_predictions(predictions_format="ndarray").tolist()
        ours = client.post("/predict", json=frame.to_dict("records")).json()
        assert predictions == ours["predictions"]
        assert len(answer["prediction_ids"]) == 2
    finally:
        server.should_exit = True
        thread.join(timeout=10)
