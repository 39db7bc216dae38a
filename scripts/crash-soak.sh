#!/usr/bin/env bash
# Runs the SIGKILL crash test (tests/ledger_crash.rs) for CYCLES kill/restart cycles on each
# ledger backend (SQLite and PostgreSQL) and ends with their summary lines:
#   cycles=N acknowledged=N lost=0 duplicated=0 control_total_ok=true backend=sqlite
#   cycles=N acknowledged=N lost=0 duplicated=0 control_total_ok=true backend=postgres
# Usage: scripts/crash-soak.sh CYCLES
set -euo pipefail
cycles="${1:?usage: scripts/crash-soak.sh CYCLES}"
if ! [[ "$cycles" =~ ^[0-9]+$ ]] || [ "$cycles" -lt 1 ]; then
    echo "CYCLES must be a positive integer, got '$cycles'" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
FRANK_CRASH_CYCLES="$cycles" cargo test --test ledger_crash -- --nocapture >"$out" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    tail -n 40 "$out" >&2
fi
line="$(grep -E '^cycles=[0-9]+ ' "$out" || true)"
if [ -z "$line" ]; then
    echo "crash test produced no summary line (exit $status)" >&2
    exit 1
fi
echo "$line"
exit "$status"
