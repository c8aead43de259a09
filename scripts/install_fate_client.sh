#!/usr/bin/env bash
# FATE's own 1.11 client (PyPI fate-client: the `flow` CLI, FlowClient, the pipeline SDK) in a venv of its own,
# .venv-fate-client/: its pins (click 7, ruamel.yaml 0.16, poetry, pandas) clash with ours. 1.11.3.post1 is
# the 1.11 release that runs on Python 3.11 as installed (the wheels 1.11.0-1.11.3 need urllib3<2 by hand).
# Idempotent: nothing is done when the venv already holds that version. tests/fate_client and
# bench/fate_http.py run the client from there (FATE_CLIENT_VENV overrides the path).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.11.3.post1
VENV=${FATE_CLIENT_VENV:-.venv-fate-client}
PYTHON=${PYTHON:-python3}
installed() {
  "$VENV/bin/python" - "$VERSION" <<'PY' 2>/dev/null
import importlib.metadata, sys
sys.exit(importlib.metadata.version("fate-client") != sys.argv[1])
PY
}
if [ -x "$VENV/bin/flow" ] && installed; then
  exit 0
fi
echo "installing fate-client==$VERSION into $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "fate-client==$VERSION"
installed || { echo "fate-client==$VERSION did not install into $VENV" >&2; exit 1; }
