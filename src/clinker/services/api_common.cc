#include "clinker/services/api_common.h"

namespace clinker::services {
namespace {

std::string_view FaultName(int status) {
  switch (status) {
    case 400:
      return "badRequest";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "itemNotFound";
    case 405:
      return "badMethod";
    case 409:
      return "conflictingRequest";
    case 413:
      return "overLimit";
    case 415:
      return "badMediaType";
    case 501:
      return "notImplemented";
    case 503:
      return "serviceUnavailable";
    default:
      return "computeFault";
  }
}

}  // namespace

HttpResponse JsonResponse(int status, const nlohmann::json& body) {
  HttpResponse response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

HttpResponse Fault(int status, std::string_view message) {
  nlohmann::json body;
  body[std::string(FaultName(status))] = {{"code", status}, {"message", std::string(message)}};
  return JsonResponse(status, body);
}

HttpResponse FaultFromError(const Error& error) {
  switch (error.code) {
    case ErrorCode::kNotFound:
      return Fault(404, error.message);
    case ErrorCode::kInvalidArgument:
      return Fault(400, error.message);
    case ErrorCode::kConflict:
    case ErrorCode::kBusy:
      return Fault(409, error.message);
    case ErrorCode::kUnavailable:
    case ErrorCode::kOutcomeUnknown:
    case ErrorCode::kFenced:
      return Fault(503, "The service is temporarily unavailable: " + error.message);
    case ErrorCode::kDriverFailed:
    case ErrorCode::kInternal:
      return Fault(500,
                   "The server has either erred or is incapable of performing the requested "
                   "operation.");
  }
  return Fault(500, "internal error");
}

}  // namespace clinker::services
