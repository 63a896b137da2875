// PeriodicTask: runs a step on its own thread every `interval` (optionally once at start) until
// stopped; the shape shared by the services' background loops (requeue sweeps, capability
// reports).
//
// Contract: Start once; Stop wakes the thread at once, waits for a running step to finish, and is
// idempotent (the destructor calls it). The step must bound its own time and report its own
// errors: the loop only sequences it. Thread safe: Stop may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "clinker/core/assert.h"

namespace clinker::services {

class PeriodicTask {
 public:
  enum class FirstRun { kAtStart, kAfterInterval };

  PeriodicTask(std::chrono::milliseconds interval, FirstRun first_run, std::function<void()> step)
      : interval_(interval), first_run_(first_run), step_(std::move(step)) {
    CLINKER_ASSERT(interval_.count() > 0, "a periodic task needs a positive interval");
  }

  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;
  PeriodicTask(PeriodicTask&&) = delete;
  PeriodicTask& operator=(PeriodicTask&&) = delete;

  ~PeriodicTask() { Stop(); }

  void Start() {
    CLINKER_ASSERT(!thread_.joinable(), "Start is called once");
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mutex_);
      bool run = first_run_ == FirstRun::kAtStart && !stopping_;
      while (run || !stop_signal_.wait_for(lock, interval_, [this] { return stopping_; })) {
        run = false;
        lock.unlock();
        step_();
        lock.lock();
      }
    });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    stop_signal_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
    }
  }

 private:
  const std::chrono::milliseconds interval_;
  const FirstRun first_run_;
  const std::function<void()> step_;
  std::mutex mutex_;
  std::condition_variable stop_signal_;
  bool stopping_ = false;  // Guarded by mutex_.
  std::thread thread_;
};

}  // namespace clinker::services
