"""Several stagedoor nodes on one PostgreSQL database (`serve --store URL` three times, each with
its own data dir): any node takes webhooks and reads, and the change feed stays gap-free.

  - writers spread over three nodes while a reader follows the sales feed on a fourth
    connection to one of them: every accepted sale is seen exactly once, each request's sales
    together and in order (commit order = seq order across nodes);
  - a node killed with SIGKILL in the middle of the load: the others go on; every sale any node
    answered 202 for is stored exactly once, none of a request the dead node did not answer is
    half-stored (a request's sales are all there or none);
  - the tenant's rate limit is shared: three nodes together refuse past the tenant's burst.

Needs STAGEDOOR_TEST_PG (scripts/pg-cluster); skipped without it. Runs as a plain e2e test
(the nodes are PostgreSQL by construction, whatever SD_E2E_STORE says).
"""

import os
import signal
import subprocess
import threading
import time
import unittest
import uuid

import harness
from harness import Api, Server, event, sale, tempdir

PG = os.environ.get("STAGEDOOR_TEST_PG")


def _psql(sql):
    subprocess.run(["psql", PG, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=60)


@unittest.skipUnless(PG, "STAGEDOOR_TEST_PG is not set (scripts/pg-cluster start DIR)")
class NodesTests(unittest.TestCase):
    NODES = 3

    def setUp(self):
        self.db = "sd_nodes_%s" % uuid.uuid4().hex[:12]
        _psql("CREATE DATABASE %s" % self.db)
        self.addCleanup(_psql, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db)
        head, _, tail = PG.partition("://")
        self.url = "%s://%s/%s" % (head, tail.partition("/")[0], self.db)
        self.dirs = [tempdir(self) for _ in range(self.NODES)]
        self.cli = lambda *a: harness.cli_ok(self.dirs[0], *a, "--store", self.url)
        self.cli("tenant", "create", "nodes")
        cp = self.cli("key", "create", "nodes", "--env", "test")
        self.key = cp.stdout.strip().splitlines()[-1]
        self.servers = []
        for d in self.dirs:
            s = Server(d, args=["--store", self.url])
            self.addCleanup(s.kill)
            s.start()
            self.servers.append(s)
        self.apis = [Api(s.port, "nodes", self.key) for s in self.servers]

    def tearDown(self):
        for s in self.servers:
            if s.running():
                s.stop_ok(self)

    def test_feed_gap_free_with_writers_on_every_node(self):
        self.cli("tenant", "limits", "nodes", "--per-minute", "1000000", "--burst", "1000000")
        e = event()
        self.assertEqual(self.apis[0].ingest({"events": [e]}).status, 202)
        start = self.apis[1].get("sales", query="limit=1")
        self.assertEqual(start.status, 200, start)
        cursor = start.json["next_cursor"]
        writers_done = threading.Event()
        requests, seen, errors = [], [], []
        lock = threading.Lock()

        def writer(w):
            api = self.apis[w % self.NODES]
            try:
                for j in range(25):
                    invs = ["N%d-%d-%d-%s" % (w, j, k, harness._RUN) for k in range(3)]
                    r = api.ingest({"sales": [sale(i, e["event_id"]) for i in invs]})
                    if r.status != 202:
                        errors.append(r)
                        return
                    with lock:
                        requests.append(invs)
            except Exception as ex:  # reported below
                errors.append(ex)

        def reader():
            cur = cursor
            deadline = time.monotonic() + 120 * harness.TIME_SCALE
            while time.monotonic() < deadline:
                done = writers_done.is_set()
                q = "limit=5" + ("&cursor=" + harness._quote(cur) if cur else "")
                r = self.apis[1].get("sales", query=q)
                if r.status != 200:
                    errors.append(r)
                    return
                seen.extend(x["invoice_number"] for x in r.json["data"])
                cur = r.json.get("next_cursor") or cur
                if done and not r.json["has_more"]:
                    return
            errors.append("reader did not finish")

        ws = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
        rd = threading.Thread(target=reader)
        rd.start()
        for t in ws:
            t.start()
        for t in ws:
            t.join(120 * harness.TIME_SCALE)
        writers_done.set()
        rd.join(120 * harness.TIME_SCALE)
        self.assertEqual(errors, [])
        self.assertEqual(len(seen), len(set(seen)), "a record was delivered twice")
        self.assertEqual(sorted(seen), sorted(i for invs in requests for i in invs))
        pos = {inv: n for n, inv in enumerate(seen)}
        for invs in requests:
            p0 = pos[invs[0]]
            self.assertEqual([pos[i] for i in invs], list(range(p0, p0 + len(invs))),
                             "a request's sales are not contiguous in change order")
        # The same feed read from each node is the same.
        lists = [[x["invoice_number"] for x in a.list_all("sales")[0]] for a in self.apis]
        self.assertEqual(lists[0], lists[1])
        self.assertEqual(lists[0], lists[2])

    def test_node_killed_mid_load(self):
        self.cli("tenant", "limits", "nodes", "--per-minute", "1000000", "--burst", "1000000")
        e = event()
        self.assertEqual(self.apis[0].ingest({"events": [e]}).status, 202)
        accepted, unanswered, errors = [], [], []
        lock = threading.Lock()
        stop = threading.Event()

        def writer(w):
            api = self.apis[w % self.NODES]
            j = 0
            while not stop.is_set() and j < 400:
                invs = ["K%d-%d-%d-%s" % (w, j, k, harness._RUN) for k in range(4)]
                j += 1
                try:
                    r = api.ingest({"sales": [sale(i, e["event_id"]) for i in invs]})
                except Exception:  # the killed node: no answer
                    with lock:
                        unanswered.append(invs)
                    if w % self.NODES == 2:
                        return
                    continue
                with lock:
                    if r.status == 202:
                        accepted.append(invs)
                    else:
                        errors.append(r)

        ws = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
        for t in ws:
            t.start()
        harness.wait_until(lambda: len(accepted) >= 60, 60 * harness.TIME_SCALE,
                           what="load on every node")
        self.servers[2].proc.send_signal(signal.SIGKILL)
        self.servers[2].wait_exit()
        time.sleep(1.0)
        stop.set()
        for t in ws:
            t.join(120 * harness.TIME_SCALE)
        self.assertEqual(errors, [])
        stored = [x["invoice_number"] for x in self.apis[0].list_all("sales")[0]]
        self.assertEqual(len(stored), len(set(stored)), "a sale stored twice")
        stored = set(stored)
        for invs in accepted:
            for i in invs:
                self.assertIn(i, stored, "a sale answered 202 is missing")
        for invs in unanswered:
            got = [i in stored for i in invs]
            self.assertIn(got, ([True] * len(invs), [False] * len(invs)),
                          "a request the killed node did not answer is half-stored")
        # The survivors keep serving.
        self.assertEqual(self.apis[1].ingest({"sales": [sale(None, e["event_id"])]}).status, 202)

    def test_rate_limit_shared(self):
        self.cli("tenant", "limits", "nodes", "--per-minute", "1", "--burst", "60")
        # Each node reloads the limits within a second of the change (a read answers with the
        # tenant's RateLimit-Limit; reads have a bucket of their own).
        for api in self.apis:
            harness.wait_until(lambda: api.get("events", query="limit=1").header(
                "RateLimit-Limit") == "1", 10 * harness.TIME_SCALE, what="new limits")
        ok = refused = 0
        for i in range(180):
            r = self.apis[i % self.NODES].ingest({"events": [event()]})
            if r.status == 202:
                ok += 1
            elif r.status == 429:
                refused += 1
                self.assertIsNotNone(r.header("Retry-After"))
            else:
                self.fail("unexpected %r" % (r,))
        chunk = max(1, min(50, 60 // 20))
        self.assertLessEqual(ok, 60 + 1)  # +1: one token may refill during the test
        self.assertGreaterEqual(ok, 60 - self.NODES * (chunk - 1))
        self.assertEqual(ok + refused, 180)


if __name__ == "__main__":
    harness.main()
