"""s360_load.py — the load driver of bench/s360.sh (Python standard library only).

Against one server with an s360 instance (its stream URLs) and a TEST key, it measures:
  (r) POST /v1/<client>/ingest {"customers": [50]}            the plain webhook ingest (reference)
  (c) POST <contacts URL> [50 S-360 contacts]                  200 with 50 applied counts
  (o) POST <orders URL>   [50 S-360 orders of stored contacts] 200 with every line applied counts
each for --seconds in --rounds alternating rounds with --connections threads, as payloads/s
(S-360 sends at most 50 objects per payload; the target is 1 payload/s per stream sustained).
Then --trials times, one at a time, the time from an order webhook to the buyer's membership in a
segment {"bought": {"event_id": …}} (member pages are computed on request; polled every 5 ms),
next to the same sale sent through the plain ingest. The data are the simulator's (tests/sim/s360,
Season): ids, thousandths, offsets, as S-360 sends them. Prints one line per figure, the ratios
to (r), and "counts <r> <c> <o objects> <payloads>" for the shell to check against the store.
Any other answer voids the figure (printed "void", exit 1)."""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from sim.s360.data import Season   # noqa: E402

lock = threading.Lock()


def post(c, path, body, headers):
    c.request("POST", path, body=json.dumps(body).encode(), headers=headers)
    r = c.getresponse()
    return r.status, r.read()


def timed(label, seconds, conns, work):
    """work(conn, thread, i) -> objects accepted or raises; returns (payloads, objects, secs)."""
    stop = time.monotonic() + seconds
    tot = {"p": 0, "o": 0}
    errors = []

    def worker(t):
        c = http.client.HTTPConnection(HOST, PORT, timeout=60)
        i = 0
        while time.monotonic() < stop and not errors:
            try:
                n = work(c, t, i)
            except Exception as e:  # noqa: BLE001 - any failure voids the figure
                with lock:
                    errors.append("%s: %r" % (label, e))
                break
            with lock:
                tot["p"] += 1
                tot["o"] += n
            i += 1
        c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(t,)) for t in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return tot["p"], tot["o"], time.monotonic() - t0


def main():
    global HOST, PORT
    ap = argparse.ArgumentParser()
    for a in ("--base", "--client", "--key", "--contacts", "--orders"):
        ap.add_argument(a, required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--trials", type=int, default=20)
    a = ap.parse_args()
    u = urlparse(a.base)
    HOST, PORT = u.hostname, u.port
    json_h = {"Content-Type": "application/json"}
    key_h = dict(json_h, Authorization="Bearer " + a.key)
    season = Season(seed=99, big_ids=True, extra_fields=True)
    made = {"contacts": []}
    gen = threading.Lock()

    def contacts50(tag):
        with gen:
            cs = [season.contact(kind="person", email="%s-%d@bench.example" % (tag, k))
                  for k in range(50)]
            made["contacts"].extend(cs)
            return cs

    def ref(c, t, i):
        ids = ["r-%d-%d-%d-%d" % (rnd, t, i, k) for k in range(50)]
        st, body = post(c, "/v1/%s/ingest" % a.client, {"customers": [
            {"customer_id": x, "email": "%s@bench.example" % x, "first_name": "Ann"}
            for x in ids]}, key_h)
        if st != 202:
            raise RuntimeError("%d %s" % (st, body[:200]))
        return 50

    def contacts(c, t, i):
        st, body = post(c, a.contacts, contacts50("c%d-%d-%d" % (rnd, t, i)), json_h)
        if st != 200 or json.loads(body)["applied"] != 50:
            raise RuntimeError("%d %s" % (st, body[:200]))
        return 50

    stored = []

    def orders(c, t, i):
        with gen:
            if len(stored) < 50:
                raise RuntimeError("no stored contacts to buy")
            ds = [season.order(stored[(t * 7919 + i * 50 + k) % len(stored)], "SALE")
                  for k in range(50)]
        st, body = post(c, a.orders, [{"orderDetailsData": d} for d in ds], json_h)
        if st != 200 or json.loads(body)["quarantined"] != 0:
            raise RuntimeError("%d %s" % (st, body[:300]))
        return sum(1 for d in ds for op in d["operationDatas"] if "performanceId" in op)

    res = {"r": [0, 0, 0.0], "c": [0, 0, 0.0], "o": [0, 0, 0.0]}
    void = []
    each = a.seconds / a.rounds
    for rnd in range(a.rounds):
        for tag, fn in (("r", ref), ("c", contacts), ("o", orders)):
            try:
                p, o, s = timed(tag, each, a.connections, fn)
            except RuntimeError as e:
                void.append(str(e))
                continue
            res[tag][0] += p
            res[tag][1] += o
            res[tag][2] += s
            if tag == "c":
                stored[:] = made["contacts"]
    names = {"r": "plain ingest  (50 customers)", "c": "s360 contacts (50 contacts) ",
             "o": "s360 orders   (50 orders)   "}
    rate = {}
    for tag in ("r", "c", "o"):
        p, o, s = res[tag]
        rate[tag] = p / s if s else 0.0
        print("%s  %8.1f payloads/s  %9.0f objects/s  (%d payloads in %.1f s)"
              % (names[tag], rate[tag], o / s if s else 0, p, s))
    if rate["r"]:
        print("ratio to the plain ingest: contacts %.2f, orders %.2f; target 1 payload/s per "
              "stream: contacts x%.0f, orders x%.0f" % (rate["c"] / rate["r"],
                                                         rate["o"] / rate["r"], rate["c"],
                                                         rate["o"]))

    # order webhook -> segment membership, next to the plain ingest of the same kind of sale
    c = http.client.HTTPConnection(HOST, PORT, timeout=60)
    perf = season.performances[0]
    st, body = post(c, "/v1/%s/segments" % a.client,
                    {"segment_name": "bench-s360",
                     "rules": {"bought": {"event_id": str(perf["performanceId"])}}}, key_h)
    if st != 201:
        void.append("segment: %d %s" % (st, body[:200]))
        print("void: " + void[-1])
        return 1
    seg = json.loads(body)["segment_id"]
    st, body = post(c, "/v1/%s/ingest" % a.client, {"events": [{
        "event_id": "bench-ev", "title": "Bench", "date": "2026-06-01", "time": "19:30:00",
        "venue": "myvenue", "hall": "main", "capacity": 0, "city": "Bern"}]}, key_h)
    if st != 202:
        void.append("event: %d %s" % (st, body[:200]))
    seg2 = None
    st, body = post(c, "/v1/%s/segments" % a.client, {"segment_name": "bench-plain",
                                                    "rules": {"bought": {"event_id": "bench-ev"}}},
                    key_h)
    if st == 201:
        seg2 = json.loads(body)["segment_id"]

    def member(segment, cid):
        cur = None
        while True:
            q = "/v1/%s/segments/%s/members?limit=10000" % (a.client, segment)
            if cur:
                q += "&cursor=" + cur
            c.request("GET", q, headers=key_h)
            r = c.getresponse()
            d = json.loads(r.read())
            if any(s["customer_id"] == cid for m in d["data"] for s in m["source_ids"]):
                return True
            if not d.get("has_more"):
                return False
            cur = d["next_cursor"]

    def wait_member(segment, cid, t0):
        while not member(segment, cid):
            if time.monotonic() - t0 > 30:
                raise RuntimeError("not a member after 30 s")
            time.sleep(0.005)
        return time.monotonic() - t0

    lat_s, lat_p = [], []
    for k in range(a.trials):
        person = season.contact(kind="person", email="seg-%d@bench.example" % k)
        for au in person["authorizations"]:
            au["value"] = au["authorizationType"] == "NEWSLETTER"
        st, _ = post(c, a.contacts, [person], json_h)
        d = season.order(person, "SALE", performance=perf, quantity=1)
        t0 = time.monotonic()
        st, body = post(c, a.orders, [{"orderDetailsData": d}], json_h)
        if st != 200:
            void.append("order webhook: %d %s" % (st, body[:200]))
            break
        lat_s.append(wait_member(seg, person["contactNumber"], t0))
        if seg2:
            cid = "plain-seg-%d" % k
            t0 = time.monotonic()
            st, body = post(c, "/v1/%s/ingest" % a.client, {
                "customers": [{"customer_id": cid, "email": "%s@bench.example" % cid}],
                "sales": [{"invoice_number": "P-%d" % k, "event_id": "bench-ev",
                           "customer_id": cid, "purchase_datetime": "2026-03-01T10:00:00Z",
                           "ticket_category": "regular", "quantity": 1, "sales_price": "45.00",
                           "currency": "CHF"}]}, key_h)
            if st != 202:
                void.append("plain ingest: %d %s" % (st, body[:200]))
                break
            lat_p.append(wait_member(seg2, cid, t0))
    if lat_s:
        ms = [x * 1000 for x in sorted(lat_s)]
        print("order webhook -> segment member: p50 %.1f ms, max %.1f ms (%d trials)"
              % (statistics.median(ms), ms[-1], len(ms)))
    if lat_p:
        mp = [x * 1000 for x in sorted(lat_p)]
        print("plain ingest  -> segment member: p50 %.1f ms, max %.1f ms (%d trials); ratio %.2f"
              % (statistics.median(mp), mp[-1], len(mp),
                 statistics.median(lat_s) / statistics.median(lat_p)))
    for v in void:
        print("void: " + v)
    print("counts %d %d %d %d" % (res["r"][1], res["c"][1], res["o"][1], res["c"][0] + res["o"][0]))
    return 1 if void else 0


if __name__ == "__main__":
    sys.exit(main())
