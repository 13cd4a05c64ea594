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
# shellcheck source=/dev/null
source "$STATE/env"

"$BIN/twinmon" topics create
"$BIN/twinmon" worker >"$STATE/worker.log" 2>&1 &
pids+=($!)
"$BIN/twinmon" simulate --patients "$PATIENTS" --rate "${RATE:-1}" --duration "${DURATION:-1800}" \
    --speed "${SPEED:-1}" --deteriorating "${DETERIORATING:-0.1}" >"$STATE/simulator.log" 2>&1 &
pids+=($!)

cat <<INFO

  twinmon demo: $PATIENTS simulated patients -> Kafka $BOOTSTRAP -> worker -> Redis $REDIS_URL

  metrics      http://127.0.0.1:$METRICS_PORT/metrics
  a twin       source $STATE/env && $BIN/twinmon twin sim-000001
  logs         $STATE/worker.log, $STATE/simulator.log
  stop         Ctrl-C

INFO
"$BIN/twinmon" progress --metrics-url "http://127.0.0.1:$METRICS_PORT/metrics" &
pids+=($!)
# Wait for whichever ends first (the simulator when its duration is over), or for Ctrl-C.
wait -n "${pids[@]}" || true
