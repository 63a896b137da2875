// Quotas: Cinder's per-project limits, and usage counters that cannot drift.
//
// Limits, as Cinder's DbQuotaDriver: a project's own row (quotas) if any, else the class
// "default" (quota_classes), else the configured default ([quota] in clinkerd.conf). Resources are
// Cinder's: volumes, snapshots, gigabytes, backups, backup_gigabytes, groups,
// per_volume_gigabytes, and per volume type volumes_<name>, gigabytes_<name>, snapshots_<name>
// (default -1, unlimited).
//
// Usage: one counter per (project, resource) in quota_usages, changed only by the usage changes
// (ports::UsageChange) of the very write that creates, deletes, resizes or moves what it counts
// (InsertWithUsage / ConditionalUpdateWithUsage), so a race or a crash between two writes cannot
// leave a counter that disagrees with the rows. What a row counts is defined once, here
// (UsageOfVolume, UsageOfSnapshot, UsageOfBackup), and used both by the writes and by the
// recount of `clinkerd quota check` / `sync` (RecountUsage):
// - a live (deleted = 0) volume: volumes 1, gigabytes its size (the size an extend grows it to
//   while one is queued or under way), and the same under its type's volumes_<t>, gigabytes_<t>;
// - a live snapshot: snapshots 1 and gigabytes its size (unless no_snapshot_gb_quota), and the
//   same under its volume's type's snapshots_<t>, gigabytes_<t>;
// - a live backup: backups 1, backup_gigabytes its size;
// - a live group: groups 1 (charged by its insert, released by the write that soft-deletes it).
// So a volume in error counts until it is deleted, as in Cinder.
//
// Thread safe (no mutable state of its own); every method blocks on the StateStore.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/state_store.h"

namespace clinker::services {

// The [quota] section: Cinder's quota_* options and no_snapshot_gb_quota.
struct QuotaOptions {
  std::int64_t volumes = 10;
  std::int64_t snapshots = 10;
  std::int64_t gigabytes = 1000;
  std::int64_t backups = 10;
  std::int64_t backup_gigabytes = 1000;
  std::int64_t groups = 10;
  std::int64_t per_volume_gigabytes = -1;  // Cinder's per_volume_size_limit.
  bool no_snapshot_gb_quota = false;

  // Every limit -1: for callers whose subject is not quotas (tests of races with many volumes).
  static QuotaOptions Unlimited() { return QuotaOptions{-1, -1, -1, -1, -1, -1, -1, false}; }
};

// Resource name -> value (a limit, or a count).
using QuotaMap = std::map<std::string, std::int64_t, std::less<>>;

// Cinder's class whose limits every project falls back to.
inline constexpr std::string_view kDefaultQuotaClass = "default";

// Largest limit Cinder accepts (its db.MAX_INT).
inline constexpr std::int64_t kMaxQuotaLimit = 0x7FFFFFFF;

// Counts of one project's resources, as deltas (all positive, or all negated with `sign` -1).
struct UsageAmounts {
  std::vector<std::pair<std::string, std::int64_t>> deltas;

  void Add(std::string resource, std::int64_t delta) {
    deltas.emplace_back(std::move(resource), delta);
  }
};

class QuotaService {
 public:
  QuotaService(ports::StateStore& store, QuotaOptions options);

  const QuotaOptions& options() const { return options_; }

  // The names of every resource today: the fixed ones and the per-type ones of live types.
  Result<std::vector<std::string>> ResourceNames();
  bool IsKnownResource(const std::vector<std::string>& names, std::string_view resource) const;

  // Configured defaults overridden by the class "default": Cinder's get_defaults.
  Result<QuotaMap> Defaults();
  // A class's limits: its rows over the defaults (Cinder's get_class_quotas).
  Result<QuotaMap> ClassLimits(std::string_view class_name);
  // A project's limits: its rows over Defaults().
  Result<QuotaMap> ProjectLimits(std::string_view project_id);
  // Only the project's own rows (Cinder's defaults=False).
  Result<QuotaMap> ProjectRows(std::string_view project_id);
  // The project's counters (resources never counted are absent: 0).
  Result<QuotaMap> ProjectUsage(std::string_view project_id);

  // Sets (creates or revives) a project's or a class's limit of one resource.
  Result<void> SetProjectLimit(std::string_view project_id,
                               std::string_view resource,
                               std::int64_t limit,
                               const std::string& now);
  Result<void> SetClassLimit(std::string_view class_name,
                             std::string_view resource,
                             std::int64_t limit,
                             const std::string& now);
  // Removes every limit row of a project (back to the defaults).
  Result<void> DeleteProjectLimits(std::string_view project_id, const std::string& now);

  // The usage changes for `amounts` of `project_id` with the project's current limits, to pass
  // to InsertWithUsage / ConditionalUpdateWithUsage. Negative deltas carry no limit.
  Result<std::vector<ports::UsageChange>> Charge(std::string_view project_id,
                                                 const UsageAmounts& amounts);
  // Charge with limits already read.
  static std::vector<ports::UsageChange> ChargeWithLimits(const QuotaMap& limits,
                                                          std::string_view project_id,
                                                          const UsageAmounts& amounts);
  // The same for releases (every delta negated; no limits needed, nothing read).
  static std::vector<ports::UsageChange> Release(std::string_view project_id,
                                                 const UsageAmounts& amounts);

  // What a live row counts (see the header). The type name is looked up by id (nullopt or a
  // missing type: no per-type counters).
  Result<UsageAmounts> UsageOfVolume(std::int64_t size_gib,
                                     const std::optional<std::string>& volume_type_id);
  Result<UsageAmounts> UsageOfSnapshot(std::int64_t size_gib, std::string_view volume_id);
  static UsageAmounts UsageOfBackup(std::int64_t size_gib);
  // What a live group counts (groups 1): charged when the groups API inserts a group, released
  // by the write that soft-deletes it (group_completion, or the API undoing a create).
  static UsageAmounts UsageOfGroup();
  // The counters an extend by `delta_gib` adds (gigabytes and gigabytes_<type>).
  Result<UsageAmounts> UsageOfExtend(std::int64_t delta_gib,
                                     const std::optional<std::string>& volume_type_id);

  // Every project's usage recounted from the live rows: project -> resource -> count.
  Result<std::map<std::string, QuotaMap, std::less<>>> RecountUsage();
  // Every stored counter: project -> resource -> in_use.
  Result<std::map<std::string, QuotaMap, std::less<>>> StoredUsage();

  // The type's name, nullopt for none or a missing type.
  Result<std::optional<std::string>> TypeName(const std::optional<std::string>& volume_type_id);

 private:
  Result<QuotaMap> RowsOf(ports::Table table, std::string_view key_column, std::string_view key);
  Result<void> SetLimit(ports::Table table,
                        std::string_view key_column,
                        std::string_view key,
                        std::string_view resource,
                        std::int64_t limit,
                        const std::string& now);

  ports::StateStore& store_;
  QuotaOptions options_;
};

// Cinder's 413 message for a refused usage change (VolumeLimitExceeded,
// VolumeSizeExceedsAvailableQuota, SnapshotLimitExceeded, BackupLimitExceeded,
// VolumeBackupSizeExceedsAvailableQuota, GroupLimitExceeded), from a kQuotaExceeded error.
std::string QuotaExceededMessage(const ports::QuotaExceededInfo& info);

}  // namespace clinker::services
