"""What `feast apply` registers, built from the feature schema `prepare` inferred.

Add a feature by adding a column to the data: `dvc repro` infers it, registers it and
loads it into the online store. The objects themselves: src/{{ cookiecutter.module_name }}/features.py.
"""

from pathlib import Path

from {{ cookiecutter.module_name }}.config import load_params
from {{ cookiecutter.module_name }}.features import StoreSettings, definitions
from {{ cookiecutter.module_name }}.schema import FeatureSchema

ROOT = Path(__file__).resolve().parent.parent

entity, source, feature_view, feature_service = definitions(
    load_params(ROOT / "params.yaml"),
    FeatureSchema.load(ROOT / "data/processed/schema.json"),
    StoreSettings().feature_source_url,
)
