// PostgresStateStore: the StateStore port (ports/state_store.h) on a PostgreSQL (15) server, for
// Active/Active deployments where every node shares one database.
//
// Contract (beyond the port's):
// - Thread safe: a pool of `connections` libpqxx connections, each used by one thread at a time
//   (a caller waits for a free one). Any number of instances, in any number of processes, may use
//   one database; every method stays atomic across all of them.
// - Isolation: Insert and ConditionalUpdate run as SERIALIZABLE transactions. A guard is a
//   NOT EXISTS subquery, and under READ COMMITTED (or REPEATABLE READ) PostgreSQL does not
//   re-check a subquery against rows other transactions commit meanwhile, so a guarded update
//   could miss a reference being created concurrently (write skew). SERIALIZABLE makes the
//   engine abort one side instead (SQLSTATE 40001/40P01), and the adapter retries it. Get, and
//   List without a marker, are one autocommit statement; List with a marker is one REPEATABLE
//   READ read-only transaction, so the marker and the page come from one snapshot.
// - Blocking: each method blocks until the server answers (row locks included). Serialization
//   failures, deadlocks and broken connections before COMMIT was sent are retried up to
//   retries_max times with jittered exponential backoff; past that, kUnavailable. A broken pooled
//   connection is replaced by a new one on its next use.
// - Errors: kInvalidArgument as the port says, also for text the server cannot store (a NUL
//   byte, invalid UTF-8 in a UTF8 database); kConflict for a duplicate id (unique_violation);
//   kUnavailable when not applied; kOutcomeUnknown when the connection broke while COMMIT of a
//   write was in flight (re-read before deciding); kInternal for anything the adapter does not
//   understand (message carries the SQLSTATE).
// - Open connects (retrying until connect_timeout has passed; libpq's own per-attempt timeout
//   has a 2 s floor), then applies the "state" migrations under a transaction-level advisory
//   lock, so many processes may open a fresh database at once. Each applied version is recorded
//   once in schema_migrations(component, version, applied_at); versions newer than this build
//   are left alone (migrations only add), so older nodes keep running during a rolling upgrade.
// - Same semantics as SqliteStateStore: values are bound parameters, identifiers come only from
//   ports/state_schema.h; with no sort keys the order is `id` ascending; NULL text sorts as '' and
//   NULL integers as 0; text compares and sorts byte-wise (COLLATE "C"); ConditionalUpdate with
//   no values is an atomic check; `id` cannot be updated.
// - Messages name the server as host:port, never the URI (it may carry a password).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/state_store.h"

namespace clinker::adapters {

class PostgresStateStore final : public ports::StateStore {
 public:
  struct Options {
    // A libpq connection URI (postgresql://user[:password]@host:port/dbname?...) or key=value
    // string.
    std::string uri;
    // Pool size: the most statements this instance runs at once.
    int connections = 4;
    // Open's budget for the first connection; also each later connection attempt's limit
    // (libpq connect_timeout, whole seconds, at least 2).
    std::chrono::milliseconds connect_timeout{5000};
    // Retries of one call after a transient failure (serialization failure, deadlock, broken
    // connection before COMMIT).
    int retries_max = 10;
  };

  // Connects and migrates. kInvalidArgument for bad options; kUnavailable if the server cannot
  // be reached within connect_timeout (the message names host and port) or stays busy;
  // kInternal otherwise.
  static Result<std::unique_ptr<PostgresStateStore>> Open(const Options& options);

  // The SQL text of each "state" migration, version N at index N-1. Exposed for tests.
  static std::span<const std::string_view> Migrations();

  PostgresStateStore(const PostgresStateStore&) = delete;
  PostgresStateStore& operator=(const PostgresStateStore&) = delete;
  ~PostgresStateStore() override;

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
  class Pool;

  explicit PostgresStateStore(std::unique_ptr<Pool> pool);

  Result<void> Migrate();

  std::unique_ptr<Pool> pool_;
};

}  // namespace clinker::adapters
