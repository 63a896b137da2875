#include "clinker/services/services_api.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <utility>
#include <vector>

#include "clinker/core/time_format.h"
#include "clinker/domain/status.h"
#include "clinker/services/microversion.h"

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

// Python's repr of a JSON value, as Cinder's validation messages quote the offending value.
std::string PyRepr(const json& value) {
  if (value.is_null()) {
    return "None";
  }
  if (value.is_boolean()) {
    return value.get<bool>() ? "True" : "False";
  }
  if (value.is_string()) {
    return "'" + value.get<std::string>() + "'";
  }
  if (value.is_array()) {
    std::string text = "[";
    for (const json& item : value) {
      text += (text.size() > 1 ? ", " : "") + PyRepr(item);
    }
    return text + "]";
  }
  if (value.is_object()) {
    std::string text = "{";
    for (const auto& [key, item] : value.items()) {
      text += (text.size() > 1 ? ", " : "") + PyRepr(json(key)) + ": " + PyRepr(item);
    }
    return text + "}";
  }
  return value.dump();
}

// One property of a request schema (cinder/api/schemas/services.py).
struct PropertySpec {
  std::string_view name;
  bool nullable;
  std::size_t min_length;
  bool host_pattern;  // parameter_types.cinder_host
};

bool IsHostCharacter(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("-._#@:/+[]").find(c) != std::string_view::npos;
}

// Validates `body` as jsonschema would the schema made of `properties` (additionalProperties
// false) and, with `binary_or_service`, the anyOf [binary required, service required], reporting
// the first error as Cinder's validator words it; nullopt when valid.
std::optional<std::string> ValidateServiceBody(const json& body,
                                               std::span<const PropertySpec> properties,
                                               bool binary_or_service) {
  if (!body.is_object()) {
    return PyRepr(body) + " is not of type 'object'";
  }
  for (const PropertySpec& spec : properties) {
    auto found = body.find(std::string(spec.name));
    if (found == body.end()) {
      continue;
    }
    const json& value = *found;
    std::string prefix = "Invalid input for field/attribute " + std::string(spec.name) +
                         ". Value: " + PyRepr(value) + ". ";
    if (value.is_null() && spec.nullable) {
      continue;
    }
    if (!value.is_string()) {
      return prefix + PyRepr(value) +
             (spec.nullable ? " is not of type 'string', 'null'" : " is not of type 'string'");
    }
    std::string text = value.get<std::string>();
    if (text.size() < spec.min_length) {
      return prefix + PyRepr(value) + " is too short";
    }
    if (text.size() > kMaxTextLength) {
      return prefix + PyRepr(value) + " is too long";
    }
    if (spec.host_pattern && !std::all_of(text.begin(), text.end(), IsHostCharacter)) {
      return prefix + PyRepr(value) + " does not match '^[a-zA-Z0-9-._#@:/+\\\\[\\\\]]*$'";
    }
    if (spec.name == "disabled_reason") {
      // Cinder's 'disabled_reason' format: 1 to 255 characters once trimmed.
      std::size_t first = text.find_first_not_of(" \t\n\r\f\v");
      if (first == std::string::npos) {
        return prefix + PyRepr(value) + " is not a 'disabled_reason'";
      }
    }
  }
  if (binary_or_service && !body.contains("binary") && !body.contains("service")) {
    return PyRepr(body) + " is not valid under any of the given schemas";
  }
  for (const auto& item : body.items()) {
    const std::string& key = item.key();
    bool known = std::any_of(properties.begin(),
                             properties.end(),
                             [&key](const PropertySpec& spec) { return spec.name == key; });
    if (!known) {
      return "Additional properties are not allowed ('" + key + "' was unexpected)";
    }
  }
  return std::nullopt;
}

constexpr std::array kEnableDisableProperties = std::to_array<PropertySpec>({
    {"binary", false, 1, false},
    {"host", true, 1, true},
    {"cluster", true, 0, false},
    {"service", false, 1, false},
});

constexpr std::array kDisableLogReasonProperties = std::to_array<PropertySpec>({
    {"binary", false, 1, false},
    {"host", true, 1, true},
    {"cluster", true, 0, false},
    {"service", false, 1, false},
    {"disabled_reason", false, 1, false},
});

constexpr std::array kFreezeThawProperties = std::to_array<PropertySpec>({
    {"cluster", true, 0, false},
    {"host", true, 1, true},
});

constexpr std::array kFailoverProperties = std::to_array<PropertySpec>({
    {"host", true, 1, true},
    {"backend_id", true, 0, false},
    {"cluster", true, 0, false},
});

// The first microversion where freeze, thaw and failover take a cluster (REPLICATION_CLUSTER).
constexpr Microversion kReplicationClusterMicroversion{3, 26};

std::string StringOr(const json& body, std::string_view key, std::string fallback) {
  auto found = body.find(std::string(key));
  if (found == body.end() || !found->is_string()) {
    return fallback;
  }
  return found->get<std::string>();
}

// Python's repr of a list of host names, as Cinder's replication messages show them.
std::string HostList(const std::vector<Row>& rows) {
  std::string text = "[";
  for (const Row& row : rows) {
    text += (text.size() > 1 ? ", '" : "'") + Text(row, "host") + "'";
  }
  return text + "]";
}

}  // namespace

ServicesApi::ServicesApi(ports::StateStore& store,
                         const ports::Clock& clock,
                         ServicesApiOptions options)
    : store_(store), clock_(clock), options_(std::move(options)) {}

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
      service["frozen"] = Flag(row, "frozen");
    }
    services.push_back(std::move(service));
  }
  return JsonResponse(200, {{"services", std::move(services)}});
}

HttpResponse ServicesApi::ListAvailabilityZones(const RequestContext& /*context*/) {
  ports::ListQuery query;
  query.filters = {Expectation::Equals("binary", std::string(kVolumeBinary))};
  query.sort = {{"created_at", true}};
  auto rows = store_.List(Table::kServices, query);
  if (!rows) {
    return FaultFromError(rows.error());
  }
  // Zone -> whether every service in it is disabled, in the order zones are first seen.
  std::vector<std::pair<std::string, bool>> zones;
  for (const Row& row : *rows) {
    const std::string zone = Text(row, "availability_zone");
    auto it = std::find_if(
        zones.begin(), zones.end(), [&zone](const auto& entry) { return entry.first == zone; });
    if (it == zones.end()) {
      zones.emplace_back(zone, Flag(row, "disabled"));
    } else {
      it->second = it->second && Flag(row, "disabled");
    }
  }
  json info = json::array();
  for (const auto& [zone, all_disabled] : zones) {
    info.push_back({{"zoneName", zone}, {"zoneState", {{"available", !all_disabled}}}});
  }
  return JsonResponse(200, {{"availabilityZoneInfo", std::move(info)}});
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

namespace clinker::services {
namespace {

// Cinder's volume views: what a reader of stored statuses needs to skip deleted rows is done by
// the store; these read the few columns the host and pool views need.
std::int64_t Integer(const Row& row, std::string_view column) {
  auto found = row.find(column);
  if (found == row.end() || !std::holds_alternative<std::int64_t>(found->second)) {
    return 0;
  }
  return std::get<std::int64_t>(found->second);
}

// The services `host` / `cluster_name` match as Cinder's service_get_all does (_filter_host).
std::vector<Row> MatchingServices(const std::vector<Row>& rows,
                                  const std::string& host,
                                  const std::string& cluster) {
  std::vector<Row> matching;
  for (const Row& row : rows) {
    if (!host.empty() && !MatchesHost(Text(row, "host"), host)) {
      continue;
    }
    if (!cluster.empty() && !MatchesHost(Text(row, "cluster_name"), cluster)) {
      continue;
    }
    matching.push_back(row);
  }
  return matching;
}

// The standard capabilities every Cinder driver announces (driver.py
// _init_standard_capabilities).
json StandardProperties() {
  auto property = [](std::string_view title, std::string_view description) {
    return json{{"title", title}, {"description", description}, {"type", "boolean"}};
  };
  return {
      {"thin_provisioning", property("Thin Provisioning", "Sets thin provisioning.")},
      {"compression", property("Compression", "Enables compression.")},
      {"qos", property("QoS", "Enables QoS.")},
      {"replication_enabled", property("Replication", "Enables replication.")},
  };
}

}  // namespace

HttpResponse ServicesApi::UpdateService(const RequestContext& context,
                                        const HttpRequest& request,
                                        std::string_view action) {
  if (auto refused = Authorize(context, "volume_extension:services:update")) {
    return *refused;
  }
  json body = request.body.empty() ? json::object() : json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return Fault(400, "Malformed request body");
  }
  bool enable = action == "enable";
  bool disable = action == "disable";
  bool log_reason = action == "disable-log-reason";
  bool freeze = action == "freeze";
  bool thaw = action == "thaw";
  bool failover = action == "failover_host" ||
                  (action == "failover" && context.version >= kReplicationClusterMicroversion);
  if (!enable && !disable && !log_reason && !freeze && !thaw && !failover) {
    return Fault(400, "Invalid input received: Unknown action");
  }
  std::span<const PropertySpec> properties = kEnableDisableProperties;
  if (log_reason) {
    properties = kDisableLogReasonProperties;
  } else if (freeze || thaw) {
    properties = kFreezeThawProperties;
  } else if (failover) {
    properties = kFailoverProperties;
  }
  if (auto invalid = ValidateServiceBody(body, properties, enable || disable || log_reason)) {
    return Fault(400, *invalid);
  }

  std::string host = StringOr(body, "host", "");
  auto rows = store_.List(Table::kServices, {});
  if (!rows) {
    return FaultFromError(rows.error());
  }
  std::string now = FormatTimestamp(clock_.WallNow());

  if (freeze || thaw || failover) {
    // common.get_cluster_host: from 3.26 (always for "failover") exactly one of cluster and host.
    bool cluster_allowed =
        action == "failover" || context.version >= kReplicationClusterMicroversion;
    std::string cluster = cluster_allowed ? StringOr(body, "cluster", "") : "";
    if (cluster.empty() == host.empty()) {
      return Fault(400,
                   cluster_allowed ? "Invalid input received: One and only one of cluster and host "
                                     "must be set."
                                   : "Invalid input received: Host field is missing.");
    }
    std::vector<Row> volume_services;
    for (Row& row : MatchingServices(*rows, host, cluster)) {
      if (Text(row, "binary") == kVolumeBinary) {
        volume_services.push_back(std::move(row));
      }
    }
    if (volume_services.empty()) {
      return Fault(400,
                   host.empty() ? "No service found with cluster=" + cluster
                                : "No service found with host=" + host);
    }
    std::string_view attribute = cluster.empty() ? "host" : "cluster_name";
    for (const Row& row : volume_services) {
      if (Text(row, attribute) != Text(volume_services.front(), attribute)) {
        return Fault(400, "Services from different clusters found.");
      }
    }
    // A host of a cluster stands for its whole cluster.
    std::string member_of = Text(volume_services.front(), "cluster_name");
    if (cluster.empty() && !member_of.empty()) {
      volume_services.clear();
      for (const Row& row : *rows) {
        if (Text(row, "binary") == kVolumeBinary && Text(row, "cluster_name") == member_of) {
          volume_services.push_back(row);
        }
      }
    }
    if (failover) {
      // Replication is "not-capable" everywhere, never enabled nor failed-over.
      std::string reason = "replication_status in " + HostList(volume_services) +
                           " must be ['enabled', 'failed-over'] and must be up to failover.";
      if (!member_of.empty()) {
        reason = "replication_status in " + member_of +
                 " must be ['enabled', 'failed-over'] and must be up to failover.";
        return Fault(400, "Invalid input received: " + reason);
      }
      return Fault(400, "Invalid input received: No service could be changed: " + reason);
    }
    // Frozen is set (or cleared) where it was not, service by service, as Cinder's conditional
    // update; the volume manager's part (disable with reason "frozen", or enable) comes with it.
    ports::Row values = {{"frozen", std::int64_t{freeze ? 1 : 0}},
                         {"disabled", std::int64_t{freeze ? 1 : 0}},
                         {"disabled_reason", std::string(freeze ? "frozen" : "")},
                         {"updated_at", now}};
    int changed = 0;
    for (const Row& row : volume_services) {
      auto updated =
          store_.ConditionalUpdate(Table::kServices,
                                   Text(row, "id"),
                                   values,
                                   {Expectation::Equals("frozen", std::int64_t{freeze ? 0 : 1}),
                                    Expectation::Equals("deleted", std::int64_t{0})},
                                   {});
      if (!updated) {
        return FaultFromError(updated.error());
      }
      changed += updated->has_value() ? 1 : 0;
    }
    if (changed == 0) {
      return Fault(400,
                   "Invalid input received: No service could be changed: frozen in " +
                       HostList(volume_services) + " must be " + (freeze ? "False" : "True") +
                       " to failover.");
    }
    HttpResponse response;
    response.status = 200;
    return response;
  }

  // enable, disable, disable-log-reason: one service, by host and binary (the legacy "service"
  // key names the binary when "binary" is absent).
  if (host.empty()) {
    return Fault(400, "Invalid input received: Host field is missing.");
  }
  std::string service_key = StringOr(body, "service", "");
  std::string binary_key = StringOr(body, "binary", "");
  std::string binary = binary_key.empty() ? service_key : binary_key;
  const Row* target = nullptr;
  for (const Row& row : *rows) {
    if (Text(row, "binary") == binary && MatchesHost(Text(row, "host"), host)) {
      target = &row;
      break;
    }
  }
  if (target == nullptr) {
    return Fault(404, "Service " + binary + " could not be found on host " + host + ".");
  }
  bool disabled = !enable;
  ports::Row values = {{"disabled", std::int64_t{disabled ? 1 : 0}}, {"updated_at", now}};
  std::optional<std::string> reason;
  if (log_reason) {
    reason = StringOr(body, "disabled_reason", "");
    values["disabled_reason"] = *reason;
  }
  auto updated = store_.ConditionalUpdate(Table::kServices,
                                          Text(*target, "id"),
                                          values,
                                          {Expectation::Equals("deleted", std::int64_t{0})},
                                          {});
  if (!updated) {
    return FaultFromError(updated.error());
  }
  if (!updated->has_value()) {
    return Fault(404, "Service " + binary + " could not be found on host " + host + ".");
  }
  json result = {{"disabled", disabled},
                 {"host", host},
                 {"service", service_key},
                 {"binary", binary_key},
                 {"status", disabled ? "disabled" : "enabled"}};
  if (reason) {
    result["disabled_reason"] = *reason;
  }
  return JsonResponse(200, result);
}

HttpResponse ServicesApi::ListHosts(const RequestContext& context, const HttpRequest& request) {
  if (auto refused = Authorize(context, "volume_extension:hosts")) {
    return *refused;
  }
  ports::ListQuery query;
  query.sort = {{"created_at", true}};
  query.filters = {Expectation::Equals("disabled", std::int64_t{0})};
  std::string zone;
  if (request.QueryValue("zone", &zone) && !zone.empty()) {
    query.filters.push_back(Expectation::Equals("availability_zone", zone));
  }
  auto rows = store_.List(Table::kServices, query);
  if (!rows) {
    return FaultFromError(rows.error());
  }
  domain::WallTimePoint now = clock_.WallNow();
  json hosts = json::array();
  for (const Row& row : *rows) {
    bool alive = domain::IsServiceUp(Heartbeat(row), now, options_.service_down_time);
    hosts.push_back({
        {"host_name", Text(row, "host")},
        {"service", Text(row, "binary")},  // Cinder's topics are the binaries' names.
        {"zone", Text(row, "availability_zone")},
        {"service-status", alive ? "available" : "unavailable"},
        {"service-state", "enabled"},  // Only enabled services are listed.
        {"last-update", TextOrNull(row, "updated_at")},
    });
  }
  return JsonResponse(200, {{"hosts", std::move(hosts)}});
}

HttpResponse ServicesApi::ShowHost(const RequestContext& context, std::string_view host) {
  if (auto refused = Authorize(context, "volume_extension:hosts")) {
    return *refused;
  }
  ports::ListQuery service_query;
  service_query.sort = {{"created_at", true}};
  service_query.filters = {Expectation::Equals("binary", std::string(kVolumeBinary))};
  auto services = store_.List(Table::kServices, service_query);
  if (!services) {
    return FaultFromError(services.error());
  }
  std::string requested(host);
  auto service = std::find_if(services->begin(), services->end(), [&](const Row& row) {
    return MatchesHost(Text(row, "host"), requested);
  });
  if (service == services->end()) {
    return Fault(
        404,
        "Service " + std::string(kVolumeBinary) + " could not be found on host " + requested + ".");
  }
  std::string service_host = Text(*service, "host");

  ports::ListQuery by_age;
  by_age.sort = {{"created_at", true}};
  auto volumes = store_.List(Table::kVolumes, by_age);
  auto snapshots = volumes ? store_.List(Table::kSnapshots, by_age) : decltype(volumes)();
  if (!volumes || !snapshots) {
    return FaultFromError(!volumes ? volumes.error() : snapshots.error());
  }

  struct Usage {
    std::int64_t volume_count = 0;
    std::int64_t volume_gib = 0;
    std::int64_t snapshot_count = 0;
    std::int64_t snapshot_gib = 0;
  };

  std::vector<std::string> projects;  // In order of their first volume on the host.
  std::map<std::string, Usage> usage;
  std::map<std::string, std::string> volume_project;  // The host's volumes.
  for (const Row& volume : *volumes) {
    if (!MatchesHost(Text(volume, "host"), service_host)) {
      continue;
    }
    std::string project = Text(volume, "project_id");
    if (!usage.contains(project)) {
      projects.push_back(project);
    }
    Usage& used = usage[project];
    ++used.volume_count;
    used.volume_gib += Integer(volume, "size_gib");
    volume_project[Text(volume, "id")] = project;
  }
  Usage total;
  for (const Row& snapshot : *snapshots) {
    auto of = volume_project.find(Text(snapshot, "volume_id"));
    if (of == volume_project.end()) {
      continue;
    }
    Usage& used = usage[of->second];
    ++used.snapshot_count;
    used.snapshot_gib += Integer(snapshot, "size_gib");
  }
  for (const auto& [project, used] : usage) {
    total.volume_count += used.volume_count;
    total.volume_gib += used.volume_gib;
    total.snapshot_count += used.snapshot_count;
    total.snapshot_gib += used.snapshot_gib;
  }
  // Cinder gives every figure as a string.
  auto resource = [&](const std::string& project, const Usage& used) {
    return json{{"resource",
                 {{"host", requested},
                  {"project", project},
                  {"volume_count", std::to_string(used.volume_count)},
                  {"total_volume_gb", std::to_string(used.volume_gib)},
                  {"snapshot_count", std::to_string(used.snapshot_count)},
                  {"total_snapshot_gb", std::to_string(used.snapshot_gib)}}}};
  };
  json resources = json::array({resource("(total)", total)});
  for (const std::string& project : projects) {
    resources.push_back(resource(project, usage[project]));
  }
  return JsonResponse(200, {{"host", std::move(resources)}});
}

HttpResponse ServicesApi::GetPools(const RequestContext& context, const HttpRequest& request) {
  if (auto refused = Authorize(context, "scheduler_extension:scheduler_stats:get_pools")) {
    return *refused;
  }
  std::string value;
  bool detail = request.QueryValue("detail", &value) && TruthyParameter(value);
  std::optional<std::string> name;
  // Filtering by pool name arrived with 3.28 (POOL_FILTER); below it Cinder drops the filters.
  if (context.version >= Microversion{3, 28} && request.QueryValue("name", &value)) {
    name = value;
  }
  auto services = store_.List(Table::kServices, {});
  auto clusters = services ? store_.List(Table::kClusters, {}) : decltype(services)();
  if (!services || !clusters) {
    return FaultFromError(!services ? services.error() : clusters.error());
  }
  // Cinder's scheduler knows the back-ends of the volume services that are up, enabled and not
  // frozen (a clustered service's "enabled" is its cluster's).
  std::map<std::string, bool> disabled_clusters;
  for (const Row& cluster : *clusters) {
    disabled_clusters[Text(cluster, "name")] = Flag(cluster, "disabled");
  }
  domain::WallTimePoint now = clock_.WallNow();
  std::map<std::string, bool> serving;  // Back-end address -> some service serves it.
  for (const Row& row : *services) {
    if (Text(row, "binary") != kVolumeBinary || Flag(row, "frozen") ||
        !domain::IsServiceUp(Heartbeat(row), now, options_.service_down_time)) {
      continue;
    }
    std::string cluster = Text(row, "cluster_name");
    bool disabled = cluster.empty() ? Flag(row, "disabled") : disabled_clusters[cluster];
    if (!disabled) {
      serving[cluster.empty() ? Text(row, "host") : cluster] = true;
    }
  }
  std::vector<CachedCapability> reports;
  if (options_.capabilities != nullptr) {
    reports = options_.capabilities->All();
  }
  // What the schedulers reserved on each pool (pool_capacity), as Cinder's
  // allocated_capacity_gb; every Clinker volume is the scheduler's, so provisioned is the same.
  std::map<std::string, std::int64_t, std::less<>> allocated;
  if (detail) {
    auto rows = store_.List(ports::Table::kPoolCapacity, {});
    if (!rows) {
      return FaultFromError(rows.error());
    }
    for (const Row& row : *rows) {
      allocated[Text(row, "id")] = Integer(row, "allocated_capacity_gb");
    }
  }
  auto mono_now = clock_.MonoNow();
  json pools = json::array();
  for (const CachedCapability& cached : reports) {
    const CapabilityReport& report = cached.report;
    if (mono_now - cached.received_at >= options_.capability_max_age ||
        !serving.contains(report.backend)) {
      continue;
    }
    std::string pool_name = report.backend + "#" + options_.pool;
    if (name && *name != pool_name) {
      continue;
    }
    json pool = {{"name", pool_name}};
    if (detail) {
      pool["capabilities"] = {
          {"pool_name", options_.pool},
          {"total_capacity_gb", report.total_capacity_gib},
          {"free_capacity_gb", report.free_capacity_gib},
          {"reserved_percentage", 0},
          {"allocated_capacity_gb", allocated.contains(pool_name) ? allocated[pool_name] : 0},
          {"provisioned_capacity_gb", allocated.contains(pool_name) ? allocated[pool_name] : 0},
          {"QoS_support", false},
          {"thin_provisioning_support", true},
          {"thick_provisioning_support", false},
          {"multiattach", true},
          {"volume_backend_name", report.volume_backend_name},
          {"vendor_name", report.vendor_name},
          {"driver_version", report.driver_version},
          {"storage_protocol", report.storage_protocol},
          {"timestamp", report.reported_at},
      };
    }
    pools.push_back(std::move(pool));
  }
  return JsonResponse(200, {{"pools", std::move(pools)}});
}

HttpResponse ServicesApi::ShowCapabilities(const RequestContext& context, std::string_view host) {
  if (auto refused = Authorize(context, "volume_extension:capabilities")) {
    return *refused;
  }
  ports::ListQuery query;
  query.sort = {{"created_at", true}};
  query.filters = {Expectation::Equals("binary", std::string(kVolumeBinary))};
  auto services = store_.List(Table::kServices, query);
  if (!services) {
    return FaultFromError(services.error());
  }
  // Cinder's host_or_cluster filter: the id names a service's host or its cluster.
  std::string id(host);
  auto service = std::find_if(services->begin(), services->end(), [&](const Row& row) {
    return MatchesHost(Text(row, "host"), id) || MatchesHost(Text(row, "cluster_name"), id);
  });
  if (service == services->end()) {
    return Fault(404, "Can't find service: " + id);
  }
  // The service's queue (service_topic_queue): its cluster if clustered, else its host.
  std::string topic = Text(*service, "cluster_name");
  if (topic.empty()) {
    topic = Text(*service, "host");
  }
  std::optional<CachedCapability> cached;
  if (options_.capabilities != nullptr) {
    cached = options_.capabilities->Get(topic);
  }
  if (!cached || clock_.MonoNow() - cached->received_at >= options_.capability_max_age) {
    // What Cinder answers when the volume service does not reply to its capabilities call.
    return Fault(502, "Timeout while requesting capabilities from backend " + topic + ".");
  }
  const CapabilityReport& report = cached->report;
  return JsonResponse(200,
                      {{"namespace", "OS::Storage::Capabilities::" + topic},
                       {"vendor_name", report.vendor_name},
                       {"volume_backend_name", report.volume_backend_name},
                       {"pool_name", nullptr},
                       {"driver_version", report.driver_version},
                       {"storage_protocol", report.storage_protocol},
                       {"display_name", nullptr},
                       {"description", nullptr},
                       {"visibility", nullptr},
                       {"replication_targets", json::array()},
                       {"properties", StandardProperties()}});
}

}  // namespace clinker::services
