"""Hostile segment load (issue #8 §2): expensive segment rules from several tenants at once must
not starve anybody. Segment computations run on the segment workers, not on the HTTP threads, so
while they run every webhook and every GET /healthz answers (no timeout, no 5xx); the segment
requests themselves get 201/200, 429 (the tenant has too many) or 503 with Retry-After (the queue
is full), or 503 segment_too_slow once past the budget (`serve --segment-budget`); SIGTERM during
a long computation exits promptly.

Data, made once for the module: `stagedoor demo` loads the demo season (150,000 sales) into
tenant `demo`; tenant `rival` gets 24,000 sales through the webhook; `web` is the tenant whose
webhook is probed; `t3` … `t6` have no data (their computations are cheap but queue behind the
others). The hostile rule is 40 `spend` leaves with a `where` on the sale's quantity: each
reads every sale document once (tens of seconds over the demo season in a debug build).

Before this change the computations ran on the HTTP threads (`--threads 2` here), and /healthz
waited for them: the probes below time out.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import customer, event, sale, uid

JSON = {"Content-Type": "application/json"}
SCALE = harness.TIME_SCALE
# A probe (webhook or /healthz) must answer within this; generous for a loaded machine, far
# below what a computation on an HTTP thread costs.
PROBE_TIMEOUT = 10.0 * SCALE
DEMO_TIMEOUT = 300.0 * SCALE
BUDGET_S = 2  # --segment-budget for the load test: every hostile rule needs far more

STATE = {}


def heavy_rule(n=40, base=1000):
    # the `where` (every sale has a quantity) keeps each leaf on the sales: without one, spend
    # is read from the per-profile facts and the rule is cheap
    return {"any": [{"count": {"of": "spend", "currency": "EUR", "where": {"quantity": {"gte": 1}},
                               "gte": "%d.00" % (base + i)}}
                    for i in range(n)]}


def cheap_rule():
    return {"customer": {"post_code": {"prefix": "1"}}}


def load_demo(data):
    """`stagedoor demo` until it listens (the season is loaded by then), then SIGTERM."""
    store = harness.store_url(data)
    proc = subprocess.Popen([harness.bin_path(), "demo", "--data", data, "--listen",
                             "127.0.0.1:0"] + (["--store", store] if store else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=data, text=True)
    lines = []

    def drain():
        for line in proc.stdout:
            lines.append(line)
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    e = threading.Thread(target=lambda: proc.stderr.read(), daemon=True)
    e.start()
    deadline = time.monotonic() + DEMO_TIMEOUT
    try:
        while not any("listening on" in l for l in list(lines)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("stagedoor demo did not come up: %r" % (lines,))
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(harness.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        t.join(5)
        e.join(5)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, proc.returncode


def load_rival(api, prefix, n_sales=24000, per_request=8000):
    events = [event(uid(prefix + "E")) for _ in range(40)]
    customers = [customer(uid(prefix + "C"), post_code="1%04d" % i) for i in range(1500)]
    r = api.ingest({"events": events, "customers": customers}, timeout=120 * SCALE)
    assert r.status == 202, r
    for start in range(0, n_sales, per_request):
        sales = [sale(uid(prefix + "I"), events[i % 40]["event_id"],
                      customers[i % 1500]["customer_id"], quantity=1 + i % 4,
                      sales_price="%d.00" % (20 + i % 90))
                 for i in range(start, min(n_sales, start + per_request))]
        r = api.ingest({"sales": sales}, timeout=120 * SCALE)
        assert r.status == 202, r


def setUpModule():
    data = tempfile.mkdtemp(prefix="sd-e2e-segload-")
    STATE["tmp"] = data
    load_demo(data)
    keys = {"demo": harness.key_create(data, "demo", "test")}
    for cid in ("rival", "web", "t3", "t4", "t5", "t6"):
        harness.tenant_create(data, cid)
        keys[cid] = harness.key_create(data, cid, "test")
    harness.tenant_limits(data, "web", 100000, 100000)
    STATE["keys"] = keys
    s = harness.Server(data, args=["--threads", "2"])
    s.start()
    try:
        rival = harness.Api(s.port, "rival", keys["rival"])
        load_rival(rival, "RV")
        web = harness.Api(s.port, "web", keys["web"])
        ev = event(uid("WEBE"))
        r = web.ingest({"events": [ev]})
        assert r.status == 202, r
        STATE["web_event"] = ev["event_id"]
    finally:
        rc = s.stop()
    assert rc == 0, rc


def tearDownModule():
    if STATE.get("tmp"):
        shutil.rmtree(STATE["tmp"], ignore_errors=True)


class Probes:
    """Webhooks (one sale each) and GET /healthz in a loop on two threads until stopped; every
    answer and every failure is recorded."""

    def __init__(self, port, key, event_id):
        self.port, self.key, self.event_id = port, key, event_id
        self.stop = threading.Event()
        self.results = []  # (kind, status or exception text, seconds)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, args=(k,), daemon=True)
                        for k in ("webhook", "healthz")]

    def one(self, kind):
        t0 = time.monotonic()
        try:
            if kind == "healthz":
                r = harness.http(self.port, "GET", "/healthz", timeout=PROBE_TIMEOUT)
            else:
                r = harness.http(self.port, "POST", "/v1/web/ingest",
                                 body={"sales": [sale(uid("W"), self.event_id)]},
                                 headers=dict(JSON), key=self.key, timeout=PROBE_TIMEOUT)
            out = r.status
        except Exception as e:  # a timeout, a reset: the failure this test is about
            out = "%s: %s" % (type(e).__name__, e)
        with self.lock:
            self.results.append((kind, out, time.monotonic() - t0))

    def loop(self, kind):
        while not self.stop.is_set():
            self.one(kind)
            self.stop.wait(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(PROBE_TIMEOUT + 5)

    def check(self, tc):
        with self.lock:
            res = list(self.results)
        want = {"webhook": 202, "healthz": 200}
        bad = [r for r in res if r[1] != want[r[0]]]
        if bad:
            tc.fail("%d of %d probes failed (kind, answer, seconds), e.g. %r"
                    % (len(bad), len(res), bad[:5]))
        for kind in want:
            tc.assertGreaterEqual(sum(1 for r in res if r[0] == kind), 5, res)
        return res


def post_segment(port, client, key, rules, results, name="hostile"):
    """POST a segment, recording (client, Resp or exception text)."""
    try:
        r = harness.http(port, "POST", "/v1/%s/segments" % client, key=key,
                         body={"segment_name": name, "rules": rules}, headers=dict(JSON),
                         timeout=300 * SCALE)
    except Exception as e:
        r = "%s: %s" % (type(e).__name__, e)
    results.append((client, r))


class HostileLoadTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keys = STATE["keys"]
        cls.server = harness.Server(STATE["tmp"], args=["--threads", "2", "--segment-budget",
                                                        str(BUDGET_S)])
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_ok()

    def api(self, client):
        return harness.Api(self.port, client, self.keys[client])

    def check_refusal(self, client, r):
        """A hostile request's answer: 201, 429/503 with Retry-After, or segment_too_slow."""
        self.assertIsInstance(r, harness.Resp, "%s: no answer: %s" % (client, r))
        if r.status == 201:
            return "created"
        if r.status == 503 and r.json.get("error") == "segment_too_slow":
            self.assertIn("budget", r.json.get("message", ""))
            return "too_slow"
        self.assertIn(r.status, (429, 503), "%s: %r" % (client, r))
        want = "too_many_segment_computations" if r.status == 429 else "segment_queue_full"
        self.assertEqual(r.json.get("error"), want, r)
        ra = r.header("Retry-After")
        self.assertIsNotNone(ra, r)
        self.assertTrue(1 <= int(ra) <= 60, ra)
        return r.json["error"]

    def test_hostile_segments_do_not_starve_webhooks(self):
        results, threads = [], []
        # demo and rival: expensive rules, more than their limit; t3..t6: cheap ones, queued
        # behind them (and more than the queue holds while both workers are busy)
        plan = [("demo", heavy_rule())] * 6 + [("rival", heavy_rule(base=50))] * 4
        for cid in ("t3", "t4", "t5", "t6"):
            plan += [(cid, cheap_rule())] * 3
        with Probes(self.port, self.keys["web"], STATE["web_event"]) as probes:
            time.sleep(0.5)  # the probes answer before the load too
            for cid, rule in plan:
                t = threading.Thread(target=post_segment,
                                     args=(self.port, cid, self.keys[cid], rule, results),
                                     daemon=True)
                t.start()
                threads.append(t)
            for t in threads:
                t.join(600 * SCALE)
            time.sleep(0.5)
        probes.check(self)
        self.assertEqual(len(results), len(plan))
        outcomes = {}
        for cid, r in results:
            outcomes.setdefault(cid, []).append(self.check_refusal(cid, r))
        # demo sent 6 at once: at most 2 may be in the hub, so some were refused at once
        self.assertIn("too_many_segment_computations", outcomes["demo"], outcomes)
        # a 40-leaf spend rule over the demo season needs far more than 2 s of CPU
        self.assertIn("too_slow", outcomes["demo"], outcomes)
        self.assertNotIn("created", outcomes["demo"], outcomes)
        # the hub is itself again: a cheap segment, then its members
        r = self.api("t3").req("POST", "/v1/t3/segments", headers=JSON,
                               body={"segment_name": "after", "rules": cheap_rule()})
        self.assertEqual(r.status, 201, r)
        r = self.api("t3").req("GET", "/v1/t3/segments/%s/members" % r.json["segment_id"])
        self.assertEqual(r.status, 200, r)

    def test_budget_applies_to_recount_and_members(self):
        api = self.api("demo")
        r = api.req("POST", "/v1/demo/segments", headers=JSON,
                    body={"segment_name": "cheap", "rules": {"bought": {"city": "Berlin"}}})
        self.assertEqual(r.status, 201, r)
        seg = r.json
        r = api.req("PUT", "/v1/demo/segments/" + seg["segment_id"], headers=JSON,
                    body={"rules": heavy_rule()})
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json["error"], "segment_too_slow", r)
        self.assertIn("%d s of CPU time" % BUDGET_S, r.json["message"])
        r = api.req("GET", "/v1/demo/segments/" + seg["segment_id"])
        self.assertEqual(r.json["rules"], seg["rules"], "a PUT over budget must change nothing")
        r = api.req("GET", "/v1/demo/segments/%s/members?limit=5" % seg["segment_id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["data"]), 5)
        # a bad body is refused on the HTTP thread, whatever the queue holds
        r = api.req("POST", "/v1/demo/segments", headers=JSON,
                    body={"segment_name": "bad", "rules": {"bought": {"nope": 1}}})
        self.assertEqual(r.status, 400, r)


class ShutdownDuringComputationTests(unittest.TestCase):
    def test_sigterm_stops_a_long_computation(self):
        keys = STATE["keys"]
        s = harness.Server(STATE["tmp"], args=["--threads", "2"])  # default budget: 60 s
        self.addCleanup(s.kill)
        s.start()
        results, threads = [], []
        for cid in ("demo", "demo", "rival"):
            t = threading.Thread(target=post_segment,
                                 args=(s.port, cid, keys[cid], heavy_rule(), results),
                                 daemon=True)
            t.start()
            threads.append(t)
        time.sleep(1.5 * SCALE)  # the computations are running (or waiting for a worker)
        r = harness.http(s.port, "GET", "/healthz", timeout=PROBE_TIMEOUT)
        self.assertEqual(r.status, 200, r)
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        rc = s.wait_exit(60 * SCALE)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, s.diagnostics())
        # a computation on an HTTP thread would hold the exit for its whole run (tens of
        # seconds); the workers stop theirs within milliseconds
        self.assertLess(took, 8 * SCALE, "exit took %.1fs\n%s" % (took, s.diagnostics()))
        for t in threads:
            t.join(30 * SCALE)
        self.assertEqual(len(results), 3)
        for cid, r in results:
            self.assertIsInstance(r, harness.Resp, "%s: no answer: %s" % (cid, r))
            if cid == "demo":
                self.assertEqual(r.status, 503, r)
                self.assertEqual(r.json["error"], "shutting_down", r)
                self.assertIsNotNone(r.header("Retry-After"), r)
            else:  # rival's smaller data may finish first
                self.assertIn(r.status, (201, 503), r)


if __name__ == "__main__":
    harness.main()
