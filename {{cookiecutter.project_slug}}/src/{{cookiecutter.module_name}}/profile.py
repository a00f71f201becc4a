"""The training profile: how the training data and predictions were distributed.

Logged with every model; the load test draws its records from it, and drift detection
(where the project has it) compares live or new data against it.

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

from .schema import FeatureSchema

BINS = 10
QUANTILES = 101


def sorted_quantiles(ordered: Any, probabilities: Any) -> Any:
    """np.quantile's default (linear) on already sorted values, without another pass."""
    positions = np.asarray(probabilities) * (ordered.size - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, ordered.size - 1)
    return ordered[low] + (positions - low) * (ordered[high] - ordered[low])


def numeric_entry(values: pd.Series, bins: int = BINS) -> dict[str, Any]:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    ordered = np.sort(numbers.dropna().to_numpy())
    present = ordered.size
    edges: Any = (
        np.unique(sorted_quantiles(ordered, np.linspace(0, 1, bins + 1)[1:-1])) if present else []
    )
    below = np.searchsorted(ordered, edges, side="left")  # bin i holds edges[i-1] <= x < edges[i]
    counts = np.diff(np.concatenate([[0], below, [present]]))
    quantiles = sorted_quantiles(ordered, np.linspace(0, 1, QUANTILES)) if present else []
    return {
        "kind": "numeric",
        "edges": [float(edge) for edge in edges],
        "frequencies": [float(count) / max(present, 1) for count in counts],
        "quantiles": [float(value) for value in quantiles],
        "missing": float(numbers.isna().mean()) if len(numbers) else 0.0,
    }


def categorical_entry(values: pd.Series) -> dict[str, Any]:
    shares: dict[str, float] = {}
    present = int(values.count())
    # counted first, then as text (as `as_category_strings` compares them): few distinct values
    for value, count in values.value_counts(dropna=True).items():
        key = str(value.item() if isinstance(value, np.generic) else value)
        shares[key] = shares.get(key, 0.0) + float(count) / max(present, 1)
    return {
        "kind": "categorical",
        "frequencies": dict(sorted(shares.items())),
        "unseen": 0.0,
        "missing": float(values.isna().mean()) if len(values) else 0.0,
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
