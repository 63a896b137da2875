// Lock names, in one place, so every worker that touches a resource takes the same lock.
//
// - "volume-<id>": held by the volume manager for the whole of any job that changes the volume
//   (create, delete), from reading its status to writing the final one.
#pragma once

#include <string>
#include <string_view>

namespace clinker::services {

inline std::string VolumeLockName(std::string_view volume_id) {
  return "volume-" + std::string(volume_id);
}

}  // namespace clinker::services
