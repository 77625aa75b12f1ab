"""The dashboard's server side: the record counts of GET /v1/{client_id}/summary (a tenant key,
its own environment) and GET /admin/v1/tenants/{client_id}/summary?environment= (the admin
token), equal to what paging through the lists yields, deletions included; and the embedded
files of /ui: no key needed, a strict Content-Security-Policy, ETag revalidation, 404 for a
name that is not a file of ui/.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import os

import harness
from harness import customer, event, sale


class SummaryTests(harness.ServerCase):
    TENANTS = {"s_count": ["test", "prod"], "s_other": ["test"]}

    @classmethod
    def prepare(cls):
        with open(os.path.join(cls.data, "admin.token"), "w") as f:
            f.write("sd_admin_" + "u" * 43 + "\n")
        os.chmod(os.path.join(cls.data, "admin.token"), 0o600)
        cls.token = "sd_admin_" + "u" * 43

    def admin(self, path):
        return harness.http(self.port, "GET", path, key=self.token)

    def counts(self, api):
        return {k: len(api.list_all(k)[0]) for k in ("events", "customers", "sales")}

    def test_counts_follow_the_store(self):
        test, prod = self.api("s_count", "test"), self.api("s_count", "prod")
        evs = [event() for _ in range(3)]
        cs = [customer() for _ in range(4)]
        sales = [sale(event_id=evs[0]["event_id"], customer_id=c["customer_id"]) for c in cs]
        self.assertStatus(test.ingest({"events": evs, "customers": cs, "sales": sales}), 202)
        self.assertStatus(prod.ingest({"events": [event()]}), 202)

        r = test.req("GET", "/v1/s_count/summary")
        self.assertStatus(r, 200)
        self.assertEqual(r.json, {"client_id": "s_count", "environment": "test", "events": 3,
                                  "customers": 4, "sales": 4})
        self.assertEqual({k: r.json[k] for k in ("events", "customers", "sales")},
                         self.counts(test))
        self.assertIsNotNone(r.header("RateLimit-Remaining"))
        r = prod.req("GET", "/v1/s_count/summary")
        self.assertEqual((r.json["environment"], r.json["events"], r.json["sales"]),
                         ("prod", 1, 0))

        # a deleted sale is no longer counted
        inv = sales[0]["invoice_number"]
        self.assertStatus(test.req("DELETE", "/v1/s_count/sales/" + harness._quote(inv)), 200)
        self.assertEqual(test.req("GET", "/v1/s_count/summary").json["sales"], 3)

        # the admin view: test by default, prod when asked
        r = self.admin("/admin/v1/tenants/s_count/summary")
        self.assertStatus(r, 200)
        self.assertEqual((r.json["environment"], r.json["events"], r.json["sales"]),
                         ("test", 3, 3))
        r = self.admin("/admin/v1/tenants/s_count/summary?environment=prod")
        self.assertEqual((r.json["environment"], r.json["events"]), ("prod", 1))

    def test_refusals(self):
        r = self.admin("/admin/v1/tenants/s_count/summary?environment=staging")
        self.assertStatus(r, 400)
        self.assertIn("environment", r.json["message"])
        self.assertStatus(self.admin("/admin/v1/tenants/nobody/summary"), 404)
        # a tenant key is no admin token; another tenant's client id is refused
        key = self.keys[("s_count", "test")]
        r = harness.http(self.port, "GET", "/admin/v1/tenants/s_count/summary", key=key)
        self.assertStatus(r, 401)
        r = harness.http(self.port, "GET", "/v1/s_other/summary", key=key)
        self.assertStatus(r, 403)
        self.assertStatus(harness.http(self.port, "GET", "/v1/s_count/summary"), 401)

    def test_ui_files(self):
        r = harness.http(self.port, "GET", "/ui")
        self.assertStatus(r, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/html"), r)
        self.assertIn(b'<script src="/ui/app.js"', r.body)
        csp = r.header("Content-Security-Policy")
        for part in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
            self.assertIn(part, csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertEqual(r.header("Cache-Control"), "no-cache")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        etag = r.header("ETag")
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')

        # revalidation: the same ETag (alone, in a list, weak) is a 304 without a body
        for inm in (etag, 'W/"x", ' + etag, "W/" + etag, "*"):
            r2 = harness.http(self.port, "GET", "/ui", headers={"If-None-Match": inm})
            self.assertStatus(r2, 304, inm)
            self.assertEqual(r2.body, b"")
            self.assertEqual(r2.header("ETag"), etag)
        self.assertStatus(harness.http(self.port, "GET", "/ui",
                                       headers={"If-None-Match": '"0000000000000000"'}), 200)

        for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css"),
                            ("index.html", "text/html")):
            r = harness.http(self.port, "GET", "/ui/" + name)
            self.assertStatus(r, 200)
            self.assertTrue(r.header("Content-Type").startswith(ctype), r)
            self.assertIsNotNone(r.header("Content-Security-Policy"))
        self.assertNotEqual(harness.http(self.port, "GET", "/ui/app.css").header("ETag"), etag)

        # only files of ui/: other names, the OpenAPI document by a detour, long names
        for bad in ("nope.js", "..%2Fdocs%2Fopenapi.yaml", "%2E%2E", "x" * 300 + ".js"):
            r = harness.http(self.port, "GET", "/ui/" + bad)
            self.assertIn(r.status, (400, 404), (bad, r))
            self.assertIsInstance(r.json, dict, r)
        # the answers of the API keep their no-store
        r = harness.http(self.port, "GET", "/v1/s_count/summary",
                         key=self.keys[("s_count", "test")])
        self.assertEqual(r.header("Cache-Control"), "no-store")


if __name__ == "__main__":
    harness.main()
