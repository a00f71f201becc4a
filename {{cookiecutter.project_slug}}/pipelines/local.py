"""The pipeline run on this machine with kfp.local: the same steps, no cluster.

    python pipelines/local.py [--force] [--gate '{"roc_auc": 0.95}'] [--model linear] …

kfp.local's SubprocessRunner runs lightweight Python components only, so each stage
here is `run_stage`, which imports pipelines/steps.py from this checkout and runs the
stage as the cluster's component does: in a workspace of its own, through the DVC remote
(DVC_REMOTE_URL, else the project's, else build/kfp/dvc-remote) and the MLflow
registry of the project's settings.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl, local
from training import NAME, PARAMS, build

PROJECT = Path(__file__).resolve().parents[1]
ROOT = PROJECT / "build" / "kfp" / "local"
# Names the Python the components run on; kfp.local runs them in .venv-kfp's.
BASE_IMAGE = "python:{{ cookiecutter.python_version }}-slim"


# The body runs in a process of its own, from its source alone: it imports what it uses.
# No pip in a uv environment, and kfp is installed already: install_kfp_package=False.
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def run_stage(
    stage: str,
    source: str,
    state: str,
    model: str,
    seed: int,
    test_size: float,
    gate: dict,
    force: bool,
) -> NamedTuple("Outputs", [("next_state", str), ("gate_result", str)]):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(source) / "pipelines"))
    from steps import run_step

    params = {"model": model, "seed": seed, "test_size": test_size, "gate": gate}
    return run_step(
        stage,
        source=Path(source),
        state=state,
        params=params,
        force=force,
        create_local_remote=True,
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gate_missed(reason: str) -> None:
    raise RuntimeError(f"error: {reason}")


def local_step(stage: str, **inputs: Any) -> dsl.PipelineTask:
    return run_stage(stage=stage, source=str(PROJECT), **inputs).set_caching_options(False)


def local_gate_missed(reason: Any) -> dsl.PipelineTask:
    return gate_missed(reason=reason).set_caching_options(False)


pipeline = build(local_step, local_gate_missed)


def run(arguments: dict[str, Any], root: Path = ROOT) -> None:
    """One run of the pipeline; raises RuntimeError naming the task that failed."""
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    pipeline(**arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="re-run every stage")
    parser.add_argument("--model", default=PARAMS["train"]["model"])
    parser.add_argument("--seed", type=int, default=PARAMS["seed"])
    parser.add_argument("--test-size", type=float, default=PARAMS["data"]["test_size"])
    parser.add_argument("--gate", type=json.loads, default=PARAMS["evaluate"]["gate"])
    args = parser.parse_args(argv)
    arguments = {name: getattr(args, name) for name in ("model", "seed", "test_size", "gate")}
    try:
        run({**arguments, "force": args.force})
    except RuntimeError as error:
        print(f"{NAME}: {error}", file=sys.stderr)
        return 1
    print(f"{NAME}: done; outputs of each step under {ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
