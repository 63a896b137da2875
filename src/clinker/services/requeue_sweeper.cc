#include "clinker/services/requeue_sweeper.h"

#include <array>
#include <span>

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

namespace {

// Every stored status of `kind` in which an operation is queued.
template <class Info>
std::vector<ports::Value> QueuedIn(std::span<const Info> statuses) {
  std::vector<ports::Value> out;
  for (const Info& info : statuses) {
    if (info.phase == domain::Phase::kQueued) {
      out.emplace_back(std::string(info.stored));
    }
  }
  return out;
}

std::vector<ports::Value> QueuedStatuses(domain::ResourceKind kind) {
  switch (kind) {
    case domain::ResourceKind::kVolume:
      return QueuedIn(domain::AllVolumeStatuses());
    case domain::ResourceKind::kSnapshot:
      return QueuedIn(domain::AllSnapshotStatuses());
    case domain::ResourceKind::kAttachment:
      return QueuedIn(domain::AllAttachmentStatuses());
    case domain::ResourceKind::kBackup:
      return QueuedIn(domain::AllBackupStatuses());
  }
  return {};
}

struct KindInfo {
  domain::ResourceKind kind;
  ports::Table table;
  std::string_view id_key;
};

constexpr std::array kSweptKinds = {
    KindInfo{domain::ResourceKind::kVolume, ports::Table::kVolumes, "volume_id"},
    KindInfo{domain::ResourceKind::kSnapshot, ports::Table::kSnapshots, "snapshot_id"},
    KindInfo{domain::ResourceKind::kAttachment, ports::Table::kAttachments, "attachment_id"},
    KindInfo{domain::ResourceKind::kBackup, ports::Table::kBackups, "backup_id"},
};

}  // namespace

Result<int> RequeueSweeper::Sweep() {
  // Timestamps are fixed-width UTC text, so text order is time order.
  std::string cutoff = FormatTimestamp(clock_.WallNow() - options_.queued_age);
  auto mono_now = clock_.MonoNow();
  std::map<std::string, std::chrono::steady_clock::time_point> still_queued;
  int republished = 0;
  for (const KindInfo& swept : kSweptKinds) {
    const domain::ResourceKind kind = swept.kind;
    const ports::Table table = swept.table;
    ports::ListQuery query;
    query.filters = {Expectation::In("status", QueuedStatuses(kind))};
    query.sort = {ports::SortKey{"created_at", true}};
    CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> rows, store_.List(table, query));
    for (const ports::Row& row : rows) {
      const std::string id = TextOr(row, "id", "");
      const std::optional<std::string> operation_id = OptionalText(row, "operation_id");
      const std::string stored = TextOr(row, "status", "");
      auto status = domain::DescribeStored(kind, stored);
      if (!operation_id || !status || !status->operation) {
        continue;
      }
      if (OptionalText(row, "updated_at").value_or(TextOr(row, "created_at", "")) > cutoff) {
        continue;
      }
      auto seen = republished_.find(*operation_id);
      if (seen != republished_.end() && mono_now - seen->second < options_.queued_age) {
        still_queued.insert(*seen);
        continue;
      }
      // Snapshot and attachment jobs go where their volume's do; a backup records its own.
      ports::Row volume_row = row;
      if (kind == domain::ResourceKind::kSnapshot || kind == domain::ResourceKind::kAttachment) {
        auto volume = store_.Get(ports::Table::kVolumes, TextOr(row, "volume_id", ""));
        if (!volume) {
          continue;
        }
        volume_row = std::move(*volume);
      }
      std::optional<std::string> host = OptionalText(volume_row, "host");
      std::string topic;
      if (host) {
        topic = VolumeJobTopic(OptionalText(volume_row, "cluster_name"), *host);
      } else if (stored == StoredName(VolumeStatus::kCreatingQueued) &&
                 kind == domain::ResourceKind::kVolume) {
        topic = SchedulerTopic();
      } else {
        continue;  // An unscheduled volume is deleted by the API at once; nothing to redo.
      }
      JobMessage job{*status->operation, id, *operation_id, TextOr(row, "project_id", "")};
      CLINKER_RETURN_IF_ERROR(publisher_.Publish(topic, job.ToJson()));
      still_queued[*operation_id] = mono_now;
      ++republished;
      log::Warn("volume.job_republished",
                {{swept.id_key, id},
                 {"status", stored},
                 {"operation_id", *operation_id},
                 {"topic", topic}});
    }
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
