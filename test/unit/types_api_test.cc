// Goal: check Cinder's volume types API as a client sees it, through ApiService::Handle (noauth:
// an admin) and, for members, through the handlers with a member's RequestContext: the default
// type; create, show, list (is_public filter, visibility of private types), update and delete
// with Cinder's status codes and messages; extra specs and their validations; the access lists
// of private types; the attribute rules that decide what a view shows; volumes created with a
// type (by name or id, the default, a source's), the type's name in volume views (and its id
// from 3.63); os-retype; and, above all, that deleting a type and giving a volume that type
// exclude each other: in a fixed interleaving (the delete runs inside the create or the retype,
// just before or just after its write of the volume row) and with real threads racing on the
// memory store and on SQLite, exactly one of the two wins every time.
//
// Method: ApiService over VolumesApi and TypesApi over a StateStore (MemoryStateStore, or
// SqliteStateStore in a temporary directory for the threaded race), a MemoryBroker queue and a
// FakeClock. A StateStore decorator runs a hook once, around the next write of one table, to
// force the interleavings. Rows are read from the store to check what a refusal left behind.
#include "clinker/services/types_api.h"

#include <atomic>
#include <barrier>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/sqlite/sqlite_state_store.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/api_service.h"
#include "clinker/services/volumes_api.h"

#include "support/fake_clock.h"
#include "support/recording_job_queue.h"
#include "support/temp_dir.h"

namespace clinker::services {
namespace {

// The races below make more volumes in one project than Cinder's default quotas allow.
VolumesApiOptions UnlimitedVolumesApiOptions() {
  VolumesApiOptions options;
  options.quota = QuotaOptions::Unlimited();
  return options;
}

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStateStore;
using nlohmann::json;
using ports::Table;
using test_support::FakeClock;
using test_support::RecordingJobQueue;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kMemberProject = "fedcba9876543210fedcba9876543210";
constexpr std::string_view kBaseUrl = "http://clinker.test:8776";
constexpr std::string_view kHost = "h@file#default";

json Body(const ports::HttpResponse& response) {
  json body = json::parse(response.body, nullptr, false);
  EXPECT_FALSE(body.is_discarded()) << "response body is not JSON: " << response.body;
  return body;
}

std::string FaultMessage(const ports::HttpResponse& response) {
  json body = json::parse(response.body, nullptr, false);
  if (!body.is_object() || body.empty() || !body.begin()->is_object()) {
    return "";
  }
  return body.begin()->value("message", "");
}

std::optional<std::string> TextColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::string>(it->second)) {
    return std::nullopt;
  }
  return std::get<std::string>(it->second);
}

// A StateStore decorator that runs a hook once, just before or just after the next write (an
// Insert, or a ConditionalUpdate that sets `column`) of one table. Not thread safe: tests set it
// up before the request.
class HookedStore final : public ports::StateStore {
 public:
  Result<void> Insert(Table table, const ports::Row& row) override {
    return InsertWithUsage(table, row, {});
  }

  Result<std::optional<ports::Row>> ConditionalUpdate(
      Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards) override {
    return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
  }
  enum class When { kBefore, kAfter };

  explicit HookedStore(ports::StateStore& inner) : inner_(inner) {}

  void OnNextInsert(Table table, When when, std::function<void()> hook) {
    Arm(table, "", when, std::move(hook));
  }

  void OnNextUpdateOf(Table table, std::string column, When when, std::function<void()> hook) {
    Arm(table, std::move(column), when, std::move(hook));
  }

  bool HookRan() const { return ran_; }

  Result<void> InsertWithUsage(Table table,
                               const ports::Row& row,
                               const std::vector<ports::UsageChange>& usage) override {
    const bool mine = hook_ && column_.empty() && table == table_;
    if (mine && when_ == When::kBefore) {
      RunHook();
    }
    Result<void> inserted = inner_.InsertWithUsage(table, row, usage);
    if (mine && when_ == When::kAfter) {
      RunHook();
    }
    return inserted;
  }

  Result<ports::Row> Get(Table table, std::string_view id) override {
    return inner_.Get(table, id);
  }

  Result<std::vector<ports::Row>> List(Table table, const ports::ListQuery& query) override {
    return inner_.List(table, query);
  }

  Result<std::optional<ports::Row>> ConditionalUpdateWithUsage(
      Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override {
    const bool mine = hook_ && !column_.empty() && table == table_ && values.contains(column_);
    if (mine && when_ == When::kBefore) {
      RunHook();
    }
    auto updated = inner_.ConditionalUpdateWithUsage(table, id, values, expected, guards, usage);
    if (mine && when_ == When::kAfter) {
      RunHook();
    }
    return updated;
  }

 private:
  void Arm(Table table, std::string column, When when, std::function<void()> hook) {
    table_ = table;
    column_ = std::move(column);
    when_ = when;
    hook_ = std::move(hook);
    ran_ = false;
  }

  void RunHook() {
    std::function<void()> hook = std::move(hook_);
    hook_ = nullptr;
    ran_ = true;
    hook();
  }

  ports::StateStore& inner_;
  Table table_ = Table::kVolumes;
  std::string column_;
  When when_ = When::kAfter;
  std::function<void()> hook_;
  bool ran_ = false;
};

// The whole API over one StateStore, with the helpers every test here uses.
class Harness {
 public:
  explicit Harness(ports::StateStore& store)
      : store_(store),
        broker_(std::make_shared<MemoryBroker>()),
        session_(broker_),
        publisher_(session_),
        volumes_(store, publisher_, clock_, UnlimitedVolumesApiOptions()),
        snapshots_(store, publisher_, clock_, SnapshotsApiOptions{}),
        attachments_(store, publisher_, clock_, AttachmentsApiOptions{}),
        backups_(store, publisher_, clock_, BackupsApiOptions{}),
        services_(store, clock_, ServicesApiOptions{}),
        types_(store, clock_, TypesApiOptions{}),
        api_(volumes_, snapshots_, attachments_, backups_, services_, types_) {
    // As the daemon does at start.
    auto made = types_.catalog().Default();
    EXPECT_TRUE(made.has_value()) << made.error().ToString();
    clock_.Advance(std::chrono::seconds(1));
  }

  static std::string Path(std::string_view rest) {
    return "/v3/" + std::string(kProject) + "/" + std::string(rest);
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
    request.base_url = std::string(kBaseUrl);
    request.headers = {{"X-Auth-Token", "user:" + std::string(kProject)},
                       {"Content-Type", "application/json"}};
    return request;
  }

  ports::HttpResponse Send(const ports::HttpRequest& request) { return api_.Handle(request); }

  ports::HttpResponse Get(std::string_view rest,
                          std::vector<std::pair<std::string, std::string>> query = {}) {
    return Send(Request("GET", Path(rest), "", std::move(query)));
  }

  ports::HttpResponse Post(std::string_view rest, const json& body) {
    return Send(Request("POST", Path(rest), body.dump()));
  }

  ports::HttpResponse PostRaw(std::string_view rest, std::string body) {
    return Send(Request("POST", Path(rest), std::move(body)));
  }

  ports::HttpResponse Put(std::string_view rest, const json& body) {
    return Send(Request("PUT", Path(rest), body.dump()));
  }

  ports::HttpResponse Delete(std::string_view rest) { return Send(Request("DELETE", Path(rest))); }

  // A new type (admin); returns its view.
  json CreateType(const std::string& name, const json& extra = json::object()) {
    json spec = {{"name", name}};
    spec.update(extra);
    ports::HttpResponse response = Post("types", {{"volume_type", spec}});
    EXPECT_EQ(response.status, 200) << response.body;
    clock_.Advance(std::chrono::seconds(1));
    return Body(response)["volume_type"];
  }

  ports::HttpResponse CreateVolume(const json& extra = json::object()) {
    json spec = {{"size", 1}};
    spec.update(extra);
    return Post("volumes", {{"volume", spec}});
  }

  // A volume the scheduler placed and the volume manager made available; returns its id.
  std::string AvailableVolume(const json& extra = json::object()) {
    ports::HttpResponse created = CreateVolume(extra);
    EXPECT_EQ(created.status, 202) << created.body;
    std::string id = Body(created)["volume"].value("id", "");
    auto updated = store_.ConditionalUpdate(
        Table::kVolumes,
        id,
        {{"status", std::string(domain::StoredName(domain::VolumeStatus::kAvailable))},
         {"host", std::string(kHost)}},
        {},
        {});
    EXPECT_TRUE(updated && updated->has_value());
    return id;
  }

  ports::Row Row(Table table, const std::string& id) {
    auto row = store_.Get(table, id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  std::vector<ports::Row> LiveVolumesOfType(const std::string& type_id) {
    ports::ListQuery query;
    query.filters = {ports::Expectation::Equals("volume_type_id", type_id)};
    auto rows = store_.List(Table::kVolumes, query);
    EXPECT_TRUE(rows.has_value());
    return rows ? *rows : std::vector<ports::Row>{};
  }

  std::size_t Published() const { return publisher_.PublishedTopics().size(); }

  // A member (roles member and reader) of `project`, for the handlers called directly.
  static RequestContext Member(std::string_view project = kMemberProject,
                               Microversion version = kMinMicroversion) {
    RequestContext context;
    context.user_id = "member";
    context.project_id = std::string(project);
    context.roles = {"member", "reader"};
    context.version = version;
    context.link_base = std::string(kBaseUrl) + "/v3/" + std::string(project);
    context.bookmark_base = std::string(kBaseUrl) + "/" + std::string(project);
    return context;
  }

  static RequestContext Admin(Microversion version = kMinMicroversion) {
    RequestContext context = Member(kProject, version);
    context.user_id = "user";
    context.roles = {"admin"};
    context.is_admin = true;
    return context;
  }

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
  ApiService api_;
};

void ExpectFault(const ports::HttpResponse& response, int status, std::string_view message = "") {
  EXPECT_EQ(response.status, status) << response.body;
  if (!message.empty()) {
    EXPECT_EQ(FaultMessage(response), message) << response.body;
  }
}

class TypesApiTest : public ::testing::Test {
 protected:
  MemoryStateStore store_;
  Harness h_{store_};
};

// ---------------------------------------------------------------------------------------------
// The default type

TEST_F(TypesApiTest, TheDefaultTypeIsCreatedOnceShownAtDefaultAndCannotBeDeletedOrRenamed) {
  auto first = h_.types_.catalog().Default();
  auto second = h_.types_.catalog().Default();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->id, second->id);
  EXPECT_EQ(first->name, "__DEFAULT__");
  EXPECT_EQ(first->description, "Default Volume Type");

  ports::HttpResponse shown = h_.Get("types/default");
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["volume_type"]["id"], first->id);
  EXPECT_EQ(Body(shown)["volume_type"]["name"], "__DEFAULT__");

  ExpectFault(h_.Delete("types/" + first->id),
              400,
              "The volume type " + first->id + " is a default volume type and cannot be deleted.");
  ExpectFault(h_.Put("types/" + first->id, {{"volume_type", {{"name", "renamed"}}}}), 400);
  ports::HttpResponse described =
      h_.Put("types/" + first->id, {{"volume_type", {{"description", "the default"}}}});
  EXPECT_EQ(described.status, 200) << described.body;
  EXPECT_EQ(Body(h_.Get("types/" + first->id))["volume_type"]["name"], "__DEFAULT__");
}

TEST_F(TypesApiTest, AVolumeWithoutATypeIsOfTheDefaultType) {
  ports::HttpResponse created = h_.CreateVolume();
  ASSERT_EQ(created.status, 202) << created.body;
  json volume = Body(created)["volume"];
  EXPECT_EQ(volume["volume_type"], "__DEFAULT__");
  auto type = h_.types_.catalog().Default();
  ASSERT_TRUE(type);
  EXPECT_EQ(TextColumn(h_.Row(Table::kVolumes, volume["id"]), "volume_type_id"), type->id);
  // An empty name is no type at all, as in Cinder.
  ports::HttpResponse empty = h_.CreateVolume({{"volume_type", ""}});
  ASSERT_EQ(empty.status, 202) << empty.body;
  EXPECT_EQ(Body(empty)["volume"]["volume_type"], "__DEFAULT__");
}

// ---------------------------------------------------------------------------------------------
// Create, show, list, update, delete

TEST_F(TypesApiTest, CreateShowsTheTypeAndShowAndListFindIt) {
  ports::HttpResponse created =
      h_.Post("types",
              {{"volume_type",
                {{"name", "gold"},
                 {"description", "fast"},
                 {"extra_specs", {{"vendor_name", "Open Source"}, {"storage_protocol", "local"}}},
                 {"os-volume-type-access:is_public", true}}}});
  ASSERT_EQ(created.status, 200) << created.body;
  json type = Body(created)["volume_type"];
  std::string id = type.value("id", "");
  EXPECT_TRUE(IsUuid(id)) << id;
  EXPECT_EQ(type["name"], "gold");
  EXPECT_EQ(type["description"], "fast");
  EXPECT_EQ(type["is_public"], true);
  EXPECT_EQ(type["os-volume-type-access:is_public"], true);
  EXPECT_EQ(type["extra_specs"],
            json({{"vendor_name", "Open Source"}, {"storage_protocol", "local"}}));
  EXPECT_FALSE(type.contains("qos_specs_id")) << "create answers with Cinder's older view";

  json shown = Body(h_.Get("types/" + id))["volume_type"];
  EXPECT_EQ(shown["name"], "gold");
  EXPECT_EQ(shown["extra_specs"], type["extra_specs"]);
  EXPECT_EQ(shown["os-volume-type-access:is_public"], true);
  EXPECT_TRUE(shown.contains("qos_specs_id"));
  EXPECT_TRUE(shown["qos_specs_id"].is_null());

  const json listed = Body(h_.Get("types"))["volume_types"];
  ASSERT_TRUE(listed.is_array());
  std::vector<std::string> names;
  for (const json& item : listed) {
    names.push_back(item["name"]);
  }
  // Newest first (created_at descending); the default type was made by the first look-up.
  EXPECT_EQ(names, (std::vector<std::string>{"gold", "__DEFAULT__"}));
}

TEST_F(TypesApiTest, CreateRefusesBadBodiesAndDuplicateNames) {
  h_.CreateType("dup");
  ExpectFault(h_.Post("types", {{"volume_type", {{"name", "dup"}}}}),
              409,
              "Volume Type dup already exists.");
  ExpectFault(h_.Post("types", {{"volume_type", {{"name", ""}}}}), 400);
  ExpectFault(h_.Post("types", {{"volume_type", {{"name", "   "}}}}), 400);
  ExpectFault(h_.Post("types", {{"volume_type", {{"name", 5}}}}), 400);
  ExpectFault(h_.Post("types", {{"volume_type", {{"description", "no name"}}}}), 400);
  ExpectFault(h_.Post("types", {{"volume_type", {{"name", "x"}, {"unknown", 1}}}}), 400);
  ExpectFault(h_.Post("types", {{"volume_type", {{"name", std::string(256, 'n')}}}}), 400);
  ExpectFault(
      h_.Post("types",
              {{"volume_type", {{"name", "x"}, {"os-volume-type-access:is_public", "maybe"}}}}),
      400);
  ExpectFault(h_.Post("types", {{"volume_type", {{"name", "x"}, {"extra_specs", {"a"}}}}}), 400);
  ExpectFault(h_.Post("types", {{"volume_type", {{"name", "x"}, {"extra_specs", {{"k!", "v"}}}}}}),
              400);
  ExpectFault(h_.PostRaw("types", "{"), 400);
  ExpectFault(h_.Post("types", {{"type", {{"name", "x"}}}}), 400);
}

TEST_F(TypesApiTest, UpdateChangesNameDescriptionAndVisibility) {
  std::string id = h_.CreateType("silver")["id"];
  ports::HttpResponse updated = h_.Put(
      "types/" + id,
      {{"volume_type", {{"name", "platinum"}, {"description", "new"}, {"is_public", false}}}});
  ASSERT_EQ(updated.status, 200) << updated.body;
  json type = Body(updated)["volume_type"];
  EXPECT_EQ(type["name"], "platinum");
  EXPECT_EQ(type["description"], "new");
  EXPECT_EQ(type["is_public"], false);
  EXPECT_FALSE(type.contains("os-volume-type-access:is_public")) << "not in the update view";
  json shown = Body(h_.Get("types/" + id))["volume_type"];
  EXPECT_EQ(shown["name"], "platinum");
  EXPECT_EQ(shown["is_public"], false);

  h_.CreateType("taken");
  ExpectFault(h_.Put("types/" + id, {{"volume_type", {{"name", "taken"}}}}), 409);
  ExpectFault(h_.Put("types/" + id, {{"volume_type", json::object()}}),
              400,
              "Specify volume type name, description, is_public or a combination thereof.");
  ExpectFault(h_.Put("types/" + id, {{"volume_type", {{"name", "  "}}}}),
              400,
              "Volume type name can not be empty.");
  ExpectFault(h_.Put("types/" + id, {{"volume_type", {{"is_public", "perhaps"}}}}), 400);
  ExpectFault(h_.Put("types/" + NewUuid(), {{"volume_type", {{"name", "n"}}}}), 404);
  // The same name again is no conflict with itself.
  EXPECT_EQ(h_.Put("types/" + id, {{"volume_type", {{"name", "platinum"}}}}).status, 200);
}

TEST_F(TypesApiTest, DeleteRemovesTheTypeAndAMissingOneIsNotFound) {
  std::string id = h_.CreateType("bronze")["id"];
  EXPECT_EQ(h_.Delete("types/" + id).status, 202);
  ExpectFault(h_.Get("types/" + id), 404, "Volume type " + id + " could not be found.");
  ExpectFault(h_.Delete("types/" + id), 404);
  ExpectFault(h_.Delete("types/" + NewUuid()), 404);
  // Its name is free again.
  EXPECT_EQ(h_.CreateType("bronze")["name"], "bronze");
}

TEST_F(TypesApiTest, DeleteIsRefusedWhileALiveVolumeHasTheTypeAndAllowedAfter) {
  std::string id = h_.CreateType("busy")["id"];
  std::string volume_id = h_.AvailableVolume({{"volume_type", "busy"}});
  ExpectFault(h_.Delete("types/" + id), 400, "Target volume type is still in use.");
  EXPECT_EQ(h_.Row(Table::kVolumeTypes, id).at("deleted"), ports::Value(std::int64_t{0}));

  auto deleted = h_.store_.ConditionalUpdate(
      Table::kVolumes, volume_id, {{"deleted", std::int64_t{1}}}, {}, {});
  ASSERT_TRUE(deleted && deleted->has_value());
  EXPECT_EQ(h_.Delete("types/" + id).status, 202);
}

TEST_F(TypesApiTest, ListFiltersByIsPublicForAdminsAndPaginates) {
  h_.CreateType("public-a");
  h_.CreateType("private-b", {{"os-volume-type-access:is_public", false}});
  h_.CreateType("public-c");
  auto names = [&](std::vector<std::pair<std::string, std::string>> query) {
    std::vector<std::string> out;
    ports::HttpResponse listed = h_.Get("types", std::move(query));
    EXPECT_EQ(listed.status, 200) << listed.body;
    const json body = Body(listed);
    for (const json& item : body["volume_types"]) {
      out.push_back(item["name"]);
    }
    return out;
  };
  EXPECT_EQ(names({}), (std::vector<std::string>{"public-c", "public-a", "__DEFAULT__"}));
  EXPECT_EQ(names({{"is_public", "false"}}), (std::vector<std::string>{"private-b"}));
  EXPECT_EQ(names({{"is_public", "None"}}),
            (std::vector<std::string>{"public-c", "private-b", "public-a", "__DEFAULT__"}));
  EXPECT_EQ(names({{"is_public", "none"}, {"sort", "name:asc"}}),
            (std::vector<std::string>{"__DEFAULT__", "private-b", "public-a", "public-c"}));
  ExpectFault(
      h_.Get("types", {{"is_public", "perhaps"}}), 400, "Invalid is_public filter [perhaps]");

  ports::HttpResponse page = h_.Get("types", {{"limit", "2"}});
  ASSERT_EQ(page.status, 200);
  json body = Body(page);
  ASSERT_EQ(body["volume_types"].size(), 2u);
  ASSERT_TRUE(body.contains("volume_type_links")) << body.dump();
  std::string marker = body["volume_types"][1]["id"];
  json rest = Body(h_.Get("types", {{"limit", "2"}, {"marker", marker}}));
  ASSERT_EQ(rest["volume_types"].size(), 1u);
  EXPECT_EQ(rest["volume_types"][0]["name"], "__DEFAULT__");
  EXPECT_FALSE(rest.contains("volume_type_links"));
  ExpectFault(h_.Get("types", {{"marker", NewUuid()}}), 404);
}

// ---------------------------------------------------------------------------------------------
// Members: visibility and what the views show

TEST_F(TypesApiTest, AMemberSeesPublicTypesAndPrivateOnesItsProjectWasGiven) {
  std::string open_id = h_.CreateType(
      "open", {{"extra_specs", {{"multiattach", "<is> False"}, {"vendor_name", "secret"}}}})["id"];
  std::string hidden_id =
      h_.CreateType("hidden", {{"os-volume-type-access:is_public", false}})["id"];
  std::string granted_id =
      h_.CreateType("granted", {{"os-volume-type-access:is_public", false}})["id"];
  ASSERT_EQ(h_.Post("types/" + granted_id + "/action",
                    {{"addProjectAccess", {{"project", std::string(kMemberProject)}}}})
                .status,
            202);
  const RequestContext member = Harness::Member();
  ports::HttpRequest list = Harness::Request("GET", Harness::Path("types"));
  list.query = {{"is_public", "false"}};  // Ignored for a member.
  std::vector<std::string> names;
  const json listed = Body(h_.types_.List(member, list));
  for (const json& item : listed["volume_types"]) {
    names.push_back(item["name"]);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"granted", "open", "__DEFAULT__"}));

  ExpectFault(h_.types_.Show(member, hidden_id), 404);
  EXPECT_EQ(h_.types_.Show(member, granted_id).status, 200);

  // A member sees the user-visible extra specs only, no qos_specs_id, and the access attribute.
  json shown = Body(h_.types_.Show(member, open_id))["volume_type"];
  EXPECT_EQ(shown["extra_specs"], json({{"multiattach", "<is> False"}}));
  EXPECT_FALSE(shown.contains("qos_specs_id"));
  EXPECT_EQ(shown["os-volume-type-access:is_public"], true);
  EXPECT_EQ(Body(h_.types_.ListExtraSpecs(member, open_id))["extra_specs"],
            json({{"multiattach", "<is> False"}}));
  ExpectFault(h_.types_.ShowExtraSpec(member, open_id, "vendor_name"), 404);

  // A reader is not given the access attribute (volume_extension:volume_type_access is member).
  RequestContext reader = member;
  reader.roles = {"reader"};
  EXPECT_FALSE(Body(h_.types_.Show(reader, open_id))["volume_type"].contains(
      "os-volume-type-access:is_public"));
}

TEST_F(TypesApiTest, AdminOnlyRoutesAreForbiddenToMembersThroughThePolicy) {
  // The route's rule, as ApiService checks it before the handler (api_policy.h).
  domain::PolicyCredentials member;
  member.user_id = "member";
  member.project_id = std::string(kMemberProject);
  member.roles = {"member", "reader"};
  const domain::Policy policy = domain::Policy::Default();
  for (std::string_view rule : {domain::policies::kTypeCreate,
                                domain::policies::kTypeUpdate,
                                domain::policies::kTypeDelete,
                                domain::policies::kTypeExtraSpecsCreate,
                                domain::policies::kTypeAccessAddProject,
                                domain::policies::kTypeAccessList}) {
    EXPECT_FALSE(policy.Enforce(rule, member, domain::PolicyTarget::OfCaller(member))) << rule;
  }
  for (std::string_view rule : {domain::policies::kTypeGet,
                                domain::policies::kTypeGetAll,
                                domain::policies::kVolumeRetype}) {
    EXPECT_TRUE(policy.Enforce(rule, member, domain::PolicyTarget::OfCaller(member))) << rule;
  }
}

// ---------------------------------------------------------------------------------------------
// Extra specs

TEST_F(TypesApiTest, ExtraSpecsAreCreatedListedShownUpdatedAndDeleted) {
  std::string id = h_.CreateType("specs")["id"];
  const std::string path = "types/" + id + "/extra_specs";
  ports::HttpResponse created = h_.Post(path, {{"extra_specs", {{"spec1", "val1"}}}});
  ASSERT_EQ(created.status, 200) << created.body;
  EXPECT_EQ(Body(created), json({{"extra_specs", {{"spec1", "val1"}}}}));

  ports::HttpResponse more = h_.Post(path, {{"extra_specs", {{"spec1", "val3"}, {"spec4", "v4"}}}});
  ASSERT_EQ(more.status, 200) << more.body;
  EXPECT_EQ(Body(h_.Get(path))["extra_specs"], json({{"spec1", "val3"}, {"spec4", "v4"}}));

  ports::HttpResponse updated = h_.Put(path + "/spec1", {{"spec1", "val2"}});
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(Body(updated), json({{"spec1", "val2"}}));
  EXPECT_EQ(Body(h_.Get(path + "/spec1")), json({{"spec1", "val2"}}));

  EXPECT_EQ(h_.Delete(path + "/spec1").status, 202);
  ExpectFault(
      h_.Get(path + "/spec1"), 404, "Volume Type " + id + " has no extra specs with key spec1.");
  ExpectFault(h_.Delete(path + "/spec1"), 404);
  EXPECT_EQ(Body(h_.Get("types/" + id))["volume_type"]["extra_specs"], json({{"spec4", "v4"}}));
}

TEST_F(TypesApiTest, ExtraSpecRequestsAreValidatedAsCinderDoes) {
  std::string id = h_.CreateType("strict", {{"extra_specs", {{"spec1", "val1"}}}})["id"];
  const std::string path = "types/" + id + "/extra_specs";
  const std::string missing = "types/" + NewUuid() + "/extra_specs";
  // Update: no body, two keys, a key that is not the URL's.
  ExpectFault(h_.Send(Harness::Request("PUT", Harness::Path(path + "/spec1"), "null")), 400);
  ExpectFault(h_.Put(path + "/spec1", {{"spec1", "a"}, {"spec2", "b"}}), 400);
  ExpectFault(
      h_.Put(path + "/" + NewUuid(), {{"spec1", "val2"}}), 400, "Request body and URI mismatch");
  ExpectFault(h_.Put(path + "/None", {{"spec1", "val2"}}), 400);
  ExpectFault(h_.Put(missing + "/spec1", {{"spec1", "val5"}}), 404);
  // Create: no body, a list, a key with a space, a value that is not a string.
  ExpectFault(h_.Post(path, {{"extra_specs", nullptr}}), 400);
  ExpectFault(h_.Post(path, {{"extra_specs", {"invalid"}}}), 400);
  ExpectFault(h_.Post(path, {{"extra_specs", {{"a key", "v"}}}}), 400);
  ExpectFault(h_.Post(path, {{"extra_specs", {{"k", 1}}}}), 400);
  ExpectFault(h_.Post(missing, {{"extra_specs", {{"k", "v"}}}}), 404);
  ExpectFault(
      h_.Post(path, {{"extra_specs", {{"multiattach", "<is> True"}, {"cacheable", "<is> True"}}}}),
      400,
      "cacheable cannot be set with multiattach.");
  // Reads and deletes of a missing type.
  ExpectFault(h_.Get(missing), 404);
  ExpectFault(h_.Get(missing + "/spec1"), 404);
  ExpectFault(h_.Delete(missing + "/spec1"), 404);
  ExpectFault(h_.Get(path + "/nonexistent_extra_spec_name"), 404);
  EXPECT_EQ(Body(h_.Get(path))["extra_specs"], json({{"spec1", "val1"}}));
}

TEST_F(TypesApiTest, ExtraSpecsCannotChangeWhileAVolumeHasTheType) {
  std::string id = h_.CreateType("in-use", {{"extra_specs", {{"spec1", "val1"}}}})["id"];
  h_.AvailableVolume({{"volume_type", id}});
  const std::string path = "types/" + id + "/extra_specs";
  ExpectFault(
      h_.Post(path, {{"extra_specs", {{"k", "v"}}}}), 400, "Volume Type is currently in use.");
  ExpectFault(h_.Put(path + "/spec1", {{"spec1", "v"}}), 400, "Volume Type is currently in use.");
  ExpectFault(h_.Delete(path + "/spec1"), 400, "Volume Type is currently in use.");
  EXPECT_EQ(Body(h_.Get(path))["extra_specs"], json({{"spec1", "val1"}}));
}

// ---------------------------------------------------------------------------------------------
// Access lists of private types

TEST_F(TypesApiTest, AccessIsAddedListedAndRemoved) {
  std::string id = h_.CreateType("private", {{"os-volume-type-access:is_public", false}})["id"];
  const std::string other = "00112233445566778899aabbccddeeff";
  const std::string action = "types/" + id + "/action";
  EXPECT_EQ(
      h_.Post(action, {{"addProjectAccess", {{"project", std::string(kMemberProject)}}}}).status,
      202);
  EXPECT_EQ(h_.Post(action, {{"addProjectAccess", {{"project", other}}}}).status, 202);
  ExpectFault(h_.Post(action, {{"addProjectAccess", {{"project", other}}}}),
              409,
              "Volume type access for " + id + " / " + other + " combination already exists.");

  json listed = Body(h_.Get("types/" + id + "/os-volume-type-access"));
  ASSERT_EQ(listed["volume_type_access"].size(), 2u) << listed.dump();
  for (const json& item : listed["volume_type_access"]) {
    EXPECT_EQ(item["volume_type_id"], id);
  }

  EXPECT_EQ(h_.Post(action, {{"removeProjectAccess", {{"project", other}}}}).status, 202);
  ExpectFault(h_.Post(action, {{"removeProjectAccess", {{"project", other}}}}),
              404,
              "Volume type access not found for " + id + " / " + other + " combination.");
  EXPECT_EQ(Body(h_.Get("types/" + id + "/os-volume-type-access"))["volume_type_access"].size(),
            1u);
  // Granted again after a removal.
  EXPECT_EQ(h_.Post(action, {{"addProjectAccess", {{"project", other}}}}).status, 202);

  ExpectFault(h_.Post(action, {{"addProjectAccess", {{"project", "not-a-uuid"}}}}), 400);
  ExpectFault(h_.Post(action, {{"addProjectAccess", {{"project", other}, {"x", 1}}}}), 400);
  ExpectFault(h_.Post(action, {{"unknownAction", {}}}), 400);
  ExpectFault(
      h_.Post("types/" + NewUuid() + "/action", {{"addProjectAccess", {{"project", other}}}}), 404);
  std::string public_id = h_.CreateType("everyone")["id"];
  ExpectFault(h_.Get("types/" + public_id + "/os-volume-type-access"),
              404,
              "Access list not available for public volume types.");
}

// ---------------------------------------------------------------------------------------------
// Encryption types

TEST_F(TypesApiTest, EncryptionIsCreatedShownUpdatedAndDeleted) {
  std::string id = h_.CreateType("secret")["id"];
  const std::string path = "types/" + id + "/encryption";
  EXPECT_EQ(Body(h_.Get(path)), json::object()) << "no encryption yet: an empty object";
  ports::HttpResponse created = h_.Post(path,
                                        {{"encryption",
                                          {{"provider", "LuksEncryptor"},
                                           {"key_size", 256},
                                           {"cipher", "aes-xts-plain64"},
                                           {"control_location", "front-end"}}}});
  ASSERT_EQ(created.status, 200) << created.body;
  json encryption = Body(created)["encryption"];
  EXPECT_EQ(encryption["volume_type_id"], id);
  EXPECT_TRUE(IsUuid(encryption.value("encryption_id", ""))) << encryption.dump();
  EXPECT_EQ(encryption["key_size"], 256);

  json shown = Body(h_.Get(path));
  EXPECT_EQ(shown["provider"], "LuksEncryptor");
  EXPECT_EQ(shown["cipher"], "aes-xts-plain64");
  EXPECT_EQ(shown["control_location"], "front-end");
  EXPECT_EQ(shown["encryption_id"], encryption["encryption_id"]);
  EXPECT_EQ(shown["deleted"], false);
  ExpectFault(
      h_.Post(path, {{"encryption", {{"provider", "p"}, {"control_location", "back-end"}}}}),
      400,
      "Volume type encryption for type " + id + " already exists.");

  ports::HttpResponse updated = h_.Put(
      path + "/provider",
      {{"encryption",
        {{"key_size", "128"}, {"provider", "SomeProvider"}, {"control_location", "back-end"}}}});
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(Body(updated)["encryption"]["key_size"], 128);
  shown = Body(h_.Get(path));
  EXPECT_EQ(shown["provider"], "SomeProvider");
  EXPECT_EQ(shown["key_size"], 128);
  EXPECT_EQ(shown["cipher"], "aes-xts-plain64") << "an update keeps what it does not name";
  EXPECT_EQ(Body(h_.Get(path + "/cipher")), json({{"cipher", "aes-xts-plain64"}}));
  ExpectFault(h_.Get(path + "/nothing"), 404);

  EXPECT_EQ(h_.Delete(path + "/" + shown["encryption_id"].get<std::string>()).status, 202);
  EXPECT_EQ(Body(h_.Get(path)), json::object());
  ExpectFault(h_.Delete(path + "/x"), 404);
  ExpectFault(h_.Put(path + "/provider", {{"encryption", {{"provider", "p"}}}}), 404);
}

TEST_F(TypesApiTest, EncryptionRequestsAreValidatedAndAnEncryptedTypeMakesNoVolume) {
  std::string id = h_.CreateType("locked")["id"];
  const std::string path = "types/" + id + "/encryption";
  ExpectFault(h_.Post(path, {{"encryption", {{"provider", "p"}}}}), 400);
  ExpectFault(h_.Post(path, {{"encryption", {{"provider", "p"}, {"control_location", "middle"}}}}),
              400);
  ExpectFault(h_.Post(path,
                      {{"encryption",
                        {{"provider", "p"}, {"control_location", "front-end"}, {"key_size", -1}}}}),
              400);
  ExpectFault(h_.Post(path, {{"other", {}}}), 400);
  ExpectFault(h_.Post("types/" + NewUuid() + "/encryption",
                      {{"encryption", {{"provider", "p"}, {"control_location", "front-end"}}}}),
              404);
  ASSERT_EQ(h_.Post(path, {{"encryption", {{"provider", "p"}, {"control_location", "front-end"}}}})
                .status,
            200);
  ports::HttpResponse refused = h_.CreateVolume({{"volume_type", "locked"}});
  ExpectFault(refused, 400);
  EXPECT_NE(FaultMessage(refused).find("cannot encrypt"), std::string::npos);
  std::string volume_id = h_.AvailableVolume();
  ExpectFault(
      h_.Post("volumes/" + volume_id + "/action", {{"os-retype", {{"new_type", "locked"}}}}), 400);
}

TEST_F(TypesApiTest, EncryptionCannotChangeWhileAVolumeHasTheType) {
  std::string id = h_.CreateType("used")["id"];
  h_.AvailableVolume({{"volume_type", "used"}});
  ExpectFault(h_.Post("types/" + id + "/encryption",
                      {{"encryption", {{"provider", "p"}, {"control_location", "front-end"}}}}),
              400,
              "Cannot create encryption specs. Volume type in use.");
}

// ---------------------------------------------------------------------------------------------
// Volumes with a type

TEST_F(TypesApiTest, AVolumeTakesItsTypeByNameOrIdAndShowsItsName) {
  std::string id = h_.CreateType("fast")["id"];
  for (const std::string& named : {std::string("fast"), id}) {
    ports::HttpResponse created = h_.CreateVolume({{"volume_type", named}});
    ASSERT_EQ(created.status, 202) << created.body;
    json volume = Body(created)["volume"];
    EXPECT_EQ(volume["volume_type"], "fast");
    EXPECT_EQ(TextColumn(h_.Row(Table::kVolumes, volume["id"]), "volume_type_id"), id);
    EXPECT_EQ(Body(h_.Get("volumes/" + volume["id"].get<std::string>()))["volume"]["volume_type"],
              "fast");
  }
  // A renamed type shows its new name on its volumes.
  ASSERT_EQ(h_.Put("types/" + id, {{"volume_type", {{"name", "faster"}}}}).status, 200);
  const json detail = Body(h_.Get("volumes/detail"));
  for (const json& volume : detail["volumes"]) {
    EXPECT_EQ(volume["volume_type"], "faster");
    EXPECT_FALSE(volume.contains("volume_type_id")) << "volume_type_id comes at 3.63";
  }
}

TEST_F(TypesApiTest, FromThreeSixtyThreeAVolumeViewCarriesItsTypeId) {
  std::string id = h_.CreateType("typed")["id"];
  std::string volume_id = h_.AvailableVolume({{"volume_type", "typed"}});
  json volume =
      Body(h_.volumes_.Show(Harness::Admin(kVolumeTypeIdMicroversion), volume_id))["volume"];
  EXPECT_EQ(volume["volume_type"], "typed");
  EXPECT_EQ(volume["volume_type_id"], id);
  json older = Body(h_.volumes_.Show(Harness::Admin(Microversion{3, 62}), volume_id))["volume"];
  EXPECT_FALSE(older.contains("volume_type_id"));
}

TEST_F(TypesApiTest, AnUnknownTypeIsNotFoundWithCindersMessages) {
  const std::string missing_id = NewUuid();
  ExpectFault(h_.CreateVolume({{"volume_type", "nope"}}),
              404,
              "Volume type with name nope could not be found.");
  ExpectFault(h_.CreateVolume({{"volume_type", missing_id}}),
              404,
              "Volume type " + missing_id + " could not be found.");
  ExpectFault(h_.CreateVolume({{"volume_type", 7}}), 400);
  EXPECT_EQ(h_.Published(), 0u);
}

TEST_F(TypesApiTest, APrivateTypeIsNotFoundForAMemberWithoutAccessAndUsableWithIt) {
  std::string id = h_.CreateType("mine", {{"os-volume-type-access:is_public", false}})["id"];
  const RequestContext member = Harness::Member();
  auto create = [&](const std::string& type) {
    ports::HttpRequest request =
        Harness::Request("POST",
                         Harness::Path("volumes"),
                         json({{"volume", {{"size", 1}, {"volume_type", type}}}}).dump());
    return h_.volumes_.Create(member, request);
  };
  ExpectFault(create(id), 404, "Volume type " + id + " could not be found.");
  ExpectFault(create("mine"), 404);
  ASSERT_EQ(h_.Post("types/" + id + "/action",
                    {{"addProjectAccess", {{"project", std::string(kMemberProject)}}}})
                .status,
            202);
  ports::HttpResponse created = create(id);
  ASSERT_EQ(created.status, 202) << created.body;
  EXPECT_EQ(Body(created)["volume"]["volume_type"], "mine");
}

TEST_F(TypesApiTest, AMultiattachTypeMakesMultiattachVolumes) {
  h_.CreateType("shared", {{"extra_specs", {{"multiattach", "<is> True"}}}});
  ports::HttpResponse created = h_.CreateVolume({{"volume_type", "shared"}});
  ASSERT_EQ(created.status, 202) << created.body;
  EXPECT_EQ(Body(created)["volume"]["multiattach"], true);
}

TEST_F(TypesApiTest, ACloneTakesItsSourcesType) {
  h_.CreateType("source-type");
  std::string source = h_.AvailableVolume({{"volume_type", "source-type"}});
  ports::HttpResponse clone = h_.CreateVolume({{"source_volid", source}});
  ASSERT_EQ(clone.status, 202) << clone.body;
  EXPECT_EQ(Body(clone)["volume"]["volume_type"], "source-type");
}

// ---------------------------------------------------------------------------------------------
// os-retype

TEST_F(TypesApiTest, RetypeGivesTheVolumeTheNewTypeAtOnce) {
  h_.CreateType("volume-type-1");
  std::string second = h_.CreateType("volume-type-2")["id"];
  std::string volume_id = h_.AvailableVolume({{"volume_type", "volume-type-1"}});
  json before = Body(h_.Get("volumes/" + volume_id))["volume"];
  ports::HttpResponse retyped =
      h_.Post("volumes/" + volume_id + "/action",
              {{"os-retype", {{"new_type", "volume-type-2"}, {"migration_policy", "never"}}}});
  ASSERT_EQ(retyped.status, 202) << retyped.body;
  json after = Body(h_.Get("volumes/" + volume_id))["volume"];
  EXPECT_EQ(after["volume_type"], "volume-type-2");
  EXPECT_EQ(after["status"], "available");
  EXPECT_EQ(after["os-vol-host-attr:host"], before["os-vol-host-attr:host"]);
  EXPECT_TRUE(after["migration_status"].is_null());
  EXPECT_EQ(TextColumn(h_.Row(Table::kVolumes, volume_id), "volume_type_id"), second);
  EXPECT_EQ(h_.Published(), 1u) << "a retype queues no job";

  // By id, back again; and the same type again is refused.
  std::string first = Body(h_.Get("types", {{"sort", "name:asc"}}))["volume_types"][1]["id"];
  EXPECT_EQ(
      h_.Post("volumes/" + volume_id + "/action", {{"os-retype", {{"new_type", first}}}}).status,
      202);
  ports::HttpResponse same =
      h_.Post("volumes/" + volume_id + "/action", {{"os-retype", {{"new_type", first}}}});
  ExpectFault(same, 400);
  EXPECT_NE(FaultMessage(same).find("Retype needs volume to be in available or in-use state"),
            std::string::npos);
}

TEST_F(TypesApiTest, RetypeRefusesBadRequestsUnknownTypesAndBusyVolumes) {
  h_.CreateType("target");
  std::string volume_id = h_.AvailableVolume();
  const std::string action = "volumes/" + volume_id + "/action";
  ExpectFault(h_.Post(action, {{"os-retype", json::object()}}), 400);
  ExpectFault(h_.Post(action, {{"os-retype", {{"new_type", "target"}, {"x", 1}}}}), 400);
  ExpectFault(
      h_.Post(action, {{"os-retype", {{"new_type", "target"}, {"migration_policy", "sometimes"}}}}),
      400);
  ExpectFault(h_.Post(action, {{"os-retype", {{"new_type", "nope"}}}}),
              404,
              "Volume type with name nope could not be found.");
  ExpectFault(
      h_.Post("volumes/" + NewUuid() + "/action", {{"os-retype", {{"new_type", "target"}}}}), 404);
  auto extending = h_.store_.ConditionalUpdate(
      Table::kVolumes,
      volume_id,
      {{"status", std::string(domain::StoredName(domain::VolumeStatus::kExtendingQueued))}},
      {},
      {});
  ASSERT_TRUE(extending && extending->has_value());
  ExpectFault(h_.Post(action, {{"os-retype", {{"new_type", "target"}}}}), 400);
  EXPECT_EQ(Body(h_.Get("volumes/" + volume_id))["volume"]["volume_type"], "__DEFAULT__");
}

TEST_F(TypesApiTest, AMemberRetypesItsVolumeToAPrivateTypeAsCinderLooksItUpElevated) {
  std::string id = h_.CreateType("private", {{"os-volume-type-access:is_public", false}})["id"];
  const RequestContext member = Harness::Member(kProject);
  std::string volume_id = h_.AvailableVolume();
  ports::HttpRequest request = Harness::Request("POST",
                                                Harness::Path("volumes/" + volume_id + "/action"),
                                                json({{"os-retype", {{"new_type", id}}}}).dump());
  EXPECT_EQ(h_.volumes_.Action(member, request, volume_id).status, 202);
}

// ---------------------------------------------------------------------------------------------
// A type delete and a volume taking the type, in a fixed interleaving: the delete runs inside
// the create (or the retype), just before or just after its write of the volume row.

class TypeRaceTest : public ::testing::Test {
 protected:
  MemoryStateStore memory_;
  HookedStore store_{memory_};
  Harness h_{store_};
};

TEST_F(TypeRaceTest, TypeDeletedBeforeTheVolumeRowIsInsertedWinsAndTheVolumeIsWithdrawn) {
  std::string id = h_.CreateType("doomed")["id"];
  ports::HttpResponse deleted;
  store_.OnNextInsert(
      Table::kVolumes, HookedStore::When::kBefore, [&] { deleted = h_.Delete("types/" + id); });

  ports::HttpResponse created = h_.CreateVolume({{"volume_type", id}});

  ASSERT_TRUE(store_.HookRan());
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  ExpectFault(created, 404, "Volume type " + id + " could not be found.");
  EXPECT_TRUE(h_.LiveVolumesOfType(id).empty()) << "the volume's row must be withdrawn";
  EXPECT_EQ(h_.Published(), 0u) << "the withdrawn volume queued a job";
}

TEST_F(TypeRaceTest, TypeDeleteAfterTheVolumeRowIsInsertedIsRefusedAsInUse) {
  std::string id = h_.CreateType("kept")["id"];
  ports::HttpResponse deleted;
  store_.OnNextInsert(
      Table::kVolumes, HookedStore::When::kAfter, [&] { deleted = h_.Delete("types/" + id); });

  ports::HttpResponse created = h_.CreateVolume({{"volume_type", id}});

  ASSERT_TRUE(store_.HookRan());
  ExpectFault(deleted, 400, "Target volume type is still in use.");
  EXPECT_EQ(created.status, 202) << created.body;
  EXPECT_EQ(h_.LiveVolumesOfType(id).size(), 1u);
  EXPECT_EQ(h_.Row(Table::kVolumeTypes, id).at("deleted"), ports::Value(std::int64_t{0}));
  EXPECT_EQ(h_.Published(), 1u);
}

TEST_F(TypeRaceTest, TypeDeletedBeforeARetypeWritesTheVolumeWinsAndTheVolumeKeepsItsType) {
  std::string id = h_.CreateType("doomed")["id"];
  std::string volume_id = h_.AvailableVolume();
  ports::HttpResponse deleted;
  store_.OnNextUpdateOf(Table::kVolumes, "volume_type_id", HookedStore::When::kBefore, [&] {
    deleted = h_.Delete("types/" + id);
  });

  ports::HttpResponse retyped =
      h_.Post("volumes/" + volume_id + "/action", {{"os-retype", {{"new_type", id}}}});

  ASSERT_TRUE(store_.HookRan());
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  ExpectFault(retyped, 404, "Volume type " + id + " could not be found.");
  EXPECT_TRUE(h_.LiveVolumesOfType(id).empty());
  EXPECT_EQ(Body(h_.Get("volumes/" + volume_id))["volume"]["volume_type"], "__DEFAULT__");
}

TEST_F(TypeRaceTest, TypeDeleteAfterARetypeWroteTheVolumeIsRefusedAsInUse) {
  std::string id = h_.CreateType("kept")["id"];
  std::string volume_id = h_.AvailableVolume();
  ports::HttpResponse deleted;
  store_.OnNextUpdateOf(Table::kVolumes, "volume_type_id", HookedStore::When::kAfter, [&] {
    deleted = h_.Delete("types/" + id);
  });

  ports::HttpResponse retyped =
      h_.Post("volumes/" + volume_id + "/action", {{"os-retype", {{"new_type", id}}}});

  ASSERT_TRUE(store_.HookRan());
  ExpectFault(deleted, 400, "Target volume type is still in use.");
  EXPECT_EQ(retyped.status, 202) << retyped.body;
  EXPECT_EQ(Body(h_.Get("volumes/" + volume_id))["volume"]["volume_type"], "kept");
}

TEST_F(TypeRaceTest, AccessRemovedBeforeTheVolumeRowIsInsertedWinsForAMember) {
  std::string id = h_.CreateType("granted", {{"os-volume-type-access:is_public", false}})["id"];
  const std::string action = "types/" + id + "/action";
  ASSERT_EQ(
      h_.Post(action, {{"addProjectAccess", {{"project", std::string(kMemberProject)}}}}).status,
      202);
  ports::HttpResponse removed;
  store_.OnNextInsert(Table::kVolumes, HookedStore::When::kBefore, [&] {
    removed =
        h_.Post(action, {{"removeProjectAccess", {{"project", std::string(kMemberProject)}}}});
  });
  ports::HttpRequest request =
      Harness::Request("POST",
                       Harness::Path("volumes"),
                       json({{"volume", {{"size", 1}, {"volume_type", id}}}}).dump());

  ports::HttpResponse created = h_.volumes_.Create(Harness::Member(), request);

  ASSERT_TRUE(store_.HookRan());
  EXPECT_EQ(removed.status, 202) << removed.body;
  ExpectFault(created, 404);
  EXPECT_TRUE(h_.LiveVolumesOfType(id).empty());
}

// ---------------------------------------------------------------------------------------------
// The same race with real threads: a volume create with a type and a delete of that type,
// released together, on the memory store and on SQLite (each step its own transaction).

struct RaceCounts {
  int delete_won = 0;
  int create_won = 0;
};

RaceCounts RaceCreateAgainstTypeDelete(ports::StateStore& store, int rounds) {
  Harness h(store);
  RaceCounts counts;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string id = h.CreateType("race-" + std::to_string(round))["id"];
    ports::HttpResponse created;
    ports::HttpResponse deleted;
    std::barrier start(2);
    std::thread creator([&] {
      start.arrive_and_wait();
      created = h.CreateVolume({{"volume_type", id}});
    });
    std::thread deleter([&] {
      start.arrive_and_wait();
      deleted = h.Delete("types/" + id);
    });
    creator.join();
    deleter.join();
    const std::size_t live = h.LiveVolumesOfType(id).size();
    auto type_row = store.Get(Table::kVolumeTypes, id);
    EXPECT_TRUE(type_row.has_value());
    const bool type_deleted = type_row && type_row->at("deleted") == ports::Value(std::int64_t{1});
    if (deleted.status == 202) {
      ++counts.delete_won;
      EXPECT_EQ(created.status, 404) << created.body;
      EXPECT_EQ(live, 0u) << "a live volume has a deleted type";
      EXPECT_TRUE(type_deleted);
    } else {
      ++counts.create_won;
      EXPECT_EQ(deleted.status, 400) << deleted.body;
      EXPECT_EQ(created.status, 202) << created.body;
      EXPECT_EQ(live, 1u);
      EXPECT_FALSE(type_deleted);
    }
    if (::testing::Test::HasFailure()) {
      break;
    }
  }
  return counts;
}

TEST(TypeThreadRaceTest, ExactlyOneOfACreateAndATypeDeleteWinsOnTheMemoryStore) {
  MemoryStateStore store;
  RaceCounts counts = RaceCreateAgainstTypeDelete(store, 200);
  EXPECT_EQ(counts.delete_won + counts.create_won, 200);
}

TEST(TypeThreadRaceTest, ExactlyOneOfACreateAndATypeDeleteWinsOnSqlite) {
  test_support::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  adapters::sqlite::Database::Options options;
  options.path = dir.path() + "/state.db";
  auto store = adapters::SqliteStateStore::Open(options);
  ASSERT_TRUE(store) << store.error().ToString();
  RaceCounts counts = RaceCreateAgainstTypeDelete(**store, 60);
  EXPECT_EQ(counts.delete_won + counts.create_won, 60);
}

}  // namespace
}  // namespace clinker::services
