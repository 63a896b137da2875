"""Shared helpers for the end-to-end tests that run clinkerd on server engines.

Goal: one place for what every multi-process e2e test needs: the servers the CTest fixtures
started (PostgreSQL, RabbitMQ, etcd), a fresh database and vhost per test, and volume-only
daemons and other API-less ones (no API to poll).

Method: the CTest fixtures (`scripts/test_server_<engine>.sh start`) write
$CLINKER_TEST_SERVERS_DIR/<engine>/env (KEY=VALUE lines). `read_env()` reads one and skips the
test when it is missing. `Servers` creates a database (psql) and a vhost (the fixture's
rabbitmqctl) with random names and `drop()` removes both. `VolumeNode` runs clinkerd with
`--role volume` (or another role without the API), logs to a file, is ready once it logs
`clinkerd.started`, and is stopped by PID. Every wait is bounded.
"""

import os
import signal
import subprocess
import unittest
import urllib.parse
import uuid

import clinker_harness as h

PSQL = "/usr/lib/postgresql/15/bin/psql"
START_TIMEOUT_S = 30.0
TOOL_TIMEOUT_S = 60.0


def read_env(server, required=True):
    """KEY=VALUE lines the fixture of `server` wrote.

    When the fixture did not run: skips the test if `required`, else returns None.
    """
    root = os.environ.get("CLINKER_TEST_SERVERS_DIR")
    if not root:
        if not required:
            return None
        raise unittest.SkipTest("CLINKER_TEST_SERVERS_DIR is not set (run through ctest)")
    path = os.path.join(root, server, "env")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if "=" in line]
    except FileNotFoundError:
        if not required:
            return None
        raise unittest.SkipTest("no %s test server (%s missing)" % (server, path))
    return dict(line.split("=", 1) for line in lines)


def etcd_lock_url():
    """`etcd://host:port` of the etcd fixture's server, or None when that fixture did not run."""
    env = read_env("etcd", required=False)
    if not env or "CLINKER_TEST_ETCD_HOST" not in env or "CLINKER_TEST_ETCD_PORT" not in env:
        return None
    return "etcd://%s:%s" % (env["CLINKER_TEST_ETCD_HOST"], env["CLINKER_TEST_ETCD_PORT"])


class Servers:
    """A fresh PostgreSQL database and RabbitMQ vhost for one test; drop() removes both."""

    def __init__(self):
        pg = urllib.parse.urlsplit(read_env("postgres")["CLINKER_TEST_PG_URI"])
        rmq = read_env("rabbitmq")
        self.rabbitmqctl = os.path.join(os.environ["CLINKER_TEST_SERVERS_DIR"], "rabbitmq",
                                        "rabbitmqctl")
        self.pg_host, self.pg_port = pg.hostname, pg.port
        suffix = uuid.uuid4().hex[:12]
        self.database = "clinker_e2e_" + suffix
        # A '/' in the vhost name checks that clinkerd percent-decodes it (%2F).
        self.vhost = "clinker/e2e-" + suffix
        self.rmq_host = rmq["CLINKER_TEST_RMQ_HOST"]
        self.rmq_port = int(rmq["CLINKER_TEST_RMQ_PORT"])
        self.rmq_user = rmq["CLINKER_TEST_RMQ_USER"]
        self.rmq_password = rmq["CLINKER_TEST_RMQ_PASSWORD"]
        self.created_database = False
        self.created_vhost = False
        try:
            self.psql("CREATE DATABASE %s" % self.database)
            self.created_database = True
            self.ctl("add_vhost", self.vhost)
            self.created_vhost = True
            self.ctl("set_permissions", "-p", self.vhost, self.rmq_user, ".*", ".*", ".*")
        except BaseException:
            self.drop()
            raise

    @property
    def database_url(self):
        return "postgresql://postgres@%s:%d/%s" % (self.pg_host, self.pg_port, self.database)

    def queue_url(self, password=None):
        return "amqp://%s:%s@%s:%d/%s" % (urllib.parse.quote(self.rmq_user, safe=""),
                                          urllib.parse.quote(password or self.rmq_password,
                                                             safe=""), self.rmq_host,
                                          self.rmq_port, urllib.parse.quote(self.vhost, safe=""))

    def psql(self, sql, database="postgres"):
        """Runs one statement; returns the rows as lists of strings."""
        proc = subprocess.run([
            PSQL, "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-h",
            self.pg_host, "-p",
            str(self.pg_port), "-U", "postgres", "-d", database, "-c", sql
        ],
                              stdin=subprocess.DEVNULL,
                              capture_output=True,
                              text=True,
                              timeout=TOOL_TIMEOUT_S,
                              check=False)
        if proc.returncode != 0:
            raise AssertionError("psql %r failed (%d): %s" % (sql, proc.returncode, proc.stderr))
        return [line.split("\x1f") for line in proc.stdout.splitlines() if line]

    def ctl(self, *args):
        proc = subprocess.run([self.rabbitmqctl, "-q"] + list(args),
                              stdin=subprocess.DEVNULL,
                              capture_output=True,
                              text=True,
                              timeout=TOOL_TIMEOUT_S,
                              check=False)
        if proc.returncode != 0:
            raise AssertionError("rabbitmqctl %s failed (%d): %s%s" %
                                 (" ".join(args), proc.returncode, proc.stdout, proc.stderr))

    def drop(self):
        if self.created_vhost:
            self.created_vhost = False
            self.ctl("delete_vhost", self.vhost)
        if self.created_database:
            self.created_database = False
            self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.database)


class VolumeNode:
    """A clinkerd without the API (volume-only by default; `role` may name another, such as
    scheduler): ready once it logs clinkerd.started.

    start() may be called again after the process ended (a restart with the same flags); each
    start appends to the same log file. Not thread safe.
    """

    def __init__(self, root, name, args, role="volume"):
        self.name = name
        self.stderr_path = os.path.join(root, "%s.stderr" % name)
        self.root = root
        self.argv = [h.CLINKERD, "--role", role, "--log-level", "debug"] + list(args)
        self.proc = None
        self.pid = None
        self.pids = []  # Every PID this node had, oldest first.
        self._stderr = None
        self._log_offset = 0
        self.start()

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "%s is running" % self.name
        self._close_log()
        self._stderr = open(self.stderr_path, "ab")
        self._log_offset = self._stderr.tell()
        self.proc = subprocess.Popen(self.argv,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._stderr,
                                     stderr=self._stderr,
                                     cwd=self.root)
        self.pid = self.proc.pid
        self.pids.append(self.pid)

    def output(self):
        """Everything the node wrote, all starts."""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_started(self, timeout_s=START_TIMEOUT_S):
        def started():
            with open(self.stderr_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode("utf-8", "replace")
            if self.proc.poll() is not None:
                raise AssertionError("volume daemon %s exited with %d: %s\n%s" %
                                     (self.name, self.proc.returncode, " ".join(self.argv), text))
            return "clinkerd.started" in text

        h.wait_for(started, timeout_s, "volume daemon %s (%d) to start" % (self.name, self.pid))

    def terminate(self, timeout_s):
        """SIGTERM; returns the exit status, or None (then SIGKILLed) if it outlived timeout_s."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        """SIGKILL by PID (a crash); idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=h.STOP_TIMEOUT_S)
        self._close_log()

    def _close_log(self):
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
