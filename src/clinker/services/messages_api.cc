#include "clinker/services/messages_api.h"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <utility>

#include "clinker/core/log.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {
namespace {

using nlohmann::json;
using ports::Expectation;
using ports::Row;
using ports::Table;

struct Field {
  std::string_view id;
  std::string_view text;
};

// cinder/message/message_field.py: Action.ALL and Detail.ALL.
constexpr std::array kActions = std::to_array<Field>({
    {"001", "schedule allocate volume"},
    {"002", "attach volume"},
    {"003", "copy volume to image"},
    {"004", "update attachment"},
    {"005", "copy image to volume"},
    {"006", "unmanage volume"},
    {"007", "extend volume"},
    {"008", "create volume from backend storage"},
    {"009", "snapshot create"},
    {"010", "snapshot delete"},
    {"011", "snapshot update"},
    {"012", "snapshot from volume"},
    {"013", "backup create"},
    {"014", "backup delete"},
    {"015", "restore backup"},
    {"016", "reimage volume"},
});

constexpr std::array kDetails = std::to_array<Field>({
    {"001", "An unknown error occurred."},
    {"002", "Driver is not initialized at present."},
    {"003", "Could not find any available weighted backend."},
    {"004", "Failed to upload volume to image at backend."},
    {"005", "Volume's attach mode is invalid."},
    {"006", "Not enough quota resource for operation."},
    {"007", "Image used for creating volume exceeds available space."},
    {"008", "Unmanaging encrypted volumes is not supported."},
    {"009", "Compute service failed to extend volume."},
    {"010", "Volume Driver failed to extend volume."},
    {"011", "Image signature verification failed."},
    {"012", "Driver failed to create the volume."},
    {"013", "Snapshot failed to create."},
    {"014", "Volume snapshot update metadata failed."},
    {"015", "Snapshot is busy."},
    {"016", "Snapshot failed to delete."},
    {"017", "Backup status is invalid."},
    {"018", "Backup service is down."},
    {"019", "Failed to get backup device from the volume service."},
    {"020", "Backup driver failed to create backup."},
    {"021", "Failed to attach volume."},
    {"022", "Failed to detach volume."},
    {"023", "Cleanup of temporary volume/snapshot failed."},
    {"024", "Backup failed to schedule. Service not found for creating backup."},
    {"025", "Backup driver failed to delete backup."},
    {"026", "Backup driver failed to restore backup."},
    {"027", "Volume status is invalid."},
    {"028", "Compute service failed to reimage volume."},
    {"029",
     "The image disk format must be the same as the volume format for the volume type "
     "you are requesting."},
    {"030", "Insufficient free virtual space available in the backing store."},
});

std::string_view Lookup(std::span<const Field> fields, std::string_view id) {
  for (const Field& field : fields) {
    if (field.id == id) {
      return field.text;
    }
  }
  return {};
}

std::optional<std::string> SortColumn(std::string_view key) {
  static const std::map<std::string_view, std::string_view> kColumns = {
      {"id", "id"},
      {"created_at", "created_at"},
      {"updated_at", "updated_at"},
      {"event_id", "event_id"},
      {"message_level", "message_level"},
      {"resource_type", "resource_type"},
      {"resource_uuid", "resource_uuid"},
      {"request_id", "request_id"},
      {"project_id", "project_id"},
  };
  auto it = kColumns.find(key);
  if (it == kColumns.end()) {
    return std::nullopt;
  }
  return std::string(it->second);
}

bool IsDeleted(const Row& row) {
  auto found = row.find("deleted");
  return found != row.end() && std::holds_alternative<std::int64_t>(found->second) &&
         std::get<std::int64_t>(found->second) != 0;
}

json View(const RequestContext& context, const Row& row) {
  std::string id = TextOr(row, "id", "");
  json message = {
      {"id", id},
      {"event_id", TextOr(row, "event_id", "")},
      {"user_message", UserMessageText(TextOr(row, "action_id", ""), TextOr(row, "detail_id", ""))},
      {"message_level", TextOr(row, "message_level", "")},
      {"created_at", TextOr(row, "created_at", "")},
      {"guaranteed_until", TextOr(row, "expires_at", "")},
      {"request_id", TextOr(row, "request_id", "")},
      {"links",
       json::array({{{"href", context.link_base + "/messages/" + id}, {"rel", "self"}},
                    {{"href", context.bookmark_base + "/messages/" + id}, {"rel", "bookmark"}}})},
  };
  // Cinder shows these two only when set.
  if (std::string type = TextOr(row, "resource_type", ""); !type.empty()) {
    message["resource_type"] = type;
  }
  if (std::string uuid = TextOr(row, "resource_uuid", ""); !uuid.empty()) {
    message["resource_uuid"] = uuid;
  }
  return message;
}

}  // namespace

std::string UserMessageText(std::string_view action_id, std::string_view detail_id) {
  std::string_view action = Lookup(kActions, action_id);
  std::string_view detail = Lookup(kDetails, detail_id);
  return std::string(action.empty() ? "unknown action" : action) + ":" +
         std::string(detail.empty() ? Lookup(kDetails, message_field::kDetailUnknownError)
                                    : detail);
}

Result<void> RecordUserMessage(ports::StateStore& store,
                               const ports::Clock& clock,
                               const UserMessage& message,
                               std::chrono::seconds ttl) {
  WallTime now = clock.WallNow();
  std::string detail = message.detail_id.empty() ? std::string(message_field::kDetailUnknownError)
                                                 : message.detail_id;
  Row row = {
      {"id", NewUuid()},
      {"project_id", message.project_id},
      {"request_id", message.request_id.empty() ? "req-" + NewUuid() : message.request_id},
      {"resource_type", message.resource_type},
      {"event_id", "VOLUME_" + message.resource_type + "_" + message.action_id + "_" + detail},
      {"action_id", message.action_id},
      {"detail_id", detail},
      {"message_level", message.level},
      {"expires_at", FormatTimestamp(now + ttl)},
      {"created_at", FormatTimestamp(now)},
  };
  if (!message.resource_uuid.empty()) {
    row["resource_uuid"] = message.resource_uuid;
  }
  return store.Insert(Table::kMessages, row);
}

HttpResponse MessagesApi::List(const RequestContext& context, const HttpRequest& request) {
  ports::ListQuery query;
  // An admin sees every project's messages (Cinder's project_only query), others their own.
  if (!context.is_admin) {
    query.filters.push_back(Expectation::Equals("project_id", context.project_id));
  }
  query.sort = {{"created_at", false}};
  std::optional<std::int64_t> limit;
  std::string marker;
  // Pagination and sorting arrived with 3.5; before it Cinder ignores those parameters.
  if (context.version >= Microversion{3, 5}) {
    auto sort = ParseSort(request, SortColumn);
    if (!sort) {
      return FaultFromError(sort.error());
    }
    if (!sort->empty()) {
      query.sort = *sort;
    }
    std::string value;
    if (request.QueryValue("limit", &value)) {
      auto parsed = ParseNonNegative("limit", value);
      if (!parsed) {
        return FaultFromError(parsed.error());
      }
      limit = std::min(*parsed, max_limit_);
    }
    if (request.QueryValue("marker", &marker)) {
      query.marker_id = marker;
    }
  }
  query.limit = limit.value_or(max_limit_);
  auto rows = store_.List(Table::kMessages, query);
  if (!rows) {
    if (rows.error().code == ErrorCode::kNotFound) {
      return Fault(404, "Marker " + marker + " could not be found.");
    }
    return FaultFromError(rows.error());
  }
  json items = json::array();
  for (const Row& row : *rows) {
    items.push_back(View(context, row));
  }
  json body = {{"messages", std::move(items)}};
  if (limit && !rows->empty() && static_cast<std::int64_t>(rows->size()) == *limit) {
    body["messages_links"] = json::array(
        {{{"rel", "next"},
          {"href", NextLink(context, request, "messages", TextOr(rows->back(), "id", ""))}}});
  }
  return JsonResponse(200, body);
}

HttpResponse MessagesApi::Show(const RequestContext& context, std::string_view id) {
  auto row = store_.Get(Table::kMessages, id);
  if (!row) {
    if (row.error().code != ErrorCode::kNotFound) {
      return FaultFromError(row.error());
    }
  } else if (!IsDeleted(*row) && CanSee(context, TextOr(*row, "project_id", ""))) {
    return JsonResponse(200, {{"message", View(context, *row)}});
  }
  return Fault(404, "Message " + std::string(id) + " could not be found.");
}

HttpResponse MessagesApi::Delete(const RequestContext& context, std::string_view id) {
  std::string not_found = "Message " + std::string(id) + " could not be found.";
  auto row = store_.Get(Table::kMessages, id);
  if (!row) {
    return row.error().code == ErrorCode::kNotFound ? Fault(404, not_found)
                                                    : FaultFromError(row.error());
  }
  if (IsDeleted(*row) || !CanSee(context, TextOr(*row, "project_id", ""))) {
    return Fault(404, not_found);
  }
  std::string now = FormatTimestamp(clock_.WallNow());
  auto deleted = store_.ConditionalUpdate(
      Table::kMessages,
      id,
      {{"deleted", std::int64_t{1}}, {"deleted_at", now}, {"updated_at", now}},
      {Expectation::Equals("deleted", std::int64_t{0})},
      {});
  if (!deleted) {
    return FaultFromError(deleted.error());
  }
  if (!deleted->has_value()) {
    return Fault(404, not_found);  // Deleted by a concurrent request.
  }
  HttpResponse response;
  response.status = 204;
  return response;
}

}  // namespace clinker::services
