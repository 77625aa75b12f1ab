"""data.py — deterministic S-360 data for the simulator: performances, contacts
(ContactDataResult, the output of getContactData), orders (orderDetailsData, the output of
getOrderDetails) and access-control scans.

Everything comes from one random.Random(seed): the same seed gives the same season, record by
record. The records are realistic on the points a client gets wrong:
  - ids: orderId, operationId, performanceId, productId, eventId, contactId are JSON integers of
    up to 14 digits (int64; `big_ids=True` pushes orderId past 2**53 so a client that parses ids
    as double loses digits); contactNumber is a string with leading zeros;
  - money: integer thousandths of the catalogue currency (saleAmount 40000 = 40.000), with
    catalogCurrency {currencyCode, fractionDigit};
  - times: creationDateTime in ISO 8601 with milliseconds and the institution's offset
    (+01:00 / +02:00 across the DST change); referenceDate is the local midnight written in UTC;
  - people and companies: persons (individualContact) and structures (structureContact); family
    members and a company's buyers share one e-mail address; some contacts have no e-mail;
    names with accents;
  - orders: sales, reservations, options, refunds and exchanges as separate orders that name the
    order they undo, abandoned baskets (orderState = the configured abandoned literal), goods
    and services lines without a performance, season tickets;
  - extra fields S-360 may add at any time (the client must ignore what it does not know).
"""

import datetime as _dt
import random

try:
    import zoneinfo as _zoneinfo
except ImportError:   # pragma: no cover - Python < 3.9
    _zoneinfo = None

UTC = _dt.timezone.utc

FIRST = ["Anna", "Luca", "Zoë", "François", "Jürg", "Léa", "Noah", "Mia", "Élodie", "Matteo",
         "Sofia", "Nicolas", "Chloé", "Reto", "Ursula", "Marco", "Inès", "Björn", "Laura", "Timo"]
LAST = ["Müller", "Meier", "Schmid", "Keller", "Weber", "Huber", "Rossi", "Favre", "Bonvin",
        "Gerber", "Brunner", "Baumann", "Fischer", "Steiner", "Moser", "Zimmermann", "Dubois",
        "Bianchi", "Graf", "Frei"]
TOWNS = [("8001", "Zürich", "CH"), ("1003", "Lausanne", "CH"), ("3011", "Bern", "CH"),
         ("1204", "Genève", "CH"), ("4051", "Basel", "CH"), ("74000", "Annecy", "FR"),
         ("79098", "Freiburg im Breisgau", "DE"), ("6900", "Lugano", "CH")]
STREETS = ["Bahnhofstrasse", "Rue du Rhône", "Seestrasse", "Chemin des Vignes", "Hauptgasse",
           "Via Nassa", "Marktplatz", "Avenue de la Gare"]
COMPANIES = ["Helvetia Events AG", "Banque du Léman SA", "Alpenblick GmbH", "Uhrwerk & Co",
             "Chocolats Favre Sàrl", "Rheinhafen Logistik AG"]
WORKS = [("Tosca", "TOSCA"), ("La Traviata", "TRAVI"), ("Der Rosenkavalier", "ROSEN"),
         ("Swan Lake", "SWANL"), ("Carmen", "CARMN"), ("Beethoven 9", "BEET9"),
         ("Die Zauberflöte", "ZAUBR"), ("Giselle", "GISEL")]
SEAT_CATEGORIES = [("Catégorie 1", 120000), ("Catégorie 2", 85000), ("Catégorie 3", 45000)]
AUDIENCES = [("Plein tarif", 1000), ("AVS/AI", 800), ("Étudiant", 500)]   # per mille of price
GATES = ["Entrée principale", "Gate B", "Parterre Nord", "Loge 3"]

SALE_TYPES = ("SALE", "REFUND_CLIENT", "REFUND_ORGANIZATION", "EXCHANGE_CLIENT",
              "EXCHANGE_ORGANIZATION", "RESERVATION", "OPTION", "RESERVATION_FREEING",
              "OPTION_FREEING", "RENEWAL", "ST_TRANSFER")


def _zone(name):
    if _zoneinfo is not None:
        try:
            return _zoneinfo.ZoneInfo(name)
        except Exception:   # no tz database: Central European offsets, fixed
            pass
    return _dt.timezone(_dt.timedelta(hours=1), name)


def iso_ms(t, tz):
    """Epoch seconds -> '2020-10-13T10:09:27.503+02:00' in time zone tz."""
    d = _dt.datetime.fromtimestamp(t, tz)
    ms = int(round((t - int(t)) * 1000)) % 1000
    s = d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03d" % ms
    off = d.utcoffset() or _dt.timedelta(0)
    mins = int(off.total_seconds()) // 60
    sign = "+" if mins >= 0 else "-"
    mins = abs(mins)
    return "%s%s%02d:%02d" % (s, sign, mins // 60, mins % 60)


def reference_date(t, tz):
    """The local day of epoch t, its midnight written in UTC ('2026-03-01T23:00:00.000+00:00'
    for 2 March in Zürich)."""
    local = _dt.datetime.fromtimestamp(t, tz)
    midnight = _dt.datetime(local.year, local.month, local.day, tzinfo=tz)
    return iso_ms(midnight.timestamp(), UTC)


class Season:
    """A season of an institution: performances, contacts, orders, scans.

    start / end: epoch seconds of the first and last sales day (orders and contact changes are
    spread between them); performances are spread over the same period plus 60 days.
    """

    def __init__(self, seed=1, institution="myvenue", time_zone="Europe/Zurich",
                 currency=("CHF", 2), start=None, end=None, n_performances=12,
                 abandoned_state="ABANDONED", big_ids=False, extra_fields=True):
        self.rng = random.Random(seed)
        self.institution = institution
        self.tz = _zone(time_zone)
        self.currency = {"currencyCode": currency[0], "fractionDigit": currency[1]}
        if start is None:
            start = _dt.datetime(2025, 9, 1, tzinfo=UTC).timestamp()
        if end is None:
            end = _dt.datetime(2026, 3, 1, tzinfo=UTC).timestamp()
        self.start, self.end = start, end
        self.abandoned_state = abandoned_state
        self.extra_fields = extra_fields
        self._next_contact = 1000 + self.rng.randrange(1000)
        self._next_contact_id = 700000000000 + self.rng.randrange(10 ** 6)
        self._next_order = (2 ** 53 + 1) if big_ids else \
            10000702652000 + self.rng.randrange(10 ** 5)
        self._next_operation = 20000000000000 + self.rng.randrange(10 ** 5)
        self._next_scan = 500000 + self.rng.randrange(1000)
        self._t = self.start
        self.performances = [self._performance(i) for i in range(n_performances)]
        self.contacts = []        # every contact made, in creation order
        self.orders = []          # every order made, in creation order (orderDetailsData)

    # -- clock of the generated history
    def _tick(self, total):
        """Advance the generated time by a share of the season (monotonic, with jitter)."""
        step = (self.end - self.start) / max(total, 1)
        self._t = min(self._t + step * (0.5 + self.rng.random()), self.end)
        return self._t + self.rng.randrange(1000) / 1000.0

    # -- performances
    def _performance(self, i):
        rng = self.rng
        work, code = WORKS[i % len(WORKS)]
        day = self.start + (i + 1) * (self.end - self.start + 60 * 86400) / 13
        local = _dt.datetime.fromtimestamp(day, self.tz).replace(hour=19, minute=30, second=0,
                                                                 microsecond=0)
        pid = 10228000000000 + i * 7919 + rng.randrange(100)
        cats = []
        for j, (name, price) in enumerate(SEAT_CATEGORIES):
            cats.append({"seatCategoryId": 31000 + i * 10 + j, "name": name, "price": price,
                         "capacity": 200 + rng.randrange(300)})
        return {"performanceId": pid,
                "performance": "%s — %s" % (work, local.strftime("%d.%m.%Y %H:%M")),
                "eventId": 10227000000000 + (i % len(WORKS)),
                "productId": 10226000000000 + i,
                "product": work, "productCode": code,
                "startDateTime": iso_ms(local.timestamp(), self.tz),
                "seatCategories": cats,
                "audienceSubCategories": [{"audienceSubCategoryId": 4100 + k, "name": n,
                                           "factor": f} for k, (n, f) in enumerate(AUDIENCES)]}

    def performance(self, performance_id):
        for p in self.performances:
            if p["performanceId"] == performance_id:
                return p
        return None

    # -- contacts
    def _number(self):
        self._next_contact += 1 + self.rng.randrange(3)
        return "%010d" % self._next_contact

    def contact(self, t=None, kind=None, email=None, structure=None):
        """One new contact (ContactDataResult without the status fields). kind: 'person' or
        'company' (random when None); email: force a shared address."""
        rng = self.rng
        if t is None:
            t = self._tick(1000)
        if kind is None:
            kind = "company" if rng.random() < 0.12 else "person"
        self._next_contact_id += 1 + rng.randrange(5)
        zip_code, town, country = rng.choice(TOWNS)
        c = {"contactId": self._next_contact_id, "contactNumber": self._number(),
             "creationDate": iso_ms(t, self.tz), "lastUpdateDate": iso_ms(t, self.tz),
             "role": "PUBLIC",
             "addresses": [{"addressId": self._next_contact_id * 10 + 1, "isMain": True,
                            "street1": "%s %d" % (rng.choice(STREETS), 1 + rng.randrange(120)),
                            "zipCode": zip_code, "town": town, "countryCode": country}],
             "communicationMeans": [], "authorizations": [], "contactCriteria": []}
        if kind == "company":
            name = rng.choice(COMPANIES)
            c["structureContact"] = {"name": name, "structureType": "COMPANY",
                                     "vatNumber": "CHE-%03d.%03d.%03d" % (
                                         rng.randrange(1000), rng.randrange(1000),
                                         rng.randrange(1000))}
            mail = email or "billetterie@%s.example.ch" % name.split()[0].lower().replace("&", "")
            c["communicationMeans"].append({"type": "EMAIL", "value": mail, "isMain": True})
            c["communicationMeans"].append({"type": "PHONE", "isMain": False,
                                            "value": "+41 44 %03d %02d %02d" % (
                                                rng.randrange(1000), rng.randrange(100),
                                                rng.randrange(100))})
        else:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            c["individualContact"] = {
                "title": rng.choice(["MR", "MRS", "MX"]), "firstName": first, "lastName": last,
                "birthDate": "%04d-%02d-%02d" % (1940 + rng.randrange(65), 1 + rng.randrange(12),
                                                 1 + rng.randrange(28)),
                "languageCode": rng.choice(["de", "fr", "it", "en"])}
            if structure is not None:
                c["individualContact"]["structureContactNumber"] = structure["contactNumber"]
            if email is not None:
                c["communicationMeans"].append({"type": "EMAIL", "value": email, "isMain": True})
            elif rng.random() < 0.9:
                mail = "%s.%s%d@example.%s" % (_ascii(first), _ascii(last), rng.randrange(100),
                                               country.lower())
                c["communicationMeans"].append({"type": "EMAIL", "value": mail, "isMain": True})
            if rng.random() < 0.7:
                c["communicationMeans"].append({"type": "MOBILE", "isMain": False,
                                                "value": "+41 79 %03d %02d %02d" % (
                                                    rng.randrange(1000), rng.randrange(100),
                                                    rng.randrange(100))})
        c["authorizations"] = [
            {"authorizationType": "NEWSLETTER", "value": rng.random() < 0.6,
             "modificationDate": iso_ms(t, self.tz)},
            {"authorizationType": "THIRD_PARTY", "value": rng.random() < 0.2,
             "modificationDate": iso_ms(t, self.tz)}]
        if rng.random() < 0.3:
            c["contactCriteria"].append({"criterionCode": "ABO_TYPE",
                                         "value": rng.choice(["FULL", "HALF", "YOUTH"])})
        if self.extra_fields:
            c["indicators"] = []
            c["hasWarning"] = False
            if rng.random() < 0.3:
                c["loyaltyProgramme"] = {"tier": rng.choice(["SILVER", "GOLD"]), "since": 2019}
        self.contacts.append(c)
        return c

    def contacts_batch(self, n, t0=None, t1=None):
        """n contacts: persons, companies with buyers sharing the company's address, families
        sharing one address. Their lastUpdateDate runs from t0 to t1 (the season by default)."""
        t0 = self.start if t0 is None else t0
        t1 = self.end if t1 is None else t1
        out = []
        while len(out) < n:
            t = t0 + (t1 - t0) * len(out) / max(n, 1) + self.rng.randrange(1000) / 1000.0
            r = self.rng.random()
            left = n - len(out)
            if r < 0.08 and left >= 3:
                company = self.contact(t, "company")
                mail = company["communicationMeans"][0]["value"]
                out += [company, self.contact(t + 1, "person", email=mail, structure=company),
                        self.contact(t + 2, "person", email=mail, structure=company)]
            elif r < 0.2 and left >= 2:
                first = self.contact(t, "person")
                mails = [m["value"] for m in first["communicationMeans"] if m["type"] == "EMAIL"]
                out += [first, self.contact(t + 1, "person", email=mails[0] if mails else None)]
            else:
                out.append(self.contact(t))
        return out[:n]

    # -- orders
    def _order_id(self):
        self._next_order += 1 + self.rng.randrange(7)
        return self._next_order

    def _operation(self, perf, cat, aud, quantity):
        self._next_operation += 1 + self.rng.randrange(3)
        price = cat["price"] * aud["factor"] // 1000
        return {"operationId": self._next_operation, "kind": "SINGLE_ENTRY",
                "quantity": quantity, "basePrice": cat["price"], "unitPrice": price,
                "productId": perf["productId"], "product": perf["product"],
                "productCode": perf["productCode"], "itemId": self._next_operation + 7,
                "performanceId": perf["performanceId"], "performance": perf["performance"],
                "eventId": perf["eventId"], "seatCategoryId": cat["seatCategoryId"],
                "seatCategory": cat["name"],
                "audienceSubCategoryId": aud["audienceSubCategoryId"],
                "audienceSubCategory": aud["name"],
                "ticketBarcodes": ["%s%012d" % (perf["productCode"], self._next_operation * 10 + k)
                                   for k in range(quantity)]}

    def _goods(self):
        self._next_operation += 1 + self.rng.randrange(3)
        kind, name, code, price = self.rng.choice([
            ("GOODS", "Programme du soir", "PROG", 8000), ("SERVICE", "Vestiaire", "VEST", 3000),
            ("MEMBERSHIP", "Cercle des amis", "AMIS", 150000)])
        return {"operationId": self._next_operation, "kind": kind, "quantity": 1,
                "basePrice": price, "unitPrice": price,
                "productId": 10225000000000 + len(code), "product": name, "productCode": code,
                "itemId": self._next_operation + 7}

    def order(self, contact, order_type="SALE", t=None, state="CLOSED", undoes=None,
              performance=None, quantity=None):
        """One order (the orderDetailsData object). undoes: the order a refund, exchange or
        freeing cancels (its lines come back with negative quantities and amounts)."""
        rng = self.rng
        if t is None:
            t = self._tick(1000)
        ops = []
        if undoes is not None:
            ops = []
            for o in undoes["operationDatas"]:
                self._next_operation += 1 + rng.randrange(3)
                ops.append(dict(o, operationId=self._next_operation, quantity=-o["quantity"],
                                itemId=self._next_operation + 7,
                                originalOperationId=o["operationId"]))
            if order_type.startswith("EXCHANGE"):
                old = [o for o in undoes["operationDatas"] if "performanceId" in o]
                if old:
                    perf = rng.choice(self.performances)
                    cat = perf["seatCategories"][-1]
                    aud = perf["audienceSubCategories"][0]
                    ops.append(self._operation(perf, cat, aud, old[0]["quantity"]))
        else:
            perf = performance or rng.choice(self.performances)
            cat = rng.choice(perf["seatCategories"])
            aud = rng.choice(perf["audienceSubCategories"])
            kind = rng.random()
            op = self._operation(perf, cat, aud, quantity or 1 + rng.randrange(4))
            if kind < 0.08:
                op["kind"] = "SEASONTICKET"
            ops.append(op)
            if rng.random() < 0.25:
                ops.append(self._goods())
        total = sum(o["quantity"] * o["unitPrice"] for o in ops)
        d = {"orderId": self._order_id(), "orderState": state, "orderType": order_type,
             "contactReference": contact["contactNumber"],
             "creationDateTime": iso_ms(t, self.tz), "referenceDate": reference_date(t, self.tz),
             "catalogCurrency": dict(self.currency),
             "saleAmount": total if order_type not in ("RESERVATION", "OPTION") else 0,
             "preSaleAmount": 0,
             "reservationAmount": total if order_type == "RESERVATION" else 0,
             "optionAmount": total if order_type == "OPTION" else 0,
             "waitingAccountBalanceAmount": 0,
             "operationDatas": ops}
        if order_type in ("RESERVATION", "OPTION"):
            d["expirationDate"] = iso_ms(t + 7 * 86400, self.tz)
        if undoes is not None:
            d["originalOrderId"] = undoes["orderId"]
        if self.extra_fields:
            d["salesChannel"] = rng.choice(["INTERNET", "BOX_OFFICE", "CALL_CENTER"])
            d["pointOfSalesId"] = 1001 + rng.randrange(3)
        self.orders.append(d)
        return d

    def orders_batch(self, n, contacts, t0=None, t1=None):
        """n orders of the given contacts over [t0, t1]: mostly sales; reservations, options,
        abandoned baskets; refunds, exchanges and freeings as separate later orders."""
        t0 = self.start if t0 is None else t0
        t1 = self.end if t1 is None else t1
        rng = self.rng
        out, undoable = [], []
        while len(out) < n:
            t = t0 + (t1 - t0) * len(out) / max(n, 1) + rng.randrange(1000) / 1000.0
            r = rng.random()
            if r < 0.12 and undoable:
                old = undoable.pop(rng.randrange(len(undoable)))
                cust = {"contactNumber": old["contactReference"]}
                typ = {"SALE": rng.choice(["REFUND_CLIENT", "REFUND_CLIENT",
                                           "REFUND_ORGANIZATION", "EXCHANGE_CLIENT"]),
                       "RESERVATION": "RESERVATION_FREEING",
                       "OPTION": "OPTION_FREEING"}[old["orderType"]]
                out.append(self.order(cust, typ, t, undoes=old))
                continue
            c = rng.choice(contacts)
            if r < 0.2:
                out.append(self.order(c, "RESERVATION", t))
                undoable.append(out[-1])
            elif r < 0.26:
                out.append(self.order(c, "OPTION", t))
                undoable.append(out[-1])
            elif r < 0.31:
                out.append(self.order(c, "SALE", t, state=self.abandoned_state))
            else:
                out.append(self.order(c, "SALE", t))
                undoable.append(out[-1])
        return out

    # -- access control
    def scans(self, orders, share=0.7, gates=None):
        """Entry scans of a share of the tickets of closed sales (the assumed payload shape of the
        access-control stream, see README)."""
        out = []
        for d in orders:
            if d["orderType"] != "SALE" or d["orderState"] != "CLOSED":
                continue
            for op in d["operationDatas"]:
                for code in op.get("ticketBarcodes", []):
                    if self.rng.random() >= share:
                        continue
                    perf = self.performance(op["performanceId"])
                    start = _dt.datetime.fromisoformat(perf["startDateTime"]).timestamp()
                    self._next_scan += 1
                    out.append({"controlId": self._next_scan, "ticketBarcode": code,
                                "orderId": d["orderId"], "operationId": op["operationId"],
                                "performanceId": op["performanceId"],
                                "controlDateTime": iso_ms(start - self.rng.randrange(3600),
                                                          self.tz),
                                "accessPoint": self.rng.choice(gates or GATES),
                                "result": "ACCEPTED"})
        return out


def _ascii(s):
    table = str.maketrans("äöüéèëêçàâîïôûùÿœÉÜÖÄ", "aoueeeecaaiiouuyoEUOA")
    return s.translate(table).lower().replace(" ", "")
