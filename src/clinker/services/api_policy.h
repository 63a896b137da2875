// Which policy rule (Cinder's rule names, domain/policy.h) guards an API request: the rule of
// the route that serves it in the route table (api_routes.h), which ApiService dispatches with.
//
// ApiService checks the rule before the handler runs, with the caller's own project as the
// target: the handlers then show a caller only what it may see (another project's resource is
// 404 to a non-admin), so the rule decides what a caller may do, and visibility what to.
//
// Pure: no I/O, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "clinker/ports/http_types.h"

namespace clinker::services {

// `rest` is the path after /v3[/{project_id}] split on '/', e.g. {"volumes", "<id>", "action"}.
// Empty when the route has no rule of its own: reads of attachments, /os-availability-zone and
// /extensions (as Cinder), and routes that do not exist (the router answers 404 / 405). A volume,
// snapshot or backup action that is not listed is guarded by the resource's update rule, so a new
// action is never left unguarded.
std::string_view PolicyActionFor(const ports::HttpRequest& request,
                                 const std::vector<std::string>& rest);

// A second rule some routes must also pass (Cinder checks it inside the handler): os-services
// freeze, thaw and failover; volume:update_volume_metadata for os-set_image_metadata and
// volume:delete_volume_metadata for os-unset_image_metadata. Empty for every other route.
std::string_view SecondaryPolicyActionFor(const ports::HttpRequest& request,
                                          const std::vector<std::string>& rest);

}  // namespace clinker::services
