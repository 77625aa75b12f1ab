"""The PostgreSQL server restarted under load (`pg_ctl restart -m fast`, every session cut):

  - the hub never crashes and never answers 202 for a commit that did not happen: every sale
    answered 202 is stored, exactly once;
  - a request answered with an error while the server was away is all stored or not at all
    (its commit either happened or did not; an unknown outcome is an error, never a 202);
  - once the server is back, webhooks, reads and admin calls succeed again without a restart
    of the hub (lost connections are reset on next use);
  - reads running through the restart get an answer (200 or a clear 5xx), never a hang.

The test starts a PostgreSQL cluster of its own (scripts/pg-cluster), since it restarts it:
the shared test cluster (STAGEDOOR_TEST_PG) serves other tests running at the same time.
Skipped when PostgreSQL 15 is not installed.
"""

import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import Api, Server, event, sale, tempdir

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PG_CLUSTER = os.path.join(ROOT, "scripts", "pg-cluster")
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")


def _as_owner(args):
    if os.getuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + args
    return args


@unittest.skipUnless(os.path.exists(os.path.join(PGBIN, "pg_ctl")), "postgresql-15 not installed")
class PgRestartTests(unittest.TestCase):
    def setUp(self):
        # Directly under /tmp: the postgres user must be able to reach it when we run as root.
        self.pgdir = tempfile.mkdtemp(prefix="sd-pg-restart-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.pgdir, True)
        cp = subprocess.run(["bash", PG_CLUSTER, "start", self.pgdir], capture_output=True,
                            text=True, timeout=120)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.addCleanup(subprocess.run, ["bash", PG_CLUSTER, "stop", self.pgdir],
                        capture_output=True, timeout=120)
        self.url = cp.stdout.strip()
        self.data = tempdir(self)
        self.cli = lambda *a: harness.cli_ok(self.data, *a, "--store", self.url)
        self.cli("tenant", "create", "restart")
        self.cli("tenant", "limits", "restart", "--per-minute", "1000000", "--burst", "1000000")
        self.key = self.cli("key", "create", "restart", "--env", "test").stdout.strip().splitlines()[-1]
        self.server = Server(self.data, args=["--store", self.url, "--log-level", "warn"])
        self.addCleanup(self.server.kill)
        self.server.start()
        self.api = Api(self.server.port, "restart", self.key)

    def restart_pg(self):
        # -l: the restarted server writes to the cluster's log, not to a pipe of ours (which
        # it would hold open for its whole life).
        log = os.path.join(self.pgdir, "server.log")
        cp = subprocess.run(_as_owner([os.path.join(PGBIN, "pg_ctl"), "-D",
                                       os.path.join(self.pgdir, "pgdata"), "-l", log, "-m",
                                       "fast", "-w", "-t", "120", "restart"]),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=180)
        self.assertEqual(cp.returncode, 0, "pg_ctl restart failed (see %s)" % log)

    def test_server_restart_under_load(self):
        e = event()
        self.assertEqual(self.api.ingest({"events": [e]}).status, 202)
        accepted, failed, unexpected, reads = [], [], [], []
        lock = threading.Lock()
        stop = threading.Event()
        restarted = threading.Event()
        after_restart = []

        def writer(w):
            j = 0
            while not stop.is_set() and j < 2000:
                invs = ["R%d-%d-%d-%s" % (w, j, k, harness._RUN) for k in range(3)]
                j += 1
                try:
                    r = self.api.ingest({"sales": [sale(i, e["event_id"]) for i in invs]},
                                        timeout=60 * harness.TIME_SCALE)
                except Exception as ex:  # the hub must answer every request
                    with lock:
                        unexpected.append(repr(ex))
                    return
                with lock:
                    if r.status == 202:
                        accepted.append(invs)
                        if restarted.is_set():
                            after_restart.append(invs)
                    elif r.status in (500, 503):
                        failed.append(invs)
                    else:
                        unexpected.append(r)

        def reader():
            while not stop.is_set():
                try:
                    r = self.api.get("sales", query="limit=50", timeout=60 * harness.TIME_SCALE)
                except Exception as ex:
                    with lock:
                        unexpected.append(repr(ex))
                    return
                with lock:
                    reads.append(r.status)
                    if r.status not in (200, 500, 503):
                        unexpected.append(r)
                time.sleep(0.01)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        try:
            harness.wait_until(lambda: len(accepted) >= 50, 60 * harness.TIME_SCALE,
                               what="load before the restart")
            self.restart_pg()
            restarted.set()
            try:
                harness.wait_until(lambda: len(after_restart) >= 50, 90 * harness.TIME_SCALE,
                                   what="webhooks accepted again after the restart")
            except AssertionError:
                raise AssertionError("no webhook accepted after the restart: %d failed, "
                                     "unexpected %r, hub log:\n%s" % (
                                         len(failed), unexpected[:3],
                                         "\n".join(l for l in (self.server.stdout_lines + list(self.server.stderr_tail))
                                                   if 'msg="request"' not in l)[-4000:]))
        finally:
            stop.set()
            for t in threads:
                t.join(120 * harness.TIME_SCALE)
        self.assertEqual(unexpected, [])
        self.assertTrue(self.server.running(), "the hub exited")

        stored = [x["invoice_number"] for x in self.api.list_all("sales")[0]]
        self.assertEqual(len(stored), len(set(stored)), "a sale stored twice")
        stored = set(stored)
        for invs in accepted:
            for i in invs:
                self.assertIn(i, stored, "a sale answered 202 is missing")
        for invs in failed:
            got = [i in stored for i in invs]
            self.assertIn(got, ([True] * len(invs), [False] * len(invs)),
                          "a request answered with an error is half-stored")
        self.assertIn(200, reads)
        # Admin and CLI paths work again without restarting the hub.
        r = harness.http(self.server.port, "GET", "/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.api.get("events", e["event_id"]).status, 200)
        self.server.stop_ok(self)


if __name__ == "__main__":
    harness.main()
