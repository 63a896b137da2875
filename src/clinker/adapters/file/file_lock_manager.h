// FileLockManager: named read/write locks as flock() on files in one local directory, for workers
// on one machine.
//
// Contract (ports::LockManager, checked by test/contract/lock_manager_contract_test.cc):
// - Thread safe. Every Acquire opens its own file descriptions, so two threads of one process
//   conflict exactly as two processes do.
// - Files per lock name (`<base>` = `<dir>/<encoded name>`, see PathFor), all O_CLOEXEC, created on
//   demand and never unlinked (see the .cc for why):
//     <base>.lock       the lock itself: LOCK_EX for an exclusive grant, LOCK_SH for a shared one.
//     <base>.turnstile  writer preference: a waiting writer holds it (LOCK_EX) until it has the
//                       lock; a reader must take it (LOCK_EX) and drop it before its LOCK_SH, so
//                       new readers queue behind a waiting writer.
//     <base>.slot.<i>   reader slots for max_readers: a counted reader holds LOCK_EX on one slot
//                       (which records the cap it was admitted under) for as long as it holds the
//                       lock; slots are chosen while holding the turnstile.
//     <base>.capped     every counted reader holds LOCK_SH on it, so a reader with no cap can tell
//                       in one call that no capped reader is inside.
//     <base>.token      the last fencing token: 20 decimal digits and a newline, read and
//                       rewritten under LOCK_EX at every grant.
// - Acquire polls with flock(LOCK_NB) and a short backoff (0.2 ms doubling to 5 ms) until its
//   timeout, measured on the steady clock; kBusy when the timeout passes. TryAcquire makes one
//   attempt at the lock, but may wait up to 20 ms for the turnstile, which another reader holds
//   for microseconds while it picks a slot (a waiting writer holds it longer: kBusy then).
//   kUnavailable when a file cannot be opened, written or synced, when flock fails for another
//   reason, or when the token file is corrupt (it is never silently reset: tokens must not go
//   back). kInvalidArgument for a request ports::ValidateLockRequest rejects, or a name whose
//   file names would exceed NAME_MAX.
// - Reader limits follow the port's smallest-cap rule; in one case this adapter is stricter: a
//   request whose cap is smaller than the holders' waits while any holder sits in a slot at or
//   above the new cap, even if fewer holders than the cap are inside.
// - A grant's token is the larger of (last token + 1) and the wall clock in microseconds. The token
//   file makes tokens increase across processes and new FileLockManagers on the same directory;
//   the clock makes them increase across a power loss that dropped the file's last writes, without
//   a disk sync per grant (2-3 ms each here, on the path of every job): tokens issued before the
//   loss are at most a few past the clock of that moment, and the clock has moved on by the
//   restart. Only a wall clock stepped back by more than the outage could repeat a token, and
//   then the synced-enough file still normally holds the last value.
// - A holder that dies loses its locks: the kernel drops a flock when the last descriptor of its
//   open file description closes (about 1 ms after SIGKILL). Descriptors are O_CLOEXEC so that a
//   spawned program (qemu-img, dd) does not keep the lock after its parent died. A child made by
//   fork() without exec does inherit them; Release unlocks explicitly, so that child cannot keep
//   a released lock, but it keeps a lock whose holder died without releasing.
// - A live holder never loses a flock, so Lock::IsLost is always false and the lost callback is
//   never called (SetLostCallback only stores it).
// - Lock::Release is idempotent; destroying a Lock releases it. A Lock does not refer to its
//   manager and may outlive it.
// - The directory must be on a local file system (flock is node-local by design).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
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

  Result<ports::LockPtr> Acquire(const ports::LockRequest& request,
                                 std::chrono::milliseconds timeout) override;
  Result<ports::LockPtr> TryAcquire(const ports::LockRequest& request) override;
  void SetLostCallback(ports::LockLostCallback callback) override;

  const std::string& dir() const { return dir_; }

  // The file that backs lock `name`: `<dir>/<encoded name>.lock`, where bytes outside
  // [A-Za-z0-9._-] are written as %XX (so '%' itself is encoded and distinct names never share
  // a file). The other files of the name share its stem.
  std::string PathFor(std::string_view name) const;

 private:
  using Clock = std::chrono::steady_clock;

  explicit FileLockManager(std::string dir) : dir_(std::move(dir)) {}

  // One attempt at the lock when `timeout` is zero.
  Result<ports::LockPtr> AcquireWithin(const ports::LockRequest& request,
                                       std::chrono::milliseconds timeout);
  // `<dir>/<encoded name>`, the stem every file of the name shares.
  std::string BasePath(std::string_view name) const;
  // Reads `<base>.token`, computes the next token (see above) and writes it back.
  Result<std::uint64_t> NextToken(const std::string& base, Clock::time_point deadline);

  std::string dir_;
  std::mutex mutex_;
  ports::LockLostCallback on_lost_;  // Stored only: a flock is never lost (see above).
};

}  // namespace clinker::adapters
