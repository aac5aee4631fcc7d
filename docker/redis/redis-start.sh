#!/bin/sh
# Redis of the compose stack (the Feast online store), with a password that is on no command line: the whole
# configuration is read from stdin (`redis-server -`). Mounted into the redis image and run as user redis.
#   REDIS_PASSWORD  required; clients send it (Feast: `password=` in FEAST_REDIS_CONNECTION, redis-cli:
#                   REDISCLI_AUTH)
# A snapshot every minute after a change: online features survive a restart (rematerialize otherwise).
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD must be set}"
exec redis-server - <<CONF
requirepass $REDIS_PASSWORD
dir /data
save 60 1
appendonly no
CONF
