#!/usr/bin/env bash
# bench/s360_link.sh — what an `s360` instance costs a large import of customers of another
# source (a CSV, another CRM) when the tenant has no customer linked to an S-360 contact:
#
#   reference   the tenant has no connector;
#   linked      one s360 instance as configured by default (push_contacts on, create_contacts
#               off): each customer change costs one profile look-up in the writer's
#               transaction (sd_outbox_change_linked) and queues nothing;
#   queue_all   the same instance with create_contacts on: every customer change queues one
#               outbox item in the same commit (the cost the look-up avoids; the items wait on a
#               call quota of 1 per minute, so no delivery runs meanwhile).
#
# Each mode: a fresh data dir, N customers (BENCH_CUSTOMERS, default 20000) ingested through
# POST /v1/{client}/ingest in batches of 1000 (each answer comes after its commit); prints the
# seconds, customers per second, the server's CPU seconds (steadier than the wall time on a
# shared machine), the outbox items stored, and the ratios to the reference run.
# Environment: BENCH_BIN (else build/release/stagedoor, built), BENCH_CUSTOMERS, BENCH_KEEP=1.
# Exit: 0 figures printed, 1 a run failed, 2 setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_CUSTOMERS:-20000}
KEEP=${BENCH_KEEP:-0}
CLIENT=bench

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
for tool in sqlite3 python3; do
    command -v "$tool" >/dev/null || die "'$tool' not found"
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stagedoor-s360link.XXXXXX")
SERVER_PID=
cleanup() {
    stop_server
    if [[ $KEEP == 1 ]]; then
        echo "bench: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
bench_binary

run_mode() { # mode → prints "seconds items"
    local mode=$1 data="$WORK/$1" log="$WORK/$1.log" key settings base=
    mkdir -p "$data"
    "$BIN" tenant create "$CLIENT" --data "$data" >"$WORK/setup.log" 2>&1 ||
        die "tenant create failed: $(cat "$WORK/setup.log")"
    "$BIN" tenant limits "$CLIENT" --per-minute 100000000 --burst 100000000 --data "$data" \
        >>"$WORK/setup.log" 2>&1 || die "tenant limits failed"
    key=$("$BIN" key create "$CLIENT" --env test --data "$data" 2>>"$WORK/setup.log" | tail -n 1)
    settings='{"institution":"myvenue","api_base":"https://myvenue.ws.example","event_city":"Bern",'
    settings+='"operator":"o","partner":"p","secret":"s","quota_minute_calls":1'
    case $mode in
    reference) settings= ;;
    linked) settings+='}' ;;
    queue_all) settings+=',"create_contacts":true}' ;;
    esac
    if [[ -n $settings ]]; then
        "$BIN" connector add "$CLIENT" --type s360 --env test --settings "$settings" \
            --data "$data" >>"$WORK/setup.log" 2>&1 || die "connector add failed: $(tail -n 5 "$WORK/setup.log")"
    fi
    "$BIN" serve --data "$data" --listen 127.0.0.1:0 >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        base=$(sed -n 's/.*listening on \(http:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$log" | head -n 1)
        [[ -n $base ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited: $(tail -n 20 "$log")"
        sleep 0.1
    done
    [[ -n $base ]] || die "server did not report its address"
    local secs
    secs=$(python3 - "$base" "$CLIENT" "$key" "$N" <<'EOF'
import http.client, json, sys, time
from urllib.parse import urlparse
base, client, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
t0 = time.monotonic()
for start in range(0, n, 1000):
    batch = [{"customer_id": "csv-%07d" % i, "email": "p%07d@example.org" % i,
              "first_name": "F%d" % i, "last_name": "L%d" % i, "street": "Gasse %d" % i,
              "post_code": "8%03d" % (i % 1000)} for i in range(start, min(n, start + 1000))]
    c.request("POST", "/v1/%s/ingest" % client, body=json.dumps({"customers": batch}),
              headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    if r.status != 202:
        sys.stderr.write("bench: ingest answered %d at customer %d: %s\n"
                         % (r.status, start, body[:200]))
        print("failed")
        sys.exit(0)
print("%.3f" % (time.monotonic() - t0))
EOF
    ) || { stop_server; exit 1; }
    local cpu # the server's CPU seconds (user + system) for the whole run
    cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' \
        "/proc/$SERVER_PID/stat")
    stop_server
    echo "$secs $(sqlite3 "$data/stagedoor.db" "SELECT count(*) FROM outbox_items") $cpu"
}

read -r REF_S REF_ITEMS REF_CPU <<<"$(run_mode reference)"
read -r LINK_S LINK_ITEMS LINK_CPU <<<"$(run_mode linked)"
read -r ALL_S ALL_ITEMS ALL_CPU <<<"$(run_mode queue_all)"
python3 - "$N" "$REF_S" "$REF_ITEMS" "$REF_CPU" "$LINK_S" "$LINK_ITEMS" "$LINK_CPU" "$ALL_S" \
    "$ALL_ITEMS" "$ALL_CPU" <<'EOF'
import sys
n = int(sys.argv[1])
ref, ref_cpu = float(sys.argv[2]), float(sys.argv[4])
rc = 0
for name, s, items, cpu in (("reference",) + tuple(sys.argv[2:5]),
                            ("linked",) + tuple(sys.argv[5:8]),
                            ("queue_all",) + tuple(sys.argv[8:11])):
    if s == "failed":
        print("%-10s failed (an ingest request was refused; see above), %s outbox items"
              % (name, items))
        rc = 1
        continue
    s = float(s)
    print("%-10s %d customers in %.2f s (%.0f/s), server CPU %.2f s, %s outbox items; "
          "%.2fx the reference time, %.2fx its CPU"
          % (name, n, s, n / s, float(cpu), items, s / ref, float(cpu) / ref_cpu))
sys.exit(rc)
EOF
