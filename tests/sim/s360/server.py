"""server.py — a local S-360 (SecuTix) instance for the tests: the REST-RPC backend APIs a CRM
calls (token, contacts, orders) and the webhooks S-360 pushes to the CRM (contacts, orders,
access-control checks). Python standard library only; see README.md for the whole contract.

Design invariants:
  - One lock (self._cond) guards all state: contacts, orders, stock, queues, tokens, the rate
    window, the fault queues and the call record. HTTP handlers never hold it while sleeping or
    while a push waits for the CRM's answer.
  - One clock (Clock) drives everything that depends on time: token expiry, the rate-limit
    window and the webhook schedule. Tests move it with advance(); clock_speed 0 stops it.
  - A webhook payload is sent only by a run (run_now(), advance() past a run time, or the
    background pusher when the clock moves by itself); runs never overlap.
  - Every request and every push attempt is recorded (Call), faulted and refused ones included.
"""

import base64
import collections
import http.client
import http.server
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse

from .data import Season

VERBOSE = False
API_ORDER_TYPES = ("SALE", "RESERVATION", "OPTION")
FAULT_KINDS = ("status", "sleep", "in_progress", "in_progress_done", "inband", "close", "reset")
STREAMS = ("contacts", "orders", "access")


class Clock:
    """Simulated epoch seconds: start + speed * (real seconds since creation) + advanced."""

    def __init__(self, start, speed=1.0):
        self._lock = threading.Lock()
        self._base = float(start)
        self._real0 = time.monotonic()
        self._speed = float(speed)

    def now(self):
        with self._lock:
            return self._base + (time.monotonic() - self._real0) * self._speed

    def advance(self, seconds):
        with self._lock:
            self._base += float(seconds)

    def set_speed(self, speed):
        with self._lock:
            now = self._base + (time.monotonic() - self._real0) * self._speed
            self._base, self._real0, self._speed = now, time.monotonic(), float(speed)

    @property
    def speed(self):
        return self._speed


class Call:
    """One recorded exchange. direction 'api' (a client called the simulator) or 'push' (the
    simulator pushed a webhook payload). status: the HTTP status answered or received, or
    'close'/'reset' (api) / 'error: ...' (push: no answer)."""

    __slots__ = ("t", "sim_time", "direction", "method", "path", "rpc", "headers", "body", "json",
                 "status", "answer", "fault", "stream", "payload_id", "attempt")

    def __init__(self, direction, method, path, headers, body, sim_time):
        self.t = time.monotonic()
        self.sim_time = sim_time
        self.direction = direction
        self.method = method
        self.path = path
        self.rpc = None
        self.headers = dict(headers)
        self.body = body
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            self.json = None
        self.status = None
        self.answer = None
        self.fault = None
        self.stream = None
        self.payload_id = None
        self.attempt = None

    def header(self, name, default=None):
        ln = name.lower()
        for k, v in self.headers.items():
            if k.lower() == ln:
                return v
        return default

    def __repr__(self):
        return "<Call %s %s %s rpc=%s -> %s%s>" % (self.direction, self.method, self.path, self.rpc,
                                                  self.status,
                                                  " fault=%r" % (self.fault,) if self.fault else "")


class Payload:
    """One webhook payload: its items, how often it was sent and what came back."""

    def __init__(self, pid, stream, items):
        self.id = pid
        self.stream = stream
        self.items = items
        self.attempts = 0
        self.answers = []        # status or 'error: ...' per attempt
        self.state = "pending"   # pending -> delivered | dropped


class _Stream:
    def __init__(self, name):
        self.name = name
        self.url = None
        self.auth = None
        self.queue = collections.deque()   # items not yet in a payload
        self.retry = []                    # payloads waiting for their next attempt
        self.delivered = []                # payloads answered 200
        self.dropped = []                  # payloads given up after the last resend


class Simulator:
    """A local S-360 instance. See README.md for every option, fault and record."""

    def __init__(self, institution="myvenue", operator="extcrm", partner="extcrm-myvenue",
                 secret="s360-test-secret", seed=1, host="127.0.0.1", port=0,
                 base_prefix=None, contact_service="v2_21", order_facade="v1_33",
                 rate_limit=180, rate_window=60.0, rate_status=509, count_refused=False,
                 token_ttl=3600.0, interval_minutes=15, per_run=500, per_payload=50,
                 resends=12, push_timeout=30.0, bare_single=False, echo_api_changes=True,
                 push_api_orders=True, point_of_sales_id=1001, time_zone="Europe/Zurich",
                 currency=("CHF", 2), abandoned_state="ABANDONED", big_ids=False,
                 start=1772355600.0, clock_speed=1.0, api_latency=0.0, max_body=8 << 20):
        if not 1 <= int(interval_minutes) <= 1440:
            raise ValueError("interval_minutes must be within 1..1440")
        if per_payload < 1 or per_run < per_payload:
            raise ValueError("need 1 <= per_payload <= per_run")
        if rate_status not in (509, 429):
            raise ValueError("rate_status must be 509 or 429")
        self.institution = institution
        self.credentials = {"operator": operator, "partner": partner, "secret": secret}
        self.host = host
        self._port = port
        self.base_prefix = ("/" + institution) if base_prefix is None else base_prefix.rstrip("/")
        self.contact_service = contact_service
        self.order_facade = order_facade
        self.rate_limit = rate_limit
        self.rate_window = float(rate_window)
        self.rate_status = rate_status
        self.count_refused = count_refused
        self.token_ttl = float(token_ttl)
        self.interval = int(interval_minutes) * 60.0
        self.per_run = int(per_run)
        self.per_payload = int(per_payload)
        self.resends = int(resends)
        self.push_timeout = float(push_timeout)
        self.bare_single = bare_single
        self.echo_api_changes = echo_api_changes
        self.push_api_orders = push_api_orders
        self.point_of_sales_id = point_of_sales_id
        self.max_body = max_body
        self.api_latency = float(api_latency)
        self.clock = Clock(start, clock_speed)
        self.season = Season(seed=seed, institution=institution, time_zone=time_zone,
                             currency=currency, abandoned_state=abandoned_state, big_ids=big_ids,
                             end=start)
        self._cond = threading.Condition()
        self._runlock = threading.Lock()
        self._calls = []
        self._tokens = {}                  # token -> expiry (sim seconds)
        self._token_n = 0
        self._window = collections.deque() # sim times of counted calls
        self._faults = {}                  # rpc name or '*' -> [fault]
        self.contacts = {}                 # contactNumber -> ContactDataResult (S-360's state)
        self.contact_history = {}          # contactNumber -> [(sim time, origin, snapshot)]
        self.orders = {}                   # orderId -> orderDetailsData
        self.stock = {}                    # (performanceId, seatCategoryId) -> seats left
        for p in self.season.performances:
            for c in p["seatCategories"]:
                self.stock[(p["performanceId"], c["seatCategoryId"])] = c["capacity"]
        self._streams = {s: _Stream(s) for s in STREAMS}
        self._payload_n = 0
        self.runs = 0
        self._next_run = self.clock.now() + self.interval
        self._server = None
        self._thread = None
        self._pusher = None
        self._stopping = threading.Event()
        self._conns = set()

    # -----------------------------------------------------------------------------------------
    # lifecycle

    def start(self):
        self._stopping.clear()
        self._server = _HTTPServer((self.host, self._port), _Handler)
        self._server.owner = self
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="s360-http", daemon=True)
        self._thread.start()
        self._pusher = threading.Thread(target=self._push_loop, name="s360-push", daemon=True)
        self._pusher.start()
        return self

    def stop(self):
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._cond:
                conns = list(self._conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server = None
        if self._pusher is not None:
            self._pusher.join(10)
            self._pusher = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._port

    @property
    def url(self):
        """Where the simulator listens (http://127.0.0.1:PORT)."""
        return "http://%s:%d" % (self.host, self._port)

    @property
    def base(self):
        """The instance's API base: url + the institution prefix that stands for the host
        name {institution}.ws.secutix.com."""
        return self.url + self.base_prefix

    def paths(self):
        """The API paths a client calls, under base."""
        return {"auth": "/tnai/backend-apis/v1/auth",
                "getContactData": "/tnco/backend-apis/contactInformationPublicService/%s/"
                                  "getContactData" % self.contact_service,
                "saveIndividualContactData": "/tnco/backend-apis/contactInformationPublicService/"
                                             "%s/saveIndividualContactData" % self.contact_service,
                "createOrUpdateOrder": "/tnseb/backend-apis/externalOrderFacade/%s/"
                                       "createOrUpdateOrder" % self.order_facade,
                "findOrdersByExternalReference": "/tnseb/backend-apis/externalOrderFacade/%s/"
                                                 "findOrdersByExternalReference"
                                                 % self.order_facade}

    # -----------------------------------------------------------------------------------------
    # data and queues

    def add_contacts(self, contacts, push=True):
        """Make contacts exist in S-360 (and queue them on the contact webhook if push)."""
        with self._cond:
            for c in contacts:
                self._store_contact(c, "season")
            if push:
                self._streams["contacts"].queue.extend(contacts)

    def add_orders(self, orders, push=True):
        with self._cond:
            for d in orders:
                self.orders[d["orderId"]] = d
            if push:
                self._streams["orders"].queue.extend({"orderDetailsData": d} for d in orders)

    def add_scans(self, scans):
        with self._cond:
            self._streams["access"].queue.extend(scans)

    def make_season(self, n_contacts, n_orders, t0=None, t1=None, scans=False, push=True):
        """Generate (deterministically from the seed) n_contacts and n_orders over [t0, t1]
        (the season before the clock's start by default), make them exist and queue them."""
        cs = self.season.contacts_batch(n_contacts, t0, t1)
        os_ = self.season.orders_batch(n_orders, cs, t0, t1) if n_orders else []
        self.add_contacts(cs, push)
        self.add_orders(os_, push)
        sc = self.season.scans(os_) if scans else []
        if sc:
            self.add_scans(sc)
        return cs, os_, sc

    def change_contact(self, number, push=True, **fields):
        """An operator edits a contact in S-360: fields of individualContact (firstName,
        lastName, ...) or 'email'; lastUpdateDate becomes the clock's now. Returns the contact."""
        from .data import iso_ms
        with self._cond:
            c = self.contacts[number]
            c = json.loads(json.dumps(c))
            for k, v in fields.items():
                if k == "email":
                    _set_email(c, v)
                else:
                    c.setdefault("individualContact", {})[k] = v
            c["lastUpdateDate"] = iso_ms(self.clock.now(), self.season.tz)
            self._store_contact(c, "operator")
            if push:
                self._streams["contacts"].queue.append(c)
            return c

    def _store_contact(self, c, origin):
        """Caller holds the lock. origin: 'season' (generated), 'operator' (change_contact) or
        'api' (saveIndividualContactData)."""
        self.contacts[c["contactNumber"]] = c
        self.contact_history.setdefault(c["contactNumber"], []).append(
            (self.clock.now(), origin, json.loads(json.dumps(c))))

    def set_webhook(self, stream, url, auth=None):
        """Configure where S-360 pushes a stream ('contacts', 'orders', 'access'). auth: None,
        ('basic', user, password), ('bearer', token) or ('header', name, value); a token in the
        URL is simply part of url."""
        if stream not in STREAMS:
            raise ValueError("stream must be one of %s" % (STREAMS,))
        if auth is not None and auth[0] not in ("basic", "bearer", "header"):
            raise ValueError("auth must be ('basic', u, p), ('bearer', t) or ('header', n, v)")
        with self._cond:
            self._streams[stream].url = url
            self._streams[stream].auth = auth

    # -----------------------------------------------------------------------------------------
    # faults

    def inject(self, rpc, faults):
        """Queue faults for the next calls of an API method ('auth', 'getContactData',
        'saveIndividualContactData', 'createOrUpdateOrder', 'findOrdersByExternalReference',
        or '*' for any), consumed one per call. Kinds: see FAULT_KINDS and README.md."""
        for f in faults:
            if not f or f[0] not in FAULT_KINDS:
                raise ValueError("unknown fault %r" % (f,))
        with self._cond:
            self._faults.setdefault(rpc, []).extend(tuple(f) for f in faults)

    def clear_faults(self):
        with self._cond:
            self._faults.clear()

    # -----------------------------------------------------------------------------------------
    # clock and webhook runs

    def advance(self, seconds=0.0, minutes=0.0):
        """Move the simulated clock; the webhook runs that fall due are done now, in order,
        before advance() returns. Returns the number of runs made."""
        self.clock.advance(seconds + 60.0 * minutes)
        return self._run_due()

    def run_now(self):
        """One webhook run now (outside the schedule). Returns its summary dict."""
        with self._runlock:
            return self._run()

    def run_async(self):
        """One run in a background thread (returned, already started): the test stays free to
        act while a payload is in flight, e.g. kill the CRM."""
        t = threading.Thread(target=self.run_now, name="s360-run", daemon=True)
        t.start()
        return t

    def _run_due(self):
        n = 0
        with self._runlock:
            while not self._stopping.is_set() and self.clock.now() >= self._next_run:
                self._next_run += self.interval
                self._run()
                n += 1
        return n

    def _push_loop(self):
        while not self._stopping.is_set():
            if self.clock.speed > 0:
                self._run_due()
            self._stopping.wait(0.05)

    def _run(self):
        """Push every stream once: the payloads waiting for a resend first, then new payloads of
        at most per_payload items, until per_run items were sent in this stream."""
        summary = {}
        with self._cond:
            run = self.runs + 1
        for name in STREAMS:
            st = self._streams[name]
            with self._cond:
                if st.url is None:
                    continue
                todo, budget = [], self.per_run
                while st.retry and budget >= len(st.retry[0].items):
                    p = st.retry.pop(0)
                    budget -= len(p.items)
                    todo.append(p)
                while st.queue and budget > 0:
                    take = min(self.per_payload, budget, len(st.queue))
                    self._payload_n += 1
                    p = Payload(self._payload_n, name, [st.queue.popleft() for _ in range(take)])
                    budget -= take
                    todo.append(p)
                url, auth = st.url, st.auth
            sent = ok = 0
            for p in todo:
                if self._stopping.is_set():
                    with self._cond:
                        st.retry.append(p)
                    continue
                status = self._push(url, auth, p)
                sent += len(p.items)
                with self._cond:
                    p.attempts += 1
                    p.answers.append(status)
                    if status == 200:
                        p.state = "delivered"
                        st.delivered.append(p)
                        ok += len(p.items)
                    elif p.attempts > self.resends:
                        p.state = "dropped"
                        st.dropped.append(p)
                        if VERBOSE:
                            sys.stderr.write("[s360] run %d: %s payload %d dropped after %d "
                                             "attempts\n" % (run, name, p.id, p.attempts))
                    else:
                        st.retry.append(p)
                    self._cond.notify_all()
            with self._cond:
                st.retry.sort(key=lambda x: x.id)
            summary[name] = {"payloads": len(todo), "items": sent, "accepted": ok}
        with self._cond:
            self.runs = run           # counts finished runs
            self._cond.notify_all()
        return summary

    def _push(self, url, auth, p):
        u = urllib.parse.urlsplit(url)
        body = p.items[0] if self.bare_single and len(p.items) == 1 else p.items
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=UTF-8",
                   "User-Agent": "S-360-Webhook/2 (%s)" % self.institution,
                   "Content-Length": str(len(data))}
        if auth is not None:
            if auth[0] == "basic":
                headers["Authorization"] = "Basic " + base64.b64encode(
                    ("%s:%s" % (auth[1], auth[2])).encode()).decode()
            elif auth[0] == "bearer":
                headers["Authorization"] = "Bearer " + auth[1]
            else:
                headers[auth[1]] = auth[2]
        target = u.path or "/"
        if u.query:
            target += "?" + u.query
        call = Call("push", "POST", target, headers, data, self.clock.now())
        call.stream, call.payload_id, call.attempt = p.stream, p.id, p.attempts + 1
        try:
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=self.push_timeout)
            try:
                conn.request("POST", target, body=data, headers=headers)
                r = conn.getresponse()
                raw = r.read()
                status = r.status
                try:
                    call.answer = json.loads(raw.decode("utf-8")) if raw else None
                except (UnicodeDecodeError, ValueError):
                    call.answer = raw[:2000]
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            status = "error: %s" % (e.__class__.__name__,)
        call.status = status
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()
        return status

    # -----------------------------------------------------------------------------------------
    # what happened

    def calls(self, rpc=None, direction=None, stream=None):
        with self._cond:
            return [c for c in self._calls
                    if (rpc is None or c.rpc == rpc) and (direction is None or
                                                          c.direction == direction)
                    and (stream is None or c.stream == stream)]

    def wait_calls(self, n, rpc=None, direction=None, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [c for c in self._calls
                       if (rpc is None or c.rpc == rpc) and (direction is None or
                                                             c.direction == direction)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("s360 sim: %d of %d call(s) rpc=%s within %.1fs"
                                         % (len(got), n, rpc, timeout))
                self._cond.wait(min(left, 0.1))

    def clear_calls(self):
        with self._cond:
            self._calls.clear()

    def stats(self, stream):
        """Counters of one webhook stream: queued (not yet in a payload), waiting (payloads
        awaiting a resend), delivered / dropped payloads and items, attempts."""
        with self._cond:
            st = self._streams[stream]
            every = st.delivered + st.dropped + st.retry
            return {"queued": len(st.queue), "waiting": len(st.retry),
                    "delivered_payloads": len(st.delivered),
                    "delivered_items": sum(len(p.items) for p in st.delivered),
                    "dropped_payloads": len(st.dropped),
                    "dropped_items": sum(len(p.items) for p in st.dropped),
                    "attempts": sum(p.attempts for p in every)}

    def drops(self, stream=None):
        """Items S-360 gave up on (it only logs them): the number tests assert to be zero."""
        with self._cond:
            names = [stream] if stream else STREAMS
            return sum(len(p.items) for s in names for p in self._streams[s].dropped)

    def delivered_items(self, stream):
        """The items of the payloads answered 200, in the order they were first sent."""
        with self._cond:
            ps = sorted(self._streams[stream].delivered, key=lambda p: p.id)
            return [i for p in ps for i in p.items]

    def payloads(self, stream):
        with self._cond:
            st = self._streams[stream]
            return sorted(st.delivered + st.dropped + st.retry, key=lambda p: p.id)

    def orders_by_reference(self, external_reference):
        with self._cond:
            return [d for d in self.orders.values()
                    if d.get("externalReference") == external_reference]

    # -----------------------------------------------------------------------------------------
    # the API (called by the handler)

    def _conn_opened(self, sock):
        with self._cond:
            self._conns.add(sock)

    def _conn_closed(self, sock):
        with self._cond:
            self._conns.discard(sock)

    def _route(self, path):
        if not path.startswith(self.base_prefix + "/"):
            return None
        rest = path[len(self.base_prefix):]
        for name, p in self.paths().items():
            if rest == p:
                return name
        return None

    def _admit(self, call):
        """Rate limit across all endpoints of the instance: True if the call may proceed."""
        now = self.clock.now()
        with self._cond:
            while self._window and self._window[0] <= now - self.rate_window:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                if self.count_refused:
                    self._window.append(now)
                return False
            self._window.append(now)
            return True

    def _next_fault(self, rpc):
        with self._cond:
            for key in (rpc, "*"):
                q = self._faults.get(key)
                if q:
                    return q.pop(0)
        return None

    def _record(self, call):
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _check_token(self, call):
        auth = call.header("Authorization") or ""
        if not auth.startswith("Bearer "):
            return "missing bearer token"
        tok = auth[7:].strip()
        with self._cond:
            exp = self._tokens.get(tok)
        if exp is None:
            return "unknown token"
        if self.clock.now() >= exp:
            return "token expired"
        return None

    def _api(self, call):
        """(status, headers, body) of an API call that passed routing, rate limit and faults."""
        ctype = (call.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _text(415, "Unsupported Media Type: application/json expected")
        if call.json is None or not isinstance(call.json, dict):
            return _text(400, "Bad Request: a JSON object is expected")
        if call.rpc == "auth":
            return self._auth(call.json)
        why = self._check_token(call)
        if why is not None:
            return 401, {"Content-Type": "application/json",
                         "WWW-Authenticate": 'Bearer error="invalid_token"'}, \
                _dumps({"error": "unauthorized", "message": why})
        return 200, {"Content-Type": "application/json"}, _dumps(
            getattr(self, "_rpc_" + call.rpc)(call.json))

    def _auth(self, body):
        for k in ("operator", "partner", "secret"):
            if not isinstance(body.get(k), str) or not body.get(k):
                return _text(400, "Bad Request: %s is mandatory" % k)
        if any(body[k] != v for k, v in self.credentials.items()):
            return 401, {"Content-Type": "application/json"}, _dumps(
                {"error": "unauthorized", "message": "invalid credentials"})
        with self._cond:
            self._token_n += 1
            tok = base64.urlsafe_b64encode(("%s:%d:%d" % (self.institution, self._token_n,
                                                          self.season.rng.randrange(1 << 30))
                                            ).encode()).decode().rstrip("=")
            self._tokens[tok] = self.clock.now() + self.token_ttl
        return 200, {"Content-Type": "application/json"}, _dumps({"token": tok})

    def _rpc_getContactData(self, body):
        num = body.get("contactNumber")
        if not isinstance(num, str) or not num:
            return _failed(body, "INVALID_INPUT: contactNumber (a string) is mandatory")
        with self._cond:
            c = self.contacts.get(num)
            if c is None:
                return _failed(body, "CONTACT_NOT_FOUND: no contact %s" % num)
            out = dict(c)
        out.update({"requestId": body.get("requestId"), "statusCode": "success",
                    "statusDetail": None})
        return out

    def _rpc_saveIndividualContactData(self, body, done=None):
        from .data import iso_ms
        ind = body.get("individualContact")
        if not isinstance(ind, dict):
            return _failed(body, "INVALID_INPUT: individualContact is mandatory")
        if not isinstance(ind.get("lastName"), str) or not ind["lastName"].strip():
            return _failed(body, "INVALID_INPUT: individualContact.lastName is mandatory")
        for m in body.get("communicationMeans") or []:
            if not isinstance(m, dict) or m.get("type") not in ("EMAIL", "PHONE", "MOBILE",
                                                                 "FAX"):
                return _failed(body, "INVALID_INPUT: communicationMeans.type")
            if m["type"] == "EMAIL" and not _email_ok(m.get("value")):
                return _failed(body, "INVALID_EMAIL: %r" % (m.get("value"),))
        for a in body.get("authorizations") or []:
            if not isinstance(a, dict) or not isinstance(a.get("value"), bool):
                return _failed(body, "INVALID_INPUT: authorizations[].value must be a boolean")
        num = body.get("contactNumber")
        now = self.clock.now()
        with self._cond:
            if num is not None:
                c = self.contacts.get(num) if isinstance(num, str) else None
                if c is None:
                    return _failed(body, "CONTACT_NOT_FOUND: no contact %s" % (num,))
                if "individualContact" not in c:
                    return _failed(body, "INVALID_CONTACT_TYPE: %s is not an individual" % num)
                c = json.loads(json.dumps(c))
            else:
                self.season._next_contact_id += 1
                c = {"contactId": self.season._next_contact_id,
                     "contactNumber": self.season._number(),
                     "creationDate": iso_ms(now, self.season.tz), "role": "PUBLIC",
                     "addresses": [], "communicationMeans": [], "authorizations": [],
                     "contactCriteria": []}
            c["individualContact"] = dict(c.get("individualContact") or {}, **ind)
            for k in ("addresses", "communicationMeans", "authorizations"):
                if k in body:
                    c[k] = body[k]
            c["lastUpdateDate"] = iso_ms(now, self.season.tz)
            self._store_contact(c, "api")
            if self.echo_api_changes:
                self._streams["contacts"].queue.append(c)
        return {"requestId": body.get("requestId"), "statusCode": "success",
                "statusDetail": None, "contactNumber": c["contactNumber"],
                "contactId": c["contactId"]}

    def _rpc_createOrUpdateOrder(self, body):
        from .data import iso_ms, reference_date
        rid = body.get("requestId")
        if not isinstance(rid, str) or not rid:
            return _failed(body, "INVALID_INPUT: requestId is mandatory")
        if body.get("pointOfSalesId") != self.point_of_sales_id:
            return _failed(body, "INVALID_POINT_OF_SALES: %r" % (body.get("pointOfSalesId"),))
        typ = body.get("orderType")
        if typ not in API_ORDER_TYPES:
            return _failed(body, "INVALID_ORDER_TYPE: %r" % (typ,))
        ext = body.get("externalReference")
        if not isinstance(ext, str) or not ext or len(ext) > 50:
            return _failed(body, "INVALID_INPUT: externalReference (1..50 characters)")
        buyer = (body.get("purchasersInfo") or {}).get("contactReference") \
            if isinstance(body.get("purchasersInfo"), dict) else None
        ops = body.get("singleEntryAttributionOperations")
        atts = ops.get("operationAttributions") if isinstance(ops, dict) else None
        if not isinstance(atts, list) or not atts:
            return _failed(body, "INVALID_INPUT: singleEntryAttributionOperations."
                                 "operationAttributions is mandatory")
        lines, need = [], collections.Counter()
        for i, a in enumerate(atts):
            if not isinstance(a, dict):
                return _failed(body, "INVALID_INPUT: operationAttributions[%d]" % i)
            for k in ("performanceId", "seatCategoryId", "audienceSubCategoryId", "quantity"):
                if not isinstance(a.get(k), int) or isinstance(a.get(k), bool):
                    return _failed(body, "INVALID_INPUT: operationAttributions[%d].%s must be "
                                         "an integer" % (i, k))
            perf = self.season.performance(a["performanceId"])
            if perf is None:
                return _failed(body, "PERFORMANCE_NOT_FOUND: %d" % a["performanceId"])
            cat = [c for c in perf["seatCategories"] if c["seatCategoryId"] == a["seatCategoryId"]]
            if not cat:
                return _failed(body, "SEAT_CATEGORY_NOT_FOUND: %d" % a["seatCategoryId"])
            aud = [x for x in perf["audienceSubCategories"]
                   if x["audienceSubCategoryId"] == a["audienceSubCategoryId"]]
            if not aud:
                return _failed(body, "AUDIENCE_SUB_CATEGORY_NOT_FOUND: %d"
                               % a["audienceSubCategoryId"])
            if not 1 <= a["quantity"] <= 50:
                return _failed(body, "INVALID_QUANTITY: %d" % a["quantity"])
            need[(perf["performanceId"], cat[0]["seatCategoryId"])] += a["quantity"]
            lines.append((perf, cat[0], aud[0], a["quantity"]))
        now = self.clock.now()
        with self._cond:
            if not isinstance(buyer, str) or buyer not in self.contacts:
                return _failed(body, "CONTACT_NOT_FOUND: purchasersInfo.contactReference %r"
                               % (buyer,))
            for key, q in need.items():
                if self.stock[key] < q:
                    return _failed(body, "NOT_ENOUGH_SEATS: %d left in seat category %d of "
                                         "performance %d" % (self.stock[key], key[1], key[0]))
            for key, q in need.items():
                self.stock[key] -= q
            d = self.season.order(self.contacts[buyer], typ, now, performance=lines[0][0],
                                  quantity=lines[0][3])
            d["operationDatas"] = [self.season._operation(p, c, a, q) for p, c, a, q in lines]
            total = sum(o["quantity"] * o["unitPrice"] for o in d["operationDatas"])
            d["saleAmount"] = total if typ == "SALE" else 0
            d["reservationAmount"] = total if typ == "RESERVATION" else 0
            d["optionAmount"] = total if typ == "OPTION" else 0
            d["creationDateTime"] = iso_ms(now, self.season.tz)
            d["referenceDate"] = reference_date(now, self.season.tz)
            d["externalReference"] = ext
            d["pointOfSalesId"] = self.point_of_sales_id
            d["salesChannel"] = "EXTERNAL"
            self.orders[d["orderId"]] = d
            if self.push_api_orders:
                self._streams["orders"].queue.append({"orderDetailsData": d})
        data = {"orderId": d["orderId"], "orderState": d["orderState"], "orderType": typ,
                "externalReference": ext, "totalAmount": total,
                "catalogCurrency": dict(d["catalogCurrency"])}
        if "expirationDate" in d:
            data["expirationDate"] = d["expirationDate"]
        return {"requestId": rid, "statusCode": "success", "statusDetail": None,
                "orderUpdateData": data}

    def _rpc_findOrdersByExternalReference(self, body):
        ext = body.get("externalReference")
        if not isinstance(ext, str) or not ext:
            return _failed(body, "INVALID_INPUT: externalReference is mandatory")
        found = [{"orderId": d["orderId"], "orderState": d["orderState"],
                  "orderType": d["orderType"], "externalReference": ext}
                 for d in self.orders_by_reference(ext)]
        return {"requestId": body.get("requestId"), "statusCode": "success",
                "statusDetail": None, "orders": found}


# ---------------------------------------------------------------------------------------------
# helpers


def _dumps(doc):
    return (json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8")


def _text(status, msg):
    return status, {"Content-Type": "text/plain; charset=UTF-8"}, (msg + "\n").encode("utf-8")


def _failed(body, detail, code="failed"):
    return {"requestId": body.get("requestId") if isinstance(body, dict) else None,
            "statusCode": code, "statusDetail": detail}


def _email_ok(v):
    if not isinstance(v, str) or len(v) > 254 or v.count("@") != 1:
        return False
    local, _, domain = v.partition("@")
    return bool(local) and "." in domain and " " not in v and not domain.startswith(".")


def _set_email(c, v):
    for m in c.get("communicationMeans", []):
        if m.get("type") == "EMAIL":
            m["value"] = v
            return
    c.setdefault("communicationMeans", []).append({"type": "EMAIL", "value": v, "isMain": True})


# ---------------------------------------------------------------------------------------------
# HTTP plumbing


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "s360-sim/1"
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
            sys.stderr.write("[s360 %s] %s\n" % (self.server.owner.port, fmt % args))

    def do_GET(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _handle(self):
        owner = self.server.owner
        body = b""
        n = self.headers.get("Content-Length")
        too_big = False
        if n:
            try:
                ln = int(n)
            except ValueError:
                ln = -1
            if ln < 0 or ln > owner.max_body:
                too_big = True
                self.close_connection = True
            else:
                body = self.rfile.read(ln)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body, too_big = self._read_chunked(owner.max_body)
        path = urllib.parse.urlsplit(self.path).path
        call = Call("api", self.command, path, self.headers.items(), body, owner.clock.now())
        call.rpc = owner._route(path)
        self._recorded = False
        try:
            self._answer(owner, call, too_big)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout,
                OSError):
            self.close_connection = True
        finally:
            self._record(owner, call)

    def _read_chunked(self, limit):
        """(body, too_big) of a chunked request body; a malformed one closes the connection."""
        out = bytearray()
        try:
            while True:
                size = int(self.rfile.readline(100).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1000).strip():
                        pass
                    return bytes(out), False
                if len(out) + size > limit:
                    self.close_connection = True
                    return b"", True
                out += self.rfile.read(size)
                self.rfile.readline(10)
        except ValueError:
            self.close_connection = True
            return b"", True

    def _record(self, owner, call):
        # before the first byte of the answer: a client that got its answer finds its call
        if not self._recorded:
            self._recorded = True
            owner._record(call)

    def _send(self, call, status, headers, body):
        call.status = status
        ctype = headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            try:
                call.answer = json.loads(body.decode("utf-8"))
            except ValueError:
                call.answer = body
        else:
            call.answer = body.decode("utf-8", "replace")
        self._record(self.server.owner, call)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _answer(self, owner, call, too_big):
        if call.rpc is None:
            return self._send(call, *_text(404, "Not Found"))
        if call.method != "POST":
            st, h, b = _text(405, "Method Not Allowed")
            h["Allow"] = "POST"
            return self._send(call, st, h, b)
        if not owner._admit(call):
            # S-360's answer over the limit: no Retry-After, the client must back off itself
            return self._send(call, *_text(owner.rate_status, "Bandwidth Limit Exceeded"
                                           if owner.rate_status == 509 else "Too Many Requests"))
        if too_big:
            return self._send(call, *_text(413, "Payload Too Large"))
        if owner.api_latency > 0:
            owner._stopping.wait(owner.api_latency)
        fault = owner._next_fault(call.rpc)
        call.fault = fault
        kind = fault[0] if fault else None
        if kind in ("close", "reset"):
            call.status = kind
            if kind == "reset":
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                except OSError:
                    pass
            self.close_connection = True
            self._record(owner, call)
            return None
        if kind == "status":
            hdrs = {"Content-Type": "text/plain; charset=UTF-8"}
            hdrs.update(fault[2] if len(fault) > 2 and fault[2] else {})
            return self._send(call, fault[1], hdrs, b"injected fault\n")
        if kind == "sleep":
            owner._stopping.wait(fault[1])
            if owner._stopping.is_set():
                self.close_connection = True
                call.status = "close"
                return None
        if kind in ("in_progress", "inband") and call.rpc != "auth":
            code = "in_progress" if kind == "in_progress" else fault[1]
            detail = "request is being processed, try again shortly" \
                if kind == "in_progress" else fault[2]
            rid = call.json.get("requestId") if isinstance(call.json, dict) else None
            return self._send(call, 200, {"Content-Type": "application/json"}, _dumps(
                {"requestId": rid, "statusCode": code, "statusDetail": detail}))
        status, headers, body = owner._api(call)
        if kind == "in_progress_done" and status == 200 and call.rpc != "auth":
            # the work is done but the answer says in_progress: the client finds the result by
            # looking it up (for an order: by its external reference)
            doc = json.loads(body.decode("utf-8"))
            body = _dumps({"requestId": doc.get("requestId"), "statusCode": "in_progress",
                           "statusDetail": "request is being processed, try again shortly"})
        return self._send(call, status, headers, body)
