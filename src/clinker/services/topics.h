// Job queue topics, in one place.
//
// - "scheduler": volume creations waiting for a back-end to be chosen.
// - "volume.<cluster>@<backend>": jobs for a clustered back-end, shared by every volume service of
//   the cluster; whichever member takes a job does it (Active/Active).
// - "volume.<host>@<backend>": jobs for one volume service: an unclustered back-end's jobs, and
//   work that must reach that one node. A clustered volume service consumes both of its topics.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace clinker::services {

inline std::string SchedulerTopic() {
  return "scheduler";
}

// `backend_address` is "<host>@<backend>" or "<cluster>@<backend>", the part of a volume's host
// or cluster_name before any "#pool".
inline std::string VolumeTopic(std::string_view backend_address) {
  return "volume." + std::string(backend_address);
}

// "<host>@<backend>#<pool>" -> "<host>@<backend>".
inline std::string BackendAddressOf(std::string_view volume_host) {
  return std::string(volume_host.substr(0, volume_host.find('#')));
}

// The topic of a scheduled volume's jobs: its cluster's when it has one, else its host's.
inline std::string VolumeJobTopic(const std::optional<std::string>& cluster_name,
                                  const std::string& host) {
  return VolumeTopic(BackendAddressOf(cluster_name ? *cluster_name : host));
}

}  // namespace clinker::services
