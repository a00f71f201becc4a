"""A feature store built in a test's folder, as the `features` and `materialize` stages do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from {{ cookiecutter.module_name }}.config import Params, Paths
from {{ cookiecutter.module_name }}.data import SAMPLE_START, sample_entity_ids
from {{ cookiecutter.module_name }}.features import REPO, StoreSettings, materialize, write_source
from {{ cookiecutter.module_name }}.schema import FeatureSchema

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FEAST = Path(sys.executable).parent / "feast"


def with_identity(frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    """`frame` led by the entity id and event time columns params.yaml names, as the
    sample has them: ids 000001…, an hour apart from SAMPLE_START."""
    key, timestamp = params.data.entity_key, params.data.timestamp
    assert key, "params.yaml names no data.entity_key"
    assert timestamp, "params.yaml names no data.timestamp"
    times = pd.Timestamp(SAMPLE_START) + pd.to_timedelta(range(len(frame)), unit="h")
    identity = pd.DataFrame(
        {key: sample_entity_ids(len(frame)), timestamp: times.strftime("%Y-%m-%dT%H:%M:%SZ")},
        index=frame.index,
    )
    return pd.concat([identity, frame], axis=1)


def build_store(root: Path, params: Params) -> dict[str, object]:
    """In `root` (the working directory, after `prepare`): the source, params.yaml and
    feature_repo/, then `feast apply` (the real command) and the `materialize` stage's
    function."""
    write_source(params, FeatureSchema.load(Paths.schema))
    (root / "params.yaml").write_text(
        yaml.safe_dump(params.model_dump(mode="json")), encoding="utf-8"
    )
    shutil.copytree(PROJECT_ROOT / REPO, root / REPO, dirs_exist_ok=True)
    applied = subprocess.run(
        [str(FEAST), "-c", str(REPO), "apply"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return materialize(params, StoreSettings())
