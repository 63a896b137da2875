// ServicesApi: the Cinder v3 admin views of the services and clusters tables, transport-free:
//   GET /os-services[?binary=&host=]                          (every microversion)
//   GET /clusters, /clusters/detail [?name=&binary=&is_up=&disabled=&num_hosts=&num_down_hosts=]
//   GET /clusters/{name}[?binary=cinder-volume]               (3.7+; ApiService answers 404 below)
//   GET /os-availability-zone                                 (every microversion, any caller)
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
#include "clinker/services/capability_cache.h"

namespace clinker::services {

// The first microversion with /clusters and the `cluster` field of os-services.
inline constexpr Microversion kClustersMicroversion{3, 7};

struct ServicesApiOptions {
  // Cinder's service_down_time. The caller applies domain::EffectiveServiceDownTime if it knows
  // the report interval.
  std::chrono::milliseconds service_down_time = domain::kDefaultServiceDownTime;
  // The volume services' capability reports, for /capabilities and /scheduler-stats (this API
  // server listens to the same fanout as the schedulers); nullptr: no back-end is known, so
  // get_pools lists none and capabilities answer 502 as Cinder's RPC timeout does.
  const CapabilityCache* capabilities = nullptr;
  // Reports older than this are not shown (a back-end that stopped reporting is gone), as the
  // scheduler ignores them.
  std::chrono::milliseconds capability_max_age{30000};
  // The pool every back-end has (SchedulerOptions::pool).
  std::string pool = "default";
};

class ServicesApi {
 public:
  ServicesApi(ports::StateStore& store, const ports::Clock& clock, ServicesApiOptions options);

  HttpResponse ListServices(const RequestContext& context, const HttpRequest& request);
  HttpResponse ListClusters(const RequestContext& context, const HttpRequest& request, bool detail);
  HttpResponse ShowCluster(const RequestContext& context,
                           const HttpRequest& request,
                           std::string_view name);
  // GET /os-availability-zone (any caller, as Cinder): {"availabilityZoneInfo": [{"zoneName",
  // "zoneState": {"available"}}]}, one zone per availability zone of the cinder-volume services
  // (up or down), available unless every service in it is disabled; none without volume services,
  // as Cinder's list_availability_zones.
  HttpResponse ListAvailabilityZones(const RequestContext& context);

  // PUT /os-services/{enable,disable,disable-log-reason,freeze,thaw,failover_host,failover}
  // (cinder/api/contrib/services.py update), with Cinder's validation errors. Freeze also
  // disables the service (reason "frozen") and thaw enables it, as Cinder's volume manager does;
  // a disabled or frozen back-end takes no new volumes (Scheduler). Back-ends are not
  // replication-capable, so failover is always refused as Cinder refuses it then.
  HttpResponse UpdateService(const RequestContext& context,
                             const HttpRequest& request,
                             std::string_view action);

  // GET /os-hosts[?zone=], GET /os-hosts/{host} (cinder/api/contrib/hosts.py).
  HttpResponse ListHosts(const RequestContext& context, const HttpRequest& request);
  HttpResponse ShowHost(const RequestContext& context, std::string_view host);

  // GET /scheduler-stats/get_pools[?detail=&name=] (cinder/api/contrib/scheduler_stats.py): the
  // pools of the back-ends with a fresh report whose service is up, enabled and not frozen, as
  // Cinder's scheduler lists them.
  HttpResponse GetPools(const RequestContext& context, const HttpRequest& request);

  // GET /capabilities/{host} (cinder/api/contrib/capabilities.py, views/capabilities.py).
  HttpResponse ShowCapabilities(const RequestContext& context, std::string_view host);

 private:
  // The policy hook: a response to send instead (403), or nullopt to go on. `rule` names the
  // Cinder policy, e.g. "volume_extension:services:index".
  std::optional<HttpResponse> Authorize(const RequestContext& context, std::string_view rule) const;

  ports::StateStore& store_;
  const ports::Clock& clock_;
  ServicesApiOptions options_;
};

}  // namespace clinker::services
