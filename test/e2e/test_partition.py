"""End-to-end: a lock holder cut off from etcd gives its lock up before anyone else gets it.

Goal: prove issue 4's lease accounting and fencing across a real network partition: a holder of an
etcd lock whose link to etcd is cut declares its lease lost, and stops, BEFORE the other side is
granted the lock (the holder must not count its lease from keepalive replies: a 23 ms overlap was
measured that way); the other side's fencing token is larger; and the cut-off holder's late write,
carrying its stale token, is refused by the state store's fencing check (ConditionalUpdate with
NullOrAtMost on volumes.fencing_token). Every one of RUNS runs must hold.

Method: the test starts its own single-member etcd (Debian's binary) listening on 127.0.0.1 and on
the root-namespace end of a veth pair; the other end lives in a fresh network namespace. Per run
(a new lock name and volume row each time), `lock_probe hold` runs inside the namespace (it reaches
etcd over the veth) and `lock_probe wait` in the root namespace (over 127.0.0.1); both share one
SQLite file made by the test. The probes create the volume row themselves after their
SqliteStateStore::Open has migrated the schema (an Insert that tolerates an existing row). Once
the holder has written its token and etcd shows both queue keys (so the waiter is blocked), the
root-side veth is set down; the holder must print `lost` earlier (CLOCK_REALTIME, same machine)
than the waiter prints `acquired`, and earlier than the last poll of etcd (every 20 ms, over
127.0.0.1) that still saw the holder's key: before etcd could grant the lock at all. The waiter
writes its larger token; the link is healed; the holder is told to write with its stale token
and must be refused; the row must hold the waiter's token. Lease: TTL 2 s, keepalive every
250 ms, 3 missed beats.

Needs root and `ip netns` (skipped otherwise, and without etcd or `--lock-probe PATH`). Every wait
is bounded; processes are killed by PID; the namespace, the veth pair, etcd and the temp dir are
removed by cleanups that also run when a run fails. Names carry a random suffix, so parallel runs
do not clash.
"""

import argparse
import base64
import json
import os
import queue
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

ETCD_BIN = os.environ.get("CLINKER_ETCD_BIN", "/usr/bin/etcd")
RUNS = 20
KEY_PREFIX = "/clinker-partition/"
LEASE_ARGS = ["--lease-ttl-s", "2", "--heartbeat-ms", "250", "--missed-heartbeats", "3",
              "--request-timeout-ms", "500"]

ETCD_START_TIMEOUT_S = 30.0
ETCD_STOP_TIMEOUT_S = 5.0
ACQUIRE_EVENT_TIMEOUT_S = 15.0
QUEUED_TIMEOUT_S = 5.0
LOST_TIMEOUT_S = 10.0
TAKEOVER_TIMEOUT_S = 15.0
STEP_TIMEOUT_S = 10.0
CMD_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02

# Set by main() from `--lock-probe PATH` (or $CLINKER_LOCK_PROBE).
LOCK_PROBE = None


def now_ms():
    """CLOCK_REALTIME in ms: the clock lock_probe stamps its events with."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME) // 1_000_000


def run(*argv, check=True):
    """Runs a short command (ip ...), bounded in time; returns it."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
    if check and result.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), result.returncode,
                                                      result.stderr.strip()))
    return result


def b64(text):
    return base64.b64encode(text.encode()).decode()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_pid(proc, timeout_s):
    """SIGTERM, then SIGKILL after `timeout_s`, to this one process; reaps it."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


class Probe:
    """One lock_probe process: its JSON stdout lines arrive on a queue read by a thread."""

    def __init__(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self.events = []
        self._queue = queue.Queue()
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "_raw", "line": line}
            self._queue.put(event)
        self._queue.put({"event": "_eof"})

    def expect(self, name, timeout_s):
        """The next event; AssertionError unless it is `name` and arrives within `timeout_s`."""
        try:
            event = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError("no %r event within %.1f s; %s" % (name, timeout_s, self))
        self.events.append(event)
        if event.get("event") != name:
            raise AssertionError("expected %r, got %r; %s" % (name, event, self))
        return event

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_exit(self, timeout_s):
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError("still running after %.1f s; %s" % (timeout_s, self))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()  # By PID (ip netns exec execs the probe: same PID).
        self.proc.wait(timeout=CMD_TIMEOUT_S)
        self._reader.join(timeout=CMD_TIMEOUT_S)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    def __str__(self):
        try:
            with open(self.log_path) as f:
                tail = f.read()[-2000:]
        except OSError:
            tail = ""
        return "probe %s: events %s, stderr: %s" % (self.argv[-1] if self.argv else "?",
                                                    self.events, tail)


def skip_reason():
    """Why this machine cannot run the test, or None."""
    if not LOCK_PROBE:
        return "no --lock-probe PATH given"
    if not os.access(LOCK_PROBE, os.X_OK):
        return "lock_probe is not an executable file: %s" % LOCK_PROBE
    if not os.access(ETCD_BIN, os.X_OK):
        return "etcd not found at %s (Debian package etcd-server)" % ETCD_BIN
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "no `ip` command (iproute2)"
    try:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=CMD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "`ip netns` unavailable: %s" % e
    if listed.returncode != 0:
        return "`ip netns` unavailable: %s" % listed.stderr.decode().strip()
    return None


class PartitionTest(unittest.TestCase):

    def setUp(self):
        reason = skip_reason()
        if reason:
            self.skipTest(reason)
        self.suffix = "%06x" % random.randrange(1 << 24)
        self.tmp = tempfile.mkdtemp(prefix="clinker-partition-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.db = os.path.join(self.tmp, "state.db")
        self._make_network()
        self._start_etcd()

    # --- environment -----------------------------------------------------------------------

    def _make_network(self):
        self.ns = "clinker-part-" + self.suffix
        self.veth_root = "clkp%sa" % self.suffix  # Interface names: at most 15 characters.
        self.veth_ns = "clkp%sb" % self.suffix
        used = run("ip", "-o", "-4", "addr", "show").stdout
        for _ in range(50):
            net = "10.200.%d.%d" % (random.randrange(256), 4 * random.randrange(64))
            prefix = net.rsplit(".", 1)[0] + "."
            if prefix not in used:
                break
        else:
            self.skipTest("no free 10.200.x.y/30 subnet")
        base = int(net.rsplit(".", 1)[1])
        self.addr_root = "%s%d" % (prefix, base + 1)
        self.addr_ns = "%s%d" % (prefix, base + 2)

        run("ip", "netns", "add", self.ns)
        self.addCleanup(run, "ip", "netns", "delete", self.ns, check=False)
        run("ip", "link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_ns)
        # Deleting one end deletes the pair (and the namespace's end goes with the namespace).
        self.addCleanup(run, "ip", "link", "delete", self.veth_root, check=False)
        run("ip", "link", "set", self.veth_ns, "netns", self.ns)
        run("ip", "addr", "add", self.addr_root + "/30", "dev", self.veth_root)
        run("ip", "link", "set", self.veth_root, "up")
        run("ip", "-n", self.ns, "addr", "add", self.addr_ns + "/30", "dev", self.veth_ns)
        run("ip", "-n", self.ns, "link", "set", self.veth_ns, "up")
        run("ip", "-n", self.ns, "link", "set", "lo", "up")

    def _start_etcd(self):
        for attempt in range(3):
            client, peer = free_port(), free_port()
            if client == peer:
                continue
            data = os.path.join(self.tmp, "etcd-data-%d" % attempt)
            log = open(os.path.join(self.tmp, "etcd-%d.out" % attempt), "w")
            self.addCleanup(log.close)
            proc = subprocess.Popen(
                [ETCD_BIN, "--name", "partition", "--data-dir", data,
                 "--listen-client-urls",
                 "http://127.0.0.1:%d,http://%s:%d" % (client, self.addr_root, client),
                 "--advertise-client-urls", "http://127.0.0.1:%d" % client,
                 "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
                 "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
                 "--initial-cluster", "partition=http://127.0.0.1:%d" % peer,
                 "--initial-cluster-state", "new", "--log-level", "warn", "--logger", "zap",
                 "--log-outputs", os.path.join(self.tmp, "etcd-%d.log" % attempt)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            self.addCleanup(stop_pid, proc, ETCD_STOP_TIMEOUT_S)
            deadline = time.monotonic() + ETCD_START_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline:
                if self._etcd_healthy(client):
                    self.etcd_port = client
                    return
                time.sleep(0.1)
            stop_pid(proc, ETCD_STOP_TIMEOUT_S)
        self.fail("could not start etcd; see %s" % self.tmp)

    @staticmethod
    def _etcd_healthy(port):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=1) as r:
                return json.load(r).get("health") == "true"
        except (OSError, ValueError):
            return False

    def _queued_keys(self, name):
        """How many keys etcd holds in the queue of lock `name` (holders and waiters)."""
        start = KEY_PREFIX + name + "/"
        body = json.dumps({"key": b64(start), "range_end": b64(start[:-1] + "0"),
                           "count_only": True}).encode()
        request = urllib.request.Request("http://127.0.0.1:%d/v3/kv/range" % self.etcd_port,
                                         data=body, method="POST")
        with urllib.request.urlopen(request, timeout=2) as r:
            return int(json.load(r).get("count", 0))

    def _wait_queued(self, name, count):
        deadline = time.monotonic() + QUEUED_TIMEOUT_S
        while True:
            seen = self._queued_keys(name)
            if seen >= count:
                return
            if time.monotonic() >= deadline:
                self.fail("etcd shows %d keys for %s, want %d" % (seen, name, count))
            time.sleep(POLL_INTERVAL_S)

    def _wait_holder_key_gone(self, name):
        """Polls etcd (over 127.0.0.1, not cut) until the holder's key is gone from the queue.

        Returns (present_ms, gone_ms): when the last poll that still saw it was sent (the key
        existed then, so it expired later) and when the first poll that missed it returned.
        """
        deadline = time.monotonic() + TAKEOVER_TIMEOUT_S
        present_ms = None
        while True:
            sent_ms = now_ms()
            count = self._queued_keys(name)
            if count < 2:
                self.assertIsNotNone(present_ms, "the holder's key was gone at the first poll")
                return present_ms, now_ms()
            present_ms = sent_ms
            if time.monotonic() >= deadline:
                self.fail("the holder's key outlived the cut by %.1f s" % TAKEOVER_TIMEOUT_S)
            time.sleep(POLL_INTERVAL_S)

    def _row(self, volume):
        with sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=5) as db:
            return db.execute("SELECT fencing_token, status_reason FROM volumes WHERE id = ?",
                              (volume,)).fetchone()

    def _probe(self, mode, etcd_host, name, volume, netns=None):
        argv = [LOCK_PROBE, mode, "--etcd", "%s:%d" % (etcd_host, self.etcd_port), "--name", name,
                "--db", self.db, "--volume", volume, "--key-prefix", KEY_PREFIX] + LEASE_ARGS
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        probe = Probe(argv, os.path.join(self.tmp, "%s-%s.err" % (name, mode)))
        self.addCleanup(probe.kill)
        return probe

    # --- the test --------------------------------------------------------------------------

    def test_cut_holder_loses_lease_before_takeover_and_is_fenced(self):
        timings = []
        for i in range(RUNS):
            try:
                timings.append(self._one_run(i))
            except AssertionError as e:
                # Stop at the first failed run: the others would only repeat it, slowly.
                raise AssertionError("run %d of %d: %s" % (i + 1, RUNS, e)) from e
        lost = [t["lost_ms"] for t in timings]
        taken = [t["acquired_ms"] for t in timings]
        margin = [t["margin_ms"] for t in timings]
        expiry = [t["expired_ms"] for t in timings]

        def stats(values):
            return "%d/%d/%d" % (min(values), statistics.median(values), max(values))

        sys.stderr.write(
            "\n%d runs, ms after the cut (min/median/max): holder lost %s; holder key gone from "
            "etcd %s; waiter acquired %s; margin (acquired - lost) %s\n" %
            (len(timings), stats(lost), stats(expiry), stats(taken), stats(margin)))

    def _one_run(self, i):
        name = "part-%s-%02d" % (self.suffix, i)
        volume = "vol-%s-%02d" % (self.suffix, i)

        holder = self._probe("hold", self.addr_root, name, volume, netns=self.ns)
        held = holder.expect("acquired", ACQUIRE_EVENT_TIMEOUT_S)
        self.assertEqual(self._row(volume)[0], held["token"])

        waiter = self._probe("wait", "127.0.0.1", name, volume)
        waiter.expect("waiting", ACQUIRE_EVENT_TIMEOUT_S)
        self._wait_queued(name, 2)  # The waiter's key is queued behind the holder's: it blocks.

        run("ip", "link", "set", self.veth_root, "down")
        cut_ms = now_ms()
        try:
            present_ms, gone_ms = self._wait_holder_key_gone(name)
            lost = holder.expect("lost", LOST_TIMEOUT_S)
            taken = waiter.expect("acquired", TAKEOVER_TIMEOUT_S)
            wrote = waiter.expect("wrote", STEP_TIMEOUT_S)
        finally:
            run("ip", "link", "set", self.veth_root, "up")

        self.assertLess(lost["t_ms"], taken["t_ms"],
                        "the holder still believed in its lock when the waiter got it")
        # Stricter: the holder gave up while etcd still held its key, i.e. before etcd could grant
        # the name to anyone (present_ms is a lower bound of the key's expiry).
        self.assertLess(lost["t_ms"], present_ms,
                        "the holder still believed in its lock when etcd expired it")
        self.assertGreater(taken["token"], held["token"])
        self.assertTrue(wrote["applied"], "the new holder's write was refused")

        holder.send("write")
        stale = holder.expect("stale_write", STEP_TIMEOUT_S)
        self.assertFalse(stale["applied"], "the stale token's write went through")
        self.assertEqual(self._row(volume), (taken["token"], "wait %d" % taken["token"]))

        self.assertEqual(holder.wait_exit(STEP_TIMEOUT_S), 0, str(holder))
        self.assertEqual(waiter.wait_exit(STEP_TIMEOUT_S), 0, str(waiter))
        return {"lost_ms": lost["t_ms"] - cut_ms, "acquired_ms": taken["t_ms"] - cut_ms,
                "expired_ms": gone_ms - cut_ms, "margin_ms": taken["t_ms"] - lost["t_ms"]}


def main():
    global LOCK_PROBE
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--lock-probe", default=os.environ.get("CLINKER_LOCK_PROBE"))
    parser.add_argument("--clinkerd")  # Passed to every e2e file; this one does not use it.
    args, rest = parser.parse_known_args()
    LOCK_PROBE = os.path.abspath(args.lock_probe) if args.lock_probe else None
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
