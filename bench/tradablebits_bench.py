#!/usr/bin/env python3
"""tradablebits_bench.py — the figures of bench/tradablebits.sh (run that; it builds the binary).

    tradablebits_bench.py --bin BIN [--fans N] [--tickets N] [--seconds S] [--work DIR]

The Tradable Bits simulator (tests/sim/tradablebits) runs in its own process with no rate
limit (--rate-limit 0: it answers at once). Each figure has a reference measured in the same
run against the same simulator by a trivial client (the simulator's own request rate):

1. Tickets pushed: a hub with one tradablebits instance (push_tickets on, pulls off) gets N
   sales through the webhook in batches of 500 (with their event and 50 customers); the figure
   is N / (time from the first ingest request until the simulator holds the N-th new ticket),
   and N / bulk calls made (tickets per call), and the first batch's latency: from the first
   ingest request's 202 (its sales and their items committed) until the simulator holds a new
   ticket (polled every 5 ms). Reference: 4 clients (the outbox's worker threads) POST
   100-ticket bulk calls of new tickets for S seconds.
2. Fans pulled: a run of an instance with pull_fans only over the account's N fans; the figure
   is N / the run's time. Reference: one client pages the same feed (fans/updated) to its end.
3. The ratios hub / reference.

The hub, its CLI and the first-arrival watch come from bench/benchlib.py.
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse

from benchlib import FirstArrival, Hub, bench_tenant, run_threads

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEY, SECRET = "tb-test-key", "tb-test-secret"
THREADS = 4
BATCH = 500


def serve_sim(fans, activities=0):
    """(internal) The simulator in its own process; stdin takes "calls OP" (answers the number
    of calls of OP recorded) and "clear" (empties the record)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from sim.tradablebits import Simulator
    sim = Simulator(seed="bench", fans=fans, tickets=1, activities=activities, rate_limit=0,
                    keys={KEY: {"secret": SECRET, "scopes": {"crm", "segments"}}}).start()
    print("listening on %s" % sim.base_url, flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["calls"]:
            print(len(sim.calls(words[1])), flush=True)
        elif words[:1] == ["clear"]:
            sim.clear_calls()
            print("ok", flush=True)
    sim.stop()


class Sim:
    def __init__(self, fans, activities=0):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "sim", str(fans),
                                   str(activities)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*)", line)
        if not m:
            sys.exit("bench: the simulator did not start: %r" % line)
        self.port, self.base = int(m.group(1)), m.group(2)
        self.url = "http://127.0.0.1:%d%s" % (self.port, self.base)

    def call(self, method, path, query=None, form=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        p = self.base.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
        body = urllib.parse.urlencode(form, doseq=True) if form is not None else None
        h = {"Api-Key": KEY, "Api-Secret": SECRET}
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, p, body=body, headers=h)
        r = c.getresponse()
        out = json.loads(r.read() or b"null")
        c.close()
        if r.status != 200:
            sys.exit("bench: simulator %s %s answered %d: %s" % (method, path, r.status, out))
        return out

    def max_ticket_id(self):
        after, top = None, None
        while True:
            q = {"limit": 1000, "include_deleted": "true"}
            if after is not None:
                q["min_ticket_id"] = after
            data = self.call("GET", "/crm/tickets", q)["data"]
            if not data:
                return top
            top = after = data[-1]["ticket_id"]

    def has_ticket_after(self, tid):
        q = {"limit": 1, "include_deleted": "true", "min_ticket_id": tid}
        return bool(self.call("GET", "/crm/tickets", q)["data"])

    def ask(self, what):
        self.p.stdin.write(what + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def stop(self):
        self.p.stdin.close()
        self.p.terminate()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()


def ticket(i, tag):
    return {"ticket_key": "ref-%s-%d" % (tag, i), "first_name": "Ref", "last_name": "Client",
            "email": "ref%d@example.org" % (i % 50), "purchase_timestamp": "2025-04-15 11:08:42",
            "paid_amount": "10.00", "num_seats": "1", "event_date": "2026-05-01T19:30:00",
            "event_name": "Bench Night", "event_key": "EV-REF"}


def ref_push(sim, seconds):
    counts = [0] * THREADS
    stop = time.monotonic() + seconds

    def run(i):
        n = 0
        while time.monotonic() < stop:
            rows = [json.dumps(ticket(n * 100 + k, "%d" % i)) for k in range(100)]
            sim.call("POST", "/crm/tickets/bulk", form={"tickets": rows})
            n += 1
            counts[i] += 100
    elapsed = run_threads(THREADS, run)
    return sum(counts) / elapsed


def ref_pull(sim):
    t0 = time.monotonic()
    n, key = 0, None
    while True:
        q = {"min_time_key": key} if key else {"last_update_date": "2000-01-01"}
        out = sim.call("GET", "/crm/fans/updated", q)
        n += len(out["data"])
        if len(out["data"]) < 1000:
            break
        key = out["meta"]["max_fan_time_key"]
    return n, n / (time.monotonic() - t0)


def ref_activities(sim):
    """One client paging the activities list as the connector does (200, with details)."""
    t0 = time.monotonic()
    n, after = 0, None
    while True:
        q = {"limit": "200", "include_details": "true"}
        if after is not None:
            q["min_activity_id"] = str(after)
        out = sim.call("GET", "/crm/activities", q)
        n += len(out["data"])
        if len(out["data"]) < 200:
            break
        after = out["data"][-1]["activity_id"]
    return n, n / (time.monotonic() - t0)


def run_pull(call, base, **settings):
    """Create an instance with settings over base, run it, wait for it; (seconds, status)."""
    st, out = call("POST", "/admin/v1/tenants/bench/connectors",
                   {"type": "tradablebits", "environment": "test", "schedule": "manual",
                    "settings": dict(base, **settings)})
    if st != 201:
        sys.exit("bench: connector create answered %d: %s" % (st, out))
    cid = out["connector_id"]
    t1 = time.monotonic()
    st, out = call("POST", "/admin/v1/tenants/bench/connectors/%s/run" % cid, {})
    if st != 202:
        sys.exit("bench: run answered %d: %s" % (st, out))
    stt = None
    while time.monotonic() - t1 < 1800:
        time.sleep(0.05)
        st, q = call("GET", "/admin/v1/tenants/bench/connectors/" + cid)
        stt = q["status"]
        if stt["state"] not in ("running", "never_run"):
            break
    if not stt or stt["state"] != "ok":
        sys.exit("bench: the pull run did not end ok: %r" % (stt,))
    return time.monotonic() - t1, stt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fans", type=int, default=20000)
    ap.add_argument("--tickets", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--activities", type=int, default=20000)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="stagedoor-tbbench.")
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    sim = Sim(a.fans, a.activities)
    hub = None
    try:
        ref_tps = ref_push(sim, a.seconds)
        n_ref_fans, ref_fps = ref_pull(sim)
        n_ref_acts, ref_aps = ref_activities(sim)

        key = bench_tenant(a.bin, data)
        hub = Hub(a.bin, data, work)
        call = hub.call

        base = {"base_url": sim.url, "api_key": KEY, "api_secret": SECRET, "currency": "CAD",
                "event_city": "Vancouver", "backfill_start": "2000-01-01"}

        # 1. push
        st, out = call("POST", "/admin/v1/tenants/bench/connectors",
                       {"type": "tradablebits", "environment": "test", "schedule": "manual",
                        "settings": dict(base, pull_fans=False, pull_tickets=False,
                                         push_tickets=True)})
        if st != 201:
            sys.exit("bench: connector create answered %d: %s" % (st, out))
        push_id = out["connector_id"]
        top = sim.max_ticket_id()
        sim.ask("clear")
        ev = {"event_id": "EV-B", "title": "Bench Night", "date": "2026-05-01",
              "time": "19:30:00", "venue": "Arena", "hall": "Main", "capacity": 1000,
              "city": "Vancouver"}
        custs = [{"customer_id": "C-%d" % i, "email": "c%d@example.org" % i,
                  "first_name": "Bench", "last_name": "Buyer %d" % i} for i in range(50)]
        first = FirstArrival(lambda: sim.has_ticket_after(top))
        t0 = time.monotonic()
        t_first_202 = None
        for start in range(0, a.tickets, BATCH):
            sales = [{"invoice_number": "INV-%07d" % i, "event_id": "EV-B",
                      "customer_id": "C-%d" % (i % 50), "purchase_datetime":
                      "2025-04-15T11:08:42Z", "ticket_category": "regular", "quantity": 1,
                      "sales_price": "10.00", "currency": "CAD"}
                     for i in range(start, min(a.tickets, start + BATCH))]
            body = {"sales": sales}
            if start == 0:
                body.update(events=[ev], customers=custs)
            st, out = call("POST", "/v1/bench/ingest", body, key)
            if st != 202:
                sys.exit("bench: ingest answered %d: %s" % (st, out))
            t_first_202 = t_first_202 or time.monotonic()
        t_ingest = time.monotonic() - t0
        deadline = time.monotonic() + 1800
        while not sim.has_ticket_after(top + a.tickets - 1):
            if time.monotonic() > deadline:
                sys.exit("bench: the tickets did not all arrive within 30 min")
            time.sleep(0.05)
        t_push = time.monotonic() - t0
        first.stop()
        if first.at is None:
            sys.exit("bench: the watch missed the first ticket")
        first_ms = max(0.0, first.at - t_first_202) * 1000
        calls = int(sim.ask("calls tickets_bulk"))

        # 2. pull: fans, then (another instance, same source) activities onto those fans
        t_pull, stt = run_pull(call, base, pull_tickets=False)
        t_act, _ = run_pull(call, base, pull_tickets=False, pull_fans=False,
                            pull_activities=True)
        n_fans = stt["last_run_stats"]["records_in"]

        tps = a.tickets / t_push
        fps = n_fans / t_pull
        print("tradablebits bench (simulator without rate limit, %d fans, %d tickets pushed)"
              % (a.fans, a.tickets))
        print("  push: %8.0f tickets/s  (ingest %.2f s, all in Tradable Bits after %.2f s)"
              % (tps, t_ingest, t_push))
        print("        %8.1f tickets per call (%d bulk calls)" % (a.tickets / calls, calls))
        print("        first batch in Tradable Bits %.1f ms after the first ingest's 202"
              % first_ms)
        print("  reference, %d clients posting 100-ticket bulk calls: %8.0f tickets/s"
              % (THREADS, ref_tps))
        print("  ratio push / reference: %.3f" % (tps / ref_tps if ref_tps else 0.0))
        print("  pull: %8.0f fans/s  (%d fans in %.2f s)" % (fps, n_fans, t_pull))
        print("  reference, one client paging fans/updated:          %8.0f fans/s (%d fans)"
              % (ref_fps, n_ref_fans))
        print("  ratio pull / reference: %.3f" % (fps / ref_fps if ref_fps else 0.0))
        aps = a.activities / t_act
        print("  activities: %8.0f activities/s  (%d activities onto their fans in %.2f s)"
              % (aps, a.activities, t_act))
        print("  reference, one client paging activities (200, details): %8.0f activities/s"
              " (%d)" % (ref_aps, n_ref_acts))
        print("  ratio activities / reference: %.3f" % (aps / ref_aps if ref_aps else 0.0))
    finally:
        if hub:
            hub.stop()
        sim.stop()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "sim":
        serve_sim(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    else:
        main()
