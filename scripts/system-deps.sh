#!/usr/bin/env bash
# System packages the test suite needs: Debian's chromium (driven by the PyPI
# playwright package through executable_path; no browser download ever) and
# nginx (tests/reliability runs two gunicorn hosts behind it, as docs/deploy.md deploys).
# Installs with apt-get only when something is missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)   # readable Chinese in screenshots
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing system packages: ${need[*]} (run as root or install them with apt-get)" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
