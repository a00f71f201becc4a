"""Labels offline: bulk labels joined with the log, compare-live's decision, collect."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.module_name }}.collect import collect
from {{ cookiecutter.module_name }}.config import (
    Params,
    load_params,
)
from {{ cookiecutter.module_name }}.errors import DataError
from {{ cookiecutter.module_name }}.ground_truth import (
    by_model,
    compare,
    gate_misses,
    import_labels,
    one_sided_p,
)
from {{ cookiecutter.module_name }}.prediction_store import (
    Labelled,
    PredictionStore,
    Stored,
)
from {{ cookiecutter.module_name }}.schema import (
    FeatureSchema,
    infer_schema,
)


@pytest.fixture
def schema(frame: pd.DataFrame) -> FeatureSchema:
    return infer_schema(frame, "label", "classification")


@pytest.fixture
def store(tmp_path: Path) -> PredictionStore:
    return PredictionStore(f"sqlite:///{tmp_path / 'store.db'}")


def served(row_id: str, prediction: str, variant: str = "champion", version: str = "1") -> Stored:
    inputs = {"size": 50.0, "colour": "red", "noise": 0.1}
    return Stored(row_id, 1.0e9, "m", version, variant, inputs, prediction, [0.3, 0.7])


def write_log(directory: Path, rows: list[Stored]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "id": row.id, "ts": "2026-12-02T15:40:01.112Z", "model": row.model,
                "version": row.version, "variant": row.variant, "inputs": row.inputs,
                "prediction": row.prediction, "probabilities": row.probabilities,
            }
        )
        for row in rows
    ]  # fmt: skip
    (directory / "predictions-1.jsonl").write_text("\n".join(lines) + "\n{cut sh", "utf-8")


def test_bulk_labels_are_joined_with_the_log_and_bad_rows_set_aside(
    tmp_path: Path, store: PredictionStore, schema: FeatureSchema
) -> None:
    write_log(tmp_path / "log", [served(f"id-{n}", "yes") for n in range(5)])
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "prediction_id,actual\nid-0,yes\nid-1,no\nid-2,maybe\nunknown,yes\nid-0,no\n,yes\n",
        encoding="utf-8",
    )
    rejects = tmp_path / "labels.rejects.csv"
    result = import_labels(store, labels, tmp_path / "log", schema, rejects)
    assert (result.recorded, result.duplicate, result.rejected) == (2, 1, 3)
    refused = pd.read_csv(rejects, keep_default_na=False)
    assert refused["line"].tolist() == [4, 5, 7]
    fields = [reason.split(":")[0] for reason in refused["reason"]]
    assert fields == ["actual", "prediction_id", "prediction_id"]
    assert "'maybe' is not a class" in refused["reason"][0]
    labelled = {row.prediction.id: row.actual for row in store.labelled()}
    assert labelled == {"id-0": "yes", "id-1": "no"}  # the first label of id-0 kept

    labels.write_text("id,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="column 'prediction_id' not found"):
        import_labels(store, labels, tmp_path / "log", schema, rejects)


def window(accuracy: dict[str, float], rows: int, seed: int = 0) -> list[Labelled]:
    """Labelled rows of both variants, each right with the given probability."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    made = []
    for variant, share in accuracy.items():
        version = "1" if variant == "champion" else "2"
        for n in range(rows):
            right = rng.random() < share
            made.append(
                Labelled(
                    served(f"{variant}-{n}", "yes", variant, version),
                    "yes" if right else "no",
                    2.0e9,
                )
            )
    return made


def test_compare_live_promotes_only_beyond_noise(schema: FeatureSchema) -> None:
    clear = compare(window({"champion": 0.80, "challenger": 0.92}, 600), schema, 100)
    assert clear.promote
    assert clear.p_value is not None
    assert clear.p_value < 0.001
    assert clear.challenger is not None
    assert clear.challenger[0] == "2"

    close = compare(window({"champion": 0.85, "challenger": 0.86}, 300), schema, 100)
    assert not close.promote
    assert "no difference beyond noise" in close.reason

    worse = compare(window({"champion": 0.9, "challenger": 0.7}, 300), schema, 100)
    assert not worse.promote

    few = compare(window({"champion": 0.5, "challenger": 1.0}, 50), schema, 100)
    assert not few.promote
    assert "under FEEDBACK_MIN_ROWS (100)" in few.reason
    alone = compare(window({"champion": 0.9}, 300), schema, 100)
    assert "no labelled challenger rows" in alone.reason


def test_check_live_names_the_versions_below_the_gate(schema: FeatureSchema) -> None:
    rows = window({"champion": 0.95, "challenger": 0.6}, 300)
    groups = by_model(rows, schema)
    gate = {"accuracy": 0.85, "roc_auc": 0.9}  # roc_auc is not computed live: not checked
    (miss,) = gate_misses(groups, "classification", gate, 100)
    assert miss.startswith("v2 challenger: accuracy = 0.5")  # 0.6 expected, drawn at random
    assert "the gate asks for at least 0.85" in miss
    assert gate_misses(groups, "classification", gate, 1000) == []  # too few rows: no verdict


def test_the_test_is_calibrated() -> None:
    # Equal error rates: p-values are uniform, so about 5% fall under 0.05.
    rng = random.Random(1)  # noqa: S311 - test data, not secrets
    draws = [
        one_sided_p(
            [float(rng.random() < 0.2) for _ in range(400)],
            [float(rng.random() < 0.2) for _ in range(400)],
        )
        for _ in range(400)
    ]
    share = sum(p < 0.05 for p in draws) / len(draws)
    assert 0.02 < share < 0.09, share


@pytest.fixture
def params(
    tmp_path: Path, frame: pd.DataFrame, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> Params:
    monkeypatch.chdir(tmp_path)
    params = load_params(project_root / "params.yaml")
    params.task = "classification"
    params.data.target = "label"
    params.data.path = Path("train.csv")
    params.data.production = Path("data/production.csv")
    params.data.entity_key = params.data.timestamp = None  # served rows carry neither
    frame.to_csv(params.data.path, index=False)
    return params


def test_collect_appends_new_labelled_rows_once(params: Params, store: PredictionStore) -> None:
    rows = [served(f"id-{n}", "yes") for n in range(4)]
    omitted = Stored("no-inputs", 1.0e9, "m", "1", "champion", None, "yes", None)
    renamed = Stored("renamed", 1.0e9, "m", "1", "champion", {"size": 1.0}, "yes", None)
    store.add_predictions([*rows, omitted, renamed])
    store.add_labels([("id-0", "yes"), ("id-1", "no"), ("no-inputs", "no"), ("renamed", "no")])
    rejects = Path("rejects.csv")

    first = collect(params, store, rejects)
    assert (first.added, first.total, first.rejected) == (2, 2, 2)
    written = pd.read_csv(params.data.production)
    assert list(written.columns) == ["prediction_id", "size", "colour", "noise", "label"]
    assert written["prediction_id"].tolist() == ["id-0", "id-1"]
    assert written["label"].tolist() == ["yes", "no"]
    reasons = pd.read_csv(rejects).set_index("prediction_id")["reason"]
    assert "inputs not logged" in reasons["no-inputs"]
    assert "missing ['colour', 'noise']" in reasons["renamed"]

    store.add_labels([("id-2", "yes")])
    second = collect(params, store, rejects)
    assert (second.added, second.total) == (1, 3)
    assert pd.read_csv(params.data.production)["prediction_id"].tolist() == ["id-0", "id-1", "id-2"]
    assert collect(params, store, rejects).added == 0


def test_collect_writes_nothing_when_the_data_would_fail_prepare(
    params: Params, store: PredictionStore
) -> None:
    params.data.min_rows = 10_000
    store.add_predictions([served("id-0", "yes")])
    store.add_labels([("id-0", "yes")])
    with pytest.raises(DataError, match=r"only 121 rows; data\.min_rows asks for 10000"):
        collect(params, store, Path("rejects.csv"))
    assert not params.data.production.exists()
