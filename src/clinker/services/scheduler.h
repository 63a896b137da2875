// Scheduler: chooses the back-end of each new volume and forwards its create job there.
//
// A create job is first published to the scheduler topic; the scheduler records the chosen
// back-end in the volume's `host` with a conditional update (only while the volume is still
// queued for this very operation and unscheduled), then publishes the job to that back-end's
// topic, then acks. A crash between those steps redelivers the job: the scheduler finds the host
// already recorded and publishes again; a duplicate create job is dropped by the volume
// manager's stuck-job rules.
//
// Choice: the configured back-ends take volumes in turn. With a CapabilityCache, only the
// eligible ones do: a back-end is eligible when its latest capability report is fresh (younger
// than capability_max_age by the local monotonic clock), shows at least the volume's size free,
// and its capabilities meet the extra specs of the volume's type (Cinder's CapabilitiesFilter:
// `vendor_name`, `capabilities:storage_protocol`, `<is>`, `<in>`, `<or>` ...). If no configured
// back-end has reported at all yet (a fresh start of the whole system), every configured back-end
// is eligible, as without a cache. If some have reported but none is eligible, the volume goes to
// error with Cinder's "No valid back-end was found: <why>". The scheduler reads the volume row for
// its size before choosing. Free capacity is as last reported, so volumes scheduled between two
// reports may overcommit a back-end a little; the driver then refuses the create, as in Cinder.
//
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
  // Thin provisioning, as Cinder's max_over_subscription_ratio: a back-end takes a volume while
  // its size is at most free capacity x this ratio (volumes are sparse and fill up over time).
  double max_over_subscription_ratio = 20.0;
};

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
  };

  // Publishes the create job to the chosen back-end's topic: kDone, or kRetryLater if the
  // publish failed (the redelivered job is then forwarded to the recorded back-end).
  JobOutcome Forward(const std::string& volume_id,
                     const std::string& topic,
                     const std::string& payload);
  // The candidates for a volume of `size_gib`: on an empty result, *why says why none is.
  // `disabled`: the addresses of disabled or frozen back-ends (DisabledBackends).
  // A back-end is eligible only if its reported capabilities meet `extra_specs` (the volume
  // type's, as Cinder's CapabilitiesFilter: domain/extra_specs.h).
  std::vector<Candidate> Eligible(std::int64_t size_gib,
                                  const std::map<std::string, std::string>& extra_specs,
                                  const std::set<std::string>& disabled,
                                  std::string* why) const;
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
