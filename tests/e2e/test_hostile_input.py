"""Hostile input on every route: invalid UTF-8 (%FF, a lone %C3, the overlong %C0%AF), NUL (%00,
raw NUL bytes), over-long values and malformed JSON bodies never take the hub down.

The route list is generated from the route table (src/api/routes.c, parsed here: macros such
as CONNECTORS and TENANT_WRITE are resolved), so a new route is covered without touching this
file. Each hostile value goes into every path parameter and into the query parameters limit,
cursor, email, source, customer_id, erase and a made-up one, with a valid tenant key and the
admin token as the route needs (and a JSON body where the route takes one, so the handler runs).
Every answer must be a 4xx with a JSON body, and GET /healthz must answer after each.

Over-long values: up to libmicrohttpd's connection memory (32 KiB for the request head) a value
reaches the router and the handlers like any other. Past it (here 100 KB) libmicrohttpd answers
414 (request line) or 431 (headers) itself, with its own short non-JSON body, and closes the
connection; such an answer is accepted as long as it is a 4xx, and a connection reset before the
answer could be read is accepted only for these over-limit requests.

It also covers the request-head checks: Content-Length twice, or with Transfer-Encoding, is a
400 that closes the connection; a NUL byte in a header value is a 400, not a silent cut."""

import json
import os
import re
import socket
import threading
import http.client as httpclient

import harness

ROUTES_C = os.path.join(harness.REPO, "src", "api", "routes.c")
TENANT = "hostile"

# Values put in a parameter, already percent-encoded as they go on the wire.
HOSTILE = [
    ("ff", "%FF"),
    ("lone-lead", "%C3"),
    ("overlong-slash", "%C0%AF"),
    ("surrogate", "%ED%A0%80"),
    ("nul", "%00"),
    ("nul-inside", "EVT-1%00junk"),
    ("long-16k", "A" * 16 * 1024),          # within libmicrohttpd's memory: reaches handlers
    ("long-16k-ff", "A" * 16 * 1024 + "%FF"),
]
OVER_LIMIT = [("long-100k", "B" * 100 * 1000)]  # past the 32 KiB head: libmicrohttpd's 414/431
QUERY_NAMES = ["limit", "cursor", "email", "source", "customer_id", "erase", "zz_made_up"]
# Valid-looking stand-ins for path parameters that are not under attack.
PLACEHOLDER = "x-1"

# A malformed JSON body: an invalid \u escape followed by non-ASCII bytes; jansson's error text
# quotes the bytes (cut inside the multi-byte character), which aborted the hub before.
MALFORMED_BODIES = [
    b'{"a":"\\u\xc3\xa9\xff"}',
    b'{"a":"\\q\xff\xfe"}',
    b'{"\xff":1}',
    b'["\\\xc3"]',
    b'{"a":"\\u00\xe2\x82"}',
]


# ---------------------------------------------------------------------------------------------
# the route table, read from its source


def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _c_strings(expr, defines):
    """Concatenate a C expression of string literals and string macros: CONNECTORS "/{id}"."""
    out = ""
    for tok in re.findall(r'"((?:[^"\\]|\\.)*)"|([A-Za-z_]\w*)', expr):
        lit, ident = tok
        if ident:
            if ident not in defines:
                raise AssertionError("routes.c: unknown macro %s in %r" % (ident, expr))
            out += _c_strings(defines[ident], defines)
        else:
            out += lit
    return out


def _flags(expr, defines, depth=0):
    names = set()
    for ident in re.findall(r"[A-Za-z_]\w*", expr):
        if ident.startswith("SD_ROUTE_"):
            names.add(ident[len("SD_ROUTE_"):])
        elif ident in defines and depth < 8:
            names |= _flags(defines[ident], defines, depth + 1)
        else:
            raise AssertionError("routes.c: unknown flag %s" % ident)
    return names


def load_routes():
    """[(method, pattern, name, flags)] in table order, from src/api/routes.c."""
    with open(ROUTES_C, encoding="utf-8") as f:
        text = _strip_comments(f.read())
    defines = dict(re.findall(r"^\s*#define\s+(\w+)\s+(.+?)\s*$", text, flags=re.M))
    table = re.search(r"sd_routes\[\]\s*=\s*\{(.*?)\n\};", text, flags=re.S)
    assert table, "routes.c: no sd_routes[] table"
    body = table.group(1)
    entry = re.compile(r'\{\s*"([A-Z]+)"\s*,\s*([^,]+?)\s*,\s*"(\w+)"\s*,\s*([^,]+?)\s*,'
                       r'\s*(\w+)\s*\}', re.S)
    routes = [(m.group(1), _c_strings(m.group(2), defines), m.group(3),
               _flags(m.group(4), defines)) for m in entry.finditer(body)]
    # Self-check: every entry of the table was understood (none skipped by the pattern), and
    # the metrics names agree.
    opened = len(re.findall(r'\{\s*"[A-Z]+"', body))
    assert len(routes) == opened, "parsed %d of %d routes" % (len(routes), opened)
    names = re.search(r"sd_route_names\[\]\s*=\s*\{(.*?)\};", text, flags=re.S)
    assert names, "routes.c: no sd_route_names[]"
    assert re.findall(r'"(\w+)"', names.group(1)) == [r[2] for r in routes]
    return routes


def params_of(pattern):
    return re.findall(r"\{(\w+)\}", pattern)


def fill(pattern, attack=None, value=None):
    """The pattern with {client_id} = the test tenant, other parameters a harmless stand-in, and
    parameter number `attack` (if given) = value (already percent-encoded)."""
    names = params_of(pattern)
    vals = [TENANT if n == "client_id" else PLACEHOLDER for n in names]
    if attack is not None:
        vals[attack] = value
    it = iter(vals)
    return re.sub(r"\{\w+\}", lambda m: next(it), pattern)


# ---------------------------------------------------------------------------------------------
# raw requests (http.client refuses some of these targets, and over-limit requests may be
# answered and closed before they are fully sent)


class Answer:
    def __init__(self, status, headers, body, dropped=None):
        self.status, self.headers, self.body, self.dropped = status, headers, body, dropped

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def __repr__(self):
        if self.dropped:
            return "<dropped: %s>" % self.dropped
        return "<%s %r>" % (self.status, self.body[:300])


def raw_request(port, head, body=b""):
    sock = socket.create_connection(("127.0.0.1", port), timeout=harness.HTTP_TIMEOUT)
    data = head + body

    def writer():
        try:
            sock.sendall(data)
        except OSError:
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        r = httpclient.HTTPResponse(sock, method=head.split(b" ", 1)[0].decode())
        r.begin()
        raw = r.read()
        return Answer(r.status, r.msg, raw)
    except (httpclient.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
            httpclient.IncompleteRead, socket.timeout) as e:
        return Answer(None, None, b"", dropped=repr(e))
    finally:
        sock.close()
        t.join(10)


def build_head(method, target, headers):
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target), b"Host: 127.0.0.1",
             b"Connection: close"]
    for k, v in headers.items():
        lines.append(k.encode() + b": " + v)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class HostileInputTests(harness.ServerCase):
    TENANTS = {TENANT: ["test"]}

    @classmethod
    def prepare(cls):
        # thousands of requests: the tenant's buckets must not turn them into 429s
        harness.tenant_limits(cls.data, TENANT, 1000000, 1000000)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.admin = f.read().strip()
        cls.key = cls.keys[(TENANT, "test")]
        cls.routes = load_routes()

    # -- helpers

    def auth_for(self, flags):
        if "ADMIN" in flags:
            return b"Bearer " + self.admin.encode()
        if "TENANT" in flags:
            return b"Bearer " + self.key.encode()
        return None

    def send(self, method, target, flags, body=None, extra=None):
        headers = {}
        auth = self.auth_for(flags)
        if auth:
            headers["Authorization"] = auth
        if body is None and "JSON_BODY" in flags:
            body = b"{}"
        if body is not None:
            headers["Content-Type"] = b"application/json"
            headers["Content-Length"] = str(len(body)).encode()
        headers.update(extra or {})
        if isinstance(target, str):
            target = target.encode("latin-1")
        return raw_request(self.port, build_head(method, target, headers), body or b"")

    def assert_alive(self, what):
        r = harness.http(self.port, "GET", "/healthz")
        self.assertIn(r.status, (200, 503), "after %s: /healthz answered %r" % (what, r))
        self.assertTrue(self.server.running(), "the server exited after %s:\n%s"
                        % (what, self.server.diagnostics()))

    def assert_4xx_json(self, a, what, over_limit=False):
        if over_limit and a.dropped:
            return  # past libmicrohttpd's memory: a reset before the answer is accepted
        self.assertIsNone(a.dropped, "%s: connection dropped without an answer" % what)
        self.assertTrue(400 <= a.status < 500, "%s: want a 4xx, got %r" % (what, a))
        if over_limit and a.status in (414, 431):
            return  # libmicrohttpd's own answer, not JSON
        j = a.json()
        self.assertIsInstance(j, dict, "%s: the body is not a JSON object: %r" % (what, a))
        self.assertIsInstance(j.get("error"), str, "%s: no error code: %r" % (what, a))

    # -- the tests

    def test_route_table_is_read(self):
        names = [r[2] for r in self.routes]
        # the table has every kind of route the sweep relies on
        self.assertIn("event_get", names)
        self.assertIn("connector_get", names)
        kinds = set()
        for _, pattern, _, flags in self.routes:
            kinds |= flags
            self.assertTrue(pattern.startswith("/"), pattern)
            self.assertNotIn('"', pattern)
        self.assertTrue({"TENANT", "ADMIN", "JSON_BODY"} <= kinds, kinds)
        conn = [r for r in self.routes if r[2] == "connector_get"][0]
        self.assertEqual(conn[1], "/admin/v1/tenants/{client_id}/connectors/{connector_id}")

    def test_every_path_parameter(self):
        checked = 0
        for method, pattern, name, flags in self.routes:
            for i in range(len(params_of(pattern))):
                for label, value in HOSTILE + OVER_LIMIT:
                    target = fill(pattern, i, value)
                    what = "%s %s (param %d = %s)" % (method, pattern, i, label)
                    with self.subTest(route=name, param=i, value=label):
                        a = self.send(method, target, flags)
                        self.assert_4xx_json(a, what, over_limit=(label, value) in OVER_LIMIT)
                        self.assert_alive(what)
                        checked += 1
        self.assertGreater(checked, 0)

    def test_every_query_parameter(self):
        for method, pattern, name, flags in self.routes:
            base = fill(pattern)
            for q in QUERY_NAMES:
                for label, value in HOSTILE + OVER_LIMIT:
                    if label.startswith("long-16k") and not label.endswith("ff"):
                        continue  # a long valid value is a valid value for most routes
                    target = "%s?%s=%s" % (base, q, value)
                    what = "%s %s?%s=<%s>" % (method, pattern, q, label)
                    with self.subTest(route=name, query=q, value=label):
                        a = self.send(method, target, flags)
                        self.assert_4xx_json(a, what, over_limit=(label, value) in OVER_LIMIT)
                        self.assert_alive(what)

    def test_long_valid_query_values_never_5xx(self):
        # 16 KiB of plain ASCII in each query parameter: whatever the route makes of it, never a
        # 5xx and always a JSON answer
        for method, pattern, name, flags in self.routes:
            base = fill(pattern)
            for q in QUERY_NAMES:
                what = "%s %s?%s=<16 KiB>" % (method, pattern, q)
                with self.subTest(route=name, query=q):
                    a = self.send(method, "%s?%s=%s" % (base, q, "C" * 16 * 1024), flags)
                    self.assertIsNone(a.dropped, what)
                    self.assertLess(a.status, 500, "%s: %r" % (what, a))
                    if name not in ("metrics", "openapi", "ui"):  # text: Prometheus, YAML, HTML
                        self.assertIsInstance(a.json(), (dict, list), "%s: %r" % (what, a))
                    self.assert_alive(what)

    def test_malformed_json_on_every_body_route(self):
        body_routes = [r for r in self.routes if "JSON_BODY" in r[3]]
        self.assertGreater(len(body_routes), 0)
        for method, pattern, name, flags in body_routes:
            target = fill(pattern)
            for body in MALFORMED_BODIES:
                what = "%s %s with body %r" % (method, pattern, body)
                with self.subTest(route=name, body=body):
                    a = self.send(method, target, flags, body=body)
                    self.assert_4xx_json(a, what)
                    self.assert_alive(what)
        # where the body reaches the parser, the error says so
        a = self.send("POST", "/v1/%s/ingest" % TENANT, {"TENANT", "JSON_BODY"},
                      body=MALFORMED_BODIES[0])
        self.assertEqual(a.status, 400, a)
        self.assertEqual(a.json()["error"], "malformed_json", a)

    def test_nul_is_refused_not_cut(self):
        # the record exists: a cut id would find it
        api = self.api(TENANT)
        ev = harness.event("EVT-NUL-1")
        r = api.ingest({"events": [ev]})
        self.assertEqual(r.status, 202, r)
        flags = {"TENANT"}
        ok = self.send("GET", "/v1/%s/events/EVT-NUL-1" % TENANT, flags)
        self.assertEqual(ok.status, 200, ok)
        for target in (b"/v1/%s/events/EVT-NUL-1%%00junk" % TENANT.encode(),
                       b"/v1/%s/events/EVT-NUL-1\x00junk" % TENANT.encode(),
                       b"/v1/%s/events?limit=1%%00junk" % TENANT.encode(),
                       b"/v1/%s/events?limit=1\x00junk" % TENANT.encode()):
            with self.subTest(target=target):
                a = self.send("GET", target, flags)
                self.assertEqual(a.status, 400, "%r: %r" % (target, a))
                self.assertIn("NUL", a.json()["message"], a)
                self.assert_alive(repr(target))
        # a NUL byte in a header value: the key before it must not authenticate
        for hdr in (b"Bearer " + self.key.encode() + b"\x00junk",
                    b"Bearer " + self.key.encode() + b"\x00 "):
            with self.subTest(header=hdr[-6:]):
                a = self.send("GET", "/v1/%s/events/EVT-NUL-1" % TENANT, set(),
                              extra={"Authorization": hdr})
                self.assertEqual(a.status, 400, a)
                self.assertEqual(a.json()["error"], "invalid_header", a)
                self.assert_alive("NUL in Authorization")
        a = self.send("GET", "/v1/%s/events/EVT-NUL-1" % TENANT, flags,
                      extra={"X-Other": b"a\x00b"})
        self.assertEqual(a.status, 400, a)
        # blanks around values, bare LF line ends and a folded header stay fine
        head = (b"GET /v1/" + TENANT.encode() + b"/events/EVT-NUL-1 HTTP/1.1\nHost: x\n"
                b"X-Spaced:    v   \nX-Fold: a\n  b\nAuthorization: Bearer " + self.key.encode()
                + b"\nConnection: close\n\n")
        a = raw_request(self.port, head)
        self.assertEqual(a.status, 200, a)

    def test_many_query_parameters(self):
        # a few hundred parameters used to fill libmicrohttpd's connection memory so that the
        # connection was closed without any answer; now a 400 past 64, whatever the count
        for n in (65, 500, 5000):
            with self.subTest(n=n):
                q = "&".join(["a=1"] * n)
                a = self.send("GET", "/v1/%s/events?%s" % (TENANT, q), {"TENANT"})
                self.assert_4xx_json(a, "%d query parameters" % n)
                self.assertEqual(a.status, 400)
                self.assertIn("query parameters", a.json()["message"])
                self.assert_alive("%d query parameters" % n)
        a = self.send("GET", "/v1/%s/events?%s" % (TENANT, "&".join(["limit=1"] * 64)), {"TENANT"})
        self.assertEqual(a.status, 200, "64 parameters are still fine")

    def test_oversized_header(self):
        # past the connection's memory after the request line: libmicrohttpd's own 431 (the
        # request context made for the request line is freed, which the ASan build checks)
        for size in (40 * 1024, 100 * 1000):
            with self.subTest(size=size):
                a = self.send("GET", "/v1/%s/events" % TENANT, {"TENANT"},
                              extra={"X-Big": b"h" * size})
                self.assert_4xx_json(a, "a %d-byte header" % size, over_limit=True)
                self.assert_alive("a %d-byte header" % size)

    def test_invalid_utf8_is_a_precise_400(self):
        flags = {"TENANT"}
        a = self.send("GET", "/v1/%s/events/%%FF" % TENANT, flags)
        self.assertEqual((a.status, a.json()["error"]), (400, "invalid_path"), a)
        a = self.send("GET", "/v1/%s/events?%%C3=1" % TENANT, flags)
        self.assertEqual((a.status, a.json()["error"]), (400, "invalid_parameter"), a)
        # the parameter's name is quoted, repaired to valid UTF-8
        self.assertIn("\ufffd", a.json()["message"], a)
        a = self.send("GET", "/v1/%s/events?email=%%C0%%AF" % TENANT, flags)
        self.assertEqual(a.status, 400, a)
        self.assertIn("'email'", a.json()["message"], a)

    def test_shortened_quotes_keep_whole_characters(self):
        # A member name of 'x' + 60 'é' (121 bytes): quoted in at most 100 bytes (push) or in a
        # 160-byte JSON Pointer (target settings, 'x' + 100 'é'), both cut inside an 'é' when cut
        # by bytes; the issue was then dropped from errors[].
        def errors_of(a):
            self.assertEqual(a.status, 400, a)
            errs = a.json().get("errors")
            self.assertIsInstance(errs, list, a)
            self.assertTrue(errs, "errors[] is empty: %r" % a)
            return errs

        name = "x" + "\u00e9" * 60
        body = json.dumps({name: 1, "target_id": "tgt_x"}, ensure_ascii=False).encode()
        a = self.send("POST", "/v1/%s/segments/%s/push" % (TENANT, PLACEHOLDER),
                      {"TENANT", "JSON_BODY"}, body=body)
        msgs = [e["message"] for e in errors_of(a)]
        quoted = [m for m in msgs if "unknown member" in m]
        self.assertTrue(quoted, msgs)
        q = quoted[0].split("'")[1]
        self.assertTrue(name.startswith(q) and 90 <= len(q.encode()) <= 100, q)

        name = "x" + "\u00e9" * 100
        body = json.dumps({"type": "generic_json", name: 1}, ensure_ascii=False).encode()
        a = self.send("POST", "/admin/v1/tenants/%s/targets" % TENANT, {"ADMIN", "JSON_BODY"},
                      body=body)
        ptrs = [e["pointer"] for e in errors_of(a)]
        cut = [p for p in ptrs if p.startswith("/x\u00e9")]
        self.assertTrue(cut, ptrs)
        self.assertTrue(("/" + name).startswith(cut[0]), cut[0])
        self.assertNotIn("\ufffd", cut[0])

    def test_framing(self):
        post = "POST /v1/%s/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" \
               "Content-Type: application/json\r\n" % (TENANT, self.key)
        body = json.dumps({"events": [harness.event()]}).encode()
        cases = [
            ("two Content-Length", "Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
             % (len(body), len(body) + 5), body),
            ("two equal Content-Length", "Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
             % (len(body), len(body)), body),
            ("Content-Length with chunked", "Content-Length: %d\r\nTransfer-Encoding: chunked"
             "\r\n\r\n" % len(body), b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)),
            ("chunked with Content-Length", "Transfer-Encoding: chunked\r\nContent-Length: %d"
             "\r\n\r\n" % len(body), b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)),
        ]
        for label, rest, payload in cases:
            with self.subTest(case=label):
                sock = socket.create_connection(("127.0.0.1", self.port),
                                                timeout=harness.HTTP_TIMEOUT)
                try:
                    sock.sendall((post + rest).encode() + payload)
                    r = httpclient.HTTPResponse(sock, method="POST")
                    r.begin()
                    raw = r.read()
                    self.assertEqual(r.status, 400, raw)
                    self.assertEqual(json.loads(raw)["error"], "invalid_framing", raw)
                    self.assertEqual((r.getheader("Connection") or "").lower(), "close")
                    # the connection is closed: nothing of the body is read as a request
                    rest_bytes = b""
                    try:
                        while True:
                            chunk = sock.recv(4096)
                            if not chunk:
                                break
                            rest_bytes += chunk
                    except (ConnectionResetError, socket.timeout):
                        pass
                    self.assertEqual(rest_bytes, b"")
                finally:
                    sock.close()
                self.assert_alive(label)
        # one Content-Length, or chunked alone, still work
        r = self.api(TENANT).ingest({"events": [harness.event()]})
        self.assertEqual(r.status, 202, r)


class HostileSourceTests(harness.ServerCase):
    """Text from a remote source reaches a connector's last_error whole, as valid UTF-8."""

    TENANTS = {"hsrc": ["test"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from fake_sources import FakeSources
        cls.fs = FakeSources().start()
        cls.addClassCleanup(cls.fs.stop)
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.admin = f.read().strip()

    def test_malformed_page_error_is_kept(self):
        # jansson's error text quotes the page's bytes, cut inside a character: last_error
        # came out empty
        for i, body in enumerate(MALFORMED_BODIES[:2]):
            path = "/bad-page-%d" % i
            self.fs.add_feed(path, body, content_type="application/json")
            settings = {"base_url": self.fs.url, "events_path": path, "timeout_seconds": 2,
                        "retry_initial_ms": 50, "max_attempts": 1}
            base = "/admin/v1/tenants/hsrc/connectors"
            r = harness.http(self.port, "POST", base, key=self.admin,
                             body={"type": "rest_pull", "environment": "test",
                                   "schedule": "manual", "settings": settings})
            self.assertEqual(r.status, 201, r)
            cid = r.json["connector_id"]
            r = harness.http(self.port, "POST", "%s/%s/run" % (base, cid), key=self.admin)
            self.assertEqual(r.status, 202, r)

            def failed():
                st = harness.http(self.port, "GET", "%s/%s" % (base, cid), key=self.admin)
                self.assertEqual(st.status, 200, st)
                s = st.json["status"]
                return s if s["state"] == "failed" else None
            st = harness.wait_until(failed, 30 * harness.TIME_SCALE, what="the run to fail")
            self.assertIsInstance(st["last_error"], str, st)
            self.assertIn("not valid JSON", st["last_error"], st)


if __name__ == "__main__":
    harness.main()
