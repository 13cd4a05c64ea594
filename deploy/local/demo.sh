#!/usr/bin/env bash
# `make demo`: a local Kafka broker and Redis, the topics, one worker, and simulated patients, with live
# progress in this terminal. Ctrl-C stops everything this script started and leaves nothing running.
#
# Environment: PATIENTS (200), RATE readings/s per patient (1), DURATION simulated seconds (1800),
# SPEED simulated seconds per wall second (1), DETERIORATING share (0.1), METRICS_PORT (9464).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
BIN=${BIN:-$ROOT/.venv/bin}
STATE=$ROOT/.twinmon/demo
mkdir -p "$STATE"
PATIENTS=${PATIENTS:-200}
METRICS_PORT=${METRICS_PORT:-9464}

pids=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping ..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    bash "$ROOT/deploy/local/kafka.sh" stop "$STATE/kafka" || true
    bash "$ROOT/deploy/local/redis.sh" stop "$STATE/redis" || true
    echo "demo: stopped; data kept in $STATE (make clean removes it)"
}
trap cleanup INT TERM EXIT

echo "demo: starting Kafka (first run fetches the broker's jars from Maven Central) ..."
BOOTSTRAP=$(bash "$ROOT/deploy/local/kafka.sh" start "$STATE/kafka")
echo "demo: starting Redis ..."
REDIS_URL=$(bash "$ROOT/deploy/local/redis.sh" start "$STATE/redis")

cat >"$STATE/env" <<ENV
export TWINMON_KAFKA_BOOTSTRAP=$BOOTSTRAP
export TWINMON_REDIS_URL=$REDIS_URL
export TWINMON_METRICS_PORT=$METRICS_PORT
export TWINMON_DATA_DIR=$STATE/worker
ENV
# The audit trail's signing key: made once, kept with the demo's data (a new key would fail the old records' MACs).
[[ -s $STATE/audit-key ]] || (umask 077 && openssl rand -hex 32 >"$STATE/audit-key")
echo "export TWINMON_AUDIT_KEY=\$(cat $STATE/audit-key)" >>"$STATE/env"
# shellcheck source=/dev/null
source "$STATE/env"

"$BIN/twinmon" topics create
"$BIN/twinmon" worker >"$STATE/worker.log" 2>&1 &
pids+=($!)
# --- care-team feed: `twinmon serve` with a demo token of team demo-ward, issued into the demo's state dir ---
API_PORT=${API_PORT:-8080}
export TWINMON_TOKENS_FILE=$STATE/tokens.json TWINMON_API_PORT=$API_PORT
echo "export TWINMON_TOKENS_FILE=$STATE/tokens.json TWINMON_API_PORT=$API_PORT" >>"$STATE/env"
DEMO_TOKEN=$("$BIN/twinmon" token issue --user demo-nurse --team demo-ward 2>/dev/null)
# Kept in a file only the user can read, never printed: the page asks for it once per browser tab.
(umask 077 && printf '%s\n' "$DEMO_TOKEN" >"$STATE/demo-token")
"$BIN/twinmon" serve >"$STATE/feed.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.5
done
# The first 20 simulated patients are enrolled into demo-ward through the API (audited like any enrolment).
for i in $(seq 0 $((PATIENTS < 20 ? PATIENTS - 1 : 19))); do
    curl -fsS -o /dev/null -H "Authorization: Bearer $DEMO_TOKEN" -H "Content-Type: application/json" \
        -d "{\"patient_id\": \"$(printf 'sim-%06d' "$i")\"}" "http://127.0.0.1:$API_PORT/api/patients" \
        || echo "demo: could not enrol sim-$i through the feed (see $STATE/feed.log)" >&2
done
# --- end care-team feed ---
"$BIN/twinmon" simulate --patients "$PATIENTS" --rate "${RATE:-1}" --duration "${DURATION:-1800}" \
    --speed "${SPEED:-1}" --deteriorating "${DETERIORATING:-0.1}" >"$STATE/simulator.log" 2>&1 &
pids+=($!)

cat <<INFO

  twinmon demo: $PATIENTS simulated patients -> Kafka $BOOTSTRAP -> worker -> Redis $REDIS_URL

  metrics      http://127.0.0.1:$METRICS_PORT/metrics
  a twin       source $STATE/env && $BIN/twinmon twin sim-000001
  feed         http://127.0.0.1:$API_PORT/  (team demo-ward, 20 patients; token: cat $STATE/demo-token)
  logs         $STATE/worker.log, $STATE/simulator.log, $STATE/feed.log
  stop         Ctrl-C

INFO
"$BIN/twinmon" progress --metrics-url "http://127.0.0.1:$METRICS_PORT/metrics" &
pids+=($!)
# Wait for whichever ends first (the simulator when its duration is over), or for Ctrl-C.
wait -n "${pids[@]}" || true
