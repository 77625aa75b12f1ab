#!/usr/bin/env python3
"""archtics_bench.py — the figures of bench/archtics.sh (run that; it builds the binary).

    archtics_bench.py --bin BIN [--seconds S] [--work DIR]

1. Reference: the ATS simulator's own raw call rate here — one client sends `ping` commands one
   after another, each on a new connection (as the hub's libcurl exchanges are), for S seconds:
   the most any ATS client gets from this simulator on this machine.
2. Season backfill: a hub (the binary under test) with one `archtics` instance pulls the
   simulator's default season (120 accounts, 24 games and 2 plans, 14 sales a game with ~10 %
   returns, 6 season-ticket holders, the past games' scans) from scratch; the simulator answers
   at once (no 202 cycles, no latency) and the connector's ledger is opened wide, so the figure is
   the connector's own speed, not the quota's. Printed: records stored, calls made (the
   simulator's record, and by command), calls per synced source record (accounts, games, sales
   and returns, scans, plan seat blocks), source records per second (the run's duration from its status), calls per second
   and its ratio to the reference.
3. What the real quota makes of it: days a backfill of that many calls needs at 4,500 read calls a
   day (5,000 less the write reserve).
"""

import argparse
import http.client
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
from sim.archtics import Simulator  # noqa: E402

KEY, DSN = "test-key-1", "stagedoor_test"


def reference(sim, seconds):
    body = json.dumps({"header": {"ver": 1, "src_sys_type": 2, "src_sys_name": "bench",
                                  "archtics_version": "1"},
                       "command1": {"cmd": "ping", "uid": "bench", "dsn": DSN, "ref": "b"}})
    n = 0
    end = time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < end:
        c = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
        c.request("POST", "/sth-customer/ticketing_services.aspx?dsn=" + DSN, body=body,
                  headers={"apikey": KEY, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        c.close()
        if r.status != 200:
            raise SystemExit("bench: reference ping answered %d" % r.status)
        n += 1
    return n / (time.monotonic() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--work")
    a = ap.parse_args()
    harness._BIN = os.path.abspath(a.bin)
    work = a.work or tempfile.mkdtemp(prefix="stagedoor-archticsbench-")
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    os.environ.setdefault("STAGEDOOR_EGRESS_ALLOW", "loopback,private")

    big = 10 ** 7
    sim = Simulator(queue_mode="never", per_minute=big, per_day=big).start()
    try:
        ref = reference(sim, a.seconds)
        sim.clear_record()
        harness.tenant_create(data, "bench")
        server = harness.Server(data).start()
        try:
            from test_archtics import Admin  # the e2e test's admin helper
            admin = Admin(server, "bench")
            cid = admin.add({"base_url": sim.url, "api_key": KEY, "dsn": DSN,
                             "venue_time_zone": "America/New_York", "event_city": "Seattle",
                             "quota_10s_calls": 90000, "quota_day_calls": 90000000,
                             "max_wait_seconds": 60})
            t0 = time.monotonic()
            st = admin.run(cid, timeout=3600)
            wall = time.monotonic() - t0
            if st["state"] != "ok" or st["last_warning"]:
                raise SystemExit("bench: the backfill did not complete: %r" % (st,))
            records = st["records_in"]
            calls = len([c for c in sim.record() if c.counted])
            by_cmd = {}
            for c in sim.record():
                if c.counted:
                    by_cmd[c.cmd] = by_cmd.get(c.cmd, 0) + 1
            secs = st["last_run_stats"]["duration_ms"] / 1000.0 or wall
        finally:
            server.stop()
    finally:
        sim.stop()
    w = sim.world
    print("season: %d accounts, %d events, %d sales and returns, %d scans"
          % (len(w.accounts), len(w.events), len(w.sales), len(w.scans)))
    print("reference: simulator raw ping rate        %8.1f calls/s" % ref)
    blocks = {(s["acct_id"], s["plan_name"], s["section_name"], s["row_name"], s["seat_num"])
              for s in w.sales if s["plan_name"] and s["trans_type"] == "S"}
    source = (len(w.accounts) + sum(1 for e in w.events if e["event_category"] == "E")
              + len(w.sales) + len(w.scans) + len(blocks))
    print("backfill: source records synced           %8d  (accounts, games, sales and returns, "
          "scans, plan seat blocks)" % source)
    print("backfill: records stored                  %8d  (scanned games' sales stored twice)"
          % records)
    print("backfill: calls made                      %8d  (%s)"
          % (calls, ", ".join("%s %d" % kv for kv in sorted(by_cmd.items()))))
    print("backfill: calls per synced record         %8.3f" % (calls / source))
    print("backfill: records per second              %8.1f  (%.2f s)" % (source / secs, secs))
    print("backfill: calls per second                %8.1f  = %.2f x the reference"
          % (calls / secs, (calls / secs) / ref))
    print("real quota: days for this backfill at 4,500 reads/day  %.2f" % (calls / 4500.0))


if __name__ == "__main__":
    main()
