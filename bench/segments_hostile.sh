#!/usr/bin/env bash
# shellcheck disable=SC2154,SC2317 # R_*/F_* are set via printf -v; cleanup runs from a trap
# bench/segments_hostile.sh — webhook latency while other tenants send hostile segment rules,
# against the same webhook without them, measured in the same run on the same server.
#
# One run:
#   1. builds build/release/stagedoor (release preset) unless BENCH_BIN names a binary;
#   2. data: `stagedoor demo` loads the demo season (150,000 sales) into tenant `demo`;
#      bench/gen_segments_db.py adds tenant `rival` with as many generated sales; tenant `web`
#      (limits raised out of the way) gets one event — its webhook is what is measured;
#   3. serves (BENCH_SERVE_ARGS, e.g. "--segment-budget 10"; `--threads` is left to the default,
#      one HTTP thread per CPU);
#   4. (q) quiet: wrk POSTs one sale per request to /v1/web/ingest for BENCH_SECONDS with
#      BENCH_CONNECTIONS connections, each pausing BENCH_DELAY_MS before every request (a
#      steady webhook stream, not a flood; 0 floods): p50, p99, max, req/s — the reference;
#   5. (h) hostile: BENCH_HOSTILE clients per tenant (demo and rival; threads of one python3
#      process, keep-alive) POST a 40-leaf `spend` rule (each leaf has a `where` on quantity,
#      which keeps it off the per-profile facts: it reads every sale document; ~10 s of CPU
#      over the demo season) again and again, 0.1 s after each answer, ignoring
#      Retry-After; after 2 s the same wrk run as (q); then the hostile clients stop (each
#      finishes its request in flight) and their answers are counted by status and error code;
#   6. prints both figures, the ratios (h)/(q), and p99 (h) against the aim BENCH_AIM_MS (50).
#
# Only 202 counts for the webhook; any other status or a socket error voids a figure (exit 1).
# Environment (defaults): BENCH_BIN, BENCH_SECONDS (20), BENCH_CONNECTIONS (4), BENCH_DELAY_MS
# (20), BENCH_HOSTILE (3), BENCH_AIM_MS (50), BENCH_TIMEOUT (60s, wrk's per-request timeout), BENCH_SERVE_ARGS,
# BENCH_KEEP=1 (keep the temp dir: data, server.log, wrk and hostile logs).
# Exit: 0 both figures valid, 1 a figure void, 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$ROOT/bench"
SECONDS_PER=${BENCH_SECONDS:-20}
CONNS=${BENCH_CONNECTIONS:-4}
DELAY_MS=${BENCH_DELAY_MS:-20}
HOSTILE=${BENCH_HOSTILE:-3}
AIM_MS=${BENCH_AIM_MS:-50}
TIMEOUT=${BENCH_TIMEOUT:-60s}
KEEP=${BENCH_KEEP:-0}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
for tool in wrk curl python3 awk; do
    command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install wrk curl python3)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagedoor-seghostile.XXXXXX")
DATA="$WORK/data"
LOG="$WORK/server.log"
mkdir -p "$DATA"
SERVER_PID=
HOSTILE_PIDS=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

stop_hostile() {
    touch "$WORK/stop"
    local p
    for p in "${HOSTILE_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    HOSTILE_PIDS=()
}
cleanup() {
    stop_hostile
    stop_server
    if [[ $KEEP == 1 ]]; then
        echo "bench: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build --------------------------------------------------------------------------------------
bench_binary

# start_server ARGS...: serve on a free port, BASE=http://127.0.0.1:PORT once it listens.
start_server() {
    : >"$LOG"
    "$BIN" "$@" --data "$DATA" --listen 127.0.0.1:0 >>"$LOG" 2>&1 &
    SERVER_PID=$!
    BASE=
    for _ in $(seq 1 1200); do
        BASE=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$LOG" | head -n 1)
        [[ -n $BASE ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited at start: $(tail -n 20 "$LOG")"
        sleep 0.1
    done
    die "server did not print 'listening on' within 120s: $(tail -n 20 "$LOG")"
}

# ---- data ---------------------------------------------------------------------------------------
echo "bench: loading the demo season" >&2
start_server demo
stop_server
cli() { "$BIN" "$@" --data "$DATA" 2>>"$WORK/setup.log"; }
cli tenant create rival >/dev/null || die "tenant create rival: $(cat "$WORK/setup.log")"
cli tenant create web >/dev/null || die "tenant create web: $(cat "$WORK/setup.log")"
cli tenant limits web --per-minute 100000000 --burst 100000000 >/dev/null ||
    die "tenant limits: $(cat "$WORK/setup.log")"
KEY_DEMO=$(cli key create demo --env test | tail -n 1)
KEY_RIVAL=$(cli key create rival --env test | tail -n 1)
KEY_WEB=$(cli key create web --env test | tail -n 1)
[[ -n $KEY_DEMO && -n $KEY_RIVAL && -n $KEY_WEB ]] || die "key create: $(cat "$WORK/setup.log")"
echo "bench: generating tenant rival (150,000 sales)" >&2
python3 "$BENCH_DIR/gen_segments_db.py" "$DATA" --client rival --env test --events 200 \
    --customers 20000 --sales 150000 --seed 7 >"$WORK/gen.log" 2>&1 ||
    die "generator failed: $(tail -n 20 "$WORK/gen.log")"

# shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a word list on purpose
start_server serve ${BENCH_SERVE_ARGS:-}
code=$(curl -s -o "$WORK/last.json" -w '%{http_code}' -X POST "$BASE/v1/web/ingest" \
    -H "Authorization: Bearer $KEY_WEB" -H 'Content-Type: application/json' --data-binary \
    '{"events":[{"event_id":"EVT-BENCH-1","title":"Otello","date":"2026-10-03",
      "time":"19:30:00","venue":"State Opera","hall":"Main Hall","capacity":1250,
      "city":"Berlin"}]}') || true
[[ $code == 202 ]] || die "preload answered $code: $(cat "$WORK/last.json")"

HOSTILE_RULE=$(python3 -c 'import json; print(json.dumps({"segment_name": "hostile",
  "rules": {"any": [{"count": {"of": "spend", "currency": "EUR",
                               "where": {"quantity": {"gte": 1}}, "gte": "%d.00" % (1000 + i)}}
                    for i in range(40)]}}))')

# ---- figures ------------------------------------------------------------------------------------
# webhook NAME: wrk against /v1/web/ingest; sets F_<name>_{ok,why,rps,p50,p99,max}.
webhook() {
    local n=$1 line kv
    echo "bench: ($n) webhook ${SECONDS_PER}s, $CONNS connections, ${DELAY_MS} ms pause" >&2
    BENCH_KEY=$KEY_WEB BENCH_CLIENT=web BENCH_BATCH=1 BENCH_RUN=$n BENCH_EVENT=EVT-BENCH-1 \
        BENCH_DELAY_MS=$DELAY_MS \
        wrk -t1 -c"$CONNS" -d"${SECONDS_PER}s" --timeout "$TIMEOUT" --latency \
        -s "$BENCH_DIR/ingest.lua" "$BASE/v1/web/ingest" >"$WORK/wrk-$n.txt" 2>&1 || true
    line=$(grep '^BENCH_RESULT ' "$WORK/wrk-$n.txt" | tail -n 1) ||
        die "wrk ($n) printed no result: $(tail -n 20 "$WORK/wrk-$n.txt")"
    for kv in ${line#BENCH_RESULT }; do
        printf -v "R_${kv%%=*}" '%s' "${kv#*=}"
    done
    local errs=$((R_err_connect + R_err_read + R_err_write + R_err_timeout)) ok=1 why=""
    if ((R_rejected > 0)); then
        ok=0 why="$R_rejected non-202 answers ($R_statuses)"
    fi
    if ((errs > 0)); then
        ok=0
        why="${why:+$why; }socket errors: connect $R_err_connect read $R_err_read write $R_err_write timeout $R_err_timeout"
    fi
    ((R_accepted > 0)) || { ok=0 why="${why:+$why; }nothing accepted"; }
    printf -v "F_${n}_ok" '%s' "$ok"
    printf -v "F_${n}_why" '%s' "$why"
    printf -v "F_${n}_rps" '%s' "$(awk -v a="$R_accepted" -v d="$R_duration_us" 'BEGIN{printf "%.0f", a/(d/1e6)}')"
    printf -v "F_${n}_p50" '%s' "$(awk -v u="$R_p50_us" 'BEGIN{printf "%.2f", u/1000}')"
    printf -v "F_${n}_p99" '%s' "$(awk -v u="$R_p99_us" 'BEGIN{printf "%.2f", u/1000}')"
    printf -v "F_${n}_max" '%s' "$(awk -v u="$R_max_us" 'BEGIN{printf "%.2f", u/1000}')"
    ((ok)) || echo "bench: ($n) figure void: $why" >&2
}

# The hostile clients: one python3 process, BENCH_HOSTILE threads per tenant, each on its own
# keep-alive connection POSTing the rule again and again (0.1 s after each answer, ignoring
# Retry-After) until $WORK/stop exists; one line per answer ("TENANT STATUS ERROR_CODE SECONDS")
# in $WORK/hostile.log. A thread per client rather than a curl process per request: the
# clients share the machine with the server, and forking 60 processes a second would measure
# them, not the hub.
hostile() {
    BASE=$BASE WORK=$WORK RULE=$HOSTILE_RULE N=$HOSTILE KEYS="demo=$KEY_DEMO rival=$KEY_RIVAL" \
        python3 - <<'PY'
import http.client, json, os, threading, time
base, work, rule, n = os.environ["BASE"], os.environ["WORK"], os.environ["RULE"], int(os.environ["N"])
host, port = base.split("//")[1].split(":")
keys = dict(kv.split("=", 1) for kv in os.environ["KEYS"].split())
lock, out = threading.Lock(), open(os.path.join(work, "hostile.log"), "a")
def client(tenant, key):
    conn = None
    while not os.path.exists(os.path.join(work, "stop")):
        t0 = time.monotonic()
        try:
            conn = conn or http.client.HTTPConnection(host, int(port), timeout=700)
            conn.request("POST", "/v1/%s/segments" % tenant, body=rule, headers={
                "Authorization": "Bearer " + key, "Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            status = r.status
            try:
                err = json.loads(body).get("error") or "-"
            except ValueError:
                err = "-"
        except Exception as e:
            conn, status, err = None, 0, type(e).__name__
        with lock:
            out.write("%s %s %s %.3f\n" % (tenant, status, err, time.monotonic() - t0))
            out.flush()
        time.sleep(0.1)
threads = [threading.Thread(target=client, args=(t, keys[t])) for t in keys for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
PY
}

LOAD_AT_Q=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
webhook q
WAL_Q=$(stat -c %s "$DATA/stagedoor.db-wal" 2>/dev/null || echo 0)
curl -s -m 10 "$BASE/metrics" >"$WORK/metrics-q.txt" || true
sleep 0.5 # the server flushes its log 4 times a second
grep 'client=web .*route=ingest ' "$LOG" | sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' >"$WORK/server-q.txt"
rm -f "$WORK/stop"
hostile &
HOSTILE_PIDS+=($!)
sleep 2
webhook h
WAL_H=$(stat -c %s "$DATA/stagedoor.db-wal" 2>/dev/null || echo 0)
curl -s -m 10 "$BASE/metrics" >"$WORK/metrics-h.txt" || true
sleep 0.5
grep 'client=web .*route=ingest ' "$LOG" | sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' |
    tail -n +"$(($(wc -l <"$WORK/server-q.txt") + 1))" >"$WORK/server-h.txt"
echo "bench: stopping the hostile clients (each finishes its request in flight)" >&2
stop_hostile
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$BASE/healthz") || true

# ---- summary ------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
show() {
    local n=$1 ok rps p50 p99 max why
    ok=F_${n}_ok rps=F_${n}_rps p50=F_${n}_p50 p99=F_${n}_p99 max=F_${n}_max why=F_${n}_why
    printf '%-44s %8s %9s %9s %9s' "$2" "${!rps}" "${!p50}" "${!p99}" "${!max}"
    if [[ ${!ok} == 1 ]]; then
        echo
    else
        echo "   VOID: ${!why}"
    fi
}
echo
echo "stagedoor hostile-segments bench — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs (wrk and" \
    "the hostile clients share them), load average at the start: $LOAD_BEFORE, at (q): $LOAD_AT_Q"
echo "serve args: ${BENCH_SERVE_ARGS:-(none)}; webhook: 1 sale/request, $CONNS connections," \
    "${DELAY_MS} ms pause before each request, ${SECONDS_PER}s; hostile: $HOSTILE clients x 2 tenants, 40-leaf spend rule"
printf '%-44s %8s %9s %9s %9s\n' "figure" "req/s" "p50 ms" "p99 ms" "max ms"
show q "(q) webhook alone (reference)"
show h "(h) webhook with hostile segment requests"
if [[ $F_q_ok == 1 && $F_h_ok == 1 ]]; then
    echo "(h)/(q): p50 $(ratio "$F_h_p50" "$F_q_p50")x, p99 $(ratio "$F_h_p99" "$F_q_p99")x," \
        "req/s $(ratio "$F_h_rps" "$F_q_rps")x"
    echo "p99 (h) $F_h_p99 ms against the aim of $AIM_MS ms:" \
        "$(awk -v p="$F_h_p99" -v a="$AIM_MS" 'BEGIN{print (p < a) ? "met" : "NOT met"}')"
fi
echo "hostile answers (tenant status error-code: count):"
awk '{c[$1 " " $2 " " $3]++} END {for (k in c) print "  " k ": " c[k]}' "$WORK/hostile.log" 2>/dev/null | sort
echo "WAL file after (q): $((WAL_Q / 1048576)) MiB, after (h): $((WAL_H / 1048576)) MiB" \
    "(segment computations hold read snapshots, so checkpoints cannot reset it meanwhile)"
# The hub's own view: each webhook's duration from its log line (headers in -> answer queued),
# without the client's and the machine's scheduling.
pct() { # FILE -> "p50 p99 max" in ms
    sort -n "$1" | awk '{v[NR] = $1} END {if (NR == 0) {print "- - -"; exit}
        i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
        printf "%.2f %.2f %.2f", v[i50] / 1000, v[i99] / 1000, v[NR] / 1000}'
}
read -r SQ50 SQ99 SQMAX <<<"$(pct "$WORK/server-q.txt")"
read -r SH50 SH99 SHMAX <<<"$(pct "$WORK/server-h.txt")"
echo "server side (log duration_us), p50 / p99 / max ms: (q) $SQ50 / $SQ99 / $SQMAX," \
    "(h) $SH50 / $SH99 / $SHMAX; p99 (h)/(q) $(ratio "$SH99" "$SQ99")x"
# Group commits (fsync included) of each figure, from the /metrics histogram taken after (q)
# and after (h): where a slow webhook's time went, the disk or the CPU.
commits() { # FILE → "le count" lines of the cumulative commit histogram
    sed -n 's/^stagedoor_store_commit_duration_seconds_bucket{le="\([^"]*\)"} \([0-9]*\)$/\1 \2/p' "$1"
}
if [[ -s $WORK/metrics-q.txt && -s $WORK/metrics-h.txt ]]; then
    echo "group commits slower than 10 / 50 ms:" "$(commits "$WORK/metrics-q.txt" | awk '
        {c[$1] = $2} END {printf "(q) %d / %d of %d", c["+Inf"] - c["0.01"], c["+Inf"] - c["0.05"], c["+Inf"]}')," \
        "$(paste <(commits "$WORK/metrics-q.txt") <(commits "$WORK/metrics-h.txt") | awk '
        {c[$1] = $4 - $2} END {printf "(h) %d / %d of %d", c["+Inf"] - c["0.01"], c["+Inf"] - c["0.05"], c["+Inf"]}')"
fi
echo "GET /healthz after the run: $code"

status=0
[[ $F_q_ok == 1 && $F_h_ok == 1 ]] || status=1
exit $status
