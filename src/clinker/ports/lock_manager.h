// LockManager: named locks that keep two workers (threads, processes, later nodes) from acting
// on the same resource at once. Lock names are built in one place: services/lock_names.h.
//
// Contract, for every adapter (checked by test/contract/lock_manager_contract_test.cc):
// - Thread safe. Exclusive: at most one holder of a name at a time, whether the contenders are
//   threads of one process or different processes.
// - Acquire waits at most `timeout`; kBusy if the lock was not granted in time. TryAcquire does
//   not wait; kBusy if held. kUnavailable if the lock engine itself failed.
// - A holder that dies loses its locks without any action from it (kernel, lease expiry).
// - Lock::Release is idempotent, and destroying a Lock releases it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "clinker/core/error.h"

namespace clinker::ports {

class Lock {
 public:
  virtual ~Lock() = default;
  virtual const std::string& name() const = 0;
  virtual void Release() = 0;
};

using LockPtr = std::unique_ptr<Lock>;

class LockManager {
 public:
  virtual ~LockManager() = default;
  virtual Result<LockPtr> Acquire(std::string_view name, std::chrono::milliseconds timeout) = 0;
  virtual Result<LockPtr> TryAcquire(std::string_view name) = 0;
};

}  // namespace clinker::ports
