// The volume's attach status, derived from its attachments, kept in the volume row.
//
// Cinder derives a volume's status from its live attachments (attached > attaching > detaching >
// reserved; none: available). Here a failed export (error_attaching) counts as reserved, and a
// failed detach (error_detaching) as attached, so a volume is never free while either lives.
// Several writers change attachments of one volume at once (API servers handling attachment
// requests, volume nodes finishing attach and detach jobs), so the derived status is written with a
// compare-and-swap whose expectation is a version: the volume's `operation_id`, replaced by a fresh
// id on every such write. A writer that read an older set of attachments finds the version changed,
// re-reads and recomputes, so the last write always reflects every attachment change committed
// before it.
//
// Thread safe; blocks on the StateStore.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/domain/status.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"

namespace clinker::services {

// The volume status and attach_status its attachments give, from their stored statuses.
struct DerivedAttachState {
  domain::VolumeStatus status = domain::VolumeStatus::kAvailable;
  std::string attach_status = "detached";
};

DerivedAttachState DeriveAttachState(const std::vector<domain::AttachmentStatus>& attachments);

// True for the volume statuses an attachment change may move a volume between.
bool InAttachFamily(domain::VolumeStatus status);

// Recomputes and stores the volume's status from its live attachments, if the volume is in the
// attach family (else leaves it alone). kConflict if the version kept changing (bounded
// retries); engine errors as the StateStore gives them.
Result<void> RefreshVolumeAttachState(ports::StateStore& store,
                                      const ports::Clock& clock,
                                      std::string_view volume_id);

}  // namespace clinker::services
