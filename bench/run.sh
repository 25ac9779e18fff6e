#!/usr/bin/env bash
# `make bench`: bring up a molecule scenario's containers, run its benchmarks,
# print the figures, destroy the containers (KEEP=1 keeps them).
#   bench/run.sh            POP-before-SMTP (molecule/default, TTL 120 s)
#   bench/run.sh lists      mailing lists (molecule/lists)
#   bench/run.sh webmail    WebMail archive page (molecule/lists, headless Chromium)
#   bench/run.sh submission authenticated submission on 465 and 587 (molecule/default)
#   bench/run.sh rspamd     inbound mail with and without rspamd (molecule/default)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH NO_COLOR=1
what=${1:-pop-before-smtp}
[ $# -gt 0 ] && shift
case "$what" in
    lists) scenario=lists; converge_args=(); bench=bench/lists_bench.py ;;
    webmail) scenario=lists; converge_args=(); bench=bench/webmail_bench.py ;;
    submission) scenario=default; converge_args=(); bench=bench/submission_bench.py ;;
    rspamd) scenario=default; converge_args=(); bench=bench/rspamd_bench.py ;;
    *) scenario=default; converge_args=(-- -e pop_before_smtp_ttl=120); bench=bench/appliance_bench.py ;;
esac
log=$(mktemp)
echo "bench: converging molecule/$scenario (log: $log)"
{ molecule create -s "$scenario" && molecule prepare -s "$scenario" \
    && molecule converge -s "$scenario" "${converge_args[@]}"; } >"$log" 2>&1 || { tail -40 "$log"; exit 1; }
python3 "$bench" "$@"
[ "${KEEP:-0}" = 1 ] || molecule destroy -s "$scenario" >>"$log" 2>&1
