// Goal: check Cinder's quota APIs and quota enforcement as a client sees them through
// ApiService::Handle: os-quota-sets show (plain and ?usage=true), defaults, update (validation:
// integers >= -1, unknown keys, a limit below what is in use; the answer has no id), delete (back
// to the defaults); os-quota-class-sets (the class "default" sets every project's defaults);
// limits; the member policy (its own project only); and the 413 answers with Cinder's messages
// for volumes, gigabytes, per-type and per-volume limits, snapshots and extends, with the
// counters moving only with the writes they count.
//
// Method: ApiService over the resource APIs on MemoryStateStore and a memory job queue (nothing
// consumes the jobs; a volume is made "available" on a back-end by writing its row, as a volume
// node would). Non-admin calls go to QuotasApi directly with a member's RequestContext.
#include "clinker/services/quotas_api.h"

#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/services/api_service.h"
#include "clinker/services/quotas.h"

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

class QuotasApiTest : public ::testing::Test {
 protected:
  QuotasApiTest()
      : broker_(std::make_shared<MemoryBroker>()),
        queue_(broker_),
        volumes_(store_, queue_, clock_, VolumesApiOptions{}),
        snapshots_(store_, queue_, clock_, SnapshotsApiOptions{}),
        attachments_(store_, queue_, clock_, AttachmentsApiOptions{}),
        backups_(store_, queue_, clock_, BackupsApiOptions{}),
        services_(store_, clock_, ServicesApiOptions{}),
        types_(store_, clock_, TypesApiOptions{}),
        quota_service_(store_, QuotaOptions{}),
        quotas_(quota_service_, clock_),
        api_(volumes_, snapshots_, attachments_, backups_, services_, types_, {}) {
    api_.ServeQuotas(&quotas_);
  }

  ports::HttpResponse Call(std::string method,
                           const std::string& path,
                           std::string body = "",
                           std::vector<std::pair<std::string, std::string>> query = {},
                           std::string_view version = "") {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = path;
    request.body = std::move(body);
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

  ports::HttpResponse SetQuota(const json& set, std::string_view project = kProject) {
    return Call(
        "PUT", Path("os-quota-sets/" + std::string(project)), json{{"quota_set", set}}.dump());
  }

  json ShowUsage(std::string_view project = kProject) {
    auto shown =
        Call("GET", Path("os-quota-sets/" + std::string(project)), "", {{"usage", "true"}});
    EXPECT_EQ(shown.status, 200) << shown.body;
    return Body(shown)["quota_set"];
  }

  // Creates a volume through the API; its id, or "" with the response kept in last_.
  std::string CreateVolume(std::int64_t size, const std::string& type = "") {
    json spec = {{"size", size}};
    if (!type.empty()) {
      spec["volume_type"] = type;
    }
    last_ = Call("POST", Path("volumes"), json{{"volume", spec}}.dump());
    if (last_.status != 202) {
      return "";
    }
    return Body(last_)["volume"]["id"].get<std::string>();
  }

  // What a volume node does when the create is done.
  void MakeAvailable(const std::string& volume_id) {
    auto done = store_.ConditionalUpdate(
        Table::kVolumes,
        volume_id,
        {{"status", std::string("available")}, {"host", std::string("node@file#file")}},
        {},
        {});
    ASSERT_TRUE(done && done->has_value());
  }

  std::int64_t InUse(const std::string& resource, std::string_view project = kProject) {
    return ShowUsage(project)[resource]["in_use"].get<std::int64_t>();
  }

  FakeClock clock_;
  MemoryStateStore store_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue queue_;
  VolumesApi volumes_;
  SnapshotsApi snapshots_;
  AttachmentsApi attachments_;
  BackupsApi backups_;
  ServicesApi services_;
  TypesApi types_;
  QuotaService quota_service_;
  QuotasApi quotas_;
  ApiService api_;
  ports::HttpResponse last_;
};

constexpr std::string_view kFixedKeys[] = {"volumes",
                                           "snapshots",
                                           "gigabytes",
                                           "backups",
                                           "backup_gigabytes",
                                           "groups",
                                           "per_volume_gigabytes"};

TEST_F(QuotasApiTest, ShowGivesCindersDefaultsWithTheProjectId) {
  auto shown = Call("GET", Path("os-quota-sets/" + std::string(kOtherProject)));
  ASSERT_EQ(shown.status, 200) << shown.body;
  json set = Body(shown)["quota_set"];
  EXPECT_EQ(set["id"], std::string(kOtherProject));
  for (std::string_view key : kFixedKeys) {
    EXPECT_TRUE(set.contains(std::string(key))) << key;
  }
  EXPECT_EQ(set["volumes"], 10);
  EXPECT_EQ(set["snapshots"], 10);
  EXPECT_EQ(set["gigabytes"], 1000);
  EXPECT_EQ(set["backups"], 10);
  EXPECT_EQ(set["backup_gigabytes"], 1000);
  EXPECT_EQ(set["groups"], 10);
  EXPECT_EQ(set["per_volume_gigabytes"], -1);

  auto defaults = Call("GET", Path("os-quota-sets/" + std::string(kOtherProject) + "/defaults"));
  ASSERT_EQ(defaults.status, 200) << defaults.body;
  EXPECT_EQ(Body(defaults)["quota_set"]["volumes"], 10);
  EXPECT_EQ(Body(defaults)["quota_set"]["id"], std::string(kOtherProject));
}

TEST_F(QuotasApiTest, PerTypeKeysAppearForEveryTypeUnlimitedByDefault) {
  ASSERT_FALSE(CreateVolume(1).empty()) << last_.body;  // Creates the default type.
  json set = Body(Call("GET", Path("os-quota-sets/" + std::string(kProject))))["quota_set"];
  EXPECT_EQ(set["volumes___DEFAULT__"], -1);
  EXPECT_EQ(set["gigabytes___DEFAULT__"], -1);
  EXPECT_EQ(set["snapshots___DEFAULT__"], -1);
}

TEST_F(QuotasApiTest, UpdateSetsLimitsAndAnswersThemWithoutId) {
  auto updated = SetQuota({{"volumes", 11}, {"gigabytes", "1009"}, {"per_volume_gigabytes", -1}});
  ASSERT_EQ(updated.status, 200) << updated.body;
  json set = Body(updated)["quota_set"];
  EXPECT_FALSE(set.contains("id"));
  EXPECT_EQ(set["volumes"], 11);
  EXPECT_EQ(set["gigabytes"], 1009);
  EXPECT_EQ(set["snapshots"], 10);
  // Only this project's.
  json other = Body(Call("GET", Path("os-quota-sets/" + std::string(kOtherProject))))["quota_set"];
  EXPECT_EQ(other["volumes"], 10);
}

TEST_F(QuotasApiTest, UpdateRefusesUnknownKeysBadValuesAndLimitsBelowUsage) {
  ExpectFault(SetQuota({{"volumes", 5}, {"bogus", 1}}),
              400,
              "badRequest",
              "Invalid input received: Bad key(s) in quota set: bogus");
  ExpectFault(SetQuota({{"volumes", -2}}), 400, "badRequest", "volumes must be >= -1");
  ExpectFault(SetQuota({{"volumes", "ten"}}), 400, "badRequest", "volumes must be an integer.");
  ExpectFault(
      SetQuota({{"volumes", 2147483648LL}}), 400, "badRequest", "volumes must be <= 2147483647");
  // Nothing of a refused update was written.
  EXPECT_EQ(
      Body(Call("GET", Path("os-quota-sets/" + std::string(kProject))))["quota_set"]["volumes"],
      10);

  ASSERT_FALSE(CreateVolume(3).empty()) << last_.body;
  ASSERT_FALSE(CreateVolume(3).empty()) << last_.body;
  ExpectFault(SetQuota({{"volumes", 1}}),
              400,
              "badRequest",
              "Quota volumes limit must be equal or greater than existing resources. Current "
              "usage is 2 and the requested limit is 1.");
  ExpectFault(SetQuota({{"gigabytes", 5}}),
              400,
              "badRequest",
              "Quota gigabytes limit must be equal or greater than existing resources. Current "
              "usage is 6 and the requested limit is 5.");
  EXPECT_EQ(SetQuota({{"volumes", 2}, {"gigabytes", -1}}).status, 200);
  // tenant_id and id are Cinder's non-quota keys: ignored.
  EXPECT_EQ(SetQuota({{"id", "x"}, {"volumes", 3}}).status, 200);
}

TEST_F(QuotasApiTest, DeleteGoesBackToTheDefaults) {
  ASSERT_EQ(SetQuota({{"volumes", 15}}).status, 200);
  auto deleted = Call("DELETE", Path("os-quota-sets/" + std::string(kProject)));
  EXPECT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(
      Body(Call("GET", Path("os-quota-sets/" + std::string(kProject))))["quota_set"]["volumes"],
      10);
  // Set again after a delete: the row comes back.
  ASSERT_EQ(SetQuota({{"volumes", 16}}).status, 200);
  EXPECT_EQ(
      Body(Call("GET", Path("os-quota-sets/" + std::string(kProject))))["quota_set"]["volumes"],
      16);
}

TEST_F(QuotasApiTest, TheDefaultClassSetsEveryProjectsDefaults) {
  auto shown = Call("GET", Path("os-quota-class-sets/default"));
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["quota_class_set"]["id"], "default");
  EXPECT_EQ(Body(shown)["quota_class_set"]["volumes"], 10);

  auto updated = Call("PUT",
                      Path("os-quota-class-sets/default"),
                      json{{"quota_class_set", {{"volumes", 21}, {"backups", 3}}}}.dump());
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_FALSE(Body(updated)["quota_class_set"].contains("id"));
  EXPECT_EQ(Body(updated)["quota_class_set"]["volumes"], 21);
  EXPECT_EQ(Body(Call("GET",
                      Path("os-quota-sets/" + std::string(kOtherProject) +
                           "/defaults")))["quota_set"]["volumes"],
            21);
  // A project's own limit still wins over the class.
  ASSERT_EQ(SetQuota({{"volumes", 4}}).status, 200);
  EXPECT_EQ(
      Body(Call("GET", Path("os-quota-sets/" + std::string(kProject))))["quota_set"]["volumes"], 4);
  EXPECT_EQ(Body(Call("GET",
                      Path("os-quota-sets/" + std::string(kOtherProject))))["quota_set"]["backups"],
            3);
  ExpectFault(Call("PUT",
                   Path("os-quota-class-sets/default"),
                   json{{"quota_class_set", {{"nope", 1}}}}.dump()),
              400,
              "badRequest",
              "Invalid input received: Bad key(s) in quota class set: nope");
}

TEST_F(QuotasApiTest, UsageShowsLimitInUseAndReservedPerResource) {
  json before = ShowUsage();
  EXPECT_EQ(Keys(before["volumes"]), (std::set<std::string>{"limit", "in_use", "reserved"}));
  EXPECT_EQ(before["volumes"]["in_use"], 0);
  EXPECT_EQ(before["id"], std::string(kProject));
  ASSERT_FALSE(CreateVolume(3).empty()) << last_.body;
  json after = ShowUsage();
  EXPECT_EQ(after["volumes"]["in_use"], 1);
  EXPECT_EQ(after["gigabytes"]["in_use"], 3);
  EXPECT_EQ(after["volumes___DEFAULT__"]["in_use"], 1);
  EXPECT_EQ(after["gigabytes___DEFAULT__"]["in_use"], 3);
  EXPECT_EQ(after["volumes"]["reserved"], 0);
  EXPECT_EQ(after["volumes"]["limit"], 10);
}

TEST_F(QuotasApiTest, LimitsShowMaximaAndUse) {
  ASSERT_FALSE(CreateVolume(2).empty()) << last_.body;
  auto limits = Call("GET", Path("limits"));
  ASSERT_EQ(limits.status, 200) << limits.body;
  json body = Body(limits)["limits"];
  EXPECT_EQ(body["rate"], json::array());
  json absolute = body["absolute"];
  EXPECT_EQ(Keys(absolute),
            (std::set<std::string>{"maxTotalVolumes",
                                   "maxTotalVolumeGigabytes",
                                   "maxTotalSnapshots",
                                   "maxTotalBackups",
                                   "maxTotalBackupGigabytes",
                                   "totalVolumesUsed",
                                   "totalGigabytesUsed",
                                   "totalSnapshotsUsed",
                                   "totalBackupsUsed",
                                   "totalBackupGigabytesUsed"}));
  EXPECT_EQ(absolute["maxTotalVolumes"], 10);
  EXPECT_EQ(absolute["totalVolumesUsed"], 1);
  EXPECT_EQ(absolute["totalGigabytesUsed"], 2);
  // An admin names another project from 3.39; before, the parameter is ignored.
  auto other =
      Call("GET", Path("limits"), "", {{"project_id", std::string(kOtherProject)}}, "3.39");
  EXPECT_EQ(Body(other)["limits"]["absolute"]["totalVolumesUsed"], 0);
  auto ignored =
      Call("GET", Path("limits"), "", {{"project_id", std::string(kOtherProject)}}, "3.38");
  EXPECT_EQ(Body(ignored)["limits"]["absolute"]["totalVolumesUsed"], 1);
}

TEST_F(QuotasApiTest, AMemberShowsItsOwnProjectsQuotaOnly) {
  RequestContext member;
  member.user_id = "alice";
  member.project_id = std::string(kOtherProject);
  member.roles = {"member", "reader"};
  ports::HttpRequest request;
  EXPECT_EQ(quotas_.Show(member, request, kOtherProject).status, 200);
  ExpectFault(quotas_.Show(member, request, kProject),
              403,
              "forbidden",
              "Policy doesn't allow volume_extension:quotas:show to be performed.");
  ExpectFault(quotas_.Update(member, request, kOtherProject),
              403,
              "forbidden",
              "Policy doesn't allow volume_extension:quotas:update to be performed.");
  EXPECT_EQ(quotas_.ShowClass(member, "default").status, 403);
}

TEST_F(QuotasApiTest, VolumeCreatesPastTheLimitsAre413WithCindersMessages) {
  ASSERT_EQ(SetQuota({{"volumes", 1}, {"gigabytes", -1}}).status, 200);
  ASSERT_FALSE(CreateVolume(1).empty()) << last_.body;
  EXPECT_TRUE(CreateVolume(1).empty());
  ExpectFault(last_,
              413,
              "overLimit",
              "Maximum number of volumes allowed (1) exceeded for quota 'volumes'.");
  EXPECT_EQ(InUse("volumes"), 1);

  ASSERT_EQ(SetQuota({{"volumes", -1}, {"gigabytes", 4}}).status, 200);
  EXPECT_TRUE(CreateVolume(4).empty());
  ExpectFault(last_,
              413,
              "overLimit",
              "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 4G, quota "
              "is 4G and 1G has been consumed.");
  EXPECT_EQ(InUse("gigabytes"), 1);

  ASSERT_EQ(SetQuota({{"gigabytes", -1}, {"volumes___DEFAULT__", 1}}).status, 200);
  EXPECT_TRUE(CreateVolume(1).empty());
  ExpectFault(last_,
              413,
              "overLimit",
              "Maximum number of volumes allowed (1) exceeded for quota 'volumes___DEFAULT__'.");

  ASSERT_EQ(SetQuota({{"volumes___DEFAULT__", -1}, {"per_volume_gigabytes", 5}}).status, 200);
  EXPECT_TRUE(CreateVolume(6).empty());
  ExpectFault(
      last_, 413, "overLimit", "Requested volume size 6G is larger than maximum allowed limit 5G.");
  EXPECT_FALSE(CreateVolume(5).empty()) << last_.body;
  EXPECT_EQ(InUse("volumes"), 2);
  EXPECT_EQ(InUse("gigabytes"), 6);
}

TEST_F(QuotasApiTest, SnapshotsCountInSnapshotsAndGigabytes) {
  const std::string volume = CreateVolume(2);
  ASSERT_FALSE(volume.empty()) << last_.body;
  MakeAvailable(volume);
  ASSERT_EQ(SetQuota({{"snapshots", 1}}).status, 200);
  auto snapshot = [&] {
    return Call("POST",
                Path("snapshots"),
                json{{"snapshot", {{"volume_id", volume}, {"name", "s"}}}}.dump());
  };
  ASSERT_EQ(snapshot().status, 202);
  EXPECT_EQ(InUse("snapshots"), 1);
  EXPECT_EQ(InUse("gigabytes"), 4);
  EXPECT_EQ(InUse("snapshots___DEFAULT__"), 1);
  ExpectFault(snapshot(), 413, "overLimit", "Maximum number of snapshots allowed (1) exceeded");
  ASSERT_EQ(SetQuota({{"snapshots", -1}, {"gigabytes", 5}}).status, 200);
  ExpectFault(snapshot(),
              413,
              "overLimit",
              "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 2G, quota "
              "is 5G and 4G has been consumed.");
  EXPECT_EQ(InUse("snapshots"), 1);
}

TEST_F(QuotasApiTest, AnExtendCountsItsGrowthAtOnceAndAResetReleasesIt) {
  const std::string volume = CreateVolume(2);
  ASSERT_FALSE(volume.empty()) << last_.body;
  MakeAvailable(volume);
  ASSERT_EQ(SetQuota({{"gigabytes", 5}}).status, 200);
  auto extend = [&](int size) {
    return Call("POST",
                Path("volumes/" + volume + "/action"),
                json{{"os-extend", {{"new_size", size}}}}.dump());
  };
  ExpectFault(extend(6),
              413,
              "overLimit",
              "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 4G, quota "
              "is 5G and 2G has been consumed.");
  ASSERT_EQ(extend(5).status, 202);
  EXPECT_EQ(InUse("gigabytes"), 5);
  EXPECT_EQ(InUse("gigabytes___DEFAULT__"), 5);
  // An admin reset drops the pending growth, and what it counted with it.
  auto reset = Call("POST",
                    Path("volumes/" + volume + "/action"),
                    json{{"os-reset_status", {{"status", "available"}}}}.dump());
  ASSERT_EQ(reset.status, 202) << reset.body;
  EXPECT_EQ(InUse("gigabytes"), 2);
  EXPECT_EQ(InUse("gigabytes___DEFAULT__"), 2);
}

TEST_F(QuotasApiTest, BackupsCountInBackupsAndBackupGigabytes) {
  const std::string volume = CreateVolume(2);
  ASSERT_FALSE(volume.empty()) << last_.body;
  MakeAvailable(volume);
  auto backup = [&] {
    return Call("POST", Path("backups"), json{{"backup", {{"volume_id", volume}}}}.dump());
  };
  ASSERT_EQ(SetQuota({{"backups", 0}}).status, 200);
  ExpectFault(backup(), 413, "overLimit", "Maximum number of backups allowed (0) exceeded");
  ASSERT_EQ(SetQuota({{"backups", 1}, {"backup_gigabytes", 1}}).status, 200);
  ExpectFault(backup(),
              413,
              "overLimit",
              "Requested backup exceeds allowed Backup gigabytes quota. Requested 2G, quota is 1G "
              "and 0G has been consumed.");
  ASSERT_EQ(SetQuota({{"backup_gigabytes", 2}}).status, 200);
  auto made = backup();
  ASSERT_EQ(made.status, 202) << made.body;
  EXPECT_EQ(InUse("backups"), 1);
  EXPECT_EQ(InUse("backup_gigabytes"), 2);
  // Refused creates left the volume as it was: only the accepted one made it backing-up.
  EXPECT_EQ(InUse("volumes"), 1);
}

TEST_F(QuotasApiTest, RecountAgreesWithTheCountersAfterTheseWrites) {
  const std::string volume = CreateVolume(2);
  ASSERT_FALSE(volume.empty());
  MakeAvailable(volume);
  ASSERT_EQ(Call("POST",
                 Path("snapshots"),
                 json{{"snapshot", {{"volume_id", volume}, {"name", "s"}}}}.dump())
                .status,
            202);
  ASSERT_EQ(Call("POST",
                 Path("volumes/" + volume + "/action"),
                 json{{"os-extend", {{"new_size", 3}}}}.dump())
                .status,
            202);
  auto counted = quota_service_.RecountUsage();
  auto stored = quota_service_.StoredUsage();
  ASSERT_TRUE(counted && stored);
  EXPECT_EQ(*counted, *stored);
}

}  // namespace
}  // namespace clinker::services
