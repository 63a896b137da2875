#!/usr/bin/env bash
# Throwaway RabbitMQ for tests: `start DIR` starts one broker node, `stop DIR` stops it.
#
# start DIR
#   Wipes DIR (stopping a node a previous run left there first), then starts a RabbitMQ node
#   whose every file lives under DIR: data, logs, config, Erlang cookie and $HOME. Nothing is
#   shared with a system RabbitMQ or any other node on the machine:
#   - ports: the AMQP port, the Erlang distribution port and the node's own epmd port are picked
#     free at start (loopback only); the box's shared epmd on 4369 is never used or touched;
#   - node name: clinker-test-<pid of this script>@localhost;
#   - the real scripts in /usr/lib/rabbitmq/bin are called: the Debian wrappers in /usr/sbin
#     switch to the rabbitmq user and its shared $HOME and cookie when run as root;
#   - management plugin off; guest/guest may log in from loopback (loopback_users = none).
#   Waits (bounded) until the node runs its applications, then writes:
#     DIR/env  CLINKER_TEST_RMQ_HOST, _PORT, _USER, _PASSWORD (KEY=VALUE lines, read by tests)
#     DIR/pid  the broker's PID (also DIR/group.pid: its process group; DIR/epmd.pid)
#     DIR/rabbitmqctl  rabbitmqctl bound to this node, for debugging and for tests that need it
#   Exit status 0 only if the broker accepts AMQP connections.
#
# stop DIR
#   Stops the node (rabbitmqctl stop, bounded), kills it by PID if it does not go, then kills the
#   node's private epmd by PID. Idempotent: stopping a stopped or never started DIR succeeds.
#
# Works as root (CI) and as an ordinary user. Needs: rabbitmq-server (Debian), python3.
set -euo pipefail
# shellcheck source=scripts/test_server_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/test_server_lib.sh"

readonly RMQ_BIN=/usr/lib/rabbitmq/bin
readonly START_TIMEOUT_S=120
readonly STOP_TIMEOUT_S=30

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}

log() {
  echo "test_server_rabbitmq: $*" >&2
}

# True if PID $1 is alive and its command line mentions $2 (guards against PID reuse).
pid_is() {
  local pid="$1" marker="$2"
  [[ -n "${pid}" && -r "/proc/${pid}/cmdline" ]] &&
    tr '\0' ' ' < "/proc/${pid}/cmdline" | grep -qF -- "${marker}"
}

# Waits up to $2 seconds for PID $1 to go away; true if it did.
wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while kill -0 "${pid}" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.1
  done
  return 0
}

# Exports the environment that both the node and its CLI need, from the saved DIR/node.env.
load_node_env() {
  # shellcheck source=/dev/null
  . "${dir}/node.env"
  export HOME RABBITMQ_NODENAME RABBITMQ_NODE_IP_ADDRESS RABBITMQ_NODE_PORT RABBITMQ_DIST_PORT
  export ERL_EPMD_PORT ERL_EPMD_ADDRESS RABBITMQ_MNESIA_BASE RABBITMQ_LOG_BASE RABBITMQ_PID_FILE
  export RABBITMQ_CONFIG_FILE RABBITMQ_ADVANCED_CONFIG_FILE RABBITMQ_ENABLED_PLUGINS_FILE
  export RABBITMQ_CONF_ENV_FILE RABBITMQ_CTL_DIST_PORT_MIN RABBITMQ_CTL_DIST_PORT_MAX
  export ERL_CRASH_DUMP
}

stop_node() {
  if [[ ! -f "${dir}/node.env" ]]; then
    return 0
  fi
  load_node_env
  local pid="" group="" epmd_pid=""
  if [[ -f "${dir}/pid" ]]; then
    pid="$(cat "${dir}/pid")"
  elif [[ -f "${RABBITMQ_PID_FILE}" ]]; then
    pid="$(cat "${RABBITMQ_PID_FILE}")"
  fi
  [[ -f "${dir}/group.pid" ]] && group="$(cat "${dir}/group.pid")"
  [[ -f "${dir}/epmd.pid" ]] && epmd_pid="$(cat "${dir}/epmd.pid")"

  # The VM's command line names our $HOME, which tells it from a process that reused the PID.
  if pid_is "${pid}" "${dir}/home"; then
    # Clean stop first: the node writes its queues' state to disk.
    timeout "${STOP_TIMEOUT_S}" "${RMQ_BIN}/rabbitmqctl" -n "${RABBITMQ_NODENAME}" -q \
      stop "${RABBITMQ_PID_FILE}" >/dev/null 2>&1 || true
    if ! wait_gone "${pid}" 5; then
      log "node ${RABBITMQ_NODENAME} (pid ${pid}) did not stop; killing it"
      kill -KILL "${pid}" 2>/dev/null || true
      wait_gone "${pid}" 5 || log "pid ${pid} survived SIGKILL"
    fi
  fi
  # What is left of the node's session (setsid): the start script, erl_child_setup, or a VM that
  # never wrote its PID file because it died or hung while starting.
  if [[ -n "${group}" ]] &&
    { pid_is "${group}" "rabbitmq-server" || pgrep -g "${group}" -f "${dir}/home" >/dev/null; }; then
    kill -TERM -- "-${group}" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while pgrep -g "${group}" >/dev/null && ((SECONDS < deadline)); do
      sleep 0.1
    done
    kill -KILL -- "-${group}" 2>/dev/null || true
  fi
  if pid_is "${epmd_pid}" "-port ${ERL_EPMD_PORT}"; then
    kill -TERM "${epmd_pid}" 2>/dev/null || true
    wait_gone "${epmd_pid}" 5 || kill -KILL "${epmd_pid}" 2>/dev/null || true
  fi
  rm -f "${dir}/pid" "${dir}/group.pid" "${dir}/epmd.pid" "${dir}/env"
}

start_node() {
  if [[ ! -x "${RMQ_BIN}/rabbitmq-server" ]]; then
    log "${RMQ_BIN}/rabbitmq-server not found: install the rabbitmq-server package"
    exit 1
  fi
  stop_node
  if [[ "${dir}" == "/" || "${dir}" == "${HOME:-/}" ]]; then
    log "refusing to wipe ${dir}"
    exit 2
  fi
  rm -rf "${dir}"
  mkdir -p "${dir}/home" "${dir}/log" "${dir}/mnesia"
  local started_at=${SECONDS}

  local ports amqp_port dist_port epmd_port
  ports="$(free_ports 3 0.0.0.0)"
  read -r amqp_port dist_port epmd_port <<<"${ports}"

  cat >"${dir}/node.env" <<ENV
HOME='${dir}/home'
RABBITMQ_NODENAME='clinker-test-$$@localhost'
RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
RABBITMQ_NODE_PORT=${amqp_port}
RABBITMQ_DIST_PORT=${dist_port}
ERL_EPMD_PORT=${epmd_port}
ERL_EPMD_ADDRESS=127.0.0.1
RABBITMQ_MNESIA_BASE='${dir}/mnesia'
RABBITMQ_LOG_BASE='${dir}/log'
RABBITMQ_PID_FILE='${dir}/rabbit.pid'
RABBITMQ_CONFIG_FILE='${dir}/rabbitmq.conf'
RABBITMQ_ADVANCED_CONFIG_FILE='${dir}/advanced.config'
RABBITMQ_ENABLED_PLUGINS_FILE='${dir}/enabled_plugins'
RABBITMQ_CONF_ENV_FILE='${dir}/rabbitmq-env.conf'
RABBITMQ_CTL_DIST_PORT_MIN=0
RABBITMQ_CTL_DIST_PORT_MAX=0
ERL_CRASH_DUMP='${dir}/log/erl_crash.dump'
ENV
  load_node_env

  echo '[].' >"${RABBITMQ_ENABLED_PLUGINS_FILE}"
  echo '[].' >"${RABBITMQ_ADVANCED_CONFIG_FILE}"
  : >"${RABBITMQ_CONF_ENV_FILE}"  # Keeps /etc/rabbitmq/rabbitmq-env.conf out.
  head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9 >"${HOME}/.erlang.cookie"
  chmod 400 "${HOME}/.erlang.cookie"
  cat >"${RABBITMQ_CONFIG_FILE}" <<CONF
listeners.tcp.default = 127.0.0.1:${amqp_port}
distribution.listener.interface = 127.0.0.1
loopback_users = none
log.console = false
log.file.level = info
CONF

  # Our own epmd, started before the node so the node registers with it instead of spawning a
  # daemonized one whose PID we would not know.
  setsid epmd -port "${epmd_port}" -address 127.0.0.1 >"${dir}/log/epmd.log" 2>&1 </dev/null &
  echo $! >"${dir}/epmd.pid"

  # The start script stays as the parent of the VM; it leads the node's own session and group.
  setsid "${RMQ_BIN}/rabbitmq-server" >"${dir}/log/stdout.log" 2>&1 </dev/null &
  echo $! >"${dir}/group.pid"

  cat >"${dir}/rabbitmqctl" <<CTL
#!/usr/bin/env bash
# rabbitmqctl bound to the test node in this directory. Refuses to run without its node.env:
# with the defaults it would reach for the shared epmd on port 4369 and start one there.
set -euo pipefail
set -a
. '${dir}/node.env'
set +a
exec '${RMQ_BIN}/rabbitmqctl' -n "\${RABBITMQ_NODENAME}" "\$@"
CTL
  chmod +x "${dir}/rabbitmqctl"

  # `rabbitmqctl wait` polls until the node runs its applications; a node that dies while booting
  # ends its start script, which cuts the wait short instead of letting it run to the timeout.
  timeout $((START_TIMEOUT_S + 10)) "${RMQ_BIN}/rabbitmqctl" -n "${RABBITMQ_NODENAME}" -q \
    wait --timeout "${START_TIMEOUT_S}" "${RABBITMQ_PID_FILE}" >"${dir}/log/wait.log" 2>&1 &
  local waiter=$! group started=0
  group="$(cat "${dir}/group.pid")"
  while kill -0 "${waiter}" 2>/dev/null; do
    if ! kill -0 "${group}" 2>/dev/null; then
      kill "${waiter}" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  if wait "${waiter}" && [[ -s "${RABBITMQ_PID_FILE}" ]]; then
    started=1
  fi
  if ((started == 0)); then
    log "node ${RABBITMQ_NODENAME} did not start; last lines of its logs:"
    tail -n 20 "${dir}/log/wait.log" "${dir}/log/stdout.log" "${dir}/log/"*.log >&2 || true
    stop_node
    exit 1
  fi

  local pid
  pid="$(cat "${RABBITMQ_PID_FILE}")"
  echo "${pid}" >"${dir}/pid"

  # `wait` returns once the applications run; make sure the AMQP listener answers as well.
  local deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/127.0.0.1/${amqp_port}") 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "AMQP port ${amqp_port} does not accept connections"
      stop_node
      exit 1
    fi
    sleep 0.1
  done

  cat >"${dir}/env.tmp" <<ENV
CLINKER_TEST_RMQ_HOST=127.0.0.1
CLINKER_TEST_RMQ_PORT=${amqp_port}
CLINKER_TEST_RMQ_USER=guest
CLINKER_TEST_RMQ_PASSWORD=guest
ENV
  mv "${dir}/env.tmp" "${dir}/env"
  log "node ${RABBITMQ_NODENAME} (pid ${pid}) on 127.0.0.1:${amqp_port}," \
    "distribution ${dist_port}, epmd ${epmd_port}: started in $((SECONDS - started_at)) s"
}

[[ $# -eq 2 ]] || usage
case "$1" in
  start)
    mkdir -p "$2"
    dir="$(cd "$2" && pwd)"
    start_node
    ;;
  stop)
    [[ -d "$2" ]] || exit 0
    dir="$(cd "$2" && pwd)"
    stop_node
    ;;
  *) usage ;;
esac
