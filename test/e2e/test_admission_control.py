"""End-to-end: admission control refuses what the back-end cannot finish, and finishes what it took.

Goal: with more offered load than the volume node can finish, a real clinkerd with
--max-queued-jobs-per-backend BOUND answers further creates 503 `serviceUnavailable` with a
`Retry-After` header once BOUND creates are queued or under way, writes nothing for them (no
row, no quota usage), keeps the backlog in the database at or under the bound the whole time,
keeps accepting as work finishes, and every accepted create reaches `available`. GET /metrics
shows the backlog per back-end while it builds.

Method: one daemon whose file driver takes DRIVER_DELAY_MS per operation with WORKERS volume
workers (about WORKERS / DRIVER_DELAY_MS creates a second), and CLIENTS threads posting creates
for LOAD_S seconds, each retrying after RETRY_S on a 503 (well under Retry-After: more offered
load). A sampler thread counts the volumes in creating statuses in the daemon's SQLite file.
Every wait has a deadline; the test takes about 15 s.
"""

import sys
import threading
import time

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

BOUND = 4
DRIVER_DELAY_MS = 250
WORKERS = 2
CLIENTS = 8
LOAD_S = 6.0
RETRY_S = 0.05
FINISH_TIMEOUT_S = 30.0


class AdmissionControlTest(h.DaemonTestCase):

    daemon_args = ("--max-queued-jobs-per-backend", str(BOUND), "--driver-delay-ms",
                   str(DRIVER_DELAY_MS), "--workers", str(WORKERS))

    def test_overload_is_refused_with_503_and_accepted_work_finishes(self):
        d = self.daemon
        accepted = []
        refusals = []
        errors = []
        backlog_samples = []
        metrics_seen = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(index):
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    resp = d.request("POST", "volumes",
                                     body={"volume": {"size": 1, "name": "load-%d-%d" % (index, n)}})
                except OSError as e:
                    with lock:
                        errors.append("client %d: %r" % (index, e))
                    return
                with lock:
                    if resp.status == 202:
                        accepted.append(resp.json()["volume"]["id"])
                    elif resp.status == 503:
                        refusals.append(resp)
                    else:
                        errors.append(resp)
                if resp.status == 503:
                    time.sleep(RETRY_S)

        def sampler():
            while not stop.is_set():
                rows = d.db_rows("SELECT COUNT(*) AS n FROM volumes WHERE deleted = 0 AND status IN "
                                 "('creating_queued', 'creating')")
                backlog_samples.append(rows[0]["n"])
                resp = d.request("GET", "/metrics")
                if resp.status == 200 and b"clinker_backend_queued_jobs{" in resp.body:
                    metrics_seen.append(resp.body.decode("utf-8"))
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        threads.append(threading.Thread(target=sampler))
        start = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(LOAD_S)
        stop.set()
        for t in threads:
            t.join(h.HTTP_TIMEOUT_S + 5)
            self.assertFalse(t.is_alive(), "a client thread did not stop")
        elapsed = time.monotonic() - start

        self.assertEqual(errors, [], d.stderr_tail())
        self.assertTrue(refusals, "no 503 although the offered load exceeds the node's rate")
        for resp in refusals[:20]:
            self.assertCinderError(resp, 503, "serviceUnavailable")
            retry_after = resp.header("Retry-After")
            self.assertIsNotNone(retry_after, resp)
            self.assertGreaterEqual(int(retry_after), 1, resp)
        # Work kept being taken as it finished: well past the bound in all.
        self.assertGreater(len(accepted), 2 * BOUND, "accepted %d" % len(accepted))
        # One API server: the backlog never passes the bound.
        self.assertLessEqual(max(backlog_samples), BOUND, backlog_samples)
        self.assertTrue(metrics_seen, "GET /metrics never showed the backlog")
        self.assertIn("clinker_max_queued_jobs_per_backend %d" % BOUND, metrics_seen[-1])

        # A refusal wrote nothing: the rows and the usage are exactly the accepted creates.
        self.assertEqual(d.db_volume_count(), len(accepted))
        usage = d.db_rows("SELECT in_use FROM quota_usages WHERE project_id = ? AND "
                          "resource = 'volumes'", (d.project,))
        self.assertEqual(usage[0]["in_use"], len(accepted))

        # Every accepted create finishes.
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        while True:
            rows = d.db_rows("SELECT status, COUNT(*) AS n FROM volumes GROUP BY status")
            by_status = {row["status"]: row["n"] for row in rows}
            if by_status == {"available": len(accepted)}:
                break
            self.assertLess(time.monotonic(), deadline,
                            "accepted volumes did not all finish: %s" % by_status)
            time.sleep(0.2)

        # And once the backlog has drained (and the count is refreshed), creates are accepted.
        h.wait_for(lambda: d.request("POST", "volumes", body={"volume": {"size": 1}}).status == 202,
                   5.0, "a create accepted again once the backlog drained")
        sys.stderr.write("%.1f s of load from %d clients: %d accepted (%.1f/s), %d refused with "
                         "503; backlog max %d (bound %d)\n" %
                         (elapsed, CLIENTS, len(accepted), len(accepted) / elapsed,
                          len(refusals), max(backlog_samples), BOUND))


if __name__ == "__main__":
    h.main()
