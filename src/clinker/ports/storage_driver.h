// StorageDriver: the back-end that holds volume data.
//
// Contract, for every adapter:
// - Thread safe for different volumes. Callers serialise operations on one volume with its lock
//   (services/lock_names.h); drivers need not.
// - Blocking: an operation returns when it is done on the back-end (or failed).
// - Idempotent, because jobs are delivered at least once: creating a volume that exists with the
//   same size succeeds; deleting a volume that does not exist succeeds.
// - Errors: kDriverFailed (the back-end refused or failed; the message says why, for the user),
//   kInvalidArgument (the request can never succeed, e.g. an existing volume of another size).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "clinker/core/error.h"

namespace clinker::ports {

struct VolumeSpec {
  std::string volume_id;
  std::int64_t size_gib = 0;
  std::string operation_id;  // Idempotency key of the job that asks for this work.
};

struct BackendStats {
  std::string backend_name;  // e.g. "file"
  std::int64_t total_capacity_gib = 0;
  std::int64_t free_capacity_gib = 0;
};

class StorageDriver {
 public:
  virtual ~StorageDriver() = default;
  virtual Result<void> CreateVolume(const VolumeSpec& spec) = 0;
  virtual Result<void> DeleteVolume(std::string_view volume_id, std::string_view operation_id) = 0;
  virtual Result<BackendStats> GetStats() = 0;
};

}  // namespace clinker::ports
