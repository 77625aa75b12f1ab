#!/usr/bin/env bash
# shellcheck disable=SC2154,SC2317 # R_*/F_* are set via printf -v; cleanup runs from trap
# bench/ingest.sh — ingest throughput of the real binary, with its reference in the same run.
#
# One run, on a fresh temporary data dir: build (release) if needed, start `stagedoor serve`
# on 127.0.0.1:0, create a tenant with limits raised out of the way and a TEST key, preload
# one event and one customer, then drive it with wrk:
#   (a) GET /healthz                      — reference: what the HTTP layer alone answers
#   (b) POST ingest, 1 sale per request   — sales/s, p50, p99
#   (c) POST ingest, BENCH_BATCH sales    — sales/s, p50, p99
#   (d) POST ingest, 1 sale, paced        — p50, p99 at about BENCH_RATE (100) requests/s
# Only 202 counts as accepted (200 for /healthz); any other status or socket error voids that
# figure. Each figure also shows the server's CPU time (user + system, all its threads, from
# /proc/PID/stat around the wrk run) per accepted request. Afterwards the server is stopped (SIGTERM: it drains and closes the store) and the
# stored sales are counted with sqlite3 and compared with the accepted ones.
#
# Environment (defaults): BENCH_SECONDS (10) per figure, BENCH_CONNECTIONS (64),
# BENCH_THREADS (2) wrk threads, BENCH_BATCH (100) sales per request in (c), BENCH_AIM (50000)
# sales/s aimed at, BENCH_TIMEOUT (30s) wrk request timeout, BENCH_BIN (build/release/stagedoor,
# built if unset), BENCH_SERVE_ARGS extra `serve` arguments (e.g. "--threads 4"),
# BENCH_KEEP=1 keeps the temp dir (data, server log, wrk output).
# Exit: 0 all figures valid and counts match, 1 a figure was void or counts differ, 2 setup
# failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$ROOT/bench"
SECONDS_PER=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
BATCH=${BENCH_BATCH:-100}
AIM=${BENCH_AIM:-50000}
TIMEOUT=${BENCH_TIMEOUT:-30s}
RATE=${BENCH_RATE:-100}
PACED_CONNS=10 # (d): each of these connections waits PACED_CONNS*1000/RATE ms before a request
KEEP=${BENCH_KEEP:-0}
CLIENT=bench

die() {
    echo "bench: $*" >&2
    exit 2
}

for tool in wrk curl sqlite3 awk; do
    command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install wrk curl sqlite3)"
done
[[ $CONNS -ge $THREADS ]] || die "BENCH_CONNECTIONS ($CONNS) must be >= BENCH_THREADS ($THREADS)"

# ---- fresh data dir, server, cleanup ----------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagedoor-bench.XXXXXX")
DATA="$WORK/data"
LOG="$WORK/server.log"
mkdir -p "$DATA"
SERVER_PID=
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "bench: server did not stop within 10s of SIGTERM, killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

cleanup() {
    stop_server
    if [[ $KEEP == 1 ]]; then
        echo "bench: kept $WORK (data/, server.log, wrk-*.txt)" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build ------------------------------------------------------------------------------------
if [[ -n ${BENCH_BIN:-} ]]; then
    BIN=$BENCH_BIN
else
    BIN="$ROOT/build/release/stagedoor"
    if ! (
        cd "$ROOT"
        if [[ ! -f build/release/CMakeCache.txt ]]; then
            cmake --preset release
        fi
        cmake --build build/release -j"$(nproc)" --target stagedoor
    ) >"$WORK/build.log" 2>&1; then
        tail -n 30 "$WORK/build.log" >&2
        die "release build failed (cmake --preset release && cmake --build build/release)"
    fi
fi
[[ -x $BIN ]] || die "no binary at '$BIN'"

# ---- tenant, key, server, preload -------------------------------------------------------------
"$BIN" tenant create "$CLIENT" --data "$DATA" >"$WORK/setup.log" 2>&1 ||
    die "tenant create failed: $(cat "$WORK/setup.log")"
"$BIN" tenant limits "$CLIENT" --per-minute 100000000 --burst 100000000 --data "$DATA" \
    >>"$WORK/setup.log" 2>&1 || die "tenant limits failed: $(cat "$WORK/setup.log")"
KEY=$("$BIN" key create "$CLIENT" --env test --data "$DATA" 2>>"$WORK/setup.log" | tail -n 1)
[[ -n $KEY ]] || die "key create printed no key: $(cat "$WORK/setup.log")"

# shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a word list on purpose
"$BIN" serve --data "$DATA" --listen 127.0.0.1:0 ${BENCH_SERVE_ARGS:-} >"$LOG" 2>&1 &
SERVER_PID=$!
BASE=
for _ in $(seq 1 300); do
    BASE=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$LOG" | head -n 1)
    [[ -n $BASE ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at start: $(tail -n 20 "$LOG")"
    sleep 0.1
done
[[ -n $BASE ]] || die "server did not print 'listening on' within 30s: $(tail -n 20 "$LOG")"

code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz") || true
[[ $code == 200 ]] || die "GET /healthz answered $code"

post() { # body → prints the status; the answer goes to $WORK/last.json
    curl -s -o "$WORK/last.json" -w '%{http_code}' -X POST "$BASE/v1/$CLIENT/ingest" \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' --data-binary "$1"
}
code=$(post '{"events":[{"event_id":"EVT-BENCH-1","title":"Otello","work_title":"Otello",
  "composer":"Giuseppe Verdi","date":"2026-10-03","time":"19:30:00","venue":"State Opera",
  "hall":"Main Hall","capacity":1250,"city":"Berlin"}],
  "customers":[{"customer_id":"C-BENCH-1","email":"jane.doe@example.com","salutation":"Ms",
  "first_name":"Jane","last_name":"Doe","ad_opt_out":false}]}') || true
[[ $code == 202 ]] || die "preload answered $code: $(cat "$WORK/last.json")"

# ---- figures ------------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0; }

# run NAME SCRIPT URL BATCH: runs wrk, leaves BENCH_RESULT fields in R_<field> variables and the
# server's CPU ticks over the run in R_cpu_ticks.
run() {
    local name=$1 script=$2 url=$3 batch=$4 conns=${5:-$CONNS} delay=${6:-0}
    echo "bench: ($name) ${SECONDS_PER}s, $conns connections, $THREADS threads, batch $batch" >&2
    local t0
    t0=$(cpu_ticks)
    BENCH_KEY=$KEY BENCH_CLIENT=$CLIENT BENCH_BATCH=$batch BENCH_RUN=$name \
        BENCH_EVENT=EVT-BENCH-1 BENCH_CUSTOMER=C-BENCH-1 BENCH_DELAY_MS=$delay \
        wrk -t"$THREADS" -c"$conns" -d"${SECONDS_PER}s" --timeout "$TIMEOUT" --latency \
        -s "$script" "$url" >"$WORK/wrk-$name.txt" 2>&1 || true
    R_cpu_ticks=$(($(cpu_ticks) - t0))
    local line
    line=$(grep '^BENCH_RESULT ' "$WORK/wrk-$name.txt" | tail -n 1) ||
        die "wrk ($name) printed no result: $(tail -n 20 "$WORK/wrk-$name.txt")"
    local kv
    for kv in ${line#BENCH_RESULT }; do
        printf -v "R_${kv%%=*}" '%s' "${kv#*=}"
    done
}

# figure NAME: from R_*, sets F_<name>_{ok,rps,sps,p50,p99,acc,why}
figure() {
    local n=$1
    local errs=$((R_err_connect + R_err_read + R_err_write + R_err_timeout))
    local ok=1 why=""
    if ((R_rejected > 0)); then
        ok=0
        why="$R_rejected non-accepted responses ($R_statuses)"
    fi
    if ((errs > 0)); then
        ok=0
        why="${why:+$why; }socket errors connect $R_err_connect read $R_err_read write $R_err_write timeout $R_err_timeout"
    fi
    if ((R_accepted == 0)); then
        ok=0
        why="${why:+$why; }nothing accepted"
    fi
    printf -v "F_${n}_ok" '%s' "$ok"
    printf -v "F_${n}_why" '%s' "$why"
    printf -v "F_${n}_acc" '%s' "$R_accepted"
    printf -v "F_${n}_batch" '%s' "$R_batch"
    printf -v "F_${n}_rps" '%s' "$(awk -v a="$R_accepted" -v d="$R_duration_us" 'BEGIN{printf "%.0f", a/(d/1e6)}')"
    printf -v "F_${n}_sps" '%s' "$(awk -v a="$R_accepted" -v b="$R_batch" -v d="$R_duration_us" 'BEGIN{printf "%.0f", a*b/(d/1e6)}')"
    printf -v "F_${n}_p50" '%s' "$(awk -v u="$R_p50_us" 'BEGIN{printf "%.2f", u/1000}')"
    printf -v "F_${n}_p99" '%s' "$(awk -v u="$R_p99_us" 'BEGIN{printf "%.2f", u/1000}')"
    printf -v "F_${n}_cpu" '%s' "$(awk -v t="$R_cpu_ticks" -v hz="$CLK_TCK" -v a="$R_accepted" \
        'BEGIN{ if (a > 0) printf "%.1f", t * 1e6 / hz / a; else print "-" }')"
    if ((!ok)); then
        echo "bench: ($n) figure void: $why" >&2
        grep '^BENCH_FIRST_ERROR' "$WORK/wrk-$n.txt" >&2 || true
    fi
}

run a "$BENCH_DIR/healthz.lua" "$BASE/healthz" 1
figure a
# The store's commit durations during (d) (the histogram of /metrics, before and after): how
# much of (d)'s latency the group commit itself takes (its fsync) on this disk.
commit_hist() {
    curl -s "$BASE/metrics" | awk '/^stagedoor_store_commit_duration_seconds_bucket/ {
        le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le); print le, $2 }'
}
# "count sum" of the same histogram: (b)'s group commits, their mean size and the share of the
# run the writer spent in COMMIT (when it is near 1, the writer's fsync bounds (b)).
commit_sums() {
    curl -s "$BASE/metrics" | awk '/^stagedoor_store_commit_duration_seconds_count/ { c = $2 }
        /^stagedoor_store_commit_duration_seconds_sum/ { s = $2 } END { print c + 0, s + 0 }'
}
SUMS_B0=$(commit_sums)
run b "$BENCH_DIR/ingest.lua" "$BASE/v1/$CLIENT/ingest" 1
figure b
SUMS_B1=$(commit_sums)
COMMITS_B=$(echo "$SUMS_B0 $SUMS_B1 $R_accepted $R_duration_us" | awk '{
    n = $3 - $1; t = $4 - $2
    if (n <= 0) { print "no commits"; exit }
    printf "%d commits, %.1f requests each, %.2f ms each, in COMMIT %.0f %% of the run",
        n, $5 / n, 1000 * t / n, 100 * t / ($6 / 1e6) }')
run c "$BENCH_DIR/ingest.lua" "$BASE/v1/$CLIENT/ingest" "$BATCH"
figure c
HIST_D0=$(commit_hist)
run d "$BENCH_DIR/ingest.lua" "$BASE/v1/$CLIENT/ingest" 1 "$PACED_CONNS" \
    "$(awk -v c="$PACED_CONNS" -v r="$RATE" 'BEGIN{printf "%d", c*1000/r}')"
figure d
HIST_D1=$(commit_hist)
# "N commits, p50 <= X ms, p99 <= Y ms" from the bucket counts' difference (upper bounds)
COMMITS_D=$(paste -d' ' <(echo "$HIST_D0") <(echo "$HIST_D1") | awk '
    { le[NR] = $1; n[NR] = $4 - $2 } END {
        total = n[NR]; if (total <= 0) { print "no commits"; exit }
        for (i = 1; i <= NR; i++) {
            if (p50 == "" && n[i] >= 0.5 * total) p50 = le[i]
            if (p99 == "" && n[i] >= 0.99 * total) p99 = le[i]
        }
        printf "%d commits, p50 <= %s ms, p99 <= %s ms", total,
            (p50 == "+Inf" ? "inf" : p50 * 1000), (p99 == "+Inf" ? "inf" : p99 * 1000) }')

# ---- verify: stored == accepted ---------------------------------------------------------------
code=$(curl -s -o "$WORK/last.json" -w '%{http_code}' "$BASE/v1/$CLIENT/sales?limit=1" \
    -H "Authorization: Bearer $KEY") || true
[[ $code == 200 ]] || echo "bench: GET /v1/$CLIENT/sales?limit=1 answered $code" >&2
stop_server # SIGTERM drains the writer and closes the store: the count below is final
DB="$DATA/stagedoor.db"
[[ -f $DB ]] || DB=$(find "$DATA" -maxdepth 2 -name '*.db' | head -n 1)
[[ -n $DB && -f $DB ]] || die "no database file under $DATA"
count() { sqlite3 "$DB" "select count(*) from sales where invoice_number like '$1'"; }
STORED_B=$(count 'Bb-%')
STORED_C=$(count 'Bc-%')
STORED_D=$(count 'Bd-%')
EXPECT_B=$F_b_acc
EXPECT_C=$((F_c_acc * BATCH))
# A request still in flight when wrk stops may be stored without its 202 being counted: at most
# one per connection. Fewer stored than accepted is a lost write and always a failure.
verdict() { # stored expected batch
    local extra=$(($1 - $2))
    if ((extra == 0)); then
        echo "equal"
    elif ((extra > 0 && extra <= CONNS * $3 && extra % $3 == 0)); then
        echo "+$extra in flight at stop (<= $CONNS requests)"
    else
        echo "MISMATCH ($extra)"
    fi
}
V_B=$(verdict "$STORED_B" "$EXPECT_B" 1)
V_C=$(verdict "$STORED_C" "$EXPECT_C" "$BATCH")
V_D=$(verdict "$STORED_D" "$F_d_acc" 1)

# ---- summary --------------------------------------------------------------------------------------
show() { # name label
    local n=$1 ok rps sps p50 p99 cpu
    ok=F_${n}_ok rps=F_${n}_rps sps=F_${n}_sps p50=F_${n}_p50 p99=F_${n}_p99 cpu=F_${n}_cpu
    if [[ ${!ok} == 1 ]]; then
        printf '%-34s %12s %12s %10s %10s %12s\n' "$2" "${!rps}" "${!sps}" "${!p50}" "${!p99}" \
            "${!cpu}"
    else
        printf '%-34s %12s %12s %10s %10s %12s\n' "$2" "void" "void" "-" "-" "-"
    fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a/b; else print "n/a" }'; }

echo
echo "stagedoor ingest bench — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs (wrk shares them)," \
    "${SECONDS_PER}s per figure, $CONNS connections, $THREADS wrk threads," \
    "load average before: $LOAD_BEFORE"
printf '%-34s %12s %12s %10s %10s %12s\n' "figure" "req/s" "sales/s" "p50 ms" "p99 ms" \
    "CPU µs/req"
show a "(a) GET /healthz (reference)"
show b "(b) ingest, 1 sale/request"
show c "(c) ingest, $BATCH sales/request"
show d "(d) ingest, 1 sale, ~$RATE req/s"
echo
R_BA=void R_CA=void
[[ $F_a_ok == 1 && $F_b_ok == 1 ]] && R_BA=$(ratio "$F_b_rps" "$F_a_rps")
[[ $F_c_ok == 1 ]] && R_CA=$(ratio "$F_c_sps" "$AIM")
echo "(b)/(a) req/s:             $R_BA  (share of the HTTP ceiling left for 1-sale ingest)"
[[ $F_a_ok == 1 && $F_b_ok == 1 ]] &&
    echo "(a)/(b) server CPU/req:    $(ratio "$F_a_cpu" "$F_b_cpu")  (the same share in the server's CPU time)"
echo "(c) sales/s / aim $AIM:  $R_CA  (>= 1 meets the aim)"
echo "(b) group commits:         ${COMMITS_B:-unknown}"
echo "(d) group commits:         ${COMMITS_D:-unknown} (stagedoor_store_commit_duration_seconds)"
echo "stored sales (b): $STORED_B, accepted $EXPECT_B — $V_B"
echo "stored sales (c): $STORED_C, accepted $EXPECT_C — $V_C"
echo "stored sales (d): $STORED_D, accepted $F_d_acc — $V_D"

status=0
for n in a b c d; do
    v=F_${n}_ok
    [[ ${!v} == 1 ]] || status=1
done
[[ $V_B != MISMATCH* && $V_C != MISMATCH* && $V_D != MISMATCH* ]] || status=1
exit $status
