#!/usr/bin/env python3
"""bench/gen_segments_db.py — fill a stagedoor data dir with generated events, customers,
profiles and sales, straight into its SQLite file, for bench/segments.sh.

Loading 10 million sales through the HTTP API or a connector takes hours (every sale is
validated and group-committed); a segment benchmark only needs the rows as the hub stores
them. So this writes the rows itself, in the hub's own schema:

  * the data dir must have been created by the binary under test (`stagedoor tenant create
    CLIENT` — that runs the migrations), so the tables, indexes and columns are exactly the
    release's; the generator only INSERTs with explicit column lists and fails loudly if the
    schema has moved on (a missing column is an sqlite3.OperationalError);
  * records get what the write path would give them: a store-wide increasing `seq`, documents
    in the model's normal form (prices as decimal strings with two places, purchase times as
    UTC `…Z`), `dup_key` as the validator folds it, `email_key` lowercased, sales `event_ref`
    = `event_id` (no aliases);
  * profiles are what the default link rule (`email`) makes: one profile per e-mail address,
    linked to every source record with that address, `opt_out` = any source record opted out.
    About 5 % of the customers exist twice — once from the webhook and once from a `csv`
    source with the same e-mail address — so segments see multi-source profiles.

Secondary indexes on `sales` are dropped before the bulk insert and recreated afterwards from
their own `CREATE INDEX` text (read back from sqlite_master), which is several times faster
than maintaining them row by row and ends in the same schema. Triggers on `customers` and
`sales` are dropped and recreated the same way. The per-profile facts (0013_profile_facts.sql),
which the hub keeps as it writes, are then filled by the migration's own backfill statement,
read from src/store/sqlite/schema/0013_profile_facts.sql, so they agree with the sales. The
journal is switched off during the load and the file is put back into WAL mode at the end.

Data (deterministic for a given --seed): events over 2019-01-01 .. 2027-06-30 in Berlin,
Hamburg, Munich and Vienna with real works, composers and role names sung by fictional
singers; customers with salutation, post code and city; sales of which ~5 % are ANON, bought
1–180 days before the performance, in regular / VIP / subscription / comp, quantity 1–6,
prices per ticket in EUR.

    python3 bench/gen_segments_db.py DATA_DIR --client bench --env test \\
        --events 20000 --customers 1000000 --sales 10000000

Prints one line per table (NAME ROWS SECONDS). 10 million sales took 7.5 minutes on the 2-CPU
bench machine (bench/README.md), most of it Python building the rows.
"""
import argparse
import datetime
import os
import random
import sqlite3
import sys
import time

WORKS = [  # (work_title, composer, roles)
    ("Otello", "Giuseppe Verdi", ["Otello", "Desdemona", "Iago", "Cassio"]),
    ("La traviata", "Giuseppe Verdi", ["Violetta", "Alfredo", "Giorgio Germont"]),
    ("Aida", "Giuseppe Verdi", ["Aida", "Radames", "Amneris", "Amonasro"]),
    ("Rigoletto", "Giuseppe Verdi", ["Rigoletto", "Gilda", "Duke of Mantua"]),
    ("Tosca", "Giacomo Puccini", ["Tosca", "Cavaradossi", "Scarpia"]),
    ("La bohème", "Giacomo Puccini", ["Mimì", "Rodolfo", "Musetta", "Marcello"]),
    ("Madama Butterfly", "Giacomo Puccini", ["Cio-Cio-San", "Pinkerton", "Suzuki"]),
    ("Die Zauberflöte", "Wolfgang Amadeus Mozart", ["Tamino", "Pamina", "Papageno",
                                                    "Königin der Nacht"]),
    ("Don Giovanni", "Wolfgang Amadeus Mozart", ["Don Giovanni", "Leporello", "Donna Anna"]),
    ("Le nozze di Figaro", "Wolfgang Amadeus Mozart", ["Figaro", "Susanna", "Contessa"]),
    ("Carmen", "Georges Bizet", ["Carmen", "Don José", "Escamillo", "Micaëla"]),
    ("Salome", "Richard Strauss", ["Salome", "Herodes", "Jochanaan"]),
    ("Der Rosenkavalier", "Richard Strauss", ["Marschallin", "Octavian", "Sophie"]),
    ("Lohengrin", "Richard Wagner", ["Lohengrin", "Elsa", "Ortrud", "Telramund"]),
    ("Tristan und Isolde", "Richard Wagner", ["Tristan", "Isolde", "Brangäne"]),
    ("Fidelio", "Ludwig van Beethoven", ["Leonore", "Florestan", "Rocco"]),
    ("Eugen Onegin", "Pyotr Tchaikovsky", ["Tatjana", "Onegin", "Lenski"]),
    ("Rusalka", "Antonín Dvořák", ["Rusalka", "Prinz", "Ježibaba"]),
    ("Symphony No. 9", "Ludwig van Beethoven", []),
    ("Requiem", "Giuseppe Verdi", []),
]
VENUES = [  # (venue, city, [(hall, capacity)], post code prefix)
    ("Staatsoper Lindenhof", "Berlin", [("Main Hall", 1250), ("Apollo Hall", 320)], "10"),
    ("Opera House", "Hamburg", [("Great Hall", 1690)], "20"),
    ("National Theatre", "Munich", [("Main Stage", 2100), ("Studio", 180)], "80"),
    ("Konzerthaus", "Vienna", [("Großer Saal", 1865)], "10"),
]
TIMES = ["19:30:00", "19:30:00", "19:30:00", "19:00:00", "18:00:00", "15:00:00", "11:00:00"]
FIRST_F = ["Anna", "Clara", "Emma", "Greta", "Ida", "Karla", "Marie", "Olga", "Rosa", "Tina",
           "Zoë", "Łucja"]
FIRST_M = ["Ben", "David", "Felix", "Hans", "Jonas", "Lukas", "Noah", "Paul", "Stefan", "Ulrich",
           "Jürgen", "Émile"]
LAST = ["Schmidt", "Müller", "Weber", "Wagner", "Becker", "Hoffmann", "Koch", "Richter",
        "Klein", "Wolf", "Neumann", "Braun", "Zimmermann", "Krüger", "Hartmann", "Lange"]
CITIES = [("Berlin", "10"), ("Berlin", "12"), ("Berlin", "13"), ("Potsdam", "14"),
          ("Hamburg", "20"), ("Hamburg", "22"), ("Munich", "80"), ("Munich", "81"),
          ("Vienna", "10"), ("Leipzig", "04")]
SINGERS = ["%s %s" % (f, l) for f in FIRST_F[:8] + FIRST_M[:8] for l in LAST[:10]]
# (category, weight, per-ticket prices in cents)
CATEGORIES = [("regular", 70, [3900, 5900, 8900, 11900, 14900]),
              ("VIP", 8, [19900, 24900, 29900]),
              ("subscription", 17, [3120, 4720, 7120]),
              ("comp", 5, [0])]
QTY = [1, 1, 1, 2, 2, 2, 2, 2, 3, 4, 2, 6]
EPOCH = datetime.date(1970, 1, 1)


def jstr(s):
    """A JSON string literal (the data has no characters that need escaping but quotes)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fold(s):
    """The validator's dup_key folding for our ASCII-and-Latin data: trim, collapse, lower."""
    return " ".join(s.split()).lower()


def backfill_sql():
    """The INSERT … SELECT that fills profile_facts in 0013_profile_facts.sql (its first
    statement that inserts into the table), so generated data agrees with the migration."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "store",
                        "sqlite", "schema", "0013_profile_facts.sql")
    with open(path, encoding="utf-8") as f:
        text = "\n".join(line for line in f.read().splitlines()
                         if not line.lstrip().startswith("--"))
    start = text.index("INSERT INTO profile_facts")
    return text[start:text.index(";", start)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--client", default="bench")
    ap.add_argument("--env", choices=["test", "prod"], default="test")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--customers", type=int, default=1000000)
    ap.add_argument("--sales", type=int, default=10000000)
    ap.add_argument("--anon", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=20261003)
    a = ap.parse_args()
    if a.events < 1 or a.customers < 1 or a.sales < 0:
        sys.exit("gen_segments_db: --events and --customers must be >= 1, --sales >= 0")
    path = os.path.join(a.data_dir, "stagedoor.db")
    if not os.path.exists(path):
        sys.exit("gen_segments_db: %s missing; run `stagedoor tenant create %s --data %s` first"
                 % (path, a.client, a.data_dir))
    env = 0 if a.env == "test" else 1
    rnd = random.Random(a.seed)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -2000000")
    # tenants live in the control plane's own file
    ctl = sqlite3.connect(os.path.join(a.data_dir, "control.db"))
    row = ctl.execute("SELECT id FROM tenants WHERE client_id = ?", (a.client,)).fetchone()
    ctl.close()
    if not row:
        sys.exit("gen_segments_db: no tenant '%s' in %s" % (a.client, a.data_dir))
    tenant = row[0]
    for table in ("events", "customers", "sales", "profiles"):
        n = db.execute("SELECT count(*) FROM %s WHERE tenant_id = ? AND env = ?" % table,
                       (tenant, env)).fetchone()[0]
        if n:
            sys.exit("gen_segments_db: tenant '%s' already has %d %s" % (a.client, n, table))
    seq = db.execute("SELECT max((SELECT coalesce(max(seq), 0) FROM events),"
                     " (SELECT coalesce(max(seq), 0) FROM customers),"
                     " (SELECT coalesce(max(seq), 0) FROM sales))").fetchone()[0]
    now_usec = int(time.time() * 1e6)
    db.execute("BEGIN")

    # ---- events --------------------------------------------------------------------------
    t0 = time.time()
    halls = [(v, c, h, cap) for v, c, hs, _ in VENUES for h, cap in hs]
    first_day = datetime.date(2019, 1, 1)
    span = (datetime.date(2027, 6, 30) - first_day).days
    events = []  # (event_id, days since epoch of the performance)
    used = set()
    rows = []
    for i in range(a.events):
        while True:
            day = first_day + datetime.timedelta(days=rnd.randrange(span + 1))
            venue, city, hall, cap = halls[rnd.randrange(len(halls))]
            when = TIMES[rnd.randrange(len(TIMES))]
            if (day, when, hall) not in used:
                used.add((day, when, hall))
                break
        work, composer, roles = WORKS[rnd.randrange(len(WORKS))]
        eid = "EVT-%06d" % (i + 1)
        cast = ",".join('{"name":%s,"role":%s}' % (jstr(SINGERS[rnd.randrange(len(SINGERS))]),
                                                   jstr(r)) for r in roles)
        doc = ('{"event_id":%s,"title":%s,"date":"%s","time":"%s","venue":%s,"hall":%s,'
               '"capacity":%d,"city":%s,"work_title":%s,"composer":%s,"cast":[%s]}' % (
                   jstr(eid), jstr(work), day.isoformat(), when, jstr(venue), jstr(hall), cap,
                   jstr(city), jstr(work), jstr(composer), cast))
        seq += 1
        dup = "%s|%s|%s|%s" % (day.isoformat(), when, fold(venue), fold(hall))
        rows.append((seq, tenant, env, eid, dup, doc, now_usec))
        events.append((eid, (day - EPOCH).days))
    db.executemany("INSERT INTO events (seq, tenant_id, env, event_id, dup_key, doc,"
                   " updated_usec) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    print("events %d %.1f" % (len(rows), time.time() - t0), flush=True)

    # ---- customers and profiles ----------------------------------------------------------
    t0 = time.time()
    triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                          " AND tbl_name IN ('customers', 'sales')").fetchall()
    for name, _ in triggers:
        db.execute('DROP TRIGGER "%s"' % name.replace('"', '""'))
    pid = db.execute("SELECT coalesce(max(id), 0) FROM profiles").fetchone()[0]
    customers = []  # (source, customer_id)
    prow, crow = [], []
    for i in range(a.customers):
        female = rnd.random() < 0.55
        fn = (FIRST_F if female else FIRST_M)[rnd.randrange(12)]
        ln = LAST[rnd.randrange(len(LAST))]
        city, pc = CITIES[rnd.randrange(len(CITIES))]
        post = pc + "%03d" % rnd.randrange(1000)
        email = "%s.%s.%d@example.org" % (fn.lower(), ln.lower(), i + 1)
        opt_out = 1 if rnd.random() < 0.03 else 0
        sal = rnd.choice(["Ms", "Frau"]) if female else rnd.choice(["Mr", "Herr"])
        pid += 1
        sources = [("webhook", "C-%07d" % (i + 1), opt_out)]
        if rnd.random() < 0.05:  # the same person in the box office's CSV export
            sources.append(("csv", "K%07d" % (i + 1), 1 if rnd.random() < 0.1 else 0))
        p_opt = max(o for _, _, o in sources)
        prow.append((pid, tenant, env, email.lower(), p_opt, now_usec, now_usec))
        for src, cid, o in sources:
            doc = ('{"customer_id":%s,"email":%s,"salutation":%s,"first_name":%s,'
                   '"last_name":%s,"street":"Hauptstraße %d","post_code":"%s","city":%s,'
                   '"ad_opt_out":%s}' % (jstr(cid), jstr(email), jstr(sal), jstr(fn), jstr(ln),
                                         1 + rnd.randrange(200), post, jstr(city),
                                         "true" if o else "false"))
            seq += 1
            crow.append((seq, tenant, env, src, cid, email.lower(), o, pid, doc, now_usec))
            customers.append((src, cid))
        if len(crow) >= 100000:
            db.executemany("INSERT INTO profiles (id, tenant_id, env, link_key, opt_out,"
                           " created_usec, updated_usec) VALUES (?, ?, ?, ?, ?, ?, ?)", prow)
            db.executemany("INSERT INTO customers (seq, tenant_id, env, source, customer_id,"
                           " email_key, ad_opt_out, profile_id, doc, updated_usec)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", crow)
            prow, crow = [], []
    db.executemany("INSERT INTO profiles (id, tenant_id, env, link_key, opt_out, created_usec,"
                   " updated_usec) VALUES (?, ?, ?, ?, ?, ?, ?)", prow)
    db.executemany("INSERT INTO customers (seq, tenant_id, env, source, customer_id, email_key,"
                   " ad_opt_out, profile_id, doc, updated_usec)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", crow)
    cols = [r[1] for r in db.execute("PRAGMA table_info(customers)")]
    if "seg_post_code" in cols:  # 0014: the folded copies the customer upsert keeps
        db.create_function("sd_fold", 1, lambda v: None if v is None else fold(str(v)),
                           deterministic=True)
        db.execute("UPDATE customers SET seg_post_code = sd_fold(json_extract(doc, '$.post_code')),"
                   " seg_city = sd_fold(json_extract(doc, '$.city'))"
                   " WHERE tenant_id = ? AND env = ?", (tenant, env))
    print("customers %d %.1f" % (len(customers), time.time() - t0), flush=True)

    # ---- sales ---------------------------------------------------------------------------
    t0 = time.time()
    saved = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                       " AND tbl_name = 'sales' AND sql IS NOT NULL").fetchall()
    for name, _ in saved:
        db.execute('DROP INDEX "%s"' % name.replace('"', '""'))
    total = sum(w for _, w, _ in CATEGORIES)
    cats = []
    for name, w, prices in CATEGORIES:
        cats += [(name, prices)] * w
    day_text = {}
    hms = ["%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
    n_ev, n_cu = len(events), len(customers)
    today = (datetime.datetime.fromtimestamp(now_usec / 1e6, datetime.timezone.utc).date()
             - EPOCH).days
    anon_pm = int(round(a.anon * 1000))
    getrandbits = rnd.getrandbits
    sql = ("INSERT INTO sales (seq, tenant_id, env, invoice_number, event_id, event_ref,"
           " customer_id, purchase_datetime, sales_price_minor, currency, doc, updated_usec,"
           " source, quantity, net_quantity, net_minor)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'EUR', ?, ?, ?, ?, ?, ?)")
    batch = []
    for i in range(1, a.sales + 1):
        x = getrandbits(128)
        x, e = divmod(x, n_ev)
        eid, eday = events[e]
        x, an = divmod(x, 1000)
        if an < anon_pm:
            src, cid = "webhook", "ANON"
        else:
            x, cu = divmod(x, n_cu)
            src, cid = customers[cu]
        x, d = divmod(x, 180)
        x, s = divmod(x, 86400)
        x, k = divmod(x, total)
        cat, prices = cats[k]
        x, q = divmod(x, len(QTY))
        price = prices[x % len(prices)]
        pday = min(eday - 1 - d, today - 1 - d % 90)  # nothing bought in the future
        dt = day_text.get(pday)
        if dt is None:
            dt = day_text[pday] = (EPOCH + datetime.timedelta(days=pday)).isoformat()
        when = dt + "T" + hms[s] + "Z"
        inv = "INV-%08d" % i
        ptext = "%d.%02d" % divmod(price, 100)
        doc = ('{"invoice_number":"%s","event_id":"%s","customer_id":%s,"purchase_datetime":"%s",'
               '"ticket_category":"%s","quantity":%d,"sales_price":"%s","currency":"EUR"}'
               % (inv, eid, jstr(cid), when, cat, QTY[q], ptext))
        seq += 1
        # a sale of the order lifecycle (0010_order_lifecycle.sql): nothing refunded, so its
        # net figures are its own; left at their defaults (0) it would count as wholly refunded
        batch.append((seq, tenant, env, inv, eid, eid, cid, when, price, doc, now_usec, src,
                      QTY[q], QTY[q], price * QTY[q]))
        if len(batch) >= 200000:
            db.executemany(sql, batch)
            batch = []
    db.executemany(sql, batch)
    t1 = time.time()
    for _, text in saved:
        db.execute(text)
    print("sales %d %.1f (indexes %.1f)" % (a.sales, time.time() - t0, time.time() - t1),
          flush=True)

    # ---- per-profile facts ---------------------------------------------------------------
    t0 = time.time()
    for _, text in triggers:
        db.execute(text)
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'profile_facts'").fetchone():
        db.execute("DELETE FROM profile_facts")
        db.execute(backfill_sql())
        n = db.execute("SELECT count(*) FROM profile_facts").fetchone()[0]
        print("profile_facts %d %.1f" % (n, time.time() - t0), flush=True)
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()


if __name__ == "__main__":
    main()
