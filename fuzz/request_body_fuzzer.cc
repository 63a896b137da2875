// Fuzz target: the JSON validation of each resource's request body. The first input byte picks
// an operation (volume, snapshot, backup and attachment create and update, their actions,
// metadata, types, QoS specs, transfers), the second the microversion; the rest is the body,
// which goes through the API as a client's would (the NUL and nesting checks, ParseBody with the
// operation's allowed properties, the handler's validators) against an in-memory world where the
// resources it names exist. Then the same bytes go to the shared validators directly
// (ParseBody's forms, ParseMetadata, ParseSize, OptionalText, StrictBoolean) and to the nesting
// check, whose answer must equal the depth of what the JSON parser builds.
//
// Findings: a crash or sanitizer report; a 5xx other than 503 (bad input must be a 4xx); a
// nesting depth that disagrees with the parsed document.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "clinker/core/json_depth.h"
#include "clinker/services/api_common.h"

#include "fuzz_world.h"

namespace {

using clinker::fuzz::FuzzWorld;

enum class Target { kNone, kVolume, kSnapshot, kBackup, kAttachment };

struct Operation {
  std::string_view method;
  std::string_view path;  // "{id}" stands for the target's id.
  Target target;
};

constexpr std::array kOperations = {
    Operation{"POST", "volumes", Target::kNone},
    Operation{"PUT", "volumes/{id}", Target::kVolume},
    Operation{"POST", "volumes/{id}/action", Target::kVolume},
    Operation{"POST", "volumes/{id}/metadata", Target::kVolume},
    Operation{"PUT", "volumes/{id}/metadata", Target::kVolume},
    Operation{"PUT", "volumes/{id}/metadata/key", Target::kVolume},
    Operation{"POST", "snapshots", Target::kNone},
    Operation{"PUT", "snapshots/{id}", Target::kSnapshot},
    Operation{"POST", "snapshots/{id}/action", Target::kSnapshot},
    Operation{"POST", "snapshots/{id}/metadata", Target::kSnapshot},
    Operation{"POST", "backups", Target::kNone},
    Operation{"PUT", "backups/{id}", Target::kBackup},
    Operation{"POST", "backups/{id}/action", Target::kBackup},
    Operation{"POST", "backups/{id}/restore", Target::kBackup},
    Operation{"POST", "attachments", Target::kNone},
    Operation{"PUT", "attachments/{id}", Target::kAttachment},
    Operation{"POST", "attachments/{id}/action", Target::kAttachment},
    Operation{"POST", "types", Target::kNone},
    Operation{"POST", "qos-specs", Target::kNone},
    Operation{"POST", "volume-transfers", Target::kNone},
    Operation{"POST", "os-volume-transfer", Target::kNone},
    Operation{"PUT", "os-services/disable", Target::kNone},
    Operation{"POST", "volumes/{id}/action", Target::kNone},  // No such volume.
};

std::size_t ParsedDepth(const nlohmann::json& value) {
  if (!value.is_structured()) {
    return 0;
  }
  std::size_t deepest = 0;
  for (const auto& element : value) {
    std::size_t depth = ParsedDepth(element);
    deepest = depth > deepest ? depth : deepest;
  }
  return deepest + 1;
}

[[noreturn]] void Finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "finding: %s: %s\n", what, detail.c_str());
  std::abort();
}

void CheckValidators(const std::string& body) {
  using clinker::ports::HttpRequest;
  HttpRequest request;
  request.body = body;
  (void)clinker::services::ParseBody(request, "volume");
  auto parsed =
      clinker::services::ParseBody(request,
                                   "volume",
                                   {"size", "name", "description", "metadata", "volume_type"},
                                   {"OS-SCH-HNT:scheduler_hints"});
  if (!parsed) {
    return;
  }
  const nlohmann::json& object = *parsed;
  if (!object.is_object()) {
    return;
  }
  bool present = false;
  (void)clinker::services::OptionalText(object, "name", &present);
  (void)clinker::services::AliasedText(object, "name", "display_name", &present);
  for (const auto& [key, value] : object.items()) {
    (void)clinker::services::ParseMetadata(value);
    (void)clinker::services::ParseSize(value, 1000);
    (void)clinker::services::StrictBoolean(value);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  FuzzWorld::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const Operation& operation = kOperations[data[0] % kOperations.size()];
  const int minor = data[1] % (clinker::services::kMaxMicroversion.minor + 1);
  std::string body(reinterpret_cast<const char*>(data + 2), size - 2);

  // The nesting check against the parser: equal on any text the parser accepts (within the
  // bound, so that the parser's recursion stays shallow).
  std::size_t depth = clinker::JsonNestingDepth(body, clinker::kMaxJsonRequestDepth);
  if (depth <= clinker::kMaxJsonRequestDepth && body.find('\0') == std::string::npos) {
    nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_discarded() && ParsedDepth(parsed) != depth) {
      Finding("JsonNestingDepth",
              std::to_string(depth) + " for a document " + std::to_string(ParsedDepth(parsed)) +
                  " deep");
    }
    CheckValidators(body);
  }

  FuzzWorld world;
  std::string path(operation.path);
  if (std::size_t id = path.find("{id}"); id != std::string::npos) {
    std::string value = "00000000-0000-0000-0000-000000000000";
    switch (operation.target) {
      case Target::kVolume:
        value = world.volume_id();
        break;
      case Target::kSnapshot:
        value = world.snapshot_id();
        break;
      case Target::kBackup:
        value = world.backup_id();
        break;
      case Target::kAttachment:
        value = world.attachment_id();
        break;
      case Target::kNone:
        break;
    }
    path.replace(id, 4, value);
  }
  clinker::ports::HttpRequest request = FuzzWorld::Request(
      std::string(operation.method), FuzzWorld::Path(path), body, "3." + std::to_string(minor));
  clinker::ports::HttpResponse response = world.Send(request);
  if (response.status >= 500 && response.status != 503) {
    Finding("server error",
            request.method + " " + request.path + " " + std::to_string(response.status) + " " +
                response.body);
  }
  return 0;
}
