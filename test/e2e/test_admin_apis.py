"""End-to-end: the admin information APIs and user messages against a real clinkerd.

Goal: prove that what Tempest's admin tests read is served with the shapes Tempest validates:
os-services actions (enable, disable, disable-log-reason, freeze, thaw) and their errors, os-hosts
(list and show), scheduler-stats/get_pools (plain and detail, fed by the volume service's
capability reports), capabilities/{host} (agreeing with get_pools, as
test_backends_capabilities compares them), and user messages (3.3): a volume no back-end can
take goes to error and leaves a message its project can list, show and delete. A disabled
back-end takes no new volumes.

Method: one clinkerd per test (all roles, temp state dir, report interval of 1 s so capability
reports arrive quickly), raw HTTP; every response body is validated against Tempest's response
schema with its own validator and format checker (skipped when Tempest is not importable), and
the values are checked beside it.
"""

import os
import sys
import tempfile

sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

try:
    from tempest.lib.api_schema.response.volume import capabilities as capabilities_schema
    from tempest.lib.api_schema.response.volume import hosts as hosts_schema
    from tempest.lib.api_schema.response.volume import messages as messages_schema
    from tempest.lib.api_schema.response.volume import scheduler_stats as pools_schema
    from tempest.lib.api_schema.response.volume import services as services_schema
    from tempest.lib.api_schema.response.volume.v3_7 import services as services37_schema
    from tempest.lib.common import jsonschema_validator
    TEMPEST = True
except ImportError:  # pragma: no cover - depends on the machine
    TEMPEST = False

# A capacity no test machine has: with no over-subscription, no back-end can take it.
HUGE_GIB = 900000000

CONFIG = """
[service]
report_interval_s = 1

[api]
max_volume_size_gib = 1000000000

[scheduler]
max_over_subscription_ratio = 1.0

# A volume no back-end can take is larger than Cinder's default gigabytes quota.
[quota]
quota_gigabytes = -1
"""


@h.unittest.skipUnless(TEMPEST, "tempest is not importable: its response schemas are needed")
class AdminApisTest(h.DaemonTestCase):

    def setUp(self):
        handle, self.config_path = tempfile.mkstemp(prefix="clinker-e2e-admin-", suffix=".toml")
        with os.fdopen(handle, "w") as config:
            config.write(CONFIG)
        self.addCleanup(os.unlink, self.config_path)
        self.daemon_args = ("--config", self.config_path, "--host", "node1")
        super().setUp()

    def validate(self, schema, resp):
        """Checks status and body as Tempest's rest client does."""
        self.assertIn(resp.status, schema["status_code"], resp)
        if "response_body" in schema:
            validator = jsonschema_validator.JSONSCHEMA_VALIDATOR(
                schema["response_body"], format_checker=jsonschema_validator.FORMAT_CHECKER)
            validator.validate(resp.json())
        return resp.json() if resp.body else None

    def wait_for_pools(self):
        def pools():
            resp = self.daemon.request("GET", "scheduler-stats/get_pools")
            return resp.status == 200 and resp.json()["pools"]

        h.wait_for(pools, 15, "the volume service's pool in scheduler-stats")

    def error_message(self, resp, status, name):
        self.assertCinderError(resp, status, name)
        return resp.json()[name]["message"]

    def test_pools_and_capabilities(self):
        d = self.daemon
        self.wait_for_pools()
        plain = self.validate(pools_schema.get_pools_no_detail,
                              d.request("GET", "scheduler-stats/get_pools"))
        self.assertEqual(plain, {"pools": [{"name": "node1@file#default"}]})
        detail = self.validate(pools_schema.get_pools_with_detail,
                               d.request("GET", "scheduler-stats/get_pools?detail=True"))
        capabilities = detail["pools"][0]["capabilities"]
        self.assertEqual(capabilities["vendor_name"], "Clinker")
        self.assertEqual(capabilities["storage_protocol"], "file")
        self.assertEqual(capabilities["volume_backend_name"], "file")
        self.assertGreater(capabilities["total_capacity_gb"], 0)

        # Tempest passes the pool name; its HTTP client drops the "#pool" part as a fragment.
        shown = self.validate(capabilities_schema.show_backend_capabilities,
                              d.request("GET", "capabilities/node1@file"))
        self.assertEqual(shown["namespace"], "OS::Storage::Capabilities::node1@file")
        for key in ("vendor_name", "volume_backend_name", "storage_protocol"):
            self.assertEqual(shown[key], capabilities[key], key)
        self.assertEqual(
            self.error_message(d.request("GET", "capabilities/nowhere"), 404, "itemNotFound"),
            "Can't find service: nowhere")

    def test_hosts(self):
        d = self.daemon
        listed = self.validate(hosts_schema.list_hosts, d.request("GET", "os-hosts"))
        names = sorted((host["service"], host["host_name"]) for host in listed["hosts"])
        self.assertEqual(names, [("cinder-scheduler", "node1"), ("cinder-volume", "node1@file")])

        volume = d.create_volume(size=2)
        d.wait_for_status(volume["id"], "available")
        shown = self.validate(hosts_schema.show_host, d.request("GET", "os-hosts/node1@file"))
        total = shown["host"][0]["resource"]
        self.assertEqual(total["project"], "(total)")
        self.assertEqual(total["volume_count"], "1")
        self.assertEqual(total["total_volume_gb"], "2")
        self.assertEqual(shown["host"][1]["resource"]["project"], d.project)
        self.assertEqual(
            self.error_message(d.request("GET", "os-hosts/nowhere"), 404, "itemNotFound"),
            "Service cinder-volume could not be found on host nowhere.")

    def test_service_actions(self):
        d = self.daemon
        self.validate(services_schema.list_services, d.request("GET", "os-services"))
        self.validate(services37_schema.list_services,
                      d.request("GET", "os-services", microversion="3.7"))

        body = {"host": "node1@file", "binary": "cinder-volume"}
        disabled = self.validate(services_schema.disable_service,
                                 d.request("PUT", "os-services/disable", body=body))
        self.assertEqual(disabled["status"], "disabled")
        reason = self.validate(
            services_schema.disable_log_reason,
            d.request("PUT",
                      "os-services/disable-log-reason",
                      body=dict(body, disabled_reason="maintenance")))
        self.assertEqual(reason["disabled_reason"], "maintenance")
        service = [s for s in d.request("GET", "os-services").json()["services"]
                   if s["binary"] == "cinder-volume"][0]
        self.assertEqual((service["status"], service["disabled_reason"]),
                         ("disabled", "maintenance"))

        # A disabled back-end takes no new volumes: the only one is disabled, so the volume fails.
        volume = d.create_volume(size=1)
        d.wait_for_status(volume["id"], "error")

        # Cinder's enable answer has no disabled_reason (Tempest's schema for it would want one).
        enabled = d.request("PUT", "os-services/enable", body=body)
        self.assertEqual(enabled.status, 200, enabled)
        self.assertEqual(enabled.json(), {"disabled": False, "host": "node1@file", "service": "",
                                          "binary": "cinder-volume", "status": "enabled"})
        volume = d.create_volume(size=1)
        d.wait_for_status(volume["id"], "available")

        # test_volume_services_negative.
        self.assertCinderError(
            d.request("PUT", "os-services/enable",
                      body={"host": "invalid_host", "binary": "cinder-volume"}),
            404, "itemNotFound")
        self.assertCinderError(
            d.request("PUT", "os-services/disable",
                      body={"host": "node1@file", "binary": "invalid_binary"}),
            404, "itemNotFound")
        self.assertCinderError(
            d.request("PUT", "os-services/disable-log-reason",
                      body=dict(body, disabled_reason=None)),
            400, "badRequest")
        for action in ("freeze", "thaw"):
            self.assertEqual(
                self.error_message(
                    d.request("PUT", "os-services/" + action, body={"host": "invalid_host"}),
                    400, "badRequest"),
                "No service found with host=invalid_host")

        self.validate(services_schema.freeze_host,
                      d.request("PUT", "os-services/freeze", body={"host": "node1@file"}))
        service = [s for s in d.request("GET", "os-services").json()["services"]
                   if s["binary"] == "cinder-volume"][0]
        self.assertEqual((service["frozen"], service["status"]), (True, "disabled"))
        self.validate(services_schema.thaw_host,
                      d.request("PUT", "os-services/thaw", body={"host": "node1@file"}))
        service = [s for s in d.request("GET", "os-services").json()["services"]
                   if s["binary"] == "cinder-volume"][0]
        self.assertEqual((service["frozen"], service["status"]), (False, "enabled"))

    def test_user_message_for_a_volume_no_back_end_can_take(self):
        d = self.daemon
        self.wait_for_pools()  # The scheduler has the back-end's report: it knows its capacity.
        volume = d.create_volume(size=HUGE_GIB)
        d.wait_for_status(volume["id"], "error")

        self.assertEqual(d.request("GET", "messages", microversion="3.2").status, 404)
        listed = self.validate(messages_schema.list_messages,
                               d.request("GET", "messages", microversion="3.3"))
        mine = [m for m in listed["messages"] if m.get("resource_uuid") == volume["id"]]
        self.assertEqual(len(mine), 1, listed)
        message = mine[0]
        self.assertEqual(message["event_id"], "VOLUME_VOLUME_001_003")
        self.assertEqual(message["user_message"],
                         "schedule allocate volume:Could not find any available weighted "
                         "backend.")
        self.assertEqual(message["message_level"], "ERROR")

        shown = self.validate(messages_schema.show_message,
                              d.request("GET", "messages/" + message["id"], microversion="3.3"))
        self.assertEqual(shown["message"], message)

        self.validate(messages_schema.delete_message,
                      d.request("DELETE", "messages/" + message["id"], microversion="3.3"))
        self.assertEqual(
            self.error_message(
                d.request("GET", "messages/" + message["id"], microversion="3.3"), 404,
                "itemNotFound"),
            "Message %s could not be found." % message["id"])


if __name__ == "__main__":
    h.main()
