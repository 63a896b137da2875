"""End-to-end: the throwaway Keystone the auth tests run (scripts/test_server_keystone.sh) and the
helpers that drive it (keystone_admin.py), checked on their own, without clinkerd.

Goal: before any Clinker test relies on them, prove that the script starts a working Keystone and
that a test can build what it needs on it: two projects each with a member and a reader user, a
service user with the `service` role, the block-storage catalog entries; that password auth works
for the admin helpers and for python3-openstackclient (`token issue`, `catalog list`); that token
lifetime comes from CLINKER_KEYSTONE_TOKEN_EXPIRATION_S; that revoked and expired tokens are
refused; and that validations (GET /v3/auth/tokens) can be counted exactly from the log.

Method: one Keystone for the whole class, started in a temp dir with a 15 s token lifetime and
stopped by PID (and its dir removed) by a class cleanup, also when the set-up fails. Waits are
bounded by deadlines. The e2e runner passes `--clinkerd PATH` to every file: accepted, unused.
"""

import argparse
import collections
import datetime
import json
import os
import subprocess
import sys
import time
import unittest
import uuid

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import keystone_admin as ka  # noqa: E402

TOKEN_EXPIRATION_S = 15
# Only written into the catalog: nothing listens there in this test.
CLINKER_PORT = 8776
OPENSTACK = "/usr/bin/openstack"
CLI_TIMEOUT_S = 60.0
# How long after its expiry time an expired token may still be accepted before the test fails.
EXPIRY_GRACE_S = 10.0
POLL_INTERVAL_S = 0.5

User = collections.namedtuple("User", "id name password project")


def keystone_missing():
    """Why Keystone cannot run here, or None."""
    for path in ("/usr/bin/keystone-wsgi-public", "/usr/bin/uwsgi",
                 "/usr/lib/uwsgi/plugins/python3_plugin.so"):
        if not os.path.exists(path):
            return "%s is missing (Debian packages keystone, uwsgi-plugin-python3)" % path
    return None


class KeystoneServerTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        missing = keystone_missing()
        if missing:
            raise unittest.SkipTest(missing)
        cls.server = ka.Server(token_expiration_s=TOKEN_EXPIRATION_S)
        cls.addClassCleanup(cls.server.close)
        cls.ks = cls.server.start()
        ks = cls.ks
        suffix = uuid.uuid4().hex[:8]
        cls.projects = {}  # "alpha" -> project id
        cls.users = {}  # "alpha-member" -> User
        for project in ("alpha", "beta"):
            name = "%s-%s" % (project, suffix)
            cls.projects[project] = ks.create_project(name)
            for role in ("member", "reader"):
                user = "%s-%s-%s" % (project, role, suffix)
                password = uuid.uuid4().hex
                user_id = ks.create_user_on_project(user, password, cls.projects[project], [role])
                cls.users["%s-%s" % (project, role)] = User(user_id, user, password, name)
        # The service user clinkerd validates tokens with: the `service` role only.
        service_project = "service-" + suffix
        cls.projects["service"] = ks.create_project(service_project)
        ks.ensure_role("service")
        password = uuid.uuid4().hex
        user_id = ks.create_user_on_project("clinker-" + suffix, password,
                                            cls.projects["service"], ["service"])
        cls.users["service"] = User(user_id, "clinker-" + suffix, password, service_project)
        cls.services = ks.register_block_storage(ka.block_storage_url(CLINKER_PORT))
        # Issued now, so that waiting for its expiry overlaps the other tests.
        user = cls.users["alpha-reader"]
        cls.expiring = ks.issue_token(user.name, user.password, project=user.project)
        cls.expiring_status = ks.validate_token(cls.expiring.id)

    def token(self, key):
        """A token of user `key` on its project."""
        user = self.users[key]
        return self.ks.issue_token(user.name, user.password, project=user.project)

    def test_bootstrap_made_admin_roles_and_identity_endpoint(self):
        for role in ("admin", "member", "reader"):
            self.assertIsNotNone(self.ks.role_id(role), role)
        admin = self.ks.issue_token(self.ks.admin_user, self.ks.admin_password,
                                    project=self.ks.admin_project)
        self.assertEqual(admin.roles, ["admin", "member", "reader"])
        self.assertEqual(admin.endpoint("identity"), self.ks.url)
        self.assertEqual(self.server.env["CLINKER_TEST_KEYSTONE_REGION"], "RegionOne")
        self.assertEqual(self.server.env["CLINKER_TEST_KEYSTONE_LOG"], self.server.log_path)

    def test_project_users_get_scoped_tokens_with_implied_roles_and_catalog(self):
        for project in ("alpha", "beta"):
            member = self.token(project + "-member")
            self.assertEqual(member.project_id, self.projects[project])
            self.assertEqual(member.roles, ["member", "reader"])  # member implies reader
            reader = self.token(project + "-reader")
            self.assertEqual(reader.roles, ["reader"])
            expected = "http://127.0.0.1:%d/v3/%s" % (CLINKER_PORT, self.projects[project])
            self.assertEqual(member.endpoint("volumev3"), expected)
            self.assertEqual(member.endpoint("block-storage"), expected)
        # A user has no say on a project it has no role on.
        user = self.users["alpha-member"]
        with self.assertRaises(ka.KeystoneError) as refused:
            self.ks.issue_token(user.name, user.password, project_id=self.projects["beta"])
        self.assertEqual(refused.exception.status, 401)

    def test_validations_are_counted_exactly(self):
        subject = self.token("alpha-member")
        service = self.token("service")
        before = self.ks.count_validations()
        before_ok = self.ks.count_validations(status=200)
        for _ in range(3):
            status, body = self.ks.validate_token(subject.id, token=service.id)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["token"]["project"]["id"], self.projects["alpha"])
        self.assertEqual(self.ks.count_validations(), before + 3)
        # A member may not validate someone else's token: one more validation, refused.
        other = self.token("beta-member")
        status, body = self.ks.validate_token(subject.id, token=other.id)
        self.assertEqual(status, 403, body)
        self.assertEqual(self.ks.count_validations(), before + 4)
        self.assertEqual(self.ks.count_validations(status=200), before_ok + 3)

    def test_revoked_token_is_refused(self):
        subject = self.token("beta-reader")
        self.assertEqual(self.ks.validate_token(subject.id)[0], 200)
        self.ks.revoke_token(subject.id)
        status, body = self.ks.validate_token(subject.id)
        self.assertEqual(status, 404, body)
        # Another token of the same user is unaffected.
        self.assertEqual(self.ks.validate_token(self.token("beta-reader").id)[0], 200)

    def test_roles_of_existing_tokens_follow_role_assignments(self):
        project = self.projects["beta"]
        name, password = "roles-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
        user_id = self.ks.create_user_on_project(name, password, project, ["member"])
        subject = self.ks.issue_token(name, password, project_id=project)
        self.assertEqual(subject.roles, ["member", "reader"])
        self.ks.grant_role("reader", user_id, project)
        self.ks.revoke_role("member", user_id, project)
        status, body = self.ks.validate_token(subject.id)
        self.assertEqual(status, 200, body)
        self.assertEqual([role["name"] for role in body["token"]["roles"]], ["reader"])
        self.ks.revoke_role("reader", user_id, project)
        self.assertEqual(self.ks.validate_token(subject.id)[0], 404)  # No role left.
        self.ks.grant_role("member", user_id, project)
        self.assertEqual(self.ks.validate_token(subject.id)[0], 200)

    def test_token_lifetime_comes_from_the_environment_and_expired_tokens_are_refused(self):
        subject = self.expiring
        lifetime = (subject.expires_at - subject.issued_at).total_seconds()
        self.assertAlmostEqual(lifetime, TOKEN_EXPIRATION_S, delta=1.0)
        self.assertEqual(self.server.env["CLINKER_TEST_KEYSTONE_TOKEN_EXPIRATION_S"],
                         str(TOKEN_EXPIRATION_S))
        status, body = self.expiring_status
        self.assertEqual(status, 200, body)
        # Bounded wait: refused once expired (the admin token is renewed behind the scenes).
        deadline = subject.expires_at + datetime.timedelta(seconds=EXPIRY_GRACE_S)
        while True:
            status, body = self.ks.validate_token(subject.id)
            now = datetime.datetime.now(datetime.timezone.utc)
            if status != 200:
                break
            self.assertLess(now, deadline, "expired token still accepted")
            time.sleep(POLL_INTERVAL_S)
        self.assertEqual(status, 404, body)
        self.assertGreaterEqual(now, subject.expires_at - datetime.timedelta(seconds=1))

    def openstack(self, key, *args):
        """Runs python3-openstackclient with password auth as user `key`; returns parsed JSON."""
        if not os.path.exists(OPENSTACK):
            self.skipTest("%s is missing (Debian package python3-openstackclient)" % OPENSTACK)
        user = self.users[key]
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("OS_") and "proxy" not in name.lower()
        }
        env.update({
            "OS_AUTH_TYPE": "password",
            "OS_AUTH_URL": self.ks.url,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": user.name,
            "OS_PASSWORD": user.password,
            "OS_PROJECT_NAME": user.project,
            "OS_USER_DOMAIN_ID": "default",
            "OS_PROJECT_DOMAIN_ID": "default",
            "OS_REGION_NAME": self.ks.region,
            "OS_INTERFACE": "public",
        })
        proc = subprocess.run([OPENSTACK, *args, "-f", "json"],
                              env=env,
                              stdin=subprocess.DEVNULL,
                              capture_output=True,
                              text=True,
                              timeout=CLI_TIMEOUT_S,
                              check=False)
        self.assertEqual(proc.returncode, 0, "openstack %s: %s" % (" ".join(args), proc.stderr))
        return json.loads(proc.stdout)

    def test_openstack_cli_password_auth(self):
        token = self.openstack("alpha-member", "token", "issue")
        self.assertEqual(token["project_id"], self.projects["alpha"])
        self.assertEqual(token["user_id"], self.users["alpha-member"].id)
        catalog = {entry["Type"]: entry for entry in self.openstack("alpha-member", "catalog",
                                                                     "list")}
        self.assertIn("identity", catalog)
        for service_type in ("volumev3", "block-storage"):
            self.assertIn(service_type, catalog)
            endpoints = catalog[service_type]["Endpoints"]
            self.assertEqual(len(endpoints), 1, endpoints)
            self.assertEqual(endpoints[0]["region"], "RegionOne")
            self.assertEqual(endpoints[0]["interface"], "public")
            self.assertEqual(endpoints[0]["url"],
                             "http://127.0.0.1:%d/v3/%s" % (CLINKER_PORT, self.projects["alpha"]))


def main():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--clinkerd")  # Passed to every e2e file; this one needs no clinkerd.
    _, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
