#!/usr/bin/env bash
# `make demo`: a local Kafka broker and Redis, the topics, one worker, and simulated patients, with live
# progress in this terminal. Ctrl-C stops everything this script started and leaves nothing running.
#
# Environment: PATIENTS (200), RATE readings/s per patient (1), DURATION simulated seconds (1800) played at
# SPEED simulated seconds per wall second (1) and ending at the wall clock, then real time until Ctrl-C;
# DETERIORATING share (0.1) declining over DURATION, ALREADY share (0.1) declining since before the start;
# WARD_SIZE patients per care team (20), HISTORY_LENGTH chart points per patient (10080: a day),
# METRICS_PORT (9464), API_PORT (8080).
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
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

echo "demo: starting Kafka (first run fetches the broker's jars from Maven Central) ..."
BOOTSTRAP=$(bash "$ROOT/deploy/local/kafka.sh" start "$STATE/kafka")
echo "demo: starting Redis ..."
REDIS_URL=$(bash "$ROOT/deploy/local/redis.sh" start "$STATE/redis")

cat >"$STATE/env" <<ENV
export TWINMON_KAFKA_BOOTSTRAP=$BOOTSTRAP
export TWINMON_REDIS_URL=$REDIS_URL
export TWINMON_METRICS_PORT=$METRICS_PORT
export TWINMON_DATA_DIR=$STATE/worker
# A day of chart history per patient (7 vitals a minute), for the page's 24 h window; the default keeps ~100 min.
export TWINMON_HISTORY_LENGTH=${HISTORY_LENGTH:-10080}
ENV
# The audit trail's signing key: made once, kept with the demo's data (a new key would fail the old records' MACs).
[[ -s $STATE/audit-key ]] || (umask 077 && openssl rand -hex 32 >"$STATE/audit-key")
echo "export TWINMON_AUDIT_KEY=\$(cat $STATE/audit-key)" >>"$STATE/env"
# shellcheck source=/dev/null
source "$STATE/env"

"$BIN/twinmon" topics create
"$BIN/twinmon" worker >"$STATE/worker.log" 2>&1 &
pids+=($!)
# --- care-team feed: `twinmon serve`; every simulated patient is in a ward of WARD_SIZE, each with a token ---
API_PORT=${API_PORT:-8080}
WARD_SIZE=${WARD_SIZE:-20}
export TWINMON_TOKENS_FILE=$STATE/tokens.json TWINMON_API_PORT=$API_PORT
echo "export TWINMON_TOKENS_FILE=$STATE/tokens.json TWINMON_API_PORT=$API_PORT" >>"$STATE/env"
"$BIN/twinmon" serve >"$STATE/feed.log" 2>&1 &
pids+=($!)
WARDS=$(((PATIENTS + WARD_SIZE - 1) / WARD_SIZE))
ward() { printf 'demo-ward-%02d' "$(($1 + 1))"; }
# Tokens are kept in files only the user can read, never printed: the page asks for one once per browser tab.
mkdir -p "$STATE/ward-tokens"
for w in $(seq 0 $((WARDS - 1))); do
    (umask 077 && "$BIN/twinmon" token issue --user "demo-nurse-$((w + 1))" --team "$(ward "$w")" \
        2>/dev/null >"$STATE/ward-tokens/$(ward "$w")")
done
cp "$STATE/ward-tokens/$(ward 0)" "$STATE/demo-token"
for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.5
done
# Enrolled through the API, as a ward would (audited like any enrolment), each ward with its own token.
for i in $(seq 0 $((PATIENTS - 1))); do
    team=$(ward $((i / WARD_SIZE)))
    curl -fsS -o /dev/null --retry 5 -H "Authorization: Bearer $(cat "$STATE/ward-tokens/$team")" \
        -H "Content-Type: application/json" -d "{\"patient_id\": \"$(printf 'sim-%06d' "$i")\"}" \
        "http://127.0.0.1:$API_PORT/api/patients" \
        || echo "demo: could not enrol sim-$i into $team through the feed (see $STATE/feed.log)" >&2
done
# --- end care-team feed ---
"$BIN/twinmon" simulate --patients "$PATIENTS" --rate "${RATE:-1}" --duration "${DURATION:-1800}" \
    --speed "${SPEED:-1}" --deteriorating "${DETERIORATING:-0.1}" --already-deteriorating "${ALREADY:-0.1}" \
    --until-stopped >"$STATE/simulator.log" 2>&1 &
pids+=($!)

cat <<INFO

  twinmon demo: $PATIENTS simulated patients -> Kafka $BOOTSTRAP -> worker -> Redis $REDIS_URL

  metrics      http://127.0.0.1:$METRICS_PORT/metrics
  a twin       source $STATE/env && $BIN/twinmon twin sim-000001
  feed         http://127.0.0.1:$API_PORT/  (team $(ward 0), patients 0-$((WARD_SIZE - 1)); token: cat $STATE/demo-token)
  other wards  $WARDS wards of $WARD_SIZE: $(ward 0) .. $(ward $((WARDS - 1))); tokens in $STATE/ward-tokens/
  logs         $STATE/worker.log, $STATE/simulator.log, $STATE/feed.log
  stop         Ctrl-C

INFO
"$BIN/twinmon" progress --metrics-url "http://127.0.0.1:$METRICS_PORT/metrics" &
pids+=($!)
# Runs until Ctrl-C: the simulator goes on in real time after DURATION. Any process ending early ends the demo.
wait -n "${pids[@]}" || true
echo "demo: a process ended on its own; see the logs in $STATE" >&2
exit 1
