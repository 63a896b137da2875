// CapabilityCache: a scheduler's view of the back-ends' capacity, built from the reports that
// every volume service broadcasts on the scheduler fanout channel (see CapabilityReporter).
//
// It keeps the newest report per back-end address, stamped with the local monotonic time it was
// received (the sender's wall clock is not trusted for freshness: clocks of two nodes differ, and
// the network may delay a report). "Newest" is by the sender's stamp (sent_at_us), as Cinder's
// HostManager drops "old capability reports": a report older than the one kept (delayed,
// redelivered, or from a second scheduler's replay) never replaces it; one as new does (two
// members of one cluster both describe that cluster). Malformed reports (missing fields,
// negative numbers) are logged and ignored.
//
// Contract: thread safe (one mutex; the scheduler's workers read while the listening thread
// writes). Get and Apply never block beyond it. Poll waits up to `wait` for reports. Start calls
// Listen on the session (its error is returned) and then polls on one thread until Stop; a
// failed poll or a malformed report is logged and skipped (an unreadable report cannot become
// readable). Stop returns within about `receive_wait`; it is idempotent and the destructor
// calls it. Start and Stop are called once each, from one thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/services/capability_reporter.h"

namespace clinker::services {

struct CachedCapability {
  CapabilityReport report;
  std::chrono::steady_clock::time_point received_at;  // Local ports::Clock::MonoNow.
};

struct CapabilityCacheOptions {
  // How long one ReceiveBroadcasts waits; bounds how long Stop takes.
  std::chrono::milliseconds receive_wait{500};
};

class CapabilityCache {
 public:
  // `listener` is the session the reports are received on; it may also be the scheduler's job
  // session (broadcasts and jobs do not mix).
  CapabilityCache(ports::JobQueue& listener,
                  const ports::Clock& clock,
                  CapabilityCacheOptions options = {});
  CapabilityCache(const CapabilityCache&) = delete;
  CapabilityCache& operator=(const CapabilityCache&) = delete;
  ~CapabilityCache();

  // Listens on the fanout channel and starts the receiving thread.
  Result<void> Start();
  void Stop();

  // One receive: applies what arrived within `wait`; returns how many reports were applied.
  // Needs Listen (Start, or a test's own Listen on the session) first.
  Result<int> Poll(std::chrono::milliseconds wait);

  // Records `report` as received now, unless a newer report of its back-end (by sent_at_us) is
  // already kept; returns whether it was recorded.
  bool Apply(const CapabilityReport& report);

  std::optional<CachedCapability> Get(std::string_view backend) const;

  // Every back-end's latest report, by back-end address.
  std::vector<CachedCapability> All() const;

 private:
  ports::JobQueue& listener_;
  const ports::Clock& clock_;
  const CapabilityCacheOptions options_;

  mutable std::mutex mutex_;  // Guards the members below.
  std::map<std::string, CachedCapability, std::less<>> latest_;
  std::condition_variable stop_signal_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace clinker::services
