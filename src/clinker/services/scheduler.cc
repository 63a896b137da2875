#include "clinker/services/scheduler.h"

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/services/job_message.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

using domain::VolumeStatus;
using ports::Expectation;

Scheduler::Scheduler(ports::StateStore& store,
                     ports::JobQueue& publisher,
                     const ports::Clock& clock,
                     SchedulerOptions options)
    : store_(store), publisher_(publisher), clock_(clock), options_(std::move(options)) {}

JobOutcome Scheduler::Handle(const ports::Delivery& delivery) {
  auto message = JobMessage::FromJson(delivery.payload);
  if (!message || message->operation != domain::Operation::kCreateVolume) {
    log::Error("scheduler.bad_job", {{"job_id", delivery.job_id}, {"payload", delivery.payload}});
    return JobOutcome::kDone;  // A malformed job never becomes valid: drop it.
  }
  const std::string& volume_id = message->resource_id;
  std::string now = FormatTimestamp(clock_.WallNow());
  std::vector<Expectation> still_ours = {
      Expectation::Equals("status", Status(VolumeStatus::kCreatingQueued)),
      Expectation::Equals("operation_id", message->operation_id),
      Expectation::Equals("deleted", std::int64_t{0})};

  if (options_.backends.empty() && options_.clusters.empty()) {
    std::vector<Expectation> expected = still_ours;
    expected.push_back(Expectation::IsNull("host"));
    auto failed = store_.ConditionalUpdate(
        ports::Table::kVolumes,
        volume_id,
        {{"status", Status(VolumeStatus::kError)},
         {"status_reason", Text("No valid back-end was found: no volume service is configured")},
         {"updated_at", now}},
        expected,
        {});
    if (!failed) {
      return JobOutcome::kRetryLater;
    }
    log::Error("scheduler.no_backend", {{"volume_id", volume_id}});
    return JobOutcome::kDone;
  }

  std::size_t choice =
      next_backend_.fetch_add(1) % (options_.clusters.size() + options_.backends.size());
  bool clustered = choice < options_.clusters.size();
  std::string backend =
      clustered ? options_.clusters[choice] : options_.backends[choice - options_.clusters.size()];
  std::string placement = backend + "#" + options_.pool;
  std::vector<Expectation> expected = still_ours;
  expected.push_back(Expectation::IsNull("host"));
  ports::Row values = {{"host", placement}, {"updated_at", now}};
  if (clustered) {
    values["cluster_name"] = placement;
  }
  auto scheduled =
      store_.ConditionalUpdate(ports::Table::kVolumes, volume_id, values, expected, {});
  if (!scheduled) {
    return JobOutcome::kRetryLater;
  }
  std::string target;
  if (scheduled->has_value()) {
    target = VolumeTopic(backend);
  } else {
    // Not applied: either scheduled already by an earlier delivery of this job (forward it
    // again to the recorded back-end) or no longer queued for this operation (drop).
    auto row = store_.Get(ports::Table::kVolumes, volume_id);
    if (!row) {
      if (row.error().code == ErrorCode::kNotFound) {
        return JobOutcome::kDone;
      }
      return JobOutcome::kRetryLater;
    }
    auto volume = VolumeFromRow(*row);
    if (!volume || volume->deleted || volume->status != VolumeStatus::kCreatingQueued ||
        volume->operation_id != message->operation_id || !volume->host) {
      log::Info("scheduler.job_dropped", {{"volume_id", volume_id}, {"job_id", delivery.job_id}});
      return JobOutcome::kDone;
    }
    target = VolumeJobTopic(volume->cluster_name, *volume->host);
  }
  if (auto published = publisher_.Publish(target, delivery.payload); !published) {
    log::Warn("scheduler.forward_failed",
              {{"volume_id", volume_id}, {"error", published.error().ToString()}});
    return JobOutcome::kRetryLater;
  }
  log::Debug("scheduler.scheduled", {{"volume_id", volume_id}, {"topic", target}});
  return JobOutcome::kDone;
}

}  // namespace clinker::services
