// Job queue topics, in one place.
//
// - "scheduler": volume creations waiting for a back-end to be chosen.
// - "volume.<host>@<backend>": jobs for the volume service(s) of one back-end.
#pragma once

#include <string>
#include <string_view>

namespace clinker::services {

inline std::string SchedulerTopic() {
  return "scheduler";
}

// `backend_address` is "<host>@<backend>", the part of a volume's host before any "#pool".
inline std::string VolumeTopic(std::string_view backend_address) {
  return "volume." + std::string(backend_address);
}

// "<host>@<backend>#<pool>" -> "<host>@<backend>".
inline std::string BackendAddressOf(std::string_view volume_host) {
  return std::string(volume_host.substr(0, volume_host.find('#')));
}

}  // namespace clinker::services
