#include "clinker/adapters/memory/memory_lock_manager.h"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

namespace clinker::adapters {

// Each grant gets a fresh token, so a Lock whose grant was revoked (ReleaseAllForTest) cannot
// free a later holder's grant of the same name.
struct MemoryLockManager::State {
  mutable std::mutex mutex;
  std::condition_variable released;
  std::map<std::string, std::uint64_t, std::less<>> holders;  // name -> token of the grant
  std::uint64_t next_token = 1;
};

namespace {

// Longer timeouts are clamped so that now + timeout cannot overflow the steady clock.
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24 * 365);

class MemoryLock final : public ports::Lock {
 public:
  MemoryLock(std::shared_ptr<MemoryLockManager::State> state, std::string name, std::uint64_t token)
      : state_(std::move(state)), name_(std::move(name)), token_(token) {}

  MemoryLock(const MemoryLock&) = delete;
  MemoryLock& operator=(const MemoryLock&) = delete;

  ~MemoryLock() override { Release(); }

  const std::string& name() const override { return name_; }

  void Release() override {
    if (token_ == 0) {
      return;
    }
    {
      std::lock_guard<std::mutex> guard(state_->mutex);
      auto it = state_->holders.find(name_);
      if (it != state_->holders.end() && it->second == token_) {
        state_->holders.erase(it);
      }
    }
    token_ = 0;
    // notify_all: waiters for other names share the condition variable and must re-check.
    state_->released.notify_all();
  }

 private:
  std::shared_ptr<MemoryLockManager::State> state_;
  std::string name_;
  std::uint64_t token_;  // 0 once released.
};

}  // namespace

MemoryLockManager::MemoryLockManager() : state_(std::make_shared<State>()) {}

Result<ports::LockPtr> MemoryLockManager::Acquire(std::string_view name,
                                                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::clamp(timeout, std::chrono::milliseconds(0), kMaxTimeout);
  if (name.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "lock name is empty");
  }
  std::unique_lock<std::mutex> guard(state_->mutex);
  const bool free = state_->released.wait_until(
      guard, deadline, [&] { return state_->holders.find(name) == state_->holders.end(); });
  if (!free) {
    return MakeError(ErrorCode::kBusy, "lock " + std::string(name) + " is held");
  }
  const std::uint64_t token = state_->next_token++;
  state_->holders.emplace(std::string(name), token);
  ports::LockPtr lock = std::make_unique<MemoryLock>(state_, std::string(name), token);
  return lock;
}

Result<ports::LockPtr> MemoryLockManager::TryAcquire(std::string_view name) {
  return Acquire(name, std::chrono::milliseconds(0));
}

bool MemoryLockManager::IsHeld(std::string_view name) const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  return state_->holders.find(name) != state_->holders.end();
}

std::size_t MemoryLockManager::HeldCount() const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  return state_->holders.size();
}

void MemoryLockManager::ReleaseAllForTest() {
  {
    std::lock_guard<std::mutex> guard(state_->mutex);
    state_->holders.clear();
  }
  state_->released.notify_all();
}

}  // namespace clinker::adapters
