// Healthcheck: GET and HEAD /healthcheck, answered as oslo.middleware's healthcheck answers them,
// because that is what every Cinder deployment's load balancer and orchestrator probes.
//
// - Every probe passes: 200, body "OK" (text/plain), or {"detailed": false, "reasons": ["OK"]}
//   when the client accepts application/json first.
// - A probe fails: 503 with the failing probes' reasons, one per line (or in "reasons").
// - Detailed (`?detail`, for admins only: the caller decides): every probe by name, with its
//   outcome and reason, as JSON ({"detailed": true, "reasons": [{"class", "reason",
//   "details"}]}), so an operator sees which part of the node is unwell.
// - HEAD: the same status and headers, no body.
//
// Probes are called on every request, from the API's worker threads, one after the other; each
// must be cheap, bounded in time and thread safe (a probe of the state store is one small read
// with the store's own timeouts). The Healthcheck itself is immutable after construction and
// thread safe.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "clinker/ports/http_types.h"

namespace clinker::services {

struct HealthProbe {
  std::string name;  // "database", "volume service host@backend", ...
  // Why this part is unwell now, or nothing when it is well.
  std::function<std::optional<std::string>()> failure;
};

class Healthcheck {
 public:
  explicit Healthcheck(std::vector<HealthProbe> probes) : probes_(std::move(probes)) {}

  // The answer to `request` (GET or HEAD /healthcheck; anything else is 405). `detailed`: the
  // caller asked for the detailed form and may see it.
  ports::HttpResponse Answer(const ports::HttpRequest& request, bool detailed) const;

 private:
  const std::vector<HealthProbe> probes_;
};

}  // namespace clinker::services
