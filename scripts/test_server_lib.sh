# Shared by scripts/test_server_<engine>.sh (sourced, not run): the pieces every throwaway test
# server needs.

# The PID recorded in DIR/pid, if that process is alive and its command line contains PATTERN
# (a recycled PID belongs to someone else). Prints it; returns 1 otherwise.
running_pid() {
  local dir="$1" pattern="$2" pid cmdline
  [[ -f "${dir}/pid" ]] || return 1
  pid="$(cat "${dir}/pid")"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  kill -0 "${pid}" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null || true)"
  [[ "${cmdline}" == *"${pattern}"* ]] || return 1
  echo "${pid}"
}

# Prints COUNT distinct ports free on ADDRESS (default 127.0.0.1; 0.0.0.0 for every address)
# right now, from a range below the kernel's ephemeral range so that no outgoing connection takes
# them in the meantime.
free_ports() {
  python3 - "$1" "${2:-127.0.0.1}" <<'PY'
import random, socket, sys
count, address, held, ports = int(sys.argv[1]), sys.argv[2], [], []
for _ in range(2000):
    if len(ports) == count:
        break
    port = random.randrange(20000, 32000)
    if port in ports:
        continue
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((address, port))
    except OSError:
        sock.close()
        continue
    held.append(sock)
    ports.append(port)
if len(ports) != count:
    sys.exit("no free ports")
print(" ".join(map(str, ports)))
PY
}
