"""test_openapi_proxy.py — ctest tools.test_openapi_proxy.

The end-to-end suites of ingest, reads, segments and segment pushes through the outbox
(tests/e2e/test_ingest.py, test_read.py, test_segments.py, test_push.py) run once through
Prism's validating proxy (@stoplight/prism-cli from tests/tooling, SD_TOOLING) in front of the
hub: the harness's SD_E2E_PROXY=prism mode (tests/e2e/harness.py) fails a suite on any answer
the document does not describe, any route the hub serves that it does not describe, and any
request violation of a request the hub accepted. Each suite must pass whole; a suite that
fails is shown with the end of its output.

A control run proves the check is live: test_read against a copy of the document whose record
page requires a member the hub never sends must fail, naming it.

Run: python3 tests/tools/test_openapi_proxy.py --bin build/debug/stagedoor
"""

import os
import subprocess
import sys
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402

SUITES = ("test_ingest", "test_read", "test_segments", "test_push")
SUITE_TIMEOUT = 300 * harness.TIME_SCALE


def run_suite(name, **env):
    """Run tests/e2e/NAME.py through the proxy; returns (exit code, output, seconds)."""
    cmd = [sys.executable, os.path.join(REPO, "tests", "e2e", name + ".py"),
           "--bin", harness.bin_path()]
    full_env = dict(os.environ, SD_E2E_PROXY="prism", SD_TOOLING=harness.TOOLING, **env)
    full_env.pop("E2E_VERBOSE", None)
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=SUITE_TIMEOUT)
    return p.returncode, p.stdout, time.monotonic() - t0


def summary(out):
    return [l for l in out.splitlines() if l.startswith("validating proxy:")]


class OpenApiProxy(unittest.TestCase):
    def test_suites_through_the_validating_proxy(self):
        failed = []
        for name in SUITES:
            rc, out, secs = run_suite(name)
            line = (summary(out) or ["no verdict of the proxy"])[0]
            sys.stderr.write("%s: exit %d in %.0f s; %s\n" % (name, rc, secs, line))
            if rc != 0 or not summary(out):
                failed.append("--- %s (exit %d) ---\n%s" % (name, rc, out[-6000:]))
        if failed:
            self.fail("suites failed through prism:\n" + "\n".join(failed))

    def test_control_a_wrong_document_fails(self):
        with open(os.path.join(REPO, "docs", "openapi.yaml"), encoding="utf-8") as f:
            text = f.read()
        want = "      required: [data, next_cursor, has_more]\n"
        self.assertEqual(text.count(want), 1, "RecordPage's required list moved; update me")
        doc = os.path.join(harness.tempdir(self), "openapi.yaml")
        with open(doc, "w", encoding="utf-8") as f:
            f.write(text.replace(want, "      required: [data, next_cursor, has_more, bogus]\n"))
        rc, out, _ = run_suite("test_read", SD_E2E_PROXY_DOC=doc)
        self.assertNotEqual(rc, 0, out[-3000:])
        self.assertIn("VIOLATION: GET /v1/", out)
        self.assertIn("must have required property 'bogus'", out)


if __name__ == "__main__":
    harness.main()
