"""server.py — the ATS gateway and queue server: HTTP, API key and DSN checks, rate limits,
202 polling cycles with rotating cookies, fault injection, and the record of every call.

A request passes, in the gateway's documented order: the path ({product}/ticketing_services.aspx,
else 404), POST (else 405), the API key (header `apikey`, or the query string; else 401), the
key's access to the URL's DSN (else 401), the body (JSON with Content-Type application/json or
text/json, else 415/400), the payload DSN equal to the URL's (else 401), then the rate limits (80
a minute rolling, 5,000 a UTC day, per key; else 429 with an Apigee fault body). Only then does
the queue server see it: a poll (the Cookie header names a live SID, with the current BID and
QTKN, and the body is the queued command) advances its job; anything else is a new command,
which is answered at once (200) or queued (202 + Set-Cookie SID, BID, QTKN). While a command has
a job in flight, the same command without that job's cookies is queued again: a client that
drops the cookies polls 202 forever. A job polled after poll_ttl answers "No data for token".

The command runs when it is submitted (as the queue server would run it whether or not anyone
polls); its answer is kept in the job and served by the poll that completes it. Every counted
call, polls included, takes one unit of both quotas; a refused call (401/404/405/415/429) takes
none.
"""

import hashlib
import http.server
import json
import math
import random
import socket
import sys
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie

from . import commands
from .clock import SimClock
from .data import World

RESOURCE = "ticketing_services.aspx"
PRODUCTS = ("sth-customer", "sth-inventory", "sth-hold", "sth-buy", "archticsservices")
JSON_TYPES = ("application/json", "text/json")


class Call:
    """One recorded request and the answer it got."""

    __slots__ = ("t", "sim_time", "sim_local", "method", "path", "query", "headers", "cookies",
                 "body", "doc", "cmd", "kind", "status", "answer_headers", "answer", "counted",
                 "note", "sid")

    def __init__(self, method, path, headers, body, sim_time, sim_local):
        self.t = time.monotonic()
        self.sim_time = sim_time
        self.sim_local = sim_local
        self.method = method
        self.path = path
        self.query = {}
        self.headers = headers
        self.cookies = {}
        self.body = body
        self.doc = None
        self.cmd = None
        self.kind = "refused"      # refused | command | poll | fault
        self.status = None
        self.answer_headers = []
        self.answer = b""
        self.counted = False
        self.note = ""
        self.sid = None

    def header(self, name, default=None):
        ln = name.lower()
        for k, v in self.headers.items():
            if k.lower() == ln:
                return v
        return default

    def answer_json(self):
        try:
            return json.loads(self.answer)
        except ValueError:
            return None

    def __repr__(self):
        return "Call(%s %s cmd=%s kind=%s status=%s note=%r)" % (
            self.method, self.path, self.cmd, self.kind, self.status, self.note)


class _Job:
    __slots__ = ("sid", "bid", "qtkn", "key", "canon", "cmd", "created", "polls_needed",
                 "polls", "ready_at", "answer")


def _canon(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _fault_doc(faultstring, errorcode):
    return {"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}}


class Simulator:
    """Ticketmaster Archtics Transaction Services on 127.0.0.1 (see README.md)."""

    def __init__(self, api_keys=None, dsn="stagedoor_test", seed=12,
                 venue_time_zone="America/New_York", start="2026-03-02 09:00",
                 real_time=True, per_minute=80, per_day=5000, queue_mode="random",
                 queue_probability=0.3, queue_polls=(1, 3), queue_seconds=(0.0, 0.0),
                 poll_ttl=180.0,
                 no_data_result=1, dsn_mismatch_status=401, drift=True,
                 event_details_max_bytes=250000, alt_id_types=("SDHUB",),
                 cookie_names=("SID", "BID", "QTKN"), latency=0.0, retry_after=True,
                 accounts=120, events=24, sales_per_event=14, plan_holders=6,
                 host="127.0.0.1"):
        # key -> set of DSNs it may use
        if api_keys is None:
            api_keys = {"test-key-1": {dsn}}
        self.api_keys = {k: set(v) for k, v in api_keys.items()}
        self.dsn = dsn
        self.per_minute = per_minute
        self.per_day = per_day
        if queue_mode not in ("random", "always", "never"):
            raise ValueError("queue_mode is random, always or never")
        self.queue_mode = queue_mode
        self.queue_probability = queue_probability
        self.queue_polls = tuple(queue_polls)
        self.queue_seconds = tuple(queue_seconds)
        self.poll_ttl = poll_ttl
        self.no_data_result = no_data_result
        self.dsn_mismatch_status = dsn_mismatch_status
        self.drift = drift
        self.event_details_max_bytes = event_details_max_bytes
        self.alt_id_types = set(alt_id_types)
        if len(cookie_names) != 3:
            raise ValueError("cookie_names is (session, browser, queue token)")
        self.cookie_names = tuple(cookie_names)
        self.latency = latency
        self.retry_after = retry_after
        self.host = host
        self.clock = SimClock(start, venue_time_zone, real_time)
        self.lock = threading.RLock()
        self.world = World(self.clock, seed, accounts, events, sales_per_event, plan_holders,
                           self.lock)
        self.rng = random.Random(seed * 7919 + 1)
        self.cond = threading.Condition(self.lock)
        self.jobs = {}                # sid -> _Job
        self.used = {}                # key -> [sim times of counted calls]
        self.day_used = {}            # (key, utc day) -> calls
        self.violations = []          # Calls answered 429 by the limits
        self.calls = []
        self.faults = []              # [(cmd or None, fault)]
        self.port = None
        self.url = None
        self._httpd = None
        self._thread = None
        self._conns = set()
        self._stopping = threading.Event()
        self._tokens = 0

    # -- lifecycle
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, port=None):
        """Listen (default: the previous port after a stop(), else a free one); state is kept."""
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, port if port is not None else (self.port or 0)),
                                  _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = "http://%s:%d" % (self.host, self.port)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="archtics-sim-%d" % self.port)
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
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def endpoint(self, product="sth-customer", dsn=None):
        """The URL a client POSTs to."""
        return "%s/%s/%s?dsn=%s" % (self.url, product, RESOURCE,
                                    urllib.parse.quote(dsn or self.dsn))

    # -- test controls
    def inject(self, *faults, cmd=None):
        """Queue faults, each consumed by the next request (of that cmd, if given):
        ("status", code[, headers[, body]]), ("sleep", seconds), ("queue", polls),
        ("inband", result, detail), ("close",)."""
        with self.lock:
            for f in faults:
                if f[0] not in ("status", "sleep", "queue", "inband", "close"):
                    raise ValueError("unknown fault %r" % (f,))
                self.faults.append((cmd.lower() if cmd else None, tuple(f)))

    def jobs_in_flight(self):
        """SIDs of the queued commands not yet answered (expired ones included)."""
        with self.lock:
            return sorted(self.jobs)

    def pending_faults(self):
        with self.lock:
            return list(self.faults)

    def record(self, cmd=None, kind=None):
        """The calls so far (optionally of one cmd, lower case, and/or one kind)."""
        with self.lock:
            return [c for c in self.calls
                    if (cmd is None or c.cmd == cmd) and (kind is None or c.kind == kind)]

    def clear_record(self):
        with self.lock:
            self.calls = []

    def wait_calls(self, n, cmd=None, timeout=30.0):
        end = time.monotonic() + timeout
        with self.cond:
            while len([c for c in self.calls if c.status is not None
                       and (cmd is None or c.cmd == cmd)]) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("waited for %d calls (cmd=%s)" % (n, cmd))
                self.cond.wait(left)
            return self.record(cmd)

    def usage(self, key=None):
        """{"minute": calls in the last 60 simulated seconds, "day": calls this UTC day}."""
        key = key or next(iter(self.api_keys))
        with self.lock:
            now = self.clock.now()
            minute = len([t for t in self.used.get(key, []) if t > now - 60.0])
            return {"minute": minute, "day": self.day_used.get((key, self.clock.utc_day(now)), 0)}

    def errors(self):
        """Calls the simulator itself failed on (answered 500): always a simulator bug."""
        with self.lock:
            return [c for c in self.calls if c.note.startswith("simulator error")]

    def quota_violations(self):
        with self.lock:
            return list(self.violations)

    def assert_within_quota(self):
        """AssertionError if any call was refused by the rate limits (tests not about them)."""
        v = self.quota_violations()
        if v:
            raise AssertionError("%d call(s) beyond the ATS rate limits, first: %r at %s"
                                 % (len(v), v[0], v[0].sim_local))

    def extract_csv(self, kind, cutoff_local):
        with self.lock:
            return self.world.extract_csv(kind, cutoff_local)

    # -- request processing (under the lock)
    def _take_fault(self, cmd, kinds):
        for i, (fc, f) in enumerate(self.faults):
            if (fc is None or fc == cmd) and f[0] in kinds:
                del self.faults[i]
                return f
        return None

    def _new_token(self):
        self._tokens += 1
        return hashlib.sha1(("%d:%d:%f" % (self._tokens, self.rng.random() * 1e9,
                                           time.monotonic())).encode()).hexdigest()[:24].upper()

    def _limit(self, call, key):
        """None if the call may go on (and count it), else the 429 answer."""
        now = call.sim_time
        used = [t for t in self.used.get(key, []) if t > now - 60.0]
        self.used[key] = used
        day = (key, self.clock.utc_day(now))
        if self.day_used.get(day, 0) >= self.per_day:
            self.violations.append(call)
            hdr = {"Retry-After": str(math.ceil(self.clock.seconds_to_utc_midnight(now)))}
            return 429, hdr, _fault_doc(
                "Rate limit quota violation. Quota limit exceeded. Identifier : %s" % key[:4],
                "policies.ratelimit.QuotaViolation")
        if len(used) >= self.per_minute:
            self.violations.append(call)
            hdr = {"Retry-After": str(max(1, math.ceil(used[0] + 60.0 - now)))}
            return 429, hdr, _fault_doc(
                "Spike arrest violation. Allowed rate : %dpm" % self.per_minute,
                "policies.ratelimit.SpikeArrestViolation")
        used.append(now)
        self.day_used[day] = self.day_used.get(day, 0) + 1
        call.counted = True
        return None

    def _envelope_answer(self, doc, c1_out, header_result=0):
        hdr = dict(doc.get("header") or {}) if isinstance(doc.get("header"), dict) else {}
        hdr.update({"ats_version": "4.23.3", "result": header_result})
        return {"header": hdr, "command1": c1_out}

    def _execute(self, doc, cmd_sent, cmd):
        c1 = doc["command1"]
        out = {"cmd": cmd_sent if self.drift else cmd}
        for k in ("ref", "uid", "dsn"):
            if k in c1:
                out[k] = c1[k]
        out.update(commands.run(self, c1, cmd))
        return self._envelope_answer(doc, out)

    def _check_envelope(self, doc):
        """None, or (field, why) for a malformed command envelope."""
        hdr = doc.get("header")
        if not isinstance(hdr, dict):
            return "header", "missing header"
        for f in ("ver", "src_sys_type"):
            v = hdr.get(f)
            if isinstance(v, bool) or not isinstance(v, (int, float, str)) or str(v).strip() == "":
                return f, "header.%s is required" % f
        try:
            float(str(hdr["ver"]))
            if int(str(hdr["src_sys_type"]).strip()) != 2:
                return "src_sys_type", "header.src_sys_type must be 2"
        except ValueError:
            return "ver", "header.ver and src_sys_type are numbers"
        for f in ("src_sys_name", "archtics_version"):
            if not isinstance(hdr.get(f), str) or not hdr[f].strip():
                return f, "header.%s is required" % f
        c1 = doc.get("command1")
        if not isinstance(c1, dict):
            return "command1", "missing command1"
        for f, width in (("cmd", 32), ("uid", 12), ("dsn", 32)):
            v = c1.get(f)
            if not isinstance(v, str) or not v.strip():
                return f, "command1.%s is required" % f
            if len(v) > width:
                return f, "command1.%s longer than %d characters" % (f, width)
        if len(str(c1.get("ref", ""))) > 32:
            return "ref", "command1.ref longer than 32 characters"
        return None

    def _process(self, call):
        """Returns (status, headers dict, set-cookie list, body doc or None)."""
        u = urllib.parse.urlsplit(call.path)
        parts = [p for p in u.path.split("/") if p]
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        call.query = {k: v[-1] for k, v in q.items()}
        if len(parts) != 2 or parts[0] not in PRODUCTS or parts[1].lower() != RESOURCE:
            return 404, {}, [], _fault_doc("Unable to identify proxy for host and url",
                                           "messaging.adaptors.http.flow.ApplicationNotFound")
        if call.method != "POST":
            return 405, {"Allow": "POST"}, [], _fault_doc("Method not allowed",
                                                          "protocol.http.MethodNotAllowed")
        key = call.header("apikey") or call.query.get("apikey")
        if not key or key not in self.api_keys:
            return 401, {}, [], _fault_doc("Invalid ApiKey", "oauth.v2.InvalidApiKey")
        url_dsn = call.query.get("dsn", "")
        if url_dsn not in self.api_keys[key]:
            return 401, {}, [], _fault_doc("Not authorized for this area (dsn %r)" % url_dsn,
                                           "access.DsnNotAllowed")
        ctype = (call.header("content-type") or "").split(";")[0].strip().lower()
        if ctype not in JSON_TYPES:
            return 415, {}, [], _fault_doc("Content-Type must be application/json",
                                           "protocol.http.UnsupportedMediaType")
        try:
            doc = json.loads(call.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return 400, {}, [], _fault_doc("Malformed JSON command", "protocol.json.Malformed")
        if not isinstance(doc, dict):
            return 400, {}, [], _fault_doc("Malformed JSON command", "protocol.json.Malformed")
        call.doc = doc
        c1 = doc.get("command1") if isinstance(doc.get("command1"), dict) else {}
        cmd_sent = c1.get("cmd") if isinstance(c1.get("cmd"), str) else ""
        call.cmd = cmd_sent.strip().lower() or None
        if c1.get("dsn") != url_dsn:
            return self.dsn_mismatch_status, {}, [], _fault_doc(
                "DSN in the URL does not match the DSN in the command", "access.DsnMismatch")
        fault = self._take_fault(call.cmd, ("status", "close"))
        if fault is not None:
            call.kind = "fault"
            if fault[0] == "close":
                return "close", {}, [], None
            body = fault[3] if len(fault) > 3 else _fault_doc(
                "injected %d" % fault[1], "injected")
            return fault[1], dict(fault[2]) if len(fault) > 2 and fault[2] else {}, [], body
        limited = self._limit(call, key)
        if limited is not None:
            return limited[0], limited[1], [], limited[2]
        bad = self._check_envelope(doc)
        if bad is not None:
            call.kind = "command"
            out = {"cmd": cmd_sent, "result": commands.INVALID_PARAMETER, "sql_code": 0,
                   "error_detail": bad[1]}
            return 200, {}, [], self._envelope_answer(doc, out, commands.INVALID_PARAMETER)
        return self._queue(call, key, doc, cmd_sent)

    def _queue(self, call, key, doc, cmd_sent):
        n_sid, n_bid, n_tok = self.cookie_names
        canon = _canon(doc)
        now = call.sim_time
        sid = call.cookies.get(n_sid)
        job = self.jobs.get(sid) if sid else None
        if job is not None and job.key == key:
            call.sid = sid
            if now > job.created + self.poll_ttl:
                call.kind = "poll"
                call.note = "expired"
                del self.jobs[sid]
                out = {"cmd": cmd_sent, "result": self.no_data_result, "sql_code": 0,
                       "error_detail": "No data for token '%s'. The request may have expired; "
                                       "submit the command again." % sid}
                return 200, {}, [], self._envelope_answer(doc, out, self.no_data_result)
            elif call.cookies.get(n_bid) != job.bid or call.cookies.get(n_tok) != job.qtkn:
                call.note = "poll without the current %s/%s cookies" % (n_bid, n_tok)
            elif canon != job.canon:
                call.note = "poll with a different command"
            else:
                call.kind = "poll"
                job.polls += 1
                if job.polls >= job.polls_needed and now >= job.ready_at:
                    del self.jobs[sid]
                    gone = ["%s=; Max-Age=0; Path=/" % n_tok]
                    return 200, {}, gone, job.answer
                job.qtkn = self._new_token()
                return 202, {}, ["%s=%s; Path=/" % (n_tok, job.qtkn)], None
        elif sid:
            call.note = "unknown %s cookie" % n_sid
        # a new command
        call.kind = "command"
        cmd = call.cmd
        inband = self._take_fault(cmd, ("inband",))
        if inband is not None:
            out = {"cmd": cmd_sent, "result": inband[1], "sql_code": 0,
                   ("error_desc" if cmd == "seats_sold" else "error_detail"): inband[2]}
            answer = self._envelope_answer(doc, out)
        else:
            answer = self._execute(doc, cmd_sent, cmd)
        forced = self._take_fault(cmd, ("queue",))
        in_flight = any(j.key == key and j.canon == canon and now <= j.created + self.poll_ttl
                        for j in self.jobs.values())
        polls = None
        ready_at = now
        if forced is not None:
            polls = forced[1]
        elif cmd == "ats_ext_test_polling":
            polls, ready_at = 1, now + 10.0
        elif in_flight:
            polls = self.rng.randint(*self.queue_polls)
            call.note = (call.note + "; " if call.note else "") + "same command in flight"
        elif self.queue_mode == "always" or (self.queue_mode == "random"
                                             and self.rng.random() < self.queue_probability):
            polls = self.rng.randint(*self.queue_polls)
        if polls is None:
            return 200, {}, [], answer
        if ready_at == now and self.queue_seconds[1] > 0:
            ready_at = now + self.rng.uniform(*self.queue_seconds)
        job = _Job()
        job.sid, job.bid, job.qtkn = self._new_token(), self._new_token(), self._new_token()
        job.key, job.canon, job.cmd = key, canon, cmd
        job.created, job.polls_needed, job.polls, job.ready_at = now, max(1, polls), 0, ready_at
        job.answer = answer
        self.jobs[job.sid] = job
        call.sid = job.sid
        return 202, {}, ["%s=%s; Path=/" % (n_sid, job.sid), "%s=%s; Path=/" % (n_bid, job.bid),
                         "%s=%s; Path=/" % (n_tok, job.qtkn)], None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ats-sim/1"
    sys_version = ""

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.owner.lock:
            self.server.owner._conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.owner.lock:
                self.server.owner._conns.discard(self.connection)

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_PATCH(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def _handle(self):
        sim = self.server.owner
        n = self.headers.get("Content-Length")
        body = b""
        if n:
            try:
                body = self.rfile.read(max(0, min(int(n), 8 << 20)))
            except (ValueError, OSError):
                self.close_connection = True
        sleep = None
        with sim.lock:
            now = sim.clock.now()
            call = Call(self.command, self.path, dict(self.headers.items()), body, now,
                        sim.clock.local(now))
            jar = SimpleCookie()
            try:
                jar.load(self.headers.get("Cookie") or "")
            except Exception:  # a malformed Cookie header is no cookies, as on a real server
                jar = SimpleCookie()
            call.cookies = {k: m.value for k, m in jar.items()}
            sim.calls.append(call)
            try:
                status, hdrs, cookies, doc = sim._process(call)
            except Exception as e:  # the simulator must answer, and say what went wrong
                status, hdrs, cookies, doc = 500, {}, [], {"error": "simulator: %r" % (e,)}
                call.note = "simulator error %r" % (e,)
            if call.cmd is not None or call.kind != "refused":
                sleep = sim._take_fault(call.cmd, ("sleep",))
        delay = sim.latency + (sleep[1] if sleep else 0.0)
        if delay > 0:
            sim._stopping.wait(delay)
        if status == "close":
            with sim.cond:
                call.status = "close"
                sim.cond.notify_all()
            self.close_connection = True
            return
        payload = (json.dumps(doc) + "\n").encode() if doc is not None else b""
        with sim.cond:      # recorded before it is sent: a client that has its answer sees it
            call.status = status
            call.answer_headers = list(hdrs.items()) + [("Set-Cookie", c) for c in cookies]
            call.answer = payload
            sim.cond.notify_all()
        try:
            self.send_response(status)
            if payload:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for k, v in hdrs.items():
                self.send_header(k, v)
            for c in cookies:
                self.send_header("Set-Cookie", c)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if "-v" in sys.argv:
            super().handle_error(request, client_address)
