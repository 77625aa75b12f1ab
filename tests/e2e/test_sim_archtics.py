"""Self-check of the Ticketmaster Archtics (ATS) simulator in tests/sim/archtics, without
stagedoor: a small correct ATS client gets every answer within the rate limits, and wrong clients
fail the way the vendor fails them (bad key, DSN mismatch, a form body, a poll without the
cookies, a poll after the token expired, the 81st call in a minute and the 5,001st in a day, an
event_details page over 250,000 bytes, a customer_update that does not send every field).
Accepts and ignores `--bin X` like the other e2e tests."""

import decimal
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import unittest
import urllib.parse

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from sim.archtics import INCREMENTAL, Simulator  # noqa: E402

TIME_SCALE = harness.TIME_SCALE
KEY = "k-good-1"
DSN = "venue_a"


def envelope(cmd, dsn=DSN, **fields):
    c1 = {"cmd": cmd, "uid": "stagedoor", "dsn": dsn}
    c1.update(fields)
    return {"header": {"ver": 1, "src_sys_type": 2, "src_sys_name": "stagedoor",
                       "archtics_version": "V999"}, "command1": c1}


def ci(d, name, default=None):
    """A key of an answer, whatever its case (`Count` vs `count`)."""
    for k, v in d.items():
        if k.lower() == name.lower():
            return v
    return default


def as_int(v):
    return int(str(v).strip())


def cents(v):
    """A major-unit JSON float as integer cents, exactly, via its decimal text."""
    return int(decimal.Decimal(repr(v)) * 100)


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.doc = json.loads(body) if body else None
        except ValueError:
            self.doc = None

    def cookies(self):
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    def c1(self):
        return self.doc["command1"]


class Client:
    """A correct ATS client: JSON envelope, key in the header, a generic cookie jar replayed on
    every poll of the identical command, and a pace that keeps within 80 calls a minute (it
    moves the simulator's clock instead of sleeping)."""

    def __init__(self, sim, key=KEY, dsn=DSN, pace=60.0 / 80, send_cookies=True):
        self.sim = sim
        self.key = key
        self.dsn = dsn
        self.pace = pace
        self.send_cookies = send_cookies
        self.conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=30 * TIME_SCALE)
        self.jar = {}
        self.polls = 0

    def close(self):
        self.conn.close()

    def post(self, body, headers=None, path=None, method="POST"):
        h = {"Content-Type": "application/json", "apikey": self.key}
        if self.jar and self.send_cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.jar.items())
        h.update(headers or {})
        if path is None:
            path = "/sth-customer/ticketing_services.aspx?dsn=%s" % urllib.parse.quote(self.dsn)
        if self.pace:
            self.sim.clock.advance(self.pace)
        self.conn.request(method, path, body=body, headers={k: v for k, v in h.items()
                                                             if v is not None})
        r = self.conn.getresponse()
        a = Answer(r.status, r.getheaders(), r.read())
        for c in a.cookies():
            name, _, rest = c.partition("=")
            value = rest.split(";")[0]
            if "max-age=0" in c.lower().replace(" ", "") or value == "":
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return a

    def call(self, cmd, max_polls=50, **fields):
        body = json.dumps(envelope(cmd, self.dsn, **fields)).encode()
        self.jar = {}
        a = self.post(body)
        n = 0
        while a.status == 202:
            n += 1
            if n > max_polls:
                raise AssertionError("%s still 202 after %d polls" % (cmd, max_polls))
            self.sim.clock.advance(0.5)      # "repeat about every 500 ms"
            self.polls += 1
            a = self.post(body)
        return a

    def ok(self, cmd, **fields):
        a = self.call(cmd, **fields)
        if a.status != 200 or as_int(a.c1()["result"]) != 0:
            raise AssertionError("%s: %s %r" % (cmd, a.status, a.body[:300]))
        return a.c1()


class SimCase(unittest.TestCase):
    opts = {}

    def setUp(self):
        kw = dict(api_keys={KEY: {DSN}, "k-other": {"venue_b"}}, dsn=DSN, real_time=False)
        kw.update(self.opts)
        self.sim = Simulator(**kw).start()
        self.addCleanup(self.sim.stop)
        self.cl = Client(self.sim)
        self.addCleanup(self.cl.close)

    def fresh(self, **kw):
        c = Client(self.sim, **kw)
        self.addCleanup(c.close)
        return c


class CorrectClient(SimCase):
    opts = {"queue_probability": 0.5}

    def test_reads_everything_within_the_limits(self):
        sim, cl = self.sim, self.cl
        self.assertEqual(cl.ok("ping")["db_status"], "OK")
        # events: alphabetical keyset pages of 7
        names, prev = [], ""
        while True:
            a = cl.call("event_details", prev_event_name=prev, count=7)
            c1 = a.c1()
            if as_int(c1["result"]) == 5231:
                break
            self.assertEqual(as_int(c1["result"]), 0, c1)
            page = [e["event_name"] for e in c1["events"]]
            names += page
            prev = page[-1]
            if as_int(ci(c1, "count")) < 7:
                break
        self.assertEqual(names, sorted(e["event_name"] for e in sim.world.events))
        # accounts changed since a minute, paged by (update_date_time, acct_id)
        since = min(sim.clock.local(a["at"]) for a in sim.world.accounts.values())
        seen, prev = [], {}
        while True:
            c1 = cl.ok("get_accounts_with_updates", since_date_time=since, count=50, **prev)
            rows = c1["accounts"]
            seen += [as_int(r["acct_id"]) for r in rows]
            if as_int(ci(c1, "count")) < 50:
                break
            prev = {"prev_update_date_time": rows[-1]["update_date_time"],
                    "prev_acct_id": rows[-1]["acct_id"]}
        self.assertEqual(sorted(seen), sorted(sim.world.accounts))
        self.assertEqual(len(seen), len(set(seen)))
        # one account in full
        acct = seen[0]
        cust = cl.ok("customer_query", acct_id=acct, call_reason="S")["customer"]
        self.assertEqual(as_int(cust["acct_id"]), acct)
        self.assertEqual(cust["email"], sim.world.accounts[acct]["email"])
        self.assertGreater(cl.polls, 0, "no 202 cycle was exercised")
        polls = sim.record(kind="poll")
        self.assertTrue(polls and all(p.status in (200, 202) for p in polls))
        self.assertTrue(all("QTKN" in p.cookies and "SID" in p.cookies for p in polls))
        sim.assert_within_quota()
        self.assertEqual(sim.usage(KEY)["day"], len(sim.record()))

    def test_text_json_and_string_header_numbers_are_accepted(self):
        doc = envelope("ping")
        doc["header"].update({"ver": "0.9", "src_sys_type": "2"})
        self.sim.queue_mode = "never"
        a = self.cl.post(json.dumps(doc).encode(),
                         headers={"Content-Type": "text/json; charset=utf-8"})
        self.assertEqual((a.status, as_int(a.c1()["result"])), (200, 0))
        self.assertEqual(a.doc["header"]["ats_version"], "4.23.3")

    def test_key_in_query_string_is_accepted(self):
        self.sim.queue_mode = "never"
        a = self.cl.post(json.dumps(envelope("ping")).encode(), headers={"apikey": None},
                         path="/sth-buy/ticketing_services.aspx?dsn=%s&apikey=%s" % (DSN, KEY))
        self.assertEqual(a.status, 200)


class Polling(SimCase):
    opts = {"queue_mode": "always", "queue_polls": (3, 3)}

    def test_cookies_rotate_and_the_poll_completes(self):
        a = self.cl.call("customer_query", acct_id=100001, call_reason="S")
        self.assertEqual(a.status, 200)
        self.assertEqual(as_int(a.c1()["customer"]["acct_id"]), 100001)
        calls = self.sim.record()
        self.assertEqual([c.status for c in calls], [202, 202, 202, 200])
        self.assertEqual([c.kind for c in calls], ["command", "poll", "poll", "poll"])
        tokens = [c.cookies.get("QTKN") for c in calls[1:]]
        self.assertEqual(len(set(tokens)), 3, "QTKN must change on every 202")
        self.assertEqual(len({c.cookies["SID"] for c in calls[1:]}), 1)
        self.assertEqual(self.sim.usage(KEY)["day"], 4, "every poll is a call")

    def test_generic_cookie_names(self):
        self.sim.cookie_names = ("CID", "BID", "CTKN")
        self.assertEqual(self.cl.ok("ping")["db_status"], "OK")
        self.assertIn("CTKN", self.sim.record(kind="poll")[0].cookies)

    def test_poll_without_cookies_is_202_forever(self):
        bad = self.fresh(send_cookies=False)
        with self.assertRaises(AssertionError):
            bad.call("ping", max_polls=20)
        calls = self.sim.record()
        self.assertEqual({c.status for c in calls}, {202})
        self.assertEqual(len({c.sid for c in calls}), len(calls), "each try is a new cycle")
        # the correct client still gets its answer
        self.assertEqual(self.cl.ok("ping")["db_status"], "OK")

    def test_a_dropped_cookie_keeps_the_command_queued(self):
        self.sim.queue_mode = "never"               # only the command in flight is queued
        self.sim.inject(("queue", 2), cmd="ping")
        bad = self.fresh(send_cookies=False)
        self.assertEqual([bad.post(json.dumps(envelope("ping")).encode()).status
                          for _ in range(10)], [202] * 10)
        self.assertEqual(self.cl.ok("event_search", start_date="2000-01-01")["hold_classes"], [])

    def test_poll_with_a_stale_token_or_another_body_does_not_complete(self):
        body = json.dumps(envelope("ping")).encode()
        first = self.cl.post(body)
        old = dict(self.cl.jar)
        self.cl.post(body)                     # a correct poll: QTKN rotates
        self.cl.jar = old                      # a client that kept the first token
        for _ in range(5):
            self.assertEqual(self.cl.post(body).status, 202)
            self.cl.jar = dict(old)
        self.assertIn("current", self.sim.record()[2].note)
        other = json.dumps(envelope("ping", ref="changed")).encode()
        self.cl.jar = {}
        self.cl.post(body)
        mine = dict(self.cl.jar)
        for _ in range(5):                     # the cookies of `body` with another command
            self.cl.jar = dict(mine)
            self.assertEqual(self.cl.post(other).status, 202)
        self.assertIn("different command", self.sim.record()[-1].note)
        self.assertEqual(len(first.cookies()), 3)

    def test_expired_token_answers_no_data_and_a_resubmission_works(self):
        body = json.dumps(envelope("ping")).encode()
        a = self.cl.post(body)
        self.assertEqual(a.status, 202)
        sid = self.cl.jar["SID"]
        self.sim.clock.advance(181)
        a = self.cl.post(body)
        self.assertEqual(a.status, 200)
        self.assertNotEqual(as_int(a.c1()["result"]), 0)
        self.assertIn("No data for token '%s'" % sid, a.c1()["error_detail"])
        self.assertEqual(self.cl.ok("ping")["db_status"], "OK")

    def test_a_client_restart_or_a_server_restart_mid_cycle_resumes(self):
        body = json.dumps(envelope("seats_sold", acct_id=self.some_holder())).encode()
        self.assertEqual(self.cl.post(body).status, 202)
        saved = dict(self.cl.jar)               # the connector persists jar + command
        self.cl.close()
        self.sim.stop()
        self.sim.start()
        again = self.fresh()
        again.jar = saved
        statuses = [again.post(body).status for _ in range(3)]
        self.assertEqual(statuses, [202, 202, 200])
        self.assertEqual(len(self.sim.record(kind="command")), 1, "no second submission")

    def test_a_job_that_needs_time_punishes_a_fast_poller(self):
        self.sim.queue_seconds = (5.0, 5.0)
        fast = self.fresh(pace=0)
        body = json.dumps(envelope("ping")).encode()
        statuses = [fast.post(body).status for _ in range(81)]
        self.assertEqual(statuses[:80], [202] * 80)
        self.assertEqual(statuses[80], 429)
        self.assertEqual(len(self.sim.jobs_in_flight()), 1)
        self.sim.clock.advance(60)
        self.assertEqual(self.cl.ok("ping")["db_status"], "OK")   # 500 ms apart: 10 polls
        self.assertLessEqual(len(self.sim.record(kind="poll")), 79 + 10)

    def test_ats_ext_test_polling_needs_ten_seconds(self):
        a = self.cl.call("ats_ext_test_polling", max_polls=40)
        self.assertEqual(a.status, 200)
        polls = self.sim.record(kind="poll")
        self.assertGreaterEqual(polls[-1].sim_time - self.sim.record()[0].sim_time, 10.0)

    def some_holder(self):
        return next(s["acct_id"] for s in self.sim.world.sales
                    if s["trans_type"] == "S" and not s["returned"])


class Gateway(SimCase):
    def check_fault(self, a, status, word):
        self.assertEqual(a.status, status, a.body)
        self.assertIn(word, a.doc["fault"]["faultstring"])

    def test_keys_and_dsns(self):
        body = json.dumps(envelope("ping")).encode()
        self.check_fault(self.fresh(key="k-wrong").post(body), 401, "ApiKey")
        self.check_fault(self.fresh(key=None).post(body), 401, "ApiKey")
        self.check_fault(self.fresh(key="k-other").post(body), 401, "Not authorized")
        other = json.dumps(envelope("ping", dsn="venue_b")).encode()
        self.check_fault(self.cl.post(other), 401, "DSN")
        self.assertEqual(self.sim.usage(KEY), {"minute": 0, "day": 0}, "refusals are free")

    def test_transport_errors(self):
        body = json.dumps(envelope("ping")).encode()
        self.assertEqual(self.cl.post(body, method="GET").status, 405)
        form = urllib.parse.urlencode({"cmd": "ping", "dsn": DSN}).encode()
        a = self.cl.post(form, headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.check_fault(a, 415, "application/json")
        self.check_fault(self.cl.post(b"{not json"), 400, "Malformed")
        self.assertEqual(self.cl.post(body, path="/sth-customer/x.aspx?dsn=" + DSN).status, 404)
        self.assertEqual(self.cl.post(body, path="/nope/ticketing_services.aspx?dsn=" + DSN)
                         .status, 404)

    def test_malformed_envelope_is_in_band(self):
        self.sim.queue_mode = "never"
        doc = envelope("ping")
        del doc["header"]["src_sys_name"]
        a = self.cl.post(json.dumps(doc).encode())
        self.assertEqual(a.status, 200)
        self.assertEqual(as_int(a.c1()["result"]), 9999)
        doc = envelope("ping", uid="x" * 13)
        self.assertIn("uid", self.cl.post(json.dumps(doc).encode()).c1()["error_detail"])
        a = self.cl.post(json.dumps(envelope("no_such_cmd")).encode())
        self.assertEqual(as_int(a.c1()["result"]), 9999)


    def test_hostile_bodies_get_precise_answers(self):
        self.sim.queue_mode = "never"
        bodies = [b"", b"[]", b"null", b"\xff\xfe", b"[" * 100000, b'{"header": 1}',
                  json.dumps({"header": {}, "command1": []}).encode()]
        for cmd in ("customer_query", "customer_add", "customer_update", "event_details",
                    "seats_sold", "get_ticket_sales", "get_accounts_with_updates"):
            for junk in (None, True, [], {}, "x" * 300, -1, 1e300, {"a": [1]}):
                fields = {k: junk for k in ("acct_id", "customer", "count", "prev_event_name",
                                            "since_date_time", "event_name", "prev_acct_id",
                                            "prev_update_date_time", "prev_seatnum",
                                            "event_filter", "alt_id_array", "email")}
                bodies.append(json.dumps(envelope(cmd, **fields)).encode())
        for b in bodies:
            a = self.cl.post(b)
            self.assertIn(a.status, (200, 400, 401), b[:80])
        self.assertEqual(self.sim.errors(), [])


class RateLimits(SimCase):
    opts = {"queue_mode": "never"}

    def test_the_81st_call_in_a_minute(self):
        burst = self.fresh(pace=0)
        body = json.dumps(envelope("ping")).encode()
        for i in range(80):
            self.assertEqual(burst.post(body).status, 200, "call %d" % (i + 1))
        a = burst.post(body)
        self.assertEqual(a.status, 429)
        self.assertEqual(a.doc["fault"]["detail"]["errorcode"],
                         "policies.ratelimit.SpikeArrestViolation")
        self.assertEqual(int(dict((k.lower(), v) for k, v in a.headers)["retry-after"]), 60)
        self.assertRaises(AssertionError, self.sim.assert_within_quota)
        self.assertEqual(self.sim.usage(KEY)["day"], 80, "a refused call is not counted")
        other = self.fresh(key="k-other", dsn="venue_b", pace=0)
        self.assertEqual(other.post(json.dumps(envelope("ping", dsn="venue_b")).encode())
                         .status, 200, "the limits are per key")
        self.sim.clock.advance(30)
        self.assertEqual(burst.post(body).status, 429, "the window is rolling")
        self.sim.clock.advance(31)
        self.assertEqual(burst.post(body).status, 200)

    def test_the_5001st_call_in_a_day_and_the_next_day(self):
        self.sim.clock.set("2026-03-02 00:30")          # early in the UTC day (19:30 local)
        self.sim.clock.next_day()
        body = json.dumps(envelope("ping")).encode()
        cl = self.fresh(pace=0.76)
        for i in range(5000):
            a = cl.post(body)
            if a.status != 200:
                self.fail("call %d: %s %r" % (i + 1, a.status, a.body))
        self.sim.assert_within_quota()
        a = cl.post(body)
        self.assertEqual(a.status, 429)
        self.assertEqual(a.doc["fault"]["detail"]["errorcode"],
                         "policies.ratelimit.QuotaViolation")
        wait = int(dict((k.lower(), v) for k, v in a.headers)["retry-after"])
        self.assertAlmostEqual(wait, self.sim.clock.seconds_to_utc_midnight(), delta=2)
        self.sim.stop()                                # a restart does not reset the day
        self.sim.start()
        cl2 = self.fresh()
        self.assertEqual(cl2.post(body).status, 429)
        self.sim.clock.next_day()
        self.assertEqual(cl2.post(body).status, 200)
        self.assertEqual(len(self.sim.quota_violations()), 2)


class Customers(SimCase):
    opts = {"queue_mode": "never"}

    def test_add_dedupes_by_email_with_11408(self):
        c1 = self.cl.ok("customer_add", customer={"name_first": "Ada", "name_last": "Lovel",
                                                  "email": "ada@example.org", "city": "Seattle"})
        acct = as_int(c1["acct_id"])
        a = self.cl.call("customer_add", customer={"name_last": "Other",
                                                   "email": "ADA@example.org"})
        self.assertEqual(as_int(a.c1()["result"]), 11408)
        self.assertEqual(as_int(a.c1()["acct_id"]), acct)
        n = len(self.sim.world.accounts)
        for cust, code in (({"name_last": "X", "email": "x@example.org",
                             "city": "Llanfairpwllgwyngylll"}, 5014),
                           ({"name_last": "X", "state": "WAS"}, 5014),
                           ({"name_first": "NoLast", "email": "n@example.org"}, 5011),
                           ({"name_last": "X", "email": "not-an-email"}, 5019)):
            a = self.cl.call("customer_add", customer=cust)
            self.assertEqual((a.status, as_int(a.c1()["result"])), (200, code), cust)
        self.assertEqual(len(self.sim.world.accounts), n, "a refused add creates nothing")

    def test_update_overwrites_every_field(self):
        acct = 100003
        before = dict(self.sim.world.accounts[acct])
        self.assertTrue(before["name_first"] and before["city"])
        # wrong: only the changed field, and other_info inside customer
        self.cl.ok("customer_update", customer={"acct_id": acct, "email": "new@example.org",
                                                "other_info_1": "VIP"})
        after = self.sim.world.accounts[acct]
        self.assertEqual((after["name_first"], after["city"], after["other_info_1"]),
                         ("", "", ""))
        # right: query, merge, send everything, other_info_* at command1 level
        self.sim.world.touch_account(acct, {k: before[k] for k in ("name_first", "city")})
        q = self.cl.ok("customer_query", acct_id=acct, call_reason="S")
        cust = {k: v for k, v in q["customer"].items()
                if k not in ("cust_name_id", "add_date", "name_type", "alt_id_array")}
        cust["email"] = "merged@example.org"
        extra = {k: v for k, v in q.items() if k.startswith("other_info_")}
        extra["other_info_1"] = "VIP"
        self.cl.ok("customer_update", customer=cust, **extra)
        after = self.sim.world.accounts[acct]
        self.assertEqual((after["name_first"], after["city"], after["email"],
                          after["other_info_1"]),
                         (before["name_first"], before["city"], "merged@example.org", "VIP"))
        for bad, code in (({"acct_id": acct, "name_type": "C"}, 5014),
                          ({"email": "x@example.org"}, 5031), ({"acct_id": 1}, 5034),
                          ({"acct_id": acct, "email": self.sim.world.accounts[100004]["email"]},
                           5037)):
            self.assertEqual(as_int(self.cl.call("customer_update", customer=bad)
                                    .c1()["result"]), code, bad)

    def test_alt_id_round_trip_and_unknown_type(self):
        acct = 100005
        q = self.cl.ok("customer_query", acct_id=acct, call_reason="S")
        cust = {k: v for k, v in q["customer"].items()
                if k not in ("cust_name_id", "add_date", "name_type", "alt_id_array")}
        a = self.cl.call("customer_update", customer=dict(
            cust, alt_id_array=[{"alt_id_type": "NOPE", "alt_id": "g1"}]))
        self.assertEqual(as_int(a.c1()["result"]), 10729)
        self.cl.ok("customer_update", customer=dict(
            cust, alt_id_array=[{"alt_id_type": "SDHUB", "alt_id": "golden-7"}]))
        q = self.cl.ok("customer_query", alt_id="golden-7", alt_id_type="SDHUB", call_reason="S")
        self.assertEqual(as_int(q["customer"]["acct_id"]), acct)
        a = self.cl.call("customer_query", acct_id=999)
        self.assertEqual(as_int(a.c1()["result"]), 5024)


class Discovery(SimCase):
    opts = {"queue_mode": "never", "event_details_max_bytes": 12000}

    def test_event_details_over_the_byte_limit_is_11075(self):
        a = self.cl.call("event_details", prev_event_name="")
        self.assertEqual(as_int(a.c1()["result"]), 11075)
        self.assertIn("12000 byte limit", a.c1()["error_detail"])
        self.assertNotIn("events", a.c1())
        names, prev, count = [], " ", 500
        while True:
            c1 = self.cl.call("event_details", prev_event_name=prev, count=count).c1()
            if as_int(c1["result"]) == 11075:
                count //= 2
                continue
            if as_int(c1["result"]) == 5231:
                break
            names += [e["event_name"] for e in c1["events"]]
            prev = names[-1]
        self.assertEqual(names, sorted(e["event_name"] for e in self.sim.world.events))

    def test_event_search_window(self):
        c1 = self.cl.ok("event_search", start_date="2000-01-01", end_date="2100-01-01")
        self.assertEqual(len(c1["events"]),
                         len([e for e in self.sim.world.events if e["event_category"] == "E"]))
        a = self.cl.call("event_search", start_date="1990-01-01", end_date="1990-01-02")
        self.assertEqual(as_int(a.c1()["result"]), 5212)
        a = self.cl.call("event_search", start_date="01/02/2026")
        self.assertEqual(as_int(a.c1()["result"]), 5211)

    def test_seats_sold_keyset_money_and_count(self):
        w = self.sim.world
        acct = max(w.accounts, key=lambda x: len(w.seats_of(x)))
        blocks = w.seats_of(acct)
        self.assertGreater(len(blocks), 1)
        got, prev = [], {}
        while True:
            a = self.cl.call("seats_sold", acct_id=acct, count=1, **prev)
            c1 = a.c1()
            if as_int(c1["result"]) == 5069:
                self.assertEqual(c1["error_desc"], "No blocks found")
                self.assertEqual(c1["sql_code"], 100)
                break
            self.assertIn("Count", c1)
            row = c1["seats_array"][0]
            self.assertIsInstance(row["purchase_price"], float)
            self.assertEqual(cents(row["block_purchase_price"]),
                             cents(row["purchase_price"]) * as_int(row["num_seat"]))
            got.append(row)
            prev = {"prev_event_name": row["event_name"], "prev_section_name":
                    row["section_name"], "prev_row_name": row["row_name"],
                    "prev_seatnum": row["seat_num"]}
        self.assertEqual([(r["event_name"], as_int(r["seat_num"])) for r in got],
                         [(b["event_name"], b["seat_num"]) for b in blocks])
        self.assertTrue(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", got[0]["add_date_time"]))
        a = self.cl.call("seats_sold")
        self.assertEqual(as_int(a.c1()["result"]), 5061)


class Incremental(SimCase):
    opts = {"queue_mode": "never"}

    def read_all(self, cmd, since, **fixed):
        _, array, ts, key, _ = INCREMENTAL[cmd]
        rows, prev = [], {}
        while True:
            c1 = self.cl.ok(cmd, since_date_time=since, count=25, **fixed, **prev)
            rows += c1[array]
            if as_int(ci(c1, "count")) < 25:
                return rows
            prev = {"prev_" + ts: rows[-1][ts], "prev_" + key: rows[-1][key]}

    def test_every_stream_pages_without_loss_or_duplicates(self):
        w = self.sim.world
        scans = self.read_all("get_attendance_incremental", "2000-01-01 00:00")
        self.assertEqual(sorted(as_int(s["scan_id"]) for s in scans),
                         sorted(s["scan_id"] for s in w.scans))
        evs = self.read_all("get_events_with_sales", "2000-01-01")
        sales = []
        for e in evs:
            sales += self.read_all("get_ticket_sales", "2000-01-01", event_name=e["event_name"])
        self.assertEqual(sorted(as_int(s["trans_id"]) for s in sales),
                         sorted(s["trans_id"] for s in w.sales))
        returns = [s for s in sales if s["trans_type"] == "R"]
        self.assertTrue(returns and all(s["orig_trans_id"] for s in returns))
        a = self.cl.call("get_ticket_sales", since_date_time="2000-01-01 00:00")
        self.assertEqual(as_int(a.c1()["result"]), 5211)
        a = self.cl.call("get_attendance_incremental", since_date_time="2026-03-02T09:00:00Z")
        self.assertEqual(as_int(a.c1()["result"]), 9999)

    def test_a_late_commit_at_the_boundary_needs_the_minute_of_overlap(self):
        w, clock = self.sim.world, self.sim.clock
        sale = next(s for s in w.sales if s["trans_type"] == "S")
        w.add_scan(sale, sale["seat_num"])
        rows = self.read_all("get_attendance_incremental", "2000-01-01")
        hwm = rows[-1]["scan_date_time"]
        stamped = clock.now()                       # same minute as the high-water mark
        clock.advance(20)
        late = w.add_scan(sale, sale["seat_num"], at=stamped, visible=clock.now())
        after = {"prev_scan_date_time": rows[-1]["scan_date_time"],
                 "prev_scan_id": rows[-1]["scan_id"]}
        strict = self.cl.ok("get_attendance_incremental", since_date_time=hwm, **after)
        self.assertEqual(as_int(strict["count"]), 1)
        back = clock.local(clock.epoch_of(hwm) - 60)
        overlap = self.read_all("get_attendance_incremental", back)
        self.assertIn(late["scan_id"], [as_int(s["scan_id"]) for s in overlap])
        self.assertIn(rows[-1]["scan_id"], [s["scan_id"] for s in overlap], "re-read inclusive")

    def test_fall_back_hour_is_venue_local_and_sorts_as_text(self):
        w, clock = self.sim.world, self.sim.clock
        clock.set("2026-11-01 04:00")
        sale = next(s for s in w.sales if s["trans_type"] == "S")
        first = w.add_scan(sale, 1, at=clock.epoch_of("2026-11-01 01:45", fold=0))  # EDT
        second = w.add_scan(sale, 2, at=clock.epoch_of("2026-11-01 01:30", fold=1))  # EST
        self.assertGreater(second["at"], first["at"])
        rows = self.read_all("get_attendance_incremental", "2026-11-01 00:00")
        self.assertEqual([(as_int(r["scan_id"]), r["scan_date_time"]) for r in rows],
                         [(second["scan_id"], "2026-11-01 01:30"),
                          (first["scan_id"], "2026-11-01 01:45")])

    def test_deletes_and_merges_do_not_propagate(self):
        w = self.sim.world
        holder = next(s["acct_id"] for s in w.sales if s["plan_name"])
        w.merge_accounts(holder, 100001)
        w.delete_account(100002)
        ids = [as_int(a["acct_id"]) for a in
               self.read_all("get_accounts_with_updates", self.sim.clock.local())]
        self.assertEqual(ids, [])
        for acct in (holder, 100002):
            a = self.cl.call("customer_query", acct_id=acct, call_reason="S")
            self.assertEqual(as_int(a.c1()["result"]), 5024)
        rows = self.cl.ok("seats_sold", acct_id=100001, count=1000)["seats_array"]
        plan = [r for r in rows if r["plan_name"]]
        self.assertEqual(len(plan), len(w.events[-2]["events_in_plan"]))

    def test_extract_then_incrementals_reproduce_every_sale(self):
        w, clock = self.sim.world, self.sim.clock
        cutoff = clock.local()
        clock.advance(3600)
        sale = next(s for s in w.sales if s["trans_type"] == "S" and not s["returned"])
        w.add_return(sale["trans_id"])
        w.add_sale(sale["acct_id"], sale["event_name"], "301", "1", 1, 2, "A")
        lines = self.sim.extract_csv("sales", cutoff).splitlines()[1:]
        ids = {int(line.split(",")[0]) for line in lines}
        since = clock.local(clock.epoch_of(cutoff) - 60)
        for e in self.read_all("get_events_with_sales", since):
            ids |= {as_int(s["trans_id"]) for s in
                    self.read_all("get_ticket_sales", since, event_name=e["event_name"])}
        self.assertEqual(ids, {s["trans_id"] for s in w.sales})
        self.assertEqual(self.sim.extract_csv("sales", cutoff),
                         Simulator(real_time=False).extract_csv("sales", cutoff),
                         "the data is deterministic from the seed")


class DriftAndFaults(SimCase):
    opts = {"queue_mode": "never"}

    def test_type_drift(self):
        c1 = self.cl.ok("get_attendance_incremental", since_date_time="2000-01-01 00:00",
                        count=4)
        ids = [r["scan_id"] for r in c1["scans"]]
        self.assertEqual({type(i) for i in ids}, {int, str})
        self.assertIsInstance(c1["count"], str)
        a = self.cl.call("Customer_Query", acct_id="100002", call_reason="S")
        self.assertEqual(a.c1()["cmd"], "Customer_Query")
        self.assertIsInstance(a.c1()["customer"]["cust_name_id"], str)
        self.sim.drift = False
        c1 = self.cl.ok("get_attendance_incremental", since_date_time="2000-01-01", count=4)
        self.assertEqual({type(r["scan_id"]) for r in c1["scans"]}, {int})

    def test_injected_faults(self):
        s = self.sim
        body = json.dumps(envelope("ping")).encode()
        s.inject(("status", 503), ("status", 429, {"Retry-After": "7"}),
                 ("inband", 5020, "Account locked"), cmd="ping")
        self.assertEqual(self.cl.post(body).status, 503)
        a = self.cl.post(body)
        self.assertEqual((a.status, dict(a.headers)["Retry-After"]), (429, "7"))
        self.assertEqual(as_int(self.cl.post(body).c1()["result"]), 5020)
        self.assertEqual(self.cl.post(body).status, 200)
        self.assertEqual(s.usage(KEY)["day"], 2, "injected refusals are not counted")
        s.inject(("queue", 4), cmd="ping")
        self.cl.ok("ping")
        self.assertEqual(len(s.record(kind="poll")), 4)
        s.inject(("close",))
        self.assertRaises((http.client.HTTPException, OSError), self.cl.post, body)
        s.latency = 0.0
        s.inject(("sleep", 0.2))
        self.assertEqual(self.fresh().post(body).status, 200)
        self.assertEqual(s.pending_faults(), [])


class Concurrency(SimCase):
    opts = {"queue_mode": "random"}

    def test_clients_and_a_changing_world_at_once(self):
        w, failures = self.sim.world, []
        sale = next(s for s in w.sales if s["trans_type"] == "S")

        def reader(n):
            c = Client(self.sim)
            try:
                for i in range(15):
                    c.ok("get_attendance_incremental", since_date_time="2000-01-01", count=50)
                    c.ok("get_accounts_with_updates", since_date_time="2000-01-01", count=1000)
                    c.ok("customer_query", acct_id=100001 + (n * 15 + i) % 100, call_reason="S")
            except AssertionError as e:
                failures.append(e)
            finally:
                c.close()

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for i in range(200):
            w.add_scan(sale, 1 + i % 4)
            w.touch_account(100001 + i % 50, {"city": "Tacoma"})
            w.add_account({"name_last": "New", "email": "new%d@example.org" % i})
        for t in threads:
            t.join(60 * TIME_SCALE)
        self.assertEqual(failures, [])
        self.assertEqual(self.sim.errors(), [])
        self.sim.assert_within_quota()


class Standalone(unittest.TestCase):
    def test_main_prints_its_url_and_serves(self):
        main = os.path.join(harness.REPO, "tests", "sim", "archtics", "__main__.py")
        p = subprocess.Popen([sys.executable, main, "--port", "0", "--seconds",
                              str(20 * TIME_SCALE), "--queue-mode", "never"],
                             stdout=subprocess.PIPE, text=True)
        try:
            url = p.stdout.readline().strip()
            u = urllib.parse.urlsplit(url)
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=10 * TIME_SCALE)
            c.request("POST", u.path + "?" + u.query,
                      body=json.dumps(envelope("ping", dsn="stagedoor_test")),
                      headers={"Content-Type": "application/json", "apikey": "test-key-1"})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read())["command1"]["result"], 0)
            c.close()
        finally:
            p.kill()
            p.wait(10)
            p.stdout.close()


if __name__ == "__main__":
    harness.main()
