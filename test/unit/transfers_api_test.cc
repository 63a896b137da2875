// Goal: check Cinder's volume transfers as a client sees them: a create offers an available
// volume (awaiting-transfer) and shows the auth key once, stored only as its salted hash; the
// refusals (a volume not available, unknown, another project's, a snapshot not available, bad
// input for the URL and microversion) change nothing; views follow the microversion (3.55, 3.57);
// accept checks the key, moves the volume (and its snapshots unless no_snapshots) to the caller's
// project and user and is rolled back whole when a snapshot cannot move; delete gives the volume
// back; lists are project-scoped, all_tenants for admins, paginated on /volume-transfers from
// 3.59. Above all, racing accepts (and an accept racing a delete) never both win: with an
// injected interleaving (the loser paused between reading the transfer and claiming it) and with
// threads.
//
// Method: ApiService over the real API services on a MemoryStateStore (routing, noauth admin
// callers), or the TransfersApi called directly with a RequestContext for non-admins and for
// microversions above kMaxMicroversion (ApiService answers 406 there). Volumes and snapshots are
// written straight to the store, as the volume manager leaves them. The interleaving uses a
// StateStore decorator that blocks one thread on its first read of a transfer until released.
#include "clinker/services/transfers_api.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/api_service.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"
#include "support/recording_job_queue.h"

namespace clinker::services {
namespace {

// These tests make more resources in one project than Cinder's default quotas allow.
VolumesApiOptions UnlimitedVolumesApiOptions() {
  VolumesApiOptions options;
  options.quota = QuotaOptions::Unlimited();
  return options;
}

SnapshotsApiOptions UnlimitedSnapshotsApiOptions() {
  SnapshotsApiOptions options;
  options.quota = QuotaOptions::Unlimited();
  return options;
}

TransfersApiOptions UnlimitedTransfersApiOptions() {
  TransfersApiOptions options;
  options.quota = QuotaOptions::Unlimited();
  return options;
}

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStateStore;
using domain::SnapshotStatus;
using domain::VolumeStatus;
using nlohmann::json;
using test_support::FakeClock;
using test_support::RecordingJobQueue;
using Query = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kOtherProject = "fedcba9876543210fedcba9876543210";
constexpr std::string_view kBaseUrl = "http://clinker.test:8776";

json Body(const ports::HttpResponse& response) {
  json body = json::parse(response.body, nullptr, false);
  EXPECT_FALSE(body.is_discarded()) << "response body is not JSON: " << response.body;
  return body;
}

std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  for (const auto& [key, value] : object.items()) {
    keys.insert(key);
  }
  return keys;
}

std::string Text(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  return it != row.end() && std::holds_alternative<std::string>(it->second)
             ? std::get<std::string>(it->second)
             : std::string("<null>");
}

std::int64_t Integer(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  return it != row.end() && std::holds_alternative<std::int64_t>(it->second)
             ? std::get<std::int64_t>(it->second)
             : -1;
}

void ExpectFault(const ports::HttpResponse& response, int status) {
  EXPECT_EQ(response.status, status) << response.body;
  json body = json::parse(response.body, nullptr, false);
  ASSERT_TRUE(body.is_object() && body.size() == 1) << response.body;
  EXPECT_EQ(body.begin().value().value("code", 0), status) << response.body;
}

// Blocks the first thread that reads a transfer (Get) after Arm() until Release(): that thread
// has read the transfer and checked nothing else yet, the widest window for a racing accept.
class PausingStore final : public ports::StateStore {
 public:
  Result<void> Insert(ports::Table table, const ports::Row& row) override {
    return InsertWithUsage(table, row, {});
  }

  Result<std::optional<ports::Row>> ConditionalUpdate(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards) override {
    return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
  }

  explicit PausingStore(ports::StateStore& inner) : inner_(inner) {}

  void Arm() { armed_ = true; }

  void WaitUntilPaused() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return paused_; });
  }

  void Release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }

  Result<void> InsertWithUsage(ports::Table table,
                               const ports::Row& row,
                               const std::vector<ports::UsageChange>& usage) override {
    return inner_.InsertWithUsage(table, row, usage);
  }

  Result<ports::Row> Get(ports::Table table, std::string_view id) override {
    auto row = inner_.Get(table, id);
    if (table == ports::Table::kTransfers && armed_.exchange(false)) {
      std::unique_lock lock(mutex_);
      paused_ = true;
      changed_.notify_all();
      changed_.wait(lock, [&] { return released_; });
    }
    return row;
  }

  Result<std::vector<ports::Row>> List(ports::Table table, const ports::ListQuery& query) override {
    return inner_.List(table, query);
  }

  Result<std::optional<ports::Row>> ConditionalUpdateWithUsage(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override {
    return inner_.ConditionalUpdateWithUsage(table, id, values, expected, guards, usage);
  }

 private:
  ports::StateStore& inner_;
  std::atomic<bool> armed_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
  bool paused_ = false;
  bool released_ = false;
};

class TransfersApiTest : public ::testing::Test {
 protected:
  TransfersApiTest()
      : broker_(std::make_shared<MemoryBroker>()),
        session_(broker_),
        publisher_(session_),
        pausing_(store_),
        volumes_(store_, publisher_, clock_, UnlimitedVolumesApiOptions()),
        snapshots_(store_, publisher_, clock_, UnlimitedSnapshotsApiOptions()),
        attachments_(store_, publisher_, clock_, AttachmentsApiOptions{}),
        backups_(store_, publisher_, clock_, BackupsApiOptions{}),
        services_api_(store_, clock_, ServicesApiOptions{}),
        transfers_(pausing_, clock_, UnlimitedTransfersApiOptions()),
        types_(store_, clock_, TypesApiOptions{}),
        service_(volumes_, snapshots_, attachments_, backups_, services_api_, types_) {
    service_.ServeTransfers(&transfers_);
  }

  static RequestContext Context(Microversion version,
                                bool is_admin = true,
                                std::string_view project = kProject,
                                std::string user = "user") {
    RequestContext context;
    context.user_id = std::move(user);
    context.project_id = std::string(project);
    context.is_admin = is_admin;
    context.version = version;
    context.link_base = std::string(kBaseUrl) + "/v3/" + std::string(project);
    context.bookmark_base = std::string(kBaseUrl) + "/" + std::string(project);
    return context;
  }

  static ports::HttpRequest Request(std::string method,
                                    std::string path,
                                    std::string body = "",
                                    Query query = {},
                                    std::string_view project = kProject) {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = "/v3/" + std::string(project) + "/" + path;
    request.query = std::move(query);
    request.body = std::move(body);
    request.base_url = std::string(kBaseUrl);
    request.headers = {{"X-Auth-Token", "user:" + std::string(project)},
                       {"Content-Type", "application/json"}};
    return request;
  }

  std::string InsertVolume(VolumeStatus status, std::string_view project = kProject) {
    std::string id = NewUuid();
    ports::Row row = {{"id", id},
                      {"project_id", std::string(project)},
                      {"user_id", "owner"},
                      {"status", Status(status)},
                      {"size_gib", std::int64_t{1}},
                      {"host", "node1@file#pool"},
                      {"created_at", FormatTimestamp(clock_.WallNow())}};
    EXPECT_TRUE(store_.Insert(ports::Table::kVolumes, row).has_value());
    return id;
  }

  std::string InsertSnapshot(const std::string& volume_id,
                             SnapshotStatus status,
                             std::string_view project = kProject) {
    std::string id = NewUuid();
    ports::Row row = {{"id", id},
                      {"project_id", std::string(project)},
                      {"user_id", "owner"},
                      {"volume_id", volume_id},
                      {"status", Status(status)},
                      {"created_at", FormatTimestamp(clock_.WallNow())}};
    EXPECT_TRUE(store_.Insert(ports::Table::kSnapshots, row).has_value());
    return id;
  }

  ports::Row Row(ports::Table table, const std::string& id) {
    auto row = store_.Get(table, id);
    EXPECT_TRUE(row.has_value());
    return row ? *row : ports::Row{};
  }

  // Creates a transfer through /os-volume-transfer at 3.0; its view (with auth_key).
  json CreateTransfer(const std::string& volume_id) {
    json request = {{"transfer", {{"volume_id", volume_id}, {"name", "gift"}}}};
    ports::HttpResponse response =
        service_.Handle(Request("POST", "os-volume-transfer", request.dump()));
    EXPECT_EQ(response.status, 202) << response.body;
    clock_.Advance(std::chrono::seconds(1));
    return Body(response)["transfer"];
  }

  ports::HttpResponse AcceptAs(std::string_view project,
                               const std::string& transfer_id,
                               const json& auth_key) {
    json request = {{"accept", {{"auth_key", auth_key}}}};
    return transfers_.Accept(Context(kMinMicroversion, false, project, "taker"),
                             Request("POST", "", request.dump(), {}, project),
                             transfer_id);
  }

  MemoryStateStore store_;
  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue session_;
  RecordingJobQueue publisher_;
  PausingStore pausing_;
  VolumesApi volumes_;
  SnapshotsApi snapshots_;
  AttachmentsApi attachments_;
  BackupsApi backups_;
  ServicesApi services_api_;
  TransfersApi transfers_;
  TypesApi types_;
  ApiService service_;
};

TEST_F(TransfersApiTest, CreateOffersTheVolumeAndShowsTheKeyOnceStoringOnlyItsHash) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  json transfer = CreateTransfer(volume_id);

  EXPECT_EQ(Keys(transfer),
            (std::set<std::string>{"id", "created_at", "name", "volume_id", "auth_key", "links"}));
  EXPECT_EQ(transfer["volume_id"], volume_id);
  EXPECT_EQ(transfer["name"], "gift");
  const std::string id = transfer["id"];
  const std::string key = transfer["auth_key"];
  EXPECT_EQ(key.size(), 16u);
  EXPECT_EQ(transfer["links"][0]["href"],
            std::string(kBaseUrl) + "/v3/" + std::string(kProject) + "/os-volume-transfer/" + id);
  EXPECT_EQ(Text(Row(ports::Table::kVolumes, volume_id), "status"), "awaiting-transfer");

  ports::Row row = Row(ports::Table::kTransfers, id);
  EXPECT_EQ(Text(row, "salt").size(), 8u);
  EXPECT_EQ(Text(row, "crypt_hash"), TransfersApi::CryptHash(Text(row, "salt"), key));
  for (const auto& [column, value] : row) {
    EXPECT_NE(value, ports::Value(key)) << "the key is stored in " << column;
  }

  ports::HttpResponse shown = service_.Handle(Request("GET", "os-volume-transfer/" + id));
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Keys(Body(shown)["transfer"]),
            (std::set<std::string>{"id", "created_at", "name", "volume_id", "links"}));
  // The volume API shows the new status.
  ports::HttpResponse volume = service_.Handle(Request("GET", "volumes/" + volume_id));
  EXPECT_EQ(Body(volume)["volume"]["status"], "awaiting-transfer");
}

TEST(TransfersCryptHashTest, IsCindersHmacSha1OfTheKeyUnderTheSalt) {
  // Python: hmac.new(salt.encode(), auth_key.encode(), hashlib.sha1).hexdigest()
  EXPECT_EQ(TransfersApi::CryptHash("salt", "key"), "69eb624e7367f772094a6123333dfee42bb7a1a1");
  EXPECT_EQ(TransfersApi::CryptHash("1a2b3c4d", "123"), "46d3ff735d8c11abf91a9e6724b3ce4fd70b29f8");
}

TEST_F(TransfersApiTest, ViewsFollowTheMicroversion) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  json request = {{"transfer", {{"volume_id", volume_id}, {"no_snapshots", true}}}};
  ports::HttpResponse created = transfers_.Create(
      Context(Microversion{3, 57}), Request("POST", "", request.dump()), TransferRoute::kV3);
  ASSERT_EQ(created.status, 202) << created.body;
  json transfer = Body(created)["transfer"];
  EXPECT_EQ(Keys(transfer),
            (std::set<std::string>{"id",
                                   "created_at",
                                   "name",
                                   "volume_id",
                                   "auth_key",
                                   "links",
                                   "no_snapshots",
                                   "source_project_id",
                                   "destination_project_id",
                                   "accepted"}));
  EXPECT_EQ(transfer["no_snapshots"], true);
  EXPECT_EQ(transfer["source_project_id"], std::string(kProject));
  EXPECT_TRUE(transfer["destination_project_id"].is_null());
  EXPECT_EQ(transfer["accepted"], false);
  EXPECT_TRUE(transfer["name"].is_null());
  const std::string id = transfer["id"];

  json at_355 = Body(transfers_.Show(Context(Microversion{3, 55}), id))["transfer"];
  EXPECT_EQ(
      Keys(at_355),
      (std::set<std::string>{"id", "created_at", "name", "volume_id", "links", "no_snapshots"}));
  json summary = Body(transfers_.List(
      Context(Microversion{3, 57}), Request("GET", ""), false, TransferRoute::kV3))["transfers"];
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(Keys(summary[0]), (std::set<std::string>{"id", "name", "volume_id", "links"}));
}

TEST_F(TransfersApiTest, RefusedCreatesChangeNothing) {
  std::string available = InsertVolume(VolumeStatus::kAvailable);
  std::string in_use = InsertVolume(VolumeStatus::kInUse);
  std::string others = InsertVolume(VolumeStatus::kAvailable, kOtherProject);
  std::string with_bad_snapshot = InsertVolume(VolumeStatus::kAvailable);
  InsertSnapshot(with_bad_snapshot, SnapshotStatus::kCreating);
  auto create = [&](const json& spec, Microversion version, TransferRoute route, bool admin) {
    return transfers_.Create(
        Context(version, admin), Request("POST", "", json{{"transfer", spec}}.dump()), route);
  };
  const Microversion v30 = kMinMicroversion;
  ExpectFault(create({{"volume_id", in_use}}, v30, TransferRoute::kExtension, true), 400);
  ExpectFault(create({{"volume_id", NewUuid()}}, v30, TransferRoute::kExtension, true), 404);
  ExpectFault(create({{"volume_id", others}}, v30, TransferRoute::kExtension, false), 404);
  ExpectFault(create({{"volume_id", with_bad_snapshot}}, v30, TransferRoute::kExtension, true),
              400);
  ExpectFault(create({{"volume_id", "not-a-uuid"}}, v30, TransferRoute::kExtension, true), 400);
  ExpectFault(create({{"name", "x"}}, v30, TransferRoute::kExtension, true), 400);
  ExpectFault(create({{"volume_id", available}, {"name", "  "}}, v30, TransferRoute::kV3, true),
              400);
  // no_snapshots: only /volume-transfers from 3.55 takes it (Cinder's request schemas).
  ExpectFault(create({{"volume_id", available}, {"no_snapshots", true}},
                     Microversion{3, 57},
                     TransferRoute::kExtension,
                     true),
              400);
  ExpectFault(create({{"volume_id", available}, {"no_snapshots", true}},
                     Microversion{3, 54},
                     TransferRoute::kV3,
                     true),
              400);
  ExpectFault(create({{"volume_id", available}, {"no_snapshots", "maybe"}},
                     Microversion{3, 55},
                     TransferRoute::kV3,
                     true),
              400);
  for (const std::string& id : {available, in_use, others, with_bad_snapshot}) {
    EXPECT_NE(Text(Row(ports::Table::kVolumes, id), "status"), "awaiting-transfer");
  }
  ports::ListQuery all;
  all.include_deleted = true;
  EXPECT_TRUE(store_.List(ports::Table::kTransfers, all)->empty());

  // A second transfer of an offered volume: the volume is no longer available.
  CreateTransfer(available);
  ExpectFault(create({{"volume_id", available}}, v30, TransferRoute::kExtension, true), 400);
  EXPECT_EQ(store_.List(ports::Table::kTransfers, all)->size(), 1u);
}

TEST_F(TransfersApiTest, AcceptMovesTheVolumeAndItsSnapshotsToTheCaller) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  std::string snapshot_id = InsertSnapshot(volume_id, SnapshotStatus::kAvailable);
  json transfer = CreateTransfer(volume_id);
  const std::string id = transfer["id"];

  ExpectFault(AcceptAs(kOtherProject, id, "0123456789abcdef"), 400);
  ExpectFault(AcceptAs(kOtherProject, id, 12345), 400);
  EXPECT_EQ(Text(Row(ports::Table::kVolumes, volume_id), "project_id"), kProject);
  EXPECT_EQ(Integer(Row(ports::Table::kTransfers, id), "deleted"), 0);

  ports::HttpResponse accepted = AcceptAs(kOtherProject, id, transfer["auth_key"]);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  EXPECT_EQ(Keys(Body(accepted)["transfer"]),
            (std::set<std::string>{"id", "name", "volume_id", "links"}));
  ports::Row volume = Row(ports::Table::kVolumes, volume_id);
  EXPECT_EQ(Text(volume, "status"), "available");
  EXPECT_EQ(Text(volume, "project_id"), kOtherProject);
  EXPECT_EQ(Text(volume, "user_id"), "taker");
  ports::Row snapshot = Row(ports::Table::kSnapshots, snapshot_id);
  EXPECT_EQ(Text(snapshot, "project_id"), kOtherProject);
  EXPECT_EQ(Text(snapshot, "user_id"), "taker");
  ports::Row row = Row(ports::Table::kTransfers, id);
  EXPECT_EQ(Integer(row, "deleted"), 1);
  EXPECT_EQ(Integer(row, "accepted"), 1);
  EXPECT_EQ(Text(row, "destination_project_id"), kOtherProject);

  // Gone for everyone: show, delete and a second accept are 404.
  ExpectFault(service_.Handle(Request("GET", "os-volume-transfer/" + id)), 404);
  ExpectFault(service_.Handle(Request("DELETE", "os-volume-transfer/" + id)), 404);
  ExpectFault(AcceptAs(kOtherProject, id, transfer["auth_key"]), 404);
}

TEST_F(TransfersApiTest, NoSnapshotsLeavesTheSnapshotsWithTheGiver) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  std::string snapshot_id = InsertSnapshot(volume_id, SnapshotStatus::kError);
  json request = {{"transfer", {{"volume_id", volume_id}, {"no_snapshots", "true"}}}};
  ports::HttpResponse created = transfers_.Create(
      Context(Microversion{3, 55}), Request("POST", "", request.dump()), TransferRoute::kV3);
  ASSERT_EQ(created.status, 202) << created.body;
  json transfer = Body(created)["transfer"];
  ASSERT_EQ(AcceptAs(kOtherProject, transfer["id"], transfer["auth_key"]).status, 202);
  EXPECT_EQ(Text(Row(ports::Table::kVolumes, volume_id), "project_id"), kOtherProject);
  EXPECT_EQ(Text(Row(ports::Table::kSnapshots, snapshot_id), "project_id"), kProject);
}

TEST_F(TransfersApiTest, AnAcceptThatCannotMoveASnapshotIsRolledBackWhole) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  std::string first = InsertSnapshot(volume_id, SnapshotStatus::kAvailable);
  std::string second = InsertSnapshot(volume_id, SnapshotStatus::kAvailable);
  json transfer = CreateTransfer(volume_id);
  // A snapshot delete starts while the volume awaits its taker.
  ASSERT_TRUE(store_
                  .ConditionalUpdate(ports::Table::kSnapshots,
                                     second,
                                     {{"status", Status(SnapshotStatus::kDeletingQueued)}},
                                     {},
                                     {})
                  .has_value());

  ExpectFault(AcceptAs(kOtherProject, transfer["id"], transfer["auth_key"]), 400);
  ports::Row volume = Row(ports::Table::kVolumes, volume_id);
  EXPECT_EQ(Text(volume, "status"), "awaiting-transfer");
  EXPECT_EQ(Text(volume, "project_id"), kProject);
  EXPECT_EQ(Text(volume, "user_id"), "owner");
  EXPECT_EQ(Text(Row(ports::Table::kSnapshots, first), "project_id"), kProject);
  EXPECT_EQ(Text(Row(ports::Table::kSnapshots, first), "user_id"), "owner");
  ports::Row row = Row(ports::Table::kTransfers, transfer["id"]);
  EXPECT_EQ(Integer(row, "deleted"), 0);
  EXPECT_EQ(Integer(row, "accepted"), 0);
  EXPECT_EQ(Text(row, "destination_project_id"), "<null>");
  // The owner can still take it back.
  ports::HttpResponse deleted =
      service_.Handle(Request("DELETE", "os-volume-transfer/" + transfer["id"].get<std::string>()));
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  EXPECT_EQ(Text(Row(ports::Table::kVolumes, volume_id), "status"), "available");
}

TEST_F(TransfersApiTest, DeleteGivesTheVolumeBack) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  const std::string id = CreateTransfer(volume_id)["id"];
  // Another project's member does not see it.
  ExpectFault(transfers_.Delete(Context(kMinMicroversion, false, kOtherProject), id), 404);
  ExpectFault(transfers_.Show(Context(kMinMicroversion, false, kOtherProject), id), 404);

  ports::HttpResponse deleted = service_.Handle(Request("DELETE", "volume-transfers/" + id));
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  EXPECT_EQ(Text(Row(ports::Table::kVolumes, volume_id), "status"), "available");
  EXPECT_EQ(Integer(Row(ports::Table::kTransfers, id), "accepted"), 0);
  ExpectFault(service_.Handle(Request("DELETE", "volume-transfers/" + id)), 404);
  // The volume may be offered again.
  CreateTransfer(volume_id);
}

TEST_F(TransfersApiTest, ListsAreProjectScopedAndPaginateOnTheV3UrlFrom359) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(CreateTransfer(InsertVolume(VolumeStatus::kAvailable))["id"]);
  }
  std::string others = InsertVolume(VolumeStatus::kAvailable, kOtherProject);
  json request = {{"transfer", {{"volume_id", others}}}};
  ASSERT_EQ(transfers_
                .Create(Context(kMinMicroversion, false, kOtherProject),
                        Request("POST", "", request.dump(), {}, kOtherProject),
                        TransferRoute::kExtension)
                .status,
            202);

  auto list = [&](Microversion version, TransferRoute route, Query query, bool admin = false) {
    ports::HttpResponse response =
        transfers_.List(Context(version, admin), Request("GET", "", "", query), true, route);
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response);
  };
  json mine = list(kMinMicroversion, TransferRoute::kExtension, {});
  ASSERT_EQ(mine["transfers"].size(), 3u);
  EXPECT_EQ(mine["transfers"][0]["id"], ids[0]) << "not in creation order";
  EXPECT_FALSE(mine.contains("transfers_links"));
  EXPECT_EQ(
      list(kMinMicroversion, TransferRoute::kExtension, {{"all_tenants", "1"}})["transfers"].size(),
      3u)
      << "all_tenants honoured for a non-admin";
  EXPECT_EQ(
      list(kMinMicroversion, TransferRoute::kExtension, {{"all_tenants", "1"}}, true)["transfers"]
          .size(),
      4u);
  EXPECT_EQ(
      list(kMinMicroversion, TransferRoute::kExtension, {{"volume_id", "x"}})["transfers"].size(),
      0u);
  // Before 3.59 Cinder hands limit to the DB as a filter on a column that does not exist.
  EXPECT_EQ(list(Microversion{3, 57}, TransferRoute::kV3, {{"limit", "1"}})["transfers"].size(),
            0u);

  json page =
      list(Microversion{3, 59}, TransferRoute::kV3, {{"limit", "2"}, {"sort", "created_at:asc"}});
  ASSERT_EQ(page["transfers"].size(), 2u);
  EXPECT_EQ(page["transfers"][0]["id"], ids[0]);
  ASSERT_TRUE(page.contains("transfers_links")) << page.dump();
  json next = list(Microversion{3, 59},
                   TransferRoute::kV3,
                   {{"limit", "2"}, {"sort", "created_at:asc"}, {"marker", ids[1]}});
  ASSERT_EQ(next["transfers"].size(), 1u);
  EXPECT_EQ(next["transfers"][0]["id"], ids[2]);
  json newest_first = list(Microversion{3, 59}, TransferRoute::kV3, {});
  EXPECT_EQ(newest_first["transfers"][0]["id"], ids[2]) << "3.59's default is created_at desc";
}

TEST_F(TransfersApiTest, ARacingAcceptPausedAfterReadingTheTransferLoses) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  json transfer = CreateTransfer(volume_id);
  const std::string id = transfer["id"];
  constexpr std::string_view kThird = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

  pausing_.Arm();
  ports::HttpResponse slow;
  std::thread first([&] { slow = AcceptAs(kThird, id, transfer["auth_key"]); });
  pausing_.WaitUntilPaused();  // It read the live transfer and checked the key next.
  ports::HttpResponse fast = AcceptAs(kOtherProject, id, transfer["auth_key"]);
  pausing_.Release();
  first.join();

  EXPECT_EQ(fast.status, 202) << fast.body;
  ExpectFault(slow, 404);
  ports::Row volume = Row(ports::Table::kVolumes, volume_id);
  EXPECT_EQ(Text(volume, "project_id"), kOtherProject);
  EXPECT_EQ(Text(volume, "status"), "available");
  EXPECT_EQ(Text(Row(ports::Table::kTransfers, id), "destination_project_id"), kOtherProject);
}

TEST_F(TransfersApiTest, AnAcceptPausedWhileTheOwnerDeletesTheTransferLoses) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  json transfer = CreateTransfer(volume_id);
  const std::string id = transfer["id"];

  pausing_.Arm();
  ports::HttpResponse slow;
  std::thread taker([&] { slow = AcceptAs(kOtherProject, id, transfer["auth_key"]); });
  pausing_.WaitUntilPaused();
  ports::HttpResponse deleted = transfers_.Delete(Context(kMinMicroversion, false), id);
  pausing_.Release();
  taker.join();

  EXPECT_EQ(deleted.status, 202) << deleted.body;
  ExpectFault(slow, 404);
  ports::Row volume = Row(ports::Table::kVolumes, volume_id);
  EXPECT_EQ(Text(volume, "project_id"), kProject);
  EXPECT_EQ(Text(volume, "status"), "available");
  EXPECT_EQ(Integer(Row(ports::Table::kTransfers, id), "accepted"), 0);
}

TEST_F(TransfersApiTest, OfManyThreadsAcceptingAtOnceExactlyOneWins) {
  constexpr int kRounds = 20;
  constexpr int kThreads = 8;
  for (int round = 0; round < kRounds; ++round) {
    std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
    InsertSnapshot(volume_id, SnapshotStatus::kAvailable);
    json transfer = CreateTransfer(volume_id);
    std::atomic<int> ready{0};
    std::vector<int> statuses(kThreads, 0);
    std::vector<std::string> projects;
    for (int i = 0; i < kThreads; ++i) {
      projects.push_back(std::string(31, 'b') + std::to_string(i));
    }
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) {
          std::this_thread::yield();
        }
        statuses[i] = AcceptAs(projects[i], transfer["id"], transfer["auth_key"]).status;
      });
    }
    for (std::thread& thread : threads) {
      thread.join();
    }
    int winners = 0;
    std::string winner;
    for (int i = 0; i < kThreads; ++i) {
      if (statuses[i] == 202) {
        ++winners;
        winner = projects[i];
      } else {
        EXPECT_EQ(statuses[i], 404);
      }
    }
    ASSERT_EQ(winners, 1) << "round " << round;
    EXPECT_EQ(Text(Row(ports::Table::kVolumes, volume_id), "project_id"), winner);
    EXPECT_EQ(Text(Row(ports::Table::kTransfers, transfer["id"]), "destination_project_id"),
              winner);
  }
}

TEST_F(TransfersApiTest, RoutesAnswerAsCinders) {
  std::string volume_id = InsertVolume(VolumeStatus::kAvailable);
  json transfer = CreateTransfer(volume_id);
  const std::string id = transfer["id"];
  EXPECT_EQ(service_.Handle(Request("GET", "volume-transfers/" + id)).status, 200);
  EXPECT_EQ(service_.Handle(Request("GET", "volume-transfers/detail")).status, 200);
  EXPECT_EQ(service_.Handle(Request("GET", "os-volume-transfer")).status, 200);
  EXPECT_EQ(service_.Handle(Request("PUT", "os-volume-transfer/" + id, "{}")).status, 405);
  EXPECT_EQ(service_.Handle(Request("GET", "os-volume-transfer/" + id + "/accept")).status, 405);
  ExpectFault(service_.Handle(Request("GET", "os-volume-transfer/" + NewUuid())), 404);
  ExpectFault(service_.Handle(Request("POST", "os-volume-transfer/" + id + "/accept", "{}")), 400);
  ExpectFault(service_.Handle(Request("POST",
                                      "os-volume-transfer/" + id + "/accept",
                                      R"({"accept": {"auth_key": "x", "extra": 1}})")),
              400);
  ports::HttpResponse accepted =
      service_.Handle(Request("POST",
                              "volume-transfers/" + id + "/accept",
                              json{{"accept", {{"auth_key", transfer["auth_key"]}}}}.dump()));
  EXPECT_EQ(accepted.status, 202) << accepted.body;
}

}  // namespace
}  // namespace clinker::services
