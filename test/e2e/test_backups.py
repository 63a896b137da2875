"""End-to-end: volume backups (full and incremental), their restore to a new or an existing
volume, and their delete, through the real `cinder` CLI, with the data checked byte for byte.

Goal: prove an unmodified OpenStack client can protect a volume's data with backups and get it
back exactly: a backup holds the volume as it was when it was made, whatever the volume, its
snapshot and its clone do afterwards; an incremental backup restores to the volume as it was at
its own time; requests that break the rules get Cinder's error body and the right code and
change nothing; and a backup whose stored data was damaged is never restored silently: the
restore ends `error_restoring` and the backup stays available.

Method: one clinkerd per test (all roles, SQLite, embedded queue, file back-end, backups in
`<state-dir>/backups`). The CLI runs at microversion 3.44 (backup-create [--incremental]
[--force], backup-list, backup-show, backup-restore [--volume], backup-delete), each command
at least once; the volumes, snapshots and clones a test needs, the status waits, the error cases
and the checks after each step use raw HTTP and the SQLite rows (each CLI run costs about a
second of interpreter start-up). Data: seeded random patterns (1 MiB at a few offsets of a
1 GiB volume) written straight into the volume's image file; copies are compared over the
written ranges (sha256) and over the whole image (clinker_harness.content_digest against
model_digest). Corruption: one byte of a stored `chunk-*.z` object in the backup's directory
is flipped.
"""

import hashlib
import os
import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

# The CLI's and the HTTP calls' microversion: the server's maximum for this release.
MICROVERSION = "3.44"

MIB = 1 << 20
PATTERN_LENGTH = MIB
# In a 1 GiB volume: the start, an odd offset inside a chunk, one across a chunk boundary
# (chunks are 8 MiB by default), and the end.
PATTERN_OFFSETS = (0, 300 * MIB + 12345, 512 * MIB - PATTERN_LENGTH // 2, h.GIB - PATTERN_LENGTH)
# What the incremental test changes after the full backup: a little, in one chunk.
CHANGE_OFFSETS = (700 * MIB + 4096,)
CHANGE_LENGTH = 64 * 1024

SERVER_ID = "5e5c1a4e-0000-4000-8000-0000000000c3"
CONNECTOR = {"initiator": "iqn.2004-10.org.example:e2e-host", "ip": "127.0.0.1",
             "host": "e2e-host", "platform": "x86_64", "os_type": "linux2",
             "multipath": False, "mountpoint": "/dev/vdb"}
MISSING_ID = "00000000-0000-4000-8000-00000000dead"


def directory_listing(path):
    """{relative path: size} of every file under `path` ({} if it does not exist)."""
    listing = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            listing[os.path.relpath(full, path)] = os.stat(full).st_size
    return dict(sorted(listing.items()))


class BackupsTest(h.DaemonTestCase):

    def cli(self, *args, **kwargs):
        return self.daemon.cinder(*args, microversion=MICROVERSION, **kwargs)

    def api(self, method, path, body=None, **kwargs):
        return self.daemon.request(method, path, body=body, microversion=MICROVERSION, **kwargs)

    @property
    def backup_dir(self):
        return os.path.join(self.daemon.state_dir, "backups")

    def create_available(self, size, name, **extra):
        """A new available volume, over HTTP (each CLI run costs about a second: the CLI is kept
        for the backup commands). `extra`: snapshot_id, source_volid."""
        volume_id = self.daemon.create_volume(size=size, name=name, **extra)["id"]
        self.daemon.wait_for_status(volume_id, "available")
        return volume_id

    def show_backup(self, backup_id):
        """The backup's API view, or None on 404."""
        resp = self.api("GET", "backups/%s" % backup_id)
        if resp.status == 404:
            return None
        self.assertEqual(resp.status, 200, resp)
        return resp.json()["backup"]

    def wait_for_backup(self, backup_id, statuses):
        return self.daemon._wait_for_api_status("backup", backup_id,
                                                lambda: self.show_backup(backup_id), statuses,
                                                h.STATUS_TIMEOUT_S)

    def assertBackupGone(self, backup_id):
        """Waits (bounded) for a deleted backup's delete to end; it must then be gone (404)."""
        status = self.wait_for_backup(backup_id, (None, "deleted", "error", "error_deleting"))
        self.assertIsNone(status, "backup %s ended %r, not gone; row: %r" %
                          (backup_id, status,
                           self.daemon.db_rows("SELECT status, deleted, deleted_at FROM backups "
                                               "WHERE id = ?", (backup_id,))))

    def backup_available(self, volume_id, name, incremental=False, force=False, cli=True):
        """Creates a backup (`cinder backup-create`, or POST with cli=False), then waits for
        `available` and for the volume to be back from backing-up; returns the backup's view."""
        if cli:
            flags = ["--incremental"] * incremental + ["--force"] * force
            created = self.cli("backup-create", "--name", name, *flags, volume_id).properties()
        else:
            resp = self.api("POST", "backups", {
                "backup": {"volume_id": volume_id, "name": name, "incremental": incremental,
                           "force": force}
            })
            self.assertEqual(resp.status, 202, resp)
            created = resp.json()["backup"]
        self.assertEqual(created["name"], name, created)
        backup_id = created["id"]
        self.assertEqual(self.wait_for_backup(backup_id, ("available", "error")), "available",
                         self.show_backup(backup_id))
        self.daemon.wait_for_status(volume_id, ("available", "in-use"))
        return self.show_backup(backup_id)

    def restore(self, backup_id, volume_id=None, name=None, cli=True):
        """`cinder backup-restore [--volume V] [--name N]` (or POST with cli=False); returns the
        {backup_id, volume_id, volume_name} of the answer."""
        if cli:
            flags = (["--volume", volume_id] if volume_id else []) + (["--name", name]
                                                                      if name else [])
            printed = self.cli("backup-restore", *flags, backup_id).properties()
        else:
            body = {"volume_id": volume_id} if volume_id else {}
            if name:
                body["name"] = name
            resp = self.api("POST", "backups/%s/restore" % backup_id, {"restore": body})
            self.assertEqual(resp.status, 202, resp)
            printed = resp.json()["restore"]
        self.assertEqual(printed["backup_id"], backup_id, printed)
        if volume_id:
            self.assertEqual(printed["volume_id"], volume_id, printed)
        return printed

    def assertVolumeStatus(self, volume_id, status):
        api = self.daemon.show_volume(volume_id)
        self.assertEqual(api["status"], status, api)
        row = self.daemon.db_volume(volume_id)
        self.assertEqual(row["status"], status, row)
        return api

    def assertImage(self, path, size, writes, what):
        """The image has `size` bytes, the newest pattern's ranges (the last writes) hold its
        bytes, and the whole content is zeros plus all the writes, applied in order."""
        self.assertEqual(os.stat(path).st_size, size, "%s: apparent size" % what)
        for offset, data in writes[-len(PATTERN_OFFSETS):]:
            self.assertEqual(h.range_digest(path, offset, len(data)),
                             hashlib.sha256(data).hexdigest(),
                             "%s: bytes at offset %d" % (what, offset))
        self.assertEqual(h.content_digest(path), h.model_digest(size, writes),
                         "%s: whole content" % what)

    def fingerprint(self):
        """What a refused request must leave alone: the tables and the backup directory.

        A backup row's updated_at is left out: a refused restore marks the backup restoring
        and puts it back, which only moves that timestamp."""
        d = self.daemon
        backups = d.db_rows("SELECT * FROM backups ORDER BY id")
        for row in backups:
            row.pop("updated_at")
        return {
            "volumes": d.db_rows("SELECT * FROM volumes ORDER BY id"),
            "backups": backups,
            "backup files": directory_listing(self.backup_dir),
        }

    def assertRefused(self, status, name, method, path, body=None):
        before = self.fingerprint()
        resp = self.api(method, path, body=body)
        self.assertCinderError(resp, status, name)
        after = self.fingerprint()
        for key in before:
            self.assertEqual(before[key], after[key], "%r changed %s" % (resp, key))
        return resp

    # ---- tests --------------------------------------------------------------------------------

    def test_backup_holds_the_data_of_its_time(self):
        d = self.daemon
        source_id = self.create_available(1, "precious")
        source_path = d.volume_file(source_id)
        old = h.write_pattern(source_path, "old", PATTERN_OFFSETS, PATTERN_LENGTH)

        snapshot_id = d.create_snapshot(source_id, name="precious-snap")["id"]
        d.wait_for_snapshot_status(snapshot_id, "available")
        clone_id = self.create_available(1, "precious-clone", source_volid=source_id)

        backup = self.backup_available(source_id, "precious-backup")
        backup_id = backup["id"]
        self.assertEqual(backup["volume_id"], source_id, backup)
        self.assertEqual(backup["size"], 1, backup)
        self.assertFalse(backup["is_incremental"], backup)
        self.assertFalse(backup["has_dependent_backups"], backup)
        self.assertGreater(backup["object_count"], 0, backup)
        self.assertIsNone(backup["fail_reason"], backup)
        self.assertVolumeStatus(source_id, "available")
        shown = self.cli("backup-show", backup_id).properties()
        for key in ("id", "name", "status", "volume_id", "size"):
            self.assertEqual(shown[key], str(backup[key]), shown)
        listed = [r for r in self.cli("backup-list").rows() if r["ID"] == backup_id]
        self.assertEqual([(r["Volume ID"], r["Status"], r["Name"], r["Size"]) for r in listed],
                         [(source_id, "available", "precious-backup", "1")], listed)
        chunks = [name for name in directory_listing(self.backup_dir)
                  if os.path.basename(name).startswith("chunk-")]
        self.assertTrue(chunks, "no chunk objects under %s" % self.backup_dir)
        self.assertTrue(all(name.startswith("backup-%s/" % backup_id) for name in chunks), chunks)

        # The volume changes after the copies were made: none of them may follow.
        new = h.write_pattern(source_path, "new", PATTERN_OFFSETS, PATTERN_LENGTH)
        from_snapshot_id = self.create_available(1, "precious-from-snap",
                                                 snapshot_id=snapshot_id)

        restored = self.restore(backup_id, name="precious-restored")
        restored_id = restored["volume_id"]
        self.assertEqual(restored["volume_name"], "precious-restored", restored)
        self.assertNotIn(restored_id, (source_id, clone_id, from_snapshot_id))
        self.assertIn(d.show_volume(restored_id)["status"], ("restoring-backup", "available"))
        d.wait_for_status(restored_id, "available")
        self.assertEqual(d.show_volume(restored_id)["size"], 1)
        self.assertEqual(self.wait_for_backup(backup_id, "available"), "available")

        self.assertImage(source_path, h.GIB, old + new, "original (new pattern)")
        self.assertImage(d.snapshot_file(snapshot_id), h.GIB, old, "snapshot")
        self.assertImage(d.volume_file(from_snapshot_id), h.GIB, old, "volume from snapshot")
        self.assertImage(d.volume_file(clone_id), h.GIB, old, "clone")
        self.assertImage(d.volume_file(restored_id), h.GIB, old, "restored volume")

        # A restored volume is a volume like any other; the backup goes with backup-delete.
        self.assertEqual(self.api("DELETE", "volumes/%s" % restored_id).status, 202)
        d.wait_for_status(restored_id, None)
        self.cli("backup-delete", backup_id)
        self.assertBackupGone(backup_id)
        self.assertEqual(directory_listing(self.backup_dir), {})
        listed = self.api("GET", "backups/detail").json()["backups"]
        self.assertFalse([b for b in listed if b["id"] == backup_id], listed)

    def test_incremental_backup_and_restore_to_an_existing_volume(self):
        d = self.daemon
        source_id = self.create_available(1, "incremental-source")
        source_path = d.volume_file(source_id)
        base = h.write_pattern(source_path, "base", PATTERN_OFFSETS, PATTERN_LENGTH)
        full = self.backup_available(source_id, "full", cli=False)

        change = h.write_pattern(source_path, "change", CHANGE_OFFSETS, CHANGE_LENGTH)
        incremental = self.backup_available(source_id, "incremental", incremental=True)
        self.assertTrue(incremental["is_incremental"], incremental)
        self.assertFalse(self.show_backup(full["id"])["is_incremental"])
        self.assertTrue(self.show_backup(full["id"])["has_dependent_backups"])
        # The incremental stored only what changed.
        self.assertLess(incremental["object_count"], full["object_count"], (incremental, full))

        # The source moves on again; each backup restores its own time.
        later = h.write_pattern(source_path, "later", PATTERN_OFFSETS, PATTERN_LENGTH)

        # Restore into existing volumes, which hold other data: all of it must go.
        targets = {}
        for name in ("incremental-target", "full-target"):
            targets[name] = self.create_available(1, name)
            h.write_pattern(d.volume_file(targets[name]), name, (5 * MIB, 900 * MIB), MIB)
        for backup, target, cli in ((incremental, targets["incremental-target"], True),
                                    (full, targets["full-target"], False)):
            self.restore(backup["id"], volume_id=target, cli=cli)
            self.assertIn(d.show_volume(target)["status"], ("restoring-backup", "available"))
            d.wait_for_status(target, "available")
            self.assertEqual(self.wait_for_backup(backup["id"], "available"), "available")

        self.assertImage(d.volume_file(targets["incremental-target"]), h.GIB, base + change,
                         "restored incremental")
        self.assertImage(d.volume_file(targets["full-target"]), h.GIB, base, "restored full")
        self.assertImage(source_path, h.GIB, base + change + later, "source")

        # The full backup cannot go while the incremental depends on it.
        resp = self.assertRefused(400, "badRequest", "DELETE", "backups/%s" % full["id"])
        self.assertIn("ncremental", resp.json()["badRequest"]["message"], resp)
        self.assertEqual(self.show_backup(full["id"])["status"], "available")
        # Newest first, it can.
        self.assertEqual(self.api("DELETE", "backups/%s" % incremental["id"]).status, 202)
        self.assertBackupGone(incremental["id"])
        self.assertFalse(self.show_backup(full["id"])["has_dependent_backups"])
        self.assertEqual(self.api("DELETE", "backups/%s" % full["id"]).status, 202)
        self.assertBackupGone(full["id"])
        self.assertEqual(directory_listing(self.backup_dir), {})

    def test_bad_input_is_refused_and_changes_nothing(self):
        big_id = self.create_available(2, "big")
        backup = self.backup_available(big_id, "big-backup", cli=False)
        small_id = self.create_available(1, "small")

        # Restore into a volume smaller than the backup.
        resp = self.assertRefused(400, "badRequest", "POST", "backups/%s/restore" % backup["id"],
                                  {"restore": {"volume_id": small_id}})
        self.assertIn("small", resp.json()["badRequest"]["message"], resp)
        before = self.fingerprint()
        refused = self.cli("backup-restore", "--volume", small_id, backup["id"], check=False)
        self.assertNotEqual(refused.returncode, 0, refused)
        self.assertIn("400", refused.stdout + refused.stderr, refused)
        self.assertEqual(before, self.fingerprint(), "the refused CLI restore changed state")
        self.assertEqual(self.show_backup(backup["id"])["status"], "available")
        self.assertVolumeStatus(small_id, "available")

        # Unknown backup and volume.
        for method, path, body in (
            ("GET", "backups/%s" % MISSING_ID, None),
            ("DELETE", "backups/%s" % MISSING_ID, None),
            ("POST", "backups/%s/restore" % MISSING_ID, {"restore": {"volume_id": small_id}}),
            ("POST", "backups", {"backup": {"volume_id": MISSING_ID}}),
        ):
            with self.subTest(method=method, path=path):
                resp = self.assertRefused(404, "itemNotFound", method, path, body)
                self.assertIn(MISSING_ID, resp.json()["itemNotFound"]["message"], resp)
        self.assertRefused(404, "itemNotFound", "POST", "backups/%s/restore" % backup["id"],
                           {"restore": {"volume_id": MISSING_ID}})
        self.assertEqual(self.show_backup(backup["id"])["status"], "available")
        # An incremental with no full backup to build on.
        self.assertRefused(400, "badRequest", "POST", "backups",
                           {"backup": {"volume_id": small_id, "incremental": True}})

        # A backup of an in-use volume needs --force.
        resp = self.api("POST", "attachments", {
            "attachment": {"volume_uuid": small_id, "instance_uuid": SERVER_ID,
                           "connector": CONNECTOR}
        })
        self.assertEqual(resp.status, 200, resp)
        attachment_id = resp.json()["attachment"]["id"]
        done = self.api("POST", "attachments/%s/action" % attachment_id, {"os-complete": {}})
        self.assertEqual(done.status, 204, done)
        self.assertVolumeStatus(small_id, "in-use")
        resp = self.assertRefused(400, "badRequest", "POST", "backups",
                                  {"backup": {"volume_id": small_id}})
        self.assertIn("force", resp.json()["badRequest"]["message"], resp)
        before = self.fingerprint()
        refused = self.cli("backup-create", small_id, check=False)
        self.assertNotEqual(refused.returncode, 0, refused)
        self.assertIn("400", refused.stdout + refused.stderr, refused)
        self.assertEqual(before, self.fingerprint(), "the refused CLI backup changed state")
        # Restoring onto an attached volume is refused too.
        self.assertRefused(400, "badRequest", "POST", "backups/%s/restore" % backup["id"],
                           {"restore": {"volume_id": small_id}})
        # With --force it is taken, and the volume is in use again after it.
        forced = self.backup_available(small_id, "forced", force=True)
        self.assertEqual(forced["volume_id"], small_id, forced)
        self.assertVolumeStatus(small_id, "in-use")

    def test_corrupted_chunk_is_never_restored_silently(self):
        d = self.daemon
        source_id = self.create_available(1, "to-corrupt")
        h.write_pattern(d.volume_file(source_id), "corrupt", PATTERN_OFFSETS, PATTERN_LENGTH)
        backup = self.backup_available(source_id, "to-corrupt", cli=False)
        backup_path = os.path.join(self.backup_dir, "backup-%s" % backup["id"])
        chunks = sorted(name for name in os.listdir(backup_path)
                        if name.startswith("chunk-") and name.endswith(".z"))
        self.assertTrue(chunks, os.listdir(backup_path))
        victim = chunks[len(chunks) // 2]
        victim_path = os.path.join(backup_path, victim)
        with open(victim_path, "r+b") as f:
            f.seek(os.stat(victim_path).st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))

        # To a new volume and to an existing one: the restore fails and the volume says so;
        # the backup is available again (its other chunks are still good).
        target_id = self.create_available(1, "corrupt-target")
        restored_id = self.restore(backup["id"], cli=False)["volume_id"]
        self.assertEqual(d.wait_for_status(restored_id, ("available", "error_restoring")),
                         "error_restoring", d.stderr_tail())
        self.assertVolumeStatus(restored_id, "error_restoring")
        self.assertEqual(self.wait_for_backup(backup["id"], ("available", "error")),
                         "available")
        self.restore(backup["id"], volume_id=target_id, cli=False)
        self.assertEqual(d.wait_for_status(target_id, ("available", "error_restoring")),
                         "error_restoring", d.stderr_tail())
        self.assertVolumeStatus(target_id, "error_restoring")
        self.assertEqual(self.wait_for_backup(backup["id"], ("available", "error")),
                         "available")
        # The daemon's log names the corrupt chunk.
        log = d.stderr_tail(lines=100000)
        self.assertIn("is corrupt: chunk %s" % victim[len("chunk-"):-len(".z")], log)

        # Cinder lets a volume that failed to restore be deleted (error_restoring is in its
        # list of deletable statuses).
        for volume_id in (restored_id, target_id):
            resp = self.api("DELETE", "volumes/%s" % volume_id)
            self.assertEqual(resp.status, 202, resp)
            d.wait_for_status(volume_id, None)


if __name__ == "__main__":
    h.main()
