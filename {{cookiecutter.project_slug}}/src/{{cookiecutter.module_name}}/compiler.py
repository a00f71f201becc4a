"""A fitted pipeline as the numpy arrays of `inference.py`: compiled, not yet trusted.

Reads the fitted imputers, scaler and one-hot encoder, then the model: scikit-learn's
linear models, forests and histogram gradient boosting from their fitted attributes,
XGBoost from its documented JSON model, LightGBM from its `dump_model()`.
HistGradientBoosting keeps its trees only in private attributes, one reason why
`runtime.plan` checks every result against the pipeline before keeping it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .inference import FORMAT_VERSION, Array, CompiledModel

if TYPE_CHECKING:
    import pandas as pd


class CompileError(ValueError):
    """The pipeline has a step this module cannot reproduce with numpy."""


def compile_pipeline(pipeline: Any, frame: pd.DataFrame | None = None) -> CompiledModel:
    """Arrays and metadata of a fitted Pipeline(features=ColumnTransformer, model=…).

    `frame` (the training rows) lets XGBoost's intercept be read back exactly: its model
    file keeps it to 7 digits only.
    """
    steps = dict(pipeline.steps) if hasattr(pipeline, "steps") else {}
    if list(steps) != ["features", "model"]:
        raise CompileError(f"expected the steps features, model; found {list(steps)}")
    meta, arrays = _preprocessing(_kind(steps["features"], "ColumnTransformer"))
    model = steps["model"]
    classes = getattr(model, "classes_", None)
    if type(model).__name__ == "LabelEncodedClassifier":  # XGBoost fitted on class codes
        model = model.estimator_
    kind = type(model).__name__
    meta["classes"] = None if classes is None else [plain_label(label) for label in classes]
    meta.update(format=FORMAT_VERSION, trees="sum", float32_features=False, float32_sums=False)
    outputs = 1 if classes is None or len(classes) == 2 else len(classes)
    if kind in ("LogisticRegression", "Ridge"):
        meta["model"] = "linear"
        coef = np.atleast_2d(np.asarray(model.coef_, dtype=float))
        arrays["coef"] = coef
        arrays["intercept"] = np.atleast_1d(np.asarray(model.intercept_, dtype=float))
        if kind == "Ridge":
            meta["link"] = "identity"
        else:
            meta["link"] = "logit" if coef.shape[0] == 1 else "softmax"
    elif kind in ("RandomForestClassifier", "RandomForestRegressor"):
        trees = _forest_trees(model.estimators_, len(classes) if classes is not None else 1)
        meta.update(model="random_forest", trees="average", float32_features=True)
        meta["link"] = "proba" if classes is not None else "identity"
        arrays |= trees
    elif kind in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        meta["model"] = "hist_gradient_boosting"
        meta["link"] = _hist_link(model)
        arrays |= _hist_trees(model)
    elif kind in ("XGBClassifier", "XGBRegressor"):
        meta.update(model="xgboost", float32_features=True, float32_sums=True)
        link, trees = _xgboost_trees(model, outputs)
        meta["link"] = link
        arrays |= trees
    elif kind in ("LGBMClassifier", "LGBMRegressor"):
        meta["model"] = "lightgbm"
        link, scale, trees = _lightgbm_trees(model, outputs)
        meta.update(link=link, link_scale=scale)
        arrays |= trees
    else:
        if hasattr(model, "steps"):
            kind = f"Pipeline({', '.join(type(step).__name__ for _, step in model.steps)})"
        raise CompileError(f"model {kind} is not supported")
    compiled = CompiledModel(meta, arrays)
    if meta["model"] == "xgboost" and frame is not None:
        _calibrate_baseline(compiled, model, steps["features"].transform(frame))
    return compiled


def _kind(step: Any, kind: str) -> Any:
    if type(step).__name__ != kind:
        raise CompileError(f"expected a {kind}, found {type(step).__name__}")
    return step


def _step(pipeline: Any, name: str, kind: str) -> Any:
    step = dict(pipeline.steps).get(name) if hasattr(pipeline, "steps") else None
    if step is None or type(step).__name__ != kind:
        raise CompileError(f"expected a {kind} as step {name!r}, found {step!r}")
    return step


def _preprocessing(transformer: Any) -> tuple[dict[str, Any], dict[str, Array]]:
    meta: dict[str, Any] = {"numeric": [], "categorical": [], "categories": []}
    meta["missing_codes"] = []
    arrays: dict[str, Array] = {}
    for name, steps, columns in transformer.transformers_:
        if name == "remainder" and steps == "drop":
            continue
        if name == "numeric":
            imputer = _step(steps, "simpleimputer", "SimpleImputer")
            scaler = _step(steps, "standardscaler", "StandardScaler")
            if imputer.strategy != "median" or np.isnan(imputer.statistics_).any():
                raise CompileError("numeric imputer must be a median imputer of every column")
            meta["numeric"] = list(columns)
            arrays["median"] = np.asarray(imputer.statistics_, dtype=float)
            arrays["mean"] = np.asarray(scaler.mean_, dtype=float)
            arrays["scale"] = np.asarray(scaler.scale_, dtype=float)
        elif name == "categorical":
            imputer = _step(steps, "simpleimputer", "SimpleImputer")
            encoder = _step(steps, "onehotencoder", "OneHotEncoder")
            if imputer.strategy != "constant" or encoder.handle_unknown != "ignore":
                raise CompileError("categorical steps must be a constant imputer + ignore-unknown")
            if encoder.drop is not None or getattr(encoder, "infrequent_categories_", None):
                raise CompileError("one-hot encoding with drop or infrequent categories")
            meta["categorical"] = list(columns)
            fill = str(imputer.fill_value)
            for categories in encoder.categories_:
                labels = [str(label) for label in categories]
                meta["categories"].append(labels)
                meta["missing_codes"].append(labels.index(fill) if fill in labels else -1)
        else:
            raise CompileError(f"unknown transformer {name!r}")
    return meta, arrays


@dataclass
class _Trees:
    """Nodes of many trees gathered into one set of arrays; child indices made global."""

    outputs: int
    parts: dict[str, list[Array]] = field(default_factory=dict)
    roots: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    offset: int = 0

    def add(
        self,
        feature: Array,
        threshold: Array,
        left: Array,
        right: Array,
        missing_left: Array,
        value: Array,
        depth: int,
    ) -> None:
        """One tree; left/right are -1 at leaves, whose threshold is ignored."""
        leaf = left < 0
        own = np.arange(leaf.size)
        columns = {
            "feature": np.where(leaf, 0, feature).astype(np.int64),
            "threshold": np.where(leaf, np.inf, threshold).astype(np.float64),
            "left": np.where(leaf, own, left).astype(np.int64) + self.offset,
            "right": np.where(leaf, own, right).astype(np.int64) + self.offset,
            "missing_left": np.asarray(missing_left, dtype=bool) | leaf,
            "value": np.asarray(value).reshape(leaf.size, self.outputs),
        }
        for key, column in columns.items():
            self.parts.setdefault(key, []).append(column)
        self.roots.append(self.offset)
        self.depths.append(depth)
        self.offset += leaf.size

    def arrays(self) -> dict[str, Array]:
        if not self.roots:
            raise CompileError("the model has no trees")
        arrays = {key: np.concatenate(values) for key, values in self.parts.items()}
        left, right = arrays.pop("left"), arrays.pop("right")
        arrays["children"] = np.column_stack([left, right]).ravel()
        deepest_first = np.argsort(-np.asarray(self.depths), kind="stable")
        arrays["roots"] = np.asarray(self.roots, dtype=np.int64)[deepest_first]
        arrays["depths"] = np.asarray(self.depths, dtype=np.int64)[deepest_first]
        arrays["order"] = np.argsort(deepest_first)  # stored position of each tree, in order
        return arrays


def _forest_trees(estimators: list[Any], outputs: int) -> dict[str, Array]:
    trees = _Trees(outputs)
    for estimator in estimators:
        nodes = estimator.tree_
        count = nodes.node_count
        missing = getattr(nodes, "missing_go_to_left", np.zeros(count, dtype=bool))
        trees.add(
            nodes.feature,
            nodes.threshold,
            nodes.children_left,
            nodes.children_right,
            missing,
            nodes.value[:, 0, :outputs],
            int(nodes.max_depth),
        )
    return trees.arrays()


def _hist_link(model: Any) -> str:
    loss = type(model._loss).__name__  # private: no public name for the fitted loss
    links = {"HalfSquaredError": "identity", "HalfBinomialLoss": "logit"}
    links["HalfMultinomialLoss"] = "softmax"
    if loss not in links:
        raise CompileError(f"loss {loss} is not supported")
    return links[loss]


def _hist_trees(model: Any) -> dict[str, Array]:
    outputs = model.n_trees_per_iteration_
    trees = _Trees(outputs)
    for iteration in model._predictors:  # private: HistGradientBoosting exports no trees
        for output, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise CompileError("native categorical splits are not supported")
            leaf = nodes["is_leaf"].astype(bool)
            value = np.zeros((len(nodes), outputs))
            value[:, output] = np.where(leaf, nodes["value"], 0.0)
            trees.add(
                nodes["feature_idx"],
                nodes["num_threshold"],
                np.where(leaf, -1, nodes["left"].astype(np.int64)),
                nodes["right"],
                nodes["missing_go_to_left"],
                value,
                int(nodes["depth"].max()),
            )
    arrays = trees.arrays()
    arrays["baseline"] = np.asarray(model._baseline_prediction, dtype=float).reshape(-1)
    return arrays


XGBOOST_LINKS = {"reg:squarederror": "identity", "reg:absoluteerror": "identity"}
XGBOOST_LINKS |= {"reg:pseudohubererror": "identity", "binary:logistic": "logit"}
XGBOOST_LINKS |= {"multi:softprob": "softmax", "multi:softmax": "softmax"}


def _xgboost_trees(model: Any, outputs: int) -> tuple[str, dict[str, Array]]:
    """From XGBoost's JSON model (documented in its "Introduction to Model IO")."""
    booster = model.get_booster()
    learner = json.loads(bytes(booster.save_raw(raw_format="json")))["learner"]
    objective = learner["objective"]["name"]
    if objective not in XGBOOST_LINKS:
        raise CompileError(f"XGBoost objective {objective} is not supported")
    kind = learner["gradient_booster"]["name"]
    if kind != "gbtree":
        raise CompileError(f"XGBoost booster {kind} is not supported")
    if booster.attr("best_iteration") is not None:
        raise CompileError("XGBoost with early stopping (predictions use only some trees)")
    if not math.isnan(float(model.missing)):
        raise CompileError(f"XGBoost missing={model.missing} (only NaN is supported)")
    forest = learner["gradient_booster"]["model"]
    if int(forest["gbtree_model_param"]["num_parallel_tree"]) != 1:
        raise CompileError("XGBoost with num_parallel_tree > 1")
    trees = _Trees(outputs)
    for tree, group in zip(forest["trees"], forest["tree_info"], strict=True):
        if any(tree["split_type"]) or int(tree["tree_param"]["size_leaf_vector"]) > 1:
            raise CompileError("XGBoost categorical splits or vector leaves")
        left = np.asarray(tree["left_children"], dtype=np.int64)
        condition = np.asarray(tree["split_conditions"], dtype=np.float32)
        depth = np.zeros(left.size, dtype=np.int64)
        for node, parent in enumerate(tree["parents"][1:], start=1):  # parents come first
            depth[node] = depth[parent] + 1
        value = np.zeros((left.size, outputs), dtype=np.float32)
        value[:, group] = np.where(left < 0, condition, 0.0)
        # XGBoost goes right when x >= t, in float32: the same as x > the float32 below t
        below = np.nextafter(condition, np.float32(-np.inf))
        trees.add(
            np.asarray(tree["split_indices"]),
            below,
            left,
            np.asarray(tree["right_children"]),
            np.asarray(tree["default_left"], dtype=bool),
            value,
            int(depth.max()),
        )
    arrays = trees.arrays()
    base = np.asarray(json.loads(learner["learner_model_param"]["base_score"]), dtype=float)
    base = np.broadcast_to(base.reshape(-1), (outputs,)).copy()
    link = XGBOOST_LINKS[objective]
    if link == "logit":  # stored as a probability
        base = -np.log(1.0 / base - 1.0)
    arrays["baseline"] = base.astype(np.float32).astype(np.float64)
    return link, arrays


def _calibrate_baseline(compiled: CompiledModel, model: Any, matrix: Array) -> None:
    """The float32 intercept, per output, that reproduces XGBoost's margins to the bit.

    The model file prints the intercept to 7 digits, not the 9 a float32 needs: the exact
    value is one of its neighbours, which XGBoost's own margins on the training rows tell.
    """
    margins = np.asarray(model.predict(matrix, output_margin=True), dtype=np.float32)
    margins = margins.reshape(matrix.shape[0], -1)
    features = matrix.astype(np.float32).astype(np.float64)
    leaves = compiled.arrays["value"][compiled.leaves(features)][:, compiled.arrays["order"]]
    baseline = compiled.arrays["baseline"].astype(np.float32)
    for output in range(baseline.size):
        added = leaves[:, :, output].astype(np.float32)
        candidates = [baseline[output]]
        for direction in (np.inf, -np.inf):
            value = baseline[output]
            for _ in range(16):
                value = np.nextafter(value, np.float32(direction))
                candidates.append(value)
        for candidate in sorted(candidates, key=lambda c: abs(float(c) - float(baseline[output]))):
            start = np.full((added.shape[0], 1), candidate, dtype=np.float32)
            summed = np.cumsum(np.hstack([start, added]), axis=1, dtype=np.float32)[:, -1]
            if np.array_equal(summed, margins[:, output]):
                baseline[output] = candidate
                break
    compiled.arrays["baseline"] = baseline.astype(np.float64)


LIGHTGBM_IDENTITY = {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}


def _lightgbm_trees(model: Any, outputs: int) -> tuple[str, float, dict[str, Array]]:
    """From LightGBM's `dump_model()` JSON: the trees predictions use (best iteration)."""
    dump = model.booster_.dump_model()
    objective, *options = str(dump["objective"]).split()
    settings = dict(option.split(":", 1) for option in options if ":" in option)
    if objective == "binary":
        link, scale = "logit", float(settings.get("sigmoid", 1.0))
    elif objective == "multiclass":
        link, scale = "softmax", 1.0
    elif objective in LIGHTGBM_IDENTITY:
        link, scale = "identity", 1.0
    else:
        raise CompileError(f"LightGBM objective {objective} is not supported")
    if dump.get("average_output"):
        raise CompileError("LightGBM random forest mode (average_output)")
    per_iteration = int(dump["num_tree_per_iteration"])
    trees = _Trees(outputs)
    for index, info in enumerate(dump["tree_info"]):
        nodes = _lightgbm_nodes(info["tree_structure"])
        count = len(nodes)
        value = np.zeros((count, outputs))
        value[:, index % per_iteration] = [node.get("leaf_value", 0.0) for node in nodes]
        trees.add(
            np.asarray([node.get("split_feature", 0) for node in nodes]),
            np.asarray([node.get("threshold", np.inf) for node in nodes], dtype=float),
            np.asarray([node.get("left", -1) for node in nodes]),
            np.asarray([node.get("right", -1) for node in nodes]),
            np.asarray([node.get("missing_left", True) for node in nodes]),
            value,
            max(node["depth"] for node in nodes),
        )
    arrays = trees.arrays()
    arrays["baseline"] = np.zeros(outputs)
    return link, scale, arrays


def _lightgbm_nodes(root: dict[str, Any]) -> list[dict[str, Any]]:
    """A tree's nested dicts as a list: node i with 'left'/'right' indices and its depth."""
    nodes: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], int, tuple[int, str] | None]] = [(root, 0, None)]
    while pending:
        source, depth, parent = pending.pop()
        index = len(nodes)
        if parent is not None:
            nodes[parent[0]][parent[1]] = index
        if "leaf_value" in source:
            if "leaf_coeff" in source:
                raise CompileError("LightGBM linear trees")
            nodes.append({"leaf_value": float(source["leaf_value"]), "depth": depth})
            continue
        if source["decision_type"] != "<=":
            raise CompileError("LightGBM categorical splits")
        threshold = float(source["threshold"])
        missing = source["missing_type"]
        if missing == "NaN":
            missing_left = bool(source["default_left"])
        elif missing == "None":  # LightGBM reads a missing value as 0.0 there
            missing_left = threshold >= 0.0
        else:
            raise CompileError(f"LightGBM missing_type {missing}")
        nodes.append(
            {
                "split_feature": int(source["split_feature"]),
                "threshold": threshold,
                "missing_left": missing_left,
                "depth": depth,
            }
        )
        pending.append((source["right_child"], depth + 1, (index, "right")))
        pending.append((source["left_child"], depth + 1, (index, "left")))
    return nodes


def plain_label(label: Any) -> Any:
    """A class label as JSON keeps it (numpy scalars become Python ones)."""
    return label.item() if isinstance(label, np.generic) else label
