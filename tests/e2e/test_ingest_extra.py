"""Ingest details from issue #8 §4: a record stored through an event alias keeps what it sent
(the "unknown field kept" warning is true), and one 400 lists field errors and reference errors
(unknown event, unknown customer) together instead of one after the other."""

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


if __name__ == "__main__":
    harness.main()
