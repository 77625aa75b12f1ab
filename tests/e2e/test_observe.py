"""The operator's view of a hub, through the real binary: tenants and keys over HTTP, data
quality and answers by status, vendor quotas, segment size history and the /metrics series.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)

What is checked:
  - tenants and keys: list and create tenants, list, create and revoke keys over the admin API;
    the secret appears once (in the create answer) and never in a list or in the server's log;
    a revoked key is refused within a second; last_used_at moves once a key is used, in the API
    and in `stagedoor key list`; bad bodies answer 400 with the member named; a tenant key is
    refused on every admin route (401) and another tenant's key id is a 404."""

import json
import os
import time
import unittest

import harness

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


if __name__ == "__main__":
    harness.main()
