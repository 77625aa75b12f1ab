"""data.py — deterministic account data for the Tradable Bits simulator.

generate(seed, ...) builds the fans, tickets, activities, tags and saved segments of one
Tradable Bits account from a seed alone: the same seed gives the same account, field for field,
on every machine (only random.Random(seed) is used, never the wall clock or hash order). Times
are UTC epoch seconds plus milliseconds, all before `start` (the simulated "now" at startup), so
a simulator whose clock starts at `start` sees the generated account as history.

Records are plain dicts holding the simulator's internal form (epoch numbers, Decimal-free
floats rounded to cents); simulator.py renders them in the vendor's answer shapes.
"""

import calendar
import random

DAY = 86400
# 2026-03-01 00:00:00 UTC: the default simulated "now" at startup.
DEFAULT_START = calendar.timegm((2026, 3, 1, 0, 0, 0, 0, 0, 0))

FIRST = ["Ava", "Liam", "Mia", "Noah", "Zoe", "Omar", "Ines", "Jonas", "Lea", "Marta", "Yuki",
         "Chen", "Sofia", "Lukas", "Amara", "Pavel", "Nora", "Elif", "Tomas", "Hana"]
LAST = ["Berg", "Novak", "Silva", "Okafor", "Muller", "Tanaka", "Rossi", "Haddad", "Larsen",
        "Kowalski", "Dubois", "Schmidt", "Garcia", "Ivanova", "Walsh", "Kim", "Moreau", "Costa"]
# (city, province, country_code, postal_code, metro_area)
PLACES = [("Vancouver", "British Columbia", "CA", "V6B 1A1", "Vancouver"),
          ("Toronto", "Ontario", "CA", "M5V 2T6", "Toronto"),
          ("Seattle", "Washington", "US", "98101", "Seattle-Tacoma"),
          ("Chicago", "Illinois", "US", "60601", "Chicago"),
          ("Austin", "Texas", "US", "78701", "Austin"),
          ("Berlin", "Berlin", "DE", "10117", None),
          ("Vienna", "Vienna", "AT", "1010", None)]
# (event_key, event_name, artist_name, venue_name, days after start)
EVENTS = [("EV-1001", "Tosca", "Vienna State Opera", "Orpheum Theatre", 12),
          ("EV-1002", "Summer Lights", "The Lanterns", "Rogers Arena", 40),
          ("EV-1003", "Night Shift Live", "Night Shift", "Commodore Ballroom", 5),
          ("EV-1004", "Jazz at the Pier", "Mara Quartet", "Pier Stage", 70),
          ("EV-1005", "Winter Gala", "City Symphony", "Orpheum Theatre", 200)]
PRICE_CODES = [("A", 129.00), ("B", 89.50), ("C", 59.00), ("GA", 45.00), ("VIP", 249.99)]
NETWORKS = ["ticketmaster", "eventbrite", "universe"]
APP_TYPES = ["contest", "survey", "signup", "quiz"]
CAMPAIGNS = ["Spring Giveaway", "Season Survey", "Newsletter Signup", "Trivia Night"]
TAGS = ["VIP", "Newsletter", "Season 2026", "Lapsed"]


def _ms(rng):
    return rng.randrange(1000)


def make_fan(fan_id, rng, created, updated, account_id, seq):
    first = rng.choice(FIRST)
    last = rng.choice(LAST)
    city, prov, cc, postal, metro = rng.choice(PLACES)
    opt_out = rng.random() < 0.08
    year = rng.randrange(1950, 2008)
    return {
        "fan_id": fan_id,
        "account_id": account_id,
        "first_name": first,
        "last_name": last,
        "email": "%s.%s.%d@example.test" % (first.lower(), last.lower(), seq),
        "phone": "+1604555%04d" % (seq % 10000) if rng.random() < 0.6 else None,
        "city": city,
        "province": prov,
        "country_code": cc,
        "postal_code": postal,
        "metro_area": metro,
        "latitude": round(49.0 + rng.random(), 4),
        "longitude": round(-123.0 + rng.random(), 4),
        "ip_address": "203.0.113.%d" % rng.randrange(1, 255),
        "is_optout": opt_out,
        "is_subscribed": (not opt_out) and rng.random() < 0.7,
        "is_phone_subscribed": (not opt_out) and rng.random() < 0.3,
        "is_confirmed": rng.random() < 0.5,
        "is_phone_confirmed": False,
        "gender": rng.choice(["male", "female", "diverse", "other", None]),
        "rating": rng.randrange(0, 6),
        "birth_date": "%04d-%02d-%02d" % (year, rng.randrange(1, 13), rng.randrange(1, 29))
        if rng.random() < 0.7 else None,
        "display_name": "%s %s." % (first, last[0]),
        "fan_source": "generated",
        "fields": {},
        "last_page_tab_id": None,
        "last_campaign_name": None,
        "created": created,
        "created_ms": _ms(rng),
        "updated": updated,
        "updated_ms": _ms(rng),
    }


def generate(seed, n_fans=60, n_tickets=150, n_activities=80, start=DEFAULT_START,
             deleted_share=0.05, account_id=7001):
    """The account of one seed: {"fans": [...], "tickets": [...], "activities": [...],
    "tags": [{"tag_id", "tag_name", "members": {fan_id: (epoch, ms)}}], "segments": [...],
    "next_ids": {...}, "events": [...]}."""
    rng = random.Random("tradablebits-sim/%s" % (seed,))
    fan_base = rng.randrange(100000, 200000)
    fans = []
    for i in range(n_fans):
        created = start - rng.randrange(2 * DAY, 400 * DAY)
        updated = min(start - 1, created + rng.randrange(0, 60 * DAY))
        fans.append(make_fan(fan_base + i, rng, created, updated, account_id, i))
    ticket_base = rng.randrange(5000000, 6000000)
    tickets = []
    for i in range(n_tickets):
        fan = rng.choice(fans) if fans else None
        ev = rng.choice(EVENTS)
        pc, price = rng.choice(PRICE_CODES)
        seats = rng.choice([1, 1, 2, 2, 2, 3, 4])
        purchased = start - rng.randrange(DAY, 120 * DAY)
        net = rng.choice(NETWORKS)
        order = "%s-%d" % (net[:2].upper(), 880000 + i // 2)
        t = {
            "ticket_id": ticket_base + i,
            "ticket_key": "%s-%d" % (order, i % 2 + 1),
            "account_id": account_id,
            "fan_id": fan["fan_id"] if fan else None,
            "email": fan["email"] if fan else None,
            "first_name": fan["first_name"] if fan else None,
            "last_name": fan["last_name"] if fan else None,
            "network": net,
            "order_key": order,
            "event_key": ev[0],
            "event_name": ev[1],
            "artist_name": ev[2],
            "venue_name": ev[3],
            "event_date": start + ev[4] * DAY + 19 * 3600 + 1800,
            "purchase": purchased,
            "paid_amount": round(price * seats, 2),
            "num_seats": seats,
            "price_code": pc,
            "city": fan["city"] if fan else None,
            "province": fan["province"] if fan else None,
            "country_code": fan["country_code"] if fan else None,
            "metro_area": fan["metro_area"] if fan else None,
            "postal_code": fan["postal_code"] if fan else None,
            "customer_key": "C-%d" % (fan["fan_id"] * 7 % 100003) if fan else None,
            "is_deleted": rng.random() < deleted_share,
            "updated": min(start - 1, purchased + rng.randrange(0, 3 * DAY)),
        }
        tickets.append(t)
    act_base = rng.randrange(9000000, 9500000)
    activities = []
    act_id = act_base
    for i in range(n_activities):
        act_id += rng.randrange(1, 4)                   # increasing, with gaps
        fan = rng.choice(fans) if fans else None
        k = rng.randrange(len(CAMPAIGNS))
        activities.append({
            "activity_id": act_id,
            "account_id": account_id,
            "fan_id": fan["fan_id"] if fan else None,
            "campaign_title": CAMPAIGNS[k],
            "app_type": APP_TYPES[k],
            "page_tab_id": 300 + k,
            "stream_key": None,
            "ip_address": "198.51.100.%d" % rng.randrange(1, 255),
            "user_key": None,
            "name": "%s %s" % (fan["first_name"], fan["last_name"]) if fan else None,
            "is_subscribed": fan["is_subscribed"] if fan else False,
            "is_phone_subscribed": fan["is_phone_subscribed"] if fan else False,
            "created": start - rng.randrange(DAY, 90 * DAY),
        })
    tag_base = rng.randrange(400, 900)
    tags = []
    for i, name in enumerate(TAGS):
        members = {}
        for f in fans:
            if rng.random() < 0.25:
                members[f["fan_id"]] = (max(f["created"], start - rng.randrange(DAY, 200 * DAY)),
                                        _ms(rng))
        tags.append({"tag_id": tag_base + i, "tag_name": name, "members": members,
                     "created": start - 300 * DAY})
    snap = sorted(f["fan_id"] for f in fans if rng.random() < 0.3)
    segments = [
        {"segment_type": "snapshot", "segment_id": 11, "segment_name": "Presale list",
         "fan_ids": snap},
        {"segment_type": "filter", "segment_id": 21, "segment_name": "Subscribed in CA",
         "fan_ids": sorted(f["fan_id"] for f in fans
                           if f["is_subscribed"] and f["country_code"] == "CA")},
    ]
    return {
        "fans": fans,
        "tickets": tickets,
        "activities": activities,
        "tags": tags,
        "segments": segments,
        "next_ids": {
            "fan": fan_base + n_fans,
            "ticket": ticket_base + n_tickets,
            "activity": (activities[-1]["activity_id"] + 1) if activities else act_base,
            "tag": tag_base + len(TAGS),
        },
        "account_id": account_id,
    }
