"""Connector run history and alerts end to end: real connector runs (rest_pull against a local
fake source, fake_sources.FakeSources) leave one history row each, read back through the admin
route, the tenant's own route and the connector's last_run; alerts configured per tenant are
raised where the facts appear, deduplicated, kept in the history and delivered, signed per the
Standard Webhooks specification, to a local receiver (receiver.py).

Covered: settings (secret set-only: answers say secret_set and never show it; bad URL, bad
secret, unknown rule, a webhook without a secret are 400 with the field); a connector failing
three runs in a row raises exactly one alert, delivered once with a valid signature, not raised
again by the fourth failure, resolved by the next successful run; run history newest first
with paging (limit, before) and tenant isolation; a record-count drop (a run storing less than
half the median of the three before it) stored with delivery not_sent (no webhook); a dead
letter (a push target answering 400) raises a dead_letters alert delivered to the webhook, with
a retry after a receiver's 500; a run stopped by SIGTERM is recorded cancelled, a run cut
short by kill -9 leaves no row and the restart's resumed run is recorded with trigger
"resume"; an ingest window in which the API refused most rows raises a
rejected_share alert (the defaults of a tenant without settings).

The alert back-off is compressed with STAGEDOOR_ALERT_TIME_SCALE=0.01 (10 s → 0.1 s).

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import base64
import hashlib
import hmac
import json
import os
import tempfile
import time
import unittest

import harness
from fake_sources import FakeSources
from harness import event, sale, uid, customer
from receiver import Answer, Receiver

TS = harness.TIME_SCALE
RUN_TIMEOUT = 60.0 * TS
TOKEN = "secret-token"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
ENV = {"STAGEDOOR_ALERT_TIME_SCALE": "0.01", "STAGEDOOR_OUTBOX_TIME_SCALE": "0.001"}


def verify(secret, rec):
    """The Standard Webhooks check of a received request (what a receiver does)."""
    key = base64.b64decode(secret[len("whsec_"):])
    h = rec["headers"]
    signed = ("%s.%s." % (h["webhook-id"], h["webhook-timestamp"])).encode() + rec["raw"]
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    sigs = [s.split(",", 1)[1] for s in h["webhook-signature"].split(" ") if s.startswith("v1,")]
    return any(hmac.compare_digest(want, s) for s in sigs)


class Fixture:
    pass


def setUpModule():
    d = tempfile.TemporaryDirectory(prefix="sd-e2e-alerts-")
    unittest.addModuleCleanup(d.cleanup)
    Fixture.data = d.name
    for c in ("fails", "drops", "dead", "ingest", "other"):
        harness.tenant_create(Fixture.data, c)
    Fixture.keys = {c: harness.key_create(Fixture.data, c, "test")
                    for c in ("fails", "dead", "ingest", "other")}
    old = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    try:
        Fixture.server = harness.Server(Fixture.data)
        unittest.addModuleCleanup(Fixture.server.kill)
        Fixture.server.start()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    Fixture.fs = FakeSources().start()
    unittest.addModuleCleanup(Fixture.fs.stop)
    Fixture.rx = Receiver().start()
    unittest.addModuleCleanup(Fixture.rx.stop)
    with open(os.path.join(Fixture.data, "admin.token")) as f:
        Fixture.token = f.read().strip()


def tearDownModule():
    rc = Fixture.server.stop()
    if rc != 0:
        raise AssertionError("server exit code %r after SIGTERM\n%s"
                             % (rc, Fixture.server.diagnostics()))


class Base(unittest.TestCase):
    def setUp(self):
        self.port = Fixture.server.port
        self.fs = Fixture.fs
        self.rx = Fixture.rx

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, path, body=body, key=Fixture.token)

    def put_alerts(self, client, body, status=200):
        r = self.admin("PUT", "/admin/v1/tenants/%s/alerts" % client, body)
        self.assertEqual(r.status, status, r)
        return r

    def add_connector(self, client, settings):
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors" % client,
                       {"type": "rest_pull", "environment": "test", "schedule": "manual",
                        "settings": settings})
        self.assertEqual(r.status, 201, r)
        return r.json["connector_id"]

    def connector(self, client, cid):
        r = self.admin("GET", "/admin/v1/tenants/%s/connectors/%s" % (client, cid))
        self.assertEqual(r.status, 200, r)
        return r.json

    def runs(self, client, cid, query=""):
        r = self.admin("GET", "/admin/v1/tenants/%s/connectors/%s/runs%s" % (client, cid, query))
        self.assertEqual(r.status, 200, r)
        return r.json

    def run_now(self, client, cid):
        """Run now and wait for the run's history row; returns it."""
        before = len(self.runs(client, cid, "?limit=1000")["runs"])
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors/%s/run" % (client, cid))
        self.assertEqual(r.status, 202, r)

        def recorded():
            rs = self.runs(client, cid, "?limit=1000")["runs"]
            return rs[0] if len(rs) > before else None
        return harness.wait_until(recorded, RUN_TIMEOUT, interval=0.05,
                                  what="the run of %s to be recorded" % cid)

    def history(self, client):
        r = self.admin("GET", "/admin/v1/tenants/%s/alerts/history" % client)
        self.assertEqual(r.status, 200, r)
        return r.json["alerts"]

    def settings(self, sp, ep=None, token=TOKEN):
        s = {"base_url": self.fs.url, "auth_header": "Bearer " + token, "timeout_seconds": 2,
             "retry_initial_ms": 50, "max_attempts": 2, "sales_path": sp}
        if ep:
            s["events_path"] = ep
        return s


class Settings(Base):
    def test_put_get_secret_is_set_only_and_errors_name_the_field(self):
        base = "/admin/v1/tenants/other/alerts"
        r = self.admin("GET", base)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json["defaults"], r)
        self.assertFalse(r.json["secret_set"], r)
        self.assertIsNone(r.json["webhook_url"], r)
        self.assertEqual(r.json["rules"]["connector_failures_in_a_row"], 3, r)
        r = self.put_alerts("other", {"webhook_url": self.rx.url("/alerts/other"),
                                      "secret": SECRET,
                                      "rules": {"quota_used": 0.8, "rejected_share": False}})
        self.assertNotIn("secret", r.json)
        self.assertNotIn(SECRET, r.text)
        self.assertTrue(r.json["secret_set"], r)
        self.assertFalse(r.json["defaults"], r)
        self.assertEqual(r.json["rules"]["quota_used"], 0.8, r)
        self.assertIs(r.json["rules"]["rejected_share"], False, r)
        self.assertEqual(r.json["rules"]["record_count_drop"],
                         {"below_percent": 50, "previous_runs": 5}, r)
        # the secret left out is kept; the rules are replaced
        r = self.put_alerts("other", {"webhook_url": self.rx.url("/alerts/other")})
        self.assertTrue(r.json["secret_set"], r)
        self.assertEqual(r.json["rules"]["quota_used"], 0.9, r)
        r = self.admin("GET", base)
        self.assertNotIn(SECRET, r.text)
        bad = [({"webhook_url": "ftp://x/"}, "/webhook_url"),
               ({"webhook_url": "http://example.com/hook"}, "/webhook_url"),
               ({"webhook_url": "https://169.254.169.254/latest"}, "/webhook_url"),
               ({"webhook_url": None, "secret": "not-a-secret"}, "/secret"),
               ({"webhook_url": None, "secret": "whsec_" + base64.b64encode(b"short").decode()},
                "/secret"),
               ({"rules": {"bogus": 1}}, "/rules"),
               ({"rules": {"record_count_drop": {"below_percent": 50, "previous_runs": 2}}},
                "/rules/record_count_drop"),
               ({"rules": {"rejected_share": 1.5}}, "/rules/rejected_share"),
               ({"rules": {"connector_failures_in_a_row": 0}},
                "/rules/connector_failures_in_a_row")]
        for body, field in bad:
            r = self.admin("PUT", base, body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(field, json.dumps(r.json), (body, r))
        # a webhook needs a secret: removing it while a URL stays is refused
        r = self.admin("PUT", base, {"webhook_url": self.rx.url("/x"), "secret": None})
        self.assertEqual(r.status, 400, r)
        self.assertIn("/secret", json.dumps(r.json), r)
        r = self.admin("PUT", "/admin/v1/tenants/nobody/alerts", {"webhook_url": None})
        self.assertEqual(r.status, 404, r)
        r = harness.http(self.port, "GET", base, key=Fixture.keys["other"])
        self.assertIn(r.status, (401, 403), r)


class Failures(Base):
    def test_three_failures_one_signed_alert_history_and_resolve(self):
        path = "/alerts/fails"
        self.put_alerts("fails", {"webhook_url": self.rx.url(path), "secret": SECRET,
                                  "rules": {"connector_failures_in_a_row": 3}})
        sp = "/" + uid("fsrc") + "/sales"
        self.fs.add_collection(sp, [], next_pointer="/next_cursor")
        cid = self.add_connector("fails", self.settings(sp, token="wrong-token"))
        self.assertIsNone(self.connector("fails", cid)["last_run"])
        for i in range(3):
            run = self.run_now("fails", cid)
            self.assertEqual(run["status"], "failed", run)
            self.assertIn("401", run["error"], run)
            self.assertEqual(run["trigger"], "run_now", run)
            self.assertEqual(run["records_in"], 0, run)
            self.assertFalse(run["dry_run"], run)
            if i < 2:
                time.sleep(0.3)
                self.assertEqual(self.rx.received(path), [], "an alert before the third failure")
        got = self.rx.wait_for(path, 1, 20 * TS)
        self.assertEqual(len(got), 1, got)
        rec = got[0]
        self.assertTrue(verify(SECRET, rec), rec["headers"])
        self.assertTrue(rec["headers"]["webhook-id"].startswith("alr_"), rec["headers"])
        self.assertLess(abs(int(rec["headers"]["webhook-timestamp"]) - time.time()), 300)
        body = rec["body"]
        self.assertEqual(body["type"], "alert.connector_failures_in_a_row", body)
        self.assertEqual(body["data"]["subject"], cid, body)
        self.assertEqual(body["data"]["client_id"], "fails", body)
        self.assertEqual(body["data"]["facts"]["failed_runs"], 3, body)
        self.assertEqual(body["data"]["alert_id"], rec["headers"]["webhook-id"])
        # a tampered body no longer verifies
        forged = dict(rec, raw=rec["raw"].replace(cid.encode(), b"con_0000000000000000"))
        self.assertFalse(verify(SECRET, forged))

        # the fourth failure opens nothing new
        self.run_now("fails", cid)
        time.sleep(0.5)
        self.assertEqual(len(self.rx.received(path)), 1)
        hist = self.history("fails")
        self.assertEqual([a["rule"] for a in hist], ["connector_failures_in_a_row"], hist)
        self.assertTrue(hist[0]["open"], hist)
        self.assertEqual(hist[0]["delivery"]["state"], "delivered", hist)
        self.assertEqual(hist[0]["delivery"]["attempts"], 1, hist)

        # history: newest first, paged, the connector's last_run, the tenant's own route
        all_runs = self.runs("fails", cid)
        self.assertEqual(len(all_runs["runs"]), 4, all_runs)
        self.assertIsNone(all_runs["next_before"])
        starts = [r["started_at"] for r in all_runs["runs"]]
        self.assertEqual(starts, sorted(starts, reverse=True))
        page = self.runs("fails", cid, "?limit=3")
        self.assertEqual([r["run_id"] for r in page["runs"]],
                         [r["run_id"] for r in all_runs["runs"][:3]])
        rest = self.runs("fails", cid, "?limit=3&before=%d" % page["next_before"])
        self.assertEqual([r["run_id"] for r in rest["runs"]], [all_runs["runs"][3]["run_id"]])
        self.assertIsNone(rest["next_before"])
        self.assertEqual(self.connector("fails", cid)["last_run"]["run_id"],
                         all_runs["runs"][0]["run_id"])
        r = harness.http(self.port, "GET", "/v1/fails/connectors/%s/runs?limit=2" % cid,
                         key=Fixture.keys["fails"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["runs"]), 2, r)
        r = harness.http(self.port, "GET", "/v1/other/connectors/%s/runs" % cid,
                         key=Fixture.keys["other"])
        self.assertEqual(r.status, 404, r)
        r = self.admin("GET", "/admin/v1/tenants/other/connectors/%s/runs" % cid)
        self.assertEqual(r.status, 404, r)
        for q in ("?limit=0", "?limit=1001", "?before=x", "?before=0"):
            r = self.admin("GET", "/admin/v1/tenants/fails/connectors/%s/runs%s" % (cid, q))
            self.assertEqual(r.status, 400, (q, r))

        # fixed: the next run succeeds and resolves the alert
        r = self.admin("PATCH", "/admin/v1/tenants/fails/connectors/" + cid,
                       {"settings": {"auth_header": "Bearer " + TOKEN}})
        self.assertEqual(r.status, 200, r)
        run = self.run_now("fails", cid)
        self.assertEqual(run["status"], "ok", run)
        self.assertIsNone(run["error"], run)
        hist = self.history("fails")
        self.assertFalse(hist[0]["open"], hist)
        self.assertIsNotNone(hist[0]["resolved_at"], hist)


class Drop(Base):
    def test_record_count_drop_is_stored_without_a_webhook(self):
        r = self.put_alerts("drops", {"webhook_url": None, "rules": {
            "record_count_drop": {"below_percent": 50, "previous_runs": 3}}})
        self.assertFalse(r.json["secret_set"], r)
        base = "/" + uid("dsrc")
        evs = [event(uid("DEV")) for _ in range(2)]
        ep, sp = base + "/events", base + "/sales"

        def sales(n):
            return [sale(uid("DINV"), event_id=evs[i % 2]["event_id"]) for i in range(n)]
        self.fs.add_collection(ep, evs, next_pointer="/next_cursor", final_next=True)
        self.fs.add_collection(sp, sales(10), next_pointer="/next_cursor", final_next=True)
        cid = self.add_connector("drops", self.settings(sp, ep))
        counts = []
        # 2 events + 10 sales, then 10, 10 (the median of the three: 10), then 1 (< 50 %)
        for more in (10, 10, 1, None):
            run = self.run_now("drops", cid)
            self.assertEqual(run["status"], "ok", run)
            counts.append(run["records_in"])
            if more is not None:
                self.assertEqual(self.history("drops"), [], counts)
                self.fs.append(sp, sales(more))
        self.assertEqual(counts, [12, 10, 10, 1], counts)
        hist = harness.wait_until(lambda: self.history("drops"), 10 * TS,
                                  what="the drop alert")
        self.assertEqual(len(hist), 1, hist)
        a = hist[0]
        self.assertEqual(a["rule"], "record_count_drop", a)
        self.assertEqual(a["subject"], cid, a)
        self.assertEqual(a["facts"]["records_in"], 1, a)
        self.assertEqual(a["facts"]["median"], 10, a)
        self.assertEqual(a["delivery"]["state"], "not_sent", a)
        self.assertEqual(a["environment"], "test", a)


class Dead(Base):
    def test_dead_letter_alert_is_delivered_after_a_500(self):
        path = "/alerts/dead"
        self.put_alerts("dead", {"webhook_url": self.rx.url(path), "secret": SECRET})
        self.rx.script(path, Answer(500, {"error": "try later"}))
        api = harness.Api(self.port, "dead", Fixture.keys["dead"])
        tpath = "/crm/dead-" + uid("t")
        r = self.admin("POST", "/admin/v1/tenants/dead/targets",
                       {"type": "audience_push", "environment": "test", "url": self.rx.url(tpath),
                        "app_key": "APP", "secure_token": "TOK"})
        self.assertEqual(r.status, 201, r)
        tgt = r.json["target_id"]
        ev = event()
        cs = [customer() for _ in range(2)]
        r = api.ingest({"events": [ev], "customers": cs,
                        "sales": [sale(event_id=ev["event_id"], customer_id=c["customer_id"])
                                  for c in cs]})
        self.assertEqual(r.status, 202, r)
        r = api.req("POST", "/v1/dead/segments", body={
            "segment_name": "Buyers", "rules": {"bought": {"event_id": ev["event_id"]}}})
        self.assertEqual(r.status, 201, r)
        seg = r.json["segment_id"]
        self.rx.script(tpath, Answer(400, {"error": "unknown list"}))
        r = api.req("POST", "/v1/dead/segments/%s/push" % seg, body={"target_id": tgt})
        self.assertEqual(r.status, 202, r)
        dlv = r.json["delivery_id"]
        got = self.rx.wait_for(path, 2, 30 * TS)  # a 500, then the retry
        self.assertEqual([g["answer"] for g in got], [500, 201], got)
        self.assertEqual(got[0]["headers"]["webhook-id"], got[1]["headers"]["webhook-id"])
        for g in got:
            self.assertTrue(verify(SECRET, g), g["headers"])
        body = got[1]["body"]
        self.assertEqual(body["type"], "alert.dead_letters", body)
        self.assertEqual(body["data"]["subject"], tgt, body)
        self.assertEqual(body["data"]["facts"]["delivery_id"], dlv, body)
        self.assertIn("400", body["data"]["facts"]["last_error"], body)

        def delivered():
            h = self.history("dead")
            return h if h and h[0]["delivery"]["state"] == "delivered" else None
        hist = harness.wait_until(delivered, 10 * TS, what="the alert recorded as delivered")
        self.assertEqual(hist[0]["delivery"]["attempts"], 2, hist)


class StopAndCrash(Base):
    def test_stopped_run_is_cancelled_and_a_crashed_one_resumes(self):
        # a hub of its own: SIGTERM during a slow page, then kill -9 during another
        data = harness.tempdir(self, prefix="sd-e2e-alerts-stop-")
        harness.tenant_create(data, "stops")
        server = harness.Server(data)
        self.addCleanup(server.kill)
        server.start()
        with open(os.path.join(data, "admin.token")) as f:
            token = f.read().strip()

        def admin(srv, method, path):
            return harness.http(srv.port, method, "/admin/v1/tenants/stops/connectors" + path,
                                key=token)

        def runs(srv, cid):
            r = admin(srv, "GET", "/%s/runs" % cid)
            self.assertEqual(r.status, 200, r)
            return r.json["runs"]
        sp = "/" + uid("ssrc") + "/sales"
        ev = event(uid("SEV"))
        ep = sp.replace("/sales", "/events")
        self.fs.add_collection(ep, [ev], next_pointer="/next_cursor")
        self.fs.add_collection(sp, [sale(uid("SINV"), event_id=ev["event_id"]) for _ in range(5)],
                               next_pointer="/next_cursor")
        r = harness.http(server.port, "POST", "/admin/v1/tenants/stops/connectors",
                         body={"type": "rest_pull", "environment": "test", "schedule": "manual",
                               "settings": dict(self.settings(sp, ep), timeout_seconds=30)},
                         key=token)
        self.assertEqual(r.status, 201, r)
        cid = r.json["connector_id"]

        self.fs.inject(sp, [("sleep", 20)])
        n = len(self.fs.requests(sp))
        self.assertEqual(admin(server, "POST", "/%s/run" % cid).status, 202)
        harness.wait_until(lambda: len(self.fs.requests(sp)) > n, 20 * TS,
                           what="the slow page asked for")
        self.assertEqual(server.stop(), 0, server.diagnostics())
        self.fs.clear_faults(sp)

        server2 = harness.Server(data)
        self.addCleanup(server2.kill)
        server2.start()
        rs = runs(server2, cid)
        self.assertEqual([(x["status"], x["trigger"]) for x in rs], [("cancelled", "run_now")], rs)
        self.assertIsNotNone(rs[0]["error"], rs)

        # kill -9 during a slow page: no row for the cut run; the restart resumes it
        self.fs.inject(sp, [("sleep", 20)])
        n = len(self.fs.requests(sp))
        self.assertEqual(admin(server2, "POST", "/%s/run" % cid).status, 202)
        harness.wait_until(lambda: len(self.fs.requests(sp)) > n, 20 * TS,
                           what="the slow page asked for")
        server2.kill()
        self.fs.clear_faults(sp)
        server3 = harness.Server(data)
        self.addCleanup(server3.kill)
        server3.start()
        rs = harness.wait_until(lambda: (lambda v: v if len(v) == 2 else None)(runs(server3, cid)),
                                RUN_TIMEOUT, interval=0.05, what="the resumed run")
        self.assertEqual((rs[0]["status"], rs[0]["trigger"]), ("ok", "resume"), rs)
        self.assertEqual(rs[0]["records_in"], 6, rs)
        self.assertEqual(server3.stop(), 0, server3.diagnostics())


class IngestWindow(Base):
    def test_refused_share_of_an_ingest_window(self):
        # no settings: the default rejected_share (0.25) applies; the window is 5 min scaled
        # by STAGEDOOR_ALERT_TIME_SCALE (3 s here)
        api = harness.Api(self.port, "ingest", Fixture.keys["ingest"])
        for _ in range(3):
            # well-formed sales of events that do not exist: refused whole by the reference check
            r = api.ingest({"sales": [sale(uid("BAD"), event_id=uid("NOEV")) for _ in range(10)]})
            self.assertEqual(r.status, 400, r)
        r = api.ingest({"events": [event() for _ in range(5)]})
        self.assertEqual(r.status, 202, r)
        hist = harness.wait_until(lambda: self.history("ingest"), 20 * TS,
                                  what="the ingest window's alert")
        self.assertEqual(len(hist), 1, hist)
        a = hist[0]
        self.assertEqual((a["rule"], a["subject"]), ("rejected_share", "ingest/test"), a)
        self.assertEqual((a["facts"]["rows"], a["facts"]["rejected"]), (35, 30), a)
        self.assertEqual(a["delivery"]["state"], "not_sent", a)


if __name__ == "__main__":
    harness.main()
