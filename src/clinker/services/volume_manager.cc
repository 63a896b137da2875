#include "clinker/services/volume_manager.h"

#include <thread>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/domain/stuck_job.h"
#include "clinker/services/job_message.h"
#include "clinker/services/lock_names.h"

namespace clinker::services {

using domain::JobAction;
using domain::Operation;
using domain::VolumeStatus;
using ports::Expectation;

namespace {

// The status a volume takes when its operation fails on the back-end.
VolumeStatus FailedStatusFor(Operation operation) {
  switch (operation) {
    case Operation::kCreateVolume:
      return VolumeStatus::kError;
    case Operation::kDeleteVolume:
      return VolumeStatus::kErrorDeleting;
  }
  return VolumeStatus::kError;
}

// Attempts at re-reading and re-deciding when a status write lost a race.
constexpr int kDecideAttempts = 3;

}  // namespace

VolumeManager::VolumeManager(ports::StateStore& store,
                             ports::LockManager& locks,
                             ports::StorageDriver& driver,
                             const ports::Clock& clock,
                             VolumeManagerOptions options)
    : store_(store), locks_(locks), driver_(driver), clock_(clock), options_(options) {}

bool VolumeManager::WriteStatus(const ports::Lock& lock,
                                const std::string& volume_id,
                                VolumeStatus expected_status,
                                const std::string& operation_id,
                                const ports::Row& values) {
  for (int attempt = 0; attempt < options_.final_write_attempts; ++attempt) {
    if (lock.IsLost()) {
      log::Error("volume.lock_lost",
                 {{"volume_id", volume_id},
                  {"fencing_token", static_cast<long long>(lock.fencing_token())}});
      return false;
    }
    // Fencing: the write records this lock's token and is refused if a newer holder already
    // wrote, so a holder that lost its lock (paused past its lease) cannot write from the past.
    const auto token = static_cast<std::int64_t>(lock.fencing_token());
    ports::Row fenced_values = values;
    fenced_values["fencing_token"] = token;
    auto written = store_.ConditionalUpdate(ports::Table::kVolumes,
                                            volume_id,
                                            fenced_values,
                                            {Expectation::Equals("status", Status(expected_status)),
                                             Expectation::Equals("operation_id", operation_id),
                                             Expectation::NullOrAtMost("fencing_token", token)},
                                            {});
    if (written) {
      return written->has_value();
    }
    log::Warn("volume.status_write_retry",
              {{"volume_id", volume_id}, {"error", written.error().ToString()}});
    std::this_thread::sleep_for(options_.final_write_backoff);
  }
  return false;
}

Result<void> VolumeManager::RunDriver(Operation operation,
                                      const Volume& volume,
                                      const std::string& operation_id,
                                      std::uint64_t fencing_token) {
  switch (operation) {
    case Operation::kCreateVolume:
      return driver_.CreateVolume(
          ports::VolumeSpec{volume.id, volume.size_gib, operation_id, fencing_token});
    case Operation::kDeleteVolume:
      return driver_.DeleteVolume(volume.id, operation_id, fencing_token);
  }
  return MakeError(ErrorCode::kInternal, "unknown operation");
}

JobOutcome VolumeManager::Handle(const ports::Delivery& delivery) {
  auto message = JobMessage::FromJson(delivery.payload);
  if (!message) {
    log::Error("volume.bad_job", {{"job_id", delivery.job_id}, {"error", message.error().message}});
    return JobOutcome::kDone;  // A malformed job never becomes valid: drop it.
  }
  const std::string& volume_id = message->resource_id;
  const std::string& operation_id = message->operation_id;
  // The mode follows what the operation does to the volume (lock_names.h has the table).
  const ports::LockRequest lock_request = VolumeLockRequest(volume_id, message->operation);
  auto lock = locks_.Acquire(lock_request, options_.lock_timeout);
  if (!lock) {
    log::Warn("volume.lock_not_acquired",
              {{"volume_id", volume_id},
               {"lock_mode", ports::LockModeName(lock_request.mode)},
               {"error", lock.error().ToString()}});
    return JobOutcome::kRetryLater;
  }
  // Logged with every decision, so that the log shows which grant each action ran under.
  const auto fencing_token = static_cast<long long>((*lock)->fencing_token());

  for (int attempt = 0; attempt < kDecideAttempts; ++attempt) {
    if ((*lock)->IsLost()) {
      // Someone else may hold the volume now: stop touching it, and let the queue decide who
      // runs the job.
      log::Error("volume.job_stopped_lock_lost",
                 {{"volume_id", volume_id}, {"fencing_token", fencing_token}});
      return JobOutcome::kRetryLater;
    }
    auto row = store_.Get(ports::Table::kVolumes, volume_id);
    if (!row) {
      if (row.error().code == ErrorCode::kNotFound) {
        log::Warn("volume.job_for_unknown_volume", {{"volume_id", volume_id}});
        return JobOutcome::kDone;
      }
      return JobOutcome::kRetryLater;
    }
    auto volume = VolumeFromRow(*row);
    if (!volume) {
      log::Error("volume.unreadable",
                 {{"volume_id", volume_id}, {"error", volume.error().message}});
      return JobOutcome::kDone;
    }
    const domain::VolumeStatusInfo& info = domain::Describe(volume->status);
    domain::ResourceState state{volume->deleted ? domain::Phase::kDeleted : info.phase,
                                info.operation,
                                volume->operation_id == operation_id};
    domain::JobDecision decision = domain::DecideJob(state, message->operation);
    log::Info("volume.job_decision",
              {{"volume_id", volume_id},
               {"operation", domain::OperationName(message->operation)},
               {"status", info.stored},
               {"redelivered", delivery.redelivered},
               {"action", domain::JobActionName(decision.action)},
               {"rule", static_cast<long long>(decision.rule)},
               {"lock_mode", ports::LockModeName((*lock)->mode())},
               {"fencing_token", fencing_token}});
    std::string now = FormatTimestamp(clock_.WallNow());

    // A takeover: another holder left this job in progress, and may only be paused. Fence the
    // volume first, so that holder cannot touch its data once it resumes.
    if (state.phase == domain::Phase::kInProgress) {
      if (auto fenced = driver_.Fence(volume_id, (*lock)->fencing_token()); !fenced) {
        log::Error("volume.fence_failed",
                   {{"volume_id", volume_id},
                    {"fencing_token", fencing_token},
                    {"error", fenced.error().ToString()}});
        return JobOutcome::kRetryLater;
      }
    }

    switch (decision.action) {
      case JobAction::kDropDuplicate:
      case JobAction::kFailJob:
        return JobOutcome::kDone;
      case JobAction::kSetErrorThenDrop:
      case JobAction::kSetErrorThenProceed: {
        std::string reason = "interrupted while " + std::string(info.stored) +
                             ": the node running it stopped before it finished";
        if (!WriteStatus(**lock,
                         volume_id,
                         volume->status,
                         volume->operation_id.value_or(""),
                         {{"status", Status(VolumeStatus::kError)},
                          {"status_reason", reason},
                          {"updated_at", now}})) {
          continue;  // Changed under us (or engine down): read again and decide again.
        }
        log::Warn("volume.set_error", {{"volume_id", volume_id}, {"reason", reason}});
        return JobOutcome::kDone;
      }
      case JobAction::kProceed:
      case JobAction::kRedo:
        break;
    }

    // Mark the operation as under way before touching the back-end. The job's operation id is
    // recorded too: a redo may run under a redelivered job of an earlier id, and the final write
    // below expects the id of the job that did the work.
    VolumeStatus in_progress = domain::InProgressStatusFor(message->operation);
    if (!WriteStatus(**lock,
                     volume_id,
                     volume->status,
                     volume->operation_id.value_or(""),
                     {{"status", Status(in_progress)},
                      {"operation_id", operation_id},
                      {"updated_at", now}})) {
      continue;
    }
    auto done = RunDriver(message->operation, *volume, operation_id, (*lock)->fencing_token());
    if (!done && done.error().code == ErrorCode::kFenced) {
      // A newer holder fenced the volume: this job's lock is stale, and every write it could
      // make would be one from the past.
      log::Error("volume.job_fenced",
                 {{"volume_id", volume_id}, {"error", done.error().ToString()}});
      return JobOutcome::kRetryLater;
    }
    now = FormatTimestamp(clock_.WallNow());
    ports::Row final_values;
    if (done) {
      if (message->operation == Operation::kDeleteVolume) {
        final_values = {{"status", Status(VolumeStatus::kDeleted)},
                        {"deleted", std::int64_t{1}},
                        {"deleted_at", now},
                        {"updated_at", now}};
      } else {
        final_values = {{"status", Status(VolumeStatus::kAvailable)}, {"updated_at", now}};
      }
    } else {
      final_values = {{"status", Status(FailedStatusFor(message->operation))},
                      {"status_reason", done.error().message},
                      {"updated_at", now}};
      log::Error("volume.driver_failed",
                 {{"volume_id", volume_id}, {"error", done.error().ToString()}});
    }
    if (!WriteStatus(**lock, volume_id, in_progress, operation_id, final_values)) {
      // Redelivery finds the volume in progress and the stuck-job rules finish the story.
      log::Error("volume.final_status_not_written", {{"volume_id", volume_id}});
      return JobOutcome::kRetryLater;
    }
    log::Info("volume.job_done",
              {{"volume_id", volume_id},
               {"operation", domain::OperationName(message->operation)},
               {"ok", static_cast<bool>(done)}});
    return JobOutcome::kDone;
  }
  log::Warn("volume.job_gave_up_deciding", {{"volume_id", volume_id}});
  return JobOutcome::kRetryLater;
}

}  // namespace clinker::services
