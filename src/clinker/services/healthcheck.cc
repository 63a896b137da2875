#include "clinker/services/healthcheck.h"

#include <utility>

#include <nlohmann/json.hpp>

#include "clinker/services/api_common.h"

namespace clinker::services {
namespace {

// Whether the client prefers JSON: oslo answers in the first of text/plain, application/json and
// text/html named by Accept (text/html is answered as text here).
bool PrefersJson(const ports::HttpRequest& request) {
  const std::string accept = request.Header("Accept");
  const std::size_t json = accept.find("application/json");
  if (json == std::string::npos) {
    return false;
  }
  const std::size_t text = accept.find("text/");
  return text == std::string::npos || json < text;
}

}  // namespace

ports::HttpResponse Healthcheck::Answer(const ports::HttpRequest& request, bool detailed) const {
  if (request.method != "GET" && request.method != "HEAD") {
    ports::HttpResponse refused = Fault(405, "The method is not allowed for this resource.");
    refused.headers.emplace_back("Allow", "GET, HEAD");
    return refused;
  }
  bool healthy = true;
  std::vector<std::string> reasons;
  nlohmann::json details = nlohmann::json::array();
  for (const HealthProbe& probe : probes_) {
    std::optional<std::string> failure = probe.failure();
    if (failure) {
      healthy = false;
      reasons.push_back(probe.name + ": " + *failure);
    }
    details.push_back({{"class", probe.name},
                       {"reason", failure ? *failure : std::string("OK")},
                       {"details", failure ? "failing" : "passing"}});
  }
  if (healthy) {
    reasons = {"OK"};
  }
  ports::HttpResponse response;
  response.status = healthy ? 200 : 503;
  if (detailed) {
    response.content_type = "application/json";
    response.body = nlohmann::json{{"detailed", true}, {"reasons", details}}.dump();
  } else if (PrefersJson(request)) {
    response.content_type = "application/json";
    response.body = nlohmann::json{{"detailed", false}, {"reasons", reasons}}.dump();
  } else {
    response.content_type = "text/plain";
    for (const std::string& reason : reasons) {
      response.body += (response.body.empty() ? "" : "\n") + reason;
    }
  }
  // Probes answer for now: a cache in between would hide a node that went unwell.
  response.headers.emplace_back("Cache-Control", "no-store");
  if (request.method == "HEAD") {
    response.body.clear();
  }
  return response;
}

}  // namespace clinker::services
