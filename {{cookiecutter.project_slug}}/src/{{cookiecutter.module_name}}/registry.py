"""The model registry by alias: register, compare, promote, roll back, list.

`@challenger` is the newest registered version; `@champion` is the one to serve. A new
version takes `@champion` only if it beats it on the primary metric, both scored on the
same test set. Each promotion records the version it replaced in the tag
`previous_champion`, which is what `rollback` follows. Registry stages are deprecated in
MLflow and are never used.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from .config import Params, Paths, Settings
from .errors import RegistryError
from .metrics import is_better

CHAMPION = "champion"
CHALLENGER = "challenger"


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote(client: MlflowClient, name: str, version: str) -> str | None:
    """Give `version` the champion alias; return the version that held it, if any."""
    try:
        client.get_model_version(name, version)
    except MlflowException as error:
        raise RegistryError(f"{name} has no version {version}") from error
    current = alias_version(client, name, CHAMPION)
    # MLflow gives versions as int or str depending on the store; compare as text
    previous = str(current.version) if current is not None else None
    if previous == version:
        return previous
    client.set_registered_model_alias(name, CHAMPION, version)
    if previous is not None:
        client.set_model_version_tag(name, version, "previous_champion", previous)
    promoted_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    client.set_model_version_tag(name, version, "promoted_at", promoted_at)
    return previous


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Move the champion alias back to the version it replaced; return (from, to)."""
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no @{CHAMPION} to roll back")
    version = str(current.version)
    previous = current.tags.get("previous_champion")
    if not previous:
        raise RegistryError(
            f"{name} version {version} has no previous champion recorded; "
            "use `promote <version>` to choose one"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, version, "rolled_back_to", previous)
    return version, previous


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    pipeline: Any  # None: this version cannot be loaded here (say, its code is gone)


def load_champion(settings: Settings) -> Champion | None:
    """@champion with its pipeline loaded; None when there is no champion yet."""
    from . import tracking
    from .artifact import load_pipeline_uri

    tracking.configure(settings)
    found = alias_version(MlflowClient(), settings.model_name, CHAMPION)
    if found is None:
        return None
    version = str(found.version)
    try:
        pipeline = load_pipeline_uri(f"models:/{settings.model_name}/{version}")
    except (MlflowException, ImportError, OSError):
        pipeline = None
    return Champion(version, str(found.run_id), pipeline)


def champion_score(
    client: MlflowClient, name: str, champion: ModelVersion, params: Params
) -> float | None:
    """The champion's primary metric on today's test split; None if it cannot score it."""
    from .artifact import load_pipeline_uri
    from .data import read_split
    from .metrics import score
    from .schema import FeatureSchema, to_model_frame

    schema = FeatureSchema.load(Paths.schema)
    raw, labels = read_split(Paths.test, schema)
    try:
        model = load_pipeline_uri(f"models:/{name}/{champion.version}")
        scores = score(model, to_model_frame(raw, schema), labels, params.task)
    except (MlflowException, KeyError, ValueError):
        # e.g. the features changed since the champion was trained
        return None
    return scores[params.registry.primary_metric]


def register(params: Params, settings: Settings) -> dict[str, Any]:
    """Register the trained model, make it @challenger, and @champion if it is better."""
    from . import tracking

    run = json.loads(Paths.run.read_text(encoding="utf-8"))
    metric = params.registry.primary_metric
    scores = json.loads(Paths.metrics.read_text(encoding="utf-8"))
    challenger_score = scores[metric]
    tracking.log_test_results(settings, scores, passed=True)
    client = MlflowClient()
    name = settings.model_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"{params.task} model of this project")
    champion = alias_version(client, name, CHAMPION)

    # What mlflow.register_model does, without its "already exists" line on stderr.
    model_uri = str(run["model_uri"])
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") else None
    created = client.create_model_version(
        name, source=model_uri, run_id=run["run_id"], model_id=model_id
    )
    version = str(created.version)
    client.set_registered_model_alias(name, CHALLENGER, version)

    incumbent = champion_score(client, name, champion, params) if champion else None
    if champion is None:
        decision, promoted = "promoted: no champion yet", True
    elif incumbent is None:
        decision, promoted = f"promoted: champion v{champion.version} cannot score this data", True
    elif is_better(metric, challenger_score, incumbent):
        decision, promoted = f"promoted: {metric} beats champion v{champion.version}", True
    else:
        decision, promoted = f"kept champion v{champion.version}: {metric} not better", False
    if promoted:
        promote(client, name, version)

    record = {
        "model_name": name,
        "version": version,
        "primary_metric": metric,
        "challenger_score": challenger_score,
        "champion_version": str(champion.version) if champion else None,
        "champion_score": incumbent,
        "decision": decision,
        "champion": version if promoted else str(champion.version) if champion else None,
    }
    tags = {key: record[key] for key in ("primary_metric", "challenger_score", "decision")}
    tags["champion_score"] = record["champion_score"]
    tags["compared_with"] = record["champion_version"]
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, "" if value is None else str(value))
    Paths.registration.parent.mkdir(parents=True, exist_ok=True)
    Paths.registration.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def list_versions(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every version, newest first, with its aliases and the tags register writes."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        raise RegistryError(f"no registered model named {name!r} yet: run the pipeline") from error
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for version in client.search_model_versions(f"name = '{name}'"):
        rows.append(
            {
                "version": str(version.version),
                "aliases": sorted(aliases.get(str(version.version), [])),
                "primary_metric": version.tags.get("primary_metric", ""),
                "score": version.tags.get("challenger_score", ""),
                "decision": version.tags.get("decision", ""),
                "run_id": version.run_id,
                "created": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(version.creation_timestamp / 1000)
                ),
            }
        )
    return sorted(rows, key=lambda row: int(row["version"]), reverse=True)
