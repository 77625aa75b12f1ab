"""Bootstrap from an Archtics file extract, end to end through the real binary:

  - the simulator's extract (accounts, events, sales with returns; venue-local times, prices as
    decimal text) is dropped into a csv_drop folder under the documented mapping
    (docs/connectors/archtics-extract-mapping.json) and the source label "archtics": every row
    is stored, none refused; local times become their UTC instants in the venue's zone, prices
    are exact, returns are refund records of the sale they return;
  - what the hub then holds equals the simulator's world at the cut-off, record by record.

Run: python3 tests/e2e/test_archtics_bootstrap.py --bin build/debug/stagedoor
"""

import csv
import io
import json
import os
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from sim.archtics import Simulator  # noqa: E402

TS = harness.TIME_SCALE
WAIT = 60 * TS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAPPING_FILE = os.path.join(ROOT, "docs", "connectors", "archtics-extract-mapping.json")
ZONE = "America/New_York"
KEY = "k-boot-1"
DSN = "venue_boot"
CUTOFF = "2026-03-01 18:00"   # venue-local; the simulator's clock starts 2026-03-02 09:00
SOURCE = "archtics"
# the extract files in the order csv_drop takes them, and the file name that gives their kind
FILES = (("events", "events_extract.csv"), ("accounts", "customers_extract.csv"),
         ("sales", "sales_extract.csv"))


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def utc_text(local):
    """A venue-local "YYYY-MM-DD HH:MM" as the hub stores it: its UTC instant."""
    dt = datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(ZONE))
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def single_events(text):
    """The events extract as the documented export gives it: single events (event_category E)
    only. Season plans are item sets, not performances; a plan shares its first game's date,
    time and venue, so the hub would take it for a duplicate of that game."""
    out = io.StringIO()
    src = csv.DictReader(io.StringIO(text))
    w = csv.DictWriter(out, fieldnames=src.fieldnames, lineterminator="\n")
    w.writeheader()
    for r in src:
        if r["event_category"] == "E":
            w.writerow(r)
    return out.getvalue()


def expected_from_extract(extract):
    """What the documented mapping makes of the extract, computed here independently of the
    hub: {kind: {id: {field: value}}} for the fields the comparison checks."""
    want = {"events": {}, "customers": {}, "sales": {}}
    for r in rows(extract["events"]):
        want["events"][r["event_name"]] = {
            "title": r["event_description"], "venue": r["venue_name"],
            "date": r["event_date"], "time": r["event_time"] + ":00"}
    for r in rows(extract["accounts"]):
        c = {"email": r["email"], "first_name": r["name_first"], "last_name": r["name_last"],
             "street": r["street_addr_1"], "post_code": r["zip"],
             "ad_opt_out": r["email_optout"] == "1"}
        for kept in ("city", "state", "country", "phone_cell", "birth_date", "gender"):
            if r[kept]:
                c[kept] = r[kept]
        want["customers"][r["acct_id"]] = c
    for r in rows(extract["sales"]):
        s = {"event_id": r["event_name"], "customer_id": r["acct_id"],
             "purchase_datetime": utc_text(r["trans_date_time"]),
             "quantity": int(r["num_seats"]), "sales_price": r["purchase_price"],
             "currency": "USD"}
        if r["trans_type"] == "R":
            s["refund_of"] = r["orig_trans_id"]
            s["order_type"] = "refund"
        want["sales"][r["trans_id"]] = s
    return want


class ArchticsBootstrap(harness.ServerCase):
    TENANTS = {"arch_boot": ["test"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = admin_token(cls.data)
        cls.sim = Simulator(api_keys={KEY: {DSN}}, dsn=DSN, venue_time_zone=ZONE,
                            real_time=False)
        cls.sim.start()
        with open(MAPPING_FILE) as f:
            cls.mapping = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        super().tearDownClass()

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1" + path, body=body, key=self.token)

    def status(self, cid):
        r = self.admin("GET", "/tenants/arch_boot/connectors/%s" % cid)
        self.assertStatus(r, 200)
        return r.json["status"]

    @staticmethod
    def drop(folder, name, text):
        tmp = os.path.join(folder, "." + name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(folder, name))

    def wait_ack(self, folder, name):
        path = os.path.join(folder, "processed", name + ".ack.json")
        bad = os.path.join(folder, "failed", name + ".errors.csv")

        def done():
            if os.path.exists(bad):
                with open(bad) as f:
                    self.fail("%s refused:\n%s" % (name, f.read()[:4000]))
            return os.path.exists(path)

        harness.wait_until(done, WAIT, interval=0.05, what="processed/%s.ack.json" % name)
        with open(path) as f:
            return json.load(f)

    def import_extract(self, extract):
        folder = harness.tempdir(self)
        os.chmod(folder, 0o755)
        r = self.admin("POST", "/tenants/arch_boot/connectors", {
            "type": "csv_drop", "environment": "test", "schedule": "every 1m",
            "settings": {"folder": folder, "settle_seconds": 0, "source": SOURCE},
            "mapping": self.mapping})
        self.assertStatus(r, 201)
        cid = r.json["connector_id"]
        acks = {}
        for kind, name in FILES:
            self.drop(folder, name, extract[kind])
            acks[kind] = self.wait_ack(folder, name)
            self.assertEqual(acks[kind]["records_rejected"], 0, acks[kind])
            self.assertEqual(acks[kind]["records_stored"], len(rows(extract[kind])), acks[kind])
        return cid, acks

    def hub_records(self, kind):
        api = self.api("arch_boot")
        out = {}
        for rec in api.list_all(kind)[0]:
            if rec.get("deleted"):
                continue
            key = rec.get("event_id") if kind == "events" else (
                rec.get("customer_id") if kind == "customers" else rec.get("invoice_number"))
            out[key] = rec
        return out

    def assertMatches(self, want, have, kind):
        self.assertEqual(sorted(have), sorted(want), "%s: ids differ" % kind)
        for rid, fields in want.items():
            for f, v in fields.items():
                self.assertEqual(have[rid].get(f), v, "%s %s.%s: %r" % (kind, rid, f, have[rid]))

    def test_extract_through_csv_drop(self):
        extract = {kind: self.sim.extract_csv(kind, CUTOFF) for kind in
                   ("accounts", "events", "sales", "scans")}
        extract["events"] = single_events(extract["events"])
        self.assertGreater(len(rows(extract["sales"])), 100)
        self.assertTrue(any(r["trans_type"] == "R" for r in rows(extract["sales"])))
        self.import_extract(extract)
        want = expected_from_extract(extract)
        for kind in ("events", "customers", "sales"):
            with self.subTest(kind):
                self.assertMatches(want[kind], self.hub_records(kind), kind)
        # every customer is kept under the instance's source label
        for c in self.hub_records("customers").values():
            self.assertEqual(c["source"], SOURCE)
        self.sim.assert_within_quota()
        self.assertEqual(self.sim.record(kind="command"), [], "the import made an ATS call")


if __name__ == "__main__":
    harness.main()
