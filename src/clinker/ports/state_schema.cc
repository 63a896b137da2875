#include "clinker/ports/state_schema.h"

#include <array>
#include <charconv>
#include <string>

namespace clinker::ports {
namespace {

// Volumes. `status` holds the internal status (domain/status.h), never the API one.
constexpr std::array kVolumeColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"user_id", ColumnType::kText, false, ""},
    ColumnSpec{"status", ColumnType::kText, false, ""},
    ColumnSpec{"status_reason", ColumnType::kText, true, ""},
    ColumnSpec{"size_gib", ColumnType::kInteger, false, "0"},
    ColumnSpec{"display_name", ColumnType::kText, true, ""},
    ColumnSpec{"display_description", ColumnType::kText, true, ""},
    ColumnSpec{"metadata", ColumnType::kText, false, "{}"},
    ColumnSpec{"availability_zone", ColumnType::kText, false, "nova"},
    ColumnSpec{"volume_type", ColumnType::kText, true, ""},
    ColumnSpec{"host", ColumnType::kText, true, ""},
    ColumnSpec{"cluster_name", ColumnType::kText, true, ""},
    ColumnSpec{"attach_status", ColumnType::kText, false, "detached"},
    ColumnSpec{"migration_status", ColumnType::kText, true, ""},
    ColumnSpec{"snapshot_id", ColumnType::kText, true, ""},
    ColumnSpec{"source_volid", ColumnType::kText, true, ""},
    ColumnSpec{"bootable", ColumnType::kInteger, false, "0"},
    ColumnSpec{"multiattach", ColumnType::kInteger, false, "0"},
    ColumnSpec{"operation_id", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
    // The largest fencing token (ports/lock_manager.h) under which a volume service changed this
    // volume; a write carrying an older one is refused (migration 3).
    ColumnSpec{"fencing_token", ColumnType::kInteger, true, ""},
    // The size an extend queued or under way grows the volume to; NULL otherwise (migration 4).
    ColumnSpec{"pending_size_gib", ColumnType::kInteger, true, ""},
    // The backup a restore queued or under way writes into this volume; NULL otherwise.
    ColumnSpec{"backup_id", ColumnType::kText, true, ""},
    // The volume type's id (volume_types.id); NULL for a volume made before types existed
    // (migration 7), which is of the default type. The older `volume_type` column is unused.
    ColumnSpec{"volume_type_id", ColumnType::kText, true, ""},
    // Cinder's volume_glance_metadata (os-set_image_metadata): a JSON object of strings
    // (migration 8).
    ColumnSpec{"image_metadata", ColumnType::kText, false, "{}"},
    // Cinder's volume_admin_metadata: a JSON object of strings; `readonly` ("True"/"False",
    // os-update_readonly_flag) and `attached_mode` ("rw"/"ro" while attached through os-attach)
    // are shown to users inside `metadata` (migration 8).
    ColumnSpec{"admin_metadata", ColumnType::kText, false, "{}"},
    // The generic volume group the volume belongs to (groups.id); NULL for none (migration 11).
    ColumnSpec{"group_id", ColumnType::kText, true, ""},
    // The GiB this volume holds in its pool's allocated capacity (pool_capacity, row `host`):
    // set by the scheduler with `host`, in the write that reserves them; back to 0 in the write
    // that fails its create or soft-deletes it, which gives them back (migration 13).
    ColumnSpec{"capacity_reserved_gib", ColumnType::kInteger, false, "0"},
};

constexpr std::array kSnapshotColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"user_id", ColumnType::kText, false, ""},
    ColumnSpec{"volume_id", ColumnType::kText, false, ""},
    ColumnSpec{"status", ColumnType::kText, false, ""},
    ColumnSpec{"status_reason", ColumnType::kText, true, ""},
    ColumnSpec{"size_gib", ColumnType::kInteger, false, "0"},
    ColumnSpec{"display_name", ColumnType::kText, true, ""},
    ColumnSpec{"display_description", ColumnType::kText, true, ""},
    ColumnSpec{"metadata", ColumnType::kText, false, "{}"},
    ColumnSpec{"operation_id", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
    // As volumes.fencing_token, for the snapshot's own lock (migration 4).
    ColumnSpec{"fencing_token", ColumnType::kInteger, true, ""},
    // Cinder's progress ("80%"): set by os-update_snapshot_status and by a finished create;
    // NULL shows as 0% or, available, 100% (migration 10).
    ColumnSpec{"progress", ColumnType::kText, true, ""},
    // The group snapshot this snapshot is a member of (group_snapshots.id); NULL for none
    // (migration 11).
    ColumnSpec{"group_snapshot_id", ColumnType::kText, true, ""},
};

// One row per attachment of a volume to a host or instance (Cinder's volume_attachment), from
// the reservation to the detach (soft-deleted then). `status` holds the internal attachment
// status (domain/status.h); `connector` and `connection_info` are JSON objects; attach_mode is
// "rw", "ro" or the string "null" when the request named none, as Cinder stores it.
constexpr std::array kAttachmentColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"user_id", ColumnType::kText, false, ""},
    ColumnSpec{"volume_id", ColumnType::kText, false, ""},
    ColumnSpec{"status", ColumnType::kText, false, ""},
    ColumnSpec{"status_reason", ColumnType::kText, true, ""},
    ColumnSpec{"instance_uuid", ColumnType::kText, true, ""},
    ColumnSpec{"attached_host", ColumnType::kText, true, ""},
    ColumnSpec{"mountpoint", ColumnType::kText, true, ""},
    ColumnSpec{"attach_mode", ColumnType::kText, false, "null"},
    ColumnSpec{"connector", ColumnType::kText, true, ""},
    ColumnSpec{"connection_info", ColumnType::kText, true, ""},
    ColumnSpec{"operation_id", ColumnType::kText, true, ""},
    ColumnSpec{"fencing_token", ColumnType::kInteger, true, ""},
    ColumnSpec{"attach_time", ColumnType::kText, true, ""},
    ColumnSpec{"detach_time", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per backup of a volume. `status` holds the internal backup status (domain/status.h);
// parent_id names the backup an incremental builds on; host / cluster_name are the back-end of
// the volume when the backup was made (its jobs go there); restore_volume_id is the volume a
// restore under way writes.
constexpr std::array kBackupColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"user_id", ColumnType::kText, false, ""},
    ColumnSpec{"volume_id", ColumnType::kText, false, ""},
    ColumnSpec{"status", ColumnType::kText, false, ""},
    ColumnSpec{"status_reason", ColumnType::kText, true, ""},
    ColumnSpec{"size_gib", ColumnType::kInteger, false, "0"},
    ColumnSpec{"display_name", ColumnType::kText, true, ""},
    ColumnSpec{"display_description", ColumnType::kText, true, ""},
    ColumnSpec{"container", ColumnType::kText, true, ""},
    ColumnSpec{"availability_zone", ColumnType::kText, false, "nova"},
    ColumnSpec{"parent_id", ColumnType::kText, true, ""},
    ColumnSpec{"object_count", ColumnType::kInteger, false, "0"},
    ColumnSpec{"stored_bytes", ColumnType::kInteger, false, "0"},
    ColumnSpec{"metadata", ColumnType::kText, false, "{}"},
    ColumnSpec{"restore_volume_id", ColumnType::kText, true, ""},
    ColumnSpec{"host", ColumnType::kText, true, ""},
    ColumnSpec{"cluster_name", ColumnType::kText, true, ""},
    ColumnSpec{"operation_id", ColumnType::kText, true, ""},
    ColumnSpec{"fencing_token", ColumnType::kInteger, true, ""},
    ColumnSpec{"data_timestamp", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
    // The backed-up volume's metadata when the backup was taken (a JSON object of strings); a
    // restore sets it on the volume it writes (migration 12).
    ColumnSpec{"volume_metadata", ColumnType::kText, false, "{}"},
    // Where the backup's data is in the backup store when not under its own id: a backup
    // imported from another's exported record shares that one's data (migration 12).
    ColumnSpec{"service_metadata", ColumnType::kText, true, ""},
    // The snapshot the backup reads, for a backup of a snapshot (migration 12).
    ColumnSpec{"snapshot_id", ColumnType::kText, true, ""},
};

// One row per volume transfer (Cinder's `transfers`), from its creation until it is accepted or
// deleted (soft-deleted then; `accepted` tells which). The auth key itself is never stored: only
// `crypt_hash`, the hex HMAC-SHA1 of the key under `salt`, as Cinder keeps it. Boolean columns
// are 0 / 1 (migration 5).
constexpr std::array kTransferColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"volume_id", ColumnType::kText, false, ""},
    ColumnSpec{"display_name", ColumnType::kText, true, ""},
    ColumnSpec{"salt", ColumnType::kText, false, ""},
    ColumnSpec{"crypt_hash", ColumnType::kText, false, ""},
    ColumnSpec{"no_snapshots", ColumnType::kInteger, false, "0"},
    // The volume's project when the transfer was created: the transfer belongs to it (Cinder
    // scopes transfers by their volume's project, which cannot change while one is pending).
    ColumnSpec{"source_project_id", ColumnType::kText, false, ""},
    ColumnSpec{"destination_project_id", ColumnType::kText, true, ""},
    ColumnSpec{"accepted", ColumnType::kInteger, false, "0"},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per (binary, host): a running service process (cinder-scheduler, cinder-volume, ...).
// id is ServiceRegistry::ServiceId: "<binary>:<host>", so a restarted service finds and revives
// its own row, as Cinder's startup cleanup needs. heartbeat_at is the last heartbeat in
// milliseconds since the Unix epoch (wall clock), NULL once the service stopped cleanly: an
// integer keeps "is it up" one comparison on every engine.
constexpr std::array kServiceColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"binary", ColumnType::kText, false, ""},
    ColumnSpec{"host", ColumnType::kText, false, ""},
    ColumnSpec{"cluster_name", ColumnType::kText, true, ""},
    ColumnSpec{"availability_zone", ColumnType::kText, false, "nova"},
    ColumnSpec{"disabled", ColumnType::kInteger, false, "0"},
    ColumnSpec{"disabled_reason", ColumnType::kText, true, ""},
    ColumnSpec{"heartbeat_at", ColumnType::kInteger, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
    // os-services freeze / thaw (Cinder's services.frozen) (migration 6).
    ColumnSpec{"frozen", ColumnType::kInteger, false, "0"},
};

// One row per (binary, name), name being "<cluster>@<backend>". id is ServiceRegistry::ClusterId:
// "<binary>:<name>", so members racing to create their cluster collide on the primary key and
// all but one get kConflict, which they ignore. Liveness is not stored: it is derived from the
// members' heartbeats (domain/service_state.h).
constexpr std::array kClusterColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"name", ColumnType::kText, false, ""},
    ColumnSpec{"binary", ColumnType::kText, false, ""},
    ColumnSpec{"disabled", ColumnType::kInteger, false, "0"},
    ColumnSpec{"disabled_reason", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// User messages (Cinder's messages table, API 3.3): what went wrong in an asynchronous request,
// told to its project. event_id, action_id and detail_id are Cinder's message_field codes; the
// text is derived from them when shown. expires_at is created_at + message_ttl (migration 6).
constexpr std::array kMessageColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"request_id", ColumnType::kText, true, ""},
    ColumnSpec{"resource_type", ColumnType::kText, true, ""},
    ColumnSpec{"resource_uuid", ColumnType::kText, true, ""},
    ColumnSpec{"event_id", ColumnType::kText, false, ""},
    ColumnSpec{"action_id", ColumnType::kText, true, ""},
    ColumnSpec{"detail_id", ColumnType::kText, true, ""},
    ColumnSpec{"message_level", ColumnType::kText, false, "ERROR"},
    ColumnSpec{"expires_at", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per volume type (Cinder's volume_types). `name` is unique among live types (a
// live-unique column: a second live type of the same name is kConflict in every adapter).
// extra_specs is a JSON object of string (or null) values, changed by compare-and-swap on the
// whole text; is_public is 0 or 1; qos_specs_id is the QoS specs associated with the type, or NULL;
// encryption is NULL or the JSON object of the type's encryption spec (Cinder's
// encryption table: encryption_id, provider, control_location, cipher, key_size, created_at,
// updated_at), changed by compare-and-swap like extra_specs (migration 7).
constexpr std::array kVolumeTypeColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"name", ColumnType::kText, false, ""},
    ColumnSpec{"description", ColumnType::kText, true, ""},
    ColumnSpec{"is_public", ColumnType::kInteger, false, "1"},
    ColumnSpec{"extra_specs", ColumnType::kText, false, "{}"},
    ColumnSpec{"qos_specs_id", ColumnType::kText, true, ""},
    ColumnSpec{"encryption", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per (private volume type, project allowed to use it) (Cinder's volume_type_projects).
// id is "<volume_type_id>:<project_id>", so a second grant collides on the primary key; a
// removed grant is soft-deleted and revived by a conditional update when granted again
// (migration 7).
constexpr std::array kVolumeTypeAccessColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"volume_type_id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// Quotas (migration 9). quota_usages: one counter per (project, resource), id
// UsageCounterId(project, resource); changed only by the usage changes of InsertWithUsage and
// ConditionalUpdateWithUsage (atomically with the write they count) and by `clinkerd quota sync`.
// Resources are Cinder's names (volumes, gigabytes, snapshots, backups, backup_gigabytes, groups,
// volumes_<type name>, gigabytes_<type name>, snapshots_<type name>).
constexpr std::array kQuotaUsageColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"resource", ColumnType::kText, false, ""},
    ColumnSpec{"in_use", ColumnType::kInteger, false, "0"},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// A project's own limit of one resource (Cinder's quotas), id "<project_id>/<resource>"; a
// deleted row falls back to the class default (os-quota-sets DELETE soft-deletes every row of the
// project). hard_limit -1 is unlimited.
constexpr std::array kQuotaColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"resource", ColumnType::kText, false, ""},
    ColumnSpec{"hard_limit", ColumnType::kInteger, false, "-1"},
    ColumnSpec{"created_at", ColumnType::kText, true, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// A quota class's limit of one resource (Cinder's quota_classes), id "<class_name>/<resource>";
// the class "default" overrides the configured defaults for every project.
constexpr std::array kQuotaClassColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"class_name", ColumnType::kText, false, ""},
    ColumnSpec{"resource", ColumnType::kText, false, ""},
    ColumnSpec{"hard_limit", ColumnType::kInteger, false, "-1"},
    ColumnSpec{"created_at", ColumnType::kText, true, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per QoS specs (Cinder's quality_of_service_specs, whose key/value child rows are here
// one JSON object of strings, changed by compare-and-swap on the whole text like a type's extra
// specs). `name` is live-unique; consumer is "front-end", "back-end" or "both". Volume types
// point at it through volume_types.qos_specs_id (migration 10).
constexpr std::array kQosSpecsColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"name", ColumnType::kText, false, ""},
    ColumnSpec{"consumer", ColumnType::kText, false, "back-end"},
    ColumnSpec{"specs", ColumnType::kText, false, "{}"},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per group type (Cinder's group_types). `name` is unique among live group types;
// group_specs is a JSON object of string values, changed by compare-and-swap on the whole text
// (as volume_types.extra_specs); is_public is 0 or 1 (migration 11).
constexpr std::array kGroupTypeColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"name", ColumnType::kText, false, ""},
    ColumnSpec{"description", ColumnType::kText, true, ""},
    ColumnSpec{"is_public", ColumnType::kInteger, false, "1"},
    ColumnSpec{"group_specs", ColumnType::kText, false, "{}"},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per generic volume group (Cinder's groups). `status` is Cinder's group status as
// shown (groups are never the target of a job: see docs/ARCHITECTURE.md); volume_type_ids is
// the JSON array of the volume types' ids (Cinder's group_volume_type_mapping), fixed at create;
// group_snapshot_id / source_group_id name what a group created from a source was made from
// (migration 11).
constexpr std::array kGroupColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"user_id", ColumnType::kText, false, ""},
    ColumnSpec{"status", ColumnType::kText, false, ""},
    ColumnSpec{"name", ColumnType::kText, true, ""},
    ColumnSpec{"description", ColumnType::kText, true, ""},
    ColumnSpec{"availability_zone", ColumnType::kText, false, "nova"},
    ColumnSpec{"group_type_id", ColumnType::kText, false, ""},
    ColumnSpec{"volume_type_ids", ColumnType::kText, false, "[]"},
    ColumnSpec{"group_snapshot_id", ColumnType::kText, true, ""},
    ColumnSpec{"source_group_id", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per group snapshot (Cinder's group_snapshots): one snapshot of every member volume of
// the group, each naming it in snapshots.group_snapshot_id. `status` as groups.status
// (migration 11).
constexpr std::array kGroupSnapshotColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"project_id", ColumnType::kText, false, ""},
    ColumnSpec{"user_id", ColumnType::kText, false, ""},
    ColumnSpec{"group_id", ColumnType::kText, false, ""},
    ColumnSpec{"group_type_id", ColumnType::kText, false, ""},
    ColumnSpec{"status", ColumnType::kText, false, ""},
    ColumnSpec{"name", ColumnType::kText, true, ""},
    ColumnSpec{"description", ColumnType::kText, true, ""},
    ColumnSpec{"created_at", ColumnType::kText, false, ""},
    ColumnSpec{"updated_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted_at", ColumnType::kText, true, ""},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

// One row per back-end pool a scheduler placed volumes on, id the pool's placement address
// "<host or cluster>@<backend>#<pool>" (volumes.host): the GiB reserved on it by the volumes
// placed there (Cinder's allocated_capacity_gb), changed only by kPoolCapacity usage changes,
// atomically with the volume writes that reserve and release them (migration 13).
constexpr std::array kPoolCapacityColumns = {
    ColumnSpec{"id", ColumnType::kText, false, ""},
    ColumnSpec{"allocated_capacity_gb", ColumnType::kInteger, false, "0"},
    ColumnSpec{"deleted", ColumnType::kInteger, false, "0"},
};

constexpr std::array<std::string_view, 1> kVolumeTypeUniqueColumns = {"name"};
constexpr std::array<std::string_view, 1> kQosSpecsUniqueColumns = {"name"};

}  // namespace

std::string_view TableName(Table table) {
  switch (table) {
    case Table::kVolumes:
      return "volumes";
    case Table::kSnapshots:
      return "snapshots";
    case Table::kServices:
      return "services";
    case Table::kClusters:
      return "clusters";
    case Table::kAttachments:
      return "attachments";
    case Table::kBackups:
      return "backups";
    case Table::kTransfers:
      return "transfers";
    case Table::kMessages:
      return "messages";
    case Table::kVolumeTypes:
      return "volume_types";
    case Table::kVolumeTypeAccess:
      return "volume_type_projects";
    case Table::kQuotaUsages:
      return "quota_usages";
    case Table::kQuotas:
      return "quotas";
    case Table::kQuotaClasses:
      return "quota_classes";
    case Table::kQosSpecs:
      return "qos_specs";
    case Table::kGroupTypes:
      return "group_types";
    case Table::kGroups:
      return "groups";
    case Table::kGroupSnapshots:
      return "group_snapshots";
    case Table::kPoolCapacity:
      return "pool_capacity";
  }
  return "volumes";
}

std::span<const ColumnSpec> Columns(Table table) {
  switch (table) {
    case Table::kVolumes:
      return kVolumeColumns;
    case Table::kSnapshots:
      return kSnapshotColumns;
    case Table::kServices:
      return kServiceColumns;
    case Table::kClusters:
      return kClusterColumns;
    case Table::kAttachments:
      return kAttachmentColumns;
    case Table::kBackups:
      return kBackupColumns;
    case Table::kTransfers:
      return kTransferColumns;
    case Table::kMessages:
      return kMessageColumns;
    case Table::kVolumeTypes:
      return kVolumeTypeColumns;
    case Table::kVolumeTypeAccess:
      return kVolumeTypeAccessColumns;
    case Table::kQuotaUsages:
      return kQuotaUsageColumns;
    case Table::kQuotas:
      return kQuotaColumns;
    case Table::kQuotaClasses:
      return kQuotaClassColumns;
    case Table::kQosSpecs:
      return kQosSpecsColumns;
    case Table::kGroupTypes:
      return kGroupTypeColumns;
    case Table::kGroups:
      return kGroupColumns;
    case Table::kGroupSnapshots:
      return kGroupSnapshotColumns;
    case Table::kPoolCapacity:
      return kPoolCapacityColumns;
  }
  return kVolumeColumns;
}

std::span<const std::string_view> LiveUniqueColumns(Table table) {
  if (table == Table::kVolumeTypes || table == Table::kGroupTypes) {
    return kVolumeTypeUniqueColumns;
  }
  if (table == Table::kQosSpecs) {
    return kQosSpecsUniqueColumns;
  }
  return {};
}

const ColumnSpec* FindColumn(Table table, std::string_view column) {
  for (const ColumnSpec& spec : Columns(table)) {
    if (spec.name == column) {
      return &spec;
    }
  }
  return nullptr;
}

Result<void> CheckValue(Table table, std::string_view column, const Value& value) {
  const ColumnSpec* spec = FindColumn(table, column);
  if (spec == nullptr) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "table " + std::string(TableName(table)) + " has no column " + std::string(column));
  }
  if (std::holds_alternative<std::monostate>(value)) {
    if (!spec->nullable) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "column " + std::string(column) + " cannot be NULL");
    }
    return {};
  }
  bool is_text = std::holds_alternative<std::string>(value);
  if (is_text != (spec->type == ColumnType::kText)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "wrong value type for column " + std::string(column));
  }
  return {};
}

Result<const ColumnSpec*> RequireColumn(Table table, std::string_view column) {
  const ColumnSpec* spec = FindColumn(table, column);
  if (spec == nullptr) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "table " + std::string(TableName(table)) + " has no column " + std::string(column));
  }
  return spec;
}

Result<void> CheckExpectation(Table table, const Expectation& expectation) {
  CLINKER_RETURN_IF_ERROR(RequireColumn(table, expectation.column));
  std::size_t count = expectation.values.size();
  switch (expectation.kind) {
    case Expectation::Kind::kEquals:
    case Expectation::Kind::kNotEquals:
      if (count != 1) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "expectation on " + expectation.column + " needs exactly one value");
      }
      break;
    case Expectation::Kind::kNullOrAtMost: {
      CLINKER_ASSIGN_OR_RETURN(const ColumnSpec* spec, RequireColumn(table, expectation.column));
      if (count != 1 || spec->type != ColumnType::kInteger) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "at-most expectation on " + expectation.column +
                             " needs an integer column and exactly one value");
      }
      break;
    }
    case Expectation::Kind::kIsNull:
    case Expectation::Kind::kIsNotNull:
      if (count != 0) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "null expectation on " + expectation.column + " takes no value");
      }
      break;
    case Expectation::Kind::kIn:
    case Expectation::Kind::kNotIn:
      break;
  }
  for (const Value& value : expectation.values) {
    if (std::holds_alternative<std::monostate>(value)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "NULL compared with " + expectation.column + ": use IsNull / IsNotNull");
    }
    CLINKER_RETURN_IF_ERROR(CheckValue(table, expectation.column, value));
  }
  return {};
}

namespace {

Result<Value> DefaultValue(const ColumnSpec& spec) {
  if (spec.type == ColumnType::kText) {
    return Value(std::string(spec.default_value));
  }
  std::int64_t number = 0;
  const char* begin = spec.default_value.data();
  const char* end = begin + spec.default_value.size();
  auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc() || ptr != end) {
    return MakeError(ErrorCode::kInternal,
                     "bad integer default for column " + std::string(spec.name));
  }
  return Value(number);
}

}  // namespace

Result<void> CheckGuard(const Guard& guard) {
  CLINKER_RETURN_IF_ERROR(RequireColumn(guard.table, guard.column));
  for (const Expectation& expectation : guard.where) {
    CLINKER_RETURN_IF_ERROR(CheckExpectation(guard.table, expectation));
    if (expectation.kind == Expectation::Kind::kNullOrAtMost) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          "a guard cannot hold a NullOrAtMost expectation (on " + expectation.column + ")");
    }
  }
  return {};
}

Result<Row> CompleteRow(Table table, const Row& row) {
  for (const auto& [name, value] : row) {
    CLINKER_RETURN_IF_ERROR(CheckValue(table, name, value));
  }
  auto id = row.find("id");
  if (id == row.end() || !std::holds_alternative<std::string>(id->second) ||
      std::get<std::string>(id->second).empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a row needs a non-empty id");
  }
  Row complete;
  for (const ColumnSpec& spec : Columns(table)) {
    auto found = row.find(spec.name);
    if (found != row.end()) {
      complete.emplace(std::string(spec.name), found->second);
    } else if (spec.nullable) {
      complete.emplace(std::string(spec.name), std::monostate{});
    } else if (!spec.default_value.empty()) {
      CLINKER_ASSIGN_OR_RETURN(Value value, DefaultValue(spec));
      complete.emplace(std::string(spec.name), std::move(value));
    } else {
      return MakeError(ErrorCode::kInvalidArgument,
                       "column " + std::string(spec.name) + " is required");
    }
  }
  return complete;
}

Result<void> CheckUpdateValues(Table table, const Row& values) {
  for (const auto& [name, value] : values) {
    CLINKER_RETURN_IF_ERROR(CheckValue(table, name, value));
    if (name == "id") {
      return MakeError(ErrorCode::kInvalidArgument, "id cannot be updated");
    }
  }
  return {};
}

Result<void> CheckUsageChanges(const std::vector<UsageChange>& usage) {
  for (const UsageChange& change : usage) {
    if (change.resource.empty() ||
        (change.counter == UsageChange::Counter::kQuotaUsage && change.project_id.empty())) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "a usage change needs a project and a resource");
    }
  }
  return {};
}

UsageCounter CounterOf(const UsageChange& change) {
  UsageCounter counter;
  if (change.counter == UsageChange::Counter::kPoolCapacity) {
    counter.table = Table::kPoolCapacity;
    counter.id = change.resource;
    counter.column = "allocated_capacity_gb";
    counter.fresh_row = {{"id", counter.id}};
    return counter;
  }
  counter.table = Table::kQuotaUsages;
  counter.id = UsageCounterId(change.project_id, change.resource);
  counter.column = "in_use";
  counter.fresh_row = {
      {"id", counter.id}, {"project_id", change.project_id}, {"resource", change.resource}};
  return counter;
}

Expectation Expectation::Equals(std::string column, Value value) {
  return Expectation{std::move(column), Kind::kEquals, {std::move(value)}};
}

Expectation Expectation::In(std::string column, std::vector<Value> values) {
  return Expectation{std::move(column), Kind::kIn, std::move(values)};
}

Expectation Expectation::NotEquals(std::string column, Value value) {
  return Expectation{std::move(column), Kind::kNotEquals, {std::move(value)}};
}

Expectation Expectation::NotIn(std::string column, std::vector<Value> values) {
  return Expectation{std::move(column), Kind::kNotIn, std::move(values)};
}

Expectation Expectation::IsNull(std::string column) {
  return Expectation{std::move(column), Kind::kIsNull, {}};
}

Expectation Expectation::IsNotNull(std::string column) {
  return Expectation{std::move(column), Kind::kIsNotNull, {}};
}

Expectation Expectation::NullOrAtMost(std::string column, std::int64_t value) {
  return Expectation{std::move(column), Kind::kNullOrAtMost, {Value(value)}};
}

std::string UsageCounterId(std::string_view project_id, std::string_view resource) {
  std::string id(project_id);
  id += '/';
  id += resource;
  return id;
}

namespace {

constexpr std::string_view kQuotaPrefix = "quota exceeded: limit ";

}  // namespace

Error QuotaExceededError(const QuotaExceededInfo& info) {
  return Error{ErrorCode::kQuotaExceeded,
               std::string(kQuotaPrefix) + std::to_string(info.limit) + ", in_use " +
                   std::to_string(info.in_use) + ", requested " + std::to_string(info.requested) +
                   ", project " + info.project_id + ", resource " + info.resource};
}

std::optional<QuotaExceededInfo> ParseQuotaExceeded(const Error& error) {
  if (error.code != ErrorCode::kQuotaExceeded) {
    return std::nullopt;
  }
  std::string_view text = error.message;
  if (text.substr(0, kQuotaPrefix.size()) != kQuotaPrefix) {
    return std::nullopt;
  }
  text.remove_prefix(kQuotaPrefix.size());
  QuotaExceededInfo info;
  // Reads an integer, then expects `separator` after it.
  auto number = [&text](std::int64_t& out, std::string_view separator) {
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec != std::errc()) {
      return false;
    }
    text.remove_prefix(static_cast<std::size_t>(ptr - text.data()));
    if (text.substr(0, separator.size()) != separator) {
      return false;
    }
    text.remove_prefix(separator.size());
    return true;
  };
  if (!number(info.limit, ", in_use ") || !number(info.in_use, ", requested ") ||
      !number(info.requested, ", project ")) {
    return std::nullopt;
  }
  // Project ids hold no ", resource "; type names (in resource names) may hold anything.
  std::size_t split = text.find(", resource ");
  if (split == std::string_view::npos) {
    return std::nullopt;
  }
  info.project_id = std::string(text.substr(0, split));
  info.resource = std::string(text.substr(split + std::string_view(", resource ").size()));
  return info;
}

Guard Guard::NoLiveRowReferences(Table table, std::string column, std::vector<Expectation> where) {
  return Guard{table, std::move(column), std::move(where)};
}

}  // namespace clinker::ports
