"""Failures of the services MLflow talks to, as one line that names the service.

A wrong database password, a stopped database, an unreachable tracking server or a
missing artifact bucket is not a bug of the project: the CLI prints what `explain`
returns instead of a traceback. Exceptions are recognised by class name, so this module
imports none of the libraries that raise them (the server must start without them).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .errors import ProjectError


class ServiceError(ProjectError):
    """A tracking server, its database or its artifact store refused or failed."""


DATABASE = ("sqlalchemy.exc.OperationalError", "sqlalchemy.exc.InterfaceError")
UNREACHABLE = (
    "requests.exceptions.ConnectionError",
    "urllib3.exceptions.MaxRetryError",
    "requests.exceptions.Timeout",
)
S3 = (
    "botocore.exceptions.ClientError",
    "botocore.exceptions.EndpointConnectionError",
    "botocore.exceptions.NoCredentialsError",
)
MLFLOW = ("mlflow.exceptions.MlflowException",)
# MLflow's error codes for a server that failed, rather than a request it refused.
SERVER_SIDE = ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE")
BUCKET = re.compile(r"NoSuchBucket|bucket does not exist", re.IGNORECASE)
# urllib3 gave up retrying because the server kept failing, not because it is down.
SERVER_ERRORS = re.compile(r"too many \d{3} error responses")
# The server accepted the connection and closed it mid-request: it is up, but failed
# (uvicorn resets an upload it answered with a 500 before reading the whole body).
DROPPED = re.compile(r"Connection aborted|reset by peer|RemoteDisconnected|BrokenPipe")


def without_password(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _names(error: BaseException) -> set[str]:
    return {f"{kind.__module__}.{kind.__qualname__}" for kind in type(error).__mro__}


def _chain(error: BaseException) -> list[BaseException]:
    """Every exception behind `error`, nearest first.

    Besides causes and contexts this follows the exceptions urllib3 keeps without raising
    them: a MaxRetryError's `reason` and the error inside a ProtocolError's arguments.
    With MLflow's retrying session that is the only link from the cleanup request that
    failed last to the upload that failed first.
    """
    seen: list[BaseException] = []
    queue: list[BaseException] = [error]
    while queue:
        current = queue.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        links = (current.__cause__, current.__context__, getattr(current, "reason", None))
        queue += [link for link in (*links, *current.args) if isinstance(link, BaseException)]
    return seen


def _url(error: BaseException) -> str:
    """The URL a failed request went to: requests and urllib3 keep it on the error."""
    request = getattr(error, "request", None)
    return str(getattr(request, "url", None) or getattr(error, "url", None) or error)


def _status(error: BaseException) -> int:
    """The HTTP status of the answer that failed the request (requests' HTTPError), or 0."""
    status = getattr(getattr(error, "response", None), "status_code", 0)
    return status if isinstance(status, int) else 0


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def explain(error: BaseException, tracking_uri: str) -> ServiceError | None:
    """The service failure behind `error`, or None when it is not one (then: a bug).

    The chain is read from its root: when an artifact upload fails, MLflow marks the
    model FAILED on the way out, and that request failing too is a consequence. Whether
    the artifact store was involved is read from the whole chain, since how the upload
    failed (a reset, a 500) may be known only from the cleanup after it.
    """
    uri = without_password(tracking_uri)
    chain = _chain(error)
    artifacts = any("mlflow-artifacts" in _url(cause) for cause in chain)
    failed = "its artifact store" if artifacts else "it"
    for cause in reversed(chain):
        names = _names(cause)
        if names.intersection(DATABASE):
            detail = _first_line(getattr(cause, "orig", None) or cause)
            return ServiceError(f"the tracking database ({uri}) failed: {detail}")
        if names.intersection(S3) or BUCKET.search(str(cause)):
            return ServiceError(f"the artifact store (S3) failed: {_first_line(cause)}")
        if _status(cause) >= 500:
            how = f"answered {_status(cause)}"
        elif names.intersection(UNREACHABLE) and SERVER_ERRORS.search(str(cause)):
            how = "answered with server errors"
        elif names.intersection(UNREACHABLE) and DROPPED.search(str(cause)):
            how = "dropped the request"
        elif names.intersection(UNREACHABLE):
            return ServiceError(
                f"the MLflow tracking server at {uri} is unreachable: {_first_line(cause)}"
            )
        else:
            continue
        return ServiceError(
            f"the MLflow tracking server at {uri} {how}: {failed} "
            f"failed, and the server's log says why ({_first_line(cause)})"
        )
    server_side = getattr(error, "error_code", "") in SERVER_SIDE
    if server_side and _names(error).intersection(MLFLOW):
        return ServiceError(f"the MLflow tracking server at {uri} failed: {_first_line(error)}")
    return None
