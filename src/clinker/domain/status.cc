#include "clinker/domain/status.h"

#include <array>
#include <utility>

#include "clinker/core/assert.h"

namespace clinker::domain {
namespace {

constexpr std::array kOperations = {
    Operation::kCreateVolume,
    Operation::kDeleteVolume,
    Operation::kExtendVolume,
    Operation::kCreateSnapshot,
    Operation::kDeleteSnapshot,
    Operation::kAttachVolume,
    Operation::kDetachVolume,
    Operation::kCreateBackup,
    Operation::kDeleteBackup,
    Operation::kRestoreBackup,
};

// One row per operation: its name on the wire and the statuses of its target.
struct OperationRow {
  Operation operation;
  std::string_view name;
  ResourceKind target;
  Access access;
  bool redoable;
  std::string_view queued;
  std::string_view in_progress;
  std::string_view done;
  std::string_view failed;
};

constexpr std::array kOperationRows = {
    OperationRow{Operation::kCreateVolume,
                 "create_volume",
                 ResourceKind::kVolume,
                 Access::kWrite,
                 false,
                 "creating_queued",
                 "creating",
                 "available",
                 "error"},
    OperationRow{Operation::kDeleteVolume,
                 "delete_volume",
                 ResourceKind::kVolume,
                 Access::kWrite,
                 true,
                 "deleting_queued",
                 "deleting",
                 "deleted",
                 "error_deleting"},
    // Redoable although the design lists only delete, attach and detach: growing a file (or a
    // LUN) to a given size converges, and setting it to error instead would leave the back-end
    // larger than the recorded size.
    OperationRow{Operation::kExtendVolume,
                 "extend_volume",
                 ResourceKind::kVolume,
                 Access::kWrite,
                 true,
                 "extending_queued",
                 "extending",
                 "available",
                 "error_extending"},
    OperationRow{Operation::kCreateSnapshot,
                 "create_snapshot",
                 ResourceKind::kSnapshot,
                 Access::kWrite,
                 false,
                 "creating_queued",
                 "creating",
                 "available",
                 "error"},
    OperationRow{Operation::kDeleteSnapshot,
                 "delete_snapshot",
                 ResourceKind::kSnapshot,
                 Access::kWrite,
                 true,
                 "deleting_queued",
                 "deleting",
                 "deleted",
                 "error_deleting"},
    OperationRow{Operation::kAttachVolume,
                 "attach_volume",
                 ResourceKind::kAttachment,
                 Access::kWrite,
                 true,
                 "attaching_queued",
                 "connecting",
                 "attaching",
                 "error_attaching"},
    OperationRow{Operation::kDetachVolume,
                 "detach_volume",
                 ResourceKind::kAttachment,
                 Access::kWrite,
                 true,
                 "detaching_queued",
                 "detaching",
                 "detached",
                 "error_detaching"},
    OperationRow{Operation::kCreateBackup,
                 "create_backup",
                 ResourceKind::kBackup,
                 Access::kWrite,
                 false,
                 "creating_queued",
                 "creating",
                 "available",
                 "error"},
    OperationRow{Operation::kDeleteBackup,
                 "delete_backup",
                 ResourceKind::kBackup,
                 Access::kWrite,
                 true,
                 "deleting_queued",
                 "deleting",
                 "deleted",
                 "error_deleting"},
    OperationRow{Operation::kRestoreBackup,
                 "restore_backup",
                 ResourceKind::kVolume,
                 Access::kWrite,
                 false,
                 "restoring_queued",
                 "restoring",
                 "available",
                 "error_restoring"},
};

const OperationRow& RowOf(Operation operation) {
  for (const OperationRow& row : kOperationRows) {
    if (row.operation == operation) {
      return row;
    }
  }
  CLINKER_ASSERT(false, "every Operation has a row in kOperationRows");
}

using V = VolumeStatus;
constexpr std::array kVolumeStatuses = {
    VolumeStatusInfo{V::kCreatingQueued,
                     "creating_queued",
                     "creating",
                     Phase::kQueued,
                     Operation::kCreateVolume},
    VolumeStatusInfo{
        V::kCreating, "creating", "creating", Phase::kInProgress, Operation::kCreateVolume},
    VolumeStatusInfo{V::kAvailable, "available", "available", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kDeletingQueued,
                     "deleting_queued",
                     "deleting",
                     Phase::kQueued,
                     Operation::kDeleteVolume},
    VolumeStatusInfo{
        V::kDeleting, "deleting", "deleting", Phase::kInProgress, Operation::kDeleteVolume},
    VolumeStatusInfo{V::kDeleted, "deleted", "deleted", Phase::kDeleted, std::nullopt},
    VolumeStatusInfo{V::kError, "error", "error", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{
        V::kErrorDeleting, "error_deleting", "error_deleting", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kExtendingQueued,
                     "extending_queued",
                     "extending",
                     Phase::kQueued,
                     Operation::kExtendVolume},
    VolumeStatusInfo{
        V::kExtending, "extending", "extending", Phase::kInProgress, Operation::kExtendVolume},
    VolumeStatusInfo{
        V::kErrorExtending, "error_extending", "error_extending", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kReserved, "reserved", "reserved", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kAttaching, "attaching", "attaching", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kInUse, "in-use", "in-use", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kDetaching, "detaching", "detaching", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kBackingUp, "backing-up", "backing-up", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kRestoringQueued,
                     "restoring_queued",
                     "restoring-backup",
                     Phase::kQueued,
                     Operation::kRestoreBackup},
    VolumeStatusInfo{V::kRestoring,
                     "restoring",
                     "restoring-backup",
                     Phase::kInProgress,
                     Operation::kRestoreBackup},
    VolumeStatusInfo{
        V::kErrorRestoring, "error_restoring", "error_restoring", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{
        V::kCreatingByAdmin, "creating_by_admin", "creating", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{
        V::kDeletingByAdmin, "deleting_by_admin", "deleting", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{
        V::kExtendingByAdmin, "extending_by_admin", "extending", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kRestoringByAdmin,
                     "restoring_by_admin",
                     "restoring-backup",
                     Phase::kAtRest,
                     std::nullopt},
    VolumeStatusInfo{V::kMaintenance, "maintenance", "maintenance", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{V::kAwaitingTransfer,
                     "awaiting-transfer",
                     "awaiting-transfer",
                     Phase::kAtRest,
                     std::nullopt},
};

using B = BackupStatus;
constexpr std::array kBackupStatuses = {
    BackupStatusInfo{B::kCreatingQueued,
                     "creating_queued",
                     "creating",
                     Phase::kQueued,
                     Operation::kCreateBackup},
    BackupStatusInfo{
        B::kCreating, "creating", "creating", Phase::kInProgress, Operation::kCreateBackup},
    BackupStatusInfo{B::kAvailable, "available", "available", Phase::kAtRest, std::nullopt},
    BackupStatusInfo{B::kDeletingQueued,
                     "deleting_queued",
                     "deleting",
                     Phase::kQueued,
                     Operation::kDeleteBackup},
    BackupStatusInfo{
        B::kDeleting, "deleting", "deleting", Phase::kInProgress, Operation::kDeleteBackup},
    BackupStatusInfo{B::kDeleted, "deleted", "deleted", Phase::kDeleted, std::nullopt},
    BackupStatusInfo{B::kError, "error", "error", Phase::kAtRest, std::nullopt},
    BackupStatusInfo{
        B::kErrorDeleting, "error_deleting", "error_deleting", Phase::kAtRest, std::nullopt},
    BackupStatusInfo{B::kRestoring, "restoring", "restoring", Phase::kAtRest, std::nullopt},
};

using A = AttachmentStatus;
constexpr std::array kAttachmentStatuses = {
    AttachmentStatusInfo{A::kReserved, "reserved", "reserved", Phase::kAtRest, std::nullopt},
    AttachmentStatusInfo{A::kAttachingQueued,
                         "attaching_queued",
                         "attaching",
                         Phase::kQueued,
                         Operation::kAttachVolume},
    AttachmentStatusInfo{
        A::kConnecting, "connecting", "attaching", Phase::kInProgress, Operation::kAttachVolume},
    AttachmentStatusInfo{A::kAttaching, "attaching", "attaching", Phase::kAtRest, std::nullopt},
    AttachmentStatusInfo{A::kAttached, "attached", "attached", Phase::kAtRest, std::nullopt},
    AttachmentStatusInfo{A::kDetachingQueued,
                         "detaching_queued",
                         "detaching",
                         Phase::kQueued,
                         Operation::kDetachVolume},
    AttachmentStatusInfo{
        A::kDetaching, "detaching", "detaching", Phase::kInProgress, Operation::kDetachVolume},
    AttachmentStatusInfo{A::kDetached, "detached", "detached", Phase::kDeleted, std::nullopt},
    AttachmentStatusInfo{
        A::kErrorAttaching, "error_attaching", "error_attaching", Phase::kAtRest, std::nullopt},
    AttachmentStatusInfo{
        A::kErrorDetaching, "error_detaching", "error_detaching", Phase::kAtRest, std::nullopt},
};

using S = SnapshotStatus;
constexpr std::array kSnapshotStatuses = {
    SnapshotStatusInfo{S::kCreatingQueued,
                       "creating_queued",
                       "creating",
                       Phase::kQueued,
                       Operation::kCreateSnapshot},
    SnapshotStatusInfo{
        S::kCreating, "creating", "creating", Phase::kInProgress, Operation::kCreateSnapshot},
    SnapshotStatusInfo{S::kAvailable, "available", "available", Phase::kAtRest, std::nullopt},
    SnapshotStatusInfo{S::kDeletingQueued,
                       "deleting_queued",
                       "deleting",
                       Phase::kQueued,
                       Operation::kDeleteSnapshot},
    SnapshotStatusInfo{
        S::kDeleting, "deleting", "deleting", Phase::kInProgress, Operation::kDeleteSnapshot},
    SnapshotStatusInfo{S::kDeleted, "deleted", "deleted", Phase::kDeleted, std::nullopt},
    SnapshotStatusInfo{S::kError, "error", "error", Phase::kAtRest, std::nullopt},
    SnapshotStatusInfo{
        S::kErrorDeleting, "error_deleting", "error_deleting", Phase::kAtRest, std::nullopt},
    SnapshotStatusInfo{
        S::kCreatingByAdmin, "creating_by_admin", "creating", Phase::kAtRest, std::nullopt},
    SnapshotStatusInfo{
        S::kDeletingByAdmin, "deleting_by_admin", "deleting", Phase::kAtRest, std::nullopt},
    SnapshotStatusInfo{S::kBackingUp, "backing-up", "backing-up", Phase::kAtRest, std::nullopt},
};

template <class Info, std::size_t N>
const Info& Find(const std::array<Info, N>& table, decltype(Info::status) status) {
  for (const Info& info : table) {
    if (info.status == status) {
      return info;
    }
  }
  CLINKER_ASSERT(false, "every status has a row in its table");
}

template <class Info, std::size_t N>
std::optional<decltype(Info::status)> ParseIn(const std::array<Info, N>& table,
                                              std::string_view stored) {
  for (const Info& info : table) {
    if (info.stored == stored) {
      return info.status;
    }
  }
  return std::nullopt;
}

template <class Info, std::size_t N>
std::vector<decltype(Info::status)> ShownAs(const std::array<Info, N>& table,
                                            std::string_view api_status) {
  std::vector<decltype(Info::status)> out;
  for (const Info& info : table) {
    if (info.api == api_status) {
      out.push_back(info.status);
    }
  }
  return out;
}

template <class Info, std::size_t N>
std::optional<StatusView> ViewIn(const std::array<Info, N>& table, std::string_view stored) {
  for (const Info& info : table) {
    if (info.stored == stored) {
      return StatusView{info.stored, info.api, info.phase, info.operation};
    }
  }
  return std::nullopt;
}

}  // namespace

std::span<const Operation> AllOperations() {
  return kOperations;
}

std::string_view OperationName(Operation operation) {
  return RowOf(operation).name;
}

std::optional<Operation> ParseOperation(std::string_view name) {
  for (const OperationRow& row : kOperationRows) {
    if (row.name == name) {
      return row.operation;
    }
  }
  return std::nullopt;
}

Access AccessOf(Operation operation) {
  return RowOf(operation).access;
}

ResourceKind TargetKindOf(Operation operation) {
  return RowOf(operation).target;
}

bool IsRedoable(Operation operation) {
  return RowOf(operation).redoable;
}

std::span<const VolumeStatusInfo> AllVolumeStatuses() {
  return kVolumeStatuses;
}

std::span<const SnapshotStatusInfo> AllSnapshotStatuses() {
  return kSnapshotStatuses;
}

const VolumeStatusInfo& Describe(VolumeStatus status) {
  return Find(kVolumeStatuses, status);
}

const SnapshotStatusInfo& Describe(SnapshotStatus status) {
  return Find(kSnapshotStatuses, status);
}

std::span<const AttachmentStatusInfo> AllAttachmentStatuses() {
  return kAttachmentStatuses;
}

const AttachmentStatusInfo& Describe(AttachmentStatus status) {
  return Find(kAttachmentStatuses, status);
}

std::optional<AttachmentStatus> ParseStoredAttachmentStatus(std::string_view stored) {
  return ParseIn(kAttachmentStatuses, stored);
}

std::vector<AttachmentStatus> AttachmentStatusesShownAs(std::string_view api_status) {
  return ShownAs(kAttachmentStatuses, api_status);
}

std::span<const BackupStatusInfo> AllBackupStatuses() {
  return kBackupStatuses;
}

const BackupStatusInfo& Describe(BackupStatus status) {
  return Find(kBackupStatuses, status);
}

std::optional<BackupStatus> ParseStoredBackupStatus(std::string_view stored) {
  return ParseIn(kBackupStatuses, stored);
}

std::vector<BackupStatus> BackupStatusesShownAs(std::string_view api_status) {
  return ShownAs(kBackupStatuses, api_status);
}

std::optional<VolumeStatus> ParseStoredVolumeStatus(std::string_view stored) {
  return ParseIn(kVolumeStatuses, stored);
}

std::optional<SnapshotStatus> ParseStoredSnapshotStatus(std::string_view stored) {
  return ParseIn(kSnapshotStatuses, stored);
}

std::vector<VolumeStatus> StatusesShownAs(std::string_view api_status) {
  return ShownAs(kVolumeStatuses, api_status);
}

std::vector<SnapshotStatus> SnapshotStatusesShownAs(std::string_view api_status) {
  return ShownAs(kSnapshotStatuses, api_status);
}

std::optional<StatusView> DescribeStored(ResourceKind kind, std::string_view stored) {
  switch (kind) {
    case ResourceKind::kVolume:
      return ViewIn(kVolumeStatuses, stored);
    case ResourceKind::kSnapshot:
      return ViewIn(kSnapshotStatuses, stored);
    case ResourceKind::kAttachment:
      return ViewIn(kAttachmentStatuses, stored);
    case ResourceKind::kBackup:
      return ViewIn(kBackupStatuses, stored);
  }
  return std::nullopt;
}

std::string_view QueuedStatusOf(Operation operation) {
  return RowOf(operation).queued;
}

std::string_view InProgressStatusOf(Operation operation) {
  return RowOf(operation).in_progress;
}

std::string_view DoneStatusOf(Operation operation) {
  return RowOf(operation).done;
}

std::string_view FailedStatusOf(Operation operation) {
  return RowOf(operation).failed;
}

VolumeStatus QueuedStatusFor(Operation operation) {
  CLINKER_ASSERT(TargetKindOf(operation) == ResourceKind::kVolume, "a volume operation");
  return *ParseStoredVolumeStatus(QueuedStatusOf(operation));
}

VolumeStatus InProgressStatusFor(Operation operation) {
  CLINKER_ASSERT(TargetKindOf(operation) == ResourceKind::kVolume, "a volume operation");
  return *ParseStoredVolumeStatus(InProgressStatusOf(operation));
}

std::optional<VolumeStatus> VolumeStatusSetByAdmin(std::string_view api_status) {
  // At rest already: the status itself. An operation's: its by-admin variant, never the queued
  // or in-progress one (that would make a job of nothing).
  static constexpr std::array<std::pair<std::string_view, VolumeStatus>, 15> kSettable = {{
      {"available", V::kAvailable},
      {"error", V::kError},
      {"error_deleting", V::kErrorDeleting},
      {"error_extending", V::kErrorExtending},
      {"error_restoring", V::kErrorRestoring},
      {"reserved", V::kReserved},
      {"attaching", V::kAttaching},
      {"in-use", V::kInUse},
      {"detaching", V::kDetaching},
      {"backing-up", V::kBackingUp},
      {"maintenance", V::kMaintenance},
      {"creating", V::kCreatingByAdmin},
      {"deleting", V::kDeletingByAdmin},
      {"extending", V::kExtendingByAdmin},
      {"restoring-backup", V::kRestoringByAdmin},
  }};
  for (const auto& [name, status] : kSettable) {
    if (name == api_status) {
      return status;
    }
  }
  return std::nullopt;
}

std::optional<SnapshotStatus> SnapshotStatusSetByAdmin(std::string_view api_status) {
  static constexpr std::array<std::pair<std::string_view, SnapshotStatus>, 5> kSettable = {{
      {"available", S::kAvailable},
      {"error", S::kError},
      {"error_deleting", S::kErrorDeleting},
      {"creating", S::kCreatingByAdmin},
      {"deleting", S::kDeletingByAdmin},
  }};
  for (const auto& [name, status] : kSettable) {
    if (name == api_status) {
      return status;
    }
  }
  return std::nullopt;
}

}  // namespace clinker::domain
