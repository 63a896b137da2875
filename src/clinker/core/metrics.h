// Process-wide counters for benchmarks and the shutdown log line: how many database transactions
// a workload cost, whichever adapter ran them. Lock-free (relaxed atomics), so counting costs
// nothing measurable on the paths it counts.
#pragma once

#include <atomic>
#include <cstdint>

namespace clinker::metrics {

struct Counters {
  std::atomic<std::uint64_t> write_transactions{0};  // Committed or attempted write transactions.
  std::atomic<std::uint64_t> read_transactions{0};
};

inline Counters& Global() {
  static Counters counters;
  return counters;
}

inline void CountWrite() {
  Global().write_transactions.fetch_add(1, std::memory_order_relaxed);
}

inline void CountRead() {
  Global().read_transactions.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace clinker::metrics
