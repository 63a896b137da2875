// Goal: the RequeueSweeper re-publishes the job of a volume left queued with no job (a crash
// between the API's database write and its publish), not too early and not more than once per
// period, and never for a volume that is not queued.
// Method: volumes written straight into a MemoryStateStore, a FakeClock moved by hand, and a
// MemoryJobQueue session subscribed to the topics the jobs must reach.
#include "clinker/services/requeue_sweeper.h"

#include <gtest/gtest.h>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/services/job_message.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"

namespace clinker::services {
namespace {

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

}  // namespace
}  // namespace clinker::services
