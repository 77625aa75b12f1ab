"""Customers without an e-mail address (admitted from a vendor source: here S-360 contacts known
by phone only, or by their postal address only) pushed to the other vendors, end to end through
the real binary against the simulators:

  - Archtics (dedupes by e-mail; customer_add requires one): a customer without e-mail and
    without an account is delivered without any call, its facts {"skipped": "no e-mail"},
    never a dead letter; a customer with an account that loses its e-mail is still updated
    (customer_query + customer_update), the account keeping its e-mail;
  - Tradable Bits (fan_create needs an email or a phone): a customer known by phone becomes a
    fan with that phone; one with neither is delivered without any call, its facts
    {"skipped": "no e-mail or phone"}, where it was left out silently before."""

import os
import sys

import harness
from test_archtics_out import ZONE, settings_for as ats_settings
from test_tradablebits import settings_for as tb_settings

sys.path.insert(0, os.path.dirname(harness.HERE))      # tests/, for the sim packages
from sim.archtics import Simulator as AtsSim          # noqa: E402
from sim.s360 import Simulator as S360Sim             # noqa: E402
from sim.tradablebits import Simulator as TbSim       # noqa: E402

TS = harness.TIME_SCALE
WAIT = 90 * TS
CLIENT = "noemail_out"
PHONE = "+41 44 123 45 67"


class NoEmailOut(harness.ServerCase):
    TENANTS = {CLIENT: ["test"]}

    @classmethod
    def prepare(cls):
        harness.tenant_limits(cls.data, CLIENT, 100000, 100000)  # the test polls

    def admin(self, method, path, body=None):
        with open(os.path.join(self.data, "admin.token")) as f:
            token = f.read().strip()
        return harness.http(self.port, method, "/admin/v1/tenants/%s%s" % (CLIENT, path),
                            body=body, key=token)

    def add(self, body):
        r = self.admin("POST", "/connectors", body)
        self.assertStatus(r, 201)
        return r.json

    def items(self, cid):
        r = harness.http(self.port, "GET", "/v1/%s/deliveries?connector=%s" % (CLIENT, cid),
                         key=self.keys[(CLIENT, "test")])
        self.assertStatus(r, 200)
        return r.json["data"]

    def settled(self, cid, subject, n=1):
        """The n-th item of subject once every item of it has ended (newest first)."""
        def done():
            got = [d for d in self.items(cid) if d["subject"]["id"] == subject]
            ended = [d for d in got if d["state"] in ("delivered", "dead", "cancelled")]
            return got if len(got) >= n and len(ended) == len(got) else None
        return harness.wait_until(done, WAIT, interval=0.05,
                                  what="%d item(s) of %s settled" % (n, subject))

    def test_customers_without_email_to_archtics_and_tradablebits(self):
        key, dsn = "k-noemail", "venue_noemail"
        ats = AtsSim(api_keys={key: {dsn}}, dsn=dsn, venue_time_zone=ZONE, seed=9,
                     accounts=5, events=1, sales_per_event=1, plan_holders=0)
        ats.start()
        self.addCleanup(ats.stop)
        tb = TbSim(seed=9, fans=3, tickets=2).start()
        self.addCleanup(tb.stop)
        s360 = self.add({"type": "s360", "environment": "test",
                         "settings": {"institution": "myvenue", "api_base": "http://127.0.0.1:9",
                                      "event_city": "Zürich", "push_contacts": False,
                                      "source": "s360", "auth": "bearer", "auth_secret": "tok"}})
        ats_id = self.add({"type": "archtics", "environment": "test", "schedule": "manual",
                           "settings": ats_settings(ats, key, dsn, push_customers=True,
                                                    reconcile_days=0)})["connector_id"]
        tb_id = self.add({"type": "tradablebits", "environment": "test", "schedule": "manual",
                          "settings": tb_settings(tb, push_fans=True,
                                                  push_tickets=False)})["connector_id"]

        with S360Sim(seed=31, clock_speed=0) as sim:
            season = sim.season
            mail = season.contact(kind="person", email="mail.only@example.ch")
            phone = season.contact(kind="person", email="x@example.ch")
            phone["communicationMeans"] = [{"type": "PHONE", "value": PHONE, "isMain": True}]
            bare = season.contact(kind="person", email="y@example.ch")
            bare["communicationMeans"] = []
            sim.add_contacts([mail, phone, bare])
            streams = s360["inbound"]["streams"]
            sim.set_webhook("contacts", "http://127.0.0.1:%d%s" % (self.port, streams["contacts"]),
                            ("bearer", "tok"))
            sim.advance(minutes=15)
            self.assertEqual(sim.drops(), 0)

            subj = {k: "s360:" + c["contactNumber"]
                    for k, c in (("mail", mail), ("phone", phone), ("bare", bare))}

            # Archtics: no call for those without e-mail, never a dead letter
            for k in ("phone", "bare"):
                got = self.settled(ats_id, subj[k])
                self.assertEqual((got[0]["state"], got[0]["facts"]),
                                 ("delivered", {"skipped": "no e-mail"}), got)
                self.assertIsNone(got[0]["remote_ref"], got)
            added = self.settled(ats_id, subj["mail"])[0]
            self.assertEqual((added["state"], added["facts"]["kind"]), ("delivered", "add"), added)
            adds = ats.record("customer_add", kind="command")
            self.assertEqual(len(adds), 1, adds)
            acct = int(added["remote_ref"])
            self.assertEqual(ats.world.accounts[acct]["email"], "mail.only@example.ch")

            # Tradable Bits: the phone makes the fan; neither, no call and the skip counted
            got = self.settled(tb_id, subj["phone"])
            self.assertEqual((got[0]["state"], got[0]["facts"]["kind"]), ("delivered", "create"),
                             got)
            fan = tb.fan(fan_id=int(got[0]["remote_ref"]))
            self.assertEqual((fan["phone"], fan["email"]), (PHONE, None), fan)
            got = self.settled(tb_id, subj["bare"])
            self.assertEqual((got[0]["state"], got[0]["facts"]),
                             ("delivered", {"skipped": "no e-mail or phone"}), got)
            self.assertIsNone(got[0]["remote_ref"], got)
            self.settled(tb_id, subj["mail"])
            creates = tb.calls("fan_create")
            self.assertEqual(sorted((c.form.get("phone") or c.form.get("email"))[-1]
                                    for c in creates), sorted([PHONE, "mail.only@example.ch"]),
                             creates)

            # the customer with an Archtics account loses its e-mail: still updated, the
            # account keeps its e-mail
            ats.clear_record()
            sim.change_contact(mail["contactNumber"], email=None, firstName="Mara")
            sim.advance(minutes=15)
            self.assertEqual(sim.drops(), 0)
            upd = self.settled(ats_id, subj["mail"], 2)
            upd = [d for d in upd if d["delivery_id"] != added["delivery_id"]][0]
            self.assertEqual((upd["state"], upd["facts"]["kind"]), ("delivered", "update"), upd)
            cmds = [c.cmd for c in ats.record(kind="command") if c.cmd.startswith("customer_")]
            self.assertEqual(cmds, ["customer_query", "customer_update"])
            self.assertEqual((ats.world.accounts[acct]["email"],
                              ats.world.accounts[acct]["name_first"]),
                             ("mail.only@example.ch", "Mara"))


if __name__ == "__main__":
    harness.main()
