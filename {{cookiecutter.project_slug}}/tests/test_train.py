from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.module_name }}.config import (
    Params,
    load_params,
)
from {{ cookiecutter.module_name }}.schema import (
    infer_schema,
    to_model_frame,
)
from {{ cookiecutter.module_name }}.train import (
    build_pipeline,
    logged_params,
)

MODELS = ["hist_gradient_boosting", "random_forest", "linear", "xgboost", "lightgbm", "custom"]


def params_for(project_root: Path, task: str, model: str) -> Params:
    params = load_params(project_root / "params.yaml")
    params.task = task  # type: ignore[assignment]
    params.train.model = model  # type: ignore[assignment]
    params.train.random_forest.n_estimators = 20
    params.train.hist_gradient_boosting.max_iter = 20
    params.train.xgboost.n_estimators = 20
    params.train.lightgbm.n_estimators = 20
    params.train.custom = {"n_estimators": 20}
    return params


@pytest.mark.parametrize("model", MODELS)
def test_classifier_handles_numbers_categories_and_missing_values(
    project_root: Path, frame: pd.DataFrame, model: str
) -> None:
    params = params_for(project_root, "classification", model)
    schema = infer_schema(frame, "label", "classification")
    features = to_model_frame(frame, schema)

    pipeline = build_pipeline(schema, params).fit(features, frame["label"])

    assert set(pipeline.predict(features)) <= {"yes", "no"}
    assert pipeline.predict_proba(features).shape == (len(frame), 2)
    # categories never seen in training are ignored, not an error
    unseen = features.head(3).assign(colour="purple")
    assert len(pipeline.predict(unseen)) == 3


@pytest.mark.parametrize("model", MODELS)
def test_regressor_fits_and_predicts_numbers(
    project_root: Path, frame: pd.DataFrame, model: str
) -> None:
    params = params_for(project_root, "regression", model)
    data = frame.assign(label=frame["noise"] * 3 + 1).drop(columns=["noise"])
    schema = infer_schema(data, "label", "regression")

    pipeline = build_pipeline(schema, params).fit(to_model_frame(data, schema), data["label"])

    predictions = pipeline.predict(to_model_frame(data, schema))
    assert predictions.dtype.kind == "f"
    assert np.isfinite(predictions).all()


def test_same_data_and_params_give_the_same_model(project_root: Path, frame: pd.DataFrame) -> None:
    params = params_for(project_root, "classification", "random_forest")
    schema = infer_schema(frame, "label", "classification")
    features = to_model_frame(frame, schema)

    first = build_pipeline(schema, params).fit(features, frame["label"])
    second = build_pipeline(schema, params).fit(features, frame["label"])

    np.testing.assert_array_equal(first.predict_proba(features), second.predict_proba(features))


def test_logged_params_are_those_of_the_chosen_model(project_root: Path) -> None:
    params = params_for(project_root, "classification", "random_forest")
    logged = logged_params(params)
    assert logged["train.model"] == "random_forest"
    assert logged["train.random_forest.n_estimators"] == 20
    assert not any(key.startswith("train.hist_gradient_boosting") for key in logged)


def test_logged_params_of_the_custom_model_are_its_keyword_arguments(project_root: Path) -> None:
    logged = logged_params(params_for(project_root, "regression", "custom"))
    assert logged["train.model"] == "custom"
    assert logged["train.custom.n_estimators"] == 20
