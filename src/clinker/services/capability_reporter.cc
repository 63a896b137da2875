#include "clinker/services/capability_reporter.h"

#include <chrono>
#include <cstdint>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

#include "clinker/core/assert.h"
#include "clinker/core/log.h"
#include "clinker/core/time_format.h"

namespace clinker::services {

std::string CapabilityReport::ToJson() const {
  nlohmann::json json = {
      {"backend", backend},
      {"host", host},
      {"total_capacity_gib", total_capacity_gib},
      {"free_capacity_gib", free_capacity_gib},
      {"reported_at", reported_at},
      {"sent_at_us", sent_at_us},
      {"volume_backend_name", volume_backend_name},
      {"vendor_name", vendor_name},
      {"driver_version", driver_version},
      {"storage_protocol", storage_protocol},
  };
  return json.dump();
}

Result<CapabilityReport> CapabilityReport::FromJson(std::string_view text) {
  nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  auto bad = [&](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument, "capability report: " + std::string(why));
  };
  if (!json.is_object()) {
    return bad("not a JSON object");
  }
  for (const char* key : {"backend", "host", "reported_at"}) {
    if (!json.contains(key) || !json[key].is_string()) {
      return bad(std::string(key) + " is missing or not a string");
    }
  }
  for (const char* key : {"total_capacity_gib", "free_capacity_gib", "sent_at_us"}) {
    if (!json.contains(key) || !json[key].is_number_integer()) {
      return bad(std::string(key) + " is missing or not an integer");
    }
    const bool in_range =
        json[key].is_number_unsigned()
            ? json[key].get<std::uint64_t>() <=
                  static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
            : json[key].get<std::int64_t>() >= 0;
    if (!in_range) {
      return bad(std::string(key) + " is out of range");
    }
  }
  CapabilityReport report;
  report.backend = json["backend"].get<std::string>();
  report.host = json["host"].get<std::string>();
  report.reported_at = json["reported_at"].get<std::string>();
  report.total_capacity_gib = json["total_capacity_gib"].get<std::int64_t>();
  report.free_capacity_gib = json["free_capacity_gib"].get<std::int64_t>();
  report.sent_at_us = json["sent_at_us"].get<std::int64_t>();
  for (auto [key, target] :
       {std::pair<const char*, std::string*>{"volume_backend_name", &report.volume_backend_name},
        std::pair<const char*, std::string*>{"vendor_name", &report.vendor_name},
        std::pair<const char*, std::string*>{"driver_version", &report.driver_version},
        std::pair<const char*, std::string*>{"storage_protocol", &report.storage_protocol}}) {
    if (json.contains(key)) {
      if (!json[key].is_string()) {
        return bad(std::string(key) + " is not a string");
      }
      *target = json[key].get<std::string>();
    }
  }
  if (report.backend.empty()) {
    return bad("backend is empty");
  }
  return report;
}

CapabilityReporter::CapabilityReporter(ports::StorageDriver& driver,
                                       ports::JobQueue& publisher,
                                       const ports::Clock& clock,
                                       CapabilityReporterOptions options)
    : driver_(driver),
      publisher_(publisher),
      clock_(clock),
      options_(std::move(options)),
      // Reports at once, so a scheduler started together with this service learns of it soon.
      task_(
          options_.report_interval, PeriodicTask::FirstRun::kAtStart, [this] { ReportAndLog(); }) {
  CLINKER_ASSERT(!options_.host.empty(), "a capability reporter needs its host name");
  CLINKER_ASSERT(options_.report_interval.count() > 0, "report_interval must be > 0");
}

CapabilityReporter::~CapabilityReporter() {
  Stop();
}

Result<CapabilityReport> CapabilityReporter::ReportOnce() {
  CLINKER_ASSIGN_OR_RETURN(ports::BackendStats stats, driver_.GetStats());
  CapabilityReport report;
  report.host = options_.host + "@" + stats.backend_name;
  report.backend =
      options_.cluster.empty() ? report.host : options_.cluster + "@" + stats.backend_name;
  report.total_capacity_gib = stats.total_capacity_gib;
  report.free_capacity_gib = stats.free_capacity_gib;
  report.volume_backend_name =
      options_.volume_backend_name.empty() ? stats.backend_name : options_.volume_backend_name;
  report.vendor_name = stats.vendor_name;
  report.driver_version = stats.driver_version;
  report.storage_protocol = stats.storage_protocol;
  const auto sent_at = clock_.WallNow();
  report.reported_at = FormatTimestamp(sent_at);
  report.sent_at_us =
      std::chrono::duration_cast<std::chrono::microseconds>(sent_at.time_since_epoch()).count();
  CLINKER_RETURN_IF_ERROR(publisher_.Broadcast(kSchedulerFanoutChannel, report.ToJson()));
  return report;
}

void CapabilityReporter::Start() {
  task_.Start();
}

void CapabilityReporter::Stop() {
  task_.Stop();
}

void CapabilityReporter::ReportAndLog() {
  if (auto reported = ReportOnce(); !reported) {
    log::Warn("volume.capability_report_failed",
              {{"host", options_.host}, {"error", reported.error().ToString()}});
  } else {
    log::Debug("volume.capability_reported",
               {{"backend", reported->backend},
                {"free_capacity_gib", static_cast<long long>(reported->free_capacity_gib)}});
  }
}

}  // namespace clinker::services
