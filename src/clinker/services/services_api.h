// ServicesApi: the Cinder v3 admin views of the services and clusters tables, transport-free:
//   GET /os-services[?binary=&host=]                          (every microversion)
//   GET /clusters, /clusters/detail [?name=&binary=&is_up=&disabled=&num_hosts=&num_down_hosts=]
//   GET /clusters/{name}[?binary=cinder-volume]               (3.7+; ApiService answers 404 below)
// with Cinder's JSON shapes (cinder/api/v3/services.py, clusters.py, views/clusters.py).
//
// Up or down is computed at each request from the heartbeats ServiceRegistry writes
// (domain/service_state.h), against service_down_time: nothing stores liveness, so every API
// server answers alike whichever node heartbeats.
//
// Replication fields (replication_status, active_backend_id, frozen) are shown for cinder-volume
// services as Cinder does, with the values of a back end without replication
// ("not-capable", null, false); backend_state (3.49+) is beyond this server's microversions.
//
// Policy: these are admin endpoints in Cinder. Authorize() is the one place a policy check
// happens; today it refuses non-admin callers with 403 (under noauth every caller is admin).
//
// Thread safe (holds no mutable state). Blocks on the StateStore; engine trouble is a 503.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "clinker/domain/service_state.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"

namespace clinker::services {

// The first microversion with /clusters and the `cluster` field of os-services.
inline constexpr Microversion kClustersMicroversion{3, 7};

struct ServicesApiOptions {
  // Cinder's service_down_time. The caller applies domain::EffectiveServiceDownTime if it knows
  // the report interval.
  std::chrono::milliseconds service_down_time = domain::kDefaultServiceDownTime;
};

class ServicesApi {
 public:
  ServicesApi(ports::StateStore& store, const ports::Clock& clock, ServicesApiOptions options);

  HttpResponse ListServices(const RequestContext& context, const HttpRequest& request);
  HttpResponse ListClusters(const RequestContext& context, const HttpRequest& request, bool detail);
  HttpResponse ShowCluster(const RequestContext& context,
                           const HttpRequest& request,
                           std::string_view name);

 private:
  // The policy hook: a response to send instead (403), or nullopt to go on. `rule` names the
  // Cinder policy, e.g. "volume_extension:services:index".
  std::optional<HttpResponse> Authorize(const RequestContext& context, std::string_view rule) const;

  ports::StateStore& store_;
  const ports::Clock& clock_;
  ServicesApiOptions options_;
};

}  // namespace clinker::services
