#include "clinker/services/admission.h"

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "clinker/core/log.h"
#include "clinker/core/metrics.h"
#include "clinker/domain/status.h"
#include "clinker/services/api_common.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using ports::Expectation;

// The stored statuses of a resource whose job is queued or under way.
template <class Infos>
std::vector<ports::Value> BusyStatuses(const Infos& infos) {
  std::vector<ports::Value> names;
  for (const auto& info : infos) {
    if (info.phase == domain::Phase::kQueued || info.phase == domain::Phase::kInProgress) {
      names.emplace_back(std::string(info.stored));
    }
  }
  return names;
}

// Where a row's jobs go: its cluster's queue when it has one, else its host's; "" if neither.
std::string BackendOfRow(const ports::Row& row) {
  std::optional<std::string> address = OptionalText(row, "cluster_name");
  if (!address || address->empty()) {
    address = OptionalText(row, "host");
  }
  return address ? BackendAddressOf(*address) : std::string();
}

}  // namespace

AdmissionControl::AdmissionControl(ports::StateStore& store,
                                   const ports::Clock& clock,
                                   AdmissionOptions options)
    : store_(store), clock_(clock), options_(options) {}

Result<Backlog> AdmissionControl::Count() {
  Backlog backlog;
  ports::ListQuery busy;
  busy.filters = {Expectation::In("status", BusyStatuses(domain::AllVolumeStatuses()))};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> volumes,
                           store_.List(ports::Table::kVolumes, busy));
  // A busy snapshot's back-end is its volume's; most such volumes are at rest (a snapshot reads
  // its volume), so they are read one by one, once per count.
  std::map<std::string, std::string, std::less<>> backend_of_volume;
  for (const ports::Row& row : volumes) {
    std::string backend = BackendOfRow(row);
    backend_of_volume.emplace(TextOr(row, "id", ""), backend);
    if (backend.empty()) {
      ++backlog.unplaced;
    } else {
      ++backlog.per_backend[backend];
    }
  }
  busy.filters = {Expectation::In("status", BusyStatuses(domain::AllSnapshotStatuses()))};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> snapshots,
                           store_.List(ports::Table::kSnapshots, busy));
  for (const ports::Row& row : snapshots) {
    const std::string volume_id = TextOr(row, "volume_id", "");
    auto known = backend_of_volume.find(volume_id);
    if (known == backend_of_volume.end()) {
      auto volume = store_.Get(ports::Table::kVolumes, volume_id);
      if (!volume && volume.error().code != ErrorCode::kNotFound) {
        return tl::unexpected(volume.error());
      }
      known = backend_of_volume.emplace(volume_id, volume ? BackendOfRow(*volume) : "").first;
    }
    if (!known->second.empty()) {
      ++backlog.per_backend[known->second];
    }
  }
  busy.filters = {Expectation::In("status", BusyStatuses(domain::AllBackupStatuses()))};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> backups,
                           store_.List(ports::Table::kBackups, busy));
  for (const ports::Row& row : backups) {
    if (std::string backend = BackendOfRow(row); !backend.empty()) {
      ++backlog.per_backend[backend];
    }
  }
  ports::ListQuery services;
  services.filters = {Expectation::Equals("binary", std::string("cinder-volume")),
                      Expectation::Equals("disabled", std::int64_t{0})};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> volume_services,
                           store_.List(ports::Table::kServices, services));
  std::set<std::string, std::less<>> backends;
  for (const ports::Row& row : volume_services) {
    if (std::string backend = BackendOfRow(row); !backend.empty()) {
      backlog.per_backend.try_emplace(backend, 0);  // Shown with no work too.
      backends.insert(std::move(backend));
    }
  }
  backlog.backends = static_cast<std::int64_t>(backends.size());
  return backlog;
}

void AdmissionControl::Refresh(std::chrono::milliseconds max_age) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (backlog_ && clock_.MonoNow() - backlog_->counted_at < max_age) {
      return;
    }
  }
  // One caller counts; while a count exists the others go on with it rather than wait.
  std::unique_lock<std::mutex> counting(refresh_mutex_, std::defer_lock);
  bool have_count = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    have_count = backlog_.has_value();
  }
  if (have_count) {
    if (!counting.try_lock()) {
      return;
    }
  } else {
    counting.lock();
  }
  const TimePoint started = clock_.MonoNow();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (backlog_ && started - backlog_->counted_at < max_age) {
      return;  // Another caller counted while this one waited.
    }
  }
  Result<Backlog> counted = Count();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!counted) {
    log::Warn("api.admission_count_failed", {{"error", counted.error().ToString()}});
    if (backlog_) {
      // Try again after an interval, not at every request; admissions stay as uncounted as
      // they were.
      const TimePoint kept_since = backlog_->counted_at;
      backlog_->counted_at = started;
      for (auto& [id, admitted] : admitted_) {
        if (admitted.written_at && *admitted.written_at >= kept_since) {
          admitted.written_at = started;
        }
      }
    }
    return;
  }
  counted->counted_at = started;
  backlog_ = std::move(*counted);
  // Rows written before the count began are in it now.
  std::erase_if(admitted_, [started](const auto& entry) {
    return entry.second.written_at && *entry.second.written_at < started;
  });
}

std::map<std::string, std::int64_t, std::less<>> AdmissionControl::Uncounted() const {
  std::map<std::string, std::int64_t, std::less<>> uncounted;
  for (const auto& [id, admitted] : admitted_) {
    if (!admitted.written_at || !backlog_ || *admitted.written_at >= backlog_->counted_at) {
      ++uncounted[admitted.backend];
    }
  }
  return uncounted;
}

ports::HttpResponse AdmissionControl::Refusal(std::string_view what) const {
  metrics::Global().admission_refusals.fetch_add(1, std::memory_order_relaxed);
  ports::HttpResponse response =
      Fault(503,
            "The volume back-end is busy: " + std::string(what) + " has " +
                std::to_string(options_.max_queued_jobs_per_backend) +
                " or more jobs queued per back-end (max_queued_jobs_per_backend); retry later.");
  response.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_s));
  return response;
}

std::pair<std::int64_t, std::int64_t> AdmissionControl::Load(const std::string& backend) const {
  const auto uncounted = Uncounted();
  std::int64_t queued = 0;
  std::int64_t capacity = options_.max_queued_jobs_per_backend;
  if (backend.empty()) {
    queued = backlog_->unplaced;
    for (const auto& [name, jobs] : backlog_->per_backend) {
      queued += jobs;
    }
    for (const auto& [name, jobs] : uncounted) {
      queued += jobs;
    }
    capacity *= std::max<std::int64_t>(1, backlog_->backends);
  } else {
    if (auto found = backlog_->per_backend.find(backend); found != backlog_->per_backend.end()) {
      queued += found->second;
    }
    if (auto found = uncounted.find(backend); found != uncounted.end()) {
      queued += found->second;
    }
  }
  return {queued, capacity};
}

Admission AdmissionControl::Admit(std::string backend) {
  if (!enabled()) {
    return AdmissionTicket();
  }
  Refresh(options_.refresh_interval);
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (backlog_) {
      auto [queued, capacity] = Load(backend);
      full = queued >= capacity;
    }
  }
  if (full) {
    Refresh(options_.recount_when_full);  // Work may have finished since the count.
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (!backlog_) {
    return AdmissionTicket();  // Never counted (the store failed): admit, as documented.
  }
  auto [queued, capacity] = Load(backend);
  if (queued >= capacity) {
    log::Debug("api.admission_refused",
               {{"backend", backend.empty() ? std::string_view("any") : std::string_view(backend)},
                {"queued", static_cast<long long>(queued)},
                {"bound", static_cast<long long>(capacity)}});
    return tl::unexpected(Refusal(backend.empty() ? "every back-end" : "back-end " + backend));
  }
  const std::uint64_t id = next_id_++;
  admitted_.emplace(id, Admitted{std::move(backend), std::nullopt});
  return AdmissionTicket(this, id);
}

void AdmissionControl::Release(std::uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto found = admitted_.find(id); found != admitted_.end()) {
    found->second.written_at = clock_.MonoNow();
  }
}

Admission AdmissionControl::AdmitOnBackend(std::string_view backend_address) {
  std::string backend = BackendAddressOf(backend_address);
  if (backend.empty()) {
    return AdmitUnplaced();  // No back-end named: bounded as the scheduler's work.
  }
  return Admit(std::move(backend));
}

Admission AdmissionControl::AdmitUnplaced() {
  return Admit(std::string());
}

Admission AdmitOnJobsBackend(AdmissionControl* admission,
                             const std::optional<std::string>& cluster_name,
                             const std::optional<std::string>& host) {
  if (admission == nullptr) {
    return AdmissionTicket();
  }
  if (cluster_name && !cluster_name->empty()) {
    return admission->AdmitOnBackend(*cluster_name);
  }
  return host ? admission->AdmitOnBackend(*host) : admission->AdmitUnplaced();
}

Result<Backlog> AdmissionControl::Current() {
  Refresh(options_.refresh_interval);
  std::lock_guard<std::mutex> lock(mutex_);
  if (!backlog_) {
    return MakeError(ErrorCode::kUnavailable, "the backlog could not be counted");
  }
  Backlog now = *backlog_;
  for (const auto& [backend, jobs] : Uncounted()) {
    if (backend.empty()) {
      now.unplaced += jobs;
    } else {
      now.per_backend[backend] += jobs;
    }
  }
  return now;
}

AdmissionTicket::AdmissionTicket(AdmissionTicket&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), id_(other.id_) {}

AdmissionTicket& AdmissionTicket::operator=(AdmissionTicket&& other) noexcept {
  if (this != &other) {
    if (owner_ != nullptr) {
      owner_->Release(id_);
    }
    owner_ = std::exchange(other.owner_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

AdmissionTicket::~AdmissionTicket() {
  if (owner_ != nullptr) {
    owner_->Release(id_);
  }
}

namespace {

// A label value in Prometheus' text format: backslash, double quote and newline escaped.
std::string LabelValue(std::string_view text) {
  std::string escaped;
  for (char c : text) {
    if (c == '\\' || c == '"') {
      escaped += '\\';
      escaped += c;
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

void Metric(std::string& out,
            std::string_view name,
            std::string_view type,
            std::string_view help,
            long long value) {
  out += "# HELP " + std::string(name) + " " + std::string(help) + "\n";
  out += "# TYPE " + std::string(name) + " " + std::string(type) + "\n";
  out += std::string(name) + " " + std::to_string(value) + "\n";
}

}  // namespace

ports::HttpResponse MetricsDocument(AdmissionControl* admission) {
  const metrics::Counters& counters = metrics::Global();
  std::string out;
  Metric(out,
         "clinker_http_open_connections",
         "gauge",
         "Open API connections.",
         counters.http_open_connections.load(std::memory_order_relaxed));
  Metric(out,
         "clinker_http_requests_in_flight",
         "gauge",
         "Requests queued for or running in an API worker.",
         counters.http_requests_in_flight.load(std::memory_order_relaxed));
  Metric(out,
         "clinker_http_requests_total",
         "counter",
         "Requests handed to the API handler.",
         static_cast<long long>(counters.http_requests.load(std::memory_order_relaxed)));
  Metric(out,
         "clinker_http_refusals_total",
         "counter",
         "Requests and connections the HTTP server refused itself.",
         static_cast<long long>(counters.http_refusals.load(std::memory_order_relaxed)));
  Metric(out,
         "clinker_http_timeouts_total",
         "counter",
         "Connections closed for a timeout.",
         static_cast<long long>(counters.http_timeouts.load(std::memory_order_relaxed)));
  Metric(out,
         "clinker_admission_refusals_total",
         "counter",
         "Requests refused with 503 because a back-end's backlog was full.",
         static_cast<long long>(counters.admission_refusals.load(std::memory_order_relaxed)));
  // Database round trips (every state-store and queue adapter counts them): a benchmark reads
  // them before and after a workload to get the transactions each operation costs.
  Metric(out,
         "clinker_db_write_transactions_total",
         "counter",
         "Database write transactions attempted (committed, rolled back or retried).",
         static_cast<long long>(counters.write_transactions.load(std::memory_order_relaxed)));
  Metric(out,
         "clinker_db_read_transactions_total",
         "counter",
         "Database read transactions.",
         static_cast<long long>(counters.read_transactions.load(std::memory_order_relaxed)));
  if (admission != nullptr) {
    Metric(out,
           "clinker_max_queued_jobs_per_backend",
           "gauge",
           "The admission bound per back-end (0: unbounded).",
           admission->bound());
    auto backlog = admission->Current();
    if (!backlog) {
      out += "# backlog not counted: " + LabelValue(backlog.error().message) + "\n";
    } else {
      out +=
          "# HELP clinker_backend_queued_jobs Volume, snapshot and backup jobs queued or under "
          "way, per back-end.\n# TYPE clinker_backend_queued_jobs gauge\n";
      for (const auto& [backend, jobs] : backlog->per_backend) {
        out += "clinker_backend_queued_jobs{backend=\"" + LabelValue(backend) + "\"} " +
               std::to_string(jobs) + "\n";
      }
      Metric(out,
             "clinker_unplaced_volumes",
             "gauge",
             "New volumes waiting for the scheduler to place them.",
             backlog->unplaced);
      Metric(out,
             "clinker_volume_backends",
             "gauge",
             "Back-ends of registered, enabled volume services.",
             backlog->backends);
    }
  }
  ports::HttpResponse response;
  response.status = 200;
  response.content_type = "text/plain; version=0.0.4";
  response.body = std::move(out);
  return response;
}

}  // namespace clinker::services
