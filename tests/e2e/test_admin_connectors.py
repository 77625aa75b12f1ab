"""The admin API for connectors (/admin/v1/tenants/{client_id}/connectors) and its CLI face
(`stagedoor connector add|list|show|update|run|remove`), through the real binary.

What is checked:
  - the admin token: DATA/admin.token, mode 0600, one line "sd_admin_…", the same after a
    restart; no token, a wrong one, another scheme or a tenant API key -> 401 with
    WWW-Authenticate.
  - create/list/get/patch/delete/run over HTTP and the same through the CLI, the server seeing
    CLI changes within about a second (its scheduler runs, reschedules and drops connectors);
    another tenant's connector id is a 404 everywhere.
  - secrets (sftp_pull password, feed/rest_pull auth_header) are "(set)" in GET, list and
    `connector show`, never in an answer body nor in the server's log; a PATCH without the
    secret keeps it (the next run still authenticates at the source, seen in its request log).
  - validation when saving: each mistake answers 400 with its JSON Pointer and stores nothing.
  - a connector on `every 10s` runs by itself and shows next_run; connectors and their
    committed status survive kill -9 and a restart.

The feeds are served by fake_sources.FakeSources (Bearer token required), so a run is visible
in its request log."""

import json
import os
import re
import stat
import time
import unittest

import harness
from fake_sources import FakeSources

TS = harness.TIME_SCALE
RUN_WAIT = 15 * TS  # a queued run starts within ~250 ms; a generous bound for slow builds

FEED_TOKEN = "feed-Secr3t-9f8e7d"
REST_TOKEN = "rest-Secr3t-1a2b3c"
SFTP_PASSWORD = "sftp-Secr3t-5e6f7a"


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def feed_body(prefix, n=2):
    """An ingest-shaped JSON feed with n events (unique halls, so no duplicate performances)."""
    return json.dumps({"events": [harness.event("%s-%d" % (prefix, i)) for i in range(n)]})


class Admin:
    """Admin requests on one server with one token."""

    def __init__(self, port, token):
        self.port, self.token = port, token

    def req(self, method, path, body=None, token="default"):
        t = self.token if token == "default" else token
        return harness.http(self.port, method, "/admin/v1" + path, body=body, key=t)

    def create(self, client, body):
        return self.req("POST", "/tenants/%s/connectors" % client, body)

    def list(self, client):
        return self.req("GET", "/tenants/%s/connectors" % client)

    def get(self, client, cid):
        return self.req("GET", "/tenants/%s/connectors/%s" % (client, cid))

    def patch(self, client, cid, body):
        return self.req("PATCH", "/tenants/%s/connectors/%s" % (client, cid), body)

    def delete(self, client, cid):
        return self.req("DELETE", "/tenants/%s/connectors/%s" % (client, cid))

    def run(self, client, cid):
        return self.req("POST", "/tenants/%s/connectors/%s/run" % (client, cid))

    def status(self, client, cid):
        r = self.get(client, cid)
        if r.status != 200:
            raise AssertionError("GET connector %s -> %r" % (cid, r))
        return r.json["status"]


class AdminCase(unittest.TestCase):
    def assertStatus(self, resp, status, msg=None):
        if resp.status != status:
            self.fail("want HTTP %s, got %r%s" % (status, resp, (" — " + msg) if msg else ""))

    def created(self, resp):
        self.assertStatus(resp, 201)
        cid = resp.json["connector_id"]
        self.assertRegex(cid, r"^con_[0-9a-f]{16}$")
        return cid

    def wait_run(self, admin, client, cid, started, want_state=None):
        """Wait until a run has ended that `started()` (a predicate, e.g. "the source got one
        more request") shows has begun; return the status. The live state is "running" from
        the start of a run until its end state is committed, so once the run is known to have
        started, any other state is its committed outcome. (last_run has one-second
        resolution: two runs within a second cannot be told apart by it.)"""
        def done():
            if not started():
                return None
            s = admin.status(client, cid)
            return s if s["state"] in ("ok", "failed") else None
        s = harness.wait_until(done, RUN_WAIT, interval=0.05, what="a run of %s" % cid)
        if want_state:
            self.assertEqual(s["state"], want_state, s)
        return s


# ---------------------------------------------------------------------------------------------


class AdminTokenTests(AdminCase):
    def test_token_file_mode_stable_across_restarts(self):
        data = harness.tempdir(self)
        path = os.path.join(data, "admin.token")
        self.assertFalse(os.path.exists(path))
        srv = harness.Server(data)
        self.addCleanup(srv.kill)
        srv.start()
        st = os.stat(path)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, "admin.token mode %o" % st.st_mode)
        with open(path) as f:
            text = f.read()
        lines = [l for l in text.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, text)
        self.assertRegex(lines[0], r"^sd_admin_[A-Za-z0-9_-]{20,}$")
        tok = lines[0].strip()
        self.assertStatus(Admin(srv.port, tok).req("GET", "/tenants/nobody/connectors"), 404)
        srv.stop_ok()

        srv2 = harness.Server(data)
        self.addCleanup(srv2.kill)
        srv2.start()
        with open(path) as f:
            self.assertEqual(f.read(), text, "the admin token changed across a restart")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        # the old token still works, and the token never shows up in the log
        self.assertStatus(Admin(srv2.port, tok).req("GET", "/tenants/nobody/connectors"), 404)
        srv2.stop_ok()
        for s in (srv, srv2):
            log = "\n".join(s.stdout_lines) + "\n".join(s.stderr_tail)
            self.assertNotIn(tok, log, "the admin token is in the server log")

    def test_unauthorized(self):
        data = harness.tempdir(self)
        harness.tenant_create(data, "opera")
        key = harness.key_create(data, "opera", "test")
        prod_key = harness.key_create(data, "opera", "prod")
        srv = harness.Server(data)
        self.addCleanup(srv.kill)
        srv.start()
        tok = admin_token(data)
        a = Admin(srv.port, tok)
        good = a.create("opera", {"type": "feed", "environment": "test", "schedule": "manual",
                                  "settings": {"url": "http://127.0.0.1:9/feed.json"}})
        cid = self.created(good)
        paths = [("GET", "/tenants/opera/connectors", None),
                 ("POST", "/tenants/opera/connectors",
                  {"type": "feed", "environment": "test", "settings": {"url": "http://x/y"}}),
                 ("GET", "/tenants/opera/connectors/" + cid, None),
                 ("PATCH", "/tenants/opera/connectors/" + cid, {"schedule": "hourly"}),
                 ("POST", "/tenants/opera/connectors/%s/run" % cid, None),
                 ("DELETE", "/tenants/opera/connectors/" + cid, None)]
        wrong = tok[:-4] + ("AAAA" if not tok.endswith("AAAA") else "BBBB")
        for method, path, body in paths:
            for label, headers in (("no token", {}),
                                   ("wrong token", {"Authorization": "Bearer " + wrong}),
                                   ("tenant test key", {"Authorization": "Bearer " + key}),
                                   ("tenant prod key", {"Authorization": "Bearer " + prod_key}),
                                   ("basic scheme", {"Authorization": "Basic " + tok}),
                                   ("token without scheme", {"Authorization": tok})):
                with self.subTest(method=method, path=path, auth=label):
                    r = harness.http(srv.port, method, "/admin/v1" + path, body=body,
                                     headers=headers)
                    self.assertStatus(r, 401)
                    self.assertIn("Bearer", r.header("WWW-Authenticate", ""), r.headers)
                    self.assertNotIn(tok, r.text)
        # nothing of that was applied: one connector, unchanged, never run
        r = a.list("opera")
        self.assertStatus(r, 200)
        self.assertEqual([c["connector_id"] for c in r.json["data"]], [cid])
        self.assertEqual(r.json["data"][0]["schedule"], "manual")
        self.assertEqual(r.json["data"][0]["status"]["state"], "never_run")
        # a tenant key still works where it belongs
        self.assertStatus(harness.Api(srv.port, "opera", key).get("events"), 200)
        srv.stop_ok()


# ---------------------------------------------------------------------------------------------


class AdminConnectorTests(AdminCase):
    """One server, tenants opera/ballet, a FakeSources for feeds."""

    @classmethod
    def setUpClass(cls):
        cls.data = harness.tempdir(cls)
        for t in ("opera", "ballet", "valid"):
            harness.tenant_create(cls.data, t)
        cls.key = harness.key_create(cls.data, "opera", "test")
        cls.src = FakeSources()
        cls.src.start()
        cls.addClassCleanup(cls.src.stop)
        cls.server = harness.Server(cls.data)
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.admin = Admin(cls.server.port, admin_token(cls.data))

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        if rc != 0:
            raise AssertionError("server exit code %r\n%s" % (rc, cls.server.diagnostics()))

    def server_log(self):
        return "\n".join(self.server.stdout_lines) + "\n" + "\n".join(self.server.stderr_tail)

    def feed(self, prefix, n=2, token=FEED_TOKEN):
        path = "/feeds/%s.json" % harness.uid(prefix)
        self.src.add_feed(path, feed_body(harness.uid(prefix), n), "application/json",
                          token=token)
        return path

    # -- HTTP ------------------------------------------------------------------------------

    def test_crud_over_http(self):
        a = self.admin
        path = self.feed("crud")
        body = {"type": "feed", "environment": "test", "schedule": "manual",
                "settings": {"url": self.src.address(path), "kind": "ingest",
                             "auth_header": "Bearer " + FEED_TOKEN, "timeout_seconds": 5},
                "mapping": {"EventNo": "event_id"}}
        r = a.create("opera", body)
        cid = self.created(r)
        self.assertEqual(r.header("Location"), "/admin/v1/tenants/opera/connectors/" + cid)

        v = a.get("opera", cid)
        self.assertStatus(v, 200)
        v = v.json
        self.assertEqual(v["connector_id"], cid)
        self.assertEqual(v["client_id"], "opera")
        self.assertEqual(v["type"], "feed")
        self.assertEqual(v["environment"], "test")
        self.assertEqual(v["schedule"], "manual")
        self.assertEqual(v["mapping"], {"EventNo": "event_id"})
        # defaults filled in, what was sent kept, the secret redacted
        self.assertEqual(v["settings"]["url"], self.src.address(path))
        self.assertEqual(v["settings"]["timeout_seconds"], 5)
        self.assertEqual(v["settings"]["max_attempts"], 6)
        self.assertEqual(v["settings"]["policy"], "reject_feed")
        self.assertEqual(v["settings"]["auth_header"], "(set)")
        for t in ("created_at", "updated_at"):
            self.assertRegex(v[t], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        st = v["status"]
        self.assertEqual(st["state"], "never_run")
        for k in ("last_run", "last_success", "last_error", "cursor"):
            self.assertIsNone(st[k], k)

        r = a.list("opera")
        self.assertStatus(r, 200)
        listed = [c for c in r.json["data"] if c["connector_id"] == cid]
        self.assertEqual(len(listed), 1)
        self.assertEqual(listed[0]["settings"], v["settings"])
        self.assertEqual(listed[0]["mapping"], v["mapping"])

        # PATCH: settings merged (null restores the default), mapping replaced
        r = a.patch("opera", cid, {"schedule": "hourly at :05",
                                   "settings": {"timeout_seconds": None, "max_attempts": 2},
                                   "mapping": {"fields": {"Nr": "event_id"}}})
        self.assertStatus(r, 200)
        p = r.json
        self.assertEqual(p["schedule"], "hourly at :05")
        self.assertEqual(p["settings"]["timeout_seconds"], 60)
        self.assertEqual(p["settings"]["max_attempts"], 2)
        self.assertEqual(p["settings"]["url"], self.src.address(path))
        self.assertEqual(p["settings"]["auth_header"], "(set)")
        self.assertEqual(p["mapping"], {"fields": {"Nr": "event_id"}})
        self.assertEqual(a.get("opera", cid).json["settings"], p["settings"])
        # the scheduler picks up the new schedule: the next run is at minute 05
        nxt = harness.wait_until(lambda: a.status("opera", cid)["next_run"], 5 * TS,
                                 what="next_run after PATCH")
        self.assertRegex(nxt, r"T\d\d:05:00Z$")

        # run now: the source sees the request, the status records the run
        before = len(self.src.requests(path))
        r = a.run("opera", cid)
        self.assertStatus(r, 202)
        self.assertEqual(r.json, {"connector_id": cid, "state": "queued"})
        st = self.wait_run(a, "opera", cid, lambda: len(self.src.requests(path)) > before, "ok")
        self.assertEqual(st["records_in"], 2)
        reqs = self.src.requests(path)
        self.assertGreater(len(reqs), before)
        self.assertEqual(reqs[-1].header("Authorization"), "Bearer " + FEED_TOKEN)
        self.assertEqual(reqs[-1].status, 200)

        r = a.delete("opera", cid)
        self.assertStatus(r, 204)
        self.assertEqual(r.body, b"")
        self.assertStatus(a.get("opera", cid), 404)
        self.assertStatus(a.delete("opera", cid), 404)
        self.assertStatus(a.run("opera", cid), 404)
        self.assertStatus(a.patch("opera", cid, {"schedule": "manual"}), 404)
        self.assertNotIn(cid, [c["connector_id"] for c in a.list("opera").json["data"]])

    def test_other_tenants_connector_is_404(self):
        a = self.admin
        cid = self.created(a.create("opera", {"type": "feed", "environment": "prod",
                                              "schedule": "manual",
                                              "settings": {"url": "http://127.0.0.1:9/f"}}))
        for method, suffix, body in (("GET", "", None), ("PATCH", "", {"schedule": "hourly"}),
                                     ("POST", "/run", None), ("DELETE", "", None)):
            with self.subTest(method=method, suffix=suffix):
                r = a.req(method, "/tenants/ballet/connectors/%s%s" % (cid, suffix), body)
                self.assertStatus(r, 404)
                self.assertNotIn("http://127.0.0.1:9/f", r.text)
        self.assertNotIn(cid, [c["connector_id"] for c in a.list("ballet").json["data"]])
        # untouched for its own tenant: not patched, not run, not deleted
        v = a.get("opera", cid)
        self.assertStatus(v, 200)
        self.assertEqual(v.json["schedule"], "manual")
        self.assertEqual(v.json["environment"], "prod")
        time.sleep(0.6 * TS)  # a wrongly honoured run request would have started by now
        self.assertEqual(a.status("opera", cid)["state"], "never_run")
        # unknown tenant, unknown id
        self.assertStatus(a.get("nosuchtenant", cid), 404)
        self.assertStatus(a.list("nosuchtenant"), 404)
        self.assertStatus(a.create("nosuchtenant", {"type": "feed", "environment": "test",
                                                    "settings": {"url": "http://x/y"}}), 404)
        self.assertStatus(a.get("opera", "con_0000000000000000"), 404)
        self.assertStatus(a.delete("opera", cid), 204)

    # -- CLI -------------------------------------------------------------------------------

    def test_cli_crud_seen_by_the_server(self):
        a = self.admin
        path = self.feed("cli")
        settings = {"url": self.src.address(path), "auth_header": "Bearer " + FEED_TOKEN}
        mfile = os.path.join(self.data, "mapping-cli.json")
        with open(mfile, "w") as f:
            json.dump({"fields": {"EventNo": "event_id"}, "unmapped": "keep"}, f)
        cp = harness.cli_ok(self.data, "connector", "add", "opera", "--type", "feed", "--env",
                            "test", "--schedule", "manual", "--settings", json.dumps(settings),
                            "--mapping", "@" + mfile)
        cid = cp.stdout.strip().splitlines()[-1].strip()
        self.assertRegex(cid, r"^con_[0-9a-f]{16}$")
        self.assertNotIn(FEED_TOKEN, cp.stdout + cp.stderr)
        # the admin API sees it at once (one store)
        v = a.get("opera", cid)
        self.assertStatus(v, 200)
        self.assertEqual(v.json["settings"]["auth_header"], "(set)")
        self.assertEqual(v.json["mapping"], {"fields": {"EventNo": "event_id"},
                                             "unmapped": "keep"})
        # list: a row with id, type, env, schedule, state
        cp = harness.cli_ok(self.data, "connector", "list", "opera")
        rows = [l.split() for l in cp.stdout.splitlines() if l.startswith(cid)]
        self.assertEqual(len(rows), 1, cp.stdout)
        self.assertEqual(rows[0][1:5], ["feed", "test", "manual", "never_run"])
        # show: the JSON view, secrets redacted, same configuration as over HTTP
        cp = harness.cli_ok(self.data, "connector", "show", cid)
        shown = json.loads(cp.stdout)
        self.assertNotIn(FEED_TOKEN, cp.stdout)
        for k in ("connector_id", "client_id", "type", "environment", "schedule", "settings",
                  "mapping"):
            self.assertEqual(shown[k], v.json[k], k)

        # run: the server starts it within about a second
        t0 = time.monotonic()
        before = len(self.src.requests(path))
        cp = harness.cli_ok(self.data, "connector", "run", cid)
        st = self.wait_run(a, "opera", cid, lambda: len(self.src.requests(path)) > before, "ok")
        took = time.monotonic() - t0
        self.assertLess(took, 3 * TS, "a CLI run request took %.1fs to be honoured" % took)
        self.assertEqual(st["records_in"], 2)
        self.assertEqual(len(self.src.requests(path)), before + 1)
        self.assertEqual(self.src.requests(path)[-1].header("Authorization"),
                         "Bearer " + FEED_TOKEN)
        cp = harness.cli_ok(self.data, "connector", "show", cid)
        self.assertEqual(json.loads(cp.stdout)["status"]["state"], "ok")

        # update: the scheduler plans by the new schedule within about a second
        cp = harness.cli_ok(self.data, "connector", "update", cid, "--schedule",
                            "daily at 02:00", "--settings", '{"timeout_seconds": 7}')
        v = a.get("opera", cid).json
        self.assertEqual(v["schedule"], "daily at 02:00")
        self.assertEqual(v["settings"]["timeout_seconds"], 7)
        self.assertEqual(v["settings"]["auth_header"], "(set)")  # kept, not cleared
        nxt = harness.wait_until(
            lambda: (lambda n: n if n and n.endswith("T02:00:00Z") else None)(
                a.status("opera", cid)["next_run"]), 3 * TS, interval=0.05,
            what="next_run at 02:00 after `connector update`")
        self.assertTrue(nxt.endswith("T02:00:00Z"))

        # validation through the CLI: exit 2, the pointer on stderr, nothing stored
        cp = harness.cli(self.data, "connector", "update", cid, "--schedule", "every 5x")
        self.assertEqual(cp.returncode, 2, cp)
        self.assertIn("/schedule", cp.stderr)
        cp = harness.cli(self.data, "connector", "add", "opera", "--type", "feed", "--env",
                         "test", "--settings", '{"url": "http://x/y", "bogus": 1}')
        self.assertEqual(cp.returncode, 2, cp)
        self.assertIn("/settings/bogus", cp.stderr)
        self.assertEqual(a.get("opera", cid).json["schedule"], "daily at 02:00")
        cp = harness.cli(self.data, "connector", "add", "nosuchtenant", "--type", "feed",
                         "--env", "test", "--settings", '{"url": "http://x/y"}')
        self.assertEqual(cp.returncode, 1, cp)

        # remove: gone for the API, and the scheduler no longer runs it
        harness.cli_ok(self.data, "connector", "remove", cid)
        self.assertStatus(a.get("opera", cid), 404)
        self.assertNotEqual(harness.cli(self.data, "connector", "show", cid).returncode, 0)
        self.assertNotEqual(harness.cli(self.data, "connector", "run", cid).returncode, 0)
        self.assertEqual(len(self.src.requests(path)), before + 1)

    # -- secrets ---------------------------------------------------------------------------

    def test_secrets_redacted_kept_and_never_logged(self):
        a = self.admin
        path = self.feed("sec")
        feed_id = self.created(a.create("opera", {
            "type": "feed", "environment": "test", "schedule": "manual",
            "settings": {"url": self.src.address(path), "auth_header": "Bearer " + FEED_TOKEN}}))
        self.src.add_collection("/api/sales-sec", [], token=REST_TOKEN)
        rest_id = self.created(a.create("opera", {
            "type": "rest_pull", "environment": "test", "schedule": "manual",
            "settings": {"base_url": self.src.url, "sales_path": "/api/sales-sec",
                         "auth_header": "Bearer " + REST_TOKEN, "next_pointer": "/next"}}))
        # port 9 (discard) is closed: the run fails fast, and its error must not leak either
        sftp_id = self.created(a.create("opera", {
            "type": "sftp_pull", "environment": "test", "schedule": "manual",
            "settings": {"url": "sftp://127.0.0.1:9/upload/", "username": "venue",
                         "password": SFTP_PASSWORD, "max_attempts": 1, "settle_seconds": 0}}))
        secrets = (FEED_TOKEN, REST_TOKEN, SFTP_PASSWORD)
        secret_keys = {feed_id: "auth_header", rest_id: "auth_header", sftp_id: "password"}

        def no_secret(text, where):
            for s in secrets:
                self.assertNotIn(s, text, "secret in %s" % where)

        for cid, k in secret_keys.items():
            r = a.get("opera", cid)
            self.assertEqual(r.json["settings"][k], "(set)", r)
            no_secret(r.text, "GET " + cid)
            cp = harness.cli_ok(self.data, "connector", "show", cid)
            self.assertEqual(json.loads(cp.stdout)["settings"][k], "(set)")
            no_secret(cp.stdout + cp.stderr, "connector show")
        r = a.list("opera")
        no_secret(r.text, "GET list")
        for c in r.json["data"]:
            if c["connector_id"] in secret_keys:
                self.assertEqual(c["settings"][secret_keys[c["connector_id"]]], "(set)")
        cp = harness.cli_ok(self.data, "connector", "list", "opera")
        no_secret(cp.stdout + cp.stderr, "connector list")

        # runs: the sources get the real secrets
        for cid in (feed_id, rest_id, sftp_id):
            self.assertStatus(a.run("opera", cid), 202)
        self.wait_run(a, "opera", feed_id, lambda: self.src.requests(path), "ok")
        self.wait_run(a, "opera", rest_id, lambda: self.src.requests("/api/sales-sec"), "ok")
        st = self.wait_run(a, "opera", sftp_id,
                           lambda: a.status("opera", sftp_id)["last_run"], "failed")
        self.assertTrue(st["last_error"])
        self.assertEqual(self.src.requests(path)[-1].header("Authorization"),
                         "Bearer " + FEED_TOKEN)
        rest_reqs = self.src.requests("/api/sales-sec")
        self.assertTrue(rest_reqs)
        self.assertEqual(rest_reqs[-1].header("Authorization"), "Bearer " + REST_TOKEN)
        self.assertEqual(rest_reqs[-1].status, 200)

        # PATCH without the secret keeps it: prove it with another authenticated run
        self.src.set_feed(path, feed_body(harness.uid("sec2"), 3))
        r = a.patch("opera", feed_id, {"settings": {"timeout_seconds": 9}, "schedule": "manual"})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["settings"]["auth_header"], "(set)")
        self.assertEqual(r.json["settings"]["timeout_seconds"], 9)
        no_secret(r.text, "PATCH answer")
        n = len(self.src.requests(path))
        self.assertStatus(a.run("opera", feed_id), 202)
        st = self.wait_run(a, "opera", feed_id, lambda: len(self.src.requests(path)) > n, "ok")
        reqs = self.src.requests(path)[n:]
        self.assertTrue(reqs)
        self.assertEqual(reqs[-1].header("Authorization"), "Bearer " + FEED_TOKEN)
        self.assertEqual(reqs[-1].status, 200)
        self.assertEqual(st["last_run_stats"]["records_in"], 3)
        # CLI update without the secret keeps it too
        harness.cli_ok(self.data, "connector", "update", rest_id, "--settings",
                       '{"page_size": 50}')
        n = len(self.src.requests("/api/sales-sec"))
        self.assertStatus(a.run("opera", rest_id), 202)
        self.wait_run(a, "opera", rest_id, lambda: len(self.src.requests("/api/sales-sec")) > n,
                      "ok")
        reqs = self.src.requests("/api/sales-sec")[n:]
        self.assertTrue(reqs)
        self.assertEqual(reqs[-1].header("Authorization"), "Bearer " + REST_TOKEN)
        self.assertEqual(reqs[-1].query.get("limit"), "50")
        no_secret(self.server_log(), "the server log")
        for cid in (feed_id, rest_id, sftp_id):
            self.assertStatus(a.delete("opera", cid), 204)

    def test_redacted_placeholder_sent_back_keeps_the_secret(self):
        """A client that GETs a connector, edits it and PATCHes the settings back sends
        "(set)" for the secret: that must keep the secret (or be refused), never become it."""
        a = self.admin
        path = self.feed("echo")
        cid = self.created(a.create("opera", {
            "type": "feed", "environment": "test", "schedule": "manual",
            "settings": {"url": self.src.address(path), "auth_header": "Bearer " + FEED_TOKEN}}))
        settings = a.get("opera", cid).json["settings"]
        self.assertEqual(settings["auth_header"], "(set)")
        settings["timeout_seconds"] = 11
        r = a.patch("opera", cid, {"settings": settings})
        if r.status != 200:
            self.assertStatus(r, 400)
            self.assertIn("/settings/auth_header", [e["pointer"] for e in r.json["errors"]])
            settings.pop("auth_header")
            self.assertStatus(a.patch("opera", cid, {"settings": settings}), 200)
        self.assertEqual(a.get("opera", cid).json["settings"]["timeout_seconds"], 11)
        n = len(self.src.requests(path))
        self.assertStatus(a.run("opera", cid), 202)
        st = self.wait_run(a, "opera", cid, lambda: len(self.src.requests(path)) > n)
        self.assertEqual(self.src.requests(path)[n].header("Authorization"),
                         "Bearer " + FEED_TOKEN,
                         "the secret was replaced by the redaction placeholder")
        self.assertEqual(st["state"], "ok", st)
        # the same through the CLI
        cp = harness.cli_ok(self.data, "connector", "show", cid)
        shown = json.loads(cp.stdout)["settings"]
        cp = harness.cli(self.data, "connector", "update", cid, "--settings", json.dumps(shown))
        n = len(self.src.requests(path))
        self.assertStatus(a.run("opera", cid), 202)
        self.wait_run(a, "opera", cid, lambda: len(self.src.requests(path)) > n)
        self.assertEqual(self.src.requests(path)[n].header("Authorization"),
                         "Bearer " + FEED_TOKEN, "`connector update` with the shown settings "
                         "replaced the secret by the placeholder (exit %d)" % cp.returncode)
        self.assertStatus(a.delete("opera", cid), 204)

    # -- validation ------------------------------------------------------------------------

    def test_validation_at_save(self):
        a = self.admin
        base = {"type": "csv_drop", "environment": "test",
                "settings": {"folder": "/srv/sftp/opera/upload"}}

        def with_(**kw):
            b = json.loads(json.dumps(base))
            for k, v in kw.items():
                if k == "settings":
                    b["settings"].update(v)
                else:
                    b[k] = v
            return b

        cases = [
            ("unknown type", with_(type="csv_dorp"), "/type", "unknown connector type"),
            ("missing type", {k: v for k, v in base.items() if k != "type"}, "/type", None),
            ("bad environment", with_(environment="staging"), "/environment", None),
            ("bad schedule", with_(schedule="every 5x"), "/schedule", None),
            ("bad cron", with_(schedule="61 * * * *"), "/schedule", None),
            ("unknown setting", with_(settings={"foldr": "/x"}), "/settings/foldr",
             "unknown setting"),
            ("wrong setting type", with_(settings={"settle_seconds": "1"}),
             "/settings/settle_seconds", "integer"),
            ("setting out of bounds", with_(settings={"settle_seconds": 99999}),
             "/settings/settle_seconds", None),
            ("bad enum setting", with_(settings={"policy": "skip_some"}), "/settings/policy",
             "reject_file"),
            ("relative folder", with_(settings={"folder": "upload"}), "/settings/folder",
             "absolute"),
            ("missing required setting", with_(settings={"folder": None}), "/settings/folder",
             "required"),
            ("unknown model field", with_(mapping={"fields": {"EventNo": "event_id",
                                                              "EvntDate": "evnt_date"}}),
             "/mapping/fields/EvntDate", "unknown model field"),
            ("unknown model field (cheat-sheet form)", with_(mapping={"EvntNo": "evnt_id"}),
             "/mapping/EvntNo", "unknown model field"),
            ("bad date format token", with_(mapping={"formats": {"date": "DD.MM.YYYX"}}),
             "/mapping/formats/date", "token"),
            ("bad values map", with_(mapping={"values": {"no_such_field": {"a": "b"}}}),
             "/mapping/values/no_such_field", None),
            ("unknown member", with_(colour="blue"), "/colour", None),
            ("sftp_pull without password or key",
             {"type": "sftp_pull", "environment": "test",
              "settings": {"url": "sftp://h/upload/", "username": "u"}},
             "/settings/password", None),
            ("feed without url", {"type": "feed", "environment": "test", "settings": {}},
             "/settings/url", "required"),
        ]
        # a settings value of None means "leave the member out"
        for _, body, _, _ in cases:
            s = body.get("settings")
            if isinstance(s, dict):
                body["settings"] = {k: v for k, v in s.items() if v is not None}
        for label, body, pointer, msg in cases:
            with self.subTest(label):
                r = a.create("valid", body)
                self.assertStatus(r, 400, label)
                self.assertEqual(r.json.get("error"), "validation_failed", r)
                errs = r.json["errors"]
                hit = [e for e in errs if e["pointer"] == pointer]
                self.assertTrue(hit, "no error at %s: %s" % (pointer, errs))
                if msg:
                    self.assertIn(msg, hit[0]["message"])
                self.assertEqual(a.list("valid").json["data"], [], "stored after a 400")
        # several mistakes at once: every one reported
        r = a.create("valid", {"type": "csv_drop", "environment": "qa", "schedule": "sometimes",
                               "settings": {"folder": "/x", "delimiter": "pipe"},
                               "mapping": {"fields": {"A": "nope"}}})
        self.assertStatus(r, 400)
        ptrs = {e["pointer"] for e in r.json["errors"]}
        for p in ("/environment", "/schedule", "/settings/delimiter", "/mapping/fields/A"):
            self.assertIn(p, ptrs)
        # not JSON / not an object
        r = harness.http(self.server.port, "POST", "/admin/v1/tenants/valid/connectors",
                         body=b"{not json", key=a.token,
                         headers={"Content-Type": "application/json"})
        self.assertStatus(r, 400)
        self.assertStatus(a.create("valid", [1, 2]), 400)
        self.assertEqual(a.list("valid").json["data"], [])

        # PATCH is checked the same way and changes nothing on a 400
        cid = self.created(a.create("valid", with_(schedule="every 5m")))
        orig = a.get("valid", cid).json
        for label, body, pointer in (
                ("bad schedule", {"schedule": "every 5x"}, "/schedule"),
                ("unknown setting", {"settings": {"foldr": "/y"}}, "/settings/foldr"),
                ("wrong type", {"settings": {"settle_seconds": True}},
                 "/settings/settle_seconds"),
                ("required setting removed", {"settings": {"folder": None}}, "/settings/folder"),
                ("unknown model field", {"mapping": {"fields": {"X": "price"}}},
                 "/mapping/fields/X"),
                ("type change", {"type": "feed"}, "/type"),
                ("environment change", {"environment": "prod"}, "/environment")):
            with self.subTest("PATCH " + label):
                r = a.patch("valid", cid, body)
                self.assertStatus(r, 400)
                self.assertIn(pointer, [e["pointer"] for e in r.json["errors"]], r)
                now = a.get("valid", cid).json
                for k in ("schedule", "settings", "mapping", "type", "environment",
                          "updated_at"):
                    self.assertEqual(now[k], orig[k], k)
        self.assertStatus(a.delete("valid", cid), 204)


# ---------------------------------------------------------------------------------------------


class ScheduleAndRestartTests(AdminCase):
    def test_every_10s_runs_by_itself_and_survives_restart(self):
        data = harness.tempdir(self)
        harness.tenant_create(data, "opera")
        key = harness.key_create(data, "opera", "test")
        src = FakeSources()
        src.start()
        self.addCleanup(src.stop)
        path = "/feeds/sched.json"
        src.add_feed(path, feed_body("SCH", 2), "application/json", token=FEED_TOKEN)
        srv = harness.Server(data)
        self.addCleanup(srv.kill)
        srv.start()
        a = Admin(srv.port, admin_token(data))
        cid = self.created(a.create("opera", {
            "type": "feed", "environment": "test", "schedule": "every 10s",
            "settings": {"url": src.address(path), "auth_header": "Bearer " + FEED_TOKEN}}))
        drop = harness.tempdir(self)  # not inside the data directory: the egress policy
        other = self.created(a.create("opera", {
            "type": "csv_drop", "environment": "prod", "schedule": "daily at 02:00",
            "settings": {"folder": drop, "policy": "skip_rows"},
            "mapping": {"EventNo": "event_id"}}))

        # nobody asks for a run: the schedule alone makes at least two within ~12 s
        reqs = src.wait_requests(2, path, timeout=25 * TS)
        gap = reqs[1].t - reqs[0].t
        self.assertGreater(gap, 8.0, "runs %.1fs apart on 'every 10s'" % gap)
        self.assertLess(gap, 10.0 + 5 * TS, "runs %.1fs apart on 'every 10s'" % gap)
        # the second one revalidated: 304, nothing stored twice
        self.assertEqual(reqs[1].status, 304)
        # (right after a run commits, the scheduler may not have planned the next one yet)
        st = harness.wait_until(
            lambda: (lambda s: s if s["state"] == "ok" and s["next_run"] and s["last_run"]
                     and _ts(s["next_run"]) > _ts(s["last_run"]) else None)(
                a.status("opera", cid)), 5 * TS, what="status with next_run after last_run")
        self.assertEqual(st["records_in"], 2)
        last = _ts(st["last_run"])
        self.assertAlmostEqual(_ts(st["next_run"]) - last, 10, delta=2, msg=st)
        # events stored once
        self.assertEqual(len(harness.Api(srv.port, "opera", key).get("events").json["data"]), 2)

        before = {c["connector_id"]: c for c in a.list("opera").json["data"]}
        self.assertEqual(set(before), {cid, other})
        # wait for quiet (no run in flight) so the committed status is final, then crash
        harness.wait_until(lambda: a.status("opera", cid)["state"] == "ok", 5 * TS)
        committed = a.status("opera", cid)
        srv.kill()

        srv2 = harness.Server(data)
        self.addCleanup(srv2.kill)
        srv2.start()
        a2 = Admin(srv2.port, admin_token(data))
        after = {c["connector_id"]: c for c in a2.list("opera").json["data"]}
        self.assertEqual(set(after), {cid, other})
        for k in ("type", "environment", "schedule", "settings", "mapping", "created_at",
                  "updated_at"):
            self.assertEqual(after[cid][k], before[cid][k], k)
            self.assertEqual(after[other][k], before[other][k], k)
        st2 = after[cid]["status"]
        for k in ("last_success", "records_in", "records_rejected", "cursor"):
            self.assertEqual(st2[k], committed[k], k)
        self.assertEqual(after[other]["status"]["state"], before[other]["status"]["state"])
        # the schedule goes on after the restart, still authenticated, still a 304
        n = len(src.requests(path))
        reqs = src.wait_requests(n + 1, path, timeout=20 * TS)
        self.assertEqual(reqs[n].header("Authorization"), "Bearer " + FEED_TOKEN)
        self.assertEqual(reqs[n].status, 304)
        nxt = harness.wait_until(lambda: a2.status("opera", cid)["next_run"], 5 * TS)
        self.assertTrue(nxt)
        self.assertEqual(len(harness.Api(srv2.port, "opera", key).get("events").json["data"]), 2)
        srv2.stop_ok()


def _ts(text):
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


if __name__ == "__main__":
    harness.main()
