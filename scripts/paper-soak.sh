#!/usr/bin/env bash
# Runs the paper-vs-ledger test (tests/paper_ledger.rs) for TRIALS trials — each one postage
# label meeting one random fault: the link cut while bytes stream or while the printer drains,
# the counter SIGKILLed mid-job and restarted, paper out — and ends with its summary line:
#   trials=N mismatches=0 unsettled=0 clean_voids=K refund_requested=R
# mismatches: pieces the vendor charged with no verifying indicium on paper, or on paper and not
# charged. unsettled: pieces left reserved or unsettled once the counter settled.
# Usage: scripts/paper-soak.sh TRIALS [SEED]
set -euo pipefail
trials="${1:?usage: scripts/paper-soak.sh TRIALS [SEED]}"
if ! [[ "$trials" =~ ^[0-9]+$ ]] || [ "$trials" -lt 1 ]; then
    echo "TRIALS must be a positive integer, got '$trials'" >&2
    exit 2
fi
seed="${2:-$RANDOM$RANDOM}"
cd "$(dirname "$0")/.."
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
FRANK_PAPER_TRIALS="$trials" FRANK_PAPER_SEED="$seed" \
    cargo test --test paper_ledger the_paper_matches_the_ledger -- --nocapture >"$out" 2>&1 || status=$?
grep -E '^(trial [0-9]+:|MISMATCH|seed )' "$out" >&2 || true
if [ "$status" -ne 0 ]; then
    tail -n 40 "$out" >&2
fi
line="$(grep -E '^trials=[0-9]+ ' "$out" || true)"
if [ -z "$line" ]; then
    echo "paper test produced no summary line (exit $status)" >&2
    exit 1
fi
echo "$line"
exit "$status"
