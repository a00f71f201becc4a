from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.module_name }}.config import (
    Params,
    Paths,
    load_params,
)
from {{ cookiecutter.module_name }}.data import (
    expectation_problems,
    prepare,
    read_raw,
    split,
)
from {{ cookiecutter.module_name }}.errors import DataError
from {{ cookiecutter.module_name }}.schema import FeatureSchema


@pytest.fixture
def params(project_root: Path) -> Params:
    params = load_params(project_root / "params.yaml")
    params.task = "classification"
    params.data.target = "label"
    params.data.min_rows = 50
    params.data.entity_key = params.data.timestamp = None  # rows without ids or times
    return params


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_good_data_has_no_problems(frame: pd.DataFrame, params: Params) -> None:
    assert expectation_problems(frame, params) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["label"]), "target column 'label' not found"),
        (lambda f: f.head(10), "only 10 rows"),
        (lambda f: f.assign(label="yes"), "has one class ('yes')"),
        (lambda f: f.assign(noise=None), "column 'noise' is empty in every row"),
        (lambda f: f.assign(label=f["label"].where(f.index > 0)), "'label' has 1 missing"),
        (lambda f: f[["label"]], "no feature columns"),
        (lambda f: f.assign(prediction_id="a"), "column 'prediction_id' is a reserved name"),
    ],
)
def test_broken_data_is_named(
    frame: pd.DataFrame, params: Params, change: object, message: str
) -> None:
    problems = expectation_problems(change(frame), params)  # type: ignore[operator]
    assert any(message in problem for problem in problems), problems


def test_regression_needs_a_numeric_target(frame: pd.DataFrame, params: Params) -> None:
    params.task = "regression"
    problems = expectation_problems(frame, params)
    assert problems == ["target column 'label' is not numeric; regression needs numbers"]


def test_missing_and_empty_files_fail_clearly(workdir: Path, params: Params) -> None:
    params.data.path = Path("data/raw/absent.csv")
    with pytest.raises(DataError, match="no such file"):
        read_raw(params)
    params.data.path = workdir / "empty.csv"
    params.data.path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="the file is empty"):
        read_raw(params)


def rows_of(frame: pd.DataFrame) -> set[str]:
    return {"|".join(map(str, row)) for row in frame.itertuples(index=False, name=None)}


def test_the_split_is_a_stable_hash_of_each_row(
    frame: pd.DataFrame, params: Params, make_frame: Callable[..., pd.DataFrame]
) -> None:
    train, test = split(frame, params)
    assert list(train.index) == list(split(frame, params)[0].index)
    assert abs(len(test) / len(frame) - params.data.test_size) < 0.1
    # More data, shuffled: every earlier row stays on its side.
    grown = pd.concat([make_frame(rows=300, seed=9), frame], ignore_index=True).sample(frac=1.0)
    grown_train, grown_test = split(grown, params)
    assert rows_of(test) <= rows_of(grown_test)
    assert rows_of(train) <= rows_of(grown_train)
    params.seed += 1  # the seed salts the hash
    assert list(split(frame, params)[1].index) != list(test.index)


def test_prepare_adds_the_production_rows(
    workdir: Path, frame: pd.DataFrame, params: Params, make_frame: Callable[..., pd.DataFrame]
) -> None:
    frame.to_csv(workdir / "mine.csv", index=False)
    params.data.path = Path("mine.csv")
    prepare(params)
    before_test = pd.read_csv(Paths.test)
    assert json.loads(Paths.split.read_text())["production_train"] == 0

    production = make_frame(rows=100, seed=3)
    production.insert(0, "prediction_id", [f"p-{index}" for index in range(100)])
    params.data.production.parent.mkdir(parents=True)
    production.to_csv(params.data.production, index=False)
    prepare(params)
    counts = json.loads(Paths.split.read_text())
    train, test = pd.read_csv(Paths.train), pd.read_csv(Paths.test)
    assert counts["production_train"] + counts["production_test"] == 100
    assert (counts["train"], counts["test"]) == (len(train), len(test))
    assert len(train) + len(test) == len(frame) + 100
    assert "prediction_id" not in train.columns
    assert rows_of(before_test) <= rows_of(test)

    production.drop(columns=["noise"]).to_csv(params.data.production, index=False)
    with pytest.raises(DataError, match=r"production\.csv: columns differ .*missing \['noise'\]"):
        prepare(params)


def test_prepare_writes_the_split_and_the_schema(
    workdir: Path, frame: pd.DataFrame, params: Params
) -> None:
    frame.to_csv(workdir / "mine.csv", index=False)
    params.data.path = Path("mine.csv")

    schema = prepare(params)

    assert FeatureSchema.load(Paths.schema) == schema
    train, test = pd.read_csv(Paths.train), pd.read_csv(Paths.test)
    assert len(train) + len(test) == len(frame)
    assert set(train.columns) == set(frame.columns)


def test_prepare_stops_on_bad_data_and_writes_nothing(
    workdir: Path, frame: pd.DataFrame, params: Params
) -> None:
    frame.assign(label="yes").to_csv(workdir / "mine.csv", index=False)
    params.data.path = Path("mine.csv")

    with pytest.raises(DataError, match=r"mine\.csv: target column 'label' has one class"):
        prepare(params)
    assert not Paths.train.exists()
