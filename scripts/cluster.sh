#!/usr/bin/env bash
# A local three-node RabbitMQ cluster for fib-rpc's cluster and failover tests.
#
# It runs three extra nodes from the installed RabbitMQ (Debian's rabbitmq-server
# package), beside any default broker on this machine, and shares nothing with it:
# own node names, AMQP and Erlang distribution ports, data and log directories,
# Erlang cookie, configuration and (empty) plugin list. The system broker's files
# (/etc/rabbitmq, /var/lib/rabbitmq, its cookie) are never read or written.
#
# Usage: scripts/cluster.sh COMMAND [ARG]
#   start          start the three nodes and cluster them (fresh data when none runs)
#   stop           stop all three (graceful, then kill -9 what is left); keeps the data
#   clean          stop, then remove the data directory
#   status         which nodes are up (exit 0 only when all three are)
#   urls           the three AMQP URLs, one per line
#   url N          node N's AMQP URL
#   node N         node N's Erlang node name
#   kill N         kill -9 node N's Erlang VM
#   stop-node N    stop node N gracefully
#   start-node N   start node N again; it rejoins the cluster with its data
#   leader QUEUE   the number of the node holding the leader of quorum queue QUEUE (vhost /)
#   ctl N [TOOL] ARGS...
#                  run a RabbitMQ CLI tool (default rabbitmqctl) against node N, with the
#                  cluster's cookie, e.g.: ctl 1 cluster_status; ctl 2 rabbitmq-queues list
#
# Environment (defaults in brackets):
#   FIB_RPC_CLUSTER_DIR        data, logs, cookie, config   [/tmp/fib-rpc-cluster]
#   FIB_RPC_CLUSTER_PORT       AMQP port of node 1; nodes 2 and 3 use the next two   [5701]
#   FIB_RPC_CLUSTER_DIST_PORT  Erlang distribution port of node 1, then +1, +2   [PORT+20000]
#   FIB_RPC_CLUSTER_CTL_PORT   first of 20 distribution ports for the CLI tools   [PORT+30000]
#   FIB_RPC_CLUSTER_NAME       node names are NAME1@localhost .. NAME3@localhost   [fibrpc]
#   FIB_RPC_CLUSTER_TIMEOUT    bound in seconds on each wait (boot, join, stop)   [120]
#   FIB_RPC_CLUSTER_ERL_ARGS   extra emulator flags for the nodes, e.g. "+S 1:1"   [none]
#   FIB_RPC_RABBITMQ_BIN       directory of rabbitmq-server and its CLI tools   [/usr/lib/rabbitmq/bin]
set -euo pipefail

NODES=(1 2 3)
NAME="${FIB_RPC_CLUSTER_NAME:-fibrpc}"
# Short node names need a host part that resolves to this machine; the default broker
# uses "localhost" too, and /etc/hosts maps it to 127.0.0.1 everywhere.
HOST=localhost
DIR="${FIB_RPC_CLUSTER_DIR:-/tmp/fib-rpc-cluster}"
PORT="${FIB_RPC_CLUSTER_PORT:-5701}"
DIST_PORT="${FIB_RPC_CLUSTER_DIST_PORT:-$((PORT + 20000))}"
CTL_PORT="${FIB_RPC_CLUSTER_CTL_PORT:-$((PORT + 30000))}"
TIMEOUT="${FIB_RPC_CLUSTER_TIMEOUT:-120}"
# Extra emulator flags, e.g. "+S 1:1" for one scheduler per node. On a two-core machine
# that made no difference to boot times and saved little idle CPU, so the VM's defaults
# stay unless asked.
ERL_ARGS="${FIB_RPC_CLUSTER_ERL_ARGS:-}"
RMQ_BIN="${FIB_RPC_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}"

log() { echo "cluster: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
# The header comment above, as help: on stdout for "help", on stderr (exit 2) for misuse.
help_text() { sed -n '/^# Usage:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
usage() {
    help_text >&2
    exit 2
}

# --- settings check and layout ------------------------------------------------

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in PORT DIST_PORT CTL_PORT TIMEOUT; do
    is_uint "${!v}" || die "$v must be a number, not '${!v}'"
done
[[ $NAME =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || die "FIB_RPC_CLUSTER_NAME must be a plain word, not '$NAME'"
# The directory must be absolute (it is passed to processes with another cwd) and free
# of blanks (it is matched in the Erlang VM's command line to find our processes).
case "$DIR" in
    /*) ;;
    *) DIR="$PWD/$DIR" ;;
esac
DIR="${DIR%/}"
[[ -n $DIR && $DIR != *[[:space:]]* ]] || die "FIB_RPC_CLUSTER_DIR must be a directory path without blanks"
[[ $DIR != / ]] || die "FIB_RPC_CLUSTER_DIR must not be /"

ETC="$DIR/etc"            # rabbitmq.conf, enabled_plugins, an empty rabbitmq-env.conf
CLI_HOME="$DIR/cli"       # HOME of the CLI tools: holds their copy of the cookie
MARKER="$DIR/.fib-rpc-cluster" # says "made by this script": only such a directory is wiped

node_dir() { echo "$DIR/node$1"; } # HOME and cwd of node N, with its data, logs and cookie
node_name() { echo "$NAME$1@$HOST"; }
amqp_port() { echo $((PORT + $1 - 1)); }
dist_port() { echo $((DIST_PORT + $1 - 1)); }
url() { echo "amqp://guest:guest@127.0.0.1:$(amqp_port "$1")/%2f"; }
node_log() { echo "$(node_dir "$1")/log/$(node_name "$1").log"; }

check_n() {
    [[ ${1:-} =~ ^[123]$ ]] || die "node number must be 1, 2 or 3, not '${1:-}'"
}

# --- environment of the nodes and of the CLI tools ------------------------------

# Both run with a clean environment (env -i): nothing from the caller's RABBITMQ_* or
# ERL_* variables leaks in, and HOME points into our directory, so Erlang reads our
# cookie there and never creates ~/.erlang.cookie. RABBITMQ_CONF_ENV_FILE points to our
# own (empty) file, so /etc/rabbitmq/rabbitmq-env.conf (the default broker's node name,
# ERL_FLAGS, ...) is not read either.
COMMON_ENV=(
    PATH="$PATH"
    LC_ALL=C.UTF-8
    ERL_EPMD_ADDRESS=127.0.0.1 # only matters if our node is the one that starts epmd
    RABBITMQ_CONF_ENV_FILE="$ETC/rabbitmq-env.conf"
)

server_env() {
    local n=$1 nd
    nd="$(node_dir "$n")"
    SERVER_ENV=(
        "${COMMON_ENV[@]}"
        HOME="$nd"
        ERL_CRASH_DUMP="$nd/erl_crash.dump"
        RABBITMQ_NODENAME="$(node_name "$n")"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        RABBITMQ_NODE_PORT="$(amqp_port "$n")"
        RABBITMQ_DIST_PORT="$(dist_port "$n")"
        RABBITMQ_CONFIG_FILE="$ETC/rabbitmq.conf"
        RABBITMQ_CONFIG_FILES="$ETC/conf.d"
        RABBITMQ_ADVANCED_CONFIG_FILE="$ETC/advanced.config"
        RABBITMQ_ENABLED_PLUGINS_FILE="$ETC/enabled_plugins"
        RABBITMQ_MOTD_FILE="$ETC/motd"
        RABBITMQ_MNESIA_BASE="$nd/mnesia"
        RABBITMQ_LOG_BASE="$nd/log"
        RABBITMQ_PID_FILE="$nd/beam.pid"
        # Distribution listens on loopback only, like the AMQP listener.
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} $ERL_ARGS"
    )
}

CLI_ENV=(
    "${COMMON_ENV[@]}"
    HOME="$CLI_HOME"
    # Each CLI call is a short-lived Erlang node with a listening port of its own; keep
    # those away from the default broker's CLI range (35672-35682).
    RABBITMQ_CTL_DIST_PORT_MIN="$CTL_PORT"
    RABBITMQ_CTL_DIST_PORT_MAX="$((CTL_PORT + 19))"
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
)

# ctl SECONDS TOOL ARGS...: run a RabbitMQ CLI tool (rabbitmqctl, rabbitmq-queues, ...)
# against our nodes, killed after SECONDS at most.
ctl() {
    local secs=$1 tool=$2
    shift 2
    ((secs > 0)) || secs=1
    timeout "$secs" env -i "${CLI_ENV[@]}" "$RMQ_BIN/$tool" "$@"
}

# --- processes and ports ---------------------------------------------------------

# The pid of node N's Erlang VM, or nothing. The VM's command line carries
# "-home <its HOME>", and every node has its own HOME, so this finds the node even when
# its pid file is missing (not yet written at boot) or stale (after kill -9).
beam_pid() {
    local want pid args
    want=" -home $(node_dir "$1") "
    while read -r pid args; do
        case "$args" in
            *beam*"$want"*)
                echo "$pid"
                return 0
                ;;
        esac
    done < <(ps -ww -eo pid=,args=)
}

# The pid of the rabbitmq-server shell script that started node N, if it still runs.
# It runs the VM as its child and exits when the VM does.
launcher_pid() {
    local f pid
    f="$(node_dir "$1")/launcher.pid"
    [[ -f $f ]] || return 0
    pid="$(cat "$f")"
    if is_uint "$pid" && [[ "$(ps -o args= -p "$pid" 2>/dev/null || true)" == *rabbitmq-server* ]]; then
        echo "$pid"
    fi
}

node_alive() { [[ -n "$(beam_pid "$1")$(launcher_pid "$1")" ]]; }

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# True when node N answers the CLI and its rabbit application runs.
node_answers() {
    ctl 15 rabbitmqctl -n "$(node_name "$1")" -q await_startup --timeout 10 >/dev/null 2>&1
}

up_nodes() { # the numbers of the nodes whose VM runs
    local n
    for n in "${NODES[@]}"; do
        if [[ -n "$(beam_pid "$n")" ]]; then echo "$n"; fi
    done
}

# Show what a node said about itself: its stdout (early boot errors land there) and its
# log file.
show_logs() {
    local nd f
    nd="$(node_dir "$1")"
    for f in "$nd/stdout.log" "$(node_log "$1")"; do
        if [[ -s $f ]]; then
            log "last lines of $f:"
            tail -n "$([[ $f == "$nd/stdout.log" ]] && echo 12 || echo 25)" "$f" >&2
        fi
    done
}

# What a failed wait says after the logs: how the nodes are left.
FAIL_HINT=""

node_failed() {
    log "ERROR: $2"
    show_logs "$1"
    if [[ -n $FAIL_HINT ]]; then log "$FAIL_HINT"; fi
    exit 1
}

# The numbers of the nodes that node N counts as running members of its cluster.
cluster_members() {
    local out
    out="$(ctl 30 rabbitmqctl -n "$(node_name "$1")" -q cluster_status --formatter json 2>/dev/null)" || return 1
    # One JSON line: pick the "running_nodes":[...] list, then our node names in it.
    grep -o '"running_nodes":\[[^]]*\]' <<<"$out" |
        grep -oE "\"${NAME}[123]@$HOST\"" | sed -E "s/^\"${NAME}([123])@.*/\1/" | sort -u
}

# --- install, first layout ---------------------------------------------------------

ensure_installed() {
    [[ -x "$RMQ_BIN/rabbitmq-server" ]] && return 0
    # Same route as scripts/ensure-rabbitmq.sh, but we only install: starting the package's
    # default broker is not our business. (Debian's postinst may start it by itself.)
    command -v apt-get >/dev/null 2>&1 ||
        die "no RabbitMQ at $RMQ_BIN and no apt-get; install RabbitMQ or set FIB_RPC_RABBITMQ_BIN"
    local sudo=()
    if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then sudo=(sudo); fi
    log "rabbitmq-server not installed; installing it with apt-get"
    "${sudo[@]}" apt-get update >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >&2
    [[ -x "$RMQ_BIN/rabbitmq-server" ]] || die "installed rabbitmq-server, but $RMQ_BIN/rabbitmq-server is still missing"
}

# Empty DIR (only if this script made it) and lay out a fresh one. DIR itself stays, so
# a directory made beforehand for us (owner, mount point) keeps working.
fresh_dir() {
    if [[ -e $DIR ]]; then
        [[ -d $DIR ]] || die "$DIR is not a directory"
        if [[ -f $MARKER ]] || [[ -z "$(ls -A "$DIR")" ]]; then
            find "$DIR" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
        else
            die "$DIR exists and was not made by this script; refusing to wipe it (set FIB_RPC_CLUSTER_DIR)"
        fi
    fi
    local cookie home
    mkdir -p "$ETC/conf.d" "$CLI_HOME"
    touch "$MARKER"
    : >"$ETC/rabbitmq-env.conf"
    echo '[].' >"$ETC/enabled_plugins" # no plugins: no management listener on 15672
    cat >"$ETC/rabbitmq.conf" <<EOF
# Written by scripts/cluster.sh for all three nodes. The AMQP and distribution
# listeners (127.0.0.1 only) come from RABBITMQ_NODE_PORT and RABBITMQ_DIST_PORT.
cluster_name = $NAME
# guest may log in, from loopback only (RabbitMQ's default).
loopback_users.guest = true
log.file.level = info
log.console = false
EOF
    # One random cookie for the three nodes and the CLI tools, readable by us only.
    cookie="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n' | tr a-f A-F)"
    for home in "$CLI_HOME" "$(node_dir 1)" "$(node_dir 2)" "$(node_dir 3)"; do
        mkdir -p "$home"
        (umask 077 && printf '%s' "$cookie" >"$home/.erlang.cookie")
    done
}

# Before a fresh start: none of our ports or names may be taken by something else.
check_free() {
    local n p names
    names="$(epmd -names 2>/dev/null || true)"
    for n in "${NODES[@]}"; do
        for p in "$(amqp_port "$n")" "$(dist_port "$n")"; do
            if port_open "$p"; then
                die "port $p (node $n) is already in use; stop what listens there or set FIB_RPC_CLUSTER_PORT"
            fi
        done
        if grep -q "^name $NAME$n at " <<<"$names"; then
            die "an Erlang node named $NAME$n already runs here (another FIB_RPC_CLUSTER_DIR?); set FIB_RPC_CLUSTER_NAME"
        fi
    done
}

# --- starting and stopping one node ------------------------------------------------

# Start node N in the background, detached from our terminal (setsid) and from our
# file descriptors: stdout/stderr go to its stdout.log, and any other inherited
# descriptor is closed so that a caller reading our output through a pipe is not
# held open by the node.
launch() {
    local n=$1 nd
    nd="$(node_dir "$n")"
    [[ -f "$nd/.erlang.cookie" ]] || die "$nd has no cookie; run '$0 start' for a fresh cluster"
    # If no epmd runs, our first node starts one; remember that so that stop can end it.
    if ! epmd -names >/dev/null 2>&1; then touch "$DIR/epmd-started-here"; fi
    server_env "$n"
    rm -f "$nd/beam.pid"
    (
        cd "$nd"
        for fd in "/proc/$BASHPID/fd/"*; do
            fd="${fd##*/}"
            if ((fd > 2)); then eval "exec $fd>&-"; fi
        done 2>/dev/null
        exec env -i "${SERVER_ENV[@]}" setsid "$RMQ_BIN/rabbitmq-server" </dev/null >>"$nd/stdout.log" 2>&1
    ) &
    echo $! >"$nd/launcher.pid"
    disown $! # not our job to reap or report on (e.g. as "Killed")
}

# Wait (until DEADLINE, in $SECONDS) for node N to finish booting and accept AMQP.
await_node() {
    local n=$1 deadline=$2 node left
    node="$(node_name "$n")"
    while :; do
        node_alive "$n" || node_failed "$n" "node $n ($node) exited while starting"
        left=$((deadline - SECONDS))
        if ((left <= 0)); then
            node_failed "$n" "node $n ($node) did not finish booting within ${TIMEOUT}s"
        fi
        # await_startup fails at once while the node is not reachable yet, then waits for
        # the boot to finish.
        if ctl $((left + 5)) rabbitmqctl -n "$node" -q await_startup --timeout "$left" >/dev/null 2>&1 &&
            port_open "$(amqp_port "$n")"; then
            return 0
        fi
        sleep 1
    done
}

# Wait until node ASK counts every node in WANT... as a running cluster member.
await_members() {
    local ask=$1 deadline=$2 members n missing
    shift 2
    while :; do
        members=" $(cluster_members "$ask" | tr '\n' ' ')"
        missing=""
        for n in "$@"; do
            [[ $members == *" $n "* ]] || missing+=" $n"
        done
        [[ -z $missing ]] && return 0
        if ((SECONDS >= deadline)); then
            log "ERROR: node $ask sees running members [${members# }], not node(s)${missing}, after ${TIMEOUT}s"
            for n in $missing; do show_logs "$n"; done
            exit 1
        fi
        sleep 1
    done
}

# Join fresh node N to the cluster of node TO (stop_app / join_cluster / start_app).
# The CLI's output is shown only on failure: join_cluster also logs harmless errors
# about connection tracking tables of the stopped app.
join() {
    local n=$1 to=$2 node step out
    node="$(node_name "$n")"
    log "joining node $n to node $to"
    for step in stop_app "join_cluster $(node_name "$to")" start_app; do
        # shellcheck disable=SC2086 # $step is the command and its argument
        out="$(ctl "$TIMEOUT" rabbitmqctl -n "$node" -q $step 2>&1)" ||
            node_failed "$n" "'rabbitmqctl $step' on $node failed: $out"
    done
    touch "$(node_dir "$n")/joined"
}

# Wait until node N's VM and its launcher are gone, at most until DEADLINE; true if so.
await_gone() {
    local n=$1 deadline=$2
    while node_alive "$n"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# kill -9 node N's VM (and its launcher script, which exits with it anyway).
kill_hard() {
    local n=$1 pid
    for pid in $(beam_pid "$n") $(launcher_pid "$n"); do
        kill -9 "$pid" 2>/dev/null || true
    done
}

# kill -9 whatever is left of our nodes, and make sure it is gone.
kill_all() {
    local n left=()
    for n in "${NODES[@]}"; do
        if node_alive "$n"; then
            log "WARNING: node $n still runs; killing it"
            kill_hard "$n"
        fi
    done
    for n in "${NODES[@]}"; do
        await_gone "$n" $((SECONDS + 10)) || left+=("$n")
    done
    ((${#left[@]} == 0)) || die "node(s) ${left[*]} still running after kill -9"
}

# Graceful stop of node N, bounded; kill -9 if it does not end in time.
stop_one() {
    local n=$1 deadline=$((SECONDS + TIMEOUT))
    node_alive "$n" || return 0
    ctl "$TIMEOUT" rabbitmqctl -n "$(node_name "$n")" -q stop >/dev/null 2>&1 || true
    if ! await_gone "$n" "$deadline"; then
        log "WARNING: node $n did not stop within ${TIMEOUT}s; killing it"
        show_logs "$n"
        kill_hard "$n"
        await_gone "$n" $((SECONDS + 10)) || die "node $n survives kill -9"
    fi
}

# --- commands ----------------------------------------------------------------------

cmd_start() {
    local t0=$SECONDS deadline n up=() down=()
    ensure_installed
    for n in "${NODES[@]}"; do
        if node_alive "$n"; then up+=("$n"); else down+=("$n"); fi
    done
    deadline=$((SECONDS + TIMEOUT))

    if ((${#up[@]} == 0)); then
        # Nothing of ours runs: whatever DIR holds is from an earlier run; start afresh.
        check_free
        fresh_dir
        # A fresh start that fails leaves nothing running: the logs stay in DIR.
        trap 'if [[ $? -ne 0 ]]; then log "stopping the nodes of this failed start; logs are in $DIR"; kill_all; fi' EXIT
        log "starting ${NODES[*]/#/$NAME} in $DIR"
        for n in "${NODES[@]}"; do launch "$n"; done
        for n in "${NODES[@]}"; do await_node "$n" "$deadline"; done
        log "3 nodes booted in $((SECONDS - t0))s"
        # Joins one at a time: concurrent joins race on the cluster's schema.
        join 2 1
        join 3 1
    else
        if ((${#down[@]} == 0)) && [[ -f "$(node_dir 2)/joined" && -f "$(node_dir 3)/joined" ]] &&
            [[ "$(cluster_members 1 2>/dev/null | tr '\n' ' ')" == "1 2 3 " ]]; then
            log "already running and clustered"
            cmd_urls
            return 0
        fi
        # Some nodes run: restart the others with their data; they rejoin by themselves.
        for n in "${down[@]}"; do
            log "starting node $n again"
            launch "$n"
        done
        for n in "${NODES[@]}"; do await_node "$n" "$deadline"; done
        # A node that never got to join (an interrupted fresh start) joins now.
        for n in 2 3; do
            [[ -f "$(node_dir "$n")/joined" ]] || join "$n" 1
        done
    fi
    await_members 1 "$((SECONDS + TIMEOUT))" "${NODES[@]}"
    trap - EXIT
    log "cluster of 3 running nodes up in $((SECONDS - t0))s"
    cmd_urls
}

cmd_stop() {
    local t0=$SECONDS n
    for n in "${NODES[@]}"; do
        stop_one "$n" &
    done
    wait
    kill_all
    # epmd, if one of our nodes started it, unless other nodes still use it (epmd -kill
    # refuses then, which is what we want for the default broker's epmd).
    if [[ -f "$DIR/epmd-started-here" ]]; then
        if epmd -kill >/dev/null 2>&1; then log "stopped the epmd our node had started"; fi
        rm -f "$DIR/epmd-started-here"
    fi
    log "stopped in $((SECONDS - t0))s"
}

cmd_clean() {
    cmd_stop
    if [[ -e $DIR ]]; then
        [[ -f $MARKER ]] || die "$DIR was not made by this script; not removing it"
        rm -rf "$DIR"
        log "removed $DIR"
    fi
}

cmd_status() {
    local n pid all=0 first=""
    for n in "${NODES[@]}"; do
        pid="$(beam_pid "$n")"
        if [[ -z $pid ]]; then
            echo "node $n $(node_name "$n") down"
            all=1
        elif node_answers "$n"; then
            echo "node $n $(node_name "$n") up (pid $pid, $(url "$n"))"
            [[ -n $first ]] || first=$n
        else
            echo "node $n $(node_name "$n") not answering (pid $pid, booting or stopping)"
            all=1
        fi
    done
    if [[ -n $first ]]; then
        echo "running cluster members seen by node $first: $(cluster_members "$first" | tr '\n' ' ')"
    fi
    return $all
}

cmd_urls() {
    local n
    for n in "${NODES[@]}"; do url "$n"; done
}

cmd_kill() {
    local n=$1 t0=$SECONDS deadline=$((SECONDS + TIMEOUT)) pid
    pid="$(beam_pid "$n")"
    if [[ -z $pid ]]; then
        log "node $n is not running"
        return 0
    fi
    kill -9 "$pid"
    await_gone "$n" "$deadline" || die "node $n (pid $pid) still runs after kill -9"
    while port_open "$(amqp_port "$n")"; do
        ((SECONDS < deadline)) || die "port $(amqp_port "$n") still accepts connections after node $n died"
        sleep 0.2
    done
    log "killed node $n (pid $pid) in $((SECONDS - t0))s"
}

cmd_stop_node() {
    local n=$1 t0=$SECONDS
    if ! node_alive "$n"; then
        log "node $n is not running"
        return 0
    fi
    stop_one "$n"
    log "stopped node $n in $((SECONDS - t0))s"
}

cmd_start_node() {
    local n=$1 t0=$SECONDS deadline=$((SECONDS + TIMEOUT)) m others=()
    [[ -f $MARKER && -d "$(node_dir "$n")/mnesia" ]] || die "node $n has no data in $DIR; run '$0 start' first"
    for m in $(up_nodes); do
        [[ $m == "$n" ]] || others+=("$m")
    done
    if node_alive "$n"; then
        log "node $n is already running; waiting until it answers"
    else
        if ((${#others[@]} == 0)); then
            log "note: no other node runs; node $n waits for its peers unless it was the last to stop"
        fi
        launch "$n"
    fi
    FAIL_HINT="node $n is left running: a node that was not the last to stop waits for its peers, so start another node (or run '$0 stop')"
    await_node "$n" "$deadline"
    if [[ $n != 1 && ! -f "$(node_dir "$n")/joined" ]]; then
        join "$n" "${others[0]:-1}"
    fi
    await_members "$n" "$deadline" "$n" "${others[@]}"
    log "node $n up in $((SECONDS - t0))s"
}

cmd_leader() {
    local queue=$1 n out leader
    for n in $(up_nodes); do
        # quorum_status lists each member with its Raft state; the leader's row says "leader".
        out="$(ctl 30 rabbitmq-queues -n "$(node_name "$n")" -q quorum_status "$queue" --vhost / 2>&1)" || {
            # A node that cannot be reached (stopping, just killed): ask the next one.
            # Any other error is the node's answer, e.g. "not_found" or a classic queue.
            if grep -qi "unable to perform an operation on node\|unable to connect\|timed out\|nodedown" <<<"$out" ||
                [[ -z $out ]]; then
                continue
            fi
            die "quorum queue '$queue' in vhost /: $(grep -v '^Error:\?$' <<<"$out" | tr '\n' ' ')"
        }
        leader="$(grep -iE '\bleader\b' <<<"$out" | grep -oE "${NAME}[123]@$HOST" | sed -n 1p || true)"
        if [[ -n $leader ]]; then
            leader="${leader#"$NAME"}"
            echo "${leader%@*}"
            return 0
        fi
        die "node $n knows quorum queue '$queue' but reports no leader: $(tr '\n' ' ' <<<"$out")"
    done
    die "no node answered about quorum queue '$queue' (is the cluster up?)"
}

# Commands that start or stop nodes take a lock first, so that two of them (say, from
# tests running in parallel) do not both wipe and start the same cluster. The lock file
# sits beside DIR, which start empties and clean removes.
lock() {
    command -v flock >/dev/null 2>&1 || return 0
    if ! { exec 9>>"$DIR.lock"; } 2>/dev/null; then
        log "warning: cannot create $DIR.lock; running without a lock"
        return 0
    fi
    flock -w "$TIMEOUT" 9 || die "another cluster.sh still holds $DIR.lock after ${TIMEOUT}s"
}

cmd_ctl() {
    local n=$1 tool=rabbitmqctl
    shift
    case "$1" in
        rabbitmq*)
            tool=$1
            shift
            ;;
    esac
    ctl "$TIMEOUT" "$tool" -n "$(node_name "$n")" "$@"
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        start | stop | clean | kill | stop-node | start-node) lock ;;
    esac
    case "$cmd" in
        start | stop | clean | status | urls)
            [[ $# -eq 0 ]] || usage
            "cmd_$cmd"
            if [[ $cmd == stop && -d $DIR ]]; then log "data and logs kept in $DIR (the next start wipes them)"; fi
            ;;
        url | node | kill | stop-node | start-node)
            [[ $# -eq 1 ]] || usage
            check_n "$1"
            case "$cmd" in
                url) url "$1" ;;
                node) node_name "$1" ;;
                kill) cmd_kill "$1" ;;
                stop-node) cmd_stop_node "$1" ;;
                start-node) cmd_start_node "$1" ;;
            esac
            ;;
        leader)
            [[ $# -eq 1 && -n $1 ]] || usage
            cmd_leader "$1"
            ;;
        ctl)
            [[ $# -ge 2 ]] || usage
            check_n "$1"
            cmd_ctl "$@"
            ;;
        -h | --help | help) help_text ;;
        *) usage ;;
    esac
}

main "$@"
