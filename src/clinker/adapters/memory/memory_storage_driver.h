// MemoryStorageDriver: an in-process fake of ports::StorageDriver for service tests.
//
// Contract (the same suite as FileStorageDriver: test/contract/storage_driver_contract_test.cc):
// - Thread safe. Never blocks, except in a hook set with OnCall.
// - Same validation and idempotency as FileStorageDriver: ids only [0-9a-fA-F-] (1 to 128
//   characters), size_gib > 0; creating an existing volume of the same size succeeds, of another
//   size is kInvalidArgument; deleting a missing volume succeeds.
// - Records every CreateVolume / DeleteVolume call (including failed ones) so tests can count
//   how often a job's operation reached the driver.
// - Failure injection: FailNext makes the next CreateVolume / DeleteVolume call fail with the
//   given error, either before applying (nothing changed) or after applying (the work is done but
//   the caller sees a failure: the "reply lost" case).
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
    std::string op;  // "create_volume" or "delete_volume"
    std::string volume_id;
    std::string operation_id;
    std::int64_t size_gib = 0;  // 0 for deletes.
    bool succeeded = false;     // What the caller saw (an after-applying failure is false).
  };

  explicit MemoryStorageDriver(std::string backend_name = "memory",
                               std::int64_t total_capacity_gib = 1024);

  Result<void> CreateVolume(const ports::VolumeSpec& spec) override;
  Result<void> DeleteVolume(std::string_view volume_id,
                            std::string_view operation_id,
                            std::uint64_t fencing_token) override;
  Result<void> Fence(std::string_view volume_id, std::uint64_t fencing_token) override;
  // free = total - sum of volume sizes (never below 0).
  Result<ports::BackendStats> GetStats() override;

  // The next CreateVolume / DeleteVolume call (one call, whichever comes first) returns
  // Error{code, message}. Calls rejected for a bad id or size do not consume it, nor (for
  // kAfterApplying) a create rejected for a size conflict, since it applies nothing.
  void FailNext(ErrorCode code,
                std::string message,
                FailurePoint point = FailurePoint::kBeforeApplying);

  // Runs at the start of every valid CreateVolume / DeleteVolume, outside the driver's mutex (it
  // may block, e.g. to hold a worker mid-operation). Set it before the driver is shared.
  void OnCall(std::function<void(const Call&)> hook);

  bool HasVolume(std::string_view volume_id) const;
  std::optional<std::int64_t> VolumeSizeGib(std::string_view volume_id) const;
  std::size_t VolumeCount() const;
  std::vector<Call> Calls() const;
  // Calls of kind `op` ("create_volume" / "delete_volume"), succeeded or not.
  int CallCount(std::string_view op) const;
  // Calls carrying `operation_id`, succeeded or not.
  int CallCountForOperation(std::string_view operation_id) const;

 private:
  struct PendingFailure {
    Error error;
    FailurePoint point;
  };

  // Under mutex_: records `call` with the outcome and returns it.
  Result<void> Record(Call call, Result<void> outcome);
  // Under mutex_: kFenced if the volume's fence is above `fencing_token`.
  Result<void> CheckFence(std::string_view volume_id, std::uint64_t fencing_token) const;
  // Under mutex_: takes the pending failure if it fires at `point`.
  std::optional<Error> TakeFailure(FailurePoint point);

  const std::string backend_name_;
  const std::int64_t total_capacity_gib_;
  std::function<void(const Call&)> hook_;

  mutable std::mutex mutex_;
  std::map<std::string, std::int64_t, std::less<>> volumes_;  // id -> size_gib
  std::map<std::string, std::uint64_t, std::less<>> fences_;  // id -> fence token
  std::vector<Call> calls_;
  std::optional<PendingFailure> pending_failure_;
};

}  // namespace clinker::adapters
