"""CLI: tenants, keys, limits, --help, argument errors, and a running server noticing CLI
changes within one second."""

import os
import threading
import time
import unittest

import harness
from harness import cli, cli_many, cli_ok, key_create, key_list, tenant_create, uid

# The spec allows one second; add slack for request latency and slow (sanitizer) builds.
NOTICE_TIMEOUT = 2.0 * harness.TIME_SCALE


def lines(text):
    return [l for l in text.splitlines() if l.strip()]


class CliCase(unittest.TestCase):
    def setUp(self):
        self.data = harness.tempdir(self)

    def assertUsageError(self, cp, what=""):
        """Exit 2 with a one-line reason on stderr."""
        self.assertEqual(cp.returncode, 2, "%s: want exit 2, got %d\nstdout: %s\nstderr: %s"
                         % (what, cp.returncode, cp.stdout, cp.stderr))
        reason = cp.stderr.strip()
        self.assertTrue(reason, "%s: no reason on stderr" % what)
        self.assertNotIn("\n", reason, "%s: reason is not one line: %r" % (what, cp.stderr))

    def tenant_ids(self):
        cp = cli_ok(self.data, "tenant", "list")
        ids = set()
        for l in cp.stdout.splitlines():
            ids.update(l.split())
        return ids, cp.stdout


class TenantTests(CliCase):
    def test_create_and_list(self):
        tenant_create(self.data, "acme", name="Acme State Opera")
        tenant_create(self.data, "b_2-X")
        ids, out = self.tenant_ids()
        self.assertIn("acme", ids, out)
        self.assertIn("b_2-X", ids, out)
        self.assertIn("Acme State Opera", out)

    def test_list_empty_store(self):
        cp = cli(self.data, "tenant", "list")
        self.assertEqual(cp.returncode, 0, cp.stderr)

    @unittest.skipIf(harness.PG_MODE, "SQLite's default data dir (PostgreSQL: --store names the store)")
    def test_default_data_dir(self):
        # Only serve and demo create a data directory; the default one is no exception.
        default = os.path.join(self.data, "stagedoor-data")
        cp = cli(None, "tenant", "create", "dflt", data=False, cwd=self.data)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("does not exist", cp.stderr)
        self.assertFalse(os.path.exists(default), "./stagedoor-data was created")
        os.mkdir(default)
        cp = cli(None, "tenant", "create", "dflt", data=False, cwd=self.data)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        cp = cli_ok(default, "tenant", "list")
        self.assertIn("dflt", cp.stdout.split())
        cp = cli_ok(None, "tenant", "list", data=False, cwd=self.data)
        self.assertIn("dflt", cp.stdout.split())

    @unittest.skipIf(harness.PG_MODE, "with --store the data dir holds no store")
    def test_missing_data_dir_refused(self):
        """A mistyped --data is refused by every command but serve/demo: exit 1, one line
        naming the directory, and nothing is created (it used to make an empty store)."""
        missing = os.path.join(self.data, "no-such-dir")
        calls = [["tenant", "list"], ["tenant", "create", "acme"],
                 ["tenant", "limits", "acme", "--per-minute", "1", "--burst", "1"],
                 ["key", "create", "acme", "--env", "test"], ["key", "list", "acme"],
                 ["key", "revoke", "key_0123"], ["connector", "list", "acme"],
                 ["target", "list", "acme"], ["delivery", "list"],
                 ["profile", "find", "acme", "--env", "test", "--email", "a@b.example"]]
        for args, cp in zip(calls, cli_many(missing, calls)):
            with self.subTest(args=args):
                self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                err = cp.stderr.strip().splitlines()
                self.assertEqual(len(err), 1, cp.stderr)
                self.assertIn("no-such-dir", err[0])
                self.assertIn("does not exist", err[0])
                self.assertFalse(os.path.exists(missing), "the data directory was created")
        afile = os.path.join(self.data, "a-file")
        with open(afile, "w") as f:
            f.write("x")
        cp = cli(afile, "tenant", "list")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("not a directory", cp.stderr)

    def test_duplicate_tenant_fails(self):
        tenant_create(self.data, "dup")
        cp = cli(self.data, "tenant", "create", "dup")
        self.assertNotEqual(cp.returncode, 0, "second 'tenant create dup' succeeded")
        self.assertTrue(cp.stderr.strip(), "no reason on stderr")

    def test_client_id_valid_boundaries(self):
        cli_ok(self.data, "tenant", "list")  # create the store before concurrent calls
        cids = ("a", "Z", "9", "_", "-", "x" * 64, "Az09_-mixed")
        for cid, cp in zip(cids, cli_many(self.data, [["tenant", "create", c] for c in cids])):
            with self.subTest(cid=cid):
                self.assertEqual(cp.returncode, 0, "%r: %s" % (cid, cp.stderr))
        ids, out = self.tenant_ids()
        self.assertIn("x" * 64, ids, out)
        self.assertIn("Az09_-mixed", ids, out)

    def test_client_id_invalid(self):
        cli_ok(self.data, "tenant", "list")  # create the store before concurrent calls
        bad = ["", "y" * 65, "bad/char", "bad char", "bad.char", "caf\u00e9", "a@b", "semi;colon"]
        for cid, cp in zip(bad, cli_many(self.data, [["tenant", "create", c] for c in bad])):
            with self.subTest(cid=cid):
                self.assertUsageError(cp, "tenant create %r" % cid)
        ids, out = self.tenant_ids()
        self.assertNotIn("y" * 65, ids)
        self.assertNotIn("bad.char", ids)
        # the other subcommands taking CLIENT_ID check it too
        calls = (["key", "create", "y" * 65, "--env", "test"], ["key", "list", ""],
                 ["tenant", "limits", "bad/char", "--per-minute", "10", "--burst", "10"])
        for args, cp in zip(calls, cli_many(self.data, calls)):
            with self.subTest(args=args):
                self.assertUsageError(cp, " ".join(args))

    def test_limits(self):
        tenant_create(self.data, "lim")
        cli_ok(self.data, "tenant", "limits", "lim", "--per-minute", "60", "--burst", "5")
        bads = (["--per-minute", "abc", "--burst", "5"],
                ["--per-minute", "-1", "--burst", "5"],
                ["--per-minute", "10", "--burst", "-3"],
                ["--per-minute", "10", "--burst", "5x"],
                ["--per-minute", "10", "--burst", "99999999999999999999999"],
                ["--per-minute", "10", "--burst"])
        results = cli_many(self.data, [["tenant", "limits", "lim"] + b for b in bads])
        for bad, cp in zip(bads, results):
            with self.subTest(args=bad):
                self.assertUsageError(cp, "tenant limits " + " ".join(bad))
        cp = cli(self.data, "tenant", "limits", "nosuchtenant", "--per-minute", "1", "--burst",
                 "1")
        self.assertNotEqual(cp.returncode, 0, "limits for an unknown tenant succeeded")


class KeyTests(CliCase):
    def test_key_create_list_revoke(self):
        tenant_create(self.data, "acme")
        tenant_create(self.data, "other")
        cp = cli_ok(self.data, "key", "create", "acme", "--env", "test")
        test_key = lines(cp.stdout)[-1].strip()
        self.assertRegex(test_key, r"^sd_test_\S{16,}$", cp.stdout)
        self.assertNotIn(" ", test_key)
        prod_key = key_create(self.data, "acme", "prod")
        self.assertRegex(prod_key, r"^sd_prod_\S{16,}$")
        other_key = key_create(self.data, "other", "test")
        self.assertEqual(len({test_key, prod_key, other_key}), 3, "keys are not unique")

        listing = cli_ok(self.data, "key", "list", "acme")
        rows = key_list(self.data, "acme")
        self.assertEqual(sorted(r["env"] for r in rows), ["prod", "test"], listing.stdout)
        for r in rows:
            self.assertEqual(r["revoked"], "-", r["line"])
        self.assertEqual(len({r["key_id"] for r in rows}), 2)
        for k in (test_key, prod_key):
            secret = k.split("_", 2)[2]
            self.assertNotIn(secret, listing.stdout + listing.stderr, "key list shows a key")
        # only the tenant's own keys
        self.assertEqual(len(key_list(self.data, "other")), 1)

        # revoke the test key
        test_id = [r["key_id"] for r in rows if r["env"] == "test"][0]
        cli_ok(self.data, "key", "revoke", test_id)
        after = {r["key_id"]: r for r in key_list(self.data, "acme")}
        self.assertNotEqual(after[test_id]["revoked"], "-", after[test_id]["line"])
        prod_id = [r["key_id"] for r in rows if r["env"] == "prod"][0]
        self.assertEqual(after[prod_id]["revoked"], "-", after[prod_id]["line"])

        cp = cli(self.data, "key", "revoke", "key_doesnotexist")
        self.assertNotEqual(cp.returncode, 0, "revoking an unknown key id succeeded")

    def test_key_create_bad_args(self):
        tenant_create(self.data, "acme")
        self.assertUsageError(cli(self.data, "key", "create", "acme", "--env", "staging"),
                              "--env staging")
        self.assertUsageError(cli(self.data, "key", "create", "acme", "--env", "TESTX"),
                              "--env TESTX")
        self.assertUsageError(cli(self.data, "key", "create", "acme"), "missing --env")
        self.assertUsageError(cli(self.data, "key", "create", "--env", "test"),
                              "missing CLIENT_ID")
        self.assertEqual(key_list(self.data, "acme"), [], "a failed key create left a key")
        cp = cli(self.data, "key", "create", "nosuchtenant", "--env", "test")
        self.assertNotEqual(cp.returncode, 0, "key for an unknown tenant was created")
        self.assertFalse(any(l.startswith("sd_") for l in cp.stdout.split()),
                         "a key was printed for an unknown tenant")


class ArgumentTests(CliCase):
    SUBCOMMANDS = [
        ["serve"], ["tenant", "create"], ["tenant", "list"], ["tenant", "limits"],
        ["key", "create"], ["key", "list"], ["key", "revoke"],
    ]

    def test_help_everywhere(self):
        all_args = [[]] + [["tenant"], ["key"]] + self.SUBCOMMANDS
        results = cli_many(None, [a + ["--help"] for a in all_args], data=False)
        for args, cp in zip(all_args, results):
            with self.subTest(args=args):
                self.assertEqual(cp.returncode, 0, "%s --help: exit %d, stderr %s"
                                 % (" ".join(args), cp.returncode, cp.stderr))
                self.assertTrue((cp.stdout + cp.stderr).strip(), "%s --help printed nothing"
                                % " ".join(args))
                if args:
                    self.assertIn(args[-1], cp.stdout + cp.stderr)

    def test_unknown_flag_everywhere(self):
        tenant_create(self.data, "okid")
        calls = [
            ["serve", "--listen", "127.0.0.1:0", "--frobnicate"],
            ["tenant", "create", "newid", "--frobnicate"],
            ["tenant", "list", "--frobnicate"],
            ["tenant", "limits", "okid", "--per-minute", "1", "--burst", "1", "--frobnicate"],
            ["key", "create", "okid", "--env", "test", "--frobnicate"],
            ["key", "list", "okid", "--frobnicate"],
            ["key", "revoke", "key_x", "--frobnicate"],
        ]
        for args, cp in zip(calls, cli_many(self.data, calls)):
            with self.subTest(args=args):
                self.assertUsageError(cp, " ".join(args))
        ids, out = self.tenant_ids()
        self.assertNotIn("newid", ids, "tenant created despite an unknown flag")
        self.assertEqual(key_list(self.data, "okid"), [], "key created despite an unknown flag")

    def test_unknown_subcommand(self):
        calls = [["frobnicate"], ["tenant", "frobnicate"], ["key", "frobnicate"]]
        for args, cp in zip(calls, cli_many(self.data, calls)):
            self.assertUsageError(cp, " ".join(args))

    def test_serve_bad_listen(self):
        listens = ("nonsense", "127.0.0.1:70000", "127.0.0.1:-1", "127.0.0.1:", ":abc")
        results = cli_many(self.data, [["serve", "--listen", l] for l in listens], timeout=20)
        for listen, cp in zip(listens, results):
            with self.subTest(listen=listen):
                self.assertUsageError(cp, "--listen " + listen)

    def test_serve_plain_http_only_on_loopback_addresses(self):
        # decided on the parsed address: a name that starts with "127." is not loopback
        listens = ("127.attacker.example:0", "127.0.0.1.example:0", "10.0.0.1:0", "[::2]:0")
        results = cli_many(self.data, [["serve", "--listen", l] for l in listens], timeout=20)
        for listen, cp in zip(listens, results):
            with self.subTest(listen=listen):
                self.assertUsageError(cp, "--listen " + listen)
                self.assertIn("refusing to serve plain HTTP", cp.stderr)


class RunningServerTests(CliCase):
    """The server sees CLI changes on its data directory within one second."""

    def setUp(self):
        super().setUp()
        tenant_create(self.data, "early")
        self.early_key = key_create(self.data, "early", "test")
        self.server = harness.Server(self.data)
        self.addCleanup(self.server.kill)
        self.server.start()

    def tearDown(self):
        if self.server.running():
            self.server.stop_ok()

    def ingest(self, client, key, eid=None):
        body = {"events": [harness.event(eid or uid("EVT"))]}
        return harness.Api(self.server.port, client, key).ingest(body)

    def poll_status(self, fn, want, what):
        t0 = time.monotonic()
        seen = []

        def check():
            r = fn()
            seen.append(r.status)
            return r.status == want

        try:
            harness.wait_until(check, NOTICE_TIMEOUT, interval=0.05, what=what)
        except AssertionError:
            self.fail("%s: not seen within %.1fs; statuses %s" % (what, NOTICE_TIMEOUT,
                                                                  seen[-5:]))
        return time.monotonic() - t0

    def test_new_tenant_and_key_then_revoke(self):
        self.assertEqual(self.ingest("early", self.early_key).status, 202)
        tenant_create(self.data, "late")
        before = {r["key_id"] for r in key_list(self.data, "late")}
        key = key_create(self.data, "late", "test")
        self.poll_status(lambda: self.ingest("late", key), 202, "new key accepted")
        key_id = harness.new_key_id(self.data, "late", before)
        harness.key_revoke(self.data, key_id)
        self.poll_status(lambda: self.ingest("late", key), 401, "revoked key refused")
        r = self.ingest("late", key)
        self.assertEqual(r.status, 401)
        self.assertTrue(r.header("WWW-Authenticate", "").lower().startswith("bearer"), r.headers)
        # the other tenant's key is unaffected
        self.assertEqual(self.ingest("early", self.early_key).status, 202)

    def test_cli_during_write_load(self):
        # the CLI and the server share the database: CLI commands must not fail (e.g. on a
        # locked database) while the server is committing ingest requests
        tenant_create(self.data, "loadt")
        cli_ok(self.data, "tenant", "limits", "loadt", "--per-minute", "1000000", "--burst",
               "1000000")
        key = key_create(self.data, "loadt", "test")
        self.poll_status(lambda: self.ingest("loadt", key), 202, "new key accepted")
        stop = threading.Event()
        statuses = []

        def load():
            api = harness.Api(self.server.port, "loadt", key)
            while not stop.is_set():
                body = {"events": [harness.event() for _ in range(20)]}
                statuses.append(api.ingest(body).status)

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            harness.wait_until(lambda: len(statuses) >= 3, 10 * harness.TIME_SCALE,
                               what="load running")
            for i in range(2):
                cid = "busy%d" % i
                tenant_create(self.data, cid)
                key_create(self.data, cid, "test")
                cli_ok(self.data, "tenant", "limits", cid, "--per-minute", "100", "--burst",
                       "100")
                cli_ok(self.data, "key", "list", cid)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(set(statuses), {202}, "ingest failed during CLI use")

    def test_new_limits_apply(self):
        # The server has seen tenant 'early' (one request) with default limits. Lower them, then
        # create a prod key: once the new key works, the server has reloaded the settings that
        # were committed before it, limits included. The prod bucket is fresh: burst 2.
        self.assertEqual(self.ingest("early", self.early_key).status, 202)
        cli_ok(self.data, "tenant", "limits", "early", "--per-minute", "1", "--burst", "2")
        prod = key_create(self.data, "early", "prod")
        self.poll_status(lambda: self.ingest("early", prod), 202, "new prod key accepted")
        r2 = self.ingest("early", prod)
        self.assertEqual(r2.status, 202, r2)
        r3 = self.ingest("early", prod)
        self.assertEqual(r3.status, 429, "third request with burst 2: %r" % (r3,))
        self.assertTrue(r3.header("Retry-After"), r3.headers)


if __name__ == "__main__":
    harness.main()
