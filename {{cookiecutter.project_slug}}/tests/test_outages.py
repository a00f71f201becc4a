"""Service failures become one line naming the service; anything else stays a bug."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

import pytest
import requests
import sqlalchemy
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST
from mlflow.utils.request_utils import augmented_raise_for_status
from mlflow.utils.rest_utils import MlflowHostCreds, http_request
from sqlalchemy import exc
from urllib3.exceptions import MaxRetryError, ResponseError

from {{ cookiecutter.module_name }}.cli import main
from {{ cookiecutter.module_name }}.outages import (
    explain,
    without_password,
)


def test_a_database_failure_names_the_database_without_its_password() -> None:
    uri = "postgresql://mlflow:s3cret@db:5432/mlflow"
    engine = sqlalchemy.create_engine("sqlite:////nonexistent/dir/store.db")
    with pytest.raises(exc.OperationalError) as raised:
        engine.connect()
    outage = explain(raised.value, uri)
    assert outage is not None
    assert str(outage).startswith("the tracking database (postgresql://mlflow:***@db:5432")
    assert "unable to open database file" in str(outage)
    assert "s3cret" not in str(outage)


def test_an_unreachable_server_and_a_server_error_name_the_server() -> None:
    uri = "http://127.0.0.1:9"
    try:
        requests.get(uri, timeout=2)
    except requests.ConnectionError as error:
        try:
            raise MlflowException("API request failed") from error
        except MlflowException as wrapped:
            outage = explain(wrapped, uri)
    assert outage is not None
    assert f"the MLflow tracking server at {uri} is unreachable" in str(outage)

    url = "/api/2.0/mlflow-artifacts/artifacts/1/model/MLmodel"
    gave_up = MaxRetryError(None, url, ResponseError("too many 500 error responses"))  # type: ignore[arg-type]
    assert "answered with server errors: its artifact store failed" in str(explain(gave_up, uri))
    failed = MlflowException("INTERNAL_ERROR: database is down", error_code=INTERNAL_ERROR)
    assert f"server at {uri} failed: INTERNAL_ERROR" in str(explain(failed, uri))
    missing = MlflowException("An error occurred (NoSuchBucket) when calling PutObject")
    assert "artifact store (S3)" in str(explain(missing, uri))


ANSWER_500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def failing_server(answer_puts: bytes | None = None) -> socket.socket:
    """A port that resets each connection, as a failing upload is reset; or answers PUTs."""
    listener = socket.create_server(("127.0.0.1", 0))

    def fail_each() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            head = connection.recv(1024)
            if answer_puts is not None and head.startswith(b"PUT "):
                connection.sendall(answer_puts)
            else:
                linger = struct.pack("ii", 1, 0)  # close with a reset, not a goodbye
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            connection.close()

    threading.Thread(target=fail_each, daemon=True).start()
    return listener


def plain_request(uri: str, endpoint: str, method: str, **options: object) -> requests.Response:
    return requests.request(method, f"{uri}{endpoint}", timeout=5, **options)  # type: ignore[arg-type]


def mlflow_request(uri: str, endpoint: str, method: str, **options: object) -> requests.Response:
    """MLflow's own client: a session that retries, so urllib3 wraps what failed."""
    creds = MlflowHostCreds(uri)  # type: ignore[no-untyped-call]
    retries = {"max_retries": 1, "backoff_factor": 0}
    answer = http_request(creds, endpoint, method, timeout=5, **retries, **options)  # type: ignore[no-untyped-call]
    return answer  # type: ignore[no-any-return]


def upload_then_mark_failed(uri: str, request: Callable[..., requests.Response]) -> Exception:
    """What MLflow does: upload an artifact; on failure, mark the model FAILED; raise."""
    try:
        try:
            answer = request(uri, "/api/2.0/mlflow-artifacts/artifacts/1/MLmodel", "PUT", data=b"x")
            augmented_raise_for_status(answer)  # type: ignore[no-untyped-call]
        except (requests.RequestException, MlflowException):
            request(uri, "/api/2.0/mlflow/logged-models/m-1", "PATCH", json={})
    except (requests.RequestException, MlflowException) as error:
        return error
    raise AssertionError("the server did not fail")


@pytest.mark.parametrize(
    ("request_with", "answer_puts", "how"),
    [
        (plain_request, None, "dropped the request"),
        (plain_request, ANSWER_500, "answered 500"),
        (mlflow_request, None, "dropped the request"),
        (mlflow_request, ANSWER_500, "answered with server errors"),
    ],
    ids=["upload-reset", "upload-500", "mlflow-upload-reset", "mlflow-upload-500"],
)
def test_a_failed_upload_is_the_cause_not_the_cleanup_after_it(
    request_with: Callable[..., requests.Response], answer_puts: bytes | None, how: str
) -> None:
    listener = failing_server(answer_puts)
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        error = upload_then_mark_failed(uri, request_with)
    finally:
        listener.close()
    request = getattr(error, "request", None)
    assert "logged-models" in str(getattr(request, "url", error)), "the error is the cleanup's"
    outage = explain(error, uri)
    assert outage is not None
    assert f"the MLflow tracking server at {uri} {how}: its artifact store failed" in str(outage)


def test_other_errors_are_not_outages() -> None:
    assert explain(ValueError("a bug"), "http://host") is None
    refused = MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST)
    assert explain(refused, "http://host") is None
    assert without_password("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_the_cli_prints_one_line_and_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    assert main(["models"]) == 3  # EXIT_UNAVAILABLE: a scheduled job may retry it

    error = capsys.readouterr().err
    assert error.startswith("error: the MLflow tracking server at http://127.0.0.1:9 is unreach")
    assert "Traceback" not in error
