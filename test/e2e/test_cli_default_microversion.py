"""End-to-end: the `cinder` CLI works unpinned, at the microversion it negotiates by itself.

Goal: a user's `cinder` has no `--os-volume-api-version`: it asks the server's range and speaks
the highest version both support (python3-cinderclient 9 knows up to 3.70, as Clinker). Every
command here runs that way: create, list, show, rename, metadata on create, snapshot create (the
CLI sends `"force": null` when --force is not given, which Cinder takes as "not given"),
snapshot list / show / delete, a volume from the snapshot, reset-state (admin), delete, and
`cinder api-version` itself.

Method: one noauth daemon per test (every caller is an admin); the CLI with no version flag and
no OS_* variables; every wait bounded.
"""

import sys
import unittest

sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

WAIT_S = 30.0


class CliDefaultMicroversionTest(h.DaemonTestCase):

    def cinder(self, *args, **kwargs):
        return self.daemon.cinder(*args, microversion=None, **kwargs)

    def wait_volume(self, volume_id, status):
        def reached():
            resp = self.daemon.request("GET", "volumes/" + volume_id)
            if status is None:
                return resp.status == 404
            return resp.status == 200 and resp.json()["volume"]["status"] == status

        h.wait_for(reached, WAIT_S, "volume %s %s" % (volume_id, status or "gone"))

    def wait_snapshot(self, snapshot_id, status):
        def reached():
            resp = self.daemon.request("GET", "snapshots/" + snapshot_id)
            if status is None:
                return resp.status == 404
            return resp.status == 200 and resp.json()["snapshot"]["status"] == status

        h.wait_for(reached, WAIT_S, "snapshot %s %s" % (snapshot_id, status or "gone"))

    def test_the_cli_negotiates_our_highest_microversion(self):
        out = self.cinder("api-version").rows()
        self.assertEqual(out[0]["Version"], "3.70")
        self.assertEqual(out[0]["Min_version"], "3.0")
        # The CLI's own highest version is what it sends, and the server answers at it.
        listed = self.cinder("--debug", "list")
        debug = listed.stdout + listed.stderr
        self.assertIn('"OpenStack-API-Version: volume 3.70"', debug)
        self.assertIn("RESP: [200]", debug)
        self.assertIn("OpenStack-API-Version: volume 3.70 Vary", debug)

    def test_volume_and_snapshot_commands(self):
        created = self.cinder("create", "1", "--name", "cli-default", "--metadata",
                              "purpose=test").properties()
        volume_id = created["id"]
        self.assertEqual(created["name"], "cli-default")
        self.wait_volume(volume_id, "available")

        listed = {row["ID"]: row for row in self.cinder("list").rows()}
        self.assertEqual(listed[volume_id]["Status"], "available")
        shown = self.cinder("show", volume_id).properties()
        self.assertEqual(shown["size"], "1")
        self.assertIn("purpose", shown["metadata"])
        # 3.48+ and 3.65+ attributes, shown as the CLI gets them.
        self.assertEqual(shown["shared_targets"], "False")
        self.assertEqual(shown["consumes_quota"], "True")

        self.cinder("rename", volume_id, "cli-renamed")
        self.assertEqual(self.cinder("show", volume_id).properties()["name"], "cli-renamed")

        # --force not given: the CLI sends "force": null.
        snapshot = self.cinder("snapshot-create", volume_id, "--name", "cli-snap").properties()
        snapshot_id = snapshot["id"]
        self.wait_snapshot(snapshot_id, "available")
        rows = {row["ID"]: row for row in self.cinder("snapshot-list").rows()}
        self.assertEqual(rows[snapshot_id]["Status"], "available")
        self.assertEqual(self.cinder("snapshot-show", snapshot_id).properties()["volume_id"],
                         volume_id)

        from_snapshot = self.cinder("create", "--snapshot-id", snapshot_id, "--name",
                                    "from-snap").properties()
        self.wait_volume(from_snapshot["id"], "available")

        # An admin's reset to an operation's status: shown as asked, and a forced delete ends it.
        self.cinder("snapshot-reset-state", "--state", "creating", snapshot_id)
        self.wait_snapshot(snapshot_id, "creating")
        self.cinder("reset-state", "--state", "maintenance", from_snapshot["id"])
        self.wait_volume(from_snapshot["id"], "maintenance")
        self.cinder("force-delete", from_snapshot["id"])
        self.wait_volume(from_snapshot["id"], None)

        self.cinder("snapshot-delete", "--force", snapshot_id)
        self.wait_snapshot(snapshot_id, None)
        self.cinder("delete", volume_id)
        self.wait_volume(volume_id, None)


if __name__ == "__main__":
    h.main()
