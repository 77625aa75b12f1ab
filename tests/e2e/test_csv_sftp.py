"""CSV over SFTP end to end: `csv_drop` with a real OpenSSH sshd (the production jail: chroot,
internal-sftp) and uploads with the OpenSSH `sftp` client, and `sftp_pull` fetching from the
same kind of server with libcurl. Needs root (sshd_server.py skips otherwise).

What is checked:
  - CsvDropTests (one sshd, one hub; each test its own drop folder /upload/<name>/ and tenant):
      * the seed's cheat-sheet mapping as written, with a values map, a constant and German
        formats, on a venue's `;` export: records readable through GET, the file in processed/
        with NAME.ack.json (rows_read, records_stored, duration_ms) that the SFTP user can list
        and read; the status counts.
      * Windows-1252 (with `encoding`), UTF-8 with BOM, a quoted field with line breaks and
        doubled quotes, a tab-separated file (delimiter detected).
      * reject_file: 2 bad rows of 5 (one refused by validation, one by reference) -> nothing
        stored, failed/ with NAME.errors.csv listing exactly those lines, columns, messages;
        skip_rows: the 3 good rows stored, errors.csv beside the ack in processed/.
      * malformed inputs: unclosed quote, invalid UTF-8, wrong field count, unknown kind of
        file, header only, empty file, a temporary `.x.csv.part` name that is never taken.
      * the same content dropped again under another name stores nothing twice (ack says
        records_unchanged); a changed row replaces the stored sale.
      * one upload, one run: the status' last_run_stats describe the run that took the file.
  - CrashTests: a 200,000-row sales file, kill -9 in the middle of its import, restart: the
    import resumes by itself and ends with exactly the file's rows stored (no duplicates),
    the ack's counts right and the connector's totals exact — for reject_file and skip_rows.
  - SftpPullTests: password + host_key_sha256 (files moved to processed/ and failed/ on the
    server), private key + after_import delete, a wrong host key (clear last_error, nothing
    stored, nothing touched on the server).
  - SftpPullCrashTests: the hub exits (fault hook sftp_before_move) after importing a file but
    before moving it on the server; the next run only moves it and uploads its ack with the
    first import's counts, it does not import it again (the cursor's "acked" mark used to be
    committed before the remote move, so the file was imported again as unchanged).

The hub's data directory for CsvDropTests is put on another file system than the drop folder
when there is one (/dev/shm), as in production (/var/lib vs /srv): errors.csv is written in the
data directory and must still arrive beside the file.
"""

import csv
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import tempfile
import time
import unittest

import harness
import sshd_server
from sshd_server import SshdServer

TS = harness.TIME_SCALE
ACK_WAIT = 30 * TS

# The seed's Appendix A cheat-sheet as written, plus what a German box office export needs.
CHEAT_SHEET = {"EventNo": "event_id", "EventDate": "date", "EventTime": "time",
               "TicketType": "ticket_category", "PriceGross": "sales_price"}
GERMAN = {"fields": CHEAT_SHEET,
          "values": {"ticket_category": {"Abo": "subscription", "Freikarte": "comp"}},
          "constants": {"currency": "EUR"},
          "formats": {"date": "DD.MM.YYYY", "time": "HH:mm", "datetime": "DD.MM.YYYY HH:mm:ss",
                      "utc_offset": "+01:00", "decimal_comma": True}}

EVENTS_DE_HEADER = "EventNo;title;EventDate;EventTime;venue;hall;capacity;city"
SALES_DE_HEADER = "invoice_number;EventNo;customer_id;purchase_datetime;TicketType;quantity;PriceGross"
EVENTS_HEADER = "event_id,title,date,time,venue,hall,capacity,city"
SALES_HEADER = ("invoice_number,event_id,customer_id,purchase_datetime,ticket_category,quantity,"
                "sales_price,currency")


def admin_token(data_dir):
    with open(os.path.join(data_dir, "admin.token")) as f:
        return f.read().strip()


def events_csv(ids, sep=","):
    rows = [EVENTS_HEADER.replace(",", sep)]
    for i in ids:
        rows.append(sep.join([i, "Otello", "2025-10-03", "19:30:00", "State Opera", "Hall " + i,
                              "1250", "Berlin"]))
    return "\n".join(rows) + "\n"


def sftp_quote(s):
    """One argument of an sftp batch line."""
    assert "\n" not in s and "\r" not in s, s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_errors_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    assert rows and rows[0] == ["line", "column", "message"], rows[:1]
    return [(int(r[0]), r[1], r[2]) for r in rows[1:]]


class SftpHub(unittest.TestCase):
    """An sshd with the SFTP jail and a hub; helpers for drop folders, connectors and acks."""

    TENANTS = ()
    SHM_DATA = False

    @classmethod
    def setUpClass(cls):
        cls.sshd = SshdServer()
        cls.sshd.start()
        cls.addClassCleanup(cls.sshd.stop)
        cls.data = cls.make_data_dir()
        cls.keys = {}
        for t in cls.TENANTS:
            harness.tenant_create(cls.data, t)
            cls.keys[t] = harness.key_create(cls.data, t, "test")
        cls.start_server()

    @classmethod
    def make_data_dir(cls):
        if cls.SHM_DATA and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) and \
                os.stat("/dev/shm").st_dev != os.stat(cls.sshd.upload_dir).st_dev:
            d = tempfile.mkdtemp(prefix="sd-e2e-", dir="/dev/shm")
            cls.addClassCleanup(shutil.rmtree, d, True)
            return d
        return harness.tempdir(cls)

    @classmethod
    def start_server(cls):
        cls.server = harness.Server(cls.data)
        cls.addClassCleanup(cls.server.kill)
        cls.server.start()
        cls.token = admin_token(cls.data)

    @classmethod
    def tearDownClass(cls):
        if cls.server.running():
            rc = cls.server.stop()
            if rc != 0:
                raise AssertionError("server exit code %r\n%s" % (rc, cls.server.diagnostics()))

    # -- hub
    def admin(self, method, path, body=None):
        try:
            return harness.http(self.server.port, method, "/admin/v1" + path, body=body,
                                key=self.token)
        except ConnectionError as e:
            raise AssertionError("the server does not answer (%r; running: %s)\n%s"
                                 % (e, self.server.running(), self.server.diagnostics()))

    def api(self, tenant):
        return harness.Api(self.server.port, tenant, self.keys[tenant])

    def status(self, tenant, cid):
        r = self.admin("GET", "/tenants/%s/connectors/%s" % (tenant, cid))
        self.assertEqual(r.status, 200, r)
        return r.json["status"]

    def idle_status(self, tenant, cid, timeout=None):
        """The status once no run is in flight."""
        return harness.wait_until(
            lambda: (lambda s: s if s["state"] != "running" else None)(self.status(tenant, cid)),
            timeout or ACK_WAIT, interval=0.05, what="connector %s idle" % cid)

    def add_connector(self, tenant, ctype, settings, mapping=None, schedule="every 1m"):
        body = {"type": ctype, "environment": "test", "schedule": schedule,
                "settings": settings}
        if mapping is not None:
            body["mapping"] = mapping
        r = self.admin("POST", "/tenants/%s/connectors" % tenant, body)
        self.assertEqual(r.status, 201, r)
        cid = r.json["connector_id"]
        if ctype == "csv_drop":
            # a connector that never ran runs at once: let that first (empty) run end
            harness.wait_until(lambda: (lambda s: s["last_run"] and s["state"] != "running")(
                self.status(tenant, cid)), ACK_WAIT, interval=0.05, what="first run")
        return cid

    def runs_logged(self, cid):
        lines = list(self.server.stdout_lines) + list(self.server.stderr_tail)
        return [l for l in lines if "connector run finished" in l and cid in l]

    def server_log(self):
        return "\n".join(list(self.server.stdout_lines) + list(self.server.stderr_tail))

    # -- the SFTP side
    def drop_folder(self, name):
        """/upload/NAME/ in the jail, owned by the SFTP user like the upload folder itself.
        Returns (host path, remote path)."""
        host = os.path.join(self.sshd.upload_dir, name)
        os.mkdir(host, 0o755)
        pw = pwd.getpwnam(sshd_server.USER)
        os.chown(host, pw.pw_uid, pw.pw_gid)
        os.chmod(host, 0o755)
        return host, "upload/" + name

    def put(self, remote_dir, name, data, temp_then_rename=True):
        """Upload bytes as REMOTE_DIR/NAME with the sftp client: as .NAME.part, then renamed
        (SshdServer.put_bytes checks the file on the host afterwards, which races with a hub
        that takes it at once; the ack's sha256 checks the content instead)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        fd, local = tempfile.mkstemp(prefix="sd-sftp-put-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            final = "%s/%s" % (remote_dir, name)
            if temp_then_rename:
                part = "%s/.%s.part" % (remote_dir, name)
                self.sshd.sftp(["put %s %s" % (sftp_quote(local), sftp_quote(part)),
                                "rename %s %s" % (sftp_quote(part), sftp_quote(final))])
            else:
                self.sshd.sftp(["put %s %s" % (sftp_quote(local), sftp_quote(final))])
        finally:
            os.unlink(local)
        return data

    def read_remote(self, remote_path):
        fd, local = tempfile.mkstemp(prefix="sd-sftp-get-")
        os.close(fd)
        try:
            self.sshd.get(remote_path, local)
            with open(local, "rb") as f:
                return f.read()
        finally:
            os.unlink(local)

    def wait_ack(self, folder, name, where="processed"):
        """Wait for folder/WHERE/NAME.ack.json (host side), then read it the way the venue
        does: through SFTP. Returns the parsed ack."""
        host, remote = folder
        path = os.path.join(host, where, name + ".ack.json")
        other = os.path.join(host, "failed" if where == "processed" else "processed",
                             name + ".ack.json")

        def seen():
            if os.path.exists(other):
                with open(other) as f:
                    raise AssertionError("%s went to the wrong folder: %s" % (name, f.read()))
            return os.path.exists(path)
        harness.wait_until(seen, ACK_WAIT, interval=0.05, what="%s/%s.ack.json" % (where, name))
        return json.loads(self.read_remote("%s/%s/%s.ack.json" % (remote, where, name)))


# ---------------------------------------------------------------------------------------------


class CsvDropTests(SftpHub):
    TENANTS = ("opera", "enc", "policy", "bad", "redrop", "runs", "links")
    SHM_DATA = True

    def test_cheat_sheet_mapping_german_export(self):
        folder = self.drop_folder("opera")
        cid = self.add_connector("opera", "csv_drop",
                                 {"folder": folder[0], "settle_seconds": 1}, GERMAN)
        events = "\r\n".join([
            EVENTS_DE_HEADER,
            "EVT-DE-1;Otello;03.10.2025;19:30;Staatsoper;Großer Saal;1250;Berlin",
            "EVT-DE-2;La Traviata;04.10.2025;18:00;Staatsoper;Kleiner Saal;300;Berlin"]) + "\r\n"
        sales = "\r\n".join([
            SALES_DE_HEADER,
            "DE-1;EVT-DE-1;ANON;15.04.2025 11:08:42;regular;2;89,00",
            "DE-2;EVT-DE-1;ANON;15.04.2025 12:00:00;Abo;1;1.234,50",
            "DE-3;EVT-DE-2;ANON;16.04.2025 09:30:00;Freikarte;1;0,00",
            "DE-4;EVT-DE-2;ANON;16.04.2025 23:59:59;VIP;4;120,5"]) + "\r\n"
        self.put(folder[1], "events.csv", events)
        ack_e = self.wait_ack(folder, "events.csv")
        sales_bytes = self.put(folder[1], "sales.csv", sales)
        ack = self.wait_ack(folder, "sales.csv")

        self.assertEqual(ack_e["rows_read"], 2)
        self.assertEqual(ack_e["records_stored"], 2)
        self.assertEqual(ack["status"], "processed")
        self.assertEqual(ack["file"], "sales.csv")
        self.assertEqual(ack["kind"], "sales")
        self.assertEqual(ack["rows_read"], 4)
        self.assertEqual(ack["records_stored"], 4)
        self.assertEqual(ack["records_rejected"], 0)
        self.assertIsInstance(ack["duration_ms"], int)
        self.assertGreaterEqual(ack["duration_ms"], 0)
        self.assertEqual(ack["sha256"], hashlib.sha256(sales_bytes).hexdigest())
        self.assertIsNone(ack.get("errors_file"))

        api = self.api("opera")
        e = api.get("events", "EVT-DE-1")
        self.assertEqual(e.status, 200, e)
        self.assertEqual(e.json["date"], "2025-10-03")
        self.assertEqual(e.json["time"], "19:30:00")
        self.assertEqual(e.json["hall"], "Großer Saal")
        self.assertEqual(e.json["capacity"], 1250)
        want = {"DE-1": ("regular", "89.00", 2, "2025-04-15T10:08:42Z"),
                "DE-2": ("subscription", "1234.50", 1, "2025-04-15T11:00:00Z"),
                "DE-3": ("comp", "0.00", 1, "2025-04-16T08:30:00Z"),
                "DE-4": ("VIP", "120.50", 4, "2025-04-16T22:59:59Z")}
        for inv, (cat, price, qty, when) in want.items():
            r = api.get("sales", inv)
            self.assertEqual(r.status, 200, r)
            s = r.json
            self.assertEqual((s["ticket_category"], s["sales_price"], s["quantity"],
                              s["purchase_datetime"]), (cat, price, qty, when), inv)
            self.assertEqual(s["currency"], "EUR")
            self.assertEqual(s["event_id"], "EVT-DE-1" if inv in ("DE-1", "DE-2") else "EVT-DE-2")

        # what the venue sees over SFTP: both files acknowledged, nothing left to take
        self.assertEqual(self.sshd.listdir(folder[1] + "/processed"),
                         ["events.csv", "events.csv.ack.json", "sales.csv", "sales.csv.ack.json"])
        self.assertEqual(self.sshd.listdir(folder[1]), ["processed"])
        self.assertEqual(self.read_remote(folder[1] + "/processed/sales.csv"), sales_bytes)

        st = self.idle_status("opera", cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertIsNone(st["last_error"])
        self.assertEqual(st["records_in"], 6)
        self.assertEqual(st["records_rejected"], 0)
        self.assertEqual(st["cursor"]["file"], "sales.csv")
        self.assertTrue(st["cursor"]["done"])
        self.assertTrue(st["next_run"])

    def test_encodings_and_dialects(self):
        utf8 = self.drop_folder("enc-utf8")
        cp = self.drop_folder("enc-1252")
        c1 = self.add_connector("enc", "csv_drop", {"folder": utf8[0], "settle_seconds": 0})
        c2 = self.add_connector("enc", "csv_drop", {"folder": cp[0], "settle_seconds": 0,
                                                    "encoding": "windows-1252"})
        # Windows-1252, ';', CRLF: ü is 0xFC, € is 0x80
        text = (EVENTS_HEADER.replace(",", ";") + "\r\n" +
                "CP-1;Gala für €uro;2025-11-01;20:00:00;Tonhalle;Saal Zürich;900;Zürich\r\n")
        raw = text.encode("cp1252")
        self.assertIn(b"\xfc", raw)
        self.assertIn(b"\x80", raw)
        self.put(cp[1], "events_cp1252.csv", raw)
        # UTF-8 with BOM
        self.put(utf8[1], "events_bom.csv", b"\xef\xbb\xbf" + events_csv(["BOM-1"]).encode())
        # a quoted field with line breaks, a doubled quote and the delimiter inside
        nl = (EVENTS_HEADER + "\n" +
              'NL-1,"Otello\nzweiter Akt, ""neu""",2025-10-03,19:30:00,State Opera,Hall NL-1,'
              '1250,Berlin\n' +
              "NL-2,Carmen,2025-10-04,19:30:00,State Opera,Hall NL-2,1250,Berlin\n")
        self.put(utf8[1], "events_newline.csv", nl)
        # tab separated, detected
        self.put(utf8[1], "events_tab.csv", events_csv(["TAB-1", "TAB-2"], sep="\t"))

        api = self.api("enc")
        ack = self.wait_ack(cp, "events_cp1252.csv")
        self.assertEqual((ack["rows_read"], ack["records_stored"]), (1, 1), ack)
        e = api.get("events", "CP-1").json
        self.assertEqual(e["title"], "Gala für €uro")
        self.assertEqual(e["city"], "Zürich")
        self.assertEqual(e["hall"], "Saal Zürich")

        ack = self.wait_ack(utf8, "events_bom.csv")
        self.assertEqual((ack["rows_read"], ack["records_stored"]), (1, 1), ack)
        r = api.get("events", "BOM-1")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("\ufeff", r.text)

        ack = self.wait_ack(utf8, "events_newline.csv")
        self.assertEqual((ack["rows_read"], ack["records_stored"]), (2, 2), ack)
        self.assertEqual(api.get("events", "NL-1").json["title"], 'Otello\nzweiter Akt, "neu"')
        self.assertEqual(api.get("events", "NL-2").json["title"], "Carmen")

        ack = self.wait_ack(utf8, "events_tab.csv")
        self.assertEqual((ack["rows_read"], ack["records_stored"]), (2, 2), ack)
        self.assertEqual(api.get("events", "TAB-2").json["hall"], "Hall TAB-2")
        for c in (c1, c2):
            st = self.idle_status("enc", c)
            self.assertEqual(st["state"], "ok", st)
            self.assertEqual(st["records_rejected"], 0, st)

    def test_symlinks_are_not_followed(self):
        # The drop folder is the venue's to write in (SFTP can create links): a link there never
        # makes the hub read or write outside it.
        folder = self.drop_folder("links")
        host, remote = folder
        cid = self.add_connector("links", "csv_drop", {"folder": host, "settle_seconds": 0})
        outside = tempfile.mkdtemp(prefix="sd-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        secret = os.path.join(outside, "secret.csv")
        with open(secret, "w") as f:
            f.write(events_csv(["LINK-E1"]))
        os.symlink(secret, os.path.join(host, "events_link.csv"))
        self.put(remote, "events_real.csv", events_csv(["REAL-E1"]))
        self.wait_ack(folder, "events_real.csv")
        api = self.api("links")
        self.assertEqual(api.get("events", "REAL-E1").status, 200)
        self.assertEqual(api.get("events", "LINK-E1").status, 404)
        self.assertTrue(os.path.islink(os.path.join(host, "events_link.csv")))
        self.assertFalse(os.path.exists(os.path.join(host, "processed",
                                                     "events_link.csv.ack.json")))
        # a hard link to a file outside is left alone too
        os.link(secret, os.path.join(host, "events_hard.csv"))
        self.put(remote, "events_three.csv", events_csv(["THREE-E1"]))
        self.wait_ack(folder, "events_three.csv")
        self.assertEqual(api.get("events", "LINK-E1").status, 404)
        self.assertTrue(os.path.exists(os.path.join(host, "events_hard.csv")))
        os.unlink(os.path.join(host, "events_hard.csv"))
        # processed/ swapped for a link to a folder outside: nothing is stored, moved or written
        shutil.rmtree(os.path.join(host, "processed"))
        os.symlink(outside, os.path.join(host, "processed"))
        self.put(remote, "events_two.csv", events_csv(["TWO-E1"]))
        st = harness.wait_until(
            lambda: (lambda s: s if s["state"] == "failed" and
                     "symbolic link" in (s["last_error"] or "") else None)(
                         self.status("links", cid)),
            ACK_WAIT, interval=0.05, what="the run refusing the linked processed/")
        self.assertIn("symbolic link", st["last_error"], st)
        self.assertEqual(os.listdir(outside), ["secret.csv"])
        self.assertTrue(os.path.exists(os.path.join(host, "events_two.csv")))
        self.assertEqual(api.get("events", "TWO-E1").status, 404)
        # once the folder is a folder again, the file goes through
        os.unlink(os.path.join(host, "processed"))
        self.admin("POST", "/tenants/links/connectors/%s/run" % cid)
        self.wait_ack(folder, "events_two.csv")
        self.assertEqual(api.get("events", "TWO-E1").status, 200)

    def test_reject_file_and_skip_rows(self):
        rej = self.drop_folder("policy-reject")
        skip = self.drop_folder("policy-skip")
        c_rej = self.add_connector("policy", "csv_drop",
                                   {"folder": rej[0], "settle_seconds": 0}, GERMAN)
        c_skip = self.add_connector("policy", "csv_drop", {"folder": skip[0], "settle_seconds": 0,
                                                           "policy": "skip_rows"}, GERMAN)
        self.put(rej[1], "events.csv",
                 EVENTS_DE_HEADER + "\nPOL-1;Otello;03.10.2025;19:30;Oper;Saal POL;1250;Berlin\n")
        self.wait_ack(rej, "events.csv")
        # lines 3 and 5 are bad: an unknown event (the store's reference check) and a ticket
        # type that maps to no category (the validator)
        sales = "\n".join([
            SALES_DE_HEADER,
            "P-1;POL-1;ANON;15.04.2025 11:08:42;Abo;1;89,00",
            "P-2;NOPE-9;ANON;15.04.2025 11:08:42;Abo;1;89,00",
            "P-3;POL-1;ANON;15.04.2025 11:08:42;Freikarte;1;0,00",
            "P-4;POL-1;ANON;15.04.2025 11:08:42;Stehplatz;1;10,00",
            "P-5;POL-1;ANON;15.04.2025 11:08:42;VIP;2;150,00"]) + "\n"
        # errors.csv names the venue's own columns (EventNo, TicketType), not the model's
        want_errors = {(3, "EventNo"): "NOPE-9", (5, "TicketType"): "must be one of"}

        def check_errors(text):
            rows = parse_errors_csv(text)
            self.assertEqual(len(rows), 2, rows)
            self.assertEqual({(l, c) for l, c, _ in rows}, set(want_errors), rows)
            for l, c, msg in rows:
                self.assertIn(want_errors[(l, c)], msg, rows)

        self.put(rej[1], "sales_week.csv", sales)
        ack = self.wait_ack(rej, "sales_week.csv", "failed")
        self.assertEqual(ack["status"], "failed")
        self.assertEqual(ack["rows_read"], 5)
        self.assertEqual(ack["records_stored"], 0)
        self.assertEqual(ack["records_rejected"], 2)
        self.assertEqual(ack["errors_file"], "sales_week.csv.errors.csv")
        self.assertEqual(self.sshd.listdir(rej[1] + "/failed"),
                         ["sales_week.csv", "sales_week.csv.ack.json",
                          "sales_week.csv.errors.csv"])
        check_errors(self.read_remote(rej[1] + "/failed/sales_week.csv.errors.csv").decode())
        api = self.api("policy")
        for inv in ("P-1", "P-2", "P-3", "P-4", "P-5"):
            self.assertEqual(api.get("sales", inv).status, 404, "%s stored from a refused file"
                             % inv)
        st = self.idle_status("policy", c_rej)
        self.assertEqual(st["records_in"], 1, st)  # the event only
        self.assertEqual(st["records_rejected"], 2, st)
        self.assertIn("failed/", st["last_warning"] or st["last_error"] or "", st)

        self.put(skip[1], "sales_week.csv", sales)
        ack = self.wait_ack(skip, "sales_week.csv", "processed")
        self.assertEqual(ack["rows_read"], 5)
        self.assertEqual(ack["records_stored"], 3)
        self.assertEqual(ack["records_rejected"], 2)
        # P-1, stored before the store found P-2's unknown event, was undone with that attempt:
        # the attempt without P-2 stores it anew, not as "unchanged"
        self.assertEqual(ack["records_unchanged"], 0, ack)
        self.assertEqual(ack["errors_file"], "sales_week.csv.errors.csv")
        self.assertEqual(self.sshd.listdir(skip[1] + "/processed"),
                         ["sales_week.csv", "sales_week.csv.ack.json",
                          "sales_week.csv.errors.csv"])
        check_errors(self.read_remote(skip[1] + "/processed/sales_week.csv.errors.csv").decode())
        self.assertEqual(api.get("sales", "P-1").json["ticket_category"], "subscription")
        self.assertEqual(api.get("sales", "P-3").json["ticket_category"], "comp")
        self.assertEqual(api.get("sales", "P-5").json["sales_price"], "150.00")
        self.assertEqual(api.get("sales", "P-2").status, 404)
        self.assertEqual(api.get("sales", "P-4").status, 404)
        st = self.idle_status("policy", c_skip)
        self.assertEqual((st["records_in"], st["records_rejected"]), (3, 2), st)

    def test_malformed_inputs(self):
        rej = self.drop_folder("bad")
        skip = self.drop_folder("bad-skip")
        c_rej = self.add_connector("bad", "csv_drop", {"folder": rej[0], "settle_seconds": 0})
        self.add_connector("bad", "csv_drop", {"folder": skip[0], "settle_seconds": 0,
                                               "policy": "skip_rows"})
        # a temporary name, as a careful uploader leaves it while the transfer runs
        self.put(rej[1], ".x.csv.part", SALES_HEADER + "\n", temp_then_rename=False)
        self.put(rej[1], "events.csv", events_csv(["BAD-E1"]))
        self.wait_ack(rej, "events.csv")

        def sale_row(inv, cat="regular"):
            return "%s,BAD-E1,ANON,2025-04-15T11:08:42Z,%s,1,10.00,EUR" % (inv, cat)

        # all at once, as a venue's nightly export might arrive
        # broken quoting: the good row before it must not be stored either
        self.put(rej[1], "sales_quote.csv",
                 SALES_HEADER + "\n" + sale_row("Q-1") + "\n" +
                 'Q-2,BAD-E1,ANON,"2025-04-15T11:08:42Z,regular,1,10.00,EUR\n' +
                 sale_row("Q-3") + "\n")
        # invalid UTF-8 (a Latin-1 ü) and a short row: reject_file refuses the file, skip_rows
        # (below) stores the others
        bad_utf8 = (SALES_HEADER + "\n" + sale_row("U-1") + "\n").encode() + \
            b"U-2,BAD-E1,ANON,2025-04-15T11:08:42Z,regular,1,10.00,M\xfcnze\n" + \
            ("U-3,BAD-E1,ANON\n" + sale_row("U-4") + "\n").encode()
        self.put(rej[1], "sales_enc.csv", bad_utf8)
        # a name that says no kind
        self.put(rej[1], "foo.csv", SALES_HEADER + "\n" + sale_row("F-1") + "\n")
        # a header alone is a file with nothing to import; an empty file has no header
        self.put(rej[1], "sales_none.csv", SALES_HEADER + "\n")
        self.put(rej[1], "sales_zero.csv", b"")

        ack = self.wait_ack(rej, "sales_quote.csv", "failed")
        self.assertIn("quoted field not closed", ack["error"] or "", ack)
        self.assertEqual(ack["records_stored"], 0)
        errs = parse_errors_csv(self.read_remote(rej[1] + "/failed/sales_quote.csv.errors.csv")
                                .decode())
        self.assertEqual(len(errs), 1, errs)
        self.assertEqual(errs[0][0], 3)
        self.assertIn("quoted field not closed", errs[0][2])

        ack = self.wait_ack(rej, "sales_enc.csv", "failed")
        self.assertEqual((ack["rows_read"], ack["records_stored"], ack["records_rejected"]),
                         (4, 0, 2), ack)
        want_enc = [(3, "line 3, column 8: invalid UTF-8"),
                    (4, "the row has 3 fields, the header has 8")]
        errs = parse_errors_csv(self.read_remote(rej[1] + "/failed/sales_enc.csv.errors.csv")
                                .decode())
        self.assertEqual([(l, m) for l, _, m in errs], want_enc, errs)

        ack = self.wait_ack(rej, "foo.csv", "failed")
        self.assertIn("unknown kind", ack["error"] or "", ack)
        errs = parse_errors_csv(self.read_remote(rej[1] + "/failed/foo.csv.errors.csv").decode())
        self.assertIn("events*.csv", errs[0][2])

        ack = self.wait_ack(rej, "sales_none.csv", "processed")
        self.assertEqual((ack["rows_read"], ack["records_stored"]), (0, 0), ack)
        ack = self.wait_ack(rej, "sales_zero.csv", "failed")
        self.assertIn("empty", ack["error"] or "", ack)

        api = self.api("bad")
        for inv in ("Q-1", "Q-2", "Q-3", "U-1", "U-2", "U-3", "U-4", "F-1"):
            self.assertEqual(api.get("sales", inv).status, 404, inv)

        self.put(skip[1], "sales_enc.csv", bad_utf8)
        ack = self.wait_ack(skip, "sales_enc.csv", "processed")
        self.assertEqual((ack["rows_read"], ack["records_stored"], ack["records_rejected"]),
                         (4, 2, 2), ack)
        errs = parse_errors_csv(self.read_remote(skip[1] + "/processed/sales_enc.csv.errors.csv")
                                .decode())
        self.assertEqual([(l, m) for l, _, m in errs], want_enc, errs)

        for inv in ("U-2", "U-3"):
            self.assertEqual(api.get("sales", inv).status, 404, inv)
        for inv in ("U-1", "U-4"):
            self.assertEqual(api.get("sales", inv).status, 200, inv)
        # the temporary name was never taken, though runs went by
        self.assertIn(".x.csv.part", self.sshd.listdir(rej[1], all=True))
        for sub in ("processed", "failed"):
            self.assertNotIn(".x.csv.part", self.sshd.listdir(rej[1] + "/" + sub, all=True))
        self.assertEqual(sorted(self.sshd.listdir(rej[1] + "/failed")),
                         sorted(["foo.csv", "foo.csv.ack.json", "foo.csv.errors.csv",
                                 "sales_enc.csv", "sales_enc.csv.ack.json",
                                 "sales_enc.csv.errors.csv", "sales_quote.csv",
                                 "sales_quote.csv.ack.json", "sales_quote.csv.errors.csv",
                                 "sales_zero.csv", "sales_zero.csv.ack.json",
                                 "sales_zero.csv.errors.csv"]))
        st = self.idle_status("bad", c_rej)
        self.assertEqual(st["records_in"], 1, st)

    def test_same_content_again_stores_nothing_twice(self):
        folder = self.drop_folder("redrop")
        self.add_connector("redrop", "csv_drop", {"folder": folder[0], "settle_seconds": 0})
        self.put(folder[1], "events.csv", events_csv(["RD-E1"]))
        self.wait_ack(folder, "events.csv")
        rows = ["RD-%d,RD-E1,ANON,2025-04-15T11:08:42Z,regular,%d,%d.00,EUR" % (i, 1 + i % 3,
                                                                              50 + i)
                for i in range(10)]
        body = SALES_HEADER + "\n" + "\n".join(rows) + "\n"
        self.put(folder[1], "sales_monday.csv", body)
        ack = self.wait_ack(folder, "sales_monday.csv")
        self.assertEqual((ack["records_stored"], ack["records_unchanged"]), (10, 0), ack)
        api = self.api("redrop")
        first, _ = api.list_all("sales")

        self.put(folder[1], "sales_monday_resent.csv", body)
        ack = self.wait_ack(folder, "sales_monday_resent.csv")
        self.assertEqual(ack["rows_read"], 10)
        self.assertEqual(ack["records_unchanged"], 10, ack)
        self.assertEqual(ack["records_rejected"], 0)
        again, _ = api.list_all("sales")
        self.assertEqual(again, first)

        rows[4] = rows[4].replace("54.00", "99.00")
        self.put(folder[1], "sales_monday_fixed.csv", SALES_HEADER + "\n" + "\n".join(rows) + "\n")
        ack = self.wait_ack(folder, "sales_monday_fixed.csv")
        self.assertEqual(ack["records_unchanged"], 9, ack)
        final, _ = api.list_all("sales")
        self.assertEqual(len(final), 10)
        self.assertEqual(len({s["invoice_number"] for s in final}), 10)
        self.assertEqual(api.get("sales", "RD-4").json["sales_price"], "99.00")

    def test_one_upload_one_run(self):
        """Each upload is taken by one run, and that run's numbers are the status' last run
        (a second, concurrent run of the same connector would overwrite them)."""
        folder = self.drop_folder("runs")
        cid = self.add_connector("runs", "csv_drop", {"folder": folder[0], "settle_seconds": 0})
        # the first (empty) run's log line comes just after its status is committed
        base = len(harness.wait_until(lambda: self.runs_logged(cid), 5 * TS,
                                      what="the first run in the log"))
        for n in (1, 2, 3):
            ids = ["RUN-%d-%d" % (n, i) for i in range(n)]
            self.put(folder[1], "events_%d.csv" % n, events_csv(ids))
            self.wait_ack(folder, "events_%d.csv" % n)
            st = self.idle_status("runs", cid)
            self.assertEqual(st["state"], "ok", st)
        time.sleep(1.0 * TS)  # a stray second run would have ended by now
        st = self.idle_status("runs", cid)
        self.assertEqual(st["last_run_stats"]["records_in"], 3, st)
        self.assertEqual(st["records_in"], 6, st)
        runs = self.runs_logged(cid)[base:]
        self.assertEqual(len(runs), 3, "\n".join(runs))


# ---------------------------------------------------------------------------------------------


N_BIG = 200000
N_EVENTS = 20


class CrashTests(SftpHub):
    """kill -9 in the middle of a 200,000-row import, then restart."""

    TENANTS = ("crash_rf", "crash_sr")
    SHM_DATA = True  # a process crash loses nothing of the page cache: tmpfs is as good a test

    def big_sales(self, prefix):
        fd, path = tempfile.mkstemp(prefix="sd-big-", suffix=".csv")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            f.write(SALES_HEADER + "\n")
            for i in range(N_BIG):
                f.write("%s%07d,%sE%d,ANON,2025-04-15T11:08:42Z,regular,%d,%d.50,EUR\n"
                        % (prefix, i, prefix, i % N_EVENTS, 1 + i % 4, 20 + i % 80))
        return path

    def crash_and_resume(self, tenant, policy):
        prefix = tenant.upper().replace("_", "") + "-"
        folder = self.drop_folder(tenant)
        cid = self.add_connector(tenant, "csv_drop", {"folder": folder[0], "settle_seconds": 1,
                                                      "policy": policy})
        self.put(folder[1], "events.csv",
                 events_csv(["%sE%d" % (prefix, i) for i in range(N_EVENTS)]))
        self.wait_ack(folder, "events.csv")
        path = self.big_sales(prefix)
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        with open(path, "rb") as f:
            self.put(folder[1], "sales_season.csv", f.read())

        # in the middle: running, a tenth read; with skip_rows, rows committed (every 50,000)
        def mid_file(s):
            if s["state"] != "running" or (s.get("progress") or 0) < N_BIG // 10:
                return None
            if policy == "skip_rows" and (s.get("cursor") or {}).get("file") != "sales_season.csv":
                return None
            return s
        st = harness.wait_until(lambda: mid_file(self.status(tenant, cid)),
                                ACK_WAIT, interval=0.02, what="the import running with progress")
        self.assertTrue(st["run_started"])
        api = self.api(tenant)
        seen_before = api.get("sales", query="limit=1").json["data"]
        cursor_before = self.status(tenant, cid)["cursor"]
        self.server.kill()
        if policy == "reject_file":
            # records show only once the file passed its check: while it is published
            if seen_before:
                self.assertEqual((cursor_before or {}).get("phase"), "publishing",
                                 "a reject_file import showed records before its check ended")
        else:
            # we did crash mid-file: chunks were committed with a cursor inside the file
            self.assertEqual(cursor_before["file"], "sales_season.csv", cursor_before)
            self.assertFalse(cursor_before["done"])
            self.assertGreater(cursor_before["rows"], 0)
            self.assertLess(cursor_before["rows"], N_BIG)
        self.assertTrue(os.path.exists(os.path.join(folder[0], "sales_season.csv")))
        self.assertFalse(os.path.exists(os.path.join(folder[0], "processed",
                                                     "sales_season.csv.ack.json")))

        self.start_server()
        api = self.api(tenant)
        # nobody asks: the cut-short run is due again at once (not at the next schedule slot)
        t0 = time.monotonic()
        ack_path = os.path.join(folder[0], "processed", "sales_season.csv.ack.json")
        harness.wait_until(
            lambda: os.path.exists(ack_path) or self.status(tenant, cid)["state"] == "running",
            15 * TS, interval=0.05, what="the import to resume after the restart")
        resumed_after = time.monotonic() - t0
        ack = self.wait_ack(folder, "sales_season.csv")
        self.assertEqual(ack["sha256"], sha)
        self.assertEqual(ack["rows_read"], N_BIG)
        self.assertEqual(ack["records_stored"], N_BIG)
        self.assertEqual(ack["records_unchanged"], 0, "rows stored twice after the resume")
        self.assertEqual(ack["records_rejected"], 0)

        sales, _ = api.list_all("sales", limit=1000)
        invs = [s["invoice_number"] for s in sales]
        self.assertEqual(len(invs), N_BIG)
        self.assertEqual(len(set(invs)), N_BIG, "duplicate invoice numbers")
        self.assertEqual(set(invs), {"%s%07d" % (prefix, i) for i in range(N_BIG)})
        s = api.get("sales", "%s%07d" % (prefix, 12345)).json
        self.assertEqual((s["event_id"], s["quantity"], s["sales_price"]),
                         ("%sE%d" % (prefix, 12345 % N_EVENTS), 1 + 12345 % 4,
                          "%d.50" % (20 + 12345 % 80)))

        st = self.idle_status(tenant, cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(st["records_in"], N_EVENTS + N_BIG, st)
        self.assertEqual(st["records_rejected"], 0, st)
        self.assertTrue(st["cursor"]["done"])
        self.assertEqual(st["cursor"]["sha256"], sha)
        self.assertEqual(self.sshd.listdir(folder[1]), ["processed"])
        return resumed_after

    def test_crash_mid_import_reject_file(self):
        self.crash_and_resume("crash_rf", "reject_file")

    def test_crash_mid_import_skip_rows(self):
        self.crash_and_resume("crash_sr", "skip_rows")


# ---------------------------------------------------------------------------------------------


class SftpPullTests(SftpHub):
    TENANTS = ("pull",)

    def pull_connector(self, remote_dir, **settings):
        s = {"url": self.sshd.url("/%s/" % remote_dir), "username": self.sshd.user,
             "host_key_sha256": self.sshd.host_key_sha256, "settle_seconds": 0,
             "max_attempts": 2, "retry_initial_ms": 100}
        s.update(settings)
        return self.add_connector("pull", "sftp_pull", s, schedule="manual")

    def sessions(self):
        return self.sshd.log_text().count("Starting session:")

    def run_once(self, cid):
        """Run now and wait for the run's end. It has started once the sshd saw a new session
        (or, when no session can start, once last_run changed: whole seconds, so only for the
        first run); from then on any state but "running" is its committed outcome."""
        before = self.status("pull", cid)["last_run"]
        n = self.sessions()
        r = self.admin("POST", "/tenants/pull/connectors/%s/run" % cid)
        self.assertEqual(r.status, 202, r)

        def ended():
            s = self.status("pull", cid)
            started = self.sessions() > n or (s["last_run"] and s["last_run"] != before)
            return s if started and s["state"] != "running" else None
        return harness.wait_until(ended, ACK_WAIT, interval=0.05, what="the sftp_pull run")

    def test_password_and_host_key_move(self):
        host, remote = self.drop_folder("pw")
        self.put(remote, "events_pull.csv", events_csv(["PULL-E1"]))
        self.put(remote, "sales_pull.csv", SALES_HEADER + "\n" +
                 "PW-1,PULL-E1,ANON,2025-04-15T11:08:42Z,regular,2,89.00,EUR\n"
                 "PW-2,PULL-E1,ANON,2025-04-15T11:08:42Z,VIP,1,150.00,EUR\n")
        self.put(remote, "sales_pull_bad.csv", SALES_HEADER + "\n" +
                 "PW-3,NO-SUCH-EVENT,ANON,2025-04-15T11:08:42Z,regular,2,89.00,EUR\n")
        cid = self.pull_connector(remote, password=self.sshd.password, settle_seconds=1)
        st = self.run_once(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual((st["records_in"], st["records_rejected"]), (3, 1), st)
        self.assertIn("refused", st["last_warning"] or "", st)
        api = self.api("pull")
        self.assertEqual(api.get("sales", "PW-1").json["sales_price"], "89.00")
        self.assertEqual(api.get("sales", "PW-2").json["ticket_category"], "VIP")
        self.assertEqual(api.get("sales", "PW-3").status, 404)
        self.assertEqual(api.get("events", "PULL-E1").status, 200)
        self.assertEqual(self.sshd.listdir(remote), ["failed", "processed"])
        # the acknowledgements and the error list are uploaded beside the moved files
        self.assertEqual(self.sshd.listdir(remote + "/processed"),
                         ["events_pull.csv", "events_pull.csv.ack.json", "sales_pull.csv",
                          "sales_pull.csv.ack.json"])
        self.assertEqual(self.sshd.listdir(remote + "/failed"),
                         ["sales_pull_bad.csv", "sales_pull_bad.csv.ack.json",
                          "sales_pull_bad.csv.errors.csv"])
        ack = json.loads(self.read_remote(remote + "/processed/sales_pull.csv.ack.json"))
        self.assertEqual((ack["status"], ack["rows_read"], ack["records_stored"]),
                         ("processed", 2, 2), ack)
        errs = parse_errors_csv(
            self.read_remote(remote + "/failed/sales_pull_bad.csv.errors.csv").decode())
        self.assertEqual([(l, c) for l, c, _ in errs], [(2, "event_id")], errs)
        # and the hub keeps no copies once the server has them
        work = os.path.join(self.data, "connectors", cid, "incoming")
        left = [f for _, _, fs in os.walk(work) for f in fs]
        self.assertEqual(left, [], left)
        self.assertIn("Accepted password for %s" % self.sshd.user, self.sshd.log_text())
        self.assertNotIn(self.sshd.password, self.server_log())
        # a second run finds nothing new and stores nothing
        st = self.run_once(cid)
        self.assertEqual(st["last_run_stats"]["records_in"], 0, st)
        self.assertEqual(st["records_in"], 3)
        # the same name delivered again (and a name with spaces): both imported, and the
        # second sales_pull.csv is kept beside the first under a new name
        self.put(remote, "sales_pull.csv", SALES_HEADER + "\n" +
                 "PW-4,PULL-E1,ANON,2025-04-15T11:08:42Z,regular,1,10.00,EUR\n")
        self.put(remote, "Sales Export #2.csv", SALES_HEADER + "\n" +
                 "PW-5,PULL-E1,ANON,2025-04-15T11:08:42Z,regular,1,12.00,EUR\n")
        st = self.run_once(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(st["last_run_stats"]["records_in"], 2, st)
        self.assertEqual(api.get("sales", "PW-4").status, 200)
        self.assertEqual(api.get("sales", "PW-5").status, 200)
        names = self.sshd.listdir(remote + "/processed")
        self.assertIn("Sales Export #2.csv", names)
        self.assertIn("Sales Export #2.csv.ack.json", names)
        again = [n for n in names if re.fullmatch(r"sales_pull\.csv\.\d+", n)]
        self.assertEqual(len(again), 1, names)
        self.assertIn(again[0] + ".ack.json", names)
        self.assertEqual(self.sshd.listdir(remote), ["failed", "processed"])

    def test_private_key_and_delete(self):
        host, remote = self.drop_folder("key")
        self.put(remote, "events_key.csv", events_csv(["KEY-E1"]))
        self.put(remote, "sales_key.csv", SALES_HEADER + "\n" +
                 "KEY-1,KEY-E1,ANON,2025-04-15T11:08:42Z,comp,1,0.00,EUR\n")
        cid = self.pull_connector(remote, private_key_file=self.sshd.client_key,
                                  after_import="delete")
        st = self.run_once(cid)
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual(st["records_in"], 2, st)
        self.assertEqual(self.api("pull").get("sales", "KEY-1").json["ticket_category"], "comp")
        self.assertEqual(self.sshd.listdir(remote, all=True), [])
        # a refused file is deleted too, but its ack and error list are left in failed/
        self.put(remote, "sales_key_bad.csv", SALES_HEADER + "\n" +
                 "KEY-2,KEY-E1,ANON,2025-04-15T11:08:42Z,comp,1,0.00,XXX\n")
        st = self.run_once(cid)
        self.assertEqual(st["records_rejected"], 1, st)
        self.assertEqual(self.sshd.listdir(remote, all=True), ["failed"])
        self.assertEqual(self.sshd.listdir(remote + "/failed", all=True),
                         ["sales_key_bad.csv.ack.json", "sales_key_bad.csv.errors.csv"])
        errs = parse_errors_csv(
            self.read_remote(remote + "/failed/sales_key_bad.csv.errors.csv").decode())
        self.assertEqual([(l, c) for l, c, _ in errs], [(2, "currency")], errs)
        # refused again under the same name: both error lists are kept
        self.put(remote, "sales_key_bad.csv", SALES_HEADER + "\n" +
                 "KEY-3,KEY-E1,ANON,2025-04-15T11:08:42Z,comp,1,0.00,YYY\n")
        st = self.run_once(cid)
        self.assertEqual(st["records_rejected"], 2, st)
        names = self.sshd.listdir(remote + "/failed", all=True)
        self.assertEqual(len(names), 4, names)
        again = [n for n in names if re.fullmatch(r"sales_key_bad\.csv\.\d+\.errors\.csv", n)]
        self.assertEqual(len(again), 1, names)
        self.assertIn("Accepted publickey for %s" % self.sshd.user, self.sshd.log_text())

    def test_wrong_host_key(self):
        host, remote = self.drop_folder("hostkey")
        body = SALES_HEADER + "\nHK-1,KEY-E1,ANON,2025-04-15T11:08:42Z,comp,1,0.00,EUR\n"
        self.put(remote, "sales_hk.csv", body)
        import base64
        other = base64.b64encode(hashlib.sha256(b"not the server's key").digest()).decode()
        cid = self.pull_connector(remote, password=self.sshd.password,
                                  host_key_sha256=other.rstrip("="), max_attempts=1)
        st = self.run_once(cid)
        self.assertEqual(st["state"], "failed", st)
        self.assertRegex(st["last_error"] or "", r"(?i)fingerprint|host key", st)
        self.assertEqual(st["records_in"], 0)
        self.assertEqual(self.api("pull").get("sales", "HK-1").status, 404)
        self.assertEqual(self.sshd.listdir(remote), ["sales_hk.csv"])
        self.assertNotIn(self.sshd.password, st["last_error"])
        self.assertNotIn(self.sshd.password, self.server_log())


# ---------------------------------------------------------------------------------------------


class SftpPullCrashTests(SftpHub):
    """A crash between an sftp_pull file's import and its remote move and ack upload."""

    TENANTS = ("pull_crash",)

    @classmethod
    def start_server(cls, fault=None):
        old = os.environ.get("STAGEDOOR_FAULT")
        if fault:
            os.environ["STAGEDOOR_FAULT"] = fault
        else:
            os.environ.pop("STAGEDOOR_FAULT", None)
        try:
            super().start_server()
        finally:
            if old is None:
                os.environ.pop("STAGEDOOR_FAULT", None)
            else:
                os.environ["STAGEDOOR_FAULT"] = old

    def test_crash_before_remote_move_only_acknowledges(self):
        tenant = "pull_crash"
        host, remote = self.drop_folder("pcrash")
        self.put(remote, "events_pc.csv", events_csv(["PC-E1", "PC-E2"]))
        # the hub of this test dies at the hook: start one that has it
        self.server.stop_ok()
        type(self).start_server(fault="sftp_before_move")
        s = {"url": self.sshd.url("/%s/" % remote), "username": self.sshd.user,
             "password": self.sshd.password, "host_key_sha256": self.sshd.host_key_sha256,
             "settle_seconds": 0, "max_attempts": 2, "retry_initial_ms": 100}
        cid = self.add_connector(tenant, "sftp_pull", s, schedule="manual")
        r = self.admin("POST", "/tenants/%s/connectors/%s/run" % (tenant, cid))
        self.assertEqual(r.status, 202, r)
        rc = self.server.wait_exit(ACK_WAIT)
        self.assertEqual(rc, 137, self.server.diagnostics())
        # stored, not moved: the file is still in the remote folder, no ack there
        self.assertEqual(self.sshd.listdir(remote), ["events_pc.csv"])

        type(self).start_server()
        self.assertEqual(self.api(tenant).get("events", "PC-E2").status, 200)
        r = self.admin("POST", "/tenants/%s/connectors/%s/run" % (tenant, cid))
        self.assertEqual(r.status, 202, r)
        ack_name = "events_pc.csv.ack.json"
        harness.wait_until(lambda: ack_name in self.sshd.listdir(remote + "/processed")
                           if "processed" in self.sshd.listdir(remote) else False,
                           ACK_WAIT, interval=0.1, what="the ack on the server")
        st = harness.wait_until(
            lambda: (lambda s: s if s["state"] not in ("running", "never_run") and
                     (s.get("cursor") or {}).get("acked") else None)(self.status(tenant, cid)),
            ACK_WAIT, interval=0.05, what="the run's end")
        ack = json.loads(self.read_remote(remote + "/processed/" + ack_name))
        # only acknowledged: the first import's counts, nothing imported again
        self.assertEqual((ack["rows_read"], ack["records_stored"], ack["records_unchanged"]),
                         (2, 2, 0), ack)
        self.assertEqual(self.sshd.listdir(remote), ["processed"])
        self.assertEqual(self.sshd.listdir(remote + "/processed"),
                         ["events_pc.csv", ack_name])
        self.assertEqual(st["state"], "ok", st)
        self.assertEqual((st["records_in"], st["records_unchanged"]), (2, 0), st)
        # acknowledged now: the same file sent again is a new delivery, reported unchanged
        self.put(remote, "events_pc.csv", events_csv(["PC-E1", "PC-E2"]))
        r = self.admin("POST", "/tenants/%s/connectors/%s/run" % (tenant, cid))
        self.assertEqual(r.status, 202, r)
        again = harness.wait_until(
            lambda: [n for n in self.sshd.listdir(remote + "/processed")
                     if re.fullmatch(r"events_pc\.csv\.\d+\.ack\.json", n)],
            ACK_WAIT, interval=0.1, what="the second ack")
        ack2 = json.loads(self.read_remote(remote + "/processed/" + again[0]))
        self.assertEqual((ack2["records_stored"], ack2["records_unchanged"]), (0, 2), ack2)


if __name__ == "__main__":
    harness.main()
