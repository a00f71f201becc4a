"""Drift of new data against the training profile: PSI per feature, KS for numeric ones.

Works on plain numpy arrays so the server runs it without pandas or scipy: numeric
values as floats (NaN = missing), categorical values as text (None or NaN = missing).
The profile format is described in `profile.py`.

- PSI (population stability index) compares bin shares; missing values are a bin of
  their own and categories training never saw share an "unseen" bin.
- On small samples PSI is noisy (about (bins - 1) / rows even without drift), so a PSI
  counts only above its noise level too: the value sampling alone exceeds with
  probability `alpha` (PSI x effective rows is close to chi-square with bins - 1 degrees
  of freedom).
- The KS test runs only on samples of at most `ks_max_rows` rows: on larger ones it
  calls shifts significant that are far too small to matter.
- `alpha` is shared out over the columns tested (Bonferroni), so a sample drawn from the
  training distribution raises an alert in well under 5% of checks.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
Status = Literal["ok", "warn", "alert"]
# Reference quantiles with fewer distinct values than this describe a discrete
# feature, for which the KS test (built for continuous data) does not hold.
KS_MIN_DISTINCT = 20
UNSEEN_EXAMPLES = 5


@dataclass(frozen=True)
class Thresholds:
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    alpha: float = 0.01
    ks_max_rows: int = 1000


@dataclass
class ColumnDrift:
    name: str
    kind: str
    rows: int
    psi: float
    status: Status
    bins: int
    missing_reference: float
    missing_current: float
    unseen_share: float = 0.0
    unseen_examples: list[str] = field(default_factory=list)
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    psi_noise: float = 0.0  # the PSI sampling alone exceeds with probability alpha / columns
    # The bins PSI compares, for the report's charts: a label and the two shares of each.
    labels: list[str] = field(default_factory=list)
    reference_shares: list[float] = field(default_factory=list)
    current_shares: list[float] = field(default_factory=list)


@dataclass
class DriftReport:
    rows: int
    reference_rows: int
    thresholds: Thresholds
    features: list[ColumnDrift]
    prediction: ColumnDrift | None = None

    @property
    def drifted(self) -> list[str]:
        """Features at the alert level."""
        return [column.name for column in self.features if column.status == "alert"]

    @property
    def detected(self) -> bool:
        """Any feature, or the predictions, at the alert level."""
        prediction_alert = self.prediction is not None and self.prediction.status == "alert"
        return bool(self.drifted) or prediction_alert

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drifted": self.drifted, "detected": self.detected}


def psi(reference: Array, current: Array, reference_rows: int, rows: int) -> float:
    """Population stability index of two share vectors over the same bins.

    A bin empty on one side only counts as half a row of that side (the finest share a
    sample of that size can show); a bin empty on both sides adds nothing.
    """
    used = (reference > 0) | (current > 0)
    expected = np.where(reference > 0, reference, 0.5 / max(reference_rows, 1))[used]
    actual = np.where(current > 0, current, 0.5 / max(rows, 1))[used]
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def numeric_shares(entry: Mapping[str, Any], values: Array) -> tuple[Array, Array, Array]:
    """(reference shares, current shares, present values); the last bin holds the missing."""
    numbers = np.asarray(values, dtype=float)
    present = numbers[~np.isnan(numbers)]
    edges = np.asarray(entry["edges"], dtype=float)
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    missing = numbers.size - present.size
    current = np.append(counts, missing) / max(numbers.size, 1)
    reference_missing = float(entry["missing"])
    reference = np.append(
        np.asarray(entry["frequencies"]) * (1 - reference_missing), reference_missing
    )
    return reference, current, present


def ks_test(quantiles: Array, present: Array, reference_rows: int) -> tuple[float, float]:
    """KS statistic and p-value of `present` against the CDF the quantiles describe.

    The reference CDF is linear between quantiles; the p-value is the asymptotic
    Kolmogorov one with Stephens' correction for the two samples' sizes.
    """
    probabilities = np.linspace(0.0, 1.0, quantiles.size)
    ordered = np.sort(present)
    n = ordered.size
    cdf = np.interp(ordered, quantiles, probabilities)
    above = np.arange(1, n + 1) / n - cdf
    below = cdf - np.arange(n) / n
    statistic = float(max(above.max(), below.max()))
    effective = n * reference_rows / (n + reference_rows)
    root = math.sqrt(effective)
    return statistic, kolmogorov_survival((root + 0.12 + 0.11 / root) * statistic)


def kolmogorov_survival(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution."""
    if x < 0.2:
        return 1.0
    terms = [(-1) ** (k - 1) * math.exp(-2.0 * k * k * x * x) for k in range(1, 101)]
    return float(min(1.0, max(0.0, 2.0 * sum(terms))))


def bin_labels(edges: list[float]) -> list[str]:
    """A label per numeric bin (see `numeric_shares`), the missing values' bin last."""
    if not edges:
        return ["all values", "missing"]
    marks = [f"{edge:.4g}" for edge in edges]
    inner = [f"{low} to {high}" for low, high in itertools.pairwise(marks)]
    return [f"< {marks[0]}", *inner, f"≥ {marks[-1]}", "missing"]


def shares(values: Array) -> list[float]:
    return [round(float(share), 6) for share in values]


def numeric_drift(
    name: str, entry: Mapping[str, Any], values: Array, reference_rows: int, ks_level: float | None
) -> tuple[ColumnDrift, bool]:
    """The column's drift, and whether its KS test rejected at `ks_level` (None: no test)."""
    reference, current, present = numeric_shares(entry, values)
    rows = int(np.asarray(values).size)
    column = ColumnDrift(
        name=name,
        kind="numeric",
        rows=rows,
        psi=psi(reference, current, reference_rows, rows),
        status="ok",
        bins=reference.size,
        missing_reference=float(entry["missing"]),
        missing_current=float(current[-1]),
        labels=bin_labels(entry["edges"]),
        reference_shares=shares(reference),
        current_shares=shares(current),
    )
    quantiles = np.asarray(entry.get("quantiles", []), dtype=float)
    rejected = False
    if ks_level is not None and ks_applies(quantiles) and present.size:
        column.ks_statistic, column.ks_pvalue = ks_test(quantiles, present, reference_rows)
        rejected = column.ks_pvalue < ks_level
    return column, rejected


def ks_applies(quantiles: Array) -> bool:
    return np.unique(quantiles).size >= KS_MIN_DISTINCT


def categorical_drift(
    name: str, entry: Mapping[str, Any], values: Array, reference_rows: int
) -> ColumnDrift:
    items = np.asarray(values, dtype=object)
    found: Counter[str] = Counter()
    missing = 0
    for value, count in Counter(items.tolist()).items():  # counting first: few distinct values
        if value is None or value != value:  # None or NaN
            missing += count
        else:
            found[str(value)] += count
    known: dict[str, float] = entry["frequencies"]
    total = max(items.size, 1)
    unseen = {label: count for label, count in found.items() if label not in known}
    reference_missing = float(entry["missing"])
    reference = np.array(
        [share * (1 - reference_missing) for share in known.values()]
        + [float(entry.get("unseen", 0.0)), reference_missing]
    )
    current = (
        np.array([found.get(label, 0) for label in known] + [sum(unseen.values()), missing]) / total
    )
    examples = sorted(unseen, key=lambda label: -unseen[label])[:UNSEEN_EXAMPLES]
    return ColumnDrift(
        name=name,
        kind="categorical",
        rows=int(items.size),
        psi=psi(reference, current, reference_rows, int(items.size)),
        status="ok",
        bins=reference.size,
        missing_reference=reference_missing,
        missing_current=float(current[-1]),
        unseen_share=float(current[-2]),
        unseen_examples=examples,
        labels=[*known, "unseen", "missing"],
        reference_shares=shares(reference),
        current_shares=shares(current),
    )


def column_drift(
    name: str, entry: Mapping[str, Any], values: Array, reference_rows: int, ks_level: float | None
) -> tuple[ColumnDrift, bool]:
    if entry["kind"] == "numeric":
        return numeric_drift(name, entry, values, reference_rows, ks_level)
    return categorical_drift(name, entry, values, reference_rows), False


def psi_noise(bins: int, rows: int, reference_rows: int, alpha: float) -> float:
    """The PSI two samples of one distribution exceed with probability `alpha`.

    PSI x effective rows is close to chi-square with bins - 1 degrees of freedom; its
    quantile by the Wilson-Hilferty approximation.
    """
    freedom = max(bins - 1, 1)
    z = NormalDist().inv_cdf(1 - alpha)
    spread = 2 / (9 * freedom)
    quantile = freedom * (1 - spread + z * math.sqrt(spread)) ** 3
    effective = rows * reference_rows / max(rows + reference_rows, 1)
    return quantile / max(effective, 1.0)


def grade(
    column: ColumnDrift,
    ks_rejected: bool,
    thresholds: Thresholds,
    alpha: float,
    reference_rows: int,
) -> ColumnDrift:
    column.psi_noise = psi_noise(column.bins, column.rows, reference_rows, alpha)
    above_noise = column.psi >= column.psi_noise
    if (column.psi >= thresholds.psi_alert and above_noise) or ks_rejected:
        column.status = "alert"
    elif column.psi >= thresholds.psi_warn and above_noise:
        column.status = "warn"
    return column


def compare(
    profile: Mapping[str, Any],
    columns: Mapping[str, Array],
    predictions: Array | None = None,
    thresholds: Thresholds | None = None,
) -> DriftReport:
    """Drift of `columns` (one array per profiled feature) and of `predictions`."""
    thresholds = thresholds or Thresholds()
    entries: Mapping[str, Any] = profile["features"]
    missing = [name for name in entries if name not in columns]
    if missing:
        raise KeyError(f"no values for the profiled features {missing}")
    reference_rows = int(profile["rows"])
    rows = int(np.asarray(columns[next(iter(entries))]).size) if entries else 0
    small = rows <= thresholds.ks_max_rows
    tested = [
        name
        for name, entry in entries.items()
        if entry["kind"] == "numeric" and ks_applies(np.asarray(entry.get("quantiles", [])))
    ]
    ks_level = thresholds.alpha / len(tested) if tested and small else None
    alpha = thresholds.alpha / max(len(entries), 1)
    features = [
        grade(
            *column_drift(name, entry, columns[name], reference_rows, ks_level),
            thresholds,
            alpha,
            reference_rows,
        )
        for name, entry in entries.items()
    ]
    report = DriftReport(rows, reference_rows, thresholds, features)
    if predictions is not None and "prediction" in profile:
        level = thresholds.alpha if small else None  # one column: the whole level is its
        drift = column_drift(
            "prediction", profile["prediction"], predictions, reference_rows, level
        )
        report.prediction = grade(*drift, thresholds, thresholds.alpha, reference_rows)
    return report
