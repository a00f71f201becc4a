"""The feature schema: the one description of the model's inputs.

Inferred from the data at `prepare`, saved next to the split data and inside the model.
Training selects and types its columns with it, the API builds its request model from
it and drift is measured on its features.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

from .config import Task
from .errors import DataError

if TYPE_CHECKING:  # pandas is for training; the server reads schemas without it
    import pandas as pd

FeatureKind = Literal["numeric", "categorical"]
Label = int | float | str


class Feature(BaseModel):
    name: str
    kind: FeatureKind
    nullable: bool
    minimum: float | None = None  # numeric only, as seen in the data
    maximum: float | None = None
    categories: list[str] | None = None  # categorical only, sorted


class Target(BaseModel):
    name: str
    classes: list[Label] | None = None  # classification
    minimum: float | None = None  # regression
    maximum: float | None = None


class FeatureSchema(BaseModel):
    task: Task
    target: Target
    features: list[Feature]

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def numeric(self) -> list[str]:
        return [feature.name for feature in self.features if feature.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [feature.name for feature in self.features if feature.kind == "categorical"]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> FeatureSchema:
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


def is_numeric(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def as_category_strings(series: pd.Series) -> pd.Series:
    """Categories are compared as text; missing stays missing (NaN)."""
    import pandas as pd

    objects = series.astype(object)
    text = objects.map(str).to_numpy(dtype=object)
    # object dtype explicitly: pandas 3 would infer its own string dtype otherwise
    values = np.where(objects.isna().to_numpy(), np.nan, text)
    return pd.Series(values, index=series.index, name=series.name, dtype=object)


def _label(value: object) -> Label:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int | float | str):
        return value
    return str(value)


def infer_schema(
    frame: pd.DataFrame,
    target: str,
    task: Task,
    categorical: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> FeatureSchema:
    """Numeric columns stay numeric unless listed in `categorical`; the rest are categories.

    Every column but the target and those in `exclude` (ids, times) is a feature.
    """
    forced = set(categorical)
    skipped = {target, *exclude}
    features = []
    for name in frame.columns:
        if name in skipped:
            continue
        column = frame[name]
        nullable = bool(column.isna().any())
        if is_numeric(column) and name not in forced:
            values = column.astype(float)
            features.append(
                Feature(
                    name=name,
                    kind="numeric",
                    nullable=nullable,
                    minimum=float(values.min()),
                    maximum=float(values.max()),
                )
            )
        else:
            categories = sorted(as_category_strings(column).dropna().unique())
            features.append(
                Feature(name=name, kind="categorical", nullable=nullable, categories=categories)
            )
    labels = frame[target].dropna()
    if task == "classification":
        goal = Target(name=target, classes=sorted({_label(value) for value in labels}, key=str))
    else:
        values = labels.astype(float)
        goal = Target(name=target, minimum=float(values.min()), maximum=float(values.max()))
    return FeatureSchema(task=task, target=goal, features=features)


def validate_frame(frame: pd.DataFrame, schema: FeatureSchema) -> list[str]:
    """What in `frame` breaks the schema, one message per column; empty when it fits."""
    import pandas as pd

    problems = []
    for feature in schema.features:
        if feature.name not in frame.columns:
            problems.append(f"column {feature.name!r} is missing")
            continue
        column = frame[feature.name]
        if not feature.nullable and column.isna().any():
            problems.append(
                f"column {feature.name!r} has {int(column.isna().sum())} missing value(s) "
                "but had none in training"
            )
        present = column.dropna()
        if feature.kind == "numeric":
            numbers = pd.to_numeric(present, errors="coerce")
            if numbers.isna().any():
                bad = present[numbers.isna()].iloc[0]
                problems.append(f"column {feature.name!r} must be numeric, found {bad!r}")
            elif not np.isfinite(numbers.astype(float)).all():
                problems.append(f"column {feature.name!r} has infinite values")
        else:
            unknown = sorted(set(as_category_strings(present)) - set(feature.categories or []))
            if unknown:
                problems.append(
                    f"column {feature.name!r} has unknown categories {unknown[:5]}; "
                    f"known: {(feature.categories or [])[:10]}"
                )
    return problems


def to_model_frame(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The model's input: schema columns in schema order, numbers as float, categories as text."""
    import pandas as pd

    columns = {}
    for feature in schema.features:
        column = frame[feature.name]
        if feature.kind == "numeric":
            columns[feature.name] = pd.to_numeric(column, errors="coerce").astype("float64")
        else:
            columns[feature.name] = as_category_strings(column)
    return pd.DataFrame(columns, index=frame.index)


def read_csv(path: Path, categorical: Iterable[str] = ()) -> pd.DataFrame:
    """Read a CSV keeping categorical columns as text (so '007' stays '007').

    A missing, empty or unparsable file is a DataError naming it, not pandas' traceback.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); a header row is needed")
    import pandas as pd

    try:
        return pd.read_csv(path, dtype=dict.fromkeys(categorical, "string"))
    except pd.errors.EmptyDataError as error:
        raise DataError(f"{path}: no header row (the file holds only blank lines)") from error
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV: {' '.join(str(error).split())}") from error
