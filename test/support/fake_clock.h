// FakeClock: a ports::Clock whose wall and monotonic times only move when a test moves them, so
// timestamps (created_at, updated_at, sort order by time) are deterministic.
//
// Contract: thread safe (one mutex; services read it from worker threads while the test advances
// it). Never blocks beyond that mutex. MonoNow never goes back: SetMono refuses an earlier time
// with CLINKER_ASSERT, as a real monotonic clock cannot go back. Wall time may be set anywhere,
// backwards included, because real wall clocks are stepped too.
#pragma once

#include <chrono>
#include <mutex>

#include "clinker/core/assert.h"
#include "clinker/ports/clock.h"

namespace clinker::test_support {

class FakeClock final : public ports::Clock {
 public:
  using WallTimePoint = std::chrono::system_clock::time_point;
  using MonoTimePoint = std::chrono::steady_clock::time_point;

  // 2026-01-01T00:00:00Z: a fixed, readable start so expected timestamps can be written out.
  static constexpr std::chrono::seconds kDefaultWallSinceEpoch{1767225600};

  FakeClock()
      : wall_(WallTimePoint(kDefaultWallSinceEpoch)), mono_(MonoTimePoint(std::chrono::hours(1))) {}

  WallTimePoint WallNow() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return wall_;
  }

  MonoTimePoint MonoNow() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return mono_;
  }

  void SetWall(WallTimePoint wall) {
    std::lock_guard<std::mutex> lock(mutex_);
    wall_ = wall;
  }

  void SetMono(MonoTimePoint mono) {
    std::lock_guard<std::mutex> lock(mutex_);
    CLINKER_ASSERT(mono >= mono_, "a monotonic clock never goes back");
    mono_ = mono;
  }

  // Moves both clocks forward by `step`, as time passing does.
  template <class Rep, class Period>
  void Advance(std::chrono::duration<Rep, Period> step) {
    CLINKER_ASSERT(step.count() >= 0, "time only moves forward");
    std::lock_guard<std::mutex> lock(mutex_);
    wall_ += std::chrono::duration_cast<WallTimePoint::duration>(step);
    mono_ += std::chrono::duration_cast<MonoTimePoint::duration>(step);
  }

 private:
  mutable std::mutex mutex_;
  WallTimePoint wall_;
  MonoTimePoint mono_;
};

}  // namespace clinker::test_support
