"""End-to-end: metadata, flags, image metadata, availability zones and extensions.

Goal: prove an unmodified client drives the metadata sub-resources of volumes and snapshots, the
bootable and readonly flags, the image metadata actions, the availability zone list and the
extension list of a real daemon, and that what it stores survives a restart (it is in the
database, in the new columns of migration 5).

Method: one clinkerd (all roles, temp state dir). Debian's python3-cinderclient CLI in noauth
mode for the commands a user types (metadata, snapshot-metadata, set-bootable,
readonly-mode-update, image-metadata, availability-zone-list, list-extensions), raw HTTP for
what the CLI does not show (status codes, the ETag of 3.15, error bodies).
"""

import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402


def key_values(result):
    """A two-column table of the CLI (Property/Value, Metadata-property/Value, ...) as a dict."""
    rows = result.rows()
    out = {}
    for row in rows:
        values = list(row.values())
        if len(values) != 2:
            raise AssertionError("not a two-column table: %r" % result)
        out[values[0]] = values[1]
    return out


class MetadataTest(h.DaemonTestCase):

    def test_cli_metadata_flags_and_image_metadata(self):
        d = self.daemon
        volume_id = d.create_volume(name="meta-vol")["id"]
        d.wait_for_status(volume_id, "available")

        d.cinder("metadata", volume_id, "set", "key1=value1", "key2=value2")
        d.cinder("metadata", volume_id, "unset", "key2")
        resp = d.request("GET", "volumes/%s/metadata" % volume_id)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json(), {"metadata": {"key1": "value1"}}, resp)

        d.cinder("metadata-update-all", volume_id, "only=this")
        shown = key_values(d.cinder("metadata-show", volume_id))
        self.assertEqual(shown.get("only"), "this", shown)
        self.assertNotIn("key1", shown)

        d.cinder("set-bootable", volume_id, "true")
        d.cinder("readonly-mode-update", volume_id, "True")
        volume = d.show_volume(volume_id)
        self.assertEqual(volume["bootable"], "true", volume)
        self.assertEqual(volume["metadata"], {"only": "this", "readonly": "True"}, volume)

        d.cinder("image-metadata", volume_id, "set", "image_name=cirros", "min_ram=64")
        d.cinder("image-metadata", volume_id, "unset", "min_ram")
        shown = key_values(d.cinder("image-metadata-show", volume_id))
        self.assertEqual(shown.get("image_name"), "cirros", shown)
        self.assertNotIn("min_ram", shown)
        self.assertEqual(d.show_volume(volume_id)["volume_image_metadata"],
                         {"image_name": "cirros"})

        # A snapshot's metadata.
        snapshot_id = d.create_snapshot(volume_id)["id"]
        d.wait_for_snapshot_status(snapshot_id, "available")
        d.cinder("snapshot-metadata", snapshot_id, "set", "s1=v1", "s2=v2")
        d.cinder("snapshot-metadata", snapshot_id, "unset", "s1")
        resp = d.request("GET", "snapshots/%s/metadata" % snapshot_id)
        self.assertEqual(resp.json(), {"metadata": {"s2": "v2"}}, resp)

        # All of it is in the database.
        d.restart()
        volume = d.show_volume(volume_id)
        self.assertEqual(volume["metadata"], {"only": "this", "readonly": "True"}, volume)
        self.assertEqual(volume["volume_image_metadata"], {"image_name": "cirros"}, volume)
        self.assertEqual(volume["bootable"], "true", volume)
        self.assertEqual(
            d.request("GET", "snapshots/%s/metadata" % snapshot_id).json(),
            {"metadata": {"s2": "v2"}})

    def test_http_status_codes_etag_and_errors(self):
        d = self.daemon
        volume_id = d.create_volume()["id"]
        d.wait_for_status(volume_id, "available")
        base = "volumes/%s/metadata" % volume_id

        resp = d.request("POST", base, body={"metadata": {"a": "1"}})
        self.assertEqual(resp.status, 200, resp)
        resp = d.request("PUT", base + "/a", body={"meta": {"b": "2"}})
        self.assertCinderError(resp, 400, "badRequest")
        self.assertEqual(resp.json()["badRequest"]["message"], "Request body and URI mismatch")
        resp = d.request("GET", base + "/nope")
        self.assertCinderError(resp, 404, "itemNotFound")

        shown = d.request("GET", base, microversion="3.15")
        etag = shown.header("Etag")
        self.assertEqual(len(etag or ""), 32, shown)
        stale = d.request("PUT", base, body={"metadata": {}}, microversion="3.15",
                          headers={"If-Match": '"0000"'})
        self.assertEqual(stale.status, 412, stale)
        fresh = d.request("PUT", base, body={"metadata": {}}, microversion="3.15",
                          headers={"If-Match": etag})
        self.assertEqual(fresh.status, 200, fresh)

        resp = d.request("POST", "volumes/%s/action" % volume_id,
                         body={"os-set_bootable": {"bootable": "maybe"}})
        self.assertCinderError(resp, 400, "badRequest")
        resp = d.request("POST", "volumes/%s/action" % volume_id,
                         body={"os-update_readonly_flag": {"readonly": False}})
        self.assertEqual(resp.status, 202, resp)

    def test_availability_zones_and_extensions(self):
        d = self.daemon
        # The volume node registers its service shortly after start.
        h.wait_for(lambda: d.request("GET", "os-availability-zone").json()[
            "availabilityZoneInfo"], h.STATUS_TIMEOUT_S, "a volume service's zone")
        zones = d.request("GET", "os-availability-zone").json()["availabilityZoneInfo"]
        self.assertEqual(zones, [{"zoneName": "nova", "zoneState": {"available": True}}])
        rows = d.cinder("availability-zone-list").rows()
        self.assertIn("nova", [row.get("Name") for row in rows], rows)

        extensions = d.request("GET", "extensions").json()["extensions"]
        aliases = [extension["alias"] for extension in extensions]
        self.assertIn("os-availability-zone", aliases)
        self.assertIn("os-vol-image-meta", aliases)
        listed = d.cinder("list-extensions").rows()
        self.assertIn("AvailabilityZones", [row.get("Name") for row in listed], listed)


if __name__ == "__main__":
    h.main()
