#!/usr/bin/env python3
"""outbox_bench.py — the figures of bench/outbox.sh (run that; it builds the binary).

    outbox_bench.py --bin BIN [--items N] [--seconds S] [--work DIR]
    outbox_bench.py receiver            (internal: the contact system, in its own process)

The receiver is a local contact system that answers every POST /contacts at once with 201
{"contact_id": …}; GET /count says how many POSTs it answered, GET /reset zeroes it. It runs in
its own process so that neither measurement shares a Python interpreter with it.

1. Ceiling: SD_OUTBOX_THREADS (4) clients POST a contact payload to the receiver for S seconds,
   each request on a new connection (as the hub's libcurl exchanges are): the receiver's own
   request rate, the most any sender can get from it on this machine.
2. Outbox: a hub (the binary under test, with the test connectors compiled in) with one
   test_contacts instance pointed at the receiver; N customers are ingested through the webhook
   in batches of 500 (each customer change queues one upsert_contact item in the same
   transaction); the figure is N / (time from the first ingest request until the receiver has
   answered N POSTs). The ingest time alone is printed too, and the first delivery's latency:
   from the first ingest request's 202 (its items committed) until the receiver has answered
   a POST (polled every 5 ms).
3. The ratio outbox / ceiling.

The hub, its CLI and the first-arrival watch come from bench/benchlib.py.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchlib import FirstArrival, Hub, bench_tenant, run_threads

THREADS = 4  # SD_OUTBOX_THREADS
BATCH = 500


def receiver():
    lock = threading.Lock()
    state = {"n": 0}

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, code, obj):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with lock:
                if self.path == "/reset":
                    state["n"] = 0
                n = state["n"]
            self._send(200, {"n": n})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            with lock:
                state["n"] += 1
                n = state["n"]
            self._send(201, {"contact_id": "r-%d" % n})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    srv.request_queue_size = 256
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = json.loads(r.read() or b"null")
    c.close()
    return body


def ceiling(port, seconds):
    payload = json.dumps({"contact_id": None, "source": "webhook", "customer_id": "C-1",
                          "customer": {"customer_id": "C-1", "email": "c1@example.org",
                                       "first_name": "Ada", "last_name": "Lovelace"}}).encode()
    counts = [0] * THREADS
    errors = [0] * THREADS
    stop = time.monotonic() + seconds

    def run(i):
        while time.monotonic() < stop:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", "/contacts", body=payload,
                          headers={"Content-Type": "application/json",
                                   "Idempotency-Key": "k-%d-%d" % (i, counts[i])})
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 201:
                    counts[i] += 1
                else:
                    errors[i] += 1
            except OSError:
                errors[i] += 1

    elapsed = run_threads(THREADS, run)
    return sum(counts) / elapsed, sum(errors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="stagedoor-outboxbench.")
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)

    rx = subprocess.Popen([sys.executable, os.path.abspath(__file__), "receiver"],
                          stdout=subprocess.PIPE, text=True)
    hub = None
    try:
        rx_port = int(rx.stdout.readline())
        ceil, ceil_err = ceiling(rx_port, a.seconds)
        if ceil_err:
            print("bench: %d receiver requests failed during the ceiling run" % ceil_err,
                  file=sys.stderr)

        key = bench_tenant(a.bin, data)
        hub = Hub(a.bin, data, work)
        st, out = hub.call("POST", "/admin/v1/tenants/bench/connectors",
                           {"type": "test_contacts", "environment": "test",
                            "settings": {"url": "http://127.0.0.1:%d" % rx_port}})
        if st != 201:
            sys.exit("bench: connector create answered %d: %s" % (st, out))
        get(rx_port, "/reset")

        first = FirstArrival(lambda: get(rx_port, "/count")["n"] >= 1)
        t0 = time.monotonic()
        t_first_202 = None
        for start in range(0, a.items, BATCH):
            cs = [{"customer_id": "C-%07d" % i, "email": "c%d@example.org" % i,
                   "first_name": "Bench", "last_name": "Customer %d" % i}
                  for i in range(start, min(a.items, start + BATCH))]
            st, out = hub.call("POST", "/v1/bench/ingest", {"customers": cs}, key)
            if st != 202:
                sys.exit("bench: ingest answered %d: %s" % (st, out))
            t_first_202 = t_first_202 or time.monotonic()
        t_ingest = time.monotonic() - t0
        deadline = time.monotonic() + 1800
        n = 0
        while time.monotonic() < deadline:
            n = get(rx_port, "/count")["n"]
            if n >= a.items:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        if n < a.items:
            sys.exit("bench: only %d of %d items arrived within 30 min" % (n, a.items))
        first.stop()
        if first.at is None:
            sys.exit("bench: the watch missed the first delivery")
        first_ms = max(0.0, first.at - t_first_202) * 1000
        rate = a.items / elapsed
        print("outbox bench (%d items, %d worker threads, 1 test_contacts instance)"
              % (a.items, THREADS))
        print("  receiver ceiling (%d clients, new connection per request): %8.0f req/s"
              % (THREADS, ceil))
        print("  outbox, change -> item -> delivered:                      %8.0f items/s"
              % rate)
        print("    (ingest of the %d changes with their items took %.2f s; all delivered "
              "after %.2f s)" % (a.items, t_ingest, elapsed))
        print("    first delivery %.1f ms after the first ingest's 202" % first_ms)
        print("  ratio outbox / ceiling: %.3f" % (rate / ceil if ceil else 0.0))
    finally:
        if hub:
            hub.stop()
        rx.kill()
        rx.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "receiver":
        receiver()
    else:
        main()
