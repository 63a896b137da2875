"""End-to-end: every volume, snapshot and group answer matches Tempest's response schema for the
microversion it was asked at.

Goal: Tempest's response schemas (`tempest/lib/api_schema/response/volume/`, with
`additionalProperties: false`) are the contract for our bodies. Tempest's own suite (make
tempest) mostly speaks 3.0; this file asks every microversion whose schema differs (3.0, 3.44,
3.61, 3.63, 3.64, 3.65, 3.69 and our maximum) for create, show, list, list detail and update of a
volume and a snapshot, and checks status code and body against the schema Tempest uses there,
with Tempest's own validator and format checker (dates, UUIDs).

Method: one daemon (noauth, so the caller is an admin and the admin-only attributes are there
too); each case creates what it reads. Skipped, with the reason, when Tempest (Debian package
`tempest`, installed by scripts/setup.sh) is not importable.
"""

import sys
import unittest

sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

try:
    from tempest.lib.api_schema.response.volume import group_snapshots as group_snapshot_schemas
    from tempest.lib.api_schema.response.volume import group_types as group_type_schemas
    from tempest.lib.api_schema.response.volume import groups as group_schemas
    from tempest.lib.api_schema.response.volume import snapshots as snapshot_schemas
    from tempest.lib.api_schema.response.volume import volumes as volumes_3_0
    from tempest.lib.api_schema.response.volume.v3_61 import volumes as volumes_3_61
    from tempest.lib.api_schema.response.volume.v3_63 import volumes as volumes_3_63
    from tempest.lib.api_schema.response.volume.v3_64 import volumes as volumes_3_64
    from tempest.lib.api_schema.response.volume.v3_65 import volumes as volumes_3_65
    from tempest.lib.api_schema.response.volume.v3_69 import volumes as volumes_3_69
    from tempest.lib.common import jsonschema_validator
    TEMPEST_MISSING = None
except ImportError as error:  # pragma: no cover - depends on the machine
    TEMPEST_MISSING = "Tempest is not importable (Debian package tempest): %s" % error

WAIT_S = 30.0
MAX_MICROVERSION = "3.70"


def volume_schemas(microversion):
    """The module of volume schemas Tempest validates `microversion` with."""
    minor = int(microversion.split(".")[1])
    for first, module in ((69, "volumes_3_69"), (65, "volumes_3_65"), (64, "volumes_3_64"),
                          (63, "volumes_3_63"), (61, "volumes_3_61")):
        if minor >= first:
            return globals()[module]
    return volumes_3_0


@unittest.skipIf(TEMPEST_MISSING, TEMPEST_MISSING)
class ResponseSchemaTest(h.DaemonTestCase):

    def check(self, resp, schema):
        """Status code and body as Tempest's rest_client.validate_response checks them."""
        self.assertIn(resp.status, schema["status_code"], resp)
        if "response_body" not in schema:
            return
        validator = jsonschema_validator.JSONSCHEMA_VALIDATOR(
            schema["response_body"], format_checker=jsonschema_validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(resp.json()), key=str)
        self.assertEqual([], ["%s at %s" % (e.message, list(e.path)) for e in errors], resp)

    def available_volume(self, microversion):
        resp = self.daemon.request("POST", "volumes",
                                   body={"volume": {"size": 1, "name": "schema"}},
                                   microversion=microversion)
        self.check(resp, volume_schemas(microversion).create_volume)
        volume_id = resp.json()["volume"]["id"]

        def available():
            shown = self.daemon.request("GET", "volumes/" + volume_id,
                                        microversion=microversion)
            return shown.json()["volume"]["status"] == "available"

        h.wait_for(available, WAIT_S, "volume %s available" % volume_id)
        return volume_id

    def test_volume_answers_match_the_schema_of_each_microversion(self):
        for microversion in ("3.0", "3.44", "3.45", "3.48", "3.61", "3.63", "3.64", "3.65",
                             "3.69", MAX_MICROVERSION):
            with self.subTest(microversion=microversion):
                schemas = volume_schemas(microversion)
                volume_id = self.available_volume(microversion)
                self.check(
                    self.daemon.request("GET", "volumes/" + volume_id,
                                        microversion=microversion), schemas.show_volume)
                self.check(self.daemon.request("GET", "volumes", microversion=microversion),
                           schemas.list_volumes_no_detail)
                self.check(
                    self.daemon.request("GET", "volumes/detail", microversion=microversion),
                    schemas.list_volumes_with_detail)
                self.check(
                    self.daemon.request("PUT", "volumes/" + volume_id,
                                        body={"volume": {"name": "renamed"}},
                                        microversion=microversion), schemas.update_volume)

    def test_create_and_update_answers_carry_no_extended_attributes(self):
        # Cinder adds its extended attributes (tenant, host, migration status) to GET answers
        # only; Tempest's create and update schemas refuse them.
        created = self.daemon.request("POST", "volumes", body={"volume": {"size": 1}},
                                      microversion="3.0").json()["volume"]
        for key in ("os-vol-tenant-attr:tenant_id", "os-vol-host-attr:host",
                    "os-vol-mig-status-attr:migstat", "os-vol-mig-status-attr:name_id"):
            self.assertNotIn(key, created)
        shown = self.daemon.request("GET", "volumes/" + created["id"],
                                    microversion="3.0").json()["volume"]
        self.assertEqual(shown["os-vol-tenant-attr:tenant_id"], self.daemon.project)
        self.assertIn("os-vol-host-attr:host", shown)  # The caller is an admin (noauth).

    def test_volume_count_from_3_45(self):
        for _ in range(3):
            self.daemon.create_volume()
        counted = self.daemon.request("GET", "volumes?with_count=true&limit=1",
                                      microversion="3.45").json()
        self.assertEqual(counted["count"], 3)
        self.assertEqual(len(counted["volumes"]), 1)
        below = self.daemon.request("GET", "volumes?with_count=true", microversion="3.44")
        self.assertNotIn("count", below.json())

    def test_snapshot_answers_match_the_schema(self):
        # Tempest has one set of snapshot schemas, 3.0's. Above it, Cinder adds
        # group_snapshot_id (3.14), user_id (3.41) and consumes_quota (3.65): checked present,
        # then the rest of the body against the 3.0 schema.
        added_at = (("3.14", "group_snapshot_id"), ("3.41", "user_id"),
                    ("3.65", "consumes_quota"))

        def minor(version):
            return int(version.split(".")[1])

        for microversion in ("3.0", "3.14", "3.41", "3.65", MAX_MICROVERSION):
            with self.subTest(microversion=microversion):
                added = [key for since, key in added_at if minor(microversion) >= minor(since)]

                def check(resp, schema, summary=False):
                    body = resp.json()
                    items = body.get("snapshots", [body.get("snapshot")])
                    for item in items:
                        for key in added:
                            if not summary:  # Cinder's summary items never carry them.
                                self.assertIn(key, item, resp)
                            item.pop(key, None)
                    resp.body = h.json.dumps(body).encode("utf-8")
                    self.check(resp, schema)

                volume_id = self.available_volume(microversion)
                created = self.daemon.request(
                    "POST", "snapshots",
                    body={"snapshot": {"volume_id": volume_id, "name": "s", "force": None}},
                    microversion=microversion)
                check(created, snapshot_schemas.create_snapshot)
                snapshot_id = created.json()["snapshot"]["id"]
                check(
                    self.daemon.request("GET", "snapshots/" + snapshot_id,
                                        microversion=microversion),
                    snapshot_schemas.show_snapshot)
                check(self.daemon.request("GET", "snapshots", microversion=microversion),
                      snapshot_schemas.list_snapshots_no_detail, summary=True)
                check(self.daemon.request("GET", "snapshots/detail", microversion=microversion),
                      snapshot_schemas.list_snapshots_with_detail)
                check(
                    self.daemon.request("PUT", "snapshots/" + snapshot_id,
                                        body={"snapshot": {"name": "renamed"}},
                                        microversion=microversion),
                    snapshot_schemas.update_snapshot)

    def test_group_answers_match_the_schema(self):
        # Tempest's group schemas hold from 3.11 (group types), 3.13 (groups) and 3.14 (group
        # snapshots, group_snapshot_id and source_group_id) up to 3.37: above, Cinder adds
        # replication_status (allowed) and, for admins from 3.58, project_id (not in them).
        d = self.daemon
        for microversion in ("3.14", "3.20", "3.37"):
            with self.subTest(microversion=microversion):
                def request(method, path, body=None):
                    return d.request(method, path, body=body, microversion=microversion)

                created = request("POST", "group_types",
                                  {"group_type": {"name": "gt-" + microversion,
                                                  "group_specs": {"k": "v"}}})
                self.check(created, group_type_schemas.create_group_type)
                type_id = created.json()["group_type"]["id"]
                self.check(request("GET", "group_types/" + type_id),
                           group_type_schemas.show_group_type)
                self.check(request("GET", "group_types"), group_type_schemas.list_group_types)
                self.check(request("PUT", "group_types/" + type_id,
                                   {"group_type": {"description": "d"}}),
                           group_type_schemas.update_group_type)
                self.check(request("GET", "group_types/%s/group_specs" % type_id),
                           group_type_schemas.list_group_type_specs)
                self.check(request("POST", "group_types/%s/group_specs" % type_id,
                                   {"group_specs": {"a": "b"}}),
                           group_type_schemas.create_or_update_group_type_specs)
                self.check(request("GET", "group_types/%s/group_specs/a" % type_id),
                           group_type_schemas.show_group_type_specs_item)
                self.check(request("PUT", "group_types/%s/group_specs/a" % type_id, {"a": "c"}),
                           group_type_schemas.update_group_type_specs_item)
                self.check(request("DELETE", "group_types/%s/group_specs/a" % type_id),
                           group_type_schemas.delete_group_type_specs_item)
                volume_type = d.request("GET", "types/default").json()["volume_type"]["id"]

                created = request("POST", "groups",
                                  {"group": {"group_type": type_id, "volume_types": [volume_type],
                                             "name": "g"}})
                self.check(created, group_schemas.create_group)
                group_id = created.json()["group"]["id"]
                volume = request("POST", "volumes",
                                 {"volume": {"size": 1, "volume_type": volume_type,
                                             "group_id": group_id}}).json()["volume"]
                h.wait_for(lambda: d.show_volume(volume["id"])["status"] == "available", WAIT_S,
                           "volume %s available" % volume["id"])
                self.check(request("GET", "groups/" + group_id), group_schemas.show_group)
                self.check(request("GET", "groups"), group_schemas.list_groups_no_detail)
                self.check(request("GET", "groups/detail"), group_schemas.list_groups_with_detail)
                self.check(request("PUT", "groups/" + group_id, {"group": {"name": "h"}}),
                           group_schemas.update_group)

                created = request("POST", "group_snapshots",
                                  {"group_snapshot": {"group_id": group_id, "name": "gs"}})
                self.check(created, group_snapshot_schemas.create_group_snapshot)
                snapshot_id = created.json()["group_snapshot"]["id"]
                h.wait_for(
                    lambda: request("GET", "group_snapshots/" + snapshot_id).json()
                    ["group_snapshot"]["status"] == "available", WAIT_S,
                    "group snapshot %s available" % snapshot_id)
                self.check(request("GET", "group_snapshots/" + snapshot_id),
                           group_snapshot_schemas.show_group_snapshot)
                self.check(request("GET", "group_snapshots"),
                           group_snapshot_schemas.list_group_snapshots_no_detail)
                self.check(request("GET", "group_snapshots/detail"),
                           group_snapshot_schemas.list_group_snapshots_with_detail)
                created = request("POST", "groups/action",
                                  {"create-from-src": {"group_snapshot_id": snapshot_id,
                                                       "name": "copy"}})
                self.check(created, group_schemas.create_group_from_source)
                copy_id = created.json()["group"]["id"]
                h.wait_for(
                    lambda: request("GET", "groups/" + copy_id).json()["group"]["status"] ==
                    "available", WAIT_S, "group %s available" % copy_id)
                if microversion >= "3.19":
                    self.check(request("POST", "group_snapshots/%s/action" % snapshot_id,
                                       {"reset_status": {"status": "available"}}),
                               group_snapshot_schemas.reset_group_snapshot_status)
                if microversion >= "3.20":
                    self.check(request("POST", "groups/%s/action" % group_id,
                                       {"reset_status": {"status": "available"}}),
                               group_schemas.reset_group_status)
                self.check(request("POST", "groups/%s/action" % copy_id,
                                   {"delete": {"delete-volumes": True}}),
                           group_schemas.delete_group)
                h.wait_for(lambda: request("GET", "groups/" + copy_id).status == 404, WAIT_S,
                           "group %s deleted" % copy_id)
                self.check(request("DELETE", "group_snapshots/" + snapshot_id),
                           group_snapshot_schemas.delete_group_snapshot)
                h.wait_for(lambda: request("GET", "group_snapshots/" + snapshot_id).status == 404,
                           WAIT_S, "group snapshot %s deleted" % snapshot_id)
                self.check(request("POST", "groups/%s/action" % group_id,
                                   {"delete": {"delete-volumes": True}}),
                           group_schemas.delete_group)
                h.wait_for(lambda: request("GET", "groups/" + group_id).status == 404, WAIT_S,
                           "group %s deleted" % group_id)
                self.check(request("DELETE", "group_types/" + type_id),
                           group_type_schemas.delete_group_type)

    def test_a_trailing_slash_is_an_empty_id(self):
        for method in ("GET", "PUT", "DELETE"):
            with self.subTest(method=method):
                resp = self.daemon.request(method, "volumes/",
                                           body={"volume": {"name": "x"}}
                                           if method == "PUT" else None)
                self.assertCinderError(resp, 404, "itemNotFound")
        # The versions document keeps its trailing slash.
        self.assertEqual(self.daemon.request("GET", "/v3/", microversion=None).status, 200)


if __name__ == "__main__":
    h.main()
