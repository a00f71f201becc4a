"""Loading a trained model: a local MLflow model directory, or any MLflow model URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_model_dir(path: Path) -> Any:
    """The scikit-learn pipeline of an MLflow model directory written by `train`.

    Reads the skops file the MLmodel names, with the trusted types recorded at training,
    without importing MLflow: seconds faster on every stage and server start. The
    directory is this project's own training output, so its recorded types are trusted.
    """
    mlmodel = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
    flavor = mlmodel["flavors"]["sklearn"]
    if flavor.get("serialization_format") != "skops":
        return load_model_uri(str(path))
    import skops.io

    trusted = flavor.get("skops_trusted_types") or []
    return skops.io.load(path / flavor["pickled_model"], trusted=trusted)


def load_model_uri(uri: str) -> Any:
    """The scikit-learn pipeline behind an MLflow URI (models:/name@alias, runs:/…, a path)."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(uri)
