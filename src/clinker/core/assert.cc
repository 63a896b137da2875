#include "clinker/core/assert.h"

#include <cstdio>
#include <cstdlib>

namespace clinker::internal {

void AssertFailed(const char* condition, const char* why, const char* file, int line) {
  std::fprintf(stderr, "clinker: assertion failed at %s:%d: %s (%s)\n", file, line, condition, why);
  std::fflush(stderr);
  std::abort();
}

}  // namespace clinker::internal
