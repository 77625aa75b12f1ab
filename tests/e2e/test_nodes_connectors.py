"""Several nodes on one store: each connector run is done by one node (README "Several nodes on
one store"). The nodes are `stagedoor serve` processes on one SQLite data directory; the
connector is "test_runs" (tests/connectors/test_runs: a run appends "start N PID" to a log file,
holds, commits its cursor N + 1 with the customer "run-N-PID", then appends "done N PID").
Leases last 2 s (STAGEDOOR_RUN_LEASE_SECONDS). store suite: both backends (on PostgreSQL every
node is given the one database of the data directory).

  - two nodes, five "run now" requests one after the other (each node sees each request): every
    run is done exactly once, and exactly one customer per run is stored;
  - three nodes, a run that holds 3 s: the node running it is killed with SIGKILL mid-run;
    while it runs every node (and the CLI) shows it "running", with the node that runs it;
    another node takes the run over and finishes it; the killed node's run stored nothing, the
    run's one customer is the survivor's, and the remaining nodes stop cleanly."""

import json
import os
import time
import unittest

import harness

os.environ["STAGEDOOR_RUN_LEASE_SECONDS"] = "2"
TS = harness.TIME_SCALE


class NodesConnectors(unittest.TestCase):
    def setUp(self):
        self.data = harness.tempdir(self)
        harness.tenant_create(self.data, "venue")
        self.key = harness.key_create(self.data, "venue", "test")
        self.log = os.path.join(self.data, "runs.log")
        self.nodes = []

    def start_nodes(self, n):
        for _ in range(n):
            srv = harness.Server(self.data)
            self.addCleanup(srv.kill)
            srv.start()
            self.nodes.append(srv)

    def add_connector(self, hold_ms):
        settings = {"log": self.log, "hold_ms": hold_ms}
        cp = harness.cli_ok(self.data, "connector", "add", "venue", "--type", "test_runs",
                            "--env", "test", "--schedule", "manual", "--settings",
                            json.dumps(settings))
        return cp.stdout.strip().splitlines()[-1].strip()

    def lines(self, what=None, n=None, pid=None):
        try:
            with open(self.log) as f:
                rows = [l.split() for l in f if l.strip()]
        except FileNotFoundError:
            return []
        return [r for r in rows if (what is None or r[0] == what)
                and (n is None or int(r[1]) == n) and (pid is None or int(r[2]) == pid)]

    def customers(self):
        alive = [srv for srv in self.nodes if srv.running()]
        api = harness.Api(alive[0].port, "venue", self.key)
        stored, _ = api.list_all("customers", limit=1000)
        return sorted(c["customer_id"] for c in stored)

    def test_each_run_once_on_two_nodes(self):
        self.start_nodes(2)
        cid = self.add_connector(200)
        pids = {srv.proc.pid for srv in self.nodes}
        for k in range(5):
            harness.cli_ok(self.data, "connector", "run", cid)
            harness.wait_until(lambda: self.lines("done", k), 20 * TS, interval=0.05,
                               what="run %d done" % k)
        time.sleep(3)  # beyond a lease: a second node would have repeated a run by now
        for k in range(5):
            self.assertEqual(len(self.lines("start", k)), 1, self.lines())
            self.assertEqual(len(self.lines("done", k)), 1, self.lines())
        self.assertEqual(len(self.lines("start")), 5, self.lines())
        self.assertTrue({int(r[2]) for r in self.lines()} <= pids)
        got = self.customers()
        self.assertEqual(len(got), 5, got)
        self.assertEqual(sorted(int(c.split("-")[1]) for c in got), [0, 1, 2, 3, 4])
        for srv in self.nodes:
            srv.stop_ok()

    def test_sigkill_mid_run_taken_over(self):
        self.start_nodes(3)
        cid = self.add_connector(3000)
        harness.cli_ok(self.data, "connector", "run", cid)
        first = harness.wait_until(lambda: self.lines("start", 0), 20 * TS, interval=0.05,
                                   what="run 0 started")
        victim_pid = int(first[0][2])
        victim = [srv for srv in self.nodes if srv.proc.pid == victim_pid]
        self.assertEqual(len(victim), 1, "the run's node is not one of ours: %r" % first)
        # Every node shows the run (its run lease), the others with the node that runs it.
        with open(os.path.join(self.data, "admin.token")) as f:
            admin = f.read().strip()
        for srv in self.nodes:
            r = harness.http(srv.port, "GET", "/admin/v1/tenants/venue/connectors/" + cid,
                             key=admin)
            self.assertEqual(r.status, 200, r)
            status = r.json["status"]
            self.assertEqual(status["state"], "running", (srv.proc.pid, status))
            if srv is not victim[0]:
                self.assertIn("/%d/" % victim_pid, status.get("running_on", ""), status)
        cp = harness.cli_ok(self.data, "connector", "show", cid)
        self.assertEqual(json.loads(cp.stdout)["status"]["state"], "running")
        time.sleep(0.5)
        victim[0].kill()  # SIGKILL mid-run
        survivors = [srv for srv in self.nodes if srv is not victim[0]]
        done = harness.wait_until(lambda: self.lines("done", 0), 30 * TS, interval=0.05,
                                  what="run 0 finished by another node")
        self.assertEqual(len(done), 1, self.lines())
        self.assertIn(int(done[0][2]), {srv.proc.pid for srv in survivors})
        self.assertEqual(self.lines("done", 0, victim_pid), [])
        time.sleep(3)  # nothing more comes: no node runs it again
        self.assertEqual(len(self.lines("start", 0)), 2, self.lines())
        self.assertEqual(len(self.lines("done")), 1, self.lines())
        got = self.customers()
        self.assertEqual(got, ["run-0-%s" % done[0][2]])
        cp = harness.cli_ok(self.data, "connector", "show", cid)
        self.assertEqual(json.loads(cp.stdout)["status"]["state"], "ok")
        for srv in survivors:
            srv.stop_ok()


if __name__ == "__main__":
    harness.main()
