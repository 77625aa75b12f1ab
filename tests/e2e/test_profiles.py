"""Unified customers (issue #4 §1) end to end: the real binary over HTTP, records arriving from two
sources — the webhook (POST /v1/{client}/ingest) and a `feed` connector with "source": "crm"
served by fake_sources.FakeSources — linked into profiles.

Covered: linking across sources by e-mail (case and whitespace ignored), the most restrictive
opt-out, lookups by e-mail and by source id, split (201, the split sticks after an update from
its source, 409 for the only member, 404, validation pointers), the tenant's link rule over
PATCH /admin/v1/tenants/{client} and the CLI, suppressions over the admin API and the CLI
(hashes only, checked at ingest), erasure (400 without erase=profile, 409 when ambiguous, 200
with counts; records gone, sales ANON, no trace of the address in any table of the database,
the stored idempotent answer quoting the id purged, the person suppressed when sent again).

store suite: both backends (the checks that read the database read it with sqlite3 or psql)."""

import json
import os
import sqlite3
import subprocess
import unittest
import urllib.parse

import harness
from fake_sources import FakeSources
from harness import customer, event, sale, uid

T = harness.TIME_SCALE
RUN_TIMEOUT = 30.0 * T
CLIENT = "unified"
OTHER = "rules"


class Fixture:
    pass


def setUpModule():
    import tempfile
    d = tempfile.TemporaryDirectory(prefix="sd-e2e-profiles-")
    unittest.addModuleCleanup(d.cleanup)
    Fixture.data = d.name
    harness.tenant_create(Fixture.data, CLIENT)
    harness.tenant_create(Fixture.data, OTHER)
    Fixture.key = harness.key_create(Fixture.data, CLIENT, "test")
    Fixture.other_key = harness.key_create(Fixture.data, OTHER, "test")
    Fixture.prod_key = harness.key_create(Fixture.data, CLIENT, "prod")
    Fixture.server = harness.Server(Fixture.data)
    unittest.addModuleCleanup(Fixture.server.kill)
    Fixture.server.start()
    with open(os.path.join(Fixture.data, "admin.token")) as f:
        Fixture.admin_token = f.read().strip()
    Fixture.fs = FakeSources().start()
    unittest.addModuleCleanup(Fixture.fs.stop)
    Fixture.api = Fixture.server.api(CLIENT, Fixture.key)


def tearDownModule():
    Fixture.fs.stop()
    rc = Fixture.server.stop()
    if rc != 0:
        raise AssertionError("server exit code %r after SIGTERM\n%s"
                             % (rc, Fixture.server.diagnostics()))


def q(s):
    return urllib.parse.quote(s, safe="")


def db_rows(sql):
    """The rows of one SELECT on the store's database (SQLite file or PostgreSQL database),
    as tuples; PostgreSQL's integers come back as ints, like SQLite's."""
    if not harness.PG_MODE:
        with sqlite3.connect(os.path.join(Fixture.data, "stagedoor.db")) as db:
            return db.execute(sql).fetchall()
    cp = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1",
                         harness.store_url(Fixture.data), "-c", sql],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        stdin=subprocess.DEVNULL, timeout=60)
    if cp.returncode != 0:
        raise AssertionError("psql %r: %s" % (sql, cp.stderr))
    return [tuple(int(v) if v.isdigit() else v for v in line.split("\x1f"))
            for line in cp.stdout.splitlines()]


def sql_text(v):
    """v as an SQL string literal (test values only)."""
    return "'%s'" % v.replace("'", "''")


def tables_holding(needle):
    """The tables of the store's database with needle in some column (as text; BYTEA as
    bytes)."""
    found = []
    if not harness.PG_MODE:
        with sqlite3.connect(os.path.join(Fixture.data, "stagedoor.db")) as db:
            tables = [t for (t,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            for t in tables:
                cols = [c[1] for c in db.execute("PRAGMA table_info(%s)" % t)]
                where = " OR ".join("instr(CAST(%s AS TEXT), ?) > 0" % c for c in cols)
                n = db.execute("SELECT count(*) FROM %s WHERE %s" % (t, where),
                               [needle] * len(cols)).fetchone()[0]
                if n:
                    found.append(t)
        return found
    cols = {}
    for t, c, ty in db_rows("SELECT table_name, column_name, data_type FROM"
                            " information_schema.columns WHERE table_schema = 'public'"
                            " ORDER BY table_name, ordinal_position"):
        if ty == "bytea":
            cols.setdefault(t, []).append("position(convert_to(%s, 'UTF8') in %s) > 0"
                                          % (sql_text(needle), c))
        else:
            cols.setdefault(t, []).append("strpos(CAST(%s AS TEXT), %s) > 0"
                                          % (c, sql_text(needle)))
    query = " UNION ALL ".join("SELECT %s, count(*) FROM %s WHERE %s"
                               % (sql_text(t), t, " OR ".join(w)) for t, w in cols.items())
    return [t for t, n in db_rows(query) if n]


class ProfilesCase(unittest.TestCase):
    def setUp(self):
        self.api = Fixture.api
        self.port = Fixture.server.port

    # -- helpers
    def tenant_req(self, method, path, body=None, key=None, client=CLIENT):
        return harness.http(self.port, method, "/v1/%s%s" % (client, path), body=body,
                            key=key or Fixture.key)

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1/tenants%s" % path, body=body,
                            key=Fixture.admin_token)

    def ingest_ok(self, body, key=None, client=CLIENT, headers=None):
        r = harness.http(self.port, "POST", "/v1/%s/ingest" % client, body=body,
                         key=key or Fixture.key, headers=headers)
        self.assertEqual(r.status, 202, r)
        return r

    def by_email(self, email, key=None, client=CLIENT):
        r = self.tenant_req("GET", "/profiles?email=" + q(email), key=key, client=client)
        self.assertEqual(r.status, 200, r)
        return r.json["data"]

    def by_source(self, source, cid, key=None, client=CLIENT):
        r = self.tenant_req("GET", "/profiles?source=%s&customer_id=%s" % (q(source), q(cid)),
                            key=key, client=client)
        self.assertEqual(r.status, 200, r)
        return r.json["data"]

    def one_by_source(self, source, cid, **kw):
        data = self.by_source(source, cid, **kw)
        self.assertEqual(len(data), 1, data)
        return data[0]

    def feed_run(self, body, source="crm"):
        """Serve body as a JSON feed, run a feed connector with this source label once."""
        path = "/%s/feed.json" % uid("crm")
        Fixture.fs.add_feed(path, json.dumps(body), "application/json")
        r = self.admin("POST", "/%s/connectors" % CLIENT, {
            "type": "feed", "environment": "test", "schedule": "manual",
            "settings": {"url": Fixture.fs.address(path), "source": source,
                         "timeout_seconds": 5, "retry_initial_ms": 50, "max_attempts": 2}})
        self.assertEqual(r.status, 201, r)
        cid = r.json["connector_id"]
        r = self.admin("POST", "/%s/connectors/%s/run" % (CLIENT, cid))
        self.assertEqual(r.status, 202, r)

        def done():
            st = self.admin("GET", "/%s/connectors/%s" % (CLIENT, cid)).json["status"]
            return st if st["state"] not in ("running", "never_run") else None
        st = harness.wait_until(done, RUN_TIMEOUT, what="feed run")
        self.assertEqual(st["state"], "ok", st)

    def sources_of(self, profile):
        return sorted((s["source"], s["customer_id"]) for s in profile["sources"])

    # -- linking
    def test_link_across_sources_and_lookups(self):
        ev = event()
        c1 = uid("C")
        crm_id = uid("K")
        self.ingest_ok({"events": [ev], "customers": [
            customer(c1, email="  Ada.Lovelace@Example.COM ", first_name="Ada",
                     last_name="Lovelace", ad_opt_out=False)],
            "sales": [sale(event_id=ev["event_id"], customer_id=c1)]})
        self.feed_run({"customers": [customer(crm_id, email="ada.lovelace@example.com",
                                              ad_opt_out=True)]})
        data = self.by_email("ADA.lovelace@example.com")
        self.assertEqual(len(data), 1, data)
        p = data[0]
        self.assertEqual(self.sources_of(p), sorted([("webhook", c1), ("crm", crm_id)]))
        self.assertEqual(p["emails"], ["ada.lovelace@example.com"])
        self.assertIs(p["opt_out"], True)  # the crm said true: most restrictive wins
        self.assertIs(p["suppressed"], False)
        web = [s for s in p["sources"] if s["source"] == "webhook"][0]
        self.assertIs(web["ad_opt_out"], False)
        self.assertEqual(web["first_name"], "Ada")
        self.assertEqual(web["record"]["customer_id"], c1)
        self.assertTrue(p["created_at"].endswith("Z"))

        got = self.tenant_req("GET", "/profiles/%d" % p["profile_id"])
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json["profile_id"], p["profile_id"])
        self.assertEqual(self.one_by_source("crm", crm_id)["profile_id"], p["profile_id"])
        r = self.tenant_req("GET", "/profiles?customer_id=" + q(c1))
        self.assertEqual([x["profile_id"] for x in r.json["data"]], [p["profile_id"]])

        # the webhook later says false again: the crm's true stays
        self.ingest_ok({"customers": [customer(c1, email="ada.lovelace@example.com",
                                               ad_opt_out=False)]})
        self.assertIs(self.one_by_source("webhook", c1)["opt_out"], True)

        # scoped to the key's environment and tenant
        self.assertEqual(self.by_email("ada.lovelace@example.com", key=Fixture.prod_key), [])
        r = self.tenant_req("GET", "/profiles/%d" % p["profile_id"], key=Fixture.prod_key)
        self.assertEqual(r.status, 404, r)
        r = self.tenant_req("GET", "/profiles/%d" % p["profile_id"], key=Fixture.other_key,
                            client=OTHER)
        self.assertEqual(r.status, 404, r)

    def test_lookup_errors(self):
        self.assertEqual(self.by_email("nobody-%s@example.com" % uid("n").lower()), [])
        for query in ("", "?email=not-an-address", "?email=a%40b.example&customer_id=1",
                      "?source=crm"):
            r = self.tenant_req("GET", "/profiles" + query)
            self.assertEqual(r.status, 400, (query, r))
            self.assertEqual(r.json["error"], "invalid_parameter")
        for pid in ("abc", "0", "-3", "999999999"):
            r = self.tenant_req("GET", "/profiles/" + pid)
            self.assertEqual(r.status, 404, (pid, r))
        r = harness.http(self.port, "GET", "/v1/%s/profiles/1" % CLIENT)
        self.assertEqual(r.status, 401, r)

    # -- split
    def test_split_sticks(self):
        a, b = uid("F"), uid("F")
        email = "%s@family.example" % uid("fam").lower()
        self.ingest_ok({"customers": [customer(a, email=email), customer(b, email=email)]})
        p = self.one_by_source("webhook", a)
        self.assertEqual(len(p["sources"]), 2)

        r = self.tenant_req("POST", "/profiles/%d/split" % p["profile_id"],
                            {"source": "webhook", "customer_id": b})
        self.assertEqual(r.status, 201, r)
        new = r.json
        self.assertNotEqual(new["profile_id"], p["profile_id"])
        self.assertEqual(self.sources_of(new), [("webhook", b)])
        self.assertIs(new["sources"][0]["pinned"], True)
        self.assertTrue(r.header("Location").endswith("/profiles/%d" % new["profile_id"]))
        self.assertEqual(self.sources_of(self.one_by_source("webhook", a)), [("webhook", a)])

        # an update of b from its source does not link it back
        self.ingest_ok({"customers": [customer(b, email=email, first_name="Bo")]})
        self.assertEqual(self.one_by_source("webhook", b)["profile_id"], new["profile_id"])
        # a new record with the address joins the original profile, not the split one
        c = uid("F")
        self.ingest_ok({"customers": [customer(c, email=email.upper())]})
        self.assertEqual(self.one_by_source("webhook", c)["profile_id"], p["profile_id"])
        self.assertEqual(len(self.by_email(email)), 2)

        r = self.tenant_req("POST", "/profiles/%d/split" % new["profile_id"],
                            {"source": "webhook", "customer_id": b})
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json["error"], "only_member")
        r = self.tenant_req("POST", "/profiles/%d/split" % p["profile_id"],
                            {"source": "webhook", "customer_id": b})
        self.assertEqual(r.status, 404, r)
        r = self.tenant_req("POST", "/profiles/%d/split" % p["profile_id"],
                            {"source": "", "customer_id": 7, "extra": 1})
        self.assertEqual(r.status, 400, r)
        pointers = sorted(e["pointer"] for e in r.json["errors"])
        self.assertEqual(pointers, ["/customer_id", "/extra", "/source"])

    # -- link rule
    def test_link_rule(self):
        r = self.admin("GET", "/" + OTHER)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["link_rule"], "email")
        r = self.admin("PATCH", "/" + OTHER, {"link_rule": "by_phone"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual([e["pointer"] for e in r.json["errors"]], ["/link_rule"])
        r = self.admin("PATCH", "/" + OTHER, {"link_rule": "none", "colour": "red"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual([e["pointer"] for e in r.json["errors"]], ["/colour"])
        r = self.admin("PATCH", "/nosuchtenant", {"link_rule": "none"})
        self.assertEqual(r.status, 404, r)

        r = self.admin("PATCH", "/" + OTHER, {"link_rule": "email_and_last_name"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["link_rule"], "email_and_last_name")
        email = "%s@shared.example" % uid("s").lower()
        x, y, z = uid("P"), uid("P"), uid("P")
        self.ingest_ok({"customers": [customer(x, email=email, last_name="Meyer"),
                                      customer(y, email=email, last_name=" MEYER "),
                                      customer(z, email=email, last_name="Schulz")]},
                       key=Fixture.other_key, client=OTHER)
        px = self.one_by_source("webhook", x, key=Fixture.other_key, client=OTHER)
        self.assertEqual(self.sources_of(px), sorted([("webhook", x), ("webhook", y)]))
        self.assertEqual(len(self.by_email(email, key=Fixture.other_key, client=OTHER)), 2)

        # the CLI shows and sets the same rule
        out = harness.cli(Fixture.data, "profile", "link-rule", OTHER)
        self.assertEqual((out.returncode, out.stdout.strip()), (0, "email_and_last_name"), out)
        out = harness.cli(Fixture.data, "profile", "link-rule", OTHER, "none")
        self.assertEqual((out.returncode, out.stdout.strip()), (0, "none"), out)
        self.assertEqual(self.admin("GET", "/" + OTHER).json["link_rule"], "none")
        out = harness.cli(Fixture.data, "profile", "link-rule", OTHER, "sometimes")
        self.assertEqual(out.returncode, 2, out)
        a, b = uid("N"), uid("N")
        email2 = "%s@none.example" % uid("n").lower()
        self.ingest_ok({"customers": [customer(a, email=email2), customer(b, email=email2)]},
                       key=Fixture.other_key, client=OTHER)
        self.assertEqual(len(self.by_email(email2, key=Fixture.other_key, client=OTHER)), 2)

    # -- suppression
    def test_suppression(self):
        before = "%s@before.example" % uid("b").lower()
        later = "%s@later.example" % uid("l").lower()
        cli_addr = "%s@cli.example" % uid("c").lower()
        cb = uid("S")
        self.ingest_ok({"customers": [customer(cb, email=before)]})
        self.assertIs(self.one_by_source("webhook", cb)["suppressed"], False)

        r = self.admin("POST", "/%s/suppressions" % CLIENT,
                       {"environment": "test", "emails": [before, "nope", " " + later.upper()]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual([e["pointer"] for e in r.json["errors"]], ["/emails/1"])
        r = self.admin("POST", "/%s/suppressions" % CLIENT, {"emails": [before]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual([e["pointer"] for e in r.json["errors"]], ["/environment"])

        r = self.admin("POST", "/%s/suppressions" % CLIENT,
                       {"environment": "test", "emails": [before.upper(), " " + later]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["added"], r.json["already_suppressed"],
                          r.json["profiles_suppressed"]), (2, 0, 1), r.json)
        self.assertIs(self.one_by_source("webhook", cb)["suppressed"], True)

        cl = uid("S")
        self.ingest_ok({"customers": [customer(cl, email=later)]})
        p = self.one_by_source("webhook", cl)
        self.assertIs(p["suppressed"], True)  # checked at ingest
        self.assertIs(p["opt_out"], False)
        # not in prod: a list per environment
        self.ingest_ok({"customers": [customer(cl, email=later)]}, key=Fixture.prod_key)
        self.assertIs(self.one_by_source("webhook", cl, key=Fixture.prod_key)["suppressed"],
                      False)

        out = harness.cli(Fixture.data, "profile", "suppress", CLIENT, "--env", "test",
                          cli_addr, before)
        self.assertEqual(out.returncode, 0, out)
        self.assertIn("added 1, already suppressed 1", out.stdout)
        self.assertNotIn(cli_addr, out.stdout + out.stderr)
        cc = uid("S")
        self.ingest_ok({"customers": [customer(cc, email=cli_addr)]})
        self.assertIs(self.one_by_source("webhook", cc)["suppressed"], True)

        # stored as hashes only
        rows = db_rows("SELECT email_hash FROM suppression")
        self.assertTrue(rows)
        for (h,) in rows:
            self.assertRegex(h, r"^[0-9a-f]{64}$")

    # -- erasure
    def test_erasure(self):
        ev = event()
        email = "%s@erase.example" % uid("e").lower()
        cid, crm_id, keep = uid("E"), uid("K"), uid("E")
        # a refused request quoting the id, stored under its Idempotency-Key
        early = {"events": [ev], "sales": [sale(event_id=ev["event_id"], customer_id=cid)]}
        idem = uid("idem")
        r = harness.http(self.port, "POST", "/v1/%s/ingest" % CLIENT, body=early,
                         key=Fixture.key, headers={"Idempotency-Key": idem})
        self.assertEqual(r.status, 400, r)
        self.assertIn(cid, json.dumps(r.json))

        s1 = sale(event_id=ev["event_id"], customer_id=cid)
        s2 = sale(event_id=ev["event_id"], customer_id=keep)
        self.ingest_ok({"events": [ev], "customers": [
            customer(cid, email=email, first_name="Erin", last_name="Erased"),
            customer(keep, email="%s@keep.example" % uid("k").lower())],
            "sales": [s1, s2]})
        crm_sale = sale(event_id=ev["event_id"], customer_id=crm_id)
        self.feed_run({"events": [ev], "customers": [customer(crm_id, email=email.upper())],
                       "sales": [crm_sale]})
        p = self.one_by_source("webhook", cid)
        self.assertEqual(len(p["sources"]), 2)

        r = self.tenant_req("DELETE", "/customers/" + q(cid))
        self.assertEqual(r.status, 400, r)
        self.assertIn("erase=profile", r.json["message"])
        r = self.tenant_req("DELETE", "/customers/%s?erase=everything" % q(cid))
        self.assertEqual(r.status, 400, r)
        r = self.tenant_req("DELETE", "/customers/%s?erase=profile" % q(uid("none")))
        self.assertEqual(r.status, 404, r)

        r = self.tenant_req("DELETE", "/customers/%s?erase=profile" % q(cid))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"erased": True, "profile_id": p["profile_id"],
                                  "records_erased": 2, "sales_anonymized": 2})

        self.assertEqual(self.api.get("customers", cid).status, 404)
        self.assertEqual(self.api.get("customers", crm_id).status, 404)
        self.assertEqual(self.tenant_req("GET", "/profiles/%d" % p["profile_id"]).status, 404)
        for s in (s1, crm_sale):
            got = self.api.get("sales", s["invoice_number"])
            self.assertEqual(got.status, 200, got)
            self.assertEqual(got.json["customer_id"], "ANON")
        self.assertEqual(self.api.get("sales", s2["invoice_number"]).json["customer_id"], keep)
        self.assertEqual(self.api.get("customers", keep).status, 200)

        # no trace of the person in any table of the database
        self.assertIn("sales", tables_holding("ANON"))  # the search finds what is there
        for needle in (email, email.upper(), "Erased", "'%s'" % cid):
            self.assertEqual(tables_holding(needle), [], "%r still in the database" % needle)
        er = db_rows("SELECT records_erased, sales_anonymized FROM erasures"
                     " WHERE profile_id = %d" % p["profile_id"])
        self.assertEqual(er, [(2, 2)])
        reasons = db_rows("SELECT reason FROM suppression WHERE email_hash = '%s'"
                          % __import__("hashlib").sha256(email.encode()).hexdigest())
        self.assertEqual(reasons, [("erased",)])

        # a source sends the person again: a new profile, suppressed
        self.ingest_ok({"customers": [customer(cid, email=email)]})
        again = self.one_by_source("webhook", cid)
        self.assertNotEqual(again["profile_id"], p["profile_id"])
        self.assertIs(again["suppressed"], True)

    def test_erasure_ambiguous_and_cli(self):
        dup = uid("D")
        self.ingest_ok({"customers": [customer(dup, email="%s@a.example" % uid("a").lower())]})
        self.feed_run({"customers": [customer(dup, email="%s@b.example" % uid("b").lower())]},
                      source="shop")
        r = self.tenant_req("DELETE", "/customers/%s?erase=profile" % q(dup))
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json["error"], "ambiguous_customer")
        r = self.tenant_req("DELETE", "/customers/%s?erase=profile&source=shop" % q(dup))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["records_erased"], 1)
        self.assertEqual(self.by_source("shop", dup), [])

        # the CLI: show/find print JSON; erase needs --yes
        pid = self.one_by_source("webhook", dup)["profile_id"]
        out = harness.cli(Fixture.data, "profile", "show", CLIENT, "--env", "test", str(pid))
        self.assertEqual(out.returncode, 0, out)
        self.assertEqual(json.loads(out.stdout)["profile_id"], pid)
        out = harness.cli(Fixture.data, "profile", "find", CLIENT, "--env", "test",
                          "--customer-id", dup, "--source", "webhook")
        self.assertEqual([x["profile_id"] for x in json.loads(out.stdout)["data"]], [pid])
        out = harness.cli(Fixture.data, "profile", "erase", CLIENT, "--env", "test", dup)
        self.assertEqual(out.returncode, 2, out)
        out = harness.cli(Fixture.data, "profile", "erase", CLIENT, "--env", "test", dup, "--yes")
        self.assertEqual(out.returncode, 0, out)
        self.assertEqual(json.loads(out.stdout)["records_erased"], 1)
        self.assertEqual(self.api.get("customers", dup).status, 404)
        out = harness.cli(Fixture.data, "profile", "show", CLIENT, "--env", "test", str(pid))
        self.assertEqual(out.returncode, 1, out)


if __name__ == "__main__":
    harness.main()
