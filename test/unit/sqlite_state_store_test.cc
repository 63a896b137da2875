// SqliteStateStore specifics that the shared contract tests cannot show.
//
// Goal: atomicity across separate connections to one file (as separate processes would have),
// durability across close and reopen, migration bookkeeping (applied once, safe when several
// stores open a fresh file at once), migration 1 matching ports/state_schema.cc, and a database
// locked past the retry budget surfacing as kUnavailable.
//
// Method: each test works in a fresh temporary directory (removed afterwards). The race test
// gives each of 16 threads its own SqliteStateStore on the same file and releases them together
// with a barrier for 100 rounds, counting winners per round. Bookkeeping is read back through a
// separate sqlite::Database connection.
#include "clinker/adapters/sqlite/sqlite_state_store.h"

#include <atomic>
#include <barrier>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <stdlib.h>

#include "clinker/adapters/sqlite/sqlite_database.h"
#include "clinker/ports/state_schema.h"

#include "support/temp_dir.h"

namespace clinker::adapters {
namespace {

using ports::Expectation;
using ports::Row;
using ports::Table;
using ports::Value;

using clinker::test_support::TempDir;

class SqliteStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed"; }

  sqlite::Database::Options Options() const {
    sqlite::Database::Options options;
    options.path = dir_.path() + "/state.db";
    return options;
  }

  std::unique_ptr<SqliteStateStore> MustOpen() {
    auto store = SqliteStateStore::Open(Options());
    EXPECT_TRUE(store) << store.error().ToString();
    return store ? std::move(*store) : nullptr;
  }

  // Rows of a query on a separate connection, for checking what is on disk.
  std::vector<Row> Query(const std::string& sql) {
    std::vector<Row> rows;
    auto db = sqlite::Database::Open(Options());
    EXPECT_TRUE(db) << db.error().ToString();
    if (!db) {
      return rows;
    }
    auto read = [&](sqlite::Database& database) -> Result<void> {
      CLINKER_ASSIGN_OR_RETURN(sqlite::Statement statement, database.Prepare(sql));
      for (int i = 0; i < 100000; ++i) {
        CLINKER_ASSIGN_OR_RETURN(bool has_row, statement.Step());
        if (!has_row) {
          break;
        }
        rows.push_back(statement.RowValue());
      }
      return {};
    };
    auto result = (*db)->Read(read);
    EXPECT_TRUE(result) << result.error().ToString();
    return rows;
  }

  TempDir dir_;
};

Row Volume(const std::string& id) {
  return Row{{"id", id},
             {"project_id", std::string("p1")},
             {"user_id", std::string("u1")},
             {"status", std::string("available")},
             {"created_at", std::string("2024-01-01T00:00:00.000000")}};
}

Value Text(const char* text) {
  return Value(std::string(text));
}

TEST_F(SqliteStateStoreTest, OneWinnerPerRoundAmongSixteenConnections) {
  constexpr int kThreads = 16;
  constexpr int kRounds = 100;
  std::unique_ptr<SqliteStateStore> setup = MustOpen();
  ASSERT_NE(setup, nullptr);
  std::vector<std::unique_ptr<SqliteStateStore>> stores;
  for (int t = 0; t < kThreads; ++t) {
    stores.push_back(MustOpen());
    ASSERT_NE(stores.back(), nullptr);
  }

  std::atomic<int> winners{0};
  std::atomic<int> errors{0};
  std::string round_id;
  std::barrier sync(kThreads + 1);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        sync.arrive_and_wait();
        auto updated = stores[t]->ConditionalUpdate(
            Table::kVolumes,
            round_id,
            {{"status", Text("deleting_queued")}, {"operation_id", Value(std::to_string(t))}},
            {Expectation::Equals("status", Text("available"))},
            {});
        if (!updated) {
          errors.fetch_add(1);
        } else if (updated->has_value()) {
          winners.fetch_add(1);
        }
        sync.arrive_and_wait();
      }
    });
  }
  int bad_rounds = 0;
  for (int round = 0; round < kRounds; ++round) {
    round_id = "race-" + std::to_string(round);
    winners.store(0);
    auto inserted = setup->Insert(Table::kVolumes, Volume(round_id));
    EXPECT_TRUE(inserted) << inserted.error().ToString();
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    if (winners.load() != 1) {
      ++bad_rounds;
    }
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(bad_rounds, 0);
  EXPECT_EQ(errors.load(), 0);
  ports::ListQuery queued;
  queued.filters = {Expectation::Equals("status", Text("deleting_queued"))};
  auto rows = setup->List(Table::kVolumes, queued);
  ASSERT_TRUE(rows) << rows.error().ToString();
  EXPECT_EQ(rows->size(), static_cast<std::size_t>(kRounds));
}

TEST_F(SqliteStateStoreTest, DataSurvivesCloseAndReopen) {
  Row stored;
  {
    std::unique_ptr<SqliteStateStore> store = MustOpen();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Insert(Table::kVolumes, Volume("v1")));
    auto updated = store->ConditionalUpdate(
        Table::kVolumes, "v1", {{"host", Text("h1")}}, {Expectation::IsNull("host")}, {});
    ASSERT_TRUE(updated && updated->has_value());
    stored = **updated;
  }
  std::unique_ptr<SqliteStateStore> reopened = MustOpen();
  ASSERT_NE(reopened, nullptr);
  auto row = reopened->Get(Table::kVolumes, "v1");
  ASSERT_TRUE(row) << row.error().ToString();
  EXPECT_EQ(*row, stored);
  EXPECT_EQ(row->at("host"), Text("h1"));
}

TEST_F(SqliteStateStoreTest, MigrationIsRecordedOnceAndNotReapplied) {
  { ASSERT_NE(MustOpen(), nullptr); }
  std::vector<Row> first = Query(
      "SELECT component, version, applied_at FROM schema_migrations WHERE component = 'state'");
  // One row per migration, versions 1..N in order.
  ASSERT_EQ(first.size(), SqliteStateStore::Migrations().size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].at("version"), Value(static_cast<std::int64_t>(i + 1)));
    EXPECT_FALSE(std::get<std::string>(first[i].at("applied_at")).empty());
  }

  // Reopening with a row present: a re-applied migration 1 would fail on CREATE TABLE or lose
  // the row.
  {
    std::unique_ptr<SqliteStateStore> store = MustOpen();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Insert(Table::kVolumes, Volume("v1")));
  }
  std::unique_ptr<SqliteStateStore> again = MustOpen();
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->Get(Table::kVolumes, "v1"));
  std::vector<Row> second = Query(
      "SELECT component, version, applied_at FROM schema_migrations WHERE component = 'state'");
  EXPECT_EQ(second, first);
}

// Migration 13 starts the pools' allocated capacity from the volumes already placed (a failed
// create holds nothing) and the `groups` quota counters from the live groups.
TEST_F(SqliteStateStoreTest, Migration13CountsPlacedVolumesAndLiveGroups) {
  {
    auto db = sqlite::Database::Open(Options());
    ASSERT_TRUE(db) << db.error().ToString();
    ASSERT_TRUE((*db)->Migrate("state", SqliteStateStore::Migrations().first(12)));
    auto seeded = (*db)->WriteTransaction([](sqlite::Database& database) -> Result<void> {
      return database.Exec(
          "INSERT INTO volumes (id, project_id, user_id, status, size_gib, host, created_at, "
          "deleted) VALUES "
          "('v1', 'p1', 'u', 'available', 3, 'h@file#default', 't', 0), "
          "('v2', 'p1', 'u', 'in-use', 4, 'h@file#default', 't', 0), "
          "('v3', 'p1', 'u', 'error', 5, 'h@file#default', 't', 0), "
          "('v4', 'p1', 'u', 'deleted', 6, 'h@file#default', 't', 1), "
          "('v5', 'p1', 'u', 'error', 7, NULL, 't', 0);"
          "INSERT INTO \"groups\" (id, project_id, user_id, status, group_type_id, created_at, "
          "deleted) VALUES ('g1', 'p1', 'u', 'available', 'gt', 't', 0), "
          "('g2', 'p1', 'u', 'available', 'gt', 't', 0), "
          "('g3', 'p2', 'u', 'deleted', 'gt', 't', 1);");
    });
    ASSERT_TRUE(seeded) << seeded.error().ToString();
  }
  std::unique_ptr<SqliteStateStore> store = MustOpen();
  ASSERT_NE(store, nullptr);
  auto pool = store->Get(Table::kPoolCapacity, "h@file#default");
  ASSERT_TRUE(pool) << pool.error().ToString();
  EXPECT_EQ(pool->at("allocated_capacity_gb"), Value(std::int64_t{7}));
  EXPECT_EQ(store->Get(Table::kVolumes, "v2")->at("capacity_reserved_gib"), Value(std::int64_t{4}));
  EXPECT_EQ(store->Get(Table::kVolumes, "v3")->at("capacity_reserved_gib"), Value(std::int64_t{0}));
  auto groups = store->Get(Table::kQuotaUsages, ports::UsageCounterId("p1", "groups"));
  ASSERT_TRUE(groups) << groups.error().ToString();
  EXPECT_EQ(groups->at("in_use"), Value(std::int64_t{2}));
  EXPECT_FALSE(store->Get(Table::kQuotaUsages, ports::UsageCounterId("p2", "groups")));
}

TEST_F(SqliteStateStoreTest, StoresOpeningAFreshFileTogetherMigrateOnce) {
  constexpr int kOpeners = 8;
  std::barrier sync(kOpeners);
  std::vector<std::future<Result<std::unique_ptr<SqliteStateStore>>>> opened;
  opened.reserve(kOpeners);
  for (int i = 0; i < kOpeners; ++i) {
    opened.push_back(std::async(std::launch::async, [&] {
      sync.arrive_and_wait();
      return SqliteStateStore::Open(Options());
    }));
  }
  std::vector<std::unique_ptr<SqliteStateStore>> stores;
  for (auto& future : opened) {
    ASSERT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    auto store = future.get();
    ASSERT_TRUE(store) << store.error().ToString();
    stores.push_back(std::move(*store));
  }
  EXPECT_EQ(Query("SELECT version FROM schema_migrations WHERE component = 'state'").size(),
            SqliteStateStore::Migrations().size());
  // They share one database: what one writes, another reads.
  ASSERT_TRUE(stores[0]->Insert(Table::kVolumes, Volume("v1")));
  auto row = stores[kOpeners - 1]->Get(Table::kVolumes, "v1");
  ASSERT_TRUE(row) << row.error().ToString();
  EXPECT_EQ(row->at("status"), Text("available"));
}

// Migrations are frozen SQL text; this catches a schema entry added without a migration (or the
// reverse), and a type, nullability or default that drifted.
TEST_F(SqliteStateStoreTest, MigratedTablesMatchTheSchema) {
  { ASSERT_NE(MustOpen(), nullptr); }
  for (Table table : {Table::kVolumes,
                      Table::kSnapshots,
                      Table::kServices,
                      Table::kClusters,
                      Table::kGroupTypes,
                      Table::kGroups,
                      Table::kGroupSnapshots,
                      Table::kPoolCapacity}) {
    SCOPED_TRACE(std::string(ports::TableName(table)));
    std::vector<Row> info =
        Query("SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info('" +
              std::string(ports::TableName(table)) + "') ORDER BY cid");
    auto columns = ports::Columns(table);
    ASSERT_EQ(info.size(), columns.size());
    for (std::size_t i = 0; i < columns.size(); ++i) {
      const ports::ColumnSpec& spec = columns[i];
      SCOPED_TRACE(std::string(spec.name));
      EXPECT_EQ(info[i].at("name"), Value(std::string(spec.name)));
      EXPECT_EQ(info[i].at("type"),
                Text(spec.type == ports::ColumnType::kText ? "TEXT" : "INTEGER"));
      EXPECT_EQ(info[i].at("notnull"), Value(std::int64_t{spec.nullable ? 0 : 1}));
      Value expected_default;
      if (!spec.nullable && !spec.default_value.empty()) {
        expected_default = spec.type == ports::ColumnType::kText
                               ? Value("'" + std::string(spec.default_value) + "'")
                               : Value(std::string(spec.default_value));
      }
      EXPECT_EQ(info[i].at("dflt_value"), expected_default);
    }
  }
}

TEST_F(SqliteStateStoreTest, LockedPastTheRetryBudgetIsUnavailable) {
  std::unique_ptr<SqliteStateStore> setup = MustOpen();
  ASSERT_NE(setup, nullptr);
  sqlite::Database::Options impatient = Options();
  impatient.busy_timeout = std::chrono::milliseconds(20);
  impatient.busy_retries_max = 2;
  auto store = SqliteStateStore::Open(impatient);
  ASSERT_TRUE(store) << store.error().ToString();
  auto holder = sqlite::Database::Open(Options());
  ASSERT_TRUE(holder) << holder.error().ToString();

  // Hold the write lock in another connection until the impatient store has given up.
  std::promise<void> locked;
  std::promise<void> release;
  std::future<void> release_future = release.get_future();
  std::thread holder_thread([&] {
    auto hold = [&](sqlite::Database&) -> Result<void> {
      locked.set_value();
      release_future.wait_for(std::chrono::seconds(10));
      return {};
    };
    auto result = (*holder)->WriteTransaction(hold);
    EXPECT_TRUE(result) << result.error().ToString();
  });
  locked.get_future().wait();
  // Readers are not blocked by a writer in WAL mode.
  auto read = setup->Get(Table::kVolumes, "v0");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, ErrorCode::kNotFound) << read.error().ToString();
  auto start = std::chrono::steady_clock::now();
  auto blocked = (*store)->Insert(Table::kVolumes, Volume("v1"));
  auto waited = std::chrono::steady_clock::now() - start;
  release.set_value();
  holder_thread.join();

  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().code, ErrorCode::kUnavailable) << blocked.error().ToString();
  // Three attempts of about 20 ms each, plus small pauses: bounded well below the holder's 10 s.
  EXPECT_GE(waited, std::chrono::milliseconds(40));
  EXPECT_LT(waited, std::chrono::seconds(5));
  // Nothing was written, and with the lock free again the same call succeeds.
  EXPECT_FALSE(setup->Get(Table::kVolumes, "v1"));
  EXPECT_TRUE((*store)->Insert(Table::kVolumes, Volume("v1")));
  EXPECT_TRUE(setup->Get(Table::kVolumes, "v1"));
}

TEST_F(SqliteStateStoreTest, BadOptionsAreInvalid) {
  sqlite::Database::Options options = Options();
  options.synchronous = "normal; DROP TABLE volumes";
  auto store = SqliteStateStore::Open(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kInvalidArgument);
  options = Options();
  options.path.clear();
  store = SqliteStateStore::Open(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(SqliteStateStoreTest, UnopenablePathIsUnavailable) {
  sqlite::Database::Options options = Options();
  options.path = dir_.path() + "/no/such/dir/state.db";
  auto store = SqliteStateStore::Open(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable) << store.error().ToString();
}

}  // namespace
}  // namespace clinker::adapters
