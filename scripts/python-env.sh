#!/usr/bin/env bash
# Create (idempotently) a private virtualenv with pika for the Python
# interop peers in tests/python, without installing pika system-wide.
# Prints the absolute path of the venv's python as the ONLY stdout line,
# so callers can do: FIB_RPC_PYTHON="$(scripts/python-env.sh)".
set -euo pipefail

# Resolve the repo root from this script's location so any cwd works.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

VENV="${FIB_RPC_VENV:-target/pyenv}"
case "$VENV" in
    /*) ;;
    *) VENV="$ROOT/$VENV" ;;
esac
PY="$VENV/bin/python"
BASE_PYTHON="${PYTHON:-python3}"
PIKA_SPEC='pika>=1.3,<2'

log() { echo "python-env: $*" >&2; }

# True when the venv python runs and has a pika in the pinned range.
pika_ok() {
    "$PY" - <<'PYEOF' >/dev/null 2>&1
import pika
major, minor = (int(x) for x in pika.__version__.split(".")[:2])
raise SystemExit(0 if (major == 1 and minor >= 3) else 1)
PYEOF
}

# Fast path: nothing to do, no pip call.
if [ -x "$PY" ] && pika_ok; then
    echo "$PY"
    exit 0
fi

# (Re)create the venv if it is missing or its interpreter no longer runs
# (e.g. the base python it was made from was removed/upgraded).
if ! { [ -x "$PY" ] && "$PY" -c 'import sys' >/dev/null 2>&1; }; then
    log "creating virtualenv at $VENV with $BASE_PYTHON"
    mkdir -p "$(dirname "$VENV")"
    if ! "$BASE_PYTHON" -m venv --clear "$VENV" >&2; then
        # Debian's own python3 ships venv (ensurepip) separately, in python3-venv.
        if command -v apt-get >/dev/null 2>&1; then
            SUDO=()
            if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
            log "venv failed; installing Debian's python3-venv"
            "${SUDO[@]}" apt-get update >&2
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-venv >&2
            "$BASE_PYTHON" -m venv --clear "$VENV" >&2
        else
            log "ERROR: '$BASE_PYTHON -m venv' failed and apt-get is not available"
            exit 1
        fi
    fi
fi

log "installing $PIKA_SPEC"
# pip output goes to stderr: stdout is reserved for the python path.
"$PY" -m pip install -q --disable-pip-version-check "$PIKA_SPEC" >&2

if ! pika_ok; then
    log "ERROR: pika still not importable from $PY"
    exit 1
fi
echo "$PY"
