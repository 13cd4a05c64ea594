#!/usr/bin/env bash
# Real Redis on loopback for development and CI, from Debian's redis-server
# package (installed on first use; no Docker here).
#
# Usage:
#   redis.sh start STATE_DIR    start (or restart with same port+data);
#                               prints "redis://127.0.0.1:PORT/0" on stdout
#   redis.sh start-secure STATE_DIR CERT_DIR
#                               TLS only (no plaintext port), ACL users, the
#                               default user off; prints
#                               "rediss://127.0.0.1:PORT/0" (no credentials)
#   redis.sh acl-file           print the same users (hashed passwords) as an
#                               aclfile for a Redis run elsewhere, e.g. the
#                               Secret of deploy/k8s/redis.yaml
#   redis.sh stop STATE_DIR     stop; no error if not running
#   redis.sh status STATE_DIR   exit 0 if running
#
# Environment:
#   REDIS_PORT           port for a fresh STATE_DIR (default: a free port)
#   REDIS_START_TIMEOUT  seconds to wait for PONG (default 30)
#
# Secure Redis (start-secure). CERT_DIR is made by certs.sh (ca.pem,
# server.pem, server.key). Users, written hashed to STATE_DIR/users.acl:
#   REDIS_ADMIN_PASSWORD   user "admin", all commands and keys (required)
#   REDIS_CLIENT_USER      the application's user (default twinmon)
#   REDIS_CLIENT_PASSWORD  its password (required)
#   REDIS_KEY_PREFIX       the client user sees only keys PREFIX:* (default
#                          twinmon, as TWINMON_REDIS_PREFIX)
#   REDIS_ACL_COMMANDS     the client user's commands (default: what twinmon
#                          uses, see DEFAULT_ACL_COMMANDS below)
#   REDIS_FEED_PASSWORD    if set, a second user for the care-team feed
#                          (twinmon serve), REDIS_FEED_USER (default
#                          twinmon-feed), same key prefix, the commands in
#                          DEFAULT_FEED_ACL_COMMANDS (REDIS_FEED_ACL_COMMANDS)
#
# Only the URL goes to stdout; everything else goes to stderr so callers
# can do URL=$(redis.sh start DIR).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
LOG_PREFIX=redis.sh

# redis-server renames its process title to "redis-server 127.0.0.1:PORT",
# so that (not the state dir) is what identifies our process in /proc.
needle() { printf 'redis-server 127.0.0.1:%s' "$1"; }

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

ensure_redis() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
    command -v redis-server >/dev/null || die "redis-server still missing after install"
    command -v redis-cli >/dev/null || die "redis-cli still missing after install"
}

ping() {
    if [[ -n $SECURE_CERT_DIR ]]; then
        [[ $(REDISCLI_AUTH=$REDIS_ADMIN_PASSWORD redis-cli --tls --cacert "$SECURE_CERT_DIR/ca.pem" \
            --user admin -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
    else
        [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
    fi
}

is_running() {
    local state=$1
    [[ -f $state/redis.pid && -f $state/redis.port ]] \
        && pid_alive "$(<"$state/redis.pid")" "$(needle "$(<"$state/redis.port")")"
}

cmd_start() {
    [[ $# -eq 1 ]] || die "usage: redis.sh start STATE_DIR"
    local state port pid started timeout=${REDIS_START_TIMEOUT:-30}
    state=$(abs_dir "$1")
    # A secure state dir must not come back up without its security.
    if [[ -z $SECURE_CERT_DIR && -f $state/users.acl ]]; then
        die "$state was started with start-secure; start it with: redis.sh start-secure $1 CERT_DIR"
    fi

    if is_running "$state"; then
        log "already running (pid $(<"$state/redis.pid"))"
        printf '%s://127.0.0.1:%s/0\n' "$(scheme)" "$(<"$state/redis.port")"
        return 0
    fi
    rm -f -- "$state/redis.pid"

    ensure_redis

    # A STATE_DIR that ran before keeps its port, so a restarted server is
    # reachable at the URL the test already holds.
    if [[ -f $state/redis.port ]]; then
        port=$(<"$state/redis.port")
        if [[ -n ${REDIS_PORT:-} && $REDIS_PORT != "$port" ]]; then
            log "ignoring REDIS_PORT=$REDIS_PORT: $state already uses port $port"
        fi
    else
        port=${REDIS_PORT:-$(free_ports 1)}
    fi
    [[ $port =~ ^[0-9]+$ ]] || die "bad port '$port' (check $state/redis.port)"
    ! port_open "$port" || die "127.0.0.1:$port is already in use"
    printf '%s\n' "$port" >"$state/redis.port"

    rotate_log "$state/redis.log"
    started=$SECONDS
    # AOF with everysec fsync: data survives a restart (stop/start) at most
    # one second lossy, like a typical production setup; RDB snapshots off
    # (--save '') so the only persistence is the AOF. No daemonize: $! is
    # then the server's real pid. No --logfile: redis then logs to stdout,
    # and one redirect also catches errors printed before logging starts.
    # All stdio is redirected so callers capturing our stdout do not hang
    # on the server holding the pipe open. hash-max-listpack-value 2048: a
    # patient's hash (a ~1.1 KB packed twin, its position and alert state)
    # stays a compact listpack instead of a hash table (MEMORY USAGE of one
    # hash 1,368 vs 1,632 B in `twinmon bench --only memory --twins 20000`).
    local listen=(--port "$port" --bind 127.0.0.1 --protected-mode yes)
    if [[ -n $SECURE_CERT_DIR ]]; then
        write_secure_config "$state" "$port"
        listen=("$state/redis.conf")
    fi
    redis-server "${listen[@]}" \
        --appendonly yes --appendfsync everysec --save '' \
        --hash-max-listpack-value 2048 \
        --dir "$state" --daemonize no \
        </dev/null >"$state/redis.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$state/redis.pid"
    log "started redis-server pid $pid on 127.0.0.1:$port, waiting"

    # PONG (not merely an open port): while loading the AOF after a restart
    # redis answers "-LOADING" and is not usable yet.
    local deadline=$((SECONDS + timeout))
    until ping "$port"; do
        if ! pid_exists "$pid"; then
            tail_log "$state/redis.log"
            rm -f -- "$state/redis.pid"
            die "redis-server exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$state/redis.log"
            log "no PONG after ${timeout}s; stopping it"
            stop_pid "$state/redis.pid" "$(needle "$port")" redis
            exit 1
        fi
        sleep 0.1
    done
    log "ready in $((SECONDS - started))s"
    printf '%s://127.0.0.1:%s/0\n' "$(scheme)" "$port"
}

# ---- Secure Redis (start-secure) -------------------------------------------

SECURE_CERT_DIR=
# What the workers and the CLI send: their Lua scripts (EVALSHA, SCRIPT
# LOAD/EXISTS when a pipeline first runs them), the hash/list/set reads and
# writes, MULTI/EXEC pipelines, SCAN for the patient list, PING. (redis-py also
# tries CLIENT SETINFO on connect; it ignores a refusal, and Redis 7.0 has no
# such command.)
DEFAULT_ACL_COMMANDS="+evalsha +eval +script|load +script|exists +hget +hmget +hset +rpush +ltrim +lrange +sadd +srem +smembers +scan +multi +exec +discard +ping"
# Key families (PREFIX:FAMILY:*) by owner. The workers read and write theirs and
# nothing else; the feed only reads them, and writes only its own indexes.
WORKER_KEY_FAMILIES="twin hist profile team part"
FEED_KEY_FAMILY=feed
# The feed: reads of the workers' keys in the user's root permissions, read
# only (%R~); its writes (one Lua script: HSETNX, ZADD, ZCARD, ZRANGE,
# ZREMRANGEBYRANK, HDEL; a script's commands are checked against the ACL too)
# in a selector that holds only its own keys, so no write command reaches a
# twin, profile, history or team set whatever the key.
DEFAULT_FEED_ACL_COMMANDS="+hget +hmget +lrange +smembers +sismember +scan +ping"
DEFAULT_FEED_WRITE_COMMANDS="+evalsha +eval +script|load +script|exists +hsetnx +hdel +hmget +zadd +zcard +zrange +zremrangebyrank +zrevrangebyscore"

# key_patterns PERM PREFIX FAMILY...: "%PERM~PREFIX:FAMILY:*" for each family.
key_patterns() {
    local perm=$1 prefix=$2 family out=()
    shift 2
    for family in "$@"; do out+=("%$perm~$prefix:$family:*"); done
    printf '%s' "${out[*]}"
}

# The ACL lines of the application's users (hashed passwords), as they go into
# an aclfile: users.acl here, the Secret of deploy/k8s/redis.yaml there.
app_acl_lines() {
    local user=$1 feed_user=$2 prefix=$3 families
    read -r -a families <<<"$WORKER_KEY_FAMILIES"
    echo "user $user on #$(sha256 "$REDIS_CLIENT_PASSWORD") resetchannels resetkeys $(key_patterns RW "$prefix" "${families[@]}") -@all ${REDIS_ACL_COMMANDS:-$DEFAULT_ACL_COMMANDS}"
    if [[ -n ${REDIS_FEED_PASSWORD:-} ]]; then
        echo "user $feed_user on #$(sha256 "$REDIS_FEED_PASSWORD") resetchannels resetkeys $(key_patterns R "$prefix" "${families[@]}") -@all ${REDIS_FEED_ACL_COMMANDS:-$DEFAULT_FEED_ACL_COMMANDS} ($(key_patterns RW "$prefix" "$FEED_KEY_FAMILY") resetchannels -@all ${REDIS_FEED_WRITE_COMMANDS:-$DEFAULT_FEED_WRITE_COMMANDS})"
    fi
}

check_password() {
    local name=$1 value=${!1:-}
    [[ -n $value ]] || die "start-secure needs $name"
    ((${#value} >= 8)) || die "$name must have at least 8 characters"
    [[ $value != *[[:space:]]* ]] || die "$name must not contain white space"
}

sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# users.acl holds only SHA-256 hashes of the passwords; the default
# (passwordless) user is off.
ACL_USER= ACL_FEED_USER= ACL_PREFIX=
check_acl_settings() {
    ACL_USER=${REDIS_CLIENT_USER:-twinmon}
    ACL_FEED_USER=${REDIS_FEED_USER:-twinmon-feed}
    ACL_PREFIX=${REDIS_KEY_PREFIX:-twinmon}
    local user=$ACL_USER feed_user=$ACL_FEED_USER prefix=$ACL_PREFIX
    [[ $user =~ ^[A-Za-z0-9._-]+$ && $user != admin && $user != default ]] \
        || die "bad REDIS_CLIENT_USER '$user'"
    [[ $feed_user =~ ^[A-Za-z0-9._-]+$ && $feed_user != admin && $feed_user != default && $feed_user != "$user" ]] \
        || die "bad REDIS_FEED_USER '$feed_user'"
    [[ $prefix =~ ^[A-Za-z0-9._-]+$ ]] || die "bad REDIS_KEY_PREFIX '$prefix'"
    check_password REDIS_ADMIN_PASSWORD
    check_password REDIS_CLIENT_PASSWORD
    [[ -z ${REDIS_FEED_PASSWORD:-} ]] || check_password REDIS_FEED_PASSWORD
}

write_secure_config() {
    local state=$1 port=$2 cert=$SECURE_CERT_DIR
    [[ -s $cert/ca.pem && -s $cert/server.pem && -s $cert/server.key ]] \
        || die "$cert has no ca.pem/server.pem/server.key (make them with certs.sh $cert)"
    check_acl_settings
    (
        umask 077
        cat >"$state/users.acl" <<EOF
user default off resetkeys resetchannels -@all
user admin on #$(sha256 "$REDIS_ADMIN_PASSWORD") ~* &* +@all
EOF
        app_acl_lines "$ACL_USER" "$ACL_FEED_USER" "$ACL_PREFIX" >>"$state/users.acl"
        cat >"$state/redis.conf" <<EOF
# Written by deploy/local/redis.sh start-secure on every start.
port 0
tls-port $port
bind 127.0.0.1
protected-mode yes
tls-cert-file $cert/server.pem
tls-key-file $cert/server.key
tls-ca-cert-file $cert/ca.pem
tls-auth-clients no
tls-protocols "TLSv1.2 TLSv1.3"
aclfile $state/users.acl
EOF
    )
}

# The aclfile of a Redis run elsewhere (deploy/k8s/redis.yaml): the same users,
# plus "health", which may only PING (for probes; it needs no password and
# can do nothing else).
cmd_acl_file() {
    [[ $# -eq 0 ]] || die "usage: redis.sh acl-file"
    check_password REDIS_FEED_PASSWORD  # the feed runs as its own user there
    check_acl_settings
    echo "user default off resetkeys resetchannels -@all"
    echo "user health on nopass resetkeys resetchannels -@all +ping"
    echo "user admin on #$(sha256 "$REDIS_ADMIN_PASSWORD") ~* &* +@all"
    app_acl_lines "$ACL_USER" "$ACL_FEED_USER" "$ACL_PREFIX"
}

cmd_start_secure() {
    [[ $# -eq 2 ]] || die "usage: redis.sh start-secure STATE_DIR CERT_DIR"
    SECURE_CERT_DIR=$(abs_dir "$2")
    cmd_start "$1"
}

# ---------------------------------------------------------------------------

scheme() { if [[ -n $SECURE_CERT_DIR ]]; then printf rediss; else printf redis; fi; }

cmd_stop() {
    [[ $# -eq 1 ]] || die "usage: redis.sh stop STATE_DIR"
    local state
    [[ -d $1 ]] || { log "not running (no $1)"; return 0; }
    state=$(abs_dir "$1")
    if [[ ! -f $state/redis.port ]]; then
        log "not running (no $state/redis.port)"
        rm -f -- "$state/redis.pid"
        return 0
    fi
    # TERM makes redis flush and fsync the AOF before exiting.
    stop_pid "$state/redis.pid" "$(needle "$(<"$state/redis.port")")" redis
}

cmd_status() {
    [[ $# -eq 1 ]] || die "usage: redis.sh status STATE_DIR"
    local state
    [[ -d $1 ]] || { log "not running"; return 1; }
    state=$(abs_dir "$1")
    if is_running "$state"; then
        log "running (pid $(<"$state/redis.pid"), 127.0.0.1:$(<"$state/redis.port"))"
        return 0
    fi
    log "not running"
    return 1
}

main() {
    local verb=${1:-}
    if [[ $# -gt 0 ]]; then shift; fi
    case $verb in
        start) cmd_start "$@" ;;
        start-secure) cmd_start_secure "$@" ;;
        acl-file) cmd_acl_file "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        *)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
            exit 2
            ;;
    esac
}

main "$@"
