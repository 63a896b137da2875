"""End-to-end: one clinkerd serving two file back-ends ([[backends]], Cinder's enabled_backends).

Goal: each back-end is a volume service of its own: `cinder service-list` shows one
cinder-volume row per back-end (host@backend), each reports its capabilities (get-pools), and
the scheduler places a volume by its type's `volume_backend_name` (or
`capabilities:volume_backend_name`) on that back-end, whose directory then holds its file;
deleting it frees it there. A type naming no configured back-end sends its volume to error with
the reason. The single-back-end short form is covered by every other e2e test.

Method: one clinkerd (all roles, temp state dir) with a --config listing two back-ends with
their own volume directories; Debian's python3-cinderclient CLI in noauth mode (an admin) and
raw HTTP.
"""

import os
import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

HOST = "node-a"


class MultiBackendTest(h.DaemonTestCase):

    def setUp(self):
        self.daemon = h.Daemon()
        self.addCleanup(self.daemon.close)
        self.dirs = {
            "gold": os.path.join(self.daemon.root, "gold-volumes"),
            "silver": os.path.join(self.daemon.root, "silver-volumes"),
        }
        path = os.path.join(self.daemon.root, "multi.toml")
        with open(path, "w") as f:
            f.write(h.UNLIMITED_QUOTA_CONFIG)
            f.write("[service]\nhost = \"%s\"\nreport_interval_s = 1\nservice_down_time_s = 10\n"
                    % HOST)
            f.write("[[backends]]\nname = \"gold\"\nvolume_dir = \"%s\"\n" % self.dirs["gold"])
            f.write("[[backends]]\nname = \"silver\"\nvolume_backend_name = \"silver-tier\"\n"
                    "volume_dir = \"%s\"\nworkers = 2\n" % self.dirs["silver"])
        self.daemon.extra_args = ["--config", path]  # Also for restarts.
        self.daemon.start()

    def create_type(self, name, specs):
        resp = self.daemon.request("POST", "types", body={"volume_type": {"name": name}})
        self.assertEqual(resp.status, 200, resp)
        type_id = resp.json()["volume_type"]["id"]
        resp = self.daemon.request("POST", "types/%s/extra_specs" % type_id,
                                   body={"extra_specs": specs})
        self.assertEqual(resp.status, 200, resp)
        return type_id

    def host_of(self, volume_id):
        resp = self.daemon.request("GET", "volumes/%s" % volume_id, microversion="3.0")
        return resp.json()["volume"]["os-vol-host-attr:host"]

    def test_two_backends_are_two_services_and_volumes_go_by_type(self):
        d = self.daemon
        # One cinder-volume service per back-end, as Cinder's service-list shows them.
        rows = d.cinder("service-list").rows()
        volume_hosts = sorted(r["Host"] for r in rows if r["Binary"] == "cinder-volume")
        self.assertEqual(volume_hosts, ["%s@gold" % HOST, "%s@silver" % HOST], rows)
        for row in rows:
            self.assertEqual(row["State"], "up", rows)

        # Each back-end reports its own pool and volume_backend_name.
        def pools():
            resp = d.request("GET", "scheduler-stats/get_pools?detail=true")
            self.assertEqual(resp.status, 200, resp)
            found = {p["name"]: p["capabilities"]["volume_backend_name"]
                     for p in resp.json()["pools"]}
            return found if len(found) == 2 else None

        found = h.wait_for(pools, h.STATUS_TIMEOUT_S, "two pools reported")
        self.assertEqual(found, {"%s@gold#default" % HOST: "gold",
                                 "%s@silver#default" % HOST: "silver-tier"})

        self.create_type("gold-type", {"volume_backend_name": "gold"})
        self.create_type("silver-type", {"capabilities:volume_backend_name": "silver-tier"})
        self.create_type("nowhere-type", {"volume_backend_name": "bronze"})

        placed = {}
        for type_name, backend in (("gold-type", "gold"), ("silver-type", "silver")) * 3:
            volume = d.create_volume(size=1, volume_type=type_name)
            placed[volume["id"]] = backend
        for volume_id, backend in placed.items():
            d.wait_for_status(volume_id, ["available"])
            self.assertEqual(self.host_of(volume_id), "%s@%s#default" % (HOST, backend))
            # The volume's file is in its back-end's directory, not the other's.
            name = "volume-%s.img" % volume_id
            self.assertTrue(os.path.exists(os.path.join(self.dirs[backend], name)), volume_id)
            other = "silver" if backend == "gold" else "gold"
            self.assertFalse(os.path.exists(os.path.join(self.dirs[other], name)), volume_id)

        # Allocated capacity is counted per back-end.
        resp = d.request("GET", "scheduler-stats/get_pools?detail=true")
        allocated = {p["name"]: p["capabilities"].get("allocated_capacity_gb")
                     for p in resp.json()["pools"]}
        self.assertEqual(allocated, {"%s@gold#default" % HOST: 3,
                                     "%s@silver#default" % HOST: 3}, resp)

        # A type no back-end matches: the volume fails, saying why.
        volume = d.create_volume(size=1, volume_type="nowhere-type")
        d.wait_for_status(volume["id"], ["error"])
        self.assertIsNone(d.db_volume(volume["id"])["host"])

        # A delete runs on the volume's own back-end.
        gold_volume = next(v for v, b in placed.items() if b == "gold")
        resp = d.request("DELETE", "volumes/%s" % gold_volume)
        self.assertEqual(resp.status, 202, resp)
        h.wait_for(lambda: not os.path.exists(
            os.path.join(self.dirs["gold"], "volume-%s.img" % gold_volume)),
                   h.STATUS_TIMEOUT_S, "the gold volume's file deleted")

        # Both back-ends come back after a restart (same config).
        d.restart()
        silver_volume = d.create_volume(size=1, volume_type="silver-type")
        d.wait_for_status(silver_volume["id"], ["available"])
        self.assertEqual(self.host_of(silver_volume["id"]), "%s@silver#default" % HOST)


if __name__ == "__main__":
    h.main()
