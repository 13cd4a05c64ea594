#!/usr/bin/env bash
# Real Prometheus on loopback for development and CI, from Debian's
# prometheus package (installed on first use, with promtool; no Docker here).
#
# Usage:
#   prometheus.sh fetch                install prometheus and promtool if missing
#   prometheus.sh start STATE_DIR      start (or restart with same port+data);
#                                      prints "http://127.0.0.1:PORT" on stdout
#   prometheus.sh stop STATE_DIR       stop; no error if not running
#   prometheus.sh status STATE_DIR     exit 0 if running
#   prometheus.sh promtool ARGS...     run promtool (installed if missing)
#
# Without PROMETHEUS_CONFIG, start writes STATE_DIR/prometheus.yml: job
# "twinmon-worker" scrapes the targets listed in JSON files under
# STATE_DIR/targets/ (file-based discovery, re-read within a second, so
# workers can be added while it runs), and the alerting rules in
# deploy/prometheus/rules/ are evaluated.
#
# Environment:
#   PROMETHEUS_PORT             port for a fresh STATE_DIR (default: free port)
#   PROMETHEUS_CONFIG           use this configuration file as it is
#   PROMETHEUS_TARGETS          host:port,... of workers to scrape, written to
#                               STATE_DIR/targets/start.json (default: none)
#   PROMETHEUS_ENV              the env label of those targets (default local)
#   PROMETHEUS_SCRAPE_INTERVAL  scrape and rule interval (default 5s)
#   PROMETHEUS_METRICS_TOKEN_FILE  file holding the workers' metrics bearer
#                               token (TWINMON_METRICS_TOKEN); sent on every
#                               scrape of twinmon-worker (default: none)
#   PROMETHEUS_START_TIMEOUT    seconds to wait for /-/ready (default 60)
#   TWINMON_CACHE               where the install lock lives (~/.cache/twinmon)
#
# Only the URL goes to stdout; everything else goes to stderr so callers
# can do URL=$(prometheus.sh start DIR).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
LOG_PREFIX=prometheus.sh
RULES_DIR=$(cd -- "$SCRIPT_DIR/../prometheus/rules" && pwd -P)

# Our own command line carries the listen address; that identifies our
# process in /proc (a system Prometheus listens elsewhere).
needle() { printf -- '--web.listen-address=127.0.0.1:%s' "$1"; }

apt_install() {
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
        sudo=(sudo)
    fi
    log "installing $* with apt-get"
    # Try without update first: it is fast when the package lists are
    # fresh; a fresh machine has none, so retry after apt-get update.
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@" >&2; then
        "${sudo[@]}" apt-get update -q >&2
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "$@" >&2
    fi
}

installed() { command -v prometheus >/dev/null && command -v promtool >/dev/null; }

cmd_fetch() {
    installed && return 0
    local lockdir=${TWINMON_CACHE:-$HOME/.cache/twinmon}
    mkdir -p -- "$lockdir"
    # flock: the unit and integration tests of one session may both ask at
    # once; apt's own lock would make the second fail instead of wait.
    (
        flock 9
        installed && exit 0
        apt_install prometheus
    ) 9>"$lockdir/prometheus-install.lock"
    installed || die "prometheus/promtool still missing after install"
}

cmd_promtool() {
    cmd_fetch
    exec promtool "$@"
}

ready() {
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/-/ready", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except OSError:
    sys.exit(1)
PY
}

is_running() {
    local state=$1
    [[ -f $state/prometheus.pid && -f $state/prometheus.port ]] \
        && pid_alive "$(<"$state/prometheus.pid")" "$(needle "$(<"$state/prometheus.port")")"
}

write_config() {
    local state=$1 interval=${PROMETHEUS_SCRAPE_INTERVAL:-5s}
    mkdir -p -- "$state/targets"
    cat >"$state/prometheus.yml" <<EOF
# Written by deploy/local/prometheus.sh; rewritten on every start.
global:
  scrape_interval: $interval
  scrape_timeout: $interval
  evaluation_interval: $interval
rule_files:
  - $RULES_DIR/*.yml
scrape_configs:
  - job_name: twinmon-worker
    file_sd_configs:
      - files: ["$state/targets/*.json"]
        refresh_interval: 1s
EOF
    if [[ -n ${PROMETHEUS_METRICS_TOKEN_FILE:-} ]]; then
        cat >>"$state/prometheus.yml" <<EOF
    authorization:
      type: Bearer
      credentials_file: $PROMETHEUS_METRICS_TOKEN_FILE
EOF
    fi
    if [[ -n ${PROMETHEUS_TARGETS:-} ]]; then
        python3 - "$PROMETHEUS_TARGETS" "${PROMETHEUS_ENV:-local}" >"$state/targets/start.json" <<'PY'
import json, sys
targets = [t.strip() for t in sys.argv[1].split(",") if t.strip()]
print(json.dumps([{"targets": targets, "labels": {"env": sys.argv[2]}}]))
PY
    fi
}

cmd_start() {
    [[ $# -eq 1 ]] || die "usage: prometheus.sh start STATE_DIR"
    local state port pid config started timeout=${PROMETHEUS_START_TIMEOUT:-60}
    state=$(abs_dir "$1")

    if is_running "$state"; then
        log "already running (pid $(<"$state/prometheus.pid"))"
        printf 'http://127.0.0.1:%s\n' "$(<"$state/prometheus.port")"
        return 0
    fi
    rm -f -- "$state/prometheus.pid"

    cmd_fetch

    # A STATE_DIR that ran before keeps its port (and its data).
    if [[ -f $state/prometheus.port ]]; then
        port=$(<"$state/prometheus.port")
        if [[ -n ${PROMETHEUS_PORT:-} && $PROMETHEUS_PORT != "$port" ]]; then
            log "ignoring PROMETHEUS_PORT=$PROMETHEUS_PORT: $state already uses port $port"
        fi
    else
        port=${PROMETHEUS_PORT:-$(free_ports 1)}
    fi
    [[ $port =~ ^[0-9]+$ ]] || die "bad port '$port' (check $state/prometheus.port)"
    ! port_open "$port" || die "127.0.0.1:$port is already in use"
    printf '%s\n' "$port" >"$state/prometheus.port"

    if [[ -n ${PROMETHEUS_CONFIG:-} ]]; then
        [[ -f $PROMETHEUS_CONFIG ]] || die "no such file: $PROMETHEUS_CONFIG"
        config=$(cd -- "$(dirname -- "$PROMETHEUS_CONFIG")" && pwd -P)/$(basename -- "$PROMETHEUS_CONFIG")
    else
        write_config "$state"
        config=$state/prometheus.yml
    fi
    promtool check config "$config" >&2 || die "promtool rejects $config"

    rotate_log "$state/prometheus.log"
    started=$SECONDS
    # All stdio redirected so callers capturing our stdout do not hang on
    # the server holding the pipe open. --web.enable-lifecycle: POST
    # /-/reload re-reads the configuration.
    prometheus --config.file="$config" \
        --web.listen-address="127.0.0.1:$port" \
        --storage.tsdb.path="$state/data" \
        --storage.tsdb.retention.time=2d \
        --web.enable-lifecycle \
        </dev/null >"$state/prometheus.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$state/prometheus.pid"
    log "started prometheus pid $pid on 127.0.0.1:$port, waiting"

    local deadline=$((SECONDS + timeout))
    until ready "$port"; do
        if ! pid_exists "$pid"; then
            tail_log "$state/prometheus.log"
            rm -f -- "$state/prometheus.pid"
            die "prometheus exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$state/prometheus.log"
            log "not ready after ${timeout}s; stopping it"
            stop_pid "$state/prometheus.pid" "$(needle "$port")" prometheus
            exit 1
        fi
        sleep 0.2
    done
    log "ready in $((SECONDS - started))s"
    printf 'http://127.0.0.1:%s\n' "$port"
}

cmd_stop() {
    [[ $# -eq 1 ]] || die "usage: prometheus.sh stop STATE_DIR"
    local state
    [[ -d $1 ]] || { log "not running (no $1)"; return 0; }
    state=$(abs_dir "$1")
    if [[ ! -f $state/prometheus.port ]]; then
        log "not running (no $state/prometheus.port)"
        rm -f -- "$state/prometheus.pid"
        return 0
    fi
    stop_pid "$state/prometheus.pid" "$(needle "$(<"$state/prometheus.port")")" prometheus
}

cmd_status() {
    [[ $# -eq 1 ]] || die "usage: prometheus.sh status STATE_DIR"
    local state
    [[ -d $1 ]] || { log "not running"; return 1; }
    state=$(abs_dir "$1")
    if is_running "$state"; then
        log "running (pid $(<"$state/prometheus.pid"), 127.0.0.1:$(<"$state/prometheus.port"))"
        return 0
    fi
    log "not running"
    return 1
}

main() {
    local verb=${1:-}
    if [[ $# -gt 0 ]]; then shift; fi
    case $verb in
        fetch) cmd_fetch "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        promtool) cmd_promtool "$@" ;;
        *)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
            exit 2
            ;;
    esac
}

main "$@"
