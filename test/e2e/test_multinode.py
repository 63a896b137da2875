"""End-to-end: several clinkerd processes share one PostgreSQL database and one RabbitMQ broker.

Goal: prove that `[database] url` and `[queue] url` wire clinkerd to the server adapters, that
volume processes of one back-end share its jobs through the broker, and that a volume process
killed (SIGKILL) mid-job loses nothing: its unacknowledged job is delivered to the other one and
the stuck-job rules settle it. Also that a bad URL or an unreachable server stops clinkerd with a
message naming the setting (and never its password): exit 2 for a bad URL, 1 for a server that
cannot be used.

Method: the CTest fixtures `postgres` and `rabbitmq` start the servers and write
$CLINKER_TEST_SERVERS_DIR/<server>/env. Each test gets a fresh database (CREATE DATABASE through
psql) and a fresh vhost (the fixture's rabbitmqctl), both dropped after it, so tests share no
table or queue. One daemon runs the API and the scheduler; two volume-only daemons with the same
--host and --cluster (so the same queues) and the same --state-dir (so the same lock directory) run the jobs,
one worker each, with --driver-delay-ms 300 and one shared --driver-journal whose lines carry
the writer's pid. Twelve volumes are created; once both volume daemons have completed a job one
of them is SIGKILLed (it is then inside its next job's driver delay). Checks: no volume stays
`creating`; a volume ends `available`, or `error` with a reason (a create interrupted mid-driver;
ARCHITECTURE.md's stuck-job rules); no volume was created twice (changed=true) by the driver;
both daemons completed creates; the survivor still runs new jobs. Every wait is bounded and
every process is killed by PID.
"""

import os
import subprocess
import sys
import tempfile
import unittest
import uuid

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402
from servers import Servers, VolumeNode  # noqa: E402

DRIVER_DELAY_MS = 300
VOLUMES = 12
SETTLE_TIMEOUT_S = 60.0
# A start-up failure against an unreachable server: connect budget (5 s) plus process start-up.
FAIL_TIMEOUT_S = 30.0
PASSWORD = "s3cret-Pw"


def closed_port():
    """A loopback port nobody listens on (bound and released at once)."""
    return h.free_port()


def run_failing(args):
    """Runs clinkerd expected to refuse to start; returns (exit status, output)."""
    proc = subprocess.run([h.CLINKERD] + args,
                          stdin=subprocess.DEVNULL,
                          capture_output=True,
                          text=True,
                          timeout=FAIL_TIMEOUT_S,
                          check=False)
    return proc.returncode, proc.stdout + proc.stderr


class MultiNodeTest(unittest.TestCase):

    def setUp(self):
        self.servers = Servers()
        self.addCleanup(self.servers.drop)

    def start_api(self, host):
        daemon = h.Daemon([
            "--role", "api,scheduler", "--host", host, "--cluster", host, "--database-url",
            self.servers.database_url, "--queue-url",
            self.servers.queue_url()
        ])
        self.addCleanup(daemon.close)
        daemon.start()
        return daemon

    def start_volume_node(self, daemon, host, name):
        node = VolumeNode(daemon.root, name, [
            "--host", host, "--cluster", host, "--state-dir", daemon.state_dir, "--database-url",
            self.servers.database_url, "--queue-url",
            self.servers.queue_url(), "--workers", "1", "--driver-delay-ms",
            str(DRIVER_DELAY_MS), "--driver-journal", daemon.journal_path
        ])
        self.addCleanup(node.kill)
        node.wait_started()
        return node

    def db_volumes(self):
        rows = self.servers.psql("SELECT id, status, coalesce(status_reason, '') FROM volumes",
                                 database=self.servers.database)
        return {row[0]: {"status": row[1], "status_reason": row[2]} for row in rows}

    def test_two_volume_nodes_share_jobs_and_survive_a_kill(self):
        host = "mn-" + uuid.uuid4().hex[:8]
        d = self.start_api(host)
        victim = self.start_volume_node(d, host, "volume-a")
        survivor = self.start_volume_node(d, host, "volume-b")

        ids = [d.create_volume(size=1, name="mn-%d" % i)["id"] for i in range(VOLUMES)]

        def both_worked():
            pids = {e["pid"] for e in d.journal() if e["op"] == "create_volume"}
            return {victim.pid, survivor.pid} <= pids

        h.wait_for(both_worked, SETTLE_TIMEOUT_S, "both volume daemons to complete a create")
        # It has just completed a job and takes the next at once, so it dies inside a driver
        # call (300 ms) or between jobs: either way its unacked job must go to the survivor.
        victim.kill()

        def settled():
            statuses = {v: d.show_volume(v)["status"] for v in ids}
            busy = {v: s for v, s in statuses.items() if s not in ("available", "error")}
            return statuses if not busy else None

        try:
            statuses = h.wait_for(settled, SETTLE_TIMEOUT_S, "every volume to settle")
        except AssertionError as e:
            raise AssertionError("%s\n%s\nsurvivor:\n%s" %
                                 (e, d.stderr_tail(), survivor.output()[-4000:]))

        journal = d.journal()
        created = [e for e in journal if e["op"] == "create_volume"]
        by_volume = {}
        for entry in created:
            by_volume.setdefault(entry["volume_id"], []).append(entry)
        rows = self.db_volumes()
        for volume_id in ids:
            entries = by_volume.get(volume_id, [])
            self.assertLessEqual(sum(1 for e in entries if e["changed"]), 1,
                                 "volume %s created twice: %s" % (volume_id, entries))
            self.assertEqual(rows[volume_id]["status"], statuses[volume_id], rows[volume_id])
            if statuses[volume_id] == "available":
                self.assertTrue(entries, "available without a create: %s" % volume_id)
                self.assertTrue(os.path.isfile(d.volume_file(volume_id)), volume_id)
            else:
                # Only a create the killed daemon had started may end in error, with a reason.
                self.assertTrue(rows[volume_id]["status_reason"], rows[volume_id])
                self.assertFalse(any(e["pid"] == survivor.pid and e["changed"] for e in entries),
                                 "error although the survivor created it: %s" % entries)
        errors = [v for v in ids if statuses[v] == "error"]
        self.assertLessEqual(len(errors), 1, "more than the killed node's one job failed: %s" %
                             {v: rows[v] for v in errors})
        pids = {e["pid"] for e in created}
        # For the log: how the kill landed (an error, or a create redone by the survivor).
        sys.stderr.write("multinode: creates by killed node %d, by survivor %d; errors: %s\n" %
                         (sum(1 for e in created if e["pid"] == victim.pid),
                          sum(1 for e in created if e["pid"] == survivor.pid),
                          {v: rows[v]["status_reason"] for v in errors}))
        self.assertIn(victim.pid, pids)
        self.assertIn(survivor.pid, pids)

        # The survivor still takes new jobs, through the same broker queue.
        extra = d.create_volume(size=1, name="mn-after")["id"]
        self.assertEqual(d.wait_for_status(extra, "available", timeout_s=SETTLE_TIMEOUT_S),
                         "available")
        self.assertIn(survivor.pid,
                      [e["pid"] for e in d.journal() if e["volume_id"] == extra and e["changed"]])

    def test_unreachable_database_exits_1_naming_the_setting(self):
        port = closed_port()
        with tempfile.TemporaryDirectory(prefix="clinker-e2e-") as state_dir:
            code, output = run_failing([
                "--state-dir", state_dir, "--port", "0", "--cluster", "c1", "--database-url",
                "postgresql://postgres:%s@127.0.0.1:%d/clinker" % (PASSWORD, port)
            ])
        self.assertEqual(code, 1, output)
        self.assertIn("clinkerd: [database] url: cannot connect to 127.0.0.1:%d: " % port, output)
        self.assertNotIn(PASSWORD, output)
        self.assertNotIn("terminate", output)

    def test_unreachable_broker_exits_1_naming_the_setting(self):
        port = closed_port()
        with tempfile.TemporaryDirectory(prefix="clinker-e2e-") as state_dir:
            code, output = run_failing([
                "--state-dir", state_dir, "--port", "0", "--cluster", "c1", "--database-url",
                self.servers.database_url, "--queue-url",
                "amqp://guest:%s@127.0.0.1:%d/" % (PASSWORD, port)
            ])
        self.assertEqual(code, 1, output)
        self.assertIn("clinkerd: [queue] url: cannot connect to 127.0.0.1:%d: " % port, output)
        self.assertNotIn(PASSWORD, output)
        self.assertNotIn("terminate", output)

    def test_wrong_broker_password_exits_1_naming_the_setting(self):
        with tempfile.TemporaryDirectory(prefix="clinker-e2e-") as state_dir:
            code, output = run_failing([
                "--state-dir", state_dir, "--port", "0", "--role", "volume", "--queue-url",
                self.servers.queue_url(password=PASSWORD)
            ])
        self.assertEqual(code, 1, output)
        self.assertIn("clinkerd: [queue] url: ", output)
        self.assertNotIn(PASSWORD, output)
        self.assertNotIn("terminate", output)

    def test_bad_url_schemes_exit_2(self):
        with tempfile.TemporaryDirectory(prefix="clinker-e2e-") as state_dir:
            for flag, url, setting in (("--queue-url", "redis://guest:%s@127.0.0.1/" % PASSWORD,
                                        "[queue] url"),
                                       ("--queue-url", "amqp://127.0.0.1:99999/",
                                        "[queue] url"),
                                       ("--database-url", "mysql://root:%s@127.0.0.1/x" %
                                        PASSWORD, "[database] url")):
                code, output = run_failing(["--state-dir", state_dir, flag, url])
                self.assertEqual(code, 2, "%s %s: %s" % (flag, url, output))
                self.assertIn(setting, output)
                self.assertNotIn(PASSWORD, output)
            # A refused value started nothing.
            self.assertFalse(os.path.exists(os.path.join(state_dir, "clinker.db")))


if __name__ == "__main__":
    h.main()
