// Goal: check the three promises of JobWorkerPool that make at-least-once delivery safe: a job
// is acked only after its handler returned (so a crash mid-job leaves it in the queue), a
// kRetryLater job goes back to the queue and comes again flagged redelivered, and Stop() lets a
// running handler finish, then returns without taking the jobs nobody started.
//
// Method: a MemoryBroker with one consumer session for the pool and another for publishing; the
// broker's ReadyCount / InFlightCount show where each job is. Handlers block on gates the test
// opens, so "while the handler runs" is a state the test holds, not a race it hopes to hit.
// Every wait is bounded (kWait); polls sleep 1 ms and give up at the deadline.
#include "clinker/services/job_worker_pool.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/adapters/memory/memory_job_queue.h"

namespace clinker::services {
namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;

constexpr auto kWait = std::chrono::seconds(5);
constexpr std::string_view kTopic = "volume.h@test";

// Polls `condition` until it holds or kWait passes.
bool Eventually(const std::function<bool()>& condition) {
  auto deadline = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return condition();
}

// A one-shot signal a handler can wait on, with a bounded wait.
class Gate {
 public:
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    changed_.notify_all();
  }

  bool WaitOpen() {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, kWait, [this] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
};

JobWorkerPool::Options FastOptions() {
  JobWorkerPool::Options options;
  options.name = "test";
  options.workers = 1;
  options.receive_wait = std::chrono::milliseconds(10);
  options.retry_delay = std::chrono::milliseconds(5);
  return options;
}

class JobWorkerPoolTest : public ::testing::Test {
 protected:
  JobWorkerPoolTest()
      : broker_(std::make_shared<MemoryBroker>()), consumer_(broker_), publisher_(broker_) {
    EXPECT_TRUE(consumer_.Subscribe({std::string(kTopic)}).has_value());
  }

  std::string Publish(const std::string& payload) {
    auto published = publisher_.Publish(kTopic, payload);
    EXPECT_TRUE(published.has_value());
    return published ? *published : "";
  }

  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue consumer_;
  MemoryJobQueue publisher_;
};

TEST_F(JobWorkerPoolTest, JobIsAckedOnlyAfterTheHandlerReturns) {
  Gate entered;
  Gate release;
  std::mutex mutex;
  std::vector<std::string> handled;
  JobWorkerPool pool(
      consumer_,
      [&](const ports::Delivery& delivery) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          handled.push_back(delivery.payload);
        }
        entered.Open();
        EXPECT_TRUE(release.WaitOpen());
        return JobOutcome::kDone;
      },
      FastOptions());
  pool.Start();
  Publish("job-1");

  ASSERT_TRUE(entered.WaitOpen()) << "the handler never ran";
  // The handler is running: the job is held by the session, not acked, not ready.
  EXPECT_EQ(broker_->InFlightCount(), 1u);
  EXPECT_EQ(broker_->ReadyCount(kTopic), 0u);

  release.Open();
  EXPECT_TRUE(Eventually([&] { return broker_->InFlightCount() == 0; }))
      << "the job was not acked after the handler returned";
  pool.Stop();

  EXPECT_EQ(broker_->ReadyCount(kTopic), 0u) << "an acked job came back";
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(handled, std::vector<std::string>{"job-1"});
}

TEST_F(JobWorkerPoolTest, RetryLaterGivesTheJobBackAndItIsRedelivered) {
  std::mutex mutex;
  std::vector<ports::Delivery> deliveries;
  Gate second_delivery;
  JobWorkerPool pool(
      consumer_,
      [&](const ports::Delivery& delivery) {
        std::size_t count = 0;
        {
          std::lock_guard<std::mutex> lock(mutex);
          deliveries.push_back(delivery);
          count = deliveries.size();
        }
        if (count == 1) {
          return JobOutcome::kRetryLater;
        }
        second_delivery.Open();
        return JobOutcome::kDone;
      },
      FastOptions());
  pool.Start();
  std::string job_id = Publish("job-1");

  ASSERT_TRUE(second_delivery.WaitOpen()) << "a kRetryLater job never came back";
  EXPECT_TRUE(Eventually([&] { return broker_->InFlightCount() == 0; }));
  pool.Stop();

  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0].job_id, job_id);
  EXPECT_FALSE(deliveries[0].redelivered);
  EXPECT_EQ(deliveries[0].delivery_count, 1);
  EXPECT_EQ(deliveries[1].job_id, job_id);
  EXPECT_TRUE(deliveries[1].redelivered);
  EXPECT_EQ(deliveries[1].delivery_count, 2);
  EXPECT_EQ(deliveries[1].payload, "job-1");
  EXPECT_EQ(broker_->ReadyCount(kTopic), 0u);
}

TEST_F(JobWorkerPoolTest, StopWaitsForTheRunningJobAndLeavesTheOthersReady) {
  Gate entered;
  Gate release;
  std::mutex mutex;
  std::vector<std::string> handled;
  JobWorkerPool pool(
      consumer_,
      [&](const ports::Delivery& delivery) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          handled.push_back(delivery.payload);
        }
        entered.Open();
        EXPECT_TRUE(release.WaitOpen());
        return JobOutcome::kDone;
      },
      FastOptions());
  Publish("job-1");
  Publish("job-2");
  Publish("job-3");
  pool.Start();
  ASSERT_TRUE(entered.WaitOpen()) << "the handler never ran";

  std::future<void> stopped = std::async(std::launch::async, [&pool] { pool.Stop(); });
  // Stop must not return while the handler still runs. A bounded look: a Stop that does not
  // wait would return within a receive_wait (10 ms).
  EXPECT_EQ(stopped.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout)
      << "Stop returned while a handler was running";
  EXPECT_EQ(broker_->InFlightCount(), 1u);

  release.Open();
  ASSERT_EQ(stopped.wait_for(kWait), std::future_status::ready) << "Stop never returned";
  stopped.get();

  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(handled, std::vector<std::string>{"job-1"});
  EXPECT_EQ(broker_->InFlightCount(), 0u) << "the finished job was not acked";
  EXPECT_EQ(broker_->ReadyCount(kTopic), 2u) << "unstarted jobs must stay in the queue";

  // And they are still deliverable, in order, to the next consumer.
  MemoryJobQueue next(broker_);
  ASSERT_TRUE(next.Subscribe({std::string(kTopic)}).has_value());
  auto first = next.Receive(std::chrono::milliseconds(0));
  ASSERT_TRUE(first.has_value() && first->has_value());
  EXPECT_EQ((*first)->payload, "job-2");
  EXPECT_FALSE((*first)->redelivered);
}

}  // namespace
}  // namespace clinker::services
