#!/usr/bin/env bash
# Throwaway OpenStack Keystone (Debian's keystone package) for tests, run as a plain process (no
# init system, no Apache): one uwsgi process serving keystone-wsgi-public on a free 127.0.0.1 port,
# SQLite and the fernet/credential key repositories in DIR.
#
# Usage:
#   test_server_keystone.sh start DIR   configure, bootstrap and start Keystone; writes DIR/env
#                                       and DIR/pid
#   test_server_keystone.sh stop DIR    stop it (SIGTERM, then SIGKILL by PID) and remove its data
#
# DIR/env (KEY=VALUE lines):
#   CLINKER_TEST_KEYSTONE_URL               http://127.0.0.1:PORT/v3 (also the catalog's identity
#                                           public endpoint, region RegionOne)
#   CLINKER_TEST_KEYSTONE_ADMIN_USER        admin (domain "default"; admin role on the admin
#   CLINKER_TEST_KEYSTONE_ADMIN_PASSWORD      project and on the system), random password
#   CLINKER_TEST_KEYSTONE_ADMIN_PROJECT     admin (domain "default")
#   CLINKER_TEST_KEYSTONE_REGION            RegionOne
#   CLINKER_TEST_KEYSTONE_TOKEN_EXPIRATION_S  token lifetime the server was started with
#   CLINKER_TEST_KEYSTONE_LOG               DIR/keystone.log: Keystone's own log and one line per
#                                           served request, `request METHOD URI => STATUS N ms`,
#                                           written after the response (see keystone_admin.py)
#
# Environment:
#   CLINKER_KEYSTONE_TOKEN_EXPIRATION_S  token lifetime in seconds (default 3600); small values
#                                        give tests short-lived tokens
#
# Contract:
# - start refuses (exit 1) while the server recorded in DIR is running; a stale record left by a
#   crashed run is cleaned up first. It waits at most about 60 s for GET /v3 to answer and for the
#   admin to get a token, and fails (after cleaning up) if it does not.
# - One process, one thread: requests are served one at a time, in order (SQLite allows one
#   writer; more workers give "database is locked"). Every response carries `Connection: close`:
#   a kept-alive idle client would hold the only thread.
# - stop is idempotent: stopping a stopped or never started DIR succeeds.
# - Only the process this script started is signalled, by its PID.
# - The database, keys and configuration live in DIR and are thrown away by stop; the logs stay.
set -euo pipefail
# shellcheck source=scripts/test_server_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/test_server_lib.sh"

readonly uwsgi_bin="${CLINKER_UWSGI_BIN:-/usr/bin/uwsgi}"
readonly wsgi_app=/usr/bin/keystone-wsgi-public
# Keystone's modules belong to Debian's interpreter, whatever python3 comes first in PATH.
readonly keystone_python=/usr/bin/python3
readonly start_timeout_s=60
readonly token_expiration_s="${CLINKER_KEYSTONE_TOKEN_EXPIRATION_S:-3600}"
readonly admin_user=admin
readonly admin_project=admin
readonly region=RegionOne

die() {
  echo "test_server_keystone: $*" >&2
  exit 1
}

usage() {
  die "usage: $0 start|stop DIR"
}

write_config() {
  local dir="$1"
  # [fernet_receipts] shares the token repository: its default is under /etc/keystone.
  # bcrypt at 4 rounds (the minimum): a password check costs ~1 ms instead of ~250 ms.
  # max_password_length 72 is bcrypt's own limit; a larger one logs a warning per check.
  # [cache] in process memory: without a cache a token validation runs ~500 SQL queries (2 s of
  # CPU; 25 ms with it). One process holds the only copy, so Keystone's own invalidation on
  # every change (revocation, role removal) is exact; expiry and revocation are checked on each
  # validation anyway. No fsync (sqlite_synchronous): the data is thrown away.
  # [oslo_policy] names files that do not exist, so only Keystone's built-in default policy
  # applies, whatever /etc/keystone/policy.d holds on this machine.
  cat >"${dir}/keystone.conf" <<EOF
[DEFAULT]
log_file = ${dir}/keystone.log
use_stderr = false

[database]
connection = sqlite:///${dir}/keystone.db
sqlite_synchronous = false

[token]
expiration = ${token_expiration_s}

[fernet_tokens]
key_repository = ${dir}/fernet-keys

[fernet_receipts]
key_repository = ${dir}/fernet-keys

[credential]
key_repository = ${dir}/credential-keys

[identity]
password_hash_rounds = 4
max_password_length = 72

[cache]
enabled = true
backend = dogpile.cache.memory

[oslo_policy]
policy_file = ${dir}/policy.yaml
policy_dirs = ${dir}/policy.d
EOF
}

# keystone-manage db_sync, fernet_setup, credential_setup and bootstrap, run by keystone's own
# CLI entry point in one interpreter: four separate keystone-manage processes spend ~15 s more
# importing Keystone four times.
setup_keystone() {
  local dir="$1" password="$2" url="$3"
  "${keystone_python}" - "${dir}/keystone.conf" "${dir}/keystone.db" "${password}" "${url}" \
    "$(id -u)" "$(id -g)" "${admin_user}" "${admin_project}" "${region}" \
    >>"${dir}/setup.log" 2>&1 <<'PY'
import sqlite3
import sys
from keystone.cmd import cli

conf, database, password, url, uid, gid, user, project, region = sys.argv[1:]
owner = ["--keystone-user", uid, "--keystone-group", gid]
for command in (["db_sync"], ["fernet_setup"] + owner, ["credential_setup"] + owner, [
        "bootstrap", "--bootstrap-username", user, "--bootstrap-password", password,
        "--bootstrap-project-name", project, "--bootstrap-role-name", "admin",
        "--bootstrap-service-name", "keystone", "--bootstrap-region-id", region,
        "--bootstrap-public-url", url
]):
    print("test_server_keystone: keystone-manage %s" % command[0], file=sys.stderr, flush=True)
    cli.CONF.clear()  # Each command parses its own command line, as keystone-manage would.
    cli.main(argv=["keystone-manage", "--config-file", conf] + command)
# Write-ahead log. With SQLite's default rollback journal, even this one-thread server fails some
# writes with "database is locked" after 5 s (seen: every POST /v3/roles once a GET /v3/roles has
# been served), which points at a second connection of the same request still reading while the
# write commits. In WAL mode a commit does not wait for readers. The mode is kept in the file.
db = sqlite3.connect(database)
mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
db.close()
if mode != "wal":
    sys.exit("test_server_keystone: journal_mode is %s, not wal" % mode)
PY
}

# True once GET /v3 answers and the admin gets a project-scoped token (proves the bootstrap).
ready() {
  local url="$1" password="$2"
  "${keystone_python}" - "${url}" "${admin_user}" "${password}" "${admin_project}" <<'PY' \
    2>/dev/null
import json, sys, urllib.request
url, user, password, project = sys.argv[1:]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # Loopback: no proxy.
with opener.open(url, timeout=2) as reply:
    if not json.load(reply)["version"]["id"].startswith("v3"):
        sys.exit(1)
body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": user, "domain": {"id": "default"}, "password": password}}},
    "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
request = urllib.request.Request(url + "/auth/tokens", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
with opener.open(request, timeout=10) as reply:
    sys.exit(0 if reply.status == 201 and reply.headers["X-Subject-Token"] else 1)
PY
}

# Polls (bounded) until the server is ready; fails early if it exits.
wait_ready() {
  local pid="$1" url="$2" password="$3" deadline=$((SECONDS + start_timeout_s))
  while ((SECONDS < deadline)); do
    kill -0 "${pid}" 2>/dev/null || return 1
    if ready "${url}" "${password}"; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

remove_data() {
  local dir="$1"
  rm -rf "${dir}/fernet-keys" "${dir}/credential-keys"
  rm -f "${dir}/keystone.db" "${dir}/keystone.db-journal" "${dir}/keystone.db-wal" \
    "${dir}/keystone.db-shm" "${dir}/keystone.conf" \
    "${dir}/env" "${dir}/env.tmp" "${dir}/pid" "${dir}"/core "${dir}"/core.*
}

stop() {
  local dir="$1" pid
  [[ -d "${dir}" ]] || return 0
  if pid="$(running_pid "${dir}" "${wsgi_app}")"; then
    kill -CONT "${pid}" 2>/dev/null || true  # A test may have left it stopped.
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
      kill -KILL "${pid}" 2>/dev/null || true
      for _ in $(seq 1 50); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
      done
    fi
  fi
  remove_data "${dir}"
}

start() {
  local dir="$1" pid port url password attempt ready
  mkdir -p "${dir}"
  dir="$(cd "${dir}" && pwd)"  # The configuration and the SQLite URL need an absolute path.
  if pid="$(running_pid "${dir}" "${wsgi_app}")"; then
    die "a server recorded in ${dir} is already running (PID ${pid}); stop it first"
  fi
  stop "${dir}"  # Leftovers of a crashed run.
  rm -f "${dir}/keystone.log" "${dir}/setup.log"
  password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

  # The free port can be taken between picking and binding: try a few. The port is in the
  # bootstrapped catalog, so each attempt starts from an empty database.
  for attempt in 1 2 3; do
    port="$(free_ports 1)"
    url="http://127.0.0.1:${port}/v3"
    remove_data "${dir}"
    write_config "${dir}"
    if ! setup_keystone "${dir}" "${password}" "${url}"; then
      tail -n 20 "${dir}/setup.log" >&2 || true
      stop "${dir}"
      die "keystone-manage failed (see ${dir}/setup.log)"
    fi
    # --need-app: exit if Keystone fails to load rather than answer 500s. --die-on-term: SIGTERM
    # exits (it would reload). --skip-atexit-teardown: no interpreter teardown on exit, where
    # a library aborts ("terminate called ... Accessing state after destruction").
    # --chdir: a core file, if any, lands in DIR and goes with the data.
    OS_KEYSTONE_CONFIG_FILES="${dir}/keystone.conf" setsid "${uwsgi_bin}" \
      --plugin python3 --wsgi-file "${wsgi_app}" --need-app --single-interpreter \
      --http-socket "127.0.0.1:${port}" --processes 1 --threads 1 \
      --add-header "Connection: close" --buffer-size 65535 \
      --die-on-term --skip-atexit-teardown --chdir "${dir}" \
      --ignore-sigpipe --ignore-write-errors --disable-write-exception \
      --logto "${dir}/keystone.log" \
      --log-format 'request %(method) %(uri) => %(status) %(msecs) ms' \
      >/dev/null 2>&1 </dev/null &
    pid=$!
    echo "${pid}" >"${dir}/pid"
    ready=0
    if wait_ready "${pid}" "${url}" "${password}"; then
      ready=1
      break
    fi
    echo "test_server_keystone: start attempt ${attempt} failed" >&2
    tail -n 20 "${dir}/keystone.log" >&2 2>/dev/null || true
    stop "${dir}"
  done
  [[ "${ready}" -eq 1 ]] || die "could not start Keystone"

  {
    echo "CLINKER_TEST_KEYSTONE_URL=${url}"
    echo "CLINKER_TEST_KEYSTONE_ADMIN_USER=${admin_user}"
    echo "CLINKER_TEST_KEYSTONE_ADMIN_PASSWORD=${password}"
    echo "CLINKER_TEST_KEYSTONE_ADMIN_PROJECT=${admin_project}"
    echo "CLINKER_TEST_KEYSTONE_REGION=${region}"
    echo "CLINKER_TEST_KEYSTONE_TOKEN_EXPIRATION_S=${token_expiration_s}"
    echo "CLINKER_TEST_KEYSTONE_LOG=${dir}/keystone.log"
  } >"${dir}/env.tmp"
  mv "${dir}/env.tmp" "${dir}/env"
  echo "test_server_keystone: Keystone running on ${url} (PID ${pid})"
}

[[ $# -eq 2 ]] || usage
[[ -x "${uwsgi_bin}" ]] || die "uwsgi not found at ${uwsgi_bin} (Debian package uwsgi-core)"
[[ -f /usr/lib/uwsgi/plugins/python3_plugin.so ]] ||
  die "uwsgi's python3 plugin not found (Debian package uwsgi-plugin-python3)"
[[ -f "${wsgi_app}" ]] || die "${wsgi_app} not found (Debian package keystone)"
[[ -x "${keystone_python}" ]] || die "${keystone_python} not found"
command -v python3 >/dev/null || die "python3 not found"
[[ "${token_expiration_s}" =~ ^[1-9][0-9]*$ ]] ||
  die "CLINKER_KEYSTONE_TOKEN_EXPIRATION_S must be a positive number of seconds"

case "$1" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
