#include "clinker/adapters/etcd/etcd_lock_manager.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "clinker/adapters/etcd/etcd_client.h"
#include "clinker/core/uuid.h"

namespace clinker::adapters::etcd {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24 * 365);
// Safety net for a watch that silently stopped delivering: waiters re-read this often.
constexpr std::chrono::milliseconds kFallbackRecheck{1000};

std::int64_t ToNanos(Clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

// '%' and '/' percent-encoded: the encoded name never contains the separator '/'.
std::string EncodeName(const std::string& name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (c == '%' || c == '/') {
      char buffer[4];
      std::snprintf(buffer, sizeof(buffer), "%%%02X", static_cast<unsigned char>(c));
      out += buffer;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

struct LeaseState {
  std::int64_t id = 0;
  std::string hex;
  // Grants of this lease are proven held while the steady clock is below this (nanoseconds).
  std::atomic<std::int64_t> valid_until_ns{0};
  std::atomic<bool> lost{false};

  bool Valid() const { return !lost.load() && ToNanos(Clock::now()) < valid_until_ns.load(); }
};

enum class GrantState { kHeld, kReleased, kLost };

struct Grant {
  std::string name;
  std::string key;
  std::uint64_t token = 0;
  std::shared_ptr<LeaseState> lease;
  std::atomic<GrantState> state{GrantState::kHeld};

  bool IsLost() const {
    const GrantState now = state.load();
    return now == GrantState::kLost ||
           (now == GrantState::kHeld && ToNanos(Clock::now()) >= lease->valid_until_ns.load());
  }
};

struct Waiter {
  std::string name_prefix;
  std::shared_ptr<LeaseState> lease;
  std::vector<EtcdWatch::Event> deleted;  // Deletions of this name seen since the last read.
  bool resync = false;                    // The watch restarted: re-read.
  std::condition_variable wake;
};

struct QueueEntry {
  bool admitted = false;
  int counted_cap = 0;  // The cap this request counts with (0: not counted).
  std::set<std::string> ahead;
  bool found = false;  // The request's own key was in the read.
};

// Decides from one read of a name's queue (ascending create_revision) whether the key `own` is
// granted. See the header for the rules.
QueueEntry Evaluate(const std::vector<KeyValue>& kvs, const std::string& own) {
  QueueEntry out;
  bool all_before_admitted = true;
  int counted = 0;
  int smallest = 0;
  bool first = true;
  for (const KeyValue& kv : kvs) {
    Json value = Json::parse(kv.value, nullptr, false);
    const bool exclusive = !value.is_object() || value.value("mode", "exclusive") != "shared";
    const int cap = value.is_object() ? value.value("max_readers", 0) : 0;
    const int recorded = value.is_object() ? value.value("counted_cap", 0) : 0;
    bool admitted = false;
    int effective = 0;
    if (exclusive) {
      admitted = first;
    } else if (all_before_admitted) {
      effective = cap;
      if (smallest > 0) {
        effective = cap == 0 ? smallest : std::min(cap, smallest);
      }
      if (recorded > 0) {
        effective = effective == 0 ? recorded : std::min(effective, recorded);
      }
      if (effective == 0) {
        admitted = true;
      } else if (counted < effective) {
        admitted = true;
        ++counted;
        smallest = smallest == 0 ? effective : std::min(smallest, effective);
      }
    }
    if (kv.key == own) {
      out.found = true;
      out.admitted = admitted;
      out.counted_cap = admitted ? effective : 0;
      return out;
    }
    out.ahead.insert(kv.key);
    if (!admitted || exclusive) {
      all_before_admitted = false;
    }
    first = false;
  }
  return out;
}

}  // namespace

struct EtcdLockManager::Core {
  explicit Core(Options opts)
      : options(std::move(opts)),
        client(EtcdClient::Options{options.host, options.port, options.request_timeout}) {}

  Options options;
  EtcdClient client;

  mutable std::mutex mutex;  // Guards everything below.
  std::condition_variable heartbeat_wake;
  bool stopping = false;
  std::shared_ptr<LeaseState> lease;
  std::map<std::string, std::shared_ptr<Grant>> grants;  // Live grants by key.
  std::multimap<std::string, Waiter*> waiters;           // By name prefix.
  std::vector<std::string> pending_deletes;
  ports::LockLostCallback on_lost;

  std::mutex lease_mutex;  // Serialises lease grants (network calls; not under `mutex`).
  std::unique_ptr<EtcdWatch> watch;
  std::thread heartbeat;

  // The lease for new requests, taking a new one if there is none or it was lost.
  Result<std::shared_ptr<LeaseState>> CurrentLease() {
    {
      std::lock_guard<std::mutex> guard(mutex);
      if (lease != nullptr && lease->Valid()) {
        return lease;
      }
    }
    std::lock_guard<std::mutex> serial(lease_mutex);
    {
      std::lock_guard<std::mutex> guard(mutex);
      if (lease != nullptr && lease->Valid()) {
        return lease;
      }
    }
    const Clock::time_point sent = Clock::now();
    auto granted = client.LeaseGrant(options.lease_ttl.count());
    if (!granted) {
      return MakeError(ErrorCode::kUnavailable,
                       "etcd lock manager: cannot take a lease: " + granted.error().message);
    }
    auto fresh = std::make_shared<LeaseState>();
    fresh->id = granted->id;
    char hex[20];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(granted->id));
    fresh->hex = hex;
    fresh->valid_until_ns.store(ToNanos(ValidUntil(sent, granted->ttl_seconds)));
    std::lock_guard<std::mutex> guard(mutex);
    lease = fresh;
    return fresh;
  }

  Clock::time_point ValidUntil(Clock::time_point sent, std::int64_t granted_ttl_seconds) const {
    const std::chrono::milliseconds ttl = std::min<std::chrono::milliseconds>(
        options.lease_ttl, std::chrono::seconds(granted_ttl_seconds));
    return sent + ttl - options.heartbeat_interval;
  }

  // Marks `lost_lease` lost, and every live grant of it; wakes its waiters. Returns the grants
  // whose callback must run (the caller runs it outside the mutex).
  std::vector<std::shared_ptr<Grant>> DeclareLost(const std::shared_ptr<LeaseState>& lost_lease) {
    std::vector<std::shared_ptr<Grant>> lost;
    std::lock_guard<std::mutex> guard(mutex);
    lost_lease->lost.store(true);
    for (auto it = grants.begin(); it != grants.end();) {
      if (it->second->lease == lost_lease) {
        GrantState expected = GrantState::kHeld;
        if (it->second->state.compare_exchange_strong(expected, GrantState::kLost)) {
          lost.push_back(it->second);
        }
        it = grants.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [prefix, waiter] : waiters) {
      if (waiter->lease == lost_lease) {
        waiter->wake.notify_all();
      }
    }
    if (lease == lost_lease) {
      lease = nullptr;
    }
    return lost;
  }

  void RunCallbacks(const std::vector<std::shared_ptr<Grant>>& lost) {
    ports::LockLostCallback callback;
    {
      std::lock_guard<std::mutex> guard(mutex);
      callback = on_lost;
    }
    if (!callback) {
      return;
    }
    for (const auto& grant : lost) {
      callback(grant->name, grant->token);
    }
  }

  void DeleteOrRetryLater(const std::string& key) {
    if (!client.Delete(key)) {
      std::lock_guard<std::mutex> guard(mutex);
      pending_deletes.push_back(key);
    }
  }

  void RunHeartbeat() {
    int missed = 0;
    std::shared_ptr<LeaseState> beating;
    while (true) {
      const Clock::time_point sent = Clock::now();
      {
        std::lock_guard<std::mutex> guard(mutex);
        if (stopping) {
          return;
        }
        beating = lease;
      }
      if (beating == nullptr) {
        // Lost earlier: take a fresh lease for later requests (CurrentLease retries next beat).
        missed = 0;
        (void)CurrentLease();
      } else {
        auto ttl = client.LeaseKeepAlive(beating->id, options.heartbeat_interval);
        bool lost_now = false;
        if (ttl && *ttl > 0) {
          missed = 0;
          // Counted from the send time: etcd restarted the TTL later than that.
          const std::int64_t until = ToNanos(ValidUntil(sent, *ttl));
          if (until > beating->valid_until_ns.load()) {
            beating->valid_until_ns.store(until);
          }
        } else if (ttl) {
          lost_now = true;  // etcd says the lease is gone.
        } else {
          ++missed;
        }
        if (missed >= options.missed_heartbeats ||
            ToNanos(Clock::now()) >= beating->valid_until_ns.load()) {
          lost_now = true;
        }
        if (lost_now) {
          missed = 0;
          RunCallbacks(DeclareLost(beating));
          // Frees the keys at once if etcd hears us; otherwise they expire with the lease.
          (void)client.LeaseRevoke(beating->id);
          (void)CurrentLease();
        }
      }
      std::vector<std::string> retry;
      {
        std::lock_guard<std::mutex> guard(mutex);
        retry.swap(pending_deletes);
      }
      for (const std::string& key : retry) {
        DeleteOrRetryLater(key);
      }
      std::unique_lock<std::mutex> guard(mutex);
      heartbeat_wake.wait_until(guard, sent + options.heartbeat_interval, [&] { return stopping; });
    }
  }

  void OnWatchEvents(const std::vector<EtcdWatch::Event>& events) {
    const std::string& prefix = options.key_prefix;
    std::lock_guard<std::mutex> guard(mutex);
    for (const EtcdWatch::Event& event : events) {
      if (event.key.compare(0, prefix.size(), prefix) != 0) {
        continue;
      }
      const std::size_t slash = event.key.find('/', prefix.size());
      if (slash == std::string::npos) {
        continue;
      }
      auto [first, last] = waiters.equal_range(event.key.substr(0, slash + 1));
      for (auto it = first; it != last; ++it) {
        it->second->deleted.push_back(event);
        it->second->wake.notify_all();
      }
    }
  }

  void OnWatchCreated() {
    // A new stream: whatever happened while there was none is re-read by every waiter.
    std::lock_guard<std::mutex> guard(mutex);
    for (auto& [prefix, waiter] : waiters) {
      waiter->resync = true;
      waiter->wake.notify_all();
    }
  }

  void Unregister(Waiter* waiter) {
    std::lock_guard<std::mutex> guard(mutex);
    auto [first, last] = waiters.equal_range(waiter->name_prefix);
    for (auto it = first; it != last; ++it) {
      if (it->second == waiter) {
        waiters.erase(it);
        return;
      }
    }
  }
};

namespace {

class EtcdLock final : public ports::Lock {
 public:
  EtcdLock(std::shared_ptr<EtcdLockManager::Core> core,
           std::shared_ptr<Grant> grant,
           ports::LockMode mode)
      : core_(std::move(core)), grant_(std::move(grant)), mode_(mode) {}

  EtcdLock(const EtcdLock&) = delete;
  EtcdLock& operator=(const EtcdLock&) = delete;

  ~EtcdLock() override { Release(); }

  const std::string& name() const override { return grant_->name; }

  ports::LockMode mode() const override { return mode_; }

  std::uint64_t fencing_token() const override { return grant_->token; }

  bool IsLost() const override { return grant_->IsLost(); }

  void Release() override {
    GrantState expected = GrantState::kHeld;
    if (!grant_->state.compare_exchange_strong(expected, GrantState::kReleased)) {
      return;  // Released before, or lost (the lease revoke or expiry removes the key).
    }
    {
      std::lock_guard<std::mutex> guard(core_->mutex);
      core_->grants.erase(grant_->key);
    }
    core_->DeleteOrRetryLater(grant_->key);
  }

 private:
  std::shared_ptr<EtcdLockManager::Core> core_;
  std::shared_ptr<Grant> grant_;
  ports::LockMode mode_;
};

}  // namespace

Result<void> EtcdLockManager::ValidateOptions(const Options& options) {
  const auto ttl_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options.lease_ttl);
  const std::string values =
      "lease_ttl=" + std::to_string(options.lease_ttl.count()) +
      "s, heartbeat_interval=" + std::to_string(options.heartbeat_interval.count()) +
      "ms, missed_heartbeats=" + std::to_string(options.missed_heartbeats);
  if (options.lease_ttl.count() <= 0 || options.heartbeat_interval.count() <= 0 ||
      options.missed_heartbeats <= 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "etcd lock manager: lease_ttl, heartbeat_interval and missed_heartbeats "
                     "must be positive (" +
                         values + ")");
  }
  const auto needed = options.heartbeat_interval * (options.missed_heartbeats + 1);
  if (ttl_ms <= needed) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "etcd lock manager: lease_ttl must exceed (missed_heartbeats + 1) x "
                     "heartbeat_interval = " +
                         std::to_string(needed.count()) +
                         "ms, so that the lease is declared lost before etcd expires it (" +
                         values + ")");
  }
  if (options.request_timeout.count() <= 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "etcd lock manager: request_timeout must be positive");
  }
  if (options.host.empty() || options.port <= 0 || options.port > 65535) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "etcd lock manager: bad endpoint " + options.host + ":" + std::to_string(options.port));
  }
  if (options.key_prefix.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "etcd lock manager: key_prefix is empty");
  }
  return {};
}

Result<std::unique_ptr<EtcdLockManager>> EtcdLockManager::Open(Options options) {
  CLINKER_RETURN_IF_ERROR(ValidateOptions(options));
  auto core = std::make_shared<Core>(std::move(options));
  CLINKER_RETURN_IF_ERROR(core->CurrentLease());
  // Raw pointer: the watch and the heartbeat thread are stopped in ~EtcdLockManager, before
  // the Core can go.
  Core* raw = core.get();
  core->watch = std::make_unique<EtcdWatch>(
      core->client.options(),
      core->options.key_prefix,
      [raw](const std::vector<EtcdWatch::Event>& events) { raw->OnWatchEvents(events); },
      [raw, first = true](std::int64_t, bool) mutable {
        if (!first) {
          raw->OnWatchCreated();
        }
        first = false;
      });
  std::unique_ptr<EtcdLockManager> manager(new EtcdLockManager(core));
  if (!core->watch->WaitCreated(core->options.request_timeout)) {
    return MakeError(
        ErrorCode::kUnavailable,
        "etcd lock manager: the watch on " + core->options.key_prefix + " did not start");
  }
  return manager;
}

EtcdLockManager::EtcdLockManager(std::shared_ptr<Core> core) : core_(std::move(core)) {
  core_->heartbeat = std::thread([core = core_.get()] { core->RunHeartbeat(); });
}

EtcdLockManager::~EtcdLockManager() {
  {
    std::lock_guard<std::mutex> guard(core_->mutex);
    core_->stopping = true;
    core_->heartbeat_wake.notify_all();
  }
  core_->heartbeat.join();
  core_->watch.reset();
  std::shared_ptr<LeaseState> lease;
  std::vector<std::string> pending;
  {
    std::lock_guard<std::mutex> guard(core_->mutex);
    lease = core_->lease;
    core_->lease = nullptr;
    pending.swap(core_->pending_deletes);
  }
  if (lease != nullptr) {
    // No callbacks: the manager is going away on purpose.
    (void)core_->DeclareLost(lease);
    (void)core_->client.LeaseRevoke(lease->id);
  }
  for (const std::string& key : pending) {
    (void)core_->client.Delete(key);
  }
}

Result<ports::LockPtr> EtcdLockManager::Acquire(const ports::LockRequest& request,
                                                std::chrono::milliseconds timeout) {
  const Clock::time_point deadline =
      Clock::now() + std::clamp(timeout, std::chrono::milliseconds(0), kMaxTimeout);
  CLINKER_RETURN_IF_ERROR(ports::ValidateLockRequest(request));
  CLINKER_ASSIGN_OR_RETURN(std::shared_ptr<LeaseState> lease, core_->CurrentLease());
  const bool exclusive = request.mode == ports::LockMode::kExclusive;
  const std::string name_prefix = core_->options.key_prefix + EncodeName(request.name) + "/";
  const std::string key = name_prefix + lease->hex + "-" + NewUuid();
  Json value = {{"mode", std::string(ports::LockModeName(request.mode))},
                {"max_readers", request.max_readers}};

  Waiter waiter;
  waiter.name_prefix = name_prefix;
  waiter.lease = lease;
  {
    std::lock_guard<std::mutex> guard(core_->mutex);
    core_->waiters.emplace(name_prefix, &waiter);
  }

  // Unregisters the waiter on every way out.
  const auto unregister = [core = core_.get()](Waiter* registered) {
    core->Unregister(registered);
  };
  const std::unique_ptr<Waiter, decltype(unregister)> registration(&waiter, unregister);

  // One round trip: the new key and the queue as it stands right after it.
  auto txn = core_->client.Txn(
      {}, {TxnOp::Put(key, value.dump(), lease->id), TxnOp::RangePrefix(name_prefix)}, {});
  if (!txn || !txn->succeeded || txn->ranges.size() != 2) {
    core_->DeleteOrRetryLater(key);  // The put may have been applied.
    return MakeError(
        ErrorCode::kUnavailable,
        "etcd lock manager: cannot queue for " + request.name +
            (txn ? std::string(": unexpected txn answer") : ": " + txn.error().message));
  }
  const std::int64_t own_revision = txn->revision;
  std::int64_t read_revision = txn->revision;
  QueueEntry entry = Evaluate(txn->ranges[1].kvs, key);
  bool reread = false;
  auto fail = [&](ErrorCode code, std::string message) -> Result<ports::LockPtr> {
    core_->DeleteOrRetryLater(key);
    return MakeError(code, std::move(message));
  };
  Clock::time_point next_fallback = Clock::now() + kFallbackRecheck;
  while (true) {
    if (reread) {
      reread = false;
      auto range = core_->client.RangePrefix(name_prefix);
      if (!range) {
        return fail(ErrorCode::kUnavailable,
                    "etcd lock manager: cannot read the queue of " + request.name + ": " +
                        range.error().message);
      }
      read_revision = range->revision;
      entry = Evaluate(range->kvs, key);
      next_fallback = Clock::now() + kFallbackRecheck;
    }
    if (!entry.found) {
      return fail(ErrorCode::kUnavailable,
                  "etcd lock manager: the request for " + request.name + " vanished (lease lost)");
    }
    if (entry.admitted) {
      break;
    }
    std::unique_lock<std::mutex> guard(core_->mutex);
    while (true) {
      // Deletions after the read shrink the queue ahead; earlier ones are already in the read.
      bool ahead_changed = false;
      for (const EtcdWatch::Event& event : waiter.deleted) {
        if (event.revision > read_revision && entry.ahead.erase(event.key) > 0) {
          ahead_changed = true;
        }
      }
      waiter.deleted.clear();
      if (lease->lost.load()) {
        guard.unlock();
        return fail(ErrorCode::kUnavailable,
                    "etcd lock manager: lease lost while waiting for " + request.name);
      }
      if (exclusive && entry.ahead.empty()) {
        entry.admitted = true;  // Nothing older is left: no read needed.
        break;
      }
      if (waiter.resync || (ahead_changed && !exclusive)) {
        waiter.resync = false;
        reread = true;
        break;
      }
      const Clock::time_point now = Clock::now();
      if (now >= deadline) {
        guard.unlock();
        return fail(ErrorCode::kBusy,
                    "lock " + request.name + " is held" +
                        (exclusive ? std::string()
                                   : ", awaited by a writer, or at its reader "
                                     "limit"));
      }
      if (now >= next_fallback) {
        reread = true;
        break;
      }
      waiter.wake.wait_until(guard, std::min(deadline, next_fallback));
    }
  }

  if (!exclusive && entry.counted_cap > 0 &&
      (request.max_readers == 0 || entry.counted_cap < request.max_readers)) {
    // Remember the cap this reader counts with (see the header); only if the key still exists.
    value["counted_cap"] = entry.counted_cap;
    (void)core_->client.Txn(
        {Compare{key, Compare::Target::kCreateRevision, Compare::Result::kEqual, own_revision}},
        {TxnOp::Put(key, value.dump(), lease->id)},
        {});
  }
  auto grant = std::make_shared<Grant>();
  grant->name = request.name;
  grant->key = key;
  grant->token = static_cast<std::uint64_t>(own_revision);
  grant->lease = lease;
  {
    std::unique_lock<std::mutex> guard(core_->mutex);
    if (!lease->Valid()) {
      guard.unlock();
      return fail(ErrorCode::kUnavailable,
                  "etcd lock manager: lease lost while granting " + request.name);
    }
    core_->grants.emplace(key, grant);
  }
  ports::LockPtr lock = std::make_unique<EtcdLock>(core_, std::move(grant), request.mode);
  return lock;
}

Result<ports::LockPtr> EtcdLockManager::TryAcquire(const ports::LockRequest& request) {
  return Acquire(request, std::chrono::milliseconds(0));
}

void EtcdLockManager::SetLostCallback(ports::LockLostCallback callback) {
  std::lock_guard<std::mutex> guard(core_->mutex);
  core_->on_lost = std::move(callback);
}

std::int64_t EtcdLockManager::CurrentLeaseForTest() const {
  std::lock_guard<std::mutex> guard(core_->mutex);
  return core_->lease != nullptr ? core_->lease->id : 0;
}

}  // namespace clinker::adapters::etcd
