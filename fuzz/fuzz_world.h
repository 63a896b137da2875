// FuzzWorld: the whole v3 API (ApiService over the resource handlers) on an in-memory state store
// and job queue with a clock that stands still, plus one volume, snapshot, backup and attachment
// that request paths can name, so that a fuzzed request reaches the validation of an existing
// resource and not only its 404.
//
// Built afresh for each input (a few hundred microseconds): an input's outcome never depends on
// what earlier inputs created, so a crash reproduces from its file alone and memory stays flat
// however long the fuzzer runs. Not thread safe (libFuzzer runs one input at a time).
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/log.h"
#include "clinker/ports/clock.h"
#include "clinker/services/api_service.h"
#include "clinker/services/attachments_api.h"
#include "clinker/services/backups_api.h"
#include "clinker/services/messages_api.h"
#include "clinker/services/qos_api.h"
#include "clinker/services/services_api.h"
#include "clinker/services/snapshots_api.h"
#include "clinker/services/transfers_api.h"
#include "clinker/services/types_api.h"
#include "clinker/services/volumes_api.h"

namespace clinker::fuzz {

inline constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";

// Wall time 2026-01-01T00:00:00Z, monotonic time one hour: fixed, so runs are deterministic.
class StillClock final : public ports::Clock {
 public:
  std::chrono::system_clock::time_point WallNow() const override {
    return std::chrono::system_clock::time_point(std::chrono::seconds(1767225600));
  }

  std::chrono::steady_clock::time_point MonoNow() const override {
    return std::chrono::steady_clock::time_point(std::chrono::hours(1));
  }
};

// A failure of the set-up is a bug of this harness, not a finding: stop loudly.
[[noreturn]] inline void SetupFailed(std::string_view what, const std::string& detail) {
  std::fprintf(stderr,
               "fuzz world set-up failed: %.*s: %s\n",
               static_cast<int>(what.size()),
               what.data(),
               detail.c_str());
  std::abort();
}

class FuzzWorld {
 public:
  FuzzWorld()
      : broker_(std::make_shared<adapters::MemoryBroker>()),
        queue_(broker_),
        volumes_(store_, queue_, clock_, services::VolumesApiOptions{}),
        snapshots_(store_, queue_, clock_, services::SnapshotsApiOptions{}),
        attachments_(store_, queue_, clock_, NoWaitAttachments()),
        backups_(store_, queue_, clock_, services::BackupsApiOptions{}),
        services_(store_, clock_, services::ServicesApiOptions{}),
        types_(store_, clock_, services::TypesApiOptions{}),
        qos_(store_, clock_, types_.catalog()),
        transfers_(store_, clock_, services::TransfersApiOptions{}),
        messages_(store_, clock_),
        api_(volumes_, snapshots_, attachments_, backups_, services_, types_, {}, &messages_) {
    api_.ServeQosSpecs(&qos_);
    api_.ServeTransfers(&transfers_);
    if (auto made = types_.catalog().Default(); !made) {
      SetupFailed("default volume type", made.error().ToString());
    }
    volume_id_ = Create("volumes", {{"volume", {{"size", 1}, {"name", "v"}}}}, "volume");
    MakeAvailable("volumes/" + volume_id_, "os-reset_status");
    // As the scheduler would have placed it: snapshots, backups and attachments need a host.
    if (auto placed = store_.ConditionalUpdate(
            ports::Table::kVolumes, volume_id_, {{"host", std::string("fuzz@file#pool")}}, {}, {});
        !placed || !placed->has_value()) {
      SetupFailed("volume host", placed ? "no row" : placed.error().ToString());
    }
    snapshot_id_ = Create("snapshots", {{"snapshot", {{"volume_id", volume_id_}}}}, "snapshot");
    MakeAvailable("snapshots/" + snapshot_id_, "os-reset_status");
    backup_id_ = Create("backups", {{"backup", {{"volume_id", volume_id_}}}}, "backup");
    MakeAvailable("backups/" + backup_id_, "os-reset_status");
    MakeAvailable("volumes/" + volume_id_, "os-reset_status");  // It was backing-up.
    attachment_id_ = Create("attachments",
                            {{"attachment",
                              {{"volume_uuid", volume_id_},
                               {"instance_uuid", "11111111-2222-3333-4444-555555555555"}}}},
                            "attachment",
                            "3.27");
  }

  FuzzWorld(const FuzzWorld&) = delete;
  FuzzWorld& operator=(const FuzzWorld&) = delete;

  // Only errors are logged (a fuzzer makes millions of requests, an error is worth seeing); call
  // once, before the first world.
  static void QuietLogs() { log::Configure(log::Level::kError, /*json=*/false); }

  // A request as a noauth client of kProject (an admin) sends it.
  static ports::HttpRequest Request(std::string method,
                                    std::string path,
                                    std::string body,
                                    std::string_view version = "") {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.body = std::move(body);
    request.base_url = "http://clinker.fuzz:8776";
    request.headers = {{"X-Auth-Token", "user:" + std::string(kProject)},
                       {"Content-Type", "application/json"}};
    if (!version.empty()) {
      request.headers.emplace_back("OpenStack-API-Version", "volume " + std::string(version));
    }
    return request;
  }

  static std::string Path(std::string_view rest) {
    return "/v3/" + std::string(kProject) + "/" + std::string(rest);
  }

  ports::HttpResponse Send(const ports::HttpRequest& request) { return api_.Handle(request); }

  const std::string& volume_id() const { return volume_id_; }

  const std::string& snapshot_id() const { return snapshot_id_; }

  const std::string& backup_id() const { return backup_id_; }

  const std::string& attachment_id() const { return attachment_id_; }

 private:
  std::string Create(std::string_view collection,
                     const nlohmann::json& body,
                     std::string_view root,
                     std::string_view version = "") {
    ports::HttpResponse response = Send(Request("POST", Path(collection), body.dump(), version));
    nlohmann::json parsed = nlohmann::json::parse(response.body, nullptr, false);
    if (response.status >= 300 || !parsed.is_object() || !parsed.contains(root)) {
      SetupFailed(collection, std::to_string(response.status) + " " + response.body);
    }
    return parsed[std::string(root)].value("id", "");
  }

  void MakeAvailable(const std::string& rest, std::string_view action) {
    nlohmann::json body = {{std::string(action), {{"status", "available"}}}};
    ports::HttpResponse response = Send(Request("POST", Path(rest + "/action"), body.dump()));
    if (response.status >= 300) {
      SetupFailed(rest, std::to_string(response.status) + " " + response.body);
    }
  }

  // No volume node runs here: an attach or detach job the API queues never finishes, so the
  // request is answered (503, "no volume service finished it") without waiting for it.
  static services::AttachmentsApiOptions NoWaitAttachments() {
    services::AttachmentsApiOptions options;
    options.job_timeout = std::chrono::milliseconds(0);
    return options;
  }

  StillClock clock_;
  adapters::MemoryStateStore store_;
  std::shared_ptr<adapters::MemoryBroker> broker_;
  adapters::MemoryJobQueue queue_;
  services::VolumesApi volumes_;
  services::SnapshotsApi snapshots_;
  services::AttachmentsApi attachments_;
  services::BackupsApi backups_;
  services::ServicesApi services_;
  services::TypesApi types_;
  services::QosApi qos_;
  services::TransfersApi transfers_;
  services::MessagesApi messages_;
  services::ApiService api_;
  std::string volume_id_;
  std::string snapshot_id_;
  std::string backup_id_;
  std::string attachment_id_;
};

}  // namespace clinker::fuzz
