// Pieces shared by the API handlers: the request context, Cinder-shaped faults and JSON helpers.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "clinker/core/error.h"
#include "clinker/ports/http_types.h"
#include "clinker/services/microversion.h"

namespace clinker::services {

using ports::HttpRequest;
using ports::HttpResponse;

// Who is asking, at which microversion. Built by ApiService from the token and the URL.
struct RequestContext {
  std::string user_id;
  std::string project_id;
  bool is_admin = false;
  Microversion version;
  // "http://host:port/v3/<project>" or "http://host:port/v3" when the URL had no project id:
  // links repeat the form the client used.
  std::string link_base;
  std::string bookmark_base;  // The same without "/v3".
};

// A Cinder fault: {"<name>": {"code": N, "message": "..."}}, the name chosen by status
// (badRequest, itemNotFound, ...; computeFault for anything unlisted), as cinderclient expects.
HttpResponse Fault(int status, std::string_view message);

// Maps an error from a port to the fault a client should see. Engine trouble is 503 (retry);
// never leaks internals beyond the error's message.
HttpResponse FaultFromError(const Error& error);

HttpResponse JsonResponse(int status, const nlohmann::json& body);

}  // namespace clinker::services
