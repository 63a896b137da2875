// Goal: check Cinder's generic volume groups as a client sees them, through ApiService::Handle:
// group types and group specs (CRUD, is_public list filters, specs shown to admins only, type in
// use), groups (create, views per microversion, volumes joining with group_id, update with
// add_volumes / remove_volumes and Cinder's refusals, delete with delete-volumes queuing the
// members' deletes, reset_status), group snapshots (one member snapshot per volume, delete,
// reset_status), create-from-src (a member volume per source), the routes below their
// microversions (404), and the side effects behind each answer (rows, jobs). Then the completion
// rule (group_completion.h): a group snapshot (or group) completes only when its last member is
// done, as error when a member failed, and of members finishing at once exactly one completes it
// (deterministic, and with threads on SQLite, where real transactions decide).
//
// Method: ApiService over the volume, snapshot and group APIs over a MemoryStateStore (a
// SqliteStateStore in a TempDir for the threaded race), a MemoryBroker session behind a recorder
// of published topics, and a FakeClock. What the scheduler and the volume nodes would do (a
// volume reaching `available` on a back-end, a member snapshot finishing) is written straight to
// the store, then TryCompleteGroup / TryCompleteGroupSnapshot is called as the node would. A
// StateStore decorator counts the conditional updates that changed a group snapshot's status, to
// tell "exactly one finisher completed it".
#include "clinker/services/groups_api.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
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
#include "clinker/adapters/sqlite/sqlite_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/api_service.h"
#include "clinker/services/group_completion.h"
#include "clinker/services/group_types_api.h"
#include "clinker/services/quotas.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"
#include "support/forwarding_state_store.h"
#include "support/recording_job_queue.h"
#include "support/temp_dir.h"

namespace clinker::services {
namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStateStore;
using domain::SnapshotStatus;
using domain::VolumeStatus;
using nlohmann::json;
using ports::Table;
using test_support::FakeClock;
using test_support::RecordingJobQueue;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kBaseUrl = "http://clinker.test:8776";
constexpr std::string_view kHost = "h@file#default";
constexpr std::string_view kBackEndTopic = "volume.h@file";

using Query = std::vector<std::pair<std::string, std::string>>;

json Body(const ports::HttpResponse& response) {
  json body = json::parse(response.body, nullptr, false);
  EXPECT_FALSE(body.is_discarded()) << "response body is not JSON: " << response.body;
  return body;
}

std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  for (const auto& item : object.items()) {
    keys.insert(item.key());
  }
  return keys;
}

std::string TextOf(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::string>(it->second)) {
    return "";
  }
  return std::get<std::string>(it->second);
}

// Counts the conditional updates of a group snapshot or group that changed its status (the
// completions), forwarding everything to the real store. Thread safe as the store it wraps.
class CountingStateStore final : public test_support::ForwardingStateStore {
 public:
  explicit CountingStateStore(ports::StateStore& inner) : ForwardingStateStore(inner) {}

  int StatusChanges() const { return changes_.load(); }

  // Runs `hook` once, right after the first update of a `table` row that sets its status to
  // `status`: the way to let a volume node finish a member while the API is still at work.
  void AfterUpdateTo(Table table, std::string status, std::function<void(std::string_view)> hook) {
    hook_table_ = table;
    hook_status_ = std::move(status);
    hook_ = std::move(hook);
  }

  Result<std::optional<ports::Row>> ConditionalUpdateWithUsage(
      Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override {
    auto updated = ForwardingStateStore::ConditionalUpdateWithUsage(
        table, id, values, expected, guards, usage);
    if (hook_ && updated && updated->has_value() && table == hook_table_ &&
        values.contains("status") && values.at("status") == ports::Value(hook_status_)) {
      std::function<void(std::string_view)> hook = std::move(hook_);
      hook_ = nullptr;
      hook(id);
    }
    if (updated && updated->has_value() &&
        (table == Table::kGroupSnapshots || table == Table::kGroups) && values.contains("status")) {
      changes_.fetch_add(1);
    }
    return updated;
  }

 private:
  std::atomic<int> changes_{0};
  Table hook_table_ = Table::kVolumes;
  std::string hook_status_;
  std::function<void(std::string_view)> hook_;
};

class GroupsHarness {
 public:
  explicit GroupsHarness(ports::StateStore& store, GroupsApiOptions options = {})
      : store_(store),
        broker_(std::make_shared<MemoryBroker>()),
        session_(broker_),
        publisher_(session_),
        volumes_(store, publisher_, clock_, VolumesApiOptions{}),
        snapshots_(store, publisher_, clock_, SnapshotsApiOptions{}),
        attachments_(store, publisher_, clock_, AttachmentsApiOptions{}),
        backups_(store, publisher_, clock_, BackupsApiOptions{}),
        services_(store, clock_, ServicesApiOptions{}),
        types_(store, clock_, TypesApiOptions{}),
        group_types_(store, clock_, GroupTypesApiOptions{}),
        groups_(store, clock_, volumes_, snapshots_, std::move(options)),
        api_(volumes_, snapshots_, attachments_, backups_, services_, types_) {
    api_.ServeGroups(&group_types_, &groups_);
  }

  static std::string Path(std::string_view rest) {
    return "/v3/" + std::string(kProject) + "/" + std::string(rest);
  }

  ports::HttpResponse Send(std::string method,
                           std::string_view rest,
                           const json& body = nullptr,
                           std::string_view version = "3.14",
                           Query query = {}) {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = Path(rest);
    request.query = std::move(query);
    request.body = body.is_null() ? "" : body.dump();
    request.base_url = std::string(kBaseUrl);
    request.headers = {{"X-Auth-Token", "user:" + std::string(kProject)},
                       {"Content-Type", "application/json"},
                       {"OpenStack-API-Version", "volume " + std::string(version)}};
    clock_.Advance(std::chrono::seconds(1));
    return api_.Handle(request);
  }

  std::string VolumeType(std::string_view name = "vt") {
    std::string id = NewUuid();
    auto inserted =
        store_.Insert(Table::kVolumeTypes,
                      {{"id", id}, {"name", std::string(name) + "-" + id}, {"created_at", Now()}});
    EXPECT_TRUE(inserted.has_value());
    return id;
  }

  std::string GroupType(bool is_public = true) {
    auto response = Send("POST",
                         "group_types",
                         {{"group_type", {{"name", "gt-" + NewUuid()}, {"is_public", is_public}}}},
                         "3.11");
    EXPECT_EQ(response.status, 202) << response.body;
    return Body(response)["group_type"].value("id", "");
  }

  std::string Group(const std::string& group_type, const std::string& volume_type) {
    auto response = Send(
        "POST",
        "groups",
        {{"group", {{"group_type", group_type}, {"volume_types", {volume_type}}, {"name", "g"}}}});
    EXPECT_EQ(response.status, 202) << response.body;
    return Body(response)["group"].value("id", "");
  }

  // POST /volumes with group_id; then what the scheduler and the node do: available on kHost.
  std::string MemberVolume(const std::string& group_id, const std::string& volume_type) {
    auto response =
        Send("POST",
             "volumes",
             {{"volume", {{"size", 1}, {"volume_type", volume_type}, {"group_id", group_id}}}},
             "3.13");
    EXPECT_EQ(response.status, 202) << response.body;
    std::string id = Body(response)["volume"].value("id", "");
    Set(Table::kVolumes,
        id,
        {{"status", Status(VolumeStatus::kAvailable)}, {"host", std::string(kHost)}});
    return id;
  }

  void Set(Table table, const std::string& id, const ports::Row& values) {
    auto updated = store_.ConditionalUpdate(table, id, values, {}, {});
    ASSERT_TRUE(updated.has_value() && updated->has_value());
  }

  ports::Row Row(Table table, const std::string& id) {
    auto row = store_.Get(table, id);
    EXPECT_TRUE(row.has_value());
    return row ? *row : ports::Row{};
  }

  std::vector<ports::Row> Members(Table table, std::string_view column, const std::string& id) {
    ports::ListQuery query;
    query.filters = {ports::Expectation::Equals(std::string(column), id)};
    auto rows = store_.List(table, query);
    EXPECT_TRUE(rows.has_value());
    return rows ? *rows : std::vector<ports::Row>{};
  }

  std::size_t JobsOn(std::string_view topic) const {
    std::size_t count = 0;
    for (const std::string& published : publisher_.PublishedTopics()) {
      count += published == topic ? 1 : 0;
    }
    return count;
  }

  std::string Now() const { return FormatTimestamp(clock_.WallNow()); }

  FakeClock& clock() { return clock_; }

 private:
  ports::StateStore& store_;
  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue session_;
  RecordingJobQueue publisher_;
  VolumesApi volumes_;
  SnapshotsApi snapshots_;
  AttachmentsApi attachments_;
  BackupsApi backups_;
  ServicesApi services_;
  TypesApi types_;
  GroupTypesApi group_types_;
  GroupsApi groups_;
  ApiService api_;
};

class GroupsApiTest : public ::testing::Test {
 protected:
  MemoryStateStore store_;
  GroupsHarness api_{store_};
};

TEST_F(GroupsApiTest, GroupTypesLiveFromMicroversion311WithTheirSpecs) {
  EXPECT_EQ(api_.Send("GET", "group_types", nullptr, "3.10").status, 404);
  auto created = api_.Send(
      "POST",
      "group_types",
      {{"group_type", {{"name", "gold"}, {"description", "d"}, {"group_specs", {{"k", "v"}}}}}},
      "3.11");
  ASSERT_EQ(created.status, 202) << created.body;
  json type = Body(created)["group_type"];
  EXPECT_EQ(Keys(type),
            (std::set<std::string>{"id", "name", "description", "is_public", "group_specs"}));
  EXPECT_EQ(type["group_specs"], json({{"k", "v"}}));
  EXPECT_EQ(type["is_public"], true);
  const std::string id = type["id"];

  // Names are unique among live group types.
  EXPECT_EQ(api_.Send("POST", "group_types", {{"group_type", {{"name", "gold"}}}}, "3.11").status,
            409);
  // An update needs something to change.
  EXPECT_EQ(api_.Send("PUT", "group_types/" + id, {{"group_type", json::object()}}, "3.11").status,
            400);
  auto updated =
      api_.Send("PUT", "group_types/" + id, {{"group_type", {{"name", "silver"}}}}, "3.11");
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(Body(updated)["group_type"]["name"], "silver");

  // Specs: merge, item show / update (exactly the URL's key) / delete.
  auto merged = api_.Send(
      "POST", "group_types/" + id + "/group_specs", {{"group_specs", {{"a", "1"}}}}, "3.11");
  ASSERT_EQ(merged.status, 202) << merged.body;
  EXPECT_EQ(Body(merged), json({{"group_specs", {{"a", "1"}}}}));
  auto all = api_.Send("GET", "group_types/" + id + "/group_specs", nullptr, "3.11");
  EXPECT_EQ(Body(all)["group_specs"], json({{"a", "1"}, {"k", "v"}}));
  EXPECT_EQ(api_.Send("PUT", "group_types/" + id + "/group_specs/a", {{"b", "2"}}, "3.11").status,
            400);
  auto item = api_.Send("PUT", "group_types/" + id + "/group_specs/a", {{"a", "3"}}, "3.11");
  ASSERT_EQ(item.status, 200) << item.body;
  EXPECT_EQ(Body(api_.Send("GET", "group_types/" + id + "/group_specs/a", nullptr, "3.11")),
            json({{"a", "3"}}));
  EXPECT_EQ(api_.Send("DELETE", "group_types/" + id + "/group_specs/a", nullptr, "3.11").status,
            202);
  EXPECT_EQ(api_.Send("GET", "group_types/" + id + "/group_specs/a", nullptr, "3.11").status, 404);
  EXPECT_EQ(api_.Send("GET", "group_types/default", nullptr, "3.11").status, 404);

  EXPECT_EQ(api_.Send("DELETE", "group_types/" + id, nullptr, "3.11").status, 202);
  EXPECT_EQ(api_.Send("GET", "group_types/" + id, nullptr, "3.11").status, 404);
}

TEST_F(GroupsApiTest, GroupTypeListFiltersIsPublicForAnAdmin) {
  const std::string public_type = api_.GroupType(true);
  const std::string private_type = api_.GroupType(false);
  auto ids = [&](const std::string& is_public) {
    std::set<std::string> found;
    Query query;
    if (!is_public.empty()) {
      query.emplace_back("is_public", is_public);
    }
    auto response = api_.Send("GET", "group_types", nullptr, "3.11", query);
    EXPECT_EQ(response.status, 200) << response.body;
    const json body = Body(response);
    for (const json& type : body["group_types"]) {
      found.insert(type.value("id", ""));
    }
    return found;
  };
  EXPECT_EQ(ids(""), (std::set<std::string>{public_type}));
  EXPECT_EQ(ids("True"), (std::set<std::string>{public_type}));
  EXPECT_EQ(ids("False"), (std::set<std::string>{private_type}));
  EXPECT_EQ(ids("None"), (std::set<std::string>{public_type, private_type}));
  EXPECT_EQ(api_.Send("GET", "group_types", nullptr, "3.11", {{"is_public", "maybe"}}).status, 400);
}

TEST_F(GroupsApiTest, NonAdminsSeeNoSpecsAndNoPrivateGroupTypes) {
  MemoryStateStore store;
  FakeClock clock;
  GroupTypesApi types(store, clock, GroupTypesApiOptions{});
  RequestContext admin;
  admin.project_id = std::string(kProject);
  admin.is_admin = true;
  admin.roles = {"admin"};
  admin.version = Microversion{3, 11};
  ports::HttpRequest create;
  create.method = "POST";
  create.body = json({{"group_type", {{"name", "p"}, {"is_public", false}}}}).dump();
  auto created = types.Create(admin, create);
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string private_id = Body(created)["group_type"]["id"];
  create.body = json({{"group_type", {{"name", "q"}, {"group_specs", {{"k", "v"}}}}}}).dump();
  const std::string public_id = Body(types.Create(admin, create))["group_type"]["id"];

  RequestContext member = admin;
  member.is_admin = false;
  member.roles = {"member"};
  EXPECT_EQ(types.Show(member, private_id).status, 404);
  auto shown = types.Show(member, public_id);
  ASSERT_EQ(shown.status, 200);
  EXPECT_FALSE(Body(shown)["group_type"].contains("group_specs"));
  ports::HttpRequest list;
  list.method = "GET";
  list.query = {{"is_public", "None"}};  // Not an admin: the filter is not theirs to choose.
  json listed = Body(types.List(member, list))["group_types"];
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], public_id);
}

TEST_F(GroupsApiTest, GroupsAreAvailableAtOnceAndShowCindersKeysPerMicroversion) {
  const std::string group_type = api_.GroupType();
  const std::string volume_type = api_.VolumeType();
  EXPECT_EQ(api_.Send("GET", "groups", nullptr, "3.12").status, 404);
  const std::string id = api_.Group(group_type, volume_type);
  EXPECT_TRUE(api_.JobsOn(kBackEndTopic) == 0);

  const std::set<std::string> base = {"id",
                                      "status",
                                      "availability_zone",
                                      "created_at",
                                      "name",
                                      "description",
                                      "group_type",
                                      "volume_types"};
  json at313 = Body(api_.Send("GET", "groups/" + id, nullptr, "3.13"))["group"];
  EXPECT_EQ(Keys(at313), base);
  EXPECT_EQ(at313["status"], "available");
  EXPECT_EQ(at313["group_type"], group_type);
  EXPECT_EQ(at313["volume_types"], json({volume_type}));
  std::set<std::string> with_sources = base;
  with_sources.insert({"group_snapshot_id", "source_group_id"});
  EXPECT_EQ(Keys(Body(api_.Send("GET", "groups/" + id, nullptr, "3.14"))["group"]), with_sources);
  with_sources.insert("replication_status");
  EXPECT_EQ(Keys(Body(api_.Send("GET", "groups/" + id, nullptr, "3.38"))["group"]), with_sources);
  // The member volumes' ids with list_volume=true from 3.25.
  json listed =
      Body(api_.Send("GET", "groups/" + id, nullptr, "3.25", {{"list_volume", "true"}}))["group"];
  EXPECT_EQ(listed["volumes"], json::array());
  EXPECT_FALSE(
      Body(api_.Send("GET", "groups/" + id, nullptr, "3.24", {{"list_volume", "true"}}))["group"]
          .contains("volumes"));

  json summary = Body(api_.Send("GET", "groups", nullptr, "3.13"))["groups"];
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(Keys(summary[0]), (std::set<std::string>{"id", "name"}));
  EXPECT_EQ(Body(api_.Send("GET", "groups/detail", nullptr, "3.13"))["groups"].size(), 1u);
  // An unknown filter lists nothing, as Cinder's DB layer.
  EXPECT_TRUE(
      Body(api_.Send("GET", "groups", nullptr, "3.13", {{"bogus", "x"}}))["groups"].empty());

  // Refusals: unknown group type or volume type, a missing volume_types.
  EXPECT_EQ(api_.Send("POST",
                      "groups",
                      {{"group", {{"group_type", "nope"}, {"volume_types", {volume_type}}}}})
                .status,
            404);
  EXPECT_EQ(api_.Send("POST",
                      "groups",
                      {{"group", {{"group_type", group_type}, {"volume_types", {"nope"}}}}})
                .status,
            404);
  EXPECT_EQ(api_.Send("POST", "groups", {{"group", {{"group_type", group_type}}}}).status, 400);
  // A group type some live group has cannot be deleted.
  EXPECT_EQ(api_.Send("DELETE", "group_types/" + group_type, nullptr, "3.11").status, 400);
}

TEST_F(GroupsApiTest, VolumesJoinWithGroupIdAndLeaveOnlyWithTheGroup) {
  const std::string group_type = api_.GroupType();
  const std::string volume_type = api_.VolumeType();
  const std::string other_type = api_.VolumeType("other");
  const std::string group = api_.Group(group_type, volume_type);
  const std::string volume = api_.MemberVolume(group, volume_type);
  EXPECT_EQ(Body(api_.Send("GET", "volumes/" + volume, nullptr, "3.13"))["volume"]["group_id"],
            group);
  EXPECT_FALSE(
      Body(api_.Send("GET", "volumes/" + volume, nullptr, "3.12"))["volume"].contains("group_id"));

  // Cinder's checks of a volume created in a group: a type named, and one of the group's.
  EXPECT_EQ(
      api_.Send("POST", "volumes", {{"volume", {{"size", 1}, {"group_id", group}}}}, "3.13").status,
      400);
  EXPECT_EQ(api_.Send("POST",
                      "volumes",
                      {{"volume", {{"size", 1}, {"volume_type", other_type}, {"group_id", group}}}},
                      "3.13")
                .status,
            400);
  EXPECT_EQ(
      api_.Send("POST",
                "volumes",
                {{"volume", {{"size", 1}, {"volume_type", volume_type}, {"group_id", NewUuid()}}}},
                "3.13")
          .status,
      404);
  // A member cannot be deleted on its own.
  EXPECT_EQ(api_.Send("DELETE", "volumes/" + volume, nullptr, "3.13").status, 400);
  // Nor retyped (as Cinder: its type must stay one of the group's).
  EXPECT_EQ(api_.Send("POST",
                      "volumes/" + volume + "/action",
                      {{"os-retype", {{"new_type", other_type}}}},
                      "3.13")
                .status,
            400);

  // Update: remove, then add back; an unknown volume is refused and nothing changes.
  EXPECT_EQ(api_.Send("PUT", "groups/" + group, {{"group", json::object()}}).status, 400);
  auto removed =
      api_.Send("PUT", "groups/" + group, {{"group", {{"remove_volumes", volume}, {"name", "n"}}}});
  ASSERT_EQ(removed.status, 202) << removed.body;
  EXPECT_TRUE(api_.Members(Table::kVolumes, "group_id", group).empty());
  EXPECT_EQ(Body(api_.Send("GET", "groups/" + group))["group"]["name"], "n");
  EXPECT_EQ(
      api_.Send("PUT", "groups/" + group, {{"group", {{"add_volumes", volume + "," + NewUuid()}}}})
          .status,
      400);
  EXPECT_TRUE(api_.Members(Table::kVolumes, "group_id", group).empty());
  ASSERT_EQ(api_.Send("PUT", "groups/" + group, {{"group", {{"add_volumes", volume}}}}).status,
            202);
  EXPECT_EQ(api_.Members(Table::kVolumes, "group_id", group).size(), 1u);
}

TEST_F(GroupsApiTest, DeleteQueuesTheMembersDeletesAndTheLastOneCompletesIt) {
  const std::string group_type = api_.GroupType();
  const std::string volume_type = api_.VolumeType();
  const std::string group = api_.Group(group_type, volume_type);
  const std::string first = api_.MemberVolume(group, volume_type);
  const std::string second = api_.MemberVolume(group, volume_type);

  auto refused = api_.Send("POST", "groups/" + group + "/action", {{"delete", json::object()}});
  EXPECT_EQ(refused.status, 400) << "a group with volumes needs delete-volumes";
  auto deleting =
      api_.Send("POST", "groups/" + group + "/action", {{"delete", {{"delete-volumes", true}}}});
  ASSERT_EQ(deleting.status, 202) << deleting.body;
  EXPECT_EQ(TextOf(api_.Row(Table::kGroups, group), "status"), "deleting");
  EXPECT_EQ(api_.JobsOn(kBackEndTopic), 2u);
  for (const std::string& id : {first, second}) {
    EXPECT_EQ(TextOf(api_.Row(Table::kVolumes, id), "status"),
              domain::StoredName(VolumeStatus::kDeletingQueued));
  }
  // The volume node finishes one member: the group waits for the other.
  api_.Set(Table::kVolumes,
           first,
           {{"status", Status(VolumeStatus::kDeleted)}, {"deleted", std::int64_t{1}}});
  ASSERT_TRUE(TryCompleteGroup(store_, api_.clock(), group).has_value());
  EXPECT_EQ(TextOf(api_.Row(Table::kGroups, group), "status"), "deleting");
  api_.Set(Table::kVolumes,
           second,
           {{"status", Status(VolumeStatus::kDeleted)}, {"deleted", std::int64_t{1}}});
  ASSERT_TRUE(TryCompleteGroup(store_, api_.clock(), group).has_value());
  EXPECT_EQ(api_.Send("GET", "groups/" + group).status, 404);
  // Now the group type is free.
  EXPECT_EQ(api_.Send("DELETE", "group_types/" + group_type, nullptr, "3.11").status, 202);
}

// A member's delete job may finish while the API is still queuing the other members' deletes
// (the node is fast): it must not complete the group (as error_deleting, the others not yet
// being deleted). The group stays `deleting_queued` (shown deleting) until all are queued.
TEST(GroupsDeleteRaceTest, AMemberFinishingWhileTheApiQueuesTheOthersDoesNotCompleteTheGroup) {
  MemoryStateStore inner;
  CountingStateStore store(inner);
  GroupsHarness api(store);
  const std::string volume_type = api.VolumeType();
  const std::string group = api.Group(api.GroupType(), volume_type);
  const std::string first = api.MemberVolume(group, volume_type);
  const std::string second = api.MemberVolume(group, volume_type);
  std::string finished;
  store.AfterUpdateTo(
      Table::kVolumes,
      std::string(domain::StoredName(VolumeStatus::kDeletingQueued)),
      [&](std::string_view id) {
        // What the volume node does with the first member's job before the API goes on.
        finished = std::string(id);
        auto gone = inner.ConditionalUpdate(
            Table::kVolumes,
            finished,
            {{"status", Status(VolumeStatus::kDeleted)}, {"deleted", std::int64_t{1}}},
            {},
            {});
        ASSERT_TRUE(gone.has_value() && gone->has_value());
        ASSERT_TRUE(TryCompleteGroup(store, api.clock(), group).has_value());
      });
  auto deleting =
      api.Send("POST", "groups/" + group + "/action", {{"delete", {{"delete-volumes", true}}}});
  ASSERT_EQ(deleting.status, 202) << deleting.body;
  ASSERT_FALSE(finished.empty()) << "the hook never ran";
  EXPECT_EQ(TextOf(api.Row(Table::kGroups, group), "status"), "deleting");
  EXPECT_EQ(Body(api.Send("GET", "groups/" + group))["group"]["status"], "deleting");
  const std::string other = finished == first ? second : first;
  EXPECT_EQ(TextOf(api.Row(Table::kVolumes, other), "status"),
            domain::StoredName(VolumeStatus::kDeletingQueued));
  api.Set(Table::kVolumes,
          other,
          {{"status", Status(VolumeStatus::kDeleted)}, {"deleted", std::int64_t{1}}});
  ASSERT_TRUE(TryCompleteGroup(store, api.clock(), group).has_value());
  EXPECT_EQ(api.Send("GET", "groups/" + group).status, 404);
}

TEST_F(GroupsApiTest, AnEmptyGroupIsDeletedAtOnceAndResetStatusIsFrom320) {
  const std::string group = api_.Group(api_.GroupType(), api_.VolumeType());
  EXPECT_EQ(api_.Send("POST",
                      "groups/" + group + "/action",
                      {{"reset_status", {{"status", "error"}}}},
                      "3.19")
                .status,
            400);
  EXPECT_EQ(api_.Send("POST",
                      "groups/" + group + "/action",
                      {{"reset_status", {{"status", "bogus"}}}},
                      "3.20")
                .status,
            400);
  ASSERT_EQ(api_.Send("POST",
                      "groups/" + group + "/action",
                      {{"reset_status", {{"status", "error"}}}},
                      "3.20")
                .status,
            202);
  EXPECT_EQ(Body(api_.Send("GET", "groups/" + group))["group"]["status"], "error");
  ASSERT_EQ(
      api_.Send("POST", "groups/" + group + "/action", {{"delete", {{"delete-volumes", false}}}})
          .status,
      202);
  EXPECT_EQ(api_.Send("GET", "groups/" + group).status, 404);
}

TEST_F(GroupsApiTest, GroupSnapshotsSnapshotEveryMemberAndCompleteWithTheLast) {
  const std::string group_type = api_.GroupType();
  const std::string volume_type = api_.VolumeType();
  const std::string group = api_.Group(group_type, volume_type);
  const std::string first = api_.MemberVolume(group, volume_type);
  const std::string second = api_.MemberVolume(group, volume_type);
  EXPECT_EQ(api_.Send("GET", "group_snapshots", nullptr, "3.13").status, 404);

  auto created = api_.Send(
      "POST", "group_snapshots", {{"group_snapshot", {{"group_id", group}, {"name", "gs"}}}});
  ASSERT_EQ(created.status, 202) << created.body;
  json answer = Body(created)["group_snapshot"];
  EXPECT_EQ(Keys(answer), (std::set<std::string>{"id", "name", "group_type_id"}));
  const std::string id = answer["id"];
  EXPECT_EQ(answer["group_type_id"], group_type);
  std::vector<ports::Row> members = api_.Members(Table::kSnapshots, "group_snapshot_id", id);
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(api_.JobsOn(kBackEndTopic), 2u);
  json shown = Body(api_.Send("GET", "group_snapshots/" + id))["group_snapshot"];
  EXPECT_EQ(Keys(shown),
            (std::set<std::string>{
                "id", "group_id", "group_type_id", "status", "created_at", "name", "description"}));
  EXPECT_EQ(shown["status"], "creating");
  // Member snapshots name their group snapshot from 3.14, and cannot be deleted on their own.
  const std::string member = TextOf(members[0], "id");
  EXPECT_EQ(Body(api_.Send("GET", "snapshots/" + member))["snapshot"]["group_snapshot_id"], id);
  api_.Set(Table::kSnapshots, member, {{"status", Status(SnapshotStatus::kAvailable)}});
  EXPECT_EQ(api_.Send("DELETE", "snapshots/" + member).status, 400);

  // A group with a group snapshot cannot be deleted.
  EXPECT_EQ(
      api_.Send("POST", "groups/" + group + "/action", {{"delete", {{"delete-volumes", true}}}})
          .status,
      400);

  ASSERT_TRUE(TryCompleteGroupSnapshot(store_, api_.clock(), id).has_value());
  EXPECT_EQ(Body(api_.Send("GET", "group_snapshots/" + id))["group_snapshot"]["status"],
            "creating");
  api_.Set(Table::kSnapshots,
           TextOf(members[1], "id"),
           {{"status", Status(SnapshotStatus::kAvailable)}});
  ASSERT_TRUE(TryCompleteGroupSnapshot(store_, api_.clock(), id).has_value());
  EXPECT_EQ(Body(api_.Send("GET", "group_snapshots/" + id))["group_snapshot"]["status"],
            "available");
  EXPECT_EQ(Body(api_.Send("GET", "group_snapshots/detail"))["group_snapshots"].size(), 1u);

  // Reset (3.19), then delete: the members' deletes are queued, the last completes it.
  ASSERT_EQ(api_.Send("POST",
                      "group_snapshots/" + id + "/action",
                      {{"reset_status", {{"status", "error"}}}},
                      "3.19")
                .status,
            202);
  ASSERT_EQ(api_.Send("DELETE", "group_snapshots/" + id).status, 202);
  for (const ports::Row& row : members) {
    EXPECT_EQ(TextOf(api_.Row(Table::kSnapshots, TextOf(row, "id")), "status"),
              domain::StoredName(SnapshotStatus::kDeletingQueued));
    api_.Set(Table::kSnapshots,
             TextOf(row, "id"),
             {{"status", Status(SnapshotStatus::kDeleted)}, {"deleted", std::int64_t{1}}});
  }
  ASSERT_TRUE(TryCompleteGroupSnapshot(store_, api_.clock(), id).has_value());
  EXPECT_EQ(api_.Send("GET", "group_snapshots/" + id).status, 404);
  (void)first;
  (void)second;
}

TEST_F(GroupsApiTest, AMemberInErrorPutsTheGroupSnapshotInError) {
  const std::string volume_type = api_.VolumeType();
  const std::string group = api_.Group(api_.GroupType(), volume_type);
  api_.MemberVolume(group, volume_type);
  api_.MemberVolume(group, volume_type);
  const std::string id =
      Body(api_.Send("POST",
                     "group_snapshots",
                     {{"group_snapshot", {{"group_id", group}}}}))["group_snapshot"]["id"];
  std::vector<ports::Row> members = api_.Members(Table::kSnapshots, "group_snapshot_id", id);
  ASSERT_EQ(members.size(), 2u);
  api_.Set(
      Table::kSnapshots, TextOf(members[0], "id"), {{"status", Status(SnapshotStatus::kError)}});
  ASSERT_TRUE(TryCompleteGroupSnapshot(store_, api_.clock(), id).has_value());
  EXPECT_EQ(TextOf(api_.Row(Table::kGroupSnapshots, id), "status"), "creating");
  api_.Set(Table::kSnapshots,
           TextOf(members[1], "id"),
           {{"status", Status(SnapshotStatus::kAvailable)}});
  ASSERT_TRUE(TryCompleteGroupSnapshot(store_, api_.clock(), id).has_value());
  EXPECT_EQ(TextOf(api_.Row(Table::kGroupSnapshots, id), "status"), "error");
}

TEST_F(GroupsApiTest, CreateFromSourceMakesOneMemberPerSource) {
  const std::string volume_type = api_.VolumeType();
  const std::string group = api_.Group(api_.GroupType(), volume_type);
  const std::string volume = api_.MemberVolume(group, volume_type);
  EXPECT_EQ(
      api_.Send(
              "POST", "groups/action", {{"create-from-src", {{"source_group_id", group}}}}, "3.13")
          .status,
      404);
  EXPECT_EQ(api_.Send("POST", "groups/action", {{"create-from-src", json::object()}}).status, 400);
  auto created = api_.Send(
      "POST", "groups/action", {{"create-from-src", {{"source_group_id", group}, {"name", "c"}}}});
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string copy = Body(created)["group"]["id"];
  std::vector<ports::Row> members = api_.Members(Table::kVolumes, "group_id", copy);
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(TextOf(members[0], "source_volid"), volume);
  json shown = Body(api_.Send("GET", "groups/" + copy))["group"];
  EXPECT_EQ(shown["status"], "creating");
  EXPECT_EQ(shown["source_group_id"], group);
  // The node finishes the clone: the group is available.
  api_.Set(
      Table::kVolumes, TextOf(members[0], "id"), {{"status", Status(VolumeStatus::kAvailable)}});
  ASSERT_TRUE(TryCompleteGroup(store_, api_.clock(), copy).has_value());
  EXPECT_EQ(Body(api_.Send("GET", "groups/" + copy))["group"]["status"], "available");
}

// A group snapshot `creating` with two member snapshots still `creating`; its id.
std::string CreatingGroupSnapshot(ports::StateStore& store, const FakeClock& clock) {
  GroupSnapshot parent;
  parent.id = NewUuid();
  parent.project_id = std::string(kProject);
  parent.user_id = "user";
  parent.group_id = NewUuid();
  parent.group_type_id = NewUuid();
  parent.status = "creating";
  parent.created_at = FormatTimestamp(clock.WallNow());
  EXPECT_TRUE(store.Insert(Table::kGroupSnapshots, GroupSnapshotToRow(parent)).has_value());
  for (int i = 0; i < 2; ++i) {
    Snapshot snapshot;
    snapshot.id = NewUuid();
    snapshot.project_id = std::string(kProject);
    snapshot.user_id = "user";
    snapshot.volume_id = NewUuid();
    snapshot.status = SnapshotStatus::kCreating;
    snapshot.group_snapshot_id = parent.id;
    snapshot.created_at = parent.created_at;
    EXPECT_TRUE(store.Insert(Table::kSnapshots, SnapshotToRow(snapshot)).has_value());
  }
  return parent.id;
}

std::vector<std::string> Members(ports::StateStore& store, const std::string& group_snapshot_id) {
  ports::ListQuery query;
  query.filters = {ports::Expectation::Equals("group_snapshot_id", group_snapshot_id)};
  std::vector<std::string> ids;
  auto rows = store.List(Table::kSnapshots, query);
  EXPECT_TRUE(rows.has_value());
  if (rows) {
    ids.reserve(rows->size());
    for (const ports::Row& row : *rows) {
      ids.push_back(TextOf(row, "id"));
    }
  }
  return ids;
}

// Two member snapshots finish at once: whichever order their final writes and completion
// attempts interleave in, exactly one attempt completes the group snapshot.
void RaceTwoFinishers(ports::StateStore& inner, int rounds) {
  CountingStateStore store(inner);
  FakeClock clock;
  for (int round = 0; round < rounds; ++round) {
    const std::string id = CreatingGroupSnapshot(store, clock);
    std::vector<std::string> members = Members(store, id);
    ASSERT_EQ(members.size(), 2u);
    const int before = store.StatusChanges();
    std::latch start(2);
    std::vector<std::thread> finishers;
    finishers.reserve(members.size());
    for (const std::string& member : members) {
      finishers.emplace_back([&, member] {
        start.arrive_and_wait();
        auto written = store.ConditionalUpdate(
            Table::kSnapshots, member, {{"status", Status(SnapshotStatus::kAvailable)}}, {}, {});
        EXPECT_TRUE(written.has_value());
        for (int attempt = 0; attempt < 50; ++attempt) {
          if (TryCompleteGroupSnapshot(store, clock, id)) {
            return;
          }
        }
        ADD_FAILURE() << "the store never answered";
      });
    }
    for (std::thread& finisher : finishers) {
      finisher.join();
    }
    auto row = store.Get(Table::kGroupSnapshots, id);
    ASSERT_TRUE(row.has_value());
    EXPECT_EQ(TextOf(*row, "status"), "available");
    EXPECT_EQ(store.StatusChanges() - before, 1) << "round " << round;
  }
}

TEST(GroupCompletionRaceTest, ExactlyOneOfTwoFinishersCompletesInMemory) {
  MemoryStateStore store;
  RaceTwoFinishers(store, 200);
}

TEST(GroupCompletionRaceTest, ExactlyOneOfTwoFinishersCompletesOnSqlite) {
  test_support::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  adapters::sqlite::Database::Options options;
  options.path = dir.path() + "/state.db";
  auto store = adapters::SqliteStateStore::Open(options);
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  RaceTwoFinishers(**store, 50);
}

// A volume added to a group while the group is deleted (without delete-volumes), by two API
// servers at once: exactly one wins. The add writes the volume's group_id, then checks the group
// is still available (undoing its move if not); the delete is one conditional update guarded by
// "no live volume in the group". So either the add comes first and the delete is refused (the
// group keeps its member), or the delete does and the add is refused with the volume left out:
// never a volume in a deleted group, never both refused.
void RaceAddAgainstDelete(ports::StateStore& store, int rounds) {
  GroupsApiOptions options;
  options.quota = QuotaOptions::Unlimited();  // A group per round; quotas are not the subject.
  GroupsHarness api(store, options);
  const std::string group_type = api.GroupType();
  const std::string volume_type = api.VolumeType();
  auto created = api.Send(
      "POST", "volumes", {{"volume", {{"size", 1}, {"volume_type", volume_type}}}}, "3.13");
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string volume = Body(created)["volume"].value("id", "");
  api.Set(Table::kVolumes,
          volume,
          {{"status", Status(VolumeStatus::kAvailable)}, {"host", std::string(kHost)}});
  int add_won = 0;
  int delete_won = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::string group = api.Group(group_type, volume_type);
    std::latch start(2);
    ports::HttpResponse added;
    ports::HttpResponse deleted;
    std::thread add([&] {
      start.arrive_and_wait();
      added = api.Send("PUT", "groups/" + group, {{"group", {{"add_volumes", volume}}}});
    });
    std::thread remove([&] {
      start.arrive_and_wait();
      deleted = api.Send(
          "POST", "groups/" + group + "/action", {{"delete", {{"delete-volumes", false}}}});
    });
    add.join();
    remove.join();
    ASSERT_NE(added.status == 202, deleted.status == 202)
        << "round " << round << ": add " << added.status << " " << added.body << ", delete "
        << deleted.status << " " << deleted.body;
    const ports::Row group_row = api.Row(Table::kGroups, group);
    const ports::Row volume_row = api.Row(Table::kVolumes, volume);
    if (added.status == 202) {
      ++add_won;
      EXPECT_EQ(std::get<std::int64_t>(group_row.at("deleted")), 0) << "round " << round;
      EXPECT_EQ(TextOf(volume_row, "group_id"), group) << "round " << round;
      // Free the volume for the next round.
      ASSERT_EQ(
          api.Send("PUT", "groups/" + group, {{"group", {{"remove_volumes", volume}}}}).status,
          202);
    } else {
      ++delete_won;
      EXPECT_EQ(TextOf(volume_row, "group_id"), "") << "round " << round;
    }
  }
  EXPECT_EQ(add_won + delete_won, rounds);
  ::testing::Test::RecordProperty("add_won", add_won);
  ::testing::Test::RecordProperty("delete_won", delete_won);
}

TEST(GroupMembershipRaceTest, AddAndDeleteExcludeEachOtherInMemory) {
  MemoryStateStore store;
  RaceAddAgainstDelete(store, 100);
}

TEST(GroupMembershipRaceTest, AddAndDeleteExcludeEachOtherOnSqlite) {
  test_support::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  adapters::sqlite::Database::Options options;
  options.path = dir.path() + "/state.db";
  auto store = adapters::SqliteStateStore::Open(options);
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  RaceAddAgainstDelete(**store, 30);
}

// The fixed interleavings: both members written before either attempt (both attempts see no
// busy member: one wins, the other finds the status gone), and one attempt between the writes
// (it sees the other member busy and changes nothing).
TEST(GroupCompletionRaceTest, BothInterleavingsCompleteOnce) {
  MemoryStateStore inner;
  CountingStateStore store(inner);
  FakeClock clock;
  for (bool attempt_between : {false, true}) {
    const std::string id = CreatingGroupSnapshot(store, clock);
    std::vector<std::string> members = Members(store, id);
    ASSERT_EQ(members.size(), 2u);
    const int before = store.StatusChanges();
    auto finish = [&](const std::string& member) {
      ASSERT_TRUE(store
                      .ConditionalUpdate(Table::kSnapshots,
                                         member,
                                         {{"status", Status(SnapshotStatus::kAvailable)}},
                                         {},
                                         {})
                      .has_value());
    };
    finish(members[0]);
    if (attempt_between) {
      ASSERT_TRUE(TryCompleteGroupSnapshot(store, clock, id).has_value());
      EXPECT_EQ(store.StatusChanges(), before) << "completed with a member still creating";
      finish(members[1]);
    } else {
      finish(members[1]);
      ASSERT_TRUE(TryCompleteGroupSnapshot(store, clock, id).has_value());
    }
    ASSERT_TRUE(TryCompleteGroupSnapshot(store, clock, id).has_value());
    EXPECT_EQ(store.StatusChanges() - before, 1);
    EXPECT_EQ(TextOf(*store.Get(Table::kGroupSnapshots, id), "status"), "available");
  }
}

// The `groups` quota: a create (plain or from a source) charges groups 1 in the write of its row
// and is refused with Cinder's 413 past the limit, nothing written; the delete gives it back; the
// recount of `clinkerd quota check` agrees with the counter throughout.
void GroupsQuotaIsChargedAndReleased(ports::StateStore& store) {
  QuotaService quotas(store, QuotaOptions{});
  GroupsApiOptions options;
  options.quota.groups = 2;
  GroupsHarness api(store, options);
  auto groups_in_use = [&]() -> std::int64_t {
    auto usage = quotas.ProjectUsage(kProject);
    EXPECT_TRUE(usage.has_value());
    if (!usage) {
      return -1;
    }
    auto found = usage->find("groups");
    return found == usage->end() ? 0 : found->second;
  };
  auto recount_agrees = [&]() {
    auto counted = quotas.RecountUsage();
    auto stored = quotas.StoredUsage();
    ASSERT_TRUE(counted.has_value() && stored.has_value());
    std::int64_t counted_groups = (*counted)[std::string(kProject)]["groups"];
    EXPECT_EQ(counted_groups, (*stored)[std::string(kProject)]["groups"]);
  };
  const std::string group_type = api.GroupType();
  const std::string volume_type = api.VolumeType();
  const std::string first = api.Group(group_type, volume_type);
  const std::string second = api.Group(group_type, volume_type);
  EXPECT_EQ(groups_in_use(), 2);
  recount_agrees();

  auto refused = api.Send(
      "POST",
      "groups",
      {{"group", {{"group_type", group_type}, {"volume_types", {volume_type}}, {"name", "g"}}}});
  EXPECT_EQ(refused.status, 413) << refused.body;
  EXPECT_EQ(Body(refused)["overLimit"]["message"], "Maximum number of groups allowed (2) exceeded");
  auto refused_copy = api.Send(
      "POST", "groups/action", {{"create-from-src", {{"source_group_id", first}, {"name", "c"}}}});
  EXPECT_EQ(refused_copy.status, 413) << refused_copy.body;
  EXPECT_EQ(Body(api.Send("GET", "groups"))["groups"].size(), 2u) << "a refused create wrote";
  EXPECT_EQ(groups_in_use(), 2);

  // Deleting an empty group ends it at once and gives its quota back.
  ASSERT_EQ(
      api.Send("POST", "groups/" + second + "/action", {{"delete", {{"delete-volumes", false}}}})
          .status,
      202);
  EXPECT_EQ(api.Send("GET", "groups/" + second).status, 404);
  EXPECT_EQ(groups_in_use(), 1);
  recount_agrees();

  // A group with a member: released by the completion of its delete, exactly once.
  const std::string member = api.MemberVolume(first, volume_type);
  auto copied = api.Send(
      "POST", "groups/action", {{"create-from-src", {{"source_group_id", first}, {"name", "c"}}}});
  ASSERT_EQ(copied.status, 202) << copied.body;
  EXPECT_EQ(groups_in_use(), 2);
  const std::string copy = Body(copied)["group"]["id"];
  for (const ports::Row& row : api.Members(Table::kVolumes, "group_id", copy)) {
    api.Set(Table::kVolumes, TextOf(row, "id"), {{"status", Status(VolumeStatus::kAvailable)}});
  }
  ASSERT_TRUE(TryCompleteGroup(store, api.clock(), copy).has_value());
  recount_agrees();
  ASSERT_EQ(
      api.Send("POST", "groups/" + first + "/action", {{"delete", {{"delete-volumes", true}}}})
          .status,
      202);
  EXPECT_EQ(groups_in_use(), 2) << "released before the members are deleted";
  api.Set(Table::kVolumes,
          member,
          {{"status", Status(VolumeStatus::kDeleted)}, {"deleted", std::int64_t{1}}});
  ASSERT_TRUE(TryCompleteGroup(store, api.clock(), first).has_value());
  ASSERT_TRUE(TryCompleteGroup(store, api.clock(), first).has_value()) << "a redelivery";
  EXPECT_EQ(api.Send("GET", "groups/" + first).status, 404);
  EXPECT_EQ(groups_in_use(), 1);
  recount_agrees();
}

TEST(GroupsQuotaTest, ChargedAtCreateAndReleasedAtDeleteInMemory) {
  MemoryStateStore store;
  GroupsQuotaIsChargedAndReleased(store);
}

TEST(GroupsQuotaTest, ChargedAtCreateAndReleasedAtDeleteOnSqlite) {
  test_support::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  adapters::sqlite::Database::Options options;
  options.path = dir.path() + "/state.db";
  auto store = adapters::SqliteStateStore::Open(options);
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  GroupsQuotaIsChargedAndReleased(**store);
}

}  // namespace
}  // namespace clinker::services
