#!/usr/bin/env bash
# Throwaway PostgreSQL 15 server for tests, run as a plain process (no init system, no cluster
# tooling), started and stopped by the CTest fixture "postgres".
#
# Usage:
#   test_server_postgres.sh start DIR   initdb + start on a free 127.0.0.1 port; writes
#                                       DIR/env (CLINKER_TEST_PG_URI=...) and DIR/pid
#   test_server_postgres.sh stop DIR    stop it (fast shutdown, then SIGKILL by PID) and remove
#                                       its data
#
# Contract:
# - Runs as root (as CI does) and runs the server as the postgres user: PostgreSQL refuses root.
# - start refuses (exit 1) while the server recorded in DIR is running; a stale record left by a
#   crashed run is cleaned up first. It waits at most about 60 s for the server to accept
#   connections, and fails (after cleaning up) if it does not.
# - stop is idempotent: stopping a stopped or never started DIR succeeds.
# - Only the processes this script started are signalled, by their PID.
# - Durability is off (fsync, synchronous_commit, full_page_writes): the data is thrown away.
set -euo pipefail
# shellcheck source=scripts/test_server_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/test_server_lib.sh"

readonly pg_bin="${CLINKER_PG_BIN:-/usr/lib/postgresql/15/bin}"
readonly max_connections=300

die() {
  echo "test_server_postgres: $*" >&2
  exit 1
}

usage() {
  die "usage: $0 start|stop DIR"
}

as_postgres() {
  runuser -u postgres -- "$@"
}

# Where the data lives: DIR/pg when the postgres user can reach DIR, else a private directory
# under /tmp recorded in DIR/pgroot (every directory above the data must be traversable by it).
pg_root() {
  local dir="$1"
  if [[ -f "${dir}/pgroot" ]]; then
    cat "${dir}/pgroot"
  else
    echo "${dir}/pg"
  fi
}

# Kills the children of a (dead or dying) postmaster, then the postmaster, by PID.
kill_server() {
  local pid="$1" child
  for child in $(ps -o pid= --ppid "${pid}" 2>/dev/null || true); do
    kill -KILL "${child}" 2>/dev/null || true
  done
  kill -KILL "${pid}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "test_server_postgres: PID ${pid} survived SIGKILL" >&2
}

stop() {
  local dir="$1" root pid
  [[ -d "${dir}" ]] || return 0
  root="$(pg_root "${dir}")"
  if pid="$(running_pid "${dir}" postgres)"; then
    if [[ -d "${root}/data" ]]; then
      as_postgres "${pg_bin}/pg_ctl" -D "${root}/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        true
    fi
    if kill -0 "${pid}" 2>/dev/null; then
      kill_server "${pid}"
    fi
  fi
  rm -rf "${root}"
  rm -f "${dir}/env" "${dir}/pid" "${dir}/pgroot"
}

start() {
  local dir="$1" root port pid attempt log
  mkdir -p "${dir}"
  if pid="$(running_pid "${dir}" postgres)"; then
    die "a server recorded in ${dir} is already running (PID ${pid}); stop it first"
  fi
  stop "${dir}"  # Leftovers of a crashed run.

  if runuser -u postgres -- test -x "${dir}"; then
    root="${dir}/pg"
    mkdir -p "${root}"
  else
    root="$(mktemp -d /tmp/clinker-test-pg-XXXXXX)"
    echo "${root}" >"${dir}/pgroot"
  fi
  chown postgres:postgres "${root}"
  chmod 700 "${root}"
  log="${root}/server.log"

  # -N: no fsync of the new cluster; trust: loopback only, throwaway data.
  if ! as_postgres "${pg_bin}/initdb" -D "${root}/data" -U postgres --auth=trust -E UTF8 \
    --no-locale -N >"${root}/initdb.log" 2>&1; then
    cat "${root}/initdb.log" >&2
    stop "${dir}"
    die "initdb failed"
  fi

  # The free port can be taken between picking and binding: try a few.
  for attempt in 1 2 3 4 5; do
    port="$(free_ports 1)"
    if as_postgres "${pg_bin}/pg_ctl" -D "${root}/data" -l "${log}" -w -t 60 \
      -o "-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
          -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
          -c max_connections=${max_connections}" start >/dev/null 2>&1; then
      break
    fi
    if [[ -f "${root}/data/postmaster.pid" ]]; then
      kill_server "$(head -n 1 "${root}/data/postmaster.pid")"
      rm -f "${root}/data/postmaster.pid"
    fi
    port=""
    echo "test_server_postgres: start attempt ${attempt} failed" >&2
  done
  if [[ -z "${port}" ]]; then
    tail -n 20 "${log}" >&2 || true
    stop "${dir}"
    die "could not start PostgreSQL"
  fi
  head -n 1 "${root}/data/postmaster.pid" >"${dir}/pid"

  # pg_ctl -w waited for the postmaster; also prove a client gets in over TCP (bounded).
  local ready=0
  for _ in $(seq 1 100); do
    if "${pg_bin}/pg_isready" -q -h 127.0.0.1 -p "${port}" -U postgres -d postgres; then
      ready=1
      break
    fi
    sleep 0.1
  done
  if [[ "${ready}" -ne 1 ]]; then
    tail -n 20 "${log}" >&2 || true
    stop "${dir}"
    die "PostgreSQL on port ${port} did not accept connections"
  fi

  echo "CLINKER_TEST_PG_URI=postgresql://postgres@127.0.0.1:${port}/postgres" >"${dir}/env.tmp"
  mv "${dir}/env.tmp" "${dir}/env"
  echo "test_server_postgres: PostgreSQL running on 127.0.0.1:${port} (PID $(cat "${dir}/pid"))"
}

[[ $# -eq 2 ]] || usage
[[ "$(id -u)" -eq 0 ]] || die "must run as root (it runs the server as the postgres user)"
command -v runuser >/dev/null || die "runuser not found"
[[ -x "${pg_bin}/postgres" ]] || die "PostgreSQL 15 not found in ${pg_bin}"

case "$1" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
