#include "clinker/services/volumes_api.h"

#include <algorithm>
#include <array>
#include <regex>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/ports/state_schema.h"
#include "clinker/services/job_message.h"
#include "clinker/services/lock_names.h"
#include "clinker/services/metadata_rules.h"
#include "clinker/services/quotas_api.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_filters.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using domain::SnapshotStatus;
using domain::VolumeStatus;
using nlohmann::json;
using ports::Expectation;

// Statuses from which a volume may be deleted without force (Cinder's list, restricted to the
// statuses this release has).
constexpr std::array kDeletableStatuses = {VolumeStatus::kAvailable,
                                           VolumeStatus::kError,
                                           VolumeStatus::kErrorExtending,
                                           VolumeStatus::kErrorRestoring};

constexpr std::string_view kInvalidVolumeForDelete =
    "Invalid volume: Volume status must be available or error or error_restoring or "
    "error_extending or error_managing and must not be migrating, attached, belong to a group, "
    "have snapshots, awaiting a transfer, or be disassociated from snapshots after volume "
    "transfer.";

// A forced delete takes a volume in any status but these (a delete is already on its way).
constexpr std::array kDeletingStatuses = {VolumeStatus::kDeletingQueued, VolumeStatus::kDeleting};

// Cinder would create the volume's key in its key manager; this release has none.
std::string EncryptedTypeRefused(const VolumeType& type) {
  return "Invalid input received: volume type " + type.name +
         " is encrypted, and this release cannot encrypt volumes.";
}

std::string VolumeNotFound(std::string_view id) {
  return "Volume " + std::string(id) + " could not be found.";
}

// The stored statuses of a volume being created (queued or under way).
std::vector<ports::Value> CreatingNames() {
  return {Status(VolumeStatus::kCreatingQueued), Status(VolumeStatus::kCreating)};
}

// Maps an API sort key to its column; nullopt for keys that cannot be sorted on.
std::optional<std::string> SortColumn(std::string_view key) {
  static const std::map<std::string_view, std::string_view> kColumns = {
      {"id", "id"},
      {"name", "display_name"},
      {"display_name", "display_name"},
      {"description", "display_description"},
      {"status", "status"},
      {"size", "size_gib"},
      {"created_at", "created_at"},
      {"updated_at", "updated_at"},
      {"availability_zone", "availability_zone"},
      {"project_id", "project_id"},
      {"user_id", "user_id"},
      {"bootable", "bootable"},
  };
  auto it = kColumns.find(key);
  if (it == kColumns.end()) {
    return std::nullopt;
  }
  return std::string(it->second);
}

json Links(const RequestContext& context, const std::string& id) {
  return json::array({
      {{"href", context.link_base + "/volumes/" + id}, {"rel", "self"}},
      {{"href", context.bookmark_base + "/volumes/" + id}, {"rel", "bookmark"}},
  });
}

json SummaryView(const Volume& volume, const RequestContext& context) {
  return {{"id", volume.id}, {"name", NullOr(volume.name)}, {"links", Links(context, volume.id)}};
}

json DetailView(const Volume& volume,
                const RequestContext& context,
                VolumeTypeCatalog::NameCache& names,
                VolumeViewFor view_for,
                json attachments = json::array()) {
  json view = {
      {"id", volume.id},
      {"status", std::string(domain::ApiName(volume.status))},
      {"size", volume.size_gib},
      {"availability_zone", volume.availability_zone},
      {"created_at", volume.created_at},
      {"updated_at", NullOr(volume.updated_at)},
      {"name", NullOr(volume.name)},
      {"description", NullOr(volume.description)},
      {"volume_type", names.NameOf(volume.volume_type_id)},
      {"snapshot_id", NullOr(volume.snapshot_id)},
      {"source_volid", NullOr(volume.source_volid)},
      {"metadata", VisibleMetadata(volume)},
      {"links", Links(context, volume.id)},
      {"user_id", volume.user_id},
      {"bootable", volume.bootable ? "true" : "false"},
      {"encrypted", false},
      {"replication_status", nullptr},
      {"consistencygroup_id", nullptr},
      {"multiattach", volume.multiattach},
      {"attachments", std::move(attachments)},
  };
  if (context.is_admin) {
    view["migration_status"] = NullOr(volume.migration_status);
  }
  if (view_for == VolumeViewFor::kGet) {
    // volume_extension:volume_tenant_attribute: any reader of the volume's project.
    view["os-vol-tenant-attr:tenant_id"] = volume.project_id;
    if (context.is_admin) {
      view["os-vol-host-attr:host"] = NullOr(volume.host);
      view["os-vol-mig-status-attr:migstat"] = NullOr(volume.migration_status);
      view["os-vol-mig-status-attr:name_id"] = nullptr;
    }
    // volume_extension:volume_image_metadata:show: the image metadata, when the volume has some.
    if (!volume.image_metadata.empty()) {
      view["volume_image_metadata"] = volume.image_metadata;
    }
  }
  if (context.version >= Microversion{3, 13}) {
    view["group_id"] = NullOr(volume.group_id);
  }
  if (context.is_admin && context.version >= Microversion{3, 21}) {
    view["provider_id"] = nullptr;
  }
  if (context.version >= Microversion{3, 48}) {
    // The file back-end gives each attachment a target of its own: no target is shared between
    // volumes, so os-brick need not serialise connections to it.
    view["shared_targets"] = false;
    view["service_uuid"] = nullptr;
  }
  if (view_for == VolumeViewFor::kUpdate) {
    return view;
  }
  if (context.is_admin && context.version >= Microversion{3, 61}) {
    view["cluster_name"] = NullOr(volume.cluster_name);
  }
  if (context.version >= kVolumeTypeIdMicroversion) {
    view["volume_type_id"] = names.IdOf(volume.volume_type_id);
  }
  // 3.64's encryption_key_id only appears for an encrypted volume, and none is.
  if (context.version >= Microversion{3, 65}) {
    // Every volume counts against its project's quota (Cinder's use_quota is false only for
    // the temporary volumes of a migration, which Clinker does not make).
    view["consumes_quota"] = true;
  }
  return view;
}

// The volume if the caller may see it (CanSee); the fault to answer otherwise, the same for a
// volume of another project as for one that does not exist.
tl::expected<Volume, HttpResponse> Visible(ports::StateStore& store,
                                           const RequestContext& context,
                                           std::string_view volume_id) {
  auto row = store.Get(ports::Table::kVolumes, volume_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound
                              ? Fault(404, VolumeNotFound(volume_id))
                              : FaultFromError(row.error()));
  }
  auto volume = VolumeFromRow(*row);
  if (!volume) {
    return tl::unexpected(FaultFromError(volume.error()));
  }
  if (volume->deleted || !CanSee(context, volume->project_id)) {
    return tl::unexpected(Fault(404, VolumeNotFound(volume_id)));
  }
  return *volume;
}

std::vector<ports::Value> StoredNames(std::span<const VolumeStatus> statuses) {
  std::vector<ports::Value> names;
  for (VolumeStatus status : statuses) {
    names.emplace_back(std::string(domain::StoredName(status)));
  }
  return names;
}

}  // namespace

VolumesApi::VolumesApi(ports::StateStore& store,
                       ports::JobQueue& queue,
                       const ports::Clock& clock,
                       VolumesApiOptions options)
    : store_(store),
      queue_(queue),
      clock_(clock),
      options_(std::move(options)),
      types_(store, clock, options_.default_volume_type),
      quotas_(store, options_.quota) {}

HttpResponse VolumesApi::Create(const RequestContext& context, const HttpRequest& request) {
  // Cinder's schema: the root holds the volume and scheduler hints; from 3.53 the volume holds
  // nothing else than its properties (before, anything else is ignored).
  static const std::vector<std::string_view> kAllowed = {"availability_zone",
                                                         "consistencygroup_id",
                                                         "description",
                                                         "display_description",
                                                         "display_name",
                                                         "imageRef",
                                                         "image_id",
                                                         "metadata",
                                                         "multiattach",
                                                         "name",
                                                         "size",
                                                         "snapshot_id",
                                                         "source_volid",
                                                         "volume_type",
                                                         "group_id",
                                                         "backup_id"};
  // Before 3.53 whatever else the volume holds is allowed (and ignored).
  const std::vector<std::string_view> also_at_root = {"OS-SCH-HNT:scheduler_hints"};
  auto body = context.version < Microversion{3, 53}
                  ? ParseBodyOpenObject(request, "volume", also_at_root)
                  : ParseBody(request, "volume", kAllowed, also_at_root);
  if (!body) {
    return FaultFromError(body.error());
  }
  return CreateVolume(context, *body, std::nullopt);
}

HttpResponse VolumesApi::CreateGroupMember(const RequestContext& context,
                                           const json& spec,
                                           const std::string& group_id) {
  return CreateVolume(context, spec, group_id);
}

HttpResponse VolumesApi::DeleteGroupMember(const RequestContext& context,
                                           std::string_view volume_id,
                                           const std::string& group_id) {
  return DeleteVolume(context, volume_id, /*force=*/false, group_id);
}

HttpResponse VolumesApi::CreateVolume(const RequestContext& context,
                                      const json& spec,
                                      const std::optional<std::string>& member_of) {
  // Cinder's schema: the source ids are optional_uuid (null or a uuid; backup_id from 3.47, an
  // unknown key before); group_id is any string (an unknown one is the group lookup's 404).
  for (const char* key : {"snapshot_id", "source_volid", "consistencygroup_id", "backup_id"}) {
    if (std::string_view(key) == "backup_id" && context.version < Microversion{3, 47}) {
      continue;
    }
    if (auto checked = CheckUuidField(spec, key, UuidField::kUuidOrNull); !checked) {
      return FaultFromError(checked.error());
    }
  }
  Volume volume;
  bool present = false;
  auto name = AliasedText(spec, "name", "display_name", &present, TextLimit::kInvalidInput);
  auto description =
      AliasedText(spec, "description", "display_description", &present, TextLimit::kInvalidInput);
  if (!name || !description) {
    return FaultFromError(!name ? name.error() : description.error());
  }
  volume.name = *name;
  volume.description = *description;
  if (spec.contains("metadata") && !spec["metadata"].is_null()) {
    auto metadata = ParseMetadata(spec["metadata"]);
    if (!metadata) {
      return FaultFromError(metadata.error());
    }
    volume.metadata = *metadata;
  }
  if (spec.contains("multiattach") && spec["multiattach"] == true) {
    return Fault(400,
                 "multiattach parameter has been removed. The default behavior is to use "
                 "multiattach enabled volume types.");
  }
  for (const char* key : {"snapshot_id", "source_volid", "imageRef", "image_id", "backup_id"}) {
    if (spec.contains(key) && !spec[key].is_null() && !spec[key].is_string()) {
      return Fault(400,
                   std::string("Invalid input for field/attribute ") + key +
                       ". Value: " + spec[key].dump() + " is not of type 'string'");
    }
  }
  for (const char* key : {"imageRef", "image_id", "backup_id"}) {
    if (spec.contains(key) && !spec[key].is_null()) {
      return Fault(400,
                   std::string("Invalid input received: creating a volume from ") +
                       (std::string_view(key) == "backup_id" ? "a backup" : "an image") +
                       " is not supported by this release");
    }
  }
  // A clone or a volume from a snapshot: the source decides the back-end and the smallest size.
  std::optional<VolumeSourceRef> source;
  if (spec.contains("snapshot_id") && !spec["snapshot_id"].is_null()) {
    auto found = FindSource(context, true, spec["snapshot_id"].get<std::string>());
    if (!found) {
      return found.error();
    }
    source = *found;
  } else if (spec.contains("source_volid") && !spec["source_volid"].is_null()) {
    auto found = FindSource(context, false, spec["source_volid"].get<std::string>());
    if (!found) {
      return found.error();
    }
    source = *found;
  }
  if (!spec.contains("size") || spec["size"].is_null()) {
    if (!source) {
      return Fault(400, "Invalid input received: a size is required");
    }
    volume.size_gib = source->size_gib;
  } else {
    auto size = ParseSize(spec["size"], options_.max_volume_size_gib);
    if (!size) {
      return FaultFromError(size.error());
    }
    volume.size_gib = *size;
  }
  if (source && volume.size_gib < source->size_gib) {
    return Fault(400,
                 "Invalid input received: Volume size '" + std::to_string(volume.size_gib) +
                     "'GB cannot be smaller than " +
                     // Cinder's two messages, spacing included.
                     (source->is_snapshot ? "the snapshot size " : "original volume size  ") +
                     std::to_string(source->size_gib) + "GB. They must be >= original " +
                     (source->is_snapshot ? "snapshot size." : "volume size."));
  }
  volume.availability_zone = options_.availability_zone;
  if (spec.contains("availability_zone") && !spec["availability_zone"].is_null()) {
    if (!spec["availability_zone"].is_string() ||
        spec["availability_zone"].get<std::string>() != options_.availability_zone) {
      return Fault(
          400,
          "Invalid input received: Availability zone '" +
              (spec["availability_zone"].is_string() ? spec["availability_zone"].get<std::string>()
                                                     : spec["availability_zone"].dump()) +
              "' is invalid.");
    }
  }
  // The type: the one named (by name or id; one the caller may not see is 404), else the
  // source's, else the default type.
  std::optional<VolumeType> type;
  if (spec.contains("volume_type") && !spec["volume_type"].is_null()) {
    const json& requested = spec["volume_type"];
    if (!requested.is_string() || CharacterCount(requested.get<std::string>()) > kMaxTextLength) {
      return Fault(400,
                   "Invalid input for field/attribute volume_type. Value: " + requested.dump() +
                       " is not a string of at most 255 characters");
    }
    if (!requested.get<std::string>().empty()) {
      auto resolved = types_.Resolve(context, requested.get<std::string>(), false);
      if (!resolved) {
        return resolved.error();
      }
      type = std::move(*resolved);
    }
  }
  if (!type && source && source->volume_type_id) {
    auto inherited = types_.ById(context, *source->volume_type_id, true);
    if (!inherited) {
      return FaultFromError(inherited.error());
    }
    type = std::move(*inherited);  // nullopt if the source's type was deleted meanwhile.
  }
  if (!type) {
    auto fallback = types_.Default();
    if (!fallback) {
      return FaultFromError(fallback.error());
    }
    type = std::move(*fallback);
  }
  if (type->encryption) {
    return Fault(400, EncryptedTypeRefused(*type));
  }
  // A volume in a generic group (3.13): the group's checks, as Cinder's volume API makes them.
  std::optional<std::string> group_to_pin;
  if (member_of) {
    volume.group_id = member_of;
  } else if (context.version >= Microversion{3, 13} && spec.contains("group_id") &&
             !spec["group_id"].is_null()) {
    if (!spec["group_id"].is_string()) {
      return Fault(400,
                   "Invalid input for field/attribute group_id. Value: " + spec["group_id"].dump() +
                       " is not of type 'string'");
    }
    const std::string group_id = spec["group_id"].get<std::string>();
    auto group = store_.Get(ports::Table::kGroups, group_id);
    if (!group && group.error().code != ErrorCode::kNotFound) {
      return FaultFromError(group.error());
    }
    if (!group || IntegerOr(*group, "deleted", 0) != 0 ||
        !CanSee(context, TextOr(*group, "project_id", ""))) {
      return Fault(404, "Group " + group_id + " could not be found.");
    }
    if (!spec.contains("volume_type") || spec["volume_type"].is_null()) {
      return Fault(400,
                   "Invalid input received: volume_type must be provided when creating a volume "
                   "in a group.");
    }
    json group_types = json::parse(TextOr(*group, "volume_type_ids", "[]"), nullptr, false);
    bool supported = false;
    if (group_types.is_array()) {
      for (const json& id : group_types) {
        supported = supported || (id.is_string() && id.get<std::string>() == type->id);
      }
    }
    if (!supported) {
      return Fault(400,
                   "Invalid input received: Invalid volume_type provided: " + type->name +
                       " (requested type must be supported by this group).");
    }
    volume.group_id = group_id;
    group_to_pin = group_id;
  }
  if (IsMultiattachType(*type)) {
    if (!Allowed(context, domain::policies::kVolumeMultiattach)) {
      return Fault(403, "Policy doesn't allow volume:multiattach to be performed.");
    }
    volume.multiattach = true;
  }
  // A private type reached through the caller's project's grant: the pin holds the grant too.
  std::optional<std::string> grant;
  if (!type->is_public && !context.is_admin) {
    grant = context.project_id;
  }
  volume.volume_type_id = type->id;

  volume.id = NewUuid();
  volume.project_id = context.project_id;
  volume.user_id = context.user_id;
  volume.status = VolumeStatus::kCreatingQueued;
  volume.operation_id = NewUuid();
  volume.created_at = FormatTimestamp(clock_.WallNow());
  if (source) {
    (source->is_snapshot ? volume.snapshot_id : volume.source_volid) = source->id;
    volume.host = source->host;
    volume.cluster_name = source->cluster_name;
    volume.bootable = source->bootable;
    if (source->bootable) {
      volume.image_metadata = source->image_metadata;
    }
  }
  // Admission: nothing is written when the back-end's backlog is full. A group's members are
  // admitted with their group (refusing one midway would leave the group half made).
  // The ticket counts this create against the back-end until its writes are done.
  Admission admitted = AdmitOnJobsBackend(member_of ? nullptr : options_.admission,
                                          source ? source->cluster_name : std::nullopt,
                                          source ? source->host : std::nullopt);
  if (!admitted) {
    return std::move(admitted.error());
  }
  // Quotas: the volume counts from the write that creates it (services/quotas.h).
  auto limits = quotas_.ProjectLimits(volume.project_id);
  if (!limits) {
    return FaultFromError(limits.error());
  }
  if (auto over = PerVolumeLimitExceeded(*limits, volume.size_gib)) {
    return std::move(*over);
  }
  auto usage = quotas_.UsageOfVolume(volume.size_gib, volume.volume_type_id);
  if (!usage) {
    return FaultFromError(usage.error());
  }
  std::vector<ports::UsageChange> release = QuotaService::Release(volume.project_id, *usage);
  std::vector<ports::UsageChange> charge =
      QuotaService::ChargeWithLimits(*limits, volume.project_id, *usage);
  ports::Row row = VolumeToRow(volume);
  if (source && volume.host) {
    // A clone or a volume from a snapshot lives on its source's pool without the scheduler: its
    // size is allocated there in the same write, as the scheduler's placement does (unbounded:
    // the source's pool is the only place it can go, as in Cinder), and given back by the
    // volume manager's write that fails or deletes it (capacity_reserved_gib).
    row["capacity_reserved_gib"] = volume.size_gib;
    charge.push_back(ports::UsageChange{
        "", *volume.host, volume.size_gib, -1, ports::UsageChange::Counter::kPoolCapacity});
    release.push_back(ports::UsageChange{
        "", *volume.host, -volume.size_gib, -1, ports::UsageChange::Counter::kPoolCapacity});
  }
  if (auto inserted = store_.InsertWithUsage(ports::Table::kVolumes, row, charge); !inserted) {
    return QuotaFault(inserted.error());
  }
  // The source is checked again now that the new volume exists: a delete of the source that
  // won the race is seen here, and one that comes later sees the new volume (its guard refuses
  // to delete a source of a volume still being created). Either way never both.
  if (source) {
    auto still_usable = store_.ConditionalUpdate(
        source->is_snapshot ? ports::Table::kSnapshots : ports::Table::kVolumes,
        source->id,
        {},
        {Expectation::Equals("deleted", std::int64_t{0}),
         Expectation::Equals("status", Text("available"))},
        {});
    if (!still_usable || !still_usable->has_value()) {
      WithdrawCreate(volume.id, release);
      if (!still_usable) {
        return FaultFromError(still_usable.error());
      }
      return Fault(400,
                   source->is_snapshot
                       ? "Invalid snapshot: Originating snapshot status must be one of "
                         "'available' values"
                       : "Invalid volume: Unable to create a volume from an originating source "
                         "volume when its status is not 'available'.");
    }
  }
  // The type is pinned now that the volume row has it: a delete of the type that won the race
  // is seen here, and one that comes later sees the volume (volume_type_record.h).
  auto pinned = types_.Pin(*type, grant);
  if (!pinned || !*pinned) {
    WithdrawCreate(volume.id, release);
    if (!pinned) {
      return FaultFromError(pinned.error());
    }
    return Fault(404, VolumeTypeNotFound(type->id));
  }
  // The group is pinned now that the volume row names it: a group delete that won the race is
  // seen here (the group is no longer available), and one that comes later sees the volume.
  if (group_to_pin) {
    auto still_available =
        store_.ConditionalUpdate(ports::Table::kGroups,
                                 *group_to_pin,
                                 {},
                                 {Expectation::Equals("deleted", std::int64_t{0}),
                                  Expectation::Equals("status", Text("available"))},
                                 {});
    if (!still_available || !still_available->has_value()) {
      WithdrawCreate(volume.id, release);
      if (!still_available) {
        return FaultFromError(still_available.error());
      }
      return Fault(400, "Invalid group: Group " + *group_to_pin + " status must be available.");
    }
  }
  JobMessage job{
      domain::Operation::kCreateVolume, volume.id, *volume.operation_id, volume.project_id};
  const std::string topic =
      source ? VolumeJobTopic(volume.cluster_name, *volume.host) : SchedulerTopic();
  if (auto published = queue_.Publish(topic, job.ToJson()); !published) {
    // The job was not queued: take the volume back (soft delete) so nothing is left creating
    // forever, and tell the client to retry.
    log::Error("volume.create_not_queued",
               {{"volume_id", volume.id}, {"error", published.error().ToString()}});
    WithdrawCreate(volume.id, release);
    return FaultFromError(published.error());
  }
  log::Info("volume.create_accepted",
            {{"volume_id", volume.id},
             {"operation_id", *volume.operation_id},
             {"size_gib", static_cast<long long>(volume.size_gib)}});
  VolumeTypeCatalog::NameCache names(types_);
  return JsonResponse(202, {{"volume", DetailView(volume, context, names, ViewFor::kCreate)}});
}

HttpResponse VolumesApi::Show(const RequestContext& context, std::string_view volume_id) {
  auto volume = Visible(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  VolumeTypeCatalog::NameCache names(types_);
  return JsonResponse(200, {{"volume", View(*volume, context, names, ViewFor::kGet)}});
}

json VolumesApi::View(const Volume& volume,
                      const RequestContext& context,
                      VolumeTypeCatalog::NameCache& names,
                      ViewFor view_for) {
  return DetailView(volume, context, names, view_for, AttachmentsView(volume, context));
}

HttpResponse VolumesApi::List(const RequestContext& context,
                              const HttpRequest& request,
                              bool detail) {
  ports::ListQuery query;
  std::string value;
  bool all_tenants =
      context.is_admin && request.QueryValue("all_tenants", &value) && TruthyParameter(value);
  if (!all_tenants) {
    query.filters.push_back(Expectation::Equals("project_id", context.project_id));
  } else if (request.QueryValue("project_id", &value)) {
    query.filters.push_back(Expectation::Equals("project_id", value));
  }
  if (request.QueryValue("name", &value) || request.QueryValue("display_name", &value)) {
    query.filters.push_back(Expectation::Equals("display_name", value));
  }
  if (request.QueryValue("status", &value)) {
    query.filters.push_back(Expectation::In("status", StoredNames(domain::StatusesShownAs(value))));
  }
  if (request.QueryValue("availability_zone", &value)) {
    query.filters.push_back(Expectation::Equals("availability_zone", value));
  }
  auto filters = ParseVolumeListFilters(request, context.version, context.is_admin);
  if (!filters) {
    return FaultFromError(filters.error());
  }
  query.filters.insert(query.filters.end(), filters->where.begin(), filters->where.end());
  auto sort = ParseSort(request, SortColumn);
  if (!sort) {
    return FaultFromError(sort.error());
  }
  query.sort = *sort;
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
  std::optional<std::string> marker;
  if (request.QueryValue("marker", &value)) {
    marker = value;
  }
  const bool with_count = context.version >= Microversion{3, 45} &&
                          request.QueryValue("with_count", &value) && TruthyParameter(value);
  // 3.45: with_count=true adds the number of volumes the filters match, ignoring pagination.
  std::int64_t count = 0;
  Result<std::vector<ports::Row>> rows = std::vector<ports::Row>();
  if (filters->matches_nothing) {
    // An admin's unknown filter (volume_filters.h): no volume has it.
  } else if (filters->NeedsRowCheck()) {
    // Filters the store cannot match (metadata, time comparisons): every row the others match
    // is read, in order, and the marker, offset and limit applied to those that pass.
    rows = store_.List(ports::Table::kVolumes, query);
    if (!rows) {
      return FaultFromError(rows.error());
    }
    std::vector<ports::Row> page;
    std::int64_t matching = 0;
    bool after_marker = !marker.has_value();
    for (ports::Row& row : *rows) {
      auto volume = VolumeFromRow(row);
      if (!volume) {
        return FaultFromError(volume.error());
      }
      const bool passes = filters->Matches(*volume);
      matching += passes ? 1 : 0;
      if (!after_marker) {
        after_marker = volume->id == *marker;
        continue;
      }
      if (passes && static_cast<std::int64_t>(page.size()) < limit + offset) {
        page.push_back(std::move(row));
      }
    }
    if (!after_marker) {
      return Fault(404, "Marker " + *marker + " could not be found.");
    }
    count = matching;
    rows = std::move(page);
  } else {
    if (with_count) {
      ports::ListQuery all;
      all.filters = query.filters;
      auto matching = store_.List(ports::Table::kVolumes, all);
      if (!matching) {
        return FaultFromError(matching.error());
      }
      count = static_cast<std::int64_t>(matching->size());
    }
    query.marker_id = marker;
    query.limit = limit + offset;
    rows = store_.List(ports::Table::kVolumes, query);
    if (!rows) {
      if (rows.error().code == ErrorCode::kNotFound) {
        return Fault(404, "Marker " + marker.value_or("") + " could not be found.");
      }
      return FaultFromError(rows.error());
    }
  }
  json items = json::array();
  std::string last_id;
  std::int64_t index = 0;
  VolumeTypeCatalog::NameCache names(types_);
  for (const ports::Row& row : *rows) {
    if (index++ < offset) {
      continue;
    }
    auto volume = VolumeFromRow(row);
    if (!volume) {
      return FaultFromError(volume.error());
    }
    items.push_back(detail ? View(*volume, context, names, ViewFor::kGet)
                           : SummaryView(*volume, context));
    last_id = volume->id;
  }
  json body = {{"volumes", items}};
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == limit) {
    body["volumes_links"] = json::array(
        {{{"rel", "next"},
          {"href", NextLink(context, request, detail ? "volumes/detail" : "volumes", last_id)}}});
  }
  if (with_count) {
    body["count"] = count;
  }
  return JsonResponse(200, body);
}

HttpResponse VolumesApi::Summary(const RequestContext& context, const HttpRequest& request) {
  ports::ListQuery query;
  std::string value;
  if (!(context.is_admin && request.QueryValue("all_tenants", &value) && TruthyParameter(value))) {
    query.filters.push_back(Expectation::Equals("project_id", context.project_id));
  }
  auto rows = store_.List(ports::Table::kVolumes, query);
  if (!rows) {
    return FaultFromError(rows.error());
  }
  std::int64_t total_size = 0;
  std::map<std::string, std::vector<std::string>> metadata;
  for (const ports::Row& row : *rows) {
    total_size += IntegerOr(row, "size_gib", 0);
    for (const auto& [key, item] : MetadataFromJson(TextOr(row, "metadata", "{}"))) {
      std::vector<std::string>& values = metadata[key];
      if (std::find(values.begin(), values.end(), item) == values.end()) {
        values.push_back(item);
      }
    }
  }
  json summary = {{"total_count", static_cast<std::int64_t>(rows->size())},
                  {"total_size", total_size}};
  if (context.version >= Microversion{3, 36}) {
    summary["metadata"] = metadata;
  }
  return JsonResponse(200, {{"volume-summary", summary}});
}

HttpResponse VolumesApi::Update(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view volume_id) {
  auto body = ParseBody(request,
                        "volume",
                        {"description", "display_description", "display_name", "metadata", "name"});
  if (!body) {
    return FaultFromError(body.error());
  }
  ports::Row values;
  bool present = false;
  auto name = AliasedText(*body, "name", "display_name", &present, TextLimit::kInvalidInput);
  if (!name) {
    return FaultFromError(name.error());
  }
  if (present) {
    values["display_name"] = TextOrNull(*name);
  }
  auto description =
      AliasedText(*body, "description", "display_description", &present, TextLimit::kInvalidInput);
  if (!description) {
    return FaultFromError(description.error());
  }
  if (present) {
    values["display_description"] = TextOrNull(*description);
  }
  if (body->contains("metadata")) {
    auto metadata = ParseMetadata((*body)["metadata"]);
    if (!metadata) {
      return FaultFromError(metadata.error());
    }
    values["metadata"] = MetadataToJson(*metadata);
  }
  if (values.empty()) {
    return Show(context, volume_id);
  }
  auto visible = Visible(store_, context, volume_id);
  if (!visible) {
    return visible.error();
  }
  values["updated_at"] = FormatTimestamp(clock_.WallNow());
  // The project as read, not the caller's: an admin updates any project's volume.
  auto updated = store_.ConditionalUpdate(ports::Table::kVolumes,
                                          volume_id,
                                          values,
                                          {Expectation::Equals("project_id", visible->project_id),
                                           Expectation::Equals("deleted", std::int64_t{0})},
                                          {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, VolumeNotFound(volume_id));
  }
  auto volume = VolumeFromRow(**updated);
  if (!volume) {
    return FaultFromError(volume.error());
  }
  VolumeTypeCatalog::NameCache names(types_);
  return JsonResponse(200, {{"volume", View(*volume, context, names, ViewFor::kUpdate)}});
}

HttpResponse VolumesApi::Delete(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view volume_id) {
  std::string value;
  bool force = context.version >= Microversion{3, 23} && request.QueryValue("force", &value) &&
               TruthyParameter(value);
  // volume:force_delete was checked by the route (admin by default; a policy file may open it).
  const bool cascade = request.QueryValue("cascade", &value) && TruthyParameter(value);
  return DeleteVolume(context, volume_id, force, std::nullopt, cascade);
}

HttpResponse VolumesApi::DeleteVolume(const RequestContext& context,
                                      std::string_view volume_id,
                                      bool force,
                                      const std::optional<std::string>& group_id,
                                      bool cascade) {
  auto volume = Visible(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  if (cascade) {
    if (!delete_snapshot_) {
      return Fault(400, "Cascade delete is not available here.");
    }
    // The volume must be one we could delete before its snapshots go: a cascade on an attached
    // or busy volume deletes nothing.
    const bool deletable =
        force ? std::find(kDeletingStatuses.begin(), kDeletingStatuses.end(), volume->status) ==
                    kDeletingStatuses.end()
              : std::find(kDeletableStatuses.begin(), kDeletableStatuses.end(), volume->status) !=
                    kDeletableStatuses.end();
    if (!deletable || volume->attach_status == "attached") {
      return Fault(400, WhyNotDeletable(volume->id));
    }
    ports::ListQuery snapshots;
    snapshots.filters = {Expectation::Equals("volume_id", volume->id)};
    auto rows = store_.List(ports::Table::kSnapshots, snapshots);
    if (!rows) {
      return FaultFromError(rows.error());
    }
    for (const ports::Row& row : *rows) {
      const std::string snapshot_id = TextOr(row, "id", "");
      const ports::Value status = TextOr(row, "status", "");
      if (status == Status(SnapshotStatus::kDeletingQueued) ||
          status == Status(SnapshotStatus::kDeleting)) {
        continue;
      }
      HttpResponse deleted = delete_snapshot_(context, snapshot_id);
      if (deleted.status != 202) {
        log::Info("volume.cascade_stopped",
                  {{"volume_id", volume->id},
                   {"snapshot_id", snapshot_id},
                   {"status", static_cast<long long>(deleted.status)}});
        return deleted;
      }
    }
  }
  if (options_.fail_fast_locks != nullptr) {
    auto probe = options_.fail_fast_locks->TryAcquire(
        VolumeLockRequest(volume->id, domain::Operation::kDeleteVolume));
    if (!probe && probe.error().code == ErrorCode::kBusy) {
      return Fault(
          409,
          "Volume " + volume->id + " is busy: another operation is running on it; retry later");
    }
    // Granted (released at once) or the lock engine failed: the CAS below decides as usual.
  }
  std::string now = FormatTimestamp(clock_.WallNow());
  std::vector<Expectation> expected = {
      // The project as read (an admin deletes any project's volume).
      Expectation::Equals("project_id", volume->project_id),
      Expectation::Equals("deleted", std::int64_t{0}),
      force ? Expectation::NotIn("status", StoredNames(kDeletingStatuses))
            : Expectation::In("status", StoredNames(kDeletableStatuses)),
      Expectation::NotEquals("attach_status", Text("attached")),
      Expectation::NotIn("migration_status",
                         {Text("migrating"), Text("starting"), Text("completing")}),
      // A volume in a group goes only with its group (or leaves it first), as in Cinder.
      group_id ? Expectation::Equals("group_id", *group_id) : Expectation::IsNull("group_id"),
  };
  std::vector<ports::Guard> guards = {
      // A cascade lets snapshots that are being deleted be: the volume node waits for them.
      cascade ? ports::Guard::NoLiveRowReferences(
                    ports::Table::kSnapshots,
                    "volume_id",
                    {Expectation::NotIn("status",
                                        {Status(SnapshotStatus::kDeletingQueued),
                                         Status(SnapshotStatus::kDeleting)})})
              : ports::Guard::NoLiveRowReferences(ports::Table::kSnapshots, "volume_id"),
      // Attached or reserved: detach first (a forced delete too, as Cinder refuses attached).
      ports::Guard::NoLiveRowReferences(ports::Table::kAttachments, "volume_id"),
      // A clone still being made reads this volume: deleting it now would fail the clone.
      ports::Guard::NoLiveRowReferences(
          ports::Table::kVolumes, "source_volid", {Expectation::In("status", CreatingNames())})};

  if (!volume->host) {
    // Never scheduled (e.g. the scheduler failed it): no back-end holds data for it, so the row
    // is retired at once, as Cinder does, still under the same compare-and-swap.
    expected.push_back(Expectation::IsNull("host"));
    // What the volume counted goes with it, in the same write. The size and type as read are
    // expected, so the release matches what the row held.
    auto usage = quotas_.UsageOfVolume(volume->size_gib, volume->volume_type_id);
    if (!usage) {
      return FaultFromError(usage.error());
    }
    expected.push_back(Expectation::Equals("size_gib", volume->size_gib));
    expected.push_back(Expectation::IsNull("pending_size_gib"));
    expected.push_back(volume->volume_type_id
                           ? Expectation::Equals("volume_type_id", *volume->volume_type_id)
                           : Expectation::IsNull("volume_type_id"));
    auto retired =
        store_.ConditionalUpdateWithUsage(ports::Table::kVolumes,
                                          volume_id,
                                          {{"status", Status(VolumeStatus::kDeleted)},
                                           {"deleted", std::int64_t{1}},
                                           {"deleted_at", now},
                                           {"updated_at", now}},
                                          expected,
                                          guards,
                                          QuotaService::Release(volume->project_id, *usage));
    if (!retired) {
      return FaultFromError(retired.error());
    }
    if (!retired->has_value()) {
      return Fault(400, WhyNotDeletable(volume->id));
    }
    log::Info("volume.deleted_unscheduled", {{"volume_id", volume->id}});
    HttpResponse response;
    response.status = 202;
    return response;
  }

  std::string operation_id = NewUuid();
  expected.push_back(Expectation::Equals("host", *volume->host));
  auto queued = store_.ConditionalUpdate(ports::Table::kVolumes,
                                         volume_id,
                                         {{"status", Status(VolumeStatus::kDeletingQueued)},
                                          {"operation_id", operation_id},
                                          {"status_reason", std::monostate{}},
                                          {"updated_at", now}},
                                         expected,
                                         guards);
  if (!queued) {
    return FaultFromError(queued.error());
  }
  if (!queued->has_value()) {
    return Fault(400, WhyNotDeletable(volume->id));
  }
  JobMessage job{domain::Operation::kDeleteVolume, volume->id, operation_id, volume->project_id};
  auto published =
      queue_.Publish(VolumeJobTopic(volume->cluster_name, *volume->host), job.ToJson());
  if (!published) {
    // Undo our own queued status (only if it is still ours) so the volume can be deleted again.
    log::Error("volume.delete_not_queued",
               {{"volume_id", volume->id}, {"error", published.error().ToString()}});
    auto undone = store_.ConditionalUpdate(
        ports::Table::kVolumes,
        volume_id,
        {{"status", Status(volume->status)}, {"operation_id", TextOrNull(volume->operation_id)}},
        {Expectation::Equals("operation_id", operation_id),
         Expectation::Equals("status", Status(VolumeStatus::kDeletingQueued))},
        {});
    undone.IgnoreError("the client is told to retry; the volume then shows as deleting");
    return FaultFromError(published.error());
  }
  log::Info("volume.delete_accepted", {{"volume_id", volume->id}, {"operation_id", operation_id}});
  HttpResponse response;
  response.status = 202;
  return response;
}

tl::expected<VolumesApi::VolumeSourceRef, HttpResponse> VolumesApi::FindSource(
    const RequestContext& context, bool is_snapshot, const std::string& id) {
  VolumeSourceRef source;
  source.is_snapshot = is_snapshot;
  source.id = id;
  std::string volume_id = id;
  if (is_snapshot) {
    const std::string not_found = "Snapshot " + id + " could not be found.";
    auto row = store_.Get(ports::Table::kSnapshots, id);
    if (!row) {
      return tl::unexpected(row.error().code == ErrorCode::kNotFound ? Fault(404, not_found)
                                                                     : FaultFromError(row.error()));
    }
    auto snapshot = SnapshotFromRow(*row);
    if (!snapshot) {
      return tl::unexpected(FaultFromError(snapshot.error()));
    }
    if (snapshot->deleted || !CanSee(context, snapshot->project_id)) {
      return tl::unexpected(Fault(404, not_found));
    }
    if (snapshot->status != domain::SnapshotStatus::kAvailable) {
      return tl::unexpected(Fault(
          400, "Invalid snapshot: Originating snapshot status must be one of 'available' values"));
    }
    source.size_gib = snapshot->size_gib;
    volume_id = snapshot->volume_id;
  }
  auto row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound
                              ? Fault(404, VolumeNotFound(volume_id))
                              : FaultFromError(row.error()));
  }
  auto volume = VolumeFromRow(*row);
  if (!volume) {
    return tl::unexpected(FaultFromError(volume.error()));
  }
  if (!is_snapshot) {
    if (volume->deleted || !CanSee(context, volume->project_id)) {
      return tl::unexpected(Fault(404, VolumeNotFound(volume_id)));
    }
    if (volume->status != VolumeStatus::kAvailable || !volume->host) {
      return tl::unexpected(Fault(400,
                                  "Invalid volume: Unable to create a volume from an originating "
                                  "source volume when its status is not 'available'."));
    }
    source.size_gib = volume->size_gib;
  }
  if (!volume->host) {
    return tl::unexpected(
        Fault(400, "Invalid snapshot: the snapshot's volume " + volume_id + " has no back-end"));
  }
  source.host = volume->host;
  source.cluster_name = volume->cluster_name;
  source.volume_type_id = volume->volume_type_id;
  source.bootable = volume->bootable;
  source.image_metadata = volume->image_metadata;
  return source;
}

json VolumesApi::AttachmentsView(const Volume& volume, const RequestContext& context) {
  json items = json::array();
  if (volume.attach_status == "detached") {
    return items;  // The common case costs no query.
  }
  ports::ListQuery query;
  query.filters = {Expectation::Equals("volume_id", volume.id),
                   Expectation::Equals("status", Text("attached"))};
  query.sort = {ports::SortKey{"created_at", true}};
  auto rows = store_.List(ports::Table::kAttachments, query);
  if (!rows) {
    return items;  // The view is still right about everything else.
  }
  for (const ports::Row& row : *rows) {
    items.push_back(
        {{"id", volume.id},
         {"attachment_id", TextOr(row, "id", "")},
         {"volume_id", volume.id},
         {"server_id", NullOr(OptionalText(row, "instance_uuid"))},
         {"host_name", context.is_admin ? NullOr(OptionalText(row, "attached_host")) : json()},
         {"device", NullOr(OptionalText(row, "mountpoint"))},
         {"attached_at", NullOr(OptionalText(row, "attach_time"))}});
  }
  return items;
}

void VolumesApi::WithdrawCreate(const std::string& volume_id,
                                const std::vector<ports::UsageChange>& release) {
  std::string now = FormatTimestamp(clock_.WallNow());
  auto withdrawn = store_.ConditionalUpdateWithUsage(
      ports::Table::kVolumes,
      volume_id,
      {{"status", Status(VolumeStatus::kDeleted)},
       {"deleted", std::int64_t{1}},
       {"deleted_at", now}},
      {Expectation::Equals("status", Status(VolumeStatus::kCreatingQueued)),
       Expectation::Equals("deleted", std::int64_t{0})},
      {},
      release);
  withdrawn.IgnoreError("the client is told to retry; a leftover row shows as creating");
}

std::string VolumesApi::WhyNotDeletable(const std::string& volume_id) {
  ports::ListQuery snapshots;
  snapshots.filters = {Expectation::Equals("volume_id", volume_id)};
  snapshots.limit = 1;
  if (auto rows = store_.List(ports::Table::kSnapshots, snapshots); rows && !rows->empty()) {
    return "Invalid volume: Volume " + volume_id +
           " still has dependent snapshots; delete them first.";
  }
  ports::ListQuery attachments;
  attachments.filters = {Expectation::Equals("volume_id", volume_id)};
  attachments.limit = 1;
  if (auto rows = store_.List(ports::Table::kAttachments, attachments); rows && !rows->empty()) {
    return "Invalid volume: Volume " + volume_id +
           " is attached or reserved for an attachment; detach it first.";
  }
  ports::ListQuery clones;
  clones.filters = {Expectation::Equals("source_volid", volume_id),
                    Expectation::In("status", CreatingNames())};
  clones.limit = 1;
  if (auto rows = store_.List(ports::Table::kVolumes, clones); rows && !rows->empty()) {
    return "Invalid volume: Volume " + volume_id +
           " is the source of volumes still being created; delete it once they are available.";
  }
  return std::string(kInvalidVolumeForDelete);
}

HttpResponse VolumesApi::Action(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view volume_id) {
  return Action(context, json::parse(request.body, nullptr, false), volume_id);
}

HttpResponse VolumesApi::Action(const RequestContext& context,
                                const json& body,
                                std::string_view volume_id) {
  if (body.is_discarded() || !body.is_object() || body.size() != 1) {
    return Fault(400, "Malformed request body");
  }
  const std::string action = body.begin().key();
  const json& argument = body.begin().value();
  if (IsFlagOrImageMetadataAction(action)) {
    return FlagOrImageMetadataAction(context, action, argument, volume_id);
  }
  if (action == "os-extend") {
    return Extend(context, argument, volume_id);
  }
  if (action == "os-retype") {
    return Retype(context, argument, volume_id);
  }
  // The route's rules (volume_extension:volume_admin_actions:*) decided who may: a policy file
  // may open them to members.
  if (action == "os-reset_status") {
    return ResetStatus(context, argument, volume_id);
  }
  if (action == "os-force_delete") {
    return DeleteVolume(context, volume_id, /*force=*/true);
  }
  return Fault(400, "There is no such action: " + action);
}

HttpResponse VolumesApi::Extend(const RequestContext& context,
                                const json& argument,
                                std::string_view volume_id) {
  if (!argument.is_object() || !argument.contains("new_size")) {
    return Fault(400,
                 "Invalid input for field/attribute os-extend: 'new_size' is a required "
                 "property");
  }
  auto new_size = ParseSize(argument["new_size"], options_.max_volume_size_gib);
  if (!new_size) {
    return FaultFromError(new_size.error());
  }
  auto volume = Visible(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  if (*new_size <= volume->size_gib) {
    return Fault(400,
                 "Invalid input received: New size for extend must be greater than current size. "
                 "(current: " +
                     std::to_string(volume->size_gib) + ", extended: " + std::to_string(*new_size) +
                     ").");
  }
  const std::string not_available =
      "Invalid volume: Volume " + volume->id +
      " status must be available or in-use to extend, but current status "
      "is: " +
      std::string(domain::ApiName(volume->status)) + ".";
  // An attached volume grows too from 3.42 (the host sees the new size after a rescan).
  const bool extendable =
      volume->status == VolumeStatus::kAvailable ||
      (volume->status == VolumeStatus::kInUse && context.version >= Microversion{3, 42});
  if (!extendable || !volume->host) {
    return Fault(400, not_available);
  }
  // The ticket counts this extend against the back-end until it is written.
  Admission admitted = AdmitOnJobsBackend(options_.admission, volume->cluster_name, volume->host);
  if (!admitted) {
    return std::move(admitted.error());
  }
  // Quotas: the growth counts from the write that queues it; a failed extend releases it.
  auto limits = quotas_.ProjectLimits(volume->project_id);
  if (!limits) {
    return FaultFromError(limits.error());
  }
  if (auto over = PerVolumeLimitExceeded(*limits, *new_size)) {
    return std::move(*over);
  }
  auto growth = quotas_.UsageOfExtend(*new_size - volume->size_gib, volume->volume_type_id);
  if (!growth) {
    return FaultFromError(growth.error());
  }
  const std::string operation_id = NewUuid();
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto queued = store_.ConditionalUpdateWithUsage(
      ports::Table::kVolumes,
      volume->id,
      {{"status", Status(VolumeStatus::kExtendingQueued)},
       {"operation_id", operation_id},
       {"pending_size_gib", *new_size},
       {"status_reason", std::monostate{}},
       {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::Equals("size_gib", volume->size_gib),
       Expectation::Equals("status", Status(volume->status)),
       volume->volume_type_id ? Expectation::Equals("volume_type_id", *volume->volume_type_id)
                              : Expectation::IsNull("volume_type_id")},
      {},
      QuotaService::ChargeWithLimits(*limits, volume->project_id, *growth));
  if (!queued) {
    return QuotaFault(queued.error());
  }
  if (!queued->has_value()) {
    return Fault(400, not_available);
  }
  JobMessage job{domain::Operation::kExtendVolume, volume->id, operation_id, volume->project_id};
  if (auto published =
          queue_.Publish(VolumeJobTopic(volume->cluster_name, *volume->host), job.ToJson());
      !published) {
    log::Error("volume.extend_not_queued",
               {{"volume_id", volume->id}, {"error", published.error().ToString()}});
    auto undone = store_.ConditionalUpdateWithUsage(
        ports::Table::kVolumes,
        volume->id,
        {{"status", Status(volume->status)},
         {"operation_id", TextOrNull(volume->operation_id)},
         {"pending_size_gib", std::monostate{}}},
        {Expectation::Equals("operation_id", operation_id),
         Expectation::Equals("status", Status(VolumeStatus::kExtendingQueued))},
        {},
        QuotaService::Release(volume->project_id, *growth));
    undone.IgnoreError("the client is told to retry; the sweeper re-publishes otherwise");
    return FaultFromError(published.error());
  }
  log::Info("volume.extend_accepted",
            {{"volume_id", volume->id},
             {"operation_id", operation_id},
             {"new_size_gib", static_cast<long long>(*new_size)}});
  return Accepted();
}

HttpResponse VolumesApi::ResetStatus(const RequestContext& context,
                                     const json& argument,
                                     std::string_view volume_id) {
  static constexpr std::array<std::string_view, 2> kAttachStatuses = {"attached", "detached"};
  static constexpr std::array<std::string_view, 6> kMigrationStatuses = {
      "migrating", "error", "success", "completing", "none", "starting"};
  if (!argument.is_object() || argument.empty()) {
    return Fault(400, "Must specify 'status', 'attach_status' or 'migration_status' for update.");
  }
  ports::Row values;
  for (const auto& [key, value] : argument.items()) {
    if (key != "status" && key != "attach_status" && key != "migration_status") {
      return Fault(400,
                   "Invalid input for field/attribute os-reset_status. Additional properties are "
                   "not allowed ('" +
                       key + "' was unexpected)");
    }
    if (!value.is_string()) {
      return Fault(400,
                   "Invalid input for field/attribute " + key + ". Value: " + value.dump() +
                       " is not of type 'string'");
    }
  }
  if (argument.contains("status")) {
    const std::string wanted = argument["status"].get<std::string>();
    // Only statuses at rest are ever stored: a queued or in-progress status set by hand would
    // look like a job to the nodes, so an operation's status ("creating", ...) is stored as its
    // at-rest by-admin variant, shown the same.
    std::optional<VolumeStatus> status = domain::VolumeStatusSetByAdmin(wanted);
    if (!status) {
      return Fault(400,
                   "Invalid input received: status '" + wanted +
                       "' cannot be set by os-reset_status; use one of available, error, "
                       "error_deleting, error_extending, error_restoring, reserved, attaching, "
                       "in-use, detaching, backing-up, maintenance, creating, deleting, "
                       "extending, restoring-backup");
    }
    values["status"] = Status(*status);
    values["status_reason"] = std::monostate{};
    values["pending_size_gib"] = std::monostate{};
    // A job still queued or under way for the old operation no longer matches: it drops.
    values["operation_id"] = std::monostate{};
  }
  if (argument.contains("attach_status")) {
    const std::string wanted = argument["attach_status"].get<std::string>();
    if (std::find(kAttachStatuses.begin(), kAttachStatuses.end(), wanted) ==
        kAttachStatuses.end()) {
      return Fault(400, "Invalid input received: attach_status '" + wanted + "' is not valid");
    }
    values["attach_status"] = wanted;
  }
  if (argument.contains("migration_status")) {
    const std::string wanted = argument["migration_status"].get<std::string>();
    if (std::find(kMigrationStatuses.begin(), kMigrationStatuses.end(), wanted) ==
        kMigrationStatuses.end()) {
      return Fault(400, "Invalid input received: migration_status '" + wanted + "' is not valid");
    }
    values["migration_status"] = wanted == "none" ? ports::Value{} : ports::Value{wanted};
  }
  auto volume = Visible(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  values["updated_at"] = FormatTimestamp(clock_.WallNow());
  std::vector<Expectation> expected = {Expectation::Equals("deleted", std::int64_t{0}),
                                       Expectation::Equals("project_id", volume->project_id)};
  // A reset drops an extend's pending size: the growth it counted goes in the same write.
  std::vector<ports::UsageChange> release;
  if (values.contains("pending_size_gib")) {
    auto row = store_.Get(ports::Table::kVolumes, volume_id);
    if (!row) {
      return FaultFromError(row.error());
    }
    const bool has_pending = std::holds_alternative<std::int64_t>(row->at("pending_size_gib"));
    const std::int64_t pending = IntegerOr(*row, "pending_size_gib", 0);
    const std::int64_t size = IntegerOr(*row, "size_gib", 0);
    expected.push_back(has_pending ? Expectation::Equals("pending_size_gib", pending)
                                   : Expectation::IsNull("pending_size_gib"));
    expected.push_back(Expectation::Equals("size_gib", size));
    expected.push_back(volume->volume_type_id
                           ? Expectation::Equals("volume_type_id", *volume->volume_type_id)
                           : Expectation::IsNull("volume_type_id"));
    if (has_pending && pending > size) {
      auto growth = quotas_.UsageOfExtend(pending - size, volume->volume_type_id);
      if (!growth) {
        return FaultFromError(growth.error());
      }
      release = QuotaService::Release(volume->project_id, *growth);
    }
  }
  auto updated = store_.ConditionalUpdateWithUsage(
      ports::Table::kVolumes, volume_id, values, expected, {}, release);
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, VolumeNotFound(volume_id));
  }
  log::Warn("volume.status_reset",
            {{"volume_id", std::string(volume_id)},
             {"status", argument.value("status", std::string())},
             {"by", context.user_id}});
  return Accepted();
}

HttpResponse VolumesApi::Retype(const RequestContext& context,
                                const json& argument,
                                std::string_view volume_id) {
  if (!argument.is_object()) {
    return Fault(400,
                 "Invalid input for field/attribute os-retype. Value: " + argument.dump() +
                     " is not of type 'object'");
  }
  for (const auto& item : argument.items()) {
    if (item.key() != "new_type" && item.key() != "migration_policy") {
      return Fault(400,
                   "Invalid input for field/attribute os-retype. Additional properties are not "
                   "allowed ('" +
                       item.key() + "' was unexpected)");
    }
  }
  if (!argument.contains("new_type") || !argument["new_type"].is_string()) {
    return Fault(400,
                 "Invalid input for field/attribute os-retype. 'new_type' is a required property "
                 "of type 'string'");
  }
  if (argument.contains("migration_policy") && !argument["migration_policy"].is_null() &&
      argument["migration_policy"] != "on-demand" && argument["migration_policy"] != "never") {
    return Fault(400,
                 "Invalid input for field/attribute migration_policy. Value: " +
                     argument["migration_policy"].dump() + " is not one of ['on-demand', 'never']");
  }
  auto volume = Visible(store_, context, volume_id);
  if (!volume) {
    return volume.error();
  }
  // Cinder looks the new type up elevated: any live type, private ones included.
  auto new_type = types_.Resolve(context, argument["new_type"].get<std::string>(), true);
  if (!new_type) {
    return new_type.error();
  }
  const std::string not_retypable =
      "Invalid volume: Retype needs volume to be in available or in-use state, not be part of an "
      "active migration or a consistency group, requested type has to be different that the one "
      "from the volume, and for in-use volumes front-end qos specs cannot change.";
  std::string current_type_id;
  if (volume->volume_type_id) {
    current_type_id = *volume->volume_type_id;
  } else {
    auto fallback = types_.Default();
    if (!fallback) {
      return FaultFromError(fallback.error());
    }
    current_type_id = fallback->id;
  }
  if (current_type_id == new_type->id) {
    return Fault(400, not_retypable);
  }
  if (new_type->encryption) {
    return Fault(400, EncryptedTypeRefused(*new_type));
  }
  const bool to_multiattach = IsMultiattachType(*new_type);
  if (to_multiattach != volume->multiattach) {
    if (volume->status != VolumeStatus::kAvailable) {
      return Fault(400,
                   "Invalid input received: Invalid volume_type passed, retypes affecting "
                   "multiattach are only allowed on available volumes, the specified volume "
                   "however currently has a status of: " +
                       std::string(domain::ApiName(volume->status)) + ".");
    }
    if (to_multiattach && !Allowed(context, domain::policies::kVolumeMultiattach)) {
      return Fault(403, "Policy doesn't allow volume:multiattach to be performed.");
    }
  }
  // Cinder's conditional update: available or in-use, no migration under way, in no group (a
  // group's volumes keep one of its types), still the type it had (exactly, so a racing retype
  // is not undone).
  std::vector<Expectation> expected = {
      Expectation::Equals("deleted", std::int64_t{0}),
      Expectation::IsNull("group_id"),
      Expectation::In("status", {Status(VolumeStatus::kAvailable), Status(VolumeStatus::kInUse)}),
      Expectation::NotIn("migration_status",
                         {Text("migrating"), Text("starting"), Text("completing")}),
      Expectation::Equals("multiattach", std::int64_t{volume->multiattach ? 1 : 0}),
      volume->volume_type_id ? Expectation::Equals("volume_type_id", *volume->volume_type_id)
                             : Expectation::IsNull("volume_type_id"),
  };
  // Quotas: the per-type counts move from the old type to the new one in the same write. A
  // volume with snapshots keeps its type: their per-type counts would have to move too, and a
  // snapshot being made or deleted meanwhile could not be counted exactly.
  auto limits = quotas_.ProjectLimits(volume->project_id);
  if (!limits) {
    return FaultFromError(limits.error());
  }
  expected.push_back(Expectation::Equals("size_gib", volume->size_gib));
  expected.push_back(Expectation::IsNull("pending_size_gib"));
  std::vector<ports::UsageChange> move;
  auto old_type = quotas_.TypeName(volume->volume_type_id);
  if (!old_type) {
    return FaultFromError(old_type.error());
  }
  if (*old_type) {
    UsageAmounts old_counts;
    old_counts.Add("volumes_" + **old_type, 1);
    old_counts.Add("gigabytes_" + **old_type, volume->size_gib);
    move = QuotaService::Release(volume->project_id, old_counts);
  }
  UsageAmounts new_counts;
  new_counts.Add("volumes_" + new_type->name, 1);
  new_counts.Add("gigabytes_" + new_type->name, volume->size_gib);
  for (ports::UsageChange& change :
       QuotaService::ChargeWithLimits(*limits, volume->project_id, new_counts)) {
    move.push_back(std::move(change));
  }
  auto retyped = store_.ConditionalUpdateWithUsage(
      ports::Table::kVolumes,
      volume->id,
      {{"volume_type_id", new_type->id},
       {"multiattach", std::int64_t{to_multiattach ? 1 : 0}},
       {"updated_at", FormatTimestamp(clock_.WallNow())}},
      expected,
      {ports::Guard::NoLiveRowReferences(ports::Table::kSnapshots, "volume_id")},
      move);
  if (!retyped) {
    return QuotaFault(retyped.error());
  }
  if (!retyped->has_value()) {
    return Fault(400, not_retypable);
  }
  // The new type is pinned now that the volume has it: a delete of the type that won the race
  // is seen here and the volume gets its old type back (volume_type_record.h).
  auto pinned = types_.Pin(*new_type, std::nullopt);
  if (!pinned || !*pinned) {
    // Back to the old type: the counts move back (no limit: they were there before).
    std::vector<ports::UsageChange> back;
    back.reserve(move.size());
    for (const ports::UsageChange& change : move) {
      back.push_back(ports::UsageChange{change.project_id, change.resource, -change.delta, -1});
    }
    auto undone = store_.ConditionalUpdateWithUsage(
        ports::Table::kVolumes,
        volume->id,
        {{"volume_type_id", TextOrNull(volume->volume_type_id)},
         {"multiattach", std::int64_t{volume->multiattach ? 1 : 0}}},
        {Expectation::Equals("volume_type_id", new_type->id),
         Expectation::Equals("size_gib", volume->size_gib),
         Expectation::IsNull("pending_size_gib")},
        {},
        back);
    undone.IgnoreError("the volume keeps a deleted type; an admin may retype it again");
    if (!pinned) {
      return FaultFromError(pinned.error());
    }
    return Fault(404, VolumeTypeNotFound(new_type->id));
  }
  log::Info("volume.retyped",
            {{"volume_id", volume->id},
             {"volume_type_id", new_type->id},
             {"migration_policy",
              argument.value("migration_policy", json()).is_string()
                  ? argument["migration_policy"].get<std::string>()
                  : std::string("never")}});
  return Accepted();
}

}  // namespace clinker::services
