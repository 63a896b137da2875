"""End-to-end: attaching and detaching volumes, through the attachments API (3.27+, with
os-complete at 3.44) driven by the real `cinder` CLI, and through the legacy volume actions
(os-reserve ... os-detach) over raw HTTP.

Goal: prove an unmodified OpenStack client can attach a volume of the file back-end and use it:
every step leaves the volume and attachment statuses Cinder shows (volume reserved / attaching /
in-use / detaching / available; attachment reserved / attaching / attached), the connection info
names the volume's file, data written through that path survives a detach and a new attach, and
requests that break the rules get Cinder's error body and change nothing.

Method: one clinkerd per test (all roles, SQLite, embedded queue, file back-end). The CLI runs
at microversion 3.44 (attachment-create/-update/-complete/-list/-show/-delete); the legacy
actions, the error cases and every status check after a step use raw HTTP (each CLI run costs
about a second of interpreter start-up) and the SQLite rows. Data: a seeded random pattern is
written through the connection info's device_path and read back, after a detach and a new
attach, by sha256 of each written range.
"""

import ast
import hashlib
import os
import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

# The CLI's and the HTTP calls' microversion: attachments are 3.27+, os-complete 3.44+.
MICROVERSION = "3.44"

MIB = 1 << 20
PATTERN_LENGTH = MIB
# In a 1 GiB volume: the start, an odd offset, and the end.
PATTERN_OFFSETS = (0, 300 * MIB + 12345, h.GIB - PATTERN_LENGTH)

SERVER_ID = "5e5c1a4e-0000-4000-8000-0000000000a1"
OTHER_SERVER_ID = "5e5c1a4e-0000-4000-8000-0000000000b2"
CONNECTOR = {
    "initiator": "iqn.2004-10.org.example:e2e-host",
    "ip": "127.0.0.1",
    "platform": "x86_64",
    "host": "e2e-host",
    "os_type": "linux2",
    "multipath": False,
    "mountpoint": "/dev/vdb",
}
MISSING_ID = "00000000-0000-4000-8000-00000000dead"


def property_tables(result):
    """Every Property/Value table of a CLI run, as dicts (attachment-create prints the
    attachment, then its connection info)."""
    return [{row[0]: row[1] for row in rows}
            for header, rows in result.tables
            if header[:2] == ["Property", "Value"]]


class AttachmentsTest(h.DaemonTestCase):

    def cli(self, *args, **kwargs):
        return self.daemon.cinder(*args, microversion=MICROVERSION, **kwargs)

    def api(self, method, path, body=None, **kwargs):
        return self.daemon.request(method, path, body=body, microversion=MICROVERSION, **kwargs)

    def create_available(self, name, size=1):
        """A new available volume (over HTTP: the CLI is kept for the attachment steps)."""
        volume_id = self.daemon.create_volume(size=size, name=name)["id"]
        self.daemon.wait_for_status(volume_id, "available")
        return volume_id

    def show_attachment(self, attachment_id):
        resp = self.api("GET", "attachments/%s" % attachment_id)
        self.assertEqual(resp.status, 200, resp)
        return resp.json()["attachment"]

    def db_attachments(self, volume_id):
        return self.daemon.db_rows(
            "SELECT * FROM attachments WHERE volume_id = ? ORDER BY created_at, id", (volume_id,))

    def assertVolume(self, volume_id, status, attach_status=None):
        """The volume's status in the API and the DB row; returns the API view."""
        api = self.daemon.show_volume(volume_id)
        self.assertEqual(api["status"], status, api)
        row = self.daemon.db_volume(volume_id)
        self.assertEqual(row["status"], status, row)
        if attach_status is not None:
            self.assertEqual(row["attach_status"], attach_status, row)
        return api

    def assertAttachment(self, attachment_id, status, volume_id):
        """The attachment's status in the API; returns its detail view."""
        shown = self.show_attachment(attachment_id)
        self.assertEqual(shown["status"], status, shown)
        self.assertEqual(shown["volume_id"], volume_id, shown)
        return shown

    def assertConnectionInfo(self, info, volume_id):
        """The file back-end's connection info: a local path, which is the volume's file."""
        self.assertEqual(info.get("driver_volume_type"), "local", info)
        path = info.get("data", {}).get("device_path")
        self.assertIsInstance(path, str, info)
        self.assertTrue(os.path.isabs(path), info)
        self.assertTrue(os.path.samefile(path, self.daemon.volume_file(volume_id)), info)
        return path

    def fingerprint(self):
        """What a refused request must leave alone: the volumes and attachments tables."""
        d = self.daemon
        return {
            "volumes": d.db_rows("SELECT * FROM volumes ORDER BY id"),
            "attachments": d.db_rows("SELECT * FROM attachments ORDER BY id"),
        }

    def assertRefused(self, status, name, method, path, body=None):
        before = self.fingerprint()
        resp = self.api(method, path, body=body)
        self.assertCinderError(resp, status, name)
        self.assertEqual(resp.header("OpenStack-API-Version"), "volume %s" % MICROVERSION, resp)
        after = self.fingerprint()
        for key in before:
            self.assertEqual(before[key], after[key], "%r changed %s" % (resp, key))
        return resp

    def attach_via_api(self, volume_id, server_id=SERVER_ID):
        """Create (with a connector) and complete an attachment over HTTP; returns its view."""
        resp = self.api("POST", "attachments", {
            "attachment": {"volume_uuid": volume_id, "instance_uuid": server_id,
                           "connector": CONNECTOR}
        })
        self.assertEqual(resp.status, 200, resp)
        attachment = resp.json()["attachment"]
        done = self.api("POST", "attachments/%s/action" % attachment["id"], {"os-complete": {}})
        self.assertEqual(done.status, 204, done)
        self.assertVolume(volume_id, "in-use", "attached")
        return attachment

    # ---- tests --------------------------------------------------------------------------------

    def test_cli_attach_write_detach_reattach_read(self):
        d = self.daemon
        volume_id = self.create_available("attach-me")

        # Reserve, as Nova does: no connector yet.
        resp = self.api("POST", "attachments",
                        {"attachment": {"volume_uuid": volume_id, "instance_uuid": SERVER_ID}})
        self.assertEqual(resp.status, 200, resp)
        attachment_id = resp.json()["attachment"]["id"]
        self.assertEqual(resp.json()["attachment"]["status"], "reserved", resp)
        self.assertVolume(volume_id, "reserved", "reserved")
        shown = self.assertAttachment(attachment_id, "reserved", volume_id)
        self.assertEqual(shown["connection_info"], {}, shown)
        self.assertEqual(shown["instance"], SERVER_ID, shown)

        # Update with the host's connector: the back-end exports the volume.
        updated = self.cli("attachment-update", "--initiator", CONNECTOR["initiator"], "--ip",
                           CONNECTOR["ip"], "--host", CONNECTOR["host"], "--mountpoint",
                           CONNECTOR["mountpoint"], attachment_id)
        tables = property_tables(updated)
        self.assertEqual(len(tables), 2, updated)
        self.assertEqual(tables[0]["status"], "attaching", updated)
        self.assertEqual(tables[1]["driver_volume_type"], "local", updated)
        self.assertIn(os.path.basename(d.volume_file(volume_id)), tables[1]["data"], updated)
        self.assertVolume(volume_id, "attaching", "attaching")
        shown = self.assertAttachment(attachment_id, "attaching", volume_id)
        device_path = self.assertConnectionInfo(shown["connection_info"], volume_id)
        row = self.db_attachments(volume_id)[-1]
        self.assertEqual(row["attached_host"], CONNECTOR["host"], row)
        self.assertEqual(row["mountpoint"], CONNECTOR["mountpoint"], row)

        self.cli("attachment-complete", attachment_id)
        self.assertAttachment(attachment_id, "attached", volume_id)
        volume = self.assertVolume(volume_id, "in-use", "attached")
        self.assertEqual([a["attachment_id"] for a in volume["attachments"]], [attachment_id],
                         volume)
        self.assertEqual(volume["attachments"][0]["server_id"], SERVER_ID, volume)
        self.assertEqual(volume["attachments"][0]["volume_id"], volume_id, volume)
        self.assertEqual(volume["attachments"][0]["device"], CONNECTOR["mountpoint"], volume)

        listed = self.cli("attachment-list").rows()
        self.assertEqual([(r["ID"], r["Volume ID"], r["Status"], r["Server ID"]) for r in listed],
                         [(attachment_id, volume_id, "attached", SERVER_ID)], listed)
        shown = property_tables(self.cli("attachment-show", attachment_id))
        self.assertEqual(shown[0]["status"], "attached", shown)
        self.assertEqual(shown[0]["volume_id"], volume_id, shown)
        self.assertTrue(shown[0]["attached_at"], shown)
        self.assertEqual(ast.literal_eval(shown[1]["data"])["device_path"], device_path, shown)

        # The host writes through the path it was given.
        writes = h.write_pattern(device_path, "attached", PATTERN_OFFSETS, PATTERN_LENGTH)

        self.cli("attachment-delete", attachment_id)
        self.assertVolume(volume_id, "available", "detached")
        self.assertEqual(d.show_volume(volume_id)["attachments"], [])
        gone = self.api("GET", "attachments/%s" % attachment_id)
        self.assertCinderError(gone, 404, "itemNotFound")
        self.assertEqual(self.api("GET", "attachments").json(), {"attachments": []})

        # Attach again, connecting at once (--connect True): attaching, then attached.
        again = self.cli("attachment-create", "--connect", "True", "--initiator",
                         CONNECTOR["initiator"], "--ip", CONNECTOR["ip"], "--host",
                         CONNECTOR["host"], "--mountpoint", CONNECTOR["mountpoint"], volume_id,
                         OTHER_SERVER_ID)
        tables = property_tables(again)
        self.assertEqual(len(tables), 2, again)
        second_id = tables[0]["id"]
        self.assertNotEqual(second_id, attachment_id)
        self.assertEqual(tables[0]["status"], "attaching", again)
        self.assertVolume(volume_id, "attaching", "attaching")
        second_path = self.assertConnectionInfo(
            self.assertAttachment(second_id, "attaching", volume_id)["connection_info"],
            volume_id)
        done = self.api("POST", "attachments/%s/action" % second_id, {"os-complete": {}})
        self.assertEqual(done.status, 204, done)
        self.assertAttachment(second_id, "attached", volume_id)
        volume = self.assertVolume(volume_id, "in-use", "attached")
        self.assertEqual([a["server_id"] for a in volume["attachments"]], [OTHER_SERVER_ID])

        # What was written before the detach reads back the same.
        for offset, data in writes:
            self.assertEqual(h.range_digest(second_path, offset, len(data)),
                             hashlib.sha256(data).hexdigest(), "bytes at offset %d" % offset)

        self.cli("attachment-delete", second_id)
        self.assertVolume(volume_id, "available", "detached")
        for row in self.db_attachments(volume_id):
            self.assertEqual((row["deleted"], row["status"]), (1, "detached"), row)
        # A detached volume can be deleted again.
        self.assertEqual(self.api("DELETE", "volumes/%s" % volume_id).status, 202)
        d.wait_for_status(volume_id, None)

    def test_cli_attachment_create_without_connect_only_reserves(self):
        volume_id = self.create_available("reserve-me")
        # Without --connect the CLI sends `"connector": {}`, which Cinder treats as no connector
        # (`if connector:` in volume/api.py attachment_create): a reservation, nothing exported.
        created = self.cli("attachment-create", volume_id, SERVER_ID)
        tables = property_tables(created)
        attachment_id = tables[0]["id"]
        self.assertEqual(tables[0]["status"], "reserved", created)
        self.assertEqual(tables[0]["volume_id"], volume_id, created)
        self.assertEqual(tables[0]["instance"], SERVER_ID, created)
        self.assertEqual(len(tables), 1, "no connection info expected: %r" % created)
        self.assertVolume(volume_id, "reserved", "reserved")
        self.assertEqual(self.assertAttachment(attachment_id, "reserved",
                                               volume_id)["connection_info"], {})
        # A reservation ends without a back-end call.
        self.cli("attachment-delete", attachment_id)
        self.assertVolume(volume_id, "available", "detached")

    def test_legacy_attach_detach_flow(self):
        d = self.daemon
        volume_id = self.create_available("legacy")
        action = "volumes/%s/action" % volume_id

        def act(name, argument, status=202):
            resp = self.api("POST", action, {name: argument})
            self.assertEqual(resp.status, status, resp)
            return resp

        # A reservation withdrawn with os-unreserve leaves the volume as it was.
        act("os-reserve", {})
        self.assertVolume(volume_id, "attaching")
        act("os-unreserve", {})
        self.assertVolume(volume_id, "available", "detached")

        act("os-reserve", {})
        self.assertVolume(volume_id, "attaching")
        info = act("os-initialize_connection", {"connector": CONNECTOR}, 200).json()
        path = self.assertConnectionInfo(info["connection_info"], volume_id)
        self.assertVolume(volume_id, "attaching")
        act("os-attach", {"instance_uuid": SERVER_ID, "mountpoint": "/dev/vdc", "mode": "rw"})
        volume = self.assertVolume(volume_id, "in-use", "attached")
        self.assertEqual(len(volume["attachments"]), 1, volume)
        attached = volume["attachments"][0]
        self.assertEqual(attached["server_id"], SERVER_ID, volume)
        self.assertEqual(attached["volume_id"], volume_id, volume)
        self.assertEqual(attached["id"], volume_id, volume)
        self.assertEqual(attached["device"], "/dev/vdc", volume)
        self.assertTrue(attached["attached_at"], volume)
        attachment_id = attached["attachment_id"]
        # The legacy attachment is an attachment like any other.
        shown = self.assertAttachment(attachment_id, "attached", volume_id)
        self.assertEqual(shown["instance"], SERVER_ID, shown)
        self.assertEqual(shown["attach_mode"], "rw", shown)
        self.assertEqual(shown["connection_info"]["data"]["device_path"], path, shown)

        writes = h.write_pattern(path, "legacy", PATTERN_OFFSETS[:1], PATTERN_LENGTH)

        # A detach started and rolled back leaves it attached.
        act("os-begin_detaching", {})
        self.assertVolume(volume_id, "detaching")
        act("os-roll_detaching", {})
        volume = self.assertVolume(volume_id, "in-use", "attached")
        self.assertEqual([a["attachment_id"] for a in volume["attachments"]], [attachment_id])

        act("os-begin_detaching", {})
        self.assertVolume(volume_id, "detaching")
        act("os-terminate_connection", {"connector": CONNECTOR})
        # Cinder's terminate_connection ends the export and unreserves (a no-op unless the
        # volume is attaching); the volume is available once os-detach has run.
        self.assertIn(d.show_volume(volume_id)["status"], ("detaching", "available"))
        act("os-detach", {"attachment_id": attachment_id})
        volume = self.assertVolume(volume_id, "available", "detached")
        self.assertEqual(volume["attachments"], [], volume)
        self.assertCinderError(self.api("GET", "attachments/%s" % attachment_id), 404,
                               "itemNotFound")

        # The data stayed in the volume.
        offset, data = writes[0]
        self.assertEqual(h.range_digest(d.volume_file(volume_id), offset, len(data)),
                         hashlib.sha256(data).hexdigest())

    def test_bad_input_is_refused_and_changes_nothing(self):
        d = self.daemon
        volume_id = self.create_available("bad-input")
        attachment = self.attach_via_api(volume_id)

        # A second attachment of an attached volume that is not multiattach.
        resp = self.assertRefused(400, "badRequest", "POST", "attachments", {
            "attachment": {"volume_uuid": volume_id, "instance_uuid": OTHER_SERVER_ID,
                           "connector": CONNECTOR}
        })
        self.assertIn(volume_id, resp.json()["badRequest"]["message"], resp)
        self.assertRefused(400, "badRequest", "POST", "attachments",
                           {"attachment": {"volume_uuid": volume_id}})
        # The same through the legacy actions.
        self.assertRefused(400, "badRequest", "POST", "volumes/%s/action" % volume_id,
                           {"os-reserve": {}})
        # Deleting an attached volume, plainly or with cascade.
        self.assertRefused(400, "badRequest", "DELETE", "volumes/%s" % volume_id)
        self.assertRefused(400, "badRequest", "DELETE", "volumes/%s?cascade=true" % volume_id)
        # The CLI reports the same refusals.
        before = self.fingerprint()
        for args in (("attachment-create", volume_id, OTHER_SERVER_ID), ("delete", volume_id)):
            refused = self.cli(*args, check=False)
            self.assertNotEqual(refused.returncode, 0, refused)
            self.assertIn("400", refused.stdout + refused.stderr, refused)
        self.assertEqual(before, self.fingerprint(), "the CLI's refused requests changed state")

        # os-complete of an attachment that has no connection yet (reserved).
        other_id = self.create_available("reserved-only")
        resp = self.api("POST", "attachments",
                        {"attachment": {"volume_uuid": other_id, "instance_uuid": SERVER_ID}})
        self.assertEqual(resp.status, 200, resp)
        reserved = resp.json()["attachment"]
        self.assertEqual(reserved["status"], "reserved", resp)
        self.assertRefused(400, "badRequest", "POST", "attachments/%s/action" % reserved["id"],
                           {"os-complete": {}})
        self.assertAttachment(reserved["id"], "reserved", other_id)
        self.assertVolume(other_id, "reserved", "reserved")
        # os-complete does not exist below 3.44.
        old = d.request("POST", "attachments/%s/action" % reserved["id"],
                        body={"os-complete": {}}, microversion="3.43")
        self.assertCinderError(old, 400, "badRequest")
        self.assertAttachment(reserved["id"], "reserved", other_id)

        # An attachment nobody has.
        for method, path, body in (
            ("GET", "attachments/%s" % MISSING_ID, None),
            ("PUT", "attachments/%s" % MISSING_ID, {"attachment": {"connector": CONNECTOR}}),
            ("POST", "attachments/%s/action" % MISSING_ID, {"os-complete": {}}),
            ("DELETE", "attachments/%s" % MISSING_ID, None),
        ):
            with self.subTest(method=method, path=path):
                resp = self.assertRefused(404, "itemNotFound", method, path, body)
                self.assertIn(MISSING_ID, resp.json()["itemNotFound"]["message"], resp)
        self.assertRefused(404, "itemNotFound", "POST", "attachments",
                           {"attachment": {"volume_uuid": MISSING_ID, "connector": CONNECTOR}})
        # Another project's list does not hold it (noauth callers are admin, so showing it by id
        # would work: non-admin isolation is tested with Keystone roles and in unit tests).
        other_project = d.request("GET", "attachments", project=h.PROJECT_B,
                                  microversion=MICROVERSION)
        self.assertEqual(other_project.status, 200, other_project)
        self.assertEqual(other_project.json()["attachments"], [], other_project)
        # Below 3.27 there is no attachments API.
        self.assertCinderError(
            d.request("GET", "attachments/%s" % attachment["id"], microversion="3.26"), 404,
            "itemNotFound")

        # Everything still works after the refusals: detach, then the volume goes.
        self.assertAttachment(attachment["id"], "attached", volume_id)
        deleted = self.api("DELETE", "attachments/%s" % attachment["id"])
        self.assertEqual(deleted.status, 200, deleted)
        self.assertEqual(deleted.json(), {"attachments": []}, deleted)
        self.assertVolume(volume_id, "available", "detached")
        self.assertEqual(self.api("DELETE", "volumes/%s" % volume_id).status, 202)
        d.wait_for_status(volume_id, None)


if __name__ == "__main__":
    h.main()
