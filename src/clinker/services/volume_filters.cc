#include "clinker/services/volume_filters.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <string_view>

#include <nlohmann/json.hpp>

#include "clinker/services/api_common.h"

namespace clinker::services {
namespace {

using nlohmann::json;
using ports::Expectation;

// Paging, sorting and scope: not filters.
constexpr std::array<std::string_view, 9> kListParameters = {"all_tenants",
                                                             "project_id",
                                                             "limit",
                                                             "offset",
                                                             "marker",
                                                             "sort",
                                                             "sort_key",
                                                             "sort_dir",
                                                             "with_count"};
// Cinder's resource filters for volumes, plus display_name (Cinder's own name for `name`).
// name, status and availability_zone are matched by the list itself.
constexpr std::array<std::string_view, 11> kVolumeFilters = {"name",
                                                             "display_name",
                                                             "status",
                                                             "metadata",
                                                             "bootable",
                                                             "migration_status",
                                                             "availability_zone",
                                                             "group_id",
                                                             "size",
                                                             "created_at",
                                                             "updated_at"};

Error Invalid(std::string message) {
  return Error{ErrorCode::kInvalidArgument, std::move(message)};
}

bool IsAscii(std::string_view text) {
  return std::all_of(
      text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// The metadata filter: a JSON object, or the Python dict literal python-cinderclient and
// Tempest send ({'k': 'v'}), of string values.
Result<std::map<std::string, std::string>> ParseMetadataFilter(const std::string& text) {
  json parsed = json::parse(text, nullptr, false);
  if (parsed.is_discarded()) {
    std::string quoted = text;
    std::replace(quoted.begin(), quoted.end(), '\'', '"');
    parsed = json::parse(quoted, nullptr, false);
  }
  if (parsed.is_discarded() || !parsed.is_object()) {
    return tl::unexpected(Invalid("Invalid metadata filter: " + text));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : parsed.items()) {
    metadata[key] = value.is_string() ? value.get<std::string>() : value.dump();
  }
  return metadata;
}

// An ISO 8601 time ("2026-12-07T10:00:00", optional fraction, optional Z or +hh:mm) as stored:
// naive UTC "%Y-%m-%dT%H:%M:%S.%f".
std::optional<std::string> StoredTime(std::string_view text) {
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  int consumed = 0;
  const std::string owned(text);
  if (std::sscanf(owned.c_str(),
                  "%4d-%2d-%2dT%2d:%2d:%2d%n",
                  &year,
                  &month,
                  &day,
                  &hour,
                  &minute,
                  &second,
                  &consumed) != 6) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(static_cast<std::size_t>(consumed));
  std::string fraction = "000000";
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    std::size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') {
      ++digits;
    }
    if (digits == 0) {
      return std::nullopt;
    }
    for (std::size_t i = 0; i < std::min<std::size_t>(digits, 6); ++i) {
      fraction[i] = rest[i];
    }
    rest.remove_prefix(digits);
  }
  long offset_seconds = 0;
  if (rest == "Z" || rest == "z") {
    rest = {};
  } else if (!rest.empty()) {
    int offset_hours = 0;
    int offset_minutes = 0;
    const std::string zone(rest);
    if ((rest.front() != '+' && rest.front() != '-') ||
        std::sscanf(zone.c_str() + 1, "%2d:%2d", &offset_hours, &offset_minutes) != 2 ||
        zone.size() != 6) {
      return std::nullopt;
    }
    offset_seconds = (rest.front() == '-' ? -1 : 1) * (offset_hours * 3600L + offset_minutes * 60L);
  }
  std::tm parts{};
  parts.tm_year = year - 1900;
  parts.tm_mon = month - 1;
  parts.tm_mday = day;
  parts.tm_hour = hour;
  parts.tm_min = minute;
  parts.tm_sec = second;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  const std::time_t utc = timegm(&parts) - offset_seconds;
  std::tm normalised{};
  gmtime_r(&utc, &normalised);
  char buffer[40];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%S", &normalised);
  return std::string(buffer) + "." + fraction;
}

// Cinder's time comparison filter (3.60): "gt:<time>[,lt:<time>...]".
Result<std::vector<VolumeListFilters::TimeComparison>> ParseTimeComparisons(
    const std::string& column, const std::string& text) {
  static constexpr std::array<std::string_view, 6> kOperators = {
      "gt", "gte", "lt", "lte", "eq", "neq"};
  std::vector<VolumeListFilters::TimeComparison> comparisons;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) {
      end = text.size();
    }
    const std::string unit = text.substr(start, end - start);
    const std::size_t colon = unit.find(':');
    if (colon == std::string::npos) {
      return tl::unexpected(Invalid("Invalid " + column + " value"));
    }
    const std::string op = unit.substr(0, colon);
    if (std::find(kOperators.begin(), kOperators.end(), op) == kOperators.end()) {
      return tl::unexpected(Invalid("Invalid " + op + " operator"));
    }
    const std::string time_text = unit.substr(colon + 1);
    auto time = StoredTime(time_text);
    if (!time) {
      return tl::unexpected(Invalid("Invalid " + time_text + " value"));
    }
    comparisons.push_back({column, op, *time});
    start = end + 1;
  }
  return comparisons;
}

bool Compare(const std::string& value, const std::string& op, const std::string& bound) {
  if (op == "gt") {
    return value > bound;
  }
  if (op == "gte") {
    return value >= bound;
  }
  if (op == "lt") {
    return value < bound;
  }
  if (op == "lte") {
    return value <= bound;
  }
  if (op == "eq") {
    return value == bound;
  }
  return value != bound;  // neq
}

}  // namespace

bool VolumeListFilters::Matches(const Volume& volume) const {
  if (metadata) {
    for (const auto& [key, value] : *metadata) {
      auto found = volume.metadata.find(key);
      if (found == volume.metadata.end() || found->second != value) {
        return false;
      }
    }
  }
  for (const TimeComparison& comparison : times) {
    const std::optional<std::string> value = comparison.column == "created_at"
                                                 ? std::optional<std::string>(volume.created_at)
                                                 : volume.updated_at;
    // A volume never updated has no updated_at: it matches no comparison, as NULL in SQL.
    if (!value || !Compare(*value, comparison.op, comparison.time)) {
      return false;
    }
  }
  return true;
}

Result<VolumeListFilters> ParseVolumeListFilters(const ports::HttpRequest& request,
                                                 Microversion version,
                                                 bool is_admin) {
  VolumeListFilters filters;
  std::vector<std::string> invalid;
  for (const auto& [key, value] : request.query) {
    if (!IsAscii(key)) {
      return tl::unexpected(Invalid("Filter keys can only contain ASCII characters."));
    }
    if (std::find(kListParameters.begin(), kListParameters.end(), key) != kListParameters.end()) {
      continue;
    }
    if (std::find(kVolumeFilters.begin(), kVolumeFilters.end(), key) == kVolumeFilters.end()) {
      if (std::find(invalid.begin(), invalid.end(), key) == invalid.end()) {
        invalid.push_back(key);
      }
      continue;
    }
    // Filters newer than the request's microversion are dropped, as Cinder drops them.
    if ((key == "group_id" && version < Microversion{3, 10}) ||
        ((key == "created_at" || key == "updated_at") && version < Microversion{3, 60})) {
      continue;
    }
    if (key == "size") {
      const bool digits =
          !value.empty() && value.size() <= 18 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits) {
        return tl::unexpected(Invalid("Invalid size filter: " + value + " is not an integer"));
      }
      filters.where.push_back(Expectation::Equals("size_gib", std::stoll(value)));
    } else if (key == "bootable") {
      // Before 3.2 anything but false is true (Cinder's VOLUME_LIST_BOOTABLE); then strict.
      json parsed = json::parse(value, nullptr, false);
      std::optional<bool> bootable = StrictBoolean(parsed.is_discarded() ? json(value) : parsed);
      if (!bootable) {
        if (version >= Microversion{3, 2}) {
          return tl::unexpected(
              Invalid("Invalid input received: bootable=" + value + " is not a boolean"));
        }
        bootable = true;
      }
      filters.where.push_back(Expectation::Equals("bootable", std::int64_t{*bootable ? 1 : 0}));
    } else if (key == "group_id") {
      filters.where.push_back(Expectation::Equals("group_id", value));
    } else if (key == "migration_status") {
      filters.where.push_back(Expectation::Equals("migration_status", value));
    } else if (key == "metadata") {
      auto metadata = ParseMetadataFilter(value);
      if (!metadata) {
        return tl::unexpected(metadata.error());
      }
      filters.metadata = std::move(*metadata);
    } else if (key == "created_at" || key == "updated_at") {
      auto comparisons = ParseTimeComparisons(key, value);
      if (!comparisons) {
        return tl::unexpected(comparisons.error());
      }
      filters.times.insert(filters.times.end(), comparisons->begin(), comparisons->end());
    }
  }
  if (!invalid.empty()) {
    if (!is_admin) {
      std::string names;
      for (const std::string& key : invalid) {
        names += (names.empty() ? "" : ",") + key;
      }
      return tl::unexpected(Invalid("Invalid filters " + names + " are found in query options."));
    }
    filters.matches_nothing = true;
  }
  return filters;
}

}  // namespace clinker::services
