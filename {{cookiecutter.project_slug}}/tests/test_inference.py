"""The numpy model predicts what the scikit-learn pipeline predicts, for every model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from {{ cookiecutter.module_name }}.config import load_params
from {{ cookiecutter.module_name }}.inference import (
    CompiledModel,
    CompileError,
    Inputs,
    compile_pipeline,
)
from {{ cookiecutter.module_name }}.schema import (
    FeatureSchema,
    infer_schema,
    to_model_frame,
)
from {{ cookiecutter.module_name }}.train import build_pipeline

MODELS = ["hist_gradient_boosting", "random_forest", "linear"]


def inputs_for(frame: pd.DataFrame, schema: FeatureSchema) -> Inputs:
    """What the server builds from a request: numbers, and categories as text or None."""
    numeric = frame[schema.numeric].to_numpy(dtype=float)
    categorical = [
        [None if pd.isna(value) else str(value) for value in frame[name]]
        for name in schema.categorical
    ]
    return Inputs(numeric=numeric, categorical=categorical)


def fitted(task: str, model: str, frame: pd.DataFrame, project_root: Path) -> tuple:  # type: ignore[type-arg]
    params = load_params(project_root / "params.yaml")
    params.task = task  # type: ignore[assignment]
    params.train.model = model  # type: ignore[assignment]
    params.train.random_forest.n_estimators = 25
    params.train.hist_gradient_boosting.max_iter = 30
    schema = infer_schema(frame, "label", task)  # type: ignore[arg-type]
    features = to_model_frame(frame, schema)
    return build_pipeline(schema, params).fit(features, frame["label"]), schema, features


def probe_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The training rows plus rows with every feature missing and an unseen category."""
    extra = frame.head(3).copy()
    extra[:] = np.nan
    unseen = frame.head(2).assign(colour="purple")
    return pd.concat([frame, extra, unseen], ignore_index=True)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("classes", [2, 3])
def test_classifiers_match_scikit_learn(
    frame: pd.DataFrame, project_root: Path, model: str, classes: int, tmp_path: Path
) -> None:
    if classes == 3:
        frame = frame.assign(label=np.where(frame["noise"] > 0.5, "maybe", frame["label"]))
    pipeline, schema, _ = fitted("classification", model, frame, project_root)
    compiled = compile_pipeline(pipeline)
    compiled.save(tmp_path / "model.npz")
    compiled = CompiledModel.load(tmp_path / "model.npz")
    rows = probe_rows(frame)

    predicted, probabilities = compiled.predict(inputs_for(rows, schema))

    expected = pipeline.predict_proba(to_model_frame(rows, schema))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-9, atol=1e-12)
    assert list(predicted) == list(pipeline.predict(to_model_frame(rows, schema)))
    assert compiled.classes == list(pipeline.classes_)


@pytest.mark.parametrize("model", MODELS)
def test_regressors_match_scikit_learn(frame: pd.DataFrame, project_root: Path, model: str) -> None:
    data = frame.assign(label=frame["noise"] * 3 + (frame["colour"] == "red") * 2)
    pipeline, schema, _ = fitted("regression", model, data, project_root)
    rows = probe_rows(data)

    predicted, probabilities = compile_pipeline(pipeline).predict(inputs_for(rows, schema))

    assert probabilities is None
    expected = pipeline.predict(to_model_frame(rows, schema))
    np.testing.assert_allclose(predicted, expected, rtol=1e-9, atol=1e-9)


def test_numeric_only_data(project_root: Path) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    frame["label"] = np.where(frame["a"] + frame["b"] > 0, 1, 0)
    pipeline, schema, features = fitted(
        "classification", "hist_gradient_boosting", frame, project_root
    )

    predicted, probabilities = compile_pipeline(pipeline).predict(inputs_for(frame, schema))

    np.testing.assert_allclose(probabilities, pipeline.predict_proba(features), rtol=1e-9)
    assert predicted.tolist() == pipeline.predict(features).tolist()


def test_unsupported_models_are_refused(frame: pd.DataFrame, project_root: Path) -> None:
    pipeline, _, _ = fitted("regression", "linear", frame.assign(label=1.0), project_root)
    pipeline.steps[-1] = ("model", LinearRegression())
    with pytest.raises(CompileError, match="LinearRegression"):
        compile_pipeline(pipeline)
