"""Self-check of the Tradable Bits simulator (tests/sim/tradablebits), without stagedoor: a small
correct client gets every answer the vendor documents, and wrong clients are refused the way
the vendor would refuse them (bad keys, a JSON body where a form is required, 101 tickets in a
bulk call, a search_uid that is not ours, the 601st call in a minute, a time key cursor cut
short, ...). Accepts and ignores `--bin X` like the other e2e tests."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import unittest
import urllib.parse

import harness

sys.path.insert(0, os.path.dirname(harness.HERE))      # tests/, for the sim package
from sim.tradablebits import Simulator, gmt  # noqa: E402

TIME_SCALE = harness.TIME_SCALE
KEY, SECRET = "tb-test-key", "tb-test-secret"
DAY = 86400


class Client:
    """A client of the simulator speaking the vendor's dialect: keys in headers (or in the body
    or query when via says so), form-encoded POST bodies, JSON answers. One keep-alive
    connection."""

    def __init__(self, sim, key=KEY, secret=SECRET, via="header", timeout=None):
        self.sim, self.key, self.secret, self.via = sim, key, secret, via
        self.timeout = timeout or 20 * TIME_SCALE
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def raw(self, method, path, body=None, headers=None):
        """(status, headers, decoded JSON or None). path is the full path with query."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.sim.port,
                                                   timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            data = r.read()
        except Exception:
            self.close()
            raise
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        return r.status, r.msg, doc

    def call(self, op, params=None, form=None, **ids):
        """params: query parameters (GET); form: a dict or a list of pairs (POST)."""
        method, tmpl, _ = self.sim.paths[op]
        path = "/api/v1" + tmpl.format(**ids)
        headers = {}
        query = list((params or {}).items())
        pairs = list(form.items()) if isinstance(form, dict) else list(form or [])
        if self.key is not None:
            if self.via == "header":
                headers["Api-Key"] = self.key
                if self.secret is not None:
                    headers["Api-Secret"] = self.secret
            else:
                auth = [("api_key", self.key)]
                if self.secret is not None:
                    auth.append(("api_secret", self.secret))
                if self.via == "body" and method == "POST":
                    pairs = auth + pairs
                else:
                    query = auth + query
        if query:
            path += "?" + urllib.parse.urlencode(query)
        body = None
        if method == "POST":
            body = urllib.parse.urlencode(pairs).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.raw(method, path, body, headers)


def ticket_row(i, **over):
    row = {"first_name": "Ana", "last_name": "Lopez %d" % i,
           "email": "ana.lopez.%d@example.test" % i, "purchase_timestamp": "2026-02-10 18:30:00",
           "paid_amount": "%.2f" % (20 + i % 7), "num_seats": "2",
           "event_date": "2026-04-01T19:30:00Z", "event_name": "Tosca", "event_key": "EV-1001",
           "ticket_key": "sd-INV%05d-1" % i, "price_code": "A", "venue_name": "Orpheum Theatre",
           "network": "stagedoor", "fan_source": "stagedoor"}
    row.update(over)
    return row


class SimCase(unittest.TestCase):
    """A fresh simulator per test (generation is fast), frozen clock."""
    sim_kwargs = {}

    def setUp(self):
        kw = dict(fans=40, tickets=90, activities=50)
        kw.update(self.sim_kwargs)
        self.sim = Simulator(**kw).start()
        self.sim.clock.freeze()
        self.addCleanup(self.sim.stop)
        self.c = Client(self.sim)
        self.addCleanup(self.c.close)

    def ok(self, res):
        st, _, doc = res
        self.assertEqual(st, 200, doc)
        self.assertIn("meta", doc)
        self.assertIn("data", doc)
        return doc

    def refused(self, res, status, words=None):
        st, _, doc = res
        self.assertEqual(st, status, doc)
        self.assertEqual(doc["meta"]["status"], "error")
        self.assertEqual(doc["meta"]["code"], status)
        self.assertEqual(doc["data"], [])
        if words:
            self.assertIn(words, doc["meta"]["message"])
        return doc


# ---------------------------------------------------------------------------------------------


class AuthTests(SimCase):
    sim_kwargs = {"keys": {KEY: {"secret": SECRET, "scopes": {"crm", "segments"}},
                           "crm-only": {"secret": "s2", "scopes": {"crm"}}}}

    def test_keys_in_headers_body_or_query(self):
        self.ok(self.c.call("tickets_list", {"limit": 1}))
        b = Client(self.sim, via="body")
        self.addCleanup(b.close)
        self.ok(b.call("tag_create", form={"tag_name": "Body Auth"}))
        self.ok(b.call("fans_search", {"limit": 5}))        # a GET carries them in the query
        vias = [c.key_via for c in self.sim.calls()]
        self.assertEqual(vias, ["header", "body", "query"])
        for c in self.sim.calls():
            self.assertEqual(c.api_key, KEY)
            self.assertNotIn(SECRET, json.dumps([c.headers, c.form, c.query]))

    def test_wrong_keys(self):
        cases = [(Client(self.sim, key=None), 401, "required"),
                 (Client(self.sim, key="nope"), 401, "unknown"),
                 (Client(self.sim, secret=None), 403, "api_secret"),
                 (Client(self.sim, secret="wrong"), 403, "does not match"),
                 (Client(self.sim, via="body", secret="wrong"), 403, "does not match"),
                 (Client(self.sim, key="crm-only", secret="s2"), 403, "scope")]
        for cl, status, words in cases:
            self.addCleanup(cl.close)
            self.refused(cl.call("segments_list"), status, words)
        # a refused POST stores nothing
        n = len(self.sim.tickets())
        bad = Client(self.sim, secret="wrong")
        self.addCleanup(bad.close)
        self.refused(bad.call("tickets_create", form=ticket_row(1)), 403)
        self.assertEqual(len(self.sim.tickets()), n)
        # the crm-only key does reach crm calls
        good = Client(self.sim, key="crm-only", secret="s2")
        self.addCleanup(good.close)
        self.ok(good.call("tickets_list", {"limit": 1}))


class EncodingTests(SimCase):
    def post(self, op, body, ctype, **ids):
        path = "/api/v1" + self.sim.paths[op][1].format(**ids)
        h = {"Api-Key": KEY, "Api-Secret": SECRET}
        if ctype:
            h["Content-Type"] = ctype
        return self.c.raw("POST", path, body, h)

    def test_json_and_multipart_bodies_are_400(self):
        n = len(self.sim.tickets())
        js = json.dumps(ticket_row(1)).encode()
        self.refused(self.post("tickets_create", js, "application/json"), 400,
                     "x-www-form-urlencoded")
        self.refused(self.post("tickets_bulk", json.dumps({"tickets": [ticket_row(2)]}).encode(),
                               "application/json"), 400, "x-www-form-urlencoded")
        # a JSON document labelled as a form is still not a form
        self.refused(self.post("tickets_create", js, "application/x-www-form-urlencoded"), 400,
                     "JSON")
        mp = (b"--XX\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.c\r\n--XX--\r\n")
        self.refused(self.post("tickets_create", mp, "multipart/form-data; boundary=XX"), 400)
        self.refused(self.post("tickets_create", urllib.parse.urlencode(ticket_row(3)).encode(),
                               None), 400)
        self.assertEqual(len(self.sim.tickets()), n)
        # the same row as a form is accepted
        st, _, doc = self.post("tickets_create", urllib.parse.urlencode(ticket_row(1)).encode(),
                               "application/x-www-form-urlencoded; charset=utf-8")
        self.assertEqual((st, doc["data"]["status"]), (200, "success"))

    def test_parameters_travel_where_the_call_takes_them(self):
        h = {"Api-Key": KEY, "Api-Secret": SECRET}
        # paging with a parameter the call does not have would loop on page one: refused
        self.refused(self.c.call("tickets_list", {"offset": 100}), 400, "unknown parameter offset")
        self.refused(self.c.call("fans_updated", {"limit": 10}), 400, "unknown parameter limit")
        self.refused(self.c.call("tags_list", {"cursor": "x"}), 400, "unknown parameter cursor")
        # documented filters the simulator does not model are accepted
        self.ok(self.c.call("fans_search", {"fan_gender": "female", "limit": 5}))
        # a POST's fields go in the body, a GET's in the query string
        q = urllib.parse.urlencode(ticket_row(1))
        self.refused(self.c.raw("POST", "/api/v1/crm/tickets?" + q, b"", dict(
            h, **{"Content-Type": "application/x-www-form-urlencoded"})), 400, "form body")
        self.refused(self.c.raw("GET", "/api/v1/crm/tickets", b"limit=5", dict(
            h, **{"Content-Type": "application/x-www-form-urlencoded"})), 400, "query string")
        self.refused(self.c.call("tickets_bulk", form={"tickets": json.dumps([ticket_row(1)]),
                                                       "dry_run": "1"}), 400, "dry_run")
        self.assertEqual([c.status for c in self.sim.writes()], [400, 400])
        self.assertIsNone(self.sim.ticket_by_key(ticket_row(1)["ticket_key"]))

    def test_unknown_path_and_method(self):
        h = {"Api-Key": KEY, "Api-Secret": SECRET}
        self.refused(self.c.raw("GET", "/api/v1/crm/nothing", None, h), 404)
        st, hdrs, _ = self.c.raw("DELETE", "/api/v1/crm/tickets", None, h)
        self.assertEqual(st, 405)
        self.assertIn("GET", hdrs["Allow"])
        self.refused(self.c.raw("GET", "/api/v1/crm/tickets/bulk", None, h), 400)


class TicketCreateTests(SimCase):
    def test_create_then_duplicate_changes_nothing(self):
        row = ticket_row(7, email="new.fan.7@example.test")
        d = self.ok(self.c.call("tickets_create", form=row))["data"]
        self.assertEqual(d["status"], "success")
        self.assertEqual(d["ticket_key"], row["ticket_key"])
        t = self.sim.ticket_by_key(row["ticket_key"])
        self.assertEqual((t["ticket_id"], t["paid_amount"], t["num_seats"], t["email"]),
                         (d["ticket_id"], 20.0, 2, row["email"]))
        self.assertEqual(t["purchase_timestamp"], "2026-02-10T18:30:00+00:00")
        fan = self.sim.fan(email=row["email"])
        self.assertEqual((fan["fan_id"], fan["first_name"], fan["fan_source"]),
                         (d["fan_id"], "Ana", "stagedoor"))
        before = self.sim.tickets()
        again = dict(row, paid_amount="99.00")
        d2 = self.ok(self.c.call("tickets_create", form=again))["data"]
        self.assertEqual((d2["status"], d2["ticket_id"], d2["fan_id"]),
                         ("duplicate", d["ticket_id"], d["fan_id"]))
        self.assertEqual(self.sim.tickets(), before)

    def test_existing_fan_is_reused(self):
        fan = self.sim.fans()[3]
        d = self.ok(self.c.call("tickets_create",
                                form=ticket_row(8, email=fan["email"].upper())))["data"]
        self.assertEqual(d["fan_id"], fan["fan_id"])
        self.assertEqual(len(self.sim.fans()), 40)

    def test_bad_rows_are_400(self):
        n = len(self.sim.tickets())
        for over, words in [({"email": ""}, "email is required"),
                            ({"email": "not-an-email"}, "email is not valid"),
                            ({"purchase_timestamp": "2026-02-10T18:30:00Z"}, "YYYY-MM-DD HH:MI:SS"),
                            ({"event_date": "April 1st"}, "ISO 8601"),
                            ({"paid_amount": "12,50"}, "paid_amount"),
                            ({"num_seats": "two"}, "num_seats"),
                            ({"is_subscribed": "maybe"}, "boolean"),
                            ({"colour": "red"}, "unknown field colour")]:
            self.refused(self.c.call("tickets_create", form=ticket_row(9, **over)), 400, words)
        pairs = list(ticket_row(9).items()) + [("email", "b@example.test")]
        self.refused(self.c.call("tickets_create", form=pairs), 400, "email given 2 times")
        self.assertEqual(len(self.sim.tickets()), n)


class BulkTests(SimCase):
    def push(self, rows, repeated=True, client=None):
        f = "tickets"
        form = [(f, json.dumps(r)) for r in rows] if repeated else [(f, json.dumps(rows))]
        return (client or self.c).call("tickets_bulk", form=form)

    def test_250_in_three_calls_then_250_duplicates(self):
        rows = [ticket_row(i) for i in range(250)]
        n0 = len(self.sim.tickets())
        ids = []
        for k, chunk in enumerate((rows[:100], rows[100:200], rows[200:])):
            doc = self.ok(self.push(chunk, repeated=bool(k % 2)))
            self.assertEqual(doc["meta"]["success_count"], len(chunk))
            self.assertEqual([r["row"] for r in doc["data"]], list(range(len(chunk))))
            ids += [r["ticket_id"] for r in doc["data"]]
        self.assertEqual(len(self.sim.calls("tickets_bulk")), 3)
        self.assertEqual(len(self.sim.tickets()), n0 + 250)
        self.assertEqual(len(set(ids)), 250)
        snapshot = (self.sim.tickets(), self.sim.fans())
        dup = 0
        for chunk in (rows[:100], rows[100:200], rows[200:]):
            doc = self.ok(self.push(chunk))
            dup += doc["meta"]["duplicate_count"]
            self.assertEqual({r["status"] for r in doc["data"]}, {"duplicate"})
        self.assertEqual(dup, 250)
        self.assertEqual((self.sim.tickets(), self.sim.fans()), snapshot)

    def test_101_is_400_and_stores_nothing(self):
        n = len(self.sim.tickets())
        rows = [ticket_row(i) for i in range(101)]
        self.refused(self.push(rows), 400, "at most 100")
        self.refused(self.push(rows, repeated=False), 400, "at most 100")
        self.refused(self.c.call("tickets_bulk", form={"tickets": "[]"}), 400)
        self.refused(self.c.call("tickets_bulk", form={"ticket": json.dumps(rows[0])}), 400,
                     "unknown parameter ticket")
        self.refused(self.c.call("tickets_bulk", form={}), 400, "tickets is required")
        self.refused(self.c.call("tickets_bulk", form={"tickets": "not json"}), 400, "not JSON")
        self.assertEqual(len(self.sim.tickets()), n)

    def test_a_bad_row_never_fails_its_neighbours(self):
        rows = [ticket_row(i) for i in range(100)]
        rows[37] = ticket_row(37, email="broken")
        rows[61] = ticket_row(61)
        del rows[61]["event_key"]                       # the bulk call needs event_key
        rows[80] = ticket_row(80, paid_amount=12.5, num_seats=3)   # JSON numbers are fine
        doc = self.ok(self.push(rows))
        self.assertEqual((doc["meta"]["success_count"], doc["meta"]["error_count"]), (98, 2))
        bad = {r["row"]: r for r in doc["data"] if r["status"] == "error"}
        self.assertEqual(sorted(bad), [37, 61])
        self.assertIn("email is not valid", bad[37]["errors"])
        self.assertIn("event_key is required", bad[61]["errors"])
        self.assertIsNone(self.sim.ticket_by_key(rows[37]["ticket_key"]))
        self.assertEqual(self.sim.ticket_by_key(rows[80]["ticket_key"])["paid_amount"], 12.5)


class TicketListTests(SimCase):
    def pull_all(self, extra=None, limit=40):
        got, cursor, calls = [], None, 0
        while True:
            p = {"limit": limit}
            p.update(extra or {})
            if cursor is not None:
                p["min_ticket_id"] = cursor
            doc = self.ok(self.c.call("tickets_list", p))
            calls += 1
            if not doc["data"]:
                return got, calls
            got += doc["data"]
            self.assertEqual(doc["meta"]["max_ticket_id"], doc["data"][-1]["ticket_id"])
            cursor = doc["meta"]["max_ticket_id"]

    def test_id_window_paging_reproduces_the_tickets(self):
        got, calls = self.pull_all()
        want = self.sim.tickets(include_deleted=False)
        self.assertEqual(got, want)
        self.assertLess(len(want), 90)                  # the seed deleted a few
        self.assertEqual(calls, -(-len(want) // 40) + 1)   # full pages, then one empty page
        got, _ = self.pull_all({"include_deleted": "true"})
        self.assertEqual(got, self.sim.tickets())
        # a page beyond the window is empty, not an error
        doc = self.ok(self.c.call("tickets_list", {"min_ticket_id": got[-1]["ticket_id"]}))
        self.assertEqual((doc["data"], doc["meta"]["max_ticket_id"]), ([], None))
        # max_ticket_id is exclusive
        mid = got[10]["ticket_id"]
        doc = self.ok(self.c.call("tickets_list", {"max_ticket_id": mid,
                                                   "include_deleted": "1"}))
        self.assertEqual([t["ticket_id"] for t in doc["data"]],
                         [t["ticket_id"] for t in got[:10]])

    def test_limits_and_formats(self):
        for p, words in [({"limit": 1001}, "out of range"), ({"limit": 0}, "out of range"),
                         ({"limit": "ten"}, "integer"), ({"min_ticket_id": "abc"}, "integer"),
                         ({"include_deleted": "perhaps"}, "boolean"),
                         ({"min_last_update_date": "01/02/2026"}, "not a date"),
                         ({"data": "everything"}, "fan")]:
            self.refused(self.c.call("tickets_list", p), 400, words)
        self.assertEqual(len(self.ok(self.c.call("tickets_list", {"limit": 1000}))["data"]),
                         len(self.sim.tickets(include_deleted=False)))
        doc = self.ok(self.c.call("tickets_list", {"limit": 2, "data": "fan"}))
        self.assertEqual(doc["data"][0]["fan"]["email"], doc["data"][0]["email"])

    def test_change_capture_by_last_update_date(self):
        live = self.sim.tickets(include_deleted=False)
        self.sim.clock.advance(2 * DAY)
        since = gmt(self.sim.clock.now())
        self.sim.clock.advance(5)
        self.sim.update_ticket(live[3]["ticket_id"], paid_amount=1.0)
        self.sim.delete_ticket(live[5]["ticket_id"])
        # an id cursor finds new tickets only: nothing after the last id
        doc = self.ok(self.c.call("tickets_list", {"min_ticket_id": live[-1]["ticket_id"]}))
        self.assertEqual(doc["data"], [])
        doc = self.ok(self.c.call("tickets_list", {"min_last_update_date": since,
                                                   "include_deleted": "true"}))
        got = {t["ticket_id"]: t for t in doc["data"]}
        self.assertEqual(sorted(got), sorted([live[3]["ticket_id"], live[5]["ticket_id"]]))
        self.assertEqual(got[live[3]["ticket_id"]]["paid_amount"], 1.0)
        self.assertTrue(got[live[5]["ticket_id"]]["is_deleted"])
        # without include_deleted the deletion is invisible
        doc = self.ok(self.c.call("tickets_list", {"min_last_update_date": since}))
        self.assertEqual([t["ticket_id"] for t in doc["data"]], [live[3]["ticket_id"]])
        # a date-only filter covers the whole day
        day = since[:10]
        doc = self.ok(self.c.call("tickets_list", {"min_last_update_date": day,
                                                   "max_last_update_date": day,
                                                   "include_deleted": "true"}))
        self.assertEqual(len(doc["data"]), 2)


class FanSearchTests(SimCase):
    def search_all(self, params, client=None):
        cl = client or self.c
        doc = self.ok(cl.call("fans_search", params))
        got, total = list(doc["data"]), doc["meta"]["count"]
        while "search_uid" in doc["meta"]:
            doc = self.ok(cl.call("fans_search", {"search_uid": doc["meta"]["search_uid"]}))
            got += doc["data"]
        return got, total

    def test_search_uid_paging_reproduces_the_fans(self):
        got, total = self.search_all({"limit": 7})
        self.assertEqual([f["fan_id"] for f in got], [f["fan_id"] for f in self.sim.fans()])
        self.assertEqual(total, 40)
        self.assertEqual(len(self.sim.calls("fans_search")), 6)
        # the continuation is spent: asking again gives an empty page, not the first one
        first = self.sim.calls("fans_search")[-2].answer["meta"]["search_uid"]
        doc = self.ok(self.c.call("fans_search", {"search_uid": first}))
        self.assertEqual((doc["data"], "search_uid" in doc["meta"]), ([], False))

    def test_wrong_search_uids(self):
        doc = self.ok(self.c.call("fans_search", {"limit": 5}))
        sid = doc["meta"]["search_uid"]
        self.refused(self.c.call("fans_search", {"search_uid": "deadbeef"}), 400, "unknown")
        other = Client(self.sim, via="query")
        self.addCleanup(other.close)
        self.sim.keys["second"] = {"secret": "s2", "scopes": {"crm", "segments"}}
        other.key, other.secret = "second", "s2"
        self.refused(other.call("fans_search", {"search_uid": sid}), 400, "unknown")
        self.sim.clock.advance(self.sim.search_ttl + 1)
        self.refused(self.c.call("fans_search", {"search_uid": sid}), 400, "expired")

    def test_limits_and_max_count(self):
        self.refused(self.c.call("fans_search", {"limit": 1000}), 400, "out of range")
        self.refused(self.c.call("fans_search", {"max_count": 1000001}), 400, "out of range")
        self.ok(self.c.call("fans_search", {"limit": 999, "max_count": 1000000}))
        got, total = self.search_all({"limit": 4, "max_count": 10})
        self.assertEqual((len(got), total), (10, 10))

    def test_capped_search_partitioned_by_creation_date(self):
        fans = self.sim.fans()
        lo = min(f["creation_timestamp"] for f in fans)
        hi = max(f["creation_timestamp"] for f in fans)
        got, day = [], lo - lo % DAY
        while day <= hi:
            d0 = gmt(day)[:10]
            d1 = gmt(day + 29 * DAY)[:10]
            part, total = self.search_all({"limit": 50, "max_count": 12,
                                           "fan_start_creation_date": d0,
                                           "fan_end_creation_date": d1})
            self.assertLess(total, 12, "a partition hit max_count: make it narrower")
            got += part
            day += 30 * DAY
        self.assertEqual(sorted(f["fan_id"] for f in got), [f["fan_id"] for f in fans])
        self.refused(self.c.call("fans_search", {"fan_start_creation_date": "2026-1-1"}), 400)


class FansUpdatedTests(SimCase):
    sim_kwargs = {"fans_updated_page": 7}

    def pull(self, first):
        got, p = [], dict(first)
        while True:
            doc = self.ok(self.c.call("fans_updated", p))
            if not doc["data"]:
                return got
            self.assertEqual(doc["meta"]["count"], len(doc["data"]))
            got += doc["data"]
            p = {"min_time_key": doc["meta"]["max_fan_time_key"]}

    def test_time_key_paging_is_safe_when_timestamps_tie(self):
        self.sim.clock.advance(3 * DAY)
        since = gmt(self.sim.clock.now())[:10]
        ids = [f["fan_id"] for f in self.sim.fans()][:18]
        for fid in ids:                                  # 18 fans, one instant: a tie
            self.sim.update_fan(fid, city="Burnaby")
        got = self.pull({"last_update_date": since})
        self.assertEqual(sorted(f["fan_id"] for f in got), sorted(ids))
        self.assertEqual(len(got), 18)
        keys = [f["fan_time_key"] for f in got]
        self.assertEqual(len(set(k.rsplit("_", 1)[0] for k in keys)), 1)
        self.assertEqual(len(self.sim.calls("fans_updated")), 4)
        # a wrong client that resumes from the page's last timestamp alone loses the tie
        first = self.sim.calls("fans_updated")[0].answer
        u, ms, _ = first["meta"]["max_fan_time_key"].split("_")
        self.refused(self.c.call("fans_updated", {"min_time_key": "%s_%s" % (u, ms)}), 400,
                     "<unix_time>_<milliseconds>_<fan_id>")
        self.refused(self.c.call("fans_updated", {"last_update_date": since + " 00:00:00"}),
                     400, "YYYY-MM-DD")
        # all fans from the beginning: the whole account, each once
        everyone = self.pull({})
        self.assertEqual(sorted(f["fan_id"] for f in everyone),
                         [f["fan_id"] for f in self.sim.fans()])

    def test_default_page_is_1000(self):
        sim = Simulator(fans=1003, tickets=0, activities=0).start()
        self.addCleanup(sim.stop)
        c = Client(sim)
        self.addCleanup(c.close)
        doc = self.ok(c.call("fans_updated", {}))
        self.assertEqual(len(doc["data"]), 1000)
        doc = self.ok(c.call("fans_updated", {"min_time_key": doc["meta"]["max_fan_time_key"]}))
        self.assertEqual(len(doc["data"]), 3)


class ActivitiesTests(SimCase):
    def test_min_activity_id_paging(self):
        got, p = [], {"limit": 20}
        while True:
            doc = self.ok(self.c.call("activities_list", p))
            if not doc["data"]:
                break
            got += doc["data"]
            p = {"limit": 20, "min_activity_id": doc["meta"]["max_activity_id"]}
        self.assertEqual(got, self.sim.activities())
        new = self.sim.add_activity(self.sim.fans()[0]["fan_id"])
        doc = self.ok(self.c.call("activities_list", p))
        self.assertEqual([a["activity_id"] for a in doc["data"]], [new])
        self.refused(self.c.call("activities_list", {"limit": 201}), 400, "out of range")
        tab = self.sim.activities()[0]["page_tab_id"]
        doc = self.ok(self.c.call("activities_list", {"page_tab_id": tab,
                                                      "include_details": "true"}))
        self.assertEqual({a["page_tab_id"] for a in doc["data"]}, {tab})
        self.assertEqual(doc["data"][0]["fan"]["fan_id"], doc["data"][0]["fan_id"])
        # the default limit (200) covers the 50 generated activities and the new one
        self.assertEqual(len(self.ok(self.c.call("activities_list", {}))["data"]), 51)


class TagTests(SimCase):
    sim_kwargs = {"tags_max_rows": 15}

    def test_segment_as_tag_with_exact_diff(self):
        d = self.ok(self.c.call("tag_create", form={"tag_name": "stagedoor: Opera lovers"}))
        tid = d["data"]["tag_id"]
        self.assertEqual(d["data"]["status"], "success")
        d = self.ok(self.c.call("tag_create", form={"tag_name": "stagedoor: Opera lovers"}))
        self.assertEqual((d["data"]["status"], d["data"]["tag_id"]), ("duplicate", tid))
        f = [x["fan_id"] for x in self.sim.fans()]
        d = self.ok(self.c.call("tag_add", form=[("fan_id", i) for i in f[:3]], tag_id=tid))
        self.assertEqual(d["data"]["added"], f[:3])
        # second sync: f[1], f[2] stay, f[3] joins, f[0] leaves
        d = self.ok(self.c.call("tag_add", form=[("fan_id", i) for i in f[1:4]] +
                                [("fan_id", "999")], tag_id=tid))
        self.assertEqual((d["data"]["added"], d["data"]["unchanged"]), ([f[3]], f[1:3]))
        self.assertEqual(d["data"]["errors"], [{"fan_id": "999", "error": "no such fan"}])
        d = self.ok(self.c.call("tag_remove", form=[("fan_id", f[0]), ("fan_id", f[9])],
                                tag_id=tid))
        self.assertEqual((d["data"]["removed"], d["data"]["not_member"]), ([f[0]], [f[9]]))
        self.assertEqual(self.sim.tag_members("stagedoor: Opera lovers"), sorted(f[1:4]))
        # the tag is a segment: listed, counted, and its fans page with search_uid
        segs = self.ok(self.c.call("segments_list"))["data"]
        seg = [s for s in segs if s["segment_id"] == tid and s["segment_type"] == "tag"][0]
        self.assertEqual(seg["segment_count"], 3)
        st = self.ok(self.c.call("segment_status", segment_type="tag", segment_id=tid))["data"]
        self.assertEqual(st["fan_count"], 3)
        doc = self.ok(self.c.call("segment_fans", {"limit": 2}, segment_type="tag",
                                  segment_id=tid))
        ids = [x["fan_id"] for x in doc["data"]]
        doc = self.ok(self.c.call("segment_fans", {"search_uid": doc["meta"]["search_uid"]},
                                  segment_type="tag", segment_id=tid))
        self.assertNotIn("search_uid", doc["meta"])
        self.assertEqual(sorted(ids + [x["fan_id"] for x in doc["data"]]), sorted(f[1:4]))

    def test_wrong_tag_calls(self):
        self.refused(self.c.call("tag_create", form={}), 400, "tag_name")
        tid = self.ok(self.c.call("tag_create", form={"tag_name": "T"}))["data"]["tag_id"]
        self.refused(self.c.call("tag_add", form={}, tag_id=tid), 400, "fan_id")
        self.refused(self.c.call("tag_add", form=[("fan_id", 1)] * 1001, tag_id=tid), 400,
                     "at most 1000")
        self.refused(self.c.call("tag_add", form={"fan_id": 1}, tag_id=tid + 100), 404)
        self.refused(self.c.call("segment_fans", segment_type="list", segment_id=1), 400)
        self.refused(self.c.call("segment_fans", {"limit": 10001}, segment_type="tag",
                                 segment_id=tid), 400)

    def test_tags_list_is_capped_so_partition_by_date(self):
        doc = self.ok(self.c.call("tags_list"))
        self.assertEqual(len(doc["data"]), 15)          # capped, silently
        want = sum(len(self.sim.tag(n)["members"]) for n in ("VIP", "Newsletter",
                                                              "Season 2026", "Lapsed"))
        self.assertGreater(want, 15)
        got = {}
        start = self.sim.clock.now() - 400 * DAY
        for k in range(0, 401, 5):
            # both edges are exclusive: windows overlap by a second, rows are keyed
            lo, hi = gmt(start + k * DAY - 1), gmt(start + (k + 5) * DAY + 1)
            part = self.ok(self.c.call("tags_list", {"start_date": lo, "end_date": hi}))["data"]
            self.assertLess(len(part), 15, "a window hit the cap: make it narrower")
            for r in part:
                got[(r["tag_name"], r["fan_id"])] = r
        self.assertEqual(sorted(got), sorted((n, f) for n in ("VIP", "Newsletter", "Season 2026",
                                                               "Lapsed")
                                             for f in self.sim.tag_members(n)))
        self.assertEqual(len(got), want)


class RateLimitTests(SimCase):
    sim_kwargs = {"fans": 3, "tickets": 3, "activities": 0}

    def test_the_601st_call_in_a_minute_is_429(self):
        for _ in range(600):
            st, _, _ = self.c.call("activities_list", {"limit": 1})
            self.assertEqual(st, 200)
        n = len(self.sim.tickets())
        st, hdrs, doc = self.c.call("tickets_create", form=ticket_row(1))
        self.refused((st, hdrs, doc), 429)
        self.assertEqual(hdrs["Retry-After"], "60")
        self.assertEqual(len(self.sim.tickets()), n)     # refused before anything is stored
        self.sim.clock.advance(30)
        st, hdrs, _ = self.c.call("activities_list")
        self.assertEqual((st, hdrs["Retry-After"]), (429, "30"))
        # another key has its own minute
        self.sim.keys["k2"] = {"secret": "s2", "scopes": {"crm"}}
        other = Client(self.sim, key="k2", secret="s2")
        self.addCleanup(other.close)
        self.ok(other.call("activities_list"))
        self.sim.clock.advance(30)
        self.ok(self.c.call("tickets_create", form=ticket_row(1)))
        self.assertEqual(sum(1 for c in self.sim.calls() if c.status == 429), 2)

    def test_exact_under_concurrent_clients(self):
        self.sim.rate_limit = 100
        results = []

        def worker():
            cl = Client(self.sim)
            try:
                for _ in range(30):
                    results.append(cl.call("activities_list", {"limit": 1})[0])
            finally:
                cl.close()
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * TIME_SCALE)
        self.assertEqual(sorted(results), [200] * 100 + [429] * 20)

    def test_without_retry_after(self):
        self.sim.rate_limit, self.sim.retry_after = 3, False
        for _ in range(3):
            self.ok(self.c.call("activities_list"))
        st, hdrs, _ = self.c.call("activities_list")
        self.assertEqual((st, hdrs.get("Retry-After")), (429, None))
        self.sim.clock.advance(60)
        self.ok(self.c.call("activities_list"))


class FaultTests(SimCase):
    sim_kwargs = {"fans": 5, "tickets": 5, "activities": 5}

    def test_injected_answers(self):
        self.sim.inject("tickets_list", ("status", 503), ("status", 429, {"Retry-After": "7"}),
                        ("inband", "temporarily unavailable"))
        self.refused(self.c.call("tickets_list"), 503)
        st, hdrs, _ = self.c.call("tickets_list")
        self.assertEqual((st, hdrs["Retry-After"]), (429, "7"))
        st, _, doc = self.c.call("tickets_list")
        self.assertEqual((st, doc["meta"]["status"], doc["data"]), (200, "error", []))
        self.ok(self.c.call("tickets_list"))
        self.assertEqual([c.status for c in self.sim.calls("tickets_list")], [503, 429, 200, 200])
        self.assertEqual(self.sim.calls("tickets_list")[1].fault[0], "status")

    def test_broken_connections_and_slow_answers(self):
        self.sim.inject("*", ("close",), ("truncate",), ("sleep", 3.0 * TIME_SCALE))
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.c.call("activities_list")
        with self.assertRaises(http.client.IncompleteRead):
            self.c.call("activities_list")
        slow = Client(self.sim, timeout=0.3 * TIME_SCALE)
        self.addCleanup(slow.close)
        with self.assertRaises(socket.timeout):
            slow.call("activities_list")
        self.sim.wait_calls(3, "activities_list", timeout=10 * TIME_SCALE)
        self.assertEqual([c.status for c in self.sim.calls()], ["close", "truncate", 200])

    def test_restart_keeps_state_and_port(self):
        self.ok(self.c.call("tickets_create", form=ticket_row(1)))
        port = self.sim.port
        self.sim.stop()
        with self.assertRaises(OSError):
            self.c.call("tickets_list")
        self.sim.start()
        self.assertEqual(self.sim.port, port)
        d = self.ok(self.c.call("tickets_create", form=ticket_row(1)))["data"]
        self.assertEqual(d["status"], "duplicate")


class RecordAndDataTests(unittest.TestCase):
    def test_call_record(self):
        with Simulator(fans=5, tickets=5, activities=5) as sim:
            c = Client(sim)
            try:
                c.call("tickets_create", form=ticket_row(4))
                c.call("tickets_list", {"limit": 2})
            finally:
                c.close()
            a, b = sim.wait_calls(2)
            self.assertEqual((a.method, a.path, a.op, a.status), ("POST", "/api/v1/crm/tickets",
                                                                  "tickets_create", 200))
            self.assertEqual(a.form["ticket_key"], ["sd-INV00004-1"])
            self.assertTrue(a.content_type.startswith("application/x-www-form-urlencoded"))
            self.assertEqual(a.header("api-secret"), "***")
            self.assertEqual(a.answer["data"]["status"], "success")
            self.assertIn(b"ticket_key=sd-INV00004-1", a.body)
            self.assertEqual((b.query["limit"], b.answer["meta"]["count"]), (["2"], 2))
            self.assertLessEqual(a.t, b.t)

    def test_deterministic_data_and_type_drift(self):
        a, b = Simulator(seed=5), Simulator(seed=5)
        self.assertEqual((a.fans(), a.tickets(), a.activities()),
                         (b.fans(), b.tickets(), b.activities()))
        self.assertNotEqual(a.tickets(), Simulator(seed=6).tickets())
        drift = Simulator(seed=5, type_drift=True).tickets()
        even = [t for t in drift if t["ticket_id"] % 2 == 0][0]
        self.assertIsInstance(even["paid_amount"], str)
        self.assertIsInstance(even["is_deleted"], int)
        fan = a.fans()[0]
        u, ms, fid = fan["fan_time_key"].split("_")
        self.assertEqual((int(u), int(fid), len(ms)), (fan["last_update_timestamp"],
                                                       fan["fan_id"], 3))

    def test_paths_are_settings(self):
        with Simulator(fans=2, tickets=2, activities=0,
                       paths={"tickets_bulk": ("POST", "/crm/tickets_bulk")}) as sim:
            c = Client(sim)
            try:
                st, _, doc = c.call("tickets_bulk", form={"tickets": json.dumps([ticket_row(1)])})
                self.assertEqual((st, doc["meta"]["success_count"]), (200, 1))
                # the default path now only matches the single-ticket GET
                st, hdrs, _ = c.raw("POST", "/api/v1/crm/tickets/bulk", b"",
                                    {"Api-Key": KEY, "Api-Secret": SECRET})
                self.assertEqual((st, hdrs["Allow"]), (405, "GET"))
                self.assertEqual(len(sim.tickets()), 3)
            finally:
                c.close()

    def test_standalone(self):
        main = os.path.join(os.path.dirname(harness.HERE), "sim", "tradablebits", "__main__.py")
        p = subprocess.Popen([sys.executable, main, "--port", "0", "--run-for",
                              str(30 * TIME_SCALE)], stdout=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            self.assertIn("listening on http://127.0.0.1:", line)
            url = urllib.parse.urlsplit(line.split()[-1])
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10 * TIME_SCALE)
            conn.request("GET", url.path + "crm/tickets?limit=1",
                         headers={"Api-Key": KEY, "Api-Secret": SECRET})
            r = conn.getresponse()
            self.assertEqual((r.status, len(json.loads(r.read())["data"])), (200, 1))
            conn.close()
        finally:
            p.terminate()
            p.wait(10 * TIME_SCALE)
            p.stdout.close()
        self.assertEqual(p.returncode, 0)


if __name__ == "__main__":
    _, argv = harness._strip_bin(sys.argv)   # --bin is accepted and ignored: no stagedoor here
    unittest.main(argv=argv, verbosity=2)
