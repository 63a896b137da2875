#include "clinker/services/attachments_api.h"

#include <algorithm>
#include <array>
#include <thread>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/services/attachment_state.h"
#include "clinker/services/job_message.h"
#include "clinker/services/metadata_rules.h"
#include "clinker/services/topics.h"

namespace clinker::services {
namespace {

using domain::AttachmentStatus;
using domain::VolumeStatus;
using nlohmann::json;
using ports::Expectation;

constexpr Microversion kAttachmentsMicroversion{3, 27};
constexpr Microversion kCompleteMicroversion{3, 44};
constexpr Microversion kAttachModeMicroversion{3, 54};

constexpr std::array<std::string_view, 8> kLegacyActions = {
    "os-reserve",
    "os-unreserve",
    "os-initialize_connection",
    "os-attach",
    "os-begin_detaching",
    "os-roll_detaching",
    "os-terminate_connection",
    "os-detach",
};

std::string AttachmentNotFound(std::string_view id) {
  return "Volume attachment could not be found with filter: attachment_id = " + std::string(id) +
         ".";
}

ports::Value AttachmentStatusValue(AttachmentStatus status) {
  return std::string(domain::StoredName(status));
}

json ParseJsonOr(const std::optional<std::string>& text, json fallback) {
  if (!text) {
    return fallback;
  }
  json parsed = json::parse(*text, nullptr, false);
  return parsed.is_discarded() ? fallback : parsed;
}

std::optional<std::string> OptionalString(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_string()) {
    return std::nullopt;
  }
  return object[key].get<std::string>();
}

// The volume's readonly flag (os-update_readonly_flag), kept in its admin metadata.
bool IsReadonly(const Volume& volume) {
  auto flag = volume.admin_metadata.find("readonly");
  return flag != volume.admin_metadata.end() && flag->second == "True";
}

}  // namespace

AttachmentsApi::AttachmentsApi(ports::StateStore& store,
                               ports::JobQueue& queue,
                               const ports::Clock& clock,
                               AttachmentsApiOptions options)
    : store_(store), queue_(queue), clock_(clock), options_(options) {}

Result<AttachmentsApi::Attachment> AttachmentsApi::FromRow(const ports::Row& row) {
  Attachment attachment;
  attachment.id = TextOr(row, "id", "");
  const std::string stored = TextOr(row, "status", "");
  auto status = domain::ParseStoredAttachmentStatus(stored);
  if (attachment.id.empty() || !status) {
    return MakeError(ErrorCode::kInternal,
                     "attachment row " + attachment.id + " has unknown status '" + stored + "'");
  }
  attachment.status = *status;
  attachment.project_id = TextOr(row, "project_id", "");
  attachment.volume_id = TextOr(row, "volume_id", "");
  attachment.status_reason = OptionalText(row, "status_reason");
  attachment.instance_uuid = OptionalText(row, "instance_uuid");
  attachment.attached_host = OptionalText(row, "attached_host");
  attachment.mountpoint = OptionalText(row, "mountpoint");
  attachment.attach_mode = TextOr(row, "attach_mode", "null");
  attachment.connector = OptionalText(row, "connector");
  attachment.connection_info = OptionalText(row, "connection_info");
  attachment.operation_id = OptionalText(row, "operation_id");
  attachment.attach_time = OptionalText(row, "attach_time");
  attachment.detach_time = OptionalText(row, "detach_time");
  attachment.deleted = IntegerOr(row, "deleted", 0) != 0;
  return attachment;
}

json AttachmentsApi::View(const Attachment& attachment, bool detail) const {
  json view = {
      {"id", attachment.id},
      {"status", std::string(domain::ApiName(attachment.status))},
      {"instance", NullOr(attachment.instance_uuid)},
      {"volume_id", attachment.volume_id},
  };
  if (detail) {
    view["attached_at"] = attachment.attach_time.value_or("");
    view["detached_at"] = attachment.detach_time.value_or("");
    view["attach_mode"] = attachment.attach_mode;
    view["connection_info"] = ParseJsonOr(attachment.connection_info, json::object());
  }
  return view;
}

tl::expected<Volume, AttachmentsApi::Failure> AttachmentsApi::VisibleVolume(
    const RequestContext& context, std::string_view volume_id) {
  const std::string not_found = "Volume " + std::string(volume_id) + " could not be found.";
  auto row = store_.Get(ports::Table::kVolumes, volume_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound ? Fault(404, not_found)
                                                                   : FaultFromError(row.error()));
  }
  auto volume = VolumeFromRow(*row);
  if (!volume) {
    return tl::unexpected(FaultFromError(volume.error()));
  }
  if (volume->deleted || !CanSee(context, volume->project_id)) {
    return tl::unexpected(Fault(404, not_found));
  }
  return *volume;
}

tl::expected<AttachmentsApi::Attachment, AttachmentsApi::Failure> AttachmentsApi::VisibleAttachment(
    const RequestContext& context, std::string_view attachment_id) {
  auto row = store_.Get(ports::Table::kAttachments, attachment_id);
  if (!row) {
    return tl::unexpected(row.error().code == ErrorCode::kNotFound
                              ? Fault(404, AttachmentNotFound(attachment_id))
                              : FaultFromError(row.error()));
  }
  auto attachment = FromRow(*row);
  if (!attachment) {
    return tl::unexpected(FaultFromError(attachment.error()));
  }
  if (attachment->deleted || !CanSee(context, attachment->project_id)) {
    return tl::unexpected(Fault(404, AttachmentNotFound(attachment_id)));
  }
  return *attachment;
}

Result<std::vector<AttachmentsApi::Attachment>> AttachmentsApi::AttachmentsOf(
    std::string_view volume_id) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals("volume_id", std::string(volume_id))};
  query.sort = {ports::SortKey{"created_at", true}};
  CLINKER_ASSIGN_OR_RETURN(std::vector<ports::Row> rows,
                           store_.List(ports::Table::kAttachments, query));
  std::vector<Attachment> out;
  for (const ports::Row& row : rows) {
    CLINKER_ASSIGN_OR_RETURN(Attachment attachment, FromRow(row));
    out.push_back(std::move(attachment));
  }
  return out;
}

void AttachmentsApi::Refresh(std::string_view volume_id) {
  if (auto refreshed = RefreshVolumeAttachState(store_, clock_, volume_id); !refreshed) {
    log::Warn("attachment.volume_state_not_refreshed",
              {{"volume_id", std::string(volume_id)}, {"error", refreshed.error().ToString()}});
  }
}

tl::expected<AttachmentsApi::Attachment, AttachmentsApi::Failure> AttachmentsApi::Reserve(
    const RequestContext& context,
    const Volume& volume,
    std::optional<std::string> instance_uuid,
    std::string attach_mode,
    AttachmentStatus initial_status) {
  const std::string not_reservable =
      "Invalid volume: Volume " + volume.id + " status must be available" +
      (volume.multiattach ? " or in-use" : "") + " to reserve, but the current status is " +
      std::string(domain::ApiName(volume.status)) + ".";
  const bool family = InAttachFamily(volume.status);
  if (!family || (!volume.multiattach && volume.status != VolumeStatus::kAvailable)) {
    return tl::unexpected(Fault(400, not_reservable));
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  Attachment attachment;
  attachment.id = NewUuid();
  // The volume's project, also when an admin attaches another project's volume: in Cinder an
  // attachment has no project of its own but its volume's, so the volume's owner sees (and can
  // end) every attachment that keeps the volume busy.
  attachment.project_id = volume.project_id;
  attachment.volume_id = volume.id;
  attachment.status = initial_status;
  attachment.instance_uuid = std::move(instance_uuid);
  attachment.attach_mode = std::move(attach_mode);
  auto inserted = store_.Insert(ports::Table::kAttachments,
                                {{"id", attachment.id},
                                 {"project_id", attachment.project_id},
                                 {"user_id", context.user_id},
                                 {"volume_id", volume.id},
                                 {"status", AttachmentStatusValue(initial_status)},
                                 {"instance_uuid", TextOrNull(attachment.instance_uuid)},
                                 {"attach_mode", attachment.attach_mode},
                                 {"created_at", now}});
  if (!inserted) {
    return tl::unexpected(FaultFromError(inserted.error()));
  }
  // The reservation itself: only one attachment of a volume that does not allow multiattach
  // wins, and a volume whose delete won the race is seen here (no longer available).
  std::vector<Expectation> expected = {Expectation::Equals("deleted", std::int64_t{0})};
  if (volume.multiattach) {
    expected.push_back(Expectation::In("status",
                                       {Status(VolumeStatus::kAvailable),
                                        Status(VolumeStatus::kReserved),
                                        Status(VolumeStatus::kAttaching),
                                        Status(VolumeStatus::kInUse)}));
  } else {
    expected.push_back(Expectation::Equals("status", Status(VolumeStatus::kAvailable)));
  }
  const DerivedAttachState derived = DeriveAttachState({initial_status});
  ports::Row values = {{"operation_id", NewUuid()}, {"updated_at", now}};
  if (!volume.multiattach || volume.status == VolumeStatus::kAvailable) {
    values["status"] = Status(derived.status);
    values["attach_status"] = derived.attach_status;
  }
  auto reserved = store_.ConditionalUpdate(ports::Table::kVolumes, volume.id, values, expected, {});
  if (!reserved || !reserved->has_value()) {
    auto withdrawn =
        store_.ConditionalUpdate(ports::Table::kAttachments,
                                 attachment.id,
                                 {{"status", AttachmentStatusValue(AttachmentStatus::kDetached)},
                                  {"deleted", std::int64_t{1}},
                                  {"deleted_at", now}},
                                 {},
                                 {});
    withdrawn.IgnoreError("an unreserved attachment row only shows in history");
    // A refresh that ran while this row was live may have counted it: derive again without it.
    Refresh(volume.id);
    if (!reserved) {
      return tl::unexpected(FaultFromError(reserved.error()));
    }
    return tl::unexpected(Fault(400, not_reservable));
  }
  Refresh(volume.id);
  log::Info("attachment.reserved", {{"attachment_id", attachment.id}, {"volume_id", volume.id}});
  return attachment;
}

tl::expected<AttachmentsApi::Attachment, AttachmentsApi::Failure> AttachmentsApi::RunJob(
    const Volume& volume, const Attachment& attachment, domain::Operation operation) {
  if (!volume.host) {
    return tl::unexpected(Fault(400, "Invalid volume: Volume " + volume.id + " has no back-end"));
  }
  JobMessage job{
      operation, attachment.id, attachment.operation_id.value_or(""), attachment.project_id};
  if (auto published =
          queue_.Publish(VolumeJobTopic(volume.cluster_name, *volume.host), job.ToJson());
      !published) {
    log::Error("attachment.job_not_queued",
               {{"attachment_id", attachment.id}, {"error", published.error().ToString()}});
    return tl::unexpected(FaultFromError(published.error()));
  }
  const std::string queued(domain::QueuedStatusOf(operation));
  const std::string in_progress(domain::InProgressStatusOf(operation));
  const auto deadline = clock_.MonoNow() + options_.job_timeout;
  std::chrono::milliseconds pause = options_.poll_min;
  while (true) {
    auto row = store_.Get(ports::Table::kAttachments, attachment.id);
    if (!row) {
      return tl::unexpected(FaultFromError(row.error()));
    }
    auto now = FromRow(*row);
    if (!now) {
      return tl::unexpected(FaultFromError(now.error()));
    }
    const std::string stored(domain::StoredName(now->status));
    if (now->operation_id != attachment.operation_id ||
        (stored != queued && stored != in_progress)) {
      // The node writes the attachment's final status, then the volume's: recompute the
      // volume's here too (idempotent, versioned), so when this request returns the volume
      // already shows it, as Cinder's synchronous attach and detach calls do.
      Refresh(volume.id);
      return *now;
    }
    if (clock_.MonoNow() >= deadline) {
      log::Warn(
          "attachment.job_timed_out",
          {{"attachment_id", attachment.id}, {"operation", domain::OperationName(operation)}});
      return tl::unexpected(Fault(503,
                                  "No volume service finished the " +
                                      std::string(domain::OperationName(operation)) +
                                      " of attachment " + attachment.id +
                                      " in time; the job stays queued, retry the request"));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, options_.poll_max);
  }
}

tl::expected<AttachmentsApi::Attachment, AttachmentsApi::Failure> AttachmentsApi::Connect(
    const Volume& volume, const Attachment& attachment, const json& connector) {
  if (!connector.is_object()) {
    return tl::unexpected(Fault(400,
                                "Invalid input for field/attribute connector. Value: " +
                                    connector.dump() + " is not of type 'object'"));
  }
  const std::string operation_id = NewUuid();
  const std::string now = FormatTimestamp(clock_.WallNow());
  ports::Row values = {{"status", AttachmentStatusValue(AttachmentStatus::kAttachingQueued)},
                       {"operation_id", operation_id},
                       {"connector", connector.dump()},
                       {"status_reason", std::monostate{}},
                       {"updated_at", now}};
  if (auto host = OptionalString(connector, "host")) {
    values["attached_host"] = *host;
  }
  if (auto mountpoint = OptionalString(connector, "mountpoint")) {
    values["mountpoint"] = *mountpoint;
  }
  auto queued = store_.ConditionalUpdate(
      ports::Table::kAttachments,
      attachment.id,
      values,
      {Expectation::Equals("deleted", std::int64_t{0}),
       // A queued export may be asked again (a retry after a timeout): the new job replaces it,
       // and the old one finds another operation id and is dropped.
       Expectation::In("status",
                       {AttachmentStatusValue(AttachmentStatus::kReserved),
                        AttachmentStatusValue(AttachmentStatus::kAttachingQueued),
                        AttachmentStatusValue(AttachmentStatus::kAttaching),
                        AttachmentStatusValue(AttachmentStatus::kErrorAttaching)})},
      {});
  if (!queued) {
    return tl::unexpected(FaultFromError(queued.error()));
  }
  if (!queued->has_value()) {
    return tl::unexpected(Fault(409,
                                "Attachment " + attachment.id + " is " +
                                    std::string(domain::ApiName(attachment.status)) +
                                    ": it cannot be connected now"));
  }
  Refresh(volume.id);
  Attachment updated = attachment;
  updated.operation_id = operation_id;
  auto done = RunJob(volume, updated, domain::Operation::kAttachVolume);
  if (!done) {
    return done;
  }
  if (done->status != AttachmentStatus::kAttaching) {
    return tl::unexpected(
        Fault(500,
              "Unable to export volume " + volume.id + ": " +
                  done->status_reason.value_or(std::string(domain::ApiName(done->status)))));
  }
  return done;
}

tl::expected<void, AttachmentsApi::Failure> AttachmentsApi::Disconnect(
    const Volume& volume, const Attachment& attachment) {
  const std::string now = FormatTimestamp(clock_.WallNow());
  const bool exported = attachment.connection_info.has_value() ||
                        attachment.status == AttachmentStatus::kAttachingQueued ||
                        attachment.status == AttachmentStatus::kConnecting;
  if (!exported) {
    // Nothing was exported: the reservation just ends.
    auto ended = store_.ConditionalUpdate(
        ports::Table::kAttachments,
        attachment.id,
        {{"status", AttachmentStatusValue(AttachmentStatus::kDetached)},
         {"deleted", std::int64_t{1}},
         {"deleted_at", now},
         {"detach_time", now},
         {"updated_at", now}},
        {Expectation::Equals("deleted", std::int64_t{0}),
         Expectation::Equals("status", AttachmentStatusValue(attachment.status))},
        {});
    if (!ended) {
      return tl::unexpected(FaultFromError(ended.error()));
    }
    if (!ended->has_value()) {
      return tl::unexpected(
          Fault(409, "Attachment " + attachment.id + " changed meanwhile; retry the request"));
    }
    Refresh(volume.id);
    return {};
  }
  const std::string operation_id = NewUuid();
  auto queued = store_.ConditionalUpdate(
      ports::Table::kAttachments,
      attachment.id,
      {{"status", AttachmentStatusValue(AttachmentStatus::kDetachingQueued)},
       {"operation_id", operation_id},
       {"status_reason", std::monostate{}},
       {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::NotIn("status",
                          {AttachmentStatusValue(AttachmentStatus::kAttachingQueued),
                           AttachmentStatusValue(AttachmentStatus::kConnecting),
                           AttachmentStatusValue(AttachmentStatus::kDetaching)})},
      {});
  if (!queued) {
    return tl::unexpected(FaultFromError(queued.error()));
  }
  if (!queued->has_value()) {
    return tl::unexpected(Fault(
        409, "Attachment " + attachment.id + " is being attached or detached; retry the request"));
  }
  Refresh(volume.id);
  Attachment updated = attachment;
  updated.operation_id = operation_id;
  auto done = RunJob(volume, updated, domain::Operation::kDetachVolume);
  if (!done) {
    return tl::unexpected(done.error());
  }
  if (done->status != AttachmentStatus::kDetached) {
    return tl::unexpected(
        Fault(500,
              "Unable to terminate the connection of volume " + volume.id + ": " +
                  done->status_reason.value_or(std::string(domain::ApiName(done->status)))));
  }
  return {};
}

HttpResponse AttachmentsApi::Create(const RequestContext& context, const HttpRequest& request) {
  if (context.version < kAttachmentsMicroversion) {
    return Fault(404, "The resource could not be found.");
  }
  auto body = ParseBody(
      request,
      "attachment",
      context.version >= kAttachModeMicroversion
          ? std::vector<std::string_view>{"connector", "instance_uuid", "mode", "volume_uuid"}
          : std::vector<std::string_view>{"connector", "instance_uuid", "volume_uuid"});
  if (!body) {
    return FaultFromError(body.error());
  }
  const json& spec = *body;
  // Cinder's schema: both ids in the uuid format (a null instance_uuid stays "no instance").
  for (const char* key : {"volume_uuid", "instance_uuid"}) {
    if (spec.contains(key) && !spec[key].is_null()) {
      if (auto checked = CheckUuidField(spec, key, UuidField::kUuid); !checked) {
        return FaultFromError(checked.error());
      }
    }
  }
  auto volume_id = OptionalString(spec, "volume_uuid");
  if (!volume_id) {
    return Fault(400,
                 "Invalid input for field/attribute attachment: 'volume_uuid' is a required "
                 "property");
  }
  std::optional<std::string> instance;
  if (spec.contains("instance_uuid") && !spec["instance_uuid"].is_null()) {
    instance = OptionalString(spec, "instance_uuid");
    if (!instance) {
      return Fault(400, "Invalid input for field/attribute instance_uuid: not a string");
    }
  }
  std::string mode = "null";
  if (spec.contains("mode") && context.version >= kAttachModeMicroversion) {
    auto wanted = OptionalString(spec, "mode");
    if (!wanted || (*wanted != "rw" && *wanted != "ro")) {
      return Fault(400, "Invalid input for field/attribute mode: must be 'rw' or 'ro'");
    }
    mode = *wanted;
  }
  auto volume = VisibleVolume(context, *volume_id);
  if (!volume) {
    return volume.error();
  }
  if (std::string(domain::ApiName(volume->status)).find("error") != std::string::npos) {
    return Fault(400,
                 "Invalid volume: Volume " + volume->id + " status is " +
                     std::string(domain::ApiName(volume->status)) + "; it cannot be attached.");
  }
  // The (deprecated) readonly flag of os-update_readonly_flag wins over the requested mode, as
  // in Cinder's attachment_create.
  if (IsReadonly(*volume)) {
    mode = "ro";
  }
  auto attachment =
      Reserve(context, *volume, std::move(instance), mode, AttachmentStatus::kReserved);
  if (!attachment) {
    return attachment.error();
  }
  // An empty connector (cinderclient's attachment-create without --connect) is no connector.
  if (spec.contains("connector") && !spec["connector"].is_null() &&
      !(spec["connector"].is_object() && spec["connector"].empty())) {
    auto reread = VisibleVolume(context, volume->id);
    if (!reread) {
      return reread.error();
    }
    auto connected = Connect(*reread, *attachment, spec["connector"]);
    if (!connected) {
      return connected.error();
    }
    return JsonResponse(200, {{"attachment", View(*connected, true)}});
  }
  return JsonResponse(200, {{"attachment", View(*attachment, true)}});
}

HttpResponse AttachmentsApi::Show(const RequestContext& context, std::string_view attachment_id) {
  auto attachment = VisibleAttachment(context, attachment_id);
  if (!attachment) {
    return attachment.error();
  }
  return JsonResponse(200, {{"attachment", View(*attachment, true)}});
}

HttpResponse AttachmentsApi::List(const RequestContext& context,
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
  if (request.QueryValue("volume_id", &value)) {
    query.filters.push_back(Expectation::Equals("volume_id", value));
  }
  if (request.QueryValue("instance_id", &value)) {
    query.filters.push_back(Expectation::Equals("instance_uuid", value));
  }
  if (request.QueryValue("status", &value) || request.QueryValue("attach_status", &value)) {
    std::vector<ports::Value> stored;
    for (AttachmentStatus status : domain::AttachmentStatusesShownAs(value)) {
      stored.push_back(AttachmentStatusValue(status));
    }
    query.filters.push_back(Expectation::In("status", stored));
  }
  query.sort = {ports::SortKey{"created_at", false}};
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
  auto rows = store_.List(ports::Table::kAttachments, query);
  if (!rows) {
    if (rows.error().code == ErrorCode::kNotFound) {
      return Fault(404, "Marker " + marker + " could not be found.");
    }
    return FaultFromError(rows.error());
  }
  json items = json::array();
  std::string last_id;
  for (const ports::Row& row : *rows) {
    auto attachment = FromRow(row);
    if (!attachment) {
      return FaultFromError(attachment.error());
    }
    items.push_back(View(*attachment, detail));
    last_id = attachment->id;
  }
  json body = {{"attachments", items}};
  if (!items.empty() && static_cast<std::int64_t>(items.size()) == limit) {
    body["attachments_links"] = json::array(
        {{{"rel", "next"},
          {"href",
           NextLink(context, request, detail ? "attachments/detail" : "attachments", last_id)}}});
  }
  return JsonResponse(200, body);
}

HttpResponse AttachmentsApi::Update(const RequestContext& context,
                                    const HttpRequest& request,
                                    std::string_view attachment_id) {
  auto body = ParseBody(request, "attachment", {"connector"});
  if (!body) {
    return FaultFromError(body.error());
  }
  if (!body->contains("connector") || !(*body)["connector"].is_object()) {
    return Fault(400,
                 "Invalid input for field/attribute attachment: 'connector' is a required "
                 "property");
  }
  auto attachment = VisibleAttachment(context, attachment_id);
  if (!attachment) {
    return attachment.error();
  }
  auto volume = VisibleVolume(context, attachment->volume_id);
  if (!volume) {
    return volume.error();
  }
  if (std::string(domain::ApiName(volume->status)).find("error") != std::string::npos) {
    return Fault(409, "Volume " + volume->id + " is in an error state; it cannot be attached.");
  }
  auto connected = Connect(*volume, *attachment, (*body)["connector"]);
  if (!connected) {
    return connected.error();
  }
  return JsonResponse(200, {{"attachment", View(*connected, true)}});
}

HttpResponse AttachmentsApi::Action(const RequestContext& context,
                                    const HttpRequest& request,
                                    std::string_view attachment_id) {
  return Action(context, json::parse(request.body, nullptr, false), attachment_id);
}

HttpResponse AttachmentsApi::Action(const RequestContext& context,
                                    const json& body,
                                    std::string_view attachment_id) {
  if (body.is_discarded() || !body.is_object() || body.size() != 1) {
    return Fault(400, "Malformed request body");
  }
  if (body.begin().key() != "os-complete" || context.version < kCompleteMicroversion) {
    return Fault(400, "There is no such action: " + body.begin().key());
  }
  auto attachment = VisibleAttachment(context, attachment_id);
  if (!attachment) {
    return attachment.error();
  }
  const std::string now = FormatTimestamp(clock_.WallNow());
  auto completed = store_.ConditionalUpdate(
      ports::Table::kAttachments,
      attachment->id,
      {{"status", AttachmentStatusValue(AttachmentStatus::kAttached)},
       {"attach_time", now},
       {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0}),
       Expectation::In("status",
                       {AttachmentStatusValue(AttachmentStatus::kAttaching),
                        AttachmentStatusValue(AttachmentStatus::kAttached)})},
      {});
  if (!completed) {
    return FaultFromError(completed.error());
  }
  if (!completed->has_value()) {
    return Fault(400,
                 "Invalid attachment: Attachment " + attachment->id + " is " +
                     std::string(domain::ApiName(attachment->status)) +
                     "; only an attachment with a connection can be completed.");
  }
  Refresh(attachment->volume_id);
  HttpResponse response;
  response.status = 204;
  return response;
}

HttpResponse AttachmentsApi::Delete(const RequestContext& context, std::string_view attachment_id) {
  auto attachment = VisibleAttachment(context, attachment_id);
  if (!attachment) {
    return attachment.error();
  }
  auto volume = VisibleVolume(context, attachment->volume_id);
  if (!volume) {
    return volume.error();
  }
  if (auto ended = Disconnect(*volume, *attachment); !ended) {
    return ended.error();
  }
  auto remaining = AttachmentsOf(volume->id);
  if (!remaining) {
    return FaultFromError(remaining.error());
  }
  json items = json::array();
  for (const Attachment& other : *remaining) {
    items.push_back(View(other, false));
  }
  return JsonResponse(200, {{"attachments", items}});
}

bool AttachmentsApi::IsLegacyAction(std::string_view action) {
  return std::find(kLegacyActions.begin(), kLegacyActions.end(), action) != kLegacyActions.end();
}

HttpResponse AttachmentsApi::LegacyAction(const RequestContext& context,
                                          std::string_view action,
                                          const json& argument,
                                          std::string_view volume_id) {
  auto volume = VisibleVolume(context, volume_id);
  if (!volume) {
    return volume.error();
  }
  auto attachments = AttachmentsOf(volume->id);
  if (!attachments) {
    return FaultFromError(attachments.error());
  }
  // The attachment a legacy call is about: the newest one not yet attached (reserve,
  // initialize, attach), or the one named / the newest attached one (terminate, detach).
  auto pending = [&]() -> std::optional<Attachment> {
    for (auto it = attachments->rbegin(); it != attachments->rend(); ++it) {
      if (it->status != AttachmentStatus::kAttached &&
          it->status != AttachmentStatus::kErrorDetaching) {
        return *it;
      }
    }
    return std::nullopt;
  };
  auto attached = [&](const std::optional<std::string>& id) -> std::optional<Attachment> {
    for (auto it = attachments->rbegin(); it != attachments->rend(); ++it) {
      if (id ? it->id == *id : it->status == AttachmentStatus::kAttached) {
        return *it;
      }
    }
    return std::nullopt;
  };
  const std::string now = FormatTimestamp(clock_.WallNow());

  if (action == "os-reserve") {
    // Cinder shows a reserved volume as attaching in the legacy flow.
    auto reserved = Reserve(context, *volume, std::nullopt, "null", AttachmentStatus::kAttaching);
    return reserved ? Accepted() : reserved.error();
  }
  if (action == "os-unreserve") {
    if (auto attachment = pending(); attachment && !attachment->connection_info) {
      if (auto ended = Disconnect(*volume, *attachment); !ended) {
        return ended.error();
      }
    }
    return Accepted();
  }
  if (action == "os-initialize_connection") {
    if (!argument.is_object() || !argument.contains("connector") ||
        !argument["connector"].is_object()) {
      return Fault(400, "Must specify 'connector'");
    }
    std::optional<Attachment> attachment = pending();
    if (!attachment) {
      auto reserved = Reserve(context, *volume, std::nullopt, "null", AttachmentStatus::kReserved);
      if (!reserved) {
        return reserved.error();
      }
      attachment = *reserved;
      auto reread = VisibleVolume(context, volume->id);
      if (!reread) {
        return reread.error();
      }
      *volume = *reread;
    }
    auto connected = Connect(*volume, *attachment, argument["connector"]);
    if (!connected) {
      return connected.error();
    }
    return JsonResponse(
        200, {{"connection_info", ParseJsonOr(connected->connection_info, json::object())}});
  }
  if (action == "os-attach") {
    auto mountpoint = OptionalString(argument, "mountpoint");
    if (!mountpoint) {
      return Fault(400, "Must specify 'mountpoint'");
    }
    auto instance = OptionalString(argument, "instance_uuid");
    auto host_name = OptionalString(argument, "host_name");
    if (!instance && !host_name) {
      return Fault(400, "Invalid request to attach volume to an invalid target");
    }
    std::string mode = OptionalString(argument, "mode").value_or("rw");
    if (mode != "rw" && mode != "ro") {
      return Fault(400,
                   "Invalid request to attach volume with an invalid mode. Attaching mode "
                   "should be 'rw' or 'ro'");
    }
    if (IsReadonly(*volume) && mode != "ro") {
      return Fault(400, "Invalid attaching mode '" + mode + "' for volume " + volume->id + ".");
    }
    std::optional<Attachment> attachment = pending();
    if (!attachment) {
      auto reserved = Reserve(context, *volume, instance, mode, AttachmentStatus::kReserved);
      if (!reserved) {
        return reserved.error();
      }
      attachment = *reserved;
    }
    ports::Row values = {{"status", AttachmentStatusValue(AttachmentStatus::kAttached)},
                         {"mountpoint", *mountpoint},
                         {"attach_mode", mode},
                         {"attach_time", now},
                         {"updated_at", now}};
    values["instance_uuid"] = TextOrNull(instance);
    if (host_name) {
      values["attached_host"] = *host_name;
    }
    auto done = store_.ConditionalUpdate(
        ports::Table::kAttachments,
        attachment->id,
        values,
        {Expectation::Equals("deleted", std::int64_t{0}),
         Expectation::Equals("status", AttachmentStatusValue(attachment->status))},
        {});
    if (!done) {
      return FaultFromError(done.error());
    }
    if (!done->has_value()) {
      return Fault(409, "Attachment " + attachment->id + " changed meanwhile; retry the request");
    }
    // Cinder's admin metadata of an attach: readonly "False" unless set, and the mode it is
    // attached in (shown in the volume's metadata until it is detached).
    auto noted = ChangeMetadataColumn(
        store_,
        ports::Table::kVolumes,
        volume->id,
        "admin_metadata",
        [&mode](const ports::Row&, Metadata current) -> tl::expected<Metadata, HttpResponse> {
          current.emplace("readonly", "False");
          current["attached_mode"] = mode;
          return current;
        },
        Fault(404, "Volume " + volume->id + " could not be found."));
    if (!noted) {
      log::Warn(
          "attachment.attached_mode_not_noted",
          {{"volume_id", volume->id}, {"status", static_cast<long long>(noted.error().status)}});
    }
    Refresh(volume->id);
    return Accepted();
  }
  if (action == "os-begin_detaching" || action == "os-roll_detaching") {
    const bool begin = action == "os-begin_detaching";
    auto changed = store_.ConditionalUpdate(
        ports::Table::kVolumes,
        volume->id,
        {{"status", Status(begin ? VolumeStatus::kDetaching : VolumeStatus::kInUse)},
         {"operation_id", NewUuid()},
         {"updated_at", now}},
        {Expectation::Equals("deleted", std::int64_t{0}),
         Expectation::Equals("status",
                             Status(begin ? VolumeStatus::kInUse : VolumeStatus::kDetaching))},
        {});
    if (!changed) {
      return FaultFromError(changed.error());
    }
    if (!changed->has_value() && begin) {
      return Fault(400,
                   "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and "
                   "attach_status must be 'attached' to detach.");
    }
    return Accepted();  // Rolling back a detach that is not under way is a no-op, as in Cinder.
  }
  if (action == "os-terminate_connection" || action == "os-detach") {
    std::optional<std::string> wanted;
    if (action == "os-detach") {
      wanted = OptionalString(argument, "attachment_id");
    } else if (!argument.is_object() || !argument.contains("connector")) {
      return Fault(400, "Must specify 'connector'");
    }
    std::optional<Attachment> attachment = attached(wanted);
    if (!attachment && !wanted) {
      attachment = pending();
    }
    if (!attachment) {
      if (wanted) {
        // Already ended (os-terminate_connection ends the export and the attachment with it):
        // detaching it again is a no-op, as long as it was this volume's.
        auto row = store_.Get(ports::Table::kAttachments, *wanted);
        if (row && TextOr(*row, "volume_id", "") == volume->id &&
            IntegerOr(*row, "deleted", 0) != 0) {
          Refresh(volume->id);
          return Accepted();
        }
        return Fault(404, AttachmentNotFound(*wanted));
      }
      Refresh(volume->id);
      return Accepted();  // Nothing attached: already detached (a repeated call).
    }
    if (auto ended = Disconnect(*volume, *attachment); !ended) {
      return ended.error();
    }
    return Accepted();
  }
  return Fault(400, "There is no such action: " + std::string(action));
}

}  // namespace clinker::services
