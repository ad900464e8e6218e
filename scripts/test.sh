#!/usr/bin/env bash
# The one test command: make sure a broker, the Python interop peers and
# OpenSSL's development files are available, then run every Rust test
# (unit, integration, examples, doc tests), and the TLS tests with the
# `tls` feature. Extra arguments are passed to every cargo test invocation.
set -euo pipefail

# Resolve the repo root from this script's location so any cwd works.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/ensure-rabbitmq.sh"
"$ROOT/scripts/ensure-openssl-dev.sh"
# tests/cluster.rs starts a local three-node cluster beside the broker (scripts/cluster.sh,
# its own ports, names, data and cookie) and stops it when it ends; should the test process be
# killed instead, this stops it too, so nothing is left running.
trap '"$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true' EXIT

# Assign before export so a failing python-env.sh aborts under `set -e`.
FIB_RPC_PYTHON="$("$ROOT/scripts/python-env.sh")"
export FIB_RPC_PYTHON
# The interop tests read the interpreter from FIB_RPC_PYTHON and fail without it.
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@localhost:5672/%2f}"

# --all-targets does not include doc tests, hence the second run.
cargo test --all-targets "$@"
cargo test --doc "$@"
# TLS is an opt-in feature: the library's unit tests again with it compiled in
# (amqps URL parsing), and tests/tls.rs (amqps through a TLS proxy in front of
# the plain broker). Only these two targets, to keep the extra build small.
cargo test --features tls --lib --test tls "$@"
# Last and alone, and only when asked for: `rabbitmqctl close_all_connections` under
# load closes every connection on the broker, the developer's own included, so it runs
# only with FIB_RPC_CLOSE_ALL=1 (CI sets it in .ci/run: it has the broker to itself). It
# must not overlap any other test (it checks that the broker has no other connections
# first), hence --ignored --test-threads 1 after everything else; if the extra arguments
# already contain `--`, the test flags go after them.
if [[ "${FIB_RPC_CLOSE_ALL:-}" != 1 ]]; then
    echo "test.sh: tests/close_all.rs not run (it closes every connection on the broker;" \
        "set FIB_RPC_CLOSE_ALL=1 to run it on a broker nobody else uses)" >&2
    exit 0
fi
close_all_flags=(--ignored --test-threads 1)
if [[ " $* " == *" -- "* ]]; then
    cargo test --test close_all "$@" "${close_all_flags[@]}"
else
    cargo test --test close_all "$@" -- "${close_all_flags[@]}"
fi
