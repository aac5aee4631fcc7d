#!/bin/sh
# The official redis image's behaviour: `redis-server ARGS` runs as user redis with protected mode off and
# listening on every interface of the container (Debian's binary defaults to protected mode on).
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  if [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no "$@"
  fi
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
