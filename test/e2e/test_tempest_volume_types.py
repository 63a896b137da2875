"""End-to-end: Tempest's volume type tests (Debian's tempest package) against clinkerd behind a
real Keystone.

Goal: the upstream acceptance tests of Cinder's volume types API pass unchanged: types CRUD and
update, encryption types, extra specs (and their negative cases), private types and their access lists, volumes
created with a type (by name and by id; a private type is 404 without access), and a retype
without migration (VolumeRetypeWithoutMigrationTest). Tempest's response schemas
(tempest/lib/api_schema/response/volume/volume_types.py) check every body on the way.

Method: one Keystone (scripts/test_server_keystone.sh, through keystone_admin.Server) and one
clinkerd with `auth_strategy = keystone` and a service user, the block-storage catalog entries
pointing at it; then Tempest, with dynamic credentials (it creates its own projects and users as
the Keystone admin), runs the modules in MODULES with plain unittest loading (RUNNER, Debian's
python3), in a temp dir holding its tempest.conf (CLINKER_KEEP_TEMPEST=1 keeps it on failure). Tests that
need what a release does not have can be excluded by id (EXCLUDED, empty today).
The run's output is printed when it fails. Skips when Keystone or Tempest is missing.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402
import keystone_admin as ka  # noqa: E402

PYTHON = "/usr/bin/python3"
TEMPEST_PACKAGE = "/usr/lib/python3/dist-packages/tempest"
RUN_TIMEOUT_S = 900

# The upstream modules (and the one class of test_volume_retype.py that fits one back-end).
MODULES = (
    "tempest.api.volume.admin.test_volume_types",
    "tempest.api.volume.admin.test_volume_types_extra_specs",
    "tempest.api.volume.admin.test_volume_types_extra_specs_negative",
    "tempest.api.volume.admin.test_volume_types_negative",
    "tempest.api.volume.admin.test_volume_type_access",
    "tempest.api.volume.admin.test_volume_retype.VolumeRetypeWithoutMigrationTest",
)

# Test ids (or parts) left out: none today; the mechanism stays for what a release lacks.
EXCLUDED = ()

TEMPEST_CONF = """\
[DEFAULT]
log_file = {root}/tempest.log
debug = true

[auth]
use_dynamic_credentials = true
admin_username = {admin_user}
admin_password = {admin_password}
admin_project_name = {admin_project}
admin_domain_name = Default
create_isolated_networks = false

[identity]
uri_v3 = {keystone_url}
auth_version = v3
region = {region}
v3_endpoint_type = public

[identity-feature-enabled]
api_v2 = false

[service_available]
cinder = true
nova = false
glance = false
neutron = false
swift = false

[volume]
catalog_type = volumev3
endpoint_type = publicURL
region = {region}
build_interval = 1
build_timeout = 60
volume_size = 1
storage_protocol = local
vendor_name = Open Source
max_microversion = 3.44

[volume-feature-enabled]
backup = false
snapshot = true
multi_backend = false
"""


def missing():
    """Why this test cannot run here, or None."""
    why = ka_missing()
    if why:
        return why
    if not os.path.isdir(TEMPEST_PACKAGE):
        return "Debian package tempest is not installed"
    return None


def ka_missing():
    for path, package in (("/usr/bin/keystone-wsgi-public", "keystone"),
                          ("/usr/bin/uwsgi", "uwsgi-core"),
                          ("/usr/lib/uwsgi/plugins/python3_plugin.so", "uwsgi-plugin-python3")):
        if not os.path.exists(path):
            return "%s is missing (Debian package %s)" % (path, package)
    return None


class TempestVolumeTypesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        why = missing()
        if why:
            raise unittest.SkipTest(why)
        cls.server = ka.Server()
        cls.addClassCleanup(cls.server.close)
        ks = cls.ks = cls.server.start()
        suffix = uuid.uuid4().hex[:8]
        # clinkerd's own identity: a user with the `service` role, to validate tokens.
        service_project = "service-" + suffix
        service_user, service_password = "clinker-" + suffix, uuid.uuid4().hex
        ks.ensure_role("service")
        ks.create_user_on_project(service_user, service_password,
                                  ks.create_project(service_project), ["service"])
        cls.daemon = h.Daemon()
        cls.addClassCleanup(cls.daemon.close)
        config = os.path.join(cls.daemon.root, "clinker.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write("[api]\nauth_strategy = \"keystone\"\n\n"
                    "[keystone_authtoken]\n"
                    "auth_url = \"%s\"\nusername = \"%s\"\npassword = \"%s\"\n"
                    "project_name = \"%s\"\nuser_domain_name = \"Default\"\n"
                    "project_domain_name = \"Default\"\n" %
                    (ks.url, service_user, service_password, service_project))
        cls.daemon.start(["--config", config])
        ks.register_block_storage(ka.block_storage_url(cls.daemon.port))

    def test_tempest_volume_type_modules_pass(self):
        root = tempfile.mkdtemp(prefix="clinker-tempest-", dir=os.environ.get("TMPDIR"))
        keep = False
        try:
            with open(os.path.join(root, "tempest.conf"), "w", encoding="utf-8") as f:
                f.write(TEMPEST_CONF.format(root=root,
                                            admin_user=self.ks.admin_user,
                                            admin_password=self.ks.admin_password,
                                            admin_project=self.ks.admin_project,
                                            keystone_url=self.ks.url,
                                            region=self.ks.region))
            env = dict(os.environ)
            env.update({"TEMPEST_CONFIG_DIR": root, "TEMPEST_CONFIG": "tempest.conf",
                        "PYTHONDONTWRITEBYTECODE": "1", "no_proxy": "*", "NO_PROXY": "*"})
            for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
                env.pop(key, None)
            runner = os.path.join(root, "run.py")
            with open(runner, "w", encoding="utf-8") as f:
                f.write(RUNNER)
            proc = subprocess.run([PYTHON, runner] + list(MODULES),
                                  cwd=root, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S,
                                  check=False)
            output = proc.stdout.decode("utf-8", "replace")
            if proc.returncode != 0:
                keep = os.environ.get("CLINKER_KEEP_TEMPEST") == "1"
                self.fail("Tempest failed (exit %d):\n%s\n--- clinkerd log tail ---\n%s" %
                          (proc.returncode, output, self.daemon.stderr_tail()))
            print(output[-3000:])
        finally:
            if not keep:
                shutil.rmtree(root, ignore_errors=True)


# Loads the modules, drops EXCLUDED tests, runs them with a text runner; exit 0 only if every
# test that ran passed (and at least one ran).
RUNNER = """\
import sys
import unittest

EXCLUDED = %r


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


loader = unittest.TestLoader()
suite = unittest.TestSuite()
for name in sys.argv[1:]:
    loaded = loader.loadTestsFromName(name)
    for test in flatten(loaded):
        if not any(excluded in test.id() for excluded in EXCLUDED):
            suite.addTest(test)
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
ran = result.testsRun - len(result.skipped)
print("%%d passed, %%d failed, %%d skipped" %% (ran - len(result.failures) - len(result.errors),
                                            len(result.failures) + len(result.errors),
                                            len(result.skipped)))
sys.exit(0 if result.wasSuccessful() and ran > 0 else 1)
""" % (EXCLUDED,)


if __name__ == "__main__":
    h.main()
