"""End to end: the rendered project's DVC pipeline, MLflow registry and DVC remote, for real.

Every test renders a project, installs it with its own `make setup` and runs `dvc repro`
(through `make pipeline`) in the git repository the template created.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from baked import BakedProject, free_port
from conftest import install_project

pytestmark = pytest.mark.e2e

# Each scikit-learn model and each task once (the lifecycle does not depend on the model;
# test_models_e2e.py runs XGBoost and LightGBM through the pipeline).
TASK_MODELS = [
    pytest.param({"task": task, "model": model}, id=f"{task}-{model}")
    for task, model in (
        ("classification", "hist_gradient_boosting"),
        ("regression", "random_forest"),
        ("classification", "linear"),
    )
]
METRICS = {
    "classification": {"accuracy", "f1", "roc_auc", "log_loss"},
    "regression": {"rmse", "mae", "r2"},
}
# Gates loose enough for the deliberately weak model below.
LOOSE_GATES = {
    "classification": ["evaluate.gate.roc_auc=0.5", "evaluate.gate.accuracy=0.5"],
    "regression": ["evaluate.gate.r2=-10"],
}
# A single depth-one tree: worse than any of the three models on either sample.
STUMP = ["train.model=random_forest", "train.random_forest.n_estimators=1"]
STUMP += ["train.random_forest.max_depth=1"]


def registry(project: BakedProject, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Aliases and version tags of the project's registered model, read with MLflow."""
    script = (
        "import json\n"
        "from mlflow import MlflowClient\n"
        f"from {project.module}.config import Settings\n"
        "settings = Settings()\n"
        "client = MlflowClient(settings.mlflow_tracking_uri)\n"
        "model = client.get_registered_model(settings.model_name)\n"
        "versions = client.search_model_versions(f\"name = '{settings.model_name}'\")\n"
        "print(json.dumps({\n"
        "    'aliases': {alias: str(v) for alias, v in model.aliases.items()},\n"
        "    'tags': {str(v.version): v.tags for v in versions},\n"
        "}))\n"
    )
    output = project.check(".venv/bin/python", "-c", script, env=env).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def dvc(project: BakedProject, *args: str) -> str:
    """A dvc command with the project's CLI on PATH, as `make pipeline` runs it."""
    bin_dir = project.path / ".venv" / "bin"
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = project.check(str(bin_dir / "dvc"), *args, env={"PATH": path}, timeout=1200)
    return result.stdout + result.stderr


def set_params(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("-S", item)]


@pytest.mark.parametrize("answers", TASK_MODELS)
def test_pipeline_lifecycle(cookies_session: Any, answers: dict[str, str]) -> None:
    project = install_project(cookies_session, answers)
    cli = f".venv/bin/{project.path.name}"
    task = answers["task"]

    # 1. make pipeline: every stage runs, the model is registered as champion
    ran = project.check("make", "pipeline", timeout=1200)
    output = ran.stdout
    assert stages_run(output) == ["sample", "prepare", "train", "evaluate", "register"]
    # Quiet: no progress bars in a log, no warning that is not a problem, no false news.
    for noise in ("Downloading artifacts", "WARNING mlflow", "already exists", "INFO mlflow"):
        assert noise not in output + ran.stderr, noise
    metrics = json.loads(project.read("metrics/test.json"))
    assert set(metrics) == METRICS[task]
    for name in ("data/processed/schema.json", "models/model/MLmodel", "models/profile.json"):
        assert project.has_file(name), name
    assert project.has_file("plots/predictions.csv")
    assert "## Test metrics" in project.read("reports/model_card.md")
    state = registry(project)
    assert state["aliases"] == {"champion": "1", "challenger": "1"}
    assert state["tags"]["1"]["decision"] == "promoted: no champion yet"
    project.check("git", "add", "--all")
    project.check("git", "commit", "--quiet", "-m", "Run the pipeline")

    # 2. nothing changed: nothing runs
    assert stages_run(dvc(project, "repro")) == []

    # 3. one parameter changed: only the stage that reads it runs
    changed = dvc(project, "exp", "run", *set_params(LOOSE_GATES[task]))
    assert stages_run(changed) == ["evaluate"]

    # 4. a worse challenger is registered but does not take @champion
    dvc(project, "exp", "run", *set_params(STUMP))
    registration = json.loads(project.read("reports/registration.json"))
    assert registration["version"] == "2"
    assert registration["decision"].startswith("kept champion v1"), registration
    state = registry(project)
    assert state["aliases"] == {"champion": "1", "challenger": "2"}
    assert float(state["tags"]["2"]["champion_score"]) == pytest.approx(
        json.loads(project.read("reports/registration.json"))["champion_score"]
    )

    # 5. experiments are comparable
    shown = dvc(project, "exp", "show", "--no-pager", "--csv")
    assert shown.count("\n") >= 3
    diff = dvc(project, "metrics", "diff", "--json")
    assert "metrics/test.json" in diff
    dvc(project, "plots", "show")
    assert (project.path / "dvc_plots" / "index.html").is_file()

    # 6. promote by hand, then roll back
    project.check(cli, "promote", "2")
    assert registry(project)["aliases"]["champion"] == "2"
    project.check(cli, "rollback")
    assert registry(project)["aliases"]["champion"] == "1"
    refused = project.run(cli, "rollback")
    assert refused.returncode == 2
    assert "no previous champion" in refused.stderr
    listing = project.check(cli, "models").stdout
    assert "@champion" in listing
    assert "@challenger" in listing
    if answers["model"] == "hist_gradient_boosting":  # the loop once: it retrains
        production_rows_come_back_into_training(project, cli)


def production_rows_come_back_into_training(project: BakedProject, cli: str) -> None:
    """Serve, label through /feedback, collect, `dvc repro`: a new version trained on more
    rows, every earlier test row still in test."""
    from test_serve_e2e import call, serving

    before = split_rows(project)
    records = json.loads(
        project.check(
            ".venv/bin/python", "-c",
            "import csv, json; rows = list(csv.DictReader(open('data/raw/sample.csv')))[:120];"
            "print(json.dumps([{k: float(v) for k, v in r.items()} for r in rows]))",
        ).stdout
    )  # fmt: skip
    with serving(project) as base:  # the registry's @champion, the default store
        labels = [record.pop("target") for record in records]
        ids = call(f"{base}/predict", records)[1]["prediction_ids"]
        body = [{"id": i, "actual": int(y)} for i, y in zip(ids, labels, strict=True)]
        assert call(f"{base}/feedback", body)[1]["recorded"] == 120
    collected = project.check(cli, "collect").stdout
    assert "120 new labelled rows, 120 in all" in collected
    assert project.has_file("data/raw/production.csv.dvc")
    assert stages_run(dvc(project, "repro")) == ["prepare", "train", "evaluate", "register"]
    after = split_rows(project)
    counts = json.loads(project.read("data/processed/split.json"))
    assert counts["train"] + counts["test"] == len(before["train"]) + len(before["test"]) + 120
    assert counts["production_train"] + counts["production_test"] == 120
    assert before["test"] <= after["test"], "an earlier test row left the test split"
    assert not before["test"] & after["train"]
    card = project.read("reports/model_card.md")
    assert f"{counts['production_train']} in training, {counts['production_test']} in test" in card
    assert json.loads(project.read("reports/registration.json"))["version"] == "3"


def split_rows(project: BakedProject) -> dict[str, set[str]]:
    return {
        name: set(project.read(f"data/processed/{name}.csv").splitlines()[1:])
        for name in ("train", "test")
    }


def customer_csv(rows: int = 400, seed: int = 7) -> pd.DataFrame:
    """Numeric and categorical columns with missing values and a learnable label."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows).astype(float)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    region = rng.choice(["north", "south", "east", "west"], rows)
    spend = rng.gamma(2.0, 30.0, rows)
    noise = rng.normal(0, 0.2, rows)
    churn_score = -0.05 * tenure + (plan == "basic") * 1.5 + spend / 100 + noise
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "plan": plan,
            "region": region,
            "monthly_spend": spend,
            "churned": np.where(churn_score > np.median(churn_score), "yes", "no"),
        }
    )
    frame.loc[::9, "monthly_spend"] = np.nan
    frame.loc[::13, "region"] = np.nan
    return frame


def set_data_params(project: BakedProject, path: str, target: str) -> None:
    text = project.read("params.yaml")
    text = text.replace("  path: data/raw/sample.csv", f"  path: {path}")
    text = text.replace("  target: target ", f"  target: {target} ")
    (project.path / "params.yaml").write_text(text, encoding="utf-8")


def dvc_outputs(project: BakedProject, roots: list[str]) -> dict[Path, str]:
    """Files DVC caches under `roots`, with digests: not its .dvc and .gitignore files, not
    what git holds (the empty production.csv placeholder) nor `cache: false` outputs
    (split.json, committed to git): the remote restores neither."""
    in_git = set(project.check("git", "ls-files").stdout.split())
    uncached = {
        name
        for stage in yaml.safe_load(project.read("dvc.yaml"))["stages"].values()
        for out in stage.get("outs", [])
        if isinstance(out, dict)
        for name, options in out.items()
        if options.get("cache") is False
    }
    found = {}
    for root in roots:
        target = project.path / root
        files = [target] if target.is_file() else sorted(target.rglob("*"))
        for file in files:
            relative = file.relative_to(project.path).as_posix()
            if relative in in_git or relative in uncached:
                continue
            if file.is_file() and file.suffix != ".dvc" and file.name != ".gitignore":
                found[file] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def test_your_own_csv_and_the_dvc_remote(cookies_session: Any) -> None:
    project = install_project(cookies_session, {})
    raw = project.path / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    # A CSV without the target column stops at prepare, naming the problem.
    customer_csv().drop(columns=["churned"]).to_csv(raw / "customers.csv", index=False)
    set_data_params(project, "data/raw/customers.csv", "churned")
    failed = project.run("make", "pipeline", timeout=1200)
    assert failed.returncode != 0
    assert "target column 'churned' not found" in failed.stderr
    assert "Running stage 'train'" not in failed.stdout

    # An empty file, or a single class, stop there too.
    (raw / "customers.csv").write_text("", encoding="utf-8")
    failed = project.run("make", "pipeline", timeout=1200)
    assert "customers.csv: the file is empty" in failed.stderr
    customer_csv().assign(churned="no").to_csv(raw / "customers.csv", index=False)
    failed = project.run("make", "pipeline", timeout=1200)
    assert "target column 'churned' has one class ('no')" in failed.stderr
    assert "Running stage 'train'" not in failed.stdout

    # The real file: numeric and categorical columns with missing values, no code change.
    customer_csv().to_csv(raw / "customers.csv", index=False)
    project.check(".venv/bin/dvc", "add", "data/raw/customers.csv")
    output = project.check("make", "pipeline", timeout=1200).stdout
    assert "Running stage 'register'" in output
    schema = json.loads(project.read("data/processed/schema.json"))
    kinds = {feature["name"]: feature["kind"] for feature in schema["features"]}
    assert kinds == {
        "tenure_months": "numeric",
        "plan": "categorical",
        "region": "categorical",
        "monthly_spend": "numeric",
    }
    assert registry(project)["aliases"]["champion"] == "1"

    # Push to the local remote, delete the outputs, pull: byte-identical.
    roots = ["data/raw", "data/processed", "models/model", "models/profile.json"]
    before = dvc_outputs(project, roots)
    assert len(before) > 10
    project.check("make", "push")
    for file in before:
        file.unlink()
    project.check("make", "pull")
    assert dvc_outputs(project, roots) == before
    storage = project.path.parent / f"{project.path.name}-dvc-storage"
    assert any(storage.rglob("*")), "the default remote is a folder beside the project"

    # Batch scoring of the DVC-tracked file with the champion: numpy and the library agree.
    cli = f".venv/bin/{project.path.name}"
    scored = {}
    for predictor in ("numpy", "library"):
        output = f"build/scored-{predictor}.csv"
        source = "dvc://data/raw/customers.csv"
        ran = project.check(cli, "predict", "--input", source, "--output", output,
                            "--keep", "churned", "--predictor", predictor)  # fmt: skip
        assert "400 rows: 400 scored, 0 rejected" in ran.stdout
        scored[predictor] = pd.read_csv(project.path / output, dtype={"model_version": str})
    assert scored["numpy"]["model_version"].tolist() == ["1"] * 400
    assert scored["numpy"]["prediction"].tolist() == scored["library"]["prediction"].tolist()
    probabilities = ["proba_no", "proba_yes"]
    assert np.allclose(scored["numpy"][probabilities], scored["library"][probabilities])


def test_pipeline_against_a_real_mlflow_server(cookies_session: Any, tmp_path: Path) -> None:
    project = install_project(cookies_session, {})
    port = free_port()
    server = subprocess.Popen(
        [
            str(project.path / ".venv/bin/mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{project.path / '.venv/bin'}{os.pathsep}{os.environ['PATH']}"},
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        env = {"MLFLOW_TRACKING_URI": uri}
        project.check("make", "pipeline", env=env, timeout=1200)

        state = registry(project, env=env)
        assert state["aliases"] == {"champion": "1", "challenger": "1"}
        assert not (project.path / "mlflow.db").exists(), "nothing may go to the local store"
        assert any((tmp_path / "artifacts").rglob("MLmodel")), "the server stores the model"
    finally:
        server.terminate()
        server.wait(timeout=30)
