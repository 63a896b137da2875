// Pieces shared by the API handlers: the request context, Cinder-shaped faults and JSON helpers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "clinker/core/error.h"
#include "clinker/domain/policy.h"
#include "clinker/ports/http_types.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/microversion.h"

namespace clinker::services {

using ports::HttpRequest;
using ports::HttpResponse;

// Who is asking, at which microversion. Built by ApiService from the token and the URL.
struct RequestContext {
  std::string user_id;
  std::string project_id;
  std::string user_domain_id;
  std::string project_domain_id;
  // Role names from the token (keystone), lower case; noauth gives "admin".
  std::vector<std::string> roles;
  // The policy's context_is_admin (role admin by default): sees and acts on every project's
  // resources, lists them with all_tenants.
  bool is_admin = false;
  // An X-Service-Token with a service role came with the request (keystone).
  bool is_service_request = false;
  Microversion version;
  // "http://host:port/v3/<project>" or "http://host:port/v3" when the URL had no project id:
  // links repeat the form the client used.
  std::string link_base;
  std::string bookmark_base;  // The same without "/v3".
  // The rules the request is checked against (ApiService sets it; nullptr: the defaults), and
  // keystonemiddleware's X-Is-Admin-Project, for the rules that decide what a response shows
  // (Allowed).
  const domain::Policy* policy = nullptr;
  bool is_admin_project = true;
};

// Whether the policy lets the caller do `rule` with its own project as the target (Cinder's
// context.authorize(rule, fatal=False) without a target object): attribute rules such as
// volume_extension:access_types_extra_specs. An is_admin caller holds the role admin, as
// Cinder's RequestContext gives it.
bool Allowed(const RequestContext& context, std::string_view rule);
// The same with another project as the target (Cinder's authorize(rule, target={'project_id':
// ...})): the caller's own project when nullopt.
bool AllowedFor(const RequestContext& context,
                std::string_view rule,
                const std::optional<std::string_view>& target_project);

// Whether the caller may see (show, update, delete, act on) a resource of `project_id`: an admin
// sees every project's, anyone else only their own project's, as Cinder's DB layer filters by
// project for non-admins only. A resource the caller may not see is answered as if it did not
// exist (404 with the usual "could not be found" message), never 403, so its existence does not
// leak. Lists are separate: an admin sees other projects there only with all_tenants.
bool CanSee(const RequestContext& context, std::string_view project_id);

// A Cinder fault: {"<name>": {"code": N, "message": "..."}}, the name chosen by status
// (badRequest, itemNotFound, ...; computeFault for anything unlisted), as cinderclient expects.
HttpResponse Fault(int status, std::string_view message);

// Maps an error from a port to the fault a client should see. Engine trouble is 503 (retry);
// never leaks internals beyond the error's message.
HttpResponse FaultFromError(const Error& error);

HttpResponse JsonResponse(int status, const nlohmann::json& body);

// 202 with no body: what Cinder answers to an accepted action.
HttpResponse Accepted();

// Input parsing shared by the resource handlers. Errors are kInvalidArgument with the message
// Cinder gives (FaultFromError makes them 400).

constexpr std::size_t kMaxTextLength = 255;

Error BadRequest(std::string message);

// The object under `root` of a JSON body ({"volume": {...}}).
Result<nlohmann::json> ParseBody(const HttpRequest& request, std::string_view root);
// ParseBody, held to a Cinder request schema with `additionalProperties: false`: the root object
// has only `root` (and `also_at_root`), the object under it only `allowed` properties. Unknown
// ones are a 400 with Cinder's (jsonschema's) message naming them, so a misspelt field is never
// silently ignored.
Result<nlohmann::json> ParseBody(const HttpRequest& request,
                                 std::string_view root,
                                 const std::vector<std::string_view>& allowed,
                                 const std::vector<std::string_view>& also_at_root = {});
// ParseBody with only the root held to the schema: the object under `root` may hold anything
// (Cinder's `additionalProperties: true` there, as volume create before 3.53).
Result<nlohmann::json> ParseBodyOpenObject(const HttpRequest& request,
                                           std::string_view root,
                                           const std::vector<std::string_view>& also_at_root);

// How a text field longer than 255 characters (Unicode characters, as Python's len() counts
// them, never UTF-8 bytes) is refused: volume create and update check names and descriptions
// with their own format checker ("Invalid input received: name has 256 characters, more than
// 255."), every other schema with jsonschema's maxLength ("... 'x...' is too long").
enum class TextLimit { kSchema, kInvalidInput };

// A text field that may be absent, null or a string of at most 255 characters; *present says
// whether the key was there. Errors carry Cinder's messages.
Result<std::optional<std::string>> OptionalText(const nlohmann::json& object,
                                                std::string_view key,
                                                bool* present,
                                                TextLimit limit = TextLimit::kSchema);

// `name` wins over its legacy alias `display_name` (likewise for descriptions).
Result<std::optional<std::string>> AliasedText(const nlohmann::json& object,
                                               std::string_view key,
                                               std::string_view legacy_key,
                                               bool* present,
                                               TextLimit limit = TextLimit::kSchema);

// String to string as Cinder's parameter_types.extra_specs (keys 1 to 255 characters of
// [a-zA-Z0-9-_:. /], string values of at most 255 characters) with jsonschema's messages (400),
// within Clinker's bound on a metadata map (metadata_rules.h: kMaxMetadataItems,
// kMaxMetadataBytes; kQuotaExceeded, a 413).
Result<std::map<std::string, std::string>> ParseMetadata(const nlohmann::json& value);

// oslo's uuidutils.is_uuid_like, Cinder's `uuid` format: 32 hex digits in any case, dashes
// anywhere, optionally in braces or after "urn:" / "uuid:".
bool IsUuidLike(std::string_view text);

// Which of Cinder's uuid schemas a body field has: parameter_types.uuid (a string in the uuid
// format), or uuid_allow_null / optional_uuid (oneOf null and that), whose failures jsonschema
// words differently.
enum class UuidField { kUuid, kUuidOrNull };

// The field `key` of `object`, when present, held to its uuid schema: a 400 with Cinder's
// message ("Invalid input for field/attribute volume_id. Value: xyz. 'xyz' is not a 'uuid'"),
// so a malformed id in a body never reaches a lookup.
Result<void> CheckUuidField(const nlohmann::json& object, std::string_view key, UuidField schema);

// A size in GiB: an integer or a digit string, 1 to max_size_gib.
Result<std::int64_t> ParseSize(const nlohmann::json& value, std::int64_t max_size_gib);

// oslo's bool_from_string for query parameters ("1", "true", "yes", ...).
bool TruthyParameter(std::string_view text);

// oslo's bool_from_string(strict=True) on a JSON value, as Cinder's `boolean` schema type: true
// or false, or one of its strings ("True", "yes", "0", "off", ...); nullopt for anything else.
std::optional<bool> StrictBoolean(const nlohmann::json& value);

// A non-negative decimal query parameter (limit, offset).
Result<std::int64_t> ParseNonNegative(std::string_view name, const std::string& text);

std::vector<std::string> SplitCommas(const std::string& text);

// `sort=key1:asc,key2` (preferred) or the deprecated `sort_key` / `sort_dir`; never both.
// `sort_column` maps an API sort key to its column (nullopt: not sortable).
Result<std::vector<ports::SortKey>> ParseSort(
    const HttpRequest& request,
    const std::function<std::optional<std::string>(std::string_view)>& sort_column);

nlohmann::json NullOr(const std::optional<std::string>& text);

// Percent-encodes everything but RFC 3986 unreserved characters, for query strings.
std::string UrlEncode(std::string_view text);

// The href of a "next" link: the request's own parameters with the marker replaced.
std::string NextLink(const RequestContext& context,
                     const HttpRequest& request,
                     std::string_view collection,
                     const std::string& last_id);

}  // namespace clinker::services
