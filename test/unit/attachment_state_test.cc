// Goal: show that a volume's status follows its attachments. DeriveAttachState ranks the stored
// attachment statuses (attached, error_detaching counting as attached, > attaching > detaching >
// reserved > none), whatever their order; RefreshVolumeAttachState writes that state only into
// a live volume of the attach family, leaves every other status alone, and, because it writes
// with a compare-and-swap on the volume's operation_id, ends consistent with the final set of
// attachments however writers interleave.
//
// Method: the expected ranking is written out here, independent of attachment_state.cc, and
// checked against every combination of up to three statuses. Refreshes run on a
// MemoryStateStore behind HookedStore, a decorator that calls a test hook before each call, so an
// interleaving (another writer changing an attachment between this writer's read and its write)
// happens at exactly one point, deterministically. A last test lets 8 threads change their own
// attachment and refresh, a bounded number of rounds each, and checks the final volume row
// against the final attachments.
#include "clinker/services/attachment_state.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <latch>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"

namespace clinker::services {
namespace {

using adapters::MemoryStateStore;
using domain::AttachmentStatus;
using domain::VolumeStatus;
using test_support::FakeClock;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";

// ---- The ranking, written out independently. ----

// 4: attached (a failed detach may leave the export: still attached), 3: attaching, 2:
// detaching, 1: reserved, 0: counts for nothing.
int Rank(AttachmentStatus status) {
  switch (status) {
    case AttachmentStatus::kAttached:
    case AttachmentStatus::kErrorDetaching:
      return 4;
    case AttachmentStatus::kAttachingQueued:
    case AttachmentStatus::kConnecting:
    case AttachmentStatus::kAttaching:
      return 3;
    case AttachmentStatus::kDetachingQueued:
    case AttachmentStatus::kDetaching:
      return 2;
    case AttachmentStatus::kReserved:
    case AttachmentStatus::kErrorAttaching:
      return 1;
    case AttachmentStatus::kDetached:
      return 0;
  }
  return 0;
}

DerivedAttachState ExpectedFor(const std::vector<AttachmentStatus>& statuses) {
  int best = 0;
  for (AttachmentStatus status : statuses) {
    best = std::max(best, Rank(status));
  }
  switch (best) {
    case 4:
      return {VolumeStatus::kInUse, "attached"};
    case 3:
      return {VolumeStatus::kAttaching, "attaching"};
    case 2:
      return {VolumeStatus::kDetaching, "detaching"};
    case 1:
      return {VolumeStatus::kReserved, "reserved"};
    default:
      return {VolumeStatus::kAvailable, "detached"};
  }
}

std::vector<AttachmentStatus> EveryAttachmentStatus() {
  std::vector<AttachmentStatus> out;
  for (const auto& info : domain::AllAttachmentStatuses()) {
    out.push_back(info.status);
  }
  return out;
}

std::string Names(const std::vector<AttachmentStatus>& statuses) {
  std::string out = "{";
  for (AttachmentStatus status : statuses) {
    out += std::string(domain::StoredName(status)) + " ";
  }
  return out + "}";
}

// ---- A store whose calls a test can interleave with. ----

enum class StoreCall { kInsert, kGet, kList, kConditionalUpdate };

class HookedStore final : public ports::StateStore {
 public:
  Result<void> Insert(ports::Table table, const ports::Row& row) override {
    return InsertWithUsage(table, row, {});
  }

  Result<std::optional<ports::Row>> ConditionalUpdate(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards) override {
    return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
  }

  using Hook = std::function<void(StoreCall, ports::Table)>;

  explicit HookedStore(ports::StateStore& inner) : inner_(inner) {}

  // Runs before each call reaches the inner store. Set it while no refresh runs.
  void SetHook(Hook hook) { hook_ = std::move(hook); }

  Result<void> InsertWithUsage(ports::Table table,
                               const ports::Row& row,
                               const std::vector<ports::UsageChange>& usage) override {
    Before(StoreCall::kInsert, table);
    return inner_.InsertWithUsage(table, row, usage);
  }

  Result<ports::Row> Get(ports::Table table, std::string_view id) override {
    Before(StoreCall::kGet, table);
    return inner_.Get(table, id);
  }

  Result<std::vector<ports::Row>> List(ports::Table table, const ports::ListQuery& query) override {
    Before(StoreCall::kList, table);
    return inner_.List(table, query);
  }

  Result<std::optional<ports::Row>> ConditionalUpdateWithUsage(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override {
    Before(StoreCall::kConditionalUpdate, table);
    return inner_.ConditionalUpdateWithUsage(table, id, values, expected, guards, usage);
  }

 private:
  void Before(StoreCall call, ports::Table table) {
    if (hook_) {
      hook_(call, table);
    }
  }

  ports::StateStore& inner_;
  Hook hook_;
};

std::optional<std::string> TextColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::string>(it->second)) {
    return std::nullopt;
  }
  return std::get<std::string>(it->second);
}

class AttachmentStateTest : public ::testing::Test {
 protected:
  AttachmentStateTest() : hooked_(store_) {}

  // A live volume row in `status`, on a back-end.
  std::string InsertVolume(VolumeStatus status, bool deleted = false) {
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = std::string(kProject);
    volume.user_id = "user";
    volume.status = status;
    volume.size_gib = 1;
    volume.availability_zone = "nova";
    volume.host = "node1@memory#pool";
    volume.created_at = FormatTimestamp(clock_.WallNow());
    volume.deleted = deleted;
    auto inserted = store_.Insert(ports::Table::kVolumes, VolumeToRow(volume));
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    return volume.id;
  }

  std::string InsertAttachment(const std::string& volume_id,
                               AttachmentStatus status,
                               bool deleted = false) {
    std::string id = NewUuid();
    auto inserted = store_.Insert(ports::Table::kAttachments,
                                  {{"id", id},
                                   {"project_id", std::string(kProject)},
                                   {"user_id", "user"},
                                   {"volume_id", volume_id},
                                   {"status", std::string(domain::StoredName(status))},
                                   {"created_at", FormatTimestamp(clock_.WallNow())},
                                   {"deleted", std::int64_t{deleted ? 1 : 0}}});
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    return id;
  }

  // Changes an attachment's status directly, as an API server or a volume node does.
  void SetAttachment(ports::StateStore& store, const std::string& id, AttachmentStatus status) {
    auto updated = store.ConditionalUpdate(ports::Table::kAttachments,
                                           id,
                                           {{"status", std::string(domain::StoredName(status))}},
                                           {},
                                           {});
    ASSERT_TRUE(updated.has_value()) << updated.error().ToString();
    ASSERT_TRUE(updated->has_value()) << id;
  }

  ports::Row VolumeRow(const std::string& id) {
    auto row = store_.Get(ports::Table::kVolumes, id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  void ExpectVolume(const std::string& id, VolumeStatus status, std::string_view attach_status) {
    ports::Row row = VolumeRow(id);
    EXPECT_EQ(TextColumn(row, "status"), std::string(domain::StoredName(status)));
    EXPECT_EQ(TextColumn(row, "attach_status"), std::string(attach_status));
  }

  MemoryStateStore store_;
  HookedStore hooked_;
  FakeClock clock_;
};

// ---------------------------------------------------------------------------------------------
// DeriveAttachState

TEST(DeriveAttachStateTest, NoAttachmentsLeaveTheVolumeAvailableAndDetached) {
  DerivedAttachState derived = DeriveAttachState({});
  EXPECT_EQ(derived.status, VolumeStatus::kAvailable);
  EXPECT_EQ(derived.attach_status, "detached");
}

TEST(DeriveAttachStateTest, EachStatusAloneGivesItsFamily) {
  struct Case {
    AttachmentStatus attachment;
    VolumeStatus volume;
    std::string_view attach_status;
  };

  const std::vector<Case> cases = {
      {AttachmentStatus::kReserved, VolumeStatus::kReserved, "reserved"},
      {AttachmentStatus::kAttachingQueued, VolumeStatus::kAttaching, "attaching"},
      {AttachmentStatus::kConnecting, VolumeStatus::kAttaching, "attaching"},
      {AttachmentStatus::kAttaching, VolumeStatus::kAttaching, "attaching"},
      {AttachmentStatus::kAttached, VolumeStatus::kInUse, "attached"},
      {AttachmentStatus::kDetachingQueued, VolumeStatus::kDetaching, "detaching"},
      {AttachmentStatus::kDetaching, VolumeStatus::kDetaching, "detaching"},
      {AttachmentStatus::kDetached, VolumeStatus::kAvailable, "detached"},
      // A failed export keeps the reservation: the volume is not free for a second host.
      {AttachmentStatus::kErrorAttaching, VolumeStatus::kReserved, "reserved"},
      // A failed detach may leave the volume exported: it still counts as attached.
      {AttachmentStatus::kErrorDetaching, VolumeStatus::kInUse, "attached"},
  };
  ASSERT_EQ(cases.size(), domain::AllAttachmentStatuses().size()) << "a status is not covered";
  for (const Case& c : cases) {
    SCOPED_TRACE(domain::StoredName(c.attachment));
    DerivedAttachState derived = DeriveAttachState({c.attachment});
    EXPECT_EQ(derived.status, c.volume);
    EXPECT_EQ(derived.attach_status, c.attach_status);
  }
}

TEST(DeriveAttachStateTest, PrecedenceIsAttachedThenAttachingThenDetachingThenReserved) {
  using A = AttachmentStatus;
  EXPECT_EQ(DeriveAttachState({A::kReserved, A::kAttached}).status, VolumeStatus::kInUse);
  EXPECT_EQ(DeriveAttachState({A::kAttaching, A::kAttached}).status, VolumeStatus::kInUse);
  EXPECT_EQ(DeriveAttachState({A::kDetaching, A::kAttached}).status, VolumeStatus::kInUse);
  EXPECT_EQ(DeriveAttachState({A::kDetaching, A::kAttaching}).status, VolumeStatus::kAttaching);
  EXPECT_EQ(DeriveAttachState({A::kReserved, A::kAttaching}).status, VolumeStatus::kAttaching);
  EXPECT_EQ(DeriveAttachState({A::kReserved, A::kDetaching}).status, VolumeStatus::kDetaching);
  EXPECT_EQ(DeriveAttachState({A::kErrorDetaching, A::kAttaching}).status, VolumeStatus::kInUse);
  EXPECT_EQ(DeriveAttachState({A::kErrorAttaching, A::kReserved}).status, VolumeStatus::kReserved);
  EXPECT_EQ(DeriveAttachState({A::kDetached, A::kErrorAttaching}).status, VolumeStatus::kReserved);
  EXPECT_EQ(DeriveAttachState({A::kDetached}).status, VolumeStatus::kAvailable);
}

TEST(DeriveAttachStateTest, EveryCombinationOfUpToThreeStatusesTakesTheHighestInAnyOrder) {
  const std::vector<AttachmentStatus> all = EveryAttachmentStatus();
  int checked = 0;
  for (AttachmentStatus a : all) {
    for (AttachmentStatus b : all) {
      for (AttachmentStatus c : all) {
        for (const std::vector<AttachmentStatus>& statuses :
             {std::vector<AttachmentStatus>{a},
              std::vector<AttachmentStatus>{a, b},
              std::vector<AttachmentStatus>{a, b, c},
              std::vector<AttachmentStatus>{c, b, a}}) {
          DerivedAttachState expected = ExpectedFor(statuses);
          DerivedAttachState derived = DeriveAttachState(statuses);
          ASSERT_EQ(derived.status, expected.status) << Names(statuses);
          ASSERT_EQ(derived.attach_status, expected.attach_status) << Names(statuses);
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, static_cast<int>(all.size() * all.size() * all.size() * 4));
}

TEST(DeriveAttachStateTest, OnlyTheFiveAttachStatusesAreInTheFamily) {
  const std::vector<VolumeStatus> family = {VolumeStatus::kAvailable,
                                            VolumeStatus::kReserved,
                                            VolumeStatus::kAttaching,
                                            VolumeStatus::kInUse,
                                            VolumeStatus::kDetaching};
  for (const auto& info : domain::AllVolumeStatuses()) {
    SCOPED_TRACE(info.stored);
    bool expected = std::find(family.begin(), family.end(), info.status) != family.end();
    EXPECT_EQ(InAttachFamily(info.status), expected);
  }
}

// ---------------------------------------------------------------------------------------------
// RefreshVolumeAttachState

TEST_F(AttachmentStateTest, RefreshWritesTheDerivedStatusWithANewVersion) {
  std::string volume = InsertVolume(VolumeStatus::kAvailable);
  InsertAttachment(volume, AttachmentStatus::kReserved);
  std::string attached = InsertAttachment(volume, AttachmentStatus::kAttaching);

  ASSERT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
  ExpectVolume(volume, VolumeStatus::kAttaching, "attaching");
  std::optional<std::string> first_version = TextColumn(VolumeRow(volume), "operation_id");
  ASSERT_TRUE(first_version.has_value()) << "the write carries no version";

  SetAttachment(store_, attached, AttachmentStatus::kAttached);
  ASSERT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
  std::optional<std::string> second_version = TextColumn(VolumeRow(volume), "operation_id");
  ASSERT_TRUE(second_version.has_value());
  EXPECT_NE(*first_version, *second_version) << "a second write kept the version";
}

TEST_F(AttachmentStateTest, RefreshOfAConsistentVolumeWritesNothing) {
  std::string volume = InsertVolume(VolumeStatus::kAvailable);
  InsertAttachment(volume, AttachmentStatus::kReserved);
  ASSERT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
  ports::Row before = VolumeRow(volume);

  clock_.Advance(std::chrono::seconds(5));
  int writes = 0;
  hooked_.SetHook([&](StoreCall call, ports::Table) {
    if (call == StoreCall::kConditionalUpdate) {
      ++writes;
    }
  });
  ASSERT_TRUE(RefreshVolumeAttachState(hooked_, clock_, volume).has_value());
  EXPECT_EQ(writes, 0);
  EXPECT_EQ(VolumeRow(volume), before);
}

TEST_F(AttachmentStateTest, RefreshIgnoresDeletedAttachmentsAndOtherVolumesAttachments) {
  std::string volume = InsertVolume(VolumeStatus::kInUse);
  std::string other = InsertVolume(VolumeStatus::kAvailable);
  InsertAttachment(volume, AttachmentStatus::kAttached, /*deleted=*/true);
  InsertAttachment(other, AttachmentStatus::kAttached);

  ASSERT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
  ExpectVolume(other, VolumeStatus::kAvailable, "detached");  // Not refreshed: untouched.
}

TEST_F(AttachmentStateTest, RefreshLeavesStatusesOutsideTheAttachFamilyAlone) {
  for (const auto& info : domain::AllVolumeStatuses()) {
    if (InAttachFamily(info.status)) {
      continue;
    }
    SCOPED_TRACE(info.stored);
    std::string volume = InsertVolume(info.status);
    InsertAttachment(volume, AttachmentStatus::kAttached);
    ports::Row before = VolumeRow(volume);
    ASSERT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
    EXPECT_EQ(VolumeRow(volume), before);
  }
}

TEST_F(AttachmentStateTest, RefreshLeavesADeletedVolumeAlone) {
  std::string volume = InsertVolume(VolumeStatus::kAvailable, /*deleted=*/true);
  InsertAttachment(volume, AttachmentStatus::kAttached);
  ports::Row before = VolumeRow(volume);
  ASSERT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
  EXPECT_EQ(VolumeRow(volume), before);
}

TEST_F(AttachmentStateTest, RefreshOfAnUnknownVolumeIsNotFound) {
  auto refreshed = RefreshVolumeAttachState(store_, clock_, NewUuid());
  ASSERT_FALSE(refreshed.has_value());
  EXPECT_EQ(refreshed.error().code, ErrorCode::kNotFound);
}

// Writer A reads the volume and the attachments (reserved). Before A writes, writer B attaches
// the attachment and refreshes completely (in-use). A's write, derived from what it read, would
// put the volume back to reserved; the version check refuses it, A reads again and keeps in-use.
TEST_F(AttachmentStateTest, AWriterThatReadAnOlderSetOfAttachmentsReReadsInsteadOfWriting) {
  std::string volume = InsertVolume(VolumeStatus::kAvailable);
  std::string attachment = InsertAttachment(volume, AttachmentStatus::kReserved);

  int volume_reads = 0;
  bool interleaved = false;
  hooked_.SetHook([&](StoreCall call, ports::Table table) {
    if (call == StoreCall::kGet && table == ports::Table::kVolumes) {
      ++volume_reads;
    }
    // After A's first list has read the attachments, before its write.
    if (call == StoreCall::kConditionalUpdate && table == ports::Table::kVolumes && !interleaved) {
      interleaved = true;
      SetAttachment(store_, attachment, AttachmentStatus::kAttached);
      ASSERT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
      ExpectVolume(volume, VolumeStatus::kInUse, "attached");
    }
  });

  ASSERT_TRUE(RefreshVolumeAttachState(hooked_, clock_, volume).has_value());
  EXPECT_TRUE(interleaved);
  EXPECT_GE(volume_reads, 2) << "A never read the volume again";
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
}

// Writer B read the volume and the final attachments (attached). Before B writes, a writer that
// read an older set (reserved) writes its stale result. B's write then fails the version check,
// B re-reads and writes in-use over the stale value: the last write reflects every change.
TEST_F(AttachmentStateTest, AStaleWriteThatLandsFirstIsOverwrittenByTheRetry) {
  std::string volume = InsertVolume(VolumeStatus::kAvailable);
  InsertAttachment(volume, AttachmentStatus::kAttached);

  int writes = 0;
  hooked_.SetHook([&](StoreCall call, ports::Table table) {
    if (call != StoreCall::kConditionalUpdate || table != ports::Table::kVolumes) {
      return;
    }
    if (++writes == 1) {
      auto stale = store_.ConditionalUpdate(ports::Table::kVolumes,
                                            volume,
                                            {{"status", Status(VolumeStatus::kReserved)},
                                             {"attach_status", "reserved"},
                                             {"operation_id", NewUuid()}},
                                            {},
                                            {});
      ASSERT_TRUE(stale.has_value() && stale->has_value());
    }
  });

  ASSERT_TRUE(RefreshVolumeAttachState(hooked_, clock_, volume).has_value());
  EXPECT_EQ(writes, 2) << "the first write should have lost and the second won";
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
}

// A status change that takes the volume out of the family between the read and the write (a
// backup starting) is kept: the refresh does not write the derived status over it.
TEST_F(AttachmentStateTest, AVolumeThatLeftTheFamilyMeanwhileIsNotOverwritten) {
  std::string volume = InsertVolume(VolumeStatus::kAvailable);
  InsertAttachment(volume, AttachmentStatus::kReserved);

  bool interleaved = false;
  hooked_.SetHook([&](StoreCall call, ports::Table table) {
    if (call == StoreCall::kConditionalUpdate && table == ports::Table::kVolumes && !interleaved) {
      interleaved = true;
      auto backing_up = store_.ConditionalUpdate(
          ports::Table::kVolumes,
          volume,
          {{"status", Status(VolumeStatus::kBackingUp)}, {"operation_id", NewUuid()}},
          {},
          {});
      ASSERT_TRUE(backing_up.has_value() && backing_up->has_value());
    }
  });

  ASSERT_TRUE(RefreshVolumeAttachState(hooked_, clock_, volume).has_value());
  EXPECT_TRUE(interleaved);
  EXPECT_EQ(TextColumn(VolumeRow(volume), "status"), "backing-up");
}

TEST_F(AttachmentStateTest, AVersionThatNeverSettlesEndsInConflictAfterBoundedAttempts) {
  std::string volume = InsertVolume(VolumeStatus::kAvailable);
  InsertAttachment(volume, AttachmentStatus::kAttached);

  int writes = 0;
  hooked_.SetHook([&](StoreCall call, ports::Table table) {
    if (call != StoreCall::kConditionalUpdate || table != ports::Table::kVolumes) {
      return;
    }
    ++writes;
    ASSERT_LT(writes, 1000) << "the refresh does not bound its attempts";
    auto bumped = store_.ConditionalUpdate(
        ports::Table::kVolumes, volume, {{"operation_id", NewUuid()}}, {}, {});
    ASSERT_TRUE(bumped.has_value() && bumped->has_value());
  });

  auto refreshed = RefreshVolumeAttachState(hooked_, clock_, volume);
  ASSERT_FALSE(refreshed.has_value());
  EXPECT_EQ(refreshed.error().code, ErrorCode::kConflict);
  EXPECT_GT(writes, 1);
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");  // Never written.
}

// 8 writers, each owning one attachment of the volume: each changes its attachment and then
// refreshes, a fixed number of rounds. Once all are done, the volume must show what the final
// attachments give, and no refresh may have given up.
TEST_F(AttachmentStateTest, EightConcurrentWritersEndConsistentWithTheFinalAttachments) {
  constexpr int kWriters = 8;
  constexpr int kRounds = 200;
  const std::vector<AttachmentStatus> choices = {AttachmentStatus::kReserved,
                                                 AttachmentStatus::kAttachingQueued,
                                                 AttachmentStatus::kAttaching,
                                                 AttachmentStatus::kAttached,
                                                 AttachmentStatus::kDetachingQueued,
                                                 AttachmentStatus::kDetaching,
                                                 AttachmentStatus::kErrorAttaching,
                                                 AttachmentStatus::kErrorDetaching};
  std::string volume = InsertVolume(VolumeStatus::kAvailable);
  std::vector<std::string> attachments;
  attachments.reserve(kWriters);
  for (int i = 0; i < kWriters; ++i) {
    attachments.push_back(InsertAttachment(volume, AttachmentStatus::kReserved));
  }
  std::vector<AttachmentStatus> final_statuses(kWriters, AttachmentStatus::kReserved);
  std::atomic<int> failed_refreshes{0};
  std::latch start(kWriters);
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      std::mt19937 rng(static_cast<std::mt19937::result_type>(1000 + i));
      start.arrive_and_wait();
      for (int round = 0; round < kRounds; ++round) {
        AttachmentStatus status = choices[rng() % choices.size()];
        auto changed =
            store_.ConditionalUpdate(ports::Table::kAttachments,
                                     attachments[static_cast<std::size_t>(i)],
                                     {{"status", std::string(domain::StoredName(status))}},
                                     {},
                                     {});
        if (!changed || !changed->has_value()) {
          failed_refreshes.fetch_add(1);
          continue;
        }
        final_statuses[static_cast<std::size_t>(i)] = status;
        if (!RefreshVolumeAttachState(store_, clock_, volume)) {
          failed_refreshes.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& writer : writers) {
    writer.join();
  }
  EXPECT_EQ(failed_refreshes.load(), 0);
  DerivedAttachState expected = ExpectedFor(final_statuses);
  SCOPED_TRACE(Names(final_statuses));
  ExpectVolume(volume, expected.status, expected.attach_status);
}

}  // namespace
}  // namespace clinker::services
