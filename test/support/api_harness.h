// ApiHarness: the whole v3 API (ApiService over every resource handler) on one StateStore, a
// MemoryBroker queue and a FakeClock, driven with transport-free requests: what the API tests
// need to talk to Clinker as a client does without sockets. Requests carry a noauth token
// ("user:<project>"), so the caller is an admin of kHarnessProject unless a test builds its
// own context.
//
// Not thread safe for set-up; Send may be called from several threads once built (the handlers
// are thread safe). Header-only: test/support's library links only the core.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/services/api_service.h"

#include "support/fake_clock.h"
#include "support/recording_job_queue.h"

namespace clinker::test_support {

inline constexpr std::string_view kHarnessProject = "0123456789abcdef0123456789abcdef";
inline constexpr std::string_view kHarnessBaseUrl = "http://clinker.test:8776";

class ApiHarness {
 public:
  explicit ApiHarness(ports::StateStore& store)
      : store_(store),
        broker_(std::make_shared<adapters::MemoryBroker>()),
        session_(broker_),
        publisher_(session_),
        volumes_(store, publisher_, clock_, services::VolumesApiOptions{}),
        snapshots_(store, publisher_, clock_, services::SnapshotsApiOptions{}),
        attachments_(store, publisher_, clock_, services::AttachmentsApiOptions{}),
        backups_(store, publisher_, clock_, services::BackupsApiOptions{}),
        services_(store, clock_, services::ServicesApiOptions{}),
        types_(store, clock_, services::TypesApiOptions{}),
        qos_(store, clock_, types_.catalog()),
        api_(volumes_, snapshots_, attachments_, backups_, services_, types_) {
    api_.ServeQosSpecs(&qos_);
    // As the daemon does at start.
    auto made = types_.catalog().Default();
    EXPECT_TRUE(made.has_value()) << made.error().ToString();
    clock_.Advance(std::chrono::seconds(1));
  }

  static std::string Path(std::string_view rest) {
    return "/v3/" + std::string(kHarnessProject) + "/" + std::string(rest);
  }

  static ports::HttpRequest Request(std::string method,
                                    std::string path,
                                    std::string body = "",
                                    std::vector<std::pair<std::string, std::string>> query = {}) {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.query = std::move(query);
    request.body = std::move(body);
    request.base_url = std::string(kHarnessBaseUrl);
    request.headers = {{"X-Auth-Token", "user:" + std::string(kHarnessProject)},
                       {"Content-Type", "application/json"}};
    return request;
  }

  ports::HttpResponse Send(const ports::HttpRequest& request) { return api_.Handle(request); }

  ports::HttpResponse Get(std::string_view rest,
                          std::vector<std::pair<std::string, std::string>> query = {}) {
    return Send(Request("GET", Path(rest), "", std::move(query)));
  }

  ports::HttpResponse Post(std::string_view rest, const nlohmann::json& body) {
    return Send(Request("POST", Path(rest), body.dump()));
  }

  ports::HttpResponse Put(std::string_view rest, const nlohmann::json& body) {
    return Send(Request("PUT", Path(rest), body.dump()));
  }

  ports::HttpResponse Delete(std::string_view rest,
                             std::vector<std::pair<std::string, std::string>> query = {}) {
    return Send(Request("DELETE", Path(rest), "", std::move(query)));
  }

  // The response body as JSON (a test failure if it is not).
  static nlohmann::json Body(const ports::HttpResponse& response) {
    nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
    EXPECT_FALSE(body.is_discarded()) << "response body is not JSON: " << response.body;
    return body;
  }

  // The message of a Cinder fault body ({"<name>": {"code": N, "message": "..."}}).
  static std::string FaultMessage(const ports::HttpResponse& response) {
    nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
    if (!body.is_object() || body.empty() || !body.begin()->is_object()) {
      return "";
    }
    return body.begin()->value("message", "");
  }

  // A new volume type (admin); returns its view.
  nlohmann::json CreateType(const std::string& name) {
    ports::HttpResponse response = Post("types", {{"volume_type", {{"name", name}}}});
    EXPECT_EQ(response.status, 200) << response.body;
    clock_.Advance(std::chrono::seconds(1));
    return Body(response)["volume_type"];
  }

  ports::StateStore& store() { return store_; }

  FakeClock& clock() { return clock_; }

  services::TypesApi& types() { return types_; }

  services::QosApi& qos() { return qos_; }

  services::ApiService& api() { return api_; }

 private:
  ports::StateStore& store_;
  FakeClock clock_;
  std::shared_ptr<adapters::MemoryBroker> broker_;
  adapters::MemoryJobQueue session_;
  RecordingJobQueue publisher_;
  services::VolumesApi volumes_;
  services::SnapshotsApi snapshots_;
  services::AttachmentsApi attachments_;
  services::BackupsApi backups_;
  services::ServicesApi services_;
  services::TypesApi types_;
  services::QosApi qos_;
  services::ApiService api_;
};

}  // namespace clinker::test_support
