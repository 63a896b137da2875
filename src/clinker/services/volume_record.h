// Volume: the typed view of a `volumes` row, and the conversions to and from StateStore rows.
// Services work with Volume; only this file knows the column names of a volume.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "clinker/core/error.h"
#include "clinker/domain/status.h"
#include "clinker/ports/state_store.h"

namespace clinker::services {

struct Volume {
  std::string id;
  std::string project_id;
  std::string user_id;
  domain::VolumeStatus status = domain::VolumeStatus::kCreatingQueued;
  std::optional<std::string> status_reason;
  std::int64_t size_gib = 0;
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::map<std::string, std::string> metadata;
  // Cinder's volume_glance_metadata (os-set_image_metadata), shown as volume_image_metadata.
  std::map<std::string, std::string> image_metadata;
  // Cinder's volume_admin_metadata: readonly, attached_mode (VisibleMetadata shows them).
  std::map<std::string, std::string> admin_metadata;
  std::string availability_zone;
  // volume_types.id; nullopt for a volume made before types existed (of the default type).
  std::optional<std::string> volume_type_id;
  std::optional<std::string> host;  // "<host>@<backend>#<pool>" once scheduled.
  // "<cluster>@<backend>#<pool>" when scheduled to a cluster: its jobs go to the cluster's queue.
  std::optional<std::string> cluster_name;
  std::string attach_status = "detached";
  std::optional<std::string> migration_status;
  std::optional<std::string> snapshot_id;
  std::optional<std::string> source_volid;
  std::optional<std::string> group_id;  // The generic volume group it belongs to (3.13).
  bool bootable = false;
  bool multiattach = false;
  std::optional<std::string> operation_id;
  std::string created_at;
  std::optional<std::string> updated_at;
  bool deleted = false;
};

// kInternal if the row does not hold a well-formed volume (e.g. an unknown status).
Result<Volume> VolumeFromRow(const ports::Row& row);
ports::Row VolumeToRow(const Volume& volume);

std::string MetadataToJson(const std::map<std::string, std::string>& metadata);
// Keeps the string values of a JSON object; anything else reads as empty.
std::map<std::string, std::string> MetadataFromJson(const std::string& text);

// What a volume view shows as `metadata`: the user metadata with the admin metadata users may
// see (readonly, attached_mode) laid over it, as Cinder's add_visible_admin_metadata does.
std::map<std::string, std::string> VisibleMetadata(const Volume& volume);

// Column readers shared by the record files: absent, NULL or mistyped reads as the fallback.
std::optional<std::string> OptionalText(const ports::Row& row, std::string_view column);
std::string TextOr(const ports::Row& row, std::string_view column, std::string fallback);
std::int64_t IntegerOr(const ports::Row& row, std::string_view column, std::int64_t fallback);

// Small helpers for building rows.
ports::Value TextOrNull(const std::optional<std::string>& text);

inline ports::Value Text(std::string_view text) {
  return std::string(text);
}

inline ports::Value Status(domain::VolumeStatus status) {
  return std::string(domain::StoredName(status));
}

inline ports::Value Status(domain::SnapshotStatus status) {
  return std::string(domain::StoredName(status));
}

}  // namespace clinker::services
