// MemoryLockManager: an in-process fake of ports::LockManager for service and simulation tests.
//
// Contract (the same suite as FileLockManager: test/contract/lock_manager_contract_test.cc):
// - Thread safe; exclusive between threads. Acquire blocks on a condition variable (no polling)
//   until the name is free or `timeout` passes on the steady clock: kBusy then. TryAcquire does
//   not wait. kInvalidArgument for an empty name. It never returns kUnavailable.
// - Lock::Release is idempotent; destroying a Lock releases it. Locks share the manager's state,
//   so a Lock may outlive its manager.
// - "A holder that dies" has no meaning inside one process; tests that model a crash drop the
//   holder's Lock objects (or call ReleaseAllForTest).
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

  Result<ports::LockPtr> Acquire(std::string_view name, std::chrono::milliseconds timeout) override;
  Result<ports::LockPtr> TryAcquire(std::string_view name) override;

  // For assertions in tests ("the service released every lock").
  bool IsHeld(std::string_view name) const;
  std::size_t HeldCount() const;

  // Frees every name as if all holders had died. Lock objects still alive become inert: their
  // Release (or destruction) does not free a name someone acquired since.
  void ReleaseAllForTest();

  struct State;  // Shared with the Lock objects; defined in the .cc.

 private:
  std::shared_ptr<State> state_;
};

}  // namespace clinker::adapters
