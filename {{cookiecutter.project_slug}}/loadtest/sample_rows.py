"""Records for the load test, drawn from an exported model's own files.

`<MODEL_DIR>/extra_files/schema.json` says what the API accepts; `profile.json` says how
the training data was distributed (profile.py). Each feature is drawn on its own from
its training distribution: a number by inverse-CDF on the profile's quantiles, a category
by its training frequency, and null (only where the schema allows it) as often as it was
missing. So every record is one the API accepts, for any task and any CSV, and the
served traffic is distributed like the training data.

Standard library only: the load test runs without the project installed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SCHEMA = "extra_files/schema.json"
PROFILE = "extra_files/profile.json"


class MissingModelError(Exception):
    """The exported model, or its schema, is not where the load test looks."""


class RowSampler:
    def __init__(
        self, schema: dict[str, Any], profile: dict[str, Any] | None, seed: int | None = None
    ) -> None:
        self.features: list[dict[str, Any]] = schema["features"]
        self.entries: dict[str, Any] = (profile or {}).get("features", {})
        self.random = random.Random(seed)  # noqa: S311 - test data, not secrets

    @classmethod
    def from_model_dir(cls, model_dir: Path, seed: int | None = None) -> RowSampler:
        schema_file = model_dir / SCHEMA
        if not schema_file.is_file():
            raise MissingModelError(
                f"{schema_file} not found: the load test builds its requests from the exported "
                "model's schema and profile. Run `make pipeline export-model` first, or point "
                "MODEL_DIR at an exported model."
            )
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        profile_file = model_dir / PROFILE
        profile = (
            json.loads(profile_file.read_text(encoding="utf-8"))
            if profile_file.is_file()
            else None  # uniform within the schema's ranges instead
        )
        return cls(schema, profile, seed)

    @property
    def source(self) -> str:
        return "training profile" if self.entries else "schema ranges (no profile.json)"

    def record(self) -> dict[str, Any]:
        return {feature["name"]: self.value(feature) for feature in self.features}

    def records(self, count: int) -> list[dict[str, Any]]:
        return [self.record() for _ in range(count)]

    def value(self, feature: dict[str, Any]) -> Any:
        entry = self.entries.get(feature["name"]) or {}
        if feature["nullable"] and self.random.random() < float(entry.get("missing", 0.0)):
            return None
        if feature["kind"] == "numeric":
            return self.number(feature, entry.get("quantiles") or [])
        return self.category(feature, entry.get("frequencies") or {})

    def number(self, feature: dict[str, Any], quantiles: list[float]) -> float | None:
        if not quantiles:
            low, high = feature.get("minimum"), feature.get("maximum")
            if low is None or high is None:  # never seen a value: null is all it accepts
                return None
            return float(f"{self.random.uniform(low, high):.6g}")
        # inverse CDF: a uniform draw between two neighbouring quantiles, linearly
        value = quantiles[0]
        if len(quantiles) > 1:
            position = self.random.random() * (len(quantiles) - 1)
            index = min(int(position), len(quantiles) - 2)
            low, high = quantiles[index], quantiles[index + 1]
            value = low + (position - index) * (high - low)
        if all(float(q).is_integer() for q in quantiles):  # counts, ages, codes stay whole
            return float(round(value))
        return float(f"{value:.6g}")

    def category(self, feature: dict[str, Any], frequencies: dict[str, float]) -> str | None:
        known: list[str] = feature.get("categories") or []
        seen = [(name, share) for name, share in frequencies.items() if name in known and share > 0]
        if not seen:
            return self.random.choice(known) if known else None
        names = [name for name, _ in seen]
        return str(self.random.choices(names, weights=[share for _, share in seen])[0])
