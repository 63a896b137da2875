// Goal: check that KeystoneTokenValidator speaks Keystone v3 as keystonemiddleware does: it
// authenticates Clinker's service user once and reuses the token until shortly before it
// expires (measured on the monotonic clock), validates with GET /v3/auth/tokens?nocatalog and
// parses the token body, maps 404 to kUnauthenticated, renews a refused service token exactly
// once, and reports an unreachable, slow, failing or confused Keystone as kUnavailable or
// kInternal with messages that name host:port and never carry the password or a token.
//
// Method: a fake Keystone (an httplib::Server on a free loopback port in this process) serves
// POST and GET /v3/auth/tokens with bodies shaped like Keystone's, counts requests, and can be
// switched into failure modes. Time comes from a FakeClock, so service token expiry is exact.
// The only real waits are HTTP round trips on loopback and one deliberately slow reply.
#include "clinker/adapters/keystone/keystone_token_validator.h"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support/fake_clock.h"

namespace clinker::adapters::keystone {
namespace {

using Json = nlohmann::json;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using test_support::FakeClock;

constexpr char kPassword[] = "s3cret-Pa55\"word";
constexpr char kUserToken[] = "gAAAAABuser-token-1";

Json Named(const std::string& id, const std::string& name, const Json& domain) {
  return Json{{"id", id}, {"name", name}, {"domain", domain}};
}

// A project-scoped token body as Keystone v3 returns it (catalog left out, as ?nocatalog asks).
Json TokenBody(const std::string& user,
               const std::vector<std::string>& roles,
               const std::string& issued_at,
               const std::string& expires_at) {
  Json role_list = Json::array();
  for (const std::string& role : roles) {
    role_list.push_back({{"id", role + "-id"}, {"name", role}});
  }
  const Json domain = {{"id", "default"}, {"name", "Default"}};
  Json token = {{"methods", Json::array({"password"})},
                {"user", Named(user + "-id", user, domain)},
                {"audit_ids", Json::array({"3T2dc1CGQxyJsHdDu1xkcw"})},
                {"issued_at", issued_at},
                {"expires_at", expires_at},
                {"project", Named("f7ac731cc11f40efbc03a9f9e1d1d21f", "demo", domain)},
                {"is_domain", false},
                {"roles", role_list}};
  return Json{{"token", token}};
}

Json KeystoneError(int code, const std::string& title, const std::string& message) {
  return Json{{"error", {{"code", code}, {"title", title}, {"message", message}}}};
}

class FakeKeystone {
 public:
  enum class Mode { kNormal, kGarbage, kEcho, kServerError, kAlways401, kForbidden, kSlow };

  FakeKeystone() {
    // Idle keep-alive connections would otherwise hold Stop for the default 5 s.
    server_.set_keep_alive_timeout(1);
    server_.Post(R"((/identity)?/v3/auth/tokens)",
                 [this](const httplib::Request& req, httplib::Response& res) { Post(req, res); });
    server_.Get(R"((/identity)?/v3/auth/tokens)",
                [this](const httplib::Request& req, httplib::Response& res) { Get(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    for (int i = 0; i < 500 && !server_.is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  ~FakeKeystone() { Stop(); }

  FakeKeystone(const FakeKeystone&) = delete;
  FakeKeystone& operator=(const FakeKeystone&) = delete;

  void Stop() {
    if (thread_.joinable()) {
      server_.stop();
      thread_.join();
    }
  }

  int port() const { return port_; }

  std::string Endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

  std::string Url(const std::string& path = "/v3") const { return "http://" + Endpoint() + path; }

  KeystoneTokenValidatorOptions Options() const {
    KeystoneTokenValidatorOptions options;
    options.auth_url = Url();
    options.username = "clinker";
    options.password = kPassword;
    options.project_name = "service";
    options.request_timeout = std::chrono::milliseconds(2000);
    return options;
  }

  void AddUserToken(const std::string& token, Json body) {
    std::lock_guard<std::mutex> guard(mutex_);
    user_tokens_[token] = std::move(body);
  }

  // Keystone forgets every service token it issued (revocation, new fernet keys).
  void RevokeServiceTokens() {
    std::lock_guard<std::mutex> guard(mutex_);
    service_tokens_.clear();
  }

  void SetGetMode(Mode mode) {
    std::lock_guard<std::mutex> guard(mutex_);
    get_mode_ = mode;
  }

  void SetPostMode(Mode mode) {
    std::lock_guard<std::mutex> guard(mutex_);
    post_mode_ = mode;
  }

  void SetServiceTokenTimes(std::string issued_at, std::string expires_at) {
    std::lock_guard<std::mutex> guard(mutex_);
    service_issued_at_ = std::move(issued_at);
    service_expires_at_ = std::move(expires_at);
  }

  int posts() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return posts_;
  }

  int gets() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return gets_;
  }

  std::vector<std::string> paths() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return paths_;
  }

  bool saw_nocatalog() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return saw_nocatalog_;
  }

  bool saw_allow_expired() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return saw_allow_expired_;
  }

  std::set<std::string> issued_service_tokens() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return issued_;
  }

 private:
  static void Reply(httplib::Response& res, int status, const Json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }

  void Post(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> guard(mutex_);
    ++posts_;
    paths_.push_back(req.path);
    if (post_mode_ == Mode::kEcho) {
      res.status = 502;
      res.set_content("proxy error, your request was: " + req.body, "text/plain");
      return;
    }
    const Json body = Json::parse(req.body, nullptr, false);
    const Json user = body.is_object()
                          ? body.value("/auth/identity/password/user"_json_pointer, Json::object())
                          : Json::object();
    const Json project = body.is_object()
                             ? body.value("/auth/scope/project"_json_pointer, Json::object())
                             : Json::object();
    if (user.value("name", "") != "clinker" || user.value("password", "") != kPassword ||
        user.value("/domain/name"_json_pointer, "") != "Default" ||
        project.value("name", "") != "service" ||
        project.value("/domain/name"_json_pointer, "") != "Default") {
      Reply(
          res,
          401,
          KeystoneError(401, "Unauthorized", "The request you have made requires authentication."));
      return;
    }
    const std::string token = "gAAAAABservice-" + std::to_string(posts_);
    service_tokens_.insert(token);
    issued_.insert(token);
    res.set_header("X-Subject-Token", token);
    Reply(res,
          201,
          TokenBody("clinker", {"service", "admin"}, service_issued_at_, service_expires_at_));
  }

  void Get(const httplib::Request& req, httplib::Response& res) {
    Mode mode = Mode::kNormal;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      ++gets_;
      paths_.push_back(req.path);
      saw_nocatalog_ = saw_nocatalog_ || req.has_param("nocatalog");
      saw_allow_expired_ = saw_allow_expired_ || req.has_param("allow_expired");
      mode = get_mode_;
    }
    const std::string auth = req.get_header_value("X-Auth-Token");
    const std::string subject = req.get_header_value("X-Subject-Token");
    switch (mode) {
      case Mode::kGarbage:
        res.status = 200;
        res.set_content("<html><body>It works!</body></html>", "text/html");
        return;
      case Mode::kEcho:
        res.status = 200;
        res.set_content("{\"token\": broken " + auth + " " + subject + " " + kPassword,
                        "application/json");
        return;
      case Mode::kServerError:
        Reply(res, 500, KeystoneError(500, "Internal Server Error", "An unexpected error"));
        return;
      case Mode::kAlways401:
        Reply(res, 401, KeystoneError(401, "Unauthorized", "The request requires authentication."));
        return;
      case Mode::kForbidden:
        Reply(res, 403, KeystoneError(403, "Forbidden", "You are not authorized"));
        return;
      case Mode::kSlow:
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        break;
      case Mode::kNormal:
        break;
    }
    std::lock_guard<std::mutex> guard(mutex_);
    if (service_tokens_.count(auth) == 0) {
      Reply(res, 401, KeystoneError(401, "Unauthorized", "The request requires authentication."));
      return;
    }
    auto it = user_tokens_.find(subject);
    if (it == user_tokens_.end()) {
      Reply(res, 404, KeystoneError(404, "Not Found", "Failed to validate token"));
      return;
    }
    res.set_header("X-Subject-Token", subject);
    Reply(res, 200, it->second);
  }

  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;

  mutable std::mutex mutex_;
  std::map<std::string, Json> user_tokens_;
  std::set<std::string> service_tokens_;  // Accepted now.
  std::set<std::string> issued_;          // Ever issued.
  std::string service_issued_at_ = "2026-01-01T00:00:00.000000Z";
  std::string service_expires_at_ = "2026-01-01T01:00:00.000000Z";
  Mode get_mode_ = Mode::kNormal;
  Mode post_mode_ = Mode::kNormal;
  int posts_ = 0;
  int gets_ = 0;
  std::vector<std::string> paths_;
  bool saw_nocatalog_ = false;
  bool saw_allow_expired_ = false;
};

class KeystoneTokenValidatorTest : public ::testing::Test {
 protected:
  KeystoneTokenValidatorTest() {
    keystone_.AddUserToken(kUserToken,
                           TokenBody("alice",
                                     {"member", "reader"},
                                     "2026-01-01T00:00:00.000000Z",
                                     "2026-12-05T14:00:00.000000Z"));
  }

  std::unique_ptr<KeystoneTokenValidator> Make(KeystoneTokenValidatorOptions options) {
    auto created = KeystoneTokenValidator::Create(std::move(options), clock_);
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return created ? std::move(*created) : nullptr;
  }

  std::unique_ptr<KeystoneTokenValidator> Make() { return Make(keystone_.Options()); }

  // No error message may carry a secret: the password, a service token or the user's token.
  void ExpectNoSecrets(const Error& error) {
    EXPECT_EQ(error.message.find("s3cret"), std::string::npos) << error.message;
    EXPECT_EQ(error.message.find(kUserToken), std::string::npos) << error.message;
    for (const std::string& token : keystone_.issued_service_tokens()) {
      EXPECT_EQ(error.message.find(token), std::string::npos) << error.message;
    }
  }

  FakeClock clock_;
  FakeKeystone keystone_;
};

TEST_F(KeystoneTokenValidatorTest, ValidTokenIsParsed) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  auto info = validator->Validate(kUserToken);
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->user_id, "alice-id");
  EXPECT_EQ(info->user_name, "alice");
  EXPECT_EQ(info->user_domain_id, "default");
  EXPECT_EQ(info->user_domain_name, "Default");
  EXPECT_EQ(info->project_id, "f7ac731cc11f40efbc03a9f9e1d1d21f");
  EXPECT_EQ(info->project_name, "demo");
  EXPECT_EQ(info->project_domain_id, "default");
  EXPECT_EQ(info->project_domain_name, "Default");
  EXPECT_EQ(info->roles, (std::vector<std::string>{"member", "reader"}));
  EXPECT_TRUE(info->HasRole("Member"));
  EXPECT_FALSE(info->HasRole("admin"));
  EXPECT_TRUE(info->is_admin_project);  // Absent from the body: true, as keystonemiddleware.
  EXPECT_FALSE(info->system_scope);
  using std::chrono::December;
  EXPECT_EQ(info->expires_at,
            std::chrono::sys_days(std::chrono::year(2026) / December / 5) + hours(14));
  EXPECT_EQ(keystone_.posts(), 1);
  EXPECT_EQ(keystone_.gets(), 1);
  EXPECT_TRUE(keystone_.saw_nocatalog());
  EXPECT_FALSE(keystone_.saw_allow_expired());
}

TEST_F(KeystoneTokenValidatorTest, ServiceTokenIsReusedAcrossValidations) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  }
  EXPECT_EQ(keystone_.posts(), 1);
  EXPECT_EQ(keystone_.gets(), 5);
}

TEST_F(KeystoneTokenValidatorTest, UnknownTokenIsUnauthenticated) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  auto info = validator->Validate("gAAAAABnot-a-token");
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kUnauthenticated) << info.error().ToString();
  EXPECT_EQ(info.error().message.find("gAAAAABnot-a-token"), std::string::npos);
  ExpectNoSecrets(info.error());
}

TEST_F(KeystoneTokenValidatorTest, MalformedTokenIsRefusedWithoutAskingKeystone) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  for (const std::string& token : {std::string(),
                                   std::string("two words"),
                                   std::string("line\r\nX-Evil: 1"),
                                   std::string(ports::kMaxTokenLength + 1, 'a')}) {
    auto info = validator->Validate(token);
    ASSERT_FALSE(info.has_value());
    EXPECT_EQ(info.error().code, ErrorCode::kUnauthenticated);
  }
  EXPECT_EQ(keystone_.posts(), 0);
  EXPECT_EQ(keystone_.gets(), 0);
}

TEST_F(KeystoneTokenValidatorTest, ServiceTokenIsRenewedShortlyBeforeItExpires) {
  auto validator = Make();  // One-hour service tokens, 120 s refresh margin.
  ASSERT_NE(validator, nullptr);
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  clock_.Advance(minutes(57));
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  EXPECT_EQ(keystone_.posts(), 1);
  clock_.Advance(minutes(2));  // 59 minutes: inside the margin.
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  EXPECT_EQ(keystone_.posts(), 2);
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  EXPECT_EQ(keystone_.posts(), 2);
}

TEST_F(KeystoneTokenValidatorTest, SkewedLocalWallClockDoesNotForceRenewals) {
  // Keystone's clock says the service token lives one hour; the local wall clock is a year
  // ahead. The lifetime is measured locally on the monotonic clock, so the token is still reused.
  clock_.SetWall(clock_.WallNow() + hours(24 * 365));
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  }
  EXPECT_EQ(keystone_.posts(), 1);
}

TEST_F(KeystoneTokenValidatorTest, ShortLivedServiceTokenIsKeptForHalfItsLife) {
  // Lifetime 60 s, shorter than the 120 s margin: renewed after half of it, not on every call.
  keystone_.SetServiceTokenTimes("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z");
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  clock_.Advance(seconds(29));
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  EXPECT_EQ(keystone_.posts(), 1);
  clock_.Advance(seconds(1));
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  EXPECT_EQ(keystone_.posts(), 2);
}

TEST_F(KeystoneTokenValidatorTest, RefusedServiceTokenIsRenewedOnce) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  keystone_.RevokeServiceTokens();
  auto info = validator->Validate(kUserToken);
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(keystone_.posts(), 2);
  EXPECT_EQ(keystone_.gets(), 3);  // The refused one, then the retry.
}

TEST_F(KeystoneTokenValidatorTest, PersistentUnauthorizedIsUnavailableAfterOneRenewal) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  keystone_.SetGetMode(FakeKeystone::Mode::kAlways401);
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kUnavailable) << info.error().ToString();
  EXPECT_NE(info.error().message.find(keystone_.Endpoint()), std::string::npos);
  ExpectNoSecrets(info.error());
  EXPECT_EQ(keystone_.posts(), 2);
  EXPECT_EQ(keystone_.gets(), 2);
}

TEST_F(KeystoneTokenValidatorTest, WrongServicePasswordIsUnavailableAndNotQuoted) {
  auto options = keystone_.Options();
  options.password = "s3cret-but-wrong";
  auto validator = Make(options);
  ASSERT_NE(validator, nullptr);
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(info.error().message.find(keystone_.Endpoint()), std::string::npos);
  EXPECT_NE(info.error().message.find("'clinker'"), std::string::npos) << info.error().message;
  EXPECT_NE(info.error().message.find("HTTP 401"), std::string::npos) << info.error().message;
  ExpectNoSecrets(info.error());
  EXPECT_EQ(keystone_.gets(), 0);
}

TEST_F(KeystoneTokenValidatorTest, ForbiddenValidationIsUnavailable) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  keystone_.SetGetMode(FakeKeystone::Mode::kForbidden);
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(info.error().message.find("HTTP 403"), std::string::npos) << info.error().message;
  ExpectNoSecrets(info.error());
}

TEST_F(KeystoneTokenValidatorTest, ServerErrorIsUnavailable) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  keystone_.SetGetMode(FakeKeystone::Mode::kServerError);
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(info.error().message.find("HTTP 500"), std::string::npos) << info.error().message;
  ExpectNoSecrets(info.error());
}

TEST_F(KeystoneTokenValidatorTest, KeystoneDownIsUnavailableNamingHostAndPort) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  keystone_.Stop();  // The port is closed: connections are refused.
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(info.error().message.find(keystone_.Endpoint()), std::string::npos)
      << info.error().message;
  ExpectNoSecrets(info.error());
}

TEST_F(KeystoneTokenValidatorTest, KeystoneGoingDownAfterAuthenticationIsUnavailable) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  ASSERT_TRUE(validator->Validate(kUserToken).has_value());
  keystone_.Stop();  // A pooled keep-alive connection now leads nowhere.
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(info.error().message.find(keystone_.Endpoint()), std::string::npos)
      << info.error().message;
  ExpectNoSecrets(info.error());
}

TEST_F(KeystoneTokenValidatorTest, SlowKeystoneTimesOutAsUnavailable) {
  auto options = keystone_.Options();
  options.request_timeout = std::chrono::milliseconds(200);
  auto validator = Make(options);
  ASSERT_NE(validator, nullptr);
  keystone_.SetGetMode(FakeKeystone::Mode::kSlow);  // Answers after 1 s.
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kUnavailable) << info.error().ToString();
  EXPECT_NE(info.error().message.find(keystone_.Endpoint()), std::string::npos);
}

TEST_F(KeystoneTokenValidatorTest, GarbageReplyIsInternal) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  keystone_.SetGetMode(FakeKeystone::Mode::kGarbage);
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kInternal);
  ExpectNoSecrets(info.error());
}

TEST_F(KeystoneTokenValidatorTest, EchoedSecretsAreRedacted) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  keystone_.SetGetMode(FakeKeystone::Mode::kEcho);  // Reply quotes both tokens and the password.
  auto info = validator->Validate(kUserToken);
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code, ErrorCode::kInternal);
  EXPECT_NE(info.error().message.find("***"), std::string::npos) << info.error().message;
  ExpectNoSecrets(info.error());

  // A proxy that echoes the authentication request quotes the password JSON-escaped.
  keystone_.SetPostMode(FakeKeystone::Mode::kEcho);
  auto fresh = Make();
  ASSERT_NE(fresh, nullptr);
  auto again = fresh->Validate(kUserToken);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(again.error().message.find("HTTP 502"), std::string::npos) << again.error().message;
  ExpectNoSecrets(again.error());
}

TEST_F(KeystoneTokenValidatorTest, AuthUrlForms) {
  // Without "/v3": appended. Under a path prefix (devstack's /identity): kept.
  for (const std::string& path :
       {std::string(), std::string("/"), std::string("/identity"), std::string("/identity/v3/")}) {
    auto options = keystone_.Options();
    options.auth_url = keystone_.Url(path);
    auto validator = Make(options);
    ASSERT_NE(validator, nullptr);
    EXPECT_EQ(validator->endpoint(), keystone_.Endpoint());
    auto info = validator->Validate(kUserToken);
    EXPECT_TRUE(info.has_value()) << path << ": " << info.error().ToString();
  }
  const std::vector<std::string> paths = keystone_.paths();
  ASSERT_EQ(paths.size(), 8U);
  EXPECT_EQ(paths[0], "/v3/auth/tokens");
  EXPECT_EQ(paths[3], "/v3/auth/tokens");
  EXPECT_EQ(paths[4], "/identity/v3/auth/tokens");
  EXPECT_EQ(paths[7], "/identity/v3/auth/tokens");
}

TEST_F(KeystoneTokenValidatorTest, CreateRefusesBadOptions) {
  auto with = [&](auto change) {
    auto options = keystone_.Options();
    change(options);
    return KeystoneTokenValidator::Create(options, clock_);
  };
  using O = KeystoneTokenValidatorOptions;
  for (const char* url : {"",
                          "keystone:5000/v3",
                          "ftp://keystone/v3",
                          "http:///v3",
                          "http://keystone:99999/v3",
                          "http://keystone:x/v3",
                          "http://[::1/v3",
                          "http://keystone:5000/v3?x=1"}) {
    auto created = with([&](O& o) { o.auth_url = url; });
    ASSERT_FALSE(created.has_value()) << url;
    EXPECT_EQ(created.error().code, ErrorCode::kInvalidArgument);
  }
  auto no_password = with([](O& o) { o.password.clear(); });
  ASSERT_FALSE(no_password.has_value());
  EXPECT_EQ(no_password.error().code, ErrorCode::kInvalidArgument);
  auto no_project = with([](O& o) { o.project_name.clear(); });
  ASSERT_FALSE(no_project.has_value());

  auto v6 = with([](O& o) { o.auth_url = "https://[fd00::1]:13000/v3"; });
  ASSERT_TRUE(v6.has_value()) << v6.error().ToString();
  EXPECT_EQ((*v6)->endpoint(), "[fd00::1]:13000");
  auto default_port = with([](O& o) { o.auth_url = "http://keystone/identity"; });
  ASSERT_TRUE(default_port.has_value());
  EXPECT_EQ((*default_port)->endpoint(), "keystone:80");
  EXPECT_EQ(keystone_.posts(), 0);  // Create never contacts Keystone.
}

TEST_F(KeystoneTokenValidatorTest, ConcurrentValidationsShareOneServiceToken) {
  auto validator = Make();
  ASSERT_NE(validator, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        if (!validator->Validate(kUserToken).has_value()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(keystone_.posts(), 1);
  EXPECT_EQ(keystone_.gets(), 80);
}

TEST(ParseKeystoneTimeTest, AcceptsKeystoneForms) {
  using std::chrono::December;
  const auto base = std::chrono::sys_days(std::chrono::year(2026) / December / 5) + hours(14);

  struct Case {
    const char* text = nullptr;
    std::chrono::system_clock::time_point expected;
  };

  const Case cases[] = {
      {"2026-12-05T14:00:00.000000Z", base},
      {"2026-12-05T14:00:00Z", base},
      {"2026-12-05T14:00:00", base},
      {"2026-12-05T14:00:00.5Z", base + std::chrono::milliseconds(500)},
      {"2026-12-05T14:00:00.123456789Z", base + std::chrono::microseconds(123456)},
      {"2026-12-05T15:30:00+01:30", base},
      {"2026-12-05T13:00:00.000000-01:00", base},
  };
  for (const Case& c : cases) {
    auto parsed = ParseKeystoneTime(c.text);
    ASSERT_TRUE(parsed.has_value()) << c.text;
    EXPECT_EQ(*parsed, c.expected) << c.text;
  }
}

TEST(ParseKeystoneTimeTest, RefusesOtherText) {
  for (const char* text : {"",
                           "garbage",
                           "2026-13-05T14:00:00Z",
                           "2026-02-30T14:00:00Z",
                           "2026-12-05T24:00:00Z",
                           "2026-12-05T14:00:00.Z",
                           "2026-12-05T14:00:00ZZ",
                           "2026-12-05T14:00:00+0100",
                           "2026-12-05"}) {
    auto parsed = ParseKeystoneTime(text);
    ASSERT_FALSE(parsed.has_value()) << text;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInternal);
  }
}

TEST(ParseKeystoneTokenTest, ReadsDomainAndSystemScopeAndAdminProject) {
  const Json domain_scoped = {{"token",
                               {{"user", {{"id", "u1"}, {"name", "dom-admin"}}},
                                {"domain", {{"id", "d1"}, {"name", "Engineering"}}},
                                {"roles", Json::array({{{"id", "r"}, {"name", "admin"}}})},
                                {"is_admin_project", false},
                                {"expires_at", "2026-12-05T14:00:00.000000Z"}}}};
  auto info = ParseKeystoneToken(domain_scoped.dump());
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->domain_id, "d1");
  EXPECT_EQ(info->domain_name, "Engineering");
  EXPECT_TRUE(info->project_id.empty());
  EXPECT_FALSE(info->is_admin_project);
  EXPECT_FALSE(info->system_scope);

  const Json system_scoped = {{"token",
                               {{"user", {{"id", "u2"}}},
                                {"system", {{"all", true}}},
                                {"expires_at", "2026-12-05T14:00:00Z"}}}};
  auto system = ParseKeystoneToken(system_scoped.dump());
  ASSERT_TRUE(system.has_value()) << system.error().ToString();
  EXPECT_TRUE(system->system_scope);
  EXPECT_TRUE(system->roles.empty());
}

TEST(ParseKeystoneTokenTest, RefusesIncompleteBodies) {
  for (const std::string& body :
       {std::string("not json"),
        std::string("[]"),
        std::string(R"({"token": 1})"),
        std::string(R"({"token": {"expires_at": "2026-12-05T14:00:00Z"}})"),
        std::string(R"({"token": {"user": {"id": "u"}}})"),
        std::string(R"({"token": {"user": {"id": "u"}, "expires_at": "tomorrow"}})")}) {
    auto info = ParseKeystoneToken(body);
    ASSERT_FALSE(info.has_value()) << body;
    EXPECT_EQ(info.error().code, ErrorCode::kInternal) << body;
  }
}

}  // namespace
}  // namespace clinker::adapters::keystone
