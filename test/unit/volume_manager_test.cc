// Goal: show that VolumeManager applies the stuck-job rules end to end: for each status a volume
// can be found in when a create or delete job arrives, the job's outcome, the row it leaves and
// the driver calls it makes are the ones the design promises, whether the job is fresh or a
// redelivery; that the volume lock is taken in the mode the operation needs; and that it is never
// left held. Every operation (clones, extend, snapshots) and the read rules for sources are in
// volume_manager_operations_test.cc.
//
// Method: real in-memory adapters (MemoryStateStore, MemoryLockManager, MemoryStorageDriver) and
// a FakeClock. Each case writes the volume row directly (Insert of VolumeToRow), builds a
// ports::Delivery carrying JobMessage::ToJson(), calls Handle, then reads the raw row back
// (stored status name, status_reason, deleted) and the driver's call log. Lock modes are observed
// from a driver hook that tries a shared TryAcquire on the volume's lock while the job runs.
// Every rule case runs twice through a value-parameterised suite: as a first delivery and as a
// redelivery (the flag must not change the decision, which rests on the row alone). A final test
// races 8 threads delivering one create job and counts driver calls.
#include "clinker/services/volume_manager.h"

#include <chrono>
#include <cstdint>
#include <latch>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/adapters/memory/memory_lock_manager.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/memory/memory_storage_driver.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/groups_api.h"
#include "clinker/services/job_message.h"
#include "clinker/services/lock_names.h"
#include "clinker/services/snapshot_record.h"
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
using domain::VolumeStatus;
using test_support::FakeClock;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::int64_t kSizeGib = 3;

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

std::int64_t IntegerColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::int64_t>(it->second)) {
    ADD_FAILURE() << "column " << column << " is not an integer in " << Dump(row);
    return -1;
  }
  return std::get<std::int64_t>(it->second);
}

VolumeManagerOptions ShortOptions() {
  VolumeManagerOptions options;
  options.lock_timeout = std::chrono::milliseconds(50);
  options.final_write_attempts = 2;
  options.final_write_backoff = std::chrono::milliseconds(1);
  return options;
}

class VolumeManagerRuleTest : public ::testing::TestWithParam<bool> {
 protected:
  VolumeManagerRuleTest() : manager_(store_, locks_, driver_, clock_, ShortOptions()) {}

  // Writes a volume row as the API and earlier jobs would have left it.
  std::string InsertVolume(VolumeStatus status,
                           std::optional<std::string> operation_id,
                           bool deleted = false) {
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = std::string(kProject);
    volume.user_id = "user";
    volume.status = status;
    volume.size_gib = kSizeGib;
    volume.name = "vol";
    volume.availability_zone = "nova";
    volume.host = "h@memory#default";
    volume.operation_id = std::move(operation_id);
    volume.created_at = FormatTimestamp(clock_.WallNow());
    volume.deleted = deleted;
    Result<void> inserted = store_.Insert(ports::Table::kVolumes, VolumeToRow(volume));
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    clock_.Advance(std::chrono::seconds(1));
    return volume.id;
  }

  // The delivery of a job, flagged as the suite's parameter says: a fresh job, or the second
  // delivery of a job whose first consumer went away without acking.
  ports::Delivery DeliveryOf(const std::string& payload) const {
    ports::Delivery delivery;
    delivery.job_id = NewUuid();
    delivery.topic = "volume.h@memory";
    delivery.payload = payload;
    delivery.redelivered = GetParam();
    delivery.delivery_count = GetParam() ? 2 : 1;
    return delivery;
  }

  ports::Delivery JobFor(Operation operation,
                         const std::string& volume_id,
                         const std::string& operation_id) const {
    return DeliveryOf(
        JobMessage{operation, volume_id, operation_id, std::string(kProject)}.ToJson());
  }

  // Handle, plus the check every outcome must pass: no volume lock is left held.
  JobOutcome Run(const ports::Delivery& delivery) {
    JobOutcome outcome = manager_.Handle(delivery);
    EXPECT_EQ(locks_.HeldCount(), 0u) << "a volume lock outlived Handle";
    return outcome;
  }

  ports::Row Read(const std::string& volume_id) {
    auto row = store_.Get(ports::Table::kVolumes, volume_id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  MemoryStateStore store_;
  MemoryLockManager locks_;
  MemoryStorageDriver driver_;
  FakeClock clock_;
  VolumeManager manager_;
};

INSTANTIATE_TEST_SUITE_P(Delivery,
                         VolumeManagerRuleTest,
                         ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? "Redelivery" : "FirstDelivery";
                         });

// Quotas (services/quotas.h): the node's final delete releases what the volume counted (the size
// an extend queued before a forced delete was to grow it to, included), in the same write; a
// failed extend releases the growth its API write counted.
std::int64_t InUse(MemoryStateStore& store, std::string_view resource) {
  auto row = store.Get(ports::Table::kQuotaUsages, ports::UsageCounterId(kProject, resource));
  return row ? std::get<std::int64_t>(row->at("in_use")) : 0;
}

TEST_P(VolumeManagerRuleTest, TheFinalDeleteReleasesWhatTheVolumeCounted) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeletingQueued, operation_id);
  // As if the API had counted it, and an extend to 5 GiB had been queued before a forced delete.
  ASSERT_TRUE(
      store_
          .ConditionalUpdateWithUsage(ports::Table::kVolumes,
                                      id,
                                      {{"pending_size_gib", std::int64_t{kSizeGib + 2}}},
                                      {},
                                      {},
                                      {{std::string(kProject), "volumes", 1, -1},
                                       {std::string(kProject), "gigabytes", kSizeGib + 2, -1}})
          .has_value());
  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);
  EXPECT_EQ(IntegerColumn(Read(id), "deleted"), 1);
  EXPECT_EQ(InUse(store_, "volumes"), 0);
  EXPECT_EQ(InUse(store_, "gigabytes"), 0);
}

// Capacity reserved at placement (scheduler.h): the write that fails the create gives the
// volume's reservation back to its pool and zeroes it, so the later delete releases nothing more;
// the final delete of a volume that still holds one releases it. A redelivered job changes
// nothing more.
std::int64_t Allocated(MemoryStateStore& store, const std::string& pool) {
  auto row = store.Get(ports::Table::kPoolCapacity, pool);
  return row ? std::get<std::int64_t>(row->at("allocated_capacity_gb")) : 0;
}

TEST_P(VolumeManagerRuleTest, AFailedCreateOrTheFinalDeleteGivesThePoolCapacityBackOnce) {
  const std::string pool = "h@memory#default";
  auto reserve = [&](const std::string& id) {
    ASSERT_TRUE(store_
                    .ConditionalUpdateWithUsage(
                        ports::Table::kVolumes,
                        id,
                        {{"capacity_reserved_gib", std::int64_t{kSizeGib}}},
                        {},
                        {},
                        {{"", pool, kSizeGib, -1, ports::UsageChange::Counter::kPoolCapacity}})
                    .has_value());
  };
  std::string create_op = NewUuid();
  std::string failed = InsertVolume(VolumeStatus::kCreatingQueued, create_op);
  reserve(failed);
  std::string delete_op = NewUuid();
  std::string deleted = InsertVolume(VolumeStatus::kDeletingQueued, delete_op);
  reserve(deleted);
  EXPECT_EQ(Allocated(store_, pool), 2 * kSizeGib);

  driver_.FailNext(ErrorCode::kDriverFailed, "back-end is out of space");
  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, failed, create_op)), JobOutcome::kDone);
  EXPECT_EQ(TextColumn(Read(failed), "status"), "error");
  EXPECT_EQ(IntegerColumn(Read(failed), "capacity_reserved_gib"), 0);
  EXPECT_EQ(Allocated(store_, pool), kSizeGib);
  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, failed, create_op)), JobOutcome::kDone);
  EXPECT_EQ(Allocated(store_, pool), kSizeGib) << "a duplicate job released again";

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, deleted, delete_op)), JobOutcome::kDone);
  EXPECT_EQ(IntegerColumn(Read(deleted), "deleted"), 1);
  EXPECT_EQ(Allocated(store_, pool), 0);
  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, deleted, delete_op)), JobOutcome::kDone);
  EXPECT_EQ(Allocated(store_, pool), 0);

  // The failed volume's delete: it holds nothing any more, so nothing is released.
  std::string failed_delete_op = NewUuid();
  ASSERT_TRUE(store_
                  .ConditionalUpdate(ports::Table::kVolumes,
                                     failed,
                                     {{"status", Status(VolumeStatus::kDeletingQueued)},
                                      {"operation_id", failed_delete_op}},
                                     {},
                                     {})
                  .has_value());
  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, failed, failed_delete_op)), JobOutcome::kDone);
  EXPECT_EQ(IntegerColumn(Read(failed), "deleted"), 1);
  EXPECT_EQ(Allocated(store_, pool), 0);
}

TEST_P(VolumeManagerRuleTest, AFailedExtendReleasesItsGrowthAndASuccessfulOneKeepsIt) {
  for (bool fails : {true, false}) {
    SCOPED_TRACE(fails ? "failed extend" : "extend done");
    std::string operation_id = NewUuid();
    std::string id = InsertVolume(VolumeStatus::kExtendingQueued, operation_id);
    ASSERT_TRUE(
        store_
            .ConditionalUpdateWithUsage(ports::Table::kVolumes,
                                        id,
                                        {{"pending_size_gib", std::int64_t{kSizeGib + 4}}},
                                        {},
                                        {},
                                        {{std::string(kProject), "gigabytes", kSizeGib + 4, -1}})
            .has_value());
    ASSERT_TRUE(driver_.CreateVolume({id, kSizeGib, "earlier-create", 0, {}}).has_value());
    if (fails) {
      driver_.FailNext(ErrorCode::kDriverFailed, "no room");
    }
    EXPECT_EQ(Run(JobFor(Operation::kExtendVolume, id, operation_id)), JobOutcome::kDone);
    EXPECT_EQ(InUse(store_, "gigabytes"), fails ? kSizeGib : kSizeGib + 4);
    // Back to the volume's size only, for the next round.
    ASSERT_TRUE(
        store_
            .ConditionalUpdateWithUsage(
                ports::Table::kVolumes,
                id,
                {{"deleted", std::int64_t{1}}},
                {},
                {},
                {{std::string(kProject), "gigabytes", -(fails ? kSizeGib : kSizeGib + 4), -1}})
            .has_value());
  }
}

TEST_P(VolumeManagerRuleTest, CreateQueuedForThisOperationMakesTheVolumeAvailable) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreatingQueued, operation_id);

  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "available") << Dump(row);
  EXPECT_EQ(TextColumn(row, "status_reason"), std::nullopt) << Dump(row);
  EXPECT_EQ(IntegerColumn(row, "deleted"), 0);
  ASSERT_EQ(driver_.CallCount("create_volume"), 1);
  EXPECT_EQ(driver_.CallCount("delete_volume"), 0);
  MemoryStorageDriver::Call call = driver_.Calls().front();
  EXPECT_EQ(call.volume_id, id);
  EXPECT_EQ(call.operation_id, operation_id);
  EXPECT_EQ(call.size_gib, kSizeGib);
  EXPECT_TRUE(driver_.HasVolume(id));
}

// The in-progress status must be durable before the back-end is touched: that is what lets a
// survivor tell an interrupted create from one nobody started.
TEST_P(VolumeManagerRuleTest, CreateMarksTheVolumeCreatingBeforeCallingTheDriver) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreatingQueued, operation_id);
  std::optional<std::string> status_seen_by_driver;
  bool lock_held_during_driver_call = false;
  driver_.OnCall([&](const MemoryStorageDriver::Call&) {
    auto row = store_.Get(ports::Table::kVolumes, id);
    if (row) {
      status_seen_by_driver = TextColumn(*row, "status");
    }
    lock_held_during_driver_call = locks_.IsHeld(VolumeLockName(id));
  });

  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, operation_id)), JobOutcome::kDone);

  EXPECT_EQ(status_seen_by_driver, "creating");
  EXPECT_TRUE(lock_held_during_driver_call);
  EXPECT_EQ(TextColumn(Read(id), "status"), "available");
}

// Create and delete write the volume (domain::AccessOf is kWrite), so they must hold its lock
// exclusively: while the driver runs, even a reader of the volume is refused.
TEST_P(VolumeManagerRuleTest, CreateAndDeleteHoldTheVolumeLockExclusively) {
  for (Operation operation : {Operation::kCreateVolume, Operation::kDeleteVolume}) {
    SCOPED_TRACE(std::string(domain::OperationName(operation)));
    std::string operation_id = NewUuid();
    std::string id =
        InsertVolume(operation == Operation::kCreateVolume ? VolumeStatus::kCreatingQueued
                                                           : VolumeStatus::kDeletingQueued,
                     operation_id);
    bool hook_ran = false;
    std::optional<ErrorCode> reader_error;
    driver_.OnCall([&, id](const MemoryStorageDriver::Call&) {
      hook_ran = true;
      auto reader = locks_.TryAcquire(ports::LockRequest::Shared(VolumeLockName(id)));
      if (!reader) {
        reader_error = reader.error().code;
      }
    });

    EXPECT_EQ(Run(JobFor(operation, id, operation_id)), JobOutcome::kDone);
    driver_.OnCall(nullptr);

    ASSERT_TRUE(hook_ran) << "the driver was not called";
    EXPECT_EQ(reader_error, ErrorCode::kBusy) << "a reader got the lock while the job ran";
    // Released afterwards: a reader gets in now.
    auto reader = locks_.TryAcquire(ports::LockRequest::Shared(VolumeLockName(id)));
    EXPECT_TRUE(reader.has_value()) << reader.error().ToString();
  }
}

TEST_P(VolumeManagerRuleTest, CreateFoundCreatingSetsErrorWithoutCallingTheDriver) {
  // A node died between marking the volume creating and finishing: a create cannot safely be
  // redone, so the volume goes to error with a reason the user can read.
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreating, operation_id);

  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "error") << Dump(row);
  std::optional<std::string> reason = TextColumn(row, "status_reason");
  ASSERT_TRUE(reason.has_value()) << Dump(row);
  EXPECT_FALSE(reason->empty());
  EXPECT_EQ(IntegerColumn(row, "deleted"), 0);
  EXPECT_TRUE(driver_.Calls().empty());
}

// The node that left the volume `creating` may only be paused: the survivor fences the volume
// with its own token before it decides, so the paused node's driver call is refused when it
// resumes, and the volume's data stays as the survivor left it (absent here).
TEST_P(VolumeManagerRuleTest, TakeoverFencesTheVolumeAgainstTheEarlierHolder) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreating, operation_id);
  // The earlier holder's grant: any token the survivor's grant beats.
  std::uint64_t earlier_token = 0;
  {
    auto earlier = locks_.TryAcquire(ports::LockRequest::Exclusive(VolumeLockName(id)));
    ASSERT_TRUE(earlier.has_value());
    earlier_token = (*earlier)->fencing_token();
  }

  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, operation_id)), JobOutcome::kDone);
  EXPECT_EQ(TextColumn(Read(id), "status"), "error");

  ports::VolumeSpec late{id, kSizeGib, operation_id, earlier_token, {}};
  auto resumed = driver_.CreateVolume(late);
  ASSERT_FALSE(resumed.has_value()) << "the paused holder's create went through";
  EXPECT_EQ(resumed.error().code, ErrorCode::kFenced);
  EXPECT_FALSE(driver_.HasVolume(id));
}

// A newer holder already wrote under a larger token (this node was paused past its lease and
// the volume moved on): every status write of this job is refused by the database, and nothing
// reaches the driver.
TEST_P(VolumeManagerRuleTest, StatusWriteWithAnOlderTokenThanTheStoredOneIsRefused) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeletingQueued, operation_id);
  ASSERT_TRUE(
      store_
          .ConditionalUpdate(
              ports::Table::kVolumes, id, {{"fencing_token", std::int64_t{1} << 40}}, {}, {})
          .has_value());
  ports::Row before = Read(id);

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kRetryLater);

  ports::Row after = Read(id);
  EXPECT_TRUE(after == before) << "before: " << Dump(before) << "\nafter:  " << Dump(after);
  EXPECT_TRUE(driver_.Calls().empty());
}

// A fresh job (nobody left it in progress) does not fence: fences cost a write on the back-end.
TEST_P(VolumeManagerRuleTest, FreshJobDoesNotFence) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreatingQueued, operation_id);
  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, operation_id)), JobOutcome::kDone);
  EXPECT_TRUE(driver_.DeleteVolume(id, "unfenced-delete", 0).has_value());
  // The volume records the token it was created under.
  EXPECT_GE(IntegerColumn(Read(id), "fencing_token"), 1);
}

// The lock is lost while the driver runs (its lease could not be renewed): the job writes no
// final status, which would be a write from the past once another node holds the volume, and
// goes back to the queue.
TEST_P(VolumeManagerRuleTest, LockLostDuringTheDriverCallWritesNothingMore) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreatingQueued, operation_id);
  driver_.OnCall([&](const MemoryStorageDriver::Call&) {
    EXPECT_EQ(locks_.ExpireForTest(VolumeLockName(id)), 1u);
  });

  EXPECT_EQ(manager_.Handle(JobFor(Operation::kCreateVolume, id, operation_id)),
            JobOutcome::kRetryLater);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "creating") << "only the in-progress mark, written "
                                                      "while the lock was held: "
                                                   << Dump(row);
}

TEST_P(VolumeManagerRuleTest, CreateFoundAvailableIsDroppedAsADuplicate) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kAvailable, operation_id);
  ports::Row before = Read(id);

  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row after = Read(id);
  EXPECT_TRUE(after == before) << "before: " << Dump(before) << "\nafter:  " << Dump(after);
  EXPECT_TRUE(driver_.Calls().empty());
}

TEST_P(VolumeManagerRuleTest, CreateForAnotherQueuedOperationIdIsDropped) {
  std::string queued_operation = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreatingQueued, queued_operation);
  ports::Row before = Read(id);

  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, NewUuid())), JobOutcome::kDone);

  ports::Row after = Read(id);
  EXPECT_TRUE(after == before) << "before: " << Dump(before) << "\nafter:  " << Dump(after);
  EXPECT_TRUE(driver_.Calls().empty());
}

TEST_P(VolumeManagerRuleTest, DeleteQueuedForThisOperationDeletesTheVolume) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeletingQueued, operation_id);
  ASSERT_TRUE(driver_.CreateVolume({id, kSizeGib, "earlier-create", 0, {}}).has_value());

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "deleted") << Dump(row);
  EXPECT_EQ(IntegerColumn(row, "deleted"), 1);
  EXPECT_TRUE(TextColumn(row, "deleted_at").has_value()) << Dump(row);
  ASSERT_EQ(driver_.CallCount("delete_volume"), 1);
  EXPECT_EQ(driver_.CallCountForOperation(operation_id), 1);
  EXPECT_FALSE(driver_.HasVolume(id));
}

TEST_P(VolumeManagerRuleTest, DeleteFoundDeletingIsRedoneToTheEnd) {
  // A node died mid-delete; deleting converges when redone, so the survivor finishes it.
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeleting, operation_id);
  ASSERT_TRUE(driver_.CreateVolume({id, kSizeGib, "earlier-create", 0, {}}).has_value());

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "deleted") << Dump(row);
  EXPECT_EQ(IntegerColumn(row, "deleted"), 1);
  EXPECT_EQ(driver_.CallCount("delete_volume"), 1);
  EXPECT_FALSE(driver_.HasVolume(id));
}

// Rule 5 of domain/stuck_job.h redoes an interrupted delete whatever operation id the job
// carries (stuck_job_test.cc pins "delete in progress, the id does not matter"). The manager
// must then finish the delete, not leave the job to be redelivered for ever.
TEST_P(VolumeManagerRuleTest, DeleteFoundDeletingUnderAnotherOperationIdIsAlsoFinished) {
  std::string stored_operation = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeleting, stored_operation);

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, NewUuid())), JobOutcome::kDone);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "deleted") << Dump(row);
  EXPECT_EQ(IntegerColumn(row, "deleted"), 1);
  EXPECT_EQ(driver_.CallCount("delete_volume"), 1);
}

TEST_P(VolumeManagerRuleTest, DeleteFoundAtRestIsDropped) {
  for (VolumeStatus status : {VolumeStatus::kAvailable, VolumeStatus::kError}) {
    SCOPED_TRACE(std::string(domain::StoredName(status)));
    std::string operation_id = NewUuid();
    std::string id = InsertVolume(status, operation_id);
    ports::Row before = Read(id);

    EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);

    ports::Row after = Read(id);
    EXPECT_TRUE(after == before) << "before: " << Dump(before) << "\nafter:  " << Dump(after);
  }
  EXPECT_TRUE(driver_.Calls().empty());
}

TEST_P(VolumeManagerRuleTest, DeleteOfAnAlreadyDeletedVolumeIsDropped) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeleted, operation_id, /*deleted=*/true);
  ports::Row before = Read(id);

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row after = Read(id);
  EXPECT_TRUE(after == before) << "before: " << Dump(before) << "\nafter:  " << Dump(after);
  EXPECT_TRUE(driver_.Calls().empty());
}

TEST_P(VolumeManagerRuleTest, DriverFailureOnCreateSetsErrorWithTheDriversMessage) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreatingQueued, operation_id);
  driver_.FailNext(ErrorCode::kDriverFailed, "back-end is out of space");

  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "error") << Dump(row);
  EXPECT_EQ(TextColumn(row, "status_reason"), "back-end is out of space");
  EXPECT_EQ(IntegerColumn(row, "deleted"), 0);
  EXPECT_EQ(driver_.CallCount("create_volume"), 1);
}

TEST_P(VolumeManagerRuleTest, DriverFailureOnDeleteSetsErrorDeleting) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeletingQueued, operation_id);
  driver_.FailNext(ErrorCode::kDriverFailed, "volume is busy on the back-end");

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "error_deleting") << Dump(row);
  EXPECT_EQ(TextColumn(row, "status_reason"), "volume is busy on the back-end");
  EXPECT_EQ(IntegerColumn(row, "deleted"), 0);
  EXPECT_EQ(driver_.CallCount("delete_volume"), 1);
}

// A cascading delete (volumes_api.h): the volume's snapshots are being deleted by their own
// jobs; the volume's job waits for them, then deletes the volume.
TEST_P(VolumeManagerRuleTest, CascadeDeleteWaitsForTheSnapshotsBeingDeleted) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeletingQueued, operation_id);
  ASSERT_TRUE(driver_.CreateVolume({id, kSizeGib, "earlier-create", 0, {}}).has_value());
  Snapshot snapshot;
  snapshot.id = NewUuid();
  snapshot.project_id = std::string(kProject);
  snapshot.volume_id = id;
  snapshot.status = domain::SnapshotStatus::kDeleting;
  snapshot.size_gib = kSizeGib;
  snapshot.operation_id = NewUuid();
  snapshot.created_at = FormatTimestamp(clock_.WallNow());
  ASSERT_TRUE(store_.Insert(ports::Table::kSnapshots, SnapshotToRow(snapshot)).has_value());

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kRetryLater);
  EXPECT_EQ(TextColumn(Read(id), "status"), "deleting_queued");
  EXPECT_EQ(driver_.CallCount("delete_volume"), 0);

  // The snapshot's job finished: the volume goes.
  ASSERT_TRUE(
      store_
          .ConditionalUpdate(ports::Table::kSnapshots,
                             snapshot.id,
                             {{"status", std::string("deleted")}, {"deleted", std::int64_t{1}}},
                             {},
                             {})
          .has_value());
  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);
  EXPECT_EQ(TextColumn(Read(id), "status"), "deleted");
  EXPECT_EQ(driver_.CallCount("delete_volume"), 1);
}

// A snapshot request that lost the race with this delete inserted its row and is withdrawing it
// (creating_queued for a moment): the delete waits rather than failing the volume for it.
TEST_P(VolumeManagerRuleTest, DeleteWaitsForASnapshotCreateBeingWithdrawn) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeletingQueued, operation_id);
  ASSERT_TRUE(driver_.CreateVolume({id, kSizeGib, "earlier-create", 0, {}}).has_value());
  Snapshot snapshot;
  snapshot.id = NewUuid();
  snapshot.project_id = std::string(kProject);
  snapshot.volume_id = id;
  snapshot.status = domain::SnapshotStatus::kCreatingQueued;
  snapshot.size_gib = kSizeGib;
  snapshot.operation_id = NewUuid();
  snapshot.created_at = FormatTimestamp(clock_.WallNow());
  ASSERT_TRUE(store_.Insert(ports::Table::kSnapshots, SnapshotToRow(snapshot)).has_value());

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kRetryLater);
  EXPECT_EQ(TextColumn(Read(id), "status"), "deleting_queued");

  ASSERT_TRUE(
      store_
          .ConditionalUpdate(ports::Table::kSnapshots,
                             snapshot.id,
                             {{"status", std::string("deleted")}, {"deleted", std::int64_t{1}}},
                             {},
                             {})
          .has_value());
  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);
  EXPECT_EQ(TextColumn(Read(id), "status"), "deleted");
}

TEST_P(VolumeManagerRuleTest, CascadeDeleteFailsWhenASnapshotWasNotDeleted) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kDeletingQueued, operation_id);
  Snapshot snapshot;
  snapshot.id = NewUuid();
  snapshot.project_id = std::string(kProject);
  snapshot.volume_id = id;
  snapshot.status = domain::SnapshotStatus::kErrorDeleting;
  snapshot.size_gib = kSizeGib;
  snapshot.created_at = FormatTimestamp(clock_.WallNow());
  ASSERT_TRUE(store_.Insert(ports::Table::kSnapshots, SnapshotToRow(snapshot)).has_value());

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, id, operation_id)), JobOutcome::kDone);

  ports::Row row = Read(id);
  EXPECT_EQ(TextColumn(row, "status"), "error_deleting") << Dump(row);
  EXPECT_NE(TextColumn(row, "status_reason").value_or("").find(snapshot.id), std::string::npos)
      << Dump(row);
  EXPECT_EQ(IntegerColumn(row, "deleted"), 0);
  EXPECT_EQ(driver_.CallCount("delete_volume"), 0);
}

TEST_P(VolumeManagerRuleTest, LockHeldElsewhereGivesTheJobBackAndChangesNothing) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreatingQueued, operation_id);
  ports::Row before = Read(id);
  auto held = locks_.TryAcquire(ports::LockRequest::Exclusive(VolumeLockName(id)));
  ASSERT_TRUE(held.has_value()) << held.error().ToString();

  EXPECT_EQ(manager_.Handle(JobFor(Operation::kCreateVolume, id, operation_id)),
            JobOutcome::kRetryLater);

  ports::Row after = Read(id);
  EXPECT_TRUE(after == before) << "before: " << Dump(before) << "\nafter:  " << Dump(after);
  EXPECT_TRUE(driver_.Calls().empty());
  EXPECT_TRUE(locks_.IsHeld(VolumeLockName(id))) << "the other holder's lock was taken away";

  // Once the other holder lets go, the same job goes through.
  (*held)->Release();
  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, id, operation_id)), JobOutcome::kDone);
  EXPECT_EQ(TextColumn(Read(id), "status"), "available");
}

TEST_P(VolumeManagerRuleTest, JobForAnUnknownVolumeIsDone) {
  EXPECT_EQ(Run(JobFor(Operation::kCreateVolume, NewUuid(), NewUuid())), JobOutcome::kDone);
  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, NewUuid(), NewUuid())), JobOutcome::kDone);
  EXPECT_TRUE(driver_.Calls().empty());
}

TEST_P(VolumeManagerRuleTest, MalformedPayloadIsDone) {
  std::string operation_id = NewUuid();
  std::string id = InsertVolume(VolumeStatus::kCreatingQueued, operation_id);
  ports::Row before = Read(id);
  const std::vector<std::string> payloads = {
      "",
      "not json",
      "[1, 2]",
      "{}",
      R"({"operation": "create_volume", "resource_id": ")" + id + R"(", "project_id": "p"})",
      R"({"operation": "resize_volume", "resource_id": ")" + id + R"(", "operation_id": ")" +
          operation_id + R"(", "project_id": "p"})",
      R"({"operation": "create_volume", "resource_id": 7, "operation_id": ")" + operation_id +
          R"(", "project_id": "p"})",
  };
  for (const std::string& payload : payloads) {
    SCOPED_TRACE(payload);
    EXPECT_EQ(Run(DeliveryOf(payload)), JobOutcome::kDone);
  }
  ports::Row after = Read(id);
  EXPECT_TRUE(after == before) << "before: " << Dump(before) << "\nafter:  " << Dump(after);
  EXPECT_TRUE(driver_.Calls().empty());
}

// Eight workers get the same create job at once (a duplicate publish plus redeliveries): the
// lock serialises them, the first creates, the rest find the volume available and drop the job.
// Generic groups (services/group_completion.h): the job of a group's member tries to complete
// the group after its own work, and also when it is dropped as a duplicate: a node that died
// between a member's final write and the group's completion leaves the job unacknowledged, and
// its redelivery completes the group. A group with a member still busy is left alone.
TEST_P(VolumeManagerRuleTest, AMemberJobCompletesItsGroupEvenWhenDroppedAsADuplicate) {
  Group group;
  group.id = NewUuid();
  group.project_id = std::string(kProject);
  group.user_id = "user";
  group.status = "deleting";
  group.group_type_id = NewUuid();
  group.availability_zone = "nova";
  group.created_at = FormatTimestamp(clock_.WallNow());
  ASSERT_TRUE(store_.Insert(ports::Table::kGroups, GroupToRow(group)).has_value());
  auto join = [&](const std::string& volume_id) {
    auto joined = store_.ConditionalUpdate(
        ports::Table::kVolumes, volume_id, {{"group_id", group.id}}, {}, {});
    ASSERT_TRUE(joined.has_value() && joined->has_value());
  };
  // One member already deleted (its node died before completing the group), one still queued.
  const std::string done_operation = NewUuid();
  const std::string done = InsertVolume(VolumeStatus::kDeleted, done_operation, /*deleted=*/true);
  join(done);
  const std::string busy = InsertVolume(VolumeStatus::kDeletingQueued, NewUuid());
  join(busy);
  auto group_status = [&] {
    auto row = store_.Get(ports::Table::kGroups, group.id);
    EXPECT_TRUE(row.has_value());
    return row ? std::make_pair(TextColumn(*row, "status"), IntegerColumn(*row, "deleted"))
               : std::make_pair(std::optional<std::string>(), std::int64_t{-1});
  };

  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, done, done_operation)), JobOutcome::kDone);
  EXPECT_EQ(group_status(), std::make_pair(std::optional<std::string>("deleting"), std::int64_t{0}))
      << "completed while a member is still queued for its delete";
  EXPECT_EQ(driver_.CallCount("delete_volume"), 0) << "a duplicate did the work again";

  // The other member is gone too (as its node would leave it): the redelivered duplicate of the
  // first member's job completes the group.
  auto gone =
      store_.ConditionalUpdate(ports::Table::kVolumes,
                               busy,
                               {{"status", std::string(domain::StoredName(VolumeStatus::kDeleted))},
                                {"deleted", std::int64_t{1}}},
                               {},
                               {});
  ASSERT_TRUE(gone.has_value() && gone->has_value());
  EXPECT_EQ(Run(JobFor(Operation::kDeleteVolume, done, done_operation)), JobOutcome::kDone);
  EXPECT_EQ(group_status(), std::make_pair(std::optional<std::string>("deleted"), std::int64_t{1}));
}

TEST(VolumeManagerConcurrencyTest, SameCreateJobOnEightThreadsCallsTheDriverOnce) {
  constexpr int kThreads = 8;
  MemoryStateStore store;
  MemoryLockManager locks;
  MemoryStorageDriver driver;
  FakeClock clock;
  VolumeManagerOptions options;
  options.lock_timeout = std::chrono::seconds(10);
  VolumeManager manager(store, locks, driver, clock, options);

  Volume volume;
  volume.id = NewUuid();
  volume.project_id = std::string(kProject);
  volume.user_id = "user";
  volume.status = VolumeStatus::kCreatingQueued;
  volume.size_gib = kSizeGib;
  volume.availability_zone = "nova";
  volume.host = "h@memory#default";
  volume.operation_id = NewUuid();
  volume.created_at = FormatTimestamp(clock.WallNow());
  ASSERT_TRUE(store.Insert(ports::Table::kVolumes, VolumeToRow(volume)).has_value());
  const std::string payload =
      JobMessage{Operation::kCreateVolume, volume.id, *volume.operation_id, volume.project_id}
          .ToJson();

  std::latch start(kThreads);
  std::vector<JobOutcome> outcomes(kThreads, JobOutcome::kRetryLater);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ports::Delivery delivery;
      delivery.job_id = "job-1";
      delivery.topic = "volume.h@memory";
      delivery.payload = payload;
      delivery.redelivered = i > 0;
      delivery.delivery_count = i + 1;
      start.arrive_and_wait();
      outcomes[static_cast<std::size_t>(i)] = manager.Handle(delivery);
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }

  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(outcomes[static_cast<std::size_t>(i)], JobOutcome::kDone) << "thread " << i;
  }
  EXPECT_EQ(driver.CallCount("create_volume"), 1);
  auto row = store.Get(ports::Table::kVolumes, volume.id);
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(TextColumn(*row, "status"), "available") << Dump(*row);
  EXPECT_EQ(locks.HeldCount(), 0u);
}

}  // namespace
}  // namespace clinker::services
