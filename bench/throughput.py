#!/usr/bin/python3
"""bench/throughput.py: create+delete throughput of the embedded default and of a cluster.

Method: runs bench_create_latency (--clients clients, --count volumes each, status polled every
--poll-us, zero driver delay)
against three set-ups in turn, each on fresh state:
  (i)   embedded: one clinkerd with every role, SQLite state and queue, file locks;
  (ii)  cluster-1: PostgreSQL + RabbitMQ (+ etcd locks when installed), one clinkerd with the
        API and the scheduler, one volume node of cluster "cluster1";
  (iii) cluster-3: the same with three volume nodes.
The servers are started once through scripts/test_server_*.sh; each cluster set-up gets its own
database and vhost. Prints each run's figures (cycles/s, p50/p99 create->available) and a summary
table. Every daemon logs at info (a volume node says it is ready only at that level), so the
set-ups compare like with like.

A benchmark: figures are printed, never asserted. Every process is stopped by PID, the servers by
their scripts, also after Ctrl-C or SIGTERM.
"""

import argparse
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True

import cluster_env  # noqa: E402

CLUSTER = "cluster1"
BENCH_TIMEOUT_S = 900


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


def main():
    build = os.path.join(cluster_env.REPO, "build", "release")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinkerd", default=os.path.join(build, "clinkerd"))
    parser.add_argument("--bench", default=os.path.join(build, "bench_create_latency"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--count", type=int, default=50, help="volumes per client")
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

    def report(setup, env, api):
        print("== %s: %d clients x %d volumes, polling every %d us" %
              (setup, args.clients, args.count, args.poll_us))
        sys.stdout.flush()
        output, figures = run_bench(bench, api.port, api.pid, args.clients, args.count,
                                    args.poll_us)
        print(output.rstrip())
        sys.stdout.flush()
        results.append((setup, figures))
        env.stop_daemons()

    if "embedded" in setups:
        with cluster_env.ClusterEnv(args.clinkerd, use_servers=False, keep=args.keep) as env:
            api = env.start_api("embedded", ["--state-dir", os.path.join(env.root, "state"),
                                             "--log-level", "info"])
            report("embedded", env, api)

    cluster_setups = [s for s in setups if s.startswith("cluster-")]
    if cluster_setups:
        use_etcd = {"auto": None, "etcd": True, "file": False}[args.locks]
        with cluster_env.ClusterEnv(args.clinkerd, use_etcd=use_etcd, keep=args.keep) as env:
            for setup in cluster_setups:
                nodes = int(setup.split("-")[1])
                database_url, queue_url, lock_url = env.new_cluster()
                common = ["--cluster", CLUSTER, "--database-url", database_url, "--queue-url",
                          queue_url, "--log-level", "info"]
                sub = os.path.join(env.root, setup)
                api = env.start_api(setup + "-api", [
                    "--role", "api,scheduler", "--host", "api1", "--state-dir",
                    os.path.join(sub, "api")
                ] + common)
                for n in range(1, nodes + 1):
                    name = "node%d" % n
                    locks = (["--lock-url", lock_url, "--state-dir", os.path.join(sub, name)]
                             if lock_url else ["--state-dir", os.path.join(sub, "volume-state")])
                    env.start_volume_node("%s-%s" % (setup, name), [
                        "--host", name, "--workers",
                        str(args.workers), "--volume-dir",
                        os.path.join(sub, "volumes")
                    ] + locks + common)
                print("(%s: locks %s, %d workers per node)" %
                      (setup, lock_url or "file (shared state dir)", args.workers))
                report(setup, env, api)

    print("\n%-10s %12s %10s %10s %10s %9s" %
          ("setup", "cycles/s", "p50 ms", "p99 ms", "max ms", "failures"))
    for setup, f in results:
        print("%-10s %12.1f %10.2f %10.2f %10.2f %9.0f" %
              (setup, f["cycles_per_s"], f["p50"], f["p99"], f["max"], f["failures"]))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
