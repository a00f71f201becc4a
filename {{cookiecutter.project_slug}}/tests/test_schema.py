from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.module_name }}.schema import (
    FeatureSchema,
    infer_schema,
    read_csv,
    to_model_frame,
    validate_frame,
)


@pytest.fixture
def schema(frame: pd.DataFrame) -> FeatureSchema:
    return infer_schema(frame, "label", "classification")


def test_infers_kinds_ranges_categories_and_nullability(
    schema: FeatureSchema, frame: pd.DataFrame
) -> None:
    by_name = {feature.name: feature for feature in schema.features}
    assert schema.names == ["size", "colour", "noise"]
    assert by_name["size"].kind == "numeric"
    assert by_name["size"].nullable
    assert by_name["size"].minimum == pytest.approx(frame["size"].min())
    assert by_name["colour"].kind == "categorical"
    assert by_name["colour"].categories == ["blue", "green", "red"]
    assert by_name["colour"].nullable
    assert not by_name["noise"].nullable
    assert schema.target.classes == ["no", "yes"]


def test_declared_categorical_overrides_numbers() -> None:
    frame = pd.DataFrame({"zip": [1001, 1002, 1001], "y": [1.0, 2.0, 3.0]})
    schema = infer_schema(frame, "y", "regression", categorical=["zip"])
    assert schema.features[0].kind == "categorical"
    assert schema.features[0].categories == ["1001", "1002"]
    assert (schema.target.minimum, schema.target.maximum) == (1.0, 3.0)


def test_save_and_load_round_trip(schema: FeatureSchema, tmp_path: Path) -> None:
    schema.save(tmp_path / "schema.json")
    assert FeatureSchema.load(tmp_path / "schema.json") == schema


def test_a_frame_like_the_training_data_is_valid(
    schema: FeatureSchema, frame: pd.DataFrame
) -> None:
    assert validate_frame(frame, schema) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["size"]), "column 'size' is missing"),
        (lambda f: f.assign(size=["big"] * len(f)), "column 'size' must be numeric"),
        (lambda f: f.assign(size=np.inf), "column 'size' has infinite values"),
        (lambda f: f.assign(colour="purple"), "column 'colour' has unknown categories"),
        (lambda f: f.assign(noise=np.nan), "column 'noise' has 120 missing value(s)"),
    ],
)
def test_invalid_frames_name_the_column(
    schema: FeatureSchema, frame: pd.DataFrame, change: object, message: str
) -> None:
    problems = validate_frame(change(frame), schema)  # type: ignore[operator]
    assert len(problems) == 1
    assert problems[0].startswith(message)


def test_model_frame_types(schema: FeatureSchema, frame: pd.DataFrame) -> None:
    model_frame = to_model_frame(frame, schema)
    assert list(model_frame.columns) == schema.names
    assert model_frame["size"].dtype == "float64"
    assert model_frame["colour"].dtype == object
    assert model_frame["colour"].isna().sum() == frame["colour"].isna().sum()


def test_read_csv_keeps_categorical_codes_as_text(tmp_path: Path) -> None:
    (tmp_path / "codes.csv").write_text("code,y\n007,1\n,2\n", encoding="utf-8")
    frame = read_csv(tmp_path / "codes.csv", categorical=["code"])
    assert frame["code"].iloc[0] == "007"
    assert pd.isna(frame["code"].iloc[1])
