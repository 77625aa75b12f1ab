"""Graceful shutdown: SIGTERM/SIGINT finish in-flight requests and exit 0."""

import json
import signal
import time
import unittest

import harness
from harness import event

# Long enough for the server to read what was sent / handle the signal; short to stay fast.
SETTLE = 0.3 * harness.TIME_SCALE


class ShutdownTests(unittest.TestCase):
    def setUp(self):
        self.data = harness.tempdir(self)
        harness.tenant_create(self.data, "sd")
        self.key = harness.key_create(self.data, "sd", "test")
        self.server = harness.Server(self.data)
        self.addCleanup(self.server.kill)
        self.server.start()

    def head(self, **extra):
        h = {"Authorization": "Bearer " + self.key, "Content-Type": "application/json"}
        h.update(extra)
        return h

    def body(self):
        e = event(notes="x" * 20000)  # a body of some size, sent in two halves
        return e, json.dumps({"events": [e]}).encode()

    def assert_stored_after_restart(self, event_id):
        s = harness.Server(self.data)
        self.addCleanup(s.kill)
        s.start()
        r = harness.Api(s.port, "sd", self.key).get("events", event_id)
        self.assertEqual(r.status, 200, r)
        s.stop_ok()

    def slow_request(self, chunked):
        e, body = self.body()
        half = len(body) // 2
        raw = harness.RawHTTP(self.server.port)
        self.addCleanup(raw.close)
        if chunked:
            raw.send_head("POST", "/v1/sd/ingest", self.head(**{"Transfer-Encoding": "chunked"}))
            self.assertTrue(raw.send_chunk(body[:half]))
        else:
            raw.send_head("POST", "/v1/sd/ingest", self.head(**{"Content-Length": len(body)}))
            self.assertTrue(raw.send(body[:half]))
        time.sleep(SETTLE)            # the server has the headers and half the body
        self.server.send_signal(signal.SIGTERM)
        time.sleep(SETTLE)            # the signal is being handled
        self.assertTrue(self.server.running(),
                        "server exited with a request in flight\n" + self.server.diagnostics())
        if chunked:
            self.assertTrue(raw.send_chunk(body[half:]) and raw.end_chunks())
        else:
            self.assertTrue(raw.send(body[half:]), "server closed the in-flight connection")
        r = raw.read_response(20 * harness.TIME_SCALE)
        raw.close()
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json.get("accepted", {}).get("events"), 1, r)
        rc = self.server.wait_exit(20 * harness.TIME_SCALE)
        self.assertEqual(rc, 0, self.server.diagnostics())
        self.assert_stored_after_restart(e["event_id"])

    def test_sigterm_during_slow_request_content_length(self):
        self.slow_request(chunked=False)

    def test_sigterm_during_slow_request_chunked(self):
        self.slow_request(chunked=True)

    def test_state_survives_restart(self):
        # keys, records and idempotency answers persist across a clean restart
        api = harness.Api(self.server.port, "sd", self.key)
        e = event()
        body = json.dumps({"events": [e]})
        r1 = api.ingest(body, headers={"Idempotency-Key": "restart-1"})
        self.assertEqual(r1.status, 202, r1)
        self.server.stop_ok()
        s = harness.Server(self.data)
        self.addCleanup(s.kill)
        s.start()
        api = harness.Api(s.port, "sd", self.key)
        r2 = api.ingest(body, headers={"Idempotency-Key": "restart-1"})
        self.assertEqual(r2.status, 202, r2)
        self.assertEqual(r2.json, r1.json)
        self.assertEqual((r2.header("Idempotent-Replayed") or "").lower(), "true")
        self.assertEqual(api.get("events", e["event_id"]).status, 200)
        s.stop_ok()

    def test_sigint_idle(self):
        self.server.stop_ok(sig=signal.SIGINT)

    def test_sigterm_with_idle_keepalive_connection(self):
        # a finished request on a kept-alive connection must not hold the shutdown up
        conn = harness._httpclient.HTTPConnection("127.0.0.1", self.server.port,
                                                  timeout=10 * harness.TIME_SCALE)
        self.addCleanup(conn.close)
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        t0 = time.monotonic()
        self.server.send_signal(signal.SIGTERM)
        rc = self.server.wait_exit(15 * harness.TIME_SCALE)
        self.assertEqual(rc, 0, self.server.diagnostics())
        self.assertLess(time.monotonic() - t0, 10 * harness.TIME_SCALE)


if __name__ == "__main__":
    harness.main()
