"""The audience push end to end (issue #4 §3, seed §5–§7): targets configured over the admin API
and the CLI, a segment pushed to a local receiving server (receiver.py) that records what it got
and answers from a script — 201 with a segment_id, 500 then 201, 429 with Retry-After, a slow
answer beyond the timeout, 400 — and the delivery records, replay, the rate limit, and a crash
between the receiver's 201 and its record.

The back-off schedule is compressed with STAGEDOOR_OUTBOX_TIME_SCALE=0.001 (30 s → 30 ms);
Retry-After, timeouts, leases and the one-hour rate window are real time.

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import json
import os
import time
import unittest

import harness
from harness import customer, event, sale
from receiver import Answer, Receiver

TS = harness.TIME_SCALE
CLIENT = "push"
SCALE_ENV = {"STAGEDOOR_OUTBOX_TIME_SCALE": "0.001"}


def start_server(data, extra_env=None):
    """A server with the outbox time knob (and extra_env) in its environment."""
    env = dict(SCALE_ENV, **(extra_env or {}))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        s = harness.Server(data)
        s.start()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return s


class PushBase(unittest.TestCase):
    @classmethod
    def setup_data(cls):
        cls.data = harness.tempdir(cls)
        harness.tenant_create(cls.data, CLIENT)
        harness.tenant_create(cls.data, "other")
        cls.key = harness.key_create(cls.data, CLIENT, "test")
        cls.prod_key = harness.key_create(cls.data, CLIENT, "prod")
        cls.rx = Receiver().start()
        cls.addClassCleanup(cls.rx.stop)

    @classmethod
    def attach(cls, server):
        cls.server = server
        cls.port = server.port
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.token = f.read().strip()
        cls.api = harness.Api(cls.port, CLIENT, cls.key)

    # -- helpers
    def admin(self, method, path, body=None):
        return harness.http(self.port, method, path, body=body, key=self.token)

    def add_target(self, path, client=CLIENT, **kw):
        body = {"type": "audience_push", "environment": "test", "url": self.rx.url(path),
                "app_key": "APP-" + path, "secure_token": "TOK-" + path}
        body.update(kw)
        r = self.admin("POST", "/admin/v1/tenants/%s/targets" % client, body)
        self.assertEqual(r.status, 201, r)
        self.assertTrue(r.json["target_id"].startswith("tgt_"), r)
        return r.json["target_id"]

    def audience(self, n=2, opt_out=()):
        """An event, n customers who bought it; returns (event_id, [customer ids], [emails])."""
        ev = event()
        cs = [customer() for _ in range(n)]
        for c in cs:
            if c["customer_id"] in opt_out:
                c["ad_opt_out"] = True
        sales = [sale(event_id=ev["event_id"], customer_id=c["customer_id"]) for c in cs]
        r = self.api.ingest({"events": [ev], "customers": cs, "sales": sales})
        self.assertEqual(r.status, 202, r)
        return ev["event_id"], [c["customer_id"] for c in cs], [c["email"] for c in cs]

    def segment(self, event_id, name=None):
        body = {"segment_name": name or "Buyers of " + event_id,
                "description": "everyone who bought " + event_id,
                "rules": {"bought": {"event_id": event_id}}}
        r = self.api.req("POST", "/v1/%s/segments" % CLIENT, body=body)
        self.assertEqual(r.status, 201, r)
        return r.json["segment_id"], body

    def push(self, segment_id, target_id, key="default"):
        return self.api.req("POST", "/v1/%s/segments/%s/push" % (CLIENT, segment_id),
                            body={"target_id": target_id}, key=key)

    def push_ok(self, segment_id, target_id):
        r = self.push(segment_id, target_id)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json["state"], "queued")
        self.assertTrue(r.json["delivery_id"].startswith("dlv_"), r)
        return r.json["delivery_id"]

    def delivery(self, dlv):
        r = self.admin("GET", "/admin/v1/deliveries/" + dlv)
        self.assertEqual(r.status, 200, r)
        return r.json

    def wait_state(self, dlv, state, timeout=20):
        def done():
            d = self.delivery(dlv)
            return d if d["state"] == state else None
        return harness.wait_until(done, timeout * TS, interval=0.05,
                                  what="delivery %s %s" % (dlv, state))

    def customers_of(self, req):
        """The body's customers, e-mails lowercased (a linked profile shows the address as its
        latest record spelled it), in a stable order."""
        cs = [dict(c, email=c["email"].lower()) if "email" in c else c
              for c in req["body"]["customers"]]
        return sorted(cs, key=lambda c: json.dumps(c, sort_keys=True))


class PushTests(PushBase):
    @classmethod
    def setUpClass(cls):
        cls.setup_data()
        s = start_server(cls.data)
        cls.addClassCleanup(s.kill)
        cls.attach(s)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_ok()

    def test_created_then_update_headers_body_and_source_ids(self):
        path = "/crm/basic"
        tgt = self.add_target(path, source="s360")
        ev, cids, emails = self.audience(3)
        # The CRM knows the first customer under its own id: a feed of source "s360" (the
        # address spelled differently: linking ignores case).
        self.rx.serve_json("/feed/s360", {"customers": [
            {"customer_id": "S360-" + cids[0], "email": emails[0].upper()}]})
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors" % CLIENT, {
            "type": "feed", "environment": "test", "schedule": "manual",
            "settings": {"url": self.rx.url("/feed/s360"), "kind": "ingest", "source": "s360"}})
        self.assertEqual(r.status, 201, r)
        con = r.json["connector_id"]
        self.assertEqual(self.admin("POST", "/admin/v1/tenants/%s/connectors/%s/run"
                                    % (CLIENT, con)).status, 202)
        harness.wait_until(lambda: self.admin("GET", "/admin/v1/tenants/%s/connectors/%s"
                                              % (CLIENT, con)).json["status"]["state"] == "ok",
                           20 * TS, what="feed run")
        seg, seg_body = self.segment(ev, name="Verdi Lovers – Berlin")

        dlv = self.push_ok(seg, tgt)
        d = self.wait_state(dlv, "delivered")
        reqs = self.rx.received(path)
        self.assertEqual(len(reqs), 1)
        h = reqs[0]["headers"]
        self.assertEqual(h["x-app-key"], "APP-" + path)
        self.assertEqual(h["x-secure-token"], "TOK-" + path)
        self.assertEqual(h["content-type"], "application/json")
        self.assertGreaterEqual(len(h["idempotency-key"]), 32)
        body = reqs[0]["body"]
        self.assertEqual(body["segment_name"], "Verdi Lovers – Berlin")
        self.assertEqual(body["description"], seg_body["description"])
        self.assertNotIn("remote_segment_id", body)
        want = [{"customer_id": "S360-" + cids[0], "email": emails[0]},
                {"email": emails[1]}, {"email": emails[2]}]
        self.assertEqual(self.customers_of(reqs[0]),
                         sorted(want, key=lambda c: json.dumps(c, sort_keys=True)))
        self.assertEqual(d["remote_segment_id"], "crm-basic-1")
        self.assertEqual(d["kind"], "create")
        self.assertEqual(d["attempts"], 1)
        self.assertEqual(d["last_status"], 201)
        self.assertEqual(d["idempotency_key"], h["idempotency-key"])
        self.assertEqual(d["customers"], 3)
        self.assertEqual((d["segment_id"], d["target_id"], d["client_id"], d["environment"]),
                         (seg, tgt, CLIENT, "test"))
        # The tenant sees its own delivery too.
        r = self.api.req("GET", "/v1/%s/deliveries/%s" % (CLIENT, dlv))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["remote_segment_id"], "crm-basic-1")

        # The same segment again is an update of the remote segment.
        dlv2 = self.push_ok(seg, tgt)
        d2 = self.wait_state(dlv2, "delivered")
        reqs = self.rx.received(path)
        self.assertEqual(len(reqs), 2)
        self.assertEqual(reqs[1]["body"]["remote_segment_id"], "crm-basic-1")
        self.assertNotEqual(reqs[1]["headers"]["idempotency-key"], h["idempotency-key"])
        self.assertEqual(d2["kind"], "update")

        # Secrets and personal data never reach the log.
        log = "\n".join(self.server.stderr_tail)
        for secret in ("APP-" + path, "TOK-" + path, emails[0], emails[1]):
            self.assertNotIn(secret, log)

    def test_500_then_201_retries_with_the_same_key(self):
        path = "/crm/flaky"
        tgt = self.add_target(path)
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        self.rx.script(path, Answer(500, {"error": "deploying"}), Answer(201, {"segment_id": "F1"}))
        dlv = self.push_ok(seg, tgt)
        d = self.wait_state(dlv, "delivered")
        reqs = self.rx.received(path)
        self.assertEqual([r["answer"] for r in reqs], [500, 201])
        self.assertEqual(reqs[0]["headers"]["idempotency-key"], reqs[1]["headers"]["idempotency-key"])
        self.assertEqual(reqs[0]["body"], reqs[1]["body"])
        self.assertEqual(d["attempts"], 2)
        self.assertEqual(d["remote_segment_id"], "F1")
        self.assertEqual([h["status"] for h in d["history"]], [500, 201])

    def test_429_waits_for_retry_after_and_keeps_the_attempt(self):
        path = "/crm/busy"
        tgt = self.add_target(path)
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        self.rx.script(path, Answer(429, {"error": "slow down"}, {"Retry-After": "2"}),
                       Answer(201, {"segment_id": "B1"}))
        dlv = self.push_ok(seg, tgt)
        reqs = self.rx.wait_for(path, 1, 10 * TS)
        d = harness.wait_until(lambda: (lambda x: x if x["state"] == "retrying" else None)(
            self.delivery(dlv)), 10 * TS, what="retrying after 429")
        self.assertEqual(d["waiting_for"], "flow_control")
        self.assertEqual(d["attempts"], 0)  # the 429 gave its attempt back
        d = self.wait_state(dlv, "delivered")
        reqs = self.rx.received(path)
        self.assertEqual(len(reqs), 2)
        self.assertGreaterEqual(reqs[1]["t"] - reqs[0]["t"], 1.9)  # Retry-After honoured
        self.assertEqual(reqs[0]["headers"]["idempotency-key"], reqs[1]["headers"]["idempotency-key"])
        self.assertEqual(d["attempts"], 1)
        self.assertEqual(d["remote_segment_id"], "B1")

    def test_slow_answer_times_out_and_is_retried(self):
        path = "/crm/slow"
        tgt = self.add_target(path, timeout_seconds=1)
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        # The receiver does the work but answers after 3 s: the hub gives up after 1 s and
        # sends again with the same key, which the receiver answers from its record.
        self.rx.script(path, Answer(201, {"segment_id": "S1"}, delay=3))
        dlv = self.push_ok(seg, tgt)
        d = self.wait_state(dlv, "delivered", timeout=20)
        reqs = self.rx.received(path)
        self.assertEqual(len(reqs), 2)
        self.assertEqual(reqs[0]["headers"]["idempotency-key"], reqs[1]["headers"]["idempotency-key"])
        self.assertTrue(reqs[1]["duplicate"])
        self.assertLess(reqs[1]["t"] - reqs[0]["t"], 2.9)  # did not wait for the slow answer
        self.assertEqual(d["attempts"], 2)
        self.assertEqual(d["remote_segment_id"], "S1")
        self.assertIn("timed out", d["history"][0]["error"])

    def test_400_is_dead_and_a_replay_applies_todays_opt_outs(self):
        path = "/crm/picky"
        tgt = self.add_target(path)
        ev, cids, emails = self.audience(3)
        seg, _ = self.segment(ev)
        self.rx.script(path, Answer(400, {"error": "customers[1]: unknown list"}))
        dlv = self.push_ok(seg, tgt)
        d = self.wait_state(dlv, "dead")
        self.assertEqual(d["attempts"], 1)
        self.assertEqual(d["last_status"], 400)
        self.assertIn("unknown list", d["last_response"])
        self.assertEqual(len(self.rx.received(path)), 1)
        time.sleep(0.3)
        self.assertEqual(len(self.rx.received(path)), 1)  # no retry of a 400
        r = self.admin("GET", "/admin/v1/deliveries?state=dead&client_id=" + CLIENT)
        self.assertEqual(r.status, 200, r)
        self.assertIn(dlv, [x["delivery_id"] for x in r.json["data"]])
        self.assertTrue(all(x["state"] == "dead" for x in r.json["data"]))
        r = self.admin("GET", "/admin/v1/deliveries?state=bogus")
        self.assertEqual(r.status, 400, r)

        # The second customer opts out; the replay's body leaves them out.
        r = self.api.ingest({"customers": [customer(cids[1], ad_opt_out=True)]})
        self.assertEqual(r.status, 202, r)
        first_key = self.rx.received(path)[0]["headers"]["idempotency-key"]
        r = self.admin("POST", "/admin/v1/deliveries/%s/retry" % dlv)
        self.assertEqual(r.status, 202, r)
        d = self.wait_state(dlv, "delivered")
        reqs = self.rx.received(path)
        self.assertEqual(len(reqs), 2)
        got = [c["email"] for c in reqs[1]["body"]["customers"]]
        self.assertEqual(sorted(got), sorted([emails[0], emails[2]]))
        self.assertNotEqual(reqs[1]["headers"]["idempotency-key"], first_key)  # a new run
        self.assertEqual(d["replays"], 1)
        self.assertEqual(d["attempts"], 1)
        # Only a dead delivery can be replayed.
        r = self.admin("POST", "/admin/v1/deliveries/%s/retry" % dlv)
        self.assertEqual(r.status, 409, r)
        self.assertEqual(self.admin("POST", "/admin/v1/deliveries/dlv_nope/retry").status, 404)

        # The CLI sees the same.
        cp = harness.cli_ok(self.data, "delivery", "list", "--state", "delivered", "--client",
                            CLIENT)
        self.assertIn(dlv, cp.stdout)
        cp = harness.cli_ok(self.data, "delivery", "show", dlv)
        self.assertEqual(json.loads(cp.stdout)["state"], "delivered")
        cp = harness.cli(self.data, "delivery", "retry", dlv)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("not dead", cp.stderr)

    def test_rate_limit_third_push_waits_for_the_window(self):
        path = "/crm/limited"
        tgt = self.add_target(path, segments_per_hour=2)
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        d1 = self.push_ok(seg, tgt)
        first = self.wait_state(d1, "delivered")
        d2 = self.push_ok(seg, tgt)
        self.wait_state(d2, "delivered")
        t_push = time.time()
        r = self.push(seg, tgt)
        self.assertEqual(r.status, 202, r)
        d3 = r.json["delivery_id"]
        self.assertEqual(r.json["waiting_for"], "rate_limit")
        time.sleep(0.5 * TS)
        self.assertEqual(len(self.rx.received(path)), 2)  # the third did not go
        d = self.delivery(d3)
        self.assertEqual(d["state"], "queued")
        self.assertEqual(d["waiting_for"], "rate_limit")
        # It goes when the first send leaves the rolling hour.
        self.assertAlmostEqual(d["next_attempt_usec"], first["first_sent_usec"] + 3600 * 10**6,
                               delta=2 * 10**6)
        self.assertGreater(d["next_attempt_usec"] / 1e6, t_push + 3500)
        # The admin list says when too.
        r = self.admin("GET", "/admin/v1/deliveries?state=queued&client_id=" + CLIENT)
        row = [x for x in r.json["data"] if x["delivery_id"] == d3][0]
        self.assertIsNotNone(row["next_attempt_at"])

    def test_push_validation(self):
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        tgt = self.add_target("/crm/v")
        r = self.push(seg, "tgt_0000000000000000")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["errors"][0]["pointer"], "/target_id")
        r = self.api.req("POST", "/v1/%s/segments/%s/push" % (CLIENT, seg), body={"target": tgt})
        self.assertEqual(r.status, 400, r)
        r = self.push("seg_0000000000000000", tgt)
        self.assertEqual(r.status, 404, r)
        # A prod target is not usable with a test key; another tenant's target is not found.
        prod_tgt = self.add_target("/crm/prod", environment="prod")
        r = self.push(seg, prod_tgt)
        self.assertEqual(r.status, 400, r)
        other_tgt = self.add_target("/crm/other", client="other")
        r = self.push(seg, other_tgt)
        self.assertEqual(r.status, 400, r)
        # The test key cannot push for another tenant at all.
        r = harness.http(self.port, "POST", "/v1/other/segments/%s/push" % seg,
                         body={"target_id": other_tgt}, key=self.key)
        self.assertIn(r.status, (401, 403), r)

    def test_push_request_idempotency_key(self):
        # A client whose answer got lost retries its push with the same Idempotency-Key: it gets
        # the delivery the first request created, and the CRM sees one segment, not two.
        path = "/crm/idem"
        tgt = self.add_target(path)
        ev, _, _ = self.audience(2)
        seg, _ = self.segment(ev)
        url = "/v1/%s/segments/%s/push" % (CLIENT, seg)
        hdr = {"Idempotency-Key": "push-7f3a"}
        r1 = harness.http(self.port, "POST", url, body={"target_id": tgt}, headers=hdr,
                          key=self.key)
        self.assertEqual(r1.status, 202, r1)
        self.assertIsNone(r1.header("Idempotent-Replayed"))
        dlv = r1.json["delivery_id"]
        self.wait_state(dlv, "delivered")
        r2 = harness.http(self.port, "POST", url, body={"target_id": tgt}, headers=hdr,
                          key=self.key)
        self.assertEqual(r2.status, 202, r2)
        self.assertEqual(r2.json["delivery_id"], dlv)
        self.assertEqual(r2.json["state"], "delivered")
        self.assertEqual(r2.header("Idempotent-Replayed"), "true")
        self.assertEqual(len(self.rx.received(path)), 1)
        # the same key for another target is refused; a bad key is refused before anything
        tgt2 = self.add_target("/crm/idem2")
        r3 = harness.http(self.port, "POST", url, body={"target_id": tgt2}, headers=hdr,
                          key=self.key)
        self.assertEqual(r3.status, 422, r3)
        self.assertEqual(r3.json["error"], "idempotency_key_reused")
        r4 = harness.http(self.port, "POST", url, body={"target_id": tgt2},
                          headers={"Idempotency-Key": "two words"}, key=self.key)
        self.assertEqual(r4.status, 400, r4)
        self.assertEqual(r4.json["error"], "invalid_idempotency_key")
        # keys are per environment and tenant: without one, every push is a new delivery
        r5 = self.push(seg, tgt2)
        r6 = self.push(seg, tgt2)
        self.assertEqual((r5.status, r6.status), (202, 202), (r5, r6))
        self.assertNotEqual(r5.json["delivery_id"], r6.json["delivery_id"])

    def test_target_admin_and_cli(self):
        base = "/admin/v1/tenants/%s/targets" % CLIENT
        r = self.admin("POST", base, {"type": "audience_push", "environment": "test",
                                      "url": "http://crm.example/x", "app_key": "",
                                      "segments_per_hour": 0, "extra": 1})
        self.assertEqual(r.status, 400, r)
        pointers = {e["pointer"] for e in r.json["errors"]}
        self.assertTrue({"/url", "/app_key", "/secure_token", "/segments_per_hour",
                         "/extra"} <= pointers, pointers)
        tgt = self.add_target("/crm/admin", name="CRM")
        r = self.admin("GET", base + "/" + tgt)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["app_key"], "(set)")
        self.assertEqual(r.json["secure_token"], "(set)")
        self.assertNotIn("APP-/crm/admin", r.text)
        self.assertEqual(r.json["segments_per_hour"], 50)
        r = self.admin("PATCH", base + "/" + tgt, {"segments_per_hour": 10, "source": "s360"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["segments_per_hour"], r.json["source"], r.json["app_key"]),
                         (10, "s360", "(set)"))
        r = self.admin("GET", base)
        self.assertIn(tgt, [t["target_id"] for t in r.json["data"]])
        self.assertNotIn("TOK-", r.text)
        # Secrets kept across the PATCH: a push still carries them.
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        self.wait_state(self.push_ok(seg, tgt), "delivered")
        self.assertEqual(self.rx.received("/crm/admin")[-1]["headers"]["x-app-key"],
                         "APP-/crm/admin")
        self.assertEqual(self.admin("DELETE", base + "/" + tgt).status, 204)
        self.assertEqual(self.admin("GET", base + "/" + tgt).status, 404)
        self.assertEqual(self.admin("GET", base + "/" + tgt.replace("tgt_", "tgt_x")).status, 404)

        # CLI: add (secret from a file), list, show (redacted), remove.
        secret_file = os.path.join(self.data, "token.txt")
        with open(secret_file, "w") as f:
            f.write("FILE-TOKEN\n")
        cp = harness.cli_ok(self.data, "target", "add", CLIENT, "--env", "test", "--url",
                            self.rx.url("/crm/cli"), "--app-key", "CLI-KEY", "--secure-token",
                            "@" + secret_file, "--segments-per-hour", "5")
        cli_tgt = cp.stdout.strip()
        self.assertTrue(cli_tgt.startswith("tgt_"), cp.stdout)
        cp = harness.cli_ok(self.data, "target", "list", CLIENT)
        self.assertIn(cli_tgt, cp.stdout)
        cp = harness.cli_ok(self.data, "target", "show", cli_tgt)
        shown = json.loads(cp.stdout)
        self.assertEqual(shown["secure_token"], "(set)")
        self.assertNotIn("FILE-TOKEN", cp.stdout)
        self.assertNotIn("CLI-KEY", cp.stdout)
        self.wait_state(self.push_ok(seg, cli_tgt), "delivered")
        self.assertEqual(self.rx.received("/crm/cli")[-1]["headers"]["x-secure-token"],
                         "FILE-TOKEN")
        cp = harness.cli(self.data, "target", "add", CLIENT, "--env", "test", "--url",
                         "https://x.example", "--app-key", "k", "--secure-token", "t",
                         "--segments-per-hour", "0")
        self.assertEqual(cp.returncode, 2)
        self.assertIn("/segments_per_hour", cp.stderr)
        harness.cli_ok(self.data, "target", "remove", cli_tgt)
        self.assertEqual(harness.cli(self.data, "target", "show", cli_tgt).returncode, 1)


class CrashTests(PushBase):
    """A crash between the receiver's 201 and its record: the delivery is sent again with the
    same Idempotency-Key as soon as a hub restarts (the dead instance's lease is released at
    once; at least once); the receiver recognises the key and answers from its record, so one
    remote segment exists and the hub records it."""

    def setUp(self):
        self.setup_data()

    def test_crash_after_send_before_record(self):
        s = start_server(self.data, {"STAGEDOOR_FAULT": "outbox_after_send"})
        self.addCleanup(s.kill)
        self.attach(s)
        path = "/crm/crash"
        tgt = self.add_target(path, timeout_seconds=2)
        ev, _, _ = self.audience(2)
        seg, _ = self.segment(ev)
        dlv = self.push_ok(seg, tgt)
        reqs = self.rx.wait_for(path, 1, 10 * TS)
        self.assertEqual(reqs[0]["answer"], 201)
        rc = s.wait_exit(10 * TS)
        self.assertEqual(rc, 137, s.diagnostics())

        t_restart = time.monotonic()
        s2 = start_server(self.data)
        self.addCleanup(s2.kill)
        self.attach(s2)
        d = self.wait_state(dlv, "delivered", timeout=30)
        reqs = self.rx.received(path)
        self.assertEqual(len(reqs), 2)
        self.assertEqual(reqs[0]["headers"]["idempotency-key"], reqs[1]["headers"]["idempotency-key"])
        self.assertEqual(reqs[0]["body"], reqs[1]["body"])
        self.assertTrue(reqs[1]["duplicate"])
        self.assertEqual(d["remote_segment_id"], "crm-crash-1")  # the first answer's segment
        self.assertEqual(d["attempts"], 2)
        # The dead process's lease (timeout 2 s + 10 s margin) was released at the restart.
        self.assertLess(reqs[1]["t"] - t_restart, 5 * TS)

        # Recorded: a restart never sends it again.
        s2.stop_ok()
        s3 = start_server(self.data)
        self.addCleanup(s3.kill)
        self.attach(s3)
        time.sleep(1.5)
        self.assertEqual(len(self.rx.received(path)), 2)
        self.assertEqual(self.delivery(dlv)["state"], "delivered")
        s3.stop_ok()


if __name__ == "__main__":
    harness.main()
