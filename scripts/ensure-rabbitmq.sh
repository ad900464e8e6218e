#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on AMQP before the tests run.
# If something already listens on AMQP_HOST:AMQP_PORT we leave it alone;
# otherwise we install (if needed) and start a local broker and wait for it.
set -euo pipefail

AMQP_HOST="${AMQP_HOST:-127.0.0.1}"
AMQP_PORT="${AMQP_PORT:-5672}"
WAIT_SECONDS="${RABBITMQ_WAIT_SECONDS:-120}"

log() { echo "ensure-rabbitmq: $*" >&2; }

# A plain TCP connect is enough to tell "someone is listening"; bash's
# /dev/tcp avoids depending on nc/ss. timeout bounds filtered/black-holed hosts.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/${AMQP_HOST}/${AMQP_PORT}" 2>/dev/null
}

# Show the newest broker log so a failure is diagnosable from CI output.
show_log_tail() {
    if [ -d /var/log/rabbitmq ]; then
        # Newest non-empty file (the *_upgrade.log is usually empty).
        newest_log=""
        while IFS= read -r f; do
            if [ -f "$f" ] && [ -s "$f" ]; then
                newest_log="$f"
                break
            fi
        done < <(ls -1t /var/log/rabbitmq/* 2>/dev/null || true)
        if [ -n "$newest_log" ]; then
            log "last lines of ${newest_log}:"
            tail -n 40 "$newest_log" >&2 || true
        fi
    fi
}

if port_open; then
    echo "ensure-rabbitmq: AMQP already accepting connections on ${AMQP_HOST}:${AMQP_PORT}; nothing to do"
    exit 0
fi

# We can only start a broker on this machine; for a remote host just fail.
case "$AMQP_HOST" in
    127.0.0.1 | localhost | ::1) ;;
    *)
        log "ERROR: nothing listens on ${AMQP_HOST}:${AMQP_PORT} and it is not a local address; start that broker yourself"
        exit 1
        ;;
esac

# Package install and broker control need root; use sudo only when we are
# not root and it is available (CI containers usually run as root, no sudo).
SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "rabbitmq-server not installed; installing via apt-get"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server
fi

# The package's postinst may already have started it; also a node may be
# booting but not listening yet. Only start a node if none answers a ping,
# otherwise a second `-detached` start would clash with the running node.
if port_open; then
    :
elif timeout 15 "${SUDO[@]}" rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    log "a RabbitMQ node is running but AMQP is not open yet; waiting for it"
else
    # No systemd in containers: this is how the broker is started here.
    log "starting rabbitmq-server -detached"
    if ! "${SUDO[@]}" rabbitmq-server -detached; then
        log "ERROR: 'rabbitmq-server -detached' failed"
        show_log_tail
        exit 1
    fi
fi

# Wait (bounded) until the AMQP port accepts connections AND the node
# reports that the rabbit application finished booting. Both CLI checks
# fail fast while the node is down, so polling them is cheap.
deadline=$((SECONDS + WAIT_SECONDS))
while :; do
    remaining=$((deadline - SECONDS))
    if [ "$remaining" -le 0 ]; then
        break
    fi
    if port_open &&
        timeout "$remaining" "${SUDO[@]}" rabbitmqctl -q await_startup >/dev/null 2>&1; then
        echo "ensure-rabbitmq: RabbitMQ started and accepting AMQP on ${AMQP_HOST}:${AMQP_PORT}"
        exit 0
    fi
    sleep 2
done

log "ERROR: RabbitMQ did not come up on ${AMQP_HOST}:${AMQP_PORT} within ${WAIT_SECONDS}s"
show_log_tail
exit 1
