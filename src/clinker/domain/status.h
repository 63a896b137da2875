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

// Operations a job can carry. Each reads or writes the resource it is about.
enum class Operation { kCreateVolume, kDeleteVolume };

enum class Access { kRead, kWrite };

std::string_view OperationName(Operation operation);
std::optional<Operation> ParseOperation(std::string_view name);
Access AccessOf(Operation operation);
// True for operations that may be redone from the start when a node died in the middle of them
// (the design's "deleting, attaching or detaching"): they converge to the same end state.
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
};

struct VolumeStatusInfo {
  VolumeStatus status;
  std::string_view stored;  // Kept in the database.
  std::string_view api;     // Shown through the API.
  Phase phase;
  std::optional<Operation> operation;  // The operation queued or under way; none at rest.
};

std::span<const VolumeStatusInfo> AllVolumeStatuses();
const VolumeStatusInfo& Describe(VolumeStatus status);
std::optional<VolumeStatus> ParseStoredVolumeStatus(std::string_view stored);

inline std::string_view StoredName(VolumeStatus status) {
  return Describe(status).stored;
}

inline std::string_view ApiName(VolumeStatus status) {
  return Describe(status).api;
}

// Every internal status the API shows as `api_status` (for list filters); empty if none.
std::vector<VolumeStatus> StatusesShownAs(std::string_view api_status);

// The status a volume takes when the API queues `operation`, and when a node starts it.
VolumeStatus QueuedStatusFor(Operation operation);
VolumeStatus InProgressStatusFor(Operation operation);

}  // namespace clinker::domain
