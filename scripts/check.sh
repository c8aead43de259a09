#!/usr/bin/env bash
# The static checks, each a step of STEPS: `scripts/check.sh` runs them all, in order, and fails at the first that
# fails (scripts/test.sh, CI and the git hook of .pre-commit-config.yaml run it so); `scripts/check.sh STEP...`
# runs the steps named. A new check is a new step here, nowhere else. Expects the venv's tools on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=(generated buf-lint ruff mypy)

# One command per line: under set -e a failure inside an && list would not stop the script (nor fail CI).
run_step() {
  case "$1" in
    generated)
      scripts/check_generated.sh ;;
    buf-lint)
      buf lint
      echo "buf lint: clean" ;;
    ruff)
      ruff check .
      ruff format --check . >/dev/null
      echo "ruff: clean" ;;
    mypy)
      mypy
      echo "mypy: clean" ;;
    *)
      echo "scripts/check.sh: no step '$1' (the steps: ${STEPS[*]})" >&2
      exit 2 ;;
  esac
}

if (($# == 0)); then
  set -- "${STEPS[@]}"
fi
for step in "$@"; do
  run_step "$step"
done
