// Goal: check ServiceRegistry's contract: Start registers an up row (and its cluster's row), a
// heartbeat moves heartbeat_at to the clock's time so up/down follows time, the thread keeps
// beating and survives a failing database, Stop deregisters at once (row kept, heartbeat NULL),
// a restart revives the same row keeping its disabled flag, a deleted row is re-registered by
// the next beat, and members of one cluster (racing included) share one cluster row.
//
// Method: MemoryStateStore (SQLite in a temporary directory for the racing start) behind a
// wrapper that can make updates fail; a FakeClock sets the timestamps, so expected heartbeat
// values are exact. Liveness is judged with domain/service_state.h. Tests of the thread use a
// 5 ms report interval and poll the store with a 10 s deadline.
#include "clinker/services/service_registry.h"

#include <atomic>
#include <barrier>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <stdlib.h>

#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/sqlite/sqlite_state_store.h"
#include "clinker/domain/service_state.h"

#include "support/fake_clock.h"
#include "support/temp_dir.h"

namespace clinker::services {
namespace {

using adapters::MemoryStateStore;
using ports::Expectation;
using ports::Row;
using ports::Table;
using ports::Value;
using test_support::FakeClock;

// Forwards to a MemoryStateStore; while `fail_updates` is set, ConditionalUpdate fails as an
// unreachable database does.
class FlakyStateStore final : public ports::StateStore {
 public:
  Result<void> Insert(Table table, const Row& row) override {
    return InsertWithUsage(table, row, {});
  }

  Result<std::optional<Row>> ConditionalUpdate(Table table,
                                               std::string_view id,
                                               const Row& values,
                                               const std::vector<Expectation>& expected,
                                               const std::vector<ports::Guard>& guards) override {
    return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
  }

  Result<void> InsertWithUsage(Table table,
                               const Row& row,
                               const std::vector<ports::UsageChange>& usage) override {
    return inner_.InsertWithUsage(table, row, usage);
  }

  Result<Row> Get(Table table, std::string_view id) override { return inner_.Get(table, id); }

  Result<std::vector<Row>> List(Table table, const ports::ListQuery& query) override {
    return inner_.List(table, query);
  }

  Result<std::optional<Row>> ConditionalUpdateWithUsage(
      Table table,
      std::string_view id,
      const Row& values,
      const std::vector<Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override {
    if (fail_updates.load()) {
      failed_updates.fetch_add(1);
      return MakeError(ErrorCode::kUnavailable, "database unreachable (injected)");
    }
    return inner_.ConditionalUpdateWithUsage(table, id, values, expected, guards, usage);
  }

  std::atomic<bool> fail_updates{false};
  std::atomic<int> failed_updates{0};

 private:
  MemoryStateStore inner_;
};

using clinker::test_support::TempDir;

constexpr std::chrono::milliseconds kDownTime{60000};

ServiceRegistryOptions VolumeOptions(std::string host, std::optional<std::string> cluster) {
  ServiceRegistryOptions options;
  options.binary = "cinder-volume";
  options.host = std::move(host);
  options.cluster_name = std::move(cluster);
  options.availability_zone = "zone-a";
  options.report_interval = std::chrono::milliseconds(5);
  return options;
}

std::optional<std::int64_t> HeartbeatOf(const Row& row) {
  const Value& value = row.at("heartbeat_at");
  if (!std::holds_alternative<std::int64_t>(value)) {
    return std::nullopt;
  }
  return std::get<std::int64_t>(value);
}

class ServiceRegistryTest : public ::testing::Test {
 protected:
  Row MustGetService(const std::string& id) {
    auto row = store_.Get(Table::kServices, id);
    EXPECT_TRUE(row) << row.error().ToString();
    return row ? *row : Row{};
  }

  bool IsUp(const std::string& id) {
    std::optional<std::int64_t> beat = HeartbeatOf(MustGetService(id));
    std::optional<domain::WallTimePoint> last;
    if (beat) {
      last = domain::FromHeartbeatMillis(*beat);
    }
    return domain::IsServiceUp(last, clock_.WallNow(), kDownTime);
  }

  // Polls until the service's heartbeat equals the clock's wall time, for at most 10 s.
  bool WaitForHeartbeatAtNow(const std::string& id) {
    std::int64_t want = domain::ToHeartbeatMillis(clock_.WallNow());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      auto row = store_.Get(Table::kServices, id);
      if (row && HeartbeatOf(*row) == want) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return false;
  }

  FlakyStateStore store_;
  FakeClock clock_;
};

TEST_F(ServiceRegistryTest, StartRegistersAnUpRowAndItsCluster) {
  ServiceRegistry registry(store_, clock_, VolumeOptions("node1@lvm", "c1@lvm"));
  ASSERT_TRUE(registry.Start());

  EXPECT_EQ(registry.service_id(), "cinder-volume:node1@lvm");
  Row row = MustGetService("cinder-volume:node1@lvm");
  EXPECT_EQ(row.at("binary"), Value(std::string("cinder-volume")));
  EXPECT_EQ(row.at("host"), Value(std::string("node1@lvm")));
  EXPECT_EQ(row.at("cluster_name"), Value(std::string("c1@lvm")));
  EXPECT_EQ(row.at("availability_zone"), Value(std::string("zone-a")));
  EXPECT_EQ(row.at("disabled"), Value(std::int64_t{0}));
  EXPECT_EQ(row.at("deleted"), Value(std::int64_t{0}));
  EXPECT_EQ(row.at("created_at"), Value(std::string("2026-01-01T00:00:00.000000")));
  EXPECT_EQ(HeartbeatOf(row), domain::ToHeartbeatMillis(clock_.WallNow()));
  EXPECT_TRUE(IsUp(registry.service_id()));

  auto cluster = store_.Get(Table::kClusters, "cinder-volume:c1@lvm");
  ASSERT_TRUE(cluster) << cluster.error().ToString();
  EXPECT_EQ(cluster->at("name"), Value(std::string("c1@lvm")));
  EXPECT_EQ(cluster->at("binary"), Value(std::string("cinder-volume")));
  EXPECT_EQ(cluster->at("disabled"), Value(std::int64_t{0}));
  ASSERT_TRUE(registry.Stop());
}

TEST_F(ServiceRegistryTest, UnclusteredServiceCreatesNoCluster) {
  ServiceRegistryOptions options = VolumeOptions("sched1", std::nullopt);
  options.binary = "cinder-scheduler";
  ServiceRegistry registry(store_, clock_, options);
  ASSERT_TRUE(registry.Start());
  EXPECT_EQ(MustGetService("cinder-scheduler:sched1").at("cluster_name"), Value());
  auto clusters = store_.List(Table::kClusters, {});
  ASSERT_TRUE(clusters);
  EXPECT_TRUE(clusters->empty());
}

TEST_F(ServiceRegistryTest, UpAndDownFollowHeartbeatsAndTime) {
  ServiceRegistryOptions options = VolumeOptions("node1@lvm", std::nullopt);
  options.report_interval = std::chrono::hours(1);  // Only explicit beats in this test.
  ServiceRegistry registry(store_, clock_, options);
  ASSERT_TRUE(registry.Start());

  clock_.Advance(std::chrono::seconds(60));
  EXPECT_TRUE(IsUp(registry.service_id()));  // Exactly service_down_time old: still up.
  clock_.Advance(std::chrono::milliseconds(1));
  EXPECT_FALSE(IsUp(registry.service_id()));

  ASSERT_TRUE(registry.Beat());
  Row row = MustGetService(registry.service_id());
  EXPECT_EQ(HeartbeatOf(row), domain::ToHeartbeatMillis(clock_.WallNow()));
  EXPECT_EQ(row.at("updated_at"), Value(std::string("2026-01-01T00:01:00.001000")));
  EXPECT_TRUE(IsUp(registry.service_id()));
}

TEST_F(ServiceRegistryTest, ThreadHeartbeatsEveryInterval) {
  ServiceRegistry registry(store_, clock_, VolumeOptions("node1@lvm", std::nullopt));
  ASSERT_TRUE(registry.Start());
  for (int round = 0; round < 3; ++round) {
    clock_.Advance(std::chrono::seconds(61));
    EXPECT_TRUE(WaitForHeartbeatAtNow(registry.service_id())) << "round " << round;
    EXPECT_TRUE(IsUp(registry.service_id()));
  }
  ASSERT_TRUE(registry.Stop());
}

TEST_F(ServiceRegistryTest, FailingHeartbeatsAreRetriedWithoutKillingTheThread) {
  ServiceRegistry registry(store_, clock_, VolumeOptions("node1@lvm", std::nullopt));
  ASSERT_TRUE(registry.Start());
  store_.fail_updates = true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store_.failed_updates.load() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_GE(store_.failed_updates.load(), 3);
  clock_.Advance(std::chrono::seconds(120));
  EXPECT_FALSE(IsUp(registry.service_id()));  // No beat landed while the database was away.

  store_.fail_updates = false;
  EXPECT_TRUE(WaitForHeartbeatAtNow(registry.service_id()));
  EXPECT_TRUE(IsUp(registry.service_id()));
  ASSERT_TRUE(registry.Stop());
}

// A node that lost its lock lease reports itself down at once, sends no heartbeat for the
// window (so it stays down however time moves), then heartbeats again.
TEST_F(ServiceRegistryTest, NotWorkingMarksTheServiceDownForTheWindowThenBeatsAgain) {
  ServiceRegistry registry(store_, clock_, VolumeOptions("node1@lvm", "c1@lvm"));
  ASSERT_TRUE(registry.Start());
  ASSERT_TRUE(WaitForHeartbeatAtNow(registry.service_id()));

  registry.ReportNotWorking(std::chrono::milliseconds(2000), "lock lease lost");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (HeartbeatOf(MustGetService(registry.service_id())).has_value() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_FALSE(IsUp(registry.service_id())) << "not marked down";
  // Many report intervals (5 ms) pass inside the window: none may bring the row back up.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(MustGetService(registry.service_id()).at("heartbeat_at"), Value());

  clock_.Advance(std::chrono::seconds(1));
  EXPECT_TRUE(WaitForHeartbeatAtNow(registry.service_id())) << "heartbeats did not resume";
  EXPECT_TRUE(IsUp(registry.service_id()));
  ASSERT_TRUE(registry.Stop());
}

TEST_F(ServiceRegistryTest, StopDeregistersAtOnceAndKeepsTheRow) {
  ServiceRegistry registry(store_, clock_, VolumeOptions("node1@lvm", "c1@lvm"));
  ASSERT_TRUE(registry.Start());
  ASSERT_TRUE(registry.Stop());

  Row row = MustGetService(registry.service_id());
  EXPECT_EQ(row.at("heartbeat_at"), Value());
  EXPECT_EQ(row.at("deleted"), Value(std::int64_t{0}));
  EXPECT_FALSE(IsUp(registry.service_id()));  // Down with no time passing.

  // Idempotent, and no thread brings it back.
  ASSERT_TRUE(registry.Stop());
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(MustGetService(registry.service_id()).at("heartbeat_at"), Value());
}

TEST_F(ServiceRegistryTest, FailedDeregisterIsReported) {
  ServiceRegistry registry(store_, clock_, VolumeOptions("node1@lvm", std::nullopt));
  ASSERT_TRUE(registry.Start());
  store_.fail_updates = true;
  auto stopped = registry.Stop();
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().code, ErrorCode::kUnavailable);
  store_.fail_updates = false;
  EXPECT_TRUE(HeartbeatOf(MustGetService(registry.service_id())).has_value());
}

TEST_F(ServiceRegistryTest, RestartRevivesTheSameRowKeepingItsDisabledFlag) {
  {
    ServiceRegistry first(store_, clock_, VolumeOptions("node1@lvm", std::nullopt));
    ASSERT_TRUE(first.Start());
    auto disabled = store_.ConditionalUpdate(
        Table::kServices,
        first.service_id(),
        {{"disabled", Value(std::int64_t{1})}, {"disabled_reason", Value(std::string("maint"))}},
        {},
        {});
    ASSERT_TRUE(disabled && disabled->has_value());
    ASSERT_TRUE(first.Stop());
  }
  clock_.Advance(std::chrono::minutes(10));
  ServiceRegistry second(store_, clock_, VolumeOptions("node1@lvm", "c2@lvm"));
  ASSERT_TRUE(second.Start());

  auto all = store_.List(Table::kServices, {});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  Row row = all->front();
  EXPECT_EQ(row.at("disabled"), Value(std::int64_t{1}));
  EXPECT_EQ(row.at("disabled_reason"), Value(std::string("maint")));
  EXPECT_EQ(row.at("created_at"), Value(std::string("2026-01-01T00:00:00.000000")));
  EXPECT_EQ(row.at("cluster_name"), Value(std::string("c2@lvm")));
  EXPECT_TRUE(IsUp(second.service_id()));
  ASSERT_TRUE(second.Stop());
}

TEST_F(ServiceRegistryTest, BeatReregistersARowDeletedByAnOperator) {
  ServiceRegistryOptions options = VolumeOptions("node1@lvm", "c1@lvm");
  options.report_interval = std::chrono::hours(1);
  ServiceRegistry registry(store_, clock_, options);
  ASSERT_TRUE(registry.Start());
  for (auto [table, id] : {std::pair{Table::kServices, std::string("cinder-volume:node1@lvm")},
                           std::pair{Table::kClusters, std::string("cinder-volume:c1@lvm")}}) {
    auto deleted =
        store_.ConditionalUpdate(table, id, {{"deleted", Value(std::int64_t{1})}}, {}, {});
    ASSERT_TRUE(deleted && deleted->has_value());
  }

  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(registry.Beat());
  Row row = MustGetService(registry.service_id());
  EXPECT_EQ(row.at("deleted"), Value(std::int64_t{0}));
  EXPECT_EQ(HeartbeatOf(row), domain::ToHeartbeatMillis(clock_.WallNow()));
  auto cluster = store_.Get(Table::kClusters, "cinder-volume:c1@lvm");
  ASSERT_TRUE(cluster);
  EXPECT_EQ(cluster->at("deleted"), Value(std::int64_t{0}));
}

TEST_F(ServiceRegistryTest, TwoMembersOfOneClusterShareOneClusterRow) {
  ServiceRegistry one(store_, clock_, VolumeOptions("node1@lvm", "c1@lvm"));
  ServiceRegistry two(store_, clock_, VolumeOptions("node2@lvm", "c1@lvm"));
  ASSERT_TRUE(one.Start());
  ASSERT_TRUE(two.Start());
  auto clusters = store_.List(Table::kClusters, {});
  ASSERT_TRUE(clusters);
  ASSERT_EQ(clusters->size(), 1u);
  ports::ListQuery query;
  query.filters = {Expectation::Equals("cluster_name", std::string("c1@lvm"))};
  auto members = store_.List(Table::kServices, query);
  ASSERT_TRUE(members);
  EXPECT_EQ(members->size(), 2u);

  // One member stopping leaves the cluster up through the other.
  ASSERT_TRUE(one.Stop());
  EXPECT_FALSE(IsUp(one.service_id()));
  EXPECT_TRUE(IsUp(two.service_id()));
  ASSERT_TRUE(two.Stop());
}

TEST(ServiceRegistryRaceTest, MembersStartingTogetherOnSqliteCreateTheClusterOnce) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  adapters::sqlite::Database::Options database;
  database.path = dir.path() + "/state.db";
  auto store = adapters::SqliteStateStore::Open(database);
  ASSERT_TRUE(store) << store.error().ToString();
  FakeClock clock;

  constexpr int kMembers = 8;
  std::vector<std::unique_ptr<ServiceRegistry>> registries;
  for (int i = 0; i < kMembers; ++i) {
    ServiceRegistryOptions options =
        VolumeOptions("node" + std::to_string(i) + "@lvm", std::string("c1@lvm"));
    options.report_interval = std::chrono::hours(1);
    registries.push_back(std::make_unique<ServiceRegistry>(**store, clock, options));
  }
  std::barrier sync(kMembers);
  std::vector<std::string> errors(kMembers);
  std::vector<std::thread> threads;
  threads.reserve(kMembers);
  for (int i = 0; i < kMembers; ++i) {
    threads.emplace_back([&, i] {
      sync.arrive_and_wait();
      auto started = registries[static_cast<std::size_t>(i)]->Start();
      if (!started) {
        errors[static_cast<std::size_t>(i)] = started.error().ToString();
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (const std::string& error : errors) {
    EXPECT_TRUE(error.empty()) << error;
  }
  auto clusters = (*store)->List(Table::kClusters, {});
  ASSERT_TRUE(clusters) << clusters.error().ToString();
  EXPECT_EQ(clusters->size(), 1u);
  auto services = (*store)->List(Table::kServices, {});
  ASSERT_TRUE(services) << services.error().ToString();
  EXPECT_EQ(services->size(), static_cast<std::size_t>(kMembers));
  registries.clear();  // Stops (and deregisters) before the store closes.
}

}  // namespace
}  // namespace clinker::services
