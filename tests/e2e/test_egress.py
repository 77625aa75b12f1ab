"""Secrets and outbound requests (README "Egress policy", docs/CONNECTORS.md):

  - a connector's stored secret is dropped when an update moves its URL to another scheme, host
    or port (and kept on a path-only change); a target's secrets must be sent again;
  - CR/LF and other control characters in settings, and user:password@ in URLs, are refused;
  - `127.attacker.example` is a name, not a loopback address (plain http:// stays refused);
  - link-local and cloud metadata addresses are refused at save time whatever the instance
    allows; private and loopback addresses only where STAGEDOOR_EGRESS_ALLOW allows them;
  - at connect time, a name that resolves to a refused address is refused for feeds, SFTP pulls
    and pushes (nothing reaches the listener);
  - path settings stay inside STAGEDOOR_FILE_ROOTS, out of /etc, /proc and the data directory;
  - documented choice values work (csv_drop's "delimiter": "semicolon")."""

import contextlib
import json
import os
import socket
import time
import unittest

import harness
from fake_sources import FakeSources
from test_push import PushBase

TS = harness.TIME_SCALE
TOKEN = "feed-token-93c1"


@contextlib.contextmanager
def env(**kw):
    """os.environ with kw set (None: unset) for the processes started inside."""
    old = {k: os.environ.get(k) for k in kw}
    for k, v in kw.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start(testcase, data, **kw):
    with env(**kw):
        s = harness.Server(data)
        testcase.addCleanup(s.kill)
        s.start()
    return s


def admin_token(data):
    with open(os.path.join(data, "admin.token")) as f:
        return f.read().strip()


def loopback_name():
    """A host name other than localhost that resolves to a loopback address (the machine's own
    name in /etc/hosts, usually), or None."""
    names = []
    try:
        with open("/etc/hosts") as f:
            for line in f:
                cols = line.split("#")[0].split()
                names += cols[1:]
    except OSError:
        pass
    names.append(socket.gethostname())
    for n in names:
        if n == "localhost" or n.endswith(".localhost") or not n:
            continue
        try:
            addrs = {a[4][0] for a in socket.getaddrinfo(n, 80, proto=socket.IPPROTO_TCP)}
        except OSError:
            continue
        if addrs and all(a.startswith("127.") or a == "::1" for a in addrs):
            return n
    return None


class EgressCase(unittest.TestCase):
    def adm(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1" + path, body=body, key=self.token)

    def create(self, body, client="venue"):
        return self.adm("POST", "/tenants/%s/connectors" % client, body)

    def refused(self, resp, pointer, part):
        self.assertEqual(resp.status, 400, resp)
        msgs = [e["message"] for e in resp.json["errors"] if e["pointer"] == pointer]
        self.assertTrue(any(part in m for m in msgs), "%s: %r" % (pointer, resp.json))
        return msgs

    def status_after_run(self, cid, client="venue", started=None):
        """Run now and return the status once that run ended. started: a predicate saying the
        run has begun (e.g. the source got one more request); without it, the connector's first
        run is waited for."""
        r = self.adm("POST", "/tenants/%s/connectors/%s/run" % (client, cid))
        self.assertEqual(r.status, 202, r)

        def done():
            if started and not started():
                return None
            s = self.adm("GET", "/tenants/%s/connectors/%s" % (client, cid)).json["status"]
            if s["state"] in ("ok", "failed") and (started or s["last_run"]):
                return s
            return None
        return harness.wait_until(done, 30 * TS, interval=0.1, what="a run of " + cid)


class SaveTimeTests(EgressCase):
    """One hub allowing loopback and private addresses (as the harness does)."""

    @classmethod
    def setUpClass(cls):
        cls.data = harness.tempdir(cls)
        harness.tenant_create(cls.data, "venue")
        cls.server = harness.Server(cls.data)
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.port = cls.server.port
        cls.token = admin_token(cls.data)
        cls.src1 = FakeSources().start()
        cls.addClassCleanup(cls.src1.stop)
        cls.src2 = FakeSources().start()
        cls.addClassCleanup(cls.src2.stop)
        body = json.dumps({"events": [harness.event("EG-1")]})
        for src in (cls.src1, cls.src2):
            src.add_feed("/f.json", body, "application/json", token=TOKEN)
            src.add_feed("/g.json", body, "application/json", token=TOKEN)

    def feed(self, url, **settings):
        settings = dict({"url": url, "auth_header": "Bearer " + TOKEN}, **settings)
        r = self.create({"type": "feed", "environment": "test", "settings": settings})
        self.assertEqual(r.status, 201, r)
        return r.json["connector_id"]

    def shown(self, cid):
        return self.adm("GET", "/tenants/venue/connectors/" + cid).json["settings"]

    def test_secret_dropped_when_the_host_changes(self):
        cid = self.feed(self.src1.address("/f.json"))
        self.assertEqual(self.shown(cid)["auth_header"], "(set)")
        # another port is another origin: the stored Authorization must not follow the URL
        n2 = len(self.src2.requests("/f.json"))
        r = self.adm("PATCH", "/tenants/venue/connectors/" + cid,
                       {"settings": {"url": self.src2.address("/f.json"),
                                     "auth_header": "(set)"}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.shown(cid)["auth_header"], "")
        st = self.status_after_run(cid, started=lambda: len(self.src2.requests("/f.json")) > n2)
        reqs = self.src2.requests("/f.json")[n2:]
        self.assertEqual(len(reqs), 1, st)
        self.assertIsNone(reqs[0].header("Authorization"))
        self.assertEqual(st["state"], "failed", st)  # the feed wants its token: 401
        # sent again in the same request: kept, and sent to the new host
        r = self.adm("PATCH", "/tenants/venue/connectors/" + cid,
                       {"settings": {"url": self.src1.address("/f.json"),
                                     "auth_header": "Bearer " + TOKEN}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.shown(cid)["auth_header"], "(set)")
        n1 = len(self.src1.requests("/f.json"))
        st = self.status_after_run(cid, started=lambda: len(self.src1.requests("/f.json")) > n1)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(self.src1.requests("/f.json")[n1].header("Authorization"),
                         "Bearer " + TOKEN)

    def test_secret_kept_when_only_the_path_changes(self):
        cid = self.feed(self.src1.address("/f.json"))
        r = self.adm("PATCH", "/tenants/venue/connectors/" + cid,
                       {"settings": {"url": self.src1.address("/g.json")}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.shown(cid)["auth_header"], "(set)")
        n = len(self.src1.requests("/g.json"))
        st = self.status_after_run(cid, started=lambda: len(self.src1.requests("/g.json")) > n)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(self.src1.requests("/g.json")[n].header("Authorization"),
                         "Bearer " + TOKEN)

    def test_sftp_password_dropped_when_the_port_changes(self):
        r = self.create({"type": "sftp_pull", "environment": "test", "settings": {
            "url": "sftp://127.0.0.1:2222/in/", "username": "u", "password": "pw-1f2e"}})
        self.assertEqual(r.status, 201, r)
        cid = r.json["connector_id"]
        # no password and no key left: the update is refused, nothing changes
        r = self.adm("PATCH", "/tenants/venue/connectors/" + cid,
                       {"settings": {"url": "sftp://127.0.0.1:2223/in/"}})
        self.refused(r, "/settings/password", "password")
        self.assertEqual(self.shown(cid)["url"], "sftp://127.0.0.1:2222/in/")
        r = self.adm("PATCH", "/tenants/venue/connectors/" + cid,
                       {"settings": {"url": "sftp://127.0.0.1:2222/other/"}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.shown(cid)["password"], "(set)")

    def test_target_secrets_required_again_when_the_host_changes(self):
        r = self.adm("POST", "/tenants/venue/targets", {
            "type": "audience_push", "environment": "test", "url": "http://127.0.0.1:9/a",
            "app_key": "APP-1", "secure_token": "TOK-1"})
        self.assertEqual(r.status, 201, r)
        tid = r.json["target_id"]
        path = "/tenants/venue/targets/" + tid
        for body in ({"url": "http://127.0.0.1:10/a"},
                     {"url": "http://127.0.0.1:10/a", "app_key": "(set)",
                      "secure_token": "(set)"}):
            r = self.adm("PATCH", path, body)
            self.refused(r, "/app_key", "required again")
            self.refused(r, "/secure_token", "required again")
        self.assertEqual(self.adm("GET", path).json["url"], "http://127.0.0.1:9/a")
        r = self.adm("PATCH", path, {"url": "http://127.0.0.1:9/b", "app_key": "(set)"})
        self.assertEqual(r.status, 200, r)
        r = self.adm("PATCH", path, {"url": "http://127.0.0.1:10/a", "app_key": "APP-2",
                                       "secure_token": "TOK-2"})
        self.assertEqual(r.status, 200, r)
        shown = self.adm("GET", path).json
        self.assertEqual((shown["app_key"], shown["secure_token"]), ("(set)", "(set)"))

    def test_control_characters_refused(self):
        injected = "Bearer x\r\nX-Injected: yes"
        for typ, settings, ptr in (
                ("feed", {"url": self.src1.address("/f.json"), "auth_header": injected},
                 "/settings/auth_header"),
                ("rest_pull", {"base_url": self.src1.url, "events_path": "/e",
                               "auth_header": "Bearer x\nX-Injected: yes"},
                 "/settings/auth_header"),
                ("rest_pull", {"base_url": self.src1.url, "events_path": "/e\r\nX: y"},
                 "/settings/events_path"),
                ("feed", {"url": self.src1.address("/f.json\r\nX-Injected: yes")},
                 "/settings/url"),
                ("sftp_pull", {"url": "sftp://127.0.0.1/in/", "username": "u\n",
                               "password": "p"}, "/settings/username")):
            r = self.create({"type": typ, "environment": "test", "settings": settings})
            self.refused(r, ptr, "control characters" if ptr != "/settings/url" else "")
        r = self.adm("POST", "/tenants/venue/targets", {
            "type": "audience_push", "environment": "test", "url": "http://127.0.0.1:9/a",
            "app_key": "k\r\nX-Injected: yes", "secure_token": "t"})
        self.refused(r, "/app_key", "control characters")

    def test_user_info_refused_and_not_echoed(self):
        for typ, settings, ptr in (
                ("feed", {"url": "http://user:s3cr3t-pw@127.0.0.1:9/f.json"}, "/settings/url"),
                ("rest_pull", {"base_url": "https://user:s3cr3t-pw@api.example",
                               "events_path": "/e"}, "/settings/base_url"),
                ("sftp_pull", {"url": "sftp://user:s3cr3t-pw@127.0.0.1/in/", "username": "u",
                               "password": "p"}, "/settings/url")):
            r = self.create({"type": typ, "environment": "test", "settings": settings})
            self.refused(r, ptr, "user:password@")
            self.assertNotIn("s3cr3t-pw", r.text)
        r = self.adm("POST", "/tenants/venue/targets", {
            "type": "audience_push", "environment": "test",
            "url": "https://user:s3cr3t-pw@crm.example/a", "app_key": "k", "secure_token": "t"})
        self.refused(r, "/url", "user:password@")
        self.assertNotIn("s3cr3t-pw", r.text)

    def test_a_name_starting_with_127_is_not_loopback(self):
        r = self.adm("POST", "/tenants/venue/targets", {
            "type": "audience_push", "environment": "test",
            "url": "http://127.attacker.example/collect", "app_key": "k", "secure_token": "t"})
        self.refused(r, "/url", "https://")
        for url in ("http://127.0.0.1:9/a", "http://localhost:9/a", "http://[::1]:9/a"):
            r = self.adm("POST", "/tenants/venue/targets", {
                "type": "audience_push", "environment": "test", "url": url, "app_key": "k",
                "secure_token": "t"})
            self.assertEqual(r.status, 201, (url, r))

    def test_link_local_and_metadata_always_refused(self):
        # this hub allows loopback and private addresses: these stay refused all the same
        for url, why in (("http://169.254.169.254/latest/meta-data/", "metadata"),
                         ("http://2852039166/latest/meta-data/", "metadata"),
                         ("http://169.254.10.1/", "link-local"),
                         ("http://[fe80::1]/", "link-local"),
                         ("http://[fd00:ec2::254]/", "metadata"),
                         ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
                         ("http://0.0.0.0:8080/", "not a destination")):
            r = self.create({"type": "feed", "environment": "test", "settings": {"url": url}})
            self.refused(r, "/settings/url", why)
            r = self.create({"type": "rest_pull", "environment": "test",
                             "settings": {"base_url": url, "events_path": "/e"}})
            self.refused(r, "/settings/base_url", why)
            r = self.adm("POST", "/tenants/venue/targets", {
                "type": "audience_push", "environment": "test",
                "url": url.replace("http://", "https://"), "app_key": "k", "secure_token": "t"})
            self.refused(r, "/url", why)
        r = self.create({"type": "sftp_pull", "environment": "test", "settings": {
            "url": "sftp://169.254.169.254/in/", "username": "u", "password": "p"}})
        self.refused(r, "/settings/url", "metadata")

    def test_documented_choice_values_work(self):
        for d in ("auto", "comma", "semicolon", "tab"):
            r = self.create({"type": "csv_drop", "environment": "test",
                             "settings": {"folder": harness.tempdir(self), "delimiter": d}})
            self.assertEqual(r.status, 201, (d, r))
        r = self.create({"type": "csv_drop", "environment": "test",
                         "settings": {"folder": harness.tempdir(self), "delimiter": "pipe"}})
        self.refused(r, "/settings/delimiter", "auto, comma, semicolon, tab")


class PolicyTests(EgressCase):
    def setUp(self):
        self.data = harness.tempdir(self)
        harness.tenant_create(self.data, "venue")

    def use(self, server):
        self.port = server.port
        self.token = admin_token(self.data)

    def test_private_and_loopback_only_where_allowed(self):
        cases = {
            "none": {"http://10.1.2.3/f": "private", "http://172.16.0.1/f": "private",
                     "http://192.168.1.1/f": "private", "http://100.64.0.1/f": "private",
                     "http://[fd12::1]/f": "private", "http://127.0.0.1:9/f": "loopback",
                     "http://localhost:9/f": "loopback", "http://[::1]:9/f": "loopback",
                     "http://8.8.8.8/f": None},
            None: {"http://10.1.2.3/f": None, "http://192.168.1.1/f": None,  # the default
                   "http://127.0.0.1:9/f": "loopback", "http://localhost:9/f": "loopback"},
            "loopback": {"http://10.1.2.3/f": "private", "http://127.0.0.1:9/f": None},
            "loopback,private": {"http://10.1.2.3/f": None, "http://127.0.0.1:9/f": None},
        }
        for allow, urls in cases.items():
            s = start(self, self.data, STAGEDOOR_EGRESS_ALLOW=allow)
            self.use(s)
            for url, why in urls.items():
                r = self.create({"type": "feed", "environment": "test",
                                 "settings": {"url": url}})
                if why is None:
                    self.assertEqual(r.status, 201, (allow, url, r))
                else:
                    msgs = self.refused(r, "/settings/url", why)
                    self.assertTrue(any("STAGEDOOR_EGRESS_ALLOW" in m for m in msgs), msgs)
            s.stop_ok()
        # the CLI reads the same variable
        with env(STAGEDOOR_EGRESS_ALLOW="none"):
            cp = harness.cli(self.data, "connector", "add", "venue", "--type", "feed", "--env",
                             "test", "--settings", json.dumps({"url": "http://10.0.0.7/f"}))
        self.assertEqual(cp.returncode, 2, cp)
        self.assertIn("private", cp.stderr)
        with env(STAGEDOOR_EGRESS_ALLOW="private"):
            harness.cli_ok(self.data, "connector", "add", "venue", "--type", "feed", "--env",
                           "test", "--settings", json.dumps({"url": "http://10.0.0.7/f"}))


class ConnectTimeTests(PushBase, EgressCase):
    """A name the save-time check cannot judge (it is not an address) but which resolves to a
    loopback address, on a hub that refuses loopback: every kind of outbound request stops
    before connecting."""

    def setUp(self):
        self.name = loopback_name()
        if not self.name:
            self.skipTest("no host name other than localhost resolves to a loopback address")
        self.setup_data()

    def test_resolved_address_refused_for_feeds_sftp_and_pushes(self):
        src = FakeSources().start()
        self.addCleanup(src.stop)
        src.add_feed("/f.json", json.dumps({"events": [harness.event("CT-1")]}),
                     "application/json")
        s = start(self, self.data, STAGEDOOR_EGRESS_ALLOW="private")
        self.attach(s)
        self.port, self.token = s.port, admin_token(self.data)
        client = "push"
        url = "http://%s:%d/f.json" % (self.name, src.port)
        r = self.create({"type": "feed", "environment": "test", "settings": {"url": url}},
                        client)
        self.assertEqual(r.status, 201, r)  # a name: judged when it resolves
        st = self.status_after_run(r.json["connector_id"], client)
        self.assertEqual(st["state"], "failed", st)
        self.assertIn("egress policy", st["last_error"])
        self.assertIn("loopback", st["last_error"])
        self.assertEqual(src.requests("/f.json"), [])

        r = self.create({"type": "sftp_pull", "environment": "test", "settings": {
            "url": "sftp://%s:%d/in/" % (self.name, src.port), "username": "u",
            "password": "p", "max_attempts": 1}}, client)
        self.assertEqual(r.status, 201, r)
        st = self.status_after_run(r.json["connector_id"], client)
        self.assertEqual(st["state"], "failed", st)
        self.assertIn("egress policy", st["last_error"])

        r = self.adm("POST", "/tenants/%s/targets" % client, {
            "type": "audience_push", "environment": "test",
            "url": "https://%s:%d/crm" % (self.name, self.rx.port), "app_key": "k",
            "secure_token": "t"})
        self.assertEqual(r.status, 201, r)
        tgt = r.json["target_id"]
        ev, _, _ = self.audience(1)
        seg, _ = self.segment(ev)
        dlv = self.push_ok(seg, tgt)

        def refused():
            d = self.delivery(dlv)
            return d if d["last_error"] else None
        d = harness.wait_until(refused, 15 * TS, interval=0.05, what="the push attempt")
        self.assertIn("egress policy", d["last_error"])
        time.sleep(0.3 * TS)
        self.assertEqual(self.rx.received("/crm"), [])


class FileRootTests(EgressCase):
    def test_paths_confined_to_the_roots(self):
        data = harness.tempdir(self)
        harness.tenant_create(data, "venue")
        root = os.path.realpath(harness.tempdir(self))
        outside = os.path.realpath(harness.tempdir(self))
        os.mkdir(os.path.join(root, "drop"))
        os.symlink(outside, os.path.join(root, "escape"))
        with open(os.path.join(root, "known_hosts"), "w") as f:
            f.write("")
        s = start(self, data, STAGEDOOR_FILE_ROOTS=root + ":/nonexistent-root")
        self.port, self.token = s.port, admin_token(data)

        def drop(folder):
            return self.create({"type": "csv_drop", "environment": "test",
                                "settings": {"folder": folder}})

        def pull(**paths):
            settings = dict({"url": "sftp://10.0.0.9/in/", "username": "u", "password": "p"},
                            **paths)
            return self.create({"type": "sftp_pull", "environment": "test",
                                "settings": settings})

        self.assertEqual(drop(os.path.join(root, "drop")).status, 201)
        self.assertEqual(drop(os.path.join(root, "drop", "not", "yet")).status, 201)
        self.assertEqual(pull(known_hosts_file=os.path.join(root, "known_hosts")).status, 201)
        for folder, why in ((outside, "file roots"),
                            (os.path.join(root, "drop", "..", "..",
                                          os.path.basename(outside)), '".."'),
                            (os.path.join(root, "escape"), "file roots"),
                            (os.path.join(root, "escape", "sub"), "file roots"),
                            ("/etc/stagedoor", "/etc"),
                            ("/proc/self", "/proc"),
                            (data, "data directory"),
                            (os.path.join(data, "connectors"), "data directory"),
                            ("relative/drop", "absolute")):
            self.refused(drop(folder), "/settings/folder", why)
        self.refused(pull(known_hosts_file="/etc/ssh/ssh_known_hosts"),
                     "/settings/known_hosts_file", "/etc")
        self.refused(pull(private_key_file="/proc/self/environ"),
                     "/settings/private_key_file", "/proc")
        self.refused(pull(public_key_file=os.path.join(outside, "id.pub")),
                     "/settings/public_key_file", "file roots")
        s.stop_ok()


if __name__ == "__main__":
    harness.main()
