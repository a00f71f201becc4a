"""Podman for the template tests, with the stand-in base images no registry here serves.

Everything lives under build/podman: storage, run root and a containers.conf
passed through CONTAINERS_CONF, so the machine's /etc/containers and a developer's own
podman setup are untouched. Rootful podman with runc and cgroupfs: what works on these
machines (crun cannot set RLIMIT_NOFILE here, hence `default_ulimits = []`).

The stand-ins carry the names the Dockerfile uses:
- `python:<version>-slim`: a Debian root filesystem from mmdebstrap with Debian's own
  python3 (bookworm has 3.11, trixie 3.13; no Debian release ships 3.10 or 3.12, so
  those images are not built here), a `python` link as the official images have, and
  this machine's CA bundle, without which uv inside a build cannot reach the index.
- `ghcr.io/astral-sh/uv:<version>`: `FROM scratch` with uv and uvx from that version's wheel.

Built once per machine and shared by the xdist workers through a file lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from baked import TEMPLATE_DIR, TOOLS_BIN

ROOT = TEMPLATE_DIR / "build" / "podman"
CONF = """\
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""
DEBIAN_SUITES = {"3.11": "bookworm", "3.13": "trixie"}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Debian's packages that a base image has and mmdebstrap's apt variant does not.
BASE_PACKAGES = "python3,python3-venv,ca-certificates,passwd"


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def available() -> str | None:
    """Why podman cannot run these tests here, or None when it can."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (make test installs them with apt-get)"
    if os.geteuid() != 0:
        return "podman runs rootful in these tests (runc, cgroupfs): run make test as root"
    return None


def _global_options(driver: str) -> list[str]:
    return [
        "--root", str(ROOT / f"storage-{driver}"),
        "--runroot", str(ROOT / f"run-{driver}"),
        "--storage-driver", driver,
        "--runtime", "runc",
        "--cgroup-manager", "cgroupfs",
    ]  # fmt: skip


def storage_driver() -> str:
    """overlay where the kernel offers it to podman (fast, layers share files), else vfs
    (every layer a full copy: slow and large, but it works everywhere)."""
    chosen = ROOT / "storage-driver"
    if chosen.is_file():
        return chosen.read_text(encoding="utf-8").strip()
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "containers.conf")}
    probe = subprocess.run(
        ["podman", *_global_options("overlay"), "info", "--format", "{{.Store.GraphDriverName}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    driver = "overlay" if probe.returncode == 0 and probe.stdout.strip() == "overlay" else "vfs"
    chosen.write_text(driver + "\n", encoding="utf-8")
    return driver


def docker_command() -> Path:
    """A `docker` for the rendered Makefile's DOCKER=: podman on the tests' storage.

    `build` gets --format docker (OCI images drop HEALTHCHECK), the host network (the
    only one here) and --pull=never (no registry: the stand-ins are local).
    """
    reason = available()
    if reason:
        _fail(f"podman cannot run: {reason}")
    wrapper = ROOT / "docker"
    if wrapper.is_file():
        return wrapper
    with machine_lock():
        conf = ROOT / "containers.conf"
        conf.write_text(CONF, encoding="utf-8")
        options = " ".join(_global_options(storage_driver()))
        script = (
            "#!/bin/sh\n"
            'if [ "$1" = build ]; then\n'
            '  shift; set -- build --pull=never --format docker --network host --layers "$@"\n'
            "fi\n"
            f'CONTAINERS_CONF={conf} exec podman {options} "$@"\n'
        )
        partial = ROOT / "docker.partial"
        partial.write_text(script, encoding="utf-8")
        partial.chmod(0o755)
        partial.replace(wrapper)
    return wrapper


def podman(
    *args: str, timeout: float = 1200, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run podman against the tests' own storage; fail the test with its output on error."""
    result = subprocess.run(
        [str(docker_command()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    if check and result.returncode != 0:
        _fail(
            f"podman {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


@contextmanager
def machine_lock() -> Iterator[None]:
    """One xdist worker at a time builds what the others reuse."""
    ROOT.mkdir(parents=True, exist_ok=True)
    with (ROOT / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def has_image(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def _python_stand_in(version: str) -> None:
    suite = DEBIAN_SUITES.get(version)
    if suite is None:
        _fail(
            f"no python:{version}-slim stand-in: Debian ships Python "
            f"{' and '.join(DEBIAN_SUITES)} only ({', '.join(DEBIAN_SUITES.values())})"
        )
    tarball = ROOT / f"{suite}.tar"
    hooks = [
        'ln -sf /usr/bin/python3 "$1/usr/local/bin/python"',
        f'cp {CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt"',
        'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
    ]
    made = subprocess.run(
        [
            "mmdebstrap",
            "--variant=apt",
            f"--include={BASE_PACKAGES}",
            "--format=tar",
            *(f"--customize-hook={hook}" for hook in hooks),
            suite,
            str(tarball),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if made.returncode != 0:
        _fail(f"mmdebstrap {suite} failed:\n{made.stderr[-3000:]}")
    podman(
        "import",
        "--change", f"ENV SSL_CERT_FILE={CA_BUNDLE}",
        "--change", "ENV UV_SYSTEM_CERTS=1",
        "--change", 'CMD ["python3"]',
        str(tarball),
        f"docker.io/library/python:{version}-slim",
    )  # fmt: skip
    tarball.unlink()


def _uv_stand_in(version: str) -> None:
    """The official image's layout (/uv, /uvx) from the uv wheel of that version."""
    work = ROOT / f"uv-{version}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run(
        [str(TOOLS_BIN / "uv"), "tool", "run", "--from", "pip", "pip", "download",
         "--no-deps", "--only-binary=:all:", "--dest", str(work), f"uv=={version}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )  # fmt: skip
    (wheel,) = work.glob("uv-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("uv", "uvx"):
            member = f"uv-{version}.data/scripts/{name}"
            (work / name).write_bytes(archive.read(member))
            (work / name).chmod(0o755)
    (work / "Containerfile").write_text("FROM scratch\nCOPY uv uvx /\n", encoding="utf-8")
    podman("build", "--tag", f"ghcr.io/astral-sh/uv:{version}", str(work))
    shutil.rmtree(work)


def ensure_bases(dockerfile: Path, python_version: str | None = None) -> None:
    """The base images a Dockerfile names: its python:<version>-slim (PYTHON_VERSION's
    default, or `python_version`) and ghcr.io/astral-sh/uv:<version>."""
    text = dockerfile.read_text(encoding="utf-8")
    default = re.search(r"^ARG PYTHON_VERSION=(\S+)", text, flags=re.M)
    if python_version is None and default:
        python_version = default[1]
    text = text.replace("${PYTHON_VERSION}", python_version or "")
    pythons = set(re.findall(r"^FROM python:(\S+)-slim\b", text, flags=re.M))
    uvs = set(re.findall(r"^FROM ghcr\.io/astral-sh/uv:(\S+)", text, flags=re.M))
    assert pythons, f"{dockerfile} builds on no python:<version>-slim"
    docker_command()  # takes the lock itself
    with machine_lock():
        for version in sorted(pythons):
            if not has_image(f"docker.io/library/python:{version}-slim"):
                _python_stand_in(version)
        for version in sorted(uvs):
            if not has_image(f"ghcr.io/astral-sh/uv:{version}"):
                _uv_stand_in(version)


@dataclass
class Image:
    name: str

    def inspect(self) -> dict[str, Any]:
        document: list[dict[str, Any]] = json.loads(podman("image", "inspect", self.name).stdout)
        return document[0]

    @property
    def size_mb(self) -> float:
        return float(self.inspect()["Size"]) / 1e6

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.inspect()["Config"]
        return config

    @property
    def healthcheck(self) -> list[str]:
        test: list[str] = self.inspect()["Healthcheck"]["Test"]
        return test

    def run(self, *command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`command` in a throwaway container of the image."""
        return podman("run", "--rm", "--network", "host", self.name, *command, timeout=timeout)


def build(
    context: Path, target: str | None, tag: str, build_args: Mapping[str, str] | None = None
) -> Image:
    """`docker build [--target <target>]` of a Dockerfile (the wrapper adds the host's needs)."""
    arguments = [f"--build-arg={key}={value}" for key, value in (build_args or {}).items()]
    if target:
        arguments += ["--target", target]
    podman("build", "--tag", tag, *arguments, str(context), timeout=2400)
    return Image(tag)


@contextmanager
def container(image: Image, *options: str) -> Iterator[str]:
    """A detached container of `image`, removed afterwards; yields its name."""
    name = f"t{os.getpid()}-{abs(hash((image.name, options))) % 10**8}"
    podman("run", "--detach", "--name", name, "--network", "host", *options, image.name)
    try:
        yield name
    finally:
        logs = podman("logs", name, check=False)
        podman("rm", "--force", "--time", "2", name, check=False)
        if logs.returncode == 0:
            (ROOT / f"{name}.log").write_text(logs.stdout + logs.stderr, encoding="utf-8")


@contextmanager
def answering(image: Image, port: int, path: str, *options: str) -> Iterator[tuple[str, str]]:
    """A container of `image` until GET 127.0.0.1:`port``path` answers 200: (name, URL)."""
    with container(image, *options) as name:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}{path}", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:  # refused, reset, or a read timed out while starting
                pass
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state != "running":
                logs = podman("logs", name, check=False)
                _fail(f"{image.name} stopped ({state}):\n{(logs.stdout + logs.stderr)[-3000:]}")
            if time.monotonic() > deadline:
                _fail(f"{image.name} never answered {path} on port {port}")
            time.sleep(0.5)
        yield name, base
