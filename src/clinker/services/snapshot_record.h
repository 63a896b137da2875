// Snapshot: the typed view of a `snapshots` row, and the conversions to and from StateStore rows.
// Services work with Snapshot; only this file knows the column names of a snapshot.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "clinker/core/error.h"
#include "clinker/domain/status.h"
#include "clinker/ports/state_store.h"

namespace clinker::services {

struct Snapshot {
  std::string id;
  std::string project_id;
  std::string user_id;
  std::string volume_id;
  domain::SnapshotStatus status = domain::SnapshotStatus::kCreatingQueued;
  std::optional<std::string> status_reason;
  std::int64_t size_gib = 0;
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::map<std::string, std::string> metadata;
  std::optional<std::string> operation_id;
  std::optional<std::string> progress;  // As stored; nullopt shows 0% (100% when available).
  std::optional<std::string> group_snapshot_id;  // The group snapshot it belongs to (3.14).
  std::string created_at;
  std::optional<std::string> updated_at;
  bool deleted = false;
};

// kInternal if the row does not hold a well-formed snapshot (e.g. an unknown status).
Result<Snapshot> SnapshotFromRow(const ports::Row& row);
ports::Row SnapshotToRow(const Snapshot& snapshot);

}  // namespace clinker::services
