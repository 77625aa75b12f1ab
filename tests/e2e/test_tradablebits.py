"""The `tradablebits` connector end to end against the Tradable Bits simulator
(tests/sim/tradablebits): `stagedoor serve` runs connectors configured over the admin API, and
what the hub stored is read back over GET /v1/{client_id}/customers|sales|events and compared
with the simulator's own account.

Covered: a backfill (ticket windows partitioned by last-update date, several pages each) then an
incremental run after changes in the vendor's UI reproduce the simulator's fans and live tickets
exactly (deleted tickets as cancelled sales); a ticket deleted later cancels its sale, or
deletes it (tombstone), or is skipped and counted; a kill -9 between ticket pages and a restart
resume after the last stored page (the simulator's call record shows no page asked twice); a
429 with Retry-After is waited out and the page asked again; a ticket that changes after its
page was read, while a ticket on a later page changes after it, is found by the next sweep; a cut answer is retried, an in-band error fails the run and the next
run completes; a bad ticket stops the run at its page (reject_page) or is skipped and named
(skip_records); under a tight vendor limit the
connector never calls before Retry-After allows and still completes; the type's quota ledger
holds a pull to 70 calls per aligned 10 s window (7 x 85 < 600 per rolling minute), and a
ticket page whose numbers arrive as strings is stored the same.

Push: 250 sales go out as tickets in three bulk calls (100, 100, 50) and the same sales again
answer 250 duplicates with the simulator's tickets unchanged; a 429 holds the batch for its
Retry-After and a refused row dead-letters its sale alone; customers go out as fans (create,
duplicate email -> update, later change -> update of the same fan), nothing pulled is pushed
back and a fan the push created is not pulled back."""

import json
import os
import sys
import tempfile
import time
import unittest

import harness

sys.path.insert(0, os.path.dirname(harness.HERE))      # tests/, for the sim package
from sim.tradablebits import Simulator  # noqa: E402

T = harness.TIME_SCALE
RUN_TIMEOUT = 90.0 * T
KEY, SECRET = "tb-test-key", "tb-test-secret"


class Admin:
    """Connectors of one tenant over the admin API of one server."""

    def __init__(self, server, client_id):
        self.server = server
        self.client_id = client_id
        with open(os.path.join(server.data_dir, "admin.token")) as f:
            self.token = f.read().strip()

    def req(self, method, path, body=None):
        return harness.http(self.server.port, method,
                            "/admin/v1/tenants/%s/connectors%s" % (self.client_id, path),
                            body=body, key=self.token)

    def add(self, settings, mapping=None):
        body = {"type": "tradablebits", "environment": "test", "schedule": "manual",
                "settings": settings}
        if mapping is not None:
            body["mapping"] = mapping
        r = self.req("POST", "", body)
        if r.status != 201:
            raise AssertionError("connector not created: %r" % (r,))
        return r.json["connector_id"]

    def get(self, cid):
        r = self.req("GET", "/" + cid)
        if r.status != 200:
            raise AssertionError("GET connector %s -> %r" % (cid, r))
        return r.json

    def status(self, cid):
        return self.get(cid)["status"]

    def run(self, cid, sim, timeout=None):
        """Run now and wait for that run to end (its first call reached the simulator, then the
        state left "running"); returns the status."""
        n_before = len(sim.calls())
        r = self.req("POST", "/%s/run" % cid)
        if r.status != 202:
            raise AssertionError("run %s -> %r" % (cid, r))
        timeout = timeout or RUN_TIMEOUT
        before = self.status(cid)

        def started():
            if len(sim.calls()) > n_before:
                return True
            st = self.status(cid)
            if st["state"] == "failed" and st["last_run"] != before["last_run"]:
                raise AssertionError("the run failed before calling: %r" % (st,))
            return False
        harness.wait_until(started, timeout, what="the run's first call")

        def ended():
            st = self.status(cid)
            return None if st["state"] in ("running", "never_run") else st
        return harness.wait_until(ended, timeout, interval=0.05, what="the run to end")


def settings_for(sim, **kw):
    s = {"base_url": sim.base_url, "api_key": KEY, "api_secret": SECRET, "currency": "CAD",
         "event_city": "Vancouver", "backfill_start": "2025-01-01", "partition_days": 120}
    s.update(kw)
    return s


def money(x):
    return "%.2f" % float(x)


class TradableBitsPull(unittest.TestCase):
    """One hub for the class; each test has its own tenant and simulator."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sd-e2e-tb-")
        cls.data = cls.tmp.name
        # Keys are created before the hub starts (it reads them once).
        cls.keys = []
        for i in range(16):
            client = "tb%d" % i
            harness.tenant_create(cls.data, client)
            cls.keys.append((client, harness.key_create(cls.data, client, "test")))
        cls.server = harness.Server(cls.data).start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop_ok()    # a clean exit: sanitizer builds report leaks here
        finally:
            cls.server.kill()
            cls.tmp.cleanup()

    def tenant(self):
        client, key = self.keys.pop()
        return Admin(self.server, client), self.server.api(client, key)

    def sim(self, **kw):
        s = Simulator(seed=kw.pop("seed", 7), **kw).start()
        self.addCleanup(s.stop)
        return s

    # -- comparison with the simulator's account -------------------------------------------
    def assert_reproduces(self, api, sim, deleted_tickets="cancel"):
        fans = {str(f["fan_id"]): f for f in sim.fans()}
        custs = {c["customer_id"]: c for c in api.list_all("customers")[0]}
        self.assertEqual(set(custs), set(fans))
        for fid, f in fans.items():
            c = custs[fid]
            self.assertEqual(c["email"], f["email"], fid)
            self.assertEqual(c.get("first_name"), f["first_name"], fid)
            self.assertEqual(c.get("last_name"), f["last_name"], fid)
            self.assertEqual(c.get("post_code"), f["postal_code"], fid)
            want = True if f["is_optout"] else (False if f["is_subscribed"] else None)
            self.assertEqual(c.get("ad_opt_out"), want, fid)
        # cancel: every ticket is a sale, the deleted ones cancelled; tombstone and skip: the
        # live tickets only (the tests never pull a ticket before it is deleted with skip).
        tickets = {t["ticket_key"]: t for t in sim.tickets(include_deleted=
                                                           deleted_tickets == "cancel")}
        full = {t["ticket_id"]: t for t in sim.tickets()}
        self.assertTrue(any(t["is_deleted"] for t in full.values()), "seed has no deletion")
        sales = {s["invoice_number"]: s for s in api.list_all("sales")[0] if not s.get("deleted")}
        self.assertEqual(set(sales), set(tickets))
        owners = {t["ticket_key"]: t for t in sim.tickets()}
        for k, t in tickets.items():
            s = sales[k]
            if t["is_deleted"] in (True, 1, "1"):
                self.assertEqual(s.get("status"), "cancelled", k)
                self.assertEqual(s["status_changed_at"][:19],
                                 t["last_updated_timestamp"][:19], k)
            else:
                self.assertIn(s.get("status"), (None, "sold"), k)
            self.assertEqual(s["quantity"], int(t["num_seats"]), k)
            self.assertEqual(s["sales_price"], money(t["paid_amount"]), k)
            self.assertEqual(s["currency"], "CAD", k)
            self.assertEqual(s["event_id"], t["event_key"], k)
            self.assertEqual(s["ticket_category"], "regular", k)
            self.assertEqual(s["purchase_datetime"][:19], t["purchase_timestamp"][:19], k)
            fan = sim.fan(email=owners[k]["email"])
            self.assertEqual(s["customer_id"], str(fan["fan_id"]) if fan else "ANON", k)
        events = {e["event_id"]: e for e in api.list_all("events")[0]}
        for t in tickets.values():
            e = events[t["event_key"]]
            self.assertEqual(e["title"], t["event_name"])
            self.assertEqual(e["venue"], t["venue_name"])
            self.assertEqual(e["date"], t["event_date"][:10])
            self.assertEqual(e["time"], t["event_date"][11:19])
        return sum(1 for t in full.values() if t["is_deleted"])

    # -- tests ---------------------------------------------------------------------------------
    def test_backfill_then_incremental(self):
        admin, api = self.tenant()
        sim = self.sim(fans=60, tickets=150)
        cid = admin.add(settings_for(sim, tickets_page_size=40))
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assertTrue(self.assert_reproduces(api, sim))
        self.assertIsNone(st["last_warning"], st)

        # The backfill was cut into closed date windows, then one open window; every ticket
        # call asks for deleted ones too and stays within the page size.
        calls = sim.calls("tickets_list")
        his = {c.query.get("max_last_update_date", [None])[0] for c in calls}
        self.assertGreater(len(his - {None}), 2, "the backfill was not partitioned")
        self.assertIn(None, his)
        for c in calls:
            self.assertEqual(c.query["include_deleted"], ["true"])
            self.assertEqual(c.query["limit"], ["40"])
            self.assertEqual(c.status, 200)
        self.assertEqual(sim.writes(), [])
        fans_calls = sim.calls("fans_updated")
        self.assertEqual(fans_calls[0].query, {"last_update_date": ["2025-01-01"]})

        # The first sweep after the backfill starts where the server's time stood at the
        # backfill's first page (here: before any ticket, so from backfill_start): one open
        # window, a full pass; it changes nothing.
        sim.clear_calls()
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        for c in sim.calls("tickets_list"):
            self.assertNotIn("max_last_update_date", c.query)
        self.assertEqual(st["last_run_stats"]["records_unchanged"],
                         st["last_run_stats"]["records_in"], st)
        fans_calls = sim.calls("fans_updated")

        # Changes in the vendor's UI after that; the next run finds exactly them.
        # A subscribed fan opts out without unsubscribing: opt-out wins.
        sub = next(f for f in sim.fans() if f["is_subscribed"])
        sim.update_fan(sub["fan_id"], first_name="Renamed", is_optout=True)
        new_id = sim.add_fan(email="late.fan@example.test", first_name="Late", last_name="Fan",
                             is_subscribed=True)
        live = sim.tickets(include_deleted=False)
        sim.update_ticket(live[5]["ticket_id"], num_seats=7, paid_amount=777.7)
        max_key = [c.query for c in fans_calls][-1].get("min_time_key", [None])[0]
        sim.clear_calls()
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assert_reproduces(api, sim)
        self.assertEqual(api.get("customers", str(new_id)).json["first_name"], "Late")
        self.assertIs(api.get("customers", str(sub["fan_id"])).json["ad_opt_out"], True)
        # Incremental: the fans feed resumes after the last key stored, the tickets sweep is
        # one open window from the latest update seen.
        self.assertEqual(sim.calls("fans_updated")[0].query, {"min_time_key": [max_key]})
        tcalls = sim.calls("tickets_list")
        self.assertEqual(len(tcalls), 1, [c.query for c in tcalls])
        self.assertNotIn("max_last_update_date", tcalls[0].query)
        lo = tcalls[0].query["min_last_update_date"][0].replace(" ", "T")
        want = sorted(t["ticket_id"] for t in sim.tickets()
                      if t["last_updated_timestamp"][:19] >= lo)
        self.assertEqual(sorted(t["ticket_id"] for t in tcalls[0].answer["data"]), want)
        self.assertIn(live[5]["ticket_id"], want)

    def test_deletion_propagates(self):
        # A ticket deleted in the vendor's UI after its sale was pulled: cancel (the default)
        # makes the sale cancelled; tombstone removes it from the hub (and from the change
        # feed's live records); skip leaves it and says so.
        admin, api = self.tenant()
        sim = self.sim(seed=29, fans=15, tickets=40)
        cid = admin.add(settings_for(sim, partition_days=3660))
        self.assertEqual(admin.run(cid, sim)["state"], "ok")
        self.assert_reproduces(api, sim)
        live = sim.tickets(include_deleted=False)
        seed_deleted = {t["ticket_key"] for t in sim.tickets() if t["is_deleted"]}
        victim = live[3]
        self.assertIn(api.get("sales", victim["ticket_key"]).json.get("status"), (None, "sold"))
        sim.delete_ticket(victim["ticket_id"])
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        sale = api.get("sales", victim["ticket_key"]).json
        self.assertEqual(sale["status"], "cancelled")
        self.assert_reproduces(api, sim)
        # The same deletion with tombstone: the sale leaves the hub.
        r = admin.req("PATCH", "/" + cid, {"settings": {"deleted_tickets":
                                                                     "tombstone"}})
        self.assertEqual(r.status, 200, r)
        victim2 = live[5]
        sim.delete_ticket(victim2["ticket_id"])
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(api.get("sales", victim2["ticket_key"]).status, 404)
        self.assertEqual(api.get("sales", victim["ticket_key"]).status, 404)
        feed = api.list_all("sales")[0]
        self.assertIn({"deleted": True, "id": victim2["ticket_key"]},
                      [{"deleted": x.get("deleted"), "id": x.get("id")} for x in feed])
        left = {s["invoice_number"] for s in feed if not s.get("deleted")}
        # The sweep after the change reads only tickets updated since: the seed's deletions,
        # cancelled by the first run, stay cancelled.
        self.assertEqual(left, {t["ticket_key"] for t in sim.tickets(include_deleted=False)}
                         | seed_deleted)
        # skip: a deletion leaves the sale and is counted in the warning.
        r = admin.req("PATCH", "/" + cid, {"settings": {"deleted_tickets": "skip"}})
        self.assertEqual(r.status, 200, r)
        victim3 = live[7]
        sim.delete_ticket(victim3["ticket_id"])
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assertIn("deleted ticket(s) skipped", st["last_warning"] or "")
        self.assertIn(api.get("sales", victim3["ticket_key"]).json.get("status"), (None, "sold"))

    def test_restart_between_pages_resumes_without_refetching(self):
        admin, api = self.tenant()
        sim = self.sim(seed=11, fans=30, tickets=120)
        cid = admin.add(settings_for(sim, tickets_page_size=25, partition_days=3660))
        # Pages 1-3 of the tickets answer at once; the 4th hangs until the hub is killed.
        sim.inject("tickets_list", ("sleep", 0), ("sleep", 0), ("sleep", 0),
                   ("sleep", 15 * T))
        r = admin.req("POST", "/%s/run" % cid)
        self.assertEqual(r.status, 202)
        sim.wait_calls(3, "tickets_list", timeout=RUN_TIMEOUT)
        harness.wait_until(lambda: len(sim.calls("tickets_list")) >= 4, RUN_TIMEOUT,
                           what="the 4th tickets call")
        self.server.kill()
        first = sim.calls("tickets_list")
        stored_pages = first[:3]
        sim.clear_faults()
        sim.clear_calls()
        type(self).server = harness.Server(self.data).start()
        admin.server = self.server
        api.port = self.server.port
        # A run cut short is resumed at once after a restart (the scheduler's rule): no request
        # to run, so that exactly one run follows.
        harness.wait_until(lambda: sim.calls(), RUN_TIMEOUT, what="the resumed run")

        def ended():
            st = admin.status(cid)
            return st if st["state"] not in ("running", "never_run") and sim.calls() else None
        st = harness.wait_until(ended, RUN_TIMEOUT, interval=0.05, what="the resumed run to end")
        self.assertEqual(st["state"], "ok", st)
        again = sim.calls("tickets_list")
        # The run after the restart starts at the page that was in flight, after the last
        # ticket of the third stored page, in the same window.
        last_id = stored_pages[-1].answer["data"][-1]["ticket_id"]
        self.assertEqual(again[0].query.get("min_ticket_id"), [str(last_id)])
        self.assertEqual(again[0].query["min_last_update_date"],
                         first[3].query["min_last_update_date"])
        asked = [(c.query["min_last_update_date"][0], c.query.get("min_ticket_id", [""])[0])
                 for c in stored_pages + again]
        self.assertEqual(len(asked), len(set(asked)), asked)
        got = [t["ticket_id"] for c in stored_pages + again for t in c.answer["data"]]
        self.assertEqual(sorted(got), sorted(t["ticket_id"] for t in sim.tickets()))
        self.assertEqual(len(got), len(set(got)), "a ticket was fetched twice")
        self.assert_reproduces(api, sim)

    def test_429_retry_after_is_waited_out(self):
        admin, api = self.tenant()
        # type_drift: numbers as strings and is_deleted as 0/1 on even ticket ids
        sim = self.sim(seed=5, fans=20, tickets=40, type_drift=True)
        cid = admin.add(settings_for(sim, partition_days=3660))
        sim.inject("tickets_list", ("status", 429, {"Retry-After": "2"}))
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        calls = sim.calls("tickets_list")
        self.assertEqual(calls[0].status, 429)
        self.assertEqual(calls[1].status, 200)
        self.assertEqual(calls[1].raw_path, calls[0].raw_path)
        self.assertGreaterEqual(calls[1].t - calls[0].t, 1.9)
        self.assert_reproduces(api, sim)

    def test_tight_vendor_limit_is_respected(self):
        admin, api = self.tenant()
        sim = self.sim(seed=9, fans=20, tickets=60, rate_limit=3, rate_window=2)
        cid = admin.add(settings_for(sim, tickets_page_size=10, partition_days=3660))
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        calls = sim.calls()
        refused = [c for c in calls if c.status == 429]
        self.assertTrue(refused, "the limit was never reached: the test proves nothing")
        for c in refused:
            nxt = [d for d in calls if d.t > c.t]
            self.assertTrue(nxt)
            # the next call waits for the slot Retry-After names (whole seconds, rounded up)
            self.assertGreaterEqual(nxt[0].t - c.t, float(c.retry_after) - 1.0, c.retry_after)
        self.assert_reproduces(api, sim)
        # Every call the simulator saw is in the type's ledger (one credential: the api_key).
        q = st.get("quotas")
        self.assertTrue(q, st)
        self.assertEqual(q[0]["window"], "10s")
        self.assertEqual(q[0]["limit"], 85)

    def test_ledger_caps_reads_per_window(self):
        # 160 ticket pages of one ticket: unthrottled they would land in one or two aligned 10 s
        # windows, so one would hold 80 or more; the ledger lets a pull make 70 per window.
        admin, api = self.tenant()
        sim = self.sim(seed=13, fans=10, tickets=160, rate_limit=0)
        cid = admin.add(settings_for(sim, tickets_page_size=1, partition_days=3660))
        st = admin.run(cid, sim, timeout=RUN_TIMEOUT + 60 * T)
        self.assertEqual(st["state"], "ok", st)
        calls = sim.calls()
        self.assertGreater(len(calls), 160)
        per_window = {}
        for c in calls:
            # the wall clock at arrival, as the hub's ledger windows are: monotonic time plus an
            # offset taken at the start drifts by 0.1 s over this test while NTP slews the clock
            w = int(c.wall // 10)
            per_window[w] = per_window.get(w, 0) + 1
        # 70 per window; 2 more for a call taken just before a boundary and received after it
        self.assertLessEqual(max(per_window.values()), 72, per_window)
        self.assertGreaterEqual(len(per_window), 3, per_window)
        self.assert_reproduces(api, sim)

    def test_change_during_a_sweep_is_not_lost(self):
        # Ticket A (on the sweep's first page) changes after that page was read, and ticket B
        # (on a later page) changes later still: the next sweep must start no later than A's
        # change, although B's later timestamp was seen in this sweep.
        admin, api = self.tenant()
        sim = self.sim(seed=17, fans=20, tickets=60)
        sim.clock.freeze()
        start = sim.clock.now()
        cid = admin.add(settings_for(sim, tickets_page_size=10, partition_days=3660))
        self.assertEqual(admin.run(cid, sim)["state"], "ok")
        live = sorted(sim.tickets(include_deleted=False), key=lambda t: t["ticket_id"])
        sim.clock.set(start + 10)
        for t in live[:30]:
            sim.update_ticket(t["ticket_id"])       # 30 changed tickets: several pages
        a, b = live[0], live[29]
        sim.clear_calls()
        sim.inject("tickets_list", ("sleep", 0), ("sleep", 3 * T))
        self.assertEqual(admin.req("POST", "/%s/run" % cid).status, 202)
        harness.wait_until(lambda: len(sim.calls("tickets_list")) >= 2, RUN_TIMEOUT,
                           what="the sweep's second page asked")
        sim.clock.set(start + 50)
        sim.update_ticket(a["ticket_id"], num_seats=9)
        sim.clock.set(start + 100)
        sim.update_ticket(b["ticket_id"], num_seats=8)

        def ended():
            st = admin.status(cid)
            return st if st["state"] not in ("running", "never_run") else None
        self.assertEqual(harness.wait_until(ended, RUN_TIMEOUT, what="the run")["state"], "ok")
        pages = sim.calls("tickets_list")
        self.assertIn(a["ticket_id"], [t["ticket_id"] for t in pages[0].answer["data"]])
        self.assertIn(b["ticket_id"], [t["ticket_id"] for c in pages[2:]
                                       for t in c.answer["data"]])
        self.assertEqual(admin.run(cid, sim)["state"], "ok")
        self.assertEqual(api.get("sales", a["ticket_key"]).json["quantity"], 9)
        self.assertEqual(api.get("sales", b["ticket_key"]).json["quantity"], 8)
        self.assert_reproduces(api, sim)

    def test_vendor_faults(self):
        # A cut answer is retried; an in-band error (200 with meta.status "error") fails the
        # run with the reason and stores nothing of that page; the next run completes.
        admin, api = self.tenant()
        sim = self.sim(seed=19, fans=15, tickets=30)
        sim.delete_ticket(sim.tickets()[3]["ticket_id"])
        cid = admin.add(settings_for(sim, partition_days=3660, retry_initial_ms=50))
        sim.inject("tickets_list", ("truncate",))
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual([c.status for c in sim.calls("tickets_list")][:2], ["truncate", 200])
        self.assert_reproduces(api, sim)
        sim.update_ticket(sim.tickets(include_deleted=False)[0]["ticket_id"], num_seats=6)
        sim.inject("tickets_list", ("inband", "maintenance"))
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "failed", st)
        self.assertIn('meta.status \"error\"', st["last_error"])
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assert_reproduces(api, sim)

    def test_bad_ticket_policies(self):
        # One ticket whose num_seats is not a number: reject_page (the default) stops the run at
        # its page and stores nothing of it; skip_records stores every other ticket and names
        # the bad one in the warning.
        admin, api = self.tenant()
        sim = self.sim(seed=23, fans=15, tickets=50)
        bad = sim.tickets(include_deleted=False)[7]
        sim.update_ticket(bad["ticket_id"], num_seats="many")
        cid = admin.add(settings_for(sim, partition_days=3660, tickets_page_size=20))
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "failed", st)
        self.assertIn("/data/", st["last_error"])
        self.assertIn("num_seats", st["last_error"])
        self.assertEqual(api.list_all("sales")[0], [])     # the bad ticket is on the first page
        r = admin.req("PATCH", "/" + cid, {"settings": {"policy": "skip_records"}})
        self.assertEqual(r.status, 200, r)
        st = admin.run(cid, sim)
        self.assertEqual(st["state"], "ok", st)
        self.assertIn("1 record(s) skipped", st["last_warning"])
        want = {t["ticket_key"] for t in sim.tickets()} - {bad["ticket_key"]}
        self.assertEqual({s["invoice_number"] for s in api.list_all("sales")[0]}, want)


    # -- push ----------------------------------------------------------------------------------
    def deliveries(self, api, cid):
        r = harness.http(self.server.port, "GET", "/v1/%s/deliveries?connector=%s&limit=1000"
                         % (api.client_id, cid), key=api.key)
        self.assertEqual(r.status, 200, r)
        return r.json["data"]

    def wait_settled(self, api, cid, n, timeout=None):
        """Wait until n items of cid are delivered or dead (none waiting); returns them."""
        def done():
            items = self.deliveries(api, cid)
            ended = [d for d in items if d["state"] in ("delivered", "dead")]
            return items if len(ended) >= n and len(ended) == len(items) else None
        return harness.wait_until(done, timeout or RUN_TIMEOUT, interval=0.1,
                                  what="%d deliveries of %s" % (n, cid))

    def push_body(self, n, tag, bad=()):
        ev = harness.event("EV-" + tag, title="Push Night", venue="Rogers Arena",
                           date="2026-05-01", time="19:30:00")
        custs = [harness.customer("C-%s-%d" % (tag, i), first_name="First%d" % i,
                                  last_name="Last%d" % i,
                                  email="c%d.%s@example.test" % (i, tag.lower()))
                 for i in range(10)]
        custs.append(harness.customer("C-%s-noname" % tag, email="noname.%s@example.test"
                                      % tag.lower()))
        sales = [harness.sale("S-%s-%03d" % (tag, i), event_id=ev["event_id"],
                              customer_id=(custs[-1] if i in bad else custs[i % 10])
                              ["customer_id"], quantity=1 + i % 3, sales_price="%d.50" % (10 + i),
                              currency="CAD")
                 for i in range(n)]
        return {"events": [ev], "customers": custs, "sales": sales}

    def test_bulk_push_of_250_tickets(self):
        # 250 sales go out as tickets in three bulk calls (100, 100, 50) with deterministic
        # ticket keys; the same sales pushed again answer 250 duplicates and change nothing.
        admin, api = self.tenant()
        sim = self.sim(seed=31, fans=5, tickets=3, require_ticket_key=True)
        cid = admin.add(settings_for(sim, push_tickets=True))
        before = {t["ticket_id"] for t in sim.tickets()}
        body = self.push_body(250, "B")
        r = api.ingest(body)
        self.assertEqual(r.status, 202, r)
        items = self.wait_settled(api, cid, 250)
        self.assertEqual({d["state"] for d in items}, {"delivered"})
        calls = sim.calls("tickets_bulk")
        self.assertEqual(sorted(len(c.form["tickets"]) for c in calls), [50, 100, 100])
        self.assertEqual([c.status for c in calls], [200, 200, 200])
        for c in calls:
            self.assertEqual(c.content_type.split(";")[0], "application/x-www-form-urlencoded")
            self.assertEqual(c.key_via, "header")
            self.assertEqual(c.answer["meta"]["success_count"], len(c.form["tickets"]))
        created = [t for t in sim.tickets() if t["ticket_id"] not in before]
        self.assertEqual(len(created), 250)
        byk = {t["ticket_key"]: t for t in created}
        sent = {}
        for c in calls:
            for row in c.form["tickets"]:
                row = json.loads(row)
                sent[row["ticket_key"]] = row
        custs = {c["customer_id"]: c for c in body["customers"]}
        for s in body["sales"]:
            t = byk["webhook:" + s["invoice_number"]]
            c = custs[s["customer_id"]]
            row = sent["webhook:" + s["invoice_number"]]
            self.assertEqual((row["email"], row["first_name"], row["last_name"]),
                             (c["email"], c["first_name"], c["last_name"]))
            self.assertEqual((row["customer_key"], row["price_code"]),
                             (s["customer_id"], "regular"))
            self.assertEqual(t["email"], c["email"])
            self.assertEqual(t["num_seats"], s["quantity"])
            self.assertEqual(money(t["paid_amount"]), s["sales_price"])
            self.assertEqual((t["event_key"], t["event_name"], t["venue_name"]),
                             ("EV-B", "Push Night", "Rogers Arena"))
            self.assertEqual(t["purchase_timestamp"][:19], "2025-04-15T11:08:42")
            self.assertEqual(t["event_date"][:19], "2026-05-01T19:30:00")
        # Every item names its ticket.
        snapshot = sim.tickets()
        # The same sales again (deleted in the hub, then sent again): 250 duplicates, nothing new.
        for s in body["sales"]:
            self.assertEqual(api.req("DELETE", "/v1/%s/sales/%s" % (api.client_id,
                                                                    s["invoice_number"])).status,
                             200)
        sim.clear_calls()
        r = api.ingest(body)
        self.assertEqual(r.status, 202, r)
        self.wait_settled(api, cid, 500)
        calls = sim.calls("tickets_bulk")
        self.assertEqual(sorted(len(c.form["tickets"]) for c in calls), [50, 100, 100])
        self.assertEqual(sum(c.answer["meta"]["duplicate_count"] for c in calls), 250)
        self.assertEqual(sim.tickets(), snapshot)
        self.assertEqual(sim.writes(), calls)

    def test_bulk_push_row_errors_and_429(self):
        # A 429 with Retry-After holds the whole batch that long, then it goes again; a row the
        # API refuses dead-letters that sale alone, its neighbours are delivered.
        admin, api = self.tenant()
        sim = self.sim(seed=37, fans=5, tickets=3)
        cid = admin.add(settings_for(sim, push_tickets=True))
        sim.inject("tickets_bulk", ("status", 429, {"Retry-After": "2"}))
        body = self.push_body(30, "E", bad={4})
        self.assertEqual(api.ingest(body).status, 202)
        items = self.wait_settled(api, cid, 30)
        calls = sim.calls("tickets_bulk")
        self.assertEqual([c.status for c in calls], [429, 200])
        self.assertGreaterEqual(calls[1].t - calls[0].t, 1.9)
        self.assertEqual(len(calls[1].form["tickets"]), 30)
        dead = [d for d in items if d["state"] == "dead"]
        self.assertEqual([d["subject"]["id"] for d in dead], ["S-E-004"])
        self.assertIn("first_name is required", dead[0]["last_response"])
        self.assertEqual(len([d for d in items if d["state"] == "delivered"]), 29)
        keys = {t["ticket_key"] for t in sim.tickets()}
        self.assertNotIn("webhook:S-E-004", keys)
        self.assertIn("webhook:S-E-005", keys)
        # The pull after: the tickets this instance pushed are the hub's own sales, not pulled
        # back as sales of their own; the account's other tickets are.
        self.assertEqual(admin.run(cid, sim)["state"], "ok")
        pulled = {x["invoice_number"] for x in api.list_all("sales")[0] if not x.get("deleted")}
        self.assertEqual(pulled - {x["invoice_number"] for x in body["sales"]},
                         {t["ticket_key"] for t in sim.tickets()
                          if not t["ticket_key"].startswith("webhook:")})
        self.assertEqual(len(self.deliveries(api, cid)), 30)

    def test_fans_out_and_no_echo(self):
        # Customers become fans: a new email is created, a known one (a fan pulled before) is a
        # duplicate and that fan is updated; a later change updates the same fan. What the pull
        # stored is never pushed back, and a fan the push created is not pulled back.
        admin, api = self.tenant()
        sim = self.sim(seed=41, fans=8, tickets=10)
        cid = admin.add(settings_for(sim, push_fans=True, push_tickets=True))
        self.assertEqual(admin.run(cid, sim)["state"], "ok")
        self.assertEqual(self.deliveries(api, cid), [])    # nothing pulled goes back
        known = sim.fans()[0]
        new = harness.customer("N-1", first_name="Nora", last_name="New",
                               email="nora.new@example.test", ad_opt_out=True)
        dup = harness.customer("D-1", first_name="Dana", last_name="Dup",
                               email=known["email"], ad_opt_out=False)
        sim.clear_calls()
        self.assertEqual(api.ingest({"customers": [new, dup]}).status, 202)
        items = self.wait_settled(api, cid, 2)
        self.assertEqual({d["state"] for d in items}, {"delivered"}, items)
        f_new = sim.fan(email="nora.new@example.test")
        self.assertEqual((f_new["first_name"], f_new["is_optout"], f_new["is_subscribed"]),
                         ("Nora", True, False))
        f_dup = sim.fan(email=known["email"])
        self.assertEqual(f_dup["fan_id"], known["fan_id"])
        self.assertEqual((f_dup["first_name"], f_dup["is_subscribed"]), ("Dana", True))
        self.assertEqual([c.op for c in sim.writes()].count("fan_create"), 2)
        self.assertEqual([c.op for c in sim.writes()].count("fan_update"), 1)
        # A change of the new customer updates the fan it created: no second create.
        sim.clear_calls()
        self.assertEqual(api.ingest({"customers": [dict(new, first_name="Nina")]}).status, 202)
        self.wait_settled(api, cid, 3)
        self.assertEqual([c.op for c in sim.writes()], ["fan_update"])
        self.assertEqual(sim.calls("fan_update")[0].params["fan_id"], str(f_new["fan_id"]))
        self.assertEqual(sim.fan(email="nora.new@example.test")["first_name"], "Nina")
        # The pull after: the fan the push created is not a customer of this source; the fan
        # that was there before is, with the name the push gave it; nothing is pushed back.
        self.assertEqual(admin.run(cid, sim)["state"], "ok")
        self.assertEqual(api.get("customers", str(f_new["fan_id"])).status, 404)
        self.assertEqual(api.get("customers", str(known["fan_id"])).json["first_name"], "Dana")
        self.assertEqual(len(self.deliveries(api, cid)), 3)


if __name__ == "__main__":
    harness.main()
