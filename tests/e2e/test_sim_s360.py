"""Self-check of the S-360 simulator (tests/sim/s360), without stagedoor: a small correct client
gets what S-360 gives, and each wrong client fails the way S-360 fails it (bad credentials, a
form body, no or an expired token, the 181st call in a minute, in-band errors, in_progress,
retries that open a second order); the webhook pusher keeps the schedule, the per-run and
per-payload limits, resends a payload not answered 200 twelve more times and then drops it.
Accepts and ignores `--bin X` like the other e2e tests."""

import base64
import calendar
import collections
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness

sys.path.insert(0, os.path.join(harness.REPO, "tests"))
from sim.s360 import Season, Simulator   # noqa: E402

TIME_SCALE = harness.TIME_SCALE
TIMEOUT = 10 * TIME_SCALE
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


class Client:
    """A correct S-360 client: JSON POSTs, a token from /auth, Authorization: Bearer."""

    def __init__(self, sim, timeout=None):
        self.sim = sim
        self.timeout = timeout or TIMEOUT
        self.token = None

    def post(self, path, body, headers=None, raw=None, method="POST", base=None):
        """(status, headers, decoded JSON or text)."""
        data = raw if raw is not None else json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=self.timeout)
        try:
            c.request(method, (base if base is not None else self.sim.base_prefix) + path,
                      body=data, headers=h)
            r = c.getresponse()
            payload = r.read()
            if (r.getheader("Content-Type") or "").startswith("application/json"):
                return r.status, r.msg, json.loads(payload)
            return r.status, r.msg, payload.decode()
        finally:
            c.close()

    def login(self, **override):
        cred = dict(self.sim.credentials, **override)
        st, _, doc = self.post(self.sim.paths()["auth"], cred)
        if st == 200:
            self.token = doc["token"]
        return st, doc

    def rpc(self, name, body, token=None, headers=None):
        h = {"Authorization": "Bearer %s" % (token or self.token)}
        h.update(headers or {})
        return self.post(self.sim.paths()[name], body, headers=h)

    def offer(self, ext, contact, perf, quantity=2, order_type="SALE", **over):
        body = {"requestId": "req-" + ext, "pointOfSalesId": self.sim.point_of_sales_id,
                "orderType": order_type, "purchasersInfo": {"contactReference": contact},
                "externalReference": ext,
                "singleEntryAttributionOperations": {"operationAttributions": [{
                    "performanceId": perf["performanceId"],
                    "seatCategoryId": perf["seatCategories"][0]["seatCategoryId"],
                    "audienceSubCategoryId": perf["audienceSubCategories"][0][
                        "audienceSubCategoryId"],
                    "quantity": quantity}]}}
        body.update(over)
        return body

    def create_offer_once(self, body, polls=5):
        """The careful way: look the external reference up first, create, and on in_progress
        poll the lookup instead of creating again."""
        for _ in range(polls):
            st, _, doc = self.rpc("findOrdersByExternalReference",
                                  {"externalReference": body["externalReference"]})
            assert st == 200 and doc["statusCode"] == "success", doc
            if doc["orders"]:
                return doc["orders"][0]["orderId"]
            st, _, doc = self.rpc("createOrUpdateOrder", body)
            assert st == 200, (st, doc)
            if doc["statusCode"] == "success":
                return doc["orderUpdateData"]["orderId"]
            if doc["statusCode"] != "in_progress":
                raise AssertionError(doc["statusDetail"])
        raise AssertionError("still in progress")


class Sink:
    """The CRM side of the webhooks: records every POST, answers from answer(path, n, body) (n:
    the number of earlier requests to that path)."""

    def __init__(self, answer=lambda path, n, body: 200):
        self.answer = answer
        self.got = []
        self.lock = threading.Lock()
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw)
                with owner.lock:
                    n = len([g for g in owner.got if g["path"] == self.path])
                    owner.got.append({"path": self.path, "raw": raw, "body": body,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                st = owner.answer(self.path, n, body)
                self.send_response(st)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.srv.server_address[1], path)

    def bodies(self, path):
        with self.lock:
            return [g["body"] for g in self.got if g["path"] == path]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def harness_ts(day):
    """Epoch seconds of a UTC day 'YYYY-MM-DD'."""
    return float(calendar.timegm(time.strptime(day, "%Y-%m-%d")))


def make_sim(test, **kw):
    kw.setdefault("clock_speed", 0.0)
    sim = Simulator(**kw).start()
    test.addCleanup(sim.stop)
    return sim


def make_sink(test, answer=lambda path, n, body: 200):
    s = Sink(answer)
    test.addCleanup(s.stop)
    return s


# ---------------------------------------------------------------------------------------------
# the APIs


class ApiTests(unittest.TestCase):
    def setUp(self):
        self.sim = make_sim(self, seed=11)
        self.contacts, _, _ = self.sim.make_season(20, 0, push=False)
        self.cl = Client(self.sim)

    def test_auth_right_and_wrong_clients(self):
        st, doc = self.cl.login()
        self.assertEqual(st, 200)
        self.assertEqual(set(doc), {"token"})
        self.assertEqual(self.cl.login(secret="wrong")[0], 401)
        self.assertEqual(self.cl.login(partner="")[0], 400)
        # a form body where JSON is required
        st, _, _ = self.cl.post(self.sim.paths()["auth"], None,
                                raw=b"operator=extcrm&partner=extcrm-myvenue&secret=x",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 415)
        st, _, _ = self.cl.post(self.sim.paths()["auth"], None, raw=b"{not json")
        self.assertEqual(st, 400)
        st, h, _ = self.cl.post(self.sim.paths()["auth"], self.sim.credentials, method="PUT")
        self.assertEqual((st, h["Allow"]), (405, "POST"))
        # another institution's base, and an unknown service version
        self.assertEqual(self.cl.post(self.sim.paths()["auth"], self.sim.credentials,
                                      base="/othervenue")[0], 404)
        st, _, _ = self.cl.post(self.sim.paths()["getContactData"].replace("v2_21", "v2_14"),
                                {"contactNumber": "1"},
                                headers={"Authorization": "Bearer " + self.cl.token})
        self.assertEqual(st, 404)

    def test_keep_alive_and_chunked_bodies(self):
        c = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        body = json.dumps(self.sim.credentials).encode()
        path = self.sim.base_prefix + self.sim.paths()["auth"]
        c.request("POST", path, body=iter([body[:9], body[9:]]), encode_chunked=True,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual((r.status, set(json.loads(r.read()))), (200, {"token"}))
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()                              # the same connection, kept alive
        self.assertEqual(r.status, 200)
        r.read()
        self.assertEqual([x.json for x in self.sim.calls(rpc="auth")], [self.sim.credentials] * 2)

    def test_token_is_checked_and_expires(self):
        num = self.contacts[0]["contactNumber"]
        self.cl.login()
        self.assertEqual(self.cl.rpc("getContactData", {"contactNumber": num})[0], 200)
        for h in ({"Authorization": ""}, {"Authorization": "Bearer forged"},
                  {"Authorization": "Basic " + base64.b64encode(b"extcrm:s").decode()}):
            st, _, _ = self.cl.post(self.sim.paths()["getContactData"], {"contactNumber": num},
                                    headers=h)
            self.assertEqual(st, 401, h)
        self.sim.advance(self.sim.token_ttl - 1)
        self.assertEqual(self.cl.rpc("getContactData", {"contactNumber": num})[0], 200)
        self.sim.advance(1)
        st, _, doc = self.cl.rpc("getContactData", {"contactNumber": num})
        self.assertEqual((st, doc["message"]), (401, "token expired"))
        self.cl.login()
        self.assertEqual(self.cl.rpc("getContactData", {"contactNumber": num})[0], 200)

    def test_181st_call_in_a_minute_is_509_without_retry_after(self):
        num = self.contacts[0]["contactNumber"]
        self.cl.login()                                   # call 1: the limit spans endpoints
        for i in range(179):
            st, _, _ = self.cl.rpc("getContactData", {"contactNumber": num})
            self.assertEqual(st, 200, "call %d" % (i + 2))
        st, h, _ = self.cl.rpc("getContactData", {"contactNumber": num})
        self.assertEqual(st, 509)
        self.assertIsNone(h.get("Retry-After"))
        self.assertEqual(self.cl.login()[0], 509)          # auth is limited too
        self.sim.advance(59.5)
        self.assertEqual(self.cl.rpc("getContactData", {"contactNumber": num})[0], 509)
        self.sim.advance(0.5)
        self.assertEqual(self.cl.rpc("getContactData", {"contactNumber": num})[0], 200)
        refused = [c for c in self.sim.calls(direction="api") if c.status == 509]
        self.assertEqual(len(refused), 3)
        # the other answer S-360 may give
        other = make_sim(self, rate_limit=2, rate_status=429)
        oc = Client(other)
        self.assertEqual([oc.login()[0] for _ in range(3)], [200, 200, 429])

    def test_contact_get_and_in_band_errors(self):
        c = self.contacts[3]
        self.cl.login()
        st, _, doc = self.cl.rpc("getContactData", {"contactNumber": c["contactNumber"]})
        self.assertEqual((st, doc["statusCode"]), (200, "success"))
        self.assertEqual(doc["contactId"], c["contactId"])
        self.assertEqual(doc["addresses"], c["addresses"])
        # errors are in-band: HTTP 200, statusCode other than success
        st, _, doc = self.cl.rpc("getContactData", {"contactNumber": "9999999999"})
        self.assertEqual((st, doc["statusCode"]), (200, "failed"))
        self.assertIn("CONTACT_NOT_FOUND", doc["statusDetail"])
        st, _, doc = self.cl.rpc("getContactData", {"contactNumber": int(c["contactNumber"])})
        self.assertEqual((st, doc["statusCode"]), (200, "failed"))   # a number is not a string

    def test_save_contact_creates_updates_and_echoes(self):
        sim = self.sim
        sink = make_sink(self)
        sim.set_webhook("contacts", sink.url("/in/myvenue/contacts"))
        self.cl.login()
        st, _, doc = self.cl.rpc("saveIndividualContactData", {
            "individualContact": {"firstName": "Zoë", "lastName": "Ærni"},
            "communicationMeans": [{"type": "EMAIL", "value": "zoe@example.ch"}],
            "authorizations": [{"authorizationType": "NEWSLETTER", "value": True}]})
        self.assertEqual((st, doc["statusCode"]), (200, "success"), doc)
        new = doc["contactNumber"]
        self.assertIsInstance(new, str)
        self.assertEqual(sim.contacts[new]["individualContact"]["lastName"], "Ærni")
        person = next(c for c in self.contacts if "individualContact" in c)
        st, _, doc = self.cl.rpc("saveIndividualContactData", {
            "contactNumber": person["contactNumber"], "individualContact": {"lastName": "Neu"}})
        self.assertEqual(doc["statusCode"], "success")
        self.assertEqual(sim.contacts[person["contactNumber"]]["individualContact"]["lastName"],
                         "Neu")
        # wrong clients: nothing changes
        before = json.dumps(sim.contacts, sort_keys=True)
        for body, why in (
                ({"individualContact": {"firstName": "No"}}, "lastName"),
                ({"individualContact": {"lastName": "X"},
                  "communicationMeans": [{"type": "EMAIL", "value": "not-an-address"}]},
                 "INVALID_EMAIL"),
                ({"individualContact": {"lastName": "X"},
                  "authorizations": [{"authorizationType": "NEWSLETTER", "value": "yes"}]},
                 "boolean"),
                ({"contactNumber": "0000000001", "individualContact": {"lastName": "X"}},
                 "CONTACT_NOT_FOUND")):
            st, _, doc = self.cl.rpc("saveIndividualContactData", body)
            self.assertEqual((st, doc["statusCode"]), (200, "failed"), body)
            self.assertIn(why, doc["statusDetail"])
        company = next((c for c in self.contacts if "structureContact" in c), None)
        if company is not None:
            st, _, doc = self.cl.rpc("saveIndividualContactData", {
                "contactNumber": company["contactNumber"], "individualContact": {"lastName": "X"}})
            self.assertIn("INVALID_CONTACT_TYPE", doc["statusDetail"])
        self.assertEqual(json.dumps(sim.contacts, sort_keys=True), before)
        # S-360 pushes the contacts changed through the API back on its contact webhook: the
        # echo a CRM must recognise as its own change
        sim.run_now()
        pushed = [c["contactNumber"] for b in sink.bodies("/in/myvenue/contacts") for c in b]
        self.assertEqual(pushed, [new, person["contactNumber"]])
        # an operator's edit in S-360 is pushed too, with a newer lastUpdateDate
        sim.advance(3600)
        sim.change_contact(person["contactNumber"], firstName="Op")
        sim.run_now()
        last = sink.bodies("/in/myvenue/contacts")[-1][0]
        self.assertEqual(last["individualContact"]["firstName"], "Op")
        hist = sim.contact_history[person["contactNumber"]]
        self.assertEqual([h[1] for h in hist], ["season", "api", "operator"])
        self.assertLess(hist[1][2]["lastUpdateDate"][:13], last["lastUpdateDate"][:13])

    def test_offer_created_once_by_a_careful_client_twice_by_a_naive_one(self):
        sim, cl = self.sim, self.cl
        cl.login()
        perf = sim.season.performances[2]
        key = (perf["performanceId"], perf["seatCategories"][0]["seatCategoryId"])
        stock = sim.stock[key]
        buyer = self.contacts[0]["contactNumber"]
        body = cl.offer("offer-1", buyer, perf, quantity=2)
        st, _, doc = cl.rpc("createOrUpdateOrder", body)
        self.assertEqual((st, doc["statusCode"], doc["requestId"]), (200, "success", "req-offer-1"))
        oid = doc["orderUpdateData"]["orderId"]
        self.assertIsInstance(oid, int)
        self.assertGreaterEqual(oid, 10 ** 13)
        self.assertEqual(sim.stock[key], stock - 2)
        # S-360 does not deduplicate: a blind retry opens a second order
        st, _, doc = cl.rpc("createOrUpdateOrder", body)
        self.assertNotEqual(doc["orderUpdateData"]["orderId"], oid)
        self.assertEqual(len(sim.orders_by_reference("offer-1")), 2)
        # looking the reference up first never does
        b2 = cl.offer("offer-2", buyer, perf, quantity=1, order_type="RESERVATION")
        first = cl.create_offer_once(b2)
        self.assertEqual(cl.create_offer_once(b2), first)
        self.assertEqual(len(sim.orders_by_reference("offer-2")), 1)
        self.assertEqual(sim.orders[first]["orderType"], "RESERVATION")

    def test_failed_offers_leave_nothing_and_say_why(self):
        sim, cl = self.sim, self.cl
        cl.login()
        perf = sim.season.performances[0]
        buyer = self.contacts[1]["contactNumber"]
        stock = dict(sim.stock)
        n_orders = len(sim.orders)
        good = cl.offer("bad-x", buyer, perf)
        att = good["singleEntryAttributionOperations"]["operationAttributions"][0]
        cases = [
            (dict(good, pointOfSalesId=9), "INVALID_POINT_OF_SALES"),
            (dict(good, orderType="REFUND_CLIENT"), "INVALID_ORDER_TYPE"),
            (dict(good, requestId=None), "requestId"),
            (dict(good, purchasersInfo={"contactReference": "0000000002"}), "CONTACT_NOT_FOUND"),
            (dict(good, singleEntryAttributionOperations={"operationAttributions": [
                dict(att, performanceId=1)]}), "PERFORMANCE_NOT_FOUND"),
            (dict(good, singleEntryAttributionOperations={"operationAttributions": [
                dict(att, seatCategoryId=1)]}), "SEAT_CATEGORY_NOT_FOUND"),
            (dict(good, singleEntryAttributionOperations={"operationAttributions": [
                dict(att, quantity="2")]}), "must be an integer"),
            (dict(good, singleEntryAttributionOperations={"operationAttributions": [
                dict(att, performanceId=str(att["performanceId"]))]}), "must be an integer"),
            (dict(good, singleEntryAttributionOperations={"operationAttributions": []}),
             "operationAttributions"),
        ]
        sim.stock[(att["performanceId"], att["seatCategoryId"])] = 1
        stock[(att["performanceId"], att["seatCategoryId"])] = 1
        cases.append((good, "NOT_ENOUGH_SEATS"))
        for body, why in cases:
            st, _, doc = cl.rpc("createOrUpdateOrder", body)
            self.assertEqual((st, doc["statusCode"]), (200, "failed"), body)
            self.assertIn(why, doc["statusDetail"])
        self.assertEqual(sim.stock, stock)
        self.assertEqual(len(sim.orders), n_orders)

    def test_in_progress_cycles(self):
        sim, cl = self.sim, self.cl
        cl.login()
        perf = sim.season.performances[1]
        buyer = self.contacts[2]["contactNumber"]
        # in_progress, nothing done yet: the retry creates the order once
        sim.inject("createOrUpdateOrder", [("in_progress",), ("in_progress",)])
        oid = cl.create_offer_once(cl.offer("ip-1", buyer, perf))
        self.assertEqual([o["orderId"] for o in sim.orders_by_reference("ip-1")], [oid])
        # in_progress although the order was made: a naive retry makes a second one, the
        # careful client finds the first
        sim.inject("createOrUpdateOrder", [("in_progress_done",)])
        oid2 = cl.create_offer_once(cl.offer("ip-2", buyer, perf))
        self.assertEqual([o["orderId"] for o in sim.orders_by_reference("ip-2")], [oid2])
        sim.inject("createOrUpdateOrder", [("in_progress_done",)])
        body = cl.offer("ip-3", buyer, perf)
        self.assertEqual(cl.rpc("createOrUpdateOrder", body)[2]["statusCode"], "in_progress")
        self.assertEqual(cl.rpc("createOrUpdateOrder", body)[2]["statusCode"], "success")
        self.assertEqual(len(sim.orders_by_reference("ip-3")), 2)

    def test_fault_switches(self):
        sim, cl = self.sim, self.cl
        num = self.contacts[0]["contactNumber"]
        cl.login()
        sim.inject("getContactData", [("status", 503), ("status", 429, {"Retry-After": "7"}),
                                      ("status", 509), ("inband", "failed", "MAINTENANCE"),
                                      ("close",), ("sleep", 1.0 * TIME_SCALE)])
        st, _, _ = cl.rpc("getContactData", {"contactNumber": num})
        self.assertEqual(st, 503)
        st, h, _ = cl.rpc("getContactData", {"contactNumber": num})
        self.assertEqual((st, h["Retry-After"]), (429, "7"))
        self.assertEqual(cl.rpc("getContactData", {"contactNumber": num})[0], 509)
        st, _, doc = cl.rpc("getContactData", {"contactNumber": num})
        self.assertEqual((st, doc["statusCode"], doc["statusDetail"]), (200, "failed",
                                                                        "MAINTENANCE"))
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            cl.rpc("getContactData", {"contactNumber": num})
        slow = Client(sim, timeout=0.3 * TIME_SCALE)
        slow.token = cl.token
        with self.assertRaises(socket.timeout):
            slow.rpc("getContactData", {"contactNumber": num})
        self.assertEqual(cl.rpc("getContactData", {"contactNumber": num})[2]["statusCode"],
                         "success")
        with self.assertRaises(ValueError):
            sim.inject("*", [("explode",)])

    def test_every_call_is_recorded(self):
        sim, cl = self.sim, self.cl
        cl.login()
        cl.login(secret="nope")
        cl.rpc("getContactData", {"contactNumber": self.contacts[0]["contactNumber"]})
        calls = sim.calls(direction="api")
        self.assertEqual([(c.rpc, c.status) for c in calls],
                         [("auth", 200), ("auth", 401), ("getContactData", 200)])
        self.assertEqual(calls[1].json["secret"], "nope")
        self.assertEqual(calls[2].header("authorization"), "Bearer " + cl.token)
        self.assertEqual(calls[2].answer["statusCode"], "success")
        self.assertEqual(calls[0].answer, {"token": cl.token})
        self.assertEqual({c.sim_time for c in calls}, {sim.clock.now()})   # the clock is stopped
        self.assertEqual(calls[2].path, sim.base_prefix + sim.paths()["getContactData"])


# ---------------------------------------------------------------------------------------------
# the webhooks


class WebhookTests(unittest.TestCase):
    def test_schedule_per_run_and_per_payload(self):
        sim = make_sim(self, seed=5)
        sink = make_sink(self)
        sim.set_webhook("contacts", sink.url("/in/myvenue/contacts?token=t0k"))
        contacts, _, _ = sim.make_season(1200, 0)
        self.assertEqual(sim.advance(minutes=14), 0)
        self.assertEqual(sink.bodies("/in/myvenue/contacts?token=t0k"), [])
        self.assertEqual(sim.advance(minutes=1), 1)
        sizes = [len(b) for b in sink.bodies("/in/myvenue/contacts?token=t0k")]
        self.assertEqual(sizes, [50] * 10)
        self.assertEqual(sim.advance(minutes=30), 2)     # two runs fell due
        sizes = [len(b) for b in sink.bodies("/in/myvenue/contacts?token=t0k")]
        self.assertEqual(sizes, [50] * 24)
        self.assertEqual(sim.stats("contacts")["queued"], 0)
        self.assertEqual(sim.delivered_items("contacts"), contacts)
        self.assertEqual([c for b in sink.bodies("/in/myvenue/contacts?token=t0k") for c in b],
                         contacts)
        self.assertEqual(sim.drops(), 0)
        got = sink.got[0]
        self.assertTrue(got["headers"]["content-type"].startswith("application/json"))
        self.assertIsInstance(got["body"], list)

    def test_not_200_is_sent_again_twelve_times_then_dropped(self):
        sim = make_sim(self, seed=6)
        # only 200 counts: a 201 or a 204 is a failure too
        sink = make_sink(self, lambda path, n, body: {"/bad": 500, "/created": 201}.get(path, 200))
        sim.set_webhook("orders", sink.url("/bad"))
        sim.set_webhook("contacts", sink.url("/created"))
        _, orders, _ = sim.make_season(3, 4)
        for run in range(13):
            sim.run_now()
            self.assertEqual(len(sink.bodies("/bad")), run + 1)
            self.assertEqual(sim.drops(), 0 if run < 12 else 4 + 3)
        self.assertEqual(sink.bodies("/bad"), [[{"orderDetailsData": d} for d in orders]] * 13)
        sim.run_now()                                     # dropped: never sent again
        self.assertEqual(len(sink.bodies("/bad")), 13)
        st = sim.stats("orders")
        self.assertEqual((st["dropped_payloads"], st["dropped_items"], st["attempts"]), (1, 4, 13))
        self.assertEqual(sim.payloads("orders")[0].answers, [500] * 13)

    def test_resend_then_accepted_and_resends_count_in_the_run(self):
        sim = make_sim(self, seed=7, per_run=100, per_payload=50)
        contacts, _, _ = sim.make_season(250, 0)
        seen = []

        def answer(path, n, body):   # the first payload fails twice, every other one passes
            if body[0] != contacts[0]:
                return 200
            seen.append(n)
            return 500 if len(seen) <= 2 else 200
        sink = make_sink(self, answer)
        sim.set_webhook("contacts", sink.url("/c"))
        sim.run_now()     # p1 fails, p2 ok
        sim.run_now()     # p1 (resend) fails, p3 ok
        sim.run_now()     # p1 ok, p4 ok
        sim.run_now()     # p5 ok
        ids = [(c.payload_id, c.attempt, c.status) for c in sim.calls(direction="push")]
        self.assertEqual(ids, [(1, 1, 500), (2, 1, 200), (1, 2, 500), (3, 1, 200), (1, 3, 200),
                               (4, 1, 200), (5, 1, 200)])
        self.assertEqual(sorted(sim.delivered_items("contacts"), key=lambda c: c["contactNumber"]),
                         sorted(contacts, key=lambda c: c["contactNumber"]))
        self.assertEqual(sim.drops(), 0)

    def test_a_payload_cut_in_flight_is_sent_again(self):
        sim = make_sim(self, seed=15, push_timeout=5 * TIME_SCALE)
        gate = threading.Event()

        def answer(path, n, body):        # the CRM dies while the first attempt is in flight
            if n == 0:
                gate.wait(TIMEOUT)
                return 599
            return 200
        sink = make_sink(self, answer)
        sim.set_webhook("orders", sink.url("/o"))
        _, orders, _ = sim.make_season(5, 7)
        t = sim.run_async()
        harness.wait_until(lambda: sink.bodies("/o"), TIMEOUT, what="a payload in flight")
        self.assertEqual(sim.stats("orders")["delivered_payloads"], 0)
        gate.set()
        t.join(TIMEOUT)
        sim.run_now()
        self.assertEqual([p.answers for p in sim.payloads("orders")], [[599, 200]])
        self.assertEqual(sink.bodies("/o")[0], sink.bodies("/o")[1])
        self.assertEqual(sim.delivered_items("orders"), [{"orderDetailsData": d} for d in orders])

    def test_unreachable_crm_is_a_failure_too(self):
        sim = make_sim(self, seed=8, resends=1, push_timeout=0.5 * TIME_SCALE)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()                                        # nobody listens there
        sim.set_webhook("orders", "http://127.0.0.1:%d/o" % port)
        sim.make_season(2, 3)
        sim.run_now()
        sim.run_now()
        self.assertEqual(sim.drops("orders"), 3)
        self.assertTrue(all(str(c.status).startswith("error")
                            for c in sim.calls(direction="push")))

    def test_push_authentication_modes(self):
        sim = make_sim(self, seed=9)
        sink = make_sink(self)
        sim.set_webhook("contacts", sink.url("/c"), auth=("basic", "s360", "pw"))
        sim.set_webhook("orders", sink.url("/o"), auth=("bearer", "tok-1"))
        sim.set_webhook("access", sink.url("/a"), auth=("header", "X-Api-Key", "k-1"))
        sim.make_season(5, 20, scans=True)
        sim.run_now()
        h = {g["path"]: g["headers"] for g in sink.got}
        self.assertEqual(h["/c"]["authorization"], "Basic " + base64.b64encode(b"s360:pw").decode())
        self.assertEqual(h["/o"]["authorization"], "Bearer tok-1")
        self.assertEqual(h["/a"]["x-api-key"], "k-1")
        scan = sink.bodies("/a")[0][0]
        self.assertEqual(set(scan), {"controlId", "ticketBarcode", "orderId", "operationId",
                                     "performanceId", "controlDateTime", "accessPoint", "result"})

    def test_clock_speed_compresses_the_schedule(self):
        sim = make_sim(self, seed=10, clock_speed=1200.0)   # 15 simulated minutes in 0.75 s
        sink = make_sink(self)
        sim.set_webhook("contacts", sink.url("/c"))
        sim.make_season(10, 0)
        harness.wait_until(lambda: sim.runs >= 1, 10 * TIME_SCALE, what="a scheduled run")
        self.assertEqual(sum(len(b) for b in sink.bodies("/c")), 10)

    def test_backfill_keeps_its_dates_and_bad_options_are_refused(self):
        sim = make_sim(self, seed=14)
        sink = make_sink(self)
        sim.set_webhook("orders", sink.url("/o"))
        old = harness_ts("2018-06-01")
        _, orders, _ = sim.make_season(40, 120, t0=old, t1=harness_ts("2019-06-01"))
        sim.run_now()
        got = [x["orderDetailsData"] for b in sink.bodies("/o") for x in b]
        self.assertEqual(got, orders)
        self.assertTrue(any(d["creationDateTime"] < "2019-01-01" for d in got))
        self.assertTrue(any(d["creationDateTime"] > "2019-01-02" for d in got))
        for kw in ({"interval_minutes": 0}, {"interval_minutes": 1441},
                   {"per_payload": 60, "per_run": 50}, {"rate_status": 503}):
            with self.assertRaises(ValueError, msg=kw):
                Simulator(**kw)

    def test_bare_single_object_payload(self):
        sim = make_sim(self, seed=12, bare_single=True)
        sink = make_sink(self)
        sim.set_webhook("orders", sink.url("/o"))
        _, orders, _ = sim.make_season(2, 1)
        sim.run_now()
        self.assertEqual(sink.bodies("/o"), [{"orderDetailsData": orders[0]}])

    def test_offers_come_back_on_the_order_webhook(self):
        sim = make_sim(self, seed=13)
        sink = make_sink(self)
        sim.set_webhook("orders", sink.url("/o"))
        contacts, _, _ = sim.make_season(3, 0, push=False)
        cl = Client(sim)
        cl.login()
        oid = cl.create_offer_once(cl.offer("back-1", contacts[0]["contactNumber"],
                                            sim.season.performances[0]))
        sim.run_now()
        (d,) = [x["orderDetailsData"] for b in sink.bodies("/o") for x in b]
        self.assertEqual((d["orderId"], d["externalReference"], d["orderType"]),
                         (oid, "back-1", "SALE"))


# ---------------------------------------------------------------------------------------------
# the data


class DataTests(unittest.TestCase):
    def test_realistic_season(self):
        sim = make_sim(self, seed=21)
        sink = make_sink(self)
        sim.set_webhook("contacts", sink.url("/c"))
        sim.set_webhook("orders", sink.url("/o"))
        sim.make_season(300, 450)
        sim.run_now()
        raw_orders = b"".join(g["raw"] for g in sink.got if g["path"] == "/o")
        contacts = [c for b in sink.bodies("/c") for c in b]
        orders = [x["orderDetailsData"] for b in sink.bodies("/o") for x in b]
        self.assertEqual((len(contacts), len(orders)), (300, 450))
        # ids: 14-digit integers written as JSON integers; contact numbers strings
        for d in orders:
            self.assertIsInstance(d["orderId"], int)
            self.assertEqual(len(str(d["orderId"])), 14)
            self.assertIn(b'"orderId": %d,' % d["orderId"], raw_orders)
            self.assertIsInstance(d["contactReference"], str)
            for k in ("saleAmount", "reservationAmount", "optionAmount"):
                self.assertIsInstance(d[k], int)
            self.assertEqual(d["catalogCurrency"], {"currencyCode": "CHF", "fractionDigit": 2})
            self.assertRegex(d["creationDateTime"], ISO_MS)
            self.assertRegex(d["referenceDate"], r"T2[23]:00:00\.000\+00:00$")
            for op in d["operationDatas"]:
                self.assertIsInstance(op["unitPrice"], int)
                self.assertEqual(op["unitPrice"] % 10, 0)   # thousandths of CHF (2 digits)
        self.assertEqual(len({d["orderId"] for d in orders}), 450)
        self.assertTrue(all(isinstance(c["contactNumber"], str) and c["contactNumber"][0] == "0"
                            for c in contacts))
        # both offsets of Zürich across the season
        self.assertEqual({d["creationDateTime"][-6:] for d in orders}, {"+01:00", "+02:00"})
        # people, companies, shared e-mail addresses
        self.assertTrue(any("structureContact" in c for c in contacts))
        self.assertTrue(any("individualContact" in c for c in contacts))
        mails = collections.Counter(m["value"] for c in contacts for m in c["communicationMeans"]
                                    if m["type"] == "EMAIL")
        self.assertGreater(sum(1 for n in mails.values() if n > 1), 3)
        self.assertTrue(any(not any(m["type"] == "EMAIL" for m in c["communicationMeans"])
                            for c in contacts))
        # refunds and freeings are separate orders undoing an earlier one
        types = collections.Counter(d["orderType"] for d in orders)
        for t in ("SALE", "RESERVATION", "OPTION", "REFUND_CLIENT"):
            self.assertGreater(types[t], 0, t)
        by_id = {d["orderId"]: d for d in orders}
        undo = [d for d in orders if "originalOrderId" in d]
        self.assertTrue(undo)
        for d in undo:
            orig = by_id[d["originalOrderId"]]
            self.assertLess(orig["orderId"], d["orderId"])
            self.assertEqual(orig["contactReference"], d["contactReference"])
            self.assertLess(d["operationDatas"][0]["quantity"], 0)
        self.assertTrue(any(d["orderState"] == "ABANDONED" for d in orders))
        self.assertTrue(any(op["kind"] != "SINGLE_ENTRY" for d in orders
                            for op in d["operationDatas"]))
        # fields a client does not know
        self.assertTrue(any("loyaltyProgramme" in c for c in contacts))
        self.assertTrue(all("salesChannel" in d for d in orders))

    def test_big_ids_and_abandoned_literal_are_options(self):
        s = Season(seed=3, big_ids=True, abandoned_state="CANCELLED_BASKET")
        orders = s.orders_batch(60, s.contacts_batch(10))
        self.assertTrue(all(d["orderId"] > 2 ** 53 for d in orders))
        raw = json.dumps(orders[0])
        self.assertIn('"orderId": %d' % orders[0]["orderId"], raw)
        self.assertTrue(any(int(float(d["orderId"])) != d["orderId"] for d in orders))
        self.assertIn("CANCELLED_BASKET", {d["orderState"] for d in orders})

    def test_same_seed_same_season(self):
        def season(seed):
            s = Season(seed=seed)
            cs = s.contacts_batch(50)
            return cs, s.orders_batch(80, cs)
        self.assertEqual(season(4), season(4))
        self.assertNotEqual(season(4), season(5))


class StandaloneTests(unittest.TestCase):
    def test_main_prints_its_url_and_serves(self):
        p = subprocess.Popen([sys.executable, os.path.join(harness.REPO, "tests", "sim", "s360",
                                                           "__main__.py"), "--port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            m = re.match(r"s360 simulator listening on http://127\.0\.0\.1:(\d+)$", line.strip())
            self.assertIsNotNone(m, line)
            c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=TIMEOUT)
            c.request("POST", "/myvenue/tnai/backend-apis/v1/auth", body=json.dumps(
                {"operator": "extcrm", "partner": "extcrm-myvenue",
                 "secret": "s360-test-secret"}), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertIn("token", json.loads(r.read()))
            c.close()
        finally:
            p.terminate()
            rc = p.wait(timeout=TIMEOUT)
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    _, argv = harness._strip_bin(sys.argv)   # --bin is accepted and ignored: no stagedoor here
    unittest.main(argv=argv, verbosity=2)
