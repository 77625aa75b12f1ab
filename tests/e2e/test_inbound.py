"""Raw-first vendor webhooks: a webhook_in connector's door POST /in/{connector_id}/{token},
its quarantine, replay, limits, credentials, allowlist, token rotation and erasure, through the
real binary.

What is checked:
  - a 50-object payload with one object the mapping cannot serve: 200, 49 applied, 1
    quarantined (listed by the admin API and the CLI, counted in the connector status and in
    /metrics); the mapping fixed, replay applies it once, and a second replay finds nothing.
  - the same payload again: 200 "duplicate", nothing changes; a single object body works.
  - kill -9 between the commit and the answer (fault point inbound_after_commit): the vendor's
    resend of the same payload changes nothing (stored once, records not doubled).
  - a wrong token, a missing/wrong credential, or a peer outside the allowlist: 404 with the
    router's own body, and nothing is stored (payload count and records unchanged).
  - limits: more objects than max_objects, or more bytes than max_body_kib: 413, nothing stored.
  - token rotation: the old URL is a 404 at once, the new one works.
  - erasure of a person empties the raw payloads that mention her (checked in the SQLite file)
    and leaves the others; a replay of every payload does not bring her back.
"""

import base64
import json
import os
import sqlite3
import unittest

import harness

CLIENT = "inbound_t"


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


MAPPING = {"fields": {"contactNumber": "customer_id", "mail": "email", "firstName": "first_name"},
           "unmapped": "drop"}
# The fix: the poisoned object names its id "contactNo".
FIXED = {"fields": {"contactNumber": "customer_id", "contactNo": "customer_id", "mail": "email",
                    "firstName": "first_name"}, "unmapped": "drop"}


def contact(cid, **kw):
    o = {"contactNumber": cid, "mail": "%s@example.com" % cid.lower(), "firstName": "Ann"}
    o.update(kw)
    return o


class InboundTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = harness.tempdir(cls)
        harness.tenant_create(cls.data, CLIENT)
        cls.key = harness.key_create(cls.data, CLIENT, "test")
        cls.server = harness.Server(cls.data)
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.token = admin_token(cls.data)

    @classmethod
    def tearDownClass(cls):
        # SIGTERM: drains and exits 0 (under the sanitizers: no leak report either)
        code = cls.server.stop()
        if code != 0:
            raise AssertionError("server exited %r\n%s" % (code, cls.server.diagnostics()))

    @property
    def port(self):
        return self.server.port

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1/tenants/%s%s" % (CLIENT, path),
                            body=body, key=self.token)

    def create(self, settings=None, mapping=MAPPING):
        s = {"kind": "customers"}
        s.update(settings or {})
        r = self.admin("POST", "/connectors", {"type": "webhook_in", "environment": "test",
                                               "settings": s, "mapping": mapping})
        self.assertEqual(r.status, 201, r)
        inbound = r.json["inbound"]
        self.assertTrue(inbound["path"].startswith("/in/" + r.json["connector_id"] + "/"))
        self.assertEqual(len(inbound["token"]), 64)
        self.assertEqual(inbound["url"], "http://127.0.0.1:%d%s" % (self.port, inbound["path"]))
        return r.json["connector_id"], inbound["path"]

    def post(self, path, body, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return harness.http(self.port, "POST", path, body=data, headers=h)

    def status(self, cid):
        r = self.admin("GET", "/connectors/" + cid)
        self.assertEqual(r.status, 200, r)
        return r.json["status"]["inbound"]

    def quarantine(self, cid):
        r = self.admin("GET", "/quarantine?connector=" + cid)
        self.assertEqual(r.status, 200, r)
        return r.json["quarantine"]

    def customers(self):
        """The stored customers (the change feed's tombstones of erased ones left out)."""
        feed = harness.Api(self.port, CLIENT, self.key).list_all("customers")[0]
        return [c for c in feed if not c.get("deleted")]

    def ids(self):
        return sorted(c["customer_id"] for c in self.customers())

    def metric(self, name, cid):
        r = harness.http(self.port, "GET", "/metrics")
        want = '%s{connector="%s"} ' % (name, cid)
        for line in r.body.decode().splitlines():
            if line.startswith(want):
                return int(line[len(want):])
        return 0

    def assert_not_found(self, r):
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json, {"error": "not_found", "message": "no such endpoint"})

    # -- the main path

    def test_poisoned_object_quarantined_then_replayed_once(self):
        cid, path = self.create()
        pre = harness.uid("P")
        objs = [contact("%s-%02d" % (pre, i)) for i in range(50)]
        poisoned = {"contactNo": "%s-poison" % pre, "mail": "poison@example.com"}
        objs[17] = poisoned
        before = set(self.ids())
        r = self.post(path, objs)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["objects"], r.json["applied"], r.json["quarantined"]),
                         (50, 49, 1))
        self.assertFalse(r.json["duplicate"])
        now = set(self.ids()) - before
        self.assertEqual(len(now), 49)
        self.assertNotIn("%s-poison" % pre, now)
        q = self.quarantine(cid)
        self.assertEqual(len(q), 1)
        self.assertEqual(q[0]["index"], 17)
        self.assertIn("customer_id", q[0]["reason"])
        self.assertEqual(self.status(cid), {"payloads": 1, "quarantined": 1})
        self.assertEqual(self.metric("stagedoor_inbound_quarantined_total", cid), 1)
        self.assertEqual(self.metric("stagedoor_inbound_applied_total", cid), 49)
        cli = harness.cli_ok(self.data, "quarantine", "list", CLIENT, "--connector", cid)
        self.assertIn(cid, cli.stdout)
        self.assertIn("17", cli.stdout)

        # the same payload again changes nothing
        r = self.post(path, objs)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json["duplicate"])
        self.assertEqual(self.status(cid), {"payloads": 1, "quarantined": 1})

        # replay before the fix (API and CLI): still quarantined, reason kept
        r = self.admin("POST", "/connectors/%s/replay" % cid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["applied"], r.json["quarantined"]), (0, 1))
        out = harness.cli_ok(self.data, "quarantine", "replay", cid).stdout
        self.assertIn("replayed 1 payloads: 1 objects, 0 applied, 1 still quarantined", out)

        # fix the mapping, replay: applied once; replay again: nothing
        r = self.admin("PATCH", "/connectors/" + cid, {"mapping": FIXED})
        self.assertEqual(r.status, 200, r)
        r = self.admin("POST", "/connectors/%s/replay" % cid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["payloads"], r.json["applied"], r.json["quarantined"]),
                         (1, 1, 0))
        self.assertEqual(self.quarantine(cid), [])
        after = set(self.ids()) - before
        self.assertEqual(len(after), 50)
        self.assertIn("%s-poison" % pre, after)
        r = self.admin("POST", "/connectors/%s/replay" % cid)
        self.assertEqual((r.json["payloads"], r.json["applied"]), (0, 0))
        out = harness.cli_ok(self.data, "quarantine", "replay", cid).stdout
        self.assertIn("replayed 0 payloads", out)
        # a replay of every payload received re-applies without doubling anything
        r = self.admin("POST", "/connectors/%s/replay?from=2000-01-01T00:00:00Z&to="
                       "2100-01-01T00:00:00Z" % cid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["payloads"], r.json["objects"], r.json["applied"]), (1, 50, 50))
        self.assertEqual(len(set(self.ids()) - before), 50)
        self.assertEqual(len(self.ids()), len(set(self.ids())))

    def test_run_now_replays_the_quarantine(self):
        cid, path = self.create()
        poisoned = {"contactNo": harness.uid("RUN"), "mail": "run@example.com"}
        r = self.post(path, poisoned)
        self.assertEqual((r.status, r.json["quarantined"]), (200, 1), r)
        self.assertEqual(self.admin("PATCH", "/connectors/" + cid, {"mapping": FIXED}).status, 200)
        self.assertEqual(self.admin("POST", "/connectors/%s/run" % cid).status, 202)
        harness.wait_until(lambda: self.quarantine(cid) == [], 15 * harness.TIME_SCALE,
                           what="the run to replay the quarantine")
        self.assertIn(poisoned["contactNo"], self.ids())
        harness.wait_until(
            lambda: self.admin("GET", "/connectors/" + cid).json["status"]["state"] == "ok",
            15 * harness.TIME_SCALE, what="the run to finish")

    def test_single_object_and_not_json(self):
        cid, path = self.create()
        one = contact(harness.uid("S"))
        r = self.post(path, one)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["objects"], r.json["applied"]), (1, 1))
        self.assertIn(one["contactNumber"], self.ids())
        # a body that is not JSON is stored and quarantined as a whole: the vendor gets 200
        r = self.post(path, b'{"contactNumber": ')
        self.assertEqual(r.status, 200, r)
        q = self.quarantine(cid)
        self.assertEqual(len(q), 1)
        self.assertIsNone(q[0]["index"])
        self.assertIn("not JSON", q[0]["reason"])

    def test_limits_413_store_nothing(self):
        cid, path = self.create({"max_objects": 5, "max_body_kib": 1})
        r = self.post(path, [contact(harness.uid("L")) for _ in range(6)])
        self.assertEqual(r.status, 413, r)
        r = self.post(path, [contact(harness.uid("L"), firstName="x" * 1100)])
        self.assertEqual(r.status, 413, r)
        self.assertEqual(self.status(cid), {"payloads": 0, "quarantined": 0})
        self.assertEqual(self.metric("stagedoor_inbound_non200_total", cid), 2)
        r = self.post(path, [contact(harness.uid("L")) for _ in range(5)])
        self.assertEqual(r.status, 200, r)

    # -- refusals

    def test_wrong_token_credential_or_address_is_404_and_stores_nothing(self):
        cid, path = self.create({"auth": "basic", "auth_user": "s360",
                                 "auth_secret": "pa55-w0rd"})
        good = "Basic " + base64.b64encode(b"s360:pa55-w0rd").decode()
        bad = "Basic " + base64.b64encode(b"s360:wrong").decode()
        before = self.ids()
        body = [contact(harness.uid("W"))]
        self.assert_not_found(self.post(path[:-1] + ("0" if path[-1] != "0" else "1"), body,
                                        {"Authorization": good}))
        self.assert_not_found(self.post(path, body))
        self.assert_not_found(self.post(path, body, {"Authorization": bad}))
        self.assert_not_found(self.post("/in/con_0000000000000000/" + "a" * 64, body))
        self.assertEqual(self.status(cid), {"payloads": 0, "quarantined": 0})
        self.assertEqual(self.ids(), before)
        self.assertEqual(self.post(path, body, {"Authorization": good}).status, 200)

        hid, hpath = self.create({"auth": "header", "auth_header": "X-Api-Key",
                                  "auth_secret": "k3y"})
        self.assert_not_found(self.post(hpath, body, {"X-Api-Key": "nope"}))
        self.assertEqual(self.post(hpath, body, {"X-Api-Key": "k3y"}).status, 200)
        bid, bpath = self.create({"auth": "bearer", "auth_secret": "t0ken"})
        self.assert_not_found(self.post(bpath, body, {"Authorization": "Bearer t0k"}))
        self.assertEqual(self.post(bpath, body, {"Authorization": "Bearer t0ken"}).status, 200)

        # an allowlist without the tests' address (127.0.0.1): 404 even with the right token
        aid, apath = self.create({"allow_from": "10.0.0.0/8, 2001:db8::/32"})
        self.assert_not_found(self.post(apath, [contact(harness.uid("A"))]))
        self.assertEqual(self.status(aid), {"payloads": 0, "quarantined": 0})
        r = self.admin("PATCH", "/connectors/" + aid, {"settings": {"allow_from":
                                                                     "10.0.0.0/8, 127.0.0.0/8"}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.post(apath, [contact(harness.uid("A"))]).status, 200)
        r = self.admin("PATCH", "/connectors/" + aid, {"settings": {"allow_from": "10.0.0/8"}})
        self.assertEqual(r.status, 400, r)

    def test_token_rotation(self):
        cid, path = self.create()
        r = self.admin("POST", "/connectors/%s/inbound-token" % cid)
        self.assertEqual(r.status, 200, r)
        new = r.json["inbound"]["path"]
        self.assertNotEqual(new, path)
        self.assert_not_found(self.post(path, [contact(harness.uid("R"))]))
        self.assertEqual(self.post(new, [contact(harness.uid("R"))]).status, 200)
        # through the CLI too
        out = harness.cli_ok(self.data, "connector", "rotate-token", cid).stdout
        newer = [w for w in out.split() if w.startswith("/in/")][0]
        self.assert_not_found(self.post(new, [contact(harness.uid("R"))]))
        self.assertEqual(self.post(newer, [contact(harness.uid("R"))]).status, 200)

    # -- erasure

    def test_erasure_purges_raw_payloads(self):
        cid, path = self.create()
        victim = harness.uid("E")
        other = harness.uid("O")
        r1 = self.post(path, [contact(victim), contact(harness.uid("X"))])
        # a quarantined object names her address too (no customer id to map)
        r2 = self.post(path, [{"mail": "%s@example.com" % victim.lower()}])
        r3 = self.post(path, [contact(other)])
        for r in (r1, r2, r3):
            self.assertEqual(r.status, 200, r)
        r = harness.http(self.port, "DELETE", "/v1/%s/customers/%s?erase=profile" %
                         (CLIENT, victim), key=self.key)
        self.assertEqual(r.status, 200, r)
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.data, "stagedoor.db"),
                             uri=True)
        try:
            rows = dict((i, (n, p)) for i, n, p in db.execute(
                "SELECT id, length(body), purged_usec FROM inbound_raw WHERE connector_id = ?",
                (cid,)))
        finally:
            db.close()
        for r in (r1, r2):
            n, purged = rows[r.json["payload_id"]]
            self.assertEqual(n, 0)
            self.assertGreater(purged, 0)
        n, purged = rows[r3.json["payload_id"]]
        self.assertGreater(n, 0)
        self.assertEqual(purged, 0)
        self.assertEqual(self.quarantine(cid), [])
        # a replay of everything does not bring her back
        r = self.admin("POST", "/connectors/%s/replay?from=2000-01-01T00:00:00Z&to="
                       "2100-01-01T00:00:00Z" % cid)
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(victim, self.ids())
        self.assertIn(other, self.ids())
        # and a resend of the purged payload is still recognised
        r = self.post(path, [contact(victim), contact(harness.uid("X"))])
        self.assertEqual(r.status, 200, r)


def faulty_server(data, fault):
    old = os.environ.get("STAGEDOOR_FAULT")
    os.environ["STAGEDOOR_FAULT"] = fault
    try:
        return harness.Server(data).start()
    finally:
        if old is None:
            os.environ.pop("STAGEDOOR_FAULT", None)
        else:
            os.environ["STAGEDOOR_FAULT"] = old


def door(port, data):
    r = harness.http(port, "POST", "/admin/v1/tenants/%s/connectors" % CLIENT,
                     {"type": "webhook_in", "environment": "test",
                      "settings": {"kind": "customers"}, "mapping": MAPPING},
                     key=admin_token(data))
    if r.status != 201:
        raise AssertionError("create -> %r" % (r,))
    return r.json["connector_id"], r.json["inbound"]["path"]


class InboundCrashTest(unittest.TestCase):
    """Failures between the vendor and the store."""

    def test_storage_failure_is_503_and_the_resend_is_applied(self):
        data = harness.tempdir(self)
        harness.tenant_create(data, CLIENT)
        key = harness.key_create(data, CLIENT, "test")
        server = faulty_server(data, "commit")  # every group commit fails
        self.addCleanup(server.kill)
        cid, path = door(server.port, data)
        objs = [contact(harness.uid("F")) for _ in range(3)]
        r = harness.http(server.port, "POST", path, body=objs)
        self.assertEqual(r.status, 503, r)
        self.assertTrue(r.header("Retry-After"))
        server.kill()
        server = harness.Server(data).start()
        self.addCleanup(server.kill)
        r = harness.http(server.port, "POST", path, body=objs)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["duplicate"], r.json["applied"]), (False, 3))
        api = harness.Api(server.port, CLIENT, key)
        self.assertEqual(len(api.list_all("customers")[0]), 3)
        self.assertEqual(server.stop(), 0)

    def test_resend_after_crash(self):
        """kill -9 between the commit and the answer: the resend changes nothing."""
        data = harness.tempdir(self)
        harness.tenant_create(data, CLIENT)
        key = harness.key_create(data, CLIENT, "test")
        server = faulty_server(data, "inbound_after_commit")
        self.addCleanup(server.kill)
        tok = admin_token(data)
        cid, path = door(server.port, data)
        objs = [contact(harness.uid("K")) for _ in range(10)]
        body = json.dumps(objs).encode()
        h = {"Content-Type": "application/json"}
        with self.assertRaises(Exception):
            harness.http(server.port, "POST", path, body=body, headers=h)
        self.assertEqual(server.wait_exit(), 137)
        server = harness.Server(data).start()
        self.addCleanup(server.kill)
        api = harness.Api(server.port, CLIENT, key)
        stored = [c["customer_id"] for c in api.list_all("customers")[0]]
        self.assertEqual(sorted(stored), sorted(o["contactNumber"] for o in objs))
        r = harness.http(server.port, "POST", path, body=body, headers=h)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json["duplicate"])
        again = [c["customer_id"] for c in api.list_all("customers")[0]]
        self.assertEqual(sorted(again), sorted(stored))
        r = harness.http(server.port, "GET", "/admin/v1/tenants/%s/connectors/%s" % (CLIENT, cid),
                         key=tok)
        self.assertEqual(r.json["status"]["inbound"], {"payloads": 1, "quarantined": 0})
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    harness.main()
