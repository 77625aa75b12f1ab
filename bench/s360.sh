#!/usr/bin/env bash
# bench/s360.sh — the s360 connector's inbound doors under S-360's load, next to the plain
# webhook ingest measured in the same run on the same server.
#
# One run, on a fresh temporary data dir: build (release) if needed, `tenant create`, limits
# raised out of the way, a TEST key, `serve --listen 127.0.0.1:0`, one s360 instance (its
# contacts and orders URLs). Then bench/s360_load.py (Python standard library, the simulator's
# data generator) measures for BENCH_SECONDS per figure, in alternating rounds with
# BENCH_CONNECTIONS client threads:
#   (r) POST /v1/bench/ingest {"customers": [50]}       — the reference
#   (c) POST …/myvenue/contacts [50 S-360 contacts]     — 200 with 50 applied
#   (o) POST …/myvenue/orders [50 S-360 orders]         — 200, nothing quarantined
# as payloads/s (S-360 sends 50 objects per payload; the target is 1 payload/s per stream), and
# BENCH_TRIALS times the time from an order webhook to the buyer's segment membership next to the
# same through the plain ingest. Afterwards the server is stopped and the stored customers and
# raw payloads are checked against what was accepted.
#
# Environment (defaults): BENCH_SECONDS (10), BENCH_CONNECTIONS (4), BENCH_TRIALS (20),
# BENCH_BIN (build/release/stagedoor, built if unset), BENCH_KEEP=1 keeps the temp dir.
# Exit: 0 every figure valid and the counts match, 1 a figure was void or a count differs,
# 2 setup failed. Wall time never fails the run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-4}
TRIALS=${BENCH_TRIALS:-20}
KEEP=${BENCH_KEEP:-0}
CLIENT=bench

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

bench_need sqlite3 python3
bench_workdir s360bench
bench_binary

bench_tenant "$CLIENT"
ADD=$("$BIN" connector add "$CLIENT" --type s360 --env test --settings \
    '{"institution":"myvenue","api_base":"https://myvenue.ws.example","event_city":"Bern","push_contacts":false}' \
    --data "$DATA" 2>>"$WORK/setup.log") || die "connector add failed: $(cat "$WORK/setup.log")"
CONTACTS=$(sed -n 's/^inbound stream contacts .*: \(\/in\/.*\)$/\1/p' <<<"$ADD" | head -n 1)
ORDERS=$(sed -n 's/^inbound stream orders .*: \(\/in\/.*\)$/\1/p' <<<"$ADD" | head -n 1)
[[ -n $CONTACTS && -n $ORDERS ]] || die "connector add printed no stream URLs: $ADD"

bench_serve

RESULT=$(python3 "$ROOT/bench/s360_load.py" --base "$BASE" --client "$CLIENT" --key "$KEY" \
    --contacts "$CONTACTS" --orders "$ORDERS" --seconds "$SECONDS_EACH" \
    --connections "$CONNS" --trials "$TRIALS") || {
    echo "$RESULT"
    die "load driver failed"
}
echo "$RESULT"
stop_server

read -r R_ACCEPTED C_ACCEPTED O_ACCEPTED PAYLOADS <<<"$(sed -n 's/^counts //p' <<<"$RESULT")"
STORED=$(sqlite3 "$DATA/stagedoor.db" "SELECT count(*) FROM customers")
SALES=$(sqlite3 "$DATA/stagedoor.db" "SELECT count(*) FROM sales WHERE source = 's360'")
RAW=$(sqlite3 "$DATA/stagedoor.db" "SELECT count(*) FROM inbound_raw")
rc=0
# the segment trials add TRIALS contacts and sales on each path, and one payload per webhook
if ((STORED != R_ACCEPTED + C_ACCEPTED + 2 * TRIALS)); then
    echo "bench: stored customers $STORED != accepted $((R_ACCEPTED + C_ACCEPTED + 2 * TRIALS))" >&2
    rc=1
fi
if ((SALES != O_ACCEPTED + TRIALS)); then
    echo "bench: stored s360 sales $SALES != accepted $((O_ACCEPTED + TRIALS))" >&2
    rc=1
fi
if ((RAW != PAYLOADS + 2 * TRIALS)); then
    echo "bench: stored raw payloads $RAW != accepted $((PAYLOADS + 2 * TRIALS))" >&2
    rc=1
fi
grep -q '^void' <<<"$RESULT" && rc=1
echo "stored: $STORED customers, $SALES s360 sales, $RAW raw payloads (match: $([[ $rc == 0 ]] && echo yes || echo no))"
exit $rc
