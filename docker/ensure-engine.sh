#!/usr/bin/env bash
# Make a Docker engine and the stack's base images available, whatever the machine offers.
#
#  1. docker.io, docker-compose and debootstrap from Debian if the Docker client, Compose or debootstrap is
#     missing (needs root and apt; elsewhere install Docker yourself and this step is skipped).
#  2. dockerd started in the background if no daemon answers (log: ${DOCKERD_LOG:-/var/log/dockerd.log}).
#  3. Each base image of docker/*.Dockerfile and docker-compose.yml: used if present, else pulled (short
#     timeout), else built here as a local stand-in from Debian packages and tagged with the official name
#     (docker/base-images/, see docs/compose.md). Grafana has no stand-in: it is only needed by a full `up`.
#
# Idempotent: the second run only asks the daemon which images it has (about a second).
# Usage: ensure-engine.sh [IMAGE...]: only those base images (default: every one listed below).
# Environment: DOCKER (client binary), DEBIAN_MIRROR (default: the machine's APT mirror), PULL_TIMEOUT (s).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
log() { printf 'ensure-engine: %s\n' "$*" >&2; }

# Debian's client (20.10) has BuildKit built in; another `docker` earlier on the PATH may lack buildx.
if [[ -z "${DOCKER:-}" ]]; then
  if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi

have_compose() { command -v docker-compose >/dev/null 2>&1 || "$DOCKER" compose version >/dev/null 2>&1; }

if ! command -v "$DOCKER" >/dev/null 2>&1 || ! have_compose || ! command -v debootstrap >/dev/null 2>&1; then
  if [[ "$(id -u)" = 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing docker.io, docker-compose and debootstrap from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
    [[ -x /usr/bin/docker ]] && DOCKER=/usr/bin/docker
  elif ! command -v "$DOCKER" >/dev/null 2>&1 || ! have_compose; then
    log "error: no Docker client with Compose here, and I cannot install one (needs root and apt)"
    exit 1
  fi
fi

if ! "$DOCKER" info >/dev/null 2>&1; then
  if [[ "$(id -u)" != 0 ]] || ! command -v dockerd >/dev/null 2>&1; then
    log "error: the Docker daemon does not answer; start it (e.g. 'sudo systemctl start docker')"
    exit 1
  fi
  dockerd_log="${DOCKERD_LOG:-/var/log/dockerd.log}"
  log "starting dockerd (log: $dockerd_log)"
  setsid nohup dockerd >"$dockerd_log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$DOCKER" info >/dev/null 2>&1 || { log "error: dockerd did not come up:"; tail -n 20 "$dockerd_log" >&2; exit 1; }
fi

present() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror this machine's APT uses (deb822 or one-line sources), or DEBIAN_MIRROR; none is assumed.
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hoE '^URIs:[[:space:]]*[^[:space:]]+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v security | head -n1 || true)
  [[ -n "$uri" ]] || uri=$(grep -hoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+' \
        /etc/apt/sources.list 2>/dev/null | awk '{print $NF}' | grep -v security | head -n1 || true)
  if [[ -z "$uri" ]]; then
    log "error: no Debian mirror configured here (none in /etc/apt/sources.list*): set DEBIAN_MIRROR"
    return 1
  fi
  echo "$uri"
}

STANDIN_BASE=mlops-recipes/debian-standin:bookworm

# A minimal Debian bookworm root filesystem, imported as the parent of every stand-in.
ensure_standin_base() {
  present "$STANDIN_BASE" && return
  command -v debootstrap >/dev/null 2>&1 || { log "error: debootstrap is needed to build stand-ins"; exit 1; }
  local mirror rootfs
  mirror=$(debian_mirror) || exit 1
  rootfs=$(mktemp -d /tmp/mlops-standin-rootfs.XXXXXX)
  log "building $STANDIN_BASE with debootstrap from $mirror (about a minute)"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
    log "error: debootstrap failed:"; tail -n 20 "$rootfs.log" >&2; rm -rf "$rootfs"; exit 1
  fi
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" > "$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$STANDIN_BASE" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
}

# build_standin IMAGE DOCKERFILE: the stand-in built from docker/base-images/ and tagged IMAGE.
build_standin() {
  local image=$1 dockerfile=$2 context
  ensure_standin_base
  context=$(mktemp -d /tmp/mlops-standin-context.XXXXXX)
  cp "$here"/base-images/* "$context"/
  # The package index may be reached through this machine's CA (a TLS-inspecting proxy): the python
  # stand-in carries the machine's bundle. Debian's bundle where the machine has none of its own.
  cp "${STANDIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" "$context/ca-certificates.crt" 2>/dev/null \
    || : > "$context/ca-certificates.crt"
  log "building local stand-in $image ($dockerfile)"
  if ! DOCKER_BUILDKIT=1 "$DOCKER" build -q --build-arg "STANDIN_BASE=$STANDIN_BASE" \
      -f "$context/$dockerfile" -t "$image" "$context" >"$context.log" 2>&1; then
    log "error: building $image failed:"; tail -n 30 "$context.log" >&2; rm -rf "$context" "$context.log"; exit 1
  fi
  rm -rf "$context" "$context.log"
}

# IMAGE stand-in-Dockerfile (-: no stand-in). Keep in step with docker/**/Dockerfile and docker-compose.yml.
images=(
  "debian:bookworm-slim debian.Dockerfile"
  "python:3.11-slim-bookworm python.Dockerfile"
  "postgres:15-bookworm postgres.Dockerfile"
  "redis:7.0-bookworm redis.Dockerfile"
  "prom/prometheus:v2.42.0 prometheus.Dockerfile"
  "grafana/grafana:11.3.0 -"
)
for entry in "${images[@]}"; do
  read -r image dockerfile <<<"$entry"
  if [[ $# -gt 0 ]] && ! printf '%s\n' "$@" | grep -qxF "$image"; then
    continue
  fi
  if present "$image"; then
    continue
  fi
  if timeout "${PULL_TIMEOUT:-60}" "$DOCKER" pull -q "$image" >/dev/null 2>&1; then
    log "pulled $image"
    continue
  fi
  if [[ "$dockerfile" = - ]]; then
    log "note: $image is neither present nor pullable and has no stand-in: the stack runs without it"
    continue
  fi
  build_standin "$image" "$dockerfile"
done
log "engine ready ($("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null)), base images present"
