#include "clinker/adapters/memory/memory_storage_driver.h"

#include <algorithm>
#include <utility>

namespace clinker::adapters {
namespace {

constexpr std::size_t kMaxVolumeIdLength = 128;
constexpr std::string_view kCreateOp = "create_volume";
constexpr std::string_view kDeleteOp = "delete_volume";

// Mirrors FileStorageDriver's rule (the two live in separate libraries) so that a service test
// against the fake rejects exactly the ids production would.
Result<void> ValidateVolumeId(std::string_view volume_id) {
  bool valid = !volume_id.empty() && volume_id.size() <= kMaxVolumeIdLength;
  for (char c : volume_id) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    valid = valid && (hex || c == '-');
  }
  if (!valid) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "volume id must be 1 to 128 hex digits or '-': '" + std::string(volume_id) + "'");
  }
  return {};
}

}  // namespace

MemoryStorageDriver::MemoryStorageDriver(std::string backend_name, std::int64_t total_capacity_gib)
    : backend_name_(std::move(backend_name)), total_capacity_gib_(total_capacity_gib) {}

Result<void> MemoryStorageDriver::CreateVolume(const ports::VolumeSpec& spec) {
  Call call{std::string(kCreateOp), spec.volume_id, spec.operation_id, spec.size_gib, false};
  Result<void> valid = ValidateVolumeId(spec.volume_id);
  if (valid && spec.size_gib <= 0) {
    valid = MakeError(ErrorCode::kInvalidArgument,
                      "volume size must be positive, got " + std::to_string(spec.size_gib));
  }
  if (!valid) {
    std::lock_guard<std::mutex> guard(mutex_);
    return Record(std::move(call), std::move(valid));
  }
  if (hook_) {
    hook_(call);
  }
  std::lock_guard<std::mutex> guard(mutex_);
  if (std::optional<Error> failure = TakeFailure(FailurePoint::kBeforeApplying)) {
    return Record(std::move(call), tl::unexpected(std::move(*failure)));
  }
  if (Result<void> admitted = CheckFence(spec.volume_id, spec.fencing_token); !admitted) {
    return Record(std::move(call), std::move(admitted));
  }
  auto it = volumes_.find(spec.volume_id);
  if (it != volumes_.end() && it->second != spec.size_gib) {
    return Record(
        std::move(call),
        MakeError(ErrorCode::kInvalidArgument,
                  "volume exists with " + std::to_string(it->second) + " GiB, not the requested " +
                      std::to_string(spec.size_gib) + " GiB"));
  }
  volumes_.emplace(spec.volume_id, spec.size_gib);
  if (std::optional<Error> failure = TakeFailure(FailurePoint::kAfterApplying)) {
    return Record(std::move(call), tl::unexpected(std::move(*failure)));
  }
  return Record(std::move(call), {});
}

Result<void> MemoryStorageDriver::DeleteVolume(std::string_view volume_id,
                                               std::string_view operation_id,
                                               std::uint64_t fencing_token) {
  Call call{std::string(kDeleteOp), std::string(volume_id), std::string(operation_id), 0, false};
  Result<void> valid = ValidateVolumeId(volume_id);
  if (!valid) {
    std::lock_guard<std::mutex> guard(mutex_);
    return Record(std::move(call), std::move(valid));
  }
  if (hook_) {
    hook_(call);
  }
  std::lock_guard<std::mutex> guard(mutex_);
  if (std::optional<Error> failure = TakeFailure(FailurePoint::kBeforeApplying)) {
    return Record(std::move(call), tl::unexpected(std::move(*failure)));
  }
  if (Result<void> admitted = CheckFence(volume_id, fencing_token); !admitted) {
    return Record(std::move(call), std::move(admitted));
  }
  auto it = volumes_.find(volume_id);
  if (it != volumes_.end()) {
    volumes_.erase(it);
  }
  if (std::optional<Error> failure = TakeFailure(FailurePoint::kAfterApplying)) {
    return Record(std::move(call), tl::unexpected(std::move(*failure)));
  }
  return Record(std::move(call), {});
}

Result<void> MemoryStorageDriver::Fence(std::string_view volume_id, std::uint64_t fencing_token) {
  CLINKER_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
  std::lock_guard<std::mutex> guard(mutex_);
  CLINKER_RETURN_IF_ERROR(CheckFence(volume_id, fencing_token));
  fences_[std::string(volume_id)] = fencing_token;
  return {};
}

Result<void> MemoryStorageDriver::CheckFence(std::string_view volume_id,
                                             std::uint64_t fencing_token) const {
  auto it = fences_.find(volume_id);
  if (it != fences_.end() && fencing_token < it->second) {
    return MakeError(ErrorCode::kFenced,
                     "volume " + std::string(volume_id) + " is fenced at token " +
                         std::to_string(it->second) + "; this operation carries " +
                         std::to_string(fencing_token));
  }
  return {};
}

Result<ports::BackendStats> MemoryStorageDriver::GetStats() {
  std::lock_guard<std::mutex> guard(mutex_);
  std::int64_t used_gib = 0;
  for (const auto& [id, size_gib] : volumes_) {
    used_gib += size_gib;
  }
  ports::BackendStats stats;
  stats.backend_name = backend_name_;
  stats.total_capacity_gib = total_capacity_gib_;
  stats.free_capacity_gib = std::max<std::int64_t>(0, total_capacity_gib_ - used_gib);
  return stats;
}

void MemoryStorageDriver::FailNext(ErrorCode code, std::string message, FailurePoint point) {
  std::lock_guard<std::mutex> guard(mutex_);
  pending_failure_ = PendingFailure{Error{code, std::move(message)}, point};
}

void MemoryStorageDriver::OnCall(std::function<void(const Call&)> hook) {
  hook_ = std::move(hook);
}

bool MemoryStorageDriver::HasVolume(std::string_view volume_id) const {
  std::lock_guard<std::mutex> guard(mutex_);
  return volumes_.find(volume_id) != volumes_.end();
}

std::optional<std::int64_t> MemoryStorageDriver::VolumeSizeGib(std::string_view volume_id) const {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = volumes_.find(volume_id);
  if (it == volumes_.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::size_t MemoryStorageDriver::VolumeCount() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return volumes_.size();
}

std::vector<MemoryStorageDriver::Call> MemoryStorageDriver::Calls() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return calls_;
}

int MemoryStorageDriver::CallCount(std::string_view op) const {
  std::lock_guard<std::mutex> guard(mutex_);
  return static_cast<int>(
      std::count_if(calls_.begin(), calls_.end(), [&](const Call& call) { return call.op == op; }));
}

int MemoryStorageDriver::CallCountForOperation(std::string_view operation_id) const {
  std::lock_guard<std::mutex> guard(mutex_);
  return static_cast<int>(std::count_if(calls_.begin(), calls_.end(), [&](const Call& call) {
    return call.operation_id == operation_id;
  }));
}

Result<void> MemoryStorageDriver::Record(Call call, Result<void> outcome) {
  call.succeeded = outcome.has_value();
  calls_.push_back(std::move(call));
  return outcome;
}

std::optional<Error> MemoryStorageDriver::TakeFailure(FailurePoint point) {
  if (!pending_failure_ || pending_failure_->point != point) {
    return std::nullopt;
  }
  Error error = std::move(pending_failure_->error);
  pending_failure_.reset();
  return error;
}

}  // namespace clinker::adapters
