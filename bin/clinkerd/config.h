// clinkerd's configuration: built-in defaults, then the TOML file (--config), then command-line
// flags, each overriding the one before. Every value is validated before anything starts, and a
// bad value is reported with the setting's name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/services/quotas.h"

namespace clinkerd {

// A RabbitMQ broker as named by `[queue] url` (amqp://user:password@host:port/vhost).
struct AmqpServer {
  std::string host;
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
};

// Parses amqp://[user[:password]@]host[:port][/vhost], percent-decoding user, password and vhost
// (an absent or empty vhost is "/"). kInvalidArgument otherwise; the message never quotes the URL,
// which may carry a password.
clinker::Result<AmqpServer> ParseAmqpUrl(std::string_view url);

// An etcd server as named by `[locks] url` (etcd://host:port, port 2379 by default).
struct EtcdServer {
  std::string host;
  int port = 2379;
};

clinker::Result<EtcdServer> ParseEtcdUrl(std::string_view url);

// "host:port" of a postgresql:// (or postgres://) URL, for messages that must not quote the URL
// (it may carry a password). kInvalidArgument for another scheme.
clinker::Result<std::string> PostgresServerName(std::string_view url);

// One volume back-end this process serves (Cinder's enabled_backends: one section each). Its
// volume service has its own driver, job queue session and topics, worker pool, capability
// reports and os-services row ("<host>@<name>").
struct BackendConfig {
  // The "@<name>" of its addresses (host@name, cluster@name), unique in the process.
  std::string name;
  // Reported as volume_backend_name (what volume types' extra specs match). Default: name.
  std::string volume_backend_name;
  std::string driver = "file";  // This release: file.
  std::string volume_dir;       // Default: <state_dir>/volumes/<name> (short form: [volume]'s).
  std::string host;             // Default: [service] host.
  std::string cluster;          // Default: [service] cluster; empty: not clustered.
  int workers = 0;              // 0: [volume] workers.

  std::string BackendAddress() const { return host + "@" + name; }

  std::string ClusterAddress() const { return cluster + "@" + name; }

  // Where the scheduler sends its volumes: the cluster's queue if clustered, else the host's.
  std::string PlacementAddress() const {
    return cluster.empty() ? BackendAddress() : ClusterAddress();
  }
};

struct Config {
  // [service]
  std::vector<std::string> roles = {"api", "scheduler", "volume"};
  std::string host;  // Default: the machine's hostname.
  // The cluster this node's volume service belongs to. Empty: not clustered (its back-end's
  // jobs reach this node only). Required for the volume role on PostgreSQL.
  std::string cluster;
  std::string state_dir = "./var";
  int report_interval_s = 10;    // Heartbeat period of the scheduler and volume services.
  int service_down_time_s = 60;  // A service whose last heartbeat is older is shown down.
  // [api]
  std::string listen = "127.0.0.1";
  int port = 8776;
  int api_threads = 32;  // Handler workers of the HTTP server.
  // The HTTP front end (adapters/http/http_server.h): event-loop threads, the queue in front of
  // the workers, the connection cap, timeouts and size limits.
  int api_io_threads = 1;
  int api_max_queued_requests = 1024;
  int api_max_connections = 10000;
  // Admission control (services/admission.h): back-end jobs not finished, per back-end, beyond
  // which requests that would start more get 503; 0 = unbounded.
  int api_max_queued_jobs_per_backend = 0;
  int api_header_timeout_s = 10;
  int api_body_timeout_s = 30;
  int api_keep_alive_timeout_s = 60;
  int api_write_timeout_s = 30;
  int api_drain_timeout_s = 30;
  std::int64_t api_max_header_bytes = 65536;
  std::int64_t api_max_body_bytes = 1048576;
  std::int64_t max_limit = 1000;
  std::int64_t max_volume_size_gib = 16384;
  std::string availability_zone = "nova";
  // The volume type of a volume created without one (Cinder's default_volume_type); created at
  // start when no type has this name, and never deletable.
  std::string default_volume_type = "__DEFAULT__";
  // A DELETE of a volume whose write lock is held gets 409 instead of queuing (needs the locks).
  bool fail_fast_when_busy = false;
  bool backends_listed = false;  // The file had [[backends]] (set by parsing; next to a bool:
                                 // no padding).
  // [scheduler]
  // Default: this node's "<cluster>@<backend>" when it has a cluster, else "<host>@<backend>".
  std::vector<std::string> scheduler_clusters;
  std::vector<std::string> scheduler_backends;
  double max_over_subscription_ratio = 20.0;  // Thin provisioning, as Cinder's.
  // Cinder's scheduler_default_weighers: ["CapacityWeigher"] or ["VolumeNumberWeigher"].
  std::vector<std::string> scheduler_weighers = {"CapacityWeigher"};
  int requeue_after_s = 60;  // Re-publish the job of a volume queued this long.
  int sweep_interval_s = 10;
  // [volume]
  std::string backend = "file";
  std::string volume_dir;  // Default: <state_dir>/volumes.
  int workers = 16;
  int lock_timeout_s = 60;
  int driver_delay_ms = 0;
  std::string driver_journal;
  // [[backends]]: the back-ends of this process. Validate fills it: from the [[backends]] tables
  // when the file has any, else one back-end from [volume] backend / volume_dir and [service]
  // host / cluster (the short form, one back-end named after its driver).
  std::vector<BackendConfig> backends;
  // [backup]
  std::string backup_dir;  // Default: <state_dir>/backups. Shared by the back-end's nodes.
  int backup_chunk_size_mib = 8;
  int backup_compression_level = 1;  // zlib, 0 (none) to 9.
  int attach_timeout_s = 60;         // [api] how long attach / detach requests wait.
  // [api] auth_strategy: "noauth" (X-Auth-Token: <user>:<project>, everyone admin, as Cinder's
  // noauth) or "keystone" (tokens validated against Keystone v3, roles and policy).
  std::string auth_strategy = "noauth";
  // [keystone_authtoken], as Cinder's keystonemiddleware section (auth_strategy = keystone).
  // Clinker's own service credentials, with which it validates users' tokens:
  std::string keystone_auth_url;  // http(s)://host:port/v3 (or .../identity/v3)
  std::string keystone_username;
  std::string keystone_password;
  std::string keystone_project_name;
  std::string keystone_user_domain_name = "Default";
  std::string keystone_project_domain_name = "Default";
  // Told to clients in a 401's WWW-Authenticate header; default: auth_url.
  std::string keystone_www_authenticate_uri;
  // An X-Service-Token must carry one of these roles to be honoured.
  std::vector<std::string> keystone_service_token_roles = {"service"};
  int keystone_token_cache_time_s = 300;  // a validated token is trusted this long at most
  int keystone_http_timeout_s = 5;        // per request to Keystone; past it: 503 to the client
  // [oslo_policy] policy_file: YAML (or JSON) rules overriding the built-in defaults.
  std::string policy_file;
  // [database]
  std::string database_url;     // Empty: SQLite in state_dir; else a postgresql:// URL.
  std::string database_server;  // "host:port" of database_url, for messages (set by parsing).
  std::string sqlite_synchronous = "normal";
  // [queue]
  std::string queue_url;                   // Empty: the embedded SQLite queue; else amqp://.
  std::optional<AmqpServer> queue_server;  // Parsed queue_url (set by parsing).
  // AMQP heartbeat: a node that stops answering (hung, paused, cut off) loses its connection, and
  // its unacknowledged jobs go to another node, after about two of these.
  int queue_heartbeat_s = 10;
  // [locks]
  std::string lock_url;                   // Empty: file locks in state_dir; else etcd://.
  std::optional<EtcdServer> lock_server;  // Parsed lock_url (set by parsing).
  int lease_ttl_s = 2;                    // etcd leases count whole seconds.
  int heartbeat_interval_ms = 400;
  int missed_heartbeats = 3;
  // [quota]: Cinder's quota_volumes, quota_snapshots, quota_gigabytes, quota_backups,
  // quota_backup_gigabytes, quota_groups, per_volume_size_limit and no_snapshot_gb_quota (the
  // defaults every project has unless the class "default" or its own limits say otherwise).
  clinker::services::QuotaOptions quota;
  // [log]
  std::string log_level = "info";
  std::string log_format = "json";

  bool HasRole(std::string_view role) const;
};

// Reads TOML text (the content of `file`, named in messages) into `config`, over what it holds:
// kInvalidArgument naming the setting for a syntax error, an unknown section or key, or a value
// of the wrong type. Ranges and cross-setting rules are ValidateConfig's.
clinker::Result<void> ReadConfigText(std::string_view text,
                                     const std::string& file,
                                     Config* config);

// Checks every value and fills in the defaults that depend on others (host, directories,
// backends, the scheduler's back-ends). kInvalidArgument naming the setting otherwise.
clinker::Result<void> ValidateConfig(Config* config);

// What the command line asks for: run the daemon, or a maintenance command.
enum class Command {
  kRun,
  kQuotaCheck,  // `clinkerd quota check`: recount usage, report differences (exit 1 if any).
  kQuotaSync,   // `clinkerd quota sync`: recount usage and repair the counters that differ.
};

struct ParsedCommandLine {
  std::optional<Config> config;  // Set when the daemon (or a command) should run.
  Command command = Command::kRun;
  int exit_code = 0;  // Otherwise exit with this (0 after --help / --version).
};

// Parses flags and the config file. Prints help, version and errors itself.
ParsedCommandLine ParseCommandLine(int argc, char** argv);

}  // namespace clinkerd
