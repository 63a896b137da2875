#include "clinker/services/snapshot_record.h"

#include "clinker/services/volume_record.h"

namespace clinker::services {

Result<Snapshot> SnapshotFromRow(const ports::Row& row) {
  Snapshot snapshot;
  snapshot.id = TextOr(row, "id", "");
  std::string stored_status = TextOr(row, "status", "");
  auto status = domain::ParseStoredSnapshotStatus(stored_status);
  if (snapshot.id.empty() || !status) {
    return MakeError(ErrorCode::kInternal,
                     "snapshot row " + snapshot.id + " has unknown status '" + stored_status + "'");
  }
  snapshot.status = *status;
  snapshot.project_id = TextOr(row, "project_id", "");
  snapshot.user_id = TextOr(row, "user_id", "");
  snapshot.volume_id = TextOr(row, "volume_id", "");
  snapshot.status_reason = OptionalText(row, "status_reason");
  snapshot.size_gib = IntegerOr(row, "size_gib", 0);
  snapshot.name = OptionalText(row, "display_name");
  snapshot.description = OptionalText(row, "display_description");
  snapshot.metadata = MetadataFromJson(TextOr(row, "metadata", "{}"));
  snapshot.operation_id = OptionalText(row, "operation_id");
  snapshot.progress = OptionalText(row, "progress");
  snapshot.group_snapshot_id = OptionalText(row, "group_snapshot_id");
  snapshot.created_at = TextOr(row, "created_at", "");
  snapshot.updated_at = OptionalText(row, "updated_at");
  snapshot.deleted = IntegerOr(row, "deleted", 0) != 0;
  return snapshot;
}

ports::Row SnapshotToRow(const Snapshot& snapshot) {
  return ports::Row{
      {"id", snapshot.id},
      {"project_id", snapshot.project_id},
      {"user_id", snapshot.user_id},
      {"volume_id", snapshot.volume_id},
      {"status", Status(snapshot.status)},
      {"status_reason", TextOrNull(snapshot.status_reason)},
      {"size_gib", snapshot.size_gib},
      {"display_name", TextOrNull(snapshot.name)},
      {"display_description", TextOrNull(snapshot.description)},
      {"metadata", MetadataToJson(snapshot.metadata)},
      {"operation_id", TextOrNull(snapshot.operation_id)},
      {"progress", TextOrNull(snapshot.progress)},
      {"group_snapshot_id", TextOrNull(snapshot.group_snapshot_id)},
      {"created_at", snapshot.created_at},
      {"updated_at", TextOrNull(snapshot.updated_at)},
      {"deleted", std::int64_t{snapshot.deleted ? 1 : 0}},
  };
}

}  // namespace clinker::services
