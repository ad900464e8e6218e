#!/usr/bin/env bash
# Make sure the `tls` feature can be built and tested: native-tls links the system OpenSSL
# through openssl-sys, which finds it with pkg-config, and tests/tls.rs makes its throwaway
# certificates with the `openssl` command. Installs Debian's libssl-dev, pkg-config and
# openssl when `pkg-config --exists openssl` (or the command) fails; otherwise does nothing.
# The default build (no `tls`) needs none of this.
set -euo pipefail

log() { echo "ensure-openssl-dev: $*" >&2; }

have_all() {
    command -v pkg-config >/dev/null 2>&1 &&
        pkg-config --exists openssl &&
        command -v openssl >/dev/null 2>&1
}

if have_all; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "ERROR: OpenSSL development files not found (pkg-config --exists openssl failed) and apt-get is not available; install libssl-dev (or openssl-devel), pkg-config and openssl"
    exit 1
fi

# Same as ensure-rabbitmq.sh: sudo only when we are not root and it is available.
SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
fi

log "installing libssl-dev pkg-config openssl via apt-get"
"${SUDO[@]}" apt-get update >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y libssl-dev pkg-config openssl >&2

if ! have_all; then
    log "ERROR: pkg-config still does not find openssl after installing libssl-dev"
    exit 1
fi
