"""The drift reference profile: how the training data and predictions were distributed.

Logged with every model; drift detection compares live or new data against it.

Format (JSON):
  {"rows": n,
   "features": {name: numeric or categorical entry},
   "prediction": numeric entry (regression) or categorical entry (classification)}
  numeric:     {"kind": "numeric", "edges": [inner bin edges, from quantiles],
                "frequencies": [len(edges) + 1 shares of the non-missing values],
                "quantiles": [QUANTILES values from minimum to maximum] (the KS test's CDF),
                "missing": share of rows missing}
  categorical: {"kind": "categorical", "frequencies": {category: share of non-missing},
                "unseen": 0.0, "missing": share of rows missing}
A value x falls in bin searchsorted(edges, x, side="right").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .schema import FeatureSchema, as_category_strings

BINS = 10
QUANTILES = 101


def numeric_entry(values: pd.Series, bins: int = BINS) -> dict[str, Any]:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    present = numbers.dropna().to_numpy()
    quantiles = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]) if present.size else []
    edges = np.unique(quantiles)
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return {
        "kind": "numeric",
        "edges": [float(edge) for edge in edges],
        "frequencies": [float(count) / max(present.size, 1) for count in counts],
        "quantiles": [float(value) for value in np.quantile(present, np.linspace(0, 1, QUANTILES))]
        if present.size
        else [],
        "missing": float(numbers.isna().mean()) if len(numbers) else 0.0,
    }


def categorical_entry(values: pd.Series) -> dict[str, Any]:
    text = as_category_strings(values)
    shares = text.dropna().value_counts(normalize=True).sort_index()
    return {
        "kind": "categorical",
        "frequencies": {str(key): float(share) for key, share in shares.items()},
        "unseen": 0.0,
        "missing": float(text.isna().mean()) if len(text) else 0.0,
    }


def build_profile(
    features: pd.DataFrame, predictions: Any, schema: FeatureSchema
) -> dict[str, Any]:
    """Profile of the model's input frame (schema columns) and of its predictions."""
    entries = {
        feature.name: numeric_entry(features[feature.name])
        if feature.kind == "numeric"
        else categorical_entry(features[feature.name])
        for feature in schema.features
    }
    predicted = pd.Series(np.asarray(predictions))
    if schema.task == "classification":
        prediction = categorical_entry(predicted)
    else:
        prediction = numeric_entry(predicted)
    return {"rows": len(features), "features": entries, "prediction": prediction}
