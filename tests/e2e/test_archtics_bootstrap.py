"""Bootstrap from an Archtics file extract, end to end through the real binary:

  - the simulator's extract (accounts, events, sales with returns; venue-local times, prices as
    decimal text) is dropped into a csv_drop folder under the documented mapping
    (docs/connectors/archtics-extract-mapping.json) and the source label "archtics": every row
    is stored, none refused; local times become their UTC instants in the venue's zone, prices
    are exact, returns are refund records of the sale they return;
  - scans join the sales extract as attended_quantity (scripts/archtics-extract-attendance);
  - what the hub then holds equals the simulator's world at the cut-off, record by record.

Run: python3 tests/e2e/test_archtics_bootstrap.py --bin build/debug/stagedoor
"""

import csv
import io
import json
import os
import subprocess
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
ATTENDANCE = os.path.join(ROOT, "scripts", "archtics-extract-attendance")
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


def with_attendance(sales_csv, scans_csv, tmp):
    """The sales extract joined with the scans extract by scripts/archtics-extract-attendance."""
    paths = []
    for name, text in (("sales.csv", sales_csv), ("scans.csv", scans_csv)):
        paths.append(os.path.join(tmp, name))
        with open(paths[-1], "w", encoding="utf-8") as f:
            f.write(text)
    out = subprocess.run([sys.executable, ATTENDANCE] + paths, capture_output=True, text=True,
                         timeout=60 * TS)
    if out.returncode != 0:
        raise AssertionError("archtics-extract-attendance failed: %s" % out.stderr)
    return out.stdout


def world_view(sim, cutoff=None):
    """The simulator's world as stagedoor should hold it — at the cut-off (what the extract
    covers) or now: {kind: {id: {field: value}}}, computed from the world itself, not from any
    file or answer."""
    w, clock = sim.world, sim.clock
    upto = clock.epoch_of(cutoff) + 59.999 if cutoff else float("inf")
    want = {"events": {}, "customers": {}, "sales": {}}
    for e in w.events:
        if e["event_category"] != "E":
            continue
        d = clock.local_dt(e["start"])
        want["events"][e["event_name"]] = {
            "title": e["event_name_inet"], "venue": e["venue_name"],
            "date": d.strftime("%Y-%m-%d"), "time": d.strftime("%H:%M:00")}
    for a in w.accounts.values():
        if a["created"] > upto:
            continue
        c = {"email": a["email"], "first_name": a["name_first"], "last_name": a["name_last"],
             "street": a["street_addr_1"], "post_code": a["zip"], "city": a["city"]}
        c = {k: (v or None) for k, v in c.items()}   # an empty value is no value
        if a["email_optout"]:
            c["ad_opt_out"] = a["email_optout"] == "1"
        want["customers"][str(a["acct_id"])] = c
    scans = [x for x in w.scans if x["at"] <= upto]
    seats = {(x["event_name"], x["section_name"], x["row_name"], x["seat_num"]) for x in scans}
    scanned = {x["event_name"] for x in scans}
    for x in w.sales:
        if x["at"] > upto:
            continue
        rec = {"event_id": x["event_name"], "customer_id": str(x["acct_id"]),
               "purchase_datetime": utc_text(clock.local(x["at"])),
               "quantity": x["num_seats"], "sales_price": "%d.%02d" % divmod(x["paid_cents"], 100),
               "base_price": "%d.%02d" % divmod(x["full_cents"], 100), "currency": "USD",
               "ticket_category": "subscription" if x["plan_name"] else "regular"}
        if x["trans_type"] == "R":
            rec["refund_of"] = str(x["orig_trans_id"])
        elif x["event_name"] in scanned:
            rec["attended_quantity"] = sum(
                1 for k in range(x["num_seats"])
                if (x["event_name"], x["section_name"], x["row_name"], x["seat_num"] + k) in seats)
        want["sales"][str(x["trans_id"])] = rec
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

    def hub_records(self, kind, plan_blocks=False):
        """The hub's records of a kind; sales without (or with only: plan_blocks) the
        season-ticket holders' plan seat blocks (reservations)."""
        api = self.api("arch_boot")
        out = {}
        for rec in api.list_all(kind)[0]:
            if rec.get("deleted"):
                continue
            if kind == "sales" and (rec.get("order_type") == "reservation") != plan_blocks:
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

    def extract(self, cutoff):
        """The four extract files, as the venue prepares them for the import."""
        extract = {kind: self.sim.extract_csv(kind, cutoff) for kind in
                   ("accounts", "events", "sales", "scans")}
        extract["events"] = single_events(extract["events"])
        extract["sales"] = with_attendance(extract["sales"], extract["scans"],
                                           harness.tempdir(self))
        return extract

    def test_extract_through_csv_drop(self):
        extract = self.extract(CUTOFF)
        sales = rows(extract["sales"])
        self.assertGreater(len(sales), 100)
        self.assertTrue(any(r["trans_type"] == "R" for r in sales))
        self.assertTrue(any(r["attended_quantity"] not in ("", "0") for r in sales))
        self.assertTrue(any(r["plan_name"] for r in sales))
        self.import_extract(extract)
        want = world_view(self.sim, CUTOFF)
        for kind in ("events", "customers", "sales"):
            with self.subTest(kind):
                self.assertMatches(want[kind], self.hub_records(kind), kind)
        # every customer is kept under the instance's source label
        for c in self.hub_records("customers").values():
            self.assertEqual(c["source"], SOURCE)
        self.sim.assert_within_quota()
        self.assertEqual(self.sim.record(kind="command"), [], "the import made an ATS call")

        # then the archtics instance from the cut-off: what happened after it arrives, and no
        # call asks for anything older than the cut-off's minute
        w, clock = self.sim.world, self.sim.clock
        after = clock.epoch_of(CUTOFF) + 60 * 30
        fresh = w.add_account({"name_first": "Ola", "name_last": "Berg", "email":
                               "ola.berg@example.com", "city": "Boise"}, at=after)
        old_acct = min(w.accounts)
        w.touch_account(old_acct, {"city": "Spokane", "name_first": "Renamed"}, at=after + 60)
        game = sorted(w.events, key=lambda e: e["start"])[-3]["event_name"]
        sale = w.add_sale(fresh["acct_id"], game, "202", "9", 3, 2, "A", at=after + 120)
        back = next(x for x in w.sales if x["trans_type"] == "S" and not x["returned"] and
                    x["at"] < clock.epoch_of(CUTOFF) and not x["plan_name"])
        w.add_return(back["trans_id"], at=after + 180)
        # two days on, the first scan of a game whose seats were sold before the cut-off (none
        # since): the recount reads the sales the extract gave the hub, not ATS
        clock.advance(2 * 86400)
        scanned_games = {x["event_name"] for x in w.scans}
        seen = next(x for x in w.sales
                    if x["trans_type"] == "S" and not x["returned"]
                    and x["at"] < clock.epoch_of(CUTOFF) - 3600
                    and x["event_name"] not in scanned_games | {game, back["event_name"]})
        w.add_scan(seen, seen["seat_num"])
        self.sim.clear_record()
        r = self.admin("POST", "/tenants/arch_boot/connectors", {
            "type": "archtics", "environment": "test", "schedule": "manual",
            "settings": {"base_url": self.sim.url, "api_key": KEY, "dsn": DSN,
                         "venue_time_zone": ZONE, "event_city": "Seattle", "currency": "USD",
                         "poll_interval_ms": 100, "retry_initial_ms": 50,
                         "quota_10s_calls": 200, "bootstrap_cutoff": CUTOFF,
                         "reconcile_days": 0}})
        self.assertStatus(r, 201)
        cid = r.json["connector_id"]
        self.assertStatus(self.admin("POST", "/tenants/arch_boot/connectors/%s/run" % cid), 202)
        st = harness.wait_until(
            lambda: (lambda s: s if s["last_run"] and s["state"] not in ("running", "never_run")
                     else None)(self.status(cid)), WAIT, interval=0.05, what="the archtics run")
        self.assertEqual(st["state"], "ok", st)

        want = world_view(self.sim)
        for kind in ("events", "customers", "sales"):
            with self.subTest("after the incrementals: " + kind):
                self.assertMatches(want[kind], self.hub_records(kind), kind)
        self.assertIn(str(sale["trans_id"]), want["sales"])
        # the holders of the extract's plan sales (subscription) get their plan seat blocks
        holders = {str(x["acct_id"]) for x in w.sales if x["plan_name"]}
        blocks = self.hub_records("sales", plan_blocks=True)
        self.assertGreater(len(holders), 0)
        self.assertEqual({b["customer_id"] for b in blocks.values()}, holders)
        self.assertIn(str(fresh["acct_id"]), want["customers"])

        since = clock.local(clock.epoch_of(CUTOFF) - 60)
        calls = self.sim.record(kind="command")
        firsts = {}
        for c in calls:
            s = c.doc["command1"].get("since_date_time")
            if s is not None:
                self.assertGreaterEqual(s, since, "%s asked for what the extract had" % c.cmd)
                firsts.setdefault(c.cmd, s)
        # the streams start one minute before the cut-off, the extract's high-water mark: the
        # boundary minute is read again (and deduplicated), nothing older
        for cmd in ("get_accounts_with_updates", "get_events_with_sales",
                    "get_attendance_incremental"):
            self.assertEqual(firsts.get(cmd), since, (cmd, firsts))
        self.assertNotIn(seen["event_name"],
                         {c.doc["command1"].get("event_name") for c in calls
                          if c.cmd == "get_ticket_sales"},
                         "the attendance recount fetched sales the hub holds")
        queried = {int(str(c.doc["command1"].get("acct_id"))) for c in calls
                   if c.cmd == "customer_query"}
        self.assertEqual(queried, {fresh["acct_id"], old_acct},
                         "only the accounts changed after the cut-off are read")
        self.sim.assert_within_quota()


if __name__ == "__main__":
    harness.main()
