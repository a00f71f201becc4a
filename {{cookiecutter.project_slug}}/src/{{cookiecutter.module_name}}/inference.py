"""The trained pipeline as plain numpy arrays, for serving without its libraries.

`compiler.py` (run at training, where scikit-learn, xgboost and lightgbm are installed)
writes the fitted imputers, scaler, one-hot encoder and model as arrays in one `.npz`
file, and keeps them only if they reproduce the pipeline. `CompiledModel` (run by the
server) predicts from those arrays with numpy only: it starts in a fraction of the time
scikit-learn takes to import, needs a fraction of the install, and answers one row in
microseconds.

Models: "linear" (features @ coef + intercept) or trees, either averaged (a forest) or
summed onto a baseline (boosting). Trees are walked level by level, all at once.
`float32_features`: the library compares features rounded to float32 (scikit-learn's
forests, XGBoost). `float32_sums`: it adds the leaves in float32, tree after tree
(XGBoost); so do we, in the same order, and the sums match to the bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # the server has no pandas; frames come only from training and drift
    import pandas as pd

    from .schema import FeatureSchema

FORMAT_VERSION = 2
# Rows walked through the trees at once: small enough for the node arrays to stay in cache.
BLOCK_ROWS = 1024


# numpy arrays of any shape and type (older numpy stubs require the arguments)
Array = npt.NDArray[Any]


class CompiledModelError(ValueError):
    """A compiled model file this code cannot read."""


@dataclass
class Inputs:
    """A batch as the model sees it before preprocessing.

    numeric: float64 (rows x numeric features, in schema order), NaN where missing.
    categorical: one list per categorical feature (schema order) of its values as text,
    None where missing.
    """

    numeric: Array
    categorical: list[list[str | None]]

    @property
    def rows(self) -> int:
        return len(self.categorical[0]) if self.categorical else int(self.numeric.shape[0])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, schema: FeatureSchema) -> Inputs:
        """A model frame (`schema.to_model_frame`) as the server parses a request."""
        rows, names = len(frame), schema.numeric
        numeric = frame[names].to_numpy(dtype=float).reshape(rows, len(names))
        categorical = [
            [None if value is None or value != value else str(value) for value in frame[name]]
            for name in schema.categorical
        ]
        return cls(numeric, categorical)


@dataclass
class CompiledModel:
    meta: dict[str, Any]
    arrays: dict[str, Array]

    def __post_init__(self) -> None:
        # value -> one-hot column, per categorical feature (the encoder's own order)
        self._codes = [
            {label: code for code, label in enumerate(labels)}
            for labels in self.meta.get("categories", [])
        ]
        # Trees are stored deepest first: level d walks only the trees deeper than d.
        depths = self.arrays.get("depths", np.zeros(0, dtype=np.int64))
        self._active = [
            int(np.count_nonzero(depths > level)) for level in range(int(depths.max(initial=0)))
        ]

    @property
    def classes(self) -> list[Any] | None:
        classes = self.meta["classes"]
        return None if classes is None else list(classes)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"meta": np.array(json.dumps(self.meta)), **self.arrays}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> CompiledModel:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta.get("format") != FORMAT_VERSION:
                raise CompiledModelError(
                    f"{path}: format {meta.get('format')}, expected {FORMAT_VERSION}: retrain"
                )
            arrays = {name: stored[name] for name in stored.files if name != "meta"}
        return cls(meta, arrays)

    def features(self, inputs: Inputs) -> Array:
        """Impute and scale the numbers, one-hot encode the categories (ColumnTransformer)."""
        blocks = []
        if self.meta["numeric"]:
            numbers = np.where(np.isnan(inputs.numeric), self.arrays["median"], inputs.numeric)
            blocks.append((numbers - self.arrays["mean"]) / self.arrays["scale"])
        for values, index, missing in zip(
            inputs.categorical, self._codes, self.meta["missing_codes"], strict=True
        ):
            # missing takes the imputer's fill category; unknown stays -1 (all zeros)
            codes = np.array(
                [missing if value is None else index.get(value, -1) for value in values]
            )
            onehot = np.zeros((len(values), len(index)))
            known = codes >= 0  # else an unknown category: all zeros, as the encoder does
            onehot[np.flatnonzero(known), codes[known]] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks) if len(blocks) > 1 else np.asarray(blocks[0])

    def raw(self, features: Array) -> Array:
        """The model's output before its link function: (rows x outputs)."""
        if self.meta["model"] == "linear":
            return np.asarray(features @ self.arrays["coef"].T + self.arrays["intercept"])
        if self.meta["float32_features"]:
            features = features.astype(np.float32).astype(np.float64)
        blocks = [
            self._leaf_sums(features[start : start + BLOCK_ROWS])
            for start in range(0, features.shape[0], BLOCK_ROWS)
        ]
        total = np.vstack(blocks) if len(blocks) > 1 else blocks[0]
        if self.meta["trees"] == "average":
            return np.asarray(total / self.arrays["roots"].size)
        return total

    def leaves(self, features: Array) -> Array:
        """Walk every tree at once, one level per step: the leaf each row reaches per tree."""
        arrays = self.arrays
        rows, width = features.shape
        flat = features.ravel()
        offsets = (np.arange(rows, dtype=np.int64) * width)[:, None]
        missing = bool(np.isnan(flat).any())
        node = np.tile(arrays["roots"], (rows, 1))
        for active in self._active:
            walking = node[:, :active]
            values = flat[offsets + arrays["feature"][walking]]
            right = values > arrays["threshold"][walking]  # leaves: threshold +inf, stay put
            if missing:
                right = np.where(np.isnan(values), ~arrays["missing_left"][walking], right)
            node[:, :active] = arrays["children"][2 * walking + right]  # left, right per node
        return node

    def _leaf_sums(self, features: Array) -> Array:
        """The trees' leaf values added up per row (rows x outputs), the baseline included."""
        leaves = self.arrays["value"][self.leaves(features)]  # rows x trees x outputs
        if self.meta["trees"] == "average":
            return np.asarray(leaves.sum(axis=1))
        baseline = self.arrays["baseline"]
        if not self.meta["float32_sums"]:
            return np.asarray(leaves.sum(axis=1) + baseline)
        # cumsum adds one tree after the other, in the booster's order: XGBoost's float32 sum
        ordered = leaves[:, self.arrays["order"]].astype(np.float32)
        start = np.broadcast_to(baseline.astype(np.float32), (leaves.shape[0], 1, baseline.size))
        running = np.cumsum(np.concatenate([start, ordered], axis=1), axis=1, dtype=np.float32)
        return np.asarray(running[:, -1], dtype=np.float64)

    def predict(self, inputs: Inputs) -> tuple[Array, Array | None]:
        """(predictions, class probabilities or None) for a batch."""
        raw = self.raw(self.features(inputs))
        link = self.meta["link"]
        if link == "identity":
            return raw[:, 0], None
        if link == "logit":
            margin = raw[:, 0] * self.meta.get("link_scale", 1.0)
            if self.meta["float32_sums"]:  # as XGBoost computes it
                positive = np.float32(1) / (np.float32(1) + np.exp(-margin.astype(np.float32)))
            else:
                positive = np.exp(-np.logaddexp(0.0, -margin))  # 1 / (1 + e^-x), no overflow
            probabilities = np.column_stack([1.0 - positive, positive]).astype(np.float64)
        elif link == "softmax":
            values = raw.astype(np.float32) if self.meta["float32_sums"] else raw
            shifted = np.exp(values - values.max(axis=1, keepdims=True))
            probabilities = np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=float)
        else:  # "proba": the forest's averaged class shares
            probabilities = raw
        classes = np.asarray(self.meta["classes"])
        return classes[np.argmax(probabilities, axis=1)], probabilities
