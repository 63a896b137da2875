"""Shared harness for Clinker's end-to-end tests: one real clinkerd process per test.

Goal: let each e2e test drive a real daemon the way an operator and a client would (a process on a
loopback port, raw HTTP, the real `cinder` CLI) and look at what it left behind (its SQLite file,
its volume files, its driver journal), without any test leaking a process, a port or a directory.

Method:
- `Daemon` starts clinkerd on a free loopback port with a fresh temp state dir, waits (bounded)
  until `GET /` answers, and stops it by PID: SIGTERM, then SIGKILL after a bound. `kill()` is a
  SIGKILL (a crash); `start()` again reuses the same state dir (a restart). `start(env=...)`
  adds environment variables for one start (e.g. a fault point); `wait_exit()` waits, bounded,
  for a daemon that kills itself.
- `Daemon.request()` is raw HTTP (http.client, so nothing follows redirects or hides a status)
  with the noauth token `user:project` and a microversion header. `Daemon.prepare()` sends all
  of a request but its last byte, so racing requests can be released together.
- `Daemon.db_rows()` reads the daemon's SQLite file read-only; `Daemon.journal()` reads the
  driver journal (`--driver-journal`). Volumes and snapshots have the same small helpers
  (create, show, wait for a status, DB row, back-end file); backups and attachments have show,
  DB row and (backups) wait for a status and directory.
- `Daemon.cinder()` runs Debian's python3-cinderclient CLI in noauth mode and parses its tables.
- `Daemon.openstack()` runs Debian's python3-openstackclient CLI the same way (`-f json` output
  is read by `CliResult.json()`).
- Every loop is bounded: waits by a deadline (`wait_for()`, `Daemon.wait_for_status()`), retries
  by a count.

Python 3 standard library only: it runs under Debian's /usr/bin/python3, next to the distribution's
cinderclient. Every wait has a deadline; every child is stopped by PID in `close()`.
"""

import argparse
import errno
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

# Project ids must match the Cinder default project_id_regex [0-9a-f-]+; user ids are free-form.
PROJECT_A = "0a1b2c3d4e5f40718293a4b5c6d7e8f9"
PROJECT_B = "9f8e7d6c5b4a40392817f6e5d4c3b2a1"
USER = "e2e-user"

# The microversion the tests send unless told otherwise. 3.0 is inside every server's range and is
# what a client that asks for nothing gets, so the tests do not depend on the server's maximum.
DEFAULT_MICROVERSION = "3.0"

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0
STATUS_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.05

GIB = 1 << 30

# The attachments API needs 3.27, its os-complete action 3.44.
ATTACHMENTS_MICROVERSION = "3.44"

# Set by parse_args() from the command line CTest passes (`--clinkerd PATH`).
CLINKERD = None


# A [quota] section with every limit off (see Daemon.start).
UNLIMITED_QUOTA_CONFIG = ("[quota]\nquota_volumes = -1\nquota_snapshots = -1\nquota_gigabytes = -1\n"
                          "quota_backups = -1\nquota_backup_gigabytes = -1\nquota_groups = -1\n")


def parse_args(argv=None):
    """Reads `--clinkerd PATH` and returns the remaining argv for unittest.main()."""
    global CLINKERD
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--clinkerd", default=os.environ.get("CLINKERD"))
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.clinkerd:
        sys.exit("usage: %s --clinkerd PATH [unittest options]" % sys.argv[0])
    CLINKERD = os.path.abspath(args.clinkerd)
    if not os.access(CLINKERD, os.X_OK):
        sys.exit("clinkerd is not an executable file: %s" % CLINKERD)
    return [sys.argv[0]] + rest


def main():
    """Entry point for each test file: exit status is non-zero when any test fails."""
    argv = parse_args()
    unittest.main(argv=argv, verbosity=2)


def wait_for(predicate, timeout_s, what, interval_s=POLL_INTERVAL_S):
    """Polls `predicate` until it returns a truthy value, which is returned.

    Raises AssertionError naming `what` and the last value seen once `timeout_s` has passed.
    """
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s (last: %r)" %
                                 (timeout_s, what, last))
        time.sleep(interval_s)


def free_port():
    """A loopback TCP port nobody listens on right now (the daemon may still lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- data in volume and snapshot images ------------------------------------------------------
#
# The file back-end's images are sparse files of a few GiB. Hashing every byte of one costs tens
# of seconds on a slow machine, so whole-image comparisons use content_digest(): a sha256 over
# the image's size and every 1 MiB block that holds a non-zero byte, each with its index. It is a
# function of the bytes alone (a hole, an allocated zero block and a block never written give the
# same digest), so two images have equal digests iff their contents are equal (up to sha256
# collisions), and it reads only the data extents (SEEK_DATA/SEEK_HOLE). model_digest() computes
# the same digest from a list of writes over zeros, without any file.

DIGEST_BLOCK = 1 << 20
_ZERO_BLOCK = bytes(DIGEST_BLOCK)


def pattern_bytes(seed, length):
    """`length` pseudo-random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(length)


def write_pattern(path, seed, offsets, length):
    """Writes `length` seeded random bytes at each offset of an existing file (no truncation),
    fsyncs, and returns the writes as [(offset, bytes)] for model_digest()."""
    writes = []
    fd = os.open(path, os.O_WRONLY)
    try:
        for index, offset in enumerate(offsets):
            data = pattern_bytes("%s/%d" % (seed, index), length)
            written = os.pwrite(fd, data, offset)
            if written != len(data):
                raise AssertionError("short write to %s at %d: %d" % (path, offset, written))
            writes.append((offset, data))
        os.fsync(fd)
    finally:
        os.close(fd)
    return writes


def range_digest(path, offset, length):
    """sha256 (hex) of the bytes [offset, offset + length) of a file, read in chunks."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < length:
            chunk = os.pread(fd, min(DIGEST_BLOCK, length - done), offset + done)
            if not chunk:
                break  # Past the end: the digest then differs from the expected one.
            digest.update(chunk)
            done += len(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _digest_block(digest, index, block):
    if block != _ZERO_BLOCK[:len(block)]:
        digest.update(b"block %d\n" % index)
        digest.update(block)


def content_digest(path):
    """The content digest (see above) of a file, streaming; reads only its data extents."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        digest.update(b"size %d\n" % size)
        next_block = 0  # Blocks below this one are already digested.
        pos = 0
        # Each round moves `pos` past one data extent, so the rounds are bounded by the extents.
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
                hole = os.lseek(fd, data, os.SEEK_HOLE)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break  # Only a hole is left.
                if e.errno != errno.EINVAL:
                    raise
                data, hole = pos, size  # No extent reporting: read the rest.
            hole = min(hole, size)
            if hole <= data:
                break
            first = max(data // DIGEST_BLOCK, next_block)
            last = (hole - 1) // DIGEST_BLOCK
            for index in range(first, last + 1):
                _digest_block(digest, index, os.pread(fd, DIGEST_BLOCK, index * DIGEST_BLOCK))
            next_block = last + 1
            pos = max(hole, next_block * DIGEST_BLOCK)
    finally:
        os.close(fd)
    return digest.hexdigest()


def model_digest(size, writes):
    """The content digest of a `size`-byte file of zeros after `writes` ([(offset, bytes)],
    applied in order; bytes past `size` are cut off)."""
    blocks = {}
    for offset, data in writes:
        end = min(offset + len(data), size)
        pos = offset
        while pos < end:
            index = pos // DIGEST_BLOCK
            block_start = index * DIGEST_BLOCK
            block = blocks.setdefault(index,
                                      bytearray(min(DIGEST_BLOCK, size - block_start)))
            stop = min(end, block_start + len(block))
            block[pos - block_start:stop - block_start] = data[pos - offset:stop - offset]
            pos = stop
    digest = hashlib.sha256()
    digest.update(b"size %d\n" % size)
    for index in sorted(blocks):
        _digest_block(digest, index, bytes(blocks[index]))
    return digest.hexdigest()


class Response:
    """One HTTP answer: status, headers (case-insensitive lookup), raw body and parsed JSON."""

    def __init__(self, method, path, status, headers, body):
        self.method = method
        self.path = path
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise AssertionError("%s %s -> %d: body is not JSON (%s): %r" %
                                 (self.method, self.path, self.status, e, self.body[:500]))

    def __repr__(self):
        return "%s %s -> %d %r" % (self.method, self.path, self.status, self.body[:500])


class PendingRequest:
    """An HTTP/1.1 request sent but for its last byte, on its own connection (see prepare())."""

    def __init__(self, port, method, path, data, headers, timeout_s):
        self.method = method
        self.path = path
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % port]
        lines += ["%s: %s" % item for item in headers.items()]
        lines += ["Content-Length: %d" % len(data), "Connection: close"]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + data
        self._tail = raw[-1:]
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        try:
            self._sock.sendall(raw[:-1])
        except OSError:
            self._sock.close()
            raise

    def fire(self):
        """Sends the last byte and returns the Response; the connection is closed after."""
        try:
            self.send_last_byte()
            return self.read_response()
        finally:
            self._sock.close()

    def send_last_byte(self):
        """Completes the request without waiting for the answer (then call read_response())."""
        try:
            self._sock.sendall(self._tail)
        except OSError:
            self._sock.close()
            raise

    def read_response(self):
        """Reads the answer to a completed request; the connection is closed after."""
        try:
            resp = http.client.HTTPResponse(self._sock, method=self.method)
            resp.begin()
            return Response(self.method, self.path, resp.status, resp.headers, resp.read())
        finally:
            self._sock.close()

    def close(self):
        self._sock.close()


class CliResult:
    """One `cinder` CLI run: exit code, stdout, stderr, and the tables found in stdout."""

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.tables = parse_tables(stdout)

    def properties(self):
        """The Property/Value table of `cinder show`/`create` as a dict of strings."""
        for header, rows in self.tables:
            if header[:2] == ["Property", "Value"]:
                return {row[0]: row[1] for row in rows}
        raise AssertionError("no Property/Value table in output of %s:\n%s" % (self.argv,
                                                                              self.stdout))

    def rows(self):
        """The first table of `cinder list` as a list of dicts keyed by column title."""
        if not self.tables:
            raise AssertionError("no table in output of %s:\n%s" % (self.argv, self.stdout))
        header, rows = self.tables[0]
        return [dict(zip(header, row)) for row in rows]

    def json(self):
        """stdout parsed as JSON (what `openstack ... -f json` prints)."""
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise AssertionError("output of %s is not JSON (%s):\n%s" % (self.argv, e,
                                                                         self.stdout))

    def __repr__(self):
        return "%s -> rc=%d\nstdout:\n%s\nstderr:\n%s" % (" ".join(
            self.argv), self.returncode, self.stdout, self.stderr)


def parse_tables(text):
    """Parses PrettyTable output (what cinderclient prints) into [(header, rows)].

    A row whose first cell is empty continues the previous row's cells (PrettyTable's way of
    printing multi-line values), so it is joined onto that row with newlines.
    """
    tables = []
    header = None
    rows = []
    border_count = 0
    for line in text.splitlines():
        line = line.rstrip()
        if line.startswith("+") and line.endswith("+"):
            border_count += 1
            if border_count == 3 and header is not None:
                tables.append((header, rows))
                header, rows, border_count = None, [], 0
            continue
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif rows and cells[0] == "" and len(cells) == len(rows[-1]):
            rows[-1] = [a + "\n" + b if b else a for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return tables


class Daemon:
    """One clinkerd process and its state dir, which outlives the process across restarts.

    Not thread safe: one test drives it. close() is idempotent and always leaves no process and
    no directory behind (unless CLINKER_E2E_KEEP=1, for post-mortems).
    """

    def __init__(self, extra_args=(), project=PROJECT_A, user=USER):
        if CLINKERD is None:
            raise RuntimeError("clinker_harness.parse_args() was not called")
        self.root = tempfile.mkdtemp(prefix="clinker-e2e-", dir=os.environ.get("TMPDIR"))
        self.state_dir = os.path.join(self.root, "state")
        self.volume_dir = os.path.join(self.state_dir, "volumes")
        self.db_path = os.path.join(self.state_dir, "clinker.db")
        self.journal_path = os.path.join(self.root, "driver-journal.jsonl")
        self.home = os.path.join(self.root, "home")
        os.makedirs(self.home)
        self.project = project
        self.user = user
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.starts = 0
        self._stderr_file = None

    # ---- process control ------------------------------------------------------------------

    def start(self, extra_args=None, port=None, env=None):
        """Starts clinkerd on the same state dir and waits until `GET /` answers.

        `extra_args` replaces the flags given to the constructor for this start only; `env`
        (a dict) is added to the daemon's environment for this start only. The port is
        kept across restarts; when the daemon exits because it cannot bind it ("Address already
        in use": another process won the race for a free port), a new one is tried, three
        attempts in all.
        """
        assert self.proc is None, "daemon already running"
        args = self.extra_args if extra_args is None else list(extra_args)
        if "--config" not in args and "-c" not in args:
            # Cinder's default quotas (10 volumes a project) would stop the tests that make many
            # volumes in one project: without a --config of its own a daemon has no limits.
            # Tests of quotas pass their own --config.
            path = os.path.join(self.root, "quota-unlimited.toml")
            with open(path, "w") as f:
                f.write(UNLIMITED_QUOTA_CONFIG)
            args = ["--config", path] + list(args)
        child_env = None
        if env:
            child_env = dict(os.environ)
            child_env.update(env)
        last_error = None
        for attempt in range(3):
            self.port = port or (self.port if self.port and attempt == 0 else free_port())
            port = None
            self.starts += 1
            stderr_path = os.path.join(self.root, "clinkerd-%d.stderr" % self.starts)
            self._stderr_file = open(stderr_path, "wb")
            argv = [
                CLINKERD, "--listen", "127.0.0.1", "--port",
                str(self.port), "--state-dir", self.state_dir, "--log-level", "debug"
            ] + args
            self.argv = argv
            self.proc = subprocess.Popen(argv,
                                         stdin=subprocess.DEVNULL,
                                         stdout=self._stderr_file,
                                         stderr=self._stderr_file,
                                         cwd=self.root,
                                         env=child_env)
            try:
                self._wait_ready()
                return self
            except AssertionError as e:
                last_error = e
                exited = self.proc.poll() is not None
                self.kill()
                if not exited or "address already in use" not in self.stderr_tail().lower():
                    raise
        raise last_error

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("clinkerd exited with %d before it was ready: %s\n%s" %
                                     (self.proc.returncode, " ".join(self.argv),
                                      self.stderr_tail()))
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
                try:
                    conn.request("GET", "/")
                    if conn.getresponse().status == 300:
                        return
                finally:
                    conn.close()
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() >= deadline:
                raise AssertionError("clinkerd not ready after %.0f s on port %d: %s\n%s" %
                                     (READY_TIMEOUT_S, self.port, " ".join(self.argv),
                                      self.stderr_tail()))
            time.sleep(POLL_INTERVAL_S)

    def stop(self, timeout_s=STOP_TIMEOUT_S):
        """SIGTERM, then SIGKILL if the process has not exited within `timeout_s`.

        Returns the exit status (negative: killed by that signal); None if it was not running.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        return self._reap()

    def kill(self):
        """SIGKILL: a crash. The daemon cleans nothing up; what it wrote stays (page cache)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        return self._reap()

    def restart(self, extra_args=None, env=None):
        self.stop()
        return self.start(extra_args, env=env)

    def wait_exit(self, timeout_s=STOP_TIMEOUT_S):
        """Waits (bounded) for the process to exit by itself and reaps it; returns its status.

        For faults the daemon injects in itself: a timeout fails with the daemon's last lines
        and leaves the process running (close() still kills it).
        """
        assert self.proc is not None, "daemon not running"
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError("clinkerd still running after %.1f s\n%s" %
                                 (timeout_s, self.stderr_tail()))
        return self._reap()

    def _reap(self):
        code = self.proc.returncode
        self.proc = None
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        return code

    def close(self):
        try:
            self.kill()
        finally:
            if os.environ.get("CLINKER_E2E_KEEP") == "1":
                sys.stderr.write("keeping %s\n" % self.root)
            else:
                shutil.rmtree(self.root, ignore_errors=True)

    def stderr_tail(self, lines=40):
        """The last lines the daemon wrote (all starts), for failure messages."""
        out = []
        for n in range(1, self.starts + 1):
            path = os.path.join(self.root, "clinkerd-%d.stderr" % n)
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            out.append("--- clinkerd start #%d stderr ---" % n)
            out.extend(text.splitlines())
        return "\n".join(out[-lines:])

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    # ---- raw HTTP -------------------------------------------------------------------------

    def request(self,
                method,
                path,
                body=None,
                raw_body=None,
                project=None,
                user=None,
                microversion=DEFAULT_MICROVERSION,
                headers=None,
                timeout_s=HTTP_TIMEOUT_S):
        """Sends one request and returns a Response; never raises on an HTTP error status.

        `path` is relative to `/v3/<project>` unless it starts with '/'. `body` is JSON-encoded;
        `raw_body` (bytes or str) is sent as is. `microversion=None` sends no version header.
        """
        path, data, all_headers = self._build(path, body, raw_body, project, user, microversion,
                                              headers)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request(method, path, body=data, headers=all_headers)
            resp = conn.getresponse()
            return Response(method, path, resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def prepare(self, method, path, timeout_s=HTTP_TIMEOUT_S, **kwargs):
        """Connects and sends all of a request but its last byte; PendingRequest.fire() ends it.

        For races: the server has the connection and almost all of the request, so requests
        fired together reach the handler together, whatever the server's accept backlog or
        idle-connection timeout. Takes the same keyword arguments as request().
        """
        path, data, all_headers = self._build(path, kwargs.pop("body", None),
                                              kwargs.pop("raw_body", None),
                                              kwargs.pop("project", None), kwargs.pop("user", None),
                                              kwargs.pop("microversion", DEFAULT_MICROVERSION),
                                              kwargs.pop("headers", None))
        if kwargs:
            raise TypeError("unexpected arguments: %s" % sorted(kwargs))
        return PendingRequest(self.port, method, path, data or b"", all_headers, timeout_s)

    def _build(self, path, body, raw_body, project, user, microversion, headers):
        project = project or self.project
        user = user or self.user
        if not path.startswith("/"):
            path = "/v3/%s/%s" % (project, path)
        all_headers = {"X-Auth-Token": "%s:%s" % (user, project), "Accept": "application/json"}
        if microversion is not None:
            all_headers["OpenStack-API-Version"] = "volume %s" % microversion
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
        elif raw_body is not None:
            data = raw_body.encode("utf-8") if isinstance(raw_body, str) else raw_body
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        return path, data, all_headers

    def create_volume(self, size=1, name=None, project=None, **extra):
        """POST a volume; asserts 202 and returns the volume dict of the answer."""
        volume = {"size": size}
        if name is not None:
            volume["name"] = name
        volume.update(extra)
        resp = self.request("POST", "volumes", body={"volume": volume}, project=project)
        if resp.status != 202:
            raise AssertionError("create volume: expected 202, got %r" % resp)
        return resp.json()["volume"]

    def show_volume(self, volume_id, project=None):
        """The API view of a volume, or None on 404; any other status fails."""
        resp = self.request("GET", "volumes/%s" % volume_id, project=project)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise AssertionError("show volume: expected 200 or 404, got %r" % resp)
        return resp.json()["volume"]

    def wait_for_status(self, volume_id, statuses, timeout_s=STATUS_TIMEOUT_S, project=None):
        """Polls the API until the volume's status is in `statuses` (None = gone); returns it."""
        return self._wait_for_api_status("volume", volume_id,
                                         lambda: self.show_volume(volume_id, project=project),
                                         statuses, timeout_s)

    def create_snapshot(self, volume_id, name=None, project=None, **extra):
        """POST a snapshot of `volume_id`; asserts 202 and returns the snapshot dict."""
        snapshot = {"volume_id": volume_id}
        if name is not None:
            snapshot["name"] = name
        snapshot.update(extra)
        resp = self.request("POST", "snapshots", body={"snapshot": snapshot}, project=project)
        if resp.status != 202:
            raise AssertionError("create snapshot: expected 202, got %r" % resp)
        return resp.json()["snapshot"]

    def show_snapshot(self, snapshot_id, project=None):
        """The API view of a snapshot, or None on 404; any other status fails."""
        resp = self.request("GET", "snapshots/%s" % snapshot_id, project=project)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise AssertionError("show snapshot: expected 200 or 404, got %r" % resp)
        return resp.json()["snapshot"]

    def wait_for_snapshot_status(self,
                                 snapshot_id,
                                 statuses,
                                 timeout_s=STATUS_TIMEOUT_S,
                                 project=None):
        """Polls the API until the snapshot's status is in `statuses` (None = gone)."""
        return self._wait_for_api_status("snapshot", snapshot_id,
                                         lambda: self.show_snapshot(snapshot_id, project=project),
                                         statuses, timeout_s)

    def show_backup(self, backup_id, project=None):
        """The API view of a backup, or None on 404; any other status fails."""
        resp = self.request("GET", "backups/%s" % backup_id, project=project)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise AssertionError("show backup: expected 200 or 404, got %r" % resp)
        return resp.json()["backup"]

    def wait_for_backup_status(self, backup_id, statuses, timeout_s=STATUS_TIMEOUT_S,
                               project=None):
        """Polls the API until the backup's status is in `statuses` (None = gone)."""
        return self._wait_for_api_status("backup", backup_id,
                                         lambda: self.show_backup(backup_id, project=project),
                                         statuses, timeout_s)

    def show_attachment(self, attachment_id, project=None):
        """The API view of an attachment (at ATTACHMENTS_MICROVERSION), or None on 404; any
        other status fails."""
        resp = self.request("GET", "attachments/%s" % attachment_id, project=project,
                            microversion=ATTACHMENTS_MICROVERSION)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise AssertionError("show attachment: expected 200 or 404, got %r" % resp)
        return resp.json()["attachment"]

    def _wait_for_api_status(self, kind, resource_id, show, statuses, timeout_s):
        statuses = (statuses,) if isinstance(statuses, str) or statuses is None else statuses
        seen = []

        def current():
            resource = show()
            status = None if resource is None else resource["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            return (status,) if status in statuses else None

        try:
            return wait_for(current, timeout_s,
                            "%s %s to reach %s" % (kind, resource_id, statuses))[0]
        except AssertionError as e:
            raise AssertionError("%s; statuses seen: %s\n%s" % (e, seen, self.stderr_tail()))

    # ---- the daemon's files -----------------------------------------------------------------

    def db_rows(self, sql, params=()):
        """Runs a read-only query on the daemon's SQLite file (it may be running)."""
        uri = "file:%s?mode=ro" % urllib.parse.quote(self.db_path)
        conn = sqlite3.connect(uri, uri=True, timeout=10.0)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def db_volume(self, volume_id):
        rows = self.db_rows("SELECT * FROM volumes WHERE id = ?", (volume_id,))
        return rows[0] if rows else None

    def db_volume_count(self):
        return self.db_rows("SELECT COUNT(*) AS n FROM volumes")[0]["n"]

    def db_snapshot(self, snapshot_id):
        rows = self.db_rows("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,))
        return rows[0] if rows else None

    def db_attachment(self, attachment_id):
        rows = self.db_rows("SELECT * FROM attachments WHERE id = ?", (attachment_id,))
        return rows[0] if rows else None

    def db_backup(self, backup_id):
        rows = self.db_rows("SELECT * FROM backups WHERE id = ?", (backup_id,))
        return rows[0] if rows else None

    @property
    def backup_dir(self):
        """Where the daemon keeps backups unless told otherwise (`<state-dir>/backups`)."""
        return os.path.join(self.state_dir, "backups")

    def backup_path(self, backup_id):
        """The directory of a backup in the file backup store."""
        return os.path.join(self.backup_dir, "backup-%s" % backup_id)

    def volume_file(self, volume_id):
        return os.path.join(self.volume_dir, "volume-%s.img" % volume_id)

    def snapshot_file(self, snapshot_id):
        return os.path.join(self.volume_dir, "snapshot-%s.img" % snapshot_id)

    def journal(self):
        """The driver journal's entries (one JSON object a line; the backup store writes its
        lines there too); [] if it does not exist."""
        try:
            with open(self.journal_path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    # ---- the real cinder CLI ----------------------------------------------------------------

    def cinder(self,
               *args,
               project=None,
               user=None,
               check=True,
               timeout_s=CLI_TIMEOUT_S,
               microversion=DEFAULT_MICROVERSION):
        """Runs `cinder <args>` against this daemon in noauth mode; returns a CliResult.

        cinderclient's shell passes --os-endpoint on as the request base URL as is (the noauth
        plugin's own "<endpoint>/<project>" is not used then), so the endpoint names the project.
        --os-volume-api-version 3.0 (the default `microversion`) keeps the client inside any
        server's range; the CLI still asks `GET /` for the server's range first.
        `microversion=None` passes no version at all: the CLI then takes the highest version
        both it and the server support, as a user's unpinned `cinder` does. HOME points into
        the temp dir because the CLI writes a completion cache there. With check=True a non-zero
        exit fails the test.
        """
        project = project or self.project
        user = user or self.user
        argv = [
            "cinder", "--os-auth-type", "noauth", "--os-user-id", user, "--os-project-id",
            project, "--os-endpoint",
            "%s/v3/%s" % (self.base_url, project)
        ] + (["--os-volume-api-version", microversion] if microversion else []) + [
            str(a) for a in args
        ]
        return self._run_cli(argv, check, timeout_s)

    def openstack(self,
                  *args,
                  project=None,
                  user=None,
                  check=True,
                  timeout_s=CLI_TIMEOUT_S,
                  microversion=None):
        """Runs `openstack <args>` (python3-openstackclient) against this daemon in noauth mode.

        openstackclient loads cinderclient's `noauth` auth plugin (a keystoneauth entry point),
        whose endpoint is `--os-endpoint` + "/<project>" and whose token is `user:project`, as
        the cinder runner's. `microversion=None` (the default) passes no
        --os-volume-api-version: openstackclient then speaks its default volume API "3", i.e.
        3.0, without asking the server (unlike the cinder CLI, it does not negotiate). Add
        `-f json` to a show/list/create command and read CliResult.json(). With check=True a
        non-zero exit fails the test.
        """
        project = project or self.project
        user = user or self.user
        argv = [
            "openstack", "--os-auth-type", "noauth", "--os-user-id", user, "--os-project-id",
            project, "--os-endpoint",
            "%s/v3" % self.base_url
        ] + (["--os-volume-api-version", microversion] if microversion else []) + [
            str(a) for a in args
        ]
        return self._run_cli(argv, check, timeout_s)

    def _run_cli(self, argv, check, timeout_s):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "CINDER"))}
        env["HOME"] = self.home
        proc = subprocess.run(argv,
                              stdin=subprocess.DEVNULL,
                              capture_output=True,
                              text=True,
                              env=env,
                              timeout=timeout_s,
                              check=False)
        result = CliResult(argv, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError("%r\n%s" % (result, self.stderr_tail()))
        return result


class DaemonTestCase(unittest.TestCase):
    """Base class: `self.daemon` is a started Daemon, closed after each test even on failure."""

    # Flags for every daemon this class starts; subclasses override.
    daemon_args = ()

    def setUp(self):
        self.daemon = Daemon(self.daemon_args)
        self.addCleanup(self.daemon.close)
        self.daemon.start()

    def assertCinderError(self, resp, status, name):
        """Asserts a Cinder-shaped error: `{name: {"code": status, "message": str}}`."""
        self.assertEqual(resp.status, status, resp)
        body = resp.json()
        self.assertIsInstance(body, dict, resp)
        self.assertEqual(list(body.keys()), [name], resp)
        fault = body[name]
        self.assertIsInstance(fault, dict, resp)
        self.assertEqual(fault.get("code"), status, resp)
        self.assertIsInstance(fault.get("message"), str, resp)
        self.assertTrue(fault["message"], resp)
