"""Drift statistics: planted shifts are found on exactly the shifted columns, and samples
of the training distribution seldom raise an alert."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from {{ cookiecutter.module_name }}.monitoring.drift import (
    Thresholds,
    compare,
    kolmogorov_survival,
    ks_test,
    numeric_shares,
    psi,
    psi_noise,
)
from {{ cookiecutter.module_name }}.profile import (
    categorical_entry,
    numeric_entry,
)

NUMERIC = ["height", "weight", "income", "age", "score"]
CATEGORICAL = ["colour", "plan"]


def population(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "height": rng.normal(170, 10, rows),
            "weight": rng.normal(70, 12, rows),
            "income": rng.lognormal(10, 0.5, rows),
            "age": rng.uniform(18, 90, rows),
            "score": rng.gamma(2.0, 2.0, rows),
            "colour": rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2]),
            "plan": rng.choice(["basic", "plus", "pro", "team"], rows),
        }
    )
    frame["plan"] = frame["plan"].where(rng.random(rows) > 0.05)  # 5% missing in training
    return frame


def profile_of(frame: pd.DataFrame) -> dict[str, Any]:
    features = {name: numeric_entry(frame[name]) for name in NUMERIC}
    features |= {name: categorical_entry(frame[name]) for name in CATEGORICAL}
    return {"rows": len(frame), "features": features}


def columns_of(frame: pd.DataFrame) -> dict[str, Any]:
    return {name: frame[name].to_numpy() for name in NUMERIC + CATEGORICAL}


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    return profile_of(population(20_000, np.random.default_rng(0)))


def shifted(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = population(rows, rng)
    frame["height"] += 10  # the mean moves one standard deviation
    frame["income"] = frame["income"].mean() + (frame["income"] - frame["income"].mean()) * 2.5
    frame.loc[rng.random(rows) < 0.3, "colour"] = "purple"  # a category training never saw
    frame.loc[rng.random(rows) < 0.3, "age"] = np.nan  # nulls where training had none
    return frame


@pytest.mark.parametrize("rows", [500, 5000])
def test_planted_shifts_are_flagged_on_exactly_those_columns(
    profile: dict[str, Any], rows: int
) -> None:
    report = compare(profile, columns_of(shifted(rows, seed=1)))
    assert sorted(report.drifted) == ["age", "colour", "height", "income"]
    assert report.detected
    by_name = {column.name: column for column in report.features}
    assert by_name["colour"].unseen_examples == ["purple"]
    assert by_name["colour"].unseen_share == pytest.approx(0.3, abs=0.05)
    assert by_name["age"].missing_current == pytest.approx(0.3, abs=0.05)
    assert by_name["age"].missing_reference == 0.0
    assert by_name["plan"].missing_reference == pytest.approx(0.05, abs=0.01)
    for name in ("weight", "score", "plan"):
        assert by_name[name].status == "ok", by_name[name]


def test_ks_runs_on_small_samples_only(profile: dict[str, Any]) -> None:
    small = compare(profile, columns_of(shifted(500, seed=2)))
    large = compare(profile, columns_of(shifted(5000, seed=2)))
    assert all(c.ks_pvalue is not None for c in small.features if c.kind == "numeric")
    assert all(c.ks_pvalue is None for c in large.features)
    assert all(c.ks_pvalue is None for c in small.features if c.kind == "categorical")


def test_a_small_shift_only_ks_sees_is_flagged_on_small_samples(profile: dict[str, Any]) -> None:
    frame = population(1000, np.random.default_rng(3))
    frame["weight"] += 4  # a third of a standard deviation: PSI stays low, KS rejects
    column = next(c for c in compare(profile, columns_of(frame)).features if c.name == "weight")
    assert column.psi < Thresholds().psi_alert
    assert column.ks_pvalue is not None
    assert column.ks_pvalue < 1e-4
    assert column.status == "alert"


@pytest.mark.parametrize("rows", [50, 100, 300, 1000, 5000])
def test_samples_of_the_training_distribution_seldom_alert(
    profile: dict[str, Any], rows: int
) -> None:
    repetitions = 100
    alerts = [
        compare(profile, columns_of(population(rows, np.random.default_rng(100 + seed)))).detected
        for seed in range(repetitions)
    ]
    assert sum(alerts) <= 0.05 * repetitions, f"{sum(alerts)} of {repetitions} checks alerted"


@pytest.mark.parametrize(
    "values",
    [
        np.where(np.random.default_rng(9).random(5000) < 0.6, 0.0, 3.0),  # zero-inflated
        np.random.default_rng(10).integers(0, 5, 5000).astype(float),  # few distinct values
        np.random.default_rng(11).normal(0, 1, 5000),
    ],
    ids=["zero-inflated", "integers", "continuous"],
)
def test_profile_bins_match_how_values_are_binned(values: Any) -> None:
    """Ties at an edge: the profile and a new sample must put them in the same bin."""
    entry = numeric_entry(pd.Series(values))
    bins = np.searchsorted(np.asarray(entry["edges"]), values, side="right")
    expected = np.bincount(bins, minlength=len(entry["edges"]) + 1) / values.size
    assert entry["frequencies"] == pytest.approx(expected.tolist())
    same = np.random.default_rng(12).permutation(values)[:2000]
    reference, current, _ = numeric_shares(entry, same)
    assert psi(reference, current, values.size, same.size) < 0.01


def test_ks_statistic_and_pvalue_agree_with_scipy() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0, 1, 20_000)
    quantiles = np.asarray(numeric_entry(pd.Series(reference))["quantiles"])
    for shift in (0.0, 0.1, 0.3):
        current = rng.normal(shift, 1, 800)
        statistic, pvalue = ks_test(quantiles, current, reference.size)
        exact = stats.ks_2samp(reference, current)
        assert statistic == pytest.approx(exact.statistic, abs=0.01)
        assert pvalue == pytest.approx(exact.pvalue, abs=0.05 + 0.5 * exact.pvalue)


def test_psi_noise_level_is_what_sampling_alone_exceeds() -> None:
    rng = np.random.default_rng(8)
    reference = pd.Series(rng.normal(0, 1, 2000))
    entry = numeric_entry(reference)
    rows, alpha = 150, 0.05
    scores = []
    for _ in range(400):
        expected, current, _ = numeric_shares(entry, rng.normal(0, 1, rows))
        scores.append(psi(expected, current, reference.size, rows))
    level = psi_noise(expected.size, rows, reference.size, alpha)
    exceeded = np.mean(np.asarray(scores) > level)
    assert 0.01 <= exceeded <= 0.1, (level, exceeded)


def test_kolmogorov_distribution() -> None:
    for x in (0.5, 1.0, 1.36, 1.63, 2.0):
        assert kolmogorov_survival(x) == pytest.approx(stats.kstwobign.sf(x), abs=1e-6)


def test_psi_is_zero_for_equal_shares_and_matches_its_formula() -> None:
    shares = np.array([0.2, 0.3, 0.5, 0.0])
    assert psi(shares, shares, 1000, 100) == 0.0  # a bin empty on both sides adds nothing
    current = np.array([0.3, 0.3, 0.4, 0.0])
    expected = 0.1 * np.log(0.3 / 0.2) + (-0.1) * np.log(0.4 / 0.5)
    assert psi(shares, current, 1000, 100) == pytest.approx(expected)
    # a bin empty on one side counts as half a row of that side
    one_sided = psi(np.array([1.0, 0.0]), np.array([0.5, 0.5]), 1000, 10)
    assert one_sided == pytest.approx(-0.5 * np.log(0.5) + (0.5 - 0.0005) * np.log(0.5 / 0.0005))


def test_prediction_drift(profile: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    predictions = rng.choice(["yes", "no"], 20_000, p=[0.3, 0.7])
    with_predictions = {**profile, "prediction": categorical_entry(pd.Series(predictions))}
    columns = columns_of(population(1000, rng))
    same = compare(with_predictions, columns, rng.choice(["yes", "no"], 1000, p=[0.3, 0.7]))
    assert same.prediction is not None
    assert same.prediction.status == "ok"
    assert not same.detected
    flipped = compare(with_predictions, columns, rng.choice(["yes", "no"], 1000, p=[0.8, 0.2]))
    assert flipped.prediction is not None
    assert flipped.prediction.status == "alert"
    assert flipped.detected
    assert flipped.drifted == []  # the inputs did not move


def test_thresholds_move_the_verdict(profile: dict[str, Any]) -> None:
    frame = population(5000, np.random.default_rng(6))
    frame["height"] += 4
    lenient = compare(profile, columns_of(frame), thresholds=Thresholds(psi_alert=5.0))
    strict = compare(profile, columns_of(frame), thresholds=Thresholds(psi_alert=0.05))
    assert "height" not in lenient.drifted
    assert "height" in strict.drifted


def test_a_profiled_feature_without_values_is_an_error(profile: dict[str, Any]) -> None:
    columns = columns_of(population(100, np.random.default_rng(7)))
    del columns["plan"]
    with pytest.raises(KeyError, match="plan"):
        compare(profile, columns)
