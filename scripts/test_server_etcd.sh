#!/usr/bin/env bash
# Throwaway single-member etcd 3.4 for tests, run as a plain process (no init system), started and
# stopped by the CTest fixture "etcd".
#
# Usage:
#   test_server_etcd.sh start DIR   start etcd on two free 127.0.0.1 ports (client, peer); writes
#                                   DIR/env (CLINKER_TEST_ETCD_HOST, CLINKER_TEST_ETCD_PORT) and
#                                   DIR/pid
#   test_server_etcd.sh stop DIR    stop it (SIGTERM, then SIGKILL by PID) and remove its data
#
# Contract:
# - start refuses (exit 1) while the server recorded in DIR is running; a stale record left by a
#   crashed run is cleaned up first. It waits at most about 30 s for /health to answer true, and
#   fails (after cleaning up) if it does not.
# - stop is idempotent: stopping a stopped or never started DIR succeeds.
# - Only the process this script started is signalled, by its PID.
# - The data lives in DIR/data and is thrown away by stop.
set -euo pipefail
# shellcheck source=scripts/test_server_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/test_server_lib.sh"

readonly etcd_bin="${CLINKER_ETCD_BIN:-/usr/bin/etcd}"
readonly start_timeout_s=30

die() {
  echo "test_server_etcd: $*" >&2
  exit 1
}

usage() {
  die "usage: $0 start|stop DIR"
}

healthy() {
  local port="$1"
  python3 - "${port}" <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1) as reply:
    sys.exit(0 if json.load(reply).get("health") == "true" else 1)
PY
}

stop() {
  local dir="$1" pid
  [[ -d "${dir}" ]] || return 0
  if pid="$(running_pid "${dir}" etcd)"; then
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
  rm -rf "${dir}/data"
  rm -f "${dir}/env" "${dir}/pid"
}

start() {
  local dir="$1" pid ports client peer attempt ready
  mkdir -p "${dir}"
  if pid="$(running_pid "${dir}" etcd)"; then
    die "a server recorded in ${dir} is already running (PID ${pid}); stop it first"
  fi
  stop "${dir}"  # Leftovers of a crashed run.

  # The free ports can be taken between picking and binding: try a few.
  for attempt in 1 2 3 4 5; do
    read -r client peer <<<"$(free_ports 2)"
    rm -rf "${dir}/data"
    setsid "${etcd_bin}" --name clinker-test --data-dir "${dir}/data" \
      --listen-client-urls "http://127.0.0.1:${client}" \
      --advertise-client-urls "http://127.0.0.1:${client}" \
      --listen-peer-urls "http://127.0.0.1:${peer}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${peer}" \
      --initial-cluster "clinker-test=http://127.0.0.1:${peer}" --initial-cluster-state new \
      --log-level warn --logger zap --log-outputs "${dir}/etcd.log" \
      >"${dir}/stdout.log" 2>&1 </dev/null &
    pid=$!
    echo "${pid}" >"${dir}/pid"
    ready=0
    for _ in $(seq 1 $((start_timeout_s * 10))); do
      if ! kill -0 "${pid}" 2>/dev/null; then
        break
      fi
      if healthy "${client}"; then
        ready=1
        break
      fi
      sleep 0.1
    done
    if [[ "${ready}" -eq 1 ]]; then
      break
    fi
    echo "test_server_etcd: start attempt ${attempt} failed" >&2
    tail -n 20 "${dir}/etcd.log" "${dir}/stdout.log" >&2 2>/dev/null || true
    stop "${dir}"
    mkdir -p "${dir}"
  done
  [[ "${ready}" -eq 1 ]] || die "could not start etcd"

  printf 'CLINKER_TEST_ETCD_HOST=127.0.0.1\nCLINKER_TEST_ETCD_PORT=%s\n' "${client}" \
    >"${dir}/env.tmp"
  mv "${dir}/env.tmp" "${dir}/env"
  echo "test_server_etcd: etcd running on 127.0.0.1:${client} (PID ${pid})"
}

[[ $# -eq 2 ]] || usage
[[ -x "${etcd_bin}" ]] || die "etcd not found at ${etcd_bin} (Debian package etcd-server)"
command -v python3 >/dev/null || die "python3 not found"

case "$1" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
