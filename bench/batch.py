"""Batch prediction: what `predict` runs on a chunk against the library's own predict_proba,
by batch size; then `predict` on a 1M-row file against `mlflow models predict`, as whole
processes.

Renders and installs the default project, then in its environment fits each model
family on breast_cancer rows (resampled to the largest batch) with the project's own
preprocessing, compiles it as `train` does, and times, on 1 thread for both sides: the
compiled numpy model, the library through `batch_scoring.library_predictions` (the
checked rows made a frame again), and the pipeline's own predict_proba on a ready frame
(scikit-learn's, or the library's for xgboost and lightgbm). `predict` runs the first
or the second by `batch_scoring.uses_library`; the ratio compares that one with the
library's own. Best of 3 (more for small batches).

Then it runs `make pipeline`, exports the champion (the default model) and scores the
test split resampled to 1,000,000 rows: wall time and peak RSS of each process, `predict`
with each --predictor, from CSV and from Parquet, and `mlflow models predict` (local env).

    .venv/bin/python bench/batch.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from project import SLUG, default_project, run

SIZES = (1, 100, 300, 500, 1_000, 2_000, 10_000, 100_000)
FAMILIES = ("linear", "random_forest", "hist_gradient_boosting", "xgboost", "lightgbm")

# Run inside the project's environment: one thread everywhere, set before numpy loads.
MEASURE = r"""
import os, sys, time
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = "1"
import numpy as np, pandas as pd
from pathlib import Path
from sklearn import datasets
from my_ml_service.batch_scoring import library_predictions, uses_library
from my_ml_service.config import load_params
from my_ml_service.inference import Inputs
from my_ml_service.runtime import plan
from my_ml_service.schema import infer_schema, to_model_frame
from my_ml_service.train import build_pipeline

sizes = [int(size) for size in sys.argv[2].split(",")]
frame = datasets.load_breast_cancer(as_frame=True).frame
params = load_params(Path("params.yaml"))
params.train.model = sys.argv[1]
schema = infer_schema(frame, "target", "classification")
features = to_model_frame(frame, schema)
pipeline = build_pipeline(schema, params).fit(features, frame["target"])
model = pipeline[-1]
for attribute in ("n_jobs", "nthread"):  # the forest trains with n_jobs=-1
    if hasattr(model, attribute):
        setattr(model, attribute, 1)
serving = plan(pipeline, features, schema)
compiled = serving.compiled
assert compiled is not None, serving.runtime.reason
rng = np.random.default_rng(0)
for size in sizes:
    rows = features.iloc[rng.integers(0, len(features), size)].reset_index(drop=True)
    inputs = Inputs.from_frame(rows, schema)
    repeats = 3 if size >= 10_000 else 30
    def best(call):
        times = []
        for _ in range(repeats):
            started = time.perf_counter(); call(); times.append(time.perf_counter() - started)
        return min(times)
    numpy = best(lambda: compiled.predict(inputs))
    library = best(lambda: library_predictions(pipeline, inputs, schema))
    theirs = best(lambda: pipeline.predict_proba(rows))
    runs = "library" if uses_library(compiled.meta["model"], size) else "numpy"
    print(f"{size} {numpy} {library} {theirs} {runs}")
"""


def shown(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


FILE_ROWS = 1_000_000
MAKE_FILES = r"""
import sys
import numpy as np, pandas as pd
rows = int(sys.argv[1])
test = pd.read_csv("data/processed/test.csv").drop(columns=["target"])
big = test.iloc[np.random.default_rng(0).integers(0, len(test), rows)]
big.to_csv("build/big.csv", index=False)
big.to_parquet("build/big.parquet", index=False)
"""
# The floor every job pays: the model's own predict_proba on the whole file, in-process,
# with the threads the jobs have; and reading the CSV with pandas.
FLOOR = r"""
import time
import pandas as pd
from pathlib import Path
from my_ml_service.artifact import load_pipeline
started = time.perf_counter()
frame = pd.read_csv("build/big.csv")
read = time.perf_counter() - started
pipeline = load_pipeline(Path("build/model"))
started = time.perf_counter()
pipeline.predict_proba(frame)
print(f"{read} {time.perf_counter() - started}")
"""
# Peak RSS of a child, as the kernel counted it (KiB on Linux), and its wall time.
MEASURED = r"""
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - started
if done.returncode:
    sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
print(json.dumps({"seconds": seconds,
                  "rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measured(command: list[str], project: Path, env: dict[str, str]) -> dict[str, float]:
    output = run([sys.executable, "-c", MEASURED, *command], project, env)
    return dict(json.loads(output.strip().splitlines()[-1]))


def whole_files(project: Path, env: dict[str, str]) -> None:
    """`predict` and `mlflow models predict` on the same 1M rows, whole processes."""
    run(["make", "pipeline"], project, env)
    cli, venv = str(project / f".venv/bin/{SLUG}"), project / ".venv/bin"
    run([cli, "export-model", "--output", "build/model"], project, env)
    run([str(venv / "python"), "-c", MAKE_FILES, str(FILE_ROWS)], project, env)
    # every job below starts with the bytecode written, as any but the first run does
    # (check=False: a package may ship a .py file that is a template, not Python)
    compileall = [str(venv / "python"), "-m", "compileall", "-q", "-j0", str(venv.parent / "lib")]
    subprocess.run(compileall, cwd=project, env=env, capture_output=True, check=False)
    read, fitted = map(float, run([str(venv / "python"), "-c", FLOOR], project, env).split())
    model = ["--model-dir", "build/model"]
    jobs = {
        "predict, CSV to CSV (--predictor auto)": [
            cli, "predict", "--input", "build/big.csv", "--output", "build/out.csv", *model
        ],
        "predict, CSV to CSV (--predictor numpy)": [
            cli, "predict", "--input", "build/big.csv", "--output", "build/out.csv", *model,
            "--predictor", "numpy",
        ],
        "predict, Parquet to Parquet (auto)": [
            cli, "predict", "--input", "build/big.parquet", "--output", "build/out.parquet",
            *model,
        ],
        "mlflow models predict, CSV (--env-manager local)": [
            str(venv / "mlflow"), "models", "predict", "-m", "build/model", "-i",
            "build/big.csv", "-t", "csv", "-o", "build/mlflow.json", "--env-manager", "local",
        ],
    }  # fmt: skip
    results = {name: measured(command, project, env) for name, command in jobs.items()}
    reference = results["mlflow models predict, CSV (--env-manager local)"]
    print(f"\n{FILE_ROWS:,} rows of the default model (hist_gradient_boosting), 2 cores:\n")
    print("| job | wall | peak RSS | speed-up vs mlflow | memory vs mlflow |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        print(f"| {name} | {result['seconds']:.1f} s | {result['rss_kib'] / 1024:.0f} MiB | "
              f"{reference['seconds'] / result['seconds']:.2f}x | "
              f"{result['rss_kib'] / reference['rss_kib']:.2f}x |")  # fmt: skip
    print("Ours writes prediction, both probabilities, model name/version and an id per row;")
    print("mlflow writes the predictions only.")
    print(f"The floor both pay, in-process: pandas reads the CSV in {read:.1f} s; the model's")
    print(f"own predict_proba on all {FILE_ROWS:,} rows takes {fitted:.1f} s; 5x mlflow would be "
          f"{reference['seconds'] / 5:.1f} s.")  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        project, env = default_project(Path(scratch))
        python = str(project / ".venv/bin/python")
        print("| model | rows | numpy | library via predict | predict runs | "
              "library's predict_proba | ratio (library's / predict's) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        sizes = ",".join(map(str, SIZES))
        for family in FAMILIES:
            output = run([python, "-c", MEASURE, family, sizes], project, env)
            for line in output.split("\n"):
                if line:
                    rows, numpy, library, theirs, runs = line.split()
                    ours = float(numpy if runs == "numpy" else library)
                    print(f"| {family} | {int(rows):,} | {shown(float(numpy))} | "
                          f"{shown(float(library))} | {runs} | {shown(float(theirs))} | "
                          f"{float(theirs) / ours:.2f}x |")  # fmt: skip
        print("1 thread on both sides (OMP/OpenBLAS/MKL threads = 1, the model's n_jobs = 1).")
        whole_files(project, env)


if __name__ == "__main__":
    main()
