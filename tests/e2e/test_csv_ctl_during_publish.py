"""Settings writes during a large CSV publish: connectors created and updated (admin API) and
segments created and replaced (tenant API) while a file big enough for several write jobs is
published are all answered 2xx. Those writes take the data file's write lock in turns with the
writer; a publish job ends early when one waits for its turn (as it does for queued webhook
batches), so none waits for a whole job of rows and gives up.

Fault point csv_slow_chunk makes every 1,000-row chunk of a write job 80 ms slower (a slow
disk), so that a job of 100,000 rows holds the write lock longer than a settings write waits
for it (5 s) unless the job ends early for it. The test asserts every answer, not how fast it
came.

Run: python3 tests/e2e/test_csv_ctl_during_publish.py --bin build/debug/stagedoor
"""

import threading

import harness
from test_csv_publish import Publish, sales_csv

TS = harness.TIME_SCALE
WAIT = 120 * TS
JSON = {"Content-Type": "application/json"}


class CtlDuringPublish(Publish):
    # every chunk of a write job holds the write lock 80 ms longer
    FAULT = "csv_slow_chunk"

    def test_settings_writes_answered_during_publish(self):
        events = ["CT-E%d" % i for i in range(3)]
        self.events(events)
        folder = self.folder()
        cid = self.add(folder)
        n = 120000  # more than one publish job (at most 100,000 rows each)
        answers = []
        done = threading.Event()
        api = self.api("pub")

        def settings():
            # create and update a connector and a segment, again and again, from the drop of
            # the file until its ack
            i = 0
            while not done.is_set():
                answers.append(("stored before", self.stored("CT-")[0], ""))
                r = self.admin("POST", "/tenants/pub/connectors",
                               {"type": "csv_drop", "environment": "test",
                                "schedule": "every 1h",
                                "settings": {"folder": self.folder(), "settle_seconds": 0}})
                answers.append(("connector create", r.status, r.text[:200]))
                if r.status == 201:
                    other = r.json["connector_id"]
                    r = self.admin("PATCH", "/tenants/pub/connectors/%s" % other,
                                   {"schedule": "every 2h"})
                    answers.append(("connector update", r.status, r.text[:200]))
                r = api.req("POST", "/v1/pub/segments",
                            body={"segment_name": "ct-%d" % i,
                                  "rules": {"customer": {"post_code": "1%04d" % i}}},
                            headers=JSON)
                answers.append(("segment create", r.status, r.text[:200]))
                if r.status == 201:
                    r = api.req("PUT", "/v1/pub/segments/%s" % r.json["segment_id"],
                                body={"segment_name": "ct-%d-b" % i,
                                      "rules": {"customer": {"post_code": "2%04d" % i}}},
                                headers=JSON)
                    answers.append(("segment update", r.status, r.text[:200]))
                i += 1
        t = threading.Thread(target=settings)
        self.drop(folder, "sales.csv", sales_csv("CT-", n, events))
        t.start()
        try:
            ack = self.wait_ack(folder, "sales.csv")
        finally:
            done.set()
            t.join(WAIT)
        self.assertEqual(ack["records_stored"], n, ack)
        self.assertEqual(self.stored("CT-"), (n, n))
        # the writes went on while part of the file was stored (during the publish)
        self.assertTrue([a for a in answers if a[0] == "stored before" and 0 < a[1] < n],
                        answers)
        writes = [a for a in answers if a[0] != "stored before"]
        self.assertEqual({a[0] for a in writes}, {"connector create", "connector update",
                                                  "segment create", "segment update"}, writes)
        self.assertEqual([a for a in writes if not 200 <= a[1] < 300], [],
                         "a settings write failed during the publish")


if __name__ == "__main__":
    harness.main()
