#!/usr/bin/env bash
# Static checks: generated code is fresh, buf lint, ruff, mypy. Expects the venv's tools on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
GENERATED=(fate_registry/v1 fate_registry/agent fate_registry/fate)
scripts/gen_protos.sh
if [ -n "$(git status --porcelain -- "${GENERATED[@]}")" ]; then
  echo "generated code is stale: run scripts/gen_protos.sh and commit the result" >&2
  git status --short -- "${GENERATED[@]}" >&2
  exit 1
fi
echo "generated code: fresh"
# One command per line: under set -e a failure inside an && list would not stop the script (nor fail CI).
buf lint
echo "buf lint: clean"
ruff check .
ruff format --check . >/dev/null
echo "ruff: clean"
mypy
echo "mypy: clean"
