#!/usr/bin/env bash
# Install the registry, start a local federation (SQLite, local disk, conf/service_conf.yaml) with a
# FATE-Serving test server, and walk through import -> model info -> export -> deploy -> load -> bind ->
# predict DSL -> tags -> checkpoints with `flow`, printing each answer. The federation keeps running
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

mkdir -p "$DATA/serving"
rm -f "$DATA/serving/port"
# A FATE-Serving stand-in (same gRPC protocol; it pulls models from the agents as FATE-Serving does).
python -m tests.support.serving --port-file "$DATA/serving/port" --record "$DATA/serving/requests.jsonl" \
  > "$DATA/serving/serving.log" 2>&1 &
SERVING=$!
trap 'kill -TERM "${UP:-}" "$SERVING" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
wait_for() {  # wait_for FILE PID WHAT: poll for FILE while PID lives, at most 60 s
  local deadline=$((SECONDS + 60))
  until [ -f "$1" ]; do
    kill -0 "$2" 2>/dev/null || { echo "$3 failed to start; see $DATA" >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "$3 did not start within 60 s" >&2; exit 1; }
    sleep 0.1
  done
}
wait_for "$DATA/serving/port" "$SERVING" "the FATE-Serving test server"
SERVING_ADDRESS=$(cat "$DATA/serving/port")
# The embedded defaults of conf/service_conf.yaml, with both parties' FATE-Serving set to the stand-in.
python - "$DATA/service_conf.yaml" "$SERVING_ADDRESS" <<'PY'
import sys, yaml
conf = yaml.safe_load(open("conf/service_conf.yaml"))
for party in conf["parties"].values():
    party["servings"] = [sys.argv[2]]
open(sys.argv[1], "w").write(yaml.safe_dump(conf))
PY

fate-registry up --conf "$DATA/service_conf.yaml" --data-dir "$DATA" &
UP=$!
wait_for "$DATA/run/ready" "$UP" "fate-registry up"
export FATE_REGISTRY_ADDRESS=$(cat "$DATA/run/ready")
# flow settings of the demo's own: a `flow init` of the user's (its TLS files, say) is not for this federation
export FATE_REGISTRY_CLIENT_CONF="$DATA/flow.json"
unset FATE_REGISTRY_TLS_CA FATE_REGISTRY_TLS_CERT FATE_REGISTRY_TLS_KEY

quoted() {  # the words on one line, each quoted as a POSIX shell needs it (as Python's shlex.quote does)
  local word out=()
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then out+=("$word"); else out+=("'${word//\'/\'\\\'\'}'"); fi
  done
  echo "${out[*]}"
}
run() { echo; echo "\$ $(quoted "$@")"; "$@"; }  # show a command as it can be pasted, then run it
echo; echo "== a generated trained model (HeteroLR: guest 9999, host 10000, arbiter 10000), packed as FATE-Flow packs it"
fate-registry make-model --out "$DATA/demo" > "$DATA/demo.json"
MODEL_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_id"])' "$DATA/demo.json")
VERSION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_version"])' "$DATA/demo.json")
for party in guest_9999 host_10000 arbiter_10000; do
  run flow model import -c "$DATA/demo/import_$party.json"
done
run flow model get-model-info --model-id "$MODEL_ID" --model-version "$VERSION"
run flow model export -c "$DATA/demo/export_guest_9999.json"

echo; echo "== deploy (a child version on every party, all or nothing), then load and bind it into FATE-Serving"
DEPLOY=(flow model deploy --model-id "$MODEL_ID" --model-version "$VERSION"
  --cpn-list "reader_0, data_transform_0, intersection_0, hetero_lr_0" --cpn-step-index hetero_lr_0:29)
echo; echo "\$ $(quoted "${DEPLOY[@]}")"
"${DEPLOY[@]}" | tee "$DATA/demo/deploy.json"
CHILD=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["model_version"])' "$DATA/demo/deploy.json")
# load and bind take the example confs (examples/model/), with the version the deploy made
python3 - "$DATA/demo" "$MODEL_ID" "$CHILD" <<'PY'
import json, sys
out, model_id, child = sys.argv[1:]
for name in ("publish_load_model.json", "bind_model_service.json"):
    conf = json.load(open(f"examples/model/{name}"))
    conf["job_parameters"].update(model_id=model_id, model_version=child)
    json.dump(conf, open(f"{out}/{name}", "w"), indent=4)
PY
run flow model load -c "$DATA/demo/publish_load_model.json"
run flow model bind -c "$DATA/demo/bind_model_service.json"
run flow model get-predict-dsl --model-id "$MODEL_ID" --model-version "$CHILD" -o "$DATA/demo"
run flow model tag-model -j "$CHILD" -t demo
run flow model tag-list -j "$CHILD"
run flow checkpoint list --model-id "$MODEL_ID" --model-version "$VERSION" -r guest -p 9999 -cpn hetero_lr_0
run flow operation list --model-version "$CHILD" --page-size 3
cat <<MSG

The registry is running (coordinator $FATE_REGISTRY_ADDRESS).
Its dashboard: http://$(cat "$DATA/run/coordinator.http")/dashboard/ (Prometheus metrics: /metrics). In another shell:
  export PATH=$(quoted "$PWD/.venv/bin"):\$PATH $(quoted "FATE_REGISTRY_ADDRESS=$FATE_REGISTRY_ADDRESS" \
    "FATE_REGISTRY_CLIENT_CONF=$FATE_REGISTRY_CLIENT_CONF")
  $(quoted flow model get-model-info --model-id "$MODEL_ID" --model-version "$CHILD" --detail)
  flow model --help
The confs of every -c command are in examples/model/ (flow model <command> --help names their keys).
Ctrl-C stops it.
MSG
wait "$UP"
