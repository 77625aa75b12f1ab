"""A segment as a Tradable Bits fan tag (the `tradablebits` connector's "sync_tag" operation),
end to end: `stagedoor serve` pulls the simulator's fans into customers, a segment over them is
pushed to the instance with POST /v1/{client_id}/segments/{segment_id}/push, and the tag on the
simulator (sim.tag_members) and the calls it received are compared with the segment.

Covered: a first sync creates the tag and adds exactly the members' fans; after members join
and leave, the second sync sends exactly the difference (one tag_remove with the leavers, one
tag_add with the joiners, no tag_create) and its delivery reports added / removed / unchanged;
a dry run reports the same figures and the simulator records no write at all; a 429 in the
middle of a sync of more than 1000 fans (calls of at most 1000 fan ids) is waited out and the
sync resumes where it stopped (no batch sent twice), the final tag exact; tagging moves the
fans' last update on the simulator (tag_touches_fan), and the pull that brings them back stores
them unchanged and queues nothing for the instance (no echo); a member reaches the fan the fan
push made for it, a member with no fan is counted; a tag deleted on the vendor's side is created
again with every member by the next sync that has something to send; a hub killed right after a sync's calls, before
their outcome is recorded, runs the item again after its restart and sends nothing twice; a
segment listed with a schedule in the `segments` setting is queued by the instance's run; a sync
reads its members from one snapshot, whose count becomes the segment's member_count."""

import json
import os
import sys
import tempfile
import unittest

import harness

sys.path.insert(0, os.path.dirname(harness.HERE))      # tests/, for the sim package
from sim.tradablebits import Simulator  # noqa: E402

T = harness.TIME_SCALE
TIMEOUT = 90.0 * T
KEY, SECRET = "tb-test-key", "tb-test-secret"
PREFIX = "ZZ9"   # a postal code prefix no generated fan has: the test decides who is a member


class Admin:
    def __init__(self, server, client_id):
        self.server = server
        self.client_id = client_id
        with open(os.path.join(server.data_dir, "admin.token")) as f:
            self.token = f.read().strip()

    def req(self, method, path, body=None):
        return harness.http(self.server.port, method,
                            "/admin/v1/tenants/%s/connectors%s" % (self.client_id, path),
                            body=body, key=self.token)

    def add(self, settings):
        r = self.req("POST", "", {"type": "tradablebits", "environment": "test",
                                  "schedule": "manual", "settings": settings})
        if r.status != 201:
            raise AssertionError("connector not created: %r" % (r,))
        return r.json["connector_id"]

    def status(self, cid):
        r = self.req("GET", "/" + cid)
        if r.status != 200:
            raise AssertionError("GET connector -> %r" % (r,))
        return r.json["status"]

    def run(self, cid, sim):
        """Run now and wait for that run to end: its first call reached the simulator, then the
        state left "running"."""
        n_before = len(sim.calls())
        r = self.req("POST", "/%s/run" % cid)
        if r.status != 202:
            raise AssertionError("run -> %r" % (r,))
        harness.wait_until(lambda: len(sim.calls()) > n_before, TIMEOUT,
                           what="the run's first call")

        def ended():
            st = self.status(cid)
            return None if st["state"] in ("running", "never_run") else st
        st = harness.wait_until(ended, TIMEOUT, interval=0.05, what="the run to end")
        if st["state"] == "failed":
            raise AssertionError("run failed: %r" % (st,))
        return st


class TradableBitsTags(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sd-e2e-tbtags-")
        cls.data = cls.tmp.name
        cls.keys = []
        for i in range(10):
            client = "tbt%d" % i
            harness.tenant_create(cls.data, client)
            cls.keys.append((client, harness.key_create(cls.data, client, "test")))
        # Back-off after a failed attempt shortened (30 s → 0.3 s); Retry-After is not scaled.
        os.environ["STAGEDOOR_OUTBOX_TIME_SCALE"] = "0.01"
        try:
            cls.server = harness.Server(cls.data).start()
        finally:
            os.environ.pop("STAGEDOOR_OUTBOX_TIME_SCALE", None)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop_ok()
        finally:
            cls.server.kill()
            cls.tmp.cleanup()

    # -- helpers -------------------------------------------------------------------------------
    def setup_instance(self, fans=60, **settings):
        client, key = self.keys.pop()
        admin, api = Admin(self.server, client), self.server.api(client, key)
        sim = Simulator(seed=11, fans=fans, tickets=20, activities=0).start()
        self.addCleanup(sim.stop)
        s = {"base_url": sim.base_url, "api_key": KEY, "api_secret": SECRET, "currency": "CAD",
             "event_city": "Vancouver", "backfill_start": "2020-01-01", "pull_tickets": False}
        s.update(settings)
        cid = admin.add(s)
        return admin, api, sim, cid

    def eligible(self, sim):
        """Fans that can be members (not opted out), by id."""
        return sorted(f["fan_id"] for f in sim.fans() if not f["is_optout"])

    def set_members(self, sim, joining, leaving):
        for fid in joining:
            sim.update_fan(fid, postal_code=PREFIX + " %03d" % (fid % 1000))
        for fid in leaving:
            sim.update_fan(fid, postal_code="V5K 0A1")

    def segment(self, api):
        r = api.req("POST", "/v1/%s/segments" % api.client_id,
                    body={"segment_name": "tagged", "rules":
                          {"customer": {"post_code": {"prefix": PREFIX}}}})
        self.assertEqual(r.status, 201, r)
        return r.json["segment_id"]

    def push(self, api, seg, cid, dry_run=None):
        path = "/v1/%s/segments/%s/push" % (api.client_id, seg)
        if dry_run is not None:
            path += "?dry_run=" + dry_run
        r = api.req("POST", path, body={"target_id": cid})
        self.assertEqual(r.status, 202, r)
        return r.json["delivery_id"]

    def delivered(self, api, dlv):
        def done():
            r = api.req("GET", "/v1/%s/deliveries/%s" % (api.client_id, dlv))
            self.assertEqual(r.status, 200, r)
            if r.json["state"] == "dead":
                raise AssertionError("delivery dead: %r" % (r.json,))
            return r.json if r.json["state"] == "delivered" else None
        return harness.wait_until(done, TIMEOUT, interval=0.05, what="the delivery")

    def fan_ids(self, calls):
        return [int(x) for c in calls for x in c.form.get("fan_id", [])]

    def tag_name(self, seg):
        return "stagedoor-" + seg

    # -- tests ---------------------------------------------------------------------------------
    def test_two_syncs_send_exactly_the_difference(self):
        # push_fans on: a fan the pull brings back after its tag moved would be pushed back if
        # it counted as a change of this instance's.
        admin, api, sim, cid = self.setup_instance(push_fans=True)
        fans = self.eligible(sim)
        self.assertGreaterEqual(len(fans), 20)
        first = fans[:8]
        self.set_members(sim, first, [])
        admin.run(cid, sim)
        seg = self.segment(api)

        sim.clear_calls()
        d1 = self.delivered(api, self.push(api, seg, cid))
        self.assertEqual(sim.tag_members(self.tag_name(seg)), first)
        self.assertEqual(len(sim.calls("tag_create")), 1)
        self.assertEqual(sorted(self.fan_ids(sim.calls("tag_add"))), first)
        self.assertEqual(sim.calls("tag_remove"), [])
        f = d1["facts"]
        self.assertEqual((f["added"], f["removed"], f["unchanged"], f["fans"], f["no_fan"]),
                         (8, 0, 0, 8, 0), f)
        self.assertEqual(d1["operation"], "sync_tag")
        self.assertEqual(d1["remote_ref"], str(sim.tag(self.tag_name(seg))["tag_id"]))

        # Three leave, four join; the pull brings the change in.
        leaving, joining = first[:3], fans[10:14]
        self.set_members(sim, joining, leaving)
        admin.run(cid, sim)
        sim.clear_calls()
        d2 = self.delivered(api, self.push(api, seg, cid))
        want = sorted(set(first) - set(leaving) | set(joining))
        self.assertEqual(sim.tag_members(self.tag_name(seg)), want)
        self.assertEqual(sim.calls("tag_create"), [])
        self.assertEqual(len(sim.calls("tag_remove")), 1)
        self.assertEqual(sorted(self.fan_ids(sim.calls("tag_remove"))), leaving)
        self.assertEqual(len(sim.calls("tag_add")), 1)
        self.assertEqual(sorted(self.fan_ids(sim.calls("tag_add"))), joining)
        f = d2["facts"]
        self.assertEqual((f["added"], f["removed"], f["unchanged"]), (4, 3, 5), f)
        self.assertEqual(d2["kind"], "update")

        # A third sync with no change sends nothing but its answer says so.
        sim.clear_calls()
        d3 = self.delivered(api, self.push(api, seg, cid))
        self.assertEqual(sim.writes(), [])
        self.assertEqual((d3["facts"]["added"], d3["facts"]["removed"],
                          d3["facts"]["unchanged"]), (0, 0, 9))

        # The tag touched those fans on the vendor's side; pulling them back is no change and
        # queues nothing for the instance (no echo).
        touched = {c for c in leaving + joining}
        sim.clear_calls()
        st = admin.run(cid, sim)
        updated = [int(x["fan_id"]) for c in sim.calls("fans_updated")
                   for x in (c.answer or {}).get("data", [])]
        self.assertTrue(touched <= set(updated), "tagging did not touch the fans")
        self.assertEqual(sim.writes(), [])
        r = api.req("GET", "/v1/%s/deliveries?connector=%s" % (api.client_id, cid))
        self.assertEqual(r.status, 200, r)
        ops = sorted({d["operation"] for d in r.json["data"]})
        self.assertEqual(ops, ["sync_tag"], r.json)
        self.assertEqual(len(r.json["data"]), 3)
        stats = st["last_run_stats"]
        self.assertGreaterEqual(stats["records_in"], len(touched), st)
        self.assertEqual(stats["records_unchanged"], stats["records_in"], st)

    def test_sync_reads_the_members_from_a_snapshot(self):
        # The sync computes the rule once, freezing its members in a snapshot that its pages
        # read; making the snapshot also stores the count as the segment's member_count.
        admin, api, sim, cid = self.setup_instance()
        fans = self.eligible(sim)
        self.set_members(sim, fans[:8], [])
        admin.run(cid, sim)
        seg = self.segment(api)
        r = api.req("GET", "/v1/%s/segments/%s" % (api.client_id, seg))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["member_count"], 8, r.json)
        self.set_members(sim, fans[10:14], [])
        admin.run(cid, sim)
        d = self.delivered(api, self.push(api, seg, cid))
        self.assertEqual((d["facts"]["members"], d["facts"]["added"]), (12, 12), d["facts"])
        self.assertEqual(sim.tag_members(self.tag_name(seg)), sorted(fans[:8] + fans[10:14]))
        r = api.req("GET", "/v1/%s/segments/%s" % (api.client_id, seg))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["member_count"], 12, r.json)

    def test_dry_run_sends_nothing(self):
        admin, api, sim, cid = self.setup_instance()
        fans = self.eligible(sim)
        self.set_members(sim, fans[:5], [])
        admin.run(cid, sim)
        # A member known only to the hub (no fan): counted, never tagged.
        r = api.ingest({"customers": [harness.customer("NOFAN-1", post_code=PREFIX + " 999")]})
        self.assertEqual(r.status, 202, r)
        seg = self.segment(api)

        sim.clear_calls()
        d = self.delivered(api, self.push(api, seg, cid, dry_run="true"))
        self.assertEqual(sim.writes(), [])
        self.assertEqual(sim.calls(), [])
        self.assertIsNone(sim.tag(self.tag_name(seg)))
        f = d["facts"]
        self.assertTrue(f["dry_run"])
        self.assertEqual((f["added"], f["removed"], f["unchanged"]), (5, 0, 0), f)
        self.assertEqual((f["members"], f["fans"], f["no_fan"]), (6, 5, 1), f)
        self.assertIsNone(f["tag_id"])

        self.delivered(api, self.push(api, seg, cid))
        self.set_members(sim, fans[6:8], fans[:2])
        admin.run(cid, sim)
        sim.clear_calls()
        d = self.delivered(api, self.push(api, seg, cid, dry_run="true"))
        self.assertEqual(sim.writes(), [])
        f = d["facts"]
        self.assertEqual((f["added"], f["removed"], f["unchanged"]), (2, 2, 3), f)
        self.assertEqual(sim.tag_members(self.tag_name(seg)), fans[:5])

        # The CLI shows the same figures.
        cp = harness.cli(self.data, "delivery", "show", d["delivery_id"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        shown = json.loads(cp.stdout)
        self.assertEqual(shown["facts"], f)

        # The route refuses a bad flag, and a dry run of a type that cannot do one.
        r = api.req("POST", "/v1/%s/segments/%s/push?dry_run=maybe" % (api.client_id, seg),
                    body={"target_id": cid})
        self.assertEqual(r.status, 400, r)
        with open(os.path.join(self.data, "admin.token")) as fh:
            token = fh.read().strip()
        r = harness.http(self.server.port, "POST",
                         "/admin/v1/tenants/%s/targets" % api.client_id,
                         body={"type": "audience_push", "environment": "test",
                               "url": "http://127.0.0.1:9/x", "app_key": "a",
                               "secure_token": "t"}, key=token)
        self.assertEqual(r.status, 201, r)
        r = api.req("POST", "/v1/%s/segments/%s/push?dry_run=true" % (api.client_id, seg),
                    body={"target_id": r.json["target_id"]})
        self.assertEqual(r.status, 400, r)
        self.assertIn("dry run", r.text)

    def test_429_mid_sync_waits_and_resumes(self):
        admin, api, sim, cid = self.setup_instance(fans=2600)
        fans = self.eligible(sim)
        self.assertGreater(len(fans), 2000)
        members = fans[:2100]
        self.set_members(sim, members, [])
        admin.run(cid, sim)
        seg = self.segment(api)

        sim.clear_calls()
        # The first batch goes through; the second is refused with a 429 once.
        sim.inject("tag_add", ("sleep", 0), ("status", 429, {"Retry-After": "1"}))
        d = self.delivered(api, self.push(api, seg, cid))
        self.assertEqual(sim.tag_members(self.tag_name(seg)), members)
        adds = sim.calls("tag_add")
        self.assertEqual([c.status for c in adds], [200, 429, 200, 200])
        self.assertTrue(all(len(c.form.get("fan_id", [])) <= 1000 for c in adds))
        sent = self.fan_ids([c for c in adds if c.status == 200])
        self.assertEqual(sorted(sent), members)            # nothing sent twice
        self.assertEqual(len(sent), len(set(sent)))
        f = d["facts"]
        self.assertEqual((f["added"], f["removed"], f["unchanged"]), (2100, 0, 0), f)
        self.assertEqual(len(sim.calls("tag_create")), 1)
        self.assertIn(429, [h["status"] for h in d["history"]])   # waited through the outbox

    def test_member_reaches_the_fan_the_fan_push_made(self):
        admin, api, sim, cid = self.setup_instance(push_fans=True)
        fans = self.eligible(sim)
        self.set_members(sim, fans[:2], [])
        admin.run(cid, sim)
        r = api.ingest({"customers": [harness.customer("HUB-7", post_code=PREFIX + " 777",
                                                       email="hub7@example.com")]})
        self.assertEqual(r.status, 202, r)

        def fan_pushed():
            f = sim.fan(email="hub7@example.com")
            return f if f else None
        fan = harness.wait_until(fan_pushed, TIMEOUT, what="the fan push")
        # The fan push records the fan id when its delivery ends.
        def fan_delivered():
            r = api.req("GET", "/v1/%s/deliveries?connector=%s" % (api.client_id, cid))
            return [d for d in r.json["data"]
                    if d["operation"] == "fan" and d["state"] == "delivered"] or None
        harness.wait_until(fan_delivered, TIMEOUT, what="the fan delivery")
        seg = self.segment(api)
        d = self.delivered(api, self.push(api, seg, cid))
        self.assertEqual(sim.tag_members(self.tag_name(seg)),
                         sorted(fans[:2] + [fan["fan_id"]]))
        self.assertEqual((d["facts"]["fans"], d["facts"]["no_fan"]), (3, 0), d["facts"])

    def test_crash_after_the_calls_resends_nothing(self):
        # A hub of its own, killed by the fault hook right after the sync's last answer, before
        # the outcome is recorded: the restarted hub runs the item again, which finds the tag
        # already as the calls left it (the set moved with each answer) and sends nothing.
        with tempfile.TemporaryDirectory(prefix="sd-e2e-tbtags-crash-") as data:
            harness.tenant_create(data, "crash")
            key = harness.key_create(data, "crash", "test")
            os.environ["STAGEDOOR_FAULT"] = "outbox_after_send"
            try:
                server = harness.Server(data).start()
            finally:
                os.environ.pop("STAGEDOOR_FAULT", None)
            self.addCleanup(server.kill)
            admin, api = Admin(server, "crash"), server.api("crash", key)
            sim = Simulator(seed=11, fans=60, tickets=20, activities=0).start()
            self.addCleanup(sim.stop)
            cid = admin.add({"base_url": sim.base_url, "api_key": KEY, "api_secret": SECRET,
                             "currency": "CAD", "event_city": "Vancouver",
                             "backfill_start": "2020-01-01", "pull_tickets": False})
            fans = self.eligible(sim)
            self.set_members(sim, fans[:6], [])
            admin.run(cid, sim)
            seg = self.segment(api)
            sim.clear_calls()
            try:
                r = api.req("POST", "/v1/crash/segments/%s/push" % seg, body={"target_id": cid})
                self.assertEqual(r.status, 202, r)
            except (ConnectionError, OSError):
                pass    # the worker may end the process before the answer is written
            server.wait_exit(TIMEOUT)
            self.assertEqual(sim.tag_members(self.tag_name(seg)), fans[:6])
            before = len(sim.writes())
            self.assertEqual(before, 2)                     # tag_create, tag_add

            server = harness.Server(data).start()
            self.addCleanup(server.kill)
            api = server.api("crash", key)

            def delivered():
                r = api.req("GET", "/v1/crash/deliveries?connector=" + cid)
                ds = [d for d in r.json["data"] if d["operation"] == "sync_tag"]
                return ds[0] if ds and ds[0]["state"] == "delivered" else None
            d = harness.wait_until(delivered, TIMEOUT, what="the rerun")
            self.assertEqual(len(sim.writes()), before)     # nothing sent twice
            self.assertEqual(sim.tag_members(self.tag_name(seg)), fans[:6])
            self.assertEqual((d["facts"]["added"], d["facts"]["unchanged"]), (0, 6), d["facts"])
            server.stop_ok(self)

    def test_tag_deleted_on_the_vendor_side_is_made_again(self):
        admin, api, sim, cid = self.setup_instance()
        fans = self.eligible(sim)
        self.set_members(sim, fans[:4], [])
        admin.run(cid, sim)
        seg = self.segment(api)
        self.delivered(api, self.push(api, seg, cid))
        old = sim.tag(self.tag_name(seg))["tag_id"]
        self.assertTrue(sim.delete_tag(self.tag_name(seg)))
        self.set_members(sim, fans[4:5], [])
        admin.run(cid, sim)
        sim.clear_calls()
        d = self.delivered(api, self.push(api, seg, cid))
        tag = sim.tag(self.tag_name(seg))
        self.assertNotEqual(tag["tag_id"], old)
        self.assertEqual(tag["members"], fans[:5])
        self.assertEqual([c.status for c in sim.calls("tag_add")], [404, 200])
        self.assertEqual(d["remote_ref"], str(tag["tag_id"]))
        self.assertIn(404, [h["status"] for h in d["history"]])

    def test_scheduled_segment_is_queued_by_the_run(self):
        admin, api, sim, cid = self.setup_instance()
        fans = self.eligible(sim)
        self.set_members(sim, fans[:3], [])
        admin.run(cid, sim)
        seg = self.segment(api)
        r = admin.req("PATCH", "/" + cid, {"settings": {"segments": seg + "@every 1d"}})
        self.assertIn(r.status, (200, 204), r)
        admin.run(cid, sim)

        def queued():
            r = api.req("GET", "/v1/%s/deliveries?connector=%s" % (api.client_id, cid))
            ds = [d for d in r.json["data"] if d["operation"] == "sync_tag"]
            return ds if ds and ds[0]["state"] == "delivered" else None
        ds = harness.wait_until(queued, TIMEOUT, what="the scheduled sync")
        self.assertEqual(len(ds), 1)
        self.assertEqual(sim.tag_members(self.tag_name(seg)), fans[:3])
        # The next run within the day queues nothing more.
        admin.run(cid, sim)
        r = api.req("GET", "/v1/%s/deliveries?connector=%s" % (api.client_id, cid))
        self.assertEqual(len([d for d in r.json["data"] if d["operation"] == "sync_tag"]), 1)

        # A bad entry is refused when the settings are saved.
        r = admin.req("PATCH", "/" + cid, {"settings": {"segments": seg + "@every fortnight"}})
        self.assertEqual(r.status, 400, r)


if __name__ == "__main__":
    harness.main()
