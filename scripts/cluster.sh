#!/usr/bin/env bash
# A vendor with its ledger on a PostgreSQL primary and a synchronous standby, on loopback, and
# a failover under load (issue 14 item 5).
#
#   scripts/cluster.sh up        primary + synchronous standby (Debian's PostgreSQL binaries),
#                                one vendor account and clerk, two `frank vendor serve` fronts
#                                on the multi-host URL (target_session_attrs=read-write)
#   scripts/cluster.sh failover  (up first if needed) a loadgen over both fronts writing an
#                                acknowledgement log; mid-load the primary is stopped at once
#                                (pg_ctl stop -m immediate) and the standby promoted
#                                (pg_ctl promote); the fronts reconnect by themselves. Then
#                                `frank vendor check-acks` on the promoted database. The last
#                                line is the result:
#                                acknowledged=N lost=0 duplicated=0 audit_ok=true failover_s=X
#   scripts/cluster.sh status    what runs, and which server is the primary
#   scripts/cluster.sh down      stop everything and remove the state (idempotent)
#
# State lives in $FRANK_CLUSTER_DIR (default: $TMPDIR/frank-cluster). Ports (loopback only):
# FRANK_CLUSTER_PG_PORT (54320; the standby uses the next one) and FRANK_CLUSTER_FRONT_PORT
# (44330; the second front uses the next one). The frank binary: $FRANK, else
# ${CARGO_TARGET_DIR:-target}/release/frank (built when missing). Tuning: FRANK_CLUSTER_TERMINALS
# (8), FRANK_CLUSTER_LOAD_S (12, the loadgen's run), FRANK_CLUSTER_STOP_AFTER_S (4, load before
# the primary stops). One failover per cluster: afterwards there is no standby (down, then up).
set -euo pipefail
cd "$(dirname "$0")/.."

state=${FRANK_CLUSTER_DIR:-${TMPDIR:-/tmp}/frank-cluster}
pg_port=${FRANK_CLUSTER_PG_PORT:-54320}
standby_port=$((pg_port + 1))
front_port=${FRANK_CLUSTER_FRONT_PORT:-44330}
front2_port=$((front_port + 1))
terminals=${FRANK_CLUSTER_TERMINALS:-8}
load_s=${FRANK_CLUSTER_LOAD_S:-12}
stop_after_s=${FRANK_CLUSTER_STOP_AFTER_S:-4}
standby_name=frank_standby
password=cluster-password
clerk=loadgen
# Bounded waits, in tenths of a second.
wait_ready_tenths=300

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

pg_bin() {
    if [ -n "${FRANK_PG_BIN:-}" ]; then echo "$FRANK_PG_BIN"; return; fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] && [ -x "$d/initdb" ] || die "no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql (or set FRANK_PG_BIN)"
    echo "$d"
}

# PostgreSQL refuses to run as root: as root, its tools run as the postgres user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

frank_bin() {
    if [ -n "${FRANK:-}" ]; then echo "$FRANK"; return; fi
    local bin=${CARGO_TARGET_DIR:-target}/release/frank
    if [ ! -x "$bin" ]; then
        say "building $bin"
        cargo build --release --quiet >&2
    fi
    echo "$bin"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_free() { ! ss -H -ltun "( sport = :$1 )" 2>/dev/null | grep -q .; }

psql_at() { # PORT SQL
    as_pg "$(pg_bin)/psql" -X -A -t -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2" 2>/dev/null
}

url() {
    echo "postgresql://postgres@127.0.0.1:$pg_port,127.0.0.1:$standby_port/frank?target_session_attrs=read-write"
}

pg_running() { as_pg "$(pg_bin)/pg_ctl" -D "$state/pg/$1" status >/dev/null 2>&1; }

start_front() { # N PORT
    local n=$1 port=$2 frank
    frank=$(frank_bin)
    nohup "$frank" vendor serve --data "$state/front$n" --listen "127.0.0.1:$port" \
        --database "$(url)" >"$state/front$n.log" 2>&1 &
    echo $! >"$state/front$n.pid"
    for _ in $(seq "$wait_ready_tenths"); do
        grep -qs "vendor listening" "$state/front$n.log" && return 0
        alive "$state/front$n.pid" || break
        sleep 0.1
    done
    tail -5 "$state/front$n.log" >&2
    die "front $n did not start"
}

up() {
    if [ -f "$state/cluster.env" ]; then
        say "already up in $state (scripts/cluster.sh status)"
        return 0
    fi
    local bin frank
    bin=$(pg_bin)
    frank=$(frank_bin)
    for p in "$pg_port" "$standby_port" "$front_port" "$front2_port"; do
        port_free "$p" || die "port $p is in use; set FRANK_CLUSTER_PG_PORT / FRANK_CLUSTER_FRONT_PORT"
    done
    mkdir -p "$state/pg"
    chmod 755 "$state"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$state/pg"
    say "PostgreSQL primary on 127.0.0.1:$pg_port"
    as_pg "$bin/initdb" -D "$state/pg/primary" -A trust -U postgres -E UTF8 --no-sync >/dev/null
    # The synchronous standby is named on the primary's command line, not in its files, so
    # the standby's clone does not inherit it: once promoted it commits alone instead of
    # waiting for a standby it does not have.
    as_pg "$bin/pg_ctl" -D "$state/pg/primary" -l "$state/pg/primary.log" -w -t 60 \
        -o "-p $pg_port -k $state/pg -c listen_addresses=127.0.0.1 -c max_connections=300 \
            -c wal_level=replica -c max_wal_senders=4 -c synchronous_commit=on \
            -c synchronous_standby_names=$standby_name" start >/dev/null
    say "synchronous standby on 127.0.0.1:$standby_port"
    as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$pg_port" -U postgres -D "$state/pg/standby" \
        -R -X stream -c fast >/dev/null
    as_pg "$bin/pg_ctl" -D "$state/pg/standby" -l "$state/pg/standby.log" -w -t 60 \
        -o "-p $standby_port -k $state/pg -c listen_addresses=127.0.0.1 -c max_connections=300 \
            -c cluster_name=$standby_name" start >/dev/null
    local sync=""
    for _ in $(seq "$wait_ready_tenths"); do
        sync=$(psql_at "$pg_port" "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$standby_name'" || true)
        [ "$sync" = sync ] && break
        sleep 0.1
    done
    [ "$sync" = sync ] || die "the standby did not become synchronous"
    psql_at "$pg_port" "CREATE DATABASE frank" >/dev/null

    say "vendor data, account and clerk"
    # Everything but the key, certificate and vendor.toml lives in the database.
    "$frank" vendor init --data "$state/front0" --database "$(url)" >/dev/null
    "$frank" vendor account add --data "$state/front0" --name "Cluster Post Office" \
        --database "$(url)" >"$state/account.txt"
    local code fingerprint
    code=$("$frank" vendor account code 1 --data "$state/front0" --database "$(url)" \
        --uses 10000 --valid-hours 24 | sed -n 's/^enrollment code.*: //p')
    FRANK_PASSWORD=$password "$frank" vendor clerk add --data "$state/front0" \
        --database "$(url)" --account 1 --username "$clerk" >/dev/null
    fingerprint=$("$frank" vendor fingerprint --data "$state/front0")
    # The second front serves a copy of the data directory (the same vendor key), without the
    # first one's lock.
    mkdir -m 700 "$state/front1"
    find "$state/front0" -maxdepth 1 -type f ! -name lock -exec cp -p {} "$state/front1/" \;
    say "fronts on 127.0.0.1:$front_port and 127.0.0.1:$front2_port (UDP, QUIC)"
    start_front 0 "$front_port"
    start_front 1 "$front2_port"
    cat >"$state/cluster.env" <<ENV
code=$code
fingerprint=$fingerprint
ENV
    say "up: $(url)"
}

down() {
    local bin
    for f in loadgen front0 front1; do
        if alive "$state/$f.pid"; then
            kill "$(cat "$state/$f.pid")" 2>/dev/null || true
            for _ in $(seq "$wait_ready_tenths"); do
                alive "$state/$f.pid" || break
                sleep 0.1
            done
        fi
    done
    if [ -d "$state/pg" ]; then
        bin=$(pg_bin)
        for s in primary standby; do
            if pg_running "$s"; then
                as_pg "$bin/pg_ctl" -D "$state/pg/$s" -m fast -w -t 60 stop >/dev/null || true
            fi
        done
    fi
    rm -rf "$state"
    say "down"
}

status() {
    if [ ! -f "$state/cluster.env" ]; then
        echo "down"
        return 0
    fi
    local s role
    for s in primary standby; do
        local port=$pg_port
        [ "$s" = standby ] && port=$standby_port
        if pg_running "$s"; then
            role=$(psql_at "$port" "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" || echo "?")
            echo "postgres $s (127.0.0.1:$port): running as $role"
        else
            echo "postgres $s (127.0.0.1:$port): stopped"
        fi
    done
    if pg_running primary; then
        echo "replication: $(psql_at "$pg_port" "SELECT application_name || ' ' || sync_state FROM pg_stat_replication" || echo none)"
    fi
    for n in 0 1; do
        local port=$front_port
        [ "$n" = 1 ] && port=$front2_port
        if alive "$state/front$n.pid"; then
            echo "front $n (127.0.0.1:$port): running, pid $(cat "$state/front$n.pid")"
        else
            echo "front $n (127.0.0.1:$port): stopped"
        fi
    done
    if alive "$state/loadgen.pid"; then echo "loadgen: running"; fi
    echo "database: $(url)"
}

now_ms() { date +%s%3N; }

failover() {
    up
    pg_running primary || die "the primary is already stopped: one failover per cluster (down, then up)"
    # shellcheck disable=SC1091
    . "$state/cluster.env"
    local frank acks
    frank=$(frank_bin)
    acks=$state/acks.jsonl
    rm -f "$acks"
    say "loadgen: $terminals terminals over both fronts for $load_s s"
    FRANK_PASSWORD=$password nohup "$frank" loadgen \
        --vendor "127.0.0.1:$front_port,127.0.0.1:$front2_port" --pin "$fingerprint" \
        --code "$code" --clerk "$clerk" --terminals "$terminals" --duration-s "$load_s" \
        --void-every 5 --acks "$acks" >"$state/loadgen.log" 2>&1 &
    local loadgen=$!
    echo "$loadgen" >"$state/loadgen.pid"
    # Load first: acknowledgements through both fronts, then stop_after_s more.
    local tenths=0
    until grep -q '"front":1' "$acks" 2>/dev/null && grep -q '"front":0' "$acks"; do
        kill -0 "$loadgen" 2>/dev/null || { cat "$state/loadgen.log" >&2; die "loadgen ended early"; }
        tenths=$((tenths + 1))
        [ "$tenths" -le "$wait_ready_tenths" ] || die "no acknowledgements from both fronts"
        sleep 0.1
    done
    sleep "$stop_after_s"
    say "stopping the primary (immediate) and promoting the standby"
    local bin stop_ms stopped_ms
    bin=$(pg_bin)
    stop_ms=$(now_ms)
    as_pg "$bin/pg_ctl" -D "$state/pg/primary" -m immediate -w -t 60 stop >/dev/null
    stopped_ms=$(now_ms)
    as_pg "$bin/pg_ctl" -D "$state/pg/standby" -w -t 60 promote >/dev/null
    say "promoted after $(( $(now_ms) - stop_ms )) ms; waiting for the loadgen"
    local rc=0
    wait "$loadgen" || rc=$?
    rm -f "$state/loadgen.pid"
    grep -v '^{' "$state/loadgen.log" >&2 || true
    [ "$rc" = 0 ] || die "loadgen failed (exit $rc); see $state/loadgen.log"
    local out check=0
    out=$("$frank" vendor check-acks --acks "$acks" --database "$(url)" \
        --stop-ms "$stop_ms" --stopped-ms "$stopped_ms" 2>"$state/check.log") || check=$?
    [ "$check" = 0 ] || cat "$state/check.log" >&2
    [ -n "$out" ] && echo "$out" | tail -1
    return "$check"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    failover) failover ;;
    *) echo "usage: scripts/cluster.sh up|down|failover|status" >&2; exit 2 ;;
esac
