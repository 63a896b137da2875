// Goal: show that VolumeManager applies the stuck-job rules to every operation it runs: a blank
// create, a clone of a volume, a volume from a snapshot, a delete, an extend, a snapshot create
// and a snapshot delete. For each, every rule row that can apply to its target, and for the
// three that read a source every rule row for reads, leave the row, the source row and the
// back-end as the design says, on a first delivery and on a redelivery alike. Also: the failed
// status and message of a failing driver call; the lock modes (target exclusive, source shared)
// and what they allow at once (two clones of one source) and what they keep apart (a delete of
// that source, an extend of a volume being snapshotted); fencing on a takeover, before anything
// else; and the order of the fault points around the driver call.
//
// Method: real in-memory adapters (MemoryStateStore, MemoryLockManager, MemoryStorageDriver) and
// a FakeClock. The manager talks to the driver through FenceRecordingDriver, which forwards every
// call and records each Fence with the target's row and the driver's call count at that moment,
// so "fenced before anything else" is an observation, not a guess. Each case writes the rows
// directly (the API's and earlier jobs' work), delivers a ports::Delivery carrying
// JobMessage::ToJson() and reads back the raw rows and MemoryStorageDriver::Calls() made by the
// job. The rule tables are written out here, one row per (operation, stored status, id
// relation), independent of domain/stuck_job.cc. Concurrency tests block jobs inside the driver
// with an OnCall hook and gates with bounded waits; "a writer waits for the lock" is observed as
// a shared TryAcquire refused for writer preference (ports/lock_manager.h), polled a bounded
// number of times.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/adapters/memory/memory_lock_manager.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/memory/memory_storage_driver.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/job_message.h"
#include "clinker/services/lock_names.h"
#include "clinker/services/snapshot_record.h"
#include "clinker/services/volume_manager.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"

namespace clinker::services {

static void PrintTo(JobOutcome outcome, std::ostream* out) {
  *out << (outcome == JobOutcome::kDone ? "kDone" : "kRetryLater");
}

namespace {

using adapters::MemoryLockManager;
using adapters::MemoryStateStore;
using adapters::MemoryStorageDriver;
using domain::Operation;
using domain::ResourceKind;
using test_support::FakeClock;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::int64_t kSizeGib = 3;
constexpr std::int64_t kExtendedSizeGib = 5;
// Bounds every wait for another thread; only reached when the code under test is broken.
constexpr std::chrono::seconds kWaitBound{20};

// ---- Rows. ----

std::string Dump(const ports::Row& row) {
  std::ostringstream out;
  for (const auto& [column, value] : row) {
    out << column << "=";
    if (std::holds_alternative<std::monostate>(value)) {
      out << "NULL";
    } else if (std::holds_alternative<std::int64_t>(value)) {
      out << std::get<std::int64_t>(value);
    } else {
      out << "'" << std::get<std::string>(value) << "'";
    }
    out << " ";
  }
  return out.str();
}

std::optional<std::string> TextColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::string>(it->second)) {
    return std::nullopt;
  }
  return std::get<std::string>(it->second);
}

std::optional<std::int64_t> IntegerColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::int64_t>(it->second)) {
    return std::nullopt;
  }
  return std::get<std::int64_t>(it->second);
}

// Every column other than `may_change` is as it was.
void ExpectOnlyChanged(const ports::Row& before,
                       const ports::Row& after,
                       const std::set<std::string_view>& may_change) {
  for (const auto& [column, value] : before) {
    if (may_change.count(column) != 0) {
      continue;
    }
    auto it = after.find(column);
    ASSERT_NE(it, after.end()) << column;
    EXPECT_TRUE(it->second == value) << "column " << column << " changed\nbefore: " << Dump(before)
                                     << "\nafter:  " << Dump(after);
  }
}

// ---- Gates for holding jobs inside the driver. ----

// Counts arrivals; waiters block (bounded) until enough have arrived.
class Arrivals {
 public:
  void Arrive() {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      ++count_;
    }
    changed_.notify_all();
  }

  bool WaitFor(int count) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, kWaitBound, [&] { return count_ >= count; });
  }

  int Count() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return count_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  int count_ = 0;
};

// Closed until Open; Wait blocks (bounded) until then.
class Gate {
 public:
  void Open() {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }

  bool Wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    return opened_.wait_for(lock, kWaitBound, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
};

// ---- A driver that records fences. ----

// Forwards every call to a MemoryStorageDriver. For each Fence it records the id, the token, how
// many calls the memory driver had seen, and the fenced resource's row at that moment.
class FenceRecordingDriver final : public ports::StorageDriver {
 public:
  struct FenceCall {
    std::string id;
    std::uint64_t token = 0;
    std::size_t driver_calls_before = 0;
    std::optional<ports::Row> row;
  };

  FenceRecordingDriver(MemoryStorageDriver& inner, ports::StateStore& store)
      : inner_(inner), store_(store) {}

  Result<void> CreateVolume(const ports::VolumeSpec& spec) override {
    return inner_.CreateVolume(spec);
  }

  Result<void> DeleteVolume(std::string_view volume_id,
                            std::string_view operation_id,
                            std::uint64_t fencing_token) override {
    return inner_.DeleteVolume(volume_id, operation_id, fencing_token);
  }

  Result<void> ExtendVolume(std::string_view volume_id,
                            std::int64_t new_size_gib,
                            std::string_view operation_id,
                            std::uint64_t fencing_token) override {
    return inner_.ExtendVolume(volume_id, new_size_gib, operation_id, fencing_token);
  }

  Result<void> CreateSnapshot(const ports::SnapshotSpec& spec) override {
    return inner_.CreateSnapshot(spec);
  }

  Result<void> DeleteSnapshot(std::string_view snapshot_id,
                              std::string_view operation_id,
                              std::uint64_t fencing_token) override {
    return inner_.DeleteSnapshot(snapshot_id, operation_id, fencing_token);
  }

  Result<ports::ConnectionInfo> InitializeConnection(std::string_view volume_id,
                                                     const ports::Connector& connector) override {
    return inner_.InitializeConnection(volume_id, connector);
  }

  Result<void> TerminateConnection(std::string_view volume_id,
                                   const ports::Connector& connector) override {
    return inner_.TerminateConnection(volume_id, connector);
  }

  Result<void> Fence(std::string_view resource_id, std::uint64_t fencing_token) override {
    FenceCall call{std::string(resource_id), fencing_token, inner_.Calls().size(), std::nullopt};
    for (ports::Table table : {ports::Table::kVolumes, ports::Table::kSnapshots}) {
      if (auto row = store_.Get(table, resource_id)) {
        call.row = *row;
      }
    }
    {
      std::lock_guard<std::mutex> guard(mutex_);
      fences_.push_back(std::move(call));
    }
    return inner_.Fence(resource_id, fencing_token);
  }

  Result<ports::BackendStats> GetStats() override { return inner_.GetStats(); }

  std::vector<FenceCall> Fences() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return fences_;
  }

 private:
  MemoryStorageDriver& inner_;
  ports::StateStore& store_;
  mutable std::mutex mutex_;
  std::vector<FenceCall> fences_;
};

// ---- The operations, and the rows each needs. ----

enum class Variant {
  kCreateBlank,
  kCreateClone,
  kCreateFromSnapshot,
  kDeleteVolume,
  kExtendVolume,
  kCreateSnapshot,
  kDeleteSnapshot,
};

constexpr Variant kAllVariants[] = {Variant::kCreateBlank,
                                    Variant::kCreateClone,
                                    Variant::kCreateFromSnapshot,
                                    Variant::kDeleteVolume,
                                    Variant::kExtendVolume,
                                    Variant::kCreateSnapshot,
                                    Variant::kDeleteSnapshot};

std::string_view VariantName(Variant variant) {
  switch (variant) {
    case Variant::kCreateBlank:
      return "CreateBlank";
    case Variant::kCreateClone:
      return "CreateClone";
    case Variant::kCreateFromSnapshot:
      return "CreateFromSnapshot";
    case Variant::kDeleteVolume:
      return "DeleteVolume";
    case Variant::kExtendVolume:
      return "ExtendVolume";
    case Variant::kCreateSnapshot:
      return "CreateSnapshot";
    case Variant::kDeleteSnapshot:
      return "DeleteSnapshot";
  }
  return "unknown";
}

Operation OperationOf(Variant variant) {
  switch (variant) {
    case Variant::kCreateBlank:
    case Variant::kCreateClone:
    case Variant::kCreateFromSnapshot:
      return Operation::kCreateVolume;
    case Variant::kDeleteVolume:
      return Operation::kDeleteVolume;
    case Variant::kExtendVolume:
      return Operation::kExtendVolume;
    case Variant::kCreateSnapshot:
      return Operation::kCreateSnapshot;
    case Variant::kDeleteSnapshot:
      return Operation::kDeleteSnapshot;
  }
  return Operation::kCreateVolume;
}

ResourceKind TargetKindOf(Variant variant) {
  return variant == Variant::kCreateSnapshot || variant == Variant::kDeleteSnapshot
             ? ResourceKind::kSnapshot
             : ResourceKind::kVolume;
}

bool HasSource(Variant variant) {
  return variant == Variant::kCreateClone || variant == Variant::kCreateFromSnapshot ||
         variant == Variant::kCreateSnapshot;
}

ResourceKind SourceKindOf(Variant variant) {
  return variant == Variant::kCreateFromSnapshot ? ResourceKind::kSnapshot : ResourceKind::kVolume;
}

ports::Table TableOf(ResourceKind kind) {
  return kind == ResourceKind::kVolume ? ports::Table::kVolumes : ports::Table::kSnapshots;
}

// The rows and back-end state one job works on.
struct Scene {
  Variant variant = Variant::kCreateBlank;
  std::string target_id;
  std::string source_id;  // What the job reads; empty when nothing.
  // The volume behind a snapshot: the snapshot's volume for a volume from a snapshot and for a
  // snapshot delete; the source itself for a snapshot create.
  std::string volume_id;
  std::string operation_id;  // The job's.
};

// Everything a test needs: adapters, the manager, and helpers to write rows and deliver jobs.
struct Harness {
  explicit Harness(std::chrono::milliseconds lock_timeout = std::chrono::milliseconds(50))
      : driver(memory, store), manager(store, locks, driver, clock, Options(lock_timeout)) {}

  VolumeManagerOptions Options(std::chrono::milliseconds lock_timeout) {
    VolumeManagerOptions options;
    options.lock_timeout = lock_timeout;
    options.final_write_attempts = 2;
    options.final_write_backoff = std::chrono::milliseconds(1);
    options.fault_point = [this](std::string_view point) {
      if (fault_hook) {
        fault_hook(point);
      }
    };
    return options;
  }

  // Writes a volume row as the API and earlier jobs would have left it.
  std::string InsertVolume(std::string_view status,
                           std::optional<std::string> operation_id,
                           const std::function<void(Volume&)>& adjust = nullptr,
                           std::optional<std::int64_t> pending_size_gib = std::nullopt) {
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = std::string(kProject);
    volume.user_id = "user";
    volume.size_gib = kSizeGib;
    volume.name = "vol";
    volume.availability_zone = "nova";
    volume.host = "h@memory#default";
    volume.operation_id = std::move(operation_id);
    volume.created_at = FormatTimestamp(clock.WallNow());
    volume.deleted = status == "deleted";
    if (adjust) {
      adjust(volume);
    }
    ports::Row row = VolumeToRow(volume);
    row["status"] = std::string(status);  // Any stored name, valid or not.
    if (pending_size_gib) {
      row["pending_size_gib"] = *pending_size_gib;
    }
    Result<void> inserted = store.Insert(ports::Table::kVolumes, row);
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    clock.Advance(std::chrono::seconds(1));
    return volume.id;
  }

  std::string InsertSnapshot(std::string_view status,
                             const std::string& volume_id,
                             std::optional<std::string> operation_id) {
    Snapshot snapshot;
    snapshot.id = NewUuid();
    snapshot.project_id = std::string(kProject);
    snapshot.user_id = "user";
    snapshot.volume_id = volume_id;
    snapshot.size_gib = kSizeGib;
    snapshot.name = "snap";
    snapshot.operation_id = std::move(operation_id);
    snapshot.created_at = FormatTimestamp(clock.WallNow());
    snapshot.deleted = status == "deleted";
    ports::Row row = SnapshotToRow(snapshot);
    row["status"] = std::string(status);
    Result<void> inserted = store.Insert(ports::Table::kSnapshots, row);
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    clock.Advance(std::chrono::seconds(1));
    return snapshot.id;
  }

  // A volume that exists on the back-end, as an earlier create left it.
  std::string BackedVolume(std::string_view status) {
    std::string id = InsertVolume(status, NewUuid());
    Result<void> created = memory.CreateVolume({id, kSizeGib, "setup-create", 0, {}});
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return id;
  }

  std::string BackedSnapshot(std::string_view status, const std::string& volume_id) {
    std::string id = InsertSnapshot(status, volume_id, NewUuid());
    Result<void> created = memory.CreateSnapshot({id, volume_id, "setup-snapshot", 0});
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return id;
  }

  // The target in `target_status` (with the job's operation id if `same_id`, another one
  // otherwise) and its source in `source_status`; the back-end holds whatever already exists.
  Scene Build(Variant variant,
              std::string_view target_status,
              bool same_id,
              std::string_view source_status = "available") {
    Scene scene;
    scene.variant = variant;
    scene.operation_id = NewUuid();
    std::optional<std::string> stored_id = same_id ? scene.operation_id : NewUuid();
    switch (variant) {
      case Variant::kCreateBlank:
        scene.target_id = InsertVolume(target_status, stored_id);
        break;
      case Variant::kCreateClone:
        scene.source_id = BackedVolume(source_status);
        scene.volume_id = scene.source_id;
        scene.target_id = InsertVolume(target_status, stored_id, [&](Volume& volume) {
          volume.source_volid = scene.source_id;
        });
        break;
      case Variant::kCreateFromSnapshot:
        scene.volume_id = BackedVolume("available");
        scene.source_id = BackedSnapshot(source_status, scene.volume_id);
        scene.target_id = InsertVolume(target_status, stored_id, [&](Volume& volume) {
          volume.snapshot_id = scene.source_id;
        });
        break;
      case Variant::kDeleteVolume:
        scene.target_id = InsertVolume(target_status, stored_id);
        EXPECT_TRUE(
            memory.CreateVolume({scene.target_id, kSizeGib, "setup-create", 0, {}}).has_value());
        break;
      case Variant::kExtendVolume:
        scene.target_id = InsertVolume(target_status, stored_id, nullptr, kExtendedSizeGib);
        EXPECT_TRUE(
            memory.CreateVolume({scene.target_id, kSizeGib, "setup-create", 0, {}}).has_value());
        break;
      case Variant::kCreateSnapshot:
        scene.source_id = BackedVolume(source_status);
        scene.volume_id = scene.source_id;
        scene.target_id = InsertSnapshot(target_status, scene.source_id, stored_id);
        break;
      case Variant::kDeleteSnapshot:
        scene.volume_id = BackedVolume("available");
        scene.target_id = InsertSnapshot(target_status, scene.volume_id, stored_id);
        EXPECT_TRUE(memory.CreateSnapshot({scene.target_id, scene.volume_id, "setup-snapshot", 0})
                        .has_value());
        break;
    }
    return scene;
  }

  static ports::Delivery DeliveryOf(const std::string& payload, bool redelivered) {
    ports::Delivery delivery;
    delivery.job_id = NewUuid();
    delivery.topic = "volume.h@memory";
    delivery.payload = payload;
    delivery.redelivered = redelivered;
    delivery.delivery_count = redelivered ? 2 : 1;
    return delivery;
  }

  static ports::Delivery JobFor(Operation operation,
                                const std::string& id,
                                const std::string& operation_id,
                                bool redelivered) {
    return DeliveryOf(JobMessage{operation, id, operation_id, std::string(kProject)}.ToJson(),
                      redelivered);
  }

  static ports::Delivery JobFor(const Scene& scene, bool redelivered) {
    return JobFor(OperationOf(scene.variant), scene.target_id, scene.operation_id, redelivered);
  }

  // Handle, marking where the job's driver calls start; no lock may outlive it.
  JobOutcome Run(const ports::Delivery& delivery) {
    calls_mark = memory.Calls().size();
    fences_mark = driver.Fences().size();
    JobOutcome outcome = manager.Handle(delivery);
    EXPECT_EQ(locks.HeldCount(), 0u) << "a lock outlived Handle";
    return outcome;
  }

  // The driver calls (Fence aside) and fences made by the last Run.
  std::vector<MemoryStorageDriver::Call> JobCalls() const {
    std::vector<MemoryStorageDriver::Call> calls = memory.Calls();
    return {calls.begin() + static_cast<std::ptrdiff_t>(calls_mark), calls.end()};
  }

  std::vector<FenceRecordingDriver::FenceCall> JobFences() const {
    std::vector<FenceRecordingDriver::FenceCall> fences = driver.Fences();
    return {fences.begin() + static_cast<std::ptrdiff_t>(fences_mark), fences.end()};
  }

  ports::Row Read(ResourceKind kind, const std::string& id) {
    auto row = store.Get(TableOf(kind), id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  ports::Row ReadTarget(const Scene& scene) {
    return Read(TargetKindOf(scene.variant), scene.target_id);
  }

  ports::Row ReadSource(const Scene& scene) {
    return Read(SourceKindOf(scene.variant), scene.source_id);
  }

  // Sets columns of a row as the API would (no expectations).
  void Update(ResourceKind kind, const std::string& id, const ports::Row& values) {
    auto updated = store.ConditionalUpdate(TableOf(kind), id, values, {}, {});
    ASSERT_TRUE(updated.has_value()) << updated.error().ToString();
    ASSERT_TRUE(updated->has_value());
  }

  MemoryStateStore store;
  MemoryLockManager locks;
  MemoryStorageDriver memory;
  FenceRecordingDriver driver;
  FakeClock clock;
  std::function<void(std::string_view)> fault_hook;
  VolumeManager manager;
  std::size_t calls_mark = 0;
  std::size_t fences_mark = 0;
};

// The one driver call a job that ran its operation made, as the scene asks for it.
void ExpectTheOperationsDriverCall(const Scene& scene, const MemoryStorageDriver::Call& call) {
  EXPECT_EQ(call.op, domain::OperationName(OperationOf(scene.variant)));
  EXPECT_EQ(call.operation_id, scene.operation_id);
  switch (scene.variant) {
    case Variant::kCreateBlank:
    case Variant::kCreateClone:
    case Variant::kCreateFromSnapshot: {
      EXPECT_EQ(call.volume_id, scene.target_id);
      EXPECT_EQ(call.size_gib, kSizeGib);
      const ports::VolumeSource::Kind kind =
          scene.variant == Variant::kCreateBlank   ? ports::VolumeSource::Kind::kNone
          : scene.variant == Variant::kCreateClone ? ports::VolumeSource::Kind::kVolume
                                                   : ports::VolumeSource::Kind::kSnapshot;
      EXPECT_EQ(call.source.kind, kind);
      EXPECT_EQ(call.source.id, scene.source_id);
      break;
    }
    case Variant::kDeleteVolume:
      EXPECT_EQ(call.volume_id, scene.target_id);
      break;
    case Variant::kExtendVolume:
      EXPECT_EQ(call.volume_id, scene.target_id);
      EXPECT_EQ(call.size_gib, kExtendedSizeGib);
      break;
    case Variant::kCreateSnapshot:
      EXPECT_EQ(call.snapshot_id, scene.target_id);
      EXPECT_EQ(call.volume_id, scene.source_id);
      break;
    case Variant::kDeleteSnapshot:
      EXPECT_EQ(call.snapshot_id, scene.target_id);
      break;
  }
}

// The back-end after the operation succeeded.
void ExpectBackEndDone(const Harness& harness, const Scene& scene) {
  switch (scene.variant) {
    case Variant::kCreateBlank:
    case Variant::kCreateClone:
    case Variant::kCreateFromSnapshot:
      EXPECT_EQ(harness.memory.VolumeSizeGib(scene.target_id), kSizeGib);
      break;
    case Variant::kDeleteVolume:
      EXPECT_FALSE(harness.memory.HasVolume(scene.target_id));
      break;
    case Variant::kExtendVolume:
      EXPECT_EQ(harness.memory.VolumeSizeGib(scene.target_id), kExtendedSizeGib);
      break;
    case Variant::kCreateSnapshot:
      EXPECT_TRUE(harness.memory.HasSnapshot(scene.target_id));
      break;
    case Variant::kDeleteSnapshot:
      EXPECT_FALSE(harness.memory.HasSnapshot(scene.target_id));
      break;
  }
}

// The back-end as the scene built it, the operation not applied.
void ExpectBackEndUntouched(const Harness& harness, const Scene& scene) {
  switch (scene.variant) {
    case Variant::kCreateBlank:
    case Variant::kCreateClone:
    case Variant::kCreateFromSnapshot:
      EXPECT_FALSE(harness.memory.HasVolume(scene.target_id));
      break;
    case Variant::kDeleteVolume:
      EXPECT_TRUE(harness.memory.HasVolume(scene.target_id));
      break;
    case Variant::kExtendVolume:
      EXPECT_EQ(harness.memory.VolumeSizeGib(scene.target_id), kSizeGib);
      break;
    case Variant::kCreateSnapshot:
      EXPECT_FALSE(harness.memory.HasSnapshot(scene.target_id));
      break;
    case Variant::kDeleteSnapshot:
      EXPECT_TRUE(harness.memory.HasSnapshot(scene.target_id));
      break;
  }
}

// The target row after the operation succeeded under the job's lock.
void ExpectTargetDone(const Scene& scene, const ports::Row& before, const ports::Row& after) {
  const Operation operation = OperationOf(scene.variant);
  const bool is_delete =
      operation == Operation::kDeleteVolume || operation == Operation::kDeleteSnapshot;
  EXPECT_EQ(TextColumn(after, "status"), domain::DoneStatusOf(operation)) << Dump(after);
  EXPECT_EQ(TextColumn(after, "status_reason"), std::nullopt) << Dump(after);
  EXPECT_EQ(TextColumn(after, "operation_id"), scene.operation_id) << Dump(after);
  EXPECT_EQ(IntegerColumn(after, "deleted"), is_delete ? 1 : 0) << Dump(after);
  EXPECT_EQ(TextColumn(after, "deleted_at").has_value(), is_delete) << Dump(after);
  EXPECT_GE(IntegerColumn(after, "fencing_token").value_or(0), 1) << Dump(after);
  if (scene.variant == Variant::kExtendVolume) {
    EXPECT_EQ(IntegerColumn(after, "size_gib"), kExtendedSizeGib) << Dump(after);
    EXPECT_EQ(IntegerColumn(after, "pending_size_gib"), std::nullopt) << Dump(after);
  } else {
    EXPECT_EQ(IntegerColumn(after, "size_gib"), kSizeGib) << Dump(after);
  }
  ExpectOnlyChanged(before,
                    after,
                    {"status",
                     "status_reason",
                     "operation_id",
                     "updated_at",
                     "fencing_token",
                     "deleted",
                     "deleted_at",
                     "size_gib",
                     "pending_size_gib",
                     // A finished snapshot create records 100%.
                     "progress"});
}

// ---- Rules for the target. ----

struct RuleCase {
  Variant variant;
  std::string_view status;  // The target's stored status when the job arrives.
  bool same_id;             // The stored operation id is the job's.
  int rule;                 // domain/stuck_job.h
  std::string_view left;    // The target's status afterwards.
};

void PrintTo(const RuleCase& rule_case, std::ostream* out) {
  *out << VariantName(rule_case.variant) << " on " << rule_case.status
       << (rule_case.same_id ? " (same id)" : " (other id)") << ": rule " << rule_case.rule;
}

constexpr bool kSame = true;
constexpr bool kOther = false;

std::vector<RuleCase> RuleCases() {
  std::vector<RuleCase> cases;
  for (Variant variant :
       {Variant::kCreateBlank, Variant::kCreateClone, Variant::kCreateFromSnapshot}) {
    const std::vector<RuleCase> create = {
        {variant, "creating_queued", kSame, 1, "available"},
        {variant, "creating_queued", kOther, 2, "creating_queued"},
        {variant, "deleting_queued", kOther, 4, "deleting_queued"},
        {variant, "extending_queued", kOther, 4, "extending_queued"},
        {variant, "deleting", kOther, 6, "deleting"},
        {variant, "creating", kSame, 7, "error"},
        {variant, "extending", kOther, 6, "extending"},
        {variant, "available", kSame, 9, "available"},
        {variant, "error", kSame, 9, "error"},
        {variant, "error_deleting", kOther, 9, "error_deleting"},
        {variant, "error_extending", kOther, 9, "error_extending"},
        {variant, "deleted", kSame, 11, "deleted"},
        {variant, "restoring_queued", kOther, 4, "restoring_queued"},
        {variant, "restoring", kOther, 7, "error_restoring"},
        {variant, "in-use", kSame, 9, "in-use"},
        {variant, "backing-up", kOther, 9, "backing-up"},
        {variant, "reserved", kOther, 9, "reserved"},
        {variant, "attaching", kOther, 9, "attaching"},
        {variant, "detaching", kOther, 9, "detaching"},
        {variant, "error_restoring", kSame, 9, "error_restoring"},
        {variant, "awaiting-transfer", kOther, 9, "awaiting-transfer"},
    };
    cases.insert(cases.end(), create.begin(), create.end());
  }
  // Statuses an admin set with os-reset_status (which also clears the operation id): at rest
  // whatever the API shows, so every job drops and leaves them as they are.
  for (Variant variant : {Variant::kCreateBlank,
                          Variant::kCreateClone,
                          Variant::kCreateFromSnapshot,
                          Variant::kDeleteVolume,
                          Variant::kExtendVolume}) {
    for (std::string_view status : {"creating_by_admin",
                                    "deleting_by_admin",
                                    "extending_by_admin",
                                    "restoring_by_admin",
                                    "maintenance"}) {
      cases.push_back({variant, status, kOther, 9, status});
    }
  }
  for (Variant variant : {Variant::kCreateSnapshot, Variant::kDeleteSnapshot}) {
    for (std::string_view status : {"creating_by_admin", "deleting_by_admin"}) {
      cases.push_back({variant, status, kOther, 9, status});
    }
    // A snapshot a backup reads: at rest, so a stray snapshot job drops and leaves it.
    cases.push_back({variant, "backing-up", kOther, 9, "backing-up"});
  }
  const std::vector<RuleCase> others = {
      {Variant::kDeleteVolume, "deleting_queued", kSame, 1, "deleted"},
      {Variant::kDeleteVolume, "deleting_queued", kOther, 2, "deleting_queued"},
      {Variant::kDeleteVolume, "creating_queued", kOther, 4, "creating_queued"},
      {Variant::kDeleteVolume, "extending_queued", kOther, 4, "extending_queued"},
      {Variant::kDeleteVolume, "deleting", kSame, 5, "deleted"},
      {Variant::kDeleteVolume, "deleting", kOther, 5, "deleted"},
      {Variant::kDeleteVolume, "creating", kOther, 7, "error"},
      {Variant::kDeleteVolume, "extending", kOther, 6, "extending"},
      {Variant::kDeleteVolume, "available", kSame, 9, "available"},
      {Variant::kDeleteVolume, "error", kOther, 9, "error"},
      {Variant::kDeleteVolume, "error_deleting", kSame, 9, "error_deleting"},
      {Variant::kDeleteVolume, "error_extending", kOther, 9, "error_extending"},
      {Variant::kDeleteVolume, "deleted", kSame, 11, "deleted"},
      {Variant::kDeleteVolume, "restoring_queued", kOther, 4, "restoring_queued"},
      {Variant::kDeleteVolume, "restoring", kOther, 7, "error_restoring"},
      {Variant::kDeleteVolume, "in-use", kOther, 9, "in-use"},
      {Variant::kDeleteVolume, "reserved", kOther, 9, "reserved"},
      {Variant::kDeleteVolume, "attaching", kOther, 9, "attaching"},
      {Variant::kDeleteVolume, "detaching", kOther, 9, "detaching"},
      {Variant::kDeleteVolume, "backing-up", kOther, 9, "backing-up"},
      {Variant::kDeleteVolume, "error_restoring", kSame, 9, "error_restoring"},
      {Variant::kDeleteVolume, "awaiting-transfer", kOther, 9, "awaiting-transfer"},

      {Variant::kExtendVolume, "extending_queued", kSame, 1, "available"},
      {Variant::kExtendVolume, "extending_queued", kOther, 2, "extending_queued"},
      {Variant::kExtendVolume, "creating_queued", kOther, 4, "creating_queued"},
      {Variant::kExtendVolume, "deleting_queued", kOther, 4, "deleting_queued"},
      {Variant::kExtendVolume, "deleting", kOther, 6, "deleting"},
      {Variant::kExtendVolume, "extending", kSame, 5, "available"},
      {Variant::kExtendVolume, "extending", kOther, 5, "available"},
      {Variant::kExtendVolume, "creating", kOther, 7, "error"},
      {Variant::kExtendVolume, "available", kSame, 9, "available"},
      {Variant::kExtendVolume, "error", kOther, 9, "error"},
      {Variant::kExtendVolume, "error_deleting", kOther, 9, "error_deleting"},
      {Variant::kExtendVolume, "error_extending", kSame, 9, "error_extending"},
      {Variant::kExtendVolume, "deleted", kOther, 11, "deleted"},
      {Variant::kExtendVolume, "restoring_queued", kOther, 4, "restoring_queued"},
      {Variant::kExtendVolume, "restoring", kOther, 7, "error_restoring"},
      {Variant::kExtendVolume, "in-use", kSame, 9, "in-use"},
      {Variant::kExtendVolume, "backing-up", kOther, 9, "backing-up"},
      {Variant::kExtendVolume, "reserved", kOther, 9, "reserved"},
      {Variant::kExtendVolume, "attaching", kOther, 9, "attaching"},
      {Variant::kExtendVolume, "detaching", kOther, 9, "detaching"},
      {Variant::kExtendVolume, "error_restoring", kSame, 9, "error_restoring"},
      {Variant::kExtendVolume, "awaiting-transfer", kOther, 9, "awaiting-transfer"},

      {Variant::kCreateSnapshot, "creating_queued", kSame, 1, "available"},
      {Variant::kCreateSnapshot, "creating_queued", kOther, 2, "creating_queued"},
      {Variant::kCreateSnapshot, "deleting_queued", kOther, 4, "deleting_queued"},
      {Variant::kCreateSnapshot, "deleting", kOther, 6, "deleting"},
      {Variant::kCreateSnapshot, "creating", kSame, 7, "error"},
      {Variant::kCreateSnapshot, "available", kSame, 9, "available"},
      {Variant::kCreateSnapshot, "error", kSame, 9, "error"},
      {Variant::kCreateSnapshot, "error_deleting", kOther, 9, "error_deleting"},
      {Variant::kCreateSnapshot, "deleted", kSame, 11, "deleted"},

      {Variant::kDeleteSnapshot, "deleting_queued", kSame, 1, "deleted"},
      {Variant::kDeleteSnapshot, "deleting_queued", kOther, 2, "deleting_queued"},
      {Variant::kDeleteSnapshot, "creating_queued", kOther, 4, "creating_queued"},
      {Variant::kDeleteSnapshot, "deleting", kSame, 5, "deleted"},
      {Variant::kDeleteSnapshot, "deleting", kOther, 5, "deleted"},
      {Variant::kDeleteSnapshot, "creating", kOther, 7, "error"},
      {Variant::kDeleteSnapshot, "available", kSame, 9, "available"},
      {Variant::kDeleteSnapshot, "error", kOther, 9, "error"},
      {Variant::kDeleteSnapshot, "error_deleting", kSame, 9, "error_deleting"},
      {Variant::kDeleteSnapshot, "deleted", kSame, 11, "deleted"},
  };
  cases.insert(cases.end(), others.begin(), others.end());
  return cases;
}

std::string Join(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) {
    out += part;
  }
  return out;
}

// A status as part of a test name, which admits only letters, digits and '_'.
std::string NamePart(std::string_view status) {
  std::string out(status);
  std::replace(out.begin(), out.end(), '-', '_');
  return out;
}

std::string DeliveryName(bool redelivered) {
  return redelivered ? "Redelivery" : "FirstDelivery";
}

class TargetRuleTest : public ::testing::TestWithParam<std::tuple<RuleCase, bool>> {
 protected:
  const RuleCase& Case() const { return std::get<0>(GetParam()); }

  bool Redelivered() const { return std::get<1>(GetParam()); }

  Harness harness_;
};

INSTANTIATE_TEST_SUITE_P(
    Rules,
    TargetRuleTest,
    ::testing::Combine(::testing::ValuesIn(RuleCases()), ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<RuleCase, bool>>& param_info) {
      const RuleCase& rule_case = std::get<0>(param_info.param);
      return std::string(VariantName(rule_case.variant)) + "_" + NamePart(rule_case.status) +
             (rule_case.same_id ? "_SameId_" : "_OtherId_") + "Rule" +
             std::to_string(rule_case.rule) + "_" + DeliveryName(std::get<1>(param_info.param));
    });

TEST_P(TargetRuleTest, LeavesTheRowTheBackEndAndTheFencesAsTheRuleSays) {
  const RuleCase& rule_case = Case();
  Scene scene = harness_.Build(rule_case.variant, rule_case.status, rule_case.same_id);
  const ports::Row before = harness_.ReadTarget(scene);
  const std::optional<ports::Row> source_before =
      HasSource(scene.variant) ? std::optional(harness_.ReadSource(scene)) : std::nullopt;

  EXPECT_EQ(harness_.Run(Harness::JobFor(scene, Redelivered())), JobOutcome::kDone);

  const ports::Row after = harness_.ReadTarget(scene);
  const std::vector<MemoryStorageDriver::Call> calls = harness_.JobCalls();
  const std::vector<FenceRecordingDriver::FenceCall> fences = harness_.JobFences();
  EXPECT_EQ(TextColumn(after, "status"), rule_case.left) << Dump(after);
  if (source_before) {
    const ports::Row source_after = harness_.ReadSource(scene);
    EXPECT_TRUE(source_after == *source_before) << "the source changed: " << Dump(source_after);
  }

  // A takeover (the target found in progress) fences the target first: no status written and
  // no driver call made yet.
  const bool takeover = rule_case.rule == 5 || rule_case.rule == 6 || rule_case.rule == 7;
  ASSERT_EQ(fences.size(), takeover ? 1u : 0u);
  if (takeover) {
    EXPECT_EQ(fences[0].id, scene.target_id);
    EXPECT_GE(fences[0].token, 1u);
    EXPECT_EQ(fences[0].driver_calls_before, harness_.calls_mark) << "a driver call came first";
    ASSERT_TRUE(fences[0].row.has_value());
    EXPECT_TRUE(*fences[0].row == before)
        << "the row changed before the fence: " << Dump(*fences[0].row);
  }

  switch (rule_case.rule) {
    case 1:
    case 5:  // Proceed, or redo: the operation runs to its end.
      ASSERT_EQ(calls.size(), 1u);
      ExpectTheOperationsDriverCall(scene, calls[0]);
      EXPECT_TRUE(calls[0].succeeded);
      ExpectBackEndDone(harness_, scene);
      ExpectTargetDone(scene, before, after);
      if (takeover) {
        EXPECT_EQ(IntegerColumn(after, "fencing_token"), static_cast<std::int64_t>(fences[0].token))
            << "the job wrote under another token than it fenced with";
      }
      break;
    case 2:
    case 4:
    case 6:
    case 9:
    case 11:  // Dropped, or failed: nothing changes.
      EXPECT_TRUE(calls.empty()) << calls.size() << " driver calls, first " << calls[0].op;
      EXPECT_TRUE(after == before) << "before: " << Dump(before) << "\nafter:  " << Dump(after);
      ExpectBackEndUntouched(harness_, scene);
      break;
    case 7: {  // Interrupted and not redoable: the failed status of that operation, with a reason.
      EXPECT_TRUE(calls.empty()) << calls.size() << " driver calls, first " << calls[0].op;
      const std::optional<std::string> reason = TextColumn(after, "status_reason");
      ASSERT_TRUE(reason.has_value()) << Dump(after);
      EXPECT_NE(reason->find("interrupted while " + std::string(rule_case.status)),
                std::string::npos)
          << *reason;
      EXPECT_EQ(IntegerColumn(after, "fencing_token"), static_cast<std::int64_t>(fences[0].token));
      ExpectOnlyChanged(before, after, {"status", "status_reason", "updated_at", "fencing_token"});
      ExpectBackEndUntouched(harness_, scene);
      break;
    }
    default:
      ADD_FAILURE() << "no expectations for rule " << rule_case.rule;
  }
}

// Every operation has a case for every rule that can apply to its target, so a new operation,
// status or row fails here until it gets its cases. Rule 5 needs a redoable operation of the
// job's own kind in progress, rule 6 a redoable one of another kind (a snapshot has none).
TEST(TargetRuleCoverageTest, EveryOperationMeetsEveryRuleThatCanApplyToItsTarget) {
  const std::map<Variant, std::set<int>> expected = {
      {Variant::kCreateBlank, {1, 2, 4, 6, 7, 9, 11}},
      {Variant::kCreateClone, {1, 2, 4, 6, 7, 9, 11}},
      {Variant::kCreateFromSnapshot, {1, 2, 4, 6, 7, 9, 11}},
      {Variant::kDeleteVolume, {1, 2, 4, 5, 6, 7, 9, 11}},
      {Variant::kExtendVolume, {1, 2, 4, 5, 6, 7, 9, 11}},
      {Variant::kCreateSnapshot, {1, 2, 4, 6, 7, 9, 11}},
      {Variant::kDeleteSnapshot, {1, 2, 4, 5, 7, 9, 11}},
  };
  for (Variant variant : kAllVariants) {
    std::set<int> rules;
    std::set<std::string_view> statuses;
    for (const RuleCase& rule_case : RuleCases()) {
      if (rule_case.variant == variant) {
        rules.insert(rule_case.rule);
        statuses.insert(rule_case.status);
      }
    }
    EXPECT_EQ(rules, expected.at(variant)) << VariantName(variant);
    // Every status of the target's kind is met at least once.
    const ResourceKind kind = TargetKindOf(variant);
    const std::size_t status_count = kind == ResourceKind::kVolume
                                         ? domain::AllVolumeStatuses().size()
                                         : domain::AllSnapshotStatuses().size();
    EXPECT_EQ(statuses.size(), status_count) << VariantName(variant) << ": a status has no case";
  }
}

// ---- Rules for the source (reads). ----

struct SourceCase {
  Variant variant;
  std::string_view source_status;
  int rule;
  std::string_view target_left;
  std::string_view source_left;
};

void PrintTo(const SourceCase& source_case, std::ostream* out) {
  *out << VariantName(source_case.variant) << " of a source " << source_case.source_status
       << ": rule " << source_case.rule;
}

std::vector<SourceCase> SourceCases() {
  using V = Variant;
  return {
      {V::kCreateClone, "available", 10, "available", "available"},
      {V::kCreateClone, "error", 10, "available", "error"},
      {V::kCreateClone, "deleting_queued", 3, "available", "deleting_queued"},
      {V::kCreateClone, "extending_queued", 3, "available", "extending_queued"},
      {V::kCreateClone, "deleting", 6, "error", "deleting"},
      {V::kCreateClone, "creating", 8, "available", "error"},
      {V::kCreateClone, "extending", 6, "error", "extending"},
      {V::kCreateClone, "deleted", 12, "error", "deleted"},
      {V::kCreateClone, "in-use", 10, "available", "in-use"},
      {V::kCreateClone, "backing-up", 10, "available", "backing-up"},
      {V::kCreateClone, "restoring_queued", 3, "available", "restoring_queued"},
      {V::kCreateClone, "restoring", 8, "available", "error_restoring"},

      {V::kCreateFromSnapshot, "available", 10, "available", "available"},
      {V::kCreateFromSnapshot, "deleting_queued", 3, "available", "deleting_queued"},
      {V::kCreateFromSnapshot, "deleting", 6, "error", "deleting"},
      {V::kCreateFromSnapshot, "creating", 8, "available", "error"},
      {V::kCreateFromSnapshot, "deleted", 12, "error", "deleted"},

      {V::kCreateSnapshot, "available", 10, "available", "available"},
      {V::kCreateSnapshot, "deleting_queued", 3, "available", "deleting_queued"},
      {V::kCreateSnapshot, "extending_queued", 3, "available", "extending_queued"},
      {V::kCreateSnapshot, "deleting", 6, "error", "deleting"},
      {V::kCreateSnapshot, "creating", 8, "available", "error"},
      {V::kCreateSnapshot, "extending", 6, "error", "extending"},
      {V::kCreateSnapshot, "deleted", 12, "error", "deleted"},
      {V::kCreateSnapshot, "in-use", 10, "available", "in-use"},
      {V::kCreateSnapshot, "restoring", 8, "available", "error_restoring"},
  };
}

class SourceRuleTest : public ::testing::TestWithParam<std::tuple<SourceCase, bool>> {
 protected:
  const SourceCase& Case() const { return std::get<0>(GetParam()); }

  bool Redelivered() const { return std::get<1>(GetParam()); }

  Harness harness_;
};

INSTANTIATE_TEST_SUITE_P(
    Rules,
    SourceRuleTest,
    ::testing::Combine(::testing::ValuesIn(SourceCases()), ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<SourceCase, bool>>& param_info) {
      const SourceCase& source_case = std::get<0>(param_info.param);
      return std::string(VariantName(source_case.variant)) + "_Source_" +
             NamePart(source_case.source_status) + "_Rule" + std::to_string(source_case.rule) +
             "_" + DeliveryName(std::get<1>(param_info.param));
    });

TEST_P(SourceRuleTest, LeavesTheTargetAndTheSourceAsTheReadRuleSays) {
  const SourceCase& source_case = Case();
  Scene scene =
      harness_.Build(source_case.variant, "creating_queued", kSame, source_case.source_status);
  const ports::Row target_before = harness_.ReadTarget(scene);
  const ports::Row source_before = harness_.ReadSource(scene);

  EXPECT_EQ(harness_.Run(Harness::JobFor(scene, Redelivered())), JobOutcome::kDone);

  const ports::Row target_after = harness_.ReadTarget(scene);
  const ports::Row source_after = harness_.ReadSource(scene);
  const std::vector<MemoryStorageDriver::Call> calls = harness_.JobCalls();
  EXPECT_EQ(TextColumn(target_after, "status"), source_case.target_left) << Dump(target_after);
  EXPECT_EQ(TextColumn(source_after, "status"), source_case.source_left) << Dump(source_after);
  EXPECT_TRUE(harness_.JobFences().empty()) << "nothing was found in progress on the target";

  switch (source_case.rule) {
    case 3:
    case 10:  // The source is read as it is, and not changed.
      EXPECT_TRUE(source_after == source_before) << Dump(source_after);
      ASSERT_EQ(calls.size(), 1u);
      ExpectTheOperationsDriverCall(scene, calls[0]);
      ExpectTargetDone(scene, target_before, target_after);
      ExpectBackEndDone(harness_, scene);
      break;
    case 6:
    case 12: {  // The source cannot be read: the target fails with a reason naming it.
      EXPECT_TRUE(source_after == source_before) << Dump(source_after);
      EXPECT_TRUE(calls.empty()) << calls.size() << " driver calls";
      const std::optional<std::string> reason = TextColumn(target_after, "status_reason");
      ASSERT_TRUE(reason.has_value()) << Dump(target_after);
      EXPECT_NE(reason->find(scene.source_id), std::string::npos) << *reason;
      EXPECT_GE(IntegerColumn(target_after, "fencing_token").value_or(0), 1);
      ExpectOnlyChanged(
          target_before, target_after, {"status", "status_reason", "updated_at", "fencing_token"});
      ExpectBackEndUntouched(harness_, scene);
      break;
    }
    case 8: {  // The source's writer died: the source is marked, then read.
      const std::optional<std::string> reason = TextColumn(source_after, "status_reason");
      ASSERT_TRUE(reason.has_value()) << Dump(source_after);
      EXPECT_NE(reason->find("interrupted while " + std::string(source_case.source_status)),
                std::string::npos)
          << *reason;
      EXPECT_GE(IntegerColumn(source_after, "fencing_token").value_or(0), 1);
      ExpectOnlyChanged(
          source_before, source_after, {"status", "status_reason", "updated_at", "fencing_token"});
      ASSERT_EQ(calls.size(), 1u);
      ExpectTheOperationsDriverCall(scene, calls[0]);
      ExpectTargetDone(scene, target_before, target_after);
      ExpectBackEndDone(harness_, scene);
      break;
    }
    default:
      ADD_FAILURE() << "no expectations for rule " << source_case.rule;
  }
}

// Forwards to a MemoryLockManager, running a hook before each Acquire (e.g. to take a lock away
// from the job at a precise moment).
class HookedLocks final : public ports::LockManager {
 public:
  explicit HookedLocks(MemoryLockManager& inner) : inner_(inner) {}

  Result<ports::LockPtr> Acquire(const ports::LockRequest& request,
                                 std::chrono::milliseconds timeout) override {
    if (before_acquire) {
      before_acquire(request);
    }
    return inner_.Acquire(request, timeout);
  }

  Result<ports::LockPtr> TryAcquire(const ports::LockRequest& request) override {
    return inner_.TryAcquire(request);
  }

  void SetLostCallback(ports::LockLostCallback callback) override {
    inner_.SetLostCallback(std::move(callback));
  }

  std::function<void(const ports::LockRequest&)> before_acquire;

 private:
  MemoryLockManager& inner_;
};

// The target's lock is lost while the job waits for its source's lock (volume_manager.h: "once
// it is, the job stops at once (no further write) and goes back to the queue"). Disabled:
// CheckSource's fail_target returns JobOutcome::kDone whether or not its status write happened,
// so the job is acked although the lock was lost and the target is still creating_queued (only
// the requeue sweeper would publish it again). Run with --gtest_also_run_disabled_tests.
TEST(SourceLockTest, TargetLockLostWhileReadingAnUnusableSourceGivesTheJobBack) {
  Harness harness;
  Scene scene = harness.Build(Variant::kCreateClone, "creating_queued", kSame, "deleted");
  HookedLocks hooked(harness.locks);
  hooked.before_acquire = [&](const ports::LockRequest& request) {
    if (request.mode == ports::LockMode::kShared) {
      EXPECT_EQ(harness.locks.ExpireForTest(VolumeLockName(scene.target_id)), 1u);
    }
  };
  VolumeManager manager(
      harness.store, hooked, harness.driver, harness.clock, harness.Options(kWaitBound));
  const ports::Row before = harness.ReadTarget(scene);

  EXPECT_EQ(manager.Handle(Harness::JobFor(scene, false)), JobOutcome::kRetryLater);

  const ports::Row after = harness.ReadTarget(scene);
  EXPECT_TRUE(after == before) << "a job that lost its lock wrote: " << Dump(after);
}

// The same loss with a usable source: the job writes nothing to its target and goes back.
TEST(SourceLockTest, TargetLockLostWhileReadingAUsableSourceGivesTheJobBack) {
  Harness harness;
  Scene scene = harness.Build(Variant::kCreateClone, "creating_queued", kSame, "available");
  HookedLocks hooked(harness.locks);
  hooked.before_acquire = [&](const ports::LockRequest& request) {
    if (request.mode == ports::LockMode::kShared) {
      EXPECT_EQ(harness.locks.ExpireForTest(VolumeLockName(scene.target_id)), 1u);
    }
  };
  VolumeManager manager(
      harness.store, hooked, harness.driver, harness.clock, harness.Options(kWaitBound));
  const ports::Row before = harness.ReadTarget(scene);
  const std::size_t calls_before = harness.memory.Calls().size();

  EXPECT_EQ(manager.Handle(Harness::JobFor(scene, false)), JobOutcome::kRetryLater);

  const ports::Row after = harness.ReadTarget(scene);
  EXPECT_TRUE(after == before) << "a job that lost its lock wrote: " << Dump(after);
  EXPECT_EQ(harness.memory.Calls().size(), calls_before) << "a job that lost its lock ran";
}

TEST(SourceRuleCoverageTest, EveryReadingOperationMeetsEveryReadRule) {
  for (Variant variant : kAllVariants) {
    if (!HasSource(variant)) {
      continue;
    }
    std::set<int> rules;
    for (const SourceCase& source_case : SourceCases()) {
      if (source_case.variant == variant) {
        rules.insert(source_case.rule);
      }
    }
    EXPECT_EQ(rules, (std::set<int>{3, 6, 8, 10, 12})) << VariantName(variant);
  }
}

class DeliveryTest : public ::testing::TestWithParam<bool> {
 protected:
  Harness harness_;
};

INSTANTIATE_TEST_SUITE_P(Delivery,
                         DeliveryTest,
                         ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return DeliveryName(param_info.param);
                         });

TEST_P(DeliveryTest, CloneOfAMissingSourceFailsTheNewVolume) {
  const std::string source_id = NewUuid();
  const std::string operation_id = NewUuid();
  const std::string id = harness_.InsertVolume(
      "creating_queued", operation_id, [&](Volume& volume) { volume.source_volid = source_id; });

  EXPECT_EQ(harness_.Run(Harness::JobFor(Operation::kCreateVolume, id, operation_id, GetParam())),
            JobOutcome::kDone);

  const ports::Row row = harness_.Read(ResourceKind::kVolume, id);
  EXPECT_EQ(TextColumn(row, "status"), "error") << Dump(row);
  const std::optional<std::string> reason = TextColumn(row, "status_reason");
  ASSERT_TRUE(reason.has_value()) << Dump(row);
  EXPECT_NE(reason->find(source_id), std::string::npos) << *reason;
  EXPECT_TRUE(harness_.JobCalls().empty());
}

// ---- Driver failures. ----

TEST_P(DeliveryTest, EachOperationsDriverFailureSetsItsFailedStatusWithTheDriversMessage) {
  for (Variant variant : kAllVariants) {
    SCOPED_TRACE(std::string(VariantName(variant)));
    const Operation operation = OperationOf(variant);
    Scene scene = harness_.Build(variant, domain::QueuedStatusOf(operation), kSame);
    const ports::Row before = harness_.ReadTarget(scene);
    const std::string message = "back-end refused " + std::string(VariantName(variant));
    harness_.memory.FailNext(ErrorCode::kDriverFailed, message);

    EXPECT_EQ(harness_.Run(Harness::JobFor(scene, GetParam())), JobOutcome::kDone);

    const ports::Row after = harness_.ReadTarget(scene);
    EXPECT_EQ(TextColumn(after, "status"), domain::FailedStatusOf(operation)) << Dump(after);
    EXPECT_EQ(TextColumn(after, "status_reason"), message) << Dump(after);
    EXPECT_EQ(TextColumn(after, "operation_id"), scene.operation_id) << Dump(after);
    EXPECT_EQ(IntegerColumn(after, "deleted"), 0) << Dump(after);
    EXPECT_EQ(IntegerColumn(after, "size_gib"), kSizeGib) << Dump(after);
    EXPECT_EQ(IntegerColumn(after, "pending_size_gib"), std::nullopt) << Dump(after);
    ExpectOnlyChanged(before,
                      after,
                      {"status",
                       "status_reason",
                       "operation_id",
                       "updated_at",
                       "fencing_token",
                       "pending_size_gib"});
    const std::vector<MemoryStorageDriver::Call> calls = harness_.JobCalls();
    ASSERT_EQ(calls.size(), 1u);
    ExpectTheOperationsDriverCall(scene, calls[0]);
    EXPECT_FALSE(calls[0].succeeded);
    ExpectBackEndUntouched(harness_, scene);
  }
}

TEST_P(DeliveryTest, ExtendSetsTheSizeToThePendingSizeAndClearsIt) {
  Scene scene = harness_.Build(Variant::kExtendVolume, "extending_queued", kSame);
  ASSERT_EQ(IntegerColumn(harness_.ReadTarget(scene), "pending_size_gib"), kExtendedSizeGib);

  EXPECT_EQ(harness_.Run(Harness::JobFor(scene, GetParam())), JobOutcome::kDone);

  const ports::Row row = harness_.ReadTarget(scene);
  EXPECT_EQ(TextColumn(row, "status"), "available") << Dump(row);
  EXPECT_EQ(IntegerColumn(row, "size_gib"), kExtendedSizeGib) << Dump(row);
  EXPECT_EQ(IntegerColumn(row, "pending_size_gib"), std::nullopt) << Dump(row);
  EXPECT_EQ(harness_.memory.VolumeSizeGib(scene.target_id), kExtendedSizeGib);
}

// ---- Locks. ----

// While the driver runs: the target's lock admits nobody else (exclusive); the source's admits
// other readers (shared) but no writer.
TEST_P(DeliveryTest, TargetLockIsExclusiveAndSourceLockIsShared) {
  for (Variant variant : kAllVariants) {
    SCOPED_TRACE(std::string(VariantName(variant)));
    const Operation operation = OperationOf(variant);
    Scene scene = harness_.Build(variant, domain::QueuedStatusOf(operation), kSame);
    const std::string target_lock = ResourceLockName(TargetKindOf(variant), scene.target_id);
    const std::string source_lock =
        HasSource(variant) ? ResourceLockName(SourceKindOf(variant), scene.source_id) : "";
    bool hook_ran = false;
    std::optional<ErrorCode> target_reader;
    std::optional<ErrorCode> source_reader;
    std::optional<ErrorCode> source_writer;
    auto error_of = [](const Result<ports::LockPtr>& lock) -> std::optional<ErrorCode> {
      return lock ? std::nullopt : std::optional(lock.error().code);
    };
    harness_.memory.OnCall([&](const MemoryStorageDriver::Call&) {
      hook_ran = true;
      target_reader = error_of(harness_.locks.TryAcquire(ports::LockRequest::Shared(target_lock)));
      if (!source_lock.empty()) {
        source_reader =
            error_of(harness_.locks.TryAcquire(ports::LockRequest::Shared(source_lock)));
        source_writer =
            error_of(harness_.locks.TryAcquire(ports::LockRequest::Exclusive(source_lock)));
      }
    });

    EXPECT_EQ(harness_.Run(Harness::JobFor(scene, GetParam())), JobOutcome::kDone);
    harness_.memory.OnCall(nullptr);

    ASSERT_TRUE(hook_ran) << "the driver was not called";
    EXPECT_EQ(target_reader, ErrorCode::kBusy) << "a reader got the target's lock";
    if (!source_lock.empty()) {
      EXPECT_EQ(source_reader, std::nullopt) << "another reader was kept off the source";
      EXPECT_EQ(source_writer, ErrorCode::kBusy) << "a writer got the source's lock";
    }
    EXPECT_EQ(TextColumn(harness_.ReadTarget(scene), "status"), domain::DoneStatusOf(operation));
  }
}

// Polls (bounded) until a writer waits for `name`: with writer preference, a shared TryAcquire is
// then refused although only readers hold the lock.
bool WaitUntilAWriterWaits(MemoryLockManager& locks, const std::string& name) {
  for (int attempt = 0; attempt < 20000; ++attempt) {
    auto probe = locks.TryAcquire(ports::LockRequest::Shared(name));
    if (!probe) {
      return true;
    }
    (*probe)->Release();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

TEST(VolumeManagerLockTest, TwoClonesOfOneSourceRunAtOnceAndADeleteOfTheSourceWaitsForBoth) {
  Harness harness(kWaitBound);
  const std::string source_id = harness.BackedVolume("available");
  std::vector<std::string> clone_ids;
  std::vector<std::string> clone_operations;
  for (int i = 0; i < 2; ++i) {
    clone_operations.push_back(NewUuid());
    clone_ids.push_back(
        harness.InsertVolume("creating_queued", clone_operations.back(), [&](Volume& volume) {
          volume.source_volid = source_id;
        }));
  }
  Arrivals clones_inside;
  Gate release_clones;
  std::mutex seen_mutex;
  std::optional<int> clones_done_when_delete_ran;
  harness.memory.OnCall([&](const MemoryStorageDriver::Call& call) {
    if (call.op == "create_volume") {
      clones_inside.Arrive();
      EXPECT_TRUE(release_clones.Wait()) << "the clones were never released";
    } else if (call.op == "delete_volume") {
      // Calls are recorded when they return: both clones' calls must be there already.
      std::lock_guard<std::mutex> guard(seen_mutex);
      clones_done_when_delete_ran = harness.memory.CallCountForOperation(clone_operations[0]) +
                                    harness.memory.CallCountForOperation(clone_operations[1]);
    }
  });

  std::vector<JobOutcome> outcomes(3, JobOutcome::kRetryLater);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      outcomes[i] = harness.manager.Handle(
          Harness::JobFor(Operation::kCreateVolume, clone_ids[i], clone_operations[i], false));
    });
  }
  const bool both_inside = clones_inside.WaitFor(2);
  EXPECT_TRUE(both_inside) << "only " << clones_inside.Count()
                           << " clone(s) reached the driver: the source lock is not shared";
  if (both_inside) {
    // The user deletes the source meanwhile; the API queues the delete.
    const std::string delete_operation = NewUuid();
    harness.Update(
        ResourceKind::kVolume,
        source_id,
        {{"status", std::string("deleting_queued")}, {"operation_id", delete_operation}});
    threads.emplace_back([&] {
      outcomes[2] = harness.manager.Handle(
          Harness::JobFor(Operation::kDeleteVolume, source_id, delete_operation, false));
    });
    EXPECT_TRUE(WaitUntilAWriterWaits(harness.locks, VolumeLockName(source_id)))
        << "the delete never queued for the source's lock";
    EXPECT_EQ(harness.memory.CallCount("delete_volume"), 0)
        << "the delete reached the driver while the clones read the source";
    EXPECT_EQ(clones_inside.Count(), 2);
  }
  release_clones.Open();
  for (std::thread& thread : threads) {
    thread.join();
  }
  harness.memory.OnCall(nullptr);

  ASSERT_TRUE(both_inside);
  for (JobOutcome outcome : outcomes) {
    EXPECT_EQ(outcome, JobOutcome::kDone);
  }
  EXPECT_EQ(clones_done_when_delete_ran, 2) << "the delete ran before both clones returned";
  std::vector<std::string> order;
  for (const MemoryStorageDriver::Call& call : harness.memory.Calls()) {
    if (call.operation_id != "setup-create") {
      order.push_back(call.op);
    }
  }
  EXPECT_EQ(order, (std::vector<std::string>{"create_volume", "create_volume", "delete_volume"}));
  for (const std::string& id : clone_ids) {
    EXPECT_EQ(TextColumn(harness.Read(ResourceKind::kVolume, id), "status"), "available");
    EXPECT_TRUE(harness.memory.HasVolume(id));
  }
  EXPECT_EQ(TextColumn(harness.Read(ResourceKind::kVolume, source_id), "status"), "deleted");
  EXPECT_FALSE(harness.memory.HasVolume(source_id));
  EXPECT_EQ(harness.locks.HeldCount(), 0u);
}

TEST(VolumeManagerLockTest, AnExtendOfAVolumeWaitsForASnapshotOfIt) {
  Harness harness(kWaitBound);
  const std::string volume_id = harness.BackedVolume("available");
  const std::string snapshot_operation = NewUuid();
  const std::string snapshot_id =
      harness.InsertSnapshot("creating_queued", volume_id, snapshot_operation);
  Arrivals snapshot_inside;
  Gate release_snapshot;
  std::mutex seen_mutex;
  std::optional<bool> snapshot_existed_when_extend_ran;
  harness.memory.OnCall([&](const MemoryStorageDriver::Call& call) {
    if (call.op == "create_snapshot") {
      snapshot_inside.Arrive();
      EXPECT_TRUE(release_snapshot.Wait()) << "the snapshot was never released";
    } else if (call.op == "extend_volume") {
      std::lock_guard<std::mutex> guard(seen_mutex);
      snapshot_existed_when_extend_ran = harness.memory.HasSnapshot(snapshot_id);
    }
  });

  std::vector<JobOutcome> outcomes(2, JobOutcome::kRetryLater);
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    outcomes[0] = harness.manager.Handle(
        Harness::JobFor(Operation::kCreateSnapshot, snapshot_id, snapshot_operation, false));
  });
  const bool inside = snapshot_inside.WaitFor(1);
  EXPECT_TRUE(inside) << "the snapshot never reached the driver";
  if (inside) {
    const std::string extend_operation = NewUuid();
    harness.Update(ResourceKind::kVolume,
                   volume_id,
                   {{"status", std::string("extending_queued")},
                    {"operation_id", extend_operation},
                    {"pending_size_gib", kExtendedSizeGib}});
    threads.emplace_back([&] {
      outcomes[1] = harness.manager.Handle(
          Harness::JobFor(Operation::kExtendVolume, volume_id, extend_operation, false));
    });
    EXPECT_TRUE(WaitUntilAWriterWaits(harness.locks, VolumeLockName(volume_id)))
        << "the extend never queued for the volume's lock";
    EXPECT_EQ(harness.memory.CallCount("extend_volume"), 0)
        << "the extend reached the driver while the snapshot read the volume";
  }
  release_snapshot.Open();
  for (std::thread& thread : threads) {
    thread.join();
  }
  harness.memory.OnCall(nullptr);

  ASSERT_TRUE(inside);
  EXPECT_EQ(outcomes[0], JobOutcome::kDone);
  EXPECT_EQ(outcomes[1], JobOutcome::kDone);
  EXPECT_EQ(snapshot_existed_when_extend_ran, true) << "the extend ran before the snapshot";
  EXPECT_EQ(TextColumn(harness.Read(ResourceKind::kSnapshot, snapshot_id), "status"), "available");
  const ports::Row volume = harness.Read(ResourceKind::kVolume, volume_id);
  EXPECT_EQ(TextColumn(volume, "status"), "available") << Dump(volume);
  EXPECT_EQ(IntegerColumn(volume, "size_gib"), kExtendedSizeGib) << Dump(volume);
  EXPECT_EQ(harness.memory.VolumeSizeGib(volume_id), kExtendedSizeGib);
  EXPECT_EQ(harness.locks.HeldCount(), 0u);
}

// ---- Fencing on a takeover. ----

// The node that left the target in progress may only be paused: after the survivor's job, a
// driver call carrying that node's (older) token is refused, for every operation.
TEST_P(DeliveryTest, TakeoverFencesTheTargetAgainstTheEarlierHolder) {
  for (Variant variant : kAllVariants) {
    SCOPED_TRACE(std::string(VariantName(variant)));
    const Operation operation = OperationOf(variant);
    Scene scene = harness_.Build(variant, domain::InProgressStatusOf(operation), kSame);
    std::uint64_t earlier_token = 0;
    {
      auto earlier = harness_.locks.TryAcquire(
          ports::LockRequest::Exclusive(ResourceLockName(TargetKindOf(variant), scene.target_id)));
      ASSERT_TRUE(earlier.has_value());
      earlier_token = (*earlier)->fencing_token();
    }

    EXPECT_EQ(harness_.Run(Harness::JobFor(scene, GetParam())), JobOutcome::kDone);

    const std::vector<FenceRecordingDriver::FenceCall> fences = harness_.JobFences();
    ASSERT_EQ(fences.size(), 1u);
    EXPECT_EQ(fences[0].id, scene.target_id);
    EXPECT_GT(fences[0].token, earlier_token);
    EXPECT_EQ(fences[0].driver_calls_before, harness_.calls_mark);
    Result<void> resumed;
    switch (variant) {
      case Variant::kCreateBlank:
      case Variant::kCreateClone:
      case Variant::kCreateFromSnapshot:
        resumed = harness_.memory.CreateVolume(
            {scene.target_id, kSizeGib, "paused-holder", earlier_token, {}});
        break;
      case Variant::kDeleteVolume:
        resumed = harness_.memory.DeleteVolume(scene.target_id, "paused-holder", earlier_token);
        break;
      case Variant::kExtendVolume:
        resumed = harness_.memory.ExtendVolume(
            scene.target_id, kExtendedSizeGib, "paused-holder", earlier_token);
        break;
      case Variant::kCreateSnapshot:
        resumed = harness_.memory.CreateSnapshot(
            {scene.target_id, scene.volume_id, "paused-holder", earlier_token});
        break;
      case Variant::kDeleteSnapshot:
        resumed = harness_.memory.DeleteSnapshot(scene.target_id, "paused-holder", earlier_token);
        break;
    }
    ASSERT_FALSE(resumed.has_value()) << "the paused holder's call went through";
    EXPECT_EQ(resumed.error().code, ErrorCode::kFenced);
  }
}

// ---- Fault points. ----

// "<operation>:before_driver" comes after the in-progress status is written and before the
// driver call; "<operation>:after_driver" after the driver returned and before the final status.
TEST_P(DeliveryTest, FaultPointsSurroundTheDriverCallInsideTheInProgressStatus) {
  for (bool driver_fails : {false, true}) {
    for (Variant variant : kAllVariants) {
      SCOPED_TRACE(std::string(VariantName(variant)) + (driver_fails ? ", failing" : ""));
      const Operation operation = OperationOf(variant);
      const std::string name(domain::OperationName(operation));
      const std::string in_progress(domain::InProgressStatusOf(operation));
      Scene scene = harness_.Build(variant, domain::QueuedStatusOf(operation), kSame);
      std::vector<std::string> events;
      auto status_now = [&] {
        return TextColumn(harness_.ReadTarget(scene), "status").value_or("?");
      };
      harness_.fault_hook = [&](std::string_view point) {
        events.push_back(std::string(point) + " " + status_now());
      };
      harness_.memory.OnCall([&](const MemoryStorageDriver::Call& call) {
        events.push_back("driver " + call.op + " " + status_now());
      });
      if (driver_fails) {
        harness_.memory.FailNext(ErrorCode::kDriverFailed, "no");
      }

      EXPECT_EQ(harness_.Run(Harness::JobFor(scene, GetParam())), JobOutcome::kDone);
      harness_.fault_hook = nullptr;
      harness_.memory.OnCall(nullptr);

      EXPECT_EQ(events,
                (std::vector<std::string>{Join({name, ":before_driver ", in_progress}),
                                          Join({"driver ", name, " ", in_progress}),
                                          Join({name, ":after_driver ", in_progress})}));
      EXPECT_EQ(TextColumn(harness_.ReadTarget(scene), "status"),
                driver_fails ? domain::FailedStatusOf(operation) : domain::DoneStatusOf(operation));
    }
  }
}

// A job that does not run its operation passes no fault point.
TEST_P(DeliveryTest, JobsThatDoNotReachTheDriverPassNoFaultPoint) {
  for (Variant variant : kAllVariants) {
    SCOPED_TRACE(std::string(VariantName(variant)));
    const Operation operation = OperationOf(variant);
    // At rest (rule 9); and interrupted (rule 7) unless the operation is redone.
    std::vector<std::string> statuses = {"available"};
    if (!domain::IsRedoable(operation)) {
      statuses.emplace_back(domain::InProgressStatusOf(operation));
    }
    for (const std::string& status : statuses) {
      Scene scene = harness_.Build(variant, status, kSame);
      std::vector<std::string> points;
      harness_.fault_hook = [&](std::string_view point) {
        points.emplace_back(point);
      };

      EXPECT_EQ(harness_.Run(Harness::JobFor(scene, GetParam())), JobOutcome::kDone);
      harness_.fault_hook = nullptr;

      EXPECT_TRUE(points.empty()) << status << ": " << points.front();
      EXPECT_TRUE(harness_.JobCalls().empty()) << status;
    }
  }
}

}  // namespace
}  // namespace clinker::services
