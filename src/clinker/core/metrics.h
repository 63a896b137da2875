// Process-wide counters for benchmarks and the shutdown log line: how many database transactions
// a workload cost, whichever adapter ran them, and what the HTTP front end holds and refused.
// Lock-free (relaxed atomics), so counting costs nothing measurable on the paths it counts.
#pragma once

#include <atomic>
#include <cstdint>

namespace clinker::metrics {

struct Counters {
  std::atomic<std::uint64_t> write_transactions{0};  // Committed or attempted write transactions.
  std::atomic<std::uint64_t> read_transactions{0};
  // HTTP front end (adapters/http): gauges of what is open now, and counters since start.
  std::atomic<std::int64_t> http_open_connections{0};
  std::atomic<std::int64_t> http_requests_in_flight{0};  // Queued for or running in a worker.
  std::atomic<std::uint64_t> http_requests{0};           // Requests handed to the handler.
  // Requests and connections the server answered itself with an error (400, 408, 413, 431, 503)
  // or closed at once (over max_connections), and connections closed for a timeout.
  std::atomic<std::uint64_t> http_refusals{0};
  std::atomic<std::uint64_t> http_timeouts{0};
  // Requests refused by admission control (services/admission.h): back-end backlog full.
  std::atomic<std::uint64_t> admission_refusals{0};
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
