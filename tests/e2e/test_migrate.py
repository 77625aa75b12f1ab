"""`stagedoor migrate --from DATA_DIR --to postgresql://…`: a season ingested through the API
(events, customers, sales with refunds, a deletion, an erasure, an idempotent request) moves
into a fresh PostgreSQL database while the hub still serves; the command prints one line per
table and a summary and exits 0; a second run into the same database is refused (exit 1,
nothing written); --verify compares again; usage errors exit 2; the control plane read through
--store shows the same tenant and key. Skipped without STAGEDOOR_TEST_PG (scripts/pg-cluster)."""

import os
import re
import shutil
import subprocess
import threading
import unittest
import uuid

import harness
from harness import cli, customer, event, sale, uid

CID = "opera"
LINE = re.compile(r"^([a-z_]+) +(\d+) rows  sha256 ([0-9a-f]{64})$")
PSQL_DIRS = ("/usr/lib/postgresql/15/bin",)


def psql_path():
    p = shutil.which("psql")
    if p:
        return p
    for d in PSQL_DIRS:
        if os.access(os.path.join(d, "psql"), os.X_OK):
            return os.path.join(d, "psql")
    return None


def db_url(admin, name):
    """The admin URL with its database replaced by name."""
    head, sep, query = admin.partition("?")
    scheme, _, rest = head.partition("://")
    hostpart = rest.split("/", 1)[0]
    return "%s://%s/%s%s%s" % (scheme, hostpart, name, sep, query)


class Migrate(unittest.TestCase):
    def setUp(self):
        self.admin = os.environ.get("STAGEDOOR_TEST_PG")
        if not self.admin:
            self.skipTest("STAGEDOOR_TEST_PG is not set (scripts/pg-cluster start DIR)")
        self.psql = psql_path()
        if not self.psql:
            self.skipTest("psql is not installed")
        self.db = "sd_e2e_migrate_" + uuid.uuid4().hex[:10]
        self.sql(self.admin, "CREATE DATABASE %s" % self.db)
        self.addCleanup(self.sql, self.admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db)
        self.url = db_url(self.admin, self.db)

    def sql(self, url, text):
        cp = subprocess.run([self.psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url,
                             "-c", text], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, timeout=60)
        if cp.returncode != 0:
            raise AssertionError("psql %r: %s" % (text, cp.stderr))
        return cp.stdout.strip()

    def ok(self, resp, status=202):
        if resp.status != status:
            self.fail("want HTTP %s, got %r" % (status, resp))
        return resp.json

    def season(self, api):
        evs = [event(uid("MEV")) for _ in range(5)]
        custs = [customer(uid("MCU"), first_name="Jo\\hn\t", last_name="Dœ") for _ in range(40)]
        self.ok(api.ingest({"events": evs, "customers": custs}))
        sales = []
        for i in range(240):
            sales.append(sale(uid("MINV"), event_id=evs[i % 5]["event_id"],
                              customer_id=custs[i % 40]["customer_id"] if i % 7 else "ANON",
                              quantity=1 + i % 3))
        for k in range(0, len(sales), 80):
            self.ok(api.ingest({"sales": sales[k:k + 80]}))
        refunds = [sale(uid("MREF"), event_id=s["event_id"], customer_id=s["customer_id"],
                        quantity=1, refund_of=s["invoice_number"]) for s in sales[1:20:3]]
        self.ok(api.ingest({"sales": refunds}, headers={"Idempotency-Key": uid("idem")}))
        self.ok(api.req("DELETE", "/v1/%s/sales/%s" % (CID, sales[2]["invoice_number"])), 200)
        self.ok(api.req("DELETE", "/v1/%s/customers/%s?erase=profile"
                        % (CID, custs[3]["customer_id"])), 200)
        return len(evs), len(sales) + len(refunds)

    def tables(self, stdout):
        rows = {}
        lines = [l for l in stdout.splitlines() if l.strip()]
        for l in lines[:-1]:
            m = LINE.match(l)
            self.assertIsNotNone(m, "not a table line: %r\n%s" % (l, stdout))
            rows[m.group(1)] = int(m.group(2))
        return rows, lines[-1]

    def test_migrate_a_season(self):
        data = harness.tempdir(self, prefix="sd-e2e-migrate-")
        harness.tenant_create(data, CID)
        key = harness.key_create(data, CID, "test")
        key_id = harness.key_list(data, CID)[0]["key_id"]
        server = harness.Server(data)
        self.addCleanup(server.kill)
        server.start()
        n_events, n_sales = self.season(server.api(CID, key))
        # The hub writes the key's first use within a second (then at most once a minute):
        # let it land before the snapshot, so the hub writes nothing after the copy.
        harness.wait_until(lambda: harness.key_list(data, CID)[0]["last_used"] != "-",
                           10 * harness.TIME_SCALE, what="key use recorded")

        # The hub keeps serving while the copy reads one snapshot of its files.
        cp = cli(None, "migrate", "--from", data, "--to", self.url, data=False, timeout=300)
        self.assertEqual(cp.returncode, 0, "stdout: %s\nstderr: %s" % (cp.stdout, cp.stderr))
        rows, summary = self.tables(cp.stdout)
        self.assertEqual(rows["events"], n_events)
        self.assertEqual(rows["sales"], n_sales - 1)  # one deleted
        self.assertGreaterEqual(rows["tombstones"], 2)  # the sale and the erased customer
        self.assertEqual(rows["tenants"], 1)
        self.assertEqual(rows["api_keys"], 1)
        self.assertGreaterEqual(rows["idempotency"], 1)
        self.assertEqual(rows["erasures"], 1)
        for t in ("customers", "profiles", "outbox_items", "inbound_raw", "quota_windows",
                  "connector_state", "segments"):
            self.assertIn(t, rows)
        self.assertRegex(summary, r"^migrated \d+ rows in \d+ tables: counts and checksums match"
                                  r" \(meta seq \d+\); copy [0-9.]+ s \(\d+ rows/s\), "
                                  r"verification [0-9.]+ s$")
        self.assertEqual(int(re.search(r"migrated (\d+) rows", summary).group(1)),
                         sum(rows.values()))
        self.assertEqual(int(re.search(r"in (\d+) tables", summary).group(1)), len(rows))
        # what PostgreSQL holds, read with psql
        self.assertEqual(int(self.sql(self.url, "SELECT count(*) FROM sales")), n_sales - 1)
        self.assertEqual(self.sql(self.url, "SELECT key_id FROM api_keys"), key_id)
        seq = self.sql(self.url, "SELECT v FROM meta WHERE k = 'seq'")
        self.assertIn("(meta seq %s)" % seq, summary)
        server.stop_ok(self)

        # --verify compares again: the same lines, "verified" in the summary.
        cp = cli(None, "migrate", "--verify", "--from", data, "--to", self.url, data=False,
                 timeout=300)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        rows2, summary2 = self.tables(cp.stdout)
        self.assertEqual(rows2, rows)
        self.assertTrue(summary2.startswith("verified "), summary2)

        # A second migrate into the same database is refused; nothing is written.
        cp = cli(None, "migrate", "--from", data, "--to", self.url, data=False, timeout=300)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn("not empty", cp.stderr)
        self.assertIn("no data was written", cp.stderr)
        self.assertEqual(int(self.sql(self.url, "SELECT count(*) FROM sales")), n_sales - 1)

        # A changed row is found by --verify (exit 1, the table named).
        self.sql(self.url, "UPDATE events SET doc = doc || ' ' WHERE seq = (SELECT min(seq) "
                           "FROM events)")
        cp = cli(None, "migrate", "--verify", "--from", data, "--to", self.url, data=False,
                 timeout=300)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn("table events differs", cp.stderr)
        self.assertRegex(cp.stdout, r"(?m)^events +\d+ rows  sha256 [0-9a-f]{64}  DIFFERS$")

        # The control plane on PostgreSQL: the same tenant and key.
        cp = cli(None, "tenant", "list", "--store", self.url, data=False)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn(CID, cp.stdout)
        cp = cli(None, "key", "list", CID, "--store", self.url, data=False)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn(key_id, cp.stdout)

    def test_migrate_while_the_hub_ingests(self):
        """The copy is one snapshot: sales keep arriving during it, and the verification (which
        compares PostgreSQL with that snapshot) still passes; what came later is not there."""
        data = harness.tempdir(self, prefix="sd-e2e-migrate-live-")
        harness.tenant_create(data, CID)
        key = harness.key_create(data, CID, "test")
        server = harness.Server(data)
        self.addCleanup(server.kill)
        server.start()
        api = server.api(CID, key)
        ev = event(uid("LEV"))
        self.ok(api.ingest({"events": [ev]}))
        stop = threading.Event()
        sent = []

        def writer():
            while not stop.is_set():
                batch = [sale(uid("LINV"), event_id=ev["event_id"]) for _ in range(50)]
                r = api.ingest({"sales": batch})
                if r.status == 202:
                    sent.extend(batch)

        t = threading.Thread(target=writer)
        t.start()
        try:
            harness.wait_until(lambda: len(sent) >= 500, 60, what="sales before the copy")
            cp = cli(None, "migrate", "--from", data, "--to", self.url, data=False, timeout=300)
            after = len(sent)  # a batch accepted after the command ended came after its snapshot
            harness.wait_until(lambda: len(sent) > after, 60, what="sales after the copy")
        finally:
            stop.set()
            t.join()
        self.assertEqual(cp.returncode, 0, "stdout: %s\nstderr: %s" % (cp.stdout, cp.stderr))
        rows, _ = self.tables(cp.stdout)
        self.assertGreaterEqual(rows["sales"], 500)
        self.assertLess(rows["sales"], len(sent))
        self.assertEqual(int(self.sql(self.url, "SELECT count(*) FROM sales")), rows["sales"])
        # meta seq is the snapshot's last number: every copied row is at or below it
        self.assertEqual(self.sql(self.url, "SELECT v FROM meta WHERE k = 'seq'"),
                         self.sql(self.url, "SELECT greatest((SELECT max(seq) FROM sales),"
                                            " (SELECT max(seq) FROM events))"))

    def test_usage_and_missing_data(self):
        for args in (["migrate"], ["migrate", "--from", "/tmp"], ["migrate", "--to", self.url],
                     ["migrate", "--from", "/tmp", "--to", self.url, "extra"]):
            cp = cli(None, *args, data=False)
            self.assertEqual(cp.returncode, 2, "%r: %s" % (args, cp.stderr))
        empty = harness.tempdir(self, prefix="sd-e2e-migrate-empty-")
        cp = cli(None, "migrate", "--from", empty, "--to", self.url, data=False)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("holds no stagedoor.db", cp.stderr)
        cp = cli(None, "migrate", "--help", data=False)
        self.assertEqual(cp.returncode, 0)
        self.assertIn("--from DATA_DIR --to postgresql://", cp.stdout)


if __name__ == "__main__":
    harness.main()
