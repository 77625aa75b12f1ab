"""Segments over HTTP (issue #4 §2): create over webhook-ingested data and check counts and
members exactly; list, get, PUT (recompute and change), DELETE; member pages with cursors;
rule errors with JSON Pointers; environment and tenant scope; opt-outs applied on the next call.

Every test has its own tenant, so counts are exact. The box office of each tenant:
  customers  A (Berlin 10115, Ms), B (Hamburg 20095, Mr), C (10999, Frau), D (opted out),
             E (no sales); ANON sales exist too
  events     V1 Verdi/Otello/Berlin 2025-10-03 19:30, V2 Verdi/Aida/Berlin, M1 Mozart/Hamburg
  sales      A: V1 x2, M1 ; B: M1 x4 (VIP) ; C: V2 ; D: V1 ; ANON: V1

store suite: both backends
"""

import json

import harness
from harness import customer, event, sale, uid

JSON = {"Content-Type": "application/json"}


def box_office(api, prefix):
    """Ingest the fixture; returns {letter: customer_id} and {name: event_id}."""
    c = {k: "%s-%s" % (prefix, k) for k in "ABCDE"}
    e = {k: "%s-%s" % (prefix, k) for k in ("V1", "V2", "M1")}
    body = {
        "events": [
            event(e["V1"], title="Otello", work_title="Otello", composer="Giuseppe Verdi",
                  city="Berlin", date="2025-10-03", time="19:30:00",
                  cast=[{"name": "Anna Netrebko", "role": "Desdemona"}]),
            event(e["V2"], title="Aida", composer="Giuseppe Verdi", city="Berlin",
                  date="2025-11-08", time="18:00:00"),
            event(e["M1"], title="Die Zauberflöte", composer="Wolfgang Amadeus Mozart",
                  city="Hamburg", date="2025-12-06", time="15:00:00"),
        ],
        "customers": [
            customer(c["A"], email="%s@example.org" % c["A"].lower(), post_code="10115",
                     salutation="Ms", city="Berlin"),
            customer(c["B"], email="%s@example.org" % c["B"].lower(), post_code="20095",
                     salutation="Mr", city="Hamburg"),
            customer(c["C"], email="%s@example.org" % c["C"].lower(), post_code="10999",
                     salutation="Frau"),
            customer(c["D"], email="%s@example.org" % c["D"].lower(), post_code="10117",
                     ad_opt_out=True),
            customer(c["E"], email="%s@example.org" % c["E"].lower(), post_code="80331"),
        ],
        "sales": [
            sale(uid("I"), e["V1"], c["A"], quantity=2, purchase_datetime="2025-06-01T10:00:00Z"),
            sale(uid("I"), e["M1"], c["A"], quantity=1, purchase_datetime="2025-07-01T10:00:00Z"),
            sale(uid("I"), e["M1"], c["B"], quantity=4, ticket_category="VIP",
                 sales_price="150.00", purchase_datetime="2024-01-15T09:00:00Z"),
            sale(uid("I"), e["V2"], c["C"], quantity=1, purchase_datetime="2023-12-01T18:00:00Z"),
            sale(uid("I"), e["V1"], c["D"], quantity=1),
            sale(uid("I"), e["V1"], "ANON", quantity=3),
        ],
    }
    r = api.ingest(body)
    assert r.status == 202, r
    return c, e


# Rules over box_office and their exact members (also read through snapshots by
# test_segment_snapshots.py).
RULE_CASES = [
    ({"bought": {"cast": "anna netrebko"}}, ["A"]),
    ({"bought": {"title": {"contains": "ZAUBER"}}}, ["A", "B"]),
    ({"bought": {"ticket_category": "vip"}}, ["B"]),
    ({"bought": {"time": {"lt": "19:00"}}}, ["A", "B", "C"]),
    ({"bought": {"weekday": "friday"}}, ["A"]),  # 2025-10-03
    ({"bought": {"date": {"after": "2025-11-01"}}}, ["A", "B", "C"]),
    ({"bought": {"purchased": {"before": "2024-06-01"}}}, ["B", "C"]),
    ({"bought": {"price": {"currency": "EUR", "gte": "100.00"}}}, ["B"]),
    ({"count": {"of": "tickets", "gte": 3}}, ["A", "B"]),
    ({"count": {"of": "purchases", "eq": 0}}, ["E"]),
    ({"count": {"of": "events", "eq": 2}}, ["A"]),
    ({"count": {"of": "spend", "currency": "EUR", "gte": "500.00"}}, ["B"]),  # 600.00
    ({"count": {"of": "spend", "currency": "EUR", "lt": 10000}}, ["C", "E"]),
    ({"first_purchase": {"before": "2024-01-01"}}, ["C"]),
    ({"last_purchase": {"after": "2025-01-01"}}, ["A"]),
    ({"last_purchase": {"exists": False}}, ["E"]),
    ({"customer": {"post_code": {"prefix": "10"}}}, ["A", "C"]),
    ({"customer": {"city": "hamburg"}}, ["B"]),
    ({"customer": {"salutation": {"in": ["Ms", "Frau"]}}}, ["A", "C"]),
    ({"all": [{"bought": {"composer": "giuseppe verdi"}},
              {"customer": {"post_code": {"prefix": "109"}}}]}, ["C"]),
    ({"any": [{"bought": {"city": "hamburg"}}, {"count": {"of": "purchases", "eq": 0}}]},
     ["A", "B", "E"]),
    ({"not": {"bought": {}}}, ["E"]),
    ({"all": []}, ["A", "B", "C", "E"]),
]


class SegmentTests(harness.ServerCase):
    TENANTS = {name: ["test", "prod"] for name in
               ("s_create", "s_rules", "s_crud", "s_pages", "s_errors", "s_scope", "s_optout",
                "s_other", "s_fresh")}

    def create(self, api, rules, name="seg", description=None, status=201):
        body = {"segment_name": name, "rules": rules}
        if description is not None:
            body["description"] = description
        r = api.req("POST", "/v1/%s/segments" % api.client_id, body=body, headers=JSON)
        self.assertStatus(r, status)
        return r

    def members(self, api, seg_id, limit=None, cursor=None):
        """All member records, following cursors."""
        out, pages = [], 0
        while True:
            q = []
            if limit:
                q.append("limit=%d" % limit)
            if cursor:
                q.append("cursor=" + harness._quote(cursor))
            path = "/v1/%s/segments/%s/members" % (api.client_id, seg_id)
            r = api.req("GET", path + ("?" + "&".join(q) if q else ""))
            self.assertStatus(r, 200)
            self.assertIsInstance(r.json["has_more"], bool)
            out.extend(r.json["data"])
            cursor = r.json["next_cursor"]
            pages += 1
            if not r.json["has_more"]:
                return out, pages
            self.assertLess(pages, 100)

    def member_ids(self, api, seg_id, **kw):
        ms, _ = self.members(api, seg_id, **kw)
        return sorted(s["customer_id"] for m in ms for s in m["source_ids"])

    def test_create_count_and_members(self):
        api = self.api("s_create")
        c, e = box_office(api, "cr")
        r = self.create(api, {"bought": {"composer": {"eq": "Giuseppe Verdi"},
                                         "city": {"eq": "Berlin"}}},
                        name="Verdi Lovers – Berlin", description="bought Verdi in Berlin")
        j = r.json
        self.assertRegex(j["segment_id"], r"^seg_[0-9a-f]{16}$")
        self.assertEqual(j["member_count"], 2)  # A and C; D opted out, ANON never
        self.assertRegex(j["computed_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(j["segment_name"], "Verdi Lovers – Berlin")
        self.assertEqual(j["description"], "bought Verdi in Berlin")
        self.assertEqual(r.header("Location"), "/v1/s_create/segments/" + j["segment_id"])
        ms, _ = self.members(api, j["segment_id"])
        self.assertEqual(len(ms), 2)
        by_id = {m["source_ids"][0]["customer_id"]: m for m in ms}
        self.assertEqual(sorted(by_id), [c["A"], c["C"]])
        a = by_id[c["A"]]
        self.assertEqual(a["email"], "%s@example.org" % c["A"].lower())
        self.assertEqual(a["source_ids"], [{"source": "webhook", "customer_id": c["A"]}])
        self.assertIsInstance(a["profile_id"], int)
        self.assertLess(ms[0]["profile_id"], ms[1]["profile_id"])  # profile id order

    def test_rule_kinds(self):
        api = self.api("s_rules")
        c, e = box_office(api, "ru")
        for rules, want in RULE_CASES:
            with self.subTest(rules=rules):
                r = self.create(api, rules)
                self.assertEqual(r.json["member_count"], len(want), rules)
                self.assertEqual(self.member_ids(api, r.json["segment_id"]),
                                 sorted(c[k] for k in want))

    def test_crud(self):
        api = self.api("s_crud")
        c, e = box_office(api, "cd")
        s1 = self.create(api, {"customer": {"post_code": {"prefix": "10"}}}, name="one").json
        s2 = self.create(api, {"bought": {"city": "hamburg"}}, name="two").json
        base = "/v1/s_crud/segments"
        r = api.req("GET", base)
        self.assertStatus(r, 200)
        self.assertEqual([s["segment_id"] for s in r.json["data"]],
                         [s1["segment_id"], s2["segment_id"]])
        r = api.req("GET", base + "/" + s1["segment_id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json["rules"], {"customer": {"post_code": {"prefix": "10"}}})
        self.assertEqual(r.json["member_count"], 2)
        self.assertEqual(r.json["segment_name"], "one")
        self.assertEqual(r.json["description"], "")

        # new data: the stored count stays until a PUT recomputes it
        c2 = uid("cd-F")
        self.assertStatus(api.ingest({"customers": [customer(c2, post_code="10405")]}), 202)
        self.assertEqual(api.req("GET", base + "/" + s1["segment_id"]).json["member_count"], 2)
        self.assertEqual(len(self.member_ids(api, s1["segment_id"])), 3)  # members are live
        r = api.req("PUT", base + "/" + s1["segment_id"], body={}, headers=JSON)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["member_count"], 3)
        self.assertGreaterEqual(r.json["computed_at"], s1["computed_at"])
        self.assertEqual(r.json["created_at"], s1["created_at"])
        # change name, description and rules
        r = api.req("PUT", base + "/" + s1["segment_id"],
                    body={"segment_name": "renamed", "description": "d",
                          "rules": {"customer": {"post_code": "20095"}}}, headers=JSON)
        self.assertStatus(r, 200)
        self.assertEqual((r.json["segment_name"], r.json["description"], r.json["member_count"]),
                         ("renamed", "d", 1))
        self.assertEqual(api.req("GET", base + "/" + s1["segment_id"]).json["rules"],
                         {"customer": {"post_code": "20095"}})
        # a bad PUT changes nothing
        r = api.req("PUT", base + "/" + s1["segment_id"],
                    body={"segment_name": "", "rules": {"bought": {"x": 1}}}, headers=JSON)
        self.assertValidationError(r, "/segment_name", "/rules/bought")
        self.assertEqual(api.req("GET", base + "/" + s1["segment_id"]).json["segment_name"],
                         "renamed")
        # delete
        r = api.req("DELETE", base + "/" + s2["segment_id"])
        self.assertStatus(r, 204)
        self.assertStatus(api.req("GET", base + "/" + s2["segment_id"]), 404)
        self.assertStatus(api.req("DELETE", base + "/" + s2["segment_id"]), 404)
        self.assertStatus(api.req("PUT", base + "/" + s2["segment_id"], body={}, headers=JSON),
                          404)
        self.assertStatus(api.req("GET", base + "/" + s2["segment_id"] + "/members"), 404)
        self.assertEqual(len(api.req("GET", base).json["data"]), 1)

    def test_member_pages(self):
        api = self.api("s_pages")
        ids = [uid("pg") for _ in range(25)]
        self.assertStatus(api.ingest({"customers": [customer(i) for i in ids]}), 202)
        seg = self.create(api, {"all": []}).json
        self.assertEqual(seg["member_count"], 25)
        everyone, pages = self.members(api, seg["segment_id"], limit=7)
        self.assertEqual(pages, 4)
        self.assertEqual(sorted(s["customer_id"] for m in everyone for s in m["source_ids"]),
                         sorted(ids))
        pids = [m["profile_id"] for m in everyone]
        self.assertEqual(pids, sorted(set(pids)))
        one_page, pages = self.members(api, seg["segment_id"], limit=10000)
        self.assertEqual((one_page, pages), (everyone, 1))
        default, _ = self.members(api, seg["segment_id"])
        self.assertEqual(default, everyone)
        # the last cursor gives an empty page and itself back
        path = "/v1/s_pages/segments/%s/members" % seg["segment_id"]
        r = api.req("GET", path + "?limit=25")
        last = r.json["next_cursor"]
        self.assertFalse(r.json["has_more"])
        r = api.req("GET", path + "?cursor=" + last)
        self.assertEqual((r.json["data"], r.json["next_cursor"], r.json["has_more"]),
                         ([], last, False))
        for bad in ("limit=0", "limit=10001", "limit=x", "cursor=zz", "cursor=p1.", "cursor=p1.G",
                    "cursor=p1.11111111111111111"):
            with self.subTest(q=bad):
                r = api.req("GET", path + "?" + bad)
                self.assertStatus(r, 400)
                self.assertEqual(r.json["error"], "invalid_parameter")

    def test_errors(self):
        api = self.api("s_errors")
        r = self.create(api, {"all": [{"bought": {}}, {"bought": {"composer": {"equals": "V"}}}]},
                        status=400)
        errs = self.assertValidationError(r, "/rules/all/1/bought/composer")
        self.assertIn("unknown operator 'equals' (use eq, ne, in, contains, prefix", 
                      errs[0]["message"])
        path = "/v1/s_errors/segments"
        r = api.req("POST", path, body={"rules": {"all": []}, "extra": 1}, headers=JSON)
        self.assertValidationError(r, "/segment_name", "/extra")
        r = api.req("POST", path, body={"segment_name": "x"}, headers=JSON)
        self.assertValidationError(r, "/rules")
        r = api.req("POST", path, body={"segment_name": "x" * 201, "rules": {"all": []}},
                    headers=JSON)
        self.assertValidationError(r, "/segment_name")
        r = api.req("POST", path, body={"segment_name": "x", "description": 5,
                                        "rules": {"count": {"of": "spend", "gte": 1}}},
                    headers=JSON)
        self.assertValidationError(r, "/description", "/rules/count/currency")
        deep = {"bought": {}}
        for _ in range(16):
            deep = {"not": deep}
        r = api.req("POST", path, body={"segment_name": "x", "rules": deep}, headers=JSON)
        self.assertValidationError(r, "/rules" + "/not" * 16)
        r = api.req("POST", path, body=b"{\"segment_name\":", headers=JSON)
        self.assertStatus(r, 400)
        self.assertEqual(r.json["error"], "malformed_json")
        r = api.req("POST", path, body=json.dumps({"segment_name": "x", "rules": {"all": []}}),
                    headers={"Content-Type": "text/plain"})
        self.assertStatus(r, 415)
        self.assertStatus(api.req("GET", path + "/seg_0000000000000000"), 404)
        self.assertEqual(api.req("GET", path).json["data"], [])  # nothing was stored

    def test_scope(self):
        test, prod = self.api("s_scope", "test"), self.api("s_scope", "prod")
        box_office(test, "sc")
        seg = self.create(test, {"all": []}).json
        self.assertEqual(seg["member_count"], 4)
        # PROD has no customers, and does not see the TEST segment
        self.assertEqual(self.create(prod, {"all": []}).json["member_count"], 0)
        self.assertStatus(prod.req("GET", "/v1/s_scope/segments/" + seg["segment_id"]), 404)
        self.assertStatus(prod.req("DELETE", "/v1/s_scope/segments/" + seg["segment_id"]), 404)
        self.assertEqual(len(prod.req("GET", "/v1/s_scope/segments").json["data"]), 1)
        # another tenant's key
        other = self.api("s_other")
        r = other.req("GET", "/v1/s_scope/segments/" + seg["segment_id"])
        self.assertStatus(r, 403)
        r = harness.http(self.port, "GET", "/v1/s_scope/segments")
        self.assertStatus(r, 401)

    def test_opt_out_applies_now(self):
        api = self.api("s_optout")
        c, e = box_office(api, "oo")
        seg = self.create(api, {"bought": {"composer": "giuseppe verdi"}}).json
        self.assertEqual(self.member_ids(api, seg["segment_id"]), sorted([c["A"], c["C"]]))
        # C opts out: gone from the members at once, from the count at the next PUT
        r = api.ingest({"customers": [customer(c["C"], email="%s@example.org" % c["C"].lower(),
                                               ad_opt_out=True)]})
        self.assertStatus(r, 202)
        self.assertEqual(self.member_ids(api, seg["segment_id"]), [c["A"]])
        r = api.req("PUT", "/v1/s_optout/segments/" + seg["segment_id"], body={}, headers=JSON)
        self.assertEqual(r.json["member_count"], 1)
        # a new buyer appears without any PUT
        f = uid("oo-F")
        r = api.ingest({"customers": [customer(f)],
                        "sales": [sale(uid("I"), e["V2"], f)]})
        self.assertStatus(r, 202)
        self.assertEqual(self.member_ids(api, seg["segment_id"]), sorted([c["A"], f]))

    def test_webhook_sale_counts_at_once(self):
        # count rules read per-profile facts the writer keeps in the sale's own transaction:
        # the request after the 202 already counts the sale (and its refund)
        api = self.api("s_fresh")
        c, e = box_office(api, "fr")
        spend = {"count": {"of": "spend", "currency": "EUR", "gte": "500.00"}}
        seg = self.create(api, spend).json
        self.assertEqual(seg["member_count"], 1)  # B
        path = "/v1/s_fresh/segments/" + seg["segment_id"]
        inv = uid("I")
        self.assertStatus(api.ingest({"sales": [sale(inv, e["V2"], c["C"], quantity=4,
                                                     sales_price="120.00")]}), 202)
        r = api.req("PUT", path, body={}, headers=JSON)
        self.assertEqual(r.json["member_count"], 2)  # B, C (480.00 + 89.00)
        self.assertEqual(self.member_ids(api, seg["segment_id"]), sorted([c["B"], c["C"]]))
        self.assertStatus(api.ingest({"sales": [sale(uid("R"), e["V2"], c["C"], quantity=1,
                                                     sales_price="120.00", refund_of=inv)]}),
                          202)
        r = api.req("PUT", path, body={}, headers=JSON)
        self.assertEqual(r.json["member_count"], 1)  # C is back to 449.00
        last = self.create(api, {"last_purchase": {"after": "2026-01-01"}}).json
        self.assertEqual(last["member_count"], 0)
        self.assertStatus(api.ingest({"sales": [sale(uid("I"), e["M1"], c["E"],
                                                     purchase_datetime="2026-02-01T10:00:00Z")]}),
                          202)
        r = api.req("PUT", "/v1/s_fresh/segments/" + last["segment_id"], body={}, headers=JSON)
        self.assertEqual(r.json["member_count"], 1)  # E, a first purchase


if __name__ == "__main__":
    harness.main()
