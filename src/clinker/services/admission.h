// AdmissionControl: a bound on the back-end work that is queued or under way (not yet finished),
// per back-end, so that offered load beyond what the volume nodes can finish is refused at the
// API (503 with Retry-After, nothing written) instead of piling up as creating volumes whose
// wait grows without bound (docs/adr/0005-admission-control.md).
//
// What counts ("the backlog"): live volumes, snapshots and backups whose stored status is a
// queued or in-progress one (domain/status.h: Phase::kQueued, kInProgress), grouped by the
// back-end their jobs go to (cluster_name, else host, without "#pool"; a snapshot goes where its
// volume is). A volume still waiting for the scheduler has no back-end yet: it is "unplaced".
// The counts come from the StateStore, shared by every API server, and are cached for
// `refresh_interval` (`recount_when_full` when the cached count would refuse); what this process
// admitted and the cached count may not include (its writes not finished before that count began:
// AdmissionTicket) is added to it, so one API server never overshoots the bound, and several
// overshoot by at most what the others admit within one interval.
//
// Decisions:
// - Work bound for a known back-end (a clone, a volume from a snapshot, a snapshot, a backup, a
//   restore (its backup's back-end), an extend): refused when that back-end's backlog is at the
//   bound.
// - A new volume for the scheduler to place: refused when the backlog of all back-ends together
//   (unplaced volumes included) is at the bound times the number of back-ends (distinct back-ends
//   of the volume services registered and not disabled; at least 1). With one back-end this is
//   exactly the bound; with several the scheduler's placement decides where the work goes.
// - A bound of 0 admits everything and reads nothing.
// - The store failing while counting admits (the request's own writes will meet the store and
//   fail or not on their own), keeping the last counts, and logs once per refresh attempt.
//
// Thread safe: Admit* and Backlog may be called from any threads at once; one caller at a time
// refreshes the counts while the others decide on the previous ones (the first count ever is
// waited for). Blocks on the StateStore only when refreshing.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/http_types.h"
#include "clinker/ports/state_store.h"

namespace clinker::services {

struct AdmissionOptions {
  // [api] max_queued_jobs_per_backend; 0: unbounded (no counting at all).
  std::int64_t max_queued_jobs_per_backend = 0;
  // How long a count of the backlog is used before it is taken again.
  std::chrono::milliseconds refresh_interval{1000};
  // A request that the count would refuse has it taken again if it is older than this, so that
  // work finished since is seen quickly while the back-end is full (at most one count per this
  // interval per process while refusing).
  std::chrono::milliseconds recount_when_full{100};
  // The Retry-After (seconds) of a refusal.
  int retry_after_s = 2;
};

// The backlog as last counted (plus what this process admitted since).
struct Backlog {
  std::map<std::string, std::int64_t, std::less<>> per_backend;  // Back-end address -> jobs.
  std::int64_t unplaced = 0;  // Volumes waiting for the scheduler.
  std::int64_t backends = 0;  // Back-ends of registered, enabled volume services.
  std::chrono::steady_clock::time_point counted_at{};
};

class AdmissionControl;

// An admitted request's claim on its back-end: counted against it while the request writes its
// rows, and after that until a count of the backlog that began once the writes were done (which
// then sees them). Destroy it once the request's writes are done (or failed). Move-only; an
// empty ticket (the bound off) does nothing.
class AdmissionTicket {
 public:
  AdmissionTicket() = default;
  AdmissionTicket(AdmissionTicket&& other) noexcept;
  AdmissionTicket& operator=(AdmissionTicket&& other) noexcept;
  AdmissionTicket(const AdmissionTicket&) = delete;
  AdmissionTicket& operator=(const AdmissionTicket&) = delete;
  ~AdmissionTicket();

 private:
  friend class AdmissionControl;

  AdmissionTicket(AdmissionControl* owner, std::uint64_t id) : owner_(owner), id_(id) {}

  AdmissionControl* owner_ = nullptr;
  std::uint64_t id_ = 0;
};

// A refusal (the 503 to answer) or a ticket.
using Admission = tl::expected<AdmissionTicket, ports::HttpResponse>;

class AdmissionControl {
 public:
  AdmissionControl(ports::StateStore& store, const ports::Clock& clock, AdmissionOptions options);
  AdmissionControl(const AdmissionControl&) = delete;
  AdmissionControl& operator=(const AdmissionControl&) = delete;
  AdmissionControl(AdmissionControl&&) = delete;
  AdmissionControl& operator=(AdmissionControl&&) = delete;
  // Tickets must not outlive it.
  ~AdmissionControl() = default;

  bool enabled() const { return options_.max_queued_jobs_per_backend > 0; }

  // Work for the back-end `backend_address` ("<host>@<backend>" or "<cluster>@<backend>", or a
  // volume host with "#pool", which is dropped): a ticket, or the 503 to answer
  // (serviceUnavailable, Retry-After).
  Admission AdmitOnBackend(std::string_view backend_address);
  // A new volume the scheduler will place (see the decisions above).
  Admission AdmitUnplaced();

  // The backlog now (counted again if the cached count is older than refresh_interval), with
  // this process's admissions not yet counted added. Counts with the bound off too (for the
  // status endpoint). kUnavailable if the store never answered.
  Result<Backlog> Current();

  std::int64_t bound() const { return options_.max_queued_jobs_per_backend; }

 private:
  friend class AdmissionTicket;
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Admitted {
    std::string backend;                  // "" for a volume the scheduler will place.
    std::optional<TimePoint> written_at;  // Set when the ticket is destroyed.
  };

  // Counts from the store. Blocking; called without mutex_.
  Result<Backlog> Count();
  // Makes sure `backlog_` is no older than `max_age` (refreshing it, or waiting for the first
  // count).
  void Refresh(std::chrono::milliseconds max_age);
  Admission Admit(std::string backend);
  // The backlog of `backend` ("": every back-end, for an unplaced volume) and its capacity, as
  // counted plus what is uncounted. Under mutex_, with a count.
  std::pair<std::int64_t, std::int64_t> Load(const std::string& backend) const;
  void Release(std::uint64_t id);
  // Admissions the cached count may not include, per back-end ("": unplaced). Under mutex_.
  std::map<std::string, std::int64_t, std::less<>> Uncounted() const;
  ports::HttpResponse Refusal(std::string_view what) const;

  ports::StateStore& store_;
  const ports::Clock& clock_;
  const AdmissionOptions options_;

  std::mutex refresh_mutex_;        // Held by the one caller counting; taken before mutex_.
  mutable std::mutex mutex_;        // Guards everything below.
  std::optional<Backlog> backlog_;  // counted_at: when its count began.
  std::map<std::uint64_t, Admitted> admitted_;
  std::uint64_t next_id_ = 1;
};

// Work whose jobs go to `cluster_name`'s queue, else `host`'s (a volume's, a backup's): admitted
// on that back-end, or as a volume the scheduler will place when neither is set. A null
// `admission` (no admission control wired) admits with an empty ticket.
Admission AdmitOnJobsBackend(AdmissionControl* admission,
                             const std::optional<std::string>& cluster_name,
                             const std::optional<std::string>& host);

// GET /metrics: Prometheus' text format (0.0.4) with the HTTP front end's gauges and counters
// (core/metrics.h) and, when `admission` is given, the backlog per back-end
// (clinker_backend_queued_jobs{backend="..."}), the volumes waiting for the scheduler and the
// bound. A backlog that cannot be counted leaves its lines out (and says so in a comment).
ports::HttpResponse MetricsDocument(AdmissionControl* admission);

}  // namespace clinker::services
