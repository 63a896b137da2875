// The route table of the Cinder v3 API: one row per (method, path, action) this server answers,
// with the microversions it exists at, the Cinder policy rule(s) that guard it and its handler.
//
// The table is the single source of the routing: ApiService dispatches with MatchRoute, checks
// the matched route's rules (api_policy.h) before the handler runs, hands the handler the
// path's parameters and, for POST .../action, the body parsed once; `clinkerd
// --print-routes` prints it and a unit test checks docs/API.md lists every row.
//
// Matching (MatchRoute): the path after /v3[/{project_id}] is split on '/'; a pattern segment
// "{name}" matches any one segment, others match themselves. Rows are tried in table order, so a
// literal row ("/volumes/detail") is listed before the parameter row it would shadow
// ("/volumes/{volume_id}"). A row with an `action` matches a POST .../action whose body is an
// object with that one key; the row with action "*" matches any other body (unknown action,
// malformed body: its handler answers 400). A row matches only between its microversions; when
// only rows outside their range match method and path, the request is answered 404 (after their
// rule is checked, as the router always did), as Cinder answers a method of a later microversion.
// A path that some row in range matches with another method is 405 (see Route::exclusive and
// Route::other_methods_not_found); anything else 404.
//
// Pure: no I/O; the table is immutable and MatchRoute thread-safe.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "clinker/ports/http_types.h"
#include "clinker/services/api_common.h"
#include "clinker/services/microversion.h"

namespace clinker::services {

class VolumesApi;
class SnapshotsApi;
class AttachmentsApi;
class BackupsApi;
class ServicesApi;
class TypesApi;
class TransfersApi;
class QosApi;
class QuotasApi;
class GroupTypesApi;
class GroupsApi;
class MessagesApi;

// The services that answer the routes; the optional ones may be null (their routes are 404).
struct ApiHandlers {
  VolumesApi* volumes = nullptr;
  SnapshotsApi* snapshots = nullptr;
  AttachmentsApi* attachments = nullptr;
  BackupsApi* backups = nullptr;
  ServicesApi* services = nullptr;
  TypesApi* types = nullptr;
  TransfersApi* transfers = nullptr;
  QosApi* qos = nullptr;
  QuotasApi* quotas = nullptr;
  GroupTypesApi* group_types = nullptr;
  GroupsApi* groups = nullptr;
  MessagesApi* messages = nullptr;
};

// Which of ApiHandlers a route needs; the dispatcher answers 404 when it is not served.
enum class RoutePart {
  kNone,  // Answered without a service (extensions, and the rows that only refuse).
  kVolumes,
  kSnapshots,
  kAttachments,
  kBackups,
  kServices,
  kTypes,
  kTransfers,
  kQos,
  kQuotas,
  kGroupTypes,
  kGroups,
  kMessages,
};

// What a handler is given: the caller, the request, the path's segments after
// /v3[/{project_id}] (params: the "{name}" segments in order) and, for an action row, the body
// parsed once (discarded when it was not JSON) with the action's name ("" when the body is not
// an object with one key).
struct RouteCall {
  const RequestContext& context;
  const HttpRequest& request;
  const std::vector<std::string>& segments;
  std::vector<std::string_view> params;
  const nlohmann::json& body;
  std::string_view action;
};

using RouteHandler = HttpResponse (*)(const ApiHandlers&, const RouteCall&);
// A rule that depends on the request beyond its route (DELETE /volumes/{id}?force=true).
using RuleSelector = std::string_view (*)(const HttpRequest&);

// The fields are in the order the table reads them (designated initializers), not packed: the
// table is small and static.
// NOLINTNEXTLINE(clang-analyzer-optin.performance.Padding)
struct Route {
  std::string_view method{};
  std::string_view path{};    // After /v3[/{project_id}], e.g. "/volumes/{volume_id}/action".
  std::string_view action{};  // POST .../action: the body's key, "*" for any other; else "".
  Microversion min_version = kMinMicroversion;
  Microversion max_version = kMaxMicroversion;
  std::string_view rule{};          // Cinder's rule checked before the handler; "" = none.
  std::string_view second_rule{};   // A second rule Cinder checks inside its handler; "" = none.
  RuleSelector rule_for = nullptr;  // When set, replaces `rule` for a request.
  RoutePart part = RoutePart::kNone;
  RouteHandler handler = nullptr;
  std::string_view note{};  // Shown in the listing (routes kept only to refuse, ...).
  // A literal path of an exclusive route belongs to its routes: another method is 405 (or 404,
  // below) instead of falling through to a parameter route ("PUT /volumes/detail" is 405, not
  // an update of volume "detail"). Not exclusive: a request of another method goes on to the
  // routes after it ("GET /backups/import_record" shows backup "import_record", as Cinder).
  bool exclusive = true;
  // Another method on this route's path is 404 (Cinder's resource has no such action) not 405.
  bool other_methods_not_found = false;

  // The rule for this request: rule_for's answer, or rule.
  std::string_view RuleFor(const HttpRequest& request) const {
    return rule_for != nullptr ? rule_for(request) : rule;
  }
};

// Every route, in matching order.
std::span<const Route> Routes();

struct RouteMatch {
  enum class Outcome {
    kMatched,           // `route` answers it.
    kVersionNotFound,   // Only `route` (outside its microversions) has this method and path.
    kMethodNotAllowed,  // The path exists (at this microversion) with other methods.
    kNotFound,
  };
  Outcome outcome = Outcome::kNotFound;
  const Route* route = nullptr;
  std::vector<std::string_view> params;  // Views into the segments given to MatchRoute.
  std::string action;                    // An action path's body's only key, or "".
};

// Matches a request against the table. `segments` is the path after /v3[/{project_id}] split on
// '/' and must outlive the match (params view into it). With `version` unset every row matches
// whatever its microversions (the policy tests and listings ask which rule a path has). For an
// action path the body is parsed once, into `*parsed_body` when given (discarded when it is not
// JSON), for the handler.
RouteMatch MatchRoute(std::string_view method,
                      const std::vector<std::string>& segments,
                      const std::string& body,
                      const Microversion* version,
                      nlohmann::json* parsed_body = nullptr);
// The match's params would view into a temporary: refused at compile time.
RouteMatch MatchRoute(std::string_view method,
                      std::vector<std::string>&& segments,
                      const std::string& body,
                      const Microversion* version,
                      nlohmann::json* parsed_body = nullptr) = delete;

// Splits a URL path or a route pattern on '/' into its non-empty segments, as views into `path`
// ("/volumes//{volume_id}/" -> "volumes", "{volume_id}"). The one splitter every router and
// listing uses, so a path and the pattern it matches are cut the same way.
std::vector<std::string_view> PathSegments(std::string_view path);

// True when `segment` is the first segment of some route ("volumes", "os-hosts", ...): a
// project-less URL (/v3/volumes) names it where a project id would be.
bool IsRouteCollection(std::string_view segment);

// The table as Markdown rows, one per route: | `METHOD` | `/path` | action | versions | rules |.
std::vector<std::string> RouteListing();

}  // namespace clinker::services
