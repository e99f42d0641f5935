#!/usr/bin/env bash
# Start Redis and PostgreSQL on loopback for the scale-out tests and write
# their URLs to .ci/services.env. Idempotent; needs root (CI, dev machines).
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT=${REDIS_PORT:-6390}
PG_PORT=${PG_PORT:-5439}
PG_DIR=${PG_DIR:-/tmp/seadragon-pg}

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --logfile /tmp/seadragon-redis.log
fi

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if ! "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; then
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  chown postgres:postgres "$PG_DIR"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
fi
for _ in $(seq 50); do
  "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1 && break
  sleep 0.2
done
redis-cli -p "$REDIS_PORT" ping >/dev/null

cat > .ci/services.env <<ENV
export SEADRAGON_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export SEADRAGON_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$PG_PORT/postgres
ENV
echo "services: redis on $REDIS_PORT, postgresql on $PG_PORT"
