#!/usr/bin/env bash
# Regenerate fate_registry/{v1,agent,fate} from protos/ and fail when that changes what git holds (the index:
# the next commit), so generated code is never edited by hand nor left stale. check.sh runs it (its step `generated`).
set -euo pipefail
cd "$(dirname "$0")/.."
GENERATED=(fate_registry/v1 fate_registry/agent fate_registry/fate)
scripts/gen_protos.sh
untracked=$(git ls-files --others --exclude-standard -- "${GENERATED[@]}")
if ! git diff --quiet -- "${GENERATED[@]}" || [ -n "$untracked" ]; then
  echo "generated code is stale: run scripts/gen_protos.sh and commit the result" >&2
  git status --short -- "${GENERATED[@]}" >&2
  exit 1
fi
echo "generated code: fresh"
