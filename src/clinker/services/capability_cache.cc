#include "clinker/services/capability_cache.h"

#include <utility>
#include <vector>

#include "clinker/core/assert.h"
#include "clinker/core/log.h"

namespace clinker::services {

namespace {

// After a failed receive (queue down), so the thread does not spin on an error that returns at
// once.
constexpr std::chrono::milliseconds kRetryPause{1000};

}  // namespace

CapabilityCache::CapabilityCache(ports::JobQueue& listener,
                                 const ports::Clock& clock,
                                 CapabilityCacheOptions options)
    : listener_(listener), clock_(clock), options_(options) {
  CLINKER_ASSERT(options_.receive_wait.count() > 0, "receive_wait must be > 0");
}

CapabilityCache::~CapabilityCache() {
  Stop();
}

Result<void> CapabilityCache::Start() {
  CLINKER_ASSERT(!thread_.joinable(), "Start is called once");
  CLINKER_RETURN_IF_ERROR(listener_.Listen({std::string(kSchedulerFanoutChannel)}));
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      Result<int> polled = Poll(options_.receive_wait);
      lock.lock();
      if (!polled) {
        log::Warn("scheduler.capability_receive_failed", {{"error", polled.error().ToString()}});
        stop_signal_.wait_for(lock, kRetryPause, [this] { return stopping_; });
      }
    }
  });
  return {};
}

void CapabilityCache::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stop_signal_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

Result<int> CapabilityCache::Poll(std::chrono::milliseconds wait) {
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::BroadcastMessage> messages,
                           listener_.ReceiveBroadcasts(wait));
  int applied = 0;
  for (const ports::BroadcastMessage& message : messages) {
    if (message.channel != kSchedulerFanoutChannel) {
      continue;  // Another listener of the same session may listen elsewhere; not ours.
    }
    Result<CapabilityReport> report = CapabilityReport::FromJson(message.payload);
    if (!report) {
      log::Warn("scheduler.bad_capability_report",
                {{"error", report.error().ToString()}, {"payload", message.payload}});
      continue;
    }
    if (!Apply(*report)) {
      log::Info("scheduler.old_capability_report_ignored",
                {{"backend", report->backend},
                 {"host", report->host},
                 {"reported_at", report->reported_at}});
      continue;
    }
    ++applied;
  }
  return applied;
}

bool CapabilityCache::Apply(const CapabilityReport& report) {
  auto now = clock_.MonoNow();
  std::lock_guard<std::mutex> lock(mutex_);
  auto kept = latest_.find(report.backend);
  if (kept != latest_.end() && kept->second.report.sent_at_us > report.sent_at_us) {
    return false;
  }
  latest_.insert_or_assign(report.backend, CachedCapability{report, now});
  return true;
}

std::optional<CachedCapability> CapabilityCache::Get(std::string_view backend) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = latest_.find(backend);
  if (it == latest_.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::vector<CachedCapability> CapabilityCache::All() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<CachedCapability> all;
  all.reserve(latest_.size());
  for (const auto& [backend, cached] : latest_) {
    all.push_back(cached);
  }
  return all;
}

}  // namespace clinker::services
