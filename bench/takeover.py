#!/usr/bin/python3
"""bench/takeover.py: how long a volume cluster takes to finish a job whose node was SIGKILLed.

Method: starts PostgreSQL, RabbitMQ and (when installed) etcd through scripts/test_server_*.sh,
one clinkerd with the API and the scheduler, and --nodes volume nodes of one cluster, one worker
each, with a driver delay (--driver-delay-ms) so that a job is caught inside the driver. Each
round creates one volume, finds the node that started its job (its log's volume.job_decision for
that volume), waits a little so that the node is inside the driver call, SIGKILLs it, and times
from the kill until the API shows the volume in a final status (available, or error by the
stuck-job rules when the create had reached the driver), then restarts the killed node. Prints
each sample (outcome, which node settled it) and p50/max.

A benchmark: it prints figures and asserts nothing beyond "the volume settled". Every wait is
bounded; every process is stopped by PID, the servers by their scripts, also after Ctrl-C.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True

import cluster_env  # noqa: E402

CLUSTER = "cluster1"
SETTLE_TIMEOUT_S = 120.0
FIND_TIMEOUT_S = 30.0


class Api:
    """Minimal noauth client (urllib)."""

    def __init__(self, port):
        self.base = "http://127.0.0.1:%d/v3/%s/volumes" % (port, cluster_env.PROJECT)
        self.headers = {"X-Auth-Token": "bench:" + cluster_env.PROJECT,
                        "Content-Type": "application/json"}

    def _call(self, method, url, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=self.headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None

    def create(self):
        status, body = self._call("POST", self.base, {"volume": {"size": 1}})
        if status != 202:
            raise RuntimeError("create: HTTP %d" % status)
        return body["volume"]["id"]

    def status(self, volume_id):
        status, body = self._call("GET", "%s/%s" % (self.base, volume_id))
        return body["volume"]["status"] if status == 200 else None


def events(text):
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                pass


def started_job(node, offset, volume_id):
    """True if `node` logged, after `offset`, that it runs the job of `volume_id`."""
    return any(
        e.get("event") == "volume.job_decision" and e.get("volume_id") == volume_id and
        e.get("action") in ("proceed", "redo") for e in events(node.log_since(offset)))


def settled_by(nodes, offsets, volume_id):
    for node in nodes:
        for e in events(node.log_since(offsets[node.name])):
            if e.get("volume_id") == volume_id and e.get("event") in ("volume.job_done",
                                                                      "volume.set_error"):
                return node.name
    return "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinkerd", default=os.path.join(cluster_env.REPO, "build", "release",
                                                           "clinkerd"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--driver-delay-ms", type=int, default=200)
    parser.add_argument("--locks", choices=("auto", "etcd", "file"), default="auto",
                        help="etcd when installed (auto), or file locks in a shared state dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    if args.rounds < 1 or args.nodes < 2:
        parser.error("need at least 1 round and 2 nodes")

    use_etcd = {"auto": None, "etcd": True, "file": False}[args.locks]
    with cluster_env.ClusterEnv(args.clinkerd, use_etcd=use_etcd, keep=args.keep) as env:
        database_url, queue_url, lock_url = env.new_cluster()
        common = ["--cluster", CLUSTER, "--database-url", database_url, "--queue-url", queue_url,
                  "--log-level", "info"]
        api = env.start_api("api", ["--role", "api,scheduler", "--host", "api1", "--state-dir",
                                    os.path.join(env.root, "api")] + common)
        nodes = []
        for n in range(1, args.nodes + 1):
            name = "node%d" % n
            locks = (["--lock-url", lock_url, "--state-dir", os.path.join(env.root, name)]
                     if lock_url else ["--state-dir", os.path.join(env.root, "volume-state")])
            nodes.append(
                env.start_volume_node(name, ["--host", name, "--workers", "1",
                                             "--driver-delay-ms", str(args.driver_delay_ms),
                                             "--volume-dir", os.path.join(env.root, "volumes"),
                                             "--driver-journal",
                                             os.path.join(env.root, "journal.jsonl")] + locks +
                                      common))
        client = Api(api.port)
        print("takeover: %d volume nodes of %s, driver delay %d ms, locks: %s" %
              (args.nodes, CLUSTER, args.driver_delay_ms, lock_url or "file (shared state dir)"))

        samples = []
        for round_no in range(1, args.rounds + 1):
            offsets = {node.name: node.log_size() for node in nodes}
            volume_id = client.create()
            deadline = time.monotonic() + FIND_TIMEOUT_S
            runner = None
            while runner is None:
                runner = next((node for node in nodes
                               if started_job(node, offsets[node.name], volume_id)), None)
                if runner is None:
                    if time.monotonic() >= deadline:
                        raise RuntimeError("no node started the job of %s" % volume_id)
                    time.sleep(0.005)
            # Into the driver call (the decision is logged just before the in-progress write).
            time.sleep(args.driver_delay_ms / 4000.0)
            killed_at = time.monotonic()
            runner.kill()
            deadline = killed_at + SETTLE_TIMEOUT_S
            while True:
                status = client.status(volume_id)
                if status in ("available", "error"):
                    break
                if time.monotonic() >= deadline:
                    raise RuntimeError("volume %s still %s %.0f s after the kill" %
                                       (volume_id, status, SETTLE_TIMEOUT_S))
                time.sleep(0.002)
            elapsed_ms = (time.monotonic() - killed_at) * 1000.0
            others = [node for node in nodes if node is not runner]
            by = settled_by(others, offsets, volume_id)
            samples.append(elapsed_ms)
            print("round %2d: killed %s (pid %d) mid-create; %s on %s after %.0f ms" %
                  (round_no, runner.name, runner.pid, status, by, elapsed_ms))
            sys.stdout.flush()
            runner.start()

        print("takeover_ms n=%d p50=%.0f max=%.0f min=%.0f" %
              (len(samples), cluster_env.percentile(samples, 0.5), max(samples), min(samples)))
        print("samples_ms %s" % " ".join("%.0f" % s for s in samples))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
