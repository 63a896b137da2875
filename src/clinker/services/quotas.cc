#include "clinker/services/quotas.h"

#include <algorithm>
#include <array>
#include <utility>

#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using ports::Expectation;
using ports::Row;
using ports::Table;
using ports::Value;

constexpr std::array<std::string_view, 7> kFixedResources = {"volumes",
                                                             "snapshots",
                                                             "gigabytes",
                                                             "backups",
                                                             "backup_gigabytes",
                                                             "groups",
                                                             "per_volume_gigabytes"};

constexpr std::array<std::string_view, 3> kPerTypePrefixes = {
    "volumes_", "gigabytes_", "snapshots_"};

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// Every live volume type's name.
Result<std::vector<std::string>> LiveTypeNames(ports::StateStore& store) {
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> rows, store.List(Table::kVolumeTypes, {}));
  std::vector<std::string> names;
  names.reserve(rows.size());
  for (const Row& row : rows) {
    names.push_back(TextOr(row, "name", ""));
  }
  return names;
}

}  // namespace

QuotaService::QuotaService(ports::StateStore& store, QuotaOptions options)
    : store_(store), options_(options) {}

Result<std::vector<std::string>> QuotaService::ResourceNames() {
  std::vector<std::string> names(kFixedResources.begin(), kFixedResources.end());
  CLINKER_ASSIGN_OR_RETURN(std::vector<std::string> types, LiveTypeNames(store_));
  for (const std::string& type : types) {
    for (std::string_view prefix : kPerTypePrefixes) {
      names.push_back(std::string(prefix) + type);
    }
  }
  return names;
}

bool QuotaService::IsKnownResource(const std::vector<std::string>& names,
                                   std::string_view resource) const {
  return std::find(names.begin(), names.end(), resource) != names.end();
}

Result<QuotaMap> QuotaService::RowsOf(Table table,
                                      std::string_view key_column,
                                      std::string_view key) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals(std::string(key_column), std::string(key))};
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> rows, store_.List(table, query));
  QuotaMap limits;
  for (const Row& row : rows) {
    limits[TextOr(row, "resource", "")] = IntegerOr(row, "hard_limit", -1);
  }
  return limits;
}

Result<QuotaMap> QuotaService::Defaults() {
  QuotaMap limits = {{"volumes", options_.volumes},
                     {"snapshots", options_.snapshots},
                     {"gigabytes", options_.gigabytes},
                     {"backups", options_.backups},
                     {"backup_gigabytes", options_.backup_gigabytes},
                     {"groups", options_.groups},
                     {"per_volume_gigabytes", options_.per_volume_gigabytes}};
  CLINKER_ASSIGN_OR_RETURN(std::vector<std::string> names, ResourceNames());
  for (const std::string& name : names) {
    limits.emplace(name, -1);  // Per-type resources are unlimited unless set.
  }
  CLINKER_ASSIGN_OR_RETURN(QuotaMap overrides,
                           RowsOf(Table::kQuotaClasses, "class_name", kDefaultQuotaClass));
  for (const auto& [resource, limit] : overrides) {
    if (auto found = limits.find(resource); found != limits.end()) {
      found->second = limit;
    }
  }
  return limits;
}

Result<QuotaMap> QuotaService::ClassLimits(std::string_view class_name) {
  CLINKER_ASSIGN_OR_RETURN(QuotaMap limits, Defaults());
  CLINKER_ASSIGN_OR_RETURN(QuotaMap rows, RowsOf(Table::kQuotaClasses, "class_name", class_name));
  for (const auto& [resource, limit] : rows) {
    if (auto found = limits.find(resource); found != limits.end()) {
      found->second = limit;
    }
  }
  return limits;
}

Result<QuotaMap> QuotaService::ProjectRows(std::string_view project_id) {
  return RowsOf(Table::kQuotas, "project_id", project_id);
}

Result<QuotaMap> QuotaService::ProjectLimits(std::string_view project_id) {
  CLINKER_ASSIGN_OR_RETURN(QuotaMap limits, Defaults());
  CLINKER_ASSIGN_OR_RETURN(QuotaMap rows, ProjectRows(project_id));
  for (const auto& [resource, limit] : rows) {
    if (auto found = limits.find(resource); found != limits.end()) {
      found->second = limit;
    }
  }
  return limits;
}

Result<QuotaMap> QuotaService::ProjectUsage(std::string_view project_id) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals("project_id", std::string(project_id))};
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> rows, store_.List(Table::kQuotaUsages, query));
  QuotaMap usage;
  for (const Row& row : rows) {
    usage[TextOr(row, "resource", "")] = IntegerOr(row, "in_use", 0);
  }
  return usage;
}

Result<void> QuotaService::SetLimit(Table table,
                                    std::string_view key_column,
                                    std::string_view key,
                                    std::string_view resource,
                                    std::int64_t limit,
                                    const std::string& now) {
  const std::string id = ports::UsageCounterId(key, resource);
  // Update the row (live or deleted) if there is one, else insert it; a racing insert of the same
  // row makes this one update instead.
  for (int attempt = 0; attempt < 3; ++attempt) {
    CLINKER_ASSIGN_OR_RETURN(
        std::optional<Row> updated,
        store_.ConditionalUpdate(
            table,
            id,
            {{"hard_limit", limit}, {"deleted", std::int64_t{0}}, {"updated_at", now}},
            {},
            {}));
    if (updated) {
      return {};
    }
    Row row = {{"id", id},
               {std::string(key_column), std::string(key)},
               {"resource", std::string(resource)},
               {"hard_limit", limit},
               {"created_at", now}};
    auto inserted = store_.Insert(table, row);
    if (inserted || inserted.error().code != ErrorCode::kConflict) {
      return inserted;
    }
  }
  return MakeError(ErrorCode::kConflict, "the limit of " + id + " kept changing");
}

Result<void> QuotaService::SetProjectLimit(std::string_view project_id,
                                           std::string_view resource,
                                           std::int64_t limit,
                                           const std::string& now) {
  return SetLimit(Table::kQuotas, "project_id", project_id, resource, limit, now);
}

Result<void> QuotaService::SetClassLimit(std::string_view class_name,
                                         std::string_view resource,
                                         std::int64_t limit,
                                         const std::string& now) {
  return SetLimit(Table::kQuotaClasses, "class_name", class_name, resource, limit, now);
}

Result<void> QuotaService::DeleteProjectLimits(std::string_view project_id,
                                               const std::string& now) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals("project_id", std::string(project_id))};
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> rows, store_.List(Table::kQuotas, query));
  for (const Row& row : rows) {
    CLINKER_RETURN_IF_ERROR(
        store_.ConditionalUpdate(Table::kQuotas,
                                 TextOr(row, "id", ""),
                                 {{"deleted", std::int64_t{1}}, {"deleted_at", now}},
                                 {Expectation::Equals("deleted", std::int64_t{0})},
                                 {}));
  }
  return {};
}

Result<std::vector<ports::UsageChange>> QuotaService::Charge(std::string_view project_id,
                                                             const UsageAmounts& amounts) {
  CLINKER_ASSIGN_OR_RETURN(QuotaMap limits, ProjectLimits(project_id));
  return ChargeWithLimits(limits, project_id, amounts);
}

std::vector<ports::UsageChange> QuotaService::ChargeWithLimits(const QuotaMap& limits,
                                                               std::string_view project_id,
                                                               const UsageAmounts& amounts) {
  std::vector<ports::UsageChange> changes;
  changes.reserve(amounts.deltas.size());
  for (const auto& [resource, delta] : amounts.deltas) {
    auto limit = limits.find(resource);
    changes.push_back(ports::UsageChange{std::string(project_id),
                                         resource,
                                         delta,
                                         limit == limits.end() || delta <= 0 ? -1 : limit->second});
  }
  return changes;
}

std::vector<ports::UsageChange> QuotaService::Release(std::string_view project_id,
                                                      const UsageAmounts& amounts) {
  std::vector<ports::UsageChange> changes;
  changes.reserve(amounts.deltas.size());
  for (const auto& [resource, delta] : amounts.deltas) {
    changes.push_back(ports::UsageChange{std::string(project_id), resource, -delta, -1});
  }
  return changes;
}

Result<std::optional<std::string>> QuotaService::TypeName(
    const std::optional<std::string>& volume_type_id) {
  if (!volume_type_id) {
    return std::optional<std::string>();
  }
  auto row = store_.Get(Table::kVolumeTypes, *volume_type_id);
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return std::optional<std::string>();
    }
    return tl::unexpected(row.error());
  }
  return std::optional<std::string>(TextOr(*row, "name", ""));
}

Result<UsageAmounts> QuotaService::UsageOfVolume(std::int64_t size_gib,
                                                 const std::optional<std::string>& volume_type_id) {
  CLINKER_ASSIGN_OR_RETURN(std::optional<std::string> type, TypeName(volume_type_id));
  UsageAmounts amounts;
  amounts.Add("volumes", 1);
  amounts.Add("gigabytes", size_gib);
  if (type) {
    amounts.Add("volumes_" + *type, 1);
    amounts.Add("gigabytes_" + *type, size_gib);
  }
  return amounts;
}

Result<UsageAmounts> QuotaService::UsageOfSnapshot(std::int64_t size_gib,
                                                   std::string_view volume_id) {
  std::optional<std::string> type_id;
  auto volume = store_.Get(Table::kVolumes, volume_id);
  if (volume) {
    type_id = OptionalText(*volume, "volume_type_id");
  } else if (volume.error().code != ErrorCode::kNotFound) {
    return tl::unexpected(volume.error());
  }
  CLINKER_ASSIGN_OR_RETURN(std::optional<std::string> type, TypeName(type_id));
  UsageAmounts amounts;
  amounts.Add("snapshots", 1);
  if (!options_.no_snapshot_gb_quota) {
    amounts.Add("gigabytes", size_gib);
  }
  if (type) {
    amounts.Add("snapshots_" + *type, 1);
    if (!options_.no_snapshot_gb_quota) {
      amounts.Add("gigabytes_" + *type, size_gib);
    }
  }
  return amounts;
}

UsageAmounts QuotaService::UsageOfBackup(std::int64_t size_gib) {
  UsageAmounts amounts;
  amounts.Add("backups", 1);
  amounts.Add("backup_gigabytes", size_gib);
  return amounts;
}

UsageAmounts QuotaService::UsageOfGroup() {
  UsageAmounts amounts;
  amounts.Add("groups", 1);
  return amounts;
}

Result<UsageAmounts> QuotaService::UsageOfExtend(std::int64_t delta_gib,
                                                 const std::optional<std::string>& volume_type_id) {
  CLINKER_ASSIGN_OR_RETURN(std::optional<std::string> type, TypeName(volume_type_id));
  UsageAmounts amounts;
  amounts.Add("gigabytes", delta_gib);
  if (type) {
    amounts.Add("gigabytes_" + *type, delta_gib);
  }
  return amounts;
}

Result<std::map<std::string, QuotaMap, std::less<>>> QuotaService::RecountUsage() {
  std::map<std::string, QuotaMap, std::less<>> counts;
  auto add = [&counts](const std::string& project, const UsageAmounts& amounts) {
    for (const auto& [resource, delta] : amounts.deltas) {
      counts[project][resource] += delta;
    }
  };
  // Type names by id, read once.
  std::map<std::string, std::string, std::less<>> type_names;
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> types, store_.List(Table::kVolumeTypes, {}));
  for (const Row& type : types) {
    type_names[TextOr(type, "id", "")] = TextOr(type, "name", "");
  }
  std::map<std::string, std::optional<std::string>, std::less<>> volume_types;
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> volumes, store_.List(Table::kVolumes, {}));
  for (const Row& volume : volumes) {
    std::optional<std::string> type_id = OptionalText(volume, "volume_type_id");
    volume_types[TextOr(volume, "id", "")] = type_id;
    std::int64_t size =
        std::max(IntegerOr(volume, "size_gib", 0), IntegerOr(volume, "pending_size_gib", 0));
    UsageAmounts amounts;
    amounts.Add("volumes", 1);
    amounts.Add("gigabytes", size);
    if (type_id && type_names.contains(*type_id)) {
      amounts.Add("volumes_" + type_names[*type_id], 1);
      amounts.Add("gigabytes_" + type_names[*type_id], size);
    }
    add(TextOr(volume, "project_id", ""), amounts);
  }
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> snapshots, store_.List(Table::kSnapshots, {}));
  for (const Row& snapshot : snapshots) {
    std::int64_t size = IntegerOr(snapshot, "size_gib", 0);
    std::optional<std::string> type_id;
    if (auto found = volume_types.find(TextOr(snapshot, "volume_id", ""));
        found != volume_types.end()) {
      type_id = found->second;
    }
    UsageAmounts amounts;
    amounts.Add("snapshots", 1);
    if (!options_.no_snapshot_gb_quota) {
      amounts.Add("gigabytes", size);
    }
    if (type_id && type_names.contains(*type_id)) {
      amounts.Add("snapshots_" + type_names[*type_id], 1);
      if (!options_.no_snapshot_gb_quota) {
        amounts.Add("gigabytes_" + type_names[*type_id], size);
      }
    }
    add(TextOr(snapshot, "project_id", ""), amounts);
  }
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> backups, store_.List(Table::kBackups, {}));
  for (const Row& backup : backups) {
    add(TextOr(backup, "project_id", ""), UsageOfBackup(IntegerOr(backup, "size_gib", 0)));
  }
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> groups, store_.List(Table::kGroups, {}));
  for (const Row& group : groups) {
    add(TextOr(group, "project_id", ""), UsageOfGroup());
  }
  return counts;
}

Result<std::map<std::string, QuotaMap, std::less<>>> QuotaService::StoredUsage() {
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> rows, store_.List(Table::kQuotaUsages, {}));
  std::map<std::string, QuotaMap, std::less<>> stored;
  for (const Row& row : rows) {
    stored[TextOr(row, "project_id", "")][TextOr(row, "resource", "")] =
        IntegerOr(row, "in_use", 0);
  }
  return stored;
}

std::string QuotaExceededMessage(const ports::QuotaExceededInfo& info) {
  const std::string& name = info.resource;
  const std::string limit = std::to_string(info.limit);
  if (name == "gigabytes" || StartsWith(name, "gigabytes_")) {
    return "Requested volume or snapshot exceeds allowed " + name + " quota. Requested " +
           std::to_string(info.requested) + "G, quota is " + limit + "G and " +
           std::to_string(info.in_use) + "G has been consumed.";
  }
  if (name == "backup_gigabytes") {
    return "Requested backup exceeds allowed Backup gigabytes quota. Requested " +
           std::to_string(info.requested) + "G, quota is " + limit + "G and " +
           std::to_string(info.in_use) + "G has been consumed.";
  }
  if (name == "volumes" || StartsWith(name, "volumes_")) {
    return "Maximum number of volumes allowed (" + limit + ") exceeded for quota '" + name + "'.";
  }
  if (name == "snapshots" || StartsWith(name, "snapshots_")) {
    return "Maximum number of snapshots allowed (" + limit + ") exceeded";
  }
  if (name == "backups") {
    return "Maximum number of backups allowed (" + limit + ") exceeded";
  }
  if (name == "groups") {
    return "Maximum number of groups allowed (" + limit + ") exceeded";
  }
  return "Quota exceeded for resources: ['" + name + "']";
}

}  // namespace clinker::services
