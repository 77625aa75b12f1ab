"""TLS: --tls-cert/--tls-key, TLS 1.2 and 1.3 accepted, TLS 1.1 refused; non-loopback listen
needs TLS or --behind-proxy."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import unittest
import warnings

import harness
from harness import event


def make_cert(directory):
    if not shutil.which("openssl"):
        raise unittest.SkipTest("openssl CLI not available")
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    cp = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if cp.returncode != 0:
        raise AssertionError("openssl failed: %s" % cp.stderr)
    return cert, key


def client_ctx(cert, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert)
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def legacy_ctx(version):
    """A client context that offers only `version`, even an outdated one."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def handshake(port, ctx, timeout=10):
    """Return the negotiated version, or raise on a failed handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.version()


def local_client_can_offer_tls11(cert, key):
    """Handshake TLS 1.1 against a local Python server: proves the local OpenSSL still can."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return _tls11_probe(cert, key)
    except (ssl.SSLError, ValueError, OSError):
        return False


def _tls11_probe(cert, key):
    try:
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert, key)
        sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        sctx.minimum_version = ssl.TLSVersion.TLSv1_1
        sctx.maximum_version = ssl.TLSVersion.TLSv1_1
        cctx = legacy_ctx(ssl.TLSVersion.TLSv1_1)
    except (ssl.SSLError, ValueError):
        return False
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]

    def serve():
        try:
            conn, _ = lsock.accept()
            with sctx.wrap_socket(conn, server_side=True) as t:
                t.recv(1)
        except (OSError, ssl.SSLError):
            pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        return handshake(port, cctx) == "TLSv1.1"
    except (OSError, ssl.SSLError):
        return False
    finally:
        th.join(10)
        lsock.close()


class TlsServerTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = harness.tempdir(cls)
        cls.cert, cls.key = make_cert(cls.data)
        harness.tenant_create(cls.data, "tls")
        cls.api_key = harness.key_create(cls.data, "tls", "test")
        cls.server = harness.Server(cls.data, args=["--tls-cert", cls.cert, "--tls-key", cls.key])
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_ok()

    def test_prints_https(self):
        self.assertEqual(self.server.scheme, "https", self.server.stdout_lines)

    def check_version(self, version, name):
        ctx = client_ctx(self.cert, version)
        self.assertEqual(handshake(self.port, ctx), name)
        r = harness.http(self.port, "GET", "/healthz", tls_ctx=ctx)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("X-Request-Id"))
        api = harness.Api(self.port, "tls", self.api_key, tls_ctx=ctx)
        e = event()
        r = api.ingest({"events": [e]})
        self.assertEqual(r.status, 202, r)
        r = api.get("events", e["event_id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["event_id"], e["event_id"])

    def test_tls12(self):
        self.check_version(ssl.TLSVersion.TLSv1_2, "TLSv1.2")

    def test_tls13(self):
        self.check_version(ssl.TLSVersion.TLSv1_3, "TLSv1.3")

    def test_large_bodies(self):
        ctx = client_ctx(self.cert, ssl.TLSVersion.TLSv1_3)
        head = {"Authorization": "Bearer " + self.api_key, "Content-Type": "application/json"}
        e = event()
        base = json.dumps({"events": [e]}).encode()
        body = base[:-1] + b" " * (8 * 1024 * 1024 - len(base)) + b"}"
        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/tls/ingest", head,
                                            harness.pieces_of(body), chunked=True, tls_ctx=ctx)
        self.assertEqual(r.status, 202, r)
        # One byte over: refused from the Content-Length alone, before any of the body is sent.
        body += b" "
        r, _, _ = harness.streaming_request(self.port, "POST", "/v1/tls/ingest",
                                            dict(head, **{"Content-Length": str(len(body))}),
                                            [], tls_ctx=ctx)
        self.assertEqual(r.status, 413, r)

    def test_tls11_refused(self):
        if not local_client_can_offer_tls11(self.cert, self.key):
            self.skipTest("the local OpenSSL cannot offer TLS 1.1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = legacy_ctx(ssl.TLSVersion.TLSv1_1)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            v = handshake(self.port, ctx)
            self.fail("TLS 1.1 handshake succeeded (%s)" % v)
        # the server is still fine afterwards
        ctx = client_ctx(self.cert, ssl.TLSVersion.TLSv1_2)
        self.assertEqual(harness.http(self.port, "GET", "/healthz", tls_ctx=ctx).status, 200)

    def test_plain_http_gets_no_data(self):
        # a plaintext request to the TLS port must not be served as HTTP 200
        try:
            r = harness.http(self.port, "GET", "/healthz", timeout=5)
            self.assertNotEqual(r.status, 200)
        except (OSError, harness._httpclient.HTTPException):
            pass


class ListenPolicyTests(unittest.TestCase):
    def setUp(self):
        self.data = harness.tempdir(self)

    def refused(self, args, want_rc=2):
        s = harness.Server(self.data, listen="0.0.0.0:0", args=args)
        self.addCleanup(s.kill)
        s.start(expect_ready=False)
        rc = s.wait_exit(20 * harness.TIME_SCALE)
        self.assertFalse(any("listening on" in l for l in s.stdout_lines), s.diagnostics())
        if want_rc is None:
            self.assertNotEqual(rc, 0, s.diagnostics())
        else:
            self.assertEqual(rc, want_rc, s.diagnostics())
        reason = "\n".join(s.stderr_tail).strip()
        self.assertTrue(reason, "no reason on stderr")
        return reason

    def test_non_loopback_without_tls_refused(self):
        self.refused([])

    def test_non_loopback_behind_proxy_starts(self):
        s = harness.Server(self.data, listen="0.0.0.0:0", args=["--behind-proxy"])
        self.addCleanup(s.kill)
        s.start()
        self.assertEqual(s.scheme, "http")
        r = harness.http(s.port, "GET", "/healthz")
        self.assertEqual(r.status, 200, r)
        s.stop_ok()

    def test_non_loopback_with_tls_starts(self):
        cert, key = make_cert(self.data)
        s = harness.Server(self.data, listen="0.0.0.0:0",
                           args=["--tls-cert", cert, "--tls-key", key])
        self.addCleanup(s.kill)
        s.start()
        self.assertEqual(s.scheme, "https")
        ctx = client_ctx(cert, ssl.TLSVersion.TLSv1_3)
        self.assertEqual(harness.http(s.port, "GET", "/healthz", tls_ctx=ctx).status, 200)
        s.stop_ok()

    def test_cert_without_key(self):
        cert, _ = make_cert(self.data)
        s = harness.Server(self.data, args=["--tls-cert", cert])
        self.addCleanup(s.kill)
        s.start(expect_ready=False)
        rc = s.wait_exit(20 * harness.TIME_SCALE)
        self.assertEqual(rc, 2, s.diagnostics())
        self.assertFalse(any("listening on" in l for l in s.stdout_lines))

    def test_missing_cert_file(self):
        s = harness.Server(self.data, args=["--tls-cert", os.path.join(self.data, "nope.pem"),
                                            "--tls-key", os.path.join(self.data, "nope.key")])
        self.addCleanup(s.kill)
        s.start(expect_ready=False)
        rc = s.wait_exit(20 * harness.TIME_SCALE)
        self.assertNotEqual(rc, 0, s.diagnostics())
        self.assertFalse(any("listening on" in l for l in s.stdout_lines))


if __name__ == "__main__":
    harness.main()
