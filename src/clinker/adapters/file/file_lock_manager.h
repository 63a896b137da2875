// FileLockManager: named locks as flock() on files in one directory, for workers on one machine.
//
// Contract (ports::LockManager, checked by test/contract/lock_manager_contract_test.cc):
// - Thread safe. Every Acquire opens its own file description, so two threads of one process
//   conflict exactly as two processes do.
// - Acquire polls flock(LOCK_EX | LOCK_NB) with a short backoff (0.2 ms doubling to 5 ms) until
//   its timeout, measured on the steady clock; kBusy when the timeout passes. TryAcquire makes one
//   attempt. kUnavailable when the lock file cannot be opened or flock fails for another reason.
//   kInvalidArgument for an empty name or one whose file name would exceed NAME_MAX.
// - A holder that dies loses its locks: the kernel drops a flock when the last descriptor of its
//   open file description closes (about 1 ms after SIGKILL). Descriptors are O_CLOEXEC so that a
//   spawned program (qemu-img, dd) does not keep the lock after its parent died. A child made by
//   fork() without exec does inherit it; Release unlocks explicitly, so that child cannot keep a
//   released lock, but it keeps a lock whose holder died without releasing.
// - Lock::Release is idempotent; destroying a Lock releases it. A Lock does not refer to its
//   manager and may outlive it.
// - Lock files are never deleted (see the .cc for why).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "clinker/core/error.h"
#include "clinker/ports/lock_manager.h"

namespace clinker::adapters {

class FileLockManager final : public ports::LockManager {
 public:
  // Creates `dir` (and its parents) if missing. kUnavailable if it cannot be created or is not a
  // directory.
  static Result<std::unique_ptr<FileLockManager>> Create(std::string dir);

  Result<ports::LockPtr> Acquire(std::string_view name, std::chrono::milliseconds timeout) override;
  Result<ports::LockPtr> TryAcquire(std::string_view name) override;

  const std::string& dir() const { return dir_; }

  // The file that backs lock `name`: `<dir>/<encoded name>.lock`, where bytes outside
  // [A-Za-z0-9._-] are written as %XX (so '%' itself is encoded and distinct names never share
  // a file).
  std::string PathFor(std::string_view name) const;

 private:
  explicit FileLockManager(std::string dir) : dir_(std::move(dir)) {}

  // One attempt when `timeout` is zero.
  Result<ports::LockPtr> AcquireWithin(std::string_view name, std::chrono::milliseconds timeout);

  std::string dir_;
};

}  // namespace clinker::adapters
