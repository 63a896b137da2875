// Goal: check that the Scheduler records a back-end for each queued volume exactly once, forwards
// the create job to that back-end's topic, forwards a redelivered job to the back-end already
// recorded (never to a new one), drops jobs for volumes no longer queued for that operation, and
// fails a volume clearly when no back-end exists. With a CapabilityCache: only back-ends whose
// latest report is fresh and shows enough capacity take volumes, the most virtual free capacity
// first; with no report at all the configured list is used; with reports but no eligible
// back-end the volume fails with Cinder's NoValidBackend wording. The capacity filter and weigher
// as functions; the reservation of the volume's size on the chosen pool in the write that
// records the host (never past total x ratio, the next candidate on a full pool, and two
// schedulers on one SQLite database racing 200 creates for 100 GiB).
//
// Method: Scheduler over MemoryStateStore, a MemoryBroker and a FakeClock. Rows are written
// directly (Insert of VolumeToRow); deliveries carry JobMessage::ToJson(). The scheduler
// publishes through a MemoryJobQueue wrapped in a recorder, so "nothing forwarded" covers every
// topic; forwarded jobs are read back by MemoryJobQueue sessions subscribed to the back-end
// topics. Capability reports are applied to the cache directly (CapabilityCache::Apply), and
// their age is driven by the FakeClock's monotonic time; one test sends them through the
// broker's fanout instead.
#include "clinker/services/scheduler.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/sqlite/sqlite_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/capability_cache.h"
#include "clinker/services/capability_reporter.h"
#include "clinker/services/job_message.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"
#include "support/forwarding_state_store.h"
#include "support/recording_job_queue.h"
#include "support/temp_dir.h"

namespace clinker::services {

static void PrintTo(JobOutcome outcome, std::ostream* out) {
  *out << (outcome == JobOutcome::kDone ? "kDone" : "kRetryLater");
}

namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStateStore;
using domain::Operation;
using domain::VolumeStatus;
using nlohmann::json;
using test_support::FakeClock;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kBackendA = "node1@file";
constexpr std::string_view kBackendB = "node2@file";

using test_support::RecordingJobQueue;

std::optional<std::string> TextColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::string>(it->second)) {
    return std::nullopt;
  }
  return std::get<std::string>(it->second);
}

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest()
      : broker_(std::make_shared<MemoryBroker>()), session_(broker_), publisher_(session_) {}

  std::unique_ptr<Scheduler> MakeScheduler(std::vector<std::string> backends,
                                           std::vector<std::string> clusters = {}) {
    SchedulerOptions options;
    options.backends = std::move(backends);
    options.clusters = std::move(clusters);
    return std::make_unique<Scheduler>(store_, publisher_, clock_, std::move(options));
  }

  struct Queued {
    std::string volume_id;
    std::string operation_id;
  };

  // With capability-based choice; reports go to capabilities_.
  // No over-subscription unless a test asks for it: free capacity is then the whole rule.
  std::unique_ptr<Scheduler> MakeCapabilityScheduler(std::vector<std::string> backends,
                                                     std::vector<std::string> clusters = {},
                                                     double over_subscription = 1.0) {
    SchedulerOptions options;
    options.backends = std::move(backends);
    options.clusters = std::move(clusters);
    options.capability_max_age = kMaxAge;
    options.max_over_subscription_ratio = over_subscription;
    return std::make_unique<Scheduler>(
        store_, publisher_, clock_, std::move(options), &capabilities_);
  }

  void Report(std::string_view backend, std::int64_t free_gib, std::int64_t total_gib = 1000) {
    CapabilityReport report;
    report.backend = std::string(backend);
    report.host = std::string(backend);
    report.total_capacity_gib = total_gib;
    report.free_capacity_gib = free_gib;
    report.reported_at = FormatTimestamp(clock_.WallNow());
    capabilities_.Apply(report);
  }

  static constexpr std::chrono::seconds kMaxAge{30};

  Queued InsertVolume(VolumeStatus status = VolumeStatus::kCreatingQueued,
                      std::optional<std::string> host = std::nullopt,
                      bool deleted = false,
                      std::int64_t size_gib = 1) {
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = std::string(kProject);
    volume.user_id = "user";
    volume.status = status;
    volume.size_gib = size_gib;
    volume.availability_zone = "nova";
    volume.host = std::move(host);
    volume.operation_id = NewUuid();
    volume.created_at = FormatTimestamp(clock_.WallNow());
    volume.deleted = deleted;
    Result<void> inserted = store_.Insert(ports::Table::kVolumes, VolumeToRow(volume));
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    return Queued{volume.id, *volume.operation_id};
  }

  static ports::Delivery CreateJob(const std::string& volume_id,
                                   const std::string& operation_id,
                                   bool redelivered = false) {
    ports::Delivery delivery;
    delivery.job_id = NewUuid();
    delivery.topic = "scheduler";
    delivery.payload =
        JobMessage{Operation::kCreateVolume, volume_id, operation_id, std::string(kProject)}
            .ToJson();
    delivery.redelivered = redelivered;
    delivery.delivery_count = redelivered ? 2 : 1;
    return delivery;
  }

  ports::Row ReadRow(const std::string& id) {
    auto row = store_.Get(ports::Table::kVolumes, id);
    EXPECT_TRUE(row.has_value());
    return row ? *row : ports::Row{};
  }

  // Every job ready on a back-end topic, in order, taken by a fresh consumer session.
  std::vector<std::string> TakeForwarded(std::string_view backend) {
    MemoryJobQueue consumer(broker_);
    EXPECT_TRUE(consumer.Subscribe({"volume." + std::string(backend)}).has_value());
    std::vector<std::string> payloads;
    for (int i = 0; i < 100; ++i) {
      auto received = consumer.Receive(std::chrono::milliseconds(0));
      EXPECT_TRUE(received.has_value());
      if (!received || !received->has_value()) {
        break;
      }
      payloads.push_back((*received)->payload);
      EXPECT_TRUE(consumer.Ack(**received).has_value());
    }
    return payloads;
  }

  MemoryStateStore store_;
  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue session_;
  RecordingJobQueue publisher_;
  MemoryJobQueue listener_{broker_};
  CapabilityCache capabilities_{listener_, clock_};
};

TEST_F(SchedulerTest, QueuedVolumeGetsAHostAndItsJobIsForwarded) {
  auto scheduler = MakeScheduler({std::string(kBackendA)});
  Queued volume = InsertVolume();
  ports::Delivery job = CreateJob(volume.volume_id, volume.operation_id);

  EXPECT_EQ(scheduler->Handle(job), JobOutcome::kDone);

  ports::Row row = ReadRow(volume.volume_id);
  EXPECT_EQ(TextColumn(row, "host"), std::string(kBackendA) + "#default");
  EXPECT_EQ(TextColumn(row, "status"), "creating_queued") << "the scheduler must not start it";
  EXPECT_EQ(TextColumn(row, "operation_id"), volume.operation_id);
  EXPECT_EQ(TakeForwarded(kBackendA), std::vector<std::string>{job.payload});
  EXPECT_EQ(publisher_.PublishedTopics(), std::vector<std::string>{"volume.node1@file"});
}

TEST_F(SchedulerTest, BackEndsAreChosenInTurn) {
  auto scheduler = MakeScheduler({std::string(kBackendA), std::string(kBackendB)});
  std::vector<std::optional<std::string>> hosts;
  for (int i = 0; i < 4; ++i) {
    Queued volume = InsertVolume();
    EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    hosts.push_back(TextColumn(ReadRow(volume.volume_id), "host"));
  }

  const std::string a = std::string(kBackendA) + "#default";
  const std::string b = std::string(kBackendB) + "#default";
  EXPECT_EQ(hosts, (std::vector<std::optional<std::string>>{a, b, a, b}));
  EXPECT_EQ(TakeForwarded(kBackendA).size(), 2u);
  EXPECT_EQ(TakeForwarded(kBackendB).size(), 2u);
}

// A cluster's volume records the cluster, and its job goes to the queue every member of the
// cluster consumes; clusters and unclustered back-ends take turns.
TEST_F(SchedulerTest, ClusteredBackEndGetsTheJobOnTheClusterTopicAndRecordsTheCluster) {
  auto scheduler = MakeScheduler({std::string(kBackendA)}, {"cluster1@file"});
  Queued first = InsertVolume();
  Queued second = InsertVolume();
  ports::Delivery first_job = CreateJob(first.volume_id, first.operation_id);
  ASSERT_EQ(scheduler->Handle(first_job), JobOutcome::kDone);
  ASSERT_EQ(scheduler->Handle(CreateJob(second.volume_id, second.operation_id)), JobOutcome::kDone);

  ports::Row clustered = ReadRow(first.volume_id);
  EXPECT_EQ(TextColumn(clustered, "cluster_name"), "cluster1@file#default");
  EXPECT_EQ(TextColumn(clustered, "host"), "cluster1@file#default");
  ports::Row unclustered = ReadRow(second.volume_id);
  EXPECT_EQ(TextColumn(unclustered, "cluster_name"), std::nullopt);
  EXPECT_EQ(TextColumn(unclustered, "host"), std::string(kBackendA) + "#default");
  EXPECT_EQ(publisher_.PublishedTopics(),
            (std::vector<std::string>{"volume.cluster1@file", "volume.node1@file"}));

  // A redelivery goes to the recorded cluster again.
  ports::Delivery redelivery = first_job;
  redelivery.redelivered = true;
  redelivery.delivery_count = 2;
  EXPECT_EQ(scheduler->Handle(redelivery), JobOutcome::kDone);
  EXPECT_EQ(TakeForwarded("cluster1@file"),
            (std::vector<std::string>{first_job.payload, first_job.payload}));
}

// The scheduler died after recording the host and before acking: the redelivered job goes to
// the back-end already recorded, even though the turn has moved on, so the volume never
// changes back-end.
TEST_F(SchedulerTest, RedeliveryForwardsToTheRecordedBackEnd) {
  auto scheduler = MakeScheduler({std::string(kBackendA), std::string(kBackendB)});
  Queued volume = InsertVolume();
  ports::Delivery job = CreateJob(volume.volume_id, volume.operation_id);
  ASSERT_EQ(scheduler->Handle(job), JobOutcome::kDone);

  ports::Delivery redelivery = job;
  redelivery.redelivered = true;
  redelivery.delivery_count = 2;
  EXPECT_EQ(scheduler->Handle(redelivery), JobOutcome::kDone);

  EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendA) + "#default");
  EXPECT_EQ(TakeForwarded(kBackendA), (std::vector<std::string>{job.payload, job.payload}));
  EXPECT_TRUE(TakeForwarded(kBackendB).empty());
}

TEST_F(SchedulerTest, RedeliveryUsesTheHostInTheRowNotTheConfiguredList) {
  // Recorded by another scheduler whose configuration listed another back-end.
  auto scheduler = MakeScheduler({std::string(kBackendA)});
  Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::string(kBackendB) + "#pool2");

  EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id, true)),
            JobOutcome::kDone);

  EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendB) + "#pool2");
  EXPECT_EQ(TakeForwarded(kBackendB).size(), 1u);
  EXPECT_TRUE(TakeForwarded(kBackendA).empty());
}

TEST_F(SchedulerTest, JobForAVolumeNoLongerQueuedForItIsDroppedWithoutForwarding) {
  auto scheduler = MakeScheduler({std::string(kBackendA)});
  std::vector<std::pair<std::string, ports::Delivery>> cases;
  {
    Queued deleted = InsertVolume(VolumeStatus::kDeleted, std::nullopt, /*deleted=*/true);
    cases.emplace_back("deleted", CreateJob(deleted.volume_id, deleted.operation_id));
  }
  {
    Queued other = InsertVolume();
    cases.emplace_back("another operation id", CreateJob(other.volume_id, NewUuid()));
  }
  {
    Queued available = InsertVolume(VolumeStatus::kAvailable, std::string(kBackendA) + "#default");
    cases.emplace_back("available", CreateJob(available.volume_id, available.operation_id));
  }
  {
    Queued errored = InsertVolume(VolumeStatus::kError);
    cases.emplace_back("error, never scheduled",
                       CreateJob(errored.volume_id, errored.operation_id));
  }
  cases.emplace_back("unknown volume", CreateJob(NewUuid(), NewUuid()));

  for (const auto& [label, job] : cases) {
    SCOPED_TRACE(label);
    auto message = JobMessage::FromJson(job.payload);
    ASSERT_TRUE(message.has_value());
    auto before = store_.Get(ports::Table::kVolumes, message->resource_id);

    EXPECT_EQ(scheduler->Handle(job), JobOutcome::kDone);

    auto after = store_.Get(ports::Table::kVolumes, message->resource_id);
    EXPECT_EQ(before.has_value(), after.has_value());
    if (before && after) {
      EXPECT_TRUE(*before == *after) << "the row changed";
    }
  }
  EXPECT_TRUE(publisher_.PublishedTopics().empty());
}

TEST_F(SchedulerTest, NoBackEndSetsTheVolumeToErrorWithAReason) {
  auto scheduler = MakeScheduler({});
  Queued volume = InsertVolume();

  EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)), JobOutcome::kDone);

  ports::Row row = ReadRow(volume.volume_id);
  EXPECT_EQ(TextColumn(row, "status"), "error");
  std::optional<std::string> reason = TextColumn(row, "status_reason");
  ASSERT_TRUE(reason.has_value());
  EXPECT_FALSE(reason->empty());
  EXPECT_EQ(TextColumn(row, "host"), std::nullopt);
  EXPECT_TRUE(publisher_.PublishedTopics().empty());
}

TEST_F(SchedulerTest, MalformedOrForeignPayloadIsDroppedWithoutForwarding) {
  auto scheduler = MakeScheduler({std::string(kBackendA)});
  Queued volume = InsertVolume();
  ports::Row before = ReadRow(volume.volume_id);
  std::vector<std::string> payloads = {
      "",
      "{{",
      "{}",
      R"({"operation": "create_volume", "resource_id": ")" + volume.volume_id + R"("})",
      // A delete job has no business on the scheduler topic.
      JobMessage{
          Operation::kDeleteVolume, volume.volume_id, volume.operation_id, std::string(kProject)}
          .ToJson(),
  };
  for (const std::string& payload : payloads) {
    SCOPED_TRACE(payload);
    ports::Delivery delivery;
    delivery.job_id = NewUuid();
    delivery.topic = "scheduler";
    delivery.payload = payload;
    EXPECT_EQ(scheduler->Handle(delivery), JobOutcome::kDone);
  }
  EXPECT_TRUE(ReadRow(volume.volume_id) == before);
  EXPECT_TRUE(publisher_.PublishedTopics().empty());
}

// --- Capability-based choice ---------------------------------------------------------------

TEST_F(SchedulerTest, WithoutAnyReportTheConfiguredBackEndsTakeTurns) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)});
  std::vector<std::optional<std::string>> hosts;
  for (int i = 0; i < 2; ++i) {
    Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 500);
    EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    hosts.push_back(TextColumn(ReadRow(volume.volume_id), "host"));
  }
  EXPECT_EQ(hosts,
            (std::vector<std::optional<std::string>>{std::string(kBackendA) + "#default",
                                                     std::string(kBackendB) + "#default"}));
}

TEST_F(SchedulerTest, OnlyBackEndsWithEnoughFreeCapacityTakeTheVolume) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)});
  Report(kBackendA, 9);
  Report(kBackendB, 10);
  for (int i = 0; i < 3; ++i) {
    Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 10);
    ASSERT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendB) + "#default");
  }
  EXPECT_EQ(TakeForwarded(kBackendB).size(), 3u);
  EXPECT_TRUE(TakeForwarded(kBackendA).empty());
}

TEST_F(SchedulerTest, EligibleBackEndsTakeTurnsAndClustersCount) {
  auto scheduler =
      MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)}, {"cluster1@file"});
  Report("cluster1@file", 100);
  Report(kBackendA, 100);
  Report(kBackendB, 0);  // Full: never chosen.
  std::vector<std::optional<std::string>> hosts;
  for (int i = 0; i < 4; ++i) {
    Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 1);
    ASSERT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    hosts.push_back(TextColumn(ReadRow(volume.volume_id), "host"));
  }
  const std::string cluster = "cluster1@file#default";
  const std::string a = std::string(kBackendA) + "#default";
  EXPECT_EQ(hosts, (std::vector<std::optional<std::string>>{cluster, a, cluster, a}));
  EXPECT_EQ(TakeForwarded("cluster1@file").size(), 2u);
  EXPECT_TRUE(TakeForwarded(kBackendB).empty());
}

TEST_F(SchedulerTest, AStaleReportTakesTheBackEndOutUntilItReportsAgain) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)});
  Report(kBackendB, 100);
  clock_.Advance(kMaxAge - std::chrono::seconds(1));
  Report(kBackendA, 100);
  clock_.Advance(std::chrono::seconds(1));  // B's report is now exactly kMaxAge old.

  for (int i = 0; i < 2; ++i) {
    Queued volume = InsertVolume();
    ASSERT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendA) + "#default");
  }

  // B is back, with more room than A (which took the two volumes): the capacity weigher picks it.
  Report(kBackendB, 100);
  Queued volume = InsertVolume();
  ASSERT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)), JobOutcome::kDone);
  EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendB) + "#default");
}

TEST_F(SchedulerTest, NoEligibleBackEndFailsTheVolumeWithCindersWording) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)});
  Report(kBackendA, 5);  // B never reported: reports exist, so no fallback.
  Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 10);

  EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)), JobOutcome::kDone);

  ports::Row row = ReadRow(volume.volume_id);
  EXPECT_EQ(TextColumn(row, "status"), "error");
  EXPECT_EQ(TextColumn(row, "host"), std::nullopt);
  std::string reason = TextColumn(row, "status_reason").value_or("");
  EXPECT_EQ(reason.rfind("No valid back-end was found: ", 0), 0u) << reason;
  EXPECT_NE(reason.find("node1@file: 5 GiB free"), std::string::npos) << reason;
  EXPECT_NE(reason.find("node2@file: no capability report"), std::string::npos) << reason;
  EXPECT_TRUE(publisher_.PublishedTopics().empty());
}

// Thin provisioning: with ratio 20, 10 GiB free takes a 200 GiB volume but not a 201 GiB one.
TEST_F(SchedulerTest, OverSubscriptionRatioScalesFreeCapacity) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA)}, {}, 20.0);
  Report(kBackendA, 10);
  Queued fits = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 200);
  Queued too_big = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 201);

  ASSERT_EQ(scheduler->Handle(CreateJob(fits.volume_id, fits.operation_id)), JobOutcome::kDone);
  ASSERT_EQ(scheduler->Handle(CreateJob(too_big.volume_id, too_big.operation_id)),
            JobOutcome::kDone);

  EXPECT_EQ(TextColumn(ReadRow(fits.volume_id), "host"), std::string(kBackendA) + "#default");
  EXPECT_EQ(TextColumn(ReadRow(too_big.volume_id), "status"), "error");
}

TEST_F(SchedulerTest, OnlyStaleReportsFailTheVolume) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA)});
  Report(kBackendA, 100);
  clock_.Advance(kMaxAge + std::chrono::seconds(5));
  Queued volume = InsertVolume();

  EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)), JobOutcome::kDone);

  ports::Row row = ReadRow(volume.volume_id);
  EXPECT_EQ(TextColumn(row, "status"), "error");
  std::string reason = TextColumn(row, "status_reason").value_or("");
  EXPECT_NE(reason.find("node1@file: last capability report 35 s old"), std::string::npos)
      << reason;
  EXPECT_TRUE(publisher_.PublishedTopics().empty());
}

// The choice is made once: a redelivered job goes to the recorded back-end even if that one is
// no longer eligible now.
TEST_F(SchedulerTest, RedeliveryForwardsToTheRecordedBackEndWhateverTheReportsSay) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)});
  Report(kBackendA, 0);
  Report(kBackendB, 0);
  Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::string(kBackendA) + "#default");

  EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id, true)),
            JobOutcome::kDone);

  ports::Row row = ReadRow(volume.volume_id);
  EXPECT_EQ(TextColumn(row, "status"), "creating_queued");
  EXPECT_EQ(TextColumn(row, "host"), std::string(kBackendA) + "#default");
  EXPECT_EQ(TakeForwarded(kBackendA).size(), 1u);
}

TEST_F(SchedulerTest, CapabilityPathStillDropsJobsOfVolumesNoLongerQueued) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA)});
  Report(kBackendA, 100);
  Queued deleted = InsertVolume(VolumeStatus::kDeleted, std::nullopt, /*deleted=*/true);
  Queued errored = InsertVolume(VolumeStatus::kError);

  EXPECT_EQ(scheduler->Handle(CreateJob(deleted.volume_id, deleted.operation_id)),
            JobOutcome::kDone);
  EXPECT_EQ(scheduler->Handle(CreateJob(errored.volume_id, errored.operation_id)),
            JobOutcome::kDone);
  EXPECT_EQ(scheduler->Handle(CreateJob(NewUuid(), NewUuid())), JobOutcome::kDone);

  EXPECT_EQ(TextColumn(ReadRow(errored.volume_id), "host"), std::nullopt);
  EXPECT_TRUE(publisher_.PublishedTopics().empty());
}

// End to end through the broker: a report broadcast by one session reaches the cache's
// listening session and steers the choice.
TEST_F(SchedulerTest, ReportsReceivedFromTheFanoutSteerTheChoice) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)});
  ASSERT_TRUE(listener_.Listen({std::string(kSchedulerFanoutChannel)}).has_value());
  MemoryJobQueue volume_service(broker_);
  for (auto [backend, free_gib] : {std::pair{kBackendA, 1}, std::pair{kBackendB, 50}}) {
    CapabilityReport report;
    report.backend = std::string(backend);
    report.host = std::string(backend);
    report.total_capacity_gib = 100;
    report.free_capacity_gib = free_gib;
    report.reported_at = FormatTimestamp(clock_.WallNow());
    ASSERT_TRUE(volume_service.Broadcast(kSchedulerFanoutChannel, report.ToJson()).has_value());
  }
  ASSERT_TRUE(volume_service.Broadcast(kSchedulerFanoutChannel, "not json").has_value());
  auto applied = capabilities_.Poll(std::chrono::milliseconds(0));
  ASSERT_TRUE(applied.has_value());
  EXPECT_EQ(*applied, 2);  // The malformed one is skipped.

  Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 2);
  ASSERT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)), JobOutcome::kDone);
  EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendB) + "#default");
}

}  // namespace
}  // namespace clinker::services

namespace clinker::services {
namespace {

TEST_F(SchedulerTest, DisabledOrFrozenBackEndsTakeNoNewVolumes) {
  auto scheduler = MakeScheduler({std::string(kBackendA), std::string(kBackendB)});
  // node1 disabled by an operator (os-services disable), node2 enabled.
  ASSERT_TRUE(store_.Insert(ports::Table::kServices,
                            {{"id", "cinder-volume:node1@file"},
                             {"binary", "cinder-volume"},
                             {"host", std::string(kBackendA)},
                             {"disabled", std::int64_t{1}},
                             {"created_at", FormatTimestamp(clock_.WallNow())}}));
  for (int i = 0; i < 3; ++i) {
    Queued volume = InsertVolume();
    EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendB) + "#default");
  }
  // Frozen too: no back-end is left, the volume fails and its project gets a user message.
  ASSERT_TRUE(store_.Insert(ports::Table::kServices,
                            {{"id", "cinder-volume:node2@file"},
                             {"binary", "cinder-volume"},
                             {"host", std::string(kBackendB)},
                             {"frozen", std::int64_t{1}},
                             {"created_at", FormatTimestamp(clock_.WallNow())}}));
  Queued failed = InsertVolume();
  EXPECT_EQ(scheduler->Handle(CreateJob(failed.volume_id, failed.operation_id)), JobOutcome::kDone);
  ports::Row row = ReadRow(failed.volume_id);
  EXPECT_EQ(TextColumn(row, "status"), "error");
  EXPECT_EQ(TextColumn(row, "host"), std::nullopt);

  auto messages = store_.List(ports::Table::kMessages, {});
  ASSERT_TRUE(messages.has_value());
  ASSERT_EQ(messages->size(), 1u);
  const ports::Row& message = messages->front();
  EXPECT_EQ(TextColumn(message, "project_id"), std::string(kProject));
  EXPECT_EQ(TextColumn(message, "resource_uuid"), failed.volume_id);
  EXPECT_EQ(TextColumn(message, "resource_type"), "VOLUME");
  EXPECT_EQ(TextColumn(message, "event_id"), "VOLUME_VOLUME_001_003");
  EXPECT_EQ(TextColumn(message, "message_level"), "ERROR");
}

TEST_F(SchedulerTest, ADisabledClusterTakesNoNewVolumes) {
  auto scheduler = MakeScheduler({std::string(kBackendA)}, {"cluster1@file"});
  ASSERT_TRUE(store_.Insert(ports::Table::kClusters,
                            {{"id", "cinder-volume:cluster1@file"},
                             {"name", "cluster1@file"},
                             {"binary", "cinder-volume"},
                             {"disabled", std::int64_t{1}},
                             {"created_at", FormatTimestamp(clock_.WallNow())}}));
  for (int i = 0; i < 2; ++i) {
    Queued volume = InsertVolume();
    EXPECT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendA) + "#default");
  }
}

// Cinder's CapabilitiesFilter: a volume type's extra specs pick the back-ends whose reported
// capabilities meet them; a type nobody meets fails the volume with a reason and a user message.
TEST_F(SchedulerTest, AVolumeTypesExtraSpecsPickTheBackEndsThatMeetThem) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)});
  auto report = [&](std::string_view backend, std::string vendor) {
    CapabilityReport capability;
    capability.backend = std::string(backend);
    capability.host = std::string(backend);
    capability.total_capacity_gib = 1000;
    capability.free_capacity_gib = 1000;
    capability.volume_backend_name = "file";
    capability.vendor_name = std::move(vendor);
    capability.storage_protocol = "file";
    capability.reported_at = FormatTimestamp(clock_.WallNow());
    capabilities_.Apply(capability);
  };
  report(kBackendA, "Acme");
  report(kBackendB, "Clinker");
  auto type = [&](const std::string& id, const json& extra_specs) {
    ASSERT_TRUE(store_
                    .Insert(ports::Table::kVolumeTypes,
                            {{"id", id},
                             {"name", "type-" + id},
                             {"extra_specs", extra_specs.dump()},
                             {"created_at", FormatTimestamp(clock_.WallNow())}})
                    .has_value());
  };
  type("t-clinker",
       {{"vendor_name", "Clinker"},
        {"capabilities:storage_protocol", "<in> fil"},
        {"RESKEY:availability_zones", "elsewhere"},  // Another scope: not for placement.
        {"multiattach", "<is> True"}});
  type("t-nobody", {{"storage_protocol", "bogus"}});
  auto with_type = [&](const std::string& type_id) {
    Queued volume = InsertVolume();
    EXPECT_TRUE(
        store_
            .ConditionalUpdate(
                ports::Table::kVolumes, volume.volume_id, {{"volume_type_id", type_id}}, {}, {})
            .has_value());
    return volume;
  };

  for (int i = 0; i < 3; ++i) {
    Queued volume = with_type("t-clinker");
    ASSERT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    EXPECT_EQ(TextColumn(ReadRow(volume.volume_id), "host"), std::string(kBackendB) + "#default");
  }

  Queued refused = with_type("t-nobody");
  ASSERT_EQ(scheduler->Handle(CreateJob(refused.volume_id, refused.operation_id)),
            JobOutcome::kDone);
  ports::Row row = ReadRow(refused.volume_id);
  EXPECT_EQ(TextColumn(row, "status"), "error");
  EXPECT_THAT(TextColumn(row, "status_reason").value_or(""),
              ::testing::HasSubstr("capability storage_protocol is 'file'"));
  auto messages = store_.List(ports::Table::kMessages, {});
  ASSERT_TRUE(messages.has_value());
  ASSERT_EQ(messages->size(), 1u);
  EXPECT_EQ(TextColumn(messages->front(), "resource_uuid"), refused.volume_id);
  EXPECT_TRUE(TakeForwarded(kBackendA).empty());
}

// The filters and the weigher as pure functions (Cinder's CapacityFilter and CapacityWeigher for
// thin pools).
TEST(SchedulerFiltersTest, CapacityFilterBoundsAllocatedByTotalTimesRatioAndFreeByRatio) {
  std::string why;
  const PoolState pool{100, 40, 90};
  EXPECT_EQ(CapacityLimit(pool, 1.0), 100);
  EXPECT_EQ(CapacityLimit(pool, 2.5), 250);
  EXPECT_TRUE(PassesCapacityFilter(pool, 10, 1.0, &why)) << why;
  EXPECT_FALSE(PassesCapacityFilter(pool, 11, 1.0, &why));
  EXPECT_EQ(why, "90 of 100 GiB allocated");
  EXPECT_TRUE(PassesCapacityFilter(pool, 11, 2.0, &why)) << why;
  // Free space (as last reported) x ratio must cover the volume too.
  EXPECT_FALSE(PassesCapacityFilter(PoolState{1000, 40, 0}, 41, 1.0, &why));
  EXPECT_EQ(why, "40 GiB free");
  EXPECT_TRUE(PassesCapacityFilter(PoolState{1000, 40, 0}, 80, 2.0, &why)) << why;
  EXPECT_FALSE(PassesCapacityFilter(PoolState{0, 0, 0}, 1, 20.0, &why));
}

TEST(SchedulerFiltersTest, CapacityWeightIsVirtualFreeCapacity) {
  EXPECT_DOUBLE_EQ(CapacityWeight(PoolState{100, 100, 0}, 1.0), 100.0);
  EXPECT_DOUBLE_EQ(CapacityWeight(PoolState{100, 10, 30}, 1.0), 70.0);
  EXPECT_DOUBLE_EQ(CapacityWeight(PoolState{100, 10, 30}, 20.0), 1970.0);
  EXPECT_GT(CapacityWeight(PoolState{300, 0, 100}, 1.0), CapacityWeight(PoolState{100, 0, 0}, 1.0));
}

TEST_F(SchedulerTest, TheBackEndWithTheMostVirtualFreeCapacityIsChosen) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA), std::string(kBackendB)});
  Report(kBackendA, 100, 100);
  Report(kBackendB, 300, 300);
  std::vector<std::string> hosts;
  for (int i = 0; i < 3; ++i) {
    Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 100);
    ASSERT_EQ(scheduler->Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    hosts.push_back(TextColumn(ReadRow(volume.volume_id), "host").value_or(""));
  }
  // B (300 free) twice, then both have 100 left: the turn goes on.
  const std::string a = std::string(kBackendA) + "#default";
  const std::string b = std::string(kBackendB) + "#default";
  EXPECT_EQ(hosts[0], b);
  EXPECT_EQ(hosts[1], b);
  EXPECT_TRUE(hosts[2] == a || hosts[2] == b) << hosts[2];
}

TEST(SchedulerFiltersTest, VolumeNumberWeightPrefersFewerVolumes) {
  EXPECT_GT(VolumeNumberWeight(0), VolumeNumberWeight(1));
  EXPECT_GT(VolumeNumberWeight(3), VolumeNumberWeight(30));
}

TEST_F(SchedulerTest, VolumeNumberWeigherPicksThePoolWithFewestVolumes) {
  SchedulerOptions options;
  options.backends = {std::string(kBackendA), std::string(kBackendB)};
  options.capability_max_age = kMaxAge;
  options.max_over_subscription_ratio = 1.0;
  options.weigher = SchedulerOptions::Weigher::kVolumeNumber;
  Scheduler scheduler(store_, publisher_, clock_, std::move(options), &capabilities_);
  // A has far more capacity (CapacityWeigher would pick it), but already three volumes.
  Report(kBackendA, 900, 2000);
  Report(kBackendB, 100, 1000);
  const std::string a = std::string(kBackendA) + "#default";
  const std::string b = std::string(kBackendB) + "#default";
  for (int i = 0; i < 3; ++i) {
    InsertVolume(VolumeStatus::kAvailable, a);
  }
  InsertVolume(VolumeStatus::kAvailable, b, /*deleted=*/true);  // Deleted: not counted.
  std::vector<std::string> hosts;
  for (int i = 0; i < 4; ++i) {
    Queued volume = InsertVolume();
    ASSERT_EQ(scheduler.Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    hosts.push_back(TextColumn(ReadRow(volume.volume_id), "host").value_or(""));
  }
  // B until it holds as many as A (3), then either.
  EXPECT_EQ(hosts[0], b);
  EXPECT_EQ(hosts[1], b);
  EXPECT_EQ(hosts[2], b);
  EXPECT_TRUE(hosts[3] == a || hosts[3] == b) << hosts[3];
}

std::int64_t Allocated(ports::StateStore& store, const std::string& pool) {
  auto row = store.Get(ports::Table::kPoolCapacity, pool);
  if (!row) {
    return 0;
  }
  auto found = row->find("allocated_capacity_gb");
  return found == row->end() ? -1 : std::get<std::int64_t>(found->second);
}

TEST_F(SchedulerTest, PlacementReservesTheSizeOnThePoolInTheSameWrite) {
  auto scheduler = MakeCapabilityScheduler({std::string(kBackendA)});
  Report(kBackendA, 100, 100);
  const std::string pool = std::string(kBackendA) + "#default";
  Queued first = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 60);
  ASSERT_EQ(scheduler->Handle(CreateJob(first.volume_id, first.operation_id)), JobOutcome::kDone);
  EXPECT_EQ(Allocated(store_, pool), 60);
  ports::Row row = ReadRow(first.volume_id);
  EXPECT_EQ(row.at("capacity_reserved_gib"), ports::Value(std::int64_t{60}));
  // A redelivery forwards again and reserves nothing more.
  ASSERT_EQ(scheduler->Handle(CreateJob(first.volume_id, first.operation_id, true)),
            JobOutcome::kDone);
  EXPECT_EQ(Allocated(store_, pool), 60);
  EXPECT_EQ(TakeForwarded(kBackendA).size(), 2u);

  // 41 more GiB do not fit in the 100 (ratio 1), although the report still says 100 free.
  Queued second = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 41);
  ASSERT_EQ(scheduler->Handle(CreateJob(second.volume_id, second.operation_id)), JobOutcome::kDone);
  row = ReadRow(second.volume_id);
  EXPECT_EQ(TextColumn(row, "status"), "error");
  EXPECT_THAT(TextColumn(row, "status_reason").value_or(""),
              ::testing::HasSubstr("No valid back-end was found: "));
  EXPECT_THAT(TextColumn(row, "status_reason").value_or(""),
              ::testing::HasSubstr("60 of 100 GiB allocated"));
  EXPECT_EQ(row.at("capacity_reserved_gib"), ports::Value(std::int64_t{0}));
  EXPECT_EQ(Allocated(store_, pool), 60);
}

// A scheduler whose view of the pools is stale (another scheduler filled one since it read them)
// is refused by the database, and tries the next candidate; when every one is full the volume
// fails. Simulated by hiding pool_capacity from the scheduler's reads.
class StalePoolsStore final : public test_support::ForwardingStateStore {
 public:
  using ForwardingStateStore::ForwardingStateStore;

  Result<std::vector<ports::Row>> List(ports::Table table, const ports::ListQuery& query) override {
    if (table == ports::Table::kPoolCapacity) {
      return std::vector<ports::Row>{};
    }
    return ForwardingStateStore::List(table, query);
  }
};

TEST_F(SchedulerTest, AFullPoolRefusesTheReservationAndTheNextCandidateIsTried) {
  StalePoolsStore stale(store_);
  SchedulerOptions options;
  options.backends = {std::string(kBackendA), std::string(kBackendB)};
  options.capability_max_age = kMaxAge;
  options.max_over_subscription_ratio = 1.0;
  Scheduler scheduler(stale, publisher_, clock_, options, &capabilities_);
  Report(kBackendA, 10, 10);
  Report(kBackendB, 5, 5);
  const std::string a = std::string(kBackendA) + "#default";
  const std::string b = std::string(kBackendB) + "#default";
  std::vector<std::string> hosts;
  for (int i = 0; i < 4; ++i) {
    Queued volume = InsertVolume(VolumeStatus::kCreatingQueued, std::nullopt, false, 5);
    ASSERT_EQ(scheduler.Handle(CreateJob(volume.volume_id, volume.operation_id)),
              JobOutcome::kDone);
    hosts.push_back(TextColumn(ReadRow(volume.volume_id), "host").value_or("none"));
  }
  // The stale view always ranks A first (10 > 5): A twice, then A refuses and B takes one, then
  // both refuse.
  EXPECT_EQ(hosts, (std::vector<std::string>{a, a, b, "none"}));
  EXPECT_EQ(Allocated(store_, a), 10);
  EXPECT_EQ(Allocated(store_, b), 5);
}

// Two schedulers on one SQLite database, one back-end of 100 GiB (ratio 1), 200 concurrent
// creates of 1 GiB: exactly 100 are placed, the others fail with Cinder's NoValidBackend, and the
// pool's allocated capacity never passes 100 at any time.
TEST(SchedulerReservationRaceTest, TwoSchedulersNeverPromiseTheSameSpaceTwice) {
  test_support::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  adapters::sqlite::Database::Options sqlite_options;
  sqlite_options.path = dir.path() + "/state.db";
  auto opened = adapters::SqliteStateStore::Open(sqlite_options);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  ports::StateStore& store = **opened;
  FakeClock clock;
  auto broker = std::make_shared<MemoryBroker>();
  MemoryJobQueue publisher(broker);
  std::vector<std::unique_ptr<MemoryJobQueue>> listeners;
  std::vector<std::unique_ptr<CapabilityCache>> caches;
  std::vector<std::unique_ptr<Scheduler>> schedulers;
  const std::string pool = std::string(kBackendA) + "#default";
  for (int i = 0; i < 2; ++i) {
    listeners.push_back(std::make_unique<MemoryJobQueue>(broker));
    caches.push_back(std::make_unique<CapabilityCache>(*listeners.back(), clock));
    CapabilityReport report;
    report.backend = std::string(kBackendA);
    report.host = std::string(kBackendA);
    report.total_capacity_gib = 100;
    report.free_capacity_gib = 100;
    caches.back()->Apply(report);
    SchedulerOptions options;
    options.backends = {std::string(kBackendA)};
    options.max_over_subscription_ratio = 1.0;
    schedulers.push_back(
        std::make_unique<Scheduler>(store, publisher, clock, options, caches.back().get()));
  }
  constexpr int kVolumes = 200;
  std::vector<ports::Delivery> jobs;
  for (int i = 0; i < kVolumes; ++i) {
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = std::string(kProject);
    volume.user_id = "user";
    volume.status = VolumeStatus::kCreatingQueued;
    volume.size_gib = 1;
    volume.availability_zone = "nova";
    volume.operation_id = NewUuid();
    volume.created_at = FormatTimestamp(clock.WallNow());
    ASSERT_TRUE(store.Insert(ports::Table::kVolumes, VolumeToRow(volume)).has_value());
    ports::Delivery job;
    job.job_id = NewUuid();
    job.topic = "scheduler";
    job.payload =
        JobMessage{Operation::kCreateVolume, volume.id, *volume.operation_id, std::string(kProject)}
            .ToJson();
    job.delivery_count = 1;
    jobs.push_back(std::move(job));
  }
  std::atomic<bool> done{false};
  std::atomic<std::int64_t> most_seen{0};
  std::thread watcher([&] {
    while (!done.load()) {
      std::int64_t seen = Allocated(store, pool);
      std::int64_t before = most_seen.load();
      while (seen > before && !most_seen.compare_exchange_weak(before, seen)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::vector<std::thread> workers;
  workers.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = t; i < kVolumes; i += kThreads) {
        Scheduler& scheduler = *schedulers[static_cast<std::size_t>(i % 2)];
        JobOutcome outcome = JobOutcome::kRetryLater;
        for (int attempt = 0; attempt < 20 && outcome != JobOutcome::kDone; ++attempt) {
          outcome = scheduler.Handle(jobs[static_cast<std::size_t>(i)]);
        }
        EXPECT_EQ(outcome, JobOutcome::kDone);
      }
    });
  }
  for (std::thread& worker : workers) {
    worker.join();
  }
  done.store(true);
  watcher.join();
  auto rows = store.List(ports::Table::kVolumes, {});
  ASSERT_TRUE(rows.has_value());
  int placed = 0;
  int failed = 0;
  for (const ports::Row& row : *rows) {
    if (TextColumn(row, "host") == pool) {
      ++placed;
      EXPECT_EQ(TextColumn(row, "status"), "creating_queued");
    } else {
      ++failed;
      EXPECT_EQ(TextColumn(row, "status"), "error");
      EXPECT_THAT(TextColumn(row, "status_reason").value_or(""),
                  ::testing::HasSubstr("No valid back-end was found"));
    }
  }
  EXPECT_EQ(placed, 100);
  EXPECT_EQ(failed, 100);
  EXPECT_EQ(Allocated(store, pool), 100);
  EXPECT_LE(most_seen.load(), 100);
}

}  // namespace
}  // namespace clinker::services
