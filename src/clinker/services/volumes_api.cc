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
#include "clinker/services/topics.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using domain::VolumeStatus;
using nlohmann::json;
using ports::Expectation;

constexpr std::size_t kMaxTextLength = 255;

// Statuses from which a volume may be deleted without force (Cinder's list, restricted to the
// statuses this release has).
constexpr std::array kDeletableStatuses = {VolumeStatus::kAvailable, VolumeStatus::kError};

constexpr std::string_view kInvalidVolumeForDelete =
    "Invalid volume: Volume status must be available or error or error_restoring or "
    "error_extending or error_managing and must not be migrating, attached, belong to a group, "
    "have snapshots, awaiting a transfer, or be disassociated from snapshots after volume "
    "transfer.";

Error BadRequest(std::string message) {
  return Error{ErrorCode::kInvalidArgument, std::move(message)};
}

std::string VolumeNotFound(std::string_view id) {
  return "Volume " + std::string(id) + " could not be found.";
}

Result<json> ParseBody(const HttpRequest& request, std::string_view root) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return tl::unexpected(BadRequest("Malformed request body"));
  }
  if (!body.is_object() || !body.contains(root) || !body[std::string(root)].is_object()) {
    return tl::unexpected(
        BadRequest("Missing required element '" + std::string(root) + "' in request body."));
  }
  return body[std::string(root)];
}

// A text field that may be absent, null or a string of at most 255 characters.
Result<std::optional<std::string>> OptionalText(const json& object,
                                                std::string_view key,
                                                bool* present) {
  *present = object.contains(key);
  if (!*present || object[std::string(key)].is_null()) {
    return std::optional<std::string>();
  }
  const json& value = object[std::string(key)];
  if (!value.is_string()) {
    return tl::unexpected(BadRequest("Invalid input for field/attribute " + std::string(key) +
                                     ". Value: " + value.dump() + " is not of type 'string'"));
  }
  std::string text = value.get<std::string>();
  if (text.size() > kMaxTextLength) {
    return tl::unexpected(BadRequest("Invalid input for field/attribute " + std::string(key) +
                                     ": longer than 255 characters"));
  }
  return std::optional<std::string>(std::move(text));
}

// `name` wins over its legacy alias `display_name` (likewise for descriptions).
Result<std::optional<std::string>> AliasedText(const json& object,
                                               std::string_view key,
                                               std::string_view legacy_key,
                                               bool* present) {
  bool has_key = false;
  CLINKER_ASSIGN_OR_RETURN(auto value, OptionalText(object, key, &has_key));
  bool has_legacy = false;
  CLINKER_ASSIGN_OR_RETURN(auto legacy, OptionalText(object, legacy_key, &has_legacy));
  *present = has_key || has_legacy;
  return has_key ? value : legacy;
}

Result<std::map<std::string, std::string>> ParseMetadata(const json& value) {
  static const std::regex kKeyPattern("^[a-zA-Z0-9-_:. /]{1,255}$");
  if (!value.is_object()) {
    return tl::unexpected(BadRequest("Invalid input for field/attribute metadata. Value: " +
                                     value.dump() + " is not of type 'object'"));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!std::regex_match(key, kKeyPattern)) {
      return tl::unexpected(BadRequest("Invalid input for field/attribute metadata: key '" + key +
                                       "' must be 1 to 255 characters of [a-zA-Z0-9-_:. /]"));
    }
    if (!item.is_string() || item.get<std::string>().size() > kMaxTextLength) {
      return tl::unexpected(
          BadRequest("Invalid input for field/attribute metadata: the value of '" + key +
                     "' must be a string of at most 255 characters"));
    }
    metadata[key] = item.get<std::string>();
  }
  return metadata;
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
Result<std::vector<ports::SortKey>> ParseSort(const HttpRequest& request) {
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
    auto column = SortColumn(key);
    if (!column) {
      return tl::unexpected(BadRequest("Invalid sort key '" + key + "'"));
    }
    CLINKER_ASSIGN_OR_RETURN(bool ascending, ParseDirection(direction));
    keys.push_back(ports::SortKey{*column, ascending});
  }
  return keys;
}

json Links(const RequestContext& context, const std::string& id) {
  return json::array({
      {{"href", context.link_base + "/volumes/" + id}, {"rel", "self"}},
      {{"href", context.bookmark_base + "/volumes/" + id}, {"rel", "bookmark"}},
  });
}

json NullOr(const std::optional<std::string>& text) {
  return text ? json(*text) : json(nullptr);
}

json SummaryView(const Volume& volume, const RequestContext& context) {
  return {{"id", volume.id}, {"name", NullOr(volume.name)}, {"links", Links(context, volume.id)}};
}

json DetailView(const Volume& volume,
                const RequestContext& context,
                const VolumesApiOptions& options) {
  json view = {
      {"id", volume.id},
      {"status", std::string(domain::ApiName(volume.status))},
      {"size", volume.size_gib},
      {"availability_zone", volume.availability_zone},
      {"created_at", volume.created_at},
      {"updated_at", NullOr(volume.updated_at)},
      {"name", NullOr(volume.name)},
      {"description", NullOr(volume.description)},
      {"volume_type", volume.volume_type.value_or(options.default_volume_type)},
      {"snapshot_id", NullOr(volume.snapshot_id)},
      {"source_volid", NullOr(volume.source_volid)},
      {"metadata", volume.metadata},
      {"links", Links(context, volume.id)},
      {"user_id", volume.user_id},
      {"bootable", volume.bootable ? "true" : "false"},
      {"encrypted", false},
      {"replication_status", nullptr},
      {"consistencygroup_id", nullptr},
      {"multiattach", volume.multiattach},
      {"attachments", json::array()},
      {"os-vol-tenant-attr:tenant_id", volume.project_id},
  };
  if (context.is_admin) {
    view["migration_status"] = NullOr(volume.migration_status);
    view["os-vol-host-attr:host"] = NullOr(volume.host);
    view["os-vol-mig-status-attr:migstat"] = NullOr(volume.migration_status);
    view["os-vol-mig-status-attr:name_id"] = nullptr;
  }
  if (context.version >= Microversion{3, 13}) {
    view["group_id"] = nullptr;
  }
  return view;
}

std::vector<ports::Value> StoredNames(std::span<const VolumeStatus> statuses) {
  std::vector<ports::Value> names;
  for (VolumeStatus status : statuses) {
    names.emplace_back(std::string(domain::StoredName(status)));
  }
  return names;
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

}  // namespace

VolumesApi::VolumesApi(ports::StateStore& store,
                       ports::JobQueue& queue,
                       const ports::Clock& clock,
                       VolumesApiOptions options)
    : store_(store), queue_(queue), clock_(clock), options_(std::move(options)) {}

HttpResponse VolumesApi::Create(const RequestContext& context, const HttpRequest& request) {
  auto body = ParseBody(request, "volume");
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  Volume volume;
  bool present = false;
  auto name = AliasedText(spec, "name", "display_name", &present);
  auto description = AliasedText(spec, "description", "display_description", &present);
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
  for (const char* key : {"snapshot_id", "source_volid", "imageRef", "image_id"}) {
    if (spec.contains(key) && !spec[key].is_null()) {
      if (!spec[key].is_string()) {
        return Fault(400, std::string("Invalid input for field/attribute ") + key);
      }
      if (std::string_view(key) == "snapshot_id") {
        return Fault(404, "Snapshot " + spec[key].get<std::string>() + " could not be found.");
      }
      return Fault(400,
                   std::string("Invalid input received: creating a volume from ") +
                       (std::string_view(key) == "source_volid" ? "another volume" : "an image") +
                       " is not supported by this release");
    }
  }
  if (!spec.contains("size") || spec["size"].is_null()) {
    return Fault(400, "Invalid input received: a size is required");
  }
  auto size = ParseSize(spec["size"], options_.max_volume_size_gib);
  if (!size) {
    return FaultFromError(size.error());
  }
  volume.size_gib = *size;
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
  if (spec.contains("volume_type") && !spec["volume_type"].is_null()) {
    if (!spec["volume_type"].is_string() ||
        spec["volume_type"].get<std::string>() != options_.default_volume_type) {
      return Fault(404,
                   "Volume type with name " + spec["volume_type"].dump() + " could not be found.");
    }
  }

  volume.id = NewUuid();
  volume.project_id = context.project_id;
  volume.user_id = context.user_id;
  volume.status = VolumeStatus::kCreatingQueued;
  volume.operation_id = NewUuid();
  volume.created_at = FormatTimestamp(clock_.WallNow());
  if (auto inserted = store_.Insert(ports::Table::kVolumes, VolumeToRow(volume)); !inserted) {
    return FaultFromError(inserted.error());
  }
  JobMessage job{
      domain::Operation::kCreateVolume, volume.id, *volume.operation_id, volume.project_id};
  if (auto published = queue_.Publish(SchedulerTopic(), job.ToJson()); !published) {
    // The job was not queued: take the volume back (soft delete) so nothing is left creating
    // forever, and tell the client to retry.
    log::Error("volume.create_not_queued",
               {{"volume_id", volume.id}, {"error", published.error().ToString()}});
    auto withdrawn = store_.ConditionalUpdate(
        ports::Table::kVolumes,
        volume.id,
        {{"status", Status(VolumeStatus::kDeleted)},
         {"deleted", std::int64_t{1}},
         {"deleted_at", FormatTimestamp(clock_.WallNow())}},
        {Expectation::Equals("status", Status(VolumeStatus::kCreatingQueued))},
        {});
    withdrawn.IgnoreError("the client is told to retry; a leftover row shows as creating");
    return FaultFromError(published.error());
  }
  log::Info("volume.create_accepted",
            {{"volume_id", volume.id},
             {"operation_id", *volume.operation_id},
             {"size_gib", static_cast<long long>(volume.size_gib)}});
  return JsonResponse(202, {{"volume", DetailView(volume, context, options_)}});
}

HttpResponse VolumesApi::Show(const RequestContext& context, std::string_view volume_id) {
  auto row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!row) {
    return row.error().code == ErrorCode::kNotFound ? Fault(404, VolumeNotFound(volume_id))
                                                    : FaultFromError(row.error());
  }
  auto volume = VolumeFromRow(*row);
  if (!volume) {
    return FaultFromError(volume.error());
  }
  if (volume->deleted || volume->project_id != context.project_id) {
    return Fault(404, VolumeNotFound(volume_id));
  }
  return JsonResponse(200, {{"volume", DetailView(*volume, context, options_)}});
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
  auto sort = ParseSort(request);
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
  if (request.QueryValue("marker", &value)) {
    query.marker_id = value;
  }
  query.limit = limit + offset;
  auto rows = store_.List(ports::Table::kVolumes, query);
  if (!rows) {
    if (rows.error().code == ErrorCode::kNotFound) {
      return Fault(404, "Marker " + value + " could not be found.");
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
    auto volume = VolumeFromRow(row);
    if (!volume) {
      return FaultFromError(volume.error());
    }
    items.push_back(detail ? DetailView(*volume, context, options_)
                           : SummaryView(*volume, context));
    last_id = volume->id;
  }
  json body = {{"volumes", items}};
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == limit) {
    body["volumes_links"] = json::array(
        {{{"rel", "next"},
          {"href", NextLink(context, request, detail ? "volumes/detail" : "volumes", last_id)}}});
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
  for (const ports::Row& row : *rows) {
    auto it = row.find("size_gib");
    if (it != row.end() && std::holds_alternative<std::int64_t>(it->second)) {
      total_size += std::get<std::int64_t>(it->second);
    }
  }
  return JsonResponse(
      200,
      {{"volume-summary",
        {{"total_count", static_cast<std::int64_t>(rows->size())}, {"total_size", total_size}}}});
}

HttpResponse VolumesApi::Update(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view volume_id) {
  auto body = ParseBody(request, "volume");
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
  values["updated_at"] = FormatTimestamp(clock_.WallNow());
  auto updated = store_.ConditionalUpdate(ports::Table::kVolumes,
                                          volume_id,
                                          values,
                                          {Expectation::Equals("project_id", context.project_id),
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
  return JsonResponse(200, {{"volume", DetailView(*volume, context, options_)}});
}

HttpResponse VolumesApi::Delete(const RequestContext& context,
                                const HttpRequest& /*request*/,
                                std::string_view volume_id) {
  auto row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!row) {
    return row.error().code == ErrorCode::kNotFound ? Fault(404, VolumeNotFound(volume_id))
                                                    : FaultFromError(row.error());
  }
  auto volume = VolumeFromRow(*row);
  if (!volume) {
    return FaultFromError(volume.error());
  }
  if (volume->deleted || volume->project_id != context.project_id) {
    return Fault(404, VolumeNotFound(volume_id));
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
      Expectation::Equals("project_id", context.project_id),
      Expectation::Equals("deleted", std::int64_t{0}),
      Expectation::In("status", StoredNames(kDeletableStatuses)),
      Expectation::NotEquals("attach_status", Text("attached")),
      Expectation::NotIn("migration_status",
                         {Text("migrating"), Text("starting"), Text("completing")}),
  };
  std::vector<ports::Guard> guards = {
      ports::Guard::NoLiveRowReferences(ports::Table::kSnapshots, "volume_id")};

  if (!volume->host) {
    // Never scheduled (e.g. the scheduler failed it): no back-end holds data for it, so the row
    // is retired at once, as Cinder does, still under the same compare-and-swap.
    expected.push_back(Expectation::IsNull("host"));
    auto retired = store_.ConditionalUpdate(ports::Table::kVolumes,
                                            volume_id,
                                            {{"status", Status(VolumeStatus::kDeleted)},
                                             {"deleted", std::int64_t{1}},
                                             {"deleted_at", now},
                                             {"updated_at", now}},
                                            expected,
                                            guards);
    if (!retired) {
      return FaultFromError(retired.error());
    }
    if (!retired->has_value()) {
      return Fault(400, kInvalidVolumeForDelete);
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
    return Fault(400, kInvalidVolumeForDelete);
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

}  // namespace clinker::services
