// VolumesApi's metadata handlers: the /volumes/{id}/metadata sub-resource (Cinder's
// api/v3/volume_metadata.py on api/v2/volume_metadata.py), the image metadata actions
// (api/contrib/volume_image_metadata.py) and the flag actions os-set_bootable and
// os-update_readonly_flag (api/contrib/volume_actions.py).
#include <algorithm>
#include <array>
#include <functional>
#include <optional>
#include <vector>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/domain/status.h"
#include "clinker/services/metadata_rules.h"
#include "clinker/services/volumes_api.h"

namespace clinker::services {
namespace {

using domain::VolumeStatus;
using nlohmann::json;
using ports::Expectation;

// The first microversion whose metadata index sends an ETag and whose PUTs honour If-Match.
constexpr Microversion kEtagsMicroversion{3, 15};

constexpr std::array<std::string_view, 5> kFlagAndImageActions = {"os-set_bootable",
                                                                  "os-update_readonly_flag",
                                                                  "os-set_image_metadata",
                                                                  "os-unset_image_metadata",
                                                                  "os-show_image_metadata"};

HttpResponse NotFoundVolume(std::string_view id) {
  return Fault(404, "Volume " + std::string(id) + " could not be found.");
}

HttpResponse NoSuchKey(std::string_view id, std::string_view key) {
  return Fault(404,
               "Volume " + std::string(id) + " has no metadata with key " + std::string(key) + ".");
}

HttpResponse EmptyResponse(int status) {
  HttpResponse response;
  response.status = status;
  return response;
}

// The volume if the caller may see it, else 404 as for a volume that does not exist.
tl::expected<Volume, HttpResponse> VisibleVolume(ports::StateStore& store,
                                                 const RequestContext& context,
                                                 std::string_view volume_id) {
  auto row = store.Get(ports::Table::kVolumes, volume_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound ? NotFoundVolume(volume_id)
                                                                   : FaultFromError(row.error()));
  }
  auto volume = VolumeFromRow(*row);
  if (!volume) {
    return tl::unexpected(FaultFromError(volume.error()));
  }
  if (volume->deleted || !CanSee(context, volume->project_id)) {
    return tl::unexpected(NotFoundVolume(volume_id));
  }
  return *volume;
}

// One property of an action's object and how its value is checked (nullopt: fine).
struct ActionProperty {
  std::string_view name;
  std::function<std::optional<HttpResponse>(const json& value)> check;
};

// jsonschema's order for {"<action>": {object with `properties`, `required`, no others}}: the
// object's type, each present property, the required ones, then unexpected ones.
std::optional<HttpResponse> CheckActionObject(std::string_view action,
                                              const json& argument,
                                              const std::vector<ActionProperty>& properties,
                                              const std::vector<std::string_view>& required) {
  if (!argument.is_object()) {
    return Fault(
        400, SchemaFieldError(action, argument, PythonRepr(argument) + " is not of type 'object'"));
  }
  for (const ActionProperty& property : properties) {
    const std::string name(property.name);
    if (argument.contains(name)) {
      if (auto refused = property.check(argument[name])) {
        return refused;
      }
    }
  }
  for (std::string_view name : required) {
    if (!argument.contains(std::string(name))) {
      return Fault(
          400,
          SchemaFieldError(action, argument, "'" + std::string(name) + "' is a required property"));
    }
  }
  std::vector<std::string> extra;
  for (const auto& [name, value] : argument.items()) {
    bool known = false;
    for (const ActionProperty& property : properties) {
      known = known || property.name == name;
    }
    if (!known) {
      extra.push_back(PythonRepr(name));
    }
  }
  if (!extra.empty()) {
    std::string joined;
    for (const std::string& name : extra) {
      joined += (joined.empty() ? "" : ", ") + name;
    }
    return Fault(400,
                 SchemaFieldError(action,
                                  argument,
                                  "Additional properties are not allowed (" + joined +
                                      (extra.size() == 1 ? " was" : " were") + " unexpected)"));
  }
  return std::nullopt;
}

ActionProperty BooleanProperty(std::string_view name) {
  return {name, [name](const json& value) -> std::optional<HttpResponse> {
            if (!value.is_boolean() && !value.is_string()) {
              return Fault(
                  400,
                  SchemaFieldError(
                      name, value, PythonRepr(value) + " is not of type 'boolean', 'string'"));
            }
            if (!StrictBoolean(value)) {
              return Fault(
                  400,
                  SchemaFieldError(
                      name,
                      value,
                      PythonRepr(value) +
                          " is not one of [True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', "
                          "'YES', 'Yes', 'yes', 'y', 't', False, 'False', 'FALSE', 'false', '0', "
                          "'OFF', 'Off', 'off', 'NO', 'No', 'no', 'n', 'f']"));
            }
            return std::nullopt;
          }};
}

// The metadata's ETag check of a PUT at 3.15+: 412 (no body) when If-Match names another.
std::optional<HttpResponse> EtagRefuses(const RequestContext& context,
                                        const HttpRequest& request,
                                        const Metadata& current) {
  if (context.version < kEtagsMicroversion) {
    return std::nullopt;
  }
  const std::string if_match = request.Header("If-Match");
  if (if_match.empty() || IfMatchAdmits(if_match, MetadataEtag(current))) {
    return std::nullopt;
  }
  return EmptyResponse(412);
}

// Merges `added` into the volume's metadata `column` (POST .../metadata, os-set_image_metadata)
// by compare-and-swap, and answers 200 with the whole merged set, as Cinder does.
HttpResponse MergeMetadata(ports::StateStore& store,
                           const std::string& id,
                           std::string_view column,
                           const Metadata& added,
                           std::string_view volume_id) {
  Metadata merged;
  auto written = ChangeMetadataColumn(
      store,
      ports::Table::kVolumes,
      id,
      column,
      [&](const ports::Row&, Metadata current) -> tl::expected<Metadata, HttpResponse> {
        for (const auto& [key, value] : added) {
          current[key] = value;
        }
        merged = current;
        return current;
      },
      NotFoundVolume(volume_id));
  if (!written) {
    return written.error();
  }
  return JsonResponse(200, {{"metadata", merged}});
}

}  // namespace

HttpResponse VolumesApi::ShowMetadata(const RequestContext& context, std::string_view volume_id) {
  auto volume = VisibleVolume(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  HttpResponse response = JsonResponse(200, {{"metadata", volume->metadata}});
  if (context.version >= kEtagsMicroversion) {
    response.headers.emplace_back("Etag", MetadataEtag(volume->metadata));
  }
  return response;
}

HttpResponse VolumesApi::CreateMetadata(const RequestContext& context,
                                        const HttpRequest& request,
                                        std::string_view volume_id) {
  auto body = ParseRequestBody(request);
  if (!body) {
    return body.error();
  }
  auto added = CheckMetadataBody(*body, "metadata");
  if (!added) {
    return added.error();
  }
  auto volume = VisibleVolume(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  return MergeMetadata(store_, volume->id, "metadata", *added, volume_id);
}

HttpResponse VolumesApi::ReplaceMetadata(const RequestContext& context,
                                         const HttpRequest& request,
                                         std::string_view volume_id) {
  auto body = ParseRequestBody(request);
  if (!body) {
    return body.error();
  }
  auto replacement = CheckMetadataBody(*body, "metadata");
  if (!replacement) {
    return replacement.error();
  }
  auto volume = VisibleVolume(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  // The ETag is checked against the metadata the write replaces, in the same compare-and-swap.
  auto written = ChangeMetadataColumn(
      store_,
      ports::Table::kVolumes,
      volume->id,
      "metadata",
      [&](const ports::Row&, const Metadata& current) -> tl::expected<Metadata, HttpResponse> {
        if (auto refused = EtagRefuses(context, request, current)) {
          return tl::unexpected(*refused);
        }
        return *replacement;
      },
      NotFoundVolume(volume_id));
  if (!written) {
    return written.error();
  }
  return JsonResponse(200, {{"metadata", *replacement}});
}

HttpResponse VolumesApi::ShowMetadataItem(const RequestContext& context,
                                          std::string_view volume_id,
                                          std::string_view key) {
  auto volume = VisibleVolume(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  auto found = volume->metadata.find(std::string(key));
  if (found == volume->metadata.end()) {
    return NoSuchKey(volume_id, key);
  }
  return JsonResponse(200, {{"meta", {{found->first, found->second}}}});
}

HttpResponse VolumesApi::UpdateMetadataItem(const RequestContext& context,
                                            const HttpRequest& request,
                                            std::string_view volume_id,
                                            std::string_view key) {
  auto body = ParseRequestBody(request);
  if (!body) {
    return body.error();
  }
  auto item = CheckMetadataBody(*body, "meta", /*exactly_one=*/true);
  if (!item) {
    return item.error();
  }
  // Cinder's order: the ETag (which reads the volume), then the body against the URL.
  if (context.version >= kEtagsMicroversion && !request.Header("If-Match").empty()) {
    auto volume = VisibleVolume(store_, context, volume_id);
    if (!volume) {
      return volume.error();
    }
    if (auto refused = EtagRefuses(context, request, volume->metadata)) {
      return *refused;
    }
  }
  if (!item->contains(std::string(key))) {
    return Fault(400, "Request body and URI mismatch");
  }
  if (item->size() > 1) {
    return Fault(400, "Request body contains too many items");
  }
  auto volume = VisibleVolume(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  auto written = ChangeMetadataColumn(
      store_,
      ports::Table::kVolumes,
      volume->id,
      "metadata",
      [&](const ports::Row&, Metadata current) -> tl::expected<Metadata, HttpResponse> {
        if (auto refused = EtagRefuses(context, request, current)) {
          return tl::unexpected(*refused);
        }
        for (const auto& [name, value] : *item) {
          current[name] = value;
        }
        return current;
      },
      NotFoundVolume(volume_id));
  if (!written) {
    return written.error();
  }
  return JsonResponse(200, {{"meta", *item}});
}

HttpResponse VolumesApi::DeleteMetadataItem(const RequestContext& context,
                                            std::string_view volume_id,
                                            std::string_view key) {
  auto volume = VisibleVolume(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  const std::string name(key);
  auto written = ChangeMetadataColumn(
      store_,
      ports::Table::kVolumes,
      volume->id,
      "metadata",
      [&](const ports::Row&, Metadata current) -> tl::expected<Metadata, HttpResponse> {
        if (current.erase(name) == 0) {
          return tl::unexpected(NoSuchKey(volume_id, key));
        }
        return current;
      },
      NotFoundVolume(volume_id));
  if (!written) {
    return written.error();
  }
  return EmptyResponse(200);
}

bool VolumesApi::IsFlagOrImageMetadataAction(std::string_view action) {
  return std::find(kFlagAndImageActions.begin(), kFlagAndImageActions.end(), action) !=
         kFlagAndImageActions.end();
}

HttpResponse VolumesApi::FlagOrImageMetadataAction(const RequestContext& context,
                                                   std::string_view action,
                                                   const json& argument,
                                                   std::string_view volume_id) {
  if (action == "os-set_bootable") {
    if (auto refused =
            CheckActionObject(action, argument, {BooleanProperty("bootable")}, {"bootable"})) {
      return *refused;
    }
    const bool bootable = *StrictBoolean(argument["bootable"]);
    auto volume = VisibleVolume(store_, context, volume_id);
    if (!volume) {
      return volume.error();
    }
    auto updated = store_.ConditionalUpdate(ports::Table::kVolumes,
                                            volume->id,
                                            {{"bootable", std::int64_t{bootable ? 1 : 0}},
                                             {"updated_at", FormatTimestamp(clock_.WallNow())}},
                                            {Expectation::Equals("deleted", std::int64_t{0})},
                                            {});
    if (!updated) {
      return FaultFromError(updated.error());
    }
    if (!updated->has_value()) {
      return NotFoundVolume(volume_id);
    }
    return EmptyResponse(200);
  }

  if (action == "os-update_readonly_flag") {
    if (auto refused =
            CheckActionObject(action, argument, {BooleanProperty("readonly")}, {"readonly"})) {
      return *refused;
    }
    const bool readonly = *StrictBoolean(argument["readonly"]);
    auto volume = VisibleVolume(store_, context, volume_id);
    if (!volume) {
      return volume.error();
    }
    auto written = ChangeMetadataColumn(
        store_,
        ports::Table::kVolumes,
        volume->id,
        "admin_metadata",
        [&](const ports::Row& row, Metadata current) -> tl::expected<Metadata, HttpResponse> {
          auto now = VolumeFromRow(row);
          if (!now) {
            return tl::unexpected(FaultFromError(now.error()));
          }
          if (now->status != VolumeStatus::kAvailable) {
            return tl::unexpected(
                Fault(400,
                      "Invalid volume: Volume " + now->id +
                          " status must be available to update readonly flag, but current "
                          "status is: " +
                          std::string(domain::ApiName(now->status)) + "."));
          }
          current["readonly"] = readonly ? "True" : "False";
          return current;
        },
        NotFoundVolume(volume_id),
        {Expectation::Equals("status", Status(VolumeStatus::kAvailable))});
    if (!written) {
      return written.error();
    }
    log::Info(
        "volume.readonly_updated",
        {{"volume_id", volume->id}, {"readonly", std::string_view(readonly ? "True" : "False")}});
    return EmptyResponse(202);
  }

  if (action == "os-set_image_metadata") {
    std::optional<Metadata> added;
    ActionProperty metadata_property{"metadata",
                                     [&added](const json& value) -> std::optional<HttpResponse> {
                                       auto checked = CheckExtraSpecs(value, "metadata");
                                       if (!checked) {
                                         return checked.error();
                                       }
                                       added = std::move(*checked);
                                       return std::nullopt;
                                     }};
    if (auto refused = CheckActionObject(action, argument, {metadata_property}, {"metadata"})) {
      return *refused;
    }
    auto volume = VisibleVolume(store_, context, volume_id);
    if (!volume) {
      return volume.error();
    }
    return MergeMetadata(store_, volume->id, "image_metadata", *added, volume_id);
  }

  if (action == "os-unset_image_metadata") {
    ActionProperty key_property{
        "key", [](const json& value) -> std::optional<HttpResponse> {
          if (!value.is_string()) {
            return Fault(
                400,
                SchemaFieldError("key", value, PythonRepr(value) + " is not of type 'string'"));
          }
          const std::size_t length = CharacterCount(value.get_ref<const std::string&>());
          if (length < 1 || length > 255) {
            return Fault(400,
                         SchemaFieldError(
                             "key",
                             value,
                             PythonRepr(value) + (length < 1 ? " is too short" : " is too long")));
          }
          return std::nullopt;
        }};
    if (auto refused = CheckActionObject(action, argument, {key_property}, {"key"})) {
      return *refused;
    }
    const std::string key = argument["key"].get<std::string>();
    auto volume = VisibleVolume(store_, context, volume_id);
    if (!volume) {
      return volume.error();
    }
    const HttpResponse no_such_key =
        Fault(404, "Glance metadata for volume/snapshot " + volume->id + " cannot be found.");
    auto written = ChangeMetadataColumn(
        store_,
        ports::Table::kVolumes,
        volume->id,
        "image_metadata",
        [&](const ports::Row&, Metadata current) -> tl::expected<Metadata, HttpResponse> {
          if (current.erase(key) == 0) {
            return tl::unexpected(no_such_key);
          }
          return current;
        },
        NotFoundVolume(volume_id));
    if (!written) {
      return written.error();
    }
    return EmptyResponse(200);
  }

  // os-show_image_metadata: its argument is not looked at.
  auto volume = VisibleVolume(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  return JsonResponse(200, {{"metadata", volume->image_metadata}});
}

}  // namespace clinker::services
