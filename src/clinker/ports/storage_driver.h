// StorageDriver: the back-end that holds volume data.
//
// Contract, for every adapter:
// - Thread safe for different volumes. Callers serialise operations on one volume with its lock
//   (services/lock_names.h); drivers need not.
// - Blocking: an operation returns when it is done on the back-end (or failed).
// - Idempotent, because jobs are delivered at least once: creating a volume that exists with the
//   same size succeeds; deleting a volume that does not exist succeeds.
// - Fencing. Every operation carries the fencing token of the lock under which the caller acts
//   (ports/lock_manager.h; 0 when it holds none). Fence(volume, token) raises the volume's fence
//   to `token`: from then on, an operation on that volume carrying a smaller token fails with
//   kFenced and changes nothing. A node that takes over a volume whose job another node left in
//   progress fences it first, so the other node, if it was only paused, cannot touch the volume's
//   data when it resumes. Fence is idempotent; fencing with a token smaller than the fence is
//   kFenced (the caller's own lock is stale). The check and the change of an operation are atomic
//   with respect to Fence. Fences outlive the volume: a stale create must not bring a deleted
//   volume back.
// - Errors: kDriverFailed (the back-end refused or failed; the message says why, for the user),
//   kInvalidArgument (the request can never succeed, e.g. an existing volume of another size),
//   kFenced (see above).
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
  std::uint64_t fencing_token = 0;
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
  virtual Result<void> DeleteVolume(std::string_view volume_id,
                                    std::string_view operation_id,
                                    std::uint64_t fencing_token) = 0;
  virtual Result<void> Fence(std::string_view volume_id, std::uint64_t fencing_token) = 0;
  virtual Result<BackendStats> GetStats() = 0;
};

}  // namespace clinker::ports
