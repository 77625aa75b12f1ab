"""test_openapi_lint.py — ctest tools.test_openapi_lint.

docs/openapi.yaml passes `redocly lint` (@redocly/cli from tests/tooling, SD_TOOLING) with the
repository's redocly.yaml — the recommended rules and stricter ones, examples checked against
their schemas — without a single error or warning; and the hub serves that very document at
GET /openapi.yaml, without a key, as application/yaml.

Run: python3 tests/tools/test_openapi_lint.py --bin build/debug/stagedoor
"""

import json
import os
import subprocess
import sys
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402

DOC = os.path.join(REPO, "docs", "openapi.yaml")
# Redocly reports nothing home and looks for no update: tests reach only 127.0.0.1.
QUIET = {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "CI": "true"}


def redocly(*args):
    exe = os.path.join(harness.TOOLING, "node_modules", ".bin", "redocly")
    if not os.access(exe, os.X_OK):
        raise AssertionError("no %s: run scripts/install-deps (npm ci in tests/tooling)" % exe)
    return subprocess.run([exe] + list(args), cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **QUIET), stdin=subprocess.DEVNULL)


class OpenApiLint(unittest.TestCase):
    def test_lint_without_errors_or_warnings(self):
        p = redocly("lint", "docs/openapi.yaml", "--config", "redocly.yaml", "--format=json")
        try:
            report = json.loads(p.stdout)
        except ValueError:
            self.fail("redocly lint did not answer JSON (exit %d):\n%s\n%s"
                      % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
        problems = ["%s %s at %s: %s" % (x.get("severity"), x.get("ruleId"),
                                         ", ".join(l.get("pointer", "?")
                                                   for l in x.get("location", [])),
                                         x.get("message"))
                    for x in report.get("problems", [])]
        totals = report.get("totals", {})
        self.assertEqual((totals.get("errors"), totals.get("warnings")), (0, 0),
                         "redocly lint docs/openapi.yaml:\n" + "\n".join(problems))
        self.assertEqual(problems, [])
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])

    def test_lint_catches_a_wrong_example(self):
        # The stricter rules are live: an example that contradicts its schema is an error.
        with open(DOC, encoding="utf-8") as f:
            text = f.read()
        good = "example: {connector_id: con_3f9a0c1d2e4b5a69, state: queued}"
        self.assertIn(good, text)
        bad_doc = os.path.join(harness.tempdir(self), "openapi.yaml")
        with open(bad_doc, "w", encoding="utf-8") as f:
            f.write(text.replace(good, "example: {connector_id: 7, state: queued}"))
        p = redocly("lint", bad_doc, "--config", "redocly.yaml", "--format=json")
        report = json.loads(p.stdout)
        rules = [x.get("ruleId") for x in report.get("problems", [])]
        self.assertEqual(rules, ["no-invalid-media-type-examples"], p.stdout[-3000:])
        self.assertNotEqual(p.returncode, 0)

    def test_served_at_openapi_yaml(self):
        data = harness.tempdir(self)
        server = harness.Server(data).start()
        self.addCleanup(server.kill)
        r = harness.http(server.port, "GET", "/openapi.yaml")  # no key
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/yaml")
        self.assertTrue(r.header("X-Request-Id"))
        with open(DOC, "rb") as f:
            self.assertEqual(r.body, f.read(), "GET /openapi.yaml is not docs/openapi.yaml")
        r = harness.http(server.port, "POST", "/openapi.yaml", body={})
        self.assertEqual((r.status, r.header("Allow")), (405, "GET"), r)
        server.stop_ok()


if __name__ == "__main__":
    harness.main()
