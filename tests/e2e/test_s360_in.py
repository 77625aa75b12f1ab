"""The s360 connector's inbound half through the real binary, with the S-360 simulator
(tests/sim/s360) pushing its webhooks to the instance's stream URLs
/in/{connector_id}/{token}/{institution}/{contacts|orders}.

What is checked:
  - a season (persons, companies, shared e-mails, contacts without e-mail — stored as customers
    without an address, their orders applied, nothing quarantined — sales, reservations,
    options, abandoned baskets, refunds, exchanges, freeings, order ids past 2**53) arrives and
    matches what the simulator sent, record by record (computed here independently of the
    mapping); every payload is answered 200 at its first attempt, nothing is dropped;
  - resends change nothing: the same items regrouped into other payloads leave the change feed
    empty; an older snapshot of a contact sent after a newer one does not overwrite it;
  - the stream URLs: connector show lists them; a wrong institution segment or an unknown stream
    is a 404 like a wrong token; every non-200 is counted per connector and stream in /metrics;
  - a poisoned object is quarantined with its reason while its payload is answered 200 and the
    rest applied; after the fix (the order's contact arrives) a run applies it once;
  - kill -9 between the commit and the answer: the simulator's resend completes the payload,
    nothing is dropped or doubled;
  - a refund order changes a segment's result;
  - access control: scans count once each into their sale's attendance, so "bought but did not
    attend" finds who never came; a resent scan and a resent order change nothing; a scan of a
    sale not stored yet waits in quarantine;
  - history_from: older contacts and orders are acknowledged and counted (skipped), not stored;
    a backfill burst of many payloads over several runs is answered without a drop, while another
    tenant's webhooks keep being accepted.
Four door credentials are used: HTTP Basic, Bearer, a static header, and the token alone.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import collections
import datetime as dt
import json
import os
import sys
import threading
import unittest
from decimal import Decimal

import harness

sys.path.insert(0, os.path.join(harness.REPO, "tests"))
from sim.s360 import Simulator   # noqa: E402

CLIENT = "s360_in"
CITY = "Zürich"


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def has_email(c):
    return any(m.get("type") == "EMAIL" and m.get("value") for m in c["communicationMeans"])


def email_of(c):
    mails = [m for m in c["communicationMeans"] if m.get("type") == "EMAIL" and m.get("value")]
    main = [m for m in mails if m.get("isMain")]
    return (main or mails)[0]["value"]


def price(thousandths):
    return str((Decimal(abs(thousandths)) / 1000).quantize(Decimal("0.01")))


def expected_sales(orders, stored_contacts, abandoned="ABANDONED"):
    """invoice -> the fields the hub must hold, from the simulator's orders alone."""
    out = {}
    for d in orders:
        if d["contactReference"] not in stored_contacts:
            continue
        for op in d["operationDatas"]:
            if "performanceId" not in op:
                continue  # goods and services: no ticket record
            inv = "%d-%d" % (d["orderId"], op["operationId"])
            typ = d["orderType"]
            rec = {"customer_id": d["contactReference"], "event_id": str(op["performanceId"]),
                   "quantity": abs(op["quantity"]), "sales_price": price(op["unitPrice"]),
                   "currency": "CHF", "order_id": str(d["orderId"])}
            if typ.endswith("_FREEING"):
                orig = "%d-%d" % (d["originalOrderId"], op["originalOperationId"])
                if orig in out:
                    out[orig]["status"] = "freed"
                continue
            if d["orderState"] == abandoned:
                rec["order_type"] = "abandoned"
            elif op["quantity"] < 0:
                rec["order_type"] = "refund"
                rec["refund_of"] = "%d-%d" % (d["originalOrderId"], op["originalOperationId"])
            else:
                rec["order_type"] = {"RESERVATION": "reservation",
                                     "OPTION": "option"}.get(typ, "sale")
            out[inv] = rec
    return out


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = harness.tempdir(cls)
        cls.keys = {}
        for client in (CLIENT, "s360_seg", "s360_hist", "s360_att"):   # before the start: keys are read then
            harness.tenant_create(cls.data, client)
            cls.keys[client] = harness.key_create(cls.data, client, "test")
        cls.key = cls.keys[CLIENT]
        cls.server = harness.Server(cls.data)
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.token = admin_token(cls.data)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        if code != 0:
            raise AssertionError("server exited %r\n%s" % (code, cls.server.diagnostics()))

    @property
    def port(self):
        return self.server.port

    def admin(self, method, path, body=None, client=CLIENT):
        return harness.http(self.port, method, "/admin/v1/tenants/%s%s" % (client, path),
                            body=body, key=self.token)

    def create(self, client=CLIENT, **settings):
        s = {"institution": "myvenue", "api_base": "http://127.0.0.1:9", "event_city": CITY,
             "push_contacts": False, "source": "s360"}
        s.update(settings)
        r = self.admin("POST", "/connectors",
                       {"type": "s360", "environment": "test", "settings": s}, client=client)
        self.assertEqual(r.status, 201, r)
        return r.json["connector_id"], r.json["inbound"]["streams"]

    def hook(self, sim, streams, auth=None, port=None):
        for s in ("contacts", "orders"):
            sim.set_webhook(s, "http://127.0.0.1:%d%s" % (port or self.port, streams[s]), auth)

    def quarantine(self, cid, client=CLIENT):
        r = self.admin("GET", "/quarantine?connector=%s&limit=1000" % cid, client=client)
        self.assertEqual(r.status, 200, r)
        return r.json["quarantine"]

    def metrics(self):
        return harness.http(self.port, "GET", "/metrics").text

    def metric(self, name, cid, stream=None):
        label = 'connector="%s"' % cid + (',stream="%s"' % stream if stream else "")
        for line in self.metrics().splitlines():
            if line.startswith("%s{%s}" % (name, label)):
                return int(line.split()[-1])
        return 0


class SeasonTest(Base):
    def test_season_record_by_record_and_resends(self):
        cid, streams = self.create(auth="basic", auth_user="s360", auth_secret="pw-basic")
        api = harness.Api(self.port, CLIENT, self.key)
        with Simulator(seed=11, clock_speed=0, big_ids=True) as sim:
            contacts, orders, _ = sim.make_season(160, 260)
            self.hook(sim, streams, ("basic", "s360", "pw-basic"))
            sim.advance(minutes=15)
            self.assertEqual(sim.drops(), 0)
            for s in ("contacts", "orders"):
                st = sim.stats(s)
                self.assertEqual((st["queued"], st["waiting"]), (0, 0), st)
                self.assertEqual(st["attempts"], st["delivered_payloads"], st)
            self.assertTrue(any(d["orderId"] > 2 ** 53 for d in orders))

            # customers: one per contact, shared addresses kept apart, and the contacts
            # without any e-mail stored too (no e-mail in the record, their phones kept)
            stored = {c["customer_id"]: c for c in api.list_all("customers")[0]}
            with_mail = [c for c in contacts if has_email(c)]
            without = [c for c in contacts if not has_email(c)]
            self.assertTrue(without, "the season has contacts without e-mail")
            self.assertEqual(sorted(stored), sorted(c["contactNumber"] for c in contacts))
            mails = collections.Counter(email_of(c) for c in with_mail)
            self.assertTrue(any(n > 1 for n in mails.values()), "shared e-mails in the season")
            for c in contacts:
                got = stored[c["contactNumber"]]
                self.assertEqual(got.get("email"), email_of(c) if has_email(c) else None)
                self.assertEqual([p["number"] for p in got["phones"]],
                                 [m["value"] for m in c["communicationMeans"]
                                  if m["type"] in ("PHONE", "MOBILE", "FAX")])
                addr = c["addresses"][0]
                self.assertEqual((got["post_code"], got["city"], got["country"]),
                                 (addr["zipCode"], addr["town"], addr["countryCode"]))
                if "structureContact" in c:
                    self.assertEqual((got["contact_type"], got["company"]),
                                     ("company", c["structureContact"]["name"]))
                else:
                    p = c["individualContact"]
                    self.assertEqual((got["contact_type"], got["first_name"], got["last_name"]),
                                     ("person", p["firstName"], p["lastName"]))
                news = [a["value"] for a in c["authorizations"]
                        if a["authorizationType"] == "NEWSLETTER"]
                self.assertEqual(got["ad_opt_out"], not news[0])
            # nothing waits in quarantine: no contact and none of their orders
            self.assertEqual(self.quarantine(cid), [])

            # sales: record by record
            want = expected_sales(orders, stored)
            sales = {s["invoice_number"]: s for s in api.list_all("sales")[0]}
            self.assertEqual(sorted(sales), sorted(want))
            for inv, w in want.items():
                for k, v in w.items():
                    self.assertEqual(sales[inv].get(k), v, (inv, k, sales[inv]))
            # events: one per performance sold, titled and dated from the order lines
            events = {e["event_id"]: e for e in api.list_all("events")[0]}
            for d in orders:
                for op in d["operationDatas"]:
                    if "performanceId" not in op or d["contactReference"] not in stored:
                        continue
                    e = events[str(op["performanceId"])]
                    day, hm = op["performance"].rsplit(" ", 2)[-2:]
                    dd, mm, yyyy = day.split(".")
                    self.assertEqual((e["title"], e["date"], e["time"], e["city"]),
                                     (op["performance"], "%s-%s-%s" % (yyyy, mm, dd),
                                      hm + ":00", CITY))
            kinds = collections.Counter(w["order_type"] for w in want.values())
            for k in ("sale", "refund", "reservation", "abandoned"):
                self.assertGreater(kinds[k], 0, kinds)
            # the people without e-mail bought too: their sales are theirs, not anonymous
            nomail = {c["contactNumber"] for c in without}
            self.assertTrue(any(w["customer_id"] in nomail for w in want.values()))

            # resends: the same items in other payloads change nothing
            _, ccur = api.list_all("customers")
            _, scur = api.list_all("sales")
            for s in ("contacts", "orders"):
                items = list(reversed(sim.delivered_items(s)))
                for i in range(0, len(items), 25):
                    r = harness.http(self.port, "POST", streams[s], body=items[i:i + 25],
                                     headers={"Authorization": basic("s360", "pw-basic")})
                    self.assertEqual(r.status, 200, r)
                    self.assertFalse(r.json["duplicate"])
            self.assertEqual(api.list_all("customers", cursor=ccur)[0], [])
            self.assertEqual(api.list_all("sales", cursor=scur)[0], [])

            # an older snapshot after a newer change does not overwrite it
            num = with_mail[0]["contactNumber"]
            old = json.loads(json.dumps(sim.contacts[num]))
            sim.advance(minutes=1)
            sim.change_contact(num, lastName="Neumann")
            sim.advance(minutes=15)
            self.assertEqual(api.get("customers", num, "source=s360").json["last_name"],
                             "Neumann")
            r = harness.http(self.port, "POST", streams["contacts"], body=[old],
                             headers={"Authorization": basic("s360", "pw-basic")})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(api.get("customers", num, "source=s360").json["last_name"],
                             "Neumann")
            self.assertEqual(sim.drops(), 0)

        # the URLs: shown without the token; others are refused like a wrong token
        r = self.admin("GET", "/connectors/" + cid)
        self.assertEqual(r.json["inbound_streams"]["orders"],
                         "/in/%s/{token}/myvenue/orders" % cid)
        good = streams["orders"]
        auth = {"Authorization": basic("s360", "pw-basic")}
        for path in (good.replace("/myvenue/", "/othervenue/"), good[:-len("orders")] + "scans",
                     good.replace("/myvenue/orders", "/orders"),
                     good.replace("/myvenue/orders", "")):
            r = harness.http(self.port, "POST", path, body=[], headers=auth)
            self.assertEqual(r.status, 404, (path, r))
        self.assertEqual(harness.http(self.port, "POST", good, body=[]).status, 404)
        self.assertGreaterEqual(self.metric("stagedoor_inbound_non200_total", cid), 5)
        self.assertGreater(self.metric("stagedoor_inbound_applied_total", cid, "contacts"), 0)
        self.assertGreater(self.metric("stagedoor_inbound_applied_total", cid, "orders"), 0)


def basic(user, password):
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class QuarantineTest(Base):
    def test_poisoned_object_quarantined_then_replayed(self):
        cid, streams = self.create(auth="bearer", auth_secret="tok-bearer")
        api = harness.Api(self.port, CLIENT, self.key)
        with Simulator(seed=23, clock_speed=0) as sim:
            season = sim.season
            people = [season.contact(kind="person", email="p%d@example.ch" % i)
                      for i in range(4)]
            late = people.pop()
            sim.add_contacts(people)
            orders = [season.order(c, "SALE") for c in people] + [season.order(late, "SALE")]
            sim.add_orders(orders)
            self.hook(sim, streams, ("bearer", "tok-bearer"))
            sim.advance(minutes=15)
            self.assertEqual(sim.drops(), 0)
            q = self.quarantine(cid)
            self.assertEqual(len(q), 1, q)
            self.assertIn("customer '%s' does not exist" % late["contactNumber"], q[0]["reason"])
            inv = "%d-%d" % (orders[-1]["orderId"], orders[-1]["operationDatas"][0]["operationId"])
            self.assertEqual(api.get("sales", inv).status, 404)
            # the fix: the contact arrives; a run replays the quarantine
            sim.add_contacts([late])
            sim.advance(minutes=15)
            r = self.admin("POST", "/connectors/%s/run" % cid)
            self.assertEqual(r.status, 202, r)
            harness.wait_until(lambda: api.get("sales", inv).status == 200,
                               10 * harness.TIME_SCALE, what="the replayed sale")
            harness.wait_until(lambda: self.quarantine(cid) == [], 10 * harness.TIME_SCALE,
                               what="the quarantine emptied")
            self.assertEqual(api.get("sales", inv).json["customer_id"], late["contactNumber"])
        # an id sent as a floating-point number is refused with the precise reason
        bad = {"orderDetailsData": dict(orders[0], orderId=float(orders[0]["orderId"]) + 0.5)}
        r = harness.http(self.port, "POST", streams["orders"], body=[bad],
                         headers={"Authorization": "Bearer tok-bearer"})
        self.assertEqual((r.status, r.json["quarantined"]), (200, 1), r)
        q = self.quarantine(cid)
        self.assertIn("/orderDetailsData/orderId: must be an integer id", q[-1]["reason"])


class CrashTest(unittest.TestCase):
    def test_kill9_during_a_payload_resend_completes_it(self):
        data = harness.tempdir(self)
        harness.tenant_create(data, CLIENT)
        key = harness.key_create(data, CLIENT, "test")
        os.environ["STAGEDOOR_FAULT"] = "inbound_after_commit"
        try:
            server = harness.Server(data).start()
        finally:
            os.environ.pop("STAGEDOOR_FAULT", None)
        self.addCleanup(server.kill)
        tok = admin_token(data)
        r = harness.http(server.port, "POST", "/admin/v1/tenants/%s/connectors" % CLIENT,
                         {"type": "s360", "environment": "test",
                          "settings": {"institution": "myvenue", "api_base": "http://127.0.0.1:9",
                                       "event_city": CITY, "push_contacts": False}}, key=tok)
        self.assertEqual(r.status, 201, r)
        streams = r.json["inbound"]["streams"]
        with Simulator(seed=5, clock_speed=0, per_payload=20) as sim:
            contacts = [sim.season.contact(kind="person", email="k%d@example.ch" % i)
                        for i in range(20)]
            sim.add_contacts(contacts)
            sim.set_webhook("contacts", "http://127.0.0.1:%d%s" % (server.port,
                                                                  streams["contacts"]))
            sim.advance(minutes=15)   # the hub commits, then dies before answering
            self.assertEqual(server.wait_exit(), 137)
            self.assertEqual(sim.stats("contacts")["waiting"], 1)
            server = harness.Server(data).start()
            self.addCleanup(server.kill)
            sim.set_webhook("contacts", "http://127.0.0.1:%d%s" % (server.port,
                                                                  streams["contacts"]))
            sim.advance(minutes=15)   # the resend
            self.assertEqual(sim.drops(), 0)
            self.assertEqual(sim.stats("contacts")["waiting"], 0)
            self.assertEqual(sim.payloads("contacts")[0].answers[-1], 200)
        api = harness.Api(server.port, CLIENT, key)
        ids = sorted(c["customer_id"] for c in api.list_all("customers")[0])
        self.assertEqual(ids, sorted(c["contactNumber"] for c in contacts))
        self.assertEqual(server.stop(), 0)


class SegmentTest(Base):
    def test_refund_changes_a_segment(self):
        client = "s360_seg"
        api = harness.Api(self.port, client, self.keys[client])
        cid, streams = self.create(client=client, auth="header", auth_header="X-S360-Key",
                                   auth_secret="hdr-secret")
        with Simulator(seed=31, clock_speed=0) as sim:
            season = sim.season
            perf = season.performances[0]
            people = [season.contact(kind="person", email="s%d@example.ch" % i) for i in range(3)]
            for c in people:   # opted in: segments leave out people who refused advertising
                for a in c["authorizations"]:
                    a["value"] = a["authorizationType"] == "NEWSLETTER"
            sales = [season.order(c, "SALE", performance=perf, quantity=2) for c in people]
            sim.add_contacts(people)
            sim.add_orders(sales)
            self.hook(sim, streams, ("header", "X-S360-Key", "hdr-secret"))
            sim.advance(minutes=15)
            rules = {"bought": {"event_id": str(perf["performanceId"])}}
            self.assertEqual(members(api, rules), sorted(c["contactNumber"] for c in people))
            sim.add_orders([season.order({"contactNumber": people[0]["contactNumber"]},
                                         "REFUND_CLIENT", undoes=sales[0])])
            sim.advance(minutes=15)
            self.assertEqual(sim.drops(), 0)
            self.assertEqual(members(api, rules),
                             sorted(c["contactNumber"] for c in people[1:]))
            self.assertEqual(self.quarantine(cid, client=client), [])


def members(api, rules):
    r = api.req("POST", "/v1/%s/segments" % api.client_id,
                body={"segment_name": harness.uid("seg"), "rules": rules},
                headers={"Content-Type": "application/json"})
    if r.status != 201:
        raise AssertionError(r)
    r = api.req("GET", "/v1/%s/segments/%s/members?limit=100" % (api.client_id,
                                                                r.json["segment_id"]))
    return sorted(s["customer_id"] for m in r.json["data"] for s in m["source_ids"])


class AttendanceTest(Base):
    def test_scans_make_attendance(self):
        client = "s360_att"
        api = harness.Api(self.port, client, self.keys[client])
        cid, streams = self.create(client=client, attendance=True)
        self.assertEqual(sorted(streams), ["access", "contacts", "orders"])
        with Simulator(seed=37, clock_speed=0) as sim:
            season = sim.season
            perf = season.performances[1]
            people = [season.contact(kind="person", email="a%d@example.ch" % i) for i in range(3)]
            for c in people:
                for a in c["authorizations"]:
                    a["value"] = a["authorizationType"] == "NEWSLETTER"
            sales = [season.order(c, "SALE", performance=perf, quantity=2) for c in people]
            sim.add_contacts(people)
            sim.add_orders(sales)
            for s in ("contacts", "orders", "access"):
                sim.set_webhook(s, "http://127.0.0.1:%d%s" % (self.port, streams[s]))
            sim.advance(minutes=15)
            pid = str(perf["performanceId"])
            came_not = {"bought": {"event_id": pid, "attended": 0}}
            self.assertEqual(members(api, came_not), sorted(c["contactNumber"] for c in people))
            # person 0 comes with one of two tickets, person 1 with both
            scans = season.scans(sales[:2], share=1.0)
            first_ticket = [x for x in scans if x["orderId"] == sales[0]["orderId"]][:1]
            both = [x for x in scans if x["orderId"] == sales[1]["orderId"]]
            self.assertEqual(len(both), 2)
            sim.add_scans(first_ticket + both)
            sim.advance(minutes=15)
            self.assertEqual(sim.drops(), 0)
            self.assertEqual(members(api, came_not), [people[2]["contactNumber"]])
            one = {"bought": {"event_id": pid, "attended": 1}}
            self.assertEqual(members(api, one), [people[0]["contactNumber"]])
            # the same scan again (another payload) and the order again: nothing changes
            r = harness.http(self.port, "POST", streams["access"], body=first_ticket + both[:1])
            self.assertEqual((r.status, r.json["applied"]), (200, 2), r)
            r = harness.http(self.port, "POST", streams["orders"],
                             body=[{"orderDetailsData": sales[0]}, {"orderDetailsData": sales[1]}])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(members(api, one), [people[0]["contactNumber"]])
            self.assertEqual(members(api, {"bought": {"event_id": pid, "attended": 2}}),
                             [people[1]["contactNumber"]])
            # a scan of a sale not stored yet waits in quarantine, with the reason
            late = season.order(people[2], "SALE", performance=perf, quantity=1)
            early_scan = season.scans([late], share=1.0)
            r = harness.http(self.port, "POST", streams["access"], body=early_scan)
            self.assertEqual((r.status, r.json["quarantined"]), (200, 1), r)
            q = self.quarantine(cid, client=client)
            inv = "%d-%d" % (late["orderId"], late["operationDatas"][0]["operationId"])
            self.assertIn("sale '%s' does not exist" % inv, q[0]["reason"])
            sim.add_orders([late])
            sim.advance(minutes=15)
            self.assertEqual(self.admin("POST", "/connectors/%s/run" % cid,
                                        client=client).status, 202)
            harness.wait_until(lambda: self.quarantine(cid, client=client) == [],
                               10 * harness.TIME_SCALE, what="the early scan replayed")
            harness.wait_until(lambda: self.admin("GET", "/connectors/" + cid, client=client)
                               .json["status"]["state"] != "running",
                               10 * harness.TIME_SCALE, what="the run finished")
            # a scan whose id field has another name waits in quarantine until the mapping of
            # the scan's fields (the setting access_fields) is fixed
            renamed = dict(season.scans([sales[2]], share=1.0)[0])
            renamed["checkId"] = renamed.pop("controlId")
            r = harness.http(self.port, "POST", streams["access"], body=[renamed])
            self.assertEqual((r.status, r.json["quarantined"]), (200, 1), r)
            self.assertIn("/controlId: missing", self.quarantine(cid, client=client)[-1]["reason"])
            r = self.admin("PATCH", "/connectors/" + cid,
                           {"settings": {"access_fields": "scan_id=checkId"}}, client=client)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(self.admin("POST", "/connectors/%s/run" % cid,
                                        client=client).status, 202)
            harness.wait_until(lambda: self.quarantine(cid, client=client) == [],
                               10 * harness.TIME_SCALE, what="the renamed scan replayed")
            # people[2]'s first sale has one ticket scanned now
            self.assertEqual(members(api, one),
                             sorted([people[0]["contactNumber"], people[2]["contactNumber"]]))
            self.assertEqual(members(api, came_not), [])
        self.assertGreater(self.metric("stagedoor_inbound_applied_total", cid, "access"), 0)


class HistoryTest(Base):
    def test_history_from_and_a_backfill_burst(self):
        client = "s360_hist"
        api = harness.Api(self.port, client, self.keys[client])
        cid, streams = self.create(client=client, history_from="2025-12-01")
        start = dt.datetime(2025, 9, 1, tzinfo=dt.timezone.utc).timestamp()
        end = dt.datetime(2026, 2, 27, tzinfo=dt.timezone.utc).timestamp()
        cut = dt.datetime(2025, 11, 30, 23, 0, tzinfo=dt.timezone.utc)  # Zürich midnight
        other = harness.Api(self.port, "s360_seg", self.keys["s360_seg"])
        answers, done = [], threading.Event()

        def other_tenant():   # another tenant's webhook during the burst
            k = 0
            while not done.is_set() and k < 2000:
                cid = "burst-%d" % k
                r = other.ingest({"customers": [{"customer_id": cid,
                                                 "email": "%s@example.ch" % cid}]})
                answers.append(r.status)
                k += 1
        with Simulator(seed=41, clock_speed=0) as sim:
            contacts, orders, _ = sim.make_season(1200, 800, start, end)
            self.hook(sim, streams)   # the token in the URL alone
            t = threading.Thread(target=other_tenant)
            t.start()
            try:
                for _ in range(8):
                    sim.advance(minutes=15)
                    if all(sim.stats(s)["queued"] == 0 for s in ("contacts", "orders")):
                        break
            finally:
                done.set()
                t.join()
            self.assertTrue(answers)
            self.assertEqual(set(answers), {202})
            self.assertEqual(sim.drops(), 0)
            for s in ("contacts", "orders"):
                st = sim.stats(s)
                self.assertEqual((st["queued"], st["waiting"]), (0, 0), st)
                self.assertEqual(st["attempts"], st["delivered_payloads"], st)
            self.assertGreater(sim.stats("contacts")["delivered_payloads"], 20)

            def when(s):
                return dt.datetime.fromisoformat(s)
            newer = [c for c in contacts if when(c["lastUpdateDate"]) >= cut]
            older = [c for c in contacts if when(c["lastUpdateDate"]) < cut]
            self.assertTrue(newer and older)
            stored = sorted(c["customer_id"] for c in api.list_all("customers")[0])
            self.assertEqual(stored, sorted(c["contactNumber"] for c in newer))
            old_orders = [d for d in orders if when(d["creationDateTime"]) < cut]
            sales = api.list_all("sales")[0]
            self.assertTrue(sales)
            self.assertTrue(all(s["purchase_datetime"] >= "2025-11-30T23:00:00" for s in sales))
            skipped = self.metric("stagedoor_inbound_skipped_total", cid, "contacts")
            self.assertEqual(skipped, len(older))
            goods_only_new = [d for d in orders if when(d["creationDateTime"]) >= cut and
                              not any("performanceId" in op for op in d["operationDatas"])]
            self.assertEqual(self.metric("stagedoor_inbound_skipped_total", cid, "orders"),
                             len(old_orders) + len(goods_only_new))
        # a refused payload is counted by connector and stream
        r = self.admin("PATCH", "/connectors/" + cid, {"settings": {"max_objects": 2}},
                       client=client)
        self.assertEqual(r.status, 200, r)
        r = harness.http(self.port, "POST", streams["orders"], body=[{}, {}, {}])
        self.assertEqual(r.status, 413, r)
        self.assertEqual(self.metric("stagedoor_inbound_non200_total", cid, "orders"), 1)


if __name__ == "__main__":
    harness.main()
