"""`predict --engine dask` on a real local Dask cluster of 2 worker processes.

The exported default project scores a dataset of 4 Parquet files through `make
predict-dask`, which installs the engine in `.venv-dask` on first use (the project's
`.venv` stays without it), and gets, row for row, what the local path gives on the same
rows in one file: predictions, probabilities and the one rejected row.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from baked import BakedProject

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve-e2e")]

MAKE_DATASET = r"""
import os
import numpy as np, pandas as pd
rows = pd.read_csv("data/processed/test.csv").drop(columns=["target"])
data = rows.iloc[np.random.default_rng(1).integers(0, len(rows), 8000)].reset_index(drop=True)
data.insert(0, "row_id", range(len(data)))
data.loc[2500, "mean_radius"] = np.nan  # never missing in training: rejected
os.makedirs("build/engine/parts", exist_ok=True)
for part in range(4):
    chunk = data.iloc[part * 2000 : (part + 1) * 2000]
    chunk.to_parquet(f"build/engine/parts/part-{part}.parquet", index=False)
data.to_parquet("build/engine/all.parquet", index=False)
"""
COMPARE = r"""
import glob, json
import numpy as np, pandas as pd
parts = sorted(glob.glob("build/engine/scored/*.parquet"))
engine = pd.concat(pd.read_parquet(path) for path in parts)
engine = engine.sort_values("row_id").reset_index(drop=True)
local = pd.read_parquet("build/engine/local.parquet")
probabilities = [column for column in local.columns if column.startswith("proba_")]
difference = np.abs(engine[probabilities] - local[probabilities]).to_numpy().max()
records = lambda path: pd.read_csv(path).to_dict(orient="records")
print(json.dumps({
    "rows": [len(engine), len(local)],
    "row_ids": engine["row_id"].tolist() == local["row_id"].tolist(),
    "predictions": engine["prediction"].tolist() == local["prediction"].tolist(),
    "largest_difference": float(difference),
    "rejects": {
        path.rsplit("/", 1)[-1]: records(path)
        for path in sorted(glob.glob("build/engine/scored/*.rejects.csv"))
    },
    "local_rejects": records("build/engine/local.parquet.rejects.csv"),
}))
"""


def test_the_dask_engine_gives_what_the_local_path_gives(exported_project: BakedProject) -> None:
    project = exported_project
    cli = f".venv/bin/{project.path.name}"
    project.check(".venv/bin/python", "-c", MAKE_DATASET)

    # The project's own environment has no Dask, and says where it is.
    assert project.run(".venv/bin/python", "-c", "import dask").returncode != 0
    missing = project.run(cli, "predict", "--engine", "dask", "--input",
                          "build/engine/parts", "--output", "build/engine/scored",
                          "--model-dir", "build/model")  # fmt: skip
    assert missing.returncode == 2
    assert "make engine-setup" in missing.stderr

    ran = project.run("make", "predict-dask", "INPUT=build/engine/parts",
                      "OUTPUT=build/engine/scored", "KEEP=row_id", timeout=900)  # fmt: skip
    assert "8000 rows: 7999 scored, 1 rejected" in ran.stdout, ran.stdout + ran.stderr
    assert "on 2 dask worker(s)" in ran.stdout, "both workers took partitions"
    assert ran.returncode == 2  # make's status for the CLI's 1: rows were rejected

    local = project.run(cli, "predict", "--input", "build/engine/all.parquet", "--output",
                        "build/engine/local.parquet", "--model-dir", "build/model",
                        "--keep", "row_id")  # fmt: skip
    assert local.returncode == 1, local.stderr
    compared: dict[str, Any] = json.loads(
        project.check(".venv/bin/python", "-c", COMPARE).stdout.strip().splitlines()[-1]
    )
    assert compared["rows"] == [7999, 7999]
    assert compared["row_ids"]
    assert compared["predictions"]
    assert compared["largest_difference"] == 0.0
    reason = "missing (it was never missing in training)"
    # Row 2501 of the dataset is row 501 of its file, part-1.
    assert compared["rejects"] == {
        "part-1.parquet.rejects.csv": [{"line": 501, "field": "mean_radius", "reason": reason}]
    }
    assert compared["local_rejects"] == [{"line": 2501, "field": "mean_radius", "reason": reason}]
