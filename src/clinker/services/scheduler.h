// Scheduler: chooses the back-end of each new volume and forwards its create job there.
//
// A create job is first published to the scheduler topic; the scheduler records the chosen
// back-end in the volume's `host` with a conditional update (only while the volume is still
// queued for this very operation and unscheduled), then publishes the job to that back-end's
// topic, then acks. A crash between those steps redelivers the job: the scheduler finds the host
// already recorded and publishes again; a duplicate create job is dropped by the volume
// manager's stuck-job rules.
//
// Thread safe: Handle may run on several workers at once.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/job_worker_pool.h"

namespace clinker::services {

struct SchedulerOptions {
  // Clustered back-ends ("<cluster>@<backend>"), then unclustered ones ("<host>@<backend>"): all
  // take volumes, chosen in turn. A volume scheduled to a cluster records it in `cluster_name`
  // (and in `host`), so any member of the cluster may run its jobs.
  std::vector<std::string> clusters;
  std::vector<std::string> backends;
  std::string pool = "default";
};

class Scheduler {
 public:
  // `publisher` sends the forwarded jobs; it may be the same object as the consuming session.
  Scheduler(ports::StateStore& store,
            ports::JobQueue& publisher,
            const ports::Clock& clock,
            SchedulerOptions options);

  JobOutcome Handle(const ports::Delivery& delivery);

 private:
  ports::StateStore& store_;
  ports::JobQueue& publisher_;
  const ports::Clock& clock_;
  SchedulerOptions options_;
  std::atomic<std::size_t> next_backend_{0};
};

}  // namespace clinker::services
