#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# bench/segments.sh — how long a segment takes to compute (POST /v1/{client}/segments), over
# the demo season and over 10 million generated sales, with a reference measured in the same
# run.
#
# One run:
#   1. builds build/release/stagedoor (release preset) unless BENCH_BIN names a binary;
#   2. demo: `stagedoor demo` on a fresh data dir (200 events, 20,000 customers, 150,000 sales
#      loaded through the demo connector, i.e. the webhook's validation and write path), then
#      every rule below is POSTed BENCH_REPEAT times; the figure is the best time (curl's
#      time_total: parse, count in SQL on a read connection, store the definition);
#   3. big: a fresh data dir (`tenant create`, `key create`, so the schema is the binary's own),
#      filled by bench/gen_segments_db.py with BENCH_EVENTS / BENCH_CUSTOMERS / BENCH_SALES
#      (20,000 / 1,000,000 / 10,000,000) straight into SQLite — loading 10M sales through HTTP
#      would take hours and measure ingest, not segments — then served and timed the same way;
#      plus the first members page (1,000) of rule R1;
#   4. paging (BENCH_PAGING=1, default on; big data set only): per rule, POST it ("computing
#      once") and read ALL its members in pages of BENCH_PAGE (10000) from no cursor
#      (bench/segment_pages.py); prints paging-all / computing-once and the slowest page. With
#      BENCH_BIN_BEFORE (an older binary, e.g. main before member snapshots) the generated data
#      dir is created by that binary, paged with it first ("before"), then served by BIN, which
#      migrates it, and paged again ("after") — before and after in the same run, same data;
#   5. reference, per data set: `sqlite3` reading every sale document once
#      (SELECT sum(length(doc)) FROM sales), i.e. what one pass over the sales costs on this
#      machine with a cold-ish cache; the table prints each rule's time as a multiple of it.
#
# Rules (the same JSON over both data sets):
#   R1 Verdi in Berlin, bought in the last 2 years  (event filter + purchase time: index only)
#   R2 regulars: 15 or more purchases              (count, customer-key index)
#   R3 big spenders: 1,000.00 EUR or more          (spend = price × quantity: reads every sale)
#   R4 lapsed Berliners: post code 1…, no purchase in the last 180 days, but bought before
#
#   6. PostgreSQL (BENCH_PG_URL=postgresql://…/postgres of a cluster, e.g. scripts/pg-cluster;
#      big data set only): the generated data dir is moved into a fresh database of that
#      cluster (`stagedoor migrate`, then ANALYZE, as autovacuum would shortly after), served
#      with --store and timed the same way (steps 3 and 4); the database is dropped at the end.
#
# Environment (defaults): BENCH_BIN, BENCH_REPEAT (3), BENCH_SALES (10000000),
# BENCH_CUSTOMERS (1000000), BENCH_EVENTS (20000), BENCH_SKIP_DEMO=1, BENCH_SKIP_BIG=1,
# BENCH_BIG_DATA=DIR (reuse a data dir made by an earlier run with BENCH_KEEP=1: skips the
# generator), BENCH_KEEP=1 (keep the temp dir). Needs curl, sqlite3, python3.
# Exit: 0 every POST answered 201, 1 one did not, 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPEAT=${BENCH_REPEAT:-3}
SALES=${BENCH_SALES:-10000000}
CUSTOMERS=${BENCH_CUSTOMERS:-1000000}
EVENTS=${BENCH_EVENTS:-20000}
KEEP=${BENCH_KEEP:-0}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
for tool in curl sqlite3 python3 awk; do
    command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install curl sqlite3 python3)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagedoor-segbench.XXXXXX")
SERVER_PID=
FAILED=0

PG_DB=
cleanup() {
    stop_server
    if [[ -n $PG_DB ]]; then
        psql "$BENCH_PG_URL" -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true
    fi
    if [[ $KEEP == 1 ]]; then
        echo "bench: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build ------------------------------------------------------------------------------------
bench_binary

# ---- rules ------------------------------------------------------------------------------------
RULE_NAMES=(R1 R2 R3 R4)
RULES=(
    '{"bought":{"composer":{"contains":"verdi"},"city":"Berlin","purchased":{"after":"730 days ago"}}}'
    '{"count":{"of":"purchases","gte":15}}'
    '{"count":{"of":"spend","currency":"EUR","gte":"1000.00"}}'
    '{"all":[{"customer":{"post_code":{"prefix":"1"}}},{"last_purchase":{"before":"180 days ago"}}]}'
)

# ---- helpers ----------------------------------------------------------------------------------
# start_server LOG ARGS…: starts the binary, sets BASE once it listens.
start_server() {
    local log=$1
    shift
    "$BIN" "$@" --listen 127.0.0.1:0 --log-level warn >"$log" 2>&1 &
    SERVER_PID=$!
    BASE=
    for _ in $(seq 1 6000); do # loading the demo season takes a while
        BASE=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$log" | head -n 1)
        [[ -n $BASE ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited: $(tail -n 20 "$log")"
        sleep 0.1
    done
    die "server did not listen within 600s: $(tail -n 20 "$log")"
}

# best_post CLIENT KEY RULE → "seconds member_count" (best of REPEAT)
best_post() {
    local client=$1 key=$2 rule=$3 best="" count="" out t code
    for _ in $(seq 1 "$REPEAT"); do
        out=$(curl -s -o "$WORK/last.json" -w '%{http_code} %{time_total}' -X POST \
            "$BASE/v1/$client/segments" -H "Authorization: Bearer $key" \
            -H 'Content-Type: application/json' --max-time 1200 \
            --data-binary "{\"segment_name\":\"bench\",\"rules\":$rule}") || out="000 0"
        code=${out%% *}
        t=${out##* }
        if [[ $code != 201 ]]; then
            echo "bench: POST segments answered $code: $(head -c 300 "$WORK/last.json")" >&2
            FAILED=1
            echo "void -"
            return
        fi
        count=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["member_count"])' \
            "$WORK/last.json")
        if [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN{exit !(a<b)}'; then
            best=$t
        fi
    done
    echo "$best $count"
}

# reference DB → seconds for one pass over every sale document
reference() {
    local t0 t1
    t0=$(date +%s.%N)
    sqlite3 "$1" "SELECT sum(length(doc)) FROM sales" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'
}

# run_set LABEL CLIENT KEY DB: time every rule, print one table block.
run_set() {
    local label=$1 client=$2 key=$3 db=$4 ref i res t n
    ref=$(reference "$db")
    local nsales
    nsales=$(sqlite3 "$db" "SELECT count(*) FROM sales")
    printf '\n%s: %s sales; reference (one pass over every sale document, sqlite3): %s s\n' \
        "$label" "$nsales" "$ref"
    printf '  %-4s %10s %8s %12s\n' rule seconds "x ref" members
    for i in "${!RULES[@]}"; do
        res=$(best_post "$client" "$key" "${RULES[$i]}")
        t=${res%% *}
        n=${res##* }
        if [[ $t == void ]]; then
            printf '  %-4s %10s %8s %12s\n' "${RULE_NAMES[$i]}" void - -
        else
            printf '  %-4s %10.3f %8.2f %12s\n' "${RULE_NAMES[$i]}" "$t" \
                "$(awk -v a="$t" -v b="$ref" 'BEGIN{print (b > 0 ? a/b : 0)}')" "$n"
        fi
    done
    # the first members page of R1, as the outbox reads it
    local seg out
    seg=$(curl -s -X POST "$BASE/v1/$client/segments" -H "Authorization: Bearer $key" \
        -H 'Content-Type: application/json' \
        --data-binary "{\"segment_name\":\"page\",\"rules\":${RULES[0]}}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["segment_id"])')
    out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 1200 \
        "$BASE/v1/$client/segments/$seg/members?limit=1000" -H "Authorization: Bearer $key") ||
        out="000 0"
    printf '  R1 members page (1,000): %s s (HTTP %s)\n' "${out##* }" "${out%% *}"
    [[ ${out%% *} == 200 ]] || FAILED=1
}

# paging_set LABEL CLIENT KEY: for every rule, paging all members against computing it once.
paging_set() {
    local label=$1 client=$2 key=$3 i out c p s n m sp ss
    [[ ${BENCH_PAGING:-1} == 1 ]] || return 0
    printf '\n%s paging, %s members a page (from no cursor):\n' "$label" "${BENCH_PAGE:-10000}"
    printf '  %-4s %10s %10s %8s %12s %6s %8s  %s\n' rule "compute s" "paging s" "ratio" \
        "slowest page" pages members "from the POST's snapshot: paging s, ratio, slowest page"
    for i in "${!RULES[@]}"; do
        if ! out=$(python3 "$ROOT/bench/segment_pages.py" "$BASE" "$client" "$key" \
            "${RULES[$i]}" "${BENCH_PAGE:-10000}"); then
            printf '  %-4s failed\n' "${RULE_NAMES[$i]}"
            FAILED=1
            continue
        fi
        read -r c p s n m _ sp ss <<<"$out"
        printf '  %-4s %10.3f %10.3f %8.2f %12.3f %6s %8s' "${RULE_NAMES[$i]}" "$c" "$p" \
            "$(awk -v a="$p" -v b="$c" 'BEGIN{print (b > 0 ? a/b : 0)}')" "$s" "$n" "$m"
        if [[ -n ${sp:-} ]]; then
            printf '  %10.3f %8.2f %12.3f' "$sp" \
                "$(awk -v a="$sp" -v b="$c" 'BEGIN{print (b > 0 ? a/b : 0)}')" "$ss"
        fi
        printf '\n'
    done
}

echo "bench: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), binary $BIN" >&2
for i in "${!RULES[@]}"; do
    printf '%s %s\n' "${RULE_NAMES[$i]}" "${RULES[$i]}"
done

# ---- demo season ------------------------------------------------------------------------------
if [[ ${BENCH_SKIP_DEMO:-0} != 1 ]]; then
    echo "bench: loading the demo season (150,000 sales through the write path)..." >&2
    start_server "$WORK/demo.log" demo --data "$WORK/demo"
    DEMO_KEY=$(sed -n 's/^TEST API key (shown once): //p' "$WORK/demo.log" | head -n 1)
    [[ -n $DEMO_KEY ]] || die "demo printed no key: $(tail -n 20 "$WORK/demo.log")"
    run_set "demo season" demo "$DEMO_KEY" "$WORK/demo/stagedoor.db"
    stop_server
fi

# ---- 10 million sales ---------------------------------------------------------------------------
if [[ ${BENCH_SKIP_BIG:-0} != 1 ]]; then
    if [[ -n ${BENCH_BIG_DATA:-} ]]; then
        BIG=$BENCH_BIG_DATA
        [[ -f $BIG/stagedoor.db ]] || die "no stagedoor.db in BENCH_BIG_DATA=$BIG"
    else
        BIG="$WORK/big"
        mkdir -p "$BIG"
        "${BENCH_BIN_BEFORE:-$BIN}" tenant create bench --data "$BIG" >"$WORK/setup.log" 2>&1 ||
            die "tenant create failed: $(cat "$WORK/setup.log")"
        echo "bench: generating $SALES sales, $CUSTOMERS customers, $EVENTS events..." >&2
        t0=$(date +%s)
        python3 "$ROOT/bench/gen_segments_db.py" "$BIG" --client bench --events "$EVENTS" \
            --customers "$CUSTOMERS" --sales "$SALES" >&2 || die "generator failed"
        echo "bench: generated in $(($(date +%s) - t0)) s" >&2
    fi
    if [[ -n ${BENCH_BIN_BEFORE:-} ]]; then
        BEFORE_KEY=$("$BENCH_BIN_BEFORE" key create bench --env test --data "$BIG" 2>/dev/null |
            tail -n 1)
        [[ -n $BEFORE_KEY ]] || die "key create (before) printed no key"
        AFTER_BIN=$BIN
        BIN=$BENCH_BIN_BEFORE
        start_server "$WORK/before.log" serve --data "$BIG"
        paging_set "before ($BENCH_BIN_BEFORE)" bench "$BEFORE_KEY"
        stop_server
        BIN=$AFTER_BIN
    fi
    BIG_KEY=$("$BIN" key create bench --env test --data "$BIG" 2>/dev/null | tail -n 1)
    [[ -n $BIG_KEY ]] || die "key create printed no key"
    start_server "$WORK/big.log" serve --data "$BIG"
    run_set "generated" bench "$BIG_KEY" "$BIG/stagedoor.db"
    paging_set "after ($BIN)" bench "$BIG_KEY"
    stop_server
    if [[ -n ${BENCH_PG_URL:-} ]]; then
        command -v psql >/dev/null || die "'psql' not found (BENCH_PG_URL needs it)"
        PG_DB="segbench_$$"
        psql "$BENCH_PG_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null || die "CREATE DATABASE failed"
        PG_STORE="${BENCH_PG_URL%/*}/$PG_DB"
        echo "bench: moving the generated data into PostgreSQL..." >&2
        t0=$(date +%s)
        "$BIN" migrate --from "$BIG" --to "$PG_STORE" >"$WORK/migrate.log" 2>&1 ||
            die "migrate failed: $(tail -n 5 "$WORK/migrate.log")"
        psql "$PG_STORE" -qc ANALYZE >/dev/null || die "ANALYZE failed"
        echo "bench: moved in $(($(date +%s) - t0)) s" >&2
        start_server "$WORK/big_pg.log" serve --data "$BIG" --store "$PG_STORE"
        run_set "generated, PostgreSQL" bench "$BIG_KEY" "$BIG/stagedoor.db"
        paging_set "PostgreSQL ($BIN)" bench "$BIG_KEY"
        stop_server
    fi
fi

exit "$FAILED"
