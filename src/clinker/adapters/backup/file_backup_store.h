// FileBackupStore: backups as directories of compressed, checksummed chunk objects plus a JSON
// manifest, on a file system of this host (a local disk, or a mounted share).
//
// Contract (ports::BackupStore, checked by test/contract/backup_store_contract_test.cc):
// - Layout: backup `id` lives in `<backup_dir>/backup-<id>/`: one `chunk-<index>.z` per chunk it
//   stores (zlib stream of the chunk's data) and `manifest.json`, written last (temp file,
//   fsync, rename, fsync of the directory). The manifest names, per chunk, its kind ("zero":
//   nothing stored; "stored": the object in this backup; "parent": the object of the backup
//   named in "from", resolved through the whole chain at create time so a restore reads one
//   object per chunk), the SHA-256 of its data and, for objects, the SHA-256 and size of the
//   object. Ids are restricted to [0-9a-fA-F-] (UUIDs), 1 to 128 characters, so no id can name
//   a path outside backup_dir.
// - An incremental backup uses its parent's chunk size (chunks must line up) and registers in
//   `backup-<parent>/dependents/<id>` before its manifest is written. A marker whose backup has
//   no complete manifest naming that parent is garbage left by a crash: the parent's delete
//   removes it. The child holds a shared flock on the parent's directory from the moment it
//   reads the parent's manifest until its own manifest is durable; DeleteBackup takes that
//   flock exclusively without waiting, so it never deletes a parent whose child is being made.
// - Thread safe for different backups; holds no mutable state. Operations on one backup are
//   serialised by the caller (ports/backup_store.h).
// - Blocking: every operation returns once its result is durable (objects, manifest, target
//   and directories fsync'ed).
// - Sources and targets are regular files or block devices; their size is what lseek(SEEK_END)
//   says. Chunks that are holes in the source (SEEK_DATA) are not read; holes and all-zero
//   chunks are recorded as "zero" and restored by punching holes (or writing zeros where the
//   file system cannot punch).
// - Idempotent: creating a backup whose manifest exists returns its description without opening
//   the source (kInvalidArgument if that backup has another parent); a directory without a
//   manifest is wiped and the backup made again; deleting a missing backup succeeds.
// - Crash behaviour: the manifest is the commit point. A create that crashes leaves a directory
//   without manifest (invisible; wiped by the next create or delete of that id) and possibly a
//   stale dependent marker in the parent. A delete removes the manifest first (durably), then
//   the objects and the directory, then its marker in the parent, so a crash leaves either the
//   complete backup or an invisible remainder. A failed create removes what it wrote.
// - Errors: kInvalidArgument (bad id or options, source or target unusable or too small, parent
//   of another size, a backup of the same id with another parent); kNotFound (no complete
//   backup, or a missing parent); kConflict (delete of a backup that has a complete dependent or
//   one being created); kDriverFailed (a system call failed, with the errno text, or the backup
//   is corrupt: "backup <id> is corrupt: chunk <n> ..." naming the first bad chunk).
// - Journal (optional, for tests; Options::journal_path): after every successful create, delete
//   and restore, one JSON line {"op", <ids>, "operation_id", "pid", "changed"}, in the format of
//   the file storage driver's journal (adapters/file/file_storage_driver.h), so both may share
//   one file: each line is appended with a single write() on an O_APPEND descriptor, and lines
//   from concurrent writers never interleave. The ids are: create_backup: "backup_id" (plus
//   "parent_backup_id" for an incremental); delete_backup: "backup_id"; restore_backup:
//   "backup_id", "target_path". "operation_id" is empty (the port carries none). "changed" is
//   false when a create found the backup complete already or a delete found nothing to remove;
//   a restore always writes its target, so it is always true. Failing to write the line fails
//   the operation with kDriverFailed (the work itself is done, and a retry is idempotent).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "clinker/core/error.h"
#include "clinker/ports/backup_store.h"

namespace clinker::adapters {

class FileBackupStore final : public ports::BackupStore {
 public:
  struct Options {
    std::string backup_dir;
    // A multiple of 4096 (hole detection and punching work in file-system blocks) between 64 KiB
    // and 1 GiB. Larger chunks mean fewer objects and fsyncs; smaller ones store less for an
    // incremental with scattered changes. Each operation holds about two chunks in memory.
    std::int64_t chunk_size_bytes = std::int64_t{8} << 20;
    // zlib level, -1 (zlib's default) or 0 to 9. Level 1 is several times faster than the
    // default and compresses volume data (mostly zeros, text, binaries) nearly as well.
    int compression_level = 1;
    std::string journal_path;  // Empty: no journal (see the contract above).
  };

  // Creates backup_dir (and parents) if missing. kInvalidArgument for bad options;
  // kDriverFailed if the directory cannot be created.
  static Result<std::unique_ptr<FileBackupStore>> Create(Options options);

  Result<ports::BackupDescription> CreateBackup(const ports::BackupRequest& request) override;
  Result<void> RestoreBackup(std::string_view backup_id, std::string_view target_path) override;
  Result<void> DeleteBackup(std::string_view backup_id) override;
  Result<ports::BackupDescription> DescribeBackup(std::string_view backup_id) override;

  const Options& options() const { return options_; }

  // The backup's directory; meaningful only for a valid id.
  std::string BackupPath(std::string_view backup_id) const;

 private:
  explicit FileBackupStore(Options options);

  // DeleteBackup without the id check and the journal; returns whether anything was removed.
  Result<bool> RemoveBackup(std::string_view backup_id);

  Options options_;
};

}  // namespace clinker::adapters
