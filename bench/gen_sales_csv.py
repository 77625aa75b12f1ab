#!/usr/bin/env python3
"""bench/gen_sales_csv.py — deterministic box-office CSV files for bench/csv_import.sh.

Writes into OUT_DIR (comma-delimited UTF-8, header row, LF line ends, no quoting needed):
  events.csv     N_EVENTS events: event_id,title,work_title,composer,date,time,venue,hall,
                 capacity,city — one performance per (venue, hall, date, time)
  customers.csv  N_CUSTOMERS customers: customer_id,email,salutation,first_name,last_name,
                 ad_opt_out (only with --customers > 0)
  sales.csv      N_SALES sales: invoice_number,event_id,customer_id,purchase_datetime,
                 ticket_category,quantity,sales_price,currency

Every row is valid: the events exist, a sale's customer is one of the customers (or ANON, the
share given by --anon), its purchase lies before its performance, categories follow a realistic
mix (regular, VIP, subscription, comp at price 0.00), quantities 1..6, prices in EUR.
The same arguments always produce byte-identical files (--seed).

    python3 bench/gen_sales_csv.py OUT_DIR --sales 1000000 --events 200 --customers 20000

Prints one line per file: NAME ROWS BYTES. About 2 s per million sales rows on one core.
"""
import argparse
import datetime
import os
import random
import sys

WORKS = [
    ("Otello", "Giuseppe Verdi"), ("La traviata", "Giuseppe Verdi"),
    ("Aida", "Giuseppe Verdi"), ("Tosca", "Giacomo Puccini"), ("La boheme", "Giacomo Puccini"),
    ("Die Zauberflote", "Wolfgang Amadeus Mozart"), ("Don Giovanni", "Wolfgang Amadeus Mozart"),
    ("Carmen", "Georges Bizet"), ("Salome", "Richard Strauss"), ("Lohengrin", "Richard Wagner"),
    ("Fidelio", "Ludwig van Beethoven"), ("Eugen Onegin", "Pyotr Tchaikovsky"),
]
VENUES = [("State Opera", "Berlin", ["Main Hall", "Apollo Hall"]),
          ("Opera House", "Hamburg", ["Great Hall"]),
          ("National Theatre", "Munich", ["Main Stage", "Studio"])]
CAPACITY = {"Main Hall": 1250, "Apollo Hall": 320, "Great Hall": 1690, "Main Stage": 2100,
            "Studio": 180}
FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hans", "Ida", "Jonas",
         "Karla", "Lukas", "Marie", "Noah", "Olga", "Paul", "Rosa", "Stefan", "Tina", "Ulrich"]
LAST = ["Schmidt", "Muller", "Weber", "Wagner", "Becker", "Hoffmann", "Koch", "Richter",
        "Klein", "Wolf", "Neumann", "Braun", "Zimmermann", "Kruger", "Hartmann", "Lange"]
# (category, weight, price list in cents)
CATEGORIES = [("regular", 70, [3900, 5900, 8900, 11900, 14900]),
              ("VIP", 8, [19900, 24900, 29900]),
              ("subscription", 17, [3120, 4720, 7120]),
              ("comp", 5, [0])]


def write_file(path, header, rows_iter):
    """Write header + rows (each a str without newline) in large blocks; returns row count."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(header + "\n")
        block = []
        for row in rows_iter:
            block.append(row)
            if len(block) >= 50000:
                f.write("\n".join(block))
                f.write("\n")
                n += len(block)
                block = []
        if block:
            f.write("\n".join(block))
            f.write("\n")
            n += len(block)
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--sales", type=int, default=1000000)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--anon", type=float, default=0.3, help="share of ANON sales (0..1)")
    ap.add_argument("--seed", type=int, default=20251003)
    ap.add_argument("--prefix", default="INV", help="invoice number prefix")
    a = ap.parse_args()
    if a.events < 1 or a.sales < 0 or a.customers < 0:
        sys.exit("gen_sales_csv: --events must be >= 1, --sales/--customers >= 0")
    rnd = random.Random(a.seed)
    os.makedirs(a.out_dir, exist_ok=True)

    # Events: season from 2025-09-01, one performance per (venue, hall, date, time).
    halls = [(v, c, h) for v, c, hs in VENUES for h in hs]
    season = datetime.date(2025, 9, 1)
    events = []  # (event_id, date)
    rows = []
    for i in range(a.events):
        venue, city, hall = halls[i % len(halls)]
        day = season + datetime.timedelta(days=i // len(halls))
        when = "19:30:00" if (i // len(halls)) % 7 != 6 else "18:00:00"
        title, composer = WORKS[rnd.randrange(len(WORKS))]
        eid = "EVT-%05d" % (i + 1)
        events.append((eid, day))
        rows.append("%s,%s,%s,%s,%s,%s,%s,%s,%d,%s" % (
            eid, title, title, composer, day.isoformat(), when, venue, hall, CAPACITY[hall],
            city))
    ne = write_file(os.path.join(a.out_dir, "events.csv"),
                    "event_id,title,work_title,composer,date,time,venue,hall,capacity,city",
                    iter(rows))
    print("events.csv %d %d" % (ne, os.path.getsize(os.path.join(a.out_dir, "events.csv"))))

    customers = ["C-%07d" % (i + 1) for i in range(a.customers)]
    if a.customers:
        def cust_rows():
            for i, cid in enumerate(customers):
                fn, ln = FIRST[rnd.randrange(len(FIRST))], LAST[rnd.randrange(len(LAST))]
                sal = "Ms" if fn in ("Anna", "Clara", "Emma", "Greta", "Ida", "Karla", "Marie",
                                     "Olga", "Rosa", "Tina") else "Mr"
                yield "%s,%s.%s.%d@example.com,%s,%s,%s,%s" % (
                    cid, fn.lower(), ln.lower(), i + 1, sal, fn, ln,
                    "true" if i % 9 == 0 else "false")
        nc = write_file(os.path.join(a.out_dir, "customers.csv"),
                        "customer_id,email,salutation,first_name,last_name,ad_opt_out",
                        cust_rows())
        print("customers.csv %d %d" % (nc, os.path.getsize(
            os.path.join(a.out_dir, "customers.csv"))))

    # Sales: pre-rendered per-event purchase-date strings (the 60 days before the performance).
    cat_names, cat_prices, cum = [], [], []
    total = 0
    for name, w, prices in CATEGORIES:
        total += w
        cat_names.append(name)
        cat_prices.append(["%d.%02d" % divmod(p, 100) for p in prices])
        cum.append(total)
    ev_days = []
    for eid, day in events:
        ev_days.append((eid, [(day - datetime.timedelta(days=d)).isoformat()
                              for d in range(1, 61)]))
    # One 64-bit draw per row, cut into the row's choices; times and prefixes pre-rendered.
    n_ev, n_cu = len(ev_days), len(customers)
    anon_per_mille = int(round(a.anon * 1000)) if customers else 1000
    hms = ["%02d:%02d:%02dZ" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
    ev_pre = [(eid + ",", days) for eid, days in ev_days]
    cust_pre = [c + "," for c in customers]
    cats = []  # per weight unit: (",category,", prices)
    for c, (name, w, prices) in enumerate(CATEGORIES):
        cats += [("," + name + ",", cat_prices[c])] * w
    qty = ["1", "1", "1", "2", "2", "2", "2", "2", "3", "4", "2", "6"]
    getrandbits = rnd.getrandbits
    inv = a.prefix + "-"

    def sale_rows():
        for i in range(1, a.sales + 1):
            x = getrandbits(128)
            x, e = divmod(x, n_ev)
            eid, days = ev_pre[e]
            x, an = divmod(x, 1000)
            if an < anon_per_mille:
                cid = "ANON,"
            else:
                x, cu = divmod(x, n_cu)
                cid = cust_pre[cu]
            x, d = divmod(x, 60)
            x, s = divmod(x, 86400)
            x, k = divmod(x, total)
            cat, prices = cats[k]
            x, q = divmod(x, len(qty))
            yield "".join((inv, "%08d," % i, eid, cid, days[d], "T", hms[s], cat, qty[q], ",",
                           prices[x % len(prices)], ",EUR"))

    ns = write_file(os.path.join(a.out_dir, "sales.csv"),
                    "invoice_number,event_id,customer_id,purchase_datetime,ticket_category,"
                    "quantity,sales_price,currency", sale_rows())
    print("sales.csv %d %d" % (ns, os.path.getsize(os.path.join(a.out_dir, "sales.csv"))))


if __name__ == "__main__":
    main()
