// CapabilityReporter: a volume service's periodic report of its back-end's capacity to every
// scheduler, as Cinder's volume manager sends its capabilities by a scheduler fanout.
//
// Why a broadcast and not the database: reports are frequent, replaceable and only useful to the
// schedulers running now, so they go through JobQueue::Broadcast (non-durable, at most once);
// a lost report is replaced by the next one, and a scheduler treats a backend whose report is
// too old as unable to take volumes (see CapabilityCache and Scheduler).
//
// A report names the back-end by the address the scheduler places volumes on:
// "<cluster>@<backend>" for a clustered service, "<host>@<backend>" otherwise; `host` is always
// the service's own "<host>@<backend>".
//
// Contract: ReportOnce is thread safe (it only reads options and calls the driver and the
// queue, both thread safe). Start reports at once and then every report_interval on one thread,
// until Stop; a failed report is logged and the next interval tries again. Stop waits for a
// report in progress (bounded by the driver's GetStats and the queue's Broadcast) and is
// idempotent; the destructor calls it. Start and Stop are called once each, from one thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/ports/storage_driver.h"
#include "clinker/services/periodic_task.h"

namespace clinker::services {

// The broadcast channel every scheduler listens on.
inline constexpr std::string_view kSchedulerFanoutChannel = "scheduler_fanout";

struct CapabilityReport {
  std::string backend;  // Placement address: "<cluster>@<backend>" or "<host>@<backend>".
  std::string host;     // The reporting service: "<host>@<backend>".
  std::int64_t total_capacity_gib = 0;
  std::int64_t free_capacity_gib = 0;
  std::string reported_at;  // Sender's wall clock, FormatTimestamp; for logs and humans only.
  // Sender's wall clock when it made the report, in microseconds since the epoch: a scheduler
  // keeps a report only if no newer one of its back-end arrived first (as Cinder's timestamp;
  // two members of one cluster describe the same back-end, so the newest of either wins).
  std::int64_t sent_at_us = 0;
  // The back-end's static capabilities (Cinder's volume_backend_name, vendor_name,
  // driver_version, storage_protocol), for the admin APIs. Optional in the JSON (empty when
  // absent), so reports of an older sender still read.
  std::string volume_backend_name;
  std::string vendor_name;
  std::string driver_version;
  std::string storage_protocol;

  std::string ToJson() const;
  // kInvalidArgument for anything but an object with every field of the right type, or with a
  // negative capacity or timestamp.
  static Result<CapabilityReport> FromJson(std::string_view text);

  bool operator==(const CapabilityReport&) const = default;
};

struct CapabilityReporterOptions {
  std::string host;     // This node's host name (without "@<backend>").
  std::string cluster;  // Its cluster's name; empty when the service is not clustered.
  // The volume_backend_name to report (what volume types' extra specs match); empty: the
  // driver's back-end name, which also names the addresses. Several back-ends may share one
  // (a volume type then places on any of them), as in Cinder.
  std::string volume_backend_name;
  std::chrono::milliseconds report_interval{10000};
};

class CapabilityReporter {
 public:
  CapabilityReporter(ports::StorageDriver& driver,
                     ports::JobQueue& publisher,
                     const ports::Clock& clock,
                     CapabilityReporterOptions options);
  CapabilityReporter(const CapabilityReporter&) = delete;
  CapabilityReporter& operator=(const CapabilityReporter&) = delete;
  ~CapabilityReporter();

  // Reads the driver's stats and broadcasts one report; returns what it sent.
  Result<CapabilityReport> ReportOnce();

  void Start();
  void Stop();

 private:
  void ReportAndLog();

  ports::StorageDriver& driver_;
  ports::JobQueue& publisher_;
  const ports::Clock& clock_;
  const CapabilityReporterOptions options_;
  PeriodicTask task_;
};

}  // namespace clinker::services
