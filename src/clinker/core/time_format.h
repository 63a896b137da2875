// Timestamps as Cinder shows and stores them: naive UTC, "%Y-%m-%dT%H:%M:%S.%f".
#pragma once

#include <chrono>
#include <string>

namespace clinker {

using WallTime = std::chrono::system_clock::time_point;

// Microsecond precision, e.g. "2018-11-28T06:21:12.715987". Lexicographic order is time order,
// which the state stores rely on for sorting by created_at.
std::string FormatTimestamp(WallTime time);

}  // namespace clinker
