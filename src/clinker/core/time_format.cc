#include "clinker/core/time_format.h"

#include <cstdio>
#include <ctime>

namespace clinker {

std::string FormatTimestamp(WallTime time) {
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch());
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(micros);
  std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buffer[64];  // Room for any int year, which -Wformat-truncation checks.
  std::snprintf(buffer,
                sizeof(buffer),
                "%04d-%02d-%02dT%02d:%02d:%02d.%06lld",
                utc.tm_year + 1900,
                utc.tm_mon + 1,
                utc.tm_mday,
                utc.tm_hour,
                utc.tm_min,
                utc.tm_sec,
                static_cast<long long>((micros - seconds).count()));
  return buffer;
}

}  // namespace clinker
