"""The offline drift check: a CSV of new data against a model's training profile.

The reference is the model the alias names in the registry, or an exported model
directory. The CSV has the raw data's columns; the target and any other extra column
are ignored. Missing values and categories training never saw are drift, not errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifact import PROFILE, LoadedModel, load
from ..config import Settings
from ..errors import DataError, ProjectError
from ..inference import Inputs
from ..schema import FeatureSchema, read_csv, to_model_frame
from .drift import DriftReport, Thresholds, compare

if TYPE_CHECKING:
    import pandas as pd


def reference_model(
    settings: Settings, model_dir: Path | None, alias: str
) -> tuple[LoadedModel, dict[str, Any]]:
    """The model the alias (or the directory) names, and its training data's profile."""
    if model_dir is not None and not model_dir.is_dir():
        raise ProjectError(f"{model_dir}: no such model directory (make export-model writes one)")
    try:
        model = load(settings, model_dir, alias)
    except FileNotFoundError as error:
        raise ProjectError(str(error)) from error
    if model.profile is None:
        raise ProjectError(f"{model.source} has no drift profile ({PROFILE})")
    return model, model.profile


def read_current(path: Path, schema: FeatureSchema) -> pd.DataFrame:
    """The schema's columns of the CSV, typed as the model takes them."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    frame = read_csv(path, schema.categorical)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise DataError(f"{path}: feature column(s) {missing} missing")
    if frame.empty:
        raise DataError(f"{path}: no rows")
    for name in schema.numeric:
        present = frame[name].dropna()
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.isna().any():
            bad = present[numbers.isna()].iloc[0]
            raise DataError(f"{path}: column {name!r} must be numeric, found {bad!r}")
    return to_model_frame(frame, schema)


def run_check(
    settings: Settings,
    current: Path,
    model_dir: Path | None,
    alias: str,
    thresholds: Thresholds,
) -> tuple[DriftReport, LoadedModel]:
    model, profile = reference_model(settings, model_dir, alias)
    frame = read_current(current, model.schema)
    predictions, _ = model.predictor.predict(Inputs.from_frame(frame, model.schema))
    columns = {name: frame[name].to_numpy() for name in model.schema.names}
    return compare(profile, columns, np.asarray(predictions), thresholds), model
