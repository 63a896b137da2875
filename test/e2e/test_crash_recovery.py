"""End-to-end: the daemon dies (SIGKILL) with a create job in flight; after a restart on the same
state dir the volume ends at rest and no job is lost.

Goal: prove the embedded queue and the stuck-job rules work across a real process crash:
- killed while the job is *running* (internal status `creating`): after the restart the volume
  must reach `available` (the job was redone) or `error` with a reason (the design's rule for a
  create stuck mid-way), and must not stay `creating`;
- killed while the job is still *queued* (`creating_queued`, nobody consumed it): after the
  restart the job runs and the volume becomes `available`.

Method: `--driver-delay-ms 3000` holds the create in the driver long enough to watch the row
(read-only sqlite3 on clinker.db) go to `creating` and SIGKILL the daemon inside that window. For
the queued case the first daemon runs `--role api` only, so nothing consumes the job. The second
daemon runs all roles, without the delay, on the same state dir. "No job lost" is checked twice:
the volume settles, and the embedded queue's table ends empty (every job acknowledged). Every
wait is bounded.
"""

import os
import sys
import time
import unittest

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

DRIVER_DELAY_MS = 3000
# How long a worker may take to start the queued create.
PICKUP_TIMEOUT_S = 10.0
# How long the restarted daemon may take to settle a job the dead one left behind.
RECOVERY_TIMEOUT_S = 30.0
# How long a settled status must stay settled to count as final.
STABLE_FOR_S = 1.0


class CrashRecoveryTest(unittest.TestCase):

    def setUp(self):
        self.daemon = h.Daemon()
        self.addCleanup(self.daemon.close)

    def assert_settles(self, volume_id, allowed):
        """Waits for a status in `allowed`, then checks it stays there; returns it."""
        d = self.daemon
        status = d.wait_for_status(volume_id, allowed, timeout_s=RECOVERY_TIMEOUT_S)
        time.sleep(STABLE_FOR_S)
        self.assertEqual(d.show_volume(volume_id)["status"], status,
                         "status changed after settling\n%s" % d.stderr_tail())
        row = d.db_volume(volume_id)
        self.assertIsNotNone(row, "no DB row for %s" % volume_id)
        self.assertEqual(row["status"], status, row)
        return status

    def assert_queue_drains(self):
        """No job lost or stuck: every job in the embedded queue (adapters/sqlite, table
        queue_jobs) ends acknowledged, which deletes its row."""
        d = self.daemon
        h.wait_for(lambda: not d.db_rows("SELECT id, topic, state FROM queue_jobs"),
                   RECOVERY_TIMEOUT_S, "the job queue to drain")

    def assert_available_volume(self, volume_id, size_gib):
        path = self.daemon.volume_file(volume_id)
        self.assertTrue(os.path.isfile(path), "no volume file %s" % path)
        self.assertEqual(os.stat(path).st_size, size_gib * h.GIB, path)

    def assert_deletable(self, volume_id):
        """The restarted daemon still runs jobs: the recovered volume can be deleted."""
        d = self.daemon
        resp = d.request("DELETE", "volumes/%s" % volume_id)
        self.assertEqual(resp.status, 202, resp)
        d.wait_for_status(volume_id, None)
        self.assertFalse(os.path.exists(d.volume_file(volume_id)))

    def test_kill_while_create_runs(self):
        d = self.daemon
        d.start(["--driver-delay-ms", str(DRIVER_DELAY_MS), "--driver-journal", d.journal_path])
        volume_id = d.create_volume(size=1, name="crash-running")["id"]

        # The window is the driver delay: the job has started and has not finished. The bound
        # also covers a slow pick-up on a loaded machine.
        h.wait_for(lambda: (d.db_volume(volume_id) or {}).get("status") == "creating",
                   PICKUP_TIMEOUT_S, "DB status 'creating' for %s" % volume_id, 0.02)
        self.assertEqual(d.kill(), -9)
        # The dead daemon's driver never finished: no create in the journal yet.
        self.assertFalse([e for e in d.journal() if e.get("op") == "create_volume"],
                         d.journal())

        d.start(["--driver-journal", d.journal_path])
        status = self.assert_settles(volume_id, ("available", "error"))
        self.assert_queue_drains()
        row = d.db_volume(volume_id)
        if status == "error":
            self.assertTrue(row["status_reason"], "error without a reason: %s" % row)
        else:
            self.assert_available_volume(volume_id, 1)
            creates = [e for e in d.journal() if e.get("op") == "create_volume"]
            self.assertEqual(len(creates), 1, d.journal())
        self.assert_deletable(volume_id)

    def test_kill_while_create_is_queued(self):
        d = self.daemon
        d.start(["--role", "api"])
        volume_id = d.create_volume(size=2, name="crash-queued")["id"]
        self.assertEqual(d.show_volume(volume_id)["status"], "creating")
        # Nobody consumes the job: it stays queued. (A bounded look, not a proof.)
        time.sleep(0.5)
        self.assertEqual(d.db_volume(volume_id)["status"], "creating_queued")
        self.assertEqual(len(d.db_rows("SELECT id FROM queue_jobs")), 1)
        self.assertEqual(d.kill(), -9)

        d.start()
        self.assertEqual(self.assert_settles(volume_id, ("available", "error")), "available",
                         d.db_volume(volume_id))
        self.assert_queue_drains()
        self.assert_available_volume(volume_id, 2)
        self.assert_deletable(volume_id)


if __name__ == "__main__":
    h.main()
