// Goal: check that a volume service's CapabilityReporter broadcasts its back-end's capacity on
// the scheduler fanout with the right placement address (cluster or host), that failures are
// reported and do not stop the periodic reports, that CapabilityReport's JSON round-trips and
// rejects malformed input, and that a CapabilityCache running its own thread keeps the latest
// report per back-end with the local receive time.
//
// Method: MemoryStorageDriver (or a fake driver whose GetStats fails) and MemoryJobQueue
// sessions on one MemoryBroker; the schedulers' side is a session listening on the fanout
// channel. Report timestamps come from a FakeClock, so they are exact. The threaded tests use a
// short real interval and wait for a bounded number of reports within a bounded time.
#include "clinker/services/capability_reporter.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_storage_driver.h"
#include "clinker/core/time_format.h"
#include "clinker/services/capability_cache.h"

#include "support/fake_clock.h"

namespace clinker::services {
namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStorageDriver;
using std::chrono::milliseconds;
using test_support::FakeClock;

constexpr milliseconds kLongWait{5000};

CapabilityReporterOptions Options(std::string host,
                                  std::string cluster = "",
                                  milliseconds interval = milliseconds(10000)) {
  CapabilityReporterOptions options;
  options.host = std::move(host);
  options.cluster = std::move(cluster);
  options.report_interval = interval;
  return options;
}

// A driver whose GetStats fails a set number of times, then answers.
class FlakyStatsDriver final : public ports::StorageDriver {
 public:
  explicit FlakyStatsDriver(int failures) : failures_(failures) {}

  Result<void> CreateVolume(const ports::VolumeSpec&) override { return {}; }

  Result<void> DeleteVolume(std::string_view, std::string_view, std::uint64_t) override {
    return {};
  }

  Result<void> ExtendVolume(std::string_view,
                            std::int64_t,
                            std::string_view,
                            std::uint64_t) override {
    return {};
  }

  Result<void> CreateSnapshot(const ports::SnapshotSpec&) override { return {}; }

  Result<void> DeleteSnapshot(std::string_view, std::string_view, std::uint64_t) override {
    return {};
  }

  Result<ports::ConnectionInfo> InitializeConnection(std::string_view,
                                                     const ports::Connector&) override {
    return ports::ConnectionInfo{};
  }

  Result<void> TerminateConnection(std::string_view, const ports::Connector&) override {
    return {};
  }

  Result<void> Fence(std::string_view, std::uint64_t) override { return {}; }

  Result<ports::BackendStats> GetStats() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failures_ > 0) {
      --failures_;
      return MakeError(ErrorCode::kDriverFailed, "statfs failed");
    }
    return ports::BackendStats{"flaky", 10, 4};
  }

 private:
  std::mutex mutex_;
  int failures_;
};

class CapabilityReporterTest : public ::testing::Test {
 protected:
  CapabilityReporterTest() {
    EXPECT_TRUE(scheduler_session_.Listen({std::string(kSchedulerFanoutChannel)}).has_value());
  }

  // Every report the scheduler side received, reading until `count` came or kLongWait passed.
  std::vector<CapabilityReport> Received(std::size_t count, milliseconds wait = kLongWait) {
    std::vector<CapabilityReport> reports;
    auto deadline = std::chrono::steady_clock::now() + wait;
    for (int round = 0; round < 1000 && reports.size() < count; ++round) {
      auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) {
        break;
      }
      auto messages = scheduler_session_.ReceiveBroadcasts(left);
      EXPECT_TRUE(messages.has_value());
      if (!messages) {
        break;
      }
      for (const ports::BroadcastMessage& message : *messages) {
        EXPECT_EQ(message.channel, kSchedulerFanoutChannel);
        auto report = CapabilityReport::FromJson(message.payload);
        EXPECT_TRUE(report.has_value()) << message.payload;
        if (report) {
          reports.push_back(*report);
        }
      }
    }
    return reports;
  }

  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_ = std::make_shared<MemoryBroker>();
  MemoryJobQueue volume_session_{broker_};
  MemoryJobQueue scheduler_session_{broker_};
};

TEST_F(CapabilityReporterTest, UnclusteredServiceReportsUnderItsHostAddress) {
  MemoryStorageDriver driver("file", 100);
  ASSERT_TRUE(driver.CreateVolume(ports::VolumeSpec{"aa", 30, "op1", 1, {}}).has_value());
  CapabilityReporter reporter(driver, volume_session_, clock_, Options("node1"));

  auto sent = reporter.ReportOnce();
  ASSERT_TRUE(sent.has_value()) << sent.error().ToString();

  std::vector<CapabilityReport> reports = Received(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], *sent);
  EXPECT_EQ(reports[0].backend, "node1@file");
  EXPECT_EQ(reports[0].host, "node1@file");
  EXPECT_EQ(reports[0].total_capacity_gib, 100);
  EXPECT_EQ(reports[0].free_capacity_gib, 70);
  EXPECT_EQ(reports[0].reported_at, FormatTimestamp(clock_.WallNow()));
}

TEST_F(CapabilityReporterTest, ClusteredServiceReportsUnderItsClusterAddress) {
  MemoryStorageDriver driver("file", 100);
  CapabilityReporter reporter(driver, volume_session_, clock_, Options("node2", "cluster1"));

  ASSERT_TRUE(reporter.ReportOnce().has_value());

  std::vector<CapabilityReport> reports = Received(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].backend, "cluster1@file");
  EXPECT_EQ(reports[0].host, "node2@file");
}

TEST_F(CapabilityReporterTest, ConfiguredVolumeBackendNameIsReportedUnderTheDriversAddress) {
  MemoryStorageDriver driver("gold", 100);
  CapabilityReporterOptions options = Options("node3");
  options.volume_backend_name = "fast-tier";
  CapabilityReporter reporter(driver, volume_session_, clock_, options);

  ASSERT_TRUE(reporter.ReportOnce().has_value());

  std::vector<CapabilityReport> reports = Received(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].backend, "node3@gold");
  EXPECT_EQ(reports[0].volume_backend_name, "fast-tier");
}

TEST_F(CapabilityReporterTest, DriverFailureSendsNothingAndIsReturned) {
  FlakyStatsDriver driver(1);
  CapabilityReporter reporter(driver, volume_session_, clock_, Options("node1"));

  auto sent = reporter.ReportOnce();
  ASSERT_FALSE(sent.has_value());
  EXPECT_EQ(sent.error().code, ErrorCode::kDriverFailed);
  EXPECT_TRUE(Received(1, milliseconds(100)).empty());
}

TEST_F(CapabilityReporterTest, StartReportsPeriodicallyAndSurvivesFailures) {
  FlakyStatsDriver driver(2);  // The first two reports fail; the thread must go on.
  CapabilityReporter reporter(
      driver, volume_session_, clock_, Options("node1", "", milliseconds(10)));
  reporter.Start();
  std::vector<CapabilityReport> reports = Received(3);
  reporter.Stop();
  ASSERT_GE(reports.size(), 3u);
  EXPECT_EQ(reports[0].backend, "node1@flaky");
  EXPECT_EQ(reports[0].free_capacity_gib, 4);

  // Stopped: no more reports (one may have been in flight at Stop; drain it, then expect none).
  Received(100, milliseconds(50));
  EXPECT_TRUE(Received(1, milliseconds(100)).empty());
}

TEST_F(CapabilityReporterTest, StopWithoutStartAndTwiceIsHarmless) {
  MemoryStorageDriver driver("file", 100);
  CapabilityReporter reporter(driver, volume_session_, clock_, Options("node1"));
  reporter.Stop();
  reporter.Stop();
}

TEST(CapabilityReportJsonTest, RoundTripsAndRejectsMalformedReports) {
  CapabilityReport report{"cluster1@file",
                          "node1@file",
                          100,
                          42,
                          "2026-01-01T00:00:00.000000",
                          1767225600000000,
                          "file",
                          "Clinker",
                          "1.0.0",
                          "file"};
  auto parsed = CapabilityReport::FromJson(report.ToJson());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  EXPECT_EQ(*parsed, report);

  // A report without the static capabilities still reads.
  auto old = CapabilityReport::FromJson(
      R"({"backend":"a@b","host":"a@b","total_capacity_gib":1,"free_capacity_gib":1,)"
      R"("reported_at":"t","sent_at_us":5})");
  ASSERT_TRUE(old.has_value()) << old.error().ToString();
  EXPECT_EQ(old->vendor_name, "");
  EXPECT_EQ(old->sent_at_us, 5);

  for (const std::string& bad : {
           std::string(""),
           std::string("[]"),
           std::string(R"({"backend":"a@b","host":"a@b","total_capacity_gib":1})"),
           std::string(R"({"backend":"a@b","host":"a@b","total_capacity_gib":"1",)"
                       R"("free_capacity_gib":1,"reported_at":"t"})"),
           std::string(R"({"backend":"","host":"a@b","total_capacity_gib":1,)"
                       R"("free_capacity_gib":1,"reported_at":"t","sent_at_us":1})"),
           std::string(
               R"({"backend":"a@b","host":"a@b","total_capacity_gib":1,)"
               R"("free_capacity_gib":1,"reported_at":"t","sent_at_us":1,"vendor_name":1})"),
           // No sender stamp: it could not be ordered against the others.
           std::string(R"({"backend":"a@b","host":"a@b","total_capacity_gib":1,)"
                       R"("free_capacity_gib":1,"reported_at":"t"})"),
           // Negative numbers.
           std::string(R"({"backend":"a@b","host":"a@b","total_capacity_gib":-1,)"
                       R"("free_capacity_gib":1,"reported_at":"t","sent_at_us":1})"),
           std::string(R"({"backend":"a@b","host":"a@b","total_capacity_gib":1,)"
                       R"("free_capacity_gib":-1,"reported_at":"t","sent_at_us":1})"),
           std::string(R"({"backend":"a@b","host":"a@b","total_capacity_gib":1,)"
                       R"("free_capacity_gib":1,"reported_at":"t","sent_at_us":-1})"),
           std::string(R"({"backend":"a@b","host":"a@b","total_capacity_gib":1,)"
                       R"("free_capacity_gib":1,"reported_at":"t","sent_at_us":1.5})"),
       }) {
    SCOPED_TRACE(bad);
    auto rejected = CapabilityReport::FromJson(bad);
    ASSERT_FALSE(rejected.has_value());
    EXPECT_EQ(rejected.error().code, ErrorCode::kInvalidArgument);
  }
}

// The scheduler side on its own thread: the cache listens, keeps the latest report per back-end
// and stamps it with the local monotonic time.
TEST_F(CapabilityReporterTest, CacheThreadKeepsTheLatestReportPerBackEnd) {
  MemoryJobQueue cache_session(broker_);
  CapabilityCache cache(cache_session, clock_, CapabilityCacheOptions{milliseconds(20)});
  ASSERT_TRUE(cache.Start().has_value());

  MemoryStorageDriver driver("file", 100);
  CapabilityReporter node1(driver, volume_session_, clock_, Options("node1"));
  ASSERT_TRUE(node1.ReportOnce().has_value());
  clock_.Advance(std::chrono::seconds(5));
  ASSERT_TRUE(driver.CreateVolume(ports::VolumeSpec{"bb", 60, "op2", 1, {}}).has_value());
  ASSERT_TRUE(node1.ReportOnce().has_value());
  const auto second_report_mono = clock_.MonoNow();

  std::optional<CachedCapability> cached;
  auto deadline = std::chrono::steady_clock::now() + kLongWait;
  while (std::chrono::steady_clock::now() < deadline) {
    cached = cache.Get("node1@file");
    if (cached && cached->report.free_capacity_gib == 40) {
      break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  cache.Stop();
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->report.free_capacity_gib, 40);
  EXPECT_EQ(cached->received_at, second_report_mono);
  EXPECT_FALSE(cache.Get("node2@file").has_value());
}

// Reports may arrive out of order (delayed, redelivered, two members of a cluster): the cache
// keeps the newest by the sender's stamp, whatever the order of arrival; malformed ones are
// ignored and leave the kept report alone.
TEST_F(CapabilityReporterTest, AnOlderOrMalformedReportNeverReplacesTheKeptOne) {
  MemoryJobQueue cache_session(broker_);
  CapabilityCache cache(cache_session, clock_);
  CapabilityReport newer{"c@file", "node1@file", 100, 40, "t2", 2000, "file", "", "", "file"};
  CapabilityReport older = newer;
  older.free_capacity_gib = 90;
  older.sent_at_us = 1000;
  older.host = "node2@file";
  EXPECT_TRUE(cache.Apply(newer));
  EXPECT_FALSE(cache.Apply(older));
  ASSERT_TRUE(cache.Get("c@file").has_value());
  EXPECT_EQ(cache.Get("c@file")->report, newer);
  CapabilityReport same_time = older;
  same_time.sent_at_us = 2000;
  EXPECT_TRUE(cache.Apply(same_time)) << "as new: the other member's view of the cluster";
  EXPECT_EQ(cache.Get("c@file")->report.free_capacity_gib, 90);

  // Through the fanout: an old one and a bad one are skipped, the newer one applied.
  ASSERT_TRUE(cache_session.Listen({std::string(kSchedulerFanoutChannel)}).has_value());
  CapabilityReport newest = newer;
  newest.sent_at_us = 3000;
  newest.free_capacity_gib = 10;
  ASSERT_TRUE(volume_session_.Broadcast(kSchedulerFanoutChannel, older.ToJson()).has_value());
  ASSERT_TRUE(volume_session_
                  .Broadcast(kSchedulerFanoutChannel,
                             R"({"backend":"c@file","host":"node1@file","total_capacity_gib":-5,)"
                             R"("free_capacity_gib":1,"reported_at":"t","sent_at_us":9000})")
                  .has_value());
  ASSERT_TRUE(volume_session_.Broadcast(kSchedulerFanoutChannel, newest.ToJson()).has_value());
  int applied = 0;
  for (int round = 0; round < 10 && applied < 1; ++round) {
    auto polled = cache.Poll(milliseconds(50));
    ASSERT_TRUE(polled.has_value());
    applied += *polled;
  }
  EXPECT_EQ(applied, 1);
  EXPECT_EQ(cache.Get("c@file")->report, newest);
}

}  // namespace
}  // namespace clinker::services
