// VolumeManager: runs the jobs of one back-end (volume create, clone, delete, extend; snapshot
// create and delete), applying the stuck-job rules.
//
// For each job: take its target's lock (exclusive for an operation that writes it:
// services/lock_names.h), read the target, ask domain::DecideJob what this job is (fresh, a dead
// node's, or a duplicate); for a job with a source (a clone, a volume from a snapshot, a
// snapshot of a volume) take the source's lock shared, read it and ask DecideJob for a read of
// it; move the target from its queued status to its in-progress status with a conditional
// update, call the driver, write the final status, release the locks; the worker pool then
// acks. Because the in-progress status is written before the driver is called, a node that
// picks up a redelivered job can tell a job nobody started from one that was interrupted. The
// decision log line carries the lock's fencing token.
//
// Sources are only read, under a shared lock: any number of clones and snapshots of one volume
// run at once, and a write to the source (delete, extend) waits until they are all done.
//
// Fencing: every driver call carries the target lock's fencing token, and a job that finds its
// target left in progress by another holder (a takeover) first fences it at the back-end with
// its token, so the earlier holder, if it was only paused, can no longer change the data. Every
// status write stores the lock's token in the row's `fencing_token` and expects the stored one
// to be at most its own, so a write from an earlier holder is refused by the database even if
// the status it expects happens to be there again. Before every status write the job checks
// that its lock is not lost; once it is, the job stops at once (no further write) and goes back
// to the queue.
//
// Thread safe: Handle runs on several workers at once; the per-resource locks serialise jobs on
// one resource.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "clinker/ports/backup_store.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/lock_manager.h"
#include "clinker/ports/state_store.h"
#include "clinker/ports/storage_driver.h"
#include "clinker/services/job_message.h"
#include "clinker/services/job_worker_pool.h"
#include "clinker/services/quotas.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

struct VolumeManagerOptions {
  // How long a job waits for a volume's lock before it is given back to the queue.
  std::chrono::milliseconds lock_timeout{60000};
  // Attempts at writing a final status before the job is left for redelivery.
  int final_write_attempts = 5;
  std::chrono::milliseconds final_write_backoff{200};
  // Test hook (empty: none): called with "<operation>:before_driver" just before a job calls the
  // driver and "<operation>:after_driver" just after the driver returned, so crash tests can stop
  // the process at exactly those points.
  std::function<void(std::string_view point)> fault_point;
  // Where backups go (null: backup jobs fail with a clear reason). Outlives the manager.
  ports::BackupStore* backup_store = nullptr;
  // What rows count (services/quotas.h): the write that deletes a volume, snapshot or backup
  // releases its usage, and the write that fails an extend releases the growth.
  QuotaOptions quota;
};

class VolumeManager {
 public:
  VolumeManager(ports::StateStore& store,
                ports::LockManager& locks,
                ports::StorageDriver& driver,
                const ports::Clock& clock,
                VolumeManagerOptions options);

  // Runs the job, then, for a member of a generic group or a group snapshot (a volume create or
  // delete, a snapshot create or delete), tries to complete its group (group_completion.h):
  // also after a job dropped as a duplicate, so the redelivered job of a node that died before
  // completing the group completes it. A completion the store could not answer leaves the job
  // for redelivery (kRetryLater).
  JobOutcome Handle(const ports::Delivery& delivery);

 private:
  JobOutcome RunJob(const ports::Delivery& delivery);
  // The group completion step of Handle, for the job's target.
  JobOutcome CompleteGroupOf(const JobMessage& message);

  struct Target;
  struct Job;

  // Writes `values` if the row of `kind` still has `expected_status` and `operation_id`,
  // retrying engine errors a bounded number of times. False if it could not be written, or if
  // `lock` is lost (then nothing is written). `usage` changes with the write, atomically. A
  // volume write that ends the volume (soft-delete) or fails its create (status error) also
  // gives back the capacity the volume holds on its pool (capacity_reserved_gib, read before
  // each attempt and expected unchanged), so it is released exactly once (scheduler.h).
  bool WriteStatus(const ports::Lock& lock,
                   domain::ResourceKind kind,
                   const std::string& id,
                   std::string_view expected_status,
                   const std::string& operation_id,
                   const ports::Row& values,
                   const std::vector<ports::UsageChange>& usage = {});
  // What the final write of a job releases: a deleted target's usage, a failed extend's growth.
  Result<std::vector<ports::UsageChange>> FinalUsage(const Job& job,
                                                     const Target& target,
                                                     const ports::Row& values);
  // Reads the source of the job's target under `source_lock` and decides whether the job may
  // read it: kDone with the target failed (or nothing to do), kRetryLater, or nullopt to go on.
  std::optional<JobOutcome> CheckSource(Job& job, const Target& target);
  // Calls the driver for the job; on success, the columns to write with the final status.
  Result<ports::Row> RunDriver(const Job& job, const Target& target);
  ports::Row FinalValues(const Job& job,
                         const Target& target,
                         const Result<ports::Row>& done,
                         const std::string& now) const;
  // After the target reached a final status (done, failed or set to error): puts back what the
  // operation held (a volume backing-up, a backup restoring) and derives the volume's status
  // from its attachments again (attachment_state.h).
  void Settle(const Job& job, const Target& target);

  // A cascading delete (volumes_api.h) leaves the volume's snapshots being deleted by their own
  // jobs: the volume goes once they are gone. `being_deleted` while any is queued or under way
  // (or is a create that lost the race with this delete and is being withdrawn); `left` names one
  // at rest (its delete failed: the volume's delete fails too).
  struct SnapshotsLeft {
    bool being_deleted = false;
    std::optional<std::string> left;
  };

  Result<SnapshotsLeft> SnapshotsLeftOf(const std::string& volume_id);
  // The volume's path on this host (the driver's "local" connection), for backups.
  Result<std::string> LocalPath(const std::string& volume_id);
  Result<ports::Row> CreateBackup(const Job& job, const Target& target);
  Result<ports::Row> DeleteBackup(const Job& job, const Target& target);
  Result<ports::Row> RestoreBackup(const Job& job, const Target& target);
  void FaultPoint(const Job& job, std::string_view where) const;

  ports::StateStore& store_;
  ports::LockManager& locks_;
  ports::StorageDriver& driver_;
  const ports::Clock& clock_;
  VolumeManagerOptions options_;
  QuotaService quotas_;
};

}  // namespace clinker::services
