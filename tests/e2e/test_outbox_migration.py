"""Targets, deliveries and remote segment ids written before targets became connectors survive
the migration to the generic outbox (schema 0007, docs/CONNECTORS.md "Targets are connectors").

tests/fixtures/outbox_v6/*.sql is a data directory written by stagedoor at schema 6
(make_fixture.py there says how): five push targets, deliveries in every state (delivered,
dead, retrying after a 429, queued behind the rate limit, sending when the hub was killed) and
two remote segment ids. The binary under test opens it and must show all of it, unchanged:

  - the CLI (no workers running) shows every delivery with its state, attempts, Idempotency-Key,
    segment, target and remote segment id as they were;
  - the targets API lists the five targets with their settings (secrets hidden), under their old
    ids; the connectors API shows them as connectors of type audience_push;
  - a new push of the segment to the target that had created a remote segment is an update of
    that remote segment (the remote reference was carried over);
  - the queued delivery is still queued behind its target's rate limit (1 per hour)."""

import json
import os
import sqlite3
import time
import unittest

import harness
from test_push import start_server

FIXTURE = os.path.join(harness.REPO, "tests", "fixtures", "outbox_v6")
CLIENT = "push"


def load(data):
    os.makedirs(data, exist_ok=True)
    for name in ("stagedoor", "control"):
        with open(os.path.join(FIXTURE, name + ".sql")) as f:
            script = f.read()
        con = sqlite3.connect(os.path.join(data, name + ".db"))
        con.executescript(script)
        if name == "stagedoor":
            shift_to_now(con)
        con.commit()
        con.close()


def shift_to_now(con):
    """The fixture was written at one moment; its rate plan (one send per rolling hour, a queued
    delivery waiting for the slot) only holds within the hour after it. Move every time of the
    deliveries by the same amount so the newest is now: the plan is the same at any date."""
    newest = con.execute("SELECT max(updated_usec) FROM deliveries").fetchone()[0]
    shift = int(time.time() * 1e6) - newest
    con.execute("UPDATE deliveries SET created_usec = created_usec + ?1,"
                " updated_usec = updated_usec + ?1, next_attempt_usec = next_attempt_usec + ?1,"
                " lease_until_usec = CASE lease_until_usec WHEN 0 THEN 0"
                " ELSE lease_until_usec + ?1 END,"
                " doc = CASE WHEN json_extract(doc, '$.sent_usec') IS NULL THEN doc"
                " ELSE json_set(doc, '$.sent_usec', json_extract(doc, '$.sent_usec') + ?1) END",
                (shift,))


class MigrationTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = os.path.join(harness.tempdir(cls), "data")
        load(cls.data)
        con = sqlite3.connect(os.path.join(cls.data, "stagedoor.db"))
        cls.before = {r[0]: r for r in con.execute(
            "SELECT id, state, attempts, idem_key, segment_id, target_id, doc FROM deliveries")}
        cls.targets = {r[0]: json.loads(r[1]) for r in con.execute("SELECT id, doc FROM targets")}
        cls.remotes = {(r[0], r[1]): r[2] for r in con.execute(
            "SELECT target_id, segment_id, remote_segment_id FROM remote_segments")}
        con.close()

    def test_everything_is_there_after_the_migration(self):
        self.assertEqual(sorted(r[1] for r in self.before.values()),
                         ["dead", "delivered", "delivered", "queued", "retrying", "sending"])
        self.assertEqual(len(self.targets), 5)
        self.assertEqual(len(self.remotes), 2)

        # The CLI opens (and migrates) the store without any worker: the rows as they were.
        for dlv, (_, state, attempts, idem, seg, tgt, doc) in self.before.items():
            cp = harness.cli_ok(self.data, "delivery", "show", dlv)
            d = json.loads(cp.stdout)
            self.assertEqual(d["delivery_id"], dlv)
            self.assertEqual(d["state"], state, d)
            self.assertEqual(d["attempts"], attempts)
            self.assertEqual(d["idempotency_key"], idem)
            self.assertEqual(d["segment_id"], seg)
            self.assertEqual(d["target_id"], tgt)
            self.assertEqual(d["connector_id"], tgt)
            self.assertEqual(d["operation"], "push_segment")
            self.assertEqual(d["last_status"], json.loads(doc).get("last_status"))
            if (tgt, seg) in self.remotes and state == "delivered":
                self.assertEqual(d["remote_segment_id"], self.remotes[(tgt, seg)])
                self.assertEqual(d["remote_ref"], self.remotes[(tgt, seg)])
        cp = harness.cli_ok(self.data, "target", "list", CLIENT)
        for tgt in self.targets:
            self.assertIn(tgt, cp.stdout)

        key = harness.key_create(self.data, CLIENT, "test")
        s = start_server(self.data)
        self.addCleanup(s.kill)
        with open(os.path.join(self.data, "admin.token")) as f:
            token = f.read().strip()

        def admin(method, path, body=None):
            return harness.http(s.port, method, path, body=body, key=token)

        r = admin("GET", "/admin/v1/tenants/%s/targets" % CLIENT)
        self.assertEqual(r.status, 200, r)
        got = {t["target_id"]: t for t in r.json["data"]}
        self.assertEqual(sorted(got), sorted(self.targets))
        for tgt, settings in self.targets.items():
            self.assertEqual(got[tgt]["url"], settings["url"])
            self.assertEqual(got[tgt]["segments_per_hour"], settings["segments_per_hour"])
            self.assertEqual(got[tgt]["app_key"], "(set)")
            r = admin("GET", "/admin/v1/tenants/%s/targets/%s" % (CLIENT, tgt))
            self.assertEqual(r.status, 200, r)
        r = admin("GET", "/admin/v1/tenants/%s/connectors" % CLIENT)
        self.assertEqual(r.status, 200, r)
        cons = {c["connector_id"]: c for c in r.json["data"]}
        for tgt in self.targets:
            self.assertEqual(cons[tgt]["type"], "audience_push")
            self.assertEqual(cons[tgt]["schedule"], "manual")
            self.assertEqual(cons[tgt]["settings"]["secure_token"], "(set)")
            self.assertNotIn("TOK-", json.dumps(cons[tgt]))

        # Its settings change through the targets API only (which checks them and keeps the
        # rate plan): the connectors API refuses.
        r = admin("PATCH", "/admin/v1/tenants/%s/connectors/%s" % (CLIENT, sorted(self.targets)[0]),
                  {"settings": {"segments_per_hour": 7}})
        self.assertEqual(r.status, 400, r)
        self.assertIn("targets API", json.dumps(r.json))
        # A target has nothing to run: "run now" leaves it as it was (the scheduler skips types
        # without a run; the outbox sends).
        tgt0 = sorted(self.targets)[0]
        r = admin("POST", "/admin/v1/tenants/%s/connectors/%s/run" % (CLIENT, tgt0))
        self.assertEqual(r.status, 202, r)
        time.sleep(1.5 * harness.TIME_SCALE)
        r = admin("GET", "/admin/v1/tenants/%s/connectors/%s" % (CLIENT, tgt0))
        self.assertEqual(r.json["status"]["state"], "never_run", r.json)

        # The remote segment the first target created is updated by the next push.
        (tgt, seg), remote = sorted(self.remotes.items())[0]
        api = harness.Api(s.port, CLIENT, key)
        r = api.req("POST", "/v1/%s/segments/%s/push" % (CLIENT, seg), body={"target_id": tgt})
        self.assertEqual(r.status, 202, r)
        r = admin("GET", "/admin/v1/deliveries/" + r.json["delivery_id"])
        self.assertEqual(r.json["kind"], "update", r)
        self.assertEqual(r.json["remote_segment_id"], remote)

        queued = [k for k, v in self.before.items() if v[1] == "queued"][0]
        d = admin("GET", "/admin/v1/deliveries/" + queued).json
        self.assertEqual(d["state"], "queued", d)
        self.assertEqual(d["waiting_for"], "rate_limit")
        s.stop_ok()


if __name__ == "__main__":
    harness.main()
