#!/usr/bin/env bash
# `make bench`: converge molecule/default's appliance and client (TTL 120 s,
# long enough for the policy phase), run the benchmarks, print the figures,
# destroy the containers (KEEP=1 keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH NO_COLOR=1
log=$(mktemp)
echo "bench: converging the appliance (log: $log)"
{ molecule create && molecule prepare && molecule converge -- -e pop_before_smtp_ttl=120; } >"$log" 2>&1 \
    || { tail -40 "$log"; exit 1; }
python3 bench/appliance_bench.py "$@"
[ "${KEEP:-0}" = 1 ] || molecule destroy >>"$log" 2>&1
