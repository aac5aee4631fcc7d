#!/bin/sh
# Prometheus of the compose stack: the Prefect server's /api/metrics needs its auth string, which Prometheus
# reads from a file (basic_auth.password_file in prometheus.compose.yml). The file is written here from the
# environment, readable by this user only, and Prometheus then replaces this shell (exec: PID 1, signals).
#   PREFECT_API_PASSWORD  required: the password part of the Prefect server's auth string (user "prefect")
set -eu
: "${PREFECT_API_PASSWORD:?PREFECT_API_PASSWORD must be set}"
credentials=/tmp/prometheus-secrets
umask 077
mkdir -p "$credentials"
printf '%s' "$PREFECT_API_PASSWORD" > "$credentials/prefect-api-password"
exec /bin/prometheus "$@"
