"""S-360 contacts out for customers of OTHER sources, end to end through the real binary against
the S-360 simulator (tests/sim/s360), with create_contacts off (the default):

  - a customer of another source (here the ingest API, as a CSV or another CRM would send it)
    linked by the tenant's profile link rule (e-mail) to an S-360 contact the instance received
    updates THAT contact when it changes (getContactData, then saveIndividualContactData with its
    contactNumber), and nothing else: no contact is created, its other data stay, and S-360's
    two street lines are kept when the street did not change or split back when only the first
    line did;
  - an unlinked customer causes no item and no call at all;
  - a profile holding several S-360 contacts (people sharing an address) overwrites none;
  - a customer's opt-out goes to S-360's opt-in authorizations (optin_authorizations), and a
    later "not opted out" never turns S-360's opt-out back into an opt-in;
  - no stale overwrite by S-360's own version: an operator's change in S-360 that stagedoor has
    not received yet (lastUpdateDate past the remote_version stored) is not overwritten; once its
    webhook came in, the next local change goes out.

store suite: both backends"""

import os
import sys
import time
import unittest

import harness
from test_s360_out import S360OutBase

sys.path.insert(0, os.path.join(harness.REPO, "tests"))

TS = harness.TIME_SCALE


class LinkedByProfile(S360OutBase):
    n = 0

    def setUp(self):
        if not hasattr(LinkedByProfile, "cid"):
            LinkedByProfile.cid, LinkedByProfile.door = self.add_connector(
                optin_authorizations="NEWSLETTER,PARTNERS")
            self.sim.set_webhook("contacts", self.door)

    def contact(self, email, street2=None, **person):
        """One person made in S-360 (an hour ago) and received through the contact webhook."""
        LinkedByProfile.n += 1
        c = self.sim.season.contact(time.time() - 3600, "person", email=email)
        c["individualContact"].update(person)
        if street2:
            c["addresses"][0]["street2"] = street2
        c["communicationMeans"].append({"type": "PHONE", "value": "+41 44 555 00 %02d"
                                        % LinkedByProfile.n, "isMain": False})
        self.sim.add_contacts([c])
        self.sim.run_now()
        self.assertEqual(self.sim.drops(), 0)
        num = c["contactNumber"]
        harness.wait_until(lambda: self.stored(num), 20 * TS, what="contact %s received" % num)
        return num

    def stored(self, cid, source="s360"):
        r = harness.http(self.port, "GET", "/v1/%s/customers/%s?source=%s"
                         % ("s360o", cid, source), key=self.key)
        return r.json if r.status == 200 else None

    def settled_for(self, subject, n=1):
        """Wait until the instance has n items of subject, all ended; returns them."""
        def done():
            got = [d for d in self.items(self.cid) if d["subject"]["id"] == subject]
            ended = [d for d in got if d["state"] in ("delivered", "dead", "cancelled")]
            return got if len(got) >= n and len(ended) == len(got) else None
        return harness.wait_until(done, 30 * TS, interval=0.1,
                                  what="%d items of %s settled" % (n, subject))

    def test_1_linked_customer_updates_that_contact_only(self):
        email = "anna.link@example.ch"
        num = self.contact(email, street2="c/o Muster", firstName="Anna", lastName="Link")
        s1 = self.sim.contacts[num]["addresses"][0]["street1"]
        self.sim.clear_calls()
        contacts_before = len(self.sim.contacts)
        # the CSV's customer: same person by the link rule, a new post code, the same street
        self.ingest([harness.customer("csv-anna", email=email, first_name="Anna",
                                      last_name="Link", street=s1 + ", c/o Muster",
                                      post_code="8004")])
        mine = self.settled_for("webhook:csv-anna")
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["state"], "delivered", mine)
        self.assertEqual(mine[0]["facts"].get("kind"), "update", mine)
        self.assertEqual(mine[0]["facts"].get("linked"), "profile", mine)
        self.assertEqual(mine[0]["facts"].get("contact_number"), num, mine)
        c = self.sim.contacts[num]
        addr = c["addresses"][0]
        self.assertEqual((addr["street1"], addr.get("street2"), addr["zipCode"]),
                         (s1, "c/o Muster", "8004"))
        self.assertIn("+41 44 555 00 %02d" % LinkedByProfile.n,
                      [m["value"] for m in c["communicationMeans"]])
        self.assertEqual(len(self.sim.contacts), contacts_before)  # nothing created
        self.assertEqual([x.json.get("contactNumber") for x in self.saves()], [num])

        # the first line changes, the second still ends the street: split back there
        self.ingest([harness.customer("csv-anna", email=email, first_name="Anna",
                                      last_name="Link", street="Neugasse 5, c/o Muster",
                                      post_code="8004")])
        harness.wait_until(lambda: len(self.saves()) == 2, 30 * TS, what="second update")
        addr = self.sim.contacts[num]["addresses"][0]
        self.assertEqual((addr["street1"], addr.get("street2")), ("Neugasse 5", "c/o Muster"))
        self.assertEqual(len(self.sim.contacts), contacts_before)

    def test_2_unlinked_customer_no_item_no_call(self):
        num = self.contact("someone.else@example.ch", lastName="Else")
        self.sim.clear_calls()
        before = len(self.items(self.cid))
        self.ingest([harness.customer("csv-%02d" % i, email="nobody%02d@example.org" % i,
                                      last_name="Nobody") for i in range(20)])
        # a linked customer after them: once its item is done, theirs would exist too
        self.ingest([harness.customer("csv-marker", email="someone.else@example.ch",
                                      last_name="Else")])
        self.settled_for("webhook:csv-marker")
        self.assertEqual(len(self.items(self.cid)), before + 1)
        calls = [c for c in self.sim.calls() if c.rpc not in (None, "auth")]
        self.assertEqual(sorted({c.rpc for c in calls}),
                         ["getContactData", "saveIndividualContactData"])
        self.assertTrue(all(c.json.get("contactNumber") == num for c in calls), calls)

    def test_3_several_contacts_in_the_profile_none_overwritten(self):
        email = "family.link@example.ch"
        a = self.contact(email, firstName="Eva", lastName="Family")
        b = self.contact(email, firstName="Max", lastName="Family")
        self.sim.clear_calls()
        self.ingest([harness.customer("csv-family", email=email, last_name="Family",
                                      first_name="Someone")])
        mine = self.settled_for("webhook:csv-family")
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["facts"].get("skipped"), "linked to several contacts", mine)
        self.assertEqual(mine[0]["facts"].get("linked_contacts"), 2, mine)
        self.assertEqual([c for c in self.sim.calls() if c.rpc not in (None, "auth")], [])
        self.assertEqual(self.sim.contacts[a]["individualContact"]["firstName"], "Eva")
        self.assertEqual(self.sim.contacts[b]["individualContact"]["firstName"], "Max")

    def test_3b_linked_to_a_company_skipped_not_dead(self):
        # a company (structure contact) shares its address with a buyer of another source:
        # saveIndividualContactData writes persons only, so the item is a no-op with a fact
        email = "buyer.company@example.ch"
        co = self.sim.season.contact(time.time() - 3600, "company", email=email)
        self.sim.add_contacts([co])
        self.sim.run_now()
        self.assertEqual(self.sim.drops(), 0)
        num = co["contactNumber"]
        harness.wait_until(lambda: self.stored(num), 20 * TS, what="company %s received" % num)
        self.sim.clear_calls()
        self.ingest([harness.customer("csv-buyer", email=email, last_name="Buyer")])
        mine = self.settled_for("webhook:csv-buyer")
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["state"], "delivered", mine)
        self.assertEqual(mine[0]["facts"].get("skipped"), "linked to a company", mine)
        self.assertEqual(mine[0]["facts"].get("contact_number"), num, mine)
        rpcs = [c.rpc for c in self.sim.calls() if c.rpc not in (None, "auth")]
        self.assertEqual(rpcs, ["getContactData"])   # read, never written
        self.assertNotIn("individualContact", self.sim.contacts[num])

    def test_4_opt_out_flows_out_and_is_never_undone(self):
        email = "olga.optout@example.ch"
        num = self.contact(email, lastName="Optout")
        with self.sim._cond:
            self.sim.contacts[num]["authorizations"] = [
                {"authorizationType": "NEWSLETTER", "value": True},
                {"authorizationType": "THIRD_PARTY", "value": True}]
        self.sim.clear_calls()
        self.ingest([harness.customer("csv-olga", email=email, last_name="Optout",
                                      ad_opt_out=True)])
        harness.wait_until(lambda: len(self.saves(num)) == 1, 30 * TS, what="opt-out save")
        auths = {a["authorizationType"]: a["value"]
                 for a in self.sim.contacts[num]["authorizations"]}
        self.assertEqual(auths, {"NEWSLETTER": False, "THIRD_PARTY": True, "PARTNERS": False})

        # the CSV says "not opted out" later: S-360's opt-out stays (opt-out wins everywhere)
        self.ingest([harness.customer("csv-olga", email=email, last_name="Optout",
                                      ad_opt_out=False, post_code="3000")])
        harness.wait_until(lambda: len(self.saves(num)) == 2, 30 * TS, what="second save")
        self.assertNotIn("authorizations", self.saves(num)[-1].json)
        auths = {a["authorizationType"]: a["value"]
                 for a in self.sim.contacts[num]["authorizations"]}
        self.assertEqual(auths["NEWSLETTER"], False)
        self.assertEqual(self.sim.contacts[num]["addresses"][0]["zipCode"], "3000")

    def test_5_stale_rule_by_remote_version(self):
        email = "stan.stale@example.ch"
        num = self.contact(email, firstName="Stan", lastName="Stale")
        # an operator edits the contact in S-360; its webhook has not come in yet
        self.sim.change_contact(num, push=False, firstName="Operator")
        self.sim.clear_calls()
        self.ingest([harness.customer("csv-stan", email=email, last_name="Stale",
                                      first_name="Local")])
        mine = self.settled_for("webhook:csv-stan")
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["facts"].get("skipped"), "remote newer", mine)
        self.assertEqual(mine[0]["facts"].get("rule"), "remote_version", mine)
        self.assertEqual(self.saves(num), [])
        self.assertEqual(self.sim.contacts[num]["individualContact"]["firstName"], "Operator")

        # the operator's change comes in (its webhook), then the next local change goes out
        self.sim.change_contact(num, firstName="Operator")
        self.sim.run_now()
        harness.wait_until(lambda: (self.stored(num) or {}).get("first_name") == "Operator",
                           20 * TS, what="the operator's change received")
        self.ingest([harness.customer("csv-stan", email=email, last_name="Stale",
                                      first_name="Later")])
        harness.wait_until(lambda: len(self.saves(num)) == 1, 30 * TS, what="the later change")
        self.assertEqual(self.sim.contacts[num]["individualContact"]["firstName"], "Later")


if __name__ == "__main__":
    harness.main()
