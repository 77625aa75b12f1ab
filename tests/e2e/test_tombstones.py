"""Deletions and erasures in the change feed, end to end, and what reads and updates show of a
customer: two real hubs (hub B's rest_pull connector follows hub A's read API, as the docs
describe), and one hub for merged updates and sources.

Covered: an erasure on hub A disappears from hub B after B's next pull (B's customer record is
gone, its feed carries the tombstone without name or e-mail, the sales name ANON); a sale and an
event deleted on A (DELETE …/sales/{id}, …/events/{id}) disappear from B too; a follower of A
between a record's last change and its deletion sees the tombstone once; a customer id held by
two sources is two records: GET without ?source= is 409 listing both, with it 200 and the
record's source; a customer re-sent with only ad_opt_out keeps her name and address, and null
clears one field.

store suite: both backends"""

import json
import unittest

import harness
from fake_sources import FakeSources
from harness import customer, event, sale, uid
from test_rest_pull import Admin

CID = "opera"


class Tombstones(unittest.TestCase):
    def hub(self, name):
        data = harness.tempdir(self, prefix="sd-e2e-tomb%s-" % name)
        harness.tenant_create(data, CID)
        key = harness.key_create(data, CID, "test")
        server = harness.Server(data)
        self.addCleanup(server.kill)
        server.start()
        return server, server.api(CID, key), key

    def ok(self, resp, status=200):
        if resp.status != status:
            self.fail("want HTTP %s, got %r" % (status, resp))
        return resp.json

    def feed(self, api, kind, cursor=None):
        return api.list_all(kind, limit=3, cursor=cursor)

    def test_erasure_and_deletions_reach_hub_b(self):
        server_a, a, key_a = self.hub("A")
        server_b, b, _ = self.hub("B")
        evs = [event(uid("TEV")) for _ in range(2)]
        jane = customer(uid("TCU"), first_name="Jane", last_name="Doe", street="Main St 1")
        bob = customer(uid("TCU"), first_name="Bob")
        sales = [sale(uid("TINV"), event_id=evs[i % 2]["event_id"],
                      customer_id=(jane, bob)[i % 2]["customer_id"]) for i in range(6)]
        self.ok(a.ingest({"events": evs, "customers": [jane, bob], "sales": sales}), 202)
        _, cursor_between = self.feed(a, "customers")  # a follower that saw Jane's record

        admin_b = Admin(server_b, CID)
        cid = admin_b.add("rest_pull", {
            "base_url": "http://127.0.0.1:%d" % server_a.port,
            "events_path": "/v1/%s/events" % CID,
            "customers_path": "/v1/%s/customers" % CID,
            "sales_path": "/v1/%s/sales" % CID,
            "auth_header": "Bearer " + key_a,
            "more_pointer": "/has_more", "page_size": 4,
            "timeout_seconds": 5, "retry_initial_ms": 50})
        st = admin_b.run(cid)
        self.assertEqual(st["state"], "ok", st)
        got = self.ok(b.get("customers", jane["customer_id"]))
        self.assertEqual((got["first_name"], got["source"]), ("Jane", "rest_pull"))

        # On A: Jane is erased, one sale and one event deleted.
        self.ok(a.req("DELETE", "/v1/%s/customers/%s?erase=profile" % (CID, jane["customer_id"])))
        self.ok(a.req("DELETE", "/v1/%s/sales/%s" % (CID, sales[1]["invoice_number"])))
        self.ok(b.get("events", evs[1]["event_id"]))
        gone_ev = event(uid("TEV"))
        self.ok(a.ingest({"events": [gone_ev]}), 202)
        self.ok(a.req("DELETE", "/v1/%s/events/%s" % (CID, gone_ev["event_id"])))
        self.assertEqual(a.req("DELETE", "/v1/%s/events/%s" % (CID, gone_ev["event_id"])).status,
                         404)

        # A follower of A between Jane's last change and the erasure sees the tombstone once,
        # with nothing of her but the id.
        recs, _ = self.feed(a, "customers", cursor_between)
        self.assertEqual(recs, [{"deleted": True, "id": jane["customer_id"],
                                 "reason": "erased", "source": "webhook"}])

        st = admin_b.run(cid)
        self.assertEqual(st["state"], "ok", st)
        r = b.get("customers", jane["customer_id"])
        self.assertEqual(r.status, 404, r)
        self.assertEqual(self.ok(b.get("customers", bob["customer_id"]))["first_name"], "Bob")
        everything = str(b.list_all("customers")[0]) + str(b.list_all("sales")[0])
        self.assertNotIn("Jane", everything)
        self.assertNotIn(jane["email"], everything)
        self.assertNotIn(jane["customer_id"] + "'", str(b.list_all("sales")[0]))
        # B's own feed tells its followers, in B's terms (B's source label).
        tomb = [d for d in b.list_all("customers")[0] if d.get("deleted")]
        self.assertEqual(tomb, [{"deleted": True, "id": jane["customer_id"],
                                 "reason": "erased", "source": "rest_pull"}])
        for s in sales[0::2]:  # Jane's sales stay, anonymous
            self.assertEqual(self.ok(b.get("sales", s["invoice_number"]))["customer_id"], "ANON")
        self.assertEqual(b.get("sales", sales[1]["invoice_number"]).status, 404)
        self.assertEqual(b.get("events", gone_ev["event_id"]).status, 404)
        sale_tombs = [d for d in b.list_all("sales")[0] if d.get("deleted")]
        self.assertEqual(sale_tombs, [{"deleted": True, "id": sales[1]["invoice_number"],
                                       "reason": "deleted"}])

        # Nothing new on A: B's next run reads nothing and changes nothing.
        before = b.list_all("customers")
        st = admin_b.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(st["last_run_stats"]["records_in"], 0, st)
        self.assertEqual(b.list_all("customers"), before)

        # Two sources, one id: hub B now also gets Bob from its webhook.
        self.ok(b.ingest({"customers": [dict(bob, first_name="Robert")]}), 202)
        r = b.get("customers", bob["customer_id"])
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json["error"], "ambiguous_customer")
        self.assertEqual(r.json["sources"], ["rest_pull", "webhook"])
        got = self.ok(b.get("customers", bob["customer_id"], query="source=webhook"))
        self.assertEqual((got["first_name"], got["source"]), ("Robert", "webhook"))
        got = self.ok(b.get("customers", bob["customer_id"], query="source=rest_pull"))
        self.assertEqual((got["first_name"], got["source"]), ("Bob", "rest_pull"))
        r = b.get("customers", bob["customer_id"], query="source=crm")
        self.assertEqual(r.status, 404, r)

    def test_update_merges(self):
        _, a, _ = self.hub("M")
        jane = customer(uid("MCU"), salutation="Ms", first_name="Jane", last_name="Doe",
                        street="Main St 1", post_code="10115")
        self.ok(a.ingest({"customers": [jane]}), 202)
        # Re-sent with only the opt-out (and the required id and e-mail): the rest stays.
        opt = {"customer_id": jane["customer_id"], "email": jane["email"], "ad_opt_out": True}
        self.ok(a.ingest({"customers": [opt]}), 202)
        got = self.ok(a.get("customers", jane["customer_id"]))
        self.assertEqual(got, dict(jane, ad_opt_out=True, source="webhook"))
        # null clears one optional field, the others stay.
        self.ok(a.ingest({"customers": [dict(opt, street=None)]}), 202)
        got = self.ok(a.get("customers", jane["customer_id"]))
        self.assertNotIn("street", got)
        self.assertEqual((got["first_name"], got["post_code"]), ("Jane", "10115"))
        # A required field cannot be cleared.
        r = a.ingest({"customers": [dict(opt, email=None)]})
        self.assertEqual(r.status, 400, r)

        ev = event(uid("MEV"), composer="Verdi", work_title="Otello")
        self.ok(a.ingest({"events": [ev]}), 202)
        self.ok(a.ingest({"events": [harness.without(ev, "composer", "work_title")]}), 202)
        got = self.ok(a.get("events", ev["event_id"]))
        self.assertEqual(got, ev)
        self.ok(a.ingest({"events": [dict(ev, composer=None)]}), 202)
        self.assertEqual(self.ok(a.get("events", ev["event_id"])),
                         harness.without(ev, "composer"))

    def test_update_merges_through_a_feed(self):
        # The same rule for a batch transport: a feed that later carries fewer fields of a
        # customer keeps the stored ones (the store merges, whatever the transport).
        server, a, _ = self.hub("F")
        fs = FakeSources().start()
        self.addCleanup(fs.stop)
        jane = customer(uid("FCU"), first_name="Jane", last_name="Doe", street="Main St 1")
        path = "/%s/feed.json" % uid("feed")
        fs.add_feed(path, json.dumps({"customers": [jane]}), "application/json")
        admin = Admin(server, CID)
        cid = admin.add("feed", {"url": fs.address(path), "timeout_seconds": 2,
                                 "retry_initial_ms": 50, "max_attempts": 3})
        self.assertEqual(admin.run(cid, fs=fs)["state"], "ok")
        opt = {"customer_id": jane["customer_id"], "email": jane["email"], "ad_opt_out": True,
               "street": None}
        fs.add_feed(path, json.dumps({"customers": [opt]}), "application/json")
        st = admin.run(cid, fs=fs)
        self.assertEqual(st["state"], "ok", st)
        got = self.ok(a.get("customers", jane["customer_id"]))
        self.assertEqual(got, dict(harness.without(jane, "street"), ad_opt_out=True,
                                   source="feed"))


if __name__ == "__main__":
    harness.main()
