"""data.py — the simulated Archtics database: accounts, events and plans, sales and returns,
entry scans; generated deterministically from a seed, changed by commands and by tests.

Every record carries the true instant it was stamped (`at`, epoch seconds) and the instant it
became visible to readers (`visible`, default the same). A test that adds a record stamped in
the past with a later `visible` reproduces a late commit at a cursor's boundary. Readers render
`at` venue-local to the minute and order by that text, as the vendor does, so the repeated hour
of a daylight-saving change sorts the way it would on the real server.

Tests may change the data while the server runs: every mutator takes the simulator's lock.

Money is kept in integer cents and rendered as JSON floats in major units (99.0, 12.35).
"""

import csv
import functools
import io
import random
import threading

FIRST = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jon", "Kim", "Lea",
         "Max", "Nia", "Oto", "Pia", "Quin", "Rui", "Sol", "Tess", "Uma", "Vic", "Wes", "Zoe"]
LAST = ["Abbott", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito",
        "Jensen", "Kowalski", "Lopez", "Moreau", "Novak", "Okafor", "Patel", "Rossi", "Schmidt",
        "Tanaka", "Ueda", "Varga", "Weber", "Young", "Zhou"]
CITIES = [("Seattle", "WA", "98101"), ("Tacoma", "WA", "98402"), ("Portland", "OR", "97201"),
          ("Spokane", "WA", "99201"), ("Bellevue", "WA", "98004"), ("Boise", "ID", "83702")]
OPPONENTS = ["Lions", "Bears", "Wolves", "Hawks", "Sharks", "Comets", "Rovers", "Giants",
             "Kings", "Stars", "Bulls", "Pilots"]
SECTIONS = ["101", "102", "103", "201", "202", "301"]
PRICE_CODES = {"A": 9900, "B": 6450, "C": 4235, "D": 1999}

# customer fields and their widths (Char(n)); customer_add/update refuse longer values
CUSTOMER_FIELDS = {
    "name_first": 40, "name_mi": 1, "name_last": 80, "title": 10, "company_name": 100,
    "street_addr_1": 40, "street_addr_2": 40, "city": 20, "state": 2, "zip": 10, "country": 8,
    "phone_day": 15, "phone_eve": 15, "phone_fax": 10, "phone_cell": 15, "email": 100,
    "birth_date": 10, "gender": 1, "name_type": 1, "email_optout": 1, "email_deliv_opt": 1,
    "text_on_mobile_phone": 1, "ext_system_id_1": 10, "ext_system_id_2": 10,
}
OTHER_INFO = ["other_info_%d" % i for i in range(1, 21)]
OTHER_INFO_WIDTH = 100


def _locked(fn):
    """Run a World method under the simulator's lock: tests change the data while a connector
    reads it through the server."""
    @functools.wraps(fn)
    def wrapper(self, *a, **kw):
        with self.lock:
            return fn(self, *a, **kw)
    return wrapper


def money(cents):
    """Cents as the vendor's JSON float in major units."""
    return cents / 100


class World:
    def __init__(self, clock, seed=12, accounts=120, events=24, sales_per_event=14,
                 plan_holders=6, lock=None):
        self.lock = lock or threading.RLock()
        self.clock = clock
        self.seed = seed
        self.rng = random.Random(seed)
        self.accounts = {}        # acct_id -> dict
        self.gone = {}            # acct_id -> ("deleted", None) | ("merged", into)
        self.events = []          # dicts, events and plans
        self.sales = []           # dicts; trans_type "S" sale, "R" return
        self.scans = []
        self.next_acct = 100001
        self.next_cust_name = 500001
        self.next_trans = 900001
        self.next_scan = 700001
        self._generate(accounts, events, sales_per_event, plan_holders)

    # -- generation
    def _generate(self, n_accounts, n_events, sales_per_event, plan_holders):
        r = self.rng
        now = self.clock.now()
        day = 86400.0
        for i in range(n_accounts):
            first, last = r.choice(FIRST), r.choice(LAST)
            city, state, zipc = r.choice(CITIES)
            at = now - r.randint(2, 400) * day - r.randint(0, 1439) * 60
            self.add_account({
                "name_first": first, "name_last": last, "name_type": "I",
                "email": "%s.%s.%d@example.com" % (first.lower(), last.lower(), i),
                "street_addr_1": "%d %s St" % (r.randint(1, 999), r.choice(LAST)),
                "city": city, "state": state, "zip": zipc, "country": "USA",
                "phone_cell": "206555%04d" % r.randint(0, 9999),
                "birth_date": "%04d-%02d-%02d" % (r.randint(1950, 2004), r.randint(1, 12),
                                                  r.randint(1, 28)),
                "gender": r.choice("MF"), "email_optout": r.choice("0001"),
            }, at=at)
        # home games: half in the past, half ahead
        season = self.clock.local_dt(now).strftime("%y")
        for i in range(n_events):
            start = now + (i - n_events // 2) * 4 * day
            start -= start % 3600
            dt = self.clock.local_dt(start).replace(hour=19, minute=r.choice((0, 30)))
            start = dt.timestamp()
            self.events.append({
                "event_name": "%sHOME%02d" % (season, i + 1), "event_id": 3000 + i,
                "event_name_inet": "Home game %d" % (i + 1),
                "event_description": "Home vs %s" % r.choice(OPPONENTS),
                "start": start, "performer": "Home Team", "organization": "Home Team FC",
                "venue_name": "Harbor Arena", "archtics_venue_id": 17,
                "manifest_name": "ARENA2026", "season_name": "20%s Season" % season,
                "event_category": "E", "plan_type": "", "events_in_plan": [],
                "major_cat": "SPORTS", "minor_cat": "HOCKEY",
                "onsale": start - 60 * day,
            })
        names = [e["event_name"] for e in self.events]
        for plan, members in (("%sFULL" % season, names), ("%sHALF" % season, names[::2])):
            self.events.append({
                "event_name": plan, "event_id": 3900 + len(self.events),
                "event_name_inet": "%s plan" % plan, "event_description": "Season plan",
                "start": self.events[0]["start"], "performer": "Home Team",
                "organization": "Home Team FC", "venue_name": "Harbor Arena",
                "archtics_venue_id": 17, "manifest_name": "ARENA2026",
                "season_name": "20%s Season" % season, "event_category": "P", "plan_type": "S",
                "events_in_plan": list(members), "major_cat": "SPORTS", "minor_cat": "HOCKEY",
                "onsale": self.events[0]["start"] - 90 * day,
            })
        accts = sorted(self.accounts)
        # season-ticket holders: the full plan, one seat block in every game (rows above 20,
        # which single-game sales never use), bought before the plan's first game
        full = self.events[-2]
        for k, acct in enumerate(r.sample(accts, min(plan_holders, len(accts)))):
            at = full["onsale"] + r.randint(0, 20) * day + r.randint(0, 1439) * 60
            n = r.randint(1, 4)
            for name in full["events_in_plan"]:
                self.add_sale(acct, name, "101", str(21 + k), 1, n, "B", at=at,
                              price_cents=PRICE_CODES["B"] * 85 // 100,
                              plan_name=full["event_name"])
        for ev in self.events:
            if ev["event_category"] != "E":
                continue
            taken = set()
            for _ in range(sales_per_event):
                acct = r.choice(accts)
                sec, row = r.choice(SECTIONS), str(r.randint(1, 20))
                seat = r.randint(1, 24)
                if (sec, row, seat) in taken:
                    continue
                n = r.randint(1, 4)
                for k in range(n):
                    taken.add((sec, row, seat + k))
                at = min(ev["onsale"] + r.randint(0, 55) * day + r.randint(0, 1439) * 60,
                         now - 3600)
                pc = r.choice(sorted(PRICE_CODES))
                sale = self.add_sale(acct, ev["event_name"], sec, row, seat, n, pc, at=at)
                if r.random() < 0.1:
                    self.add_return(sale["trans_id"], at=min(at + r.randint(1, 5) * day,
                                                             now - 60))
                elif ev["start"] < now:
                    for k in range(n):
                        if r.random() < 0.8:
                            self.add_scan(sale, seat + k, at=ev["start"] - r.randint(5, 80) * 60)

    # -- mutation (tests use these too)
    @_locked
    def add_account(self, fields, at=None, visible=None):
        at = self.clock.now() if at is None else at
        acct = {"acct_id": self.next_acct, "cust_name_id": self.next_cust_name,
                "at": at, "visible": at if visible is None else visible, "created": at,
                "alt_ids": [], "rec_status": "A"}
        self.next_acct += 1
        self.next_cust_name += 1
        for f in CUSTOMER_FIELDS:
            acct[f] = str(fields.get(f, "") or "")
        for f in OTHER_INFO:
            acct[f] = str(fields.get(f, "") or "")
        if not acct["name_type"]:
            acct["name_type"] = "I"
        self.accounts[acct["acct_id"]] = acct
        return acct

    @_locked
    def touch_account(self, acct_id, fields, at=None, visible=None):
        """Change some fields of an account as an Archtics user would; it becomes an update."""
        a = self.accounts[acct_id]
        for k, v in fields.items():
            a[k] = v
        a["at"] = self.clock.now() if at is None else at
        a["visible"] = a["at"] if visible is None else visible
        return a

    def find_email(self, email):
        e = (email or "").strip().lower()
        for a in self.accounts.values():
            if e and a["email"].lower() == e:
                return a
        return None

    @_locked
    def delete_account(self, acct_id):
        """Delete on the Archtics side: no incremental call reports it."""
        del self.accounts[acct_id]
        self.gone[acct_id] = ("deleted", None)

    @_locked
    def merge_accounts(self, src, into):
        """Merge src into `into` (its sales and scans move); no incremental call reports it."""
        del self.accounts[src]
        self.gone[src] = ("merged", into)
        for s in self.sales:
            if s["acct_id"] == src:
                s["acct_id"] = into
        for s in self.scans:
            if s["acct_id"] == src:
                s["acct_id"] = into

    @_locked
    def delete_event(self, name):
        """Delete an event on the Archtics side, with its sales and scans (no incremental call
        reports it; event_details no longer lists it)."""
        self.events = [e for e in self.events if e["event_name"] != name]
        self.sales = [s for s in self.sales if s["event_name"] != name]
        self.scans = [s for s in self.scans if s["event_name"] != name]

    def event(self, name):
        for e in self.events:
            if e["event_name"] == name:
                return e
        return None

    @_locked
    def add_sale(self, acct_id, event_name, section, row, seat, num_seats, price_code,
                 at=None, visible=None, price_cents=None, plan_name=""):
        at = self.clock.now() if at is None else at
        ev = self.event(event_name)
        full = PRICE_CODES[price_code]
        paid = full if price_cents is None else price_cents
        sale = {"trans_id": self.next_trans, "trans_type": "S", "acct_id": acct_id,
                "event_name": event_name, "event_id": ev["event_id"], "section_name": section,
                "row_name": row, "seat_num": seat, "num_seats": num_seats,
                "price_code": price_code, "full_cents": full, "paid_cents": paid,
                "at": at, "visible": at if visible is None else visible, "returned": False,
                "orig_trans_id": None, "plan_name": plan_name}
        self.next_trans += 1
        self.sales.append(sale)
        return sale

    @_locked
    def add_return(self, trans_id, at=None, visible=None):
        orig = next(s for s in self.sales if s["trans_id"] == trans_id)
        at = self.clock.now() if at is None else at
        ret = dict(orig, trans_id=self.next_trans, trans_type="R", at=at,
                   visible=at if visible is None else visible, orig_trans_id=trans_id)
        self.next_trans += 1
        orig["returned"] = True
        self.sales.append(ret)
        return ret

    @_locked
    def add_scan(self, sale, seat, at=None, visible=None, gate="G1"):
        at = self.clock.now() if at is None else at
        scan = {"scan_id": self.next_scan, "event_name": sale["event_name"],
                "event_id": sale["event_id"], "acct_id": sale["acct_id"],
                "section_name": sale["section_name"], "row_name": sale["row_name"],
                "seat_num": seat, "barcode": "%012d" % (sale["trans_id"] * 100 + seat % 100),
                "gate": gate, "at": at, "visible": at if visible is None else visible}
        self.next_scan += 1
        self.scans.append(scan)
        return scan

    # -- reading
    def visible(self, records, now=None):
        now = self.clock.now() if now is None else now
        return [r for r in records if r["visible"] <= now]

    def seats_of(self, acct_id):
        """The account's current seat blocks (sales not returned), keyset-ordered."""
        blocks = [s for s in self.visible(self.sales)
                  if s["trans_type"] == "S" and not s["returned"] and s["acct_id"] == acct_id]
        blocks.sort(key=lambda s: (s["event_name"], s["section_name"], s["row_name"],
                                   s["seat_num"]))
        return blocks

    # -- the file extract a bootstrap starts from
    @_locked
    def extract_csv(self, kind, cutoff_local):
        """CSV text (header + rows) of one kind of record stamped at or before a venue-local
        cut-off: kind is "accounts", "events", "sales" or "scans" (see README for columns)."""
        cutoff = self.clock.epoch_of(cutoff_local) + 59.999
        loc = self.clock.local
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        if kind == "accounts":
            cols = ["acct_id", "cust_name_id"] + list(CUSTOMER_FIELDS) + OTHER_INFO
            w.writerow(cols + ["update_date_time"])
            for a in sorted(self.accounts.values(), key=lambda a: a["acct_id"]):
                if a["created"] <= cutoff:
                    w.writerow([a[c] for c in cols] + [loc(a["at"])])
        elif kind == "events":
            w.writerow(["event_name", "event_id", "event_name_inet", "event_description",
                        "event_date", "event_time", "event_category", "plan_type",
                        "events_in_plan", "venue_name", "season_name"])
            for e in sorted(self.events, key=lambda e: e["event_name"]):
                d = self.clock.local_dt(e["start"])
                w.writerow([e["event_name"], e["event_id"], e["event_name_inet"],
                            e["event_description"],
                            d.strftime("%Y-%m-%d"), d.strftime("%H:%M"), e["event_category"],
                            e["plan_type"], "|".join(e["events_in_plan"]), e["venue_name"],
                            e["season_name"]])
        elif kind == "sales":
            w.writerow(["trans_id", "trans_type", "orig_trans_id", "acct_id", "event_name",
                        "plan_name", "section_name", "row_name", "seat_num", "num_seats",
                        "price_code", "full_price", "purchase_price", "trans_date_time"])
            for s in sorted(self.sales, key=lambda s: s["trans_id"]):
                if s["at"] <= cutoff:
                    w.writerow([s["trans_id"], s["trans_type"], s["orig_trans_id"] or "",
                                s["acct_id"], s["event_name"], s["plan_name"],
                                s["section_name"], s["row_name"],
                                s["seat_num"], s["num_seats"], s["price_code"],
                                "%d.%02d" % divmod(s["full_cents"], 100),
                                "%d.%02d" % divmod(s["paid_cents"], 100), loc(s["at"])])
        elif kind == "scans":
            w.writerow(["scan_id", "acct_id", "event_name", "section_name", "row_name",
                        "seat_num", "barcode", "gate", "scan_date_time"])
            for s in sorted(self.scans, key=lambda s: s["scan_id"]):
                if s["at"] <= cutoff:
                    w.writerow([s["scan_id"], s["acct_id"], s["event_name"], s["section_name"],
                                s["row_name"], s["seat_num"], s["barcode"], s["gate"],
                                loc(s["at"])])
        else:
            raise ValueError("unknown extract kind %r" % (kind,))
        return out.getvalue()
