"""End-to-end: hostile requests are refused with Cinder's status, the daemon lives, memory stays low.

Goal: each reproducer of issue 18's hostile input (deep nesting at 10^3..10^6 levels, a 300 MB
chunked body, 200,000 metadata keys, a NUL after the JSON, two different Content-Length headers,
unknown properties, ids that are not UUIDs, multi-byte names at the limit) gets the status Cinder
(or the HTTP front end's limits) gives, the daemon answers afterwards, and its resident memory
stays under RSS_BOUND_BYTES throughout.

Method: one daemon (all roles, SQLite); raw sockets for what http.client will not send (chunked
streaming, duplicate headers), Daemon.request() for the rest. The 300 MB body is generated chunk
by chunk while it is sent and never held whole; the sender stops as soon as the server has
answered. After every reproducer the test reads VmRSS from /proc/<pid>/status and checks that
`GET /v3/<project>/volumes` still answers 200.
"""

import json
import select
import socket
import sys
import time

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

# The resident memory the daemon may reach while it is under attack. An idle clinkerd sits far
# below it; the 1 MiB body limit and the metadata bound keep any one request well within it.
RSS_BOUND_BYTES = 200 * 1024 * 1024

# The HTTP front end's default body limit (http_server.h, max_body_bytes).
BODY_LIMIT = 1 << 20

CHUNKED_TOTAL = 300 * 1000 * 1000
CHUNK = 64 * 1024

MISSING_ID = "00000000-0000-4000-8000-00000000dead"

# Cinder's (jsonschema's) words for a body id that is not a UUID.
NOT_A_UUID = "Invalid input for field/attribute %s. Value: xyz. 'xyz' is not a 'uuid'"
NOT_UUID_OR_NULL = ("Invalid input for field/attribute %s. Value: xyz. 'xyz' is not valid under "
                    "any of the given schemas")


def read_response(sock, timeout_s=h.HTTP_TIMEOUT_S):
    """Reads one Content-Length-framed response: (status, body bytes)."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a response head: %r" % data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest[:length]


class HostileInputTest(h.DaemonTestCase):

    def rss(self):
        with open("/proc/%d/status" % self.daemon.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/%d/status" % self.daemon.proc.pid)

    def assertAliveAndSmall(self, what):
        self.assertIsNone(self.daemon.proc.poll(), "clinkerd died after %s" % what)
        listing = self.daemon.request("GET", "volumes")
        self.assertEqual(listing.status, 200, "after %s: %r" % (what, listing))
        rss = self.rss()
        self.assertLess(rss, RSS_BOUND_BYTES,
                        "after %s clinkerd holds %d MiB" % (what, rss >> 20))

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.daemon.port), timeout=h.HTTP_TIMEOUT_S)

    def head(self, method, path, extra):
        d = self.daemon
        text = "%s /v3/%s/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, d.project, path)
        text += "X-Auth-Token: %s:%s\r\nContent-Type: application/json\r\n" % (d.user, d.project)
        text += "OpenStack-API-Version: volume %s\r\n" % h.DEFAULT_MICROVERSION
        return (text + extra + "\r\n").encode("latin-1")

    def send_streamed(self, path, pieces, chunked, method="POST"):
        """Streams `pieces` (an iterator of bytes) as a request body, chunked or (when `chunked` is
        an int) with that Content-Length; stops when the server answers or closes.
        Returns (status, body, bytes sent)."""
        sock = self.connect()
        sent = 0
        framing = ("Transfer-Encoding: chunked\r\n" if chunked is True else
                   "Content-Length: %d\r\n" % chunked)
        try:
            sock.sendall(self.head(method, path, framing))
            for piece in pieces:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # The server has answered (or closed): no point sending more.
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked is True else piece)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(piece)
            else:
                if chunked is True:
                    try:
                        sock.sendall(b"0\r\n\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        pass
            status, body = read_response(sock)
            return status, body, sent
        finally:
            sock.close()

    def assertFault(self, resp, status, message=None):
        name = {400: "badRequest", 404: "itemNotFound", 413: "overLimit"}[status]
        self.assertCinderError(resp, status, name)
        if message is not None:
            self.assertEqual(resp.json()[name]["message"], message, resp)

    def test_every_reproducer(self):
        d = self.daemon
        started = time.monotonic()
        self.assertAliveAndSmall("start")
        volume_id = d.create_volume(name="target")["id"]

        # Deep nesting: 400 under the body limit (the nesting bound refuses it before parsing),
        # 413 above it (10^6 levels are 2 MB).
        for levels in (10**3, 10**4, 10**5, 10**6):
            nested = "[" * levels + "]" * levels
            raw = '{"volume": {"size": 1, "metadata": %s}}' % nested
            for method, path in (("POST", "volumes"), ("PUT", "volumes/" + volume_id),
                                 ("POST", "volumes/%s/action" % volume_id), ("POST", "snapshots")):
                with self.subTest(levels=levels, path=path):
                    if len(raw) <= BODY_LIMIT:
                        resp = d.request(method, path, raw_body=raw)
                        self.assertFault(resp, 400)
                        self.assertIn("nests deeper than", resp.json()["badRequest"]["message"])
                    else:
                        # The server answers 413 after the header and stops reading: stream it.
                        encoded = raw.encode()
                        status, body, _ = self.send_streamed(
                            path, (encoded[i:i + CHUNK] for i in range(0, len(encoded), CHUNK)),
                            len(encoded), method)
                        self.assertEqual(status, 413, body)
            self.assertAliveAndSmall("%d nesting levels" % levels)

        # 300 MB chunked, generated while it is sent: 413 long before the end.
        def stream():
            piece = b" " * CHUNK
            for _ in range(CHUNKED_TOTAL // CHUNK):
                yield piece

        status, body, sent = self.send_streamed("volumes", stream(), chunked=True)
        self.assertEqual(status, 413, body)
        self.assertIn("overLimit", json.loads(body))
        self.assertLess(sent, CHUNKED_TOTAL)
        self.assertAliveAndSmall("300 MB chunked body")

        # 200,000 metadata keys (2.8 MB): refused by the body limit, framed either way.
        many = json.dumps({"volume": {"size": 1,
                                      "metadata": {"k%d" % i: "" for i in range(200000)}}})
        encoded = many.encode()
        for chunked in (len(encoded), True):
            status, body, _ = self.send_streamed(
                "volumes", (encoded[i:i + CHUNK] for i in range(0, len(encoded), CHUNK)), chunked)
            self.assertEqual(status, 413, body)
            self.assertIn("overLimit", json.loads(body))
        # Within the body limit, the metadata bound (256 items) refuses a bigger map.
        resp = d.request("POST", "volumes",
                         body={"volume": {"size": 1,
                                          "metadata": {"k%d" % i: "" for i in range(20000)}}})
        self.assertFault(resp, 413,
                         "Invalid metadata size: 20000 metadata items, more than 256.")
        resp = d.request("POST", "volumes/%s/metadata" % volume_id,
                         body={"metadata": {"k%d" % i: "v" for i in range(257)}})
        self.assertFault(resp, 413, "Invalid metadata size: 257 metadata items, more than 256.")
        self.assertAliveAndSmall("200,000 metadata keys")

        # A NUL after the JSON is not the end of the body.
        resp = d.request("POST", "volumes", raw_body=b'{"volume": {"size": 1}}\x00garbage')
        self.assertFault(resp, 400, "Malformed request body")

        # Two different Content-Length headers: the framing is ambiguous (request smuggling).
        body_bytes = b'{"volume": {"size": 1}}'
        sock = self.connect()
        try:
            sock.sendall(self.head("POST", "volumes",
                                   "Content-Length: %d\r\nContent-Length: %d\r\n" %
                                   (len(body_bytes), len(body_bytes) - 5)) + body_bytes)
            status, body = read_response(sock)
        finally:
            sock.close()
        self.assertEqual(status, 400, body)
        self.assertIn("badRequest", json.loads(body))
        self.assertAliveAndSmall("NUL and duplicate Content-Length")

        # Unknown properties, as Cinder's schemas refuse them.
        resp = d.request("POST", "volumes", microversion="3.53",
                         body={"volume": {"size": 1, "bogus": 1}})
        self.assertFault(resp, 400)
        self.assertIn("'bogus' was unexpected", resp.json()["badRequest"]["message"])
        for path, body in (("snapshots", {"snapshot": {"volume_id": volume_id, "bogus": 1}}),
                           ("backups", {"backup": {"volume_id": volume_id, "bogus": 1}})):
            resp = d.request("POST", path, body=body)
            self.assertFault(resp, 400)
            self.assertIn("'bogus' was unexpected", resp.json()["badRequest"]["message"])

        # Ids that are not UUIDs: in a body, Cinder's schema error; in a path, not found.
        for path, body, message, version in (
                ("snapshots", {"snapshot": {"volume_id": "xyz"}}, NOT_UUID_OR_NULL % "volume_id",
                 h.DEFAULT_MICROVERSION),
                ("volumes", {"volume": {"size": 1, "source_volid": "xyz"}},
                 NOT_UUID_OR_NULL % "source_volid", h.DEFAULT_MICROVERSION),
                ("backups", {"backup": {"volume_id": "xyz"}}, NOT_A_UUID % "volume_id",
                 h.DEFAULT_MICROVERSION),
                ("attachments", {"attachment": {"volume_uuid": "xyz"}},
                 NOT_A_UUID % "volume_uuid", h.ATTACHMENTS_MICROVERSION),
                ("volume-transfers", {"transfer": {"volume_id": "xyz"}}, NOT_A_UUID % "volume_id",
                 "3.55")):
            with self.subTest(path=path):
                self.assertFault(d.request("POST", path, body=body, microversion=version), 400,
                                 message)
        for path in ("volumes/xyz", "snapshots/xyz", "backups/xyz", "volumes/xyz/metadata"):
            with self.subTest(path=path):
                self.assertFault(d.request("GET", path), 404)
        self.assertFault(d.request("GET", "attachments/xyz",
                                   microversion=h.ATTACHMENTS_MICROVERSION), 404)
        self.assertFault(d.request("GET", "volumes/" + MISSING_ID), 404)

        # Multi-byte names: 255 characters (765 UTF-8 bytes) are fine, 256 are not.
        resp = d.request("POST", "volumes", body={"volume": {"size": 1, "name": "\u4e2d" * 255}})
        self.assertEqual(resp.status, 202, resp)
        self.assertEqual(resp.json()["volume"]["name"], "\u4e2d" * 255)
        resp = d.request("POST", "volumes", body={"volume": {"size": 1, "name": "\u4e2d" * 256}})
        self.assertFault(resp, 400, "Invalid input received: name has 256 characters, more than 255.")
        resp = d.request("POST", "snapshots",
                         body={"snapshot": {"volume_id": volume_id, "description": "\u4e2d" * 256}})
        self.assertFault(resp, 400)
        self.assertTrue(resp.json()["badRequest"]["message"].endswith("' is too long"), resp)
        self.assertAliveAndSmall("schema reproducers")

        # Nothing refused above left a row: the target and the 255-character volume only.
        self.assertEqual(d.db_volume_count(), 2)
        self.assertLess(time.monotonic() - started, 60.0)


if __name__ == "__main__":
    h.main()
