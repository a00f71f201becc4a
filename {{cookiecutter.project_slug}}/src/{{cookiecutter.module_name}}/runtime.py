"""How a trained model will be served, decided at training: compiled arrays or a runtime.

`plan` compiles the pipeline (compiler.py) into the arrays of `inference.py` and keeps
them only when they are proven equal to it: on the training rows plus rows with a missing
value in each feature and an unseen category in each categorical one, labels must match
exactly and probabilities or values within `TOLERANCE`. Any mismatch or error (a
scikit-learn release that renamed a private attribute included) or a library version
outside `TESTED` falls back to serving the pipeline itself, with the pyproject extras and
pinned versions it needs: never a crash, never a wrong model. A pipeline with a class
nothing can install (defined in a notebook, say) is recorded as unservable, and
`export-model` refuses it. The decision is written to the model's runtime.json
(`artifact.Runtime`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from . import DISTRIBUTION
from .artifact import Runtime
from .compiler import CompileError, compile_pipeline, plain_label
from .inference import CompiledModel, Inputs
from .schema import FeatureSchema

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
PACKAGE = __name__.split(".")[0]

# Largest difference allowed between compiled and pipeline probabilities or values.
TOLERANCE = 1e-6
# The library releases (major, minor) the compiler's tests ran on, lowest and highest.
# Outside these the compiler declines and the pipeline is served as it is: widen a range
# only after `pytest tests/test_compiler.py` passed on the new release.
TESTED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "sklearn": ((1, 7), (1, 9)),
    "xgboost": ((3, 2), (3, 4)),
    "lightgbm": ((4, 7), (4, 7)),
}
# Top-level module of a class in the pipeline -> the extra of pyproject.toml that installs
# it for serving. Add your own library here and to that extra.
RUNTIME_EXTRAS = {"sklearn": "pipeline", "xgboost": "xgboost", "lightgbm": "lightgbm"}
# Modules that come with the pipeline extra or with Python itself.
WITH_THE_PIPELINE = {"builtins", "collections", "numpy", "scipy", "pandas", "functools"}
WITH_THE_PIPELINE |= {"operator", "math", "datetime", PACKAGE}
# Debian packages an extra needs in the image: LightGBM's wheel links the system OpenMP.
SYSTEM_PACKAGES = {"lightgbm": ["libgomp1"]}
UNSEEN = "<a category never seen in training>"


@dataclass
class ServingPlan:
    runtime: Runtime
    compiled: CompiledModel | None
    # what serves the pipeline itself (MLflow's pyfunc, or the fallback): name==version
    pipeline_requirements: list[str] = field(default_factory=list)


def plan(pipeline: Any, frame: pd.DataFrame, schema: FeatureSchema) -> ServingPlan:
    """Compile and check `pipeline` (fitted on `frame`, the model's input), else a runtime."""
    extras, unservable = needed_extras(pipeline)
    packages = extra_packages(extras)
    requirements = [f"{name}=={version}" for name, version in packages.items()]
    libraries = used_libraries(extras)
    try:
        declined = outside_tested(libraries)
        if declined:
            raise CompileError(declined)
        compiled = compile_pipeline(pipeline, frame)
        error = verify(compiled, pipeline, probe_rows(frame, schema), schema)
    except CompileError as problem:
        reason = str(problem)
    except Exception as problem:  # a library changed under the compiler: serve the pipeline
        reason = f"the compiler failed ({type(problem).__name__}: {problem})"
    else:
        runtime = Runtime(predictor="compiled", compiled_from=libraries, max_error=error)
        return ServingPlan(runtime, compiled, requirements)
    if unservable:
        runtime = Runtime(predictor="none", reason=unservable)
        log.warning("nothing can serve this model: %s", unservable)
        return ServingPlan(runtime, None, requirements)
    system = sorted({package for extra in extras for package in SYSTEM_PACKAGES.get(extra, [])})
    runtime = Runtime(
        predictor="pipeline", reason=reason, extras=extras, packages=packages, system=system
    )
    log.warning("the model will be served by its pipeline (%s): %s", ", ".join(extras), reason)
    return ServingPlan(runtime, None, requirements)


def step_types(step: Any) -> set[str]:
    """'module.Class' of the step and of every object it holds, as skops records them."""
    import skops.io

    found = set(skops.io.get_untrusted_types(data=skops.io.dumps(step)))
    found.add(f"{type(step).__module__}.{type(step).__qualname__}")
    return found


def needed_extras(pipeline: Any) -> tuple[list[str], str]:
    """(extras that serve the pipeline, why nothing can serve it or "")."""
    extras = {"pipeline"}
    for name, step in pipeline.steps:
        for qualified in sorted(step_types(step)):
            root = qualified.split(".")[0]
            if root in RUNTIME_EXTRAS:
                extras.add(RUNTIME_EXTRAS[root])
            elif root == "__main__":
                return [], (
                    f"step {name!r}: {qualified} is defined in a notebook or script "
                    f"(__main__), which no server can import: move it to {PACKAGE}/custom.py"
                )
            elif root not in WITH_THE_PIPELINE:
                return [], (
                    f"step {name!r}: {qualified} comes from {root!r}, which no extra of "
                    f"pyproject.toml installs for serving: add its distribution to the "
                    f"'pipeline' extra and {root!r} to RUNTIME_EXTRAS in {PACKAGE}/runtime.py"
                )
    return sorted(extras), ""


def extra_packages(extras: list[str]) -> dict[str, str]:
    """distribution -> installed version, for what the extras of this project list."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:  # running from a source tree: nothing to pin
        return {}
    packages = {}
    for requirement in requirements:
        marker = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if marker and marker.group(1) in extras:
            name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
            try:
                packages[name] = metadata.version(name)
            except metadata.PackageNotFoundError:  # another platform's (xgboost on macOS)
                continue
    return dict(sorted(packages.items()))


def used_libraries(extras: list[str]) -> dict[str, str]:
    """Versions of the libraries whose fitted objects the compiler reads."""
    import sklearn

    versions = {"sklearn": sklearn.__version__}
    if "xgboost" in extras:
        import xgboost

        versions["xgboost"] = xgboost.__version__
    if "lightgbm" in extras:
        import lightgbm

        versions["lightgbm"] = lightgbm.__version__
    return versions


def release(version: str) -> tuple[int, int]:
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return major, minor


def outside_tested(libraries: dict[str, str]) -> str:
    """Why the compiler declines these library versions, or ""."""
    for library, version in libraries.items():
        low, high = TESTED[library]
        if not low <= release(version) <= high:
            tested = f"{low[0]}.{low[1]} to {high[0]}.{high[1]}"
            return f"{library} {version} is outside the releases the compiler knows: {tested}"
    return ""


def probe_rows(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The training rows, plus rows with a missing value and an unseen category per feature."""
    import pandas as pd

    first = frame.head(1)
    extra = [first.assign(**{name: np.nan}) for name in schema.names]
    extra.append(first.assign(**dict.fromkeys(schema.names, np.nan)))
    extra += [first.assign(**{name: UNSEEN}) for name in schema.categorical]
    if schema.categorical:
        extra.append(first.assign(**dict.fromkeys(schema.categorical, UNSEEN)))
    probes = pd.concat([frame, *extra], ignore_index=True)
    for name in schema.categorical:  # NaN as missing, the rest as text: to_model_frame's types
        probes[name] = probes[name].astype(object)
    return probes


def verify(
    compiled: CompiledModel, pipeline: Any, rows: pd.DataFrame, schema: FeatureSchema
) -> float:
    """The largest difference from the pipeline on `rows`; CompileError if over TOLERANCE."""
    predicted, probabilities = compiled.predict(Inputs.from_frame(rows, schema))
    if schema.task == "classification":
        expected = np.asarray(pipeline.predict_proba(rows), dtype=float)
        if probabilities is None or probabilities.shape != expected.shape:
            raise CompileError("the compiled model gives no probabilities of the same shape")
        labels = [plain_label(label) for label in pipeline.predict(rows)]
        wrong = sum(ours != theirs for ours, theirs in zip(predicted.tolist(), labels, strict=True))
        if wrong:
            raise CompileError(f"the compiled model predicts another class on {wrong} row(s)")
        error = float(np.max(np.abs(probabilities - expected)))
    else:
        expected = np.asarray(pipeline.predict(rows), dtype=float)
        error = float(np.max(np.abs(np.asarray(predicted, dtype=float) - expected)))
    if not error <= TOLERANCE:  # NaN fails too
        raise CompileError(f"the compiled model differs from the pipeline by {error:.3g}")
    return error
