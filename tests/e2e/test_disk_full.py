"""A full disk is not a broken store. SQLite answers SQLITE_FULL and rolls the transaction back
cleanly, so the hub answers 503 storage_full with Retry-After (nothing of the request stored),
/healthz says 503 degraded/disk_full, and the hub heals by itself at the next write that fits:
no restart, and without waiting for a request (an idle writer probes every 5 s). A connector
run that hits it says "disk full" in its status and is retried.

The space limit is SQLite's own: with STAGEDOOR_FAULT=max_pages the writer reads
DATA/fault-max-pages before each transaction and sets PRAGMA max_page_count, which fails writes
with SQLITE_FULL exactly like a full file system (test hook, documented in README "Operating").
TmpfsTests does the same on a real, small tmpfs when this machine lets the test mount one (root
with CAP_SYS_ADMIN); elsewhere it is skipped.
"""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
from harness import customer

WAIT = 30 * harness.TIME_SCALE


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def big_batch(prefix, n=300):
    # long names fill pages quickly; ids are unique so every post needs new pages
    return {"customers": [customer(harness.uid(prefix), first_name="F" * 200,
                                   last_name="L" * 200) for _ in range(n)]}


class HubOnDisk:
    """Helpers shared by both test classes: start a hub on self.data, fill it."""

    def start(self, env=None):
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            s = harness.Server(self.data)
            self.addCleanup(s.kill)
            s.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.server = s
        self.api = harness.Api(s.port, "sd", self.key)
        return s

    def health(self):
        return harness.http(self.server.port, "GET", "/healthz")

    def fill_until_full(self, tries=400):
        """Post big batches until one is refused for space; return (answer, its batch)."""
        for _ in range(tries):
            body = big_batch("FULL")
            r = self.api.ingest(body)
            if r.status != 202:
                return r, body
        self.fail("the store never filled up")

    def check_refused_for_space(self, r, body):
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json["error"], "storage_full", r)
        self.assertTrue(r.header("Retry-After", "").isdigit(), r.headers)
        self.assertGreater(int(r.header("Retry-After")), 0)
        # nothing of the refused request was kept
        for c in body["customers"][:3] + body["customers"][-3:]:
            self.assertEqual(self.api.get("customers", c["customer_id"]).status, 404)
        h = self.health()
        self.assertEqual(h.status, 503, h)
        self.assertEqual((h.json["status"], h.json["reason"]), ("degraded", "disk_full"), h)
        self.assertTrue(h.header("Retry-After", "").isdigit(), h.headers)

    def check_healed(self, body):
        # no request needed: an idle writer probes for space every 5 s (a load balancer stops
        # sending requests to a 503 /healthz)
        harness.wait_until(lambda: self.health().status == 200, 20 * harness.TIME_SCALE,
                           interval=0.2, what="/healthz ok again without any write")
        r = self.api.ingest(body)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(self.health().status, 200)
        self.assertEqual(self.api.get("customers", body["customers"][0]["customer_id"]).status,
                         200)


class MaxPagesTests(HubOnDisk, unittest.TestCase):
    def setUp(self):
        self.data = harness.tempdir(self)
        harness.tenant_create(self.data, "sd")
        self.key = harness.key_create(self.data, "sd", "test")
        harness.tenant_limits(self.data, "sd", 1000000, 100000)
        self.cap = os.path.join(self.data, "fault-max-pages")
        self.start({"STAGEDOOR_FAULT": "max_pages"})

    def set_cap(self, pages):
        if pages is None:
            os.unlink(self.cap)
        else:
            with open(self.cap + ".tmp", "w") as f:
                f.write("%d\n" % pages)
            os.rename(self.cap + ".tmp", self.cap)

    def test_full_store_answers_503_and_heals_without_restart(self):
        self.assertEqual(self.api.ingest(big_batch("OK", 5)).status, 202)
        self.assertEqual(self.health().status, 200)

        self.set_cap(1)  # SQLite keeps it at the current size: no page may be added
        r, refused = self.fill_until_full()
        self.check_refused_for_space(r, refused)
        m = harness.http(self.server.port, "GET", "/metrics").text
        self.assertIn("stagedoor_store_disk_full 1", m)

        # still full: refused again, and the writer is not broken (not "failing")
        r = self.api.ingest(big_batch("AGAIN"))
        self.assertEqual((r.status, r.json["error"]), (503, "storage_full"), r)
        self.assertEqual(self.health().json["status"], "degraded")
        # the idle writer's probes (every 5 s) find no space either: still degraded
        time.sleep(7)
        h = self.health()
        self.assertEqual((h.status, h.json["status"]), (503, "degraded"), h)

        self.set_cap(None)  # space comes back: the next write heals the hub, no restart
        self.check_healed(refused)
        self.assertIn("stagedoor_store_disk_full 0",
                      harness.http(self.server.port, "GET", "/metrics").text)
        self.server.stop_ok(self)

    def test_connector_run_that_hits_the_limit_says_disk_full_and_is_retried(self):
        token = admin_token(self.data)
        drop = tempfile.mkdtemp(prefix="sd-drop-")
        self.addCleanup(shutil.rmtree, drop, True)

        def admin(method, path, body=None):
            return harness.http(self.server.port, method,
                                "/admin/v1/tenants/sd/connectors" + path, body=body, key=token)

        r = admin("POST", "", {"type": "csv_drop", "environment": "test", "schedule": "manual",
                               "settings": {"folder": drop, "settle_seconds": 0}})
        self.assertEqual(r.status, 201, r)
        cid = r.json["connector_id"]

        def status():
            r = admin("GET", "/" + cid)
            self.assertEqual(r.status, 200, r)
            return r.json["status"]

        def run_and_wait(want, what):
            # (last_run has a resolution of one second: wait for the state instead)
            self.assertEqual(admin("POST", "/%s/run" % cid).status, 202)
            return harness.wait_until(
                lambda: (lambda s: s if s["state"] == want else None)(status()), WAIT,
                interval=0.1, what=what)

        try:  # a connector that never ran may run at once: let that empty run end first
            harness.wait_until(lambda: status()["state"] not in ("running", "never_run"),
                               5 * harness.TIME_SCALE, interval=0.1, what="the first run")
        except AssertionError:
            pass  # it does not (manual schedule): nothing to wait for
        ids = [harness.uid("CSV-EVT") for _ in range(3000)]
        rows = ["event_id,title,date,time,venue,hall,capacity,city"]
        rows += ["%s,%s,2025-10-03,19:30:00,State Opera,Hall %s,1250,Berlin" % (i, "T" * 150, i)
                 for i in ids]
        self.set_cap(1)
        with open(os.path.join(drop, "events.csv.tmp"), "w") as f:
            f.write("\n".join(rows) + "\n")
        os.rename(os.path.join(drop, "events.csv.tmp"), os.path.join(drop, "events.csv"))

        st = run_and_wait("failed", "the run under the space limit")
        self.assertEqual(st["state"], "failed", st)
        self.assertTrue((st["last_error"] or "").startswith("disk full"), st)
        self.assertEqual(self.api.get("events", ids[0]).status, 404)
        self.assertTrue(os.path.exists(os.path.join(drop, "events.csv")))  # kept for the retry

        self.set_cap(None)
        st = run_and_wait("ok", "the run after space came back")
        self.assertEqual(st["state"], "ok", st)
        self.assertIsNone(st["last_error"], st)
        self.assertEqual(self.api.get("events", ids[0]).status, 200)
        self.assertEqual(self.api.get("events", ids[-1]).status, 200)
        self.assertEqual(self.health().status, 200)
        self.server.stop_ok(self)


def try_mount_tmpfs(path, size):
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cp.returncode == 0


class TmpfsTests(HubOnDisk, unittest.TestCase):
    """The same on a real file system that runs out of space."""

    def setUp(self):
        mnt = tempfile.mkdtemp(prefix="sd-tmpfs-")
        self.addCleanup(os.rmdir, mnt)
        if not try_mount_tmpfs(mnt, "6m"):
            self.skipTest("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        self.data = os.path.join(mnt, "data")
        os.mkdir(self.data, 0o700)
        harness.tenant_create(self.data, "sd")
        self.key = harness.key_create(self.data, "sd", "test")
        harness.tenant_limits(self.data, "sd", 1000000, 100000)
        self.start()

    def test_real_full_file_system(self):
        self.assertEqual(self.api.ingest(big_batch("OK", 5)).status, 202)
        r, refused = self.fill_until_full()
        self.check_refused_for_space(r, refused)
        # space comes back: the file system grows under the running hub
        subprocess.run(["mount", "-o", "remount,size=64m", os.path.dirname(self.data)],
                       check=True)
        self.check_healed(refused)
        self.server.stop_ok(self)


if __name__ == "__main__":
    harness.main()
