"""Ingest details from issue #8 §4: a record stored through an event alias keeps what it sent
(the "unknown field kept" warning is true), and one 400 lists field errors and reference errors
(unknown event, unknown customer) together instead of one after the other.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import json

import harness
from harness import customer, event, sale, uid


class AliasKeepsFields(harness.ServerCase):
    TENANTS = {"alias_x": ["test"]}

    def test_unknown_field_sent_through_an_alias_is_returned(self):
        api = self.api("alias_x")
        venue = "Hall " + uid("V")
        orig = event(uid("ORIG"), venue=venue, hall="Main", date="2025-11-02", time="19:30:00")
        self.assertStatus(api.ingest({"events": [orig]}), 202)
        # same performance under a new id, with a field the seed does not name
        dup = event(uid("DUP"), venue=venue, hall="Main", date="2025-11-02", time="19:30:00",
                    program={"conductor": "Muti"}, title="Otello (new cast)")
        r = api.ingest({"events": [dup]})
        self.assertStatus(r, 202)
        warnings = r.json["warnings"]
        kept = [w for w in warnings if w["pointer"] == "/events/0/program"]
        self.assertTrue(kept and "kept" in kept[0]["message"], warnings)
        self.assertIn(orig["event_id"], json.dumps(warnings), "alias warning names the event")
        for rid in (dup["event_id"], orig["event_id"]):
            got = api.get("events", rid)
            self.assertStatus(got, 200)
            self.assertEqual(got.json["event_id"], orig["event_id"], "the alias resolves")
            self.assertEqual(got.json.get("program"), {"conductor": "Muti"},
                             "the field the warning says was kept is returned: %r" % (got,))
            self.assertEqual(got.json.get("title"), "Otello (new cast)")
        # one event, not two
        listed = [e["event_id"] for e in api.list_all("events")[0]]
        self.assertEqual(listed.count(orig["event_id"]), 1)
        self.assertNotIn(dup["event_id"], listed)


class AllErrorsAtOnce(harness.ServerCase):
    TENANTS = {"errs_x": ["test"]}

    def pointers(self, r):
        self.assertStatus(r, 400)
        self.assertEqual(r.json.get("error"), "validation_failed", r)
        return [e["pointer"] for e in self.errors_of(r)]

    def test_field_and_reference_errors_in_one_answer(self):
        api = self.api("errs_x")
        ev = event(uid("EVT"))
        self.assertStatus(api.ingest({"events": [ev]}), 202)
        bad_currency = sale(uid("INV"), ev["event_id"], currency="EURO")
        unknown_event = sale(uid("INV"), uid("NOEVT"))
        unknown_customer = sale(uid("INV"), ev["event_id"], customer_id=uid("NOCUS"))
        r = api.ingest({"sales": [bad_currency, unknown_event, unknown_customer]})
        ptrs = self.pointers(r)
        self.assertIn("/sales/0/currency", ptrs, r)
        self.assertIn("/sales/1/event_id", ptrs, r)
        self.assertIn("/sales/2/customer_id", ptrs, r)
        self.assertEqual(len(ptrs), 3, r)
        # nothing was stored, not even the valid parts
        for s in (bad_currency, unknown_event, unknown_customer):
            self.assertStatus(api.get("sales", s["invoice_number"]), 404)

    def test_same_request_records_count_and_invalid_ones_are_not_unknown(self):
        api = self.api("errs_x")
        ev = event(uid("EVT"))
        bad_ev = event(uid("BADEVT"), capacity=-5)
        cu = customer(uid("CUS"))
        bad_cu = customer(uid("BADCUS"), email="not an address")
        sales = [sale(uid("INV"), ev["event_id"], cu["customer_id"]),      # valid, refs in body
                 sale(uid("INV"), bad_ev["event_id"]),                      # event is invalid
                 sale(uid("INV"), ev["event_id"], bad_cu["customer_id"]),   # customer invalid
                 sale(uid("INV"), uid("NOEVT"))]                            # unknown event
        r = api.ingest({"events": [ev, bad_ev], "customers": [cu, bad_cu], "sales": sales})
        ptrs = self.pointers(r)
        self.assertTrue(any(p.startswith("/events/1") for p in ptrs), r)
        self.assertTrue(any(p.startswith("/customers/1") for p in ptrs), r)
        self.assertIn("/sales/3/event_id", ptrs, r)
        # the records of the request are references too; invalid ones are not "unknown"
        for p in ptrs:
            self.assertFalse(p.startswith(("/sales/0", "/sales/1", "/sales/2")), r)
        self.assertStatus(api.get("events", ev["event_id"]), 404)
        self.assertStatus(api.get("customers", cu["customer_id"]), 404)

    def test_idempotent_replay_of_the_combined_answer(self):
        api = self.api("errs_x")
        body = {"sales": [sale(uid("INV"), uid("NOEVT"), currency="XXXX"),
                          sale(uid("INV"), uid("NOEVT"))]}
        key = uid("IDEM")
        first = api.ingest(body, headers={"Idempotency-Key": key})
        ptrs = self.pointers(first)
        self.assertIn("/sales/0/currency", ptrs)
        self.assertIn("/sales/1/event_id", ptrs)
        again = api.ingest(body, headers={"Idempotency-Key": key})
        self.assertStatus(again, 400)
        self.assertEqual(again.header("Idempotent-Replayed"), "true", again)
        self.assertEqual(again.body, first.body)


if __name__ == "__main__":
    harness.main()
