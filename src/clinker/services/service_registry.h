// ServiceRegistry: this process's row in the `services` table, kept alive by heartbeats, and its
// cluster's row in `clusters`, so that os-services and clusters (and later the cleanup of a dead
// node's work) can tell which services are up.
//
// Contract:
// - Start() registers: inserts the service row, or revives it if this (binary, host) ran before
//   (same id: "<binary>:<host>", so a restarted service finds its own row, as Cinder's startup
//   cleanup needs; its disabled flag and reason are kept, as in Cinder). The row gets this run's
//   cluster_name, availability_zone and a heartbeat. If a cluster is configured, its row
//   ("<binary>:<cluster>") is inserted if missing; members racing to insert it collide on the
//   primary key and the losers carry on, so the race is harmless. Then a thread heartbeats every
//   report_interval. Start() fails (and starts no thread) only if the registration fails; call it
//   again to retry.
// - Each heartbeat is one conditional update (heartbeat_at, updated_at; expecting the row live),
//   so it is atomic and its cost bounded by the store's retry budget. A failed heartbeat (engine
//   down) is logged and retried at the next interval; the thread never dies of it. If the row
//   is gone or was soft-deleted by an operator, the next heartbeat registers again (Cinder
//   recreates a deleted service row the same way).
// - Stop() stops the thread (waking it at once), then deregisters: heartbeat_at becomes NULL, so
//   the service shows down at once while its row (and its disabled flag) stays for the next
//   start. Idempotent; the destructor calls it. If deregistering fails, the row simply goes
//   down after service_down_time.
// - Thread safe: Start, Stop and Beat may be called from any thread. Blocking: Start, Stop and
//   Beat block on the StateStore; Stop also waits for an in-flight heartbeat.
// - Timestamps come from the Clock's wall time (heartbeat_at in ms since the epoch, updated_at
//   as Cinder formats it); the pace of the thread is real (steady) time, so with a fake clock
//   tests drive heartbeats through Beat() or a short report_interval.
//
// Which binaries register is the caller's choice; Cinder lists cinder-scheduler, cinder-volume
// and cinder-backup (its API service has no row).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"

namespace clinker::services {

struct ServiceRegistryOptions {
  std::string binary;                       // "cinder-volume", "cinder-scheduler", ...
  std::string host;                         // For cinder-volume: "<host>@<backend>".
  std::optional<std::string> cluster_name;  // "<cluster>@<backend>"; none if not clustered.
  std::string availability_zone = "nova";
  std::chrono::milliseconds report_interval{10000};  // Cinder's report_interval.
};

class ServiceRegistry {
 public:
  ServiceRegistry(ports::StateStore& store,
                  const ports::Clock& clock,
                  ServiceRegistryOptions options);
  ServiceRegistry(const ServiceRegistry&) = delete;
  ServiceRegistry& operator=(const ServiceRegistry&) = delete;
  ~ServiceRegistry();

  // The ids of the rows: "<binary>:<host>" and "<binary>:<cluster name>".
  static std::string ServiceId(std::string_view binary, std::string_view host);
  static std::string ClusterId(std::string_view binary, std::string_view cluster_name);

  // Registers and starts heartbeating. CLINKER_ASSERT if already started.
  Result<void> Start();

  // Stops heartbeating and deregisters. Returns the deregistration's error, if any.
  Result<void> Stop();

  // One heartbeat now (the thread's step): registers again if the row is missing or deleted.
  Result<void> Beat();

  // The service cannot work for now (its lock lease was lost: it must not touch volumes until it
  // holds locks again): the thread marks the row down at once (heartbeat_at NULL, as Stop does)
  // and sends no heartbeat for `duration`, then heartbeats again. Thread safe, non-blocking;
  // a later call extends the window. No effect unless started.
  void ReportNotWorking(std::chrono::milliseconds duration, std::string reason);

  // Why the service is not working now (within a ReportNotWorking window), or nothing.
  // Thread safe, non-blocking.
  std::optional<std::string> NotWorkingReason() const;

  const std::string& service_id() const { return service_id_; }

 private:
  Result<void> Register();
  // heartbeat_at = NULL: the service shows down at once.
  Result<void> MarkDown();
  Result<void> EnsureCluster();
  void Run();

  ports::StateStore& store_;
  const ports::Clock& clock_;
  const ServiceRegistryOptions options_;
  const std::string service_id_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool running_ = false;                                     // Guarded by mutex_.
  bool stopping_ = false;                                    // Guarded by mutex_.
  bool mark_down_pending_ = false;                           // Guarded by mutex_.
  std::chrono::steady_clock::time_point not_working_until_;  // Guarded by mutex_.
  std::string not_working_reason_;                           // Guarded by mutex_.
  std::thread thread_;          // Started and joined only under lifecycle_mutex_.
  std::mutex lifecycle_mutex_;  // Serialises Start and Stop.
};

}  // namespace clinker::services
