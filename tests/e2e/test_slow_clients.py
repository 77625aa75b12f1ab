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
The same with complete heads and bodies trickled a byte at a time: those hold their slots until
they are older than the head deadline, so there the legitimate client's budget includes it.
And on a kept-alive connection the next request head has the same deadline, from its request
line.
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


HEAD_START = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
HEAD_LINE = b"X-Slow: 1\r\n"


class Trickler:
    """Connections that send `start`, then `line` at every trickle(), and never finish: by
    default a request head one header line at a time."""

    def __init__(self, port, count, source="127.0.0.1", start=HEAD_START, line=HEAD_LINE):
        self.port, self.count, self.source = port, count, source
        self.start, self.line = start, line
        self.socks = {}          # socket -> opened at (monotonic)
        self.lifetimes = []      # seconds from open to the server closing it
        self.opened = 0
        self.refused = 0

    def _open(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2,
                                         source_address=(self.source, 0))
            s.sendall(self.start)
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
        poller = select.poll()
        by_fd = {}
        for s in self.socks:
            poller.register(s, select.POLLIN)
            by_fd[s.fileno()] = s
        closed = [by_fd[fd] for fd, _ in poller.poll(0)]
        now = time.monotonic()
        for s in closed:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                continue  # an answer (none is expected: nothing is ever complete)
            self.lifetimes.append(now - self.socks.pop(s))
            s.close()

    def trickle(self):
        for s in list(self.socks):
            try:
                s.send(self.line)
            except BlockingIOError:
                pass
            except OSError:
                self.lifetimes.append(time.monotonic() - self.socks.pop(s))
                s.close()

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = {}


def _legit(fn, budget=LEGIT_BUDGET):
    """Run one legitimate request, retrying a refused or reset connection within the budget.
    Returns (status or None, last error)."""
    deadline = time.monotonic() + budget
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
        h.tenant_create(cls.data, "rudy")
        cls.rudy_key = h.key_create(cls.data, "rudy")
        h.tenant_limits(cls.data, "rudy", 100000, 100000)
        cls.server = h.Server(cls.data).start()
        cls.addClassCleanup(cls.server.stop_ok)

    def _run(self, attack, budget, probe=None):
        """Run `attack` (and `probe`) for RUN_SEC while a legitimate client sends GET /healthz
        and a POST ingest once a second. Returns (results, probe lifetime or None)."""
        port = self.server.port
        api = self.server.api("slow", self.key)
        results, stop = [], threading.Event()

        def legit():
            while not stop.is_set():
                results.append(("GET /healthz",) + _legit(
                    lambda t: h.http(port, "GET", "/healthz", timeout=t), budget))
                ikey = h.uid("IDEM")
                body = {"events": [h.event()]}
                results.append(("POST ingest",) + _legit(
                    lambda t: api.ingest(body, headers={"Idempotency-Key": ikey}, timeout=t),
                    budget))
                stop.wait(1.0)

        probes = [probe] if probe else []
        try:
            attack.fill()
            for p in probes:
                p.fill()
            started = time.monotonic()
            t = threading.Thread(target=legit, daemon=True)
            t.start()
            probe_lifetime = None
            while time.monotonic() - started < RUN_SEC:
                time.sleep(TRICKLE_SEC)
                attack.reap()
                attack.trickle()
                attack.fill()
                for p in probes:
                    p.reap()
                    if probe_lifetime is None and p.lifetimes:
                        probe_lifetime = p.lifetimes[0]
                    if probe_lifetime is None:
                        p.trickle()
            stop.set()
            t.join(budget * 2 + 5)
        finally:
            stop.set()
            attack.close()
            for p in probes:
                p.close()
        self.assertTrue(self.server.running(), self.server.diagnostics())
        bad = [r for r in results if r[1] is None or not 200 <= r[1] < 300]
        self.assertEqual(bad, [], "legitimate requests that did not get a 2xx within %.0f s "
                         "during the run (of %d): %r" % (budget, len(results), bad[:6]))
        self.assertGreaterEqual(len(results), 4, results)
        return results, probe_lifetime

    def test_legitimate_client_gets_through_a_slowloris_run(self):
        attack = Trickler(self.server.port, ATTACKERS)
        probe = Trickler(self.server.port, 1, source="127.0.0.2")  # free of evictions
        _, probe_lifetime = self._run(attack, LEGIT_BUDGET, probe)
        # The head deadline closed the probe, not the idle timeout (it sent a line every 2 s)
        self.assertIsNotNone(probe_lifetime, "a request head trickled for %.0f s was never cut "
                             "off" % RUN_SEC)
        self.assertGreaterEqual(probe_lifetime, HEAD_DEADLINE - 1.0)
        self.assertLessEqual(probe_lifetime, HEAD_DEADLINE + TRICKLE_SEC + 3.0 * h.TIME_SCALE)
        # The attack's connections were closed too (deadline or eviction), none was answered
        self.assertGreater(len(attack.lifetimes), ATTACKERS - 500)
        self.assertEqual(h.http(self.server.port, "GET", "/healthz").status, 200)

    def test_next_head_on_a_kept_alive_connection_has_the_deadline(self):
        """After one answer, a connection that trickles its next request head is closed at the
        head deadline counted from that request line (not from the answer: it idled first)."""
        idle = 3.0
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=HEAD_DEADLINE * 3,
                                     source_address=("127.0.0.3", 0))
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            r = h._httpclient.HTTPResponse(s, method="GET")
            r.begin()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertFalse(r.will_close)
            time.sleep(idle)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            line_at = time.monotonic()
            s.settimeout(1.0)
            closed_after = None
            while time.monotonic() - line_at < HEAD_DEADLINE + 5.0 * h.TIME_SCALE:
                try:
                    if s.recv(4096) == b"":
                        closed_after = time.monotonic() - line_at
                        break
                    self.fail("an answer to a request head that was never complete")
                except socket.timeout:
                    pass
                except OSError:
                    closed_after = time.monotonic() - line_at
                    break
                try:
                    s.sendall(HEAD_LINE)
                except OSError:
                    closed_after = time.monotonic() - line_at
                    break
        finally:
            s.close()
        self.assertIsNotNone(closed_after, "the trickled head of a kept-alive connection was "
                             "never cut off")
        self.assertGreaterEqual(closed_after, HEAD_DEADLINE - 1.0)

    def test_legitimate_client_gets_through_slow_bodies(self):
        """Complete heads, then a body trickled a byte at a time (another tenant's valid key,
        so the legitimate tenant's rate limit is its own): these hold their slots until they
        are older than the head deadline, then the oldest make room for new clients."""
        head = ("POST /v1/rudy/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                "Content-Length: 100000\r\n\r\n{" % self.rudy_key).encode()
        attack = Trickler(self.server.port, ATTACKERS, start=head, line=b" ")
        self._run(attack, HEAD_DEADLINE + LEGIT_BUDGET)
        self.assertGreater(len(attack.lifetimes), ATTACKERS - 500)
        self.assertEqual(h.http(self.server.port, "GET", "/healthz").status, 200)


if __name__ == "__main__":
    h.main()
