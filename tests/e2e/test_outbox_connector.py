"""The generic outbox end to end, through the test connector "test_contacts" (tests/connectors/,
compiled in by the debug/asan/tsan presets) writing contacts to a local contact system
(receiver.py with a handler that hands out contact ids):

  - a customer change and the item it causes commit together: the item is listed as soon as
    the change is accepted, and a change that is refused (rolled back) leaves no item;
  - the remote contact id of the first delivery is the customer's remote reference: the next
    change of the same customer names it;
  - kill -9 after the claim (nothing sent: sent once after the restart) and after the send
    (sent again with the same Idempotency-Key; the receiver's copy answers);
  - replay of a dead item, cancel and send-now (admin API and CLI), FIFO per subject;
  - GET /v1/{client_id}/deliveries shows a tenant key its own items, in its own environment;
  - a change that came from an instance (its run) is not written back to it, but goes to the
    other instance (no echo);
  - deleting the connector settles its waiting items at once.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import json
import os
import threading
import time
import unittest

import harness
from harness import customer
from receiver import Answer, Receiver
from test_push import start_server

TS = harness.TIME_SCALE
CLIENT = "ob"


class ContactSystem:
    """Contact ids by (source, customer_id), as a CRM hands them out."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.ids = {}
        self.lock = threading.Lock()

    def __call__(self, rec):
        body = rec["body"] or {}
        key = (body.get("source"), body.get("customer_id"))
        with self.lock:
            if body.get("contact_id"):
                return Answer(200, {"contact_id": body["contact_id"]})
            cid = self.ids.setdefault(key, "%s-%d" % (self.prefix, len(self.ids) + 1))
        return Answer(201, {"contact_id": cid})


class OutboxBase(unittest.TestCase):
    @classmethod
    def setup_data(cls, extra_env=None):
        cls.data = harness.tempdir(cls)
        harness.tenant_create(cls.data, CLIENT)
        harness.tenant_create(cls.data, "stranger")
        cls.key = harness.key_create(cls.data, CLIENT, "test")
        cls.prod_key = harness.key_create(cls.data, CLIENT, "prod")
        cls.stranger_key = harness.key_create(cls.data, "stranger", "test")
        cls.rx = Receiver().start()
        cls.addClassCleanup(cls.rx.stop)

    @classmethod
    def attach(cls, server):
        cls.server = server
        cls.port = server.port
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.token = f.read().strip()
        cls.api = harness.Api(cls.port, CLIENT, cls.key)

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, path, body=body, key=self.token)

    def add_connector(self, base, client=CLIENT, env="test"):
        self.rx.handle(base + "/contacts", ContactSystem(base.strip("/")))
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors" % client,
                       {"type": "test_contacts", "environment": env,
                        "settings": {"url": self.rx.url(base)}})
        self.assertEqual(r.status, 201, r)
        return r.json["connector_id"]

    def items(self, connector, key=None, **query):
        q = "&".join("%s=%s" % kv for kv in dict(query, connector=connector).items())
        r = harness.http(self.port, "GET", "/v1/%s/deliveries?%s" % (CLIENT, q),
                         key=key or self.key)
        self.assertEqual(r.status, 200, r)
        return r.json["data"]

    def item_of(self, connector, customer_id, source="webhook"):
        got = [d for d in self.items(connector)
               if d["subject"]["id"] == "%s:%s" % (source, customer_id)]
        return got

    def delivery(self, dlv):
        r = self.admin("GET", "/admin/v1/deliveries/" + dlv)
        self.assertEqual(r.status, 200, r)
        return r.json

    def wait_state(self, dlv, state, timeout=20):
        def done():
            d = self.delivery(dlv)
            return d if d["state"] == state else None
        return harness.wait_until(done, timeout * TS, interval=0.05,
                                  what="delivery %s %s" % (dlv, state))

    def change(self, c, key=None):
        r = harness.http(self.port, "POST", "/v1/%s/ingest" % CLIENT, body={"customers": [c]},
                         key=key or self.key)
        self.assertEqual(r.status, 202, r)


class OutboxTests(OutboxBase):
    @classmethod
    def setUpClass(cls):
        cls.setup_data()
        s = start_server(cls.data)
        cls.addClassCleanup(s.kill)
        cls.attach(s)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_ok()

    def test_change_and_item_commit_together_and_the_remote_id_is_reused(self):
        con = self.add_connector("/crm")
        c = customer()
        self.change(c)
        # Accepted means committed, with its item.
        its = self.item_of(con, c["customer_id"])
        self.assertEqual(len(its), 1, its)
        self.assertEqual(its[0]["operation"], "upsert_contact")
        self.assertEqual(its[0]["connector_id"], con)
        self.assertIsNone(its[0]["origin"])
        d1 = self.wait_state(its[0]["delivery_id"], "delivered")
        self.assertEqual(d1["remote_ref"], "crm-1")
        reqs = self.rx.received("/crm/contacts")
        self.assertEqual(len(reqs), 1)
        self.assertIsNone(reqs[0]["body"]["contact_id"])
        self.assertEqual(reqs[0]["body"]["customer"]["email"], c["email"])
        self.assertEqual(reqs[0]["headers"]["idempotency-key"], d1["idempotency_key"])

        # The same content again while nothing waits: a new item, deduplicated only while one
        # waits; a changed customer goes to the same remote contact.
        c2 = dict(c, email="changed-" + c["email"])
        self.change(c2)
        its = self.item_of(con, c["customer_id"])
        self.assertEqual(len(its), 2)
        d2 = self.wait_state(its[0]["delivery_id"], "delivered")
        reqs = self.rx.received("/crm/contacts")
        self.assertEqual(reqs[-1]["body"]["contact_id"], "crm-1")
        self.assertEqual(reqs[-1]["body"]["customer"]["email"], c2["email"])
        self.assertEqual(d2["remote_ref"], "crm-1")
        self.assertEqual(d2["kind"], "update")

        # A refused change (a sale of an unknown event) is rolled back with its item.
        c3 = customer()
        r = self.api.ingest({"customers": [c3], "sales": [harness.sale(
            event_id="NO-SUCH-EVENT", customer_id=c3["customer_id"])]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.item_of(con, c3["customer_id"]), [])

    def test_sales_from_the_webhook_and_from_put_cause_items(self):
        con = self.add_connector("/sales-sys")
        ev = harness.event()
        c = customer()
        sl = harness.sale(event_id=ev["event_id"], customer_id=c["customer_id"])
        r = self.api.ingest({"events": [ev], "customers": [c], "sales": [sl]})
        self.assertEqual(r.status, 202, r)
        inv = sl["invoice_number"]
        sales = [d for d in self.items(con) if d["operation"] == "record_sale"]
        self.assertEqual([d["subject"]["id"] for d in sales], [inv])
        self.wait_state(sales[0]["delivery_id"], "delivered")
        # A sale replaced through PUT /v1/{client_id}/sales/{invoice_number} is a change too.
        changed = dict(sl, sales_price="99.00")
        r = self.api.put_sale(inv, changed)
        self.assertEqual(r.status, 200, r)
        sales = [d for d in self.items(con) if d["operation"] == "record_sale"]
        self.assertEqual(len(sales), 2, sales)
        self.wait_state(sales[0]["delivery_id"], "delivered")
        reqs = self.rx.received("/sales-sys/sales")
        self.assertEqual(len(reqs), 2)
        self.assertEqual(reqs[-1]["body"]["sale"]["sales_price"], "99.00")

    def test_replay_cancel_send_now_and_fifo_per_subject(self):
        con = self.add_connector("/fifo")
        path = "/fifo/contacts"
        # First change: refused (400) → dead; replayed → delivered.
        self.rx.script(path, Answer(400, {"error": "bad contact"}))
        c = customer()
        self.change(c)
        dead = self.item_of(con, c["customer_id"])[0]["delivery_id"]
        self.wait_state(dead, "dead")
        r = self.admin("POST", "/admin/v1/deliveries/%s/retry" % dead)
        self.assertEqual(r.status, 202, r)
        self.wait_state(dead, "delivered")

        # 503 with a long Retry-After: retrying for an hour; the next change of the same customer
        # waits behind it (FIFO per subject) until it is cancelled.
        self.rx.script(path, Answer(503, {"error": "maintenance"}, {"Retry-After": "3600"}))
        c2 = dict(c, email="v2-" + c["email"])
        self.change(c2)
        first = self.item_of(con, c["customer_id"])[0]["delivery_id"]
        self.wait_state(first, "retrying")
        n_before = len(self.rx.received(path))
        c3 = dict(c, email="v3-" + c["email"])
        self.change(c3)
        second = self.item_of(con, c["customer_id"])[0]["delivery_id"]
        self.assertNotEqual(first, second)
        time.sleep(1.0 * TS)
        self.assertEqual(len(self.rx.received(path)), n_before)  # held back by the first
        self.assertEqual(self.delivery(second)["state"], "queued")

        r = self.admin("POST", "/admin/v1/deliveries/%s/cancel?reason=superseded%%20by%%20a%%20"
                       "newer%%20change" % first)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["state"], "cancelled")
        self.assertEqual(r.json["cancelled"]["by"], "admin")
        self.assertEqual(r.json["cancelled"]["reason"], "superseded by a newer change")
        r = self.admin("POST", "/admin/v1/deliveries/%s/cancel" % first)
        self.assertEqual(r.status, 409, r)
        r = self.admin("POST", "/admin/v1/deliveries/%s/send-now" % first)
        self.assertEqual(r.status, 409, r)
        self.assertEqual(self.admin("POST", "/admin/v1/deliveries/dlv_nope/cancel").status, 404)
        self.assertEqual(self.admin("POST", "/admin/v1/deliveries/%s/cancel?reason=%s"
                                    % (second, "x" * 501)).status, 400)
        d = self.wait_state(second, "delivered")
        self.assertEqual(self.rx.received(path)[-1]["body"]["customer"]["email"], c3["email"])
        self.assertEqual(d["remote_ref"], "fifo-1")

        # Send now: a retrying item goes at once, its attempts kept; the CLI does the same.
        self.rx.script(path, Answer(503, None, {"Retry-After": "3600"}))
        c4 = customer()
        self.change(c4)
        waiting = self.item_of(con, c4["customer_id"])[0]["delivery_id"]
        self.wait_state(waiting, "retrying")
        cp = harness.cli(self.data, "delivery", "send-now", waiting)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        d = self.wait_state(waiting, "delivered")
        self.assertEqual(d["attempts"], 2)
        self.rx.script(path, Answer(503, None, {"Retry-After": "3600"}))
        c5 = customer()
        self.change(c5)
        waiting = self.item_of(con, c5["customer_id"])[0]["delivery_id"]
        self.wait_state(waiting, "retrying")
        cp = harness.cli(self.data, "delivery", "cancel", waiting, "--reason", "test")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        d = self.delivery(waiting)
        self.assertEqual(d["state"], "cancelled")
        self.assertEqual(d["cancelled"]["by"], "cli")
        cp = harness.cli(self.data, "delivery", "cancel", waiting)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("not waiting", cp.stderr)

    def test_tenant_sees_its_own_items_in_its_own_environment(self):
        con = self.add_connector("/iso")
        prod = self.add_connector("/iso-prod", env="prod")
        c = customer()
        self.change(c)
        mine = self.items(con)
        self.assertTrue(any(d["subject"]["id"] == "webhook:" + c["customer_id"] for d in mine))
        for d in mine:
            self.assertEqual(d["client_id"], CLIENT)
            self.assertEqual(d["environment"], "test")
        # Another tenant's key sees none of them, by connector or at all.
        r = harness.http(self.port, "GET", "/v1/stranger/deliveries?connector=" + con,
                         key=self.stranger_key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["data"], [])
        r = harness.http(self.port, "GET", "/v1/stranger/deliveries", key=self.stranger_key)
        self.assertTrue(all(d["client_id"] == "stranger" for d in r.json["data"]))
        # Nor another tenant's path with this key.
        r = harness.http(self.port, "GET", "/v1/stranger/deliveries", key=self.key)
        self.assertIn(r.status, (401, 403, 404), r)
        # The prod key sees the prod instance's items only.
        cp = customer()
        self.change(cp, key=self.prod_key)
        r = harness.http(self.port, "GET", "/v1/%s/deliveries" % CLIENT, key=self.prod_key)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json["data"])
        self.assertTrue(all(d["environment"] == "prod" and d["connector_id"] == prod
                            for d in r.json["data"]), r.json)
        # The CLI lists them by connector too (a contact item has no push "kind": "-").
        cp = harness.cli(self.data, "delivery", "list", "--connector", con)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertTrue(all(d["delivery_id"] in cp.stdout for d in mine), cp.stdout)
        self.assertIsNone(mine[0]["kind"])
        # Filters: state and connector; a bad state is a 400.
        self.assertEqual(self.items("con_none"), [])
        self.assertEqual(self.items(con, state="cancelled"), [])
        r = harness.http(self.port, "GET", "/v1/%s/deliveries?state=lost" % CLIENT, key=self.key)
        self.assertEqual(r.status, 400, r)

    def test_no_echo_a_change_from_an_instance_is_not_written_back_to_it(self):
        a = self.add_connector("/echo-a")
        b = self.add_connector("/echo-b")
        self.rx.serve_json("/echo-a/contacts", {"contacts": [
            {"contact_id": "A-77", "customer_id": "X-ECHO-1", "email": "x.echo@example.org"}]})
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors/%s/run" % (CLIENT, a))
        self.assertIn(r.status, (200, 202), r)
        its = harness.wait_until(
            lambda: self.item_of(b, "X-ECHO-1", source="test_contacts"), 20 * TS,
            what="the other instance's item")
        self.assertEqual(its[0]["origin"], a)
        self.wait_state(its[0]["delivery_id"], "delivered")
        time.sleep(0.5 * TS)
        self.assertEqual(self.item_of(a, "X-ECHO-1", source="test_contacts"), [])
        self.assertEqual(self.rx.received("/echo-a/contacts"), [])  # nothing POSTed back to A

    def test_quota_exhausted_then_refilled(self):
        # test_contacts declares a call quota per 2-second window; this instance allows 2 calls
        # per window. Five changes: two go at once, the others wait for the next windows without
        # using up an attempt, and all five arrive, at most two per window.
        base = "/quota"
        self.rx.handle(base + "/contacts", ContactSystem("quota"))
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors" % CLIENT,
                       {"type": "test_contacts", "environment": "test",
                        "settings": {"url": self.rx.url(base), "quota_window_calls": 2}})
        self.assertEqual(r.status, 201, r)
        con = r.json["connector_id"]
        cs = [customer() for _ in range(5)]
        r = harness.http(self.port, "POST", "/v1/%s/ingest" % CLIENT, body={"customers": cs},
                         key=self.key)
        self.assertEqual(r.status, 202, r)
        waited = set()

        def all_delivered():
            its = [d for d in self.items(con) if d["operation"] == "upsert_contact"]
            for d in its:
                if d["state"] == "retrying" and "quota" in (d["last_error"] or ""):
                    waited.add(d["delivery_id"])
            return its if len(its) == 5 and all(d["state"] == "delivered" for d in its) else None
        its = harness.wait_until(all_delivered, 30 * TS, interval=0.05, what="five delivered")
        reqs = self.rx.received(base + "/contacts")
        self.assertEqual(len(reqs), 5)
        # Windows are aligned to the epoch (wall clock): count the arrivals per 2-second window
        # (an arrival may land a hair after its window ended: the receiver's clock reads later).
        per_window = {}
        for q in reqs:
            w = int(q["wall"] // 2)
            per_window[w] = per_window.get(w, 0) + 1
        self.assertGreaterEqual(len(per_window), 2, per_window)
        self.assertTrue(waited, "no item was seen waiting for the quota")
        for d in its:
            self.assertEqual(self.delivery(d["delivery_id"])["attempts"], 1, d)
        # The connector's status shows the calls used per window, with the instance's limit.
        r = self.admin("GET", "/admin/v1/tenants/%s/connectors/%s" % (CLIENT, con))
        self.assertEqual(r.status, 200, r)
        q = r.json["status"]["quotas"]
        self.assertEqual([(w["window"], w["limit"]) for w in q], [("window", 2)], q)

    def test_deleting_the_connector_settles_its_waiting_items(self):
        con = self.add_connector("/gone")
        self.rx.script("/gone/contacts", Answer(503, None, {"Retry-After": "3600"}))
        c = customer()
        self.change(c)
        dlv = self.item_of(con, c["customer_id"])[0]["delivery_id"]
        self.wait_state(dlv, "retrying")
        r = self.admin("DELETE", "/admin/v1/tenants/%s/connectors/%s" % (CLIENT, con))
        self.assertEqual(r.status, 204, r)
        d = self.delivery(dlv)
        self.assertEqual(d["state"], "dead")
        self.assertEqual(d["last_error"], "the connector was deleted")


class CrashTests(OutboxBase):
    def setUp(self):
        self.setup_data()

    def start(self, fault=None):
        s = start_server(self.data, {"STAGEDOOR_FAULT": fault} if fault else None)
        self.addCleanup(s.kill)
        self.attach(s)
        return s

    def test_kill_before_the_send_sends_once_after_the_restart(self):
        s = self.start()
        con = self.add_connector("/k1")
        s.stop_ok()
        s = self.start("outbox_after_claim")
        c = customer()
        self.change(c)
        self.assertEqual(s.wait_exit(10 * TS), 137, s.diagnostics())
        self.assertEqual(self.rx.received("/k1/contacts"), [])
        self.start()
        dlv = self.item_of(con, c["customer_id"])[0]["delivery_id"]
        d = self.wait_state(dlv, "delivered")
        self.assertEqual(len(self.rx.received("/k1/contacts")), 1)
        self.assertEqual(d["remote_ref"], "k1-1")

    def test_kill_after_the_send_sends_again_with_the_same_key(self):
        s = self.start()
        con = self.add_connector("/k2")
        s.stop_ok()
        s = self.start("outbox_after_send")
        c = customer()
        self.change(c)
        self.assertEqual(s.wait_exit(10 * TS), 137, s.diagnostics())
        self.assertEqual(len(self.rx.received("/k2/contacts")), 1)
        self.start()
        dlv = self.item_of(con, c["customer_id"])[0]["delivery_id"]
        d = self.wait_state(dlv, "delivered")
        reqs = self.rx.received("/k2/contacts")
        self.assertEqual(len(reqs), 2)
        self.assertEqual(reqs[0]["headers"]["idempotency-key"],
                         reqs[1]["headers"]["idempotency-key"])
        self.assertTrue(reqs[1]["duplicate"])
        self.assertEqual(d["remote_ref"], "k2-1")


if __name__ == "__main__":
    harness.main()
