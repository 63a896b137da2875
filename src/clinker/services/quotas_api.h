// QuotasApi: Cinder's os-quota-sets, os-quota-class-sets and limits handlers, transport-free.
//
// - GET /os-quota-sets/{project}: the project's limits ({"quota_set": {"id", <resource>: limit}});
//   with ?usage=true each resource is {"limit", "in_use", "reserved": 0} (reserved is always 0:
//   usage is counted with the writes, nothing is reserved ahead). Policy
//   volume_extension:quotas:show with the target project (a member sees its own project's, an
//   admin any).
// - GET /os-quota-sets/{project}/defaults: the defaults (configuration, then the class
//   "default").
// - PUT /os-quota-sets/{project} {"quota_set": {...}}: sets limits (integers >= -1, any known
//   resource; unknown keys 400; a limit below what is in use 400, as Cinder) and answers the
//   limits without "id". DELETE: the project's own limits go (200).
// - GET / PUT /os-quota-class-sets/{class}: a class's limits; "default" sets the defaults.
// - GET /limits: {"limits": {"rate": [], "absolute": {maxTotal..., total...Used}}}; an admin may
//   name another project with ?project_id= (3.39+).
//
// Thread safe (no mutable state of its own); blocks on the StateStore.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"
#include "clinker/services/quotas.h"

namespace clinker::services {

// The 413 (or other) fault for a write refused by its usage changes; any other error as
// FaultFromError answers it.
HttpResponse QuotaFault(const Error& error);

// Cinder's VolumeSizeExceedsLimit (413) when `size_gib` passes the per_volume_gigabytes limit.
std::optional<HttpResponse> PerVolumeLimitExceeded(const QuotaMap& limits, std::int64_t size_gib);

class QuotasApi {
 public:
  QuotasApi(QuotaService& quotas, const ports::Clock& clock);

  HttpResponse Show(const RequestContext& context,
                    const HttpRequest& request,
                    std::string_view target_project);
  HttpResponse Defaults(const RequestContext& context, std::string_view target_project);
  HttpResponse Update(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view target_project);
  HttpResponse Delete(const RequestContext& context, std::string_view target_project);

  HttpResponse ShowClass(const RequestContext& context, std::string_view class_name);
  HttpResponse UpdateClass(const RequestContext& context,
                           const HttpRequest& request,
                           std::string_view class_name);

  HttpResponse Limits(const RequestContext& context, const HttpRequest& request);

 private:
  QuotaService& quotas_;
  const ports::Clock& clock_;
};

}  // namespace clinker::services
