// Goal: check the route table (api_routes.h) that drives dispatch, policy and the listing: every
// route's rules are rules of Policy::Default(); every route is reached by a request of its own
// method, path and action at its lowest microversion (no row is shadowed by an earlier one), and
// PolicyActionFor names that route's rule; matching answers 405 for a known path with another
// method, 404 for an unknown path, and a route below its microversion as "version not found"
// (while a parameter route takes over a literal one outside its range: /volumes/summary below
// 3.12 is the volume "summary"); an action body is parsed once into the match; and docs/API.md
// lists exactly the table's rows, so the documentation cannot drift from the code.
//
// Method: the table itself (Routes(), RouteListing()), MatchRoute on synthetic segments, and
// docs/API.md read from the source tree (CLINKER_DOCS_DIR, set by test/CMakeLists.txt). The
// listing is printed (`clinkerd --print-routes` prints the same) when the docs differ.
#include "clinker/services/api_routes.h"

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/domain/policy.h"
#include "clinker/services/api_policy.h"

namespace clinker::services {
namespace {

// The segments of a route's path with each "{name}" replaced by a value.
std::vector<std::string> SegmentsOf(std::string_view pattern) {
  std::vector<std::string> segments;
  for (std::string_view segment : PathSegments(pattern)) {
    segments.emplace_back(segment.front() == '{' ? std::string_view("x1") : segment);
  }
  return segments;
}

std::string BodyOf(const Route& route) {
  if (route.action.empty()) {
    return "";
  }
  // "*" stands for any action no other row names.
  return route.action == "*" ? R"({"os-no-such-action": {}})"
                             : R"({")" + std::string(route.action) + R"(": {}})";
}

std::string Describe(const Route& route) {
  return std::string(route.method) + " " + std::string(route.path) + " " +
         std::string(route.action);
}

TEST(ApiRoutesTest, EveryRuleOfTheTableIsADefaultRule) {
  const domain::Policy policy = domain::Policy::Default();
  ports::HttpRequest forced;
  forced.query.emplace_back("force", "true");
  for (const Route& route : Routes()) {
    SCOPED_TRACE(Describe(route));
    for (std::string_view rule :
         {route.rule, route.second_rule, route.RuleFor(forced), route.RuleFor({})}) {
      if (!rule.empty()) {
        EXPECT_TRUE(policy.Has(rule)) << rule;
      }
    }
    EXPECT_NE(route.handler, nullptr);
    EXPECT_LE(route.min_version, route.max_version);
  }
}

TEST(ApiRoutesTest, EveryRouteIsReachedByItsOwnRequest) {
  for (const Route& route : Routes()) {
    SCOPED_TRACE(Describe(route));
    std::vector<std::string> segments = SegmentsOf(route.path);
    std::string body = BodyOf(route);
    nlohmann::json parsed;
    RouteMatch match = MatchRoute(route.method, segments, body, &route.min_version, &parsed);
    ASSERT_EQ(match.outcome, RouteMatch::Outcome::kMatched);
    EXPECT_EQ(match.route, &route);
    ports::HttpRequest request;
    request.method = std::string(route.method);
    request.body = body;
    EXPECT_EQ(PolicyActionFor(request, segments), route.rule);
    EXPECT_EQ(SecondaryPolicyActionFor(request, segments), route.second_rule);
    if (!route.action.empty()) {
      // The body is parsed once, by the match, and handed to the handler.
      EXPECT_TRUE(parsed.is_object());
      EXPECT_EQ(match.action, route.action == "*" ? "os-no-such-action" : route.action);
    }
  }
}

TEST(ApiRoutesTest, MethodsPathsAndMicroversions) {
  const Microversion v30{3, 0};
  const Microversion latest = kMaxMicroversion;
  auto outcome = [](std::string_view method, std::string_view path, const Microversion& version) {
    const std::vector<std::string> segments = SegmentsOf(path);
    return MatchRoute(method, segments, "", &version).outcome;
  };
  using O = RouteMatch::Outcome;
  EXPECT_EQ(outcome("GET", "/volumes/v1", v30), O::kMatched);
  EXPECT_EQ(outcome("POST", "/volumes/v1", v30), O::kMethodNotAllowed);
  EXPECT_EQ(outcome("PUT", "/volumes/detail", v30), O::kMethodNotAllowed);
  EXPECT_EQ(outcome("GET", "/volumes/v1/nothing", v30), O::kNotFound);
  EXPECT_EQ(outcome("GET", "/no-such-collection", v30), O::kNotFound);
  EXPECT_EQ(outcome("GET", "/clusters", v30), O::kVersionNotFound);
  EXPECT_EQ(outcome("DELETE", "/clusters", v30), O::kNotFound);
  EXPECT_EQ(outcome("DELETE", "/clusters", latest), O::kMethodNotAllowed);
  EXPECT_EQ(outcome("GET", "/attachments", v30), O::kVersionNotFound);
  EXPECT_EQ(outcome("GET", "/attachments", latest), O::kMatched);
  // Cinder's os-services resource has no show: another method is 404.
  EXPECT_EQ(outcome("GET", "/os-services/freeze", v30), O::kNotFound);
  EXPECT_EQ(outcome("GET", "/os-services/enable", v30), O::kNotFound);
  // Not exclusive: the backup "import_record", the cluster "enable".
  const std::vector<std::string> import_path = SegmentsOf("/backups/import_record");
  RouteMatch import = MatchRoute("GET", import_path, "", &v30);
  ASSERT_EQ(import.outcome, O::kMatched);
  EXPECT_EQ(import.route->path, "/backups/{backup_id}");
  const std::vector<std::string> cluster_path = SegmentsOf("/clusters/enable");
  RouteMatch cluster = MatchRoute("GET", cluster_path, "", &latest);
  ASSERT_EQ(cluster.outcome, O::kMatched);
  EXPECT_EQ(cluster.route->path, "/clusters/{cluster_name}");
  // Below 3.12 the summary is a volume named "summary" (404 from the handler), as in Cinder.
  const std::vector<std::string> summary_path = SegmentsOf("/volumes/summary");
  RouteMatch summary = MatchRoute("GET", summary_path, "", &v30);
  ASSERT_EQ(summary.outcome, O::kMatched);
  EXPECT_EQ(summary.route->path, "/volumes/{volume_id}");
  ASSERT_EQ(summary.params.size(), 1u);
  EXPECT_EQ(summary.params[0], "summary");
  EXPECT_EQ(MatchRoute("GET", summary_path, "", &latest).route->path, "/volumes/summary");
  EXPECT_EQ(outcome("PUT", "/volumes/summary", latest), O::kMethodNotAllowed);
  // An unreadable action body goes to the "*" row (the handler answers 400).
  const std::vector<std::string> action_path = SegmentsOf("/volumes/v1/action");
  for (std::string_view body : {"", "not json", "[1]", R"({"a": {}, "b": {}})"}) {
    RouteMatch action = MatchRoute("POST", action_path, std::string(body), &v30);
    ASSERT_EQ(action.outcome, O::kMatched) << body;
    EXPECT_EQ(action.route->action, "*") << body;
    EXPECT_EQ(action.action, "") << body;
  }
}

TEST(ApiRoutesTest, ProjectLessUrlsNameTheTablesCollections) {
  for (std::string_view collection : {"volumes",
                                      "os-hosts",
                                      "scheduler-stats",
                                      "capabilities",
                                      "messages",
                                      "limits",
                                      "os-quota-class-sets",
                                      "extensions",
                                      "group_snapshots",
                                      "volume-transfers"}) {
    EXPECT_TRUE(IsRouteCollection(collection)) << collection;
  }
  EXPECT_FALSE(IsRouteCollection("0123abcd"));
  EXPECT_FALSE(IsRouteCollection("detail"));
}

// docs/API.md's "Route table" holds exactly RouteListing()'s rows.
TEST(ApiRoutesTest, DocsListEveryRoute) {
  std::ifstream file(std::string(CLINKER_DOCS_DIR) + "/API.md");
  ASSERT_TRUE(file.good()) << "cannot read " << CLINKER_DOCS_DIR << "/API.md";
  std::set<std::string> documented;
  std::string line;
  while (std::getline(file, line)) {
    if (line.starts_with("| `")) {
      documented.insert(line);
    }
  }
  std::vector<std::string> rows = RouteListing();
  std::set<std::string> listed(rows.begin(), rows.end());
  EXPECT_EQ(listed.size(), rows.size()) << "two routes print the same row";
  std::ostringstream all;
  bool missing = false;
  for (const std::string& row : rows) {
    all << row << "\n";
    if (!documented.contains(row)) {
      ADD_FAILURE() << "docs/API.md does not list: " << row;
      missing = true;
    }
  }
  for (const std::string& row : documented) {
    if (row.starts_with("| `GET` |") || row.starts_with("| `POST` |") ||
        row.starts_with("| `PUT` |") || row.starts_with("| `DELETE` |")) {
      EXPECT_TRUE(listed.contains(row)) << "docs/API.md lists a route the table has not: " << row;
    }
  }
  if (missing) {
    ADD_FAILURE() << "The table's rows (`clinkerd --print-routes`):\n" << all.str();
  }
}

}  // namespace
}  // namespace clinker::services
