#!/usr/bin/env bash
# One molecule scenario for `make molecule`, which runs several side by
# side: its output goes to .cache/molecule/NAME.log and is printed whole
# when the scenario ends (under a lock, so two never interleave), followed
# by its result and time. Exit status: molecule's.
set -uo pipefail
name=$1
logs=.cache/molecule
mkdir -p "$logs"
start=$(date +%s)
echo "[molecule] $name started at $(date -u +%H:%M:%S)"
molecule test --no-command-borders -s "$name" > "$logs/$name.log" 2>&1
rc=$?
result=$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")
(
    flock 9
    cat "$logs/$name.log"
    echo "[molecule] $name $result in $(( $(date +%s) - start )) s"
) 9> "$logs/.lock"
exit "$rc"
