"""The estimator `train.model` names in params.yaml, with that model's hyper-parameters.

Each library is imported only when its model is chosen. A saved pipeline refers to the
classes here by module and name, so the server imports this module to load a pipeline:
it keeps its imports to scikit-learn and numpy, which that runtime has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

if TYPE_CHECKING:
    from .config import Params


class LabelEncodedClassifier(ClassifierMixin, BaseEstimator):
    """Fits `estimator` on class codes 0..n-1 and answers with the original labels.

    XGBoost takes only such codes; with this, a CSV whose labels are "yes"/"no" trains
    unchanged. `classes_` are the labels, sorted, as scikit-learn classifiers keep them.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, features: Any, labels: Any) -> LabelEncodedClassifier:
        self.classes_, codes = np.unique(np.asarray(labels), return_inverse=True)
        self.estimator_ = clone(self.estimator).fit(features, codes)
        return self

    def predict_proba(self, features: Any) -> Any:
        return self.estimator_.predict_proba(features)

    def predict(self, features: Any) -> Any:
        return self.classes_[np.argmax(self.predict_proba(features), axis=1)]


def build_estimator(params: Params) -> Any:
    kind, seed = params.train.model, params.seed
    classification = params.task == "classification"
    chosen = params.train.chosen()
    if kind == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        if classification:
            return HistGradientBoostingClassifier(random_state=seed, **chosen)
        return HistGradientBoostingRegressor(random_state=seed, **chosen)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        if classification:
            return RandomForestClassifier(random_state=seed, n_jobs=-1, **chosen)
        return RandomForestRegressor(random_state=seed, n_jobs=-1, **chosen)
    if kind == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        if classification:
            return LabelEncodedClassifier(XGBClassifier(random_state=seed, **chosen))
        return XGBRegressor(random_state=seed, **chosen)
    if kind == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        # verbose=-1: no "no further splits" lines on small data; the seed makes it repeatable
        settings = {"random_state": seed, "verbose": -1, **chosen}
        if chosen.get("subsample", 1.0) < 1.0:
            settings["subsample_freq"] = 1  # LightGBM ignores subsample without it
        return LGBMClassifier(**settings) if classification else LGBMRegressor(**settings)
    if kind == "custom":
        from . import custom

        return custom.build_estimator(params.task, seed, **chosen)
    from sklearn.linear_model import LogisticRegression, Ridge

    strength = chosen["regularization"]
    if classification:
        return LogisticRegression(C=1 / strength, max_iter=2000, random_state=seed)
    return Ridge(alpha=strength, random_state=seed)
