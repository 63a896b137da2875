#!/usr/bin/env bash
# A whole Active/Active Clinker cluster on this machine, in the foreground, for trying it out.
#
# Usage: scripts/cluster.sh            (or: make cluster)
#   Environment: CLINKERD (default build/release/clinkerd), LISTEN (127.0.0.1), PORT (8776),
#   KEEP=1 keeps the temp dir (logs, data) after the stop, DRIVER_DELAY_MS (0) slows every
#   back-end operation of the volume nodes so that a job can be caught running.
#
# What it starts, each as a plain process in one temp dir, with its own log file:
#   - PostgreSQL, RabbitMQ and, when etcd is installed, etcd, through
#     scripts/test_server_<engine>.sh (free loopback ports, data under the temp dir);
#   - one clinkerd with the API (LISTEN:PORT), one with the scheduler (it sends every volume to
#     the cluster);
#   - three volume-only clinkerd nodes, hosts node1..node3, of one cluster "cluster1": they share
#     the cluster's job queue and the volume directory (the file back-end stands for shared
#     storage), and lock through etcd, or without etcd through one shared state dir.
# Then it prints where everything is and how to use the cinder CLI, and waits.
#
# Ctrl-C or SIGTERM stops everything: the daemons by PID (SIGTERM, SIGKILL after a bounded wait),
# the servers through their scripts' stop, then removes the temp dir unless KEEP=1. Every
# process is started in its own session, so a Ctrl-C reaches only this script, which stops them
# in order. A failed start stops what already runs the same way.
#
# Needs root (PostgreSQL runs as the postgres user), postgresql-15, rabbitmq-server, curl and
# optionally etcd-server: scripts/setup.sh installs them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo
readonly clinkerd="${CLINKERD:-${repo}/build/release/clinkerd}"
readonly listen="${LISTEN:-127.0.0.1}"
readonly port="${PORT:-8776}"
readonly keep="${KEEP:-0}"
readonly driver_delay_ms="${DRIVER_DELAY_MS:-0}"
readonly cluster=cluster1
readonly nodes=(node1 node2 node3)
readonly project=0a1b2c3d4e5f40718293a4b5c6d7e8f9
readonly start_timeout_s=30
readonly stop_timeout_s=20
readonly psql=/usr/lib/postgresql/15/bin/psql

die() {
  echo "cluster: $*" >&2
  exit 1
}

[[ -x "${clinkerd}" ]] || die "no clinkerd at ${clinkerd} (build it: make build, or set CLINKERD)"
[[ "$(id -u)" -eq 0 ]] || die "must run as root (PostgreSQL runs as the postgres user)"
command -v curl >/dev/null || die "curl not found: run scripts/setup.sh"
[[ -x "${psql}" ]] || die "PostgreSQL 15 not found: run scripts/setup.sh"
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || die "RabbitMQ not found: run scripts/setup.sh"
use_etcd=0
if command -v etcd >/dev/null && [[ -f "${repo}/scripts/test_server_etcd.sh" ]]; then
  use_etcd=1
fi

root="$(mktemp -d "${TMPDIR:-/tmp}/clinker-cluster-XXXXXX")"
mkdir -p "${root}/logs" "${root}/volumes"
declare -A pids=()     # name -> PID of a running daemon
declare -A reported=() # name -> 1 once its unexpected exit was reported
servers=()             # engines started, in order
stopping=0

stop_daemon() {
  local name="$1" pid="${pids[$1]}"
  kill -TERM "${pid}" 2>/dev/null || true
}

# Waits (bounded) for every daemon asked to stop; SIGKILLs any still running after the bound.
reap_daemons() {
  local deadline=$((SECONDS + stop_timeout_s)) name pid
  for name in "${!pids[@]}"; do
    pid="${pids[${name}]}"
    while kill -0 "${pid}" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
      echo "cluster: ${name} (PID ${pid}) still running after ${stop_timeout_s} s: SIGKILL" >&2
      kill -KILL "${pid}" 2>/dev/null || true
    fi
    wait "${pid}" 2>/dev/null || true
    unset "pids[${name}]"
  done
}

cleanup() {
  local status=$? name i
  trap '' INT TERM
  ((stopping)) && return
  stopping=1
  echo "cluster: stopping" >&2
  # Volume nodes first (they finish their running jobs), then the scheduler and the API.
  for name in "${nodes[@]}"; do
    [[ -n "${pids[${name}]:-}" ]] && stop_daemon "${name}"
  done
  for name in scheduler api; do
    [[ -n "${pids[${name}]:-}" ]] && stop_daemon "${name}"
  done
  reap_daemons
  echo "cluster: daemons stopped" >&2
  for ((i = ${#servers[@]} - 1; i >= 0; i--)); do
    bash "${repo}/scripts/test_server_${servers[i]}.sh" stop "${root}/${servers[i]}" \
      >>"${root}/logs/${servers[i]}.log" 2>&1 ||
      echo "cluster: stopping ${servers[i]} failed (see ${root}/logs/${servers[i]}.log)" >&2
    echo "cluster: ${servers[i]} stopped" >&2
  done
  if [[ "${keep}" == 1 ]]; then
    echo "cluster: kept ${root}" >&2
  else
    rm -rf "${root}"
  fi
  echo "cluster: stopped" >&2
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_server() {
  local engine="$1"
  echo "cluster: starting ${engine}..." >&2
  servers+=("${engine}")
  if ! setsid bash "${repo}/scripts/test_server_${engine}.sh" start "${root}/${engine}" \
    >"${root}/logs/${engine}.log" 2>&1 </dev/null; then
    tail -n 20 "${root}/logs/${engine}.log" >&2
    die "${engine} did not start"
  fi
}

env_value() {
  sed -n "s/^$2=//p" "${root}/$1/env"
}

# Starts one clinkerd in its own session; its PID goes into pids[name].
start_daemon() {
  local name="$1"
  shift
  : >>"${root}/logs/${name}.log"  # Exists before the child opens it: wait_daemon greps it.
  setsid "${clinkerd}" "$@" </dev/null >>"${root}/logs/${name}.log" 2>&1 &
  pids[${name}]=$!
}

# Waits (bounded) until `check` succeeds while daemon `name` runs.
wait_daemon() {
  local name="$1" check="$2" deadline=$((SECONDS + start_timeout_s))
  until eval "${check}"; do
    if ! kill -0 "${pids[${name}]}" 2>/dev/null; then
      tail -n 20 "${root}/logs/${name}.log" >&2
      unset "pids[${name}]"
      die "${name} exited during start-up"
    fi
    ((SECONDS < deadline)) || {
      tail -n 20 "${root}/logs/${name}.log" >&2
      die "${name} not ready after ${start_timeout_s} s"
    }
    sleep 0.1
  done
}

start_server postgres
start_server rabbitmq
((use_etcd)) && start_server etcd

pg_uri="$(env_value postgres CLINKER_TEST_PG_URI)"
pg_base="${pg_uri%/*}"
"${psql}" -X -q -v ON_ERROR_STOP=1 -d "${pg_uri}" -c "CREATE DATABASE clinker" </dev/null
database_url="${pg_base}/clinker"
queue_url="amqp://$(env_value rabbitmq CLINKER_TEST_RMQ_USER):$(env_value rabbitmq \
  CLINKER_TEST_RMQ_PASSWORD)@$(env_value rabbitmq CLINKER_TEST_RMQ_HOST):$(env_value rabbitmq \
  CLINKER_TEST_RMQ_PORT)/"
common=(--cluster "${cluster}" --database-url "${database_url}" --queue-url "${queue_url}")
lock_args=()
locks="file locks in ${root}/volume-state/locks (one machine only)"
if ((use_etcd)); then
  lock_url="etcd://$(env_value etcd CLINKER_TEST_ETCD_HOST)"
  lock_url+=":$(env_value etcd CLINKER_TEST_ETCD_PORT)"
  lock_args=(--lock-url "${lock_url}")
  locks="etcd at ${lock_url#etcd://}"
fi

echo "cluster: starting the API on ${listen}:${port}..." >&2
start_daemon api --role api --host api1 "${common[@]}" --listen "${listen}" --port "${port}" \
  --state-dir "${root}/api"
wait_daemon api "curl -s -o /dev/null -w '%{http_code}' 'http://${listen}:${port}/' \
  2>/dev/null | grep -q 300"
echo "cluster: starting the scheduler..." >&2
start_daemon scheduler --role scheduler --host sched1 "${common[@]}" \
  --state-dir "${root}/scheduler"
wait_daemon scheduler "grep -q clinkerd.started '${root}/logs/scheduler.log'"

for name in "${nodes[@]}"; do
  echo "cluster: starting volume node ${name}..." >&2
  if ((use_etcd)); then
    state_dir="${root}/${name}"
  else
    state_dir="${root}/volume-state"  # Shared: the nodes lock through files in it.
  fi
  start_daemon "${name}" --role volume --host "${name}" "${common[@]}" "${lock_args[@]}" \
    --state-dir "${state_dir}" --volume-dir "${root}/volumes" \
    --driver-delay-ms "${driver_delay_ms}"
  wait_daemon "${name}" "grep -q clinkerd.started '${root}/logs/${name}.log'"
done

endpoint="http://${listen}:${port}/v3/${project}"
removes=" and removes the temp dir"
[[ "${keep}" == 1 ]] && removes=" (KEEP=1: the temp dir stays)"
cat <<EOF

Clinker cluster running (temp dir ${root}):
  API              ${listen}:${port}   PID ${pids[api]}   log ${root}/logs/api.log
  scheduler        cluster ${cluster}   PID ${pids[scheduler]}   log ${root}/logs/scheduler.log
$(for name in "${nodes[@]}"; do
  printf '  volume %-9s cluster %s   PID %s   log %s\n' "${name}" "${cluster}" "${pids[${name}]}" \
    "${root}/logs/${name}.log"
done)
  PostgreSQL       ${database_url}
  RabbitMQ         ${queue_url} (rabbitmqctl: ${root}/rabbitmq/rabbitmqctl)
  locks            ${locks}
  volumes          ${root}/volumes (shared by the nodes)

Try it (noauth: the token is <user>:<project>):
  alias cinder="cinder --os-auth-type noauth --os-user-id demo --os-project-id ${project} \\
    --os-endpoint ${endpoint} --os-volume-api-version 3.0"
  cinder create 1 --name demo; cinder list; cinder delete demo
  curl -s -H "X-Auth-Token: demo:${project}" ${endpoint}/volumes/detail
  curl -s -H "X-Auth-Token: demo:${project}" ${endpoint}/os-services
Takeover: kill -9 a volume node's PID while it runs a job (DRIVER_DELAY_MS=2000 helps); another
node of ${cluster} finishes or settles it.

Ctrl-C (or SIGTERM to PID $$) stops everything${removes}.
EOF

# Wait for the signal; report (once) any daemon that exits on its own.
while true; do
  for name in "${!pids[@]}"; do
    if [[ -z "${reported[${name}]:-}" ]] && ! kill -0 "${pids[${name}]}" 2>/dev/null; then
      reported[${name}]=1
      code=0
      wait "${pids[${name}]}" || code=$?
      echo "cluster: ${name} (PID ${pids[${name}]}) exited with ${code}; see" \
        "${root}/logs/${name}.log" >&2
    fi
  done
  sleep 1 &
  wait $! || true
done
