#include "clinker/adapters/postgres/postgres_state_store.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include <pqxx/pqxx>

#include "clinker/core/assert.h"
#include "clinker/core/log.h"
#include "clinker/core/metrics.h"
#include "clinker/ports/state_schema.h"

namespace clinker::adapters {
namespace {

using ports::ColumnSpec;
using ports::ColumnType;
using ports::Expectation;
using ports::Row;
using ports::Table;
using ports::Value;

// Migrations are frozen once released: a schema change is a new entry appended here (and in
// ports/state_schema.cc and every other adapter), never an edit of an old one. Text columns use
// the "C" collation so that indexes, comparisons and ORDER BY are byte-wise whatever the
// database's default collation is, as in SQLite and MemoryStateStore.
constexpr std::string_view kMigration1 = R"sql(
CREATE TABLE volumes (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  status_reason TEXT COLLATE "C",
  size_gib BIGINT NOT NULL DEFAULT 0,
  display_name TEXT COLLATE "C",
  display_description TEXT COLLATE "C",
  metadata TEXT COLLATE "C" NOT NULL DEFAULT '{}',
  availability_zone TEXT COLLATE "C" NOT NULL DEFAULT 'nova',
  volume_type TEXT COLLATE "C",
  host TEXT COLLATE "C",
  cluster_name TEXT COLLATE "C",
  attach_status TEXT COLLATE "C" NOT NULL DEFAULT 'detached',
  migration_status TEXT COLLATE "C",
  snapshot_id TEXT COLLATE "C",
  source_volid TEXT COLLATE "C",
  bootable BIGINT NOT NULL DEFAULT 0,
  multiattach BIGINT NOT NULL DEFAULT 0,
  operation_id TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX volumes_project_id ON volumes (project_id, deleted, created_at);
CREATE INDEX volumes_deleted_created_at ON volumes (deleted, created_at);
CREATE TABLE snapshots (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL,
  volume_id TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  status_reason TEXT COLLATE "C",
  size_gib BIGINT NOT NULL DEFAULT 0,
  display_name TEXT COLLATE "C",
  display_description TEXT COLLATE "C",
  metadata TEXT COLLATE "C" NOT NULL DEFAULT '{}',
  operation_id TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX snapshots_project_id ON snapshots (project_id, deleted, created_at);
CREATE INDEX snapshots_deleted_created_at ON snapshots (deleted, created_at);
CREATE INDEX snapshots_volume_id ON snapshots (volume_id, deleted);
)sql";

// Services and clusters (heartbeats). "binary" is quoted: it is a reserved word in PostgreSQL.
constexpr std::string_view kMigration2 = R"sql(
CREATE TABLE services (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  "binary" TEXT COLLATE "C" NOT NULL,
  host TEXT COLLATE "C" NOT NULL,
  cluster_name TEXT COLLATE "C",
  availability_zone TEXT COLLATE "C" NOT NULL DEFAULT 'nova',
  disabled BIGINT NOT NULL DEFAULT 0,
  disabled_reason TEXT COLLATE "C",
  heartbeat_at BIGINT,
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX services_cluster_name ON services (cluster_name, deleted);
CREATE TABLE clusters (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  "binary" TEXT COLLATE "C" NOT NULL,
  disabled BIGINT NOT NULL DEFAULT 0,
  disabled_reason TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
)sql";

// Fencing: the token of the lock under which a volume was last changed.
constexpr std::string_view kMigration3 = R"sql(
ALTER TABLE volumes ADD COLUMN fencing_token BIGINT;
)sql";

// Attachments (volume_attachment in Cinder) and backups. Snapshots: fenced like volumes. An extend
// records the size it grows the volume to, so a re-published job needs nothing but the row.
// Deleting a volume or snapshot checks that no volume is still being created from it (a guard on
// source_volid / snapshot_id): indexes keep that one probe.
constexpr std::string_view kMigration4 = R"sql(
ALTER TABLE snapshots ADD COLUMN fencing_token BIGINT;
ALTER TABLE volumes ADD COLUMN pending_size_gib BIGINT;
ALTER TABLE volumes ADD COLUMN backup_id TEXT COLLATE "C";
CREATE INDEX volumes_source_volid ON volumes (source_volid, deleted);
CREATE INDEX volumes_snapshot_id ON volumes (snapshot_id, deleted);
CREATE TABLE attachments (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL,
  volume_id TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  status_reason TEXT COLLATE "C",
  instance_uuid TEXT COLLATE "C",
  attached_host TEXT COLLATE "C",
  mountpoint TEXT COLLATE "C",
  attach_mode TEXT COLLATE "C" NOT NULL DEFAULT 'null',
  connector TEXT COLLATE "C",
  connection_info TEXT COLLATE "C",
  operation_id TEXT COLLATE "C",
  fencing_token BIGINT,
  attach_time TEXT COLLATE "C",
  detach_time TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX attachments_volume_id ON attachments (volume_id, deleted);
CREATE INDEX attachments_project_id ON attachments (project_id, deleted, created_at);
CREATE TABLE backups (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL,
  volume_id TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  status_reason TEXT COLLATE "C",
  size_gib BIGINT NOT NULL DEFAULT 0,
  display_name TEXT COLLATE "C",
  display_description TEXT COLLATE "C",
  container TEXT COLLATE "C",
  availability_zone TEXT COLLATE "C" NOT NULL DEFAULT 'nova',
  parent_id TEXT COLLATE "C",
  object_count BIGINT NOT NULL DEFAULT 0,
  stored_bytes BIGINT NOT NULL DEFAULT 0,
  metadata TEXT COLLATE "C" NOT NULL DEFAULT '{}',
  restore_volume_id TEXT COLLATE "C",
  host TEXT COLLATE "C",
  cluster_name TEXT COLLATE "C",
  operation_id TEXT COLLATE "C",
  fencing_token BIGINT,
  data_timestamp TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX backups_volume_id ON backups (volume_id, deleted, created_at);
CREATE INDEX backups_parent_id ON backups (parent_id, deleted);
CREATE INDEX backups_project_id ON backups (project_id, deleted, created_at);
)sql";

// Volume transfers (Cinder's `transfers`): listed by project in creation order, looked up by
// volume.
constexpr std::string_view kMigration5 = R"sql(
CREATE TABLE transfers (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  volume_id TEXT COLLATE "C" NOT NULL,
  display_name TEXT COLLATE "C",
  salt TEXT COLLATE "C" NOT NULL,
  crypt_hash TEXT COLLATE "C" NOT NULL,
  no_snapshots BIGINT NOT NULL DEFAULT 0,
  source_project_id TEXT COLLATE "C" NOT NULL,
  destination_project_id TEXT COLLATE "C",
  accepted BIGINT NOT NULL DEFAULT 0,
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX transfers_source_project_id ON transfers (source_project_id, deleted, created_at);
CREATE INDEX transfers_volume_id ON transfers (volume_id, deleted);
)sql";

// os-services freeze / thaw, and user messages (API 3.3), listed newest first per project.
constexpr std::string_view kMigration6 = R"sql(
ALTER TABLE services ADD COLUMN frozen BIGINT NOT NULL DEFAULT 0;
CREATE TABLE messages (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  request_id TEXT COLLATE "C",
  resource_type TEXT COLLATE "C",
  resource_uuid TEXT COLLATE "C",
  event_id TEXT COLLATE "C" NOT NULL,
  action_id TEXT COLLATE "C",
  detail_id TEXT COLLATE "C",
  message_level TEXT COLLATE "C" NOT NULL DEFAULT 'ERROR',
  expires_at TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX messages_project_id ON messages (project_id, deleted, created_at);
)sql";

// Volume types, their access lists (private types) and the volume's type. A type's name is unique
// among live types (the partial index); deleting a type checks that no live volume has it (a
// guard on volume_type_id, one probe of the index).
constexpr std::string_view kMigration7 = R"sql(
ALTER TABLE volumes ADD COLUMN volume_type_id TEXT COLLATE "C";
CREATE INDEX volumes_volume_type_id ON volumes (volume_type_id, deleted);
CREATE TABLE volume_types (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  description TEXT COLLATE "C",
  is_public BIGINT NOT NULL DEFAULT 1,
  extra_specs TEXT COLLATE "C" NOT NULL DEFAULT '{}',
  qos_specs_id TEXT COLLATE "C",
  encryption TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX volume_types_live_name ON volume_types (name) WHERE deleted = 0;
CREATE TABLE volume_type_projects (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  volume_type_id TEXT COLLATE "C" NOT NULL,
  project_id TEXT COLLATE "C" NOT NULL,
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX volume_type_projects_type ON volume_type_projects (volume_type_id, deleted);
)sql";

// Volume image metadata (Cinder's volume_glance_metadata) and admin metadata (readonly,
// attached_mode), each a JSON object of strings like `metadata`.
constexpr std::string_view kMigration8 = R"sql(
ALTER TABLE volumes ADD COLUMN image_metadata TEXT COLLATE "C" NOT NULL DEFAULT '{}';
ALTER TABLE volumes ADD COLUMN admin_metadata TEXT COLLATE "C" NOT NULL DEFAULT '{}';
)sql";

// Quotas: usage counters changed atomically with the writes they count (ports/state_store.h),
// per-project limits and per-class limits. The counters of an existing database start from its
// live rows, counted as `clinkerd quota check` counts them (services/quota_usage.h).
constexpr std::string_view kMigration9 = R"sql(
CREATE TABLE quota_usages (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  resource TEXT COLLATE "C" NOT NULL,
  in_use BIGINT NOT NULL DEFAULT 0,
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX quota_usages_project_id ON quota_usages (project_id, deleted);
CREATE TABLE quotas (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  resource TEXT COLLATE "C" NOT NULL,
  hard_limit BIGINT NOT NULL DEFAULT -1,
  created_at TEXT COLLATE "C",
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX quotas_project_id ON quotas (project_id, deleted);
CREATE TABLE quota_classes (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  class_name TEXT COLLATE "C" NOT NULL,
  resource TEXT COLLATE "C" NOT NULL,
  hard_limit BIGINT NOT NULL DEFAULT -1,
  created_at TEXT COLLATE "C",
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX quota_classes_class_name ON quota_classes (class_name, deleted);
INSERT INTO quota_usages (id, project_id, resource, in_use)
SELECT project_id || '/' || resource, project_id, resource, SUM(amount) FROM (
  SELECT project_id, 'volumes' AS resource, 1::bigint AS amount FROM volumes WHERE deleted = 0
  UNION ALL
  SELECT project_id, 'gigabytes', GREATEST(size_gib, COALESCE(pending_size_gib, 0))
    FROM volumes WHERE deleted = 0
  UNION ALL
  SELECT v.project_id, 'volumes_' || t.name, 1
    FROM volumes v JOIN volume_types t ON t.id = v.volume_type_id WHERE v.deleted = 0
  UNION ALL
  SELECT v.project_id, 'gigabytes_' || t.name,
         GREATEST(v.size_gib, COALESCE(v.pending_size_gib, 0))
    FROM volumes v JOIN volume_types t ON t.id = v.volume_type_id WHERE v.deleted = 0
  UNION ALL
  SELECT project_id, 'snapshots', 1 FROM snapshots WHERE deleted = 0
  UNION ALL
  SELECT project_id, 'gigabytes', size_gib FROM snapshots WHERE deleted = 0
  UNION ALL
  SELECT s.project_id, 'snapshots_' || t.name, 1 FROM snapshots s
    JOIN volumes v ON v.id = s.volume_id JOIN volume_types t ON t.id = v.volume_type_id
    WHERE s.deleted = 0
  UNION ALL
  SELECT s.project_id, 'gigabytes_' || t.name, s.size_gib FROM snapshots s
    JOIN volumes v ON v.id = s.volume_id JOIN volume_types t ON t.id = v.volume_type_id
    WHERE s.deleted = 0
  UNION ALL
  SELECT project_id, 'backups', 1 FROM backups WHERE deleted = 0
  UNION ALL
  SELECT project_id, 'backup_gigabytes', size_gib FROM backups WHERE deleted = 0
) AS counted GROUP BY project_id, resource;
)sql";

// QoS specs (Cinder's quality_of_service_specs) with a live-unique name; the types associated with
// one are found (and a delete refused while any is) through the index on qos_specs_id. And a
// snapshot's progress (os-update_snapshot_status).
constexpr std::string_view kMigration10 = R"sql(
CREATE TABLE qos_specs (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  consumer TEXT COLLATE "C" NOT NULL DEFAULT 'back-end',
  specs TEXT COLLATE "C" NOT NULL DEFAULT '{}',
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX qos_specs_live_name ON qos_specs (name) WHERE deleted = 0;
CREATE INDEX volume_types_qos_specs_id ON volume_types (qos_specs_id, deleted);
ALTER TABLE snapshots ADD COLUMN progress TEXT COLLATE "C";
)sql";

// Generic volume groups: group types (names unique among live ones, as volume types), groups
// with their volume types as a JSON array, group snapshots, and the membership columns of
// volumes and snapshots. (Migration 11.)
constexpr std::string_view kMigration11 = R"sql(
ALTER TABLE volumes ADD COLUMN group_id TEXT COLLATE "C";
CREATE INDEX volumes_group_id ON volumes (group_id, deleted);
ALTER TABLE snapshots ADD COLUMN group_snapshot_id TEXT COLLATE "C";
CREATE INDEX snapshots_group_snapshot_id ON snapshots (group_snapshot_id, deleted);
CREATE TABLE group_types (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  description TEXT COLLATE "C",
  is_public BIGINT NOT NULL DEFAULT 1,
  group_specs TEXT COLLATE "C" NOT NULL DEFAULT '{}',
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX group_types_live_name ON group_types (name) WHERE deleted = 0;
CREATE TABLE "groups" (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  name TEXT COLLATE "C",
  description TEXT COLLATE "C",
  availability_zone TEXT COLLATE "C" NOT NULL DEFAULT 'nova',
  group_type_id TEXT COLLATE "C" NOT NULL,
  volume_type_ids TEXT COLLATE "C" NOT NULL DEFAULT '[]',
  group_snapshot_id TEXT COLLATE "C",
  source_group_id TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX groups_project_id ON "groups" (project_id, deleted);
CREATE INDEX groups_group_type_id ON "groups" (group_type_id, deleted);
CREATE INDEX groups_group_snapshot_id ON "groups" (group_snapshot_id, deleted);
CREATE INDEX groups_source_group_id ON "groups" (source_group_id, deleted);
CREATE TABLE group_snapshots (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  project_id TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL,
  group_id TEXT COLLATE "C" NOT NULL,
  group_type_id TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  name TEXT COLLATE "C",
  description TEXT COLLATE "C",
  created_at TEXT COLLATE "C" NOT NULL,
  updated_at TEXT COLLATE "C",
  deleted_at TEXT COLLATE "C",
  deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX group_snapshots_group_id ON group_snapshots (group_id, deleted);
CREATE INDEX group_snapshots_project_id ON group_snapshots (project_id, deleted);
)sql";

// The backed-up volume's metadata, kept with the backup so a restore gives it back (as Cinder
// keeps it with the backup); and where an imported backup's data is in the backup store (the id
// of the backup whose exported record it was imported from); the snapshot a backup was taken
// from, if any. (Migration 12.)
constexpr std::string_view kMigration12 = R"sql(
ALTER TABLE backups ADD COLUMN volume_metadata TEXT COLLATE "C" NOT NULL DEFAULT '{}';
ALTER TABLE backups ADD COLUMN service_metadata TEXT COLLATE "C";
CREATE INDEX backups_service_metadata ON backups (service_metadata, deleted);
ALTER TABLE backups ADD COLUMN snapshot_id TEXT COLLATE "C";
)sql";

// Capacity reserved at placement: each pool's allocated GiB, and what each volume holds of it
// (ports/state_schema.cc). Volumes placed before hold their size (unless their create failed),
// and the pools start from those; live groups start being counted in the `groups` quota.
// (Migration 13.)
constexpr std::string_view kMigration13 = R"sql(
CREATE TABLE pool_capacity (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  allocated_capacity_gb BIGINT NOT NULL DEFAULT 0,
  deleted BIGINT NOT NULL DEFAULT 0
);
ALTER TABLE volumes ADD COLUMN capacity_reserved_gib BIGINT NOT NULL DEFAULT 0;
UPDATE volumes SET capacity_reserved_gib = size_gib
  WHERE deleted = 0 AND host IS NOT NULL AND status <> 'error';
INSERT INTO pool_capacity (id, allocated_capacity_gb)
  SELECT host, SUM(capacity_reserved_gib) FROM volumes
  WHERE deleted = 0 AND capacity_reserved_gib > 0 GROUP BY host;
INSERT INTO quota_usages (id, project_id, resource, in_use)
  SELECT project_id || '/groups', project_id, 'groups', COUNT(*) FROM "groups"
  WHERE deleted = 0 GROUP BY project_id
  ON CONFLICT (id) DO UPDATE SET in_use = EXCLUDED.in_use;
)sql";

// Work queued or under way, by status: the API's admission control counts it per back-end
// (services/admission.h) and the requeue sweeper looks for queued rows. (Migration 14.)
constexpr std::string_view kMigration14 = R"sql(
CREATE INDEX volumes_status ON volumes (status, deleted);
CREATE INDEX snapshots_status ON snapshots (status, deleted);
CREATE INDEX backups_status ON backups (status, deleted);
)sql";

constexpr std::array<std::string_view, 14> kMigrations = {kMigration1,
                                                          kMigration2,
                                                          kMigration3,
                                                          kMigration4,
                                                          kMigration5,
                                                          kMigration6,
                                                          kMigration7,
                                                          kMigration8,
                                                          kMigration9,
                                                          kMigration10,
                                                          kMigration11,
                                                          kMigration12,
                                                          kMigration13,
                                                          kMigration14};

constexpr std::string_view kComponent = "state";

// One key for every component's migrations ("clinkerM" in ASCII): migrations of different
// components then never run at once, which costs nothing and rules out DDL deadlocks between
// them.
constexpr std::int64_t kMigrationLockKey = 0x636C696E6B65724D;

constexpr std::chrono::microseconds kBackoffBase{2000};
constexpr std::chrono::microseconds kBackoffMax{500000};

// libpq refuses a connect_timeout below 2 s (it treats 1 as 2).
constexpr std::int64_t kConnectTimeoutMinSeconds = 2;

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool IsUri(std::string_view uri) {
  return StartsWith(uri, "postgresql://") || StartsWith(uri, "postgres://");
}

// host:port of the server, for messages: the URI itself may carry a password.
std::string DescribeTarget(std::string_view uri) {
  std::string host;
  std::string port;
  if (IsUri(uri)) {
    std::string_view rest = uri.substr(uri.find("://") + 3);
    rest = rest.substr(0, rest.find_first_of("/?"));
    if (std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
      rest = rest.substr(at + 1);
    }
    std::size_t colon = rest.rfind(':');
    std::size_t bracket = rest.rfind(']');  // [IPv6]:port
    if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
    } else {
      host = rest;
    }
  } else {
    std::size_t position = 0;
    while (position < uri.size()) {
      std::size_t end = uri.find(' ', position);
      std::string_view token =
          uri.substr(position, end == std::string_view::npos ? end : end - position);
      if (StartsWith(token, "host=") || (host.empty() && StartsWith(token, "hostaddr="))) {
        host = token.substr(token.find('=') + 1);
      } else if (StartsWith(token, "port=")) {
        port = token.substr(5);
      }
      if (end == std::string_view::npos) {
        break;
      }
      position = end + 1;
    }
  }
  return (host.empty() ? std::string("localhost") : host) + ":" +
         (port.empty() ? std::string("5432") : port);
}

std::string BuildConninfo(const PostgresStateStore::Options& options) {
  std::int64_t seconds = std::max<std::int64_t>(kConnectTimeoutMinSeconds,
                                                (options.connect_timeout.count() + 999) / 1000);
  // Keepalives let a connection to a vanished server fail in about 20 s instead of hanging for
  // the kernel's two hours. Later duplicates of a parameter win in libpq, so these apply.
  std::vector<std::pair<std::string, std::string>> parameters = {
      {"connect_timeout", std::to_string(seconds)},
      {"fallback_application_name", "clinker"},
      {"keepalives", "1"},
      {"keepalives_idle", "10"},
      {"keepalives_interval", "3"},
      {"keepalives_count", "3"},
  };
  std::string conninfo = options.uri;
  bool uri = IsUri(conninfo);
  char separator = conninfo.find('?') == std::string::npos ? '?' : '&';
  for (const auto& [key, value] : parameters) {
    if (uri) {
      conninfo += separator;
      separator = '&';
    } else {
      conninfo += ' ';
    }
    conninfo += key;
    conninfo += '=';
    conninfo += value;
  }
  return conninfo;
}

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

// Identifiers in SQL text come only from the schema's constants, never from the caller.
std::string Ident(std::string_view qualifier, const ColumnSpec& spec) {
  std::string out;
  if (!qualifier.empty()) {
    out += qualifier;
    out += '.';
  }
  out += '"';
  out += spec.name;
  out += '"';
  return out;
}

std::string TableIdent(Table table) {
  return "\"" + std::string(ports::TableName(table)) + "\"";
}

// Every column in schema order: rows are read by position.
std::string ColumnList(Table table, std::string_view qualifier) {
  std::string out;
  for (const ColumnSpec& spec : ports::Columns(table)) {
    out += out.empty() ? "" : ", ";
    out += Ident(qualifier, spec);
  }
  return out;
}

// NULL sorts as the type's zero value ('' or 0), text byte-wise, as in MemoryStateStore.
std::string SortExpr(const ColumnSpec& spec) {
  if (spec.type == ColumnType::kText) {
    return "COALESCE(" + Ident("", spec) + ", '') COLLATE \"C\"";
  }
  return "COALESCE(" + Ident("", spec) + ", 0)";
}

Value SortValue(const ColumnSpec& spec, const Value& value) {
  if (std::holds_alternative<std::monostate>(value)) {
    if (spec.type == ColumnType::kText) {
      return std::string();
    }
    return std::int64_t{0};
  }
  return value;
}

// PostgreSQL text cannot hold a NUL byte, and libpq passes text parameters NUL-terminated: such
// a value would be cut short silently.
bool HasNul(const Value& value) {
  const auto* text = std::get_if<std::string>(&value);
  return text != nullptr && text->find('\0') != std::string::npos;
}

Result<void> CheckStorable(std::string_view what, const Value& value) {
  if (HasNul(value)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(what) + ": PostgreSQL text cannot contain a NUL byte");
  }
  return {};
}

// SQL text plus its bound parameters, built together so they cannot drift apart. Each
// placeholder is cast to the column's type, so the server never has to guess it.
struct Sql {
  std::string text;
  std::vector<std::optional<std::string>> params;

  void Param(const Value& value, ColumnType type) {
    if (const auto* number = std::get_if<std::int64_t>(&value)) {
      params.emplace_back(std::to_string(*number));
    } else if (const auto* string = std::get_if<std::string>(&value)) {
      params.emplace_back(*string);
    } else {
      params.emplace_back(std::nullopt);
    }
    text += "$" + std::to_string(params.size());
    text += type == ColumnType::kText ? "::text" : "::bigint";
  }

  void ParamList(const std::vector<Value>& values, ColumnType type) {
    text += '(';
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i > 0) {
        text += ", ";
      }
      Param(values[i], type);
    }
    text += ')';
  }
};

pqxx::result Exec(pqxx::transaction_base& tx, const Sql& sql) {
  std::vector<const char*> pointers;
  pointers.reserve(sql.params.size());
  for (const std::optional<std::string>& param : sql.params) {
    pointers.push_back(param ? param->c_str() : nullptr);
  }
  return tx.exec_params(sql.text, pqxx::prepare::make_dynamic_params(pointers));
}

// Appends " AND <condition>". The expectation was checked by CheckExpectation.
void AppendCondition(Sql& sql,
                     Table table,
                     std::string_view qualifier,
                     const Expectation& expectation) {
  const ColumnSpec* spec = ports::FindColumn(table, expectation.column);
  CLINKER_ASSERT(spec != nullptr, "expectation column not checked");
  std::string column = Ident(qualifier, *spec);
  if (spec->type == ColumnType::kText) {
    column += " COLLATE \"C\"";
  }
  sql.text += " AND ";
  switch (expectation.kind) {
    case Expectation::Kind::kEquals:
      sql.text += column + " = ";
      sql.Param(expectation.values[0], spec->type);
      break;
    case Expectation::Kind::kNotEquals:
      sql.text += "(" + column + " IS NULL OR " + column + " <> ";
      sql.Param(expectation.values[0], spec->type);
      sql.text += ")";
      break;
    case Expectation::Kind::kIn:
      if (expectation.values.empty()) {
        sql.text += "FALSE";
      } else {
        sql.text += column + " IN ";
        sql.ParamList(expectation.values, spec->type);
      }
      break;
    case Expectation::Kind::kNotIn:
      if (expectation.values.empty()) {
        sql.text += "TRUE";
      } else {
        sql.text += "(" + column + " IS NULL OR " + column + " NOT IN ";
        sql.ParamList(expectation.values, spec->type);
        sql.text += ")";
      }
      break;
    case Expectation::Kind::kIsNull:
      sql.text += column + " IS NULL";
      break;
    case Expectation::Kind::kIsNotNull:
      sql.text += column + " IS NOT NULL";
      break;
    case Expectation::Kind::kNullOrAtMost:
      sql.text += "(" + column + " IS NULL OR " + column + " <= ";
      sql.Param(expectation.values[0], spec->type);
      sql.text += ")";
      break;
  }
}

Result<void> CheckExpectations(Table table, const std::vector<Expectation>& expectations) {
  for (const Expectation& expectation : expectations) {
    CLINKER_RETURN_IF_ERROR(ports::CheckExpectation(table, expectation));
    for (const Value& value : expectation.values) {
      CLINKER_RETURN_IF_ERROR(CheckStorable("expectation on " + expectation.column, value));
    }
  }
  return {};
}

// A row selected as ColumnList(table).
Result<Row> ReadRow(Table table, const pqxx::row& result_row) {
  std::span<const ColumnSpec> columns = ports::Columns(table);
  if (result_row.size() != columns.size()) {
    return MakeError(ErrorCode::kInternal,
                     "PostgreSQL returned " + std::to_string(result_row.size()) + " columns for " +
                         std::string(ports::TableName(table)));
  }
  Row row;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    const ColumnSpec& spec = columns[i];
    pqxx::field field = result_row[static_cast<pqxx::row::size_type>(i)];
    if (field.is_null()) {
      row.emplace(std::string(spec.name), std::monostate{});
    } else if (spec.type == ColumnType::kText) {
      row.emplace(std::string(spec.name), std::string(field.c_str(), field.size()));
    } else {
      std::int64_t number = 0;
      const char* begin = field.c_str();
      const char* end = begin + field.size();
      auto [ptr, ec] = std::from_chars(begin, end, number);
      if (ec != std::errc() || ptr != end) {
        return MakeError(ErrorCode::kInternal,
                         "PostgreSQL returned a non-integer " + std::string(spec.name));
      }
      row.emplace(std::string(spec.name), number);
    }
  }
  return row;
}

Result<std::optional<Row>> ReadOptionalRow(Table table, const pqxx::result& result) {
  if (result.empty()) {
    return std::optional<Row>();
  }
  CLINKER_ASSERT(result.size() == 1, "a query by primary key returned two rows");
  CLINKER_ASSIGN_OR_RETURN(Row row, ReadRow(table, result[0]));
  return std::optional<Row>(std::move(row));
}

// Applies each usage change inside the caller's SERIALIZABLE transaction, or returns
// kQuotaExceeded (the caller's transaction is then not committed, which undoes everything). The
// row is created first (ON CONFLICT DO NOTHING), then incremented only while the sum stays within
// the limit; concurrent writers of one counter serialise on its row.
Result<void> ApplyUsage(pqxx::transaction_base& tx, const std::vector<ports::UsageChange>& usage) {
  for (const ports::UsageChange& change : usage) {
    CLINKER_RETURN_IF_ERROR(CheckStorable("project_id", Value(change.project_id)));
    CLINKER_RETURN_IF_ERROR(CheckStorable("resource", Value(change.resource)));
    const ports::UsageCounter counter = ports::CounterOf(change);
    const std::string table = "\"" + std::string(ports::TableName(counter.table)) + "\"";
    const std::string column = "\"" + std::string(counter.column) + "\"";
    Sql create;
    create.text = "INSERT INTO " + table + " (";
    std::vector<Value> fresh;
    for (const auto& [name, value] : counter.fresh_row) {
      create.text += (fresh.empty() ? "\"" : ", \"") + name + "\"";
      fresh.push_back(value);
    }
    create.text += ") VALUES ";
    create.ParamList(fresh, ColumnType::kText);
    create.text += " ON CONFLICT (\"id\") DO NOTHING";
    Exec(tx, create);

    Sql update;
    update.text = "UPDATE ";
    update.text += table;
    update.text += " SET ";
    update.text += column;
    update.text += " = ";
    update.text += column;
    update.text += " + ";
    update.Param(Value(change.delta), ColumnType::kInteger);
    update.text += " WHERE \"id\" = ";
    update.Param(Value(counter.id), ColumnType::kText);
    if (change.delta > 0 && change.limit >= 0) {
      update.text += " AND " + column + " + ";
      update.Param(Value(change.delta), ColumnType::kInteger);
      update.text += " <= ";
      update.Param(Value(change.limit), ColumnType::kInteger);
    }
    update.text += " RETURNING " + column;
    if (!Exec(tx, update).empty()) {
      continue;
    }
    Sql read;
    read.text = "SELECT ";
    read.text += column;
    read.text += " FROM ";
    read.text += table;
    read.text += " WHERE \"id\" = ";
    read.Param(Value(counter.id), ColumnType::kText);
    pqxx::result current = Exec(tx, read);
    CLINKER_ASSERT(current.size() == 1, "a usage counter vanished inside its transaction");
    return tl::unexpected(ports::QuotaExceededError({change.project_id,
                                                     change.resource,
                                                     change.limit,
                                                     current[0][0].as<std::int64_t>(),
                                                     change.delta}));
  }
  return {};
}

struct ResolvedSortKey {
  const ColumnSpec* spec;
  bool ascending;
};

Result<std::vector<ResolvedSortKey>> ResolveSort(Table table, const ports::ListQuery& query) {
  std::vector<ResolvedSortKey> keys;
  for (const ports::SortKey& key : query.sort) {
    CLINKER_ASSIGN_OR_RETURN(const ColumnSpec* spec, ports::RequireColumn(table, key.column));
    keys.push_back({spec, key.ascending});
  }
  bool id_ascending = keys.empty() ? true : keys.back().ascending;
  keys.push_back({ports::FindColumn(table, "id"), id_ascending});
  return keys;
}

// Rows strictly after the marker in the order `keys`: (k1 > m1) OR (k1 = m1 AND k2 > m2) ...,
// with < for descending keys.
void AppendAfterMarker(Sql& sql, const std::vector<ResolvedSortKey>& keys, const Row& marker) {
  sql.text += " AND (";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) {
      sql.text += " OR ";
    }
    sql.text += "(";
    for (std::size_t j = 0; j <= i; ++j) {
      const ResolvedSortKey& key = keys[j];
      auto found = marker.find(key.spec->name);
      Value marker_value = found == marker.end() ? Value() : found->second;
      if (j > 0) {
        sql.text += " AND ";
      }
      sql.text += SortExpr(*key.spec);
      if (j < i) {
        sql.text += " = ";
      } else {
        sql.text += key.ascending ? " > " : " < ";
      }
      sql.Param(SortValue(*key.spec, marker_value), key.spec->type);
    }
    sql.text += ")";
  }
  sql.text += ")";
}

// Server notices (and libpqxx's own warnings) go to the structured log instead of stderr.
class NoticeLogger final : public pqxx::errorhandler {
 public:
  NoticeLogger(pqxx::connection_base& connection, std::string target)
      : pqxx::errorhandler(connection), target_(std::move(target)) {}

  bool operator()(const char message[]) noexcept override {
    std::string_view text(message);
    while (!text.empty() && text.back() == '\n') {
      text.remove_suffix(1);
    }
    bool routine = StartsWith(text, "NOTICE:") || StartsWith(text, "INFO:") ||
                   StartsWith(text, "DEBUG:") || StartsWith(text, "LOG:");
    log::Write(routine ? log::Level::kDebug : log::Level::kWarn,
               "postgres.notice",
               {{"server", target_}, {"message", text}});
    return false;  // Handled: do not pass it on to libpqxx's default (stderr).
  }

 private:
  std::string target_;
};

}  // namespace

// The connection pool and the retry loop every method runs in.
class PostgresStateStore::Pool {
 public:
  // How a body runs: kAutocommit is one statement without BEGIN; kRead a REPEATABLE READ
  // read-only transaction; kWrite a SERIALIZABLE one (see the header); kMigrate READ COMMITTED,
  // serialised by the advisory lock and safe to run again, so even an unknown outcome is retried.
  enum class Access { kAutocommit, kRead, kWrite, kMigrate };

  Pool(const Options& options, std::string conninfo, std::string target)
      : options_(options),
        conninfo_(std::move(conninfo)),
        target_(std::move(target)),
        slots_(static_cast<std::size_t>(options.connections)) {
    // Last in, first out: the slot used most recently (connected) is taken first.
    for (auto slot = slots_.rbegin(); slot != slots_.rend(); ++slot) {
      idle_.push_back(&*slot);
    }
  }

  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  ~Pool() {
    for (Slot& slot : slots_) {
      Close(slot);
    }
  }

  const std::string& target() const { return target_; }

  // Opens one connection, retrying until options.connect_timeout has passed.
  Result<void> ConnectFirst() {
    auto start = std::chrono::steady_clock::now();
    auto deadline = start + options_.connect_timeout;
    Lease lease(*this);
    Error last{ErrorCode::kUnavailable, ""};
    for (int attempt = 1;; ++attempt) {
      Result<void> connected = Connect(lease.slot());
      if (connected) {
        return {};
      }
      last = connected.error();
      std::chrono::microseconds delay = BackoffDelay(attempt);
      if (std::chrono::steady_clock::now() + delay >= deadline) {
        break;
      }
      std::this_thread::sleep_for(delay);
    }
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    return MakeError(ErrorCode::kUnavailable,
                     last.message + " (gave up after " + std::to_string(waited.count()) + " ms)");
  }

  // Runs `body(transaction)` on a pooled connection, retrying transient failures (see the
  // header); Body is Result<T>(pqxx::transaction_base&). Errors the body returns are final, and a
  // write whose body fails is rolled back.
  template <class T, class Body>
  Result<T> Run(Access access, std::string_view operation, Body&& body) {
    Error last{ErrorCode::kUnavailable, "no attempt"};
    for (int attempt = 0; attempt <= options_.retries_max; ++attempt) {
      if (attempt > 0) {
        std::this_thread::sleep_for(BackoffDelay(attempt));
      }
      Lease lease(*this);
      Slot& slot = lease.slot();
      if (slot.connection != nullptr && !slot.connection->is_open()) {
        Close(slot);
      }
      if (slot.connection == nullptr) {
        Result<void> connected = Connect(slot);
        if (!connected) {
          last = connected.error();
          continue;
        }
      }
      bool committing = false;
      auto describe = [&](ErrorCode code, std::string_view what, const std::exception& e) {
        return Error{code,
                     std::string(operation) + " on " + target_ + ": " + std::string(what) + ": " +
                         Trim(e.what())};
      };
      auto fail = [&](ErrorCode code, std::string_view what, const std::exception& e) {
        return tl::unexpected<Error>(describe(code, what, e));
      };
      try {
        return RunOnce<T>(access, *slot.connection, body, committing);
      } catch (const pqxx::in_doubt_error& e) {
        Close(slot);
        if (access == Access::kWrite) {
          return fail(ErrorCode::kOutcomeUnknown, "connection lost during COMMIT", e);
        }
        last = describe(ErrorCode::kUnavailable, "connection lost", e);
      } catch (const pqxx::statement_completion_unknown& e) {
        if (access == Access::kWrite) {
          return fail(ErrorCode::kOutcomeUnknown, "outcome unknown", e);
        }
        last = describe(ErrorCode::kUnavailable, "outcome unknown", e);
      } catch (const pqxx::transaction_rollback& e) {
        // 40001 / 40P01: the engine rolled the transaction back; running it again is safe.
        // (In libpqxx 6.4 this does not derive from sql_error.)
        last = describe(ErrorCode::kUnavailable, "serialization failure or deadlock", e);
      } catch (const pqxx::broken_connection& e) {
        Close(slot);
        if (committing && access == Access::kWrite) {
          return fail(ErrorCode::kOutcomeUnknown, "connection lost during COMMIT", e);
        }
        // Before COMMIT the server rolls an open transaction back when the connection goes.
        last = describe(ErrorCode::kUnavailable, "connection lost", e);
      } catch (const pqxx::unique_violation& e) {
        // The primary key, or a live-unique column's partial index (ports/state_schema.h).
        return fail(ErrorCode::kConflict, "a row with this id or unique value exists", e);
      } catch (const pqxx::data_exception& e) {
        return fail(ErrorCode::kInvalidArgument, "value refused", e);
      } catch (const pqxx::sql_error& e) {
        const std::string& state = e.sqlstate();
        bool connection_gone =
            !slot.connection->is_open() || StartsWith(state, "08") || StartsWith(state, "57P");
        if (connection_gone) {
          Close(slot);
          if (committing && access == Access::kWrite) {
            return fail(ErrorCode::kOutcomeUnknown, "connection lost during COMMIT", e);
          }
          last = describe(ErrorCode::kUnavailable, "connection lost (" + state + ")", e);
        } else if (state == "55P03") {
          last = describe(ErrorCode::kUnavailable, "lock not available", e);
        } else {
          return fail(ErrorCode::kInternal, "SQLSTATE " + state, e);
        }
      } catch (const std::exception& e) {
        if (!slot.connection->is_open()) {
          Close(slot);
          if (committing && access == Access::kWrite) {
            return fail(ErrorCode::kOutcomeUnknown, "connection lost during COMMIT", e);
          }
          last = describe(ErrorCode::kUnavailable, "connection lost", e);
        } else {
          return fail(ErrorCode::kInternal, "unexpected failure", e);
        }
      }
    }
    last.message += " (gave up after " + std::to_string(options_.retries_max + 1) + " attempts)";
    return tl::unexpected<Error>(std::move(last));
  }

 private:
  struct Slot {
    std::unique_ptr<pqxx::connection> connection;
    // Registered on `connection`; declared after it so it goes first.
    std::unique_ptr<NoticeLogger> notices;
  };

  // One slot, held by one thread until the lease ends.
  class Lease {
   public:
    explicit Lease(Pool& pool) : pool_(pool) {
      std::unique_lock<std::mutex> lock(pool_.mutex_);
      pool_.idle_changed_.wait(lock, [this] { return !pool_.idle_.empty(); });
      slot_ = pool_.idle_.back();
      pool_.idle_.pop_back();
    }

    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    ~Lease() {
      {
        std::lock_guard<std::mutex> lock(pool_.mutex_);
        pool_.idle_.push_back(slot_);
      }
      pool_.idle_changed_.notify_one();
    }

    Slot& slot() { return *slot_; }

   private:
    Pool& pool_;
    Slot* slot_ = nullptr;
  };

  template <class T, class Body>
  static Result<T> RunOnce(Access access,
                           pqxx::connection& connection,
                           Body& body,
                           bool& committing) {
    switch (access) {
      case Access::kAutocommit: {
        metrics::CountRead();
        pqxx::nontransaction tx(connection);
        return body(static_cast<pqxx::transaction_base&>(tx));
      }
      case Access::kRead: {
        metrics::CountRead();
        pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(connection);
        Result<T> result = body(static_cast<pqxx::transaction_base&>(tx));
        if (result) {
          tx.commit();
        }
        return result;
      }
      case Access::kWrite: {
        metrics::CountWrite();
        pqxx::transaction<pqxx::serializable> tx(connection);
        Result<T> result = body(static_cast<pqxx::transaction_base&>(tx));
        if (result) {
          committing = true;
          tx.commit();
        }
        return result;
      }
      case Access::kMigrate: {
        pqxx::transaction<pqxx::read_committed> tx(connection);
        Result<T> result = body(static_cast<pqxx::transaction_base&>(tx));
        if (result) {
          tx.commit();
        }
        return result;
      }
    }
    CLINKER_ASSERT(false, "unknown access kind");
  }

  Result<void> Connect(Slot& slot) {
    Close(slot);
    try {
      auto connection = std::make_unique<pqxx::connection>(conninfo_);
      slot.notices = std::make_unique<NoticeLogger>(*connection, target_);
      slot.connection = std::move(connection);
      return {};
    } catch (const std::exception& e) {
      Close(slot);
      return MakeError(ErrorCode::kUnavailable,
                       "cannot connect to PostgreSQL at " + target_ + ": " + Trim(e.what()));
    }
  }

  static void Close(Slot& slot) {
    slot.notices.reset();
    slot.connection.reset();
  }

  // Full jitter in [d/2, d], d doubling from kBackoffBase up to kBackoffMax, so racing retriers
  // spread out instead of colliding again.
  static std::chrono::microseconds BackoffDelay(int attempt) {
    thread_local std::mt19937_64 random(std::random_device{}());
    std::int64_t ceiling = kBackoffBase.count() << std::min(attempt - 1, 20);
    ceiling = std::min<std::int64_t>(ceiling, kBackoffMax.count());
    std::uniform_int_distribution<std::int64_t> pick(ceiling / 2, ceiling);
    return std::chrono::microseconds(pick(random));
  }

  const Options options_;
  const std::string conninfo_;
  const std::string target_;
  std::vector<Slot> slots_;  // Never resized: idle_ points into it.
  std::mutex mutex_;
  std::condition_variable idle_changed_;
  std::vector<Slot*> idle_;  // Guarded by mutex_.
};

Result<std::unique_ptr<PostgresStateStore>> PostgresStateStore::Open(const Options& options) {
  if (options.uri.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "PostgreSQL URI is empty");
  }
  if (options.connections < 1) {
    return MakeError(ErrorCode::kInvalidArgument, "connections must be at least 1");
  }
  if (options.connect_timeout <= std::chrono::milliseconds::zero()) {
    return MakeError(ErrorCode::kInvalidArgument, "connect_timeout must be positive");
  }
  if (options.retries_max < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "retries_max must not be negative");
  }
  auto pool = std::make_unique<Pool>(options, BuildConninfo(options), DescribeTarget(options.uri));
  CLINKER_RETURN_IF_ERROR(pool->ConnectFirst());
  std::unique_ptr<PostgresStateStore> store(new PostgresStateStore(std::move(pool)));
  CLINKER_RETURN_IF_ERROR(store->Migrate());
  return store;
}

std::span<const std::string_view> PostgresStateStore::Migrations() {
  return kMigrations;
}

PostgresStateStore::PostgresStateStore(std::unique_ptr<Pool> pool) : pool_(std::move(pool)) {}

PostgresStateStore::~PostgresStateStore() = default;

Result<void> PostgresStateStore::Migrate() {
  const std::string& target = pool_->target();
  return pool_->Run<void>(
      Pool::Access::kMigrate, "migrate", [&target](pqxx::transaction_base& tx) -> Result<void> {
        // Held until COMMIT: concurrent Opens apply each migration exactly once.
        tx.exec_params("SELECT pg_advisory_xact_lock($1::bigint)",
                       std::to_string(kMigrationLockKey));
        tx.exec(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "component TEXT NOT NULL, version BIGINT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (component, version))");
        pqxx::result applied =
            tx.exec_params("SELECT version FROM schema_migrations WHERE component = $1::text",
                           std::string(kComponent));
        std::set<std::int64_t> versions;
        for (const pqxx::row& row : applied) {
          versions.insert(row[0].as<std::int64_t>());
        }
        for (std::size_t i = 0; i < kMigrations.size(); ++i) {
          auto version = static_cast<std::int64_t>(i + 1);
          if (versions.count(version) != 0) {
            continue;
          }
          tx.exec(std::string(kMigrations[i]));
          tx.exec_params(
              "INSERT INTO schema_migrations (component, version) VALUES ($1::text, $2::bigint)",
              std::string(kComponent),
              std::to_string(version));
          log::Info("state_store.migrated",
                    {{"engine", std::string_view("postgres")},
                     {"server", target},
                     {"component", kComponent},
                     {"version", static_cast<long long>(version)}});
        }
        if (!versions.empty() &&
            *versions.rbegin() > static_cast<std::int64_t>(kMigrations.size())) {
          log::Warn("state_store.schema_newer",
                    {{"server", target},
                     {"component", kComponent},
                     {"version", static_cast<long long>(*versions.rbegin())},
                     {"known", static_cast<long long>(kMigrations.size())}});
        }
        return {};
      });
}

Result<void> PostgresStateStore::Insert(Table table, const Row& row) {
  return InsertWithUsage(table, row, {});
}

Result<std::optional<Row>> PostgresStateStore::ConditionalUpdate(
    Table table,
    std::string_view id,
    const Row& values,
    const std::vector<Expectation>& expected,
    const std::vector<ports::Guard>& guards) {
  return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
}

Result<void> PostgresStateStore::InsertWithUsage(Table table,
                                                 const Row& row,
                                                 const std::vector<ports::UsageChange>& usage) {
  CLINKER_RETURN_IF_ERROR(ports::CheckUsageChanges(usage));
  CLINKER_ASSIGN_OR_RETURN(Row complete, ports::CompleteRow(table, row));
  Sql sql;
  sql.text = "INSERT INTO " + TableIdent(table) + " (" + ColumnList(table, "") + ") VALUES (";
  bool first = true;
  for (const ColumnSpec& spec : ports::Columns(table)) {
    const Value& value = complete.find(spec.name)->second;
    CLINKER_RETURN_IF_ERROR(CheckStorable(spec.name, value));
    sql.text += first ? "" : ", ";
    first = false;
    sql.Param(value, spec.type);
  }
  sql.text += ")";
  return pool_->Run<void>(Pool::Access::kWrite,
                          "insert into " + std::string(ports::TableName(table)),
                          [&sql, &usage](pqxx::transaction_base& tx) -> Result<void> {
                            Exec(tx, sql);
                            return ApplyUsage(tx, usage);
                          });
}

Result<Row> PostgresStateStore::Get(Table table, std::string_view id) {
  std::string not_found =
      std::string(ports::TableName(table)) + " " + std::string(id) + " not found";
  Value id_value{std::string(id)};
  if (HasNul(id_value)) {
    return MakeError(ErrorCode::kNotFound, not_found);  // No stored id can hold one.
  }
  Sql sql;
  sql.text = "SELECT " + ColumnList(table, "") + " FROM " + TableIdent(table) + " WHERE \"id\" = ";
  sql.Param(id_value, ColumnType::kText);
  CLINKER_ASSIGN_OR_RETURN(
      std::optional<Row> row,
      pool_->Run<std::optional<Row>>(
          Pool::Access::kAutocommit,
          "get from " + std::string(ports::TableName(table)),
          [&](pqxx::transaction_base& tx) { return ReadOptionalRow(table, Exec(tx, sql)); }));
  if (!row) {
    return MakeError(ErrorCode::kNotFound, not_found);
  }
  return std::move(*row);
}

Result<std::vector<Row>> PostgresStateStore::List(Table table, const ports::ListQuery& query) {
  CLINKER_RETURN_IF_ERROR(CheckExpectations(table, query.filters));
  CLINKER_ASSIGN_OR_RETURN(std::vector<ResolvedSortKey> keys, ResolveSort(table, query));
  if (query.limit && *query.limit < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "limit must not be negative");
  }
  std::string marker_missing;
  if (query.marker_id) {
    marker_missing = "marker " + *query.marker_id + " not found";
    if (HasNul(Value(*query.marker_id))) {
      return MakeError(ErrorCode::kNotFound, marker_missing);
    }
  }
  auto read = [&](pqxx::transaction_base& tx) -> Result<std::vector<Row>> {
    Sql sql;
    sql.text = "SELECT " + ColumnList(table, "") + " FROM " + TableIdent(table) + " WHERE TRUE";
    if (!query.include_deleted) {
      sql.text += " AND \"deleted\" = 0";
    }
    for (const Expectation& filter : query.filters) {
      AppendCondition(sql, table, "", filter);
    }
    if (query.marker_id) {
      Sql marker_sql;
      marker_sql.text =
          "SELECT " + ColumnList(table, "") + " FROM " + TableIdent(table) + " WHERE \"id\" = ";
      marker_sql.Param(Value(*query.marker_id), ColumnType::kText);
      CLINKER_ASSIGN_OR_RETURN(std::optional<Row> marker,
                               ReadOptionalRow(table, Exec(tx, marker_sql)));
      if (!marker) {
        return MakeError(ErrorCode::kNotFound, marker_missing);
      }
      AppendAfterMarker(sql, keys, *marker);
    }
    sql.text += " ORDER BY ";
    for (std::size_t i = 0; i < keys.size(); ++i) {
      sql.text += i > 0 ? ", " : "";
      sql.text += SortExpr(*keys[i].spec);
      sql.text += keys[i].ascending ? " ASC" : " DESC";
    }
    if (query.limit) {
      sql.text += " LIMIT ";
      sql.Param(Value(*query.limit), ColumnType::kInteger);
    }
    pqxx::result result = Exec(tx, sql);
    std::vector<Row> rows;
    rows.reserve(result.size());
    for (const pqxx::row& result_row : result) {
      CLINKER_ASSIGN_OR_RETURN(Row row, ReadRow(table, result_row));
      rows.push_back(std::move(row));
    }
    return rows;
  };
  // A marker needs its own statement; one snapshot keeps it consistent with the page.
  return pool_->Run<std::vector<Row>>(
      query.marker_id ? Pool::Access::kRead : Pool::Access::kAutocommit,
      "list " + std::string(ports::TableName(table)),
      read);
}

Result<std::optional<Row>> PostgresStateStore::ConditionalUpdateWithUsage(
    Table table,
    std::string_view id,
    const Row& values,
    const std::vector<Expectation>& expected,
    const std::vector<ports::Guard>& guards,
    const std::vector<ports::UsageChange>& usage) {
  CLINKER_RETURN_IF_ERROR(ports::CheckUsageChanges(usage));
  CLINKER_RETURN_IF_ERROR(ports::CheckUpdateValues(table, values));
  for (const auto& [name, value] : values) {
    CLINKER_RETURN_IF_ERROR(CheckStorable(name, value));
  }
  CLINKER_RETURN_IF_ERROR(CheckExpectations(table, expected));
  for (const ports::Guard& guard : guards) {
    CLINKER_RETURN_IF_ERROR(ports::CheckGuard(guard));
    CLINKER_RETURN_IF_ERROR(CheckExpectations(guard.table, guard.where));
  }
  Value id_value{std::string(id)};
  if (HasNul(id_value)) {
    return std::optional<Row>();  // No stored id can hold one: a missing row.
  }

  // The alias keeps `target."id"` unambiguous when a guard looks at the same table.
  Sql sql;
  sql.text = "UPDATE " + TableIdent(table) + " AS target SET ";
  if (values.empty()) {
    sql.text += "\"id\" = target.\"id\"";
  }
  bool first = true;
  for (const auto& [name, value] : values) {
    const ColumnSpec* spec = ports::FindColumn(table, name);
    sql.text += first ? "" : ", ";
    first = false;
    sql.text += Ident("", *spec) + " = ";
    sql.Param(value, spec->type);
  }
  sql.text += " WHERE target.\"id\" = ";
  sql.Param(id_value, ColumnType::kText);
  for (const Expectation& expectation : expected) {
    AppendCondition(sql, table, "target", expectation);
  }
  for (const ports::Guard& guard : guards) {
    const ColumnSpec* spec = ports::FindColumn(guard.table, guard.column);
    if (spec->type != ColumnType::kText) {
      // An integer never equals a text id (as in MemoryStateStore): such a guard always holds.
      continue;
    }
    // Race-free only because the transaction is SERIALIZABLE (see the header).
    sql.text += " AND NOT EXISTS (SELECT 1 FROM " + TableIdent(guard.table) + " AS ref WHERE " +
                Ident("ref", *spec) + " = target.\"id\" AND ref.\"deleted\" = 0";
    for (const Expectation& condition : guard.where) {
      AppendCondition(sql, guard.table, "ref", condition);
    }
    sql.text += ")";
  }
  sql.text += " RETURNING " + ColumnList(table, "target");

  return pool_->Run<std::optional<Row>>(
      Pool::Access::kWrite,
      "conditional update of " + std::string(ports::TableName(table)),
      [&](pqxx::transaction_base& tx) -> Result<std::optional<Row>> {
        CLINKER_ASSIGN_OR_RETURN(std::optional<Row> updated, ReadOptionalRow(table, Exec(tx, sql)));
        if (updated) {
          CLINKER_RETURN_IF_ERROR(ApplyUsage(tx, usage));
        }
        return updated;
      });
}

}  // namespace clinker::adapters
