#!/usr/bin/env bash
# Install everything the tests need into .venv, run the static checks, then the whole test suite.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# --- backing services for tests/contract (MariaDB, redis-server): install from the OS packages when missing.
if ! PATH="$PATH:/usr/sbin" command -v mariadbd >/dev/null || ! command -v redis-server >/dev/null; then
  echo "installing mariadb-server and redis-server (apt-get)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server redis-server >/dev/null
fi
# --- network namespaces for tests/e2e/test_proxy_cli.py (agents reachable only through the router): iproute2.
if ! PATH="$PATH:/usr/sbin:/sbin" command -v ip >/dev/null; then
  echo "installing iproute2 (apt-get)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi
# --- the dashboard's browser tests (tests/e2e/test_dashboard_browser.py): Debian's chromium and its driver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "installing chromium and chromium-driver (apt-get)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
# ---
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,convert,deploy]'
# FATE's own 1.11 client for tests/fate_client and bench/fate_http.py, in a venv of its own (its pins clash with ours).
PYTHON="$PYTHON" scripts/install_fate_client.sh
PATH="$PWD/.venv/bin:$PATH" scripts/check.sh
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
