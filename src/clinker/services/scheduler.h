// Scheduler: chooses the back-end of each new volume and forwards its create job there.
//
// A create job is first published to the scheduler topic; the scheduler records the chosen
// back-end in the volume's `host` with a conditional update (only while the volume is still
// queued for this very operation and unscheduled), then publishes the job to that back-end's
// topic, then acks. A crash between those steps redelivers the job: the scheduler finds the host
// already recorded and publishes again; a duplicate create job is dropped by the volume
// manager's stuck-job rules.
//
// Choice, as Cinder's FilterScheduler with its default filters and weigher. Without a
// CapabilityCache the configured back-ends take volumes in turn. With one, each back-end is a
// pool ("<address>#<pool>") described by its latest capability report (fresh: younger than
// capability_max_age by the local monotonic clock) and by its allocated capacity, read from the
// state store (pool_capacity: the GiB the volumes placed there hold). Filters:
// - CapacityFilter (thin provisioning): allocated + size <= total x max_over_subscription_ratio,
//   and free x ratio >= size (PassesCapacityFilter);
// - CapabilitiesFilter: the capabilities meet the extra specs of the volume's type (`vendor_name`,
//   `capabilities:storage_protocol`, `<is>`, `<in>`, `<or>` ...: domain/extra_specs.h).
// Weigher: CapacityWeigher, most virtual free capacity first (total x ratio - allocated:
// CapacityWeight), or, when configured, VolumeNumberWeigher, fewest live volumes first
// (VolumeNumberWeight); equal weights take volumes in turn.
// If no configured back-end has reported at all yet (a fresh start of the whole system), every
// configured back-end is eligible, as without a cache. If some have reported but none is
// eligible, the volume goes to error with Cinder's "No valid back-end was found: <why>".
//
// Reservation: the scheduler records the chosen back-end in the volume's `host` and reserves the
// volume's size on its pool in ONE conditional update (ConditionalUpdateWithUsage with a
// kPoolCapacity usage change bounded by total x ratio of the latest report; unbounded without a
// report), so of any number of schedulers (and of volumes placed between two reports) never two
// are promised the same space: a pool that became full since it was read refuses the write
// (kQuotaExceeded) and the next candidate is tried; when every one refuses, the volume fails as
// above. The volume row records what it holds (capacity_reserved_gib); the volume manager's
// write that fails the create (status error) or soft-deletes the volume gives it back in the same
// write and sets it to 0, so the release happens exactly once whatever the redeliveries.
// Back-ends an operator disabled or froze (os-services disable / freeze: the service's row, or
// for a cluster its cluster's row) take no new volumes, as Cinder's scheduler leaves them out;
// they are read from the state store at each choice.
//
// A volume that fails to be scheduled also gets a user message (GET /messages) for its
// project: "schedule allocate volume:Could not find any available weighted backend.", as
// Cinder's scheduler records one.
//
// Thread safe: Handle may run on several workers at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "clinker/domain/extra_specs.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/capability_cache.h"
#include "clinker/services/job_worker_pool.h"

namespace clinker::services {

struct SchedulerOptions {
  // Clustered back-ends ("<cluster>@<backend>"), then unclustered ones ("<host>@<backend>"): all
  // take volumes, chosen in turn. A volume scheduled to a cluster records it in `cluster_name`
  // (and in `host`), so any member of the cluster may run its jobs.
  std::vector<std::string> clusters;
  std::vector<std::string> backends;
  std::string pool = "default";
  // Reports older than this do not count (with a CapabilityCache): about 3 report intervals, so
  // one lost report does not take a back-end out, and a dead one is out within this time.
  std::chrono::milliseconds capability_max_age{30000};
  // Thin provisioning, as Cinder's max_over_subscription_ratio: a pool takes a volume while the
  // GiB allocated on it, with the volume's, stay within total capacity x this ratio and its size
  // is at most free capacity x this ratio (volumes are sparse and fill up over time).
  double max_over_subscription_ratio = 20.0;
  // Cinder's scheduler_default_weighers, one of: kCapacity (CapacityWeigher, the default) or
  // kVolumeNumber (VolumeNumberWeigher: the pool holding the fewest live volumes first, which
  // spreads volumes, and their I/O, by count rather than by size).
  enum class Weigher { kCapacity, kVolumeNumber };
  Weigher weigher = Weigher::kCapacity;
};

// A pool as the filters and the weigher see it.
struct PoolState {
  std::int64_t total_capacity_gib = 0;
  std::int64_t free_capacity_gib = 0;
  std::int64_t allocated_capacity_gib = 0;  // Reserved by the volumes placed on it.
};

// The most GiB a pool may hold: total x max_over_subscription_ratio, rounded down.
std::int64_t CapacityLimit(const PoolState& pool, double max_over_subscription_ratio);

// Cinder's CapacityFilter for a thin pool: the volume fits under CapacityLimit with what is
// allocated, and the free space x ratio covers it. On false, *why says why.
bool PassesCapacityFilter(const PoolState& pool,
                          std::int64_t size_gib,
                          double max_over_subscription_ratio,
                          std::string* why);

// Cinder's CapacityWeigher for a thin pool: the virtual free capacity, total x ratio - allocated
// (the more, the better).
double CapacityWeight(const PoolState& pool, double max_over_subscription_ratio);

// Cinder's VolumeNumberWeigher: the fewer live volumes a pool holds, the better.
double VolumeNumberWeight(std::int64_t volumes_on_pool);

class Scheduler {
 public:
  // `publisher` sends the forwarded jobs; it may be the same object as the consuming session.
  Scheduler(ports::StateStore& store,
            ports::JobQueue& publisher,
            const ports::Clock& clock,
            SchedulerOptions options);
  // With capability-based choice (see above); `capabilities` outlives the scheduler.
  Scheduler(ports::StateStore& store,
            ports::JobQueue& publisher,
            const ports::Clock& clock,
            SchedulerOptions options,
            const CapabilityCache* capabilities);

  JobOutcome Handle(const ports::Delivery& delivery);

 private:
  struct Candidate {
    std::string address;
    bool clustered = false;
    // The most GiB its pool may hold (total x ratio of its latest report); nullopt: no report,
    // unbounded.
    std::optional<std::int64_t> limit_gib;
    double weight = 0;  // CapacityWeight; 0 without a report.
  };

  // Publishes the create job to the chosen back-end's topic: kDone, or kRetryLater if the
  // publish failed (the redelivered job is then forwarded to the recorded back-end).
  JobOutcome Forward(const std::string& volume_id,
                     const std::string& topic,
                     const std::string& payload);
  // The candidates for a volume of `size_gib`, best first: on an empty result, *why says why
  // none is. `disabled`: the addresses of disabled or frozen back-ends (DisabledBackends);
  // `allocated`: each pool's allocated GiB (AllocatedCapacity).
  std::vector<Candidate> Eligible(std::int64_t size_gib,
                                  const std::map<std::string, std::string>& extra_specs,
                                  const std::set<std::string>& disabled,
                                  const std::map<std::string, std::int64_t>& allocated,
                                  std::string* why);
  // VolumeNumberWeigher: re-weighs the candidates by the live volumes on their pools (one
  // listing per candidate, as Cinder's reads the volumes of each host) and sorts them again,
  // stably, so equal counts keep their turn.
  Result<void> WeighByVolumeNumber(std::vector<Candidate>* candidates) const;
  // Every pool's allocated GiB (pool_capacity), by pool address.
  Result<std::map<std::string, std::int64_t>> AllocatedCapacity() const;

  std::string PoolOf(const std::string& address) const { return address + "#" + options_.pool; }

  // The extra specs of the volume's type (none for a volume without a type id or whose type is
  // gone).
  Result<std::map<std::string, std::string>> TypeExtraSpecs(
      const std::optional<std::string>& volume_type_id) const;
  domain::Capabilities CapabilitiesOf(const CapabilityReport& report) const;
  Result<std::set<std::string>> DisabledBackends() const;
  // Sets the still-unscheduled volume to error with "No valid back-end was found: <why>";
  // returns whether it did (false: the row no longer matched `still_ours` + no host).
  Result<bool> FailNoValidBackend(const std::string& volume_id,
                                  std::vector<ports::Expectation> still_ours,
                                  const std::string& now,
                                  const std::string& why);

  ports::StateStore& store_;
  ports::JobQueue& publisher_;
  const ports::Clock& clock_;
  SchedulerOptions options_;
  const CapabilityCache* const capabilities_;  // Null: choose among all configured back-ends.
  std::atomic<std::size_t> next_backend_{0};
};

}  // namespace clinker::services
