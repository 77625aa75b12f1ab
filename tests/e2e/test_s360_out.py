"""The S-360 connector's outbound half end to end, through the real binary against the S-360
simulator (tests/sim/s360), whose clock follows the wall clock here (start = now, speed 1):

  - contacts out: customers of another source (the ingest API) become S-360 contacts
    (create_contacts), the contactNumber is their remote reference, and their next change
    updates that contact (getContactData, then saveIndividualContactData with the number) and
    keeps what stagedoor does not manage (phones, birth date);
  - under a rate limit lowered to 10 calls per 6 s, every contact still goes out exactly once:
    each 509 is waited out and tried again, nothing is dead;
  - no echo: contacts received from S-360's webhook (the instance's own door) are not written
    back, nor is S-360's echo of stagedoor's own writes;
  - a change from another origin of a customer of the instance's source updates its contact;
  - no stale overwrite: S-360's contact changed by an operator after the local change was
    queued (and before it was sent) is left as it is, and the item says so;
  - a 401 (expired token) refreshes the token once and repeats the call;
  - offers (POST /v1/{client_id}/connectors/{id}/offers): created once even when the request
    is retried; an in_progress answer whose order was made is found by its external reference
    instead of opening a second order; a pending offer answers 202 and its delivery is polled;
    a failed offer (NOT_ENOUGH_SEATS) answers 422 with S-360's statusDetail and leaves no
    order; the request is checked (400) before anything; the quota is 180 per minute unless
    the instance sets quota_minute_calls.

The connector type is "s360": its contact webhook arrives at the instance's contacts stream."""

import json
import os
import sys
import time
import unittest

import harness
from test_push import start_server

sys.path.insert(0, os.path.join(harness.REPO, "tests"))
from sim.s360 import Simulator  # noqa: E402

TS = harness.TIME_SCALE
CLIENT = "s360o"
TYPE = "s360"


class S360OutBase(unittest.TestCase):
    SIM = {}
    ENV = {}

    @classmethod
    def setUpClass(cls):
        cls.sim = Simulator(seed=11, start=time.time(), clock_speed=1.0, **cls.SIM)
        cls.sim.__enter__()
        cls.addClassCleanup(cls.sim.__exit__, None, None, None)
        cls.data = harness.tempdir(cls)
        harness.tenant_create(cls.data, CLIENT)
        cls.key = harness.key_create(cls.data, CLIENT, "test")
        cls.server = start_server(cls.data, cls.ENV)
        cls.addClassCleanup(cls.server.kill)
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.token = f.read().strip()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        if code != 0:
            raise AssertionError("server exited %r\n%s" % (code, cls.server.diagnostics()))

    @property
    def port(self):
        return self.server.port

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1/tenants/%s%s" % (CLIENT, path),
                            body=body, key=self.token)

    def add_connector(self, **settings):
        s = {"institution": "myvenue", "api_base": self.sim.base, "operator": "extcrm",
             "partner": "extcrm-myvenue", "secret": "s360-test-secret", "point_of_sales_id": 1001,
             "timeout_seconds": 10, "event_city": "Zürich"}
        s.update(settings)
        r = self.admin("POST", "/connectors", {"type": TYPE, "environment": "test",
                                               "settings": s})
        self.assertEqual(r.status, 201, r)
        contacts = r.json["inbound"]["streams"]["contacts"]
        return r.json["connector_id"], "http://127.0.0.1:%d%s" % (self.port, contacts)

    def ingest(self, customers):
        r = harness.http(self.port, "POST", "/v1/%s/ingest" % CLIENT,
                         body={"customers": customers}, key=self.key)
        self.assertEqual(r.status, 202, r)

    def items(self, connector):
        r = harness.http(self.port, "GET", "/v1/%s/deliveries?connector=%s&limit=1000"
                         % (CLIENT, connector), key=self.key)
        self.assertEqual(r.status, 200, r)
        return r.json["data"]

    def settled(self, connector, n, timeout=60):
        """Wait until n items of the connector have ended; returns them all."""
        def done():
            got = self.items(connector)
            ended = [d for d in got if d["state"] in ("delivered", "dead", "cancelled")]
            return got if len(ended) >= n and len(ended) == len(got) else None
        return harness.wait_until(done, timeout * TS, interval=0.1,
                                  what="%d items of %s settled" % (n, connector))

    def saves(self, number=None):
        return [c for c in self.sim.calls(rpc="saveIndividualContactData")
                if c.status == 200 and (number is None or (c.json or {}).get("contactNumber")
                                        == number)]


class ContactsOut(S360OutBase):
    # 10 calls per 6 s (S-360's limit is 180 per minute; the window is compressed tenfold
    # here, and so is the outbox's wait after a 509 without Retry-After: 60 s → 6 s)
    SIM = {"rate_limit": 10, "rate_window": 6.0}
    ENV = {"STAGEDOOR_OUTBOX_TIME_SCALE": "0.1"}

    def test_1_create_then_update_within_the_rate_limit(self):
        cid, _ = self.add_connector(create_contacts=True)
        n = 14
        people = [harness.customer("csv-%02d" % i, email="p%02d@example.ch" % i,
                                   first_name="First%d" % i, last_name="Last%d" % i,
                                   street="Gasse %d" % i, post_code="80%02d" % i)
                  for i in range(n)]
        self.ingest(people)
        items = self.settled(cid, n)
        self.assertEqual(sorted(d["state"] for d in items), ["delivered"] * n, items)
        # every contact made once, although the limit refused calls on the way
        created = [c for c in self.saves() if "contactNumber" not in c.json]
        self.assertEqual(len(created), n)
        refused = [c for c in self.sim.calls() if c.status == 509]
        self.assertGreater(len(refused), 0, "the lowered limit was never reached")
        numbers = {}
        for d in items:
            self.assertEqual(d["facts"].get("kind"), "create", d)
            numbers[d["subject"]["id"]] = d["remote_ref"]
            c = self.sim.contacts[d["remote_ref"]]
            i = int(d["subject"]["id"].split("-")[-1])
            self.assertEqual(d["subject"]["id"], "webhook:csv-%02d" % i)
            self.assertEqual(c["individualContact"]["lastName"], "Last%d" % i)
            self.assertEqual(c["individualContact"]["firstName"], "First%d" % i)
            self.assertEqual([m["value"] for m in c["communicationMeans"]
                              if m["type"] == "EMAIL"], ["p%02d@example.ch" % i])
            self.assertEqual(c["addresses"][0]["street1"], "Gasse %d" % i)
        self.assertEqual(len(set(numbers.values())), n)

        # S-360 holds a phone stagedoor does not manage; the update keeps it
        num = numbers["webhook:csv-03"]
        with self.sim._cond:
            self.sim.contacts[num]["communicationMeans"].append(
                {"type": "MOBILE", "value": "+41 79 000 00 03", "isMain": False})
        time.sleep(2.5)  # the next local change is clearly after that edit (clock skew 2 s)
        self.ingest([harness.customer("csv-03", email="p03@example.ch", last_name="Renamed")])
        items = self.settled(cid, n + 1)
        upd = [d for d in items if d["subject"]["id"] == "webhook:csv-03"
               and d["facts"].get("kind") == "update"]
        self.assertEqual(len(upd), 1, items)
        self.assertEqual(upd[0]["state"], "delivered")
        self.assertNotIn("skipped", upd[0]["facts"])
        self.assertEqual(upd[0]["remote_ref"], num)
        c = self.sim.contacts[num]
        self.assertEqual(c["individualContact"]["lastName"], "Renamed")
        self.assertIn("+41 79 000 00 03", [m["value"] for m in c["communicationMeans"]])
        self.assertEqual(len(self.sim.contacts), n)  # updated, not created again
        self.assertEqual(len(self.saves(num)), 1)


class Linked(S360OutBase):
    def setUp(self):
        # one instance for the class: a second one would write the same changes too
        if not hasattr(Linked, "cid"):
            Linked.cid, Linked.door = self.add_connector()
            self.sim.set_webhook("contacts", self.door)

    def receive_season(self, n):
        """n contacts pushed by S-360's contact webhook to the instance's door."""
        self.sim.clear_calls()
        contacts, _, _ = self.sim.make_season(n, 0)
        self.sim.run_now()
        self.assertEqual(self.sim.drops(), 0)
        people = [c["contactNumber"] for c in contacts
                  if "individualContact" in c and any(m["type"] == "EMAIL"
                                                      for m in c["communicationMeans"])]
        for num in people:
            r = harness.http(self.port, "GET", "/v1/%s/customers/%s?source=s360" % (CLIENT, num),
                             key=self.key)
            self.assertEqual(r.status, 200, r)
        return people

    def change_elsewhere(self, number, **fields):
        """A change of a customer of the instance's source through another origin (the hub's
        API as an operator's tool would send it, under the s360 source label)."""
        _, door = self.other_door()
        rec = {"customer_id": number, "email": self.email_of(number)}
        rec.update(fields)
        r = harness.http(self.port, "POST", door[door.index("/in/"):], body=[rec],
                         headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r)

    def stored(self, number, source="s360"):
        r = harness.http(self.port, "GET", "/v1/%s/customers/%s?source=%s"
                         % (CLIENT, number, source), key=self.key)
        return r.json if r.status == 200 else {}

    def email_of(self, number):
        return [m["value"] for m in self.sim.contacts[number]["communicationMeans"]
                if m["type"] == "EMAIL"][0]

    _other = None

    def other_door(self):
        """A webhook_in instance (another origin) that stores customers under the s360 source."""
        if Linked._other is None:
            r = self.admin("POST", "/connectors", {"type": "webhook_in", "environment": "test",
                                                   "settings": {"kind": "customers",
                                                                "source": "s360"}})
            self.assertEqual(r.status, 201, r)
            Linked._other = (r.json["connector_id"], r.json["inbound"]["url"])
        return Linked._other

    def test_1_no_echo_then_changes_elsewhere_go_out(self):
        people = self.receive_season(6)
        self.assertGreaterEqual(len(people), 3)
        time.sleep(0.5 * TS)
        self.assertEqual(self.items(self.cid), [], "contacts from S-360 went back to it")
        self.assertEqual(self.saves(), [])

        num = people[0]
        self.change_elsewhere(num, last_name="Fromthecrm")
        items = self.settled(self.cid, 1)
        self.assertEqual(len(items), 1, items)
        self.assertEqual(items[0]["state"], "delivered", items)
        self.assertEqual(items[0]["subject"]["id"], "s360:" + num)
        self.assertEqual(items[0]["remote_ref"], num)
        self.assertEqual(self.sim.contacts[num]["individualContact"]["lastName"], "Fromthecrm")
        self.assertEqual(len(self.saves(num)), 1)
        # S-360 echoes the saved contact on its webhook: stored, not written back again
        before = len(self.items(self.cid))
        self.sim.run_now()
        time.sleep(0.5 * TS)
        self.assertEqual(len(self.items(self.cid)), before)
        self.assertEqual(len(self.saves(num)), 1)

    def test_2_no_stale_overwrite(self):
        people = self.receive_season(3)
        num = people[-1]
        # the local change is queued while getContactData takes 5 s; meanwhile, 3 s after the
        # local change, an operator edits the contact in S-360
        self.sim.inject("getContactData", [("sleep", 5.0)])
        before = len(self.items(self.cid))
        self.change_elsewhere(num, first_name="Stale")
        time.sleep(3.0)
        self.sim.change_contact(num, push=False, firstName="Operator")
        items = self.settled(self.cid, before + 1)
        mine = [d for d in items if d["subject"]["id"] == "s360:" + num]
        self.assertEqual(len(mine), 1, items)
        self.assertEqual(mine[0]["state"], "delivered")
        self.assertEqual(mine[0]["facts"].get("skipped"), "remote newer", mine[0])
        self.assertEqual(self.sim.contacts[num]["individualContact"]["firstName"], "Operator")
        self.assertEqual(self.saves(num), [])

        # S-360's own times decide, not the clocks: while stagedoor has not received the
        # operator's change (its lastUpdateDate is past the version stored), a later local
        # change is still skipped ...
        before = len(self.items(self.cid))
        self.change_elsewhere(num, first_name="Unseen")
        items = self.settled(self.cid, before + 1)
        mine = [d for d in items if d["subject"]["id"] == "s360:" + num]
        self.assertEqual(len(mine), 2, mine)
        for d in mine:
            self.assertEqual(d["facts"].get("skipped"), "remote newer", d)
            self.assertEqual(d["facts"].get("rule"), "remote_version", d)
        self.assertEqual(self.sim.contacts[num]["individualContact"]["firstName"], "Operator")
        self.assertEqual(self.saves(num), [])
        # ... and once its webhook brought the change in, a later local change goes out
        self.sim.change_contact(num, firstName="Operator")
        self.sim.run_now()
        self.assertEqual(self.sim.drops(), 0)
        harness.wait_until(lambda: self.stored(num).get("first_name") == "Operator", 20 * TS,
                           what="the operator's change received")
        self.change_elsewhere(num, first_name="Later")
        items = self.settled(self.cid, before + 2)
        self.assertEqual(self.sim.contacts[num]["individualContact"]["firstName"], "Later")
        self.assertEqual(len(self.saves(num)), 1)

    def test_3_expired_token_refreshes_once(self):
        people = self.receive_season(3)
        num = people[0]
        self.change_elsewhere(num, last_name="Warmup")
        self.settled(self.cid, len(self.items(self.cid)))
        harness.wait_until(lambda: self.saves(num), 20 * TS, what="warm-up save")
        auths = len(self.sim.calls(rpc="auth"))
        # the token expires in S-360 (the simulator forgets it): the next call is a 401
        with self.sim._cond:
            for t in list(self.sim._tokens):
                self.sim._tokens[t] = 0.0
        before = len(self.items(self.cid))
        self.change_elsewhere(num, last_name="Afterexpiry")
        items = self.settled(self.cid, before + 1)
        self.assertTrue(all(d["state"] == "delivered" for d in items), items)
        self.assertEqual(self.sim.contacts[num]["individualContact"]["lastName"], "Afterexpiry")
        self.assertEqual(len(self.sim.calls(rpc="auth")), auths + 1)
        got = self.sim.calls(rpc="getContactData")
        self.assertEqual([c.status for c in got[-2:]], [401, 200])
        self.assertNotEqual(got[-2].header("Authorization"), got[-1].header("Authorization"))


class Offers(S360OutBase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sim.make_season(4, 0, push=False)

    def setUp(self):
        if not hasattr(Offers, "cid"):
            Offers.cid, _ = self.add_connector()
        perf = self.sim.season.performances[0]
        self.perf = perf
        self.cat = perf["seatCategories"][0]["seatCategoryId"]
        self.aud = perf["audienceSubCategories"][0]["audienceSubCategoryId"]
        self.buyer = [n for n, c in self.sim.contacts.items() if "individualContact" in c][0]

    def offer(self, key, **kw):
        body = {"contact": self.buyer, "performance_id": self.perf["performanceId"],
                "seat_category_id": self.cat, "audience_sub_category_id": self.aud,
                "quantity": 2, "order_type": "SALE"}
        body.update(kw)
        headers = {"Idempotency-Key": key} if key else {}
        return harness.http(self.port, "POST", "/v1/%s/connectors/%s/offers?wait=%d"
                            % (CLIENT, self.cid, min(60, int(20 * TS))), body=body, key=self.key,
                            headers=headers)

    def test_1_created_once_when_retried(self):
        stock = self.sim.stock[(self.perf["performanceId"], self.cat)]
        r = self.offer("offer-key-1")
        self.assertEqual(r.status, 201, r)
        dlv = r.json["delivery_id"]
        self.assertEqual(r.json["result"]["order_state"], "CLOSED")
        self.assertEqual(r.json["result"]["order_type"], "SALE")
        orders = self.sim.orders_by_reference(dlv)
        self.assertEqual(len(orders), 1)
        self.assertEqual(r.json["remote_ref"], str(orders[0]["orderId"]))
        again = self.offer("offer-key-1")
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.json["delivery_id"], dlv)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(len(self.sim.orders_by_reference(dlv)), 1)
        self.assertEqual(self.sim.stock[(self.perf["performanceId"], self.cat)], stock - 2)
        # the call S-360 saw: the offer's id as external reference, the contact as buyer
        call = [c for c in self.sim.calls(rpc="createOrUpdateOrder")
                if c.json.get("externalReference") == dlv]
        self.assertEqual(len(call), 1)
        self.assertEqual(call[0].json["purchasersInfo"]["contactReference"], self.buyer)
        self.assertEqual(call[0].json["pointOfSalesId"], 1001)

    def test_2_in_progress_done_is_found_not_repeated(self):
        self.sim.inject("createOrUpdateOrder", [("in_progress_done",)])
        r = self.offer("offer-key-2", order_type="RESERVATION")
        self.assertEqual(r.status, 201, r)
        dlv = r.json["delivery_id"]
        self.assertEqual(len(self.sim.orders_by_reference(dlv)), 1)
        self.assertTrue(r.json["result"]["found_existing"])
        creates = [c for c in self.sim.calls(rpc="createOrUpdateOrder")
                   if c.json.get("externalReference") == dlv]
        self.assertEqual(len(creates), 1)

    def test_3_failed_offer_leaves_nothing(self):
        stock = dict(self.sim.stock)
        self.sim.inject("createOrUpdateOrder",
                        [("inband", "failed", "NOT_ENOUGH_SEATS: 0 left in seat category")])
        r = self.offer("offer-key-3")
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.json["error"], "action_failed")
        self.assertIn("NOT_ENOUGH_SEATS", r.json["message"])
        self.assertEqual(self.sim.orders_by_reference(r.json["delivery_id"]), [])
        self.assertEqual(self.sim.stock, stock)
        # a real shortage, without a fault: more seats than the category holds
        r = self.offer("offer-key-4", quantity=50)
        while r.status == 201:  # empty the category 50 at a time, then one more fails
            r = self.offer(harness.uid("k"), quantity=50)
        self.assertEqual(r.status, 422, r)
        self.assertIn("NOT_ENOUGH_SEATS", r.json["message"])
        self.assertEqual(self.sim.orders_by_reference(r.json["delivery_id"]), [])

    def test_5_pending_answers_202_then_poll(self):
        self.sim.inject("findOrdersByExternalReference", [("sleep", 2.0)])
        r = harness.http(self.port, "POST", "/v1/%s/connectors/%s/offers?wait=0"
                         % (CLIENT, self.cid),
                         body={"contact": self.buyer, "performance_id": self.perf["performanceId"],
                               "seat_category_id": self.cat, "audience_sub_category_id": self.aud,
                               "quantity": 1, "order_type": "OPTION"},
                         key=self.key, headers={"Idempotency-Key": "offer-key-6"})
        self.assertEqual(r.status, 202, r)
        dlv = r.json["delivery_id"]
        self.assertIn(r.json["state"], ("queued", "sending"))
        self.assertEqual(r.header("Location"), "/v1/%s/deliveries/%s" % (CLIENT, dlv))

        def delivered():
            d = harness.http(self.port, "GET", "/v1/%s/deliveries/%s" % (CLIENT, dlv),
                             key=self.key)
            return d.json if d.json["state"] == "delivered" else None
        d = harness.wait_until(delivered, 30 * TS, interval=0.1, what="offer delivered")
        self.assertEqual(d["facts"]["order_type"], "OPTION")
        self.assertEqual(len(self.sim.orders_by_reference(dlv)), 1)
        r = self.offer("offer-key-6", quantity=1, order_type="OPTION")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["delivery_id"], dlv)
        self.assertEqual(r.json["remote_ref"], d["remote_ref"])

    def test_6_quota_per_credential(self):
        """The 180-per-minute quota, overridable per instance, counted per credential."""
        st = self.admin("GET", "/connectors/" + self.cid).json["status"]["quotas"]
        self.assertEqual([(q["window"], q["limit"]) for q in st], [("minute", 180)])
        other, _ = self.add_connector(quota_minute_calls=40, institution="othervenue")
        st = self.admin("GET", "/connectors/" + other).json["status"]["quotas"]
        self.assertEqual([(q["window"], q["limit"]) for q in st], [("minute", 40)])

    def test_4_requests_checked_first(self):
        n = len(self.sim.calls())
        r = self.offer(None)
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["error"], "idempotency_key_required")
        r = self.offer("offer-key-5", quantity=0, order_type="GIFT")
        self.assertEqual(r.status, 400, r)
        ptrs = sorted(e["pointer"] for e in r.json["errors"])
        self.assertEqual(ptrs, ["/order_type", "/quantity"])
        r = harness.http(self.port, "POST", "/v1/%s/connectors/%s/nothing" % (CLIENT, self.cid),
                         body={}, key=self.key, headers={"Idempotency-Key": "x"})
        self.assertEqual(r.status, 404, r)
        self.assertEqual(len(self.sim.calls()), n)


if __name__ == "__main__":
    harness.main()
