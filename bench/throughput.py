#!/usr/bin/python3
"""bench/throughput.py: create+delete throughput of the embedded default and of a cluster.

Method: runs bench_create_latency (status polled every --poll-us, zero driver delay) at each client
count of --clients (about --cycles create+delete cycles per run, split over the clients) against
three set-ups in turn, each run on fresh state and fresh daemons:
  (i)   embedded: one clinkerd with every role, SQLite state and queue, file locks;
  (ii)  cluster-1: PostgreSQL + RabbitMQ (+ etcd locks when installed), one clinkerd with the
        API and the scheduler, one volume node of cluster "cluster1";
  (iii) cluster-3: the same with three volume nodes.
The servers are started once through scripts/test_server_*.sh; each cluster set-up gets its own
database and vhost. Prints each run's figures (cycles/s, p50/p99 create->available) and a summary
table with, per cycle, the CPU time of every clinkerd of the set-up (utime + stime from
/proc/<pid>/stat, read before and after the run) and, for the embedded set-up, the database write
transactions (clinker_db_write_transactions_total of GET /metrics, before and after). Both also
count the daemons' background work (heartbeats, capability reports) during the run, which is
small next to thousands of cycles. Every daemon logs at info (a volume node says it is ready only
at that level), so the set-ups compare like with like.

A benchmark: figures are printed, never asserted. Every process is stopped by PID, the servers by
their scripts, also after Ctrl-C or SIGTERM.
"""

import argparse
import http.client
import math
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True

import cluster_env  # noqa: E402

CLUSTER = "cluster1"
BENCH_TIMEOUT_S = 900
# Every client works in one project: Cinder's default quota (10 volumes) would refuse the creates
# of more than 10 clients at once, so every limit is off.
UNLIMITED_QUOTA_CONFIG = ("[quota]\nquota_volumes = -1\nquota_snapshots = -1\n"
                          "quota_gigabytes = -1\nquota_backups = -1\nquota_backup_gigabytes = -1\n"
                          "quota_groups = -1\n")


def quota_config(root):
    path = os.path.join(root, "unlimited-quota.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(UNLIMITED_QUOTA_CONFIG)
    return path


def cpu_seconds(pid):
    """utime + stime of a process, seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open("/proc/%d/stat" % pid, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_transactions(port):
    """clinker_db_write_transactions_total of the daemon's GET /metrics, or None."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10.0)
        try:
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode("utf-8", "replace")
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return None
    match = re.search(r"^clinker_db_write_transactions_total (\d+)$", body, re.MULTILINE)
    return int(match.group(1)) if match else None


def run_bench(bench, port, pid, clients, count, poll_us):
    proc = subprocess.run([
        bench, "--host", "127.0.0.1", "--port",
        str(port), "--pid",
        str(pid), "--clients",
        str(clients), "--count",
        str(count), "--poll-us",
        str(poll_us)
    ],
                          stdin=subprocess.DEVNULL,
                          capture_output=True,
                          text=True,
                          timeout=BENCH_TIMEOUT_S,
                          check=False)
    out = proc.stdout
    figures = {"rc": proc.returncode}
    for key, pattern in (("failures", r"failures=(\d+)"), ("elapsed_s", r"elapsed_s=([\d.]+)"),
                         ("p50", r"p50=([\d.]+)"), ("p99", r"p99=([\d.]+)"),
                         ("max", r"max=([\d.]+)"),
                         ("cycles_per_s", r"create_delete_cycles_per_s=([\d.]+)")):
        match = re.search(pattern, out)
        figures[key] = float(match.group(1)) if match else float("nan")
    return out + proc.stderr, figures


def client_counts(text):
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of client counts >= 1")
    return counts


def main():
    build = os.path.join(cluster_env.REPO, "build", "release")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinkerd", default=os.path.join(build, "clinkerd"))
    parser.add_argument("--bench", default=os.path.join(build, "bench_create_latency"))
    parser.add_argument("--clients", type=client_counts, default=[1, 8, 32, 128],
                        help="client counts of the embedded set-up, comma-separated")
    parser.add_argument("--cluster-clients", type=client_counts, default=[16],
                        help="client counts of the cluster set-ups, comma-separated")
    parser.add_argument("--cycles", type=int, default=2000,
                        help="create+delete cycles per run, split over its clients")
    parser.add_argument("--count", type=int, default=None,
                        help="volumes per client (overrides --cycles)")
    parser.add_argument("--workers", type=int, default=4, help="workers per volume node")
    # bench_create_latency's own default (200 us) makes 16 clients poll the API thousands of
    # times a second, which on a small machine takes the CPU the cluster needs.
    parser.add_argument("--poll-us", type=int, default=2000,
                        help="pause between a client's status polls, microseconds")
    parser.add_argument("--locks", choices=("auto", "etcd", "file"), default="auto",
                        help="cluster locks: etcd when installed (auto), or file locks in a "
                        "shared state dir")
    parser.add_argument("--only", choices=("embedded", "cluster-1", "cluster-3"), action="append",
                        help="run only these set-ups (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    setups = args.only or ["embedded", "cluster-1", "cluster-3"]
    bench = os.path.abspath(args.bench)
    results = []

    def report(setup, env, api, clients):
        count = args.count or max(1, math.ceil(args.cycles / clients))
        print("== %s: %d clients x %d volumes, polling every %d us" %
              (setup, clients, count, args.poll_us))
        sys.stdout.flush()
        pids = [daemon.pid for daemon in env.daemons]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        writes_before = write_transactions(api.port) if setup == "embedded" else None
        output, figures = run_bench(bench, api.port, api.pid, clients, count, args.poll_us)
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        writes_after = write_transactions(api.port) if setup == "embedded" else None
        cycles = clients * count - figures["failures"]
        figures["cpu_ms"] = 1000.0 * cpu / cycles if cycles > 0 else float("nan")
        figures["writes"] = (float(writes_after - writes_before) / cycles
                             if writes_before is not None and writes_after is not None and
                             cycles > 0 else float("nan"))
        print(output.rstrip())
        print("clinkerd_cpu_ms_per_cycle=%.2f write_transactions_per_cycle=%.2f" %
              (figures["cpu_ms"], figures["writes"]))
        sys.stdout.flush()
        results.append((setup, clients, figures))
        env.stop_daemons()

    if "embedded" in setups:
        with cluster_env.ClusterEnv(args.clinkerd, use_servers=False, keep=args.keep) as env:
            for clients in args.clients:
                name = "embedded-%d" % clients
                api = env.start_api(name, [
                    "--config", quota_config(env.root), "--state-dir",
                    os.path.join(env.root, name), "--log-level", "info"
                ])
                report("embedded", env, api, clients)

    cluster_setups = [s for s in setups if s.startswith("cluster-")]
    if cluster_setups:
        use_etcd = {"auto": None, "etcd": True, "file": False}[args.locks]
        with cluster_env.ClusterEnv(args.clinkerd, use_etcd=use_etcd, keep=args.keep) as env:
            for setup in cluster_setups:
                for clients in args.cluster_clients:
                    nodes = int(setup.split("-")[1])
                    database_url, queue_url, lock_url = env.new_cluster()
                    common = ["--config", quota_config(env.root), "--cluster", CLUSTER,
                              "--database-url", database_url, "--queue-url", queue_url,
                              "--log-level", "info"]
                    sub = os.path.join(env.root, "%s-%d" % (setup, clients))
                    api = env.start_api(setup + "-api", [
                        "--role", "api,scheduler", "--host", "api1", "--state-dir",
                        os.path.join(sub, "api")
                    ] + common)
                    for n in range(1, nodes + 1):
                        name = "node%d" % n
                        locks = (["--lock-url", lock_url, "--state-dir",
                                  os.path.join(sub, name)] if lock_url else
                                 ["--state-dir", os.path.join(sub, "volume-state")])
                        env.start_volume_node("%s-%s" % (setup, name), [
                            "--host", name, "--workers",
                            str(args.workers), "--volume-dir",
                            os.path.join(sub, "volumes")
                        ] + locks + common)
                    print("(%s: locks %s, %d workers per node)" %
                          (setup, lock_url or "file (shared state dir)", args.workers))
                    report(setup, env, api, clients)

    print("\n%-10s %7s %10s %9s %9s %9s %8s %10s %8s" %
          ("setup", "clients", "cycles/s", "p50 ms", "p99 ms", "max ms", "failures",
           "cpu ms/cyc", "tx/cyc"))
    for setup, clients, f in results:
        print("%-10s %7d %10.1f %9.2f %9.2f %9.2f %8.0f %10.2f %8.2f" %
              (setup, clients, f["cycles_per_s"], f["p50"], f["p99"], f["max"], f["failures"],
               f["cpu_ms"], f["writes"]))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
