"""End-to-end: a volume's whole life through the real `cinder` CLI, and the versions documents.

Goal: prove the walking skeleton works for an unmodified OpenStack client: create, list, show,
rename and delete a volume, with the file-backed driver really allocating (sparsely) and removing
the volume's file.

Method: one clinkerd per test (all roles, temp state dir, free loopback port). The lifecycle test
drives Debian's python3-cinderclient CLI in noauth mode and checks its parsed output, then checks
the volume file on disk with os.stat. The versions test uses raw HTTP and checks the fields
Tempest's schemas and cinderclient's version discovery read.
"""

import os
import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

# A sparse 1 GiB file must not have its space allocated; 1 MiB leaves room for metadata blocks.
MAX_ALLOCATED_BYTES = 1 << 20


class VolumeLifecycleTest(h.DaemonTestCase):

    def test_cli_create_list_show_rename_delete(self):
        d = self.daemon

        created = d.cinder("create", "1", "--name", "e2e-vol").properties()
        volume_id = created["id"]
        self.assertEqual(created["size"], "1", created)
        self.assertEqual(created["name"], "e2e-vol", created)
        self.assertIn(created["status"], ("creating", "available"), created)

        d.wait_for_status(volume_id, "available")

        path = d.volume_file(volume_id)
        self.assertTrue(os.path.isfile(path), "no volume file %s; volume dir has %s" %
                        (path, sorted(os.listdir(d.volume_dir)) if os.path.isdir(
                            d.volume_dir) else "nothing"))
        st = os.stat(path)
        self.assertEqual(st.st_size, 1 * h.GIB, "apparent size of %s" % path)
        self.assertLess(st.st_blocks * 512, MAX_ALLOCATED_BYTES, "%s is not sparse" % path)

        listed = [row for row in d.cinder("list").rows() if row.get("ID") == volume_id]
        self.assertEqual(len(listed), 1, "cinder list does not show %s once" % volume_id)
        self.assertEqual(listed[0]["Status"], "available", listed)
        self.assertEqual(listed[0]["Name"], "e2e-vol", listed)
        self.assertEqual(listed[0]["Size"], "1", listed)

        shown = d.cinder("show", volume_id).properties()
        self.assertEqual(shown["id"], volume_id, shown)
        self.assertEqual(shown["status"], "available", shown)
        self.assertEqual(shown["size"], "1", shown)
        self.assertEqual(shown["name"], "e2e-vol", shown)

        d.cinder("rename", volume_id, "e2e-renamed")
        shown = d.cinder("show", volume_id).properties()
        self.assertEqual(shown["name"], "e2e-renamed", shown)
        self.assertEqual(shown["status"], "available", shown)

        d.cinder("delete", volume_id)
        d.wait_for_status(volume_id, None)

        gone = d.cinder("show", volume_id, check=False)
        self.assertNotEqual(gone.returncode, 0, gone)
        self.assertFalse(
            [row for row in d.cinder("list").rows() if row.get("ID") == volume_id],
            "cinder list still shows %s" % volume_id)
        h.wait_for(lambda: not os.path.exists(path), h.STATUS_TIMEOUT_S,
                   "volume file %s to be removed" % path)

        row = d.db_volume(volume_id)
        if row is not None:  # Soft delete keeps the row; it must say so.
            self.assertEqual(row["deleted"], 1, row)
            self.assertEqual(row["status"], "deleted", row)

    def test_versions_documents(self):
        d = self.daemon
        root = d.request("GET", "/", microversion=None)
        self.assertEqual(root.status, 300, root)
        v3 = d.request("GET", "/v3/", microversion=None)
        self.assertEqual(v3.status, 200, v3)

        for resp in (root, v3):
            versions = resp.json().get("versions")
            self.assertIsInstance(versions, list, resp)
            self.assertTrue(versions, resp)
            current = versions[0]
            for field in ("id", "status", "version", "min_version", "updated", "links",
                          "media-types"):
                self.assertIn(field, current, resp)
            self.assertEqual(current["id"], "v3.0", resp)
            self.assertEqual(current["status"], "CURRENT", resp)
            self.assertEqual(current["min_version"], "3.0", resp)
            major, _, minor = current["version"].partition(".")
            self.assertEqual(major, "3", resp)
            self.assertTrue(minor.isdigit(), resp)
            self.assertIn("self", [link.get("rel") for link in current["links"]], resp)

    def test_microversion_is_echoed(self):
        d = self.daemon
        for asked, echoed in (("3.0", "volume 3.0"), (None, "volume 3.0")):
            resp = d.request("GET", "volumes", microversion=asked)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(resp.header("OpenStack-API-Version"), echoed, resp)
            self.assertEqual(resp.json().get("volumes"), [], resp)

    def test_sigterm_exits_zero(self):
        d = self.daemon
        d.create_volume(size=1)
        self.assertEqual(d.stop(), 0, d.stderr_tail())
        # A clean exit leaves a state dir the next start accepts.
        d.start()
        self.assertEqual(d.request("GET", "volumes").status, 200)
        self.assertEqual(d.stop(), 0, d.stderr_tail())


if __name__ == "__main__":
    h.main()
