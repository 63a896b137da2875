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
// Thread safe: Handle runs on several workers at once; the per-volume lock serialises jobs on
// one volume.
#pragma once

#include <chrono>
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
  // engine errors a bounded number of times. False if it could not be written.
  bool WriteStatus(const std::string& volume_id,
                   domain::VolumeStatus expected_status,
                   const std::string& operation_id,
                   const ports::Row& values);
  Result<void> RunDriver(domain::Operation operation,
                         const Volume& volume,
                         const std::string& operation_id);

  ports::StateStore& store_;
  ports::LockManager& locks_;
  ports::StorageDriver& driver_;
  const ports::Clock& clock_;
  VolumeManagerOptions options_;
};

}  // namespace clinker::services
