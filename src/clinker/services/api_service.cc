#include "clinker/services/api_service.h"

#include <cctype>
#include <regex>
#include <string_view>
#include <vector>

#include "clinker/core/json_depth.h"
#include "clinker/core/log.h"
#include "clinker/core/uuid.h"
#include "clinker/services/authenticator.h"

namespace clinker::services {
namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  const std::vector<std::string_view> views = PathSegments(path);
  return {views.begin(), views.end()};
}

HttpResponse VersionsDocument(const HttpRequest& request, int status) {
  nlohmann::json version = {
      {"id", "v3.0"},
      {"status", "CURRENT"},
      {"version", kMaxMicroversion.ToString()},
      {"min_version", kMinMicroversion.ToString()},
      {"updated", "2026-11-25T00:00:00Z"},
      {"links",
       nlohmann::json::array({{{"href", "https://docs.openstack.org/"},
                               {"rel", "describedby"},
                               {"type", "text/html"}},
                              {{"href", request.base_url + "/v3/"}, {"rel", "self"}}})},
      {"media-types",
       nlohmann::json::array({{{"base", "application/json"},
                               {"type", "application/vnd.openstack.volume+json;version=3"}}})},
  };
  return JsonResponse(status, {{"versions", nlohmann::json::array({version})}});
}

bool IsProjectId(const std::string& text) {
  // Cinder's default project_id_regex.
  static const std::regex kPattern("^[0-9a-f\\-]+$");
  return std::regex_match(text, kPattern);
}

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF): what a JSON string can hold.
bool IsUtf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    char32_t code = 0;
    if (byte < 0x80) {
      ++i;
      continue;
    }
    if (byte >= 0xC2 && byte <= 0xDF) {
      length = 2;
      code = byte & 0x1Fu;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      length = 3;
      code = byte & 0x0Fu;
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      length = 4;
      code = byte & 0x07u;
    } else {
      return false;
    }
    if (i + length > text.size()) {
      return false;
    }
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0u) != 0x80u) {
        return false;
      }
      code = (code << 6u) | (next & 0x3Fu);
    }
    if ((length == 3 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) ||
        (length == 4 && (code < 0x10000 || code > 0x10FFFF))) {
      return false;
    }
    i += length;
  }
  return true;
}

HttpResponse NotFound() {
  return Fault(404, "The resource could not be found.");
}

HttpResponse MethodNotAllowed() {
  return Fault(405, "The method is not allowed for this resource.");
}

}  // namespace

HttpResponse ApiService::Handle(const HttpRequest& request) {
  HttpResponse response = RouteRequest(request);
  std::string request_id = "req-" + NewUuid();
  response.headers.emplace_back("x-openstack-request-id", request_id);
  response.headers.emplace_back("x-compute-request-id", request_id);
  log::Debug("api.request",
             {{"method", request.method},
              {"path", request.path},
              {"status", static_cast<long long>(response.status)},
              {"request_id", request_id}});
  return response;
}

HttpResponse ApiService::RouteRequest(const HttpRequest& request) {
  std::vector<std::string> segments = SplitPath(request.path);
  if (segments.empty()) {
    if (request.method != "GET") {
      return MethodNotAllowed();
    }
    return VersionsDocument(request, 300);
  }
  if (segments[0] == "metrics" && segments.size() == 1 && metrics_) {
    return request.method == "GET" ? metrics_() : MethodNotAllowed();
  }
  if (segments[0] == "healthcheck" && segments.size() == 1 && health_ != nullptr) {
    std::string ignored;
    const bool detail = request.QueryValue("detail", &ignored);
    if (detail) {
      RequestContext context;
      domain::PolicyCredentials credentials;
      if (std::optional<HttpResponse> refused = Authenticate(request, &context, &credentials)) {
        return *refused;
      }
      if (!context.is_admin) {
        return Fault(403, "The detailed health check is for admins.");
      }
    }
    return health_->Answer(request, detail);
  }
  if (segments[0] != "v3") {
    return Fault(404, "The resource could not be found.");
  }
  if (segments.size() == 1 && request.method == "GET" &&
      (request.path.empty() || request.path.back() != '/')) {
    HttpResponse redirect;
    redirect.status = 302;
    redirect.headers.emplace_back("Location", request.base_url + "/v3/");
    return redirect;
  }

  // Every v3 response, errors included, names the microversion it was served at.
  MicroversionRequest negotiated = NegotiateMicroversion(request.Header("OpenStack-API-Version"));
  HttpResponse response;
  switch (negotiated.outcome) {
    case MicroversionRequest::Outcome::kMalformed:
      response = Fault(400,
                       "API Version String " + request.Header("OpenStack-API-Version") +
                           " is of invalid format. Must be of format MajorNum.MinorNum.");
      negotiated.version = kMinMicroversion;
      break;
    case MicroversionRequest::Outcome::kUnsupported:
      response = Fault(
          406,
          "Version " + negotiated.version.ToString() + " is not supported by the API. Minimum is " +
              kMinMicroversion.ToString() + " and maximum is " + kMaxMicroversion.ToString() + ".");
      break;
    case MicroversionRequest::Outcome::kOk:
      response = RouteV3(request);
      break;
  }
  response.headers.emplace_back("OpenStack-API-Version", "volume " + negotiated.version.ToString());
  response.headers.emplace_back("Vary", "OpenStack-API-Version");
  return response;
}

HttpResponse ApiService::RouteV3(const HttpRequest& request) {
  std::vector<std::string> segments = SplitPath(request.path);
  if (segments.size() == 1) {
    if (request.method != "GET") {
      return MethodNotAllowed();
    }
    return VersionsDocument(request, 200);
  }

  // A resource URL with a trailing slash names an empty id ("/volumes/" is "/volumes/{id}" with
  // no id): Cinder's router matches nothing there and answers 404, which Tempest's negative
  // tests expect (a GET must not fall back to the list).
  if (request.path.back() == '/') {
    return NotFound();
  }

  RequestContext context;
  domain::PolicyCredentials credentials;
  if (auto refused = Authenticate(request, &context, &credentials)) {
    return std::move(*refused);
  }
  context.version = NegotiateMicroversion(request.Header("OpenStack-API-Version")).version;
  context.policy = &auth_.policy;
  context.is_admin_project = credentials.is_admin_project;
  // A raw NUL is never JSON (a string holds it as \u0000), but the JSON library takes it for the
  // end of the text and would accept what comes before it.
  if (request.body.find('\0') != std::string::npos) {
    return Fault(400, "Malformed request body");
  }
  // Before any handler parses it: a deeply nested body would overflow the stack of the JSON
  // library's recursive copies (core/json_depth.h).
  if (JsonNestingDepth(request.body, kMaxJsonRequestDepth) > kMaxJsonRequestDepth) {
    return Fault(400,
                 "Invalid JSON: the request body nests deeper than " +
                     std::to_string(kMaxJsonRequestDepth) + " levels.");
  }

  // /v3/{project_id}/<resource>... or, project-less, /v3/<resource>...
  std::size_t first = 1;
  context.link_base = request.base_url + "/v3";
  context.bookmark_base = request.base_url;
  if (!IsRouteCollection(segments[1])) {
    if (!IsProjectId(segments[1])) {
      return Fault(404, "The resource could not be found.");
    }
    if (segments[1] != context.project_id) {
      return Fault(400, "Malformed request url");
    }
    context.link_base += "/" + segments[1];
    context.bookmark_base += "/" + segments[1];
    first = 2;
  }
  std::vector<std::string> rest(segments.begin() + static_cast<std::ptrdiff_t>(first),
                                segments.end());
  // One match against the route table decides the handler, the rules and the parameters; a
  // POST .../action body is parsed there, once.
  nlohmann::json body;
  RouteMatch match = MatchRoute(request.method, rest, request.body, &context.version, &body);
  switch (match.outcome) {
    case RouteMatch::Outcome::kNotFound:
      return NotFound();
    case RouteMatch::Outcome::kMethodNotAllowed:
      return MethodNotAllowed();
    case RouteMatch::Outcome::kMatched:
    case RouteMatch::Outcome::kVersionNotFound:
      break;
  }
  const Route& route = *match.route;
  // The rules are checked before anything else, even for a route of a later microversion (a
  // 403 never reaches the database, and never depends on the version asked).
  if (auto refused = Enforce(route.RuleFor(request), credentials, context)) {
    return std::move(*refused);
  }
  if (auto refused = Enforce(route.second_rule, credentials, context)) {
    return std::move(*refused);
  }
  if (match.outcome == RouteMatch::Outcome::kVersionNotFound || !Serves(route.part)) {
    return NotFound();
  }
  RouteCall call{.context = context,
                 .request = request,
                 .segments = rest,
                 .params = std::move(match.params),
                 .body = body,
                 .action = match.action};
  return route.handler(handlers_, call);
}

std::optional<HttpResponse> ApiService::Enforce(std::string_view rule,
                                                const domain::PolicyCredentials& credentials,
                                                const RequestContext& context) const {
  if (rule.empty() ||
      auth_.policy.Enforce(rule, credentials, domain::PolicyTarget::OfCaller(credentials))) {
    return std::nullopt;
  }
  log::Info("api.policy_refused",
            {{"action", rule}, {"user_id", context.user_id}, {"project_id", context.project_id}});
  return Fault(403, "Policy doesn't allow " + std::string(rule) + " to be performed.");
}

bool ApiService::Serves(RoutePart part) const {
  switch (part) {
    case RoutePart::kTransfers:
      return handlers_.transfers != nullptr;
    case RoutePart::kQos:
      return handlers_.qos != nullptr;
    case RoutePart::kQuotas:
      return handlers_.quotas != nullptr;
    case RoutePart::kGroupTypes:
      return handlers_.group_types != nullptr;
    case RoutePart::kGroups:
      return handlers_.groups != nullptr;
    case RoutePart::kMessages:
      return handlers_.messages != nullptr;
    case RoutePart::kNone:
    case RoutePart::kVolumes:
    case RoutePart::kSnapshots:
    case RoutePart::kAttachments:
    case RoutePart::kBackups:
    case RoutePart::kServices:
    case RoutePart::kTypes:
      return true;
  }
  return false;
}

std::optional<HttpResponse> ApiService::Authenticate(const HttpRequest& request,
                                                     RequestContext* context,
                                                     domain::PolicyCredentials* credentials) {
  std::string token = request.Header("X-Auth-Token");
  if (auth_.authenticator == nullptr) {
    if (token.empty()) {
      // Cinder's noauth middleware hands out a token instead of refusing.
      HttpResponse response;
      response.status = 204;
      response.content_type = "text/plain";
      std::string user = request.Header("X-Auth-User");
      std::string project = request.Header("X-Auth-Project-Id");
      response.headers.emplace_back(
          "X-Auth-Token",
          (user.empty() ? "admin" : user) + ":" + (project.empty() ? "admin" : project));
      response.headers.emplace_back("X-Server-Management-Url", request.base_url + request.path);
      return response;
    }
    std::size_t colon = token.find(':');
    context->user_id = token.substr(0, colon);
    context->project_id = colon == std::string::npos ? context->user_id : token.substr(colon + 1);
    context->roles = {"admin"};
    // The ids end up in rows, job messages and JSON responses, which hold UTF-8 only: a token
    // that is not would make the volume row and then fail to queue its job (found by fuzzing).
    if (!IsUtf8(token)) {
      return JsonResponse(401,
                          {{"error",
                            {{"code", 401},
                             {"title", "Unauthorized"},
                             {"message", "The noauth token must be UTF-8 text (user:project)."}}}});
    }
  } else {
    auto refused = [this](std::string_view why) {
      log::Info("api.unauthenticated", {{"reason", why}});
      // keystonemiddleware's answer, which clients read to re-authenticate.
      HttpResponse response =
          JsonResponse(401,
                       {{"error",
                         {{"code", 401},
                          {"title", "Unauthorized"},
                          {"message", "The request you have made requires authentication."}}}});
      response.headers.emplace_back("WWW-Authenticate",
                                    "Keystone uri=\"" + auth_.www_authenticate_uri + "\"");
      return response;
    };
    if (token.empty()) {
      return refused("no X-Auth-Token");
    }
    auto result = auth_.authenticator->Authenticate(token, request.Header("X-Service-Token"));
    if (!result) {
      if (result.error().code == ErrorCode::kUnauthenticated) {
        return refused(result.error().message);
      }
      log::Warn("api.keystone_unavailable", {{"error", result.error().ToString()}});
      return Fault(503,
                   "The identity service (Keystone) cannot validate the token now; try again "
                   "later.");
    }
    const ports::TokenInfo& user = result->user;
    if (user.project_id.empty()) {
      return Fault(403, "A project-scoped token is required.");
    }
    context->user_id = user.user_id;
    context->project_id = user.project_id;
    context->user_domain_id = user.user_domain_id;
    context->project_domain_id = user.project_domain_id;
    context->is_service_request = result->is_service_request;
    for (const std::string& role : user.roles) {
      std::string lower;
      for (char c : role) {
        lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      context->roles.push_back(std::move(lower));
    }
    credentials->is_admin_project = user.is_admin_project;
  }
  credentials->user_id = context->user_id;
  credentials->project_id = context->project_id;
  credentials->user_domain_id = context->user_domain_id;
  credentials->project_domain_id = context->project_domain_id;
  credentials->roles = context->roles;
  context->is_admin = auth_.policy.IsAdmin(*credentials);
  credentials->is_admin = context->is_admin;
  return std::nullopt;
}

}  // namespace clinker::services
