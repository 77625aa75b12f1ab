"""test_slow_clients.py — slow clients cannot lock others out (slowloris).

A client that sends a request head one line every few seconds was never cut off: the idle
timeout restarts with every byte, and the request deadline was only checked while body bytes
arrived. 600 such connections from one address (more than the 500 allowed per address) held
every slot that address had, and 1,000 every slot of the server. The server now closes a
connection whose head is not complete 10 s after it opened, and near a connection limit closes
the oldest connections still sending a head (or idle) first, so a new client finds a slot.

The run is bounded: 600 trickling connections from 127.0.0.1 (reopened when the server closes
them, as an attack tool does) for a little over the head deadline, while a legitimate client on
the same address sends GET /healthz and a POST ingest once a second, each of which must get its
2xx (a client retries a refused connection within its time budget, like any HTTP client); and a
separate connection from 127.0.0.2 trickles its head and must be closed at the deadline.
"""

import resource
import select
import socket
import threading
import time
import unittest

import harness as h

ATTACKERS = 600           # over the per-address limit of 500 (server defaults are used)
TRICKLE_SEC = 2.0         # one header line per connection every 2 s
HEAD_DEADLINE = 10.0      # the documented default (`serve --header-timeout`)
RUN_SEC = HEAD_DEADLINE + 6.0 * h.TIME_SCALE
LEGIT_BUDGET = 5.0 * h.TIME_SCALE  # one legitimate request, retries included


def _raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return True
    if hard != resource.RLIM_INFINITY and hard < need:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return True


class Trickler:
    """Connections that send a request head one line at a time and never finish it."""

    def __init__(self, port, count, source="127.0.0.1"):
        self.port, self.count, self.source = port, count, source
        self.socks = {}          # socket -> opened at (monotonic)
        self.lifetimes = []      # seconds from open to the server closing it
        self.opened = 0
        self.refused = 0

    def _open(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2,
                                         source_address=(self.source, 0))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.setblocking(False)
        except OSError:
            self.refused += 1
            return
        self.socks[s] = time.monotonic()
        self.opened += 1

    def fill(self):
        while len(self.socks) < self.count:
            before = len(self.socks)
            self._open()
            if len(self.socks) == before:
                return

    def reap(self):
        """Forget the connections the server closed (readable: end of file or reset)."""
        socks = list(self.socks)
        closed = []
        for i in range(0, len(socks), 500):
            r, _, _ = select.select(socks[i:i + 500], [], [], 0)
            closed.extend(r)
        now = time.monotonic()
        for s in closed:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                continue  # an answer would be a bug; the head is never complete
            self.lifetimes.append(now - self.socks.pop(s))
            s.close()

    def trickle(self):
        for s in list(self.socks):
            try:
                s.send(b"X-Slow: 1\r\n")
            except BlockingIOError:
                pass
            except OSError:
                self.lifetimes.append(time.monotonic() - self.socks.pop(s))
                s.close()

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = {}


def _legit(fn):
    """Run one legitimate request, retrying a refused or reset connection within the budget.
    Returns (status or None, last error)."""
    deadline = time.monotonic() + LEGIT_BUDGET
    last = None
    while time.monotonic() < deadline:
        try:
            return fn(max(0.5, deadline - time.monotonic())).status, None
        except (OSError, h._httpclient.HTTPException) as e:
            last = e
            time.sleep(0.1)
    return None, last


class SlowClients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not _raise_fd_limit(2 * ATTACKERS + 512):
            raise unittest.SkipTest("needs %d file descriptors" % (2 * ATTACKERS + 512))
        cls.data = h.tempdir(cls)
        h.tenant_create(cls.data, "slow")
        cls.key = h.key_create(cls.data, "slow")
        cls.server = h.Server(cls.data).start()
        cls.addClassCleanup(cls.server.stop)

    def test_legitimate_client_gets_through_a_slowloris_run(self):
        port = self.server.port
        api = self.server.api("slow", self.key)
        attack = Trickler(port, ATTACKERS)
        probe = Trickler(port, 1, source="127.0.0.2")  # the deadline, free of evictions
        results, stop = [], threading.Event()

        def legit():
            n = 0
            while not stop.is_set():
                n += 1
                results.append(("GET /healthz",) + _legit(
                    lambda t: h.http(port, "GET", "/healthz", timeout=t)))
                ikey = h.uid("IDEM")
                body = {"events": [h.event()]}
                results.append(("POST ingest",) + _legit(
                    lambda t: api.ingest(body, headers={"Idempotency-Key": ikey}, timeout=t)))
                stop.wait(1.0)

        try:
            attack.fill()
            probe.fill()
            started = time.monotonic()
            t = threading.Thread(target=legit, daemon=True)
            t.start()
            probe_lifetime = None
            while time.monotonic() - started < RUN_SEC:
                time.sleep(TRICKLE_SEC)
                attack.reap()
                attack.trickle()
                attack.fill()
                probe.reap()
                if probe_lifetime is None and probe.lifetimes:
                    probe_lifetime = probe.lifetimes[0]
                if probe_lifetime is None:
                    probe.trickle()
            stop.set()
            t.join(LEGIT_BUDGET * 2 + 5)
        finally:
            stop.set()
            attack.close()
            probe.close()

        self.assertTrue(self.server.running(), self.server.diagnostics())
        self.assertGreaterEqual(len(results), 4, results)
        bad = [r for r in results if r[1] is None or not 200 <= r[1] < 300]
        self.assertEqual(bad, [], "legitimate requests that did not get a 2xx within %.0f s "
                         "during the run (of %d): %r" % (LEGIT_BUDGET, len(results), bad[:6]))
        # The head deadline closed the probe, not the idle timeout (it sent a line every 2 s)
        self.assertIsNotNone(probe_lifetime, "a request head trickled for %.0f s was never cut "
                             "off" % RUN_SEC)
        self.assertGreaterEqual(probe_lifetime, HEAD_DEADLINE - 1.0)
        self.assertLessEqual(probe_lifetime, HEAD_DEADLINE + TRICKLE_SEC + 3.0 * h.TIME_SCALE)
        # The attack's connections were closed too (deadline or eviction) and none was answered
        self.assertGreater(len(attack.lifetimes), ATTACKERS - 500)
        # And the server is still fine afterwards
        self.assertEqual(h.http(port, "GET", "/healthz").status, 200)


if __name__ == "__main__":
    h.main()
