"""End-to-end: the daemon dies (SIGKILL) in the middle of each operation, just before or just
after the back-end call; after a restart every resource ends where the stuck-job rules say, and
nothing is done twice.

Goal: prove the stuck-job rules (domain/stuck_job.cc, with the redoable column of the operation
table in domain/status.cc) across a real process crash, for every operation of this release and
both sides of the back-end call:
- a create (volume, clone, snapshot, backup) interrupted ends `error`, with a reason in
  status_reason; what it read (the source volume, the volume backed up) is usable again;
- a delete (volume, snapshot, backup) interrupted is redone and ends deleted, its image file or
  backup directory gone;
- an extend interrupted is redone (it converges) and ends available at the new size;
- an attach (export) interrupted is redone: the attachment ends `attaching` with its connection
  info, as after any export (the client completes it), and the volume `attaching`;
- a detach interrupted is redone: the attachment ends detached (gone), the volume available;
- a restore interrupted is not redone: the volume ends `error_restoring`, the backup available;
- the back-end call runs once more after the restart for a redoable operation and never for the
  others, and no call changes a resource twice: the journal (`--driver-journal`: one line per
  finished call of the storage driver and of the backup store, with `changed` saying whether it
  changed anything; the file back-end exports nothing, so its connection calls never do) has
  exactly the lines that says, and each (operation, resource) at most one with changed=true;
- no job is lost or stuck: the embedded queue's table (queue_jobs) ends empty, and the restarted
  daemon still runs jobs (what is left can be deleted, and its files go; an interrupted attach
  can be completed and detached; a volume whose detach was interrupted can be attached again; a
  backup whose restore was interrupted can be restored again).

Method: clinkerd reads CLINKER_TEST_FAULT_POINT=<operation>:<before_driver|after_driver> and
SIGKILLs itself when a job reaches that point (before: the in-progress status is written and the
back-end not called; after: the back-end call returned and the final status is not written). Per
case, on one state dir: a daemon without the fault sets up what the operation needs and stops
(SIGTERM); a daemon with the fault armed gets the request and must die of SIGKILL within a
bound; the journal then shows the back-end call did not (before) or did (after) finish; a
daemon without the fault restarts on the same state dir and the resource must reach its final
status within a bound and stay there. Requests that wait for their job inside the API (attach and
detach) lose their connection when the daemon dies; the others are usually answered (202)
first, and either way the resource is then found by id or name.
Attachments use the 3.27+ API (3.44 for os-complete); backups and restores are the 3.0 API.
"""

import http.client
import os
import sys
import time
import unittest

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

FAULT_ENV = "CLINKER_TEST_FAULT_POINT"
POINTS = ("before_driver", "after_driver")
# How long an armed daemon may take to reach its fault point and die.
FAULT_TIMEOUT_S = 20.0
# How long the restarted daemon may take to settle what the dead one left.
RECOVERY_TIMEOUT_S = 30.0
# How long a settled status must stay settled to count as final.
STABLE_FOR_S = 0.5

# The attachments API version; the other requests use the harness's default.
MICROVERSION = h.ATTACHMENTS_MICROVERSION
SERVER_ID = "5e5c1a4e-0000-4000-8000-0000000000d4"
CONNECTOR = {"initiator": "iqn.2004-10.org.example:crash-host", "ip": "127.0.0.1",
             "host": "crash-host", "platform": "x86_64", "os_type": "linux2",
             "multipath": False, "mountpoint": "/dev/vdb"}
MIB = 1 << 20
# Data in volumes that are backed up, so that backups store objects: two 64 KiB patterns.
PATTERN_OFFSETS = (0, 512 * MIB + 12345)
PATTERN_LENGTH = 64 * 1024

# Per case: the operation armed, and the status the interrupted resource must end in.
CASES = {
    "create_volume": ("create_volume", "error"),
    "clone_volume": ("create_volume", "error"),
    "delete_volume": ("delete_volume", "deleted"),
    "extend_volume": ("extend_volume", "available"),
    "create_snapshot": ("create_snapshot", "error"),
    "delete_snapshot": ("delete_snapshot", "deleted"),
    "attach_volume": ("attach_volume", "attaching"),
    "detach_volume": ("detach_volume", "detached"),
    "create_backup": ("create_backup", "error"),
    "delete_backup": ("delete_backup", "deleted"),
    "restore_backup": ("restore_backup", "error_restoring"),
}
# The operations the stuck-job rules redo (redoable in domain/status.cc): their back-end call
# runs once more after the restart. The others are set to their failed status and never redone.
REDONE = ("delete_volume", "extend_volume", "delete_snapshot", "attach_volume", "detach_volume",
          "delete_backup")
# The journal line of an operation's back-end call, where its name differs from the operation's.
JOURNAL_CALL = {
    "attach_volume": "initialize_connection",
    "detach_volume": "terminate_connection",
}
# The journal's key naming the resource of each call.
JOURNAL_KEY = {
    "create_volume": "volume_id",
    "delete_volume": "volume_id",
    "extend_volume": "volume_id",
    "create_snapshot": "snapshot_id",
    "delete_snapshot": "snapshot_id",
    "initialize_connection": "volume_id",
    "terminate_connection": "volume_id",
    "create_backup": "backup_id",
    "delete_backup": "backup_id",
    "restore_backup": "target_path",
}
# What a call that did its work says in `changed`: the file back-end exports nothing, so its
# connection calls never change anything.
CHANGED_WHEN_DONE = {"initialize_connection": False, "terminate_connection": False}
# DB statuses: where a job stops (at rest), and where the fault points leave it.
FINAL_STATUSES = ("available", "error", "error_deleting", "error_extending", "deleted",
                  "attaching", "error_attaching", "detached", "error_detaching",
                  "error_restoring")
IN_PROGRESS_STATUSES = ("creating", "deleting", "extending", "connecting", "detaching",
                        "restoring")
# Final statuses of a resource that is gone (soft-deleted row, 404 in the API).
GONE_STATUSES = ("deleted", "detached")


class CrashOperationsTest(unittest.TestCase):

    def setUp(self):
        self.daemon = h.Daemon()
        self.addCleanup(self.daemon.close)
        self.args = ["--driver-journal", self.daemon.journal_path]

    # ---- helpers ------------------------------------------------------------------------------

    def send(self, method, path, body=None, expect=202, microversion=h.DEFAULT_MICROVERSION):
        """Sends a request the armed daemon may die while answering: None if the connection
        broke, else the Response, which must have status `expect`."""
        try:
            resp = self.daemon.request(method, path, body=body, microversion=microversion)
        except (OSError, http.client.HTTPException):
            return None
        self.assertEqual(resp.status, expect, resp)
        return resp

    def api(self, method, path, body=None, expect=None):
        """A request at the attachments' microversion; asserts the status when `expect`."""
        resp = self.daemon.request(method, path, body=body, microversion=MICROVERSION)
        if expect is not None:
            self.assertEqual(resp.status, expect, "%r\n%s" % (resp, self.daemon.stderr_tail()))
        return resp

    def row(self, kind, resource_id):
        d = self.daemon
        read = {"volume": d.db_volume, "snapshot": d.db_snapshot, "attachment": d.db_attachment,
                "backup": d.db_backup}[kind]
        row = read(resource_id)
        self.assertIsNotNone(row, "no %s row %s" % (kind, resource_id))
        return row

    def show(self, kind, resource_id):
        """The API view of a resource, or None on 404."""
        d = self.daemon
        return {"volume": d.show_volume, "snapshot": d.show_snapshot,
                "attachment": d.show_attachment, "backup": d.show_backup}[kind](resource_id)

    def image(self, kind, resource_id):
        """What the resource is on the back-end: an image file, or a backup's directory."""
        d = self.daemon
        return {"volume": d.volume_file, "snapshot": d.snapshot_file,
                "backup": d.backup_path}[kind](resource_id)

    def id_by_name(self, table, name):
        rows = self.daemon.db_rows("SELECT id FROM %s WHERE display_name = ?" % table, (name,))
        self.assertEqual(len(rows), 1, "%s rows named %s: %s" % (table, name, rows))
        return rows[0]["id"]

    def available_volume(self, name, size=1):
        d = self.daemon
        volume_id = d.create_volume(size=size, name=name)["id"]
        d.wait_for_status(volume_id, "available")
        return volume_id

    def available_snapshot(self, volume_id, name):
        d = self.daemon
        snapshot_id = d.create_snapshot(volume_id, name=name)["id"]
        d.wait_for_snapshot_status(snapshot_id, "available")
        return snapshot_id

    def volume_with_data(self, name):
        """An available volume with patterns written into it; returns (id, writes)."""
        volume_id = self.available_volume(name)
        writes = h.write_pattern(self.daemon.volume_file(volume_id), name, PATTERN_OFFSETS,
                                 PATTERN_LENGTH)
        return volume_id, writes

    def available_backup(self, volume_id, name):
        d = self.daemon
        resp = d.request("POST", "backups", body={"backup": {"volume_id": volume_id, "name": name}})
        self.assertEqual(resp.status, 202, resp)
        backup_id = resp.json()["backup"]["id"]
        d.wait_for_backup_status(backup_id, "available")
        d.wait_for_status(volume_id, "available")
        return backup_id

    def restored_volume(self, backup_id, name):
        """Restores the backup to a new volume and waits until it is available; returns its id."""
        d = self.daemon
        resp = d.request("POST", "backups/%s/restore" % backup_id,
                         body={"restore": {"name": name}})
        self.assertEqual(resp.status, 202, resp)
        volume_id = resp.json()["restore"]["volume_id"]
        d.wait_for_status(volume_id, "available")
        d.wait_for_backup_status(backup_id, "available")
        return volume_id

    def assert_volume(self, volume_id, status, attach_status):
        """The volume's status in the API and its row, and its row's attach_status."""
        shown = self.daemon.show_volume(volume_id)
        self.assertEqual(shown["status"], status, shown)
        row = self.row("volume", volume_id)
        self.assertEqual((row["status"], row["attach_status"]), (status, attach_status), row)

    def reserved_attachment(self, volume_id):
        """An attachment without a connector (what Nova asks first); returns its id."""
        resp = self.api("POST", "attachments",
                        {"attachment": {"volume_uuid": volume_id, "instance_uuid": SERVER_ID}},
                        expect=200)
        self.assertEqual(resp.json()["attachment"]["status"], "reserved", resp)
        return resp.json()["attachment"]["id"]

    def attach(self, volume_id):
        """Exports the volume to CONNECTOR and completes the attachment; returns its id."""
        resp = self.api("POST", "attachments", {
            "attachment": {"volume_uuid": volume_id, "instance_uuid": SERVER_ID,
                           "connector": CONNECTOR}
        }, expect=200)
        attachment_id = resp.json()["attachment"]["id"]
        self.complete(attachment_id, volume_id)
        return attachment_id

    def complete(self, attachment_id, volume_id):
        self.api("POST", "attachments/%s/action" % attachment_id, {"os-complete": {}}, expect=204)
        self.assertEqual(self.daemon.show_attachment(attachment_id)["status"], "attached")
        self.assert_volume(volume_id, "in-use", "attached")

    def detach(self, attachment_id, volume_id):
        self.api("DELETE", "attachments/%s" % attachment_id, expect=200)
        self.assertIsNone(self.daemon.show_attachment(attachment_id))
        self.assert_volume(volume_id, "available", "detached")

    def backend_calls(self, operation, context, target):
        """The journal lines of the back-end call `operation` makes for `target`."""
        call = JOURNAL_CALL.get(operation, operation)
        if call in ("initialize_connection", "terminate_connection"):
            # Backups connect too, as host "clinker-backup": only the attachment's host counts.
            wanted = {"volume_id": context["volume"], "host": CONNECTOR["host"]}
        elif call == "restore_backup":
            wanted = {"target_path": self.daemon.volume_file(target)}
        else:
            wanted = {JOURNAL_KEY[call]: target}
        return [
            e for e in self.daemon.journal()
            if e.get("op") == call and all(e.get(k) == v for k, v in wanted.items())
        ]

    def settle(self, kind, resource_id, final):
        """Waits (bounded) for the DB row to reach `final`, then checks it stays there."""
        d = self.daemon
        h.wait_for(lambda: self.row(kind, resource_id)["status"] in FINAL_STATUSES,
                   RECOVERY_TIMEOUT_S, "%s %s to reach a final status" % (kind, resource_id))
        time.sleep(STABLE_FOR_S)
        row = self.row(kind, resource_id)
        self.assertEqual(row["status"], final, "%s\n%s" % (row, d.stderr_tail()))
        return row

    def delete_and_wait(self, kind, resource_id):
        """The restarted daemon still runs jobs: the resource can be deleted, its file (or
        backup directory) goes."""
        d = self.daemon
        resp = d.request("DELETE", "%ss/%s" % (kind, resource_id))
        self.assertEqual(resp.status, 202, resp)
        wait = {"volume": d.wait_for_status, "snapshot": d.wait_for_snapshot_status,
                "backup": d.wait_for_backup_status}[kind]
        wait(resource_id, None)
        h.wait_for(lambda: not os.path.exists(self.image(kind, resource_id)), h.STATUS_TIMEOUT_S,
                   "%s of %s %s to be removed" % (self.image(kind, resource_id), kind,
                                                  resource_id))

    def assert_nothing_ran_twice(self):
        """At most one journal line with changed=true per (operation, resource)."""
        changed = {}
        for entry in self.daemon.journal():
            if entry.get("changed"):
                op = entry.get("op")
                key = (op, entry.get(JOURNAL_KEY.get(op, "volume_id")))
                changed[key] = changed.get(key, 0) + 1
        twice = {key: n for key, n in changed.items() if n > 1}
        self.assertEqual(twice, {}, "changed more than once:\n%s" % self.daemon.journal())

    def assert_queue_drains(self):
        d = self.daemon
        h.wait_for(lambda: not d.db_rows("SELECT id, topic, state FROM queue_jobs"),
                   RECOVERY_TIMEOUT_S, "the job queue to drain")

    # ---- the cases: set up, trigger (returns (kind, id) of the target), check -----------------

    def setup_create_volume(self):
        return {}

    def trigger_create_volume(self, context):
        self.send("POST", "volumes", {"volume": {"size": 1, "name": "crash-create"}})
        return "volume", self.id_by_name("volumes", "crash-create")

    def check_create_volume(self, context, volume_id, point):
        self.delete_and_wait("volume", volume_id)

    def setup_clone_volume(self):
        return {"source": self.available_volume("crash-clone-source")}

    def trigger_clone_volume(self, context):
        self.send("POST", "volumes",
                  {"volume": {"source_volid": context["source"], "name": "crash-clone"}})
        return "volume", self.id_by_name("volumes", "crash-clone")

    def check_clone_volume(self, context, clone_id, point):
        # The source only was read: it is untouched and usable.
        source = self.row("volume", context["source"])
        self.assertEqual((source["status"], source["deleted"]), ("available", 0), source)
        self.assertTrue(os.path.isfile(self.image("volume", context["source"])))
        self.delete_and_wait("volume", clone_id)
        self.delete_and_wait("volume", context["source"])

    def setup_delete_volume(self):
        return {"volume": self.available_volume("crash-delete")}

    def trigger_delete_volume(self, context):
        self.send("DELETE", "volumes/%s" % context["volume"])
        return "volume", context["volume"]

    def check_delete_volume(self, context, volume_id, point):
        self.assertFalse(os.path.exists(self.image("volume", volume_id)))
        self.assertEqual(self.daemon.show_volume(volume_id), None)

    def setup_extend_volume(self):
        return {"volume": self.available_volume("crash-extend")}

    def trigger_extend_volume(self, context):
        self.send("POST", "volumes/%s/action" % context["volume"], {"os-extend": {"new_size": 2}})
        return "volume", context["volume"]

    def check_extend_volume(self, context, volume_id, point):
        row = self.row("volume", volume_id)
        # Redone to the end: the recorded size and the file agree on the new size.
        self.assertEqual(row["size_gib"], 2, row)
        self.assertIsNone(row["pending_size_gib"], row)
        self.assertEqual(os.stat(self.image("volume", volume_id)).st_size, 2 * h.GIB)
        self.delete_and_wait("volume", volume_id)

    def setup_create_snapshot(self):
        return {"volume": self.available_volume("crash-snap-volume")}

    def trigger_create_snapshot(self, context):
        self.send("POST", "snapshots",
                  {"snapshot": {"volume_id": context["volume"], "name": "crash-snap"}})
        return "snapshot", self.id_by_name("snapshots", "crash-snap")

    def check_create_snapshot(self, context, snapshot_id, point):
        volume = self.row("volume", context["volume"])
        self.assertEqual(volume["status"], "available", volume)
        self.delete_and_wait("snapshot", snapshot_id)
        self.delete_and_wait("volume", context["volume"])

    def setup_delete_snapshot(self):
        volume_id = self.available_volume("crash-snap-delete-volume")
        return {"volume": volume_id, "snapshot": self.available_snapshot(volume_id, "doomed")}

    def trigger_delete_snapshot(self, context):
        self.send("DELETE", "snapshots/%s" % context["snapshot"])
        return "snapshot", context["snapshot"]

    def check_delete_snapshot(self, context, snapshot_id, point):
        self.assertFalse(os.path.exists(self.image("snapshot", snapshot_id)))
        self.assertEqual(self.daemon.show_snapshot(snapshot_id), None)
        # Its volume can go now that the snapshot is gone.
        self.delete_and_wait("volume", context["volume"])

    def setup_attach_volume(self):
        volume_id = self.available_volume("crash-attach")
        return {"volume": volume_id, "attachment": self.reserved_attachment(volume_id)}

    def trigger_attach_volume(self, context):
        # The update waits for the export inside the API: the daemon dies before it answers.
        self.send("PUT", "attachments/%s" % context["attachment"],
                  {"attachment": {"connector": CONNECTOR}}, expect=200,
                  microversion=MICROVERSION)
        return "attachment", context["attachment"]

    def check_attach_volume(self, context, attachment_id, point):
        d = self.daemon
        volume_id = context["volume"]
        info = d.show_attachment(attachment_id)["connection_info"]
        self.assertEqual(info.get("driver_volume_type"), "local", info)
        self.assertTrue(os.path.samefile(info["data"]["device_path"], d.volume_file(volume_id)),
                        info)
        self.assert_volume(volume_id, "attaching", "attaching")
        # The client finishes the attach as usual, and can detach.
        self.complete(attachment_id, volume_id)
        self.detach(attachment_id, volume_id)
        self.delete_and_wait("volume", volume_id)

    def setup_detach_volume(self):
        volume_id = self.available_volume("crash-detach")
        return {"volume": volume_id, "attachment": self.attach(volume_id)}

    def trigger_detach_volume(self, context):
        # The delete waits for the detach inside the API: the daemon dies before it answers.
        self.send("DELETE", "attachments/%s" % context["attachment"], expect=200,
                  microversion=MICROVERSION)
        return "attachment", context["attachment"]

    def check_detach_volume(self, context, attachment_id, point):
        volume_id = context["volume"]
        self.assert_volume(volume_id, "available", "detached")
        self.assertTrue(os.path.isfile(self.image("volume", volume_id)))
        # The volume can be given to a host again.
        self.detach(self.attach(volume_id), volume_id)
        self.delete_and_wait("volume", volume_id)

    def setup_create_backup(self):
        return {"volume": self.volume_with_data("crash-backup-volume")[0]}

    def trigger_create_backup(self, context):
        self.send("POST", "backups",
                  {"backup": {"volume_id": context["volume"], "name": "crash-backup"}})
        return "backup", self.id_by_name("backups", "crash-backup")

    def check_create_backup(self, context, backup_id, point):
        volume_id = context["volume"]
        # The volume was only read: it is back from backing-up.
        self.assert_volume(volume_id, "available", "detached")
        manifest = os.path.join(self.image("backup", backup_id), "manifest.json")
        # After the store's call the backup is complete on disk, yet `error`: the rules do not
        # redo or trust an operation that is not redoable. Its delete removes it all the same.
        self.assertEqual(os.path.isfile(manifest), point == "after_driver", manifest)
        self.delete_and_wait("backup", backup_id)
        self.delete_and_wait("volume", volume_id)

    def setup_delete_backup(self):
        volume_id = self.volume_with_data("crash-backup-delete-volume")[0]
        return {"volume": volume_id, "backup": self.available_backup(volume_id, "doomed")}

    def trigger_delete_backup(self, context):
        self.send("DELETE", "backups/%s" % context["backup"])
        return "backup", context["backup"]

    def check_delete_backup(self, context, backup_id, point):
        self.assertFalse(os.path.exists(self.image("backup", backup_id)))
        self.assert_volume(context["volume"], "available", "detached")
        self.delete_and_wait("volume", context["volume"])

    def setup_restore_backup(self):
        volume_id, writes = self.volume_with_data("crash-restore-source")
        return {"volume": volume_id, "writes": writes,
                "backup": self.available_backup(volume_id, "crash-restore-backup")}

    def trigger_restore_backup(self, context):
        self.send("POST", "backups/%s/restore" % context["backup"],
                  {"restore": {"name": "crash-restore"}})
        return "volume", self.id_by_name("volumes", "crash-restore")

    def check_restore_backup(self, context, volume_id, point):
        d = self.daemon
        backup_id = context["backup"]
        # The backup was only read: it is available again, and no longer names the volume.
        self.assertEqual(d.show_backup(backup_id)["status"], "available")
        backup = self.row("backup", backup_id)
        self.assertEqual((backup["status"], backup["restore_volume_id"]), ("available", None),
                         backup)
        expected = h.model_digest(h.GIB, context["writes"])
        path = self.image("volume", volume_id)
        if point == "after_driver":
            # The data arrived before the crash; the volume says error_restoring all the same.
            self.assertEqual(h.content_digest(path), expected)
        else:
            self.assertFalse(os.path.exists(path), "the back-end was not called: no volume")
        # The backup restores again, to a new volume.
        again = self.restored_volume(backup_id, "crash-restore-again")
        self.assertEqual(h.content_digest(self.image("volume", again)), expected)
        for volume in (volume_id, again):
            self.delete_and_wait("volume", volume)
        self.delete_and_wait("backup", backup_id)
        self.delete_and_wait("volume", context["volume"])

    # ---- one case ----------------------------------------------------------------------------

    def run_case(self, case, point):
        d = self.daemon
        operation, final = CASES[case]
        call = JOURNAL_CALL.get(operation, operation)
        d.start(self.args)
        context = getattr(self, "setup_" + case)()
        self.assertEqual(d.stop(), 0, d.stderr_tail())

        fault = "%s:%s" % (operation, point)
        d.start(self.args, env={FAULT_ENV: fault})
        kind, target = getattr(self, "trigger_" + case)(context)
        self.assertEqual(d.wait_exit(FAULT_TIMEOUT_S), -9, d.stderr_tail())
        self.assertIn("fault_point_reached", d.stderr_tail(20), "the daemon died elsewhere")
        dead = self.row(kind, target)
        self.assertIn(dead["status"], IN_PROGRESS_STATUSES, dead)
        done = self.backend_calls(operation, context, target)
        # `changed` of each line expected: the crash's call, then the redo's, which finds the
        # work done if the crash's call finished it.
        did = CHANGED_WHEN_DONE.get(call, True)
        if point == "before_driver":
            expected = []
            self.assertEqual(done, [], "the back-end call finished before the crash")
        else:
            expected = [did]
            self.assertEqual([e["changed"] for e in done], expected, done)
        if operation in REDONE:
            expected.append(did and point == "before_driver")

        d.start(self.args)
        row = self.settle(kind, target, final)
        calls = self.backend_calls(operation, context, target)
        self.assertEqual([e["changed"] for e in calls], expected,
                         "back-end calls for %s %s:\n%s" % (kind, target, calls))
        if final in GONE_STATUSES:
            self.assertEqual(row["deleted"], 1, row)
        elif final.startswith("error"):
            self.assertEqual(row["deleted"], 0, row)
            self.assertTrue(row["status_reason"], "%s without a reason: %s" % (final, row))
        else:
            self.assertEqual(row["deleted"], 0, row)
        shown = self.show(kind, target)
        self.assertEqual(None if shown is None else shown["status"],
                         None if final in GONE_STATUSES else final, shown)
        getattr(self, "check_" + case)(context, target, point)
        self.assert_nothing_ran_twice()
        self.assert_queue_drains()


def _make_test(case, point):

    def test(self):
        self.run_case(case, point)

    test.__doc__ = "%s interrupted %s" % (case, point.replace("_", " the "))
    return test


for _case in CASES:
    for _point in POINTS:
        setattr(CrashOperationsTest, "test_%s_%s" % (_case, _point), _make_test(_case, _point))

if __name__ == "__main__":
    h.main()
