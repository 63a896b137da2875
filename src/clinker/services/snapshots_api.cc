#include "clinker/services/snapshots_api.h"

#include <algorithm>
#include <array>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/job_message.h"
#include "clinker/services/quotas_api.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using domain::SnapshotStatus;
using domain::VolumeStatus;
using nlohmann::json;
using ports::Expectation;

std::string SnapshotNotFound(std::string_view id) {
  return "Snapshot " + std::string(id) + " could not be found.";
}

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
      {"volume_id", "volume_id"},
      {"project_id", "project_id"},
      {"user_id", "user_id"},
  };
  auto it = kColumns.find(key);
  if (it == kColumns.end()) {
    return std::nullopt;
  }
  return std::string(it->second);
}

// Which fields a snapshot view has, as Cinder's views give them.
enum class ViewKind {
  kSummary,  // List items: the base fields only (the v3 view builder extends `detail` only).
  kDetail,   // Create and update: base fields and the microversioned ones.
  kExtended  // Show and list detail: also the extended snapshot attributes.
};

json View(const Snapshot& snapshot, const RequestContext& context, ViewKind kind) {
  json view = {
      {"id", snapshot.id},
      {"created_at", snapshot.created_at},
      {"updated_at", NullOr(snapshot.updated_at)},
      {"name", NullOr(snapshot.name)},
      {"description", NullOr(snapshot.description)},
      {"volume_id", snapshot.volume_id},
      {"status", std::string(domain::ApiName(snapshot.status))},
      {"size", snapshot.size_gib},
      {"metadata", snapshot.metadata},
  };
  if (kind == ViewKind::kSummary) {
    return view;
  }
  if (kind == ViewKind::kExtended) {
    view["os-extended-snapshot-attributes:progress"] =
        snapshot.progress ? *snapshot.progress
                          : (snapshot.status == SnapshotStatus::kAvailable ? "100%" : "0%");
    view["os-extended-snapshot-attributes:project_id"] = snapshot.project_id;
  }
  if (context.version >= Microversion{3, 14}) {
    view["group_snapshot_id"] = NullOr(snapshot.group_snapshot_id);
  }
  if (context.version >= Microversion{3, 41}) {
    view["user_id"] = snapshot.user_id;
  }
  if (context.version >= Microversion{3, 65}) {
    view["consumes_quota"] = true;
  }
  return view;
}

std::vector<ports::Value> StoredNames(const std::vector<SnapshotStatus>& statuses) {
  std::vector<ports::Value> names;
  names.reserve(statuses.size());
  for (SnapshotStatus status : statuses) {
    names.emplace_back(std::string(domain::StoredName(status)));
  }
  return names;
}

// The snapshot if the caller may see it (CanSee); the fault to answer otherwise, the same for a
// snapshot of another project as for one that does not exist.
tl::expected<Snapshot, HttpResponse> Visible(ports::StateStore& store,
                                             const RequestContext& context,
                                             std::string_view snapshot_id) {
  auto row = store.Get(ports::Table::kSnapshots, snapshot_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound
                              ? Fault(404, SnapshotNotFound(snapshot_id))
                              : FaultFromError(row.error()));
  }
  auto snapshot = SnapshotFromRow(*row);
  if (!snapshot) {
    return tl::unexpected(FaultFromError(snapshot.error()));
  }
  if (snapshot->deleted || !CanSee(context, snapshot->project_id)) {
    return tl::unexpected(Fault(404, SnapshotNotFound(snapshot_id)));
  }
  return *snapshot;
}

}  // namespace

SnapshotsApi::SnapshotsApi(ports::StateStore& store,
                           ports::JobQueue& queue,
                           const ports::Clock& clock,
                           SnapshotsApiOptions options)
    : store_(store),
      queue_(queue),
      clock_(clock),
      options_(options),
      quotas_(store, options_.quota) {}

HttpResponse SnapshotsApi::Create(const RequestContext& context, const HttpRequest& request) {
  auto body = ParseBody(request,
                        "snapshot",
                        {"description", "display_name", "force", "metadata", "name", "volume_id"});
  if (!body) {
    return FaultFromError(body.error());
  }
  return CreateSnapshot(context, *body, std::nullopt);
}

HttpResponse SnapshotsApi::CreateGroupMember(const RequestContext& context,
                                             const json& spec,
                                             const std::string& group_snapshot_id) {
  return CreateSnapshot(context, spec, group_snapshot_id);
}

HttpResponse SnapshotsApi::DeleteGroupMember(const RequestContext& context,
                                             std::string_view snapshot_id,
                                             const std::string& group_snapshot_id) {
  return DeleteSnapshot(context, snapshot_id, /*force=*/false, group_snapshot_id);
}

HttpResponse SnapshotsApi::CreateSnapshot(const RequestContext& context,
                                          const json& spec,
                                          const std::optional<std::string>& group_snapshot_id) {
  // Cinder's schema: volume_id required, a UUID or null; a null one is looked up like any other
  // id and not found (404, as Tempest's negative test expects).
  if (!spec.contains("volume_id")) {
    return Fault(400,
                 "Invalid input for field/attribute snapshot: 'volume_id' is a required "
                 "property");
  }
  // uuid_allow_null: anything but null or a UUID is the schema's 400, never a lookup's 404.
  if (auto checked = CheckUuidField(spec, "volume_id", UuidField::kUuidOrNull); !checked) {
    return FaultFromError(checked.error());
  }
  if (spec["volume_id"].is_null()) {
    return Fault(404, "Volume None could not be found.");
  }
  // force: Cinder's boolean (true/false or their string spellings); null is "not given", which
  // is what python-cinderclient sends when its --force is not used.
  bool force = false;
  if (spec.contains("force") && !spec["force"].is_null()) {
    std::optional<bool> parsed = StrictBoolean(spec["force"]);
    if (!parsed) {
      return Fault(400,
                   "Invalid input for field/attribute force. Value: " + spec["force"].dump() +
                       " is not of type 'boolean', 'string'");
    }
    force = *parsed;
    if (!force && context.version >= Microversion{3, 66}) {
      return Fault(400,
                   "Invalid value 'False' for force. From microversion 3.66 a snapshot of an "
                   "in-use volume is allowed without it, and force=False is not accepted.");
    }
  }
  Snapshot snapshot;
  bool present = false;
  auto name = AliasedText(spec, "name", "display_name", &present);
  auto description = AliasedText(spec, "description", "display_description", &present);
  if (!name || !description) {
    return FaultFromError(!name ? name.error() : description.error());
  }
  snapshot.name = *name;
  snapshot.description = *description;
  if (spec.contains("metadata") && !spec["metadata"].is_null()) {
    auto metadata = ParseMetadata(spec["metadata"]);
    if (!metadata) {
      return FaultFromError(metadata.error());
    }
    snapshot.metadata = *metadata;
  }

  const std::string volume_id = spec["volume_id"].get<std::string>();
  const std::string volume_not_found = "Volume " + volume_id + " could not be found.";
  auto row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!row) {
    return row.error().code == ErrorCode::kNotFound ? Fault(404, volume_not_found)
                                                    : FaultFromError(row.error());
  }
  auto volume = VolumeFromRow(*row);
  if (!volume) {
    return FaultFromError(volume.error());
  }
  if (volume->deleted || !CanSee(context, volume->project_id)) {
    return Fault(404, volume_not_found);
  }
  const std::string not_available = "Invalid volume: Volume " + volume_id +
                                    " status must be available, but current status is: " +
                                    std::string(domain::ApiName(volume->status)) + ".";
  if (volume->status != VolumeStatus::kAvailable || !volume->host) {
    return Fault(400, not_available);
  }
  // A group snapshot's members are admitted with it (refusing one midway would leave it half
  // made).
  // The ticket counts this create against the back-end until it is written.
  Admission admitted = AdmitOnJobsBackend(
      group_snapshot_id ? nullptr : options_.admission, volume->cluster_name, volume->host);
  if (!admitted) {
    return std::move(admitted.error());
  }

  snapshot.id = NewUuid();
  // The caller's project, also when an admin snapshots another project's volume (as Cinder).
  snapshot.project_id = context.project_id;
  snapshot.user_id = context.user_id;
  snapshot.volume_id = volume_id;
  snapshot.size_gib = volume->size_gib;
  snapshot.status = SnapshotStatus::kCreatingQueued;
  snapshot.operation_id = NewUuid();
  snapshot.group_snapshot_id = group_snapshot_id;
  snapshot.created_at = FormatTimestamp(clock_.WallNow());
  // Quotas: the snapshot counts from the write that inserts it (services/quotas.h), for the
  // caller's project and the volume's type.
  auto usage = quotas_.UsageOfSnapshot(snapshot.size_gib, volume_id);
  if (!usage) {
    return FaultFromError(usage.error());
  }
  auto charge = quotas_.Charge(snapshot.project_id, *usage);
  if (!charge) {
    return FaultFromError(charge.error());
  }
  if (auto inserted =
          store_.InsertWithUsage(ports::Table::kSnapshots, SnapshotToRow(snapshot), *charge);
      !inserted) {
    return QuotaFault(inserted.error());
  }
  // Checked again now that the snapshot exists (see the header): a volume delete that won the
  // race shows here; a later one sees this snapshot and is refused.
  auto withdraw = [&] {
    std::string now = FormatTimestamp(clock_.WallNow());
    auto withdrawn = store_.ConditionalUpdateWithUsage(
        ports::Table::kSnapshots,
        snapshot.id,
        {{"status", Status(SnapshotStatus::kDeleted)},
         {"deleted", std::int64_t{1}},
         {"deleted_at", now}},
        {Expectation::Equals("status", Status(SnapshotStatus::kCreatingQueued)),
         Expectation::Equals("deleted", std::int64_t{0})},
        {},
        QuotaService::Release(snapshot.project_id, *usage));
    withdrawn.IgnoreError("the client is told why; a leftover row shows as creating");
  };
  auto still_available = store_.ConditionalUpdate(
      ports::Table::kVolumes,
      volume_id,
      {},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::Equals("status", Status(VolumeStatus::kAvailable)),
       // The type the snapshot was counted under (a retype that won
       // the race shows here; a later one sees the snapshot).
       volume->volume_type_id ? Expectation::Equals("volume_type_id", *volume->volume_type_id)
                              : Expectation::IsNull("volume_type_id")},
      {});
  if (!still_available || !still_available->has_value()) {
    withdraw();
    if (!still_available) {
      return FaultFromError(still_available.error());
    }
    return Fault(400,
                 "Invalid volume: Volume " + volume_id +
                     " status must be available, but it changed while the snapshot was made.");
  }
  JobMessage job{
      domain::Operation::kCreateSnapshot, snapshot.id, *snapshot.operation_id, snapshot.project_id};
  if (auto published =
          queue_.Publish(VolumeJobTopic(volume->cluster_name, *volume->host), job.ToJson());
      !published) {
    log::Error("snapshot.create_not_queued",
               {{"snapshot_id", snapshot.id}, {"error", published.error().ToString()}});
    withdraw();
    return FaultFromError(published.error());
  }
  log::Info("snapshot.create_accepted",
            {{"snapshot_id", snapshot.id},
             {"volume_id", volume_id},
             {"operation_id", *snapshot.operation_id}});
  return JsonResponse(202, {{"snapshot", View(snapshot, context, ViewKind::kDetail)}});
}

HttpResponse SnapshotsApi::Show(const RequestContext& context, std::string_view snapshot_id) {
  auto snapshot = Visible(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  return JsonResponse(200, {{"snapshot", View(*snapshot, context, ViewKind::kExtended)}});
}

HttpResponse SnapshotsApi::List(const RequestContext& context,
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
    query.filters.push_back(
        Expectation::In("status", StoredNames(domain::SnapshotStatusesShownAs(value))));
  }
  if (request.QueryValue("volume_id", &value)) {
    query.filters.push_back(Expectation::Equals("volume_id", value));
  }
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
  std::string marker;
  if (request.QueryValue("marker", &marker)) {
    query.marker_id = marker;
  }
  query.limit = limit + offset;
  auto rows = store_.List(ports::Table::kSnapshots, query);
  if (!rows) {
    if (rows.error().code == ErrorCode::kNotFound) {
      return Fault(404, "Marker " + marker + " could not be found.");
    }
    return FaultFromError(rows.error());
  }
  json items = json::array();
  std::string last_id;
  std::int64_t index = 0;
  for (const ports::Row& row : *rows) {
    if (index++ < offset) {
      continue;
    }
    auto snapshot = SnapshotFromRow(row);
    if (!snapshot) {
      return FaultFromError(snapshot.error());
    }
    items.push_back(View(*snapshot, context, detail ? ViewKind::kExtended : ViewKind::kSummary));
    last_id = snapshot->id;
  }
  json body = {{"snapshots", items}};
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == limit) {
    body["snapshots_links"] = json::array(
        {{{"rel", "next"},
          {"href",
           NextLink(context, request, detail ? "snapshots/detail" : "snapshots", last_id)}}});
  }
  return JsonResponse(200, body);
}

HttpResponse SnapshotsApi::Update(const RequestContext& context,
                                  const HttpRequest& request,
                                  std::string_view snapshot_id) {
  auto body = ParseBody(
      request, "snapshot", {"description", "display_description", "display_name", "name"});
  if (!body) {
    return FaultFromError(body.error());
  }
  ports::Row values;
  bool present = false;
  auto name = AliasedText(*body, "name", "display_name", &present);
  if (!name) {
    return FaultFromError(name.error());
  }
  if (present) {
    values["display_name"] = TextOrNull(*name);
  }
  auto description = AliasedText(*body, "description", "display_description", &present);
  if (!description) {
    return FaultFromError(description.error());
  }
  if (present) {
    values["display_description"] = TextOrNull(*description);
  }
  // Metadata is not an update's (Cinder's schema refuses it): the metadata sub-resource sets it.
  if (values.empty()) {
    return Fault(400,
                 "Invalid input for field/attribute snapshot: at least one of name or "
                 "description is required");
  }
  auto visible = Visible(store_, context, snapshot_id);
  if (!visible) {
    return visible.error();
  }
  values["updated_at"] = FormatTimestamp(clock_.WallNow());
  // The project as read, not the caller's: an admin updates any project's snapshot.
  auto updated = store_.ConditionalUpdate(ports::Table::kSnapshots,
                                          snapshot_id,
                                          values,
                                          {Expectation::Equals("project_id", visible->project_id),
                                           Expectation::Equals("deleted", std::int64_t{0})},
                                          {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, SnapshotNotFound(snapshot_id));
  }
  auto snapshot = SnapshotFromRow(**updated);
  if (!snapshot) {
    return FaultFromError(snapshot.error());
  }
  return JsonResponse(200, {{"snapshot", View(*snapshot, context, ViewKind::kDetail)}});
}

HttpResponse SnapshotsApi::Delete(const RequestContext& context, std::string_view snapshot_id) {
  return DeleteSnapshot(context, snapshot_id, /*force=*/false);
}

HttpResponse SnapshotsApi::DeleteSnapshot(const RequestContext& context,
                                          std::string_view snapshot_id,
                                          bool force,
                                          const std::optional<std::string>& group_snapshot_id) {
  auto snapshot = Visible(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  auto volume_row = store_.Get(ports::Table::kVolumes, snapshot->volume_id);
  if (!volume_row) {
    return FaultFromError(volume_row.error());
  }
  auto volume = VolumeFromRow(*volume_row);
  if (!volume) {
    return FaultFromError(volume.error());
  }
  const std::vector<ports::Value> deletable = {Status(SnapshotStatus::kAvailable),
                                               Status(SnapshotStatus::kError),
                                               Status(SnapshotStatus::kErrorDeleting)};
  const std::vector<ports::Value> deleting = {Status(SnapshotStatus::kDeletingQueued),
                                              Status(SnapshotStatus::kDeleting)};
  const std::string operation_id = NewUuid();
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto queued = store_.ConditionalUpdate(
      ports::Table::kSnapshots,
      snapshot->id,
      {{"status", Status(SnapshotStatus::kDeletingQueued)},
       {"operation_id", operation_id},
       {"status_reason", std::monostate{}},
       {"updated_at", now}},
      {Expectation::Equals("project_id", snapshot->project_id),
       Expectation::Equals("deleted", std::int64_t{0}),
       force ? Expectation::NotIn("status", deleting) : Expectation::In("status", deletable),
       // A member of a group snapshot goes only with its group snapshot, as in Cinder.
       group_snapshot_id ? Expectation::Equals("group_snapshot_id", *group_snapshot_id)
                         : Expectation::IsNull("group_snapshot_id")},
      // A volume still being created from this snapshot reads it.
      {ports::Guard::NoLiveRowReferences(ports::Table::kVolumes,
                                         "snapshot_id",
                                         {Expectation::In("status",
                                                          {Status(VolumeStatus::kCreatingQueued),
                                                           Status(VolumeStatus::kCreating)})})});
  if (!queued) {
    return FaultFromError(queued.error());
  }
  if (!queued->has_value()) {
    return Fault(400,
                 "Invalid snapshot: Snapshot " + snapshot->id +
                     " status must be available or error and it must not be part of a group "
                     "nor the source of a volume still being created.");
  }
  if (!volume->host) {
    return Fault(500, "the snapshot's volume has no back-end");
  }
  JobMessage job{
      domain::Operation::kDeleteSnapshot, snapshot->id, operation_id, snapshot->project_id};
  if (auto published =
          queue_.Publish(VolumeJobTopic(volume->cluster_name, *volume->host), job.ToJson());
      !published) {
    log::Error("snapshot.delete_not_queued",
               {{"snapshot_id", snapshot->id}, {"error", published.error().ToString()}});
    auto undone = store_.ConditionalUpdate(
        ports::Table::kSnapshots,
        snapshot->id,
        {{"status", Status(snapshot->status)},
         {"operation_id", TextOrNull(snapshot->operation_id)}},
        {Expectation::Equals("operation_id", operation_id),
         Expectation::Equals("status", Status(SnapshotStatus::kDeletingQueued))},
        {});
    undone.IgnoreError("the client is told to retry; the sweeper re-publishes otherwise");
    return FaultFromError(published.error());
  }
  log::Info("snapshot.delete_accepted",
            {{"snapshot_id", snapshot->id}, {"operation_id", operation_id}});
  return Accepted();
}

HttpResponse SnapshotsApi::Action(const RequestContext& context,
                                  const HttpRequest& request,
                                  std::string_view snapshot_id) {
  return Action(context, json::parse(request.body, nullptr, false), snapshot_id);
}

HttpResponse SnapshotsApi::Action(const RequestContext& context,
                                  const json& body,
                                  std::string_view snapshot_id) {
  if (body.is_discarded() || !body.is_object() || body.size() != 1) {
    return Fault(400, "Malformed request body");
  }
  const std::string action = body.begin().key();
  const json& argument = body.begin().value();
  if (action == "os-update_snapshot_status") {
    return UpdateStatus(context, argument, snapshot_id);
  }
  if (action != "os-reset_status" && action != "os-force_delete") {
    return Fault(400, "There is no such action: " + action);
  }
  // The route's rules (volume_extension:snapshot_admin_actions:*) decided who may.
  if (action == "os-force_delete") {
    return DeleteSnapshot(context, snapshot_id, /*force=*/true);
  }
  if (!argument.is_object() || !argument.contains("status") || !argument["status"].is_string()) {
    return Fault(400,
                 "Invalid input for field/attribute os-reset_status: 'status' is a required "
                 "property");
  }
  const std::string wanted = argument["status"].get<std::string>();
  // "creating" and "deleting" are stored as their at-rest by-admin variants: no job runs.
  std::optional<SnapshotStatus> status = domain::SnapshotStatusSetByAdmin(wanted);
  if (!status) {
    return Fault(400,
                 "Invalid input received: status '" + wanted +
                     "' cannot be set by os-reset_status; use one of available, error, "
                     "error_deleting, creating, deleting");
  }
  auto snapshot = Visible(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  auto updated = store_.ConditionalUpdate(ports::Table::kSnapshots,
                                          snapshot_id,
                                          {{"status", Status(*status)},
                                           {"status_reason", std::monostate{}},
                                           // A job still queued or under way for the old
                                           // operation no longer matches: it drops.
                                           {"operation_id", std::monostate{}},
                                           {"updated_at", FormatTimestamp(clock_.WallNow())}},
                                          {Expectation::Equals("deleted", std::int64_t{0}),
                                           Expectation::Equals("project_id", snapshot->project_id)},
                                          {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, SnapshotNotFound(snapshot_id));
  }
  log::Warn(
      "snapshot.status_reset",
      {{"snapshot_id", std::string(snapshot_id)}, {"status", wanted}, {"by", context.user_id}});
  return Accepted();
}

HttpResponse SnapshotsApi::UpdateStatus(const RequestContext& context,
                                        const json& argument,
                                        std::string_view snapshot_id) {
  const std::string field = "os-update_snapshot_status";
  if (!argument.is_object() || !argument.contains("status")) {
    return Fault(
        400, "Invalid input for field/attribute " + field + ". 'status' is a required property");
  }
  for (const auto& item : argument.items()) {
    if (item.key() != "status" && item.key() != "progress") {
      return Fault(400,
                   "Invalid input for field/attribute " + field +
                       ". Additional properties are not allowed ('" + item.key() +
                       "' was unexpected)");
    }
  }
  if (!argument["status"].is_string()) {
    return Fault(400,
                 "Invalid input for field/attribute status. Value: " + argument["status"].dump() +
                     ". is not of type 'string'");
  }
  const std::string wanted = argument["status"].get<std::string>();
  std::optional<std::string> progress;
  if (argument.contains("progress") && argument["progress"].is_string() &&
      !argument["progress"].get<std::string>().empty()) {
    const std::string text = argument["progress"].get<std::string>();
    const std::string digits = text.substr(0, text.size() - 1);
    const bool integer =
        !digits.empty() && digits.size() <= 3 &&
        std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!integer || text.back() != '%' || std::stoi(digits) > 100) {
      return Fault(400,
                   "Invalid input received: progress must be an integer percentage between 0 "
                   "and 100");
    }
    progress = text;
  }
  auto snapshot = Visible(store_, context, snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  // Cinder's allowed transitions, by the status the API shows: an out-of-band creator finishes
  // a creating snapshot (available, error, or still creating) or a deleting one (deleting,
  // error_deleting). Moving it to rest clears the operation id, so a job still queued or under
  // way for it no longer matches its row and drops (its final write is refused).
  const std::string current(domain::ApiName(snapshot->status));
  std::optional<SnapshotStatus> next;
  if (current == "creating" && (wanted == "available" || wanted == "error")) {
    next = wanted == "available" ? SnapshotStatus::kAvailable : SnapshotStatus::kError;
  } else if (current == "deleting" && wanted == "error_deleting") {
    next = SnapshotStatus::kErrorDeleting;
  } else if (current != "creating" && current != "deleting") {
    return Fault(400, "Snapshot status " + current + " not allowed for update_snapshot_status");
  } else if (wanted != current) {
    return Fault(400,
                 "Provided snapshot status " + wanted + " not allowed for snapshot with status " +
                     current + ".");
  }
  ports::Row values = {{"updated_at", FormatTimestamp(clock_.WallNow())}};
  if (next) {
    values["status"] = Status(*next);
    values["status_reason"] = std::monostate{};
    values["operation_id"] = std::monostate{};
  }
  if (progress) {
    values["progress"] = *progress;
  }
  auto updated = store_.ConditionalUpdate(ports::Table::kSnapshots,
                                          snapshot_id,
                                          values,
                                          {Expectation::Equals("deleted", std::int64_t{0}),
                                           Expectation::Equals("status", Status(snapshot->status)),
                                           Expectation::Equals("project_id", snapshot->project_id)},
                                          {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(409,
                 "Snapshot " + std::string(snapshot_id) +
                     " changed status while it was being updated; read it and retry.");
  }
  log::Info("snapshot.status_updated",
            {{"snapshot_id", std::string(snapshot_id)},
             {"status", wanted},
             {"progress", progress.value_or("")},
             {"by", context.user_id}});
  return Accepted();
}

}  // namespace clinker::services
