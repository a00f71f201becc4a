"""A smoke test of a running server: ready, then one prediction built from its own schema.

Used after a deployment (`<slug> smoke --url https://…`) and by `make smoke`.
Standard library only, so it runs wherever the project is installed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any


def call(url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    if not url.startswith(("http://", "https://")):
        raise RuntimeError(f"{url}: only http:// and https:// URLs")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def sample_record(schema: dict[str, Any]) -> dict[str, Any]:
    """A valid record: the middle of each number's range, the first of each category."""
    record: dict[str, Any] = {}
    for feature in schema["features"]:
        if feature["kind"] == "numeric":
            record[feature["name"]] = (feature["minimum"] + feature["maximum"]) / 2
        else:
            record[feature["name"]] = feature["categories"][0]
    return record


def smoke(base_url: str, wait_seconds: float = 0) -> str:
    """What the server answered; raises RuntimeError when it is not ready or fails."""
    base = base_url.rstrip("/")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            status, answer = call(f"{base}/health/ready")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            status, answer = 0, str(getattr(error, "reason", error))
        if status == 200:
            break
        if time.monotonic() >= deadline:
            waited = f"after {wait_seconds:g} s" if wait_seconds else "(--wait N waits for it)"
            if status == 0:
                raise RuntimeError(
                    f"{base}: no server answered ({answer}) {waited} — is it running there?"
                )
            raise RuntimeError(f"{base}/health/ready: not ready, HTTP {status} {waited}: {answer}")
        time.sleep(0.5)
    status, model = call(f"{base}/model")
    if status != 200:
        raise RuntimeError(f"{base}/model: {status} {model}")
    status, answer = call(f"{base}/predict", sample_record(model["schema"]))
    if status != 200:
        raise RuntimeError(f"{base}/predict: {status} {answer}")
    return (
        f"{base}: {model['name']} v{model['version']} (@{model['alias']}) "
        f"predicted {answer['predictions'][0]!r}"
    )
