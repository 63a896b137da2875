#include "clinker/services/group_types_api.h"

#include <algorithm>
#include <cctype>
#include <regex>
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

using nlohmann::json;
using ports::Expectation;

constexpr int kSpecAttempts = 20;

std::string GroupTypeNotFound(std::string_view id) {
  return "Group type " + std::string(id) + " could not be found.";
}

std::string SpecNotFound(std::string_view type_id, std::string_view key) {
  return "Group Type " + std::string(type_id) + " has no specs with key " + std::string(key) + ".";
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

std::string InvalidField(std::string_view field, const json& value, std::string_view why) {
  return "Invalid input for field/attribute " + std::string(field) + ". Value: " + value.dump() +
         " " + std::string(why);
}

// Cinder's group spec keys and values (api/validation/parameter_types: key of 1 to 255
// characters of [a-zA-Z0-9-_:. ], value a string of at most 255).
std::optional<std::string> CheckSpecs(const json& specs) {
  static const std::regex kKey("^[a-zA-Z0-9\\-_:. ]{1,255}$");
  if (!specs.is_object()) {
    return InvalidField("group_specs", specs, "is not of type 'object'");
  }
  for (const auto& [key, value] : specs.items()) {
    if (!std::regex_match(key, kKey)) {
      return "Invalid input for field/attribute group_specs. Value: " + specs.dump() +
             ". Additional properties are not allowed ('" + key + "' was unexpected)";
    }
    if (!value.is_string() || CharacterCount(value.get<std::string>()) > kMaxTextLength) {
      return InvalidField(key, value, "is not a string of at most 255 characters");
    }
  }
  return std::nullopt;
}

json View(const RequestContext& context, const GroupType& type) {
  json view = {{"id", type.id},
               {"name", type.name},
               {"description", NullOr(type.description)},
               {"is_public", type.is_public}};
  if (Allowed(context, domain::policies::kGroupTypeSpecsAttribute)) {
    view["group_specs"] = type.group_specs;
  }
  return view;
}

std::string SpecsText(const std::map<std::string, std::string>& specs) {
  return json(specs).dump();
}

}  // namespace

Result<GroupType> GroupTypeFromRow(const ports::Row& row) {
  GroupType type;
  type.id = TextOr(row, "id", "");
  type.name = TextOr(row, "name", "");
  type.description = OptionalText(row, "description");
  type.is_public = IntegerOr(row, "is_public", 1) != 0;
  type.group_specs = MetadataFromJson(TextOr(row, "group_specs", "{}"));
  type.created_at = TextOr(row, "created_at", "");
  type.deleted = IntegerOr(row, "deleted", 0) != 0;
  if (type.id.empty()) {
    return MakeError(ErrorCode::kInternal, "a group type row without an id");
  }
  return type;
}

tl::expected<GroupType, HttpResponse> FindGroupType(ports::StateStore& store,
                                                    const RequestContext& context,
                                                    const std::string& id_or_name) {
  auto row = store.Get(ports::Table::kGroupTypes, id_or_name);
  if (!row && row.error().code != ErrorCode::kNotFound) {
    return tl::unexpected(FaultFromError(row.error()));
  }
  std::optional<GroupType> found;
  if (row) {
    auto type = GroupTypeFromRow(*row);
    if (!type) {
      return tl::unexpected(FaultFromError(type.error()));
    }
    if (!type->deleted) {
      found = std::move(*type);
    }
  }
  bool by_name = false;
  if (!found) {
    ports::ListQuery query;
    query.filters = {Expectation::Equals("name", id_or_name)};
    query.limit = 1;
    auto rows = store.List(ports::Table::kGroupTypes, query);
    if (!rows) {
      return tl::unexpected(FaultFromError(rows.error()));
    }
    if (!rows->empty()) {
      auto type = GroupTypeFromRow(rows->front());
      if (!type) {
        return tl::unexpected(FaultFromError(type.error()));
      }
      found = std::move(*type);
      by_name = true;
    }
  }
  if (!found || (!found->is_public && !context.is_admin)) {
    static const std::regex kUuid(
        "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$");
    return tl::unexpected(
        Fault(404,
              !by_name && std::regex_match(id_or_name, kUuid)
                  ? GroupTypeNotFound(id_or_name)
                  : "Group type with name " + id_or_name + " could not be found."));
  }
  return *found;
}

GroupTypesApi::GroupTypesApi(ports::StateStore& store,
                             const ports::Clock& clock,
                             GroupTypesApiOptions options)
    : store_(store), clock_(clock), options_(options) {}

HttpResponse GroupTypesApi::List(const RequestContext& context, const HttpRequest& request) {
  // Cinder's is_public filter for group types: public only unless an admin asks for false
  // (private only) or none (all).
  enum class Shown { kPublic, kPrivate, kAll };
  Shown shown = Shown::kPublic;
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
      shown = *parsed ? Shown::kPublic : Shown::kPrivate;
    }
  }
  auto sort = ParseSort(request, SortColumn);
  if (!sort) {
    return FaultFromError(sort.error());
  }
  ports::ListQuery query;
  query.sort = sort->empty() ? std::vector<ports::SortKey>{{"created_at", false}} : *sort;
  if (shown != Shown::kAll) {
    query.filters = {Expectation::Equals("is_public", std::int64_t{shown == Shown::kPublic})};
  }
  if (request.QueryValue("marker", &value)) {
    query.marker_id = value;
  }
  std::int64_t limit = options_.max_limit;
  if (request.QueryValue("limit", &value)) {
    auto parsed = ParseNonNegative("limit", value);
    if (!parsed) {
      return FaultFromError(parsed.error());
    }
    limit = std::min(*parsed, options_.max_limit);
  }
  std::int64_t offset = 0;
  if (request.QueryValue("offset", &value)) {
    auto parsed = ParseNonNegative("offset", value);
    if (!parsed) {
      return FaultFromError(parsed.error());
    }
    offset = *parsed;
  }
  query.limit = limit + offset;
  auto rows = store_.List(ports::Table::kGroupTypes, query);
  if (!rows) {
    if (rows.error().code == ErrorCode::kNotFound) {
      return Fault(404, "Marker " + value + " could not be found.");
    }
    return FaultFromError(rows.error());
  }
  json items = json::array();
  for (std::size_t i = static_cast<std::size_t>(offset); i < rows->size(); ++i) {
    auto type = GroupTypeFromRow((*rows)[i]);
    if (!type) {
      return FaultFromError(type.error());
    }
    items.push_back(View(context, *type));
  }
  json body = {{"group_types", items}};
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == limit) {
    body["group_type_links"] = json::array(
        {{{"rel", "next"},
          {"href", NextLink(context, request, "group_types", items.back().value("id", ""))}}});
  }
  return JsonResponse(200, body);
}

HttpResponse GroupTypesApi::Create(const RequestContext& context, const HttpRequest& request) {
  auto body = ParseBody(request, "group_type");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  for (const auto& [key, value] : spec.items()) {
    if (key != "name" && key != "description" && key != "is_public" && key != "group_specs") {
      return Fault(400,
                   "Invalid input for field/attribute group_type. Value: " + spec.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
  }
  if (!spec.contains("name")) {
    return Fault(400,
                 "Invalid input for field/attribute group_type. Value: " + spec.dump() +
                     ". 'name' is a required property");
  }
  GroupType type;
  const json& name = spec["name"];
  if (!name.is_string() || name.get<std::string>().empty() ||
      CharacterCount(name.get<std::string>()) > kMaxTextLength) {
    return Fault(400, InvalidField("name", name, "is not a string of 1 to 255 characters"));
  }
  type.name = name.get<std::string>();
  if (std::all_of(type.name.begin(), type.name.end(), [](unsigned char c) {
        return std::isspace(c) != 0;
      })) {
    return Fault(400, "Group type name can not be empty.");
  }
  bool present = false;
  auto description = OptionalText(spec, "description", &present);
  if (!description) {
    return FaultFromError(description.error());
  }
  type.description = *description;
  if (spec.contains("is_public") && !spec["is_public"].is_null()) {
    std::optional<bool> is_public = StrictBoolean(spec["is_public"]);
    if (!is_public) {
      return Fault(400, InvalidField("is_public", spec["is_public"], "is not a valid boolean"));
    }
    type.is_public = *is_public;
  }
  if (spec.contains("group_specs") && !spec["group_specs"].is_null()) {
    if (auto invalid = CheckSpecs(spec["group_specs"])) {
      return Fault(400, *invalid);
    }
    type.group_specs = spec["group_specs"].get<std::map<std::string, std::string>>();
  }
  type.id = NewUuid();
  type.created_at = FormatTimestamp(clock_.WallNow());
  auto inserted = store_.Insert(ports::Table::kGroupTypes,
                                {{"id", type.id},
                                 {"name", type.name},
                                 {"description", TextOrNull(type.description)},
                                 {"is_public", std::int64_t{type.is_public ? 1 : 0}},
                                 {"group_specs", SpecsText(type.group_specs)},
                                 {"created_at", type.created_at}});
  if (!inserted) {
    if (inserted.error().code == ErrorCode::kConflict) {
      return Fault(409, "Group Type " + type.name + " already exists.");
    }
    return FaultFromError(inserted.error());
  }
  log::Info("group_type.created", {{"group_type_id", type.id}, {"name", type.name}});
  return JsonResponse(202, {{"group_type", View(context, type)}});
}

HttpResponse GroupTypesApi::Show(const RequestContext& context, std::string_view type_id) {
  if (type_id == "default") {
    return Fault(404, "Default group type can not be found.");
  }
  auto row = store_.Get(ports::Table::kGroupTypes, type_id);
  if (!row) {
    return row.error().code == ErrorCode::kNotFound ? Fault(404, GroupTypeNotFound(type_id))
                                                    : FaultFromError(row.error());
  }
  auto type = GroupTypeFromRow(*row);
  if (!type) {
    return FaultFromError(type.error());
  }
  if (type->deleted || (!type->is_public && !context.is_admin)) {
    return Fault(404, GroupTypeNotFound(type_id));
  }
  return JsonResponse(200, {{"group_type", View(context, *type)}});
}

HttpResponse GroupTypesApi::Update(const RequestContext& context,
                                   const HttpRequest& request,
                                   std::string_view type_id) {
  auto body = ParseBody(request, "group_type");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  for (const auto& [key, value] : spec.items()) {
    if (key != "name" && key != "description" && key != "is_public") {
      return Fault(400,
                   "Invalid input for field/attribute group_type. Value: " + spec.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
  }
  ports::Row values;
  bool present = false;
  auto name = OptionalText(spec, "name", &present);
  if (!name) {
    return FaultFromError(name.error());
  }
  if (*name) {
    if (std::all_of((*name)->begin(), (*name)->end(), [](unsigned char c) {
          return std::isspace(c) != 0;
        })) {
      return Fault(400, "Group type name can not be empty.");
    }
    values["name"] = **name;
  }
  auto description = OptionalText(spec, "description", &present);
  if (!description) {
    return FaultFromError(description.error());
  }
  if (*description) {
    values["description"] = **description;
  }
  if (spec.contains("is_public") && !spec["is_public"].is_null()) {
    std::optional<bool> is_public = StrictBoolean(spec["is_public"]);
    if (!is_public) {
      return Fault(400, InvalidField("is_public", spec["is_public"], "is not a valid boolean"));
    }
    values["is_public"] = std::int64_t{*is_public ? 1 : 0};
  }
  if (values.empty()) {
    return Fault(400, "Specify group type name, description or a combination thereof.");
  }
  values["updated_at"] = FormatTimestamp(clock_.WallNow());
  auto updated = store_.ConditionalUpdate(ports::Table::kGroupTypes,
                                          type_id,
                                          values,
                                          {Expectation::Equals("deleted", std::int64_t{0})},
                                          {});
  if (!updated) {
    if (updated.error().code == ErrorCode::kConflict) {
      return Fault(409, "Group Type " + std::get<std::string>(values["name"]) + " already exists.");
    }
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, GroupTypeNotFound(type_id));
  }
  auto type = GroupTypeFromRow(**updated);
  if (!type) {
    return FaultFromError(type.error());
  }
  return JsonResponse(200, {{"group_type", View(context, *type)}});
}

HttpResponse GroupTypesApi::Delete(const RequestContext& context, std::string_view type_id) {
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto deleted = store_.ConditionalUpdate(
      ports::Table::kGroupTypes,
      type_id,
      {{"deleted", std::int64_t{1}}, {"deleted_at", now}, {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0})},
      // Cinder's GroupTypeInUse: not while a live group has the type.
      {ports::Guard::NoLiveRowReferences(ports::Table::kGroups, "group_type_id")});
  if (!deleted) {
    return FaultFromError(deleted.error());
  }
  if (!deleted->has_value()) {
    auto row = store_.Get(ports::Table::kGroupTypes, type_id);
    if (!row && row.error().code != ErrorCode::kNotFound) {
      return FaultFromError(row.error());
    }
    if (!row || IntegerOr(*row, "deleted", 0) != 0) {
      return Fault(404, GroupTypeNotFound(type_id));
    }
    return Fault(400, "Target group type is still in use.");
  }
  log::Info("group_type.deleted",
            {{"group_type_id", std::string(type_id)}, {"by", context.user_id}});
  return Accepted();
}

HttpResponse GroupTypesApi::ListSpecs(const RequestContext& context, std::string_view type_id) {
  auto row = store_.Get(ports::Table::kGroupTypes, type_id);
  if (!row) {
    return row.error().code == ErrorCode::kNotFound ? Fault(404, GroupTypeNotFound(type_id))
                                                    : FaultFromError(row.error());
  }
  auto type = GroupTypeFromRow(*row);
  if (!type) {
    return FaultFromError(type.error());
  }
  if (type->deleted || (!type->is_public && !context.is_admin)) {
    return Fault(404, GroupTypeNotFound(type_id));
  }
  return JsonResponse(200, {{"group_specs", type->group_specs}});
}

HttpResponse GroupTypesApi::ShowSpec(const RequestContext& context,
                                     std::string_view type_id,
                                     std::string_view key) {
  HttpResponse all = ListSpecs(context, type_id);
  if (all.status != 200) {
    return all;
  }
  json specs = json::parse(all.body)["group_specs"];
  const std::string name(key);
  if (!specs.contains(name)) {
    return Fault(404, SpecNotFound(type_id, key));
  }
  return JsonResponse(200, {{name, specs[name]}});
}

HttpResponse GroupTypesApi::CreateSpecs(const RequestContext& context,
                                        const HttpRequest& request,
                                        std::string_view type_id) {
  auto body = ParseBody(request, "group_specs");
  if (!body) {
    return FaultFromError(body.error());
  }
  if (auto invalid = CheckSpecs(*body)) {
    return Fault(400, *invalid);
  }
  const json changes = *body;
  return ChangeSpecs(
      context,
      type_id,
      [&changes](std::map<std::string, std::string>& specs) -> std::optional<HttpResponse> {
        for (const auto& [key, value] : changes.items()) {
          specs[key] = value.get<std::string>();
        }
        return std::nullopt;
      },
      JsonResponse(202, {{"group_specs", changes}}));
}

HttpResponse GroupTypesApi::UpdateSpec(const RequestContext& context,
                                       const HttpRequest& request,
                                       std::string_view type_id,
                                       std::string_view key) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return Fault(400, "Malformed request body");
  }
  const std::string name(key);
  if (!body.contains(name)) {
    return Fault(400, "Request body and URI mismatch");
  }
  if (body.size() > 1) {
    return Fault(400, "Request body contains too many items");
  }
  if (auto invalid = CheckSpecs(body)) {
    return Fault(400, *invalid);
  }
  const std::string value = body[name].get<std::string>();
  return ChangeSpecs(
      context,
      type_id,
      [&](std::map<std::string, std::string>& specs) -> std::optional<HttpResponse> {
        specs[name] = value;
        return std::nullopt;
      },
      JsonResponse(200, body));
}

HttpResponse GroupTypesApi::DeleteSpec(const RequestContext& context,
                                       std::string_view type_id,
                                       std::string_view key) {
  const std::string name(key);
  return ChangeSpecs(
      context,
      type_id,
      [&](std::map<std::string, std::string>& specs) -> std::optional<HttpResponse> {
        if (specs.erase(name) == 0) {
          return Fault(404, SpecNotFound(type_id, key));
        }
        return std::nullopt;
      },
      Accepted());
}

HttpResponse GroupTypesApi::ChangeSpecs(const RequestContext& context,
                                        std::string_view type_id,
                                        const SpecsChange& change,
                                        const HttpResponse& answer) {
  for (int attempt = 0; attempt < kSpecAttempts; ++attempt) {
    auto row = store_.Get(ports::Table::kGroupTypes, type_id);
    if (!row) {
      return row.error().code == ErrorCode::kNotFound ? Fault(404, GroupTypeNotFound(type_id))
                                                      : FaultFromError(row.error());
    }
    auto type = GroupTypeFromRow(*row);
    if (!type) {
      return FaultFromError(type.error());
    }
    if (type->deleted) {
      return Fault(404, GroupTypeNotFound(type_id));
    }
    std::map<std::string, std::string> specs = type->group_specs;
    if (auto refused = change(specs)) {
      return *refused;
    }
    auto updated = store_.ConditionalUpdate(
        ports::Table::kGroupTypes,
        type_id,
        {{"group_specs", SpecsText(specs)}, {"updated_at", FormatTimestamp(clock_.WallNow())}},
        {Expectation::Equals("deleted", std::int64_t{0}),
         Expectation::Equals("group_specs", TextOr(*row, "group_specs", "{}"))},
        {});
    if (!updated) {
      return FaultFromError(updated.error());
    }
    if (updated->has_value()) {
      log::Info("group_type.specs_changed",
                {{"group_type_id", std::string(type_id)}, {"by", context.user_id}});
      return answer;
    }
  }
  return Fault(409, "The group specs changed too often meanwhile; retry.");
}

}  // namespace clinker::services
