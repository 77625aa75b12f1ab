#!/usr/bin/env bash
# bench/ingest_pg.sh — ingest on PostgreSQL with one and two nodes, next to COPY of the same rows
# into the same table and next to SQLite, all in one run.
#
# One run: a throwaway PostgreSQL cluster (scripts/pg-cluster, in the run's temp dir), then for
# each store — SQLite (one node), PostgreSQL with one node, PostgreSQL with two nodes on one
# database — a tenant with limits out of the way, one event, and wrk posting
#   (b) 1 sale per request       and   (c) BENCH_BATCH (100) sales per request
# for BENCH_SECONDS (10) each (two nodes: one wrk per node at the same time, half the
# connections each; their accepted sales summed over the longer duration). Only 202 counts.
# Reference: the sales the two-node run stored, copied out and COPY'd back into a table made
# LIKE sales INCLUDING ALL (same columns, keys and indexes) in the same database: rows/s of
# COPY. Printed: sales/s per figure, ratio of (c) to COPY (aim ≥ 0.5), and stored == accepted
# per figure (psql / sqlite3 counts).
#
# Environment: BENCH_SECONDS (10), BENCH_CONNECTIONS (64), BENCH_THREADS (2), BENCH_BATCH (100),
# BENCH_BIN (build/release/stagedoor, built if unset), KEEP=1 keeps the temp dir.
# Exit: 0 every figure valid and counts equal, 1 a figure void or a count differs, 2 setup.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$ROOT/bench"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
SECONDS_PER=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
BATCH=${BENCH_BATCH:-100}
CLIENT=bench

bench_need wrk curl psql sqlite3 awk
bench_workdir ingest-pg
bench_binary
PIDS=()
# The cluster's own temp dir: as root the server runs as `postgres`, which cannot enter WORK.
PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/stagedoor-bench-pg.XXXXXX")
stop_all() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
finish() {
    stop_all
    bash "$ROOT/scripts/pg-cluster" stop "$PGDIR" >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
    bench_cleanup
}
trap finish EXIT

ADMIN=$(bash "$ROOT/scripts/pg-cluster" start "$PGDIR") || die "the PostgreSQL cluster did not start"
psql "$ADMIN" -qc "CREATE DATABASE bench" || die "CREATE DATABASE failed"
PGURL="${ADMIN%/postgres}/bench"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# serve_nodes N STORE_ARGS…: N servers on their own data dirs; sets BASES.
serve_nodes() {
    local n=$1
    shift
    BASES=()
    local i
    for ((i = 0; i < n; i++)); do
        mkdir -p "$WORK/node$i"
        "$BIN" serve --data "$WORK/node$i" --listen 127.0.0.1:0 "$@" >"$WORK/node$i.log" 2>&1 &
        PIDS+=($!)
        local base=
        for _ in $(seq 1 300); do
            base=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$WORK/node$i.log" | head -n 1)
            [[ -n $base ]] && break
            sleep 0.1
        done
        [[ -n $base ]] || die "node $i did not start: $(tail -n 20 "$WORK/node$i.log")"
        BASES+=("$base")
    done
}

# setup STORE_ARGS…: tenant, limits, key (KEY) through the CLI on node0's data dir.
setup() {
    mkdir -p "$WORK/node0"
    "$BIN" tenant create "$CLIENT" --data "$WORK/node0" "$@" >"$WORK/setup.log" 2>&1 ||
        die "tenant create failed: $(cat "$WORK/setup.log")"
    "$BIN" tenant limits "$CLIENT" --per-minute 100000000 --burst 100000000 --data "$WORK/node0" \
        "$@" >>"$WORK/setup.log" 2>&1 || die "tenant limits failed"
    KEY=$("$BIN" key create "$CLIENT" --env test --data "$WORK/node0" "$@" 2>>"$WORK/setup.log" | tail -n 1)
    [[ -n $KEY ]] || die "key create printed no key: $(cat "$WORK/setup.log")"
}

preload() {
    local code
    code=$(curl -s -o "$WORK/last.json" -w '%{http_code}' -X POST "${BASES[0]}/v1/$CLIENT/ingest" \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' --data-binary \
        '{"events":[{"event_id":"EVT-BENCH-1","title":"Otello","work_title":"Otello","composer":"Giuseppe Verdi","date":"2026-10-03","time":"19:30:00","venue":"State Opera","hall":"Main Hall","capacity":1250,"city":"Berlin"}],"customers":[{"customer_id":"C-BENCH-1","email":"jane.doe@example.com","salutation":"Ms","first_name":"Jane","last_name":"Doe","ad_opt_out":false}]}') || true
    [[ $code == 202 ]] || die "preload answered $code: $(cat "$WORK/last.json")"
}

# run NAME BATCH: one wrk per node at once; sets ACC (requests), SPS (sales/s), P99 (ms), VOID.
run() {
    local name=$1 batch=$2 n=${#BASES[@]} i
    local conns=$((CONNS / n))
    echo "bench: ($name) ${SECONDS_PER}s, $n node(s), $conns connections each, batch $batch" >&2
    local wpids=()
    for ((i = 0; i < n; i++)); do
        BENCH_KEY=$KEY BENCH_CLIENT=$CLIENT BENCH_BATCH=$batch BENCH_RUN="$name$i" \
            BENCH_EVENT=EVT-BENCH-1 BENCH_CUSTOMER=C-BENCH-1 \
            wrk -t"$THREADS" -c"$conns" -d"${SECONDS_PER}s" --timeout 30s --latency \
            -s "$BENCH_DIR/ingest.lua" "${BASES[$i]}/v1/$CLIENT/ingest" >"$WORK/wrk-$name$i.txt" 2>&1 &
        wpids+=($!)
    done
    for i in "${wpids[@]}"; do wait "$i" || true; done
    ACC=0
    VOID=""
    local dur=0 p99=0
    for ((i = 0; i < n; i++)); do
        local line
        line=$(grep '^BENCH_RESULT ' "$WORK/wrk-$name$i.txt" | tail -n 1) || die "wrk ($name$i) printed no result"
        local kv accepted=0 rejected=0 duration_us=0 p99_us=0 err_connect=0 err_read=0 err_write=0 err_timeout=0
        for kv in ${line#BENCH_RESULT }; do
            case ${kv%%=*} in
            accepted | rejected | duration_us | p99_us | err_connect | err_read | err_write | err_timeout)
                printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
            esac
        done
        ACC=$((ACC + accepted))
        ((duration_us > dur)) && dur=$duration_us
        ((p99_us > p99)) && p99=$p99_us
        if ((rejected + err_connect + err_read + err_write + err_timeout > 0)); then
            VOID="$rejected non-202, socket errors $((err_connect + err_read + err_write + err_timeout))"
        fi
    done
    SPS=$(awk -v a="$ACC" -v b="$batch" -v d="$dur" 'BEGIN{printf "%.0f", a*b/(d/1e6)}')
    P99=$(awk -v u="$p99" 'BEGIN{printf "%.1f", u/1000}')
}

declare -A FIG
STATUS=0
# measure CONFIG STORED_CMD: (b) and (c) on the running nodes, then counts.
measure() {
    local cfg=$1
    preload
    run "${cfg}b" 1
    FIG[${cfg}_b]="$SPS sales/s (p99 $P99 ms)${VOID:+ VOID: $VOID}"
    local acc_b=$ACC
    [[ -z $VOID ]] || STATUS=1
    run "${cfg}c" "$BATCH"
    FIG[${cfg}_c]="$SPS sales/s (p99 $P99 ms)${VOID:+ VOID: $VOID}"
    FIG[${cfg}_c_sps]=$SPS
    local acc_c=$ACC
    [[ -z $VOID ]] || STATUS=1
    stop_all
    local stored_b stored_c
    stored_b=$(count "B${cfg}b%")
    stored_c=$(count "B${cfg}c%")
    # a request in flight when wrk stops may be stored without its 202 counted (≤ 1 per connection)
    FIG[${cfg}_n]="stored/accepted: (b) $stored_b/$acc_b, (c) $stored_c/$((acc_c * BATCH))"
    if ((stored_b < acc_b || stored_c < acc_c * BATCH)); then
        STATUS=1
        FIG[${cfg}_n]+=" LOST WRITES"
    fi
}

# SQLite, one node
setup
serve_nodes 1
count() { sqlite3 "$WORK/node0/stagedoor.db" "select count(*) from sales where invoice_number like '$1'"; }
measure sqlite
rm -rf "$WORK"/node*

# PostgreSQL, one node, then two nodes on a fresh database each
count() { psql "$PGURL" -Atc "select count(*) from sales where invoice_number like '$1'"; }
setup --store "$PGURL"
serve_nodes 1 --store "$PGURL"
measure pg1
rm -rf "$WORK"/node*
psql "$ADMIN" -qc "DROP DATABASE bench WITH (FORCE)" -c "CREATE DATABASE bench"
setup --store "$PGURL"
serve_nodes 2 --store "$PGURL"
measure pg2

# Reference: COPY of the rows the two-node run stored into a table LIKE sales, same database.
psql "$PGURL" -qc "\\copy (SELECT * FROM sales) TO '$WORK/sales.copy'"
ROWS=$(wc -l <"$WORK/sales.copy")
psql "$PGURL" -qc "CREATE TABLE sales_ref (LIKE sales INCLUDING ALL)"
T0=$(date +%s%N)
psql "$PGURL" -qc "\\copy sales_ref FROM '$WORK/sales.copy'"
T1=$(date +%s%N)
COPY_RPS=$(awk -v r="$ROWS" -v t="$((T1 - T0))" 'BEGIN{printf "%.0f", r/(t/1e9)}')
psql "$PGURL" -qc "DROP TABLE sales_ref"

echo
echo "== ingest on PostgreSQL ($(date -u +%F), load before: $LOAD_BEFORE; ${SECONDS_PER}s per figure, $CONNS connections)"
printf '%-26s %-40s %-40s\n' "" "(b) 1 sale/request" "(c) $BATCH sales/request"
for cfg in sqlite pg1 pg2; do
    case $cfg in sqlite) label="SQLite, 1 node" ;; pg1) label="PostgreSQL, 1 node" ;; pg2) label="PostgreSQL, 2 nodes" ;; esac
    printf '%-26s %-40s %-40s\n' "$label" "${FIG[${cfg}_b]}" "${FIG[${cfg}_c]}"
    printf '%-26s %s\n' "" "${FIG[${cfg}_n]}"
done
echo "reference: COPY of $ROWS sales rows into a table LIKE sales: $COPY_RPS rows/s"
for cfg in pg1 pg2; do
    echo "ratio (c) $cfg / COPY: $(awk -v a="${FIG[${cfg}_c_sps]}" -v c="$COPY_RPS" 'BEGIN{printf "%.2f", a/c}') (aim >= 0.5)"
done
exit $STATUS
