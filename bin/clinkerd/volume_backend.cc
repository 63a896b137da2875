#include "clinkerd/volume_backend.h"

#include <utility>

#include "clinker/services/topics.h"

namespace clinkerd {
namespace {

clinker::services::CapabilityReporterOptions ReporterOptions(const BackendConfig& config,
                                                             const VolumeBackendShared& shared) {
  clinker::services::CapabilityReporterOptions options;
  options.host = config.host;
  options.cluster = config.cluster;
  options.volume_backend_name = config.volume_backend_name;
  options.report_interval = shared.report_interval;
  return options;
}

}  // namespace

std::vector<std::string> VolumeBackend::Topics(const BackendConfig& config) {
  std::vector<std::string> topics = {clinker::services::VolumeTopic(config.BackendAddress())};
  if (!config.cluster.empty()) {
    topics.push_back(clinker::services::VolumeTopic(config.ClusterAddress()));
  }
  return topics;
}

clinker::Result<std::unique_ptr<VolumeBackend>> VolumeBackend::Create(
    const BackendConfig& config,
    std::unique_ptr<clinker::ports::JobQueue> queue,
    const VolumeBackendShared& shared) {
  if (auto subscribed = queue->Subscribe(Topics(config)); !subscribed) {
    return tl::unexpected(
        clinker::Error{subscribed.error().code, "job queue: " + subscribed.error().message});
  }
  clinker::adapters::FileStorageDriver::Options driver_options;
  driver_options.volume_dir = config.volume_dir;
  driver_options.backend_name = config.name;
  driver_options.delay = shared.driver_delay;
  driver_options.journal_path = shared.driver_journal;
  CLINKER_ASSIGN_OR_RETURN(std::unique_ptr<clinker::adapters::FileStorageDriver> driver,
                           clinker::adapters::FileStorageDriver::Create(driver_options));
  return std::unique_ptr<VolumeBackend>(
      new VolumeBackend(config, std::move(queue), std::move(driver), shared));
}

VolumeBackend::VolumeBackend(BackendConfig config,
                             std::unique_ptr<clinker::ports::JobQueue> queue,
                             std::unique_ptr<clinker::adapters::FileStorageDriver> driver,
                             const VolumeBackendShared& shared)
    : config_(std::move(config)),
      queue_(std::move(queue)),
      driver_(std::move(driver)),
      manager_(*shared.store, *shared.locks, *driver_, *shared.clock, shared.manager_options),
      reporter_(*driver_, *queue_, *shared.clock, ReporterOptions(config_, shared)),
      pool_(
          *queue_,
          [this](const clinker::ports::Delivery& delivery) { return manager_.Handle(delivery); },
          clinker::services::JobWorkerPool::Options{"volume", config_.workers}) {}

VolumeBackend::~VolumeBackend() {
  Stop();
}

void VolumeBackend::Start() {
  pool_.Start();
  reporter_.Start();
  started_ = true;
}

void VolumeBackend::Stop() {
  if (!started_) {
    return;
  }
  started_ = false;
  reporter_.Stop();
  pool_.Stop();
}

}  // namespace clinkerd
