// FileStorageDriver: volumes as sparse raw files in one directory, for single-machine runs and
// end-to-end tests.
//
// Contract (ports::StorageDriver, checked by test/contract/storage_driver_contract_test.cc):
// - Thread safe; holds no mutable state. Operations on one volume are serialised by the caller.
// - Blocking: each operation returns once it is durable (file and directory fsync'ed).
// - Volume `id` lives in `<volume_dir>/volume-<id>.img`, a sparse file of size_gib GiB. Ids are
//   restricted to [0-9a-fA-F-] (UUIDs) so no id can name a path outside volume_dir.
// - Idempotent: creating an existing volume of the same size succeeds, deleting a missing one
//   succeeds. A create never leaves a partial volume under the final name (temp file + rename),
//   so a crash mid-create leaves either no volume or a complete one (plus, at worst, a hidden
//   ".volume-<id>.img.*.tmp" file).
// - Errors: kInvalidArgument (bad id, size <= 0, existing volume of another size); kDriverFailed
//   for any system call failure, with the errno text.
// - Fences (ports::StorageDriver's fencing): `<volume_dir>/.fences/volume-<id>` holds the
//   volume's fence token in decimal; it exists only for volumes that were ever fenced (a node
//   took over another's job), so the common path creates no file for it. Every create/delete
//   holds LOCK_SH on `<volume_dir>/.fences/.lock` across its fence check and the rename or
//   unlink that makes its change visible; Fence holds LOCK_EX across its read and rewrite. So a
//   stale holder either changed the volume before the fence went up, or not at all. Data written
//   to a temp file before the check is discarded when the check fails.
// - Journal (optional, for tests): after every successful CreateVolume / DeleteVolume call, one
//   JSON line {"op","volume_id","operation_id","pid","changed"} is appended with a single
//   write() on an O_APPEND descriptor, so lines from concurrent processes never interleave.
//   "changed" is false when the call found the work already done (idempotent repeat).
//   Failing to write it fails the operation with kDriverFailed (the work itself is done, and a
//   retry is idempotent).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "clinker/core/error.h"
#include "clinker/ports/storage_driver.h"

namespace clinker::adapters {

class FileStorageDriver final : public ports::StorageDriver {
 public:
  struct Options {
    std::string volume_dir;
    std::string backend_name = "file";
    // Slept at the start of every CreateVolume / DeleteVolume, to widen the window in which a
    // test can kill a worker mid-operation or observe a slow back-end.
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
  Result<void> Fence(std::string_view volume_id, std::uint64_t fencing_token) override;
  Result<ports::BackendStats> GetStats() override;

  const Options& options() const { return options_; }

  // Where the volume lives; meaningful only for a valid id.
  std::string VolumePath(std::string_view volume_id) const;

 private:
  explicit FileStorageDriver(Options options);

  std::string FencePath(std::string_view volume_id) const;
  // kFenced if the volume's fence is above `fencing_token`. Call with the fence guard held.
  Result<void> CheckFence(std::string_view volume_id, std::uint64_t fencing_token) const;

  Result<void> AppendJournal(std::string_view op,
                             std::string_view volume_id,
                             std::string_view operation_id,
                             bool changed) const;

  Options options_;
};

}  // namespace clinker::adapters
