#include "clinker/services/groups_api.h"

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <utility>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/policy.h"
#include "clinker/domain/status.h"
#include "clinker/services/group_completion.h"
#include "clinker/services/group_types_api.h"
#include "clinker/services/quotas_api.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/volume_record.h"
#include "clinker/services/volume_type_record.h"

namespace clinker::services {
namespace {

using domain::VolumeStatus;
using nlohmann::json;
using ports::Expectation;
using ports::Guard;

std::string GroupNotFound(std::string_view id) {
  return "Group " + std::string(id) + " could not be found.";
}

std::string GroupSnapshotNotFound(std::string_view id) {
  return "GroupSnapshot " + std::string(id) + " could not be found.";
}

// Cinder's GroupStatus and GroupSnapshotStatus values an admin may set (reset_status).
constexpr std::array<std::string_view, 7> kGroupStatuses = {
    "error", "available", "creating", "deleting", "error_deleting", "updating", "in-use"};
constexpr std::array<std::string_view, 6> kGroupSnapshotStatuses = {
    "error", "available", "creating", "deleting", "error_deleting", "updating"};

std::optional<std::string> SortColumn(std::string_view key) {
  static const std::map<std::string_view, std::string_view> kColumns = {
      {"id", "id"},
      {"name", "name"},
      {"description", "description"},
      {"status", "status"},
      {"created_at", "created_at"},
      {"updated_at", "updated_at"},
      {"availability_zone", "availability_zone"},
      {"group_type_id", "group_type_id"},
      {"group_id", "group_id"},
      {"project_id", "project_id"},
      {"user_id", "user_id"},
  };
  auto it = kColumns.find(key);
  if (it == kColumns.end()) {
    return std::nullopt;
  }
  return std::string(it->second);
}

// A caller-side copy that may act on members of any project: a group's owner (or an admin)
// deletes its members whoever made them, as Cinder's group API reads them elevated.
RequestContext Elevated(const RequestContext& context) {
  RequestContext elevated = context;
  elevated.is_admin = true;
  return elevated;
}

std::string_view InvalidFieldType(const json& value) {
  return value.is_string() ? "string" : "value";
}

Result<std::optional<std::string>> TrimmedText(const json& spec, std::string_view key) {
  bool present = false;
  auto text = OptionalText(spec, key, &present);
  if (!text || !*text) {
    return text;
  }
  std::string value = **text;
  auto first = value.find_first_not_of(" \t\r\n");
  auto last = value.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? std::string() : value.substr(first, last - first + 1);
}

// `limit`, `offset` and `marker` applied to rows already sorted and filtered; the marker must
// be one of them (404 otherwise).
struct Page {
  std::size_t start = 0;
  std::int64_t limit = 0;
};

tl::expected<Page, HttpResponse> PageOf(const HttpRequest& request,
                                        const std::vector<ports::Row>& rows,
                                        std::int64_t max_limit) {
  Page page;
  page.limit = max_limit;
  std::string value;
  if (request.QueryValue("marker", &value)) {
    auto found = std::find_if(rows.begin(), rows.end(), [&](const ports::Row& row) {
      return TextOr(row, "id", "") == value;
    });
    if (found == rows.end()) {
      return tl::unexpected(Fault(404, "Marker " + value + " could not be found."));
    }
    page.start = static_cast<std::size_t>(found - rows.begin()) + 1;
  }
  if (request.QueryValue("offset", &value)) {
    auto offset = ParseNonNegative("offset", value);
    if (!offset) {
      return tl::unexpected(FaultFromError(offset.error()));
    }
    page.start += static_cast<std::size_t>(*offset);
  }
  if (request.QueryValue("limit", &value)) {
    auto limit = ParseNonNegative("limit", value);
    if (!limit) {
      return tl::unexpected(FaultFromError(limit.error()));
    }
    page.limit = std::min(*limit, max_limit);
  }
  return page;
}

// The rows of `table` a list shows: the caller's project (any project for an admin asking with
// all_tenants), filtered by the other query parameters as Cinder's DB layer does: a parameter
// naming a column of `filterable` filters on it (a status filter also takes the statuses shown
// as it), any other makes the list empty.
Result<std::vector<ports::Row>> ListRows(ports::StateStore& store,
                                         ports::Table table,
                                         const RequestContext& context,
                                         const HttpRequest& request,
                                         std::initializer_list<std::string_view> filterable,
                                         std::vector<ports::SortKey> sort) {
  static const std::set<std::string, std::less<>> kNotFilters = {
      "all_tenants", "limit", "marker", "offset", "sort", "sort_key", "sort_dir", "list_volume"};
  ports::ListQuery query;
  query.sort = std::move(sort);
  std::string value;
  const bool all_tenants =
      context.is_admin && request.QueryValue("all_tenants", &value) && TruthyParameter(value);
  if (!all_tenants) {
    query.filters.push_back(Expectation::Equals("project_id", context.project_id));
  }
  for (const auto& [key, text] : request.query) {
    if (kNotFilters.contains(key)) {
      continue;
    }
    if (std::find(filterable.begin(), filterable.end(), key) == filterable.end()) {
      return std::vector<ports::Row>{};
    }
    if (key == "status" && (text == kGroupCreating || text == kGroupDeleting)) {
      query.filters.push_back(Expectation::In(
          "status",
          {Text(text),
           Text(text == kGroupCreating ? kGroupCreatingQueued : kGroupDeletingQueued)}));
    } else {
      query.filters.push_back(Expectation::Equals(key, text));
    }
  }
  return store.List(table, query);
}

}  // namespace

std::string_view ShownGroupStatus(std::string_view stored) {
  if (stored == kGroupCreatingQueued) {
    return kGroupCreating;
  }
  return stored == kGroupDeletingQueued ? kGroupDeleting : stored;
}

Result<Group> GroupFromRow(const ports::Row& row) {
  Group group;
  group.id = TextOr(row, "id", "");
  group.project_id = TextOr(row, "project_id", "");
  group.user_id = TextOr(row, "user_id", "");
  group.status = TextOr(row, "status", "");
  group.name = OptionalText(row, "name");
  group.description = OptionalText(row, "description");
  group.availability_zone = TextOr(row, "availability_zone", "nova");
  group.group_type_id = TextOr(row, "group_type_id", "");
  json types = json::parse(TextOr(row, "volume_type_ids", "[]"), nullptr, false);
  if (types.is_array()) {
    for (const json& id : types) {
      if (id.is_string()) {
        group.volume_type_ids.push_back(id.get<std::string>());
      }
    }
  }
  group.group_snapshot_id = OptionalText(row, "group_snapshot_id");
  group.source_group_id = OptionalText(row, "source_group_id");
  group.created_at = TextOr(row, "created_at", "");
  group.deleted = IntegerOr(row, "deleted", 0) != 0;
  if (group.id.empty()) {
    return MakeError(ErrorCode::kInternal, "a group row without an id");
  }
  return group;
}

ports::Row GroupToRow(const Group& group) {
  return {{"id", group.id},
          {"project_id", group.project_id},
          {"user_id", group.user_id},
          {"status", group.status},
          {"name", TextOrNull(group.name)},
          {"description", TextOrNull(group.description)},
          {"availability_zone", group.availability_zone},
          {"group_type_id", group.group_type_id},
          {"volume_type_ids", json(group.volume_type_ids).dump()},
          {"group_snapshot_id", TextOrNull(group.group_snapshot_id)},
          {"source_group_id", TextOrNull(group.source_group_id)},
          {"created_at", group.created_at},
          {"deleted", std::int64_t{group.deleted ? 1 : 0}}};
}

Result<GroupSnapshot> GroupSnapshotFromRow(const ports::Row& row) {
  GroupSnapshot snapshot;
  snapshot.id = TextOr(row, "id", "");
  snapshot.project_id = TextOr(row, "project_id", "");
  snapshot.user_id = TextOr(row, "user_id", "");
  snapshot.group_id = TextOr(row, "group_id", "");
  snapshot.group_type_id = TextOr(row, "group_type_id", "");
  snapshot.status = TextOr(row, "status", "");
  snapshot.name = OptionalText(row, "name");
  snapshot.description = OptionalText(row, "description");
  snapshot.created_at = TextOr(row, "created_at", "");
  snapshot.deleted = IntegerOr(row, "deleted", 0) != 0;
  if (snapshot.id.empty()) {
    return MakeError(ErrorCode::kInternal, "a group snapshot row without an id");
  }
  return snapshot;
}

ports::Row GroupSnapshotToRow(const GroupSnapshot& snapshot) {
  return {{"id", snapshot.id},
          {"project_id", snapshot.project_id},
          {"user_id", snapshot.user_id},
          {"group_id", snapshot.group_id},
          {"group_type_id", snapshot.group_type_id},
          {"status", snapshot.status},
          {"name", TextOrNull(snapshot.name)},
          {"description", TextOrNull(snapshot.description)},
          {"created_at", snapshot.created_at},
          {"deleted", std::int64_t{snapshot.deleted ? 1 : 0}}};
}

GroupsApi::GroupsApi(ports::StateStore& store,
                     const ports::Clock& clock,
                     VolumesApi& volumes,
                     SnapshotsApi& snapshots,
                     GroupsApiOptions options)
    : store_(store),
      clock_(clock),
      volumes_(volumes),
      snapshots_(snapshots),
      options_(std::move(options)),
      quotas_(store, options_.quota) {}

tl::expected<Group, HttpResponse> GroupsApi::VisibleGroup(const RequestContext& context,
                                                          std::string_view group_id) {
  auto row = store_.Get(ports::Table::kGroups, group_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound
                              ? Fault(404, GroupNotFound(group_id))
                              : FaultFromError(row.error()));
  }
  auto group = GroupFromRow(*row);
  if (!group) {
    return tl::unexpected(FaultFromError(group.error()));
  }
  if (group->deleted || !CanSee(context, group->project_id)) {
    return tl::unexpected(Fault(404, GroupNotFound(group_id)));
  }
  return *group;
}

tl::expected<GroupSnapshot, HttpResponse> GroupsApi::VisibleSnapshot(
    const RequestContext& context, std::string_view group_snapshot_id) {
  auto row = store_.Get(ports::Table::kGroupSnapshots, group_snapshot_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound
                              ? Fault(404, GroupSnapshotNotFound(group_snapshot_id))
                              : FaultFromError(row.error()));
  }
  auto snapshot = GroupSnapshotFromRow(*row);
  if (!snapshot) {
    return tl::unexpected(FaultFromError(snapshot.error()));
  }
  if (snapshot->deleted || !CanSee(context, snapshot->project_id)) {
    return tl::unexpected(Fault(404, GroupSnapshotNotFound(group_snapshot_id)));
  }
  return *snapshot;
}

Result<std::vector<ports::Row>> GroupsApi::Members(ports::Table table,
                                                   std::string_view column,
                                                   const std::string& id) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals(std::string(column), id)};
  query.sort = {ports::SortKey{"created_at", true}};
  return store_.List(table, query);
}

json GroupsApi::GroupView(const RequestContext& context,
                          const HttpRequest* request,
                          const Group& group) {
  json view = {{"id", group.id},
               {"status", std::string(ShownGroupStatus(group.status))},
               {"availability_zone", group.availability_zone},
               {"created_at", group.created_at},
               {"name", NullOr(group.name)},
               {"description", NullOr(group.description)},
               {"group_type", group.group_type_id},
               {"volume_types", group.volume_type_ids}};
  if (context.version >= kGroupSnapshotsMicroversion) {
    view["group_snapshot_id"] = NullOr(group.group_snapshot_id);
    view["source_group_id"] = NullOr(group.source_group_id);
  }
  std::string value;
  if (context.version >= kGroupVolumeListMicroversion && request != nullptr &&
      request->QueryValue("list_volume", &value) && TruthyParameter(value)) {
    json volumes = json::array();
    if (auto rows = Members(ports::Table::kVolumes, "group_id", group.id)) {
      for (const ports::Row& row : *rows) {
        volumes.push_back(TextOr(row, "id", ""));
      }
    }
    view["volumes"] = volumes;
  }
  if (context.version >= kGroupReplicationMicroversion) {
    view["replication_status"] = "disabled";  // Cinder's default: no group replication here.
  }
  if (context.version >= kGroupProjectIdMicroversion &&
      Allowed(context, domain::policies::kGroupProjectAttribute)) {
    view["project_id"] = group.project_id;
  }
  return view;
}

json GroupsApi::SnapshotView(const RequestContext& context, const GroupSnapshot& snapshot) {
  json view = {{"id", snapshot.id},
               {"group_id", snapshot.group_id},
               {"group_type_id", snapshot.group_type_id},
               {"status", std::string(ShownGroupStatus(snapshot.status))},
               {"created_at", snapshot.created_at},
               {"name", NullOr(snapshot.name)},
               {"description", NullOr(snapshot.description)}};
  if (context.version >= kGroupProjectIdMicroversion &&
      Allowed(context, domain::policies::kGroupSnapshotProjectAttribute)) {
    view["project_id"] = snapshot.project_id;
  }
  return view;
}

HttpResponse GroupsApi::Create(const RequestContext& context, const HttpRequest& request) {
  auto body = ParseBody(request, "group");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  for (const auto& [key, value] : spec.items()) {
    if (key != "group_type" && key != "volume_types" && key != "name" && key != "description" &&
        key != "availability_zone") {
      return Fault(400,
                   "Invalid input for field/attribute group. Value: " + spec.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
  }
  for (const char* required : {"group_type", "volume_types"}) {
    if (!spec.contains(required)) {
      return Fault(400,
                   "Invalid input for field/attribute group. Value: " + spec.dump() + ". '" +
                       required + "' is a required property");
    }
  }
  if (!spec["group_type"].is_string() || spec["group_type"].get<std::string>().empty()) {
    return Fault(
        400,
        "Invalid input for field/attribute group_type. Value: " + spec["group_type"].dump() +
            " is not a valid " + std::string(InvalidFieldType(spec["group_type"])));
  }
  const json& types = spec["volume_types"];
  if (!types.is_array() || types.empty()) {
    return Fault(400,
                 "Invalid input for field/attribute volume_types. Value: " + types.dump() +
                     " is not a non-empty array");
  }
  Group group;
  auto name = TrimmedText(spec, "name");
  auto description = TrimmedText(spec, "description");
  if (!name || !description) {
    return FaultFromError(!name ? name.error() : description.error());
  }
  group.name = *name;
  group.description = *description;
  group.availability_zone = options_.availability_zone;
  if (spec.contains("availability_zone") && !spec["availability_zone"].is_null()) {
    const json& zone = spec["availability_zone"];
    if (!zone.is_string() || zone.get<std::string>() != options_.availability_zone) {
      return Fault(400,
                   "Invalid input received: Availability zone '" +
                       (zone.is_string() ? zone.get<std::string>() : zone.dump()) +
                       "' is invalid.");
    }
  }
  auto group_type = FindGroupType(store_, context, spec["group_type"].get<std::string>());
  if (!group_type) {
    return group_type.error();
  }
  group.group_type_id = group_type->id;
  VolumeTypeCatalog catalog(store_, clock_, "");
  for (const json& type : types) {
    if (!type.is_string() || type.get<std::string>().empty()) {
      return Fault(400,
                   "Invalid input for field/attribute volume_types. Value: " + types.dump() +
                       " is not an array of strings");
    }
    auto resolved = catalog.Resolve(context, type.get<std::string>(), false);
    if (!resolved) {
      return resolved.error();
    }
    if (std::find(group.volume_type_ids.begin(), group.volume_type_ids.end(), resolved->id) ==
        group.volume_type_ids.end()) {
      group.volume_type_ids.push_back(resolved->id);
    }
  }
  group.id = NewUuid();
  group.project_id = context.project_id;
  group.user_id = context.user_id;
  // A generic group on this back-end needs no storage work: it is available at once (see the
  // header and docs/ARCHITECTURE.md).
  group.status = std::string(kGroupAvailable);
  group.created_at = FormatTimestamp(clock_.WallNow());
  if (auto inserted = InsertCharged(group); !inserted) {
    return QuotaFault(inserted.error());
  }
  // The group type is checked again now that the group exists: a type delete that won the race
  // shows here; a later one sees the group (its guard) and is refused.
  auto pinned = store_.ConditionalUpdate(ports::Table::kGroupTypes,
                                         group.group_type_id,
                                         {},
                                         {Expectation::Equals("deleted", std::int64_t{0})},
                                         {});
  if (!pinned || !pinned->has_value()) {
    const std::string now = FormatTimestamp(clock_.WallNow());
    store_
        .ConditionalUpdateWithUsage(
            ports::Table::kGroups,
            group.id,
            {{"status", Text(kGroupDeleted)}, {"deleted", std::int64_t{1}}, {"deleted_at", now}},
            {Expectation::Equals("deleted", std::int64_t{0})},
            {},
            QuotaService::Release(group.project_id, QuotaService::UsageOfGroup()))
        .IgnoreError("the client is told why; a leftover group is available and deletable");
    if (!pinned) {
      return FaultFromError(pinned.error());
    }
    return Fault(404, "Group type " + group.group_type_id + " could not be found.");
  }
  log::Info("group.created", {{"group_id", group.id}, {"group_type_id", group.group_type_id}});
  return JsonResponse(202, {{"group", {{"id", group.id}, {"name", NullOr(group.name)}}}});
}

HttpResponse GroupsApi::Show(const RequestContext& context,
                             const HttpRequest& request,
                             std::string_view group_id) {
  auto group = VisibleGroup(context, group_id);
  if (!group) {
    return group.error();
  }
  return JsonResponse(200, {{"group", GroupView(context, &request, *group)}});
}

HttpResponse GroupsApi::List(const RequestContext& context,
                             const HttpRequest& request,
                             bool detail) {
  auto sort = ParseSort(request, SortColumn);
  if (!sort) {
    return FaultFromError(sort.error());
  }
  auto rows = ListRows(
      store_,
      ports::Table::kGroups,
      context,
      request,
      {"id", "name", "description", "status", "availability_zone", "group_type_id", "user_id"},
      sort->empty() ? std::vector<ports::SortKey>{{"created_at", false}} : *sort);
  if (!rows) {
    return FaultFromError(rows.error());
  }
  auto page = PageOf(request, *rows, options_.max_limit);
  if (!page) {
    return page.error();
  }
  json items = json::array();
  for (std::size_t i = page->start;
       i < rows->size() && static_cast<std::int64_t>(items.size()) < page->limit;
       ++i) {
    auto group = GroupFromRow((*rows)[i]);
    if (!group) {
      return FaultFromError(group.error());
    }
    items.push_back(detail ? GroupView(context, &request, *group)
                           : json{{"id", group->id}, {"name", NullOr(group->name)}});
  }
  json body = {{"groups", items}};
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == page->limit &&
      page->start + items.size() < rows->size()) {
    body["group_links"] = json::array(
        {{{"rel", "next"},
          {"href",
           NextLink(context, request, "groups", items.back().value("id", std::string()))}}});
  }
  return JsonResponse(200, body);
}

HttpResponse GroupsApi::Update(const RequestContext& context,
                               const HttpRequest& request,
                               std::string_view group_id) {
  auto body = ParseBody(request, "group");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  for (const auto& [key, value] : spec.items()) {
    if (key != "name" && key != "description" && key != "add_volumes" && key != "remove_volumes") {
      return Fault(400,
                   "Invalid input for field/attribute group. Value: " + spec.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
  }
  auto name = TrimmedText(spec, "name");
  auto description = TrimmedText(spec, "description");
  if (!name || !description) {
    return FaultFromError(!name ? name.error() : description.error());
  }
  std::vector<std::string> add;
  std::vector<std::string> remove;
  for (auto [key, list] : {std::pair{"add_volumes", &add}, std::pair{"remove_volumes", &remove}}) {
    if (!spec.contains(key) || spec[key].is_null()) {
      continue;
    }
    if (!spec[key].is_string()) {
      return Fault(400,
                   std::string("Invalid input for field/attribute ") + key +
                       ". Value: " + spec[key].dump() + " is not of type 'string', 'null'");
    }
    for (std::string& id : SplitCommas(spec[key].get<std::string>())) {
      if (!id.empty()) {
        list->push_back(std::move(id));
      }
    }
  }
  if (!*name && !*description && add.empty() && remove.empty()) {
    return Fault(400,
                 "Name, description, add_volumes, and remove_volumes can not be all empty in "
                 "the request body.");
  }
  auto group = VisibleGroup(context, group_id);
  if (!group) {
    return group.error();
  }
  const std::string id = group->id;
  if (group->status != kGroupAvailable) {
    return Fault(400,
                 "Invalid group: Group " + id +
                     " is not in a valid state. Group status must be available, but current "
                     "status is: " +
                     std::string(ShownGroupStatus(group->status)) + ".");
  }
  // Cinder's checks of each volume, before anything changes.
  const std::vector<ports::Value> addable = {Status(VolumeStatus::kAvailable),
                                             Status(VolumeStatus::kInUse)};
  const std::vector<ports::Value> removable = {Status(VolumeStatus::kAvailable),
                                               Status(VolumeStatus::kInUse),
                                               Status(VolumeStatus::kError),
                                               Status(VolumeStatus::kErrorDeleting)};
  std::vector<ports::Value> group_types;
  for (const std::string& type : group->volume_type_ids) {
    group_types.emplace_back(type);
  }
  for (const std::string& volume_id : add) {
    std::string prefix = "Invalid volume: Cannot add volume ";
    prefix += volume_id;
    prefix += " to group ";
    prefix += id;
    prefix += " because ";
    auto row = store_.Get(ports::Table::kVolumes, volume_id);
    std::optional<Volume> volume;
    if (row) {
      auto parsed = VolumeFromRow(*row);
      if (parsed && !parsed->deleted && CanSee(context, parsed->project_id)) {
        volume = std::move(*parsed);
      }
    } else if (row.error().code != ErrorCode::kNotFound) {
      return FaultFromError(row.error());
    }
    if (!volume) {
      return Fault(400, prefix + "volume cannot be found.");
    }
    if (volume->group_id) {
      return Fault(400, prefix + "it is already in group " + *volume->group_id + ".");
    }
    if (volume->status != VolumeStatus::kAvailable && volume->status != VolumeStatus::kInUse) {
      return Fault(400,
                   prefix + "volume is in an invalid state: " +
                       std::string(domain::ApiName(volume->status)) +
                       ". Valid states are: ('available', 'in-use').");
    }
    if (!volume->volume_type_id ||
        std::find(group->volume_type_ids.begin(),
                  group->volume_type_ids.end(),
                  *volume->volume_type_id) == group->volume_type_ids.end()) {
      return Fault(400,
                   prefix + "volume type " + volume->volume_type_id.value_or("None") +
                       " is not supported by the group.");
    }
  }
  // Name and description first, expecting the group available: a delete that won the race is
  // seen here.
  ports::Row values = {{"updated_at", FormatTimestamp(clock_.WallNow())}};
  if (*name) {
    values["name"] = **name;
  }
  if (*description) {
    values["description"] = **description;
  }
  const std::vector<Expectation> available = {Expectation::Equals("deleted", std::int64_t{0}),
                                              Expectation::Equals("status", Text(kGroupAvailable))};
  auto updated = store_.ConditionalUpdate(ports::Table::kGroups, id, values, available, {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(400, "Invalid group: Group " + id + " status must be available.");
  }
  // Each volume moves in or out with a conditional update of its own; one that changed since it
  // was checked undoes the moves made and refuses the request.
  std::vector<std::pair<std::string, bool>> done;  // (volume, added)
  auto undo = [&] {
    for (const auto& [volume_id, added] : done) {
      store_
          .ConditionalUpdate(
              ports::Table::kVolumes,
              volume_id,
              {{"group_id", added ? ports::Value{} : ports::Value{id}}},
              {added ? Expectation::Equals("group_id", id) : Expectation::IsNull("group_id")},
              {})
          .IgnoreError("the volume stays where the request left it; the client is told");
    }
  };
  for (const std::string& volume_id : remove) {
    auto moved = store_.ConditionalUpdate(ports::Table::kVolumes,
                                          volume_id,
                                          {{"group_id", ports::Value{}}},
                                          {Expectation::Equals("deleted", std::int64_t{0}),
                                           Expectation::Equals("group_id", id),
                                           Expectation::In("status", removable)},
                                          {});
    if (!moved || !moved->has_value()) {
      undo();
      if (!moved) {
        return FaultFromError(moved.error());
      }
      std::string message = "Invalid volume: Cannot remove volume ";
      message += volume_id;
      message += " from group ";
      message += id;
      message +=
          " because it is not in the group or is in an invalid state. Valid states are: "
          "('available', 'in-use', 'error', 'error_deleting').";
      return Fault(400, message);
    }
    done.emplace_back(volume_id, false);
  }
  for (const std::string& volume_id : add) {
    auto moved = store_.ConditionalUpdate(ports::Table::kVolumes,
                                          volume_id,
                                          {{"group_id", id}},
                                          {Expectation::Equals("deleted", std::int64_t{0}),
                                           Expectation::IsNull("group_id"),
                                           Expectation::In("status", addable),
                                           Expectation::In("volume_type_id", group_types)},
                                          {});
    if (!moved || !moved->has_value()) {
      undo();
      if (!moved) {
        return FaultFromError(moved.error());
      }
      std::string message = "Invalid volume: Cannot add volume ";
      message += volume_id;
      message += " to group ";
      message += id;
      message += " because it changed while the group was updated.";
      return Fault(400, message);
    }
    done.emplace_back(volume_id, true);
  }
  // Still available: a group delete (or snapshot) that came in between would not see the moves
  // consistently, so they are undone.
  if (!done.empty()) {
    auto still = store_.ConditionalUpdate(ports::Table::kGroups, id, {}, available, {});
    if (!still || !still->has_value()) {
      undo();
      if (!still) {
        return FaultFromError(still.error());
      }
      return Fault(400, "Invalid group: Group " + id + " status must be available.");
    }
  }
  log::Info("group.updated",
            {{"group_id", id},
             {"added", static_cast<long long>(add.size())},
             {"removed", static_cast<long long>(remove.size())}});
  return Accepted();
}

HttpResponse GroupsApi::Action(const RequestContext& context,
                               const HttpRequest& request,
                               std::string_view group_id) {
  return Action(context, json::parse(request.body, nullptr, false), group_id);
}

HttpResponse GroupsApi::Action(const RequestContext& context,
                               const json& body,
                               std::string_view group_id) {
  if (body.is_discarded() || !body.is_object() || body.size() != 1) {
    return Fault(400, "Malformed request body");
  }
  const std::string action = body.begin().key();
  const json& argument = body.begin().value();
  if (action == "delete") {
    return DeleteGroup(context, argument, group_id);
  }
  if (action == "reset_status" && context.version >= kGroupResetMicroversion) {
    return ResetStatus(ports::Table::kGroups, context, argument, group_id);
  }
  return Fault(400, "There is no such action: " + action);
}

HttpResponse GroupsApi::DeleteGroup(const RequestContext& context,
                                    const json& argument,
                                    std::string_view group_id) {
  if (!argument.is_object()) {
    return Fault(400,
                 "Invalid input for field/attribute delete. Value: " + argument.dump() +
                     " is not of type 'object'");
  }
  bool delete_volumes = false;
  for (const auto& [key, value] : argument.items()) {
    if (key != "delete-volumes") {
      return Fault(400,
                   "Invalid input for field/attribute delete. Value: " + argument.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
    std::optional<bool> parsed = StrictBoolean(value);
    if (!parsed) {
      return Fault(400,
                   "Invalid input for field/attribute delete-volumes. Value: " + value.dump() +
                       " is not of type 'boolean', 'string'");
    }
    delete_volumes = *parsed;
  }
  auto group = VisibleGroup(context, group_id);
  if (!group) {
    return group.error();
  }
  const std::string id = group->id;
  if (!delete_volumes && group->status != kGroupAvailable && group->status != kGroupError) {
    return Fault(400,
                 "Invalid group: Group status must be available or error, but current status "
                 "is: " +
                     std::string(ShownGroupStatus(group->status)));
  }
  auto volumes = Members(ports::Table::kVolumes, "group_id", id);
  if (!volumes) {
    return FaultFromError(volumes.error());
  }
  if (!volumes->empty() && !delete_volumes) {
    return Fault(400,
                 "Invalid group: Group " + id +
                     " still contains volumes. The delete-volumes flag is required to delete "
                     "it.");
  }
  for (const ports::Row& row : *volumes) {
    const std::string volume_id = TextOr(row, "id", "");
    if (TextOr(row, "attach_status", "detached") == "attached") {
      return Fault(400,
                   "Invalid group: Volume in group " + id + " is attached. Need to detach first.");
    }
    ports::ListQuery snapshots;
    snapshots.filters = {Expectation::Equals("volume_id", volume_id)};
    snapshots.limit = 1;
    auto found = store_.List(ports::Table::kSnapshots, snapshots);
    if (!found) {
      return FaultFromError(found.error());
    }
    if (!found->empty()) {
      return Fault(400, "Invalid group: Volume in group still has dependent snapshots.");
    }
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  std::vector<Expectation> expected = {Expectation::Equals("deleted", std::int64_t{0})};
  if (delete_volumes) {
    expected.push_back(Expectation::NotIn(
        "status", {Text(kGroupDeleting), Text(kGroupDeletingQueued), Text(kGroupCreatingQueued)}));
  } else {
    expected.push_back(Expectation::In("status", {Text(kGroupAvailable), Text(kGroupError)}));
  }
  std::vector<Guard> guards = {
      Guard::NoLiveRowReferences(ports::Table::kGroupSnapshots, "group_id"),
      Guard::NoLiveRowReferences(
          ports::Table::kGroups,
          "source_group_id",
          {Expectation::In("status", {Text(kGroupCreatingQueued), Text(kGroupCreating)})})};
  if (!delete_volumes) {
    guards.push_back(Guard::NoLiveRowReferences(ports::Table::kVolumes, "group_id"));
  }
  auto deleting =
      store_.ConditionalUpdate(ports::Table::kGroups,
                               id,
                               {{"status", Text(kGroupDeletingQueued)}, {"updated_at", now}},
                               expected,
                               guards);
  if (!deleting) {
    return FaultFromError(deleting.error());
  }
  if (!deleting->has_value()) {
    return Fault(400,
                 delete_volumes ? "Invalid group: Group status must be available or error and "
                                  "must not have dependent group snapshots"
                                : "Invalid group: Group status must be available or error, must "
                                  "not have dependent group snapshots and must not have volumes");
  }
  // The members as they are now that the group is deleting (no volume joins a deleting group).
  volumes = Members(ports::Table::kVolumes, "group_id", id);
  if (volumes) {
    const RequestContext elevated = Elevated(context);
    for (const ports::Row& row : *volumes) {
      const std::string volume_id = TextOr(row, "id", "");
      HttpResponse queued = volumes_.DeleteGroupMember(elevated, volume_id, id);
      if (queued.status != 202) {
        // Left live and not being deleted: the group completes as error_deleting.
        log::Warn("group.member_not_deleted",
                  {{"group_id", id}, {"volume_id", volume_id}, {"answer", queued.body}});
      }
    }
  }
  FinishQueuing(ports::Table::kGroups, id, kGroupDeletingQueued, kGroupDeleting);
  log::Info("group.delete_accepted", {{"group_id", id}});
  return Accepted();
}

HttpResponse GroupsApi::ResetStatus(ports::Table table,
                                    const RequestContext& context,
                                    const json& argument,
                                    std::string_view id) {
  const bool is_group = table == ports::Table::kGroups;
  if (!argument.is_object() || !argument.contains("status") || !argument["status"].is_string()) {
    return Fault(400,
                 "Invalid input for field/attribute reset_status. Value: " + argument.dump() +
                     ". 'status' is a required property");
  }
  std::string status = argument["status"].get<std::string>();
  std::transform(status.begin(), status.end(), status.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  const bool valid =
      is_group
          ? std::find(kGroupStatuses.begin(), kGroupStatuses.end(), status) != kGroupStatuses.end()
          : std::find(kGroupSnapshotStatuses.begin(), kGroupSnapshotStatuses.end(), status) !=
                kGroupSnapshotStatuses.end();
  if (!valid) {
    return Fault(400,
                 std::string(is_group ? "Invalid group: Group"
                                      : "Invalid group snapshot: Group "
                                        "snapshot") +
                     " status: " + status + " is invalid.");
  }
  if (is_group) {
    if (auto group = VisibleGroup(context, id); !group) {
      return group.error();
    }
  } else if (auto snapshot = VisibleSnapshot(context, id); !snapshot) {
    return snapshot.error();
  }
  auto updated = store_.ConditionalUpdate(
      table,
      id,
      {{"status", status}, {"updated_at", FormatTimestamp(clock_.WallNow())}},
      {Expectation::Equals("deleted", std::int64_t{0})},
      {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, is_group ? GroupNotFound(id) : GroupSnapshotNotFound(id));
  }
  log::Info(is_group ? "group.status_reset" : "group_snapshot.status_reset",
            {{"id", std::string(id)}, {"status", status}, {"by", context.user_id}});
  return Accepted();
}

Result<void> GroupsApi::InsertCharged(const Group& group) {
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::UsageChange> charge,
                           quotas_.Charge(group.project_id, QuotaService::UsageOfGroup()));
  return store_.InsertWithUsage(ports::Table::kGroups, GroupToRow(group), charge);
}

void GroupsApi::FinishQueuing(ports::Table table,
                              const std::string& id,
                              std::string_view from,
                              std::string_view to) {
  auto moved = store_.ConditionalUpdate(
      table,
      id,
      {{"status", Text(to)}, {"updated_at", FormatTimestamp(clock_.WallNow())}},
      {Expectation::Equals("deleted", std::int64_t{0}), Expectation::Equals("status", Text(from))},
      {});
  if (!moved) {
    log::Warn("group.queuing_not_finished", {{"id", id}, {"error", moved.error().ToString()}});
    return;
  }
  if (to == kGroupError) {
    return;
  }
  auto completed = table == ports::Table::kGroups ? TryCompleteGroup(store_, clock_, id)
                                                  : TryCompleteGroupSnapshot(store_, clock_, id);
  if (!completed) {
    // The members' jobs complete it.
    log::Warn("group.completion_deferred", {{"id", id}, {"error", completed.error().ToString()}});
  }
}

HttpResponse GroupsApi::CreateFromSource(const RequestContext& context,
                                         const HttpRequest& request) {
  if (context.version < kGroupSnapshotsMicroversion) {
    return Fault(404, "The resource could not be found.");
  }
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || body.size() != 1 ||
      !body.contains("create-from-src")) {
    return Fault(400, "Malformed request body");
  }
  const json& spec = body["create-from-src"];
  if (!spec.is_object()) {
    return Fault(400,
                 "Invalid input for field/attribute create-from-src. Value: " + spec.dump() +
                     " is not of type 'object'");
  }
  for (const auto& [key, value] : spec.items()) {
    if (key != "name" && key != "description" && key != "group_snapshot_id" &&
        key != "source_group_id") {
      return Fault(400,
                   "Invalid input for field/attribute create-from-src. Value: " + spec.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
  }
  auto name = TrimmedText(spec, "name");
  auto description = TrimmedText(spec, "description");
  auto snapshot_id = TrimmedText(spec, "group_snapshot_id");
  auto source_id = TrimmedText(spec, "source_group_id");
  if (!name || !description || !snapshot_id || !source_id) {
    return Fault(400, "Invalid input received: names and ids must be strings.");
  }
  if (*snapshot_id && *source_id) {
    return Fault(400,
                 "Invalid input received: Cannot provide both group_snapshot_id and "
                 "source_group_id to create group " +
                     name->value_or("None") + " from source.");
  }
  if (!*snapshot_id && !*source_id) {
    return Fault(400,
                 "Invalid input received: Either 'group_snapshot_id' or 'source_group_id' must "
                 "be provided to create group " +
                     name->value_or("None") + " from source.");
  }
  Group group;
  group.name = *name;
  group.description = *description;
  group.availability_zone = options_.availability_zone;
  // The sources of the members: snapshots of the group snapshot, or volumes of the group.
  std::vector<ports::Row> sources;
  if (*snapshot_id) {
    auto snapshot = VisibleSnapshot(context, **snapshot_id);
    if (!snapshot) {
      return snapshot.error();
    }
    if (snapshot->status != kGroupAvailable) {
      return Fault(
          400,
          "Invalid group snapshot: Group snapshot " + snapshot->id + " status must be available.");
    }
    auto source_group_row = store_.Get(ports::Table::kGroups, snapshot->group_id);
    if (!source_group_row) {
      return FaultFromError(source_group_row.error());
    }
    auto source_group = GroupFromRow(*source_group_row);
    if (!source_group) {
      return FaultFromError(source_group.error());
    }
    group.group_type_id = snapshot->group_type_id;
    group.volume_type_ids = source_group->volume_type_ids;
    group.group_snapshot_id = snapshot->id;
    auto members = Members(ports::Table::kSnapshots, "group_snapshot_id", snapshot->id);
    if (!members) {
      return FaultFromError(members.error());
    }
    sources = std::move(*members);
  } else {
    auto source = VisibleGroup(context, **source_id);
    if (!source) {
      return source.error();
    }
    if (source->status != kGroupAvailable) {
      return Fault(400,
                   "Invalid group: Source group " + source->id +
                       " status must be available, but current status is: " +
                       std::string(ShownGroupStatus(source->status)) + ".");
    }
    group.group_type_id = source->group_type_id;
    group.volume_type_ids = source->volume_type_ids;
    group.availability_zone = source->availability_zone;
    group.source_group_id = source->id;
    auto members = Members(ports::Table::kVolumes, "group_id", source->id);
    if (!members) {
      return FaultFromError(members.error());
    }
    sources = std::move(*members);
  }
  group.id = NewUuid();
  group.project_id = context.project_id;
  group.user_id = context.user_id;
  group.status = std::string(kGroupCreatingQueued);
  group.created_at = FormatTimestamp(clock_.WallNow());
  if (auto inserted = InsertCharged(group); !inserted) {
    return QuotaFault(inserted.error());
  }
  bool failed = false;
  for (const ports::Row& source : sources) {
    json member = {{*snapshot_id ? "snapshot_id" : "source_volid", TextOr(source, "id", "")}};
    HttpResponse made = volumes_.CreateGroupMember(context, member, group.id);
    if (made.status != 202) {
      failed = true;
      log::Warn(
          "group.member_not_created",
          {{"group_id", group.id}, {"source_id", TextOr(source, "id", "")}, {"answer", made.body}});
    }
  }
  FinishQueuing(
      ports::Table::kGroups, group.id, kGroupCreatingQueued, failed ? kGroupError : kGroupCreating);
  log::Info("group.create_from_source_accepted",
            {{"group_id", group.id}, {"members", static_cast<long long>(sources.size())}});
  return JsonResponse(202, {{"group", {{"id", group.id}, {"name", NullOr(group.name)}}}});
}

HttpResponse GroupsApi::CreateSnapshot(const RequestContext& context, const HttpRequest& request) {
  auto body = ParseBody(request, "group_snapshot");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  for (const auto& [key, value] : spec.items()) {
    if (key != "group_id" && key != "name" && key != "description") {
      return Fault(400,
                   "Invalid input for field/attribute group_snapshot. Value: " + spec.dump() +
                       ". Additional properties are not allowed ('" + key + "' was unexpected)");
    }
  }
  if (!spec.contains("group_id") || !spec["group_id"].is_string()) {
    return Fault(400,
                 "Invalid input for field/attribute group_snapshot. Value: " + spec.dump() +
                     ". 'group_id' is a required property");
  }
  auto name = TrimmedText(spec, "name");
  auto description = TrimmedText(spec, "description");
  if (!name || !description) {
    return FaultFromError(!name ? name.error() : description.error());
  }
  auto group = VisibleGroup(context, spec["group_id"].get<std::string>());
  if (!group) {
    return group.error();
  }
  if (group->status != kGroupAvailable) {
    return Fault(400,
                 "Invalid group: Group " + group->id +
                     " status must be available, but current status is: " +
                     std::string(ShownGroupStatus(group->status)) + ".");
  }
  auto volumes = Members(ports::Table::kVolumes, "group_id", group->id);
  if (!volumes) {
    return FaultFromError(volumes.error());
  }
  GroupSnapshot snapshot;
  snapshot.id = NewUuid();
  snapshot.project_id = context.project_id;
  snapshot.user_id = context.user_id;
  snapshot.group_id = group->id;
  snapshot.group_type_id = group->group_type_id;
  snapshot.status = std::string(kGroupCreatingQueued);
  snapshot.name = *name;
  snapshot.description = *description;
  snapshot.created_at = FormatTimestamp(clock_.WallNow());
  if (auto inserted = store_.Insert(ports::Table::kGroupSnapshots, GroupSnapshotToRow(snapshot));
      !inserted) {
    return FaultFromError(inserted.error());
  }
  bool failed = false;
  for (const ports::Row& volume : *volumes) {
    json member = {{"volume_id", TextOr(volume, "id", "")},
                   {"name", NullOr(snapshot.name)},
                   {"description", NullOr(snapshot.description)}};
    HttpResponse made = snapshots_.CreateGroupMember(context, member, snapshot.id);
    if (made.status != 202) {
      failed = true;
      log::Warn("group_snapshot.member_not_created",
                {{"group_snapshot_id", snapshot.id},
                 {"volume_id", TextOr(volume, "id", "")},
                 {"answer", made.body}});
    }
  }
  FinishQueuing(ports::Table::kGroupSnapshots,
                snapshot.id,
                kGroupCreatingQueued,
                failed ? kGroupError : kGroupCreating);
  log::Info("group_snapshot.create_accepted",
            {{"group_snapshot_id", snapshot.id},
             {"group_id", group->id},
             {"members", static_cast<long long>(volumes->size())}});
  return JsonResponse(202,
                      {{"group_snapshot",
                        {{"id", snapshot.id},
                         {"name", NullOr(snapshot.name)},
                         {"group_type_id", snapshot.group_type_id}}}});
}

HttpResponse GroupsApi::ShowSnapshot(const RequestContext& context,
                                     std::string_view group_snapshot_id) {
  auto snapshot = VisibleSnapshot(context, group_snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  return JsonResponse(200, {{"group_snapshot", SnapshotView(context, *snapshot)}});
}

HttpResponse GroupsApi::ListSnapshots(const RequestContext& context,
                                      const HttpRequest& request,
                                      bool detail) {
  auto sort = ParseSort(request, SortColumn);
  if (!sort) {
    return FaultFromError(sort.error());
  }
  auto rows =
      ListRows(store_,
               ports::Table::kGroupSnapshots,
               context,
               request,
               {"id", "name", "description", "status", "group_id", "group_type_id", "user_id"},
               sort->empty() ? std::vector<ports::SortKey>{{"created_at", false}} : *sort);
  if (!rows) {
    return FaultFromError(rows.error());
  }
  auto page = PageOf(request, *rows, options_.max_limit);
  if (!page) {
    return page.error();
  }
  json items = json::array();
  for (std::size_t i = page->start;
       i < rows->size() && static_cast<std::int64_t>(items.size()) < page->limit;
       ++i) {
    auto snapshot = GroupSnapshotFromRow((*rows)[i]);
    if (!snapshot) {
      return FaultFromError(snapshot.error());
    }
    items.push_back(detail ? SnapshotView(context, *snapshot)
                           : json{{"id", snapshot->id}, {"name", NullOr(snapshot->name)}});
  }
  json body = {{"group_snapshots", items}};
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == page->limit &&
      page->start + items.size() < rows->size()) {
    body["group_snapshot_links"] = json::array(
        {{{"rel", "next"},
          {"href",
           NextLink(
               context, request, "group_snapshots", items.back().value("id", std::string()))}}});
  }
  return JsonResponse(200, body);
}

HttpResponse GroupsApi::DeleteSnapshot(const RequestContext& context,
                                       std::string_view group_snapshot_id) {
  auto snapshot = VisibleSnapshot(context, group_snapshot_id);
  if (!snapshot) {
    return snapshot.error();
  }
  const std::string id = snapshot->id;
  auto deleting = store_.ConditionalUpdate(
      ports::Table::kGroupSnapshots,
      id,
      {{"status", Text(kGroupDeletingQueued)}, {"updated_at", FormatTimestamp(clock_.WallNow())}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::In("status", {Text(kGroupAvailable), Text(kGroupError)})},
      // Cinder's group_creating_from_src: not while a group is being made from it.
      {Guard::NoLiveRowReferences(
          ports::Table::kGroups,
          "group_snapshot_id",
          {Expectation::In("status", {Text(kGroupCreatingQueued), Text(kGroupCreating)})})});
  if (!deleting) {
    return FaultFromError(deleting.error());
  }
  if (!deleting->has_value()) {
    return Fault(400,
                 "Invalid group snapshot: Group snapshot status must be available or error and "
                 "no group may be in process of being created from it.");
  }
  if (auto members = Members(ports::Table::kSnapshots, "group_snapshot_id", id)) {
    const RequestContext elevated = Elevated(context);
    for (const ports::Row& row : *members) {
      const std::string snapshot_id = TextOr(row, "id", "");
      HttpResponse queued = snapshots_.DeleteGroupMember(elevated, snapshot_id, id);
      if (queued.status != 202) {
        log::Warn(
            "group_snapshot.member_not_deleted",
            {{"group_snapshot_id", id}, {"snapshot_id", snapshot_id}, {"answer", queued.body}});
      }
    }
  }
  FinishQueuing(ports::Table::kGroupSnapshots, id, kGroupDeletingQueued, kGroupDeleting);
  log::Info("group_snapshot.delete_accepted", {{"group_snapshot_id", id}});
  return Accepted();
}

HttpResponse GroupsApi::SnapshotAction(const RequestContext& context,
                                       const HttpRequest& request,
                                       std::string_view group_snapshot_id) {
  return SnapshotAction(context, json::parse(request.body, nullptr, false), group_snapshot_id);
}

HttpResponse GroupsApi::SnapshotAction(const RequestContext& context,
                                       const json& body,
                                       std::string_view group_snapshot_id) {
  if (body.is_discarded() || !body.is_object() || body.size() != 1) {
    return Fault(400, "Malformed request body");
  }
  const std::string action = body.begin().key();
  if (action == "reset_status" && context.version >= kGroupSnapshotResetMicroversion) {
    return ResetStatus(
        ports::Table::kGroupSnapshots, context, body.begin().value(), group_snapshot_id);
  }
  return Fault(400, "There is no such action: " + action);
}

}  // namespace clinker::services
