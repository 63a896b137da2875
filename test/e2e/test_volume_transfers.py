"""End-to-end: volume transfers through the real `cinder` CLI and raw HTTP.

Goal: prove that an unmodified client can give a volume to another project (transfer-create,
transfer-list, transfer-show, transfer-accept by the other project, transfer-delete), that every
transfer body matches Tempest's response schemas at the microversions the server negotiates, and
that two accepts of one transfer fired at once never both win (one 202, the other 404, the volume
in the winner's project).

Method: one clinkerd per test (all roles, SQLite, temp dir), noauth: the token names the user
and project, so the taker is simply PROJECT_B. The CLI runs at its default microversion (it
negotiates the server's highest). Schemas come from tempest.lib.api_schema.response.volume and
are checked with Tempest's own validator (Draft 4 with its format checkers); the schema checks
skip with a reason when Tempest is not importable. The race uses Daemon.prepare(): both accepts
are sent but for their last byte, then both last bytes go out back to back.
"""

import sys
import threading
import unittest
import uuid

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

try:
    from tempest.lib.api_schema.response.volume import transfers as schema_30
    from tempest.lib.api_schema.response.volume.v3_55 import transfers as schema_355
    from tempest.lib.api_schema.response.volume.v3_57 import transfers as schema_357
    from tempest.lib.common import jsonschema_validator
except ImportError as e:  # pragma: no cover - depends on the machine
    TEMPEST_MISSING = "tempest is not importable (%s)" % e
else:
    TEMPEST_MISSING = None

# The CLI's default: major version only, so cinderclient negotiates the highest both sides have.
CLI_DEFAULT_MICROVERSION = "3"


def server_max_microversion(daemon):
    current = daemon.request("GET", "/v3/", microversion=None).json()["versions"][0]
    major, minor = current["version"].split(".")
    return (int(major), int(minor))


class VolumeTransfersTest(h.DaemonTestCase):

    def available_volume(self, name="gift"):
        volume = self.daemon.create_volume(size=1, name=name)
        self.daemon.wait_for_status(volume["id"], "available")
        return volume["id"]

    def validate(self, schema, resp):
        self.assertIn(resp.status, schema["status_code"], resp)
        if "response_body" in schema:
            validator = jsonschema_validator.JSONSCHEMA_VALIDATOR(
                schema["response_body"], format_checker=jsonschema_validator.FORMAT_CHECKER)
            errors = sorted(str(err) for err in validator.iter_errors(resp.json()))
            self.assertEqual(errors, [], resp)

    def test_cli_create_list_show_accept_delete(self):
        d = self.daemon
        volume_id = self.available_volume()

        created = d.cinder("transfer-create", volume_id, "--name", "to-b",
                           microversion=CLI_DEFAULT_MICROVERSION).properties()
        transfer_id = created["id"]
        self.assertEqual(created["volume_id"], volume_id, created)
        self.assertEqual(created["name"], "to-b", created)
        self.assertEqual(len(created["auth_key"]), 16, created)
        self.assertEqual(d.show_volume(volume_id)["status"], "awaiting-transfer")

        listed = d.cinder("transfer-list", microversion=CLI_DEFAULT_MICROVERSION).rows()
        self.assertEqual([(r["ID"], r["Volume ID"], r["Name"]) for r in listed],
                         [(transfer_id, volume_id, "to-b")], listed)
        shown = d.cinder("transfer-show", transfer_id,
                         microversion=CLI_DEFAULT_MICROVERSION).properties()
        self.assertEqual(shown["id"], transfer_id, shown)
        self.assertNotIn("auth_key", shown, shown)

        wrong = d.cinder("transfer-accept", transfer_id, "0" * 16, project=h.PROJECT_B,
                         user="taker", microversion=CLI_DEFAULT_MICROVERSION, check=False)
        self.assertNotEqual(wrong.returncode, 0, wrong)
        accepted = d.cinder("transfer-accept", transfer_id, created["auth_key"],
                            project=h.PROJECT_B, user="taker",
                            microversion=CLI_DEFAULT_MICROVERSION).properties()
        self.assertEqual(accepted["id"], transfer_id, accepted)
        self.assertEqual(accepted["volume_id"], volume_id, accepted)

        taken = d.show_volume(volume_id, project=h.PROJECT_B)
        self.assertEqual(taken["status"], "available", taken)
        self.assertEqual(taken["user_id"], "taker", taken)
        self.assertEqual(taken["os-vol-tenant-attr:tenant_id"], h.PROJECT_B, taken)
        self.assertEqual(d.cinder("transfer-list", microversion=CLI_DEFAULT_MICROVERSION).rows(),
                         [])

        # A second volume offered, then taken back.
        other_id = self.available_volume("kept")
        offered = d.cinder("transfer-create", other_id,
                           microversion=CLI_DEFAULT_MICROVERSION).properties()
        d.cinder("transfer-delete", offered["id"], microversion=CLI_DEFAULT_MICROVERSION)
        self.assertEqual(d.show_volume(other_id)["status"], "available")
        gone = d.cinder("transfer-show", offered["id"], microversion=CLI_DEFAULT_MICROVERSION,
                        check=False)
        self.assertNotEqual(gone.returncode, 0, gone)

    def test_refusals(self):
        d = self.daemon
        volume_id = self.available_volume()
        resp = d.request("POST", "os-volume-transfer", body={"transfer": {"volume_id": volume_id}})
        self.assertEqual(resp.status, 202, resp)
        # Not available any more.
        again = d.request("POST", "os-volume-transfer", body={"transfer": {"volume_id": volume_id}})
        self.assertCinderError(again, 400, "badRequest")
        # Nor deletable while offered.
        self.assertCinderError(d.request("DELETE", "volumes/%s" % volume_id), 400, "badRequest")
        # (noauth makes every caller an admin, who sees every project: project scoping is left
        # to the unit tests.)
        transfer_id = resp.json()["transfer"]["id"]
        bad_key = d.request("POST", "os-volume-transfer/%s/accept" % transfer_id,
                            body={"accept": {"auth_key": "nope"}}, project=h.PROJECT_B)
        self.assertCinderError(bad_key, 400, "badRequest")
        self.assertCinderError(
            d.request("POST", "os-volume-transfer",
                      body={"transfer": {"volume_id": str(uuid.uuid4())}}), 404, "itemNotFound")
        self.assertCinderError(
            d.request("POST", "os-volume-transfer",
                      body={"transfer": {"volume_id": volume_id, "no_snapshots": True}}), 400,
            "badRequest")

    def check_schemas(self, microversion, url, schema):
        d = self.daemon
        volume_id = self.available_volume()
        created = d.request("POST", url, body={"transfer": {"volume_id": volume_id}},
                            microversion=microversion)
        self.validate(schema.create_volume_transfer, created)
        transfer = created.json()["transfer"]
        self.validate(schema.show_volume_transfer,
                      d.request("GET", "%s/%s" % (url, transfer["id"]), microversion=microversion))
        self.validate(schema.list_volume_transfers_no_detail,
                      d.request("GET", url, microversion=microversion))
        self.validate(schema.list_volume_transfers_with_detail,
                      d.request("GET", url + "/detail", microversion=microversion))
        accepted = d.request("POST", "%s/%s/accept" % (url, transfer["id"]),
                             body={"accept": {"auth_key": transfer["auth_key"]}},
                             project=h.PROJECT_B, microversion=microversion)
        self.validate(schema.accept_volume_transfer, accepted)
        # Delete: a new transfer of the (now PROJECT_B's) volume, by PROJECT_B.
        second = d.request("POST", url, body={"transfer": {"volume_id": volume_id}},
                           project=h.PROJECT_B, microversion=microversion)
        self.validate(schema.create_volume_transfer, second)
        self.validate(schema.delete_volume_transfer,
                      d.request("DELETE", "%s/%s" % (url, second.json()["transfer"]["id"]),
                                project=h.PROJECT_B, microversion=microversion))

    @unittest.skipIf(TEMPEST_MISSING, TEMPEST_MISSING or "")
    def test_bodies_match_tempest_schemas_30(self):
        for url in ("os-volume-transfer", "volume-transfers"):
            with self.subTest(url=url):
                self.check_schemas("3.0", url, schema_30)

    @unittest.skipIf(TEMPEST_MISSING, TEMPEST_MISSING or "")
    def test_bodies_match_tempest_schemas_355_357(self):
        highest = server_max_microversion(self.daemon)
        if highest < (3, 57):
            self.skipTest("server's highest microversion is %d.%d: the 3.55 and 3.57 views "
                          "cannot be negotiated (the unit tests check them)" % highest)
        self.check_schemas("3.55", "volume-transfers", schema_355)
        self.check_schemas("3.57", "volume-transfers", schema_357)

    def test_two_accepts_at_once_never_both_win(self):
        d = self.daemon
        takers = [h.PROJECT_B, "c0ffee00c0ffee00c0ffee00c0ffee00"]
        for round_number in range(5):
            volume_id = self.available_volume("race-%d" % round_number)
            created = d.request("POST", "os-volume-transfer",
                                body={"transfer": {"volume_id": volume_id}})
            self.assertEqual(created.status, 202, created)
            transfer = created.json()["transfer"]
            pending = []
            try:
                for project in takers:
                    pending.append(d.prepare("POST",
                                             "os-volume-transfer/%s/accept" % transfer["id"],
                                             body={"accept": {"auth_key": transfer["auth_key"]}},
                                             project=project, user="taker-" + project[:4]))
            except BaseException:
                for p in pending:
                    p.close()
                raise
            answers = [None] * len(pending)

            def fire(i):
                answers[i] = pending[i].fire()

            threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(pending))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = sorted(a.status for a in answers)
            self.assertEqual(statuses, [202, 404], answers)
            winner = takers[[a.status for a in answers].index(202)]
            loser = answers[[a.status for a in answers].index(404)]
            self.assertCinderError(loser, 404, "itemNotFound")
            taken = d.show_volume(volume_id, project=winner)
            self.assertEqual(taken["status"], "available", taken)
            self.assertEqual(taken["os-vol-tenant-attr:tenant_id"], winner, taken)
            self.assertEqual(taken["user_id"], "taker-" + winner[:4], taken)


if __name__ == "__main__":
    h.main()
