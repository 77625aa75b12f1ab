"""A customer without an e-mail address, end to end: an S-360 contact known only by phone and
address (the s360 type admits customers without e-mail) arrives through the simulator's
webhooks with an order, and then

  - is stored and read back (no e-mail, phones kept; in the change feed), its sale its own;
  - is its own profile (nothing links on a missing address);
  - is a member of a segment of the event's buyers, shown with e-mail null and its source id;
  - is pushed by id to a target that knows its source, and skipped (and counted in the
    delivery's facts: skipped_without_email) by one that takes e-mails only;
  - is erased: the record goes, its sale becomes ANON, the segment loses it;
while the hub's own contract is unchanged: the webhook still refuses a customer without e-mail
with the precise pointer and message."""

import os
import sys
import unittest

import harness
from receiver import Receiver

sys.path.insert(0, os.path.dirname(harness.HERE))      # tests/, for the sim package
from sim.s360 import Simulator   # noqa: E402

TS = harness.TIME_SCALE
CLIENT = "noemail"
SCALE_ENV = {"STAGEDOOR_OUTBOX_TIME_SCALE": "0.001"}


class NoEmail(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = harness.tempdir(cls)
        harness.tenant_create(cls.data, CLIENT)
        cls.key = harness.key_create(cls.data, CLIENT, "test")
        cls.rx = Receiver().start()
        cls.addClassCleanup(cls.rx.stop)
        old = {k: os.environ.get(k) for k in SCALE_ENV}
        os.environ.update(SCALE_ENV)
        try:
            cls.server = harness.Server(cls.data)
            cls.addClassCleanup(cls.server.kill)
            cls.server.start()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        cls.port = cls.server.port
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.token = f.read().strip()
        cls.api = harness.Api(cls.port, CLIENT, cls.key)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_ok()

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1/tenants/%s%s" % (CLIENT, path),
                            body=body, key=self.token)

    def target(self, path, source=None):
        body = {"type": "audience_push", "environment": "test", "url": self.rx.url(path),
                "app_key": "APP", "secure_token": "TOK"}
        if source:
            body["source"] = source
        r = self.admin("POST", "/targets", body)
        self.assertEqual(r.status, 201, r)
        return r.json["target_id"]

    def push(self, seg, tgt):
        r = self.api.req("POST", "/v1/%s/segments/%s/push" % (CLIENT, seg),
                         body={"target_id": tgt})
        self.assertEqual(r.status, 202, r)

        def delivered():
            d = harness.http(self.port, "GET", "/admin/v1/deliveries/" + r.json["delivery_id"],
                             key=self.token).json
            return d if d["state"] == "delivered" else None
        return harness.wait_until(delivered, 20 * TS, interval=0.05, what="the push delivered")

    def test_customer_without_email_end_to_end(self):
        r = self.admin("POST", "/connectors", {
            "type": "s360", "environment": "test",
            "settings": {"institution": "myvenue", "api_base": "http://127.0.0.1:9",
                         "event_city": "Zürich", "push_contacts": False, "source": "s360",
                         "auth": "bearer", "auth_secret": "tok"}})
        self.assertEqual(r.status, 201, r)
        streams = r.json["inbound"]["streams"]
        with Simulator(seed=31, clock_speed=0) as sim:
            season = sim.season
            mail = season.contact(kind="person", email="known@example.ch")
            box = season.contact(kind="person", email="x@example.ch")
            box["communicationMeans"] = [
                {"type": "PHONE", "value": "+41 44 123 45 67", "isMain": True}]
            for c in (mail, box):   # both consent, so both may be segment members
                c["authorizations"] = [{"authorizationType": "NEWSLETTER", "value": True}]
            perf = season.performances[0]
            orders = [season.order(c, "SALE", performance=perf) for c in (mail, box)]
            sim.add_contacts([mail, box])
            sim.add_orders(orders)
            for s in ("contacts", "orders"):
                sim.set_webhook(s, "http://127.0.0.1:%d%s" % (self.port, streams[s]),
                                ("bearer", "tok"))
            sim.advance(minutes=15)
            self.assertEqual(sim.drops(), 0)
        num = box["contactNumber"]
        r = self.admin("GET", "/quarantine?limit=100")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["quarantine"], [])

        # read back: no e-mail, the phone kept; in the change feed; its sale its own
        got = self.api.get("customers", num, "source=s360")
        self.assertEqual(got.status, 200, got)
        self.assertNotIn("email", got.json)
        self.assertEqual(got.json["phones"], [{"type": "PHONE", "number": "+41 44 123 45 67"}])
        feed = {c["customer_id"]: c for c in self.api.list_all("customers")[0]}
        self.assertEqual(set(feed), {num, mail["contactNumber"]})
        inv = "%d-%d" % (orders[1]["orderId"], orders[1]["operationDatas"][0]["operationId"])
        self.assertEqual(self.api.get("sales", inv).json["customer_id"], num)

        # its own profile, with no address
        r = self.api.req("GET", "/v1/%s/profiles?customer_id=%s&source=s360" % (CLIENT, num))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["data"]), 1)
        self.assertEqual(r.json["data"][0]["emails"], [])
        self.assertIsNone(r.json["data"][0]["sources"][0]["email"])

        # a member of the event's buyers
        r = self.api.req("POST", "/v1/%s/segments" % CLIENT, body={
            "segment_name": "Buyers", "description": "bought the performance",
            "rules": {"bought": {"event_id": str(perf["performanceId"])}}})
        self.assertEqual(r.status, 201, r)
        seg = r.json["segment_id"]
        self.assertEqual(r.json["member_count"], 2)
        r = self.api.req("GET", "/v1/%s/segments/%s/members" % (CLIENT, seg))
        self.assertEqual(r.status, 200, r)
        members = {m["source_ids"][0]["customer_id"]: m for m in r.json["data"]}
        self.assertIsNone(members[num]["email"])
        self.assertEqual(members[num]["source_ids"], [{"source": "s360", "customer_id": num}])
        self.assertEqual(members[mail["contactNumber"]]["email"], "known@example.ch")

        # pushed: by id where the receiver knows the source, else skipped and counted
        d = self.push(seg, self.target("/by-email"))
        self.assertEqual((d["customers"], d["facts"]["skipped_without_email"]), (1, 1), d)
        self.assertEqual(self.rx.received("/by-email")[0]["body"]["customers"],
                         [{"email": "known@example.ch"}])
        d = self.push(seg, self.target("/by-id", "s360"))
        self.assertEqual((d["customers"], d["facts"]["skipped_without_email"]), (2, 0), d)
        sent = self.rx.received("/by-id")[0]["body"]["customers"]
        self.assertIn({"customer_id": num}, sent)
        self.assertIn({"customer_id": mail["contactNumber"], "email": "known@example.ch"}, sent)

        # erased: the record goes, its sale is ANON, the segment loses it
        r = self.api.req("DELETE", "/v1/%s/customers/%s?erase=profile&source=s360" % (CLIENT, num))
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["records_erased"], r.json["sales_anonymized"]), (1, 1), r)
        self.assertEqual(self.api.get("customers", num, "source=s360").status, 404)
        self.assertEqual(self.api.get("sales", inv).json["customer_id"], "ANON")
        r = self.api.req("PUT", "/v1/%s/segments/%s" % (CLIENT, seg), body={})
        self.assertEqual((r.status, r.json["member_count"]), (200, 1), r)

        # the hub's own contract still requires the address
        r = self.api.ingest({"customers": [{"customer_id": "W1", "first_name": "Walk-in"}]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["errors"],
                         [{"pointer": "/customers/0/email", "message": "required field is missing"}])


if __name__ == "__main__":
    harness.main()
