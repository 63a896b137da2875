// Goal: check the admin information APIs and user messages as a client sees them through
// ApiService::Handle: PUT os-services/{enable,disable,disable-log-reason,freeze,thaw,...} with
// Cinder's bodies and errors (404 for an unknown host or binary, 400 for a null reason or an
// unknown host to freeze), os-hosts list and show, scheduler-stats/get_pools (plain and detail;
// a disabled back-end is not listed), capabilities/{host} (404 unknown service, 502 without a
// report), and messages (3.3+: list, show, delete; another project's is 404 to a non-admin).
//
// Method: ApiService over ServicesApi / MessagesApi over MemoryStateStore; service rows come from
// real ServiceRegistry instances, capability reports are applied to a CapabilityCache directly,
// and a FakeClock moves time.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/services/api_service.h"
#include "clinker/services/capability_cache.h"
#include "clinker/services/messages_api.h"
#include "clinker/services/service_registry.h"
#include "clinker/services/services_api.h"

#include "support/fake_clock.h"

namespace clinker::services {
namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStateStore;
using nlohmann::json;
using ports::Table;
using test_support::FakeClock;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kOtherProject = "fedcba9876543210fedcba9876543210";

std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  for (const auto& item : object.items()) {
    keys.insert(item.key());
  }
  return keys;
}

ServicesApiOptions Options(const CapabilityCache* cache) {
  ServicesApiOptions options;
  options.capabilities = cache;
  return options;
}

class AdminApiTest : public ::testing::Test {
 protected:
  AdminApiTest()
      : broker_(std::make_shared<MemoryBroker>()),
        queue_(broker_),
        listener_(broker_),
        cache_(listener_, clock_),
        volumes_(store_, queue_, clock_, VolumesApiOptions{}),
        snapshots_(store_, queue_, clock_, SnapshotsApiOptions{}),
        attachments_(store_, queue_, clock_, AttachmentsApiOptions{}),
        backups_(store_, queue_, clock_, BackupsApiOptions{}),
        services_(store_, clock_, Options(&cache_)),
        messages_(store_, clock_),
        types_(store_, clock_, TypesApiOptions{}),
        api_(volumes_, snapshots_, attachments_, backups_, services_, types_, {}, &messages_) {}

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

  void Report(std::string_view backend) {
    CapabilityReport report;
    report.backend = std::string(backend);
    report.host = std::string(backend);
    report.total_capacity_gib = 100;
    report.free_capacity_gib = 60;
    report.reported_at = FormatTimestamp(clock_.WallNow());
    report.volume_backend_name = "file";
    report.vendor_name = "Clinker";
    report.driver_version = "1.0.0";
    report.storage_protocol = "file";
    cache_.Apply(report);
  }

  ports::HttpResponse Call(std::string method,
                           const std::string& path,
                           std::string body = "",
                           std::string_view version = "",
                           std::vector<std::pair<std::string, std::string>> query = {},
                           std::string_view token = "") {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = path;
    request.body = std::move(body);
    request.query = std::move(query);
    request.base_url = "http://localhost:8776";
    request.headers.emplace_back(
        "X-Auth-Token", token.empty() ? "admin:" + std::string(kProject) : std::string(token));
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

  static void ExpectFault(const ports::HttpResponse& response,
                          int status,
                          std::string_view name,
                          std::string_view message) {
    EXPECT_EQ(response.status, status) << response.body;
    json body = json::parse(response.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << response.body;
    ASSERT_TRUE(body.contains(name)) << response.body;
    EXPECT_EQ(body[std::string(name)].value("message", ""), message);
  }

  ports::Row Service(const std::string& id) {
    auto row = store_.Get(Table::kServices, id);
    EXPECT_TRUE(row.has_value());
    return row ? *row : ports::Row{};
  }

  void InsertVolume(const std::string& id,
                    std::string_view project,
                    const std::string& host,
                    std::int64_t size) {
    ASSERT_TRUE(store_.Insert(Table::kVolumes,
                              {{"id", id},
                               {"project_id", std::string(project)},
                               {"user_id", "user"},
                               {"status", "available"},
                               {"size_gib", size},
                               {"host", host},
                               {"created_at", FormatTimestamp(clock_.WallNow())}}));
  }

  MemoryStateStore store_;
  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue queue_;
  MemoryJobQueue listener_;
  CapabilityCache cache_;
  VolumesApi volumes_;
  SnapshotsApi snapshots_;
  AttachmentsApi attachments_;
  BackupsApi backups_;
  ServicesApi services_;
  MessagesApi messages_;
  TypesApi types_;
  ApiService api_;
  std::vector<std::unique_ptr<ServiceRegistry>> registries_;  // Last: stop before the store.
};

std::int64_t IntegerColumn(const ports::Row& row, std::string_view column) {
  auto found = row.find(column);
  return found != row.end() && std::holds_alternative<std::int64_t>(found->second)
             ? std::get<std::int64_t>(found->second)
             : -1;
}

// --- os-services actions -------------------------------------------------------------------------

TEST_F(AdminApiTest, DisableEnableAndDisableLogReason) {
  ServiceRegistry& volume = Register("cinder-volume", "node1@file");

  ports::HttpResponse disabled = Call(
      "PUT", Path("os-services/disable"), R"({"host": "node1@file", "binary": "cinder-volume"})");
  ASSERT_EQ(disabled.status, 200) << disabled.body;
  EXPECT_EQ(Body(disabled),
            (json{{"disabled", true},
                  {"host", "node1@file"},
                  {"service", ""},
                  {"binary", "cinder-volume"},
                  {"status", "disabled"}}));
  EXPECT_EQ(IntegerColumn(Service(volume.service_id()), "disabled"), 1);

  // "node1" names node1's back-ends too, as Cinder's host filter; "service" is the old key.
  ports::HttpResponse enabled =
      Call("PUT", Path("os-services/enable"), R"({"host": "node1", "service": "cinder-volume"})");
  ASSERT_EQ(enabled.status, 200) << enabled.body;
  EXPECT_EQ(Body(enabled),
            (json{{"disabled", false},
                  {"host", "node1"},
                  {"service", "cinder-volume"},
                  {"binary", ""},
                  {"status", "enabled"}}));
  EXPECT_EQ(IntegerColumn(Service(volume.service_id()), "disabled"), 0);

  ports::HttpResponse reason = Call("PUT",
                                    Path("os-services/disable-log-reason"),
                                    R"({"host": "node1@file", "binary": "cinder-volume",
                                        "disabled_reason": "maintenance"})");
  ASSERT_EQ(reason.status, 200) << reason.body;
  EXPECT_EQ(Body(reason)["disabled_reason"], "maintenance");
  EXPECT_EQ(Body(reason)["status"], "disabled");

  json listed = Body(Call("GET", Path("os-services")))["services"][0];
  EXPECT_EQ(listed["status"], "disabled");
  EXPECT_EQ(listed["disabled_reason"], "maintenance");
}

TEST_F(AdminApiTest, ServiceActionErrorsAreCinders) {
  Register("cinder-volume", "node1@file");
  ExpectFault(Call("PUT",
                   Path("os-services/enable"),
                   R"({"host": "invalid_host", "binary": "cinder-volume"})"),
              404,
              "itemNotFound",
              "Service cinder-volume could not be found on host invalid_host.");
  ExpectFault(Call("PUT",
                   Path("os-services/disable"),
                   R"({"host": "node1@file", "binary": "invalid_binary"})"),
              404,
              "itemNotFound",
              "Service invalid_binary could not be found on host node1@file.");
  ExpectFault(Call("PUT",
                   Path("os-services/disable-log-reason"),
                   R"({"host": "node1@file", "binary": "cinder-volume",
                       "disabled_reason": null})"),
              400,
              "badRequest",
              "Invalid input for field/attribute disabled_reason. Value: None. None is not of "
              "type 'string'");
  ExpectFault(Call("PUT", Path("os-services/disable"), R"({"host": "node1@file"})"),
              400,
              "badRequest",
              "{'host': 'node1@file'} is not valid under any of the given schemas");
  ExpectFault(Call("PUT",
                   Path("os-services/disable"),
                   R"({"host": "node1@file", "binary": "cinder-volume", "x": 1})"),
              400,
              "badRequest",
              "Additional properties are not allowed ('x' was unexpected)");
  ExpectFault(Call("PUT", Path("os-services/disable"), R"({"binary": "cinder-volume"})"),
              400,
              "badRequest",
              "Invalid input received: Host field is missing.");
  ExpectFault(Call("PUT", Path("os-services/reboot"), "{}"),
              400,
              "badRequest",
              "Invalid input received: Unknown action");
  // Replication is not available: failover is refused as Cinder refuses a not-capable back-end.
  EXPECT_EQ(Call("PUT", Path("os-services/failover_host"), R"({"host": "node1@file"})").status,
            400);
}

TEST_F(AdminApiTest, FreezeAndThaw) {
  ServiceRegistry& volume = Register("cinder-volume", "node1@file");
  ExpectFault(Call("PUT", Path("os-services/freeze"), R"({"host": "invalid_host"})"),
              400,
              "badRequest",
              "No service found with host=invalid_host");
  ExpectFault(Call("PUT", Path("os-services/thaw"), R"({"host": "invalid_host"})"),
              400,
              "badRequest",
              "No service found with host=invalid_host");

  ports::HttpResponse frozen = Call("PUT", Path("os-services/freeze"), R"({"host": "node1"})");
  EXPECT_EQ(frozen.status, 200) << frozen.body;
  EXPECT_TRUE(frozen.body.empty());
  ports::Row row = Service(volume.service_id());
  EXPECT_EQ(IntegerColumn(row, "frozen"), 1);
  EXPECT_EQ(IntegerColumn(row, "disabled"), 1);
  json listed = Body(Call("GET", Path("os-services")))["services"][0];
  EXPECT_EQ(listed["frozen"], true);
  EXPECT_EQ(listed["disabled_reason"], "frozen");

  ExpectFault(Call("PUT", Path("os-services/freeze"), R"({"host": "node1"})"),
              400,
              "badRequest",
              "Invalid input received: No service could be changed: frozen in ['node1@file'] "
              "must be False to failover.");
  // From 3.26 the body names a host or a cluster, exactly one.
  ExpectFault(Call("PUT", Path("os-services/thaw"), "{}", "3.26"),
              400,
              "badRequest",
              "Invalid input received: One and only one of cluster and host must be set.");

  EXPECT_EQ(Call("PUT", Path("os-services/thaw"), R"({"host": "node1@file"})").status, 200);
  row = Service(volume.service_id());
  EXPECT_EQ(IntegerColumn(row, "frozen"), 0);
  EXPECT_EQ(IntegerColumn(row, "disabled"), 0);
}

TEST_F(AdminApiTest, ServiceActionsNeedAdmin) {
  Register("cinder-volume", "node1@file");
  // Under noauth every caller is admin; a policy narrowing is tested in api_policy_test. Here the
  // handler's own check: a non-admin context cannot reach it through ApiService, so call it.
  RequestContext member;
  member.project_id = std::string(kProject);
  member.is_admin = false;
  ports::HttpRequest request;
  request.body = R"({"host": "node1@file", "binary": "cinder-volume"})";
  EXPECT_EQ(services_.UpdateService(member, request, "disable").status, 403);
  EXPECT_EQ(services_.GetPools(member, request).status, 403);
  EXPECT_EQ(services_.ListHosts(member, request).status, 403);
}

// --- os-hosts ------------------------------------------------------------------------------------

TEST_F(AdminApiTest, HostsListAndShow) {
  Register("cinder-scheduler", "node1");
  Register("cinder-volume", "node1@file");
  ServiceRegistry& other = Register("cinder-volume", "node2@file");
  ASSERT_TRUE(store_.ConditionalUpdate(
      Table::kServices, other.service_id(), {{"disabled", std::int64_t{1}}}, {}, {}));

  ports::HttpResponse listed = Call("GET", Path("os-hosts"));
  ASSERT_EQ(listed.status, 200) << listed.body;
  json hosts = Body(listed)["hosts"];
  ASSERT_EQ(hosts.size(), 2u) << "disabled services are not listed";
  EXPECT_EQ(Keys(hosts[0]),
            (std::set<std::string>{
                "host_name", "service", "zone", "service-status", "service-state", "last-update"}));
  EXPECT_EQ(hosts[0]["host_name"], "node1");
  EXPECT_EQ(hosts[0]["service"], "cinder-scheduler");
  EXPECT_EQ(hosts[0]["service-status"], "available");
  EXPECT_EQ(hosts[0]["service-state"], "enabled");
  EXPECT_EQ(hosts[1]["host_name"], "node1@file");
  EXPECT_EQ(Body(Call("GET", Path("os-hosts"), "", "", {{"zone", "elsewhere"}}))["hosts"].size(),
            0u);

  InsertVolume("v1", kProject, "node1@file#default", 2);
  InsertVolume("v2", kProject, "node1@file#default", 3);
  InsertVolume("v3", kOtherProject, "node1@file#default", 5);
  InsertVolume("v4", kProject, "node2@file#default", 7);
  ASSERT_TRUE(store_.Insert(Table::kSnapshots,
                            {{"id", "s1"},
                             {"project_id", std::string(kProject)},
                             {"user_id", "user"},
                             {"volume_id", "v1"},
                             {"status", "available"},
                             {"size_gib", std::int64_t{2}},
                             {"created_at", FormatTimestamp(clock_.WallNow())}}));

  ports::HttpResponse shown = Call("GET", Path("os-hosts/node1@file"));
  ASSERT_EQ(shown.status, 200) << shown.body;
  json resources = Body(shown)["host"];
  ASSERT_EQ(resources.size(), 3u);
  EXPECT_EQ(resources[0]["resource"],
            (json{{"host", "node1@file"},
                  {"project", "(total)"},
                  {"volume_count", "3"},
                  {"total_volume_gb", "10"},
                  {"snapshot_count", "1"},
                  {"total_snapshot_gb", "2"}}));
  EXPECT_EQ(resources[1]["resource"]["project"], std::string(kProject));
  EXPECT_EQ(resources[1]["resource"]["volume_count"], "2");
  EXPECT_EQ(resources[1]["resource"]["total_volume_gb"], "5");
  EXPECT_EQ(resources[2]["resource"]["project"], std::string(kOtherProject));
  EXPECT_EQ(resources[2]["resource"]["snapshot_count"], "0");

  ExpectFault(Call("GET", Path("os-hosts/nowhere")),
              404,
              "itemNotFound",
              "Service cinder-volume could not be found on host nowhere.");
}

// --- scheduler-stats and capabilities ------------------------------------------------------------

TEST_F(AdminApiTest, PoolsOfReportingEnabledBackEnds) {
  ServiceRegistry& one = Register("cinder-volume", "node1@file");
  Register("cinder-volume", "node2@file");
  Report("node1@file");
  Report("node2@file");
  Report("node3@file");  // No service row: not listed.
  // What the schedulers reserved on node1's pool.
  ASSERT_TRUE(store_.InsertWithUsage(
      Table::kVolumes,
      {{"id", "v1"},
       {"project_id", "p"},
       {"user_id", "u"},
       {"status", std::string("available")},
       {"host", std::string("node1@file#default")},
       {"capacity_reserved_gib", std::int64_t{7}},
       {"created_at", std::string("2026-01-01T00:00:00.000000")}},
      {{"", "node1@file#default", 7, -1, ports::UsageChange::Counter::kPoolCapacity}}));

  ports::HttpResponse plain = Call("GET", Path("scheduler-stats/get_pools"));
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(
      Body(plain),
      (json{{"pools", {{{"name", "node1@file#default"}}, {{"name", "node2@file#default"}}}}}));

  ports::HttpResponse detail =
      Call("GET", Path("scheduler-stats/get_pools"), "", "", {{"detail", "True"}});
  ASSERT_EQ(detail.status, 200) << detail.body;
  json capabilities = Body(detail)["pools"][0]["capabilities"];
  EXPECT_EQ(capabilities["vendor_name"], "Clinker");
  EXPECT_EQ(capabilities["volume_backend_name"], "file");
  EXPECT_EQ(capabilities["storage_protocol"], "file");
  EXPECT_EQ(capabilities["total_capacity_gb"], 100);
  EXPECT_EQ(capabilities["free_capacity_gb"], 60);
  EXPECT_EQ(capabilities["pool_name"], "default");
  EXPECT_EQ(capabilities["allocated_capacity_gb"], 7);
  EXPECT_EQ(capabilities["provisioned_capacity_gb"], 7);
  EXPECT_EQ(Body(detail)["pools"][1]["capabilities"]["allocated_capacity_gb"], 0);

  // A disabled back-end leaves the scheduler's view, as in Cinder.
  ASSERT_TRUE(store_.ConditionalUpdate(
      Table::kServices, one.service_id(), {{"disabled", std::int64_t{1}}}, {}, {}));
  EXPECT_EQ(Body(Call("GET", Path("scheduler-stats/get_pools")))["pools"].size(), 1u);

  // So does one whose last report is too old.
  clock_.Advance(std::chrono::seconds(31));
  EXPECT_EQ(Body(Call("GET", Path("scheduler-stats/get_pools")))["pools"].size(), 0u);
}

TEST_F(AdminApiTest, CapabilitiesOfABackEnd) {
  Register("cinder-volume", "node1@file");
  Register("cinder-volume", "node2@file", "cluster1@file");
  ExpectFault(Call("GET", Path("capabilities/node1@file")),
              502,
              "computeFault",
              "Timeout while requesting capabilities from backend node1@file.");
  Report("node1@file");
  Report("cluster1@file");

  ports::HttpResponse shown = Call("GET", Path("capabilities/node1@file"));
  ASSERT_EQ(shown.status, 200) << shown.body;
  json body = Body(shown);
  EXPECT_EQ(Keys(body),
            (std::set<std::string>{"namespace",
                                   "vendor_name",
                                   "volume_backend_name",
                                   "pool_name",
                                   "driver_version",
                                   "storage_protocol",
                                   "display_name",
                                   "description",
                                   "visibility",
                                   "replication_targets",
                                   "properties"}));
  EXPECT_EQ(body["namespace"], "OS::Storage::Capabilities::node1@file");
  EXPECT_EQ(body["vendor_name"], "Clinker");
  EXPECT_EQ(body["driver_version"], "1.0.0");
  EXPECT_EQ(body["properties"]["thin_provisioning"]["type"], "boolean");
  EXPECT_EQ(body["replication_targets"], json::array());

  // A clustered service answers for its cluster.
  EXPECT_EQ(Body(Call("GET", Path("capabilities/node2@file")))["namespace"],
            "OS::Storage::Capabilities::cluster1@file");
  EXPECT_EQ(Body(Call("GET", Path("capabilities/cluster1@file")))["namespace"],
            "OS::Storage::Capabilities::cluster1@file");
  ExpectFault(Call("GET", Path("capabilities/nowhere")),
              404,
              "itemNotFound",
              "Can't find service: nowhere");
}

// --- messages ------------------------------------------------------------------------------------

TEST_F(AdminApiTest, MessagesListShowDelete) {
  UserMessage failed;
  failed.project_id = std::string(kProject);
  failed.resource_uuid = "11111111-2222-3333-4444-555555555555";
  failed.request_id = "req-1";
  failed.action_id = message_field::kActionScheduleAllocateVolume;
  failed.detail_id = message_field::kDetailNoBackendAvailable;
  ASSERT_TRUE(RecordUserMessage(store_, clock_, failed));
  UserMessage other = failed;
  other.project_id = std::string(kOtherProject);
  clock_.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(RecordUserMessage(store_, clock_, other));

  // Below 3.3 there is no such resource.
  EXPECT_EQ(Call("GET", Path("messages"), "", "3.2").status, 404);

  ports::HttpResponse listed = Call("GET", Path("messages"), "", "3.3");
  ASSERT_EQ(listed.status, 200) << listed.body;
  json messages = Body(listed)["messages"];
  ASSERT_EQ(messages.size(), 2u) << "an admin sees every project's";
  EXPECT_EQ(messages[1]["request_id"], "req-1");  // Newest first.
  const json& message = messages[1];
  EXPECT_EQ(Keys(message),
            (std::set<std::string>{"id",
                                   "event_id",
                                   "user_message",
                                   "message_level",
                                   "created_at",
                                   "guaranteed_until",
                                   "request_id",
                                   "links",
                                   "resource_type",
                                   "resource_uuid"}));
  EXPECT_EQ(message["event_id"], "VOLUME_VOLUME_001_003");
  EXPECT_EQ(message["user_message"],
            "schedule allocate volume:Could not find any available weighted backend.");
  EXPECT_EQ(message["message_level"], "ERROR");
  EXPECT_EQ(message["resource_type"], "VOLUME");
  EXPECT_EQ(message["created_at"], "2026-01-01T00:00:00.000000");
  EXPECT_EQ(message["guaranteed_until"], "2026-01-31T00:00:00.000000");
  std::string id = message["id"];

  ports::HttpResponse shown = Call("GET", Path("messages/" + id), "", "3.3");
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["message"], message);

  // Another project's member sees only its own.
  std::string member = "member:" + std::string(kOtherProject);
  std::string other_path = "/v3/" + std::string(kOtherProject) + "/messages";
  ports::HttpRequest request;
  RequestContext context;
  context.project_id = std::string(kOtherProject);
  context.version = Microversion{3, 3};
  EXPECT_EQ(Body(messages_.List(context, request))["messages"].size(), 1u);
  EXPECT_EQ(messages_.Show(context, id).status, 404);
  EXPECT_EQ(messages_.Delete(context, id).status, 404);

  EXPECT_EQ(Call("DELETE", Path("messages/" + id), "", "3.3").status, 204);
  ExpectFault(Call("GET", Path("messages/" + id), "", "3.3"),
              404,
              "itemNotFound",
              "Message " + id + " could not be found.");
  EXPECT_EQ(Call("DELETE", Path("messages/" + id), "", "3.3").status, 404);
  EXPECT_EQ(Body(Call("GET", Path("messages"), "", "3.3"))["messages"].size(), 1u);
}

TEST_F(AdminApiTest, MessagesPaginateFrom35) {
  UserMessage message;
  message.project_id = std::string(kProject);
  message.action_id = message_field::kActionScheduleAllocateVolume;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(RecordUserMessage(store_, clock_, message));
    clock_.Advance(std::chrono::seconds(1));
  }
  json page = Body(Call("GET", Path("messages"), "", "3.5", {{"limit", "2"}}));
  ASSERT_EQ(page["messages"].size(), 2u);
  ASSERT_TRUE(page.contains("messages_links"));
  EXPECT_EQ(page["messages"][0]["user_message"],
            "schedule allocate volume:An unknown error occurred.");
  json rest = Body(Call(
      "GET", Path("messages"), "", "3.5", {{"limit", "2"}, {"marker", page["messages"][1]["id"]}}));
  EXPECT_EQ(rest["messages"].size(), 1u);
  // At 3.3 the parameters are ignored.
  EXPECT_EQ(Body(Call("GET", Path("messages"), "", "3.3", {{"limit", "2"}}))["messages"].size(),
            3u);
}

}  // namespace
}  // namespace clinker::services
