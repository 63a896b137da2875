#include "clinker/services/api_common.h"

#include <algorithm>
#include <array>

#include "clinker/services/metadata_rules.h"

namespace clinker::services {
namespace {

std::string_view FaultName(int status) {
  switch (status) {
    case 400:
      return "badRequest";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "itemNotFound";
    case 405:
      return "badMethod";
    case 409:
      return "conflictingRequest";
    case 413:
      return "overLimit";
    case 415:
      return "badMediaType";
    case 501:
      return "notImplemented";
    case 503:
      return "serviceUnavailable";
    default:
      return "computeFault";
  }
}

}  // namespace

bool Allowed(const RequestContext& context, std::string_view rule) {
  return AllowedFor(context, rule, std::nullopt);
}

bool AllowedFor(const RequestContext& context,
                std::string_view rule,
                const std::optional<std::string_view>& target_project) {
  static const domain::Policy kDefaults = domain::Policy::Default();
  const domain::Policy& policy = context.policy != nullptr ? *context.policy : kDefaults;
  domain::PolicyCredentials credentials;
  credentials.user_id = context.user_id;
  credentials.project_id = context.project_id;
  credentials.user_domain_id = context.user_domain_id;
  credentials.project_domain_id = context.project_domain_id;
  credentials.roles = context.roles;
  if (context.is_admin && std::find(credentials.roles.begin(), credentials.roles.end(), "admin") ==
                              credentials.roles.end()) {
    credentials.roles.emplace_back("admin");
  }
  credentials.is_admin = context.is_admin;
  credentials.is_admin_project = context.is_admin_project;
  domain::PolicyTarget target = domain::PolicyTarget::OfCaller(credentials);
  if (target_project) {
    target.project_id = std::string(*target_project);
  }
  return policy.Enforce(rule, credentials, target);
}

bool CanSee(const RequestContext& context, std::string_view project_id) {
  return context.is_admin || project_id == context.project_id;
}

HttpResponse JsonResponse(int status, const nlohmann::json& body) {
  HttpResponse response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

HttpResponse Accepted() {
  HttpResponse response;
  response.status = 202;
  return response;
}

HttpResponse Fault(int status, std::string_view message) {
  nlohmann::json body;
  body[std::string(FaultName(status))] = {{"code", status}, {"message", std::string(message)}};
  return JsonResponse(status, body);
}

HttpResponse FaultFromError(const Error& error) {
  switch (error.code) {
    case ErrorCode::kNotFound:
      return Fault(404, error.message);
    case ErrorCode::kInvalidArgument:
      return Fault(400, error.message);
    case ErrorCode::kUnauthenticated:
      return Fault(401, "The request you have made requires authentication.");
    case ErrorCode::kConflict:
    case ErrorCode::kBusy:
      return Fault(409, error.message);
    case ErrorCode::kQuotaExceeded:
      return Fault(413, error.message);
    case ErrorCode::kUnavailable:
    case ErrorCode::kOutcomeUnknown:
    case ErrorCode::kFenced:
      return Fault(503, "The service is temporarily unavailable: " + error.message);
    case ErrorCode::kDriverFailed:
    case ErrorCode::kInternal:
      return Fault(500,
                   "The server has either erred or is incapable of performing the requested "
                   "operation.");
  }
  return Fault(500, "internal error");
}

// Request parsing shared by the resource handlers.

using nlohmann::json;

Error BadRequest(std::string message) {
  return Error{ErrorCode::kInvalidArgument, std::move(message)};
}

namespace {

// The whole body, which must be an object holding an object under `root`.
Result<json> ParseRoot(const HttpRequest& request, std::string_view root) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return tl::unexpected(BadRequest("Malformed request body"));
  }
  if (!body.is_object() || !body.contains(root) || !body[std::string(root)].is_object()) {
    return tl::unexpected(
        BadRequest("Missing required element '" + std::string(root) + "' in request body."));
  }
  return body;
}

}  // namespace

Result<json> ParseBody(const HttpRequest& request, std::string_view root) {
  CLINKER_ASSIGN_OR_RETURN(json body, ParseRoot(request, root));
  return std::move(body[std::string(root)]);
}

namespace {

// jsonschema's message for additional properties, as Cinder's validator words it.
Error UnexpectedProperties(std::string_view field,
                           const json& value,
                           const std::vector<std::string>& unexpected) {
  std::string names;
  for (const std::string& name : unexpected) {
    names += (names.empty() ? "'" : ", '") + name + "'";
  }
  std::string message = "Additional properties are not allowed (" + names +
                        (unexpected.size() == 1 ? " was" : " were") + " unexpected)";
  if (!field.empty()) {
    message = "Invalid input for field/attribute " + std::string(field) +
              ". Value: " + value.dump() + ". " + message;
  }
  return BadRequest(std::move(message));
}

std::vector<std::string> Unexpected(const json& object,
                                    const std::vector<std::string_view>& allowed) {
  std::vector<std::string> unexpected;
  for (const auto& [key, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      unexpected.push_back(key);
    }
  }
  return unexpected;
}

}  // namespace

Result<json> ParseBodyOpenObject(const HttpRequest& request,
                                 std::string_view root,
                                 const std::vector<std::string_view>& also_at_root) {
  CLINKER_ASSIGN_OR_RETURN(json body, ParseRoot(request, root));
  std::vector<std::string_view> at_root = also_at_root;
  at_root.push_back(root);
  if (auto unexpected = Unexpected(body, at_root); !unexpected.empty()) {
    return tl::unexpected(UnexpectedProperties("", body, unexpected));
  }
  return std::move(body[std::string(root)]);
}

Result<json> ParseBody(const HttpRequest& request,
                       std::string_view root,
                       const std::vector<std::string_view>& allowed,
                       const std::vector<std::string_view>& also_at_root) {
  CLINKER_ASSIGN_OR_RETURN(json inner, ParseBodyOpenObject(request, root, also_at_root));
  if (auto unexpected = Unexpected(inner, allowed); !unexpected.empty()) {
    return tl::unexpected(UnexpectedProperties(root, inner, unexpected));
  }
  return inner;
}

// A text field that may be absent, null or a string of at most 255 characters.
Result<std::optional<std::string>> OptionalText(const json& object,
                                                std::string_view key,
                                                bool* present,
                                                TextLimit limit) {
  *present = object.contains(key);
  if (!*present || object[std::string(key)].is_null()) {
    return std::optional<std::string>();
  }
  const json& value = object[std::string(key)];
  if (!value.is_string()) {
    return tl::unexpected(BadRequest(
        SchemaFieldError(key, value, PythonRepr(value) + " is not of type 'string', 'null'")));
  }
  std::string text = value.get<std::string>();
  // Python counts characters: 255 x "\u4e2d" (765 UTF-8 bytes) is a valid name.
  if (std::size_t characters = CharacterCount(text); characters > kMaxTextLength) {
    if (limit == TextLimit::kInvalidInput) {
      // Volume names and descriptions: the checker names the field without its legacy prefix.
      std::string_view field = key.substr(0, 8) == "display_" ? key.substr(8) : key;
      return tl::unexpected(BadRequest("Invalid input received: " + std::string(field) + " has " +
                                       std::to_string(characters) + " characters, more than " +
                                       std::to_string(kMaxTextLength) + "."));
    }
    return tl::unexpected(
        BadRequest(SchemaFieldError(key, value, PythonRepr(value) + " is too long")));
  }
  return std::optional<std::string>(std::move(text));
}

// `name` wins over its legacy alias `display_name` (likewise for descriptions).
Result<std::optional<std::string>> AliasedText(const json& object,
                                               std::string_view key,
                                               std::string_view legacy_key,
                                               bool* present,
                                               TextLimit limit) {
  bool has_key = false;
  CLINKER_ASSIGN_OR_RETURN(auto value, OptionalText(object, key, &has_key, limit));
  bool has_legacy = false;
  CLINKER_ASSIGN_OR_RETURN(auto legacy, OptionalText(object, legacy_key, &has_legacy, limit));
  *present = has_key || has_legacy;
  return has_key ? value : legacy;
}

Result<std::map<std::string, std::string>> ParseMetadata(const json& value) {
  Metadata metadata;
  if (auto error = ExtraSpecsError(value, "metadata", /*exactly_one=*/false, &metadata)) {
    return tl::unexpected(std::move(*error));
  }
  return metadata;
}

bool IsUuidLike(std::string_view text) {
  // uuid.UUID(text) drops "urn:" and "uuid:", strips braces at both ends and every dash, and
  // wants 32 hex digits; is_uuid_like then compares it with the same normalisation.
  std::string normal(text);
  for (std::string_view prefix : {std::string_view("urn:"), std::string_view("uuid:")}) {
    for (std::size_t at = normal.find(prefix); at != std::string::npos; at = normal.find(prefix)) {
      normal.erase(at, prefix.size());
    }
  }
  const std::size_t first = normal.find_first_not_of("{}");
  const std::size_t last = normal.find_last_not_of("{}");
  normal = first == std::string::npos ? "" : normal.substr(first, last - first + 1);
  normal.erase(std::remove(normal.begin(), normal.end(), '-'), normal.end());
  return normal.size() == 32 && std::all_of(normal.begin(), normal.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) != 0;
         });
}

Result<void> CheckUuidField(const json& object, std::string_view key, UuidField schema) {
  if (!object.is_object() || !object.contains(key)) {
    return {};
  }
  const json& value = object[std::string(key)];
  if (schema == UuidField::kUuidOrNull) {
    if (value.is_null() || (value.is_string() && IsUuidLike(value.get_ref<const std::string&>()))) {
      return {};
    }
    // jsonschema words a failed oneOf without saying which branch came closest.
    return tl::unexpected(BadRequest(SchemaFieldError(
        key, value, PythonRepr(value) + " is not valid under any of the given schemas")));
  }
  if (!value.is_string()) {
    return tl::unexpected(
        BadRequest(SchemaFieldError(key, value, PythonRepr(value) + " is not of type 'string'")));
  }
  if (!IsUuidLike(value.get_ref<const std::string&>())) {
    return tl::unexpected(
        BadRequest(SchemaFieldError(key, value, PythonRepr(value) + " is not a 'uuid'")));
  }
  return {};
}

Result<std::int64_t> ParseSize(const json& value, std::int64_t max_size_gib) {
  std::int64_t size = 0;
  if (value.is_number_integer()) {
    if (value.is_number_unsigned() && value.get<std::uint64_t>() > 0x7fffffffffffffffULL) {
      size = -1;
    } else {
      size = value.get<std::int64_t>();
    }
  } else if (value.is_string() && !value.get<std::string>().empty() &&
             value.get<std::string>().size() <= 18 &&
             std::all_of(value.get<std::string>().begin(),
                         value.get<std::string>().end(),
                         [](char c) { return c >= '0' && c <= '9'; })) {
    size = std::stoll(value.get<std::string>());
  } else {
    return tl::unexpected(BadRequest("Invalid input for field/attribute size. Value: " +
                                     value.dump() + ". The size must be an integer"));
  }
  if (size <= 0) {
    return tl::unexpected(BadRequest("Invalid input received: Volume size '" + value.dump() +
                                     "' must be an integer and greater than 0"));
  }
  if (size > max_size_gib) {
    return tl::unexpected(BadRequest("Invalid input received: Volume size " + std::to_string(size) +
                                     " GiB exceeds the largest size " +
                                     std::to_string(max_size_gib) + " GiB"));
  }
  return size;
}

bool TruthyParameter(std::string_view text) {
  static constexpr std::array kTrue = {"1", "t", "true", "on", "y", "yes"};
  std::string lowered(text);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return std::find(kTrue.begin(), kTrue.end(), lowered) != kTrue.end();
}

std::optional<bool> StrictBoolean(const json& value) {
  if (value.is_boolean()) {
    return value.get<bool>();
  }
  if (!value.is_string()) {
    return std::nullopt;
  }
  // Cinder's parameter_types.boolean enum (case as listed there).
  static constexpr std::array<std::string_view, 12> kTrue = {
      "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"};
  static constexpr std::array<std::string_view, 12> kFalse = {
      "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"};
  const std::string text = value.get<std::string>();
  if (std::find(kTrue.begin(), kTrue.end(), text) != kTrue.end()) {
    return true;
  }
  if (std::find(kFalse.begin(), kFalse.end(), text) != kFalse.end()) {
    return false;
  }
  return std::nullopt;
}

Result<std::int64_t> ParseNonNegative(std::string_view name, const std::string& text) {
  std::int64_t value = 0;
  bool digits = !text.empty() && text.size() <= 18 &&
                std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  bool negative =
      text.size() > 1 && text[0] == '-' &&
      std::all_of(text.begin() + 1, text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (negative) {
    return tl::unexpected(BadRequest(std::string(name) + " param must be positive"));
  }
  if (!digits) {
    return tl::unexpected(BadRequest(std::string(name) + " param must be an integer"));
  }
  value = std::stoll(text);
  return value;
}

std::vector<std::string> SplitCommas(const std::string& text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) {
      comma = text.size();
    }
    std::string part = text.substr(start, comma - start);
    part.erase(0, part.find_first_not_of(' '));
    part.erase(part.find_last_not_of(' ') + 1);
    parts.push_back(part);
    start = comma + 1;
  }
  return parts;
}

Result<bool> ParseDirection(const std::string& direction) {
  if (direction.empty() || direction == "desc") {
    return false;
  }
  if (direction == "asc") {
    return true;
  }
  return tl::unexpected(
      BadRequest("Invalid sort direction '" + direction + "'; use 'asc' or 'desc'"));
}

// `sort=key1:asc,key2` (preferred) or the deprecated `sort_key` / `sort_dir`; never both.
Result<std::vector<ports::SortKey>> ParseSort(
    const HttpRequest& request,
    const std::function<std::optional<std::string>(std::string_view)>& sort_column) {
  std::string sort;
  std::string sort_key;
  std::string sort_dir;
  bool has_sort = request.QueryValue("sort", &sort);
  bool has_key = request.QueryValue("sort_key", &sort_key);
  bool has_dir = request.QueryValue("sort_dir", &sort_dir);
  if (has_sort && (has_key || has_dir)) {
    return tl::unexpected(
        BadRequest("The 'sort_key' and 'sort_dir' parameters are deprecated "
                   "and cannot be used with the 'sort' parameter."));
  }
  std::vector<std::pair<std::string, std::string>> wanted;
  if (has_sort) {
    for (const std::string& item : SplitCommas(sort)) {
      std::size_t colon = item.find(':');
      wanted.emplace_back(item.substr(0, colon),
                          colon == std::string::npos ? "" : item.substr(colon + 1));
    }
  } else if (has_key || has_dir) {
    std::vector<std::string> keys = SplitCommas(has_key ? sort_key : "created_at");
    std::vector<std::string> dirs = has_dir ? SplitCommas(sort_dir) : std::vector<std::string>{};
    for (std::size_t i = 0; i < keys.size(); ++i) {
      wanted.emplace_back(keys[i], i < dirs.size() ? dirs[i] : "");
    }
  } else {
    wanted.emplace_back("created_at", "desc");
  }
  std::vector<ports::SortKey> keys;
  for (const auto& [key, direction] : wanted) {
    auto column = sort_column(key);
    if (!column) {
      return tl::unexpected(BadRequest("Invalid sort key '" + key + "'"));
    }
    CLINKER_ASSIGN_OR_RETURN(bool ascending, ParseDirection(direction));
    keys.push_back(ports::SortKey{*column, ascending});
  }
  return keys;
}

json NullOr(const std::optional<std::string>& text) {
  return text ? json(*text) : json(nullptr);
}

// Percent-encodes everything but RFC 3986 unreserved characters, for query strings.
std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0x0f]);
    }
  }
  return out;
}

// The query string of a "next" link: the request's own parameters with the marker replaced.
std::string NextLink(const RequestContext& context,
                     const HttpRequest& request,
                     std::string_view collection,
                     const std::string& last_id) {
  std::string query;
  for (const auto& [key, value] : request.query) {
    if (key == "marker") {
      continue;
    }
    query += UrlEncode(key) + "=" + UrlEncode(value) + "&";
  }
  query += "marker=" + UrlEncode(last_id);
  return context.link_base + "/" + std::string(collection) + "?" + query;
}

}  // namespace clinker::services
