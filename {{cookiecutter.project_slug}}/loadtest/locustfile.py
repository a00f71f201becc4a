"""Load test of the prediction API, with pass/fail thresholds: `make loadtest`.

Each simulated user POSTs records to /predict (drawn from the exported model's schema and
training profile, see sample_rows.py) and now and then asks /health/ready. When the run
ends, it fails (exit code 1) if any threshold below is crossed, and says which one with
the measured value. Settings come from the environment (the make line sets them too):

  LOADTEST_P99_MS          99th percentile of the response times, ms    default 500
  LOADTEST_MAX_ERROR_RATE  failed requests / all requests, 0 to 1       default 0.01
  LOADTEST_ROWS            records per /predict request                 default 1
  LOADTEST_MODEL_DIR       the exported model the records come from     default build/model

Locust has no threshold option: the quitting handler sets the exit code, so the error
rate threshold, not locust's "any failure is exit 1", decides. This file imports locust
and the standard library only: it runs without the project installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner
from sample_rows import MissingModelError, RowSampler


def setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a number") from None
    if value < 0:
        raise SystemExit(f"{name}={raw!r}: expected a number >= 0")
    return value


P99_MS = setting("LOADTEST_P99_MS", 500)
MAX_ERROR_RATE = setting("LOADTEST_MAX_ERROR_RATE", 0.01)
ROWS = max(1, int(setting("LOADTEST_ROWS", 1)))
MODEL_DIR = Path(os.environ.get("LOADTEST_MODEL_DIR") or "build/model")

try:
    SAMPLER = RowSampler.from_model_dir(MODEL_DIR)
except MissingModelError as error:
    raise SystemExit(f"loadtest: {error}") from None


class PredictionClient(HttpUser):
    """A client of the API: mostly predictions, a readiness probe now and then."""

    wait_time = between(0.05, 0.25)

    @task(10)
    def predict(self) -> None:
        body: Any = SAMPLER.record() if ROWS == 1 else SAMPLER.records(ROWS)
        with self.client.post("/predict", json=body, catch_response=True) as response:
            if response.status_code == 0:  # no answer: refused, reset, timed out
                response.failure(f"no response: {getattr(response, 'error', None)}")
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:300]}")
                return
            try:
                predictions = response.json()["predictions"]
            except (ValueError, KeyError, TypeError):
                response.failure(f"not a prediction: {response.text[:300]}")
                return
            if len(predictions) != ROWS:
                response.failure(f"{len(predictions)} predictions for {ROWS} records")

    @task(1)
    def ready(self) -> None:
        self.client.get("/health/ready")


@events.test_start.add_listener
def announce(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    print(
        f"loadtest: {environment.host}, {ROWS} record(s) per /predict from {MODEL_DIR} "
        f"({SAMPLER.source}); pass if p99 <= {P99_MS:g} ms "
        f"and error rate <= {MAX_ERROR_RATE:.2%}",
        flush=True,
    )


def failed_thresholds(environment: Environment) -> list[str]:
    total = environment.stats.total
    if total.num_requests == 0:
        return ["no request was made (is DURATION long enough?)"]
    problems = []
    if total.fail_ratio > MAX_ERROR_RATE:
        problems.append(
            f"error rate {total.fail_ratio:.2%} ({total.num_failures} of {total.num_requests}) "
            f"> LOADTEST_MAX_ERROR_RATE={MAX_ERROR_RATE:g}"
        )
    p99 = total.get_response_time_percentile(0.99)
    if p99 > P99_MS:
        problems.append(f"p99 latency {p99:g} ms > LOADTEST_P99_MS={P99_MS:g}")
    return problems


@events.quitting.add_listener
def enforce_thresholds(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):  # the master judges the whole run
        return
    total = environment.stats.total
    summary = (
        f"{total.num_requests} requests, {total.num_failures} failures, "
        f"p50 {total.get_response_time_percentile(0.5):g} ms, "
        f"p99 {total.get_response_time_percentile(0.99):g} ms, "
        f"{total.total_rps:.1f} req/s"
    )
    problems = failed_thresholds(environment)
    for problem in problems:
        print(f"loadtest FAILED: {problem}", file=sys.stderr, flush=True)
    if problems:
        top = sorted(environment.stats.errors.values(), key=lambda e: -e.occurrences)[:1]
        for error in top:
            print(
                f"loadtest: most frequent failure ({error.occurrences}x): "
                f"{error.method} {error.name}: {error.error}",
                file=sys.stderr,
                flush=True,
            )
    print(f"loadtest {'FAILED' if problems else 'passed'}: {summary}", flush=True)
    environment.process_exit_code = 1 if problems else 0
