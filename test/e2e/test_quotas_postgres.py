"""End-to-end: a quota holds under a race on PostgreSQL, and usage never drifts there either.

Goal: on PostgreSQL the usage counters change in the SERIALIZABLE transaction of the write they
count, so of 50 volume creates fired at once against a quota of 10 volumes exactly 10 are
accepted (202) and 40 refused with 413 overLimit; a volume node SIGKILLed in the middle of
deletes leaves no drift: after a restart finishes them, `clinkerd quota check` on the database
finds every counter equal to a recount of the live rows.

Method: an API + scheduler daemon and a volume-only node (servers.VolumeNode) of one cluster on
a fresh PostgreSQL database and RabbitMQ vhost (servers.Servers, from the CTest fixtures), with a
[quota] section of 10 volumes. The 50 POSTs wait on their own connections, sent but for their last
byte, and a barrier releases them together (Daemon.prepare).
"""

import os
import subprocess
import sys
import threading
import time
import unittest
import uuid

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402
from servers import Servers, VolumeNode  # noqa: E402

CLIENTS = 50
LIMIT = 10
BARRIER_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 90.0
SETTLE_TIMEOUT_S = 120.0


class PostgresQuotaTest(unittest.TestCase):

    def setUp(self):
        self.servers = Servers()
        self.addCleanup(self.servers.drop)
        self.host = "q-" + uuid.uuid4().hex[:8]
        self.daemon = h.Daemon()
        self.addCleanup(self.daemon.close)
        self.config = os.path.join(self.daemon.root, "quota.toml")
        with open(self.config, "w") as f:
            f.write("[quota]\nquota_volumes = %d\n" % LIMIT)
        self.daemon.start([
            "--config", self.config, "--role", "api,scheduler", "--host", self.host, "--cluster",
            self.host, "--database-url", self.servers.database_url, "--queue-url",
            self.servers.queue_url()
        ])

    def start_node(self, name, delay_ms):
        node = VolumeNode(self.daemon.root, name, [
            "--host", self.host, "--cluster", self.host, "--state-dir", self.daemon.state_dir,
            "--database-url", self.servers.database_url, "--queue-url",
            self.servers.queue_url(), "--driver-delay-ms",
            str(delay_ms)
        ])
        self.addCleanup(node.kill)
        node.wait_started()
        return node

    def live(self):
        rows = self.servers.psql("SELECT id, status FROM volumes WHERE deleted = 0",
                                 database=self.servers.database)
        return {row[0]: row[1] for row in rows}

    def assert_quota_clean(self):
        check = subprocess.run([
            h.CLINKERD, "quota", "check", "--config", self.config, "--database-url",
            self.servers.database_url, "--log-level", "error"
        ],
                               stdin=subprocess.DEVNULL,
                               capture_output=True,
                               text=True,
                               timeout=60)
        self.assertEqual(check.returncode, 0, "quota check: %s %s" % (check.stdout, check.stderr))
        self.assertIn("quota usage matches the live rows", check.stdout)

    def test_fifty_racing_creates_admit_ten_and_a_killed_node_leaves_no_drift(self):
        d = self.daemon
        node = self.start_node("volume-a", 0)
        barrier = threading.Barrier(CLIENTS, timeout=BARRIER_TIMEOUT_S)
        results = [None] * CLIENTS

        def create(index, pending):
            try:
                barrier.wait()
                results[index] = pending.fire()
            except Exception as e:  # Recorded, then reported by the main thread.
                results[index] = e

        pending = []
        try:
            for i in range(CLIENTS):
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
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses.count(202), LIMIT, statuses)
        self.assertEqual(statuses.count(413), CLIENTS - LIMIT, statuses)
        usage = d.request("GET", "os-quota-sets/%s?usage=true" % d.project).json()["quota_set"]
        self.assertEqual(usage["volumes"]["in_use"], LIMIT)
        self.assertEqual(len(self.live()), LIMIT)

        h.wait_for(lambda: set(self.live().values()) == {"available"}, SETTLE_TIMEOUT_S,
                   "the accepted volumes available")
        self.assert_quota_clean()

        # Deletes under way on a slow node that is then SIGKILLed; another node finishes them.
        node.kill()
        slow = self.start_node("volume-b", 3000)
        for volume_id in self.live():
            self.assertEqual(d.request("DELETE", "volumes/%s" % volume_id).status, 202)
        time.sleep(1.0)
        slow.kill()
        self.assert_quota_clean()
        self.start_node("volume-c", 0)
        h.wait_for(lambda: not self.live(), SETTLE_TIMEOUT_S, "every volume deleted")
        usage = d.request("GET", "os-quota-sets/%s?usage=true" % d.project).json()["quota_set"]
        self.assertEqual(usage["volumes"]["in_use"], 0)
        self.assertEqual(usage["gigabytes"]["in_use"], 0)
        self.assert_quota_clean()


if __name__ == "__main__":
    h.main()
