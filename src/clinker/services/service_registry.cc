#include "clinker/services/service_registry.h"

#include <algorithm>
#include <utility>

#include "clinker/core/assert.h"
#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/domain/service_state.h"

namespace clinker::services {
namespace {

using ports::Expectation;
using ports::Row;
using ports::Table;
using ports::Value;

Value OptionalText(const std::optional<std::string>& text) {
  return text ? Value(*text) : Value();
}

}  // namespace

ServiceRegistry::ServiceRegistry(ports::StateStore& store,
                                 const ports::Clock& clock,
                                 ServiceRegistryOptions options)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      service_id_(ServiceId(options_.binary, options_.host)) {
  CLINKER_ASSERT(!options_.binary.empty() && !options_.host.empty(),
                 "a service needs a binary and a host");
  CLINKER_ASSERT(options_.report_interval.count() > 0, "report_interval must be positive");
  CLINKER_ASSERT(!options_.cluster_name || !options_.cluster_name->empty(),
                 "an empty cluster name means no cluster: pass std::nullopt");
}

ServiceRegistry::~ServiceRegistry() {
  Stop().IgnoreError("Stop logged it; the row goes down after service_down_time anyway");
}

std::string ServiceRegistry::ServiceId(std::string_view binary, std::string_view host) {
  return std::string(binary) + ":" + std::string(host);
}

std::string ServiceRegistry::ClusterId(std::string_view binary, std::string_view cluster_name) {
  return std::string(binary) + ":" + std::string(cluster_name);
}

Result<void> ServiceRegistry::Register() {
  WallTime now = clock_.WallNow();
  std::string timestamp = FormatTimestamp(now);
  Value heartbeat(domain::ToHeartbeatMillis(now));
  Row row = {
      {"id", service_id_},
      {"binary", options_.binary},
      {"host", options_.host},
      {"cluster_name", OptionalText(options_.cluster_name)},
      {"availability_zone", options_.availability_zone},
      {"heartbeat_at", heartbeat},
      {"created_at", timestamp},
      {"updated_at", timestamp},
  };
  auto inserted = store_.Insert(Table::kServices, row);
  if (inserted) {
    log::Info("service.registered", {{"service_id", service_id_}});
  } else if (inserted.error().code == ErrorCode::kConflict) {
    // This (binary, host) ran before: take its row back, keeping its disabled flag and history.
    Row revive = {
        {"cluster_name", OptionalText(options_.cluster_name)},
        {"availability_zone", options_.availability_zone},
        {"heartbeat_at", heartbeat},
        {"updated_at", timestamp},
        {"deleted", Value(std::int64_t{0})},
        {"deleted_at", Value()},
    };
    CLINKER_ASSIGN_OR_RETURN(
        std::optional<Row> revived,
        store_.ConditionalUpdate(Table::kServices,
                                 service_id_,
                                 revive,
                                 {Expectation::Equals("binary", options_.binary),
                                  Expectation::Equals("host", options_.host)},
                                 {}));
    if (!revived) {
      // Rows are never removed, and the id is made of binary and host: only a foreign row
      // could get here.
      return MakeError(ErrorCode::kConflict,
                       "service row " + service_id_ + " belongs to another binary or host");
    }
    log::Info("service.revived", {{"service_id", service_id_}});
  } else {
    return inserted;
  }
  return EnsureCluster();
}

Result<void> ServiceRegistry::EnsureCluster() {
  if (!options_.cluster_name) {
    return {};
  }
  std::string cluster_id = ClusterId(options_.binary, *options_.cluster_name);
  std::string timestamp = FormatTimestamp(clock_.WallNow());
  Row row = {
      {"id", cluster_id},
      {"name", *options_.cluster_name},
      {"binary", options_.binary},
      {"created_at", timestamp},
  };
  auto inserted = store_.Insert(Table::kClusters, row);
  if (inserted) {
    log::Info("cluster.created", {{"cluster_id", cluster_id}});
    return {};
  }
  if (inserted.error().code != ErrorCode::kConflict) {
    return inserted;
  }
  // It exists: another member created it first (the race is harmless), or an operator removed
  // it, in which case it comes back as new. Of racing revivers exactly one wins; the others
  // find it live and carry on.
  Row revive = {
      {"deleted", Value(std::int64_t{0})},
      {"deleted_at", Value()},
      {"disabled", Value(std::int64_t{0})},
      {"disabled_reason", Value()},
      {"created_at", timestamp},
      {"updated_at", timestamp},
  };
  CLINKER_ASSIGN_OR_RETURN(
      std::optional<Row> revived,
      store_.ConditionalUpdate(Table::kClusters,
                               cluster_id,
                               revive,
                               {Expectation::Equals("deleted", std::int64_t{1})},
                               {}));
  if (revived) {
    log::Info("cluster.revived", {{"cluster_id", cluster_id}});
  }
  return {};
}

Result<void> ServiceRegistry::Beat() {
  WallTime now = clock_.WallNow();
  CLINKER_ASSIGN_OR_RETURN(
      std::optional<Row> updated,
      store_.ConditionalUpdate(Table::kServices,
                               service_id_,
                               {{"heartbeat_at", Value(domain::ToHeartbeatMillis(now))},
                                {"updated_at", Value(FormatTimestamp(now))}},
                               {Expectation::Equals("deleted", std::int64_t{0})},
                               {}));
  if (updated) {
    return {};
  }
  log::Warn("service.reregistering", {{"service_id", service_id_}});
  return Register();
}

Result<void> ServiceRegistry::Start() {
  std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    CLINKER_ASSERT(!running_, "ServiceRegistry::Start called twice");
  }
  CLINKER_RETURN_IF_ERROR(Register());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running_ = true;
    stopping_ = false;
  }
  thread_ = std::thread([this] { Run(); });
  return {};
}

void ServiceRegistry::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(
        lock, options_.report_interval, [this] { return stopping_ || mark_down_pending_; });
    if (stopping_) {
      break;
    }
    const bool mark_down = std::exchange(mark_down_pending_, false);
    const bool paused = std::chrono::steady_clock::now() < not_working_until_;
    const std::string reason = not_working_reason_;
    lock.unlock();
    if (mark_down) {
      auto marked = MarkDown();
      log::Warn("service.not_working",
                {{"service_id", service_id_},
                 {"reason", reason},
                 {"marked_down", static_cast<bool>(marked)}});
    } else if (!paused) {
      auto beat = Beat();
      if (!beat) {
        log::Warn("service.heartbeat_failed",
                  {{"service_id", service_id_}, {"error", beat.error().ToString()}});
      }
    }
    lock.lock();
  }
}

void ServiceRegistry::ReportNotWorking(std::chrono::milliseconds duration, std::string reason) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    not_working_until_ = std::max(not_working_until_, std::chrono::steady_clock::now() + duration);
    not_working_reason_ = std::move(reason);
    mark_down_pending_ = true;
  }
  wake_.notify_all();
}

std::optional<std::string> ServiceRegistry::NotWorkingReason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (std::chrono::steady_clock::now() < not_working_until_) {
    return not_working_reason_;
  }
  return std::nullopt;
}

Result<void> ServiceRegistry::MarkDown() {
  CLINKER_ASSIGN_OR_RETURN(
      std::optional<Row> updated,
      store_.ConditionalUpdate(
          Table::kServices,
          service_id_,
          {{"heartbeat_at", Value()}, {"updated_at", Value(FormatTimestamp(clock_.WallNow()))}},
          {Expectation::Equals("deleted", std::int64_t{0})},
          {}));
  (void)updated;  // A missing row shows down anyway.
  return {};
}

Result<void> ServiceRegistry::Stop() {
  std::lock_guard<std::mutex> lifecycle(lifecycle_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!running_) {
      return {};
    }
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running_ = false;
  }
  // The thread is gone, so no heartbeat can follow and bring the row back up.
  auto deregistered = MarkDown();
  if (!deregistered) {
    log::Warn("service.deregister_failed",
              {{"service_id", service_id_}, {"error", deregistered.error().ToString()}});
    return tl::unexpected(deregistered.error());
  }
  log::Info("service.deregistered", {{"service_id", service_id_}});
  return {};
}

}  // namespace clinker::services
