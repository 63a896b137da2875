#include "clinker/adapters/keystone/keystone_token_validator.h"

#include <algorithm>
#include <ctime>
#include <utility>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace clinker::adapters::keystone {
namespace {

using Json = nlohmann::json;
using WallTime = std::chrono::system_clock::time_point;

// Replies are quoted in messages up to this length: enough for Keystone's error text.
constexpr std::size_t kExcerptLength = 200;
// Idle connections kept for reuse; more concurrent validations simply open more.
constexpr std::size_t kPoolSize = 8;

struct ParsedUrl {
  std::string scheme;
  std::string host;  // With brackets for an IPv6 literal.
  int port = 0;
  std::string path;  // Ends with "/v3".
};

Result<ParsedUrl> ParseAuthUrl(std::string_view url) {
  auto invalid = [&](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "keystone auth_url '" + std::string(url) + "': " + std::string(why));
  };
  ParsedUrl out;
  std::string_view rest;
  if (url.starts_with("http://")) {
    out.scheme = "http";
    out.port = 80;
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    out.scheme = "https";
    out.port = 443;
    rest = url.substr(8);
  } else {
    return invalid("must start with http:// or https://");
  }
  if (rest.find_first_of("?#@") != std::string_view::npos) {
    return invalid("must not carry a query, a fragment or user information");
  }
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  std::string_view port_text;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return invalid("unterminated IPv6 address");
    }
    out.host = std::string(authority.substr(0, close + 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) {
      return invalid("bad port");
    }
    port_text = after.empty() ? after : after.substr(1);
  } else {
    const std::size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
    }
  }
  if (out.host.empty() || out.host == "[]") {
    return invalid("no host");
  }
  if (!port_text.empty() || authority.ends_with(':')) {
    if (port_text.empty() || port_text.size() > 5 ||
        !std::all_of(
            port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return invalid("bad port");
    }
    out.port = std::stoi(std::string(port_text));
    if (out.port < 1 || out.port > 65535) {
      return invalid("bad port");
    }
  }
  while (path.ends_with('/')) {
    path.remove_suffix(1);
  }
  out.path = std::string(path);
  if (!path.ends_with("/v3")) {
    out.path += "/v3";
  }
  return out;
}

// Reads `count` decimal digits at `pos`.
bool ReadDigits(std::string_view text, std::size_t pos, std::size_t count, int& out) {
  if (pos + count > text.size()) {
    return false;
  }
  out = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') {
      return false;
    }
    out = out * 10 + (text[i] - '0');
  }
  return true;
}

std::string StringField(const Json& object, const char* field) {
  auto it = object.find(field);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The object at `field`, or nullptr when absent or not an object.
const Json* ObjectField(const Json& object, const char* field) {
  auto it = object.find(field);
  return it != object.end() && it->is_object() ? &*it : nullptr;
}

// Fills id and name from {"id": ..., "name": ..., "domain": {"id": ..., "name": ...}}.
void ReadNamed(const Json* object,
               std::string& id,
               std::string& name,
               std::string* domain_id,
               std::string* domain_name) {
  if (object == nullptr) {
    return;
  }
  id = StringField(*object, "id");
  name = StringField(*object, "name");
  if (const Json* domain = ObjectField(*object, "domain");
      domain != nullptr && domain_id != nullptr) {
    *domain_id = StringField(*domain, "id");
    *domain_name = StringField(*domain, "name");
  }
}

template <class Setter>
void SetTimeout(Setter setter, std::chrono::milliseconds timeout) {
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
  setter(static_cast<time_t>(micros / 1000000), static_cast<time_t>(micros % 1000000));
}

void ReplaceAll(std::string& text, std::string_view secret) {
  if (secret.empty()) {
    return;
  }
  for (std::size_t at = text.find(secret); at != std::string::npos;
       at = text.find(secret, at + 3)) {
    text.replace(at, secret.size(), "***");
  }
}

}  // namespace

Result<WallTime> ParseKeystoneTime(std::string_view text) {
  auto bad = [&] {
    return MakeError(ErrorCode::kInternal,
                     "Keystone sent an unreadable time: '" + std::string(text.substr(0, 40)) + "'");
  };
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  if (!ReadDigits(text, 0, 4, year) || text.size() < 19 || text[4] != '-' ||
      !ReadDigits(text, 5, 2, month) || text[7] != '-' || !ReadDigits(text, 8, 2, day) ||
      (text[10] != 'T' && text[10] != ' ') || !ReadDigits(text, 11, 2, hour) || text[13] != ':' ||
      !ReadDigits(text, 14, 2, minute) || text[16] != ':' || !ReadDigits(text, 17, 2, second)) {
    return bad();
  }
  const std::chrono::year_month_day date{std::chrono::year(year),
                                         std::chrono::month(static_cast<unsigned>(month)),
                                         std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok() || hour > 23 || minute > 59 || second > 60) {
    return bad();
  }
  WallTime out = std::chrono::sys_days(date) + std::chrono::hours(hour) +
                 std::chrono::minutes(minute) + std::chrono::seconds(second);
  std::size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    long long micros = 0;
    int digits = 0;
    for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos, ++digits) {
      if (digits < 6) {
        micros = micros * 10 + (text[pos] - '0');
      }
    }
    if (digits == 0) {
      return bad();
    }
    for (int i = digits; i < 6; ++i) {
      micros *= 10;
    }
    out += std::chrono::microseconds(micros);
  }
  if (pos == text.size()) {
    return out;  // No zone: Keystone's naive timestamps are UTC.
  }
  if (text[pos] == 'Z' && pos + 1 == text.size()) {
    return out;
  }
  if ((text[pos] == '+' || text[pos] == '-') && pos + 6 == text.size()) {
    int offset_hours = 0;
    int offset_minutes = 0;
    if (!ReadDigits(text, pos + 1, 2, offset_hours) || text[pos + 3] != ':' ||
        !ReadDigits(text, pos + 4, 2, offset_minutes)) {
      return bad();
    }
    const auto offset = std::chrono::hours(offset_hours) + std::chrono::minutes(offset_minutes);
    return text[pos] == '+' ? out - offset : out + offset;
  }
  return bad();
}

Result<ports::TokenInfo> ParseKeystoneToken(std::string_view body) {
  const Json parsed = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return MakeError(ErrorCode::kInternal, "Keystone's token reply is not JSON");
  }
  const Json* token = ObjectField(parsed, "token");
  if (token == nullptr) {
    return MakeError(ErrorCode::kInternal, "Keystone's token reply has no \"token\" object");
  }
  ports::TokenInfo info;
  ReadNamed(ObjectField(*token, "user"),
            info.user_id,
            info.user_name,
            &info.user_domain_id,
            &info.user_domain_name);
  if (info.user_id.empty()) {
    return MakeError(ErrorCode::kInternal, "Keystone's token reply has no token.user.id");
  }
  ReadNamed(ObjectField(*token, "project"),
            info.project_id,
            info.project_name,
            &info.project_domain_id,
            &info.project_domain_name);
  ReadNamed(ObjectField(*token, "domain"), info.domain_id, info.domain_name, nullptr, nullptr);
  if (const Json* system = ObjectField(*token, "system"); system != nullptr) {
    auto all = system->find("all");
    info.system_scope = all != system->end() && all->is_boolean() && all->get<bool>();
  }
  if (auto roles = token->find("roles"); roles != token->end() && roles->is_array()) {
    for (const Json& role : *roles) {
      if (role.is_object()) {
        std::string name = StringField(role, "name");
        if (!name.empty()) {
          info.roles.push_back(std::move(name));
        }
      }
    }
  }
  if (auto admin = token->find("is_admin_project"); admin != token->end() && admin->is_boolean()) {
    info.is_admin_project = admin->get<bool>();
  }
  const std::string expires_at = StringField(*token, "expires_at");
  if (expires_at.empty()) {
    return MakeError(ErrorCode::kInternal, "Keystone's token reply has no token.expires_at");
  }
  CLINKER_ASSIGN_OR_RETURN(info.expires_at, ParseKeystoneTime(expires_at));
  if (const std::string issued_at = StringField(*token, "issued_at"); !issued_at.empty()) {
    CLINKER_ASSIGN_OR_RETURN(info.issued_at, ParseKeystoneTime(issued_at));
  }
  return info;
}

Result<std::unique_ptr<KeystoneTokenValidator>> KeystoneTokenValidator::Create(
    KeystoneTokenValidatorOptions options, const ports::Clock& clock) {
  CLINKER_ASSIGN_OR_RETURN(ParsedUrl url, ParseAuthUrl(options.auth_url));
  const std::pair<const char*, const std::string*> required[] = {
      {"username", &options.username},
      {"password", &options.password},
      {"user_domain_name", &options.user_domain_name},
      {"project_name", &options.project_name},
      {"project_domain_name", &options.project_domain_name}};
  for (const auto& [name, value] : required) {
    if (value->empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       std::string("keystone ") + name + " must be set for auth_strategy keystone");
    }
  }
  if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
    return MakeError(ErrorCode::kInvalidArgument, "keystone timeouts must be positive");
  }
  std::string endpoint = url.host + ":" + std::to_string(url.port);
  std::string base_url = url.scheme + "://" + endpoint;
  return std::unique_ptr<KeystoneTokenValidator>(new KeystoneTokenValidator(
      std::move(options), clock, std::move(base_url), std::move(endpoint), std::move(url.path)));
}

KeystoneTokenValidator::KeystoneTokenValidator(KeystoneTokenValidatorOptions options,
                                               const ports::Clock& clock,
                                               std::string base_url,
                                               std::string endpoint,
                                               std::string path_prefix)
    : options_(std::move(options)),
      clock_(clock),
      base_url_(std::move(base_url)),
      endpoint_(std::move(endpoint)),
      path_prefix_(std::move(path_prefix)) {}

KeystoneTokenValidator::~KeystoneTokenValidator() = default;

std::unique_ptr<httplib::Client> KeystoneTokenValidator::NewClient() const {
  auto client = std::make_unique<httplib::Client>(base_url_);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(true);
  SetTimeout([&](time_t s, time_t us) { client->set_connection_timeout(s, us); },
             options_.connect_timeout);
  SetTimeout([&](time_t s, time_t us) { client->set_read_timeout(s, us); },
             options_.request_timeout);
  SetTimeout([&](time_t s, time_t us) { client->set_write_timeout(s, us); },
             options_.request_timeout);
  if (base_url_.starts_with("https://")) {
    if (!options_.ca_file.empty()) {
      client->set_ca_cert_path(options_.ca_file);
    }
    client->enable_server_certificate_verification(!options_.insecure);
  }
  return client;
}

std::string KeystoneTokenValidator::Redact(std::string text,
                                           std::string_view token_a,
                                           std::string_view token_b) const {
  ReplaceAll(text, options_.password);
  // A reply that echoes the request (a proxy's error page) carries the password JSON-escaped.
  const std::string escaped = Json(options_.password).dump();
  ReplaceAll(text, std::string_view(escaped).substr(1, escaped.size() - 2));
  ReplaceAll(text, token_a);
  ReplaceAll(text, token_b);
  if (text.size() > kExcerptLength) {
    text.resize(kExcerptLength);
    text += "...";
  }
  return text;
}

Result<KeystoneTokenValidator::Reply> KeystoneTokenValidator::Send(const char* method,
                                                                   const std::string& path,
                                                                   const std::string& service_token,
                                                                   std::string_view subject_token,
                                                                   const std::string& body) {
  std::unique_ptr<httplib::Client> client;
  {
    std::lock_guard<std::mutex> guard(pool_mutex_);
    if (!pool_.empty()) {
      client = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  if (client == nullptr) {
    client = NewClient();
  }
  httplib::Headers headers{{"Accept", "application/json"}};
  if (!service_token.empty()) {
    headers.emplace("X-Auth-Token", service_token);
  }
  if (!subject_token.empty()) {
    headers.emplace("X-Subject-Token", std::string(subject_token));
  }
  const bool post = std::string_view(method) == "POST";
  httplib::Result result =
      post ? client->Post(path, headers, body, "application/json") : client->Get(path, headers);
  if (!result) {
    // The connection may be half-broken: it does not go back to the pool.
    return MakeError(ErrorCode::kUnavailable,
                     "Keystone at " + endpoint_ + " is unreachable (" + method + " " + path +
                         "): " + httplib::to_string(result.error()));
  }
  Reply reply{result->status, std::move(result->body), result->get_header_value("X-Subject-Token")};
  {
    std::lock_guard<std::mutex> guard(pool_mutex_);
    if (pool_.size() < kPoolSize) {
      pool_.push_back(std::move(client));
    }
  }
  return reply;
}

Result<void> KeystoneTokenValidator::AuthenticateLocked() {
  Json user = {{"name", options_.username},
               {"domain", {{"name", options_.user_domain_name}}},
               {"password", options_.password}};
  Json identity = Json::object();
  identity["methods"] = Json::array({"password"});
  identity["password"] = {{"user", std::move(user)}};
  Json scope = {
      {"project",
       {{"name", options_.project_name}, {"domain", {{"name", options_.project_domain_name}}}}}};
  Json auth = Json::object();
  auth["identity"] = std::move(identity);
  auth["scope"] = std::move(scope);
  const Json request = {{"auth", std::move(auth)}};

  const std::string who = "Keystone at " + endpoint_;
  const std::string credentials = "service user '" + options_.username + "' (domain '" +
                                  options_.user_domain_name + "', project '" +
                                  options_.project_name + "' in domain '" +
                                  options_.project_domain_name + "')";
  const auto requested_mono = clock_.MonoNow();
  const auto requested_wall = clock_.WallNow();
  CLINKER_ASSIGN_OR_RETURN(Reply reply,
                           Send("POST", path_prefix_ + "/auth/tokens", "", "", request.dump()));
  if (reply.status != 200 && reply.status != 201) {
    const std::string excerpt = Redact(reply.body, reply.subject_token, "");
    const std::string why = reply.status == 401 ? " rejected the credentials of Clinker's "
                                                : " could not authenticate Clinker's ";
    return MakeError(ErrorCode::kUnavailable,
                     who + why + credentials + ": HTTP " + std::to_string(reply.status) +
                         (excerpt.empty() ? "" : ": " + excerpt));
  }
  if (!ports::IsPlausibleToken(reply.subject_token)) {
    return MakeError(ErrorCode::kInternal,
                     who + " authenticated Clinker's " + credentials +
                         " but sent no usable X-Subject-Token header");
  }
  auto info = ParseKeystoneToken(reply.body);
  if (!info) {
    return MakeError(ErrorCode::kInternal,
                     who + ", authenticating Clinker's service user: " + info.error().message);
  }
  // Keystone's own issued_at..expires_at is the lifetime; measured locally on the monotonic
  // clock, so the local wall clock's skew does not matter. Without issued_at, the wall clock it is.
  const WallTime issued = info->issued_at == WallTime() ? requested_wall : info->issued_at;
  const auto lifetime = info->expires_at - issued;
  if (lifetime <= WallTime::duration::zero()) {
    return MakeError(ErrorCode::kInternal,
                     who + " issued Clinker's service user a token that has already expired");
  }
  const auto margin =
      std::min<WallTime::duration>(options_.service_token_refresh_margin, lifetime / 2);
  service_token_ = std::move(reply.subject_token);
  service_token_renew_at_ =
      requested_mono +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(lifetime - margin);
  return {};
}

Result<std::string> KeystoneTokenValidator::ServiceToken(const std::string& stale) {
  std::lock_guard<std::mutex> guard(service_mutex_);
  if (!stale.empty() && stale == service_token_) {
    service_token_.clear();  // Refused: never sent again, even if renewing fails now.
  }
  if (service_token_.empty() || clock_.MonoNow() >= service_token_renew_at_) {
    CLINKER_RETURN_IF_ERROR(AuthenticateLocked());
  }
  return service_token_;
}

Result<ports::TokenInfo> KeystoneTokenValidator::Validate(std::string_view token) {
  if (!ports::IsPlausibleToken(token)) {
    return MakeError(ErrorCode::kUnauthenticated,
                     "malformed token (empty, longer than " +
                         std::to_string(ports::kMaxTokenLength) +
                         " bytes, or not printable ASCII)");
  }
  const std::string path = path_prefix_ + "/auth/tokens?nocatalog";
  CLINKER_ASSIGN_OR_RETURN(std::string service, ServiceToken(""));
  CLINKER_ASSIGN_OR_RETURN(Reply reply, Send("GET", path, service, token, ""));
  if (reply.status == 401) {
    // Keystone no longer accepts the service token: renew it (unless another caller just did)
    // and ask once more.
    CLINKER_ASSIGN_OR_RETURN(service, ServiceToken(service));
    CLINKER_ASSIGN_OR_RETURN(reply, Send("GET", path, service, token, ""));
  }
  return ValidationAnswer(reply, service, token);
}

Result<ports::TokenInfo> KeystoneTokenValidator::ValidationAnswer(const Reply& reply,
                                                                  std::string_view service_token,
                                                                  std::string_view token) const {
  const std::string who = "Keystone at " + endpoint_;
  const std::string status = "HTTP " + std::to_string(reply.status);
  if (reply.status == 200) {
    auto info = ParseKeystoneToken(reply.body);
    if (!info) {
      return MakeError(
          ErrorCode::kInternal,
          who + ": " + info.error().message + ": " + Redact(reply.body, service_token, token));
    }
    return info;
  }
  if (reply.status == 404) {
    return MakeError(ErrorCode::kUnauthenticated,
                     "the token is unknown, expired or revoked (" + who + ": " + status + ")");
  }
  const std::string excerpt = Redact(reply.body, service_token, token);
  const std::string detail = status + (excerpt.empty() ? "" : ": " + excerpt);
  if (reply.status == 401) {
    return MakeError(
        ErrorCode::kUnavailable,
        who + " refused Clinker's service token even after renewing it (" + detail + ")");
  }
  if (reply.status == 403) {
    return MakeError(ErrorCode::kUnavailable,
                     who + " does not let Clinker's service user '" + options_.username +
                         "' validate tokens; it needs the service or admin role (" + detail + ")");
  }
  if (reply.status >= 500) {
    return MakeError(ErrorCode::kUnavailable, who + " failed to validate a token (" + detail + ")");
  }
  return MakeError(ErrorCode::kInternal,
                   who + " answered a token validation unexpectedly (" + detail + ")");
}

}  // namespace clinker::adapters::keystone
