"""End-to-end: QoS specs through the cinder CLI, and their survival of a restart.

Goal: prove an unmodified client manages QoS specs on a real daemon: qos-create (with a
consumer and specs), qos-list, qos-show, qos-key set/unset, qos-associate with a volume type,
qos-get-association, qos-disassociate, qos-disassociate-all, qos-delete (refused while
associated, then --force), and that the specs and associations are in the database (they come
back after a restart).

Method: one clinkerd (all roles, temp state dir). Debian's python3-cinderclient CLI in noauth
mode (an admin), at its default microversion (unpinned, as a user types it); raw HTTP for the
status codes and error bodies the CLI does not show.
"""

import sys

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402


def key_values(result):
    """A two-column Property/Value table of the CLI as a dict."""
    out = {}
    for row in result.rows():
        values = list(row.values())
        out[values[0]] = values[1]
    return out


class QosSpecsTest(h.DaemonTestCase):

    def test_cli_manages_qos_specs_and_their_associations(self):
        d = self.daemon
        created = key_values(
            d.cinder("qos-create", "gold", "consumer=front-end", "read_iops_sec=2000",
                     microversion=None))
        qos_id = created["id"]
        self.assertEqual(created["name"], "gold", created)
        self.assertEqual(created["consumer"], "front-end", created)

        listed = d.cinder("qos-list", microversion=None).rows()
        self.assertEqual([row["Name"] for row in listed], ["gold"], listed)

        d.cinder("qos-key", qos_id, "set", "write_iops_sec=1000", microversion=None)
        d.cinder("qos-key", qos_id, "unset", "read_iops_sec", microversion=None)
        resp = d.request("GET", "qos-specs/%s" % qos_id)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["qos_specs"]["specs"], {"write_iops_sec": "1000"}, resp)

        type_id = d.cinder("type-create", "fast", microversion=None).rows()[0]["ID"]
        d.cinder("qos-associate", qos_id, type_id, microversion=None)
        associations = d.cinder("qos-get-association", qos_id, microversion=None).rows()
        self.assertEqual([row["ID"] for row in associations], [type_id], associations)
        resp = d.request("GET", "types/%s" % type_id)
        self.assertEqual(resp.json()["volume_type"]["qos_specs_id"], qos_id, resp)

        # Associated: a plain delete is refused with Cinder's message; the specs survive.
        resp = d.request("DELETE", "qos-specs/%s" % qos_id)
        self.assertEqual(resp.status, 400, resp)
        self.assertEqual(resp.json()["badRequest"]["message"], "Qos specs still in use.", resp)

        # The specs and the association are in the database.
        d.restart()
        resp = d.request("GET", "qos-specs/%s/associations" % qos_id)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual([a["id"] for a in resp.json()["qos_associations"]], [type_id], resp)

        d.cinder("qos-disassociate", qos_id, type_id, microversion=None)
        self.assertEqual(d.cinder("qos-get-association", qos_id, microversion=None).rows(), [])
        d.cinder("qos-associate", qos_id, type_id, microversion=None)
        d.cinder("qos-disassociate-all", qos_id, microversion=None)
        self.assertIsNone(d.request("GET", "types/%s" % type_id).json()["volume_type"]
                          ["qos_specs_id"])

        d.cinder("qos-associate", qos_id, type_id, microversion=None)
        d.cinder("qos-delete", "--force", "True", qos_id, microversion=None)
        resp = d.request("GET", "qos-specs/%s" % qos_id)
        self.assertEqual(resp.status, 404, resp)
        self.assertIsNone(d.request("GET", "types/%s" % type_id).json()["volume_type"]
                          ["qos_specs_id"])
        self.assertEqual(d.cinder("qos-list", microversion=None).rows(), [])


if __name__ == "__main__":
    h.main()
