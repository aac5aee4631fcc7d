#!/usr/bin/env bash
# The README's promise, tested as a new user meets it: on Debian 12 with only python3, python3-venv, git and
# make, as a non-root user, in a fresh clone of this repository's HEAD, `make run` and then `make test` pass,
# and the only skips are the documented ones for external tools (promtool, prometheus, chromium).
#
# Usage: docker/bare-machine/run.sh   (or `make bare-test`). Needs Docker; docker/ensure-engine.sh provides an
# engine and, on machines that cannot pull, a local stand-in for debian:bookworm-slim.
# The clone is of HEAD: commit first. What the machine is configured with to reach the package index (proxy and
# index variables, its CA bundle) is passed through; nothing else of the host enters the container.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
log() { printf 'bare-machine: %s\n' "$*" >&2; }
if [[ -z "${DOCKER:-}" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
image=mlops-recipes/bare-machine:bookworm
# The one skip reason the suite may report here (tests/support/tools.py SKIP_PREFIX).
allowed_skip="external tools not found"

"$repo/docker/ensure-engine.sh" debian:bookworm-slim
DOCKER_BUILDKIT=1 "$DOCKER" build -q -t "$image" "$here" >/dev/null

workdir="$(mktemp -d /tmp/mlops-bare-machine.XXXXXX)"
trap 'rm -rf "$workdir"' EXIT
git clone -q --no-hardlinks "$repo" "$workdir/mlops-recipes"
log "fresh clone of $(git -C "$workdir/mlops-recipes" rev-parse --short HEAD) in $workdir"
# The image's user is uid 1000; the clone must be theirs (as after their own `git clone`).
if [[ "$(id -u)" = 0 ]]; then chown -R 1000:1000 "$workdir"; else chmod -R a+rwX "$workdir"; fi

run_args=(--rm --init --user 1000:1000 -v "$workdir/mlops-recipes:/home/user/mlops-recipes" -w /home/user/mlops-recipes)
for name in UV_PYTHON_DOWNLOADS UV_INDEX_URL UV_DEFAULT_INDEX UV_EXTRA_INDEX_URL PIP_INDEX_URL PIP_EXTRA_INDEX_URL \
            HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  if [[ -n "${!name:-}" ]]; then run_args+=(-e "$name=${!name}"); fi
done
# The package index may be reached through this machine's CA (a TLS-inspecting proxy).
ca_bundle="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
if [[ -f "$ca_bundle" ]]; then
  run_args+=(-v "$ca_bundle:/etc/machine-ca.crt:ro")
  for name in SSL_CERT_FILE PIP_CERT REQUESTS_CA_BUNDLE GIT_SSL_CAINFO; do run_args+=(-e "$name=/etc/machine-ca.crt"); done
fi

output="$workdir/output.log"
started=$(date +%s)
status=0
"$DOCKER" run "${run_args[@]}" "$image" bash -c 'make run && make test' 2>&1 | tee "$output" || status=$?
log "make run && make test: exit $status in $(( $(date +%s) - started )) s"
if [[ $status -ne 0 ]]; then
  exit "$status"
fi
unexpected="$(grep -E '^SKIPPED' "$output" | grep -vF "$allowed_skip" || true)"
if [[ -n "$unexpected" ]]; then
  log "error: skips other than the documented tool skips:"
  printf '%s\n' "$unexpected" >&2
  exit 1
fi
if ! grep -qE '^=+ .*[0-9]+ passed' "$output"; then
  log "error: the test run reported no passed tests"
  exit 1
fi
log "ok: the README's two commands pass on a bare Debian 12 as a non-root user"
