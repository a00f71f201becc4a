#!/bin/sh
# MLflow's tracking server: runs and the model registry in PostgreSQL, artifacts in S3
# (proxied: clients need no S3 credentials). The compose service runs this file, and so
# do the template's tests; every setting comes from the environment:
#   POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB
#   MLFLOW_BUCKET, MLFLOW_S3_ENDPOINT_URL (MinIO), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#   MLFLOW_PORT (5000), MLFLOW_HOST (0.0.0.0), MLFLOW_SERVER_ALLOWED_HOSTS
set -eu
# libpq reads the password from PGPASSWORD: it stays out of the URL (no escaping) and
# out of the process list.
export PGPASSWORD="${POSTGRES_PASSWORD:?}"
exec mlflow server \
  --host "${MLFLOW_HOST:-0.0.0.0}" \
  --port "${MLFLOW_PORT:-5000}" \
  --backend-store-uri "postgresql+psycopg://${POSTGRES_USER:?}@${POSTGRES_HOST:?}:${POSTGRES_PORT:-5432}/${POSTGRES_DB:?}" \
  --artifacts-destination "s3://${MLFLOW_BUCKET:?}/"
