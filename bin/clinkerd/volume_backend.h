// One volume service of clinkerd: a back-end of the configuration (BackendConfig: a [[backends]]
// table, or the short form's one back-end) wired to its own file driver, job queue session,
// volume manager, capability reporter and worker pool, as Cinder runs one volume service per
// enabled_backends entry. A process builds one per back-end; they share the state store, the
// lock manager and the backup store (VolumeBackendShared).
//
// Contract: Create subscribes the back-end's queue session to its topics (Topics) and creates
// its driver in its volume_dir; an error names neither a URL nor a password. Start starts the
// workers and the reports (the first at once); Stop stops the reports, then the workers (running
// jobs finish and are acked, jobs not started stay queued), and is idempotent; the destructor
// calls it. Start and Stop are called from one thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "clinker/adapters/file/file_storage_driver.h"
#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/ports/lock_manager.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/capability_reporter.h"
#include "clinker/services/job_worker_pool.h"
#include "clinker/services/volume_manager.h"

#include "clinkerd/config.h"

namespace clinkerd {

// What the volume services of one process share; the references outlive every back-end.
struct VolumeBackendShared {
  clinker::ports::StateStore* store = nullptr;
  clinker::ports::LockManager* locks = nullptr;
  const clinker::ports::Clock* clock = nullptr;
  clinker::services::VolumeManagerOptions manager_options;  // Backup store, quota, test hooks.
  std::chrono::milliseconds report_interval{10000};
  std::chrono::milliseconds driver_delay{0};
  std::string driver_journal;
};

class VolumeBackend {
 public:
  static clinker::Result<std::unique_ptr<VolumeBackend>> Create(
      const BackendConfig& config,
      std::unique_ptr<clinker::ports::JobQueue> queue,
      const VolumeBackendShared& shared);

  // The topics its volume service consumes: its own ("volume.<host>@<name>", work for this node
  // and an unclustered back-end's jobs) and, when clustered, its cluster's
  // ("volume.<cluster>@<name>", shared by the members).
  static std::vector<std::string> Topics(const BackendConfig& config);

  VolumeBackend(const VolumeBackend&) = delete;
  VolumeBackend& operator=(const VolumeBackend&) = delete;
  ~VolumeBackend();

  void Start();
  void Stop();

  const BackendConfig& config() const { return config_; }

 private:
  VolumeBackend(BackendConfig config,
                std::unique_ptr<clinker::ports::JobQueue> queue,
                std::unique_ptr<clinker::adapters::FileStorageDriver> driver,
                const VolumeBackendShared& shared);

  const BackendConfig config_;
  // Destroyed in reverse: the pool and the reporter go before what they use.
  std::unique_ptr<clinker::ports::JobQueue> queue_;
  std::unique_ptr<clinker::adapters::FileStorageDriver> driver_;
  clinker::services::VolumeManager manager_;
  clinker::services::CapabilityReporter reporter_;
  clinker::services::JobWorkerPool pool_;
  bool started_ = false;
};

}  // namespace clinkerd
