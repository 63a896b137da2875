// BackupStore: where volume backups live, as chunks that are compressed and checksummed each, so
// a restore detects corruption instead of returning bad data.
//
// Contract, for every adapter (test/contract/backup_store_contract_test.cc):
// - Thread safe for different backups. Callers serialise operations on one backup with its lock
//   (services/lock_names.h) and hold the source volume under a shared lock while it is read.
// - Blocking: an operation returns when its result is durable (or it failed).
// - A backup reads a volume's data from a path on this host (the "local" connection of the
//   storage driver) and stores it in fixed-size chunks. All-zero chunks are recorded, not
//   stored, so a sparse volume makes a small backup and restores sparse.
// - Incremental: with a parent, a chunk equal to the parent's chunk at the same offset (same
//   checksum) is a reference to the parent's stored chunk; only changed chunks are stored. The
//   parent must be a complete backup of a volume of the same size. A backup with dependents (an
//   incremental made from it) cannot be deleted (kConflict).
// - Idempotent, because jobs are delivered at least once: creating a backup whose complete copy
//   exists returns that copy's description without reading the volume again; a backup that was
//   interrupted (crash mid-way) is invisible and the next create starts over; deleting a missing
//   backup succeeds; restoring twice writes the same data twice.
// - A backup is complete only once its manifest is durable (written last, atomically); chunk
//   objects without a manifest are garbage that the next create or delete of that id removes.
// - Restore checks every stored chunk's checksum (of the compressed object and of the data it
//   inflates to) before writing it; a mismatch or a missing object fails the restore with
//   kDriverFailed naming the backup and the chunk, after which the target's content is
//   unspecified (the caller marks it error). The target must exist and be at least as large as
//   the backup (kInvalidArgument otherwise); bytes past the backup's size are left as they are.
// - Errors: kNotFound (no such complete backup, or a missing parent), kInvalidArgument (bad id,
//   source or target unusable, a parent of another size), kConflict (delete with dependents),
//   kDriverFailed (I/O failure or corruption; the message says which).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "clinker/core/error.h"

namespace clinker::ports {

struct BackupRequest {
  std::string backup_id;
  std::string source_path;  // The volume's data, read only.
  // Incremental backups name the backup they build on; nullopt for a full backup.
  std::optional<std::string> parent_backup_id;
};

struct BackupDescription {
  std::string backup_id;
  std::optional<std::string> parent_backup_id;
  std::int64_t size_bytes = 0;    // Of the volume data backed up.
  std::int64_t chunk_count = 0;   // Chunks covering size_bytes.
  std::int64_t object_count = 0;  // Chunk objects this backup stored itself.
  std::int64_t stored_bytes = 0;  // Compressed bytes of those objects.
};

class BackupStore {
 public:
  virtual ~BackupStore() = default;

  virtual Result<BackupDescription> CreateBackup(const BackupRequest& request) = 0;
  // Writes the backup's data into the file at target_path (a volume's "local" path).
  virtual Result<void> RestoreBackup(std::string_view backup_id, std::string_view target_path) = 0;
  virtual Result<void> DeleteBackup(std::string_view backup_id) = 0;
  // kNotFound unless the backup is complete.
  virtual Result<BackupDescription> DescribeBackup(std::string_view backup_id) = 0;
};

}  // namespace clinker::ports
