"""inbound_load.py — the load driver of bench/inbound.sh (Python standard library only).

Runs two figures against one server, each for --seconds in total with --connections threads on
kept-alive connections, in --rounds alternating rounds (r, i, r, i …, so that neither path gets
only the small or only the large store):
  (r) POST /v1/<client>/ingest {"customers": [N records]}   (Bearer key), 202 counts
  (i) POST <door> [N contact objects]                        200 with applied == N counts
Every record is a new customer (ids "<figure>-<thread>-<n>-<k>"), so both paths insert. Prints
one line per figure: payloads/s, objects/s, p50 and p99 latency, then the ratio (i)/(r), and a
machine line "counts <r objects> <i objects> <i payloads>" for the shell to check against the
store. A figure with any other answer or a socket error prints "void" (exit 1)."""

import argparse
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlparse


def contact(cid):
    return {"contactNumber": cid, "mail": "%s@bench.example" % cid.lower(),
            "firstName": "Ann", "lastName": "Bench", "salutation": "ignored"}


def customer(cid):
    return {"customer_id": cid, "email": "%s@bench.example" % cid.lower(),
            "first_name": "Ann", "last_name": "Bench"}


def figure(tag, rnd, host, port, path, headers, make_body, ok, seconds, conns, n):
    """One timed round; returns (payloads, elapsed seconds, latencies) or raises on a refusal."""
    lock = threading.Lock()
    lat, errors = [], []
    counts = {"payloads": 0}
    stop = time.monotonic() + seconds

    def worker(t):
        c = http.client.HTTPConnection(host, port, timeout=60)
        i = 0
        mine = []
        while time.monotonic() < stop and not errors:
            ids = ["%s%d-%d-%d-%d" % (tag, rnd, t, i, k) for k in range(n)]
            body = json.dumps(make_body(ids)).encode()
            t0 = time.monotonic()
            try:
                c.request("POST", path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
            except Exception as e:  # noqa: BLE001 - any socket error voids the figure
                with lock:
                    errors.append("socket: %r" % e)
                break
            if not ok(r.status, data, n):
                with lock:
                    errors.append("%d %s" % (r.status, data[:200]))
                break
            mine.append(time.monotonic() - t0)
            i += 1
        with lock:
            lat.extend(mine)
            counts["payloads"] += i
        c.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return counts["payloads"], time.monotonic() - start, lat, errors


def report(name, res, n):
    payloads = sum(r[0] for r in res)
    elapsed = sum(r[1] for r in res)
    lat = sorted(x for r in res for x in r[2])
    errors = [e for r in res for e in r[3]]
    if errors or not lat:
        print("void %s: %s" % (name, errors[0] if errors else "no request completed"))
        return None, payloads
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    rate = payloads / elapsed
    print("%-34s %8.1f payloads/s %9.0f objects/s   p50 %6.1f ms  p99 %6.1f ms" %
          (name, rate, rate * n, pct(0.50), pct(0.99)))
    return rate, payloads


def main():
    ap = argparse.ArgumentParser()
    for a in ("--base", "--client", "--key", "--door"):
        ap.add_argument(a, required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=4)
    o = ap.parse_args()
    u = urlparse(o.base)
    n = o.objects
    hj = {"Content-Type": "application/json"}
    ref = (u.hostname, u.port, "/v1/%s/ingest" % o.client, dict(hj, Authorization="Bearer " + o.key),
           lambda ids: {"customers": [customer(i) for i in ids]},
           lambda st, d, n: st == 202)
    door = (u.hostname, u.port, o.door, hj, lambda ids: [contact(i) for i in ids],
            lambda st, d, n: st == 200 and json.loads(d).get("applied") == n)
    # Alternating rounds (r, i, r, i …): the store grows during the run, and each path gets
    # its share of the early (small) and late (large) store.
    res = {"r": [], "i": []}
    for rnd in range(o.rounds):
        for tag, args in (("r", ref), ("i", door)):
            res[tag].append(figure(tag.upper(), rnd, *args, o.seconds / o.rounds,
                                   o.connections, n))
    r_rate, r_p = report("(r) webhook ingest, %d customers" % n, res["r"], n)
    i_rate, i_p = report("(i) raw-first door, %d objects" % n, res["i"], n)
    if r_rate and i_rate:
        print("ratio (i)/(r): %.2f" % (i_rate / r_rate))
    print("counts %d %d %d" % (r_p * n, i_p * n, i_p))
    return 0 if r_rate and i_rate else 1


if __name__ == "__main__":
    sys.exit(main())
