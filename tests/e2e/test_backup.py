"""Operator surface of the binary: `stagedoor backup` (an online, verified copy of the SQLite
store taken while a hub writes to it, and the restore: a hub started on the copy serves the same
reads), `stagedoor --version`, and the manual pages `stagedoor man` generates from the command
table (every command, every option of its usage text, every environment variable the program
reads).

store suite: both backends — on PostgreSQL, backup answers that pg_dump is the tool (exit 1)."""

import os
import re
import shutil
import subprocess
import threading
import time
import unittest

import harness
from harness import PG_MODE, Server, cli, cli_ok, customer, key_create, tenant_create, uid


def project_version():
    with open(os.path.join(harness.REPO, "CMakeLists.txt")) as f:
        m = re.search(r"project\(stagedoor VERSION (\d+\.\d+\.\d+)", f.read())
    assert m, "CMakeLists.txt has no project VERSION"
    return m.group(1)


def run(*args):
    return subprocess.run([harness.bin_path()] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=harness.CLI_TIMEOUT,
                          stdin=subprocess.DEVNULL)


def backup_counts(stdout):
    """{table: rows} from the backup's report lines "  FILE  TABLE  N rows"."""
    counts = {}
    for line in stdout.splitlines():
        m = re.match(r"\s+(stagedoor\.db|control\.db)\s+(\w+)\s+(\d+) rows$", line)
        if m:
            counts[m.group(2)] = int(m.group(3))
    return counts


class VersionTests(unittest.TestCase):
    def test_version_names_release_commit_and_libraries(self):
        want = project_version()
        for args in (["--version"], ["version"]):
            cp = run(*args)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            lines = cp.stdout.splitlines()
            self.assertEqual(len(lines), 2, cp.stdout)
            m = re.fullmatch(r"stagedoor (\d+\.\d+\.\d+)( \(git [0-9a-f]{7,}(-dirty)?\))?",
                             lines[0])
            self.assertTrue(m, lines[0])
            self.assertEqual(m.group(1), want)
            if self.describe():
                self.assertIsNotNone(m.group(2), "built from a checkout: the commit is named")
            self.assertRegex(lines[1], r"^SQLite 3\.\d+\.\d+, libpq \d+\.\d+, "
                                       r"libmicrohttpd \d+\.\d+\.\d+$")

    @staticmethod
    def describe():
        """What CMake's configure step asks git (None outside a usable checkout)."""
        if not shutil.which("git"):
            return None
        cp = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=harness.REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return cp.stdout.strip() if cp.returncode == 0 else None

    def test_version_takes_no_arguments(self):
        cp = run("version", "extra")
        self.assertEqual(cp.returncode, 2)
        self.assertIn("unexpected argument", cp.stderr)


@unittest.skipIf(PG_MODE, "SQLite backups; PostgreSQL answers with pg_dump (PgBackupTests)")
class BackupTests(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.tempdir(self)
        self.data = os.path.join(self.tmp, "data")
        os.mkdir(self.data)
        self.client = uid("bk")
        tenant_create(self.data, self.client)
        self.key = key_create(self.data, self.client)

    def test_backup_while_serving_then_restore_serves_the_same_reads(self):
        hub = Server(self.data).start()
        self.addCleanup(hub.kill)
        api = hub.api(self.client, self.key)
        # Before the backup: what it must hold (acknowledged = committed).
        before = [customer(uid("C"), first_name="Before %d" % i, note="x" * 400)
                  for i in range(3000)]
        for i in range(0, len(before), 1000):
            r = api.ingest({"customers": before[i:i + 1000]})
            self.assertEqual(r.status, 202, r)
        # During the backup: a writer keeps ingesting; every write must still be accepted.
        acked, failed, stop = [], [], threading.Event()
        window = {}

        def writer():
            while not stop.is_set():
                batch = [customer(uid("D")) for _ in range(20)]
                r = api.ingest({"customers": batch})
                (acked if r.status == 202 else failed).append((time.monotonic(), r.status))

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        harness.wait_until(lambda: len(acked) >= 3, 30 * harness.TIME_SCALE, what="writes")
        dest = os.path.join(self.tmp, "backup")
        window["start"] = time.monotonic()
        cp = cli(self.data, "backup", dest, timeout=120 * harness.TIME_SCALE)
        window["end"] = time.monotonic()
        harness.wait_until(lambda: any(at > window["end"] for at, _ in acked),
                           30 * harness.TIME_SCALE, what="a write after the backup")
        stop.set()
        t.join(30)
        self.assertEqual(cp.returncode, 0, "stdout: %s\nstderr: %s" % (cp.stdout, cp.stderr))
        self.assertEqual(failed, [], "writes failed while the backup ran")
        during = [at for at, _ in acked if window["start"] <= at <= window["end"]]
        self.assertTrue(during, "no write was accepted while the backup ran")
        self.assertRegex(cp.stdout, r"verified: quick_check ok, schema version \d+, control "
                                    r"schema version \d+")
        counts = backup_counts(cp.stdout)
        for table in ("tenants", "api_keys", "events", "customers", "sales"):
            self.assertIn(table, counts, cp.stdout)
        self.assertEqual(counts["tenants"], 1)
        self.assertEqual(counts["api_keys"], 1)
        total_acked = len(before) + 20 * len(acked)
        self.assertGreaterEqual(counts["customers"], len(before) + 20 * 3)
        self.assertLessEqual(counts["customers"], total_acked)
        self.assertEqual(sorted(os.listdir(dest)), ["control.db", "stagedoor.db"])
        live_count = len(api.list_all("customers")[0])
        hub.stop_ok()

        # Restore = --data DEST: the same key, the same reads, the backup's counts.
        restored = Server(dest).start()
        self.addCleanup(restored.kill)
        rapi = restored.api(self.client, self.key)
        got, _ = rapi.list_all("customers")
        self.assertEqual(len(got), counts["customers"])
        self.assertLessEqual(len(got), live_count)
        ids = {c["customer_id"] for c in got}
        self.assertTrue({c["customer_id"] for c in before} <= ids)
        one = before[1234]
        r = rapi.get("customers", one["customer_id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["first_name"], one["first_name"])
        self.assertEqual(r.json["note"], one["note"])
        # A copy is a store like any other: it takes writes.
        r = rapi.ingest({"customers": [customer(uid("AFTER"))]})
        self.assertEqual(r.status, 202, r)
        restored.stop_ok()

    def test_backup_refuses_a_non_empty_destination(self):
        dest = os.path.join(self.tmp, "full")
        os.mkdir(dest)
        with open(os.path.join(dest, "keep.txt"), "w") as f:
            f.write("operator's file")
        cp = cli(self.data, "backup", dest)
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("is not empty", cp.stderr)
        self.assertEqual(os.listdir(dest), ["keep.txt"])
        with open(os.path.join(dest, "keep.txt")) as f:
            self.assertEqual(f.read(), "operator's file")

    def test_backup_into_an_existing_empty_directory_and_a_file_refused(self):
        dest = os.path.join(self.tmp, "empty")
        os.mkdir(dest)
        cp = cli_ok(self.data, "backup", dest)
        self.assertEqual(backup_counts(cp.stdout)["tenants"], 1)
        afile = os.path.join(self.tmp, "afile")
        open(afile, "w").close()
        cp = cli(self.data, "backup", afile)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("not a directory", cp.stderr)
        cp = cli(self.data, "backup", os.path.join(self.tmp, "no", "such"))
        self.assertEqual(cp.returncode, 1)
        self.assertIn("cannot create backup directory", cp.stderr)

    def test_backup_usage_errors(self):
        cp = cli(self.data, "backup")
        self.assertEqual(cp.returncode, 2)
        self.assertIn("needs a DEST", cp.stderr)
        cp = cli(self.data, "backup", "a", "b")
        self.assertEqual(cp.returncode, 2)
        cp = cli(None, "backup", os.path.join(self.tmp, "x"), "--data",
                 os.path.join(self.tmp, "missing"))
        self.assertEqual(cp.returncode, 1)
        self.assertIn("does not exist", cp.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x")))


@unittest.skipUnless(PG_MODE, "the PostgreSQL store's answer")
class PgBackupTests(unittest.TestCase):
    def test_postgresql_store_points_to_pg_dump(self):
        data = harness.tempdir(self)
        tenant_create(data, uid("pg"))
        dest = os.path.join(harness.tempdir(self), "bk")
        cp = cli(data, "backup", dest)
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("pg_dump", cp.stderr)
        self.assertFalse(os.path.exists(dest), "nothing written for a PostgreSQL store")


def command_names():
    cp = run("--help")
    names = re.findall(r"^  (\S+) ", cp.stdout, re.M)
    assert names, cp.stdout
    return names


def troff_escaped(text):
    return text.replace("\\", "\\e").replace("-", "\\-")


class ManTests(unittest.TestCase):
    def test_main_page_has_every_command_option_and_variable(self):
        cp = run("man")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        page = cp.stdout
        self.assertTrue(page.startswith(".TH STAGEDOOR 1 "), page[:80])
        self.assertIn('"stagedoor %s"' % project_version(), page.splitlines()[0])
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "ENVIRONMENT",
                        "EXIT STATUS", "SEE ALSO"):
            self.assertIn("\n.SH %s\n" % section, page)
        listed = run("man", "--list").stdout.split()
        self.assertEqual(listed, command_names())
        for name in listed:
            self.assertIn("\n.SS %s\n" % troff_escaped(name), page)
            for opt in set(re.findall(r"--[a-z][a-z-]*", run(name, "--help").stdout)):
                self.assertIn(troff_escaped(opt), page, "%s: option %s" % (name, opt))
        env = page.split("\n.SH ENVIRONMENT\n")[1].split("\n.SH ")[0]
        for var in self.getenv_names():
            self.assertIn(".B %s\n" % troff_escaped(var), env, "environment variable " + var)
        self.assertTrue(all(ord(c) < 128 for c in page), "the page is ASCII troff")

    @staticmethod
    def getenv_names():
        names = set()
        for root, _, files in os.walk(os.path.join(harness.REPO, "src")):
            for fn in files:
                if fn.endswith((".c", ".h")):
                    with open(os.path.join(root, fn), errors="replace") as f:
                        names.update(re.findall(r'getenv\("([A-Z_][A-Z0-9_]*)"\)', f.read()))
        assert "STAGEDOOR_STORE" in names, names
        return names

    def test_one_page_per_command(self):
        for name in run("man", "--list").stdout.split():
            cp = run("man", name)
            self.assertEqual(cp.returncode, 0, "%s: %s" % (name, cp.stderr))
            page = cp.stdout
            self.assertTrue(page.startswith(".TH STAGEDOOR\\-%s 1 " % troff_escaped(
                name.upper())), page[:80])
            self.assertIn("\n.SH NAME\nstagedoor\\-%s \\- " % troff_escaped(name), page)
            self.assertIn("\n.SH SYNOPSIS\n.nf\nstagedoor %s" % troff_escaped(name), page)
            for opt in set(re.findall(r"--[a-z][a-z-]*", run(name, "--help").stdout)):
                self.assertIn(troff_escaped(opt), page, "%s: option %s" % (name, opt))
            # every control line is a known man(7) macro; no text line reads as one
            for line in page.splitlines():
                if line.startswith((".", "'")):
                    self.assertRegex(line, r"^\.(TH|SH|SS|TP|PP|RS|RE|nf|fi|nh|B|BR|BI|I|RI|br)"
                                           r"( |$)", "%s: %r" % (name, line))

    def test_unknown_command_is_a_usage_error(self):
        cp = run("man", "no-such-command")
        self.assertEqual(cp.returncode, 2)
        self.assertIn("unknown command", cp.stderr)

    @unittest.skipUnless(shutil.which("groff") or shutil.which("man"), "no troff formatter")
    def test_pages_render_without_warnings(self):
        pages = [[]] + [[n] for n in run("man", "--list").stdout.split()]
        for args in pages:
            src = run("man", *args).stdout
            if shutil.which("groff"):
                cmd = ["groff", "-man", "-Tutf8", "-ww"]
            else:
                cmd = ["man", "-l", "-Tutf8", "-"]
            cp = subprocess.run(cmd, input=src, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, timeout=60)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertEqual(cp.stderr.strip(), "", "%r: %s" % (args, cp.stderr))
            text = re.sub(r".\x08", "", cp.stdout)
            self.assertIn("stagedoor", text)
            self.assertIn("SYNOPSIS", text)


if __name__ == "__main__":
    harness.main()
