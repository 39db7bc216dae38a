#!/usr/bin/env bash
# Runs the SIGKILL crash test (tests/ledger_crash.rs) for CYCLES kill/restart cycles on each
# ledger backend (SQLite and PostgreSQL), prints each backend's summary line, and ends with one
# line over both:
#   cycles=N acknowledged=N lost=0 duplicated=0 control_total_ok=true backend=sqlite
#   cycles=N acknowledged=N lost=0 duplicated=0 control_total_ok=true backend=postgres
#   cycles=N acknowledged=N lost=0 duplicated=0 control_total_ok=true
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
lines="$(grep -E '^cycles=[0-9]+ ' "$out" || true)"
if [ -z "$lines" ]; then
    echo "crash test produced no summary line (exit $status)" >&2
    exit 1
fi
echo "$lines"
# One line over both backends: sums, and control_total_ok only if every backend's holds.
field() { sed -E "s/.*(^| )$1=([^ ]+).*/\2/" <<<"$2"; }
acked=0 lost=0 dup=0 ok=true
while IFS= read -r l; do
    acked=$((acked + $(field acknowledged "$l")))
    lost=$((lost + $(field lost "$l")))
    dup=$((dup + $(field duplicated "$l")))
    [ "$(field control_total_ok "$l")" = true ] || ok=false
done <<<"$lines"
echo "cycles=$cycles acknowledged=$acked lost=$lost duplicated=$dup control_total_ok=$ok"
exit "$status"
