#include "clinker/core/log.h"

#include <atomic>
#include <chrono>
#include <memory>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "clinker/core/time_format.h"

namespace clinker::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
std::atomic<bool> g_json{true};

spdlog::logger& Logger() {
  // spdlog's stderr sink serialises whole lines across threads; the pattern is the bare message
  // because the message already is the structured record.
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto created = std::make_shared<spdlog::logger>(
        "clinker", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    created->set_pattern("%v");
    created->set_level(spdlog::level::trace);
    created->flush_on(spdlog::level::trace);
    return created;
  }();
  return *logger;
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

nlohmann::json ToJson(const FieldValue& value) {
  return std::visit(
      [](const auto& v) -> nlohmann::json {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::string_view>) {
          return std::string(v);
        } else {
          return v;
        }
      },
      value);
}

std::string ToText(const FieldValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::string_view> || std::is_same_v<V, std::string>) {
          return std::string(v);
        } else if constexpr (std::is_same_v<V, bool>) {
          return v ? "true" : "false";
        } else {
          return std::to_string(v);
        }
      },
      value);
}

}  // namespace

void Configure(Level min_level, bool json) {
  g_min_level = static_cast<int>(min_level);
  g_json = json;
}

bool ParseLevel(std::string_view text, Level* level) {
  for (Level candidate : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (text == LevelName(candidate)) {
      *level = candidate;
      return true;
    }
  }
  return false;
}

void Write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (static_cast<int>(level) < g_min_level.load(std::memory_order_relaxed)) {
    return;
  }
  std::string timestamp = FormatTimestamp(std::chrono::system_clock::now());
  std::string line;
  if (g_json.load(std::memory_order_relaxed)) {
    nlohmann::json record;
    record["ts"] = timestamp;
    record["level"] = LevelName(level);
    record["event"] = event;
    for (const auto& [key, value] : fields) {
      record[std::string(key)] = ToJson(value);
    }
    // Replace invalid UTF-8 rather than throw: logging never fails the caller.
    line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = timestamp + " " + std::string(LevelName(level)) + " " + std::string(event);
    for (const auto& [key, value] : fields) {
      line += " " + std::string(key) + "=" + ToText(value);
    }
  }
  Logger().info(line);
}

}  // namespace clinker::log
