// PostgresStateStore specifics that the shared contract tests cannot show.
//
// Goal: atomicity across separate instances (as separate processes would have); guards that stay
// race-free against concurrent reference creation (the write skew a NOT EXISTS subquery allows
// under READ COMMITTED); migration bookkeeping (applied once, safe when several stores open a
// fresh database at once) and migration 1 matching ports/state_schema.cc; pooled connections
// that die are replaced; the error mapping: unreachable server and serialization failures past
// the retry budget are kUnavailable, a connection lost while COMMIT is in flight is
// kOutcomeUnknown; text that PostgreSQL cannot hold is refused; byte-wise text order even in a
// database whose default collation is not.
//
// Method: each test works in a fresh database on the PostgreSQL server of the CTest fixture
// "postgres" ($CLINKER_TEST_SERVERS_DIR/postgres/env), dropped afterwards; without that server
// every test fails saying how to start it. Interleavings the port cannot express are produced
// with a separate libpqxx connection (an open SERIALIZABLE "creator" transaction, a row lock
// held while the store waits, a COMMIT held in a synchronous-replication wait for a standby that
// never comes), and the test waits (bounded) until pg_stat_activity shows the store's backend in
// the wanted state before acting. Races run with one store per thread, released together by a
// barrier, for a fixed number of rounds.
#include "clinker/adapters/postgres/postgres_state_store.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pqxx/pqxx>
#include <sys/socket.h>
#include <unistd.h>

#include "clinker/core/uuid.h"
#include "clinker/ports/state_schema.h"

#include "support/test_servers.h"

namespace clinker::adapters {
namespace {

using ports::Expectation;
using ports::Guard;
using ports::Row;
using ports::Table;
using ports::Value;

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

// A fresh database on the PostgreSQL test server (created with `create_options`), dropped with
// any session left in it on destruction. error() says why there is none.
class PostgresTestDatabase {
 public:
  explicit PostgresTestDatabase(const std::string& create_options = "") {
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
      tx.exec("CREATE DATABASE " + tx.quote_name(name) + " " + create_options);
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

  const std::string& server_uri() const { return server_uri_; }

  const std::string& name() const { return name_; }

  const std::string& uri() const { return uri_; }

  const std::string& error() const { return error_; }

 private:
  std::string server_uri_;
  std::string name_;
  std::string uri_;
  std::string error_;
};

// Polls `condition` every 10 ms for at most `limit`; true as soon as it holds.
template <class Condition>
bool WaitFor(std::chrono::milliseconds limit, Condition condition) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (int polls = 0; polls < 100000; ++polls) {
    if (condition()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

Row Volume(const std::string& id) {
  return Row{{"id", id},
             {"project_id", std::string("p1")},
             {"user_id", std::string("u1")},
             {"status", std::string("available")},
             {"created_at", std::string("2024-01-01T00:00:00.000000")}};
}

Row Snapshot(const std::string& id, const std::string& volume_id) {
  return Row{{"id", id},
             {"project_id", std::string("p1")},
             {"user_id", std::string("u1")},
             {"volume_id", volume_id},
             {"status", std::string("creating")},
             {"created_at", std::string("2024-01-01T00:00:00.000000")}};
}

Value Text(const char* text) {
  return Value(std::string(text));
}

std::vector<Guard> NoLiveSnapshots() {
  return {Guard::NoLiveRowReferences(Table::kSnapshots, "volume_id")};
}

class PostgresStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(database_.error().empty()) << database_.error(); }

  PostgresStateStore::Options Options() const {
    PostgresStateStore::Options options;
    options.uri = database_.uri();
    return options;
  }

  std::unique_ptr<PostgresStateStore> MustOpen(const PostgresStateStore::Options& options) {
    auto store = PostgresStateStore::Open(options);
    EXPECT_TRUE(store) << store.error().ToString();
    return store ? std::move(*store) : nullptr;
  }

  std::unique_ptr<PostgresStateStore> MustOpen() { return MustOpen(Options()); }

  // Runs one statement on a separate connection to the test database.
  pqxx::result Sql(const std::string& sql) {
    pqxx::connection connection(database_.uri());
    pqxx::nontransaction tx(connection);
    return tx.exec(sql);
  }

  std::int64_t SqlInt(const std::string& sql) { return Sql(sql)[0][0].as<std::int64_t>(); }

  // Client sessions of this database other than the caller's, in `wait_event` if given.
  static std::string SessionsWhere(const std::string& wait_event = "") {
    std::string where =
        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = "
        "'client backend'";
    if (!wait_event.empty()) {
      where += " AND wait_event = '" + wait_event + "'";
    }
    return where;
  }

  std::int64_t Backends(const std::string& wait_event = "") {
    return SqlInt("SELECT count(*) FROM pg_stat_activity" + SessionsWhere(wait_event));
  }

  std::set<std::int64_t> BackendPids() {
    std::set<std::int64_t> pids;
    for (const pqxx::row& row : Sql("SELECT pid FROM pg_stat_activity" + SessionsWhere())) {
      pids.insert(row[0].as<std::int64_t>());
    }
    return pids;
  }

  // Terminates those sessions; returns how many were signalled.
  std::int64_t TerminateBackends(const std::string& wait_event = "") {
    return SqlInt(
        "SELECT count(*) FILTER (WHERE terminated) FROM (SELECT pg_terminate_backend(pid) AS "
        "terminated FROM pg_stat_activity" +
        SessionsWhere(wait_event) + ") AS signalled");
  }

  PostgresTestDatabase database_;
};

TEST_F(PostgresStateStoreTest, OneWinnerPerRoundAmongSixteenStores) {
  constexpr int kThreads = 16;
  constexpr int kRounds = 100;
  std::unique_ptr<PostgresStateStore> setup = MustOpen();
  ASSERT_NE(setup, nullptr);
  std::vector<std::unique_ptr<PostgresStateStore>> stores;
  for (int t = 0; t < kThreads; ++t) {
    stores.push_back(MustOpen());
    ASSERT_NE(stores.back(), nullptr);
  }

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
        sync.arrive_and_wait();
        auto updated = stores[t]->ConditionalUpdate(
            Table::kVolumes,
            round_id,
            {{"status", Text("deleting_queued")}, {"operation_id", Value(std::to_string(t))}},
            {Expectation::Equals("status", Text("available"))},
            {});
        if (!updated) {
          errors.fetch_add(1);
          ADD_FAILURE() << updated.error().ToString();
        } else if (updated->has_value()) {
          winners.fetch_add(1);
          winner_index.store(t);
        }
        sync.arrive_and_wait();
      }
    });
  }
  int bad_rounds = 0;
  for (int round = 0; round < kRounds; ++round) {
    round_id = "race-" + std::to_string(round);
    winners.store(0);
    winner_index.store(-1);
    auto inserted = setup->Insert(Table::kVolumes, Volume(round_id));
    EXPECT_TRUE(inserted) << inserted.error().ToString();
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    if (winners.load() != 1) {
      ++bad_rounds;
      continue;
    }
    auto row = setup->Get(Table::kVolumes, round_id);
    ASSERT_TRUE(row) << row.error().ToString();
    EXPECT_EQ(row->at("operation_id"), Value(std::to_string(winner_index.load())));
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(bad_rounds, 0);
  EXPECT_EQ(errors.load(), 0);
}

// The write skew of infra notes: a creator transaction checks the volume and inserts a snapshot;
// before it commits, the guarded delete runs and cannot see the snapshot. Under READ COMMITTED
// both commit (a deleting volume with a live snapshot). With the store's SERIALIZABLE update,
// PostgreSQL refuses one of them.
TEST_F(PostgresStateStoreTest, GuardedDeleteAndAConcurrentSerializableCreatorNeverBothCommit) {
  std::unique_ptr<PostgresStateStore> store = MustOpen();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Insert(Table::kVolumes, Volume("v1")));

  pqxx::connection creator_connection(database_.uri());
  pqxx::transaction<pqxx::serializable> creator(creator_connection);
  pqxx::result status = creator.exec("SELECT status FROM volumes WHERE id = 'v1'");
  ASSERT_EQ(status.size(), 1u);
  ASSERT_EQ(status[0][0].as<std::string>(), "available");
  creator.exec(
      "INSERT INTO snapshots (id, project_id, user_id, volume_id, status, created_at) "
      "VALUES ('s1', 'p1', 'u1', 'v1', 'creating', '2024-01-01T00:00:00.000000')");

  auto deleted = store->ConditionalUpdate(Table::kVolumes,
                                          "v1",
                                          {{"status", Text("deleting")}},
                                          {Expectation::Equals("status", Text("available"))},
                                          NoLiveSnapshots());
  bool creator_committed = false;
  try {
    creator.commit();
    creator_committed = true;
  } catch (const pqxx::serialization_failure&) {
    creator_committed = false;
  }
  bool delete_applied = deleted && deleted->has_value();
  EXPECT_FALSE(delete_applied && creator_committed)
      << "write skew: the volume is deleting and has a live snapshot";
  // Measured on PostgreSQL 15: the first committer (the delete) wins, the creator gets 40001.
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_TRUE(delete_applied);
  EXPECT_FALSE(creator_committed);
  EXPECT_EQ(SqlInt("SELECT count(*) FROM snapshots WHERE volume_id = 'v1' AND deleted = 0"),
            delete_applied ? 0 : 1);
}

// The same race through the port only: a creator reserves by inserting a live snapshot, then
// verifies the volume is still available (a conditional update with no values) and withdraws
// the snapshot if not; a deleter runs the guarded delete. Each call is atomic, so in any order
// at most one of "creator verified" and "volume deleted" happens.
TEST_F(PostgresStateStoreTest, ReservingCreatorAndGuardedDeleteNeverBothSucceed) {
  constexpr int kRounds = 200;
  std::unique_ptr<PostgresStateStore> setup = MustOpen();
  std::unique_ptr<PostgresStateStore> creator = MustOpen();
  std::unique_ptr<PostgresStateStore> deleter = MustOpen();
  ASSERT_TRUE(setup && creator && deleter);

  std::string volume_id;
  std::string snapshot_id;
  std::atomic<bool> verified{false};
  std::atomic<bool> deleted{false};
  std::atomic<int> errors{0};
  std::barrier sync(3);
  auto creator_loop = [&] {
    for (int round = 0; round < kRounds; ++round) {
      sync.arrive_and_wait();
      auto inserted = creator->Insert(Table::kSnapshots, Snapshot(snapshot_id, volume_id));
      auto check =
          inserted ? creator->ConditionalUpdate(Table::kVolumes,
                                                volume_id,
                                                {},
                                                {Expectation::Equals("status", Text("available"))},
                                                {})
                   : Result<std::optional<Row>>(tl::unexpected(inserted.error()));
      if (!check) {
        errors.fetch_add(1);
        ADD_FAILURE() << check.error().ToString();
      } else if (check->has_value()) {
        verified.store(true);
      } else {
        auto withdrawn =
            creator->ConditionalUpdate(Table::kSnapshots,
                                       snapshot_id,
                                       {{"status", Text("error")}, {"deleted", std::int64_t{1}}},
                                       {},
                                       {});
        if (!withdrawn || !withdrawn->has_value()) {
          errors.fetch_add(1);
        }
      }
      sync.arrive_and_wait();
    }
  };
  auto deleter_loop = [&] {
    for (int round = 0; round < kRounds; ++round) {
      sync.arrive_and_wait();
      auto result = deleter->ConditionalUpdate(Table::kVolumes,
                                               volume_id,
                                               {{"status", Text("deleting")}},
                                               {Expectation::Equals("status", Text("available"))},
                                               NoLiveSnapshots());
      if (!result) {
        errors.fetch_add(1);
        ADD_FAILURE() << result.error().ToString();
      } else if (result->has_value()) {
        deleted.store(true);
      }
      sync.arrive_and_wait();
    }
  };
  std::thread creator_thread(creator_loop);
  std::thread deleter_thread(deleter_loop);
  int both = 0;
  int creator_wins = 0;
  int deleter_wins = 0;
  for (int round = 0; round < kRounds; ++round) {
    volume_id = "v" + std::to_string(round);
    snapshot_id = "s" + std::to_string(round);
    verified.store(false);
    deleted.store(false);
    auto inserted = setup->Insert(Table::kVolumes, Volume(volume_id));
    EXPECT_TRUE(inserted) << inserted.error().ToString();
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    both += verified.load() && deleted.load() ? 1 : 0;
    creator_wins += verified.load() && !deleted.load() ? 1 : 0;
    deleter_wins += deleted.load() && !verified.load() ? 1 : 0;
  }
  creator_thread.join();
  deleter_thread.join();
  EXPECT_EQ(both, 0);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(creator_wins + deleter_wins, kRounds);
  // The invariant the guard exists for, over the whole table.
  EXPECT_EQ(SqlInt("SELECT count(*) FROM volumes v JOIN snapshots s ON s.volume_id = v.id "
                   "WHERE v.status = 'deleting' AND s.deleted = 0"),
            0);
  std::cout << "creator verified " << creator_wins << ", delete applied " << deleter_wins << " of "
            << kRounds << " rounds\n";
}

TEST_F(PostgresStateStoreTest, MigrationsAreRecordedOnceAndConcurrentOpensAreSafe) {
  constexpr int kStores = 8;
  std::vector<std::unique_ptr<PostgresStateStore>> stores(kStores);
  std::vector<std::string> errors(kStores);
  std::barrier sync(kStores);
  std::vector<std::thread> threads;
  threads.reserve(kStores);
  for (int i = 0; i < kStores; ++i) {
    threads.emplace_back([&, i] {
      sync.arrive_and_wait();
      auto store = PostgresStateStore::Open(Options());
      if (store) {
        stores[i] = std::move(*store);
      } else {
        errors[i] = store.error().ToString();
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (int i = 0; i < kStores; ++i) {
    EXPECT_TRUE(errors[i].empty()) << errors[i];
  }
  auto migrations = static_cast<std::int64_t>(PostgresStateStore::Migrations().size());
  EXPECT_EQ(SqlInt("SELECT count(*) FROM schema_migrations WHERE component = 'state'"), migrations);
  EXPECT_EQ(SqlInt("SELECT count(DISTINCT version) FROM schema_migrations "
                   "WHERE component = 'state' AND version BETWEEN 1 AND " +
                   std::to_string(migrations)),
            migrations);
  std::string applied_at = Sql("SELECT applied_at::text FROM schema_migrations "
                               "WHERE component = 'state' AND version = 1")[0][0]
                               .as<std::string>();

  // Every store works; reopening applies nothing.
  ASSERT_NE(stores[0], nullptr);
  ASSERT_TRUE(stores[0]->Insert(Table::kVolumes, Volume("v1")));
  stores.clear();
  std::unique_ptr<PostgresStateStore> reopened = MustOpen();
  ASSERT_NE(reopened, nullptr);
  EXPECT_TRUE(reopened->Get(Table::kVolumes, "v1"));
  EXPECT_EQ(SqlInt("SELECT count(*) FROM schema_migrations WHERE component = 'state'"), migrations);
  EXPECT_EQ(Sql("SELECT applied_at::text FROM schema_migrations "
                "WHERE component = 'state' AND version = 1")[0][0]
                .as<std::string>(),
            applied_at);
}

TEST_F(PostgresStateStoreTest, MigrationOneMatchesTheSchema) {
  ASSERT_NE(MustOpen(), nullptr);
  for (Table table : {Table::kVolumes,
                      Table::kSnapshots,
                      Table::kVolumeTypes,
                      Table::kVolumeTypeAccess,
                      Table::kGroupTypes,
                      Table::kGroups,
                      Table::kGroupSnapshots,
                      Table::kPoolCapacity}) {
    std::string name(ports::TableName(table));
    SCOPED_TRACE(name);
    pqxx::result columns = Sql(
        "SELECT column_name, data_type, is_nullable, column_default, collation_name "
        "FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = "
        "'" +
        name + "' ORDER BY ordinal_position");
    std::span<const ports::ColumnSpec> specs = ports::Columns(table);
    ASSERT_EQ(columns.size(), specs.size());
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const ports::ColumnSpec& spec = specs[i];
      const pqxx::row column = columns[static_cast<pqxx::result::size_type>(i)];
      SCOPED_TRACE(std::string(spec.name));
      EXPECT_EQ(column[0].as<std::string>(), spec.name);
      bool text = spec.type == ports::ColumnType::kText;
      EXPECT_EQ(column[1].as<std::string>(), text ? "text" : "bigint");
      EXPECT_EQ(column[2].as<std::string>(), spec.nullable ? "YES" : "NO");
      if (spec.default_value.empty()) {
        EXPECT_TRUE(column[3].is_null());
      } else {
        ASSERT_FALSE(column[3].is_null());
        EXPECT_EQ(column[3].as<std::string>(),
                  text ? "'" + std::string(spec.default_value) + "'::text"
                       : std::string(spec.default_value));
      }
      if (text) {
        ASSERT_FALSE(column[4].is_null());
        EXPECT_EQ(column[4].as<std::string>(), "C");
      }
    }
  }
  std::set<std::string> indexes;
  for (const pqxx::row& row :
       Sql("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND "
           "tablename IN ('volumes', 'snapshots', 'volume_types', 'volume_type_projects', "
           "'group_types', 'groups', 'group_snapshots')")) {
    indexes.insert(row[0].as<std::string>());
  }
  EXPECT_EQ(indexes,
            (std::set<std::string>{"volumes_pkey",
                                   "volumes_project_id",
                                   "volumes_deleted_created_at",
                                   "snapshots_pkey",
                                   "snapshots_project_id",
                                   "snapshots_deleted_created_at",
                                   "volumes_status",  // Migration 14.
                                   "snapshots_status",
                                   "snapshots_volume_id",
                                   // Migration 4: the guards on clones of a volume or snapshot.
                                   "volumes_source_volid",
                                   "volumes_snapshot_id",
                                   // Migration 5: volume types (the live-unique name, the guard
                                   // on a type's volumes, a type's access list).
                                   "volumes_volume_type_id",
                                   "volume_types_pkey",
                                   "volume_types_live_name",
                                   "volume_types_qos_specs_id",
                                   "volume_type_projects_pkey",
                                   "volume_type_projects_type",
                                   // Migration 11: generic groups (the live-unique group type
                                   // name, the completion and delete guards on members).
                                   "volumes_group_id",
                                   "snapshots_group_snapshot_id",
                                   "group_types_pkey",
                                   "group_types_live_name",
                                   "groups_pkey",
                                   "groups_project_id",
                                   "groups_group_type_id",
                                   "groups_group_snapshot_id",
                                   "groups_source_group_id",
                                   "group_snapshots_pkey",
                                   "group_snapshots_group_id",
                                   "group_snapshots_project_id"}));
}

TEST_F(PostgresStateStoreTest, TerminatedConnectionsAreReplacedOnNextUse) {
  PostgresStateStore::Options options = Options();
  options.connections = 4;
  std::unique_ptr<PostgresStateStore> store = MustOpen(options);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Insert(Table::kVolumes, Volume("v1")));
  // Open more pooled connections: four threads hold one each at the same time.
  {
    std::barrier sync(4);
    std::vector<std::thread> threads;
    threads.reserve(4);
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        sync.arrive_and_wait();
        for (int i = 0; i < 20; ++i) {
          EXPECT_TRUE(store->Get(Table::kVolumes, "v1"));
        }
      });
    }
    for (std::thread& thread : threads) {
      thread.join();
    }
  }
  std::set<std::int64_t> old_pids = BackendPids();
  ASSERT_GE(old_pids.size(), 1u);
  EXPECT_EQ(TerminateBackends(), static_cast<std::int64_t>(old_pids.size()));
  ASSERT_TRUE(WaitFor(std::chrono::seconds(10), [&] { return Backends() == 0; }));

  // Every kind of call still succeeds, several times over (more than the pool's size).
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    auto row = store->Get(Table::kVolumes, "v1");
    ASSERT_TRUE(row) << row.error().ToString();
    std::string id = "w" + std::to_string(i);
    auto inserted = store->Insert(Table::kVolumes, Volume(id));
    ASSERT_TRUE(inserted) << inserted.error().ToString();
    auto updated = store->ConditionalUpdate(
        Table::kVolumes, id, {{"host", Text("h")}}, {Expectation::IsNull("host")}, {});
    ASSERT_TRUE(updated) << updated.error().ToString();
    EXPECT_TRUE(updated->has_value());
    auto listed = store->List(Table::kVolumes, {});
    ASSERT_TRUE(listed) << listed.error().ToString();
    EXPECT_EQ(listed->size(), static_cast<std::size_t>(i + 2));
  }
  std::set<std::int64_t> new_pids = BackendPids();
  EXPECT_GE(new_pids.size(), 1u);
  for (std::int64_t pid : new_pids) {
    EXPECT_EQ(old_pids.count(pid), 0u) << "a terminated backend came back";
  }
}

TEST_F(PostgresStateStoreTest, UnreachableServerIsUnavailableWithinTheConnectTimeout) {
  // A loopback port nobody listens on: bind an ephemeral one, then close it.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  int port = ntohs(address.sin_port);
  close(fd);

  PostgresStateStore::Options options;
  options.uri = "postgresql://postgres:secret@127.0.0.1:" + std::to_string(port) + "/postgres";
  options.connect_timeout = std::chrono::milliseconds(1000);
  auto start = std::chrono::steady_clock::now();
  auto store = PostgresStateStore::Open(options);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kUnavailable) << store.error().ToString();
  EXPECT_NE(store.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << store.error().message;
  EXPECT_EQ(store.error().message.find("secret"), std::string::npos) << store.error().message;
  EXPECT_LE(elapsed, options.connect_timeout + std::chrono::milliseconds(500));
}

TEST_F(PostgresStateStoreTest, SerializationFailurePastTheRetryBudgetIsUnavailable) {
  std::unique_ptr<PostgresStateStore> setup = MustOpen();
  ASSERT_NE(setup, nullptr);
  for (int retries_max : {0, 3}) {
    SCOPED_TRACE(retries_max);
    std::string id = "v" + std::to_string(retries_max);
    ASSERT_TRUE(setup->Insert(Table::kVolumes, Volume(id)));
    PostgresStateStore::Options options = Options();
    options.retries_max = retries_max;
    std::unique_ptr<PostgresStateStore> store = MustOpen(options);
    ASSERT_NE(store, nullptr);

    // Another session changes the row and holds its lock; the store's update waits for it and,
    // being SERIALIZABLE, cannot use the version committed after its snapshot: 40001.
    pqxx::connection holder_connection(database_.uri());
    pqxx::work holder(holder_connection);
    holder.exec("UPDATE volumes SET host = 'elsewhere' WHERE id = '" + id + "'");
    auto update = std::async(std::launch::async, [&] {
      return store->ConditionalUpdate(Table::kVolumes,
                                      id,
                                      {{"status", Text("deleting")}},
                                      {Expectation::Equals("status", Text("available"))},
                                      {});
    });
    bool waiting = WaitFor(std::chrono::seconds(10), [&] { return Backends("transactionid") > 0; });
    holder.commit();
    ASSERT_TRUE(waiting) << "the store's update never waited for the row lock";
    ASSERT_EQ(update.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    auto result = update.get();
    if (retries_max == 0) {
      ASSERT_FALSE(result);
      EXPECT_EQ(result.error().code, ErrorCode::kUnavailable) << result.error().ToString();
      EXPECT_NE(result.error().message.find("serializ"), std::string::npos)
          << result.error().message;
      EXPECT_EQ(setup->Get(Table::kVolumes, id)->at("status"), Text("available"));
    } else {
      // Retried on a fresh snapshot: the row is still available, so the update applies.
      ASSERT_TRUE(result) << result.error().ToString();
      ASSERT_TRUE(result->has_value());
      EXPECT_EQ((*result)->at("status"), Text("deleting"));
      EXPECT_EQ((*result)->at("host"), Text("elsewhere"));
    }
  }
}

// Restores the server-wide setting the outcome-unknown test changes, whatever happens.
class SynchronousStandbyNames {
 public:
  SynchronousStandbyNames(std::string server_uri, const std::string& value)
      : server_uri_(std::move(server_uri)) {
    Set("'" + value + "'");
  }

  SynchronousStandbyNames(const SynchronousStandbyNames&) = delete;
  SynchronousStandbyNames& operator=(const SynchronousStandbyNames&) = delete;

  ~SynchronousStandbyNames() {
    try {
      Set("DEFAULT");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot reset synchronous_standby_names: " << e.what();
    }
  }

  // True once new sessions see the value (the reload is asynchronous).
  static bool Visible(const std::string& uri, const std::string& value) {
    pqxx::connection connection(uri);
    pqxx::nontransaction tx(connection);
    return tx.exec("SHOW synchronous_standby_names")[0][0].as<std::string>() == value;
  }

 private:
  void Set(const std::string& value) {
    pqxx::connection connection(server_uri_);
    pqxx::nontransaction tx(connection);
    tx.exec("ALTER SYSTEM SET synchronous_standby_names = " + value);
    tx.exec("SELECT pg_reload_conf()");
  }

  std::string server_uri_;
};

// COMMIT of a write is sent, then the connection dies before the answer: the row may or may
// not be there, so the store must say kOutcomeUnknown, not kUnavailable (which means "not
// applied"). The COMMIT is held open by requiring a synchronous standby that never connects;
// only the test store's session asks for synchronous commit, so other tests sharing the server
// (synchronous_commit = off) never wait.
// DISABLED: flaky under ThreadSanitizer in CI (the COMMIT was not seen waiting within 10 s once in
// three runs); run it with --gtest_also_run_disabled_tests until the cause is found.
TEST_F(PostgresStateStoreTest, DISABLED_ConnectionLostDuringCommitIsOutcomeUnknown) {
  std::unique_ptr<PostgresStateStore> reader = MustOpen();
  ASSERT_NE(reader, nullptr);
  PostgresStateStore::Options options = Options();
  options.uri += (options.uri.find('?') == std::string::npos ? "?" : "&");
  options.uri += "options=-c%20synchronous_commit%3Don";
  options.connections = 1;
  // Opened (and migrated) before any standby is required, so only the Insert below waits.
  std::unique_ptr<PostgresStateStore> store = MustOpen(options);
  ASSERT_NE(store, nullptr);

  // Declared before the setting's guard: if the test stops early, the guard clears the setting
  // first, which releases a COMMIT still waiting, and only then is the future waited for.
  std::future<Result<void>> insert;
  const std::string kStandby = "clinker_test_never_connects";
  SynchronousStandbyNames standby(database_.server_uri(), kStandby);
  ASSERT_TRUE(WaitFor(std::chrono::seconds(10),
                      [&] { return SynchronousStandbyNames::Visible(database_.uri(), kStandby); }));

  insert =
      std::async(std::launch::async, [&] { return store->Insert(Table::kVolumes, Volume("v1")); });
  ASSERT_TRUE(WaitFor(std::chrono::seconds(10), [&] { return Backends("SyncRep") == 1; }))
      << "the store's COMMIT never waited for the standby";
  EXPECT_EQ(TerminateBackends("SyncRep"), 1);
  ASSERT_EQ(insert.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  auto result = insert.get();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kOutcomeUnknown) << result.error().ToString();
  // Here it did commit (locally): re-reading is how a caller finds out.
  auto row = reader->Get(Table::kVolumes, "v1");
  EXPECT_TRUE(row) << row.error().ToString();
}

TEST_F(PostgresStateStoreTest, TextPostgresCannotHoldIsInvalidAndChangesNothing) {
  std::unique_ptr<PostgresStateStore> store = MustOpen();
  ASSERT_NE(store, nullptr);
  const std::string with_nul("a\0b", 3);
  Row row = Volume("v1");
  row["display_name"] = with_nul;
  auto inserted = store->Insert(Table::kVolumes, row);
  ASSERT_FALSE(inserted);
  EXPECT_EQ(inserted.error().code, ErrorCode::kInvalidArgument);

  ASSERT_TRUE(store->Insert(Table::kVolumes, Volume("v1")));
  auto updated = store->ConditionalUpdate(Table::kVolumes, "v1", {{"host", with_nul}}, {}, {});
  ASSERT_FALSE(updated);
  EXPECT_EQ(updated.error().code, ErrorCode::kInvalidArgument);
  // Invalid UTF-8 in a UTF8 database: refused by the server, reported as a bad argument.
  updated = store->ConditionalUpdate(
      Table::kVolumes, "v1", {{"host", std::string("\xff\xfe", 2)}}, {}, {});
  ASSERT_FALSE(updated);
  EXPECT_EQ(updated.error().code, ErrorCode::kInvalidArgument) << updated.error().ToString();
  auto stored = store->Get(Table::kVolumes, "v1");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->at("host"), Value());
  EXPECT_EQ(stored->at("display_name"), Value());
}

// The contract's order is byte-wise (as SQLite's BINARY and std::string). A database whose
// default collation is ICU en-US would sort "_" < "a" < "B"; the store must not follow it.
TEST_F(PostgresStateStoreTest, TextSortsByteWiseWhateverTheDatabaseCollation) {
  PostgresTestDatabase icu("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'");
  ASSERT_TRUE(icu.error().empty()) << icu.error();
  {
    pqxx::connection connection(icu.uri());
    pqxx::nontransaction tx(connection);
    // The premise: this database's own order is not byte-wise.
    pqxx::result order =
        tx.exec("SELECT string_agg(x, ',' ORDER BY x) FROM (VALUES ('B'), ('a'), ('_')) v(x)");
    ASSERT_EQ(order[0][0].as<std::string>(), "_,a,B");
  }
  PostgresStateStore::Options options;
  options.uri = icu.uri();
  std::unique_ptr<PostgresStateStore> store = MustOpen(options);
  ASSERT_NE(store, nullptr);
  const std::vector<std::pair<std::string, std::optional<std::string>>> names = {
      {"n1", "a"}, {"n2", "B"}, {"n3", "_"}, {"n4", std::nullopt}, {"n5", "\xc3\xa4"}};
  for (const auto& [id, name] : names) {
    Row row = Volume(id);
    row["display_name"] = name ? Value(*name) : Value();
    ASSERT_TRUE(store->Insert(Table::kVolumes, row));
  }
  auto ids = [&](const ports::ListQuery& query) {
    std::vector<std::string> out;
    auto rows = store->List(Table::kVolumes, query);
    EXPECT_TRUE(rows) << rows.error().ToString();
    for (const Row& row : rows ? *rows : std::vector<Row>{}) {
      out.push_back(std::get<std::string>(row.at("id")));
    }
    return out;
  };
  ports::ListQuery query;
  query.sort = {ports::SortKey{"display_name", true}};
  // NULL as '', then "B" (0x42) < "_" (0x5f) < "a" (0x61) < "ä" (0xc3 0xa4).
  EXPECT_EQ(ids(query), (std::vector<std::string>{"n4", "n2", "n3", "n1", "n5"}));
  query.marker_id = "n2";
  query.limit = 2;
  EXPECT_EQ(ids(query), (std::vector<std::string>{"n3", "n1"}));
  query.sort = {ports::SortKey{"display_name", false}};
  query.marker_id = "n1";
  query.limit.reset();
  EXPECT_EQ(ids(query), (std::vector<std::string>{"n3", "n2", "n4"}));
}

}  // namespace
}  // namespace clinker::adapters
