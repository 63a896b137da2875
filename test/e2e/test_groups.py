"""End-to-end: generic volume groups, group snapshots and groups made from them, through the real
`cinder` CLI against a real clinkerd, with the data in the file back-end's images checked.

Goal: prove an unmodified OpenStack client can drive the whole group story (group-type-create,
group-create, create --group-id, group-snapshot-create, group-create-from-src from a group
snapshot and from a group, group-snapshot-delete, group-delete --delete-volumes,
group-type-delete), that each step leaves the statuses it must in the API and in the database,
that the member volumes and snapshots go through the ordinary jobs of the volume node (each
member of a group made from a snapshot holds the data its source held), that the groups and group
snapshots complete when their last member does, and that Cinder's refusals hold (a member volume
or snapshot is not deleted on its own, a group with volumes needs --delete-volumes, a group with a
group snapshot is not deleted).

Method: one clinkerd (all roles, SQLite, embedded queue, file back-end). The CLI runs at 3.14
(group snapshots and create-from-src); raw HTTP checks the views and refusals. Data: a seeded
4 MiB pattern is written into each source volume's image; the members of the groups made from
the group snapshot and from the source group are compared with it (sha256 of the range). After
the deletes, the volumes, snapshots, groups and group_snapshots rows are soft-deleted and the
back-end directory holds no image of them.
"""

import os
import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

CLI_MICROVERSION = "3.14"
MIB = 1 << 20
PATTERN_LENGTH = 4 * MIB


class GroupsTest(h.DaemonTestCase):

    def cli(self, *args, **kwargs):
        return self.daemon.cinder(*args, microversion=CLI_MICROVERSION, **kwargs)

    def api(self, method, path, body=None, microversion=CLI_MICROVERSION):
        return self.daemon.request(method, path, body=body, microversion=microversion)

    def wait_group(self, kind, group_id, status):
        """Waits until GET <kind>/<id> shows `status` (or 404 for status None)."""
        def reached():
            resp = self.api("GET", "%s/%s" % (kind, group_id))
            if status is None:
                return resp.status == 404
            return resp.status == 200 and resp.json()[kind[:-1]]["status"] == status
        h.wait_for(reached, h.STATUS_TIMEOUT_S, "%s %s %s" % (kind, group_id, status))

    def db_status(self, table, row_id):
        rows = self.daemon.db_rows("SELECT status, deleted FROM %s WHERE id = ?" % table,
                                   (row_id,))
        self.assertEqual(len(rows), 1, rows)
        return rows[0]["status"], rows[0]["deleted"]

    def members(self, table, column, parent_id):
        return [row["id"] for row in self.daemon.db_rows(
            "SELECT id FROM %s WHERE %s = ? AND deleted = 0 ORDER BY created_at" % (table, column),
            (parent_id,))]

    def test_group_snapshot_and_groups_from_sources_through_the_cli(self):
        d = self.daemon
        self.cli("type-create", "gvt")
        self.cli("group-type-create", "ggt")
        group_types = self.api("GET", "group_types").json()["group_types"]
        group_type = [t for t in group_types if t["name"] == "ggt"][0]
        self.assertEqual(self.api("GET", "group_types", microversion="3.10").status, 404)

        group = self.cli("group-create", "--name", "g1", "ggt", "gvt").properties()
        group_id = group["id"]
        self.wait_group("groups", group_id, "available")
        shown = self.api("GET", "groups/%s" % group_id).json()["group"]
        self.assertEqual(shown["group_type"], group_type["id"])
        self.assertEqual(len(shown["volume_types"]), 1)

        # Two volumes in the group, through `cinder create --group-id`.
        volumes = []
        for seed in (1, 2):
            volume = self.cli("create", "--group-id", group_id, "--volume-type", "gvt",
                              "--name", "m%d" % seed, "1").properties()
            volumes.append(volume["id"])
        for seed, volume_id in zip((1, 2), volumes):
            d.wait_for_status(volume_id, ["available"])
            self.assertEqual(d.show_volume(volume_id)["status"], "available")
            h.write_pattern(d.volume_file(volume_id), seed, [0], PATTERN_LENGTH)
        shown_volume = self.api("GET", "volumes/%s" % volumes[0]).json()["volume"]
        self.assertEqual(shown_volume["group_id"], group_id)
        self.assertEqual(sorted(self.members("volumes", "group_id", group_id)), sorted(volumes))

        # A member is not deleted on its own; a group with volumes needs --delete-volumes.
        self.assertCinderError(self.api("DELETE", "volumes/%s" % volumes[0]), 400, "badRequest")
        refused = self.api("POST", "groups/%s/action" % group_id,
                           body={"delete": {"delete-volumes": False}})
        self.assertCinderError(refused, 400, "badRequest")

        # The group snapshot: one member snapshot per volume, through the snapshot jobs.
        group_snapshot = self.cli("group-snapshot-create", "--name", "gs1",
                                  group_id).properties()
        group_snapshot_id = group_snapshot["id"]
        self.wait_group("group_snapshots", group_snapshot_id, "available")
        snapshots = self.members("snapshots", "group_snapshot_id", group_snapshot_id)
        self.assertEqual(len(snapshots), 2)
        for snapshot_id in snapshots:
            self.assertEqual(d.show_snapshot(snapshot_id)["status"], "available")
            self.assertCinderError(self.api("DELETE", "snapshots/%s" % snapshot_id), 400,
                                   "badRequest")
        shown_snapshot = self.api("GET", "snapshots/%s" % snapshots[0]).json()["snapshot"]
        self.assertEqual(shown_snapshot["group_snapshot_id"], group_snapshot_id)
        listed = self.cli("group-snapshot-list").rows()
        self.assertIn(group_snapshot_id, [row["ID"] for row in listed])
        # A group with a group snapshot is not deleted.
        refused = self.api("POST", "groups/%s/action" % group_id,
                           body={"delete": {"delete-volumes": True}})
        self.assertCinderError(refused, 400, "badRequest")

        # The sources change after the snapshot: the copies must hold what the snapshot held.
        for volume_id in volumes:
            h.write_pattern(d.volume_file(volume_id), 99, [0], PATTERN_LENGTH)

        # A group from the group snapshot, and one from the group.
        from_snapshot = self.cli("group-create-from-src", "--group-snapshot", group_snapshot_id,
                                 "--name", "g2").properties()
        from_group = self.cli("group-create-from-src", "--source-group", group_id,
                              "--name", "g3").properties()
        for copy in (from_snapshot, from_group):
            self.wait_group("groups", copy["id"], "available")
            copies = self.members("volumes", "group_id", copy["id"])
            self.assertEqual(len(copies), 2)
            for volume_id in copies:
                self.assertEqual(d.show_volume(volume_id)["status"], "available")
        view = self.api("GET", "groups/%s" % from_snapshot["id"]).json()["group"]
        self.assertEqual(view["group_snapshot_id"], group_snapshot_id)
        self.assertEqual(self.api("GET", "groups/%s" % from_group["id"]).json()["group"]
                         ["source_group_id"], group_id)
        expected = {h.range_digest(d.snapshot_file(s), 0, PATTERN_LENGTH) for s in snapshots}
        self.assertEqual(expected, {
            h.range_digest(d.volume_file(v), 0, PATTERN_LENGTH)
            for v in self.members("volumes", "group_id", from_snapshot["id"])
        })
        changed = h.range_digest(d.volume_file(volumes[0]), 0, PATTERN_LENGTH)
        self.assertEqual({changed}, {
            h.range_digest(d.volume_file(v), 0, PATTERN_LENGTH)
            for v in self.members("volumes", "group_id", from_group["id"])
        })

        # Delete it all: the copies, the group snapshot (its members' delete jobs), the group.
        all_volumes = list(volumes)
        for copy in (from_snapshot, from_group):
            all_volumes += self.members("volumes", "group_id", copy["id"])
            self.cli("group-delete", "--delete-volumes", copy["id"])
        for copy in (from_snapshot, from_group):
            self.wait_group("groups", copy["id"], None)
        self.cli("group-snapshot-delete", group_snapshot_id)
        self.wait_group("group_snapshots", group_snapshot_id, None)
        for snapshot_id in snapshots:
            self.assertEqual(self.db_status("snapshots", snapshot_id), ("deleted", 1))
        self.cli("group-delete", "--delete-volumes", group_id)
        self.wait_group("groups", group_id, None)
        for volume_id in all_volumes:
            self.assertEqual(self.db_status("volumes", volume_id), ("deleted", 1))
            self.assertFalse(os.path.exists(d.volume_file(volume_id)), volume_id)
        self.assertEqual(self.db_status("groups", group_id), ("deleted", 1))
        self.assertEqual(self.db_status("group_snapshots", group_snapshot_id), ("deleted", 1))
        self.assertEqual(self.api("GET", "groups/detail").json()["groups"], [])
        self.cli("group-type-delete", "ggt")
        self.assertEqual(self.api("GET", "group_types/%s" % group_type["id"]).status, 404)


if __name__ == "__main__":
    h.main()
