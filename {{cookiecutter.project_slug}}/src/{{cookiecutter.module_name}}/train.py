"""The `train` stage: fit the scikit-learn pipeline and log it to MLflow."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from . import tracking
from .config import Params, Paths, Settings
from .data import read_split
from .inference import FILENAME as COMPILED_FILENAME
from .inference import CompileError, compile_pipeline
from .metrics import score
from .profile import build_profile
from .schema import FeatureSchema, to_model_frame

# The model is logged with exactly these packages rather than MLflow's slow inference.
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "pandas", "numpy")
log = logging.getLogger(__name__)


def build_estimator(params: Params) -> BaseEstimator:
    kind, seed = params.train.model, params.seed
    classification = params.task == "classification"
    if kind == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        hgb = params.train.hist_gradient_boosting.model_dump()
        if classification:
            return HistGradientBoostingClassifier(random_state=seed, **hgb)
        return HistGradientBoostingRegressor(random_state=seed, **hgb)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        forest = params.train.random_forest.model_dump()
        if classification:
            return RandomForestClassifier(random_state=seed, n_jobs=-1, **forest)
        return RandomForestRegressor(random_state=seed, n_jobs=-1, **forest)
    from sklearn.linear_model import LogisticRegression, Ridge

    strength = params.train.linear.regularization
    if classification:
        return LogisticRegression(C=1 / strength, max_iter=2000, random_state=seed)
    return Ridge(alpha=strength, random_state=seed)


def build_pipeline(schema: FeatureSchema, params: Params) -> Pipeline:
    """Impute and scale numbers, impute and one-hot encode categories, then the model."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.numeric:
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        transformers.append(("numeric", numeric, schema.numeric))
    if schema.categorical:
        categorical = make_pipeline(
            SimpleImputer(strategy="constant", fill_value="missing"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
        )
        transformers.append(("categorical", categorical, schema.categorical))
    return Pipeline(
        [("features", ColumnTransformer(transformers)), ("model", build_estimator(params))]
    )


def logged_params(params: Params) -> dict[str, Any]:
    """The parameters this run depends on: the chosen model's, not the alternatives'."""
    chosen = params.train.model
    values = {
        "task": params.task,
        "seed": params.seed,
        "data": params.data.model_dump(mode="json"),
        "train": {"model": chosen, chosen: getattr(params.train, chosen).model_dump()},
    }
    return tracking.flatten(values)


def train(params: Params, settings: Settings) -> dict[str, Any]:
    """Fit on the train split, log everything to MLflow, keep a local copy for DVC."""
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    schema = FeatureSchema.load(Paths.schema)
    raw, labels = read_split(Paths.train, schema)
    features = to_model_frame(raw, schema)
    pipeline = build_pipeline(schema, params).fit(features, labels)

    predictions = pipeline.predict(features)
    Paths.profile.parent.mkdir(parents=True, exist_ok=True)
    Paths.profile.write_text(
        json.dumps(build_profile(features, predictions, schema), indent=2) + "\n",
        encoding="utf-8",
    )
    scratch = Path(tempfile.mkdtemp())
    extra_files = [str(Paths.schema), str(Paths.profile)]
    try:
        compile_pipeline(pipeline).save(scratch / COMPILED_FILENAME)
        extra_files.append(str(scratch / COMPILED_FILENAME))
    except CompileError as error:  # served through scikit-learn instead
        log.warning("the model will be served with scikit-learn: %s", error)
    example = features.head(5)
    model_kwargs: dict[str, Any] = {
        "signature": infer_signature(example, pipeline.predict(example)),
        "input_example": example,
        "pip_requirements": [f"{package}=={version(package)}" for package in MODEL_REQUIREMENTS],
        # skops refuses types it does not know; trust exactly those of the model just fitted
        "skops_trusted_types": skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
        "extra_files": extra_files,
    }

    run_params = logged_params(params)
    tracking.configure(settings)
    run_name = f"{params.train.model}-{tracking.params_hash(run_params)[:8]}"
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags(
            {
                "git_commit": tracking.git_commit(),
                "dvc_params_hash": tracking.params_hash(run_params),
                "task": params.task,
                "model": params.train.model,
            }
        )
        mlflow.log_params(run_params)
        train_scores = score(pipeline, features, labels, params.task)
        mlflow.log_metrics({f"train_{name}": value for name, value in train_scores.items()})
        model_info = mlflow.sklearn.log_model(pipeline, name="model", **model_kwargs)
        mlflow.log_artifact(str(Paths.schema))
        mlflow.log_artifact(str(Paths.profile))

    shutil.rmtree(Paths.model, ignore_errors=True)
    mlflow.sklearn.save_model(pipeline, str(Paths.model), **model_kwargs)
    shutil.rmtree(scratch)
    record = {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": model_info.model_uri,
        "train_metrics": train_scores,
    }
    Paths.run.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
