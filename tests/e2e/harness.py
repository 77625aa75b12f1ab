"""harness.py — shared helpers for the stagedoor end-to-end tests (Python standard library only).

Every test file is run as `python3 tests/e2e/test_X.py --bin /path/to/stagedoor` and calls
harness.main(), which strips `--bin X` from argv before unittest.main.

What is here:
  - bin_path(): the binary under test
  - Server: `stagedoor serve` on a data dir with --listen 127.0.0.1:0, port parsed from the
    "listening on http(s)://HOST:PORT" line; stop() sends SIGTERM and returns the exit code;
    kill() is SIGKILL. Every Server is killed at exit if a test left it running.
  - cli(): run a CLI subcommand (with --data DIR), returning a CompletedProcess
  - http(): one HTTP(S) request returning Resp = (status, headers, json) with .body (bytes)
  - RawHTTP: a socket-level request for streaming bodies (half a body, chunked, early answers)
  - Api: a client bound to (port, client_id, key) with ingest/get/put helpers
  - record factories (event/customer/sale) with unique ids that never collide as performances

Backends: with SD_E2E_STORE=postgresql (ctest's e2e_pg.NAME runs of a test file marked "store
suite: both backends") every data dir a test uses gets a fresh PostgreSQL database on the cluster
at STAGEDOOR_TEST_PG (scripts/pg-cluster), and cli() and Server pass it as --store; the databases
are dropped at exit. Without STAGEDOOR_TEST_PG such a run exits 77 (skipped).

Timeouts: every wait has one; TIME_SCALE (env E2E_TIME_SCALE, default 1) stretches them, for
instance under a sanitizer build.
"""

import atexit
import collections
import http.client as _httpclient
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

_BIN = None
TIME_SCALE = float(os.environ.get("E2E_TIME_SCALE", "1") or "1")
START_TIMEOUT = 30.0 * TIME_SCALE
STOP_TIMEOUT = 30.0 * TIME_SCALE
HTTP_TIMEOUT = 30.0 * TIME_SCALE
CLI_TIMEOUT = 30.0 * TIME_SCALE
VERBOSE = bool(os.environ.get("E2E_VERBOSE"))

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# The egress policy of every hub and CLI the tests start (README "Egress policy"): the simulators
# listen on 127.0.0.1; the tests' folders are temporary ones, the sshd jails (sshd_server.py) and
# /srv in examples. A test of the policy itself changes os.environ before it starts its hub.
os.environ.setdefault("STAGEDOOR_EGRESS_ALLOW", "loopback,private")
os.environ.setdefault("STAGEDOOR_FILE_ROOTS", ":".join(
    [tempfile.gettempdir(), "/srv", os.environ.get("E2E_SSHD_BASE") or "/run/stagedoor-e2e"]))


# ---------------------------------------------------------------------------------------------
# the store backend (SQLite in the data dir unless SD_E2E_STORE=postgresql)

PG_MODE = os.environ.get("SD_E2E_STORE") == "postgresql"
_pg_lock = threading.Lock()
_pg_dbs = {}  # realpath(data_dir) -> (database name, URL)


def _psql(sql):
    subprocess.run(["psql", os.environ["STAGEDOOR_TEST_PG"], "-q", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                   timeout=60)


def store_url(data_dir):
    """The --store URL for data_dir: None on SQLite, else its own PostgreSQL database."""
    if not PG_MODE or data_dir is None:
        return None
    key = os.path.realpath(data_dir)
    with _pg_lock:
        if key not in _pg_dbs:
            name = "sd_e2e_%s_%d" % (uuid.uuid4().hex[:12], len(_pg_dbs))
            _psql("CREATE DATABASE %s" % name)
            admin = os.environ["STAGEDOOR_TEST_PG"]
            head, _, tail = admin.partition("://")
            host, _, _ = tail.partition("/")
            _pg_dbs[key] = (name, "%s://%s/%s" % (head, host, name))
        return _pg_dbs[key][1]


def _drop_databases():
    # Registered before _kill_all, so it runs after it (atexit is last in, first out).
    for name, _ in list(_pg_dbs.values()):
        try:
            _psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        except Exception as e:  # a failed drop must not hide the test's own result
            sys.stderr.write("could not drop %s: %s\n" % (name, e))


atexit.register(_drop_databases)


# ---------------------------------------------------------------------------------------------
# entry point and binary


def _strip_bin(argv):
    """Return (bin, argv without --bin X / --bin=X)."""
    out, b, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--bin":
            if i + 1 >= len(argv):
                sys.stderr.write("--bin needs a path\n")
                sys.exit(2)
            b = argv[i + 1]
            i += 2
            continue
        if a.startswith("--bin="):
            b = a[len("--bin="):]
            i += 1
            continue
        out.append(a)
        i += 1
    return b, out


def main():
    global _BIN
    b, argv = _strip_bin(sys.argv)
    if b is None:
        b = os.environ.get("STAGEDOOR_BIN") or os.path.join(REPO, "build", "e2e", "stagedoor")
    _BIN = os.path.abspath(b)
    if PG_MODE and not os.environ.get("STAGEDOOR_TEST_PG"):
        sys.stderr.write("skipped: STAGEDOOR_TEST_PG is not set (scripts/pg-cluster start DIR)\n")
        sys.exit(77)
    if not (os.path.isfile(_BIN) and os.access(_BIN, os.X_OK)):
        sys.stderr.write("stagedoor binary not found or not executable: %s\n" % _BIN)
        sys.exit(2)
    if not PROXY:
        unittest.main(argv=argv, verbosity=2)
    result = unittest.main(argv=argv, verbosity=2, exit=False).result
    bad = _proxy_verdict()
    sys.exit(0 if result.wasSuccessful() and bad == 0 else 1)


def bin_path():
    if _BIN is None:
        raise RuntimeError("harness.main() was not called (no --bin)")
    return _BIN


# ---------------------------------------------------------------------------------------------
# small utilities

_uid_lock = threading.Lock()
_uid_n = [0]
_RUN = uuid.uuid4().hex[:6]


def uid(prefix="X"):
    """A unique id made only of [A-Za-z0-9_-] (valid everywhere, URL-safe)."""
    with _uid_lock:
        _uid_n[0] += 1
        n = _uid_n[0]
    return "%s-%s-%d" % (prefix, _RUN, n)


def wait_until(fn, timeout, interval=0.02, what="condition"):
    """Poll fn() until it returns a truthy value; return it. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)


def tempdir(testcase_or_cls, prefix="sd-e2e-"):
    """A temporary directory removed at (class) cleanup."""
    d = tempfile.TemporaryDirectory(prefix=prefix)
    if isinstance(testcase_or_cls, type):
        testcase_or_cls.addClassCleanup(d.cleanup)
    else:
        testcase_or_cls.addCleanup(d.cleanup)
    return d.name


# ---------------------------------------------------------------------------------------------
# CLI


def cli(data_dir, *args, timeout=None, cwd=None, data=True):
    """Run `stagedoor ARGS... [--data DIR]`. Returns CompletedProcess (text)."""
    cmd = [bin_path()] + [str(a) for a in args]
    if data and data_dir is not None:
        cmd += ["--data", data_dir]
        if PG_MODE:
            cmd += ["--store", store_url(data_dir)]
    if cwd is None:
        cwd = data_dir if data_dir and os.path.isdir(data_dir) else tempfile.gettempdir()
    try:
        cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", cwd=cwd, timeout=timeout or CLI_TIMEOUT,
                            stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError("CLI timed out: %r" % (cmd,))
    if VERBOSE:
        sys.stderr.write("$ %s -> %d\n%s%s" % (" ".join(cmd), cp.returncode, cp.stdout,
                                               cp.stderr))
    return cp


def cli_many(data_dir, calls, workers=4, **kw):
    """Run independent CLI calls (lists of args) concurrently; results in call order."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda args: cli(data_dir, *args, **kw), calls))


def cli_ok(data_dir, *args, **kw):
    cp = cli(data_dir, *args, **kw)
    if cp.returncode != 0:
        raise AssertionError("CLI %r failed with %d\nstdout: %s\nstderr: %s"
                             % (args, cp.returncode, cp.stdout, cp.stderr))
    return cp


def tenant_create(data_dir, client_id, name=None):
    args = ["tenant", "create", client_id]
    if name is not None:
        args += ["--name", name]
    return cli_ok(data_dir, *args)


def key_create(data_dir, client_id, env="test"):
    """Create a key; return the key (alone on the last non-empty line of stdout)."""
    cp = cli_ok(data_dir, "key", "create", client_id, "--env", env)
    lines = [l.strip() for l in cp.stdout.splitlines() if l.strip()]
    if not lines:
        raise AssertionError("key create printed nothing on stdout")
    return lines[-1]


def key_list(data_dir, client_id):
    """Parse `key list`: rows of dicts {key_id, env, created, revoked, last_used, line}."""
    cp = cli_ok(data_dir, "key", "list", client_id)
    rows = []
    for line in cp.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[1] in ("test", "prod", "TEST", "PROD"):
            rows.append({"key_id": cols[0], "env": cols[1].lower(), "created": cols[2],
                         "revoked": cols[3], "last_used": cols[4] if len(cols) > 4 else "-",
                         "line": line})
    return rows


def tenant_limits(data_dir, client_id, per_minute, burst):
    return cli_ok(data_dir, "tenant", "limits", client_id, "--per-minute", str(per_minute),
                  "--burst", str(burst))


def key_revoke(data_dir, key_id):
    return cli_ok(data_dir, "key", "revoke", key_id)


def new_key_id(data_dir, client_id, before_ids):
    rows = key_list(data_dir, client_id)
    new = [r["key_id"] for r in rows if r["key_id"] not in before_ids]
    if len(new) != 1:
        raise AssertionError("expected exactly one new key in key list, got %r" % (rows,))
    return new[0]


# ---------------------------------------------------------------------------------------------
# validating proxy: SD_E2E_PROXY=prism (tests/tools/test_openapi_proxy.py)
#
# Each Server gets `prism proxy docs/openapi.yaml` (or $SD_E2E_PROXY_DOC) in front of it and the
# tests talk to prism (server.port; the hub's own port is server.upstream_port). Prism forwards
# every request as it is and reports what the document does not describe in an `sl-violations`
# header of the answer, read from every answer that comes through http.client. After the tests,
# main() fails the run on
#   - an answer that does not match the document (status, body schema, headers);
#   - a request to a path or method the document does not describe, unless the hub refused it
#     as unknown too (404, 405: the test probes the router, whose table matches `paths:`);
#   - a request violation (body, parameters, credentials) of a request the hub accepted (2xx):
#     a request the hub refused (4xx) is a test sending bad input on purpose;
#   - a violation in prism's own output that no answer read here carried.
# A request prism cannot carry unchanged goes to the hub directly, unjudged (_proxy_unfaithful):
# prism parses a JSON body and sends it re-serialized (it hangs on malformed JSON, drops repeated
# member names, rounds numbers past double precision, refuses bodies over 10 MB), and it takes
# only `Bearer` spelled so (RFC 7235 makes the scheme case-insensitive). Requests written on a
# socket (RawHTTP, streaming_request) test HTTP framing, which a proxy rewrites: they go to the
# hub directly too.

PROXY = os.environ.get("SD_E2E_PROXY") or None
TOOLING = os.environ.get("SD_TOOLING") or os.path.join(REPO, "tests", "tooling")
_PRISM_LISTEN_RE = re.compile(r"Prism is listening on http://127\.0\.0\.1:(\d+)")
_proxy_seen = []  # [port, method, path, status, [violation]]
_proxy_logs = {}  # prism port -> its output file
_proxy_upstream = {}  # prism port -> the hub's port
_proxy_direct = collections.Counter()  # why requests went to the hub directly
PRISM_BODY_MAX = 10 * 1000 * 1000


def _proxy_start(upstream_port):
    """Start prism in front of the hub at upstream_port; returns (process, port)."""
    if PROXY != "prism":
        raise AssertionError("SD_E2E_PROXY=%s: only 'prism' is known" % PROXY)
    log_path = tempfile.mkstemp(prefix="sd-prism-", suffix=".log")[1]
    log = open(log_path, "w")
    cmd = [os.path.join(TOOLING, "node_modules", ".bin", "prism"), "proxy",
           os.environ.get("SD_E2E_PROXY_DOC") or os.path.join(REPO, "docs", "openapi.yaml"),
           "http://127.0.0.1:%d" % upstream_port,
           "--host", "127.0.0.1", "--port", "0", "--cors=false"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            m = _PRISM_LISTEN_RE.search(f.read())
        if m:
            _proxy_logs[int(m.group(1))] = log_path
            _proxy_upstream[int(m.group(1))] = upstream_port
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        raise AssertionError("prism did not start\n" + f.read()[-3000:])


class _Unfaithful(Exception):
    pass


def _exact_in_double(text):
    from decimal import Decimal
    if Decimal(repr(float(text))) != Decimal(text):
        raise _Unfaithful("a number past double precision")
    return text


def _no_constant(name):
    raise _Unfaithful(name)  # NaN, Infinity: not JSON, prism cannot parse them


def _no_repeats(pairs):
    if len({k for k, _ in pairs}) != len(pairs):
        raise _Unfaithful("a repeated member name")
    return dict(pairs)


def _proxy_unfaithful(data, headers):
    """Why prism would not carry this request unchanged or would misjudge it, or None."""
    for k, v in headers.items():
        if k.lower() == "authorization" and v[:7].lower() == "bearer " and v[:7] != "Bearer ":
            return "Bearer in another case"
    if not data:
        return None
    if len(data) > PRISM_BODY_MAX:
        return "a body over prism's 10 MB"
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if "json" not in ctype.lower():
        return None  # prism forwards other bodies as text
    try:
        json.loads(data.decode("utf-8"), object_pairs_hook=_no_repeats,
                   parse_float=_exact_in_double, parse_int=_exact_in_double,
                   parse_constant=_no_constant)
    except _Unfaithful as e:
        return str(e)
    except (ValueError, RecursionError):
        return "a body that is not strict JSON"
    return None


def _proxy_route(port, data, headers):
    """The port to send to: the hub's own for a request prism cannot carry (see above)."""
    if port not in _proxy_upstream:
        return port
    why = _proxy_unfaithful(data, headers)
    if why is None:
        return port
    _proxy_direct[why] += 1
    return _proxy_upstream[port]


def _proxy_note(port, method, path, status, headers):
    """Record the violations prism reported in this answer (none: nothing to record)."""
    v = headers.get("sl-violations") if port in _proxy_logs else None
    if not v:
        return
    try:
        violations = json.loads(v)
    except ValueError:  # "Too many violations! …" (cut): judged by what can be read of it
        violations = [{"location": ["response" if '"response"' in v else "request"],
                       "message": v[:300]}]
    _proxy_seen.append([port, method, path.split("?")[0], status, violations])


if PROXY:
    # Every answer read through http.client (http(), and tests' own connections) is noted.
    _putrequest = _httpclient.HTTPConnection.putrequest
    _getresponse = _httpclient.HTTPConnection.getresponse

    def _noting_putrequest(self, method, url, *args, **kw):
        self._sd_request = (method, url)
        return _putrequest(self, method, url, *args, **kw)

    def _noting_getresponse(self):
        r = _getresponse(self)
        method, url = getattr(self, "_sd_request", ("?", "?"))
        _proxy_note(self.port, method, url, r.status, r.msg)
        return r

    _httpclient.HTTPConnection.putrequest = _noting_putrequest
    _httpclient.HTTPConnection.getresponse = _noting_getresponse


def _proxy_failures():
    """(violations that fail the run, expected ones) from the answers read."""
    bad, expected = [], []
    for port, method, path, status, violations in _proxy_seen:
        for v in violations:
            where = ".".join(v.get("location") or [])
            line = "%s %s -> %s: %s %s" % (method, path, status, where, v.get("message"))
            unknown_route = v.get("message") == "Selected route not found"
            if where.startswith("response"):
                bad.append(line)
            elif unknown_route and status in (404, 405):
                expected.append(line)  # the route table matches paths: (unit test)
            elif not unknown_route and 400 <= status < 500:
                expected.append(line)
            else:
                bad.append(line)
    return bad, expected


def _proxy_verdict():
    """Print what prism reported; return the number of violations that fail the run."""
    for s in list(_live_servers):
        s._proxy_stop()
    bad, expected = _proxy_failures()
    for port, log_path in sorted(_proxy_logs.items()):
        with open(log_path, encoding="utf-8", errors="replace") as f:
            logged = [l.strip() for l in f if "Violation: " in l]
        read = sum(len(x[4]) for x in _proxy_seen if x[0] == port)
        if len(logged) > read:
            bad.append("prism on port %d logged %d violations, the answers read carried %d:\n  %s"
                       % (port, len(logged), read, "\n  ".join(logged[-20:])))
        os.unlink(log_path)
    sys.stderr.write("validating proxy: %d answers with violations; %d expected (bad input "
                     "refused), %d failing; sent to the hub directly: %s\n"
                     % (len(_proxy_seen), len(expected), len(bad),
                        ", ".join("%d (%s)" % (n, why) for why, n in _proxy_direct.items())
                        or "none"))
    if VERBOSE:
        for line in expected:
            sys.stderr.write("  expected: %s\n" % line)
    for line in bad:
        sys.stderr.write("  VIOLATION: %s\n" % line)
    return len(bad)


# ---------------------------------------------------------------------------------------------
# server

_LISTEN_RE = re.compile(r"listening on (https?)://(\[[^\]]+\]|[^\s/:]+):(\d+)")
_live_servers = set()


def _kill_all():
    for s in list(_live_servers):
        try:
            s.kill()
        except Exception:
            pass


atexit.register(_kill_all)


class Server:
    """`stagedoor serve --data DIR --listen LISTEN [args]`."""

    def __init__(self, data_dir, listen="127.0.0.1:0", args=()):
        self.data_dir = data_dir
        self.listen = listen
        self.args = list(args)
        self.proc = None
        self.port = None
        self.scheme = None
        self.host = None
        self.stdout_lines = []
        self.stderr_tail = collections.deque(maxlen=300)
        self._cond = threading.Condition()
        self._threads = []
        self.upstream_port = None  # the hub's own port when a proxy fronts it
        self._proxy = None

    # -- lifecycle
    def start(self, timeout=None, expect_ready=True):
        cmd = [bin_path(), "serve", "--data", self.data_dir, "--listen", self.listen] + self.args
        if PG_MODE:
            cmd += ["--store", store_url(self.data_dir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, cwd=self.data_dir)
        _live_servers.add(self)
        for stream, sink in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            t = threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)
        if expect_ready:
            self.wait_ready(timeout or START_TIMEOUT)
        return self

    def _drain(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if VERBOSE:
                sys.stderr.write("[server %s] %s\n" % (sink, line))
            with self._cond:
                if sink == "out":
                    self.stdout_lines.append(line)
                else:
                    self.stderr_tail.append(line)
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.stdout_lines:
                    m = _LISTEN_RE.search(line)
                    if m:
                        self.scheme = m.group(1)
                        self.host = m.group(2).strip("[]")
                        self.port = int(m.group(3))
                        if PROXY and self.scheme == "http":
                            self.upstream_port = self.port
                            self._proxy, self.port = _proxy_start(self.port)
                        return
                if self.proc.poll() is not None:
                    raise AssertionError("server exited with %s before listening\n%s"
                                         % (self.proc.returncode, self.diagnostics()))
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise AssertionError("server did not print 'listening on' within %.0fs\n%s"
                                         % (timeout, self.diagnostics()))
                self._cond.wait(min(left, 0.1))

    def diagnostics(self):
        return ("--- server stdout ---\n%s\n--- server stderr (tail) ---\n%s"
                % ("\n".join(self.stdout_lines[-50:]), "\n".join(self.stderr_tail)))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=None):
        """Wait for the process to exit; return its code (kill + AssertionError on timeout)."""
        try:
            rc = self.proc.wait(timeout or STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("server did not exit within %.0fs\n%s"
                                 % (timeout or STOP_TIMEOUT, self.diagnostics()))
        for t in self._threads:
            t.join(5)
        self._proxy_stop()
        _live_servers.discard(self)
        return rc

    def _proxy_stop(self):
        if self._proxy is not None:
            self._proxy.terminate()
            try:
                self._proxy.wait(10)
            except subprocess.TimeoutExpired:
                self._proxy.kill()
                self._proxy.wait()
            self._proxy = None

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """SIGTERM (default) and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.wait_exit(timeout)

    def stop_ok(self, testcase=None, sig=signal.SIGTERM):
        rc = self.stop(sig)
        if rc != 0:
            raise AssertionError("server exit code %r after %s (want 0)\n%s"
                                 % (rc, signal.Signals(sig).name, self.diagnostics()))

    def kill(self):
        """SIGKILL (crash) and reap."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._proxy_stop()
        _live_servers.discard(self)
        return self.proc.returncode

    # -- convenience
    def api(self, client_id, key, tls_ctx=None):
        return Api(self.port, client_id, key, tls_ctx=tls_ctx)


# ---------------------------------------------------------------------------------------------
# HTTP


class Resp(tuple):
    """(status, headers, json) with .status .headers .json .body (bytes) .text."""

    def __new__(cls, status, headers, js, body):
        t = tuple.__new__(cls, (status, headers, js))
        t.status, t.headers, t.json, t.body = status, headers, js, body
        return t

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        b = self.body[:600].decode("utf-8", "replace")
        return "<Resp %s %s>" % (self.status, b)


def _parse_json(body):
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def _encode_body(body, headers):
    if body is None:
        return None
    if isinstance(body, (dict, list)):
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(body).encode("utf-8")
    if isinstance(body, str):
        return body.encode("utf-8")
    return body


def http(port, method, path, body=None, headers=None, key=None, tls_ctx=None,
         host="127.0.0.1", timeout=None):
    """One request on a fresh connection. Returns Resp(status, headers, json)."""
    headers = dict(headers or {})
    if key is not None:
        headers["Authorization"] = "Bearer " + key
    data = _encode_body(body, headers)
    if PROXY:
        port = _proxy_route(port, data, headers)
    if tls_ctx is not None:
        conn = _httpclient.HTTPSConnection(host, port, timeout=timeout or HTTP_TIMEOUT,
                                           context=tls_ctx)
    else:
        conn = _httpclient.HTTPConnection(host, port, timeout=timeout or HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        return Resp(r.status, r.msg, _parse_json(raw), raw)
    finally:
        conn.close()


class RawHTTP:
    """A request written by hand on a socket: for half-sent bodies, chunked bodies and answers
    that arrive before the body is fully sent (413 decided while streaming)."""

    def __init__(self, port, host="127.0.0.1", timeout=None, tls_ctx=None):
        if port in _proxy_upstream:
            _proxy_direct["written on a socket"] += 1
            port = _proxy_upstream[port]
        self.sock = socket.create_connection((host, port), timeout=timeout or HTTP_TIMEOUT)
        if tls_ctx is not None:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname=host)
        self.method = None

    def send_head(self, method, path, headers):
        self.method = method
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
        for k, v in headers.items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, data):
        """Send bytes; return False if the server closed/reset the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLError,
                socket.timeout, OSError):
            return False

    def send_chunk(self, data):
        if not data:
            return True
        return self.send(b"%x\r\n" % len(data) + data + b"\r\n")

    def end_chunks(self):
        return self.send(b"0\r\n\r\n")

    def read_response(self, timeout=None):
        self.sock.settimeout(timeout or HTTP_TIMEOUT)
        r = _httpclient.HTTPResponse(self.sock, method=self.method)
        r.begin()
        try:
            raw = r.read()
        except (ConnectionResetError, _httpclient.IncompleteRead) as e:
            raw = getattr(e, "partial", b"") or b""
        return Resp(r.status, r.msg, _parse_json(raw), raw)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def streaming_request(port, method, path, headers, pieces, chunked=False, timeout=None,
                      tls_ctx=None):
    """Send the head, then `pieces` (iterable of bytes) from a background thread while the main
    thread reads the answer, so an early answer (e.g. 413 before the whole body is sent) is seen
    even if the server then closes the connection. Returns (Resp, bytes_sent, send_completed)."""
    raw = RawHTTP(port, timeout=timeout, tls_ctx=tls_ctx)
    headers = dict(headers)
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    raw.send_head(method, path, headers)
    state = {"sent": 0, "done": False}

    def writer():
        for p in pieces:
            ok = raw.send_chunk(p) if chunked else raw.send(p)
            if not ok:
                return
            state["sent"] += len(p)
        if chunked and not raw.end_chunks():
            return
        state["done"] = True

    # An SSL connection must not be read and written from two threads at once (OpenSSL's
    # state is per connection), so over TLS the body is sent first and the answer read after.
    t = threading.Thread(target=writer, daemon=True)
    if tls_ctx is not None:
        writer()
    else:
        t.start()
    try:
        resp = raw.read_response(timeout)
    except (_httpclient.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
            ssl.SSLEOFError) as e:
        raise AssertionError("%s %s: the server closed the connection without an answer "
                             "after %d body bytes (%r)" % (method, path, state["sent"], e))
    finally:
        raw.close()
        if t.is_alive():
            t.join(10)
    return resp, state["sent"], state["done"]


def pieces_of(data, size=64 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


class Api:
    """Requests for one tenant with one key."""

    def __init__(self, port, client_id, key, tls_ctx=None):
        self.port, self.client_id, self.key, self.tls_ctx = port, client_id, key, tls_ctx

    def req(self, method, path, body=None, headers=None, key="default", **kw):
        k = self.key if key == "default" else key
        return http(self.port, method, path, body=body, headers=headers, key=k,
                    tls_ctx=self.tls_ctx, **kw)

    def ingest(self, body, headers=None, **kw):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.req("POST", "/v1/%s/ingest" % self.client_id, body=body, headers=h, **kw)

    def get(self, kind, rid=None, query=None, **kw):
        path = "/v1/%s/%s" % (self.client_id, kind)
        if rid is not None:
            path += "/" + _quote(rid)
        if query:
            path += "?" + query
        return self.req("GET", path, **kw)

    def put_sale(self, invoice, sale, headers=None, **kw):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.req("PUT", "/v1/%s/sales/%s" % (self.client_id, _quote(invoice)),
                        body=sale, headers=h, **kw)

    def list_all(self, kind, limit=1000, cursor=None, max_pages=10000):
        """Follow a list to its end. Returns (records, last next_cursor)."""
        out = []
        for _ in range(max_pages):
            q = "limit=%d" % limit
            if cursor:
                q += "&cursor=" + _quote(cursor)
            r = self.get(kind, query=q)
            if r.status != 200:
                raise AssertionError("GET %s list -> %r" % (kind, r))
            out.extend(r.json["data"])
            if r.json.get("next_cursor"):
                cursor = r.json["next_cursor"]
            if not r.json["has_more"]:
                return out, cursor
        raise AssertionError("list %s did not end" % kind)


def _quote(s):
    from urllib.parse import quote
    return quote(s, safe="")


# ---------------------------------------------------------------------------------------------
# records


def event(eid=None, **kw):
    """A valid event; hall derives from the id so no two factory events are one performance."""
    eid = eid or uid("EVT")
    e = {"event_id": eid, "title": "Otello", "date": "2025-10-03", "time": "19:30:00",
         "venue": "State Opera", "hall": "Hall " + eid, "capacity": 1250, "city": "Berlin"}
    e.update(kw)
    return e


def customer(cid=None, **kw):
    cid = cid or uid("CUS")
    c = {"customer_id": cid, "email": "%s@example.com" % cid.lower()}
    c.update(kw)
    return c


def sale(inv=None, event_id="EVT", customer_id="ANON", **kw):
    s = {"invoice_number": inv or uid("INV"), "event_id": event_id, "customer_id": customer_id,
         "purchase_datetime": "2025-04-15T11:08:42Z", "ticket_category": "regular",
         "quantity": 2, "sales_price": "89.00", "currency": "EUR"}
    s.update(kw)
    return s


def without(d, *names):
    d = dict(d)
    for n in names:
        d.pop(n, None)
    return d


# ---------------------------------------------------------------------------------------------
# test case base: one server per class


class ServerCase(unittest.TestCase):
    """setUpClass: temp data dir, tenants/keys from TENANTS, server started; tearDownClass:
    SIGTERM and exit code 0 asserted. TENANTS = {client_id: [envs...]}; keys land in
    cls.keys[(client_id, env)]."""

    TENANTS = {}
    SERVER_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.data = tempdir(cls)
        cls.keys = {}
        for cid, envs in cls.TENANTS.items():
            tenant_create(cls.data, cid)
            for env in envs:
                cls.keys[(cid, env)] = key_create(cls.data, cid, env)
        cls.prepare()
        cls.server = Server(cls.data, args=cls.SERVER_ARGS)
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.port = cls.server.port

    @classmethod
    def prepare(cls):
        """Hook: CLI work before the server starts."""

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_ok()

    def api(self, client_id, env="test"):
        return Api(self.port, client_id, self.keys[(client_id, env)])

    # -- assertions
    def assertStatus(self, resp, status, msg=None):
        if resp.status != status:
            self.fail("want HTTP %s, got %r%s" % (status, resp, (" — " + msg) if msg else ""))

    def errors_of(self, resp):
        self.assertIsInstance(resp.json, dict, "error body is not a JSON object: %r" % (resp,))
        errs = resp.json.get("errors")
        self.assertIsInstance(errs, list, "no errors array: %r" % (resp,))
        for e in errs:
            self.assertIsInstance(e.get("pointer"), str, e)
            self.assertIsInstance(e.get("message"), str, e)
        return errs

    def assertValidationError(self, resp, *pointers, field_fallback=True):
        """400 validation_failed whose errors name each pointer. With field_fallback an error
        on the parent record whose message names the field also counts (missing members)."""
        self.assertStatus(resp, 400)
        self.assertEqual(resp.json.get("error"), "validation_failed", resp)
        errs = self.errors_of(resp)
        for p in pointers:
            if any(e["pointer"] == p for e in errs):
                continue
            if field_fallback:
                parent, _, field = p.rpartition("/")
                if any(e["pointer"] == parent and field in e["message"] for e in errs):
                    continue
            self.fail("no error at %s in %s" % (p, json.dumps(errs)[:2000]))
        return errs
