// FileStorageDriver: volumes and snapshots as sparse raw files in one directory, for
// single-machine runs and end-to-end tests.
//
// Contract (ports::StorageDriver, checked by test/contract/storage_driver_contract_test.cc):
// - Thread safe; holds no mutable state. Operations on one resource are serialised by the
//   caller, and a source being copied is not written meanwhile (the caller's shared lock).
// - Blocking: each operation returns once it is durable (file and directory fsync'ed).
// - Volume `id` lives in `<volume_dir>/volume-<id>.img`, a sparse file of size_gib GiB; snapshot
//   `id` in `<volume_dir>/snapshot-<id>.img`, a copy of its volume as it was when taken. Ids are
//   restricted to [0-9a-fA-F-] (UUIDs) so no id can name a path outside volume_dir.
// - Copies (a volume cloned from a volume or a snapshot, a snapshot of a volume) share blocks
//   with their source where the file system can (reflink: btrfs, XFS); elsewhere only the
//   source's data extents are copied and its holes stay holes, so a copy costs what the source
//   holds, not its size. Either way the copy is independent: writing the source later does not
//   change it.
// - Idempotent: creating an existing volume of the same size, or an existing snapshot, succeeds
//   without copying again (and without a fence check: it changes nothing); deleting a missing
//   volume or snapshot succeeds; extending a volume to the size it has succeeds. A create never
//   leaves a partial resource under its final name (temp file, fsync, rename), so a crash
//   mid-create leaves either nothing or a complete copy (plus, at worst, a hidden
//   ".volume-<id>.img.tmp.*" or ".snapshot-<id>.img.tmp.*" file, removed by the next delete of
//   that id).
// - Errors: kInvalidArgument (bad id, size <= 0, existing volume of another size, a clone smaller
//   than its source, a shrink); kNotFound (the source of a copy, the volume to snapshot, extend
//   or connect is missing); kFenced (below); kDriverFailed for any system call failure, with the
//   errno text.
// - Fences (ports::StorageDriver's fencing): `<volume_dir>/.fences/volume-<id>` holds resource
//   `id`'s fence token in decimal, for volumes and snapshots alike (the "volume-" prefix predates
//   snapshots; ids never collide, so one name scheme serves every resource). A fence file exists
//   only for resources that were ever fenced (a node took over another's job), so the common
//   path creates none. Every operation that writes holds LOCK_SH on `<volume_dir>/.fences/.lock`
//   across its fence check and the rename, unlink or ftruncate that makes its change visible;
//   Fence holds LOCK_EX across its read and rewrite. So a stale holder either changed the
//   resource before the fence went up, or not at all. Data copied to a temp file before the
//   check is discarded when the check fails.
// - Journal (optional, for tests): after every successful operation but Fence and GetStats, one
//   JSON line {"op", <ids>, "operation_id", "pid", "changed"} is appended with a single write()
//   on an O_APPEND descriptor, so lines from concurrent processes never interleave. The ids are:
//   create_volume / delete_volume: "volume_id" (plus "source_kind" "volume" or "snapshot" and
//   "source_id" for a clone); extend_volume: "volume_id", "size_gib"; create_snapshot:
//   "snapshot_id", "volume_id"; delete_snapshot: "snapshot_id"; initialize_connection /
//   terminate_connection: "volume_id", "host" (the connector's), with an empty "operation_id"
//   (connection calls carry none). "changed" is false when the call found the work already done
//   (idempotent repeat), and always false for connections (below: there is no export state).
//   Failing to write it fails the operation with kDriverFailed (the work itself is done, and a
//   retry is idempotent). The journal may be shared with other writers (the backup store's).
// - Connections: the volume is a file on this host, so InitializeConnection returns
//   {"local", {"device_path": VolumePath(id)}}, exports nothing, and TerminateConnection has
//   nothing to undo.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "clinker/core/error.h"
#include "clinker/ports/storage_driver.h"

namespace clinker::adapters {

class FileStorageDriver final : public ports::StorageDriver {
 public:
  struct Options {
    std::string volume_dir;
    std::string backend_name = "file";
    // Slept at the start of every data operation (create / delete / extend volume, create /
    // delete snapshot), to widen the window in which a test can kill a worker mid-operation or
    // observe a slow back-end.
    std::chrono::milliseconds delay{0};
    std::string journal_path;  // Empty: no journal.
  };

  // Creates volume_dir (and parents) if missing. kInvalidArgument if volume_dir is empty;
  // kDriverFailed if it cannot be created.
  static Result<std::unique_ptr<FileStorageDriver>> Create(Options options);

  Result<void> CreateVolume(const ports::VolumeSpec& spec) override;
  Result<void> DeleteVolume(std::string_view volume_id,
                            std::string_view operation_id,
                            std::uint64_t fencing_token) override;
  Result<void> ExtendVolume(std::string_view volume_id,
                            std::int64_t new_size_gib,
                            std::string_view operation_id,
                            std::uint64_t fencing_token) override;
  Result<void> CreateSnapshot(const ports::SnapshotSpec& spec) override;
  Result<void> DeleteSnapshot(std::string_view snapshot_id,
                              std::string_view operation_id,
                              std::uint64_t fencing_token) override;
  Result<ports::ConnectionInfo> InitializeConnection(std::string_view volume_id,
                                                     const ports::Connector& connector) override;
  Result<void> TerminateConnection(std::string_view volume_id,
                                   const ports::Connector& connector) override;
  Result<void> Fence(std::string_view resource_id, std::uint64_t fencing_token) override;
  Result<ports::BackendStats> GetStats() override;

  const Options& options() const { return options_; }

  // Where the volume / snapshot lives; meaningful only for a valid id.
  std::string VolumePath(std::string_view volume_id) const;
  std::string SnapshotPath(std::string_view snapshot_id) const;

 private:
  // One journal field beyond op, operation_id, pid and changed.
  using JournalFields = std::vector<std::pair<std::string_view, nlohmann::ordered_json>>;

  explicit FileStorageDriver(Options options);

  void Delay() const;
  // Puts a complete image under `final_path`: a copy of the file open at `source_fd` (blank when
  // -1) grown to `size_bytes`, written under a temp name and renamed in only if `resource_id`'s
  // fence admits `fencing_token`. Returns false when another caller put an image there meanwhile
  // (the caller judges that one).
  Result<bool> PublishImage(std::string_view kind,
                            std::string_view resource_id,
                            int source_fd,
                            std::int64_t size_bytes,
                            const std::string& final_path,
                            std::uint64_t fencing_token) const;
  // Unlinks `path` under the fence of `resource_id`, then removes temp files a crashed create of
  // it left. Returns whether the file existed.
  Result<bool> RemoveImage(std::string_view kind,
                           std::string_view resource_id,
                           const std::string& path,
                           std::uint64_t fencing_token) const;

  std::string FencePath(std::string_view resource_id) const;
  // kFenced if the resource's fence is above `fencing_token`. Call with the fence guard held.
  Result<void> CheckFence(std::string_view resource_id, std::uint64_t fencing_token) const;

  Result<void> AppendJournal(std::string_view op,
                             const JournalFields& fields,
                             std::string_view operation_id,
                             bool changed) const;

  Options options_;
};

}  // namespace clinker::adapters
