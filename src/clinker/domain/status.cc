#include "clinker/domain/status.h"

#include <array>

#include "clinker/core/assert.h"

namespace clinker::domain {
namespace {

constexpr std::array kVolumeStatuses = {
    VolumeStatusInfo{VolumeStatus::kCreatingQueued,
                     "creating_queued",
                     "creating",
                     Phase::kQueued,
                     Operation::kCreateVolume},
    VolumeStatusInfo{VolumeStatus::kCreating,
                     "creating",
                     "creating",
                     Phase::kInProgress,
                     Operation::kCreateVolume},
    VolumeStatusInfo{
        VolumeStatus::kAvailable, "available", "available", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{VolumeStatus::kDeletingQueued,
                     "deleting_queued",
                     "deleting",
                     Phase::kQueued,
                     Operation::kDeleteVolume},
    VolumeStatusInfo{VolumeStatus::kDeleting,
                     "deleting",
                     "deleting",
                     Phase::kInProgress,
                     Operation::kDeleteVolume},
    VolumeStatusInfo{VolumeStatus::kDeleted, "deleted", "deleted", Phase::kDeleted, std::nullopt},
    VolumeStatusInfo{VolumeStatus::kError, "error", "error", Phase::kAtRest, std::nullopt},
    VolumeStatusInfo{VolumeStatus::kErrorDeleting,
                     "error_deleting",
                     "error_deleting",
                     Phase::kAtRest,
                     std::nullopt},
};

}  // namespace

std::string_view OperationName(Operation operation) {
  switch (operation) {
    case Operation::kCreateVolume:
      return "create_volume";
    case Operation::kDeleteVolume:
      return "delete_volume";
  }
  return "unknown";
}

std::optional<Operation> ParseOperation(std::string_view name) {
  for (Operation operation : {Operation::kCreateVolume, Operation::kDeleteVolume}) {
    if (OperationName(operation) == name) {
      return operation;
    }
  }
  return std::nullopt;
}

Access AccessOf(Operation operation) {
  switch (operation) {
    case Operation::kCreateVolume:
    case Operation::kDeleteVolume:
      return Access::kWrite;
  }
  return Access::kWrite;
}

bool IsRedoable(Operation operation) {
  switch (operation) {
    case Operation::kDeleteVolume:
      return true;
    case Operation::kCreateVolume:
      return false;
  }
  return false;
}

std::span<const VolumeStatusInfo> AllVolumeStatuses() {
  return kVolumeStatuses;
}

const VolumeStatusInfo& Describe(VolumeStatus status) {
  for (const VolumeStatusInfo& info : kVolumeStatuses) {
    if (info.status == status) {
      return info;
    }
  }
  CLINKER_ASSERT(false, "every VolumeStatus has a row in kVolumeStatuses");
}

std::optional<VolumeStatus> ParseStoredVolumeStatus(std::string_view stored) {
  for (const VolumeStatusInfo& info : kVolumeStatuses) {
    if (info.stored == stored) {
      return info.status;
    }
  }
  return std::nullopt;
}

std::vector<VolumeStatus> StatusesShownAs(std::string_view api_status) {
  std::vector<VolumeStatus> out;
  for (const VolumeStatusInfo& info : kVolumeStatuses) {
    if (info.api == api_status) {
      out.push_back(info.status);
    }
  }
  return out;
}

VolumeStatus QueuedStatusFor(Operation operation) {
  switch (operation) {
    case Operation::kCreateVolume:
      return VolumeStatus::kCreatingQueued;
    case Operation::kDeleteVolume:
      return VolumeStatus::kDeletingQueued;
  }
  CLINKER_ASSERT(false, "every operation has a queued status");
}

VolumeStatus InProgressStatusFor(Operation operation) {
  switch (operation) {
    case Operation::kCreateVolume:
      return VolumeStatus::kCreating;
    case Operation::kDeleteVolume:
      return VolumeStatus::kDeleting;
  }
  CLINKER_ASSERT(false, "every operation has an in-progress status");
}

}  // namespace clinker::domain
