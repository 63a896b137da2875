#include "clinker/adapters/memory/memory_storage_driver.h"

#include <algorithm>
#include <utility>

namespace clinker::adapters {
namespace {

constexpr std::size_t kMaxIdLength = 128;

// Mirrors FileStorageDriver's rule (the two live in separate libraries) so that a service test
// against the fake rejects exactly the ids production would.
Result<void> ValidateId(std::string_view kind, std::string_view id) {
  bool valid = !id.empty() && id.size() <= kMaxIdLength;
  for (char c : id) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    valid = valid && (hex || c == '-');
  }
  if (!valid) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        std::string(kind) + " id must be 1 to 128 hex digits or '-': '" + std::string(id) + "'");
  }
  return {};
}

Result<void> ValidateSizeGib(std::int64_t size_gib) {
  if (size_gib <= 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "volume size must be positive, got " + std::to_string(size_gib));
  }
  return {};
}

tl::unexpected<Error> VolumeNotFound(std::string_view what, std::string_view id) {
  return MakeError(ErrorCode::kNotFound,
                   std::string(what) + " " + std::string(id) + " does not exist");
}

}  // namespace

MemoryStorageDriver::MemoryStorageDriver(std::string backend_name, std::int64_t total_capacity_gib)
    : backend_name_(std::move(backend_name)), total_capacity_gib_(total_capacity_gib) {}

Result<void> MemoryStorageDriver::CreateVolume(const ports::VolumeSpec& spec) {
  Call call;
  call.op = "create_volume";
  call.volume_id = spec.volume_id;
  call.operation_id = spec.operation_id;
  call.size_gib = spec.size_gib;
  call.source = spec.source;
  const bool from_snapshot = spec.source.kind == ports::VolumeSource::Kind::kSnapshot;
  const bool cloned = spec.source.kind != ports::VolumeSource::Kind::kNone;
  Result<void> valid = ValidateId("volume", spec.volume_id);
  if (valid) {
    valid = ValidateSizeGib(spec.size_gib);
  }
  if (valid && cloned) {
    valid = ValidateId(from_snapshot ? "snapshot" : "volume", spec.source.id);
  }
  if (!valid) {
    return RecordRejected(std::move(call), std::move(valid));
  }
  return RunDataOperation(std::move(call), spec.volume_id, spec.fencing_token, [&]() {
    auto it = volumes_.find(spec.volume_id);
    if (it != volumes_.end()) {
      if (it->second != spec.size_gib) {
        return Result<void>(MakeError(ErrorCode::kInvalidArgument,
                                      "volume exists with " + std::to_string(it->second) +
                                          " GiB, not the requested " +
                                          std::to_string(spec.size_gib) + " GiB"));
      }
      return Result<void>();  // Done before: nothing is copied again.
    }
    if (cloned) {
      std::optional<std::int64_t> source_size_gib;
      if (from_snapshot) {
        if (auto source = snapshots_.find(spec.source.id); source != snapshots_.end()) {
          source_size_gib = source->second.size_gib;
        }
      } else if (auto source = volumes_.find(spec.source.id); source != volumes_.end()) {
        source_size_gib = source->second;
      }
      const std::string_view what = from_snapshot ? "source snapshot" : "source volume";
      if (!source_size_gib) {
        return Result<void>(VolumeNotFound(what, spec.source.id));
      }
      if (*source_size_gib > spec.size_gib) {
        return Result<void>(MakeError(ErrorCode::kInvalidArgument,
                                      "volume size " + std::to_string(spec.size_gib) +
                                          " GiB is smaller than " + std::string(what) + " " +
                                          spec.source.id + " (" + std::to_string(*source_size_gib) +
                                          " GiB)"));
      }
    }
    volumes_.emplace(spec.volume_id, spec.size_gib);
    return Result<void>();
  });
}

Result<void> MemoryStorageDriver::DeleteVolume(std::string_view volume_id,
                                               std::string_view operation_id,
                                               std::uint64_t fencing_token) {
  Call call;
  call.op = "delete_volume";
  call.volume_id = volume_id;
  call.operation_id = operation_id;
  if (Result<void> valid = ValidateId("volume", volume_id); !valid) {
    return RecordRejected(std::move(call), std::move(valid));
  }
  return RunDataOperation(std::move(call), volume_id, fencing_token, [&]() {
    if (auto it = volumes_.find(volume_id); it != volumes_.end()) {
      volumes_.erase(it);
    }
    return Result<void>();
  });
}

Result<void> MemoryStorageDriver::ExtendVolume(std::string_view volume_id,
                                               std::int64_t new_size_gib,
                                               std::string_view operation_id,
                                               std::uint64_t fencing_token) {
  Call call;
  call.op = "extend_volume";
  call.volume_id = volume_id;
  call.operation_id = operation_id;
  call.size_gib = new_size_gib;
  Result<void> valid = ValidateId("volume", volume_id);
  if (valid) {
    valid = ValidateSizeGib(new_size_gib);
  }
  if (!valid) {
    return RecordRejected(std::move(call), std::move(valid));
  }
  return RunDataOperation(std::move(call), volume_id, fencing_token, [&]() {
    auto it = volumes_.find(volume_id);
    if (it == volumes_.end()) {
      return Result<void>(VolumeNotFound("volume", volume_id));
    }
    if (it->second > new_size_gib) {
      return Result<void>(MakeError(ErrorCode::kInvalidArgument,
                                    "cannot shrink volume " + std::string(volume_id) + " from " +
                                        std::to_string(it->second) + " GiB to " +
                                        std::to_string(new_size_gib) + " GiB"));
    }
    it->second = new_size_gib;
    return Result<void>();
  });
}

Result<void> MemoryStorageDriver::CreateSnapshot(const ports::SnapshotSpec& spec) {
  Call call;
  call.op = "create_snapshot";
  call.volume_id = spec.volume_id;
  call.operation_id = spec.operation_id;
  call.snapshot_id = spec.snapshot_id;
  Result<void> valid = ValidateId("snapshot", spec.snapshot_id);
  if (valid) {
    valid = ValidateId("volume", spec.volume_id);
  }
  if (!valid) {
    return RecordRejected(std::move(call), std::move(valid));
  }
  return RunDataOperation(std::move(call), spec.snapshot_id, spec.fencing_token, [&]() {
    // An existing snapshot is the answer to a repeated request, whatever its volume became.
    if (snapshots_.find(spec.snapshot_id) != snapshots_.end()) {
      return Result<void>();
    }
    auto volume = volumes_.find(spec.volume_id);
    if (volume == volumes_.end()) {
      return Result<void>(VolumeNotFound("volume", spec.volume_id));
    }
    snapshots_.emplace(spec.snapshot_id, Snapshot{spec.volume_id, volume->second});
    return Result<void>();
  });
}

Result<void> MemoryStorageDriver::DeleteSnapshot(std::string_view snapshot_id,
                                                 std::string_view operation_id,
                                                 std::uint64_t fencing_token) {
  Call call;
  call.op = "delete_snapshot";
  call.operation_id = operation_id;
  call.snapshot_id = snapshot_id;
  if (Result<void> valid = ValidateId("snapshot", snapshot_id); !valid) {
    return RecordRejected(std::move(call), std::move(valid));
  }
  return RunDataOperation(std::move(call), snapshot_id, fencing_token, [&]() {
    if (auto it = snapshots_.find(snapshot_id); it != snapshots_.end()) {
      snapshots_.erase(it);
    }
    return Result<void>();
  });
}

Result<ports::ConnectionInfo> MemoryStorageDriver::InitializeConnection(
    std::string_view volume_id, const ports::Connector& /*connector*/) {
  Call call;
  call.op = "initialize_connection";
  call.volume_id = volume_id;
  std::lock_guard<std::mutex> guard(mutex_);
  Result<void> outcome = ValidateId("volume", volume_id);
  if (outcome && volumes_.find(volume_id) == volumes_.end()) {
    outcome = VolumeNotFound("volume", volume_id);
  }
  CLINKER_RETURN_IF_ERROR(Record(std::move(call), std::move(outcome)));
  return ports::ConnectionInfo{"memory", {{"volume_id", std::string(volume_id)}}};
}

Result<void> MemoryStorageDriver::TerminateConnection(std::string_view volume_id,
                                                      const ports::Connector& /*connector*/) {
  Call call;
  call.op = "terminate_connection";
  call.volume_id = volume_id;
  std::lock_guard<std::mutex> guard(mutex_);
  return Record(std::move(call), ValidateId("volume", volume_id));
}

Result<void> MemoryStorageDriver::Fence(std::string_view resource_id, std::uint64_t fencing_token) {
  CLINKER_RETURN_IF_ERROR(ValidateId("resource", resource_id));
  std::lock_guard<std::mutex> guard(mutex_);
  CLINKER_RETURN_IF_ERROR(CheckFence(resource_id, fencing_token));
  fences_[std::string(resource_id)] = fencing_token;
  return {};
}

Result<void> MemoryStorageDriver::RunDataOperation(Call call,
                                                   std::string_view resource_id,
                                                   std::uint64_t fencing_token,
                                                   const std::function<Result<void>()>& apply) {
  if (hook_) {
    hook_(call);
  }
  std::lock_guard<std::mutex> guard(mutex_);
  if (std::optional<Error> failure = TakeFailure(FailurePoint::kBeforeApplying)) {
    return Record(std::move(call), tl::unexpected(std::move(*failure)));
  }
  if (Result<void> admitted = CheckFence(resource_id, fencing_token); !admitted) {
    return Record(std::move(call), std::move(admitted));
  }
  if (Result<void> applied = apply(); !applied) {
    return Record(std::move(call), std::move(applied));
  }
  if (std::optional<Error> failure = TakeFailure(FailurePoint::kAfterApplying)) {
    return Record(std::move(call), tl::unexpected(std::move(*failure)));
  }
  return Record(std::move(call), {});
}

Result<void> MemoryStorageDriver::RecordRejected(Call call, Result<void> outcome) {
  std::lock_guard<std::mutex> guard(mutex_);
  return Record(std::move(call), std::move(outcome));
}

Result<void> MemoryStorageDriver::CheckFence(std::string_view resource_id,
                                             std::uint64_t fencing_token) const {
  auto it = fences_.find(resource_id);
  if (it != fences_.end() && fencing_token < it->second) {
    return MakeError(ErrorCode::kFenced,
                     std::string(resource_id) + " is fenced at token " +
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
  for (const auto& [id, snapshot] : snapshots_) {
    used_gib += snapshot.size_gib;
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

bool MemoryStorageDriver::HasSnapshot(std::string_view snapshot_id) const {
  std::lock_guard<std::mutex> guard(mutex_);
  return snapshots_.find(snapshot_id) != snapshots_.end();
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
