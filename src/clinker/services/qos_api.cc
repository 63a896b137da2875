#include "clinker/services/qos_api.h"

#include <algorithm>
#include <array>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/services/metadata_rules.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using nlohmann::json;
using ports::Expectation;

constexpr std::array<std::string_view, 3> kConsumers = {"front-end", "back-end", "both"};

// A compare-and-swap of a QoS specs (or of the associations, for a forced delete) that keeps
// losing to other writers gives up after this many tries (409: retry later).
constexpr int kAttempts = 8;

struct QosSpecs {
  std::string id;
  std::string name;
  std::string consumer;
  json specs = json::object();
  // The column as stored: a change of the specs is a compare-and-swap on it.
  std::string specs_text = "{}";
};

Result<QosSpecs> QosSpecsFromRow(const ports::Row& row) {
  QosSpecs qos;
  qos.id = TextOr(row, "id", "");
  qos.name = TextOr(row, "name", "");
  qos.consumer = TextOr(row, "consumer", "back-end");
  qos.specs_text = TextOr(row, "specs", "{}");
  qos.specs = json::parse(qos.specs_text, nullptr, false);
  if (!qos.specs.is_object()) {
    return MakeError(ErrorCode::kInternal, "qos specs " + qos.id + " has malformed specs");
  }
  return qos;
}

std::string QosNotFound(std::string_view id) {
  return "No such QoS spec " + std::string(id) + ".";
}

json SpecsView(const QosSpecs& qos) {
  return {{"id", qos.id}, {"name", qos.name}, {"consumer", qos.consumer}, {"specs", qos.specs}};
}

json Links(const RequestContext& context, std::string_view id) {
  return json::array(
      {{{"rel", "self"}, {"href", context.link_base + "/qos-specs/" + std::string(id)}},
       {{"rel", "bookmark"}, {"href", context.bookmark_base + "/qos-specs/" + std::string(id)}}});
}

bool IsConsumer(const json& value) {
  return value.is_string() &&
         std::find(kConsumers.begin(), kConsumers.end(), value.get<std::string>()) !=
             kConsumers.end();
}

HttpResponse InvalidConsumer() {
  return Fault(400,
               "Invalid qos specs: Valid consumer of QoS specs are: ['front-end', 'back-end', "
               "'both']");
}

// utils.validate_dictionary_string_length: keys of 1 to 255 characters, values null or strings
// of at most 255 (Cinder's InvalidInput, a 400).
std::optional<std::string> BadSpecs(const json& specs) {
  for (const auto& [key, value] : specs.items()) {
    if (key.empty() || CharacterCount(key) > kMaxTextLength) {
      return "Invalid input received: Key \"" + key +
             "\" has a length outside 1 to 255 characters.";
    }
    if (value.is_null()) {
      continue;
    }
    if (!value.is_string()) {
      return "Invalid input received: Value for key \"" + key + "\" is not a string or unicode";
    }
    if (CharacterCount(value.get<std::string>()) > kMaxTextLength) {
      return "Invalid input received: Value for key \"" + key + "\" has more than 255 characters.";
    }
  }
  return std::nullopt;
}

// The vol_type_id query parameter of associate / disassociate, or Cinder's 400.
tl::expected<std::string, HttpResponse> TypeIdParameter(const HttpRequest& request) {
  std::string type_id;
  if (!request.QueryValue("vol_type_id", &type_id) || type_id.empty()) {
    return tl::unexpected(Fault(400, "Volume Type id must not be None."));
  }
  return type_id;
}

}  // namespace

QosApi::QosApi(ports::StateStore& store, const ports::Clock& clock, VolumeTypeCatalog& types)
    : store_(store), clock_(clock), types_(types) {}

namespace {

// The live QoS specs `id`, or the 404 / engine fault to answer.
tl::expected<QosSpecs, HttpResponse> LiveQosSpecs(ports::StateStore& store, std::string_view id) {
  auto row = store.Get(ports::Table::kQosSpecs, id);
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return tl::unexpected(Fault(404, QosNotFound(id)));
    }
    return tl::unexpected(FaultFromError(row.error()));
  }
  if (IntegerOr(*row, "deleted", 0) != 0) {
    return tl::unexpected(Fault(404, QosNotFound(id)));
  }
  auto qos = QosSpecsFromRow(*row);
  if (!qos) {
    return tl::unexpected(FaultFromError(qos.error()));
  }
  return std::move(*qos);
}

}  // namespace

HttpResponse QosApi::List(const RequestContext& context, const HttpRequest& request) {
  // Cinder filters on id, name and consumer and ignores any other parameter; sorting by any
  // column, newest first by default, with limit / marker / offset.
  ports::ListQuery query;
  for (std::string_view filter : {"id", "name", "consumer"}) {
    std::string value;
    if (request.QueryValue(filter, &value)) {
      query.filters.push_back(Expectation::Equals(std::string(filter), value));
    }
  }
  auto sort = ParseSort(request, [](std::string_view key) -> std::optional<std::string> {
    if (key == "id" || key == "name" || key == "consumer" || key == "created_at" ||
        key == "updated_at") {
      return std::string(key);
    }
    return std::nullopt;
  });
  if (!sort) {
    return FaultFromError(sort.error());
  }
  query.sort = sort->empty() ? std::vector<ports::SortKey>{{"created_at", false}} : *sort;
  std::string value;
  if (request.QueryValue("marker", &value)) {
    query.marker_id = value;
  }
  std::int64_t offset = 0;
  if (request.QueryValue("offset", &value)) {
    auto parsed = ParseNonNegative("offset", value);
    if (!parsed) {
      return FaultFromError(parsed.error());
    }
    offset = *parsed;
  }
  std::optional<std::int64_t> limit;
  if (request.QueryValue("limit", &value)) {
    auto parsed = ParseNonNegative("limit", value);
    if (!parsed) {
      return FaultFromError(parsed.error());
    }
    limit = *parsed;
    query.limit = *parsed + offset;
  }
  auto rows = store_.List(ports::Table::kQosSpecs, query);
  if (!rows) {
    if (rows.error().code == ErrorCode::kNotFound && query.marker_id) {
      return Fault(400, "Marker " + *query.marker_id + " could not be found.");
    }
    return FaultFromError(rows.error());
  }
  json items = json::array();
  for (std::size_t i = static_cast<std::size_t>(offset); i < rows->size(); ++i) {
    auto qos = QosSpecsFromRow((*rows)[i]);
    if (!qos) {
      return FaultFromError(qos.error());
    }
    items.push_back(SpecsView(*qos));
  }
  json body = {{"qos_specs", items}};
  if (limit && *limit > 0 && static_cast<std::int64_t>(items.size()) == *limit) {
    body["qos_specs_links"] = json::array(
        {{{"rel", "next"},
          {"href", NextLink(context, request, "qos-specs", items.back().value("id", ""))}}});
  }
  return JsonResponse(200, body);
}

HttpResponse QosApi::Create(const RequestContext& context, const HttpRequest& request) {
  auto body = ParseBody(request, "qos_specs");
  if (!body) {
    return FaultFromError(body.error());
  }
  json specs = *body;
  if (!specs.contains("name")) {
    return Fault(400, SchemaFieldError("qos_specs", specs, "'name' is a required property"));
  }
  const json name = specs["name"];
  if (!name.is_string()) {
    return Fault(400,
                 SchemaFieldError("name", name, PythonRepr(name) + " is not of type 'string'"));
  }
  std::string name_text = name.get<std::string>();
  const auto first = name_text.find_first_not_of(" \t\n\r\f\v");
  if (first == std::string::npos) {
    return Fault(400, "Invalid input for field/attribute name. The 'name' can not be empty.");
  }
  name_text = name_text.substr(first, name_text.find_last_not_of(" \t\n\r\f\v") - first + 1);
  if (CharacterCount(name_text) > kMaxTextLength) {
    return Fault(400,
                 "Invalid input for field/attribute name. The 'name' can not be greater than 255 "
                 "characters.");
  }
  specs.erase("name");
  QosSpecs qos;
  qos.id = NewUuid();
  qos.name = name_text;
  qos.consumer = "back-end";
  if (specs.contains("consumer")) {
    if (!IsConsumer(specs["consumer"])) {
      return InvalidConsumer();
    }
    qos.consumer = specs["consumer"].get<std::string>();
    specs.erase("consumer");
  }
  if (auto bad = BadSpecs(specs)) {
    return Fault(400, *bad);
  }
  qos.specs = specs;
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto inserted = store_.Insert(ports::Table::kQosSpecs,
                                {{"id", qos.id},
                                 {"name", qos.name},
                                 {"consumer", qos.consumer},
                                 {"specs", qos.specs.dump()},
                                 {"created_at", now}});
  if (!inserted) {
    if (inserted.error().code == ErrorCode::kConflict) {
      return Fault(409, "QoS Specs " + qos.name + " already exists.");
    }
    return FaultFromError(inserted.error());
  }
  log::Info("qos_specs.created",
            {{"qos_specs_id", qos.id}, {"name", qos.name}, {"by", context.user_id}});
  return JsonResponse(200, {{"qos_specs", SpecsView(qos)}, {"links", Links(context, qos.id)}});
}

HttpResponse QosApi::Show(const RequestContext& context, std::string_view qos_id) {
  auto qos = LiveQosSpecs(store_, qos_id);
  if (!qos) {
    return std::move(qos.error());
  }
  return JsonResponse(200, {{"qos_specs", SpecsView(*qos)}, {"links", Links(context, qos->id)}});
}

HttpResponse QosApi::SetKeys(const RequestContext& context,
                             const HttpRequest& request,
                             std::string_view qos_id) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return Fault(400, "Malformed request body");
  }
  if (!body.is_object() || !body.contains("qos_specs")) {
    return Fault(400, SchemaFieldError("qos_specs", body, "'qos_specs' is a required property"));
  }
  if (body.size() != 1) {
    return Fault(400,
                 "Invalid input for field/attribute qos_specs. Additional properties are "
                 "not allowed");
  }
  // parameter_types.extra_specs_with_null: keys of [a-zA-Z0-9-_:. /], values strings or null.
  auto checked = CheckExtraSpecs(body["qos_specs"], "qos_specs", false);
  if (!checked) {
    return std::move(checked.error());
  }
  const json& changes = body["qos_specs"];
  if (changes.contains("consumer") && !IsConsumer(changes["consumer"])) {
    return InvalidConsumer();
  }
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto qos = LiveQosSpecs(store_, qos_id);
    if (!qos) {
      return std::move(qos.error());
    }
    std::string consumer = qos->consumer;
    json merged = qos->specs;
    for (const auto& [key, value] : changes.items()) {
      if (key == "consumer") {
        consumer = value.get<std::string>();
      } else {
        merged[key] = value;
      }
    }
    auto updated = store_.ConditionalUpdate(ports::Table::kQosSpecs,
                                            qos_id,
                                            {{"specs", merged.dump()},
                                             {"consumer", consumer},
                                             {"updated_at", FormatTimestamp(clock_.WallNow())}},
                                            {Expectation::Equals("deleted", std::int64_t{0}),
                                             Expectation::Equals("specs", qos->specs_text),
                                             Expectation::Equals("consumer", qos->consumer)},
                                            {});
    if (!updated) {
      return FaultFromError(updated.error());
    }
    if (updated->has_value()) {
      log::Info("qos_specs.updated",
                {{"qos_specs_id", std::string(qos_id)}, {"by", context.user_id}});
      return JsonResponse(200, body);
    }
  }
  return Fault(409, "QoS specs " + std::string(qos_id) + " keep changing concurrently; retry.");
}

HttpResponse QosApi::UnsetKeys(const RequestContext& context,
                               const HttpRequest& request,
                               std::string_view qos_id) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return Fault(400, "Malformed request body");
  }
  if (!body.is_object() || !body.contains("keys")) {
    return Fault(400, SchemaFieldError("keys", body, "'keys' is a required property"));
  }
  const json& keys = body["keys"];
  if (!keys.is_array()) {
    return Fault(400, SchemaFieldError("keys", keys, PythonRepr(keys) + " is not of type 'array'"));
  }
  std::set<std::string, std::less<>> unique;
  for (const json& key : keys) {
    if (!key.is_string() || key.get<std::string>().empty() ||
        CharacterCount(key.get<std::string>()) > kMaxTextLength) {
      return Fault(400, SchemaFieldError("keys", key, "is not a key of 1 to 255 characters"));
    }
    if (!unique.insert(key.get<std::string>()).second) {
      return Fault(400, SchemaFieldError("keys", keys, "has non-unique elements"));
    }
  }
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto qos = LiveQosSpecs(store_, qos_id);
    if (!qos) {
      return std::move(qos.error());
    }
    json remaining = qos->specs;
    for (const std::string& key : unique) {
      if (!remaining.contains(key)) {
        return Fault(404, "QoS spec " + std::string(qos_id) + " has no spec with key " + key + ".");
      }
      remaining.erase(key);
    }
    auto updated = store_.ConditionalUpdate(
        ports::Table::kQosSpecs,
        qos_id,
        {{"specs", remaining.dump()}, {"updated_at", FormatTimestamp(clock_.WallNow())}},
        {Expectation::Equals("deleted", std::int64_t{0}),
         Expectation::Equals("specs", qos->specs_text)},
        {});
    if (!updated) {
      return FaultFromError(updated.error());
    }
    if (updated->has_value()) {
      log::Info("qos_specs.keys_unset",
                {{"qos_specs_id", std::string(qos_id)}, {"by", context.user_id}});
      return Accepted();
    }
  }
  return Fault(409, "QoS specs " + std::string(qos_id) + " keep changing concurrently; retry.");
}

Result<void> QosApi::DisassociateEveryType(std::string_view qos_id) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals("qos_specs_id", std::string(qos_id))};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> types,
                           store_.List(ports::Table::kVolumeTypes, query));
  const std::string now = FormatTimestamp(clock_.WallNow());
  for (const ports::Row& type : types) {
    // Expecting the association keeps a concurrent re-association to another QoS specs.
    CLINKER_ASSIGN_OR_RETURN(
        std::optional<ports::Row> updated,
        store_.ConditionalUpdate(ports::Table::kVolumeTypes,
                                 TextOr(type, "id", ""),
                                 {{"qos_specs_id", ports::Value()}, {"updated_at", now}},
                                 {Expectation::Equals("qos_specs_id", std::string(qos_id))},
                                 {}));
    (void)updated;
  }
  return {};
}

HttpResponse QosApi::Delete(const RequestContext& context,
                            const HttpRequest& request,
                            std::string_view qos_id) {
  std::string value;
  const bool force = request.QueryValue("force", &value) && TruthyParameter(value);
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto qos = LiveQosSpecs(store_, qos_id);
    if (!qos) {
      return std::move(qos.error());
    }
    if (force) {
      if (auto cleared = DisassociateEveryType(qos_id); !cleared) {
        return FaultFromError(cleared.error());
      }
    }
    const std::string now = FormatTimestamp(clock_.WallNow());
    auto deleted = store_.ConditionalUpdate(
        ports::Table::kQosSpecs,
        qos_id,
        {{"deleted", std::int64_t{1}}, {"deleted_at", now}, {"updated_at", now}},
        {Expectation::Equals("deleted", std::int64_t{0})},
        {ports::Guard::NoLiveRowReferences(ports::Table::kVolumeTypes, "qos_specs_id")});
    if (!deleted) {
      return FaultFromError(deleted.error());
    }
    if (deleted->has_value()) {
      log::Info("qos_specs.deleted",
                {{"qos_specs_id", std::string(qos_id)}, {"force", force}, {"by", context.user_id}});
      return Accepted();
    }
    if (!force) {
      // Either a type is associated (the guard) or the row went away: tell which.
      auto still = LiveQosSpecs(store_, qos_id);
      if (!still) {
        return std::move(still.error());
      }
      return Fault(400, "Qos specs still in use.");
    }
    // Forced: a type was associated after we cleared them; clear again.
  }
  return Fault(409,
               "QoS specs " + std::string(qos_id) +
                   " keep being associated with volume types concurrently; retry.");
}

HttpResponse QosApi::ListAssociations(const RequestContext& /*context*/, std::string_view qos_id) {
  auto qos = LiveQosSpecs(store_, qos_id);
  if (!qos) {
    return std::move(qos.error());
  }
  ports::ListQuery query;
  query.filters = {Expectation::Equals("qos_specs_id", std::string(qos_id))};
  query.sort = {{"created_at", true}};
  auto types = store_.List(ports::Table::kVolumeTypes, query);
  if (!types) {
    return FaultFromError(types.error());
  }
  json associations = json::array();
  for (const ports::Row& type : *types) {
    associations.push_back({{"association_type", "volume_type"},
                            {"name", TextOr(type, "name", "")},
                            {"id", TextOr(type, "id", "")}});
  }
  return JsonResponse(200, {{"qos_associations", associations}});
}

HttpResponse QosApi::Associate(const RequestContext& context,
                               const HttpRequest& request,
                               std::string_view qos_id) {
  auto type_id = TypeIdParameter(request);
  if (!type_id) {
    return std::move(type_id.error());
  }
  auto qos = LiveQosSpecs(store_, qos_id);
  if (!qos) {
    return std::move(qos.error());
  }
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto type = types_.ById(context, *type_id, true);
    if (!type) {
      return FaultFromError(type.error());
    }
    if (!*type) {
      return Fault(404, VolumeTypeNotFound(*type_id));
    }
    const std::optional<std::string>& current = (*type)->qos_specs_id;
    if (current && *current == qos_id) {
      return Accepted();  // Associated already: the delete's guard sees it.
    }
    if (current) {
      return Fault(400,
                   "Invalid volume type: Type " + *type_id +
                       " is already associated with another qos specs: " + *current);
    }
    auto associated = store_.ConditionalUpdate(
        ports::Table::kVolumeTypes,
        *type_id,
        {{"qos_specs_id", std::string(qos_id)}, {"updated_at", FormatTimestamp(clock_.WallNow())}},
        {Expectation::Equals("deleted", std::int64_t{0}), Expectation::IsNull("qos_specs_id")},
        {});
    if (!associated) {
      return FaultFromError(associated.error());
    }
    if (!associated->has_value()) {
      continue;  // The type changed (associated, deleted) since we read it: decide again.
    }
    // The pin (qos_api.h): the QoS specs must still be live now that the type points at it.
    auto pinned = store_.ConditionalUpdate(
        ports::Table::kQosSpecs, qos_id, {}, {Expectation::Equals("deleted", std::int64_t{0})}, {});
    if (pinned && pinned->has_value()) {
      log::Info("qos_specs.associated",
                {{"qos_specs_id", std::string(qos_id)},
                 {"volume_type_id", *type_id},
                 {"by", context.user_id}});
      return Accepted();
    }
    // Deleted meanwhile (or the engine failed): take the association back.
    auto undone =
        store_.ConditionalUpdate(ports::Table::kVolumeTypes,
                                 *type_id,
                                 {{"qos_specs_id", ports::Value()}},
                                 {Expectation::Equals("qos_specs_id", std::string(qos_id))},
                                 {});
    if (!pinned) {
      return FaultFromError(pinned.error());
    }
    if (!undone) {
      return FaultFromError(undone.error());
    }
    return Fault(404, QosNotFound(qos_id));
  }
  return Fault(409, "Volume type " + *type_id + " keeps changing concurrently; retry.");
}

HttpResponse QosApi::Disassociate(const RequestContext& context,
                                  const HttpRequest& request,
                                  std::string_view qos_id) {
  auto type_id = TypeIdParameter(request);
  if (!type_id) {
    return std::move(type_id.error());
  }
  auto qos = LiveQosSpecs(store_, qos_id);
  if (!qos) {
    return std::move(qos.error());
  }
  auto type = types_.ById(context, *type_id, true);
  if (!type) {
    return FaultFromError(type.error());
  }
  if (!*type) {
    return Fault(404, VolumeTypeNotFound(*type_id));
  }
  // As Cinder: only an association with this QoS specs is removed; another is left alone.
  auto updated = store_.ConditionalUpdate(
      ports::Table::kVolumeTypes,
      *type_id,
      {{"qos_specs_id", ports::Value()}, {"updated_at", FormatTimestamp(clock_.WallNow())}},
      {Expectation::Equals("qos_specs_id", std::string(qos_id))},
      {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (updated->has_value()) {
    log::Info("qos_specs.disassociated",
              {{"qos_specs_id", std::string(qos_id)},
               {"volume_type_id", *type_id},
               {"by", context.user_id}});
  }
  return Accepted();
}

HttpResponse QosApi::DisassociateAll(const RequestContext& context, std::string_view qos_id) {
  auto qos = LiveQosSpecs(store_, qos_id);
  if (!qos) {
    return std::move(qos.error());
  }
  if (auto cleared = DisassociateEveryType(qos_id); !cleared) {
    return FaultFromError(cleared.error());
  }
  log::Info("qos_specs.disassociated_all",
            {{"qos_specs_id", std::string(qos_id)}, {"by", context.user_id}});
  return Accepted();
}

}  // namespace clinker::services
