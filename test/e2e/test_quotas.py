"""End-to-end: quotas admit exactly their limit under a race, and usage never drifts.

Goal: the usage counters change in the same database write as the rows they count, so (1) of 50
volume creates fired at once against a quota of 10 volumes exactly 10 are accepted (202) and 40
refused with Cinder's 413 overLimit and its message, (2) after the volumes are deleted again
`clinkerd quota check` finds every counter equal to a recount of the live rows, (3) a daemon
SIGKILLed in the middle of creates and deletes leaves no drift either, and (4) `quota check`
reports a counter changed behind its back (exit 1) and `quota sync` repairs it.

Method: one clinkerd (SQLite) with a [quota] section of 10 volumes. The 50 POSTs each wait on
their own connection, sent but for their last byte, and are released together by a barrier (see
Daemon.prepare). Usage is read with GET os-quota-sets/{project}?usage=true. The SIGKILL runs use a
2 s driver delay so that creates and deletes are under way when the process dies; after a
restart the stuck-job rules finish them, the test deletes what is left and waits for every row to
be gone before running `clinkerd quota check` on the same state directory.
"""

import os
import sqlite3
import subprocess
import sys
import threading
import time

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

CLIENTS = 50
LIMIT = 10
BARRIER_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 60.0
GONE_TIMEOUT_S = 90.0

QUOTA_CONFIG = "[quota]\nquota_volumes = %d\nquota_gigabytes = 1000\n" % LIMIT


class QuotaTest(h.DaemonTestCase):

    def setUp(self):
        self.daemon = h.Daemon()
        self.addCleanup(self.daemon.close)
        self.config = os.path.join(self.daemon.root, "quota.toml")
        with open(self.config, "w") as f:
            f.write(QUOTA_CONFIG)

    def start(self, *extra):
        self.daemon.start(["--config", self.config] + list(extra))

    def quota_command(self, command):
        """Runs `clinkerd quota <command>` on the daemon's database."""
        return subprocess.run(
            [h.CLINKERD, "quota", command, "--config", self.config, "--state-dir",
             self.daemon.state_dir, "--log-level", "error"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    def assert_quota_clean(self):
        check = self.quota_command("check")
        self.assertEqual(check.returncode, 0, "quota check: %s %s" % (check.stdout, check.stderr))
        self.assertIn("quota usage matches the live rows", check.stdout)

    def usage(self):
        resp = self.daemon.request("GET", "os-quota-sets/%s?usage=true" % self.daemon.project)
        self.assertEqual(resp.status, 200, resp)
        return resp.json()["quota_set"]

    def live_volume_ids(self):
        return [row["id"] for row in self.daemon.db_rows("SELECT id FROM volumes WHERE deleted = 0")]

    def delete_all_and_wait(self):
        d = self.daemon

        def gone():
            for volume_id in self.live_volume_ids():
                status = d.db_volume(volume_id)["status"]
                if status in ("available", "error", "error_deleting", "error_extending"):
                    d.request("DELETE", "volumes/%s" % volume_id)
            return not self.live_volume_ids()

        h.wait_for(gone, GONE_TIMEOUT_S, "every volume deleted", interval_s=0.2)

    def fire_creates(self, count):
        d = self.daemon
        barrier = threading.Barrier(count, timeout=BARRIER_TIMEOUT_S)
        results = [None] * count

        def create(index, pending):
            try:
                barrier.wait()
                results[index] = pending.fire()
            except Exception as e:  # Recorded, then reported by the main thread.
                results[index] = e

        pending = []
        try:
            for i in range(count):
                pending.append(
                    d.prepare("POST", "volumes", body={"volume": {"size": 1, "name": "q-%d" % i}}))
        except BaseException:
            for p in pending:
                p.close()
            raise
        threads = [
            threading.Thread(target=create, args=(i, p), daemon=True) for i, p in enumerate(pending)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(JOIN_TIMEOUT_S)
        self.assertFalse([t for t in threads if t.is_alive()], "create threads still running")
        errors = [r for r in results if not isinstance(r, h.Response)]
        self.assertFalse(errors, "requests failed without an HTTP answer: %s" % errors)
        return results

    def test_fifty_racing_creates_admit_exactly_the_limit_and_usage_stays_exact(self):
        self.start()
        results = self.fire_creates(CLIENTS)
        accepted = [r for r in results if r.status == 202]
        refused = [r for r in results if r.status != 202]
        self.assertEqual(len(accepted), LIMIT, [r.status for r in results])
        self.assertEqual(len(refused), CLIENTS - LIMIT)
        for resp in refused:
            self.assertCinderError(resp, 413, "overLimit")
            self.assertEqual(
                resp.json()["overLimit"]["message"],
                "Maximum number of volumes allowed (%d) exceeded for quota 'volumes'." % LIMIT)
        usage = self.usage()
        self.assertEqual(usage["volumes"]["in_use"], LIMIT)
        self.assertEqual(usage["gigabytes"]["in_use"], LIMIT)
        self.assertEqual(len(self.live_volume_ids()), LIMIT)
        for resp in accepted:
            self.daemon.wait_for_status(resp.json()["volume"]["id"], "available")
        self.assert_quota_clean()

        self.delete_all_and_wait()
        usage = self.usage()
        self.assertEqual(usage["volumes"]["in_use"], 0)
        self.assertEqual(usage["gigabytes"]["in_use"], 0)
        self.assert_quota_clean()

    def test_a_sigkill_mid_creates_and_deletes_leaves_no_drift(self):
        d = self.daemon
        self.start("--driver-delay-ms", "2000")
        for i in range(6):
            resp = d.request("POST", "volumes", body={"volume": {"size": 2, "name": "k-%d" % i}})
            self.assertEqual(resp.status, 202, resp)
        time.sleep(0.5)  # Some creates are under way on the back-end.
        d.kill()
        self.assert_quota_clean()
        self.start("--driver-delay-ms", "200")
        ids = self.live_volume_ids()

        def settled():
            return all(
                d.db_volume(v)["status"] in ("available", "error") for v in self.live_volume_ids())

        h.wait_for(settled, GONE_TIMEOUT_S, "creates settled after the restart", interval_s=0.2)
        d.stop()
        self.start("--driver-delay-ms", "2000")
        for volume_id in ids:
            d.request("DELETE", "volumes/%s" % volume_id)
        time.sleep(0.5)  # Some deletes are under way on the back-end.
        d.kill()
        self.assert_quota_clean()
        self.start("--driver-delay-ms", "200")
        self.delete_all_and_wait()
        self.assertEqual(self.usage()["volumes"]["in_use"], 0)
        self.assert_quota_clean()

    def test_check_reports_a_counter_changed_behind_its_back_and_sync_repairs_it(self):
        d = self.daemon
        self.start()
        volume_id = d.create_volume(size=3, name="drift")["id"]
        d.wait_for_status(volume_id, "available")
        d.stop()
        self.assert_quota_clean()
        counter = "%s/gigabytes" % d.project
        conn = sqlite3.connect(d.db_path, timeout=10.0)
        try:
            with conn:
                conn.execute("UPDATE quota_usages SET in_use = 7 WHERE id = ?", (counter,))
        finally:
            conn.close()
        check = self.quota_command("check")
        self.assertEqual(check.returncode, 1, check.stdout + check.stderr)
        self.assertIn("%s gigabytes stored 7 counted 3" % d.project, check.stdout)
        sync = self.quota_command("sync")
        self.assertEqual(sync.returncode, 0, sync.stdout + sync.stderr)
        self.assertIn("repaired", sync.stdout)
        self.assert_quota_clean()


if __name__ == "__main__":
    h.main()
