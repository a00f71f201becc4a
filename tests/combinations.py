"""Named option combinations: every value of every option is baked at least once."""

from __future__ import annotations

import pytest

HOSTILE_NAME = 'Zoë\'s "Quoted" Model: #1 & Co'
HOSTILE_TEXT = "Colons: yes; hashes # too, 'single' & \"double\" quotes, back\\slash, $HOME, 漢字 ✓"

SUPPORTED_COMBINATIONS = [
    pytest.param({}, id="default"),
    pytest.param(
        {
            # the longest names allowed: rendered code must still fit its line length
            "project_slug": "customer-lifetime-value-forecasting-service-for-retail-analytic",
            "module_name": "customer_lifetime_value_forecasting_service_for_retail_analytic",
            "task": "regression",
            "model": "random_forest",
            "python_version": "3.10",
            "dvc_remote": "none",
            "ci": "none",
            "deploy": "none",
            "monitoring": "none",
            "docker_compose": "no",
            "open_source_license": "Proprietary",
            "initialize_git": "no",
        },
        id="regression-minimal-long-names-py310",
    ),
    pytest.param(
        {
            "model": "linear",
            "python_version": "3.12",
            "dvc_remote": "s3",
            "dvc_remote_url": "s3://ml-bucket/dvc",
            "mlflow_tracking_uri": "https://mlflow.example.com",
            "open_source_license": "Apache-2.0",
            "monitoring": "none",
        },
        id="s3-remote-server-py312",
    ),
    pytest.param(
        {
            "task": "regression",
            "model": "hist_gradient_boosting",
            "python_version": "3.13",
            "dvc_remote": "gcs",
            "dvc_remote_url": "gs://ml-bucket/dvc",
            "mlflow_tracking_uri": "postgresql://mlflow@db.internal:5432/mlflow",
            "open_source_license": "BSD-3-Clause",
            "docker_compose": "no",
        },
        id="gcs-postgres-py313",
    ),
    pytest.param(
        {
            "task": "regression",
            "model": "linear",
            "dvc_remote": "azure",
            "dvc_remote_url": "azure://ml-container/dvc",
            "mlflow_tracking_uri": "databricks",
            "deploy": "none",
            "ci": "github",
        },
        id="azure-databricks",
    ),
    pytest.param(
        {
            "project_name": "Churn Model",
            "project_slug": "churn-model",
            "module_name": "churn",
            "dvc_remote_url": "/srv/dvc-store",
            "mlflow_tracking_uri": "http://127.0.0.1:5000",
            "github_owner": "Acme-Corp",
            "model": "lightgbm",
            "deploy": "kubernetes",
            "monitoring": "prometheus",
            "ci": "none",
            "orchestrator": "airflow",
        },
        id="custom-names-local-path-airflow",
    ),
    pytest.param(
        {
            "project_name": HOSTILE_NAME,
            "description": HOSTILE_TEXT,
            "author_name": 'Seán O\'Brien "The Dev" #1',
            "author_email": "sean.o-brien+ml@example.co.uk",
            "model": "xgboost",
            "orchestrator": "kubeflow",
        },
        id="unusual-text-kubeflow",
    ),
    # test_feature_store_e2e.py installs and checks this one (and runs its store for real)
    pytest.param({"feature_store": "feast"}, id="feast"),
]


# answers, the key the hook must name, a fragment of the reason
UNSUPPORTED_COMBINATIONS = [
    pytest.param({"project_slug": "My Project"}, "project_slug", "not a valid", id="slug-space"),
    pytest.param({"project_slug": "a/b"}, "project_slug", "not a valid", id="slug-path"),
    pytest.param(
        {"project_slug": "a" * 45, "module_name": "long_slug"},
        "project_slug",
        "cannot name the Kubernetes objects",
        id="slug-too-long-for-kubernetes",
    ),
    pytest.param({"module_name": "json"}, "module_name", "standard library", id="module-stdlib"),
    pytest.param({"module_name": "mlflow"}, "module_name", "shadows a package", id="module-dep"),
    pytest.param({"module_name": "class"}, "module_name", "keyword", id="module-keyword"),
    pytest.param({"module_name": "tests"}, "module_name", "shadows", id="module-tests"),
    pytest.param({"project_name": "3D Vision"}, "module_name", "identifier", id="module-digit"),
    pytest.param({"author_email": "not-an-email"}, "author_email", "not an email", id="email"),
    pytest.param({"github_owner": "-bad-"}, "github_owner", "GitHub", id="owner-ci"),
    pytest.param(
        {"github_owner": "bad owner", "ci": "none", "deploy": "kubernetes"},
        "github_owner",
        "GitHub",
        id="owner-kubernetes",
    ),
    pytest.param(
        {"mlflow_tracking_uri": "./mlruns"}, "mlflow_tracking_uri", "file store", id="uri-mlruns"
    ),
    pytest.param(
        {"mlflow_tracking_uri": "ftp://host/x"}, "mlflow_tracking_uri", "scheme", id="uri-ftp"
    ),
    pytest.param(
        {"mlflow_tracking_uri": "postgresql+asyncpg://mlflow@db/mlflow"},
        "mlflow_tracking_uri",
        "driver 'postgresql+asyncpg'",
        id="uri-postgres-driver",
    ),
    pytest.param({"dvc_remote": "s3"}, "dvc_remote_url", "required", id="s3-without-url"),
    pytest.param(
        {"dvc_remote": "gcs", "dvc_remote_url": "s3://bucket"},
        "dvc_remote_url",
        "does not match",
        id="gcs-with-s3-url",
    ),
    pytest.param(
        {"dvc_remote": "local", "dvc_remote_url": "s3://bucket"},
        "dvc_remote_url",
        "takes a directory",
        id="local-with-url",
    ),
    pytest.param(
        {"dvc_remote": "none", "dvc_remote_url": "/srv/dvc"},
        "dvc_remote_url",
        "ignore",
        id="none-with-url",
    ),
    pytest.param({"description": "two\nlines"}, "description", "line break", id="multiline"),
    pytest.param({"project_name": "<script>"}, "project_name", "'<'", id="html-in-name"),
    pytest.param(
        {"orchestrator": "kubeflow", "deploy": "none"},
        "orchestrator",
        "choose deploy=kubernetes",
        id="kubeflow-without-kubernetes",
    ),
    pytest.param(
        {"feature_store": "feast", "orchestrator": "airflow"},
        "feature_store",
        "choose orchestrator=none",
        id="feast-with-an-orchestrator",
    ),
]
