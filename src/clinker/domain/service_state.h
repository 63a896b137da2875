// Service and cluster liveness, as Cinder decides it (cinder/objects/service.py `is_up`,
// cinder/objects/cluster.py `is_up`, the clusters table's num_hosts / num_down_hosts).
//
// A service is up if its last heartbeat is no older than service_down_time; a heartbeat from
// the future (another node's clock ahead of ours) counts as up, as in Cinder, because skew is
// not the service's fault. A service with no heartbeat (never beat, or stopped cleanly) is down.
// A cluster is up if any member is up; its last heartbeat is its members' latest.
//
// Pure code: no I/O, no clock of its own (the caller passes `now`), thread safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>

namespace clinker::domain {

using WallTimePoint = std::chrono::system_clock::time_point;

// Cinder's default service_down_time and report_interval.
inline constexpr std::chrono::seconds kDefaultServiceDownTime{60};
inline constexpr std::chrono::seconds kDefaultReportInterval{10};

// Heartbeats are stored as integer milliseconds since the Unix epoch (services.heartbeat_at), so
// every engine compares them the same way.
inline std::int64_t ToHeartbeatMillis(WallTimePoint time) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

inline WallTimePoint FromHeartbeatMillis(std::int64_t millis) {
  return WallTimePoint(
      std::chrono::duration_cast<WallTimePoint::duration>(std::chrono::milliseconds(millis)));
}

// Cinder's Service.basic_config_check: a down time not longer than the report interval would
// show healthy services as down between beats, so it becomes 2.5 report intervals.
inline std::chrono::milliseconds EffectiveServiceDownTime(
    std::chrono::milliseconds down_time, std::chrono::milliseconds report_interval) {
  if (down_time <= report_interval) {
    return report_interval * 5 / 2;
  }
  return down_time;
}

inline bool IsServiceUp(std::optional<WallTimePoint> last_heartbeat,
                        WallTimePoint now,
                        std::chrono::milliseconds down_time) {
  return last_heartbeat.has_value() && *last_heartbeat >= now - down_time;
}

struct ClusterLiveness {
  int num_hosts = 0;
  int num_down_hosts = 0;
  std::optional<WallTimePoint> last_heartbeat;  // The latest member heartbeat, if any.
  bool is_up = false;
};

// `member_heartbeats`: one entry per live (not deleted) member service, nullopt for a member
// without a heartbeat.
inline ClusterLiveness SummarizeCluster(
    std::span<const std::optional<WallTimePoint>> member_heartbeats,
    WallTimePoint now,
    std::chrono::milliseconds down_time) {
  ClusterLiveness liveness;
  for (const std::optional<WallTimePoint>& heartbeat : member_heartbeats) {
    ++liveness.num_hosts;
    if (IsServiceUp(heartbeat, now, down_time)) {
      liveness.is_up = true;
    } else {
      ++liveness.num_down_hosts;
    }
    if (heartbeat && (!liveness.last_heartbeat || *heartbeat > *liveness.last_heartbeat)) {
      liveness.last_heartbeat = heartbeat;
    }
  }
  return liveness;
}

}  // namespace clinker::domain
