"""End-to-end: many clients delete the same volume at the same instant; exactly one wins.

Goal: the API's status compare-and-swap (available -> deleting) admits one DELETE and refuses the
others with Cinder's 400 badRequest, and the driver deletes the volume exactly once.

Method: create a volume over raw HTTP and wait for `available`. Send 20 DELETEs, each on its own
connection, all but their last byte; then release 20 threads together with a barrier, each
sending its last byte and reading the answer. Count the statuses, check each refusal's body, wait
until the volume is gone, and read the driver journal (--driver-journal): exactly one
`delete_volume` line for this volume. A 1 s driver delay keeps the volume in `deleting` while the
requests race, so a late loser still sees a volume that exists but cannot be deleted (400, not
404).
"""

import sys
import threading

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

CLIENTS = 20
BARRIER_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 30.0


class ConcurrentDeleteTest(h.DaemonTestCase):

    def setUp(self):
        # The journal path lives in the daemon's temp dir, known only once it exists.
        self.daemon = h.Daemon()
        self.addCleanup(self.daemon.close)
        self.daemon.start(
            ["--driver-journal", self.daemon.journal_path, "--driver-delay-ms", "1000"])

    def test_one_delete_wins(self):
        d = self.daemon
        volume_id = d.create_volume(size=1, name="contended")["id"]
        d.wait_for_status(volume_id, "available")

        barrier = threading.Barrier(CLIENTS, timeout=BARRIER_TIMEOUT_S)
        results = [None] * CLIENTS

        def delete(index, pending):
            try:
                barrier.wait()
                results[index] = pending.fire()
            except Exception as e:  # Recorded, then reported by the main thread.
                results[index] = e

        # Each request waits on its own connection, sent but for its last byte, so the server
        # gets all twenty at once (see Daemon.prepare).
        pending = []
        try:
            for _ in range(CLIENTS):
                pending.append(d.prepare("DELETE", "volumes/%s" % volume_id))
        except BaseException:
            for p in pending:
                p.close()
            raise
        threads = [
            threading.Thread(target=delete, args=(i, p), daemon=True)
            for i, p in enumerate(pending)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(JOIN_TIMEOUT_S)
        self.assertFalse([t for t in threads if t.is_alive()], "DELETE threads still running")

        errors = [r for r in results if not isinstance(r, h.Response)]
        self.assertFalse(errors, "requests failed without an HTTP answer: %s" % errors)
        accepted = [r for r in results if r.status == 202]
        refused = [r for r in results if r.status != 202]
        self.assertEqual(len(accepted), 1, "expected exactly one 202: %s" % results)
        self.assertEqual(accepted[0].body, b"", accepted[0])
        self.assertEqual(len(refused), CLIENTS - 1)
        for resp in refused:
            self.assertCinderError(resp, 400, "badRequest")

        d.wait_for_status(volume_id, None)
        deletes = h.wait_for(
            lambda: [
                e for e in d.journal()
                if e.get("op") == "delete_volume" and e.get("volume_id") == volume_id
            ], h.STATUS_TIMEOUT_S, "a delete_volume journal entry for %s" % volume_id)
        self.assertEqual(len(deletes), 1, "driver journal: %s" % d.journal())
        creates = [
            e for e in d.journal()
            if e.get("op") == "create_volume" and e.get("volume_id") == volume_id
        ]
        self.assertEqual(len(creates), 1, "driver journal: %s" % d.journal())


if __name__ == "__main__":
    h.main()
