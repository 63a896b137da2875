#include "clinker/services/group_completion.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "clinker/core/time_format.h"
#include "clinker/domain/status.h"
#include "clinker/services/quotas.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using ports::Expectation;
using ports::Guard;

// How members of one kind show being busy.
struct MemberRules {
  ports::Table parent_table;
  ports::Table member_table;
  std::string_view member_column;  // On the member row: the parent's id.
  bool counts_quota = false;       // The parent holds its project's `groups` quota (groups).
  std::vector<ports::Value> creating;
  std::vector<ports::Value> deleting;
  ports::Value error;
};

Result<void> TryComplete(ports::StateStore& store,
                         const ports::Clock& clock,
                         const MemberRules& rules,
                         const std::string& parent_id) {
  const std::string now = FormatTimestamp(clock.WallNow());
  const std::string column(rules.member_column);
  auto busy = [&](const std::vector<ports::Value>& statuses) {
    return Guard::NoLiveRowReferences(
        rules.member_table, column, {Expectation::In("status", statuses)});
  };

  // The failure steps also need a member that failed: their guards only say that none is busy,
  // and a member busy when the success step was refused may have succeeded since, which would
  // fail the parent for nothing. A failed member stays failed (only an admin reset changes it),
  // so reading that one exists, then writing under the "none busy" guard, is safe; the finisher
  // of the member that fails later reads it in its own attempt.
  enum class Needs { kNothing, kFailedCreate, kFailedDelete };

  struct Step {
    std::string_view from;
    ports::Row values;
    std::vector<Guard> guards;
    Needs needs = Needs::kNothing;
    bool ends_parent = false;  // Soft-deletes the parent: releases what it counts in quotas.
  };

  std::optional<std::vector<ports::Row>> members;
  auto holds = [&](Needs needs) -> Result<bool> {
    if (needs == Needs::kNothing) {
      return true;
    }
    if (!members) {
      ports::ListQuery query;
      query.filters = {Expectation::Equals(column, parent_id)};
      CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> rows, store.List(rules.member_table, query));
      members = std::move(rows);
    }
    for (const ports::Row& member : *members) {
      auto status = member.find("status");
      if (status == member.end()) {
        continue;
      }
      if (needs == Needs::kFailedCreate && status->second == rules.error) {
        return true;
      }
      if (needs == Needs::kFailedDelete &&
          std::find(rules.deleting.begin(), rules.deleting.end(), status->second) ==
              rules.deleting.end()) {
        return true;
      }
    }
    return false;
  };

  const std::vector<Step> steps = {
      {kGroupCreating,
       {{"status", Text(kGroupAvailable)}, {"updated_at", now}},
       {busy(rules.creating),
        Guard::NoLiveRowReferences(
            rules.member_table, column, {Expectation::Equals("status", rules.error)})}},
      {kGroupCreating,
       {{"status", Text(kGroupError)}, {"updated_at", now}},
       {busy(rules.creating)},
       Needs::kFailedCreate},
      {kGroupDeleting,
       {{"status", Text(kGroupDeleted)},
        {"deleted", std::int64_t{1}},
        {"deleted_at", now},
        {"updated_at", now}},
       {Guard::NoLiveRowReferences(rules.member_table, column)},
       Needs::kNothing,
       /*ends_parent=*/true},
      {kGroupDeleting,
       {{"status", Text(kGroupErrorDeleting)}, {"updated_at", now}},
       {busy(rules.deleting)},
       Needs::kFailedDelete},
  };
  for (const Step& step : steps) {
    auto needed = holds(step.needs);
    if (!needed) {
      return tl::unexpected(needed.error());
    }
    if (!*needed) {
      continue;
    }
    std::vector<ports::UsageChange> usage;
    if (step.ends_parent && rules.counts_quota) {
      // The release goes with the very write that ends the group, so it happens exactly once
      // (the write expects the status it leaves). A group's project never changes.
      auto parent = store.Get(rules.parent_table, parent_id);
      if (!parent) {
        if (parent.error().code == ErrorCode::kNotFound) {
          return {};
        }
        return tl::unexpected(parent.error());
      }
      usage =
          QuotaService::Release(TextOr(*parent, "project_id", ""), QuotaService::UsageOfGroup());
    }
    auto updated =
        store.ConditionalUpdateWithUsage(rules.parent_table,
                                         parent_id,
                                         step.values,
                                         {Expectation::Equals("deleted", std::int64_t{0}),
                                          Expectation::Equals("status", Text(step.from))},
                                         step.guards,
                                         usage);
    if (!updated) {
      return tl::unexpected(updated.error());
    }
    if (updated->has_value()) {
      return {};  // Done: every later step expects a status this one just left.
    }
  }
  return {};
}

}  // namespace

Result<void> TryCompleteGroup(ports::StateStore& store,
                              const ports::Clock& clock,
                              const std::string& group_id) {
  using domain::VolumeStatus;
  static const MemberRules kRules = {
      ports::Table::kGroups,
      ports::Table::kVolumes,
      "group_id",
      /*counts_quota=*/true,
      {Status(VolumeStatus::kCreatingQueued), Status(VolumeStatus::kCreating)},
      {Status(VolumeStatus::kDeletingQueued), Status(VolumeStatus::kDeleting)},
      Status(VolumeStatus::kError)};
  return TryComplete(store, clock, kRules, group_id);
}

Result<void> TryCompleteGroupSnapshot(ports::StateStore& store,
                                      const ports::Clock& clock,
                                      const std::string& group_snapshot_id) {
  using domain::SnapshotStatus;
  static const MemberRules kRules = {
      ports::Table::kGroupSnapshots,
      ports::Table::kSnapshots,
      "group_snapshot_id",
      /*counts_quota=*/false,
      {Status(SnapshotStatus::kCreatingQueued), Status(SnapshotStatus::kCreating)},
      {Status(SnapshotStatus::kDeletingQueued), Status(SnapshotStatus::kDeleting)},
      Status(SnapshotStatus::kError)};
  return TryComplete(store, clock, kRules, group_snapshot_id);
}

}  // namespace clinker::services
