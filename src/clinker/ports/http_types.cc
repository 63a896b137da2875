#include "clinker/ports/http_types.h"

#include <strings.h>

namespace clinker::ports {

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && strncasecmp(key.data(), name.data(), name.size()) == 0) {
      return value;
    }
  }
  return "";
}

bool HttpRequest::QueryValue(std::string_view name, std::string* value) const {
  for (const auto& [key, candidate] : query) {
    if (key == name) {
      *value = candidate;
      return true;
    }
  }
  value->clear();
  return false;
}

}  // namespace clinker::ports
