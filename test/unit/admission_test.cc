// Goal: admission control refuses new back-end work with 503 + Retry-After (Cinder's error shape)
// once a back-end's backlog (volumes, snapshots and backups queued or under way) reaches
// max_queued_jobs_per_backend, writes nothing when it refuses, counts what it admitted itself
// until the next count, admits again once the work has finished and the count is refreshed, and
// reads nothing when the bound is off. The /metrics document shows the backlog per back-end.
// Method: rows written straight into a MemoryStateStore (behind a store that counts its Lists and
// can be made to fail), a FakeClock moved by hand; VolumesApi and SnapshotsApi called directly
// with the admission control in their options, and a MemoryJobQueue session to see what was
// published.
#include "clinker/services/admission.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/services/backups_api.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/snapshots_api.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"
#include "clinker/services/volumes_api.h"

#include "support/fake_clock.h"
#include "support/forwarding_state_store.h"

namespace clinker::services {
namespace {

using domain::SnapshotStatus;
using domain::VolumeStatus;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";

// Counts List calls, and fails every call while `fail` is set (an engine that went away).
class CountingStore : public test_support::ForwardingStateStore {
 public:
  using ForwardingStateStore::ForwardingStateStore;

  Result<std::vector<ports::Row>> List(ports::Table table, const ports::ListQuery& query) override {
    ++lists;
    if (fail) {
      return MakeError(ErrorCode::kUnavailable, "engine down");
    }
    return ForwardingStateStore::List(table, query);
  }

  std::atomic<int> lists{0};
  std::atomic<bool> fail{false};
};

class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionTest() : store_(memory_) {}

  AdmissionControl& Make(std::int64_t bound, milliseconds refresh = milliseconds(1000)) {
    AdmissionOptions options;
    options.max_queued_jobs_per_backend = bound;
    options.refresh_interval = refresh;
    options.retry_after_s = 3;
    admission_ = std::make_unique<AdmissionControl>(store_, clock_, options);
    return *admission_;
  }

  void AddVolume(const std::string& id,
                 VolumeStatus status,
                 std::optional<std::string> host,
                 std::optional<std::string> cluster = std::nullopt,
                 bool deleted = false) {
    Volume volume;
    volume.id = id;
    volume.project_id = std::string(kProject);
    volume.user_id = "u";
    volume.status = status;
    volume.size_gib = 1;
    volume.availability_zone = "nova";
    volume.host = std::move(host);
    volume.cluster_name = std::move(cluster);
    volume.operation_id = "op-" + id;
    volume.created_at = FormatTimestamp(clock_.WallNow());
    volume.deleted = deleted;
    ASSERT_TRUE(memory_.Insert(ports::Table::kVolumes, VolumeToRow(volume)));
  }

  void AddSnapshot(const std::string& id, const std::string& volume_id, SnapshotStatus status) {
    Snapshot snapshot;
    snapshot.id = id;
    snapshot.project_id = std::string(kProject);
    snapshot.user_id = "u";
    snapshot.volume_id = volume_id;
    snapshot.status = status;
    snapshot.size_gib = 1;
    snapshot.operation_id = "op-" + id;
    snapshot.created_at = FormatTimestamp(clock_.WallNow());
    ASSERT_TRUE(memory_.Insert(ports::Table::kSnapshots, SnapshotToRow(snapshot)));
  }

  void AddBackup(const std::string& id, const std::string& status, const std::string& host) {
    ASSERT_TRUE(memory_.Insert(ports::Table::kBackups,
                               {{"id", id},
                                {"project_id", std::string(kProject)},
                                {"user_id", std::string("u")},
                                {"volume_id", std::string("v-rest")},
                                {"status", status},
                                {"host", host},
                                {"created_at", FormatTimestamp(clock_.WallNow())}}));
  }

  void AddVolumeService(const std::string& host, bool disabled = false) {
    ASSERT_TRUE(memory_.Insert(ports::Table::kServices,
                               {{"id", "cinder-volume:" + host},
                                {"binary", std::string("cinder-volume")},
                                {"host", host},
                                {"disabled", std::int64_t{disabled ? 1 : 0}},
                                {"created_at", FormatTimestamp(clock_.WallNow())}}));
  }

  void SetStatus(const std::string& id, VolumeStatus status) {
    auto updated = memory_.ConditionalUpdate(
        ports::Table::kVolumes, id, {{"status", std::string(domain::StoredName(status))}}, {}, {});
    ASSERT_TRUE(updated && updated->has_value());
  }

  static void ExpectRefusal(const Admission& admission) {
    ASSERT_FALSE(admission.has_value());
    ExpectRefusal(admission.error());
  }

  static void ExpectRefusal(const ports::HttpResponse& refused) {
    EXPECT_EQ(refused.status, 503);
    bool retry_after = false;
    for (const auto& [name, value] : refused.headers) {
      retry_after = retry_after || (name == "Retry-After" && value == "3");
    }
    EXPECT_TRUE(retry_after);
    json body = json::parse(refused.body);
    ASSERT_TRUE(body.contains("serviceUnavailable")) << refused.body;
    EXPECT_EQ(body["serviceUnavailable"]["code"], 503);
    EXPECT_NE(body["serviceUnavailable"]["message"].get<std::string>().find(
                  "max_queued_jobs_per_backend"),
              std::string::npos);
  }

  adapters::MemoryStateStore memory_;
  CountingStore store_;
  test_support::FakeClock clock_;
  std::unique_ptr<AdmissionControl> admission_;
};

TEST_F(AdmissionTest, UnboundedAdmitsEverythingAndReadsNothing) {
  AdmissionControl& admission = Make(0);
  EXPECT_FALSE(admission.enabled());
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(admission.AdmitOnBackend("node1@file#pool").has_value());
    EXPECT_TRUE(admission.AdmitUnplaced().has_value());
  }
  EXPECT_EQ(store_.lists, 0);
}

TEST_F(AdmissionTest, RefusesWorkForAFullBackendAndCountsWhatItAdmitted) {
  AddVolume("v1", VolumeStatus::kCreatingQueued, "node1@file#pool");
  AddVolume("v2", VolumeStatus::kCreating, "node1@file#pool");
  AddVolume("v3", VolumeStatus::kAvailable, "node1@file#pool");  // At rest: no work.
  AddVolume("v4", VolumeStatus::kDeletingQueued, "node2@file");  // Another back-end.
  AddVolume("v5", VolumeStatus::kCreating, "node1@file#pool", std::nullopt, /*deleted=*/true);
  AdmissionControl& admission = Make(3);
  EXPECT_TRUE(admission.AdmitOnBackend("node1@file#pool").has_value());  // 2 + 1 = 3.
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));                 // The pool is dropped.
  EXPECT_TRUE(admission.AdmitOnBackend("node2@file").has_value());
  EXPECT_TRUE(admission.AdmitOnBackend("node2@file").has_value());
  ExpectRefusal(admission.AdmitOnBackend("node2@file"));
  // Within the refresh interval the count is not taken again (one List per table and services).
  EXPECT_EQ(store_.lists, 4);
}

TEST_F(AdmissionTest, AdmitsAgainOnceWorkFinishedAndTheCountIsRefreshed) {
  AddVolume("v1", VolumeStatus::kCreatingQueued, "node1@file");
  AddVolume("v2", VolumeStatus::kExtending, "node1@file");
  AdmissionControl& admission = Make(2, milliseconds(500));
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));
  SetStatus("v1", VolumeStatus::kAvailable);
  SetStatus("v2", VolumeStatus::kAvailable);
  clock_.Advance(milliseconds(99));
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));  // The cached count still says full.
  const int lists = store_.lists;
  clock_.Advance(milliseconds(1));  // recount_when_full: a refusal counts again.
  EXPECT_TRUE(admission.AdmitOnBackend("node1@file").has_value());
  EXPECT_EQ(store_.lists, lists + 4);
  EXPECT_TRUE(admission.AdmitOnBackend("node1@file").has_value());
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));  // The two it admitted count.
}

// A request admitted but still writing is not in any count; once written, it is in every count
// that begins after: its ticket counts until then, so no count misses it.
TEST_F(AdmissionTest, AnAdmissionCountsUntilACountThatBeganAfterItsWrite) {
  AdmissionControl& admission = Make(1);
  Admission held = admission.AdmitOnBackend("node1@file");
  ASSERT_TRUE(held.has_value());
  clock_.Advance(milliseconds(1000));
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));  // Recounted: no row yet, still held.
  AddVolume("v1", VolumeStatus::kCreatingQueued, "node1@file");
  clock_.Advance(milliseconds(10));
  *held = AdmissionTicket();                              // The request's writes are done.
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));  // The cached count predates the row.
  clock_.Advance(milliseconds(1000));
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));  // Now the row itself counts.
  auto backlog = admission.Current();
  ASSERT_TRUE(backlog);
  EXPECT_EQ(backlog->per_backend.at("node1@file"), 1);  // Not twice.
  SetStatus("v1", VolumeStatus::kAvailable);
  clock_.Advance(milliseconds(1000));
  EXPECT_TRUE(admission.AdmitOnBackend("node1@file").has_value());
}

TEST_F(AdmissionTest, SnapshotsCountOnTheirVolumesBackendBackupsOnTheirOwnClustersFirst) {
  AddVolume("rest", VolumeStatus::kAvailable, "node1@file#p");
  AddVolume("clustered", VolumeStatus::kCreating, "node2@file#p", "c1@file");
  AddSnapshot("s1", "rest", SnapshotStatus::kCreatingQueued);
  AddSnapshot("s2", "rest", SnapshotStatus::kDeleting);
  AddSnapshot("s3", "rest", SnapshotStatus::kAvailable);
  AddSnapshot("s4", "clustered", SnapshotStatus::kCreating);
  AddBackup("b1", "creating", "node1@file#p");
  AddBackup("b2", "available", "node1@file#p");
  AdmissionControl& admission = Make(100);
  auto backlog = admission.Current();
  ASSERT_TRUE(backlog) << backlog.error().ToString();
  EXPECT_EQ(backlog->per_backend.at("node1@file"), 3);  // s1, s2, b1.
  EXPECT_EQ(backlog->per_backend.at("c1@file"), 2);     // The volume and s4: its cluster's.
  EXPECT_EQ(backlog->per_backend.count("node2@file"), 0u);
  EXPECT_EQ(backlog->unplaced, 0);
}

TEST_F(AdmissionTest, UnplacedVolumesAreBoundedByTheBoundTimesTheBackends) {
  AddVolumeService("node1@file");
  AddVolumeService("node2@file");
  AddVolumeService("node3@file", /*disabled=*/true);  // Takes no work: not counted.
  AddVolume("u1", VolumeStatus::kCreatingQueued, std::nullopt);
  AddVolume("u2", VolumeStatus::kCreatingQueued, std::nullopt);
  AddVolume("p1", VolumeStatus::kCreating, "node1@file");
  AdmissionControl& admission = Make(2);
  EXPECT_TRUE(admission.AdmitUnplaced().has_value());  // 3 of 4 before.
  ExpectRefusal(admission.AdmitUnplaced());
  auto backlog = admission.Current();
  ASSERT_TRUE(backlog);
  EXPECT_EQ(backlog->backends, 2);
  EXPECT_EQ(backlog->unplaced, 3);                      // Two counted, one admitted here.
  EXPECT_EQ(backlog->per_backend.at("node2@file"), 0);  // Shown with no work.
}

TEST_F(AdmissionTest, AStoreThatCannotCountAdmitsAndKeepsTheLastCount) {
  AddVolume("v1", VolumeStatus::kCreating, "node1@file");
  AdmissionControl& admission = Make(1);
  store_.fail = true;
  EXPECT_TRUE(admission.AdmitOnBackend("node1@file").has_value());  // Never counted: admit.
  EXPECT_FALSE(admission.Current().has_value());
  store_.fail = false;
  clock_.Advance(milliseconds(1000));
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));
  store_.fail = true;
  clock_.Advance(milliseconds(1000));
  ExpectRefusal(admission.AdmitOnBackend("node1@file"));  // The last count stands.
}

TEST_F(AdmissionTest, MetricsShowTheBacklogPerBackend) {
  AddVolumeService("node1@file");
  AddVolume("v1", VolumeStatus::kCreating, "node1@file");
  AddVolume("u1", VolumeStatus::kCreatingQueued, std::nullopt);
  AdmissionControl& admission = Make(5);
  ports::HttpResponse document = MetricsDocument(&admission);
  EXPECT_EQ(document.status, 200);
  EXPECT_NE(document.content_type.find("text/plain"), std::string::npos);
  EXPECT_NE(document.body.find("clinker_backend_queued_jobs{backend=\"node1@file\"} 1\n"),
            std::string::npos)
      << document.body;
  EXPECT_NE(document.body.find("clinker_unplaced_volumes 1\n"), std::string::npos);
  EXPECT_NE(document.body.find("clinker_max_queued_jobs_per_backend 5\n"), std::string::npos);
  EXPECT_NE(document.body.find("clinker_http_open_connections "), std::string::npos);
}

// Through the handlers: a refused create writes no row, charges no quota and queues no job.
class AdmissionApiTest : public AdmissionTest {
 protected:
  AdmissionApiTest()
      : broker_(std::make_shared<adapters::MemoryBroker>()),
        publisher_(broker_),
        receiver_(broker_) {
    EXPECT_TRUE(receiver_.Subscribe({SchedulerTopic(), VolumeTopic("node1@file")}));
  }

  static RequestContext Context() {
    RequestContext context;
    context.user_id = "user";
    context.project_id = std::string(kProject);
    context.is_admin = true;
    context.version = kMinMicroversion;
    context.link_base = "http://clinker.test/v3/" + std::string(kProject);
    context.bookmark_base = "http://clinker.test/" + std::string(kProject);
    return context;
  }

  static ports::HttpRequest Body(const json& body) {
    ports::HttpRequest request;
    request.method = "POST";
    request.body = body.dump();
    request.headers = {{"Content-Type", "application/json"}};
    return request;
  }

  std::size_t LiveRows(ports::Table table) {
    auto rows = memory_.List(table, {});
    EXPECT_TRUE(rows);
    return rows ? rows->size() : 0;
  }

  std::int64_t Usage(std::string_view resource) {
    auto row = memory_.Get(ports::Table::kQuotaUsages, ports::UsageCounterId(kProject, resource));
    return row ? IntegerOr(*row, "in_use", 0) : 0;
  }

  int JobsQueued() {
    int jobs = 0;
    while (true) {
      auto received = receiver_.Receive(milliseconds(0));
      if (!received || !received->has_value()) {
        return jobs;
      }
      EXPECT_TRUE(receiver_.Ack(**received));
      ++jobs;
    }
  }

  std::shared_ptr<adapters::MemoryBroker> broker_;
  adapters::MemoryJobQueue publisher_;
  adapters::MemoryJobQueue receiver_;
};

TEST_F(AdmissionApiTest, ARefusedVolumeCreateWritesNothing) {
  AddVolumeService("node1@file");
  AdmissionControl& admission = Make(2);
  VolumesApiOptions options;
  options.admission = &admission;
  VolumesApi volumes(store_, publisher_, clock_, options);
  const json create = {{"volume", {{"size", 1}}}};
  EXPECT_EQ(volumes.Create(Context(), Body(create)).status, 202);
  EXPECT_EQ(volumes.Create(Context(), Body(create)).status, 202);
  EXPECT_EQ(LiveRows(ports::Table::kVolumes), 2u);
  EXPECT_EQ(Usage("volumes"), 2);
  EXPECT_EQ(JobsQueued(), 2);
  ExpectRefusal(volumes.Create(Context(), Body(create)));
  EXPECT_EQ(LiveRows(ports::Table::kVolumes), 2u);
  EXPECT_EQ(Usage("volumes"), 2);
  EXPECT_EQ(Usage("gigabytes"), 2);
  EXPECT_EQ(JobsQueued(), 0);
}

TEST_F(AdmissionApiTest, SnapshotCloneExtendBackupAndRestoreOfAFullBackendAreRefused) {
  // Cinder's schemas want body ids in the uuid format.
  const std::string source_id = "5ec0a1e0-0000-4000-8000-000000000001";
  AddVolume(source_id, VolumeStatus::kAvailable, "node1@file#p");
  AddVolume("busy", VolumeStatus::kCreating, "node1@file#p");
  AdmissionControl& admission = Make(1);
  VolumesApiOptions volume_options;
  volume_options.admission = &admission;
  VolumesApi volumes(store_, publisher_, clock_, volume_options);
  SnapshotsApiOptions snapshot_options;
  snapshot_options.admission = &admission;
  SnapshotsApi snapshots(store_, publisher_, clock_, snapshot_options);
  ExpectRefusal(snapshots.Create(Context(), Body({{"snapshot", {{"volume_id", source_id}}}})));
  ExpectRefusal(volumes.Create(Context(), Body({{"volume", {{"source_volid", source_id}}}})));
  ports::HttpRequest extend = Body({{"os-extend", {{"new_size", 2}}}});
  ExpectRefusal(volumes.Action(Context(), extend, source_id));
  BackupsApiOptions backup_options;
  backup_options.admission = &admission;
  BackupsApi backups(store_, publisher_, clock_, backup_options);
  ExpectRefusal(backups.Create(Context(), Body({{"backup", {{"volume_id", source_id}}}})));
  AddBackup("kept", "available", "node1@file#p");
  ExpectRefusal(backups.Restore(Context(), Body({{"restore", json::object()}}), "kept"));
  EXPECT_EQ(LiveRows(ports::Table::kSnapshots), 0u);
  EXPECT_EQ(LiveRows(ports::Table::kBackups), 1u);
  auto kept = memory_.Get(ports::Table::kBackups, "kept");
  ASSERT_TRUE(kept);
  EXPECT_EQ(TextOr(*kept, "status", ""), "available");
  EXPECT_EQ(LiveRows(ports::Table::kVolumes), 2u);
  auto source = memory_.Get(ports::Table::kVolumes, source_id);
  ASSERT_TRUE(source);
  EXPECT_EQ(TextOr(*source, "status", ""), "available");
  EXPECT_EQ(JobsQueued(), 0);
  // Once the busy volume is done and the count refreshed, the same snapshot is accepted.
  SetStatus("busy", VolumeStatus::kAvailable);
  clock_.Advance(milliseconds(1000));
  EXPECT_EQ(snapshots.Create(Context(), Body({{"snapshot", {{"volume_id", source_id}}}})).status,
            202);
  EXPECT_EQ(JobsQueued(), 1);
}

}  // namespace
}  // namespace clinker::services
