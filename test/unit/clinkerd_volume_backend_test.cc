// clinkerd's per-back-end wiring (bin/clinkerd/volume_backend.h): two back-ends of one process
// each consume their own topics, run their jobs on their own driver (their own directory) and
// report their own capabilities under their own address and volume_backend_name.
//
// Method: the real VolumeBackend with the file driver in a temp dir, in-memory state store, job
// queue (one broker, a session per back-end as the daemon opens them) and locks, the system
// clock; volume rows written directly and create jobs published to each back-end's topic.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_lock_manager.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/os/system_clock.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/capability_cache.h"
#include "clinker/services/job_message.h"
#include "clinker/services/volume_record.h"

#include "clinkerd/volume_backend.h"
#include "support/temp_dir.h"

namespace clinkerd {
namespace {

using clinker::adapters::MemoryBroker;
using clinker::adapters::MemoryJobQueue;
using clinker::domain::Operation;
using clinker::domain::VolumeStatus;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr auto kWait = std::chrono::seconds(10);

class VolumeBackendTest : public ::testing::Test {
 protected:
  VolumeBackendTest() {
    gold_.name = "gold";
    gold_.volume_backend_name = "gold";
    gold_.volume_dir = dir_.path() + "/gold";
    gold_.host = "h";
    gold_.workers = 2;
    silver_.name = "silver";
    silver_.volume_backend_name = "silver-tier";
    silver_.volume_dir = dir_.path() + "/silver";
    silver_.host = "h";
    silver_.cluster = "c";
    silver_.workers = 1;
    shared_.store = &store_;
    shared_.locks = &locks_;
    shared_.clock = &clock_;
    shared_.report_interval = std::chrono::milliseconds(100);
  }

  std::unique_ptr<VolumeBackend> Make(const BackendConfig& config) {
    auto created =
        VolumeBackend::Create(config, std::make_unique<MemoryJobQueue>(broker_), shared_);
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return created ? std::move(*created) : nullptr;
  }

  // A volume the scheduler placed on `pool`, with its create job on `topic`.
  std::string QueueCreate(const std::string& pool, const std::string& topic) {
    clinker::services::Volume volume;
    volume.id = clinker::NewUuid();
    volume.project_id = std::string(kProject);
    volume.user_id = "user";
    volume.status = VolumeStatus::kCreatingQueued;
    volume.size_gib = 1;
    volume.availability_zone = "nova";
    volume.host = pool;
    volume.operation_id = clinker::NewUuid();
    volume.created_at = clinker::FormatTimestamp(clock_.WallNow());
    EXPECT_TRUE(store_.Insert(clinker::ports::Table::kVolumes, VolumeToRow(volume)).has_value());
    MemoryJobQueue publisher(broker_);
    clinker::services::JobMessage job{
        Operation::kCreateVolume, volume.id, *volume.operation_id, std::string(kProject)};
    EXPECT_TRUE(publisher.Publish(topic, job.ToJson()).has_value());
    return volume.id;
  }

  std::string StatusOf(const std::string& volume_id) {
    auto row = store_.Get(clinker::ports::Table::kVolumes, volume_id);
    return row ? clinker::services::TextOr(*row, "status", "") : "";
  }

  template <class Predicate>
  static bool WaitFor(Predicate predicate) {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (!predicate()) {
      if (std::chrono::steady_clock::now() > deadline) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  clinker::test_support::TempDir dir_{"clinkerd_volume_backend"};
  clinker::adapters::MemoryStateStore store_;
  clinker::adapters::MemoryLockManager locks_;
  clinker::adapters::SystemClock clock_;
  std::shared_ptr<MemoryBroker> broker_ = std::make_shared<MemoryBroker>();
  BackendConfig gold_;
  BackendConfig silver_;
  VolumeBackendShared shared_;
};

TEST_F(VolumeBackendTest, TopicsAreTheHostsAndTheClusters) {
  EXPECT_EQ(VolumeBackend::Topics(gold_), std::vector<std::string>{"volume.h@gold"});
  EXPECT_EQ(VolumeBackend::Topics(silver_),
            (std::vector<std::string>{"volume.h@silver", "volume.c@silver"}));
}

TEST_F(VolumeBackendTest, EachBackEndRunsItsOwnJobsOnItsOwnDriver) {
  ASSERT_FALSE(dir_.path().empty());
  std::unique_ptr<VolumeBackend> gold = Make(gold_);
  std::unique_ptr<VolumeBackend> silver = Make(silver_);
  ASSERT_TRUE(gold && silver);
  gold->Start();
  silver->Start();

  const std::string on_gold = QueueCreate("h@gold#default", "volume.h@gold");
  const std::string on_silver = QueueCreate("c@silver#default", "volume.c@silver");

  EXPECT_TRUE(WaitFor([&] { return StatusOf(on_gold) == "available"; })) << StatusOf(on_gold);
  EXPECT_TRUE(WaitFor([&] { return StatusOf(on_silver) == "available"; })) << StatusOf(on_silver);
  namespace fs = std::filesystem;
  EXPECT_TRUE(fs::exists(gold_.volume_dir + "/volume-" + on_gold + ".img"));
  EXPECT_FALSE(fs::exists(silver_.volume_dir + "/volume-" + on_gold + ".img"));
  EXPECT_TRUE(fs::exists(silver_.volume_dir + "/volume-" + on_silver + ".img"));
  EXPECT_FALSE(fs::exists(gold_.volume_dir + "/volume-" + on_silver + ".img"));

  gold->Stop();
  silver->Stop();
  gold->Stop();  // Idempotent.
}

TEST_F(VolumeBackendTest, EachBackEndReportsUnderItsAddressAndVolumeBackendName) {
  MemoryJobQueue listener(broker_);
  clinker::services::CapabilityCache cache(listener, clock_);
  ASSERT_TRUE(cache.Start().has_value());
  std::unique_ptr<VolumeBackend> gold = Make(gold_);
  std::unique_ptr<VolumeBackend> silver = Make(silver_);
  ASSERT_TRUE(gold && silver);
  gold->Start();
  silver->Start();

  ASSERT_TRUE(WaitFor([&] { return cache.Get("h@gold") && cache.Get("c@silver"); }));
  EXPECT_EQ(cache.Get("h@gold")->report.volume_backend_name, "gold");
  EXPECT_EQ(cache.Get("h@gold")->report.host, "h@gold");
  EXPECT_EQ(cache.Get("c@silver")->report.volume_backend_name, "silver-tier");
  EXPECT_EQ(cache.Get("c@silver")->report.host, "h@silver");
  cache.Stop();
}

}  // namespace
}  // namespace clinkerd
