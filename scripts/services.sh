#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the test suite talks to are running on
# 127.0.0.1 (CI machines start them; this starts them if they stopped).
# Exits non-zero when PostgreSQL cannot be reached: the suite must not skip it.
set -u
pg_url="${PHARMO2O_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! pg_ready; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  fi
fi
if ! pg_ready; then
  echo "error: PostgreSQL is not reachable on 127.0.0.1:5432 ($pg_url); the suite runs against it and will not skip it" >&2
  exit 1
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis" >&2
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
  fi
fi
exit 0
