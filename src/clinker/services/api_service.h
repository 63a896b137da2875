// ApiService: the Cinder v3 REST API, transport-free: routing, noauth authentication,
// microversion negotiation, the versions documents, and the headers every response carries.
//
// noauth (the embedded default, as Cinder's `auth_strategy = noauth`): the token is
// "user:project" (project defaults to user), the caller is admin, and a request without a token
// gets 204 with a token to use, as Cinder's middleware answers.
//
// Thread safe: Handle may run on any number of threads at once.
#pragma once

#include <string>
#include <vector>

#include "clinker/ports/http_types.h"
#include "clinker/services/attachments_api.h"
#include "clinker/services/backups_api.h"
#include "clinker/services/services_api.h"
#include "clinker/services/snapshots_api.h"
#include "clinker/services/volumes_api.h"

namespace clinker::services {

class ApiService {
 public:
  ApiService(VolumesApi& volumes,
             SnapshotsApi& snapshots,
             AttachmentsApi& attachments,
             BackupsApi& backups,
             ServicesApi& services)
      : volumes_(volumes),
        snapshots_(snapshots),
        attachments_(attachments),
        backups_(backups),
        services_(services) {}

  HttpResponse Handle(const HttpRequest& request);

 private:
  HttpResponse Route(const HttpRequest& request);
  HttpResponse RouteV3(const HttpRequest& request);
  HttpResponse RouteServices(const RequestContext& context,
                             const HttpRequest& request,
                             const std::vector<std::string>& rest);
  HttpResponse RouteVolumes(const RequestContext& context,
                            const HttpRequest& request,
                            const std::vector<std::string>& rest);
  HttpResponse RouteSnapshots(const RequestContext& context,
                              const HttpRequest& request,
                              const std::vector<std::string>& rest);
  HttpResponse RouteAttachments(const RequestContext& context,
                                const HttpRequest& request,
                                const std::vector<std::string>& rest);
  HttpResponse RouteBackups(const RequestContext& context,
                            const HttpRequest& request,
                            const std::vector<std::string>& rest);
  HttpResponse RouteClusters(const RequestContext& context,
                             const HttpRequest& request,
                             const std::vector<std::string>& rest);

  VolumesApi& volumes_;
  SnapshotsApi& snapshots_;
  AttachmentsApi& attachments_;
  BackupsApi& backups_;
  ServicesApi& services_;
};

}  // namespace clinker::services
