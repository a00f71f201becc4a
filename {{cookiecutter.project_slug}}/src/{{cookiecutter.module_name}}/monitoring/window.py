"""The server's latest inputs and predictions, in arrays allocated once.

Memory is fixed by the window size and the schema, whatever the traffic: each batch
overwrites the oldest rows. Categories are kept as codes into the schema's categories.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inference import Array, Inputs
from ..schema import FeatureSchema

MISSING, UNSEEN = -1, -2
UNSEEN_LABEL = "<unseen>"


class RollingWindow:
    def __init__(self, schema: FeatureSchema, size: int) -> None:
        self.size = size
        self.numeric_names = schema.numeric
        self.categorical_names = schema.categorical
        categories = [
            feature.categories or [] for feature in schema.features if feature.kind == "categorical"
        ]
        self.codes = [{label: code for code, label in enumerate(labels)} for labels in categories]
        # code -> label, with UNSEEN (-2) and MISSING (-1) indexing the last two entries
        self.labels = [
            np.array([*labels, UNSEEN_LABEL, None], dtype=object) for labels in categories
        ]
        self.classes = [str(label) for label in schema.target.classes or []]
        self.class_codes = {label: code for code, label in enumerate(self.classes)}
        self.numeric = np.full((size, len(self.numeric_names)), np.nan)
        self.categorical = np.full((size, len(self.categorical_names)), MISSING, dtype=np.int32)
        self.predictions = np.full(size, np.nan)
        self.rows = 0
        self.position = 0

    def add(self, inputs: Inputs, predictions: Array) -> None:
        count = min(inputs.rows, self.size)
        start = inputs.rows - count  # a batch larger than the window keeps its last rows
        slots = (self.position + np.arange(count)) % self.size
        self.numeric[slots] = inputs.numeric[start:]
        for index, (values, codes) in enumerate(zip(inputs.categorical, self.codes, strict=True)):
            self.categorical[slots, index] = [
                MISSING if value is None else codes.get(value, UNSEEN) for value in values[start:]
            ]
        recent = predictions[start:]
        if self.classes:
            self.predictions[slots] = [self.class_codes.get(str(label), -1) for label in recent]
        else:
            self.predictions[slots] = recent
        self.position = int((self.position + count) % self.size)
        self.rows = min(self.size, self.rows + count)

    def columns(self) -> dict[str, Array]:
        """A copy of the rows held, one array per feature (numbers, or labels with None)."""
        columns: dict[str, Array] = {
            name: self.numeric[: self.rows, index].copy()
            for index, name in enumerate(self.numeric_names)
        }
        for index, name in enumerate(self.categorical_names):
            columns[name] = self.labels[index][self.categorical[: self.rows, index]]
        return columns

    def predicted(self) -> Array:
        values = self.predictions[: self.rows].copy()
        if not self.classes:
            return values
        labels: list[Any] = [*self.classes, None]  # code -1: a label the schema did not list
        named: Array = np.array(labels, dtype=object)[values.astype(int)]
        return named
