"""The operator dashboard (/ui) in a real browser: headless Chromium driven by playwright-core
(tests/tools/ui_browser.js) against the real binary.

The hub is `stagedoor demo` (tenant "demo" with the generated opera season: 200 events, 20,000
customers, 150,000 sales, and a TEST key printed once), plus, set up here through the API:
  - a demo_season connector instance (prod, manual schedule, a small season) for "run now";
  - an audience_push target whose receiver (tests/e2e/receiver.py) answers 400 — a permanent
    error, so the push goes dead at once — until the test flips it to 201;
  - a second tenant "other", so a tenant key is shown to open its own tenant only.
The browser signs in with the admin token, checks the overview against the API's numbers, runs
the connector and sees its run, replays the dead delivery and sees it delivered, visits every
page at 1280 px and at phone width, then signs in with the demo tenant's key.

Screenshots of every page go to $SD_UI_ARTIFACTS, default <repo>/build/test-artifacts/ui/ (a
directory from the source tree, whatever the cwd). With SD_UI_SCREENSHOTS set to a directory
(docs/screenshots), the main pages are written there too — that is how the README's screenshots
are made.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import harness  # noqa: E402
from receiver import Answer, Receiver  # noqa: E402

TS = harness.TIME_SCALE
CHROMIUM = "/usr/bin/chromium"
CLIENT = "demo"
SMALL_SEASON = {"seed": 7, "events": 3, "customers": 12, "sales": 30, "batch": 100}
DEAD_PATH = "/crm/ui-dead"


class DemoServer(harness.Server):
    """`stagedoor demo --data DIR --listen 127.0.0.1:0`: the demo tenant, its season and a TEST
    key (parsed from stdout), then it serves like `serve`."""

    def start(self, timeout=None, expect_ready=True):
        cmd = [harness.bin_path(), "demo", "--data", self.data_dir, "--listen", self.listen]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, cwd=self.data_dir)
        harness._live_servers.add(self)
        for stream, sink in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            t = threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)
        self.wait_ready(timeout or 180 * TS)
        return self

    def demo_key_id(self):
        for line in self.stdout_lines:
            m = re.search(r"TEST key id (\S+)", line)
            if m:
                return m.group(1)
        raise AssertionError("no demo key id printed\n" + self.diagnostics())

    def demo_key(self):
        for line in self.stdout_lines:
            m = re.search(r"TEST API key \(shown once\): (\S+)", line)
            if m:
                return m.group(1)
        raise AssertionError("no demo key printed\n" + self.diagnostics())


def artifacts_dir():
    d = os.environ.get("SD_UI_ARTIFACTS") or os.path.join(harness.REPO, "build",
                                                           "test-artifacts", "ui")
    os.makedirs(d, exist_ok=True)
    return d


class DashboardBrowser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tooling = os.environ.get("SD_TOOLING") or os.path.join(harness.REPO, "tests", "tooling")
        if not os.path.isdir(os.path.join(tooling, "node_modules", "playwright-core")):
            raise unittest.SkipTest("playwright-core not installed under %s" % tooling)
        if not os.access(CHROMIUM, os.X_OK) or not shutil.which("node"):
            raise unittest.SkipTest("needs node and %s" % CHROMIUM)
        cls.tooling = tooling
        cls.data = harness.tempdir(cls, prefix="sd-ui-")
        cls.rx = Receiver().start()
        cls.addClassCleanup(cls.rx.stop)
        cls.flipped = False
        cls.rx.handle(DEAD_PATH, lambda rec: Answer(201, {"segment_id": "R-ui"}) if cls.flipped
                      else Answer(400, {"error": "list 'vip' does not exist"}))
        os.environ["STAGEDOOR_OUTBOX_TIME_SCALE"] = "0.001"
        harness.tenant_create(cls.data, "other")
        cls.other_key = harness.key_create(cls.data, "other", "test")
        cls.server = DemoServer(cls.data)
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.port = cls.server.port
        cls.key = cls.server.demo_key()
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.token = f.read().strip()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop_ok()

    def admin(self, method, path, body=None):
        return harness.http(self.port, method, path, body=body, key=self.token)

    def tenant(self, method, path, body=None, **kw):
        return harness.http(self.port, method, path, body=body, key=self.key, **kw)

    def test_dashboard_end_to_end(self):
        # What the API answers, to compare with what the pages show.
        summary = self.admin("GET", "/admin/v1/tenants/%s/summary" % CLIENT)
        self.assertEqual(summary.status, 200, summary)
        expected = {k: summary.json[k] for k in ("events", "customers", "sales")}
        self.assertEqual(expected, {"events": 200, "customers": 20000, "sales": 150000})
        self.assertEqual(self.tenant("GET", "/v1/%s/summary" % CLIENT).json["events"], 200)
        events = self.tenant("GET", "/v1/%s/events?limit=1000" % CLIENT)
        self.assertEqual(len(events.json["data"]), expected["events"])

        # a connector to run from the page (in prod: its small season must not meet the big
        # one of the same generator, whose invoices it would contradict)
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors" % CLIENT,
                       {"type": "demo_season", "environment": "prod", "schedule": "manual",
                        "settings": SMALL_SEASON})
        self.assertEqual(r.status, 201, r)
        connector = r.json["connector_id"]

        # a connector with vendor quotas (manual: it never calls the vendor)
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors" % CLIENT,
                       {"type": "tradablebits", "environment": "prod", "schedule": "manual",
                        "settings": {"base_url": "https://api.tradablebits.example",
                                     "api_key": "tbkey-ui", "api_secret": "tbsecret-ui",
                                     "currency": "EUR", "event_city": "Berlin",
                                     "backfill_start": "2026-01-01"}})
        self.assertEqual(r.status, 201, r)

        # a dead delivery: a push to a receiver that answers 400
        r = self.admin("POST", "/admin/v1/tenants/%s/targets" % CLIENT,
                       {"type": "audience_push", "environment": "test",
                        "url": self.rx.url(DEAD_PATH), "app_key": "APP-ui",
                        "secure_token": "TOK-ui"})
        self.assertEqual(r.status, 201, r)
        target = r.json["target_id"]
        first_event = events.json["data"][0]["event_id"]
        r = self.tenant("POST", "/v1/%s/segments" % CLIENT,
                        {"segment_name": "Buyers of the first night",
                         "rules": {"bought": {"event_id": first_event}}})
        self.assertEqual(r.status, 201, r)
        segment = r.json["segment_id"]
        r = self.tenant("POST", "/v1/%s/segments/%s/push" % (CLIENT, segment),
                        {"target_id": target})
        self.assertEqual(r.status, 202, r)
        dead = r.json["delivery_id"]

        def is_dead():
            d = self.admin("GET", "/admin/v1/deliveries/" + dead).json
            return d if d["state"] == "dead" else None
        d = harness.wait_until(is_dead, 60 * TS, interval=0.1, what="delivery dead")
        self.assertEqual(d["last_status"], 400)
        # The receiver accepts from now on; the delivery stays dead until someone replays it.
        type(self).flipped = True

        # a refused body, so the quality page has a field to show
        bad = harness.event()
        bad["date"] = "next Tuesday"
        r = self.tenant("POST", "/v1/%s/ingest" % CLIENT, {"events": [bad]})
        self.assertEqual(r.status, 400, r)

        # and an accepted one, for the ingest rate (the season itself was loaded before serving)
        r = self.tenant("POST", "/v1/%s/ingest" % CLIENT,
                        {"events": [harness.event()], "customers": [harness.customer()]})
        self.assertEqual(r.status, 202, r)

        # a vendor webhook whose third object is quarantined (its id is under another name);
        # then the operator fixes the mapping, and the page's replay applies it
        mapping = {"fields": {"contactNumber": "customer_id", "mail": "email"},
                   "unmapped": "drop"}
        r = self.admin("POST", "/admin/v1/tenants/%s/connectors" % CLIENT,
                       {"type": "webhook_in", "environment": "test",
                        "settings": {"kind": "customers"}, "mapping": mapping})
        self.assertEqual(r.status, 201, r)
        door, door_path = r.json["connector_id"], r.json["inbound"]["path"]
        objs = [{"contactNumber": "UI-C1", "mail": "c1@example.com"},
                {"contactNumber": "UI-C2", "mail": "c2@example.com"},
                {"contactNo": "UI-C3", "mail": "c3@example.com"}]
        r = harness.http(self.port, "POST", door_path, body=objs)
        self.assertEqual((r.status, r.json["applied"], r.json["quarantined"]), (200, 2, 1), r)
        q = self.admin("GET", "/admin/v1/tenants/%s/quarantine" % CLIENT).json["quarantine"]
        self.assertEqual(len(q), 1, q)
        quarantined = q[0]
        mapping["fields"]["contactNo"] = "customer_id"
        r = self.admin("PATCH", "/admin/v1/tenants/%s/connectors/%s" % (CLIENT, door),
                       {"mapping": mapping})
        self.assertEqual(r.status, 200, r)

        # another tenant, with data of its own
        r = harness.http(self.port, "POST", "/v1/other/ingest",
                         body={"events": [harness.event()]}, key=self.other_key)
        self.assertEqual(r.status, 202, r)

        # the overview must show the counts as they are now: the season, one ingested event
        # and customer, two customers through the vendor webhook
        now = self.admin("GET", "/admin/v1/tenants/%s/summary" % CLIENT).json
        self.assertEqual({k: now[k] for k in expected},
                         {"events": 201, "customers": 20003, "sales": 150000})
        expected = {k: now[k] for k in expected}

        cfg = {
            "base": "http://127.0.0.1:%d" % self.port,
            "token": self.token, "key": self.key, "client": CLIENT,
            "expected": expected, "connector": connector,
            "season_records": SMALL_SEASON["events"] + SMALL_SEASON["customers"]
            + SMALL_SEASON["sales"],
            "dead": dead, "segment": segment, "target": target, "new_tenant": "boxoffice",
            "door": door, "quarantined": str(quarantined["id"]),
            "demo_key_id": self.server.demo_key_id(),
            "artifacts": artifacts_dir(),
            "screenshots": os.environ.get("SD_UI_SCREENSHOTS") or "",
            "chromium": CHROMIUM,
        }
        env = dict(os.environ, SD_TOOLING=self.tooling, SD_UI_CONFIG=json.dumps(cfg))
        cp = subprocess.run(["node", os.path.join(HERE, "ui_browser.js")], env=env,
                            capture_output=True, text=True, timeout=300 * TS)
        sys.stderr.write(cp.stderr)
        self.assertEqual(cp.returncode, 0, "browser script failed:\n%s\n%s"
                         % (cp.stdout[-4000:], cp.stderr[-4000:]))
        seen = json.loads(cp.stdout.strip().splitlines()[-1])

        # What the browser saw is what the API answers.
        self.assertEqual(seen["overview"], expected)
        # the replay from the quarantine page applied the third customer
        self.assertEqual(seen["quarantine"]["reason"], quarantined["reason"])
        self.assertEqual(seen["quarantine"]["after"], "Nothing is in quarantine.")
        self.assertEqual(self.admin("GET", "/admin/v1/tenants/%s/quarantine"
                                    % CLIENT).json["quarantine"], [])
        self.assertEqual(self.tenant("GET", "/v1/%s/customers/UI-C3" % CLIENT).status, 200)
        expected_after = dict(expected, customers=expected["customers"] + 1)
        self.assertEqual(seen["tenant_overview"], expected_after)
        self.assertEqual(seen["run"]["records_in"], cfg["season_records"])
        c = self.admin("GET", "/admin/v1/tenants/%s/connectors/%s" % (CLIENT, connector)).json
        self.assertEqual(c["status"]["state"], "ok", c)
        self.assertEqual(c["status"]["records_in"], cfg["season_records"])
        self.assertEqual(c["status"]["last_run"], seen["run"]["last_run"])

        runs = self.admin("GET", "/admin/v1/tenants/%s/connectors/%s/runs"
                          % (CLIENT, connector)).json["runs"]
        self.assertEqual(len(runs), 1, runs)
        self.assertEqual(seen["run"]["history"], {
            "run_id": runs[0]["run_id"], "status": runs[0]["status"],
            "records_in": runs[0]["records_in"], "rows": 1})
        self.assertEqual(runs[0]["records_in"], cfg["season_records"])

        # ingest and quality: the page's figures are the API's, for the test environment
        q = self.admin("GET", "/admin/v1/tenants/%s/quality" % CLIENT).json
        test_rows = lambda rows: [x for x in rows if x["environment"] == "test"]  # noqa: E731
        self.assertEqual(seen["quality"]["rejected"],
                         sum(x["count"] for x in test_rows(q["rejected"])))
        self.assertGreaterEqual(seen["quality"]["rejected"], 1)
        self.assertEqual(seen["quality"]["accepted"],
                         sum(x["count"] for x in test_rows(q["accepted"])))
        self.assertIn("events.date/invalid", seen["quality"]["fields"], seen["quality"])

        # quotas: one row per connector and window, as the API answers
        qs = self.admin("GET", "/admin/v1/tenants/%s/quotas" % CLIENT).json["data"]
        want = [["%s/%s" % (c["connector_id"], w["window"]), w["used"], w["limit"]]
                for c in qs for w in c["windows"]]
        self.assertTrue(want)
        self.assertEqual(seen["quotas"], want)

        # alerts: what the page listed is in the API's history
        hist = self.admin("GET", "/admin/v1/tenants/%s/alerts/history?limit=1000"
                          % CLIENT).json["alerts"]
        self.assertLessEqual(set(seen["alerts"]), {a["alert_id"] for a in hist})

        # tenants and keys: the tenant made on the page exists, the key made there is revoked,
        # the demo key's last use is the one the API shows
        r = self.admin("GET", "/admin/v1/tenants/boxoffice")
        self.assertEqual((r.status, r.json["name"]), (200, "Box office"), r)
        keys = {k["key_id"]: k for k in
                self.admin("GET", "/admin/v1/tenants/%s/keys" % CLIENT).json["data"]}
        self.assertTrue(keys[seen["keys"]["created"]]["revoked"], keys)
        self.assertEqual(seen["keys"]["secret_prefix"], "sd_test_")
        self.assertIsNotNone(keys[cfg["demo_key_id"]]["last_used_at"])
        self.assertEqual(seen["keys"]["demo_last_used"], keys[cfg["demo_key_id"]]["last_used_at"])

        d = self.admin("GET", "/admin/v1/deliveries/" + dead).json
        self.assertEqual(d["state"], "delivered", d)
        self.assertEqual(d["replays"], 1)
        self.assertEqual(seen["replayed_state"], "delivered")

        # A tenant key opens its own tenant only: no operator pages, another tenant refused.
        self.assertNotIn("connectors", seen["tenant_nav"])
        self.assertNotIn("quarantine", seen["tenant_nav"])
        self.assertIn("overview", seen["tenant_nav"])
        self.assertIn("segments", seen["tenant_nav"])
        self.assertIn(segment, seen["tenant_segments"])
        seg = self.tenant("GET", "/v1/%s/segments/%s" % (CLIENT, segment)).json
        hist = self.tenant("GET", "/v1/%s/segments/%s/history" % (CLIENT, segment)).json
        self.assertEqual(seen["segment"]["sizes"],
                         [p["member_count"] for p in reversed(hist["points"])])
        self.assertTrue(seen["segment"]["sizes"])
        self.assertEqual(seen["segment"]["pushed"], [[target, "delivered"]])
        self.assertEqual([[p["connector_id"], p["state"]] for p in seg["pushed_to"]],
                         seen["segment"]["pushed"])
        # a push made from the segment's page (tenant key), delivered
        again = self.tenant("GET", "/v1/%s/deliveries/%s" % (CLIENT, seen["pushed_again"])).json
        self.assertEqual((again["state"], again["segment_id"], again["target_id"]),
                         ("delivered", segment, target))
        self.assertEqual(len(self.rx.received(DEAD_PATH)), 3)
        self.assertIn("does not grant access", seen["other_tenant_error"])
        self.assertEqual(seen["tenant_outbox_buttons"], 0)

        # the static files: strict CSP, ETag revalidation, no key needed
        self.assertIn("default-src 'self'", seen["csp"])
        r = harness.http(self.port, "GET", "/ui/app.js")
        self.assertEqual(r.status, 200)
        self.assertIn("script-src 'self'", r.header("Content-Security-Policy"))
        r2 = harness.http(self.port, "GET", "/ui/app.js",
                          headers={"If-None-Match": r.header("ETag")})
        self.assertEqual(r2.status, 304)
        self.assertEqual(harness.http(self.port, "GET", "/ui/nope.js").status, 404)

        for name in seen["screenshots"]:
            path = os.path.join(cfg["artifacts"], name)
            self.assertTrue(os.path.getsize(path) > 1000, path)
        self.assertFalse(seen["phone_overflow"], "a page is wider than a phone: %r"
                         % seen["phone_overflow"])


if __name__ == "__main__":
    harness.main()
