// SqliteJobQueue: the JobQueue port as a durable queue embedded in a SQLite database file, for a
// deployment on one machine (every process that shares the queue sees the same file and the same
// sessions directory).
//
// How it keeps the port's promises:
// - Durability: a job is a row of `queue_jobs`; Publish returns after its INSERT committed (WAL,
//   so a crash of any process keeps it; power loss needs synchronous = "full").
// - One delivery at a time: Receive claims the oldest ready row of the subscribed topics with one
//   `UPDATE ... RETURNING` under BEGIN IMMEDIATE, setting owner_session to this session. SQLite
//   has one writer at a time, so two sessions never claim the same row.
// - Redelivery when a consumer goes away: each session holds flock(LOCK_EX) on
//   `<sessions_dir>/<session_id>.lock` for its whole life (O_CLOEXEC, so a spawned helper does
//   not inherit it). The kernel drops that lock when the process dies. Every session, when it
//   opens and then at most every reclaim_interval while it receives, tries the lock of every
//   other session that owns in-flight jobs; if it gets it (or the file is gone) the owner is dead
//   and its jobs become ready again, flagged redelivered. Liveness is "the process exists": a
//   stopped (SIGSTOP) or hung process keeps its jobs.
// - Acks ride on the next claim: Ack frees the session's slot at once and records the job id;
//   the row is deleted in the same write transaction as this session's next claim, or alone by
//   a Receive once no job came for ack_delay (50 ms), or by the destructor, so a job hop costs
//   one write transaction, not two. Until then the row stays in flight, owned by this live
//   session, so no one else can take it. If the process dies in that window (at most ack_delay
//   while the session receives) the job is delivered again, which consumers tolerate as they
//   tolerate any duplicate; RabbitMQ's acks are unconfirmed and have the same window.
// - A Receive that finds nothing ready in a plain read (WAL: no lock) does not start a write
//   transaction, so idle receivers cost no writes.
// - Wake-ups: a publish wakes receivers of its topic in the same process at once (a process-wide
//   notifier per database file, keyed by topic, session and broadcasts, so that a publish wakes
//   no receiver of another topic); publishes by other processes are seen by polling every
//   poll_interval (1.1 x poll_interval at worst: the receivers of one session woken together
//   let one of them look for all, see kSiblingLookShare).
//
// Contract:
// - Thread safe: every method may be called from any thread at once. One instance is one
//   consumer session with its own SQLite connection.
// - Blocking: Publish and Requeue block for one short write transaction; Ack does not block.
// Receive blocks up
//   to `wait`, sleeping on a condition variable between attempts; a claim already started when
//   `wait` runs out finishes first (bounded by the database's busy_timeout and retries).
// - Errors: kInvalidArgument for bad options, an empty topic, or Receive before Subscribe;
//   kUnavailable when the database stayed busy or failed (not applied: retry); other engine
//   failures as sqlite::Database reports them.
// - Ack and Requeue of a delivery this session no longer holds succeed and change nothing
//   (idempotent).
// - Destruction requeues this session's in-flight jobs and releases its lock. No call on the
//   session may be running then. Never carry a session across fork(): open one in the child.
// - Broadcasts: a broadcast is a row of `queue_broadcasts` (queue migration 2), read by every
//   listening session. A listener keeps in memory the last seq it has read, starting at the
//   table's max seq when it first Listens (so older messages are not replayed), and
//   ReceiveBroadcasts returns the rows of its channels above it. seq is AUTOINCREMENT so it never
//   goes back even when pruning empties the table. Senders delete rows older than
//   broadcast_retention in the same transaction, so the table stays small without a janitor; a
//   listener that does not read for longer than that misses messages (allowed: at most once).
//   A broadcast costs one write transaction; ReceiveBroadcasts only reads (no lock, WAL), waking
//   at once for a sender of the same process and by polling every poll_interval otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/adapters/sqlite/sqlite_database.h"
#include "clinker/core/error.h"
#include "clinker/ports/job_queue.h"

namespace clinker::adapters::sqlite {

class QueueNotifier;

class SqliteJobQueue final : public ports::JobQueue {
 public:
  struct Options {
    Database::Options database;
    // Holds one lock file per live session. Every session of one database must use the same
    // directory, on the same machine. Created if missing.
    std::string sessions_dir;
    int max_in_flight = 4;  // At least 1.
    // How often a waiting Receive looks for jobs published by other processes.
    std::chrono::milliseconds poll_interval{200};
    // How often a receiving session looks for dead sessions' jobs. Also bounds how long a dead
    // consumer's job waits before another session takes it over.
    std::chrono::milliseconds reclaim_interval{500};
    // How long an acked job's row may wait for this session's next claim to be deleted with it
    // (saving a write transaction) when no job is ready; a receiving session then deletes it
    // alone. Zero: written by the next Receive, job or not.
    std::chrono::milliseconds ack_delay{50};
    // Broadcasts older than this are pruned by the next sender. More than a listener's longest
    // pause between two ReceiveBroadcasts.
    std::chrono::milliseconds broadcast_retention{60000};
  };

  // Opens the database, applies the "queue" migrations, starts the session (creates and locks
  // its lock file) and reclaims the jobs of dead sessions once.
  static Result<std::unique_ptr<SqliteJobQueue>> Open(const Options& options);

  SqliteJobQueue(const SqliteJobQueue&) = delete;
  SqliteJobQueue& operator=(const SqliteJobQueue&) = delete;
  ~SqliteJobQueue() override;

  Result<std::string> Publish(std::string_view topic, std::string_view payload) override;
  Result<void> Subscribe(const std::vector<std::string>& topics) override;
  Result<std::optional<ports::Delivery>> Receive(std::chrono::milliseconds wait) override;
  Result<void> Ack(const ports::Delivery& delivery) override;
  Result<void> Requeue(const ports::Delivery& delivery) override;
  Result<void> Broadcast(std::string_view channel, std::string_view payload) override;
  Result<void> Listen(const std::vector<std::string>& channels) override;
  Result<std::vector<ports::BroadcastMessage>> ReceiveBroadcasts(
      std::chrono::milliseconds wait) override;

  // Makes the in-flight jobs of dead sessions ready again. Receive and Open call it; exposed for
  // a supervisor that wants to reclaim without receiving. Returns how many jobs were requeued.
  Result<std::int64_t> ReclaimDeadSessions();

  const std::string& session_id() const { return session_id_; }

 private:
  SqliteJobQueue(Options options,
                 std::unique_ptr<Database> database,
                 std::string session_id,
                 int lock_fd,
                 std::shared_ptr<QueueNotifier> notifier);

  // One claim attempt: the oldest ready job of `topics`, or nullopt; deletes the rows of
  // `acks` (jobs this session acked) in the same transaction. With no topics, only the acks.
  Result<std::optional<ports::Delivery>> Claim(const std::vector<std::string>& topics,
                                               const std::vector<std::string>& acks);
  // True if a job of `topics` is ready, by a read that takes no lock.
  Result<bool> AnyReady(const std::vector<std::string>& topics);
  // Takes the pending acks (under mutex_), to be written by the caller; *acked_at (if given) is
  // when the oldest of them was acked.
  std::vector<std::string> TakePendingAcks(
      std::chrono::steady_clock::time_point* acked_at = nullptr);
  // Gives back acks not written (their transaction failed, or they wait for a claim).
  void RestorePendingAcks(const std::vector<std::string>& acks,
                          std::chrono::steady_clock::time_point acked_at);
  std::string LockPath(std::string_view session_id) const;
  // One read of the broadcasts above last_seen_broadcast_ (under broadcast_mutex_).
  Result<std::vector<ports::BroadcastMessage>> ReadBroadcastsLocked();

  const Options options_;
  const std::unique_ptr<Database> database_;
  const std::string session_id_;
  const int lock_fd_;
  const std::shared_ptr<QueueNotifier> notifier_;

  // Held across "is a slot free? then claim" so concurrent Receives of this session cannot
  // overshoot max_in_flight. Taken before mutex_, never after.
  std::mutex claim_mutex_;
  // The last look of this session that found no ready job (guarded by claim_mutex_): its wake-up
  // keys, the notifier generation read before it, and when. Lets the other receivers woken by
  // the same publish skip a read that would find nothing.
  std::vector<std::string> empty_look_keys_;
  std::uint64_t empty_look_generation_ = 0;
  std::chrono::steady_clock::time_point empty_look_at_;
  std::mutex mutex_;                                            // Guards the members below.
  std::optional<std::vector<std::string>> topics_;              // Unset until the first Subscribe.
  std::set<std::string, std::less<>> in_flight_;                // Job ids this session holds.
  std::vector<std::string> pending_acks_;                       // Acked, rows not yet deleted.
  std::chrono::steady_clock::time_point first_pending_ack_at_;  // When the oldest was acked.
  std::chrono::steady_clock::time_point next_reclaim_;

  // Guards the listener state: held across a read and the advance of last_seen_broadcast_, so
  // two concurrent ReceiveBroadcasts never return the same message. Independent of mutex_.
  std::mutex broadcast_mutex_;
  std::optional<std::vector<std::string>> channels_;  // Unset until the first Listen.
  std::int64_t last_seen_broadcast_ = 0;
};

}  // namespace clinker::adapters::sqlite
