#!/bin/sh
# Entrypoint of the app image: one codebase, several roles, chosen by the container's command.
#
#   serve           the scoring service (python -m serving) on 0.0.0.0:8000        (default)
#   stream          the stream scorer (python -m serving.stream), /metrics on STREAM_METRICS_PORT
#   train           the whole pipeline once (dvc repro) in the workspace, then the champion summary
#   worker          register the deployments of flows/prefect.yaml, then a Prefect process worker
#   prefect-server  the Prefect API and UI on 0.0.0.0:4200 (database: PREFECT_API_DATABASE_CONNECTION_URL)
#   anything else   run as is, e.g. `mlops status`, `dvc status`, `sh`
#
# Pipeline roles (train, worker) run in the workspace, MLOPS_WORKSPACE (a volume): DVC needs its outputs,
# dvc.lock and cache next to dvc.yaml, and the train job and the worker share them. At every start the
# pipeline definition, the data contract, the rollout plan and the code are copied there from the image (a
# changed image wins, so the service and the pipeline read the same contract); params.yaml only when
# missing: after that it is the workspace's own (replace it with `docker compose cp`). There is no .git in
# the workspace, so DVC runs with core.no_scm.
set -eu

log() { printf 'mlops-entrypoint: %s\n' "$*" >&2; }

# Files the pipeline needs in the workspace, refreshed from the image (only those that differ are written,
# atomically, under a lock: the train job and the worker may start at the same time).
prepare_workspace() {
  ws="${MLOPS_WORKSPACE:-/workspace}"
  mkdir -p "$ws/.dvc" "$ws/incoming"
  exec 9>"$ws/.workspace.lock"
  flock 9
  (cd /app && find dvc.yaml contract.yaml .dvcignore .dvc/config feature_repo src serving flows monitoring incoming -type f) |
    while IFS= read -r file; do
      if ! cmp -s "/app/$file" "$ws/$file" 2>/dev/null; then
        mkdir -p "$(dirname "$ws/$file")"
        cp "/app/$file" "$ws/$file.tmp.$$" && mv -f "$ws/$file.tmp.$$" "$ws/$file"
      fi
    done
  [ -f "$ws/params.yaml" ] || cp /app/params.yaml "$ws/params.yaml"
  printf '[core]\n    no_scm = true\n' > "$ws/.dvc/config.local"
  flock -u 9
  exec 9>&-
  export MLOPS_PROJECT_ROOT="$ws"
  cd "$ws"
}

# Run a command as a child and pass SIGTERM/SIGINT on (a shell as PID 1 would ignore them).
run_child() {
  "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null' TERM INT
  status=0
  wait "$child" || status=$?
  # wait returns early when a trapped signal arrives: wait again for the child to finish.
  while kill -0 "$child" 2>/dev/null; do wait "$child" || status=$?; done
  trap - TERM INT
  return "$status"
}

role="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$role" in
  serve)
    exec python -m serving --host 0.0.0.0 --port 8000 "$@"
    ;;
  stream)
    exec python -m serving.stream "$@"
    ;;
  train)
    prepare_workspace
    log "dvc repro in $MLOPS_PROJECT_ROOT (tracking: ${MLFLOW_TRACKING_URI:-embedded}, features: ${FEAST_CONFIG:-feature_store.yaml})"
    run_child dvc repro "$@"
    exec mlops summary
    ;;
  worker)
    prepare_workspace
    pool="${PREFECT_WORK_POOL:-mlops-process}"
    prefect --no-prompt work-pool create "$pool" --type process --overwrite >/dev/null
    prefect --no-prompt deploy --all --prefect-file flows/prefect.yaml
    exec prefect worker start --pool "$pool" --type process --with-healthcheck "$@"
    ;;
  prefect-server)
    exec prefect server start --host 0.0.0.0 --port 4200 "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
