"""The `rest_pull` connector end to end: paged collections on a local REST API
(fake_sources.FakeSources, cursor paging, fault injection, request log) pulled by `stagedoor
serve` through connectors configured over the admin API; what it stored is read back over the
read API and compared with the source.

Covered: token cursors over 250 sales (events first) with the cursor committed and an
incremental second run that sends it back; a last page without a next cursor; max_pages;
after_id cursors with another JSON shape, other parameter names and a mapping; 429 + Retry-After
(not an attempt), 509 + Retry-After (the same), 408 retried, 503 + Retry-After, truncated and closed answers, 500 then success, a timeout
retried; every attempt failing (the error names the page's cursor and the attempts; the next run
resumes from the same committed cursor, nothing doubled or skipped); a page with an invalid
record (reject_page: the run stops there, earlier pages stay, the cursor stays; fixed in the
source, the next run completes); skip_records over two pages (the warning counts the run's
skipped records and names the page); 401 and a wrong records_pointer; kill -9 during a slow
paged pull and a restart, and SIGTERM while a page hangs (the hub stops at once; both resume and
end with the stored set equal to the source); and hub-to-hub replication through stagedoor's own
read API, then incremental catch-up.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import json
import os
import tempfile
import time
import unittest

import harness
from fake_sources import FakeSources, encode_token
from harness import customer, event, sale, uid

T = harness.TIME_SCALE
RUN_TIMEOUT = 60.0 * T
CLIENT = "pull"
TOKEN = "secret-token"


# ---------------------------------------------------------------------------------------------
# admin helpers


class Admin:
    """Connectors of one tenant over the admin API of one server."""

    def __init__(self, server, client_id):
        self.server = server
        self.client_id = client_id
        with open(os.path.join(server.data_dir, "admin.token")) as f:
            self.token = f.read().strip()

    def req(self, method, path, body=None):
        return harness.http(self.server.port, method,
                            "/admin/v1/tenants/%s/connectors%s" % (self.client_id, path),
                            body=body, key=self.token)

    def add(self, type_, settings, mapping=None, schedule="manual", env="test"):
        body = {"type": type_, "environment": env, "schedule": schedule, "settings": settings}
        if mapping is not None:
            body["mapping"] = mapping
        r = self.req("POST", "", body)
        if r.status != 201:
            raise AssertionError("connector not created: %r" % (r,))
        return r.json["connector_id"]

    def status(self, cid):
        r = self.req("GET", "/" + cid)
        if r.status != 200:
            raise AssertionError("GET connector %s -> %r" % (cid, r))
        return r.json["status"]

    def start(self, cid):
        r = self.req("POST", "/%s/run" % cid)
        if r.status != 202:
            raise AssertionError("run %s -> %r" % (cid, r))

    def run(self, cid, fs=None, timeout=None):
        """Run now and wait for that run to end; returns the status.

        The end of *this* run is recognised either by a request reaching the fake source `fs`
        (the run has started) followed by the state leaving "running", or, without `fs`, by
        last_run changing (whole seconds: the run is started in a later second than the
        previous one)."""
        timeout = timeout or RUN_TIMEOUT
        before = self.status(cid)
        n_before = len(fs.requests()) if fs is not None else None
        if fs is None and before["last_run"] is not None:
            harness.wait_until(lambda: _utc_now() > before["last_run"], 5,
                               what="the next second")
        self.start(cid)
        if fs is not None:
            harness.wait_until(lambda: len(fs.requests()) > n_before, timeout,
                               what="the run's first request")

        def ended():
            st = self.status(cid)
            if st["state"] in ("running", "never_run"):
                return None
            if fs is None and st["last_run"] == before["last_run"]:
                return None
            return st
        return harness.wait_until(ended, timeout, interval=0.02, what="the run of %s to end" % cid)


def _utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def stored(api, kind, id_field, ids=None):
    """{id: doc} of the stored records of kind (only those in ids, if given); AssertionError if
    the list holds an id twice."""
    out = {}
    for d in api.list_all(kind)[0]:
        rid = d[id_field]
        if ids is not None and rid not in ids:
            continue
        if rid in out:
            raise AssertionError("%s %s listed twice" % (kind, rid))
        out[rid] = d
    return out


# ---------------------------------------------------------------------------------------------
# fixture: one hub and one fake source for the module (the crash and hub-to-hub tests start
# their own hubs)


class Fixture:
    pass


def setUpModule():
    d = tempfile.TemporaryDirectory(prefix="sd-e2e-rest-")
    unittest.addModuleCleanup(d.cleanup)
    Fixture.data = d.name
    harness.tenant_create(Fixture.data, CLIENT)
    Fixture.key = harness.key_create(Fixture.data, CLIENT, "test")
    Fixture.server = harness.Server(Fixture.data)
    unittest.addModuleCleanup(Fixture.server.kill)
    Fixture.server.start()
    Fixture.fs = FakeSources().start()
    unittest.addModuleCleanup(Fixture.fs.stop)
    Fixture.admin = Admin(Fixture.server, CLIENT)
    Fixture.api = Fixture.server.api(CLIENT, Fixture.key)


def tearDownModule():
    Fixture.fs.stop()
    rc = Fixture.server.stop()
    if rc != 0:
        raise AssertionError("server exit code %r after SIGTERM\n%s"
                             % (rc, Fixture.server.diagnostics()))


class PullCase(unittest.TestCase):
    def setUp(self):
        self.fs = Fixture.fs
        self.admin = Fixture.admin
        self.api = Fixture.api

    # -- helpers
    def source(self, n_sales, n_events=3, name="src", final_next=True):
        """Token-mode collections of events and sales (sales spread over the events, ANON);
        returns (base path, events path, sales path, events, sales)."""
        base = "/" + uid(name)
        evs = [event(uid("PEV")) for _ in range(n_events)]
        sales = [sale(uid("PINV"), event_id=evs[i % n_events]["event_id"], quantity=1 + i % 4)
                 for i in range(n_sales)]
        ep, sp = base + "/events", base + "/sales"
        self.fs.add_collection(ep, evs, next_pointer="/next_cursor", final_next=final_next)
        self.fs.add_collection(sp, sales, next_pointer="/next_cursor", final_next=final_next)
        return base, ep, sp, evs, sales

    def settings(self, ep=None, sp=None, **kw):
        s = {"base_url": self.fs.url, "auth_header": "Bearer " + TOKEN,
             "timeout_seconds": 2, "retry_initial_ms": 50, "max_attempts": 3}
        if ep:
            s["events_path"] = ep
        if sp:
            s["sales_path"] = sp
        s.update(kw)
        return s

    def run_ok(self, cid):
        st = self.admin.run(cid, fs=self.fs)
        if st["state"] != "ok":
            self.fail("run of %s failed: %s" % (cid, json.dumps(st)))
        return st

    def run_failed(self, cid):
        st = self.admin.run(cid, fs=self.fs)
        if st["state"] != "failed":
            self.fail("run of %s should have failed: %s" % (cid, json.dumps(st)))
        self.assertIsInstance(st["last_error"], str, st)
        return st

    def cursors(self, path, since=0):
        """The cursor query parameter of each request to path (None: no cursor)."""
        return [r.query.get("cursor") for r in self.fs.requests(path)[since:]]

    def assertStoredEqualsSource(self, sales, evs=()):
        want = {s["invoice_number"]: s for s in sales}
        got = stored(self.api, "sales", "invoice_number", set(want))
        self.assertEqual(sorted(got), sorted(want), "stored sales differ from the source")
        for inv, s in want.items():
            self.assertEqual((got[inv]["event_id"], got[inv]["quantity"]),
                             (s["event_id"], s["quantity"]), got[inv])
        if evs:
            want_ev = {e["event_id"] for e in evs}
            self.assertEqual(set(stored(self.api, "events", "event_id", want_ev)), want_ev)


# ---------------------------------------------------------------------------------------------
# paging


class Paging(PullCase):
    def test_token_mode_250_sales_then_incremental(self):
        base, ep, sp, evs, sales = self.source(250)
        cid = self.admin.add("rest_pull", self.settings(ep, sp, page_size=100))
        st = self.run_ok(cid)

        # events first, then sales; every sales page once, in order
        reqs = self.fs.requests()
        paths = [r.path for r in reqs if r.path in (ep, sp)]
        self.assertEqual(paths[0], ep, paths)
        self.assertTrue(paths.index(sp) > max(i for i, p in enumerate(paths) if p == ep), paths)
        self.assertEqual(self.cursors(sp), [None, encode_token(100), encode_token(200),
                                            encode_token(250)])
        for r in self.fs.requests(sp):
            self.assertEqual(r.query.get("limit"), "100", r)
            self.assertEqual(r.header("Authorization"), "Bearer " + TOKEN)
            self.assertEqual(r.status, 200, r)
        self.assertGreaterEqual(self.fs.pages_served(sp), 3)
        self.assertEqual(st["records_in"], 253, st)
        self.assertEqual(st["last_run_stats"]["records_in"], 253, st)
        self.assertIsNone(st["last_warning"], st)
        self.assertEqual(st["cursor"], {"events": encode_token(3), "sales": encode_token(250)})
        self.assertStoredEqualsSource(sales, evs)

        # 30 more in the source: the next run starts at the committed cursor, reads only those
        more = [sale(uid("PINV"), event_id=evs[0]["event_id"]) for _ in range(30)]
        self.fs.append(sp, more)
        n_sp, n_ep = len(self.fs.requests(sp)), len(self.fs.requests(ep))
        st2 = self.run_ok(cid)
        self.assertEqual(self.cursors(ep, n_ep), [encode_token(3)])
        self.assertEqual(self.cursors(sp, n_sp), [encode_token(250), encode_token(280)])
        self.assertEqual(st2["last_run_stats"]["records_in"], 30, st2)
        self.assertEqual(st2["records_in"], 283, st2)
        self.assertEqual(st2["cursor"]["sales"], encode_token(280), st2)
        self.assertStoredEqualsSource(sales + more, evs)

        # nothing new: one empty page per kind, nothing stored
        st3 = self.run_ok(cid)
        self.assertEqual(st3["last_run_stats"]["records_in"], 0, st3)
        self.assertEqual(self.cursors(sp, n_sp + 2), [encode_token(280)])

    def test_token_mode_without_final_cursor(self):
        # a source whose last page has no next cursor: the run ends there; nothing is lost
        base, ep, sp, evs, sales = self.source(30, final_next=False)
        cid = self.admin.add("rest_pull", self.settings(ep, sp, page_size=20))
        st = self.run_ok(cid)
        self.assertEqual(self.cursors(sp), [None, encode_token(20)])
        self.assertEqual(st["last_run_stats"]["records_in"], 33, st)
        self.assertStoredEqualsSource(sales, evs)
        self.assertEqual(st["cursor"]["sales"], encode_token(20), st)
        # re-reading the last page stores nothing twice
        st2 = self.run_ok(cid)
        self.assertEqual(self.cursors(sp)[2:], [encode_token(20)])
        self.assertStoredEqualsSource(sales, evs)
        self.assertEqual(st2["state"], "ok")

    def test_max_pages_per_run(self):
        # at most 2 pages per kind and run: the run ends early (ok) and the next continues
        base, ep, sp, evs, sales = self.source(130)
        cid = self.admin.add("rest_pull", self.settings(ep, sp, page_size=30, max_pages=2))
        st = self.run_ok(cid)
        self.assertEqual(self.cursors(sp), [None, encode_token(30)])
        self.assertEqual(st["cursor"]["sales"], encode_token(60), st)
        self.assertStoredEqualsSource(sales[:60], evs)
        self.run_ok(cid)
        st = self.run_ok(cid)
        self.assertEqual(self.cursors(sp)[2:], [encode_token(60), encode_token(90),
                                                encode_token(120), encode_token(130)])
        self.assertEqual(st["cursor"]["sales"], encode_token(130), st)
        self.assertStoredEqualsSource(sales, evs)

    def test_after_id_other_shape(self):
        ev = event(uid("AEV"))
        self.assertEqual(self.api.ingest({"events": [ev]}).status, 202)
        path = "/%s/v2/tickets" % uid("aid")
        rows = [{"seq": i, "Beleg": uid("AINV"), "EventNo": ev["event_id"],
                 "Datum": "2025-04-%02d 10:00:00" % (1 + i % 28), "Kategorie": "Abo",
                 "Anzahl": str(1 + i % 3), "Preis": "%d,50" % (10 + i), "Intern": i}
                for i in range(1, 46)]
        self.fs.add_collection(path, rows, mode="after_id", id_field="seq",
                               page_param="per_page", cursor_param="after",
                               records_pointer="/result/items", next_pointer="/paging/after")
        mapping = {"fields": {"Beleg": "invoice_number", "EventNo": "event_id",
                              "Datum": "purchase_datetime", "Kategorie": "ticket_category",
                              "Anzahl": "quantity", "Preis": "sales_price"},
                   "values": {"ticket_category": {"Abo": "subscription"}},
                   "constants": {"currency": "EUR", "customer_id": "ANON"},
                   "formats": {"decimal_comma": True, "utc_offset": "Z"},
                   "unmapped": "drop"}
        s = self.settings(sp=path, cursor_mode="after_id", cursor_field="seq",
                          records_pointer="/result/items", next_pointer="/paging/after",
                          page_size=20, page_size_param="per_page", cursor_param="after")
        cid = self.admin.add("rest_pull", s, mapping)
        st = self.run_ok(cid)
        after = [r.query.get("after") for r in self.fs.requests(path)]
        self.assertEqual(after, [None, "20", "40", "45"])
        self.assertTrue(all(r.query.get("per_page") == "20" for r in self.fs.requests(path)))
        self.assertEqual(st["cursor"], {"sales": "45"}, st)
        self.assertEqual(st["last_run_stats"]["records_in"], 45, st)
        got = stored(self.api, "sales", "invoice_number", {r["Beleg"] for r in rows})
        self.assertEqual(len(got), 45)
        r7 = got[rows[6]["Beleg"]]
        self.assertEqual((r7["ticket_category"], r7["quantity"], r7["sales_price"],
                          r7["currency"], r7["customer_id"]),
                         ("subscription", 2, "17.50", "EUR", "ANON"), r7)
        self.assertNotIn("Intern", r7)

        more = [dict(rows[0], seq=i, Beleg=uid("AINV")) for i in range(46, 51)]
        self.fs.append(path, more)
        n = len(self.fs.requests(path))
        st2 = self.run_ok(cid)
        self.assertEqual([r.query.get("after") for r in self.fs.requests(path)[n:]],
                         ["45", "50"])
        self.assertEqual(st2["last_run_stats"]["records_in"], 5, st2)
        self.assertEqual(st2["cursor"], {"sales": "50"}, st2)
        self.assertEqual(len(stored(self.api, "sales", "invoice_number",
                                    {r["Beleg"] for r in rows + more})), 50)


# ---------------------------------------------------------------------------------------------
# faults


class Faults(PullCase):
    def test_429_retry_after_is_not_an_attempt(self):
        base, ep, sp, evs, sales = self.source(10)
        self.fs.inject(sp, [("status", 429, {"Retry-After": "1"})])
        cid = self.admin.add("rest_pull", self.settings(ep, sp, max_attempts=1))
        st = self.run_ok(cid)
        reqs = self.fs.requests(sp)
        self.assertEqual([r.status for r in reqs[:2]], [429, 200], reqs)
        self.assertEqual(reqs[0].query.get("cursor"), reqs[1].query.get("cursor"))
        self.assertGreaterEqual(reqs[1].t - reqs[0].t, 0.95)
        self.assertEqual(st["last_run_stats"]["records_in"], 13, st)
        self.assertStoredEqualsSource(sales, evs)

    def test_509_retry_after_is_not_an_attempt(self):
        # S-360's over-the-limit answer: waits like 429, the one attempt is not used up
        base, ep, sp, evs, sales = self.source(10)
        self.fs.inject(sp, [("status", 509, {"Retry-After": "1"})])
        cid = self.admin.add("rest_pull", self.settings(ep, sp, max_attempts=1))
        st = self.run_ok(cid)
        reqs = self.fs.requests(sp)
        self.assertEqual([r.status for r in reqs[:2]], [509, 200], reqs)
        self.assertGreaterEqual(reqs[1].t - reqs[0].t, 0.95)
        self.assertEqual(st["last_run_stats"]["records_in"], 13, st)
        self.assertStoredEqualsSource(sales, evs)

    def test_408_is_retried(self):
        # a server's request timeout is a retry for pulls as it is for pushes
        base, ep, sp, evs, sales = self.source(10)
        self.fs.inject(sp, [("status", 408)])
        cid = self.admin.add("rest_pull", self.settings(ep, sp, max_attempts=2))
        st = self.run_ok(cid)
        reqs = self.fs.requests(sp)
        self.assertEqual([r.status for r in reqs[:2]], [408, 200], reqs)
        self.assertEqual(reqs[0].query.get("cursor"), reqs[1].query.get("cursor"))
        self.assertEqual(st["last_run_stats"]["records_in"], 13, st)
        self.assertStoredEqualsSource(sales, evs)

    def test_500_then_success(self):
        base, ep, sp, evs, sales = self.source(60)
        # the second page fails once
        self.fs.inject(sp, [("sleep", 0), ("status", 500)])
        cid = self.admin.add("rest_pull", self.settings(ep, sp, page_size=25, max_attempts=2))
        st = self.run_ok(cid)
        reqs = self.fs.requests(sp)
        self.assertEqual([r.status for r in reqs], [200, 500, 200, 200, 200], reqs)
        self.assertEqual(self.cursors(sp), [None, encode_token(25), encode_token(25),
                                            encode_token(50), encode_token(60)])
        self.assertEqual(st["last_run_stats"]["records_in"], 63, st)
        self.assertStoredEqualsSource(sales, evs)

    def test_503_retry_after_and_broken_answers(self):
        base, ep, sp, evs, sales = self.source(10)
        # 503 with Retry-After (an attempt, but it waits as told), then a truncated answer and
        # a connection closed without an answer (transport errors, retried)
        self.fs.inject(sp, [("status", 503, {"Retry-After": "1"}), ("truncate",), ("close",)])
        cid = self.admin.add("rest_pull", self.settings(ep, sp, max_attempts=4))
        st = self.run_ok(cid)
        reqs = self.fs.requests(sp)
        self.assertEqual([r.status for r in reqs[:4]], [503, "truncate", "close", 200], reqs)
        self.assertEqual({r.query.get("cursor") for r in reqs[:4]}, {None})
        self.assertGreaterEqual(reqs[1].t - reqs[0].t, 0.95)
        self.assertEqual(st["last_run_stats"]["records_in"], 13, st)
        self.assertStoredEqualsSource(sales, evs)

        # the same with one attempt too few: the run fails and says what happened last
        base, ep, sp, evs, sales = self.source(10)
        self.fs.inject(sp, [("status", 503, {"Retry-After": "0"}), ("truncate",), ("close",)])
        cid = self.admin.add("rest_pull", self.settings(ep, sp, max_attempts=3))
        st = self.run_failed(cid)
        self.assertIn("sales page after cursor '' failed after 3 attempt(s)", st["last_error"])
        self.assertEqual(st["cursor"], {"events": encode_token(3)}, st)

    def test_timeout_is_retried(self):
        base, ep, sp, evs, sales = self.source(10)
        self.fs.inject(sp, [("sleep", 2.5 * T)])
        cid = self.admin.add("rest_pull", self.settings(ep, sp, timeout_seconds=1))
        st = self.run_ok(cid)
        reqs = self.fs.requests(sp)
        self.assertEqual(reqs[0].fault, ("sleep", 2.5 * T))
        self.assertEqual(reqs[0].query.get("cursor"), reqs[1].query.get("cursor"))
        self.assertGreaterEqual(reqs[1].t - reqs[0].t, 0.95)
        self.assertLess(reqs[1].t - reqs[0].t, 2.4 * T)  # did not wait for the slow answer
        self.assertEqual(st["last_run_stats"]["records_in"], 13, st)
        self.assertStoredEqualsSource(sales, evs)

    def test_all_attempts_fail_then_resume(self):
        base, ep, sp, evs, sales = self.source(120)
        tok50 = encode_token(50)
        # page 2 fails three times: HTTP 500
        self.fs.inject(sp, [("sleep", 0)] + [("status", 500)] * 3)
        cid = self.admin.add("rest_pull", self.settings(ep, sp, page_size=50, max_attempts=3))
        st = self.run_failed(cid)
        self.assertIn("sales page after cursor '%s'" % tok50, st["last_error"])
        self.assertIn("HTTP 500 after 3 attempt(s)", st["last_error"])
        self.assertEqual(self.cursors(sp), [None, tok50, tok50, tok50])
        self.assertEqual(st["cursor"]["sales"], tok50, st)
        self.assertEqual(st["records_in"], 53, st)
        self.assertEqual(len(stored(self.api, "sales", "invoice_number",
                                    {s["invoice_number"] for s in sales})), 50)
        self.assertStoredEqualsSource(sales[:50], evs)

        # again, the connection is reset every time: the transport error is named
        self.fs.inject(sp, [("reset",)] * 3)
        n = len(self.fs.requests(sp))
        st = self.run_failed(cid)
        self.assertEqual(self.cursors(sp, n), [tok50] * 3)
        self.assertIn("sales page after cursor '%s' failed after 3 attempt(s)" % tok50,
                      st["last_error"])
        self.assertEqual(st["cursor"]["sales"], tok50, st)

        # the source recovers: the run resumes from the committed cursor and completes
        n = len(self.fs.requests(sp))
        st = self.run_ok(cid)
        self.assertEqual(self.cursors(sp, n), [tok50, encode_token(100), encode_token(120)])
        self.assertEqual(st["last_run_stats"]["records_in"], 70, st)
        self.assertEqual(st["records_in"], 123, st)
        self.assertIsNone(st["last_error"], st)
        self.assertStoredEqualsSource(sales, evs)

    def test_reject_page_then_fix(self):
        base, ep, sp, evs, sales = self.source(150)
        tok50 = encode_token(50)

        def serve(rec70):
            self.fs.add_collection(sp, sales[:70] + [rec70] + sales[71:],
                                   next_pointer="/next_cursor", final_next=True)
        # a value the mapping cannot convert
        serve(dict(sales[70], quantity="lots"))
        cid = self.admin.add("rest_pull", self.settings(ep, sp, page_size=50))
        st = self.run_failed(cid)
        self.assertIn("sales page after cursor '%s' refused" % tok50, st["last_error"])
        self.assertIn("/sales/20/quantity", st["last_error"])
        self.assertIn("lots", st["last_error"])
        self.assertEqual(st["cursor"]["sales"], tok50, st)
        self.assertEqual(self.cursors(sp), [None, tok50])  # refused, not retried
        self.assertStoredEqualsSource(sales[:50], evs)
        self.assertEqual(self.api.get("sales", sales[51]["invoice_number"]).status, 404)

        # the source fixes that but the record names an event the hub does not know
        serve(dict(sales[70], event_id=uid("NOEVENT")))
        st = self.run_failed(cid)
        self.assertIn("sales page after cursor '%s' refused, nothing of it stored" % tok50,
                      st["last_error"])
        self.assertIn("/sales/20/event_id", st["last_error"])
        self.assertEqual(st["cursor"]["sales"], tok50, st)
        self.assertStoredEqualsSource(sales[:50], evs)

        # the record is fixed in the source: the next run takes page 2 from the same cursor
        serve(sales[70])
        st = self.run_ok(cid)
        self.assertEqual(self.cursors(sp)[3:], [tok50, encode_token(100), encode_token(150)])
        self.assertEqual(st["records_in"], 153, st)
        self.assertStoredEqualsSource(sales, evs)

    def test_skip_records_policy(self):
        # one bad record on page 1 (the mapping refuses it), one on page 2 (the store does)
        base, ep, sp, evs, sales = self.source(40)
        bad1 = dict(sales[5], quantity="lots")
        bad2 = dict(sales[25], event_id=uid("NOEVENT"))
        self.fs.add_collection(sp, sales[:5] + [bad1] + sales[6:25] + [bad2] + sales[26:],
                               next_pointer="/next_cursor", final_next=True)
        cid = self.admin.add("rest_pull", self.settings(ep, sp, page_size=20,
                                                        policy="skip_records"))
        st = self.run_ok(cid)
        self.assertIsNone(st["last_error"], st)
        self.assertIn("2 record(s) skipped", st["last_warning"])
        self.assertIn("/sales/5/quantity", st["last_warning"])  # the first one
        self.assertIn("after cursor ''", st["last_warning"])    # on the first page
        self.assertEqual(st["last_run_stats"]["records_rejected"], 2, st)
        self.assertEqual(st["last_run_stats"]["records_in"], 41, st)
        self.assertEqual(st["cursor"]["sales"], encode_token(40), st)
        self.assertStoredEqualsSource(sales[:5] + sales[6:25] + sales[26:], evs)
        for s in (sales[5], sales[25]):
            self.assertEqual(self.api.get("sales", s["invoice_number"]).status, 404)

    def test_unauthorized_and_wrong_shape(self):
        base, ep, sp, evs, sales = self.source(5)
        cid = self.admin.add("rest_pull", self.settings(ep, sp, auth_header="Bearer nope"))
        st = self.run_failed(cid)
        self.assertIn("events page after cursor ''", st["last_error"])
        self.assertIn("HTTP 401 after 1 attempt(s)", st["last_error"])  # not retried
        self.assertNotIn("nope", st["last_error"])
        self.assertEqual(len(self.fs.requests(ep)), 1)
        self.assertEqual(self.fs.requests(sp), [])  # sales wait for their events
        self.assertIsNone(st["cursor"], st)

        # the records are not where the settings say
        cid = self.admin.add("rest_pull", self.settings(ep, sp, records_pointer="/items"))
        st = self.run_failed(cid)
        self.assertIn("events page has no records array at '/items'", st["last_error"])
        self.assertEqual(self.api.get("events", evs[0]["event_id"]).status, 404)


# ---------------------------------------------------------------------------------------------
# a crash in the middle of a paged pull


class Crash(PullCase):
    def test_kill_during_pull_then_restart(self):
        data = harness.tempdir(self, prefix="sd-e2e-rest-crash-")
        harness.tenant_create(data, CLIENT)
        key = harness.key_create(data, CLIENT, "test")
        server = harness.Server(data)
        self.addCleanup(server.kill)
        server.start()
        admin = Admin(server, CLIENT)
        self.api = server.api(CLIENT, key)

        base, ep, sp, evs, sales = self.source(400, n_events=5)
        pages = 400 // 25 + 1
        self.fs.inject(sp, [("sleep", 0.25)] * pages)
        cid = admin.add("rest_pull", self.settings(ep, sp, page_size=25))
        admin.start(cid)
        # wait until some pages are stored (the committed total moves with each page)
        harness.wait_until(lambda: (admin.status(cid)["records_in"] or 0) >= 5 + 75,
                           20 * T, what="three pages committed")
        self.assertEqual(admin.status(cid)["state"], "running")
        server.kill()
        answered = [r.query.get("cursor") for r in self.fs.requests(sp) if r.status == 200]
        self.assertLess(len(answered), pages, "the pull ended before the kill")
        self.fs.clear_faults(sp)

        # count the requests before the restart: the interrupted run is due at once and may
        # have fetched its first page before start() returns
        n = len(self.fs.requests(sp))
        server2 = harness.Server(data)
        self.addCleanup(server2.kill)
        server2.start()
        admin2 = Admin(server2, CLIENT)
        self.api = server2.api(CLIENT, key)
        # the interrupted run is due again at start; ask for one more run anyway
        admin2.start(cid)

        def complete():
            st = admin2.status(cid)
            return st if st["state"] == "ok" and st["cursor"]["sales"] == encode_token(400) \
                else None
        st = harness.wait_until(complete, RUN_TIMEOUT, what="the pull to complete")
        after = [r.query.get("cursor") for r in self.fs.requests(sp)[n:]]
        # resumed from a cursor committed before the kill, not from the beginning
        self.assertIsNotNone(after[0], after)
        self.assertIn(after[0], answered[1:] + [encode_token(25 * len(answered))])
        self.assertStoredEqualsSource(sales, evs)
        got = stored(self.api, "sales", "invoice_number")
        self.assertEqual(len(got), 400)
        self.assertEqual(st["records_in"], 405, st)
        harness.wait_until(lambda: admin2.status(cid)["state"] == "ok", RUN_TIMEOUT)
        self.assertEqual(server2.stop(), 0, server2.diagnostics())

    def test_sigterm_during_slow_page(self):
        # SIGTERM while a page is being fetched from a source that answers after 20 s (the
        # request timeout is 30 s): the hub stops at once, the run is marked failed, the cursor
        # stays, and the next run completes from it.
        data = harness.tempdir(self, prefix="sd-e2e-rest-term-")
        harness.tenant_create(data, CLIENT)
        key = harness.key_create(data, CLIENT, "test")
        server = harness.Server(data)
        self.addCleanup(server.kill)
        server.start()
        admin = Admin(server, CLIENT)
        base, ep, sp, evs, sales = self.source(100)
        self.fs.inject(sp, [("sleep", 0), ("sleep", 20)])
        cid = admin.add("rest_pull", self.settings(ep, sp, page_size=40, timeout_seconds=30))
        admin.start(cid)
        self.fs.wait_requests(2, sp, answered=False, timeout=20 * T)
        harness.wait_until(lambda: (admin.status(cid).get("progress") or 0) >= 40, 10 * T,
                           what="the first page read")
        t0 = time.monotonic()
        rc = server.stop()
        self.assertEqual(rc, 0, server.diagnostics())
        self.assertLess(time.monotonic() - t0, 5 * T, "shutdown waited for the slow answer")

        server2 = harness.Server(data)
        self.addCleanup(server2.kill)
        server2.start()
        admin2 = Admin(server2, CLIENT)
        self.api = server2.api(CLIENT, key)
        st = admin2.status(cid)
        self.assertEqual(st["state"], "failed", st)
        self.assertIn("stopped", st["last_error"])
        self.assertIn("after cursor '%s'" % encode_token(40), st["last_error"])
        self.assertEqual(st["cursor"]["sales"], encode_token(40), st)
        self.fs.clear_faults(sp)
        n = len(self.fs.requests(sp))
        st = admin2.run(cid, fs=self.fs)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(self.cursors(sp, n), [encode_token(40), encode_token(80),
                                               encode_token(100)])
        self.assertStoredEqualsSource(sales, evs)
        self.assertEqual(server2.stop(), 0, server2.diagnostics())


# ---------------------------------------------------------------------------------------------
# hub-to-hub replication through stagedoor's own read API


class HubToHub(unittest.TestCase):
    CID = "opera"

    def hub(self, name):
        data = harness.tempdir(self, prefix="sd-e2e-hub%s-" % name)
        harness.tenant_create(data, self.CID)
        key = harness.key_create(data, self.CID, "test")
        server = harness.Server(data)
        self.addCleanup(server.kill)
        server.start()
        return server, server.api(self.CID, key), key

    def assertReplicated(self, a, b):
        for kind, idf in (("events", "event_id"), ("customers", "customer_id"),
                          ("sales", "invoice_number")):
            da, db = stored(a, kind, idf), stored(b, kind, idf)
            self.assertEqual(sorted(db), sorted(da), "%s ids differ" % kind)
            for rid in da:
                if kind == "customers":  # each hub shows its own source label
                    self.assertEqual(da[rid].pop("source"), "webhook")
                    self.assertEqual(db[rid].pop("source"), "rest_pull")
                self.assertEqual(db[rid], da[rid], "%s %s differs" % (kind, rid))

    def test_replicate_then_catch_up(self):
        server_a, a, key_a = self.hub("A")
        server_b, b, _ = self.hub("B")
        evs = [event(uid("HEV")) for _ in range(4)]
        cus = [customer(uid("HCU"), first_name="Jane", last_name="Doe") for _ in range(9)]
        sales = [sale(uid("HINV"), event_id=evs[i % 4]["event_id"],
                      customer_id=cus[i % 9]["customer_id"] if i % 3 else "ANON")
                 for i in range(30)]
        self.assertEqual(a.ingest({"events": evs, "customers": cus}).status, 202)
        self.assertEqual(a.ingest({"sales": sales[:15]}).status, 202)
        self.assertEqual(a.ingest({"sales": sales[15:]}).status, 202)

        admin_b = Admin(server_b, self.CID)
        cid = admin_b.add("rest_pull", {
            "base_url": "http://127.0.0.1:%d" % server_a.port,
            "events_path": "/v1/%s/events" % self.CID,
            "customers_path": "/v1/%s/customers" % self.CID,
            "sales_path": "/v1/%s/sales" % self.CID,
            "auth_header": "Bearer " + key_a,
            "records_pointer": "/data", "next_pointer": "/next_cursor",
            "more_pointer": "/has_more", "page_size": 7,
            "timeout_seconds": 5, "retry_initial_ms": 50})
        st = admin_b.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(st["last_run_stats"]["records_in"], 4 + 9 + 30, st)
        self.assertReplicated(a, b)
        for kind in ("events", "customers", "sales"):
            self.assertEqual(st["cursor"][kind], a.list_all(kind)[1], kind)

        # more on A: new records, an updated customer, an updated event, a changed sale
        evs2 = [event(uid("HEV")) for _ in range(2)]
        cu_upd = dict(cus[1], first_name="Janet", street="Main St 12A")
        ev_upd = dict(evs[0], capacity=999)
        cus2 = [customer(uid("HCU"))]
        sales2 = [sale(uid("HINV"), event_id=evs2[i % 2]["event_id"],
                       customer_id=cus2[0]["customer_id"] if i % 2 else cu_upd["customer_id"])
                  for i in range(10)]
        self.assertEqual(a.ingest({"events": evs2 + [ev_upd],
                                   "customers": cus2 + [cu_upd]}).status, 202)
        self.assertEqual(a.ingest({"sales": sales2}).status, 202)
        sale_upd = dict(sales[4], sales_price="42.00")
        self.assertEqual(a.put_sale(sale_upd["invoice_number"], sale_upd).status, 200)

        st2 = admin_b.run(cid)
        self.assertEqual(st2["state"], "ok", st2)
        # only what changed on A was read: 3 events, 2 customers, 11 sales
        self.assertEqual(st2["last_run_stats"]["records_in"], 3 + 2 + 11, st2)
        self.assertReplicated(a, b)
        self.assertEqual(b.get("customers", cu_upd["customer_id"]).json["first_name"], "Janet")
        self.assertEqual(b.get("events", ev_upd["event_id"]).json["capacity"], 999)
        self.assertEqual(b.get("sales", sale_upd["invoice_number"]).json["sales_price"], "42.00")

        # nothing new on A: nothing read
        st3 = admin_b.run(cid)
        self.assertEqual(st3["last_run_stats"]["records_in"], 0, st3)
        self.assertEqual(server_b.stop(), 0, server_b.diagnostics())
        self.assertEqual(server_a.stop(), 0, server_a.diagnostics())


if __name__ == "__main__":
    harness.main()
