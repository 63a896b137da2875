// User messages (Cinder API 3.3): what went wrong in an asynchronous request, told to the
// project that made it (cinder/message/api.py, api/v3/messages.py, api/v3/views/messages.py).
//
//   GET    /messages        list (an admin sees every project's; others their project's),
//                           newest first; from 3.5 with limit / marker / sort
//   GET    /messages/{id}   show (404 "Message <id> could not be found." when not visible)
//   DELETE /messages/{id}   soft delete, 204
//
// Below 3.3 ApiService answers 404, as Cinder does for an unknown resource. RecordUserMessage is
// how a service (today the scheduler, when no back-end can take a new volume) leaves one; the
// shown text is derived from the stored action and detail codes, as Cinder's is, so nothing
// internal reaches the user.
//
// Thread safe (no mutable state). Blocks on the StateStore; engine trouble is a 503.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"

namespace clinker::services {

inline constexpr Microversion kMessagesMicroversion{3, 3};

// Cinder's message_field codes (Action, Detail) used by Clinker.
namespace message_field {
inline constexpr std::string_view kResourceVolume = "VOLUME";
inline constexpr std::string_view kActionScheduleAllocateVolume = "001";
inline constexpr std::string_view kDetailUnknownError = "001";
inline constexpr std::string_view kDetailNoBackendAvailable = "003";
}  // namespace message_field

// Cinder's message_ttl default: 30 days.
inline constexpr std::chrono::seconds kDefaultMessageTtl{2592000};

struct UserMessage {
  std::string project_id;
  std::string request_id;  // The request that started the failed work; generated when empty.
  std::string resource_type{message_field::kResourceVolume};
  std::string resource_uuid;
  std::string action_id;
  std::string detail_id;
  std::string level = "ERROR";
};

// Inserts the message (event_id "VOLUME_<type>_<action>_<detail>" as Cinder builds it), expiring
// `ttl` after now.
Result<void> RecordUserMessage(ports::StateStore& store,
                               const ports::Clock& clock,
                               const UserMessage& message,
                               std::chrono::seconds ttl = kDefaultMessageTtl);

// "<action text>:<detail text>", as Cinder's _build_user_message.
std::string UserMessageText(std::string_view action_id, std::string_view detail_id);

class MessagesApi {
 public:
  MessagesApi(ports::StateStore& store, const ports::Clock& clock, std::int64_t max_limit = 1000)
      : store_(store), clock_(clock), max_limit_(max_limit) {}

  HttpResponse List(const RequestContext& context, const HttpRequest& request);
  HttpResponse Show(const RequestContext& context, std::string_view id);
  HttpResponse Delete(const RequestContext& context, std::string_view id);

 private:
  ports::StateStore& store_;
  const ports::Clock& clock_;
  const std::int64_t max_limit_;
};

}  // namespace clinker::services
