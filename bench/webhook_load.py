#!/usr/bin/env python3
"""bench/webhook_load.py — steady webhook load for bench/csv_import.sh: one sale per request at
a fixed rate, each on a keep-alive connection, until a duration has passed or a stop file
exists; prints one JSON line {"sent", "ok", "failed", "p50_ms", "p99_ms", "max_ms"}.

    python3 bench/webhook_load.py --base http://127.0.0.1:PORT --client bench --key KEY \\
        --event EVT-00001 --prefix WH-A- --rate 50 [--seconds 5 | --stop-file PATH]

Requests are sent on schedule (open loop): request i is due at start + i/rate, and its latency
runs from when it was due, so a stalled server shows as latency, not as a lower rate. Several
sender threads (a request that waits does not delay the next ones). A failure is any answer but
202, or no answer within --timeout seconds. Stdlib only.
"""

import argparse
import http.client
import json
import os
import threading
import time
from urllib.parse import urlparse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--event", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=0.0)
    ap.add_argument("--stop-file", default="")
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    u = urlparse(a.base)
    path = "/v1/%s/ingest" % a.client
    lock = threading.Lock()
    lat, failed = [], [0]
    nxt = [0]
    start = time.monotonic() + 0.05
    stop = [False]

    def done_yet(now):
        if a.seconds > 0 and now - start >= a.seconds:
            return True
        return bool(a.stop_file) and os.path.exists(a.stop_file)

    def sender():
        conn = None
        while True:
            with lock:
                if stop[0]:
                    break
                i = nxt[0]
                nxt[0] += 1
            due = start + i / a.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            if done_yet(time.monotonic()):
                with lock:
                    stop[0] = True
                break
            body = json.dumps({"sales": [{
                "invoice_number": "%s%08d" % (a.prefix, i), "event_id": a.event,
                "customer_id": "ANON", "purchase_datetime": "2025-04-15T11:08:42Z",
                "ticket_category": "regular", "quantity": 1, "sales_price": "20.00",
                "currency": "EUR"}]})
            ok = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
                conn.request("POST", path, body=body, headers={
                    "Authorization": "Bearer " + a.key, "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 202
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            ms = (time.monotonic() - due) * 1000.0
            with lock:
                if ok:
                    lat.append(ms)
                else:
                    failed[0] += 1
        if conn is not None:
            conn.close()

    ts = [threading.Thread(target=sender, daemon=True) for _ in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lat.sort()

    def pct(p):
        if not lat:
            return None
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1)
    print(json.dumps({"sent": len(lat) + failed[0], "ok": len(lat), "failed": failed[0],
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99),
                      "max_ms": round(lat[-1], 1) if lat else None}))


if __name__ == "__main__":
    main()
