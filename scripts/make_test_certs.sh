#!/usr/bin/env bash
# Make a test CA and the certificates of a federation (coordinator, one per party agent, clients).
# Usage: scripts/make_test_certs.sh OUT_DIR [--party 9999 --party 10000] [--client alice] [--host name-or-ip]
# Names: CN=coordinator, CN=party-<id> (also a SAN DNS entry), CN=<client>; all valid for localhost/127.0.0.1/::1.
# For tests and demos only: the CA key is written next to the certificates.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
PY="$repo/.venv/bin/python"
[ -x "$PY" ] || PY=python3
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m tests.support.certs "$@"
