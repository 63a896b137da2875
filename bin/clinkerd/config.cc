#include "clinkerd/config.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <set>

#include <CLI/CLI.hpp>
#include <toml++/toml.h>
#include <unistd.h>

#include "clinker/core/hex.h"
#include "clinker/domain/policy.h"
#include "clinker/services/api_routes.h"

namespace clinkerd {
namespace {

constexpr const char* kVersion = "0.1.0";

constexpr const char* kDescription =
    "clinkerd: the Clinker block-storage service, an Active/Active implementation of the\n"
    "OpenStack Cinder v3 API.\n\n"
    "With no options it runs every role in one process (the embedded default): the API on\n"
    "127.0.0.1:8776 with noauth (X-Auth-Token: <user>:<project>), the scheduler, and a volume\n"
    "service on the file back-end, with state and jobs in SQLite under ./var.\n\n"
    "Settings come from built-in defaults, then the TOML file given with --config, then these\n"
    "flags. See docs/CONFIGURATION.md for every setting.";

std::vector<std::string> SplitRoles(const std::string& text) {
  std::vector<std::string> roles;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) {
      comma = text.size();
    }
    std::string role = text.substr(start, comma - start);
    role.erase(0, role.find_first_not_of(' '));
    role.erase(role.find_last_not_of(' ') + 1);
    if (role == "all") {
      roles.insert(roles.end(), {"api", "scheduler", "volume"});
    } else if (!role.empty()) {
      roles.push_back(role);
    }
    start = comma + 1;
  }
  return roles;
}

// Percent-decodes one URL component; `what` names it in the error.
clinker::Result<std::string> PercentDecode(std::string_view text, const std::string& what) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    int high = i + 2 < text.size() ? clinker::HexDigitValue(text[i + 1]) : -1;
    int low = i + 2 < text.size() ? clinker::HexDigitValue(text[i + 2]) : -1;
    if (high < 0 || low < 0) {
      return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                                "bad percent-encoding in the " + what);
    }
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

struct Authority {
  std::string_view userinfo;  // Empty when absent.
  bool has_userinfo = false;
  std::string_view host;
  std::string_view port;  // Empty when absent.
  std::string_view rest;  // From the first '/' or '?' on.
};

// Splits "[userinfo@]host[:port]" off the front of what follows "scheme://". An IPv6 host is
// written in brackets, which are dropped.
clinker::Result<Authority> SplitAuthority(std::string_view text) {
  Authority authority;
  std::size_t end = text.find_first_of("/?");
  if (end == std::string_view::npos) {
    end = text.size();
  }
  std::string_view hostport = text.substr(0, end);
  authority.rest = text.substr(end);
  if (std::size_t at = hostport.rfind('@'); at != std::string_view::npos) {
    authority.userinfo = hostport.substr(0, at);
    authority.has_userinfo = true;
    hostport = hostport.substr(at + 1);
  }
  if (!hostport.empty() && hostport.front() == '[') {
    std::size_t close = hostport.find(']');
    if (close == std::string_view::npos) {
      return clinker::MakeError(clinker::ErrorCode::kInvalidArgument, "unclosed '[' in the host");
    }
    authority.host = hostport.substr(1, close - 1);
    std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                                  "unexpected text after the host");
      }
      authority.port = after.substr(1);
    }
    return authority;
  }
  std::size_t colon = hostport.rfind(':');
  if (colon != std::string_view::npos && hostport.find(',') == std::string_view::npos) {
    authority.host = hostport.substr(0, colon);
    authority.port = hostport.substr(colon + 1);
  } else {
    authority.host = hostport;
  }
  return authority;
}

clinker::Result<int> ParsePort(std::string_view text) {
  if (text.empty() || text.size() > 5 ||
      text.find_first_not_of("0123456789") != std::string_view::npos) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                              "the port must be a number 1-65535");
  }
  int port = std::stoi(std::string(text));
  if (port < 1 || port > 65535) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                              "the port must be a number 1-65535");
  }
  return port;
}

// Reads one TOML table into the config, refusing keys it does not know.
class TomlReader {
 public:
  TomlReader(const toml::table& root, std::string file) : root_(root), file_(std::move(file)) {}

  clinker::Result<void> Read(Config* config) {
    static const std::set<std::string> kSections = {"service",
                                                    "api",
                                                    "scheduler",
                                                    "volume",
                                                    "backup",
                                                    "database",
                                                    "queue",
                                                    "locks",
                                                    "log",
                                                    "quota",
                                                    "keystone_authtoken",
                                                    "oslo_policy"};
    for (const auto& [key, node] : root_) {
      if (key.str() == "backends") {
        continue;  // An array of tables, read by Backends.
      }
      if (!kSections.contains(std::string(key.str())) || !node.is_table()) {
        return Fail("unknown section [" + std::string(key.str()) + "]");
      }
    }
    CLINKER_RETURN_IF_ERROR(Known(
        "service",
        {"roles", "host", "cluster", "state_dir", "report_interval_s", "service_down_time_s"}));
    CLINKER_RETURN_IF_ERROR(Known("api",
                                  {"listen",
                                   "port",
                                   "threads",
                                   "io_threads",
                                   "max_queued_requests",
                                   "max_connections",
                                   "max_queued_jobs_per_backend",
                                   "header_timeout_s",
                                   "body_timeout_s",
                                   "keep_alive_timeout_s",
                                   "write_timeout_s",
                                   "drain_timeout_s",
                                   "max_header_bytes",
                                   "max_body_bytes",
                                   "max_limit",
                                   "max_volume_size_gib",
                                   "availability_zone",
                                   "default_volume_type",
                                   "fail_fast_when_busy",
                                   "attach_timeout_s",
                                   "auth_strategy"}));
    CLINKER_RETURN_IF_ERROR(Known("keystone_authtoken",
                                  {"auth_url",
                                   "username",
                                   "password",
                                   "project_name",
                                   "user_domain_name",
                                   "project_domain_name",
                                   "www_authenticate_uri",
                                   "service_token_roles",
                                   "token_cache_time_s",
                                   "http_timeout_s"}));
    CLINKER_RETURN_IF_ERROR(Known("oslo_policy", {"policy_file"}));
    CLINKER_RETURN_IF_ERROR(Known("scheduler",
                                  {"clusters",
                                   "backends",
                                   "max_over_subscription_ratio",
                                   "default_weighers",
                                   "requeue_after_s",
                                   "sweep_interval_s"}));
    CLINKER_RETURN_IF_ERROR(Known("volume",
                                  {"backend",
                                   "volume_dir",
                                   "workers",
                                   "lock_timeout_s",
                                   "driver_delay_ms",
                                   "driver_journal"}));
    CLINKER_RETURN_IF_ERROR(Known("backup", {"backup_dir", "chunk_size_mib", "compression_level"}));
    CLINKER_RETURN_IF_ERROR(Known("database", {"url", "sqlite_synchronous"}));
    CLINKER_RETURN_IF_ERROR(Known("queue", {"url", "heartbeat_s"}));
    CLINKER_RETURN_IF_ERROR(
        Known("locks", {"url", "lease_ttl_s", "heartbeat_interval_ms", "missed_heartbeats"}));
    CLINKER_RETURN_IF_ERROR(Known("log", {"level", "format"}));
    CLINKER_RETURN_IF_ERROR(Known("quota",
                                  {"quota_volumes",
                                   "quota_snapshots",
                                   "quota_gigabytes",
                                   "quota_backups",
                                   "quota_backup_gigabytes",
                                   "quota_groups",
                                   "per_volume_size_limit",
                                   "no_snapshot_gb_quota"}));

    std::string roles;
    CLINKER_RETURN_IF_ERROR(Text("service", "roles", &roles));
    if (!roles.empty()) {
      config->roles = SplitRoles(roles);
    }
    CLINKER_RETURN_IF_ERROR(Text("service", "host", &config->host));
    CLINKER_RETURN_IF_ERROR(Text("service", "cluster", &config->cluster));
    CLINKER_RETURN_IF_ERROR(Integer("service", "report_interval_s", &config->report_interval_s));
    CLINKER_RETURN_IF_ERROR(
        Integer("service", "service_down_time_s", &config->service_down_time_s));
    CLINKER_RETURN_IF_ERROR(Text("service", "state_dir", &config->state_dir));
    CLINKER_RETURN_IF_ERROR(Text("api", "listen", &config->listen));
    CLINKER_RETURN_IF_ERROR(Integer("api", "port", &config->port));
    CLINKER_RETURN_IF_ERROR(Integer("api", "threads", &config->api_threads));
    CLINKER_RETURN_IF_ERROR(Integer("api", "io_threads", &config->api_io_threads));
    CLINKER_RETURN_IF_ERROR(
        Integer("api", "max_queued_requests", &config->api_max_queued_requests));
    CLINKER_RETURN_IF_ERROR(Integer("api", "max_connections", &config->api_max_connections));
    CLINKER_RETURN_IF_ERROR(
        Integer("api", "max_queued_jobs_per_backend", &config->api_max_queued_jobs_per_backend));
    CLINKER_RETURN_IF_ERROR(Integer("api", "header_timeout_s", &config->api_header_timeout_s));
    CLINKER_RETURN_IF_ERROR(Integer("api", "body_timeout_s", &config->api_body_timeout_s));
    CLINKER_RETURN_IF_ERROR(
        Integer("api", "keep_alive_timeout_s", &config->api_keep_alive_timeout_s));
    CLINKER_RETURN_IF_ERROR(Integer("api", "write_timeout_s", &config->api_write_timeout_s));
    CLINKER_RETURN_IF_ERROR(Integer("api", "drain_timeout_s", &config->api_drain_timeout_s));
    CLINKER_RETURN_IF_ERROR(Integer("api", "max_header_bytes", &config->api_max_header_bytes));
    CLINKER_RETURN_IF_ERROR(Integer("api", "max_body_bytes", &config->api_max_body_bytes));
    CLINKER_RETURN_IF_ERROR(Integer("api", "max_limit", &config->max_limit));
    CLINKER_RETURN_IF_ERROR(Integer("api", "max_volume_size_gib", &config->max_volume_size_gib));
    CLINKER_RETURN_IF_ERROR(Text("api", "availability_zone", &config->availability_zone));
    CLINKER_RETURN_IF_ERROR(Text("api", "default_volume_type", &config->default_volume_type));
    if (config->default_volume_type.empty() || config->default_volume_type.size() > 255) {
      return Fail("[api] default_volume_type must be 1 to 255 characters");
    }
    if (const toml::node* fail_fast = root_.at_path("api.fail_fast_when_busy").node()) {
      if (!fail_fast->is_boolean()) {
        return Fail("[api] fail_fast_when_busy must be true or false");
      }
      config->fail_fast_when_busy = fail_fast->as_boolean()->get();
    }
    CLINKER_RETURN_IF_ERROR(Addresses("clusters", "cluster@backend", &config->scheduler_clusters));
    CLINKER_RETURN_IF_ERROR(Addresses("backends", "host@backend", &config->scheduler_backends));
    if (const toml::node* ratio = root_.at_path("scheduler.max_over_subscription_ratio").node()) {
      if (!ratio->is_number()) {
        return Fail("[scheduler] max_over_subscription_ratio must be a number");
      }
      config->max_over_subscription_ratio = ratio->value<double>().value_or(0.0);
    }
    CLINKER_RETURN_IF_ERROR(Strings("scheduler", "default_weighers", &config->scheduler_weighers));
    CLINKER_RETURN_IF_ERROR(Integer("scheduler", "requeue_after_s", &config->requeue_after_s));
    CLINKER_RETURN_IF_ERROR(Integer("scheduler", "sweep_interval_s", &config->sweep_interval_s));
    CLINKER_RETURN_IF_ERROR(Text("volume", "backend", &config->backend));
    CLINKER_RETURN_IF_ERROR(Text("volume", "volume_dir", &config->volume_dir));
    CLINKER_RETURN_IF_ERROR(Integer("volume", "workers", &config->workers));
    CLINKER_RETURN_IF_ERROR(Integer("volume", "lock_timeout_s", &config->lock_timeout_s));
    CLINKER_RETURN_IF_ERROR(Integer("volume", "driver_delay_ms", &config->driver_delay_ms));
    CLINKER_RETURN_IF_ERROR(Text("volume", "driver_journal", &config->driver_journal));
    CLINKER_RETURN_IF_ERROR(Integer("api", "attach_timeout_s", &config->attach_timeout_s));
    CLINKER_RETURN_IF_ERROR(Text("backup", "backup_dir", &config->backup_dir));
    CLINKER_RETURN_IF_ERROR(Integer("backup", "chunk_size_mib", &config->backup_chunk_size_mib));
    CLINKER_RETURN_IF_ERROR(
        Integer("backup", "compression_level", &config->backup_compression_level));
    CLINKER_RETURN_IF_ERROR(Text("api", "auth_strategy", &config->auth_strategy));
    const std::string keystone = "keystone_authtoken";
    CLINKER_RETURN_IF_ERROR(Text(keystone, "auth_url", &config->keystone_auth_url));
    CLINKER_RETURN_IF_ERROR(Text(keystone, "username", &config->keystone_username));
    CLINKER_RETURN_IF_ERROR(Text(keystone, "password", &config->keystone_password));
    CLINKER_RETURN_IF_ERROR(Text(keystone, "project_name", &config->keystone_project_name));
    CLINKER_RETURN_IF_ERROR(Text(keystone, "user_domain_name", &config->keystone_user_domain_name));
    CLINKER_RETURN_IF_ERROR(
        Text(keystone, "project_domain_name", &config->keystone_project_domain_name));
    CLINKER_RETURN_IF_ERROR(
        Text(keystone, "www_authenticate_uri", &config->keystone_www_authenticate_uri));
    CLINKER_RETURN_IF_ERROR(
        Strings(keystone, "service_token_roles", &config->keystone_service_token_roles));
    CLINKER_RETURN_IF_ERROR(
        Integer(keystone, "token_cache_time_s", &config->keystone_token_cache_time_s));
    CLINKER_RETURN_IF_ERROR(Integer(keystone, "http_timeout_s", &config->keystone_http_timeout_s));
    CLINKER_RETURN_IF_ERROR(Text("oslo_policy", "policy_file", &config->policy_file));
    CLINKER_RETURN_IF_ERROR(Text("database", "url", &config->database_url));
    CLINKER_RETURN_IF_ERROR(Text("database", "sqlite_synchronous", &config->sqlite_synchronous));
    CLINKER_RETURN_IF_ERROR(Text("queue", "url", &config->queue_url));
    CLINKER_RETURN_IF_ERROR(Integer("queue", "heartbeat_s", &config->queue_heartbeat_s));
    CLINKER_RETURN_IF_ERROR(Text("locks", "url", &config->lock_url));
    CLINKER_RETURN_IF_ERROR(Integer("locks", "lease_ttl_s", &config->lease_ttl_s));
    CLINKER_RETURN_IF_ERROR(
        Integer("locks", "heartbeat_interval_ms", &config->heartbeat_interval_ms));
    CLINKER_RETURN_IF_ERROR(Integer("locks", "missed_heartbeats", &config->missed_heartbeats));
    CLINKER_RETURN_IF_ERROR(Text("log", "level", &config->log_level));
    CLINKER_RETURN_IF_ERROR(Text("log", "format", &config->log_format));
    clinker::services::QuotaOptions& quota = config->quota;
    CLINKER_RETURN_IF_ERROR(Integer("quota", "quota_volumes", &quota.volumes));
    CLINKER_RETURN_IF_ERROR(Integer("quota", "quota_snapshots", &quota.snapshots));
    CLINKER_RETURN_IF_ERROR(Integer("quota", "quota_gigabytes", &quota.gigabytes));
    CLINKER_RETURN_IF_ERROR(Integer("quota", "quota_backups", &quota.backups));
    CLINKER_RETURN_IF_ERROR(Integer("quota", "quota_backup_gigabytes", &quota.backup_gigabytes));
    CLINKER_RETURN_IF_ERROR(Integer("quota", "quota_groups", &quota.groups));
    CLINKER_RETURN_IF_ERROR(Integer("quota", "per_volume_size_limit", &quota.per_volume_gigabytes));
    if (const toml::node* no_gb = root_.at_path("quota.no_snapshot_gb_quota").node()) {
      if (!no_gb->is_boolean()) {
        return Fail("[quota] no_snapshot_gb_quota must be true or false");
      }
      quota.no_snapshot_gb_quota = no_gb->as_boolean()->get();
    }
    return Backends(config);
  }

 private:
  // [[backends]]: one table per back-end (Cinder's enabled_backends and their sections).
  clinker::Result<void> Backends(Config* config) const {
    const toml::node* node = root_.get("backends");
    if (node == nullptr) {
      return {};
    }
    const toml::array* array = node->as_array();
    if (array == nullptr || array->empty() || !array->is_array_of_tables()) {
      return Fail("[[backends]] must be one or more tables (write each as [[backends]])");
    }
    static const std::set<std::string> kKeys = {
        "name", "volume_backend_name", "driver", "volume_dir", "host", "cluster", "workers"};
    config->backends.clear();
    config->backends_listed = true;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const toml::table& table = *array->get(i)->as_table();
      const std::string where = "[[backends]] #" + std::to_string(i + 1);
      BackendConfig backend;
      for (const auto& [key, value] : table) {
        if (!kKeys.contains(std::string(key.str()))) {
          return Fail("unknown setting " + where + " " + std::string(key.str()));
        }
        if (key.str() == "workers") {
          if (!value.is_integer()) {
            return Fail(where + " workers must be an integer");
          }
          const std::int64_t workers = value.as_integer()->get();
          if (workers < 1 || workers > 256) {
            return Fail(where + " workers: " + std::to_string(workers) + " must be 1-256");
          }
          backend.workers = static_cast<int>(workers);
          continue;
        }
        if (!value.is_string()) {
          return Fail(where + " " + std::string(key.str()) + " must be a string");
        }
        const std::string text = value.as_string()->get();
        if (key.str() == "name") {
          backend.name = text;
        } else if (key.str() == "volume_backend_name") {
          backend.volume_backend_name = text;
        } else if (key.str() == "driver") {
          backend.driver = text;
        } else if (key.str() == "volume_dir") {
          backend.volume_dir = text;
        } else if (key.str() == "host") {
          backend.host = text;
        } else {
          backend.cluster = text;
        }
      }
      if (backend.name.empty()) {
        return Fail(where + " name is required");
      }
      config->backends.push_back(std::move(backend));
    }
    // The short form's settings would silently not apply: refuse them.
    for (const char* key : {"volume.backend", "volume.volume_dir"}) {
      if (root_.at_path(key).node() != nullptr) {
        return Fail("[volume] " + std::string(std::string_view(key).substr(7)) +
                    ": not used with [[backends]] (set each back-end's driver and volume_dir)");
      }
    }
    return {};
  }

  clinker::Result<void> Fail(const std::string& message) const {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument, file_ + ": " + message);
  }

  // [scheduler] <key>: an array of "<name>@<backend>" strings.
  clinker::Result<void> Addresses(const std::string& key,
                                  const std::string& shape,
                                  std::vector<std::string>* out) const {
    const toml::node* node = root_.at_path("scheduler." + key).node();
    if (node == nullptr) {
      return {};
    }
    std::string message = "[scheduler] " + key + " must be an array of \"" + shape + "\" strings";
    const toml::array* array = node->as_array();
    if (array == nullptr) {
      return Fail(message);
    }
    out->clear();
    for (const toml::node& item : *array) {
      if (!item.is_string()) {
        return Fail(message);
      }
      out->push_back(item.as_string()->get());
    }
    return {};
  }

  // [<section>] <key>: an array of strings.
  clinker::Result<void> Strings(const std::string& section,
                                const std::string& key,
                                std::vector<std::string>* out) const {
    const toml::node* node = root_.at_path(section + "." + key).node();
    if (node == nullptr) {
      return {};
    }
    const std::string message = "[" + section + "] " + key + " must be an array of strings";
    const toml::array* array = node->as_array();
    if (array == nullptr) {
      return Fail(message);
    }
    out->clear();
    for (const toml::node& item : *array) {
      if (!item.is_string()) {
        return Fail(message);
      }
      out->push_back(item.as_string()->get());
    }
    return {};
  }

  clinker::Result<void> Known(const std::string& section, const std::set<std::string>& keys) const {
    const toml::table* table = root_[section].as_table();
    if (table == nullptr) {
      return {};
    }
    for (const auto& [key, node] : *table) {
      if (!keys.contains(std::string(key.str()))) {
        return Fail("unknown setting [" + section + "] " + std::string(key.str()));
      }
    }
    return {};
  }

  clinker::Result<void> Text(const std::string& section,
                             const std::string& key,
                             std::string* out) const {
    const toml::node* node = root_.at_path(section + "." + key).node();
    if (node == nullptr) {
      return {};
    }
    if (!node->is_string()) {
      return Fail("[" + section + "] " + key + " must be a string");
    }
    *out = node->as_string()->get();
    return {};
  }

  template <class T>
  clinker::Result<void> Integer(const std::string& section, const std::string& key, T* out) const {
    const toml::node* node = root_.at_path(section + "." + key).node();
    if (node == nullptr) {
      return {};
    }
    if (!node->is_integer()) {
      return Fail("[" + section + "] " + key + " must be an integer");
    }
    *out = static_cast<T>(node->as_integer()->get());
    return {};
  }

  const toml::table& root_;
  std::string file_;
};

// Fills in and checks config->backends (after host, workers and state_dir are settled): the
// short form's one back-end, or the [[backends]] tables with their defaults.
clinker::Result<void> ValidateBackends(Config* config) {
  auto fail = [](const std::string& message) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument, message);
  };
  if (!config->backends_listed) {
    if (config->backend.empty() || config->backend.find_first_of("@# ") != std::string::npos) {
      return fail("backend: '" + config->backend +
                  "' must be non-empty without '@', '#' or spaces");
    }
    if (config->backend != "file") {
      return fail("backend: unknown back-end '" + config->backend + "' (this release has: file)");
    }
    BackendConfig backend;
    backend.name = config->backend;
    backend.driver = config->backend;
    backend.volume_dir =
        config->volume_dir.empty() ? config->state_dir + "/volumes" : config->volume_dir;
    config->backends = {std::move(backend)};
  } else if (!config->volume_dir.empty()) {
    return fail(
        "volume_dir (--volume-dir): not used with [[backends]] (set each back-end's "
        "volume_dir)");
  }
  std::set<std::string> names;
  std::set<std::string> directories;
  for (BackendConfig& backend : config->backends) {
    const std::string where = "[[backends]] '" + backend.name + "' ";
    if (backend.name.empty() || backend.name.find_first_of("@#/ ") != std::string::npos) {
      return fail(where + "name: must be non-empty without '@', '#', '/' or spaces");
    }
    if (!names.insert(backend.name).second) {
      return fail(where + "name: two back-ends have this name");
    }
    if (backend.volume_backend_name.empty()) {
      backend.volume_backend_name = backend.name;
    }
    if (backend.driver != "file") {
      return fail(where + "driver: unknown driver '" + backend.driver +
                  "' (this release has: file)");
    }
    if (backend.host.empty()) {
      backend.host = config->host;
    }
    if (backend.cluster.empty()) {
      backend.cluster = config->cluster;
    }
    for (const auto& [value, key] :
         {std::pair{&backend.host, "host"}, std::pair{&backend.cluster, "cluster"}}) {
      if (value->find_first_of("@# ") != std::string::npos) {
        return fail(where + key + ": '" + *value + "' must not contain '@', '#' or spaces");
      }
    }
    if (backend.workers == 0) {  // Not set: [volume] workers (validated above).
      backend.workers = config->workers;
    }
    if (backend.volume_dir.empty()) {
      backend.volume_dir = config->state_dir + "/volumes/" + backend.name;
    }
    // Two back-ends on one directory would each report the other's files as their own.
    if (!directories.insert(backend.volume_dir).second) {
      return fail(where + "volume_dir: '" + backend.volume_dir +
                  "' is another back-end's directory");
    }
  }
  return {};
}

clinker::Result<void> Validate(Config* config) {
  auto fail = [](const std::string& message) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument, message);
  };
  const std::pair<const char*, std::int64_t> quotas[] = {
      {"quota_volumes", config->quota.volumes},
      {"quota_snapshots", config->quota.snapshots},
      {"quota_gigabytes", config->quota.gigabytes},
      {"quota_backups", config->quota.backups},
      {"quota_backup_gigabytes", config->quota.backup_gigabytes},
      {"quota_groups", config->quota.groups},
      {"per_volume_size_limit", config->quota.per_volume_gigabytes}};
  for (const auto& [name, value] : quotas) {
    if (value < -1 || value > clinker::services::kMaxQuotaLimit) {
      return fail(std::string("[quota] ") + name + ": " + std::to_string(value) +
                  " (use -1 for unlimited, or 0 to " +
                  std::to_string(clinker::services::kMaxQuotaLimit) + ")");
    }
  }
  if (config->roles.empty()) {
    return fail("roles: at least one of api, scheduler, volume is required");
  }
  for (const std::string& role : config->roles) {
    if (role != "api" && role != "scheduler" && role != "volume") {
      return fail("roles: unknown role '" + role + "' (use all, or api, scheduler, volume)");
    }
  }
  if (config->host.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
      return fail("host: cannot read the machine's hostname; set [service] host or --host");
    }
    config->host = name;
  }
  if (config->host.find_first_of("@# ") != std::string::npos) {
    return fail("host: '" + config->host + "' must not contain '@', '#' or spaces");
  }
  if (config->report_interval_s < 1 || config->service_down_time_s <= config->report_interval_s) {
    return fail("report_interval_s (" + std::to_string(config->report_interval_s) +
                ") must be at least 1 and below service_down_time_s (" +
                std::to_string(config->service_down_time_s) + ")");
  }
  if (config->cluster.find_first_of("@# ") != std::string::npos) {
    return fail("cluster: '" + config->cluster + "' must not contain '@', '#' or spaces");
  }
  if (config->port < 0 || config->port > 65535) {
    return fail("port: " + std::to_string(config->port) + " is not a TCP port (0-65535)");
  }
  if (config->api_threads < 1 || config->api_threads > 1024) {
    return fail("api threads: " + std::to_string(config->api_threads) + " must be 1-1024");
  }
  if (config->api_io_threads < 1 || config->api_io_threads > 64) {
    return fail("[api] io_threads: " + std::to_string(config->api_io_threads) + " must be 1-64");
  }
  if (config->api_max_queued_requests < 1 || config->api_max_connections < 1) {
    return fail("[api] max_queued_requests and max_connections: must be at least 1");
  }
  if (config->api_max_queued_jobs_per_backend < 0 ||
      config->api_max_queued_jobs_per_backend > 1000000) {
    return fail("[api] max_queued_jobs_per_backend: " +
                std::to_string(config->api_max_queued_jobs_per_backend) +
                " must be 0 (unbounded) to 1000000");
  }
  for (auto [value, name] : {std::pair{config->api_header_timeout_s, "header_timeout_s"},
                             std::pair{config->api_body_timeout_s, "body_timeout_s"},
                             std::pair{config->api_keep_alive_timeout_s, "keep_alive_timeout_s"},
                             std::pair{config->api_write_timeout_s, "write_timeout_s"},
                             std::pair{config->api_drain_timeout_s, "drain_timeout_s"}}) {
    if (value < 1 || value > 86400) {
      return fail(std::string("[api] ") + name + ": " + std::to_string(value) + " must be 1-86400");
    }
  }
  if (config->api_max_header_bytes < 1024 || config->api_max_header_bytes > (16 << 20)) {
    return fail("[api] max_header_bytes: " + std::to_string(config->api_max_header_bytes) +
                " must be 1024-16777216");
  }
  if (config->api_max_body_bytes < 1024 || config->api_max_body_bytes > (std::int64_t{1} << 30)) {
    return fail("[api] max_body_bytes: " + std::to_string(config->api_max_body_bytes) +
                " must be 1024-1073741824");
  }
  if (config->max_limit < 1) {
    return fail("max_limit: must be at least 1");
  }
  if (config->max_volume_size_gib < 1) {
    return fail("max_volume_size_gib: must be at least 1");
  }
  if (config->workers < 1 || config->workers > 256) {
    return fail("workers: " + std::to_string(config->workers) + " must be 1-256");
  }
  if (!(config->max_over_subscription_ratio >= 1.0 &&
        config->max_over_subscription_ratio <= 1000.0)) {
    return fail("[scheduler] max_over_subscription_ratio: " +
                std::to_string(config->max_over_subscription_ratio) + " must be 1-1000");
  }
  if (config->scheduler_weighers != std::vector<std::string>{"CapacityWeigher"} &&
      config->scheduler_weighers != std::vector<std::string>{"VolumeNumberWeigher"}) {
    return fail(
        "[scheduler] default_weighers: use [\"CapacityWeigher\"] or "
        "[\"VolumeNumberWeigher\"] (one weigher)");
  }
  if (config->requeue_after_s < 1 || config->sweep_interval_s < 1) {
    return fail("requeue_after_s and sweep_interval_s: must be at least 1");
  }
  if (config->lock_timeout_s < 1) {
    return fail("lock_timeout_s: must be at least 1");
  }
  if (config->driver_delay_ms < 0) {
    return fail("driver_delay_ms: must not be negative");
  }
  if (config->sqlite_synchronous != "normal" && config->sqlite_synchronous != "full") {
    return fail("sqlite_synchronous: '" + config->sqlite_synchronous + "' (use normal or full)");
  }
  if (!config->database_url.empty()) {
    auto server = PostgresServerName(config->database_url);
    if (!server) {
      return fail("[database] url: " + server.error().message);
    }
    config->database_server = *server;
  }
  if (!config->queue_url.empty()) {
    auto server = ParseAmqpUrl(config->queue_url);
    if (!server) {
      return fail("[queue] url: " + server.error().message);
    }
    config->queue_server = *server;
  }
  if (config->log_level != "debug" && config->log_level != "info" && config->log_level != "warn" &&
      config->log_level != "error") {
    return fail("log level: '" + config->log_level + "' (use debug, info, warn or error)");
  }
  if (config->log_format != "json" && config->log_format != "text") {
    return fail("log format: '" + config->log_format + "' (use json or text)");
  }
  if (config->state_dir.empty()) {
    return fail("state_dir: must not be empty");
  }
  if (config->backup_dir.empty()) {
    config->backup_dir = config->state_dir + "/backups";
  }
  if (config->backup_chunk_size_mib < 1 || config->backup_chunk_size_mib > 1024) {
    return fail("[backup] chunk_size_mib: " + std::to_string(config->backup_chunk_size_mib) +
                " (use 1 to 1024)");
  }
  if (config->backup_compression_level < 0 || config->backup_compression_level > 9) {
    return fail("[backup] compression_level: " + std::to_string(config->backup_compression_level) +
                " (use 0 to 9)");
  }
  if (config->auth_strategy == "keystone") {
    // Clinker's own credentials are what it validates users' tokens with.
    for (const auto& [value, name] : {std::pair{&config->keystone_auth_url, "auth_url"},
                                      std::pair{&config->keystone_username, "username"},
                                      std::pair{&config->keystone_password, "password"},
                                      std::pair{&config->keystone_project_name, "project_name"}}) {
      if (value->empty()) {
        return fail(std::string("[keystone_authtoken] ") + name +
                    ": required with auth_strategy = keystone");
      }
    }
    if (!config->keystone_auth_url.starts_with("http://") &&
        !config->keystone_auth_url.starts_with("https://")) {
      return fail("[keystone_authtoken] auth_url: use http(s)://host:port/v3");
    }
    if (config->keystone_www_authenticate_uri.empty()) {
      config->keystone_www_authenticate_uri = config->keystone_auth_url;
    }
    if (config->keystone_token_cache_time_s < 0) {
      return fail("[keystone_authtoken] token_cache_time_s: " +
                  std::to_string(config->keystone_token_cache_time_s) + " (use 0 or more)");
    }
    if (config->keystone_http_timeout_s < 1) {
      return fail("[keystone_authtoken] http_timeout_s: " +
                  std::to_string(config->keystone_http_timeout_s) + " (use at least 1)");
    }
  } else if (config->auth_strategy != "noauth") {
    return fail("[api] auth_strategy: '" + config->auth_strategy + "' (use noauth or keystone)");
  }
  if (config->attach_timeout_s < 1) {
    return fail("[api] attach_timeout_s: " + std::to_string(config->attach_timeout_s) +
                " (use at least 1)");
  }
  for (const auto* addresses : {&config->scheduler_clusters, &config->scheduler_backends}) {
    for (const std::string& address : *addresses) {
      std::size_t at = address.find('@');
      if (at == 0 || at == std::string::npos || at + 1 == address.size() ||
          address.find_first_of("# ") != std::string::npos ||
          address.find('@', at + 1) != std::string::npos) {
        return fail(
            "[scheduler] " +
            std::string(addresses == &config->scheduler_clusters ? "clusters" : "backends") +
            ": '" + address + "' is not \"<name>@<backend>\"");
      }
    }
  }
  CLINKER_RETURN_IF_ERROR(ValidateBackends(config));
  if (config->scheduler_clusters.empty() && config->scheduler_backends.empty()) {
    for (const BackendConfig& backend : config->backends) {
      (backend.cluster.empty() ? config->scheduler_backends : config->scheduler_clusters)
          .push_back(backend.PlacementAddress());
    }
  }
  // On a shared database, volume services of one back-end run side by side on several nodes:
  // they share its jobs through the cluster's queue, so the cluster must be named.
  if (config->HasRole("volume") && !config->database_url.empty()) {
    for (const BackendConfig& backend : config->backends) {
      if (backend.cluster.empty()) {
        return fail(
            "cluster: required for the volume role on PostgreSQL ([database] url): the "
            "volume services of a back-end share its jobs through their cluster; set "
            "[service] cluster or --cluster (or the back-end's cluster) for back-end '" +
            backend.name + "'");
      }
    }
  }
  if (!config->lock_url.empty()) {
    auto server = ParseEtcdUrl(config->lock_url);
    if (!server) {
      return fail("[locks] url: " + server.error().message);
    }
    config->lock_server = *server;
  }
  if (config->queue_heartbeat_s < 1 || config->queue_heartbeat_s > 600) {
    return fail("[queue] heartbeat_s: " + std::to_string(config->queue_heartbeat_s) +
                " must be 1-600");
  }
  if (config->heartbeat_interval_ms < 1 || config->missed_heartbeats < 1) {
    return fail("[locks] heartbeat_interval_ms and missed_heartbeats: must be at least 1");
  }
  // The node must declare its lease lost (after missed_heartbeats beats) before etcd can expire
  // it and grant its locks to another node, with one more interval as a margin.
  if (config->lease_ttl_s < 1 ||
      static_cast<long long>(config->lease_ttl_s) * 1000 <=
          static_cast<long long>(config->missed_heartbeats + 1) * config->heartbeat_interval_ms) {
    return fail("[locks] lease_ttl_s (" + std::to_string(config->lease_ttl_s) +
                " s) must exceed (missed_heartbeats (" + std::to_string(config->missed_heartbeats) +
                ") + 1) x heartbeat_interval_ms (" + std::to_string(config->heartbeat_interval_ms) +
                " ms)");
  }
  return {};
}

}  // namespace

clinker::Result<AmqpServer> ParseAmqpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "amqp://";
  if (!url.starts_with(kScheme)) {
    return clinker::MakeError(
        clinker::ErrorCode::kInvalidArgument,
        "must be empty (the embedded SQLite queue) or amqp://user:password@host:port/vhost");
  }
  CLINKER_ASSIGN_OR_RETURN(Authority authority, SplitAuthority(url.substr(kScheme.size())));
  AmqpServer server;
  if (authority.host.empty()) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument, "the broker's host is missing");
  }
  CLINKER_ASSIGN_OR_RETURN(server.host, PercentDecode(authority.host, "host"));
  if (!authority.port.empty()) {
    CLINKER_ASSIGN_OR_RETURN(server.port, ParsePort(authority.port));
  }
  if (authority.has_userinfo) {
    std::string_view user = authority.userinfo;
    std::string_view password;
    bool has_password = false;
    if (std::size_t colon = user.find(':'); colon != std::string_view::npos) {
      password = user.substr(colon + 1);
      user = user.substr(0, colon);
      has_password = true;
    }
    CLINKER_ASSIGN_OR_RETURN(server.user, PercentDecode(user, "user"));
    if (has_password) {
      CLINKER_ASSIGN_OR_RETURN(server.password, PercentDecode(password, "password"));
    }
  }
  std::string_view rest = authority.rest;
  if (rest.find('?') != std::string_view::npos) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                              "query parameters (?...) are not supported");
  }
  if (!rest.empty()) {
    std::string_view vhost = rest.substr(1);  // After the '/'.
    if (vhost.find('/') != std::string_view::npos) {
      return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                                "a '/' in the vhost must be written %2F");
    }
    if (!vhost.empty()) {
      CLINKER_ASSIGN_OR_RETURN(server.vhost, PercentDecode(vhost, "vhost"));
    }
  }
  return server;
}

clinker::Result<EtcdServer> ParseEtcdUrl(std::string_view url) {
  constexpr std::string_view kScheme = "etcd://";
  if (!url.starts_with(kScheme)) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                              "must be empty (file locks in state_dir) or etcd://host:port");
  }
  CLINKER_ASSIGN_OR_RETURN(Authority authority, SplitAuthority(url.substr(kScheme.size())));
  if (authority.host.empty() || authority.has_userinfo) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                              "must be etcd://host:port (no user, no password)");
  }
  if (!authority.rest.empty() && authority.rest != "/") {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                              "must be etcd://host:port (no path)");
  }
  EtcdServer server;
  server.host = std::string(authority.host);
  if (!authority.port.empty()) {
    CLINKER_ASSIGN_OR_RETURN(server.port, ParsePort(authority.port));
  }
  return server;
}

clinker::Result<std::string> PostgresServerName(std::string_view url) {
  std::string_view rest;
  for (std::string_view scheme : {"postgresql://", "postgres://"}) {
    if (url.starts_with(scheme)) {
      rest = url.substr(scheme.size());
      break;
    }
  }
  if (rest.data() == nullptr) {
    return clinker::MakeError(
        clinker::ErrorCode::kInvalidArgument,
        "must be empty (SQLite in state_dir) or postgresql://user:password@host:port/dbname");
  }
  CLINKER_ASSIGN_OR_RETURN(Authority authority, SplitAuthority(rest));
  // libpq's defaults: a local connection, port 5432.
  std::string host = authority.host.empty() ? "localhost" : std::string(authority.host);
  std::string port = authority.port.empty() ? "5432" : std::string(authority.port);
  return host + ":" + port;
}

clinker::Result<void> ReadConfigText(std::string_view text,
                                     const std::string& file,
                                     Config* config) {
  toml::table parsed;
  try {
    parsed = toml::parse(text, file);
  } catch (const toml::parse_error& error) {
    return clinker::MakeError(clinker::ErrorCode::kInvalidArgument,
                              file + ": " + std::string(error.description()) + " (line " +
                                  std::to_string(error.source().begin.line) + ")");
  }
  return TomlReader(parsed, file).Read(config);
}

clinker::Result<void> ValidateConfig(Config* config) {
  return Validate(config);
}

bool Config::HasRole(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

ParsedCommandLine ParseCommandLine(int argc, char** argv) {
  CLI::App app(kDescription, "clinkerd");
  app.set_version_flag("--version", kVersion);
  std::string config_file;
  std::optional<std::string> roles;
  std::optional<std::string> host;
  std::optional<std::string> cluster;
  std::optional<std::string> lock_url;
  std::optional<std::string> state_dir;
  std::optional<std::string> listen;
  std::optional<std::string> volume_dir;
  std::optional<std::string> backup_dir;
  std::optional<std::string> journal;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
  std::optional<std::string> synchronous;
  std::optional<std::string> database_url;
  std::optional<std::string> queue_url;
  std::optional<std::string> auth_strategy;
  std::optional<std::string> policy_file;
  std::optional<int> port;
  std::optional<int> workers;
  std::optional<int> delay_ms;
  std::optional<int> max_connections;
  std::optional<int> max_queued_jobs_per_backend;
  std::optional<int> header_timeout_s;
  std::optional<int> body_timeout_s;
  std::optional<int> keep_alive_timeout_s;
  std::optional<int> write_timeout_s;
  app.add_option("-c,--config", config_file, "TOML configuration file")->check(CLI::ExistingFile);
  app.add_option("--role",
                 roles,
                 "Roles to run: all (default) or a comma-separated subset of api,scheduler,volume");
  app.add_option("--listen", listen, "API listen address (default 127.0.0.1)");
  app.add_option("--port", port, "API port (default 8776; 0 picks a free port)");
  app.add_option("--max-connections",
                 max_connections,
                 "API connections open at once; more are refused (default 10000)");
  app.add_option("--max-queued-jobs-per-backend",
                 max_queued_jobs_per_backend,
                 "Back-end jobs not finished, per back-end, beyond which new work gets 503 "
                 "(default 0: unbounded)");
  app.add_option("--header-timeout-s",
                 header_timeout_s,
                 "A request header must arrive within this of its first byte, else 408 and "
                 "close (default 10)");
  app.add_option("--body-timeout-s",
                 body_timeout_s,
                 "A request body must arrive within this of its header, else 408 and close "
                 "(default 30)");
  app.add_option("--keep-alive-timeout-s",
                 keep_alive_timeout_s,
                 "An API connection idle this long between requests is closed (default 60)");
  app.add_option("--write-timeout-s",
                 write_timeout_s,
                 "A client that does not take its response within this is disconnected "
                 "(default 30)");
  app.add_option("--state-dir",
                 state_dir,
                 "Directory for locks, volumes and the SQLite database (state and jobs, "
                 "unless --database-url / --queue-url name servers) (default ./var)");
  app.add_option("--host", host, "This service's host name (default: the machine's hostname)");
  app.add_option("--cluster",
                 cluster,
                 "Cluster of this node's volume service: every member consumes the cluster's "
                 "jobs for the back-end (Active/Active). Required for the volume role with "
                 "--database-url");
  app.add_option("--volume-dir",
                 volume_dir,
                 "Where the file back-end keeps volumes (default <state-dir>/volumes)");
  app.add_option("--backup-dir",
                 backup_dir,
                 "Where backups are kept, chunked, compressed and checksummed; every node of a "
                 "back-end must reach it (default <state-dir>/backups)");
  app.add_option("--workers", workers, "Volume jobs run at once (default 16)");
  app.add_option("--driver-delay-ms",
                 delay_ms,
                 "Delay injected into every back-end operation, for tests (default 0)");
  app.add_option(
      "--driver-journal",
      journal,
      "Append one JSON line per completed back-end or backup-store operation to this file "
      "(tests)");
  app.add_option("--sqlite-synchronous",
                 synchronous,
                 "normal (survives a process crash, default) or full (also survives power loss)");
  app.add_option("--database-url",
                 database_url,
                 "State database: empty (default) for SQLite in the state dir, or "
                 "postgresql://user:password@host:port/dbname");
  app.add_option("--queue-url",
                 queue_url,
                 "Job queue: empty (default) for the embedded SQLite queue, or "
                 "amqp://user:password@host:port/vhost (RabbitMQ)");
  app.add_option("--lock-url",
                 lock_url,
                 "Lock manager: empty (default) for file locks in the state dir (one machine), "
                 "or etcd://host:port");
  app.add_option("--auth-strategy",
                 auth_strategy,
                 "noauth (default: X-Auth-Token <user>:<project>, everyone admin) or keystone "
                 "(tokens validated by Keystone v3; needs [keystone_authtoken] in --config)");
  app.add_option("--policy-file",
                 policy_file,
                 "YAML (or JSON) policy rules overriding the built-in defaults, as Cinder's "
                 "policy.yaml");
  bool print_policy = false;
  app.add_flag("--print-policy-defaults",
               print_policy,
               "Print the built-in policy rules as a commented YAML policy file (a start for "
               "--policy-file) and exit");
  bool print_routes = false;
  app.add_flag("--print-routes",
               print_routes,
               "Print the API's route table (method, path, action, microversions, policy rules) "
               "as Markdown rows, as docs/API.md lists it, and exit");
  app.add_option("--log-level", log_level, "debug, info (default), warn or error");
  app.add_option("--log-format", log_format, "json (default) or text");
  // Maintenance commands; the daemon's options above also name the database they work on.
  app.fallthrough();
  CLI::App* quota_command =
      app.add_subcommand("quota", "Quota usage maintenance (the database of --config / flags)");
  CLI::App* quota_check = quota_command->add_subcommand(
      "check",
      "Recount every project's usage from the live rows and list the counters that differ "
      "(exit 1 if any does)");
  CLI::App* quota_sync = quota_command->add_subcommand(
      "sync",
      "Recount every project's usage from the live rows and repair the counters that differ");
  quota_command->require_subcommand(1);
  quota_command->fallthrough();
  quota_check->fallthrough();
  quota_sync->fallthrough();

  ParsedCommandLine result;
  try {
    app.parse(argc, argv);
    if (quota_check->parsed()) {
      result.command = Command::kQuotaCheck;
    } else if (quota_sync->parsed()) {
      result.command = Command::kQuotaSync;
    }
  } catch (const CLI::ParseError& error) {
    // CLI11 prints the help, the version or the error; a usage error exits 2 like any other
    // bad setting, whatever CLI11's own code for it.
    result.exit_code = app.exit(error) == 0 ? 0 : 2;
    return result;
  }

  if (print_routes) {
    std::cout << "| method | path | action | microversions | policy rules | notes |\n"
              << "|---|---|---|---|---|---|\n";
    for (const std::string& row : clinker::services::RouteListing()) {
      std::cout << row << "\n";
    }
    return result;
  }

  if (print_policy) {
    // As oslopolicy-sample-generator writes Cinder's: every rule commented out at its default.
    for (const clinker::domain::PolicyDefault& rule : clinker::domain::PolicyDefaults()) {
      std::cout << "# " << rule.description << "\n#\"" << rule.name << "\": \"" << rule.check
                << "\"\n\n";
    }
    return result;
  }

  Config config;
  if (!config_file.empty()) {
    // Debian's toml++ is built with exceptions: a parse error is thrown, never returned.
    toml::table parsed;
    try {
      parsed = toml::parse_file(config_file);
    } catch (const toml::parse_error& error) {
      std::cerr << "clinkerd: " << config_file << ": " << error.description() << " (line "
                << error.source().begin.line << ")\n";
      result.exit_code = 2;
      return result;
    }
    TomlReader reader(parsed, config_file);
    if (auto read = reader.Read(&config); !read) {
      std::cerr << "clinkerd: " << read.error().message << "\n";
      result.exit_code = 2;
      return result;
    }
  }
  if (roles) {
    config.roles = SplitRoles(*roles);
  }
  auto take = [](auto& target, const auto& flag) {
    if (flag) {
      target = *flag;
    }
  };
  take(config.host, host);
  take(config.cluster, cluster);
  take(config.lock_url, lock_url);
  take(config.state_dir, state_dir);
  take(config.listen, listen);
  take(config.port, port);
  take(config.api_max_connections, max_connections);
  take(config.api_max_queued_jobs_per_backend, max_queued_jobs_per_backend);
  take(config.api_header_timeout_s, header_timeout_s);
  take(config.api_body_timeout_s, body_timeout_s);
  take(config.api_keep_alive_timeout_s, keep_alive_timeout_s);
  take(config.api_write_timeout_s, write_timeout_s);
  take(config.volume_dir, volume_dir);
  take(config.backup_dir, backup_dir);
  take(config.workers, workers);
  take(config.driver_delay_ms, delay_ms);
  take(config.driver_journal, journal);
  take(config.sqlite_synchronous, synchronous);
  take(config.database_url, database_url);
  take(config.queue_url, queue_url);
  take(config.auth_strategy, auth_strategy);
  take(config.policy_file, policy_file);
  take(config.log_level, log_level);
  take(config.log_format, log_format);
  if (result.command != Command::kRun) {
    // A maintenance command runs no service: only the database settings matter, and the
    // checks of the volume role (a cluster on PostgreSQL) do not apply.
    config.roles = {"api"};
  }
  if (auto valid = Validate(&config); !valid) {
    std::cerr << "clinkerd: invalid configuration: " << valid.error().message << "\n";
    result.exit_code = 2;
    return result;
  }
  result.config = std::move(config);
  return result;
}

}  // namespace clinkerd
