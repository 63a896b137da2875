#include "clinker/services/api_policy.h"

#include "clinker/services/api_routes.h"

namespace clinker::services {

// Both answer from the route table (api_routes.cc), which ApiService dispatches with: the rule a
// request is checked against is the one of the route that serves it.
std::string_view PolicyActionFor(const ports::HttpRequest& request,
                                 const std::vector<std::string>& rest) {
  RouteMatch match = MatchRoute(request.method, rest, request.body, nullptr);
  return match.outcome == RouteMatch::Outcome::kMatched ? match.route->RuleFor(request) : "";
}

std::string_view SecondaryPolicyActionFor(const ports::HttpRequest& request,
                                          const std::vector<std::string>& rest) {
  RouteMatch match = MatchRoute(request.method, rest, request.body, nullptr);
  return match.outcome == RouteMatch::Outcome::kMatched ? match.route->second_rule : "";
}

}  // namespace clinker::services
