#!/usr/bin/env bash
# Static checks: generated code is fresh, buf lint, ruff, mypy. Expects the venv's tools on PATH.
# .pre-commit-config.yaml runs the same steps as git hooks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/check_generated.sh
# One command per line: under set -e a failure inside an && list would not stop the script (nor fail CI).
buf lint
echo "buf lint: clean"
ruff check .
ruff format --check . >/dev/null
echo "ruff: clean"
mypy
echo "mypy: clean"
