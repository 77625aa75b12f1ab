"""Typed settings and the generated surface, end to end.

What is checked:
  - TypesTests (no server):
      * `stagedoor connector types` lists every type of the registry (src/connectors/registry.c,
        read here as the independent truth) in text, --json and --markdown, each with every key
        of its settings table; one TYPE alone; an unknown TYPE is a usage error naming the known
        ones; `stagedoor --help` and `connector add --help` list the types from the registry.
      * docs/CONNECTORS.md carries exactly the `--markdown` tables (scripts/gen-connector-docs
        --check); a changed cell makes the check fail with a diff, and the script rewrites the
        file back to the generated text; a registered type without a block fails the check and
        gets a section of its own; a block naming an unknown type fails.
  - ChoiceTests (one hub): csv_drop configured with "delimiter": "semicolon" through the
    admin API and through the CLI imports a `;` file whose header has more commas than
    semicolons (so detection alone would split it wrongly: the same file under "auto" is
    refused, which shows the setting is what made it work); "comma" and "tab" likewise; the
    documented values no other test runs work: feed "format" json (a JSON feed served as
    text/xml, which "auto" refuses) and xml, rest_pull "cursor_mode" since; a wrong choice
    answers 400 (API) and exit 2 (CLI) listing the allowed values.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import harness

TS = harness.TIME_SCALE
GEN = os.path.join(harness.REPO, "scripts", "gen-connector-docs")
DOC = os.path.join(harness.REPO, "docs", "CONNECTORS.md")


def registry_types():
    """The connector names of the registry table, read from its source."""
    with open(os.path.join(harness.REPO, "src", "connectors", "registry.c")) as f:
        src = f.read()
    table = src[src.index("sd_connectors[] = {"):]
    table = table[:table.index("};")]
    # test-only connectors (compiled into test builds) are left out of the listing and docs
    table = re.sub(r"#ifdef SD_TEST_CONNECTORS.*?#endif", "", table, flags=re.S)
    return re.findall(r"&sd_connector_([a-z0-9_]+)", table)


def registry_keys(name):
    """The keys of a connector's settings table, from `connector types NAME --json`."""
    cp = harness.cli(None, "connector", "types", name, "--json", data=False)
    assert cp.returncode == 0, cp
    return [s["key"] for s in json.loads(cp.stdout)["settings"]]


def gen(*args):
    return subprocess.run([sys.executable, GEN, "--bin", harness.bin_path()] + list(args),
                          capture_output=True, text=True, timeout=120 * TS)


class TypesTests(unittest.TestCase):
    def test_every_registered_type_listed(self):
        names = registry_types()
        self.assertGreaterEqual(len(names), 5, names)
        cp = harness.cli(None, "connector", "types", "--json", data=False)
        self.assertEqual(cp.returncode, 0, cp)
        types = json.loads(cp.stdout)["types"]
        self.assertEqual([t["name"] for t in types], names)
        text = harness.cli(None, "connector", "types", data=False)
        md = harness.cli(None, "connector", "types", "--markdown", data=False)
        self.assertEqual((text.returncode, md.returncode), (0, 0), (text, md))
        for t in types:
            self.assertIn(t["kind"], ("source", "target", "source+target"))
            self.assertTrue(t["help"], t)
            keys = [s["key"] for s in t["settings"]]
            self.assertEqual(len(keys), len(set(keys)), keys)
            if t["kind"].startswith("source"):
                self.assertEqual(keys[-1], "source")
            self.assertIn("\n%s (%s" % (t["name"], t["kind"]), "\n" + text.stdout)
            block = md.stdout[md.stdout.index("<!-- BEGIN GENERATED: %s -->" % t["name"]):]
            block = block[:block.index("<!-- END GENERATED -->")]
            for s in t["settings"]:
                self.assertIn("| `%s` | %s |" % (s["key"], s["type"]), block)
                if s["type"] == "choice":
                    self.assertTrue(s["choices"], s)
                    for c in s["choices"]:
                        self.assertIn("`%s`" % c, block)
        # one type alone
        drop = harness.cli(None, "connector", "types", "csv_drop", "--json", data=False)
        d = json.loads(drop.stdout)
        self.assertEqual(d["name"], "csv_drop")
        delim = [s for s in d["settings"] if s["key"] == "delimiter"][0]
        self.assertEqual(delim, {"key": "delimiter", "type": "choice", "required": False,
                                 "default": "auto",
                                 "choices": ["auto", "comma", "semicolon", "tab"],
                                 "help": delim["help"]})
        bad = harness.cli(None, "connector", "types", "nope", data=False)
        self.assertEqual(bad.returncode, 2, bad)
        self.assertIn(", ".join(names), bad.stderr)
        both = harness.cli(None, "connector", "types", "--json", "--markdown", data=False)
        self.assertEqual(both.returncode, 2, both)
        # the CLI's other lists of types come from the registry too
        sources = [t["name"] for t in types if t["kind"].startswith("source")]
        top = harness.cli(None, "--help", data=False)
        add = harness.cli(None, "connector", "add", "--help", data=False)
        self.assertIn(", ".join(sources), top.stdout)
        self.assertIn("Types: %s." % ", ".join(sources), add.stdout)

    def test_docs_carry_the_generated_tables(self):
        cp = gen("--check")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        with open(DOC, encoding="utf-8") as f:
            original = f.read()
        for name in registry_types():
            self.assertIn("<!-- BEGIN GENERATED: %s -->" % name, original)
        work = tempfile.mkdtemp(prefix="sd-e2e-docs-")
        self.addCleanup(shutil.rmtree, work, True)
        doc = os.path.join(work, "CONNECTORS.md")

        # a changed cell: the check fails with a diff; the script writes it back
        changed = original.replace("| `delimiter` | choice | `auto` |",
                                   "| `delimiter` | choice | `comma` |", 1)
        self.assertNotEqual(changed, original)
        with open(doc, "w", encoding="utf-8") as f:
            f.write(changed)
        cp = gen("--check", "--doc", doc)
        self.assertEqual(cp.returncode, 1, cp)
        self.assertIn("-| `delimiter` | choice | `comma` |", cp.stdout)
        self.assertIn("+| `delimiter` | choice | `auto` |", cp.stdout)
        with open(doc, encoding="utf-8") as f:
            self.assertEqual(f.read(), changed)  # --check changes nothing
        cp = gen("--doc", doc)
        self.assertEqual(cp.returncode, 0, cp)
        with open(doc, encoding="utf-8") as f:
            self.assertEqual(f.read(), original)

        # a registered type without a block: the check fails, the script appends a section
        start = original.index("<!-- BEGIN GENERATED: feed -->")
        end = original.index("<!-- END GENERATED -->", start) + len("<!-- END GENERATED -->\n")
        with open(doc, "w", encoding="utf-8") as f:
            f.write(original[:start] + original[end:])
        self.assertEqual(gen("--check", "--doc", doc).returncode, 1)
        self.assertEqual(gen("--doc", doc).returncode, 0)
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        self.assertTrue(text.rstrip("\n").endswith("<!-- END GENERATED -->"), text[-300:])
        self.assertIn("## `feed`\n\n<!-- BEGIN GENERATED: feed -->", text)
        self.assertEqual(gen("--check", "--doc", doc).returncode, 0)

        # a block for a type that does not exist
        with open(doc, "w", encoding="utf-8") as f:
            f.write(original + "\n<!-- BEGIN GENERATED: no_such -->\nx\n<!-- END GENERATED -->\n")
        cp = gen("--check", "--doc", doc)
        self.assertEqual(cp.returncode, 1, cp)
        self.assertIn("unknown connector type 'no_such'", cp.stderr)


# A `;` export whose header has more commas than semicolons: detection would take ','.
COLUMN = "Title, Subtitle, Act, Scene, Cast, Notes, Conductor, Director, Chorus, Remarks"
HEADER = "event_id;%s;date;time;venue;hall;capacity;city" % COLUMN
assert HEADER.count(",") > HEADER.count(";")
MAPPING = {"fields": {COLUMN: "title"}}


def semicolon_events(ids):
    rows = [HEADER]
    for i in ids:
        rows.append(";".join([i, "Otello", "2025-10-03", "19:30:00", "State Opera", "Hall " + i,
                              "1250", "Berlin"]))
    return "\n".join(rows) + "\n"


class ChoiceTests(harness.ServerCase):
    @classmethod
    def prepare(cls):
        harness.tenant_create(cls.data, "venue")
        cls.key = harness.key_create(cls.data, "venue", "test")

    def setUp(self):
        with open(os.path.join(self.data, "admin.token")) as f:
            self.token = f.read().strip()

    def admin(self, method, path, body=None):
        return harness.http(self.server.port, method, "/admin/v1" + path, body=body,
                            key=self.token)

    def status(self, cid):
        r = self.admin("GET", "/tenants/venue/connectors/" + cid)
        self.assertEqual(r.status, 200, r)
        return r.json["status"]

    def drop(self, folder, name, text):
        """Write the file under a temporary name and rename it, as a careful uploader does."""
        tmp = os.path.join(folder, "." + name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(folder, name))

    def wait_file(self, path):
        return harness.wait_until(lambda: os.path.exists(path), 60 * TS, interval=0.05,
                                  what=path)

    def import_through(self, cid, folder, ids):
        """Drop a semicolon events file, ask for a run, wait for its ack; return the ack."""
        name = "events_%s.csv" % ids[0]
        self.drop(folder, name, semicolon_events(ids))
        r = self.admin("POST", "/tenants/venue/connectors/%s/run" % cid)
        self.assertEqual(r.status, 202, r)
        ack = os.path.join(folder, "processed", name + ".ack.json")
        failed = os.path.join(folder, "failed", name + ".errors.csv")
        harness.wait_until(lambda: os.path.exists(ack) or os.path.exists(failed), 60 * TS,
                           interval=0.05, what="ack of " + name)
        if not os.path.exists(ack):
            with open(failed) as f:
                self.fail("%s refused: %s" % (name, f.read()))
        with open(ack) as f:
            return json.load(f)

    def assert_stored(self, ids):
        api = self.server.api("venue", self.key)
        for i in ids:
            r = api.get("events", i)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["title"], "Otello", r.json)
            self.assertEqual(r.json["hall"], "Hall " + i, r.json)

    def test_semicolon_through_admin_api_and_cli(self):
        # through the admin API
        folder = harness.tempdir(self)
        r = self.admin("POST", "/tenants/venue/connectors", {
            "type": "csv_drop", "environment": "test", "schedule": "manual",
            "settings": {"folder": folder, "delimiter": "semicolon"}, "mapping": MAPPING})
        self.assertEqual(r.status, 201, r)
        cid = r.json["connector_id"]
        r = self.admin("GET", "/tenants/venue/connectors/" + cid)
        self.assertEqual(r.json["settings"]["delimiter"], "semicolon", r.json)
        ids = [harness.uid("SC") for _ in range(3)]
        ack = self.import_through(cid, folder, ids)
        self.assertEqual(ack["records_stored"], 3, ack)
        self.assert_stored(ids)

        # through the CLI (the running server picks it up)
        folder2 = harness.tempdir(self)
        cp = harness.cli_ok(self.data, "connector", "add", "venue", "--type", "csv_drop",
                            "--env", "test", "--schedule", "manual", "--settings",
                            json.dumps({"folder": folder2, "delimiter": "comma"}),
                            "--mapping", json.dumps(MAPPING))
        cid2 = cp.stdout.strip().splitlines()[-1]
        harness.cli_ok(self.data, "connector", "update", cid2, "--settings",
                       json.dumps({"delimiter": "semicolon"}))
        shown = json.loads(harness.cli_ok(self.data, "connector", "show", cid2).stdout)
        self.assertEqual(shown["settings"]["delimiter"], "semicolon", shown)
        # the server knows the instance once GET shows it (the CLI wrote to the store)
        ids2 = [harness.uid("SD") for _ in range(2)]
        harness.wait_until(lambda: self.admin("GET", "/tenants/venue/connectors/" + cid2)
                           .status == 200, 30 * TS, what="server sees " + cid2)
        ack = harness.wait_until(lambda: self.try_import(cid2, folder2, ids2), 60 * TS,
                                 interval=0.5, what="CLI instance imports")
        self.assertEqual(ack["records_stored"], 2, ack)
        self.assert_stored(ids2)

        # the same file under "auto" is split at the commas and refused: the setting matters
        folder3 = harness.tempdir(self)
        r = self.admin("POST", "/tenants/venue/connectors", {
            "type": "csv_drop", "environment": "test", "schedule": "manual",
            "settings": {"folder": folder3}, "mapping": MAPPING})
        self.assertEqual(r.status, 201, r)
        cid3 = r.json["connector_id"]
        ids3 = [harness.uid("SA")]
        name = "events_%s.csv" % ids3[0]
        self.drop(folder3, name, semicolon_events(ids3))
        self.assertEqual(self.admin("POST", "/tenants/venue/connectors/%s/run" % cid3).status,
                         202)
        self.wait_file(os.path.join(folder3, "failed", name + ".errors.csv"))
        r = self.server.api("venue", self.key).get("events", ids3[0])
        self.assertEqual(r.status, 404, r)

    def try_import(self, cid, folder, ids):
        """import_through for an instance the scheduler may not have loaded yet: None until
        the run request is taken and the file acknowledged."""
        name = "events_%s.csv" % ids[0]
        path = os.path.join(folder, name)
        if not os.path.exists(path) and not os.path.exists(
                os.path.join(folder, "processed", name)):
            self.drop(folder, name, semicolon_events(ids))
        self.admin("POST", "/tenants/venue/connectors/%s/run" % cid)
        ack = os.path.join(folder, "processed", name + ".ack.json")
        failed = os.path.join(folder, "failed", name + ".errors.csv")
        if os.path.exists(failed):
            with open(failed) as f:
                self.fail("%s refused: %s" % (name, f.read()))
        if os.path.exists(ack):
            with open(ack) as f:
                return json.load(f)
        return None

    def run_once(self, cid):
        """Run a connector that never ran; its status once that run ended."""
        self.assertEqual(self.admin("POST", "/tenants/venue/connectors/%s/run" % cid).status,
                         202)
        return harness.wait_until(
            lambda: (lambda st: st if st["last_run"] and st["state"] in ("ok", "failed")
                     else None)(self.status(cid)), 60 * TS, interval=0.05, what="run of " + cid)

    def add(self, ctype, settings, mapping=None):
        body = {"type": ctype, "environment": "test", "schedule": "manual", "settings": settings}
        if mapping is not None:
            body["mapping"] = mapping
        r = self.admin("POST", "/tenants/venue/connectors", body)
        self.assertEqual(r.status, 201, r)
        return r.json["connector_id"]

    def test_forced_comma_and_tab(self):
        """delimiter comma and tab, each on a file whose header holds more of another
        delimiter (detection alone would split it wrongly)."""
        for setting, sep, other in (("comma", ",", ";"), ("tab", "\t", ",")):
            column = other.join(["Title"] + ["Note%d" % i for i in range(12)])
            rows = [sep.join(["event_id", column, "date", "time", "venue", "hall", "capacity",
                              "city"])]
            self.assertGreater(rows[0].count(other), rows[0].count(sep))
            ids = [harness.uid("F" + setting[0].upper()) for _ in range(2)]
            for i in ids:
                rows.append(sep.join([i, "Otello", "2025-10-03", "19:30:00", "State Opera",
                                      "Hall " + i, "1250", "Berlin"]))
            folder = harness.tempdir(self)
            cid = self.add("csv_drop", {"folder": folder, "delimiter": setting},
                           {"fields": {column: "title"}})
            name = "events_%s.csv" % ids[0]
            self.drop(folder, name, "\n".join(rows) + "\n")
            st = self.run_once(cid)
            self.assertEqual(st["state"], "ok", st)
            self.assertTrue(os.path.exists(os.path.join(folder, "processed", name)), st)
            self.assert_stored(ids)

    def test_feed_format_and_rest_cursor_mode_since(self):
        from fake_sources import FakeSources
        fs = FakeSources().start()
        self.addCleanup(fs.stop)
        # a JSON feed served as XML: format "json" reads it, "auto" believes the Content-Type
        ids = [harness.uid("FJ") for _ in range(2)]
        body = json.dumps([harness.event(i) for i in ids])
        fs.add_feed("/wrong-type.json", body, "text/xml")
        url = fs.url + "/wrong-type.json"
        st = self.run_once(self.add("feed", {"url": url, "kind": "events", "format": "json"}))
        self.assertEqual((st["state"], st["last_run_stats"]["records_in"]), ("ok", 2), st)
        self.assert_stored(ids)
        st = self.run_once(self.add("feed", {"url": url, "kind": "events"}))
        self.assertEqual(st["state"], "failed", st)
        self.assertIn("XML", st["last_error"], st)
        # an XML feed with format "xml"
        ids = [harness.uid("FX") for _ in range(2)]
        xml = "<Events>%s</Events>" % "".join(
            "<Event><No>%s</No><Titel>Otello</Titel><Datum>2025-10-03</Datum><Zeit>19:30:00"
            "</Zeit><Haus>State Opera</Haus><Saal>Hall %s</Saal><Plaetze>1250</Plaetze>"
            "<Stadt>Berlin</Stadt></Event>" % (i, i) for i in ids)
        fs.add_feed("/events.xml", xml, "application/octet-stream")
        mapping = {"fields": {"No": "event_id", "Titel": "title", "Datum": "date",
                              "Zeit": "time", "Haus": "venue", "Saal": "hall",
                              "Plaetze": "capacity", "Stadt": "city"}}
        st = self.run_once(self.add("feed", {"url": fs.url + "/events.xml", "kind": "events",
                                             "format": "xml", "xpath": "/Events/Event"},
                                    mapping))
        self.assertEqual((st["state"], st["last_run_stats"]["records_in"]), ("ok", 2), st)
        self.assert_stored(ids)
        # rest_pull with cursor_mode "since": the last record's cursor_field is the next cursor
        ids = [harness.uid("RS") for _ in range(5)]
        fs.add_collection("/events", [dict(harness.event(e), seq=n + 1)
                                      for n, e in enumerate(ids)],
                          mode="after_id", id_field="seq", token="tok")
        cid = self.add("rest_pull", {"base_url": fs.url, "events_path": "/events",
                                     "auth_header": "Bearer tok", "page_size": 2,
                                     "cursor_mode": "since", "cursor_field": "seq",
                                     "next_pointer": "/next"})
        st = self.run_once(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual([r.query.get("cursor") for r in fs.requests("/events")],
                         [None, "2", "4", "5"])
        self.assertEqual(st["cursor"], {"events": "5"}, st)
        self.assert_stored(ids)

    def test_wrong_choice_lists_allowed_values(self):
        folder = harness.tempdir(self)
        r = self.admin("POST", "/tenants/venue/connectors", {
            "type": "csv_drop", "environment": "test",
            "settings": {"folder": folder, "delimiter": "pipe"}})
        self.assertEqual(r.status, 400, r)
        errs = r.json["errors"]
        self.assertTrue(any(e["pointer"] == "/settings/delimiter" and
                            "must be one of auto, comma, semicolon, tab" in e["message"]
                            for e in errs), errs)
        r = self.admin("POST", "/tenants/venue/connectors", {
            "type": "rest_pull", "environment": "test",
            "settings": {"base_url": "https://api.example", "events_path": "/e",
                         "cursor_mode": "offset"}})
        self.assertEqual(r.status, 400, r)
        self.assertTrue(any(e["pointer"] == "/settings/cursor_mode" and
                            "token, after_id, since" in e["message"]
                            for e in r.json["errors"]), r.json)
        cp = harness.cli(self.data, "connector", "add", "venue", "--type", "csv_drop", "--env",
                         "test", "--settings", json.dumps({"folder": folder,
                                                           "encoding": "latin-1"}))
        self.assertEqual(cp.returncode, 2, cp)
        self.assertIn("/settings/encoding", cp.stderr)
        self.assertIn("must be one of utf-8, windows-1252", cp.stderr)


if __name__ == "__main__":
    harness.main()
