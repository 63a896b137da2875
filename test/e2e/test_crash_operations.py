"""End-to-end: the daemon dies (SIGKILL) in the middle of each operation, just before or just
after the back-end call; after a restart every resource ends where the stuck-job rules say, and
nothing is done twice.

Goal: prove the stuck-job rules (domain/stuck_job.cc) across a real process crash, for every
operation of this release and both sides of the back-end call:
- a create (volume, clone, snapshot) interrupted ends `error`, with a reason in status_reason;
- a delete (volume, snapshot) interrupted is redone and ends deleted, its image file gone;
- an extend interrupted is redone (it converges) and ends available at the new size;
- no back-end call changes a resource twice: in the driver journal (one line per finished call,
  with `changed` saying whether it changed anything) each (operation, resource) has at most one
  line with changed=true;
- no job is lost or stuck: the embedded queue's table (queue_jobs) ends empty, and the restarted
  daemon still runs jobs (what is left can be deleted, and its files go).

Method: clinkerd reads CLINKER_TEST_FAULT_POINT=<operation>:<before_driver|after_driver> and
SIGKILLs itself when a job reaches that point (before: the in-progress status is written and the
back-end not called; after: the back-end call returned and the final status is not written). Per
case, on one state dir: a daemon without the fault sets up what the operation needs and stops
(SIGTERM); a daemon with the fault armed gets the request and must die of SIGKILL within a
bound; the journal then shows the back-end call did not (before) or did (after) finish; a
daemon without the fault restarts on the same state dir and the resource must reach its final
status within a bound and stay there.
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

# Per case: the operation armed, and the status the interrupted resource must end in.
CASES = {
    "create_volume": ("create_volume", "error"),
    "clone_volume": ("create_volume", "error"),
    "delete_volume": ("delete_volume", "deleted"),
    "extend_volume": ("extend_volume", "available"),
    "create_snapshot": ("create_snapshot", "error"),
    "delete_snapshot": ("delete_snapshot", "deleted"),
}
# The driver journal's key naming the resource of each operation.
JOURNAL_KEY = {
    "create_volume": "volume_id",
    "delete_volume": "volume_id",
    "extend_volume": "volume_id",
    "create_snapshot": "snapshot_id",
    "delete_snapshot": "snapshot_id",
}
# DB statuses: where a job stops (at rest), and where the fault points leave it.
FINAL_STATUSES = ("available", "error", "error_deleting", "error_extending", "deleted")
IN_PROGRESS_STATUSES = ("creating", "deleting", "extending")


class CrashOperationsTest(unittest.TestCase):

    def setUp(self):
        self.daemon = h.Daemon()
        self.addCleanup(self.daemon.close)
        self.args = ["--driver-journal", self.daemon.journal_path]

    # ---- helpers ------------------------------------------------------------------------------

    def send(self, method, path, body=None):
        """Sends a request the armed daemon may die while answering: None if the connection
        broke, else the Response, which must be 202."""
        try:
            resp = self.daemon.request(method, path, body=body)
        except (OSError, http.client.HTTPException):
            return None
        self.assertEqual(resp.status, 202, resp)
        return resp

    def row(self, kind, resource_id):
        d = self.daemon
        row = d.db_snapshot(resource_id) if kind == "snapshot" else d.db_volume(resource_id)
        self.assertIsNotNone(row, "no %s row %s" % (kind, resource_id))
        return row

    def image(self, kind, resource_id):
        d = self.daemon
        return d.snapshot_file(resource_id) if kind == "snapshot" else d.volume_file(resource_id)

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

    def journal_entries(self, operation, resource_id):
        key = JOURNAL_KEY[operation]
        return [
            e for e in self.daemon.journal()
            if e.get("op") == operation and e.get(key) == resource_id
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
        """The restarted daemon still runs jobs: the resource can be deleted, its file goes."""
        d = self.daemon
        resp = d.request("DELETE", "%ss/%s" % (kind, resource_id))
        self.assertEqual(resp.status, 202, resp)
        if kind == "snapshot":
            d.wait_for_snapshot_status(resource_id, None)
        else:
            d.wait_for_status(resource_id, None)
        h.wait_for(lambda: not os.path.exists(self.image(kind, resource_id)), h.STATUS_TIMEOUT_S,
                   "image of %s %s to be removed" % (kind, resource_id))

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

    # ---- one case ----------------------------------------------------------------------------

    def run_case(self, case, point):
        d = self.daemon
        operation, final = CASES[case]
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
        done = self.journal_entries(operation, target)
        if point == "before_driver":
            self.assertEqual(done, [], "the back-end call finished before the crash")
        else:
            self.assertEqual([e["changed"] for e in done], [True], done)

        d.start(self.args)
        row = self.settle(kind, target, final)
        if final == "deleted":
            self.assertEqual(row["deleted"], 1, row)
        elif final.startswith("error"):
            self.assertEqual(row["deleted"], 0, row)
            self.assertTrue(row["status_reason"], "%s without a reason: %s" % (final, row))
        else:
            self.assertEqual(row["deleted"], 0, row)
        shown = d.show_volume(target) if kind == "volume" else d.show_snapshot(target)
        self.assertEqual(None if shown is None else shown["status"],
                         None if final == "deleted" else final, shown)
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
