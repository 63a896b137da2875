// MemoryLockManager: an in-process fake of ports::LockManager for service and simulation tests.
//
// Contract (the same suite as FileLockManager: test/contract/lock_manager_contract_test.cc):
// - Thread safe. One mutex guards every name's state; waiters block on a condition variable (no
//   polling) until they can be granted or `timeout` passes on the steady clock: kBusy then.
//   TryAcquire does not wait. kInvalidArgument for a request ports::ValidateLockRequest rejects.
//   It never returns kUnavailable.
// - Read/write rules, writer preference and reader limits exactly as in ports/lock_manager.h
//   (the smallest-cap rule is applied exactly, never more strictly).
// - Fencing tokens count per name from 1 within one manager. The manager is the whole lock
//   service here, so a new MemoryLockManager starts again at 1: compare tokens only between
//   grants of one manager.
// - Loss exists only when a test asks for it: ExpireForTest / ReleaseAllForTest model a lease that
//   ran out. The affected Locks report IsLost, the lost callback runs once per grant (on the
//   calling thread, after the mutex is released), and the names are free at once. A lost Lock's
//   Release (or destruction) does nothing, so it cannot free a later holder's grant.
// - Lock::Release is idempotent; destroying a Lock releases it. Locks share the manager's state,
//   so a Lock may outlive its manager.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "clinker/core/error.h"
#include "clinker/ports/lock_manager.h"

namespace clinker::adapters {

class MemoryLockManager final : public ports::LockManager {
 public:
  MemoryLockManager();

  Result<ports::LockPtr> Acquire(const ports::LockRequest& request,
                                 std::chrono::milliseconds timeout) override;
  Result<ports::LockPtr> TryAcquire(const ports::LockRequest& request) override;
  void SetLostCallback(ports::LockLostCallback callback) override;

  // For assertions in tests ("the service released every lock").
  bool IsHeld(std::string_view name) const;
  // Live grants, over all names (a name held by three readers counts three).
  std::size_t HeldCount() const;

  // Marks every live grant of `name` lost and frees the name, as if the holders' lease had
  // expired. Returns how many grants were lost.
  std::size_t ExpireForTest(std::string_view name);
  // The same for every name, as if all holders had died.
  std::size_t ReleaseAllForTest();

  struct State;  // Shared with the Lock objects; defined in the .cc.

 private:
  std::shared_ptr<State> state_;
};

}  // namespace clinker::adapters
