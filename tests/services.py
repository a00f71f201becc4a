"""Throwaway services on 127.0.0.1 for the production tracking stack tests.

- PostgreSQL from Debian's packages: its server binaries live in the versioned library
  directory, off PATH, and initdb refuses root, so the cluster belongs to `postgres`.
- An S3 server: moto in server mode (the template's dev tools).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from baked import TOOLS_BIN, free_port

S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def wait_for_port(port: int, process: subprocess.Popen[Any] | None, what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                pytest.fail(f"{what} exited with {process.returncode}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{what} never listened on {port}", pytrace=False)
            time.sleep(0.2)


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL's server is not installed (make test installs it)", pytrace=False)
    return found[-1].parent


@dataclass
class Postgres:
    """A cluster with a password-protected role and its database."""

    user: str
    password: str
    database: str
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pg-")))

    def _as_postgres(self, *command: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{command[0]}: {result.stdout}{result.stderr}"
        return result

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def create(self) -> None:
        shutil.chown(self.directory, "postgres", "postgres")
        bin_dir = postgres_bin()
        # Passwords over TCP (what the tests exercise), trust on the private socket.
        self._as_postgres(
            str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        self.start()
        self._as_postgres(
            "psql", "-h", str(self.directory), "-p", str(self.port), "-U", "postgres",
            "-v", "ON_ERROR_STOP=1",
            "-c", f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'",
            "-c", f"CREATE DATABASE {self.database} OWNER {self.user}",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(postgres_bin() / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.directory / "log"), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(str(postgres_bin() / "pg_ctl"), "-D", str(self.data), "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(postgres_bin() / "pg_ctl"),
             "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)

    def uri(self, scheme: str = "postgresql", password: bool = False) -> str:
        secret = f":{self.password}" if password else ""
        return f"{scheme}://{self.user}{secret}@127.0.0.1:{self.port}/{self.database}"


@dataclass
class S3Server:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(TOOLS_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process, "moto_server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def client(self) -> Any:
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def client_env(s3: S3Server) -> dict[str, str]:
    """What a client of the stack sets: S3 keys and endpoint, few HTTP retries."""
    return {
        **S3_KEYS,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        # MLflow's default backoff retries for minutes before an error surfaces.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    }


def environ_without(*names: str) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in names}
