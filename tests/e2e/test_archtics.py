"""The `archtics` connector (pull streams) end to end against the ATS simulator
(tests/sim/archtics): `stagedoor serve` runs the connector configured over the admin API, and
what the hub stored is read back over GET /v1/{client_id}/customers|events|sales and compared
with the simulator's own world.

Covered: a backfill and an incremental run reproduce the simulator's accounts, events, sales,
returns (refund records) and scans (attended_quantity per sale) exactly, through random 202
cycles and type drift; a late commit at a cursor's boundary is found and nothing is stored twice;
a kill -9 in the middle of a polling cycle and a restart resume the poll (the next call carries
the saved cookies; the command is not submitted again); a 401 pauses the instance (no call until
the settings change); a 429 is waited out; 503s are backed off; the day's quota running out in
the middle of a backfill pauses the run and the next simulated day resumes it without asking for
anything twice; the ledger's own day limit pauses the run before the server refuses anything;
a daylight-saving change (clocks back) in the venue's zone loses and doubles nothing; an
event_details page too large (11075) is halved until it fits; a 404 is a setup error; with a
bootstrap cut-off the streams start there; a sale of an account deleted in Archtics is stored
anonymous; an account without an e-mail, or with one that is not a valid address (dropped with a
warning), is a customer all the same and its sales are its own; a new scan is counted from
the hub's own sales (no get_ticket_sales); the season-ticket holders' plan seat blocks
(seats_sold) are reproduced, a seat change frees the old block, nothing is read before
seats_refresh_hours nor written again unchanged, and a pass stopped by the call budget resumes
with the next holder. Every test not about the limits asserts the simulator saw no call beyond its
quotas.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import os
import sys
import tempfile
import time
import unittest

import harness

sys.path.insert(0, os.path.dirname(harness.HERE))      # tests/, for the sim package
from sim.archtics import Simulator  # noqa: E402
from sim.archtics.commands import EMAIL_RE  # noqa: E402

T = harness.TIME_SCALE
RUN_TIMEOUT = 120.0 * T
KEY, DSN = "test-key-1", "stagedoor_test"
ZONE = "America/New_York"


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

    def add(self, settings):
        body = {"type": "archtics", "environment": "test", "schedule": "manual",
                "settings": settings}
        r = self.req("POST", "", body)
        if r.status != 201:
            raise AssertionError("connector not created: %r" % (r,))
        return r.json["connector_id"]

    def update(self, cid, settings):
        r = self.req("PATCH", "/" + cid, {"settings": settings})
        if r.status != 200:
            raise AssertionError("PATCH connector %s -> %r" % (cid, r))

    def status(self, cid):
        r = self.req("GET", "/" + cid)
        if r.status != 200:
            raise AssertionError("GET connector %s -> %r" % (cid, r))
        return r.json["status"]

    def start(self, cid):
        before = self.status(cid)["last_run"]
        # last_run has whole seconds: start in a later second than the last run's
        while before and time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) <= before:
            time.sleep(0.05)
        r = self.req("POST", "/%s/run" % cid)
        if r.status != 202:
            raise AssertionError("run %s -> %r" % (cid, r))
        return before

    def wait_end(self, cid, before, timeout=None):
        def ended():
            st = self.status(cid)
            if st["state"] in ("running", "never_run") or st["last_run"] == before:
                return None
            return st
        return harness.wait_until(ended, timeout or RUN_TIMEOUT, interval=0.05,
                                  what="the run to end")

    def run(self, cid, timeout=None):
        return self.wait_end(cid, self.start(cid), timeout)


def settings_for(sim, **kw):
    s = {"base_url": sim.url, "api_key": KEY, "dsn": DSN, "venue_time_zone": ZONE,
         "event_city": "Seattle", "currency": "USD", "poll_interval_ms": 100,
         "retry_initial_ms": 50, "quota_10s_calls": 200}
    s.update(kw)
    return s


def money(cents):
    return "%d.%02d" % divmod(cents, 100)


class ArchticsPull(unittest.TestCase):
    """One hub for the class; each test has its own tenant and simulator."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sd-e2e-archtics-")
        cls.data = cls.tmp.name
        cls.keys = []
        for i in range(16):
            client = "at%d" % i
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
        kw.setdefault("accounts", 30)
        kw.setdefault("events", 8)
        kw.setdefault("sales_per_event", 6)
        kw.setdefault("plan_holders", 2)
        kw.setdefault("per_minute", 2000)    # the connector's own ledger is set to match
        s = Simulator(seed=kw.pop("seed", 5), **kw).start()
        self.addCleanup(s.stop)
        return s

    # -- comparison with the simulator's world ---------------------------------------------
    def assert_reproduces(self, api, sim):
        w = sim.world
        now = sim.clock.now()
        # every account is a customer, with or without a (valid) e-mail
        accts = {str(a): x for a, x in w.accounts.items() if x["visible"] <= now}
        custs = {c["customer_id"]: c for c in api.list_all("customers")[0]}
        self.assertEqual(set(custs), set(accts))
        for k, a in accts.items():
            c = custs[k]
            valid = a["email"] and EMAIL_RE.match(a["email"])
            self.assertEqual(c.get("email"), a["email"] if valid else None, k)
            self.assertEqual(c.get("first_name"), a["name_first"] or None, k)
            self.assertEqual(c.get("last_name"), a["name_last"] or None, k)
            self.assertEqual(c.get("post_code"), a["zip"] or None, k)
        evs = {e["event_name"]: e for e in w.events if e["event_category"] == "E"}
        events = {e["event_id"]: e for e in api.list_all("events")[0]}
        self.assertEqual(set(events), set(evs))
        for k, e in evs.items():
            d = sim.clock.local_dt(e["start"])
            self.assertEqual(events[k]["date"], d.strftime("%Y-%m-%d"), k)
            self.assertEqual(events[k]["time"], d.strftime("%H:%M:00"), k)
            self.assertEqual(events[k]["title"], e["event_name_inet"], k)
        visible = [s for s in w.sales if s["visible"] <= now]
        scans = [s for s in w.scans if s["visible"] <= now]
        scanned_events = {s["event_name"] for s in scans}
        sales = {s["invoice_number"]: s for s in api.list_all("sales")[0]
                 if s.get("order_type") != "reservation"}   # plan seat blocks: see below
        self.assertEqual(set(sales), {str(s["trans_id"]) for s in visible})
        for s in visible:
            k = str(s["trans_id"])
            got = sales[k]
            self.assertEqual(got["quantity"], s["num_seats"], k)
            self.assertEqual(got["sales_price"], money(s["paid_cents"]), k)
            # a sale of an account deleted in Archtics stays, anonymous
            self.assertEqual(got["customer_id"],
                             str(s["acct_id"]) if str(s["acct_id"]) in accts else "ANON", k)
            self.assertEqual(got["event_id"], s["event_name"], k)
            utc = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(s["at"] - s["at"] % 60))
            self.assertEqual(got["purchase_datetime"][:16], utc, k)
            if s["trans_type"] == "R":
                self.assertEqual(got.get("refund_of"), str(s["orig_trans_id"]), k)
                continue
            self.assertIsNone(got.get("refund_of"), k)
            if s["event_name"] in scanned_events:
                seats = {(x["section_name"], x["row_name"], x["seat_num"]) for x in scans
                         if x["event_name"] == s["event_name"]}
                want = sum(1 for n in range(s["num_seats"])
                           if (s["section_name"], s["row_name"], s["seat_num"] + n) in seats)
                self.assertEqual(got.get("attended_quantity"), want, k)
            else:
                self.assertIsNone(got.get("attended_quantity"), k)
        return len(accts), len(visible), len(scans)

    def assert_clean(self, sim):
        sim.assert_within_quota()
        self.assertEqual(sim.errors(), [])

    # -- tests ---------------------------------------------------------------------------------
    def test_backfill_then_incremental(self):
        admin, api = self.tenant()
        sim = self.sim()
        gone = next(s["acct_id"] for s in sim.world.sales if not s["plan_name"])
        sim.world.delete_account(gone)
        cid = admin.add(settings_for(sim, page_size=7))
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertIsNone(st["last_warning"], st)
        n_accts, n_sales, n_scans = self.assert_reproduces(api, sim)
        self.assertIn("ANON", {x["customer_id"] for x in api.list_all("sales")[0]})
        self.assertGreater(n_scans, 0)
        self.assertTrue(any(s["trans_type"] == "R" for s in sim.world.sales))
        self.assertTrue(sim.record(kind="poll"), "no 202 cycle was exercised")
        self.assertGreater(len(sim.record("get_accounts_with_updates")), 2, "no paging")
        self.assertEqual(st["cursor"]["status"]["calls_last_run"],
                         len([c for c in sim.record() if c.counted]))
        self.assertTrue(st["quotas"] and st["quotas"][1]["window"] == "day", st["quotas"])
        self.assertGreaterEqual(st["quotas"][1]["used"], len(sim.record()))

        # changes on the Archtics side, one of them committed late at the cursor's boundary
        w = sim.world
        sim.clock.advance(120)
        a = w.add_account({"name_first": "New", "name_last": "Person",
                           "email": "new.person@example.com", "zip": "98101"})
        old = sorted(w.accounts)[3]
        w.touch_account(old, {"name_first": "Renamed"})
        ev = next(e for e in w.events if e["event_category"] == "E"
                  and e["start"] < sim.clock.now())
        s1 = w.add_sale(a["acct_id"], ev["event_name"], "301", "5", 1, 2, "A")
        hw = st["cursor"]["sales"]["events"][ev["event_name"]]["hw"]
        late = w.add_sale(old, ev["event_name"], "301", "6", 1, 1, "D",
                          at=sim.clock.epoch_of(hw) - 30, visible=sim.clock.now())
        w.add_return(s1["trans_id"])
        w.add_scan(late, 1)
        sim.clear_record()
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assert_reproduces(api, sim)
        # the incremental run asked only for what changed: one customer_query per changed
        # account, and no event list (refreshed daily)
        # (plus the deleted account, asked again when a sale of a recounted game names it)
        asked = [str(c.doc["command1"]["acct_id"])
                 for c in sim.record("customer_query", kind="command")]
        self.assertEqual(sorted(x for x in asked if x != str(gone)),
                         sorted([str(a["acct_id"]), str(old)]))
        self.assertEqual(sim.record("event_details"), [])
        self.assertEqual(st["records_rejected"], 0)

        # a run with nothing new stores nothing twice
        sim.clear_record()
        before = st["records_in"]
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(sim.record("customer_query"), [])
        self.assertEqual(st["last_run_stats"]["records_in"], 0, st)
        self.assertEqual(st["records_in"], before)

        # a new scan of a game whose sales the hub holds: the recount reads the hub's own
        # sales, not ATS (no get_ticket_sales call), and stores the one sale whose count changed
        now = sim.clock.now()
        scanned = {(x["event_name"], x["section_name"], x["row_name"], x["seat_num"])
                   for x in w.scans}
        sale, seat = next((s, s["seat_num"] + k) for s in w.sales
                          if s["trans_type"] == "S" and not s["returned"]
                          and w.event(s["event_name"])["start"] < now
                          for k in range(s["num_seats"])
                          if (s["event_name"], s["section_name"], s["row_name"],
                              s["seat_num"] + k) not in scanned)
        w.add_scan(sale, seat)
        sim.clear_record()
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assert_reproduces(api, sim)
        self.assertEqual(sim.record("get_ticket_sales"), [],
                         "the recount fetched sales the hub holds")
        self.assertEqual(st["last_run_stats"]["records_in"], 1, st)
        self.assert_clean(sim)

    def plan_blocks(self, sim):
        """The plan seat blocks the hub should hold open, from the simulator's world: one per
        holder, plan, section, row, first seat, seats and time added, across the plan's games."""
        w, want = sim.world, {}
        for acct in w.accounts:
            for b in w.seats_of(acct):
                if not b["plan_name"]:
                    continue
                added = sim.clock.local(b["at"]).replace("-", "").replace(" ", "").replace(":", "")
                inv = "st-%s-%s-%s-%s-%s-%s" % (acct, b["plan_name"], b["section_name"],
                                                b["row_name"], b["seat_num"], added)
                rec = want.setdefault(inv, {
                    "customer_id": str(acct), "event_id": b["event_name"],
                    "quantity": b["num_seats"], "sales_price": money(b["paid_cents"]),
                    "base_price": money(b["full_cents"]), "ticket_category": "subscription",
                    "games": 0})
                rec["event_id"] = min(rec["event_id"], b["event_name"])
                rec["games"] += 1
        return want

    def assert_plan_blocks(self, api, sim):
        got = {s["invoice_number"]: s for s in api.list_all("sales")[0]
               if s.get("order_type") == "reservation"}
        want = self.plan_blocks(sim)
        opened = {k for k, s in got.items() if s.get("status", "open") == "open"}
        self.assertEqual(opened, set(want))
        for k, rec in want.items():
            games = rec.pop("games")
            for f, v in rec.items():
                self.assertEqual(got[k].get(f), v, (k, f))
            self.assertEqual(got[k]["archtics"]["games"], games, k)
        return got

    def test_plan_seats_per_holder(self):
        admin, api = self.tenant()
        sim = self.sim(plan_holders=3)
        w = sim.world
        cid = admin.add(settings_for(sim))
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        got = self.assert_plan_blocks(api, sim)
        holders = {b["customer_id"] for b in self.plan_blocks(sim).values()}
        self.assertEqual(len(holders), 3)
        asked = sorted(str(c.doc["command1"]["acct_id"]) for c in sim.record("seats_sold"))
        self.assertEqual(asked, sorted(holders), "one seats_sold call per holder")
        self.assertEqual(len(got), len(self.plan_blocks(sim)))

        # a holder moves: every game's block returned, a new one two rows up
        holder = int(sorted(holders)[0])
        moved = [x for x in w.sales if x["acct_id"] == holder and x["plan_name"]
                 and x["trans_type"] == "S" and not x["returned"]]
        sim.clock.advance(120)
        for x in moved:
            w.add_return(x["trans_id"])
            w.add_sale(holder, x["event_name"], x["section_name"], str(int(x["row_name"]) + 2),
                       x["seat_num"], x["num_seats"], x["price_code"],
                       price_cents=x["paid_cents"], plan_name=x["plan_name"])
        sim.clear_record()
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(sim.record("seats_sold"), [], "read again before seats_refresh_hours")

        # when the refresh is due (here: every run) the blocks are read again: the old block is
        # freed, the new one open
        admin.update(cid, {"seats_refresh_hours": 0})
        sim.clear_record()
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        got = self.assert_plan_blocks(api, sim)
        freed = {k for k, s in got.items() if s.get("status") == "freed"}
        self.assertEqual(len(freed), 1)
        self.assertTrue(next(iter(freed)).startswith("st-%d-" % holder))

        # unchanged blocks are read (the refresh is due) but not written again
        sim.clear_record()
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(len(sim.record("seats_sold", kind="command")), 3)
        self.assertEqual(st["last_run_stats"]["records_in"], 0, st)
        self.assert_clean(sim)

    def test_plan_seats_pass_resumes_with_the_next_holder(self):
        admin, api = self.tenant()
        sim = self.sim(plan_holders=3, queue_mode="never")
        cid = admin.add(settings_for(sim, seats_refresh_hours=0))
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        holders = sorted({b["customer_id"] for b in self.plan_blocks(sim).values()}, key=int)
        self.assertEqual(len(holders), 3)
        # an idle run without the seats: what the other streams cost
        admin.update(cid, {"pull_seats": False})
        st = admin.run(cid)
        base = st["cursor"]["status"]["calls_last_run"]
        # a run may make one seats_sold call more: the pass stops after each holder and the
        # next run goes on with the next one, asking none twice
        admin.update(cid, {"pull_seats": True, "max_calls_per_run": base + 1})
        sim.clear_record()
        for k in range(3):
            st = admin.run(cid)
            self.assertEqual(st["state"], "ok", st)
            if k < 2:
                self.assertIn("max_calls_per_run", st["last_warning"] or "", st)
                self.assertEqual(st["cursor"]["seats"]["after"], holders[k], st["cursor"])
        asked = [str(c.doc["command1"]["acct_id"]) for c in sim.record("seats_sold")]
        self.assertEqual(asked, holders)
        self.assertNotIn("after", st["cursor"]["seats"])
        self.assert_plan_blocks(api, sim)
        self.assert_clean(sim)

    def test_restart_mid_poll_resumes_it(self):
        admin, api = self.tenant()
        sim = self.sim(queue_mode="never", accounts=6, events=2, sales_per_event=2,
                       plan_holders=0)
        interval = 1.0 * T
        cid = admin.add(settings_for(sim, poll_interval_ms=int(interval * 1000)))
        # the first command is queued for many polls; the hub dies in the middle of them, while
        # it waits between two polls (a kill between a 202's arrival and its save would lose
        # the token that 202 rotated: the server then counts the next poll as a new command)
        sim.inject(("queue", 12), cmd="get_accounts_with_updates")
        before = admin.start(cid)
        polls = harness.wait_until(
            lambda: sim.record("get_accounts_with_updates", kind="poll")[2:], 30 * T,
            what="a few polls")
        time.sleep(max(0.0, polls[-1].t + 0.4 * interval - time.monotonic()))
        self.server.kill()
        submitted = len(sim.record("get_accounts_with_updates", kind="command"))
        self.assertEqual(submitted, 1)
        restarted = time.monotonic()
        type(self).server = harness.Server(self.data).start()
        admin.server = self.server
        api.port = self.server.port
        st = admin.run(cid)
        self.assertNotEqual(st["last_run"], before)
        self.assertEqual(st["state"], "ok", st)
        inc = sim.record("get_accounts_with_updates")
        # the first call after the restart is a poll of the saved job, with its cookies
        after = [c for c in inc if c.t > restarted]
        self.assertEqual(after[0].kind, "poll", [(c.kind, c.note) for c in after])
        # the queued command was never submitted again (a later command of the incremental
        # stream asks from its new cursor: another text)
        first = inc[0].body
        self.assertEqual(len([c for c in inc if c.kind == "command" and c.body == first]), 1,
                         [(c.kind, c.note) for c in inc])
        self.assertEqual(after[0].body, first)
        self.assert_reproduces(api, sim)
        self.assert_clean(sim)

    def test_401_pauses_until_settings_change(self):
        admin, api = self.tenant()
        sim = self.sim(accounts=4, events=2, sales_per_event=1, plan_holders=0)
        cid = admin.add(settings_for(sim, api_key="wrong-key"))
        st = admin.run(cid)
        self.assertEqual(st["state"], "failed")
        self.assertIn("paused: ATS refused the API key or DSN", st["last_error"])
        self.assertIn("Invalid ApiKey", st["last_error"])
        self.assertNotIn("wrong-key", st["last_error"])
        n = len(sim.record())
        self.assertEqual(n, 1)
        st = admin.run(cid)
        self.assertEqual(st["state"], "failed")
        self.assertIn("until the settings change", st["last_error"])
        self.assertEqual(len(sim.record()), n, "a paused instance called again")
        admin.update(cid, {"api_key": KEY})
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assert_reproduces(api, sim)
        self.assert_clean(sim)

    def test_429_waits_and_503_backs_off(self):
        admin, api = self.tenant()
        sim = self.sim(queue_mode="never", accounts=5, events=2, sales_per_event=2,
                       plan_holders=0)
        cid = admin.add(settings_for(sim, retry_initial_ms=300))
        sim.inject(("status", 429, {"Retry-After": "1"},
                    {"fault": {"faultstring": "Spike arrest violation",
                               "detail": {"errorcode": "policies.ratelimit.SpikeArrestViolation"}}}),
                   cmd="customer_query")
        sim.inject(("status", 503), ("status", 503), cmd="event_details")
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assert_reproduces(api, sim)
        q = sim.record("customer_query")
        self.assertEqual(q[0].status, 429)
        self.assertGreaterEqual(q[1].t - q[0].t, 0.9, "the 429 was not waited out")
        e = sim.record("event_details")
        self.assertEqual([c.status for c in e[:3]], [503, 503, 200])
        self.assertGreater(e[2].t - e[1].t, e[1].t - e[0].t, "no growing back-off")
        self.assertEqual(sim.pending_faults(), [])
        self.assert_clean(sim)

    def test_event_page_shrinks_when_too_large_and_404_is_a_setup_error(self):
        admin, api = self.tenant()
        # a page of more than 3 events exceeds the answer limit: 11075
        sim = self.sim(queue_mode="never", event_details_max_bytes=4500)
        cid = admin.add(settings_for(sim, event_page_size=50))
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assert_reproduces(api, sim)
        counts = [(int(c.doc["command1"]["count"]), c.answer_json()["command1"]["result"])
                  for c in sim.record("event_details") if c.answer_json()]
        self.assertEqual(counts[0], (50, 11075))
        self.assertTrue(any(r == 0 for _, r in counts))
        for (n1, r1), (n2, _) in zip(counts, counts[1:]):
            if r1 == 11075:
                self.assertEqual(n2, n1 // 2)
        self.assert_clean(sim)

        admin2, _ = self.tenant()
        cid2 = admin2.add(settings_for(sim, product="no-such-product"))
        st = admin2.run(cid2)
        self.assertEqual(st["state"], "failed")
        self.assertIn("setup error: HTTP 404", st["last_error"])

    def test_account_without_email_is_a_customer_with_its_sales(self):
        admin, api = self.tenant()
        sim = self.sim(queue_mode="never", accounts=8, events=4, sales_per_event=4,
                       plan_holders=0)
        w = sim.world
        buyers = list(dict.fromkeys(s["acct_id"] for s in w.sales))
        box, typo = buyers[0], buyers[1]
        w.accounts[box]["email"] = ""
        w.accounts[typo]["email"] = "typo-at-example.com"
        cid = admin.add(settings_for(sim))
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertIn("1 account(s) with an e-mail that is not a valid address stored without it",
                      st["last_warning"])
        self.assert_reproduces(api, sim)
        sales = api.list_all("sales")[0]
        self.assertNotIn("ANON", {x["customer_id"] for x in sales})
        for acct in (box, typo):
            self.assertIsNone(api.get("customers", str(acct), "source=archtics").json.get("email"))
            self.assertIn(str(acct), {x["customer_id"] for x in sales})
        self.assert_clean(sim)

    def test_bootstrap_cutoff_starts_the_streams_there(self):
        admin, api = self.tenant()
        sim = self.sim(queue_mode="never")
        w = sim.world
        stamps = sorted(sim.clock.local(a["at"]) for a in w.accounts.values())
        cutoff = stamps[len(stamps) // 2]
        cid = admin.add(settings_for(sim, bootstrap_cutoff=cutoff))
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        # the cut-off is the extract's high-water mark: the streams re-read from one minute
        # before it, as from any mark (a row committed late at the boundary is not skipped)
        since = sim.clock.local(sim.clock.epoch_of(cutoff) - 60)
        for cmd in ("get_accounts_with_updates", "get_events_with_sales",
                    "get_attendance_incremental"):
            first = sim.record(cmd)[0].doc["command1"]
            self.assertEqual(first["since_date_time"], since, cmd)
        # the accounts stream asked only for accounts changed since then (older ones come
        # from the file extract; a sale may still name one, which is then fetched)
        listed = {str(r["acct_id"]) for c in sim.record("get_accounts_with_updates")
                  for r in c.answer_json()["command1"]["accounts"]}
        want = {str(k) for k, a in w.accounts.items() if sim.clock.local(a["at"]) >= since}
        self.assertEqual(listed, want)
        got = {c["customer_id"] for c in api.list_all("customers")[0]}
        self.assertTrue(want <= got)
        self.assert_clean(sim)

    def test_day_quota_pauses_and_resumes_next_day(self):
        admin, api = self.tenant()
        sim = self.sim(queue_mode="never", per_day=40, real_time=False)
        cid = admin.add(settings_for(sim, max_wait_seconds=5))
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertIn("paused until", st["last_warning"])
        self.assertIn("paused_until", st["cursor"]["status"])
        self.assertIn("backfill_projected_finish", st["cursor"]["status"])
        first = [c for c in sim.record() if c.counted]
        self.assertEqual(len(first), 40)
        # a run on the same (simulated) day asks once and is refused again
        st = admin.run(cid)
        self.assertIn("paused until", st["last_warning"])
        days = 0
        while "paused until" in (st["last_warning"] or "") and days < 10:
            sim.clock.next_day()
            days += 1
            st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertIsNone(st["last_warning"], st)
        self.assertNotIn("paused_until", st["cursor"]["status"])
        self.assert_reproduces(api, sim)
        # nothing was asked twice: every customer_query of an account once
        asked = [c.doc["command1"]["acct_id"] for c in sim.record("customer_query")
                 if c.status == 200]
        self.assertEqual(len(asked), len(set(asked)))
        self.assertEqual(sim.errors(), [])
        for v in sim.quota_violations():
            self.assertIn("QuotaViolation", v.answer.decode())

    def test_ledger_day_limit_pauses_before_the_server_refuses(self):
        admin, api = self.tenant()
        sim = self.sim(queue_mode="never")
        cid = admin.add(settings_for(sim, quota_day_calls=25, max_wait_seconds=5))
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertIn("paused until", st["last_warning"])
        self.assertEqual(st["quotas"][1]["limit"], 25)
        self.assertLessEqual(len(sim.record()), 25)
        self.assertEqual(sim.quota_violations(), [])
        custs = api.list_all("customers")[0]
        self.assertGreater(len(custs), 0, "nothing was committed before the pause")
        self.assert_clean(sim)

    def test_max_calls_per_run_ends_runs_that_resume(self):
        admin, api = self.tenant()
        sim = self.sim(queue_mode="never", accounts=12, events=3, sales_per_event=3,
                       plan_holders=0)
        cid = admin.add(settings_for(sim, max_calls_per_run=6, page_size=5))
        runs = 0
        while True:
            before = len([c for c in sim.record() if c.counted])
            st = admin.run(cid)
            runs += 1
            self.assertEqual(st["state"], "ok", st)
            self.assertLessEqual(len([c for c in sim.record() if c.counted]) - before, 6)
            if not st["last_warning"]:
                break
            self.assertIn("ended after max_calls_per_run", st["last_warning"])
            self.assertLess(runs, 40, "the runs do not get anywhere")
        self.assertGreater(runs, 2)
        self.assert_reproduces(api, sim)
        asked = [c.doc["command1"]["acct_id"] for c in sim.record("customer_query")]
        self.assertEqual(len(asked), len(set(asked)), "an account was asked for twice")
        self.assert_clean(sim)

    def test_dst_fall_back_loses_and_doubles_nothing(self):
        admin, api = self.tenant()
        sim = self.sim(queue_mode="never", accounts=5, events=4, sales_per_event=2,
                       plan_holders=0, real_time=False, start="2026-10-31 12:00")
        cid = admin.add(settings_for(sim))
        w = sim.world
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        # 2026-11-01 01:00-01:59 happens twice in New York
        sim.clock.set("2026-11-01 01:50", fold=0)
        a = w.add_account({"name_first": "Early", "name_last": "Edt",
                           "email": "early@example.com"})
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        # after the change: 01:10 EST sorts before the 01:50 EDT mark
        sim.clock.set("2026-11-01 01:10", fold=1)
        b = w.add_account({"name_first": "Late", "name_last": "Est",
                           "email": "late@example.com"})
        sim.clock.set("2026-11-01 01:20", fold=1)
        st = admin.run(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assert_reproduces(api, sim)
        got = {c["customer_id"] for c in api.list_all("customers")[0]}
        self.assertIn(str(a["acct_id"]), got)
        self.assertIn(str(b["acct_id"]), got)
        asked = [str(c.doc["command1"]["acct_id"]) for c in sim.record("customer_query")]
        self.assertEqual(asked.count(str(a["acct_id"])), 1, "doubled")
        self.assertEqual(asked.count(str(b["acct_id"])), 1)
        self.assert_clean(sim)


if __name__ == "__main__":
    harness.main()
