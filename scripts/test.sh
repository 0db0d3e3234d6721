#!/usr/bin/env bash
# The whole suite, twice: on the embedded SQLite default and on PostgreSQL.
# Called by `make test` (after the virtual environment is installed) and so by CI.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k orders -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

bash scripts/system-deps.sh   # chromium for the browser tests, installed with apt-get when missing
bash scripts/services.sh      # PostgreSQL (required) and Redis on 127.0.0.1

status=0
for backend in sqlite postgresql; do
  echo "=== pharmo2o test suite on ${backend} ==="
  PHARMO2O_TEST_DATABASE="$backend" "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "=== suite FAILED on ${backend} (exit ${status}) ===" >&2
    exit "$status"
  fi
done
echo "=== suite passed on sqlite and postgresql ==="
