// clinkerd: wires the ports to their adapters for the roles this process runs, then waits for
// SIGTERM or SIGINT and shuts down cleanly: the API stops accepting, every running job finishes
// and is acked, and jobs not started stay in the queue for another node.
//
// State lives in SQLite under state_dir unless `[database] url` names a PostgreSQL server; jobs go
// through the embedded SQLite queue unless `[queue] url` names a RabbitMQ broker. Locks are always
// file locks under <state_dir>/locks. A start-up failure prints one line naming the setting to
// fix and exits 1; a server URL is never printed (it may carry a password), only host:port.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <signal.h>
#include <sys/resource.h>

#include "clinker/adapters/backup/file_backup_store.h"
#include "clinker/adapters/etcd/etcd_lock_manager.h"
#include "clinker/adapters/file/file_lock_manager.h"
#include "clinker/adapters/file/file_storage_driver.h"
#include "clinker/adapters/http/http_server.h"
#include "clinker/adapters/keystone/keystone_token_validator.h"
#include "clinker/adapters/os/policy_file.h"
#include "clinker/adapters/os/system_clock.h"
#include "clinker/adapters/postgres/postgres_state_store.h"
#include "clinker/adapters/rabbitmq/rabbitmq_job_queue.h"
#include "clinker/adapters/sqlite/sqlite_job_queue.h"
#include "clinker/adapters/sqlite/sqlite_state_store.h"
#include "clinker/core/log.h"
#include "clinker/core/metrics.h"
#include "clinker/services/admission.h"
#include "clinker/services/api_service.h"
#include "clinker/services/authenticator.h"
#include "clinker/services/capability_cache.h"
#include "clinker/services/job_worker_pool.h"
#include "clinker/services/quotas.h"
#include "clinker/services/quotas_api.h"
#include "clinker/services/requeue_sweeper.h"
#include "clinker/services/scheduler.h"
#include "clinker/services/service_registry.h"
#include "clinker/services/services_api.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_manager.h"
#include "clinker/services/volumes_api.h"

#include "clinkerd/config.h"
#include "clinkerd/volume_backend.h"

namespace {

using clinker::adapters::sqlite::SqliteJobQueue;
using clinker::ports::JobQueue;
using clinker::ports::StateStore;

int Fail(std::string_view what, const clinker::Error& error) {
  clinker::log::Error("clinkerd.start_failed", {{"what", what}, {"error", error.message}});
  std::fprintf(stderr,
               "clinkerd: %.*s: %s\n",
               static_cast<int>(what.size()),
               what.data(),
               error.message.c_str());
  return 1;
}

// The message for a server that could not be reached: "cannot connect to host:port: <reason>"
// on one line, whatever each adapter's own wording. Other errors keep the adapter's message
// (which names host:port, never the URL).
clinker::Error ServerError(const std::string& server, const clinker::Error& error) {
  std::string reason = error.message;
  bool unreachable = false;
  for (const std::string& prefix : {"cannot connect to PostgreSQL at " + server + ": ",
                                    "RabbitMQ at " + server + ": cannot connect: "}) {
    if (reason.starts_with(prefix)) {
      reason.erase(0, prefix.size());
      unreachable = true;
    }
  }
  if (!unreachable) {
    return error;
  }
  std::string line;
  for (char c : reason) {
    if (c == '\n' || c == '\t') {
      if (!line.empty() && line.back() != ' ') {
        line.push_back(' ');
      }
    } else {
      line.push_back(c);
    }
  }
  return clinker::Error{error.code, "cannot connect to " + server + ": " + line};
}

// PostgreSQL connections this process may use at once: a worker thread holds one per statement.
int PostgresConnections(const clinkerd::Config& config) {
  int connections = 1;
  if (config.HasRole("api")) {
    connections += std::min(config.api_threads, 16);
  }
  if (config.HasRole("scheduler")) {
    connections += 2;
  }
  if (config.HasRole("volume")) {
    for (const clinkerd::BackendConfig& backend : config.backends) {
      connections += backend.workers;
    }
  }
  return std::min(connections, 64);
}

// Every API connection is a descriptor, and the default soft limit (often 1024) is far below
// [api] max_connections: raise the soft limit to the hard one, which needs no privilege.
// Returns the soft limit in force.
rlim_t RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return 0;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      return raised.rlim_cur;
    }
  }
  return limit.rlim_cur;
}

// `clinkerd quota check` / `quota sync`: every project's usage recounted from the live rows
// (services/quotas.h) against the stored counters. Prints one line per counter that differs
// ("<project> <resource> stored <n> counted <m>"); check exits 1 if any does, sync sets each to
// its count (a compare-and-swap on the stored value, so a counter that moved meanwhile is left
// for the next run and reported) and exits 0 when every one was repaired. Counts of a busy
// database may differ for a moment while writes are under way: run it again to confirm.
int RunQuotaCommand(StateStore& store, const clinkerd::Config& config, bool sync) {
  clinker::services::QuotaService quotas(store, config.quota);
  auto counted = quotas.RecountUsage();
  if (!counted) {
    return Fail("quota recount", counted.error());
  }
  auto stored = quotas.StoredUsage();
  if (!stored) {
    return Fail("quota counters", stored.error());
  }

  struct Difference {
    std::string project;
    std::string resource;
    std::int64_t stored = 0;
    std::int64_t counted = 0;
    bool exists = false;
  };

  std::vector<Difference> differences;
  for (const auto& [project, resources] : *counted) {
    for (const auto& [resource, count] : resources) {
      auto project_stored = stored->find(project);
      bool exists = project_stored != stored->end() && project_stored->second.contains(resource);
      std::int64_t value = exists ? project_stored->second.at(resource) : 0;
      if (value != count) {
        differences.push_back({project, resource, value, count, exists});
      }
    }
  }
  for (const auto& [project, resources] : *stored) {
    for (const auto& [resource, value] : resources) {
      auto project_counted = counted->find(project);
      bool counted_there =
          project_counted != counted->end() && project_counted->second.contains(resource);
      if (!counted_there && value != 0) {
        differences.push_back({project, resource, value, 0, true});
      }
    }
  }
  int left = 0;
  for (const Difference& difference : differences) {
    std::cout << difference.project << " " << difference.resource << " stored " << difference.stored
              << " counted " << difference.counted;
    if (sync) {
      const std::string id =
          clinker::ports::UsageCounterId(difference.project, difference.resource);
      bool repaired = false;
      if (difference.exists) {
        auto updated = store.ConditionalUpdate(
            clinker::ports::Table::kQuotaUsages,
            id,
            {{"in_use", difference.counted}},
            {clinker::ports::Expectation::Equals("in_use", difference.stored)},
            {});
        repaired = updated && updated->has_value();
      } else {
        auto inserted = store.Insert(clinker::ports::Table::kQuotaUsages,
                                     {{"id", id},
                                      {"project_id", difference.project},
                                      {"resource", difference.resource},
                                      {"in_use", difference.counted}});
        repaired = static_cast<bool>(inserted);
      }
      std::cout << (repaired ? " repaired" : " changed meanwhile, not repaired");
      left += repaired ? 0 : 1;
    }
    std::cout << "\n";
  }
  if (differences.empty()) {
    std::cout << "quota usage matches the live rows\n";
  }
  return sync ? (left == 0 ? 0 : 1) : (differences.empty() ? 0 : 1);
}

int Run(const clinkerd::Config& config, clinkerd::Command command, const sigset_t& stop_signals) {
  if (config.HasRole("api")) {
    rlim_t open_files = RaiseOpenFileLimit();
    // Beyond the connections, the process needs descriptors for its database, queue, locks and
    // volumes; a cap above what the limit leaves is refused by accept() (EMFILE), not by the cap.
    constexpr rlim_t kReserved = 256;
    if (open_files != RLIM_INFINITY &&
        open_files < static_cast<rlim_t>(config.api_max_connections) + kReserved) {
      clinker::log::Warn(
          "api.open_file_limit",
          {{"limit", static_cast<long long>(open_files)},
           {"max_connections", static_cast<long long>(config.api_max_connections)},
           {"hint", std::string_view("raise the hard RLIMIT_NOFILE (ulimit -Hn, LimitNOFILE=)")}});
    }
  }
  // A policy file that does not read or parse is a bad setting: refuse to start, before anything
  // is created.
  clinker::domain::Policy policy = clinker::domain::Policy::Default();
  if (!config.policy_file.empty()) {
    auto overrides = clinker::adapters::ReadPolicyFile(config.policy_file);
    auto read = overrides
                    ? clinker::domain::Policy::Create(*overrides)
                    : clinker::Result<clinker::domain::Policy>(tl::unexpected(overrides.error()));
    if (!read) {
      Fail("[oslo_policy] policy_file", read.error());
      return 2;
    }
    policy = std::move(*read);
    for (const std::string& name : policy.ExtraRuleNames()) {
      clinker::log::Warn("clinkerd.policy_rule_not_a_default",
                         {{"rule", name}, {"policy_file", config.policy_file}});
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  if (ec) {
    return Fail("state_dir",
                clinker::Error{clinker::ErrorCode::kUnavailable,
                               "cannot create " + config.state_dir + ": " + ec.message()});
  }
  clinker::adapters::sqlite::Database::Options database;
  database.path = config.state_dir + "/clinker.db";
  database.synchronous = config.sqlite_synchronous;
  // One queue session per role, so that each role's jobs are held (and given back on a crash)
  // apart from the others'.
  auto open_queue = [&](int max_in_flight) -> clinker::Result<std::unique_ptr<JobQueue>> {
    if (config.queue_server) {
      const clinkerd::AmqpServer& server = *config.queue_server;
      clinker::adapters::rabbitmq::RabbitMqJobQueue::Options options;
      options.host = server.host;
      options.port = server.port;
      options.user = server.user;
      options.password = server.password;
      options.vhost = server.vhost;
      options.max_in_flight = max_in_flight;
      options.heartbeat = std::chrono::seconds(config.queue_heartbeat_s);
      auto queue = clinker::adapters::rabbitmq::RabbitMqJobQueue::Open(options);
      if (!queue) {
        return tl::unexpected(
            ServerError(server.host + ":" + std::to_string(server.port), queue.error()));
      }
      return std::unique_ptr<JobQueue>(std::move(*queue));
    }
    SqliteJobQueue::Options options;
    options.database = database;
    options.sessions_dir = config.state_dir + "/queue-sessions";
    options.max_in_flight = max_in_flight;
    auto queue = SqliteJobQueue::Open(options);
    if (!queue) {
      return tl::unexpected(queue.error());
    }
    return std::unique_ptr<JobQueue>(std::move(*queue));
  };
  const std::string queue_setting = config.queue_server ? "[queue] url" : "job queue";

  clinker::adapters::SystemClock clock;
  std::unique_ptr<StateStore> store;
  if (!config.database_url.empty()) {
    clinker::adapters::PostgresStateStore::Options options;
    options.uri = config.database_url;
    options.connections = PostgresConnections(config);
    auto opened = clinker::adapters::PostgresStateStore::Open(options);
    if (!opened) {
      return Fail("[database] url", ServerError(config.database_server, opened.error()));
    }
    store = std::move(*opened);
  } else {
    auto opened = clinker::adapters::SqliteStateStore::Open(database);
    if (!opened) {
      return Fail("state database " + database.path, opened.error());
    }
    store = std::move(*opened);
  }
  if (command != clinkerd::Command::kRun) {
    return RunQuotaCommand(*store, config, command == clinkerd::Command::kQuotaSync);
  }

  // Locks: etcd when `[locks] url` names it, else file locks under state_dir. On failure, the exit
  // status of Fail, which has printed the message.
  auto open_locks = [&]() -> tl::expected<std::unique_ptr<clinker::ports::LockManager>, int> {
    if (config.lock_server) {
      clinker::adapters::etcd::EtcdLockManager::Options options;
      options.host = config.lock_server->host;
      options.port = config.lock_server->port;
      options.lease_ttl = std::chrono::seconds(config.lease_ttl_s);
      options.heartbeat_interval = std::chrono::milliseconds(config.heartbeat_interval_ms);
      options.missed_heartbeats = config.missed_heartbeats;
      auto opened = clinker::adapters::etcd::EtcdLockManager::Open(options);
      if (!opened) {
        return tl::unexpected(Fail(
            "[locks] url",
            ServerError(config.lock_server->host + ":" + std::to_string(config.lock_server->port),
                        opened.error())));
      }
      return std::unique_ptr<clinker::ports::LockManager>(std::move(*opened));
    }
    auto created = clinker::adapters::FileLockManager::Create(config.state_dir + "/locks");
    if (!created) {
      return tl::unexpected(Fail("locks", created.error()));
    }
    return std::unique_ptr<clinker::ports::LockManager>(std::move(*created));
  };

  // API role.
  std::unique_ptr<JobQueue> api_queue;
  std::unique_ptr<clinker::ports::LockManager> api_locks;  // Only for fail_fast_when_busy.
  std::unique_ptr<clinker::services::AdmissionControl> admission;
  std::unique_ptr<clinker::services::VolumesApi> volumes_api;
  std::unique_ptr<clinker::services::SnapshotsApi> snapshots_api;
  std::unique_ptr<clinker::services::AttachmentsApi> attachments_api;
  std::unique_ptr<clinker::services::BackupsApi> backups_api;
  std::unique_ptr<clinker::services::TransfersApi> transfers_api;
  std::unique_ptr<clinker::services::QuotaService> quota_service;
  std::unique_ptr<clinker::services::QuotasApi> quotas_api;
  std::unique_ptr<clinker::services::ServicesApi> services_api;
  std::unique_ptr<JobQueue> api_capability_queue;  // Listens to the volume services' reports.
  std::unique_ptr<clinker::services::CapabilityCache> api_capabilities;
  std::unique_ptr<clinker::services::MessagesApi> messages_api;
  std::unique_ptr<clinker::services::TypesApi> types_api;
  std::unique_ptr<clinker::services::QosApi> qos_api;
  std::unique_ptr<clinker::services::GroupTypesApi> group_types_api;
  std::unique_ptr<clinker::services::GroupsApi> groups_api;
  std::unique_ptr<clinker::ports::TokenValidator> token_validator;  // auth_strategy = keystone
  std::unique_ptr<clinker::services::Authenticator> authenticator;
  std::unique_ptr<clinker::services::Healthcheck> health;  // Outlives `api`, which serves it.
  std::unique_ptr<clinker::services::ApiService> api;
  std::unique_ptr<clinker::adapters::HttpServer> http;
  if (config.HasRole("api")) {
    auto queue = open_queue(1);
    if (!queue) {
      return Fail(queue_setting, queue.error());
    }
    api_queue = std::move(*queue);
    clinker::services::VolumesApiOptions options;
    options.max_limit = config.max_limit;
    options.max_volume_size_gib = config.max_volume_size_gib;
    options.availability_zone = config.availability_zone;
    options.default_volume_type = config.default_volume_type;
    options.quota = config.quota;
    clinker::services::AdmissionOptions admission_options;
    admission_options.max_queued_jobs_per_backend = config.api_max_queued_jobs_per_backend;
    admission =
        std::make_unique<clinker::services::AdmissionControl>(*store, clock, admission_options);
    if (admission->enabled()) {
      options.admission = admission.get();
    }
    if (config.fail_fast_when_busy) {
      auto opened_locks = open_locks();
      if (!opened_locks) {
        return opened_locks.error();
      }
      api_locks = std::move(*opened_locks);
      options.fail_fast_locks = api_locks.get();
    }
    volumes_api =
        std::make_unique<clinker::services::VolumesApi>(*store, *api_queue, clock, options);
    // /capabilities and /scheduler-stats show the back-ends' reports, which this API server
    // receives as the schedulers do (its own session on the fanout channel).
    auto capability_queue = open_queue(1);
    if (!capability_queue) {
      return Fail(queue_setting, capability_queue.error());
    }
    api_capability_queue = std::move(*capability_queue);
    api_capabilities =
        std::make_unique<clinker::services::CapabilityCache>(*api_capability_queue, clock);
    clinker::services::ServicesApiOptions services_options{
        std::chrono::seconds(config.service_down_time_s)};
    services_options.capabilities = api_capabilities.get();
    services_options.capability_max_age = 3 * std::chrono::seconds(config.report_interval_s);
    services_api =
        std::make_unique<clinker::services::ServicesApi>(*store, clock, services_options);
    messages_api =
        std::make_unique<clinker::services::MessagesApi>(*store, clock, config.max_limit);
    clinker::services::SnapshotsApiOptions snapshots_options;
    snapshots_options.max_limit = config.max_limit;
    snapshots_options.quota = config.quota;
    snapshots_options.admission = options.admission;
    snapshots_api = std::make_unique<clinker::services::SnapshotsApi>(
        *store, *api_queue, clock, snapshots_options);
    clinker::services::AttachmentsApiOptions attachments_options;
    attachments_options.max_limit = config.max_limit;
    attachments_options.job_timeout = std::chrono::seconds(config.attach_timeout_s);
    clinker::services::BackupsApiOptions backups_options;
    backups_options.max_limit = config.max_limit;
    backups_options.availability_zone = config.availability_zone;
    backups_options.quota = config.quota;
    backups_options.admission = options.admission;
    backups_api =
        std::make_unique<clinker::services::BackupsApi>(*store, *api_queue, clock, backups_options);
    attachments_api = std::make_unique<clinker::services::AttachmentsApi>(
        *store, *api_queue, clock, attachments_options);
    clinker::services::TransfersApiOptions transfers_options;
    transfers_options.max_limit = config.max_limit;
    transfers_options.quota = config.quota;
    quota_service = std::make_unique<clinker::services::QuotaService>(*store, config.quota);
    quotas_api = std::make_unique<clinker::services::QuotasApi>(*quota_service, clock);
    transfers_api =
        std::make_unique<clinker::services::TransfersApi>(*store, clock, transfers_options);
    types_api = std::make_unique<clinker::services::TypesApi>(
        *store,
        clock,
        clinker::services::TypesApiOptions{config.max_limit, config.default_volume_type});
    // Cinder's default type (__DEFAULT__ unless configured otherwise) exists before the first
    // request; several API processes starting together create it once (its name is unique).
    if (auto default_type = types_api->catalog().Default(); !default_type) {
      return Fail("[api] default_volume_type", default_type.error());
    }
    group_types_api = std::make_unique<clinker::services::GroupTypesApi>(
        *store, clock, clinker::services::GroupTypesApiOptions{config.max_limit});
    groups_api = std::make_unique<clinker::services::GroupsApi>(
        *store,
        clock,
        *volumes_api,
        *snapshots_api,
        clinker::services::GroupsApiOptions{
            config.max_limit, config.availability_zone, config.quota});
    clinker::services::ApiAuthOptions auth;
    auth.policy = policy;
    if (config.auth_strategy == "keystone") {
      clinker::adapters::keystone::KeystoneTokenValidatorOptions keystone;
      keystone.auth_url = config.keystone_auth_url;
      keystone.username = config.keystone_username;
      keystone.password = config.keystone_password;
      keystone.user_domain_name = config.keystone_user_domain_name;
      keystone.project_name = config.keystone_project_name;
      keystone.project_domain_name = config.keystone_project_domain_name;
      keystone.connect_timeout = std::chrono::seconds(config.keystone_http_timeout_s);
      keystone.request_timeout = std::chrono::seconds(config.keystone_http_timeout_s);
      auto validator = clinker::adapters::keystone::KeystoneTokenValidator::Create(keystone, clock);
      if (!validator) {
        Fail("[keystone_authtoken]", validator.error());
        return 2;
      }
      token_validator = std::move(*validator);
      clinker::services::AuthenticatorOptions cache;
      cache.max_positive_ttl = std::chrono::seconds(config.keystone_token_cache_time_s);
      cache.service_token_roles = config.keystone_service_token_roles;
      authenticator =
          std::make_unique<clinker::services::Authenticator>(*token_validator, clock, cache);
      auth.authenticator = authenticator.get();
      auth.www_authenticate_uri = config.keystone_www_authenticate_uri;
    }
    api = std::make_unique<clinker::services::ApiService>(*volumes_api,
                                                          *snapshots_api,
                                                          *attachments_api,
                                                          *backups_api,
                                                          *services_api,
                                                          *types_api,
                                                          std::move(auth),
                                                          messages_api.get());
    api->ServeTransfers(transfers_api.get());
    qos_api = std::make_unique<clinker::services::QosApi>(*store, clock, types_api->catalog());
    api->ServeQosSpecs(qos_api.get());
    api->ServeQuotas(quotas_api.get());
    api->ServeGroups(group_types_api.get(), groups_api.get());
    // GET /metrics: the front end's counters and the back-end backlog (counted even with the
    // bound off, at most once per second).
    api->ServeMetrics(
        [&admission]() { return clinker::services::MetricsDocument(admission.get()); });
    clinker::adapters::HttpServer::Options http_options;
    http_options.listen_address = config.listen;
    http_options.port = config.port;
    http_options.threads = config.api_threads;
    http_options.io_threads = config.api_io_threads;
    http_options.max_queued_requests = config.api_max_queued_requests;
    http_options.max_connections = config.api_max_connections;
    http_options.header_timeout = std::chrono::seconds(config.api_header_timeout_s);
    http_options.body_timeout = std::chrono::seconds(config.api_body_timeout_s);
    http_options.keep_alive_timeout = std::chrono::seconds(config.api_keep_alive_timeout_s);
    http_options.write_timeout = std::chrono::seconds(config.api_write_timeout_s);
    http_options.drain_timeout = std::chrono::seconds(config.api_drain_timeout_s);
    http_options.max_header_bytes = static_cast<std::size_t>(config.api_max_header_bytes);
    http_options.max_body_bytes = static_cast<std::size_t>(config.api_max_body_bytes);
    http = std::make_unique<clinker::adapters::HttpServer>(
        http_options,
        [&api](const clinker::ports::HttpRequest& request) { return api->Handle(request); });
  }

  // Scheduler role.
  std::unique_ptr<JobQueue> scheduler_queue;
  std::unique_ptr<clinker::services::CapabilityCache> capabilities;
  std::unique_ptr<clinker::services::Scheduler> scheduler;
  std::unique_ptr<clinker::services::JobWorkerPool> scheduler_pool;
  std::unique_ptr<clinker::services::RequeueSweeper> sweeper;
  if (config.HasRole("scheduler")) {
    // Scheduling waits on the state store more than it computes, and Handle is thread safe: one
    // worker held every create behind the previous one (the create pipeline's narrowest step).
    constexpr int kSchedulerWorkers = 4;
    auto queue = open_queue(kSchedulerWorkers);
    if (!queue) {
      return Fail(queue_setting, queue.error());
    }
    scheduler_queue = std::move(*queue);
    if (auto subscribed = scheduler_queue->Subscribe({clinker::services::SchedulerTopic()});
        !subscribed) {
      return Fail(queue_setting, subscribed.error());
    }
    // The volume services' capability reports (fanout): the scheduler places a volume only on
    // a back-end that reported recently with room for it.
    capabilities = std::make_unique<clinker::services::CapabilityCache>(*scheduler_queue, clock);
    clinker::services::SchedulerOptions scheduler_options{
        config.scheduler_clusters, config.scheduler_backends, "default"};
    scheduler_options.capability_max_age = 3 * std::chrono::seconds(config.report_interval_s);
    scheduler_options.max_over_subscription_ratio = config.max_over_subscription_ratio;
    if (config.scheduler_weighers.front() == "VolumeNumberWeigher") {
      scheduler_options.weigher = clinker::services::SchedulerOptions::Weigher::kVolumeNumber;
    }
    scheduler = std::make_unique<clinker::services::Scheduler>(
        *store, *scheduler_queue, clock, scheduler_options, capabilities.get());
    scheduler_pool = std::make_unique<clinker::services::JobWorkerPool>(
        *scheduler_queue,
        [&scheduler](const clinker::ports::Delivery& delivery) {
          return scheduler->Handle(delivery);
        },
        clinker::services::JobWorkerPool::Options{"scheduler", kSchedulerWorkers});
    sweeper = std::make_unique<clinker::services::RequeueSweeper>(
        *store,
        *scheduler_queue,
        clock,
        clinker::services::RequeueSweeperOptions{std::chrono::seconds(config.sweep_interval_s),
                                                 std::chrono::seconds(config.requeue_after_s)});
  }

  // Volume role: one volume service per back-end ([[backends]], or the short form's one), each
  // with its own driver, queue session, topics, workers, capability reports and os-services row
  // ("<host>@<backend>"), as Cinder runs one per enabled_backends entry. They share the lock
  // manager (a volume's lock is its id's, whatever the back-end) and the backup store.
  std::unique_ptr<clinker::ports::LockManager> locks;
  std::unique_ptr<clinker::adapters::FileBackupStore> backup_store;
  std::vector<std::unique_ptr<clinkerd::VolumeBackend>> volume_backends;
  if (config.HasRole("volume")) {
    auto opened_locks = open_locks();
    if (!opened_locks) {
      return opened_locks.error();
    }
    locks = std::move(*opened_locks);
    clinker::adapters::FileBackupStore::Options backup_options;
    backup_options.backup_dir = config.backup_dir;
    backup_options.chunk_size_bytes = std::int64_t{config.backup_chunk_size_mib} << 20;
    backup_options.compression_level = config.backup_compression_level;
    backup_options.journal_path = config.driver_journal;  // One journal for every back-end call.
    auto created_backups = clinker::adapters::FileBackupStore::Create(backup_options);
    if (!created_backups) {
      return Fail("[backup] backup_dir", created_backups.error());
    }
    backup_store = std::move(*created_backups);
    clinker::services::VolumeManagerOptions manager_options;
    manager_options.backup_store = backup_store.get();
    manager_options.quota = config.quota;
    manager_options.lock_timeout = std::chrono::seconds(config.lock_timeout_s);
    // Crash tests only: CLINKER_TEST_FAULT_POINT=<operation>:<before_driver|after_driver> makes
    // this process die (SIGKILL, no clean-up) when a job reaches that point.
    // Read before any thread of ours starts, so getenv cannot race a setenv.
    // NOLINTNEXTLINE(concurrency-mt-unsafe)
    if (const char* fault = std::getenv("CLINKER_TEST_FAULT_POINT"); fault != nullptr) {
      std::string wanted(fault);
      clinker::log::Warn("clinkerd.fault_point_armed", {{"point", wanted}});
      manager_options.fault_point = [wanted](std::string_view point) {
        if (point == wanted) {
          clinker::log::Warn("clinkerd.fault_point_reached", {{"point", wanted}});
          std::raise(SIGKILL);
        }
      };
    }
    clinkerd::VolumeBackendShared shared;
    shared.store = store.get();
    shared.locks = locks.get();
    shared.clock = &clock;
    shared.manager_options = std::move(manager_options);
    shared.report_interval = std::chrono::seconds(config.report_interval_s);
    shared.driver_delay = std::chrono::milliseconds(config.driver_delay_ms);
    shared.driver_journal = config.driver_journal;
    for (const clinkerd::BackendConfig& backend_config : config.backends) {
      auto queue = open_queue(backend_config.workers);
      if (!queue) {
        return Fail(queue_setting, queue.error());
      }
      auto backend = clinkerd::VolumeBackend::Create(backend_config, std::move(*queue), shared);
      if (!backend) {
        return Fail("volume back-end " + backend_config.name, backend.error());
      }
      volume_backends.push_back(std::move(*backend));
    }
  }

  // Each service shows up in os-services (and its cluster in clusters) once it runs.
  std::vector<std::unique_ptr<clinker::services::ServiceRegistry>> registries;
  auto register_service = [&](std::string binary,
                              std::string host,
                              std::optional<std::string> cluster_name) -> clinker::Result<void> {
    clinker::services::ServiceRegistryOptions options;
    options.binary = std::move(binary);
    options.host = std::move(host);
    options.cluster_name = std::move(cluster_name);
    options.availability_zone = config.availability_zone;
    options.report_interval = std::chrono::seconds(config.report_interval_s);
    registries.push_back(
        std::make_unique<clinker::services::ServiceRegistry>(*store, clock, std::move(options)));
    return registries.back()->Start();
  };
  if (api_capabilities) {
    if (auto listening = api_capabilities->Start(); !listening) {
      return Fail(queue_setting, listening.error());
    }
  }
  if (scheduler_pool) {
    if (auto listening = capabilities->Start(); !listening) {
      return Fail(queue_setting, listening.error());
    }
    scheduler_pool->Start();
    sweeper->Start();
    if (auto registered = register_service("cinder-scheduler", config.host, std::nullopt);
        !registered) {
      return Fail("service registration", registered.error());
    }
  }
  if (!volume_backends.empty()) {
    std::vector<clinker::services::ServiceRegistry*> volume_services;
    for (const auto& backend : volume_backends) {
      backend->Start();
      std::optional<std::string> cluster_name;
      if (!backend->config().cluster.empty()) {
        cluster_name = backend->config().ClusterAddress();
      }
      if (auto registered = register_service(
              "cinder-volume", backend->config().BackendAddress(), std::move(cluster_name));
          !registered) {
        return Fail("service registration", registered.error());
      }
      volume_services.push_back(registries.back().get());
    }
    // A lost lease: the volume managers stop the affected jobs (Lock::IsLost), and the services
    // show down in os-services for a lease's time, by which the lock manager holds a new one.
    const auto not_working_for = std::chrono::seconds(config.lease_ttl_s);
    locks->SetLostCallback([volume_services, not_working_for](const std::string& name,
                                                              std::uint64_t fencing_token) {
      clinker::log::Error(
          "locks.lost", {{"lock", name}, {"fencing_token", static_cast<long long>(fencing_token)}});
      for (clinker::services::ServiceRegistry* volume_service : volume_services) {
        volume_service->ReportNotWorking(not_working_for, "lock lease lost: " + name);
      }
    });
  }
  if (http) {
    // GET /healthcheck: what a load balancer needs to know: this process reaches its database
    // (one small read, bounded by the store's own timeouts), and none of its volume services
    // has stopped working (a lost lock lease). Made once every service is registered, before
    // the first request, so the probes read a settled list.
    std::vector<clinker::services::HealthProbe> probes;
    probes.push_back({"database", [&store]() -> std::optional<std::string> {
                        clinker::ports::ListQuery one;
                        one.limit = 1;
                        auto probed = store->List(clinker::ports::Table::kServices, one);
                        if (!probed) {
                          return probed.error().ToString();
                        }
                        return std::nullopt;
                      }});
    for (const auto& registry : registries) {
      const clinker::services::ServiceRegistry* service = registry.get();
      probes.push_back({"service " + service->service_id(), [service] {
                          return service->NotWorkingReason();
                        }});
    }
    health = std::make_unique<clinker::services::Healthcheck>(std::move(probes));
    api->ServeHealthcheck(health.get());
    if (auto started = http->Start(); !started) {
      return Fail("api listen address", started.error());
    }
    clinker::log::Info("api.listening",
                       {{"listen", config.listen}, {"port", static_cast<long long>(http->port())}});
  }
  std::string backend_addresses;  // "<host>@<backend>,..." of the volume services.
  for (const clinkerd::BackendConfig& backend : config.backends) {
    backend_addresses += (backend_addresses.empty() ? "" : ",") + backend.BackendAddress();
  }
  clinker::log::Info(
      "clinkerd.started",
      {{"host", config.host},
       {"cluster", config.cluster},
       {"backends", backend_addresses},
       {"state_dir", config.state_dir},
       {"database",
        config.database_url.empty() ? "sqlite" : "postgresql " + config.database_server},
       {"queue",
        config.queue_server
            ? "rabbitmq " + config.queue_server->host + ":" +
                  std::to_string(config.queue_server->port) + " vhost " + config.queue_server->vhost
            : "sqlite"},
       {"locks",
        config.lock_server
            ? "etcd " + config.lock_server->host + ":" + std::to_string(config.lock_server->port)
            : "file"},
       {"api", config.HasRole("api")},
       {"scheduler", config.HasRole("scheduler")},
       {"volume", config.HasRole("volume")}});

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  clinker::log::Info("clinkerd.stopping", {{"signal", static_cast<long long>(signal_number)}});
  if (http) {
    http->Stop();
  }
  if (scheduler_pool) {
    sweeper->Stop();
    scheduler_pool->Stop();
    capabilities->Stop();
  }
  if (!volume_backends.empty()) {
    for (const auto& backend : volume_backends) {
      backend->Stop();
    }
    // The callback refers to the volume services' registries, which go before the lock manager.
    locks->SetLostCallback({});
  }
  // Deregistered last: the service is shown up for as long as it still finishes jobs.
  for (auto& registry : registries) {
    registry->Stop().IgnoreError("the row goes down after service_down_time anyway");
  }
  // For benchmarks: what the run cost in database round trips.
  clinker::log::Info(
      "clinkerd.stopped",
      {{"write_transactions",
        static_cast<long long>(clinker::metrics::Global().write_transactions.load())},
       {"read_transactions",
        static_cast<long long>(clinker::metrics::Global().read_transactions.load())},
       {"http_requests", static_cast<long long>(clinker::metrics::Global().http_requests.load())},
       {"http_refusals", static_cast<long long>(clinker::metrics::Global().http_refusals.load())},
       {"http_timeouts", static_cast<long long>(clinker::metrics::Global().http_timeouts.load())}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals in every thread (threads inherit the mask) so that only sigwait in
  // the main thread sees them, and ignore SIGPIPE from clients that hang up mid-response.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  clinkerd::ParsedCommandLine parsed = clinkerd::ParseCommandLine(argc, argv);
  if (!parsed.config) {
    return parsed.exit_code;
  }
  clinker::log::Level level = clinker::log::Level::kInfo;
  clinker::log::ParseLevel(parsed.config->log_level, &level);
  clinker::log::Configure(level, parsed.config->log_format == "json");
  return Run(*parsed.config, parsed.command, stop_signals);
}
