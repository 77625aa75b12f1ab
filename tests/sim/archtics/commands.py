"""commands.py — the ATS commands the simulator answers, and their in-band results.

A handler gets the simulator and the request's `command1` and returns the answer's `command1`
fields (the envelope echo is added by the caller). Business errors are answers with a non-zero
`result` inside HTTP 200, as on the real service: `error_detail` in most commands, `error_desc`
in seats_sold.

The parameters and answers of the four incremental commands are not public; they are defined
once, in INCREMENTAL below (a since-timestamp in, a list out, keyset paging), so that matching the
real shapes later changes that table only.

Type drift (Simulator(drift=True)): integers of every other record are sent as strings,
cust_name_id is always a string, seats_sold counts in "Count", the incremental commands send
their count as a string, and `cmd` is echoed as the client spelled it.
"""

import json
import re

from .data import CUSTOMER_FIELDS, OTHER_INFO, OTHER_INFO_WIDTH, money

OK = 0
INVALID_PARAMETER = 9999
REQUIRED_FIELD = 5011         # customer_add: a required field is missing
INVALID_INPUT = 5014          # customer_add/update: a value does not fit or is not allowed
INVALID_EMAIL_ADD = 5019
REQUIRED_INPUT = 5031         # customer_update: acct_id missing
ACCOUNT_NOT_FOUND_UPD = 5034
INVALID_EMAIL_UPD = 5036
EMAIL_USED = 5037
NOT_FOUND = 5024              # customer_query: account/email not found
MULTIPLE_ALT_ID = 10685
SEATS_REQUIRED = 5061
NO_BLOCKS = 5069
BAD_SEARCH_INPUT = 5211
NO_EVENTS_SEARCH = 5212
NO_EVENTS_DETAILS = 5231
TOO_LARGE = 11075
EMAIL_EXISTS_HIT = 11408

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_COUNT = 1000


class CommandError(Exception):
    def __init__(self, result, detail, sql_code=0, extra=None):
        super().__init__(detail)
        self.result = result
        self.detail = detail
        self.sql_code = sql_code
        self.extra = extra or {}


def _int(v, name, default=None, lo=None, hi=None):
    """A number the vendor accepts as JSON number or numeric string."""
    if v is None or (isinstance(v, str) and v.strip() == ""):
        if default is None:
            raise CommandError(INVALID_PARAMETER, "missing %s" % name)
        return default
    if isinstance(v, bool):
        raise CommandError(INVALID_PARAMETER, "invalid %s" % name)
    try:
        n = int(str(v).strip())
    except ValueError:
        raise CommandError(INVALID_PARAMETER, "invalid %s: %r" % (name, v))
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise CommandError(INVALID_PARAMETER, "%s out of range: %d" % (name, n))
    return n


def _str(v):
    return "" if v is None else str(v).strip()


def _local(v, name):
    """A venue-local "YYYY-MM-DD HH:MM" parameter (a date alone means 00:00)."""
    s = _str(v)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        s += " 00:00"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", s):
        raise CommandError(INVALID_PARAMETER,
                           "%s must be venue-local YYYY-MM-DD HH:MM, got %r" % (name, v))
    return s


class Drift:
    def __init__(self, on):
        self.on = on

    def num(self, v, i=1):
        """An integer as the drifting server sends it: a string for every other record."""
        return str(v) if self.on and i % 2 == 1 else v


# -- administrative

def cmd_ping(sim, c1, drift):
    return {"db_status": "OK", "server_time": sim.clock.local()}


def cmd_ats_ext_test_polling(sim, c1, drift):
    return {"message": "polling test complete"}


# -- accounts

def _customer_out(sim, a, drift):
    cust = {"acct_id": drift.num(a["acct_id"], a["acct_id"]),
            "cust_name_id": str(a["cust_name_id"]) if drift.on else a["cust_name_id"]}
    for f in CUSTOMER_FIELDS:
        cust[f] = a[f]
    cust["add_date"] = sim.clock.local_dt(a["created"]).strftime("%Y-%m-%d")
    cust["alt_id_array"] = [dict(x) for x in a["alt_ids"]]
    out = {"customer": cust, "account_id_list": str(a["acct_id"]),
           "rec_status_list": a["rec_status"], "account_groups": [{"account_group": "1"}]}
    for f in OTHER_INFO:
        out[f] = a[f]
    return out


def cmd_customer_query(sim, c1, drift):
    w = sim.world
    if c1.get("acct_id") not in (None, ""):
        acct_id = _int(c1.get("acct_id"), "acct_id")
        a = w.accounts.get(acct_id)
        if a is None:
            raise CommandError(NOT_FOUND, "Account %d not found" % acct_id, 100)
    elif _str(c1.get("email")):
        a = w.find_email(c1.get("email"))
        if a is None:
            raise CommandError(NOT_FOUND, "Email address not found", 100)
    elif _str(c1.get("alt_id")):
        if _str(c1.get("call_reason")).upper() != "S":
            raise CommandError(INVALID_PARAMETER, "call_reason S is required with alt_id alone")
        typ, val = _str(c1.get("alt_id_type")), _str(c1.get("alt_id"))
        hits = [x for x in w.accounts.values()
                if any(i["alt_id_type"] == typ and i["alt_id"] == val for i in x["alt_ids"])]
        if not hits:
            raise CommandError(10684, "No record found for alt_id", 100)
        if len(hits) > 1:
            raise CommandError(MULTIPLE_ALT_ID, "Multiple records found for alt_id", 0,
                               {"account_id_list": ",".join(str(h["acct_id"]) for h in hits)})
        a = hits[0]
    else:
        raise CommandError(INVALID_PARAMETER, "acct_id, email or alt_id is required")
    return _customer_out(sim, a, drift)


def _check_widths(fields, code):
    for f, v in fields.items():
        width = CUSTOMER_FIELDS.get(f, OTHER_INFO_WIDTH if f in OTHER_INFO else None)
        if width is not None and len(v) > width:
            raise CommandError(code, "Invalid input: %s longer than %d characters" % (f, width))


def _customer_in(c1):
    cust = c1.get("customer")
    if not isinstance(cust, dict):
        raise CommandError(INVALID_PARAMETER, "customer object is required")
    return cust


def cmd_customer_add(sim, c1, drift):
    w = sim.world
    cust = _customer_in(c1)
    if cust.get("acct_id") not in (None, "") or c1.get("acct_id") not in (None, ""):
        raise CommandError(INVALID_PARAMETER,
                           "adding a name to an existing account is not simulated")
    fields = {f: _str(cust.get(f)) for f in CUSTOMER_FIELDS if f in cust}
    fields.update({f: _str(c1.get(f)) for f in OTHER_INFO if f in c1})
    name_type = fields.get("name_type") or "I"
    if name_type not in ("I", "C"):
        raise CommandError(INVALID_INPUT, "Invalid input: name_type must be I or C")
    if name_type == "I" and not fields.get("name_last"):
        raise CommandError(REQUIRED_FIELD, "Required field missing: name_last")
    if name_type == "C" and not fields.get("company_name"):
        raise CommandError(REQUIRED_FIELD, "Required field missing: company_name")
    email = fields.get("email", "")
    if email and not EMAIL_RE.match(email):
        raise CommandError(INVALID_EMAIL_ADD, "Invalid email address")
    _check_widths(fields, INVALID_INPUT)
    old = w.find_email(email) if email else None
    if old is not None:
        raise CommandError(EMAIL_EXISTS_HIT, "Email address already exists", 0,
                           {"acct_id": drift.num(old["acct_id"], old["acct_id"]),
                            "cust_name_id": drift.num(old["cust_name_id"], 1)})
    a = w.add_account(fields)
    return {"acct_id": drift.num(a["acct_id"], a["acct_id"]),
            "cust_name_id": drift.num(a["cust_name_id"], 1)}


def cmd_customer_update(sim, c1, drift):
    w = sim.world
    cust = _customer_in(c1)
    if cust.get("acct_id") in (None, ""):
        raise CommandError(REQUIRED_INPUT, "Required input missing: customer.acct_id")
    acct_id = _int(cust.get("acct_id"), "acct_id")
    a = w.accounts.get(acct_id)
    if a is None:
        raise CommandError(ACCOUNT_NOT_FOUND_UPD, "Account %d not found" % acct_id, 100)
    if "name_type" in cust:
        raise CommandError(INVALID_INPUT, "Invalid input: name_type may not be updated")
    # a full overwrite: a field not sent is a field blanked
    fields = {f: _str(cust.get(f)) for f in CUSTOMER_FIELDS if f != "name_type"}
    fields.update({f: _str(c1.get(f)) for f in OTHER_INFO})
    email = fields["email"]
    if email and not EMAIL_RE.match(email):
        raise CommandError(INVALID_EMAIL_UPD, "Invalid email address")
    other = w.find_email(email) if email else None
    if other is not None and other["acct_id"] != acct_id:
        raise CommandError(EMAIL_USED, "Email address is used by another customer")
    _check_widths(fields, INVALID_INPUT)
    alt = cust.get("alt_id_array", c1.get("alt_id_array")) or []
    if not isinstance(alt, list):
        raise CommandError(INVALID_PARAMETER, "alt_id_array must be an array")
    alt_ids = [dict(x) for x in a["alt_ids"]]
    for item in alt:
        if not isinstance(item, dict):
            raise CommandError(INVALID_PARAMETER, "alt_id_array items must be objects")
        typ, val = _str(item.get("alt_id_type")), _str(item.get("alt_id"))
        if typ not in sim.alt_id_types:
            raise CommandError(10729, "alt_id_type %r not found" % typ)
        if len(typ) > 6 or len(val) > 50:
            raise CommandError(INVALID_INPUT, "Invalid input: alt_id too long")
        alt_ids = [x for x in alt_ids if x["alt_id_type"] != typ]
        if _str(item.get("alt_id_action")).upper() != "D":
            alt_ids.append({"alt_id_type": typ, "alt_id": val,
                            "alt_id_comment": _str(item.get("alt_id_comment"))})
    fields["alt_ids"] = alt_ids
    w.touch_account(acct_id, fields)
    return {"acct_id": drift.num(acct_id, acct_id)}


# -- discovery

def _event_out(sim, e, drift, i):
    d = sim.clock.local_dt(e["start"])
    return {"event_name": e["event_name"], "event_id": drift.num(e["event_id"], i),
            "event_name_inet": e["event_name_inet"], "event_description": e["event_description"],
            "event_date": d.strftime("%Y-%m-%d"), "event_time": d.strftime("%H:%M"),
            "performer": e["performer"], "organization": e["organization"],
            "venue_name": e["venue_name"],
            "archtics_venue_id": drift.num(e["archtics_venue_id"], i),
            "manifest_name": e["manifest_name"], "season_name": e["season_name"],
            "event_category": e["event_category"], "plan_type": e["plan_type"],
            "total_events": drift.num(len(e["events_in_plan"]) or 1, i),
            "events_in_plan": [{"event_name": n} for n in e["events_in_plan"]],
            "major_cat": e["major_cat"], "minor_cat": e["minor_cat"],
            "event_onsale_date": sim.clock.local(e["onsale"]),
            "event_offsale_date": sim.clock.local(e["start"]),
            "event_notes": "Gates open 60 minutes before the start. Bag policy applies. "
                           "Parking lots A-D open three hours before the start."}


def cmd_event_details(sim, c1, drift):
    prev = _str(c1.get("prev_event_name"))
    count = _int(c1.get("count"), "count", default=500, lo=1, hi=100000)
    evs = sorted(sim.world.events, key=lambda e: e["event_name"])
    flt, typ = _str(c1.get("event_filter")), _str(c1.get("event_filter_type")).upper()
    if flt:
        if typ == "L":
            names = {n.strip() for n in flt.split(",")}
            evs = [e for e in evs if e["event_name"] in names]
        elif typ == "S":
            plan = sim.world.event(flt)
            if plan is None or not plan["events_in_plan"]:
                raise CommandError(BAD_SEARCH_INPUT, "Invalid item set %r" % flt)
            evs = [e for e in evs if e["event_name"] in plan["events_in_plan"]]
        else:
            raise CommandError(BAD_SEARCH_INPUT, "event_filter_type must be S or L")
    page = [e for e in evs if e["event_name"] > prev][:count]
    if not page:
        raise CommandError(NO_EVENTS_DETAILS, "No events found", 100)
    out = [_event_out(sim, e, drift, i) for i, e in enumerate(page)]
    size = len(json.dumps(out))
    if size > sim.event_details_max_bytes:
        raise CommandError(TOO_LARGE, "Return data size exceeds %d byte limit"
                           % sim.event_details_max_bytes)
    return {"count": drift.num(len(out)), "events": out}


def cmd_event_search(sim, c1, drift):
    today = sim.clock.local()[:10]
    start = _str(c1.get("start_date")) or today
    end = _str(c1.get("end_date"))
    for name, v in (("start_date", start), ("end_date", end)):
        if v and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            raise CommandError(BAD_SEARCH_INPUT, "Invalid input: %s must be YYYY-MM-DD" % name)
    if not end:
        end = sim.clock.local_dt(sim.clock.now() + 91 * 86400).strftime("%Y-%m-%d")
    evs = [e for e in sorted(sim.world.events, key=lambda e: e["event_name"])
           if e["event_category"] == "E"
           and start <= sim.clock.local_dt(e["start"]).strftime("%Y-%m-%d") <= end]
    if not evs:
        raise CommandError(NO_EVENTS_SEARCH, "No events found", 100)
    return {"events": [{"event_name": e["event_name"], "availability": drift.num(1, i),
                        "avail_class": []} for i, e in enumerate(evs)],
            "hold_classes": []}


def cmd_seats_sold(sim, c1, drift):
    if c1.get("acct_id") in (None, ""):
        raise CommandError(SEATS_REQUIRED, "Required input missing: acct_id")
    acct_id = _int(c1.get("acct_id"), "acct_id")
    count = _int(c1.get("count"), "count", default=500, lo=1, hi=MAX_COUNT)
    key = (_str(c1.get("prev_event_name")), _str(c1.get("prev_section_name")),
           _str(c1.get("prev_row_name")), _int(c1.get("prev_seatnum"), "prev_seatnum", default=-1))
    flt = c1.get("event_filter") or []
    if isinstance(flt, str):
        flt = [x.strip() for x in flt.split(",") if x.strip()]
    blocks = sim.world.seats_of(acct_id) if acct_id in sim.world.accounts else []
    if flt:
        blocks = [b for b in blocks if b["event_name"] in flt]
    if key[0]:
        blocks = [b for b in blocks
                  if (b["event_name"], b["section_name"], b["row_name"], b["seat_num"]) > key]
    page = blocks[:count]
    if not page:
        raise CommandError(NO_BLOCKS, "No blocks found", 100)
    arr = []
    for i, b in enumerate(page):
        n = b["num_seats"]
        arr.append({
            "event_name": b["event_name"], "event_id": drift.num(b["event_id"], i),
            "plan_name": b["plan_name"], "section_name": b["section_name"],
            "row_name": b["row_name"],
            "seat_num": drift.num(b["seat_num"], i), "num_seat": drift.num(n, i),
            "last_seat": drift.num(b["seat_num"] + n - 1, i), "seat_increment": 1,
            "price_code": b["price_code"], "full_price": money(b["full_cents"]),
            "purchase_price": money(b["paid_cents"]),
            "block_full_price": money(b["full_cents"] * n),
            "block_purchase_price": money(b["paid_cents"] * n),
            "ticket_type_code": "ADULT", "seat_status_ind": "S", "market_ind": "P",
            "purchase_date": sim.clock.local_dt(b["at"]).strftime("%Y-%m-%d"),
            "add_date_time": sim.clock.local(b["at"]),
            "atomic_seats": [{"atomic_seat": drift.num(b["seat_num"] + k, i),
                              "ticket_status": "A"} for k in range(n)],
        })
    return {"Count" if drift.on else "count": drift.num(len(arr)), "seats_array": arr}


# -- the four incremental commands: one table, one pager
#
# since_date_time (venue-local, inclusive) in; records ordered by (their venue-local minute,
# key); keyset paging with prev_<ts> + prev_<key> (both or neither); count (default 500, at most
# 1000) per page; a page shorter than count is the last one.

def _accounts_rows(sim, c1):
    return [{"acct_id": a["acct_id"], "update_date_time": sim.clock.local(a["at"])}
            for a in sim.world.visible(sim.world.accounts.values())]


def _events_with_sales_rows(sim, c1):
    last = {}
    for s in sim.world.visible(sim.world.sales):
        last[s["event_name"]] = max(last.get(s["event_name"], 0), s["at"])
    return [{"event_name": n, "event_id": sim.world.event(n)["event_id"],
             "last_sale_date_time": sim.clock.local(t)} for n, t in last.items()]


def _sales_rows(sim, c1):
    ev, item_set = _str(c1.get("event_name")), _str(c1.get("item_set"))
    if not ev and not item_set:
        raise CommandError(BAD_SEARCH_INPUT, "Required input missing: event_name or item_set")
    if ev:
        names = {ev}
    else:
        plan = sim.world.event(item_set)
        if plan is None or not plan["events_in_plan"]:
            raise CommandError(BAD_SEARCH_INPUT, "Invalid item set %r" % item_set)
        names = set(plan["events_in_plan"])
    return [{"trans_id": s["trans_id"], "trans_type": s["trans_type"],
             "orig_trans_id": s["orig_trans_id"], "acct_id": s["acct_id"],
             "event_name": s["event_name"], "event_id": s["event_id"],
             "plan_name": s["plan_name"], "section_name": s["section_name"],
             "row_name": s["row_name"], "seat_num": s["seat_num"], "num_seats": s["num_seats"],
             "price_code": s["price_code"], "full_price": money(s["full_cents"]),
             "purchase_price": money(s["paid_cents"]),
             "block_purchase_price": money(s["paid_cents"] * s["num_seats"]),
             "trans_date_time": sim.clock.local(s["at"])}
            for s in sim.world.visible(sim.world.sales) if s["event_name"] in names]


def _scans_rows(sim, c1):
    return [{"scan_id": s["scan_id"], "acct_id": s["acct_id"], "event_name": s["event_name"],
             "event_id": s["event_id"], "section_name": s["section_name"],
             "row_name": s["row_name"], "seat_num": s["seat_num"], "barcode": s["barcode"],
             "gate": s["gate"], "scan_date_time": sim.clock.local(s["at"])}
            for s in sim.world.visible(sim.world.scans)]


INCREMENTAL = {
    # command: (rows, answer array, timestamp field, key field, key type)
    "get_accounts_with_updates": (_accounts_rows, "accounts", "update_date_time", "acct_id", int),
    "get_events_with_sales": (_events_with_sales_rows, "events", "last_sale_date_time",
                              "event_name", str),
    "get_ticket_sales": (_sales_rows, "sales", "trans_date_time", "trans_id", int),
    "get_attendance_incremental": (_scans_rows, "scans", "scan_date_time", "scan_id", int),
}
INTEGER_FIELDS = ("acct_id", "event_id", "trans_id", "orig_trans_id", "seat_num", "num_seats",
                  "scan_id")


def _incremental(name):
    rows_fn, array, ts, key, ktype = INCREMENTAL[name]

    def handler(sim, c1, drift):
        since = _local(c1.get("since_date_time"), "since_date_time")
        count = _int(c1.get("count"), "count", default=500, lo=1, hi=MAX_COUNT)
        pts, pkey = c1.get("prev_" + ts), c1.get("prev_" + key)
        if (pts in (None, "")) != (pkey in (None, "")):
            raise CommandError(INVALID_PARAMETER, "prev_%s and prev_%s go together" % (ts, key))
        rows = [r for r in rows_fn(sim, c1) if r[ts] >= since]
        rows.sort(key=lambda r: (r[ts], r[key]))
        if pts not in (None, ""):
            after = (_local(pts, "prev_" + ts),
                     _int(pkey, "prev_" + key) if ktype is int else _str(pkey))
            rows = [r for r in rows if (r[ts], r[key]) > after]
        page = rows[:count]
        for i, r in enumerate(page):
            for f in INTEGER_FIELDS:
                if r.get(f) is not None:
                    r[f] = drift.num(r[f], i)
        return {"count": str(len(page)) if drift.on else len(page), array: page}

    return handler


HANDLERS = {
    "ping": cmd_ping,
    "ats_ext_test_polling": cmd_ats_ext_test_polling,
    "customer_query": cmd_customer_query,
    "customer_add": cmd_customer_add,
    "customer_update": cmd_customer_update,
    "event_details": cmd_event_details,
    "event_search": cmd_event_search,
    "seats_sold": cmd_seats_sold,
}
for _name in INCREMENTAL:
    HANDLERS[_name] = _incremental(_name)

WRITES = ("customer_add", "customer_update")


def run(sim, c1, cmd):
    """Answer fields of one command: handler output, or the in-band error."""
    drift = Drift(sim.drift)
    h = HANDLERS.get(cmd)
    err_field = "error_desc" if cmd == "seats_sold" else "error_detail"
    if h is None:
        return {"result": INVALID_PARAMETER, "sql_code": 0,
                err_field: "Unknown command %r" % c1.get("cmd")}
    try:
        out = h(sim, c1, drift)
    except CommandError as e:
        out = dict(e.extra)
        out.update({"result": e.result, "sql_code": e.sql_code, err_field: e.detail})
        return out
    out.update({"result": OK, "sql_code": 0, err_field: ""})
    return out
