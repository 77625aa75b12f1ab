"""reject_file in two phases (check, then publish in bounded write jobs), with a local drop
folder:

  - a crash in the middle of a publish (fault point csv_publish_exit: the process ends right
    after a publish job committed, as a kill -9 there would) leaves the rows of the committed
    jobs stored and the cursor "publishing" inside the file; the restarted hub resumes the
    publish there without checking or refusing the file again, and every row ends up stored
    exactly once;
  - a reference deleted between the check and the publish (fault point csv_after_check holds
    the publish until the test says go) stops the publish with nothing of the refused job
    stored, the file stays in the drop folder and the run's error names the row; once the
    event exists again, the next run stores the whole file;
  - a file with a bad reference is refused by the check with nothing stored, and a webhook
    request during a publish is answered (the writer takes it between publish jobs).

Run: python3 tests/e2e/test_csv_publish.py --bin build/debug/stagedoor
"""

import json
import os
import sqlite3
import threading

import harness

TS = harness.TIME_SCALE
WAIT = 60 * TS
HEADER = ("invoice_number,event_id,customer_id,purchase_datetime,ticket_category,quantity,"
          "sales_price,currency")


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def sales_csv(prefix, n, events):
    rows = [HEADER]
    rows += ["%s%06d,%s,ANON,2025-04-15T11:08:42Z,regular,%d,%d.50,EUR"
             % (prefix, i, events[i % len(events)], 1 + i % 4, 20 + i % 80) for i in range(n)]
    return "\n".join(rows) + "\n"


class Publish(harness.ServerCase):
    TENANTS = {"pub": ["test"]}
    FAULT = None

    @classmethod
    def setUpClass(cls):
        cls.start_with_fault(cls.FAULT, first=True)

    @classmethod
    def start_with_fault(cls, fault, first=False):
        old = os.environ.get("STAGEDOOR_FAULT")
        if fault:
            os.environ["STAGEDOOR_FAULT"] = fault
        else:
            os.environ.pop("STAGEDOOR_FAULT", None)
        try:
            if first:
                super().setUpClass()
            else:
                cls.server = harness.Server(cls.data)
                cls.addClassCleanup(cls.server.kill)
                cls.server.start()
                cls.port = cls.server.port
        finally:
            if old is None:
                os.environ.pop("STAGEDOOR_FAULT", None)
            else:
                os.environ["STAGEDOOR_FAULT"] = old
        cls.token = admin_token(cls.data)

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1" + path, body=body, key=self.token)

    def status(self, cid):
        r = self.admin("GET", "/tenants/pub/connectors/%s" % cid)
        self.assertStatus(r, 200)
        return r.json["status"]

    def add(self, folder):
        r = self.admin("POST", "/tenants/pub/connectors",
                       {"type": "csv_drop", "environment": "test", "schedule": "every 1h",
                        "settings": {"folder": folder, "settle_seconds": 0}})
        self.assertStatus(r, 201)
        cid = r.json["connector_id"]
        harness.wait_until(lambda: (lambda s: s["last_run"] and s["state"] != "running")(
            self.status(cid)), WAIT, interval=0.05, what="first run")
        return cid

    def folder(self):
        d = harness.tempdir(self)
        os.chmod(d, 0o755)
        return d

    @staticmethod
    def drop(folder, name, text):
        tmp = os.path.join(folder, "." + name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(folder, name))

    def wait_ack(self, folder, name, where="processed"):
        path = os.path.join(folder, where, name + ".ack.json")
        harness.wait_until(lambda: os.path.exists(path), WAIT, interval=0.05,
                           what="%s/%s.ack.json" % (where, name))
        with open(path) as f:
            return json.load(f)

    def events(self, ids):
        r = self.api("pub").ingest({"events": [harness.event(e) for e in ids]})
        self.assertStatus(r, 202)

    def stored(self, prefix):
        """Sales of this prefix in the database file, read directly (also with no server)."""
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.data, "stagedoor.db"),
                             uri=True, timeout=30)
        try:
            return db.execute("SELECT count(*), count(DISTINCT invoice_number) FROM sales"
                              " WHERE invoice_number LIKE ?", (prefix + "%",)).fetchone()
        finally:
            db.close()

    def cursor_in_db(self, cid):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.data, "stagedoor.db"),
                             uri=True, timeout=30)
        try:
            row = db.execute("SELECT doc FROM connector_state WHERE connector_id = ?",
                             (cid,)).fetchone()
        finally:
            db.close()
        return json.loads(row[0]).get("cursor") or {}


class PublishCrash(Publish):
    # the first publish job of the sales file commits, then the process ends
    FAULT = "csv_publish_exit:1"

    def test_crash_mid_publish_resumes_and_stores_every_row_once(self):
        n = 110000  # more than one publish job (at most 100,000 rows each)
        events = ["PC-E%d" % i for i in range(5)]
        self.events(events)
        folder = self.folder()
        cid = self.add(folder)
        self.drop(folder, "sales.csv", sales_csv("PC-", n, events))
        rc = self.server.wait_exit(WAIT)
        self.assertEqual(rc, 99, "the fault point did not end the process\n%s"
                         % self.server.diagnostics())
        total, distinct = self.stored("PC-")
        self.assertGreater(total, 0, "nothing published before the crash")
        self.assertLess(total, n, "the whole file was one job")
        cur = self.cursor_in_db(cid)
        self.assertEqual((cur.get("file"), cur.get("phase"), cur.get("done")),
                         ("sales.csv", "publishing", False), cur)
        self.assertEqual(cur.get("stored"), total, cur)
        self.assertTrue(os.path.exists(os.path.join(folder, "sales.csv")))

        self.start_with_fault(None)
        ack = self.wait_ack(folder, "sales.csv")
        self.assertEqual((ack["status"], ack["rows_read"], ack["records_stored"],
                          ack["records_unchanged"], ack["records_rejected"]),
                         ("processed", n, n, 0, 0), ack)
        self.assertEqual(self.stored("PC-"), (n, n))
        # the change feed (pages by sequence number) has every row once: none skipped or
        # repeated across the crash and the resumed publish
        feed, _ = self.api("pub").list_all("sales", limit=1000)
        invs = [x["invoice_number"] for x in feed]
        self.assertEqual(len(invs), n)
        self.assertEqual(set(invs), {"PC-%06d" % i for i in range(n)})
        s = self.api("pub").get("sales", "PC-%06d" % 12345).json
        self.assertEqual((s["event_id"], s["quantity"], s["sales_price"]),
                         (events[12345 % 5], 1 + 12345 % 4, "%d.50" % (20 + 12345 % 80)))
        st = harness.wait_until(lambda: (lambda s: s if s["state"] != "running" else None)(
            self.status(cid)), WAIT, interval=0.05, what="idle")
        self.assertEqual(st["state"], "ok", st)
        self.assertTrue(st["cursor"]["done"], st)


class PublishAfterCheck(Publish):
    # every checked sales file waits for DATA/connectors/ID/fault-csv-go before its publish
    FAULT = "csv_after_check"

    def go(self, cid):
        work = os.path.join(self.data, "connectors", cid)
        harness.wait_until(lambda: os.path.exists(os.path.join(work, "fault-csv-checked")),
                           WAIT, interval=0.05, what="the check to end")
        with open(os.path.join(work, "fault-csv-go"), "w"):
            pass

    def test_reference_deleted_between_check_and_publish(self):
        self.events(["RD-E1", "RD-E2"])
        folder = self.folder()
        cid = self.add(folder)
        self.drop(folder, "sales.csv", sales_csv("RD-", 3, ["RD-E1", "RD-E2"]))
        work = os.path.join(self.data, "connectors", cid)
        harness.wait_until(lambda: os.path.exists(os.path.join(work, "fault-csv-checked")),
                           WAIT, interval=0.05, what="the check to end")
        self.assertEqual(self.stored("RD-"), (0, 0), "stored before the publish")
        r = self.api("pub").req("DELETE", "/v1/pub/events/RD-E2")
        self.assertIn(r.status, (200, 204), r)
        with open(os.path.join(work, "fault-csv-go"), "w"):
            pass
        st = harness.wait_until(
            lambda: (lambda s: s if s["state"] != "running" and s.get("last_error") else None)(
                self.status(cid)), WAIT, interval=0.05, what="the run to fail")
        self.assertIn("line 3", st["last_error"], st)
        self.assertIn("RD-E2", st["last_error"], st)
        # nothing of the file half stored: the refused job was undone, the file stays
        self.assertEqual(self.stored("RD-"), (0, 0))
        self.assertTrue(os.path.exists(os.path.join(folder, "sales.csv")))
        self.assertFalse(os.path.exists(os.path.join(folder, "failed", "sales.csv.ack.json")))
        # (the refused job was the first: no cursor names the file yet, so the next run
        # checks it again; had jobs committed before, it would resume after them)
        self.assertFalse(self.cursor_in_db(cid).get("done"))

        # the event is back: the next run goes on with the publish (no new check, no refusal)
        self.events(["RD-E2"])
        r = self.admin("POST", "/tenants/pub/connectors/%s/run" % cid)
        self.assertIn(r.status, (200, 202), r)
        self.go(cid)  # checked again (no publish job had committed), then published
        ack = self.wait_ack(folder, "sales.csv")
        self.assertEqual((ack["status"], ack["records_stored"], ack["records_rejected"]),
                         ("processed", 3, 0), ack)
        self.assertEqual(self.stored("RD-"), (3, 3))

    def test_bad_reference_refused_by_the_check_nothing_stored(self):
        self.events(["BR-E1"])
        folder = self.folder()
        cid = self.add(folder)
        text = sales_csv("BR-", 3000, ["BR-E1"]) + \
            "BR-LAST,BR-NOPE,ANON,2025-04-15T11:08:42Z,regular,1,20.00,EUR\n"
        self.drop(folder, "sales.csv", text)
        ack = self.wait_ack(folder, "sales.csv", where="failed")
        self.assertEqual((ack["status"], ack["records_stored"], ack["records_rejected"]),
                         ("failed", 0, 1), ack)
        with open(os.path.join(folder, "failed", "sales.csv.errors.csv")) as f:
            errs = f.read()
        self.assertIn("3002,", errs)
        self.assertIn("BR-NOPE", errs)
        self.assertEqual(self.stored("BR-"), (0, 0))
        self.assertFalse(os.path.exists(os.path.join(self.data, "connectors", cid,
                                                     "fault-csv-checked")))

    def test_webhook_answered_during_publish(self):
        events = ["WH-E%d" % i for i in range(3)]
        self.events(events)
        folder = self.folder()
        cid = self.add(folder)
        n = 120000  # more than one write job (at most 100,000 rows each)
        self.drop(folder, "sales.csv", sales_csv("WH-", n, events))
        work = os.path.join(self.data, "connectors", cid)
        harness.wait_until(lambda: os.path.exists(os.path.join(work, "fault-csv-checked")),
                           WAIT, interval=0.05, what="the check to end")
        answered = []
        done = threading.Event()

        def webhook():
            # one sale every 50 ms from the end of the check until the file's ack
            i = 0
            while not done.is_set():
                r = self.api("pub").ingest({"sales": [harness.sale("WH-HOOK-%d" % i,
                                                                   event_id=events[0])]})
                answered.append((r.status, self.stored("WH-0")[0]))
                i += 1
                done.wait(0.05)
        t = threading.Thread(target=webhook)
        with open(os.path.join(work, "fault-csv-go"), "w"):
            pass
        t.start()
        try:
            ack = self.wait_ack(folder, "sales.csv")
        finally:
            done.set()
            t.join(WAIT)
        self.assertEqual(ack["records_stored"], n, ack)
        self.assertTrue(answered)
        self.assertEqual([a for a in answered if a[0] != 202], [], "a webhook request failed")
        # the webhook did not wait for the whole file: answered while part of it was stored
        self.assertTrue([a for a in answered if 0 < a[1] < n],
                        "no webhook answered in the middle of the publish: %r" % answered)


if __name__ == "__main__":
    harness.main()
