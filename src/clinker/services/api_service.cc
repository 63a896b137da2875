#include "clinker/services/api_service.h"

#include <cctype>
#include <regex>
#include <string_view>
#include <vector>

#include "clinker/core/json_depth.h"
#include "clinker/core/log.h"
#include "clinker/core/uuid.h"
#include "clinker/services/api_policy.h"
#include "clinker/services/authenticator.h"
#include "clinker/services/extensions.h"

namespace clinker::services {
namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> segments;
  std::size_t start = 0;
  while (start < path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      slash = path.size();
    }
    if (slash > start) {
      segments.emplace_back(path.substr(start, slash - start));
    }
    start = slash + 1;
  }
  return segments;
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

// The admin information collections (and user messages) served by RouteAdmin.
bool IsAdminCollection(std::string_view segment) {
  return segment == "os-hosts" || segment == "scheduler-stats" || segment == "capabilities" ||
         segment == "messages";
}

// The first path segment of a project-less URL (/v3/<collection>/...), which is not a project id.
bool IsResourceCollection(std::string_view segment) {
  return segment == "volumes" || segment == "snapshots" || segment == "attachments" ||
         segment == "backups" || segment == "os-services" || segment == "clusters" ||
         segment == "types" || segment == "qos-specs" || segment == "os-quota-sets" ||
         segment == "os-quota-class-sets" || segment == "limits" ||
         segment == "os-volume-transfer" || segment == "volume-transfers" ||
         segment == "os-availability-zone" || segment == "extensions" || segment == "group_types" ||
         segment == "groups" || segment == "group_snapshots" || IsAdminCollection(segment);
}

HttpResponse NotFound() {
  return Fault(404, "The resource could not be found.");
}

HttpResponse MethodNotAllowed() {
  return Fault(405, "The method is not allowed for this resource.");
}

}  // namespace

HttpResponse ApiService::Handle(const HttpRequest& request) {
  HttpResponse response = Route(request);
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

HttpResponse ApiService::Route(const HttpRequest& request) {
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
  if (!IsResourceCollection(segments[1])) {
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
  std::string_view action = PolicyActionFor(request, rest);
  if (!action.empty() &&
      !auth_.policy.Enforce(action, credentials, domain::PolicyTarget::OfCaller(credentials))) {
    log::Info(
        "api.policy_refused",
        {{"action", action}, {"user_id", context.user_id}, {"project_id", context.project_id}});
    return Fault(403, "Policy doesn't allow " + std::string(action) + " to be performed.");
  }
  if (auto refused = EnforceSecondaryPolicy(request, rest, credentials, context)) {
    return std::move(*refused);
  }
  if (!rest.empty() && rest[0] == "os-services") {
    return RouteServices(context, request, rest);
  }
  if (!rest.empty() && IsAdminCollection(rest[0])) {
    return RouteAdmin(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "clusters") {
    return RouteClusters(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "snapshots") {
    return RouteSnapshots(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "attachments") {
    return RouteAttachments(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "backups") {
    return RouteBackups(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "volumes") {
    return RouteVolumes(context, request, rest);
  }
  if (!rest.empty() && (rest[0] == "os-volume-transfer" || rest[0] == "volume-transfers")) {
    return RouteTransfers(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "types") {
    return RouteTypes(context, request, rest);
  }
  if (!rest.empty() &&
      (rest[0] == "os-quota-sets" || rest[0] == "os-quota-class-sets" || rest[0] == "limits")) {
    return RouteQuotas(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "qos-specs") {
    return RouteQosSpecs(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "group_types") {
    return RouteGroupTypes(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "groups") {
    return RouteGroups(context, request, rest);
  }
  if (!rest.empty() && rest[0] == "group_snapshots") {
    return RouteGroupSnapshots(context, request, rest);
  }
  if (rest.size() == 1 && rest[0] == "os-availability-zone") {
    return request.method == "GET" ? services_.ListAvailabilityZones(context) : MethodNotAllowed();
  }
  if (!rest.empty() && rest[0] == "extensions" && rest.size() <= 2) {
    if (request.method != "GET") {
      // Cinder's extensions resource answers 404 to create and delete.
      return request.method == "POST" || request.method == "DELETE" ? NotFound()
                                                                    : MethodNotAllowed();
    }
    return rest.size() == 1 ? ListExtensions() : ShowExtension(rest[1]);
  }
  return NotFound();
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

HttpResponse ApiService::RouteVolumes(const RequestContext& context,
                                      const HttpRequest& request,
                                      const std::vector<std::string>& rest) {
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return volumes_.List(context, request, false);
    }
    if (method == "POST") {
      return volumes_.Create(context, request);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "detail") {
    return method == "GET" ? volumes_.List(context, request, true) : MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "summary" && context.version >= Microversion{3, 12}) {
    return method == "GET" ? volumes_.Summary(context, request) : MethodNotAllowed();
  }
  if (rest.size() == 2) {
    if (method == "GET") {
      return volumes_.Show(context, rest[1]);
    }
    if (method == "PUT") {
      return volumes_.Update(context, request, rest[1]);
    }
    if (method == "DELETE") {
      return volumes_.Delete(context, request, rest[1]);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "metadata") {
    if (method == "GET") {
      return volumes_.ShowMetadata(context, rest[1]);
    }
    if (method == "POST") {
      return volumes_.CreateMetadata(context, request, rest[1]);
    }
    if (method == "PUT") {
      return volumes_.ReplaceMetadata(context, request, rest[1]);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 4 && rest[2] == "metadata") {
    if (method == "GET") {
      return volumes_.ShowMetadataItem(context, rest[1], rest[3]);
    }
    if (method == "PUT") {
      return volumes_.UpdateMetadataItem(context, request, rest[1], rest[3]);
    }
    if (method == "DELETE") {
      return volumes_.DeleteMetadataItem(context, rest[1], rest[3]);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "action") {
    if (method != "POST") {
      return MethodNotAllowed();
    }
    // The attach family of actions belongs to the attachments; the rest to the volume.
    nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
    if (body.is_object() && body.size() == 1 &&
        AttachmentsApi::IsLegacyAction(body.begin().key())) {
      return attachments_.LegacyAction(context, body.begin().key(), body.begin().value(), rest[1]);
    }
    return volumes_.Action(context, request, rest[1]);
  }
  return NotFound();
}

HttpResponse ApiService::RouteSnapshots(const RequestContext& context,
                                        const HttpRequest& request,
                                        const std::vector<std::string>& rest) {
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return snapshots_.List(context, request, false);
    }
    if (method == "POST") {
      return snapshots_.Create(context, request);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "detail") {
    return method == "GET" ? snapshots_.List(context, request, true) : MethodNotAllowed();
  }
  if (rest.size() == 2) {
    if (method == "GET") {
      return snapshots_.Show(context, rest[1]);
    }
    if (method == "PUT") {
      return snapshots_.Update(context, request, rest[1]);
    }
    if (method == "DELETE") {
      return snapshots_.Delete(context, rest[1]);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "metadata") {
    if (method == "GET") {
      return snapshots_.ShowMetadata(context, rest[1]);
    }
    if (method == "POST" || method == "PUT") {
      return snapshots_.ChangeMetadata(context, request, rest[1], /*replace=*/method == "PUT");
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 4 && rest[2] == "metadata") {
    if (method == "GET") {
      return snapshots_.ShowMetadataItem(context, rest[1], rest[3]);
    }
    if (method == "PUT") {
      return snapshots_.UpdateMetadataItem(context, request, rest[1], rest[3]);
    }
    if (method == "DELETE") {
      return snapshots_.DeleteMetadataItem(context, rest[1], rest[3]);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "action") {
    return method == "POST" ? snapshots_.Action(context, request, rest[1]) : MethodNotAllowed();
  }
  return NotFound();
}

// /attachments exists from 3.27; below it Cinder answers 404 as for an unknown resource.
HttpResponse ApiService::RouteAttachments(const RequestContext& context,
                                          const HttpRequest& request,
                                          const std::vector<std::string>& rest) {
  if (context.version < Microversion{3, 27}) {
    return NotFound();
  }
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return attachments_.List(context, request, false);
    }
    if (method == "POST") {
      return attachments_.Create(context, request);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "detail") {
    return method == "GET" ? attachments_.List(context, request, true) : MethodNotAllowed();
  }
  if (rest.size() == 2) {
    if (method == "GET") {
      return attachments_.Show(context, rest[1]);
    }
    if (method == "PUT") {
      return attachments_.Update(context, request, rest[1]);
    }
    if (method == "DELETE") {
      return attachments_.Delete(context, rest[1]);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "action") {
    return method == "POST" ? attachments_.Action(context, request, rest[1]) : MethodNotAllowed();
  }
  return NotFound();
}

HttpResponse ApiService::RouteBackups(const RequestContext& context,
                                      const HttpRequest& request,
                                      const std::vector<std::string>& rest) {
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return backups_.List(context, request, false);
    }
    if (method == "POST") {
      return backups_.Create(context, request);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "detail") {
    return method == "GET" ? backups_.List(context, request, true) : MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "import_record" && method == "POST") {
    return backups_.ImportRecord(context, request);
  }
  if (rest.size() == 2) {
    if (method == "GET") {
      return backups_.Show(context, rest[1]);
    }
    if (method == "PUT") {
      return backups_.Update(context, request, rest[1]);
    }
    if (method == "DELETE") {
      return backups_.Delete(context, rest[1]);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "restore") {
    return method == "POST" ? backups_.Restore(context, request, rest[1]) : MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "export_record") {
    return method == "GET" ? backups_.ExportRecord(context, rest[1]) : MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "action") {
    return method == "POST" ? backups_.Action(context, request, rest[1]) : MethodNotAllowed();
  }
  return NotFound();
}

// os-services: the list, and PUT /os-services/{action} (enable, disable, freeze, ...).
HttpResponse ApiService::RouteServices(const RequestContext& context,
                                       const HttpRequest& request,
                                       const std::vector<std::string>& rest) {
  if (rest.size() == 2 && request.method == "PUT") {
    return services_.UpdateService(context, request, rest[1]);
  }
  if (rest.size() != 1) {
    return NotFound();
  }
  return request.method == "GET" ? services_.ListServices(context, request) : MethodNotAllowed();
}

// os-hosts, scheduler-stats/get_pools, capabilities/{host}, and messages (3.3+).
// /os-quota-sets/{project}[/defaults], /os-quota-class-sets/{class}, /limits.
HttpResponse ApiService::RouteQuotas(const RequestContext& context,
                                     const HttpRequest& request,
                                     const std::vector<std::string>& rest) {
  if (quotas_ == nullptr) {
    return NotFound();
  }
  const std::string& method = request.method;
  if (rest[0] == "limits") {
    if (rest.size() != 1) {
      return NotFound();
    }
    return method == "GET" ? quotas_->Limits(context, request) : MethodNotAllowed();
  }
  if (rest[0] == "os-quota-class-sets") {
    if (rest.size() != 2) {
      return NotFound();
    }
    if (method == "GET") {
      return quotas_->ShowClass(context, rest[1]);
    }
    return method == "PUT" ? quotas_->UpdateClass(context, request, rest[1]) : MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "defaults") {
    return method == "GET" ? quotas_->Defaults(context, rest[1]) : MethodNotAllowed();
  }
  if (rest.size() != 2) {
    return NotFound();
  }
  if (method == "GET") {
    return quotas_->Show(context, request, rest[1]);
  }
  if (method == "PUT") {
    return quotas_->Update(context, request, rest[1]);
  }
  if (method == "DELETE") {
    return quotas_->Delete(context, rest[1]);
  }
  return MethodNotAllowed();
}

HttpResponse ApiService::RouteAdmin(const RequestContext& context,
                                    const HttpRequest& request,
                                    const std::vector<std::string>& rest) {
  const std::string& method = request.method;
  if (rest[0] == "os-hosts") {
    if (rest.size() > 2) {
      return NotFound();
    }
    if (method != "GET") {
      return MethodNotAllowed();
    }
    return rest.size() == 1 ? services_.ListHosts(context, request)
                            : services_.ShowHost(context, rest[1]);
  }
  if (rest[0] == "scheduler-stats") {
    if (rest.size() != 2 || rest[1] != "get_pools") {
      return NotFound();
    }
    return method == "GET" ? services_.GetPools(context, request) : MethodNotAllowed();
  }
  if (rest[0] == "capabilities") {
    if (rest.size() != 2) {
      return NotFound();
    }
    return method == "GET" ? services_.ShowCapabilities(context, rest[1]) : MethodNotAllowed();
  }
  // messages
  if (messages_ == nullptr || context.version < kMessagesMicroversion || rest.size() > 2) {
    return NotFound();
  }
  if (rest.size() == 1) {
    return method == "GET" ? messages_->List(context, request) : MethodNotAllowed();
  }
  if (method == "GET") {
    return messages_->Show(context, rest[1]);
  }
  if (method == "DELETE") {
    return messages_->Delete(context, rest[1]);
  }
  return MethodNotAllowed();
}

// Cinder checks some routes twice: os-services freeze, thaw and failover pass
// volume_extension:services:update (the route's rule) and then their own rule.
std::optional<HttpResponse> ApiService::EnforceSecondaryPolicy(
    const HttpRequest& request,
    const std::vector<std::string>& rest,
    const domain::PolicyCredentials& credentials,
    const RequestContext& context) {
  std::string_view action = SecondaryPolicyActionFor(request, rest);
  if (action.empty() ||
      auth_.policy.Enforce(action, credentials, domain::PolicyTarget::OfCaller(credentials))) {
    return std::nullopt;
  }
  log::Info("api.policy_refused",
            {{"action", action}, {"user_id", context.user_id}, {"project_id", context.project_id}});
  return Fault(403, "Policy doesn't allow " + std::string(action) + " to be performed.");
}

// /clusters exists from 3.7; below it Cinder answers 404 as for an unknown resource.
HttpResponse ApiService::RouteClusters(const RequestContext& context,
                                       const HttpRequest& request,
                                       const std::vector<std::string>& rest) {
  if (context.version < kClustersMicroversion || rest.size() > 2) {
    return NotFound();
  }
  if (request.method != "GET") {
    return MethodNotAllowed();
  }
  if (rest.size() == 1) {
    return services_.ListClusters(context, request, false);
  }
  if (rest[1] == "detail") {
    return services_.ListClusters(context, request, true);
  }
  return services_.ShowCluster(context, request, rest[1]);
}

// /os-volume-transfer (Cinder's extension) and /volume-transfers (its v3 controller, routed at
// every microversion as Cinder's router does; clients use it from 3.55).
// /qos-specs[/{id}[/associations | /associate | /disassociate | /disassociate_all |
// /delete_keys]]. Cinder serves the association changes as GETs.
HttpResponse ApiService::RouteQosSpecs(const RequestContext& context,
                                       const HttpRequest& request,
                                       const std::vector<std::string>& rest) {
  if (qos_ == nullptr) {
    return NotFound();
  }
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return qos_->List(context, request);
    }
    return method == "POST" ? qos_->Create(context, request) : MethodNotAllowed();
  }
  const std::string& qos_id = rest[1];
  if (rest.size() == 2) {
    if (method == "GET") {
      return qos_->Show(context, qos_id);
    }
    if (method == "PUT") {
      return qos_->SetKeys(context, request, qos_id);
    }
    return method == "DELETE" ? qos_->Delete(context, request, qos_id) : MethodNotAllowed();
  }
  if (rest.size() != 3) {
    return NotFound();
  }
  const std::string& sub = rest[2];
  if (sub == "delete_keys") {
    return method == "PUT" ? qos_->UnsetKeys(context, request, qos_id) : MethodNotAllowed();
  }
  if (sub != "associations" && sub != "associate" && sub != "disassociate" &&
      sub != "disassociate_all") {
    return NotFound();
  }
  if (method != "GET") {
    return MethodNotAllowed();
  }
  if (sub == "associations") {
    return qos_->ListAssociations(context, qos_id);
  }
  if (sub == "associate") {
    return qos_->Associate(context, request, qos_id);
  }
  if (sub == "disassociate") {
    return qos_->Disassociate(context, request, qos_id);
  }
  return qos_->DisassociateAll(context, qos_id);
}

HttpResponse ApiService::RouteTransfers(const RequestContext& context,
                                        const HttpRequest& request,
                                        const std::vector<std::string>& rest) {
  if (transfers_ == nullptr) {
    return NotFound();
  }
  const TransferRoute route =
      rest[0] == "volume-transfers" ? TransferRoute::kV3 : TransferRoute::kExtension;
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return transfers_->List(context, request, false, route);
    }
    if (method == "POST") {
      return transfers_->Create(context, request, route);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "detail") {
    return method == "GET" ? transfers_->List(context, request, true, route) : MethodNotAllowed();
  }
  if (rest.size() == 2) {
    if (method == "GET") {
      return transfers_->Show(context, rest[1]);
    }
    if (method == "DELETE") {
      return transfers_->Delete(context, rest[1]);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "accept") {
    return method == "POST" ? transfers_->Accept(context, request, rest[1]) : MethodNotAllowed();
  }
  return NotFound();
}

// /types[/{id}[/action | /extra_specs[/{key}] | /os-volume-type-access]]; /types/default is the
// default type.
HttpResponse ApiService::RouteTypes(const RequestContext& context,
                                    const HttpRequest& request,
                                    const std::vector<std::string>& rest) {
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return types_.List(context, request);
    }
    if (method == "POST") {
      return types_.Create(context, request);
    }
    return MethodNotAllowed();
  }
  const std::string& type_id = rest[1];
  if (rest.size() == 2) {
    if (method == "GET") {
      return types_.Show(context, type_id);
    }
    if (method == "PUT") {
      return types_.Update(context, request, type_id);
    }
    if (method == "DELETE") {
      return types_.Delete(context, type_id);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "action") {
    return method == "POST" ? types_.Action(context, request, type_id) : MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "os-volume-type-access") {
    return method == "GET" ? types_.ListAccess(context, type_id) : MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "extra_specs") {
    if (method == "GET") {
      return types_.ListExtraSpecs(context, type_id);
    }
    if (method == "POST") {
      return types_.CreateExtraSpecs(context, request, type_id);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 3 && rest[2] == "encryption") {
    if (method == "GET") {
      return types_.ShowEncryption(context, type_id);
    }
    if (method == "POST") {
      return types_.CreateEncryption(context, request, type_id);
    }
    return MethodNotAllowed();
  }
  // GET .../encryption/{key} shows one item; PUT and DELETE name the encryption (by any id:
  // a type has one).
  if (rest.size() == 4 && rest[2] == "encryption") {
    if (method == "GET") {
      return types_.ShowEncryptionItem(context, type_id, rest[3]);
    }
    if (method == "PUT") {
      return types_.UpdateEncryption(context, request, type_id);
    }
    if (method == "DELETE") {
      return types_.DeleteEncryption(context, type_id);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 4 && rest[2] == "extra_specs") {
    if (method == "GET") {
      return types_.ShowExtraSpec(context, type_id, rest[3]);
    }
    if (method == "PUT") {
      return types_.UpdateExtraSpec(context, request, type_id, rest[3]);
    }
    if (method == "DELETE") {
      return types_.DeleteExtraSpec(context, type_id, rest[3]);
    }
    return MethodNotAllowed();
  }
  return NotFound();
}

// /group_types[/{id}[/group_specs[/{key}]]] (3.11+; /group_types/default is the default group
// type). Below 3.11 Cinder answers 404 as for an unknown resource.
HttpResponse ApiService::RouteGroupTypes(const RequestContext& context,
                                         const HttpRequest& request,
                                         const std::vector<std::string>& rest) {
  if (group_types_ == nullptr || context.version < kGroupTypesMicroversion) {
    return NotFound();
  }
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return group_types_->List(context, request);
    }
    if (method == "POST") {
      return group_types_->Create(context, request);
    }
    return MethodNotAllowed();
  }
  const std::string& type_id = rest[1];
  if (rest.size() == 2) {
    if (method == "GET") {
      return group_types_->Show(context, type_id);
    }
    if (method == "PUT") {
      return group_types_->Update(context, request, type_id);
    }
    if (method == "DELETE") {
      return group_types_->Delete(context, type_id);
    }
    return MethodNotAllowed();
  }
  if (rest[2] != "group_specs" || rest.size() > 4) {
    return NotFound();
  }
  if (rest.size() == 3) {
    if (method == "GET") {
      return group_types_->ListSpecs(context, type_id);
    }
    if (method == "POST") {
      return group_types_->CreateSpecs(context, request, type_id);
    }
    return MethodNotAllowed();
  }
  if (method == "GET") {
    return group_types_->ShowSpec(context, type_id, rest[3]);
  }
  if (method == "PUT") {
    return group_types_->UpdateSpec(context, request, type_id, rest[3]);
  }
  if (method == "DELETE") {
    return group_types_->DeleteSpec(context, type_id, rest[3]);
  }
  return MethodNotAllowed();
}

// /groups[/detail | /action | /{id}[/action]] (3.13+; /groups/action is create-from-src, 3.14+).
HttpResponse ApiService::RouteGroups(const RequestContext& context,
                                     const HttpRequest& request,
                                     const std::vector<std::string>& rest) {
  if (groups_ == nullptr || context.version < kGroupsMicroversion || rest.size() > 3) {
    return NotFound();
  }
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return groups_->List(context, request, false);
    }
    if (method == "POST") {
      return groups_->Create(context, request);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "detail") {
    return method == "GET" ? groups_->List(context, request, true) : MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "action") {
    return method == "POST" ? groups_->CreateFromSource(context, request) : MethodNotAllowed();
  }
  if (rest.size() == 2) {
    if (method == "GET") {
      return groups_->Show(context, request, rest[1]);
    }
    if (method == "PUT") {
      return groups_->Update(context, request, rest[1]);
    }
    return MethodNotAllowed();
  }
  if (rest[2] != "action") {
    return NotFound();
  }
  return method == "POST" ? groups_->Action(context, request, rest[1]) : MethodNotAllowed();
}

// /group_snapshots[/detail | /{id}[/action]] (3.14+).
HttpResponse ApiService::RouteGroupSnapshots(const RequestContext& context,
                                             const HttpRequest& request,
                                             const std::vector<std::string>& rest) {
  if (groups_ == nullptr || context.version < kGroupSnapshotsMicroversion || rest.size() > 3) {
    return NotFound();
  }
  const std::string& method = request.method;
  if (rest.size() == 1) {
    if (method == "GET") {
      return groups_->ListSnapshots(context, request, false);
    }
    if (method == "POST") {
      return groups_->CreateSnapshot(context, request);
    }
    return MethodNotAllowed();
  }
  if (rest.size() == 2 && rest[1] == "detail") {
    return method == "GET" ? groups_->ListSnapshots(context, request, true) : MethodNotAllowed();
  }
  if (rest.size() == 2) {
    if (method == "GET") {
      return groups_->ShowSnapshot(context, rest[1]);
    }
    if (method == "DELETE") {
      return groups_->DeleteSnapshot(context, rest[1]);
    }
    return MethodNotAllowed();
  }
  if (rest[2] != "action") {
    return NotFound();
  }
  return method == "POST" ? groups_->SnapshotAction(context, request, rest[1]) : MethodNotAllowed();
}

}  // namespace clinker::services
