#!/usr/bin/env bash
# The benchmark: fib-rpc against the references, measured side by side in one run, printed
# (on stdout; progress goes to stderr) as two tables: first the goals (issue 15), seven
# ratios of fib-rpc against a peer, each with the fib-rpc and peer figures, the ratio of
# their medians, the ratio within each round, the goal and whether it is met:
#   one caller vs the tutorial's Python pair (row 1, ≥ 1.8×), vs the bare amiquip pair with 1
#   in flight (row 8, ≥ 0.9×) and vs the Java client's RpcClient, 1 thread (row 11, ≥ 2×);
#   64 callers vs the bare amiquip pair with 64 in flight (row 2, ≥ 0.7×) and vs the Java
#   RpcClient shared by 64 threads (row 11, ≥ 2×); a cold `call 1000` process vs the
#   tutorial client's (row 3, ≤ 0.06×); a cold `call N`, N ~ 10^6, vs gmpy2 (row 12, ≤ 2.5×);
# then the details, every row below with the ratio to its target.
#
# Every throughput measurement below (rows 1, 2, 7, 8, 10 and 11 and their references) is
# run R times (--rounds), each run S seconds long (--seconds), interleaved by round: round 1
# runs each of them once, then round 2 does the same, and so on, so that a slow phase of the
# machine hits them all alike. The order within a round: 1 caller on our server, then on our
# --no-confirms server (and with direct reply-to on our server), 64 callers likewise, the
# bare amiquip client on our server, the Java RpcClient on our server with 1 thread, then 64;
# on the tutorial's, its client alone, then four at once; on the floor's echo server, the
# floor client with 64 in flight, then 1. The four servers are each started once, before
# round 1, and stay up (idle between their own runs) until the last round is over. The tables
# show each measurement's median over its runs with the min–max range; a ratio is ours'
# median / the reference's median, and the last column gives the ratio within each round.
#
#   1. one caller, sequential fib(10): `fib-rpc bench --callers 1` on `fib-rpc serve`
#      vs the tutorial's Python client in a loop on the tutorial's Python server (≥ 1.8×);
#   2. 64 callers sharing one client, fib(10): `fib-rpc bench --callers 64` vs four tutorial
#      clients at once on one tutorial server (sum, ≥ 8×) and vs the bare amiquip floor
#      (examples/amiquip_floor.rs, 64 in flight, its client on its echo server; ≥ 0.70×).
#      Then the clients alone: the bare amiquip client, 64 in flight, on our `fib-rpc serve`
#      (counting the answer 55), against the floor pair (the servers compared; no target),
#      and `fib-rpc bench --callers 64` against it (both on `fib-rpc serve`; ≥ 0.70×);
#   3. a cold `fib-rpc call 1000` process vs a cold tutorial client process calling 1000,
#      both against our `fib-rpc serve` (hyperfine mean wall time; ≤ 0.06×);
#   4. fib(10^6) computed and formatted: examples/fib_speed vs bench/python/gmp_fib.py
#      (gmpy2), total_ms (≤ 2×); "n/a" when either is missing;
#   5. peak RSS (VmHWM) of `fib-rpc serve`, read after each round's 64-caller run; the table
#      shows the last reading, the peak over all the rounds (≤ 8 MB = 8,000,000 B);
#   6. the stripped release binary, default features (no TLS) (≤ 2 MB = 2,000,000 B);
#   7. rows 1 and 2 again with `--reply-to direct`, when `fib-rpc --help` mentions it;
#   8. the floor pair with 1 in flight against row 1's one caller (≥ 0.9×);
#   9. where the time goes, under the table: for each client measurement above (rows 1, 2,
#      7, 8, 10 and 11), CPU time per successful call in µs of the broker (the beam.smp process:
#      if several, the one with `-sname rabbit`, else the oldest), of the server process and
#      of the client process, and the client's context switches per call (voluntary +
#      involuntary), each summed over the measurement's R runs (total CPU / total successful
#      calls). Broker and server: utime + stime from /proc/PID/stat, the difference over each
#      run; the client: GNU time (/usr/bin/time; n/a without it). The broker may be shared,
#      so others' work counts in its figure: its idle CPU, sampled for 2 s before the runs,
#      is shown alongside.
#  10. what publisher confirms cost: rows 1 and 2 (confirms on, the default on both sides)
#      against `fib-rpc bench --no-confirms --callers 1` and `--callers 64` on a second
#      server, `fib-rpc serve --no-confirms` (confirms off on both sides), for 1 and for 64
#      callers; the ratio is on / off (no target; the goal is a cost of at most 10%, on / off
#      ≥ 0.90×). Run when `fib-rpc serve --help` and `fib-rpc bench --help` mention
#      --no-confirms; n/a otherwise.
#  11. the RabbitMQ Java client's own RpcClient (bench/java/RpcBench.java, Debian's
#      librabbitmq-client-java, amqp-client 5.x): ONE RpcClient on one channel, direct
#      reply-to, calling fib(10) ("10", ok when "55") on our `fib-rpc serve` from 1 thread
#      (java_seq), then from 64 threads sharing it (java_64); rows 1 and 2 against it (≥ 2×
#      each). Each run's JVM first warms up for BENCH_JAVA_WARMUP seconds (default 5, 3 with
#      --quick; uncounted), then counts for S seconds; it takes its own CPU time (the whole
#      JVM) and the broker's and the server's ticks over the counted part alone, for row 9.
#      Compiled with javac into <target dir>/bench/java at each run. A failed Java run costs
#      only its own figure (n/a, with the reason);
#  12. cold `fib-rpc call N` processes, N = 10^6 + k with a fresh random k from 1..10000 each
#      run (the server's result cache never answers; our server runs with --max-n 1010000),
#      2 uncounted then 15 (5 with --quick), one at a time, timed by bench/python/cold_big_n.py
#      (hyperfine cannot vary the argument), every output checked against gmpy2's fib(N); the
#      median wall time against row 4's gmpy2 fib(10^6) computed and formatted in-process
#      (≤ 2.5×). Run after row 3, on our server.
#
# Usage: scripts/bench.sh [--quick] [--seconds S] [--rounds R]
#   --seconds S  seconds per throughput run (default 6; env BENCH_SECONDS)
#   --rounds R   runs of each throughput measurement, interleaved by round (default 3;
#                env BENCH_ROUNDS)
#   --quick      smoke test: 3 s runs, 1 round, 5 hyperfine runs, 5 big-N calls, 3 s of Java
#                warm-up (env BENCH_QUICK=1)
# The full default run (3 rounds of 13 runs of 6 s) takes about 5 minutes once built.
#
# It starts everything it needs: the broker (scripts/ensure-rabbitmq.sh), a release build
# (`cargo build --release --bins --examples`), the Python venv (scripts/python-env.sh; gmpy2
# is added for rows 4 and 12), the four servers, each on its own uniquely named queue.
# Measurements run one at a time, never overlapping. On exit it stops what it started and
# deletes the queues it created. Raw results go to <cargo target dir>/bench/results.json
# (every run, and the medians), and each step's output and logs to <cargo target
# dir>/bench/last-run/ (a throughput run's files are named NAME.ROUND.*). hyperfine (row 3),
# GNU time (CPU per call), a JDK (default-jdk-headless) and librabbitmq-client-java (row 11)
# are installed with apt-get when missing; without them those figures show n/a.
# Honours AMQP_URL (default amqp://guest:guest@localhost:5672/%2f) and CARGO_TARGET_DIR;
# BENCH_FIB_SPEED / BENCH_GMP_FIB run other programs for row 4 (stand-ins, for testing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "bench: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

usage() { sed -n '/^# Usage:/,/^# The full/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

run_seconds="${BENCH_SECONDS:-}"
rounds="${BENCH_ROUNDS:-}"
quick="${BENCH_QUICK:-0}"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --seconds)
            [ $# -ge 2 ] || die "--seconds needs a value"
            run_seconds="$2"
            shift
            ;;
        --seconds=*) run_seconds="${1#--seconds=}" ;;
        --rounds)
            [ $# -ge 2 ] || die "--rounds needs a value"
            rounds="$2"
            shift
            ;;
        --rounds=*) rounds="${1#--rounds=}" ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage
            die "unknown argument: $1"
            ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    run_seconds="${run_seconds:-3}"
    rounds="${rounds:-1}"
    hf_warmup=1
    hf_runs=5
    big_n_runs=5
    java_warmup="${BENCH_JAVA_WARMUP:-3}"
else
    run_seconds="${run_seconds:-6}"
    rounds="${rounds:-3}"
    hf_warmup=3
    hf_runs=30
    big_n_runs=15
    java_warmup="${BENCH_JAVA_WARMUP:-5}"
fi
[[ $run_seconds =~ ^[0-9]+([.][0-9]+)?$ ]] && [ "${run_seconds//[.0]/}" != "" ] ||
    die "seconds per run must be a number above 0, got '$run_seconds'"
[[ $rounds =~ ^[1-9][0-9]?$ ]] || die "rounds must be a whole number from 1 to 99, got '$rounds'"
[[ $java_warmup =~ ^[0-9]+$ ]] ||
    die "BENCH_JAVA_WARMUP must be whole seconds, got '$java_warmup'"
# Bounds for each step, so nothing hangs: a throughput run gets its length plus a margin; a
# Java run its warm-up and the JVM's start too.
run_bound=$((${run_seconds%.*} + 61))
java_bound=$((run_bound + java_warmup + 30))
# Row 12: cold `fib-rpc call N` with N = big_n_base + k, k from 1..big_n_span, a fresh N for
# each of its big_n_warmup + big_n_runs runs.
big_n_base=1000000
big_n_span=10000
big_n_warmup=2

export AMQP_URL="${AMQP_URL:-amqp://guest:guest@localhost:5672/%2f}"
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
out_dir="$target_dir/bench"
run_dir="$out_dir/last-run"
rm -rf "$run_dir"
mkdir -p "$run_dir"
started_at=$SECONDS

# ---- cleanup: stop what we started, delete the queues we created ----
pids=()    # processes started in the background (servers, parallel clients)
queues=()  # queues created on the broker
py=""      # the venv python, once known (deletes the queues)

alive() { # true while PID runs (a zombie, exited but not yet waited for, does not count)
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# Stops PID with SIGTERM, SIGKILL after $2 seconds (default 10); sets `stopped_status`.
stop_pid() {
    local pid="$1" bound="${2:-10}" waited=0
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && [ "$waited" -lt $((bound * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if alive "$pid"; then
        log "process $pid did not stop within ${bound}s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    stopped_status=0
    wait "$pid" 2>/dev/null || stopped_status=$?
    forget_pid "$pid"
}

forget_pid() { # PID has been waited for: nothing left to stop
    local kept=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    pids=("${kept[@]}")
}

delete_queues() {
    [ "${#queues[@]}" -gt 0 ] || return 0
    if [ -z "$py" ]; then
        log "cannot delete queues ${queues[*]}: no Python venv"
        return 0
    fi
    timeout 30 "$py" - "${queues[@]}" <<'PYEOF' || log "deleting queues ${queues[*]} failed"
import os, sys, pika
try:
    connection = pika.BlockingConnection(pika.URLParameters(os.environ['AMQP_URL']))
except Exception as err:
    sys.exit("bench: cannot connect to delete queues: %r" % err)
for queue in sys.argv[1:]:
    channel = connection.channel()  # a fresh channel each: an error closes the channel
    try:
        channel.queue_delete(queue=queue)
        channel.close()
    except Exception as err:
        print("bench: could not delete queue %s: %s" % (queue, err), file=sys.stderr)
connection.close()
PYEOF
    queues=()
}

cleanup() {
    local status=$?
    set +e
    for pid in "${pids[@]}"; do stop_pid "$pid" 5; done
    delete_queues
    if [ "$status" -eq 130 ] || [ "$status" -eq 143 ]; then
        log "interrupted after $((SECONDS - started_at)) s; stopped what it started"
    elif [ "$status" -ne 0 ]; then
        log "failed after $((SECONDS - started_at)) s; step outputs and logs are in $run_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- step helpers ----

# Runs one step under a time bound: `step NAME BOUND CMD...` writes stdout to
# $run_dir/NAME.out and stderr to $run_dir/NAME.err; on failure says which step and shows
# its stderr, then exits; or, while `step_may_fail` is 1, returns the step's exit status
# (for a peer whose failure should cost only its own rows).
step_may_fail=0
step() {
    local name="$1" bound="$2"
    shift 2
    local status=0 pid
    # In the background and waited for, so that a signal to this script stops it at once.
    timeout --kill-after=5 "$bound" "$@" >"$run_dir/$name.out" 2>"$run_dir/$name.err" &
    pid=$!
    pids+=("$pid")
    wait "$pid" || status=$?
    forget_pid "$pid"
    if [ "$status" -ne 0 ]; then
        [ "$status" -eq 124 ] && log "step '$name' took longer than ${bound}s"
        log "step '$name' failed (exit $status): $*"
        tail -n 20 "$run_dir/$name.err" >&2 || true
        [ "$step_may_fail" = 1 ] && return "$status"
        exit 1
    fi
}

# One round's run of `fib-rpc bench` on our server, as a measured step:
# `ours_run NAME CALLERS [GLOBAL OPTIONS...]`; its JSON goes to NAME.ROUND.json.
ours_run() {
    local name="$1" callers="$2"
    shift 2
    measured_step "$name.$round" "$run_bound" "$serve_pid" "$fib_rpc" "$@" --queue "$q_ours" \
        "${bench_args[@]}" --callers "$callers"
    json_of "$name.$round"
}

# Row 10's run: `fib-rpc bench --no-confirms` on our `fib-rpc serve --no-confirms`, as a
# measured step: `noconfirms_run NAME CALLERS`; its JSON goes to NAME.ROUND.json.
noconfirms_run() {
    local name="$1" callers="$2"
    measured_step "$name.$round" "$run_bound" "$noconfirms_pid" "$fib_rpc" --queue \
        "$q_noconfirms" "${bench_args[@]}" --no-confirms --callers "$callers"
    json_of "$name.$round"
}

# Row 11's run: bench/java/RpcBench.java (one RpcClient on one channel, direct reply-to)
# on our server, THREADS threads sharing it: `java_run NAME THREADS`; its JSON goes to
# NAME.ROUND.json. A plain step, not a measured one: the program itself takes its CPU and
# the broker's and the server's over its measured phase alone (not the JVM's start nor its
# warm-up). A failure costs only this run: NAME.ROUND.na says why.
java_run() {
    local name="$1.$round" status=0
    step_may_fail=1
    step "$name" "$java_bound" env BENCH_BROKER_PID="$broker_pid" \
        BENCH_SERVER_PID="$serve_pid" java -cp "$java_cp" RpcBench "$q_ours" "$2" \
        "$run_seconds" "$java_warmup" || status=$?
    step_may_fail=0
    if [ "$status" -eq 0 ]; then
        json_of "$name"
    else
        echo "failed (exit $status; see $run_dir/$name.err)" >"$run_dir/$name.na"
    fi
}

# The last line of step NAME's stdout (a JSON line) into NAME.json.
json_of() { tail -n 1 "$run_dir/$1.out" >"$run_dir/$1.json"; }

# CPU time used so far by process PID, all its threads: utime + stime (fields 14 and 15 of
# /proc/PID/stat) in clock ticks; prints nothing when PID is empty or gone.
cpu_ticks() {
    local stat fields
    [ -n "$1" ] || return 0
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    # Fields from 3 on follow the last ')' (the command name, field 2, may hold spaces).
    read -r -a fields <<<"${stat##*)}"
    [ "${#fields[@]}" -ge 13 ] || return 0
    echo $((fields[11] + fields[12]))
}

# Ticks used by a process between two `cpu_ticks` readings, or null when either is missing.
ticks_delta() {
    if [ -n "$1" ] && [ -n "$2" ]; then echo $(($2 - $1)); else echo null; fi
}

# `measured_step NAME BOUND SERVER_PID CMD...`: `step NAME BOUND CMD...` (a client run), and
# the CPU it cost: the broker's and SERVER_PID's ticks before and after go to NAME.cpu.json,
# the client's own CPU time and context switches, from GNU time, to NAME.time.
measured_step() {
    local name="$1" bound="$2" server="$3"
    shift 3
    local wrapper=() broker_before server_before broker_after server_after started ended
    if [ -n "$gnu_time" ]; then
        wrapper=("$gnu_time" -o "$run_dir/$name.time" -f '%e %U %S %w %c')
    fi
    broker_before="$(cpu_ticks "$broker_pid")"
    server_before="$(cpu_ticks "$server")"
    started="$(date +%s.%N)"
    step "$name" "$bound" "${wrapper[@]}" "$@"
    ended="$(date +%s.%N)"
    broker_after="$(cpu_ticks "$broker_pid")"
    server_after="$(cpu_ticks "$server")"
    printf '{"clk_tck":%s,"started":%s,"ended":%s,"broker_ticks":%s,"server_ticks":%s}\n' \
        "$clk_tck" "$started" "$ended" "$(ticks_delta "$broker_before" "$broker_after")" \
        "$(ticks_delta "$server_before" "$server_after")" >"$run_dir/$name.cpu.json"
}

# Starts a server in the background: `start_server NAME QUEUE CMD...`, log in NAME.log; sets
# `server_pid`. Waits until it answers on QUEUE: polls `fib-rpc call 1` (fib(1) = 1, so the
# echo floor answers it too) for at most 60 s, failing at once if the server dies.
start_server() {
    local name="$1" queue="$2"
    shift 2
    log "starting $name on queue $queue"
    queues+=("$queue")
    "$@" >"$run_dir/$name.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    local deadline=$((SECONDS + 60))
    while :; do
        if ! alive "$server_pid"; then
            tail -n 20 "$run_dir/$name.log" >&2 || true
            die "$name exited while starting (log: $run_dir/$name.log)"
        fi
        if timeout 10 "$fib_rpc" --queue "$queue" call --timeout 1 1 >/dev/null 2>&1; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$run_dir/$name.log" >&2 || true
            die "$name did not answer on $queue within 60 s (log: $run_dir/$name.log)"
        fi
        sleep 0.2
    done
}

# ---- preparation ----

log "checking the broker"
"$ROOT/scripts/ensure-rabbitmq.sh" >&2 || die "no RabbitMQ broker (scripts/ensure-rabbitmq.sh failed)"

log "building (cargo build --release --bins --examples)"
examples_built=yes
if ! cargo build --release --quiet --bins --examples; then
    # An example that does not build (row 4's fib_speed, say) must not cost the other rows.
    log "building all examples failed; building the binary and the floor only"
    examples_built=no
    cargo build --release --quiet --bins --example amiquip_floor ||
        die "cargo build --release --bins --example amiquip_floor failed"
fi
fib_rpc="$target_dir/release/fib-rpc"
floor="$target_dir/release/examples/amiquip_floor"
[ -x "$fib_rpc" ] && [ -x "$floor" ] || die "built binaries not found under $target_dir/release"

log "preparing the Python venv"
py="$("$ROOT/scripts/python-env.sh")" || die "scripts/python-env.sh failed"
[ -x "$py" ] || die "scripts/python-env.sh did not print a python path"
# gmpy2, for row 4 (GMP's fib(10^6)) and to check row 12's outputs: added to the venv when
# missing; without it those rows show n/a.
if ! "$py" -c 'import gmpy2' >/dev/null 2>&1; then
    log "installing gmpy2 into the venv"
    timeout 300 "$py" -m pip install -q --disable-pip-version-check gmpy2 >&2 ||
        log "installing gmpy2 failed: rows 4 and 12 show n/a"
fi
have_gmpy2=no
"$py" -c 'import gmpy2' >/dev/null 2>&1 && have_gmpy2=yes

run_id="$$-$(date +%s)-$RANDOM"
q_ours="fib-rpc-bench-$run_id-ours"
q_tutorial="fib-rpc-bench-$run_id-tutorial"
q_floor="fib-rpc-bench-$run_id-floor"
q_noconfirms="fib-rpc-bench-$run_id-noconfirms"

help_text="$("$fib_rpc" --help 2>&1)" || die "fib-rpc --help failed"
if [[ $help_text == *--reply-to* ]]; then
    reply_to_option=yes
else
    reply_to_option=no
fi
# Row 10 needs --no-confirms on both sides: `serve` (the server's replies) and `bench` (the
# client's requests).
serve_help="$("$fib_rpc" serve --help 2>&1)" || die "fib-rpc serve --help failed"
bench_help="$("$fib_rpc" bench --help 2>&1)" || die "fib-rpc bench --help failed"
if [[ $serve_help == *--no-confirms* ]] && [[ $bench_help == *--no-confirms* ]]; then
    confirms_option=yes
else
    confirms_option=no
fi
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"
log "seconds per run: $run_seconds; rounds: $rounds; direct reply-to: $reply_to_option;" \
    "--no-confirms: $confirms_option; load: $load_at_start"

# For CPU per call: the broker process (beam.smp; if several, the one named rabbit, else
# the oldest), the clock tick, and GNU time for the clients (not bash's `time` keyword).
clk_tck="$(getconf CLK_TCK)" || die "getconf CLK_TCK failed"
broker_pid=""
for pid in $(pgrep -f beam.smp || true); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '-sname rabbit'; then
        broker_pid="$pid"
        break
    fi
done
[ -n "$broker_pid" ] || broker_pid="$(pgrep -o -f beam.smp || true)"
[ -n "$broker_pid" ] || log "no beam.smp process found: the broker's CPU per call shows n/a"
# hyperfine (row 3) and GNU time (CPU per call) come from Debian's packages: installed here
# when missing, as scripts/ensure-rabbitmq.sh installs the broker; without apt-get they show
# n/a.
install_missing() { # COMMAND_OR_FILE PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -e "$1" ] && return 0
    command -v apt-get >/dev/null 2>&1 || return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || return 0
        sudo=(sudo)
    fi
    log "$1 not found: installing Debian's $2 via apt-get"
    { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" ||
        { "${sudo[@]}" apt-get update && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y "$2"; }; } >&2 || log "installing $2 failed"
}
install_missing hyperfine hyperfine
install_missing /usr/bin/time time
gnu_time=""
if [ -x /usr/bin/time ] && /usr/bin/time -f '%U' true >/dev/null 2>&1; then
    gnu_time=/usr/bin/time
else
    log "GNU time (/usr/bin/time) not found: the clients' CPU per call shows n/a" \
        "(install it: apt-get install time)"
fi
# Row 11's peer, the RabbitMQ Java client's own RpcClient: Debian's librabbitmq-client-java
# (amqp-client 5.x; its dependency libslf4j-java brings slf4j) and a JDK, installed when
# missing as above. bench/java/RpcBench.java is compiled here, into the target dir (nothing
# compiled is kept in the repository). Without them row 11 shows n/a, with the reason.
install_missing javac default-jdk-headless
install_missing /usr/share/java/amqp-client.jar librabbitmq-client-java
java_cp=""
java_version=none
amqp_jar_version=none
java_na() {
    echo "$1" >"$run_dir/java.na"
    log "row 11 shows n/a: $1"
}
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
    java_na "no java/javac (apt-get install default-jdk-headless)"
else
    java_version="$(java -version 2>&1 | head -n 1 | tr -d '"')"
    # The jar the package installs (under two names, amqp-client.jar and a versioned one,
    # the same file) and slf4j's, which it depends on.
    amqp_jar="$(dpkg -L librabbitmq-client-java 2>/dev/null |
        grep -E '^/usr/share/java/amqp-client(-[0-9.]+)?[.]jar$' | head -n 1 || true)"
    slf4j_api=/usr/share/java/slf4j-api.jar
    slf4j_simple=/usr/share/java/slf4j-simple.jar # logs the client's warnings to stderr
    if [ -z "$amqp_jar" ] || [ ! -f "$amqp_jar" ]; then
        java_na "no amqp-client jar (apt-get install librabbitmq-client-java)"
    elif [ ! -f "$slf4j_api" ]; then
        java_na "no $slf4j_api (apt-get install libslf4j-java)"
    else
        amqp_jar_version="librabbitmq-client-java $(dpkg-query -W -f='${Version}' \
            librabbitmq-client-java 2>/dev/null || echo '?')"
        java_classes="$out_dir/java"
        rm -rf "$java_classes"
        mkdir -p "$java_classes"
        libs="$amqp_jar:$slf4j_api"
        [ ! -f "$slf4j_simple" ] || libs="$libs:$slf4j_simple"
        log "compiling bench/java/RpcBench.java ($java_version, $amqp_jar_version)"
        step_may_fail=1
        if step javac 180 javac -d "$java_classes" -cp "$libs" bench/java/RpcBench.java; then
            java_cp="$libs:$java_classes"
        else
            java_na "javac failed (see $run_dir/javac.err)"
        fi
        step_may_fail=0
    fi
fi
# How busy the (shared) broker is with nothing of ours running: other users' work shows up
# in its CPU per call too.
if [ -n "$broker_pid" ]; then
    log "sampling the broker's idle CPU (2 s)"
    idle_before="$(cpu_ticks "$broker_pid")"
    idle_started="$(date +%s.%N)"
    sleep 2
    printf '{"clk_tck":%s,"started":%s,"ended":%s,"broker_ticks":%s,"server_ticks":null}\n' \
        "$clk_tck" "$idle_started" "$(date +%s.%N)" \
        "$(ticks_delta "$idle_before" "$(cpu_ticks "$broker_pid")")" \
        >"$run_dir/broker_idle.cpu.json"
fi

bench_args=(bench --seconds "$run_seconds" --n 10 --json)
# Failed calls are counted in the report (its error columns), not fatal to the whole run.
if [[ $bench_help == *--keep-going* ]]; then
    bench_args+=(--keep-going)
fi

# ---- the four servers: each started once, up through all the rounds ----

# Row 12 asks for N a little above 10^6, the default --max-n: our server's limit (only a
# range check) is raised to cover them.
serve_args=()
if [[ $serve_help == *--max-n* ]]; then
    serve_args=(--max-n $((big_n_base + big_n_span)))
else
    echo "fib-rpc serve has no --max-n" >"$run_dir/cold_big_n.na"
fi
start_server fib-rpc-serve "$q_ours" "$fib_rpc" --queue "$q_ours" serve "${serve_args[@]}"
serve_pid=$server_pid
start_server tutorial-server "$q_tutorial" "$py" -u bench/python/tutorial_server.py "$q_tutorial"
tutorial_pid=$server_pid
start_server amiquip-floor-server "$q_floor" "$floor" server "$q_floor"
floor_pid=$server_pid
noconfirms_pid=""
if [ "$confirms_option" = yes ]; then
    start_server fib-rpc-serve-noconfirms "$q_noconfirms" "$fib_rpc" --queue "$q_noconfirms" \
        serve --no-confirms
    noconfirms_pid=$server_pid
else
    log "fib-rpc serve or bench has no --no-confirms: row 10 shows n/a"
fi

# Fails when a server has exited: a client run on a dead server may still exit 0.
check_servers() {
    set -- fib-rpc-serve "$serve_pid" tutorial-server "$tutorial_pid" \
        amiquip-floor-server "$floor_pid"
    [ -z "$noconfirms_pid" ] || set -- "$@" fib-rpc-serve-noconfirms "$noconfirms_pid"
    while [ $# -ge 2 ]; do
        if ! alive "$2"; then
            tail -n 20 "$run_dir/$1.log" >&2 || true
            die "$1 (pid $2) exited during the runs (log: $run_dir/$1.log)"
        fi
        shift 2
    done
}

# `py4 ROUND`: four tutorial clients at once on the tutorial server, py4_I.ROUND.
py4() {
    local round="$1" i pid status client_pids=()
    for i in 1 2 3 4; do
        timeout --kill-after=5 "$run_bound" "$py" bench/python/tutorial_client.py \
            "$q_tutorial" 10 "$run_seconds" >"$run_dir/py4_$i.$round.out" \
            2>"$run_dir/py4_$i.$round.err" &
        client_pids+=($!)
        pids+=($!)
    done
    for i in 1 2 3 4; do
        pid="${client_pids[$((i - 1))]}"
        status=0
        wait "$pid" || status=$?
        forget_pid "$pid"
        if [ "$status" -ne 0 ]; then
            tail -n 20 "$run_dir/py4_$i.$round.err" >&2 || true
            die "tutorial client $i of 4 (round $round) failed (exit $status)"
        fi
        json_of "py4_$i.$round"
    done
}

# ---- the throughput runs, round by round: rows 1, 2, 5, 7, 8 and 10 ----
# (Each run of a Rust client is a `measured_step`: its CPU per call, row 9. A run's files
# are NAME.ROUND.*.)

per_round=7
[ "$reply_to_option" = no ] || per_round=$((per_round + 2))
[ "$confirms_option" = no ] || per_round=$((per_round + 2))
java_extra=0 # seconds a round's two Java runs add besides their measured phases
if [ -n "$java_cp" ]; then
    per_round=$((per_round + 2))
    java_extra=$((2 * (java_warmup + 1)))
fi
log "$rounds round(s) of $per_round runs of ${run_seconds}s each" \
    "(about $((rounds * (per_round * (${run_seconds%.*} + 1) + java_extra))) s)"
for ((round = 1; round <= rounds; round++)); do
    check_servers
    at="round $round/$rounds"

    log "$at, row 1: fib-rpc bench --callers 1 (${run_seconds}s)"
    ours_run ours_seq 1
    if [ "$confirms_option" = yes ]; then
        log "$at, row 10: fib-rpc bench --no-confirms --callers 1 on serve --no-confirms" \
            "(${run_seconds}s)"
        noconfirms_run ours_seq_noconfirms 1
    fi
    if [ "$reply_to_option" = yes ]; then
        log "$at, row 7: fib-rpc --reply-to direct bench --callers 1 (${run_seconds}s)"
        ours_run ours_seq_direct 1 --reply-to direct
    fi

    log "$at, row 2: fib-rpc bench --callers 64 (${run_seconds}s)"
    ours_run ours_64 64
    # Row 5, right after the 64-caller run: the server's peak resident set, in kB (KiB).
    awk '/^VmHWM:/ {print $2}' "/proc/$serve_pid/status" \
        >"$run_dir/serve_vmhwm_kib.$round.txt" ||
        die "cannot read VmHWM of fib-rpc serve (pid $serve_pid)"
    if [ "$confirms_option" = yes ]; then
        log "$at, row 10: fib-rpc bench --no-confirms --callers 64 on serve --no-confirms" \
            "(${run_seconds}s)"
        noconfirms_run ours_64_noconfirms 64
    fi
    if [ "$reply_to_option" = yes ]; then
        log "$at, row 7: fib-rpc --reply-to direct bench --callers 64 (${run_seconds}s)"
        ours_run ours_64_direct 64 --reply-to direct
    fi

    # Row 2, the clients alone: the bare amiquip client on our server, counting only the
    # right answer (fib(10) = 55, as `bench --n 10` asks).
    log "$at, row 2: amiquip floor client on fib-rpc serve, 64 in flight (${run_seconds}s)"
    measured_step "floor_on_ours.$round" "$run_bound" "$serve_pid" "$floor" client "$q_ours" \
        64 "$run_seconds" 55
    json_of "floor_on_ours.$round"

    # Row 11: the RabbitMQ Java client's own RpcClient on our server, one thread, then 64
    # threads sharing it; each JVM warms up first, uncounted.
    if [ -n "$java_cp" ]; then
        log "$at, row 11: Java RpcClient, 1 thread (${java_warmup}s warm-up, ${run_seconds}s)"
        java_run java_seq 1
        log "$at, row 11: Java RpcClient shared by 64 threads (${java_warmup}s warm-up," \
            "${run_seconds}s)"
        java_run java_64 64
    fi

    # The tutorial's Python pair: rows 1 and 2.
    log "$at, row 1: tutorial client alone (${run_seconds}s)"
    step "py_seq.$round" "$run_bound" "$py" bench/python/tutorial_client.py "$q_tutorial" 10 \
        "$run_seconds"
    json_of "py_seq.$round"
    log "$at, row 2: four tutorial clients at once (${run_seconds}s)"
    py4 "$round"

    # The bare amiquip floor pair: rows 2 and 8.
    log "$at, row 2: amiquip floor pair, 64 in flight (${run_seconds}s)"
    measured_step "floor.$round" "$run_bound" "$floor_pid" "$floor" client "$q_floor" 64 \
        "$run_seconds"
    json_of "floor.$round"
    log "$at, row 8: amiquip floor pair, 1 in flight (${run_seconds}s)"
    measured_step "floor_seq.$round" "$run_bound" "$floor_pid" "$floor" client "$q_floor" 1 \
        "$run_seconds"
    json_of "floor_seq.$round"
done
check_servers

log "stopping the tutorial server and the floor's echo server"
stop_pid "$tutorial_pid" 10
stop_pid "$floor_pid" 10 # it runs until killed
if [ -n "$noconfirms_pid" ]; then
    log "stopping fib-rpc serve --no-confirms (SIGTERM)"
    stop_pid "$noconfirms_pid" 40
    [ "$stopped_status" -eq 0 ] ||
        log "fib-rpc serve --no-confirms exited with status $stopped_status after SIGTERM"
fi

# ---- row 3, on our server alone ----

# Both cold processes against our server (the tutorial's recursive server cannot compute
# fib(1000)). First check that they print the same number.
if command -v hyperfine >/dev/null 2>&1; then
    step cold_check_ours 60 "$fib_rpc" --queue "$q_ours" call 1000
    step cold_check_py 60 "$py" bench/python/tutorial_client.py "$q_ours" 1000 0
    cmp -s "$run_dir/cold_check_ours.out" "$run_dir/cold_check_py.out" ||
        die "fib-rpc call 1000 and the tutorial client print different numbers (see $run_dir/cold_check_*.out)"
    hf=(hyperfine --shell=none --style basic --warmup "$hf_warmup" --runs "$hf_runs")
    log "row 3: hyperfine, fib-rpc call 1000 ($hf_runs runs)"
    step hf_ours 300 "${hf[@]}" --export-json "$run_dir/hf_ours.json" \
        "$(printf '%q ' "$fib_rpc" --queue "$q_ours" call 1000)"
    log "row 3: hyperfine, tutorial client 1000 ($hf_runs runs)"
    step hf_py 300 "${hf[@]}" --export-json "$run_dir/hf_py.json" \
        "$(printf '%q ' "$py" bench/python/tutorial_client.py "$q_ours" 1000 0)"
else
    log "hyperfine not found: row 3 shows n/a (install it: apt-get install hyperfine)"
    echo "hyperfine missing" >"$run_dir/hf.na"
fi

# ---- row 12: cold `fib-rpc call N` processes for N just above 10^6, a fresh N each ----

# A timing loop of our own (hyperfine cannot vary the argument from run to run): a fresh N
# each run, so the server's result cache never answers; every output checked against gmpy2.
if [ -e "$run_dir/cold_big_n.na" ]; then
    log "row 12 shows n/a: $(cat "$run_dir/cold_big_n.na")"
elif [ "$have_gmpy2" = no ]; then
    echo "no gmpy2 to check the outputs" >"$run_dir/cold_big_n.na"
    log "row 12 shows n/a: no gmpy2"
else
    log "row 12: cold fib-rpc call N, N from $((big_n_base + 1)) to" \
        "$((big_n_base + big_n_span)) ($big_n_warmup + $big_n_runs runs)"
    step_may_fail=1
    if step cold_big_n 600 "$py" bench/python/cold_big_n.py "$fib_rpc" "$q_ours" "$big_n_runs" \
        "$big_n_warmup" "$big_n_base" "$big_n_span"; then
        json_of cold_big_n
    else
        echo "failed (see $run_dir/cold_big_n.err)" >"$run_dir/cold_big_n.na"
    fi
    step_may_fail=0
fi

log "stopping fib-rpc serve (SIGTERM)"
stop_pid "$serve_pid" 40
echo "$stopped_status" >"$run_dir/serve_exit_status.txt"
[ "$stopped_status" -eq 0 ] || log "fib-rpc serve exited with status $stopped_status after SIGTERM"

delete_queues

# ---- row 4: fib(10^6), ours and GMP's (files written separately; either may be missing) ----

# BENCH_FIB_SPEED and BENCH_GMP_FIB name other programs to run instead (for testing).
fib_speed="${BENCH_FIB_SPEED:-}"
if [ -z "$fib_speed" ]; then
    if [ ! -f examples/fib_speed.rs ]; then
        echo "missing" >"$run_dir/fib_speed.na"
    elif [ "$examples_built" = no ]; then
        echo "build failed" >"$run_dir/fib_speed.na"
    else
        fib_speed="$target_dir/release/examples/fib_speed"
    fi
fi
if [ -n "$fib_speed" ]; then
    log "row 4: $fib_speed"
    if timeout --kill-after=5 300 "$fib_speed" >"$run_dir/fib_speed.out" \
        2>"$run_dir/fib_speed.err"; then
        json_of fib_speed
    else
        log "fib_speed failed (exit $?); see $run_dir/fib_speed.err"
        echo "failed" >"$run_dir/fib_speed.na"
    fi
fi
gmp_fib="${BENCH_GMP_FIB:-bench/python/gmp_fib.py}"
if [ ! -f "$gmp_fib" ]; then
    echo "missing" >"$run_dir/gmp.na"
else
    if [ "$have_gmpy2" = no ]; then
        echo "no gmpy2" >"$run_dir/gmp.na"
    else
        log "row 4: $gmp_fib 1000000"
        if timeout --kill-after=5 300 "$py" "$gmp_fib" 1000000 \
            >"$run_dir/gmp.out" 2>"$run_dir/gmp.err"; then
            json_of gmp
        else
            log "gmp_fib.py failed (exit $?); see $run_dir/gmp.err"
            echo "failed" >"$run_dir/gmp.na"
        fi
    fi
fi

# ---- row 6: the stripped binary (the build above: default features, no tls) ----

stat -c %s "$fib_rpc" >"$run_dir/binary_bytes.txt"
strip -o "$run_dir/fib-rpc.stripped" "$fib_rpc" || die "strip failed"
stat -c %s "$run_dir/fib-rpc.stripped" >"$run_dir/stripped_bytes.txt"
{ ldd "$run_dir/fib-rpc.stripped" 2>/dev/null || true; } | grep -c 'libssl' \
    >"$run_dir/stripped_links_libssl.txt" || true

# ---- the table ----

"$py" bench/python/report.py "$run_dir" "$out_dir/results.json" \
    "seconds_per_run=$run_seconds" "rounds=$rounds" "quick=$quick" "hyperfine_runs=$hf_runs" \
    "hyperfine_warmup=$hf_warmup" "reply_to_option=$reply_to_option" \
    "confirms_option=$confirms_option" "java=$java_version" "amqp_client=$amqp_jar_version" \
    "java_warmup_s=$java_warmup" "big_n_base=$big_n_base" "big_n_span=$big_n_span" \
    "big_n_runs=$big_n_runs" "big_n_warmup=$big_n_warmup" "clk_tck=$clk_tck" \
    "load_at_start=$load_at_start" "cpus=$(nproc)" "broker_pid=${broker_pid:-none}" \
    "gnu_time=${gnu_time:-none}" \
    "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "duration_s=$((SECONDS - started_at))" ||
    die "bench/python/report.py failed"
