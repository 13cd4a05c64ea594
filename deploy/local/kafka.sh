#!/usr/bin/env bash
# Real single-node Apache Kafka (KRaft, combined broker+controller) on
# loopback, for development and CI. No Docker, no tarball download: the jars
# come from Maven Central through deploy/local/kafka-pom.xml.
#
# Usage:
#   kafka.sh fetch                 fetch jars into the cache (once)
#   kafka.sh start STATE_DIR       start (or restart with same port+data);
#                                  prints "127.0.0.1:PORT" on stdout
#   kafka.sh start-secure STATE_DIR CERT_DIR
#                                  the same broker, but clients connect over
#                                  SASL_SSL (SCRAM-SHA-512) only, with ACLs;
#                                  see "Secure broker" below
#   kafka.sh stop STATE_DIR        stop; no error if not running
#   kafka.sh status STATE_DIR      exit 0 if running
#   kafka.sh run CLASS [ARGS...]   run a class from the jars (e.g.
#                                  org.apache.kafka.tools.TopicCommand)
#
# Environment:
#   TWINMON_CACHE        cache root (default ~/.cache/twinmon)
#   KAFKA_PORT           broker port for a fresh STATE_DIR (default: free port)
#   KAFKA_CONTROLLER_PORT  controller port for a fresh STATE_DIR (default: free)
#   KAFKA_HEAP_OPTS      broker heap (default "-Xms256m -Xmx768m")
#   KAFKA_START_TIMEOUT  seconds to wait for readiness (default 90)
#   JAVA_HOME            java to use (default: java on PATH)
#
# Secure broker (start-secure). CERT_DIR is made by certs.sh (ca.pem,
# server-keystore.pem). The one client listener is SASL_SSL with SCRAM-SHA-512;
# the controller listener (loopback) is TLS with client certificates, so only
# the broker itself (holding the server key) gets in. StandardAuthorizer, deny
# by default; super user = the admin user and the broker's certificate. SCRAM
# users are created when the storage is formatted (first start), from:
#   KAFKA_ADMIN_PASSWORD    password of user "admin" (required)
#   KAFKA_CLIENT_USER       the application's user (default twinmon)
#   KAFKA_CLIENT_PASSWORD   its password (required)
#   KAFKA_ACL_TOPIC_PREFIXES  comma-separated topic name prefixes the client
#                           user may create, describe, read and write
#                           (default: vitals,alerts,enrolments,alert-actions,audit)
#   KAFKA_ACL_GROUP_PREFIX  consumer group prefix it may use (default twinmon)
# and twinmon's own principals, from KAFKA_ACL_FILE (default
# deploy/kafka-acls.toml): each ROLE there gets its SCRAM user when
# KAFKA_<ROLE>_PASSWORD is set (KAFKA_WORKER_PASSWORD, KAFKA_FEED_PASSWORD,
# ...), and the file's ACLs are added with topic names
# KAFKA_ACL_TOPIC_PREFIX + the file's defaults (default prefix: none) and
# consumer group TWINMON_APP_ID = KAFKA_ACL_APP_ID (default twinmon).
# STATE_DIR/admin.properties (mode 600) is a client config for the admin user,
# e.g. kafka.sh run org.apache.kafka.tools.AclCommand --command-config it.
# Passwords are never printed; they are in STATE_DIR files readable by the
# owner only.
#
# Only the address goes to stdout; everything else goes to stderr so callers
# can do ADDR=$(kafka.sh start DIR).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
LOG_PREFIX=kafka.sh

POM=$SCRIPT_DIR/kafka-pom.xml
# The pom is the single source of truth for the version.
KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM")
[[ -n $KAFKA_VERSION ]] || die "cannot read <kafka.version> from $POM"

CACHE_DIR=${TWINMON_CACHE:-$HOME/.cache/twinmon}/kafka-$KAFKA_VERSION
LIBS=$CACHE_DIR/libs
MARKER=$CACHE_DIR/libs.complete
TOOLS_LOG4J=$CACHE_DIR/tools-log4j2.properties

if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    JAVA=$JAVA_HOME/bin/java
else
    JAVA=java
fi

# The marker stores the pom's checksum, so editing the pom (a new dependency,
# not only a version bump) triggers a refetch instead of a stale classpath.
pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

fetch_is_complete() {
    [[ -f $MARKER && $(<"$MARKER") == "$(pom_sum)" ]]
}

cmd_fetch() {
    mkdir -p -- "$CACHE_DIR"
    write_tools_log4j
    fetch_is_complete && return 0
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    # flock: parallel CI jobs / test workers sharing one cache must not fetch
    # into the same directory at once. The lock fd lives only in this
    # subshell so the broker started later never inherits it.
    (
        flock 9
        fetch_is_complete && exit 0
        log "fetching Kafka $KAFKA_VERSION jars into $LIBS"
        local tmp=$CACHE_DIR/libs.tmp.$$ started=$SECONDS
        rm -rf -- "$tmp"
        # mvn's output goes to stderr (stdout is ours). Debian's Maven 3.8
        # emits bare colour resets even with -B, hence the sed.
        if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" 2>&1 </dev/null \
            | sed $'s/\e\\[[0-9;]*m//g' >&2; then
            rm -rf -- "$tmp"
            die "mvn could not fetch the Kafka jars"
        fi
        ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 \
            || die "fetch incomplete: kafka_2.13-$KAFKA_VERSION.jar missing"
        # Swap in whole so a half-copied libs/ is never on a classpath.
        rm -rf -- "$LIBS"
        mv -- "$tmp" "$LIBS"
        pom_sum >"$MARKER"
        log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - started))s"
    ) 9>"$CACHE_DIR/.fetch.lock"
}

# Command-line tools (TopicCommand, console producer...) log at WARN to
# stderr; log4j2 without a config would complain about the missing config.
write_tools_log4j() {
    [[ -f $TOOLS_LOG4J ]] && return 0
    cat >"$TOOLS_LOG4J.tmp.$$" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
    mv -f -- "$TOOLS_LOG4J.tmp.$$" "$TOOLS_LOG4J"
}

# Run a Kafka class (tool) with the fetched jars. Small heap and C1-only JIT:
# these JVMs live for seconds, so fast startup beats peak throughput.
run_class() {
    "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
        -cp "$LIBS/*" "$@"
}

cmd_run() {
    [[ $# -ge 1 ]] || die "usage: kafka.sh run CLASS [ARGS...]"
    cmd_fetch
    run_class "$@"
}

# Random KRaft cluster id: 16 random bytes, URL-safe base64 without padding,
# as kafka-storage random-uuid makes, but without a JVM start. Like Kafka's
# Uuid.randomUuid we avoid a leading '-', which CLIs read as an option.
random_cluster_id() {
    python3 -c '
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break
'
}

write_server_properties() {
    local state=$1 port=$2 cport=$3
    cat >"$state/server.properties" <<EOF
# Written by deploy/local/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
# Dynamic quorum (KIP-853): matches "kafka-storage format --standalone".
controller.quorum.bootstrap.servers=127.0.0.1:$cport
controller.listener.names=CONTROLLER
log.dirs=$state/data
EOF
    if [[ -n $SECURE_CERT_DIR ]]; then
        write_secure_listeners "$state" "$port" "$cport"
    else
        cat >>"$state/server.properties" <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
    fi
    cat >>"$state/server.properties" <<EOF

# One node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions than the default 50: the first consumer group or
# transaction then comes up in well under a second on a 2-core CI machine.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4

# Tests want consumer groups to get assignments immediately.
group.initial.rebalance.delay.ms=0
num.partitions=4
# Topics must be created explicitly, as in production.
auto.create.topics.enable=false
EOF
}

# Same log format as Kafka's own config, to stdout (redirected to kafka.log).
write_broker_log4j() {
    cat >"$1/log4j2.properties" <<'EOF'
status = error
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
# The same noise reduction as Kafka's shipped log4j2.yaml.
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.controller.name = kafka.controller
logger.controller.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

is_running() {
    local state=$1
    [[ -f $state/kafka.pid ]] && pid_alive "$(<"$state/kafka.pid")" "$state/server.properties"
}

# Readiness = process alive, log says started, port accepts, and a real
# metadata request (TopicCommand --list) succeeds. The log line alone is not
# enough: it can precede the listener accepting requests.
wait_ready() {
    local state=$1 port=$2 pid=$3 timeout=${KAFKA_START_TIMEOUT:-90}
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        # pid_exists, not pid_alive: until the forked shell has exec'd java (slow on a loaded machine) its
        # command line is this script's, and the broker would be taken for dead. It is our own child: no
        # recycled pid to fear here.
        if ! pid_exists "$pid"; then
            tail_log "$state/kafka.log" 60
            die "broker process $pid exited during startup"
        fi
        if grep -q 'Kafka Server started' "$state/kafka.log" 2>/dev/null \
            && port_open "$port" \
            && timeout 30 "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
                -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIBS/*" \
                org.apache.kafka.tools.TopicCommand \
                --bootstrap-server "127.0.0.1:$port" "${ADMIN_CONFIG[@]}" --list >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    tail_log "$state/kafka.log" 60
    log "broker not ready after ${timeout}s; stopping it"
    stop_pid "$state/kafka.pid" "$state/server.properties" kafka
    exit 1
}

cmd_start() {
    [[ $# -eq 1 ]] || die "usage: kafka.sh start STATE_DIR"
    local state port cport cluster_id pid started
    state=$(abs_dir "$1")
    # A secure state dir must not come back up without its security.
    if [[ -z $SECURE_CERT_DIR && -f $state/admin.properties ]]; then
        die "$state was started with start-secure; start it with: kafka.sh start-secure $1 CERT_DIR"
    fi

    if is_running "$state"; then
        log "already running (pid $(<"$state/kafka.pid"))"
        printf '127.0.0.1:%s\n' "$(<"$state/kafka.port")"
        return 0
    fi
    rm -f -- "$state/kafka.pid"

    cmd_fetch
    command -v "$JAVA" >/dev/null || die "java not found"

    # Ports: a STATE_DIR that ran before keeps its ports. Besides clients
    # reconnecting to the same address, the controller endpoint is recorded
    # in the formatted metadata (standalone quorum), so it must not change.
    if [[ -f $state/kafka.port && -f $state/kafka.controller.port ]]; then
        port=$(<"$state/kafka.port")
        cport=$(<"$state/kafka.controller.port")
        if [[ -n ${KAFKA_PORT:-} && $KAFKA_PORT != "$port" ]]; then
            log "ignoring KAFKA_PORT=$KAFKA_PORT: $state already uses port $port"
        fi
    else
        local free
        mapfile -t free < <(free_ports 2)
        port=${KAFKA_PORT:-${free[0]}}
        cport=${KAFKA_CONTROLLER_PORT:-${free[1]}}
        [[ $port != "$cport" ]] || cport=${free[0]}
    fi
    for p in "$port" "$cport"; do
        [[ $p =~ ^[0-9]+$ ]] || die "bad port '$p' (check $state/kafka*.port)"
        ! port_open "$p" || die "127.0.0.1:$p is already in use"
    done
    printf '%s\n' "$port" >"$state/kafka.port"
    printf '%s\n' "$cport" >"$state/kafka.controller.port"

    if [[ -n $SECURE_CERT_DIR ]]; then
        prepare_secure "$state"
    fi
    write_server_properties "$state" "$port" "$cport"
    write_broker_log4j "$state"

    # Format only once: meta.properties marks formatted storage, and
    # reformatting would need a new cluster id and wipe the topics.
    if [[ ! -f $state/data/meta.properties ]]; then
        cluster_id=$(random_cluster_id)
        log "formatting storage in $state/data (cluster id $cluster_id)"
        if ! run_class kafka.tools.StorageTool format --standalone \
            -t "$cluster_id" -c "$state/server.properties" "${SCRAM_ARGS[@]}" \
            >"$state/format.log" 2>&1; then
            cat -- "$state/format.log" >&2
            die "storage format failed"
        fi
    fi

    rotate_log "$state/kafka.log"
    started=$SECONDS
    # stdin/stdout/stderr all redirected: a broker holding the caller's
    # stdout pipe would make $(kafka.sh start ...) or subprocess.run() hang.
    # G1 + modest heap as in kafka-server-start.sh, sized for a 2-core CI box.
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags.
    "$JAVA" ${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m} \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$state/log4j2.properties" \
        -cp "$LIBS/*" kafka.Kafka "$state/server.properties" \
        </dev/null >"$state/kafka.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$state/kafka.pid"
    log "started broker pid $pid on 127.0.0.1:$port (controller $cport), waiting"

    wait_ready "$state" "$port" "$pid"
    if [[ -n $SECURE_CERT_DIR ]]; then
        grant_client_acls "$state" "$port"
    fi
    log "ready in $((SECONDS - started))s"
    printf '127.0.0.1:%s\n' "$port"
}

# ---- Secure broker (start-secure) ------------------------------------------

SECURE_CERT_DIR=
ADMIN_CONFIG=()
SCRAM_ARGS=()

# Passwords go into a JAAS line and a properties file: no quotes, backslashes
# or line breaks, and long enough to be a password.
check_password() {
    local name=$1 value=${!1:-}
    [[ -n $value ]] || die "start-secure needs $name"
    ((${#value} >= 8)) || die "$name must have at least 8 characters"
    [[ $value != *[\"\\$'\n\r']* ]] || die "$name must not contain quotes, backslashes or line breaks"
}

client_user() { printf '%s' "${KAFKA_CLIENT_USER:-twinmon}"; }

# --add-scram argument with a salted password (PBKDF2, as SCRAM stores it),
# so the clear password never appears on a command line.
scram_credential() {
    SCRAM_USER=$1 SCRAM_PASSWORD=$2 python3 -c '
import base64, hashlib, os
iterations = 8192
salt = os.urandom(24)
salted = hashlib.pbkdf2_hmac("sha512", os.environ["SCRAM_PASSWORD"].encode(), salt, iterations)
print("SCRAM-SHA-512=[name=%s,iterations=%d,salt=\"%s\",saltedpassword=\"%s\"]" % (
    os.environ["SCRAM_USER"], iterations, base64.b64encode(salt).decode(), base64.b64encode(salted).decode()))
'
}

prepare_secure() {
    local state=$1 cert=$SECURE_CERT_DIR user
    user=$(client_user)
    [[ -s $cert/ca.pem && -s $cert/server-keystore.pem ]] \
        || die "$cert has no ca.pem/server-keystore.pem (make them with certs.sh $cert)"
    [[ $user =~ ^[A-Za-z0-9._-]+$ && $user != admin ]] || die "bad KAFKA_CLIENT_USER '$user'"
    check_password KAFKA_ADMIN_PASSWORD
    check_password KAFKA_CLIENT_PASSWORD
    (
        umask 077
        cat >"$state/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$cert/ca.pem
EOF
    )
    ADMIN_CONFIG=(--command-config "$state/admin.properties")
    if [[ ! -f $state/data/meta.properties ]]; then
        local admin_cred client_cred
        admin_cred=$(scram_credential admin "$KAFKA_ADMIN_PASSWORD")
        client_cred=$(scram_credential "$user" "$KAFKA_CLIENT_PASSWORD")
        SCRAM_ARGS=(--add-scram "$admin_cred" --add-scram "$client_cred")
        local role name var users
        users=$(acl_file_lines --users)
        while read -r role name; do
            var=KAFKA_${role^^}_PASSWORD
            [[ -n ${!var:-} ]] || continue
            check_password "$var"
            SCRAM_ARGS+=(--add-scram "$(scram_credential "$name" "${!var}")")
        done <<<"$users"
    fi
}

ACL_FILE=${KAFKA_ACL_FILE:-$SCRIPT_DIR/../kafka-acls.toml}
# The file's principals ("ROLE USER") or its kafka-acls arguments, one call a
# line, rendered by streams/kafka_acls.py (standard library only).
acl_file_lines() {
    python3 "$SCRIPT_DIR/../../streams/kafka_acls.py" "$ACL_FILE" "$@" \
        || die "cannot read the ACL file $ACL_FILE"
}

write_secure_listeners() {
    local state=$1 port=$2 cport=$3 cert=$SECURE_CERT_DIR
    chmod 600 "$state/server.properties"
    cat >>"$state/server.properties" <<EOF
# Clients: SASL_SSL only. The controller listener takes only TLS clients with
# a certificate from our CA (the broker itself).
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$port
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$cert/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$cert/ca.pem
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:CN=twinmon-broker
EOF
}

acl_add() {
    local state=$1 port=$2
    shift 2
    run_class org.apache.kafka.tools.AclCommand --bootstrap-server "127.0.0.1:$port" \
        "${ADMIN_CONFIG[@]}" --add --allow-principal "User:$(client_user)" \
        --resource-pattern-type prefixed "$@" >>"$state/acl.log" 2>&1 \
        || { tail_log "$state/acl.log" 30; die "cannot add ACLs for $(client_user)"; }
}

# The client user may use its topics and consumer groups, nothing else.
# Adding an ACL that exists already is a no-op, so restarts repeat this.
grant_client_acls() {
    local state=$1 port=$2 prefix prefixes topics=()
    local topic_prefixes=${KAFKA_ACL_TOPIC_PREFIXES:-vitals,alerts,enrolments,alert-actions,audit}
    local group_prefix=${KAFKA_ACL_GROUP_PREFIX:-twinmon}
    IFS=, read -r -a prefixes <<<"$topic_prefixes"
    for prefix in "${prefixes[@]}"; do
        [[ -n $prefix ]] && topics+=(--topic "$prefix")
    done
    ((${#topics[@]})) || die "KAFKA_ACL_TOPIC_PREFIXES is empty"
    acl_add "$state" "$port" "${topics[@]}" --operation Create --operation Describe \
        --operation DescribeConfigs --operation Read --operation Write
    acl_add "$state" "$port" --group "$group_prefix" --operation Read --operation Describe
    log "ACLs: User:$(client_user) on topic prefixes $topic_prefixes and group prefix $group_prefix"
    local line args calls
    calls=$(acl_file_lines "${KAFKA_ACL_TOPIC_PREFIX:-}" "${KAFKA_ACL_APP_ID:-twinmon}")
    while read -r line; do
        read -r -a args <<<"$line"
        run_class org.apache.kafka.tools.AclCommand --bootstrap-server "127.0.0.1:$port" \
            "${ADMIN_CONFIG[@]}" --add "${args[@]}" >>"$state/acl.log" 2>&1 \
            || { tail_log "$state/acl.log" 30; die "cannot add the ACLs of $ACL_FILE"; }
    done <<<"$calls"
    log "ACLs: the principals of $ACL_FILE"
}

cmd_start_secure() {
    [[ $# -eq 2 ]] || die "usage: kafka.sh start-secure STATE_DIR CERT_DIR"
    SECURE_CERT_DIR=$(abs_dir "$2")
    cmd_start "$1"
}

# ---------------------------------------------------------------------------

cmd_stop() {
    [[ $# -eq 1 ]] || die "usage: kafka.sh stop STATE_DIR"
    local state
    [[ -d $1 ]] || { log "not running (no $1)"; return 0; }
    state=$(abs_dir "$1")
    stop_pid "$state/kafka.pid" "$state/server.properties" kafka
}

cmd_status() {
    [[ $# -eq 1 ]] || die "usage: kafka.sh status STATE_DIR"
    local state
    [[ -d $1 ]] || { log "not running"; return 1; }
    state=$(abs_dir "$1")
    if is_running "$state"; then
        log "running (pid $(<"$state/kafka.pid"), 127.0.0.1:$(<"$state/kafka.port"))"
        return 0
    fi
    log "not running"
    return 1
}

main() {
    local verb=${1:-}
    if [[ $# -gt 0 ]]; then shift; fi
    case $verb in
        fetch) cmd_fetch ;;
        start) cmd_start "$@" ;;
        start-secure) cmd_start_secure "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        run) cmd_run "$@" ;;
        *)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
            exit 2
            ;;
    esac
}

main "$@"
