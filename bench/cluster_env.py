"""Shared by the cluster benchmarks (takeover.py, throughput.py): servers and daemons on loopback.

`ClusterEnv` is a context manager that owns one temp dir. It starts PostgreSQL, RabbitMQ and
(when etcd and its script are there) etcd through scripts/test_server_<engine>.sh, each in its
own session so that a Ctrl-C reaches only the benchmark; hands out a fresh database and vhost per
`cluster()`; starts clinkerd processes with a log file each; and on exit (also after Ctrl-C or
SIGTERM) stops every daemon by PID (SIGTERM, SIGKILL after a bound), stops the servers through
their scripts and removes the temp dir (unless keep=True).

Not thread safe. Every wait is bounded. Python 3 standard library only.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PSQL = "/usr/lib/postgresql/15/bin/psql"
PROJECT = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
TOOL_TIMEOUT_S = 120.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _terminate_on_sigterm():
    """Turns SIGTERM into KeyboardInterrupt, so that `with ClusterEnv()` cleans up either way."""

    def handler(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, handler)


class Daemon:
    """One clinkerd process with its log file; restartable with the same flags."""

    def __init__(self, env, name, argv, port=None):
        self.env = env
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = os.path.join(env.root, "logs", name + ".log")
        self.proc = None
        self.log_offset = 0

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        with open(self.log_path, "ab") as log:
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(self.argv,
                                         stdin=subprocess.DEVNULL,
                                         stdout=log,
                                         stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %d during start-up:\n%s" %
                                   (self.name, self.proc.returncode, self.log_tail()))
            if time.monotonic() >= deadline:
                raise RuntimeError("%s not ready after %.0f s:\n%s" %
                                   (self.name, START_TIMEOUT_S, self.log_tail()))
            time.sleep(0.05)
        return self

    def _ready(self):
        if self.port is None:
            return "clinkerd.started" in self.log_since(self.log_offset)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
            try:
                conn.request("GET", "/")
                return conn.getresponse().status == 300
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            return False

    def log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def log_size(self):
        return os.path.getsize(self.log_path)

    def log_tail(self, lines=20):
        return "\n".join(self.log_since(0).splitlines()[-lines:])

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self):
        """SIGTERM, SIGKILL after STOP_TIMEOUT_S; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        return self.proc.returncode


class ClusterEnv:

    def __init__(self, clinkerd, use_servers=True, use_etcd=None, keep=False):
        self.clinkerd = os.path.abspath(clinkerd)
        self.use_servers = use_servers
        self.keep = keep
        has_etcd = (shutil.which("etcd") is not None and
                    os.path.exists(os.path.join(REPO, "scripts", "test_server_etcd.sh")))
        self.use_etcd = use_servers and has_etcd and use_etcd is not False
        if use_etcd and not has_etcd:
            raise RuntimeError("etcd locks asked for, but etcd or its script is missing")
        self.root = None
        self.servers = []
        self.daemons = []
        self.env = {}

    def __enter__(self):
        _terminate_on_sigterm()
        self.root = tempfile.mkdtemp(prefix="clinker-bench-", dir=os.environ.get("TMPDIR"))
        os.makedirs(os.path.join(self.root, "logs"))
        try:
            if self.use_servers:
                for engine in ("postgres", "rabbitmq") + (("etcd",) if self.use_etcd else ()):
                    self._start_server(engine)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for daemon in reversed(self.daemons):
            try:
                daemon.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                sys.stderr.write("stopping %s: %s\n" % (daemon.name, e))
        for engine in reversed(self.servers):
            subprocess.run(
                ["bash", os.path.join(REPO, "scripts", "test_server_%s.sh" % engine), "stop",
                 os.path.join(self.root, engine)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=TOOL_TIMEOUT_S,
                check=False,
                start_new_session=True)
        self.servers = []
        if self.keep:
            sys.stderr.write("kept %s\n" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        return False

    def _start_server(self, engine):
        sys.stderr.write("starting %s...\n" % engine)
        self.servers.append(engine)
        log = os.path.join(self.root, "logs", engine + ".log")
        with open(log, "wb") as out:
            proc = subprocess.run(
                ["bash", os.path.join(REPO, "scripts", "test_server_%s.sh" % engine), "start",
                 os.path.join(self.root, engine)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=TOOL_TIMEOUT_S,
                check=False,
                start_new_session=True)
        if proc.returncode != 0:
            with open(log, encoding="utf-8", errors="replace") as f:
                raise RuntimeError("%s did not start:\n%s" % (engine, f.read()[-2000:]))
        with open(os.path.join(self.root, engine, "env"), encoding="utf-8") as f:
            for line in f:
                if "=" in line:
                    key, value = line.strip().split("=", 1)
                    self.env[key] = value

    # ---- per-cluster resources ------------------------------------------------------------

    def new_cluster(self):
        """A fresh database and vhost: returns (database_url, queue_url, lock_url or None)."""
        suffix = uuid.uuid4().hex[:10]
        pg = urllib.parse.urlsplit(self.env["CLINKER_TEST_PG_URI"])
        database = "clinker_bench_" + suffix
        subprocess.run([
            PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.hostname, "-p",
            str(pg.port), "-U", "postgres", "-d", "postgres", "-c",
            "CREATE DATABASE %s" % database
        ],
                       stdin=subprocess.DEVNULL,
                       timeout=TOOL_TIMEOUT_S,
                       check=True)
        vhost = "bench-" + suffix
        ctl = os.path.join(self.root, "rabbitmq", "rabbitmqctl")
        user = self.env["CLINKER_TEST_RMQ_USER"]
        for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, user, ".*", ".*",
                                              ".*"]):
            subprocess.run([ctl, "-q"] + args,
                           stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL,
                           timeout=TOOL_TIMEOUT_S,
                           check=True)
        database_url = "postgresql://postgres@%s:%d/%s" % (pg.hostname, pg.port, database)
        queue_url = "amqp://%s:%s@%s:%s/%s" % (user, self.env["CLINKER_TEST_RMQ_PASSWORD"],
                                               self.env["CLINKER_TEST_RMQ_HOST"],
                                               self.env["CLINKER_TEST_RMQ_PORT"], vhost)
        lock_url = None
        if self.use_etcd:
            lock_url = "etcd://%s:%s" % (self.env["CLINKER_TEST_ETCD_HOST"],
                                         self.env["CLINKER_TEST_ETCD_PORT"])
        return database_url, queue_url, lock_url

    def start_api(self, name, args):
        """clinkerd serving the API on a free loopback port (three tries if the port is taken)."""
        for attempt in range(3):
            port = free_port()
            argv = [self.clinkerd, "--listen", "127.0.0.1", "--port", str(port)] + list(args)
            daemon = Daemon(self, name, argv, port=port)
            self.daemons.append(daemon)
            try:
                return daemon.start()
            except RuntimeError:
                daemon.stop()
                if attempt == 2 or "address already in use" not in daemon.log_tail().lower():
                    raise
        raise AssertionError("unreachable")

    def start_volume_node(self, name, args):
        daemon = Daemon(self, name, [self.clinkerd, "--role", "volume"] + list(args))
        self.daemons.append(daemon)
        return daemon.start()

    def stop_daemons(self):
        for daemon in reversed(self.daemons):
            daemon.stop()
        self.daemons = []
