// clinkerd: wires the ports to their adapters for the roles this process runs, then waits for
// SIGTERM or SIGINT and shuts down cleanly: the API stops accepting, every running job finishes
// and is acked, and jobs not started stay in the queue for another node.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include <signal.h>

#include "clinker/adapters/file/file_lock_manager.h"
#include "clinker/adapters/file/file_storage_driver.h"
#include "clinker/adapters/http/http_server.h"
#include "clinker/adapters/os/system_clock.h"
#include "clinker/adapters/sqlite/sqlite_job_queue.h"
#include "clinker/adapters/sqlite/sqlite_state_store.h"
#include "clinker/core/log.h"
#include "clinker/services/api_service.h"
#include "clinker/services/job_worker_pool.h"
#include "clinker/services/requeue_sweeper.h"
#include "clinker/services/scheduler.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_manager.h"
#include "clinker/services/volumes_api.h"

#include "clinkerd/config.h"

namespace {

using clinker::adapters::sqlite::SqliteJobQueue;

int Fail(std::string_view what, const clinker::Error& error) {
  clinker::log::Error("clinkerd.start_failed", {{"what", what}, {"error", error.message}});
  std::fprintf(stderr,
               "clinkerd: %.*s: %s\n",
               static_cast<int>(what.size()),
               what.data(),
               error.message.c_str());
  return 1;
}

int Run(const clinkerd::Config& config, const sigset_t& stop_signals) {
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
  auto open_queue = [&](int max_in_flight) {
    SqliteJobQueue::Options options;
    options.database = database;
    options.sessions_dir = config.state_dir + "/queue-sessions";
    options.max_in_flight = max_in_flight;
    return SqliteJobQueue::Open(options);
  };

  clinker::adapters::SystemClock clock;
  auto store = clinker::adapters::SqliteStateStore::Open(database);
  if (!store) {
    return Fail("state database " + database.path, store.error());
  }

  // API role.
  std::unique_ptr<SqliteJobQueue> api_queue;
  std::unique_ptr<clinker::services::VolumesApi> volumes_api;
  std::unique_ptr<clinker::services::ApiService> api;
  std::unique_ptr<clinker::adapters::HttpServer> http;
  if (config.HasRole("api")) {
    auto queue = open_queue(1);
    if (!queue) {
      return Fail("job queue", queue.error());
    }
    api_queue = std::move(*queue);
    clinker::services::VolumesApiOptions options;
    options.max_limit = config.max_limit;
    options.max_volume_size_gib = config.max_volume_size_gib;
    options.availability_zone = config.availability_zone;
    volumes_api =
        std::make_unique<clinker::services::VolumesApi>(**store, *api_queue, clock, options);
    api = std::make_unique<clinker::services::ApiService>(*volumes_api);
    clinker::adapters::HttpServer::Options http_options;
    http_options.listen_address = config.listen;
    http_options.port = config.port;
    http_options.threads = config.api_threads;
    http = std::make_unique<clinker::adapters::HttpServer>(
        http_options,
        [&api](const clinker::ports::HttpRequest& request) { return api->Handle(request); });
  }

  // Scheduler role.
  std::unique_ptr<SqliteJobQueue> scheduler_queue;
  std::unique_ptr<clinker::services::Scheduler> scheduler;
  std::unique_ptr<clinker::services::JobWorkerPool> scheduler_pool;
  std::unique_ptr<clinker::services::RequeueSweeper> sweeper;
  if (config.HasRole("scheduler")) {
    auto queue = open_queue(1);
    if (!queue) {
      return Fail("job queue", queue.error());
    }
    scheduler_queue = std::move(*queue);
    if (auto subscribed = scheduler_queue->Subscribe({clinker::services::SchedulerTopic()});
        !subscribed) {
      return Fail("job queue", subscribed.error());
    }
    scheduler = std::make_unique<clinker::services::Scheduler>(
        **store,
        *scheduler_queue,
        clock,
        clinker::services::SchedulerOptions{config.scheduler_backends, "default"});
    scheduler_pool = std::make_unique<clinker::services::JobWorkerPool>(
        *scheduler_queue,
        [&scheduler](const clinker::ports::Delivery& delivery) {
          return scheduler->Handle(delivery);
        },
        clinker::services::JobWorkerPool::Options{"scheduler", 1});
    sweeper = std::make_unique<clinker::services::RequeueSweeper>(
        **store,
        *scheduler_queue,
        clock,
        clinker::services::RequeueSweeperOptions{std::chrono::seconds(config.sweep_interval_s),
                                                 std::chrono::seconds(config.requeue_after_s)});
  }

  // Volume role.
  std::unique_ptr<SqliteJobQueue> volume_queue;
  std::unique_ptr<clinker::adapters::FileLockManager> locks;
  std::unique_ptr<clinker::adapters::FileStorageDriver> driver;
  std::unique_ptr<clinker::services::VolumeManager> manager;
  std::unique_ptr<clinker::services::JobWorkerPool> volume_pool;
  if (config.HasRole("volume")) {
    auto queue = open_queue(config.workers);
    if (!queue) {
      return Fail("job queue", queue.error());
    }
    volume_queue = std::move(*queue);
    std::string topic = clinker::services::VolumeTopic(config.BackendAddress());
    if (auto subscribed = volume_queue->Subscribe({topic}); !subscribed) {
      return Fail("job queue", subscribed.error());
    }
    auto created_locks = clinker::adapters::FileLockManager::Create(config.state_dir + "/locks");
    if (!created_locks) {
      return Fail("locks", created_locks.error());
    }
    locks = std::move(*created_locks);
    clinker::adapters::FileStorageDriver::Options driver_options;
    driver_options.volume_dir = config.volume_dir;
    driver_options.backend_name = config.backend;
    driver_options.delay = std::chrono::milliseconds(config.driver_delay_ms);
    driver_options.journal_path = config.driver_journal;
    auto created_driver = clinker::adapters::FileStorageDriver::Create(driver_options);
    if (!created_driver) {
      return Fail("volume back-end", created_driver.error());
    }
    driver = std::move(*created_driver);
    clinker::services::VolumeManagerOptions manager_options;
    manager_options.lock_timeout = std::chrono::seconds(config.lock_timeout_s);
    manager = std::make_unique<clinker::services::VolumeManager>(
        **store, *locks, *driver, clock, manager_options);
    volume_pool = std::make_unique<clinker::services::JobWorkerPool>(
        *volume_queue,
        [&manager](const clinker::ports::Delivery& delivery) { return manager->Handle(delivery); },
        clinker::services::JobWorkerPool::Options{"volume", config.workers});
  }

  if (scheduler_pool) {
    scheduler_pool->Start();
    sweeper->Start();
  }
  if (volume_pool) {
    volume_pool->Start();
  }
  if (http) {
    if (auto started = http->Start(); !started) {
      return Fail("api listen address", started.error());
    }
    clinker::log::Info("api.listening",
                       {{"listen", config.listen}, {"port", static_cast<long long>(http->port())}});
  }
  clinker::log::Info("clinkerd.started",
                     {{"host", config.host},
                      {"backend", config.BackendAddress()},
                      {"state_dir", config.state_dir},
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
  }
  if (volume_pool) {
    volume_pool->Stop();
  }
  clinker::log::Info("clinkerd.stopped");
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
  return Run(*parsed.config, stop_signals);
}
