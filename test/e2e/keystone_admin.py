"""Keystone administration for end-to-end tests: a real Keystone, driven over its v3 API.

Goal: let a test that runs clinkerd with `auth_strategy = keystone` build the identity side it
needs (projects, users, roles, the block-storage catalog entry), get and revoke tokens, and count
how often Keystone was asked to validate one, without any OpenStack client library.

Method:
- `Server` runs scripts/test_server_keystone.sh in a fresh temp dir (`start()`), reads the DIR/env
  it writes and stops the server by PID in `close()`, also after a failed start, then removes the
  dir. A test that uses the CTest fixture instead builds `Keystone.from_env()` from that env.
- `Keystone` talks JSON to /v3 with urllib (no proxy: loopback only). It logs in as the
  bootstrap admin on the admin project, keeps that token and gets a new one when it is about to
  expire or Keystone answers 401 (tests may run Keystone with a token lifetime of seconds).
- Every failed call raises `KeystoneError` with the method, path, status and body.
- Counting requests: the server logs one line per served request, `request METHOD URI => STATUS
  N ms`, but only after the response has gone out, so a client can read a reply before its line
  exists. Keystone serves one request at a time, in order, so `sync_log()` sends a marker
  request and waits (bounded) for the marker's line: every request served before it is then in
  the log. `count_requests()` syncs first; `count_validations()` counts GET /v3/auth/tokens.
  Counts run from the server's start (its start-up check issues one token): compare two counts.

Keystone facts the helpers rely on (keystone 22, Debian 12): bootstrap creates the roles admin,
member and reader, with admin implying member and member implying reader (a member's token lists
both member and reader); a user with the `service` role (create it: `ensure_role("service")`)
may validate other users' tokens; a token's roles are computed again at each validation, so a
removed role disappears from existing tokens at once (a token left with no role on its project is
refused, and accepted again if a role is granted back); revocation events (a revoked token, a
disabled user, a changed password) have one-second resolution, so a token issued in the same
second as a user change may be refused too (wait for the next second).

Python 3 standard library only (Debian's /usr/bin/python3). Not thread-safe: one per thread.
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO, "scripts", "test_server_keystone.sh")

DEFAULT_DOMAIN = "default"
HTTP_TIMEOUT_S = 30.0
SCRIPT_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0
LOG_SYNC_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
# A cached admin token is replaced when it has less than this left.
TOKEN_MARGIN_S = 2.0
VALIDATION_PATH = "/v3/auth/tokens"

# The server's per-request log line (see scripts/test_server_keystone.sh).
_REQUEST_LINE = re.compile(r"^request (\S+) (\S+) => (\d+) ")


class KeystoneError(AssertionError):
    """A Keystone call answered something other than what the caller expected."""

    def __init__(self, method, path, status, body):
        super().__init__("%s %s -> %s: %s" % (method, path, status, body[:2000]))
        self.status = status
        self.body = body


class Token:
    """An issued token: its id (the X-Subject-Token) and Keystone's description of it."""

    def __init__(self, token_id, body):
        self.id = token_id
        self.body = body["token"]

    @property
    def expires_at(self):
        return parse_time(self.body["expires_at"])

    @property
    def issued_at(self):
        return parse_time(self.body["issued_at"])

    @property
    def project_id(self):
        return self.body.get("project", {}).get("id")

    @property
    def user_id(self):
        return self.body["user"]["id"]

    @property
    def roles(self):
        return sorted(role["name"] for role in self.body.get("roles", []))

    @property
    def catalog(self):
        return self.body.get("catalog", [])

    def endpoint(self, service_type, interface="public"):
        """The catalog URL of `service_type` for `interface`, or None."""
        for service in self.catalog:
            if service["type"] == service_type:
                for endpoint in service["endpoints"]:
                    if endpoint["interface"] == interface:
                        return endpoint["url"]
        return None

    def __repr__(self):
        return "Token(user=%s, project=%s, expires_at=%s)" % (self.user_id, self.project_id,
                                                               self.body["expires_at"])


def parse_time(text):
    """Keystone's ISO 8601 UTC time ("2026-01-02T03:04:05.000000Z") as an aware datetime."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_env(path):
    """The KEY=VALUE lines of a server's env file, as a dict."""
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def block_storage_url(port, host="127.0.0.1"):
    """The Cinder-style public endpoint of a clinkerd API on `port`, per project."""
    return "http://%s:%d/v3/%%(project_id)s" % (host, port)


class Keystone:
    """Client for one Keystone, authenticated as its bootstrap admin."""

    def __init__(self,
                 url,
                 admin_user,
                 admin_password,
                 admin_project,
                 region="RegionOne",
                 log_path=None):
        self.url = url.rstrip("/")  # http://127.0.0.1:PORT/v3
        split = urllib.parse.urlsplit(self.url)
        self.root = "%s://%s" % (split.scheme, split.netloc)
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.admin_project = admin_project
        self.region = region
        self.log_path = log_path
        self._admin = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_env(cls, env):
        """From the KEY=VALUE pairs of the server's DIR/env."""
        return cls(env["CLINKER_TEST_KEYSTONE_URL"],
                   env["CLINKER_TEST_KEYSTONE_ADMIN_USER"],
                   env["CLINKER_TEST_KEYSTONE_ADMIN_PASSWORD"],
                   env["CLINKER_TEST_KEYSTONE_ADMIN_PROJECT"],
                   region=env.get("CLINKER_TEST_KEYSTONE_REGION", "RegionOne"),
                   log_path=env.get("CLINKER_TEST_KEYSTONE_LOG"))

    # ---- raw HTTP ----------------------------------------------------------------------------

    def raw(self, method, path, body=None, token=None, headers=None):
        """One request to `path` (relative to /v3, or absolute from "/"); no status check.

        Returns (status, headers, parsed JSON body or None).
        """
        url = self.root + path if path.startswith("/") else self.url + "/" + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("X-Auth-Token", token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with self._opener.open(request, timeout=HTTP_TIMEOUT_S) as reply:
                status, reply_headers, text = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as error:
            status, reply_headers, text = error.code, error.headers, error.read()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = {"raw": text.decode(errors="replace")}
        return status, reply_headers, parsed

    def call(self, method, path, body=None, expect=(200,), token=None, headers=None):
        """An admin request; raises KeystoneError unless the status is in `expect`."""
        status, reply_headers, parsed = self.raw(method, path, body,
                                                 token or self.admin_token(), headers)
        if status == 401 and token is None:
            # The cached admin token expired or was revoked between the check and the call.
            self._admin = None
            status, reply_headers, parsed = self.raw(method, path, body, self.admin_token(),
                                                     headers)
        if status not in expect:
            raise KeystoneError(method, path, status, json.dumps(parsed))
        return status, reply_headers, parsed

    # ---- tokens ------------------------------------------------------------------------------

    def admin_token(self):
        """A valid admin token on the admin project (cached, renewed before it expires)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        if (self._admin is None or
            (self._admin.expires_at - now).total_seconds() < TOKEN_MARGIN_S):
            self._admin = self.issue_token(self.admin_user, self.admin_password,
                                           project=self.admin_project)
        return self._admin.id

    def issue_token(self,
                    user,
                    password,
                    project=None,
                    project_id=None,
                    system=False,
                    domain=DEFAULT_DOMAIN,
                    nocatalog=False):
        """POST /v3/auth/tokens with a password; scoped to a project (by name in `domain`, or by
        id), to the system, or unscoped. Returns a Token."""
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": user,
                        "domain": {
                            "id": domain
                        },
                        "password": password
                    }
                }
            }
        }
        if project_id:
            auth["scope"] = {"project": {"id": project_id}}
        elif project:
            auth["scope"] = {"project": {"name": project, "domain": {"id": domain}}}
        elif system:
            auth["scope"] = {"system": {"all": True}}
        path = "auth/tokens" + ("?nocatalog" if nocatalog else "")
        status, headers, parsed = self.raw("POST", path, {"auth": auth})
        if status != 201:
            raise KeystoneError("POST", path, status, json.dumps(parsed))
        return Token(headers["X-Subject-Token"], parsed)

    def validate_token(self, subject, token=None):
        """GET /v3/auth/tokens for `subject`, as `token` (default: the admin).

        Returns (status, body): 200 and the token's description, or 404 once it expired or was
        revoked.
        """
        auth = token or self.admin_token()
        status, _, parsed = self.raw("GET", "auth/tokens", token=auth,
                                     headers={"X-Subject-Token": subject})
        return status, parsed

    def revoke_token(self, subject):
        """DELETE /v3/auth/tokens: `subject` is refused from now on."""
        self.call("DELETE", "auth/tokens", expect=(204,), headers={"X-Subject-Token": subject})

    # ---- identity ----------------------------------------------------------------------------

    def create_project(self, name, domain_id=DEFAULT_DOMAIN, description=""):
        """A new enabled project; returns its id (32 hex digits, a valid Cinder project_id)."""
        _, _, parsed = self.call("POST", "projects", {
            "project": {
                "name": name,
                "domain_id": domain_id,
                "description": description,
                "enabled": True
            }
        },
                                 expect=(201,))
        return parsed["project"]["id"]

    def create_user(self, name, password, project_id=None, domain_id=DEFAULT_DOMAIN):
        """A new enabled user with a password (and default project); returns its id."""
        user = {"name": name, "password": password, "domain_id": domain_id, "enabled": True}
        if project_id:
            user["default_project_id"] = project_id
        _, _, parsed = self.call("POST", "users", {"user": user}, expect=(201,))
        return parsed["user"]["id"]

    def role_id(self, name):
        """The id of the global role `name`, or None."""
        _, _, parsed = self.call("GET", "roles?name=" + urllib.parse.quote(name))
        roles = parsed["roles"]
        return roles[0]["id"] if roles else None

    def ensure_role(self, name):
        """The id of the global role `name`, created if missing."""
        role_id = self.role_id(name)
        if role_id:
            return role_id
        _, _, parsed = self.call("POST", "roles", {"role": {"name": name}}, expect=(201,))
        return parsed["role"]["id"]

    def grant_role(self, role, user_id, project_id):
        """Gives `user_id` the role named `role` on `project_id` (idempotent)."""
        self.call("PUT",
                  "projects/%s/users/%s/roles/%s" % (project_id, user_id, self._role(role)),
                  expect=(204,))

    def revoke_role(self, role, user_id, project_id):
        """Takes the role away; existing tokens lose it at their next validation (and are
        refused when no role on the project is left)."""
        self.call("DELETE",
                  "projects/%s/users/%s/roles/%s" % (project_id, user_id, self._role(role)),
                  expect=(204,))

    def _role(self, role):
        role_id = self.role_id(role)
        if not role_id:
            raise KeystoneError("GET", "roles?name=" + role, 404, "no such role")
        return role_id

    def create_user_on_project(self, name, password, project_id, roles):
        """A user with `roles` (names) on `project_id`; returns the user's id."""
        user_id = self.create_user(name, password, project_id=project_id)
        for role in roles:
            self.grant_role(role, user_id, project_id)
        return user_id

    # ---- catalog -----------------------------------------------------------------------------

    def create_service(self, service_type, name, description=""):
        """A catalog service; returns its id."""
        _, _, parsed = self.call("POST", "services", {
            "service": {
                "type": service_type,
                "name": name,
                "description": description,
                "enabled": True
            }
        },
                                 expect=(201,))
        return parsed["service"]["id"]

    def create_endpoint(self, service_id, url, interface="public", region=None):
        """An endpoint of `service_id` in `region` (default: the server's); returns its id."""
        _, _, parsed = self.call("POST", "endpoints", {
            "endpoint": {
                "service_id": service_id,
                "url": url,
                "interface": interface,
                "region_id": region or self.region,
                "enabled": True
            }
        },
                                 expect=(201,))
        return parsed["endpoint"]["id"]

    def register_block_storage(self, url, service_types=(("block-storage", "cinder"),
                                                         ("volumev3", "cinderv3"))):
        """Catalog entries for a Cinder v3 API at `url` (see block_storage_url()): one service
        per (type, name) with one public endpoint each. Returns {type: service_id}."""
        services = {}
        for service_type, name in service_types:
            services[service_type] = self.create_service(service_type, name,
                                                         "Clinker block storage")
            self.create_endpoint(services[service_type], url)
        return services

    # ---- the request log ---------------------------------------------------------------------

    def requests_logged(self):
        """(method, path without query, status) of every request in the log so far."""
        if not self.log_path:
            raise ValueError("no CLINKER_TEST_KEYSTONE_LOG for this Keystone")
        entries = []
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                match = _REQUEST_LINE.match(line)
                if match:
                    entries.append((match.group(1), match.group(2).split("?", 1)[0],
                                    int(match.group(3))))
        return entries

    def sync_log(self, timeout_s=LOG_SYNC_TIMEOUT_S):
        """Waits (bounded) until every request served so far is in the log."""
        marker = "clinker-log-sync-" + uuid.uuid4().hex
        self.raw("GET", "/v3?" + marker)
        deadline = time.monotonic() + timeout_s
        while True:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                if marker in f.read():
                    return
            if time.monotonic() >= deadline:
                raise AssertionError("the log line of request %s did not appear in %s within "
                                     "%.1f s" % (marker, self.log_path, timeout_s))
            time.sleep(POLL_INTERVAL_S)

    def count_requests(self, method, path, status=None):
        """How many `method path` requests (any query; of `status` if given) were served."""
        self.sync_log()
        return sum(1 for entry in self.requests_logged()
                   if entry[0] == method and entry[1] == path and
                   (status is None or entry[2] == status))

    def count_validations(self, status=None):
        """How many token validations (GET /v3/auth/tokens) were served."""
        return self.count_requests("GET", VALIDATION_PATH, status)


class Server:
    """A Keystone of its own for one test (or class), in a temp dir; close() always cleans up."""

    def __init__(self, token_expiration_s=None):
        self.token_expiration_s = token_expiration_s
        self.dir = None
        self.env = None
        self.keystone = None

    def start(self):
        """Starts the server; returns its `Keystone`. Raises AssertionError if it cannot."""
        self.dir = tempfile.mkdtemp(prefix="clinker-keystone-")
        env = dict(os.environ)
        if self.token_expiration_s is not None:
            env["CLINKER_KEYSTONE_TOKEN_EXPIRATION_S"] = str(self.token_expiration_s)
        try:
            proc = subprocess.run(["bash", SCRIPT, "start", self.dir],
                                  env=env,
                                  stdin=subprocess.DEVNULL,
                                  capture_output=True,
                                  text=True,
                                  timeout=SCRIPT_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired as error:
            raise AssertionError("%s start did not finish in %.0f s" %
                                 (SCRIPT, SCRIPT_TIMEOUT_S)) from error
        if proc.returncode != 0:
            raise AssertionError("%s start failed (%d): %s%s" %
                                 (SCRIPT, proc.returncode, proc.stdout, proc.stderr))
        self.env = read_env(os.path.join(self.dir, "env"))
        self.keystone = Keystone.from_env(self.env)
        return self.keystone

    @property
    def log_path(self):
        return os.path.join(self.dir, "keystone.log")

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def close(self):
        """Stops the server (the script's stop, then SIGKILL by PID if that failed) and removes
        its dir. Idempotent."""
        if not self.dir:
            return
        try:
            subprocess.run(["bash", SCRIPT, "stop", self.dir],
                           stdin=subprocess.DEVNULL,
                           capture_output=True,
                           timeout=STOP_TIMEOUT_S,
                           check=False)
        except subprocess.TimeoutExpired:
            pass
        self._kill_recorded_pid()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def _kill_recorded_pid(self):
        try:
            with open(os.path.join(self.dir, "pid"), encoding="utf-8") as f:
                pid = int(f.read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"keystone-wsgi-public" not in f.read():
                    return  # Gone, and the PID reused by someone else.
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
