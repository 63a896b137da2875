// The status model: internal statuses that keep "queued" apart from "in progress" for every
// operation, and the one place that maps them to the statuses the Cinder API has always shown.
//
// Why: a node that picks a job up must tell a job nobody started (queued: safe to run) from one
// a dead node was running (in progress: stuck, needs the stuck-job rules). The API cannot show
// the difference without breaking clients, so both map to the old name ("creating", ...).
// Pure code: no I/O, no clock, thread safe.
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace clinker::domain {

// The kinds of resource a job works on; each kind has its own table and statuses.
enum class ResourceKind { kVolume, kSnapshot, kAttachment, kBackup };

// Operations a job can carry. Each writes the resource it is about (its "target": the new volume
// of a create, the snapshot of a snapshot create) and may read another one (its "source": the
// volume or snapshot a volume is cloned from, the volume a snapshot is taken of).
enum class Operation {
  kCreateVolume,  // Blank, or a clone of a volume or a snapshot (the volume row names which).
  kDeleteVolume,
  kExtendVolume,
  kCreateSnapshot,
  kDeleteSnapshot,
  kAttachVolume,  // Target: the attachment; exports the volume to the attachment's connector.
  kDetachVolume,  // Target: the attachment; ends the export, then the attachment is gone.
  kCreateBackup,  // Target: the backup; source: its volume.
  kDeleteBackup,
  kRestoreBackup,  // Target: the volume written; source: the backup.
};

enum class Access { kRead, kWrite };

std::span<const Operation> AllOperations();
std::string_view OperationName(Operation operation);
std::optional<Operation> ParseOperation(std::string_view name);
// How the operation uses its target. Every operation so far writes it; reads of a source are
// decided with Access::kRead explicitly (DecideJob in stuck_job.h).
Access AccessOf(Operation operation);
ResourceKind TargetKindOf(Operation operation);
// True for operations that may be redone from the start when a node died in the middle of them
// (the design's "deleting, attaching or detaching", and extending): they converge to the same
// end state.
bool IsRedoable(Operation operation);

enum class Phase {
  kQueued,      // The API accepted the operation and queued its job; no node has started it.
  kInProgress,  // A node started the operation and has not finished it.
  kAtRest,      // No operation pending: available, error, ...
  kDeleted,     // Gone for good (soft-deleted row).
};

enum class VolumeStatus {
  kCreatingQueued,
  kCreating,
  kAvailable,
  kDeletingQueued,
  kDeleting,
  kDeleted,
  kError,
  kErrorDeleting,
  kExtendingQueued,
  kExtending,
  kErrorExtending,
  // Attach statuses: derived from the volume's attachments (attached > attaching > detaching >
  // reserved), never an operation of the volume itself, so all at rest for the stuck-job rules.
  kReserved,
  kAttaching,
  kInUse,
  kDetaching,
  // A backup reads the volume (at rest for the rules: the job's target is the backup).
  kBackingUp,
  kRestoringQueued,
  kRestoring,
  kErrorRestoring,
  // Set by an admin's os-reset_status (Cinder lets an admin set any status). The API shows the
  // operation's status ("creating", ...), but no operation is queued or under way: stored apart
  // from the real queued / in-progress statuses, at rest, so that the stuck-job rules, the
  // sweeper and the nodes never take them for a job, and a forced delete may remove the volume.
  kCreatingByAdmin,
  kDeletingByAdmin,
  kExtendingByAdmin,
  kRestoringByAdmin,
  // Cinder's status of a volume an admin or a migration holds for maintenance: at rest.
  kMaintenance,
  // Offered to another project (a volume transfer): no job, so at rest; only accepting or
  // deleting the transfer moves it (back) to available.
  kAwaitingTransfer,
};

enum class BackupStatus {
  kCreatingQueued,
  kCreating,
  kAvailable,
  kDeletingQueued,
  kDeleting,
  kDeleted,
  kError,
  kErrorDeleting,
  kRestoring,  // Being read by a restore (at rest: the restore's target is the volume).
};

enum class AttachmentStatus {
  kReserved,         // Created, no connector yet.
  kAttachingQueued,  // A connector was given; the export job is queued.
  kConnecting,       // A node is exporting the volume.
  kAttaching,        // Exported; connection_info is ready; waiting for os-complete.
  kAttached,
  kDetachingQueued,
  kDetaching,
  kDetached,  // Gone (soft-deleted row).
  kErrorAttaching,
  kErrorDetaching,
};

enum class SnapshotStatus {
  kCreatingQueued,
  kCreating,
  kAvailable,
  kDeletingQueued,
  kDeleting,
  kDeleted,
  kError,
  kErrorDeleting,
  // Set by an admin's os-reset_status: shown as "creating" / "deleting", at rest (see the
  // volume statuses of the same names).
  kCreatingByAdmin,
  kDeletingByAdmin,
  // A backup is reading it (a backup of the snapshot, as Cinder's): at rest, so the backup job is
  // the backup's own; the snapshot cannot be deleted meanwhile, and is available again after.
  kBackingUp,
};

// The statuses an admin may set with os-reset_status, by the API name the admin gives: Cinder's
// statuses that Clinker has. An operation's status maps to its at-rest "by admin" variant.
// Empty for a name that is not one of them.
std::optional<VolumeStatus> VolumeStatusSetByAdmin(std::string_view api_status);
std::optional<SnapshotStatus> SnapshotStatusSetByAdmin(std::string_view api_status);

template <class S>
struct StatusInfo {
  S status{};
  std::string_view stored;  // Kept in the database.
  std::string_view api;     // Shown through the API.
  Phase phase = Phase::kAtRest;
  std::optional<Operation> operation;  // The operation queued or under way; none at rest.
};

using VolumeStatusInfo = StatusInfo<VolumeStatus>;
using SnapshotStatusInfo = StatusInfo<SnapshotStatus>;
using AttachmentStatusInfo = StatusInfo<AttachmentStatus>;
using BackupStatusInfo = StatusInfo<BackupStatus>;

std::span<const VolumeStatusInfo> AllVolumeStatuses();
std::span<const SnapshotStatusInfo> AllSnapshotStatuses();
std::span<const AttachmentStatusInfo> AllAttachmentStatuses();
std::span<const BackupStatusInfo> AllBackupStatuses();
const BackupStatusInfo& Describe(BackupStatus status);
std::optional<BackupStatus> ParseStoredBackupStatus(std::string_view stored);
std::vector<BackupStatus> BackupStatusesShownAs(std::string_view api_status);

inline std::string_view StoredName(BackupStatus status) {
  return Describe(status).stored;
}

inline std::string_view ApiName(BackupStatus status) {
  return Describe(status).api;
}

const VolumeStatusInfo& Describe(VolumeStatus status);
const SnapshotStatusInfo& Describe(SnapshotStatus status);
const AttachmentStatusInfo& Describe(AttachmentStatus status);
std::optional<VolumeStatus> ParseStoredVolumeStatus(std::string_view stored);
std::optional<SnapshotStatus> ParseStoredSnapshotStatus(std::string_view stored);
std::optional<AttachmentStatus> ParseStoredAttachmentStatus(std::string_view stored);

inline std::string_view StoredName(VolumeStatus status) {
  return Describe(status).stored;
}

inline std::string_view StoredName(SnapshotStatus status) {
  return Describe(status).stored;
}

inline std::string_view StoredName(AttachmentStatus status) {
  return Describe(status).stored;
}

inline std::string_view ApiName(AttachmentStatus status) {
  return Describe(status).api;
}

inline std::string_view ApiName(VolumeStatus status) {
  return Describe(status).api;
}

inline std::string_view ApiName(SnapshotStatus status) {
  return Describe(status).api;
}

// Every internal status the API shows as `api_status` (for list filters); empty if none.
std::vector<VolumeStatus> StatusesShownAs(std::string_view api_status);
std::vector<SnapshotStatus> SnapshotStatusesShownAs(std::string_view api_status);
std::vector<AttachmentStatus> AttachmentStatusesShownAs(std::string_view api_status);

// A status of either kind, for code that handles every kind alike (the volume manager).
struct StatusView {
  std::string_view stored;
  std::string_view api;
  Phase phase = Phase::kAtRest;
  std::optional<Operation> operation;
};

std::optional<StatusView> DescribeStored(ResourceKind kind, std::string_view stored);

// The stored status the target of `operation` takes when the API queues it, when a node starts
// it, when it succeeds, and when it fails on the back-end.
std::string_view QueuedStatusOf(Operation operation);
std::string_view InProgressStatusOf(Operation operation);
std::string_view DoneStatusOf(Operation operation);
std::string_view FailedStatusOf(Operation operation);

// Typed forms for volume operations (asserts the operation targets a volume).
VolumeStatus QueuedStatusFor(Operation operation);
VolumeStatus InProgressStatusFor(Operation operation);

}  // namespace clinker::domain
