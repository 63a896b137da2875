// Lock names and modes, in one place, so every worker that touches a resource takes the same lock
// in the mode its operation needs. Build every ports::LockRequest here.
//
// | name           | mode                                  | holder, and for how long           |
// |----------------|---------------------------------------|------------------------------------|
// | volume-<id>    | exclusive for a job that writes the   | VolumeManager::Handle, for the     |
// |                | volume (create, delete, extend);      | whole job: from reading the        |
// |                | shared for a job that only reads it   | status to writing the final one.   |
// |                | (a clone of it, a snapshot of it)     | Target first, then source.         |
// | snapshot-<id>  | exclusive for a job that writes the   | as above                           |
// |                | snapshot (create, delete); shared for |                                    |
// |                | a volume being created from it        |                                    |
// | attachment-<id>| exclusive for attach and detach jobs  | as above; the volume is their      |
// |                |                                       | source (shared): a delete or an    |
// |                |                                       | extend waits for the export        |
// | backup-<id>    | exclusive for its create and delete;  | as above; a backup's volume is its |
// |                | shared for a restore reading it       | source (shared); a restore's       |
// |                |                                       | target is the volume (exclusive)   |
//
// Lock order: a job takes its target's lock, then its source's. Targets of creates are new
// resources nobody else's job holds while it waits, and no job holds a source while waiting for
// a target, so no cycle can form.
//
// No request sets max_readers yet. A later one must give every request of its name the same cap
// (see the reader-limit rule in ports/lock_manager.h).
#pragma once

#include <string>
#include <string_view>

#include "clinker/domain/status.h"
#include "clinker/ports/lock_manager.h"

namespace clinker::services {

inline std::string VolumeLockName(std::string_view volume_id) {
  return "volume-" + std::string(volume_id);
}

inline std::string SnapshotLockName(std::string_view snapshot_id) {
  return "snapshot-" + std::string(snapshot_id);
}

inline std::string AttachmentLockName(std::string_view attachment_id) {
  return "attachment-" + std::string(attachment_id);
}

inline std::string BackupLockName(std::string_view backup_id) {
  return "backup-" + std::string(backup_id);
}

inline std::string ResourceLockName(domain::ResourceKind kind, std::string_view id) {
  switch (kind) {
    case domain::ResourceKind::kVolume:
      return VolumeLockName(id);
    case domain::ResourceKind::kSnapshot:
      return SnapshotLockName(id);
    case domain::ResourceKind::kAttachment:
      return AttachmentLockName(id);
    case domain::ResourceKind::kBackup:
      return BackupLockName(id);
  }
  return VolumeLockName(id);
}

inline ports::LockMode LockModeFor(domain::Access access) {
  return access == domain::Access::kWrite ? ports::LockMode::kExclusive : ports::LockMode::kShared;
}

// The lock a job holds on the resource `id` of `kind`, which it uses with `access`.
inline ports::LockRequest ResourceLockRequest(domain::ResourceKind kind,
                                              std::string_view id,
                                              domain::Access access) {
  return ports::LockRequest{ResourceLockName(kind, id), LockModeFor(access), /*max_readers=*/0};
}

// The lock a job running `operation` holds on its target, volume `volume_id`.
inline ports::LockRequest VolumeLockRequest(std::string_view volume_id,
                                            domain::Operation operation) {
  return ResourceLockRequest(domain::ResourceKind::kVolume, volume_id, domain::AccessOf(operation));
}

}  // namespace clinker::services
