"""GET list endpoints (limit/cursor, change order, has_more, following the change feed) and
single-record reads.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import threading
import time

import harness
from harness import customer, event, sale, uid


class ReadTests(harness.ServerCase):
    # one tenant per test so every change feed starts empty
    TENANTS = {name: ["test", "prod"] for name in
               ("r_events", "r_customers", "r_sales", "r_limits", "r_single", "r_empty",
                "r_default", "r_conc")}

    @classmethod
    def prepare(cls):
        # The follower in test_follow_feed_during_writes polls without pause for as long as
        # the writers take; on a slow disk (100 ms per fsync) that is over 1000 requests, past
        # the default burst. The rate limit is not what that test is about.
        harness.tenant_limits(cls.data, "r_conc", 1000000, 1000000)

    def a(self, client, env="test"):
        return self.api(client, env)

    def ingest_ok(self, api, body):
        r = api.ingest(body)
        self.assertStatus(r, 202)
        return r

    def page(self, api, kind, limit=None, cursor=None):
        q = []
        if limit is not None:
            q.append("limit=%d" % limit)
        if cursor is not None:
            q.append("cursor=" + harness._quote(cursor))
        r = api.get(kind, query="&".join(q) or None)
        self.assertStatus(r, 200)
        j = r.json
        self.assertIsInstance(j, dict, r)
        self.assertIsInstance(j.get("data"), list, j)
        self.assertIsInstance(j.get("has_more"), bool, j)
        self.assertIn("next_cursor", j)
        return j

    def ids(self, records, field):
        return [r.get(field) for r in records]

    def test_empty(self):
        api = self.a("r_empty")
        for kind in ("events", "customers", "sales"):
            j = self.page(api, kind)
            self.assertEqual(j["data"], [])
            self.assertIs(j["has_more"], False)

    def test_events_feed(self):
        api = self.a("r_events")
        evs = [event(uid("E%d" % i)) for i in range(5)]
        ids = [e["event_id"] for e in evs]
        self.ingest_ok(api, {"events": evs[:3]})
        self.ingest_ok(api, {"events": evs[3:]})

        p1 = self.page(api, "events", limit=2)
        self.assertEqual(self.ids(p1["data"], "event_id"), ids[:2])
        self.assertIs(p1["has_more"], True)
        self.assertTrue(p1["next_cursor"])
        p2 = self.page(api, "events", limit=2, cursor=p1["next_cursor"])
        self.assertEqual(self.ids(p2["data"], "event_id"), ids[2:4])
        self.assertIs(p2["has_more"], True)
        p3 = self.page(api, "events", limit=2, cursor=p2["next_cursor"])
        self.assertEqual(self.ids(p3["data"], "event_id"), ids[4:])
        self.assertIs(p3["has_more"], False)
        cur = p3["next_cursor"]
        self.assertTrue(cur, "the last page must still give a cursor to continue from")
        # full records in the pages
        self.assertEqual(p1["data"][0], evs[0])

        # nothing new yet
        p = self.page(api, "events", cursor=cur)
        self.assertEqual(p["data"], [])
        self.assertIs(p["has_more"], False)
        cur = p["next_cursor"] or cur

        # a new event, then a change to an old one: exactly those, in change order
        e6 = event(uid("E6"))
        self.ingest_ok(api, {"events": [e6]})
        e1b = dict(evs[1], title="Changed")
        self.ingest_ok(api, {"events": [e1b]})
        # changes in the other environment and failed requests do not show up
        self.ingest_ok(self.a("r_events", "prod"), {"events": [event()]})
        r = api.ingest({"events": [event(date="2025-02-29")]})
        self.assertStatus(r, 400)
        p = self.page(api, "events", cursor=cur)
        self.assertEqual(self.ids(p["data"], "event_id"), [e6["event_id"], evs[1]["event_id"]])
        self.assertEqual(p["data"][1]["title"], "Changed")
        self.assertIs(p["has_more"], False)

        # from the start: each record once, in order of its latest change
        whole = self.page(api, "events", limit=100)
        self.assertEqual(self.ids(whole["data"], "event_id"),
                         [ids[0], ids[2], ids[3], ids[4], e6["event_id"], ids[1]])
        self.assertIs(whole["has_more"], False)

    def test_customers_feed_limit_1(self):
        api = self.a("r_customers")
        cus = [customer(uid("C%d" % i)) for i in range(3)]
        self.ingest_ok(api, {"customers": cus})
        got, cursor = [], None
        for i in range(3):
            p = self.page(api, "customers", limit=1, cursor=cursor)
            self.assertEqual(len(p["data"]), 1)
            got.extend(p["data"])
            cursor = p["next_cursor"]
            self.assertIs(p["has_more"], i < 2, "has_more on page %d" % (i + 1))
        self.assertEqual(self.ids(got, "customer_id"), [c["customer_id"] for c in cus])
        c0 = dict(cus[0], email="NEW.Address@Example.org")
        self.ingest_ok(api, {"customers": [c0]})
        p = self.page(api, "customers", cursor=cursor)
        self.assertEqual(p["data"], [dict(c0, source="webhook")])  # reads show the source

    def test_default_limit_100(self):
        api = self.a("r_default")
        cus = [customer(uid("D%d" % i)) for i in range(150)]
        self.ingest_ok(api, {"customers": cus})
        p = self.page(api, "customers")
        self.assertEqual(len(p["data"]), 100)
        self.assertIs(p["has_more"], True)
        p2 = self.page(api, "customers", cursor=p["next_cursor"])
        self.assertEqual(len(p2["data"]), 50)
        self.assertIs(p2["has_more"], False)
        self.assertEqual(self.ids(p["data"] + p2["data"], "customer_id"),
                         [c["customer_id"] for c in cus])
        p = self.page(api, "customers", limit=1000)
        self.assertEqual(len(p["data"]), 150)
        self.assertIs(p["has_more"], False)

    def test_sales_feed(self):
        api = self.a("r_sales")
        e = event()
        self.ingest_ok(api, {"events": [e]})
        ss = [sale(uid("S%d" % i), e["event_id"]) for i in range(3)]
        self.ingest_ok(api, {"sales": ss})
        p = self.page(api, "sales", limit=10)
        self.assertEqual(self.ids(p["data"], "invoice_number"), [s["invoice_number"] for s in ss])
        self.assertEqual(p["data"][0]["sales_price"], "89.00")
        cur = p["next_cursor"]
        # a 409 and a 400 change nothing; a PUT moves the sale to the end of the feed
        self.assertStatus(api.ingest({"sales": [ss[1]]}), 409)
        r = api.put_sale(ss[0]["invoice_number"], dict(ss[0], quantity=4, sales_price=10))
        self.assertStatus(r, 200)
        p = self.page(api, "sales", cursor=cur)
        self.assertEqual(self.ids(p["data"], "invoice_number"), [ss[0]["invoice_number"]])
        self.assertEqual(p["data"][0]["quantity"], 4)
        self.assertEqual(p["data"][0]["sales_price"], "10.00")
        cur = p["next_cursor"]
        s4 = sale(uid("S4"), e["event_id"])
        self.ingest_ok(api, {"sales": [s4]})
        p = self.page(api, "sales", cursor=cur)
        self.assertEqual(self.ids(p["data"], "invoice_number"), [s4["invoice_number"]])

    def test_follow_feed_during_writes(self):
        """A reader following next_cursor while writers commit sees every record exactly once,
        each request's sales together and in request order."""
        api = self.a("r_conc")
        e = event()
        self.ingest_ok(api, {"events": [e]})
        start = self.page(api, "sales")
        self.assertEqual(start["data"], [])
        cursor = start["next_cursor"]
        writers_done = threading.Event()
        requests, seen, errors = [], [], []

        def writer(w):
            try:
                for j in range(20):
                    invs = ["W%d-%d-%d-%s" % (w, j, k, harness._RUN) for k in range(4)]
                    r = api.ingest({"sales": [sale(i, e["event_id"]) for i in invs]})
                    if r.status != 202:
                        errors.append(r)
                        return
                    requests.append(invs)
            except Exception as ex:  # reported below
                errors.append(ex)

        def reader():
            cur = cursor
            deadline = time.monotonic() + 60 * harness.TIME_SCALE
            while time.monotonic() < deadline:
                done = writers_done.is_set()
                q = "limit=7" + ("&cursor=" + harness._quote(cur) if cur else "")
                r = api.get("sales", query=q)
                if r.status != 200:
                    errors.append(r)
                    return
                seen.extend(x["invoice_number"] for x in r.json["data"])
                cur = r.json.get("next_cursor") or cur
                if done and not r.json["has_more"]:
                    return
            errors.append("reader did not finish")

        ws = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        rd = threading.Thread(target=reader)
        rd.start()
        for t in ws:
            t.start()
        for t in ws:
            t.join(60 * harness.TIME_SCALE)
        writers_done.set()
        rd.join(60 * harness.TIME_SCALE)
        self.assertEqual(errors, [])
        self.assertEqual(len(seen), len(set(seen)), "a record was delivered twice")
        self.assertEqual(sorted(seen), sorted(i for invs in requests for i in invs))
        pos = {inv: n for n, inv in enumerate(seen)}
        for invs in requests:
            p0 = pos[invs[0]]
            self.assertEqual([pos[i] for i in invs], list(range(p0, p0 + len(invs))),
                             "a request's sales are not contiguous in change order")

    def test_limit_bounds(self):
        api = self.a("r_limits")
        self.ingest_ok(api, {"events": [event(), event()]})
        for kind in ("events", "customers", "sales"):
            for q in ("limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=", "limit=1.5",
                      "cursor=%%%", "cursor=not-a-cursor"):
                with self.subTest(kind=kind, q=q):
                    r = api.get(kind, query=q)
                    self.assertStatus(r, 400)
                    self.assertIsInstance(r.json, dict, r)
            for q in ("limit=1", "limit=1000"):
                with self.subTest(kind=kind, q=q):
                    r = api.get(kind, query=q)
                    self.assertStatus(r, 200)
        p = self.page(api, "events", limit=1)
        self.assertEqual(len(p["data"]), 1)
        self.assertIs(p["has_more"], True)
        p = self.page(api, "events", limit=2)
        self.assertEqual(len(p["data"]), 2)
        self.assertIs(p["has_more"], False, "exactly `limit` records left: has_more is false")

    def test_single_records(self):
        api = self.a("r_single")
        e = event("EVT with space \u00fc")
        c = customer(uid("CUS"))
        s = sale(uid("INV"), e["event_id"], c["customer_id"], sales_price=12.5, currency="USD")
        self.ingest_ok(api, {"events": [e], "customers": [c], "sales": [s]})
        r = api.get("events", e["event_id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json, e)
        r = api.get("customers", c["customer_id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json, dict(c, source="webhook"))
        r = api.get("sales", s["invoice_number"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json, dict(s, sales_price="12.50"))
        for kind in ("events", "customers", "sales"):
            with self.subTest(kind=kind):
                r = api.get(kind, uid("missing"))
                self.assertStatus(r, 404)
                self.assertIsInstance(r.json, dict, r)
        # other environment
        prod = self.a("r_single", "prod")
        self.assertStatus(prod.get("events", e["event_id"]), 404)
        self.assertStatus(prod.get("sales", s["invoice_number"]), 404)


if __name__ == "__main__":
    harness.main()
