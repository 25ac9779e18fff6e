#!/usr/bin/env bash
# The controller: a Python venv with the pinned Ansible, nothing else (no
# Docker, no images, no browser). Run by `make controller`; `make setup`
# runs it with the test toolchain (requirements.txt) as well.
#   scripts/controller-setup.sh [REQUIREMENTS_FILE]   default: requirements-controller.txt
# Safe to re-run: the venv is rebuilt only when the requirements changed.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${QUBEMAIL_VENV:-$here/.venv}
REQUIREMENTS=${1:-$here/requirements-controller.txt}

log() { printf '[controller-setup] %s\n' "$*" >&2; }

# What was installed: the requirements file with every file it includes.
stamp() { cat "${1:-$REQUIREMENTS}" "$here"/requirements-controller.txt; }

# Ready when the venv holds these requirements (or the test toolchain, which includes them).
if [ -x "$VENV/bin/ansible-playbook" ] && { cmp -s <(stamp) "$VENV/.requirements.txt" \
        || cmp -s <(stamp "$here/requirements.txt") "$VENV/.requirements.txt"; }; then
    log "ready: $VENV ($(basename "$REQUIREMENTS"))"
    exit 0
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    log "python3 cannot make a venv here: install Debian's python3-venv (apt-get install python3-venv)"
    exit 1
fi
log "creating Python venv $VENV from $(basename "$REQUIREMENTS") (about a minute)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r "$REQUIREMENTS" >"$VENV/pip.log" 2>&1 \
    || { cat "$VENV/pip.log" >&2; log "pip install failed"; exit 1; }
stamp >"$VENV/.requirements.txt"
log "ready: $VENV: $("$VENV/bin/ansible-playbook" --version | head -1)"
