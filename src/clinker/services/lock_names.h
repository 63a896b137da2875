// Lock names and modes, in one place, so every worker that touches a resource takes the same lock
// in the mode its operation needs. Build every ports::LockRequest here.
//
// | name         | mode                                   | holder, and for how long           |
// |--------------|----------------------------------------|------------------------------------|
// | volume-<id>  | exclusive for an operation that writes | VolumeManager::Handle, for the     |
// |              | the volume (domain::Access::kWrite:    | whole job: from reading the        |
// |              | create, delete); shared for one that   | volume's status to writing the     |
// |              | only reads it (kRead; none yet)        | final one                          |
//
// No request sets max_readers yet. A later one must give every request of its name the same cap
// (see the reader-limit rule in ports/lock_manager.h).
#pragma once

#include <string>
#include <string_view>

#include "clinker/domain/status.h"
#include "clinker/ports/lock_manager.h"

namespace clinker::services {

inline std::string VolumeLockName(std::string_view volume_id) {
  return "volume-" + std::string(volume_id);
}

inline ports::LockMode LockModeFor(domain::Access access) {
  return access == domain::Access::kWrite ? ports::LockMode::kExclusive : ports::LockMode::kShared;
}

// The lock a job running `operation` on volume `volume_id` holds.
inline ports::LockRequest VolumeLockRequest(std::string_view volume_id,
                                            domain::Operation operation) {
  return ports::LockRequest{
      VolumeLockName(volume_id), LockModeFor(domain::AccessOf(operation)), /*max_readers=*/0};
}

}  // namespace clinker::services
