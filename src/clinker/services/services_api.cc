#include "clinker/services/services_api.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <utility>
#include <vector>

#include "clinker/core/time_format.h"

namespace clinker::services {
namespace {

using nlohmann::json;
using ports::Expectation;
using ports::Row;
using ports::Table;
using ports::Value;

constexpr std::string_view kVolumeBinary = "cinder-volume";

json TextOrNull(const Row& row, std::string_view column) {
  auto found = row.find(column);
  if (found == row.end() || !std::holds_alternative<std::string>(found->second)) {
    return nullptr;
  }
  return std::get<std::string>(found->second);
}

std::string Text(const Row& row, std::string_view column) {
  auto found = row.find(column);
  if (found == row.end() || !std::holds_alternative<std::string>(found->second)) {
    return {};
  }
  return std::get<std::string>(found->second);
}

bool Flag(const Row& row, std::string_view column) {
  auto found = row.find(column);
  return found != row.end() && std::holds_alternative<std::int64_t>(found->second) &&
         std::get<std::int64_t>(found->second) != 0;
}

std::optional<domain::WallTimePoint> Heartbeat(const Row& row) {
  auto found = row.find("heartbeat_at");
  if (found == row.end() || !std::holds_alternative<std::int64_t>(found->second)) {
    return std::nullopt;
  }
  return domain::FromHeartbeatMillis(std::get<std::int64_t>(found->second));
}

// Cinder's _filter_host: "node1" matches "node1", "node1@lvm" and "node1#pool"; "node1@lvm"
// matches itself and "node1@lvm#pool"; a value with "#" matches only itself.
bool MatchesHost(std::string_view value, std::string_view filter) {
  if (value == filter) {
    return true;
  }
  if (filter.find('#') != std::string_view::npos || value.size() <= filter.size() ||
      value.substr(0, filter.size()) != filter) {
    return false;
  }
  char next = value[filter.size()];
  return next == '#' || (next == '@' && filter.find('@') == std::string_view::npos);
}

// oslo strutils.is_valid_boolstr / bool_from_string(strict=True).
std::optional<bool> ParseBool(std::string_view text) {
  static constexpr std::array kTrue = {"1", "t", "true", "on", "y", "yes"};
  static constexpr std::array kFalse = {"0", "f", "false", "off", "n", "no"};
  std::string lowered(text);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  if (std::find(kTrue.begin(), kTrue.end(), lowered) != kTrue.end()) {
    return true;
  }
  if (std::find(kFalse.begin(), kFalse.end(), lowered) != kFalse.end()) {
    return false;
  }
  return std::nullopt;
}

std::optional<int> ParseCount(const std::string& text) {
  if (text.empty() || text.size() > 9 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::stoi(text);
}

// Cinder's views/clusters.py shows a missing time as "".
json TimeOrEmpty(const json& value) {
  return value.is_null() ? json("") : value;
}

struct ClusterView {
  Row row;
  domain::ClusterLiveness liveness;
};

struct ClusterFilters {
  std::optional<std::string> name;
  std::optional<std::string> binary;
  std::optional<bool> is_up;
  std::optional<bool> disabled;
  std::optional<int> num_hosts;
  std::optional<int> num_down_hosts;
};

// The live clusters matching `filters`, each with its members' liveness, oldest first.
Result<std::vector<ClusterView>> LoadClusters(ports::StateStore& store,
                                              const ClusterFilters& filters,
                                              domain::WallTimePoint now,
                                              std::chrono::milliseconds down_time) {
  ports::ListQuery cluster_query;
  cluster_query.sort = {{"created_at", true}};
  if (filters.binary) {
    cluster_query.filters.push_back(Expectation::Equals("binary", *filters.binary));
  }
  if (filters.disabled) {
    cluster_query.filters.push_back(
        Expectation::Equals("disabled", std::int64_t{*filters.disabled ? 1 : 0}));
  }
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> clusters, store.List(Table::kClusters, cluster_query));

  ports::ListQuery member_query;
  member_query.filters = {Expectation::IsNotNull("cluster_name")};
  CLINKER_ASSIGN_OR_RETURN(std::vector<Row> members, store.List(Table::kServices, member_query));
  std::map<std::pair<std::string, std::string>, std::vector<std::optional<domain::WallTimePoint>>>
      heartbeats;
  for (const Row& member : members) {
    heartbeats[{Text(member, "binary"), Text(member, "cluster_name")}].push_back(Heartbeat(member));
  }

  std::vector<ClusterView> views;
  for (Row& cluster : clusters) {
    std::string name = Text(cluster, "name");
    if (filters.name && !MatchesHost(name, *filters.name)) {
      continue;
    }
    auto found = heartbeats.find({Text(cluster, "binary"), name});
    domain::ClusterLiveness liveness =
        found == heartbeats.end() ? domain::ClusterLiveness{}
                                  : domain::SummarizeCluster(found->second, now, down_time);
    if ((filters.is_up && liveness.is_up != *filters.is_up) ||
        (filters.num_hosts && liveness.num_hosts != *filters.num_hosts) ||
        (filters.num_down_hosts && liveness.num_down_hosts != *filters.num_down_hosts)) {
      continue;
    }
    views.push_back({std::move(cluster), liveness});
  }
  return views;
}

json ClusterSummary(const ClusterView& view) {
  return {
      {"name", Text(view.row, "name")},
      {"binary", Text(view.row, "binary")},
      {"state", view.liveness.is_up ? "up" : "down"},
      {"status", Flag(view.row, "disabled") ? "disabled" : "enabled"},
  };
}

json ClusterDetail(const ClusterView& view) {
  json result = ClusterSummary(view);
  result["num_hosts"] = view.liveness.num_hosts;
  result["num_down_hosts"] = view.liveness.num_down_hosts;
  result["last_heartbeat"] = view.liveness.last_heartbeat
                                 ? json(FormatTimestamp(*view.liveness.last_heartbeat))
                                 : json("");
  result["created_at"] = TimeOrEmpty(TextOrNull(view.row, "created_at"));
  result["updated_at"] = TimeOrEmpty(TextOrNull(view.row, "updated_at"));
  result["disabled_reason"] = TextOrNull(view.row, "disabled_reason");
  return result;
}

}  // namespace

ServicesApi::ServicesApi(ports::StateStore& store,
                         const ports::Clock& clock,
                         ServicesApiOptions options)
    : store_(store), clock_(clock), options_(options) {}

std::optional<HttpResponse> ServicesApi::Authorize(const RequestContext& context,
                                                   std::string_view rule) const {
  if (context.is_admin) {
    return std::nullopt;
  }
  return Fault(403, "Policy doesn't allow " + std::string(rule) + " to be performed.");
}

HttpResponse ServicesApi::ListServices(const RequestContext& context, const HttpRequest& request) {
  if (auto refused = Authorize(context, "volume_extension:services:index")) {
    return *refused;
  }
  ports::ListQuery query;
  query.sort = {{"created_at", true}};
  std::string binary;
  if (request.QueryValue("binary", &binary)) {
    query.filters.push_back(Expectation::Equals("binary", binary));
  }
  std::string host;
  bool filter_host = request.QueryValue("host", &host);
  auto rows = store_.List(Table::kServices, query);
  if (!rows) {
    return FaultFromError(rows.error());
  }

  domain::WallTimePoint now = clock_.WallNow();
  json services = json::array();
  for (const Row& row : *rows) {
    std::string row_host = Text(row, "host");
    if (filter_host && !MatchesHost(row_host, host)) {
      continue;
    }
    std::string row_binary = Text(row, "binary");
    json service = {
        {"binary", row_binary},
        {"host", row_host},
        {"zone", Text(row, "availability_zone")},
        {"status", Flag(row, "disabled") ? "disabled" : "enabled"},
        {"state",
         domain::IsServiceUp(Heartbeat(row), now, options_.service_down_time) ? "up" : "down"},
        {"updated_at", TextOrNull(row, "updated_at")},
    };
    if (context.version >= kClustersMicroversion) {
      service["cluster"] = TextOrNull(row, "cluster_name");
    }
    service["disabled_reason"] = TextOrNull(row, "disabled_reason");
    if (row_binary == kVolumeBinary) {
      service["replication_status"] = "not-capable";
      service["active_backend_id"] = nullptr;
      service["frozen"] = false;
    }
    services.push_back(std::move(service));
  }
  return JsonResponse(200, {{"services", std::move(services)}});
}

HttpResponse ServicesApi::ListClusters(const RequestContext& context,
                                       const HttpRequest& request,
                                       bool detail) {
  if (auto refused = Authorize(context, "clusters:get_all")) {
    return *refused;
  }
  static constexpr std::array kAllowed = {
      "name", "binary", "is_up", "disabled", "num_hosts", "num_down_hosts"};
  std::vector<std::string> invalid;
  for (const auto& [key, value] : request.query) {
    if (std::find(kAllowed.begin(), kAllowed.end(), key) == kAllowed.end() &&
        std::find(invalid.begin(), invalid.end(), key) == invalid.end()) {
      invalid.push_back(key);
    }
  }
  if (!invalid.empty()) {
    std::string keys;
    for (const std::string& key : invalid) {
      keys += (keys.empty() ? "" : ", ") + key;
    }
    return Fault(400, "Invalid input received: Invalid filter keys: " + keys);
  }

  ClusterFilters filters;
  std::string value;
  if (request.QueryValue("name", &value)) {
    filters.name = value;
  }
  if (request.QueryValue("binary", &value)) {
    filters.binary = value;
  }
  for (auto [key, target] :
       {std::pair<std::string_view, std::optional<bool>*>{"is_up", &filters.is_up},
        std::pair<std::string_view, std::optional<bool>*>{"disabled", &filters.disabled}}) {
    if (request.QueryValue(key, &value)) {
      *target = ParseBool(value);
      if (!*target) {
        return Fault(400, "Value '" + value + "' for '" + std::string(key) + "' is not a boolean.");
      }
    }
  }
  for (auto [key, target] :
       {std::pair<std::string_view, std::optional<int>*>{"num_hosts", &filters.num_hosts},
        std::pair<std::string_view, std::optional<int>*>{"num_down_hosts",
                                                         &filters.num_down_hosts}}) {
    if (request.QueryValue(key, &value)) {
      *target = ParseCount(value);
      if (!*target) {
        return Fault(
            400,
            "Invalid input received: " + std::string(key) + " must be a non-negative integer.");
      }
    }
  }

  auto views = LoadClusters(store_, filters, clock_.WallNow(), options_.service_down_time);
  if (!views) {
    return FaultFromError(views.error());
  }
  json clusters = json::array();
  for (const ClusterView& view : *views) {
    clusters.push_back(detail ? ClusterDetail(view) : ClusterSummary(view));
  }
  return JsonResponse(200, {{"clusters", std::move(clusters)}});
}

HttpResponse ServicesApi::ShowCluster(const RequestContext& context,
                                      const HttpRequest& request,
                                      std::string_view name) {
  if (auto refused = Authorize(context, "clusters:get")) {
    return *refused;
  }
  std::string binary(kVolumeBinary);
  std::string value;
  if (request.QueryValue("binary", &value)) {
    binary = value;
  }
  ClusterFilters filters;
  filters.name = std::string(name);
  filters.binary = binary;
  auto views = LoadClusters(store_, filters, clock_.WallNow(), options_.service_down_time);
  if (!views) {
    return FaultFromError(views.error());
  }
  if (views->empty()) {
    // Cinder names the failed lookup by its filters' repr.
    return Fault(404,
                 "Cluster {'binary': '" + binary + "', 'name': '" + std::string(name) +
                     "'} could not be found.");
  }
  return JsonResponse(200, {{"cluster", ClusterDetail(views->front())}});
}

}  // namespace clinker::services
