#include "clinker/services/scheduler.h"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/services/job_message.h"
#include "clinker/services/messages_api.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

using domain::VolumeStatus;
using ports::Expectation;

Scheduler::Scheduler(ports::StateStore& store,
                     ports::JobQueue& publisher,
                     const ports::Clock& clock,
                     SchedulerOptions options)
    : Scheduler(store, publisher, clock, std::move(options), nullptr) {}

Scheduler::Scheduler(ports::StateStore& store,
                     ports::JobQueue& publisher,
                     const ports::Clock& clock,
                     SchedulerOptions options,
                     const CapabilityCache* capabilities)
    : store_(store),
      publisher_(publisher),
      clock_(clock),
      options_(std::move(options)),
      capabilities_(capabilities) {}

Result<std::set<std::string>> Scheduler::DisabledBackends() const {
  ports::ListQuery query;
  query.filters = {Expectation::Equals("binary", std::string("cinder-volume"))};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> services,
                           store_.List(ports::Table::kServices, query));
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> clusters,
                           store_.List(ports::Table::kClusters, query));
  auto flag = [](const ports::Row& row, std::string_view column) {
    auto found = row.find(column);
    return found != row.end() && std::holds_alternative<std::int64_t>(found->second) &&
           std::get<std::int64_t>(found->second) != 0;
  };
  std::set<std::string> disabled;
  for (const ports::Row& service : services) {
    std::optional<std::string> cluster = OptionalText(service, "cluster_name");
    if (cluster) {
      // A clustered service's own disabled flag does not count (Cinder reads the cluster's);
      // freezing it froze its whole cluster.
      if (flag(service, "frozen")) {
        disabled.insert(*cluster);
      }
    } else if (flag(service, "disabled") || flag(service, "frozen")) {
      disabled.insert(TextOr(service, "host", ""));
    }
  }
  for (const ports::Row& cluster : clusters) {
    if (flag(cluster, "disabled")) {
      disabled.insert(TextOr(cluster, "name", ""));
    }
  }
  return disabled;
}

Result<std::map<std::string, std::string>> Scheduler::TypeExtraSpecs(
    const std::optional<std::string>& volume_type_id) const {
  std::map<std::string, std::string> specs;
  if (!volume_type_id) {
    return specs;  // A volume of before types: the default type, placed anywhere.
  }
  auto row = store_.Get(ports::Table::kVolumeTypes, *volume_type_id);
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return specs;
    }
    return tl::unexpected(row.error());
  }
  // Read as the API stores it: a JSON object of string (or null) values.
  nlohmann::json parsed =
      nlohmann::json::parse(TextOr(*row, "extra_specs", "{}"), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object()) {
    for (const auto& [key, value] : parsed.items()) {
      if (value.is_string()) {
        specs[key] = value.get<std::string>();
      }
    }
  }
  return specs;
}

domain::Capabilities Scheduler::CapabilitiesOf(const CapabilityReport& report) const {
  // What the report says, plus what every Clinker back-end can do: volumes are sparse (thin),
  // attachable by several hosts at once, not replicated.
  return domain::Capabilities{
      {"volume_backend_name", report.volume_backend_name},
      {"vendor_name", report.vendor_name},
      {"driver_version", report.driver_version},
      {"storage_protocol", report.storage_protocol},
      {"total_capacity_gb", std::to_string(report.total_capacity_gib)},
      {"free_capacity_gb", std::to_string(report.free_capacity_gib)},
      {"pool_name", options_.pool},
      {"thin_provisioning_support", "True"},
      {"thick_provisioning_support", "False"},
      {"multiattach", "True"},
      {"replication_enabled", "False"},
      {"max_over_subscription_ratio", std::to_string(options_.max_over_subscription_ratio)},
  };
}

std::int64_t CapacityLimit(const PoolState& pool, double max_over_subscription_ratio) {
  return static_cast<std::int64_t>(static_cast<double>(pool.total_capacity_gib) *
                                   max_over_subscription_ratio);
}

bool PassesCapacityFilter(const PoolState& pool,
                          std::int64_t size_gib,
                          double max_over_subscription_ratio,
                          std::string* why) {
  const std::int64_t limit = CapacityLimit(pool, max_over_subscription_ratio);
  if (pool.allocated_capacity_gib + size_gib > limit) {
    *why = std::to_string(pool.allocated_capacity_gib) + " of " + std::to_string(limit) +
           " GiB allocated";
    return false;
  }
  if (static_cast<double>(pool.free_capacity_gib) * max_over_subscription_ratio <
      static_cast<double>(size_gib)) {
    *why = std::to_string(pool.free_capacity_gib) + " GiB free";
    return false;
  }
  return true;
}

double CapacityWeight(const PoolState& pool, double max_over_subscription_ratio) {
  return static_cast<double>(pool.total_capacity_gib) * max_over_subscription_ratio -
         static_cast<double>(pool.allocated_capacity_gib);
}

double VolumeNumberWeight(std::int64_t volumes_on_pool) {
  return -static_cast<double>(volumes_on_pool);
}

Result<void> Scheduler::WeighByVolumeNumber(std::vector<Candidate>* candidates) const {
  for (Candidate& candidate : *candidates) {
    ports::ListQuery query;
    query.filters = {Expectation::Equals("host", PoolOf(candidate.address))};  // Live rows only.
    CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> volumes,
                             store_.List(ports::Table::kVolumes, query));
    candidate.weight = VolumeNumberWeight(static_cast<std::int64_t>(volumes.size()));
  }
  std::stable_sort(candidates->begin(),
                   candidates->end(),
                   [](const Candidate& a, const Candidate& b) { return a.weight > b.weight; });
  return {};
}

Result<std::map<std::string, std::int64_t>> Scheduler::AllocatedCapacity() const {
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> rows,
                           store_.List(ports::Table::kPoolCapacity, {}));
  std::map<std::string, std::int64_t> allocated;
  for (const ports::Row& row : rows) {
    allocated[TextOr(row, "id", "")] = IntegerOr(row, "allocated_capacity_gb", 0);
  }
  return allocated;
}

std::vector<Scheduler::Candidate> Scheduler::Eligible(
    std::int64_t size_gib,
    const std::map<std::string, std::string>& extra_specs,
    const std::set<std::string>& disabled,
    const std::map<std::string, std::int64_t>& allocated,
    std::string* why) {
  std::vector<Candidate> configured;
  std::string disabled_reasons;
  for (const std::string& cluster : options_.clusters) {
    configured.push_back(Candidate{cluster, true, std::nullopt, 0});
  }
  for (const std::string& backend : options_.backends) {
    configured.push_back(Candidate{backend, false, std::nullopt, 0});
  }
  std::erase_if(configured, [&](const Candidate& candidate) {
    if (!disabled.contains(candidate.address)) {
      return false;
    }
    disabled_reasons += (disabled_reasons.empty() ? "" : "; ") + candidate.address + ": disabled";
    return true;
  });
  if (configured.empty()) {
    *why = "every back-end is disabled (" + disabled_reasons + ")";
    return configured;
  }
  // Equal weights take volumes in turn: the candidates start at a rotating index, and the sort
  // below is stable.
  const std::size_t start = next_backend_.fetch_add(1) % configured.size();
  std::rotate(configured.begin(),
              configured.begin() + static_cast<std::ptrdiff_t>(start),
              configured.end());
  if (capabilities_ == nullptr) {
    return configured;
  }
  auto now = clock_.MonoNow();
  std::vector<Candidate> eligible;
  bool any_report = false;
  std::string reasons = disabled_reasons;
  for (Candidate& candidate : configured) {
    std::optional<CachedCapability> cached = capabilities_->Get(candidate.address);
    std::string reason;
    if (!cached) {
      reason = "no capability report";
    } else {
      any_report = true;
      auto age = std::chrono::duration_cast<std::chrono::seconds>(now - cached->received_at);
      PoolState pool{cached->report.total_capacity_gib, cached->report.free_capacity_gib, 0};
      if (auto found = allocated.find(PoolOf(candidate.address)); found != allocated.end()) {
        pool.allocated_capacity_gib = found->second;
      }
      if (now - cached->received_at >= options_.capability_max_age) {
        reason = "last capability report " + std::to_string(age.count()) + " s old";
      } else if (!PassesCapacityFilter(
                     pool, size_gib, options_.max_over_subscription_ratio, &reason)) {
        // `reason` says why.
      } else if (std::string mismatch;
                 !domain::ExtraSpecsMatch(extra_specs, CapabilitiesOf(cached->report), &mismatch)) {
        reason = mismatch;
      } else {
        candidate.limit_gib = CapacityLimit(pool, options_.max_over_subscription_ratio);
        candidate.weight = CapacityWeight(pool, options_.max_over_subscription_ratio);
        eligible.push_back(candidate);
        continue;
      }
    }
    reasons += (reasons.empty() ? "" : "; ") + candidate.address + ": " + reason;
  }
  if (!any_report) {
    // Nobody has reported yet (the whole system just started): place as without reports rather
    // than fail every volume until the first reports arrive.
    log::Info("scheduler.no_capability_reports",
              {{"backends", static_cast<long long>(configured.size())}});
    return configured;
  }
  if (eligible.empty()) {
    *why = "no back-end can take " + std::to_string(size_gib) + " GiB of this volume type (" +
           reasons + ")";
  }
  std::stable_sort(eligible.begin(), eligible.end(), [](const Candidate& a, const Candidate& b) {
    return a.weight > b.weight;
  });
  return eligible;
}

Result<bool> Scheduler::FailNoValidBackend(const std::string& volume_id,
                                           std::vector<Expectation> still_ours,
                                           const std::string& now,
                                           const std::string& why) {
  still_ours.push_back(Expectation::IsNull("host"));
  auto failed =
      store_.ConditionalUpdate(ports::Table::kVolumes,
                               volume_id,
                               {{"status", Status(VolumeStatus::kError)},
                                {"status_reason", Text("No valid back-end was found: " + why)},
                                {"updated_at", now}},
                               still_ours,
                               {});
  if (!failed) {
    return tl::unexpected(std::move(failed).error());
  }
  if (failed->has_value()) {
    log::Error("scheduler.no_valid_backend", {{"volume_id", volume_id}, {"reason", why}});
    // The user's side of it. Best effort: the volume is in error either way, and a redelivered
    // job finds it no longer queued, so a lost message is not retried.
    UserMessage message;
    message.project_id = TextOr(**failed, "project_id", "");
    message.resource_uuid = volume_id;
    message.action_id = message_field::kActionScheduleAllocateVolume;
    message.detail_id = message_field::kDetailNoBackendAvailable;
    if (auto recorded = RecordUserMessage(store_, clock_, message); !recorded) {
      log::Warn("scheduler.user_message_failed",
                {{"volume_id", volume_id}, {"error", recorded.error().ToString()}});
    }
  }
  return failed->has_value();
}

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

  // Forwards the job to the back-end the row records (an earlier delivery of this job chose it),
  // or drops it when the volume is no longer queued for this operation.
  auto forward_recorded = [&]() -> JobOutcome {
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
    return Forward(
        volume_id, VolumeJobTopic(volume->cluster_name, *volume->host), delivery.payload);
  };

  // Not applied: scheduled by an earlier delivery, or no longer ours; forward_recorded decides.
  auto fail = [&](const std::string& why) -> JobOutcome {
    Result<bool> failed = FailNoValidBackend(volume_id, still_ours, now, why);
    if (!failed) {
      return JobOutcome::kRetryLater;
    }
    return *failed ? JobOutcome::kDone : forward_recorded();
  };

  if (options_.backends.empty() && options_.clusters.empty()) {
    return fail("no volume service is configured");
  }

  // The size and the type's extra specs decide which back-ends can take the volume, and the
  // size is what the chosen pool reserves.
  auto row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!row) {
    return row.error().code == ErrorCode::kNotFound ? JobOutcome::kDone : JobOutcome::kRetryLater;
  }
  auto volume = VolumeFromRow(*row);
  if (!volume || volume->host || volume->deleted ||
      volume->status != VolumeStatus::kCreatingQueued ||
      volume->operation_id != message->operation_id) {
    return forward_recorded();  // Already scheduled, or no longer ours: no choice to make.
  }
  const std::int64_t size_gib = volume->size_gib;
  std::map<std::string, std::string> extra_specs;
  if (capabilities_ != nullptr) {
    auto specs = TypeExtraSpecs(volume->volume_type_id);
    if (!specs) {
      return JobOutcome::kRetryLater;
    }
    extra_specs = std::move(*specs);
  }

  auto disabled = DisabledBackends();
  if (!disabled) {
    return JobOutcome::kRetryLater;
  }
  auto allocated = AllocatedCapacity();
  if (!allocated) {
    return JobOutcome::kRetryLater;
  }
  std::string why;
  std::vector<Candidate> eligible = Eligible(size_gib, extra_specs, *disabled, *allocated, &why);
  if (eligible.empty()) {
    return fail(why);
  }
  if (options_.weigher == SchedulerOptions::Weigher::kVolumeNumber && eligible.size() > 1) {
    if (auto weighed = WeighByVolumeNumber(&eligible); !weighed) {
      return JobOutcome::kRetryLater;
    }
  }
  std::vector<Expectation> expected = still_ours;
  expected.push_back(Expectation::IsNull("host"));
  std::string full;
  for (const Candidate& chosen : eligible) {
    const std::string placement = PoolOf(chosen.address);
    ports::Row values = {
        {"host", placement}, {"capacity_reserved_gib", size_gib}, {"updated_at", now}};
    if (chosen.clustered) {
      values["cluster_name"] = placement;
    }
    // The host and the reservation in one write: a pool filled by another scheduler since it was
    // read refuses it, and nothing is written.
    ports::UsageChange reserve{"",
                               placement,
                               size_gib,
                               chosen.limit_gib.value_or(-1),
                               ports::UsageChange::Counter::kPoolCapacity};
    auto scheduled = store_.ConditionalUpdateWithUsage(
        ports::Table::kVolumes, volume_id, values, expected, {}, {reserve});
    if (!scheduled) {
      if (auto info = ports::ParseQuotaExceeded(scheduled.error())) {
        full += (full.empty() ? "" : "; ") + chosen.address + ": " + std::to_string(info->in_use) +
                " of " + std::to_string(info->limit) + " GiB allocated";
        log::Info("scheduler.pool_full",
                  {{"volume_id", volume_id},
                   {"pool", placement},
                   {"size_gib", static_cast<long long>(size_gib)}});
        continue;
      }
      return JobOutcome::kRetryLater;
    }
    if (!scheduled->has_value()) {
      // Not applied: either scheduled already by an earlier delivery of this job (forward it
      // again to the recorded back-end) or no longer queued for this operation (drop).
      return forward_recorded();
    }
    return Forward(volume_id, VolumeTopic(chosen.address), delivery.payload);
  }
  return fail("no back-end can take " + std::to_string(size_gib) + " GiB of this volume type (" +
              full + ")");
}

JobOutcome Scheduler::Forward(const std::string& volume_id,
                              const std::string& topic,
                              const std::string& payload) {
  if (auto published = publisher_.Publish(topic, payload); !published) {
    log::Warn("scheduler.forward_failed",
              {{"volume_id", volume_id}, {"error", published.error().ToString()}});
    return JobOutcome::kRetryLater;
  }
  log::Debug("scheduler.scheduled", {{"volume_id", volume_id}, {"topic", topic}});
  return JobOutcome::kDone;
}

}  // namespace clinker::services
