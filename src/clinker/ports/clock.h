// Clock: the only source of time for domain and services code, so tests can drive time.
//
// Contract: thread safe; never blocks; never fails. WallNow is for timestamps shown to users and
// stored in the database; MonoNow is for durations, deadlines and timeouts (it never goes back).
#pragma once

#include <chrono>

namespace clinker::ports {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point WallNow() const = 0;
  virtual std::chrono::steady_clock::time_point MonoNow() const = 0;
};

}  // namespace clinker::ports
