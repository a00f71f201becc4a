"""`collect`: labelled production rows out of the prediction store, into training data.

Writes `data.production` (data/raw/production.csv): the training CSV's columns, the label
in the target column, and `prediction_id` first (the row's key: one row per id, and the
key of its side of the split). Rows already collected stay as they were; new ids are
appended. The result must pass `prepare`'s checks together with `data.path`, or nothing
is written. Rows that cannot become training rows (their inputs were not logged, or their
columns are not the training CSV's) go to a rejects file, with the reason.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Params
from .data import expectation_problems, read_production, read_raw
from .errors import DataError
from .ids import ID_FIELD
from .prediction_store import PredictionStore


@dataclass
class Collected:
    added: int
    total: int
    rejected: int
    path: Path
    tracked: str


def collect(params: Params, store: PredictionStore, rejects: Path) -> Collected:
    import pandas as pd

    raw = read_raw(params)
    columns = [str(name) for name in raw.columns]
    features = [name for name in columns if name != params.data.target]
    before = read_production(params, columns)
    known = set() if before is None else set(before[ID_FIELD])
    rows: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    for labelled in store.labelled():
        served = labelled.prediction
        if served.id in known:
            continue
        inputs = served.inputs
        if inputs is None:
            refused.append(
                {ID_FIELD: served.id, "reason": "inputs not logged (PREDICTION_LOG_OMIT)"}
            )
            continue
        if set(inputs) != set(features):
            missing = sorted(set(features) - set(inputs))
            extra = sorted(set(inputs) - set(features))
            reason = f"columns differ from {params.data.path}: missing {missing}, extra {extra}"
            refused.append({ID_FIELD: served.id, "reason": reason})
            continue
        rows.append({ID_FIELD: served.id, **inputs, params.data.target: labelled.actual})
        known.add(served.id)
    new = pd.DataFrame(rows, columns=[ID_FIELD, *columns])
    combined = new if before is None else pd.concat([before, new], ignore_index=True)
    problems = expectation_problems(pd.concat([raw, combined.drop(columns=[ID_FIELD])]), params)
    if problems:
        raise DataError(f"{params.data.path} + collected rows: " + "; ".join(problems))
    path = params.data.production
    if refused:
        with rejects.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, [ID_FIELD, "reason"])
            writer.writeheader()
            writer.writerows(refused)
    tracked = "unchanged"
    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        combined.to_csv(path, index=False)
        tracked = track(path)
    return Collected(len(rows), len(combined), len(refused), path, tracked)


def track(path: Path) -> str:
    """`dvc add` the file, first taking it out of git (it starts as an empty placeholder)."""
    if not Path(".dvc").is_dir():
        return "not in a DVC repository: track it yourself"
    git = shutil.which("git")
    if git is not None:
        # S603: a fixed argument list for the git found on PATH, no shell
        listed = subprocess.run(  # noqa: S603
            [git, "ls-files", "--error-unmatch", str(path)], capture_output=True, check=False
        )
        if listed.returncode == 0:
            subprocess.run([git, "rm", "--cached", "--quiet", str(path)], check=True)  # noqa: S603
    from dvc.repo import Repo

    with Repo() as repo:
        repo.add(str(path))
    return f"dvc add {path}: commit {path}.dvc and {path.parent}/.gitignore"
