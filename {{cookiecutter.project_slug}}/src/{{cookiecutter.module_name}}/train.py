"""The `train` stage: fit the scikit-learn pipeline and log it to MLflow."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from . import tracking
from .artifact import write_extra_files
from .config import Params, Paths, Settings
{%- if cookiecutter.feature_store == "none" %}
from .data import read_split
{%- endif %}
from .errors import ProjectError
from .estimators import build_estimator
{%- if cookiecutter.feature_store == "feast" %}
from .features import open_store, training_frame
{%- endif %}
from .metrics import score
from .profile import build_profile
from .runtime import plan
from .schema import FeatureSchema, to_model_frame

log = logging.getLogger(__name__)


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
        "train": {"model": chosen, chosen: params.train.chosen()},
    }
    return tracking.flatten(values)


def train(params: Params, settings: Settings) -> dict[str, Any]:
    """Fit on the train split, log everything to MLflow, keep a local copy for DVC."""
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    schema = FeatureSchema.load(Paths.schema)
{%- if cookiecutter.feature_store == "feast" %}
    # The features as the store joins them to each label's time: what serving reads too.
    raw, labels = training_frame(open_store(), Paths.train, params, schema)
{%- else %}
    raw, labels = read_split(Paths.train, schema)
{%- endif %}
    features = to_model_frame(raw, schema)
    pipeline = build_pipeline(schema, params).fit(features, labels)

    predictions = pipeline.predict(features)
    profile = build_profile(features, predictions, schema)
    Paths.profile.parent.mkdir(parents=True, exist_ok=True)
    Paths.profile.write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
    try:
        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    except Exception as error:  # a lambda or a class defined in a function, say
        raise ProjectError(
            f"the pipeline cannot be saved ({type(error).__name__}: {error}): define its "
            f"functions and classes at the top level of src/{__package__}/custom.py"
        ) from error
    serving = plan(pipeline, features, schema)
    scratch = Path(tempfile.mkdtemp())
    example = features.head(5)
    model_kwargs: dict[str, Any] = {
        "signature": infer_signature(example, pipeline.predict(example)),
        "input_example": example,
        # exactly what serves the pipeline, rather than MLflow's slow inference of it
        "pip_requirements": [
            *(f"{package}=={version(package)}" for package in ("mlflow", "numpy")),
            *serving.pipeline_requirements,
        ],
        # skops refuses types it does not know; trust exactly those of the model just fitted
        "skops_trusted_types": trusted,
        "extra_files": write_extra_files(
            scratch, schema, profile, serving.runtime, serving.compiled
        ),
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
                "serving.predictor": serving.runtime.predictor,
                "serving.reason": serving.runtime.reason[:5000],
                "serving.max_error": str(serving.runtime.max_error),
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
        "served_as": serving.runtime.describe(),
    }
    Paths.run.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
