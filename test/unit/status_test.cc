// Goal: pin down the status model of domain/status.h: for every kind of resource (volume,
// snapshot, attachment, backup) which API status each internal status is shown as, its phase and
// pending operation, that "queued" and "in progress" differ inside but look the same through the
// API, that stored names parse back exactly (and nothing else parses); and what every operation
// is: its name on the wire, the kind of resource it writes, how it uses it, whether it may be
// redone, and the statuses its target takes when queued, started, done and failed.
//
// Method: explicit expected tables written here, independent of the tables in status.cc, so a
// changed or added status or operation fails a test until this file is updated on purpose. One
// templated set of checks runs over each kind's table (exact contents, Describe / StoredName /
// ApiName, parsing, ShownAs, DescribeStored); per-kind tests spell out the API filters. The
// operation tests tie the tables together (every operation's statuses exist for its target kind,
// with the phase and operation the status table gives them).
#include "clinker/domain/status.h"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clinker::domain {

// Readable failure messages instead of byte dumps.
static void PrintTo(VolumeStatus status, std::ostream* out) {
  *out << "volume:" << StoredName(status);
}

static void PrintTo(SnapshotStatus status, std::ostream* out) {
  *out << "snapshot:" << StoredName(status);
}

static void PrintTo(AttachmentStatus status, std::ostream* out) {
  *out << "attachment:" << StoredName(status);
}

static void PrintTo(BackupStatus status, std::ostream* out) {
  *out << "backup:" << StoredName(status);
}

static void PrintTo(Operation operation, std::ostream* out) {
  *out << OperationName(operation);
}

static std::string_view KindName(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kVolume:
      return "volume";
    case ResourceKind::kSnapshot:
      return "snapshot";
    case ResourceKind::kAttachment:
      return "attachment";
    case ResourceKind::kBackup:
      return "backup";
  }
  return "unknown kind";
}

static void PrintTo(ResourceKind kind, std::ostream* out) {
  *out << KindName(kind);
}

static void PrintTo(Access access, std::ostream* out) {
  *out << (access == Access::kRead ? "read" : "write");
}

static void PrintTo(Phase phase, std::ostream* out) {
  switch (phase) {
    case Phase::kQueued:
      *out << "queued";
      return;
    case Phase::kInProgress:
      *out << "in_progress";
      return;
    case Phase::kAtRest:
      *out << "at_rest";
      return;
    case Phase::kDeleted:
      *out << "deleted";
      return;
  }
  *out << "unknown phase";
}

static void PrintTo(const StatusView& view, std::ostream* out) {
  *out << view.stored << " (api " << view.api << ")";
}

namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr ResourceKind kAllKinds[] = {ResourceKind::kVolume,
                                      ResourceKind::kSnapshot,
                                      ResourceKind::kAttachment,
                                      ResourceKind::kBackup};

struct Expected {
  std::string_view stored;
  std::string_view api;
  Phase phase;
  std::optional<Operation> operation;
};

using O = Operation;
constexpr Phase kQ = Phase::kQueued;
constexpr Phase kP = Phase::kInProgress;
constexpr Phase kR = Phase::kAtRest;
constexpr Phase kD = Phase::kDeleted;
constexpr std::nullopt_t kNone = std::nullopt;

const std::map<VolumeStatus, Expected>& ExpectedVolumeStatuses() {
  using V = VolumeStatus;
  static const auto* const kExpected = new std::map<VolumeStatus, Expected>{
      {V::kCreatingQueued, {"creating_queued", "creating", kQ, O::kCreateVolume}},
      {V::kCreating, {"creating", "creating", kP, O::kCreateVolume}},
      {V::kAvailable, {"available", "available", kR, kNone}},
      {V::kDeletingQueued, {"deleting_queued", "deleting", kQ, O::kDeleteVolume}},
      {V::kDeleting, {"deleting", "deleting", kP, O::kDeleteVolume}},
      {V::kDeleted, {"deleted", "deleted", kD, kNone}},
      {V::kError, {"error", "error", kR, kNone}},
      {V::kErrorDeleting, {"error_deleting", "error_deleting", kR, kNone}},
      {V::kExtendingQueued, {"extending_queued", "extending", kQ, O::kExtendVolume}},
      {V::kExtending, {"extending", "extending", kP, O::kExtendVolume}},
      {V::kErrorExtending, {"error_extending", "error_extending", kR, kNone}},
      // Derived from the volume's attachments, or its backups being taken: at rest for the rules.
      {V::kReserved, {"reserved", "reserved", kR, kNone}},
      {V::kAttaching, {"attaching", "attaching", kR, kNone}},
      {V::kInUse, {"in-use", "in-use", kR, kNone}},
      {V::kDetaching, {"detaching", "detaching", kR, kNone}},
      {V::kBackingUp, {"backing-up", "backing-up", kR, kNone}},
      {V::kRestoringQueued, {"restoring_queued", "restoring-backup", kQ, O::kRestoreBackup}},
      {V::kRestoring, {"restoring", "restoring-backup", kP, O::kRestoreBackup}},
      {V::kErrorRestoring, {"error_restoring", "error_restoring", kR, kNone}},
      // Set by an admin's os-reset_status: shown as the operation's status, at rest.
      {V::kCreatingByAdmin, {"creating_by_admin", "creating", kR, kNone}},
      {V::kDeletingByAdmin, {"deleting_by_admin", "deleting", kR, kNone}},
      {V::kExtendingByAdmin, {"extending_by_admin", "extending", kR, kNone}},
      {V::kRestoringByAdmin, {"restoring_by_admin", "restoring-backup", kR, kNone}},
      {V::kMaintenance, {"maintenance", "maintenance", kR, kNone}},
      // Offered through a volume transfer: no job is pending.
      {V::kAwaitingTransfer, {"awaiting-transfer", "awaiting-transfer", kR, kNone}},
  };
  return *kExpected;
}

const std::map<SnapshotStatus, Expected>& ExpectedSnapshotStatuses() {
  using S = SnapshotStatus;
  static const auto* const kExpected = new std::map<SnapshotStatus, Expected>{
      {S::kCreatingQueued, {"creating_queued", "creating", kQ, O::kCreateSnapshot}},
      {S::kCreating, {"creating", "creating", kP, O::kCreateSnapshot}},
      {S::kAvailable, {"available", "available", kR, kNone}},
      {S::kDeletingQueued, {"deleting_queued", "deleting", kQ, O::kDeleteSnapshot}},
      {S::kDeleting, {"deleting", "deleting", kP, O::kDeleteSnapshot}},
      {S::kDeleted, {"deleted", "deleted", kD, kNone}},
      {S::kError, {"error", "error", kR, kNone}},
      {S::kErrorDeleting, {"error_deleting", "error_deleting", kR, kNone}},
      {S::kCreatingByAdmin, {"creating_by_admin", "creating", kR, kNone}},
      {S::kDeletingByAdmin, {"deleting_by_admin", "deleting", kR, kNone}},
      {S::kBackingUp, {"backing-up", "backing-up", kR, kNone}},
  };
  return *kExpected;
}

const std::map<AttachmentStatus, Expected>& ExpectedAttachmentStatuses() {
  using A = AttachmentStatus;
  static const auto* const kExpected = new std::map<AttachmentStatus, Expected>{
      {A::kReserved, {"reserved", "reserved", kR, kNone}},
      {A::kAttachingQueued, {"attaching_queued", "attaching", kQ, O::kAttachVolume}},
      {A::kConnecting, {"connecting", "attaching", kP, O::kAttachVolume}},
      // Exported, waiting for the client's os-complete: no job is pending.
      {A::kAttaching, {"attaching", "attaching", kR, kNone}},
      {A::kAttached, {"attached", "attached", kR, kNone}},
      {A::kDetachingQueued, {"detaching_queued", "detaching", kQ, O::kDetachVolume}},
      {A::kDetaching, {"detaching", "detaching", kP, O::kDetachVolume}},
      {A::kDetached, {"detached", "detached", kD, kNone}},
      {A::kErrorAttaching, {"error_attaching", "error_attaching", kR, kNone}},
      {A::kErrorDetaching, {"error_detaching", "error_detaching", kR, kNone}},
  };
  return *kExpected;
}

const std::map<BackupStatus, Expected>& ExpectedBackupStatuses() {
  using B = BackupStatus;
  static const auto* const kExpected = new std::map<BackupStatus, Expected>{
      {B::kCreatingQueued, {"creating_queued", "creating", kQ, O::kCreateBackup}},
      {B::kCreating, {"creating", "creating", kP, O::kCreateBackup}},
      {B::kAvailable, {"available", "available", kR, kNone}},
      {B::kDeletingQueued, {"deleting_queued", "deleting", kQ, O::kDeleteBackup}},
      {B::kDeleting, {"deleting", "deleting", kP, O::kDeleteBackup}},
      {B::kDeleted, {"deleted", "deleted", kD, kNone}},
      {B::kError, {"error", "error", kR, kNone}},
      {B::kErrorDeleting, {"error_deleting", "error_deleting", kR, kNone}},
      // Being read by a restore, whose target is the volume.
      {B::kRestoring, {"restoring", "restoring", kR, kNone}},
  };
  return *kExpected;
}

// The stored names of every status of `kind`, from the expected tables.
std::vector<std::string_view> ExpectedStoredNames(ResourceKind kind) {
  std::vector<std::string_view> names;
  auto collect = [&](const auto& table) {
    for (const auto& [status, expected] : table) {
      names.push_back(expected.stored);
    }
  };
  switch (kind) {
    case ResourceKind::kVolume:
      collect(ExpectedVolumeStatuses());
      break;
    case ResourceKind::kSnapshot:
      collect(ExpectedSnapshotStatuses());
      break;
    case ResourceKind::kAttachment:
      collect(ExpectedAttachmentStatuses());
      break;
    case ResourceKind::kBackup:
      collect(ExpectedBackupStatuses());
      break;
  }
  return names;
}

// Names that parse as no status of any kind.
constexpr std::string_view kUnknownStoredNames[] = {"",
                                                    "Creating",
                                                    "CREATING_QUEUED",
                                                    "creating ",
                                                    " available",
                                                    "queued",
                                                    "in_use",
                                                    "creating-queued",
                                                    "deleted\n",
                                                    "extended",
                                                    "error-extending",
                                                    "restoring-backup"};

// The checks every kind's table must pass. `parse` and `shown_as` are the kind's functions.
template <class Status>
void CheckKind(ResourceKind kind,
               const std::map<Status, Expected>& expected_table,
               std::span<const StatusInfo<Status>> all,
               const std::function<std::optional<Status>(std::string_view)>& parse,
               const std::function<std::vector<Status>(std::string_view)>& shown_as) {
  SCOPED_TRACE(std::string(KindName(kind)));
  // Exactly the expected statuses, each described as expected.
  ASSERT_EQ(all.size(), expected_table.size())
      << "a status was added or removed: update this test and the API mapping";
  std::set<std::string_view> stored_names;
  for (const StatusInfo<Status>& info : all) {
    auto it = expected_table.find(info.status);
    ASSERT_NE(it, expected_table.end()) << info.stored;
    const Expected& expected = it->second;
    EXPECT_EQ(info.stored, expected.stored);
    EXPECT_EQ(info.api, expected.api) << info.stored;
    EXPECT_EQ(info.phase, expected.phase) << info.stored;
    EXPECT_EQ(info.operation, expected.operation) << info.stored;
    stored_names.insert(info.stored);
  }
  EXPECT_EQ(stored_names.size(), all.size()) << "two statuses share a stored name";
  for (const auto& [status, expected] : expected_table) {
    // The helpers agree with the table.
    EXPECT_EQ(Describe(status).status, status) << expected.stored;
    EXPECT_EQ(StoredName(status), expected.stored);
    EXPECT_EQ(ApiName(status), expected.api) << expected.stored;
    // Stored names round-trip.
    EXPECT_EQ(parse(expected.stored), status) << expected.stored;
    // Every status is found under its API name, with only statuses of that API name.
    const std::vector<Status> shown = shown_as(expected.api);
    EXPECT_EQ(std::count(shown.begin(), shown.end(), status), 1) << expected.stored;
    for (Status other : shown) {
      EXPECT_EQ(ApiName(other), expected.api) << expected.stored;
    }
    // DescribeStored gives the same view.
    const std::optional<StatusView> view = DescribeStored(kind, expected.stored);
    ASSERT_TRUE(view.has_value()) << expected.stored;
    EXPECT_EQ(view->stored, expected.stored);
    EXPECT_EQ(view->api, expected.api) << expected.stored;
    EXPECT_EQ(view->phase, expected.phase) << expected.stored;
    EXPECT_EQ(view->operation, expected.operation) << expected.stored;
  }
  // Nothing else parses, nor a status of another kind that this kind does not have.
  std::vector<std::string_view> unknown(std::begin(kUnknownStoredNames),
                                        std::end(kUnknownStoredNames));
  for (ResourceKind other : kAllKinds) {
    for (std::string_view name : ExpectedStoredNames(other)) {
      if (stored_names.count(name) == 0) {
        unknown.push_back(name);
      }
    }
  }
  for (std::string_view name : unknown) {
    EXPECT_EQ(parse(name), std::nullopt) << "'" << name << "'";
    EXPECT_EQ(DescribeStored(kind, name), std::nullopt) << "'" << name << "'";
  }
  EXPECT_THAT(shown_as(""), IsEmpty());
}

// ---- Each kind's table. ----

TEST(StatusTableTest, VolumeStatusesAreExactlyAsExpected) {
  CheckKind<VolumeStatus>(ResourceKind::kVolume,
                          ExpectedVolumeStatuses(),
                          AllVolumeStatuses(),
                          ParseStoredVolumeStatus,
                          StatusesShownAs);
}

TEST(StatusTableTest, SnapshotStatusesAreExactlyAsExpected) {
  CheckKind<SnapshotStatus>(ResourceKind::kSnapshot,
                            ExpectedSnapshotStatuses(),
                            AllSnapshotStatuses(),
                            ParseStoredSnapshotStatus,
                            SnapshotStatusesShownAs);
}

TEST(StatusTableTest, AttachmentStatusesAreExactlyAsExpected) {
  CheckKind<AttachmentStatus>(ResourceKind::kAttachment,
                              ExpectedAttachmentStatuses(),
                              AllAttachmentStatuses(),
                              ParseStoredAttachmentStatus,
                              AttachmentStatusesShownAs);
}

TEST(StatusTableTest, BackupStatusesAreExactlyAsExpected) {
  CheckKind<BackupStatus>(ResourceKind::kBackup,
                          ExpectedBackupStatuses(),
                          AllBackupStatuses(),
                          ParseStoredBackupStatus,
                          BackupStatusesShownAs);
}

// ---- API filters, spelled out. ----

TEST(VolumeStatusTest, StatusesShownAsCollectsEveryInternalStatus) {
  using V = VolumeStatus;
  EXPECT_THAT(StatusesShownAs("creating"),
              UnorderedElementsAre(V::kCreatingQueued, V::kCreating, V::kCreatingByAdmin));
  EXPECT_THAT(StatusesShownAs("deleting"),
              UnorderedElementsAre(V::kDeletingQueued, V::kDeleting, V::kDeletingByAdmin));
  EXPECT_THAT(StatusesShownAs("extending"),
              UnorderedElementsAre(V::kExtendingQueued, V::kExtending, V::kExtendingByAdmin));
  EXPECT_THAT(StatusesShownAs("restoring-backup"),
              UnorderedElementsAre(V::kRestoringQueued, V::kRestoring, V::kRestoringByAdmin));
  EXPECT_THAT(StatusesShownAs("maintenance"), UnorderedElementsAre(V::kMaintenance));
  EXPECT_THAT(StatusesShownAs("available"), UnorderedElementsAre(V::kAvailable));
  EXPECT_THAT(StatusesShownAs("deleted"), UnorderedElementsAre(V::kDeleted));
  EXPECT_THAT(StatusesShownAs("error"), UnorderedElementsAre(V::kError));
  EXPECT_THAT(StatusesShownAs("error_deleting"), UnorderedElementsAre(V::kErrorDeleting));
  EXPECT_THAT(StatusesShownAs("error_extending"), UnorderedElementsAre(V::kErrorExtending));
  EXPECT_THAT(StatusesShownAs("error_restoring"), UnorderedElementsAre(V::kErrorRestoring));
  EXPECT_THAT(StatusesShownAs("awaiting-transfer"), UnorderedElementsAre(V::kAwaitingTransfer));
  EXPECT_THAT(StatusesShownAs("reserved"), UnorderedElementsAre(V::kReserved));
  EXPECT_THAT(StatusesShownAs("attaching"), UnorderedElementsAre(V::kAttaching));
  EXPECT_THAT(StatusesShownAs("in-use"), UnorderedElementsAre(V::kInUse));
  EXPECT_THAT(StatusesShownAs("detaching"), UnorderedElementsAre(V::kDetaching));
  EXPECT_THAT(StatusesShownAs("backing-up"), UnorderedElementsAre(V::kBackingUp));
  // Internal names are not API statuses, and the match is exact.
  EXPECT_THAT(StatusesShownAs("creating_queued"), IsEmpty());
  EXPECT_THAT(StatusesShownAs("extending_queued"), IsEmpty());
  EXPECT_THAT(StatusesShownAs("restoring"), IsEmpty());
  EXPECT_THAT(StatusesShownAs("Creating"), IsEmpty());
  EXPECT_THAT(StatusesShownAs("in_use"), IsEmpty());
}

// os-reset_status: every API status an admin may set maps to a status at rest.
TEST(StatusSetByAdminTest, EverySettableStatusIsAtRestAndShownAsAsked) {
  for (std::string_view api : {"available",
                               "error",
                               "error_deleting",
                               "error_extending",
                               "error_restoring",
                               "reserved",
                               "attaching",
                               "in-use",
                               "detaching",
                               "backing-up",
                               "maintenance",
                               "creating",
                               "deleting",
                               "extending",
                               "restoring-backup"}) {
    SCOPED_TRACE(std::string(api));
    auto status = VolumeStatusSetByAdmin(api);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(Describe(*status).phase, Phase::kAtRest);
    EXPECT_EQ(ApiName(*status), api);
  }
  for (std::string_view api : {"available", "error", "error_deleting", "creating", "deleting"}) {
    SCOPED_TRACE(std::string(api));
    auto status = SnapshotStatusSetByAdmin(api);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(Describe(*status).phase, Phase::kAtRest);
    EXPECT_EQ(ApiName(*status), api);
  }
  for (std::string_view refused : {"creating_queued", "deleted", "restoring", "bogus", ""}) {
    EXPECT_FALSE(VolumeStatusSetByAdmin(refused).has_value()) << refused;
    EXPECT_FALSE(SnapshotStatusSetByAdmin(refused).has_value()) << refused;
  }
}

TEST(SnapshotStatusTest, StatusesShownAsCollectsEveryInternalStatus) {
  using S = SnapshotStatus;
  EXPECT_THAT(SnapshotStatusesShownAs("creating"),
              UnorderedElementsAre(S::kCreatingQueued, S::kCreating, S::kCreatingByAdmin));
  EXPECT_THAT(SnapshotStatusesShownAs("deleting"),
              UnorderedElementsAre(S::kDeletingQueued, S::kDeleting, S::kDeletingByAdmin));
  EXPECT_THAT(SnapshotStatusesShownAs("available"), UnorderedElementsAre(S::kAvailable));
  EXPECT_THAT(SnapshotStatusesShownAs("deleted"), UnorderedElementsAre(S::kDeleted));
  EXPECT_THAT(SnapshotStatusesShownAs("error"), UnorderedElementsAre(S::kError));
  EXPECT_THAT(SnapshotStatusesShownAs("error_deleting"), UnorderedElementsAre(S::kErrorDeleting));
  // Snapshots are never extended, and internal names are not API statuses.
  EXPECT_THAT(SnapshotStatusesShownAs("extending"), IsEmpty());
  EXPECT_THAT(SnapshotStatusesShownAs("error_extending"), IsEmpty());
  EXPECT_THAT(SnapshotStatusesShownAs("creating_queued"), IsEmpty());
  EXPECT_THAT(SnapshotStatusesShownAs("Available"), IsEmpty());
}

TEST(AttachmentStatusTest, StatusesShownAsCollectsEveryInternalStatus) {
  using A = AttachmentStatus;
  EXPECT_THAT(AttachmentStatusesShownAs("attaching"),
              UnorderedElementsAre(A::kAttachingQueued, A::kConnecting, A::kAttaching));
  EXPECT_THAT(AttachmentStatusesShownAs("detaching"),
              UnorderedElementsAre(A::kDetachingQueued, A::kDetaching));
  EXPECT_THAT(AttachmentStatusesShownAs("reserved"), UnorderedElementsAre(A::kReserved));
  EXPECT_THAT(AttachmentStatusesShownAs("attached"), UnorderedElementsAre(A::kAttached));
  EXPECT_THAT(AttachmentStatusesShownAs("detached"), UnorderedElementsAre(A::kDetached));
  EXPECT_THAT(AttachmentStatusesShownAs("error_attaching"),
              UnorderedElementsAre(A::kErrorAttaching));
  EXPECT_THAT(AttachmentStatusesShownAs("error_detaching"),
              UnorderedElementsAre(A::kErrorDetaching));
  EXPECT_THAT(AttachmentStatusesShownAs("connecting"), IsEmpty());
  EXPECT_THAT(AttachmentStatusesShownAs("attaching_queued"), IsEmpty());
}

TEST(BackupStatusTest, StatusesShownAsCollectsEveryInternalStatus) {
  using B = BackupStatus;
  EXPECT_THAT(BackupStatusesShownAs("creating"),
              UnorderedElementsAre(B::kCreatingQueued, B::kCreating));
  EXPECT_THAT(BackupStatusesShownAs("deleting"),
              UnorderedElementsAre(B::kDeletingQueued, B::kDeleting));
  EXPECT_THAT(BackupStatusesShownAs("available"), UnorderedElementsAre(B::kAvailable));
  EXPECT_THAT(BackupStatusesShownAs("deleted"), UnorderedElementsAre(B::kDeleted));
  EXPECT_THAT(BackupStatusesShownAs("error"), UnorderedElementsAre(B::kError));
  EXPECT_THAT(BackupStatusesShownAs("error_deleting"), UnorderedElementsAre(B::kErrorDeleting));
  EXPECT_THAT(BackupStatusesShownAs("restoring"), UnorderedElementsAre(B::kRestoring));
  EXPECT_THAT(BackupStatusesShownAs("creating_queued"), IsEmpty());
}

// ---- DescribeStored: the kind decides. ----

TEST(DescribeStoredTest, TheKindDecidesWhichOperationAStatusBelongsTo) {
  // The same stored name means another operation (or none) on another kind.
  const std::map<ResourceKind, std::optional<Operation>> creating = {
      {ResourceKind::kVolume, O::kCreateVolume},
      {ResourceKind::kSnapshot, O::kCreateSnapshot},
      {ResourceKind::kBackup, O::kCreateBackup}};
  for (const auto& [kind, operation] : creating) {
    const std::optional<StatusView> view = DescribeStored(kind, "creating");
    ASSERT_TRUE(view.has_value()) << KindName(kind);
    EXPECT_EQ(view->operation, operation) << KindName(kind);
  }
  EXPECT_EQ(DescribeStored(ResourceKind::kAttachment, "creating"), std::nullopt);
  // "attaching": a volume's derived status and an attachment waiting for os-complete, both at
  // rest; "restoring": a volume being written (in progress) but a backup only being read.
  EXPECT_EQ(DescribeStored(ResourceKind::kVolume, "attaching").value().phase, Phase::kAtRest);
  EXPECT_EQ(DescribeStored(ResourceKind::kAttachment, "attaching").value().phase, Phase::kAtRest);
  EXPECT_EQ(DescribeStored(ResourceKind::kVolume, "restoring").value().phase, Phase::kInProgress);
  EXPECT_EQ(DescribeStored(ResourceKind::kBackup, "restoring").value().phase, Phase::kAtRest);
}

// ---- Operations. ----

struct ExpectedOperation {
  Operation operation;
  std::string_view name;
  ResourceKind target;
  Access access;
  bool redoable;
  std::string_view queued;
  std::string_view in_progress;
  std::string_view done;
  Phase done_phase;
  std::string_view failed;
};

// In the order AllOperations() lists them.
const std::vector<ExpectedOperation>& ExpectedOperations() {
  using K = ResourceKind;
  constexpr Access kW = Access::kWrite;
  static const auto* const kExpected = new std::vector<ExpectedOperation>{
      {O::kCreateVolume,
       "create_volume",
       K::kVolume,
       kW,
       false,
       "creating_queued",
       "creating",
       "available",
       kR,
       "error"},
      {O::kDeleteVolume,
       "delete_volume",
       K::kVolume,
       kW,
       true,
       "deleting_queued",
       "deleting",
       "deleted",
       kD,
       "error_deleting"},
      {O::kExtendVolume,
       "extend_volume",
       K::kVolume,
       kW,
       true,
       "extending_queued",
       "extending",
       "available",
       kR,
       "error_extending"},
      {O::kCreateSnapshot,
       "create_snapshot",
       K::kSnapshot,
       kW,
       false,
       "creating_queued",
       "creating",
       "available",
       kR,
       "error"},
      {O::kDeleteSnapshot,
       "delete_snapshot",
       K::kSnapshot,
       kW,
       true,
       "deleting_queued",
       "deleting",
       "deleted",
       kD,
       "error_deleting"},
      {O::kAttachVolume,
       "attach_volume",
       K::kAttachment,
       kW,
       true,
       "attaching_queued",
       "connecting",
       "attaching",
       kR,
       "error_attaching"},
      {O::kDetachVolume,
       "detach_volume",
       K::kAttachment,
       kW,
       true,
       "detaching_queued",
       "detaching",
       "detached",
       kD,
       "error_detaching"},
      {O::kCreateBackup,
       "create_backup",
       K::kBackup,
       kW,
       false,
       "creating_queued",
       "creating",
       "available",
       kR,
       "error"},
      {O::kDeleteBackup,
       "delete_backup",
       K::kBackup,
       kW,
       true,
       "deleting_queued",
       "deleting",
       "deleted",
       kD,
       "error_deleting"},
      {O::kRestoreBackup,
       "restore_backup",
       K::kVolume,
       kW,
       false,
       "restoring_queued",
       "restoring",
       "available",
       kR,
       "error_restoring"},
  };
  return *kExpected;
}

TEST(OperationTest, EveryOperationIsListedInOrder) {
  std::vector<Operation> expected;
  for (const ExpectedOperation& row : ExpectedOperations()) {
    expected.push_back(row.operation);
  }
  EXPECT_EQ(std::vector<Operation>(AllOperations().begin(), AllOperations().end()), expected)
      << "an operation was added or removed: update this test";
}

TEST(OperationTest, EveryOperationIsDescribedExactlyAsExpected) {
  for (const ExpectedOperation& row : ExpectedOperations()) {
    SCOPED_TRACE(std::string(row.name));
    EXPECT_EQ(OperationName(row.operation), row.name);
    EXPECT_EQ(TargetKindOf(row.operation), row.target);
    EXPECT_EQ(AccessOf(row.operation), row.access);
    EXPECT_EQ(IsRedoable(row.operation), row.redoable);
    EXPECT_EQ(QueuedStatusOf(row.operation), row.queued);
    EXPECT_EQ(InProgressStatusOf(row.operation), row.in_progress);
    EXPECT_EQ(DoneStatusOf(row.operation), row.done);
    EXPECT_EQ(FailedStatusOf(row.operation), row.failed);
  }
}

TEST(OperationTest, TheFiveVolumeAndSnapshotOperationsAreAsTheIssueSays) {
  // create_volume (blank or a clone), delete_volume, extend_volume, create_snapshot and
  // delete_snapshot: the deletes and the extend (growing to a given size converges) are redone
  // after a node died in them; half a volume or half a snapshot is not.
  const std::map<Operation, bool> redoable = {{O::kCreateVolume, false},
                                              {O::kDeleteVolume, true},
                                              {O::kExtendVolume, true},
                                              {O::kCreateSnapshot, false},
                                              {O::kDeleteSnapshot, true}};
  for (const auto& [operation, expected] : redoable) {
    EXPECT_EQ(IsRedoable(operation), expected) << OperationName(operation);
    EXPECT_EQ(AccessOf(operation), Access::kWrite) << OperationName(operation);
  }
  EXPECT_THAT(std::vector<Operation>(AllOperations().begin(), AllOperations().begin() + 5),
              ElementsAre(O::kCreateVolume,
                          O::kDeleteVolume,
                          O::kExtendVolume,
                          O::kCreateSnapshot,
                          O::kDeleteSnapshot));
}

TEST(OperationTest, NamesRoundTripAndUnknownNamesAreRejected) {
  std::set<std::string_view> names;
  for (Operation operation : AllOperations()) {
    EXPECT_EQ(ParseOperation(OperationName(operation)), operation);
    names.insert(OperationName(operation));
  }
  EXPECT_EQ(names.size(), AllOperations().size()) << "two operations share a name";
  for (std::string_view name : {"",
                                "create",
                                "Create_Volume",
                                "delete_volume ",
                                "resize_volume",
                                "extend",
                                "snapshot_create",
                                "attach",
                                "backup",
                                "unknown"}) {
    EXPECT_EQ(ParseOperation(name), std::nullopt) << "'" << name << "'";
  }
}

// Each operation's statuses are statuses of its target kind, with the phase and operation the
// status table gives them; done and failed statuses leave no operation pending.
TEST(OperationTest, StatusesOfEachOperationBelongToItsTargetKind) {
  for (const ExpectedOperation& row : ExpectedOperations()) {
    SCOPED_TRACE(std::string(row.name));
    const std::optional<StatusView> queued = DescribeStored(row.target, row.queued);
    const std::optional<StatusView> in_progress = DescribeStored(row.target, row.in_progress);
    const std::optional<StatusView> done = DescribeStored(row.target, row.done);
    const std::optional<StatusView> failed = DescribeStored(row.target, row.failed);
    ASSERT_TRUE(queued && in_progress && done && failed);
    EXPECT_EQ(queued->phase, Phase::kQueued);
    EXPECT_EQ(queued->operation, row.operation);
    EXPECT_EQ(in_progress->phase, Phase::kInProgress);
    EXPECT_EQ(in_progress->operation, row.operation);
    EXPECT_EQ(queued->api, in_progress->api) << "queued and in progress look alike in the API";
    EXPECT_NE(queued->stored, in_progress->stored) << "the database must tell them apart";
    EXPECT_EQ(done->phase, row.done_phase);
    EXPECT_EQ(done->operation, std::nullopt);
    EXPECT_EQ(failed->phase, Phase::kAtRest);
    EXPECT_EQ(failed->operation, std::nullopt);
  }
}

// Every queued or in-progress status names an operation on its kind whose queued or in-progress
// status it is: no status is left pending without a job that can move it on.
TEST(OperationTest, EveryPendingStatusBelongsToAnOperationOfItsKind) {
  for (ResourceKind kind : kAllKinds) {
    for (std::string_view stored : ExpectedStoredNames(kind)) {
      SCOPED_TRACE(std::string(KindName(kind)) + " " + std::string(stored));
      const std::optional<StatusView> view = DescribeStored(kind, stored);
      ASSERT_TRUE(view.has_value());
      if (view->phase != Phase::kQueued && view->phase != Phase::kInProgress) {
        EXPECT_EQ(view->operation, std::nullopt);
        continue;
      }
      ASSERT_TRUE(view->operation.has_value());
      EXPECT_EQ(TargetKindOf(*view->operation), kind);
      EXPECT_EQ(view->phase == Phase::kQueued ? QueuedStatusOf(*view->operation)
                                              : InProgressStatusOf(*view->operation),
                stored);
    }
  }
}

TEST(OperationTest, TypedVolumeStatusesMatchTheStoredNames) {
  int volume_operations = 0;
  for (const ExpectedOperation& row : ExpectedOperations()) {
    if (row.target != ResourceKind::kVolume) {
      continue;  // QueuedStatusFor asserts on an operation of another kind.
    }
    ++volume_operations;
    const VolumeStatus queued = QueuedStatusFor(row.operation);
    const VolumeStatus in_progress = InProgressStatusFor(row.operation);
    EXPECT_EQ(StoredName(queued), row.queued) << row.name;
    EXPECT_EQ(StoredName(in_progress), row.in_progress) << row.name;
    EXPECT_EQ(ApiName(queued), ApiName(in_progress)) << row.name;
  }
  EXPECT_EQ(volume_operations, 4);  // create, delete, extend, restore
}

}  // namespace
}  // namespace clinker::domain
