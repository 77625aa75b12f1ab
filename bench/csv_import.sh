#!/usr/bin/env bash
# shellcheck disable=SC2154,SC2317 # REF_*/F_* are set via printf -v; cleanup runs from trap
# bench/csv_import.sh — CSV import throughput of the real binary (csv_drop connector), next to
# `sqlite3 .import` of the same file in the same run.
#
# One run: build (release) if needed, generate events.csv, customers.csv and a BENCH_ROWS-row
# sales.csv (bench/gen_sales_csv.py, deterministic), then
#   (r)  sqlite3 .import of sales.csv into a fresh WAL database        — the reference
#   (r2) the same with PRAGMA synchronous=FULL set first
#   (r3) the same into a table with the hub's sales indexes (informational, see README)
# and, per policy (reject_file, skip_rows) and per size (BENCH_ROWS, and BENCH_SMALL_ROWS to show
# that memory stays flat): a fresh data dir, `stagedoor serve`, a tenant and a csv_drop connector
# (schedule manual, settle_seconds 0) on a drop folder; events.csv and customers.csv are dropped
# and acknowledged first, then sales.csv is copied in under a hidden temporary name and renamed.
# The figure runs from the rename to the moment processed/sales.csv.ack.json appears; the ack
# gives rows_read, records_stored and duration_ms; the server's VmHWM (peak RSS) is read from
# /proc before and after; the server is stopped with SIGTERM and the stored sales are counted
# (and their prices summed) with sqlite3 and compared with the reference database.
#
# Environment (defaults): BENCH_ROWS (1000000), BENCH_SMALL_ROWS (100000; 0 skips the small
# runs), BENCH_EVENTS (200), BENCH_CUSTOMERS (20000), BENCH_ANON (0.3) share of ANON sales,
# BENCH_POLICIES ("reject_file skip_rows"), BENCH_AIM (0.5) share of the reference aimed at,
# BENCH_TIMEOUT (1800) seconds to wait for one ack, BENCH_BIN (build-bench/stagedoor, built if
# unset), BENCH_SERVE_ARGS extra `serve` arguments, BENCH_PERF=1 records `perf record -g` of the
# server during each large import (perf-<figure>.data in the temp dir; implies BENCH_KEEP=1),
# BENCH_KEEP=1 keeps the temp dir, BENCH_WEBHOOK_RATE (50; 0 = none) webhook requests per second
# of one sale each (bench/webhook_load.py) sent for BENCH_WEBHOOK_BASE_S (5) seconds before
# sales.csv (no import running) and then from its rename until its ack (during the import):
# p50/p99/max latency and failures of both, per figure.
# Exit: 0 every figure valid and every count matches, 1 a figure was void (file refused, count
# or sum differs, timeout), 2 setup failed. Wall time never fails the run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$ROOT/bench"
ROWS=${BENCH_ROWS:-1000000}
SMALL=${BENCH_SMALL_ROWS:-100000}
EVENTS=${BENCH_EVENTS:-200}
CUSTOMERS=${BENCH_CUSTOMERS:-20000}
ANON=${BENCH_ANON:-0.3}
POLICIES=${BENCH_POLICIES:-reject_file skip_rows}
AIM=${BENCH_AIM:-0.5}
TIMEOUT=${BENCH_TIMEOUT:-1800}
PERF=${BENCH_PERF:-0}
KEEP=${BENCH_KEEP:-0}
WH_RATE=${BENCH_WEBHOOK_RATE:-50}
WH_BASE_S=${BENCH_WEBHOOK_BASE_S:-5}
WH_PID=
[[ $PERF == 1 ]] && KEEP=1
CLIENT=bench

die() {
    echo "bench: $*" >&2
    exit 2
}

for tool in curl sqlite3 awk python3; do
    command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install curl sqlite3 gawk python3)"
done
[[ $PERF != 1 ]] || command -v perf >/dev/null || die "BENCH_PERF=1 needs perf"
for p in $POLICIES; do
    [[ $p == reject_file || $p == skip_rows ]] || die "unknown policy '$p' in BENCH_POLICIES"
done
((ROWS > 0)) || die "BENCH_ROWS must be > 0"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagedoor-csvbench.XXXXXX")
WORK=$(cd "$WORK" && pwd -P) # the connector's folder must be absolute
export STAGEDOOR_FILE_ROOTS="$WORK" # and inside the file roots (README "Egress policy")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
SERVER_PID=
PERF_PID=

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "bench: server did not stop within 30s of SIGTERM, killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

stop_perf() {
    [[ -n $PERF_PID ]] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
}

cleanup() {
    [[ -z $WH_PID ]] || kill "$WH_PID" 2>/dev/null || true
    stop_perf
    stop_server
    if [[ $KEEP == 1 ]]; then
        echo "bench: kept $WORK (gen/, ref*.db, run-*/ with data/, drop/, server.log)" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", (b - a) / 1e9}'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s > 0) printf "%.0f", n / s; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
TICKS=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
io_wchar() { awk '/^wchar:/ {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }

# ---- build ------------------------------------------------------------------------------------
if [[ -n ${BENCH_BIN:-} ]]; then
    BIN=$BENCH_BIN
else
    BIN="$ROOT/build-bench/stagedoor"
    if ! (
        cd "$ROOT"
        if [[ ! -f build-bench/CMakeCache.txt ]]; then
            cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release
        fi
        cmake --build build-bench -j"$(nproc)" --target stagedoor
    ) >"$WORK/build.log" 2>&1; then
        tail -n 30 "$WORK/build.log" >&2
        die "release build failed (cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release)"
    fi
fi
[[ -x $BIN ]] || die "no binary at '$BIN'"

# ---- input files --------------------------------------------------------------------------------
gen() { # dir rows
    local t0 t1
    t0=$(now_ns)
    python3 "$BENCH_DIR/gen_sales_csv.py" "$1" --sales "$2" --events "$EVENTS" \
        --customers "$CUSTOMERS" --anon "$ANON" >"$1.log" 2>&1 ||
        die "gen_sales_csv.py failed: $(cat "$1.log")"
    t1=$(now_ns)
    echo "bench: generated $2 sales rows in $(secs "$t0" "$t1") s ($(du -h "$1/sales.csv" | cut -f1))" >&2
}
GEN="$WORK/gen"
gen "$GEN" "$ROWS"
SALES_BYTES=$(stat -c %s "$GEN/sales.csv")
if ((SMALL > 0)); then
    # Same seed and counts: identical events.csv and customers.csv, a shorter sales.csv.
    gen "$WORK/gen-small" "$SMALL"
fi

# ---- reference: sqlite3 .import of the same file, same disk, same run -------------------------
# ref NAME IMPORT_OPTS SETUP_SQL...: imports sales.csv into $WORK/NAME.db with
# `.import IMPORT_OPTS sales.csv sales` after SETUP_SQL; sets REF_<NAME>_{s,rps,kb}.
ref() {
    local name=$1 opts=$2
    shift 2
    local db="$WORK/$name.db" t0 t1 n kb u sy
    rm -f "$db" "$db-wal" "$db-shm"
    echo "bench: ($name) sqlite3 .import of $ROWS rows" >&2
    t0=$(now_ns)
    /usr/bin/time -f '%M %U %S' -o "$WORK/$name.time" \
        sqlite3 "$db" "$@" ".mode csv" ".import $opts $GEN/sales.csv sales" >"$WORK/$name.log" 2>&1 ||
        die "sqlite3 .import ($name) failed: $(head -c 2000 "$WORK/$name.log")"
    t1=$(now_ns)
    if grep -qvx wal "$WORK/$name.log"; then # anything but the journal_mode answer
        die "sqlite3 .import ($name) complained: $(head -c 2000 "$WORK/$name.log")"
    fi
    n=$(sqlite3 "$db" "select count(*) from sales")
    [[ $n == "$ROWS" ]] || die "sqlite3 .import ($name) stored $n rows, not $ROWS"
    read -r kb u sy < <(tail -n 1 "$WORK/$name.time")
    printf -v "REF_${name}_cpu" '%s' "$(awk -v u="$u" -v s="$sy" 'BEGIN{printf "%.2f", u + s}')"
    printf -v "REF_${name}_s" '%s' "$(secs "$t0" "$t1")"
    local s_var="REF_${name}_s"
    printf -v "REF_${name}_rps" '%s' "$(rate "$ROWS" "${!s_var}")"
    printf -v "REF_${name}_kb" '%s' "$kb"
}
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"
ref r "" "PRAGMA journal_mode=WAL;"
ref r2 "" "PRAGMA journal_mode=WAL;" "PRAGMA synchronous=FULL;"
# The hub's sales indexes (src/store/sqlite/schema: unique invoice number, customer, event) and
# its writer's 64 MiB page cache, on a table of the CSV's columns: what the indexes alone cost
# SQLite, without validation, mapping or JSON documents.
ref r3 "--skip 1" "PRAGMA journal_mode=WAL;" "PRAGMA synchronous=FULL;" "PRAGMA cache_size=-65536;" \
    "CREATE TABLE sales (invoice_number TEXT NOT NULL, event_id TEXT NOT NULL,
       customer_id TEXT NOT NULL, purchase_datetime TEXT NOT NULL, ticket_category TEXT,
       quantity INTEGER, sales_price TEXT, currency TEXT, UNIQUE (invoice_number));
     CREATE INDEX sales_customer ON sales (customer_id);
     CREATE INDEX sales_event ON sales (event_id);"
# Expected content for the hub: same count, same total of prices in minor units.
REF_SUM=$(sqlite3 "$WORK/r.db" "select sum(cast(round(sales_price * 100) as integer)) from sales")
if ((SMALL > 0)); then
    sqlite3 "$WORK/small.db" ".mode csv" ".import $WORK/gen-small/sales.csv sales" ||
        die "sqlite3 .import of the small file failed"
    REF_SMALL_SUM=$(sqlite3 "$WORK/small.db" \
        "select sum(cast(round(sales_price * 100) as integer)) from sales")
fi

# ---- stagedoor ----------------------------------------------------------------------------------
BASE=
TOKEN=
start_server() { # data_dir log
    # shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a word list on purpose
    "$BIN" serve --data "$1" --listen 127.0.0.1:0 ${BENCH_SERVE_ARGS:-} >"$2" 2>&1 &
    SERVER_PID=$!
    BASE=
    for _ in $(seq 1 300); do
        BASE=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$2" | head -n 1)
        [[ -n $BASE ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at start: $(tail -n 20 "$2")"
        sleep 0.1
    done
    [[ -n $BASE ]] || die "server did not print 'listening on' within 30s: $(tail -n 20 "$2")"
    TOKEN=$(head -n 1 "$1/admin.token") || die "no $1/admin.token"
}

# wait_ack DROP NAME → prints processed|failed once NAME's ack exists (polls every 20 ms)
wait_ack() {
    local drop=$1 name=$2 i
    for ((i = 0; i < TIMEOUT * 50; i++)); do
        if [[ -f $drop/processed/$name.ack.json ]]; then
            echo processed
            return 0
        fi
        if [[ -f $drop/failed/$name.ack.json ]]; then
            echo failed
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || {
            echo died
            return 0
        }
        sleep 0.02
    done
    echo timeout
}

ack_field() { # file key
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}

# drop SRC DROP NAME: copy under a hidden temporary name (not watched), then rename into place.
drop_in() {
    cp "$1" "$2/.$3.part"
    mv "$2/.$3.part" "$2/$3"
}

# wh_line FILE: "p50 X ms, p99 Y ms, max Z ms, F of N failed" from webhook_load.py's output
wh_line() {
    [[ -s $1 ]] || {
        echo "not measured"
        return 0
    }
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print("p50 %s ms, p99 %s ms, max %s ms, %d of %d failed" % (d["p50_ms"], d["p99_ms"], d["max_ms"], d["failed"], d["sent"]))' "$1"
}

# commit_figure BEFORE AFTER: the group commits between two /metrics scrapes (the store's
# commit-duration histogram): how many, their mean, and how many took over 0.25 / 0.5 / 1 s.
commit_figure() {
    awk '
        /^stagedoor_store_commit_duration_seconds_(bucket|sum|count)/ {
            v = $NF; k = $1
            if (FILENAME == ARGV[1]) { a[k] = v } else { b[k] = v }
        }
        END {
            n = b["stagedoor_store_commit_duration_seconds_count"] - a["stagedoor_store_commit_duration_seconds_count"]
            sum = b["stagedoor_store_commit_duration_seconds_sum"] - a["stagedoor_store_commit_duration_seconds_sum"]
            split("0.25 0.5 1", les, " ")
            out = ""
            for (i = 1; i <= 3; i++) {
                k = "stagedoor_store_commit_duration_seconds_bucket{le=\"" les[i] "\"}"
                over = n - (b[k] - a[k])
                out = out sprintf("%s> %s s %d", i > 1 ? ", " : "", les[i], over)
            }
            if (n > 0) printf "%d commits, mean %.0f ms, %s", n, sum / n * 1000, out
            else printf "no commit figures (no /metrics)"
        }' "$1" "$2"
}

# run_one FIG POLICY GENDIR ROWS EXPECTED_SUM: sets F_<FIG>_{ok,why,s,rps,dur,rss0,rss}
run_one() {
    local fig=$1 policy=$2 gdir=$3 rows=$4 want_sum=$5
    local dir="$WORK/run-$fig" data drop log code id st t0 t1 ok=1 why=""
    data="$dir/data" drop="$dir/drop" log="$dir/server.log"
    mkdir -p "$data" "$drop"
    echo "bench: ($fig) $policy, $rows rows" >&2
    "$BIN" tenant create "$CLIENT" --data "$data" >"$dir/setup.log" 2>&1 ||
        die "tenant create failed: $(cat "$dir/setup.log")"
    # The webhook load must not meet the tenant's rate limit (it measures latency, not 429s).
    "$BIN" tenant limits "$CLIENT" --per-minute 1000000 --burst 100000 --data "$data" \
        >>"$dir/setup.log" 2>&1 || die "tenant limits failed: $(cat "$dir/setup.log")"
    local key event
    key=$("$BIN" key create "$CLIENT" --env test --data "$data" 2>>"$dir/setup.log" |
        awk 'NF {k = $0} END {print k}') || die "key create failed: $(cat "$dir/setup.log")"
    event=$(sed -n '2s/,.*//p' "$gdir/events.csv")
    start_server "$data" "$log"
    code=$(curl -s -o "$dir/connector.json" -w '%{http_code}' -X POST \
        "$BASE/admin/v1/tenants/$CLIENT/connectors" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' \
        --data-binary "{\"type\":\"csv_drop\",\"environment\":\"test\",\"schedule\":\"manual\",
          \"settings\":{\"folder\":\"$drop\",\"settle_seconds\":0,\"policy\":\"$policy\"}}") || true
    [[ $code == 201 ]] || die "connector create answered $code: $(cat "$dir/connector.json")"
    id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connector_id"])' \
        "$dir/connector.json")
    # Events and customers first, each acknowledged before the next (their references). The
    # scheduler sets its inotify watch when it next reloads the settings (up to a tick after the
    # 201) and does not scan the folder then, so a file dropped in that window would wait for the
    # schedule — with "manual", forever: these two are also started with POST …/run. sales.csv
    # comes after a completed run, when the watch certainly exists: its run starts by inotify.
    local f
    for f in events.csv customers.csv; do
        [[ -f $gdir/$f ]] || continue
        drop_in "$gdir/$f" "$drop" "$f"
        code=$(curl -s -o "$dir/run.json" -w '%{http_code}' -X POST \
            "$BASE/admin/v1/tenants/$CLIENT/connectors/$id/run" \
            -H "Authorization: Bearer $TOKEN") || true
        [[ $code == 202 ]] || die "POST …/run answered $code: $(cat "$dir/run.json")"
        st=$(wait_ack "$drop" "$f")
        [[ $st == processed ]] || die "($fig) $f: $st: $(cat "$drop"/*/"$f".ack.json 2>/dev/null; tail -n 5 "$log")"
    done
    local rss0
    rss0=$(hwm_kb "$SERVER_PID")
    # The file is complete in the folder before the clock starts: only the rename is timed.
    cp "$gdir/sales.csv" "$drop/.sales.csv.part"
    sync -f "$drop/.sales.csv.part" 2>/dev/null || true
    if [[ $PERF == 1 && $rows == "$ROWS" ]]; then
        perf record -g -o "$WORK/perf-$fig.data" -p "$SERVER_PID" >"$WORK/perf-$fig.log" 2>&1 &
        PERF_PID=$!
        sleep 0.5
    fi
    # The webhook without an import, then during it (invoice numbers WH-*, not in the file).
    local wh=(python3 "$BENCH_DIR/webhook_load.py" --base "$BASE" --client "$CLIENT" --key "$key"
        --event "$event" --rate "$WH_RATE")
    if [[ $WH_RATE != 0 ]]; then
        "${wh[@]}" --prefix WH-B- --seconds "$WH_BASE_S" >"$dir/webhook-idle.json" ||
            die "webhook_load.py failed"
        rm -f "$dir/webhook.stop"
        "${wh[@]}" --prefix WH-I- --stop-file "$dir/webhook.stop" >"$dir/webhook-import.json" &
        WH_PID=$!
    fi
    local c0 c1 w0 w1
    curl -s "$BASE/metrics" >"$dir/metrics-0.txt" || true
    c0=$(cpu_ticks "$SERVER_PID") w0=$(io_wchar "$SERVER_PID")
    t0=$(now_ns)
    mv "$drop/.sales.csv.part" "$drop/sales.csv"
    # inotify starts the run; ask too, in case the watch missed it (a run in flight answers 409)
    curl -s -o /dev/null -X POST "$BASE/admin/v1/tenants/$CLIENT/connectors/$id/run" \
        -H "Authorization: Bearer $TOKEN" || true
    st=$(wait_ack "$drop" sales.csv)
    t1=$(now_ns)
    c1=$(cpu_ticks "$SERVER_PID") w1=$(io_wchar "$SERVER_PID")
    curl -s "$BASE/metrics" >"$dir/metrics-1.txt" || true
    printf -v "F_${fig}_commits" '%s' "$(commit_figure "$dir/metrics-0.txt" "$dir/metrics-1.txt")"
    if [[ -n $WH_PID ]]; then
        touch "$dir/webhook.stop"
        wait "$WH_PID" || true
        WH_PID=
    fi
    stop_perf
    local rss dur rows_read stored
    rss=$(hwm_kb "$SERVER_PID")
    code=$(curl -s -o "$dir/status.json" -w '%{http_code}' \
        "$BASE/admin/v1/tenants/$CLIENT/connectors/$id" -H "Authorization: Bearer $TOKEN") || true
    stop_server # SIGTERM: writer drained, store closed — the counts below are final
    if [[ $st != processed ]]; then
        ok=0
        why="sales.csv $st"
        [[ -f $drop/failed/sales.csv.ack.json ]] &&
            why="$why: $(ack_field "$drop/failed/sales.csv.ack.json" error) (see $drop/failed/)"
        dur=0 rows_read=0 stored=0
    else
        local ack="$drop/processed/sales.csv.ack.json"
        dur=$(ack_field "$ack" duration_ms)
        rows_read=$(ack_field "$ack" rows_read)
        stored=$(ack_field "$ack" records_stored)
        local rej
        rej=$(ack_field "$ack" records_rejected)
        [[ $rows_read == "$rows" ]] || { ok=0; why="${why:+$why; }ack rows_read $rows_read, not $rows"; }
        [[ $stored == "$rows" ]] || { ok=0; why="${why:+$why; }ack records_stored $stored, not $rows"; }
        [[ $rej == 0 ]] || { ok=0; why="${why:+$why; }ack records_rejected $rej"; }
        local db_n db_sum
        db_n=$(sqlite3 "$data/stagedoor.db" \
            "select count(*) from sales where invoice_number not like 'WH-%'")
        db_sum=$(sqlite3 "$data/stagedoor.db" \
            "select sum(sales_price_minor) from sales where invoice_number not like 'WH-%'")
        [[ $db_n == "$rows" ]] || { ok=0; why="${why:+$why; }stored count $db_n, not $rows"; }
        [[ $db_sum == "$want_sum" ]] ||
            { ok=0; why="${why:+$why; }stored price total $db_sum, sqlite3 .import has $want_sum"; }
    fi
    local s
    s=$(secs "$t0" "$t1")
    printf -v "F_${fig}_ok" '%s' "$ok"
    printf -v "F_${fig}_why" '%s' "$why"
    printf -v "F_${fig}_s" '%s' "$s"
    printf -v "F_${fig}_rps" '%s' "$(rate "$rows" "$s")"
    printf -v "F_${fig}_dur" '%s' "$dur"
    printf -v "F_${fig}_rss0" '%s' "$rss0"
    printf -v "F_${fig}_rss" '%s' "$rss"
    printf -v "F_${fig}_rows" '%s' "$rows"
    printf -v "F_${fig}_cpu" '%s' "$(awk -v a="$c0" -v b="$c1" -v t="$TICKS" 'BEGIN{printf "%.2f", (b - a) / t}')"
    printf -v "F_${fig}_wmib" '%s' "$(awk -v a="$w0" -v b="$w1" 'BEGIN{printf "%.0f", (b - a) / 1048576}')"
    printf -v "F_${fig}_wh" '%s' "$(wh_line "$dir/webhook-idle.json") | during the import: $(wh_line "$dir/webhook-import.json")"
    if ((!ok)); then
        echo "bench: ($fig) figure void: $why" >&2
    fi
}

FIGS=()
for p in $POLICIES; do
    fig=${p%%_*} # reject | skip
    run_one "$fig" "$p" "$GEN" "$ROWS" "$REF_SUM"
    FIGS+=("$fig")
    if ((SMALL > 0)); then
        run_one "${fig}_small" "$p" "$WORK/gen-small" "$SMALL" "$REF_SMALL_SUM"
        FIGS+=("${fig}_small")
    fi
done

# ---- summary --------------------------------------------------------------------------------------
PERF_NOTE=""
[[ $PERF == 1 ]] && PERF_NOTE=" — UNDER perf record, figures are slower than without"
echo
echo "stagedoor csv import bench — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs," \
    "sales.csv $ROWS rows / $(awk -v b="$SALES_BYTES" 'BEGIN{printf "%.1f", b/1048576}') MiB" \
    "($EVENTS events, $CUSTOMERS customers, ANON share $ANON), load average before: $LOAD_BEFORE$PERF_NOTE"
printf '%-44s %9s %9s %10s %8s %8s %12s\n' "figure" "rows" "seconds" "rows/s" "vs (r)" "CPU s" "peak RSS MiB"
ref_line() { # name label
    local s=REF_$1_s rps=REF_$1_rps kb=REF_$1_kb cpu=REF_$1_cpu
    printf '%-44s %9s %9s %10s %8s %8s %12s\n' "$2" "$ROWS" "${!s}" "${!rps}" \
        "$(ratio "${!rps}" "$REF_r_rps")" "${!cpu}" "$(mib "${!kb}")"
}
ref_line r "(r)  sqlite3 .import, WAL (reference)"
ref_line r2 "(r2) sqlite3 .import, WAL, synchronous=FULL"
ref_line r3 "(r3) (r2) + the hub's sales indexes"
for fig in "${FIGS[@]}"; do
    ok=F_${fig}_ok s=F_${fig}_s rps=F_${fig}_rps rss=F_${fig}_rss rows=F_${fig}_rows
    cpu=F_${fig}_cpu
    case $fig in
    reject) label="(a)  stagedoor csv_drop, reject_file" ;;
    reject_small) label="(a') stagedoor csv_drop, reject_file, small" ;;
    skip) label="(b)  stagedoor csv_drop, skip_rows" ;;
    skip_small) label="(b') stagedoor csv_drop, skip_rows, small" ;;
    esac
    if [[ ${!ok} == 1 ]]; then
        printf '%-44s %9s %9s %10s %8s %8s %12s\n' "$label" "${!rows}" "${!s}" "${!rps}" \
            "$(ratio "${!rps}" "$REF_r_rps")" "${!cpu}" "$(mib "${!rss}")"
    else
        printf '%-44s %9s %9s %10s %8s %8s %12s\n' "$label" "${!rows}" "void" "void" "-" \
            "${!cpu}" "$(mib "${!rss}")"
    fi
done
echo
echo "seconds: rename into the drop folder → ack written (stagedoor); process start → exit (sqlite3)."
echo "CPU s: user + system time of the process over the same interval (all its threads)."
for fig in "${FIGS[@]}"; do
    ok=F_${fig}_ok dur=F_${fig}_dur rss0=F_${fig}_rss0 rss=F_${fig}_rss rows=F_${fig}_rows
    why=F_${fig}_why wmib=F_${fig}_wmib
    if [[ ${!ok} == 1 ]]; then
        echo "($fig) ack duration_ms ${!dur} ($(rate "${!rows}" "$(awk -v d="${!dur}" 'BEGIN{print d/1000}')") rows/s inside the import)," \
            "peak RSS $(mib "${!rss0}") MiB before sales.csv → $(mib "${!rss}") MiB after," \
            "${!wmib} MiB written ($(awk -v w="${!wmib}" -v b="$SALES_BYTES" -v r="${!rows}" -v n="$ROWS" 'BEGIN{printf "%.1f", w * 1048576 / (b * r / n)}')× the file: WAL, checkpoints, errors.csv);" \
            "stored ${!rows} = rows, price total matches (r)"
        wh=F_${fig}_wh
        [[ $WH_RATE == 0 ]] ||
            echo "($fig) webhook, 1 sale per request at $WH_RATE/s — no import: ${!wh}"
        commits=F_${fig}_commits
        echo "($fig) group commits during the import: ${!commits}"
    else
        echo "($fig) VOID: ${!why}"
    fi
done
status=0
for fig in "${FIGS[@]}"; do
    ok=F_${fig}_ok
    [[ ${!ok} == 1 ]] || status=1
done
for fig in reject skip; do
    ok=F_${fig}_ok rps=F_${fig}_rps
    [[ -n ${!ok:-} ]] || continue
    if [[ ${!ok} == 1 ]]; then
        r=$(ratio "${!rps}" "$REF_r_rps")
        verdict=$(awk -v r="$r" -v a="$AIM" 'BEGIN{print (r >= a) ? "meets" : "below"}')
        echo "($fig)/(r) rows/s: $r — $verdict the aim of $AIM"
    fi
done
exit $status
