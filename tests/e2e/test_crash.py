"""Crash safety: kill -9 under concurrent ingest load, restart on the same data directory.
Every request answered 202 must be fully present; a request without an answer is either fully
present or fully absent (never half-applied).

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import random
import threading
import time
import unittest

import harness
from harness import event, sale

THREADS = 6
SALES_PER_REQUEST = 10
LOAD_SECONDS = 2.0
ROUNDS = 2


class CrashTests(unittest.TestCase):
    def setUp(self):
        self.data = harness.tempdir(self)
        harness.tenant_create(self.data, "crash")
        self.key = harness.key_create(self.data, "crash", "test")
        # the load must not be rate limited
        harness.tenant_limits(self.data, "crash", 10000000, 1000000)
        self.server = None

    def start(self):
        self.server = harness.Server(self.data)
        self.addCleanup(self.server.kill)
        self.server.start()
        return harness.Api(self.server.port, "crash", self.key)

    def load(self, api, event_id, rnd):
        """Run THREADS ingest loops; kill -9 the server after LOAD_SECONDS. Returns records
        {invs, status, error}."""
        records = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(tid):
            j = 0
            while not stop.is_set():
                invs = ["R%d-T%d-Q%d-%d-%s" % (rnd, tid, j, k, harness._RUN)
                        for k in range(SALES_PER_REQUEST)]
                body = {"sales": [sale(inv, event_id, quantity=1 + k % 3)
                                  for k, inv in enumerate(invs)]}
                idem = "idem-" + invs[0]
                rec = {"invs": invs, "status": None, "error": None, "body": body, "idem": idem}
                with lock:
                    records.append(rec)
                try:
                    r = api.ingest(body, headers={"Idempotency-Key": idem},
                                   timeout=20 * harness.TIME_SCALE)
                    rec["status"] = r.status
                    rec["answer"] = r.body[:300]
                except Exception as e:  # connection reset / refused at the kill
                    rec["error"] = repr(e)
                    if stop.is_set() or not self.server.running():
                        return
                    time.sleep(0.01)
                j += 1

        threads = [threading.Thread(target=worker, args=(i,), daemon=True)
                   for i in range(THREADS)]
        for t in threads:
            t.start()
        time.sleep(LOAD_SECONDS)  # the load phase itself
        self.server.kill()        # SIGKILL while requests are in flight
        stop.set()
        for t in threads:
            t.join(30 * harness.TIME_SCALE)
            self.assertFalse(t.is_alive(), "a client thread hung")
        return records

    def verify(self, api, records):
        stored, _ = api.list_all("sales", limit=1000)
        present = [s["invoice_number"] for s in stored]
        self.assertEqual(len(present), len(set(present)), "a sale is listed twice")
        present = set(present)
        ok = [r for r in records if r["status"] == 202]
        other = [r for r in records if r["status"] not in (202, None)]
        unanswered = [r for r in records if r["status"] is None]
        self.assertTrue(ok, "no request was accepted during the load phase")
        for r in ok:
            missing = [i for i in r["invs"] if i not in present]
            self.assertEqual(missing, [], "acknowledged (202) request lost sales after kill -9")
        for r in other:
            self.assertEqual([i for i in r["invs"] if i in present], [],
                             "a request answered %s left sales behind: %r"
                             % (r["status"], r.get("answer")))
        for r in unanswered:
            n = sum(1 for i in r["invs"] if i in present)
            self.assertIn(n, (0, len(r["invs"])),
                          "half-applied request: %d of %d sales present" % (n, len(r["invs"])))
        known = {i for r in records for i in r["invs"]}
        self.assertEqual(present - known - self.extra, set(), "unexpected sales present")
        # the single-record endpoint agrees with the list
        sample = random.sample(ok, min(20, len(ok))) + unanswered
        for r in sample:
            for inv in (r["invs"][0], r["invs"][-1]):
                g = api.get("sales", inv)
                self.assertEqual(g.status, 200 if inv in present else 404, "%s: %r" % (inv, g))
                if g.status == 200:
                    self.assertEqual(g.json["invoice_number"], inv)
        return len(ok), len(unanswered), len(other)

    def retry_unanswered(self, api, records):
        """A client retries unanswered requests with the same Idempotency-Key: a request that
        was applied is replayed (not a 409), one that was not is applied now."""
        stored, _ = api.list_all("sales", limit=1000)
        present = {x["invoice_number"] for x in stored}
        for r in records:
            if r["status"] is not None:
                continue
            applied = r["invs"][0] in present
            ans = api.ingest(r["body"], headers={"Idempotency-Key": r["idem"]})
            self.assertEqual(ans.status, 202, "retry of a %s request: %r"
                             % ("applied" if applied else "lost", ans))
            replayed = (ans.header("Idempotent-Replayed") or "").lower() == "true"
            self.assertEqual(replayed, applied, "retry of a %s request: replayed=%s"
                             % ("applied" if applied else "lost", replayed))
            r["status"] = 202
        stored, _ = api.list_all("sales", limit=1000)
        present = {x["invoice_number"] for x in stored}
        self.assertEqual([i for r in records if r["status"] == 202 for i in r["invs"]
                          if i not in present], [], "sales missing after the retries")

    def test_kill9_under_load(self):
        api = self.start()
        ev = event()
        r = api.ingest({"events": [ev]})
        self.assertEqual(r.status, 202, r)
        self.extra = set()
        all_records = []
        for rnd in range(ROUNDS):
            records = self.load(api, ev["event_id"], rnd)
            all_records.extend(records)
            api = self.start()  # restart on the same data directory
            counts = self.verify(api, all_records)
            self.retry_unanswered(api, all_records)
            if harness.VERBOSE:
                print("round %d: ok=%d unanswered=%d other=%d" % ((rnd,) + counts))
        self.server.stop_ok()


if __name__ == "__main__":
    harness.main()
