// Group completion: a generic volume group being created from a source or deleted, and a group
// snapshot being created or deleted, is done when the jobs of all its members are; the members
// are ordinary volume and snapshot jobs on the volume nodes.
//
// Whoever finishes a member (the volume node, after the member's final status write, and also
// after a job it dropped as a duplicate, so a redelivered job of a node that died finishes the
// story) and the API (after it queued the members) calls TryComplete*. Each is a few conditional
// updates of the group (snapshot) row, each expecting its status and guarded by "no live member
// still busy" (Guard::NoLiveRowReferences on the member table), in this order:
//   creating -> available  (no member still being created, none in error)
//   creating -> error      (no member still being created)
//   deleting -> deleted    (no live member left; the row is soft-deleted)
//   deleting -> error_deleting (no member still being deleted: one failed or was not deletable)
// The guard is evaluated atomically with the update, after the caller's own member write: of
// any number of finishers racing, the last to write its member sees no busy member, and exactly
// one of them changes the group's status (every update expects the status it changes). No
// polling: a crash between the member's write and this call leaves the job unacknowledged, and
// its redelivery calls it again.
//
// Thread safe (no state). Blocks on the StateStore. Errors: the store's (kUnavailable,
// kOutcomeUnknown): the caller retries (the volume node leaves the job for redelivery).
#pragma once

#include <string>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"

namespace clinker::services {

// Cinder's group and group snapshot statuses (stored as shown: a group is never the target of a
// job, so it has no queued status of its own).
inline constexpr std::string_view kGroupCreating = "creating";
inline constexpr std::string_view kGroupAvailable = "available";
inline constexpr std::string_view kGroupError = "error";
inline constexpr std::string_view kGroupDeleting = "deleting";
inline constexpr std::string_view kGroupErrorDeleting = "error_deleting";
inline constexpr std::string_view kGroupDeleted = "deleted";

// Completes the group `group_id` if it is creating or deleting and none of its member volumes
// is still busy with that. A missing group is not an error (nothing to complete).
Result<void> TryCompleteGroup(ports::StateStore& store,
                              const ports::Clock& clock,
                              const std::string& group_id);

// The same for the group snapshot `group_snapshot_id` and its member snapshots.
Result<void> TryCompleteGroupSnapshot(ports::StateStore& store,
                                      const ports::Clock& clock,
                                      const std::string& group_snapshot_id);

}  // namespace clinker::services
