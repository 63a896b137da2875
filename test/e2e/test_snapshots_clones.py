"""End-to-end: snapshots, volumes from snapshots, clones, extend and the admin actions, through
the real `cinder` CLI, with the data in the file back-end's images checked byte for byte.

Goal: prove an unmodified OpenStack client can drive the whole snapshot and copy story
(snapshot-create/show/list/rename/delete, create --snapshot-id, create --source-volid, extend,
reset-state, snapshot-reset-state, force-delete), that every step leaves the status it must, that
bad requests are refused in Cinder's shape and change nothing, and that the copies hold the data
the source held when they were made, whatever the source does afterwards.

Method: one clinkerd per test (all roles, SQLite, embedded queue, file back-end). Each CLI step
is followed by a status check through the API and the SQLite row, and at chosen steps through
`cinder show`/`snapshot-show` too (each CLI run costs about a second of interpreter start-up).
Data: seeded random patterns (4 MiB each, at several offsets of a 2 GiB volume, one across and
one past the 1 GiB mark) are written straight into the volume's image file; copies are compared
over the written ranges (sha256 of each range against the pattern) and over the whole image
(clinker_harness.content_digest: a streaming sha256 of the image's content that skips holes,
against model_digest of what the image must hold). Bad input is sent over raw HTTP, and the
volumes and snapshots tables and the back-end directory are compared before and after.
"""

import hashlib
import os
import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

# The CLI's microversion: the server's maximum for this release.
CLI_MICROVERSION = "3.13"

MIB = 1 << 20
PATTERN_LENGTH = 4 * MIB
# In a 2 GiB volume: the start, an odd offset, one across the 1 GiB mark, one past it (odd too),
# and the end.
PATTERN_OFFSETS = (0, 300 * MIB + 12345, h.GIB - MIB, h.GIB + 512 * MIB + 777,
                   2 * h.GIB - PATTERN_LENGTH)


def directory_listing(path):
    """{name: apparent size} of the regular files in a directory (the back-end's images)."""
    listing = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            listing[name] = os.stat(full).st_size
    return listing


class SnapshotsClonesTest(h.DaemonTestCase):

    def cli(self, *args, **kwargs):
        return self.daemon.cinder(*args, microversion=CLI_MICROVERSION, **kwargs)

    def fingerprint(self):
        """Everything a refused request must leave alone: both tables and the image files."""
        d = self.daemon
        return {
            "volumes": d.db_rows("SELECT * FROM volumes ORDER BY id"),
            "snapshots": d.db_rows("SELECT * FROM snapshots ORDER BY id"),
            "files": directory_listing(d.volume_dir),
        }

    def assertUnchanged(self, before, what):
        after = self.fingerprint()
        for key in before:
            self.assertEqual(before[key], after[key], "%s changed %s" % (what, key))

    def assertVolumeStatus(self, volume_id, status, size=None, cli=False):
        """The same status in the API and the DB row (and `cinder show` with cli=True: each CLI
        run costs about a second, so the CLI shows what it must once, not after every step).
        Returns the API view."""
        api = self.daemon.show_volume(volume_id)
        self.assertEqual(api["status"], status, api)
        row = self.daemon.db_volume(volume_id)
        self.assertEqual(row["status"], status, row)
        if size is not None:
            self.assertEqual(api["size"], size, api)
            self.assertEqual(row["size_gib"], size, row)
        if cli:
            shown = self.cli("show", volume_id).properties()
            self.assertEqual(shown["status"], status, shown)
            if size is not None:
                self.assertEqual(shown["size"], str(size), shown)
        return api

    def assertSnapshotStatus(self, snapshot_id, status, cli=False):
        """As assertVolumeStatus, with `cinder snapshot-show`; returns the API view."""
        api = self.daemon.show_snapshot(snapshot_id)
        self.assertEqual(api["status"], status, api)
        row = self.daemon.db_snapshot(snapshot_id)
        self.assertEqual(row["status"], status, row)
        if cli:
            shown = self.cli("snapshot-show", snapshot_id).properties()
            self.assertEqual(shown["status"], status, shown)
            for key in ("id", "name", "volume_id", "size"):
                self.assertEqual(shown[key], str(api[key]), shown)
        return api

    def create_available(self, *args):
        """`cinder create <args>`, then waits for `available`; returns the volume id."""
        created = self.cli("create", *args).properties()
        self.assertIn(created["status"], ("creating", "available"), created)
        self.daemon.wait_for_status(created["id"], "available")
        return created["id"]

    def snapshot_available(self, volume_id, name):
        created = self.cli("snapshot-create", "--name", name, volume_id).properties()
        self.assertIn(created["status"], ("creating", "available"), created)
        self.assertEqual(created["volume_id"], volume_id, created)
        self.daemon.wait_for_snapshot_status(created["id"], "available")
        return created["id"]

    def assertGone(self, path):
        h.wait_for(lambda: not os.path.exists(path), h.STATUS_TIMEOUT_S,
                   "file %s to be removed" % path)

    def assertImage(self, path, size, writes, what):
        """The image has `size` bytes, each write's range holds its bytes, and the whole content
        is zeros plus the writes."""
        self.assertEqual(os.stat(path).st_size, size, "%s: apparent size" % what)
        for offset, data in writes:
            self.assertEqual(h.range_digest(path, offset, len(data)),
                             hashlib.sha256(data).hexdigest(),
                             "%s: bytes at offset %d" % (what, offset))
        self.assertEqual(h.content_digest(path), h.model_digest(size, writes),
                         "%s: whole content" % what)

    # ---- tests --------------------------------------------------------------------------------

    def test_cli_snapshot_lifecycle(self):
        d = self.daemon
        volume_id = self.create_available("1", "--name", "snap-source")

        snapshot_id = self.snapshot_available(volume_id, "e2e-snap")
        shown = self.assertSnapshotStatus(snapshot_id, "available", cli=True)
        self.assertEqual(shown["name"], "e2e-snap", shown)
        self.assertEqual(shown["volume_id"], volume_id, shown)
        self.assertEqual(shown["size"], 1, shown)
        path = d.snapshot_file(snapshot_id)
        self.assertTrue(os.path.isfile(path), "no snapshot file %s" % path)
        self.assertEqual(os.stat(path).st_size, h.GIB, path)
        # Taking a snapshot leaves its volume as it was.
        self.assertVolumeStatus(volume_id, "available", 1)

        listed = [r for r in self.cli("snapshot-list").rows() if r.get("ID") == snapshot_id]
        self.assertEqual(len(listed), 1, "snapshot-list does not show %s once" % snapshot_id)
        self.assertEqual(listed[0]["Status"], "available", listed)
        self.assertEqual(listed[0]["Name"], "e2e-snap", listed)
        self.assertEqual(listed[0]["Volume ID"], volume_id, listed)
        self.assertEqual(listed[0]["Size"], "1", listed)
        by_volume = d.request("GET", "snapshots?volume_id=%s" % volume_id).json()["snapshots"]
        self.assertEqual([s["id"] for s in by_volume], [snapshot_id], by_volume)

        self.cli("snapshot-rename", "--description", "renamed by e2e", snapshot_id,
                 "e2e-renamed")
        shown = self.assertSnapshotStatus(snapshot_id, "available")
        self.assertEqual(shown["name"], "e2e-renamed", shown)
        self.assertEqual(shown["description"], "renamed by e2e", shown)

        # A volume with a snapshot cannot be deleted: the CLI reports Cinder's 400.
        refused = self.cli("delete", volume_id, check=False)
        self.assertNotEqual(refused.returncode, 0, refused)
        self.assertIn("400", refused.stdout + refused.stderr, refused)
        self.assertVolumeStatus(volume_id, "available", 1)

        self.cli("snapshot-delete", snapshot_id)
        d.wait_for_snapshot_status(snapshot_id, None)
        self.assertGone(path)
        row = d.db_snapshot(snapshot_id)
        self.assertEqual((row["deleted"], row["status"]), (1, "deleted"), row)
        listed = d.request("GET", "snapshots/detail").json()["snapshots"]
        self.assertFalse([s for s in listed if s["id"] == snapshot_id], listed)

        # Without its snapshot the volume goes.
        self.cli("delete", volume_id)
        d.wait_for_status(volume_id, None)
        self.assertGone(d.volume_file(volume_id))

    def test_data_survives_snapshot_clone_and_extend(self):
        d = self.daemon
        source_id = self.create_available("2", "--name", "data-source")
        source_path = d.volume_file(source_id)
        old = h.write_pattern(source_path, "old", PATTERN_OFFSETS, PATTERN_LENGTH)
        self.assertImage(source_path, 2 * h.GIB, old, "source with the old pattern")

        snapshot_id = self.snapshot_available(source_id, "data-snap")
        clone_id = self.create_available("--source-volid", source_id, "--name", "data-clone")
        from_snapshot_id = self.create_available("--snapshot-id", snapshot_id, "--name",
                                                 "data-from-snap", "2")
        # A volume from a snapshot may be bigger than it; the rest reads as zeros.
        bigger_id = self.create_available("--snapshot-id", snapshot_id, "--name",
                                          "data-from-snap-bigger", "3")

        clone = self.assertVolumeStatus(clone_id, "available", 2)
        self.assertEqual(clone["source_volid"], source_id, clone)
        for volume_id, size in ((from_snapshot_id, 2), (bigger_id, 3)):
            shown = self.assertVolumeStatus(volume_id, "available", size)
            self.assertEqual(shown["snapshot_id"], snapshot_id, shown)

        # The source changes after the copies were made: none of them may follow.
        new = h.write_pattern(source_path, "new", PATTERN_OFFSETS, PATTERN_LENGTH)
        self.assertImage(source_path, 2 * h.GIB, new, "source with the new pattern")
        self.assertImage(d.snapshot_file(snapshot_id), 2 * h.GIB, old, "snapshot")
        self.assertImage(d.volume_file(clone_id), 2 * h.GIB, old, "clone")
        self.assertImage(d.volume_file(from_snapshot_id), 2 * h.GIB, old, "volume from snapshot")
        self.assertImage(d.volume_file(bigger_id), 3 * h.GIB, old,
                         "bigger volume from snapshot")

        self.cli("extend", source_id, "3")
        d.wait_for_status(source_id, "available")
        self.assertVolumeStatus(source_id, "available", 3)
        row = d.db_volume(source_id)
        self.assertIsNone(row["pending_size_gib"], row)
        self.assertImage(source_path, 3 * h.GIB, new, "source after extend")
        # The snapshot keeps the size and data it was taken with.
        self.assertImage(d.snapshot_file(snapshot_id), 2 * h.GIB, old, "snapshot after extend")
        self.assertEqual(self.assertSnapshotStatus(snapshot_id, "available")["size"], 2)

    def test_cli_reset_state_and_force_delete(self):
        d = self.daemon
        volume_id = self.create_available("1", "--name", "admin-actions")

        self.cli("reset-state", "--state", "error", volume_id)
        self.assertVolumeStatus(volume_id, "error", 1, cli=True)
        self.cli("reset-state", "--state", "available", volume_id)
        self.assertVolumeStatus(volume_id, "available", 1)

        snapshot_id = self.snapshot_available(volume_id, "admin-snap")
        self.cli("snapshot-reset-state", "--state", "error", snapshot_id)
        self.assertSnapshotStatus(snapshot_id, "error", cli=True)
        self.cli("snapshot-reset-state", snapshot_id)  # The CLI's default state: available.
        self.assertSnapshotStatus(snapshot_id, "available")
        self.cli("snapshot-delete", "--force", snapshot_id)
        d.wait_for_snapshot_status(snapshot_id, None)
        self.assertGone(d.snapshot_file(snapshot_id))

        # error_deleting is not a status a plain delete accepts; a forced delete takes it.
        self.cli("reset-state", "--state", "error_deleting", volume_id)
        self.assertVolumeStatus(volume_id, "error_deleting", 1)
        refused = self.cli("delete", volume_id, check=False)
        self.assertNotEqual(refused.returncode, 0, refused)
        self.assertVolumeStatus(volume_id, "error_deleting", 1)
        self.assertTrue(os.path.isfile(d.volume_file(volume_id)))

        self.cli("force-delete", volume_id)
        d.wait_for_status(volume_id, None)
        self.assertGone(d.volume_file(volume_id))
        row = d.db_volume(volume_id)
        self.assertEqual((row["deleted"], row["status"]), (1, "deleted"), row)

    def test_bad_input_is_refused_and_changes_nothing(self):
        d = self.daemon
        volume_id = d.create_volume(size=2, name="bad-input")["id"]
        d.wait_for_status(volume_id, "available")
        snapshot_id = d.create_snapshot(volume_id, name="bad-input-snap")["id"]
        d.wait_for_snapshot_status(snapshot_id, "available")
        missing = "00000000-0000-4000-8000-00000000dead"

        cases = [
            ("extend to a smaller size", "POST", "volumes/%s/action" % volume_id, {
                "os-extend": {"new_size": 1}
            }, 400, "badRequest"),
            ("extend to the same size", "POST", "volumes/%s/action" % volume_id, {
                "os-extend": {"new_size": 2}
            }, 400, "badRequest"),
            ("delete a volume with snapshots", "DELETE", "volumes/%s" % volume_id, None, 400,
             "badRequest"),
            ("force-delete a volume with snapshots", "POST", "volumes/%s/action" % volume_id, {
                "os-force_delete": {}
            }, 400, "badRequest"),
            ("create from a snapshot with a smaller size", "POST", "volumes", {
                "volume": {"snapshot_id": snapshot_id, "size": 1}
            }, 400, "badRequest"),
            ("clone a missing volume", "POST", "volumes", {
                "volume": {"source_volid": missing, "size": 2}
            }, 404, "itemNotFound"),
            ("snapshot a missing volume", "POST", "snapshots", {
                "snapshot": {"volume_id": missing}
            }, 404, "itemNotFound"),
        ]
        for what, method, path, body, status, name in cases:
            with self.subTest(what):
                before = self.fingerprint()
                resp = d.request(method, path, body=body)
                self.assertCinderError(resp, status, name)
                if status == 404:
                    self.assertIn(missing, resp.json()[name]["message"], resp)
                self.assertUnchanged(before, what)
        message = d.request("DELETE", "volumes/%s" % volume_id).json()["badRequest"]["message"]
        self.assertIn("snapshot", message)

        # The same refusals through the CLI: a non-zero exit naming the HTTP status.
        before = self.fingerprint()
        for args, code in ((("extend", volume_id, "2"), "400"), (("create", "--snapshot-id",
                                                                 snapshot_id, "1"), "400")):
            refused = self.cli(*args, check=False)
            self.assertNotEqual(refused.returncode, 0, refused)
            self.assertIn(code, refused.stdout + refused.stderr, refused)
        self.assertUnchanged(before, "the CLI's refused requests")

        # Everything still works after the refusals.
        self.assertVolumeStatus(volume_id, "available", 2)
        self.assertSnapshotStatus(snapshot_id, "available")


if __name__ == "__main__":
    h.main()
