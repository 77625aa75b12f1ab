"""An alert delivered by stagedoor verifies with the `standardwebhooks` npm package (a
receiver's own library, tests/tooling, pinned): a tenant's webhook points at a local receiver,
a connector fails once under the rule connector_failures_in_a_row = 1, and the request the
receiver got is checked by `new Webhook(secret).verify(body, headers)` in node — accepted as
received, rejected once its body is tampered with, and rejected under another secret.

Runs as ctest tools.test_alert_signature (SD_TOOLING points at tests/tooling).
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import harness  # noqa: E402
from receiver import Receiver  # noqa: E402

TS = harness.TIME_SCALE
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
OTHER = "whsec_" + base64.b64encode(os.urandom(32)).decode()
VERIFY = os.path.join(HERE, "verify_webhook.js")


def node_verify(secret, raw, headers, tmp):
    """(exit code, output) of verify_webhook.js on one request."""
    bf, hf = os.path.join(tmp, "body"), os.path.join(tmp, "headers.json")
    with open(bf, "wb") as f:
        f.write(raw)
    with open(hf, "w") as f:
        json.dump(headers, f)
    p = subprocess.run(["node", VERIFY, secret, bf, hf], capture_output=True, text=True,
                       timeout=60 * TS, env=dict(os.environ))
    return p.returncode, (p.stdout + p.stderr).strip()


class AlertSignature(unittest.TestCase):
    def setUp(self):
        tooling = os.environ.get("SD_TOOLING")
        if not tooling or not os.path.isdir(os.path.join(tooling, "node_modules",
                                                         "standardwebhooks")):
            self.fail("SD_TOOLING must point at tests/tooling with its node_modules installed")
        self.tmp = harness.tempdir(self)
        self.data = os.path.join(self.tmp, "data")
        os.mkdir(self.data)
        harness.tenant_create(self.data, "venue")
        self.server = harness.Server(self.data)
        self.addCleanup(self.server.kill)
        self.server.start()
        self.rx = Receiver().start()
        self.addCleanup(self.rx.stop)
        with open(os.path.join(self.data, "admin.token")) as f:
            self.token = f.read().strip()

    def admin(self, method, path, body=None):
        return harness.http(self.server.port, method, path, body=body, key=self.token)

    def test_delivered_alert_verifies_with_standardwebhooks(self):
        r = self.admin("PUT", "/admin/v1/tenants/venue/alerts",
                       {"webhook_url": self.rx.url("/alerts"), "secret": SECRET,
                        "rules": {"connector_failures_in_a_row": 1}})
        self.assertEqual(r.status, 200, r)
        # a source that answers 404: the run fails at once
        r = self.admin("POST", "/admin/v1/tenants/venue/connectors",
                       {"type": "rest_pull", "environment": "test", "schedule": "manual",
                        "settings": {"base_url": self.rx.url(""), "sales_path": "/missing",
                                     "auth_header": "Bearer t", "timeout_seconds": 2,
                                     "max_attempts": 1}})
        self.assertEqual(r.status, 201, r)
        cid = r.json["connector_id"]
        r = self.admin("POST", "/admin/v1/tenants/venue/connectors/%s/run" % cid)
        self.assertEqual(r.status, 202, r)
        rec = self.rx.wait_for("/alerts", 1, 30 * TS)[0]
        self.assertEqual(rec["body"]["type"], "alert.connector_failures_in_a_row", rec["body"])
        headers = {k: rec["headers"][k]
                   for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        code, out = node_verify(SECRET, rec["raw"], headers, self.tmp)
        self.assertEqual(code, 0, out)
        self.assertIn("alert.connector_failures_in_a_row", out)
        tampered = rec["raw"].replace(cid.encode(), b"con_ffffffffffffffff")
        self.assertNotEqual(tampered, rec["raw"])
        code, out = node_verify(SECRET, tampered, headers, self.tmp)
        self.assertEqual(code, 3, out)
        code, out = node_verify(OTHER, rec["raw"], headers, self.tmp)
        self.assertEqual(code, 3, out)
        rc = self.server.stop()
        self.assertEqual(rc, 0, self.server.diagnostics())


if __name__ == "__main__":
    harness.main()
