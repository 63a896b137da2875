// VolumeManager: runs volume jobs on one back-end, applying the stuck-job rules.
//
// For each job: take the volume's lock (exclusive for an operation that writes the volume, shared
// for one that only reads it: services/lock_names.h), read the volume, ask domain::DecideJob what
// this job is (fresh, a dead node's, or a duplicate), move the volume from its queued status to its
// in-progress status with a conditional update, call the driver, write the final status, release
// the lock; the worker pool then acks. Because the in-progress status is written before the
// driver is called, a node that picks up a redelivered job can tell a job nobody started from one
// that was interrupted. The decision log line carries the lock's fencing token.
//
// Fencing: every driver call carries the lock's fencing token, and a job that finds its volume
// left in progress by another holder (a takeover) first fences the volume at the back-end with
// its token, so the earlier holder, if it was only paused, can no longer change the volume's
// data. Every status write stores the lock's token in the volume's `fencing_token` and expects
// the stored one to be at most its own, so a write from an earlier holder is refused by the
// database even if the status it expects happens to be there again. Before every status write
// the job checks that its lock is not lost; once it is, the job stops at once (no further write
// for the volume) and goes back to the queue.
//
// Thread safe: Handle runs on several workers at once; the per-volume lock serialises jobs on
// one volume.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "clinker/ports/clock.h"
#include "clinker/ports/lock_manager.h"
#include "clinker/ports/state_store.h"
#include "clinker/ports/storage_driver.h"
#include "clinker/services/job_worker_pool.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

struct VolumeManagerOptions {
  // How long a job waits for a volume's lock before it is given back to the queue.
  std::chrono::milliseconds lock_timeout{60000};
  // Attempts at writing a final status before the job is left for redelivery.
  int final_write_attempts = 5;
  std::chrono::milliseconds final_write_backoff{200};
};

class VolumeManager {
 public:
  VolumeManager(ports::StateStore& store,
                ports::LockManager& locks,
                ports::StorageDriver& driver,
                const ports::Clock& clock,
                VolumeManagerOptions options);

  JobOutcome Handle(const ports::Delivery& delivery);

 private:
  // Writes `values` if the volume still has `expected_status` and `operation_id`, retrying
  // engine errors a bounded number of times. False if it could not be written, or if `lock` is
  // lost (then nothing is written).
  bool WriteStatus(const ports::Lock& lock,
                   const std::string& volume_id,
                   domain::VolumeStatus expected_status,
                   const std::string& operation_id,
                   const ports::Row& values);
  Result<void> RunDriver(domain::Operation operation,
                         const Volume& volume,
                         const std::string& operation_id,
                         std::uint64_t fencing_token);

  ports::StateStore& store_;
  ports::LockManager& locks_;
  ports::StorageDriver& driver_;
  const ports::Clock& clock_;
  VolumeManagerOptions options_;
};

}  // namespace clinker::services
