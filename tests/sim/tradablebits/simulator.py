"""simulator.py — a local Tradable Bits CRM API (fans, tickets, activities, tags, segments) for
the connector's tests, strict enough to fail a wrong client (Python standard library only).

One Simulator is a ThreadingHTTPServer on 127.0.0.1 (port 0 by default) with one account whose
data comes from a seed (data.py). It speaks HTTP/1.1 keep-alive; every answer is JSON
{"meta": {...}, "data": ...} with a Content-Length.

What it enforces, in this order, on every call:
  1. the route: an unknown path is 404, a known path with another method is 405;
  2. the body: a POST must be application/x-www-form-urlencoded (a JSON or multipart body is a
     400, nothing is stored); bodies over max_body bytes are 413; chunked bodies are 411;
  3. the keys: Api-Key/Api-Secret headers, or api_key/api_secret in the form body or the query
     string. No key or an unknown key is 401; a known key with a missing or wrong secret is 403;
     a key without the call's scope (crm, segments) is 403;
  4. the rate limit: at most rate_limit accepted calls per key in any rate_window seconds of the
     simulated clock; the next is 429 (Retry-After: whole seconds until a slot frees, unless
     retry_after=False) and is not counted;
  5. the parameters' place and names: a GET's in the query string (a GET with a body is a 400),
     a POST's in the body (anything but the keys in its query string is a 400); a parameter
     the call does not document is a 400 naming it;
  6. the call's own rules: limits, windows, date formats, search_uid continuations, the bulk
     limit, required ticket fields.
A bug in the simulator answers 500 "simulator_error" rather than hanging the client.

State lives under one lock and survives stop()/start() (same port), so a test can take the
vendor down between two pages. The clock is the simulated one (Clock): timestamps written by
the API, search_uid expiry and the rate window all read it, so a test advances it instead of
sleeping.
"""

import bisect
import calendar
import collections
import datetime
import decimal
import http.server
import json
import math
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid

from . import data as simdata

TIME_SCALE = float(os.environ.get("E2E_TIME_SCALE", "1") or "1")
WAIT_TIMEOUT = 30.0 * TIME_SCALE
VERBOSE = bool(os.environ.get("E2E_VERBOSE"))

API_PREFIX = "/api/v1"

# operation -> (method, path under API_PREFIX, scope). Only POST /crm/tickets, GET /crm/fans and
# GET /crm/activities are the vendor's published paths; the others are this simulator's guesses
# (README "assumptions to confirm with the vendor") and can be replaced through paths=.
DEFAULT_PATHS = collections.OrderedDict([
    ("tickets_bulk", ("POST", "/crm/tickets/bulk", "crm")),
    ("tickets_create", ("POST", "/crm/tickets", "crm")),
    ("tickets_list", ("GET", "/crm/tickets", "crm")),
    ("ticket_get", ("GET", "/crm/tickets/{ticket_id}", "crm")),
    ("fans_updated", ("GET", "/crm/fans/updated", "crm")),
    ("fans_search", ("GET", "/crm/fans", "crm")),
    ("fan_create", ("POST", "/crm/fans", "crm")),
    ("fan_get", ("GET", "/crm/fans/{fan_id}", "crm")),
    ("fan_update", ("POST", "/crm/fans/{fan_id}", "crm")),
    ("activities_list", ("GET", "/crm/activities", "crm")),
    ("tags_list", ("GET", "/crm/tags", "crm")),
    ("tag_create", ("POST", "/crm/tags", "crm")),
    ("tag_add", ("POST", "/crm/tags/{tag_id}/fans", "crm")),
    ("tag_remove", ("POST", "/crm/tags/{tag_id}/fans/remove", "crm")),
    ("segments_list", ("GET", "/segments", "segments")),
    ("segment_status", ("GET", "/segments/{segment_type}/{segment_id}", "segments")),
    ("segment_fans", ("GET", "/segments/{segment_type}/{segment_id}/fans", "segments")),
])

# The parameters each call documents. Any other parameter is a 400 naming it: a client that
# pages with a parameter the call does not have (offset=, cursor=) would otherwise get the
# first page forever. Documented filters the simulator does not model are accepted and not
# applied (FILTERS_NOT_APPLIED).
FANS_SEARCH_PARAMS = frozenset("""
    include_recent_entry include_tags include_business_opt_ins name crm_active_days
    crm_inactive_days crm_start_active_date crm_end_active_date fan_youngest_age fan_oldest_age
    fan_incl_snapshot_uids fan_excl_snapshot_uids fan_tags fan_tag_relations fan_networks
    fan_is_subscribed fan_is_optout fan_is_phone_subscribed fan_postal_codes fan_provinces
    fan_rating fan_gender fan_source fan_metro_areas fan_start_creation_date
    fan_end_creation_date idol_names idol_relations ticket_event_name ticket_price_code
    ticket_start_purchase_date ticket_end_purchase_date ticket_venue_name ticket_venue_provinces
    ticket_purchased_days ticket_artist_name ticket_start_event_date ticket_end_event_date
    ticket_seat_price_min ticket_seat_price_max ticket_seat_count_min ticket_seat_count_max
    ticket_sales_count_min ticket_sales_count_max ticket_is_negative search_uid limit
    max_count""".split())
CALL_PARAMS = {
    "tickets_list": frozenset(("min_ticket_id", "max_ticket_id", "min_purchase_date",
                               "max_purchase_date", "min_last_update_date",
                               "max_last_update_date", "email", "limit", "data",
                               "include_deleted")),
    "ticket_get": frozenset(),
    "fans_search": FANS_SEARCH_PARAMS,
    "fans_updated": frozenset(("last_update_date", "min_time_key")),
    "fan_get": frozenset(),
    "activities_list": frozenset(("min_activity_id", "max_activity_id", "limit", "page_tab_id",
                                  "activity_date", "include_details")),
    "tags_list": frozenset(("start_date", "end_date")),
    "tag_create": frozenset(("tag_name",)),
    "tag_add": frozenset(("fan_id",)),
    "tag_remove": frozenset(("fan_id",)),
    "segments_list": frozenset(),
    "segment_status": frozenset(),
    "segment_fans": frozenset(("search_uid", "limit")),
}
FILTERS_NOT_APPLIED = FANS_SEARCH_PARAMS - {
    "include_tags", "name", "fan_is_subscribed", "fan_is_optout", "fan_start_creation_date",
    "fan_end_creation_date", "fan_tags", "search_uid", "limit", "max_count"}
AUTH_PARAMS = ("api_key", "api_secret")

FAULT_KINDS = ("status", "sleep", "close", "reset", "truncate", "inband")

TRUE_WORDS = ("true", "on", "1", "yes")
FALSE_WORDS = ("false", "off", "0", "no")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TIME_KEY_RE = re.compile(r"^(\d{1,12})_(\d{1,3})_(\d{1,18})$")
GENDERS = ("male", "female", "diverse", "other", "")

TICKET_REQUIRED = ("first_name", "last_name", "email", "purchase_timestamp", "paid_amount",
                   "num_seats", "event_date", "event_name")
TICKET_FIELDS = TICKET_REQUIRED + (
    "phone", "customer_key", "ticket_key", "price_code", "is_subscribed", "is_phone_subscribed",
    "city", "province", "postal_code", "country_code", "artist_name", "venue_name", "event_key",
    "network", "order_key", "is_deleted", "fan_source")
FAN_FIELDS = ("first_name", "last_name", "email", "password", "display_name", "gender",
              "is_subscribed", "is_phone_subscribed", "is_confirmed", "is_phone_confirmed",
              "phone", "birth_date", "ip_address", "latitude", "longitude", "fan_source",
              "is_optout", "country_code", "province", "city", "postal_code", "idol_names")


class ApiError(Exception):
    """An answer other than 200, raised by a handler: (status, error kind, message)."""

    def __init__(self, status, kind, message, headers=None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers or {}


# ---------------------------------------------------------------------------------------------
# time


class Clock:
    """The simulated clock, in UTC epoch seconds. Running (the default) it moves with real time
    from `start`; frozen it moves only by advance()/set(), so a test controls 'now' exactly."""

    def __init__(self, start=simdata.DEFAULT_START, frozen=False):
        self._lock = threading.Lock()
        self._base = float(start)
        self._m0 = time.monotonic()
        self._frozen = frozen

    def now(self):
        with self._lock:
            if self._frozen:
                return self._base
            return self._base + (time.monotonic() - self._m0)

    def freeze(self):
        with self._lock:
            if not self._frozen:
                self._base += time.monotonic() - self._m0
                self._frozen = True

    def run(self):
        with self._lock:
            if self._frozen:
                self._m0 = time.monotonic()
                self._frozen = False

    def advance(self, seconds):
        with self._lock:
            self._base += float(seconds)

    def set(self, epoch):
        with self._lock:
            self._base = float(epoch)
            self._m0 = time.monotonic()


def iso(epoch):
    """ISO 8601 UTC with an offset, as the vendor's *_iso and date fields are rendered."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).isoformat()


def gmt(epoch):
    """'YYYY-MM-DD HH:MI:SS' in GMT, the ticket input format."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(epoch)))


def parse_gmt(value):
    """Strict 'YYYY-MM-DD HH:MI:SS' (GMT) -> epoch, else None."""
    try:
        t = time.strptime(value, "%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", value):
        return None
    return calendar.timegm(t)


def parse_iso8601(value):
    """An ISO 8601 date or date-time -> epoch (naive = UTC), else None."""
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def parse_date_filter(name, value, end_of_day):
    """A date filter: 'YYYY-MM-DD' (a whole day: its start, or its end when end_of_day) or a
    date-time ('YYYY-MM-DD HH:MI:SS' or ISO 8601). ApiError 400 otherwise."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value or ""):
        try:
            d = datetime.date.fromisoformat(value)
        except ValueError:
            raise ApiError(400, "invalid_parameter", "%s: not a date: %r" % (name, value))
        t = calendar.timegm(d.timetuple())
        return t + 86400 - 1e-6 if end_of_day else t
    t = parse_gmt(value)
    if t is None:
        t = parse_iso8601(value)
    if t is None:
        raise ApiError(400, "invalid_parameter", "%s: not a date: %r" % (name, value))
    return t


def parse_bool(name, value, default=None):
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise ApiError(400, "invalid_parameter", "%s: not a boolean: %r" % (name, value))


def parse_int(name, value, lo=None, hi=None, default=None):
    if value is None or value == "":
        return default
    if not re.fullmatch(r"-?\d{1,18}", value.strip()):
        raise ApiError(400, "invalid_parameter", "%s: not an integer: %r" % (name, value))
    n = int(value)
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise ApiError(400, "invalid_parameter", "%s: %d is out of range [%s, %s]"
                       % (name, n, lo, hi))
    return n


def time_key(epoch, ms, fan_id):
    return "%d_%03d_%d" % (int(epoch), ms, fan_id)


# ---------------------------------------------------------------------------------------------
# the call record


class Call:
    """One recorded call. headers, form and query (dicts of lists) keep what was sent, except that
    the secret (Api-Secret header, api_secret field) reads '***' once checked; answer is the
    decoded JSON answer (None for a broken one); status is the HTTP status, or
    'close'/'reset'/'truncate'; t is time.monotonic() at arrival, wall is time.time() then (to
    place a call in the hub's wall-clock windows: a fixed offset between the two clocks drifts
    while the system clock is slewed), sim_time the simulated clock;
    op is the operation name (None when the path matched none); api_key/key_via say which key
    came and how ('header', 'body', 'query')."""

    __slots__ = ("t", "wall", "sim_time", "method", "path", "raw_path", "op", "params", "query", "form",
                 "content_type", "headers", "body", "api_key", "key_via", "status", "answer",
                 "fault", "retry_after", "_secret")

    def __init__(self, method, raw_path, headers, sim_time):
        self.t = time.monotonic()
        self.wall = time.time()
        self.sim_time = sim_time
        self.method = method
        self.raw_path = raw_path
        u = urllib.parse.urlsplit(raw_path)
        self.path = urllib.parse.unquote(u.path)
        self.query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        self.params = {}
        self.op = None
        self.form = {}
        self.headers = {k: ("***" if k.lower() == "api-secret" else v)
                        for k, v in headers.items()}
        self.content_type = headers.get("Content-Type")
        self._secret = headers.get("Api-Secret")    # for the key check only, never recorded
        self.body = b""
        self.api_key = None
        self.key_via = None
        self.status = None
        self.answer = None
        self.fault = None
        self.retry_after = None

    def header(self, name, default=None):
        ln = name.lower()
        for k, v in self.headers.items():
            if k.lower() == ln:
                return v
        return default

    def __repr__(self):
        return "<Call %s %s op=%s -> %s%s>" % (self.method, self.raw_path, self.op, self.status,
                                              " fault=%r" % (self.fault,) if self.fault else "")


# ---------------------------------------------------------------------------------------------
# HTTP plumbing


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tradablebits-sim/1"
    sys_version = ""
    # headers and body go out in separate writes: without TCP_NODELAY every answer would wait
    # for the client's delayed ACK (40 ms), which a 600-call rate test cannot afford
    disable_nagle_algorithm = True

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
            sys.stderr.write("[tbsim %s] %s\n" % (self.server.owner.port, fmt % args))

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_PATCH(self):
        self._handle()

    def _handle(self):
        owner = self.server.owner
        call = Call(self.command, self.path, self.headers, owner.clock.now())
        try:
            early = self._read_body(owner, call)
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            owner._serve(self, call, early)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout,
                OSError):
            self.close_connection = True

    def _read_body(self, owner, call):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return ApiError(411, "length_required", "chunked bodies are not accepted; "
                            "send Content-Length")
        n = self.headers.get("Content-Length")
        if not n:
            return None
        size = int(n)
        if size < 0:
            raise ValueError("negative Content-Length")
        if size > owner.max_body:
            self.close_connection = True
            return ApiError(413, "too_large", "body over %d bytes" % owner.max_body)
        call.body = self.rfile.read(size)
        return None

    def send_answer(self, call, status, doc, headers=None, truncate=False):
        body = (json.dumps(doc) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if truncate else body)
        self.wfile.flush()
        if truncate:
            self.close_connection = True


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)


# ---------------------------------------------------------------------------------------------
# the simulator


class Simulator:
    """A Tradable Bits account behind a local HTTP API. See README.md for every option."""

    def __init__(self, seed=1, fans=60, tickets=150, activities=80,
                 keys=None, rate_limit=600, rate_window=60.0, retry_after=True,
                 bulk_max=100, bulk_field="tickets", tickets_max_limit=1000,
                 tickets_default_limit=1000, search_max_limit=999, search_default_limit=100,
                 search_max_count=1000000, search_default_max_count=100000,
                 search_ttl=900.0, fans_updated_page=1000, activities_max_limit=200,
                 tags_max_rows=10000, tag_batch_max=1000, segment_max_limit=10000,
                 segment_default_limit=1000, require_ticket_key=False, type_drift=False,
                 tag_touches_fan=True,
                 latency=0.0, max_body=8 * 1024 * 1024, paths=None, start=None, clock=None,
                 host="127.0.0.1", account_id=7001):
        self.host = host
        self.port = None
        self.url = None
        self.clock = clock or Clock(start if start is not None else simdata.DEFAULT_START)
        self.keys = keys if keys is not None else {
            "tb-test-key": {"secret": "tb-test-secret", "scopes": {"crm", "segments"}}}
        self.rate_limit = rate_limit
        self.rate_window = float(rate_window)
        self.retry_after = retry_after
        self.bulk_max = bulk_max
        self.bulk_field = bulk_field
        self.tickets_max_limit = tickets_max_limit
        self.tickets_default_limit = tickets_default_limit
        self.search_max_limit = search_max_limit
        self.search_default_limit = search_default_limit
        self.search_max_count = search_max_count
        self.search_default_max_count = search_default_max_count
        self.search_ttl = float(search_ttl)
        self.fans_updated_page = fans_updated_page
        self.activities_max_limit = activities_max_limit
        self.tags_max_rows = tags_max_rows
        self.tag_batch_max = tag_batch_max
        self.segment_max_limit = segment_max_limit
        self.segment_default_limit = segment_default_limit
        self.require_ticket_key = require_ticket_key
        self.type_drift = type_drift
        self.tag_touches_fan = tag_touches_fan
        self.latency = float(latency)
        self.max_body = max_body
        self.paths = collections.OrderedDict(DEFAULT_PATHS)
        for op, v in (paths or {}).items():
            if op not in DEFAULT_PATHS:
                raise ValueError("unknown operation %r" % (op,))
            self.paths[op] = (v[0], v[1], DEFAULT_PATHS[op][2]) if len(v) == 2 else tuple(v)
        self._routes = self._compile_routes()

        # whole seconds: the same seed gives the same account whatever the clock's fraction
        acct = simdata.generate(seed, fans, tickets, activities,
                                start=int(start if start is not None else self.clock.now()),
                                account_id=account_id)
        self.account_id = acct["account_id"]
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._fans = collections.OrderedDict((f["fan_id"], f) for f in acct["fans"])
        self._tickets = collections.OrderedDict((t["ticket_id"], t) for t in acct["tickets"])
        self._activities = list(acct["activities"])
        self._tags = collections.OrderedDict((t["tag_id"], t) for t in acct["tags"])
        self._segments = acct["segments"]
        self._next = dict(acct["next_ids"])
        self._searches = {}
        # indexes, so a large account (a benchmark's) answers at once: tickets are kept in
        # ascending ticket_id (new ids only grow); the updated-fans order is rebuilt lazily
        self._ticket_ids = list(self._tickets)
        self._fan_order = None
        self._reindex()
        self._rate = collections.defaultdict(collections.deque)
        self._faults = collections.defaultdict(collections.deque)
        self._log = []
        self._httpd = None
        self._thread = None
        self._stopping = threading.Event()
        self._conns = set()

    def _reindex(self):
        self._by_email = {}
        for f in self._fans.values():
            if f.get("email"):
                self._by_email.setdefault(f["email"].lower(), f)
        self._by_ticket_key = {}
        for t in self._tickets.values():
            if t.get("ticket_key"):
                self._by_ticket_key.setdefault(t["ticket_key"], t)

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, port=None):
        """Listen on port (default: the previous port after a stop(), else a free one)."""
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        if port is None:
            port = self.port or 0
        self._httpd = _HTTPServer((self.host, port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.url = "http://%s:%d" % (self.host, self.port)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="tbsim-%d" % self.port)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and cut open keep-alive connections; all state is kept."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)
        self._httpd = None
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def running(self):
        return self._httpd is not None

    @property
    def base_url(self):
        """The API base a connector is configured with, e.g. http://127.0.0.1:PORT/api/v1/."""
        return self.url + API_PREFIX + "/"

    def address(self, op, **ids):
        """Full URL of an operation, with its {placeholders} filled from ids."""
        return self.url + API_PREFIX + self.paths[op][1].format(**ids)

    def _conn_opened(self, sock):
        with self._lock:
            self._conns.add(sock)

    def _conn_closed(self, sock):
        with self._lock:
            self._conns.discard(sock)

    def _compile_routes(self):
        routes = []
        for op, (method, tmpl, scope) in self.paths.items():
            rx = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(API_PREFIX + tmpl))
            routes.append((re.compile(rx + "/?$"), method, op, scope))
        return routes

    # -- fault switches and the call record ----------------------------------------------------
    def inject(self, op, *faults):
        """Queue faults for an operation name (or '*' for any call), consumed one per call:
          ("status", code[, headers[, body]])  answer that status (default body: the error
                                                shape) without doing the call
          ("sleep", seconds)                    delay, then do the call normally
          ("close",) / ("reset",)               drop the connection without answer (RST for reset)
          ("truncate",)                         do the call, send half the answer, close
          ("inband", message)                   200 with meta.status "error" and no data, call not
                                                done
        Faults apply after routing, before the key check (a fault is the vendor's, not the
        client's)."""
        for f in faults:
            if not f or f[0] not in FAULT_KINDS:
                raise ValueError("unknown fault %r" % (f,))
        if op != "*" and op not in self.paths:
            raise ValueError("unknown operation %r" % (op,))
        with self._lock:
            self._faults[op].extend(faults)

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    def calls(self, op=None):
        """The recorded calls (answered or broken), in arrival order; op filters."""
        with self._lock:
            return [c for c in self._log if op is None or c.op == op]

    def wait_calls(self, n, op=None, timeout=None):
        """Wait until n calls (op filters) have been answered; returns them."""
        deadline = time.monotonic() + (timeout if timeout is not None else WAIT_TIMEOUT)
        with self._cond:
            while True:
                got = [c for c in self._log if (op is None or c.op == op)
                       and c.status is not None]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %d calls of %s (got %d)"
                                         % (n, op or "any op", len(got)))
                self._cond.wait(min(left, 0.1))

    def writes(self):
        """The recorded calls that could change the account (every POST), answered or not: a
        dry run must leave this empty."""
        with self._lock:
            return [c for c in self._log if c.method != "GET"]

    def clear_calls(self):
        with self._lock:
            self._log = []

    def reset_rate(self):
        """Forget the calls counted in the rate window (every key)."""
        with self._lock:
            self._rate.clear()

    # -- test-side views and changes of the account ------------------------------------------
    def fans(self):
        """Every fan in the updated-fans answer shape (plus email), sorted by fan_id."""
        with self._lock:
            return [self._fan_doc(f, full=True) for f in sorted(self._fans.values(),
                                                                key=lambda f: f["fan_id"])]

    def fan(self, fan_id=None, email=None):
        with self._lock:
            f = self._fans.get(fan_id) if fan_id is not None else self._fan_by_email(email)
            return self._fan_doc(f, full=True) if f else None

    def tickets(self, include_deleted=True):
        """Every ticket in the list answer shape, sorted by ticket_id."""
        with self._lock:
            return [self._ticket_doc(t) for t in self._tickets.values()
                    if include_deleted or not t["is_deleted"]]

    def ticket_by_key(self, ticket_key):
        with self._lock:
            t = self._by_ticket_key.get(ticket_key)
            return self._ticket_doc(t) if t else None

    def activities(self):
        with self._lock:
            return [self._activity_doc(a) for a in self._activities]

    def tag(self, tag_name):
        """{"tag_id", "tag_name", "members": sorted fan ids} or None."""
        with self._lock:
            t = self._tag_by_name(tag_name)
            if t is None:
                return None
            return {"tag_id": t["tag_id"], "tag_name": t["tag_name"],
                    "members": sorted(t["members"])}

    def tag_members(self, tag_name):
        t = self.tag(tag_name)
        return t["members"] if t else None

    def update_fan(self, fan_id, **fields):
        """Change a fan as the vendor's own UI would: fields set, last update = now."""
        with self._lock:
            f = self._fans[fan_id]
            f.update(fields)
            self._touch_fan(f)
            self._reindex()
            return self._fan_doc(f, full=True)

    def add_fan(self, **fields):
        """A new fan created now; returns its fan_id."""
        with self._lock:
            return self._new_fan(fields)["fan_id"]

    def update_ticket(self, ticket_id, **fields):
        with self._lock:
            t = self._tickets[ticket_id]
            t.update(fields)
            t["updated"] = self.clock.now()
            self._reindex()
            return self._ticket_doc(t)

    def delete_ticket(self, ticket_id):
        """Mark a ticket deleted now (is_deleted, last update moves)."""
        return self.update_ticket(ticket_id, is_deleted=True)

    def delete_tag(self, tag_name):
        """Delete a tag as the vendor's UI would (its members lose it); True if it existed."""
        with self._lock:
            t = self._tag_by_name(tag_name)
            if t is None:
                return False
            del self._tags[t["tag_id"]]
            return True

    def add_activity(self, fan_id, campaign_title="Spring Giveaway", app_type="contest",
                     is_subscribed=None):
        """A new activity now; fan_id None is an activity without a fan (a fan deleted since).
        is_subscribed: the opt-in the entry's form carried (None: the fan's own flag)."""
        with self._lock:
            f = self._fans[fan_id] if fan_id is not None else None
            a = {"activity_id": self._next_id("activity"), "account_id": self.account_id,
                 "fan_id": fan_id, "campaign_title": campaign_title, "app_type": app_type,
                 "page_tab_id": 300, "stream_key": None,
                 "ip_address": f["ip_address"] if f else None,
                 "user_key": None, "name": "%s %s" % (f["first_name"], f["last_name"]) if f
                 else None,
                 "is_subscribed": bool(f and f["is_subscribed"]) if is_subscribed is None
                 else is_subscribed,
                 "is_phone_subscribed": bool(f and f["is_phone_subscribed"]),
                 "created": self.clock.now()}
            self._activities.append(a)
            return a["activity_id"]

    # -- serving --------------------------------------------------------------------------------
    def _route(self, call):
        allowed = []
        for rx, method, op, scope in self._routes:
            m = rx.match(call.path)
            if m:
                if method == call.method:
                    return op, scope, m.groupdict()
                allowed.append(method)
        if allowed:
            raise ApiError(405, "method_not_allowed", "use %s" % "/".join(sorted(set(allowed))),
                           {"Allow": ", ".join(sorted(set(allowed)))})
        raise ApiError(404, "not_found", "no such call: %s %s" % (call.method, call.path))

    def _serve(self, handler, call, early):
        with self._lock:
            self._log.append(call)
        fault = None
        try:
            if early is not None:
                raise early
            call.op, scope, call.params = self._route(call)
            with self._lock:
                for k in (call.op, "*"):
                    if self._faults.get(k):
                        fault = self._faults[k].popleft()
                        break
            call.fault = fault
            kind = fault[0] if fault else None
            if kind in ("close", "reset"):
                if kind == "reset":
                    try:
                        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                      struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                handler.close_connection = True
                self._finish(call, kind, None)
                return
            if kind == "status":
                hdrs = dict(fault[2]) if len(fault) > 2 and fault[2] else {}
                doc = fault[3] if len(fault) > 3 and fault[3] is not None else \
                    _error_doc(fault[1], "injected", "injected fault")
                self._finish(call, fault[1], doc)
                handler.send_answer(call, fault[1], doc, hdrs)
                return
            if kind == "sleep":
                self._stopping.wait(fault[1])
                if self._stopping.is_set():
                    handler.close_connection = True
                    self._finish(call, "close", None)
                    return
            if self.latency > 0:
                self._stopping.wait(self.latency)
            form = self._parse_body(call)
            call.form = form
            try:
                self._authenticate(call, scope)
            finally:
                for d in (call.form, call.query):
                    if "api_secret" in d:
                        d["api_secret"] = ["***" for _ in d["api_secret"]]
            self._rate_check(call)
            if kind == "inband":
                doc = {"meta": {"status": "error", "code": 200, "error": "inband",
                                "message": fault[1]}, "data": []}
                self._finish(call, 200, doc)
                handler.send_answer(call, 200, doc)
                return
            args = self._check_params(call, form)
            with self._lock:
                doc = getattr(self, "_op_" + call.op)(call, args, form)
            self._finish(call, 200, doc)
            handler.send_answer(call, 200, doc, truncate=kind == "truncate")
            if kind == "truncate":
                call.status = "truncate"
        except ApiError as e:
            doc = _error_doc(e.status, e.kind, e.message)
            hdrs = dict(e.headers)
            if e.status == 429 and "Retry-After" in hdrs:
                call.retry_after = int(hdrs["Retry-After"])
            self._finish(call, e.status, doc)
            handler.send_answer(call, e.status, doc, hdrs)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            raise
        except Exception as e:      # a bug of the simulator: a visible 500, never a hang
            doc = _error_doc(500, "simulator_error", "%s: %s" % (type(e).__name__, e))
            self._finish(call, 500, doc)
            handler.send_answer(call, 500, doc)

    def _finish(self, call, status, doc):
        with self._cond:
            call.status = status
            call.answer = doc
            self._cond.notify_all()

    def _parse_body(self, call):
        """The form fields of a POST (dict of lists); GETs have none. Strict on encoding."""
        if call.method == "GET":
            return {}
        ctype = (call.content_type or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            if not call.body and not ctype:
                return {}
            raise ApiError(400, "invalid_content_type",
                           "the body must be application/x-www-form-urlencoded, got %r"
                           % (call.content_type or "no Content-Type",))
        try:
            text = call.body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_encoding", "the form body is not UTF-8")
        if text.lstrip().startswith(("{", "[")):
            raise ApiError(400, "invalid_content_type",
                           "a JSON document is not a form body")
        try:
            return urllib.parse.parse_qs(text, keep_blank_values=True, strict_parsing=bool(text),
                                         max_num_fields=20000)
        except ValueError as e:
            raise ApiError(400, "invalid_form", "bad form body: %s" % e)

    def _check_params(self, call, form):
        """The call's parameters (last value per name): a GET's from the query string, a
        POST's from the body. Strict on where they travel and on their names."""
        if call.method == "GET":
            if call.body:
                raise ApiError(400, "invalid_parameter",
                               "a GET takes its parameters in the query string, not a body")
            given = call.query
        else:
            extra = sorted(k for k in call.query if k not in AUTH_PARAMS)
            if extra:
                raise ApiError(400, "invalid_parameter", "parameters go in the form body, not "
                               "the query string: %s" % ", ".join(extra))
            given = form
        allowed = CALL_PARAMS.get(call.op)
        if allowed is not None:
            unknown = sorted(k for k in given if k not in allowed and k not in AUTH_PARAMS)
            if unknown:
                raise ApiError(400, "invalid_parameter", "unknown parameter %s for %s"
                               % (", ".join(unknown), call.op))
        return {k: v[-1] for k, v in given.items()}

    def _authenticate(self, call, scope):
        hk = call.header("Api-Key")
        hs = call._secret
        key, secret, via = None, None, None
        if hk:
            key, secret, via = hk, hs, "header"
        elif call.form.get("api_key"):
            key, via = call.form["api_key"][-1], "body"
            secret = (call.form.get("api_secret") or [None])[-1]
        elif call.query.get("api_key"):
            key, via = call.query["api_key"][-1], "query"
            secret = (call.query.get("api_secret") or [None])[-1]
        if secret is None:
            secret = hs or (call.form.get("api_secret") or call.query.get("api_secret")
                            or [None])[-1]
        call.api_key, call.key_via = key, via
        if not key:
            raise ApiError(401, "missing_api_key", "an api_key is required")
        spec = self.keys.get(key)
        if spec is None:
            raise ApiError(401, "invalid_api_key", "unknown api_key")
        if secret != spec.get("secret"):
            raise ApiError(403, "invalid_api_secret",
                           "this call needs the key's api_secret" if not secret
                           else "api_secret does not match the api_key")
        if scope not in spec.get("scopes", ()):
            raise ApiError(403, "missing_scope", "the key lacks the %r scope" % scope)

    def _rate_check(self, call):
        if not self.rate_limit:
            return
        now = self.clock.now()
        with self._lock:
            q = self._rate[call.api_key]
            while q and q[0] <= now - self.rate_window:
                q.popleft()
            if len(q) >= self.rate_limit:
                wait = max(1, int(math.ceil(q[0] + self.rate_window - now)))
                hdrs = {"Retry-After": str(wait)} if self.retry_after else {}
                raise ApiError(429, "rate_limited", "more than %d calls in %g seconds"
                               % (self.rate_limit, self.rate_window), hdrs)
            q.append(now)

    # -- shapes ---------------------------------------------------------------------------------
    def _fan_doc(self, f, full=False, tags=True):
        d = {k: f.get(k) for k in (
            "fan_id", "account_id", "first_name", "last_name", "latitude", "longitude", "city",
            "province", "country_code", "metro_area", "postal_code", "ip_address", "is_optout",
            "is_subscribed", "is_phone_subscribed", "gender", "rating", "birth_date", "phone",
            "is_confirmed", "is_phone_confirmed", "display_name", "fields", "last_page_tab_id",
            "last_campaign_name")}
        d["add_phone"] = None
        d["email"] = f["email"]
        if tags:
            d["tags"] = self._fan_tags(f["fan_id"])
        d["fan_time_key"] = time_key(f["updated"], f["updated_ms"], f["fan_id"])
        d["creation_timestamp"] = int(f["created"])
        d["last_update_timestamp"] = int(f["updated"])
        d["creation_timestamp_iso"] = iso(f["created"])
        d["last_update_timestamp_iso"] = iso(f["updated"])
        if full:
            d["fan_source"] = f.get("fan_source")
        return d

    def _search_doc(self, f, include_tags):
        d = {k: f.get(k) for k in (
            "fan_id", "account_id", "first_name", "last_name", "province", "latitude",
            "longitude", "ip_address", "country_code", "city", "is_subscribed",
            "is_phone_subscribed", "rating", "phone", "birth_date", "metro_area", "postal_code",
            "fields", "gender", "last_page_tab_id", "last_campaign_name")}
        d["name"] = "%s %s" % (f.get("first_name") or "", f.get("last_name") or "")
        d["email"] = f["email"]
        d["creation_timestamp"] = int(f["created"])
        d["opted_in_business_ids"] = []
        if include_tags:
            d["tags"] = self._fan_tags(f["fan_id"])
        return d

    def _fan_tags(self, fan_id):
        return [t["tag_name"] for t in self._tags.values() if fan_id in t["members"]]

    def _ticket_doc(self, t, with_fan=False):
        d = {k: t.get(k) for k in (
            "ticket_id", "ticket_key", "account_id", "email", "network", "event_key",
            "event_name", "num_seats", "artist_name", "price_code", "venue_name", "city",
            "province", "country_code", "metro_area", "postal_code", "customer_key",
            "is_deleted")}
        d["event_date"] = iso(t["event_date"])
        d["purchase_timestamp"] = iso(t["purchase"])
        d["paid_amount"] = t["paid_amount"]
        d["last_updated_timestamp"] = iso(t["updated"])
        if self.type_drift and t["ticket_id"] % 2 == 0:
            # seen in the wild: numbers as strings, booleans as 0/1
            d["paid_amount"] = "%.2f" % t["paid_amount"]
            d["num_seats"] = str(t["num_seats"])
            d["is_deleted"] = 1 if t["is_deleted"] else 0
        if with_fan:
            f = self._fans.get(t.get("fan_id"))
            d["fan"] = self._fan_doc(f) if f else None
        return d

    def _activity_doc(self, a, details=False):
        d = {k: a.get(k) for k in (
            "activity_id", "account_id", "fan_id", "campaign_title", "app_type", "page_tab_id",
            "stream_key", "ip_address", "user_key", "name", "is_subscribed",
            "is_phone_subscribed")}
        d["creation_date"] = iso(a["created"])[:10]
        d["creation_timestamp"] = iso(a["created"])
        d["opted_in_business_ids"] = []
        if details:
            f = self._fans.get(a.get("fan_id"))
            d["fan"] = self._fan_doc(f) if f else None
            d["details"] = {}
            d["networks"] = []
            d["idol_names"] = []
        return d

    # -- account helpers (lock held) -----------------------------------------------------------
    def _next_id(self, kind):
        n = self._next[kind]
        self._next[kind] = n + 1
        return n

    def _fan_by_email(self, email):
        if not email:
            return None
        return self._by_email.get(email.strip().lower())

    def _tag_by_name(self, name):
        for t in self._tags.values():
            if t["tag_name"] == name:
                return t
        return None

    def _touch_fan(self, f):
        now = self.clock.now()
        f["updated"] = int(now)
        f["updated_ms"] = int((now - int(now)) * 1000)
        self._fan_order = None

    def _new_fan(self, fields):
        now = self.clock.now()
        fid = self._next_id("fan")
        f = {"fan_id": fid, "account_id": self.account_id, "first_name": None,
             "last_name": None, "email": None, "phone": None, "city": None, "province": None,
             "country_code": None, "postal_code": None, "metro_area": None, "latitude": None,
             "longitude": None, "ip_address": None, "is_optout": False, "is_subscribed": False,
             "is_phone_subscribed": False, "is_confirmed": False, "is_phone_confirmed": False,
             "gender": None, "rating": 0, "birth_date": None, "display_name": None,
             "fan_source": None, "fields": {}, "last_page_tab_id": None,
             "last_campaign_name": None, "created": int(now),
             "created_ms": int((now - int(now)) * 1000)}
        f.update(fields)
        self._touch_fan(f)
        self._fans[fid] = f
        if f.get("email"):
            self._by_email.setdefault(f["email"].lower(), f)
        return f

    def _check_ticket(self, row, bulk):
        """The errors of one ticket input row (list of strings) and its parsed values."""
        errs = []
        req = TICKET_REQUIRED + (("event_key",) if bulk else ())
        if self.require_ticket_key:
            req = req + ("ticket_key",)
        for k in req:
            if row.get(k) in (None, ""):
                errs.append("%s is required" % k)
        vals = {}
        if row.get("email") and not EMAIL_RE.match(row["email"]):
            errs.append("email is not valid")
        if row.get("purchase_timestamp"):
            vals["purchase"] = parse_gmt(row["purchase_timestamp"])
            if vals["purchase"] is None:
                errs.append("purchase_timestamp must be YYYY-MM-DD HH:MI:SS (GMT)")
        if row.get("event_date"):
            vals["event_date"] = parse_iso8601(row["event_date"])
            if vals["event_date"] is None:
                errs.append("event_date must be ISO 8601")
        if row.get("paid_amount") not in (None, ""):
            try:
                amt = decimal.Decimal(str(row["paid_amount"]).strip())
                if not amt.is_finite():
                    raise decimal.InvalidOperation()
                vals["paid_amount"] = float(round(amt, 2))
            except (decimal.InvalidOperation, ValueError):
                errs.append("paid_amount is not a number")
        if row.get("num_seats") not in (None, ""):
            if not re.fullmatch(r"-?\d{1,6}", str(row["num_seats"]).strip()):
                errs.append("num_seats is not an integer")
            else:
                vals["num_seats"] = int(row["num_seats"])
        for b in ("is_subscribed", "is_phone_subscribed", "is_deleted"):
            if row.get(b) not in (None, ""):
                v = str(row[b]).strip().lower()
                if v in TRUE_WORDS:
                    vals[b] = True
                elif v in FALSE_WORDS:
                    vals[b] = False
                else:
                    errs.append("%s is not a boolean" % b)
        for k in row:
            if k not in TICKET_FIELDS and k not in ("api_key", "api_secret"):
                errs.append("unknown field %s" % k)
        return errs, vals

    def _store_ticket(self, row, vals):
        """(status, ticket) for a valid row: 'duplicate' when its ticket_key exists."""
        key = row.get("ticket_key") or None
        if key and key in self._by_ticket_key:
            return "duplicate", self._by_ticket_key[key]
        f = self._fan_by_email(row["email"])
        if f is None:
            f = self._new_fan({
                "email": row["email"], "first_name": row.get("first_name"),
                "last_name": row.get("last_name"), "phone": row.get("phone") or None,
                "city": row.get("city") or None, "province": row.get("province") or None,
                "postal_code": row.get("postal_code") or None,
                "country_code": row.get("country_code") or None,
                "is_subscribed": vals.get("is_subscribed", False),
                "is_phone_subscribed": vals.get("is_phone_subscribed", False),
                "fan_source": row.get("fan_source") or None})
        now = self.clock.now()
        tid = self._next_id("ticket")
        t = {"ticket_id": tid, "ticket_key": key, "account_id": self.account_id,
             "fan_id": f["fan_id"], "email": row["email"], "first_name": row.get("first_name"),
             "last_name": row.get("last_name"), "network": row.get("network") or None,
             "order_key": row.get("order_key") or None, "event_key": row.get("event_key") or None,
             "event_name": row["event_name"], "artist_name": row.get("artist_name") or None,
             "venue_name": row.get("venue_name") or None, "event_date": vals["event_date"],
             "purchase": vals["purchase"], "paid_amount": vals["paid_amount"],
             "num_seats": vals["num_seats"], "price_code": row.get("price_code") or None,
             "city": row.get("city") or None, "province": row.get("province") or None,
             "country_code": row.get("country_code") or None, "metro_area": None,
             "postal_code": row.get("postal_code") or None,
             "customer_key": row.get("customer_key") or None,
             "is_deleted": vals.get("is_deleted", False), "updated": now,
             "fan_source": row.get("fan_source") or None}
        self._tickets[tid] = t
        self._ticket_ids.append(tid)
        if key:
            self._by_ticket_key[key] = t
        return "success", t

    def _search_page(self, call, sid, limit):
        s = self._searches.get(sid)
        if s is None or s["key"] != call.api_key or s["kind"] != call.op:
            raise ApiError(400, "invalid_search_uid", "unknown search_uid")
        if self.clock.now() > s["expires"]:
            del self._searches[sid]
            raise ApiError(400, "expired_search_uid", "search_uid has expired")
        if limit is None:
            limit = s["limit"]
        ids = s["ids"][s["offset"]:s["offset"] + limit]
        s["offset"] += len(ids)
        s["expires"] = self.clock.now() + self.search_ttl
        return ids, s["offset"] < len(s["ids"]), len(s["ids"])

    def _new_search(self, call, ids, limit):
        sid = uuid.uuid4().hex
        self._searches[sid] = {"key": call.api_key, "kind": call.op, "ids": ids, "offset": 0,
                               "limit": limit, "expires": self.clock.now() + self.search_ttl}
        return sid

    # -- operations (lock held) ----------------------------------------------------------------
    def _op_tickets_create(self, call, args, form):
        for k, v in form.items():
            if len(v) > 1 and k not in ("api_key", "api_secret"):
                raise ApiError(400, "invalid_parameter", "%s given %d times" % (k, len(v)))
        errs, vals = self._check_ticket(args, bulk=False)
        if errs:
            raise ApiError(400, "invalid_ticket", "; ".join(errs))
        status, t = self._store_ticket(args, vals)
        return {"meta": {"status": "ok"},
                "data": {"ticket_id": t["ticket_id"], "ticket_key": t["ticket_key"],
                         "fan_id": t["fan_id"], "status": status}}

    def _op_tickets_bulk(self, call, args, form):
        extra = sorted(k for k in form if k != self.bulk_field and k not in AUTH_PARAMS)
        if extra:
            raise ApiError(400, "invalid_parameter", "unknown parameter %s: the tickets go in %s"
                           % (", ".join(extra), self.bulk_field))
        raw = form.get(self.bulk_field)
        if not raw:
            raise ApiError(400, "invalid_parameter", "%s is required: a JSON array of tickets, "
                           "or one JSON object per %s field" % (self.bulk_field, self.bulk_field))
        rows = []
        for item in raw:
            try:
                v = json.loads(item)
            except ValueError:
                raise ApiError(400, "invalid_parameter", "%s: not JSON" % self.bulk_field)
            if isinstance(v, list) and len(raw) == 1:
                rows.extend(v)
            elif isinstance(v, dict):
                rows.append(v)
            else:
                raise ApiError(400, "invalid_parameter",
                               "%s: each item must be a JSON object" % self.bulk_field)
        if not rows:
            raise ApiError(400, "invalid_parameter", "no tickets")
        if len(rows) > self.bulk_max:
            raise ApiError(400, "too_many_tickets", "at most %d tickets per call, got %d"
                           % (self.bulk_max, len(rows)))
        out = []
        counts = collections.Counter()
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                out.append({"row": i, "status": "error", "errors": ["not an object"]})
                counts["error"] += 1
                continue
            srow = {k: (v if isinstance(v, str) or v is None else
                        ("true" if v is True else "false" if v is False else str(v)))
                    for k, v in row.items()}
            errs, vals = self._check_ticket(srow, bulk=True)
            if errs:
                out.append({"row": i, "ticket_key": srow.get("ticket_key"), "status": "error",
                            "errors": errs})
                counts["error"] += 1
                continue
            status, t = self._store_ticket(srow, vals)
            out.append({"row": i, "ticket_id": t["ticket_id"], "ticket_key": t["ticket_key"],
                        "fan_id": t["fan_id"], "status": status})
            counts[status] += 1
        return {"meta": {"count": len(rows), "success_count": counts["success"],
                         "duplicate_count": counts["duplicate"],
                         "error_count": counts["error"]},
                "data": out}

    def _op_tickets_list(self, call, args, form):
        lo = parse_int("min_ticket_id", args.get("min_ticket_id"))
        hi = parse_int("max_ticket_id", args.get("max_ticket_id"))
        limit = parse_int("limit", args.get("limit"), 1, self.tickets_max_limit,
                          self.tickets_default_limit)
        incl = parse_bool("include_deleted", args.get("include_deleted"), False)
        with_fan = False
        if args.get("data"):
            if args["data"] != "fan":
                raise ApiError(400, "invalid_parameter", "data: only 'fan' is supported")
            with_fan = True
        flt = []
        for name, field, end in (("min_purchase_date", "purchase", False),
                                 ("max_purchase_date", "purchase", True),
                                 ("min_last_update_date", "updated", False),
                                 ("max_last_update_date", "updated", True)):
            if args.get(name):
                flt.append((field, end, parse_date_filter(name, args[name], end)))
        email = (args.get("email") or "").lower()
        rows = []
        first = bisect.bisect_right(self._ticket_ids, lo) if lo is not None else 0
        for tid in self._ticket_ids[first:]:
            t = self._tickets[tid]
            if lo is not None and t["ticket_id"] <= lo:
                continue
            if hi is not None and t["ticket_id"] >= hi:
                continue
            if t["is_deleted"] and not incl:
                continue
            if email and (t.get("email") or "").lower() != email:
                continue
            if any((t[f] > v) if end else (t[f] < v) for f, end, v in flt):
                continue
            rows.append(t)
            if len(rows) >= limit:
                break
        return {"meta": {"order": "asc",
                         "min_ticket_id": rows[0]["ticket_id"] if rows else None,
                         "max_ticket_id": rows[-1]["ticket_id"] if rows else None,
                         "count": len(rows)},
                "data": [self._ticket_doc(t, with_fan) for t in rows]}

    def _op_ticket_get(self, call, args, form):
        tid = parse_int("ticket_id", call.params["ticket_id"])
        t = self._tickets.get(tid)
        if t is None:
            raise ApiError(404, "not_found", "no ticket %d" % tid)
        return {"meta": {}, "data": self._ticket_doc(t)}

    def _op_fans_search(self, call, args, form):
        limit = parse_int("limit", args.get("limit"), 1, self.search_max_limit)
        max_count = parse_int("max_count", args.get("max_count"), 1, self.search_max_count,
                              self.search_default_max_count)
        include_tags = parse_bool("include_tags", args.get("include_tags"), False)
        sid = args.get("search_uid")
        if sid:
            ids, more, total = self._search_page(call, sid, limit)
        else:
            if limit is None:
                limit = self.search_default_limit
            ids = self._fan_search_ids(args)[:max_count]
            sid = self._new_search(call, ids, limit)
            ids, more, total = self._search_page(call, sid, limit)
        meta = {"count": total}
        if more:
            meta["search_uid"] = sid
        return {"meta": meta,
                "data": [self._search_doc(self._fans[i], include_tags) for i in ids
                         if i in self._fans]}

    def _fan_search_ids(self, args):
        name = (args.get("name") or "").strip().lower()
        sub = parse_bool("fan_is_subscribed", args.get("fan_is_subscribed"))
        opt = parse_bool("fan_is_optout", args.get("fan_is_optout"))
        c_lo = c_hi = None
        if args.get("fan_start_creation_date"):
            c_lo = _ymd("fan_start_creation_date", args["fan_start_creation_date"])
        if args.get("fan_end_creation_date"):
            c_hi = _ymd("fan_end_creation_date", args["fan_end_creation_date"]) + 86400
        tags = [t.strip() for t in (args.get("fan_tags") or "").split(",") if t.strip()]
        out = []
        for f in sorted(self._fans.values(), key=lambda f: f["fan_id"]):
            if name:
                full = "%s %s %s" % (f.get("first_name") or "", f.get("last_name") or "",
                                     f.get("email") or "")
                if name not in full.lower():
                    continue
            if sub is not None and bool(f["is_subscribed"]) != sub:
                continue
            if opt is not None and bool(f["is_optout"]) != opt:
                continue
            if c_lo is not None and f["created"] < c_lo:
                continue
            if c_hi is not None and f["created"] >= c_hi:
                continue
            if tags and not set(tags) & set(self._fan_tags(f["fan_id"])):
                continue
            out.append(f["fan_id"])
        return out

    def _op_fans_updated(self, call, args, form):
        since = None
        if args.get("last_update_date"):
            since = _ymd("last_update_date", args["last_update_date"])
        after = None
        if args.get("min_time_key"):
            m = TIME_KEY_RE.match(args["min_time_key"])
            if not m:
                raise ApiError(400, "invalid_parameter",
                               "min_time_key must be <unix_time>_<milliseconds>_<fan_id>")
            after = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if self._fan_order is None:
            order = sorted(((int(f["updated"]), f["updated_ms"], f["fan_id"]), f)
                           for f in self._fans.values())
            self._fan_order = ([k for k, _ in order], [f for _, f in order])
        keys, fans = self._fan_order
        first = 0
        if after is not None:
            first = bisect.bisect_right(keys, after)
        if since is not None:
            first = max(first, bisect.bisect_left(keys, (int(since), -1, -1)))
        # keys are sorted, and both bounds are lower bounds on them: the page is a slice
        page = fans[first:first + self.fans_updated_page]
        docs = [self._fan_doc(f) for f in page]
        return {"meta": {"min_fan_time_key": docs[0]["fan_time_key"] if docs else None,
                         "max_fan_time_key": docs[-1]["fan_time_key"] if docs else None,
                         "count": len(docs)},
                "data": docs}

    def _op_fan_create(self, call, args, form):
        fields = self._fan_fields(args, creating=True)
        f = self._fan_by_email(fields.get("email")) if fields.get("email") else None
        if f is not None:
            return {"meta": {}, "data": {"fan_id": f["fan_id"], "status": "duplicate"}}
        f = self._new_fan(fields)
        return {"meta": {}, "data": {"fan_id": f["fan_id"], "status": "success"}}

    def _op_fan_update(self, call, args, form):
        fid = parse_int("fan_id", call.params["fan_id"])
        f = self._fans.get(fid)
        if f is None:
            raise ApiError(404, "not_found", "no fan %d" % fid)
        fields = self._fan_fields(args, creating=False)
        if "email" in fields and fields["email"] != f["email"]:
            other = self._fan_by_email(fields["email"])
            if other is not None and other is not f:
                raise ApiError(400, "duplicate_email", "another fan has this email")
        f.update(fields)
        self._touch_fan(f)
        if "email" in fields:
            self._reindex()
        return {"meta": {}, "data": {"fan_id": fid}}

    def _fan_fields(self, args, creating):
        out = {}
        for k, v in args.items():
            if k in ("api_key", "api_secret") or k.startswith("business_"):
                continue
            if k not in FAN_FIELDS:
                raise ApiError(400, "invalid_parameter", "unknown field %s" % k)
            if k == "idol_names":
                continue
            if k.startswith("is_"):
                out[k] = parse_bool(k, v, False)
            elif k == "gender":
                if v.lower() not in GENDERS:
                    raise ApiError(400, "invalid_parameter",
                                   "gender must be male, female, diverse, other, or empty")
                out[k] = v.lower() or None
            elif k == "email":
                if v and not EMAIL_RE.match(v):
                    raise ApiError(400, "invalid_parameter", "email is not valid")
                out[k] = v or None
            elif k == "birth_date":
                if v:
                    _ymd("birth_date", v)
                out[k] = v or None
            elif k == "password":
                continue
            else:
                out[k] = v if v != "" else None
        if creating and not (out.get("email") or out.get("phone")):
            raise ApiError(400, "invalid_parameter", "either email or phone is required")
        if not creating:
            for k in ("province", "city", "postal_code"):
                if out.get(k) and not out.get("country_code"):
                    raise ApiError(400, "invalid_parameter",
                                   "%s needs country_code in the same call" % k)
        return out

    def _op_fan_get(self, call, args, form):
        fid = parse_int("fan_id", call.params["fan_id"])
        f = self._fans.get(fid)
        if f is None:
            raise ApiError(404, "not_found", "no fan %d" % fid)
        return {"meta": {}, "data": self._search_doc(f, True)}

    def _op_activities_list(self, call, args, form):
        lo = parse_int("min_activity_id", args.get("min_activity_id"))
        hi = parse_int("max_activity_id", args.get("max_activity_id"))
        limit = parse_int("limit", args.get("limit"), 1, self.activities_max_limit,
                          self.activities_max_limit)
        tab = parse_int("page_tab_id", args.get("page_tab_id"))
        day = _ymd("activity_date", args["activity_date"]) if args.get("activity_date") else None
        details = parse_bool("include_details", args.get("include_details"), False)
        rows = [a for a in self._activities
                if (lo is None or a["activity_id"] > lo) and (hi is None or a["activity_id"] < hi)
                and (tab is None or a["page_tab_id"] == tab)
                and (day is None or day <= a["created"] < day + 86400)]
        rows = rows[:limit]
        return {"meta": {"order": "asc",
                         "min_activity_id": rows[0]["activity_id"] if rows else None,
                         "max_activity_id": rows[-1]["activity_id"] if rows else None,
                         "count": len(rows)},
                "data": [self._activity_doc(a, details) for a in rows]}

    def _op_tags_list(self, call, args, form):
        lo = parse_date_filter("start_date", args["start_date"], False) \
            if args.get("start_date") else None
        hi = parse_date_filter("end_date", args["end_date"], False) \
            if args.get("end_date") else None
        rows = []
        for t in self._tags.values():
            for fid, (ts, ms) in t["members"].items():
                at = ts + ms / 1000.0
                if (lo is not None and at <= lo) or (hi is not None and at >= hi):
                    continue
                f = self._fans.get(fid) or {}
                rows.append((at, t["tag_id"], fid, t["tag_name"], f))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        rows = rows[:self.tags_max_rows]
        return {"meta": {"count": len(rows)},
                "data": [{"tag_name": r[3], "tag_id": r[1], "fan_id": r[2],
                          "creation_timestamp": iso(r[0]), "first_name": r[4].get("first_name"),
                          "last_name": r[4].get("last_name")} for r in rows]}

    def _op_tag_create(self, call, args, form):
        name = (args.get("tag_name") or "").strip()
        if not name:
            raise ApiError(400, "invalid_parameter", "tag_name is required")
        if len(name) > 64:
            raise ApiError(400, "invalid_parameter", "tag_name is longer than 64 characters")
        t = self._tag_by_name(name)
        if t is not None:
            return {"meta": {}, "data": {"tag_id": t["tag_id"], "tag_name": name,
                                         "status": "duplicate"}}
        tid = self._next_id("tag")
        self._tags[tid] = {"tag_id": tid, "tag_name": name, "members": {},
                           "created": self.clock.now()}
        return {"meta": {}, "data": {"tag_id": tid, "tag_name": name, "status": "success"}}

    def _tag_batch(self, call, form):
        tid = parse_int("tag_id", call.params["tag_id"])
        t = self._tags.get(tid)
        if t is None:
            raise ApiError(404, "not_found", "no tag %d" % tid)
        ids = form.get("fan_id") or []
        if not ids:
            raise ApiError(400, "invalid_parameter", "fan_id is required (repeat it per fan)")
        if len(ids) > self.tag_batch_max:
            raise ApiError(400, "too_many_fans", "at most %d fan_id per call, got %d"
                           % (self.tag_batch_max, len(ids)))
        return t, ids

    def _op_tag_add(self, call, args, form):
        t, ids = self._tag_batch(call, form)
        added, unchanged, errors = [], [], []
        now = self.clock.now()
        for raw in ids:
            if not re.fullmatch(r"\d{1,18}", raw) or int(raw) not in self._fans:
                errors.append({"fan_id": raw, "error": "no such fan"})
                continue
            fid = int(raw)
            if fid in t["members"]:
                unchanged.append(fid)
                continue
            t["members"][fid] = (int(now), int((now - int(now)) * 1000))
            if self.tag_touches_fan:
                self._touch_fan(self._fans[fid])
            added.append(fid)
        return {"meta": {"added_count": len(added), "unchanged_count": len(unchanged),
                         "error_count": len(errors)},
                "data": {"tag_id": t["tag_id"], "added": added, "unchanged": unchanged,
                         "errors": errors}}

    def _op_tag_remove(self, call, args, form):
        t, ids = self._tag_batch(call, form)
        removed, not_member, errors = [], [], []
        for raw in ids:
            if not re.fullmatch(r"\d{1,18}", raw) or int(raw) not in self._fans:
                errors.append({"fan_id": raw, "error": "no such fan"})
                continue
            fid = int(raw)
            if fid not in t["members"]:
                not_member.append(fid)
                continue
            del t["members"][fid]
            if self.tag_touches_fan:
                self._touch_fan(self._fans[fid])
            removed.append(fid)
        return {"meta": {"removed_count": len(removed), "not_member_count": len(not_member),
                         "error_count": len(errors)},
                "data": {"tag_id": t["tag_id"], "removed": removed, "not_member": not_member,
                         "errors": errors}}

    def _segment(self, call):
        stype = call.params["segment_type"]
        sid = parse_int("segment_id", call.params["segment_id"])
        if stype == "tag":
            t = self._tags.get(sid)
            if t is None:
                raise ApiError(404, "not_found", "no tag segment %d" % sid)
            return {"segment_type": "tag", "segment_id": sid, "segment_name": t["tag_name"],
                    "fan_ids": sorted(t["members"])}
        if stype not in ("snapshot", "filter"):
            raise ApiError(400, "invalid_parameter", "segment_type must be tag, filter or "
                           "snapshot")
        for s in self._segments:
            if s["segment_type"] == stype and s["segment_id"] == sid:
                return s
        raise ApiError(404, "not_found", "no %s segment %d" % (stype, sid))

    def _op_segments_list(self, call, args, form):
        out = [{"segment_type": "tag", "segment_id": t["tag_id"], "segment_name": t["tag_name"],
                "segment_count": len(t["members"])} for t in self._tags.values()]
        out += [{"segment_type": s["segment_type"], "segment_id": s["segment_id"],
                 "segment_name": s["segment_name"], "segment_count": len(s["fan_ids"])}
                for s in self._segments]
        return {"meta": {"count": len(out)}, "data": out}

    def _op_segment_status(self, call, args, form):
        s = self._segment(call)
        fans = [self._fans[i] for i in s["fan_ids"] if i in self._fans]
        last = max((f["updated"] for f in fans), default=None)
        return {"meta": {}, "data": {
            "fan_count": len(fans),
            "email_count": sum(1 for f in fans if f.get("email")),
            "phone_count": sum(1 for f in fans if f.get("phone")),
            "phone_subscribe_count": sum(1 for f in fans if f.get("is_phone_subscribed")),
            "email_subscribe_count": sum(1 for f in fans if f.get("is_subscribed")),
            "last_update_timestamp": iso(last)}}

    def _op_segment_fans(self, call, args, form):
        limit = parse_int("limit", args.get("limit"), 0, self.segment_max_limit)
        sid = args.get("search_uid")
        if sid:
            ids, more, _ = self._search_page(call, sid, limit)
        else:
            s = self._segment(call)
            if limit is None:
                limit = self.segment_default_limit
            sid = self._new_search(call, list(s["fan_ids"]), limit)
            ids, more, _ = self._search_page(call, sid, limit)
        meta = {}
        if more:
            meta["search_uid"] = sid
        data = []
        for i in ids:
            f = self._fans.get(i)
            if f:
                data.append({"fan_id": i, "email": f.get("email"), "phone": f.get("phone"),
                             "first_name": f.get("first_name"), "last_name": f.get("last_name"),
                             "is_subscribed": bool(f.get("is_subscribed")),
                             "is_phone_subscribed": bool(f.get("is_phone_subscribed"))})
        return {"meta": meta, "data": data}


def _ymd(name, value):
    """Strict 'YYYY-MM-DD' -> epoch of its midnight UTC."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value or ""):
        raise ApiError(400, "invalid_parameter", "%s must be YYYY-MM-DD, got %r" % (name, value))
    try:
        d = datetime.date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid_parameter", "%s is not a date: %r" % (name, value))
    return calendar.timegm(d.timetuple())


def _error_doc(status, kind, message):
    """The error answer shape (the vendor's is not public): meta carries the error."""
    return {"meta": {"status": "error", "code": status, "error": kind, "message": message},
            "data": []}
