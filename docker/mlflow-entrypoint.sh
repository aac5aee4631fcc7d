#!/bin/sh
# `mlflow server` with MLflow's basic-auth app for the compose stack (docker/mlflow.Dockerfile), from the
# environment; no secret is put on a command line (the CLI reads MLFLOW_BACKEND_STORE_URI itself, the auth
# database URL goes into a config file only this user can read):
#   MLFLOW_BACKEND_STORE_URI      required, e.g. postgresql+psycopg://mlflow:password@postgres:5432/mlflow
#   MLFLOW_AUTH_DATABASE_URI      required: users and permissions, e.g. ...@postgres:5432/mlflow_auth
#   MLFLOW_AUTH_ADMIN_PASSWORD    required: the admin's password (MLflow uses it on the very first start only)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  required: signs the UI's CSRF tokens (the same for every worker)
#   MLFLOW_WRITER_PASSWORD, MLFLOW_READER_PASSWORD  required: the accounts of docker/mlflow-accounts.py
#   MLFLOW_ARTIFACTS_DESTINATION  where proxied artifacts go (default /mlartifacts, a volume)
#   MLFLOW_ALLOWED_HOSTS      extra Host headers to accept, comma-separated (the defaults below cover the
#                             service name and loopback on any port; a public name needs adding here)
#   MLFLOW_WORKERS            uvicorn workers (default 2)
# Extra arguments are passed to `mlflow server`. MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (image default)
# skips MLflow 3's job runner: ready in ~9 s with 0.5 GB instead of ~26 s and 1.6 GB.
#
# The server starts in the background; once it answers, mlflow-accounts makes the writer and reader accounts
# (idempotent) and writes the healthcheck's credentials: the container is healthy only after that. This shell
# stays PID 1 and passes SIGTERM/SIGINT on to the server.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?MLFLOW_BACKEND_STORE_URI must be set (e.g. postgresql+psycopg://user:password@postgres:5432/mlflow)}"
: "${MLFLOW_AUTH_DATABASE_URI:?MLFLOW_AUTH_DATABASE_URI must be set (e.g. postgresql+psycopg://user:password@postgres:5432/mlflow_auth)}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?MLFLOW_AUTH_ADMIN_PASSWORD must be set}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?MLFLOW_FLASK_SERVER_SECRET_KEY must be set}"
export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
export MLFLOW_PROBE_AUTH_FILE="${MLFLOW_PROBE_AUTH_FILE:-$HOME/.probe-auth}"
rm -f "$MLFLOW_PROBE_AUTH_FILE"

# Any account without a grant gets nothing; mlflow-accounts grants the writer and the reader theirs.
export MLFLOW_AUTH_CONFIG_PATH="$HOME/basic_auth.ini"
(
  umask 077
  cat > "$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = $MLFLOW_AUTH_DATABASE_URI
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Every request is authenticated, and checking a password hash (scrypt) costs 0.5 s of CPU here, 2 s and more
# on a busy host: remember a good password for 5 minutes per worker. The accounts' passwords change only at a
# restart (mlflow-accounts), which empties the cache; a password changed or a user deleted through the API
# may still work for up to 5 minutes on a worker that did not handle the change.
auth_cache_ttl_seconds = 300
EOF
)

# Matched against the whole Host header, port included: "localhost" alone would refuse "localhost:5000".
hosts="mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"
# Multiprocess metric files of a previous run would add up into this one's (the directory may be a volume,
# shared with the metrics exporter: empty it, don't remove it).
metrics_dir=/home/mlflow/metrics
mkdir -p "$metrics_dir" && find "$metrics_dir" -mindepth 1 -delete
[ -z "${MLFLOW_ALLOWED_HOSTS:-}" ] || hosts="$hosts,$MLFLOW_ALLOWED_HOSTS"

mlflow server \
  --app-name basic-auth \
  --serve-artifacts \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
  --host 0.0.0.0 \
  --port 5000 \
  --workers "${MLFLOW_WORKERS:-2}" \
  --allowed-hosts "$hosts" \
  --expose-prometheus "$metrics_dir" \
  "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null' TERM INT

if ! mlflow-accounts; then
  echo "mlflow-entrypoint: the accounts could not be made: stopping the server" >&2
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" || true
  exit 1
fi

status=0
wait "$server" || status=$?
# wait returns early when a trapped signal arrives: wait again for the server to finish.
while kill -0 "$server" 2>/dev/null; do wait "$server" || status=$?; done
exit "$status"
