#!/usr/bin/env bash
# The README's demo: `fib-rpc serve` in the background, `fib-rpc call 30` and
# `fib-rpc call 1000`, then stop the server with SIGTERM (it drains and exits 0).
# Uses AMQP_URL when set; brings up a local broker when none answers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/ensure-rabbitmq.sh"
cargo build --release --quiet --bin fib-rpc
fib_rpc="$ROOT/target/release/fib-rpc"

# The server logs "... fib_rpc::serve: ready: ..." on stderr once it consumes; wait for that line.
ready="$(mktemp -u)"
mkfifo "$ready"
"$fib_rpc" serve 2>"$ready" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$ready"' EXIT
exec 3<"$ready"
started=no
while IFS= read -r -t 30 line <&3; do
    echo "$line" >&2
    if [[ $line == *": ready: "* ]]; then
        started=yes
        break
    fi
done
if [[ $started != yes ]]; then
    echo "demo: fib-rpc serve did not start" >&2
    exit 1
fi
cat <&3 >&2 & # keep showing the server's log

echo "\$ fib-rpc call 30"
"$fib_rpc" call 30
echo "\$ fib-rpc call 1000"
"$fib_rpc" call 1000

kill -TERM "$server"
status=0
wait "$server" || status=$?
echo "fib-rpc serve exited with status $status"
exit "$status"
