// SystemClock: the Clock port on the operating system's clocks.
#pragma once

#include "clinker/ports/clock.h"

namespace clinker::adapters {

class SystemClock final : public ports::Clock {
 public:
  std::chrono::system_clock::time_point WallNow() const override;
  std::chrono::steady_clock::time_point MonoNow() const override;
};

}  // namespace clinker::adapters
