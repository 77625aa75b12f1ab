"""fake_sources.py — local HTTP servers standing in for ticketing systems, for the batch-transport
end-to-end tests (Python standard library only).

FakeSources is a ThreadingHTTPServer on 127.0.0.1 (port 0) served from a background thread; use
it as a context manager or start()/stop(). `.url` is the base ("http://127.0.0.1:PORT"). It
speaks HTTP/1.1 with keep-alive (every answer has a Content-Length), so a client that reuses
connections (libcurl) does. stop() also cuts open keep-alive connections (the source is really
down); start() after stop() listens on the same port again, with all state kept.

Feeds (a file the hub polls):
    add_feed(path, body, content_type) / set_feed(path, body): GET (and HEAD) answer 200 with a
    strong ETag (hash of the body) and Last-Modified (set whenever the body changes, strictly
    increasing by at least one second so a client using only If-Modified-Since never misses a
    change). If-None-Match matching -> 304 without body; if there is no If-None-Match,
    If-Modified-Since >= Last-Modified -> 304 (RFC 9110: If-Modified-Since is ignored when
    If-None-Match is present). feed_stats(path) counts the 200s and 304s.

Collections (a REST API with cursor pagination, like a ticketing system's):
    add_collection(path, records, mode="token"|"after_id", ...): needs Authorization: Bearer
    TOKEN (else 401 JSON). The page size parameter (default `limit`) defaults to 100, is capped
    at 1000; a bad value is 400. The JSON answer puts the page at records_pointer and the next
    cursor (or null) at next_pointer (JSON pointers, default /data and /next).
      mode "token":    the cursor is opaque (urlsafe base64 of "offset:N"); next is null on the
                       last page (or, with final_next=True, a token for the end, so a client can
                       resume after append()). A bad token is 400.
      mode "after_id": the cursor is an id; the page has the records with id_field > cursor
                       (numerically if both are integers or integer strings, else as strings),
                       sorted by it, at most limit; next is the last record's id, or null when
                       the page was not full.
    append(path, records) adds records later (incremental pulls).

Fault injection (any path, registered or not):
    inject(path, faults): a queue consumed one fault per request to that path:
      ("status", 429, {"Retry-After": "1"})   answer that status (JSON body) with those headers
      ("sleep", seconds)                      delay the normal answer (to trip a client timeout)
      ("truncate",)                           Content-Length of the full answer, send only half
                                              of it, close
      ("close",)                              close the connection without any answer
      ("reset",)                              like close, but with a TCP RST (SO_LINGER 0)

Request log: every request, faulted ones included, is a Request (t = time.monotonic() at
arrival, wall, method, path, query (dict: last value per name), query_all (dict of lists),
headers (dict), header(name) case-insensitive, body, fault, status). requests(path=None),
wait_requests(n, path=None, timeout=...), clear_log(). Everything is guarded by one lock.

Timeouts: every wait has one; TIME_SCALE (env E2E_TIME_SCALE, default 1) stretches them.
"""

import base64
import binascii
import email.utils
import hashlib
import http.server
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

TIME_SCALE = float(os.environ.get("E2E_TIME_SCALE", "1") or "1")
WAIT_TIMEOUT = 30.0 * TIME_SCALE
VERBOSE = bool(os.environ.get("E2E_VERBOSE"))

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FAULT_KINDS = ("status", "sleep", "truncate", "close", "reset")


# ---------------------------------------------------------------------------------------------
# helpers


def _pointer_tokens(pointer):
    if pointer == "" or pointer == "/":
        raise ValueError("a JSON pointer to a member is needed, got %r" % (pointer,))
    if not pointer.startswith("/"):
        raise ValueError("JSON pointer must start with '/': %r" % (pointer,))
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _pointer_set(doc, pointer, value):
    """Set doc[...] at a JSON pointer, creating objects on the way."""
    toks = _pointer_tokens(pointer)
    cur = doc
    for t in toks[:-1]:
        nxt = cur.get(t)
        if not isinstance(nxt, dict):
            nxt = cur[t] = {}
        cur = nxt
    cur[toks[-1]] = value


def pointer_get(doc, pointer):
    """Value at a JSON pointer in a decoded JSON document (KeyError/IndexError if absent)."""
    cur = doc
    for t in _pointer_tokens(pointer):
        cur = cur[int(t)] if isinstance(cur, list) else cur[t]
    return cur


def _as_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        s = v.strip()
        if s and (s.isdigit() or (s[0] == "-" and s[1:].isdigit())):
            return int(s)
    return None


def id_greater(a, b):
    """a > b the way an after_id collection compares ids: numerically if both are integers or
    integer strings, else as strings."""
    ia, ib = _as_int(a), _as_int(b)
    if ia is not None and ib is not None:
        return ia > ib
    return str(a) > str(b)


def _id_sort_key(v):
    i = _as_int(v)
    return (0, i, "") if i is not None else (1, 0, str(v))


def encode_token(offset):
    return base64.urlsafe_b64encode(("offset:%d" % offset).encode()).decode().rstrip("=")


def decode_token(tok):
    """Offset of a token cursor; ValueError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("bad cursor")
    if not raw.startswith("offset:") or not raw[7:].isdigit():
        raise ValueError("bad cursor")
    return int(raw[7:])


def _http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def _parse_http_date(s):
    try:
        dt = email.utils.parsedate_to_datetime(s)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def _etag_list(value):
    """Entity tags of an If-None-Match value; '*' stays '*'. Weak tags lose their W/ (If-None-Match
    uses the weak comparison)."""
    out = []
    for part in value.split(","):
        p = part.strip()
        if p.startswith("W/"):
            p = p[2:]
        if p:
            out.append(p)
    return out


class Request:
    """One logged request."""

    __slots__ = ("t", "wall", "method", "path", "raw_path", "query", "query_all", "headers",
                 "body", "fault", "status", "client")

    def __init__(self, method, raw_path, headers, client):
        self.t = time.monotonic()
        self.wall = time.time()
        self.method = method
        self.raw_path = raw_path
        u = urllib.parse.urlsplit(raw_path)
        self.path = urllib.parse.unquote(u.path)
        self.query_all = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        self.query = {k: v[-1] for k, v in self.query_all.items()}
        self.headers = dict(headers.items())
        self.body = b""
        self.fault = None
        self.status = None     # int, or "close"/"reset"/"truncate" for broken answers
        self.client = client

    def header(self, name, default=None):
        ln = name.lower()
        for k, v in self.headers.items():
            if k.lower() == ln:
                return v
        return default

    def __repr__(self):
        return "<Request %.3f %s %s -> %s%s>" % (self.t, self.method, self.raw_path, self.status,
                                                 " fault=%r" % (self.fault,) if self.fault else "")


class _Feed:
    def __init__(self, body, content_type, token):
        self.content_type = content_type
        self.token = token
        self.body = b""
        self.etag = None
        self.last_modified = 0
        self.n200 = 0
        self.n304 = 0

    def set(self, body, last_modified=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        changed = self.etag is None or body != self.body
        self.body = body
        self.etag = '"%s"' % hashlib.sha256(body).hexdigest()[:32]
        if last_modified is not None:
            self.last_modified = int(last_modified)
        elif changed:
            # whole seconds (HTTP-date), strictly increasing
            self.last_modified = max(int(time.time()), self.last_modified + 1)


class _Collection:
    def __init__(self, records, mode, page_param, cursor_param, records_pointer, next_pointer,
                 token, id_field, default_limit, max_limit, final_next):
        if mode not in ("token", "after_id"):
            raise ValueError("mode must be 'token' or 'after_id'")
        _pointer_tokens(records_pointer)
        _pointer_tokens(next_pointer)
        self.records = list(records)
        self.mode = mode
        self.page_param = page_param
        self.cursor_param = cursor_param
        self.records_pointer = records_pointer
        self.next_pointer = next_pointer
        self.token = token
        self.id_field = id_field
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.final_next = final_next
        self.pages = 0

    def page(self, query):
        """(status, json document)."""
        lim = query.get(self.page_param)
        if lim is None or lim == "":
            limit = self.default_limit
        else:
            try:
                limit = int(lim)
            except ValueError:
                return 400, {"error": "bad_request", "message": "bad %s" % self.page_param}
            if limit < 1:
                return 400, {"error": "bad_request", "message": "bad %s" % self.page_param}
        limit = min(limit, self.max_limit)
        cursor = query.get(self.cursor_param)
        if cursor == "":
            cursor = None
        if self.mode == "token":
            if cursor is None:
                off = 0
            else:
                try:
                    off = decode_token(cursor)
                except ValueError:
                    return 400, {"error": "bad_request", "message": "bad cursor"}
            page = self.records[off:off + limit]
            end = off + len(page)
            if end < len(self.records):
                nxt = encode_token(end)
            else:
                nxt = encode_token(end) if self.final_next else None
        else:
            recs = [r for r in self.records if self.id_field in r]
            if cursor is not None:
                recs = [r for r in recs if id_greater(r[self.id_field], cursor)]
            recs.sort(key=lambda r: _id_sort_key(r[self.id_field]))
            page = recs[:limit]
            nxt = page[-1][self.id_field] if len(page) == limit else None
        self.pages += 1
        doc = {}
        _pointer_set(doc, self.records_pointer, page)
        _pointer_set(doc, self.next_pointer, nxt)
        return 200, doc


# ---------------------------------------------------------------------------------------------
# server


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-source/1"
    sys_version = ""

    def setup(self):
        super().setup()
        self.server.owner._conn_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._conn_closed(self.connection)

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("[fake %s] %s\n" % (self.server.owner.port, fmt % args))

    def do_GET(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    # -- plumbing
    def _handle(self):
        owner = self.server.owner
        req = Request(self.command, self.path, self.headers, self.client_address)
        n = self.headers.get("Content-Length")
        if n:
            try:
                req.body = self.rfile.read(int(n))
            except (ValueError, OSError):
                pass
        fault = owner._arrive(req)
        try:
            self._answer(owner, req, fault)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout,
                OSError):
            self.close_connection = True

    def _send(self, req, status, headers, body, head_only=False):
        req_status(self.server.owner, req, status)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head_only and status != 304:
            self.wfile.write(body)
        self.wfile.flush()

    def _json(self, req, status, doc, extra=None):
        body = (json.dumps(doc) + "\n").encode("utf-8")
        h = {"Content-Type": "application/json"}
        h.update(extra or {})
        self._send(req, status, h, body, head_only=self.command == "HEAD")

    def _answer(self, owner, req, fault):
        kind = fault[0] if fault else None
        if kind == "close" or kind == "reset":
            req_status(owner, req, kind)
            if kind == "reset":
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                except OSError:
                    pass
            self.close_connection = True
            return
        if kind == "status":
            code = fault[1]
            hdrs = dict(fault[2]) if len(fault) > 2 and fault[2] else {}
            self._json(req, code, {"error": "injected", "status": code}, hdrs)
            return
        if kind == "sleep":
            owner._stopping.wait(fault[1])
            if owner._stopping.is_set():
                self.close_connection = True
                return
        status, headers, body = owner._normal(req)
        if kind == "truncate":
            if not body:
                body = b'{"error":"truncated"}\n'
            req_status(owner, req, "truncate")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(req, status, headers, body, head_only=self.command == "HEAD")


def req_status(owner, req, status):
    with owner._cond:
        req.status = status
        owner._cond.notify_all()


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)


class FakeSources:
    """Local HTTP server imitating ticketing systems: feeds, paged collections, faults."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.port = None
        self.url = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._feeds = {}
        self._collections = {}
        self._faults = {}
        self._log = []
        self._httpd = None
        self._thread = None
        self._stopping = threading.Event()
        self._conns = set()

    # -- lifecycle
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, port=None):
        """Listen on port (default: the previous port after a stop(), else a free one)."""
        if self._httpd is not None:
            raise RuntimeError("FakeSources already started")
        self._stopping.clear()
        if port is None:
            port = self.port or 0
        self._httpd = _HTTPServer((self.host, port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = "http://%s:%d" % (self.host, self.port)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fake-sources-%d" % self.port)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)
        self._httpd = None
        # keep-alive connections outlive serve_forever: cut them, so a stopped source is down
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def running(self):
        return self._httpd is not None

    def _conn_opened(self, sock):
        with self._lock:
            self._conns.add(sock)

    def _conn_closed(self, sock):
        with self._lock:
            self._conns.discard(sock)

    def address(self, path):
        """Full URL of a path."""
        return self.url + path

    # -- feeds
    def add_feed(self, path, body, content_type="application/octet-stream", token=None,
                 last_modified=None):
        """Serve body (bytes/str) at path with ETag/Last-Modified; token: require Bearer."""
        f = _Feed(body, content_type, token)
        f.set(body, last_modified)
        with self._lock:
            self._feeds[path] = f

    def set_feed(self, path, body, content_type=None, last_modified=None):
        """Change a feed's body (a new ETag and, if it changed, a later Last-Modified)."""
        with self._lock:
            f = self._feeds[path]
            f.set(body, last_modified)
            if content_type:
                f.content_type = content_type

    def feed_info(self, path):
        """{"etag": ..., "last_modified": HTTP-date, "last_modified_ts": int, "size": n}."""
        with self._lock:
            f = self._feeds[path]
            return {"etag": f.etag, "last_modified": _http_date(f.last_modified),
                    "last_modified_ts": f.last_modified, "size": len(f.body)}

    def feed_stats(self, path):
        """{200: full answers, 304: not-modified answers} for a feed."""
        with self._lock:
            f = self._feeds[path]
            return {200: f.n200, 304: f.n304}

    # -- collections
    def add_collection(self, path, records, mode="token", page_param="limit",
                       cursor_param="cursor", records_pointer="/data", next_pointer="/next",
                       token="secret-token", id_field="id", default_limit=DEFAULT_LIMIT,
                       max_limit=MAX_LIMIT, final_next=False):
        """A paged REST collection (see the module docstring). token=None: no auth."""
        c = _Collection(records, mode, page_param, cursor_param, records_pointer, next_pointer,
                        token, id_field, default_limit, max_limit, final_next)
        with self._lock:
            self._collections[path] = c

    def append(self, path, records):
        """Add records to a collection (they show up after the current end)."""
        with self._lock:
            self._collections[path].records.extend(records)

    def collection_records(self, path):
        with self._lock:
            return list(self._collections[path].records)

    def pages_served(self, path):
        """Number of 200 pages a collection served."""
        with self._lock:
            return self._collections[path].pages

    # -- faults
    def inject(self, path, faults):
        """Queue faults for path, one consumed per request (see the module docstring)."""
        checked = []
        for f in faults:
            f = tuple(f)
            if not f or f[0] not in FAULT_KINDS:
                raise ValueError("unknown fault %r" % (f,))
            if f[0] == "status" and (len(f) < 2 or not isinstance(f[1], int)):
                raise ValueError("status fault needs a code: %r" % (f,))
            if f[0] == "sleep" and (len(f) < 2 or f[1] < 0):
                raise ValueError("sleep fault needs seconds: %r" % (f,))
            checked.append(f)
        with self._lock:
            self._faults.setdefault(path, []).extend(checked)

    def pending_faults(self, path):
        with self._lock:
            return list(self._faults.get(path, ()))

    def clear_faults(self, path=None):
        with self._lock:
            if path is None:
                self._faults.clear()
            else:
                self._faults.pop(path, None)

    # -- request log
    def requests(self, path=None):
        """Logged requests (all, or to one path), in arrival order."""
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    def wait_requests(self, n, path=None, timeout=None, answered=True):
        """Wait until at least n requests (to path) arrived (and, if answered, got a status
        or broken answer); return them. AssertionError on timeout."""
        deadline = time.monotonic() + (timeout or WAIT_TIMEOUT)
        with self._cond:
            while True:
                rs = [r for r in self._log if path is None or r.path == path]
                if len(rs) >= n and (not answered or all(r.status is not None for r in rs[:n])):
                    return rs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %d requests to %s (got %r)"
                                         % (n, path or "any path", rs))
                self._cond.wait(min(left, 0.05))

    def clear_log(self):
        with self._lock:
            del self._log[:]

    # -- internals (called from handler threads)
    def _arrive(self, req):
        with self._cond:
            self._log.append(req)
            q = self._faults.get(req.path)
            fault = q.pop(0) if q else None
            req.fault = fault
            self._cond.notify_all()
        return fault

    def _normal(self, req):
        """(status, headers, body) of the un-faulted answer."""
        with self._lock:
            feed = self._feeds.get(req.path)
            coll = self._collections.get(req.path)
            if feed is not None:
                return self._feed_answer(feed, req)
            if coll is not None:
                return self._collection_answer(coll, req)
        return self._json_answer(404, {"error": "not_found", "path": req.path})

    @staticmethod
    def _json_answer(status, doc, extra=None):
        h = {"Content-Type": "application/json"}
        h.update(extra or {})
        return status, h, (json.dumps(doc) + "\n").encode("utf-8")

    def _auth_ok(self, token, req):
        if token is None:
            return True
        return req.header("Authorization", "") == "Bearer " + token

    def _feed_answer(self, f, req):
        if req.method not in ("GET", "HEAD"):
            return self._json_answer(405, {"error": "method_not_allowed"}, {"Allow": "GET, HEAD"})
        if not self._auth_ok(f.token, req):
            return self._json_answer(401, {"error": "unauthorized"},
                                     {"WWW-Authenticate": 'Bearer realm="fake"'})
        lm = _http_date(f.last_modified)
        h = {"ETag": f.etag, "Last-Modified": lm, "Cache-Control": "no-cache"}
        inm = req.header("If-None-Match")
        ims = req.header("If-Modified-Since")
        not_modified = False
        if inm is not None:
            tags = _etag_list(inm)
            not_modified = "*" in tags or f.etag in tags
        elif ims is not None:
            ts = _parse_http_date(ims)
            not_modified = ts is not None and ts >= f.last_modified
        if not_modified:
            f.n304 += 1
            return 304, h, b""
        f.n200 += 1
        h["Content-Type"] = f.content_type
        return 200, h, f.body

    def _collection_answer(self, c, req):
        if req.method not in ("GET", "HEAD"):
            return self._json_answer(405, {"error": "method_not_allowed"}, {"Allow": "GET"})
        if not self._auth_ok(c.token, req):
            return self._json_answer(401, {"error": "unauthorized",
                                           "message": "missing or bad bearer token"},
                                     {"WWW-Authenticate": 'Bearer realm="fake"'})
        status, doc = c.page(req.query)
        return self._json_answer(status, doc)


if __name__ == "__main__":
    # Manual use: a demo feed and collection until Ctrl-C.
    with FakeSources() as fs:
        fs.add_feed("/feed.csv", b"id,name\n1,Tosca\n", "text/csv")
        fs.add_collection("/api/tickets", [{"id": i, "n": "t%d" % i} for i in range(1, 251)])
        print("feed:       curl -i %s/feed.csv" % fs.url)
        print("collection: curl -H 'Authorization: Bearer secret-token' '%s/api/tickets?limit=2'"
              % fs.url)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
