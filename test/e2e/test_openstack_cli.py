"""End-to-end: the unified `openstack volume ...` CLI (python3-openstackclient) against clinkerd.

Goal: prove that an unmodified openstackclient, run as a user runs it (no --os-volume-api-version:
it then speaks its default volume API, 3.0, without asking the server), drives snapshots (create,
set, list, show, delete), metadata (volume set/unset --property, snapshot set --property), volume
types (create, set/unset --property, show, list, delete; a private type's access list shown by
`type show` and `type list --private`) and transfers (transfer request create, list, show, accept
by another project, delete), and that what the server stores (raw HTTP, the SQLite rows) is what
the CLI asked for. openstackclient itself refuses the group commands below 3.11 / 3.13 / 3.14, so
unpinned they must fail in the client; pinned at 3.14 (the lowest version with all of them) they
must work: group type create/list/delete, group create/list/set/delete (--force deletes its
volumes), group snapshot create/list/delete.

Not through the CLI, because openstackclient 6 cannot do them without Keystone or at all:
`volume create` builds an image-service client first, whose version discovery fails on a noauth
endpoint; `volume type set/unset --project` looks the project up in Keystone; `volume group show`
calls a method cinderclient 9 does not have. Those steps use raw HTTP.

Method: one noauth daemon per test (every caller is an admin; the token names the project, so
the transfer taker is simply PROJECT_B). The CLI runs with no OS_* variables and `-f json` where
it prints a resource; every wait is bounded (raw HTTP polls).
"""

import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

# Group snapshots need 3.14; openstackclient refuses every group command below its version.
GROUP_MICROVERSION = "3.14"
WAIT_S = 30.0


class OpenstackCliTest(h.DaemonTestCase):

    def osc(self, *args, **kwargs):
        return self.daemon.openstack(*args, **kwargs)

    def osc_json(self, *args, **kwargs):
        return self.daemon.openstack(*(args + ("-f", "json")), **kwargs).json()

    def api(self, path, microversion=h.DEFAULT_MICROVERSION, project=None):
        resp = self.daemon.request("GET", path, microversion=microversion, project=project)
        self.assertEqual(resp.status, 200, resp)
        return resp.json()

    def wait_gone_or_status(self, path, key, status, microversion=h.DEFAULT_MICROVERSION,
                            project=None):
        """Waits until GET `path` shows `status` (None: until it answers 404)."""
        def reached():
            resp = self.daemon.request("GET", path, microversion=microversion, project=project)
            if status is None:
                return resp.status == 404
            return resp.status == 200 and resp.json()[key]["status"] == status

        h.wait_for(reached, WAIT_S, "%s %s" % (path, status or "gone"))

    def test_volume_snapshot_and_metadata_commands(self):
        d = self.daemon
        # `openstack volume create` cannot run without a catalog: it builds an image (Glance)
        # client first, whose version discovery fails on the noauth endpoint. Raw HTTP instead.
        volume = d.create_volume(size=1, name="osc-volume",
                                 metadata={"purpose": "test", "tier": "gold"})
        volume_id = volume["id"]
        d.wait_for_status(volume_id, "available")

        self.osc("volume", "set", "--property", "owner=e2e", volume_id)
        self.osc("volume", "unset", "--property", "tier", volume_id)
        self.assertEqual(self.api("volumes/%s/metadata" % volume_id)["metadata"],
                         {"purpose": "test", "owner": "e2e"})
        shown = self.osc_json("volume", "show", volume_id)
        self.assertEqual(shown["status"], "available", shown)
        self.assertEqual(shown["properties"], {"purpose": "test", "owner": "e2e"}, shown)

        snapshot = self.osc_json("volume", "snapshot", "create", "--volume", volume_id,
                                 "--description", "first", "osc-snap")
        snapshot_id = snapshot["id"]
        self.assertEqual(snapshot["volume_id"], volume_id, snapshot)
        self.wait_gone_or_status("snapshots/" + snapshot_id, "snapshot", "available")
        self.assertEqual(d.db_snapshot(snapshot_id)["volume_id"], volume_id)

        self.osc("volume", "snapshot", "set", "--property", "kept=yes", "--name", "osc-snap-2",
                 snapshot_id)
        stored = self.api("snapshots/" + snapshot_id)["snapshot"]
        self.assertEqual(stored["metadata"], {"kept": "yes"}, stored)
        self.assertEqual(stored["name"], "osc-snap-2", stored)
        listed = {row["ID"]: row for row in self.osc_json("volume", "snapshot", "list")}
        self.assertEqual(listed[snapshot_id]["Status"], "available", listed)
        self.assertEqual(listed[snapshot_id]["Name"], "osc-snap-2", listed)
        shown = self.osc_json("volume", "snapshot", "show", snapshot_id)
        self.assertEqual(shown["description"], "first", shown)
        self.assertEqual(shown["properties"], {"kept": "yes"}, shown)

        self.osc("volume", "snapshot", "delete", snapshot_id)
        self.wait_gone_or_status("snapshots/" + snapshot_id, "snapshot", None)
        self.osc("volume", "delete", volume_id)
        self.wait_gone_or_status("volumes/" + volume_id, "volume", None)
        self.assertEqual(d.db_snapshot(snapshot_id)["deleted"], 1)
        self.assertEqual(d.db_volume(volume_id)["deleted"], 1)

    def test_volume_type_commands(self):
        d = self.daemon
        created = self.osc_json("volume", "type", "create", "--description", "fast disks",
                                "--property", "speed=fast", "osc-type")
        type_id = created["id"]
        self.assertEqual(created["name"], "osc-type", created)
        self.osc("volume", "type", "set", "--property", "tier=gold", "osc-type")
        self.assertEqual(self.api("types/%s/extra_specs" % type_id)["extra_specs"],
                         {"speed": "fast", "tier": "gold"})
        shown = self.osc_json("volume", "type", "show", "osc-type")
        self.assertEqual(shown["id"], type_id, shown)
        self.assertEqual(shown["description"], "fast disks", shown)
        self.assertTrue(shown["is_public"], shown)
        self.assertEqual(shown["properties"], {"speed": "fast", "tier": "gold"}, shown)
        self.osc("volume", "type", "unset", "--property", "speed", "osc-type")
        self.assertEqual(self.api("types/%s/extra_specs" % type_id)["extra_specs"],
                         {"tier": "gold"})
        names = {row["Name"]: row for row in self.osc_json("volume", "type", "list", "--long")}
        self.assertEqual(names["osc-type"]["ID"], type_id, names)

        # A private type and its access list. `volume type set/unset --project` cannot run
        # without Keystone (openstackclient looks the project up in the identity service first),
        # so the access is given over raw HTTP and the CLI shows it.
        private = self.osc_json("volume", "type", "create", "--private", "osc-private")
        private_id = private["id"]
        self.assertFalse(self.api("types/" + private_id)["volume_type"]["is_public"])
        added = d.request("POST", "types/%s/action" % private_id,
                          body={"addProjectAccess": {"project": h.PROJECT_B}})
        self.assertEqual(added.status, 202, added)
        shown = self.osc_json("volume", "type", "show", "osc-private")
        self.assertFalse(shown["is_public"], shown)
        self.assertIn(h.PROJECT_B, shown["access_project_ids"], shown)
        private_rows = [row for row in self.osc_json("volume", "type", "list", "--private")]
        self.assertEqual([row["ID"] for row in private_rows], [private_id], private_rows)

        self.osc("volume", "type", "delete", "osc-type", "osc-private")
        for deleted in (type_id, private_id):
            self.assertEqual(d.request("GET", "types/" + deleted).status, 404)
        names = [row["Name"] for row in self.osc_json("volume", "type", "list")]
        self.assertNotIn("osc-type", names)

    def test_transfer_request_commands(self):
        d = self.daemon
        volume = d.create_volume(size=1, name="gift")
        d.wait_for_status(volume["id"], "available")

        created = self.osc_json("volume", "transfer", "request", "create", "--name", "to-b",
                                volume["id"])
        transfer_id = created["id"]
        self.assertEqual(created["volume_id"], volume["id"], created)
        self.assertEqual(len(created["auth_key"]), 16, created)
        self.assertEqual(d.show_volume(volume["id"])["status"], "awaiting-transfer")
        listed = self.osc_json("volume", "transfer", "request", "list")
        self.assertEqual([(r["ID"], r["Name"], r["Volume"]) for r in listed],
                         [(transfer_id, "to-b", volume["id"])], listed)
        shown = self.osc_json("volume", "transfer", "request", "show", transfer_id)
        self.assertEqual(shown["volume_id"], volume["id"], shown)
        self.assertNotIn("auth_key", shown, shown)

        accepted = self.osc_json("volume", "transfer", "request", "accept", "--auth-key",
                                 created["auth_key"], transfer_id, project=h.PROJECT_B)
        self.assertEqual(accepted["volume_id"], volume["id"], accepted)
        self.assertEqual(d.db_volume(volume["id"])["project_id"], h.PROJECT_B)
        self.assertEqual(d.show_volume(volume["id"], project=h.PROJECT_B)["status"],
                         "available")
        self.assertEqual(self.osc_json("volume", "transfer", "request", "list"), [])

        # A second transfer, back from B, deleted instead: the volume is B's and available.
        again = self.osc_json("volume", "transfer", "request", "create", volume["id"],
                              project=h.PROJECT_B)
        self.osc("volume", "transfer", "request", "delete", again["id"], project=h.PROJECT_B)
        self.assertEqual(self.osc_json("volume", "transfer", "request", "list",
                                       project=h.PROJECT_B), [])
        self.assertEqual(d.show_volume(volume["id"], project=h.PROJECT_B)["status"],
                         "available")
        rows = d.db_rows("SELECT id, deleted FROM transfers ORDER BY created_at")
        self.assertEqual({(r["id"], r["deleted"]) for r in rows},
                         {(transfer_id, 1), (again["id"], 1)}, rows)

    def test_group_commands(self):
        d = self.daemon
        # Unpinned (3.0), openstackclient refuses group commands before sending anything.
        for argv in (("volume", "group", "type", "list"), ("volume", "group", "list"),
                     ("volume", "group", "snapshot", "list")):
            refused = self.osc(*argv, check=False)
            self.assertNotEqual(refused.returncode, 0, refused)
            self.assertIn("or greater is required", refused.stderr, refused)

        def group_osc(*args, **kwargs):
            return self.osc(*args, microversion=GROUP_MICROVERSION, **kwargs)

        def group_json(*args):
            return self.osc_json(*args, microversion=GROUP_MICROVERSION)

        volume_type = self.osc_json("volume", "type", "create", "osc-member-type")
        group_type = group_json("volume", "group", "type", "create", "osc-group-type")
        self.assertEqual(group_type["Name"], "osc-group-type", group_type)
        listed = group_json("volume", "group", "type", "list")
        self.assertIn(group_type["ID"], [row["ID"] for row in listed], listed)

        group = group_json("volume", "group", "create", "--name", "osc-group", "--description",
                           "made by osc", "osc-group-type", "osc-member-type")
        group_id = group["ID"]
        self.wait_gone_or_status("groups/" + group_id, "group", "available",
                                 microversion=GROUP_MICROVERSION)
        stored = self.api("groups/" + group_id, microversion=GROUP_MICROVERSION)["group"]
        self.assertEqual(stored["group_type"], group_type["ID"], stored)
        self.assertEqual(stored["volume_types"], [volume_type["id"]], stored)

        # One member (openstackclient's `volume create` has no group option: raw HTTP).
        member = d.request("POST", "volumes", microversion=GROUP_MICROVERSION,
                           body={"volume": {"size": 1, "group_id": group_id,
                                            "volume_type": volume_type["id"]}})
        self.assertEqual(member.status, 202, member)
        member_id = member.json()["volume"]["id"]
        d.wait_for_status(member_id, "available")

        group_osc("volume", "group", "set", "--name", "osc-group-2", "--description", "renamed",
                  group_id)
        # `openstack volume group show` is broken client-side with this cinderclient
        # ('GroupManager' object has no attribute 'show'): raw HTTP shows the result of set.
        shown = self.api("groups/" + group_id, microversion=GROUP_MICROVERSION)["group"]
        self.assertEqual((shown["name"], shown["description"], shown["status"]),
                         ("osc-group-2", "renamed", "available"), shown)
        listed = {row["ID"]: row for row in group_json("volume", "group", "list")}
        self.assertEqual(listed[group_id]["Name"], "osc-group-2", listed)

        snapshot = group_json("volume", "group", "snapshot", "create", "--name", "osc-gsnap",
                              group_id)
        snapshot_id = snapshot["ID"]
        self.wait_gone_or_status("group_snapshots/" + snapshot_id, "group_snapshot",
                                 "available", microversion=GROUP_MICROVERSION)
        members = d.db_rows("SELECT status FROM snapshots WHERE group_snapshot_id = ?",
                            (snapshot_id,))
        self.assertEqual(members, [{"status": "available"}])
        listed = {row["ID"]: row for row in group_json("volume", "group", "snapshot", "list")}
        self.assertEqual(listed[snapshot_id]["Status"], "available", listed)
        group_osc("volume", "group", "snapshot", "delete", snapshot_id)
        self.wait_gone_or_status("group_snapshots/" + snapshot_id, "group_snapshot", None,
                                 microversion=GROUP_MICROVERSION)

        # --force: delete the group with its volumes.
        group_osc("volume", "group", "delete", "--force", group_id)
        self.wait_gone_or_status("groups/" + group_id, "group", None,
                                 microversion=GROUP_MICROVERSION)
        self.assertEqual(d.db_volume(member_id)["deleted"], 1)
        group_osc("volume", "group", "type", "delete", "osc-group-type")
        listed = group_json("volume", "group", "type", "list")
        self.assertNotIn(group_type["ID"], [row["ID"] for row in listed], listed)


if __name__ == "__main__":
    h.main()
