"""The `feed` connector end to end: a local HTTP server (fake_sources.FakeSources) serves JSON and
XML feeds with ETag/Last-Modified and injected faults; one `stagedoor serve` fetches them through
connectors configured over the admin API, and what it stored is read back over the read API.

Covered: a JSON feed in the ingest body's shape (stored; an unchanged feed costs one request
answered 304 with If-None-Match; a feed without ETag uses If-Modified-Since; a changed feed
updates the one changed sale and leaves the identical ones untouched), JSON of another shape
through records_pointer + mapping, XML events (attributes and child elements) and XML sales
through an XPath + mapping; malformed feeds (truncated JSON, billion laughs, XXE, tag mismatch,
an invalid record, one the store refuses in a later chunk of a 2500-record feed) refused whole
with a precise last_error, and the invalid record skipped under skip_records (the warning points
into the feed, not into a chunk); retries (500 twice with growing back-off, 429 with
Retry-After, truncated/reset/closed answers, a timeout, a permanent 503), max_bytes, and the
auth header (sent, redacted in the view, 401 not retried).

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import json
import re
import tempfile
import time
import unittest

import harness
from fake_sources import FakeSources
from harness import customer, event, sale, uid

T = harness.TIME_SCALE
RUN_TIMEOUT = 30.0 * T
CLIENT = "feeds"


# ---------------------------------------------------------------------------------------------
# admin helpers


class Admin:
    """Connectors of one tenant over the admin API."""

    def __init__(self, server, client_id):
        self.server = server
        self.client_id = client_id
        with open(server.data_dir + "/admin.token") as f:
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

    def view(self, cid):
        r = self.req("GET", "/" + cid)
        if r.status != 200:
            raise AssertionError("GET connector %s -> %r" % (cid, r))
        return r.json

    def status(self, cid):
        return self.view(cid)["status"]

    def patch(self, cid, body):
        r = self.req("PATCH", "/" + cid, body)
        if r.status != 200:
            raise AssertionError("PATCH connector %s -> %r" % (cid, r))
        return r.json

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
        r = self.req("POST", "/%s/run" % cid)
        if r.status != 202:
            raise AssertionError("run %s -> %r" % (cid, r))
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


class NoETagSources(FakeSources):
    """FakeSources whose feeds in `no_etag` answer with Last-Modified only (no ETag), like a
    plain file server without entity tags."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.no_etag = set()

    def _feed_answer(self, f, req):
        status, headers, body = super()._feed_answer(f, req)
        if req.path in self.no_etag:
            headers.pop("ETag", None)
        return status, headers, body


# ---------------------------------------------------------------------------------------------
# fixture: one hub and one source for the module


class Fixture:
    pass


def setUpModule():
    d = tempfile.TemporaryDirectory(prefix="sd-e2e-feed-")
    unittest.addModuleCleanup(d.cleanup)
    Fixture.data = d.name
    harness.tenant_create(Fixture.data, CLIENT)
    Fixture.key = harness.key_create(Fixture.data, CLIENT, "test")
    Fixture.server = harness.Server(Fixture.data)
    unittest.addModuleCleanup(Fixture.server.kill)
    Fixture.server.start()
    Fixture.fs = NoETagSources().start()
    unittest.addModuleCleanup(Fixture.fs.stop)
    Fixture.admin = Admin(Fixture.server, CLIENT)
    Fixture.api = Fixture.server.api(CLIENT, Fixture.key)


def tearDownModule():
    Fixture.fs.stop()
    rc = Fixture.server.stop()
    if rc != 0:
        raise AssertionError("server exit code %r after SIGTERM\n%s"
                             % (rc, Fixture.server.diagnostics()))


class FeedCase(unittest.TestCase):
    def setUp(self):
        self.fs = Fixture.fs
        self.admin = Fixture.admin
        self.api = Fixture.api

    # -- helpers
    def feed(self, body, content_type="application/json", name="feed"):
        """Serve body at a new path; returns (path, url)."""
        path = "/%s/%s" % (uid(name), "feed.json" if "json" in content_type else "feed.xml")
        self.fs.add_feed(path, body, content_type)
        return path, self.fs.address(path)

    def settings(self, url, **kw):
        s = {"url": url, "timeout_seconds": 2, "retry_initial_ms": 50, "max_attempts": 3}
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

    def get(self, kind, rid):
        r = self.api.get(kind, rid)
        self.assertEqual(r.status, 200, "%s/%s should be stored: %r" % (kind, rid, r))
        return r.json

    def absent(self, kind, rid):
        r = self.api.get(kind, rid)
        self.assertEqual(r.status, 404, "%s/%s should not be stored: %r" % (kind, rid, r))

    def counts(self):
        return {k: len(self.api.list_all(k)[0]) for k in ("events", "customers", "sales")}

    def cursor_now(self, kind):
        """The read API's change cursor at this moment (everything stored so far is before it)."""
        return self.api.list_all(kind)[1]

    def changed_since(self, kind, cursor):
        """Records of kind created or changed after the read-API cursor (change order)."""
        out, c = [], cursor
        while True:
            q = "limit=1000" + ("&cursor=" + c if c else "")
            r = self.api.get(kind, query=q)
            self.assertEqual(r.status, 200, r)
            out.extend(r.json["data"])
            c = r.json["next_cursor"]
            if not r.json["has_more"]:
                return out

    def ingest_event(self):
        ev = event(uid("FEV"))
        r = self.api.ingest({"events": [ev]})
        self.assertEqual(r.status, 202, r)
        return ev


# ---------------------------------------------------------------------------------------------
# JSON feeds in the ingest shape: store, 304, If-Modified-Since, upsert


class IngestShape(FeedCase):
    def test_store_then_304_then_changed_sale(self):
        evs = [event(uid("IEV")) for _ in range(2)]
        cus = [customer(uid("ICU")) for _ in range(2)]
        sales = [sale(uid("IINV"), event_id=evs[i % 2]["event_id"],
                      customer_id=cus[i % 2]["customer_id"] if i % 3 else "ANON")
                 for i in range(5)]
        doc = {"events": evs, "customers": cus, "sales": sales}
        path, url = self.feed(json.dumps(doc))
        cid = self.admin.add("feed", self.settings(url), schedule="manual")

        # first run: everything stored, the validators' view of the records
        st = self.run_ok(cid)
        self.assertEqual(st["records_in"], 9, st)
        self.assertEqual(st["last_run_stats"]["records_in"], 9, st)
        self.assertIsNone(st["last_warning"], st)
        for e in evs:
            self.assertEqual(self.get("events", e["event_id"])["title"], "Otello")
        for c in cus:
            self.assertEqual(self.get("customers", c["customer_id"])["email"], c["email"])
        for s in sales:
            got = self.get("sales", s["invoice_number"])
            self.assertEqual((got["event_id"], got["customer_id"], got["sales_price"]),
                             (s["event_id"], s["customer_id"], "89.00"))
        info = self.fs.feed_info(path)
        self.assertEqual(st["cursor"]["etag"], info["etag"], st)
        self.assertEqual(self.fs.feed_stats(path), {200: 1, 304: 0})
        first = self.fs.requests(path)
        self.assertEqual(len(first), 1, first)
        self.assertIsNone(first[0].header("If-None-Match"), first[0].headers)

        # second run, feed unchanged: exactly one request, answered 304, nothing stored
        mark = self.cursor_now("sales")
        st2 = self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual(len(reqs), 2, reqs)
        self.assertEqual(reqs[1].status, 304, reqs)
        self.assertEqual(reqs[1].header("If-None-Match"), info["etag"], reqs[1].headers)
        self.assertEqual(self.fs.feed_stats(path), {200: 1, 304: 1})
        self.assertEqual(st2["records_in"], 9, st2)
        self.assertEqual(st2["last_run_stats"]["records_in"], 0, st2)
        self.assertEqual(self.changed_since("sales", mark), [])

        # the feed changes: one sale's price; the others are byte-identical
        changed = dict(sales[2], sales_price="120.50")
        doc2 = {"events": evs, "customers": cus,
                "sales": sales[:2] + [changed] + sales[3:]}
        self.fs.set_feed(path, json.dumps(doc2))
        mark_sales = self.cursor_now("sales")
        st3 = self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual(len(reqs), 3, reqs)
        self.assertEqual(reqs[2].header("If-None-Match"), info["etag"])  # the old tag
        self.assertEqual(reqs[2].status, 200)
        self.assertIsNone(st3["last_error"], st3)
        self.assertIsNone(st3["last_warning"], st3)  # identical sales are no conflict
        self.assertEqual(st3["cursor"]["etag"], self.fs.feed_info(path)["etag"], st3)
        self.assertEqual(self.get("sales", changed["invoice_number"])["sales_price"], "120.50")
        for s in sales[:2] + sales[3:]:
            self.assertEqual(self.get("sales", s["invoice_number"])["sales_price"], "89.00")
        # change order: only the changed sale was written again
        touched = [s["invoice_number"] for s in self.changed_since("sales", mark_sales)]
        self.assertEqual(touched, [changed["invoice_number"]])
        self.assertEqual(st3["records_in"], 18, st3)

    def test_last_modified_only_uses_if_modified_since(self):
        ev = event(uid("LEV"))
        sales = [sale(uid("LINV"), event_id=ev["event_id"]) for _ in range(3)]
        body = json.dumps({"events": [ev], "sales": sales})
        path = "/%s/noetag.json" % uid("lm")
        self.fs.no_etag.add(path)
        self.fs.add_feed(path, body, "application/json")
        cid = self.admin.add("feed", self.settings(self.fs.address(path), format="json"))
        st = self.run_ok(cid)
        self.assertEqual(st["last_run_stats"]["records_in"], 4, st)
        self.assertIsNone(st["cursor"].get("etag"), st)
        info = self.fs.feed_info(path)
        self.assertEqual(st["cursor"]["last_modified"], info["last_modified"], st)

        st2 = self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual(len(reqs), 2, reqs)
        self.assertIsNone(reqs[1].header("If-None-Match"), reqs[1].headers)
        self.assertEqual(reqs[1].header("If-Modified-Since"), info["last_modified"])
        self.assertEqual(reqs[1].status, 304)
        self.assertEqual(self.fs.feed_stats(path), {200: 1, 304: 1})
        self.assertEqual(st2["last_run_stats"]["records_in"], 0, st2)

        # same bytes served as new (a later Last-Modified): fetched, hashed, nothing stored
        mark = self.cursor_now("sales")
        self.fs.set_feed(path, body, last_modified=info["last_modified_ts"] + 10)
        st3 = self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual(reqs[-1].status, 200, reqs)
        self.assertEqual(st3["last_run_stats"]["records_in"], 0, st3)
        self.assertEqual(self.changed_since("sales", mark), [])
        # the new Last-Modified is kept, so the run after that is a 304 again
        new_lm = self.fs.feed_info(path)["last_modified"]
        self.assertEqual(st3["cursor"]["last_modified"], new_lm, st3)
        st4 = self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual(len(reqs), 4, reqs)
        self.assertEqual(reqs[3].header("If-Modified-Since"), new_lm)
        self.assertEqual(reqs[3].status, 304)
        self.assertEqual(st4["records_in"], 4, st4)


# ---------------------------------------------------------------------------------------------
# other shapes: records_pointer + mapping, XML events, XML sales


class OtherShapes(FeedCase):
    def test_json_records_pointer_and_mapping(self):
        ev = self.ingest_event()
        invs = [uid("RINV") for _ in range(3)]
        items = [
            {"Rechnung": invs[0], "EventNo": ev["event_id"], "Kunde": "ANON",
             "Kaufdatum": "15.04.2025 13:08:42", "TicketType": "Abo", "Anzahl": "2",
             "PriceGross": "1.089,50"},
            {"Rechnung": invs[1], "EventNo": ev["event_id"], "Kunde": "ANON",
             "Kaufdatum": "16.04.2025 09:00:00", "TicketType": "Freikarte", "Anzahl": 1,
             "PriceGross": "0,00"},
            {"Rechnung": invs[2], "EventNo": ev["event_id"], "Kunde": "ANON",
             "Kaufdatum": "17.04.2025 20:15:00", "TicketType": "VIP", "Anzahl": "4",
             "PriceGross": "250,00", "Intern": "x"},
        ]
        doc = {"meta": {"count": 3}, "result": {"items": items}}
        _, url = self.feed(json.dumps(doc))
        mapping = {
            "fields": {"Rechnung": "invoice_number", "EventNo": "event_id",
                       "Kunde": "customer_id", "Kaufdatum": "purchase_datetime",
                       "TicketType": "ticket_category", "Anzahl": "quantity",
                       "PriceGross": "sales_price"},
            "values": {"ticket_category": {"Abo": "subscription", "Freikarte": "comp"}},
            "constants": {"currency": "EUR"},
            "formats": {"datetime": "DD.MM.YYYY HH:mm:ss", "utc_offset": "+02:00",
                        "decimal_comma": True},
            "unmapped": "drop",
        }
        cid = self.admin.add("feed", self.settings(url, kind="sales",
                                                   records_pointer="/result/items"), mapping)
        st = self.run_ok(cid)
        self.assertEqual(st["last_run_stats"]["records_in"], 3, st)
        a, b, c = (self.get("sales", i) for i in invs)
        self.assertEqual((a["ticket_category"], a["quantity"], a["sales_price"], a["currency"]),
                         ("subscription", 2, "1089.50", "EUR"))
        self.assertEqual(a["event_id"], ev["event_id"])
        self.assertIn(a["purchase_datetime"], ("2025-04-15T13:08:42+02:00",
                                               "2025-04-15T11:08:42Z"))
        self.assertEqual((b["ticket_category"], b["quantity"], b["sales_price"]),
                         ("comp", 1, "0.00"))
        self.assertEqual((c["ticket_category"], c["quantity"], c["sales_price"]),
                         ("VIP", 4, "250.00"))
        self.assertNotIn("Intern", c)
        self.assertNotIn("Rechnung", c)

    def test_json_records_pointer_missing(self):
        _, url = self.feed(json.dumps({"result": {"rows": []}}))
        cid = self.admin.add("feed", self.settings(url, kind="sales",
                                                   records_pointer="/result/items"))
        st = self.run_failed(cid)
        self.assertIn("JSON feed refused", st["last_error"])
        self.assertIn("items", st["last_error"])

    def test_xml_events_attributes_and_children(self):
        ids = [uid("XEV") for _ in range(3)]
        rows = []
        for i, eid in enumerate(ids):
            rows.append(
                '  <Veranstaltung EventNo="%s" Saal="Saal %s">\n'
                '    <Titel>Tosca &amp; Co</Titel>\n'
                '    <EventDate>0%d.11.2025</EventDate>\n'
                '    <EventTime>19:30</EventTime>\n'
                '    <Ort><Haus>Staatsoper</Haus><Stadt>Hamburg</Stadt></Ort>\n'
                '    <Haus>Staatsoper</Haus><Stadt>Hamburg</Stadt>\n'
                '    <Plaetze>%d</Plaetze>\n'
                '    <!-- a comment is ignored -->\n'
                '    <Komponist><![CDATA[Puccini]]></Komponist>\n'
                '  </Veranstaltung>\n' % (eid, eid, i + 1, 1000 + i))
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Export erstellt="2025-10-01">\n'
               '<Kopf><Quelle>Kasse</Quelle></Kopf>\n<Veranstaltungen>\n%s</Veranstaltungen>\n'
               '</Export>\n' % "".join(rows))
        path, url = self.feed(xml, "application/xml; charset=utf-8", name="xmlev")
        mapping = {"fields": {"EventNo": "event_id", "Saal": "hall", "Titel": "title",
                              "EventDate": "date", "EventTime": "time", "Haus": "venue",
                              "Stadt": "city", "Plaetze": "capacity",
                              "Komponist": "composer"},
                   "formats": {"date": "DD.MM.YYYY", "time": "HH:mm"},
                   "unmapped": "drop"}
        cid = self.admin.add("feed", self.settings(
            url, kind="events", xpath="/Export/Veranstaltungen/Veranstaltung"), mapping)
        st = self.run_ok(cid)
        self.assertEqual(st["last_run_stats"]["records_in"], 3, st)
        self.assertIsNone(st["last_warning"], st)
        for i, eid in enumerate(ids):
            e = self.get("events", eid)
            self.assertEqual(e["title"], "Tosca & Co", e)
            self.assertEqual(e["date"], "2025-11-0%d" % (i + 1), e)
            self.assertEqual(e["time"], "19:30:00", e)
            self.assertEqual(e["hall"], "Saal " + eid, e)
            self.assertEqual((e["venue"], e["city"], e["capacity"]),
                             ("Staatsoper", "Hamburg", 1000 + i), e)
            self.assertNotIn("Ort", e)
        # unchanged: 304
        self.run_ok(cid)
        self.assertEqual(self.fs.feed_stats(path), {200: 1, 304: 1})

    def test_xml_sales_cheat_sheet(self):
        ev = self.ingest_event()
        # a sale's customer is one of its own source: the customer arrives by a feed too
        cu = customer(uid("XCU"))
        _, url = self.feed(json.dumps({"customers": [cu]}))
        self.run_ok(self.admin.add("feed", self.settings(url)))
        invs = [uid("XINV") for _ in range(4)]
        kinds = ["Normal", "VIP", "Abo", "Freikarte"]
        rows = "".join(
            '<s:Sale invoice_number="%s">'
            '<EventNo>%s</EventNo><customer_id>%s</customer_id>'
            '<purchase_datetime>2025-04-1%dT10:00:00Z</purchase_datetime>'
            '<TicketType>%s</TicketType><quantity>%d</quantity>'
            '<PriceGross>%d.50</PriceGross><currency>EUR</currency></s:Sale>\n'
            % (inv, ev["event_id"], cu["customer_id"] if i % 2 else "ANON", i, kinds[i], i + 1,
               10 * (i + 1))
            for i, inv in enumerate(invs))
        xml = ('<?xml version="1.0"?>\n<s:Sales xmlns:s="urn:example:box">\n%s</s:Sales>\n'
               % rows)
        _, url = self.feed(xml, "text/xml", name="xmlsales")
        mapping = {"fields": {"EventNo": "event_id", "EventDate": "date",
                              "EventTime": "time", "TicketType": "ticket_category",
                              "PriceGross": "sales_price"},
                   "values": {"ticket_category": {"Normal": "regular", "Abo": "subscription",
                                                  "Freikarte": "comp"}}}
        # the default xpath /*/* picks the sales
        cid = self.admin.add("feed", self.settings(url, kind="sales", format="auto"), mapping)
        st = self.run_ok(cid)
        self.assertEqual(st["last_run_stats"]["records_in"], 4, st)
        want = ["regular", "VIP", "subscription", "comp"]
        for i, inv in enumerate(invs):
            s = self.get("sales", inv)
            self.assertEqual(s["ticket_category"], want[i], s)
            self.assertEqual(s["quantity"], i + 1, s)
            self.assertEqual(s["sales_price"], "%d.50" % (10 * (i + 1)), s)
            self.assertEqual(s["customer_id"], cu["customer_id"] if i % 2 else "ANON", s)
            self.assertEqual(s["event_id"], ev["event_id"], s)


# ---------------------------------------------------------------------------------------------
# malformed feeds: refused whole, a precise error, nothing stored


class Malformed(FeedCase):
    def setUp(self):
        super().setUp()
        self.ev = self.ingest_event()

    def refused(self, body, content_type, kind, expect, **settings):
        """Serve body, run a reject_feed connector, expect a failed run whose last_error has
        every string of `expect`, and nothing stored."""
        _, url = self.feed(body, content_type, name="bad")
        before = self.counts()
        cid = self.admin.add("feed", self.settings(url, kind=kind, **settings))
        st = self.run_failed(cid)
        for e in expect:
            self.assertIn(e, st["last_error"], st)
        self.assertIsNone(st["last_success"], st)
        self.assertIsNone(st["cursor"], st)  # the next run fetches the feed again
        self.assertEqual(st["records_in"], 0, st)
        self.assertEqual(self.counts(), before)
        return cid, st

    def good_sales(self, n=3):
        return [sale(uid("MINV"), event_id=self.ev["event_id"]) for _ in range(n)]

    def test_truncated_json(self):
        sales = self.good_sales()
        body = json.dumps({"sales": sales})
        cut = body[:len(body) - 25]
        st = self.refused(cut, "application/json", "ingest",
                          ["feed is not valid JSON: line 1, column ", "premature end of input"])[1]
        col = int(re.search(r"column (\d+)", st["last_error"]).group(1))
        self.assertLessEqual(abs(col - len(cut)), 1, st["last_error"])
        for s in sales:
            self.absent("sales", s["invoice_number"])
        self.refused(json.dumps(self.good_sales())[:-1], "application/json", "sales",
                     ["JSON feed refused", "line 1"])

    def test_billion_laughs(self):
        ents = ['<!ENTITY lol "lol">'] + [
            '<!ENTITY lol%d "%s">' % (i, ("&lol%s;" % (i - 1 if i > 1 else "")) * 10)
            for i in range(1, 10)]
        xml = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n%s\n]>\n'
               '<Sales><Sale><invoice_number>&lol9;</invoice_number></Sale></Sales>\n'
               % "\n".join(ents))
        t0 = time.monotonic()
        self.refused(xml, "application/xml", "sales",
                     ["XML feed refused", "line 2", "DOCTYPE"])
        self.assertLess(time.monotonic() - t0, 10 * T)
        self.assertTrue(Fixture.server.running())

    def test_xxe(self):
        # an external entity naming a secret file and a URL on the fake source: neither is read
        secret_path = "/%s/secret" % uid("xxe")
        self.fs.add_feed(secret_path, "TOPSECRET", "text/plain")
        for target in ("file:///etc/hostname", self.fs.address(secret_path)):
            xml = ('<?xml version="1.0"?>\n<!DOCTYPE s [<!ENTITY xxe SYSTEM "%s">]>\n'
                   '<Sales><Sale><invoice_number>X&xxe;</invoice_number></Sale></Sales>\n'
                   % target)
            self.refused(xml, "application/xml", "sales", ["XML feed refused", "DOCTYPE"])
        # a parameter entity fetching an external DTD is refused the same way
        xml = ('<?xml version="1.0"?>\n<!DOCTYPE s [<!ENTITY %% dtd SYSTEM "%s"> %%dtd;]>\n'
               '<Sales/>\n' % self.fs.address(secret_path))
        self.refused(xml, "application/xml", "sales", ["DOCTYPE"])
        self.assertEqual(self.fs.requests(secret_path), [])

    def test_tag_mismatch(self):
        inv = uid("TMINV")
        xml = ('<?xml version="1.0"?>\n<Sales>\n<Sale><invoice_number>%s</invoice_number>\n'
               '<event_id>%s</event_id></Sael>\n</Sales>\n' % (inv, self.ev["event_id"]))
        self.refused(xml, "application/xml", "sales",
                     ["XML feed refused", "line 4", "tag mismatch", "Sale"])
        self.absent("sales", inv)

    def test_ingest_kind_with_xml(self):
        self.refused("<Sales><Sale/></Sales>", "application/xml", "ingest",
                     ["needs a JSON feed"])

    def test_invalid_record_reject_then_skip(self):
        good = self.good_sales(4)
        bad = dict(good[2], quantity="lots")
        body = json.dumps({"sales": good[:2] + [bad] + good[3:]})
        cid, st = self.refused(body, "application/json", "ingest",
                               ["1 record(s) refused", "nothing stored", "/sales/2/quantity",
                                "lots"])
        for s in good:
            self.absent("sales", s["invoice_number"])
        # a record the store refuses (unknown event) is refused whole too
        orphan = sale(uid("ORPH"), event_id=uid("NOEVENT"))
        self.refused(json.dumps({"sales": good[:1] + [orphan]}), "application/json", "ingest",
                     ["refused", "/sales/1", "nothing stored"])
        self.absent("sales", good[0]["invoice_number"])

        # the same bad record under skip_records: the others stored, the warning names it
        self.admin.patch(cid, {"settings": {"policy": "skip_records"}})
        st = self.run_ok(cid)
        self.assertIsNone(st["last_error"], st)
        self.assertIn("1 record(s) skipped", st["last_warning"])
        self.assertIn("/sales/2/quantity", st["last_warning"])
        self.assertIn("lots", st["last_warning"])
        self.assertEqual(st["last_run_stats"]["records_in"], 3, st)
        self.assertEqual(st["last_run_stats"]["records_rejected"], 1, st)
        for i, s in enumerate(good):
            if i == 2:
                self.absent("sales", s["invoice_number"])
            else:
                self.get("sales", s["invoice_number"])

    def test_large_feed_bad_record_in_a_later_chunk(self):
        # 2500 sales are stored in chunks of 1000; the one the store refuses (an unknown event)
        # is in the third. reject_feed: all or nothing across the chunks, and the error points
        # into the feed, not into the chunk.
        sales = self.good_sales(2500)
        sales[2345] = dict(sales[2345], event_id=uid("NOEVENT"))
        body = json.dumps({"sales": sales})
        cid, st = self.refused(body, "application/json", "ingest",
                               ["1 record(s) refused", "nothing stored", "/sales/2345/event_id"])
        for i in (0, 999, 1000, 2344, 2499):
            self.absent("sales", sales[i]["invoice_number"])
        # skip_records: everything else is stored; the warning names the same record
        self.admin.patch(cid, {"settings": {"policy": "skip_records"}})
        st = self.run_ok(cid)
        self.assertIn("1 record(s) skipped", st["last_warning"])
        self.assertIn("/sales/2345/event_id", st["last_warning"])
        self.assertEqual(st["last_run_stats"]["records_in"], 2499, st)
        self.assertEqual(st["last_run_stats"]["records_rejected"], 1, st)
        self.absent("sales", sales[2345]["invoice_number"])
        for i in (0, 999, 1000, 2344, 2499):
            self.get("sales", sales[i]["invoice_number"])


# ---------------------------------------------------------------------------------------------
# the source misbehaves: retries, Retry-After, a permanent error, a feed too large


class Faults(FeedCase):
    def simple_feed(self, n=2):
        ev = event(uid("REV"))
        sales = [sale(uid("RINV"), event_id=ev["event_id"]) for _ in range(n)]
        return ev, sales, json.dumps({"events": [ev], "sales": sales})

    def test_500_twice_then_200(self):
        ev, sales, body = self.simple_feed()
        path, url = self.feed(body)
        self.fs.inject(path, [("status", 500), ("status", 500)])
        cid = self.admin.add("feed", self.settings(url, retry_initial_ms=200, max_attempts=6))
        st = self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual([r.status for r in reqs], [500, 500, 200], reqs)
        gap1, gap2 = reqs[1].t - reqs[0].t, reqs[2].t - reqs[1].t
        # exponential back-off from 200 ms with jitter: the first wait is 100..200 ms, the
        # second 200..400 ms (each at least the longest the one before could be)
        self.assertGreaterEqual(gap1, 0.095, (gap1, gap2))
        self.assertGreaterEqual(gap2, 0.195, (gap1, gap2))
        self.assertGreater(gap2, gap1 - 0.02, (gap1, gap2))
        self.assertLess(gap1, 0.2 + 0.5 * T, (gap1, gap2))
        self.assertLess(gap2, 0.4 + 0.5 * T, (gap1, gap2))
        self.assertEqual(st["last_run_stats"]["records_in"], 3, st)
        self.get("events", ev["event_id"])
        for s in sales:
            self.get("sales", s["invoice_number"])

    def test_broken_answers_are_retried(self):
        ev, sales, body = self.simple_feed(30)
        path, url = self.feed(body)
        self.fs.inject(path, [("truncate",), ("reset",), ("close",)])
        cid = self.admin.add("feed", self.settings(url, max_attempts=4))
        st = self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual([r.status for r in reqs], ["truncate", "reset", "close", 200], reqs)
        self.assertEqual(st["last_run_stats"]["records_in"], 31, st)
        for s in sales:
            self.get("sales", s["invoice_number"])

    def test_429_retry_after(self):
        ev, sales, body = self.simple_feed()
        path, url = self.feed(body)
        self.fs.inject(path, [("status", 429, {"Retry-After": "1"})])
        # one attempt allowed: the 429 is flow control, not an attempt
        cid = self.admin.add("feed", self.settings(url, max_attempts=1))
        self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual([r.status for r in reqs], [429, 200], reqs)
        self.assertGreaterEqual(reqs[1].t - reqs[0].t, 0.95)
        for s in sales:
            self.get("sales", s["invoice_number"])

    def test_permanent_503(self):
        ev, sales, body = self.simple_feed()
        path, url = self.feed(body)
        self.fs.inject(path, [("status", 503)] * 10)
        cid = self.admin.add("feed", self.settings(url, max_attempts=3))
        st = self.run_failed(cid)
        reqs = self.fs.requests(path)
        self.assertEqual([r.status for r in reqs], [503, 503, 503], reqs)
        self.assertIn("HTTP 503", st["last_error"])
        self.assertIn("3 attempt(s)", st["last_error"])
        self.assertIn(url, st["last_error"])
        self.assertIsNone(st["cursor"], st)
        self.absent("events", ev["event_id"])
        # the source recovers: the next run stores the feed
        self.fs.clear_faults(path)
        self.run_ok(cid)
        self.get("events", ev["event_id"])

    def test_feed_larger_than_max_bytes(self):
        ev, sales, body = self.simple_feed(20)
        self.assertGreater(len(body), 2048)
        path, url = self.feed(body)
        cid = self.admin.add("feed", self.settings(url, max_bytes=2048))
        st = self.run_failed(cid)
        self.assertIn("larger than 2048 bytes", st["last_error"])
        self.assertEqual(len(self.fs.requests(path)), 1)  # not retried
        self.absent("events", ev["event_id"])
        # raised: stored
        self.admin.patch(cid, {"settings": {"max_bytes": 1 << 20}})
        st = self.run_ok(cid)
        self.assertEqual(st["last_run_stats"]["records_in"], 21, st)

    def test_timeout_then_success(self):
        ev, sales, body = self.simple_feed()
        path, url = self.feed(body)
        self.fs.inject(path, [("sleep", 2.5 * T)])
        cid = self.admin.add("feed", self.settings(url, timeout_seconds=1))
        st = self.run_ok(cid)
        reqs = self.fs.requests(path)
        self.assertEqual(len(reqs), 2, reqs)
        self.assertGreaterEqual(reqs[1].t - reqs[0].t, 0.95)
        self.assertEqual(st["last_run_stats"]["records_in"], 3, st)

    def test_auth_header_sent_and_redacted(self):
        ev, sales, body = self.simple_feed()
        path = "/%s/private.json" % uid("auth")
        self.fs.add_feed(path, body, "application/json", token="feed-secret")
        cid = self.admin.add("feed", self.settings(self.fs.address(path),
                                                   auth_header="Bearer feed-secret"))
        view = self.admin.view(cid)
        self.assertEqual(view["settings"]["auth_header"], "(set)")
        self.run_ok(cid)
        self.assertEqual(self.fs.requests(path)[0].header("Authorization"),
                         "Bearer feed-secret")
        self.get("events", ev["event_id"])
        # a wrong token: 401 is not retried, the error says so
        self.admin.patch(cid, {"settings": {"auth_header": "Bearer wrong"}})
        self.fs.set_feed(path, body + " ")
        n = len(self.fs.requests(path))
        st = self.run_failed(cid)
        self.assertIn("HTTP 401", st["last_error"])
        self.assertNotIn("wrong", st["last_error"])
        self.assertEqual(len(self.fs.requests(path)), n + 1)


if __name__ == "__main__":
    harness.main()
