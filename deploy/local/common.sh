# shellcheck shell=bash
# Helpers shared by deploy/local/kafka.sh and deploy/local/redis.sh.
# Sourced, not executed. Contract of every helper: diagnostics go to stderr,
# because the callers print exactly one machine-readable line on stdout.

log() { printf '%s: %s\n' "${LOG_PREFIX:-local}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Absolute path of a (possibly new) directory: pid files and the broker's
# command line must not depend on the caller's working directory.
abs_dir() {
    mkdir -p -- "$1"
    (cd -- "$1" && pwd -P)
}

# Print N distinct free TCP ports on 127.0.0.1. All sockets are held open
# until every port is chosen, so the kernel cannot hand out the same one twice.
# (A tiny race remains until the service binds; acceptable for dev/CI.)
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_exists PID: the process exists and has not exited. An exited child
# stays a zombie until reaped (our own children while this script runs, and
# orphans on machines whose init does not reap), and kill -0 succeeds on it.
pid_exists() {
    local pid=$1 state
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    # Field 3 of /proc/PID/stat is the state; Z = zombie.
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# pid_alive PID NEEDLE: pid_exists, and the command line contains NEEDLE.
# The NEEDLE check keeps us from signalling an unrelated process that
# inherited a recycled PID from a stale pid file.
pid_alive() {
    local pid=$1 needle=$2 cmdline
    pid_exists "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$needle"* ]]
}

# stop_pid PIDFILE NEEDLE NAME: TERM, wait up to STOP_TIMEOUT (20 s), then
# KILL. Idempotent: a missing pid file or dead process is not an error.
stop_pid() {
    local pidfile=$1 needle=$2 name=$3 pid i
    if [[ ! -f $pidfile ]]; then
        log "$name not running (no $pidfile)"
        return 0
    fi
    pid=$(<"$pidfile")
    if pid_alive "$pid" "$needle"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < ${STOP_TIMEOUT:-20} * 10; i++)); do
            pid_alive "$pid" "$needle" || break
            sleep 0.1
        done
        if pid_alive "$pid" "$needle"; then
            log "$name did not exit after ${STOP_TIMEOUT:-20}s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                pid_alive "$pid" "$needle" || break
                sleep 0.1
            done
        fi
    else
        log "$name not running (stale pid file)"
    fi
    rm -f -- "$pidfile"
}

# Keep a restart's log separate so readiness checks that grep the log only
# see lines from the current run; one previous log is kept for debugging.
rotate_log() {
    if [[ -f $1 ]]; then
        mv -f -- "$1" "$1.1"
    fi
}

tail_log() {
    if [[ -f $1 ]]; then
        log "last lines of $1:"
        tail -n "${2:-40}" -- "$1" >&2
    fi
}
