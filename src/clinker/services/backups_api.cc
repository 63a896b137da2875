#include "clinker/services/backups_api.h"

#include <algorithm>
#include <array>

#include "clinker/core/base64.h"
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

using domain::BackupStatus;
using domain::SnapshotStatus;
using domain::VolumeStatus;
using nlohmann::json;
using ports::Expectation;

// The backup_service of exported records. Tempest (and clients) expect Cinder's driver namespace;
// records of any other service are refused on import.
constexpr std::string_view kBackupService = "cinder.backup.drivers.clinker.ChunkedFileBackupStore";

std::string BackupNotFound(std::string_view id) {
  return "Backup " + std::string(id) + " could not be found.";
}

ports::Value BackupStatusValue(BackupStatus status) {
  return std::string(domain::StoredName(status));
}

std::optional<std::string> SortColumn(std::string_view key) {
  static const std::map<std::string_view, std::string_view> kColumns = {
      {"id", "id"},
      {"name", "display_name"},
      {"display_name", "display_name"},
      {"status", "status"},
      {"size", "size_gib"},
      {"created_at", "created_at"},
      {"updated_at", "updated_at"},
      {"volume_id", "volume_id"},
      {"project_id", "project_id"},
  };
  auto it = kColumns.find(key);
  if (it == kColumns.end()) {
    return std::nullopt;
  }
  return std::string(it->second);
}

json Links(const RequestContext& context, const std::string& id) {
  return json::array({
      {{"href", context.link_base + "/backups/" + id}, {"rel", "self"}},
      {{"href", context.bookmark_base + "/backups/" + id}, {"rel", "bookmark"}},
  });
}

// The backup row if the caller may see it (CanSee); the fault to answer otherwise, the same for a
// backup of another project as for one that does not exist.
tl::expected<ports::Row, HttpResponse> Visible(ports::StateStore& store,
                                               const RequestContext& context,
                                               std::string_view backup_id) {
  auto row = store.Get(ports::Table::kBackups, backup_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound
                              ? Fault(404, BackupNotFound(backup_id))
                              : FaultFromError(row.error()));
  }
  if (IntegerOr(*row, "deleted", 0) != 0 || !CanSee(context, TextOr(*row, "project_id", ""))) {
    return tl::unexpected(Fault(404, BackupNotFound(backup_id)));
  }
  return *row;
}

std::string StoredStatus(const ports::Row& row) {
  return TextOr(row, "status", "");
}

std::string ApiStatus(const ports::Row& row) {
  auto status = domain::ParseStoredBackupStatus(StoredStatus(row));
  return status ? std::string(domain::ApiName(*status)) : StoredStatus(row);
}

}  // namespace

BackupsApi::BackupsApi(ports::StateStore& store,
                       ports::JobQueue& queue,
                       const ports::Clock& clock,
                       BackupsApiOptions options)
    : store_(store),
      queue_(queue),
      clock_(clock),
      options_(std::move(options)),
      quotas_(store, options_.quota) {}

json BackupsApi::View(const ports::Row& row, const RequestContext& context, bool detail) {
  const std::string id = TextOr(row, "id", "");
  json view = {{"id", id},
               {"name", NullOr(OptionalText(row, "display_name"))},
               {"links", Links(context, id)}};
  if (!detail) {
    return view;
  }
  ports::ListQuery dependents;
  dependents.filters = {Expectation::Equals("parent_id", id)};
  dependents.limit = 1;
  auto children = store_.List(ports::Table::kBackups, dependents);
  view.update(json{
      {"description", NullOr(OptionalText(row, "display_description"))},
      {"status", ApiStatus(row)},
      {"size", IntegerOr(row, "size_gib", 0)},
      {"volume_id", TextOr(row, "volume_id", "")},
      {"snapshot_id", NullOr(OptionalText(row, "snapshot_id"))},
      {"container", NullOr(OptionalText(row, "container"))},
      {"availability_zone", TextOr(row, "availability_zone", options_.availability_zone)},
      {"created_at", TextOr(row, "created_at", "")},
      {"updated_at", NullOr(OptionalText(row, "updated_at"))},
      {"data_timestamp",
       NullOr(OptionalText(row, "data_timestamp").value_or(TextOr(row, "created_at", "")))},
      {"fail_reason", NullOr(OptionalText(row, "status_reason"))},
      {"has_dependent_backups", children && !children->empty()},
      {"is_incremental", OptionalText(row, "parent_id").has_value()},
      {"object_count", IntegerOr(row, "object_count", 0)},
  });
  if (context.version >= Microversion{3, 18}) {
    view["os-backup-project-attr:project_id"] = TextOr(row, "project_id", "");
  }
  if (context.version >= Microversion{3, 43}) {
    view["metadata"] = MetadataFromJson(TextOr(row, "metadata", "{}"));
  }
  return view;
}

HttpResponse BackupsApi::Create(const RequestContext& context, const HttpRequest& request) {
  std::vector<std::string_view> allowed = {
      "container", "description", "force", "incremental", "name", "snapshot_id", "volume_id"};
  if (context.version >= Microversion{3, 43}) {
    allowed.emplace_back("metadata");
  }
  if (context.version >= Microversion{3, 51}) {
    allowed.emplace_back("availability_zone");
  }
  auto body = ParseBody(request, "backup", allowed);
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  // Cinder's schema: volume_id a uuid, snapshot_id a uuid or null.
  for (auto [key, schema] : {std::pair{"volume_id", UuidField::kUuid},
                             std::pair{"snapshot_id", UuidField::kUuidOrNull}}) {
    if (auto checked = CheckUuidField(spec, key, schema); !checked) {
      return FaultFromError(checked.error());
    }
  }
  if (!spec.contains("volume_id") || !spec["volume_id"].is_string()) {
    return Fault(400,
                 "Invalid input for field/attribute backup: 'volume_id' is a required property");
  }
  for (const char* key : {"incremental", "force"}) {
    if (spec.contains(key) && !spec[key].is_null() && !spec[key].is_boolean()) {
      return Fault(400,
                   std::string("Invalid input for field/attribute ") + key +
                       ". Value: " + spec[key].dump() + " is not of type 'boolean'");
    }
  }
  if (spec.contains("snapshot_id") && !spec["snapshot_id"].is_null() &&
      !spec["snapshot_id"].is_string()) {
    return Fault(400,
                 "Invalid input for field/attribute snapshot_id. Value: " +
                     spec["snapshot_id"].dump() + " is not of type 'string', 'null'");
  }
  const bool incremental = spec.value("incremental", false);
  const bool force = spec.value("force", false);
  bool present = false;
  auto name = AliasedText(spec, "name", "display_name", &present);
  auto description = AliasedText(spec, "description", "display_description", &present);
  auto container = OptionalText(spec, "container", &present);
  if (!name || !description || !container) {
    return FaultFromError(!name ? name.error()
                                : (!description ? description.error() : container.error()));
  }
  std::map<std::string, std::string> metadata;
  if (spec.contains("metadata") && !spec["metadata"].is_null()) {
    auto parsed = ParseMetadata(spec["metadata"]);
    if (!parsed) {
      return FaultFromError(parsed.error());
    }
    metadata = *parsed;
  }
  const std::string volume_id = spec["volume_id"].get<std::string>();
  const std::string volume_not_found = "Volume " + volume_id + " could not be found.";
  auto volume_row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!volume_row) {
    return volume_row.error().code == ErrorCode::kNotFound ? Fault(404, volume_not_found)
                                                           : FaultFromError(volume_row.error());
  }
  auto volume = VolumeFromRow(*volume_row);
  if (!volume) {
    return FaultFromError(volume.error());
  }
  if (volume->deleted || !CanSee(context, volume->project_id)) {
    return Fault(404, volume_not_found);
  }
  // A backup of a snapshot reads the snapshot (the volume may be in any state meanwhile, as
  // Cinder): it must be the volume's and available.
  std::optional<Snapshot> snapshot;
  if (spec.contains("snapshot_id") && spec["snapshot_id"].is_string()) {
    const std::string snapshot_id = spec["snapshot_id"].get<std::string>();
    const std::string snapshot_not_found = "Snapshot " + snapshot_id + " could not be found.";
    auto snapshot_row = store_.Get(ports::Table::kSnapshots, snapshot_id);
    if (!snapshot_row) {
      return snapshot_row.error().code == ErrorCode::kNotFound
                 ? Fault(404, snapshot_not_found)
                 : FaultFromError(snapshot_row.error());
    }
    auto parsed = SnapshotFromRow(*snapshot_row);
    if (!parsed) {
      return FaultFromError(parsed.error());
    }
    if (parsed->deleted || !CanSee(context, parsed->project_id)) {
      return Fault(404, snapshot_not_found);
    }
    if (parsed->volume_id != volume_id) {
      return Fault(400,
                   "Invalid volume: Volume " + volume_id +
                       " does not match with snapshot.volume_id " + parsed->volume_id + ".");
    }
    if (parsed->status != SnapshotStatus::kAvailable) {
      return Fault(400,
                   "Invalid snapshot: Snapshot to be backed up must be available, but the "
                   "current status is \"" +
                       std::string(domain::ApiName(parsed->status)) + "\".");
    }
    snapshot = std::move(*parsed);
  }
  const std::string not_available =
      "Invalid volume: Volume to be backed up must be available or in-use, but the current "
      "status is \"" +
      std::string(domain::ApiName(volume->status)) + "\".";
  if (!snapshot && volume->status == VolumeStatus::kInUse && !force) {
    return Fault(400, "Invalid volume: Backing up an in-use volume must use the force flag.");
  }
  if (!volume->host || (!snapshot && volume->status != VolumeStatus::kAvailable &&
                        volume->status != VolumeStatus::kInUse)) {
    return Fault(400, not_available);
  }
  // The ticket counts this create against the back-end until it is written.
  Admission admitted = AdmitOnJobsBackend(options_.admission, volume->cluster_name, volume->host);
  if (!admitted) {
    return std::move(admitted.error());
  }
  std::optional<std::string> parent_id;
  if (incremental) {
    ports::ListQuery latest;
    // The parent is one of the caller's own backups of the volume (as Cinder): an admin's
    // incremental of another project's volume never chains onto that project's backups.
    latest.filters = {Expectation::Equals("volume_id", volume_id),
                      Expectation::Equals("project_id", context.project_id),
                      Expectation::Equals("status", BackupStatusValue(BackupStatus::kAvailable))};
    latest.sort = {ports::SortKey{"created_at", false}};
    if (!snapshot) {
      latest.limit = 1;
    }
    auto rows = store_.List(ports::Table::kBackups, latest);
    if (!rows) {
      return FaultFromError(rows.error());
    }
    if (rows->empty()) {
      return Fault(400, "Invalid backup: No backups available to do an incremental backup.");
    }
    // Of a snapshot, the parent is the latest backup whose data is older than the snapshot (as
    // Cinder: a backup taken after the snapshot holds newer data), else the latest.
    const ports::Row* parent = &rows->front();
    if (snapshot) {
      auto data_time = [](const ports::Row& backup) {
        return OptionalText(backup, "data_timestamp").value_or(TextOr(backup, "created_at", ""));
      };
      auto older = std::find_if(rows->begin(), rows->end(), [&](const ports::Row& backup) {
        return data_time(backup) < snapshot->created_at;
      });
      if (older != rows->end()) {
        parent = &*older;
      }
    }
    if (IntegerOr(*parent, "size_gib", 0) != volume->size_gib) {
      return Fault(400,
                   "Invalid backup: the volume's size changed since its last backup; make a "
                   "full backup.");
    }
    parent_id = TextOr(*parent, "id", "");
  }

  const std::string id = NewUuid();
  const std::string operation_id = NewUuid();
  const std::string now = FormatTimestamp(clock_.WallNow());
  // The caller's project, also when an admin backs up another project's volume (as Cinder).
  ports::Row row = {{"id", id},
                    {"project_id", context.project_id},
                    {"user_id", context.user_id},
                    {"volume_id", volume_id},
                    {"status", BackupStatusValue(BackupStatus::kCreatingQueued)},
                    {"size_gib", volume->size_gib},
                    {"display_name", TextOrNull(*name)},
                    {"display_description", TextOrNull(*description)},
                    {"container", TextOrNull(*container)},
                    {"availability_zone", options_.availability_zone},
                    {"parent_id", TextOrNull(parent_id)},
                    {"metadata", MetadataToJson(metadata)},
                    // Kept with the backup, as Cinder does, so a restore gives it back.
                    {"volume_metadata", MetadataToJson(volume->metadata)},
                    {"host", TextOrNull(volume->host)},
                    {"cluster_name", TextOrNull(volume->cluster_name)},
                    {"operation_id", operation_id},
                    {"created_at", now}};
  if (snapshot) {
    // The data is the volume's as it was when the snapshot was taken.
    row["snapshot_id"] = snapshot->id;
    row["data_timestamp"] = snapshot->created_at;
  }
  // Quotas: the backup counts from the write that inserts it (services/quotas.h).
  const UsageAmounts usage = QuotaService::UsageOfBackup(volume->size_gib);
  auto charge = quotas_.Charge(context.project_id, usage);
  if (!charge) {
    return FaultFromError(charge.error());
  }
  if (auto inserted = store_.InsertWithUsage(ports::Table::kBackups, row, *charge); !inserted) {
    return QuotaFault(inserted.error());
  }
  auto withdraw = [&] {
    auto withdrawn = store_.ConditionalUpdateWithUsage(
        ports::Table::kBackups,
        id,
        {{"status", BackupStatusValue(BackupStatus::kDeleted)},
         {"deleted", std::int64_t{1}},
         {"deleted_at", now}},
        {Expectation::Equals("status", BackupStatusValue(BackupStatus::kCreatingQueued)),
         Expectation::Equals("deleted", std::int64_t{0})},
        {},
        QuotaService::Release(context.project_id, usage));
    withdrawn.IgnoreError("the client is told why; a leftover row shows as creating");
  };
  // The volume (or the snapshot) is read by the backup from now on: a delete that won the race
  // shows here, a later one finds it backing-up and is refused.
  const std::string snapshot_not_available =
      "Invalid snapshot: Snapshot to be backed up must be available, but the current status is "
      "not.";
  auto marked =
      snapshot ? store_.ConditionalUpdate(
                     ports::Table::kSnapshots,
                     snapshot->id,
                     {{"status", std::string(domain::StoredName(SnapshotStatus::kBackingUp))},
                      {"updated_at", now}},
                     {Expectation::Equals("deleted", std::int64_t{0}),
                      Expectation::Equals(
                          "status", std::string(domain::StoredName(SnapshotStatus::kAvailable)))},
                     {})
               : store_.ConditionalUpdate(ports::Table::kVolumes,
                                          volume_id,
                                          {{"status", Status(VolumeStatus::kBackingUp)},
                                           {"operation_id", NewUuid()},
                                           {"updated_at", now}},
                                          {Expectation::Equals("deleted", std::int64_t{0}),
                                           Expectation::Equals("status", Status(volume->status))},
                                          {});
  if (!marked || !marked->has_value()) {
    withdraw();
    return marked ? Fault(400, snapshot ? snapshot_not_available : not_available)
                  : FaultFromError(marked.error());
  }
  JobMessage job{domain::Operation::kCreateBackup, id, operation_id, context.project_id};
  if (auto published =
          queue_.Publish(VolumeJobTopic(volume->cluster_name, *volume->host), job.ToJson());
      !published) {
    log::Error("backup.create_not_queued",
               {{"backup_id", id}, {"error", published.error().ToString()}});
    withdraw();
    auto back =
        snapshot ? store_.ConditionalUpdate(
                       ports::Table::kSnapshots,
                       snapshot->id,
                       {{"status", std::string(domain::StoredName(SnapshotStatus::kAvailable))}},
                       {Expectation::Equals(
                           "status", std::string(domain::StoredName(SnapshotStatus::kBackingUp)))},
                       {})
                 : store_.ConditionalUpdate(
                       ports::Table::kVolumes,
                       volume_id,
                       {{"status", Status(volume->status)}},
                       {Expectation::Equals("status", Status(VolumeStatus::kBackingUp))},
                       {});
    back.IgnoreError("the client is told to retry; an admin reset fixes a volume left backing-up");
    return FaultFromError(published.error());
  }
  log::Info("backup.create_accepted",
            {{"backup_id", id},
             {"volume_id", volume_id},
             {"incremental", incremental},
             {"operation_id", operation_id}});
  return JsonResponse(
      202, {{"backup", {{"id", id}, {"name", NullOr(*name)}, {"links", Links(context, id)}}}});
}

HttpResponse BackupsApi::Show(const RequestContext& context, std::string_view backup_id) {
  auto row = Visible(store_, context, backup_id);
  if (!row) {
    return row.error();
  }
  return JsonResponse(200, {{"backup", View(*row, context, true)}});
}

HttpResponse BackupsApi::List(const RequestContext& context,
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
    std::vector<ports::Value> stored;
    for (BackupStatus status : domain::BackupStatusesShownAs(value)) {
      stored.push_back(BackupStatusValue(status));
    }
    query.filters.push_back(Expectation::In("status", stored));
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
  std::string marker;
  if (request.QueryValue("marker", &marker)) {
    query.marker_id = marker;
  }
  query.limit = limit;
  auto rows = store_.List(ports::Table::kBackups, query);
  if (!rows) {
    if (rows.error().code == ErrorCode::kNotFound) {
      return Fault(404, "Marker " + marker + " could not be found.");
    }
    return FaultFromError(rows.error());
  }
  json items = json::array();
  for (const ports::Row& row : *rows) {
    items.push_back(View(row, context, detail));
  }
  json body = {{"backups", items}};
  if (!rows->empty() && static_cast<std::int64_t>(rows->size()) == limit) {
    body["backups_links"] = json::array({{{"rel", "next"},
                                          {"href",
                                           NextLink(context,
                                                    request,
                                                    detail ? "backups/detail" : "backups",
                                                    TextOr(rows->back(), "id", ""))}}});
  }
  return JsonResponse(200, body);
}

HttpResponse BackupsApi::Update(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view backup_id) {
  if (context.version < Microversion{3, 9}) {
    return Fault(405, "The method is not allowed for this resource.");
  }
  auto body = ParseBody(request,
                        "backup",
                        context.version >= Microversion{3, 43}
                            ? std::vector<std::string_view>{"description", "metadata", "name"}
                            : std::vector<std::string_view>{"description", "name"});
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
  if (body->contains("metadata") && context.version >= Microversion{3, 43}) {
    auto metadata = ParseMetadata((*body)["metadata"]);
    if (!metadata) {
      return FaultFromError(metadata.error());
    }
    values["metadata"] = MetadataToJson(*metadata);
  }
  if (values.empty()) {
    return Fault(400,
                 "Invalid input for field/attribute backup: at least one of name, "
                 "description or metadata is required");
  }
  auto visible = Visible(store_, context, backup_id);
  if (!visible) {
    return visible.error();
  }
  values["updated_at"] = FormatTimestamp(clock_.WallNow());
  // The project as read, not the caller's: an admin updates any project's backup.
  auto updated = store_.ConditionalUpdate(
      ports::Table::kBackups,
      backup_id,
      values,
      {Expectation::Equals("project_id", TextOr(*visible, "project_id", "")),
       Expectation::Equals("deleted", std::int64_t{0})},
      {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, BackupNotFound(backup_id));
  }
  // Cinder answers an update with the summary view (id, name, links), not the detail.
  return JsonResponse(200, {{"backup", View(**updated, context, /*detail=*/false)}});
}

HttpResponse BackupsApi::Delete(const RequestContext& context, std::string_view backup_id) {
  return DeleteBackup(context, backup_id, /*force=*/false);
}

HttpResponse BackupsApi::DeleteBackup(const RequestContext& context,
                                      std::string_view backup_id,
                                      bool force) {
  auto row = Visible(store_, context, backup_id);
  if (!row) {
    return row.error();
  }
  // The project as read (an admin deletes any project's backup).
  const std::string project_id = TextOr(*row, "project_id", "");
  const std::string operation_id = NewUuid();
  const std::string now = FormatTimestamp(clock_.WallNow());
  std::vector<ports::Value> from = {BackupStatusValue(BackupStatus::kAvailable),
                                    BackupStatusValue(BackupStatus::kError),
                                    BackupStatusValue(BackupStatus::kErrorDeleting)};
  if (force) {
    from.push_back(BackupStatusValue(BackupStatus::kCreatingQueued));
    from.push_back(BackupStatusValue(BackupStatus::kCreating));
  }
  auto queued = store_.ConditionalUpdate(
      ports::Table::kBackups,
      backup_id,
      {{"status", BackupStatusValue(BackupStatus::kDeletingQueued)},
       {"operation_id", operation_id},
       {"status_reason", std::monostate{}},
       {"updated_at", now}},
      {Expectation::Equals("project_id", project_id),
       Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::In("status", from)},
      {ports::Guard::NoLiveRowReferences(ports::Table::kBackups, "parent_id")});
  if (!queued) {
    return FaultFromError(queued.error());
  }
  if (!queued->has_value()) {
    ports::ListQuery children;
    children.filters = {Expectation::Equals("parent_id", std::string(backup_id))};
    children.limit = 1;
    if (auto rows = store_.List(ports::Table::kBackups, children); rows && !rows->empty()) {
      return Fault(400, "Invalid backup: Incremental backups exist for this backup.");
    }
    return Fault(400,
                 "Invalid backup: Backup status must be available or error, but it is " +
                     ApiStatus(*row) + ".");
  }
  const std::optional<std::string> host = OptionalText(*row, "host");
  if (!host) {
    return Fault(500, "the backup names no back-end");
  }
  JobMessage job{
      domain::Operation::kDeleteBackup, std::string(backup_id), operation_id, project_id};
  if (auto published =
          queue_.Publish(VolumeJobTopic(OptionalText(*row, "cluster_name"), *host), job.ToJson());
      !published) {
    auto undone = store_.ConditionalUpdate(ports::Table::kBackups,
                                           backup_id,
                                           {{"status", StoredStatus(*row)}},
                                           {Expectation::Equals("operation_id", operation_id)},
                                           {});
    undone.IgnoreError("the client is told to retry; the sweeper re-publishes otherwise");
    return FaultFromError(published.error());
  }
  log::Info("backup.delete_accepted",
            {{"backup_id", std::string(backup_id)}, {"operation_id", operation_id}});
  return Accepted();
}

HttpResponse BackupsApi::Restore(const RequestContext& context,
                                 const HttpRequest& request,
                                 std::string_view backup_id) {
  auto body = ParseBody(request, "restore", {"name", "volume_id"});
  if (!body) {
    return FaultFromError(body.error());
  }
  auto backup = Visible(store_, context, backup_id);
  if (!backup) {
    return backup.error();
  }
  if (StoredStatus(*backup) != StoredName(BackupStatus::kAvailable)) {
    return Fault(400, "Invalid backup: Backup status must be available");
  }
  // Admitted on the backup's back-end, before the first write (that of the backup): the volume
  // restored to, when it is an existing one, is read only after it.
  Admission admitted = AdmitOnJobsBackend(
      options_.admission, OptionalText(*backup, "cluster_name"), OptionalText(*backup, "host"));
  if (!admitted) {
    return std::move(admitted.error());
  }
  const std::int64_t size_gib = IntegerOr(*backup, "size_gib", 0);
  // The backed-up volume's metadata goes on the volume restored to (Cinder's restore merges it
  // into the volume's own).
  const std::map<std::string, std::string> backed_up_metadata =
      MetadataFromJson(TextOr(*backup, "volume_metadata", "{}"));
  bool present = false;
  auto name = OptionalText(*body, "name", &present);
  if (!name) {
    return FaultFromError(name.error());
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  const std::string operation_id = NewUuid();
  // The backup first: a restore reads it, and a delete of it must wait.
  auto reading = store_.ConditionalUpdate(
      ports::Table::kBackups,
      backup_id,
      {{"status", BackupStatusValue(BackupStatus::kRestoring)}, {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::Equals("status", BackupStatusValue(BackupStatus::kAvailable))},
      {});
  if (!reading || !reading->has_value()) {
    return reading ? Fault(400, "Invalid backup: Backup status must be available")
                   : FaultFromError(reading.error());
  }
  auto release_backup = [&] {
    auto back = store_.ConditionalUpdate(
        ports::Table::kBackups,
        backup_id,
        {{"status", BackupStatusValue(BackupStatus::kAvailable)},
         {"restore_volume_id", std::monostate{}}},
        {Expectation::Equals("status", BackupStatusValue(BackupStatus::kRestoring))},
        {});
    back.IgnoreError("an admin reset puts a backup left restoring back");
  };

  std::string volume_id;
  std::string volume_project_id;
  std::optional<std::string> volume_name;
  std::optional<std::string> host;
  std::optional<std::string> cluster_name;
  const bool to_existing = body->contains("volume_id") && !(*body)["volume_id"].is_null();
  // What a volume made by this restore counted, released if the restore is taken back.
  std::vector<ports::UsageChange> new_volume_release;
  if (to_existing) {
    if (!(*body)["volume_id"].is_string()) {
      release_backup();
      return Fault(400, "Invalid input for field/attribute volume_id: not a string");
    }
    volume_id = (*body)["volume_id"].get<std::string>();
    auto row = store_.Get(ports::Table::kVolumes, volume_id);
    auto volume = row ? VolumeFromRow(*row) : tl::unexpected(row.error());
    if (!volume || volume->deleted || !CanSee(context, volume->project_id)) {
      release_backup();
      return Fault(404, "Volume " + volume_id + " could not be found.");
    }
    if (volume->size_gib < size_gib) {
      release_backup();
      return Fault(400,
                   "Invalid volume: volume size " + std::to_string(volume->size_gib) +
                       " is too small to restore backup of size " + std::to_string(size_gib) + ".");
    }
    std::map<std::string, std::string> merged = backed_up_metadata;
    merged.merge(std::map<std::string, std::string>(volume->metadata));  // The backup's win.
    // The metadata as read is expected too: a metadata change that raced this restore is not
    // overwritten (the client retries as for a status change).
    auto queued =
        store_.ConditionalUpdate(ports::Table::kVolumes,
                                 volume_id,
                                 {{"status", Status(VolumeStatus::kRestoringQueued)},
                                  {"operation_id", operation_id},
                                  {"backup_id", std::string(backup_id)},
                                  {"metadata", MetadataToJson(merged)},
                                  {"status_reason", std::monostate{}},
                                  {"updated_at", now}},
                                 {Expectation::Equals("deleted", std::int64_t{0}),
                                  Expectation::Equals("status", Status(VolumeStatus::kAvailable)),
                                  Expectation::Equals("metadata", TextOr(*row, "metadata", "{}"))},
                                 {});
    if (!queued || !queued->has_value()) {
      release_backup();
      return queued ? Fault(400,
                            "Invalid volume: Volume to be restored to must be available, but "
                            "the current status is \"" +
                                std::string(domain::ApiName(volume->status)) + "\".")
                    : FaultFromError(queued.error());
    }
    volume_project_id = volume->project_id;
    volume_name = volume->name;
    host = volume->host;
    cluster_name = volume->cluster_name;
  } else {
    // A new volume on the back-end the backup was made from, in the caller's project (also when
    // an admin restores another project's backup, as Cinder).
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = context.project_id;
    volume.user_id = context.user_id;
    volume.status = VolumeStatus::kRestoringQueued;
    volume.size_gib = size_gib;
    volume.name = name->value_or("restore_backup_" + std::string(backup_id));
    volume.description = "auto-created to restore backup " + std::string(backup_id);
    volume.metadata = backed_up_metadata;
    volume.availability_zone = options_.availability_zone;
    volume.host = OptionalText(*backup, "host");
    volume.cluster_name = OptionalText(*backup, "cluster_name");
    volume.operation_id = operation_id;
    volume.created_at = now;
    ports::Row row = VolumeToRow(volume);
    row["backup_id"] = std::string(backup_id);
    // Quotas: the new volume counts from the write that inserts it.
    auto usage = quotas_.UsageOfVolume(volume.size_gib, std::nullopt);
    if (!usage) {
      release_backup();
      return FaultFromError(usage.error());
    }
    auto charge = quotas_.Charge(volume.project_id, *usage);
    if (!charge) {
      release_backup();
      return FaultFromError(charge.error());
    }
    if (auto inserted = store_.InsertWithUsage(ports::Table::kVolumes, row, *charge); !inserted) {
      release_backup();
      return QuotaFault(inserted.error());
    }
    new_volume_release = QuotaService::Release(volume.project_id, *usage);
    volume_id = volume.id;
    volume_project_id = volume.project_id;
    volume_name = volume.name;
    host = volume.host;
    cluster_name = volume.cluster_name;
  }
  auto marked = store_.ConditionalUpdate(
      ports::Table::kBackups, backup_id, {{"restore_volume_id", volume_id}}, {}, {});
  marked.IgnoreError("restore_volume_id only lets the node put the backup back");
  if (!host) {
    release_backup();
    return Fault(500, "the backup names no back-end");
  }
  JobMessage job{domain::Operation::kRestoreBackup, volume_id, operation_id, volume_project_id};
  if (auto published = queue_.Publish(VolumeJobTopic(cluster_name, *host), job.ToJson());
      !published) {
    log::Error("backup.restore_not_queued",
               {{"backup_id", std::string(backup_id)}, {"error", published.error().ToString()}});
    release_backup();
    auto undone = store_.ConditionalUpdateWithUsage(
        ports::Table::kVolumes,
        volume_id,
        to_existing ? ports::Row{{"status", Status(VolumeStatus::kAvailable)},
                                 {"backup_id", std::monostate{}}}
                    : ports::Row{{"status", Status(VolumeStatus::kDeleted)},
                                 {"deleted", std::int64_t{1}},
                                 {"deleted_at", now}},
        {Expectation::Equals("operation_id", operation_id),
         Expectation::Equals("deleted", std::int64_t{0})},
        {},
        new_volume_release);
    undone.IgnoreError("the client is told to retry; the sweeper re-publishes otherwise");
    return FaultFromError(published.error());
  }
  log::Info("backup.restore_accepted",
            {{"backup_id", std::string(backup_id)},
             {"volume_id", volume_id},
             {"operation_id", operation_id}});
  return JsonResponse(202,
                      {{"restore",
                        {{"backup_id", std::string(backup_id)},
                         {"volume_id", volume_id},
                         {"volume_name", NullOr(volume_name)}}}});
}

HttpResponse BackupsApi::ExportRecord(const RequestContext& context, std::string_view backup_id) {
  auto backup = Visible(store_, context, backup_id);
  if (!backup) {
    return backup.error();
  }
  if (StoredStatus(*backup) != StoredName(BackupStatus::kAvailable)) {
    return Fault(
        400, "Invalid backup: Backup status must be available and not " + ApiStatus(*backup) + ".");
  }
  const ports::Row& row = *backup;
  auto text = [&](const char* column) {
    return NullOr(OptionalText(row, column));
  };
  // Cinder's field names where Cinder has the field; service_metadata says where the data is.
  json record = {
      {"id", TextOr(row, "id", "")},
      {"size", IntegerOr(row, "size_gib", 0)},
      {"volume_id", TextOr(row, "volume_id", "")},
      {"display_name", text("display_name")},
      {"display_description", text("display_description")},
      {"container", text("container")},
      {"availability_zone", TextOr(row, "availability_zone", options_.availability_zone)},
      {"parent_id", text("parent_id")},
      {"object_count", IntegerOr(row, "object_count", 0)},
      {"stored_bytes", IntegerOr(row, "stored_bytes", 0)},
      {"metadata", MetadataFromJson(TextOr(row, "metadata", "{}"))},
      {"volume_metadata", MetadataFromJson(TextOr(row, "volume_metadata", "{}"))},
      {"host", text("host")},
      {"cluster_name", text("cluster_name")},
      {"data_timestamp", text("data_timestamp")},
      {"created_at", TextOr(row, "created_at", "")},
      {"service", std::string(kBackupService)},
      {"service_metadata", OptionalText(row, "service_metadata").value_or(TextOr(row, "id", ""))},
  };
  return JsonResponse(200,
                      {{"backup-record",
                        {{"backup_service", std::string(kBackupService)},
                         {"backup_url", Base64Encode(record.dump())}}}});
}

HttpResponse BackupsApi::ImportRecord(const RequestContext& context, const HttpRequest& request) {
  auto body = ParseBody(request, "backup-record", {"backup_service", "backup_url"});
  if (!body) {
    return FaultFromError(body.error());
  }
  for (const char* key : {"backup_service", "backup_url"}) {
    if (!body->contains(key) || !(*body)[key].is_string()) {
      return Fault(400,
                   std::string("Invalid input for field/attribute backup-record: '") + key +
                       "' is a required property");
    }
  }
  const std::string service = (*body)["backup_service"].get<std::string>();
  if (service != kBackupService) {
    return Fault(400, "Invalid backup: backup service " + service + " is not supported.");
  }
  auto decoded = Base64Decode((*body)["backup_url"].get<std::string>());
  json record = decoded ? json::parse(*decoded, nullptr, false) : json();
  if (!record.is_object()) {
    return Fault(400, "Invalid input received: the backup_url is not an exported backup record");
  }
  if (!record.contains("id") || !record["id"].is_string() ||
      !IsUuid(record["id"].get<std::string>())) {
    return Fault(400, "Invalid input received: Provided backup record is missing an id");
  }
  if (!record.contains("size") || !record["size"].is_number_integer() ||
      record["size"].get<std::int64_t>() < 0) {
    return Fault(400, "Invalid input received: Provided backup record is missing size attribute");
  }
  auto text = [&](const char* key) -> std::optional<std::string> {
    auto it = record.find(key);
    return it != record.end() && it->is_string() ? std::optional(it->get<std::string>())
                                                 : std::nullopt;
  };
  auto integer = [&](const char* key) -> std::int64_t {
    auto it = record.find(key);
    return it != record.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
  };
  auto metadata = [&](const char* key) -> Result<std::map<std::string, std::string>> {
    auto it = record.find(key);
    if (it == record.end() || it->is_null()) {
      return std::map<std::string, std::string>{};
    }
    return ParseMetadata(*it);
  };
  const std::string id = record["id"].get<std::string>();
  const std::int64_t size_gib = record["size"].get<std::int64_t>();
  const std::optional<std::string> host = text("host");
  if (!host) {
    return Fault(400, "Invalid input received: Provided backup record names no host");
  }
  auto backup_metadata = metadata("metadata");
  auto volume_metadata = metadata("volume_metadata");
  if (!backup_metadata || !volume_metadata) {
    return FaultFromError(!backup_metadata ? backup_metadata.error() : volume_metadata.error());
  }
  const std::string already = "Invalid backup: Backup already exists in database.";
  if (auto existing = store_.Get(ports::Table::kBackups, id); existing) {
    return Fault(400, already);
  } else if (existing.error().code != ErrorCode::kNotFound) {
    return FaultFromError(existing.error());
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  // The data stays where the record says (the exported backup's own id unless it was itself
  // imported); nothing is copied, so the backup is available at once.
  ports::Row row = {
      {"id", id},
      {"project_id", context.project_id},
      {"user_id", context.user_id},
      {"volume_id", text("volume_id").value_or("00000000-0000-0000-0000-000000000000")},
      {"status", BackupStatusValue(BackupStatus::kAvailable)},
      {"size_gib", size_gib},
      {"display_name", TextOrNull(text("display_name"))},
      {"display_description", TextOrNull(text("display_description"))},
      {"container", TextOrNull(text("container"))},
      {"availability_zone", text("availability_zone").value_or(options_.availability_zone)},
      {"parent_id", TextOrNull(text("parent_id"))},
      {"object_count", integer("object_count")},
      {"stored_bytes", integer("stored_bytes")},
      {"metadata", MetadataToJson(*backup_metadata)},
      {"volume_metadata", MetadataToJson(*volume_metadata)},
      {"host", *host},
      {"cluster_name", TextOrNull(text("cluster_name"))},
      {"data_timestamp", TextOrNull(text("data_timestamp"))},
      {"service_metadata", text("service_metadata").value_or(id)},
      {"created_at", now}};
  // Quotas: as a create, the backup counts from the write that inserts it.
  auto charge = quotas_.Charge(context.project_id, QuotaService::UsageOfBackup(size_gib));
  if (!charge) {
    return FaultFromError(charge.error());
  }
  if (auto inserted = store_.InsertWithUsage(ports::Table::kBackups, row, *charge); !inserted) {
    if (inserted.error().code == ErrorCode::kConflict) {
      return Fault(400, already);  // Inserted meanwhile by a concurrent import.
    }
    return QuotaFault(inserted.error());
  }
  log::Info("backup.imported",
            {{"backup_id", id}, {"data_key", std::get<std::string>(row["service_metadata"])}});
  return JsonResponse(201, {{"backup", View(row, context, /*detail=*/false)}});
}

HttpResponse BackupsApi::Action(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view backup_id) {
  return Action(context, json::parse(request.body, nullptr, false), backup_id);
}

HttpResponse BackupsApi::Action(const RequestContext& context,
                                const json& body,
                                std::string_view backup_id) {
  if (body.is_discarded() || !body.is_object() || body.size() != 1) {
    return Fault(400, "Malformed request body");
  }
  const std::string action = body.begin().key();
  if (action != "os-reset_status" && action != "os-force_delete") {
    return Fault(400, "There is no such action: " + action);
  }
  // The route's rules (volume_extension:backup_admin_actions:*) decided who may.
  if (action == "os-force_delete") {
    return DeleteBackup(context, backup_id, /*force=*/true);
  }
  const json& argument = body.begin().value();
  if (!argument.is_object() || !argument.contains("status") || !argument["status"].is_string()) {
    return Fault(400,
                 "Invalid input for field/attribute os-reset_status: 'status' is a required "
                 "property");
  }
  const std::string wanted = argument["status"].get<std::string>();
  if (wanted != "available" && wanted != "error") {
    return Fault(400,
                 "Invalid input received: status '" + wanted +
                     "' cannot be set by os-reset_status; use available or error");
  }
  auto backup = Visible(store_, context, backup_id);
  if (!backup) {
    return backup.error();
  }
  auto updated = store_.ConditionalUpdate(
      ports::Table::kBackups,
      backup_id,
      {{"status", wanted},
       {"status_reason", std::monostate{}},
       {"restore_volume_id", std::monostate{}},
       {"updated_at", FormatTimestamp(clock_.WallNow())}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::Equals("project_id", TextOr(*backup, "project_id", ""))},
      {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, BackupNotFound(backup_id));
  }
  return Accepted();
}

}  // namespace clinker::services
