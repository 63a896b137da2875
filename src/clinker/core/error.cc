#include "clinker/core/error.h"

namespace clinker {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return "NotFound";
    case ErrorCode::kInvalidArgument:
      return "InvalidArgument";
    case ErrorCode::kConflict:
      return "Conflict";
    case ErrorCode::kBusy:
      return "Busy";
    case ErrorCode::kFenced:
      return "Fenced";
    case ErrorCode::kUnavailable:
      return "Unavailable";
    case ErrorCode::kOutcomeUnknown:
      return "OutcomeUnknown";
    case ErrorCode::kDriverFailed:
      return "DriverFailed";
    case ErrorCode::kInternal:
      return "Internal";
    case ErrorCode::kUnauthenticated:
      return "Unauthenticated";
    case ErrorCode::kQuotaExceeded:
      return "QuotaExceeded";
  }
  return "Unknown";
}

std::string Error::ToString() const {
  std::string out(ErrorCodeName(code));
  out += ": ";
  out += message;
  return out;
}

}  // namespace clinker
