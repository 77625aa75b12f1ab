"""Named time zones end to end, with a local drop folder:

  - a sales CSV whose purchase times are Berlin wall-clock times without offset, read through a
    mapping with "timezone": "Europe/Berlin", stores the right UTC instants: winter (+01:00),
    summer (+02:00), the skipped spring hour (02:30 -> 03:30 CEST = 01:30 UTC), the repeated
    autumn hour (its earlier instant), and a value with its own offset kept as sent;
  - a mapping or a schedule naming an unknown or malformed zone is refused when the connector
    is saved, with the JSON Pointer of the member and the zone's name;
  - a connector scheduled "daily at 02:00 Europe/Berlin" plans its next run at 02:00 Berlin
    time (01:00 or 00:00 UTC, by the season).

Run: python3 tests/e2e/test_csv_timezone.py --bin build/debug/stagedoor
"""

import json
import os
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import harness

TS = harness.TIME_SCALE
WAIT = 30 * TS

MAPPING = {"formats": {"datetime": "DD.MM.YYYY HH:mm", "timezone": "Europe/Berlin"}}

# (invoice, local time as the box office wrote it, the UTC instant it is)
SALES = [
    ("TZ-WINTER", "15.01.2026 11:08", "2026-01-15T10:08:00Z"),
    ("TZ-SUMMER", "15.07.2026 11:08", "2026-07-15T09:08:00Z"),
    ("TZ-SKIPPED", "29.03.2026 02:30", "2026-03-29T01:30:00Z"),
    ("TZ-REPEATED", "25.10.2026 02:30", "2026-10-25T00:30:00Z"),
    ("TZ-NEWYEAR", "01.01.2026 00:30", "2025-12-31T23:30:00Z"),
    ("TZ-OWN-OFFSET", "2026-07-15T11:08:42+05:00", "2026-07-15T06:08:42Z"),
]


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def utc_of(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


class TimeZones(harness.ServerCase):
    TENANTS = {"tz_csv": ["test"], "tz_bad": ["test"], "tz_sched": ["test"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = admin_token(cls.data)

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, "/admin/v1" + path, body=body, key=self.token)

    def status(self, tenant, cid):
        r = self.admin("GET", "/tenants/%s/connectors/%s" % (tenant, cid))
        self.assertStatus(r, 200)
        return r.json["status"]

    def add(self, tenant, body):
        r = self.admin("POST", "/tenants/%s/connectors" % tenant, body)
        self.assertStatus(r, 201)
        cid = r.json["connector_id"]
        # a csv_drop connector that never ran looks at its folder once: let that end
        harness.wait_until(lambda: (lambda s: s["last_run"] and s["state"] != "running")(
            self.status(tenant, cid)), WAIT, interval=0.05, what="first run")
        return cid

    def folder(self):
        d = harness.tempdir(self)
        os.chmod(d, 0o755)
        return d

    @staticmethod
    def drop(folder, name, text):
        tmp = os.path.join(folder, "." + name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(folder, name))

    def wait_ack(self, folder, name):
        path = os.path.join(folder, "processed", name + ".ack.json")
        harness.wait_until(lambda: os.path.exists(path), WAIT, interval=0.05,
                           what="processed/%s.ack.json" % name)
        with open(path) as f:
            return json.load(f)

    def test_local_times_stored_as_utc_instants(self):
        folder = self.folder()
        self.add("tz_csv", {"type": "csv_drop", "environment": "test", "schedule": "every 1m",
                            "settings": {"folder": folder, "settle_seconds": 0},
                            "mapping": MAPPING})
        self.drop(folder, "events.csv",
                  "event_id,title,date,time,venue,hall,capacity,city\n"
                  "TZ-E,Otello,2026-10-03,19:30:00,State Opera,Hall 1,1250,Berlin\n")
        self.assertEqual(self.wait_ack(folder, "events.csv")["records_stored"], 1)
        rows = ["invoice_number,event_id,customer_id,purchase_datetime,ticket_category,quantity,"
                "sales_price,currency"]
        rows += ["%s,TZ-E,ANON,%s,regular,1,50.00,EUR" % (inv, local) for inv, local, _ in SALES]
        self.drop(folder, "sales.csv", "\n".join(rows) + "\n")
        ack = self.wait_ack(folder, "sales.csv")
        self.assertEqual(ack["records_stored"], len(SALES), ack)
        api = self.api("tz_csv")
        for inv, local, want in SALES:
            with self.subTest(inv):
                r = api.get("sales", inv)
                self.assertStatus(r, 200)
                self.assertEqual(utc_of(r.json["purchase_datetime"]), utc_of(want),
                                 "%s written as %s: %r" % (inv, local, r.json))

    def test_bad_zones_refused_at_save(self):
        base = {"type": "csv_drop", "environment": "test",
                "settings": {"folder": "/srv/sftp/opera/upload"}}
        cases = [
            ("unknown mapping zone",
             dict(base, mapping={"formats": {"timezone": "Europe/Atlantis"}}),
             "/mapping/formats/timezone", "Europe/Atlantis"),
            ("path as mapping zone",
             dict(base, mapping={"formats": {"timezone": "../../../etc/passwd"}}),
             "/mapping/formats/timezone", "not a time zone name"),
            ("zone and offset", dict(base, mapping={"formats": {"timezone": "Europe/Berlin",
                                                                "utc_offset": "+01:00"}}),
             "/mapping/formats/utc_offset", "not both"),
            ("unknown schedule zone", dict(base, schedule="daily at 02:00 Mars/Olympus_Mons"),
             "/schedule", "unknown time zone"),
            ("zone on an interval", dict(base, schedule="every 15m Europe/Berlin"),
             "/schedule", "time zone"),
        ]
        for label, body, pointer, msg in cases:
            with self.subTest(label):
                r = self.admin("POST", "/tenants/tz_bad/connectors", body)
                self.assertStatus(r, 400, label)
                hit = [e for e in r.json["errors"] if e["pointer"] == pointer]
                self.assertTrue(hit, "no error at %s: %s" % (pointer, r.json["errors"]))
                self.assertIn(msg, hit[0]["message"])
        r = self.admin("GET", "/tenants/tz_bad/connectors")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"], [], "stored after a 400")

    def test_daily_schedule_in_zone_plans_berlin_time(self):
        folder = self.folder()
        before = datetime.now(timezone.utc)
        cid = self.add("tz_sched", {"type": "csv_drop", "environment": "test",
                                    "schedule": "daily at 02:00 Europe/Berlin",
                                    "settings": {"folder": folder, "settle_seconds": 0}})
        st = harness.wait_until(
            lambda: (lambda s: s if s.get("next_run") else None)(self.status("tz_sched", cid)),
            WAIT, interval=0.05, what="next_run planned")
        nxt = utc_of(st["next_run"])
        # 02:00 in Berlin is 01:00 UTC in winter (CET) and 00:00 UTC in summer (CEST)
        local = nxt.astimezone(ZoneInfo("Europe/Berlin"))
        self.assertEqual((local.hour, local.minute, local.second), (2, 0, 0), st)
        self.assertGreater(nxt, before)
        self.assertLessEqual(nxt - before, timedelta(hours=25, minutes=1), st)


if __name__ == "__main__":
    harness.main()
