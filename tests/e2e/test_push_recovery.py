"""Push deliveries after a crash and after their target is deleted (docs/CONNECTORS.md "Push
targets"):

  - kill -9 between the claim and the send: the restarted hub releases the dead instance's lease
    at once and sends the delivery within a few seconds (before, it waited for the 120 s claim
    lease to run out);
  - a second hub on the same data directory while the first one lives does not take the first
    one's leases (they still fence workers of live processes);
  - deleting a target makes its waiting deliveries dead in the same transaction, with the reason,
    and they are never sent (before, they stayed queued until their next attempt, an hour away)."""

import time

import harness
from receiver import Answer
from test_push import CLIENT, PushBase, start_server

TS = harness.TIME_SCALE


class RecoveryTests(PushBase):
    def setUp(self):
        self.setup_data()

    def test_kill_between_claim_and_send_is_sent_promptly_after_restart(self):
        s = start_server(self.data, {"STAGEDOOR_FAULT": "outbox_after_claim"})
        self.addCleanup(s.kill)
        self.attach(s)
        path = "/crm/claimed"
        tgt = self.add_target(path, timeout_seconds=30)
        ev, _, _ = self.audience(2)
        seg, _ = self.segment(ev)
        # The worker may claim the delivery (and the fault end the process) before the push's
        # answer is written: the delivery is committed before either, so a lost answer is fine
        # here and the delivery is found by listing after the restart.
        try:
            dlv = self.push_ok(seg, tgt)
        except ConnectionError:
            dlv = None
        rc = s.wait_exit(10 * TS)
        self.assertEqual(rc, 137, s.diagnostics())
        self.assertEqual(self.rx.received(path), [])  # nothing was sent

        t_restart = time.monotonic()
        s2 = start_server(self.data)
        self.addCleanup(s2.kill)
        self.attach(s2)
        if dlv is None:
            r = self.admin("GET", "/admin/v1/deliveries?connector=" + tgt)
            self.assertEqual(r.status, 200, r)
            found = [d["delivery_id"] for d in r.json["data"] if d["target_id"] == tgt]
            self.assertEqual(len(found), 1, r.json)
            dlv = found[0]
        # The claim lease (120 s) of the dead process does not hold the delivery back.
        reqs = self.rx.wait_for(path, 1, 10 * TS)
        self.assertLess(reqs[0]["t"] - t_restart, 5 * TS)
        d = self.wait_state(dlv, "delivered", timeout=10)
        self.assertEqual(len(self.rx.received(path)), 1)
        self.assertEqual(d["remote_segment_id"], "crm-claimed-1")
        s2.stop_ok()

    def test_live_instance_keeps_its_lease(self):
        # The first hub holds a delivery in a slow send; a second hub started on the same data
        # directory must not release that lease (the owner is alive) nor send it a second time.
        s = start_server(self.data)
        self.addCleanup(s.kill)
        self.attach(s)
        path = "/crm/slow"
        self.rx.script(path, Answer(201, {"segment_id": "SLOW-1"}, delay=4.0 * TS))
        tgt = self.add_target(path, timeout_seconds=30)
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        dlv = self.push_ok(seg, tgt)
        self.rx.wait_for(path, 1, 10 * TS)
        self.assertEqual(self.delivery(dlv)["state"], "sending")
        s2 = harness.Server(self.data)
        self.addCleanup(s2.kill)
        s2.start()
        time.sleep(1.5 * TS)  # a second hub's start-up and a few polls
        self.assertEqual(len(self.rx.received(path)), 1)
        self.assertEqual(self.wait_state(dlv, "delivered", timeout=15)["remote_segment_id"],
                         "SLOW-1")
        self.assertEqual(len(self.rx.received(path)), 1)
        s2.stop_ok()
        s.stop_ok()


class DeleteTargetTests(PushBase):
    @classmethod
    def setUpClass(cls):
        cls.setup_data()
        s = start_server(cls.data)
        cls.addClassCleanup(s.kill)
        cls.attach(s)

    def test_deleting_a_target_makes_its_waiting_deliveries_dead_at_once(self):
        path = "/crm/deleted"
        tgt = self.add_target(path, segments_per_hour=1)
        keep_path = "/crm/kept"
        keep = self.add_target(keep_path, segments_per_hour=1)
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        d1 = self.push_ok(seg, tgt)
        self.wait_state(d1, "delivered")
        d2 = self.push_ok(seg, tgt)  # waits an hour for the rate limit
        self.assertEqual(self.delivery(d2)["state"], "queued")
        k1 = self.push_ok(seg, keep)
        self.wait_state(k1, "delivered")
        k2 = self.push_ok(seg, keep)  # another target's waiting delivery is not touched

        r = self.admin("DELETE", "/admin/v1/tenants/%s/targets/%s" % (CLIENT, tgt))
        self.assertEqual(r.status, 204, r)
        d = self.delivery(d2)  # at once: no wait, no poll
        self.assertEqual(d["state"], "dead", d)
        self.assertEqual(d["last_error"], "the target was deleted")
        self.assertIsNone(d["next_attempt_at"])
        self.assertEqual(self.delivery(d1)["state"], "delivered")  # history stays
        self.assertEqual(self.delivery(k2)["state"], "queued")
        r = self.admin("GET", "/admin/v1/deliveries?state=queued&client_id=" + CLIENT)
        self.assertNotIn(d2, [x["delivery_id"] for x in r.json["data"]])
        time.sleep(1.0 * TS)
        self.assertEqual(len(self.rx.received(path)), 1)


if __name__ == "__main__":
    harness.main()
