"""The operator's view of a hub, through the real binary: tenants and keys over HTTP, data
quality and answers by status, vendor quotas, segment size history and the /metrics series.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)

What is checked:
  - tenants and keys: list and create tenants, list, create and revoke keys over the admin API;
    the secret appears once (in the create answer) and never in a list or in the server's log;
    a revoked key is refused within a second; last_used_at moves once a key is used, in the API
    and in `stagedoor key list`; bad bodies answer 400 with the member named; a tenant key is
    refused on every admin route (401) and another tenant's key id is a 404.
  - data quality: rejected fields counted per source, field label and error code (ingest and
    PUT of a sale; an unknown member's label bounded to "other"), records accepted by kind,
    answers by route and status class, an inbound door's quarantined objects under its
    connector id (a replay does not count them twice); the admin view and a tenant key's own view (its
    environment only; another tenant's key is refused, a since= that is not a time is a 400).
  - vendor quotas: per connector whose type declares quotas, its windows (limit, used,
    reserved for writes, reset time) and which other instances share its credential (never the
    credential or its hash); connectors without quotas are left out.
  - segment history: a point when a segment is computed, none more within 10 minutes (a
    recount), the tenant's own segments only; the segment's answer names the targets it was
    pushed to with the newest delivery's state and time."""

import json
import os
import time
import unittest

import harness
from fake_sources import FakeSources
from receiver import Receiver

TS = harness.TIME_SCALE


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


class ObserveCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = harness.tempdir(cls)
        for t in ("opera", "ballet"):
            harness.tenant_create(cls.data, t)
        cls.key = harness.key_create(cls.data, "opera", "test")
        cls.ballet_key = harness.key_create(cls.data, "ballet", "test")
        cls.server = harness.Server(cls.data)
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.token = admin_token(cls.data)

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        if rc != 0:
            raise AssertionError("server exit code %r\n%s" % (rc, cls.server.diagnostics()))

    def admin(self, method, path, body=None, token="default"):
        t = self.token if token == "default" else token
        return harness.http(self.server.port, method, "/admin/v1" + path, body=body, key=t)

    def tenant(self, method, client, path, body=None, key=None):
        return harness.http(self.server.port, method, "/v1/%s%s" % (client, path), body=body,
                            key=key or self.key)

    def server_log(self):
        return "\n".join(self.server.stdout_lines) + "\n" + "\n".join(self.server.stderr_tail)


class TenantsAndKeys(ObserveCase):
    def test_tenants_list_and_create(self):
        r = self.admin("GET", "/tenants")
        self.assertEqual(r.status, 200, r)
        ids = [t["client_id"] for t in r.json["data"]]
        self.assertIn("opera", ids)
        self.assertIn("ballet", ids)
        new = harness.uid("venue")
        r = self.admin("POST", "/tenants", {"client_id": new, "name": "Venue Hall"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["client_id"], new)
        self.assertEqual(r.json["name"], "Venue Hall")
        self.assertEqual(r.json["per_minute"], 500)
        self.assertEqual(r.header("Location"), "/admin/v1/tenants/" + new)
        r = self.admin("POST", "/tenants", {"client_id": new})
        self.assertEqual(r.status, 409, r)
        r = self.admin("GET", "/tenants")
        self.assertIn(new, [t["client_id"] for t in r.json["data"]])
        # the CLI sees it too
        cp = harness.cli_ok(self.data, "tenant", "list")
        self.assertIn(new, cp.stdout)

    def test_tenant_create_validation(self):
        for body, pointer in (({}, "/client_id"), ({"client_id": "bad id!"}, "/client_id"),
                              ({"client_id": "ok1", "nmae": "x"}, "/nmae"),
                              ({"client_id": "ok2", "name": 5}, "/name"),
                              ({"client_id": "ok3", "name": "x" * 201}, "/name"), ([], "")):
            r = self.admin("POST", "/tenants", body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(pointer, [e["pointer"] for e in r.json["errors"]], (body, r))
        r = self.admin("GET", "/tenants")
        self.assertNotIn("ok1", [t["client_id"] for t in r.json["data"]])

    def test_keys_create_list_use_revoke(self):
        r = self.admin("POST", "/tenants/opera/keys", {"environment": "prod"})
        self.assertEqual(r.status, 201, r)
        secret, key_id = r.json["key"], r.json["key_id"]
        self.assertTrue(secret.startswith("sd_prod_"), r)
        self.assertEqual(r.json["environment"], "prod")
        listing = self.admin("GET", "/tenants/opera/keys")
        self.assertEqual(listing.status, 200, listing)
        self.assertNotIn(secret, listing.text)
        row = [k for k in listing.json["data"] if k["key_id"] == key_id][0]
        self.assertEqual(row["environment"], "prod")
        self.assertIsNone(row["revoked_at"])
        self.assertIsNone(row["last_used_at"])
        self.assertNotIn("hash", json.dumps(row))
        # the new key works within a second (the server reloads its settings)
        harness.wait_until(lambda: self.tenant("GET", "opera", "/events", key=secret).status == 200,
                           5 * TS, what="new key accepted")
        # its use is recorded within a second of the first request (then at most once a minute)
        def used():
            rows = self.admin("GET", "/tenants/opera/keys").json["data"]
            return [k for k in rows if k["key_id"] == key_id][0]["last_used_at"]
        harness.wait_until(lambda: used() is not None, 5 * TS, what="last_used_at set")
        cli_rows = {k["key_id"]: k for k in harness.key_list(self.data, "opera")}
        self.assertNotEqual(cli_rows[key_id]["last_used"], "-", cli_rows[key_id]["line"])
        # revoke: 204, then the key is refused within a second
        r = self.admin("DELETE", "/tenants/opera/keys/" + key_id)
        self.assertEqual(r.status, 204, r)
        harness.wait_until(lambda: self.tenant("GET", "opera", "/events", key=secret).status == 401,
                           5 * TS, what="revoked key refused")
        row = [k for k in self.admin("GET", "/tenants/opera/keys").json["data"]
               if k["key_id"] == key_id][0]
        self.assertTrue(row["revoked"])
        self.assertIsNotNone(row["revoked_at"])
        # revoking twice is harmless; another tenant's path never reaches the key
        self.assertEqual(self.admin("DELETE", "/tenants/opera/keys/" + key_id).status, 204)
        self.assertEqual(self.admin("DELETE", "/tenants/ballet/keys/" + key_id).status, 404)
        self.assertEqual(self.admin("DELETE", "/tenants/opera/keys/key_nope").status, 404)
        self.assertNotIn(secret, self.server_log())

    def test_key_create_validation(self):
        for body, pointer in (({}, "/environment"), ({"environment": "staging"}, "/environment"),
                              ({"environment": "test", "x": 1}, "/x")):
            r = self.admin("POST", "/tenants/opera/keys", body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(pointer, [e["pointer"] for e in r.json["errors"]], (body, r))
        self.assertEqual(self.admin("POST", "/tenants/nobody/keys", {"environment": "test"}).status,
                         404)
        self.assertEqual(self.admin("GET", "/tenants/nobody/keys").status, 404)

    def test_tenant_key_refused_on_admin_routes(self):
        for method, path, body in (("GET", "/tenants", None),
                                   ("POST", "/tenants", {"client_id": "sneaky"}),
                                   ("GET", "/tenants/opera/keys", None),
                                   ("POST", "/tenants/opera/keys", {"environment": "test"}),
                                   ("DELETE", "/tenants/opera/keys/key_x", None)):
            r = self.admin(method, path, body, token=self.key)
            self.assertEqual(r.status, 401, (method, path, r))
            r = self.admin(method, path, body, token=None)
            self.assertEqual(r.status, 401, (method, path, r))


class Quality(ObserveCase):
    def test_quality_counts(self):
        ev = harness.event(harness.uid("E"))
        r = self.tenant("POST", "opera", "/ingest", {"events": [ev]})
        self.assertEqual(r.status, 202, r)
        bad_sale = harness.sale(harness.uid("S"), event_id=ev["event_id"], currency="euro")
        no_title = harness.without(harness.event(harness.uid("E")), "title")
        r = self.tenant("POST", "opera", "/ingest", {"sales": [bad_sale], "events": [no_title]})
        self.assertEqual(r.status, 400, r)
        r = self.tenant("POST", "opera", "/ingest", {"events": [dict(ev, zzz_secret_field=1)]})
        self.assertIn(r.status, (202, 400), r)
        good = harness.sale(harness.uid("S"), event_id=ev["event_id"])
        self.assertEqual(self.tenant("POST", "opera", "/ingest", {"sales": [good]}).status, 202)
        r = self.tenant("PUT", "opera", "/sales/" + good["invoice_number"],
                        dict(good, quantity="many"))
        self.assertEqual(r.status, 400, r)

        # An answer is counted once it has been sent (its connection's completion), so the
        # last one may land just after the client saw it: wait for it.
        def counted():
            r = self.admin("GET", "/tenants/opera/quality")
            self.assertEqual(r.status, 200, r)
            a = {(x["route"], x["class"]) for x in r.json["answers"]}
            return r.json if ("sale_put", "4xx") in a else None
        q = harness.wait_until(counted, 5 * TS, what="answers counted")
        rej = {(x["source"], x["field"], x["code"]): x["count"] for x in q["rejected"]}
        self.assertGreaterEqual(rej.get(("ingest", "sales.currency", "invalid"), 0), 1, q)
        self.assertGreaterEqual(rej.get(("ingest", "events.title", "missing"), 0), 1, q)
        self.assertGreaterEqual(rej.get(("sale_put", "sales.quantity", "invalid"), 0), 1, q)
        for (source, field, code) in rej:
            self.assertNotIn("zzz", field)
            self.assertIn(code, ("missing", "invalid", "unknown_field", "unknown_reference",
                                 "duplicate", "other"))
        acc = {(x["source"], x["kind"]): x["count"] for x in q["accepted"]}
        self.assertGreaterEqual(acc.get(("ingest", "events"), 0), 1, q)
        self.assertGreaterEqual(acc.get(("ingest", "sales"), 0), 1, q)
        ans = {(x["route"], x["class"]): x["count"] for x in q["answers"]}
        self.assertGreaterEqual(ans.get(("ingest", "2xx"), 0), 2, q)
        self.assertGreaterEqual(ans.get(("ingest", "4xx"), 0), 1, q)
        self.assertGreaterEqual(ans.get(("sale_put", "4xx"), 0), 1, q)
        self.assertGreaterEqual(q["totals"]["rejected"], 3)
        self.assertFalse(q["has_more"])
        for x in q["rejected"] + q["accepted"] + q["answers"]:
            self.assertEqual(x["environment"], "test")
            self.assertRegex(x["hour"], r"^\d{4}-\d\d-\d\dT\d\d:00:00Z$")

        # the tenant's own view: the same counts of its environment
        mine = self.tenant("GET", "opera", "/quality")
        self.assertEqual(mine.status, 200, mine)
        mrej = {(x["source"], x["field"], x["code"]): x["count"] for x in mine.json["rejected"]}
        self.assertEqual(mrej.get(("ingest", "sales.currency", "invalid")),
                         rej[("ingest", "sales.currency", "invalid")])
        # another tenant sees none of it, and cannot ask for it
        other = self.tenant("GET", "ballet", "/quality", key=self.ballet_key)
        self.assertEqual(other.status, 200, other)
        self.assertEqual(other.json["rejected"], [], other)
        self.assertEqual(self.tenant("GET", "opera", "/quality", key=self.ballet_key).status, 403)
        self.assertEqual(self.admin("GET", "/tenants/opera/quality", token=self.key).status, 401)
        # since: later than now → nothing; not a time → 400 naming it
        r = self.admin("GET", "/tenants/opera/quality?since=2999-01-01T00:00:00Z")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["rejected"], [])
        r = self.admin("GET", "/tenants/opera/quality?since=yesterday")
        self.assertEqual(r.status, 400, r)
        self.assertIn("since", r.json["message"])
        self.assertEqual(self.admin("GET", "/tenants/nobody/quality").status, 404)

        # the same counts in /metrics, per tenant by client id
        m = harness.http(self.server.port, "GET", "/metrics").text
        self.assertRegex(m, r'stagedoor_tenant_records_accepted_total\{tenant="opera",'
                            r'kind="events"\} [1-9]')
        self.assertRegex(m, r'stagedoor_tenant_records_rejected_total\{tenant="opera"\} [1-9]')
        self.assertRegex(m, r'stagedoor_tenant_http_answers_total\{tenant="opera",class="4xx"\}'
                            r' [1-9]')

    def test_inbound_door_rejections(self):
        r = self.admin("POST", "/tenants/opera/connectors",
                       {"type": "webhook_in", "environment": "test",
                        "settings": {"kind": "customers"},
                        "mapping": {"fields": {"contactNumber": "customer_id", "mail": "email"},
                                    "unmapped": "drop"}})
        self.assertEqual(r.status, 201, r)
        cid, path = r.json["connector_id"], r.json["inbound"]["path"]
        objs = [{"contactNumber": harness.uid("K"), "mail": "a%d@example.com" % i}
                for i in range(3)]
        objs.append({"contactNumber": harness.uid("K"), "mail": "not-an-address"})
        r = harness.http(self.server.port, "POST", path, body=json.dumps(objs).encode(),
                         headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["applied"], r.json["quarantined"]), (3, 1), r)

        def rejected():
            q = self.admin("GET", "/tenants/opera/quality").json
            return {(x["field"], x["code"]): x["count"] for x in q["rejected"]
                    if x["source"] == cid}
        self.assertEqual(rejected(), {("customers.email", "invalid"): 1})
        # a replay that still quarantines it does not count it again
        self.assertEqual(self.admin("POST", "/tenants/opera/connectors/%s/replay" % cid).status,
                         200)
        self.assertEqual(rejected(), {("customers.email", "invalid"): 1})


class Quotas(ObserveCase):
    def connector(self, client, settings, type_="tradablebits"):
        r = self.admin("POST", "/tenants/%s/connectors" % client,
                       {"type": type_, "environment": "test", "schedule": "manual",
                        "settings": settings})
        self.assertEqual(r.status, 201, r)
        return r.json["connector_id"]

    def test_quotas_per_connector(self):
        tb = {"base_url": "https://api.tradablebits.example", "api_key": "tbkey-Secr3t-one",
              "api_secret": "tbsecret-Secr3t-one", "currency": "CAD",
              "event_city": "Vancouver", "backfill_start": "2025-01-01"}
        a = self.connector("ballet", tb)
        b = self.connector("ballet", tb)
        c = self.connector("ballet", dict(tb, api_key="tbkey-Secr3t-two",
                                          api_secret="tbsecret-Secr3t-two"))
        r = self.admin("GET", "/tenants/ballet/quotas")
        self.assertEqual(r.status, 200, r)
        rows = {x["connector_id"]: x for x in r.json["data"]}
        self.assertEqual(set(rows), {a, b, c}, r)
        self.assertEqual(rows[a]["credential_shared_with"], [b])
        self.assertEqual(rows[b]["credential_shared_with"], [a])
        self.assertEqual(rows[c]["credential_shared_with"], [])
        w = rows[a]["windows"][0]
        self.assertEqual(w["window"], "10s")
        self.assertEqual(w["limit"], 85)
        self.assertEqual(w["used"], 0)
        self.assertIn("resets_at", w)
        self.assertIn("reserved_for_writes", w)
        self.assertEqual(rows[a]["type"], "tradablebits")
        for secret in ("tbkey-Secr3t", "tbsecret-Secr3t"):
            self.assertNotIn(secret, r.text)
        # a tenant without connectors: an empty list; a key is no admin token
        r = self.admin("GET", "/tenants/opera/quotas")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["data"], [])
        self.assertEqual(self.admin("GET", "/tenants/ballet/quotas", token=self.key).status, 401)
        self.assertEqual(self.admin("GET", "/tenants/nobody/quotas").status, 404)


class SegmentHistory(ObserveCase):
    def test_history(self):
        custs = [harness.customer(harness.uid("C"), post_code="2%04d" % i) for i in range(3)]
        r = self.tenant("POST", "opera", "/ingest", {"customers": custs})
        self.assertEqual(r.status, 202, r)
        r = self.tenant("POST", "opera", "/segments",
                        {"segment_name": "hamburg", "rules": {"customer": {"post_code":
                                                                           {"prefix": "2"}}}})
        self.assertEqual(r.status, 201, r)
        seg = r.json
        path = "/segments/%s/history" % seg["segment_id"]
        h = self.tenant("GET", "opera", path)
        self.assertEqual(h.status, 200, h)
        self.assertEqual(h.json["segment_id"], seg["segment_id"])
        self.assertEqual(len(h.json["points"]), 1, h)
        self.assertEqual(h.json["points"][0]["member_count"], seg["member_count"])
        self.assertGreaterEqual(seg["member_count"], 3)
        # a recount within 10 minutes adds no point
        r = harness.http(self.server.port, "PUT", "/v1/opera/segments/" + seg["segment_id"],
                         body=b"", headers={"Content-Type": "application/json"}, key=self.key)
        self.assertEqual(r.status, 200, r)
        h = self.tenant("GET", "opera", path)
        self.assertEqual(len(h.json["points"]), 1, h)
        # since later than the point: none
        h = self.tenant("GET", "opera", path + "?since=2999-01-01T00:00:00Z")
        self.assertEqual(h.json["points"], [])
        self.assertEqual(self.tenant("GET", "opera", path + "?since=soon").status, 400)
        # another tenant's key: 403 on this path, 404 for the id under its own tenant
        self.assertEqual(self.tenant("GET", "opera", path, key=self.ballet_key).status, 403)
        self.assertEqual(self.tenant("GET", "ballet", path, key=self.ballet_key).status, 404)
        self.assertEqual(self.tenant("GET", "opera", "/segments/seg_nope/history").status, 404)

    def test_pushed_to(self):
        rx = Receiver().start()
        self.addCleanup(rx.stop)
        r = self.admin("POST", "/tenants/opera/targets",
                       {"type": "audience_push", "environment": "test", "url": rx.url("/aud"),
                        "app_key": "APP-1", "secure_token": "TOK-1"})
        self.assertEqual(r.status, 201, r)
        target = r.json["target_id"]
        ev = harness.event(harness.uid("E"))
        c = harness.customer(harness.uid("C"))
        body = {"events": [ev], "customers": [c],
                "sales": [harness.sale(harness.uid("S"), event_id=ev["event_id"],
                                       customer_id=c["customer_id"])]}
        self.assertEqual(self.tenant("POST", "opera", "/ingest", body).status, 202)
        r = self.tenant("POST", "opera", "/segments",
                        {"segment_name": "buyers", "rules": {"bought":
                                                             {"event_id": ev["event_id"]}}})
        self.assertEqual(r.status, 201, r)
        seg = r.json["segment_id"]
        r = self.tenant("GET", "opera", "/segments/" + seg)
        self.assertEqual(r.json["pushed_to"], [], r)
        r = self.tenant("POST", "opera", "/segments/%s/push" % seg, {"target_id": target})
        self.assertEqual(r.status, 202, r)
        dlv = r.json["delivery_id"]

        def delivered():
            p = self.tenant("GET", "opera", "/segments/" + seg).json["pushed_to"]
            return p if p and p[0]["state"] == "delivered" else None
        pushed = harness.wait_until(delivered, 20 * TS, interval=0.05, what="push delivered")
        self.assertEqual(len(pushed), 1, pushed)
        self.assertEqual(pushed[0]["connector_id"], target)
        self.assertEqual(pushed[0]["delivery_id"], dlv)
        self.assertRegex(pushed[0]["at"], r"^\d{4}-\d\d-\d\dT")
        # the outbox series name the tenant and the target: nothing waits, nothing is dead
        m = harness.http(self.server.port, "GET", "/metrics").text
        for series in ("queue_depth", "attempts", "dead_letters"):
            self.assertIn('stagedoor_outbox_%s{tenant="opera",target="%s"} 0\n'
                          % (series, target), m)
        self.assertIn('stagedoor_outbox_oldest_age_seconds{tenant="opera",target="%s"} 0.000\n'
                      % target, m)


class ConnectorMetrics(ObserveCase):
    def test_connector_run_series(self):
        src = FakeSources()
        src.start()
        self.addCleanup(src.stop)
        evs = [harness.event(harness.uid("F")) for _ in range(3)]
        src.add_feed("/feeds/season.json", json.dumps({"events": evs}), "application/json",
                     token="feed-Secr3t")
        r = self.admin("POST", "/tenants/opera/connectors",
                       {"type": "feed", "environment": "test", "schedule": "manual",
                        "settings": {"url": src.address("/feeds/season.json"), "kind": "ingest",
                                     "auth_header": "Bearer feed-Secr3t"}})
        self.assertEqual(r.status, 201, r)
        cid = r.json["connector_id"]
        self.assertEqual(self.admin("POST", "/tenants/opera/connectors/%s/run" % cid).status, 202)
        ok = 'stagedoor_connector_runs_total{tenant="opera",connector="%s",outcome="ok"} 1\n' % cid

        def ran():
            m = harness.http(self.server.port, "GET", "/metrics").text
            return m if ok in m else None
        m = harness.wait_until(ran, 20 * TS, interval=0.1, what="run counted")
        self.assertIn('stagedoor_connector_last_run_records{tenant="opera",connector="%s",'
                      'kind="stored"} 3\n' % cid, m)
        self.assertRegex(m, r'stagedoor_connector_last_run_age_seconds\{tenant="opera",'
                            r'connector="%s"\} \d+\.\d{3}\n' % cid)
        # the run's records count for its source in the quality view
        q = self.admin("GET", "/tenants/opera/quality").json
        acc = {(x["source"], x["kind"]): x["count"] for x in q["accepted"]}
        self.assertEqual(acc.get((cid, "events")), 3, q)


if __name__ == "__main__":
    harness.main()
