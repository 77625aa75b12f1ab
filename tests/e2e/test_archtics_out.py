"""Customers out to Archtics and the reconciliation, end to end: `stagedoor serve` with an
`archtics` instance against the ATS simulator (tests/sim/archtics).

Customers out (push_customers on):
  - a new webhook customer becomes an Archtics account (customer_add), whose acct_id is kept as
    the remote reference;
  - a customer whose e-mail Archtics knows is a hit (11408): the existing account becomes the
    remote reference, no account is added;
  - a change of a pushed customer is customer_query + customer_update: stagedoor's fields win,
    what stagedoor does not hold (phone, other_info_*) survives on the simulator, and the
    stagedoor id is set as an alt id; a 202 of the update is polled within the delivery; the
    same customer stored again unchanged is delivered without a call;
  - a city longer than Archtics' 20 characters is never sent: the item is dead with the field and
    the width named;
  - customers stored under the instance's own source label (an extract imported as "archtics")
    are never sent back (no echo);
  - every call the deliveries made (second calls and 202 polls included) was taken from the
    ledger, and none went beyond the simulator's quotas.
Reconciliation: after a bootstrap from the extract, an account deleted and one merged on the
Archtics side become a "deleted" and a "merged" tombstone (the merged one's sales then name the
survivor), and an event Archtics no longer lists a "deleted" one, at one customer_query per
account, one get_ticket_sales for the merge and one event_details per 50 events; the sweep
spreads over runs of at most reconcile_calls_per_run calls and asks no account twice.

Run: python3 tests/e2e/test_archtics_out.py --bin build/debug/stagedoor
"""

import json
import os
import sys
import time

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from sim.archtics import Simulator  # noqa: E402

TS = harness.TIME_SCALE
WAIT = 90 * TS
ZONE = "America/New_York"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAPPING_FILE = os.path.join(ROOT, "docs", "connectors", "archtics-extract-mapping.json")


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def settings_for(sim, key, dsn, **kw):
    s = {"base_url": sim.url, "api_key": key, "dsn": dsn, "venue_time_zone": ZONE,
         "event_city": "Seattle", "currency": "USD", "poll_interval_ms": 100,
         "retry_initial_ms": 50, "quota_10s_calls": 200}
    s.update(kw)
    return s


class ArchticsOut(harness.ServerCase):
    TENANTS = {"arch_out": ["test"], "arch_rec": ["test"]}

    @classmethod
    def prepare(cls):
        for tenant in cls.TENANTS:
            harness.tenant_limits(cls.data, tenant, 100000, 100000)  # the tests poll

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = admin_token(cls.data)

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1" + path, body=body, key=self.token)

    def add(self, tenant, body):
        r = self.admin("POST", "/tenants/%s/connectors" % tenant, body)
        self.assertStatus(r, 201)
        return r.json["connector_id"]

    def status(self, tenant, cid):
        r = self.admin("GET", "/tenants/%s/connectors/%s" % (tenant, cid))
        self.assertStatus(r, 200)
        return r.json["status"]

    def items(self, tenant, cid):
        r = harness.http(self.port, "GET", "/v1/%s/deliveries?connector=%s" % (tenant, cid),
                         key=self.keys[(tenant, "test")])
        self.assertStatus(r, 200)
        return r.json["data"]

    def item(self, tenant, cid, subject, states=("delivered", "dead")):
        def done():
            got = [d for d in self.items(tenant, cid) if d["subject"]["id"] == subject]
            return got[0] if got and got[0]["state"] in states else None
        return harness.wait_until(done, WAIT, interval=0.05, what="delivery of " + subject)

    def drop(self, folder, name, text):
        tmp = os.path.join(folder, "." + name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(folder, name))
        ack = os.path.join(folder, "processed", name + ".ack.json")
        harness.wait_until(lambda: os.path.exists(ack), WAIT, interval=0.05, what=ack)
        with open(ack) as f:
            got = json.load(f)
        self.assertEqual(got["records_rejected"], 0, got)
        return got

    def import_as_archtics(self, tenant, files):
        """csv_drop under the source label "archtics", with the documented mapping."""
        folder = harness.tempdir(self)
        os.chmod(folder, 0o755)
        with open(MAPPING_FILE) as f:
            mapping = json.load(f)
        self.add(tenant, {"type": "csv_drop", "environment": "test", "schedule": "every 1m",
                          "settings": {"folder": folder, "settle_seconds": 0,
                                       "source": "archtics"},
                          "mapping": mapping})
        for name, text in files:
            self.drop(folder, name, text)

    def run_instance(self, tenant, cid):
        before = self.status(tenant, cid)["last_run"]
        if before:
            time.sleep(1.1)  # last_run has whole seconds: the next run must show another one
        self.assertStatus(self.admin("POST", "/tenants/%s/connectors/%s/run" % (tenant, cid)),
                          202)

        def ended():
            st = self.status(tenant, cid)
            if st["state"] in ("running", "never_run") or st["last_run"] == before:
                return None
            return st
        return harness.wait_until(ended, WAIT, interval=0.05, what="the run to end")

    # ------------------------------------------------------------------------------------------

    def test_customers_out(self):
        key, dsn = "k-out-1", "venue_out"
        sim = Simulator(api_keys={key: {dsn}}, dsn=dsn, venue_time_zone=ZONE, seed=5,
                        accounts=30, events=4, sales_per_event=3, plan_holders=1)
        sim.start()
        self.addCleanup(sim.stop)
        w = sim.world
        known = w.accounts[100005]
        cid = self.add("arch_out", {
            "type": "archtics", "environment": "test", "schedule": "manual",
            "settings": settings_for(sim, key, dsn, push_customers=True, alt_id_type="SDHUB",
                                     reconcile_days=0)})
        api = self.api("arch_out")
        accounts_before = len(w.accounts)
        r = api.ingest({"customers": [
            {"customer_id": "W-1", "email": "nora.new@example.com", "first_name": "Nora",
             "last_name": "Quill", "city": "Seattle", "street": "1 Pier St"},
            {"customer_id": "W-2", "email": known["email"].upper(), "last_name": "Hit"},
            {"customer_id": "W-3", "email": "long.city@example.com", "last_name": "Far",
             "city": "Llanfairpwllgwyngyll"},   # 20: fits
            {"customer_id": "W-4", "email": "longer.city@example.com", "last_name": "Farther",
             "city": "Llanfairpwllgwyngyllg"},  # 21: does not
        ]})
        self.assertStatus(r, 202)

        added = self.item("arch_out", cid, "webhook:W-1")
        self.assertEqual((added["state"], added["kind"]), ("delivered", "add"), added)
        acct = int(added["remote_ref"])
        self.assertEqual(w.accounts[acct]["email"], "nora.new@example.com")
        self.assertEqual((w.accounts[acct]["name_first"], w.accounts[acct]["city"]),
                         ("Nora", "Seattle"))

        hit = self.item("arch_out", cid, "webhook:W-2")
        self.assertEqual((hit["state"], hit["kind"], hit["remote_ref"]),
                         ("delivered", "hit", str(known["acct_id"])), hit)
        self.assertEqual(w.accounts[known["acct_id"]]["name_last"], known["name_last"],
                         "a hit does not overwrite the account")

        fits = self.item("arch_out", cid, "webhook:W-3")
        self.assertEqual(fits["state"], "delivered", fits)
        dead = self.item("arch_out", cid, "webhook:W-4")
        self.assertEqual(dead["state"], "dead", dead)
        self.assertIn("city", dead["last_error"])
        self.assertIn("at most 20 (Char(20))", dead["last_error"])
        self.assertIsNone(w.find_email("longer.city@example.com"), "a value that does not fit "
                          "was sent")
        self.assertEqual(len(w.accounts), accounts_before + 2)   # W-1 and W-3; W-2 was a hit

        # a change: query, merge, full update; what only Archtics holds survives
        w.touch_account(acct, {"phone_cell": "2065550199", "other_info_2": "courtside"})
        sim.clear_record()
        sim.inject(("queue", 2), cmd="customer_update")   # a 202 cycle inside the delivery
        r = api.ingest({"customers": [
            {"customer_id": "W-1", "email": "nora.new@example.com", "first_name": "Nora",
             "last_name": "Quill", "city": "Tacoma", "street": "1 Pier St"}]})
        self.assertStatus(r, 202)

        def updated():
            got = [d for d in self.items("arch_out", cid)
                   if d["subject"]["id"] == "webhook:W-1" and d["delivery_id"] != added[
                       "delivery_id"]]
            return got[0] if got and got[0]["state"] in ("delivered", "dead") else None
        upd = harness.wait_until(updated, WAIT, interval=0.05, what="the update")
        self.assertEqual((upd["state"], upd["kind"]), ("delivered", "update"), upd)
        cmds = [c.cmd for c in sim.record(kind="command")]
        self.assertEqual(cmds, ["customer_query", "customer_update"])
        polls = sim.record(cmd="customer_update", kind="poll")
        self.assertEqual(len(polls), 2, "the queued update was polled within the delivery")
        a = w.accounts[acct]
        self.assertEqual((a["city"], a["name_first"]), ("Tacoma", "Nora"))
        self.assertEqual((a["phone_cell"], a["other_info_2"]), ("2065550199", "courtside"))
        self.assertIn({"alt_id_type": "SDHUB", "alt_id": "W-1", "alt_id_comment": ""},
                      a["alt_ids"])

        # the same customer stored again unchanged: delivered without a call
        sim.clear_record()
        seen = {d["delivery_id"] for d in self.items("arch_out", cid)}
        r = api.ingest({"customers": [
            {"customer_id": "W-1", "email": "nora.new@example.com", "first_name": "Nora",
             "last_name": "Quill", "city": "Tacoma", "street": "1 Pier St"}]})
        self.assertStatus(r, 202)

        def again():
            got = [d for d in self.items("arch_out", cid) if d["delivery_id"] not in seen]
            return got[0] if got and got[0]["state"] in ("delivered", "dead") else None
        same = harness.wait_until(again, WAIT, interval=0.05, what="the unchanged push")
        self.assertEqual((same["state"], same["kind"]), ("delivered", "unchanged"), same)
        self.assertEqual(sim.record(), [], "an unchanged customer made a call")

        # no echo: Archtics' own accounts, imported under the instance's label, stay put
        n_items = len(self.items("arch_out", cid))
        self.import_as_archtics("arch_out", [
            ("customers_echo.csv", sim.extract_csv("accounts", sim.clock.local()))])
        self.assertEqual(len(self.items("arch_out", cid)), n_items, "an Archtics account was "
                         "queued to be written back")

        # every call was taken from the ledger (polls and second calls too); the ledger holds
        # two more: the calls core took for W-4 (refused before it was sent) and for the
        # unchanged push (no call needed)
        st = self.status("arch_out", cid)
        day = [q for q in st["quotas"] if q["window"] == "day"][0]
        self.assertEqual(day["used"], sim.usage(key)["day"] + 2, st["quotas"])
        sim.assert_within_quota()

    def test_reconciliation(self):
        key, dsn = "k-rec-1", "venue_rec"
        sim = Simulator(api_keys={key: {dsn}}, dsn=dsn, venue_time_zone=ZONE, seed=9,
                        accounts=25, events=4, sales_per_event=6, plan_holders=1,
                        queue_mode="never")
        sim.start()
        self.addCleanup(sim.stop)
        w = sim.world
        cutoff = sim.clock.local()
        sim.clock.advance(120)
        events = [r for r in sim.extract_csv("events", cutoff).splitlines()
                  if ",P," not in r]
        self.import_as_archtics("arch_rec", [
            ("events_x.csv", "\n".join(events) + "\n"),
            ("customers_x.csv", sim.extract_csv("accounts", cutoff)),
            ("sales_x.csv", sim.extract_csv("sales", cutoff))])
        with_sales = sorted({s["acct_id"] for s in w.sales if s["trans_type"] == "S"})
        without = sorted(set(w.accounts) - set(with_sales))
        self.assertTrue(without and len(with_sales) >= 2)
        gone, merged, into = without[0], with_sales[0], with_sales[1]
        moved = [str(s["trans_id"]) for s in w.sales if s["acct_id"] == merged]
        n_accounts = len(w.accounts)
        w.delete_account(gone)
        w.merge_accounts(merged, into)
        dropped = sorted(e["event_name"] for e in w.events if e["event_category"] == "E")[-1]
        dropped_sales = [str(s["trans_id"]) for s in w.sales if s["event_name"] == dropped]
        w.delete_event(dropped)
        sim.clear_record()

        cid = self.add("arch_rec", {
            "type": "archtics", "environment": "test", "schedule": "manual",
            "settings": settings_for(sim, key, dsn, bootstrap_cutoff=cutoff, reconcile_days=7,
                                     reconcile_calls_per_run=10, pull_events=False,
                                     pull_attendance=False)})
        # the sweep spreads over runs of at most 10 calls each, and asks no account twice
        asked = []
        for _ in range(8):
            st = self.run_instance("arch_rec", cid)
            self.assertEqual(st["state"], "ok", st)
            calls = sim.record(kind="command")
            sim.clear_record()
            queries = [int(str(c.doc["command1"]["acct_id"])) for c in calls
                       if c.cmd == "customer_query"]
            lookups = [c for c in calls if c.cmd == "get_ticket_sales" and
                       c.doc["command1"].get("since_date_time", "") < cutoff]
            by_name = [c for c in calls if c.cmd == "event_details"]
            self.assertLessEqual(len(queries) + len(lookups) + len(by_name), 10, calls)
            if not queries:
                break
            asked += queries
        self.assertEqual(sorted(asked), sorted(set(asked)), "an account was asked twice")
        self.assertEqual(len(asked), n_accounts, "one customer_query per account")

        api = self.api("arch_rec")
        self.assertStatus(api.get("customers", str(gone), query="source=archtics"), 404)
        self.assertStatus(api.get("customers", str(merged), query="source=archtics"), 404)
        self.assertStatus(api.get("customers", str(into), query="source=archtics"), 200)
        tomb = {t["id"]: t for t in api.list_all("customers")[0] if t.get("deleted")}
        self.assertEqual(tomb[str(gone)]["reason"], "deleted", tomb)
        self.assertEqual((tomb[str(merged)]["reason"], tomb[str(merged)]["merged_into"]),
                         ("merged", str(into)), tomb)
        self.assertEqual(len(tomb), 2, tomb)
        for inv in moved:
            self.assertEqual(api.get("sales", inv).json["customer_id"], str(into))
        # the event Archtics no longer lists is deleted (its sales stay), the others are not
        self.assertStatus(api.get("events", dropped), 404)
        gone_events = [t for t in api.list_all("events")[0] if t.get("deleted")]
        self.assertEqual([(t["id"], t["reason"]) for t in gone_events], [(dropped, "deleted")])
        self.assertTrue(dropped_sales)
        for inv in dropped_sales:
            self.assertStatus(api.get("sales", inv), 200)
        sim.assert_within_quota()


if __name__ == "__main__":
    harness.main()
