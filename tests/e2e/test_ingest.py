"""POST /v1/{client_id}/ingest and PUT /v1/{client_id}/sales/{invoice}: auth, content type,
validation, malformed JSON, transactions, duplicates, aliases, environments, idempotency,
size limits, rate limits, and the generic HTTP behaviour (405, 404, X-Request-Id, /healthz,
/metrics).

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import json
import re
import threading
import time
import unittest

import harness
from harness import customer, event, sale, uid, without

MiB = 1024 * 1024


class Fixture(harness.ServerCase):
    """One server for the whole module (set up once: starting it per class costs seconds under
    a sanitizer). Tenants: acme (test, prod), other (test), rl (test, prod; burst 5)."""
    TENANTS = {"acme": ["test", "prod"], "other": ["test"], "rl": ["test", "prod"],
               "rl2": ["test"]}

    @classmethod
    def prepare(cls):
        # a revoked acme key
        before = {r["key_id"] for r in harness.key_list(cls.data, "acme")}
        cls.revoked_key = harness.key_create(cls.data, "acme", "test")
        harness.key_revoke(cls.data, harness.new_key_id(cls.data, "acme", before))
        # tenant 'rl' gets tiny limits before the server ever sees it
        harness.tenant_limits(cls.data, "rl", 1, 5)
        # and 'rl2' one token, refilled every second
        harness.tenant_limits(cls.data, "rl2", 60, 1)


def setUpModule():
    # class cleanups registered by Fixture.setUpClass run at doClassCleanups; run them at
    # module teardown instead
    unittest.addModuleCleanup(Fixture.doClassCleanups)
    Fixture.setUpClass()


def tearDownModule():
    Fixture.tearDownClass()


class IngestBase(harness.ServerCase):
    @classmethod
    def setUpClass(cls):
        for name in ("data", "keys", "server", "port", "revoked_key"):
            setattr(cls, name, getattr(Fixture, name))
        cls.acme = harness.Api(cls.port, "acme", cls.keys[("acme", "test")])
        cls.acme_prod = harness.Api(cls.port, "acme", cls.keys[("acme", "prod")])
        if not hasattr(Fixture, "ev"):
            # one stored event and customer that sales can reference
            Fixture.ev = event(uid("BASE"))
            Fixture.cu = customer(uid("BASECUS"))
            r = cls.acme.ingest({"events": [Fixture.ev], "customers": [Fixture.cu]})
            if r.status != 202:
                raise AssertionError("could not store the base event: %r" % (r,))
        cls.ev, cls.cu = Fixture.ev, Fixture.cu

    @classmethod
    def tearDownClass(cls):
        pass

    # helpers
    def ok(self, body, api=None, **kw):
        r = (api or self.acme).ingest(body, **kw)
        self.assertStatus(r, 202)
        return r

    def absent(self, kind, rid, api=None):
        r = (api or self.acme).get(kind, rid)
        self.assertEqual(r.status, 404, "%s/%s should not be stored: %r" % (kind, rid, r))

    def present(self, kind, rid, api=None):
        r = (api or self.acme).get(kind, rid)
        self.assertEqual(r.status, 200, "%s/%s should be stored: %r" % (kind, rid, r))
        self.assertIsInstance(r.json, dict, r)
        return r.json

    def sale_for(self, **kw):
        kw.setdefault("event_id", self.ev["event_id"])
        return sale(uid("INV"), **kw)


class AuthTests(IngestBase):
    def body(self):
        return {"events": [event()]}

    def assert401(self, r):
        self.assertStatus(r, 401)
        self.assertTrue(r.header("WWW-Authenticate", "").lower().startswith("bearer"),
                        "WWW-Authenticate: %r" % r.header("WWW-Authenticate"))

    def test_missing_key(self):
        self.assert401(self.acme.ingest(self.body(), key=None))

    def test_unknown_key(self):
        self.assert401(self.acme.ingest(self.body(), key="sd_test_" + "A" * 40))
        self.assert401(self.acme.ingest(self.body(), key="garbage"))

    def test_scheme_is_case_insensitive(self):
        r = self.acme.ingest(self.body(), key=None,
                             headers={"Authorization": "bearer " + self.keys[("acme", "test")]})
        self.assertStatus(r, 202)

    def test_not_bearer(self):
        r = self.acme.ingest(self.body(), key=None,
                             headers={"Authorization": "Basic " + self.keys[("acme", "test")]})
        self.assert401(r)

    def test_revoked_key(self):
        self.assert401(self.acme.ingest(self.body(), key=self.revoked_key))

    def test_other_tenants_key(self):
        b = self.body()
        self.assertStatus(self.acme.ingest(b, key=self.keys[("other", "test")]), 403)
        self.absent("events", b["events"][0]["event_id"])
        r = self.acme.get("events", key=self.keys[("other", "test")])
        self.assertStatus(r, 403)
        s = self.sale_for()
        self.ok({"sales": [s]})
        self.assertStatus(self.acme.get("sales", s["invoice_number"],
                                        key=self.keys[("other", "test")]), 403)
        r = self.acme.put_sale(s["invoice_number"], dict(s, quantity=9),
                               key=self.keys[("other", "test")])
        self.assertStatus(r, 403)
        self.assertEqual(self.present("sales", s["invoice_number"])["quantity"], 2)

    def test_unknown_client_id(self):
        api = harness.Api(self.port, "nobody", self.keys[("acme", "test")])
        self.assertStatus(api.ingest(self.body()), 403)
        self.assertStatus(api.get("events"), 403)

    def test_reads_need_auth(self):
        r = self.acme.get("events", key=None)
        self.assert401(r)
        self.assert401(self.acme.get("sales", "X", key=self.revoked_key))


class ContentTypeTests(IngestBase):
    def test_wrong_content_types(self):
        body = json.dumps({"events": [event()]})
        for ct in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                   "application/xml"):
            with self.subTest(ct=ct):
                r = self.acme.ingest(body, headers={"Content-Type": ct})
                self.assertStatus(r, 415)

    def test_missing_content_type(self):
        r = self.acme.req("POST", "/v1/acme/ingest", body=json.dumps({"events": [event()]}))
        self.assertStatus(r, 415)

    def test_charset_allowed(self):
        e = event()
        r = self.acme.ingest(json.dumps({"events": [e]}),
                             headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertStatus(r, 202)
        self.present("events", e["event_id"])
        e2 = event()
        r = self.acme.ingest(json.dumps({"events": [e2]}),
                             headers={"Content-Type": "Application/JSON;charset=UTF-8"})
        self.assertStatus(r, 202)


class AcceptTests(IngestBase):
    def test_202_shape_and_all_types(self):
        e, c = event(), customer()
        s = sale(uid("INV"), e["event_id"], c["customer_id"])
        # sales first in the document: still applied after events and customers
        r = self.ok({"sales": [s], "customers": [c], "events": [e]})
        j = r.json
        self.assertEqual(j.get("status"), "queued", j)
        self.assertIsInstance(j.get("request_id"), str)
        self.assertTrue(j["request_id"])
        self.assertEqual(j.get("accepted"), {"events": 1, "customers": 1, "sales": 1}, j)
        self.assertEqual(j.get("warnings"), [], j)
        got = self.present("events", e["event_id"])
        for k, v in e.items():
            self.assertEqual(got.get(k), v, "event field %s" % k)
        got = self.present("customers", c["customer_id"])
        self.assertEqual(got.get("email"), c["email"])
        got = self.present("sales", s["invoice_number"])
        self.assertEqual(got.get("event_id"), e["event_id"])
        self.assertEqual(got.get("customer_id"), c["customer_id"])
        self.assertEqual(got.get("quantity"), 2)
        self.assertEqual(got.get("sales_price"), "89.00")
        self.assertEqual(got.get("currency"), "EUR")
        self.assertEqual(got.get("ticket_category"), "regular")
        self.assertEqual(got.get("purchase_datetime"), "2025-04-15T11:08:42Z")

    def test_counts(self):
        evs = [event() for _ in range(3)]
        cus = [customer() for _ in range(2)]
        r = self.ok({"events": evs, "customers": cus})
        self.assertEqual(r.json["accepted"], {"events": 3, "customers": 2, "sales": 0})
        r = self.ok({"sales": [self.sale_for(), self.sale_for()]})
        self.assertEqual(r.json["accepted"], {"events": 0, "customers": 0, "sales": 2})

    def test_full_optional_fields(self):
        e = event(work_title="Otello", composer="Giuseppe Verdi",
                  cast=[{"name": "Pl\u00e1cido Domingo", "role": "Otello"}, {"name": "Chorus"}])
        c = customer(salutation="Ms", first_name="Jane", last_name="Doe",
                     street="Main St 12A", post_code="10115", ad_opt_out=False)
        s = sale(uid("INV"), e["event_id"], c["customer_id"], base_price="75.00")
        r = self.ok({"events": [e], "customers": [c], "sales": [s]})
        self.assertEqual(r.json["warnings"], [])
        got = self.present("events", e["event_id"])
        self.assertEqual(got["cast"], e["cast"])
        self.assertEqual(got["composer"], "Giuseppe Verdi")
        got = self.present("customers", c["customer_id"])
        for k in ("salutation", "first_name", "last_name", "street", "post_code"):
            self.assertEqual(got.get(k), c[k])
        self.assertIs(got.get("ad_opt_out"), False)
        self.assertEqual(self.present("sales", s["invoice_number"]).get("base_price"), "75.00")

    def test_warning_pointers_are_escaped(self):
        e = event(**{"a/b~c": 1})
        r = self.ok({"events": [e]})
        ptrs = [w.get("pointer") for w in r.json["warnings"] if isinstance(w, dict)]
        self.assertIn("/events/0/a~1b~0c", ptrs, r.json["warnings"])
        self.assertEqual(self.present("events", e["event_id"]).get("a/b~c"), 1)

    def test_query_string_ignored(self):
        e = event()
        r = self.acme.req("POST", "/v1/acme/ingest?source=test", body={"events": [e]})
        self.assertStatus(r, 202)

    def test_email_kept_as_sent(self):
        c = customer(email="Jane.Doe+Tix@Example.COM")
        self.ok({"customers": [c]})
        self.assertEqual(self.present("customers", c["customer_id"])["email"],
                         "Jane.Doe+Tix@Example.COM")

    def test_anonymous_sale(self):
        s = self.sale_for(customer_id="ANON")
        self.ok({"sales": [s]})
        self.assertEqual(self.present("sales", s["invoice_number"])["customer_id"], "ANON")

    def test_upsert_event_and_customer(self):
        e = event(title="First")
        c = customer(first_name="Ann")
        self.ok({"events": [e], "customers": [c]})
        e2 = dict(e, title="Second", capacity=99)
        c2 = dict(c, first_name="Anna", email="anna@example.org")
        r = self.ok({"events": [e2], "customers": [c2]})
        self.assertEqual(r.json["accepted"], {"events": 1, "customers": 1, "sales": 0})
        got = self.present("events", e["event_id"])
        self.assertEqual((got["title"], got["capacity"]), ("Second", 99))
        got = self.present("customers", c["customer_id"])
        self.assertEqual((got["first_name"], got["email"]), ("Anna", "anna@example.org"))

    def test_unknown_fields_kept_and_warned(self):
        e = event(promoter="Live Nation", x_meta={"a": [1, 2], "b": None})
        c = customer(loyalty_tier="gold")
        s = sale(uid("INV"), e["event_id"], c["customer_id"], seat_row="A12")
        r = self.ok({"events": [e], "customers": [c], "sales": [s]})
        w = json.dumps(r.json["warnings"])
        for name in ("promoter", "x_meta", "loyalty_tier", "seat_row"):
            self.assertIn(name, w, "warnings do not name %s: %s" % (name, w))
        got = self.present("events", e["event_id"])
        self.assertEqual(got.get("promoter"), "Live Nation")
        # null members are not stored (an update's null clears a field: RFC 7396 merge patch)
        self.assertEqual(got.get("x_meta"), {"a": [1, 2]})
        self.assertEqual(self.present("customers", c["customer_id"]).get("loyalty_tier"), "gold")
        self.assertEqual(self.present("sales", s["invoice_number"]).get("seat_row"), "A12")


class ValidationTests(IngestBase):
    def bad(self, body, *pointers, api=None):
        r = (api or self.acme).ingest(body)
        errs = self.assertValidationError(r, *pointers)
        for e in body.get("events", []) if isinstance(body, dict) else []:
            if isinstance(e, dict) and isinstance(e.get("event_id"), str) and e["event_id"]:
                if e["event_id"] != self.ev["event_id"]:
                    self.absent("events", e["event_id"], api)
        for s in body.get("sales", []) if isinstance(body, dict) else []:
            if isinstance(s, dict) and isinstance(s.get("invoice_number"), str) \
                    and s["invoice_number"]:
                self.absent("sales", s["invoice_number"], api)
        return errs

    # -- events
    def test_event_required_fields(self):
        for f in ("event_id", "title", "date", "time", "venue", "hall", "capacity", "city"):
            with self.subTest(missing=f):
                self.bad({"events": [without(event(), f)]}, "/events/0/" + f)

    def test_event_bad_values(self):
        cases = [
            ("event_id", ""), ("event_id", 123), ("title", ""), ("title", None), ("venue", ""),
            ("hall", ""), ("city", ""), ("city", 5),
            ("date", "2025-02-29"), ("date", "1900-02-29"), ("date", "2025-13-01"),
            ("date", "2025-04-31"), ("date", "2025-00-10"), ("date", "2025-4-01"),
            ("date", "20251003"), ("date", "2025-10-03T19:30:00"), ("date", ""),
            ("time", "24:00:00"), ("time", "19:60:00"), ("time", "19:30:60"),
            ("time", "19:30"), ("time", "7:30:00"), ("time", ""),
            ("capacity", -1), ("capacity", 1.5), ("capacity", "100"), ("capacity", None),
            ("capacity", True),
            ("work_title", 5), ("composer", ["Verdi"]), ("cast", "Domingo"),
        ]
        for field, value in cases:
            with self.subTest(field=field, value=value):
                self.bad({"events": [event(**{field: value})]}, "/events/0/" + field)

    def test_nul_in_string(self):
        # "Strings valid UTF-8 without NUL": refused (a validation error with a pointer, or
        # malformed_json from the parser), nothing stored
        e = event(title="nul\u0000inside")
        r = self.acme.ingest({"events": [e]})
        self.assertStatus(r, 400)
        self.assertIn(r.json.get("error"), ("validation_failed", "malformed_json"), r)
        self.absent("events", e["event_id"])

    def test_cast_member_needs_name(self):
        self.bad({"events": [event(cast=[{"name": "A", "role": "B"}, {"role": "Otello"}])]},
                 "/events/0/cast/1/name")
        self.bad({"events": [event(cast=[{"name": 5}])]}, "/events/0/cast/0/name")
        self.bad({"events": [event(cast=[{"name": "A", "role": 5}])]}, "/events/0/cast/0/role")
        self.bad({"events": [event(cast=["A"])]}, "/events/0/cast/0")

    def test_event_good_boundaries(self):
        cases = [("date", "2024-02-29"), ("date", "2000-02-29"), ("date", "2025-12-31"),
                 ("time", "00:00:00"), ("time", "23:59:59"), ("capacity", 0),
                 ("title", "Cos\u00ec fan tutte \U0001F3AD")]
        for field, value in cases:
            with self.subTest(field=field, value=value):
                e = event(**{field: value})
                self.ok({"events": [e]})
                self.assertEqual(self.present("events", e["event_id"])[field], value)

    # -- customers
    def test_customer_required_fields(self):
        for f in ("customer_id", "email"):
            with self.subTest(missing=f):
                self.bad({"customers": [without(customer(), f)]}, "/customers/0/" + f)

    def test_customer_bad_values(self):
        cases = [("customer_id", "ANON"), ("customer_id", ""), ("email", "not-an-email"),
                 ("email", "jane@"), ("email", "@example.com"),
                 ("email", "jane doe@example.com"), ("email", "jane@@example.com"),
                 ("email", ""), ("email", 5), ("ad_opt_out", "yes"), ("ad_opt_out", 1),
                 ("ad_opt_out", "true"), ("salutation", 5), ("first_name", ["Jane"]),
                 ("last_name", 1), ("street", True), ("post_code", 10115)]
        for field, value in cases:
            with self.subTest(field=field, value=value):
                c = customer(**{field: value})
                self.bad({"customers": [c]}, "/customers/0/" + field)
                if field != "customer_id":
                    self.absent("customers", c["customer_id"])

    def test_customer_good(self):
        for v in (True, False):
            c = customer(ad_opt_out=v)
            self.ok({"customers": [c]})
            self.assertIs(self.present("customers", c["customer_id"])["ad_opt_out"], v)

    # -- sales
    def test_sale_required_fields(self):
        for f in ("invoice_number", "event_id", "customer_id", "purchase_datetime",
                  "ticket_category", "quantity", "sales_price", "currency"):
            with self.subTest(missing=f):
                self.bad({"sales": [without(self.sale_for(), f)]}, "/sales/0/" + f)

    def test_sale_bad_values(self):
        cases = [
            ({"ticket_category": "Regular"}, "ticket_category"),
            ({"ticket_category": "vip"}, "ticket_category"),
            ({"ticket_category": "standard"}, "ticket_category"),
            ({"ticket_category": ""}, "ticket_category"),
            ({"quantity": 0}, "quantity"), ({"quantity": -1}, "quantity"),
            ({"quantity": 1.5}, "quantity"), ({"quantity": "2"}, "quantity"),
            ({"currency": "XXX"}, "currency"), ({"currency": "eur"}, "currency"),
            ({"currency": "EURO"}, "currency"), ({"currency": "ZZZ"}, "currency"),
            ({"currency": ""}, "currency"), ({"currency": 978}, "currency"),
            ({"sales_price": "-1.00"}, "sales_price"), ({"sales_price": -1}, "sales_price"),
            ({"sales_price": "abc"}, "sales_price"), ({"sales_price": ""}, "sales_price"),
            ({"sales_price": "89.001"}, "sales_price"), ({"sales_price": 89.001}, "sales_price"),
            ({"sales_price": None}, "sales_price"), ({"sales_price": True}, "sales_price"),
            ({"currency": "JPY", "sales_price": "100.5"}, "sales_price"),
            ({"currency": "JPY", "sales_price": 100.5}, "sales_price"),
            ({"base_price": "75.001"}, "base_price"), ({"base_price": "-5"}, "base_price"),
            ({"purchase_datetime": "2025-04-15T11:08:42"}, "purchase_datetime"),
            ({"purchase_datetime": "2025-02-29T10:00:00Z"}, "purchase_datetime"),
            ({"purchase_datetime": "2025-04-15T25:00:00Z"}, "purchase_datetime"),
            ({"purchase_datetime": "15.04.2025 11:08"}, "purchase_datetime"),
            ({"purchase_datetime": "2025-04-15"}, "purchase_datetime"),
            ({"purchase_datetime": ""}, "purchase_datetime"),
            ({"event_id": uid("NOEVT")}, "event_id"),
            ({"customer_id": uid("NOCUS")}, "customer_id"),
        ]
        for over, field in cases:
            with self.subTest(**{k: repr(v) for k, v in over.items()}):
                self.bad({"sales": [self.sale_for(**over)]}, "/sales/0/" + field)

    def test_sale_good_values(self):
        cases = [
            ({"ticket_category": "VIP"}, "ticket_category", "VIP"),
            ({"ticket_category": "subscription"}, "ticket_category", "subscription"),
            ({"ticket_category": "comp", "sales_price": 0}, "sales_price", "0.00"),
            ({"quantity": 1}, "quantity", 1),
            ({"sales_price": "89.000"}, "sales_price", "89.00"),
            ({"sales_price": 89.5}, "sales_price", "89.50"),
            ({"sales_price": "89"}, "sales_price", "89.00"),
            ({"sales_price": 120}, "sales_price", "120.00"),
            ({"currency": "JPY", "sales_price": "100"}, "sales_price", "100"),
            ({"currency": "JPY", "sales_price": "100.0"}, "sales_price", "100"),
            ({"currency": "JPY", "sales_price": 1500}, "sales_price", "1500"),
            ({"currency": "BHD", "sales_price": "1.234"}, "sales_price", "1.234"),
            ({"currency": "USD", "sales_price": "12.3"}, "sales_price", "12.30"),
            ({"base_price": "75"}, "base_price", "75.00"),
            ({"base_price": 75.5}, "base_price", "75.50"),
            ({"purchase_datetime": "2025-04-15T13:08:42+02:00"}, "purchase_datetime",
             "2025-04-15T11:08:42Z"),
            ({"purchase_datetime": "2025-12-31T22:30:00-05:00"}, "purchase_datetime",
             "2026-01-01T03:30:00Z"),
            ({"purchase_datetime": "2025-04-15T11:08:42Z"}, "purchase_datetime",
             "2025-04-15T11:08:42Z"),
            ({"purchase_datetime": "2025-04-15T11:08:42+00:00"}, "purchase_datetime",
             "2025-04-15T11:08:42Z"),
            ({"purchase_datetime": "2025-04-15T11:08:42.123+01:00"}, "purchase_datetime",
             "2025-04-15T10:08:42.123Z"),
            ({"purchase_datetime": "2024-03-01T00:30:00+01:00"}, "purchase_datetime",
             "2024-02-29T23:30:00Z"),
            ({"customer_id": self.cu["customer_id"]}, "customer_id", self.cu["customer_id"]),
        ]
        for over, field, want in cases:
            with self.subTest(**{k: repr(v) for k, v in over.items()}):
                s = self.sale_for(**over)
                self.ok({"sales": [s]})
                got = self.present("sales", s["invoice_number"])
                self.assertEqual(got.get(field), want, got)

    def test_json_number_prices_are_exact(self):
        # a JSON number is an exact decimal too: digits beyond the minor unit make it invalid
        # even where a double could not tell them apart
        for num in ("89.0000000000000001", "0.100000000000000000001", "1.0050"):
            with self.subTest(num=num):
                s = self.sale_for(sales_price=0)
                raw = json.dumps({"sales": [s]}).replace('"sales_price": 0',
                                                         '"sales_price": ' + num)
                self.assertIn(num, raw)
                r = self.acme.ingest(raw)
                self.assertValidationError(r, "/sales/0/sales_price")
                self.absent("sales", s["invoice_number"])
        for num, want in (("89.10", "89.10"), ("1E-2", "0.01"), ("1e2", "100.00"),
                          ("9007199254740993", "9007199254740993.00"), ("4.35", "4.35")):
            with self.subTest(num=num):
                s = self.sale_for(sales_price=0)
                raw = json.dumps({"sales": [s]}).replace('"sales_price": 0',
                                                         '"sales_price": ' + num)
                self.assertStatus(self.acme.ingest(raw), 202)
                self.assertEqual(self.present("sales", s["invoice_number"])["sales_price"], want)

    # -- several at once, cap, structure
    def test_several_errors_at_once(self):
        e = event(date="2025-02-29")
        ok_e = event()
        c = customer(email="nope")
        s = self.sale_for(currency="eur", quantity=0)
        errs = self.bad({"events": [ok_e, e], "customers": [c], "sales": [s]},
                        "/events/1/date", "/customers/0/email", "/sales/0/currency",
                        "/sales/0/quantity")
        self.assertGreaterEqual(len(errs), 4)
        self.absent("events", ok_e["event_id"])
        self.absent("customers", c["customer_id"])

    def test_errors_capped_at_100(self):
        sales = [self.sale_for(currency="XXX") for _ in range(150)]
        r = self.acme.ingest({"sales": sales})
        self.assertStatus(r, 400)
        errs = self.errors_of(r)
        self.assertEqual(len(errs), 100, "150 invalid sales: want 100 errors (cap)")
        self.absent("sales", sales[0]["invoice_number"])

    def test_same_invoice_twice_in_request(self):
        inv = uid("INV")
        s1, s2 = self.sale_for(), self.sale_for()
        s1["invoice_number"] = s2["invoice_number"] = inv
        e = event()
        r = self.acme.ingest({"events": [e], "sales": [s1, s2]})
        self.assertStatus(r, 400)
        errs = self.errors_of(r)
        self.assertTrue(any(x["pointer"].startswith("/sales/1") for x in errs), errs)
        self.absent("sales", inv)
        self.absent("events", e["event_id"])

    def test_sale_may_reference_event_and_customer_in_same_request(self):
        e, c = event(), customer()
        s = sale(uid("INV"), e["event_id"], c["customer_id"])
        self.ok({"events": [e], "customers": [c], "sales": [s]})

    def test_missing_event_reference_stores_nothing(self):
        e = event()
        s = self.sale_for(event_id=uid("NOEVT"))
        ok_s = self.sale_for()
        self.bad({"events": [e], "sales": [ok_s, s]}, "/sales/1/event_id")
        self.absent("events", e["event_id"])
        self.absent("sales", ok_s["invoice_number"])

    def test_top_level_shape(self):
        e = event()
        for body in ({}, {"events": []}, {"events": [], "customers": [], "sales": []},
                     {"events": [e], "extra": 1}, {"event": [e]}, {"events": {}},
                     {"sales": "x"}, [], ["events"], "events", 42, None,
                     {"events": [42]}, {"customers": [[]]}):
            with self.subTest(body=json.dumps(body)[:60]):
                r = self.acme.ingest(json.dumps(body))
                self.assertStatus(r, 400)
                self.assertIsInstance(r.json, dict, r)
                self.assertIn(r.json.get("error"), ("validation_failed", "malformed_json"), r)
        self.absent("events", e["event_id"])

    def test_unknown_top_level_member_is_validation_error(self):
        e = event()
        r = self.acme.ingest({"events": [e], "foo": 1})
        self.assertStatus(r, 400)
        self.assertEqual(r.json.get("error"), "validation_failed", r)
        self.absent("events", e["event_id"])


class MalformedJsonTests(IngestBase):
    def malformed(self, raw):
        r = self.acme.ingest(raw)
        self.assertStatus(r, 400)
        self.assertIsInstance(r.json, dict, r)
        self.assertEqual(r.json.get("error"), "malformed_json", r)
        self.assertIsInstance(r.json.get("message"), str, r)
        return r.json["message"]

    def test_truncated(self):
        msg = self.malformed(b'{"events": [')
        self.assertRegex(msg.lower(), r"line", msg)
        self.assertRegex(msg.lower(), r"col", msg)

    def test_line_and_column(self):
        raw = b'{\n  "events": [\n    {"event_id": "x",, "title": "y"}\n  ]\n}\n'
        msg = self.malformed(raw)
        self.assertRegex(msg.lower(), r"line\D{0,3}3\b", msg)
        self.assertRegex(msg.lower(), r"col", msg)

    def test_others(self):
        e = event()
        good = json.dumps({"events": [e]}).encode()
        for raw in (b"", b"   ", b"{", b"nul", good + b" x", good + good, b"{'events': []}",
                    b'{"events": [01]}', b'{"events": [NaN]}',
                    b'{"events": [{"title": "\xff\xfe"}]}', b'{"events": [{"title": "\\ud800"}]}',
                    b'{"events": [{"title": "\xc0\xaf"}]}'):
            with self.subTest(raw=raw[:40]):
                r = self.acme.ingest(raw)
                self.assertStatus(r, 400)
        self.absent("events", e["event_id"])

    def test_invalid_utf8_in_string(self):
        e = event(title="PLACEHOLDER")
        raw = json.dumps({"events": [e]}).encode().replace(b"PLACEHOLDER", b"bad \xc3\x28 utf8")
        r = self.acme.ingest(raw)
        self.assertStatus(r, 400)
        self.absent("events", e["event_id"])

    def test_deep_nesting(self):
        e = event()
        deep = json.dumps({"events": [e]})[:-3] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}]}"
        r = self.acme.ingest(deep)
        self.assertStatus(r, 400)
        self.assertStatus(self.acme.ingest("[" * 200000), 400)
        self.absent("events", e["event_id"])
        self.assertStatus(harness.http(self.port, "GET", "/healthz"), 200)

    def test_duplicate_member_names(self):
        e = event()
        raw = json.dumps({"events": [e]})
        dup_inner = raw.replace('"title": "Otello"', '"title": "Otello", "title": "Aida"')
        self.assertNotEqual(raw, dup_inner)
        self.malformed(dup_inner.encode())
        self.malformed(('{"events": %s, "events": %s}' % (json.dumps([e]),
                                                          json.dumps([e]))).encode())
        self.absent("events", e["event_id"])


class DuplicateInvoiceTests(IngestBase):
    def test_409_nothing_stored(self):
        s = self.sale_for()
        self.ok({"sales": [s]})
        e, c = event(), customer()
        new_sale = self.sale_for()
        dup = dict(s, quantity=7)
        r = self.acme.ingest({"events": [e], "customers": [c], "sales": [new_sale, dup]})
        self.assertStatus(r, 409)
        self.assertEqual(r.json.get("error"), "duplicate_invoice_number", r)
        self.assertEqual(r.json.get("invoice_numbers"), [s["invoice_number"]], r)
        self.absent("events", e["event_id"])
        self.absent("customers", c["customer_id"])
        self.absent("sales", new_sale["invoice_number"])
        self.assertEqual(self.present("sales", s["invoice_number"])["quantity"], 2)

    def test_409_lists_all(self):
        a, b = self.sale_for(), self.sale_for()
        self.ok({"sales": [a, b]})
        r = self.acme.ingest({"sales": [b, self.sale_for(), a]})
        self.assertStatus(r, 409)
        self.assertEqual(sorted(r.json.get("invoice_numbers", [])),
                         sorted([a["invoice_number"], b["invoice_number"]]), r)

    def test_concurrent_same_invoice(self):
        inv = uid("INV")
        results = []

        def worker(i):
            results.append(self.acme.ingest({"sales": [self.sale_for(invoice_number=inv,
                                                                     quantity=i + 1)]}))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(sorted(r.status for r in results), [202] + [409] * 7, results)

    def test_put_sale(self):
        s = self.sale_for()
        self.ok({"sales": [s]})
        s2 = dict(s, quantity=5, sales_price="70.5", ticket_category="VIP")
        r = self.acme.put_sale(s["invoice_number"], s2)
        self.assertStatus(r, 200)
        got = self.present("sales", s["invoice_number"])
        self.assertEqual((got["quantity"], got["sales_price"], got["ticket_category"]),
                         (5, "70.50", "VIP"))

    def test_put_unknown_sale_404(self):
        s = self.sale_for()
        r = self.acme.put_sale(s["invoice_number"], s)
        self.assertStatus(r, 404)
        self.assertIsInstance(r.json, dict, r)
        self.absent("sales", s["invoice_number"])

    def test_put_invalid_sale_400(self):
        s = self.sale_for()
        self.ok({"sales": [s]})
        r = self.acme.put_sale(s["invoice_number"], dict(s, quantity=0))
        self.assertStatus(r, 400)
        r = self.acme.put_sale(s["invoice_number"], dict(s, event_id=uid("NOEVT")))
        self.assertStatus(r, 400)
        self.assertEqual(self.present("sales", s["invoice_number"])["quantity"], 2)

    def test_put_needs_auth_and_json(self):
        s = self.sale_for()
        self.ok({"sales": [s]})
        r = self.acme.put_sale(s["invoice_number"], dict(s, quantity=9), key=None)
        self.assertStatus(r, 401)
        r = self.acme.put_sale(s["invoice_number"], json.dumps(dict(s, quantity=9)),
                               headers={"Content-Type": "text/plain"})
        self.assertStatus(r, 415)
        self.assertEqual(self.present("sales", s["invoice_number"])["quantity"], 2)


class AliasTests(IngestBase):
    def test_duplicate_performance_alias(self):
        venue = "Opera House " + uid("V")
        orig = event(uid("ORIG"), venue=venue, hall="Main Hall", date="2025-11-02",
                     time="19:30:00")
        self.ok({"events": [orig]})
        dup = event(uid("DUP"), venue="  " + venue.upper().replace(" ", "   ") + " ",
                    hall="main  HALL", date="2025-11-02", time="19:30:00")
        r = self.ok({"events": [dup]})
        w = json.dumps(r.json["warnings"])
        self.assertIn(orig["event_id"], w, "alias warning must name the existing event")
        s = self.sale_for(event_id=dup["event_id"])
        self.ok({"sales": [s]})
        self.present("sales", s["invoice_number"])
        got = self.present("events", dup["event_id"])
        self.assertEqual(got.get("event_id"), orig["event_id"], "alias resolves to the original")
        # sending the alias id again updates the original event, which keeps its own id
        r = self.ok({"events": [dict(dup, title="Updated via alias")]})
        got = self.present("events", orig["event_id"])
        self.assertEqual(got.get("event_id"), orig["event_id"],
                         "the original event's id changed after an update via its alias")
        self.assertEqual(got.get("title"), "Updated via alias")
        self.assertEqual(self.present("events", dup["event_id"]).get("event_id"),
                         orig["event_id"])
        # another time is another performance
        other = event(uid("OTHER"), venue=venue, hall="Main Hall", date="2025-11-02",
                      time="15:00:00")
        r = self.ok({"events": [other]})
        self.assertNotIn(orig["event_id"], json.dumps(r.json["warnings"]))
        self.assertEqual(self.present("events", other["event_id"])["event_id"],
                         other["event_id"])


class EnvironmentTests(IngestBase):
    def test_test_and_prod_are_isolated(self):
        e = event()
        self.ok({"events": [e]})
        self.absent("events", e["event_id"], api=self.acme_prod)
        s = sale(uid("INV"), e["event_id"])
        r = self.acme_prod.ingest({"sales": [s]})
        self.assertValidationError(r, "/sales/0/event_id")
        self.absent("sales", s["invoice_number"], api=self.acme_prod)
        # lists too
        data, _ = self.acme_prod.list_all("events")
        self.assertNotIn(e["event_id"], [x.get("event_id") for x in data])

    def test_prod_sale_cannot_use_test_customer(self):
        c = customer()
        self.ok({"customers": [c]})
        pe = event()
        self.ok({"events": [pe]}, api=self.acme_prod)
        r = self.acme_prod.ingest({"sales": [sale(uid("INV"), pe["event_id"], c["customer_id"])]})
        self.assertValidationError(r, "/sales/0/customer_id")
        self.absent("customers", c["customer_id"], api=self.acme_prod)

    def test_idempotency_keys_per_environment(self):
        key = uid("idem")
        self.ok({"events": [event()]}, headers={"Idempotency-Key": key})
        r = self.acme_prod.ingest({"events": [event()]}, headers={"Idempotency-Key": key})
        self.assertStatus(r, 202)
        self.assertNotEqual((r.header("Idempotent-Replayed") or "").lower(), "true")

    def test_invoice_numbers_per_environment(self):
        inv = uid("INV")
        self.ok({"sales": [self.sale_for(invoice_number=inv)]})
        pe = event()
        r = self.acme_prod.ingest({"events": [pe], "sales": [sale(inv, pe["event_id"])]})
        self.assertStatus(r, 202)
        self.assertEqual(self.present("sales", inv, api=self.acme_prod)["event_id"],
                         pe["event_id"])
        self.assertEqual(self.present("sales", inv)["event_id"], self.ev["event_id"])


class IdempotencyTests(IngestBase):
    def test_replay(self):
        s = self.sale_for()
        e = event()
        body = json.dumps({"events": [e], "sales": [s]})
        key = uid("idem")
        _, cursor = self.acme.list_all("sales")
        r1 = self.acme.ingest(body, headers={"Idempotency-Key": key})
        self.assertStatus(r1, 202)
        self.assertNotEqual((r1.header("Idempotent-Replayed") or "").lower(), "true")
        r2 = self.acme.ingest(body, headers={"Idempotency-Key": key})
        self.assertStatus(r2, 202)
        self.assertEqual(r2.json, r1.json, "replay must return the first body")
        self.assertEqual((r2.header("Idempotent-Replayed") or "").lower(), "true", r2.headers)
        # applied once: the sale appears once in the change feed after the cursor
        data, _ = self.acme.list_all("sales", cursor=cursor)
        self.assertEqual([x["invoice_number"] for x in data].count(s["invoice_number"]), 1)
        # same key, another body
        r3 = self.acme.ingest(json.dumps({"events": [event()]}),
                              headers={"Idempotency-Key": key})
        self.assertStatus(r3, 422)
        # without the key, the same body is a duplicate invoice
        self.assertStatus(self.acme.ingest(body), 409)

    def test_concurrent_requests_one_key(self):
        e = event()
        body = json.dumps({"events": [e]})
        key = uid("idem")
        _, cursor = self.acme.list_all("events")
        results = []

        def worker():
            results.append(self.acme.ingest(body, headers={"Idempotency-Key": key}))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual([r.status for r in results], [202] * 8, results)
        self.assertEqual(len({r.body for r in results}), 1, "answers differ")
        replayed = [(r.header("Idempotent-Replayed") or "").lower() == "true" for r in results]
        self.assertEqual(replayed.count(False), 1, "exactly one original answer")
        data, _ = self.acme.list_all("events", cursor=cursor)
        self.assertEqual([x["event_id"] for x in data].count(e["event_id"]), 1)

    def test_replay_of_an_error(self):
        body = json.dumps({"sales": [self.sale_for(quantity=0)]})
        key = uid("idem")
        r1 = self.acme.ingest(body, headers={"Idempotency-Key": key})
        self.assertStatus(r1, 400)
        r2 = self.acme.ingest(body, headers={"Idempotency-Key": key})
        self.assertStatus(r2, 400)
        self.assertEqual(r2.json, r1.json)
        self.assertEqual((r2.header("Idempotent-Replayed") or "").lower(), "true", r2.headers)


class SizeLimitTests(IngestBase):
    HEAD = {"Content-Type": "application/json"}

    def head(self, n=None):
        h = dict(self.HEAD, Authorization="Bearer " + self.keys[("acme", "test")])
        if n is not None:
            h["Content-Length"] = str(n)
        return h

    def padded(self, e, size):
        base = json.dumps({"events": [e]}).encode()
        return base[:-1] + b" " * (size - len(base)) + b"}"

    def test_expect_continue_oversized(self):
        # Content-Length above the limit with Expect: 100-continue: 413 without the body
        raw = harness.RawHTTP(self.port)
        self.addCleanup(raw.close)
        h = self.head(9 * MiB)
        h["Expect"] = "100-continue"
        raw.send_head("POST", "/v1/acme/ingest", h)
        r = raw.read_response(10 * harness.TIME_SCALE)
        self.assertStatus(r, 413)

    def test_expect_continue_small(self):
        e = event()
        body = json.dumps({"events": [e]}).encode()
        raw = harness.RawHTTP(self.port)
        self.addCleanup(raw.close)
        h = self.head(len(body))
        h["Expect"] = "100-continue"
        raw.send_head("POST", "/v1/acme/ingest", h)
        raw.sock.settimeout(10 * harness.TIME_SCALE)
        first = raw.sock.recv(64)
        self.assertTrue(first.startswith(b"HTTP/1.1 100"), first)
        while not first.endswith(b"\r\n\r\n"):
            more = raw.sock.recv(1)
            self.assertTrue(more)
            first += more
        self.assertTrue(raw.send(body))
        self.assertStatus(raw.read_response(), 202)
        self.present("events", e["event_id"])

    def test_body_exactly_8MiB_accepted(self):
        e = event()
        body = self.padded(e, 8 * MiB)
        self.assertEqual(len(body), 8 * MiB)
        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/acme/ingest",
                                            self.head(len(body)), harness.pieces_of(body))
        self.assertStatus(r, 202)
        self.present("events", e["event_id"])

    def test_body_over_8MiB_content_length(self):
        e = event()
        body = self.padded(e, 8 * MiB + 1)
        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/acme/ingest",
                                            self.head(len(body)), harness.pieces_of(body))
        self.assertStatus(r, 413)
        self.assertTrue(r.header("X-Request-Id"))
        self.assertIsInstance(r.json, dict, r)
        self.absent("events", e["event_id"])

    def test_body_over_8MiB_chunked(self):
        e = event()
        body = self.padded(e, 8 * MiB + 4096)
        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/acme/ingest", self.head(),
                                            harness.pieces_of(body), chunked=True)
        self.assertStatus(r, 413)
        self.absent("events", e["event_id"])

    def test_huge_chunked_body_refused_while_streaming(self):
        # 64 MiB of padding: the server must answer 413 without buffering it all
        e = event()

        def gen():
            yield json.dumps({"events": [e]}).encode()[:-1]
            chunk = b" " * (256 * 1024)
            for _ in range(256):
                yield chunk
            yield b"}"

        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/acme/ingest", self.head(),
                                            gen(), chunked=True)
        self.assertStatus(r, 413)
        self.absent("events", e["event_id"])

    def records_body(self, n_customers, n_events=0):
        # braces and escaped quotes inside strings must not fool a streaming record counter
        cus = ['{"customer_id":"c%d-%s","email":"c%d@example.com","street":"{\\"x\\": [{]"}'
               % (i, harness._RUN, i) for i in range(n_customers)]
        evs = [json.dumps(event(uid("BULK"))) for _ in range(n_events)]
        return ('{"customers":[%s],"events":[%s]}' % (",".join(cus), ",".join(evs))).encode(), \
            "c0-%s" % harness._RUN

    def test_10000_records_accepted(self):
        body, first = self.records_body(10000)
        r = self.acme.ingest(body, timeout=120)
        self.assertStatus(r, 202)
        self.assertEqual(r.json["accepted"]["customers"], 10000)
        self.present("customers", first)

    def test_10001_records_refused(self):
        body, _ = self.records_body(6000, 4001)
        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/acme/ingest",
                                            self.head(len(body)), harness.pieces_of(body))
        self.assertStatus(r, 413)
        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/acme/ingest", self.head(),
                                            harness.pieces_of(body), chunked=True)
        self.assertStatus(r, 413)
        # a string ending in a backslash must not fool a streaming record counter
        cus = [customer(uid("BS"), street="end\\") for _ in range(10001)]
        body = json.dumps({"customers": cus}).encode()
        self.assertIn(b'"end\\\\"', body)
        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/acme/ingest",
                                            self.head(len(body)), harness.pieces_of(body))
        self.assertStatus(r, 413)
        self.absent("customers", cus[0]["customer_id"])


class RateLimitTests(IngestBase):
    def int_header(self, r, name):
        v = r.header(name)
        self.assertIsNotNone(v, "%s missing: %s" % (name, dict(r.headers)))
        self.assertRegex(v.strip(), r"^\d+$", "%s: %r" % (name, v))
        return int(v)

    def test_headers_on_answers(self):
        r = self.ok({"events": [event()]})
        self.assertGreaterEqual(self.int_header(r, "RateLimit-Limit"), 1)
        rem1 = self.int_header(r, "RateLimit-Remaining")
        self.int_header(r, "RateLimit-Reset")
        r = self.acme.ingest({"events": [event(date="bad")]})
        self.assertStatus(r, 400)
        self.int_header(r, "RateLimit-Limit")
        rem2 = self.int_header(r, "RateLimit-Remaining")
        self.assertLessEqual(rem2, rem1 + 1)
        # every authenticated answer of the API carries them
        s = self.sale_for()
        self.ok({"sales": [s]})
        idem = uid("idem")
        self.ok({"events": [event()]}, headers={"Idempotency-Key": idem})
        answers = [
            self.acme.ingest({"sales": [s]}),                                    # 409
            self.acme.ingest(b"{"),                                              # 400
            self.acme.ingest("{}", headers={"Content-Type": "text/plain"}),      # 415
            self.acme.ingest({"events": [event()]}, headers={"Idempotency-Key": idem}),  # 422
            self.acme.get("sales", s["invoice_number"]),                         # 200
            self.acme.get("sales", uid("nope")),                                 # 404
            self.acme.get("sales"), self.acme.get("sales", query="limit=0"),     # 200, 400
            self.acme.put_sale(s["invoice_number"], s),                          # 200
        ]
        self.assertEqual([a.status for a in answers], [409, 400, 415, 422, 200, 404, 200, 400,
                                                       200])
        for a in answers:
            for h in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
                self.int_header(a, h)

    def test_burst_then_429(self):
        api = harness.Api(self.port, "rl", self.keys[("rl", "test")])
        remaining = []
        for i in range(5):
            r = api.ingest({"events": [event()]})
            self.assertStatus(r, 202, "request %d of a burst of 5" % (i + 1))
            remaining.append(self.int_header(r, "RateLimit-Remaining"))
        self.assertEqual(remaining, [4, 3, 2, 1, 0])
        e = event()
        r = api.ingest({"events": [e]})
        self.assertStatus(r, 429)
        ra = self.int_header(r, "Retry-After")
        self.assertTrue(1 <= ra <= 61, "Retry-After %d with 1/min refill" % ra)
        self.assertEqual(self.int_header(r, "RateLimit-Remaining"), 0)
        self.int_header(r, "RateLimit-Limit")
        self.assertGreaterEqual(self.int_header(r, "RateLimit-Reset"), 1)
        self.assertTrue(r.header("X-Request-Id"))
        # the other environment of the same tenant has its own bucket
        prod = harness.Api(self.port, "rl", self.keys[("rl", "prod")])
        self.assertStatus(prod.ingest({"events": [event()]}), 202)
        # other tenants are unaffected
        self.ok({"events": [event()]})

    def test_refill(self):
        api = harness.Api(self.port, "rl2", self.keys[("rl2", "test")])
        self.assertStatus(api.ingest({"events": [event()]}), 202)
        # the bucket holds one token, refilled each second: the next request within the
        # second is refused (retry a few times in case this machine is very slow)
        for _ in range(5):
            r = api.ingest({"events": [event()]})
            if r.status == 429:
                break
        self.assertStatus(r, 429)
        ra = self.int_header(r, "Retry-After")
        self.assertTrue(1 <= ra <= 2, "Retry-After %d with 60/min refill" % ra)
        t0 = time.monotonic()
        statuses = []

        def admitted():
            statuses.append(api.ingest({"events": [event()]}).status)
            return statuses[-1] == 202

        harness.wait_until(admitted, 3.0 * harness.TIME_SCALE, interval=0.1,
                           what="a refilled token")
        waited = time.monotonic() - t0
        self.assertGreater(waited, 0.3, "admitted again too early")
        self.assertEqual(set(statuses[:-1]) | {429}, {429}, statuses)


class HttpTests(IngestBase):
    def test_405_with_allow(self):
        cases = [("GET", "/v1/acme/ingest", "POST"), ("PUT", "/v1/acme/ingest", "POST"),
                 ("DELETE", "/v1/acme/ingest", "POST"), ("POST", "/v1/acme/events", "GET"),
                 ("PUT", "/v1/acme/events/x", "GET"), ("PATCH", "/v1/acme/sales/x", "PUT"),
                 ("POST", "/v1/acme/sales/x", "GET"), ("POST", "/healthz", "GET")]
        for method, path, want in cases:
            with self.subTest(method=method, path=path):
                r = self.acme.req(method, path, body=b"{}" if method != "GET" else None,
                                  headers={"Content-Type": "application/json"})
                self.assertStatus(r, 405)
                allow = [m.strip().upper() for m in (r.header("Allow") or "").split(",")]
                self.assertIn(want, allow, "Allow: %r" % r.header("Allow"))
                self.assertNotIn(method, allow)

    def test_json_404(self):
        for method, path in (("GET", "/"), ("GET", "/nope"), ("POST", "/v2/acme/ingest"),
                             ("GET", "/v2/acme/events"), ("GET", "/v1/acme/nothing"),
                             ("GET", "/v1/acme/events/a/b"), ("GET", "/v1"),
                             ("GET", "/v1/acme"), ("GET", "/healthz/x"),
                             ("GET", "/v1/acme/ingestx")):
            with self.subTest(method=method, path=path):
                r = self.acme.req(method, path, body=b"{}" if method == "POST" else None,
                                  headers={"Content-Type": "application/json"})
                self.assertStatus(r, 404)
                self.assertIsInstance(r.json, dict, "404 body is not JSON: %r" % (r,))
                self.assertIn("error", r.json)
                self.assertTrue((r.header("Content-Type") or "").startswith("application/json"))

    def test_request_id_everywhere(self):
        s = self.sale_for()
        self.ok({"sales": [s]})
        rs = [
            self.acme.ingest({"events": [event()]}),                     # 202
            self.acme.ingest({"events": [event(date="x")]}),             # 400
            self.acme.ingest(b"{"),                                      # 400 malformed
            self.acme.ingest({"events": [event()]}, key=None),           # 401
            self.acme.ingest({"events": [event()]}, key=self.keys[("other", "test")]),  # 403
            self.acme.req("GET", "/v2/x"),                               # 404
            self.acme.req("GET", "/v1/acme/ingest"),                     # 405
            self.acme.ingest({"sales": [s]}),                            # 409
            self.acme.ingest("{}", headers={"Content-Type": "text/plain"}),  # 415
            self.acme.get("events"), self.acme.get("sales", s["invoice_number"]),
            self.acme.get("sales", uid("nope")),
            harness.http(self.port, "GET", "/healthz"),
            harness.http(self.port, "GET", "/metrics"),
        ]
        ids = []
        for r in rs:
            rid = r.header("X-Request-Id")
            self.assertTrue(rid, "no X-Request-Id on %r" % (r,))
            ids.append(rid)
        for r in rs[:-2]:
            self.assertTrue((r.header("Content-Type") or "").startswith("application/json"),
                            "%r: Content-Type %r" % (r, r.header("Content-Type")))
            self.assertIsInstance(r.json, (dict, list), r)
        self.assertEqual(len(set(ids)), len(ids), "request ids repeat: %s" % ids)
        self.assertEqual([r.status for r in rs],
                         [202, 400, 400, 401, 403, 404, 405, 409, 415, 200, 200, 404, 200, 200])

    def test_keep_alive_after_early_answers(self):
        # answers sent before the body was read (401, 415, 405, 404) must not leave the body
        # on a kept-alive connection to be misread as the next request
        conn = harness._httpclient.HTTPConnection("127.0.0.1", self.port,
                                                  timeout=harness.HTTP_TIMEOUT)
        self.addCleanup(conn.close)
        big = json.dumps({"events": [event(notes="x" * 200000)]})
        good_key = self.keys[("acme", "test")]

        def go(method, path, body, key=good_key, ct="application/json"):
            h = {"Content-Type": ct}
            if key:
                h["Authorization"] = "Bearer " + key
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            r.read()
            return r.status

        seq = [(("POST", "/v1/acme/ingest", big), {"key": "sd_test_bad"}, 401),
               (("POST", "/v1/acme/ingest", big), {"ct": "text/plain"}, 415),
               (("POST", "/v1/acme/events", big), {}, 405),
               (("POST", "/nope", big), {}, 404),
               (("POST", "/v1/acme/ingest", json.dumps({"events": [event(date="x")]})), {}, 400),
               (("GET", "/v1/acme/events?limit=1", None), {}, 200)]
        for args, kw, want in seq:
            self.assertEqual(go(*args, **kw), want, args[:2])
            e = event()
            self.assertEqual(go("POST", "/v1/acme/ingest", json.dumps({"events": [e]})), 202,
                             "request after %s %s" % args[:2])
            self.present("events", e["event_id"])

    def test_healthz(self):
        r = harness.http(self.port, "GET", "/healthz")
        self.assertStatus(r, 200)

    def test_metrics(self):
        def samples():
            r = harness.http(self.port, "GET", "/metrics")
            self.assertStatus(r, 200)
            self.assertTrue((r.header("Content-Type") or "").startswith("text/plain"),
                            r.header("Content-Type"))
            out = []
            for line in r.text.splitlines():
                if not line.strip() or line.startswith("#"):
                    continue
                m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+-?\d+)?$",
                             line)
                self.assertTrue(m, "not Prometheus text: %r" % line)
                out.append((m.group(1), m.group(2) or "", float(m.group(3))))
            return out, r.text

        def ok_requests(ss):
            return sum(v for n, l, v in ss
                       if not n.endswith(("_bucket", "_sum", "_count", "_created"))
                       and re.search(r'(status|code)="202"', l))

        before, _ = samples()
        for _ in range(3):
            self.ok({"sales": [self.sale_for()]})
        # a request may be counted just after its answer reached the client: poll briefly
        state = {}

        def grown():
            state["after"], state["text"] = samples()
            return ok_requests(state["after"]) - ok_requests(before) >= 3

        try:
            harness.wait_until(grown, 2.0 * harness.TIME_SCALE, interval=0.05)
        except AssertionError:
            self.fail("202 request count did not grow by 3:\n" + state["text"][:3000])
        after, text = state["after"], state["text"]
        self.assertIn("# TYPE", text)
        self.assertTrue(any(n.endswith("_bucket") and 'le="+Inf"' in l for n, l, _ in after),
                        "no latency histogram")
        def sales_accepted(ss):
            return sum(v for n, l, v in ss
                       if not n.endswith(("_bucket", "_sum", "_count", "_created"))
                       and "record" in n and re.search(r'="sales?"', l))

        self.assertGreaterEqual(sales_accepted(after) - sales_accepted(before), 3,
                                "accepted sale records did not grow by 3:\n" + text[:3000])
        self.assertTrue(any("commit" in n and n.endswith("_bucket") for n, _, _ in after),
                        "no store commit latency histogram")


if __name__ == "__main__":
    harness.main()
