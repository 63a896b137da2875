// Contract tests for the StateStore port (ports/state_store.h).
//
// Goal: every adapter keeps the same promises, so services tested on MemoryStateStore behave the
// same on SqliteStateStore and PostgresStateStore: validation against ports/state_schema.h,
// Insert defaults, NULL semantics of each expectation kind, guards (with and without `where`
// conditions on the referencing rows), exactly one winner of a racing conditional update, and
// List order (byte-wise text, NULL as '' or 0) and keyset pagination.
//
// Method: one typed test suite, instantiated once per adapter. Each test gets a fresh store: the
// SQLite one in a fresh temporary directory (removed afterwards), the PostgreSQL one in a fresh
// database (CREATE DATABASE clinker_test_<random> on the server the CTest fixture "postgres"
// started, named in $CLINKER_TEST_SERVERS_DIR/postgres/env; dropped afterwards), so test
// processes can run in parallel. Without that server the PostgreSQL tests fail, saying how to
// start it; they never skip. Failed conditional updates are checked to leave the row exactly as
// it was. The race test runs 16 threads on one shared store for 100 rounds, released together by
// a barrier, and counts winners per round.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <stdlib.h>

#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/postgres/postgres_state_store.h"
#include "clinker/adapters/sqlite/sqlite_state_store.h"
#include "clinker/core/uuid.h"
#include "clinker/ports/state_schema.h"
#include "clinker/ports/state_store.h"

#include "support/temp_dir.h"
#include "support/test_servers.h"

namespace clinker::adapters {
namespace {

using ports::Expectation;
using ports::Guard;
using ports::ListQuery;
using ports::Row;
using ports::SortKey;
using ports::Table;
using ports::Value;

using clinker::test_support::TempDir;

// The URI of database `name` on the server of `uri` (same host, port, user and options).
std::string WithDatabase(const std::string& uri, const std::string& name) {
  std::size_t scheme = uri.find("://");
  if (scheme == std::string::npos) {
    return uri + " dbname=" + name;
  }
  std::size_t query = uri.find('?', scheme + 3);
  std::size_t path = uri.find('/', scheme + 3);
  if (path == std::string::npos || (query != std::string::npos && path > query)) {
    path = query == std::string::npos ? uri.size() : query;
  }
  std::string rest = query == std::string::npos ? "" : uri.substr(query);
  return uri.substr(0, path) + "/" + name + rest;
}

// A fresh database on the PostgreSQL test server, dropped (and any session left in it ended) on
// destruction. error() says why there is none.
class PostgresTestDatabase {
 public:
  PostgresTestDatabase() {
    std::optional<std::string> server =
        test_support::TestServerSetting("postgres", "CLINKER_TEST_PG_URI");
    if (!server) {
      std::string path = test_support::TestServerEnvPath("postgres");
      error_ = "no PostgreSQL test server: " +
               (path.empty() ? std::string("CLINKER_TEST_SERVERS_DIR is not set")
                             : "CLINKER_TEST_PG_URI not found in " + path) +
               ". Run these tests through ctest (its fixture servers.postgres.start runs "
               "scripts/test_server_postgres.sh), or run `scripts/test_server_postgres.sh start "
               "DIR/postgres` and export CLINKER_TEST_SERVERS_DIR=DIR.";
      return;
    }
    server_uri_ = *server;
    std::string name = "clinker_test_" + NewUuid();
    name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
    try {
      pqxx::connection connection(server_uri_);
      pqxx::nontransaction tx(connection);
      tx.exec("CREATE DATABASE " + tx.quote_name(name));
      name_ = name;
      uri_ = WithDatabase(server_uri_, name_);
    } catch (const std::exception& e) {
      error_ = "cannot create a test database on " + server_uri_ + ": " + e.what();
    }
  }

  PostgresTestDatabase(const PostgresTestDatabase&) = delete;
  PostgresTestDatabase& operator=(const PostgresTestDatabase&) = delete;

  ~PostgresTestDatabase() {
    if (name_.empty()) {
      return;
    }
    try {
      pqxx::connection connection(server_uri_);
      pqxx::nontransaction tx(connection);
      tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot drop test database " << name_ << ": " << e.what();
    }
  }

  const std::string& uri() const { return uri_; }

  const std::string& error() const { return error_; }

 private:
  std::string server_uri_;
  std::string name_;
  std::string uri_;
  std::string error_;
};

// Makes each test's store and owns what it lives in; declared before the store in the fixture,
// so the store closes first.
template <class Store>
class StoreFactory;

template <>
class StoreFactory<MemoryStateStore> {
 public:
  Result<std::unique_ptr<ports::StateStore>> Make() {
    return std::unique_ptr<ports::StateStore>(std::make_unique<MemoryStateStore>());
  }
};

template <>
class StoreFactory<SqliteStateStore> {
 public:
  Result<std::unique_ptr<ports::StateStore>> Make() {
    if (dir_.path().empty()) {
      return MakeError(ErrorCode::kInternal, "mkdtemp failed");
    }
    sqlite::Database::Options options;
    options.path = dir_.path() + "/state.db";
    CLINKER_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStateStore> store,
                             SqliteStateStore::Open(options));
    return std::unique_ptr<ports::StateStore>(std::move(store));
  }

 private:
  TempDir dir_;
};

template <>
class StoreFactory<PostgresStateStore> {
 public:
  Result<std::unique_ptr<ports::StateStore>> Make() {
    if (!database_.error().empty()) {
      return MakeError(ErrorCode::kUnavailable, database_.error());
    }
    PostgresStateStore::Options options;
    options.uri = database_.uri();
    CLINKER_ASSIGN_OR_RETURN(std::unique_ptr<PostgresStateStore> store,
                             PostgresStateStore::Open(options));
    return std::unique_ptr<ports::StateStore>(std::move(store));
  }

 private:
  PostgresTestDatabase database_;
};

template <class Store>
class StateStoreContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = factory_.Make();
    ASSERT_TRUE(made) << made.error().ToString();
    store_ = std::move(*made);
  }

  ports::StateStore& store() { return *store_; }

  // Inserts and returns the stored row (with defaults).
  Row MustInsert(Table table, const Row& row) {
    auto inserted = store_->Insert(table, row);
    EXPECT_TRUE(inserted) << inserted.error().ToString();
    auto stored = store_->Get(table, std::get<std::string>(row.at("id")));
    EXPECT_TRUE(stored) << stored.error().ToString();
    return stored ? *stored : Row{};
  }

  Row MustGet(Table table, const std::string& id) {
    auto stored = store_->Get(table, id);
    EXPECT_TRUE(stored) << stored.error().ToString();
    return stored ? *stored : Row{};
  }

  // Runs a conditional update that must apply and returns the row it reports.
  Row MustWin(const std::string& id, const Row& values, const std::vector<Expectation>& expected) {
    auto updated = store_->ConditionalUpdate(Table::kVolumes, id, values, expected, {});
    EXPECT_TRUE(updated) << updated.error().ToString();
    EXPECT_TRUE(updated && updated->has_value()) << "expected the update to apply";
    return updated && updated->has_value() ? **updated : Row{};
  }

  // Runs a conditional update that must not apply, and checks the row did not change.
  void MustLose(const std::string& id,
                const Row& values,
                const std::vector<Expectation>& expected) {
    Row before = MustGet(Table::kVolumes, id);
    auto updated = store_->ConditionalUpdate(Table::kVolumes, id, values, expected, {});
    ASSERT_TRUE(updated) << updated.error().ToString();
    EXPECT_FALSE(updated->has_value()) << "expected the update not to apply";
    EXPECT_EQ(MustGet(Table::kVolumes, id), before);
  }

  std::vector<std::string> ListIds(Table table, const ListQuery& query) {
    std::vector<std::string> ids;
    auto rows = store_->List(table, query);
    EXPECT_TRUE(rows) << rows.error().ToString();
    if (rows) {
      for (const Row& row : *rows) {
        ids.push_back(std::get<std::string>(row.at("id")));
      }
    }
    return ids;
  }

  // Declared first so the store closes before its directory or database goes.
  StoreFactory<Store> factory_;
  std::unique_ptr<ports::StateStore> store_;
};

struct StoreNames {
  template <class T>
  static std::string GetName(int /*index*/) {
    if (std::is_same_v<T, MemoryStateStore>) {
      return "Memory";
    }
    if (std::is_same_v<T, PostgresStateStore>) {
      return "Postgres";
    }
    return "Sqlite";
  }
};

using StoreTypes = ::testing::Types<MemoryStateStore, SqliteStateStore, PostgresStateStore>;
TYPED_TEST_SUITE(StateStoreContractTest, StoreTypes, StoreNames);

constexpr char kCreatedAt[] = "2024-01-01T00:00:00.000000";

// A volume with only the required columns.
Row Volume(const std::string& id) {
  return Row{{"id", id},
             {"project_id", std::string("p1")},
             {"user_id", std::string("u1")},
             {"status", std::string("available")},
             {"created_at", std::string(kCreatedAt)}};
}

Row Snapshot(const std::string& id, const std::string& volume_id) {
  return Row{{"id", id},
             {"project_id", std::string("p1")},
             {"user_id", std::string("u1")},
             {"volume_id", volume_id},
             {"status", std::string("available")},
             {"created_at", std::string(kCreatedAt)}};
}

Value Text(const char* text) {
  return Value(std::string(text));
}

Value Int(std::int64_t number) {
  return Value(number);
}

const Value kNull{};

void ExpectInvalid(const Result<void>& result) {
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument) << result.error().ToString();
}

template <class T>
void ExpectInvalid(const Result<T>& result) {
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument) << result.error().ToString();
}

// --- Insert and Get -----------------------------------------------------------------------------

TYPED_TEST(StateStoreContractTest, InsertGetRoundTripKeepsValuesAndFillsDefaultsAndNulls) {
  Row row = Volume("v1");
  row["size_gib"] = Int(10);
  row["display_name"] = Text("name with 'quotes'; DROP TABLE volumes; --");
  row["status_reason"] = kNull;
  row["bootable"] = Int(1);
  Row stored = this->MustInsert(Table::kVolumes, row);

  EXPECT_EQ(stored.size(), ports::Columns(Table::kVolumes).size());
  for (const auto& [name, value] : row) {
    EXPECT_EQ(stored.at(name), value) << name;
  }
  EXPECT_EQ(stored.at("metadata"), Text("{}"));
  EXPECT_EQ(stored.at("availability_zone"), Text("nova"));
  EXPECT_EQ(stored.at("attach_status"), Text("detached"));
  EXPECT_EQ(stored.at("multiattach"), Int(0));
  EXPECT_EQ(stored.at("deleted"), Int(0));
  EXPECT_EQ(stored.at("host"), kNull);
  EXPECT_EQ(stored.at("display_description"), kNull);
  EXPECT_EQ(stored.at("deleted_at"), kNull);
}

TYPED_TEST(StateStoreContractTest, SnapshotRoundTrip) {
  Row stored = this->MustInsert(Table::kSnapshots, Snapshot("s1", "v1"));
  EXPECT_EQ(stored.size(), ports::Columns(Table::kSnapshots).size());
  EXPECT_EQ(stored.at("volume_id"), Text("v1"));
  EXPECT_EQ(stored.at("size_gib"), Int(0));
  EXPECT_EQ(stored.at("display_name"), kNull);
  // Tables are separate: the snapshot id is not a volume.
  auto volume = this->store().Get(Table::kVolumes, "s1");
  ASSERT_FALSE(volume);
  EXPECT_EQ(volume.error().code, ErrorCode::kNotFound);
}

TYPED_TEST(StateStoreContractTest, DuplicateInsertIsConflictAndKeepsTheFirstRow) {
  Row first = this->MustInsert(Table::kVolumes, Volume("v1"));
  Row second = Volume("v1");
  second["status"] = Text("error");
  auto result = this->store().Insert(Table::kVolumes, second);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kConflict) << result.error().ToString();
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1"), first);
}

TYPED_TEST(StateStoreContractTest, InsertWithoutARequiredColumnIsInvalid) {
  Row no_project = Volume("v1");
  no_project.erase("project_id");
  ExpectInvalid(this->store().Insert(Table::kVolumes, no_project));
  Row no_id = Volume("v1");
  no_id.erase("id");
  ExpectInvalid(this->store().Insert(Table::kVolumes, no_id));
  Row null_status = Volume("v1");
  null_status["status"] = kNull;
  ExpectInvalid(this->store().Insert(Table::kVolumes, null_status));
  auto missing = this->store().Get(Table::kVolumes, "v1");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TYPED_TEST(StateStoreContractTest, GetMissingIdIsNotFound) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  auto result = this->store().Get(Table::kVolumes, "v2");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kNotFound);
}

TYPED_TEST(StateStoreContractTest, UnknownColumnIsInvalidEverywhere) {
  Row stored = this->MustInsert(Table::kVolumes, Volume("v1"));
  const std::string hostile = "status = 'x'; DROP TABLE volumes; --";
  for (const std::string& bad : {std::string("bogus"), hostile}) {
    SCOPED_TRACE(bad);
    Row insert = Volume("v2");
    insert[bad] = Text("x");
    ExpectInvalid(this->store().Insert(Table::kVolumes, insert));
    ExpectInvalid(
        this->store().ConditionalUpdate(Table::kVolumes, "v1", {{bad, Text("x")}}, {}, {}));
    ExpectInvalid(this->store().ConditionalUpdate(
        Table::kVolumes, "v1", {{"status", Text("x")}}, {Expectation::Equals(bad, Text("x"))}, {}));
    ExpectInvalid(this->store().ConditionalUpdate(
        Table::kVolumes, "v1", {{"status", Text("x")}}, {Expectation::IsNull(bad)}, {}));
    ExpectInvalid(
        this->store().ConditionalUpdate(Table::kVolumes,
                                        "v1",
                                        {{"status", Text("x")}},
                                        {},
                                        {Guard::NoLiveRowReferences(Table::kSnapshots, bad)}));
    ListQuery sorted;
    sorted.sort = {SortKey{bad, true}};
    ExpectInvalid(this->store().List(Table::kVolumes, sorted));
    ListQuery filtered;
    filtered.filters = {Expectation::Equals(bad, Text("x"))};
    ExpectInvalid(this->store().List(Table::kVolumes, filtered));
  }
  // A column of the other table is unknown here too.
  ExpectInvalid(
      this->store().ConditionalUpdate(Table::kVolumes, "v1", {{"volume_id", Text("x")}}, {}, {}));
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1"), stored);
  EXPECT_EQ(this->ListIds(Table::kVolumes, {}), std::vector<std::string>{"v1"});
}

TYPED_TEST(StateStoreContractTest, WrongValueTypeIsInvalid) {
  Row stored = this->MustInsert(Table::kVolumes, Volume("v1"));
  Row text_size = Volume("v2");
  text_size["size_gib"] = Text("10");
  ExpectInvalid(this->store().Insert(Table::kVolumes, text_size));
  Row integer_status = Volume("v2");
  integer_status["status"] = Int(1);
  ExpectInvalid(this->store().Insert(Table::kVolumes, integer_status));
  ExpectInvalid(
      this->store().ConditionalUpdate(Table::kVolumes, "v1", {{"size_gib", Text("1")}}, {}, {}));
  ExpectInvalid(
      this->store().ConditionalUpdate(Table::kVolumes, "v1", {{"status", kNull}}, {}, {}));
  ExpectInvalid(this->store().ConditionalUpdate(Table::kVolumes,
                                                "v1",
                                                {{"host", Text("h")}},
                                                {Expectation::Equals("size_gib", Text("0"))},
                                                {}));
  ExpectInvalid(this->store().ConditionalUpdate(
      Table::kVolumes, "v1", {{"host", Text("h")}}, {Expectation::In("status", {Int(1)})}, {}));
  // NULL is asked for with IsNull, never compared.
  ExpectInvalid(this->store().ConditionalUpdate(
      Table::kVolumes, "v1", {{"host", Text("h")}}, {Expectation::Equals("host", kNull)}, {}));
  ExpectInvalid(this->store().ConditionalUpdate(
      Table::kVolumes, "v1", {{"host", Text("h")}}, {Expectation::NotIn("host", {kNull})}, {}));
  // The id is the row's identity.
  ExpectInvalid(
      this->store().ConditionalUpdate(Table::kVolumes, "v1", {{"id", Text("v9")}}, {}, {}));
  ListQuery query;
  query.filters = {Expectation::Equals("deleted", Text("0"))};
  ExpectInvalid(this->store().List(Table::kVolumes, query));
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1"), stored);
}

// --- ConditionalUpdate: one test per expectation kind ---------------------------------------

TYPED_TEST(StateStoreContractTest, ConditionalUpdateEquals) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustLose(
      "v1", {{"status", Text("deleting")}}, {Expectation::Equals("status", Text("error"))});
  Row row = this->MustWin(
      "v1", {{"status", Text("deleting")}}, {Expectation::Equals("status", Text("available"))});
  EXPECT_EQ(row.at("status"), Text("deleting"));
  // The same call again finds the new status: a duplicate caller loses.
  this->MustLose(
      "v1", {{"status", Text("deleting")}}, {Expectation::Equals("status", Text("available"))});
}

TYPED_TEST(StateStoreContractTest, ConditionalUpdateIn) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustLose("v1",
                 {{"status", Text("x")}},
                 {Expectation::In("status", {Text("error"), Text("creating")})});
  this->MustLose("v1", {{"status", Text("x")}}, {Expectation::In("status", {})});
  Row row = this->MustWin("v1",
                          {{"status", Text("x")}},
                          {Expectation::In("status", {Text("error"), Text("available")})});
  EXPECT_EQ(row.at("status"), Text("x"));
}

TYPED_TEST(StateStoreContractTest, ConditionalUpdateNotEquals) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustLose(
      "v1", {{"status", Text("x")}}, {Expectation::NotEquals("status", Text("available"))});
  Row row = this->MustWin(
      "v1", {{"status", Text("x")}}, {Expectation::NotEquals("status", Text("error"))});
  EXPECT_EQ(row.at("status"), Text("x"));
}

TYPED_TEST(StateStoreContractTest, ConditionalUpdateNotIn) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustLose("v1",
                 {{"status", Text("x")}},
                 {Expectation::NotIn("status", {Text("error"), Text("available")})});
  Row row = this->MustWin(
      "v1", {{"status", Text("x")}}, {Expectation::NotIn("status", {Text("error"), Text("y")})});
  EXPECT_EQ(row.at("status"), Text("x"));
  // An empty list excludes nothing.
  row = this->MustWin("v1", {{"status", Text("z")}}, {Expectation::NotIn("status", {})});
  EXPECT_EQ(row.at("status"), Text("z"));
}

TYPED_TEST(StateStoreContractTest, ConditionalUpdateIsNull) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustLose("v1", {{"host", Text("h1")}}, {Expectation::IsNull("status")});
  Row row = this->MustWin("v1", {{"host", Text("h1")}}, {Expectation::IsNull("host")});
  EXPECT_EQ(row.at("host"), Text("h1"));
  this->MustLose("v1", {{"host", Text("h2")}}, {Expectation::IsNull("host")});
}

TYPED_TEST(StateStoreContractTest, ConditionalUpdateIsNotNull) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustLose("v1", {{"status", Text("x")}}, {Expectation::IsNotNull("host")});
  Row row = this->MustWin("v1", {{"status", Text("x")}}, {Expectation::IsNotNull("status")});
  EXPECT_EQ(row.at("status"), Text("x"));
}

// The fencing check: a write carrying token t holds while the stored token is NULL or <= t, and
// stores t; an older token then loses.
TYPED_TEST(StateStoreContractTest, ConditionalUpdateNullOrAtMost) {
  this->MustInsert(Table::kVolumes, Volume("v1"));  // fencing_token is NULL.
  Row row = this->MustWin("v1",
                          {{"fencing_token", Int(7)}, {"status", Text("a")}},
                          {Expectation::NullOrAtMost("fencing_token", 7)});
  EXPECT_EQ(row.at("fencing_token"), Int(7));
  this->MustWin("v1", {{"status", Text("b")}}, {Expectation::NullOrAtMost("fencing_token", 7)});
  this->MustLose("v1",
                 {{"fencing_token", Int(5)}, {"status", Text("stale")}},
                 {Expectation::NullOrAtMost("fencing_token", 5)});
  row = this->MustWin("v1",
                      {{"fencing_token", Int(1LL << 62)}, {"status", Text("c")}},
                      {Expectation::NullOrAtMost("fencing_token", 1LL << 62)});
  EXPECT_EQ(row.at("fencing_token"), Int(1LL << 62));
  EXPECT_EQ(row.at("status"), Text("c"));
  // Only integer columns, with one value.
  ExpectInvalid(this->store().ConditionalUpdate(
      Table::kVolumes, "v1", {}, {Expectation::NullOrAtMost("host", 1)}, {}));
}

TYPED_TEST(StateStoreContractTest, NullColumnMatchesOnlyNegativeAndNullExpectations) {
  this->MustInsert(Table::kVolumes, Volume("v1"));  // host is NULL.
  this->MustLose("v1", {{"status", Text("x")}}, {Expectation::Equals("host", Text("h"))});
  this->MustLose("v1", {{"status", Text("x")}}, {Expectation::In("host", {Text("h"), Text("")})});
  this->MustLose("v1", {{"status", Text("x")}}, {Expectation::IsNotNull("host")});
  this->MustWin("v1", {{"status", Text("a")}}, {Expectation::NotEquals("host", Text("h"))});
  this->MustWin("v1", {{"status", Text("b")}}, {Expectation::NotIn("host", {Text("h")})});
  this->MustWin("v1", {{"status", Text("c")}}, {Expectation::IsNull("host")});
  // Setting a column to NULL makes it NULL again, and NULL is not the empty string.
  this->MustWin("v1", {{"host", Text("")}}, {});
  this->MustLose("v1", {{"status", Text("x")}}, {Expectation::IsNull("host")});
  Row row = this->MustWin("v1", {{"host", kNull}}, {Expectation::Equals("host", Text(""))});
  EXPECT_EQ(row.at("host"), kNull);
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1").at("host"), kNull);
}

TYPED_TEST(StateStoreContractTest, AllExpectationsMustHold) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustLose("v1",
                 {{"status", Text("x")}},
                 {Expectation::Equals("status", Text("available")),
                  Expectation::Equals("project_id", Text("other"))});
  this->MustWin("v1",
                {{"status", Text("x")}},
                {Expectation::Equals("status", Text("available")),
                 Expectation::Equals("project_id", Text("p1")),
                 Expectation::Equals("size_gib", Int(0))});
}

TYPED_TEST(StateStoreContractTest, UpdateReturnsTheWholeUpdatedRow) {
  Row before = this->MustInsert(Table::kVolumes, Volume("v1"));
  Row values{{"status", Text("deleting_queued")},
             {"operation_id", Text("op-1")},
             {"size_gib", Int(7)},
             {"display_name", Text("n")}};
  Row row = this->MustWin("v1", values, {Expectation::Equals("status", Text("available"))});
  Row expected = before;
  for (const auto& [name, value] : values) {
    expected[name] = value;
  }
  EXPECT_EQ(row, expected);
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1"), expected);
}

TYPED_TEST(StateStoreContractTest, UpdateWithNoValuesIsAnAtomicCheck) {
  Row before = this->MustInsert(Table::kVolumes, Volume("v1"));
  EXPECT_EQ(this->MustWin("v1", {}, {Expectation::Equals("status", Text("available"))}), before);
  this->MustLose("v1", {}, {Expectation::Equals("status", Text("error"))});
}

TYPED_TEST(StateStoreContractTest, UpdatingAMissingIdChangesNothing) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  auto updated =
      this->store().ConditionalUpdate(Table::kVolumes, "v2", {{"status", Text("x")}}, {}, {});
  ASSERT_TRUE(updated) << updated.error().ToString();
  EXPECT_FALSE(updated->has_value());
  auto missing = this->store().Get(Table::kVolumes, "v2");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1").at("status"), Text("available"));
}

TYPED_TEST(StateStoreContractTest, GuardBlocksWhileALiveRowReferencesTheTarget) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustInsert(Table::kVolumes, Volume("v2"));
  this->MustInsert(Table::kSnapshots, Snapshot("s1", "v1"));
  this->MustInsert(Table::kSnapshots, Snapshot("s2", "v1"));
  const std::vector<Guard> guards = {Guard::NoLiveRowReferences(Table::kSnapshots, "volume_id")};
  const Row values{{"status", Text("deleting_queued")}};
  const std::vector<Expectation> expected = {Expectation::Equals("status", Text("available"))};

  Row before = this->MustGet(Table::kVolumes, "v1");
  auto blocked = this->store().ConditionalUpdate(Table::kVolumes, "v1", values, expected, guards);
  ASSERT_TRUE(blocked) << blocked.error().ToString();
  EXPECT_FALSE(blocked->has_value());
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1"), before);

  // Snapshots of another volume do not block v2.
  auto other = this->store().ConditionalUpdate(Table::kVolumes, "v2", values, expected, guards);
  ASSERT_TRUE(other) << other.error().ToString();
  EXPECT_TRUE(other->has_value());

  // One soft-deleted snapshot is not enough while another is live.
  auto deleted =
      this->store().ConditionalUpdate(Table::kSnapshots, "s1", {{"deleted", Int(1)}}, {}, {});
  ASSERT_TRUE(deleted && deleted->has_value());
  blocked = this->store().ConditionalUpdate(Table::kVolumes, "v1", values, expected, guards);
  ASSERT_TRUE(blocked) << blocked.error().ToString();
  EXPECT_FALSE(blocked->has_value());

  deleted = this->store().ConditionalUpdate(Table::kSnapshots, "s2", {{"deleted", Int(1)}}, {}, {});
  ASSERT_TRUE(deleted && deleted->has_value());
  auto allowed = this->store().ConditionalUpdate(Table::kVolumes, "v1", values, expected, guards);
  ASSERT_TRUE(allowed) << allowed.error().ToString();
  ASSERT_TRUE(allowed->has_value());
  EXPECT_EQ((*allowed)->at("status"), Text("deleting_queued"));
}

TYPED_TEST(StateStoreContractTest, GuardAndExpectationMustBothHold) {
  this->MustInsert(Table::kVolumes, Volume("v1"));
  const std::vector<Guard> guards = {Guard::NoLiveRowReferences(Table::kSnapshots, "volume_id")};
  auto lost = this->store().ConditionalUpdate(Table::kVolumes,
                                              "v1",
                                              {{"status", Text("x")}},
                                              {Expectation::Equals("status", Text("error"))},
                                              guards);
  ASSERT_TRUE(lost) << lost.error().ToString();
  EXPECT_FALSE(lost->has_value());
}

// A guard with `where` counts only the referencing rows that also match it: Cinder's "no volume
// is still being created from this one" (source_volid = id AND status IN the creating statuses),
// on the guarded table itself and across tables. Soft-deleted rows never count, and NULL in a
// `where` column follows the expectation kinds' NULL rules.
TYPED_TEST(StateStoreContractTest, GuardWithWhereBlocksOnlyWhileAMatchingRowReferencesTheTarget) {
  this->MustInsert(Table::kVolumes, Volume("src"));
  Row clone = Volume("clone");
  clone["source_volid"] = Text("src");
  this->MustInsert(Table::kVolumes, clone);  // available: not being created.
  Row elsewhere = Volume("elsewhere");
  elsewhere["source_volid"] = Text("other-volume");
  elsewhere["status"] = Text("creating");
  this->MustInsert(Table::kVolumes, elsewhere);
  const std::vector<Guard> guards = {Guard::NoLiveRowReferences(
      Table::kVolumes,
      "source_volid",
      {Expectation::In("status", {Text("creating_queued"), Text("creating")})})};
  int round = 0;
  // True if the guarded update applied (and changed the row), false if it was refused (and
  // changed nothing).
  auto applies = [&](const std::vector<Guard>& with) {
    Row before = this->MustGet(Table::kVolumes, "src");
    std::string name = "round-" + std::to_string(++round);
    auto updated = this->store().ConditionalUpdate(Table::kVolumes,
                                                   "src",
                                                   {{"display_name", Value(name)}},
                                                   {Expectation::Equals("deleted", Int(0))},
                                                   with);
    EXPECT_TRUE(updated) << updated.error().ToString();
    if (!updated || !updated->has_value()) {
      EXPECT_EQ(this->MustGet(Table::kVolumes, "src"), before);
      return false;
    }
    EXPECT_EQ((*updated)->at("display_name"), Value(name));
    return true;
  };
  auto set = [&](Table table, const char* id, const Row& values) {
    auto updated = this->store().ConditionalUpdate(table, id, values, {}, {});
    ASSERT_TRUE(updated && updated->has_value()) << id;
  };

  EXPECT_TRUE(applies(guards)) << "a referencing row outside `where` must not block";
  set(Table::kVolumes, "clone", {{"status", Text("creating")}});
  EXPECT_FALSE(applies(guards));
  set(Table::kVolumes, "clone", {{"status", Text("creating_queued")}});
  EXPECT_FALSE(applies(guards));
  // Every `where` expectation must match (AND): another project's clone does not block here.
  EXPECT_TRUE(
      applies({Guard::NoLiveRowReferences(Table::kVolumes,
                                          "source_volid",
                                          {Expectation::In("status", {Text("creating_queued")}),
                                           Expectation::Equals("project_id", Text("p2"))})}));
  // NULL in a `where` column: IsNull matches it, Equals never does.
  EXPECT_FALSE(applies({Guard::NoLiveRowReferences(
      Table::kVolumes, "source_volid", {Expectation::IsNull("host")})}));
  EXPECT_TRUE(applies({Guard::NoLiveRowReferences(
      Table::kVolumes, "source_volid", {Expectation::Equals("host", Text("h"))})}));
  EXPECT_FALSE(applies({Guard::NoLiveRowReferences(
      Table::kVolumes, "source_volid", {Expectation::NotEquals("host", Text("h"))})}));
  // A soft-deleted referencing row never blocks, whatever its status.
  set(Table::kVolumes, "clone", {{"deleted", Int(1)}});
  EXPECT_TRUE(applies(guards));

  // Across tables: snapshots of src block only while one matches `where`.
  const std::vector<Guard> creating_snapshots = {Guard::NoLiveRowReferences(
      Table::kSnapshots, "volume_id", {Expectation::In("status", {Text("creating_queued")})})};
  this->MustInsert(Table::kSnapshots, Snapshot("s1", "src"));  // available.
  EXPECT_TRUE(applies(creating_snapshots));
  set(Table::kSnapshots, "s1", {{"status", Text("creating_queued")}});
  EXPECT_FALSE(applies(creating_snapshots));
  set(Table::kSnapshots, "s1", {{"deleted", Int(1)}});
  EXPECT_TRUE(applies(creating_snapshots));
}

TYPED_TEST(StateStoreContractTest, GuardWithAnInvalidWhereIsInvalid) {
  Row stored = this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustInsert(Table::kSnapshots, Snapshot("s1", "v1"));
  const std::vector<std::vector<Expectation>> bad_wheres = {
      {Expectation::Equals("bogus", Text("x"))},
      // A column of the guarded table only: source_volid is a volume column, not a snapshot one.
      {Expectation::Equals("source_volid", Text("x"))},
      {Expectation::In("status", {Text("available")}), Expectation::IsNull("bogus")},
      // The fencing check has no meaning on another row.
      {Expectation::NullOrAtMost("size_gib", 1)},
      {Expectation::NullOrAtMost("fencing_token", 1)},
      {Expectation::Equals("size_gib", Text("1"))},
      {Expectation::Equals("status", kNull)},
  };
  for (const std::vector<Expectation>& where : bad_wheres) {
    SCOPED_TRACE(where.front().column);
    ExpectInvalid(this->store().ConditionalUpdate(
        Table::kVolumes,
        "v1",
        {{"status", Text("deleting_queued")}},
        {},
        {Guard::NoLiveRowReferences(Table::kSnapshots, "volume_id", where)}));
  }
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1"), stored);
}

TYPED_TEST(StateStoreContractTest, ExactlyOneOfSixteenRacingThreadsWinsEachRound) {
  constexpr int kThreads = 16;
  constexpr int kRounds = 100;
  std::atomic<int> winners{0};
  std::atomic<int> winner_index{-1};
  std::atomic<int> errors{0};
  std::string round_id;
  std::barrier sync(kThreads + 1);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        sync.arrive_and_wait();  // The round's row exists.
        auto updated = this->store().ConditionalUpdate(
            Table::kVolumes,
            round_id,
            {{"status", Text("deleting_queued")}, {"operation_id", Value(std::to_string(t))}},
            {Expectation::Equals("status", Text("available"))},
            {});
        if (!updated) {
          errors.fetch_add(1);
        } else if (updated->has_value()) {
          winners.fetch_add(1);
          winner_index.store(t);
          if ((*updated)->at("operation_id") != Value(std::to_string(t))) {
            errors.fetch_add(1);
          }
        }
        sync.arrive_and_wait();  // Everyone is done with the round.
      }
    });
  }
  int bad_rounds = 0;
  for (int round = 0; round < kRounds; ++round) {
    round_id = "race-" + std::to_string(round);
    winners.store(0);
    winner_index.store(-1);
    this->MustInsert(Table::kVolumes, Volume(round_id));
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    if (winners.load() != 1) {
      ++bad_rounds;
      continue;
    }
    Row row = this->MustGet(Table::kVolumes, round_id);
    EXPECT_EQ(row.at("status"), Text("deleting_queued"));
    EXPECT_EQ(row.at("operation_id"), Value(std::to_string(winner_index.load())));
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(bad_rounds, 0);
  EXPECT_EQ(errors.load(), 0);
}

// --- List ---------------------------------------------------------------------------------------

// Rows for the list tests: two projects, several statuses, NULL and tied names and sizes.
void InsertListRows(ports::StateStore& store) {
  struct Spec {
    const char* id = nullptr;
    const char* project = nullptr;
    const char* status = nullptr;
    std::optional<const char*> name;
    std::int64_t size = 0;
    std::int64_t deleted = 0;
  };

  const Spec specs[] = {
      {"a1", "p1", "available", "beta", 5, 0},
      {"a2", "p1", "error", std::nullopt, 5, 0},
      {"a3", "p2", "available", "alpha", 1, 0},
      {"a4", "p1", "available", "beta", 3, 0},
      {"a5", "p2", "creating", std::nullopt, 9, 0},
      {"a6", "p1", "deleted", "alpha", 2, 1},
      {"a7", "p1", "available", "", 5, 0},
      {"a8", "p2", "error", "gamma", 3, 0},
      {"a9", "p1", "available", "alpha", 5, 0},
      {"b0", "p1", "creating", "beta", 5, 0},
  };
  for (const Spec& spec : specs) {
    Row row = Volume(spec.id);
    row["project_id"] = Value(std::string(spec.project));
    row["status"] = Value(std::string(spec.status));
    row["display_name"] = spec.name ? Value(std::string(*spec.name)) : Value();
    row["size_gib"] = Value(spec.size);
    row["deleted"] = Value(spec.deleted);
    auto inserted = store.Insert(Table::kVolumes, row);
    ASSERT_TRUE(inserted) << inserted.error().ToString();
  }
}

TYPED_TEST(StateStoreContractTest, ListWithoutSortIsByIdAndSkipsDeletedRows) {
  InsertListRows(this->store());
  EXPECT_EQ(this->ListIds(Table::kVolumes, {}),
            (std::vector<std::string>{"a1", "a2", "a3", "a4", "a5", "a7", "a8", "a9", "b0"}));
  ListQuery all;
  all.include_deleted = true;
  EXPECT_EQ(this->ListIds(Table::kVolumes, all),
            (std::vector<std::string>{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "b0"}));
  ListQuery only_deleted;
  only_deleted.include_deleted = true;
  only_deleted.filters = {Expectation::Equals("deleted", Int(1))};
  EXPECT_EQ(this->ListIds(Table::kVolumes, only_deleted), (std::vector<std::string>{"a6"}));
  EXPECT_TRUE(this->ListIds(Table::kSnapshots, all).empty());
}

TYPED_TEST(StateStoreContractTest, ListFiltersCombine) {
  InsertListRows(this->store());
  ListQuery query;
  query.filters = {Expectation::Equals("project_id", Text("p1")),
                   Expectation::In("status", {Text("available"), Text("error")})};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query),
            (std::vector<std::string>{"a1", "a2", "a4", "a7", "a9"}));
  query.filters = {Expectation::NotEquals("display_name", Text("beta"))};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query),
            (std::vector<std::string>{"a2", "a3", "a5", "a7", "a8", "a9"}));
  query.filters = {Expectation::NotIn("display_name", {Text("beta"), Text("alpha")}),
                   Expectation::IsNotNull("display_name")};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query), (std::vector<std::string>{"a7", "a8"}));
  query.filters = {Expectation::IsNull("display_name")};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query), (std::vector<std::string>{"a2", "a5"}));
  query.filters = {Expectation::In("status", {})};
  EXPECT_TRUE(this->ListIds(Table::kVolumes, query).empty());
  query.filters = {Expectation::NotIn("status", {}), Expectation::Equals("size_gib", Int(3))};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query), (std::vector<std::string>{"a4", "a8"}));
}

TYPED_TEST(StateStoreContractTest, ListSortsByKeysThenIdWithNullNamesAsEmpty) {
  InsertListRows(this->store());
  ListQuery query;
  // Name ascending: NULL and "" first (as ''), tie-broken by size descending, then id descending.
  query.sort = {SortKey{"display_name", true}, SortKey{"size_gib", false}};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query),
            (std::vector<std::string>{"a5", "a7", "a2", "a9", "a3", "b0", "a1", "a4", "a8"}));
  query.sort = {SortKey{"size_gib", false}, SortKey{"display_name", true}};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query),
            (std::vector<std::string>{"a5", "a2", "a7", "a9", "a1", "b0", "a4", "a8", "a3"}));
  query.sort = {SortKey{"size_gib", true}, SortKey{"id", true}};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query),
            (std::vector<std::string>{"a3", "a4", "a8", "a1", "a2", "a7", "a9", "b0", "a5"}));
  query.sort = {SortKey{"size_gib", true}};  // The id tie-breaker follows the last key.
  query.limit = 4;
  EXPECT_EQ(this->ListIds(Table::kVolumes, query),
            (std::vector<std::string>{"a3", "a4", "a8", "a1"}));
  query.sort = {SortKey{"size_gib", false}};
  EXPECT_EQ(this->ListIds(Table::kVolumes, query),
            (std::vector<std::string>{"a5", "b0", "a9", "a7"}));
  query.limit = 0;
  EXPECT_TRUE(this->ListIds(Table::kVolumes, query).empty());
  query.limit = -1;
  ExpectInvalid(this->store().List(Table::kVolumes, query));
}

TYPED_TEST(StateStoreContractTest, MarkerPaginationWalksEveryRowOnceInOrder) {
  InsertListRows(this->store());
  const std::vector<std::vector<SortKey>> orders = {
      {},
      {SortKey{"display_name", true}, SortKey{"size_gib", false}},
      {SortKey{"display_name", false}, SortKey{"size_gib", true}},
      {SortKey{"size_gib", false}, SortKey{"display_name", true}},
      {SortKey{"status", true}, SortKey{"display_name", false}, SortKey{"project_id", true}},
  };
  for (bool include_deleted : {false, true}) {
    for (const std::vector<SortKey>& order : orders) {
      SCOPED_TRACE(testing::Message() << "keys=" << order.size() << " deleted=" << include_deleted);
      ListQuery full;
      full.sort = order;
      full.include_deleted = include_deleted;
      std::vector<std::string> expected = this->ListIds(Table::kVolumes, full);
      ASSERT_EQ(expected.size(), include_deleted ? 10u : 9u);

      std::vector<std::string> walked;
      ListQuery page = full;
      page.limit = 3;
      for (int pages = 0; pages < 10; ++pages) {
        std::vector<std::string> ids = this->ListIds(Table::kVolumes, page);
        EXPECT_LE(ids.size(), 3u);
        walked.insert(walked.end(), ids.begin(), ids.end());
        if (ids.size() < 3) {
          break;
        }
        page.marker_id = ids.back();
      }
      EXPECT_EQ(walked, expected);
    }
  }
}

TYPED_TEST(StateStoreContractTest, MarkerMayBeADeletedRowButMustExist) {
  InsertListRows(this->store());
  ListQuery query;
  query.marker_id = "a6";  // Soft-deleted, but still a valid place in the order.
  EXPECT_EQ(this->ListIds(Table::kVolumes, query),
            (std::vector<std::string>{"a7", "a8", "a9", "b0"}));
  query.marker_id = "nope";
  auto result = this->store().List(Table::kVolumes, query);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kNotFound);
}

// --- Services and clusters ----------------------------------------------------------------------

// The heartbeat tables: every column round-trips (the "binary" column included, a keyword in
// SQL), defaults fill in, a nullable integer (heartbeat_at) can be set and cleared, a duplicate
// cluster id is kConflict (members racing to create their cluster rely on it), and the tables
// are separate from each other.
TYPED_TEST(StateStoreContractTest, ServicesAndClustersRoundTrip) {
  Row service = {{"id", Text("cinder-volume:node1@lvm")},
                 {"binary", Text("cinder-volume")},
                 {"host", Text("node1@lvm")},
                 {"cluster_name", Text("c1@lvm")},
                 {"heartbeat_at", Int(1767225600123)},
                 {"created_at", Text(kCreatedAt)}};
  Row stored = this->MustInsert(Table::kServices, service);
  EXPECT_EQ(stored.size(), ports::Columns(Table::kServices).size());
  EXPECT_EQ(stored.at("binary"), Text("cinder-volume"));
  EXPECT_EQ(stored.at("heartbeat_at"), Int(1767225600123));
  EXPECT_EQ(stored.at("availability_zone"), Text("nova"));
  EXPECT_EQ(stored.at("disabled"), Int(0));
  EXPECT_EQ(stored.at("disabled_reason"), kNull);
  EXPECT_EQ(stored.at("deleted"), Int(0));

  auto cleared =
      this->store().ConditionalUpdate(Table::kServices,
                                      "cinder-volume:node1@lvm",
                                      {{"heartbeat_at", kNull}},
                                      {Expectation::Equals("binary", Text("cinder-volume")),
                                       Expectation::Equals("deleted", Int(0))},
                                      {});
  ASSERT_TRUE(cleared) << cleared.error().ToString();
  ASSERT_TRUE(cleared->has_value());
  EXPECT_EQ((*cleared)->at("heartbeat_at"), kNull);

  Row cluster = {{"id", Text("cinder-volume:c1@lvm")},
                 {"name", Text("c1@lvm")},
                 {"binary", Text("cinder-volume")},
                 {"created_at", Text(kCreatedAt)}};
  Row stored_cluster = this->MustInsert(Table::kClusters, cluster);
  EXPECT_EQ(stored_cluster.size(), ports::Columns(Table::kClusters).size());
  EXPECT_EQ(stored_cluster.at("disabled"), Int(0));
  auto again = this->store().Insert(Table::kClusters, cluster);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_FALSE(this->store().Get(Table::kServices, "cinder-volume:c1@lvm"));

  ListQuery members;
  members.filters = {Expectation::Equals("cluster_name", Text("c1@lvm")),
                     Expectation::Equals("binary", Text("cinder-volume"))};
  members.sort = {SortKey{"binary", true}};
  EXPECT_EQ(this->ListIds(Table::kServices, members),
            std::vector<std::string>{"cinder-volume:node1@lvm"});
}

// --- Volume types -------------------------------------------------------------------------------

Row VolumeTypeRow(const std::string& id, const std::string& name, std::int64_t deleted = 0) {
  return Row{{"id", Value(id)},
             {"name", Value(name)},
             {"created_at", Text(kCreatedAt)},
             {"deleted", Int(deleted)}};
}

// A type's name is live-unique (ports/state_schema.h): a second live row with it is kConflict,
// on Insert and on ConditionalUpdate, and changes nothing; deleted rows do not count, and a
// revived row is checked like any other.
TYPED_TEST(StateStoreContractTest, VolumeTypeNamesAreUniqueAmongLiveRows) {
  Row stored = this->MustInsert(Table::kVolumeTypes, VolumeTypeRow("t1", "gold"));
  EXPECT_EQ(stored.size(), ports::Columns(Table::kVolumeTypes).size());
  EXPECT_EQ(stored.at("is_public"), Int(1));
  EXPECT_EQ(stored.at("extra_specs"), Text("{}"));
  EXPECT_EQ(stored.at("description"), kNull);
  EXPECT_EQ(stored.at("qos_specs_id"), kNull);

  auto duplicate = this->store().Insert(Table::kVolumeTypes, VolumeTypeRow("t2", "gold"));
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code, ErrorCode::kConflict) << duplicate.error().ToString();
  EXPECT_FALSE(this->store().Get(Table::kVolumeTypes, "t2"));

  // Deleted rows do not count, either way round.
  this->MustInsert(Table::kVolumeTypes, VolumeTypeRow("t3", "gold", 1));
  this->MustInsert(Table::kVolumeTypes, VolumeTypeRow("t4", "silver"));
  Row before = this->MustGet(Table::kVolumeTypes, "t4");
  auto renamed =
      this->store().ConditionalUpdate(Table::kVolumeTypes, "t4", {{"name", Text("gold")}}, {}, {});
  ASSERT_FALSE(renamed);
  EXPECT_EQ(renamed.error().code, ErrorCode::kConflict) << renamed.error().ToString();
  EXPECT_EQ(this->MustGet(Table::kVolumeTypes, "t4"), before);

  // A row keeps its own name; a failed expectation is no conflict.
  auto same = this->store().ConditionalUpdate(
      Table::kVolumeTypes, "t1", {{"name", Text("gold")}, {"description", Text("d")}}, {}, {});
  ASSERT_TRUE(same) << same.error().ToString();
  EXPECT_TRUE(same->has_value());
  auto unmatched = this->store().ConditionalUpdate(Table::kVolumeTypes,
                                                   "t4",
                                                   {{"name", Text("gold")}},
                                                   {Expectation::Equals("deleted", Int(1))},
                                                   {});
  ASSERT_TRUE(unmatched) << unmatched.error().ToString();
  EXPECT_FALSE(unmatched->has_value());

  // Soft-deleting frees the name; reviving a row whose name is taken again is a conflict.
  auto deleted = this->store().ConditionalUpdate(Table::kVolumeTypes,
                                                 "t1",
                                                 {{"deleted", Int(1)}},
                                                 {Expectation::Equals("deleted", Int(0))},
                                                 {});
  ASSERT_TRUE(deleted && deleted->has_value());
  this->MustInsert(Table::kVolumeTypes, VolumeTypeRow("t5", "gold"));
  auto revived =
      this->store().ConditionalUpdate(Table::kVolumeTypes, "t1", {{"deleted", Int(0)}}, {}, {});
  ASSERT_FALSE(revived);
  EXPECT_EQ(revived.error().code, ErrorCode::kConflict);
  EXPECT_EQ(this->MustGet(Table::kVolumeTypes, "t1").at("deleted"), Int(1));

  ListQuery live;
  live.filters = {Expectation::Equals("name", Text("gold"))};
  EXPECT_EQ(this->ListIds(Table::kVolumeTypes, live), std::vector<std::string>{"t5"});
}

// The guard that makes a type's delete and a volume taking the type exclude each other
// (services/volume_type_record.h): no live volume may have the type's id in volume_type_id.
// Also the access table, whose id is "<type>:<project>".
TYPED_TEST(StateStoreContractTest, TypeDeleteGuardSeesLiveVolumesOfTheTypeAndAccessRoundTrips) {
  this->MustInsert(Table::kVolumeTypes, VolumeTypeRow("t1", "gold"));
  Row volume = Volume("v1");
  volume["volume_type_id"] = Text("t1");
  this->MustInsert(Table::kVolumes, volume);
  const std::vector<Guard> guards = {Guard::NoLiveRowReferences(Table::kVolumes, "volume_type_id")};
  auto refused =
      this->store().ConditionalUpdate(Table::kVolumeTypes, "t1", {{"deleted", Int(1)}}, {}, guards);
  ASSERT_TRUE(refused) << refused.error().ToString();
  EXPECT_FALSE(refused->has_value());
  this->MustWin("v1", {{"deleted", Int(1)}}, {});
  auto allowed =
      this->store().ConditionalUpdate(Table::kVolumeTypes, "t1", {{"deleted", Int(1)}}, {}, guards);
  ASSERT_TRUE(allowed) << allowed.error().ToString();
  EXPECT_TRUE(allowed->has_value());

  Row grant = {{"id", Text("t1:p1")},
               {"volume_type_id", Text("t1")},
               {"project_id", Text("p1")},
               {"created_at", Text(kCreatedAt)}};
  Row stored = this->MustInsert(Table::kVolumeTypeAccess, grant);
  EXPECT_EQ(stored.size(), ports::Columns(Table::kVolumeTypeAccess).size());
  EXPECT_EQ(stored.at("deleted"), Int(0));
  auto again = this->store().Insert(Table::kVolumeTypeAccess, grant);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  ListQuery of_type;
  of_type.filters = {Expectation::Equals("volume_type_id", Text("t1"))};
  EXPECT_EQ(this->ListIds(Table::kVolumeTypeAccess, of_type), std::vector<std::string>{"t1:p1"});
}

// --- Usage counters (quotas) --------------------------------------------------------------------

std::int64_t InUse(ports::StateStore& store, const std::string& project, const std::string& what) {
  auto row = store.Get(Table::kQuotaUsages, ports::UsageCounterId(project, what));
  if (!row) {
    return 0;  // A counter never written counts nothing.
  }
  return std::get<std::int64_t>(row->at("in_use"));
}

ports::UsageChange Change(const char* resource, std::int64_t delta, std::int64_t limit = -1) {
  return ports::UsageChange{"p1", resource, delta, limit};
}

TYPED_TEST(StateStoreContractTest, InsertWithUsageCountsAtomicallyAndRefusesPastTheLimit) {
  ports::StateStore& store = this->store();
  Row first = Volume("v1");
  first["size_gib"] = Int(4);
  auto inserted =
      store.InsertWithUsage(Table::kVolumes, first, {Change("volumes", 1, 2), Change("gb", 4, 5)});
  ASSERT_TRUE(inserted) << inserted.error().ToString();
  EXPECT_EQ(InUse(store, "p1", "volumes"), 1);
  EXPECT_EQ(InUse(store, "p1", "gb"), 4);
  Row counter = this->MustGet(Table::kQuotaUsages, "p1/volumes");
  EXPECT_EQ(counter.at("project_id"), Text("p1"));
  EXPECT_EQ(counter.at("resource"), Text("volumes"));

  // The second counter would pass its limit: nothing is written, the first counter included.
  auto refused = store.InsertWithUsage(
      Table::kVolumes, Volume("v2"), {Change("volumes", 1, 2), Change("gb", 2, 5)});
  ASSERT_FALSE(refused);
  ASSERT_EQ(refused.error().code, ErrorCode::kQuotaExceeded) << refused.error().ToString();
  std::optional<ports::QuotaExceededInfo> info = ports::ParseQuotaExceeded(refused.error());
  ASSERT_TRUE(info.has_value()) << refused.error().message;
  EXPECT_EQ(info->project_id, "p1");
  EXPECT_EQ(info->resource, "gb");
  EXPECT_EQ(info->limit, 5);
  EXPECT_EQ(info->in_use, 4);
  EXPECT_EQ(info->requested, 2);
  EXPECT_EQ(store.Get(Table::kVolumes, "v2").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(InUse(store, "p1", "volumes"), 1);
  EXPECT_EQ(InUse(store, "p1", "gb"), 4);

  // Exactly at the limit is allowed; a negative limit is unlimited.
  ASSERT_TRUE(
      store.InsertWithUsage(Table::kVolumes,
                            Volume("v3"),
                            {Change("volumes", 1, 2), Change("gb", 1, 5), Change("x", 100, -1)}));
  EXPECT_EQ(InUse(store, "p1", "volumes"), 2);
  EXPECT_EQ(InUse(store, "p1", "gb"), 5);
  EXPECT_EQ(InUse(store, "p1", "x"), 100);
  // A limit of 0 refuses any increase.
  auto zero = store.InsertWithUsage(Table::kVolumes, Volume("v4"), {Change("zero", 1, 0)});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, ErrorCode::kQuotaExceeded);
}

TYPED_TEST(StateStoreContractTest, ADuplicateInsertChangesNoCounter) {
  ports::StateStore& store = this->store();
  ASSERT_TRUE(store.InsertWithUsage(Table::kVolumes, Volume("v1"), {Change("volumes", 1)}));
  auto again = store.InsertWithUsage(Table::kVolumes, Volume("v1"), {Change("volumes", 1)});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_EQ(InUse(store, "p1", "volumes"), 1);
}

TYPED_TEST(StateStoreContractTest, ConditionalUpdateWithUsageAppliesOnlyWithTheUpdate) {
  ports::StateStore& store = this->store();
  ASSERT_TRUE(store.InsertWithUsage(Table::kVolumes, Volume("v1"), {Change("volumes", 1)}));
  // Expectations fail: no counter changes.
  auto lost = store.ConditionalUpdateWithUsage(Table::kVolumes,
                                               "v1",
                                               {{"deleted", Int(1)}},
                                               {Expectation::Equals("status", Text("error"))},
                                               {},
                                               {Change("volumes", -1)});
  ASSERT_TRUE(lost) << lost.error().ToString();
  EXPECT_FALSE(lost->has_value());
  EXPECT_EQ(InUse(store, "p1", "volumes"), 1);
  // A guard fails: no counter changes either.
  this->MustInsert(Table::kSnapshots, Snapshot("s1", "v1"));
  auto guarded =
      store.ConditionalUpdateWithUsage(Table::kVolumes,
                                       "v1",
                                       {{"deleted", Int(1)}},
                                       {},
                                       {Guard::NoLiveRowReferences(Table::kSnapshots, "volume_id")},
                                       {Change("volumes", -1)});
  ASSERT_TRUE(guarded) << guarded.error().ToString();
  EXPECT_FALSE(guarded->has_value());
  EXPECT_EQ(InUse(store, "p1", "volumes"), 1);
  // A missing row: nothing.
  auto missing = store.ConditionalUpdateWithUsage(
      Table::kVolumes, "nope", {{"deleted", Int(1)}}, {}, {}, {Change("volumes", -1)});
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
  EXPECT_EQ(InUse(store, "p1", "volumes"), 1);
  // Over the limit: neither the row nor any counter changes.
  auto over = store.ConditionalUpdateWithUsage(Table::kVolumes,
                                               "v1",
                                               {{"size_gib", Int(50)}},
                                               {},
                                               {},
                                               {Change("volumes", -1), Change("gb", 50, 10)});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, ErrorCode::kQuotaExceeded);
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v1").at("size_gib"), Int(0));
  EXPECT_EQ(InUse(store, "p1", "volumes"), 1);
  EXPECT_EQ(InUse(store, "p1", "gb"), 0);
  // It applies: the counter moves with it. A release is never refused, whatever the limit.
  auto applied =
      store.ConditionalUpdateWithUsage(Table::kVolumes,
                                       "v1",
                                       {{"status", Text("error")}},
                                       {Expectation::Equals("status", Text("available"))},
                                       {},
                                       {Change("volumes", -1, 0), Change("other", 3, 3)});
  ASSERT_TRUE(applied) << applied.error().ToString();
  ASSERT_TRUE(applied->has_value());
  EXPECT_EQ(InUse(store, "p1", "volumes"), 0);
  EXPECT_EQ(InUse(store, "p1", "other"), 3);
}

TYPED_TEST(StateStoreContractTest, AUsageChangeNeedsAProjectAndAResource) {
  ExpectInvalid(this->store().InsertWithUsage(
      Table::kVolumes, Volume("v1"), {ports::UsageChange{"", "volumes", 1, -1}}));
  ExpectInvalid(this->store().ConditionalUpdateWithUsage(
      Table::kVolumes, "v1", {}, {}, {}, {ports::UsageChange{"p1", "", 1, -1}}));
  EXPECT_EQ(this->store().Get(Table::kVolumes, "v1").error().code, ErrorCode::kNotFound);
}

// A back-end pool's allocated capacity (kPoolCapacity): the same atomic counter, in
// pool_capacity, keyed by the pool alone (no project), with the volume write that reserves it.
TYPED_TEST(StateStoreContractTest, PoolCapacityCountersMoveWithTheVolumeWriteAndStopAtTheLimit) {
  ports::StateStore& store = this->store();
  auto pool = [](std::int64_t delta, std::int64_t limit) {
    return ports::UsageChange{
        "", "h@file#default", delta, limit, ports::UsageChange::Counter::kPoolCapacity};
  };
  auto allocated = [&]() -> std::int64_t {
    auto row = store.Get(Table::kPoolCapacity, "h@file#default");
    return row ? std::get<std::int64_t>(row->at("allocated_capacity_gb")) : 0;
  };
  this->MustInsert(Table::kVolumes, Volume("v1"));
  this->MustInsert(Table::kVolumes, Volume("v2"));
  auto placed = store.ConditionalUpdateWithUsage(
      Table::kVolumes,
      "v1",
      {{"host", Text("h@file#default")}, {"capacity_reserved_gib", Int(6)}},
      {Expectation::IsNull("host")},
      {},
      {pool(6, 10)});
  ASSERT_TRUE(placed) << placed.error().ToString();
  ASSERT_TRUE(placed->has_value());
  EXPECT_EQ(allocated(), 6);
  EXPECT_FALSE(store.Get(Table::kQuotaUsages, "/h@file#default").has_value());
  // Past the pool's limit: neither the volume nor the counter changes.
  auto full = store.ConditionalUpdateWithUsage(Table::kVolumes,
                                               "v2",
                                               {{"host", Text("h@file#default")}},
                                               {Expectation::IsNull("host")},
                                               {},
                                               {pool(5, 10)});
  ASSERT_FALSE(full);
  ASSERT_EQ(full.error().code, ErrorCode::kQuotaExceeded);
  std::optional<ports::QuotaExceededInfo> info = ports::ParseQuotaExceeded(full.error());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->resource, "h@file#default");
  EXPECT_EQ(info->in_use, 6);
  EXPECT_EQ(info->limit, 10);
  EXPECT_EQ(this->MustGet(Table::kVolumes, "v2").at("host"), Value());
  EXPECT_EQ(allocated(), 6);
  // The release goes with the write that ends the volume, once: its expectation fails after.
  for (int round = 0; round < 2; ++round) {
    auto released =
        store.ConditionalUpdateWithUsage(Table::kVolumes,
                                         "v1",
                                         {{"deleted", Int(1)}, {"capacity_reserved_gib", Int(0)}},
                                         {Expectation::Equals("capacity_reserved_gib", Int(6))},
                                         {},
                                         {pool(-6, -1)});
    ASSERT_TRUE(released) << released.error().ToString();
    EXPECT_EQ(released->has_value(), round == 0);
    EXPECT_EQ(allocated(), 0);
  }
  // A pool change needs a pool (and no project).
  ExpectInvalid(store.InsertWithUsage(
      Table::kVolumes,
      Volume("v3"),
      {ports::UsageChange{"", "", 1, -1, ports::UsageChange::Counter::kPoolCapacity}}));
  EXPECT_EQ(store.Get(Table::kVolumes, "v3").error().code, ErrorCode::kNotFound);
}

TYPED_TEST(StateStoreContractTest, QuotaLimitRowsRoundTrip) {
  this->MustInsert(Table::kQuotas,
                   Row{{"id", Text("p1/volumes")},
                       {"project_id", Text("p1")},
                       {"resource", Text("volumes")},
                       {"hard_limit", Int(7)}});
  this->MustInsert(Table::kQuotaClasses,
                   Row{{"id", Text("default/gigabytes")},
                       {"class_name", Text("default")},
                       {"resource", Text("gigabytes")}});
  EXPECT_EQ(this->MustGet(Table::kQuotas, "p1/volumes").at("hard_limit"), Int(7));
  EXPECT_EQ(this->MustGet(Table::kQuotaClasses, "default/gigabytes").at("hard_limit"), Int(-1));
  ListQuery query;
  query.filters = {Expectation::Equals("project_id", Text("p1"))};
  EXPECT_EQ(this->ListIds(Table::kQuotas, query), std::vector<std::string>{"p1/volumes"});
}

// N threads insert against a limit of K: exactly K inserts succeed, the others are refused with
// kQuotaExceeded, and the counter ends at K. Then they all delete: the counter ends at 0.
TYPED_TEST(StateStoreContractTest, RacingInsertsAgainstALimitAdmitExactlyTheLimit) {
  constexpr int kThreads = 16;
  constexpr int kPerThread = 4;
  constexpr std::int64_t kLimit = 10;
  std::atomic<int> accepted{0};
  std::atomic<int> refused{0};
  std::atomic<int> errors{0};
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      sync.arrive_and_wait();
      for (int i = 0; i < kPerThread; ++i) {
        std::string id = "race-" + std::to_string(t) + "-" + std::to_string(i);
        Row row = Volume(id);
        row["size_gib"] = Int(1);
        auto inserted = this->store().InsertWithUsage(
            Table::kVolumes, row, {Change("volumes", 1, kLimit), Change("gigabytes", 1, -1)});
        if (inserted) {
          accepted.fetch_add(1);
        } else if (inserted.error().code == ErrorCode::kQuotaExceeded) {
          refused.fetch_add(1);
        } else {
          errors.fetch_add(1);
          ADD_FAILURE() << inserted.error().ToString();
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(accepted.load(), kLimit);
  EXPECT_EQ(refused.load(), std::int64_t{kThreads} * kPerThread - kLimit);
  EXPECT_EQ(InUse(this->store(), "p1", "volumes"), kLimit);
  EXPECT_EQ(InUse(this->store(), "p1", "gigabytes"), kLimit);
  ListQuery all;
  auto rows = this->store().List(Table::kVolumes, all);
  ASSERT_TRUE(rows);
  ASSERT_EQ(static_cast<std::int64_t>(rows->size()), kLimit);

  // Racing deletes of the same rows: each row is released exactly once.
  threads.clear();
  std::barrier again(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      again.arrive_and_wait();
      for (const Row& row : *rows) {
        auto deleted = this->store().ConditionalUpdateWithUsage(
            Table::kVolumes,
            std::get<std::string>(row.at("id")),
            {{"deleted", Int(1)}},
            {Expectation::Equals("deleted", Int(0))},
            {},
            {Change("volumes", -1), Change("gigabytes", -1)});
        if (!deleted) {
          errors.fetch_add(1);
          ADD_FAILURE() << deleted.error().ToString();
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(InUse(this->store(), "p1", "volumes"), 0);
  EXPECT_EQ(InUse(this->store(), "p1", "gigabytes"), 0);
}

// --- Generic volume groups ----------------------------------------------------------------------

// The group tables (migration 11) round-trip with their defaults; group type names are
// live-unique like volume type names; and the guard group completion rests on
// (services/group_completion.h): "no live member snapshot of this group snapshot is still
// creating" holds only once every member left those statuses, and "no live member volume" only
// once every member is soft-deleted.
TYPED_TEST(StateStoreContractTest, GroupTablesRoundTripAndTheCompletionGuardsSeeBusyMembers) {
  Row type = {{"id", Text("gt1")}, {"name", Text("gold")}, {"created_at", Text(kCreatedAt)}};
  Row stored_type = this->MustInsert(Table::kGroupTypes, type);
  EXPECT_EQ(stored_type.size(), ports::Columns(Table::kGroupTypes).size());
  EXPECT_EQ(stored_type.at("is_public"), Int(1));
  EXPECT_EQ(stored_type.at("group_specs"), Text("{}"));
  Row same_name = {{"id", Text("gt2")}, {"name", Text("gold")}, {"created_at", Text(kCreatedAt)}};
  auto duplicate = this->store().Insert(Table::kGroupTypes, same_name);
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code, ErrorCode::kConflict) << duplicate.error().ToString();

  Row group = {{"id", Text("g1")},
               {"project_id", Text("p1")},
               {"user_id", Text("u1")},
               {"status", Text("available")},
               {"group_type_id", Text("gt1")},
               {"created_at", Text(kCreatedAt)}};
  Row stored_group = this->MustInsert(Table::kGroups, group);
  EXPECT_EQ(stored_group.size(), ports::Columns(Table::kGroups).size());
  EXPECT_EQ(stored_group.at("volume_type_ids"), Text("[]"));
  EXPECT_EQ(stored_group.at("availability_zone"), Text("nova"));
  EXPECT_EQ(stored_group.at("source_group_id"), kNull);
  // The group type's delete guard: no live group of the type.
  const std::vector<Guard> type_guard = {
      Guard::NoLiveRowReferences(Table::kGroups, "group_type_id")};
  auto type_in_use = this->store().ConditionalUpdate(
      Table::kGroupTypes, "gt1", {{"deleted", Int(1)}}, {}, type_guard);
  ASSERT_TRUE(type_in_use) << type_in_use.error().ToString();
  EXPECT_FALSE(type_in_use->has_value());

  Row group_snapshot = {{"id", Text("gs1")},
                        {"project_id", Text("p1")},
                        {"user_id", Text("u1")},
                        {"group_id", Text("g1")},
                        {"group_type_id", Text("gt1")},
                        {"status", Text("creating")},
                        {"created_at", Text(kCreatedAt)}};
  EXPECT_EQ(this->MustInsert(Table::kGroupSnapshots, group_snapshot).size(),
            ports::Columns(Table::kGroupSnapshots).size());
  Row volume = Volume("v1");
  volume["group_id"] = Text("g1");
  this->MustInsert(Table::kVolumes, volume);
  for (const char* id : {"s1", "s2"}) {
    Row snapshot = Snapshot(id, "v1");
    snapshot["status"] = Text("creating");
    snapshot["group_snapshot_id"] = Text("gs1");
    this->MustInsert(Table::kSnapshots, snapshot);
  }
  const std::vector<Guard> none_creating = {Guard::NoLiveRowReferences(
      Table::kSnapshots,
      "group_snapshot_id",
      {Expectation::In("status", {Text("creating_queued"), Text("creating")})})};
  auto complete = [&] {
    return this->store().ConditionalUpdate(Table::kGroupSnapshots,
                                           "gs1",
                                           {{"status", Text("available")}},
                                           {Expectation::Equals("status", Text("creating"))},
                                           none_creating);
  };
  auto early = complete();
  ASSERT_TRUE(early) << early.error().ToString();
  EXPECT_FALSE(early->has_value()) << "completed with two members still creating";
  ASSERT_TRUE(this->store().ConditionalUpdate(
      Table::kSnapshots, "s1", {{"status", Text("available")}}, {}, {}));
  auto still_early = complete();
  ASSERT_TRUE(still_early) << still_early.error().ToString();
  EXPECT_FALSE(still_early->has_value()) << "completed with one member still creating";
  ASSERT_TRUE(this->store().ConditionalUpdate(
      Table::kSnapshots, "s2", {{"status", Text("available")}}, {}, {}));
  auto done = complete();
  ASSERT_TRUE(done) << done.error().ToString();
  EXPECT_TRUE(done->has_value());
  auto again = complete();
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_FALSE(again->has_value()) << "completed twice";

  // A group's delete completes only when no live member volume is left.
  const std::vector<Guard> no_member = {Guard::NoLiveRowReferences(Table::kVolumes, "group_id")};
  auto refused =
      this->store().ConditionalUpdate(Table::kGroups, "g1", {{"deleted", Int(1)}}, {}, no_member);
  ASSERT_TRUE(refused) << refused.error().ToString();
  EXPECT_FALSE(refused->has_value());
  this->MustWin("v1", {{"deleted", Int(1)}}, {});
  auto allowed =
      this->store().ConditionalUpdate(Table::kGroups, "g1", {{"deleted", Int(1)}}, {}, no_member);
  ASSERT_TRUE(allowed) << allowed.error().ToString();
  EXPECT_TRUE(allowed->has_value());
  ListQuery members;
  members.filters = {Expectation::Equals("group_snapshot_id", Text("gs1"))};
  EXPECT_EQ(this->ListIds(Table::kSnapshots, members), (std::vector<std::string>{"s1", "s2"}));
}

// --- Backups ------------------------------------------------------------------------------------

// The backup columns of migration 12 round-trip with their defaults, and service_metadata is
// filterable (a backup's delete asks whether another live backup names its data).
TYPED_TEST(StateStoreContractTest, BackupDataColumnsRoundTripAndFilter) {
  Row backup = {{"id", Text("b1")},
                {"project_id", Text("p1")},
                {"user_id", Text("u1")},
                {"volume_id", Text("v1")},
                {"status", Text("available")},
                {"created_at", Text(kCreatedAt)}};
  Row stored = this->MustInsert(Table::kBackups, backup);
  EXPECT_EQ(stored.size(), ports::Columns(Table::kBackups).size());
  EXPECT_EQ(stored.at("volume_metadata"), Text("{}"));
  EXPECT_EQ(stored.at("service_metadata"), kNull);
  Row imported = backup;
  imported["id"] = Text("b2");
  imported["volume_metadata"] = Text(R"({"k":"v"})");
  imported["service_metadata"] = Text("b1");
  Row stored_import = this->MustInsert(Table::kBackups, imported);
  EXPECT_EQ(stored_import.at("volume_metadata"), Text(R"({"k":"v"})"));
  ListQuery sharing;
  sharing.filters = {Expectation::Equals("service_metadata", Text("b1")),
                     Expectation::Equals("deleted", Int(0))};
  EXPECT_EQ(this->ListIds(Table::kBackups, sharing), (std::vector<std::string>{"b2"}));
}

}  // namespace
}  // namespace clinker::adapters
