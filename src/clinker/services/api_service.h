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

#include "clinker/ports/http_types.h"
#include "clinker/services/volumes_api.h"

namespace clinker::services {

class ApiService {
 public:
  explicit ApiService(VolumesApi& volumes) : volumes_(volumes) {}

  HttpResponse Handle(const HttpRequest& request);

 private:
  HttpResponse Route(const HttpRequest& request);
  HttpResponse RouteV3(const HttpRequest& request);

  VolumesApi& volumes_;
};

}  // namespace clinker::services
