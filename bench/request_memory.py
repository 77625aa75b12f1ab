#!/usr/bin/env python3
"""request_memory.py — peak memory of one request body, and of ten at once.

Each figure runs on a fresh `stagedoor serve` (freed memory stays with a process, so a second
request would hide in the first one's pages) and is the growth of the server's peak resident
size (VmHWM) over its resident size just before the request, from /proc/PID/status.

    bench/request_memory.py [--bin build/release/stagedoor]

Prints, per body: its size, the answer(s), the peak growth, and the ratio to the reference
measured in the same run: a legitimate 10,000-sale body with every field.
"""

import argparse
import json
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness as h  # noqa: E402

MIB = 1 << 20
LIMIT = 192 * MIB  # SD_MAX_PARSED_BYTES


def extra_event(extra):
    eid = h.uid("EVT")
    return ('{"events":[{"event_id":"%s","title":"T","date":"2026-10-03","time":"19:30:00",'
            '"venue":"V","hall":"%s","capacity":1,"city":"B","extra":%s}]}'
            % (eid, eid, extra)).encode()


def fill(token, cost, budget):
    return "[" + ",".join([token] * (budget // (cost + len(token) + 1))) + "]"


def bodies():
    ev = h.event()
    sales = [h.sale(event_id=ev["event_id"], base_price="75.00") for _ in range(9999)]
    yield "10,000 sales, every field (reference)", json.dumps(
        {"events": [ev], "sales": sales}, separators=(",", ":")).encode(), 1
    events = []
    for i in range(10000):
        e = h.event("E%d-%s" % (i, h.uid("B")), work_title="Otello", composer="Verdi")
        e["cast"] = [{"name": "S%d" % j, "role": "R%d" % j} for j in range(20)]
        events.append(e)
    yield "10,000 events, 20-member casts", json.dumps(
        {"events": events}, separators=(",", ":")).encode(), 1
    yield "8 MiB of {} in an unknown field", extra_event(
        "[" + ",".join(["{}"] * ((8 * MIB - 400) // 3)) + "]"), 1
    yield "8 MiB of small integers", extra_event(
        "[" + ",".join(["1"] * ((8 * MIB - 400) // 2)) + "]"), 1
    at_limit = extra_event(fill("{}", 256, LIMIT - 64 * 1024))
    yield "{} at the parsed-size limit", at_limit, 1
    yield "strings at the parsed-size limit", extra_event(fill('""', 96, LIMIT - 64 * 1024)), 1
    yield "ten {}-at-the-limit bodies at once (8 threads)", at_limit, 10


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0]) * 1024
    return out


def run(data, key, body, concurrent):
    s = h.Server(data, args=["--threads", "8", "--log-level", "warn"]).start()
    try:
        api = s.api("bench", key)
        api.ingest({"events": [h.event()]})
        base = status(s.proc.pid)["VmRSS"]
        answers = [None] * concurrent

        def one(i):
            try:
                answers[i] = api.ingest(body, timeout=600).status
            except Exception as e:  # noqa: BLE001 - printed
                answers[i] = type(e).__name__
        ts = [threading.Thread(target=one, args=(i,)) for i in range(concurrent)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return answers, status(s.proc.pid)["VmHWM"] - base
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("BENCH_BIN", "build/release/stagedoor"))
    args = ap.parse_args()
    h._BIN = os.path.abspath(args.bin)
    with tempfile.TemporaryDirectory(prefix="sd-bench-") as data:
        h.tenant_create(data, "bench")
        h.tenant_limits(data, "bench", 100000000, 100000000)
        key = h.key_create(data, "bench")
        ref = None
        print("%-48s %9s %-22s %10s %7s" % ("body", "MiB", "answers", "peak +MiB", "x ref"))
        for name, body, n in bodies():
            answers, growth = run(data, key, body, n)
            ref = ref or growth
            counts = ", ".join("%s x%d" % (a, answers.count(a)) for a in sorted(set(answers), key=str))
            print("%-48s %9.1f %-22s %10.0f %7.1f"
                  % (name, len(body) / MIB, counts, growth / MIB, growth / ref))


if __name__ == "__main__":
    main()
