"""The production tracking stack, for real: PostgreSQL, an S3 server and MLflow's server.

The server is the rendered project's own tracking image (tracking/Dockerfile, built with
podman) running tracking/server.sh with docker-compose.yml's mlflow environment; only
the addresses differ (127.0.0.1 instead of compose's service names). Against it, a
project answering `http://…` and `dvc_remote=s3` runs its pipeline, pushes and pulls its
data, and serves the registry's champion; a project answering `postgresql://…` trains
on the same database. Then the services fail, one at a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from baked import TOOLS_BIN, BakedProject, free_port
from conftest import install_project
from containers import Image, answering, build, docker_command, ensure_bases, podman
from services import Postgres, S3Server, client_env, wait_for_port
from test_images_e2e import pod_options
from test_pipeline_e2e import dvc_outputs
from test_serve_e2e import RECORD_SCRIPT, call, serving

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("tracking-stack")]
DVC_BUCKET = "dvc-store"
COMPOSE_DEFAULT = re.compile(r"^\$\{[A-Z_]+:-(.*)\}$")
REGISTRY_SCRIPT = """
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
versions = client.search_model_versions(f"name = '{sys.argv[2]}'")
aliases = client.get_registered_model(sys.argv[2]).aliases if versions else {}
print(json.dumps({"versions": sorted(int(v.version) for v in versions),
                  "aliases": {alias: str(v) for alias, v in aliases.items()}}))
"""


def compose_mlflow_env(project: BakedProject) -> dict[str, str]:
    """docker-compose.yml's mlflow environment, with compose's ${VAR:-default} defaults."""
    (compose,) = project.load("docker-compose.yml")
    environment = compose["services"]["mlflow"]["environment"]
    resolved = {}
    for key, value in environment.items():
        default = COMPOSE_DEFAULT.match(str(value))
        resolved[key] = default[1] if default else str(value)
    return resolved


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def settings(cookies_session: Any) -> dict[str, str]:
    """The compose stack's settings, from a default render (no install needed)."""
    result = cookies_session.bake(extra_context={"project_slug": "compose-settings"})
    assert result.exception is None
    project = BakedProject(Path(result.project_path))
    environment = compose_mlflow_env(project)
    environment["context"] = str(project.path / "tracking")
    return environment


@pytest.fixture(scope="module")
def database(settings: dict[str, str]) -> Iterator[Postgres]:
    cluster = Postgres(
        settings["POSTGRES_USER"], settings["POSTGRES_PASSWORD"], settings["POSTGRES_DB"]
    )
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def tracking_image(settings: dict[str, str]) -> Image:
    context = Path(settings["context"])
    ensure_bases(context / "Dockerfile")
    return build(context, None, "localhost/tracking-e2e:test")


@contextmanager
def running_server(
    image: Image, settings: dict[str, str], database: Postgres, s3: S3Server, **changes: str
) -> Iterator[tuple[str, str]]:
    """The tracking image, as compose runs it, on the host's network: (container, URL)."""
    port = free_port()
    environment = {key: value for key, value in settings.items() if key != "context"}
    environment |= {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(database.port),
        "MLFLOW_PORT": str(port),
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
        **changes,
    }
    options = [f"--env={key}={value}" for key, value in environment.items()]
    with answering(image, port, "/health", *options) as running:
        yield running


@pytest.fixture(scope="module")
def server(
    tracking_image: Image, settings: dict[str, str], database: Postgres, s3: S3Server
) -> Iterator[str]:
    s3.client().create_bucket(Bucket=settings["MLFLOW_BUCKET"])
    with running_server(tracking_image, settings, database, s3) as (_, url):
        yield url


@pytest.fixture(scope="module")
def project(cookies_session: Any, server: str, s3: S3Server) -> BakedProject:
    s3.client().create_bucket(Bucket=DVC_BUCKET)
    answers = {
        "project_slug": "stack-service",
        "mlflow_tracking_uri": server,
        "dvc_remote": "s3",
        "dvc_remote_url": f"s3://{DVC_BUCKET}/store",
    }
    return install_project(cookies_session, answers)


@pytest.fixture(scope="module")
def trained(project: BakedProject, s3: S3Server) -> BakedProject:
    """The project after `make pipeline` against the stack (what the other tests start from)."""
    project.check("make", "pipeline", env=client_env(s3), timeout=1500)
    return project


def registry(project: BakedProject, uri: str, env: dict[str, str]) -> dict[str, Any]:
    output = project.check(
        ".venv/bin/python", "-c", REGISTRY_SCRIPT, uri, project.path.name, env=env
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def assert_service_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-3000:]  # EXIT_UNAVAILABLE: may work later
    assert "Traceback" not in output, output[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    for fragment in fragments:
        assert fragment in line, line


def test_the_pipeline_registers_on_the_stack(
    trained: BakedProject, server: str, s3: S3Server, settings: dict[str, str]
) -> None:
    project, env = trained, client_env(s3)
    state = registry(project, server, env)
    assert state == {"versions": [1], "aliases": {"champion": "1", "challenger": "1"}}
    keys = s3.keys(settings["MLFLOW_BUCKET"])
    assert any(key.endswith("/artifacts/MLmodel") for key in keys), keys[:20]
    assert not (project.path / "mlflow.db").exists()
    assert not (project.path / "mlartifacts").exists(), "artifacts go through the server"


def test_dvc_push_and_pull_restore_the_outputs(trained: BakedProject, s3: S3Server) -> None:
    project, env = trained, client_env(s3)
    roots = ["data/raw", "data/processed", "models/model", "models/profile.json"]
    before = dvc_outputs(project, roots)
    assert len(before) > 5
    project.check("make", "push", env=env)
    assert s3.keys(DVC_BUCKET), "dvc push wrote to the bucket"
    for file in before:
        file.unlink()
    shutil.rmtree(project.path / ".dvc/cache")
    project.check("make", "pull", env=env)
    assert dvc_outputs(project, roots) == before


def test_the_server_loads_the_champion_from_the_registry(
    trained: BakedProject, s3: S3Server
) -> None:
    project = trained
    records = json.loads(project.check(".venv/bin/python", "-c", RECORD_SCRIPT).stdout)[:3]
    with serving(project, base_env={**os.environ, **client_env(s3)}) as base:
        status, answer = call(f"{base}/predict", records)
        assert status == 200, answer
    assert len(answer["predictions"]) == 3


def test_predict_scores_a_file_on_s3_into_s3_with_the_champion(
    trained: BakedProject, s3: S3Server
) -> None:
    project, env = trained, client_env(s3)
    bucket = s3.client()
    rows = (project.path / "data/processed/test.csv").read_bytes()
    bucket.put_object(Bucket=DVC_BUCKET, Key="batch/in.csv", Body=rows)
    bucket.put_object(Bucket=DVC_BUCKET, Key="batch/out.csv.rejects.csv", Body=b"stale")
    cli = f".venv/bin/{project.path.name}"

    ran = project.check(cli, "predict", "--input", f"s3://{DVC_BUCKET}/batch/in.csv",
                        "--output", f"s3://{DVC_BUCKET}/batch/out.csv", env=env)  # fmt: skip

    lines = rows.decode().count("\n") - 1
    assert f"{lines} rows: {lines} scored, 0 rejected" in ran.stdout
    keys = s3.keys(DVC_BUCKET)
    assert "batch/out.csv" in keys
    assert "batch/out.csv.rejects.csv" not in keys, "a clean run removes the old rejects"
    scored = bucket.get_object(Bucket=DVC_BUCKET, Key="batch/out.csv")["Body"].read().decode()
    assert scored.splitlines()[0].startswith("prediction,")
    assert scored.count("\n") == lines + 1


def test_a_postgresql_answer_trains_on_the_same_database(
    cookies_session: Any, database: Postgres, s3: S3Server
) -> None:
    """python 3.13, the answer postgresql://user@host:port/db, the password from PGPASSWORD."""
    uri = database.uri()
    project = install_project(
        cookies_session,
        {"project_slug": "pg-service", "python_version": "3.13", "mlflow_tracking_uri": uri},
    )
    env = {**client_env(s3), "PGPASSWORD": database.password}
    project.check("make", "pipeline", "export-model", env=env, timeout=1500)
    assert registry(project, uri, env)["aliases"]["champion"] == "1"
    assert (project.path / "mlartifacts").is_dir(), "no server: artifacts stay local"

    # its serve image, on the python:3.13-slim stand-in (Debian trixie's Python)
    ensure_bases(project.path / "Dockerfile")
    project.check(
        "make", "docker-build", f"DOCKER={docker_command()}", "IMAGE=localhost/pg-service",
        "TAG=py313", timeout=2400,
    )  # fmt: skip
    image = Image("localhost/pg-service:py313")
    assert image.run("python", "--version").stdout.startswith("Python 3.13.")
    records = json.loads(project.check(".venv/bin/python", "-c", RECORD_SCRIPT).stdout)[:3]
    port = free_port()
    options = ["--read-only", "--tmpfs=/tmp", f"--env=PORT={port}", "--user=10001:10001"]
    with answering(image, port, "/health/ready", *options) as (_, base):
        status, answer = call(f"{base}/predict", records)
    assert status == 200, answer

    wrong = {**env, "PGPASSWORD": "not-the-password"}
    before = registry(project, uri, env)
    for stage in ("train", "register"):
        failed = project.run(f".venv/bin/{project.path.name}", stage, env=wrong)
        assert_service_error(failed, "tracking database", "password authentication failed")
    assert registry(project, uri, env) == before

    database.stop()
    try:
        failed = project.run(f".venv/bin/{project.path.name}", "register", env=env)
        assert_service_error(failed, "tracking database", str(database.port))
    finally:
        database.start()
    assert registry(project, uri, env) == before


def test_a_stopped_database_or_a_missing_bucket_changes_nothing(
    trained: BakedProject,
    server: str,
    s3: S3Server,
    database: Postgres,
    tracking_image: Image,
    settings: dict[str, str],
) -> None:
    project, env = trained, client_env(s3)
    cli = f".venv/bin/{project.path.name}"
    before = registry(project, server, env)
    assert before["versions"]

    database.stop()
    try:
        for stage in ("train", "register"):
            failed = project.run(cli, stage, env=env, timeout=300)
            assert_service_error(failed, f"MLflow tracking server at {server}")
    finally:
        database.start()
    assert registry(project, server, env) == before

    with running_server(tracking_image, settings, database, s3, MLFLOW_BUCKET="no-such-bucket") as (
        name,
        elsewhere,
    ):
        failed = project.run(cli, "train", env={**env, "MLFLOW_TRACKING_URI": elsewhere})
        assert_service_error(failed, f"server at {elsewhere}", "its artifact store failed")
        logs = podman("logs", name)
        assert "NoSuchBucket" in logs.stdout + logs.stderr, "the server's log says which"
    assert registry(project, server, env) == before

    stopped = project.run(cli, "models", env={**env, "MLFLOW_TRACKING_URI": elsewhere})
    assert_service_error(stopped, f"MLflow tracking server at {elsewhere} is unreachable")


DRIVER_SCRIPT = """
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1])
with engine.connect() as connection:
    user = connection.execute(text("select current_user")).scalar()
print(engine.dialect.driver, user)
"""


@pytest.mark.parametrize(
    ("scheme", "driver"),
    [
        ("postgresql", "psycopg"),
        ("postgresql+psycopg", "psycopg"),
        ("postgresql+psycopg2", "psycopg2"),
    ],
)
def test_the_driver_a_postgresql_answer_installs_is_the_one_sqlalchemy_loads(
    cookies_session: Any, database: Postgres, tmp_path: Path, scheme: str, driver: str
) -> None:
    uri = database.uri(scheme)
    result = cookies_session.bake(
        extra_context={"project_slug": f"driver-{driver}", "mlflow_tracking_uri": uri}
    )
    assert result.exception is None
    project = BakedProject(Path(result.project_path))
    train = project.load("pyproject.toml")["project"]["optional-dependencies"]["train"]
    declared = [item for item in train if item.startswith(("psycopg", "sqlalchemy"))]
    assert declared, train
    # what `make setup` resolves for them, and nothing else: MLflow's SQLAlchemy range
    uv = str(TOOLS_BIN / "uv")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin/python"),
         "sqlalchemy>=1.4,<3", *declared],
        check=True,
    )  # fmt: skip
    loaded = project.check(
        str(venv / "bin/python"), "-c", DRIVER_SCRIPT, uri, env={"PGPASSWORD": database.password}
    )
    assert loaded.stdout.split() == [driver, database.user]


# --- the CronJobs' containers against the stack ----------------------------------------------

LABELLED_ROWS = """
import sys

import pandas as pd
import yaml

from {module}.prediction_store import PredictionStore, Stored

target = yaml.safe_load(open("params.yaml"))["data"]["target"]
frame = pd.read_csv("data/raw/sample.csv").sample(n=120, random_state=7)
store = PredictionStore(sys.argv[1])
rows, labels = [], []
for n, record in enumerate(frame.to_dict("records")):
    actual = record.pop(target)
    rows.append(Stored(f"served-{{n}}", 1.0e9 + n, "m", "1", "champion", record, actual, None))
    labels.append((f"served-{{n}}", actual.item() if hasattr(actual, "item") else actual))
store.add_predictions(rows)
store.add_labels(labels)
"""


@pytest.fixture(scope="module")
def train_image(trained: BakedProject, s3: S3Server) -> Image:
    """The pipeline image of the stack project as CI leaves it: built after `make pipeline`,
    with that run's dvc.lock, its data and models pushed to the DVC bucket."""
    ensure_bases(trained.path / "Dockerfile")
    trained.check("make", "push", env=client_env(s3))
    trained.check(
        "make", "docker-build-train", f"DOCKER={docker_command()}",
        "IMAGE=localhost/stack-e2e", "TAG=t", timeout=2400,
    )  # fmt: skip
    return Image("localhost/stack-e2e-train:t")


def run_cronjob(
    project: BakedProject, image: Image, name: str, env: dict[str, str], *volumes: str
) -> subprocess.CompletedProcess[str]:
    """The production CronJob `name`'s container as kustomize renders it (command, args,
    env, ConfigMap, user, read-only root, capabilities, emptyDirs), on the host network."""
    options, spec = pod_options(project, "CronJob", name, env)
    assert spec["image"].split("@")[0].split(":")[0].endswith(f"/{project.path.name}-train")
    command = [*spec["command"], *spec["args"]]
    return podman(
        "run", "--rm", "--network=host", *options, *(f"--volume={v}" for v in volumes),
        f"--workdir={spec['workingDir']}", "--entrypoint", command[0], image.name, *command[1:],
        timeout=1800, check=False,
    )  # fmt: skip


def test_the_retrain_cronjob_pulls_trains_registers_and_pushes(
    trained: BakedProject, train_image: Image, server: str, s3: S3Server, tmp_path: Path
) -> None:
    project, env = trained, client_env(s3)
    listed = train_image.run("sh", "-c", "ls -A /app").stdout.split()
    assert sorted(listed) == sorted(
        [".dvc", ".dvcignore", ".venv", "data", "dvc.lock", "dvc.yaml", "params.yaml",
         "sbom.cdx.json", "src"]
    )  # fmt: skip
    # data/: what git holds (DVC's pointers among it), not the rows the pipeline makes
    shipped = set(train_image.run("sh", "-c", "cd /app && find data -type f").stdout.split())
    tracked = set(project.check("git", "ls-files", "data").stdout.split())
    assert shipped - tracked <= {"data/raw/production.csv"}, shipped - tracked
    # its remote's plugin and fsspec backend are in the image (dvc_remote=s3)
    train_image.run("python", "-c", "import dvc_s3, s3fs")

    # a remote the pod cannot reach is a setting to fix (2), before anything runs
    refused = run_cronjob(project, train_image, "retrain", {**env, "DVC_REMOTE_URL": "/absent"})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "DVC_REMOTE_URL=/absent: no such directory" in refused.stderr

    # labelled production rows in the servers' store: new data, so a new model
    store = tmp_path / "store"
    store.mkdir()
    script = LABELLED_ROWS.format(module=project.module)
    project.check(".venv/bin/python", "-c", script, f"sqlite:///{store}/predictions.db")
    subprocess.run(["chown", "-R", "10001:10001", str(store)], check=True)
    before_keys = set(s3.keys(DVC_BUCKET))
    before = registry(project, server, env)
    ran = run_cronjob(
        project, train_image, "retrain",
        {**env, "PREDICTION_STORE_URL": "sqlite:////store/predictions.db"},
        f"{store}:/store",
    )  # fmt: skip
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output[-4000:]
    assert "120 new labelled rows" in output
    for stage in ("prepare", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in output, stage
    after = registry(project, server, env)
    new = max(after["versions"])
    assert after["versions"] == [*before["versions"], new], "one version registered"
    assert after["aliases"]["challenger"] == str(new)
    pushed = set(s3.keys(DVC_BUCKET)) - before_keys
    assert len(pushed) >= 3, f"the new data and model went to the DVC remote: {pushed}"

    # the new dvc.lock reaches git through the run it trained: make adopt-retrain
    [run_id] = re.findall(r"make adopt-retrain RUN_ID=([0-9a-f]{32})", output)
    lock = (project.path / "dvc.lock").read_text("utf-8")
    project.check("make", "adopt-retrain", f"RUN_ID={run_id}", env=env)
    adopted = (project.path / "dvc.lock").read_text("utf-8")
    assert adopted != lock
    assert project.has_file("data/raw/production.csv.dvc")
    assert len((project.path / "data/raw/production.csv").read_text("utf-8").splitlines()) == 121
    status = project.check(".venv/bin/dvc", "status", env=env).stdout
    assert "up to date" in status, status
    # ready to commit: the pointer in git, the data it names out of it
    project.check("git", "add", "-A", "dvc.lock", "data")
    staged = project.check("git", "diff", "--cached", "--name-status").stdout.split("\n")
    assert "A\tdata/raw/production.csv.dvc" in staged, staged
    assert "D\tdata/raw/production.csv" in staged, staged
    assert {"A\tdvc.lock", "M\tdvc.lock"} & set(staged), staged
    project.check("git", "reset", "--quiet")  # nothing committed: the index as it was


def test_the_drift_cronjob_returns_its_three_outcomes_and_publishes_them(
    trained: BakedProject, train_image: Image, server: str, s3: S3Server, tmp_path: Path
) -> None:
    project, env = trained, client_env(s3)
    pushgateway, port = shutil.which("prometheus-pushgateway"), free_port()
    if pushgateway is None:
        pytest.fail("prometheus-pushgateway is not installed (make test installs it)")
    gateway = subprocess.Popen(
        [pushgateway, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, gateway, "prometheus-pushgateway")
        bucket = s3.client()
        sample = project.path / "data/raw/sample.csv"
        frame = sample.read_text("utf-8").splitlines()
        bucket.put_object(Bucket=DVC_BUCKET, Key="drift/same.csv", Body="\n".join(frame))
        shifted = project.check(
            ".venv/bin/python", "-c",
            "import pandas as pd, sys; f = pd.read_csv(sys.argv[1]); f['mean_radius'] *= 3;"
            "print(f.to_csv(index=False))", str(sample),
        ).stdout  # fmt: skip
        bucket.put_object(Bucket=DVC_BUCKET, Key="drift/shifted.csv", Body=shifted)
        gateway_env = {**env, "DRIFT_PUSHGATEWAY_URL": f"http://127.0.0.1:{port}"}
        namespace = f"{project.path.name}-production"
        cases = [
            ("no drift", {"DRIFT_CURRENT_URL": f"s3://{DVC_BUCKET}/drift/same.csv"}, 0, 0),
            ("drift", {"DRIFT_CURRENT_URL": f"s3://{DVC_BUCKET}/drift/shifted.csv"}, 1, 1),
            # the registry out of reach: could not check, retried; the last verdict stays
            (
                "could not check",
                {
                    "DRIFT_CURRENT_URL": f"s3://{DVC_BUCKET}/drift/same.csv",
                    "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
                },
                3,
                1,
            ),
            ("no file", {"DRIFT_CURRENT_URL": f"s3://{DVC_BUCKET}/drift/absent.csv"}, 2, 1),
        ]
        for case, variables, status, detected in cases:
            ran = run_cronjob(project, train_image, "drift", {**gateway_env, **variables})
            output = ran.stdout + ran.stderr
            assert ran.returncode == status, f"{case}: {output[-3000:]}"
            assert "Traceback" not in output, f"{case}: {output[-3000:]}"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                metrics = r.read().decode()
            group = f'job="drift-check",namespace="{namespace}"'
            pattern = r"^(ml_batch_drift_\w+)\{([^}]*)\} (\S+)$"
            found = {
                name: float(value)
                for name, labels, value in re.findall(pattern, metrics, re.MULTILINE)
                if group in labels and "feature=" not in labels
            }
            assert found["ml_batch_drift_check_status"] == status, (case, found)
            assert found["ml_batch_drift_detected"] == detected, (case, found)
        assert 'ml_batch_drift_psi{feature="mean_radius"' in metrics
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
