"""End-to-end: clinkerd behind a real Keystone (`[api] auth_strategy = "keystone"`).

Goal: prove that an unmodified OpenStack client finds Clinker through Keystone's catalog and works
with password authentication (`openstack volume create/list/set/show/delete`, `cinder
create/list/show/delete`); that projects are isolated and roles count as in Cinder (a member of
project A gets 404 for project B's volumes and changes nothing, a reader reads but cannot create,
the admin lists every project with all_tenants and acts on any volume by id); that bad tokens
(missing, expired, revoked, garbage, over-long, another project's) are refused as Cinder refuses
them and write nothing; that validated tokens are cached (1,000 requests cost at most a handful
of Keystone validations); that a policy file overrides the built-in rules, a broken one stops
clinkerd with exit status 2, and `--print-policy-defaults` prints a usable YAML policy; and that
a Keystone that went away gives 503 while the daemon keeps answering.

Method:
- One Keystone for the whole file (scripts/test_server_keystone.sh through keystone_admin.Server),
  with a token lifetime of TOKEN_LIFETIME_S so that the expiry case only waits for time the other
  cases have already spent; it is stopped by PID by a class cleanup, also when set-up fails. The
  last case (test_99) stops it on purpose.
- One clinkerd for most cases, its config file in its temp dir: `[api] auth_strategy`,
  `[keystone_authtoken]` with a service user that has the `service` role in a `service` project,
  and a long token_cache_time_s (the cache case measures it). Cases that need other settings
  (a short cache, a policy file) start a clinkerd of their own on the same Keystone.
- The catalog has Clinker's endpoint `http://127.0.0.1:PORT/v3/%(project_id)s` under both
  `block-storage` and `volumev3` (as devstack registers Cinder). Both cinderclient and
  openstackclient ask for `volumev3`; keystoneauth also accepts the official `block-storage`
  type as its alias, so either entry alone would do. openstackclient 6's `volume create` builds
  an image client whatever its options, which needs an `image` entry in the catalog: the
  entry's URL ends in /v2 so that no version discovery is attempted, and nothing is ever sent
  to it.
- Revocation: clinkerd trusts a validated token for up to token_cache_time_s (as
  keystonemiddleware does), so the main daemon is shown a revoked token it never saw before
  (refused at once), and a daemon with a 2 s cache is shown one it had accepted before the
  revocation (refused once the cache time has passed, bounded wait).
- "Nothing written" is checked on the daemon's SQLite file (row counts, whole rows) and through
  the admin's all_tenants list. Every wait has a deadline.
- Tokens are issued by the helpers with password auth; Keystone's short lifetime means each is
  re-issued when it has less than TOKEN_MIN_LEFT_S left.
"""

import collections
import datetime
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402
import keystone_admin as ka  # noqa: E402

# Keystone's token lifetime for the whole file. Long enough for any one case's requests, short
# enough that the expiry case finds its token expired by the time it runs.
TOKEN_LIFETIME_S = 30
# A cached test token with less than this left is replaced by a new one.
TOKEN_MIN_LEFT_S = 15
# The main daemon trusts a validated token this long (never past its expiry).
CACHE_TIME_S = 300
# The daemon of the revocation-after-use case.
SHORT_CACHE_TIME_S = 2
# How long past its expiry (or past the cache time, for a revoked token) a token may still be
# accepted before the test fails: clocks, and the daemon's own measure of the token's life.
REFUSAL_GRACE_S = 10.0
POLL_INTERVAL_S = 0.25
CACHE_REQUESTS = 1000
MAX_CACHE_VALIDATIONS = 3
CLI_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 20.0
MISSING_ID = "00000000-0000-4000-8000-00000000dead"

# A policy override: readers may create volumes, only admins may delete them.
POLICY_OVERRIDE = """\
# Readers may create volumes; deleting one takes an admin.
"volume:create": "role:reader"
"volume:delete": "role:admin"
"""

User = collections.namedtuple("User", "name password project")


# What scripts/test_server_keystone.sh runs, and the Debian package of each.
KEYSTONE_FILES = (
    ("/usr/bin/keystone-wsgi-public", "keystone"),
    ("/usr/bin/uwsgi", "uwsgi-core"),
    ("/usr/lib/uwsgi/plugins/python3_plugin.so", "uwsgi-plugin-python3"),
)


def keystone_missing():
    """Why a Keystone server cannot run here, or None."""
    for path, package in KEYSTONE_FILES:
        if not os.path.exists(path):
            return "%s is missing (Debian package %s): no Keystone to test against" % (path,
                                                                                       package)
    return None


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def keystone_config(ks, service, cache_time_s, policy_file=None):
    """clinkerd's TOML for `auth_strategy = keystone` with `service` (a User) as its identity."""
    text = ("[api]\nauth_strategy = \"keystone\"\n\n"
            "[keystone_authtoken]\n"
            "auth_url = \"%s\"\nusername = \"%s\"\npassword = \"%s\"\nproject_name = \"%s\"\n"
            "user_domain_name = \"Default\"\nproject_domain_name = \"Default\"\n"
            "token_cache_time_s = %d\n" %
            (ks.url, service.name, service.password, service.project, cache_time_s))
    if policy_file:
        text += "\n[oslo_policy]\npolicy_file = \"%s\"\n" % policy_file
    return text


def start_keystone_daemon(ks, service, cache_time_s, policy_text=None):
    """A started clinkerd with Keystone auth (and a policy file with `policy_text`); the caller
    closes it."""
    daemon = h.Daemon()
    try:
        policy_file = None
        if policy_text is not None:
            policy_file = os.path.join(daemon.root, "policy.yaml")
            with open(policy_file, "w", encoding="utf-8") as f:
                f.write(policy_text)
        config = os.path.join(daemon.root, "clinker.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(keystone_config(ks, service, cache_time_s, policy_file))
        daemon.start(["--config", config])
    except BaseException:
        daemon.close()
        raise
    return daemon


class KeystoneAuthTest(unittest.TestCase):
    """Cases run in name order: test_99 stops Keystone, and test_90 relies on the time spent by
    the cases before it."""

    @classmethod
    def setUpClass(cls):
        missing = keystone_missing()
        if missing:
            raise unittest.SkipTest(missing)
        cls.server = ka.Server(token_expiration_s=TOKEN_LIFETIME_S)
        cls.addClassCleanup(cls.server.close)
        cls.ks = cls.server.start()
        ks = cls.ks
        suffix = uuid.uuid4().hex[:8]
        cls.users = {"admin": User(ks.admin_user, ks.admin_password, ks.admin_project)}
        cls.project_ids = {}
        for project in ("a", "b"):
            name = "project-%s-%s" % (project, suffix)
            cls.project_ids[project] = ks.create_project(name)
            for role in ("member", "reader"):
                user = User("%s-%s-%s" % (project, role, suffix), uuid.uuid4().hex, name)
                ks.create_user_on_project(user.name, user.password, cls.project_ids[project],
                                          [role])
                cls.users["%s-%s" % (project, role)] = user
        service_project = "service-" + suffix
        cls.project_ids["service"] = ks.create_project(service_project)
        ks.ensure_role("service")
        cls.service_user = User("clinker-" + suffix, uuid.uuid4().hex, service_project)
        ks.create_user_on_project(cls.service_user.name, cls.service_user.password,
                                  cls.project_ids["service"], ["service"])
        cls.tokens = {}
        cls.project_ids["admin"] = cls.token("admin").project_id

        cls.daemon = start_keystone_daemon(ks, cls.service_user, CACHE_TIME_S)
        cls.addClassCleanup(cls.daemon.close)
        ks.register_block_storage(ka.block_storage_url(cls.daemon.port))
        image = ks.create_service("image", "glance", "never contacted (see the module doc)")
        ks.create_endpoint(image, "http://127.0.0.1:%d/image/v2" % cls.daemon.port)

        # For the expiry case (test_90): one token the daemon has validated (and cached), one it
        # has never seen. Issued now, so that their expiry overlaps the other cases.
        cls.expiring_seen = cls.issue("a-reader")
        resp = cls.call_as(cls.expiring_seen, "a", "GET", "volumes")
        if resp.status != 200:
            raise AssertionError("a fresh reader token was refused: %r" % resp)
        cls.expiring_unseen = cls.issue("a-member")

    # ---- tokens and requests -----------------------------------------------------------------

    @classmethod
    def issue(cls, key):
        user = cls.users[key]
        return cls.ks.issue_token(user.name, user.password, project=user.project, nocatalog=True)

    @classmethod
    def token(cls, key):
        """A token of user `key` on its project with at least TOKEN_MIN_LEFT_S to live."""
        token = cls.tokens.get(key)
        if token is None or (token.expires_at - now_utc()).total_seconds() < TOKEN_MIN_LEFT_S:
            token = cls.tokens[key] = cls.issue(key)
        return token

    @classmethod
    def call_as(cls, token, project, method, path, daemon=None, **kwargs):
        """One request with `token` (a Token, or a raw string) on /v3/<project `project`>/path."""
        token_id = token if isinstance(token, str) else token.id
        headers = dict(kwargs.pop("headers", None) or {})
        headers["X-Auth-Token"] = token_id
        return (daemon or cls.daemon).request(method,
                                              path,
                                              project=cls.project_ids.get(project, project),
                                              headers=headers,
                                              **kwargs)

    def call(self, key, method, path, daemon=None, project=None, **kwargs):
        """One request as user `key`, on its own project's URL unless `project` is given."""
        return self.call_as(self.token(key), project or key.split("-")[0], method, path, daemon,
                            **kwargs)

    def create(self, key, name, daemon=None):
        resp = self.call(key, "POST", "volumes", daemon, body={"volume": {"size": 1, "name": name}})
        self.assertEqual(resp.status, 202, resp)
        return resp.json()["volume"]["id"]

    def show(self, key, volume_id, daemon=None):
        """The volume as user `key` sees it on its project's URL; None on 404."""
        resp = self.call(key, "GET", "volumes/" + volume_id, daemon)
        if resp.status == 404:
            return None
        self.assertEqual(resp.status, 200, resp)
        return resp.json()["volume"]

    def wait_status(self, key, volume_id, statuses, daemon=None):
        """Waits (bounded) until the volume's status is in `statuses` (None: gone)."""
        statuses = (statuses,) if isinstance(statuses, str) or statuses is None else statuses

        def current():
            volume = self.show(key, volume_id, daemon)
            status = None if volume is None else volume["status"]
            return (status,) if status in statuses else None

        return h.wait_for(current, h.STATUS_TIMEOUT_S,
                          "volume %s to reach %s" % (volume_id, statuses))[0]

    def admin_listing(self, daemon=None):
        """{volume id: project id} of every volume, as the admin lists them with all_tenants."""
        resp = self.call("admin", "GET", "volumes/detail?all_tenants=1", daemon)
        self.assertEqual(resp.status, 200, resp)
        return {v["id"]: v["os-vol-tenant-attr:tenant_id"] for v in resp.json()["volumes"]}

    def listed_ids(self, key, path="volumes", daemon=None):
        resp = self.call(key, "GET", path, daemon)
        self.assertEqual(resp.status, 200, resp)
        return {v["id"] for v in resp.json()["volumes"]}

    def assertFault(self, resp, status, name, message=None):
        """A Cinder-shaped error `{name: {"code": status, "message": ...}}`."""
        self.assertEqual(resp.status, status, resp)
        body = resp.json()
        self.assertEqual(list(body), [name], resp)
        self.assertEqual(body[name].get("code"), status, resp)
        self.assertTrue(body[name].get("message"), resp)
        if message is not None:
            self.assertIn(message, body[name]["message"], resp)

    def assertUnauthorized(self, resp):
        """keystonemiddleware's 401, which tells the client where to authenticate."""
        self.assertEqual(resp.status, 401, resp)
        self.assertEqual(resp.header("WWW-Authenticate"), 'Keystone uri="%s"' % self.ks.url,
                         resp)
        self.assertEqual(resp.json()["error"]["code"], 401, resp)

    def wait_refused(self, token, project, accepted_until, daemon=None):
        """Polls GET volumes with `token` until it is refused; fails if it is still accepted
        REFUSAL_GRACE_S after `accepted_until` (a UTC datetime). Returns the refusal."""
        deadline = accepted_until + datetime.timedelta(seconds=REFUSAL_GRACE_S)
        while True:
            resp = self.call_as(token, project, "GET", "volumes", daemon)
            if resp.status != 200:
                return resp
            self.assertLess(now_utc(), deadline, "token still accepted: %r" % token)
            time.sleep(POLL_INTERVAL_S)

    # ---- the real clients ----------------------------------------------------------------------

    def cli(self, program, key, *args):
        """Runs `program` (openstack or cinder) with password auth as user `key`, finding Clinker
        through the catalog; returns the CompletedProcess, failing the test on a non-zero exit."""
        user = self.users[key]
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("OS_", "CINDER")) and "proxy" not in name.lower()
        }
        env.update({
            "HOME": self.daemon.home,  # The clients write caches there.
            "OS_AUTH_TYPE": "password",
            "OS_AUTH_URL": self.ks.url,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": user.name,
            "OS_PASSWORD": user.password,
            "OS_PROJECT_NAME": user.project,
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_REGION_NAME": self.ks.region,
            "OS_VOLUME_API_VERSION": "3",
        })
        argv = [program] + [str(a) for a in args]
        proc = subprocess.run(argv,
                              env=env,
                              stdin=subprocess.DEVNULL,
                              capture_output=True,
                              text=True,
                              timeout=CLI_TIMEOUT_S,
                              check=False)
        self.assertEqual(
            proc.returncode, 0, "%s -> %d\nstdout:\n%s\nstderr:\n%s\n%s" %
            (" ".join(argv), proc.returncode, proc.stdout, proc.stderr, self.daemon.stderr_tail()))
        return proc

    def openstack(self, key, *args):
        """`openstack <args> -f json` as user `key`; the parsed JSON."""
        return json.loads(self.cli("openstack", key, *args, "-f", "json").stdout)

    def openstack_quiet(self, key, *args):
        """`openstack <args>` for a command that prints nothing (set, delete)."""
        proc = self.cli("openstack", key, *args)
        self.assertEqual(proc.stdout.strip(), "", proc.stdout)

    def cinder(self, key, *args):
        proc = self.cli("cinder", key, *args)
        return h.CliResult(proc.args, proc.returncode, proc.stdout, proc.stderr)

    # ---- 1. the clients, through the catalog ---------------------------------------------------

    def test_01_openstack_cli_manages_a_volume_through_the_catalog(self):
        name = "osc-" + uuid.uuid4().hex[:8]
        created = self.openstack("a-member", "volume", "create", "--size", "1", name)
        volume_id = created["id"]
        self.assertEqual(created["name"], name)
        self.assertIn(created["status"], ("creating", "available"))
        self.assertEqual(self.wait_status("a-member", volume_id, "available"), "available")
        self.assertEqual(self.openstack("a-member", "volume", "show", volume_id)
                         ["os-vol-tenant-attr:tenant_id"], self.project_ids["a"])

        listed = {v["ID"]: v for v in self.openstack("a-member", "volume", "list")}
        self.assertEqual(listed[volume_id]["Status"], "available")
        self.assertEqual(listed[volume_id]["Name"], name)

        self.openstack_quiet("a-member", "volume", "set", "--name", name + "-renamed",
                             "--description", "set through the catalog", volume_id)
        shown = self.openstack("a-member", "volume", "show", volume_id)
        self.assertEqual(shown["status"], "available")
        self.assertEqual(shown["name"], name + "-renamed")
        self.assertEqual(shown["description"], "set through the catalog")
        self.assertEqual(self.daemon.db_volume(volume_id)["display_name"], name + "-renamed")

        self.openstack_quiet("a-member", "volume", "delete", volume_id)
        self.assertIsNone(self.wait_status("a-member", volume_id, None))
        self.assertEqual(self.daemon.db_volume(volume_id)["deleted"], 1)

    def test_02_cinder_cli_manages_a_volume_through_the_catalog(self):
        name = "cinder-" + uuid.uuid4().hex[:8]
        created = self.cinder("b-member", "create", "1", "--name", name).properties()
        volume_id = created["id"]
        self.assertEqual(created["name"], name)
        self.assertIn(created["status"], ("creating", "available"))
        self.assertEqual(created["os-vol-tenant-attr:tenant_id"], self.project_ids["b"])
        self.wait_status("b-member", volume_id, "available")

        rows = {row["ID"]: row for row in self.cinder("b-member", "list").rows()}
        self.assertEqual(rows[volume_id]["Status"], "available")
        self.assertEqual(rows[volume_id]["Name"], name)
        shown = self.cinder("b-member", "show", volume_id).properties()
        self.assertEqual(shown["status"], "available")
        self.assertEqual(shown["size"], "1")

        self.cinder("b-member", "delete", volume_id)
        self.assertIsNone(self.wait_status("b-member", volume_id, None))

    # ---- 2. projects and roles -----------------------------------------------------------------

    def test_03_a_member_cannot_reach_another_projects_volumes(self):
        mine = self.create("a-member", "mine")
        theirs = self.create("b-member", "theirs")
        self.wait_status("a-member", mine, "available")
        self.wait_status("b-member", theirs, "available")
        before = self.daemon.db_volume(theirs)

        # Through A's own URL, B's volume does not exist: show, update, action, delete.
        self.assertIsNone(self.show("a-member", theirs))
        self.assertFault(
            self.call("a-member", "PUT", "volumes/" + theirs, body={"volume": {"name": "taken"}}),
            404, "itemNotFound")
        self.assertFault(
            self.call("a-member",
                      "POST",
                      "volumes/%s/action" % theirs,
                      body={"os-extend": {
                          "new_size": 2
                      }}), 404, "itemNotFound")
        self.assertFault(self.call("a-member", "DELETE", "volumes/" + theirs), 404, "itemNotFound")
        # all_tenants means nothing to a non-admin: A's lists hold A's volumes only.
        for path in ("volumes", "volumes/detail", "volumes?all_tenants=1"):
            listed = self.listed_ids("a-member", path)
            self.assertIn(mine, listed, path)
            self.assertNotIn(theirs, listed, path)

        self.assertEqual(self.daemon.db_volume(theirs), before)
        volume = self.show("b-member", theirs)
        self.assertEqual((volume["status"], volume["name"], volume["size"]),
                         ("available", "theirs", 1))

    def test_04_a_reader_reads_but_cannot_write(self):
        volume_id = self.create("a-member", "read-only")
        self.wait_status("a-member", volume_id, "available")
        count = self.daemon.db_volume_count()
        row = self.daemon.db_volume(volume_id)

        self.assertFault(
            self.call("a-reader", "POST", "volumes", body={"volume": {
                "size": 1,
                "name": "nope"
            }}), 403, "forbidden", "Policy doesn't allow volume:create to be performed.")
        self.assertFault(
            self.call("a-reader", "PUT", "volumes/" + volume_id,
                      body={"volume": {"name": "nope"}}), 403, "forbidden", "volume:update")
        self.assertFault(self.call("a-reader", "DELETE", "volumes/" + volume_id), 403,
                         "forbidden", "volume:delete")
        self.assertEqual(self.daemon.db_volume_count(), count)
        self.assertEqual(self.daemon.db_volume(volume_id), row)

        self.assertIn(volume_id, self.listed_ids("a-reader"))
        self.assertIn(volume_id, self.listed_ids("a-reader", "volumes/detail"))
        self.assertEqual(self.show("a-reader", volume_id)["name"], "read-only")

    def test_05_the_admin_sees_and_acts_on_every_project(self):
        in_a = self.create("a-member", "admin-sees-a")
        in_b = self.create("b-member", "admin-sees-b")
        self.wait_status("a-member", in_a, "available")
        self.wait_status("b-member", in_b, "available")

        listing = self.admin_listing()
        self.assertEqual(listing.get(in_a), self.project_ids["a"])
        self.assertEqual(listing.get(in_b), self.project_ids["b"])
        # Without all_tenants the admin lists its own project only, as in Cinder.
        own = self.listed_ids("admin")
        self.assertNotIn(in_a, own)
        self.assertNotIn(in_b, own)
        # The cinder CLI's --all-tenants, through the catalog, as the admin.
        rows = {row["ID"]: row for row in self.cinder("admin", "list", "--all-tenants").rows()}
        self.assertIn(in_a, rows)
        self.assertIn(in_b, rows)

        # By id, on the admin's own URL.
        shown = self.show("admin", in_b)
        self.assertEqual(shown["os-vol-tenant-attr:tenant_id"], self.project_ids["b"])
        resp = self.call("admin", "DELETE", "volumes/" + in_b)
        self.assertEqual(resp.status, 202, resp)
        self.assertIsNone(self.wait_status("b-member", in_b, None))
        self.assertNotIn(in_b, self.admin_listing())
        self.assertEqual(self.show("a-member", in_a)["status"], "available")

    # ---- 3. bad tokens -------------------------------------------------------------------------

    def assertRefusedAndNothingWritten(self, token, project, expect):
        """`token` on project `project`'s URL: a create and a list are both refused by
        `expect(resp)`, and no volume row appears."""
        count = self.daemon.db_volume_count()
        listing = self.admin_listing()
        expect(
            self.call_as(token, project, "POST", "volumes", body={"volume": {
                "size": 1,
                "name": "x"
            }}))
        expect(self.call_as(token, project, "GET", "volumes"))
        self.assertEqual(self.daemon.db_volume_count(), count)
        self.assertEqual(self.admin_listing(), listing)

    def test_06_missing_garbage_and_over_long_tokens_are_refused(self):
        # The Keystone answers every unknown token alike (404), so clinkerd answers 401.
        for token in ("", "not-a-token", "gAAAAA" + "x" * 180, uuid.uuid4().hex * 128):
            with self.subTest(token=token[:20], length=len(token)):
                self.assertRefusedAndNothingWritten(token, "a", self.assertUnauthorized)

        # A header longer than the HTTP server takes is refused before the token is looked at:
        # 400, as Cinder's WSGI server answers a header line over its 16 KiB limit (or 431).
        def too_long(resp):
            self.assertIn(resp.status, (400, 431), resp)

        self.assertRefusedAndNothingWritten("x" * 65536, "a", too_long)
        self.assertIsNone(self.daemon.proc.poll(), self.daemon.stderr_tail())

    def test_07_a_token_for_another_project_is_a_malformed_url(self):
        member_a = self.token("a-member")

        def malformed(resp):
            self.assertFault(resp, 400, "badRequest", "Malformed request url")

        self.assertRefusedAndNothingWritten(member_a, "b", malformed)

    def test_08_a_revoked_token_is_refused(self):
        # Revoked before this daemon ever saw it: no cache entry can hide the revocation.
        token = self.issue("a-member")
        self.ks.revoke_token(token.id)
        self.assertRefusedAndNothingWritten(token, "a", self.assertUnauthorized)

    def test_09_a_revoked_token_is_refused_once_the_cache_time_has_passed(self):
        daemon = start_keystone_daemon(self.ks, self.service_user, SHORT_CACHE_TIME_S)
        self.addCleanup(daemon.close)
        token = self.issue("a-member")
        resp = self.call_as(token, "a", "GET", "volumes", daemon)
        self.assertEqual(resp.status, 200, resp)
        self.ks.revoke_token(token.id)
        revoked_at = now_utc()
        refusal = self.wait_refused(token, "a", revoked_at +
                                    datetime.timedelta(seconds=SHORT_CACHE_TIME_S), daemon)
        self.assertUnauthorized(refusal)
        count = daemon.db_volume_count()
        self.assertUnauthorized(
            self.call_as(token, "a", "POST", "volumes", daemon, body={"volume": {
                "size": 1
            }}))
        self.assertEqual(daemon.db_volume_count(), count)

    # ---- 4. the token cache --------------------------------------------------------------------

    def test_10_validated_tokens_are_cached(self):
        token = self.issue("a-member")
        path = "/v3/%s/volumes" % self.project_ids["a"]
        headers = {
            "X-Auth-Token": token.id,
            "Accept": "application/json",
            "OpenStack-API-Version": "volume " + h.DEFAULT_MICROVERSION,
        }
        before = self.ks.count_validations()
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=h.HTTP_TIMEOUT_S)
        try:
            for n in range(CACHE_REQUESTS):
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                self.assertEqual(resp.status, 200, "request %d: %r" % (n, body[:300]))
        finally:
            conn.close()
        validations = self.ks.count_validations() - before
        self.assertGreaterEqual(validations, 1, "the new token was never validated")
        self.assertLessEqual(validations, MAX_CACHE_VALIDATIONS,
                             "%d validations for %d requests" % (validations, CACHE_REQUESTS))

    # ---- 5. policy -----------------------------------------------------------------------------

    def test_11_a_policy_file_overrides_the_defaults(self):
        daemon = start_keystone_daemon(self.ks, self.service_user, CACHE_TIME_S, POLICY_OVERRIDE)
        self.addCleanup(daemon.close)
        # volume:create is now role:reader: the reader creates (403 on the default daemon).
        volume_id = self.create("a-reader", "by-a-reader", daemon)
        self.wait_status("a-reader", volume_id, "available", daemon)
        self.assertEqual(daemon.db_volume(volume_id)["project_id"], self.project_ids["a"])
        # Rules the file leaves alone keep their defaults: a reader still cannot update.
        self.assertFault(
            self.call("a-reader",
                      "PUT",
                      "volumes/" + volume_id,
                      daemon,
                      body={"volume": {
                          "name": "x"
                      }}), 403, "forbidden", "volume:update")
        # volume:delete is now role:admin: the member is refused, the volume stays.
        row = daemon.db_volume(volume_id)
        self.assertFault(self.call("a-member", "DELETE", "volumes/" + volume_id, daemon), 403,
                         "forbidden", "Policy doesn't allow volume:delete to be performed.")
        self.assertEqual(daemon.db_volume(volume_id), row)
        resp = self.call("admin", "DELETE", "volumes/" + volume_id, daemon)
        self.assertEqual(resp.status, 202, resp)
        self.assertIsNone(self.wait_status("a-member", volume_id, None, daemon))

    # ---- 3. bad tokens, continued: expiry and a Keystone that went away ------------------------

    def test_90_expired_tokens_are_refused(self):
        # The token this daemon validated and cached in setUpClass: the cache never outlives
        # the token's expiry.
        remaining = (self.expiring_seen.expires_at - now_utc()).total_seconds()
        if remaining > 0:
            time.sleep(remaining)
        refusal = self.wait_refused(self.expiring_seen, "a", self.expiring_seen.expires_at)
        self.assertUnauthorized(refusal)
        self.assertRefusedAndNothingWritten(self.expiring_seen, "a", self.assertUnauthorized)
        # One it has never seen. It was issued after the first, so Keystone (whole seconds) may
        # give it a later expiry: wait that out too, rather than assume they expire together.
        remaining = (self.expiring_unseen.expires_at - now_utc()).total_seconds()
        if remaining >= 0:
            time.sleep(remaining + 0.05)
        self.assertGreater(now_utc(), self.expiring_unseen.expires_at)
        self.assertRefusedAndNothingWritten(self.expiring_unseen, "a", self.assertUnauthorized)

    def test_99_keystone_unreachable_is_503_and_the_daemon_keeps_answering(self):
        cached = self.issue("a-member")
        resp = self.call_as(cached, "a", "GET", "volumes")
        self.assertEqual(resp.status, 200, resp)
        fresh = self.issue("a-member")  # Never shown to clinkerd.
        count = self.daemon.db_volume_count()

        self.server.close()  # Keystone is gone from here on; its port refuses connections.

        for method, body in (("GET", None), ("POST", {"volume": {"size": 1}})):
            resp = self.call_as(fresh, "a", method, "volumes", body=body)
            self.assertFault(resp, 503, "serviceUnavailable", "Keystone")
            self.assertNotIn(fresh.id, resp.body.decode("utf-8", "replace"))
        self.assertEqual(self.daemon.db_volume_count(), count)
        self.assertIsNone(self.daemon.proc.poll(), self.daemon.stderr_tail())
        # Still answering: the version document, and a token validated before Keystone left.
        self.assertEqual(self.daemon.request("GET", "/", microversion=None).status, 300)
        resp = self.call_as(cached, "a", "GET", "volumes")
        self.assertEqual(resp.status, 200, resp)


class PolicyFileTest(unittest.TestCase):
    """The policy file's start-up checks and the printed defaults; no Keystone needed."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="clinker-policy-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.dir], check=False))

    def run_clinkerd(self, *args):
        return subprocess.run([h.CLINKERD, *args],
                              cwd=self.dir,
                              stdin=subprocess.DEVNULL,
                              capture_output=True,
                              text=True,
                              timeout=RUN_TIMEOUT_S,
                              check=False)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_a_policy_file_that_does_not_parse_stops_clinkerd(self):
        broken = self.write("broken.yaml", "\"volume:create\": [\"role:admin\"\n")
        bad_rule = self.write("bad-rule.yaml", "\"volume:create\": \"role:admin and (\"\n")
        config = self.write("clinker.toml", "[oslo_policy]\npolicy_file = \"%s\"\n" % broken)
        state = os.path.join(self.dir, "state")
        for args in (("--policy-file", broken), ("--config", config), ("--policy-file", bad_rule),
                     ("--policy-file", os.path.join(self.dir, "missing.yaml"))):
            with self.subTest(args=args):
                result = self.run_clinkerd("--port", "0", "--state-dir", state, *args)
                self.assertEqual(result.returncode, 2, result)
                self.assertIn("[oslo_policy] policy_file", result.stderr, result)
                self.assertNotIn("terminate called", result.stderr, result)

    def test_printed_defaults_are_a_yaml_policy_file_clinkerd_accepts(self):
        result = self.run_clinkerd("--print-policy-defaults")
        self.assertEqual(result.returncode, 0, result)
        # As oslopolicy-sample-generator's: every rule commented out at its default.
        rule_lines = [line[1:] for line in result.stdout.splitlines() if line.startswith("#\"")]
        self.assertTrue(rule_lines, result.stdout)
        uncommented = "\n".join(rule_lines) + "\n"
        try:
            import yaml
        except ImportError:
            yaml = None
        if yaml is not None:
            self.assertIsNone(yaml.safe_load(result.stdout))  # Only comments: parses, no rule.
            rules = yaml.safe_load(uncommented)
        else:
            # Every rule line is a JSON-compatible `"name": "check"` pair.
            rules = json.loads("{" + ",".join(rule_lines) + "}")
        self.assertIsInstance(rules, dict)
        self.assertEqual(len(rules), len(rule_lines), "a rule is printed twice")
        for name in ("context_is_admin", "admin_api", "volume:create", "volume:get",
                     "volume:get_all", "volume:update", "volume:delete"):
            self.assertIn(name, rules)
        for name, check in rules.items():
            self.assertIsInstance(check, str, name)
        self.assertEqual(rules["context_is_admin"], "role:admin")
        # The printed defaults, uncommented, are a policy file clinkerd starts with.
        daemon = h.Daemon()
        self.addCleanup(daemon.close)
        daemon.start(["--policy-file", self.write("defaults.yaml", uncommented)])
        self.assertEqual(daemon.request("GET", "volumes").status, 200)
        self.assertEqual(daemon.stop(), 0, daemon.stderr_tail())


if __name__ == "__main__":
    h.main()
