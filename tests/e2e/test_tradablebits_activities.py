"""The `tradablebits` connector's activities stream (setting pull_activities) end to end against
the Tradable Bits simulator: what the hub keeps of a fan's activities on its customer record
(activity_count, last_activity_at, last_activity_type, last_activity_campaign) is compared with
the simulator's own activities, aggregated per fan.

Covered: a backfill in several pages (each page asked after the last id stored) reproduces every
fan's figures exactly and leaves fans without activities untouched; an incremental run after new
activities asks only after the last stored id and brings the figures up to date; an entry whose
form carried an opt-in makes a fan with no stated consent ad_opt_out false while a fan who
opted out stays opted out; segments over the figures (`activities`, `last_activity`) have
exactly the expected members; with pull_fans off the fans come from the activities' own fan
structure (created, with their e-mail) and an activity whose fan is gone is left out and
counted in the run's warning; a kill -9 between pages and a restart resume after the last
stored page, no activity fetched twice, and the counts stay exact."""

import calendar
import datetime
import os
import sys
import tempfile
import unittest

import harness

sys.path.insert(0, os.path.dirname(harness.HERE))      # tests/, for the sim package
from sim.tradablebits import Simulator  # noqa: E402

T = harness.TIME_SCALE
RUN_TIMEOUT = 90.0 * T
KEY, SECRET = "tb-test-key", "tb-test-secret"


def epoch_of(iso):
    return calendar.timegm(datetime.datetime.fromisoformat(iso).utctimetuple())


def utc(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def expected(sim):
    """{fan_id (str): {"n", "at", "type", "campaign", "opt_in"}} from the simulator's
    activities, in id order (of equal times the later activity is the last)."""
    out = {}
    for a in sorted(sim.activities(), key=lambda a: a["activity_id"]):
        if a["fan_id"] is None:
            continue
        e = out.setdefault(str(a["fan_id"]), {"n": 0, "at": -1, "opt_in": False})
        e["n"] += 1
        t = epoch_of(a["creation_timestamp"])
        if t >= e["at"]:
            e.update(at=t, type=a["app_type"], campaign=a["campaign_title"])
        e["opt_in"] = e["opt_in"] or bool(a["is_subscribed"])
    return out


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
        """Run now and wait for that run to end: its first call reached the simulator, then
        the state left "running" (last_run has a resolution of a second: not a witness)."""
        n_before = len(sim.calls())
        r = self.req("POST", "/%s/run" % cid)
        if r.status != 202:
            raise AssertionError("run -> %r" % (r,))
        harness.wait_until(lambda: len(sim.calls()) > n_before, RUN_TIMEOUT,
                           what="the run's first call")

        def ended():
            st = self.status(cid)
            return None if st["state"] in ("running", "never_run") else st
        return harness.wait_until(ended, RUN_TIMEOUT, interval=0.05, what="the run to end")


def settings_for(sim, **kw):
    s = {"base_url": sim.base_url, "api_key": KEY, "api_secret": SECRET, "currency": "CAD",
         "event_city": "Vancouver", "backfill_start": "2025-01-01", "pull_tickets": False,
         "pull_activities": True}
    s.update(kw)
    return s


class TradableBitsActivities(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sd-e2e-tbact-")
        cls.data = cls.tmp.name
        cls.keys = []
        for i in range(6):
            client = "act%d" % i
            harness.tenant_create(cls.data, client)
            cls.keys.append((client, harness.key_create(cls.data, client, "test")))
        cls.server = harness.Server(cls.data).start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop_ok()
        finally:
            cls.server.kill()
            cls.tmp.cleanup()

    def tenant(self):
        client, key = self.keys.pop()
        return Admin(self.server, client), self.server.api(client, key)

    def sim(self, **kw):
        s = Simulator(seed=kw.pop("seed", 5), **kw).start()
        self.addCleanup(s.stop)
        return s

    def customers(self, api):
        return {c["customer_id"]: c for c in api.list_all("customers")[0]}

    def assert_figures(self, api, sim, only_active=False):
        want = expected(sim)
        custs = self.customers(api)
        if only_active:
            self.assertEqual(set(custs), set(want))
        else:
            self.assertEqual(set(custs), {str(f["fan_id"]) for f in sim.fans()})
        for fid, c in custs.items():
            e = want.get(fid)
            if e is None:
                for k in ("activity_count", "last_activity_at", "last_activity_type",
                          "last_activity_campaign"):
                    self.assertNotIn(k, c, fid)
                continue
            self.assertEqual(c.get("activity_count"), e["n"], fid)
            self.assertEqual(c.get("last_activity_at"), utc(e["at"]), fid)
            self.assertEqual(c.get("last_activity_type"), e["type"], fid)
            self.assertEqual(c.get("last_activity_campaign"), e["campaign"], fid)
        return want, custs

    def members(self, api, rule):
        r = api.req("POST", "/v1/%s/segments" % api.client_id,
                    body={"segment_name": "active", "rules": rule})
        self.assertEqual(r.status, 201, r)
        seg = r.json["segment_id"]
        r = api.req("GET", "/v1/%s/segments/%s/members?limit=1000" % (api.client_id, seg))
        self.assertEqual(r.status, 200, r)
        return {s["customer_id"] for m in r.json["data"] for s in m["source_ids"]}

    # -- tests ---------------------------------------------------------------------------------
    def test_backfill_incremental_consent_and_segments(self):
        admin, api = self.tenant()
        sim = self.sim(fans=40, tickets=10, activities=80)
        cid = admin.add(settings_for(sim, activities_page_size=15))
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assertIsNone(st["last_warning"], st)
        want, _ = self.assert_figures(api, sim)
        self.assertTrue(any(e["n"] >= 2 for e in want.values()), "seed: nobody has two")
        self.assertLess(len(want), 40, "seed: every fan has an activity")
        calls = sim.calls("activities_list")
        self.assertEqual(len(calls), 6)                 # 80 = 5 x 15 + 5
        self.assertNotIn("min_activity_id", calls[0].query)
        for prev, c in zip(calls, calls[1:]):
            self.assertEqual(c.query["min_activity_id"],
                             [str(prev.answer["data"][-1]["activity_id"])])
            self.assertEqual(c.query["limit"], ["15"])
            self.assertEqual(c.query["include_details"], ["true"])
        last_id = calls[-1].answer["data"][-1]["activity_id"]

        # New activities: a fan with some, a fan with none and no stated consent whose entry
        # carried an opt-in, and an opted-out fan whose entry did too.
        fans = {str(f["fan_id"]): f for f in sim.fans()}
        busy = next(fid for fid, e in want.items() if e["n"] >= 2)
        quiet = next(fid for fid, f in fans.items() if fid not in want
                     and not f["is_subscribed"] and not f["is_optout"])
        out = next((fid for fid, f in fans.items() if f["is_optout"]), None)
        if out is None:
            out = next(fid for fid in fans if fid not in (busy, quiet))
            sim.update_fan(int(out), is_optout=True)
        sim.add_activity(int(busy), campaign_title="Summer Quiz", app_type="quiz")
        sim.add_activity(int(quiet), campaign_title="Backstage Draw", is_subscribed=True)
        sim.add_activity(int(out), is_subscribed=True)
        sim.add_activity(int(busy), campaign_title="Backstage Draw")
        sim.clear_calls()
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        calls = sim.calls("activities_list")
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0].query["min_activity_id"], [str(last_id)])
        want2, custs = self.assert_figures(api, sim)
        self.assertEqual(want2[busy]["n"], want[busy]["n"] + 2)
        self.assertEqual(custs[busy]["last_activity_campaign"], "Backstage Draw")
        self.assertEqual(custs[quiet]["activity_count"], 1)
        self.assertIs(custs[quiet].get("ad_opt_out"), False)   # the entry's opt-in
        self.assertIs(custs[out].get("ad_opt_out"), True)      # opt-out wins

        # Segments over the figures; opted-out people are never members.
        opted_out = {fid for fid, c in custs.items() if c.get("ad_opt_out") is True}
        got = self.members(api, {"customer": {"activities": {"gte": 2}}})
        self.assertEqual(got, {fid for fid, e in want2.items() if e["n"] >= 2} - opted_out)
        cut = max(e["at"] for e in want.values()) - 20 * 86400
        day = datetime.datetime.fromtimestamp(cut, datetime.timezone.utc).strftime("%Y-%m-%d")
        end_of_day = calendar.timegm(datetime.date.fromisoformat(day).timetuple()) + 86400
        got = self.members(api, {"customer": {"last_activity": {"after": day}}})
        self.assertEqual(got, {fid for fid, e in want2.items() if e["at"] >= end_of_day}
                         - opted_out)
        self.assertIn(quiet, got)
        got = self.members(api, {"customer": {"last_activity_type": "quiz",
                                              "activities": {"gte": 1}}})
        self.assertEqual(got, {fid for fid, e in want2.items() if e["type"] == "quiz"}
                         - opted_out)

    def test_unknown_fans_come_from_the_page(self):
        admin, api = self.tenant()
        sim = self.sim(seed=9, fans=30, tickets=10, activities=50)
        cid = admin.add(settings_for(sim, pull_fans=False, activities_page_size=20))
        sim.add_activity(None)          # its fan is gone: nothing to attach it to
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assertIn("1 activit(ies) left out", st["last_warning"] or "", st)
        self.assertEqual(sim.calls("fans_updated"), [])
        want, custs = self.assert_figures(api, sim, only_active=True)
        fans = {str(f["fan_id"]): f for f in sim.fans()}
        for fid, c in custs.items():
            self.assertEqual(c["email"], fans[fid]["email"], fid)
            self.assertEqual(c.get("first_name"), fans[fid]["first_name"], fid)
        # A new fan's first activity creates it; a known fan's adds to it.
        new = sim.add_fan(email="late.fan@example.org", first_name="Late", last_name="Fan")
        sim.add_activity(new)
        sim.add_activity(int(next(iter(want))))
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        want, custs = self.assert_figures(api, sim, only_active=True)
        self.assertEqual(custs[str(new)]["email"], "late.fan@example.org")
        self.assertEqual(custs[str(new)]["activity_count"], 1)

    def test_restart_between_pages_resumes_without_refetching(self):
        admin, api = self.tenant()
        sim = self.sim(seed=13, fans=30, tickets=10, activities=90)
        cid = admin.add(settings_for(sim, activities_page_size=10))
        # Pages 1-3 answer at once; the 4th hangs until the hub is killed.
        sim.inject("activities_list", ("sleep", 0), ("sleep", 0), ("sleep", 0),
                   ("sleep", 15 * T))
        r = admin.req("POST", "/%s/run" % cid)
        self.assertEqual(r.status, 202)
        harness.wait_until(lambda: len(sim.calls("activities_list")) >= 4, RUN_TIMEOUT,
                           what="the 4th activities call")
        self.server.kill()
        first = sim.calls("activities_list")
        stored = first[:3]
        sim.clear_faults()
        sim.clear_calls()
        type(self).server = harness.Server(self.data).start()
        admin.server = self.server
        api.port = self.server.port
        harness.wait_until(lambda: sim.calls("activities_list"), RUN_TIMEOUT,
                           what="the resumed run")

        def ended():
            st = admin.status(cid)
            return st if st["state"] not in ("running", "never_run") else None
        st = harness.wait_until(ended, RUN_TIMEOUT, interval=0.05, what="the resumed run to end")
        self.assertEqual(st["state"], "ok", st)
        again = sim.calls("activities_list")
        self.assertEqual(again[0].query.get("min_activity_id"),
                         [str(stored[-1].answer["data"][-1]["activity_id"])])
        got = [a["activity_id"] for c in stored + again for a in c.answer["data"]]
        self.assertEqual(len(got), len(set(got)), "an activity was fetched twice")
        self.assertEqual(sorted(got), sorted(a["activity_id"] for a in sim.activities()))
        self.assert_figures(api, sim)


if __name__ == "__main__":
    harness.main()
