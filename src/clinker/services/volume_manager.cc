#include "clinker/services/volume_manager.h"

#include <algorithm>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/domain/stuck_job.h"
#include "clinker/services/attachment_state.h"
#include "clinker/services/group_completion.h"
#include "clinker/services/job_message.h"
#include "clinker/services/lock_names.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

using domain::JobAction;
using domain::Operation;
using domain::ResourceKind;
using ports::Expectation;

namespace {

// Attempts at re-reading and re-deciding when a status write lost a race.
constexpr int kDecideAttempts = 3;

ports::Table TableOf(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kVolume:
      return ports::Table::kVolumes;
    case ResourceKind::kSnapshot:
      return ports::Table::kSnapshots;
    case ResourceKind::kAttachment:
      return ports::Table::kAttachments;
    case ResourceKind::kBackup:
      return ports::Table::kBackups;
  }
  return ports::Table::kVolumes;
}

std::string_view KindName(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kVolume:
      return "volume";
    case ResourceKind::kSnapshot:
      return "snapshot";
    case ResourceKind::kAttachment:
      return "attachment";
    case ResourceKind::kBackup:
      return "backup";
  }
  return "volume";
}

// The log field naming a resource ("volume_id", "snapshot_id", "attachment_id"), as everywhere
// else in the logs.
std::string_view IdKey(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kVolume:
      return "volume_id";
    case ResourceKind::kSnapshot:
      return "snapshot_id";
    case ResourceKind::kAttachment:
      return "attachment_id";
    case ResourceKind::kBackup:
      return "backup_id";
  }
  return "volume_id";
}

// The connector stored with an attachment (a JSON object), as far as drivers need it.
ports::Connector ConnectorFromJson(const std::string& text) {
  ports::Connector connector;
  nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_object()) {
    if (json.contains("host") && json["host"].is_string()) {
      connector.host = json["host"].get<std::string>();
    }
    if (json.contains("initiator") && json["initiator"].is_string()) {
      connector.initiator = json["initiator"].get<std::string>();
    }
  }
  return connector;
}

std::string ConnectionInfoToJson(const ports::ConnectionInfo& info) {
  return nlohmann::json{{"driver_volume_type", info.driver_volume_type}, {"data", info.data}}
      .dump();
}

}  // namespace

// The job in hand, with its locks.
struct VolumeManager::Job {
  JobMessage message;
  ResourceKind kind = ResourceKind::kVolume;
  ports::LockPtr lock;         // On the target.
  ports::LockPtr source_lock;  // Shared, on the source; taken once the target names it.
};

// What the job needs of its target row, whichever kind it is.
struct VolumeManager::Target {
  std::string stored_status;
  domain::StatusView status;
  std::string operation_id;  // Empty when NULL.
  bool deleted = false;
  std::int64_t size_gib = 0;
  std::int64_t pending_size_gib = 0;  // What an extend grows the volume to.
  ports::Row row;                     // As read: what a final write releases (quotas).
  std::string connector;              // An attachment's connector (JSON).
  // What the job reads, if anything: the volume cloned or snapshotted or backed up or attached,
  // the snapshot a volume is made from, the backup restored.
  std::optional<ResourceKind> source_kind;
  std::string source_id;
  std::optional<std::string> parent_backup_id;  // An incremental backup's parent.

  // The driver's view of a create's source.
  ports::VolumeSource DriverSource() const {
    if (source_kind == ResourceKind::kVolume) {
      return {ports::VolumeSource::Kind::kVolume, source_id};
    }
    if (source_kind == ResourceKind::kSnapshot) {
      return {ports::VolumeSource::Kind::kSnapshot, source_id};
    }
    return {};
  }
};

VolumeManager::VolumeManager(ports::StateStore& store,
                             ports::LockManager& locks,
                             ports::StorageDriver& driver,
                             const ports::Clock& clock,
                             VolumeManagerOptions options)
    : store_(store),
      locks_(locks),
      driver_(driver),
      clock_(clock),
      options_(std::move(options)),
      quotas_(store, options_.quota) {}

namespace {

// A volume write that soft-deletes the volume or fails its create (the only writes to `error`).
bool EndsVolumeOrItsCreate(const ports::Row& values) {
  auto deleted = values.find("deleted");
  if (deleted != values.end() && deleted->second == ports::Value(std::int64_t{1})) {
    return true;
  }
  auto status = values.find("status");
  return status != values.end() &&
         status->second == ports::Value(Status(domain::VolumeStatus::kError));
}

}  // namespace

bool VolumeManager::WriteStatus(const ports::Lock& lock,
                                ResourceKind kind,
                                const std::string& id,
                                std::string_view expected_status,
                                const std::string& operation_id,
                                const ports::Row& values,
                                const std::vector<ports::UsageChange>& usage) {
  for (int attempt = 0; attempt < options_.final_write_attempts; ++attempt) {
    if (lock.IsLost()) {
      log::Error(
          "volume.lock_lost",
          {{IdKey(kind), id}, {"fencing_token", static_cast<long long>(lock.fencing_token())}});
      return false;
    }
    // Fencing: the write records this lock's token and is refused if a newer holder already
    // wrote, so a holder that lost its lock (paused past its lease) cannot write from the past.
    const auto token = static_cast<std::int64_t>(lock.fencing_token());
    ports::Row fenced_values = values;
    fenced_values["fencing_token"] = token;
    std::vector<Expectation> expected = {
        Expectation::Equals("status", std::string(expected_status)),
        operation_id.empty() ? Expectation::IsNull("operation_id")
                             : Expectation::Equals("operation_id", operation_id),
        Expectation::NullOrAtMost("fencing_token", token)};
    std::vector<ports::UsageChange> changes = usage;
    if (kind == ResourceKind::kVolume && EndsVolumeOrItsCreate(values)) {
      auto row = store_.Get(ports::Table::kVolumes, id);
      if (!row) {
        log::Warn("volume.status_write_retry",
                  {{IdKey(kind), id}, {"error", row.error().ToString()}});
        std::this_thread::sleep_for(options_.final_write_backoff);
        continue;
      }
      const std::int64_t reserved = IntegerOr(*row, "capacity_reserved_gib", 0);
      std::optional<std::string> pool = OptionalText(*row, "host");
      if (reserved > 0 && pool) {
        fenced_values["capacity_reserved_gib"] = std::int64_t{0};
        expected.push_back(Expectation::Equals("capacity_reserved_gib", reserved));
        expected.push_back(Expectation::Equals("host", *pool));
        changes.push_back(ports::UsageChange{
            "", *pool, -reserved, -1, ports::UsageChange::Counter::kPoolCapacity});
      }
    }
    auto written =
        store_.ConditionalUpdateWithUsage(TableOf(kind), id, fenced_values, expected, {}, changes);
    if (written) {
      return written->has_value();
    }
    log::Warn("volume.status_write_retry",
              {{IdKey(kind), id}, {"error", written.error().ToString()}});
    std::this_thread::sleep_for(options_.final_write_backoff);
  }
  return false;
}

void VolumeManager::Settle(const Job& job, const Target& target) {
  const Operation operation = job.message.operation;
  const std::string now = FormatTimestamp(clock_.WallNow());
  if (operation == Operation::kCreateBackup && target.source_kind == ResourceKind::kSnapshot) {
    // The snapshot was backing-up for this backup only: it is available again.
    auto back = store_.ConditionalUpdate(
        ports::Table::kSnapshots,
        target.source_id,
        {{"status", std::string(domain::StoredName(domain::SnapshotStatus::kAvailable))},
         {"updated_at", now}},
        {Expectation::Equals("status",
                             std::string(domain::StoredName(domain::SnapshotStatus::kBackingUp))),
         Expectation::Equals("deleted", std::int64_t{0})},
        {});
    back.IgnoreError("an admin reset puts a snapshot left backing-up back");
    return;
  }
  if (operation == Operation::kCreateBackup) {
    // The volume was backing-up for this backup only: it is back to what its attachments say.
    auto back = store_.ConditionalUpdate(
        ports::Table::kVolumes,
        target.source_id,
        {{"status", Status(domain::VolumeStatus::kAvailable)}, {"updated_at", now}},
        {Expectation::Equals("status", Status(domain::VolumeStatus::kBackingUp)),
         Expectation::Equals("deleted", std::int64_t{0})},
        {});
    back.IgnoreError("the next backup or attachment change of the volume settles it again");
  }
  if (operation == Operation::kRestoreBackup && target.source_kind) {
    auto back = store_.ConditionalUpdate(
        ports::Table::kBackups,
        target.source_id,
        {{"status", std::string(domain::StoredName(domain::BackupStatus::kAvailable))},
         {"restore_volume_id", std::monostate{}},
         {"updated_at", now}},
        {Expectation::Equals("status",
                             std::string(domain::StoredName(domain::BackupStatus::kRestoring))),
         Expectation::Equals("restore_volume_id", job.message.resource_id)},
        {});
    back.IgnoreError("an admin reset puts a backup left restoring back");
  }
  std::string volume_id;
  if (job.kind == ResourceKind::kAttachment || operation == Operation::kCreateBackup) {
    volume_id = target.source_id;
  } else if (operation == Operation::kExtendVolume || operation == Operation::kRestoreBackup) {
    volume_id = job.message.resource_id;  // An extended in-use volume is in use again.
  } else {
    return;
  }
  if (auto refreshed = RefreshVolumeAttachState(store_, clock_, volume_id); !refreshed) {
    // The next attachment change of the volume derives its status again.
    log::Warn("volume.attach_state_not_refreshed",
              {{"volume_id", volume_id}, {"error", refreshed.error().ToString()}});
  }
}

Result<VolumeManager::SnapshotsLeft> VolumeManager::SnapshotsLeftOf(const std::string& volume_id) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals("volume_id", volume_id)};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> snapshots,
                           store_.List(ports::Table::kSnapshots, query));
  SnapshotsLeft found;
  for (const ports::Row& snapshot : snapshots) {
    const std::string status = TextOr(snapshot, "status", "");
    // Being deleted (a cascade), or a create that is being withdrawn: a snapshot request that
    // lost the race with this delete inserts its row, then finds the volume no longer available
    // and soft-deletes it again. Either way it is gone in a moment: wait for it.
    if (status == domain::StoredName(domain::SnapshotStatus::kDeletingQueued) ||
        status == domain::StoredName(domain::SnapshotStatus::kDeleting) ||
        status == domain::StoredName(domain::SnapshotStatus::kCreatingQueued) ||
        status == domain::StoredName(domain::SnapshotStatus::kCreating)) {
      found.being_deleted = true;
    } else {
      found.left = TextOr(snapshot, "id", "");
    }
  }
  return found;
}

Result<std::string> VolumeManager::LocalPath(const std::string& volume_id) {
  CLINKER_ASSIGN_OR_RETURN(
      ports::ConnectionInfo info,
      driver_.InitializeConnection(volume_id, ports::Connector{"clinker-backup", ""}));
  auto path = info.data.find("device_path");
  if (info.driver_volume_type != "local" || path == info.data.end()) {
    return MakeError(ErrorCode::kDriverFailed,
                     "the back-end does not give a local path to volume " + volume_id +
                         " (connection type " + info.driver_volume_type + "): backups need one");
  }
  return path->second;
}

namespace {

// Where a backup's data is in the backup store: under its own id, or, for a backup imported
// (import_record) from another one's exported record, under the id of the backup that made it
// (service_metadata, as Cinder's drivers keep where their objects are).
std::string BackupDataKey(const ports::Row& backup) {
  return OptionalText(backup, "service_metadata").value_or(TextOr(backup, "id", ""));
}

}  // namespace

Result<ports::Row> VolumeManager::CreateBackup(const Job& job, const Target& target) {
  if (options_.backup_store == nullptr) {
    return MakeError(ErrorCode::kDriverFailed, "no backup store is configured on this node");
  }
  std::optional<std::string> parent_key;
  if (target.parent_backup_id) {
    CLINKER_ASSIGN_OR_RETURN(ports::Row parent,
                             store_.Get(ports::Table::kBackups, *target.parent_backup_id));
    parent_key = BackupDataKey(parent);
  }
  // A snapshot is read through a temporary volume made from it (as Cinder's generic backup of a
  // snapshot does), named by the backup's id: a redelivered job finds it made already (the
  // driver's create is idempotent) and the backup's lock guards it as the backup's own.
  const bool of_snapshot = target.source_kind == ResourceKind::kSnapshot;
  const std::string& backup_id = job.message.resource_id;
  const std::string read_id = of_snapshot ? backup_id : target.source_id;
  if (of_snapshot) {
    CLINKER_RETURN_IF_ERROR(driver_.CreateVolume(ports::VolumeSpec{backup_id,
                                                                   target.size_gib,
                                                                   job.message.operation_id,
                                                                   job.lock->fencing_token(),
                                                                   target.DriverSource()}));
  }
  CLINKER_ASSIGN_OR_RETURN(std::string path, LocalPath(read_id));
  auto backup = options_.backup_store->CreateBackup(
      ports::BackupRequest{job.message.resource_id, path, parent_key});
  auto ended = driver_.TerminateConnection(read_id, ports::Connector{"clinker-backup", ""});
  ended.IgnoreError("a local export holds nothing");
  if (of_snapshot) {
    auto removed =
        driver_.DeleteVolume(backup_id, job.message.operation_id, job.lock->fencing_token());
    if (!removed) {
      log::Warn("backup.temporary_volume_left",
                {{"backup_id", backup_id}, {"error", removed.error().ToString()}});
    }
  }
  if (!backup) {
    return tl::unexpected(backup.error());
  }
  ports::Row done{{"object_count", backup->object_count}, {"stored_bytes", backup->stored_bytes}};
  if (!of_snapshot) {
    // Of a snapshot, the data is as old as the snapshot (set when the backup was asked for).
    done["data_timestamp"] = FormatTimestamp(clock_.WallNow());
  }
  return done;
}

Result<ports::Row> VolumeManager::DeleteBackup(const Job& job, const Target& target) {
  if (options_.backup_store == nullptr) {
    return MakeError(ErrorCode::kDriverFailed, "no backup store is configured on this node");
  }
  // Data an imported backup shares with the backup it was exported from stays while either
  // row is live (the last one's delete removes it).
  const std::string key = BackupDataKey(target.row);
  const std::string& own_id = job.message.resource_id;
  for (const char* column : {"id", "service_metadata"}) {
    ports::ListQuery sharing;
    sharing.filters = {ports::Expectation::Equals(column, key),
                       ports::Expectation::Equals("deleted", std::int64_t{0})};
    sharing.limit = 2;
    CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> rows,
                             store_.List(ports::Table::kBackups, sharing));
    if (std::any_of(rows.begin(), rows.end(), [&](const ports::Row& row) {
          return TextOr(row, "id", "") != own_id;
        })) {
      log::Info("backup.data_kept", {{"backup_id", own_id}, {"data_key", key}});
      return ports::Row{};
    }
  }
  CLINKER_RETURN_IF_ERROR(options_.backup_store->DeleteBackup(key));
  return ports::Row{};
}

Result<ports::Row> VolumeManager::RestoreBackup(const Job& job, const Target& target) {
  if (options_.backup_store == nullptr) {
    return MakeError(ErrorCode::kDriverFailed, "no backup store is configured on this node");
  }
  if (!target.source_kind) {
    return MakeError(ErrorCode::kInternal, "the volume does not name the backup to restore");
  }
  const std::string& volume_id = job.message.resource_id;
  // A restore to a new volume makes the volume first (idempotent when it exists already).
  auto path = LocalPath(volume_id);
  if (!path && path.error().code == ErrorCode::kNotFound) {
    CLINKER_RETURN_IF_ERROR(driver_.CreateVolume(ports::VolumeSpec{
        volume_id, target.size_gib, job.message.operation_id, job.lock->fencing_token(), {}}));
    path = LocalPath(volume_id);
  }
  if (!path) {
    return tl::unexpected(path.error());
  }
  CLINKER_ASSIGN_OR_RETURN(ports::Row backup, store_.Get(ports::Table::kBackups, target.source_id));
  CLINKER_RETURN_IF_ERROR(options_.backup_store->RestoreBackup(BackupDataKey(backup), *path));
  auto ended = driver_.TerminateConnection(volume_id, ports::Connector{"clinker-backup", ""});
  ended.IgnoreError("a local export holds nothing");
  return ports::Row{{"backup_id", std::monostate{}}};
}

void VolumeManager::FaultPoint(const Job& job, std::string_view where) const {
  if (options_.fault_point) {
    options_.fault_point(std::string(domain::OperationName(job.message.operation)) + ":" +
                         std::string(where));
  }
}

Result<ports::Row> VolumeManager::RunDriver(const Job& job, const Target& target) {
  const JobMessage& message = job.message;
  const std::uint64_t token = job.lock->fencing_token();
  auto no_values = [](Result<void> done) -> Result<ports::Row> {
    if (!done) {
      return tl::unexpected(done.error());
    }
    return ports::Row{};
  };
  switch (message.operation) {
    case Operation::kCreateVolume:
      return no_values(driver_.CreateVolume(ports::VolumeSpec{message.resource_id,
                                                              target.size_gib,
                                                              message.operation_id,
                                                              token,
                                                              target.DriverSource()}));
    case Operation::kDeleteVolume:
      return no_values(driver_.DeleteVolume(message.resource_id, message.operation_id, token));
    case Operation::kExtendVolume:
      return no_values(driver_.ExtendVolume(
          message.resource_id, target.pending_size_gib, message.operation_id, token));
    case Operation::kCreateSnapshot:
      return no_values(driver_.CreateSnapshot(
          ports::SnapshotSpec{message.resource_id, target.source_id, message.operation_id, token}));
    case Operation::kDeleteSnapshot:
      return no_values(driver_.DeleteSnapshot(message.resource_id, message.operation_id, token));
    case Operation::kAttachVolume: {
      CLINKER_ASSIGN_OR_RETURN(
          ports::ConnectionInfo info,
          driver_.InitializeConnection(target.source_id, ConnectorFromJson(target.connector)));
      return ports::Row{{"connection_info", ConnectionInfoToJson(info)}};
    }
    case Operation::kDetachVolume:
      return no_values(
          driver_.TerminateConnection(target.source_id, ConnectorFromJson(target.connector)));
    case Operation::kCreateBackup:
      return CreateBackup(job, target);
    case Operation::kDeleteBackup:
      return DeleteBackup(job, target);
    case Operation::kRestoreBackup:
      return RestoreBackup(job, target);
  }
  return MakeError(ErrorCode::kInternal, "unknown operation");
}

ports::Row VolumeManager::FinalValues(const Job& job,
                                      const Target& target,
                                      const Result<ports::Row>& done,
                                      const std::string& now) const {
  const Operation operation = job.message.operation;
  if (!done) {
    ports::Row values = {{"status", std::string(domain::FailedStatusOf(operation))},
                         {"status_reason", done.error().message},
                         {"updated_at", now}};
    if (operation == Operation::kExtendVolume) {
      values["pending_size_gib"] = std::monostate{};
    }
    return values;
  }
  ports::Row values = {{"status", std::string(domain::DoneStatusOf(operation))},
                       {"status_reason", std::monostate{}},
                       {"updated_at", now}};
  for (const auto& [column, value] : *done) {
    values[column] = value;
  }
  // The operations that end their target (delete_*, detach) soft-delete its row.
  if (domain::DescribeStored(job.kind, domain::DoneStatusOf(operation))->phase ==
      domain::Phase::kDeleted) {
    values["deleted"] = std::int64_t{1};
    values["deleted_at"] = now;
  }
  if (operation == Operation::kDetachVolume) {
    values["detach_time"] = now;
  }
  if (operation == Operation::kCreateSnapshot) {
    values["progress"] = std::string("100%");
  }
  if (operation == Operation::kExtendVolume) {
    values["size_gib"] = target.pending_size_gib;
    values["pending_size_gib"] = std::monostate{};
  }
  return values;
}

Result<std::vector<ports::UsageChange>> VolumeManager::FinalUsage(const Job& job,
                                                                  const Target& target,
                                                                  const ports::Row& values) {
  const std::string project = TextOr(target.row, "project_id", "");
  const Operation operation = job.message.operation;
  const bool deletes = values.contains("deleted");
  if (operation == Operation::kDeleteVolume && deletes) {
    // A volume force-deleted while an extend was queued still counts the size it was to grow to.
    CLINKER_ASSIGN_OR_RETURN(
        UsageAmounts usage,
        quotas_.UsageOfVolume(std::max(target.size_gib, target.pending_size_gib),
                              OptionalText(target.row, "volume_type_id")));
    return QuotaService::Release(project, usage);
  }
  if (operation == Operation::kDeleteSnapshot && deletes) {
    CLINKER_ASSIGN_OR_RETURN(
        UsageAmounts usage,
        quotas_.UsageOfSnapshot(target.size_gib, TextOr(target.row, "volume_id", "")));
    return QuotaService::Release(project, usage);
  }
  if (operation == Operation::kDeleteBackup && deletes) {
    return QuotaService::Release(project, QuotaService::UsageOfBackup(target.size_gib));
  }
  if (operation == Operation::kExtendVolume && !values.contains("size_gib") &&
      target.pending_size_gib > target.size_gib) {
    // The extend failed: the growth counted when it was queued goes.
    CLINKER_ASSIGN_OR_RETURN(UsageAmounts growth,
                             quotas_.UsageOfExtend(target.pending_size_gib - target.size_gib,
                                                   OptionalText(target.row, "volume_type_id")));
    return QuotaService::Release(project, growth);
  }
  return std::vector<ports::UsageChange>();
}

std::optional<JobOutcome> VolumeManager::CheckSource(Job& job, const Target& target) {
  const std::string& id = job.message.resource_id;
  const ResourceKind source_kind = *target.source_kind;
  const std::string& source_id = target.source_id;
  if (!job.source_lock) {
    const ports::LockRequest request =
        ResourceLockRequest(source_kind, source_id, domain::Access::kRead);
    auto lock = locks_.Acquire(request, options_.lock_timeout);
    if (!lock) {
      log::Warn(
          "volume.source_lock_not_acquired",
          {{IdKey(job.kind), id}, {"source_id", source_id}, {"error", lock.error().ToString()}});
      return JobOutcome::kRetryLater;
    }
    job.source_lock = std::move(*lock);
  }
  // Fails the target with `reason`; the job is done either way (a lost race means another
  // decision already settled the target).
  auto fail_target = [&](const std::string& reason) {
    std::string now = FormatTimestamp(clock_.WallNow());
    if (WriteStatus(*job.lock,
                    job.kind,
                    id,
                    target.stored_status,
                    target.operation_id,
                    {{"status", std::string(domain::FailedStatusOf(job.message.operation))},
                     {"status_reason", reason},
                     {"updated_at", now}})) {
      log::Warn("volume.source_unusable", {{IdKey(job.kind), id}, {"reason", reason}});
      Settle(job, target);
      return JobOutcome::kDone;
    }
    // Not written: the lock is lost or the database is down. Someone must still settle the
    // target, so the job goes back to the queue.
    return JobOutcome::kRetryLater;
  };
  auto row = store_.Get(TableOf(source_kind), source_id);
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return fail_target("the source " + std::string(KindName(source_kind)) + " " + source_id +
                         " does not exist");
    }
    return JobOutcome::kRetryLater;
  }
  std::string stored = TextOr(*row, "status", "");
  auto status = domain::DescribeStored(source_kind, stored);
  if (!status) {
    return fail_target("the source " + source_id + " has an unknown status " + stored);
  }
  const bool deleted = IntegerOr(*row, "deleted", 0) != 0;
  domain::ResourceState state{
      deleted ? domain::Phase::kDeleted : status->phase, status->operation, false};
  domain::JobDecision decision =
      domain::DecideJob(state, job.message.operation, domain::Access::kRead);
  log::Info("volume.source_decision",
            {{IdKey(job.kind), id},
             {"source_id", source_id},
             {"source_status", stored},
             {"action", domain::JobActionName(decision.action)},
             {"rule", static_cast<long long>(decision.rule)}});
  switch (decision.action) {
    case JobAction::kProceed:
    case JobAction::kRedo:
      return std::nullopt;
    case JobAction::kSetErrorThenProceed: {
      // The source's writer died mid-way (nobody else can hold its exclusive lock while we hold
      // the shared one): mark it, then read what is there, as the design says.
      std::string reason =
          "interrupted while " + stored + ": the node running it stopped before it finished";
      if (!WriteStatus(*job.source_lock,
                       source_kind,
                       source_id,
                       stored,
                       TextOr(*row, "operation_id", ""),
                       {{"status", std::string(domain::FailedStatusOf(*status->operation))},
                        {"status_reason", reason},
                        {"updated_at", FormatTimestamp(clock_.WallNow())}})) {
        return JobOutcome::kRetryLater;
      }
      return std::nullopt;
    }
    case JobAction::kFailJob:
    case JobAction::kDropDuplicate:
    case JobAction::kSetErrorThenDrop:
      return fail_target("the source " + std::string(KindName(source_kind)) + " " + source_id +
                         " cannot be read: " + std::string(decision.why));
  }
  return JobOutcome::kRetryLater;
}

JobOutcome VolumeManager::Handle(const ports::Delivery& delivery) {
  const JobOutcome outcome = RunJob(delivery);
  if (outcome != JobOutcome::kDone) {
    return outcome;
  }
  auto message = JobMessage::FromJson(delivery.payload);
  if (!message) {
    return outcome;
  }
  return CompleteGroupOf(*message);
}

JobOutcome VolumeManager::CompleteGroupOf(const JobMessage& message) {
  const Operation operation = message.operation;
  const bool volume_job =
      operation == Operation::kCreateVolume || operation == Operation::kDeleteVolume;
  const bool snapshot_job =
      operation == Operation::kCreateSnapshot || operation == Operation::kDeleteSnapshot;
  if (!volume_job && !snapshot_job) {
    return JobOutcome::kDone;
  }
  auto row = store_.Get(volume_job ? ports::Table::kVolumes : ports::Table::kSnapshots,
                        message.resource_id);
  if (!row) {
    return row.error().code == ErrorCode::kNotFound ? JobOutcome::kDone : JobOutcome::kRetryLater;
  }
  auto parent = OptionalText(*row, volume_job ? "group_id" : "group_snapshot_id");
  if (!parent) {
    return JobOutcome::kDone;
  }
  auto completed = volume_job ? TryCompleteGroup(store_, clock_, *parent)
                              : TryCompleteGroupSnapshot(store_, clock_, *parent);
  if (!completed) {
    log::Warn("volume.group_completion_retry",
              {{volume_job ? "group_id" : "group_snapshot_id", *parent},
               {"error", completed.error().ToString()}});
    return JobOutcome::kRetryLater;
  }
  return JobOutcome::kDone;
}

JobOutcome VolumeManager::RunJob(const ports::Delivery& delivery) {
  auto message = JobMessage::FromJson(delivery.payload);
  if (!message) {
    log::Error("volume.bad_job", {{"job_id", delivery.job_id}, {"error", message.error().message}});
    return JobOutcome::kDone;  // A malformed job never becomes valid: drop it.
  }
  Job job;
  job.message = std::move(*message);
  job.kind = domain::TargetKindOf(job.message.operation);
  const std::string& id = job.message.resource_id;
  const std::string& operation_id = job.message.operation_id;
  const Operation operation = job.message.operation;
  const ports::LockRequest lock_request =
      ResourceLockRequest(job.kind, id, domain::AccessOf(operation));
  auto lock = locks_.Acquire(lock_request, options_.lock_timeout);
  if (!lock) {
    log::Warn("volume.lock_not_acquired",
              {{IdKey(job.kind), id},
               {"lock_mode", ports::LockModeName(lock_request.mode)},
               {"error", lock.error().ToString()}});
    return JobOutcome::kRetryLater;
  }
  job.lock = std::move(*lock);
  // Logged with every decision, so that the log shows which grant each action ran under.
  const auto fencing_token = static_cast<long long>(job.lock->fencing_token());

  for (int attempt = 0; attempt < kDecideAttempts; ++attempt) {
    if (job.lock->IsLost()) {
      // Someone else may hold the resource now: stop touching it, and let the queue decide who
      // runs the job.
      log::Error("volume.job_stopped_lock_lost",
                 {{IdKey(job.kind), id}, {"fencing_token", fencing_token}});
      return JobOutcome::kRetryLater;
    }
    auto row = store_.Get(TableOf(job.kind), id);
    if (!row) {
      if (row.error().code == ErrorCode::kNotFound) {
        log::Warn("volume.job_for_unknown_resource", {{IdKey(job.kind), id}});
        return JobOutcome::kDone;
      }
      return JobOutcome::kRetryLater;
    }
    Target target;
    target.row = *row;
    target.stored_status = TextOr(*row, "status", "");
    auto status = domain::DescribeStored(job.kind, target.stored_status);
    if (!status) {
      log::Error("volume.unreadable",
                 {{IdKey(job.kind), id}, {"error", "unknown status " + target.stored_status}});
      return JobOutcome::kDone;
    }
    target.status = *status;
    target.operation_id = TextOr(*row, "operation_id", "");
    target.deleted = IntegerOr(*row, "deleted", 0) != 0;
    target.size_gib = IntegerOr(*row, "size_gib", 0);
    target.pending_size_gib =
        job.kind == ResourceKind::kVolume ? IntegerOr(*row, "pending_size_gib", 0) : 0;
    switch (operation) {
      case Operation::kCreateVolume:
        if (auto snapshot = OptionalText(*row, "snapshot_id")) {
          target.source_kind = ResourceKind::kSnapshot;
          target.source_id = *snapshot;
        } else if (auto volume = OptionalText(*row, "source_volid")) {
          target.source_kind = ResourceKind::kVolume;
          target.source_id = *volume;
        }
        break;
      case Operation::kCreateSnapshot:
      case Operation::kAttachVolume:
      case Operation::kDetachVolume:
      case Operation::kCreateBackup:
        target.source_kind = ResourceKind::kVolume;
        target.source_id = TextOr(*row, "volume_id", "");
        target.connector = TextOr(*row, "connector", "{}");
        target.parent_backup_id = OptionalText(*row, "parent_id");
        if (operation == Operation::kCreateBackup) {
          // A backup of a snapshot reads the snapshot, not the volume.
          if (auto snapshot = OptionalText(*row, "snapshot_id")) {
            target.source_kind = ResourceKind::kSnapshot;
            target.source_id = *snapshot;
          }
        }
        break;
      case Operation::kRestoreBackup:
        if (auto backup = OptionalText(*row, "backup_id")) {
          target.source_kind = ResourceKind::kBackup;
          target.source_id = *backup;
        }
        break;
      case Operation::kDeleteVolume:
      case Operation::kExtendVolume:
      case Operation::kDeleteSnapshot:
      case Operation::kDeleteBackup:
        break;
    }

    domain::ResourceState state{target.deleted ? domain::Phase::kDeleted : target.status.phase,
                                target.status.operation,
                                target.operation_id == operation_id};
    domain::JobDecision decision = domain::DecideJob(state, operation);
    log::Info("volume.job_decision",
              {{IdKey(job.kind), id},
               {"operation", domain::OperationName(operation)},
               {"status", target.stored_status},
               {"redelivered", delivery.redelivered},
               {"action", domain::JobActionName(decision.action)},
               {"rule", static_cast<long long>(decision.rule)},
               {"lock_mode", ports::LockModeName(job.lock->mode())},
               {"fencing_token", fencing_token}});
    std::string now = FormatTimestamp(clock_.WallNow());

    // A takeover: another holder left this job in progress, and may only be paused. Fence the
    // resource first, so that holder cannot touch its data once it resumes.
    if (state.phase == domain::Phase::kInProgress) {
      if (auto fenced = driver_.Fence(id, job.lock->fencing_token()); !fenced) {
        log::Error("volume.fence_failed",
                   {{IdKey(job.kind), id},
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
        std::string reason = "interrupted while " + target.stored_status +
                             ": the node running it stopped before it finished";
        if (!WriteStatus(*job.lock,
                         job.kind,
                         id,
                         target.stored_status,
                         target.operation_id,
                         {{"status", std::string(domain::FailedStatusOf(*target.status.operation))},
                          {"status_reason", reason},
                          {"updated_at", now}})) {
          continue;  // Changed under us (or engine down): read again and decide again.
        }
        log::Warn("volume.set_error", {{IdKey(job.kind), id}, {"reason", reason}});
        Settle(job, target);
        return JobOutcome::kDone;
      }
      case JobAction::kProceed:
      case JobAction::kRedo:
        break;
    }

    if (target.source_kind) {
      if (auto outcome = CheckSource(job, target)) {
        return *outcome;
      }
    }

    std::optional<Error> refused;
    if (operation == Operation::kDeleteVolume) {
      auto snapshots = SnapshotsLeftOf(id);
      if (!snapshots) {
        log::Warn("volume.snapshots_unreadable",
                  {{"volume_id", id}, {"error", snapshots.error().ToString()}});
        return JobOutcome::kRetryLater;
      }
      if (snapshots->being_deleted) {
        log::Info("volume.delete_waits_for_snapshots", {{"volume_id", id}});
        return JobOutcome::kRetryLater;
      }
      if (snapshots->left) {
        refused = Error{ErrorCode::kDriverFailed,
                        "snapshot " + *snapshots->left +
                            " of the volume was not deleted: delete it, then the volume"};
      }
    }

    // Mark the operation as under way before touching the back-end. The job's operation id is
    // recorded too: a redo may run under a redelivered job of an earlier id, and the final write
    // below expects the id of the job that did the work.
    const std::string in_progress(domain::InProgressStatusOf(operation));
    if (!WriteStatus(
            *job.lock,
            job.kind,
            id,
            target.stored_status,
            target.operation_id,
            {{"status", in_progress}, {"operation_id", operation_id}, {"updated_at", now}})) {
      continue;
    }
    FaultPoint(job, "before_driver");
    Result<ports::Row> done =
        refused ? Result<ports::Row>(tl::unexpected(*refused)) : RunDriver(job, target);
    FaultPoint(job, "after_driver");
    if (!done && done.error().code == ErrorCode::kFenced) {
      // A newer holder fenced the resource: this job's lock is stale, and every write it could
      // make would be one from the past.
      log::Error("volume.job_fenced", {{IdKey(job.kind), id}, {"error", done.error().ToString()}});
      return JobOutcome::kRetryLater;
    }
    if (!done) {
      log::Error("volume.driver_failed",
                 {{IdKey(job.kind), id}, {"error", done.error().ToString()}});
    }
    now = FormatTimestamp(clock_.WallNow());
    ports::Row final_values = FinalValues(job, target, done, now);
    auto release = FinalUsage(job, target, final_values);
    if (!release) {
      log::Error("volume.final_usage_unknown",
                 {{IdKey(job.kind), id}, {"error", release.error().ToString()}});
      return JobOutcome::kRetryLater;
    }
    if (!WriteStatus(*job.lock, job.kind, id, in_progress, operation_id, final_values, *release)) {
      // Redelivery finds the resource in progress and the stuck-job rules finish the story.
      log::Error("volume.final_status_not_written", {{IdKey(job.kind), id}});
      return JobOutcome::kRetryLater;
    }
    Settle(job, target);
    log::Info("volume.job_done",
              {{IdKey(job.kind), id},
               {"operation", domain::OperationName(operation)},
               {"ok", static_cast<bool>(done)}});
    return JobOutcome::kDone;
  }
  log::Warn("volume.job_gave_up_deciding", {{IdKey(job.kind), id}});
  return JobOutcome::kRetryLater;
}

}  // namespace clinker::services
