#!/usr/bin/env bash
# bench/inbound.sh — vendor webhook payloads per second through the raw-first door
# (POST /in/{connector_id}/{token}), next to the plain webhook ingest (POST /v1/{client}/ingest)
# of the same records, measured in the same run on the same server.
#
# One run, on a fresh temporary data dir: build (release) if needed, `tenant create`, limits
# raised out of the way, a TEST key, `serve --listen 127.0.0.1:0`, one webhook_in connector
# (kind customers, a mapping of S-360-like contact objects). Then, for BENCH_SECONDS each and
# with BENCH_CONNECTIONS client threads in 4 alternating rounds (bench/inbound_load.py, Python
# standard library):
#   (r) POST /v1/bench/ingest {"customers": [50 records]}      — the reference
#   (i) POST /in/<id>/<token> [50 contact objects]             — the raw-first door
# Every payload holds BENCH_OBJECTS (50, S-360's batch size) new, unique customers; both paths
# store the same shape of record. Only 202 (r) and 200 with every object applied (i) count; any
# other answer voids the figure. Afterwards the server is stopped (SIGTERM) and the stored
# customers and raw payloads are counted with sqlite3 and compared with the accepted ones.
#
# Environment (defaults): BENCH_SECONDS (10), BENCH_CONNECTIONS (8), BENCH_OBJECTS (50),
# BENCH_BIN (build/release/stagedoor, built if unset), BENCH_SERVE_ARGS extra `serve` arguments,
# BENCH_KEEP=1 keeps the temp dir.
# Exit: 0 both figures valid and the counts match, 1 a figure was void or a count differs,
# 2 setup failed. Wall time never fails the run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-8}
OBJECTS=${BENCH_OBJECTS:-50}
KEEP=${BENCH_KEEP:-0}
CLIENT=bench

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

bench_need sqlite3 python3
bench_workdir inboundbench
bench_binary

bench_tenant "$CLIENT"
MAPPING='{"fields":{"contactNumber":"customer_id","mail":"email","firstName":"first_name","lastName":"last_name"},"unmapped":"drop"}'
ADD=$("$BIN" connector add "$CLIENT" --type webhook_in --env test \
    --settings '{"kind":"customers"}' --mapping "$MAPPING" --data "$DATA" 2>>"$WORK/setup.log") ||
    die "connector add failed: $(cat "$WORK/setup.log")"
DOOR=$(sed -n 's/.*\(\/in\/con_[0-9a-f]*\/[0-9a-f]*\).*/\1/p' <<<"$ADD" | head -n 1)
[[ -n $DOOR ]] || die "connector add printed no door: $ADD"

bench_serve

RESULT=$(python3 "$ROOT/bench/inbound_load.py" --base "$BASE" --client "$CLIENT" --key "$KEY" \
    --door "$DOOR" --seconds "$SECONDS_EACH" --connections "$CONNS" --objects "$OBJECTS") || {
    echo "$RESULT"
    die "load driver failed"
}
echo "$RESULT"
stop_server

read -r R_ACCEPTED I_ACCEPTED I_PAYLOADS <<<"$(sed -n 's/^counts //p' <<<"$RESULT")"
STORED=$(sqlite3 "$DATA/stagedoor.db" "SELECT count(*) FROM customers")
RAW=$(sqlite3 "$DATA/stagedoor.db" "SELECT count(*) FROM inbound_raw")
rc=0
if ((STORED != R_ACCEPTED + I_ACCEPTED)); then
    echo "bench: stored customers $STORED != accepted $((R_ACCEPTED + I_ACCEPTED))" >&2
    rc=1
fi
if ((RAW != I_PAYLOADS)); then
    echo "bench: stored raw payloads $RAW != accepted $I_PAYLOADS" >&2
    rc=1
fi
grep -q '^void' <<<"$RESULT" && rc=1
echo "stored: $STORED customers, $RAW raw payloads (match: $([[ $rc == 0 ]] && echo yes || echo no))"
exit $rc
