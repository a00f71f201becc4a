"""End to end: the feast combination installed, checked, run and served for real.

One install serves the module (one xdist group). It passes its own lint and tests, as
every other combination does in test_e2e.py. `make pipeline` runs the `features`
(`feast apply`) and `materialize` stages under DVC, and `<slug> serve` answers records
that name only their entity over real HTTP. The values it reads online are the ones the
offline store joins for the same entity and time (the training-serving skew check), from
the SQLite online store and, through feature_store.production.yaml, from a real
redis-server on 127.0.0.1 with the registry and the source on S3 (moto), outage included.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from baked import BakedProject, free_port
from conftest import install_project
from services import S3Server, client_env, wait_for_port
from test_e2e import check_combination
from test_serve_e2e import call, serving

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("feature-store-e2e")]
COMBINATION = {"feature_store": "feast"}
ENTITIES = 40

# The offline side: the test split's labels (entity, time) joined point-in-time.
OFFLINE_SCRIPT = """
import json, sys
from pathlib import Path
from {module}.config import Paths, load_params
from {module}.features import open_store, training_frame
from {module}.schema import FeatureSchema, read_csv
params = load_params(Path("params.yaml"))
schema = FeatureSchema.load(Paths.schema)
features, _ = training_frame(open_store(), Paths.test, params, schema)
ids = read_csv(Paths.test, categorical=[params.data.entity_key])[params.data.entity_key]
rows = features.astype(object).where(features.notna(), None).to_dict(orient="records")
print(json.dumps(dict(zip(ids.astype(str), rows))))
"""


@pytest.fixture(scope="module")
def project(cookies_session: Any) -> BakedProject:
    return install_project(cookies_session, COMBINATION)


def test_the_combination_installs_lints_and_passes_its_tests(project: BakedProject) -> None:
    check_combination(project, COMBINATION)


@pytest.fixture(scope="module")
def pipelined(project: BakedProject) -> BakedProject:
    project.check("make", "pipeline", "export-model", timeout=1500)
    return project


@pytest.fixture(scope="module")
def offline(pipelined: BakedProject) -> dict[str, dict[str, Any]]:
    script = OFFLINE_SCRIPT.format(module=pipelined.module)
    values: dict[str, dict[str, Any]] = json.loads(
        pipelined.check(".venv/bin/python", "-c", script).stdout
    )
    assert len(values) > ENTITIES
    return dict(list(values.items())[:ENTITIES])


def test_dvc_runs_the_feature_stages_and_stays_up_to_date(pipelined: BakedProject) -> None:
    stages = yaml.safe_load(pipelined.read("dvc.lock"))["stages"]
    assert [out["path"] for out in stages["features"]["outs"]] == ["data/feast/registry.db"]
    assert [out["path"] for out in stages["materialize"]["outs"]] == ["data/feast/online.db"]
    train_deps = [dep["path"] for dep in stages["train"]["deps"]]
    assert "data/feast/registry.db" in train_deps
    # materialize loads from a copy of the registry: the `features` output stays as saved
    status = pipelined.check(".venv/bin/dvc", "status").stdout
    assert "up to date" in status, status


def logged_inputs(log_dir: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for path in log_dir.glob("*.jsonl") for line in path.open()]
    return {row["id"]: row["inputs"] for row in rows}


def test_online_features_through_the_server_equal_the_offline_ones(
    pipelined: BakedProject, offline: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    log_dir = tmp_path / "log"
    ids = list(offline)
    with serving(
        pipelined,
        MODEL_DIR="build/model",
        PREDICTION_LOG_DIR=str(log_dir),
        PREDICTION_STORE_URL="off",
    ) as url:
        status, by_entity = call(
            f"{url}/predict",
            [{"entity_id": entity, "prediction_id": f"e-{entity}"} for entity in ids],
        )
        assert status == 200, by_entity
        status, in_full = call(f"{url}/predict", [offline[entity] for entity in ids])
        assert status == 200, in_full
        status, unknown = call(f"{url}/predict", {"entity_id": "no-such-entity"})
        assert status == 404
        assert unknown["detail"][0]["msg"] == "unknown entity 'no-such-entity'"
    assert by_entity["probabilities"] == in_full["probabilities"]
    logged = logged_inputs(log_dir)
    # what the server read online is, value for value, what training would have joined
    assert {entity: logged[f"e-{entity}"] for entity in ids} == offline


def test_the_production_path_redis_online_and_s3_offline(
    pipelined: BakedProject, offline: dict[str, dict[str, Any]]
) -> None:
    s3 = S3Server()
    s3.start()
    port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, redis, "redis-server")
        s3.client().create_bucket(Bucket="features")
        store = {
            **client_env(s3),
            "FEATURE_STORE_YAML": "feature_repo/feature_store.production.yaml",
            "FEATURE_REGISTRY_URL": "s3://features/staging/registry.db",
            "FEATURE_SOURCE_URL": "s3://features/source/features.parquet",
            "REDIS_CONNECTION_STRING": f"127.0.0.1:{port}",
        }
        command = f".venv/bin/{pipelined.path.name}"
        published = json.loads(pipelined.check(command, "publish-features", env=store).stdout)
        source = pipelined.path / "data/processed/features.parquet"
        assert published["copied"] == source.stat().st_size
        pipelined.check(
            ".venv/bin/feast", "-c", "feature_repo", "-f", store["FEATURE_STORE_YAML"], "apply",
            env=store,
        )  # fmt: skip
        assert s3.keys("features") == ["source/features.parquet", "staging/registry.db"]
        loaded = json.loads(pipelined.check(command, "materialize", env=store).stdout)
        keys = subprocess.run(
            ["redis-cli", "-p", str(port), "dbsize"], capture_output=True, text=True, check=True
        )
        assert int(keys.stdout) == loaded["rows"] > ENTITIES
        ids = list(offline)
        served = {"MODEL_DIR": "build/model", "PREDICTION_STORE_URL": "off", **store}
        with serving(pipelined, base_env={**os.environ, **served}) as url:
            status, by_entity = call(f"{url}/predict", [{"entity_id": entity} for entity in ids])
            assert status == 200, by_entity
            status, in_full = call(f"{url}/predict", [offline[entity] for entity in ids])
            assert by_entity["probabilities"] == in_full["probabilities"]
            redis.terminate()
            redis.wait(timeout=30)
            status, down = call(f"{url}/predict", {"entity_id": ids[0]})
            assert status == 503, down
            assert "feature store" in down["detail"]
            assert call(f"{url}/predict", offline[ids[0]])[0] == 200
            assert call(f"{url}/health/ready")[0] == 200
            _, metrics = call(f"{url}/metrics")
            assert 'ml_feature_store_reads_total{outcome="error"} 1.0' in metrics
    finally:
        redis.terminate()
        redis.wait(timeout=30)
        s3.stop()
