// Goal: the RequeueSweeper re-publishes the job of a volume or a snapshot left queued with no job
// (a crash between the API's database write and its publish), not too early and not more than
// once per period, and never for one that is not queued. A snapshot's job goes to the topic of
// its volume's back-end (its cluster's when it has one); an extend is re-published like the
// other volume operations.
// Method: volumes and snapshots written straight into a MemoryStateStore, a FakeClock moved by
// hand, and MemoryJobQueue sessions subscribed to the topics the jobs must reach.
#include "clinker/services/requeue_sweeper.h"

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/services/job_message.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"

namespace clinker::services {
namespace {

using domain::SnapshotStatus;
using domain::VolumeStatus;
using std::chrono::seconds;

class RequeueSweeperTest : public ::testing::Test {
 protected:
  RequeueSweeperTest()
      : broker_(std::make_shared<adapters::MemoryBroker>()),
        publisher_(broker_),
        receiver_(broker_),
        sweeper_(store_, publisher_, clock_, {seconds(10), seconds(30)}) {
    EXPECT_TRUE(receiver_.Subscribe({SchedulerTopic(), VolumeTopic("node1@file")}));
  }

  void AddVolume(const std::string& id,
                 VolumeStatus status,
                 std::optional<std::string> host,
                 bool deleted = false) {
    Volume volume;
    volume.id = id;
    volume.project_id = "abc";
    volume.user_id = "u";
    volume.status = status;
    volume.size_gib = 1;
    volume.availability_zone = "nova";
    volume.host = std::move(host);
    volume.operation_id = "op-" + id;
    volume.created_at = FormatTimestamp(clock_.WallNow());
    volume.deleted = deleted;
    ASSERT_TRUE(store_.Insert(ports::Table::kVolumes, VolumeToRow(volume)));
  }

  void AddSnapshot(const std::string& id,
                   const std::string& volume_id,
                   SnapshotStatus status,
                   bool deleted = false) {
    Snapshot snapshot;
    snapshot.id = id;
    snapshot.project_id = "abc";
    snapshot.user_id = "u";
    snapshot.volume_id = volume_id;
    snapshot.status = status;
    snapshot.size_gib = 1;
    snapshot.operation_id = "op-" + id;
    snapshot.created_at = FormatTimestamp(clock_.WallNow());
    snapshot.deleted = deleted;
    ASSERT_TRUE(store_.Insert(ports::Table::kSnapshots, SnapshotToRow(snapshot)));
  }

  // Every job waiting for the receiver, as (topic, message), acked.
  std::vector<std::pair<std::string, JobMessage>> Drain() {
    std::vector<std::pair<std::string, JobMessage>> jobs;
    for (int i = 0; i < 100; ++i) {
      auto delivery = receiver_.Receive(std::chrono::milliseconds(0));
      EXPECT_TRUE(delivery);
      if (!delivery || !delivery->has_value()) {
        break;
      }
      auto message = JobMessage::FromJson((*delivery)->payload);
      EXPECT_TRUE(message);
      jobs.emplace_back((*delivery)->topic, *message);
      EXPECT_TRUE(receiver_.Ack(**delivery));
    }
    return jobs;
  }

  adapters::MemoryStateStore store_;
  std::shared_ptr<adapters::MemoryBroker> broker_;
  adapters::MemoryJobQueue publisher_;
  adapters::MemoryJobQueue receiver_;
  test_support::FakeClock clock_;
  RequeueSweeper sweeper_;
};

TEST_F(RequeueSweeperTest, YoungQueuedVolumesAreLeftAlone) {
  AddVolume("v1", VolumeStatus::kCreatingQueued, std::nullopt);
  clock_.Advance(seconds(29));
  auto swept = sweeper_.Sweep();
  ASSERT_TRUE(swept);
  EXPECT_EQ(*swept, 0);
  EXPECT_TRUE(Drain().empty());
}

TEST_F(RequeueSweeperTest, OldQueuedVolumesGetTheirJobAgainOnTheRightTopic) {
  AddVolume("v1", VolumeStatus::kCreatingQueued, std::nullopt);
  AddVolume("v2", VolumeStatus::kCreatingQueued, "node1@file#default");
  AddVolume("v3", VolumeStatus::kDeletingQueued, "node1@file#default");
  AddVolume("v4", VolumeStatus::kAvailable, "node1@file#default");
  AddVolume("v5", VolumeStatus::kCreating, "node1@file#default");
  AddVolume("v6", VolumeStatus::kDeleted, "node1@file#default", true);
  clock_.Advance(seconds(31));
  auto swept = sweeper_.Sweep();
  ASSERT_TRUE(swept);
  EXPECT_EQ(*swept, 3);
  auto jobs = Drain();
  ASSERT_EQ(jobs.size(), 3u);
  std::map<std::string, std::pair<std::string, JobMessage>> by_volume;
  for (auto& job : jobs) {
    by_volume.emplace(job.second.resource_id, job);
  }
  EXPECT_EQ(by_volume.at("v1").first, SchedulerTopic());
  EXPECT_EQ(by_volume.at("v1").second.operation, domain::Operation::kCreateVolume);
  EXPECT_EQ(by_volume.at("v1").second.operation_id, "op-v1");
  EXPECT_EQ(by_volume.at("v2").first, VolumeTopic("node1@file"));
  EXPECT_EQ(by_volume.at("v3").first, VolumeTopic("node1@file"));
  EXPECT_EQ(by_volume.at("v3").second.operation, domain::Operation::kDeleteVolume);
}

TEST_F(RequeueSweeperTest, AJobIsPublishedAgainAtMostOncePerPeriod) {
  AddVolume("v1", VolumeStatus::kCreatingQueued, std::nullopt);
  clock_.Advance(seconds(31));
  ASSERT_EQ(*sweeper_.Sweep(), 1);
  clock_.Advance(seconds(10));
  ASSERT_EQ(*sweeper_.Sweep(), 0);
  clock_.Advance(seconds(21));
  ASSERT_EQ(*sweeper_.Sweep(), 1);
  EXPECT_EQ(Drain().size(), 2u);
}

TEST_F(RequeueSweeperTest, OldQueuedSnapshotsGetTheirJobAgainOnTheirVolumesTopic) {
  AddVolume("v1", VolumeStatus::kAvailable, "node1@file#default");
  AddSnapshot("s1", "v1", SnapshotStatus::kCreatingQueued);
  AddSnapshot("s2", "v1", SnapshotStatus::kDeletingQueued);
  AddSnapshot("s3", "v1", SnapshotStatus::kAvailable);
  AddSnapshot("s4", "v1", SnapshotStatus::kCreating);
  AddSnapshot("s5", "v1", SnapshotStatus::kDeleting);
  AddSnapshot("s6", "v1", SnapshotStatus::kDeletingQueued, /*deleted=*/true);
  clock_.Advance(seconds(31));

  auto swept = sweeper_.Sweep();

  ASSERT_TRUE(swept) << swept.error().ToString();
  EXPECT_EQ(*swept, 2);
  auto jobs = Drain();
  ASSERT_EQ(jobs.size(), 2u);
  std::map<std::string, std::pair<std::string, JobMessage>> by_snapshot;
  for (auto& job : jobs) {
    by_snapshot.emplace(job.second.resource_id, job);
  }
  ASSERT_EQ(by_snapshot.count("s1"), 1u);
  ASSERT_EQ(by_snapshot.count("s2"), 1u);
  EXPECT_EQ(by_snapshot.at("s1").first, VolumeTopic("node1@file"));
  EXPECT_EQ(by_snapshot.at("s1").second.operation, domain::Operation::kCreateSnapshot);
  EXPECT_EQ(by_snapshot.at("s1").second.operation_id, "op-s1");
  EXPECT_EQ(by_snapshot.at("s1").second.project_id, "abc");
  EXPECT_EQ(by_snapshot.at("s2").first, VolumeTopic("node1@file"));
  EXPECT_EQ(by_snapshot.at("s2").second.operation, domain::Operation::kDeleteSnapshot);
  EXPECT_EQ(by_snapshot.at("s2").second.operation_id, "op-s2");
}

TEST_F(RequeueSweeperTest, YoungQueuedSnapshotsAreLeftAloneAndOldOnesOncePerPeriod) {
  AddVolume("v1", VolumeStatus::kAvailable, "node1@file#default");
  AddSnapshot("s1", "v1", SnapshotStatus::kCreatingQueued);
  clock_.Advance(seconds(29));
  ASSERT_EQ(*sweeper_.Sweep(), 0);
  clock_.Advance(seconds(2));
  ASSERT_EQ(*sweeper_.Sweep(), 1);
  clock_.Advance(seconds(10));
  ASSERT_EQ(*sweeper_.Sweep(), 0);
  clock_.Advance(seconds(21));
  ASSERT_EQ(*sweeper_.Sweep(), 1);
  EXPECT_EQ(Drain().size(), 2u);
}

TEST_F(RequeueSweeperTest, ASnapshotOfAClusteredVolumeGoesToTheClustersTopic) {
  Volume volume;
  volume.id = "v1";
  volume.project_id = "abc";
  volume.user_id = "u";
  volume.status = VolumeStatus::kAvailable;
  volume.size_gib = 1;
  volume.availability_zone = "nova";
  volume.host = "node1@file#default";
  volume.cluster_name = "c1@file#default";
  volume.created_at = FormatTimestamp(clock_.WallNow());
  ASSERT_TRUE(store_.Insert(ports::Table::kVolumes, VolumeToRow(volume)));
  AddSnapshot("s1", "v1", SnapshotStatus::kDeletingQueued);
  adapters::MemoryJobQueue cluster_receiver(broker_);
  ASSERT_TRUE(cluster_receiver.Subscribe({VolumeTopic("c1@file")}));
  clock_.Advance(seconds(31));

  ASSERT_EQ(*sweeper_.Sweep(), 1);

  EXPECT_TRUE(Drain().empty()) << "nothing on the host's own topic";
  auto delivery = cluster_receiver.Receive(std::chrono::milliseconds(0));
  ASSERT_TRUE(delivery && delivery->has_value());
  auto message = JobMessage::FromJson((*delivery)->payload);
  ASSERT_TRUE(message);
  EXPECT_EQ(message->resource_id, "s1");
  EXPECT_EQ(message->operation, domain::Operation::kDeleteSnapshot);
}

// A snapshot whose volume row cannot be read has no topic: it is skipped, not an error, and the
// other jobs still go out.
TEST_F(RequeueSweeperTest, ASnapshotWithoutAVolumeRowIsSkipped) {
  AddSnapshot("orphan", "no-such-volume", SnapshotStatus::kCreatingQueued);
  AddVolume("v1", VolumeStatus::kDeletingQueued, "node1@file#default");
  clock_.Advance(seconds(31));

  auto swept = sweeper_.Sweep();

  ASSERT_TRUE(swept) << swept.error().ToString();
  EXPECT_EQ(*swept, 1);
  auto jobs = Drain();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].second.resource_id, "v1");
}

TEST_F(RequeueSweeperTest, AnExtendingQueuedVolumeGetsItsExtendJobAgain) {
  AddVolume("v1", VolumeStatus::kExtendingQueued, "node1@file#default");
  AddVolume("v2", VolumeStatus::kExtending, "node1@file#default");
  clock_.Advance(seconds(31));

  ASSERT_EQ(*sweeper_.Sweep(), 1);

  auto jobs = Drain();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].first, VolumeTopic("node1@file"));
  EXPECT_EQ(jobs[0].second.resource_id, "v1");
  EXPECT_EQ(jobs[0].second.operation, domain::Operation::kExtendVolume);
  EXPECT_EQ(jobs[0].second.operation_id, "op-v1");
}

}  // namespace
}  // namespace clinker::services
