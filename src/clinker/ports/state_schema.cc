#include "clinker/ports/state_schema.h"

#include <array>
#include <string>

namespace clinker::ports {
namespace {

// Volumes. `status` holds the internal status (domain/status.h), never the API one.
constexpr std::array kVolumeColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"user_id", ColumnType::kText, false, ""},
    ColumnSpec{"status", ColumnType::kText, false, ""},
    ColumnSpec{"status_reason", ColumnType::kText, true, ""},
    ColumnSpec{"size_gib", ColumnType::kInteger, false, "0"},
    ColumnSpec{"display_name", ColumnType::kText, true, ""},
    ColumnSpec{"display_description", ColumnType::kText, true, ""},
    ColumnSpec{"metadata", ColumnType::kText, false, "{}"},
    ColumnSpec{"availability_zone", ColumnType::kText, false, "nova"},
    ColumnSpec{"volume_type", ColumnType::kText, true, ""},
    ColumnSpec{"host", ColumnType::kText, true, ""},
    ColumnSpec{"cluster_name", ColumnType::kText, true, ""},
    ColumnSpec{"attach_status", ColumnType::kText, false, "detached"},
    ColumnSpec{"migration_status", ColumnType::kText, true, ""},
    ColumnSpec{"snapshot_id", ColumnType::kText, true, ""},
    ColumnSpec{"source_volid", ColumnType::kText, true, ""},
    ColumnSpec{"bootable", ColumnType::kInteger, false, "0"},
    ColumnSpec{"multiattach", ColumnType::kInteger, false, "0"},
    ColumnSpec{"operation_id", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

constexpr std::array kSnapshotColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"user_id", ColumnType::kText, false, ""},
    ColumnSpec{"volume_id", ColumnType::kText, false, ""},
    ColumnSpec{"status", ColumnType::kText, false, ""},
    ColumnSpec{"status_reason", ColumnType::kText, true, ""},
    ColumnSpec{"size_gib", ColumnType::kInteger, false, "0"},
    ColumnSpec{"display_name", ColumnType::kText, true, ""},
    ColumnSpec{"display_description", ColumnType::kText, true, ""},
    ColumnSpec{"metadata", ColumnType::kText, false, "{}"},
    ColumnSpec{"operation_id", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

}  // namespace

std::string_view TableName(Table table) {
  switch (table) {
    case Table::kVolumes:
      return "volumes";
    case Table::kSnapshots:
      return "snapshots";
  }
  return "volumes";
}

std::span<const ColumnSpec> Columns(Table table) {
  switch (table) {
    case Table::kVolumes:
      return kVolumeColumns;
    case Table::kSnapshots:
      return kSnapshotColumns;
  }
  return kVolumeColumns;
}

const ColumnSpec* FindColumn(Table table, std::string_view column) {
  for (const ColumnSpec& spec : Columns(table)) {
    if (spec.name == column) {
      return &spec;
    }
  }
  return nullptr;
}

Result<void> CheckValue(Table table, std::string_view column, const Value& value) {
  const ColumnSpec* spec = FindColumn(table, column);
  if (spec == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "table " + std::string(TableName(table)) + " has no column " +
                         std::string(column));
  }
  if (std::holds_alternative<std::monostate>(value)) {
    if (!spec->nullable) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "column " + std::string(column) + " cannot be NULL");
    }
    return {};
  }
  bool is_text = std::holds_alternative<std::string>(value);
  if (is_text != (spec->type == ColumnType::kText)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "wrong value type for column " + std::string(column));
  }
  return {};
}

Expectation Expectation::Equals(std::string column, Value value) {
  return Expectation{std::move(column), Kind::kEquals, {std::move(value)}};
}

Expectation Expectation::In(std::string column, std::vector<Value> values) {
  return Expectation{std::move(column), Kind::kIn, std::move(values)};
}

Expectation Expectation::NotEquals(std::string column, Value value) {
  return Expectation{std::move(column), Kind::kNotEquals, {std::move(value)}};
}

Expectation Expectation::NotIn(std::string column, std::vector<Value> values) {
  return Expectation{std::move(column), Kind::kNotIn, std::move(values)};
}

Expectation Expectation::IsNull(std::string column) {
  return Expectation{std::move(column), Kind::kIsNull, {}};
}

Expectation Expectation::IsNotNull(std::string column) {
  return Expectation{std::move(column), Kind::kIsNotNull, {}};
}

Guard Guard::NoLiveRowReferences(Table table, std::string column) {
  return Guard{table, std::move(column)};
}

}  // namespace clinker::ports
