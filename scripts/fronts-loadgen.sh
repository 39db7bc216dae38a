#!/usr/bin/env bash
# Measures what a second vendor front adds (issue 14): a throwaway PostgreSQL on loopback, two
# `frank vendor serve` fronts on it (copies of one data directory), `frank loadgen` against
# front A alone, then against A and B at once (the same terminals per front). Ends with one
# line:
#   one_front_pairs_per_s=X two_fronts_pairs_per_s=Y ratio=Y/X
# Usage: scripts/fronts-loadgen.sh [TERMINALS_PER_FRONT [DURATION_S [ACCOUNTS]]]
#   (default 16 20 1). ACCOUNTS=2: front B's terminals enroll into a second account (the fronts
#   then do not wait on one account's row lock). Each phase also prints the CPU seconds the
#   fronts, PostgreSQL and the loadgens used (all on this machine's cores).
# Needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) and runs them as `postgres`
# when started as root. Uses the release build (built if missing).
set -euo pipefail
terminals="${1:-16}"
duration="${2:-20}"
accounts="${3:-1}"
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet
frank="$target/release/frank"
pgbin="${FRANK_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}"
work="$(mktemp -d)"
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pgport="$(free_port)"
mkdir "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
    -o "-p $pgport -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
url="postgres://postgres@127.0.0.1:$pgport/postgres"

export FRANK_DATABASE="$url" FRANK_PASSWORD="loadgen password"
"$frank" vendor init --data "$work/a" >/dev/null
"$frank" vendor account add --data "$work/a" --name "Load PO" >/dev/null
"$frank" vendor clerk add --data "$work/a" --account 1 --username loadgen >/dev/null
code="$("$frank" vendor account code --data "$work/a" 1 --uses 10000 --valid-hours 1 | sed -n 's/.*: \([0-9a-f]\{32\}\)$/\1/p')"
pin="$("$frank" vendor fingerprint --data "$work/a")"
code_b="$code"
if [ "$accounts" = 2 ]; then
    "$frank" vendor account add --data "$work/a" --name "Load PO 2" >/dev/null
    "$frank" vendor clerk add --data "$work/a" --account 2 --username loadgen2 >/dev/null
    code_b="$("$frank" vendor account code --data "$work/a" 2 --uses 10000 --valid-hours 1 | sed -n 's/.*: \([0-9a-f]\{32\}\)$/\1/p')"
fi
mkdir -m 700 "$work/b"
cp -p "$work/a"/* "$work/b/"
rm -f "$work/b/lock"
a="127.0.0.1:$(free_udp)"
b="127.0.0.1:$(free_udp)"
"$frank" vendor serve --data "$work/a" --listen "$a" >"$work/a.log" 2>&1 & pids+=($!)
"$frank" vendor serve --data "$work/b" --listen "$b" >"$work/b.log" 2>&1 & pids+=($!)
for log in "$work/a.log" "$work/b.log"; do
    for _ in $(seq 100); do grep -q "vendor listening" "$log" && break; sleep 0.1; done
    grep -q "vendor listening" "$log" || { cat "$log" >&2; exit 1; }
done

rate() { sed -n 's/.*"pairs_per_s":\([0-9.]*\).*/\1/p' "$1" | tail -n 1; }
run_loadgen() { "$frank" loadgen --vendor "$1" --pin "$pin" --code "$3" --clerk "$4" \
    --terminals "$terminals" --duration-s "$duration" >"$2" 2>&1; }
# CPU ticks (utime + stime) of the processes named, from /proc.
ticks() { local t=0; for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
pg_pids() { pgrep -u postgres -f "postgres" | tr '\n' ' '; }
hz="$(getconf CLK_TCK)"
cpu_line() {  # $1 phase, $2 fronts ticks before, $3 pg ticks before
    local f p
    f=$(( $(ticks "${pids[@]}") - $2 )); p=$(( $(ticks $(pg_pids)) - $3 ))
    echo "cpu $1: fronts_s=$(python3 -c "print(round($f/$hz,1))") postgres_s=$(python3 -c "print(round($p/$hz,1))") over ${duration} s"
}
f0=$(ticks "${pids[@]}"); p0=$(ticks $(pg_pids))
run_loadgen "$a" "$work/one.out" "$code" loadgen
cpu_line "one front" "$f0" "$p0"
one="$(rate "$work/one.out")"
clerk_b=loadgen; [ "$accounts" = 2 ] && clerk_b=loadgen2
f0=$(ticks "${pids[@]}"); p0=$(ticks $(pg_pids))
run_loadgen "$a" "$work/two-a.out" "$code" loadgen & la=$!
run_loadgen "$b" "$work/two-b.out" "$code_b" "$clerk_b" & lb=$!
wait "$la" "$lb"
cpu_line "two fronts" "$f0" "$p0"
two="$(python3 -c "print(round($(rate "$work/two-a.out") + $(rate "$work/two-b.out"), 1))")"
echo "front A alone: $(tail -n 1 "$work/one.out")"
echo "front A with B: $(tail -n 1 "$work/two-a.out")"
echo "front B with A: $(tail -n 1 "$work/two-b.out")"
echo "one_front_pairs_per_s=$one two_fronts_pairs_per_s=$two ratio=$(python3 -c "print(round($two / $one, 2))")"
