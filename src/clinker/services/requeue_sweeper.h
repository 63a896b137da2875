// RequeueSweeper: re-publishes the jobs of volumes, snapshots, attachments and backups that have
// stayed queued for too long.
//
// Why: the API writes a volume's queued status and then publishes its job; these are two
// engines (or two transactions), so a crash between them leaves a volume queued with no job.
// Re-publishing is always safe because the stuck-job rules recognise duplicates: a second job
// for a volume still queued for the same operation id runs it once (the lock serialises them,
// and the second finds the volume at rest), and the scheduler forwards a create again only
// while the volume is still queued for it.
//
// Sweep() is not reentrant (Start runs it on one thread). Sweep() does one pass; Start/Stop run
// passes every `interval` on a thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/periodic_task.h"

namespace clinker::services {

struct RequeueSweeperOptions {
  std::chrono::milliseconds interval{10000};
  // A volume queued for longer than this (since its last update) gets its job again.
  std::chrono::milliseconds queued_age{30000};
};

class RequeueSweeper {
 public:
  RequeueSweeper(ports::StateStore& store,
                 ports::JobQueue& publisher,
                 const ports::Clock& clock,
                 RequeueSweeperOptions options);
  RequeueSweeper(const RequeueSweeper&) = delete;
  RequeueSweeper& operator=(const RequeueSweeper&) = delete;
  ~RequeueSweeper();

  // Returns how many jobs were published again.
  Result<int> Sweep();

  void Start();
  void Stop();

 private:
  ports::StateStore& store_;
  ports::JobQueue& publisher_;
  const ports::Clock& clock_;
  RequeueSweeperOptions options_;
  // operation id -> when its job was last published again. A job still waiting behind a long
  // backlog is published again at most once per `queued_age`, so a sweep never floods the queue.
  std::map<std::string, std::chrono::steady_clock::time_point> republished_;
  PeriodicTask task_;
};

}  // namespace clinker::services
