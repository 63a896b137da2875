#include "clinker/services/microversion.h"

#include <charconv>
#include <vector>

namespace clinker::services {
namespace {

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// Cinder's regex: ^([1-9]\d*)\.([1-9]\d*|0)$
bool ParseNumber(std::string_view text, bool allow_zero, int* out) {
  if (text.empty() || text.size() > 6) {
    return false;
  }
  if (text[0] == '0' && !(allow_zero && text.size() == 1)) {
    return false;
  }
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return error == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::string Microversion::ToString() const {
  return std::to_string(major) + "." + std::to_string(minor);
}

MicroversionRequest NegotiateMicroversion(std::string_view header_value) {
  MicroversionRequest result;
  std::string_view element;
  bool found = false;
  while (!header_value.empty()) {
    std::size_t comma = header_value.find(',');
    std::string_view part = Trim(header_value.substr(0, comma));
    if (part.find("volume") != std::string_view::npos) {
      element = part;
      found = true;
      break;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    header_value.remove_prefix(comma + 1);
  }
  if (!found) {
    return result;  // 3.0 behaviour.
  }
  std::size_t space = element.find(' ');
  if (space == std::string_view::npos || Trim(element.substr(0, space)) != "volume") {
    result.outcome = MicroversionRequest::Outcome::kMalformed;
    return result;
  }
  std::string_view version = Trim(element.substr(space + 1));
  if (version == "latest") {
    result.version = kMaxMicroversion;
    return result;
  }
  std::size_t dot = version.find('.');
  Microversion parsed;
  if (dot == std::string_view::npos || !ParseNumber(version.substr(0, dot), false, &parsed.major) ||
      !ParseNumber(version.substr(dot + 1), true, &parsed.minor)) {
    result.outcome = MicroversionRequest::Outcome::kMalformed;
    return result;
  }
  if (parsed < kMinMicroversion || parsed > kMaxMicroversion) {
    result.outcome = MicroversionRequest::Outcome::kUnsupported;
    result.version = parsed;
    return result;
  }
  result.version = parsed;
  return result;
}

}  // namespace clinker::services
