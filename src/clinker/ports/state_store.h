// StateStore: durable rows for volumes and snapshots (and the services and clusters that report
// heartbeats), with a conditional update (compare-and-swap) that is the only way services change
// a resource's status.
//
// Contract, for every adapter (checked by test/contract/state_store_contract_test.cc):
// - Thread safe: one instance may be shared by any number of threads. Several instances (and
//   processes) may open the same database; every method is atomic across all of them.
// - Blocking: every method blocks until the engine answers. Transient engine contention (SQLite
//   SQLITE_BUSY, PostgreSQL 40001/40P01, a lost connection before the statement was sent) is
//   retried inside the adapter with a bounded budget; past it the method returns kUnavailable.
// - Errors: kInvalidArgument for a column not in the schema (ports/state_schema.h) or a value of
//   the wrong type; kNotFound for a missing id (Get) or an unknown marker (List); kConflict for an
//   Insert whose id exists, and for an Insert or ConditionalUpdate that would give two live
//   (deleted = 0) rows the same value in a live-unique column (ports/state_schema.h,
//   LiveUniqueColumns: a volume type's name), which then changes nothing; kUnavailable (not
//   applied, retry) and kOutcomeUnknown (the engine went away after the statement was sent: re-read
//   before deciding) for engine failures; kQuotaExceeded (nothing changed) for a write whose usage
//   changes would take a counter past its limit (InsertWithUsage, ConditionalUpdateWithUsage).
// - Usage counters (quota_usages) change only together with the write that creates, deletes or
//   resizes what they count, in one atomic engine write, so they cannot drift from the rows after
//   races or crashes (docs/ARCHITECTURE.md, "Quotas").
// - Rows are never removed: deleting a resource is a conditional update that sets `deleted` = 1
//   (soft delete, as Cinder does), so a late duplicate job still finds the row and its history.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "clinker/core/error.h"

namespace clinker::ports {

// std::monostate is SQL NULL.
using Value = std::variant<std::monostate, std::int64_t, std::string>;
using Row = std::map<std::string, Value, std::less<>>;

enum class Table {
  kVolumes,
  kSnapshots,
  kServices,
  kClusters,
  kAttachments,
  kBackups,
  kTransfers,
  kMessages,
  kVolumeTypes,
  kVolumeTypeAccess,
  // Quotas (migration 9): per-project usage counters, per-project limits, per-class limits.
  kQuotaUsages,
  kQuotas,
  kQuotaClasses,
  kQosSpecs,
  // Generic volume groups (migration 11).
  kGroupTypes,
  kGroups,
  kGroupSnapshots,
  // Per back-end pool allocated capacity, changed only by kPoolCapacity usage changes
  // (migration 13).
  kPoolCapacity,
};

// One change of a usage counter, applied atomically with a write (InsertWithUsage,
// ConditionalUpdateWithUsage). The counter (ports/state_schema.h, CounterOf) is, by `counter`:
// - kQuotaUsage: the quota_usages row UsageCounterId(project_id, resource), column in_use;
// - kPoolCapacity: the pool_capacity row `resource` (a back-end pool's placement address
//   "<host or cluster>@<backend>#<pool>"), column allocated_capacity_gb; project_id is empty.
// A missing counter row is created at 0. A positive delta may not take the count above `limit`
// (a negative limit, Cinder's -1, is unlimited); a delta <= 0 is never refused (a release must
// always go through). Several changes of one call apply in order.
struct UsageChange {
  enum class Counter { kQuotaUsage, kPoolCapacity };

  std::string project_id;
  std::string resource;  // Cinder's name: volumes, gigabytes, snapshots, volumes_<type>, ...
  std::int64_t delta = 0;
  std::int64_t limit = -1;
  Counter counter = Counter::kQuotaUsage;
};

// "<project_id>/<resource>": the id of a quota_usages row (also of a quotas row).
std::string UsageCounterId(std::string_view project_id, std::string_view resource);

// What a kQuotaExceeded error says, so that the API can word Cinder's message. Adapters build the
// error with QuotaExceededError and callers read it back with ParseQuotaExceeded.
struct QuotaExceededInfo {
  std::string project_id;
  std::string resource;
  std::int64_t limit = 0;
  std::int64_t in_use = 0;     // Before the refused change.
  std::int64_t requested = 0;  // The refused delta.
};

Error QuotaExceededError(const QuotaExceededInfo& info);
// nullopt unless `error` is a kQuotaExceeded made by QuotaExceededError. For a kPoolCapacity
// change project_id is empty and resource is the pool.
std::optional<QuotaExceededInfo> ParseQuotaExceeded(const Error& error);

// One expected value of a conditional update or a filter of a list. All expectations of a call
// must hold together (AND). NULL never equals anything: use kIsNull / kIsNotNull for it, and
// kNotEquals / kNotIn hold for a NULL column (as in Cinder's conditional_update).
// kNullOrAtMost ("column IS NULL OR column <= value", integer columns only) is the fencing check:
// a write carrying fencing token t expects the stored token to be NULL or at most t.
struct Expectation {
  enum class Kind { kEquals, kIn, kNotEquals, kNotIn, kIsNull, kIsNotNull, kNullOrAtMost };

  std::string column;
  Kind kind = Kind::kEquals;
  std::vector<Value> values;  // One value for kEquals / kNotEquals, none for the null kinds.

  static Expectation Equals(std::string column, Value value);
  static Expectation In(std::string column, std::vector<Value> values);
  static Expectation NotEquals(std::string column, Value value);
  static Expectation NotIn(std::string column, std::vector<Value> values);
  static Expectation IsNull(std::string column);
  static Expectation IsNotNull(std::string column);
  static Expectation NullOrAtMost(std::string column, std::int64_t value);
};

// A condition on other rows, evaluated atomically with the update: "no live (deleted = 0) row of
// `table` has `column` equal to the id of the row being updated" and, when `where` is not empty,
// also matches every expectation in it. Examples: no snapshot references this volume; no volume
// still being created from this volume (source_volid = id, status in the creating statuses).
struct Guard {
  Table table = Table::kSnapshots;
  std::string column;
  std::vector<Expectation> where;  // On the referencing row; kNullOrAtMost is not allowed here.

  static Guard NoLiveRowReferences(Table table,
                                   std::string column,
                                   std::vector<Expectation> where = {});
};

struct SortKey {
  std::string column;
  bool ascending = false;
};

struct ListQuery {
  std::vector<Expectation> filters;
  // Applied in order; the adapter appends `id` (same direction as the last key) as the final
  // tie-breaker so pagination is stable. NULL text sorts as the empty string.
  std::vector<SortKey> sort;
  // Return rows strictly after this row in the sort order (keyset pagination). The marker row
  // must exist (deleted or not), else kNotFound.
  std::optional<std::string> marker_id;
  std::optional<std::int64_t> limit;
  bool include_deleted = false;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Inserts a new row; it must carry `id`. Missing nullable columns are NULL, missing columns
  // with defaults take them (ports/state_schema.h). kConflict if the id exists, or if the row is
  // live and a live row has its value in a live-unique column.
  virtual Result<void> Insert(Table table, const Row& row) = 0;

  // The whole row, deleted or not. kNotFound if no row has this id.
  virtual Result<Row> Get(Table table, std::string_view id) = 0;

  // Rows matching every filter, not deleted unless asked, in the requested order.
  virtual Result<std::vector<Row>> List(Table table, const ListQuery& query) = 0;

  // Atomically: if the row `id` exists and every expectation and guard holds, set `values` and
  // return the row as it is after the update; otherwise change nothing and return std::nullopt
  // (a missing row is also std::nullopt). kConflict (nothing changed) if the row would then be
  // live with the value of another live row in a live-unique column. Exactly one of any number of
  // racing callers whose expectations exclude each other's result wins. Idempotent only if the
  // caller's expectations make it so (e.g. expecting the old status).
  virtual Result<std::optional<Row>> ConditionalUpdate(Table table,
                                                       std::string_view id,
                                                       const Row& values,
                                                       const std::vector<Expectation>& expected,
                                                       const std::vector<Guard>& guards) = 0;

  // Insert, and atomically with it each usage change (UsageChange): all or nothing. Beyond
  // Insert's errors: kQuotaExceeded (QuotaExceededError, naming the first counter refused) and
  // nothing written; kInvalidArgument for a change with an empty project or resource.
  virtual Result<void> InsertWithUsage(Table table,
                                       const Row& row,
                                       const std::vector<UsageChange>& usage) = 0;

  // ConditionalUpdate, and atomically with it each usage change: applied only if the update
  // applies (an update whose expectations or guards fail returns std::nullopt and changes no
  // counter); kQuotaExceeded (nothing changed) if a change would pass its limit.
  virtual Result<std::optional<Row>> ConditionalUpdateWithUsage(
      Table table,
      std::string_view id,
      const Row& values,
      const std::vector<Expectation>& expected,
      const std::vector<Guard>& guards,
      const std::vector<UsageChange>& usage) = 0;
};

}  // namespace clinker::ports
