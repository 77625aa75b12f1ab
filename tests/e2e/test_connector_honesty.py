"""Connectors say what happened (issue #8 §2 and §4), end to end with a local drop folder and a
local feed server:

  - a customers CSV with a `city` column (an event field) keeps it: GET shows it and a segment
    rule {"customer": {"city": …}} matches (it was dropped silently);
  - the same file sent again under the same name is imported again and its ack says
    records_unchanged (it got the first import's counts); acks are named NAME.csv.ack.json;
    re-sent events and customers files too (they reported their rows as stored again), and the
    connector's status counts them (records_unchanged, last_run_stats.records_unchanged);
  - a run in which every file was refused is `failed` with last_error naming the file (it said
    `ok`); skip_rows with skipped rows sets last_warning (it stayed null);
  - a `manual` connector does not run when a file is dropped, only when asked;
  - the "connector run finished" log line prints the reason beside a negative errno;
  - one tenant's four slow feed connectors do not hold back another tenant's due connector (the
    scheduler ran at most four at once for everybody, picked by due time).

Run: python3 tests/e2e/test_connector_honesty.py --bin build/debug/stagedoor
"""

import json
import os
import shutil
import time

import harness
from fake_sources import FakeSources

TS = harness.TIME_SCALE
WAIT = 30 * TS
SLOW_S = 12 * TS  # how long tenant A's feed answers take


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


class Honesty(harness.ServerCase):
    TENANTS = {t: ["test"] for t in ("h_city", "h_resend", "h_resend_ec", "h_refused", "h_skip", "h_manual",
                                     "h_log", "h_slow_a", "h_slow_b")}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = admin_token(cls.data)

    # -- helpers
    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1" + path, body=body, key=self.token)

    def status(self, tenant, cid):
        r = self.admin("GET", "/tenants/%s/connectors/%s" % (tenant, cid))
        self.assertStatus(r, 200)
        return r.json["status"]

    def idle_status(self, tenant, cid):
        return harness.wait_until(
            lambda: (lambda s: s if s["state"] not in ("running", "never_run") else None)(
                self.status(tenant, cid)), WAIT, interval=0.05, what="connector %s idle" % cid)

    def folder(self):
        d = harness.tempdir(self)
        os.chmod(d, 0o755)
        return d

    def add(self, tenant, ctype, settings, schedule="every 1m", mapping=None, wait_first=True):
        body = {"type": ctype, "environment": "test", "schedule": schedule, "settings": settings}
        if mapping is not None:
            body["mapping"] = mapping
        r = self.admin("POST", "/tenants/%s/connectors" % tenant, body)
        self.assertStatus(r, 201)
        cid = r.json["connector_id"]
        if wait_first:
            # a csv_drop connector that never ran looks at its folder once: let that end
            harness.wait_until(lambda: (lambda s: s["last_run"] and s["state"] != "running")(
                self.status(tenant, cid)), WAIT, interval=0.05, what="first run")
        return cid

    @staticmethod
    def drop(folder, name, text):
        """Write folder/NAME the careful way: a hidden temporary name, then rename."""
        tmp = os.path.join(folder, "." + name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(folder, name))

    @staticmethod
    def acks(folder, where="processed"):
        d = os.path.join(folder, where)
        return sorted(n for n in os.listdir(d) if n.endswith(".ack.json")) if os.path.isdir(d) \
            else []

    def wait_ack(self, folder, name, where="processed"):
        path = os.path.join(folder, where, name + ".ack.json")
        harness.wait_until(lambda: os.path.exists(path), WAIT, interval=0.05,
                           what="%s/%s.ack.json" % (where, name))
        with open(path) as f:
            return json.load(f)

    def log_lines(self, needle):
        lines = list(self.server.stdout_lines) + list(self.server.stderr_tail)
        return [l for l in lines if needle in l]

    # -- §4: a column named as another kind's field is kept
    def test_city_column_in_customers_file_is_kept_and_matched(self):
        folder = self.folder()
        self.add("h_city", "csv_drop", {"folder": folder, "settle_seconds": 0})
        self.drop(folder, "customers.csv",
                  "customer_id,email,city,venue\n"
                  "HC-1,hc-1@example.org,K\u00f6ln,Oper\n"
                  "HC-2,hc-2@example.org,Berlin,\n")
        ack = self.wait_ack(folder, "customers.csv")
        self.assertEqual(ack["records_stored"], 2, ack)
        api = self.api("h_city")
        r = api.get("customers", "HC-1")
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("city"), "K\u00f6ln", r.json)
        self.assertEqual(r.json.get("venue"), "Oper", r.json)
        r = api.req("POST", "/v1/h_city/segments",
                    body={"segment_name": "koeln", "rules": {"customer": {"city": "k\u00f6ln"}}},
                    headers={"Content-Type": "application/json"})
        self.assertStatus(r, 201)
        self.assertEqual(r.json["member_count"], 1, r.json)
        m = api.req("GET", "/v1/h_city/segments/%s/members" % r.json["segment_id"])
        self.assertStatus(m, 200)
        ids = [s["customer_id"] for rec in m.json["data"] for s in rec["source_ids"]]
        self.assertEqual(ids, ["HC-1"])

    # -- §4: a re-sent copy reports its rows as unchanged; ack names
    def test_resent_copy_is_reported_unchanged(self):
        folder = self.folder()
        cid = self.add("h_resend", "csv_drop", {"folder": folder, "settle_seconds": 0})
        self.drop(folder, "events.csv",
                  "event_id,title,date,time,venue,hall,capacity,city\n"
                  "HR-E,Otello,2025-10-03,19:30:00,State Opera,Hall HR,1250,Berlin\n")
        self.wait_ack(folder, "events.csv")
        body = ("invoice_number,event_id,customer_id,purchase_datetime,ticket_category,quantity,"
                "sales_price,currency\n" + "".join(
                    "HR-%d,HR-E,ANON,2025-04-15T11:08:42Z,regular,1,%d.00,EUR\n" % (i, 50 + i)
                    for i in range(5)))
        self.drop(folder, "sales.csv", body)
        first = self.wait_ack(folder, "sales.csv")
        # the documented name: the file's full name plus .ack.json
        self.assertEqual(self.acks(folder), ["events.csv.ack.json", "sales.csv.ack.json"])
        self.assertEqual((first["records_stored"], first["records_unchanged"]), (5, 0), first)
        self.idle_status("h_resend", cid)

        self.drop(folder, "sales.csv", body)  # the venue sends the same file again
        harness.wait_until(lambda: len(self.acks(folder)) == 3, WAIT, interval=0.05,
                           what="the second ack")
        second_name = [n for n in self.acks(folder)
                       if n not in ("events.csv.ack.json", "sales.csv.ack.json")][0]
        with open(os.path.join(folder, "processed", second_name)) as f:
            second = json.load(f)
        self.assertEqual(second["sha256"], first["sha256"])
        self.assertEqual(second["rows_read"], 5, second)
        self.assertEqual(second["records_stored"], 0, second)
        self.assertEqual(second["records_unchanged"], 5, second)

    def wait_new_ack(self, folder, prefix, known):
        """The ack of a re-sent copy (its name gets the time appended): the first ack named
        PREFIX… that is not in `known`."""
        found = harness.wait_until(
            lambda: [n for n in self.acks(folder) if n.startswith(prefix) and n not in known],
            WAIT, interval=0.05, what="a new ack for %s" % prefix)
        with open(os.path.join(folder, "processed", found[0])) as f:
            return json.load(f)

    def test_resent_events_and_customers_are_reported_unchanged(self):
        folder = self.folder()
        cid = self.add("h_resend_ec", "csv_drop", {"folder": folder, "settle_seconds": 0})
        events = ("event_id,title,date,time,venue,hall,capacity,city\n" + "".join(
            "HRE-%d,Otello,2025-10-0%d,19:30:00,State Opera,Hall A,1250,Berlin\n" % (i, i + 1)
            for i in range(2)))
        customers = "customer_id,email,first_name\n" + "".join(
            "HRC-%d,hrc-%d@example.org,Ann\n" % (i, i) for i in range(3))
        self.drop(folder, "events.csv", events)
        first_ev = self.wait_ack(folder, "events.csv")
        self.drop(folder, "customers.csv", customers)
        first_cu = self.wait_ack(folder, "customers.csv")
        self.assertEqual((first_ev["records_stored"], first_ev["records_unchanged"]), (2, 0),
                         first_ev)
        self.assertEqual((first_cu["records_stored"], first_cu["records_unchanged"]), (3, 0),
                         first_cu)
        harness.wait_until(lambda: self.status("h_resend_ec", cid)["records_in"] == 5, WAIT,
                           interval=0.05, what="the first files counted")
        st = self.idle_status("h_resend_ec", cid)
        self.assertEqual(st["records_unchanged"], 0, st)

        known = self.acks(folder)
        self.drop(folder, "events.csv", events)  # the venue sends both files again
        self.drop(folder, "customers.csv", customers)
        second_ev = self.wait_new_ack(folder, "events.csv", known)
        second_cu = self.wait_new_ack(folder, "customers.csv", known)
        for first, second, n in ((first_ev, second_ev, 2), (first_cu, second_cu, 3)):
            self.assertEqual(second["sha256"], first["sha256"])
            self.assertEqual(second["rows_read"], n, second)
            self.assertEqual(second["records_stored"], 0, second)
            self.assertEqual(second["records_unchanged"], n, second)
            self.assertEqual(second["records_rejected"], 0, second)
        # the status counts them: totals, and the last run's (both files in one run or two)
        st = harness.wait_until(
            lambda: (lambda s: s if s["records_in"] == 10 and s["state"] != "running" else None)(
                self.status("h_resend_ec", cid)), WAIT, interval=0.05, what="the copies counted")
        self.assertEqual(st["records_unchanged"], 5, st)
        self.assertIn(st["last_run_stats"]["records_unchanged"], (3, 5), st)
        self.assertEqual(st["last_run_stats"]["records_unchanged"],
                         st["last_run_stats"]["records_in"], st)

    def only_connector(self, tenant):
        r = self.admin("GET", "/tenants/%s/connectors" % tenant)
        self.assertStatus(r, 200)
        items = r.json["data"] if isinstance(r.json, dict) else r.json
        self.assertEqual(len(items), 1, r.json)
        return items[0]["connector_id"]

    # -- §4: honest status
    def test_every_file_refused_is_an_error(self):
        folder = self.folder()
        cid = self.add("h_refused", "csv_drop", {"folder": folder, "settle_seconds": 0})
        self.drop(folder, "customers_bad.csv", "customer_id,email\nHF-1,not-an-email\n")
        self.wait_ack(folder, "customers_bad.csv", where="failed")
        st = self.idle_status("h_refused", cid)
        self.assertEqual(st["state"], "failed", st)
        self.assertIn("customers_bad.csv", st["last_error"] or "", st)
        # a good file afterwards: ok again, nothing to warn about
        self.drop(folder, "customers_good.csv", "customer_id,email\nHF-2,hf-2@example.org\n")
        self.wait_ack(folder, "customers_good.csv")
        st = harness.wait_until(
            lambda: (lambda s: s if s["state"] == "ok" else None)(self.status("h_refused", cid)),
            WAIT, interval=0.05, what="state ok")
        self.assertIsNone(st["last_error"], st)
        self.assertIsNone(st["last_warning"], st)

    def test_skip_rows_sets_last_warning(self):
        folder = self.folder()
        cid = self.add("h_skip", "csv_drop", {"folder": folder, "settle_seconds": 0,
                                              "policy": "skip_rows"})
        self.drop(folder, "customers.csv",
                  "customer_id,email\nHS-1,hs-1@example.org\nHS-2,bad\nHS-3,bad-too\n")
        ack = self.wait_ack(folder, "customers.csv")
        self.assertEqual((ack["records_stored"], ack["records_rejected"]), (1, 2), ack)
        st = harness.wait_until(
            lambda: (lambda s: s if s["state"] != "running" and s["last_warning"] else None)(
                self.status("h_skip", cid)), WAIT, interval=0.05, what="last_warning")
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(st["last_warning"],
                         "2 rows skipped in customers.csv, see processed/customers.csv.errors.csv",
                         st)
        self.assertTrue(os.path.exists(os.path.join(folder, "processed",
                                                    "customers.csv.errors.csv")))

    # -- §4: manual means only when asked
    def test_manual_connector_ignores_dropped_files(self):
        folder = self.folder()
        cid = self.add("h_manual", "csv_drop", {"folder": folder, "settle_seconds": 0},
                       schedule="manual", wait_first=False)
        self.drop(folder, "customers.csv", "customer_id,email\nHM-1,hm-1@example.org\n")
        # A control connector on the same kind of folder, not manual, takes its file: by the
        # time it has, the manual one would have had every chance to take its own.
        control = self.folder()
        self.add("h_manual", "csv_drop", {"folder": control, "settle_seconds": 0})
        self.drop(control, "customers.csv", "customer_id,email\nHM-2,hm-2@example.org\n")
        self.wait_ack(control, "customers.csv")
        time.sleep(1.0 * TS)  # a few scheduler ticks more
        self.assertTrue(os.path.exists(os.path.join(folder, "customers.csv")))
        self.assertEqual(self.acks(folder), [])
        self.assertEqual(self.status("h_manual", cid)["state"], "never_run")
        # asked: it runs
        r = self.admin("POST", "/tenants/h_manual/connectors/%s/run" % cid)
        self.assertStatus(r, 202)
        ack = self.wait_ack(folder, "customers.csv")
        self.assertEqual(ack["records_stored"], 1, ack)

    # -- §4: log lines give the reason
    def test_run_log_line_gives_errno_reason(self):
        folder = self.folder()
        cid = self.add("h_log", "csv_drop", {"folder": folder, "settle_seconds": 0},
                       schedule="manual", wait_first=False)
        shutil.rmtree(folder)
        r = self.admin("POST", "/tenants/h_log/connectors/%s/run" % cid)
        self.assertStatus(r, 202)
        st = self.idle_status("h_log", cid)
        self.assertEqual(st["state"], "failed", st)
        line = harness.wait_until(lambda: [l for l in self.log_lines("connector run finished")
                                           if cid in l], WAIT, interval=0.1,
                                  what="the run's log line")[0]
        self.assertIn('err=-2 reason="No such file or directory"', line)

    # -- §2: one tenant's slow runs do not starve another's
    def test_slow_tenant_does_not_starve_another(self):
        with FakeSources() as fs:
            doc = json.dumps({"events": []})
            a_paths = ["/slow/a%d.json" % i for i in range(4)]
            for p in a_paths:
                fs.add_feed(p, doc, "application/json")
                fs.inject(p, [("sleep", SLOW_S)])
            fs.add_feed("/b.json", doc, "application/json")

            def settings(p):
                return {"url": fs.address(p), "timeout_seconds": int(SLOW_S * 3) + 5,
                        "max_attempts": 1}
            for p in a_paths:
                self.add("h_slow_a", "feed", settings(p), wait_first=False)
            # tenant A's slow runs have started (two of them at least: all four before)
            harness.wait_until(lambda: sum(len(fs.requests(p)) for p in a_paths) >= 2, WAIT,
                               interval=0.05, what="tenant A's runs")
            self.add("h_slow_b", "feed", settings("/b.json"), wait_first=False)
            fs.wait_requests(1, path="/b.json", timeout=WAIT + 2 * SLOW_S)
            # B's feed was fetched while every A request was still waiting for its answer:
            # before the fix B had to wait for one of them to end.
            answered = [r for p in a_paths for r in fs.requests(p) if r.status is not None]
            self.assertEqual(answered, [], "tenant B ran only after tenant A's runs ended")


if __name__ == "__main__":
    harness.main()
