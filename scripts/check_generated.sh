#!/usr/bin/env bash
# Regenerate fate_registry/{v1,agent,fate} from protos/ into a scratch directory and fail when that differs from
# the tree, or the tree from what git holds (the index: the next commit), so generated code is never edited by
# hand nor left stale. The tree itself is not rewritten: tests running meanwhile keep importing it. check.sh runs
# it (its step `generated`).
set -euo pipefail
cd "$(dirname "$0")/.."
GENERATED=(fate_registry/v1 fate_registry/agent fate_registry/fate)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
scripts/gen_protos.sh "$scratch"
untracked=$(git ls-files --others --exclude-standard -- "${GENERATED[@]}")
stale=0
for d in "${GENERATED[@]}"; do
  diff -r -q -x __pycache__ "$scratch/$d" "$d" >&2 || stale=1
done
if [ "$stale" = 1 ] || ! git diff --quiet -- "${GENERATED[@]}" || [ -n "$untracked" ]; then
  echo "generated code is stale: run scripts/gen_protos.sh and commit the result" >&2
  git status --short -- "${GENERATED[@]}" >&2
  exit 1
fi
echo "generated code: fresh"
