"""End-to-end: a volume node paused past its etcd lease is fenced out by the node that took over.

Goal: prove issue 4's fencing on real engines (PostgreSQL, RabbitMQ, etcd): a node that stops
answering while it holds a volume's write lock (SIGSTOP: a long GC pause, a VM freeze, a node
cut off) loses the lock when its lease runs out; another node of the cluster takes the job over
and fences the volume with its newer token; when the first node resumes, the back-end refuses its
late write (it writes nothing more to the volume's data), the database keeps what the second node
wrote, and the first node logs that its job was fenced.

Method: the CTest fixtures `postgres`, `rabbitmq` and `etcd` start the servers. One daemon runs
the API and the scheduler of cluster "c1"; volume node A (cluster c1, etcd locks, lease 2 s,
AMQP heartbeat 1 s, a 4 s driver delay) takes a create job; once A's log shows it started the
job (it decided to proceed, so the volume is `creating` under A's token and A sleeps inside the
driver), A is SIGSTOPped. Node B (same cluster, same back-end directory, no delay) then starts.
RabbitMQ drops A's silent connection and delivers the job to B, B gets the lock once A's lease
expired, finds the create in progress (stuck-job rule 7), fences the volume and sets it to
`error` with a reason. A is then SIGCONTed and finishes its driver call. Checks: B's result and
token stay in the database, the volume file never appears, the driver journal has no create by
A, and A logs `volume.job_fenced` for the volume. Every wait is bounded; processes are killed by
PID.
"""

import json
import os
import signal
import sys
import unittest
import uuid

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402
from servers import Servers, VolumeNode, etcd_lock_url  # noqa: E402

DRIVER_DELAY_MS = 4000
TAKEOVER_TIMEOUT_S = 60.0
RESUME_TIMEOUT_S = 30.0

CONFIG = """
[queue]
heartbeat_s = 1
[locks]
lease_ttl_s = 2
heartbeat_interval_ms = 300
missed_heartbeats = 3
"""


def log_events(text):
    """The JSON log lines of a node's output (other lines skipped)."""
    events = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    return events


class FencingTest(unittest.TestCase):

    def setUp(self):
        self.lock_url = etcd_lock_url()
        if self.lock_url is None:
            self.skipTest("no etcd test server")
        self.servers = Servers()
        self.addCleanup(self.servers.drop)

    def node(self, daemon, name, extra):
        config = os.path.join(daemon.root, "%s.toml" % name)
        with open(config, "w", encoding="utf-8") as f:
            f.write(CONFIG)
        node = VolumeNode(daemon.root, name, [
            "--config", config, "--host", name, "--cluster", "c1", "--state-dir",
            os.path.join(daemon.root, "state-" + name), "--volume-dir", daemon.volume_dir,
            "--database-url", self.servers.database_url, "--queue-url",
            self.servers.queue_url(), "--lock-url", self.lock_url, "--workers", "1",
            "--driver-journal", daemon.journal_path
        ] + list(extra))
        # A stopped process ignores SIGKILL until it is continued: continue it first.
        self.addCleanup(node.kill)
        self.addCleanup(lambda: node.proc.poll() is None and os.kill(node.pid, signal.SIGCONT))
        node.wait_started()
        return node

    def db_volume(self, volume_id):
        rows = self.servers.psql(
            "SELECT status, coalesce(status_reason, ''), coalesce(fencing_token, -1), "
            "coalesce(updated_at, '') FROM volumes WHERE id = '%s'" % volume_id,
            database=self.servers.database)
        self.assertEqual(len(rows), 1, rows)
        status, reason, token, updated_at = rows[0]
        return {"status": status, "reason": reason, "token": int(token), "updated_at": updated_at}

    def test_paused_lock_holder_is_fenced_out_by_the_node_that_took_over(self):
        d = h.Daemon([
            "--role", "api,scheduler", "--host", "api-" + uuid.uuid4().hex[:6], "--cluster", "c1",
            "--database-url", self.servers.database_url, "--queue-url",
            self.servers.queue_url()
        ])
        self.addCleanup(d.close)
        d.start()
        a = self.node(d, "node-a", ["--driver-delay-ms", str(DRIVER_DELAY_MS)])

        volume_id = d.create_volume(size=1, name="fenced")["id"]

        def a_started_the_job():
            for event in log_events(a.output()):
                if (event.get("event") == "volume.job_decision" and
                        event.get("volume_id") == volume_id and event.get("action") == "proceed"):
                    return event
            return None

        started = h.wait_for(a_started_the_job, TAKEOVER_TIMEOUT_S, "node A to start the create")
        a_token = int(started["fencing_token"])
        h.wait_for(lambda: self.db_volume(volume_id)["status"] == "creating", 10.0,
                   "node A to mark the volume creating")
        os.kill(a.pid, signal.SIGSTOP)

        b = self.node(d, "node-b", [])

        def taken_over():
            row = self.db_volume(volume_id)
            return row if row["status"] == "error" else None

        try:
            after_b = h.wait_for(taken_over, TAKEOVER_TIMEOUT_S, "node B to take the job over")
        except AssertionError as e:
            raise AssertionError("%s\nnode B:\n%s" % (e, b.output()[-4000:]))
        self.assertTrue(after_b["reason"], after_b)
        self.assertGreater(after_b["token"], a_token, "B's grant must carry a newer token")

        os.kill(a.pid, signal.SIGCONT)

        def a_was_fenced():
            for event in log_events(a.output()):
                if (event.get("event") in ("volume.job_fenced", "volume.job_stopped_lock_lost",
                                           "volume.lock_lost") and
                        event.get("volume_id") == volume_id):
                    return event
            return None

        try:
            refused = h.wait_for(a_was_fenced, RESUME_TIMEOUT_S, "node A to be fenced")
        except AssertionError as e:
            raise AssertionError("%s\nnode A:\n%s" % (e, a.output()[-4000:]))
        self.assertEqual(refused["event"], "volume.job_fenced", refused)

        # Node A wrote nothing more: the database is as B left it, no volume data appeared, and
        # the driver journal has no create by A.
        self.assertEqual(self.db_volume(volume_id), after_b)
        self.assertFalse(os.path.exists(d.volume_file(volume_id)))
        creates = [e for e in d.journal()
                   if e["op"] == "create_volume" and e["volume_id"] == volume_id]
        self.assertEqual(creates, [], "a create reached the back-end: %s" % creates)
        self.assertIsNone(a.proc.poll(), "node A stays up (it only stopped this job)")


if __name__ == "__main__":
    h.main()
