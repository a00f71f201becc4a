"""The compiled numpy model is kept only when proven equal to the pipeline, for every model."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from {{ cookiecutter.module_name }} import (
    compiler,
    runtime,
)
from {{ cookiecutter.module_name }}.artifact import (
    Runtime,
)
from {{ cookiecutter.module_name }}.compiler import (
    CompileError,
    compile_pipeline,
)
from {{ cookiecutter.module_name }}.config import (
    Params,
    load_params,
)
from {{ cookiecutter.module_name }}.inference import (
    CompiledModel,
    Inputs,
)
from {{ cookiecutter.module_name }}.runtime import (
    TOLERANCE,
    plan,
    probe_rows,
    verify,
)
from {{ cookiecutter.module_name }}.schema import (
    FeatureSchema,
    infer_schema,
    to_model_frame,
)
from {{ cookiecutter.module_name }}.train import (
    build_pipeline,
)

MODELS = ["hist_gradient_boosting", "random_forest", "linear", "xgboost", "lightgbm"]


def small_params(project_root: Path, task: str, model: str) -> Params:
    params = load_params(project_root / "params.yaml")
    params.task = task  # type: ignore[assignment]
    params.train.model = model  # type: ignore[assignment]
    params.train.random_forest.n_estimators = 25
    params.train.hist_gradient_boosting.max_iter = 30
    params.train.xgboost.n_estimators = 30
    params.train.lightgbm.n_estimators = 30
    params.train.lightgbm.min_child_samples = 5
    return params


def fitted(
    task: str, model: str, frame: pd.DataFrame, project_root: Path
) -> tuple[Any, FeatureSchema, pd.DataFrame]:
    params = small_params(project_root, task, model)
    schema = infer_schema(frame, "label", task)  # type: ignore[arg-type]
    features = to_model_frame(frame, schema)
    return build_pipeline(schema, params).fit(features, frame["label"]), schema, features


def three_classes(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(label=np.where(frame["noise"] > 0.5, "maybe", frame["label"]))


def large_values(frame: pd.DataFrame) -> pd.DataFrame:
    """A target in the hundreds of thousands: float32 rounding shows there, if anywhere."""
    return frame.assign(label=frame["noise"] * 3000 + (frame["colour"] == "red") * 2000 + 250_000)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("classes", [2, 3])
def test_classifiers_are_compiled_and_proven_equal(
    frame: pd.DataFrame, project_root: Path, model: str, classes: int, tmp_path: Path
) -> None:
    if classes == 3:
        frame = three_classes(frame)
    pipeline, schema, features = fitted("classification", model, frame, project_root)

    serving = plan(pipeline, features, schema)

    assert serving.runtime.predictor == "compiled", serving.runtime.reason
    assert serving.runtime.extras == []
    assert serving.compiled is not None
    serving.compiled.save(tmp_path / "model.npz")
    compiled = CompiledModel.load(tmp_path / "model.npz")
    rows = probe_rows(features, schema)
    predicted, probabilities = compiled.predict(Inputs.from_frame(rows, schema))
    assert np.max(np.abs(probabilities - pipeline.predict_proba(rows))) <= TOLERANCE  # type: ignore[operator]
    assert predicted.tolist() == pipeline.predict(rows).tolist()
    assert compiled.classes == list(pipeline.classes_)


@pytest.mark.parametrize("model", MODELS)
def test_regressors_are_compiled_and_proven_equal(
    frame: pd.DataFrame, project_root: Path, model: str
) -> None:
    pipeline, schema, features = fitted("regression", model, large_values(frame), project_root)

    serving = plan(pipeline, features, schema)

    assert serving.runtime.predictor == "compiled", serving.runtime.reason
    assert serving.compiled is not None
    rows = probe_rows(features, schema)
    predicted, probabilities = serving.compiled.predict(Inputs.from_frame(rows, schema))
    assert probabilities is None
    assert np.max(np.abs(predicted - pipeline.predict(rows))) <= TOLERANCE


def test_xgboost_sums_match_to_the_bit(frame: pd.DataFrame, project_root: Path) -> None:
    """float32 leaves added in XGBoost's order, onto its exact intercept."""
    pipeline, schema, features = fitted("regression", "xgboost", large_values(frame), project_root)
    compiled = compile_pipeline(pipeline, features)
    predicted, _ = compiled.predict(Inputs.from_frame(features, schema))
    np.testing.assert_array_equal(predicted, pipeline.predict(features).astype(np.float64))


def test_labels_keep_the_estimator_order(frame: pd.DataFrame, project_root: Path) -> None:
    """Integer classes 2 and 10: sorted as numbers, as the estimator sorts them."""
    data = frame.assign(label=np.where(frame["label"] == "yes", 10, 2))
    pipeline, schema, features = fitted("classification", "xgboost", data, project_root)
    serving = plan(pipeline, features, schema)
    assert serving.compiled is not None
    assert serving.compiled.classes == [2, 10] == list(pipeline.classes_)


def test_a_corrupted_compiled_model_is_not_kept(
    frame: pd.DataFrame, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, schema, features = fitted("classification", "random_forest", frame, project_root)
    compiled = compile_pipeline(pipeline, features)
    roots = compiled.arrays["roots"]
    compiled.arrays["threshold"][roots] += 5.0  # every tree's first split moves

    with pytest.raises(CompileError, match=r"another class|differs"):
        verify(compiled, pipeline, probe_rows(features, schema), schema)

    monkeypatch.setattr(runtime, "compile_pipeline", lambda *args: compiled)
    serving = plan(pipeline, features, schema)
    assert serving.runtime.predictor == "pipeline"
    assert serving.compiled is None
    assert "another class" in serving.runtime.reason or "differs" in serving.runtime.reason
    assert serving.runtime.extras == ["pipeline"]
    assert "scikit-learn" in serving.runtime.packages


def test_a_renamed_private_attribute_falls_back(
    frame: pd.DataFrame, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if scikit-learn renamed `_predictors`: the compiler's lookup fails, train goes on."""
    pipeline, schema, features = fitted(
        "classification", "hist_gradient_boosting", frame, project_root
    )

    def renamed(model: Any) -> Any:
        return model._predictors_in_a_future_release

    monkeypatch.setattr(compiler, "_hist_trees", renamed)
    serving = plan(pipeline, features, schema)

    assert serving.runtime.predictor == "pipeline"
    assert "AttributeError" in serving.runtime.reason


def test_a_library_release_outside_the_tested_range_is_declined(
    frame: pd.DataFrame, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, schema, features = fitted("classification", "linear", frame, project_root)
    monkeypatch.setitem(runtime.TESTED, "sklearn", ((0, 1), (0, 2)))

    serving = plan(pipeline, features, schema)

    assert serving.runtime.predictor == "pipeline"
    assert "outside the releases the compiler knows: 0.1 to 0.2" in serving.runtime.reason


def test_an_unknown_model_is_served_by_its_pipeline(
    frame: pd.DataFrame, project_root: Path
) -> None:
    data = large_values(frame)
    pipeline, schema, features = fitted("regression", "linear", data, project_root)
    matrix = pipeline[:-1].transform(features)
    pipeline.steps[-1] = ("model", LinearRegression().fit(matrix, data["label"]))

    serving = plan(pipeline, features, schema)

    assert serving.runtime.predictor == "pipeline"
    assert "LinearRegression is not supported" in serving.runtime.reason


def test_lightgbm_without_compiled_arrays_records_its_runtime(
    frame: pd.DataFrame, project_root: Path
) -> None:
    data = large_values(frame)
    pipeline, schema, features = fitted("regression", "lightgbm", data, project_root)
    pipeline.set_params(model__objective="poisson").fit(features, data["label"])

    record = plan(pipeline, features, schema).runtime

    assert record.predictor == "pipeline"
    assert "objective poisson" in record.reason
    assert record.extras == ["lightgbm", "pipeline"]
    assert record.system == ["libgomp1"]
    assert {"lightgbm", "scikit-learn", "skops", "pandas"} <= set(record.packages)
    assert record.problems() == []


def test_the_custom_model_is_served_by_its_pipeline(
    frame: pd.DataFrame, project_root: Path
) -> None:
    pipeline, schema, features = fitted("classification", "custom", frame, project_root)

    record = plan(pipeline, features, schema).runtime

    assert record.predictor == "pipeline"
    assert record.extras == ["pipeline"]


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    def fit(self, features: Any, labels: Any = None) -> Doubler:
        return self

    def transform(self, features: Any) -> Any:
        return np.asarray(features) * 2


@pytest.mark.parametrize(
    ("module", "expected"),
    [("__main__", "defined in a notebook or script"), ("notebook_helpers", "'notebook_helpers'")],
)
def test_a_class_no_server_can_import_is_unservable(
    frame: pd.DataFrame,
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    expected: str,
) -> None:
    pipeline, schema, features = fitted("classification", "linear", frame, project_root)
    place = types.ModuleType(module)
    monkeypatch.setitem(sys.modules, module, place)
    monkeypatch.setattr(Doubler, "__module__", module)
    place.Doubler = Doubler  # type: ignore[attr-defined]
    pipeline.steps[-1] = ("model", make_pipeline(Doubler(), pipeline.steps[-1][1]))

    record = plan(pipeline, features, schema).runtime

    assert record.predictor == "none"
    assert "step 'model'" in record.reason
    assert expected in record.reason
    assert record.problems() == [record.reason]


def test_a_version_other_than_the_trained_one_is_a_problem() -> None:
    record = Runtime("pipeline", extras=["pipeline"], packages={"scikit-learn": "0.0.1"})
    (problem,) = record.problems()
    assert problem.startswith("scikit-learn: the model was trained with 0.0.1, installed is 1.")
