"""The rendered project's drift detector against evidently's DataDriftPreset, same data.

Renders the default project and installs it (`make setup`), creates a separate venv with
evidently 0.7 (it does not import with pandas 3, hence `pandas<3` there), and generates a
reference and a current frame of the same size (24 numeric columns of various
distributions, 6 categorical, some missing values), identical in distribution except two
planted shifts: a numeric mean shift of `--shift` standard deviations and a categorical
column where a category the reference never had takes over. Both frames are written once
to CSV; each side reads them in its own Python process outside the timed section, runs
once to warm up, then `--repeats` timed runs:

- ours: the reference profile built from the reference frame (`profile.numeric_entry`,
  `categorical_entry`) + the current frame as arrays + `monitoring.drift.compare`, and
  `compare` alone on the prepared arrays;
- evidently: `Report([DataDriftPreset()], include_tests=True).run(current, reference)`,
  the per-column verdicts read from the snapshot's `dict()` (a failed "Value Drift" test
  is a drifted column).

Prints the wall time of every run, the best wall and CPU time of each, the ratios
evidently / ours (target >= 20, on wall time: evidently spends part of its work on more
than one thread, so its CPU time can exceed its wall time), the columns each flags
(ours: status "alert"; target: the same set), and what writing the Markdown and HTML
reports adds to `compare` (target: at most x2). Exits non-zero only when something fails
to run, not when a target is missed.

    .venv/bin/python bench/drift.py [--rows 100000] [--repeats 3] [--shift 0.6]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from project import TOOLS, default_project, run

MODULE = "my_ml_service"
EVIDENTLY = ["evidently>=0.7,<0.8", "pandas<3"]
TARGET_RATIO = 20.0
REPORT_RATIO = 2.0  # the readable reports may at most double the check's time
# The planted shifts: this numeric column's mean moves, this categorical column gets a
# new dominant category.
SHIFTED_NUMERIC = "num_00_normal"
SHIFTED_CATEGORICAL = "cat_00_channel"
NEW_CATEGORY = "marketplace"
NEW_CATEGORY_SHARE = 0.6

Generator = Callable[[np.random.Generator, int], Any]

# 24 numeric columns: (name, sampler, share missing). Floats throughout, so evidently
# types every one as numerical (it would take integer columns for categories).
NUMERIC: list[tuple[str, Generator, float]] = [
    ("num_00_normal", lambda g, n: g.normal(50.0, 10.0, n), 0.0),
    ("num_01_normal", lambda g, n: g.normal(0.0, 1.0, n), 0.02),
    ("num_02_lognormal", lambda g, n: g.lognormal(3.0, 0.8, n), 0.0),
    ("num_03_exponential", lambda g, n: g.exponential(2.5, n), 0.0),
    ("num_04_uniform", lambda g, n: g.uniform(-5.0, 5.0, n), 0.0),
    ("num_05_gamma", lambda g, n: g.gamma(2.0, 3.0, n), 0.05),
    ("num_06_beta", lambda g, n: g.beta(2.0, 5.0, n), 0.0),
    ("num_07_student_t", lambda g, n: g.standard_t(4.0, n), 0.0),
    ("num_08_poisson", lambda g, n: g.poisson(4.0, n).astype(float), 0.0),
    ("num_09_bimodal", lambda g, n: np.where(g.random(n) < 0.3, -2.0, 3.0) + g.normal(0, 1, n), 0),
    ("num_10_weibull", lambda g, n: g.weibull(1.5, n), 0.0),
    ("num_11_chisquare", lambda g, n: g.chisquare(3.0, n), 0.01),
    ("num_12_laplace", lambda g, n: g.laplace(10.0, 2.0, n), 0.0),
    ("num_13_logistic", lambda g, n: g.logistic(0.0, 1.5, n), 0.0),
    ("num_14_pareto", lambda g, n: g.pareto(3.0, n), 0.0),
    ("num_15_rayleigh", lambda g, n: g.rayleigh(2.0, n), 0.0),
    ("num_16_normal_wide", lambda g, n: g.normal(1000.0, 250.0, n), 0.1),
    ("num_17_triangular", lambda g, n: g.triangular(0.0, 2.0, 10.0, n), 0.0),
    ("num_18_vonmises", lambda g, n: g.vonmises(0.0, 2.0, n), 0.0),
    ("num_19_gumbel", lambda g, n: g.gumbel(5.0, 2.0, n), 0.0),
    ("num_20_binomial", lambda g, n: g.binomial(20, 0.3, n).astype(float), 0.0),
    ("num_21_zero_inflated", lambda g, n: np.where(g.random(n) < 0.4, 0.0, g.gamma(2, 5, n)), 0),
    ("num_22_wald", lambda g, n: g.wald(1.0, 2.0, n), 0.0),
    ("num_23_uniform_int", lambda g, n: g.integers(0, 100, n).astype(float), 0.03),
]
# 6 categorical columns: (name, categories, their probabilities, share missing).
CATEGORICAL: list[tuple[str, list[str], list[float], float]] = [
    ("cat_00_channel", ["web", "mobile", "store", "phone"], [0.45, 0.35, 0.15, 0.05], 0.0),
    ("cat_01_country", ["de", "fr", "es", "it", "nl", "pl", "se", "pt"], [], 0.02),
    ("cat_02_plan", ["free", "basic", "pro", "enterprise"], [0.6, 0.25, 0.12, 0.03], 0.0),
    ("cat_03_device", ["android", "ios", "desktop"], [0.5, 0.3, 0.2], 0.05),
    ("cat_04_segment", [f"s{index:02d}" for index in range(20)], [], 0.0),
    ("cat_05_flag", ["yes", "no"], [0.1, 0.9], 0.0),
]

OURS = """
import json, sys, time
import numpy as np
import pandas as pd
from types import SimpleNamespace
from MODULE.monitoring.drift import compare
from MODULE.monitoring.report import html_page, markdown
from MODULE.profile import categorical_entry, numeric_entry

directory, repeats = sys.argv[1], int(sys.argv[2])
kinds = json.loads(open(f"{directory}/kinds.json", encoding="utf-8").read())
text = {name: object for name, kind in kinds.items() if kind == "categorical"}
reference = pd.read_csv(f"{directory}/reference.csv", dtype=text)
current = pd.read_csv(f"{directory}/current.csv", dtype=text)


def arrays(frame):
    return {
        name: frame[name].to_numpy(dtype=float)
        if kind == "numeric"
        else np.array([None if v != v else str(v) for v in frame[name].tolist()], dtype=object)
        for name, kind in kinds.items()
    }


def profile_of(frame):
    entries = {
        name: numeric_entry(frame[name]) if kind == "numeric" else categorical_entry(frame[name])
        for name, kind in kinds.items()
    }
    return {"rows": len(frame), "features": entries}


def timed(function):
    function()
    runs = []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        result = function()
        runs.append([time.perf_counter() - started, time.process_time() - cpu])
    return runs, result


full, report = timed(lambda: compare(profile_of(reference), arrays(current)))
profile, columns = profile_of(reference), arrays(current)
alone, _ = timed(lambda: compare(profile, columns))
model = SimpleNamespace(name="bench", version="1", source="bench")


def with_reports():
    found = compare(profile, columns)
    return markdown(found, model, "current.csv"), html_page(found, model, "current.csv")


reported, (_, page) = timed(with_reports)
print(json.dumps({
    "full": full,
    "alone": alone,
    "reported": reported,
    "html_bytes": len(page.encode()),
    "flagged": report.drifted,
    "warned": [c.name for c in report.features if c.status == "warn"],
    "scores": {c.name: c.psi for c in report.features},
    "methods": {c.name: "PSI" for c in report.features},
    "version": sys.version.split()[0],
}))
"""

THEIRS = """
import json, sys, time
import warnings
import pandas as pd
import evidently
from evidently import Report
from evidently.presets import DataDriftPreset

warnings.simplefilter("ignore")
directory, repeats = sys.argv[1], int(sys.argv[2])
kinds = json.loads(open(f"{directory}/kinds.json", encoding="utf-8").read())
text = {name: object for name, kind in kinds.items() if kind == "categorical"}
reference = pd.read_csv(f"{directory}/reference.csv", dtype=text)
current = pd.read_csv(f"{directory}/current.csv", dtype=text)


def run():
    return Report([DataDriftPreset()], include_tests=True).run(current, reference)


run()
runs = []
for _ in range(repeats):
    started, cpu = time.perf_counter(), time.process_time()
    snapshot = run()
    runs.append([time.perf_counter() - started, time.process_time() - cpu])
result = snapshot.dict()
scores, methods = {}, {}
for metric in result["metrics"]:
    config = metric["config"]
    if config["type"] == "evidently:metric_v2:ValueDrift":
        scores[config["column"]] = metric["value"]
        methods[config["column"]] = f"{config['method']} >= {config['threshold']}"
flagged = [
    test["metric_config"]["params"]["column"]
    for test in result["tests"]
    if test["metric_config"]["params"]["type"] == "evidently:metric_v2:ValueDrift"
    and test["status"] == "FAIL"
]
print(json.dumps({
    "full": runs,
    "flagged": flagged,
    "scores": scores,
    "methods": methods,
    "version": sys.version.split()[0],
    "evidently": evidently.__version__,
    "pandas": pd.__version__,
}))
"""


def frames(rows: int, shift: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, current): independent samples of the same columns, two of them shifted."""
    reference_rng, current_rng = (np.random.default_rng([seed, side]) for side in (0, 1))

    def sample(rng: np.random.Generator, planted: bool) -> pd.DataFrame:
        columns: dict[str, Any] = {}
        for name, sampler, missing in NUMERIC:
            values = np.asarray(sampler(rng, rows), dtype=float)
            if planted and name == SHIFTED_NUMERIC:
                values += shift * float(np.std(values))
            values[rng.random(rows) < missing] = np.nan
            columns[name] = values
        for name, categories, weights, missing in CATEGORICAL:
            labels, shares = list(categories), list(weights) or None
            if planted and name == SHIFTED_CATEGORICAL:
                labels.append(NEW_CATEGORY)
                old = shares or [1 / len(categories)] * len(categories)
                shares = [share * (1 - NEW_CATEGORY_SHARE) for share in old]
                shares.append(NEW_CATEGORY_SHARE)
            drawn = rng.choice(np.array(labels, dtype=object), size=rows, p=shares)
            drawn[rng.random(rows) < missing] = None
            columns[name] = drawn
        return pd.DataFrame(columns)

    return sample(reference_rng, planted=False), sample(current_rng, planted=True)


def side(
    name: str, python: Path, script: str, data: Path, repeats: int, env: dict[str, str]
) -> Any:
    """Run one side's script in its own interpreter; its last stdout line is the JSON."""
    path = data / f"side_{name}.py"
    path.write_text(script.replace("MODULE", MODULE), encoding="utf-8")
    out = run([str(python), str(path), str(data), str(repeats)], data, env)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--shift",
        type=float,
        default=0.6,
        help="planted numeric mean shift in standard deviations (0.6: PSI ~0.35; at 0.5 "
        "PSI is ~0.24, a warning just under the 0.25 alert level)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-drift-") as temporary:
        scratch = Path(temporary)
        project, env = default_project(scratch)
        ours_python = project / ".venv/bin/python"

        venv = scratch / "evidently-venv"
        uv = str(TOOLS / "uv")
        run([uv, "venv", "-q", "--python", str(ours_python), str(venv)], scratch, env)
        run(
            [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), *EVIDENTLY],
            scratch,
            env,
        )

        data = scratch / "data"
        data.mkdir()
        reference, current = frames(args.rows, args.shift, args.seed)
        reference.to_csv(data / "reference.csv", index=False)
        current.to_csv(data / "current.csv", index=False)
        kinds = {name: "numeric" for name, _, _ in NUMERIC}
        kinds |= {name: "categorical" for name, *_ in CATEGORICAL}
        (data / "kinds.json").write_text(json.dumps(kinds), encoding="utf-8")

        ours = side("ours", ours_python, OURS, data, args.repeats, env)
        theirs = side("evidently", venv / "bin/python", THEIRS, data, args.repeats, env)

    report(ours, theirs, args)


def best(runs: list[list[float]], index: int = 0) -> float:
    """The least wall (index 0) or CPU (index 1) time of the runs."""
    return min(run[index] for run in runs)


def report(ours: dict[str, Any], theirs: dict[str, Any], args: argparse.Namespace) -> None:
    columns = len(NUMERIC) + len(CATEGORICAL)
    print(
        f"{args.rows} rows x {columns} columns ({len(NUMERIC)} numeric, {len(CATEGORICAL)} "
        f"categorical), {os.cpu_count()} cores, Python {ours['version']} both sides, "
        f"1 warm-up + {args.repeats} runs each"
    )
    print(
        f"planted: {SHIFTED_NUMERIC} mean +{args.shift:g} sd, {SHIFTED_CATEGORICAL} new "
        f"category {NEW_CATEGORY!r} at {NEW_CATEGORY_SHARE:.0%}"
    )
    rows = [
        ("ours: profile + compare", ours["full"]),
        ("ours: compare alone", ours["alone"]),
        ("ours: compare + Markdown + HTML", ours["reported"]),
        (f"evidently {theirs['evidently']} DataDriftPreset", theirs["full"]),
    ]
    print(f"  {'':<36}{'wall s':>9}{'CPU s':>9}   wall s of every run")
    for name, runs in rows:
        listed = " ".join(f"{wall:.3f}" for wall, _ in runs)
        print(f"  {name:<36}{best(runs):>9.3f}{best(runs, 1):>9.3f}   ({listed})")
    ratio = best(theirs["full"]) / best(ours["full"])
    alone = best(theirs["full"]) / best(ours["alone"])
    print(f"ratio evidently / ours (target >= {TARGET_RATIO:.0f}):")
    for name, key in (("profile + compare", "full"), ("compare alone", "alone")):
        wall = best(theirs["full"]) / best(ours[key])
        cpu = best(theirs["full"], 1) / best(ours[key], 1)
        print(f"  {name:<20} x{wall:6.1f} wall   x{cpu:6.1f} CPU")
    ours_flagged, theirs_flagged = sorted(ours["flagged"]), sorted(theirs["flagged"])
    print(f"flagged, ours (PSI alert):        {', '.join(ours_flagged) or '-'}")
    print(f"flagged, evidently (drift tests): {', '.join(theirs_flagged) or '-'}")
    if ours["warned"]:
        print(f"  ours at warn level only: {', '.join(sorted(ours['warned']))}")
    for name in (SHIFTED_NUMERIC, SHIFTED_CATEGORICAL):
        print(
            f"  {name}: PSI {ours['scores'][name]:.3f}, evidently "
            f"{theirs['scores'][name]:.3f} ({theirs['methods'][name]})"
        )
    others = [name for name in ours["scores"] if name not in (SHIFTED_NUMERIC, SHIFTED_CATEGORICAL)]
    if others:
        mine = max(others, key=lambda name: ours["scores"][name])
        top = max(others, key=lambda name: theirs["scores"][name])
        print(
            f"  largest score of the {len(others)} unshifted columns: ours PSI "
            f"{ours['scores'][mine]:.4f} ({mine}), evidently {theirs['scores'][top]:.4f} ({top})"
        )

    with_reports = best(ours["reported"]) / best(ours["alone"])
    print(
        f"reports: compare + Markdown + HTML ({ours['html_bytes'] / 1000:.0f} kB) x"
        f"{with_reports:.2f} the time of compare alone (target <= {REPORT_RATIO:g}): "
        f"{'meets' if with_reports <= REPORT_RATIO else 'MISSES'} it"
    )

    def meets(value: float) -> str:
        return "meets" if value >= TARGET_RATIO else "MISSES"

    print(
        f"verdict: {'same' if ours_flagged == theirs_flagged else 'DIFFERENT'} columns; "
        f"profile + compare x{ratio:.1f} {meets(ratio)} the >= {TARGET_RATIO:.0f}x target, "
        f"compare alone x{alone:.1f} {meets(alone)} it"
    )


if __name__ == "__main__":
    main()
