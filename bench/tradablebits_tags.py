#!/usr/bin/env python3
"""tradablebits_tags.py — the figures of bench/tradablebits_tags.sh (run that; it builds the
binary): a segment synced to a Tradable Bits fan tag, against the simulator answering at once
(no latency, no rate limit), next to the pull of the same fans measured in the same run.

    tradablebits_tags.py --bin BIN [--fans N] [--change PCT]

1. Reference: a hub pulls the simulator's N fans (updated-fans feed, 1000 per page): fans
   pulled per second, from the run request until the run's end is visible in its status.
2. First sync: a segment of every subscribed fan ({"customer": {"source": "tradablebits"}},
   opt-outs excluded) pushed to the instance: fans tagged per second (from the push until the
   delivery is delivered), calls made (tag_create + ceil(M / 1000) tag_add).
3. Diff sync: PCT % of the members opt out on the simulator, a pull brings that in, the second
   sync removes exactly them: its time and calls, against the calls a full rewrite would make.
Ratios: first sync / pull (fans per second); diff calls / full-rewrite calls.
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "e2e"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import harness  # noqa: E402
from sim.tradablebits import Simulator  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fans", type=int, default=20000)
    ap.add_argument("--change", type=float, default=1.0)
    a = ap.parse_args()
    harness._BIN = os.path.abspath(a.bin)

    with tempfile.TemporaryDirectory(prefix="sd-bench-tbtags-") as data:
        harness.tenant_create(data, "bench")
        key = harness.key_create(data, "bench", "test")
        t0 = time.monotonic()
        sim = Simulator(seed=5, fans=a.fans, tickets=10, activities=0, rate_limit=0).start()
        print("simulator: %d fans generated in %.1f s" % (a.fans, time.monotonic() - t0))
        server = harness.Server(data, args=["--log-level", "warn"]).start()
        try:
            run(a, data, server, key, sim)
        finally:
            server.stop()
            sim.stop()


def run(a, data, server, key, sim):
    with open(os.path.join(data, "admin.token")) as f:
        token = f.read().strip()
    api = server.api("bench", key)

    def admin(method, path, body=None):
        return harness.http(server.port, method, "/admin/v1/tenants/bench/connectors" + path,
                            body=body, key=token)

    r = admin("POST", "", {"type": "tradablebits", "environment": "test", "schedule": "manual",
                           "settings": {"base_url": sim.base_url, "api_key": "tb-test-key",
                                        "api_secret": "tb-test-secret", "currency": "CAD",
                                        "event_city": "Vancouver", "pull_tickets": False,
                                        "backfill_start": "2000-01-01"}})
    assert r.status == 201, r
    cid = r.json["connector_id"]

    def pull():
        n = len(sim.calls())
        t = time.monotonic()
        assert admin("POST", "/%s/run" % cid).status == 202
        harness.wait_until(lambda: len(sim.calls()) > n, 600, what="the run")

        def ended():
            st = admin("GET", "/" + cid).json["status"]
            return None if st["state"] in ("running", "never_run") else st
        st = harness.wait_until(ended, 600, interval=0.02, what="the run's end")
        assert st["state"] == "ok", st
        return time.monotonic() - t, st

    def sync(seg):
        t = time.monotonic()
        r = api.req("POST", "/v1/bench/segments/%s/push" % seg, body={"target_id": cid})
        assert r.status == 202, r
        dlv = r.json["delivery_id"]

        def done():
            d = api.req("GET", "/v1/bench/deliveries/" + dlv).json
            assert d["state"] != "dead", d
            return d if d["state"] == "delivered" else None
        d = harness.wait_until(done, 600, interval=0.02, what="the sync")
        return time.monotonic() - t, d["facts"]

    pull_s, st = pull()
    pulled = st["last_run_stats"]["records_in"]
    r = api.req("POST", "/v1/bench/segments", body={
        "segment_name": "all fans", "rules": {"customer": {"source": "tradablebits"}}})
    assert r.status == 201, r
    seg = r.json["segment_id"]

    sim.clear_calls()
    first_s, f1 = sync(seg)
    calls1 = len(sim.writes())
    members = f1["fans"]
    assert f1["added"] == members and len(sim.tag_members("stagedoor-" + seg)) == members, f1

    eligible = sorted(f["fan_id"] for f in sim.fans() if not f["is_optout"])
    leaving = eligible[:max(1, int(len(eligible) * a.change / 100))]
    for fid in leaving:
        sim.update_fan(fid, is_optout=True)
    pull()
    sim.clear_calls()
    diff_s, f2 = sync(seg)
    calls2 = len(sim.writes())
    assert f2["removed"] == len(leaving) and f2["added"] == 0, f2
    full = 1 + -(-(members - len(leaving)) // 1000)

    print("pull (reference):  %6d fans   in %6.2f s = %8.0f fans/s" %
          (pulled, pull_s, pulled / pull_s))
    print("first tag sync:    %6d fans   in %6.2f s = %8.0f fans/s, %d calls" %
          (members, first_s, members / first_s, calls1))
    print("diff tag sync:     %6d left, %d unchanged, in %6.2f s, %d calls" %
          (f2["removed"], f2["unchanged"], diff_s, calls2))
    print("ratio first sync / pull (fans/s): %.2f" % ((members / first_s) / (pulled / pull_s)))
    print("ratio diff calls / full-rewrite calls: %d / %d = %.3f" %
          (calls2, full, calls2 / full))


if __name__ == "__main__":
    main()
