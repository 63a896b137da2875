// ApiService: the Cinder v3 REST API, transport-free: routing, noauth authentication,
// microversion negotiation, the versions documents, and the headers every response carries.
//
// noauth (the embedded default, as Cinder's `auth_strategy = noauth`): the token is
// "user:project" (project defaults to user), the caller is admin, and a request without a token
// gets 204 with a token to use, as Cinder's middleware answers.
//
// Thread safe: Handle may run on any number of threads at once.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "clinker/domain/policy.h"
#include "clinker/ports/http_types.h"
#include "clinker/services/api_routes.h"
#include "clinker/services/attachments_api.h"
#include "clinker/services/backups_api.h"
#include "clinker/services/group_types_api.h"
#include "clinker/services/groups_api.h"
#include "clinker/services/healthcheck.h"
#include "clinker/services/messages_api.h"
#include "clinker/services/qos_api.h"
#include "clinker/services/quotas_api.h"
#include "clinker/services/services_api.h"
#include "clinker/services/snapshots_api.h"
#include "clinker/services/transfers_api.h"
#include "clinker/services/types_api.h"
#include "clinker/services/volumes_api.h"

namespace clinker::services {

class Authenticator;

// Who may call what. The default is Cinder's noauth: X-Auth-Token "<user>:<project>" is trusted,
// every caller has the admin role; the policy is still checked (a policy file may narrow it).
struct ApiAuthOptions {
  // auth_strategy = keystone: every /v3 request needs an X-Auth-Token the authenticator accepts
  // (401 with WWW-Authenticate otherwise; 503 while Keystone cannot answer). nullptr: noauth.
  // Must outlive the ApiService; thread-safe.
  Authenticator* authenticator = nullptr;
  // Told to clients in 401s: WWW-Authenticate: Keystone uri="<this>".
  std::string www_authenticate_uri;
  // The rules requests are checked against (api_policy.h says which rule guards which route).
  domain::Policy policy = domain::Policy::Default();
};

class ApiService {
 public:
  ApiService(VolumesApi& volumes,
             SnapshotsApi& snapshots,
             AttachmentsApi& attachments,
             BackupsApi& backups,
             ServicesApi& services,
             TypesApi& types,
             ApiAuthOptions auth = {},
             MessagesApi* messages = nullptr)  // nullptr: /messages answers 404.
      : auth_(std::move(auth)) {
    handlers_.volumes = &volumes;
    handlers_.snapshots = &snapshots;
    handlers_.attachments = &attachments;
    handlers_.backups = &backups;
    handlers_.services = &services;
    handlers_.types = &types;
    handlers_.messages = messages;
    // A cascading volume delete deletes each snapshot as DELETE /snapshots/{id} does.
    volumes.SetSnapshotDeleter(
        [&snapshots](const RequestContext& context, std::string_view snapshot_id) {
          return snapshots.Delete(context, snapshot_id);
        });
  }

  HttpResponse Handle(const HttpRequest& request);

  // Serves volume transfers (/os-volume-transfer, /volume-transfers) through `transfers`, which
  // must outlive this ApiService; without it they are 404. Call before the first Handle.
  void ServeTransfers(TransfersApi* transfers) { handlers_.transfers = transfers; }

  // Serves QoS specs (/qos-specs) through `qos`, which must outlive this ApiService; without it
  // they are 404. Call before the first Handle.
  void ServeQosSpecs(QosApi* qos) { handlers_.qos = qos; }

  // Serves /os-quota-sets, /os-quota-class-sets and /limits through `quotas` (which must outlive
  // this ApiService); without it they are 404. Call before the first Handle.
  void ServeQuotas(QuotasApi* quotas) { handlers_.quotas = quotas; }

  // Serves GET /metrics (outside /v3, no token: a monitoring probe's endpoint, as oslo's
  // /healthcheck) with `metrics`' answer; without it /metrics is 404. Call before the first
  // Handle.
  void ServeMetrics(std::function<HttpResponse()> metrics) { metrics_ = std::move(metrics); }

  // Serves GET and HEAD /healthcheck (outside /v3, no token, as oslo's middleware) through
  // `health`, which must outlive this ApiService; `?detail` needs an admin's token (401/403
  // otherwise). Without it /healthcheck is 404. Call before the first Handle.
  void ServeHealthcheck(const Healthcheck* health) { health_ = health; }

  // Serves group types (/group_types, 3.11+), groups (/groups, 3.13+) and group snapshots
  // (/group_snapshots, 3.14+) through these, which must outlive this ApiService; without them
  // those URLs are 404. Call before the first Handle.
  void ServeGroups(GroupTypesApi* group_types, GroupsApi* groups) {
    handlers_.group_types = group_types;
    handlers_.groups = groups;
  }

 private:
  HttpResponse RouteRequest(const HttpRequest& request);
  HttpResponse RouteV3(const HttpRequest& request);
  // Fills the caller's identity into `context` (and its policy credentials), or the response
  // that refuses the request.
  std::optional<HttpResponse> Authenticate(const HttpRequest& request,
                                           RequestContext* context,
                                           domain::PolicyCredentials* credentials);
  // Checks `rule` (when not empty) for the caller: the 403 that refuses it, or nothing.
  std::optional<HttpResponse> Enforce(std::string_view rule,
                                      const domain::PolicyCredentials& credentials,
                                      const RequestContext& context) const;
  // Whether the service answering `part` is wired (the optional ones may not be).
  bool Serves(RoutePart part) const;

  ApiHandlers handlers_;
  std::function<HttpResponse()> metrics_;
  const Healthcheck* health_ = nullptr;
  const ApiAuthOptions auth_;
};

}  // namespace clinker::services
