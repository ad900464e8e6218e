#!/usr/bin/env bash
# The README's demo: start the Rust server (tutorial's rpc_server), call it with the
# tutorial's rpc_client and with 64 threads sharing one client, then stop the server.
# Uses AMQP_URL when set; brings up a local broker when none answers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/ensure-rabbitmq.sh"
cargo build --release --quiet --examples

./target/release/examples/rpc_server &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
sleep 1 # the server prints " [x] Awaiting RPC requests" once it consumes

./target/release/examples/rpc_client
./target/release/examples/many_callers
