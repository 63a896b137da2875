// Goal: PeriodicTask runs its step at the start when asked, then once per interval, and Stop ends
// it at once (not after a whole interval).
// Method: real threads with a long interval (so only the immediate run can happen within the
// test) and a short one (so repeats happen); waits are bounded, the lower bounds are generous.
#include "clinker/services/periodic_task.h"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace clinker::services {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

bool WaitFor(const std::atomic<int>& runs, int at_least, milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  while (runs.load() < at_least && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  return runs.load() >= at_least;
}

TEST(PeriodicTaskTest, RunsAtStartThenStopsWithoutWaitingForTheInterval) {
  std::atomic<int> runs{0};
  PeriodicTask task(std::chrono::hours(1), PeriodicTask::FirstRun::kAtStart, [&] { ++runs; });
  task.Start();
  ASSERT_TRUE(WaitFor(runs, 1, milliseconds(5000)));
  Clock::time_point before = Clock::now();
  task.Stop();
  EXPECT_LT(Clock::now() - before, milliseconds(2000)) << "Stop waited for the interval";
  EXPECT_EQ(runs.load(), 1);
  task.Stop();  // Idempotent.
}

TEST(PeriodicTaskTest, AfterIntervalDoesNotRunAtStartButRepeats) {
  std::atomic<int> runs{0};
  {
    PeriodicTask slow(
        std::chrono::hours(1), PeriodicTask::FirstRun::kAfterInterval, [&] { ++runs; });
    slow.Start();
    std::this_thread::sleep_for(milliseconds(50));
  }  // The destructor stops it.
  EXPECT_EQ(runs.load(), 0);

  PeriodicTask fast(milliseconds(5), PeriodicTask::FirstRun::kAfterInterval, [&] { ++runs; });
  fast.Start();
  EXPECT_TRUE(WaitFor(runs, 3, milliseconds(5000)));
  fast.Stop();
  int stopped_at = runs.load();
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_EQ(runs.load(), stopped_at) << "a step ran after Stop returned";
}

}  // namespace
}  // namespace clinker::services
