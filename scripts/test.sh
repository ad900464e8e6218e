#!/usr/bin/env bash
# The one test command: make sure a broker and the Python interop peers
# are available, then run every Rust test (unit, integration, examples,
# doc tests). Extra arguments are passed to both cargo test invocations.
set -euo pipefail

# Resolve the repo root from this script's location so any cwd works.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/ensure-rabbitmq.sh"

# Assign before export so a failing python-env.sh aborts under `set -e`.
FIB_RPC_PYTHON="$("$ROOT/scripts/python-env.sh")"
export FIB_RPC_PYTHON
# Interop tests must fail (not skip) when the Python peers are unusable.
export FIB_RPC_REQUIRE_INTEROP=1
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@localhost:5672/%2f}"

# --all-targets does not include doc tests, hence the second run.
cargo test --all-targets "$@"
cargo test --doc "$@"
