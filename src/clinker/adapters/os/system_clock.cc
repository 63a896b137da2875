#include "clinker/adapters/os/system_clock.h"

namespace clinker::adapters {

std::chrono::system_clock::time_point SystemClock::WallNow() const {
  return std::chrono::system_clock::now();
}

std::chrono::steady_clock::time_point SystemClock::MonoNow() const {
  return std::chrono::steady_clock::now();
}

}  // namespace clinker::adapters
