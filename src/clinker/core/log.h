// Structured logging: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-25T10:00:00.123456","level":"info","event":"volume.created","volume_id":"..."}
// Events are dotted nouns ("job.acked"); fields carry ids and figures, never prose alone.
// Thread safe. Logging never fails the caller.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace clinker::log {

enum class Level { kDebug, kInfo, kWarn, kError };

using FieldValue = std::variant<std::string_view, std::string, long long, double, bool>;
using Field = std::pair<std::string_view, FieldValue>;

// Sets the minimum level and the output format ("json" or "text"). Call once, before threads.
void Configure(Level min_level, bool json);

// Parses "debug", "info", "warn", "error". False for anything else.
bool ParseLevel(std::string_view text, Level* level);

void Write(Level level, std::string_view event, std::initializer_list<Field> fields);

inline void Debug(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kDebug, event, fields);
}

inline void Info(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kInfo, event, fields);
}

inline void Warn(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kWarn, event, fields);
}

inline void Error(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kError, event, fields);
}

}  // namespace clinker::log
