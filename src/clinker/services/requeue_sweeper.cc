#include "clinker/services/requeue_sweeper.h"

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/services/job_message.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

using domain::VolumeStatus;
using ports::Expectation;

RequeueSweeper::RequeueSweeper(ports::StateStore& store,
                               ports::JobQueue& publisher,
                               const ports::Clock& clock,
                               RequeueSweeperOptions options)
    : store_(store),
      publisher_(publisher),
      clock_(clock),
      options_(options),
      task_(options_.interval, PeriodicTask::FirstRun::kAfterInterval, [this] {
        if (auto swept = Sweep(); !swept) {
          log::Warn("volume.sweep_failed", {{"error", swept.error().ToString()}});
        }
      }) {}

RequeueSweeper::~RequeueSweeper() {
  Stop();
}

Result<int> RequeueSweeper::Sweep() {
  ports::ListQuery query;
  query.filters = {Expectation::In(
      "status", {Status(VolumeStatus::kCreatingQueued), Status(VolumeStatus::kDeletingQueued)})};
  query.sort = {ports::SortKey{"created_at", true}};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> rows,
                           store_.List(ports::Table::kVolumes, query));
  // Timestamps are fixed-width UTC text, so text order is time order.
  std::string cutoff = FormatTimestamp(clock_.WallNow() - options_.queued_age);
  auto mono_now = clock_.MonoNow();
  std::map<std::string, std::chrono::steady_clock::time_point> still_queued;
  int republished = 0;
  for (const ports::Row& row : rows) {
    auto volume = VolumeFromRow(row);
    if (!volume || !volume->operation_id) {
      continue;
    }
    if (volume->updated_at.value_or(volume->created_at) > cutoff) {
      continue;
    }
    auto seen = republished_.find(*volume->operation_id);
    if (seen != republished_.end() && mono_now - seen->second < options_.queued_age) {
      still_queued.insert(*seen);
      continue;
    }
    const domain::VolumeStatusInfo& info = domain::Describe(volume->status);
    JobMessage job{*info.operation, volume->id, *volume->operation_id, volume->project_id};
    std::string topic;
    if (volume->host) {
      topic = VolumeJobTopic(volume->cluster_name, *volume->host);
    } else if (volume->status == VolumeStatus::kCreatingQueued) {
      topic = SchedulerTopic();
    } else {
      continue;  // An unscheduled volume is deleted by the API at once; nothing to redo.
    }
    CLINKER_RETURN_IF_ERROR(publisher_.Publish(topic, job.ToJson()));
    still_queued[*volume->operation_id] = mono_now;
    ++republished;
    log::Warn("volume.job_republished",
              {{"volume_id", volume->id},
               {"status", info.stored},
               {"operation_id", *volume->operation_id},
               {"topic", topic}});
  }
  republished_ = std::move(still_queued);  // Forget operations no longer queued.
  return republished;
}

void RequeueSweeper::Start() {
  task_.Start();
}

void RequeueSweeper::Stop() {
  task_.Stop();
}

}  // namespace clinker::services
