#include "clinker/services/volume_type_record.h"

#include <utility>

#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/services/api_common.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using nlohmann::json;
using ports::Expectation;

constexpr std::string_view kDefaultTypeDescription = "Default Volume Type";

}  // namespace

Result<VolumeType> VolumeTypeFromRow(const ports::Row& row) {
  VolumeType type;
  type.id = TextOr(row, "id", "");
  type.name = TextOr(row, "name", "");
  type.description = OptionalText(row, "description");
  type.is_public = IntegerOr(row, "is_public", 1) != 0;
  type.extra_specs_text = TextOr(row, "extra_specs", "{}");
  type.extra_specs = json::parse(type.extra_specs_text, nullptr, false);
  if (type.id.empty() || !type.extra_specs.is_object()) {
    return MakeError(ErrorCode::kInternal,
                     "volume type row " + type.id + " has malformed extra_specs");
  }
  type.qos_specs_id = OptionalText(row, "qos_specs_id");
  type.encryption_text = OptionalText(row, "encryption");
  if (type.encryption_text) {
    type.encryption = json::parse(*type.encryption_text, nullptr, false);
    if (!type.encryption->is_object()) {
      return MakeError(ErrorCode::kInternal,
                       "volume type row " + type.id + " has malformed encryption");
    }
  }
  type.created_at = TextOr(row, "created_at", "");
  type.updated_at = OptionalText(row, "updated_at");
  type.deleted = IntegerOr(row, "deleted", 0) != 0;
  return type;
}

ports::Row VolumeTypeToRow(const VolumeType& type) {
  return ports::Row{
      {"id", type.id},
      {"name", type.name},
      {"description", TextOrNull(type.description)},
      {"is_public", std::int64_t{type.is_public ? 1 : 0}},
      {"extra_specs", type.extra_specs.dump()},
      {"qos_specs_id", TextOrNull(type.qos_specs_id)},
      {"encryption",
       type.encryption ? ports::Value(type.encryption->dump()) : ports::Value(std::monostate{})},
      {"created_at", type.created_at},
      {"updated_at", TextOrNull(type.updated_at)},
      {"deleted", std::int64_t{type.deleted ? 1 : 0}},
  };
}

std::string VolumeTypeAccessId(std::string_view type_id, std::string_view project_id) {
  return std::string(type_id) + ":" + std::string(project_id);
}

std::string VolumeTypeNotFound(std::string_view id) {
  return "Volume type " + std::string(id) + " could not be found.";
}

std::string VolumeTypeNotFoundByName(std::string_view name) {
  return "Volume type with name " + std::string(name) + " could not be found.";
}

std::string ExtraSpec(const VolumeType& type, std::string_view key) {
  auto found = type.extra_specs.find(key);
  if (found == type.extra_specs.end() || !found->is_string()) {
    return "";
  }
  return found->get<std::string>();
}

bool IsMultiattachType(const VolumeType& type) {
  return ExtraSpec(type, "multiattach") == "<is> True";
}

VolumeTypeCatalog::VolumeTypeCatalog(ports::StateStore& store,
                                     const ports::Clock& clock,
                                     std::string default_name)
    : store_(store), clock_(clock), default_name_(std::move(default_name)) {}

Result<bool> VolumeTypeCatalog::HasAccess(std::string_view type_id, std::string_view project_id) {
  auto row = store_.Get(ports::Table::kVolumeTypeAccess, VolumeTypeAccessId(type_id, project_id));
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return false;
    }
    return tl::unexpected(row.error());
  }
  return IntegerOr(*row, "deleted", 0) == 0;
}

Result<bool> VolumeTypeCatalog::Visible(const RequestContext& context, const VolumeType& type) {
  if (type.deleted) {
    return false;
  }
  if (context.is_admin || type.is_public) {
    return true;
  }
  return HasAccess(type.id, context.project_id);
}

Result<std::optional<VolumeType>> VolumeTypeCatalog::ById(const RequestContext& context,
                                                          std::string_view id,
                                                          bool elevated) {
  auto row = store_.Get(ports::Table::kVolumeTypes, id);
  if (!row) {
    if (row.error().code == ErrorCode::kNotFound) {
      return std::optional<VolumeType>();
    }
    return tl::unexpected(row.error());
  }
  CLINKER_ASSIGN_OR_RETURN(VolumeType type, VolumeTypeFromRow(*row));
  if (type.deleted) {
    return std::optional<VolumeType>();
  }
  if (!elevated) {
    CLINKER_ASSIGN_OR_RETURN(bool visible, Visible(context, type));
    if (!visible) {
      return std::optional<VolumeType>();
    }
  }
  return std::optional<VolumeType>(std::move(type));
}

Result<std::optional<VolumeType>> VolumeTypeCatalog::ByName(const RequestContext& context,
                                                            std::string_view name,
                                                            bool elevated) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals("name", std::string(name))};
  query.limit = 1;
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> rows,
                           store_.List(ports::Table::kVolumeTypes, query));
  if (rows.empty()) {
    return std::optional<VolumeType>();
  }
  CLINKER_ASSIGN_OR_RETURN(VolumeType type, VolumeTypeFromRow(rows.front()));
  if (!elevated) {
    CLINKER_ASSIGN_OR_RETURN(bool visible, Visible(context, type));
    if (!visible) {
      return std::optional<VolumeType>();
    }
  }
  return std::optional<VolumeType>(std::move(type));
}

tl::expected<VolumeType, HttpResponse> VolumeTypeCatalog::Resolve(const RequestContext& context,
                                                                  const std::string& name_or_id,
                                                                  bool elevated) {
  if (IsUuidLike(name_or_id)) {
    auto by_id = ById(context, name_or_id, elevated);
    if (!by_id) {
      return tl::unexpected(FaultFromError(by_id.error()));
    }
    if (*by_id) {
      return std::move(**by_id);
    }
  }
  auto by_name = ByName(context, name_or_id, elevated);
  if (!by_name) {
    return tl::unexpected(FaultFromError(by_name.error()));
  }
  if (*by_name) {
    return std::move(**by_name);
  }
  return tl::unexpected(Fault(404,
                              IsUuidLike(name_or_id) ? VolumeTypeNotFound(name_or_id)
                                                     : VolumeTypeNotFoundByName(name_or_id)));
}

Result<VolumeType> VolumeTypeCatalog::Default() {
  RequestContext admin;
  admin.is_admin = true;
  // Two tries: a racing creator's type (our Insert then conflicts) is found by the second look.
  for (int attempt = 0; attempt < 2; ++attempt) {
    CLINKER_ASSIGN_OR_RETURN(std::optional<VolumeType> found, ByName(admin, default_name_, true));
    if (found) {
      return std::move(*found);
    }
    VolumeType type;
    type.id = NewUuid();
    type.name = default_name_;
    type.description = std::string(kDefaultTypeDescription);
    type.created_at = FormatTimestamp(clock_.WallNow());
    auto inserted = store_.Insert(ports::Table::kVolumeTypes, VolumeTypeToRow(type));
    if (inserted) {
      return type;
    }
    if (inserted.error().code != ErrorCode::kConflict) {
      return tl::unexpected(inserted.error());
    }
  }
  return MakeError(ErrorCode::kUnavailable,
                   "the default volume type " + default_name_ + " could not be read or created");
}

Result<bool> VolumeTypeCatalog::Pin(const VolumeType& type,
                                    const std::optional<std::string>& access_project) {
  CLINKER_ASSIGN_OR_RETURN(
      std::optional<ports::Row> pinned,
      store_.ConditionalUpdate(
          ports::Table::kVolumeTypes,
          type.id,
          {},
          {Expectation::Equals("deleted", std::int64_t{0}),
           Expectation::Equals("is_public", std::int64_t{type.is_public ? 1 : 0})},
          {}));
  if (!pinned) {
    return false;
  }
  if (!access_project) {
    return true;
  }
  CLINKER_ASSIGN_OR_RETURN(
      std::optional<ports::Row> granted,
      store_.ConditionalUpdate(ports::Table::kVolumeTypeAccess,
                               VolumeTypeAccessId(type.id, *access_project),
                               {},
                               {Expectation::Equals("deleted", std::int64_t{0})},
                               {}));
  return granted.has_value();
}

std::string VolumeTypeCatalog::NameCache::NameOf(const std::optional<std::string>& type_id) {
  if (!type_id) {
    return catalog_.default_name();
  }
  auto cached = names_.find(*type_id);
  if (cached != names_.end()) {
    return cached->second;
  }
  std::string name = *type_id;  // What a view shows if the row cannot be read.
  if (auto row = catalog_.store_.Get(ports::Table::kVolumeTypes, *type_id); row) {
    name = TextOr(*row, "name", name);
  }
  names_.emplace(*type_id, name);
  return name;
}

std::string VolumeTypeCatalog::NameCache::IdOf(const std::optional<std::string>& type_id) {
  if (type_id) {
    return *type_id;
  }
  if (!default_id_) {
    auto type = catalog_.Default();
    default_id_ = type ? type->id : std::string();
  }
  return *default_id_;
}

}  // namespace clinker::services
