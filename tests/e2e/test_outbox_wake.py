"""The outbox wakes its workers when the writer commits items a change queued.

The server runs with the fallback poll at an hour (STAGEDOOR_OUTBOX_POLL_MS), so a worker that
is idle looks for work only when it is woken: a customer change queues an item for the test
connector "test_contacts" (tests/connectors/), and the item is delivered — which only the
writer's wake-up after the commit can start. /metrics says so: the group commit that stored
the item woke the workers, and the claim came right after a wake-up signal, not a poll.

No wall-clock assertion: the wait below is a timeout far shorter than the poll interval.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import re
import unittest

import harness
from harness import customer
from test_outbox_connector import OutboxBase
from test_push import start_server

TS = harness.TIME_SCALE
POLL_MS = 3600 * 1000


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class OutboxWakeTests(OutboxBase):
    @classmethod
    def setUpClass(cls):
        cls.setup_data()
        s = start_server(cls.data, {"STAGEDOOR_OUTBOX_POLL_MS": str(POLL_MS)})
        cls.addClassCleanup(s.kill)
        cls.attach(s)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_ok()

    def metrics(self):
        r = harness.http(self.port, "GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        return r.text

    def test_changes_are_delivered_by_the_commit_wake_up_not_the_poll(self):
        con = self.add_connector("/crm")
        before = self.metrics()
        self.assertEqual(metric(before, "stagedoor_outbox_commit_wakes_total"), 0, before)
        signal0 = metric(before, 'stagedoor_outbox_claims_total{after="signal"}')
        self.assertIsNotNone(signal0, before)
        for n in range(3):
            c = customer()
            self.change(c)
            its = self.item_of(con, c["customer_id"])
            self.assertEqual(len(its), 1, its)
            # Far below the hour the idle workers would otherwise sleep (E2E_TIME_SCALE ≤ 4).
            self.wait_state(its[0]["delivery_id"], "delivered", timeout=60)
            self.assertEqual(len(self.rx.received("/crm/contacts")), n + 1)
        after = self.metrics()
        self.assertGreaterEqual(metric(after, "stagedoor_outbox_commit_wakes_total"), 3, after)
        self.assertGreaterEqual(
            metric(after, 'stagedoor_outbox_claims_total{after="signal"}') - signal0, 3, after)
        self.assertEqual(metric(after, 'stagedoor_outbox_claims_total{after="poll"}'), 0, after)


if __name__ == "__main__":
    harness.main()
