// SqliteStateStore: the StateStore port (ports/state_store.h) on one SQLite database file.
//
// Contract (beyond the port's):
// - Owns 1 + kReaders sqlite::Database connections: one for writes, the others for reads (Get,
//   List, taken in turn), so that a read never queues behind a write transaction of the same
//   instance (WAL readers do not block on writers) and the API's concurrent reads (status polls)
//   do not all queue on one connection. Thread safe: calls on one connection are serialised by its
//   mutex; several instances, in one or many processes, may open the same file and every method
//   stays atomic across them (each write is one BEGIN IMMEDIATE transaction, and ConditionalUpdate
//   is a single UPDATE ... RETURNING inside it; usage changes are statements of the same
//   transaction, rolled back with it when one is refused).
// - Blocking: every method waits for the file lock (busy_timeout), retrying a busy transaction up
//   to busy_retries_max times; past that it returns kUnavailable.
// - Open creates the file and applies the "state" migrations (recorded in schema_migrations);
//   opening an up-to-date file applies nothing, and concurrent opens are safe.
// - Caller-supplied column names are checked against ports/state_schema.h before any SQL text is
//   built, and every value is a bound parameter, so nothing a caller supplies reaches SQL text.
// - Values in expectations and filters must be non-NULL and of the column's type
//   (kInvalidArgument): NULL is asked for with kIsNull / kIsNotNull.
// - List: with no sort keys the order is `id` ascending. NULL text sorts as '' and NULL integers
//   as 0 (the same order as MemoryStateStore). ConditionalUpdate with no values changes nothing
//   and returns the row if every condition holds (an atomic check). `id` cannot be updated.
// - Never returns kOutcomeUnknown: a local SQLite commit either happened or did not.
// - Never carry an instance across fork(): open a new one in the child.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "clinker/adapters/sqlite/sqlite_database.h"
#include "clinker/core/error.h"
#include "clinker/ports/state_store.h"

namespace clinker::adapters {

class SqliteStateStore final : public ports::StateStore {
 public:
  // Opens (creating if needed) options.path and migrates it. kInvalidArgument for bad options;
  // kUnavailable if the file cannot be opened or stayed locked; kInternal otherwise.
  static Result<std::unique_ptr<SqliteStateStore>> Open(const sqlite::Database::Options& options);

  // The SQL text of each "state" migration, version N at index N-1. Exposed for tests.
  static std::span<const std::string_view> Migrations();

  SqliteStateStore(const SqliteStateStore&) = delete;
  SqliteStateStore& operator=(const SqliteStateStore&) = delete;
  ~SqliteStateStore() override = default;

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
  static constexpr int kReaders = 4;

  SqliteStateStore(std::unique_ptr<sqlite::Database> db,
                   std::vector<std::unique_ptr<sqlite::Database>> readers);
  sqlite::Database& Reader();

  std::unique_ptr<sqlite::Database> db_;
  const std::vector<std::unique_ptr<sqlite::Database>> readers_;
  std::atomic<std::size_t> next_reader_{0};
};

}  // namespace clinker::adapters
