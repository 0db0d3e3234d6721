#!/usr/bin/env bash
# The whole suite, twice: on the embedded SQLite default and on PostgreSQL.
# Called by `make test` (after the virtual environment is installed) and so by CI.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k orders -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

bash scripts/system-deps.sh   # chromium for the browser tests, installed with apt-get when missing
bash scripts/services.sh      # PostgreSQL (required) and Redis on 127.0.0.1

# The example third-party plugin is installed into the same environment the way a chain
# would install it (its own distribution and entry point), and its own tests run in both
# passes. Reinstalled only when its setup.cfg changed (an editable install: code edits need none).
EXAMPLE=examples/meituan_delivery
EXAMPLE_STAMP="$VENV/.meituan_delivery-installed"
if [ ! -f "$EXAMPLE_STAMP" ] || [ "$EXAMPLE/setup.cfg" -nt "$EXAMPLE_STAMP" ] || \
   ! "$VENV/bin/python" -c "import importlib.metadata as m; m.distribution('pharmo2o-meituan-delivery')" 2>/dev/null; then
  echo "installing ${EXAMPLE} (editable)"
  "$VENV/bin/pip" install --quiet --no-deps -e "$EXAMPLE"
  touch "$EXAMPLE_STAMP"
fi

# Without a path among the arguments, run the suite and the example's tests.
paths=(tests "$EXAMPLE/tests")
for arg in "$@"; do
  if [ -e "${arg%%::*}" ]; then paths=(); break; fi
done

status=0
for backend in sqlite postgresql; do
  echo "=== pharmo2o test suite on ${backend} ==="
  only=()
  # The web pages reach the database only through the API, which both passes test in full:
  # headless Chromium drives them once, in the SQLite pass.
  [ "$backend" = postgresql ] && only=(-m "not browser")
  # both passes run even when the first fails: one CI run shows every failure
  rc=0
  PHARMO2O_TEST_DATABASE="$backend" "$VENV/bin/python" -m pytest -p no:cacheprovider -q "${only[@]}" "${paths[@]}" "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "=== suite FAILED on ${backend} (exit ${rc}) ===" >&2
    status=$rc
  fi
done
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
echo "=== suite passed on sqlite and postgresql ==="
