#include "clinker/adapters/memory/memory_state_store.h"

#include <algorithm>
#include <charconv>
#include <string>
#include <utility>

#include "clinker/core/assert.h"
#include "clinker/ports/state_schema.h"

namespace clinker::adapters {
namespace {

using ports::ColumnSpec;
using ports::ColumnType;
using ports::Expectation;
using ports::Row;
using ports::Table;
using ports::Value;

const Value& ValueOf(const Row& row, std::string_view column) {
  static const Value kNull;
  auto found = row.find(column);
  return found == row.end() ? kNull : found->second;
}

bool IsNull(const Value& value) {
  return std::holds_alternative<std::monostate>(value);
}

bool AnyEquals(const Value& value, const std::vector<Value>& candidates) {
  return std::find(candidates.begin(), candidates.end(), value) != candidates.end();
}

// SQL semantics: a comparison with NULL is never true, so only the negated kinds and kIsNull
// hold for a NULL column.
bool Matches(const Row& row, const Expectation& expectation) {
  const Value& value = ValueOf(row, expectation.column);
  switch (expectation.kind) {
    case Expectation::Kind::kEquals:
      return !IsNull(value) && value == expectation.values[0];
    case Expectation::Kind::kIn:
      return !IsNull(value) && AnyEquals(value, expectation.values);
    case Expectation::Kind::kNotEquals:
      return IsNull(value) || value != expectation.values[0];
    case Expectation::Kind::kNotIn:
      return IsNull(value) || !AnyEquals(value, expectation.values);
    case Expectation::Kind::kIsNull:
      return IsNull(value);
    case Expectation::Kind::kIsNotNull:
      return !IsNull(value);
    case Expectation::Kind::kNullOrAtMost:
      return IsNull(value) ||
             std::get<std::int64_t>(value) <= std::get<std::int64_t>(expectation.values[0]);
  }
  return false;
}

bool IsLive(const Row& row) {
  const Value& deleted = ValueOf(row, "deleted");
  return deleted == Value(std::int64_t{0});
}

struct ResolvedSortKey {
  const ColumnSpec* spec;
  bool ascending;
};

Result<std::vector<ResolvedSortKey>> ResolveSort(Table table, const ports::ListQuery& query) {
  std::vector<ResolvedSortKey> keys;
  for (const ports::SortKey& key : query.sort) {
    CLINKER_ASSIGN_OR_RETURN(const ColumnSpec* spec, ports::RequireColumn(table, key.column));
    keys.push_back({spec, key.ascending});
  }
  bool id_ascending = keys.empty() ? true : keys.back().ascending;
  keys.push_back({ports::FindColumn(table, "id"), id_ascending});
  return keys;
}

// NULL sorts as the type's zero value ('' or 0), as SqliteStateStore's COALESCE does.
Value SortValue(const ColumnSpec& spec, const Value& value) {
  if (IsNull(value)) {
    if (spec.type == ColumnType::kText) {
      return std::string();
    }
    return std::int64_t{0};
  }
  return value;
}

// <0, 0 or >0 as `a` comes before, with or after `b`. std::string compares bytes as unsigned
// char, like SQLite's BINARY collation.
int CompareRows(const Row& a, const Row& b, const std::vector<ResolvedSortKey>& keys) {
  for (const ResolvedSortKey& key : keys) {
    Value left = SortValue(*key.spec, ValueOf(a, key.spec->name));
    Value right = SortValue(*key.spec, ValueOf(b, key.spec->name));
    if (left < right) {
      return key.ascending ? -1 : 1;
    }
    if (right < left) {
      return key.ascending ? 1 : -1;
    }
  }
  return 0;
}

}  // namespace

MemoryStateStore::Rows& MemoryStateStore::RowsOf(Table table) {
  switch (table) {
    case Table::kVolumes:
      return volumes_;
    case Table::kSnapshots:
      return snapshots_;
    case Table::kServices:
      return services_;
    case Table::kClusters:
      return clusters_;
    case Table::kAttachments:
      return attachments_;
    case Table::kBackups:
      return backups_;
    case Table::kTransfers:
      return transfers_;
    case Table::kMessages:
      return messages_;
    case Table::kVolumeTypes:
      return volume_types_;
    case Table::kVolumeTypeAccess:
      return volume_type_access_;
    case Table::kQosSpecs:
      return qos_specs_;
    case Table::kQuotaUsages:
      return quota_usages_;
    case Table::kQuotas:
      return quotas_;
    case Table::kQuotaClasses:
      return quota_classes_;
    case Table::kGroupTypes:
      return group_types_;
    case Table::kGroups:
      return groups_;
    case Table::kGroupSnapshots:
      return group_snapshots_;
    case Table::kPoolCapacity:
      return pool_capacity_;
  }
  CLINKER_ASSERT(false, "unknown table");
  return volumes_;
}

Result<void> MemoryStateStore::CheckLiveUnique(Table table, std::string_view id, const Row& row) {
  if (!IsLive(row)) {
    return {};
  }
  for (const std::string_view column : ports::LiveUniqueColumns(table)) {
    const Value& value = ValueOf(row, column);
    if (IsNull(value)) {
      continue;
    }
    for (const auto& entry : RowsOf(table)) {
      if (entry.first != id && IsLive(entry.second) && ValueOf(entry.second, column) == value) {
        return MakeError(ErrorCode::kConflict,
                         std::string(ports::TableName(table)) + " " + entry.first +
                             " is live with the same " + std::string(column));
      }
    }
  }
  return {};
}

Result<void> MemoryStateStore::ApplyUsage(const std::vector<ports::UsageChange>& usage) {
  // Computed on the side first, so that a refusal leaves every counter as it was.
  std::map<std::pair<Table, std::string>, std::int64_t> counts;
  for (const ports::UsageChange& change : usage) {
    const ports::UsageCounter counter = ports::CounterOf(change);
    auto key = std::make_pair(counter.table, counter.id);
    auto counted = counts.find(key);
    if (counted == counts.end()) {
      Rows& rows = RowsOf(counter.table);
      auto stored = rows.find(counter.id);
      std::int64_t in_use = 0;
      if (stored != rows.end()) {
        in_use = std::get<std::int64_t>(stored->second.find(counter.column)->second);
      }
      counted = counts.emplace(key, in_use).first;
    }
    if (change.delta > 0 && change.limit >= 0 && counted->second + change.delta > change.limit) {
      return tl::unexpected(ports::QuotaExceededError(
          {change.project_id, change.resource, change.limit, counted->second, change.delta}));
    }
    counted->second += change.delta;
  }
  for (const ports::UsageChange& change : usage) {
    const ports::UsageCounter counter = ports::CounterOf(change);
    Rows& rows = RowsOf(counter.table);
    auto stored = rows.find(counter.id);
    if (stored == rows.end()) {
      auto fresh = ports::CompleteRow(counter.table, counter.fresh_row);
      CLINKER_ASSERT(fresh.has_value(), "a counter's fresh row is complete");
      stored = rows.emplace(counter.id, std::move(*fresh)).first;
    }
    stored->second[std::string(counter.column)] = counts.at({counter.table, counter.id});
  }
  return {};
}

Result<void> MemoryStateStore::Insert(Table table, const Row& row) {
  return InsertWithUsage(table, row, {});
}

Result<std::optional<Row>> MemoryStateStore::ConditionalUpdate(
    Table table,
    std::string_view id,
    const Row& values,
    const std::vector<Expectation>& expected,
    const std::vector<ports::Guard>& guards) {
  return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
}

Result<void> MemoryStateStore::InsertWithUsage(Table table,
                                               const Row& row,
                                               const std::vector<ports::UsageChange>& usage) {
  CLINKER_RETURN_IF_ERROR(ports::CheckUsageChanges(usage));
  CLINKER_ASSIGN_OR_RETURN(Row complete, ports::CompleteRow(table, row));
  std::string id = std::get<std::string>(complete.at("id"));
  std::lock_guard<std::mutex> lock(mutex_);
  if (RowsOf(table).contains(id)) {
    return MakeError(ErrorCode::kConflict,
                     std::string(ports::TableName(table)) + " " + id + " exists");
  }
  CLINKER_RETURN_IF_ERROR(CheckLiveUnique(table, id, complete));
  CLINKER_RETURN_IF_ERROR(ApplyUsage(usage));
  RowsOf(table).emplace(id, std::move(complete));
  return {};
}

Result<Row> MemoryStateStore::Get(Table table, std::string_view id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Rows& rows = RowsOf(table);
  auto found = rows.find(id);
  if (found == rows.end()) {
    return MakeError(ErrorCode::kNotFound,
                     std::string(ports::TableName(table)) + " " + std::string(id) + " not found");
  }
  return found->second;
}

Result<std::vector<Row>> MemoryStateStore::List(Table table, const ports::ListQuery& query) {
  for (const Expectation& filter : query.filters) {
    CLINKER_RETURN_IF_ERROR(ports::CheckExpectation(table, filter));
  }
  CLINKER_ASSIGN_OR_RETURN(std::vector<ResolvedSortKey> keys, ResolveSort(table, query));
  if (query.limit && *query.limit < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "limit must not be negative");
  }

  std::lock_guard<std::mutex> lock(mutex_);
  Rows& rows = RowsOf(table);
  const Row* marker = nullptr;
  if (query.marker_id) {
    auto found = rows.find(*query.marker_id);
    if (found == rows.end()) {
      return MakeError(ErrorCode::kNotFound, "marker " + *query.marker_id + " not found");
    }
    marker = &found->second;
  }
  std::vector<const Row*> selected;
  for (const auto& entry : rows) {
    // A named reference, not a structured binding: clang 14 (clang-tidy) cannot capture those.
    const Row& row = entry.second;
    if (!query.include_deleted && !IsLive(row)) {
      continue;
    }
    bool all = std::all_of(query.filters.begin(),
                           query.filters.end(),
                           [&row](const Expectation& filter) { return Matches(row, filter); });
    if (!all) {
      continue;
    }
    if (marker != nullptr && CompareRows(row, *marker, keys) <= 0) {
      continue;
    }
    selected.push_back(&row);
  }
  std::sort(selected.begin(), selected.end(), [&keys](const Row* a, const Row* b) {
    return CompareRows(*a, *b, keys) < 0;
  });
  if (query.limit && static_cast<std::uint64_t>(*query.limit) < selected.size()) {
    selected.resize(static_cast<std::size_t>(*query.limit));
  }
  std::vector<Row> result;
  result.reserve(selected.size());
  for (const Row* row : selected) {
    result.push_back(*row);
  }
  return result;
}

Result<std::optional<Row>> MemoryStateStore::ConditionalUpdateWithUsage(
    Table table,
    std::string_view id,
    const Row& values,
    const std::vector<Expectation>& expected,
    const std::vector<ports::Guard>& guards,
    const std::vector<ports::UsageChange>& usage) {
  CLINKER_RETURN_IF_ERROR(ports::CheckUsageChanges(usage));
  CLINKER_RETURN_IF_ERROR(ports::CheckUpdateValues(table, values));
  for (const Expectation& expectation : expected) {
    CLINKER_RETURN_IF_ERROR(ports::CheckExpectation(table, expectation));
  }
  for (const ports::Guard& guard : guards) {
    CLINKER_RETURN_IF_ERROR(ports::CheckGuard(guard));
  }

  std::lock_guard<std::mutex> lock(mutex_);
  Rows& rows = RowsOf(table);
  auto found = rows.find(id);
  if (found == rows.end()) {
    return std::optional<Row>();
  }
  Row& row = found->second;
  for (const Expectation& expectation : expected) {
    if (!Matches(row, expectation)) {
      return std::optional<Row>();
    }
  }
  const Value id_value(std::string{id});
  for (const ports::Guard& guard : guards) {
    for (const auto& entry : RowsOf(guard.table)) {
      const Row& other = entry.second;
      if (IsLive(other) && ValueOf(other, guard.column) == id_value &&
          std::all_of(guard.where.begin(), guard.where.end(), [&](const Expectation& condition) {
            return Matches(other, condition);
          })) {
        return std::optional<Row>();
      }
    }
  }
  Row updated = row;
  for (const auto& [name, value] : values) {
    auto column = updated.find(name);
    CLINKER_ASSERT(column != updated.end(), "a stored row lacks a schema column");
    column->second = value;
  }
  CLINKER_RETURN_IF_ERROR(CheckLiveUnique(table, id, updated));
  CLINKER_RETURN_IF_ERROR(ApplyUsage(usage));
  row = std::move(updated);  // std::map references survive ApplyUsage's inserts.
  return std::optional<Row>(row);
}

}  // namespace clinker::adapters
