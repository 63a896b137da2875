#include "clinker/adapters/sqlite/sqlite_job_queue.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clinker/core/assert.h"
#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"

namespace clinker::adapters::sqlite {

// Wakes the receivers of one database file in this process when something they may be waiting
// for happened (a publish, an ack, a requeue, a broadcast). Each event names a key (a topic, a
// session, the broadcasts), and a waiter wakes only for the keys it named: a publish to the
// volume topic does not make the scheduler or the broadcast listeners look at the database.
// Generation counters instead of flags, so that an event between a receiver's failed claim and
// its wait is not lost.
class QueueNotifier {
 public:
  // One notifier per database file per process. Entries die with their last session.
  static std::shared_ptr<QueueNotifier> ForDatabase(const std::string& key) {
    // Leaked on purpose: sessions may be destroyed during static destruction.
    static auto* registry_mutex = new std::mutex;
    static auto* registry = new std::map<std::string, std::weak_ptr<QueueNotifier>>;
    std::lock_guard lock(*registry_mutex);
    std::erase_if(*registry, [](const auto& entry) { return entry.second.expired(); });
    std::weak_ptr<QueueNotifier>& slot = (*registry)[key];
    std::shared_ptr<QueueNotifier> notifier = slot.lock();
    if (notifier == nullptr) {
      notifier = std::make_shared<QueueNotifier>();
      slot = notifier;
    }
    return notifier;
  }

  // The sum of the generations of `keys`: it only grows, and grows with any of them.
  std::uint64_t Generation(const std::vector<std::string>& keys) {
    std::lock_guard lock(mutex_);
    return SumLocked(keys);
  }

  void Notify(std::string_view key) {
    {
      std::lock_guard lock(mutex_);
      auto found = generations_.find(key);
      if (found == generations_.end()) {
        found = generations_.emplace(std::string(key), 0).first;
      }
      ++found->second;
    }
    changed_.notify_all();
  }

  // Returns when the generation of `keys` differs from `seen` or at `deadline`, whichever comes
  // first.
  void WaitUntil(const std::vector<std::string>& keys,
                 std::uint64_t seen,
                 std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, deadline, [&] { return SumLocked(keys) != seen; });
  }

 private:
  std::uint64_t SumLocked(const std::vector<std::string>& keys) const {
    std::uint64_t sum = 0;
    for (const std::string& key : keys) {
      auto found = generations_.find(key);
      if (found != generations_.end()) {
        sum += found->second;
      }
    }
    return sum;
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  // A key per topic, session and the broadcasts; a handful per process, never erased.
  std::map<std::string, std::uint64_t, std::less<>> generations_;
};

namespace {

// Version N is element N-1; never edit a shipped migration, append a new one.
constexpr std::array<std::string_view, 2> kMigrations = {
    // seq orders jobs by publish time (an INTEGER PRIMARY KEY only grows while rows exist, which
    // is all FIFO needs). owner_session is set exactly when state is 'in_flight'.
    "CREATE TABLE queue_jobs ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  topic TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('ready', 'in_flight')),"
    "  owner_session TEXT,"
    "  delivery_count INTEGER NOT NULL DEFAULT 0,"
    "  redelivered INTEGER NOT NULL DEFAULT 0,"
    "  published_at TEXT NOT NULL,"
    "  claimed_at TEXT,"
    "  CHECK ((state = 'in_flight') = (owner_session IS NOT NULL))"
    ");"
    "CREATE INDEX queue_jobs_by_topic ON queue_jobs (topic, state, seq);"
    "CREATE INDEX queue_jobs_by_owner ON queue_jobs (owner_session)"
    "  WHERE owner_session IS NOT NULL;",
    // Broadcasts (not jobs): AUTOINCREMENT so seq never goes back once pruning has emptied the
    // table, as listeners compare against the last seq they read. sent_at is Unix milliseconds,
    // compared by the pruning DELETE.
    "CREATE TABLE queue_broadcasts ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  channel TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  sent_at INTEGER NOT NULL"
    ");"
    "CREATE INDEX queue_broadcasts_by_time ON queue_broadcasts (sent_at);",
};

// Rows one ReceiveBroadcasts returns at most; the rest come with the next call.
constexpr std::int64_t kBroadcastBatchMax = 1000;

constexpr std::string_view kLockSuffix = ".lock";

// A receiver skips its look when a sibling of its session found nothing at the same generation
// less than poll_interval / kSiblingLookShare ago; a job another process published in that
// window is then seen by the next look, so within 1.1 x poll_interval instead of poll_interval.
constexpr int kSiblingLookShare = 10;

// Notifier keys (QueueNotifier): jobs of a topic became ready; a session's state changed (a slot
// freed, new topics); jobs of unknown topics became ready (reclaimed); a broadcast was sent.
std::string TopicKey(std::string_view topic) {
  return "topic:" + std::string(topic);
}

std::string SessionKey(std::string_view session_id) {
  return "session:" + std::string(session_id);
}

constexpr std::string_view kReclaimedKey = "reclaimed";
constexpr std::string_view kBroadcastKey = "broadcast";

std::string ErrnoText(int error) {
  return std::system_category().message(error);
}

std::string Now() {
  return FormatTimestamp(std::chrono::system_clock::now());
}

std::int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The notifier key: two spellings of one file must meet in one notifier.
std::string NotifierKey(const std::string& path) {
  std::error_code error;
  std::filesystem::path canonical = std::filesystem::weakly_canonical(path, error);
  return error ? path : canonical.string();
}

// Creates and locks a fresh lock file. The lock is only valid if the file is still linked at
// `path` after flock: a concurrent CollectOrphanLockFiles may have taken and unlinked it between
// our create and our flock, in which case the caller tries again under a new name.
Result<int> CreateSessionLock(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    int error = errno;
    return MakeError(error == EEXIST ? ErrorCode::kConflict : ErrorCode::kUnavailable,
                     "create session lock " + path + ": " + ErrnoText(error));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int error = errno;
    ::close(fd);
    return MakeError(ErrorCode::kConflict, "lock session file " + path + ": " + ErrnoText(error));
  }

  struct stat by_fd {};

  struct stat by_path {};

  if (::fstat(fd, &by_fd) != 0 || ::stat(path.c_str(), &by_path) != 0 ||
      by_fd.st_ino != by_path.st_ino || by_fd.st_dev != by_path.st_dev) {
    ::close(fd);
    return MakeError(ErrorCode::kConflict, "session lock file " + path + " was replaced");
  }
  return fd;
}

enum class Liveness { kAlive, kDead, kUnknown };

// Decides whether the session owning `path` is alive by trying its lock. On kDead, *fd holds the
// lock (or is -1 if the file is gone); the caller unlinks the file and closes the fd. On
// kUnknown, *error is the errno.
Liveness ProbeSession(const std::string& path, int* fd, int* error) {
  *fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (*fd < 0) {
    *error = errno;
    return *error == ENOENT ? Liveness::kDead : Liveness::kUnknown;
  }
  if (::flock(*fd, LOCK_EX | LOCK_NB) == 0) {
    return Liveness::kDead;
  }
  *error = errno;
  ::close(*fd);
  *fd = -1;
  return *error == EWOULDBLOCK ? Liveness::kAlive : Liveness::kUnknown;
}

// Removes the lock files of sessions that died without jobs in flight, which nothing else would
// ever remove. Best effort: a failure only leaves a stale file behind.
void CollectOrphanLockFiles(const std::string& sessions_dir, const std::string& own_file) {
  std::error_code error;
  std::filesystem::directory_iterator it(sessions_dir, error);
  for (; !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    std::string name = it->path().filename().string();
    if (name == own_file || !name.ends_with(kLockSuffix)) {
      continue;
    }
    int fd = -1;
    int probe_error = 0;
    if (ProbeSession(it->path().string(), &fd, &probe_error) == Liveness::kDead && fd >= 0) {
      // Unlink while holding the lock, so no live session can be holding this file.
      ::unlink(it->path().c_str());
      ::close(fd);
    }
  }
}

Result<std::string> TextColumn(const Statement& statement, int index) {
  ports::Value value = statement.ColumnValue(index);
  if (auto* text = std::get_if<std::string>(&value)) {
    return std::move(*text);
  }
  return MakeError(ErrorCode::kInternal,
                   "queue_jobs column " + std::to_string(index) + " is not text");
}

Result<std::int64_t> IntegerColumn(const Statement& statement, int index) {
  ports::Value value = statement.ColumnValue(index);
  if (auto* number = std::get_if<std::int64_t>(&value)) {
    return *number;
  }
  return MakeError(ErrorCode::kInternal,
                   "queue_jobs column " + std::to_string(index) + " is not an integer");
}

// Sets every in-flight job of `owner` ready again, flagged redelivered.
Result<std::int64_t> RequeueSessionJobs(Database& database, const std::string& owner) {
  std::int64_t requeued = 0;
  auto body = [&](Database& db) -> Result<void> {
    CLINKER_ASSIGN_OR_RETURN(
        Statement update,
        db.Prepare("UPDATE queue_jobs SET state = 'ready', owner_session = NULL, "
                   "redelivered = 1, claimed_at = NULL "
                   "WHERE owner_session = ? AND state = 'in_flight'"));
    CLINKER_RETURN_IF_ERROR(update.Bind(1, owner));
    CLINKER_RETURN_IF_ERROR(update.Step());
    requeued = db.ChangedRows();
    return {};
  };
  CLINKER_RETURN_IF_ERROR(database.WriteTransaction(body));
  return requeued;
}

}  // namespace

Result<std::unique_ptr<SqliteJobQueue>> SqliteJobQueue::Open(const Options& options) {
  if (options.sessions_dir.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "job queue sessions_dir is empty");
  }
  if (options.max_in_flight < 1) {
    return MakeError(ErrorCode::kInvalidArgument, "job queue max_in_flight must be >= 1");
  }
  if (options.poll_interval.count() <= 0 || options.reclaim_interval.count() <= 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "job queue poll_interval and reclaim_interval must be > 0");
  }
  if (options.broadcast_retention.count() <= 0) {
    return MakeError(ErrorCode::kInvalidArgument, "job queue broadcast_retention must be > 0");
  }
  if (options.ack_delay.count() < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "job queue ack_delay must be >= 0");
  }
  std::error_code dir_error;
  std::filesystem::create_directories(options.sessions_dir, dir_error);
  if (dir_error) {
    return MakeError(ErrorCode::kUnavailable,
                     "create sessions dir " + options.sessions_dir + ": " + dir_error.message());
  }
  CLINKER_ASSIGN_OR_RETURN(std::unique_ptr<Database> database, Database::Open(options.database));
  CLINKER_RETURN_IF_ERROR(database->Migrate("queue", kMigrations));

  // A collision with a collector (see CreateSessionLock) is rare and cannot repeat for long.
  constexpr int kLockAttemptsMax = 10;
  std::string session_id;
  int lock_fd = -1;
  for (int attempt = 1; lock_fd < 0; ++attempt) {
    session_id = NewUuid();
    std::string path =
        (std::filesystem::path(options.sessions_dir) / (session_id + std::string(kLockSuffix)))
            .string();
    Result<int> fd = CreateSessionLock(path);
    if (fd) {
      lock_fd = *fd;
    } else if (fd.error().code != ErrorCode::kConflict || attempt >= kLockAttemptsMax) {
      return tl::unexpected(fd.error());
    }
  }

  auto notifier = QueueNotifier::ForDatabase(NotifierKey(database->path()));
  std::unique_ptr<SqliteJobQueue> queue(
      new SqliteJobQueue(options, std::move(database), session_id, lock_fd, std::move(notifier)));
  CollectOrphanLockFiles(options.sessions_dir, session_id + std::string(kLockSuffix));
  CLINKER_RETURN_IF_ERROR(queue->ReclaimDeadSessions());
  log::Debug("queue.session_opened",
             {{"session_id", queue->session_id_}, {"database", queue->database_->path()}});
  return queue;
}

SqliteJobQueue::SqliteJobQueue(Options options,
                               std::unique_ptr<Database> database,
                               std::string session_id,
                               int lock_fd,
                               std::shared_ptr<QueueNotifier> notifier)
    : options_(std::move(options)),
      database_(std::move(database)),
      session_id_(std::move(session_id)),
      lock_fd_(lock_fd),
      notifier_(std::move(notifier)),
      next_reclaim_(std::chrono::steady_clock::now() + options_.reclaim_interval) {}

SqliteJobQueue::~SqliteJobQueue() {
  // Acked jobs first, so they are not requeued below as if never done.
  if (std::vector<std::string> acks = TakePendingAcks(); !acks.empty()) {
    Result<std::optional<ports::Delivery>> flushed = Claim({}, acks);
    if (!flushed) {
      log::Warn("queue.ack_flush_failed",
                {{"session_id", session_id_}, {"error", flushed.error().ToString()}});
    }
  }
  Result<std::int64_t> requeued = RequeueSessionJobs(*database_, session_id_);
  if (!requeued) {
    // Not lost: the lock file goes away below, so the next reclaim by any session requeues them.
    log::Warn("queue.session_requeue_failed",
              {{"session_id", session_id_}, {"error", requeued.error().ToString()}});
  } else if (*requeued > 0) {
    notifier_->Notify(kReclaimedKey);
  }
  // Unlink before unlocking, so no other session can take the lock of a file about to vanish.
  ::unlink(LockPath(session_id_).c_str());
  ::close(lock_fd_);
}

std::string SqliteJobQueue::LockPath(std::string_view session_id) const {
  return (std::filesystem::path(options_.sessions_dir) /
          (std::string(session_id) + std::string(kLockSuffix)))
      .string();
}

Result<std::string> SqliteJobQueue::Publish(std::string_view topic, std::string_view payload) {
  if (topic.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "job topic is empty");
  }
  std::string id = NewUuid();
  auto body = [&](Database& db) -> Result<void> {
    CLINKER_ASSIGN_OR_RETURN(
        Statement insert,
        db.Prepare("INSERT INTO queue_jobs (id, topic, payload, state, published_at) "
                   "VALUES (?, ?, ?, 'ready', ?)"));
    CLINKER_RETURN_IF_ERROR(insert.Bind(1, id));
    CLINKER_RETURN_IF_ERROR(insert.Bind(2, std::string(topic)));
    CLINKER_RETURN_IF_ERROR(insert.Bind(3, std::string(payload)));
    CLINKER_RETURN_IF_ERROR(insert.Bind(4, Now()));
    CLINKER_RETURN_IF_ERROR(insert.Step());
    return {};
  };
  CLINKER_RETURN_IF_ERROR(database_->WriteTransaction(body));
  notifier_->Notify(TopicKey(topic));
  return id;
}

Result<void> SqliteJobQueue::Subscribe(const std::vector<std::string>& topics) {
  for (const std::string& topic : topics) {
    if (topic.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "subscribed topic is empty");
    }
  }
  {
    std::lock_guard lock(mutex_);
    topics_ = topics;
  }
  // A Receive already waiting must look at (and wait for) the new topics.
  notifier_->Notify(SessionKey(session_id_));
  return {};
}

std::vector<std::string> SqliteJobQueue::TakePendingAcks(
    std::chrono::steady_clock::time_point* acked_at) {
  std::lock_guard lock(mutex_);
  if (acked_at != nullptr) {
    *acked_at = first_pending_ack_at_;
  }
  return std::exchange(pending_acks_, {});
}

void SqliteJobQueue::RestorePendingAcks(const std::vector<std::string>& acks,
                                        std::chrono::steady_clock::time_point acked_at) {
  if (acks.empty()) {
    return;
  }
  std::lock_guard lock(mutex_);
  first_pending_ack_at_ =
      pending_acks_.empty() ? acked_at : std::min(first_pending_ack_at_, acked_at);
  pending_acks_.insert(pending_acks_.begin(), acks.begin(), acks.end());
}

Result<bool> SqliteJobQueue::AnyReady(const std::vector<std::string>& topics) {
  std::string sql = "SELECT 1 FROM queue_jobs WHERE state = 'ready' AND topic IN (?";
  for (std::size_t i = 1; i < topics.size(); ++i) {
    sql += ", ?";
  }
  sql += ") LIMIT 1";
  bool ready = false;
  auto body = [&](Database& db) -> Result<void> {
    CLINKER_ASSIGN_OR_RETURN(Statement query, db.Prepare(sql));
    for (std::size_t i = 0; i < topics.size(); ++i) {
      CLINKER_RETURN_IF_ERROR(query.Bind(static_cast<int>(i) + 1, topics[i]));
    }
    CLINKER_ASSIGN_OR_RETURN(ready, query.Step());
    return {};
  };
  CLINKER_RETURN_IF_ERROR(database_->Read(body));
  return ready;
}

Result<std::optional<ports::Delivery>> SqliteJobQueue::Claim(const std::vector<std::string>& topics,
                                                             const std::vector<std::string>& acks) {
  CLINKER_ASSERT(!topics.empty() || !acks.empty(), "a claim needs topics or acks");
  std::string sql =
      "UPDATE queue_jobs SET state = 'in_flight', owner_session = ?, claimed_at = ?, "
      "delivery_count = delivery_count + 1 "
      "WHERE seq = (SELECT seq FROM queue_jobs WHERE state = 'ready' AND topic IN (?";
  for (std::size_t i = 1; i < topics.size(); ++i) {
    sql += ", ?";
  }
  sql += ") ORDER BY seq LIMIT 1) RETURNING id, topic, payload, redelivered, delivery_count";

  std::optional<ports::Delivery> delivery;
  auto body = [&](Database& db) -> Result<void> {
    delivery.reset();  // The transaction may run again after SQLITE_BUSY.
    for (const std::string& job_id : acks) {
      CLINKER_ASSIGN_OR_RETURN(
          Statement remove,
          db.Prepare("DELETE FROM queue_jobs WHERE id = ? AND owner_session = ? "
                     "AND state = 'in_flight'"));
      CLINKER_RETURN_IF_ERROR(remove.Bind(1, job_id));
      CLINKER_RETURN_IF_ERROR(remove.Bind(2, session_id_));
      CLINKER_RETURN_IF_ERROR(remove.Step());
    }
    if (topics.empty()) {
      return {};
    }
    CLINKER_ASSIGN_OR_RETURN(Statement claim, db.Prepare(sql));
    CLINKER_RETURN_IF_ERROR(claim.Bind(1, session_id_));
    CLINKER_RETURN_IF_ERROR(claim.Bind(2, Now()));
    for (std::size_t i = 0; i < topics.size(); ++i) {
      CLINKER_RETURN_IF_ERROR(claim.Bind(static_cast<int>(i) + 3, topics[i]));
    }
    CLINKER_ASSIGN_OR_RETURN(bool row, claim.Step());
    if (!row) {
      return {};
    }
    ports::Delivery claimed;
    CLINKER_ASSIGN_OR_RETURN(claimed.job_id, TextColumn(claim, 0));
    CLINKER_ASSIGN_OR_RETURN(claimed.topic, TextColumn(claim, 1));
    CLINKER_ASSIGN_OR_RETURN(claimed.payload, TextColumn(claim, 2));
    CLINKER_ASSIGN_OR_RETURN(std::int64_t redelivered, IntegerColumn(claim, 3));
    CLINKER_ASSIGN_OR_RETURN(claimed.delivery_count, IntegerColumn(claim, 4));
    claimed.redelivered = redelivered != 0;
    CLINKER_ASSIGN_OR_RETURN(bool more, claim.Step());
    CLINKER_ASSERT(!more, "a claim updates at most one row");
    CLINKER_ASSERT(claimed.delivery_count >= 1, "a claimed job has been delivered");
    delivery = std::move(claimed);
    return {};
  };
  CLINKER_RETURN_IF_ERROR(database_->WriteTransaction(body));
  return delivery;
}

Result<std::optional<ports::Delivery>> SqliteJobQueue::Receive(std::chrono::milliseconds wait) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + wait;
  {
    std::lock_guard lock(mutex_);
    if (!topics_.has_value()) {
      return MakeError(ErrorCode::kInvalidArgument, "Receive before Subscribe");
    }
  }
  std::vector<std::string> wake_keys;
  while (true) {
    bool reclaim_due = false;
    std::vector<std::string> topics;
    bool slot_free = false;
    Clock::time_point next_reclaim;
    std::uint64_t seen = 0;
    std::optional<Clock::time_point> ack_due;  // When pending acks must be written alone.
    {
      std::lock_guard lock(mutex_);
      Clock::time_point now = Clock::now();
      if (now >= next_reclaim_) {
        next_reclaim_ = now + options_.reclaim_interval;
        reclaim_due = true;
      }
      next_reclaim = next_reclaim_;
      topics = *topics_;
      wake_keys.clear();
      for (const std::string& topic : topics) {
        wake_keys.push_back(TopicKey(topic));
      }
      wake_keys.push_back(SessionKey(session_id_));
      wake_keys.emplace_back(kReclaimedKey);
      // Read before looking (and with the topics, under mutex_: a Subscribe after this notifies
      // the session key), so an event that lands after the look still ends the wait below.
      seen = notifier_->Generation(wake_keys);
    }
    if (reclaim_due) {
      Result<std::int64_t> reclaimed = ReclaimDeadSessions();
      if (!reclaimed) {
        // Receiving must go on; the next interval tries again.
        log::Warn("queue.reclaim_failed",
                  {{"session_id", session_id_}, {"error", reclaimed.error().ToString()}});
      }
    }

    if (!topics.empty()) {
      // Claims of one session are serialised anyway by its single connection; holding
      // claim_mutex_ across the claim makes the in-flight bound exact.
      std::lock_guard claim_lock(claim_mutex_);
      {
        std::lock_guard lock(mutex_);
        slot_free = in_flight_.size() < static_cast<std::size_t>(options_.max_in_flight);
      }
      Clock::time_point acked_at;
      std::vector<std::string> acks = TakePendingAcks(&acked_at);
      bool look = slot_free;
      if (look && empty_look_keys_ == wake_keys && empty_look_generation_ == seen &&
          Clock::now() - empty_look_at_ < options_.poll_interval / kSiblingLookShare) {
        // A receiver of this session woken by the same event (a publish wakes them all) already
        // looked after this generation and found nothing: looking again would find nothing too.
        look = false;
      }
      if (look) {
        // Nothing to write unless a job is there to claim: check with a lock-free read.
        Result<bool> ready = AnyReady(topics);
        look = !ready || *ready;  // On a read error, let the claim report it.
        if (ready && !*ready) {
          empty_look_keys_ = wake_keys;
          empty_look_generation_ = seen;
          empty_look_at_ = Clock::now();
        }
      }
      // Acks ride on a claim; with no job to claim they wait up to ack_delay for one, and are
      // then written alone.
      const bool write_acks =
          !acks.empty() && (look || Clock::now() - acked_at >= options_.ack_delay);
      if (look || write_acks) {
        Result<std::optional<ports::Delivery>> delivery =
            Claim(look ? topics : std::vector<std::string>{},
                  write_acks ? acks : std::vector<std::string>{});
        if (!delivery) {
          RestorePendingAcks(acks, acked_at);
          return tl::unexpected(std::move(delivery).error());
        }
        if (!write_acks) {
          RestorePendingAcks(acks, acked_at);
        }
        if (delivery->has_value()) {
          std::lock_guard lock(mutex_);
          in_flight_.insert((*delivery)->job_id);
          return delivery;
        }
      } else if (!acks.empty()) {
        RestorePendingAcks(acks, acked_at);
      }
      if (!acks.empty() && !write_acks) {
        ack_due = acked_at + options_.ack_delay;
      }
    }

    Clock::time_point now = Clock::now();
    if (now >= deadline) {
      return std::nullopt;
    }
    Clock::time_point wake = std::min({deadline, now + options_.poll_interval, next_reclaim});
    if (ack_due) {
      wake = std::min(wake, *ack_due);
    }
    notifier_->WaitUntil(wake_keys, seen, wake);
  }
}

Result<void> SqliteJobQueue::Ack(const ports::Delivery& delivery) {
  // Recorded even when in_flight_ does not know the job: a claim whose commit reported an error
  // may still have landed, and its ack must then remove it (the delete matches nothing
  // otherwise).
  bool freed = false;
  {
    std::lock_guard lock(mutex_);
    freed = in_flight_.erase(delivery.job_id) > 0;
    if (std::find(pending_acks_.begin(), pending_acks_.end(), delivery.job_id) ==
        pending_acks_.end()) {
      if (pending_acks_.empty()) {
        first_pending_ack_at_ = std::chrono::steady_clock::now();
      }
      pending_acks_.push_back(delivery.job_id);
    }
  }
  if (freed) {
    // A Receive of this session may be waiting for a free slot.
    notifier_->Notify(SessionKey(session_id_));
  }
  return {};
}

Result<void> SqliteJobQueue::Requeue(const ports::Delivery& delivery) {
  std::int64_t changed = 0;
  auto body = [&](Database& db) -> Result<void> {
    CLINKER_ASSIGN_OR_RETURN(
        Statement update,
        db.Prepare("UPDATE queue_jobs SET state = 'ready', owner_session = NULL, "
                   "redelivered = 1, claimed_at = NULL "
                   "WHERE id = ? AND owner_session = ? AND state = 'in_flight'"));
    CLINKER_RETURN_IF_ERROR(update.Bind(1, delivery.job_id));
    CLINKER_RETURN_IF_ERROR(update.Bind(2, session_id_));
    CLINKER_RETURN_IF_ERROR(update.Step());
    changed = db.ChangedRows();
    return {};
  };
  CLINKER_RETURN_IF_ERROR(database_->WriteTransaction(body));
  bool freed = false;
  {
    std::lock_guard lock(mutex_);
    freed = in_flight_.erase(delivery.job_id) > 0;
  }
  if (changed > 0) {
    notifier_->Notify(TopicKey(delivery.topic));
  }
  if (freed) {
    notifier_->Notify(SessionKey(session_id_));
  }
  return {};
}

Result<std::int64_t> SqliteJobQueue::ReclaimDeadSessions() {
  std::vector<std::string> owners;
  auto body = [&](Database& db) -> Result<void> {
    owners.clear();
    CLINKER_ASSIGN_OR_RETURN(Statement select,
                             db.Prepare("SELECT DISTINCT owner_session FROM queue_jobs "
                                        "WHERE owner_session IS NOT NULL AND owner_session <> ?"));
    CLINKER_RETURN_IF_ERROR(select.Bind(1, session_id_));
    while (true) {
      CLINKER_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) {
        return {};
      }
      CLINKER_ASSIGN_OR_RETURN(std::string owner, TextColumn(select, 0));
      owners.push_back(std::move(owner));
    }
  };
  CLINKER_RETURN_IF_ERROR(database_->Read(body));

  std::int64_t reclaimed = 0;
  for (const std::string& owner : owners) {
    // The id names a file: never let a stray value reach outside sessions_dir.
    if (!IsUuid(owner)) {
      log::Warn("queue.bad_owner_session", {{"owner_session", owner}});
      continue;
    }
    std::string path = LockPath(owner);
    int fd = -1;
    int probe_error = 0;
    Liveness liveness = ProbeSession(path, &fd, &probe_error);
    if (liveness == Liveness::kUnknown) {
      log::Warn("queue.session_probe_failed",
                {{"owner_session", owner}, {"lock_file", path}, {"error", ErrnoText(probe_error)}});
      continue;
    }
    if (liveness == Liveness::kAlive) {
      continue;
    }
    Result<std::int64_t> requeued = RequeueSessionJobs(*database_, owner);
    if (requeued && fd >= 0) {
      // Only once its jobs are back: until then the file (unlocked) still marks it dead.
      ::unlink(path.c_str());
    }
    if (fd >= 0) {
      ::close(fd);
    }
    CLINKER_RETURN_IF_ERROR(requeued);
    if (*requeued > 0) {
      log::Info("queue.jobs_reclaimed",
                {{"dead_session", owner},
                 {"session_id", session_id_},
                 {"jobs", static_cast<long long>(*requeued)}});
    }
    reclaimed += *requeued;
  }
  if (reclaimed > 0) {
    notifier_->Notify(kReclaimedKey);
  }
  return reclaimed;
}

Result<void> SqliteJobQueue::Broadcast(std::string_view channel, std::string_view payload) {
  if (channel.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "broadcast channel is empty");
  }
  std::int64_t now = NowMillis();
  auto body = [&](Database& db) -> Result<void> {
    CLINKER_ASSIGN_OR_RETURN(Statement prune,
                             db.Prepare("DELETE FROM queue_broadcasts WHERE sent_at < ?"));
    CLINKER_RETURN_IF_ERROR(prune.Bind(1, now - options_.broadcast_retention.count()));
    CLINKER_RETURN_IF_ERROR(prune.Step());
    CLINKER_ASSIGN_OR_RETURN(
        Statement insert,
        db.Prepare("INSERT INTO queue_broadcasts (channel, payload, sent_at) VALUES (?, ?, ?)"));
    CLINKER_RETURN_IF_ERROR(insert.Bind(1, std::string(channel)));
    CLINKER_RETURN_IF_ERROR(insert.Bind(2, std::string(payload)));
    CLINKER_RETURN_IF_ERROR(insert.Bind(3, now));
    CLINKER_RETURN_IF_ERROR(insert.Step());
    return {};
  };
  CLINKER_RETURN_IF_ERROR(database_->WriteTransaction(body));
  notifier_->Notify(kBroadcastKey);
  return {};
}

Result<void> SqliteJobQueue::Listen(const std::vector<std::string>& channels) {
  for (const std::string& channel : channels) {
    if (channel.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "listened channel is empty");
    }
  }
  std::lock_guard lock(broadcast_mutex_);
  if (!channels_.has_value()) {
    // Start after what is already there: a new listener gets what is sent from now on.
    std::int64_t max_seq = 0;
    auto body = [&](Database& db) -> Result<void> {
      CLINKER_ASSIGN_OR_RETURN(Statement query,
                               db.Prepare("SELECT COALESCE(MAX(seq), 0) FROM queue_broadcasts"));
      CLINKER_ASSIGN_OR_RETURN(bool row, query.Step());
      CLINKER_ASSERT(row, "an aggregate query returns one row");
      CLINKER_ASSIGN_OR_RETURN(max_seq, IntegerColumn(query, 0));
      return {};
    };
    CLINKER_RETURN_IF_ERROR(database_->Read(body));
    last_seen_broadcast_ = max_seq;
  }
  channels_ = channels;
  return {};
}

Result<std::vector<ports::BroadcastMessage>> SqliteJobQueue::ReadBroadcastsLocked() {
  std::vector<ports::BroadcastMessage> messages;
  std::int64_t last_seen = last_seen_broadcast_;
  auto body = [&](Database& db) -> Result<void> {
    messages.clear();  // The read may run again.
    last_seen = last_seen_broadcast_;
    // Every channel's rows, filtered here: last_seen must pass the rows of other channels too.
    CLINKER_ASSIGN_OR_RETURN(Statement query,
                             db.Prepare("SELECT seq, channel, payload FROM queue_broadcasts "
                                        "WHERE seq > ? ORDER BY seq LIMIT ?"));
    CLINKER_RETURN_IF_ERROR(query.Bind(1, last_seen_broadcast_));
    CLINKER_RETURN_IF_ERROR(query.Bind(2, kBroadcastBatchMax));
    while (true) {
      CLINKER_ASSIGN_OR_RETURN(bool row, query.Step());
      if (!row) {
        return {};
      }
      CLINKER_ASSIGN_OR_RETURN(last_seen, IntegerColumn(query, 0));
      CLINKER_ASSIGN_OR_RETURN(std::string channel, TextColumn(query, 1));
      if (std::find(channels_->begin(), channels_->end(), channel) == channels_->end()) {
        continue;
      }
      CLINKER_ASSIGN_OR_RETURN(std::string payload, TextColumn(query, 2));
      messages.push_back(
          ports::BroadcastMessage{.channel = std::move(channel), .payload = std::move(payload)});
    }
  };
  CLINKER_RETURN_IF_ERROR(database_->Read(body));
  last_seen_broadcast_ = last_seen;
  return messages;
}

Result<std::vector<ports::BroadcastMessage>> SqliteJobQueue::ReceiveBroadcasts(
    std::chrono::milliseconds wait) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + wait;
  const std::vector<std::string> broadcast_keys = {std::string(kBroadcastKey)};
  while (true) {
    // Read before looking, so a broadcast that lands after the look still ends the wait below.
    std::uint64_t seen = notifier_->Generation(broadcast_keys);
    {
      std::lock_guard lock(broadcast_mutex_);
      if (!channels_.has_value()) {
        return MakeError(ErrorCode::kInvalidArgument, "ReceiveBroadcasts before Listen");
      }
      CLINKER_ASSIGN_OR_RETURN(std::vector<ports::BroadcastMessage> messages,
                               ReadBroadcastsLocked());
      if (!messages.empty()) {
        return messages;
      }
    }
    Clock::time_point now = Clock::now();
    if (now >= deadline) {
      return std::vector<ports::BroadcastMessage>{};
    }
    notifier_->WaitUntil(broadcast_keys, seen, std::min(deadline, now + options_.poll_interval));
  }
}

}  // namespace clinker::adapters::sqlite
