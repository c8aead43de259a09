#!/usr/bin/env bash
# Install the registry, start a local federation (SQLite, local disk, conf/service_conf.yaml), and walk
# through import -> model info -> export with `flow`, printing each answer. The federation keeps running
# until Ctrl-C. State goes to $FATE_REGISTRY_DEMO_DIR (default .fate_registry/).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
export PATH="$PWD/.venv/bin:$PATH"
DATA=$(realpath -m "${FATE_REGISTRY_DEMO_DIR:-.fate_registry}")
rm -rf "$DATA/demo"

fate-registry up --data-dir "$DATA" &
UP=$!
trap 'kill -TERM "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
deadline=$((SECONDS + 60))
until [ -f "$DATA/run/ready" ]; do
  kill -0 "$UP" 2>/dev/null || { echo "fate-registry up failed; see $DATA/logs" >&2; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { echo "the federation did not start within 60 s" >&2; exit 1; }
  sleep 0.1
done
export FATE_REGISTRY_ADDRESS=$(cat "$DATA/run/ready")

run() { echo; echo "\$ $*"; "$@"; }
echo; echo "== a generated trained model (HeteroLR: guest 9999, host 10000, arbiter 10000), packed as FATE-Flow packs it"
fate-registry make-model --out "$DATA/demo" > "$DATA/demo.json"
MODEL_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_id"])' "$DATA/demo.json")
VERSION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_version"])' "$DATA/demo.json")
for party in guest_9999 host_10000 arbiter_10000; do
  run flow model import -c "$DATA/demo/import_$party.json"
done
run flow model get-model-info --model-id "$MODEL_ID" --model-version "$VERSION"
run flow model export -c "$DATA/demo/export_guest_9999.json"
run flow operation list --model-version "$VERSION" --page-size 3
cat <<MSG

The registry is running (coordinator $FATE_REGISTRY_ADDRESS). In another shell:
  export PATH=$PWD/.venv/bin:\$PATH FATE_REGISTRY_ADDRESS=$FATE_REGISTRY_ADDRESS
  flow model get-model-info --model-id '$MODEL_ID' --model-version $VERSION --detail
  flow model --help
Ctrl-C stops it.
MSG
wait "$UP"
