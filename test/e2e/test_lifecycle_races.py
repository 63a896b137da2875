"""End-to-end: lifecycle races between a source and what reads it (clones, snapshots).

Goal: prove that deleting a volume can never pull the data out from under a copy of it, and
that a snapshot and a delete of its volume racing each other never leave a deleted volume with
a live snapshot, whichever request reaches the server first.

Method:
- Clones vs delete of their source: clinkerd runs with --driver-delay-ms 1500 (every back-end
  call sleeps first, so the copies take long enough to race with) and --workers 4. A source
  with seeded data is made, four clones are requested at once (each sent but for its last byte,
  then released together), and while they run (DB status `creating`) the source is deleted. The
  delete must be refused (400 badRequest saying volumes are being created from it), or, if
  accepted, every clone must still end available and the driver journal (--driver-journal, one
  line per finished back-end call, in order) must show the source's delete after all four
  copies. The clones' content must equal the source's (clinker_harness.content_digest). Once the
  clones are available, deleting the source is accepted and it ends deleted. At rest the source's
  image file exists iff its row is not deleted.
- Snapshot vs volume delete: 200 available volumes are made in bulk (no driver delay); per
  round POST /snapshots and DELETE /volumes/{id} are prepared (all but the last byte), two
  threads pass a barrier, and one sends its last byte only once the other has sent its own,
  alternating which one goes first. Each answer must be 202 or a Cinder 400 with a message, and
  exactly one of the two must win. (One more answer is right: with no driver delay a delete sent
  first may be done before the snapshot request is read, which then gets Cinder's 404 for a
  volume that no longer exists; it is counted apart.) After the jobs settle (polled in the DB),
  no deleted volume has a live snapshot, and each round's winner shows in the DB and in the
  back-end files. How often each order won is printed.
"""

import os
import sys
import threading

# No __pycache__ in the source tree: ctest runs these files from a checkout.
sys.dont_write_bytecode = True

import clinker_harness as h  # noqa: E402

MIB = 1 << 20
CLONES = 4
CLONE_DRIVER_DELAY_MS = 1500
ROUNDS = 200
BARRIER_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 30.0
# How long everything a test queued may take to finish.
SETTLE_TIMEOUT_S = 60.0

# Statuses of a job not yet finished (DB names), for volumes and snapshots alike.
BUSY_STATUSES = ("creating_queued", "creating", "deleting_queued", "deleting", "extending_queued",
                 "extending")


def run_together(actions):
    """Runs each callable on its own thread, released by one barrier; returns their results in
    order (an exception is returned, not raised)."""
    barrier = threading.Barrier(len(actions), timeout=BARRIER_TIMEOUT_S)
    results = [None] * len(actions)

    def run(index, action):
        try:
            barrier.wait()
            results[index] = action()
        except Exception as e:  # Recorded, then reported by the caller.
            results[index] = e

    threads = [threading.Thread(target=run, args=item) for item in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    if any(t.is_alive() for t in threads):
        raise AssertionError("a racing request is still running after %.0f s" % JOIN_TIMEOUT_S)
    return results


def prepare_all(daemon, requests):
    """PendingRequests for [(method, path, kwargs)]; closes those made so far on a failure."""
    pending = []
    try:
        for method, path, kwargs in requests:
            pending.append(daemon.prepare(method, path, **kwargs))
    except BaseException:
        for p in pending:
            p.close()
        raise
    return pending


class ClonesVsSourceDeleteTest(h.DaemonTestCase):

    def setUp(self):
        self.daemon = h.Daemon()
        self.addCleanup(self.daemon.close)
        self.daemon.start([
            "--driver-delay-ms",
            str(CLONE_DRIVER_DELAY_MS), "--workers",
            str(CLONES), "--driver-journal", self.daemon.journal_path
        ])

    def assertSourceAtRest(self, source_id):
        """No half-deleted source: its image exists iff its row is not deleted."""
        d = self.daemon
        row = d.db_volume(source_id)
        exists = os.path.exists(d.volume_file(source_id))
        self.assertEqual(exists, row["deleted"] == 0,
                         "source row %s but image %s" % (row, "present" if exists else "gone"))

    def test_delete_source_while_clones_run(self):
        d = self.daemon
        source_id = d.create_volume(size=1, name="clone-source")["id"]
        d.wait_for_status(source_id, "available")
        h.write_pattern(d.volume_file(source_id), "clone-source", (0, 700 * MIB + 4321),
                        4 * MIB)
        source_digest = h.content_digest(d.volume_file(source_id))

        body = {"volume": {"source_volid": source_id, "name": "clone"}}
        pending = prepare_all(d, [("POST", "volumes", {"body": body})] * CLONES)
        answers = run_together([p.fire for p in pending])
        for answer in answers:
            self.assertIsInstance(answer, h.Response, answer)
            self.assertEqual(answer.status, 202, answer)
        clone_ids = [answer.json()["volume"]["id"] for answer in answers]
        self.assertEqual(len(set(clone_ids)), CLONES, clone_ids)

        # The copies are under way (the driver sleeps first, so they stay so for a while).
        h.wait_for(lambda: any((d.db_volume(c) or {}).get("status") == "creating"
                               for c in clone_ids), h.STATUS_TIMEOUT_S,
                   "a clone in status creating", 0.02)
        clone_statuses = [d.db_volume(c)["status"] for c in clone_ids]
        delete = d.request("DELETE", "volumes/%s" % source_id)
        sys.stderr.write("\ndelete of the source while clones %s: %d\n" %
                         (clone_statuses, delete.status))
        if delete.status == 400:
            self.assertCinderError(delete, 400, "badRequest")
            self.assertIn("being created", delete.json()["badRequest"]["message"], delete)
            row = d.db_volume(source_id)
            self.assertEqual((row["status"], row["deleted"]), ("available", 0), row)
            self.assertSourceAtRest(source_id)
        else:
            self.assertEqual(delete.status, 202, delete)

        for clone_id in clone_ids:
            self.assertEqual(d.wait_for_status(clone_id, ("available", "error")), "available",
                             d.db_volume(clone_id))
        for clone_id in clone_ids:
            path = d.volume_file(clone_id)
            self.assertEqual(os.stat(path).st_size, h.GIB, path)
            self.assertEqual(h.content_digest(path), source_digest, "data of clone %s" % clone_id)

        if delete.status == 400:
            self.assertSourceAtRest(source_id)
            self.assertEqual(d.db_volume(source_id)["status"], "available")
            again = d.request("DELETE", "volumes/%s" % source_id)
            self.assertEqual(again.status, 202, again)
        d.wait_for_status(source_id, None)
        h.wait_for(lambda: d.db_volume(source_id)["status"] == "deleted", h.STATUS_TIMEOUT_S,
                   "source row deleted")
        self.assertSourceAtRest(source_id)

        # The journal: each clone copied from the source once, all before the source went.
        journal = d.journal()
        copies = [i for i, e in enumerate(journal)
                  if e.get("op") == "create_volume" and e.get("volume_id") in clone_ids]
        self.assertEqual(sorted(journal[i]["volume_id"] for i in copies), sorted(clone_ids),
                         journal)
        for i in copies:
            self.assertEqual(journal[i].get("source_id"), source_id, journal[i])
        deletes = [i for i, e in enumerate(journal)
                   if e.get("op") == "delete_volume" and e.get("volume_id") == source_id]
        self.assertEqual(len(deletes), 1, journal)
        self.assertGreater(deletes[0], max(copies), journal)


class SnapshotVsVolumeDeleteTest(h.DaemonTestCase):

    def wait_all_at_rest(self):
        d = self.daemon
        marks = ",".join("?" * len(BUSY_STATUSES))

        def busy():
            rows = d.db_rows(
                "SELECT 'volume' AS kind, id, status FROM volumes WHERE status IN (%s) "
                "UNION ALL SELECT 'snapshot', id, status FROM snapshots WHERE status IN (%s)" %
                (marks, marks), BUSY_STATUSES * 2)
            return rows + d.db_rows("SELECT id, topic FROM queue_jobs")

        h.wait_for(lambda: not busy(), SETTLE_TIMEOUT_S, "every job to finish")

    def test_snapshot_create_races_volume_delete(self):
        d = self.daemon
        volume_ids = [d.create_volume(size=1, name="race-%d" % i)["id"] for i in range(ROUNDS)]
        self.wait_all_at_rest()
        statuses = d.db_rows("SELECT status, COUNT(*) AS n FROM volumes GROUP BY status")
        self.assertEqual(statuses, [{"status": "available", "n": ROUNDS}], statuses)

        # wins[(who was sent first, who won)]
        wins = {}
        rounds = []
        for index, volume_id in enumerate(volume_ids):
            snapshot_first = index % 2 == 0
            snap, delete = prepare_all(d, [
                ("POST", "snapshots", {"body": {"snapshot": {"volume_id": volume_id}}}),
                ("DELETE", "volumes/%s" % volume_id, {}),
            ])
            first, second = (snap, delete) if snapshot_first else (delete, snap)
            sent = threading.Event()

            def send_first(p=first, sent=sent):
                try:
                    p.send_last_byte()
                finally:
                    sent.set()
                return p.read_response()

            def send_second(p=second, sent=sent):
                if not sent.wait(BARRIER_TIMEOUT_S):
                    p.close()
                    raise AssertionError("the first request was never sent")
                p.send_last_byte()
                return p.read_response()

            answers = run_together([send_first, send_second])
            snap_answer, delete_answer = answers if snapshot_first else answers[::-1]
            for answer in (snap_answer, delete_answer):
                self.assertIsInstance(answer, h.Response, "round %d: %r" % (index, answer))
            gone = snap_answer.status == 404 and delete_answer.status == 202
            if gone:
                self.assertCinderError(snap_answer, 404, "itemNotFound")
            else:
                for answer in (snap_answer, delete_answer):
                    if answer.status != 202:
                        self.assertCinderError(answer, 400, "badRequest")
                self.assertEqual(
                    sorted((snap_answer.status, delete_answer.status)), [202, 400],
                    "round %d: exactly one of the two must win: %r / %r" %
                    (index, snap_answer, delete_answer))
            winner = "snapshot" if snap_answer.status == 202 else "delete"
            key = ("snapshot sent first" if snapshot_first else "delete sent first",
                   winner + (" (volume already gone: 404)" if gone else ""))
            wins[key] = wins.get(key, 0) + 1
            snapshot_id = snap_answer.json()["snapshot"]["id"] if winner == "snapshot" else None
            rounds.append((volume_id, winner, snapshot_id))

        sys.stderr.write("\nsnapshot vs delete, %d rounds:\n" % ROUNDS)
        for key in sorted(wins):
            sys.stderr.write("  %s, %s won: %d\n" % (key[0], key[1], wins[key]))

        self.wait_all_at_rest()
        orphans = d.db_rows("SELECT s.id AS snapshot_id, s.status, v.id AS volume_id, "
                            "v.status AS volume_status FROM snapshots s JOIN volumes v ON "
                            "s.volume_id = v.id WHERE s.deleted = 0 AND v.deleted = 1")
        self.assertEqual(orphans, [], "deleted volumes with live snapshots")
        for volume_id, winner, snapshot_id in rounds:
            volume = d.db_volume(volume_id)
            live = d.db_rows("SELECT id, status FROM snapshots WHERE volume_id = ? AND deleted = 0",
                             (volume_id,))
            if winner == "delete":
                self.assertEqual((volume["status"], volume["deleted"]), ("deleted", 1), volume)
                self.assertFalse(os.path.exists(d.volume_file(volume_id)), volume_id)
                self.assertEqual(live, [], volume_id)
            else:
                self.assertEqual((volume["status"], volume["deleted"]), ("available", 0), volume)
                self.assertTrue(os.path.isfile(d.volume_file(volume_id)), volume_id)
                self.assertEqual(live, [{"id": snapshot_id, "status": "available"}], volume_id)
                self.assertTrue(os.path.isfile(d.snapshot_file(snapshot_id)), snapshot_id)


if __name__ == "__main__":
    h.main()
