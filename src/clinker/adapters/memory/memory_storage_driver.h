// MemoryStorageDriver: an in-process fake of ports::StorageDriver for service tests.
//
// Contract (the same suite as FileStorageDriver: test/contract/storage_driver_contract_test.cc):
// - Thread safe. Never blocks, except in a hook set with OnCall.
// - Holds no data, only sizes: volumes id -> size_gib, snapshots id -> (volume_id, size_gib).
// - Same validation, idempotency and errors as FileStorageDriver: ids only [0-9a-fA-F-] (1 to
//   128 characters), size_gib > 0; creating an existing volume of the same size succeeds, of
//   another size is kInvalidArgument; a clone needs its source (kNotFound) and at least its size
//   (kInvalidArgument); creating an existing snapshot succeeds; deleting a missing volume or
//   snapshot succeeds; extending to the current size succeeds, to a smaller one is
//   kInvalidArgument, a missing volume kNotFound; connecting to a missing volume is kNotFound.
// - Fencing: every data operation checks the fence of the resource it writes (the new or deleted
//   volume or snapshot, the extended volume) before anything else, so a stale caller gets
//   kFenced even where the work is already done.
// - Records every call (including failed ones, and connection calls) so tests can count how
//   often a job's operation reached the driver.
// - Failure injection: FailNext makes the next data operation (create / delete / extend volume,
//   create / delete snapshot; not connection calls) fail with the given error, either before
//   applying (nothing changed) or after applying (the work is done but the caller sees a
//   failure: the "reply lost" case).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"
#include "clinker/ports/storage_driver.h"

namespace clinker::adapters {

class MemoryStorageDriver final : public ports::StorageDriver {
 public:
  enum class FailurePoint { kBeforeApplying, kAfterApplying };

  struct Call {
    // "create_volume", "delete_volume", "extend_volume", "create_snapshot", "delete_snapshot",
    // "initialize_connection" or "terminate_connection".
    std::string op;
    std::string volume_id;  // Empty for delete_snapshot.
    std::string operation_id;
    std::int64_t size_gib = 0;   // create_volume; the new size for extend_volume; else 0.
    bool succeeded = false;      // What the caller saw (an after-applying failure is false).
    std::string snapshot_id;     // create_snapshot / delete_snapshot.
    ports::VolumeSource source;  // create_volume.
  };

  explicit MemoryStorageDriver(std::string backend_name = "memory",
                               std::int64_t total_capacity_gib = 1024);

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
  // {"memory", {"volume_id": id}}.
  Result<ports::ConnectionInfo> InitializeConnection(std::string_view volume_id,
                                                     const ports::Connector& connector) override;
  Result<void> TerminateConnection(std::string_view volume_id,
                                   const ports::Connector& connector) override;
  Result<void> Fence(std::string_view resource_id, std::uint64_t fencing_token) override;
  // free = total - sum of volume and snapshot sizes (never below 0), as a back-end that copies
  // snapshots would report.
  Result<ports::BackendStats> GetStats() override;

  // The next data operation (one call, whichever comes first) returns Error{code, message}.
  // Calls rejected for a bad id or size do not consume it, nor (for kAfterApplying) a call
  // rejected for a conflict, a missing source or volume, or a fence, since it applies nothing.
  void FailNext(ErrorCode code,
                std::string message,
                FailurePoint point = FailurePoint::kBeforeApplying);

  // Runs at the start of every valid data operation, outside the driver's mutex (it may block,
  // e.g. to hold a worker mid-operation). Set it before the driver is shared.
  void OnCall(std::function<void(const Call&)> hook);

  bool HasVolume(std::string_view volume_id) const;
  std::optional<std::int64_t> VolumeSizeGib(std::string_view volume_id) const;
  std::size_t VolumeCount() const;
  bool HasSnapshot(std::string_view snapshot_id) const;
  std::vector<Call> Calls() const;
  // Calls of kind `op` (see Call::op), succeeded or not.
  int CallCount(std::string_view op) const;
  // Calls carrying `operation_id`, succeeded or not.
  int CallCountForOperation(std::string_view operation_id) const;

 private:
  struct PendingFailure {
    Error error;
    FailurePoint point;
  };

  struct Snapshot {
    std::string volume_id;
    std::int64_t size_gib = 0;
  };

  // Runs a valid data operation: the hook, then under mutex_ the before-applying failure, the
  // fence of `resource_id`, `apply`, and the after-applying failure (only if `apply` succeeded);
  // records the call with the outcome.
  Result<void> RunDataOperation(Call call,
                                std::string_view resource_id,
                                std::uint64_t fencing_token,
                                const std::function<Result<void>()>& apply);
  // Records a call rejected before reaching the back-end (bad id or size).
  Result<void> RecordRejected(Call call, Result<void> outcome);
  // Under mutex_: records `call` with the outcome and returns it.
  Result<void> Record(Call call, Result<void> outcome);
  // Under mutex_: kFenced if the resource's fence is above `fencing_token`.
  Result<void> CheckFence(std::string_view resource_id, std::uint64_t fencing_token) const;
  // Under mutex_: takes the pending failure if it fires at `point`.
  std::optional<Error> TakeFailure(FailurePoint point);

  const std::string backend_name_;
  const std::int64_t total_capacity_gib_;
  std::function<void(const Call&)> hook_;

  mutable std::mutex mutex_;
  std::map<std::string, std::int64_t, std::less<>> volumes_;  // id -> size_gib
  std::map<std::string, Snapshot, std::less<>> snapshots_;    // id -> volume and size
  std::map<std::string, std::uint64_t, std::less<>> fences_;  // resource id -> fence token
  std::vector<Call> calls_;
  std::optional<PendingFailure> pending_failure_;
};

}  // namespace clinker::adapters
