"""End-to-end: bad requests get Cinder-shaped errors and change nothing.

Goal: every malformed or forbidden request is answered with the status and fault name Cinder
uses (`{"badRequest": {"code": 400, "message": ...}}`, `itemNotFound` 404, 406 for an
unsupported microversion) and leaves no trace: no row in clinker.db, no change in the listing,
no change to an existing volume.

Method: one daemon (all roles) per test; raw HTTP with the noauth token. Before each bad request
the test snapshots the volumes table (row count) and the API listing; after it, both must be
equal. Volumes of project A are probed from project B, which must not learn they exist.
"""

import socket
import sys
import uuid

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

# Cinder's Fault maps statuses without a name of their own (406 among them) to computeFault
# (cinder/api/openstack/wsgi.py: Fault).
NOT_ACCEPTABLE_FAULT = "computeFault"


class BadInputTest(h.DaemonTestCase):

    def snapshot(self):
        d = self.daemon
        listing = d.request("GET", "volumes/detail")
        self.assertEqual(listing.status, 200, listing)
        volumes = sorted((v["id"], v["status"], v["name"], v["size"])
                         for v in listing.json()["volumes"])
        return d.db_volume_count(), volumes

    def assertRejected(self, status, name, method, path, echo=True, **kwargs):
        """Sends the request, checks the error body, and that nothing changed.

        With `echo`, the error must also carry the microversion it was asked for (Cinder sets
        `OpenStack-API-Version` on every response, errors included).
        """
        before = self.snapshot()
        resp = self.daemon.request(method, path, **kwargs)
        self.assertCinderError(resp, status, name)
        if echo:
            self.assertEqual(resp.header("OpenStack-API-Version"),
                             "volume %s" % kwargs.get("microversion", h.DEFAULT_MICROVERSION),
                             resp)
        self.assertEqual(self.snapshot(), before, "%r changed the state" % resp)
        return resp

    def test_malformed_json_body(self):
        for raw in ('{"volume": {"size": 1', "not json", "", "[1, 2]", "null", '"volume"'):
            with self.subTest(body=raw):
                self.assertRejected(400, "badRequest", "POST", "volumes", raw_body=raw)

    def test_missing_volume_element(self):
        for body in ({}, {"size": 1}, {"volume": None}, {"volume": 1}, {"volume": []}):
            with self.subTest(body=body):
                self.assertRejected(400, "badRequest", "POST", "volumes", body=body)

    def test_wrong_types_on_create(self):
        cases = [
            {"size": "abc"},
            {"size": 1.5},
            {"size": True},
            {"size": [1]},
            {"size": 1, "name": 5},
            {"size": 1, "description": 5},
            {"size": 1, "metadata": "not-an-object"},
            {"size": 1, "metadata": ["a", "b"]},
            {"size": 1, "metadata": {"key": 5}},
        ]
        for volume in cases:
            with self.subTest(volume=volume):
                self.assertRejected(400, "badRequest", "POST", "volumes", body={"volume": volume})

    def test_sizes_out_of_range(self):
        for size in (0, -1, 10**12, "0", "-1"):
            with self.subTest(size=size):
                self.assertRejected(400,
                                    "badRequest",
                                    "POST",
                                    "volumes",
                                    body={"volume": {
                                        "size": size
                                    }})

    def test_unknown_volume_is_not_found(self):
        missing = str(uuid.uuid4())
        self.assertRejected(404, "itemNotFound", "GET", "volumes/%s" % missing)
        self.assertRejected(404,
                            "itemNotFound",
                            "PUT",
                            "volumes/%s" % missing,
                            body={"volume": {
                                "name": "x"
                            }})
        self.assertRejected(404, "itemNotFound", "DELETE", "volumes/%s" % missing)

    def test_other_projects_volume_is_not_listed(self):
        # noauth makes every caller admin (as Cinder's noauth): project B's lists hold only its
        # own volumes unless it asks for all_tenants, and an admin may show A's volume by id.
        # That a non-admin gets 404 for another project's volume is checked with Keystone roles
        # (test_keystone_auth.py) and in the API unit tests.
        d = self.daemon
        volume_id = d.create_volume(size=1, name="owned-by-a", project=h.PROJECT_A)["id"]
        d.wait_for_status(volume_id, "available", project=h.PROJECT_A)

        listing_b = d.request("GET", "volumes/detail", project=h.PROJECT_B)
        self.assertEqual(listing_b.status, 200, listing_b)
        self.assertEqual(listing_b.json()["volumes"], [], listing_b)
        everything = d.request("GET", "volumes/detail?all_tenants=1", project=h.PROJECT_B)
        self.assertEqual(everything.status, 200, everything)
        self.assertIn(volume_id, [v["id"] for v in everything.json()["volumes"]], everything)
        shown = d.request("GET", "volumes/%s" % volume_id, project=h.PROJECT_B)
        self.assertEqual(shown.status, 200, shown)
        self.assertEqual(shown.json()["volume"]["os-vol-tenant-attr:tenant_id"], h.PROJECT_A)

        volume = d.show_volume(volume_id, project=h.PROJECT_A)
        self.assertEqual(volume["name"], "owned-by-a", volume)
        self.assertEqual(volume["status"], "available", volume)

    def test_wrong_types_on_update(self):
        d = self.daemon
        volume_id = d.create_volume(size=1, name="target")["id"]
        d.wait_for_status(volume_id, "available")
        path = "volumes/%s" % volume_id
        for volume in ({"name": 5}, {"metadata": "x"}, {"metadata": [1]}):
            with self.subTest(volume=volume):
                self.assertRejected(400, "badRequest", "PUT", path, body={"volume": volume})
        self.assertRejected(400, "badRequest", "PUT", path, raw_body='{"volume": {"name": ')
        self.assertEqual(d.show_volume(volume_id)["name"], "target")

    def test_unsupported_microversion_is_not_acceptable(self):
        for method, path, body in (("GET", "volumes", None), ("POST", "volumes", {
                "volume": {
                    "size": 1
                }
        })):
            with self.subTest(method=method):
                self.assertRejected(406,
                                    NOT_ACCEPTABLE_FAULT,
                                    method,
                                    path,
                                    body=body,
                                    microversion="3.999",
                                    echo=False)

    def test_malformed_microversion_is_bad_request(self):
        for version in ("3.x", "3", "three", "3.01", "latest.0"):
            with self.subTest(version=version):
                self.assertRejected(400,
                                    "badRequest",
                                    "POST",
                                    "volumes",
                                    body={"volume": {
                                        "size": 1
                                    }},
                                    microversion=version,
                                    echo=False)

    def rss_mib(self):
        with open("/proc/%d/status" % self.daemon.proc.pid) as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
        return 0

    def raw_exchange(self, data):
        """Sends raw bytes on a new connection; returns the first bytes answered."""
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10) as conn:
            conn.sendall(data)
            return conn.recv(4096)

    def test_hostile_bodies_are_refused_and_the_daemon_lives(self):
        # Deep nesting used to overflow a thread's stack and kill the daemon (53,000 levels in a
        # 130 KB body); beyond 1 MiB the body limit answers first.
        for levels in (1000, 53000, 100000, 400000):
            with self.subTest(levels=levels):
                raw = '{"volume": {"size": 1, "metadata": %s%s}}' % ("{" * levels, "}" * levels)
                resp = self.assertRejected(400, "badRequest", "POST", "volumes", raw_body=raw)
                self.assertIn("nests deeper than", resp.json()["badRequest"]["message"])
        # A raw NUL used to end the body for the JSON parser: the rest was ignored.
        self.assertRejected(400, "badRequest", "POST", "volumes",
                            raw_body='{"volume": {"size": 1}}\0garbage')
        # Unknown properties (Cinder's schemas: additionalProperties false).
        self.assertRejected(400, "badRequest", "POST", "volumes",
                            body={"volume": {"size": 1, "bogus": 1}}, microversion="3.53")
        # Two different Content-Length headers: refused at the HTTP layer.
        body = b'{"volume": {"size": 1}}'
        answer = self.raw_exchange(
            b"POST /v3/%s/volumes HTTP/1.1\r\nHost: x\r\nX-Auth-Token: u:%s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\nContent-Length: 5\r\n"
            b"\r\n%s" % (h.PROJECT_A.encode(), h.PROJECT_A.encode(), len(body), body))
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
        # Still serving, and small.
        self.assertEqual(self.daemon.request("GET", "volumes").status, 200)
        self.assertLess(self.rss_mib(), 200)

    def test_unknown_list_filters_are_refused_not_ignored(self):
        d = self.daemon
        volume_id = d.create_volume(size=1, name="kept", project=h.PROJECT_A)["id"]
        d.wait_for_status(volume_id, "available", project=h.PROJECT_A)
        # noauth callers are admins: an unknown filter matches nothing rather than everything.
        for query in ("metadata=%7B%22nonexistent%22%3A%22zzz%22%7D", "size=2", "nonexistent=1",
                      "bootable=true"):
            with self.subTest(query=query):
                resp = d.request("GET", "volumes?" + query, project=h.PROJECT_A)
                self.assertEqual(resp.status, 200, resp)
                self.assertEqual(resp.json()["volumes"], [], resp)
        resp = d.request("GET", "volumes?size=1&bootable=false", project=h.PROJECT_A)
        self.assertEqual([v["id"] for v in resp.json()["volumes"]], [volume_id], resp)


if __name__ == "__main__":
    h.main()
