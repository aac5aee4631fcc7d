#!/bin/sh
# `mlflow server` for the compose stack (docker/mlflow.Dockerfile), from environment variables:
#   MLFLOW_BACKEND_STORE_URI  required, e.g. postgresql+psycopg://user:password@postgres:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  where proxied artifacts go (default /mlartifacts, a volume)
#   MLFLOW_ALLOWED_HOSTS      extra Host headers to accept, comma-separated (the defaults below cover the
#                             service name and loopback on any port; a public name needs adding here)
#   MLFLOW_WORKERS            uvicorn workers (default 2)
# Extra arguments are passed to `mlflow server`. MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (image default)
# skips MLflow 3's job runner: ready in ~9 s with 0.5 GB instead of ~26 s and 1.6 GB.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?MLFLOW_BACKEND_STORE_URI must be set (e.g. postgresql+psycopg://user:password@postgres:5432/mlflow)}"
# Matched against the whole Host header, port included: "localhost" alone would refuse "localhost:5000".
hosts="mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"
# Multiprocess metric files of a previous run would add up into this one's.
rm -rf /home/mlflow/metrics && mkdir -p /home/mlflow/metrics
[ -z "${MLFLOW_ALLOWED_HOSTS:-}" ] || hosts="$hosts,$MLFLOW_ALLOWED_HOSTS"
exec mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --serve-artifacts \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
  --host 0.0.0.0 \
  --port 5000 \
  --workers "${MLFLOW_WORKERS:-2}" \
  --allowed-hosts "$hosts" \
  --expose-prometheus /home/mlflow/metrics \
  "$@"
