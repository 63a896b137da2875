#include "clinker/adapters/memory/memory_lock_manager.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace clinker::adapters {
namespace {

// Shared by the table entry and the Lock, so a Lock can report a loss after its entry is gone.
struct Grant {
  std::atomic<bool> lost{false};
};

struct Reader {
  int counted_cap;  // The cap this reader was admitted under; 0 when it is not counted.
  std::shared_ptr<Grant> grant;
};

// One name's grants. Entries are never erased, so that last_token survives idle periods.
struct NameState {
  std::uint64_t last_token = 0;
  std::uint64_t writer_token = 0;  // 0 when no exclusive grant is live.
  std::shared_ptr<Grant> writer_grant;
  std::map<std::uint64_t, Reader> readers;  // Live shared grants by token.
  int waiting_writers = 0;
};

struct LostGrant {
  std::string name;
  std::uint64_t token;
};

// Longer timeouts are clamped so that now + timeout cannot overflow the steady clock.
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24 * 365);

// The cap a shared request is admitted under (0: admitted and not counted), or nullopt while it
// must wait. Implements the port's smallest-cap rule.
std::optional<int> SharedAdmission(const NameState& state, int cap) {
  if (state.writer_token != 0 || state.waiting_writers > 0) {
    return std::nullopt;
  }
  int smallest = 0;
  int counted = 0;
  for (const auto& [token, reader] : state.readers) {
    if (reader.counted_cap > 0) {
      ++counted;
      smallest = smallest == 0 ? reader.counted_cap : std::min(smallest, reader.counted_cap);
    }
  }
  int effective = cap;
  if (smallest > 0) {
    effective = cap == 0 ? smallest : std::min(cap, smallest);
  }
  if (effective == 0) {
    return 0;
  }
  if (counted >= effective) {
    return std::nullopt;
  }
  return effective;
}

// Marks every live grant of `state` lost and frees it. Caller holds the mutex.
void ExpireLocked(const std::string& name, NameState& state, std::vector<LostGrant>* lost) {
  if (state.writer_token != 0) {
    state.writer_grant->lost.store(true);
    lost->push_back({name, state.writer_token});
    state.writer_token = 0;
    state.writer_grant.reset();
  }
  for (auto& [token, reader] : state.readers) {
    reader.grant->lost.store(true);
    lost->push_back({name, token});
  }
  state.readers.clear();
}

}  // namespace

struct MemoryLockManager::State {
  mutable std::mutex mutex;
  // One variable for every name: waiters re-check their own predicate, so notify_all.
  std::condition_variable changed;
  std::map<std::string, NameState, std::less<>> names;
  ports::LockLostCallback on_lost;
};

namespace {

class MemoryLock final : public ports::Lock {
 public:
  MemoryLock(std::shared_ptr<MemoryLockManager::State> state,
             std::string name,
             ports::LockMode mode,
             std::uint64_t token,
             std::shared_ptr<Grant> grant)
      : state_(std::move(state)),
        name_(std::move(name)),
        mode_(mode),
        token_(token),
        grant_(std::move(grant)) {}

  MemoryLock(const MemoryLock&) = delete;
  MemoryLock& operator=(const MemoryLock&) = delete;

  ~MemoryLock() override { Release(); }

  const std::string& name() const override { return name_; }

  ports::LockMode mode() const override { return mode_; }

  std::uint64_t fencing_token() const override { return token_; }

  bool IsLost() const override { return grant_->lost.load(); }

  void Release() override {
    if (released_) {
      return;
    }
    released_ = true;
    bool freed = false;
    {
      std::lock_guard<std::mutex> guard(state_->mutex);
      auto it = state_->names.find(name_);
      if (it != state_->names.end()) {
        NameState& entry = it->second;
        // The token check keeps a lost grant from freeing whoever holds the name now.
        if (mode_ == ports::LockMode::kExclusive) {
          if (entry.writer_token == token_) {
            entry.writer_token = 0;
            entry.writer_grant.reset();
            freed = true;
          }
        } else {
          freed = entry.readers.erase(token_) > 0;
        }
      }
    }
    if (freed) {
      state_->changed.notify_all();
    }
  }

 private:
  std::shared_ptr<MemoryLockManager::State> state_;
  std::string name_;
  ports::LockMode mode_;
  std::uint64_t token_;
  std::shared_ptr<Grant> grant_;
  bool released_ = false;
};

}  // namespace

MemoryLockManager::MemoryLockManager() : state_(std::make_shared<State>()) {}

Result<ports::LockPtr> MemoryLockManager::Acquire(const ports::LockRequest& request,
                                                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::clamp(timeout, std::chrono::milliseconds(0), kMaxTimeout);
  CLINKER_RETURN_IF_ERROR(ports::ValidateLockRequest(request));
  std::unique_lock<std::mutex> guard(state_->mutex);
  NameState& entry = state_->names[request.name];  // Map nodes are stable: safe across waits.
  auto grant = std::make_shared<Grant>();
  std::uint64_t token = 0;
  if (request.mode == ports::LockMode::kExclusive) {
    auto free = [&] {
      return entry.writer_token == 0 && entry.readers.empty();
    };
    if (!free()) {
      // Counted while waiting so that new readers queue behind this writer.
      ++entry.waiting_writers;
      const bool granted = state_->changed.wait_until(guard, deadline, free);
      --entry.waiting_writers;
      if (!granted) {
        guard.unlock();
        state_->changed.notify_all();  // Readers held back by this writer may go now.
        return MakeError(ErrorCode::kBusy, "lock " + request.name + " is held");
      }
    }
    token = ++entry.last_token;
    entry.writer_token = token;
    entry.writer_grant = grant;
  } else {
    std::optional<int> counted_cap;
    const bool granted = state_->changed.wait_until(guard, deadline, [&] {
      counted_cap = SharedAdmission(entry, request.max_readers);
      return counted_cap.has_value();
    });
    if (!granted) {
      return MakeError(ErrorCode::kBusy,
                       "lock " + request.name + " is held exclusively, awaited by a writer, " +
                           "or at its reader limit");
    }
    token = ++entry.last_token;
    entry.readers.emplace(token, Reader{*counted_cap, grant});
  }
  ports::LockPtr lock =
      std::make_unique<MemoryLock>(state_, request.name, request.mode, token, std::move(grant));
  return lock;
}

Result<ports::LockPtr> MemoryLockManager::TryAcquire(const ports::LockRequest& request) {
  return Acquire(request, std::chrono::milliseconds(0));
}

void MemoryLockManager::SetLostCallback(ports::LockLostCallback callback) {
  std::lock_guard<std::mutex> guard(state_->mutex);
  state_->on_lost = std::move(callback);
}

bool MemoryLockManager::IsHeld(std::string_view name) const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  auto it = state_->names.find(name);
  return it != state_->names.end() && (it->second.writer_token != 0 || !it->second.readers.empty());
}

std::size_t MemoryLockManager::HeldCount() const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  std::size_t count = 0;
  for (const auto& [name, entry] : state_->names) {
    count += entry.readers.size() + (entry.writer_token != 0 ? 1 : 0);
  }
  return count;
}

namespace {

// Runs the callback for each lost grant; the caller has released the mutex.
void NotifyLost(const ports::LockLostCallback& callback, const std::vector<LostGrant>& lost) {
  if (!callback) {
    return;
  }
  for (const LostGrant& grant : lost) {
    callback(grant.name, grant.token);
  }
}

}  // namespace

std::size_t MemoryLockManager::ExpireForTest(std::string_view name) {
  std::vector<LostGrant> lost;
  ports::LockLostCallback callback;
  {
    std::lock_guard<std::mutex> guard(state_->mutex);
    auto it = state_->names.find(name);
    if (it != state_->names.end()) {
      ExpireLocked(it->first, it->second, &lost);
    }
    callback = state_->on_lost;
  }
  state_->changed.notify_all();
  NotifyLost(callback, lost);
  return lost.size();
}

std::size_t MemoryLockManager::ReleaseAllForTest() {
  std::vector<LostGrant> lost;
  ports::LockLostCallback callback;
  {
    std::lock_guard<std::mutex> guard(state_->mutex);
    for (auto& [name, entry] : state_->names) {
      ExpireLocked(name, entry, &lost);
    }
    callback = state_->on_lost;
  }
  state_->changed.notify_all();
  NotifyLost(callback, lost);
  return lost.size();
}

}  // namespace clinker::adapters
