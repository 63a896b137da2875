// JobMessage: what a job carries through the queue. JSON on the wire so engines and versions can
// be mixed. Every job carries an operation id: delivery is at least once, and the id lets a
// worker tell the operation the resource is queued for from an old duplicate.
#pragma once

#include <string>
#include <string_view>

#include "clinker/core/error.h"
#include "clinker/domain/status.h"

namespace clinker::services {

struct JobMessage {
  domain::Operation operation = domain::Operation::kCreateVolume;
  std::string resource_id;
  std::string operation_id;
  std::string project_id;

  std::string ToJson() const;
  // kInvalidArgument for anything that is not a well-formed job.
  static Result<JobMessage> FromJson(std::string_view text);
};

}  // namespace clinker::services
