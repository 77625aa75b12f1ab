"""The server keeps keys it has verified (so a client's next requests skip the key's hash); a
revoked key must still be refused from the first reload of the settings on, by every HTTP
thread, while clients keep sending with it — never accepted again after a refusal — and the
key that replaces it works. New limits reach a key in use the same way.

Several threads keep sending GET requests with the key before and while it is revoked with the
CLI; each thread records the answers in order."""

import threading
import time

import harness
from harness import TIME_SCALE, cli_ok, key_create, key_list, tenant_limits

RELOAD_BOUND = 5.0 * TIME_SCALE  # the settings reload several times a second


class KeyCacheRevocation(harness.ServerCase):
    TENANTS = {"kc": ["test"], "kl": ["test"]}

    @classmethod
    def prepare(cls):
        # the client threads send thousands of requests: out of the rate limiter's way
        tenant_limits(cls.data, "kc", 100000000, 100000000)

    def status(self, key, client="kc"):
        return harness.http(self.port, "GET", "/v1/%s/events?limit=1" % client, key=key).status

    def test_revoked_key_is_refused_by_every_thread_and_never_again_accepted(self):
        old_key = self.keys[("kc", "test")]
        old_id = key_list(self.data, "kc")[0]["key_id"]
        for _ in range(20):  # verified once, then answered from the cache
            self.assertEqual(self.status(old_key), 200)

        stop = threading.Event()
        seen = [[] for _ in range(4)]

        def client(out):
            while not stop.is_set():
                out.append(self.status(old_key))

        threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in seen]
        for t in threads:
            t.start()
        try:
            harness.wait_until(lambda: all(len(s) >= 5 for s in seen), RELOAD_BOUND,
                               what="every client thread sending")
            new_key = key_create(self.data, "kc")
            cli_ok(self.data, "key", "revoke", old_id)
            t0 = time.monotonic()
            harness.wait_until(lambda: all(s and s[-1] == 401 for s in seen), RELOAD_BOUND,
                               interval=0.01, what="every client refused")
            refused_after = time.monotonic() - t0
            # keep sending a little longer: nothing may be accepted any more
            n = [len(s) for s in seen]
            harness.wait_until(lambda: all(len(s) >= k + 20 for s, k in zip(seen, n)),
                               RELOAD_BOUND, what="more requests after the refusal")
        finally:
            stop.set()
            for t in threads:
                t.join()
        for s in seen:
            self.assertIn(401, s)
            first = s.index(401)
            self.assertTrue(all(st == 200 for st in s[:first]), s[:first])
            self.assertTrue(all(st == 401 for st in s[first:]),
                            "a refused key was accepted again: %r" % (s[first:],))
        self.assertLess(refused_after, RELOAD_BOUND)
        # the replacement (created before the revocation) works, and keeps working
        for _ in range(5):
            self.assertEqual(self.status(new_key), 200)
        r = harness.http(self.port, "GET", "/v1/kc/events?limit=1", key=old_key)
        self.assertEqual(r.status, 401)
        self.assertIn("revoked", r.json.get("message", ""), r)

    def test_new_limits_reach_a_key_in_use(self):
        key = self.keys[("kl", "test")]
        for _ in range(10):
            self.assertEqual(self.status(key, "kl"), 200)
        tenant_limits(self.data, "kl", 7, 3)

        def limit_seen():
            r = harness.http(self.port, "GET", "/v1/kl/events?limit=1", key=key)
            return r.header("RateLimit-Limit") == "7"

        harness.wait_until(limit_seen, RELOAD_BOUND, interval=0.05, what="the new limit")


if __name__ == "__main__":
    harness.main()
