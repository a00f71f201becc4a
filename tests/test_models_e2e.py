"""End to end: XGBoost, LightGBM and a model of the user's own, from training to the image.

Two rendered projects, one per task, each starting from one library and switching
`train.model` in params.yaml (no reinstall) to the other, and to a custom model. For
every trained model: `export-model`, then `make docker-build` of the serve image with
that export (podman: the serve packages plus exactly what its runtime.json records, from
uv.lock), and the container started. Then /predict must give the library's own
predictions (the pipeline loaded in the full environment), and MLflow's scoring client
the same from /invocations.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from baked import BakedProject, free_port
from conftest import install_project
from containers import Image, answering, docker_command, ensure_bases
from test_pipeline_e2e import dvc
from test_serve_e2e import call

pytestmark = pytest.mark.e2e

# The server rounds probabilities to 6 decimals; the compiled model is within 1e-6.
PROBABILITY_TOLERANCE = 1.5e-6
LIBRARY_SCRIPT = """
import json, sys
from pathlib import Path
import pandas as pd
from {module}.artifact import SCHEMA, load_pipeline
from {module}.schema import FeatureSchema, to_model_frame
model = Path(sys.argv[1])
schema = FeatureSchema.load(model / SCHEMA)
frame = to_model_frame(pd.read_csv("data/processed/test.csv"), schema)
pipeline = load_pipeline(model)
# every digit, as clients send them: to_json would round to 10 and move rows across splits
records = [{{key: None if value != value else value for key, value in row.items()}}
           for row in frame.to_dict(orient="records")]
answer = {{"records": records, "predictions": pipeline.predict(frame).tolist()}}
if schema.task == "classification":
    answer["probabilities"] = pipeline.predict_proba(frame).tolist()
    answer["classes"] = pipeline.classes_.tolist()
print(json.dumps(answer))
"""
FIND_SCRIPT = (
    "import importlib.util, json; "
    "found = lambda names: [n for n in names if importlib.util.find_spec(n)]"
)
MLFLOW_CLIENT_SCRIPT = """
import json, sys
import pandas as pd
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
client = ScoringServerClient("127.0.0.1", int(sys.argv[1]))
client.wait_server_ready(timeout=30)
frame = pd.DataFrame(json.load(sys.stdin))
print(json.dumps(client.invoke(frame).get_predictions(predictions_format="ndarray").tolist()))
"""
# A user's own model: a function step (FunctionTransformer) and an estimator no option
# names, written into custom.py as the project's README says.
CUSTOM_MODULE = '''"""Our own model: a signed log of the features, then nearest neighbours."""

from __future__ import annotations

from typing import Any

import numpy as np


def signed_log(values: Any) -> Any:
    return np.sign(values) * np.log1p(np.abs(values))


def build_estimator(task: str, seed: int, **params: Any) -> Any:
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    neighbours = KNeighborsClassifier if task == "classification" else KNeighborsRegressor
    return make_pipeline(FunctionTransformer(signed_log), neighbours(n_neighbors=7))
'''


def export(project: BakedProject, alias: str, output: str) -> dict[str, Any]:
    cli = f".venv/bin/{project.path.name}"
    project.check(cli, "export-model", "--alias", alias, "--output", output)
    return dict(json.loads(project.read(f"{output}/extra_files/runtime.json")))


def served_like_the_library(project: BakedProject, model_dir: str, packages: set[str]) -> None:
    """The serve image built with `model_dir` holds exactly `packages` of the model
    libraries and answers as the library does, to /predict and to MLflow's client."""
    ensure_bases(project.path / "Dockerfile")
    tag = model_dir.rsplit("/", 1)[-1]
    project.check(
        "make", "docker-build", f"DOCKER={docker_command()}", f"MODEL_DIR={model_dir}",
        f"IMAGE=localhost/{project.path.name}-models", f"TAG={tag}", timeout=2400,
    )  # fmt: skip
    image = Image(f"localhost/{project.path.name}-models:{tag}")
    libraries = ["sklearn", "xgboost", "lightgbm", "pandas", "skops", "mlflow", "dvc"]
    found = image.run("python", "-c", f"{FIND_SCRIPT}; print(json.dumps(found({libraries!r})))")
    assert set(json.loads(found.stdout)) == packages
    script = LIBRARY_SCRIPT.format(module=project.module)
    expected = json.loads(project.check(".venv/bin/python", "-c", script, model_dir).stdout)
    records = expected["records"]
    port = free_port()
    options = ["--read-only", "--tmpfs=/tmp", f"--env=PORT={port}", "--env=HOST=127.0.0.1"]
    with answering(image, port, "/health/ready", *options) as (_, base):
        status, answer = call(f"{base}/predict", records)
        assert status == 200, answer
        mlflow = subprocess.run(
            [str(project.path / ".venv/bin/python"), "-c", MLFLOW_CLIENT_SCRIPT, str(port)],
            input=json.dumps(records),
            capture_output=True,
            text=True,
            check=False,
            cwd=project.path,
        )
    assert mlflow.returncode == 0, mlflow.stderr[-3000:]
    if "probabilities" in expected:
        assert answer["predictions"] == expected["predictions"]
        assert answer["classes"] == expected["classes"]
        gaps = [
            abs(ours - theirs)
            for row, other in zip(answer["probabilities"], expected["probabilities"], strict=True)
            for ours, theirs in zip(row, other, strict=True)
        ]
        assert max(gaps) <= PROBABILITY_TOLERANCE
    else:
        gaps = [
            abs(ours - theirs)
            for ours, theirs in zip(answer["predictions"], expected["predictions"], strict=True)
        ]
        assert max(gaps) <= 1e-6
    assert json.loads(mlflow.stdout) == answer["predictions"]


def stages_changed_by(project: BakedProject, edited: str) -> list[str]:
    """The stages `dvc status` reports with a comment appended to `edited` (then restored)."""
    path = project.path / edited
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "# an edit\n", encoding="utf-8")
    try:
        status = dvc(project, "status")
    finally:
        path.write_text(text, encoding="utf-8")
    return [line[:-1] for line in status.splitlines() if line.endswith(":") and line[0] != "\t"]


@pytest.mark.xdist_group("models-classification")
def test_xgboost_lightgbm_and_a_custom_classifier_are_served_from_the_image(
    cookies_session: Any,
) -> None:
    project = install_project(cookies_session, {"model": "xgboost"})
    project.check("make", "pipeline", timeout=1200)

    # DVC re-runs what an edit can change, and nothing else
    source = f"src/{project.module}"
    assert stages_changed_by(project, f"{source}/compiler.py") == ["train"]
    assert stages_changed_by(project, f"{source}/inference.py") == ["train", "evaluate", "register"]
    assert stages_changed_by(project, f"{source}/serving/app.py") == []

    runtime = export(project, "champion", "build/xgboost")
    assert runtime["predictor"] == "compiled", runtime
    assert runtime["compiled_from"]["xgboost"]
    served_like_the_library(project, "build/xgboost", set())

    dvc(project, "exp", "run", "-S", "train.model=lightgbm")
    runtime = export(project, "challenger", "build/lightgbm")
    assert runtime["predictor"] == "compiled", runtime
    served_like_the_library(project, "build/lightgbm", set())

    (project.path / source / "custom.py").write_text(CUSTOM_MODULE, encoding="utf-8")
    dvc(project, "exp", "run", "-S", "train.model=custom")
    runtime = export(project, "challenger", "build/custom")
    assert runtime["predictor"] == "pipeline"
    assert runtime["extras"] == ["pipeline"]
    assert "KNeighborsClassifier" in runtime["reason"]
    pipeline_packages = {"sklearn", "pandas", "skops"}
    served_like_the_library(project, "build/custom", pipeline_packages)


@pytest.mark.xdist_group("models-regression")
def test_lightgbm_and_xgboost_regressors_are_served_from_the_image(cookies_session: Any) -> None:
    project = install_project(cookies_session, {"task": "regression", "model": "lightgbm"})
    project.check("make", "pipeline", timeout=1200)
    runtime = export(project, "champion", "build/lightgbm")
    assert runtime["predictor"] == "compiled", runtime
    served_like_the_library(project, "build/lightgbm", set())

    dvc(project, "exp", "run", "-S", "train.model=xgboost")
    runtime = export(project, "challenger", "build/xgboost")
    assert runtime["predictor"] == "compiled", runtime
    served_like_the_library(project, "build/xgboost", set())
