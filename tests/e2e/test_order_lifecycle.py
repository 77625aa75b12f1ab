"""Order lifecycle end to end: refunds and cancellations through the webhook and through CSV
change what segments count; the webhook body without any lifecycle field still answers 202 and
reads back as before.

  - webhook: a refund record (refund_of) refunds a sale wholly, PUT cancels another, a partial
    refund lowers net spend; "spent at least 100.00 net" loses each of them; "refunded in the
    last 30 days" finds the refunded one; refunding a cancelled sale is a 400 naming refund_of;
  - CSV (csv_drop, local folder) with formats.amount_unit thousandths: 50000 thousandths are
    50.00 EUR; a second file cancels a sale (status column) and the customer drops out of the
    segment; 40005 thousandths (no whole cent) refuses the file with sales_price named;
  - an old webhook body: 202, and GET returns the record as sent (no field added).

Run: python3 tests/e2e/test_order_lifecycle.py --bin build/debug/stagedoor

store suite: both backends (ctest e2e_pg.*: the same cases with --store on PostgreSQL)
"""

import datetime
import json
import os

import harness
from harness import customer, event, sale, uid

TS = harness.TIME_SCALE
WAIT = 30 * TS
JSON = {"Content-Type": "application/json"}


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def days_ago(n):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=n)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


SPENT_100_NET = {"count": {"of": "spend", "currency": "EUR", "gte": "100.00"}}


class LifecycleTests(harness.ServerCase):
    TENANTS = {t: ["test"] for t in ("lc_web", "lc_csv", "lc_old")}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = admin_token(cls.data)

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1" + path, body=body, key=self.token)

    def members(self, api, rules):
        """Customer ids of the members of a new segment with these rules."""
        r = api.req("POST", "/v1/%s/segments" % api.client_id,
                    body={"segment_name": uid("seg"), "rules": rules}, headers=JSON)
        self.assertStatus(r, 201)
        seg = r.json["segment_id"]
        r = api.req("GET", "/v1/%s/segments/%s/members?limit=100" % (api.client_id, seg))
        self.assertStatus(r, 200)
        ids = []
        for m in r.json["data"]:
            ids.extend(s["customer_id"] for s in m["source_ids"])
        self.assertEqual(r.json["has_more"], False)
        return sorted(ids)

    def test_webhook_refunds_and_cancellations(self):
        api = self.api("lc_web")
        ev = uid("E")
        a, b, c = uid("A"), uid("B"), uid("C")
        sa, sb, sc = uid("SA"), uid("SB"), uid("SC")
        r = api.ingest({
            "events": [event(ev, date="2026-03-01")],
            "customers": [customer(a), customer(b), customer(c)],
            "sales": [
                sale(sa, ev, a, quantity=2, sales_price="60.00", purchase_datetime=days_ago(60)),
                sale(sb, ev, b, quantity=1, sales_price="150.00", purchase_datetime=days_ago(60)),
                sale(sc, ev, c, quantity=1, sales_price="200.00", purchase_datetime=days_ago(60)),
            ]})
        self.assertStatus(r, 202)
        self.assertEqual(self.members(api, SPENT_100_NET), sorted([a, b, c]))

        # C's only sale refunded wholly by a refund record of its own: C drops out
        rc = uid("RC")
        r = api.ingest({"sales": [sale(rc, ev, c, quantity=1, sales_price="200.00",
                                       refund_of=sc, purchase_datetime=days_ago(2))]})
        self.assertStatus(r, 202)
        self.assertEqual(self.members(api, SPENT_100_NET), sorted([a, b]))
        # B's sale cancelled through PUT (the seed's "update instead of insert")
        r = api.put_sale(sb, sale(sb, ev, b, quantity=1, sales_price="150.00",
                                  purchase_datetime=days_ago(60), status="cancelled"))
        self.assertStatus(r, 200)
        self.assertEqual(self.members(api, SPENT_100_NET), [a])
        self.assertEqual(self.members(api, {"bought": {"event_id": ev}}), [a])
        self.assertEqual(
            self.members(api, {"refunded": {"status_changed": {"after": "30 days ago"}}}), [c])

        # refunding the cancelled sale is refused, naming the field; nothing changes
        r = api.ingest({"sales": [sale(uid("RB"), ev, b, quantity=1, sales_price="150.00",
                                       refund_of=sb)]})
        self.assertStatus(r, 400)
        errs = self.errors_of(r)
        self.assertTrue(any(e["pointer"] == "/sales/0/refund_of" and "cancelled" in e["message"]
                            for e in errs), errs)
        # a refund beyond what C paid (C is refunded wholly already)
        r = api.ingest({"sales": [sale(uid("RC"), ev, c, quantity=1, sales_price="1.00",
                                       refund_of=sc)]})
        self.assertStatus(r, 400)
        self.assertTrue(any(e["pointer"] == "/sales/0/quantity" for e in self.errors_of(r)))
        # A: one of two tickets refunded, by fields on the sale: 60.00 net is under 100.00
        r = api.put_sale(sa, sale(sa, ev, a, quantity=2, sales_price="60.00",
                                  purchase_datetime=days_ago(60), refunded_quantity=1))
        self.assertStatus(r, 200)
        self.assertEqual(self.members(api, SPENT_100_NET), [])
        self.assertEqual(self.members(api, {"count": {"of": "tickets", "eq": 1}}), [a])
        # a refunded sale never becomes sold again
        r = api.put_sale(sa, sale(sa, ev, a, quantity=2, sales_price="60.00",
                                  purchase_datetime=days_ago(60)))
        self.assertStatus(r, 400)
        self.assertTrue(any(e["pointer"] == "/status" for e in self.errors_of(r)),
                        self.errors_of(r))
        # reads: the refunded sale as sent, the refund record with its reference
        r = api.get("sales", sc)
        self.assertStatus(r, 200)
        self.assertNotIn("status", r.json)
        r = api.get("sales", rc)
        self.assertEqual(r.json["refund_of"], sc)

    def test_csv_thousandths_and_cancellation(self):
        api = self.api("lc_csv")
        ev = uid("E")
        self.assertStatus(api.ingest({"events": [event(ev)]}), 202)
        folder = harness.tempdir(self)
        os.chmod(folder, 0o755)
        body = {"type": "csv_drop", "environment": "test", "schedule": "every 1m",
                "settings": {"folder": folder, "settle_seconds": 0},
                "mapping": {"fields": {"Amount": "sales_price"},
                            "formats": {"amount_unit": "thousandths"}}}
        r = self.admin("POST", "/tenants/lc_csv/connectors", body)
        self.assertStatus(r, 201)

        def drop(name, text):
            tmp = os.path.join(folder, "." + name + ".part")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.rename(tmp, os.path.join(folder, name))

        def ack(name, where="processed"):
            path = os.path.join(folder, where, name + ".ack.json")
            harness.wait_until(lambda: os.path.exists(path), WAIT, interval=0.05,
                               what="%s/%s.ack.json" % (where, name))
            with open(path) as f:
                return json.load(f)

        p, q = uid("P"), uid("Q")
        drop("customers.csv", "customer_id,email\n%s,%s@example.org\n%s,%s@example.org\n"
             % (p, p.lower(), q, q.lower()))
        ack("customers.csv")
        head = ("invoice_number,event_id,customer_id,purchase_datetime,ticket_category,quantity,"
                "Amount,currency,status\n")
        x, y = uid("X"), uid("Y")
        rows = ("%s,%s,%s,2025-04-15T11:08:42Z,regular,2,50000,EUR,sold\n" % (x, ev, p) +
                "%s,%s,%s,2025-04-15T11:08:42Z,regular,1,120000,EUR,sold\n" % (y, ev, q))
        drop("sales.csv", head + rows)
        a = ack("sales.csv")
        self.assertEqual(a["records_stored"], 2, a)
        self.assertEqual(api.get("sales", x).json["sales_price"], "50.00")
        self.assertEqual(self.members(api, SPENT_100_NET), sorted([p, q]))

        # the export again, Q's sale now cancelled: Q drops out, P's row is unchanged
        drop("sales2.csv", head + rows.replace("120000,EUR,sold", "120000,EUR,cancelled"))
        a = ack("sales2.csv")
        self.assertEqual((a["records_stored"], a["records_unchanged"]), (1, 1), a)
        self.assertEqual(self.members(api, SPENT_100_NET), [p])
        self.assertEqual(api.get("sales", y).json["status"], "cancelled")

        # 40005 thousandths are no whole cent: refused, never rounded
        drop("sales3.csv", head + "%s,%s,%s,2025-04-15T11:08:42Z,regular,1,40005,EUR,sold\n"
             % (uid("Z"), ev, p))
        a = ack("sales3.csv", where="failed")
        self.assertEqual(a["records_rejected"], 1, a)
        with open(os.path.join(folder, "failed", a["errors_file"]), encoding="utf-8") as f:
            errors = f.read()
        self.assertIn("Amount", errors)  # the venue's own column name
        self.assertIn("at most 2 decimal places", errors)

    def test_old_body_unchanged(self):
        api = self.api("lc_old")
        ev, cu, inv = uid("E"), uid("C"), uid("I")
        s = sale(inv, ev, cu)
        r = api.ingest({"events": [event(ev)], "customers": [customer(cu)], "sales": [s]})
        self.assertStatus(r, 202)
        self.assertEqual(r.json.get("warnings", []), [])
        r = api.get("sales", inv)
        self.assertStatus(r, 200)
        self.assertEqual(r.json, s)
        listed, _ = api.list_all("sales")
        self.assertEqual([d for d in listed if d.get("invoice_number") == inv], [s])
        # and it counts as a sale, sold
        self.assertEqual(self.members(api, {"bought": {"status": "sold"}}), [cu])


if __name__ == "__main__":
    harness.main()
