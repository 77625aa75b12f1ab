"""Rate-limit answers say what the README says: RateLimit-Limit is the per-minute limit (not the
burst), RateLimit-Reset agrees with Retry-After on a 429, and reads (GET) have their own token
bucket, so paging through data never spends the webhook's budget (nor the other way round).
Also: a missing TLS certificate or key file is reported with its name."""

import os
import subprocess

import harness
from harness import event


class RateLimitHeaderTests(harness.ServerCase):
    # 6 per minute (a token every 10 s), burst 3: nothing refills during a test
    TENANTS = {"rlh_write": ["test"], "rlh_read": ["test"]}

    @classmethod
    def prepare(cls):
        for cid in cls.TENANTS:
            harness.tenant_limits(cls.data, cid, 6, 3)

    def header(self, r, name):
        v = r.header(name)
        self.assertIsNotNone(v, "%s missing: %r %s" % (name, r, dict(r.headers)))
        self.assertRegex(v.strip(), r"^\d+$", "%s: %r" % (name, v))
        return int(v)

    def drain(self, send, n):
        for i in range(n):
            r = send()
            self.assertIn(r.status, (200, 202), "request %d of a burst of %d: %r" % (i + 1, n, r))
            self.assertEqual(self.header(r, "RateLimit-Limit"), 6, "the per-minute limit")
            self.assertEqual(self.header(r, "RateLimit-Remaining"), n - 1 - i)
        r = send()
        self.assertEqual(r.status, 429, r)
        retry = self.header(r, "Retry-After")
        self.assertTrue(1 <= retry <= 10, "Retry-After %d with a token every 10 s" % retry)
        self.assertEqual(self.header(r, "RateLimit-Reset"), retry,
                         "RateLimit-Reset must agree with Retry-After on a 429")
        self.assertEqual(self.header(r, "RateLimit-Remaining"), 0)
        self.assertEqual(self.header(r, "RateLimit-Limit"), 6)
        return r

    def test_writes_then_reads(self):
        api = self.api("rlh_write")
        self.drain(lambda: api.ingest({"events": [event()]}), 3)
        # the webhook's bucket is empty; reads have their own, full
        self.drain(lambda: api.get("events"), 3)

    def test_reads_then_writes(self):
        api = self.api("rlh_read")
        self.drain(lambda: api.get("events", query="limit=1"), 3)
        # a reader that used up its budget leaves the webhook's untouched
        self.drain(lambda: api.ingest({"events": [event()]}), 3)


class TlsFileTests(harness.unittest.TestCase):
    def serve(self, data, cert, key):
        return subprocess.run([harness.bin_path(), "serve", "--data", data, "--listen",
                               "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key],
                              capture_output=True, text=True, timeout=harness.CLI_TIMEOUT)

    def test_missing_file_is_named(self):
        data = harness.tempdir(self)
        present = os.path.join(data, "present.pem")
        with open(present, "w") as f:
            f.write("not used: the other file is missing\n")
        cert_missing = os.path.join(data, "no-such-cert.pem")
        key_missing = os.path.join(data, "no-such-key.pem")
        for cert, key, missing in ((cert_missing, present, cert_missing),
                                   (present, key_missing, key_missing)):
            with self.subTest(missing=os.path.basename(missing)):
                p = self.serve(data, cert, key)
                self.assertNotEqual(p.returncode, 0, p.stderr)
                self.assertIn(missing, p.stderr, "the missing file is not named:\n" + p.stderr)


if __name__ == "__main__":
    harness.main()
