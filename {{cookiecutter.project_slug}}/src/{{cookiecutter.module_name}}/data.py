"""Raw data in, validated and split data out: the `sample` and `prepare` stages."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .config import Params, Paths, Task
from .errors import DataError
from .ids import RESERVED_NAMES
from .schema import FeatureSchema, infer_schema, is_numeric, read_csv

# The sample each task trains on when params.yaml names no CSV of yours.
SAMPLE_DATASETS: dict[str, str] = {
    "classification": "load_breast_cancer",
    "regression": "load_diabetes",
}


def write_sample(task: Task, path: Path = Paths.sample) -> pd.DataFrame:
    """Write the dataset scikit-learn ships for `task` as a CSV with a `target` column."""
    from sklearn import datasets

    frame: pd.DataFrame = getattr(datasets, SAMPLE_DATASETS[task])(as_frame=True).frame
    # "mean radius" -> "mean_radius": names that work as JSON keys and Python identifiers
    frame.columns = [re.sub(r"\W+", "_", str(name)).strip("_").lower() for name in frame.columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def read_raw(params: Params) -> pd.DataFrame:
    path = params.data.path
    if not path.is_file():
        raise DataError(f"{path}: no such file — put your CSV there or fix data.path")
    return read_csv(path, categorical=params.data.categorical)


def expectation_problems(frame: pd.DataFrame, params: Params) -> list[str]:
    """Everything wrong with the raw data, each message naming the column concerned."""
    target = params.data.target
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:20]))
        return [f"target column {target!r} not found (data.target); columns are: {columns}"]
    problems = []
    if len(frame) < params.data.min_rows:
        problems.append(f"only {len(frame)} rows; data.min_rows asks for {params.data.min_rows}")
    if len(frame.columns) < 2:
        problems.append(f"no feature columns besides the target {target!r}")
    for name in params.data.categorical:
        if name not in frame.columns:
            problems.append(f"column {name!r} is listed in data.categorical but not in the data")
    for name in RESERVED_NAMES:
        if name in frame.columns:
            problems.append(
                f"column {name!r} is a reserved name (the id a client gives a prediction); "
                "rename it in the CSV"
            )
    for name in frame.columns:
        if frame[name].isna().all():
            problems.append(f"column {name!r} is empty in every row")
    labels = frame[target]
    if labels.isna().any() and not labels.isna().all():
        problems.append(f"target column {target!r} has {int(labels.isna().sum())} missing values")
    labels = labels.dropna()
    if labels.empty:
        return problems
    if params.task == "classification":
        counts = labels.value_counts()
        if len(counts) < 2:
            problems.append(
                f"target column {target!r} has one class ({counts.index[0]!r}); "
                "classification needs at least two"
            )
        elif counts.min() < 2:
            rare = list(counts[counts < 2].index[:5])
            problems.append(f"target column {target!r}: classes {rare} have a single row")
    elif not is_numeric(labels):
        problems.append(f"target column {target!r} is not numeric; regression needs numbers")
    elif labels.nunique() < 2:
        problems.append(f"target column {target!r} is constant; there is nothing to learn")
    return problems


def split(frame: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic train/test split, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    stratify = frame[params.data.target] if params.task == "classification" else None
    train, test = train_test_split(
        frame, test_size=params.data.test_size, random_state=params.seed, stratify=stratify
    )
    return train, test


def prepare(params: Params) -> FeatureSchema:
    """Read, check, describe and split the raw data; write the `prepare` stage's outputs."""
    frame = read_raw(params)
    problems = expectation_problems(frame, params)
    if problems:
        raise DataError(f"{params.data.path}: " + "; ".join(problems))
    schema = infer_schema(frame, params.data.target, params.task, params.data.categorical)
    train, test = split(frame, params)
    Paths.train.parent.mkdir(parents=True, exist_ok=True)
    train.to_csv(Paths.train, index=False)
    test.to_csv(Paths.test, index=False)
    schema.save(Paths.schema)
    return schema


def read_split(path: Path, schema: FeatureSchema) -> tuple[pd.DataFrame, pd.Series]:
    """A split written by `prepare`, as (raw feature columns, target)."""
    frame = read_csv(path, categorical=schema.categorical)
    return frame.drop(columns=[schema.target.name]), frame[schema.target.name]
