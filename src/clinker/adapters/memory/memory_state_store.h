// MemoryStateStore: the StateStore port (ports/state_store.h) in process memory, a faithful fake
// for service unit tests. It passes the same contract tests as SqliteStateStore
// (test/contract/state_store_contract_test.cc), so a service tested on it behaves the same on
// SQLite.
//
// Contract (beyond the port's):
// - Thread safe: one mutex makes every method atomic. Never blocks on anything but that mutex;
//   never returns kUnavailable or kOutcomeUnknown. Nothing survives the instance.
// - Same validation as SqliteStateStore, through ports/state_schema.h: unknown columns and values
//   of the wrong type are kInvalidArgument; values in expectations and filters must be non-NULL;
//   `id` cannot be updated.
// - Same order: with no sort keys, `id` ascending; NULL text sorts as '' and NULL integers as 0;
//   text compares byte-wise (as SQLite's BINARY collation).
// - ConditionalUpdate with no values changes nothing and returns the row if every condition
//   holds.
// - Usage changes are checked and applied under the same mutex as the write they go with.
// - Live-unique columns (ports/state_schema.h) are checked under the same mutex, before the
//   write: a conflicting Insert or ConditionalUpdate is kConflict and changes nothing.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/state_store.h"

namespace clinker::adapters {

class MemoryStateStore final : public ports::StateStore {
 public:
  MemoryStateStore() = default;
  MemoryStateStore(const MemoryStateStore&) = delete;
  MemoryStateStore& operator=(const MemoryStateStore&) = delete;
  ~MemoryStateStore() override = default;

  Result<void> Insert(ports::Table table, const ports::Row& row) override;
  Result<ports::Row> Get(ports::Table table, std::string_view id) override;
  Result<std::vector<ports::Row>> List(ports::Table table, const ports::ListQuery& query) override;
  Result<std::optional<ports::Row>> ConditionalUpdate(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards) override;
  Result<void> InsertWithUsage(ports::Table table,
                               const ports::Row& row,
                               const std::vector<ports::UsageChange>& usage) override;
  Result<std::optional<ports::Row>> ConditionalUpdateWithUsage(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override;

 private:
  using Rows = std::map<std::string, ports::Row, std::less<>>;

  Rows& RowsOf(ports::Table table);
  // kConflict if `row` is live and another live row (not `id`) of the table has its value in a
  // live-unique column. Called with mutex_ held.
  Result<void> CheckLiveUnique(ports::Table table, std::string_view id, const ports::Row& row);
  // Applies every usage change, or none and kQuotaExceeded. Called with mutex_ held, after every
  // other check of the write passed and before the write itself.
  Result<void> ApplyUsage(const std::vector<ports::UsageChange>& usage);

  std::mutex mutex_;
  Rows volumes_;
  Rows snapshots_;
  Rows services_;
  Rows clusters_;
  Rows attachments_;
  Rows backups_;
  Rows transfers_;
  Rows messages_;
  Rows volume_types_;
  Rows volume_type_access_;
  Rows qos_specs_;
  Rows quota_usages_;
  Rows quotas_;
  Rows quota_classes_;
  Rows group_types_;
  Rows groups_;
  Rows group_snapshots_;
  Rows pool_capacity_;
};

}  // namespace clinker::adapters
