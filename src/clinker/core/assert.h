// CLINKER_ASSERT: a broken invariant is a bug, and the only correct reaction to a bug is to stop.
// It stays on in release builds. Never assert on the environment (disk, network, engines): those
// failures are Results.
#pragma once

namespace clinker::internal {
[[noreturn]] void AssertFailed(const char* condition, const char* why, const char* file, int line);
}  // namespace clinker::internal

#define CLINKER_ASSERT(condition, why)                                          \
  do {                                                                          \
    if (!(condition)) {                                                         \
      ::clinker::internal::AssertFailed(#condition, (why), __FILE__, __LINE__); \
    }                                                                           \
  } while (false)
