// LockManager: named read/write locks with fencing tokens that keep workers (threads, processes,
// later nodes) from acting on the same resource in conflicting ways. Lock names and the mode each
// holder uses are built in one place: services/lock_names.h.
//
// Contract, for every adapter (checked by test/contract/lock_manager_contract_test.cc):
// - Thread safe: any thread may call any LockManager method at any time. A Lock belongs to one
//   holder; only its const accessors may be called from other threads.
// - Modes. Shared holders of a name coexist; an exclusive holder excludes every other holder of
//   that name, shared or exclusive, whether the contenders are threads or processes. Different
//   names never affect each other.
// - Writers are preferred: once an exclusive request waits, new shared requests of that name wait
//   behind it, so a stream of readers cannot starve a writer. (The converse is not promised:
//   writers arriving back to back can starve readers.)
// - Reader limits. LockRequest::max_readers = c > 0 caps the shared holders of the name. When
//   caps differ, the smallest one wins: a shared request is admitted only while fewer holders are
//   counted than eff = min(c, smallest cap among the counted holders), and it is counted with
//   eff. A request with max_readers 0 ("no limit") is served with the counted holders' smallest
//   cap if there are any (and is then counted); otherwise it is neither limited nor counted, and
//   later capped requests do not count it. Adapters may make a request with a smaller cap than the
//   holders' wait longer than this rule requires; none admits more. Give every request of one
//   name the same cap and these subtleties never arise.
// - Fencing tokens. Every grant (shared or exclusive) carries a token that is strictly larger
//   than the token of every earlier grant of the same name, across processes and across restarts
//   of the manager on the same backing store (each adapter says what its store is). A resource
//   that records the largest token it has seen can reject a late write from a holder whose lock
//   was lost. Tokens start at 1; gaps are allowed.
// - Errors. Acquire waits at most `timeout` (clamped to [0, a year]); kBusy if the lock was not
//   granted in time. TryAcquire does not wait for the lock itself; kBusy if not granted.
//   kInvalidArgument for a bad request (see ValidateLockRequest). kUnavailable if the lock engine
//   failed (nothing is held then).
// - Loss. A holder that dies loses its locks without any action from it (kernel, lease expiry).
//   A live holder can lose a lock when the manager can no longer prove it is held (a lease that
//   could not be renewed): Lock::IsLost turns true and the lost callback runs once for the grant.
//   After a loss, the name may be granted to someone else at once: a holder must check IsLost
//   (or, better, hand its fencing token to the resource) before acting.
// - Lock::Release is idempotent, and destroying a Lock releases it. Releasing a lost grant (or
//   releasing twice) never frees a later holder's grant.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "clinker/core/error.h"

namespace clinker::ports {

enum class LockMode { kExclusive, kShared };

inline std::string_view LockModeName(LockMode mode) {
  return mode == LockMode::kExclusive ? "exclusive" : "shared";
}

// The largest max_readers a request may name. It bounds the bookkeeping an adapter keeps per
// name (one file per reader slot in the file adapter).
inline constexpr int kMaxReadersLimit = 1024;

struct LockRequest {
  std::string name;
  LockMode mode = LockMode::kExclusive;
  int max_readers = 0;  // 0 = no limit; only for kShared (see the reader-limit rule above).

  static LockRequest Exclusive(std::string lock_name) {
    return LockRequest{std::move(lock_name), LockMode::kExclusive, 0};
  }

  static LockRequest Shared(std::string lock_name, int reader_limit = 0) {
    return LockRequest{std::move(lock_name), LockMode::kShared, reader_limit};
  }
};

// The checks every adapter applies before anything else: a non-empty name, and max_readers in
// [0, kMaxReadersLimit], non-zero only for shared requests. Adapters may add their own limits
// (the file adapter rejects names too long for a file name).
inline Result<void> ValidateLockRequest(const LockRequest& request) {
  if (request.name.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "lock name is empty");
  }
  if (request.max_readers < 0 || request.max_readers > kMaxReadersLimit) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "max_readers must be in [0, " + std::to_string(kMaxReadersLimit) + "], got " +
                         std::to_string(request.max_readers));
  }
  if (request.mode == LockMode::kExclusive && request.max_readers != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "max_readers applies only to shared locks: " + request.name);
  }
  return {};
}

class Lock {
 public:
  virtual ~Lock() = default;
  virtual const std::string& name() const = 0;
  virtual LockMode mode() const = 0;
  virtual std::uint64_t fencing_token() const = 0;
  // True once the manager can no longer prove this grant is held; never turns false again. It
  // reports losses only: a Lock the holder released keeps the value it had.
  virtual bool IsLost() const = 0;
  virtual void Release() = 0;
};

using LockPtr = std::unique_ptr<Lock>;

// Called with the lock's name and the lost grant's fencing token.
using LockLostCallback = std::function<void(const std::string& name, std::uint64_t fencing_token)>;

class LockManager {
 public:
  virtual ~LockManager() = default;
  virtual Result<LockPtr> Acquire(const LockRequest& request,
                                  std::chrono::milliseconds timeout) = 0;
  virtual Result<LockPtr> TryAcquire(const LockRequest& request) = 0;
  // Replaces the callback run when a grant is lost (an empty function removes it). It runs at
  // most once per lost grant, on any thread, never while the manager holds its internal mutex, so
  // it may call back into the manager. Grants released by their holder never trigger it.
  virtual void SetLostCallback(LockLostCallback callback) = 0;
};

}  // namespace clinker::ports
