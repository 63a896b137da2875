// Goal: check GET os-services and GET clusters (list, detail, show) as a client sees them through
// ApiService::Handle: Cinder's exact key sets per binary and microversion (cluster at 3.7+;
// replication fields for cinder-volume only), up/down computed from heartbeats against
// service_down_time as time passes, enabled/disabled, the binary and host filters (host
// matching "node1" to "node1@lvm" as Cinder's _filter_host), cluster filters and their 400s,
// 404 for /clusters below 3.7, and 403 for a non-admin caller.
//
// Method: ApiService over ServicesApi over MemoryStateStore; service rows come from real
// ServiceRegistry instances (report interval of an hour, so only Start/Beat/Stop write), and a
// FakeClock moves time, so every timestamp in a response is known in advance.
#include "clinker/services/services_api.h"

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/services/api_service.h"
#include "clinker/services/service_registry.h"
#include "clinker/services/volumes_api.h"

#include "support/fake_clock.h"

namespace clinker::services {
namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStateStore;
using nlohmann::json;
using ports::Table;
using ports::Value;
using test_support::FakeClock;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";

std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  for (const auto& item : object.items()) {
    keys.insert(item.key());
  }
  return keys;
}

std::string ResponseHeader(const ports::HttpResponse& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) {
      return value;
    }
  }
  return "";
}

class ServicesApiTest : public ::testing::Test {
 protected:
  ServicesApiTest()
      : broker_(std::make_shared<MemoryBroker>()),
        queue_(broker_),
        volumes_(store_, queue_, clock_, VolumesApiOptions{}),
        snapshots_(store_, queue_, clock_, SnapshotsApiOptions{}),
        attachments_(store_, queue_, clock_, AttachmentsApiOptions{}),
        backups_(store_, queue_, clock_, BackupsApiOptions{}),
        services_(store_, clock_, ServicesApiOptions{}),
        api_(volumes_, snapshots_, attachments_, backups_, services_, types_) {}

  // Starts a registry that only writes when told (its thread would beat once an hour).
  ServiceRegistry& Register(std::string binary,
                            std::string host,
                            std::optional<std::string> cluster = std::nullopt) {
    ServiceRegistryOptions options;
    options.binary = std::move(binary);
    options.host = std::move(host);
    options.cluster_name = std::move(cluster);
    options.report_interval = std::chrono::hours(1);
    registries_.push_back(std::make_unique<ServiceRegistry>(store_, clock_, options));
    EXPECT_TRUE(registries_.back()->Start());
    return *registries_.back();
  }

  ports::HttpResponse Get(const std::string& path,
                          std::vector<std::pair<std::string, std::string>> query = {},
                          std::string_view version = "") {
    ports::HttpRequest request;
    request.method = "GET";
    request.path = path;
    request.query = std::move(query);
    request.base_url = "http://localhost:8776";
    request.headers.emplace_back("X-Auth-Token", "admin:" + std::string(kProject));
    if (!version.empty()) {
      request.headers.emplace_back("OpenStack-API-Version", "volume " + std::string(version));
    }
    return api_.Handle(request);
  }

  static std::string Path(std::string_view resource) {
    return "/v3/" + std::string(kProject) + "/" + std::string(resource);
  }

  static json Body(const ports::HttpResponse& response) {
    json body = json::parse(response.body, nullptr, false);
    EXPECT_FALSE(body.is_discarded()) << response.body;
    return body;
  }

  static void ExpectFault(const ports::HttpResponse& response, int status, std::string_view name) {
    EXPECT_EQ(response.status, status) << response.body;
    json body = json::parse(response.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << response.body;
    ASSERT_TRUE(body.contains(name)) << response.body;
    EXPECT_EQ(body[std::string(name)].value("code", 0), status);
  }

  // The services of a 200 list, by host.
  std::map<std::string, json> ServicesByHost(const ports::HttpResponse& response) {
    EXPECT_EQ(response.status, 200) << response.body;
    std::map<std::string, json> by_host;
    json body = Body(response);
    for (const json& service : body["services"]) {
      by_host[service["host"].get<std::string>()] = service;
    }
    return by_host;
  }

  MemoryStateStore store_;
  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue queue_;
  VolumesApi volumes_;
  SnapshotsApi snapshots_;
  AttachmentsApi attachments_;
  BackupsApi backups_;
  ServicesApi services_;
  TypesApi types_{store_, clock_, TypesApiOptions{}};
  ApiService api_;
  std::vector<std::unique_ptr<ServiceRegistry>> registries_;  // Last: stop before the store.
};

// --- os-services ---------------------------------------------------------------------------------

TEST_F(ServicesApiTest, OsServicesListsCinderShapesAt30) {
  Register("cinder-scheduler", "sched1");
  Register("cinder-volume", "node1@lvm", "c1@lvm");

  ports::HttpResponse response = Get(Path("os-services"));
  std::map<std::string, json> services = ServicesByHost(response);
  ASSERT_EQ(services.size(), 2u);

  const json& scheduler = services["sched1"];
  EXPECT_EQ(Keys(scheduler),
            (std::set<std::string>{
                "binary", "host", "zone", "status", "state", "updated_at", "disabled_reason"}));
  EXPECT_EQ(scheduler["binary"], "cinder-scheduler");
  EXPECT_EQ(scheduler["zone"], "nova");
  EXPECT_EQ(scheduler["status"], "enabled");
  EXPECT_EQ(scheduler["state"], "up");
  EXPECT_EQ(scheduler["updated_at"], "2026-01-01T00:00:00.000000");
  EXPECT_TRUE(scheduler["disabled_reason"].is_null());

  const json& volume = services["node1@lvm"];
  EXPECT_EQ(Keys(volume),
            (std::set<std::string>{"binary",
                                   "host",
                                   "zone",
                                   "status",
                                   "state",
                                   "updated_at",
                                   "disabled_reason",
                                   "replication_status",
                                   "active_backend_id",
                                   "frozen"}));
  EXPECT_EQ(volume["replication_status"], "not-capable");
  EXPECT_TRUE(volume["active_backend_id"].is_null());
  EXPECT_EQ(volume["frozen"], false);
  EXPECT_EQ(ResponseHeader(response, "OpenStack-API-Version"), "volume 3.0");
}

TEST_F(ServicesApiTest, OsServicesShowsClusterFrom37) {
  Register("cinder-volume", "node1@lvm", "c1@lvm");
  Register("cinder-volume", "node2@lvm");

  std::map<std::string, json> at36 = ServicesByHost(Get(Path("os-services"), {}, "3.6"));
  EXPECT_FALSE(at36["node1@lvm"].contains("cluster"));

  std::map<std::string, json> at37 = ServicesByHost(Get(Path("os-services"), {}, "3.7"));
  EXPECT_EQ(at37["node1@lvm"]["cluster"], "c1@lvm");
  ASSERT_TRUE(at37["node2@lvm"].contains("cluster"));
  EXPECT_TRUE(at37["node2@lvm"]["cluster"].is_null());
}

TEST_F(ServicesApiTest, OsServicesStateFollowsHeartbeatsAndStop) {
  ServiceRegistry& one = Register("cinder-volume", "node1@lvm");
  ServiceRegistry& two = Register("cinder-volume", "node2@lvm");
  ServiceRegistry& three = Register("cinder-volume", "node3@lvm");

  clock_.Advance(std::chrono::seconds(50));
  ASSERT_TRUE(two.Beat());
  ASSERT_TRUE(three.Stop());
  clock_.Advance(std::chrono::seconds(11));  // node1's last beat is now 61 s old.

  std::map<std::string, json> services = ServicesByHost(Get(Path("os-services")));
  EXPECT_EQ(services["node1@lvm"]["state"], "down");
  EXPECT_EQ(services["node2@lvm"]["state"], "up");
  EXPECT_EQ(services["node2@lvm"]["updated_at"], "2026-01-01T00:00:50.000000");
  EXPECT_EQ(services["node3@lvm"]["state"], "down");  // Stopped: down at once.

  ASSERT_TRUE(one.Beat());
  EXPECT_EQ(ServicesByHost(Get(Path("os-services")))["node1@lvm"]["state"], "up");
}

TEST_F(ServicesApiTest, OsServicesShowsDisabledServices) {
  ServiceRegistry& one = Register("cinder-volume", "node1@lvm");
  auto disabled = store_.ConditionalUpdate(
      Table::kServices,
      one.service_id(),
      {{"disabled", Value(std::int64_t{1})}, {"disabled_reason", Value(std::string("maint"))}},
      {},
      {});
  ASSERT_TRUE(disabled && disabled->has_value());
  json service = ServicesByHost(Get(Path("os-services")))["node1@lvm"];
  EXPECT_EQ(service["status"], "disabled");
  EXPECT_EQ(service["disabled_reason"], "maint");
}

TEST_F(ServicesApiTest, OsServicesFiltersByBinaryAndHost) {
  Register("cinder-scheduler", "node1");
  Register("cinder-volume", "node1@lvm");
  Register("cinder-volume", "node1@ceph");
  Register("cinder-volume", "node10@lvm");

  std::map<std::string, json> volumes =
      ServicesByHost(Get(Path("os-services"), {{"binary", "cinder-volume"}}));
  EXPECT_EQ(volumes.size(), 3u);
  EXPECT_FALSE(volumes.contains("node1"));

  std::map<std::string, json> node1 = ServicesByHost(Get(Path("os-services"), {{"host", "node1"}}));
  EXPECT_EQ(node1.size(), 3u);
  EXPECT_FALSE(node1.contains("node10@lvm"));

  std::map<std::string, json> backend = ServicesByHost(
      Get(Path("os-services"), {{"host", "node1@lvm"}, {"binary", "cinder-volume"}}));
  ASSERT_EQ(backend.size(), 1u);
  EXPECT_TRUE(backend.contains("node1@lvm"));

  EXPECT_TRUE(ServicesByHost(Get(Path("os-services"), {{"binary", "cinder-backup"}})).empty());
}

TEST_F(ServicesApiTest, OsServicesWorksWithoutProjectIdAndRefusesOtherMethods) {
  Register("cinder-volume", "node1@lvm");
  EXPECT_EQ(ServicesByHost(Get("/v3/os-services")).size(), 1u);

  ports::HttpRequest post;
  post.method = "POST";
  post.path = Path("os-services");
  post.headers.emplace_back("X-Auth-Token", "admin:" + std::string(kProject));
  ExpectFault(api_.Handle(post), 405, "badMethod");
}

TEST_F(ServicesApiTest, NonAdminIsForbidden) {
  RequestContext context;
  context.user_id = "u";
  context.project_id = std::string(kProject);
  context.is_admin = false;
  context.version = Microversion{3, 7};
  ports::HttpRequest request;
  ExpectFault(services_.ListServices(context, request), 403, "forbidden");
  ExpectFault(services_.ListClusters(context, request, true), 403, "forbidden");
  ExpectFault(services_.ShowCluster(context, request, "c1@lvm"), 403, "forbidden");
}

// --- clusters ------------------------------------------------------------------------------------

TEST_F(ServicesApiTest, ClustersAreNotFoundBelow37) {
  Register("cinder-volume", "node1@lvm", "c1@lvm");
  ports::HttpResponse response = Get(Path("clusters"), {}, "3.6");
  ExpectFault(response, 404, "itemNotFound");
  EXPECT_EQ(ResponseHeader(response, "OpenStack-API-Version"), "volume 3.6");
  ExpectFault(Get(Path("clusters")), 404, "itemNotFound");
  ExpectFault(Get(Path("clusters/detail"), {}, "3.0"), 404, "itemNotFound");
  ExpectFault(Get(Path("clusters/c1@lvm"), {}, "3.6"), 404, "itemNotFound");
}

TEST_F(ServicesApiTest, ClustersSummaryAndDetailShapes) {
  Register("cinder-volume", "node1@lvm", "c1@lvm");
  clock_.Advance(std::chrono::seconds(5));
  Register("cinder-volume", "node2@lvm", "c1@lvm");

  ports::HttpResponse summary = Get(Path("clusters"), {}, "3.7");
  ASSERT_EQ(summary.status, 200) << summary.body;
  json clusters = Body(summary)["clusters"];
  ASSERT_EQ(clusters.size(), 1u);
  EXPECT_EQ(clusters[0],
            (json{{"name", "c1@lvm"},
                  {"binary", "cinder-volume"},
                  {"state", "up"},
                  {"status", "enabled"}}));

  ports::HttpResponse detail = Get(Path("clusters/detail"), {}, "3.7");
  ASSERT_EQ(detail.status, 200) << detail.body;
  json cluster = Body(detail)["clusters"][0];
  EXPECT_EQ(cluster,
            (json{{"name", "c1@lvm"},
                  {"binary", "cinder-volume"},
                  {"state", "up"},
                  {"status", "enabled"},
                  {"num_hosts", 2},
                  {"num_down_hosts", 0},
                  {"last_heartbeat", "2026-01-01T00:00:05.000000"},
                  {"created_at", "2026-01-01T00:00:00.000000"},
                  {"updated_at", ""},
                  {"disabled_reason", nullptr}}));
}

TEST_F(ServicesApiTest, ClusterIsUpWhileAnyMemberIsUp) {
  Register("cinder-volume", "node1@lvm", "c1@lvm");
  ServiceRegistry& two = Register("cinder-volume", "node2@lvm", "c1@lvm");
  clock_.Advance(std::chrono::seconds(30));
  ASSERT_TRUE(two.Beat());
  clock_.Advance(std::chrono::seconds(31));

  json cluster = Body(Get(Path("clusters/c1@lvm"), {}, "3.7"))["cluster"];
  EXPECT_EQ(cluster["state"], "up");
  EXPECT_EQ(cluster["num_hosts"], 2);
  EXPECT_EQ(cluster["num_down_hosts"], 1);
  EXPECT_EQ(cluster["last_heartbeat"], "2026-01-01T00:00:30.000000");

  ASSERT_TRUE(two.Stop());
  cluster = Body(Get(Path("clusters/c1@lvm"), {}, "3.7"))["cluster"];
  EXPECT_EQ(cluster["state"], "down");
  EXPECT_EQ(cluster["num_down_hosts"], 2);
  EXPECT_EQ(cluster["last_heartbeat"], "2026-01-01T00:00:00.000000");  // node1's, the latest.
}

TEST_F(ServicesApiTest, ShowClusterNeedsTheRightBinary) {
  Register("cinder-volume", "node1@lvm", "c1@lvm");
  ports::HttpResponse shown = Get(Path("clusters/c1@lvm"), {{"binary", "cinder-volume"}}, "3.7");
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["cluster"]["name"], "c1@lvm");
  EXPECT_EQ(Keys(Body(shown)["cluster"]).size(), 10u);

  ExpectFault(
      Get(Path("clusters/c1@lvm"), {{"binary", "cinder-backup"}}, "3.7"), 404, "itemNotFound");
  ExpectFault(Get(Path("clusters/nope@lvm"), {}, "3.7"), 404, "itemNotFound");
}

TEST_F(ServicesApiTest, ClusterFilters) {
  Register("cinder-volume", "node1@lvm", "c1@lvm");
  clock_.Advance(std::chrono::seconds(120));
  Register("cinder-volume", "node2@ceph", "c2@ceph");
  Register("cinder-volume", "node3@ceph", "c2@ceph");

  auto names = [this](std::vector<std::pair<std::string, std::string>> query) {
    ports::HttpResponse response = Get(Path("clusters"), std::move(query), "3.7");
    EXPECT_EQ(response.status, 200) << response.body;
    std::vector<std::string> result;
    json body = Body(response);
    for (const json& cluster : body["clusters"]) {
      result.push_back(cluster["name"].get<std::string>());
    }
    return result;
  };
  EXPECT_EQ(names({}), (std::vector<std::string>{"c1@lvm", "c2@ceph"}));
  EXPECT_EQ(names({{"is_up", "true"}}), (std::vector<std::string>{"c2@ceph"}));
  EXPECT_EQ(names({{"is_up", "False"}}), (std::vector<std::string>{"c1@lvm"}));
  EXPECT_EQ(names({{"num_hosts", "2"}}), (std::vector<std::string>{"c2@ceph"}));
  EXPECT_EQ(names({{"num_down_hosts", "1"}}), (std::vector<std::string>{"c1@lvm"}));
  EXPECT_EQ(names({{"name", "c2"}}), (std::vector<std::string>{"c2@ceph"}));
  EXPECT_EQ(names({{"disabled", "no"}}).size(), 2u);
  EXPECT_TRUE(names({{"disabled", "yes"}}).empty());
  EXPECT_TRUE(names({{"binary", "cinder-backup"}}).empty());

  ExpectFault(Get(Path("clusters"), {{"sort", "name"}}, "3.7"), 400, "badRequest");
  ExpectFault(Get(Path("clusters/detail"), {{"is_up", "maybe"}}, "3.7"), 400, "badRequest");
  ExpectFault(Get(Path("clusters"), {{"num_hosts", "-1"}}, "3.7"), 400, "badRequest");
}

}  // namespace
}  // namespace clinker::services
