#include "clinker/services/volume_record.h"

#include <nlohmann/json.hpp>

namespace clinker::services {

std::optional<std::string> OptionalText(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::string>(it->second)) {
    return std::nullopt;
  }
  return std::get<std::string>(it->second);
}

std::string TextOr(const ports::Row& row, std::string_view column, std::string fallback) {
  return OptionalText(row, column).value_or(std::move(fallback));
}

std::int64_t IntegerOr(const ports::Row& row, std::string_view column, std::int64_t fallback) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::int64_t>(it->second)) {
    return fallback;
  }
  return std::get<std::int64_t>(it->second);
}

std::map<std::string, std::string> MetadataFromJson(const std::string& text) {
  std::map<std::string, std::string> out;
  nlohmann::json metadata = nlohmann::json::parse(text, nullptr, false);
  if (metadata.is_object()) {
    for (const auto& [key, value] : metadata.items()) {
      if (value.is_string()) {
        out[key] = value.get<std::string>();
      }
    }
  }
  return out;
}

ports::Value TextOrNull(const std::optional<std::string>& text) {
  if (!text) {
    return std::monostate{};
  }
  return *text;
}

std::string MetadataToJson(const std::map<std::string, std::string>& metadata) {
  return nlohmann::json(metadata).dump();
}

std::map<std::string, std::string> VisibleMetadata(const Volume& volume) {
  std::map<std::string, std::string> shown = volume.metadata;
  for (const char* key : {"readonly", "attached_mode"}) {
    if (auto it = volume.admin_metadata.find(key); it != volume.admin_metadata.end()) {
      shown[key] = it->second;
    }
  }
  return shown;
}

Result<Volume> VolumeFromRow(const ports::Row& row) {
  Volume volume;
  volume.id = TextOr(row, "id", "");
  std::string stored_status = TextOr(row, "status", "");
  auto status = domain::ParseStoredVolumeStatus(stored_status);
  if (volume.id.empty() || !status) {
    return MakeError(ErrorCode::kInternal,
                     "volume row " + volume.id + " has unknown status '" + stored_status + "'");
  }
  volume.status = *status;
  volume.project_id = TextOr(row, "project_id", "");
  volume.user_id = TextOr(row, "user_id", "");
  volume.status_reason = OptionalText(row, "status_reason");
  volume.size_gib = IntegerOr(row, "size_gib", 0);
  volume.name = OptionalText(row, "display_name");
  volume.description = OptionalText(row, "display_description");
  volume.metadata = MetadataFromJson(TextOr(row, "metadata", "{}"));
  volume.image_metadata = MetadataFromJson(TextOr(row, "image_metadata", "{}"));
  volume.admin_metadata = MetadataFromJson(TextOr(row, "admin_metadata", "{}"));
  volume.availability_zone = TextOr(row, "availability_zone", "nova");
  volume.volume_type_id = OptionalText(row, "volume_type_id");
  volume.host = OptionalText(row, "host");
  volume.cluster_name = OptionalText(row, "cluster_name");
  volume.attach_status = TextOr(row, "attach_status", "detached");
  volume.migration_status = OptionalText(row, "migration_status");
  volume.snapshot_id = OptionalText(row, "snapshot_id");
  volume.source_volid = OptionalText(row, "source_volid");
  volume.group_id = OptionalText(row, "group_id");
  volume.bootable = IntegerOr(row, "bootable", 0) != 0;
  volume.multiattach = IntegerOr(row, "multiattach", 0) != 0;
  volume.operation_id = OptionalText(row, "operation_id");
  volume.created_at = TextOr(row, "created_at", "");
  volume.updated_at = OptionalText(row, "updated_at");
  volume.deleted = IntegerOr(row, "deleted", 0) != 0;
  return volume;
}

ports::Row VolumeToRow(const Volume& volume) {
  return ports::Row{
      {"id", volume.id},
      {"project_id", volume.project_id},
      {"user_id", volume.user_id},
      {"status", Status(volume.status)},
      {"status_reason", TextOrNull(volume.status_reason)},
      {"size_gib", volume.size_gib},
      {"display_name", TextOrNull(volume.name)},
      {"display_description", TextOrNull(volume.description)},
      {"metadata", MetadataToJson(volume.metadata)},
      {"image_metadata", MetadataToJson(volume.image_metadata)},
      {"admin_metadata", MetadataToJson(volume.admin_metadata)},
      {"availability_zone", volume.availability_zone},
      {"volume_type_id", TextOrNull(volume.volume_type_id)},
      {"group_id", TextOrNull(volume.group_id)},
      {"host", TextOrNull(volume.host)},
      {"cluster_name", TextOrNull(volume.cluster_name)},
      {"attach_status", volume.attach_status},
      {"migration_status", TextOrNull(volume.migration_status)},
      {"snapshot_id", TextOrNull(volume.snapshot_id)},
      {"source_volid", TextOrNull(volume.source_volid)},
      {"bootable", std::int64_t{volume.bootable ? 1 : 0}},
      {"multiattach", std::int64_t{volume.multiattach ? 1 : 0}},
      {"operation_id", TextOrNull(volume.operation_id)},
      {"created_at", volume.created_at},
      {"updated_at", TextOrNull(volume.updated_at)},
      {"deleted", std::int64_t{volume.deleted ? 1 : 0}},
  };
}

}  // namespace clinker::services
