#include "clinker/services/attachment_state.h"

#include <algorithm>

#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

using domain::AttachmentStatus;
using domain::VolumeStatus;
using ports::Expectation;

namespace {

// Enough for any realistic burst of concurrent changes to one volume's attachments.
constexpr int kRefreshAttempts = 20;

}  // namespace

DerivedAttachState DeriveAttachState(const std::vector<AttachmentStatus>& attachments) {
  auto any = [&](std::initializer_list<AttachmentStatus> wanted) {
    return std::any_of(attachments.begin(), attachments.end(), [&](AttachmentStatus status) {
      return std::find(wanted.begin(), wanted.end(), status) != wanted.end();
    });
  };
  // A failed detach may leave the export in place: the volume still counts as in use.
  if (any({AttachmentStatus::kAttached, AttachmentStatus::kErrorDetaching})) {
    return {VolumeStatus::kInUse, "attached"};
  }
  if (any({AttachmentStatus::kAttachingQueued,
           AttachmentStatus::kConnecting,
           AttachmentStatus::kAttaching})) {
    return {VolumeStatus::kAttaching, "attaching"};
  }
  if (any({AttachmentStatus::kDetachingQueued, AttachmentStatus::kDetaching})) {
    return {VolumeStatus::kDetaching, "detaching"};
  }
  // A failed export keeps its reservation until the attachment is deleted, so a volume that
  // does not allow multiattach cannot be given to a second host meanwhile.
  if (any({AttachmentStatus::kReserved, AttachmentStatus::kErrorAttaching})) {
    return {VolumeStatus::kReserved, "reserved"};
  }
  return {VolumeStatus::kAvailable, "detached"};
}

bool InAttachFamily(VolumeStatus status) {
  return status == VolumeStatus::kAvailable || status == VolumeStatus::kReserved ||
         status == VolumeStatus::kAttaching || status == VolumeStatus::kInUse ||
         status == VolumeStatus::kDetaching;
}

Result<void> RefreshVolumeAttachState(ports::StateStore& store,
                                      const ports::Clock& clock,
                                      std::string_view volume_id) {
  for (int attempt = 0; attempt < kRefreshAttempts; ++attempt) {
    CLINKER_ASSIGN_OR_RETURN(ports::Row row, store.Get(ports::Table::kVolumes, volume_id));
    CLINKER_ASSIGN_OR_RETURN(Volume volume, VolumeFromRow(row));
    if (volume.deleted || !InAttachFamily(volume.status)) {
      return {};
    }
    ports::ListQuery query;
    query.filters = {Expectation::Equals("volume_id", std::string(volume_id))};
    CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> rows,
                             store.List(ports::Table::kAttachments, query));
    std::vector<AttachmentStatus> statuses;
    for (const ports::Row& attachment : rows) {
      if (auto status = domain::ParseStoredAttachmentStatus(TextOr(attachment, "status", ""))) {
        statuses.push_back(*status);
      }
    }
    DerivedAttachState derived = DeriveAttachState(statuses);
    // A volume with no attachment left loses its attached_mode admin metadata (os-attach's), as
    // in Cinder's volume_detached.
    const bool drop_attached_mode =
        derived.attach_status == "detached" && volume.admin_metadata.contains("attached_mode");
    if (derived.status == volume.status && derived.attach_status == volume.attach_status &&
        !drop_attached_mode) {
      return {};
    }
    ports::Row values = {{"status", Status(derived.status)},
                         {"attach_status", derived.attach_status},
                         {"operation_id", NewUuid()},
                         {"updated_at", FormatTimestamp(clock.WallNow())}};
    std::vector<Expectation> expected = {
        Expectation::Equals("deleted", std::int64_t{0}),
        Expectation::Equals("status", Status(volume.status)),
        volume.operation_id ? Expectation::Equals("operation_id", *volume.operation_id)
                            : Expectation::IsNull("operation_id")};
    if (drop_attached_mode) {
      std::map<std::string, std::string> admin = volume.admin_metadata;
      admin.erase("attached_mode");
      values["admin_metadata"] = MetadataToJson(admin);
      // The admin metadata as read: a readonly flag set meanwhile is not overwritten.
      expected.push_back(
          Expectation::Equals("admin_metadata", TextOr(row, "admin_metadata", "{}")));
    }
    CLINKER_ASSIGN_OR_RETURN(
        auto written,
        store.ConditionalUpdate(ports::Table::kVolumes, volume_id, values, expected, {}));
    if (written) {
      return {};
    }
  }
  return MakeError(ErrorCode::kConflict,
                   "the attachments of volume " + std::string(volume_id) +
                       " kept changing; its status was not refreshed");
}

}  // namespace clinker::services
