#include "clinker/services/types_api.h"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <utility>
#include <vector>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/policy.h"
#include "clinker/services/metadata_rules.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

namespace p = domain::policies;
using nlohmann::json;
using ports::Expectation;

constexpr std::string_view kAccessAttribute = "os-volume-type-access:is_public";

// Cinder's USER_VISIBLE_EXTRA_SPECS: the extra specs a caller without read_sensitive sees.
constexpr std::array<std::string_view, 3> kUserVisibleExtraSpecs = {
    "RESKEY:availability_zones", "multiattach", "replication_enabled"};

// A compare-and-swap of the extra specs that keeps losing to other writers gives up after this
// many tries (409: retry later).
constexpr int kExtraSpecAttempts = 8;

bool IsBlank(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

std::string InvalidField(std::string_view field, const json& value, std::string_view why) {
  return "Invalid input for field/attribute " + std::string(field) + ". Value: " + value.dump() +
         ". " + std::string(why);
}

// Only `allowed` keys (jsonschema's additionalProperties: false).
std::optional<std::string> UnexpectedKey(const json& object,
                                         std::initializer_list<std::string_view> allowed,
                                         std::string_view field) {
  for (const auto& item : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end()) {
      return "Invalid input for field/attribute " + std::string(field) +
             ". Additional properties are not allowed ('" + item.key() + "' was unexpected)";
    }
  }
  return std::nullopt;
}

// Cinder's description: null or a string of at most 255 printable characters.
std::optional<std::string> BadDescription(const json& value) {
  if (value.is_null()) {
    return std::nullopt;
  }
  if (!value.is_string()) {
    return InvalidField("description", value, "is not of type 'string', 'null'");
  }
  const std::string text = value.get<std::string>();
  if (CharacterCount(text) > kMaxTextLength) {
    return InvalidField("description", value, "is too long");
  }
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      return InvalidField("description", value, "contains a control character");
    }
  }
  return std::nullopt;
}

// Extra specs as Cinder's schemas have them: an object whose keys match `key_pattern` and whose
// values are strings of at most 255 characters, or null.
std::optional<std::string> BadExtraSpecs(const json& value,
                                         const std::regex& key_pattern,
                                         std::string_view field) {
  if (!value.is_object()) {
    return InvalidField(field, value, "is not of type 'object'");
  }
  for (const auto& [key, item] : value.items()) {
    if (!std::regex_match(key, key_pattern)) {
      return "Invalid input for field/attribute " + std::string(field) +
             ". Additional properties are not allowed ('" + key + "' was unexpected)";
    }
    if (!item.is_null() && !item.is_string()) {
      return InvalidField(key, item, "is not of type 'string', 'null'");
    }
    if (item.is_string() && CharacterCount(item.get<std::string>()) > kMaxTextLength) {
      return InvalidField(key, item, "is too long");
    }
  }
  return std::nullopt;
}

// Keys of a type's extra_specs at create (spaces and '/' allowed) and of the extra_specs API
// (neither allowed), as Cinder's parameter_types.
const std::regex& TypeCreateKeyPattern() {
  static const std::regex kPattern("^[a-zA-Z0-9-_:. /]{1,255}$");
  return kPattern;
}

const std::regex& ExtraSpecKeyPattern() {
  static const std::regex kPattern("^[a-zA-Z0-9-_:.]{1,255}$");
  return kPattern;
}

// What the caller may see of the extra specs: all of them with read_sensitive, else the
// user-visible keys.
json VisibleExtraSpecs(const RequestContext& context, const VolumeType& type) {
  if (Allowed(context, p::kTypeExtraSpecsReadSensitive)) {
    return type.extra_specs;
  }
  json visible = json::object();
  for (std::string_view key : kUserVisibleExtraSpecs) {
    auto found = type.extra_specs.find(key);
    if (found != type.extra_specs.end()) {
      visible[std::string(key)] = *found;
    }
  }
  return visible;
}

// Cinder's v3 view with the volume type access extension (show and list).
json ShowView(const RequestContext& context, const VolumeType& type) {
  json view = {{"id", type.id},
               {"name", type.name},
               {"is_public", type.is_public},
               {"description", NullOr(type.description)}};
  if (Allowed(context, p::kTypeExtraSpecsAttribute)) {
    view["extra_specs"] = VisibleExtraSpecs(context, type);
  }
  if (Allowed(context, p::kTypeQosSpecsIdAttribute)) {
    view["qos_specs_id"] = NullOr(type.qos_specs_id);
  }
  if (Allowed(context, p::kTypeAccessAttribute)) {
    view[std::string(kAccessAttribute)] = type.is_public;
  }
  return view;
}

// Cinder's older view, which create and update answer with.
json ManageView(const VolumeType& type) {
  return {{"id", type.id},
          {"name", type.name},
          {"is_public", type.is_public},
          {"extra_specs", type.extra_specs},
          {"description", NullOr(type.description)}};
}

std::optional<std::string> SortColumn(std::string_view key) {
  static const std::map<std::string_view, std::string_view> kColumns = {
      {"id", "id"},
      {"name", "name"},
      {"description", "description"},
      {"is_public", "is_public"},
      {"created_at", "created_at"},
      {"updated_at", "updated_at"},
  };
  auto it = kColumns.find(key);
  if (it == kColumns.end()) {
    return std::nullopt;
  }
  return std::string(it->second);
}

std::string ExtraSpecNotFound(std::string_view type_id, std::string_view key) {
  return "Volume Type " + std::string(type_id) + " has no extra specs with key " +
         std::string(key) + ".";
}

std::string EncryptionNotFound(std::string_view type_id) {
  return "Volume type encryption for type " + std::string(type_id) + " does not exist.";
}

// Cinder's volume_type_encryption schema for the object under "encryption" (`create`: provider
// and control_location required). Other keys are allowed, as there, and ignored. Returns the
// known fields, key_size as an integer, or the 400 to answer.
tl::expected<json, HttpResponse> ParseEncryption(const HttpRequest& request, bool create) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return tl::unexpected(Fault(400, "Malformed request body"));
  }
  if (!body.is_object() || !body.contains("encryption")) {
    return tl::unexpected(
        Fault(400, "Invalid input for field/attribute body. 'encryption' is a required property"));
  }
  if (auto unexpected = UnexpectedKey(body, {"encryption"}, "body")) {
    return tl::unexpected(Fault(400, *unexpected));
  }
  const json& spec = body["encryption"];
  if (!spec.is_object()) {
    return tl::unexpected(Fault(400, InvalidField("encryption", spec, "is not of type 'object'")));
  }
  if (create) {
    for (const char* required : {"provider", "control_location"}) {
      if (!spec.contains(required)) {
        return tl::unexpected(Fault(400,
                                    std::string("Invalid input for field/attribute encryption. '") +
                                        required + "' is a required property"));
      }
    }
  }
  json fields = json::object();
  if (spec.contains("provider")) {
    const json& provider = spec["provider"];
    if (!provider.is_string() || CharacterCount(provider.get<std::string>()) > kMaxTextLength) {
      return tl::unexpected(Fault(
          400, InvalidField("provider", provider, "is not a string of at most 255 characters")));
    }
    fields["provider"] = provider;
  }
  if (spec.contains("control_location")) {
    const json& location = spec["control_location"];
    if (location != "front-end" && location != "back-end") {
      return tl::unexpected(Fault(
          400,
          InvalidField("control_location", location, "is not one of ['front-end', 'back-end']")));
    }
    fields["control_location"] = location;
  }
  if (spec.contains("cipher")) {
    const json& cipher = spec["cipher"];
    if (!cipher.is_null() &&
        (!cipher.is_string() || CharacterCount(cipher.get<std::string>()) > kMaxTextLength)) {
      return tl::unexpected(
          Fault(400, InvalidField("cipher", cipher, "is not a string of at most 255 characters")));
    }
    fields["cipher"] = cipher;
  }
  if (spec.contains("key_size")) {
    const json& key_size = spec["key_size"];
    std::optional<std::int64_t> size;
    if (key_size.is_number_integer() && !key_size.is_number_unsigned()) {
      size = key_size.get<std::int64_t>();
    } else if (key_size.is_number_unsigned() && key_size.get<std::uint64_t>() <= 0x7fffffffULL) {
      size = static_cast<std::int64_t>(key_size.get<std::uint64_t>());
    } else if (key_size.is_string()) {
      const std::string text = key_size.get<std::string>();
      if (!text.empty() && text.size() <= 10 &&
          std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        size = std::stoll(text);
      }
    }
    if (key_size.is_null()) {
      fields["key_size"] = nullptr;
    } else if (!size || *size < 0 || *size > 0x7fffffffLL) {
      return tl::unexpected(
          Fault(400, InvalidField("key_size", key_size, "is not a valid key size")));
    } else {
      fields["key_size"] = *size;
    }
  }
  return fields;
}

// Cinder's encryption row as GET /types/{id}/encryption shows it.
json EncryptionView(const VolumeType& type) {
  const json& spec = *type.encryption;
  return {{"volume_type_id", type.id},
          {"encryption_id", spec.value("encryption_id", "")},
          {"key_size", spec.value("key_size", json())},
          {"provider", spec.value("provider", "")},
          {"control_location", spec.value("control_location", "front-end")},
          {"cipher", spec.value("cipher", json())},
          {"deleted", false},
          {"created_at", spec.value("created_at", type.created_at)},
          {"updated_at", spec.value("updated_at", json())},
          {"deleted_at", nullptr}};
}

}  // namespace

TypesApi::TypesApi(ports::StateStore& store, const ports::Clock& clock, TypesApiOptions options)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      catalog_(store, clock, options_.default_volume_type) {}

HttpResponse TypesApi::List(const RequestContext& context, const HttpRequest& request) {
  // Cinder's is_public filter: absent or true, public types and the private ones the caller's
  // project has access to; false, private ones only; "none", all. Only an admin chooses.
  enum class Shown { kPublicOrGranted, kPrivate, kAll };
  Shown shown = Shown::kPublicOrGranted;
  std::string value;
  if (context.is_admin && request.QueryValue("is_public", &value)) {
    std::string lowered = value;
    std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](unsigned char c) {
      return static_cast<char>(std::tolower(c));
    });
    if (lowered == "none") {
      shown = Shown::kAll;
    } else {
      std::optional<bool> parsed = StrictBoolean(json(value));
      if (!parsed) {
        return Fault(400, "Invalid is_public filter [" + value + "]");
      }
      shown = *parsed ? Shown::kPublicOrGranted : Shown::kPrivate;
    }
  }
  auto sort = ParseSort(request, SortColumn);
  if (!sort) {
    return FaultFromError(sort.error());
  }
  ports::ListQuery query;
  query.sort = sort->empty() ? std::vector<ports::SortKey>{{"created_at", false}} : *sort;
  auto rows = store_.List(ports::Table::kVolumeTypes, query);
  if (!rows) {
    return FaultFromError(rows.error());
  }
  std::set<std::string, std::less<>> granted;
  if (shown == Shown::kPublicOrGranted && !context.project_id.empty()) {
    ports::ListQuery grants;
    grants.filters = {Expectation::Equals("project_id", context.project_id)};
    auto access = store_.List(ports::Table::kVolumeTypeAccess, grants);
    if (!access) {
      return FaultFromError(access.error());
    }
    for (const ports::Row& row : *access) {
      granted.insert(TextOr(row, "volume_type_id", ""));
    }
  }
  std::vector<VolumeType> types;
  for (const ports::Row& row : *rows) {
    auto type = VolumeTypeFromRow(row);
    if (!type) {
      return FaultFromError(type.error());
    }
    const bool listed =
        shown == Shown::kAll || (shown == Shown::kPrivate && !type->is_public) ||
        (shown == Shown::kPublicOrGranted && (type->is_public || granted.contains(type->id)));
    if (listed) {
      types.push_back(std::move(*type));
    }
  }

  std::size_t start = 0;
  std::string marker;
  if (request.QueryValue("marker", &marker)) {
    auto found = std::find_if(
        types.begin(), types.end(), [&](const VolumeType& type) { return type.id == marker; });
    if (found == types.end()) {
      return Fault(404, "Marker " + marker + " could not be found.");
    }
    start = static_cast<std::size_t>(found - types.begin()) + 1;
  }
  if (request.QueryValue("offset", &value)) {
    auto offset = ParseNonNegative("offset", value);
    if (!offset) {
      return FaultFromError(offset.error());
    }
    start += static_cast<std::size_t>(*offset);
  }
  std::int64_t limit = options_.max_limit;
  if (request.QueryValue("limit", &value)) {
    auto parsed = ParseNonNegative("limit", value);
    if (!parsed) {
      return FaultFromError(parsed.error());
    }
    limit = std::min(*parsed, options_.max_limit);
  }
  json items = json::array();
  for (std::size_t i = start; i < types.size() && static_cast<std::int64_t>(items.size()) < limit;
       ++i) {
    items.push_back(ShowView(context, types[i]));
  }
  json body = {{"volume_types", items}};
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == limit &&
      start + items.size() < types.size()) {
    body["volume_type_links"] = json::array(
        {{{"rel", "next"},
          {"href", NextLink(context, request, "types", items.back().value("id", ""))}}});
  }
  return JsonResponse(200, body);
}

HttpResponse TypesApi::Create(const RequestContext& context, const HttpRequest& request) {
  auto body = ParseBody(request, "volume_type");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  if (auto unexpected =
          UnexpectedKey(spec,
                        {"name", "description", "extra_specs", std::string_view(kAccessAttribute)},
                        "volume_type")) {
    return Fault(400, *unexpected);
  }
  if (!spec.contains("name")) {
    return Fault(400,
                 "Invalid input for field/attribute volume_type. 'name' is a required property");
  }
  const json& name = spec["name"];
  if (!name.is_string()) {
    return Fault(400, InvalidField("name", name, "is not of type 'string'"));
  }
  const std::string name_text = name.get<std::string>();
  if (name_text.empty() || CharacterCount(name_text) > kMaxTextLength) {
    return Fault(400, InvalidField("name", name, "must be 1 to 255 characters"));
  }
  if (IsBlank(name_text)) {
    return Fault(400, "Invalid input for field/attribute name. The 'name' can not be empty.");
  }
  VolumeType type;
  type.id = NewUuid();
  type.name = name_text;
  if (spec.contains("description")) {
    if (auto bad = BadDescription(spec["description"])) {
      return Fault(400, *bad);
    }
    if (spec["description"].is_string()) {
      type.description = spec["description"].get<std::string>();
    }
  }
  if (spec.contains("extra_specs") && !spec["extra_specs"].is_null()) {
    if (auto bad = BadExtraSpecs(spec["extra_specs"], TypeCreateKeyPattern(), "extra_specs")) {
      return Fault(400, *bad);
    }
    type.extra_specs = spec["extra_specs"];
  }
  if (spec.contains(kAccessAttribute)) {
    std::optional<bool> is_public = StrictBoolean(spec[std::string(kAccessAttribute)]);
    if (!is_public) {
      return Fault(
          400,
          InvalidField(
              kAccessAttribute, spec[std::string(kAccessAttribute)], "is not a valid boolean"));
    }
    type.is_public = *is_public;
  }
  type.created_at = FormatTimestamp(clock_.WallNow());
  if (auto inserted = store_.Insert(ports::Table::kVolumeTypes, VolumeTypeToRow(type)); !inserted) {
    if (inserted.error().code == ErrorCode::kConflict) {
      return Fault(409, "Volume Type " + type.name + " already exists.");
    }
    return FaultFromError(inserted.error());
  }
  log::Info("volume_type.created",
            {{"volume_type_id", type.id}, {"name", type.name}, {"by", context.user_id}});
  json view = ManageView(type);
  if (Allowed(context, p::kTypeAccessAttribute)) {
    view[std::string(kAccessAttribute)] = type.is_public;
  }
  return JsonResponse(200, {{"volume_type", view}});
}

HttpResponse TypesApi::Show(const RequestContext& context, std::string_view type_id) {
  if (type_id == "default") {
    auto type = catalog_.Default();
    if (!type) {
      return FaultFromError(type.error());
    }
    return JsonResponse(200, {{"volume_type", ShowView(context, *type)}});
  }
  auto type = catalog_.ById(context, type_id, false);
  if (!type) {
    return FaultFromError(type.error());
  }
  if (!*type) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  return JsonResponse(200, {{"volume_type", ShowView(context, **type)}});
}

HttpResponse TypesApi::Update(const RequestContext& context,
                              const HttpRequest& request,
                              std::string_view type_id) {
  auto body = ParseBody(request, "volume_type");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  if (auto unexpected = UnexpectedKey(spec, {"name", "description", "is_public"}, "volume_type")) {
    return Fault(400, *unexpected);
  }
  ports::Row values;
  std::optional<std::string> new_name;
  if (spec.contains("name") && !spec["name"].is_null()) {
    const json& name = spec["name"];
    if (!name.is_string() || name.get<std::string>().empty() ||
        CharacterCount(name.get<std::string>()) > kMaxTextLength) {
      return Fault(400, InvalidField("name", name, "must be a string of 1 to 255 characters"));
    }
    if (IsBlank(name.get<std::string>())) {
      return Fault(400, "Volume type name can not be empty.");
    }
    new_name = name.get<std::string>();
    values["name"] = *new_name;
  }
  if (spec.contains("description")) {
    if (auto bad = BadDescription(spec["description"])) {
      return Fault(400, *bad);
    }
    if (spec["description"].is_string()) {
      values["description"] = spec["description"].get<std::string>();
    }
  }
  if (spec.contains("is_public") && !spec["is_public"].is_null()) {
    std::optional<bool> is_public = StrictBoolean(spec["is_public"]);
    if (!is_public) {
      return Fault(400, InvalidField("is_public", spec["is_public"], "is not a valid boolean"));
    }
    values["is_public"] = std::int64_t{*is_public ? 1 : 0};
  }
  if (values.empty()) {
    return Fault(400, "Specify volume type name, description, is_public or a combination thereof.");
  }
  auto found = catalog_.ById(context, type_id, false);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  const VolumeType& type = **found;
  std::vector<Expectation> expected = {Expectation::Equals("deleted", std::int64_t{0})};
  const bool renaming = new_name && *new_name != type.name;
  const std::string cannot_rename = "The volume type " + std::string(type_id) +
                                    " is the default volume type and cannot be renamed.";
  if (renaming) {
    if (type.name == options_.default_volume_type) {
      return Fault(400, cannot_rename);
    }
    expected.push_back(Expectation::NotEquals("name", options_.default_volume_type));
  }
  values["updated_at"] = FormatTimestamp(clock_.WallNow());
  auto updated =
      store_.ConditionalUpdate(ports::Table::kVolumeTypes, type_id, values, expected, {});
  if (!updated) {
    if (updated.error().code == ErrorCode::kConflict) {
      return Fault(409, "Volume Type " + new_name.value_or(type.name) + " already exists.");
    }
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    auto again = catalog_.ById(context, type_id, false);
    if (again && *again) {
      return Fault(400, cannot_rename);  // Renamed to the default name meanwhile.
    }
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  auto result = VolumeTypeFromRow(**updated);
  if (!result) {
    return FaultFromError(result.error());
  }
  log::Info("volume_type.updated",
            {{"volume_type_id", result->id}, {"name", result->name}, {"by", context.user_id}});
  return JsonResponse(200, {{"volume_type", ManageView(*result)}});
}

HttpResponse TypesApi::Delete(const RequestContext& context, std::string_view type_id) {
  auto found = catalog_.ById(context, type_id, false);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  const std::string is_default = "The volume type " + std::string(type_id) +
                                 " is a default volume type and cannot be deleted.";
  if ((*found)->name == options_.default_volume_type) {
    return Fault(400, is_default);
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto deleted = store_.ConditionalUpdate(
      ports::Table::kVolumeTypes,
      type_id,
      {{"deleted", std::int64_t{1}}, {"deleted_at", now}, {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::NotEquals("name", options_.default_volume_type)},
      // Cinder's VolumeTypeInUse: no live volume may have the type (volume_type_record.h).
      {ports::Guard::NoLiveRowReferences(ports::Table::kVolumes, "volume_type_id")});
  if (!deleted) {
    return FaultFromError(deleted.error());
  }
  if (!deleted->has_value()) {
    auto again = catalog_.ById(context, type_id, false);
    if (!again || !*again) {
      return Fault(404, VolumeTypeNotFound(type_id));
    }
    if ((*again)->name == options_.default_volume_type) {
      return Fault(400, is_default);
    }
    return Fault(400, "Target volume type is still in use.");
  }
  log::Info("volume_type.deleted",
            {{"volume_type_id", std::string(type_id)}, {"by", context.user_id}});
  return Accepted();
}

HttpResponse TypesApi::Action(const RequestContext& context,
                              const HttpRequest& request,
                              std::string_view type_id) {
  return Action(context, json::parse(request.body, nullptr, false), type_id);
}

HttpResponse TypesApi::Action(const RequestContext& context,
                              const json& body,
                              std::string_view type_id) {
  if (body.is_discarded() || !body.is_object() || body.size() != 1) {
    return Fault(400, "Malformed request body");
  }
  const std::string action = body.begin().key();
  if (action != "addProjectAccess" && action != "removeProjectAccess") {
    return Fault(400, "There is no such action: " + action);
  }
  const json& argument = body.begin().value();
  if (!argument.is_object()) {
    return Fault(400, InvalidField(action, argument, "is not of type 'object'"));
  }
  if (auto unexpected = UnexpectedKey(argument, {"project"}, action)) {
    return Fault(400, *unexpected);
  }
  if (!argument.contains("project")) {
    return Fault(
        400, "Invalid input for field/attribute " + action + ". 'project' is a required property");
  }
  const json& project = argument["project"];
  // Cinder's uuid format: oslo's is_uuid_like (with or without dashes).
  static const std::regex kProjectPattern(
      "^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{"
      "12})$");
  if (!project.is_string() || !std::regex_match(project.get<std::string>(), kProjectPattern)) {
    return Fault(400, InvalidField("project", project, "is not a 'uuid'"));
  }
  if (action == "addProjectAccess") {
    return AddAccess(context, type_id, project.get<std::string>());
  }
  return RemoveAccess(context, type_id, project.get<std::string>());
}

HttpResponse TypesApi::AddAccess(const RequestContext& context,
                                 std::string_view type_id,
                                 const std::string& project_id) {
  auto found = catalog_.ById(context, type_id, true);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  const std::string id = VolumeTypeAccessId(type_id, project_id);
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto inserted = store_.Insert(ports::Table::kVolumeTypeAccess,
                                {{"id", id},
                                 {"volume_type_id", std::string(type_id)},
                                 {"project_id", project_id},
                                 {"created_at", now}});
  if (!inserted) {
    if (inserted.error().code != ErrorCode::kConflict) {
      return FaultFromError(inserted.error());
    }
    // A grant removed earlier (soft-deleted) is revived; a live one is a duplicate.
    auto revived = store_.ConditionalUpdate(
        ports::Table::kVolumeTypeAccess,
        id,
        {{"deleted", std::int64_t{0}}, {"deleted_at", std::monostate{}}, {"updated_at", now}},
        {Expectation::Equals("deleted", std::int64_t{1})},
        {});
    if (!revived) {
      return FaultFromError(revived.error());
    }
    if (!revived->has_value()) {
      return Fault(409,
                   "Volume type access for " + std::string(type_id) + " / " + project_id +
                       " combination already exists.");
    }
  }
  log::Info("volume_type.access_added",
            {{"volume_type_id", std::string(type_id)},
             {"project_id", project_id},
             {"by", context.user_id}});
  return Accepted();
}

HttpResponse TypesApi::RemoveAccess(const RequestContext& context,
                                    std::string_view type_id,
                                    const std::string& project_id) {
  auto found = catalog_.ById(context, type_id, true);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto removed = store_.ConditionalUpdate(
      ports::Table::kVolumeTypeAccess,
      VolumeTypeAccessId(type_id, project_id),
      {{"deleted", std::int64_t{1}}, {"deleted_at", now}, {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0})},
      {});
  if (!removed) {
    return FaultFromError(removed.error());
  }
  if (!removed->has_value()) {
    return Fault(404,
                 "Volume type access not found for " + std::string(type_id) + " / " + project_id +
                     " combination.");
  }
  log::Info("volume_type.access_removed",
            {{"volume_type_id", std::string(type_id)},
             {"project_id", project_id},
             {"by", context.user_id}});
  return Accepted();
}

HttpResponse TypesApi::ListAccess(const RequestContext& context, std::string_view type_id) {
  auto found = catalog_.ById(context, type_id, false);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  if ((*found)->is_public) {
    return Fault(404, "Access list not available for public volume types.");
  }
  ports::ListQuery query;
  query.filters = {Expectation::Equals("volume_type_id", std::string(type_id))};
  query.sort = {ports::SortKey{"created_at", true}};
  auto rows = store_.List(ports::Table::kVolumeTypeAccess, query);
  if (!rows) {
    return FaultFromError(rows.error());
  }
  json items = json::array();
  for (const ports::Row& row : *rows) {
    items.push_back(
        {{"volume_type_id", std::string(type_id)}, {"project_id", TextOr(row, "project_id", "")}});
  }
  return JsonResponse(200, {{"volume_type_access", items}});
}

HttpResponse TypesApi::ListExtraSpecs(const RequestContext& context, std::string_view type_id) {
  auto found = catalog_.ById(context, type_id, false);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  return JsonResponse(200, {{"extra_specs", VisibleExtraSpecs(context, **found)}});
}

HttpResponse TypesApi::CreateExtraSpecs(const RequestContext& context,
                                        const HttpRequest& request,
                                        std::string_view type_id) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return Fault(400, "Malformed request body");
  }
  if (!body.is_object() || !body.contains("extra_specs")) {
    return Fault(400,
                 "Invalid input for field/attribute body. 'extra_specs' is a required "
                 "property");
  }
  if (auto unexpected = UnexpectedKey(body, {"extra_specs"}, "body")) {
    return Fault(400, *unexpected);
  }
  if (auto bad = BadExtraSpecs(body["extra_specs"], ExtraSpecKeyPattern(), "extra_specs")) {
    return Fault(400, *bad);
  }
  return ChangeExtraSpecs(context, type_id, body["extra_specs"], false, body);
}

HttpResponse TypesApi::ShowExtraSpec(const RequestContext& context,
                                     std::string_view type_id,
                                     std::string_view key) {
  auto found = catalog_.ById(context, type_id, false);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  json visible = VisibleExtraSpecs(context, **found);
  auto spec = visible.find(key);
  if (spec == visible.end()) {
    return Fault(404, ExtraSpecNotFound(type_id, key));
  }
  return JsonResponse(200, {{std::string(key), *spec}});
}

HttpResponse TypesApi::UpdateExtraSpec(const RequestContext& context,
                                       const HttpRequest& request,
                                       std::string_view type_id,
                                       std::string_view key) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return Fault(400, "Malformed request body");
  }
  if (auto bad = BadExtraSpecs(body, ExtraSpecKeyPattern(), "body")) {
    return Fault(400, *bad);
  }
  if (body.size() != 1) {
    return Fault(
        400,
        InvalidField("body",
                     body,
                     body.empty() ? "does not have enough properties" : "has too many properties"));
  }
  auto found = catalog_.ById(context, type_id, false);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  if (!body.contains(key)) {
    return Fault(400, "Request body and URI mismatch");
  }
  return ChangeExtraSpecs(context, type_id, body, false, body);
}

HttpResponse TypesApi::DeleteExtraSpec(const RequestContext& context,
                                       std::string_view type_id,
                                       std::string_view key) {
  return ChangeExtraSpecs(context, type_id, {{std::string(key), nullptr}}, true, json());
}

HttpResponse TypesApi::ChangeExtraSpecs(const RequestContext& context,
                                        std::string_view type_id,
                                        const json& changes,
                                        bool erase,
                                        const json& answer) {
  for (int attempt = 0; attempt < kExtraSpecAttempts; ++attempt) {
    auto found = catalog_.ById(context, type_id, false);
    if (!found) {
      return FaultFromError(found.error());
    }
    if (!*found) {
      return Fault(404, VolumeTypeNotFound(type_id));
    }
    const VolumeType& type = **found;
    json merged = type.extra_specs;
    for (const auto& [key, value] : changes.items()) {
      if (erase) {
        if (!merged.contains(key)) {
          return Fault(404, ExtraSpecNotFound(type_id, key));
        }
        merged.erase(key);
      } else {
        merged[key] = value;
      }
    }
    if (!erase) {
      auto is_true = [&merged](std::string_view key) {
        auto spec = merged.find(key);
        return spec != merged.end() && spec->is_string() && spec->get<std::string>() == "<is> True";
      };
      if (is_true("multiattach") && is_true("cacheable")) {
        return Fault(400, "cacheable cannot be set with multiattach.");
      }
    }
    auto updated = store_.ConditionalUpdate(
        ports::Table::kVolumeTypes,
        type_id,
        {{"extra_specs", merged.dump()}, {"updated_at", FormatTimestamp(clock_.WallNow())}},
        {Expectation::Equals("deleted", std::int64_t{0}),
         Expectation::Equals("extra_specs", type.extra_specs_text)},
        // Cinder's _allow_update: not while a live volume has the type.
        {ports::Guard::NoLiveRowReferences(ports::Table::kVolumes, "volume_type_id")});
    if (!updated) {
      return FaultFromError(updated.error());
    }
    if (updated->has_value()) {
      log::Info("volume_type.extra_specs_changed",
                {{"volume_type_id", std::string(type_id)}, {"by", context.user_id}});
      if (erase) {
        return Accepted();
      }
      return JsonResponse(200, answer);
    }
    ports::ListQuery in_use;
    in_use.filters = {Expectation::Equals("volume_type_id", std::string(type_id))};
    in_use.limit = 1;
    auto volumes = store_.List(ports::Table::kVolumes, in_use);
    if (!volumes) {
      return FaultFromError(volumes.error());
    }
    if (!volumes->empty()) {
      return Fault(400, "Volume Type is currently in use.");
    }
    // The specs or the type changed under us: read again.
  }
  return Fault(409,
               "The extra specs of volume type " + std::string(type_id) +
                   " keep changing concurrently; retry.");
}

HttpResponse TypesApi::ShowEncryption(const RequestContext& context, std::string_view type_id) {
  auto found = catalog_.ById(context, type_id, false);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  if (!(*found)->encryption) {
    return JsonResponse(200, json::object());
  }
  return JsonResponse(200, EncryptionView(**found));
}

HttpResponse TypesApi::ShowEncryptionItem(const RequestContext& context,
                                          std::string_view type_id,
                                          std::string_view key) {
  auto found = catalog_.ById(context, type_id, false);
  if (!found) {
    return FaultFromError(found.error());
  }
  if (!*found) {
    return Fault(404, VolumeTypeNotFound(type_id));
  }
  if (!(*found)->encryption) {
    return Fault(404, EncryptionNotFound(type_id));
  }
  json view = EncryptionView(**found);
  auto item = view.find(key);
  if (item == view.end()) {
    return Fault(404, EncryptionNotFound(type_id));
  }
  return JsonResponse(200, {{std::string(key), *item}});
}

HttpResponse TypesApi::CreateEncryption(const RequestContext& context,
                                        const HttpRequest& request,
                                        std::string_view type_id) {
  auto fields = ParseEncryption(request, true);
  if (!fields) {
    return fields.error();
  }
  const std::string encryption_id = NewUuid();
  const std::string now = FormatTimestamp(clock_.WallNow());
  json answer = *fields;
  answer["volume_type_id"] = std::string(type_id);
  answer["encryption_id"] = encryption_id;
  auto change = [&](const VolumeType& type) -> tl::expected<std::optional<json>, HttpResponse> {
    if (type.encryption) {
      return tl::unexpected(Fault(
          400, "Volume type encryption for type " + std::string(type_id) + " already exists."));
    }
    json spec = *fields;
    spec["encryption_id"] = encryption_id;
    spec["created_at"] = now;
    return std::optional<json>(std::move(spec));
  };
  return ChangeEncryption(context,
                          type_id,
                          change,
                          "Cannot create encryption specs. Volume type in use.",
                          JsonResponse(200, {{"encryption", answer}}));
}

HttpResponse TypesApi::UpdateEncryption(const RequestContext& context,
                                        const HttpRequest& request,
                                        std::string_view type_id) {
  auto fields = ParseEncryption(request, false);
  if (!fields) {
    return fields.error();
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto change = [&](const VolumeType& type) -> tl::expected<std::optional<json>, HttpResponse> {
    if (!type.encryption) {
      return tl::unexpected(Fault(404, EncryptionNotFound(type_id)));
    }
    json spec = *type.encryption;
    spec.update(*fields);
    spec["updated_at"] = now;
    return std::optional<json>(std::move(spec));
  };
  return ChangeEncryption(context,
                          type_id,
                          change,
                          "Cannot update encryption specs. Volume type in use.",
                          JsonResponse(200, {{"encryption", *fields}}));
}

HttpResponse TypesApi::DeleteEncryption(const RequestContext& context, std::string_view type_id) {
  auto change = [&](const VolumeType& type) -> tl::expected<std::optional<json>, HttpResponse> {
    if (!type.encryption) {
      return tl::unexpected(Fault(404, EncryptionNotFound(type_id)));
    }
    return std::optional<json>();
  };
  return ChangeEncryption(
      context, type_id, change, "Cannot delete encryption specs. Volume type in use.", Accepted());
}

HttpResponse TypesApi::ChangeEncryption(const RequestContext& context,
                                        std::string_view type_id,
                                        const EncryptionChange& change,
                                        std::string_view in_use,
                                        const HttpResponse& answer) {
  for (int attempt = 0; attempt < kExtraSpecAttempts; ++attempt) {
    auto found = catalog_.ById(context, type_id, false);
    if (!found) {
      return FaultFromError(found.error());
    }
    if (!*found) {
      return Fault(404, VolumeTypeNotFound(type_id));
    }
    const VolumeType& type = **found;
    auto spec = change(type);
    if (!spec) {
      return spec.error();
    }
    auto updated = store_.ConditionalUpdate(
        ports::Table::kVolumeTypes,
        type_id,
        {{"encryption", *spec ? ports::Value((*spec)->dump()) : ports::Value(std::monostate{})},
         {"updated_at", FormatTimestamp(clock_.WallNow())}},
        {Expectation::Equals("deleted", std::int64_t{0}),
         type.encryption_text ? Expectation::Equals("encryption", *type.encryption_text)
                              : Expectation::IsNull("encryption")},
        // Cinder's _encrypted_type_in_use: not while a live volume has the type.
        {ports::Guard::NoLiveRowReferences(ports::Table::kVolumes, "volume_type_id")});
    if (!updated) {
      return FaultFromError(updated.error());
    }
    if (updated->has_value()) {
      log::Info("volume_type.encryption_changed",
                {{"volume_type_id", std::string(type_id)}, {"by", context.user_id}});
      return answer;
    }
    ports::ListQuery volumes;
    volumes.filters = {Expectation::Equals("volume_type_id", std::string(type_id))};
    volumes.limit = 1;
    auto rows = store_.List(ports::Table::kVolumes, volumes);
    if (!rows) {
      return FaultFromError(rows.error());
    }
    if (!rows->empty()) {
      return Fault(400, in_use);
    }
  }
  return Fault(409,
               "The encryption of volume type " + std::string(type_id) +
                   " keeps changing concurrently; retry.");
}

}  // namespace clinker::services
