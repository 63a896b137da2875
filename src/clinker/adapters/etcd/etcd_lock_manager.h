// EtcdLockManager: named read/write locks with fencing tokens kept in an etcd v3 cluster, for
// workers on any number of nodes. Talks to etcd's JSON gateway (EtcdClient).
//
// Contract (ports::LockManager, checked by test/contract/lock_manager_contract_test.cc and
// test/unit/etcd_lock_manager_test.cc):
// - Thread safe; Locks may outlive the manager (they then only release their key).
// - Store: the etcd cluster. Each request is a key `<prefix><encoded name>/<lease hex>-<uuid>`
//   (the name with '%' and '/' percent-encoded, so one name's keys never fall under another's
//   prefix) whose value is {"mode", "max_readers"} and which is attached to the manager's lease.
//   The keys of a name form a queue ordered by create_revision:
//   - an exclusive request is granted when no key of the name is older;
//   - a shared request is granted when every older key is a granted shared one and the port's
//     reader-limit rule admits it, counting the older counted readers. So readers arriving after
//     a waiting writer queue behind it (writer preference), and readers are served in order: a
//     reader may wait behind an older reader that waits for a slot, even where the port's rule
//     would let it in (allowed: it never admits more). A reader counted with a cap smaller than
//     its own writes that cap into its key, so it keeps counting with it after the holder that
//     imposed the cap leaves; between its grant and that write (one round trip) the others
//     compute the same cap from the queue unless that holder leaves in between.
// - Fencing token: the grant key's create_revision. etcd's revision is global and strictly
//   increasing, so tokens increase per name across processes, nodes and restarts of managers on
//   the same cluster (not across a cluster rebuilt from scratch).
// - Blocking: waiters are woken by one watch on the prefix (DELETE events of older keys), not by
//   polling; a 1 s re-read is only a safety net for a broken watch. Acquire waits at most
//   `timeout` for the lock (plus at most a few request timeouts for etcd round trips); kBusy then,
//   after deleting its key. TryAcquire never waits: one txn (queue and read), then a delete of
//   its key if not granted.
// - Errors: kInvalidArgument for a request ports::ValidateLockRequest rejects; kUnavailable when
//   etcd cannot be reached (every request has a connect/read timeout: nothing hangs), or when the
//   lease was lost while waiting. Nothing is held after an error.
// - Lease and loss. One lease per manager (TTL `lease_ttl`), renewed every `heartbeat_interval`
//   from its own thread. A grant is proven held only until
//       send time of the last successful keepalive + TTL - heartbeat_interval
//   because etcd counts the TTL from when it RECEIVED that keepalive, which is after we sent it:
//   counting from the reply instead would let the holder believe in its lock after etcd has
//   already expired it and granted the name to someone else (measured: a 23 ms overlap). The
//   manager declares the lease lost after `missed_heartbeats` consecutive failed keepalives or
//   when that time passes, whichever comes first, i.e. always before etcd can expire it. Then
//   every grant of that lease turns IsLost (IsLost also turns true on its own the moment the time
//   passes, before the thread notices), the lost callback runs once per grant (on the heartbeat
//   thread, outside the manager's mutex), the old lease is revoked (best effort) and later
//   requests get a fresh lease. A holder that dies loses its keys when etcd expires its lease.
// - Lock::Release is idempotent and deletes only its own key (keys are unique per grant, so it
//   never frees a later holder); a delete that fails is retried from the heartbeat thread (the
//   live lease would otherwise keep the key forever). Destroying a Lock releases it.
// - Destroying the manager revokes its lease: its grants end, and Locks still alive report
//   IsLost (without callbacks).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "clinker/core/error.h"
#include "clinker/ports/lock_manager.h"

namespace clinker::adapters::etcd {

class EtcdLockManager final : public ports::LockManager {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 2379;
    std::string key_prefix = "/clinker/locks/";
    std::chrono::seconds lease_ttl{10};
    std::chrono::milliseconds heartbeat_interval{1000};
    int missed_heartbeats = 3;
    std::chrono::milliseconds request_timeout{5000};
  };

  // kInvalidArgument unless lease_ttl > (missed_heartbeats + 1) x heartbeat_interval (the lease
  // must outlive the missed beats plus one beat of margin), every duration and count is
  // positive, and host, port and key_prefix are usable. The message names the values.
  static Result<void> ValidateOptions(const Options& options);

  // Validates, takes a lease and starts the watch; kUnavailable if etcd cannot be reached.
  static Result<std::unique_ptr<EtcdLockManager>> Open(Options options);

  ~EtcdLockManager() override;
  EtcdLockManager(const EtcdLockManager&) = delete;
  EtcdLockManager& operator=(const EtcdLockManager&) = delete;

  Result<ports::LockPtr> Acquire(const ports::LockRequest& request,
                                 std::chrono::milliseconds timeout) override;
  Result<ports::LockPtr> TryAcquire(const ports::LockRequest& request) override;
  void SetLostCallback(ports::LockLostCallback callback) override;

  // The etcd lease id currently used for new requests (0 while none); for tests and logs.
  std::int64_t CurrentLeaseForTest() const;

  struct Core;  // Shared with the Lock objects and the threads; defined in the .cc.

 private:
  explicit EtcdLockManager(std::shared_ptr<Core> core);

  std::shared_ptr<Core> core_;
};

}  // namespace clinker::adapters::etcd
