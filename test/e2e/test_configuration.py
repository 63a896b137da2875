"""End-to-end: clinkerd's command line and configuration file, as an operator meets them.

Goal: `--help` explains the flags; a bad setting (from a flag or from the TOML file) stops the
daemon before it starts anything, with a message naming the setting and exit status 2, and no
traceback-like noise; a port already in use is reported with exit status 1; a good config file is
honoured.

Method: run the real binary with bounded timeouts in a temp dir, read its exit status and stderr.
"""

import os
import socket
import subprocess
import sys
import tempfile
import unittest

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

RUN_TIMEOUT_S = 20.0


class ConfigurationTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="clinker-config-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.dir], check=False))

    def run_clinkerd(self, *args):
        return subprocess.run([h.CLINKERD, *args],
                              cwd=self.dir,
                              stdin=subprocess.DEVNULL,
                              capture_output=True,
                              text=True,
                              timeout=RUN_TIMEOUT_S)

    def write_config(self, text):
        path = os.path.join(self.dir, "clinker.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertRefused(self, result, setting, code=2):
        self.assertEqual(result.returncode, code, result)
        self.assertIn(setting, result.stderr, result)
        self.assertNotIn("terminate called", result.stderr, result)
        self.assertNotIn("Aborted", result.stderr, result)
        # Nothing was started: no state directory appeared.
        self.assertFalse(os.path.exists(os.path.join(self.dir, "var")), result)

    def test_help_explains_the_flags(self):
        result = self.run_clinkerd("--help")
        self.assertEqual(result.returncode, 0, result)
        for flag in ("--config", "--role", "--port", "--state-dir", "--workers",
                     "--driver-delay-ms", "--log-level", "--cluster", "--lock-url",
                     "--auth-strategy", "--policy-file", "--print-policy-defaults"):
            self.assertIn(flag, result.stdout, result)

    def test_bad_flag_values_name_the_setting(self):
        self.assertRefused(self.run_clinkerd("--workers", "0"), "workers")
        self.assertRefused(self.run_clinkerd("--role", "api,storage"), "storage")
        self.assertRefused(self.run_clinkerd("--log-level", "loud"), "log level")
        self.assertRefused(self.run_clinkerd("--port", "70000"), "port")
        self.assertRefused(self.run_clinkerd("--port", "eighty"), "--port")

    def test_bad_config_file_names_the_setting(self):
        self.assertRefused(
            self.run_clinkerd("--config", self.write_config("[api]\nprot = 8776\n")),
            "[api] prot")
        self.assertRefused(
            self.run_clinkerd("--config", self.write_config("[storage]\nx = 1\n")),
            "[storage]")
        self.assertRefused(
            self.run_clinkerd("--config", self.write_config("[api]\nport = \"8776\"\n")),
            "[api] port")
        self.assertRefused(
            self.run_clinkerd("--config", self.write_config("[api\nport = 1\n")), "line 1")
        self.assertRefused(self.run_clinkerd("--config", os.path.join(self.dir, "missing.toml")),
                           "missing.toml")

    def test_auth_settings_are_checked(self):
        self.assertRefused(self.run_clinkerd("--auth-strategy", "ldap"), "[api] auth_strategy")
        # Keystone needs Clinker's own service credentials; the password is never echoed.
        result = self.run_clinkerd("--config", self.write_config(
            "[api]\nauth_strategy = \"keystone\"\n[keystone_authtoken]\n"
            "auth_url = \"http://127.0.0.1:5000/v3\"\nusername = \"cinder\"\n"
            "password = \"s3cret-pw\"\n"))
        self.assertRefused(result, "[keystone_authtoken] project_name")
        self.assertNotIn("s3cret-pw", result.stderr)
        self.assertRefused(
            self.run_clinkerd("--config", self.write_config(
                "[api]\nauth_strategy = \"keystone\"\n[keystone_authtoken]\n"
                "auth_url = \"ftp://x/v3\"\nusername = \"u\"\npassword = \"p\"\n"
                "project_name = \"service\"\n")), "[keystone_authtoken] auth_url")
        self.assertRefused(
            self.run_clinkerd("--config", self.write_config(
                "[keystone_authtoken]\nservice_token_roles = \"service\"\n")),
            "[keystone_authtoken] service_token_roles")

    def test_cluster_and_lock_settings_are_checked(self):
        # Volume services on a shared database must name their cluster.
        self.assertRefused(
            self.run_clinkerd("--role", "volume", "--database-url",
                              "postgresql://u:secret@127.0.0.1:1/db"), "--cluster")
        self.assertRefused(self.run_clinkerd("--cluster", "a@b"), "cluster")
        self.assertRefused(self.run_clinkerd("--lock-url", "zk://127.0.0.1:2181"), "[locks] url")
        self.assertRefused(self.run_clinkerd("--lock-url", "etcd://u:pw@127.0.0.1:2379"),
                           "[locks] url")
        # The lease must outlive the beats the node may miss before it gives its locks up.
        result = self.run_clinkerd("--config", self.write_config(
            "[locks]\nlease_ttl_s = 2\nheartbeat_interval_ms = 500\nmissed_heartbeats = 3\n"))
        self.assertRefused(result, "lease_ttl_s (2 s)")
        for value in ("missed_heartbeats (3)", "heartbeat_interval_ms (500 ms)"):
            self.assertIn(value, result.stderr)
        self.assertRefused(
            self.run_clinkerd("--config", self.write_config("[scheduler]\nclusters = [\"c1\"]\n")),
            "[scheduler] clusters")

    def test_port_in_use_is_reported(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            result = self.run_clinkerd("--port", str(port), "--state-dir",
                                       os.path.join(self.dir, "state"))
        self.assertEqual(result.returncode, 1, result)
        self.assertIn("cannot listen on 127.0.0.1:%d" % port, result.stderr, result)

    def test_config_file_is_honoured_and_flags_override_it(self):
        state = os.path.join(self.dir, "from-config")
        path = self.write_config(
            "[service]\nroles = \"api\"\nstate_dir = \"%s\"\n[api]\nport = 1\n" % state)
        daemon = h.Daemon()
        self.addCleanup(daemon.close)
        # The harness adds --port and --state-dir flags, which must win over the file's values.
        daemon.start(["--config", path])
        self.assertEqual(daemon.request("GET", "volumes").status, 200)
        self.assertEqual(daemon.stop(), 0, daemon.stderr_tail())
        self.assertFalse(os.path.exists(state))

    def test_shipped_sample_config_is_accepted(self):
        # etc/clinker.toml documents every section: the daemon must start from it as shipped.
        sample = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc",
                              "clinker.toml")
        daemon = h.Daemon()
        self.addCleanup(daemon.close)
        daemon.start(["--config", sample])
        self.assertEqual(daemon.request("GET", "volumes").status, 200)
        self.assertEqual(daemon.stop(), 0, daemon.stderr_tail())


if __name__ == "__main__":
    h.main()
