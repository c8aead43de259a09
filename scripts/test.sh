#!/usr/bin/env bash
# Install everything the tests need into .venv, run the static checks, then the whole test suite.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# --- OS packages the tests need, installed in one apt-get run when any is missing:
#   MariaDB and redis-server: the backing services of tests/contract;
#   iproute2: network namespaces for tests/e2e/test_proxy_cli.py (agents reachable only through the router);
#   chromium and its driver: the dashboard's browser tests (tests/e2e/test_dashboard_browser.py).
missing=()
export PATH="$PATH:/usr/sbin:/sbin"
command -v mariadbd >/dev/null || missing+=(mariadb-server)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v ip >/dev/null || missing+=(iproute2)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
