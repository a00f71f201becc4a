"""Your own estimators and transformers: `train.model: custom` in params.yaml trains this.

`build_estimator(task, seed, **train.custom)` returns what follows the feature
preprocessing (imputation, scaling, one-hot encoding) in the pipeline: an estimator, or a
scikit-learn Pipeline of your steps ending in one. The example below is a working start:
replace it with yours.

Put every class and function the model is made of here, not in a notebook or a script.
The saved model names them by module and name, and whatever serves it (the `evaluate`
and `register` stages, the server, the image) imports this module to load it. So keep
this module's imports to what the pipeline runtime has: scikit-learn, numpy, pandas
(and xgboost or lightgbm). A change here re-runs `train` (dvc.yaml lists this file).

`train` then decides how the model is served: numpy arrays when it can prove them equal
to the pipeline, otherwise the pipeline itself, with the packages it needs recorded in
the model's runtime.json for the image to install. The `runtime` command shows which.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class ClipToTrainingRange(TransformerMixin, BaseEstimator):
    """Clips every column to the range it had in training (outliers cannot extrapolate)."""

    def fit(self, features: Any, labels: Any = None) -> ClipToTrainingRange:
        values = np.asarray(features, dtype=float)
        self.low_ = np.nanmin(values, axis=0)
        self.high_ = np.nanmax(values, axis=0)
        return self

    def transform(self, features: Any) -> Any:
        return np.clip(np.asarray(features, dtype=float), self.low_, self.high_)


def build_estimator(task: str, seed: int, **params: Any) -> Any:
    """The model after the feature preprocessing, built from params.yaml's `train.custom`."""
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
    from sklearn.pipeline import make_pipeline

    trees = ExtraTreesClassifier if task == "classification" else ExtraTreesRegressor
    return make_pipeline(ClipToTrainingRange(), trees(random_state=seed, n_jobs=-1, **params))
