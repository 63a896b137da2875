#include "clinker/services/job_message.h"

#include <nlohmann/json.hpp>

namespace clinker::services {

std::string JobMessage::ToJson() const {
  nlohmann::json json = {
      {"operation", domain::OperationName(operation)},
      {"resource_id", resource_id},
      {"operation_id", operation_id},
      {"project_id", project_id},
      {"version", 1},
  };
  return json.dump();
}

Result<JobMessage> JobMessage::FromJson(std::string_view text) {
  nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "job payload is not a JSON object");
  }
  for (const char* key : {"operation", "resource_id", "operation_id", "project_id"}) {
    if (!json.contains(key) || !json[key].is_string()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       std::string("job payload lacks string field ") + key);
    }
  }
  auto operation = domain::ParseOperation(json["operation"].get<std::string>());
  if (!operation) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unknown job operation " + json["operation"].get<std::string>());
  }
  JobMessage message;
  message.operation = *operation;
  message.resource_id = json["resource_id"].get<std::string>();
  message.operation_id = json["operation_id"].get<std::string>();
  message.project_id = json["project_id"].get<std::string>();
  return message;
}

}  // namespace clinker::services
