"""Self-check of the batch-transport test infrastructure, without stagedoor: sshd_server.py (a real
OpenSSH sshd with the sdsftp SFTP jail, reached with the sftp client and with curl's sftp://, by
password and by key) and fake_sources.py (feeds with ETag/Last-Modified, cursor-paged REST
collections, fault injection). Accepts and ignores `--bin X` like the other e2e tests; needs root
for the sshd part (skipped otherwise)."""

import base64
import http.client
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import unittest
from urllib.parse import urlencode

import harness
from fake_sources import FakeSources, decode_token, id_greater, pointer_get
from sshd_server import SshdServer

TIME_SCALE = harness.TIME_SCALE
CURL = shutil.which("curl")


def get(fs, path, headers=None, timeout=None):
    """One GET on a fresh connection: (status, headers, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", fs.port, timeout=timeout or 10 * TIME_SCALE)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.msg, r.read()
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# sshd


class SshdTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sshd = SshdServer()
        cls.sshd.start()
        cls.addClassCleanup(cls.sshd.stop)
        cls.tmp = harness.tempdir(cls)

    def curl(self, *args, env=None):
        if CURL is None:
            self.skipTest("curl is not installed")
        cp = subprocess.run([CURL, "-sS", "--max-time", str(int(20 * TIME_SCALE))] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL, timeout=30 * TIME_SCALE)
        return cp

    def curl_ok(self, *args, env=None):
        cp = self.curl(*args, env=env)
        self.assertEqual(cp.returncode, 0, "curl %r: %s\n%s"
                         % (args, cp.stderr, self.sshd.diagnostics(20)))
        return cp.stdout

    def test_layout_and_config(self):
        s = self.sshd
        self.assertTrue(s.port > 0)
        self.assertIn("ChrootDirectory %s" % s.chroot, s.config_text)
        self.assertIn("ForceCommand internal-sftp", s.config_text)
        st = os.stat(s.chroot)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (0, 0o755))
        self.assertEqual(os.stat(s.upload_dir).st_uid, pwd.getpwnam(s.user).pw_uid)
        with open(s.known_hosts) as f:
            self.assertTrue(f.read().startswith("[127.0.0.1]:%d ssh-ed25519 " % s.port))

    def test_put_list_get_and_hub_moves(self):
        s = self.sshd
        src = os.path.join(self.tmp, "tickets.csv")
        data = b"id,event\n" + b"".join(b"%d,Tosca\n" % i for i in range(5000))
        with open(src, "wb") as f:
            f.write(data)
        host = s.put(src, "tickets.csv")
        self.assertEqual(host, s.upload_path("tickets.csv"))
        with open(host, "rb") as f:
            self.assertEqual(f.read(), data)
        names = s.listdir("upload")
        self.assertIn("tickets.csv", names)
        self.assertNotIn(".tickets.csv.part", s.listdir("upload", all=True))

        s.put_bytes("direct\n", "direct.txt", temp_then_rename=False)
        s.put_bytes('odd "name"\n', 'odd "name" [1].csv')
        self.assertIn('odd "name" [1].csv', s.listdir())

        back = os.path.join(self.tmp, "back.csv")
        s.get("/upload/tickets.csv", back)
        with open(back, "rb") as f:
            self.assertEqual(f.read(), data)

        # the hub (root) moves files out of the way; sdsftp still sees them
        for sub, name in (("processed", "tickets.csv"), ("failed", "direct.txt")):
            os.makedirs(os.path.join(s.upload_dir, sub), exist_ok=True)
            os.rename(s.upload_path(name), os.path.join(s.upload_dir, sub, name))
        self.assertEqual(s.listdir("upload/processed"), ["tickets.csv"])
        self.assertEqual(s.listdir("/upload/failed"), ["direct.txt"])
        self.assertNotIn("tickets.csv", s.listdir())

    def test_jail_refuses_writes_outside_upload(self):
        s = self.sshd
        src = os.path.join(self.tmp, "escape.txt")
        with open(src, "w") as f:
            f.write("out\n")
        cp = s.sftp(["put %s /escape.txt" % src], check=False)
        self.assertNotEqual(cp.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(s.chroot, "escape.txt")))

    def test_curl_password(self):
        s = self.sshd
        s.put_bytes(b"pw\n", "curl-pw.txt")
        out = self.curl_ok(*s.curl_args("password", "insecure"), s.url("/upload/"))
        self.assertIn("curl-pw.txt", out)
        # directory listing by names only, and a file's content
        out = self.curl_ok("-l", *s.curl_args("password", "sha256"), s.url("/upload/"))
        self.assertIn("curl-pw.txt", out.splitlines())
        out = self.curl_ok(*s.curl_args("password", "md5"), s.url("/upload/curl-pw.txt"))
        self.assertEqual(out, "pw\n")
        cp = self.curl("-u", "%s:wrong" % s.user, "--insecure", s.url())
        self.assertEqual(cp.returncode, 67, cp.stderr)  # CURLE_LOGIN_DENIED

    def test_curl_key(self):
        s = self.sshd
        s.put_bytes(b"key\n", "curl-key.txt")
        out = self.curl_ok(*s.curl_args("key", "insecure"), s.url("/upload/"))
        self.assertIn("curl-key.txt", out)
        out = self.curl_ok(*s.curl_args("key", "sha256"), s.url("/upload/curl-key.txt"))
        self.assertEqual(out, "key\n")
        # curl (the tool) checks known_hosts only from $HOME/.ssh/known_hosts
        env = s.curl_env(os.path.join(self.tmp, "home"))
        out = self.curl_ok(*s.curl_args("key", "known_hosts"), s.url("/upload/"), env=env)
        self.assertIn("curl-key.txt", out)

    def test_curl_host_key_mismatch_is_refused(self):
        s = self.sshd
        wrong = base64.b64encode(b"\0" * 32).decode().rstrip("=")
        cp = self.curl(*s.curl_args("password", "insecure")[:2], "--hostpubsha256", wrong,
                       s.url())
        self.assertEqual(cp.returncode, 60, cp.stderr)  # CURLE_PEER_FAILED_VERIFICATION
        home = os.path.join(self.tmp, "badhome")
        os.makedirs(os.path.join(home, ".ssh"), exist_ok=True)
        other = os.path.join(self.tmp, "other_host_key")
        if not os.path.exists(other):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other],
                           check=True, stdin=subprocess.DEVNULL)
        with open(other + ".pub") as f:
            other_pub = " ".join(f.read().split()[:2])
        with open(os.path.join(home, ".ssh", "known_hosts"), "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (s.port, other_pub))
        cp = self.curl(*s.curl_args("password", "known_hosts"), s.url(),
                       env=dict(os.environ, HOME=home))
        self.assertEqual(cp.returncode, 60, cp.stderr)

    def test_curl_upload_into_upload_dir(self):
        s = self.sshd
        src = os.path.join(self.tmp, "via-curl.txt")
        with open(src, "w") as f:
            f.write("via curl\n")
        self.curl_ok(*s.curl_args("key", "sha256"), "-T", src, s.url("/upload/via-curl.txt"))
        with open(s.upload_path("via-curl.txt")) as f:
            self.assertEqual(f.read(), "via curl\n")
        cp = self.curl(*s.curl_args("key", "sha256"), "-T", src, s.url("/root-level.txt"))
        self.assertNotEqual(cp.returncode, 0)


# ---------------------------------------------------------------------------------------------
# fake sources


class FeedTests(unittest.TestCase):
    def setUp(self):
        self.fs = FakeSources().start()
        self.addCleanup(self.fs.stop)

    def test_etag_and_last_modified(self):
        fs = self.fs
        fs.add_feed("/f.csv", b"a,b\n1,2\n", "text/csv")
        st, h, body = get(fs, "/f.csv")
        self.assertEqual((st, body), (200, b"a,b\n1,2\n"))
        self.assertEqual(h["Content-Type"], "text/csv")
        etag, lm = h["ETag"], h["Last-Modified"]
        self.assertTrue(etag.startswith('"') and etag.endswith('"'), etag)
        self.assertTrue(lm.endswith(" GMT"), lm)

        st, h, body = get(fs, "/f.csv", {"If-None-Match": etag})
        self.assertEqual((st, body), (304, b""))
        self.assertEqual(h["ETag"], etag)
        st, _, _ = get(fs, "/f.csv", {"If-None-Match": '"other", %s' % etag})
        self.assertEqual(st, 304)
        st, _, _ = get(fs, "/f.csv", {"If-Modified-Since": lm})
        self.assertEqual(st, 304)
        # If-None-Match wins over If-Modified-Since
        st, _, _ = get(fs, "/f.csv", {"If-None-Match": '"nope"', "If-Modified-Since": lm})
        self.assertEqual(st, 200)
        self.assertEqual(fs.feed_stats("/f.csv"), {200: 2, 304: 3})

        fs.set_feed("/f.csv", b"a,b\n3,4\n")   # same second: Last-Modified still moves on
        st, h, body = get(fs, "/f.csv", {"If-None-Match": etag})
        self.assertEqual((st, body), (200, b"a,b\n3,4\n"))
        self.assertNotEqual(h["ETag"], etag)
        st, h2, _ = get(fs, "/f.csv", {"If-Modified-Since": lm})
        self.assertEqual(st, 200)
        self.assertNotEqual(h2["Last-Modified"], lm)
        st, _, _ = get(fs, "/f.csv", {"If-Modified-Since": h2["Last-Modified"]})
        self.assertEqual(st, 304)
        self.assertEqual(fs.feed_stats("/f.csv"), {200: 4, 304: 4})

        reqs = fs.requests("/f.csv")
        self.assertEqual(len(reqs), 8)
        self.assertEqual(reqs[1].header("if-none-match"), etag)
        self.assertEqual([r.status for r in reqs], [200, 304, 304, 304, 200, 200, 200, 304])

    def test_unknown_path_is_404(self):
        st, _, body = get(self.fs, "/nothing")
        self.assertEqual(st, 404)
        self.assertEqual(json.loads(body)["error"], "not_found")

    def test_keep_alive_and_stop_start(self):
        fs = self.fs
        fs.add_feed("/k", b"x")
        c = http.client.HTTPConnection("127.0.0.1", fs.port, timeout=10 * TIME_SCALE)
        for _ in range(3):
            c.request("GET", "/k")
            r = c.getresponse()
            self.assertEqual(r.read(), b"x")
        url = fs.url
        fs.stop()
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            c.request("GET", "/k")
            c.getresponse().read()
        c.close()
        with self.assertRaises(OSError):
            get(fs, "/k", timeout=2)
        fs.start()
        self.assertEqual(fs.url, url)
        self.assertEqual(get(fs, "/k")[0], 200)


def records(n, start=1):
    return [{"id": i, "name": "ticket %d" % i} for i in range(start, start + n)]


class CollectionTests(unittest.TestCase):
    def setUp(self):
        self.fs = FakeSources().start()
        self.addCleanup(self.fs.stop)

    def pull(self, path, params, rec_ptr="/data", next_ptr="/next", cursor_param="cursor",
             start_cursor=None, token="secret-token", max_pages=50):
        """Follow next links; return (records, number of pages, last cursor)."""
        out, pages, cursor = [], 0, start_cursor
        while True:
            q = dict(params)
            if cursor is not None:
                q[cursor_param] = cursor
            st, _, body = get(self.fs, path + "?" + urlencode(q),
                              {"Authorization": "Bearer " + token})
            self.assertEqual(st, 200, body)
            doc = json.loads(body)
            page, nxt = pointer_get(doc, rec_ptr), pointer_get(doc, next_ptr)
            out.extend(page)
            pages += 1
            self.assertLess(pages, max_pages)
            if nxt is None:
                return out, pages, cursor
            cursor = str(nxt)

    def test_auth(self):
        self.fs.add_collection("/api/t", records(3))
        st, h, body = get(self.fs, "/api/t")
        self.assertEqual(st, 401)
        self.assertEqual(json.loads(body)["error"], "unauthorized")
        st, _, _ = get(self.fs, "/api/t", {"Authorization": "Bearer wrong"})
        self.assertEqual(st, 401)
        st, _, _ = get(self.fs, "/api/t", {"Authorization": "Bearer secret-token"})
        self.assertEqual(st, 200)

    def test_token_paging_250_by_100(self):
        fs = self.fs
        fs.add_collection("/api/tickets", records(250), mode="token")
        got, pages, _ = self.pull("/api/tickets", {"limit": 100})
        self.assertEqual(pages, 3)
        self.assertEqual([r["id"] for r in got], list(range(1, 251)))
        reqs = fs.requests("/api/tickets")
        self.assertEqual([len(r.query) for r in reqs], [1, 2, 2])
        self.assertEqual([decode_token(r.query["cursor"]) for r in reqs[1:]], [100, 200])
        # a bad cursor or limit is 400; limit is capped at 1000, default 100
        auth = {"Authorization": "Bearer secret-token"}
        self.assertEqual(get(fs, "/api/tickets?cursor=zzz", auth)[0], 400)
        self.assertEqual(get(fs, "/api/tickets?limit=0", auth)[0], 400)
        self.assertEqual(get(fs, "/api/tickets?limit=x", auth)[0], 400)
        self.assertEqual(len(json.loads(get(fs, "/api/tickets", auth)[2])["data"]), 100)
        fs.add_collection("/api/big", records(1500))
        self.assertEqual(len(json.loads(get(fs, "/api/big?limit=5000", auth)[2])["data"]), 1000)

    def test_token_paging_custom_shape_and_append(self):
        fs = self.fs
        fs.add_collection("/v2/items", records(250), mode="token", page_param="page_size",
                          cursor_param="page_token", records_pointer="/result/items",
                          next_pointer="/paging/next_cursor", token="tok2", final_next=True)
        st, _, body = get(fs, "/v2/items?page_size=100", {"Authorization": "Bearer tok2"})
        doc = json.loads(body)
        self.assertEqual(sorted(doc), ["paging", "result"])
        self.assertEqual(len(doc["result"]["items"]), 100)
        # final_next: the last page still has a cursor; after it, pages are empty until append
        seen, cursor = [], None
        for _ in range(3):
            q = "/v2/items?page_size=100" + ("&page_token=" + cursor if cursor else "")
            doc = json.loads(get(fs, q, {"Authorization": "Bearer tok2"})[2])
            seen += doc["result"]["items"]
            cursor = doc["paging"]["next_cursor"]
        self.assertEqual([r["id"] for r in seen], list(range(1, 251)))
        self.assertIsNotNone(cursor)
        doc = json.loads(get(fs, "/v2/items?page_token=" + cursor,
                             {"Authorization": "Bearer tok2"})[2])
        self.assertEqual(doc["result"]["items"], [])
        fs.append("/v2/items", records(7, start=251))
        doc = json.loads(get(fs, "/v2/items?page_token=" + cursor,
                             {"Authorization": "Bearer tok2"})[2])
        self.assertEqual([r["id"] for r in doc["result"]["items"]], list(range(251, 258)))

    def test_after_id_paging_250_by_100_then_incremental(self):
        fs = self.fs
        recs = records(250)
        recs.reverse()   # the server sorts
        fs.add_collection("/api/orders", recs, mode="after_id", cursor_param="after")
        got, pages, last = self.pull("/api/orders", {"limit": 100}, cursor_param="after")
        self.assertEqual(pages, 3)
        self.assertEqual([r["id"] for r in got], list(range(1, 251)))
        self.assertEqual([r.query.get("after") for r in fs.requests("/api/orders")],
                         [None, "100", "200"])
        # incremental: resume after the highest id seen
        fs.append("/api/orders", records(100, start=251))
        got2, pages2, _ = self.pull("/api/orders", {"limit": 100}, cursor_param="after",
                                    start_cursor="250")
        self.assertEqual([r["id"] for r in got2], list(range(251, 351)))
        self.assertEqual(pages2, 2)  # a full page gives a next cursor, then an empty page

    def test_after_id_comparison(self):
        self.assertTrue(id_greater("10", 9))
        self.assertTrue(id_greater(10, "9"))
        self.assertFalse(id_greater("9", "10"))
        self.assertTrue(id_greater("b", "a"))
        self.assertTrue(id_greater("T-9", "T-10"))   # strings compare as strings
        fs = self.fs
        fs.add_collection("/api/s", [{"key": "T-%03d" % i} for i in range(250, 0, -1)],
                          mode="after_id", id_field="key", token=None)
        got, pages, _ = self.pull("/api/s", {"limit": 100})
        self.assertEqual([r["key"] for r in got], ["T-%03d" % i for i in range(1, 251)])
        self.assertEqual(pages, 3)


class FaultTests(unittest.TestCase):
    def setUp(self):
        self.fs = FakeSources().start()
        self.addCleanup(self.fs.stop)
        self.fs.add_feed("/feed", b"0123456789" * 100, "text/plain")

    def test_status_faults_then_normal(self):
        fs = self.fs
        fs.inject("/feed", [("status", 429, {"Retry-After": "1"}),
                            ("status", 503, {"Retry-After": "2"}),
                            ("status", 500, {})])
        st, h, body = get(fs, "/feed")
        self.assertEqual((st, h["Retry-After"]), (429, "1"))
        st, h, _ = get(fs, "/feed")
        self.assertEqual((st, h["Retry-After"]), (503, "2"))
        st, h, _ = get(fs, "/feed")
        self.assertEqual(st, 500)
        self.assertIsNone(h.get("Retry-After"))
        st, _, body = get(fs, "/feed")
        self.assertEqual((st, len(body)), (200, 1000))
        reqs = fs.requests("/feed")
        self.assertEqual([r.status for r in reqs], [429, 503, 500, 200])
        self.assertEqual([r.fault[0] if r.fault else None for r in reqs],
                         ["status"] * 3 + [None])
        self.assertTrue(all(b.t >= a.t for a, b in zip(reqs, reqs[1:])))
        self.assertEqual(fs.feed_stats("/feed"), {200: 1, 304: 0})

    def test_faults_on_a_collection_and_unknown_path(self):
        fs = self.fs
        fs.add_collection("/api/c", records(5))
        fs.inject("/api/c", [("status", 429, {"Retry-After": "1"})])
        fs.inject("/ghost", [("status", 503, {})])
        auth = {"Authorization": "Bearer secret-token"}
        self.assertEqual(get(fs, "/api/c", auth)[0], 429)
        self.assertEqual(get(fs, "/api/c", auth)[0], 200)
        self.assertEqual(get(fs, "/ghost")[0], 503)
        self.assertEqual(get(fs, "/ghost")[0], 404)

    def test_sleep(self):
        fs = self.fs
        fs.inject("/feed", [("sleep", 1.5 * TIME_SCALE), ("sleep", 0.3 * TIME_SCALE)])
        t0 = time.monotonic()
        with self.assertRaises(socket.timeout):
            get(fs, "/feed", timeout=0.3 * TIME_SCALE)
        self.assertLess(time.monotonic() - t0, 1.4 * TIME_SCALE)
        t0 = time.monotonic()
        st, _, body = get(fs, "/feed")
        self.assertEqual((st, len(body)), (200, 1000))
        self.assertGreaterEqual(time.monotonic() - t0, 0.3 * TIME_SCALE)
        self.assertEqual(fs.requests("/feed")[1].fault, ("sleep", 0.3 * TIME_SCALE))

    def test_truncate(self):
        fs = self.fs
        fs.inject("/feed", [("truncate",)])
        c = http.client.HTTPConnection("127.0.0.1", fs.port, timeout=10 * TIME_SCALE)
        c.request("GET", "/feed")
        r = c.getresponse()
        self.assertEqual((r.status, r.getheader("Content-Length")), (200, "1000"))
        with self.assertRaises(http.client.IncompleteRead) as cm:
            r.read()
        self.assertEqual(len(cm.exception.partial), 500)
        c.close()
        self.assertEqual(get(fs, "/feed")[0], 200)
        self.assertEqual([r.status for r in fs.wait_requests(2, "/feed")], ["truncate", 200])

    def test_close_and_reset(self):
        fs = self.fs
        fs.inject("/feed", [("close",), ("reset",)])
        with self.assertRaises(http.client.RemoteDisconnected):
            get(fs, "/feed")
        with self.assertRaises((ConnectionResetError, http.client.RemoteDisconnected)):
            get(fs, "/feed")
        self.assertEqual(get(fs, "/feed")[0], 200)
        self.assertEqual([r.status for r in fs.wait_requests(3, "/feed")],
                         ["close", "reset", 200])

    def test_curl_sees_each_fault(self):
        if CURL is None:
            self.skipTest("curl is not installed")
        fs = self.fs
        fs.inject("/feed", [("status", 503, {"Retry-After": "2"}), ("sleep", 3 * TIME_SCALE),
                            ("truncate",), ("close",)])

        def curl(*extra):
            return subprocess.run([CURL, "-sS", "-o", os.devnull, "-w", "%{http_code}"]
                                  + list(extra) + [fs.url + "/feed"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, timeout=30 * TIME_SCALE)
        self.assertEqual(curl().stdout, "503")
        self.assertEqual(curl("--max-time", "1").returncode, 28)   # CURLE_OPERATION_TIMEDOUT
        self.assertEqual(curl().returncode, 18)                    # CURLE_PARTIAL_FILE
        self.assertEqual(curl().returncode, 52)                    # CURLE_GOT_NOTHING
        self.assertEqual(curl().stdout, "200")

    def test_request_times_show_backoff(self):
        fs = self.fs
        fs.inject("/feed", [("status", 429, {"Retry-After": "1"})] * 2)
        for pause in (0.0, 0.2, 0.4):
            time.sleep(pause)
            get(fs, "/feed")
        ts = [r.t for r in fs.requests("/feed")]
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        self.assertGreaterEqual(gaps[0], 0.2)
        self.assertGreater(gaps[1], gaps[0])

    def test_bad_fault_is_refused(self):
        with self.assertRaises(ValueError):
            self.fs.inject("/feed", [("explode",)])


if __name__ == "__main__":
    _, argv = harness._strip_bin(sys.argv)   # --bin is accepted and ignored: no stagedoor here
    unittest.main(argv=argv, verbosity=2)
