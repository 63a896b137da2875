#include "clinker/adapters/sqlite/sqlite_state_store.h"

#include <array>
#include <charconv>
#include <string>
#include <utility>

#include "clinker/core/assert.h"
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
// ports/state_schema.cc), never an edit of an old one. STRICT makes SQLite refuse a value of the
// wrong type even if a bug slipped past CheckValue.
constexpr std::string_view kMigration1 = R"sql(
CREATE TABLE volumes (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  status_reason TEXT,
  size_gib INTEGER NOT NULL DEFAULT 0,
  display_name TEXT,
  display_description TEXT,
  metadata TEXT NOT NULL DEFAULT '{}',
  availability_zone TEXT NOT NULL DEFAULT 'nova',
  volume_type TEXT,
  host TEXT,
  cluster_name TEXT,
  attach_status TEXT NOT NULL DEFAULT 'detached',
  migration_status TEXT,
  snapshot_id TEXT,
  source_volid TEXT,
  bootable INTEGER NOT NULL DEFAULT 0,
  multiattach INTEGER NOT NULL DEFAULT 0,
  operation_id TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX volumes_project_id ON volumes (project_id, deleted, created_at);
CREATE INDEX volumes_deleted_created_at ON volumes (deleted, created_at);
CREATE TABLE snapshots (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  volume_id TEXT NOT NULL,
  status TEXT NOT NULL,
  status_reason TEXT,
  size_gib INTEGER NOT NULL DEFAULT 0,
  display_name TEXT,
  display_description TEXT,
  metadata TEXT NOT NULL DEFAULT '{}',
  operation_id TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX snapshots_project_id ON snapshots (project_id, deleted, created_at);
CREATE INDEX snapshots_deleted_created_at ON snapshots (deleted, created_at);
CREATE INDEX snapshots_volume_id ON snapshots (volume_id, deleted);
)sql";

// Services and clusters (heartbeats). "binary" is quoted: it names a collation in SQLite.
constexpr std::string_view kMigration2 = R"sql(
CREATE TABLE services (
  id TEXT NOT NULL PRIMARY KEY,
  "binary" TEXT NOT NULL,
  host TEXT NOT NULL,
  cluster_name TEXT,
  availability_zone TEXT NOT NULL DEFAULT 'nova',
  disabled INTEGER NOT NULL DEFAULT 0,
  disabled_reason TEXT,
  heartbeat_at INTEGER,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX services_cluster_name ON services (cluster_name, deleted);
CREATE TABLE clusters (
  id TEXT NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  "binary" TEXT NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0,
  disabled_reason TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
)sql";

// Fencing: the token of the lock under which a volume was last changed.
constexpr std::string_view kMigration3 = R"sql(
ALTER TABLE volumes ADD COLUMN fencing_token INTEGER;
)sql";

// Attachments (volume_attachment in Cinder) and backups. Snapshots: fenced like volumes. An extend
// records the size it grows the volume to, so a re-published job needs nothing but the row.
// Deleting a volume or snapshot checks that no volume is still being created from it (a guard on
// source_volid / snapshot_id): indexes keep that one probe.
constexpr std::string_view kMigration4 = R"sql(
ALTER TABLE snapshots ADD COLUMN fencing_token INTEGER;
ALTER TABLE volumes ADD COLUMN pending_size_gib INTEGER;
ALTER TABLE volumes ADD COLUMN backup_id TEXT;
CREATE INDEX volumes_source_volid ON volumes (source_volid, deleted);
CREATE INDEX volumes_snapshot_id ON volumes (snapshot_id, deleted);
CREATE TABLE attachments (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  volume_id TEXT NOT NULL,
  status TEXT NOT NULL,
  status_reason TEXT,
  instance_uuid TEXT,
  attached_host TEXT,
  mountpoint TEXT,
  attach_mode TEXT NOT NULL DEFAULT 'null',
  connector TEXT,
  connection_info TEXT,
  operation_id TEXT,
  fencing_token INTEGER,
  attach_time TEXT,
  detach_time TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX attachments_volume_id ON attachments (volume_id, deleted);
CREATE INDEX attachments_project_id ON attachments (project_id, deleted, created_at);
CREATE TABLE backups (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  volume_id TEXT NOT NULL,
  status TEXT NOT NULL,
  status_reason TEXT,
  size_gib INTEGER NOT NULL DEFAULT 0,
  display_name TEXT,
  display_description TEXT,
  container TEXT,
  availability_zone TEXT NOT NULL DEFAULT 'nova',
  parent_id TEXT,
  object_count INTEGER NOT NULL DEFAULT 0,
  stored_bytes INTEGER NOT NULL DEFAULT 0,
  metadata TEXT NOT NULL DEFAULT '{}',
  restore_volume_id TEXT,
  host TEXT,
  cluster_name TEXT,
  operation_id TEXT,
  fencing_token INTEGER,
  data_timestamp TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX backups_volume_id ON backups (volume_id, deleted, created_at);
CREATE INDEX backups_parent_id ON backups (parent_id, deleted);
CREATE INDEX backups_project_id ON backups (project_id, deleted, created_at);
)sql";

// Volume transfers (Cinder's `transfers`): listed by project in creation order, looked up by
// volume.
constexpr std::string_view kMigration5 = R"sql(
CREATE TABLE transfers (
  id TEXT NOT NULL PRIMARY KEY,
  volume_id TEXT NOT NULL,
  display_name TEXT,
  salt TEXT NOT NULL,
  crypt_hash TEXT NOT NULL,
  no_snapshots INTEGER NOT NULL DEFAULT 0,
  source_project_id TEXT NOT NULL,
  destination_project_id TEXT,
  accepted INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX transfers_source_project_id ON transfers (source_project_id, deleted, created_at);
CREATE INDEX transfers_volume_id ON transfers (volume_id, deleted);
)sql";

// os-services freeze / thaw, and user messages (API 3.3), listed newest first per project.
constexpr std::string_view kMigration6 = R"sql(
ALTER TABLE services ADD COLUMN frozen INTEGER NOT NULL DEFAULT 0;
CREATE TABLE messages (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  request_id TEXT,
  resource_type TEXT,
  resource_uuid TEXT,
  event_id TEXT NOT NULL,
  action_id TEXT,
  detail_id TEXT,
  message_level TEXT NOT NULL DEFAULT 'ERROR',
  expires_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX messages_project_id ON messages (project_id, deleted, created_at);
)sql";

// Volume types, their access lists (private types) and the volume's type. A type's name is unique
// among live types (the partial index); deleting a type checks that no live volume has it (a
// guard on volume_type_id, one probe of the index).
constexpr std::string_view kMigration7 = R"sql(
ALTER TABLE volumes ADD COLUMN volume_type_id TEXT;
CREATE INDEX volumes_volume_type_id ON volumes (volume_type_id, deleted);
CREATE TABLE volume_types (
  id TEXT NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT,
  is_public INTEGER NOT NULL DEFAULT 1,
  extra_specs TEXT NOT NULL DEFAULT '{}',
  qos_specs_id TEXT,
  encryption TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX volume_types_live_name ON volume_types (name) WHERE deleted = 0;
CREATE TABLE volume_type_projects (
  id TEXT NOT NULL PRIMARY KEY,
  volume_type_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX volume_type_projects_type ON volume_type_projects (volume_type_id, deleted);
)sql";

// Volume image metadata (Cinder's volume_glance_metadata) and admin metadata (readonly,
// attached_mode), each a JSON object of strings like `metadata`.
constexpr std::string_view kMigration8 = R"sql(
ALTER TABLE volumes ADD COLUMN image_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE volumes ADD COLUMN admin_metadata TEXT NOT NULL DEFAULT '{}';
)sql";

// Quotas: usage counters changed atomically with the writes they count (ports/state_store.h),
// per-project limits and per-class limits. The counters of an existing database start from its
// live rows, counted as `clinkerd quota check` counts them (services/quota_usage.h).
constexpr std::string_view kMigration9 = R"sql(
CREATE TABLE quota_usages (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  resource TEXT NOT NULL,
  in_use INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX quota_usages_project_id ON quota_usages (project_id, deleted);
CREATE TABLE quotas (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  resource TEXT NOT NULL,
  hard_limit INTEGER NOT NULL DEFAULT -1,
  created_at TEXT,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX quotas_project_id ON quotas (project_id, deleted);
CREATE TABLE quota_classes (
  id TEXT NOT NULL PRIMARY KEY,
  class_name TEXT NOT NULL,
  resource TEXT NOT NULL,
  hard_limit INTEGER NOT NULL DEFAULT -1,
  created_at TEXT,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX quota_classes_class_name ON quota_classes (class_name, deleted);
INSERT INTO quota_usages (id, project_id, resource, in_use)
SELECT project_id || '/' || resource, project_id, resource, SUM(amount) FROM (
  SELECT project_id, 'volumes' AS resource, 1 AS amount FROM volumes WHERE deleted = 0
  UNION ALL
  SELECT project_id, 'gigabytes', MAX(size_gib, COALESCE(pending_size_gib, 0))
    FROM volumes WHERE deleted = 0
  UNION ALL
  SELECT v.project_id, 'volumes_' || t.name, 1
    FROM volumes v JOIN volume_types t ON t.id = v.volume_type_id WHERE v.deleted = 0
  UNION ALL
  SELECT v.project_id, 'gigabytes_' || t.name, MAX(v.size_gib, COALESCE(v.pending_size_gib, 0))
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
) GROUP BY project_id, resource;
)sql";

// QoS specs (Cinder's quality_of_service_specs) with a live-unique name; the types associated with
// one are found (and a delete refused while any is) through the index on qos_specs_id. And a
// snapshot's progress (os-update_snapshot_status).
constexpr std::string_view kMigration10 = R"sql(
CREATE TABLE qos_specs (
  id TEXT NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  consumer TEXT NOT NULL DEFAULT 'back-end',
  specs TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX qos_specs_live_name ON qos_specs (name) WHERE deleted = 0;
CREATE INDEX volume_types_qos_specs_id ON volume_types (qos_specs_id, deleted);
ALTER TABLE snapshots ADD COLUMN progress TEXT;
)sql";

// Generic volume groups: group types (names unique among live ones, as volume types), groups
// with their volume types as a JSON array, group snapshots, and the membership columns of
// volumes and snapshots. (Migration 11.)
constexpr std::string_view kMigration11 = R"sql(
ALTER TABLE volumes ADD COLUMN group_id TEXT;
CREATE INDEX volumes_group_id ON volumes (group_id, deleted);
ALTER TABLE snapshots ADD COLUMN group_snapshot_id TEXT;
CREATE INDEX snapshots_group_snapshot_id ON snapshots (group_snapshot_id, deleted);
CREATE TABLE group_types (
  id TEXT NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT,
  is_public INTEGER NOT NULL DEFAULT 1,
  group_specs TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX group_types_live_name ON group_types (name) WHERE deleted = 0;
CREATE TABLE "groups" (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  name TEXT,
  description TEXT,
  availability_zone TEXT NOT NULL DEFAULT 'nova',
  group_type_id TEXT NOT NULL,
  volume_type_ids TEXT NOT NULL DEFAULT '[]',
  group_snapshot_id TEXT,
  source_group_id TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX groups_project_id ON "groups" (project_id, deleted);
CREATE INDEX groups_group_type_id ON "groups" (group_type_id, deleted);
CREATE INDEX groups_group_snapshot_id ON "groups" (group_snapshot_id, deleted);
CREATE INDEX groups_source_group_id ON "groups" (source_group_id, deleted);
CREATE TABLE group_snapshots (
  id TEXT NOT NULL PRIMARY KEY,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  group_id TEXT NOT NULL,
  group_type_id TEXT NOT NULL,
  status TEXT NOT NULL,
  name TEXT,
  description TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  deleted_at TEXT,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX group_snapshots_group_id ON group_snapshots (group_id, deleted);
CREATE INDEX group_snapshots_project_id ON group_snapshots (project_id, deleted);
)sql";

// The backed-up volume's metadata, kept with the backup so a restore gives it back (as Cinder
// keeps it with the backup); and where an imported backup's data is in the backup store (the id
// of the backup whose exported record it was imported from); the snapshot a backup was taken
// from, if any. (Migration 12.)
constexpr std::string_view kMigration12 = R"sql(
ALTER TABLE backups ADD COLUMN volume_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE backups ADD COLUMN service_metadata TEXT;
CREATE INDEX backups_service_metadata ON backups (service_metadata, deleted);
ALTER TABLE backups ADD COLUMN snapshot_id TEXT;
)sql";

// Capacity reserved at placement: each pool's allocated GiB, and what each volume holds of it
// (ports/state_schema.cc). Volumes placed before hold their size (unless their create failed),
// and the pools start from those; live groups start being counted in the `groups` quota.
// (Migration 13.)
constexpr std::string_view kMigration13 = R"sql(
CREATE TABLE pool_capacity (
  id TEXT NOT NULL PRIMARY KEY,
  allocated_capacity_gb INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
ALTER TABLE volumes ADD COLUMN capacity_reserved_gib INTEGER NOT NULL DEFAULT 0;
UPDATE volumes SET capacity_reserved_gib = size_gib
  WHERE deleted = 0 AND host IS NOT NULL AND status != 'error';
INSERT INTO pool_capacity (id, allocated_capacity_gb)
  SELECT host, SUM(capacity_reserved_gib) FROM volumes
  WHERE deleted = 0 AND capacity_reserved_gib > 0 GROUP BY host;
INSERT INTO quota_usages (id, project_id, resource, in_use)
  SELECT project_id || '/groups', project_id, 'groups', COUNT(*) FROM "groups"
  WHERE deleted = 0 GROUP BY project_id
  ON CONFLICT (id) DO UPDATE SET in_use = excluded.in_use;
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

// NULL sorts as the type's zero value ('' or 0), identically in MemoryStateStore.
std::string SortExpr(const ColumnSpec& spec) {
  return "COALESCE(" + Ident("", spec) + (spec.type == ColumnType::kText ? ", '')" : ", 0)");
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

// SQL text plus its bound parameters, built together so they cannot drift apart.
struct Sql {
  std::string text;
  std::vector<Value> params;

  void Param(Value value) {
    text += '?';
    params.push_back(std::move(value));
  }

  void ParamList(const std::vector<Value>& values) {
    text += '(';
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i > 0) {
        text += ", ";
      }
      Param(values[i]);
    }
    text += ')';
  }
};

// Appends " AND <condition>". The expectation was checked by CheckExpectation.
void AppendCondition(Sql& sql,
                     Table table,
                     std::string_view qualifier,
                     const Expectation& expectation) {
  const ColumnSpec* spec = ports::FindColumn(table, expectation.column);
  CLINKER_ASSERT(spec != nullptr, "expectation column not checked");
  std::string column = Ident(qualifier, *spec);
  sql.text += " AND ";
  switch (expectation.kind) {
    case Expectation::Kind::kEquals:
      sql.text += column + " = ";
      sql.Param(expectation.values[0]);
      break;
    case Expectation::Kind::kNotEquals:
      sql.text += "(" + column + " IS NULL OR " + column + " != ";
      sql.Param(expectation.values[0]);
      sql.text += ")";
      break;
    case Expectation::Kind::kIn:
      if (expectation.values.empty()) {
        sql.text += "0";
      } else {
        sql.text += column + " IN ";
        sql.ParamList(expectation.values);
      }
      break;
    case Expectation::Kind::kNotIn:
      if (expectation.values.empty()) {
        sql.text += "1";
      } else {
        sql.text += "(" + column + " IS NULL OR " + column + " NOT IN ";
        sql.ParamList(expectation.values);
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
      sql.Param(expectation.values[0]);
      sql.text += ")";
      break;
  }
}

Result<std::optional<Row>> QueryOptionalRow(sqlite::Database& db, const Sql& sql) {
  CLINKER_ASSIGN_OR_RETURN(sqlite::Statement statement, db.Prepare(sql.text));
  CLINKER_RETURN_IF_ERROR(statement.BindAll(sql.params));
  CLINKER_ASSIGN_OR_RETURN(bool has_row, statement.Step());
  if (!has_row) {
    return std::optional<Row>();
  }
  Row row = statement.RowValue();
  // Run to completion: an UPDATE ... RETURNING must be done before COMMIT.
  CLINKER_ASSIGN_OR_RETURN(bool more, statement.Step());
  CLINKER_ASSERT(!more, "a query by primary key returned two rows");
  return std::optional<Row>(std::move(row));
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
      sql.Param(SortValue(*key.spec, marker_value));
    }
    sql.text += ")";
  }
  sql.text += ")";
}

// Applies each usage change inside the caller's write transaction, or returns kQuotaExceeded
// (the transaction then rolls back, taking the changes already made with it).
Result<void> ApplyUsage(sqlite::Database& db, const std::vector<ports::UsageChange>& usage) {
  for (const ports::UsageChange& change : usage) {
    const ports::UsageCounter counter = ports::CounterOf(change);
    const std::string table = TableIdent(counter.table);
    const std::string column = "\"" + std::string(counter.column) + "\"";
    Sql create;
    create.text = "INSERT INTO " + table + " (";
    std::vector<Value> fresh;
    for (const auto& [name, value] : counter.fresh_row) {
      create.text += (fresh.empty() ? "\"" : ", \"") + name + "\"";
      fresh.push_back(value);
    }
    create.text += ") VALUES ";
    create.ParamList(fresh);
    create.text += " ON CONFLICT (\"id\") DO NOTHING";
    CLINKER_ASSIGN_OR_RETURN(sqlite::Statement insert, db.Prepare(create.text));
    CLINKER_RETURN_IF_ERROR(insert.BindAll(create.params));
    CLINKER_ASSIGN_OR_RETURN(bool inserted_row, insert.Step());
    CLINKER_ASSERT(!inserted_row, "an INSERT returned a row");

    Sql update;
    update.text = "UPDATE ";
    update.text += table;
    update.text += " SET ";
    update.text += column;
    update.text += " = ";
    update.text += column;
    update.text += " + ";
    update.Param(change.delta);
    update.text += " WHERE \"id\" = ";
    update.Param(counter.id);
    if (change.delta > 0 && change.limit >= 0) {
      update.text += " AND " + column + " + ";
      update.Param(change.delta);
      update.text += " <= ";
      update.Param(change.limit);
    }
    update.text += " RETURNING " + column;
    CLINKER_ASSIGN_OR_RETURN(std::optional<Row> changed, QueryOptionalRow(db, update));
    if (changed) {
      continue;
    }
    Sql read;
    read.text = "SELECT ";
    read.text += column;
    read.text += " FROM ";
    read.text += table;
    read.text += " WHERE \"id\" = ";
    read.Param(counter.id);
    CLINKER_ASSIGN_OR_RETURN(std::optional<Row> current, QueryOptionalRow(db, read));
    CLINKER_ASSERT(current.has_value(), "a usage counter vanished inside its transaction");
    return tl::unexpected(
        ports::QuotaExceededError({change.project_id,
                                   change.resource,
                                   change.limit,
                                   std::get<std::int64_t>(current->find(counter.column)->second),
                                   change.delta}));
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<SqliteStateStore>> SqliteStateStore::Open(
    const sqlite::Database::Options& options) {
  CLINKER_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Database> db, sqlite::Database::Open(options));
  CLINKER_RETURN_IF_ERROR(db->Migrate("state", Migrations()));
  std::vector<std::unique_ptr<sqlite::Database>> readers;
  for (int i = 0; i < kReaders; ++i) {
    CLINKER_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Database> reader,
                             sqlite::Database::Open(options));
    readers.push_back(std::move(reader));
  }
  return std::unique_ptr<SqliteStateStore>(new SqliteStateStore(std::move(db), std::move(readers)));
}

std::span<const std::string_view> SqliteStateStore::Migrations() {
  return kMigrations;
}

SqliteStateStore::SqliteStateStore(std::unique_ptr<sqlite::Database> db,
                                   std::vector<std::unique_ptr<sqlite::Database>> readers)
    : db_(std::move(db)), readers_(std::move(readers)) {}

sqlite::Database& SqliteStateStore::Reader() {
  // In turn: a caller meets a busy connection only when kReaders reads overlap on it.
  const std::size_t turn = next_reader_.fetch_add(1, std::memory_order_relaxed);
  return *readers_[turn % readers_.size()];
}

Result<void> SqliteStateStore::Insert(Table table, const Row& row) {
  return InsertWithUsage(table, row, {});
}

Result<std::optional<Row>> SqliteStateStore::ConditionalUpdate(
    Table table,
    std::string_view id,
    const Row& values,
    const std::vector<Expectation>& expected,
    const std::vector<ports::Guard>& guards) {
  return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
}

Result<void> SqliteStateStore::InsertWithUsage(Table table,
                                               const Row& row,
                                               const std::vector<ports::UsageChange>& usage) {
  CLINKER_RETURN_IF_ERROR(ports::CheckUsageChanges(usage));
  CLINKER_ASSIGN_OR_RETURN(Row complete, ports::CompleteRow(table, row));
  Sql sql;
  sql.text = "INSERT INTO " + TableIdent(table) + " (";
  std::vector<Value> values;
  for (const ColumnSpec& spec : ports::Columns(table)) {
    sql.text += values.empty() ? "" : ", ";
    sql.text += Ident("", spec);
    values.push_back(complete.find(spec.name)->second);
  }
  sql.text += ") VALUES ";
  sql.ParamList(values);
  return db_->WriteTransaction([&sql, &usage](sqlite::Database& db) -> Result<void> {
    CLINKER_ASSIGN_OR_RETURN(sqlite::Statement statement, db.Prepare(sql.text));
    CLINKER_RETURN_IF_ERROR(statement.BindAll(sql.params));
    Result<bool> step = statement.Step();
    if (!step) {
      Error error = step.error();
      if (error.code == ErrorCode::kConflict) {
        error.message = "a row with this id or unique value exists: " + error.message;
      }
      return tl::unexpected<Error>(std::move(error));
    }
    return ApplyUsage(db, usage);
  });
}

Result<Row> SqliteStateStore::Get(Table table, std::string_view id) {
  Sql sql;
  sql.text = "SELECT * FROM " + TableIdent(table) + " WHERE \"id\" = ";
  sql.Param(std::string(id));
  std::optional<Row> row;
  auto read = [&](sqlite::Database& db) -> Result<void> {
    CLINKER_ASSIGN_OR_RETURN(row, QueryOptionalRow(db, sql));
    return {};
  };
  CLINKER_RETURN_IF_ERROR(Reader().Read(read));
  if (!row) {
    return MakeError(ErrorCode::kNotFound,
                     std::string(ports::TableName(table)) + " " + std::string(id) + " not found");
  }
  return std::move(*row);
}

Result<std::vector<Row>> SqliteStateStore::List(Table table, const ports::ListQuery& query) {
  for (const Expectation& filter : query.filters) {
    CLINKER_RETURN_IF_ERROR(ports::CheckExpectation(table, filter));
  }
  CLINKER_ASSIGN_OR_RETURN(std::vector<ResolvedSortKey> keys, ResolveSort(table, query));
  if (query.limit && *query.limit < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "limit must not be negative");
  }
  std::vector<Row> rows;
  auto read = [&](sqlite::Database& db) -> Result<void> {
    rows.clear();
    Sql sql;
    sql.text = "SELECT * FROM " + TableIdent(table) + " WHERE 1";
    if (!query.include_deleted) {
      sql.text += " AND \"deleted\" = 0";
    }
    for (const Expectation& filter : query.filters) {
      AppendCondition(sql, table, "", filter);
    }
    if (query.marker_id) {
      Sql marker_sql;
      marker_sql.text = "SELECT * FROM " + TableIdent(table) + " WHERE \"id\" = ";
      marker_sql.Param(*query.marker_id);
      CLINKER_ASSIGN_OR_RETURN(std::optional<Row> marker, QueryOptionalRow(db, marker_sql));
      if (!marker) {
        return MakeError(ErrorCode::kNotFound, "marker " + *query.marker_id + " not found");
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
      sql.Param(*query.limit);
    }
    CLINKER_ASSIGN_OR_RETURN(sqlite::Statement statement, db.Prepare(sql.text));
    CLINKER_RETURN_IF_ERROR(statement.BindAll(sql.params));
    for (;;) {
      CLINKER_ASSIGN_OR_RETURN(bool has_row, statement.Step());
      if (!has_row) {
        break;
      }
      rows.push_back(statement.RowValue());
    }
    return {};
  };
  CLINKER_RETURN_IF_ERROR(Reader().Read(read));
  return rows;
}

Result<std::optional<Row>> SqliteStateStore::ConditionalUpdateWithUsage(
    Table table,
    std::string_view id,
    const Row& values,
    const std::vector<Expectation>& expected,
    const std::vector<ports::Guard>& guards,
    const std::vector<ports::UsageChange>& usage) {
  CLINKER_RETURN_IF_ERROR(ports::CheckUsageChanges(usage));
  CLINKER_RETURN_IF_ERROR(ports::CheckUpdateValues(table, values));
  for (const Expectation& expectation : expected) {
    CLINKER_RETURN_IF_ERROR(ports::CheckExpectation(table, expectation));
  }
  for (const ports::Guard& guard : guards) {
    CLINKER_RETURN_IF_ERROR(ports::CheckGuard(guard));
  }

  // The alias keeps `target."id"` unambiguous when a guard looks at the same table.
  Sql sql;
  sql.text = "UPDATE " + TableIdent(table) + " AS target SET ";
  if (values.empty()) {
    sql.text += "\"id\" = \"id\"";
  }
  bool first = true;
  for (const auto& [name, value] : values) {
    sql.text += first ? "" : ", ";
    first = false;
    sql.text += Ident("", *ports::FindColumn(table, name)) + " = ";
    sql.Param(value);
  }
  sql.text += " WHERE target.\"id\" = ";
  sql.Param(std::string(id));
  for (const Expectation& expectation : expected) {
    AppendCondition(sql, table, "target", expectation);
  }
  for (const ports::Guard& guard : guards) {
    sql.text += " AND NOT EXISTS (SELECT 1 FROM " + TableIdent(guard.table) + " AS ref WHERE " +
                Ident("ref", *ports::FindColumn(guard.table, guard.column)) +
                " = target.\"id\" AND ref.\"deleted\" = 0";
    for (const Expectation& condition : guard.where) {
      AppendCondition(sql, guard.table, "ref", condition);
    }
    sql.text += ")";
  }
  sql.text += " RETURNING *";

  std::optional<Row> updated;
  auto update = [&](sqlite::Database& db) -> Result<void> {
    CLINKER_ASSIGN_OR_RETURN(updated, QueryOptionalRow(db, sql));
    if (!updated) {
      return {};  // The update did not apply: no counter changes.
    }
    return ApplyUsage(db, usage);
  };
  CLINKER_RETURN_IF_ERROR(db_->WriteTransaction(update));
  return updated;
}

}  // namespace clinker::adapters
