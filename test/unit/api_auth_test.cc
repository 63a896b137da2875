// Goal: check authentication and policy as a client sees them through ApiService::Handle.
// Keystone mode: a missing or unknown token is 401 with keystonemiddleware's body and a
// WWW-Authenticate challenge naming the configured identity service; an identity service that
// cannot answer is 503 and the request writes nothing; a token without a project is 403; the
// default personas hold (member manages its project, reader only reads, admin-only routes refuse
// members, an admin sees other projects and lists them with all_tenants); another project's URL
// is 400 and another project's volume 404; service tokens are checked; role names are
// case-insensitive; one token is validated once for many requests. noauth mode: a request without
// a token gets one (204), "<user>:<project>" is admin, and the policy still applies. Policy
// overrides narrow a default in both modes.
//
// Method: ApiService over the real VolumesApi, SnapshotsApi, AttachmentsApi, BackupsApi and
// ServicesApi on a MemoryStateStore and a MemoryBroker (publishes recorded, so "nothing written"
// means no volume row and no job), with a real Authenticator over a fake TokenValidator (a fixed
// answer per token, unknown tokens refused, calls counted) and a FakeClock. What the scheduler
// and volume manager would do (a volume becoming available) is written straight to the store.
// Tokens carry the roles Keystone would put in them, implied roles included (member implies
// reader in Keystone's default role hierarchy).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/domain/policy.h"
#include "clinker/ports/identity.h"
#include "clinker/services/api_service.h"
#include "clinker/services/authenticator.h"

#include "support/fake_clock.h"
#include "support/recording_job_queue.h"

namespace clinker::services {
namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStateStore;
using nlohmann::json;
using test_support::FakeClock;
using test_support::RecordingJobQueue;

constexpr std::string_view kProjectA = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kProjectB = "fedcba9876543210fedcba9876543210";
constexpr std::string_view kBaseUrl = "http://clinker.test:8776";
constexpr std::string_view kKeystoneUri = "http://keystone.test:5000";

// Tokens the fake validator knows.
constexpr std::string_view kMemberA = "token-member-a";
constexpr std::string_view kReaderA = "token-reader-a";
constexpr std::string_view kMemberB = "token-member-b";
constexpr std::string_view kAdminB = "token-admin-b";  // Role spelled "Admin".
constexpr std::string_view kMixedCaseMemberA = "token-mixed-case-member-a";
constexpr std::string_view kDomainScoped = "token-domain-scoped";
constexpr std::string_view kService = "token-service";
constexpr std::string_view kNotService = "token-not-service";
constexpr std::string_view kKeystoneDown = "token-keystone-down";

using Query = std::vector<std::pair<std::string, std::string>>;

std::string ResponseHeader(const ports::HttpResponse& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key.size() == name.size() &&
        std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return value;
    }
  }
  return "";
}

json Body(const ports::HttpResponse& response) {
  json body = json::parse(response.body, nullptr, false);
  EXPECT_FALSE(body.is_discarded()) << "response body is not JSON: " << response.body;
  return body;
}

// A Cinder fault {"<name>": {"code": status, "message": ...}}; returns the message.
std::string ExpectFault(const ports::HttpResponse& response, int status, std::string_view name) {
  EXPECT_EQ(response.status, status) << response.body;
  json body = json::parse(response.body, nullptr, false);
  if (!body.is_object() || body.size() != 1 || !body.contains(name)) {
    ADD_FAILURE() << "not a " << name << " fault: " << response.body;
    return "";
  }
  const json& fault = body[std::string(name)];
  EXPECT_EQ(fault.value("code", 0), status) << response.body;
  return fault.value("message", "");
}

// keystonemiddleware's 401: its JSON body and the challenge naming the identity service.
void ExpectUnauthorized(const ports::HttpResponse& response) {
  EXPECT_EQ(response.status, 401) << response.body;
  json body = Body(response);
  ASSERT_TRUE(body.is_object() && body.size() == 1 && body.contains("error")) << response.body;
  EXPECT_EQ(body["error"].value("code", 0), 401);
  EXPECT_EQ(body["error"].value("title", ""), "Unauthorized");
  EXPECT_TRUE(body["error"].contains("message"));
  EXPECT_EQ(ResponseHeader(response, "WWW-Authenticate"),
            "Keystone uri=\"" + std::string(kKeystoneUri) + "\"");
}

// The ids of the volumes in a 200 list.
std::set<std::string> VolumeIds(const ports::HttpResponse& response) {
  EXPECT_EQ(response.status, 200) << response.body;
  std::set<std::string> ids;
  json body = Body(response);
  if (!body.contains("volumes") || !body["volumes"].is_array()) {
    ADD_FAILURE() << "no volumes list: " << response.body;
    return ids;
  }
  for (const json& volume : body["volumes"]) {
    ids.insert(volume.value("id", ""));
  }
  return ids;
}

// Keystone as a map: a fixed answer per token, unknown tokens refused; counts every call.
class FakeTokenValidator final : public ports::TokenValidator {
 public:
  void Set(std::string_view token, Result<ports::TokenInfo> outcome) {
    std::lock_guard<std::mutex> guard(mutex_);
    outcomes_.insert_or_assign(std::string(token), std::move(outcome));
  }

  Result<ports::TokenInfo> Validate(std::string_view token) override {
    std::lock_guard<std::mutex> guard(mutex_);
    ++calls_[std::string(token)];
    ++total_calls_;
    auto it = outcomes_.find(std::string(token));
    if (it == outcomes_.end()) {
      return MakeError(ErrorCode::kUnauthenticated, "the token is unknown, expired or revoked");
    }
    return it->second;
  }

  int Calls(std::string_view token) const {
    std::lock_guard<std::mutex> guard(mutex_);
    auto it = calls_.find(std::string(token));
    return it == calls_.end() ? 0 : it->second;
  }

  int TotalCalls() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return total_calls_;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, Result<ports::TokenInfo>> outcomes_;
  std::map<std::string, int> calls_;
  int total_calls_ = 0;
};

class ApiAuthTest : public ::testing::Test {
 protected:
  ApiAuthTest()
      : broker_(std::make_shared<MemoryBroker>()),
        session_(broker_),
        publisher_(session_),
        volumes_(store_, publisher_, clock_, VolumesApiOptions{}),
        snapshots_(store_, publisher_, clock_, SnapshotsApiOptions{}),
        attachments_(store_, publisher_, clock_, AttachmentsApiOptions{}),
        backups_(store_, publisher_, clock_, BackupsApiOptions{}),
        services_(store_, clock_, ServicesApiOptions{}),
        authenticator_(validator_, clock_) {
    validator_.Set(kMemberA, Token("alice", kProjectA, {"member", "reader"}));
    validator_.Set(kReaderA, Token("rita", kProjectA, {"reader"}));
    validator_.Set(kMemberB, Token("bob", kProjectB, {"member", "reader"}));
    validator_.Set(kAdminB, Token("adam", kProjectB, {"Admin"}));
    validator_.Set(kMixedCaseMemberA, Token("mia", kProjectA, {"MEMBER", "Reader"}));
    ports::TokenInfo domain_scoped = Token("dora", "", {"admin", "member", "reader"});
    domain_scoped.domain_id = "default";
    validator_.Set(kDomainScoped, domain_scoped);
    validator_.Set(kService, Token("nova", "00000000000000000000000000000005", {"service"}));
    validator_.Set(kNotService, Token("eve", "00000000000000000000000000000005", {"member"}));
    validator_.Set(kKeystoneDown,
                   MakeError(ErrorCode::kUnavailable, "keystone.test:5000 did not answer"));
    UseKeystone();
  }

  ports::TokenInfo Token(std::string_view user,
                         std::string_view project,
                         std::vector<std::string> roles) {
    ports::TokenInfo info;
    info.user_id = std::string(user) + "-id";
    info.user_name = std::string(user);
    info.user_domain_id = "default";
    info.project_id = std::string(project);
    info.project_domain_id = project.empty() ? "" : "default";
    info.roles = std::move(roles);
    info.issued_at = clock_.WallNow();
    info.expires_at = clock_.WallNow() + std::chrono::hours(1);
    return info;
  }

  // auth_strategy = keystone with `policy`.
  void UseKeystone(domain::Policy policy = domain::Policy::Default()) {
    ApiAuthOptions options;
    options.authenticator = &authenticator_;
    options.www_authenticate_uri = std::string(kKeystoneUri);
    options.policy = std::move(policy);
    Rebuild(std::move(options));
  }

  // auth_strategy = noauth with `policy`.
  void UseNoauth(domain::Policy policy = domain::Policy::Default()) {
    ApiAuthOptions options;
    options.policy = std::move(policy);
    Rebuild(std::move(options));
  }

  void Rebuild(ApiAuthOptions options) {
    api_ = std::make_unique<ApiService>(
        volumes_, snapshots_, attachments_, backups_, services_, types_, std::move(options));
  }

  static std::string Path(std::string_view project, std::string_view resource) {
    return "/v3/" + std::string(project) + "/" + std::string(resource);
  }

  // A request with X-Auth-Token `token` (none when empty) and, when given, X-Service-Token.
  static ports::HttpRequest Request(std::string method,
                                    std::string path,
                                    std::string_view token,
                                    std::string body = "",
                                    Query query = {},
                                    std::string_view service_token = "") {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.query = std::move(query);
    request.body = std::move(body);
    request.base_url = std::string(kBaseUrl);
    request.headers.emplace_back("Content-Type", "application/json");
    if (!token.empty()) {
      request.headers.emplace_back("X-Auth-Token", std::string(token));
    }
    if (!service_token.empty()) {
      request.headers.emplace_back("X-Service-Token", std::string(service_token));
    }
    return request;
  }

  ports::HttpResponse Send(const ports::HttpRequest& request) { return api_->Handle(request); }

  ports::HttpResponse Get(std::string_view token, std::string path, Query query = {}) {
    return Send(Request("GET", std::move(path), token, "", std::move(query)));
  }

  ports::HttpResponse PostVolume(std::string_view token,
                                 std::string_view project,
                                 const std::string& name) {
    json body = {{"volume", {{"name", name}, {"size", 1}}}};
    return Send(Request("POST", Path(project, "volumes"), token, body.dump()));
  }

  // Creates a volume as `token` in `project`; its id.
  std::string CreateVolume(std::string_view token,
                           std::string_view project,
                           const std::string& name) {
    ports::HttpResponse response = PostVolume(token, project, name);
    EXPECT_EQ(response.status, 202) << response.body;
    clock_.Advance(std::chrono::seconds(1));
    return Body(response)["volume"].value("id", "");
  }

  // What the scheduler and volume manager would have done: the volume is available on a host.
  void MakeAvailable(const std::string& id) {
    ports::Row values = {{"status", std::string("available")},
                         {"host", std::string("h@file#default")}};
    auto updated = store_.ConditionalUpdate(ports::Table::kVolumes, id, values, {}, {});
    ASSERT_TRUE(updated.has_value()) << updated.error().ToString();
    ASSERT_TRUE(updated->has_value()) << id;
  }

  std::string StoredStatus(const std::string& id) {
    auto row = store_.Get(ports::Table::kVolumes, id);
    if (!row) {
      ADD_FAILURE() << row.error().ToString();
      return "";
    }
    auto it = row->find("status");
    if (it == row->end() || !std::holds_alternative<std::string>(it->second)) {
      ADD_FAILURE() << "no status column";
      return "";
    }
    return std::get<std::string>(it->second);
  }

  std::size_t VolumeRows() {
    ports::ListQuery query;
    query.include_deleted = true;
    auto rows = store_.List(ports::Table::kVolumes, query);
    EXPECT_TRUE(rows.has_value());
    return rows ? rows->size() : 0;
  }

  std::size_t Published() const { return publisher_.PublishedTopics().size(); }

  MemoryStateStore store_;
  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue session_;
  RecordingJobQueue publisher_;
  VolumesApi volumes_;
  SnapshotsApi snapshots_;
  AttachmentsApi attachments_;
  BackupsApi backups_;
  ServicesApi services_;
  TypesApi types_{store_, clock_, TypesApiOptions{}};
  FakeTokenValidator validator_;
  Authenticator authenticator_;
  std::unique_ptr<ApiService> api_;
};

// --- Keystone: who is calling --------------------------------------------------------------------

TEST_F(ApiAuthTest, NoTokenIs401WithKeystoneChallenge) {
  ExpectUnauthorized(Get("", Path(kProjectA, "volumes")));
  ExpectUnauthorized(Get("", "/v3/volumes"));
  EXPECT_EQ(validator_.TotalCalls(), 0) << "nothing to validate";
}

TEST_F(ApiAuthTest, VersionDocumentsNeedNoToken) {
  // Clients discover the API before they authenticate.
  EXPECT_EQ(Get("", "/").status, 300);
  EXPECT_EQ(Get("", "/v3/").status, 200);
  EXPECT_EQ(validator_.TotalCalls(), 0);
}

TEST_F(ApiAuthTest, UnknownTokenIs401AndWritesNothing) {
  ExpectUnauthorized(Get("no-such-token", Path(kProjectA, "volumes")));
  ExpectUnauthorized(PostVolume("no-such-token", kProjectA, "v"));
  EXPECT_EQ(VolumeRows(), 0u);
  EXPECT_EQ(Published(), 0u);
  EXPECT_GE(validator_.Calls("no-such-token"), 1);
}

TEST_F(ApiAuthTest, KeystoneUnavailableIs503AndWritesNothing) {
  ports::HttpResponse response = PostVolume(kKeystoneDown, kProjectA, "v");
  EXPECT_EQ(response.status, 503) << response.body;
  EXPECT_TRUE(ResponseHeader(response, "WWW-Authenticate").empty())
      << "not the caller's fault: no challenge";
  EXPECT_EQ(VolumeRows(), 0u);
  EXPECT_EQ(Published(), 0u);

  // Not cached: the next request asks again.
  EXPECT_EQ(Get(kKeystoneDown, Path(kProjectA, "volumes")).status, 503);
  EXPECT_EQ(validator_.Calls(kKeystoneDown), 2);
}

TEST_F(ApiAuthTest, DomainScopedTokenIs403) {
  ExpectFault(Get(kDomainScoped, Path(kProjectA, "volumes")), 403, "forbidden");
  ExpectFault(Get(kDomainScoped, "/v3/volumes"), 403, "forbidden");
  ExpectFault(PostVolume(kDomainScoped, kProjectA, "v"), 403, "forbidden");
  EXPECT_EQ(VolumeRows(), 0u);
}

// --- Keystone: the default personas
// ---------------------------------------------------------------

TEST_F(ApiAuthTest, MemberCreatesAndListsOwnVolumes) {
  std::string first = CreateVolume(kMemberA, kProjectA, "one");
  std::string second = CreateVolume(kMemberA, kProjectA, "two");
  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());

  EXPECT_EQ(VolumeIds(Get(kMemberA, Path(kProjectA, "volumes"))),
            (std::set<std::string>{first, second}));
  EXPECT_EQ(VolumeIds(Get(kMemberA, Path(kProjectA, "volumes/detail"))),
            (std::set<std::string>{first, second}));
  // The project-less form names the token's project.
  EXPECT_EQ(VolumeIds(Get(kMemberA, "/v3/volumes")), (std::set<std::string>{first, second}));

  ports::HttpResponse shown = Get(kMemberA, Path(kProjectA, "volumes/" + first));
  EXPECT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["volume"].value("name", ""), "one");

  MakeAvailable(first);
  ports::HttpResponse deleted =
      Send(Request("DELETE", Path(kProjectA, "volumes/" + first), kMemberA));
  EXPECT_EQ(deleted.status, 202) << deleted.body;
}

TEST_F(ApiAuthTest, ReaderReadsButCannotCreate) {
  std::string id = CreateVolume(kMemberA, kProjectA, "shared");
  std::size_t rows = VolumeRows();
  std::size_t published = Published();

  EXPECT_EQ(VolumeIds(Get(kReaderA, Path(kProjectA, "volumes"))), (std::set<std::string>{id}));
  EXPECT_EQ(Get(kReaderA, Path(kProjectA, "volumes/" + id)).status, 200);

  EXPECT_EQ(ExpectFault(PostVolume(kReaderA, kProjectA, "mine"), 403, "forbidden"),
            "Policy doesn't allow volume:create to be performed.");
  MakeAvailable(id);
  EXPECT_EQ(
      ExpectFault(
          Send(Request("DELETE", Path(kProjectA, "volumes/" + id), kReaderA)), 403, "forbidden"),
      "Policy doesn't allow volume:delete to be performed.");
  EXPECT_EQ(VolumeRows(), rows);
  EXPECT_EQ(Published(), published);
  EXPECT_EQ(StoredStatus(id), "available");
}

TEST_F(ApiAuthTest, MemberOnAnotherProjectsUrlIs400) {
  EXPECT_EQ(ExpectFault(Get(kMemberA, Path(kProjectB, "volumes")), 400, "badRequest"),
            "Malformed request url");
  EXPECT_EQ(ExpectFault(PostVolume(kMemberA, kProjectB, "v"), 400, "badRequest"),
            "Malformed request url");
  EXPECT_EQ(VolumeRows(), 0u);
}

TEST_F(ApiAuthTest, AnotherProjectsVolumeIsHiddenFromAMemberButNotFromAnAdmin) {
  std::string of_a = CreateVolume(kMemberA, kProjectA, "of-a");
  std::string of_b = CreateVolume(kMemberB, kProjectB, "of-b");

  // A member of B: A's volume does not exist for it, and all_tenants is ignored.
  ExpectFault(Get(kMemberB, Path(kProjectB, "volumes/" + of_a)), 404, "itemNotFound");
  EXPECT_EQ(VolumeIds(Get(kMemberB, Path(kProjectB, "volumes"), {{"all_tenants", "1"}})),
            (std::set<std::string>{of_b}));

  // An admin of B (role "Admin"): shows A's volume, lists only B's by default, both with
  // all_tenants.
  ports::HttpResponse shown = Get(kAdminB, Path(kProjectB, "volumes/" + of_a));
  EXPECT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["volume"].value("id", ""), of_a);
  EXPECT_EQ(VolumeIds(Get(kAdminB, Path(kProjectB, "volumes"))), (std::set<std::string>{of_b}));
  EXPECT_EQ(VolumeIds(Get(kAdminB, Path(kProjectB, "volumes/detail"), {{"all_tenants", "1"}})),
            (std::set<std::string>{of_a, of_b}));
}

TEST_F(ApiAuthTest, OsServicesIsForAdminsOnly) {
  EXPECT_EQ(ExpectFault(Get(kMemberA, Path(kProjectA, "os-services")), 403, "forbidden"),
            "Policy doesn't allow volume_extension:services:index to be performed.");
  ExpectFault(Get(kReaderA, Path(kProjectA, "os-services")), 403, "forbidden");
  ports::HttpResponse listed = Get(kAdminB, Path(kProjectB, "os-services"));
  EXPECT_EQ(listed.status, 200) << listed.body;
  EXPECT_TRUE(Body(listed).contains("services")) << listed.body;
}

TEST_F(ApiAuthTest, ResetStatusIsForAdminsOnly) {
  std::string id = CreateVolume(kMemberA, kProjectA, "stuck");
  MakeAvailable(id);
  std::size_t published = Published();
  json reset = {{"os-reset_status", {{"status", "error"}}}};

  EXPECT_EQ(ExpectFault(
                Send(Request(
                    "POST", Path(kProjectA, "volumes/" + id + "/action"), kMemberA, reset.dump())),
                403,
                "forbidden"),
            "Policy doesn't allow volume_extension:volume_admin_actions:reset_status to be "
            "performed.");
  EXPECT_EQ(StoredStatus(id), "available");

  ports::HttpResponse by_admin =
      Send(Request("POST", Path(kProjectB, "volumes/" + id + "/action"), kAdminB, reset.dump()));
  EXPECT_EQ(by_admin.status, 202) << by_admin.body;
  EXPECT_EQ(StoredStatus(id), "error");
  EXPECT_EQ(Published(), published) << "a reset queues no job";
}

TEST_F(ApiAuthTest, RoleNamesAreCaseInsensitive) {
  // "Admin" is admin (os-services above needs admin_api); "MEMBER" / "Reader" are a member.
  EXPECT_EQ(Get(kAdminB, Path(kProjectB, "os-services")).status, 200);
  std::string id = CreateVolume(kMixedCaseMemberA, kProjectA, "mixed");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(VolumeIds(Get(kMixedCaseMemberA, Path(kProjectA, "volumes"))),
            (std::set<std::string>{id}));
  ExpectFault(Get(kMixedCaseMemberA, Path(kProjectA, "os-services")), 403, "forbidden");
}

// --- Keystone: service tokens and the cache ------------------------------------------------------

TEST_F(ApiAuthTest, ValidServiceTokenIsAccepted) {
  std::string id = CreateVolume(kMemberA, kProjectA, "for-nova");
  ports::HttpResponse shown =
      Send(Request("GET", Path(kProjectA, "volumes/" + id), kMemberA, "", {}, kService));
  EXPECT_EQ(shown.status, 200) << shown.body;
  // The user token decides who is calling: the service token's project is not the caller's.
  EXPECT_EQ(Body(shown)["volume"].value("id", ""), id);
  EXPECT_EQ(validator_.Calls(kService), 1);
}

TEST_F(ApiAuthTest, InvalidServiceTokenIs401EvenWithAGoodUserToken) {
  ExpectUnauthorized(
      Send(Request("GET", Path(kProjectA, "volumes"), kMemberA, "", {}, "no-such-service")));
  // Valid, but without a service role (service_token_roles_required by default).
  ExpectUnauthorized(
      Send(Request("GET", Path(kProjectA, "volumes"), kMemberA, "", {}, kNotService)));
  json body = {{"volume", {{"name", "v"}, {"size", 1}}}};
  ExpectUnauthorized(Send(
      Request("POST", Path(kProjectA, "volumes"), kMemberA, body.dump(), {}, "no-such-service")));
  EXPECT_EQ(VolumeRows(), 0u);
  EXPECT_EQ(Published(), 0u);
}

TEST_F(ApiAuthTest, OneTokenIsValidatedOnceForManyRequests) {
  constexpr int kRequests = 50;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_EQ(Get(kMemberA, Path(kProjectA, "volumes")).status, 200) << i;
  }
  EXPECT_EQ(validator_.Calls(kMemberA), 1);
  EXPECT_EQ(validator_.TotalCalls(), 1);
  EXPECT_EQ(authenticator_.Stats().validations, 1u);
}

// --- Policy overrides
// -----------------------------------------------------------------------------

TEST_F(ApiAuthTest, KeystonePolicyOverrideNarrowsDelete) {
  auto policy = domain::Policy::Create({{"volume:delete", "role:admin"}});
  ASSERT_TRUE(policy.has_value()) << policy.error().ToString();
  UseKeystone(*policy);

  std::string id = CreateVolume(kMemberA, kProjectA, "kept");
  MakeAvailable(id);
  std::size_t published = Published();
  EXPECT_EQ(
      ExpectFault(
          Send(Request("DELETE", Path(kProjectA, "volumes/" + id), kMemberA)), 403, "forbidden"),
      "Policy doesn't allow volume:delete to be performed.");
  EXPECT_EQ(StoredStatus(id), "available");
  EXPECT_EQ(Published(), published);

  ports::HttpResponse by_admin = Send(Request("DELETE", Path(kProjectB, "volumes/" + id), kAdminB));
  EXPECT_EQ(by_admin.status, 202) << by_admin.body;
}

// The admin actions are guarded by their policy rules only (no admin check hides in a handler),
// so a policy file that grants them to members lets a member do them, as in Cinder.
TEST_F(ApiAuthTest, PolicyFileOpensAdminActionsToMembers) {
  std::string reset_id = CreateVolume(kMemberA, kProjectA, "reset");
  std::string forced_id = CreateVolume(kMemberA, kProjectA, "forced");
  std::string deleted_id = CreateVolume(kMemberA, kProjectA, "deleted");
  for (const std::string& id : {reset_id, forced_id, deleted_id}) {
    MakeAvailable(id);
  }
  json snapshot = {{"snapshot", {{"volume_id", reset_id}, {"name", "s"}}}};
  ports::HttpResponse created =
      Send(Request("POST", Path(kProjectA, "snapshots"), kMemberA, snapshot.dump()));
  ASSERT_EQ(created.status, 202) << created.body;
  std::string snapshot_id = Body(created)["snapshot"].value("id", "");
  json reset = {{"os-reset_status", {{"status", "error"}}}};
  json force = {{"os-force_delete", json::object()}};
  auto volume_action = [&](const std::string& id, const json& body) {
    return Send(
        Request("POST", Path(kProjectA, "volumes/" + id + "/action"), kMemberA, body.dump()));
  };
  auto snapshot_reset = [&] {
    return Send(Request(
        "POST", Path(kProjectA, "snapshots/" + snapshot_id + "/action"), kMemberA, reset.dump()));
  };
  auto forced_delete = [&] {
    ports::HttpRequest request = Request(
        "DELETE", Path(kProjectA, "volumes/" + deleted_id), kMemberA, "", {{"force", "true"}});
    request.headers.emplace_back("OpenStack-API-Version", "volume 3.23");
    return Send(request);
  };

  // The defaults refuse a member.
  ExpectFault(volume_action(reset_id, reset), 403, "forbidden");
  ExpectFault(volume_action(forced_id, force), 403, "forbidden");
  ExpectFault(snapshot_reset(), 403, "forbidden");
  EXPECT_EQ(ExpectFault(forced_delete(), 403, "forbidden"),
            "Policy doesn't allow volume:force_delete to be performed.");

  auto policy = domain::Policy::Create(
      {{"volume_extension:volume_admin_actions:reset_status", "role:member"},
       {"volume_extension:volume_admin_actions:force_delete", "role:member"},
       {"volume_extension:snapshot_admin_actions:reset_status", "role:member"},
       {"volume:force_delete", "role:member"}});
  ASSERT_TRUE(policy.has_value()) << policy.error().ToString();
  UseKeystone(*policy);

  ports::HttpResponse reset_volume = volume_action(reset_id, reset);
  EXPECT_EQ(reset_volume.status, 202) << reset_volume.body;
  EXPECT_EQ(StoredStatus(reset_id), "error");
  ports::HttpResponse reset_snapshot = snapshot_reset();
  EXPECT_EQ(reset_snapshot.status, 202) << reset_snapshot.body;
  ports::HttpResponse forced = volume_action(forced_id, force);
  EXPECT_EQ(forced.status, 202) << forced.body;
  EXPECT_EQ(StoredStatus(forced_id), "deleting_queued");
  ports::HttpResponse deleted = forced_delete();
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  EXPECT_EQ(StoredStatus(deleted_id), "deleting_queued");
  // What the file did not open stays closed.
  ExpectFault(
      Send(Request(
          "POST", Path(kProjectA, "snapshots/" + snapshot_id + "/action"), kMemberA, force.dump())),
      403,
      "forbidden");
}

// --- Routing (the route table, api_routes.h) as a client sees it --------------------------------

TEST_F(ApiAuthTest, UnknownPathsMethodsAndMicroversions) {
  UseNoauth();
  const std::string token = "u:" + std::string(kProjectA);
  auto at = [&](std::string method, std::string_view resource, std::string_view version) {
    ports::HttpRequest request = Request(std::move(method), Path(kProjectA, resource), token);
    if (!version.empty()) {
      request.headers.emplace_back("OpenStack-API-Version", "volume " + std::string(version));
    }
    return Send(request);
  };
  EXPECT_EQ(ExpectFault(at("GET", "no-such-collection", ""), 404, "itemNotFound"),
            "The resource could not be found.");
  EXPECT_EQ(ExpectFault(at("GET", "volumes/v1/nothing", ""), 404, "itemNotFound"),
            "The resource could not be found.");
  ExpectFault(at("PUT", "volumes", ""), 405, "badMethod");
  ExpectFault(at("PUT", "volumes/detail", ""), 405, "badMethod");
  ExpectFault(at("DELETE", "clusters", "3.7"), 405, "badMethod");
  // Routes of a later microversion are 404 below it.
  ExpectFault(at("GET", "clusters", "3.6"), 404, "itemNotFound");
  ExpectFault(at("GET", "attachments", "3.26"), 404, "itemNotFound");
  EXPECT_EQ(at("GET", "attachments", "3.27").status, 200);
  // Below 3.12 /volumes/summary is the volume "summary", as in Cinder.
  ExpectFault(at("GET", "volumes/summary", "3.11"), 404, "itemNotFound");
  EXPECT_EQ(at("GET", "volumes/summary", "3.12").status, 200);
  // Cinder's extensions resource answers 404 to create and delete, 405 to others.
  ExpectFault(at("POST", "extensions", ""), 404, "itemNotFound");
  ExpectFault(at("PUT", "extensions", ""), 405, "badMethod");
}

// --- noauth --------------------------------------------------------------------------------------

TEST_F(ApiAuthTest, NoauthHandsOutATokenWhenNoneIsSent) {
  UseNoauth();
  ports::HttpResponse response = Get("", Path(kProjectA, "volumes"));
  EXPECT_EQ(response.status, 204) << response.body;
  EXPECT_EQ(ResponseHeader(response, "X-Auth-Token"), "admin:admin");

  ports::HttpRequest named = Request("GET", Path(kProjectA, "volumes"), "");
  named.headers.emplace_back("X-Auth-User", "joe");
  named.headers.emplace_back("X-Auth-Project-Id", std::string(kProjectA));
  ports::HttpResponse for_joe = Send(named);
  EXPECT_EQ(for_joe.status, 204);
  EXPECT_EQ(ResponseHeader(for_joe, "X-Auth-Token"), "joe:" + std::string(kProjectA));
  EXPECT_EQ(validator_.TotalCalls(), 0) << "noauth never asks Keystone";
}

TEST_F(ApiAuthTest, NoauthCallerIsAdmin) {
  UseNoauth();
  const std::string user_a = "user:" + std::string(kProjectA);
  const std::string user_b = "user:" + std::string(kProjectB);
  std::string of_a = CreateVolume(user_a, kProjectA, "of-a");
  std::string of_b = CreateVolume(user_b, kProjectB, "of-b");

  EXPECT_EQ(Get(user_a, Path(kProjectA, "os-services")).status, 200);
  EXPECT_EQ(Get(user_a, Path(kProjectA, "volumes/" + of_b)).status, 200);
  EXPECT_EQ(VolumeIds(Get(user_a, Path(kProjectA, "volumes"), {{"all_tenants", "true"}})),
            (std::set<std::string>{of_a, of_b}));

  MakeAvailable(of_b);
  json reset = {{"os-reset_status", {{"status", "error"}}}};
  EXPECT_EQ(
      Send(Request("POST", Path(kProjectA, "volumes/" + of_b + "/action"), user_a, reset.dump()))
          .status,
      202);
  EXPECT_EQ(StoredStatus(of_b), "error");
  EXPECT_EQ(validator_.TotalCalls(), 0);
}

// Found by the http_request fuzz target (fuzz/corpus/http_request/noauth_token_not_utf8): a
// project id with a byte that is not UTF-8 made the volume row, then threw out of the job
// message's JSON (500, a volume left queued with no job).
TEST_F(ApiAuthTest, NoauthRefusesATokenThatIsNotUtf8) {
  UseNoauth();
  for (std::string token : {std::string("user:0123\xff"),
                            std::string("\xc3:p"),
                            std::string("u:\xed\xa0\x80"),
                            std::string("u:\xf4\x90\x80\x80"),
                            std::string("u:\xe0\x80\x80")}) {
    json body = {{"volume", {{"size", 1}}}};
    ports::HttpResponse response = Send(Request("POST", "/v3/volumes", token, body.dump()));
    EXPECT_EQ(response.status, 401) << response.body;
  }
  EXPECT_EQ(VolumeRows(), 0u);
  EXPECT_EQ(Published(), 0u);
  // Multi-byte UTF-8 is text like any other.
  EXPECT_EQ(Get("us\xc3\xa9r:pr\xe4\xb8\xadj\xf0\x9f\x98\x80", "/v3/volumes").status, 200);
}

TEST_F(ApiAuthTest, NoauthStillAppliesThePolicy) {
  auto policy = domain::Policy::Create({{"volume:create", "!"}});
  ASSERT_TRUE(policy.has_value()) << policy.error().ToString();
  UseNoauth(*policy);
  const std::string token = "user:" + std::string(kProjectA);

  EXPECT_EQ(ExpectFault(PostVolume(token, kProjectA, "v"), 403, "forbidden"),
            "Policy doesn't allow volume:create to be performed.");
  EXPECT_EQ(VolumeRows(), 0u);
  EXPECT_EQ(Published(), 0u);
  EXPECT_EQ(Get(token, Path(kProjectA, "volumes")).status, 200) << "other rules unchanged";
}

}  // namespace
}  // namespace clinker::services
