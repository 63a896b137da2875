// Goal: pin down the stuck-job decision table of domain/stuck_job.h, row by row and through the
// scenarios a worker actually meets (fresh job, redelivery after a node died, late duplicate), for
// the job's target (written, Access as AccessOf) and for its source (only read: Access::kRead).
//
// Method: three independent views, all written here rather than derived from stuck_job.cc.
// 1. The rows themselves: an explicit table of every row's data (phase, relation, access,
//    resource operation, action).
// 2. For every row, hand-built ResourceStates that match it and no earlier row, with writing and
//    reading jobs of every operation that can meet it; a guard makes a new row fail until it
//    gets its own cases.
// 3. Explicit expected-rule tables keyed by stored status, for every kind (volumes, snapshots,
//    attachments, backups), for each operation writing that kind (same and other operation id)
//    and for a read; every cell is checked through DecideJob on the state the status model gives
//    that status. A read never counts as "the same" operation, so reads land only on rows 3, 6,
//    8, 10 and 12.
#include "clinker/domain/stuck_job.h"

#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/domain/status.h"

namespace clinker::domain {

static void PrintTo(JobAction action, std::ostream* out) {
  *out << JobActionName(action);
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

namespace {

using O = Operation;

constexpr Operation kAllOperations[] = {O::kCreateVolume,
                                        O::kDeleteVolume,
                                        O::kExtendVolume,
                                        O::kCreateSnapshot,
                                        O::kDeleteSnapshot,
                                        O::kAttachVolume,
                                        O::kDetachVolume,
                                        O::kCreateBackup,
                                        O::kDeleteBackup,
                                        O::kRestoreBackup};

constexpr ResourceKind kAllKinds[] = {ResourceKind::kVolume,
                                      ResourceKind::kSnapshot,
                                      ResourceKind::kAttachment,
                                      ResourceKind::kBackup};

std::string_view KindName(ResourceKind kind) {
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

std::string_view AccessName(Access access) {
  return access == Access::kRead ? "read" : "write";
}

// What a worker sees after taking the lock on a resource in `status`; `same_operation_id` says
// whether the id stored with the resource is the job's.
ResourceState StateOf(VolumeStatus status, bool same_operation_id) {
  const VolumeStatusInfo& info = Describe(status);
  return ResourceState{info.phase, info.operation, same_operation_id};
}

ResourceState StateOf(SnapshotStatus status, bool same_operation_id) {
  const SnapshotStatusInfo& info = Describe(status);
  return ResourceState{info.phase, info.operation, same_operation_id};
}

ResourceState StateOfStored(ResourceKind kind, std::string_view stored, bool same_operation_id) {
  const std::optional<StatusView> view = DescribeStored(kind, stored);
  EXPECT_TRUE(view.has_value()) << stored;
  if (!view) {
    return {};
  }
  return ResourceState{view->phase, view->operation, same_operation_id};
}

const RuleRow& Row(int rule) {
  for (const RuleRow& row : StuckJobRules()) {
    if (row.rule == rule) {
      return row;
    }
  }
  ADD_FAILURE() << "no row " << rule;
  return StuckJobRules().front();
}

// ---- 1. The rows. ----

struct ExpectedRow {
  int rule;
  Phase phase;
  std::string_view relation;
  std::string_view job_access;
  std::string_view resource_operation;
  JobAction action;
};

// The design's table (docs/ARCHITECTURE.md), row by row.
constexpr ExpectedRow kExpectedRows[] = {
    {1, Phase::kQueued, "same", "any", "any", JobAction::kProceed},
    {2, Phase::kQueued, "same-other-id", "any", "any", JobAction::kDropDuplicate},
    {3, Phase::kQueued, "different", "read", "any", JobAction::kProceed},
    {4, Phase::kQueued, "different", "write", "any", JobAction::kDropDuplicate},
    {5, Phase::kInProgress, "same", "any", "redoable", JobAction::kRedo},
    {6, Phase::kInProgress, "different", "any", "redoable", JobAction::kFailJob},
    {7, Phase::kInProgress, "-", "write", "other", JobAction::kSetErrorThenDrop},
    {8, Phase::kInProgress, "-", "read", "other", JobAction::kSetErrorThenProceed},
    {9, Phase::kAtRest, "-", "write", "any", JobAction::kDropDuplicate},
    {10, Phase::kAtRest, "-", "read", "any", JobAction::kProceed},
    {11, Phase::kDeleted, "-", "write", "any", JobAction::kDropDuplicate},
    {12, Phase::kDeleted, "-", "read", "any", JobAction::kFailJob},
};

TEST(StuckJobRulesTest, EveryRowSaysWhatTheDesignSays) {
  ASSERT_EQ(StuckJobRules().size(), std::size(kExpectedRows))
      << "a row was added or removed: update this file";
  for (std::size_t i = 0; i < std::size(kExpectedRows); ++i) {
    const ExpectedRow& expected = kExpectedRows[i];
    const RuleRow& row = StuckJobRules()[i];
    SCOPED_TRACE("row " + std::to_string(expected.rule));
    EXPECT_EQ(row.rule, expected.rule) << "rows are numbered in order";
    EXPECT_EQ(row.phase, expected.phase);
    EXPECT_EQ(row.relation, expected.relation);
    EXPECT_EQ(row.job_access, expected.job_access);
    EXPECT_EQ(row.resource_operation, expected.resource_operation);
    EXPECT_EQ(row.action, expected.action);
    EXPECT_FALSE(row.why.empty());
  }
}

TEST(StuckJobRulesTest, ActionNamesAreDistinct) {
  const JobAction actions[] = {JobAction::kProceed,
                               JobAction::kRedo,
                               JobAction::kDropDuplicate,
                               JobAction::kFailJob,
                               JobAction::kSetErrorThenDrop,
                               JobAction::kSetErrorThenProceed};
  std::set<std::string_view> names;
  for (JobAction action : actions) {
    names.insert(JobActionName(action));
  }
  EXPECT_EQ(names.size(), std::size(actions));
  EXPECT_EQ(JobActionName(JobAction::kSetErrorThenDrop), "set_error_then_drop");
  EXPECT_EQ(JobActionName(JobAction::kSetErrorThenProceed), "set_error_then_proceed");
}

// ---- 2. Cases per row. ----

struct RowCase {
  int rule;
  ResourceState resource;
  Operation job;
  Access access;
  std::string description;
};

constexpr Access kW = Access::kWrite;
constexpr Access kR = Access::kRead;

std::vector<RowCase> RowCases() {
  const Phase q = Phase::kQueued;
  const Phase p = Phase::kInProgress;
  const Phase r = Phase::kAtRest;
  const Phase d = Phase::kDeleted;
  return {
      {1, {q, O::kCreateVolume, true}, O::kCreateVolume, kW, "queued create, same id"},
      {1, {q, O::kDeleteVolume, true}, O::kDeleteVolume, kW, "queued delete, same id"},
      {1, {q, O::kExtendVolume, true}, O::kExtendVolume, kW, "queued extend, same id"},
      {1, {q, O::kCreateSnapshot, true}, O::kCreateSnapshot, kW, "queued snapshot, same id"},
      {1, {q, O::kDeleteSnapshot, true}, O::kDeleteSnapshot, kW, "queued snapshot delete"},
      {2, {q, O::kCreateVolume, false}, O::kCreateVolume, kW, "queued create, other id"},
      {2, {q, O::kDeleteVolume, false}, O::kDeleteVolume, kW, "queued delete, other id"},
      {2, {q, O::kExtendVolume, false}, O::kExtendVolume, kW, "queued extend, other id"},
      {2, {q, O::kCreateSnapshot, false}, O::kCreateSnapshot, kW, "queued snapshot, other id"},
      {2, {q, O::kDeleteSnapshot, false}, O::kDeleteSnapshot, kW, "queued snapshot delete, other"},
      {3, {q, O::kDeleteVolume, false}, O::kCreateVolume, kR, "clone of a volume queued to delete"},
      {3, {q, O::kExtendVolume, false}, O::kCreateSnapshot, kR, "snapshot of a volume to extend"},
      {3, {q, O::kDeleteSnapshot, false}, O::kCreateVolume, kR, "volume from a snapshot to delete"},
      {3, {q, O::kCreateVolume, true}, O::kCreateVolume, kR, "a read is never the same, same id"},
      {3, {q, O::kCreateVolume, false}, O::kCreateVolume, kR, "a read is never the same, other id"},
      {4, {q, O::kDeleteVolume, false}, O::kCreateVolume, kW, "create job, delete queued"},
      {4, {q, O::kExtendVolume, false}, O::kCreateVolume, kW, "create job, extend queued"},
      {4, {q, O::kCreateVolume, false}, O::kDeleteVolume, kW, "delete job, create queued"},
      {4, {q, O::kExtendVolume, false}, O::kDeleteVolume, kW, "delete job, extend queued"},
      {4, {q, O::kCreateVolume, false}, O::kExtendVolume, kW, "extend job, create queued"},
      {4, {q, O::kDeleteVolume, false}, O::kExtendVolume, kW, "extend job, delete queued"},
      {4, {q, O::kDeleteSnapshot, false}, O::kCreateSnapshot, kW, "snapshot job, delete queued"},
      {4, {q, O::kCreateSnapshot, false}, O::kDeleteSnapshot, kW, "snapshot delete, create queued"},
      {5, {p, O::kDeleteVolume, true}, O::kDeleteVolume, kW, "delete in progress"},
      {5, {p, O::kDeleteVolume, false}, O::kDeleteVolume, kW, "delete in progress, id irrelevant"},
      {5, {p, O::kDeleteSnapshot, true}, O::kDeleteSnapshot, kW, "snapshot delete in progress"},
      {5, {p, O::kDeleteSnapshot, false}, O::kDeleteSnapshot, kW, "snapshot delete, other id"},
      {6, {p, O::kDeleteVolume, false}, O::kCreateVolume, kW, "create job, deleting"},
      {6, {p, O::kDeleteVolume, false}, O::kExtendVolume, kW, "extend job, deleting"},
      {6, {p, O::kDeleteSnapshot, false}, O::kCreateSnapshot, kW, "snapshot job, deleting"},
      {6, {p, O::kDeleteVolume, false}, O::kCreateVolume, kR, "clone of a volume being deleted"},
      {6, {p, O::kDeleteVolume, false}, O::kCreateSnapshot, kR, "snapshot of a volume deleting"},
      {6, {p, O::kDeleteSnapshot, false}, O::kCreateVolume, kR, "volume from a snapshot deleting"},
      {6, {p, O::kDeleteVolume, true}, O::kDeleteVolume, kR, "a read is never the same: no redo"},
      {7, {p, O::kCreateVolume, true}, O::kCreateVolume, kW, "create in progress"},
      {6, {p, O::kExtendVolume, false}, O::kCreateVolume, kW, "create job, extending"},
      {7, {p, O::kCreateVolume, false}, O::kDeleteVolume, kW, "delete job, creating"},
      {6, {p, O::kExtendVolume, false}, O::kDeleteVolume, kW, "delete job, extending"},
      {5, {p, O::kExtendVolume, true}, O::kExtendVolume, kW, "extend in progress"},
      {7, {p, O::kCreateVolume, false}, O::kExtendVolume, kW, "extend job, creating"},
      {7, {p, O::kCreateSnapshot, true}, O::kCreateSnapshot, kW, "snapshot in progress"},
      {7, {p, O::kCreateSnapshot, false}, O::kDeleteSnapshot, kW, "snapshot delete, creating"},
      {8, {p, O::kCreateVolume, false}, O::kCreateVolume, kR, "clone of a volume creating"},
      {6, {p, O::kExtendVolume, false}, O::kCreateVolume, kR, "clone of a volume extending"},
      {8, {p, O::kCreateVolume, false}, O::kCreateSnapshot, kR, "snapshot of a volume creating"},
      {6, {p, O::kExtendVolume, false}, O::kCreateSnapshot, kR, "snapshot of a volume extending"},
      {8, {p, O::kCreateSnapshot, false}, O::kCreateVolume, kR, "volume from a snapshot creating"},
      {8, {p, O::kCreateSnapshot, true}, O::kCreateSnapshot, kR, "a read is never the same"},
      {9, {r, std::nullopt, false}, O::kCreateVolume, kW, "create job, at rest"},
      {9, {r, std::nullopt, true}, O::kDeleteVolume, kW, "delete job, at rest"},
      {9, {r, std::nullopt, true}, O::kExtendVolume, kW, "extend job, at rest"},
      {9, {r, std::nullopt, true}, O::kCreateSnapshot, kW, "snapshot job, at rest"},
      {9, {r, std::nullopt, false}, O::kDeleteSnapshot, kW, "snapshot delete job, at rest"},
      {10, {r, std::nullopt, false}, O::kCreateVolume, kR, "clone of an available volume"},
      {10, {r, std::nullopt, false}, O::kCreateSnapshot, kR, "snapshot of an available volume"},
      {11, {d, std::nullopt, true}, O::kCreateVolume, kW, "create job, deleted"},
      {11, {d, std::nullopt, true}, O::kDeleteVolume, kW, "delete job, deleted"},
      {11, {d, std::nullopt, false}, O::kExtendVolume, kW, "extend job, deleted"},
      {11, {d, std::nullopt, false}, O::kCreateSnapshot, kW, "snapshot job, deleted"},
      {11, {d, std::nullopt, true}, O::kDeleteSnapshot, kW, "snapshot delete job, deleted"},
      {12, {d, std::nullopt, false}, O::kCreateVolume, kR, "clone of a deleted volume"},
      {12, {d, std::nullopt, false}, O::kCreateSnapshot, kR, "snapshot of a deleted volume"},
      // Attachments, backups and restores.
      {1, {q, O::kAttachVolume, true}, O::kAttachVolume, kW, "queued attach, same id"},
      {1, {q, O::kDetachVolume, true}, O::kDetachVolume, kW, "queued detach, same id"},
      {1, {q, O::kCreateBackup, true}, O::kCreateBackup, kW, "queued backup, same id"},
      {1, {q, O::kDeleteBackup, true}, O::kDeleteBackup, kW, "queued backup delete, same id"},
      {1, {q, O::kRestoreBackup, true}, O::kRestoreBackup, kW, "queued restore, same id"},
      {2, {q, O::kAttachVolume, false}, O::kAttachVolume, kW, "queued attach, other id"},
      {2, {q, O::kRestoreBackup, false}, O::kRestoreBackup, kW, "queued restore, other id"},
      {3, {q, O::kDeleteBackup, false}, O::kRestoreBackup, kR, "restore of a backup to delete"},
      {3, {q, O::kRestoreBackup, false}, O::kCreateBackup, kR, "backup of a volume to restore"},
      {4, {q, O::kAttachVolume, false}, O::kDetachVolume, kW, "detach job, attach queued"},
      {4, {q, O::kDeleteVolume, false}, O::kRestoreBackup, kW, "restore job, delete queued"},
      {4, {q, O::kRestoreBackup, false}, O::kCreateVolume, kW, "create job, restore queued"},
      {5, {p, O::kAttachVolume, true}, O::kAttachVolume, kW, "attach in progress"},
      {5, {p, O::kDetachVolume, false}, O::kDetachVolume, kW, "detach in progress, other id"},
      {5, {p, O::kDeleteBackup, true}, O::kDeleteBackup, kW, "backup delete in progress"},
      {6, {p, O::kAttachVolume, false}, O::kDetachVolume, kW, "detach job, attach in progress"},
      {6, {p, O::kDetachVolume, false}, O::kAttachVolume, kW, "attach job, detach in progress"},
      {6, {p, O::kDeleteBackup, false}, O::kRestoreBackup, kR, "restore of a backup deleting"},
      {7, {p, O::kRestoreBackup, true}, O::kRestoreBackup, kW, "restore in progress"},
      {7, {p, O::kCreateBackup, true}, O::kCreateBackup, kW, "backup in progress"},
      {7, {p, O::kRestoreBackup, false}, O::kDeleteVolume, kW, "delete job, restoring"},
      {8, {p, O::kRestoreBackup, false}, O::kCreateVolume, kR, "clone of a volume restoring"},
      {8, {p, O::kCreateBackup, false}, O::kRestoreBackup, kR, "restore of a backup creating"},
      {9, {r, std::nullopt, true}, O::kAttachVolume, kW, "attach job, at rest"},
      {9, {r, std::nullopt, true}, O::kCreateBackup, kW, "backup job, at rest"},
      {10, {r, std::nullopt, false}, O::kRestoreBackup, kR, "restore of an available backup"},
      {10, {r, std::nullopt, false}, O::kCreateBackup, kR, "backup of an available volume"},
      {11, {d, std::nullopt, true}, O::kDetachVolume, kW, "detach job, detached"},
      {12, {d, std::nullopt, false}, O::kRestoreBackup, kR, "restore of a deleted backup"},
  };
}

TEST(StuckJobRulesTest, EveryRowHasACaseForEachAccessItAdmits) {
  std::map<int, std::set<Access>> covered;
  for (const RowCase& row_case : RowCases()) {
    covered[row_case.rule].insert(row_case.access);
  }
  for (const RuleRow& row : StuckJobRules()) {
    SCOPED_TRACE("row " + std::to_string(row.rule));
    const std::set<Access>& accesses = covered[row.rule];
    EXPECT_EQ(accesses.count(kW) == 1, row.job_access != "read") << "write case";
    // Rows 1, 2 and 5 need "the same" operation, which a read never is.
    const bool read_can_match =
        row.job_access != "write" && row.relation != "same" && row.relation != "same-other-id";
    EXPECT_EQ(accesses.count(kR) == 1, read_can_match) << "read case";
  }
}

TEST(StuckJobRulesTest, EachCaseDecidesAsItsRowSays) {
  for (const RowCase& row_case : RowCases()) {
    SCOPED_TRACE(row_case.description + " (" + std::string(OperationName(row_case.job)) + ", " +
                 std::string(AccessName(row_case.access)) + ")");
    const JobDecision decision = DecideJob(row_case.resource, row_case.job, row_case.access);
    const RuleRow& row = Row(row_case.rule);
    EXPECT_EQ(decision.rule, row_case.rule);
    EXPECT_EQ(decision.action, row.action);
    EXPECT_EQ(decision.why, row.why);
    EXPECT_EQ(row.phase, row_case.resource.phase);
    if (row_case.access == kW) {
      // The two-argument form decides for the target, which every operation writes.
      const JobDecision target = DecideJob(row_case.resource, row_case.job);
      EXPECT_EQ(target.rule, row_case.rule);
    }
  }
}

// The two-argument form is the three-argument one with the operation's own access, for every
// state a resource can be in.
TEST(StuckJobRulesTest, TheTargetFormUsesTheOperationsAccess) {
  const Phase phases[] = {Phase::kQueued, Phase::kInProgress, Phase::kAtRest, Phase::kDeleted};
  for (Phase phase : phases) {
    std::vector<std::optional<Operation>> resource_operations = {std::nullopt};
    resource_operations.insert(
        resource_operations.end(), std::begin(kAllOperations), std::end(kAllOperations));
    for (const std::optional<Operation>& resource_operation : resource_operations) {
      if ((phase == Phase::kQueued || phase == Phase::kInProgress) !=
          resource_operation.has_value()) {
        continue;  // Only pending phases carry an operation.
      }
      for (bool same_id : {false, true}) {
        for (Operation job : kAllOperations) {
          const ResourceState state{phase, resource_operation, same_id};
          EXPECT_EQ(DecideJob(state, job).rule, DecideJob(state, job, AccessOf(job)).rule);
        }
      }
    }
  }
}

// ---- 3. Expected rules by stored status. ----

// For one stored status: the rule each writing operation of that kind meets with its own
// operation id stored there, and the rule any read meets. A job whose queued operation carries
// another id is a late duplicate: row 2 instead of row 1, and nothing else changes.
struct Cell {
  std::string_view stored;
  std::map<Operation, int> writes;
  int read;
};

int WithOtherId(int rule) {
  return rule == 1 ? 2 : rule;
}

// Reads: a clone of the volume, a snapshot or a backup of it.
Cell VolumeCell(std::string_view stored, int create, int del, int extend, int restore, int read) {
  return {stored,
          {{O::kCreateVolume, create},
           {O::kDeleteVolume, del},
           {O::kExtendVolume, extend},
           {O::kRestoreBackup, restore}},
          read};
}

const std::vector<Cell>& VolumeCells() {
  static const auto* const kCells = new std::vector<Cell>{
      //         stored              create delete extend restore read
      VolumeCell("creating_queued", 1, 4, 4, 4, 3),
      VolumeCell("creating", 7, 7, 7, 7, 8),
      VolumeCell("available", 9, 9, 9, 9, 10),
      VolumeCell("deleting_queued", 4, 1, 4, 4, 3),
      VolumeCell("deleting", 6, 5, 6, 6, 6),
      VolumeCell("deleted", 11, 11, 11, 11, 12),
      VolumeCell("error", 9, 9, 9, 9, 10),
      VolumeCell("error_deleting", 9, 9, 9, 9, 10),
      VolumeCell("extending_queued", 4, 4, 1, 4, 3),
      VolumeCell("extending", 6, 6, 5, 6, 6),
      VolumeCell("error_extending", 9, 9, 9, 9, 10),
      VolumeCell("reserved", 9, 9, 9, 9, 10),
      VolumeCell("attaching", 9, 9, 9, 9, 10),
      VolumeCell("in-use", 9, 9, 9, 9, 10),
      VolumeCell("detaching", 9, 9, 9, 9, 10),
      VolumeCell("backing-up", 9, 9, 9, 9, 10),
      VolumeCell("restoring_queued", 4, 4, 4, 1, 3),
      VolumeCell("restoring", 7, 7, 7, 7, 8),
      VolumeCell("error_restoring", 9, 9, 9, 9, 10),
      // Set by an admin's os-reset_status: at rest, whatever the API shows.
      VolumeCell("creating_by_admin", 9, 9, 9, 9, 10),
      VolumeCell("deleting_by_admin", 9, 9, 9, 9, 10),
      VolumeCell("extending_by_admin", 9, 9, 9, 9, 10),
      VolumeCell("restoring_by_admin", 9, 9, 9, 9, 10),
      VolumeCell("maintenance", 9, 9, 9, 9, 10),
      // Offered through a volume transfer: at rest, no job of its own.
      VolumeCell("awaiting-transfer", 9, 9, 9, 9, 10),
  };
  return *kCells;
}

// Reads: a volume created from the snapshot.
Cell SnapshotCell(std::string_view stored, int create, int del, int read) {
  return {stored, {{O::kCreateSnapshot, create}, {O::kDeleteSnapshot, del}}, read};
}

const std::vector<Cell>& SnapshotCells() {
  static const auto* const kCells = new std::vector<Cell>{
      //           stored             create delete read
      SnapshotCell("creating_queued", 1, 4, 3),
      SnapshotCell("creating", 7, 7, 8),
      SnapshotCell("available", 9, 9, 10),
      SnapshotCell("deleting_queued", 4, 1, 3),
      SnapshotCell("deleting", 6, 5, 6),
      SnapshotCell("deleted", 11, 11, 12),
      SnapshotCell("error", 9, 9, 10),
      SnapshotCell("error_deleting", 9, 9, 10),
      // Set by an admin's os-reset_status: at rest, whatever the API shows.
      SnapshotCell("creating_by_admin", 9, 9, 10),
      SnapshotCell("deleting_by_admin", 9, 9, 10),
      // A backup of the snapshot reads it: at rest, the backup's job is the backup's own.
      SnapshotCell("backing-up", 9, 9, 10),
  };
  return *kCells;
}

// Attaching and detaching are redoable: an export converges when done again.
Cell AttachmentCell(std::string_view stored, int attach, int detach, int read) {
  return {stored, {{O::kAttachVolume, attach}, {O::kDetachVolume, detach}}, read};
}

const std::vector<Cell>& AttachmentCells() {
  static const auto* const kCells = new std::vector<Cell>{
      //             stored              attach detach read
      AttachmentCell("reserved", 9, 9, 10),
      AttachmentCell("attaching_queued", 1, 4, 3),
      AttachmentCell("connecting", 5, 6, 6),
      AttachmentCell("attaching", 9, 9, 10),
      AttachmentCell("attached", 9, 9, 10),
      AttachmentCell("detaching_queued", 4, 1, 3),
      AttachmentCell("detaching", 6, 5, 6),
      AttachmentCell("detached", 11, 11, 12),
      AttachmentCell("error_attaching", 9, 9, 10),
      AttachmentCell("error_detaching", 9, 9, 10),
  };
  return *kCells;
}

// Reads: a restore from the backup.
Cell BackupCell(std::string_view stored, int create, int del, int read) {
  return {stored, {{O::kCreateBackup, create}, {O::kDeleteBackup, del}}, read};
}

const std::vector<Cell>& BackupCells() {
  static const auto* const kCells = new std::vector<Cell>{
      //         stored             create delete read
      BackupCell("creating_queued", 1, 4, 3),
      BackupCell("creating", 7, 7, 8),
      BackupCell("available", 9, 9, 10),
      BackupCell("deleting_queued", 4, 1, 3),
      BackupCell("deleting", 6, 5, 6),
      BackupCell("deleted", 11, 11, 12),
      BackupCell("error", 9, 9, 10),
      BackupCell("error_deleting", 9, 9, 10),
      BackupCell("restoring", 9, 9, 10),
  };
  return *kCells;
}

const std::vector<Cell>& CellsOf(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kVolume:
      return VolumeCells();
    case ResourceKind::kSnapshot:
      return SnapshotCells();
    case ResourceKind::kAttachment:
      return AttachmentCells();
    case ResourceKind::kBackup:
      return BackupCells();
  }
  return VolumeCells();
}

std::vector<std::string_view> StoredNamesOf(ResourceKind kind) {
  std::vector<std::string_view> names;
  auto collect = [&](const auto& statuses) {
    for (const auto& info : statuses) {
      names.push_back(info.stored);
    }
  };
  switch (kind) {
    case ResourceKind::kVolume:
      collect(AllVolumeStatuses());
      break;
    case ResourceKind::kSnapshot:
      collect(AllSnapshotStatuses());
      break;
    case ResourceKind::kAttachment:
      collect(AllAttachmentStatuses());
      break;
    case ResourceKind::kBackup:
      collect(AllBackupStatuses());
      break;
  }
  return names;
}

// Every status of every kind has a cell, and each cell names every operation writing that kind.
TEST(StuckJobTableTest, EveryStatusOfEveryKindHasACellForEveryWritingOperation) {
  for (ResourceKind kind : kAllKinds) {
    SCOPED_TRACE(std::string(KindName(kind)));
    std::set<Operation> writers;
    for (Operation operation : AllOperations()) {
      if (TargetKindOf(operation) == kind) {
        writers.insert(operation);
      }
    }
    std::set<std::string_view> listed;
    for (const Cell& cell : CellsOf(kind)) {
      listed.insert(cell.stored);
      std::set<Operation> in_cell;
      for (const auto& [operation, rule] : cell.writes) {
        in_cell.insert(operation);
      }
      EXPECT_EQ(in_cell, writers) << cell.stored << ": an operation is missing or misplaced";
    }
    EXPECT_EQ(listed.size(), CellsOf(kind).size()) << "a status is listed twice";
    const std::vector<std::string_view> stored = StoredNamesOf(kind);
    EXPECT_EQ(listed.size(), stored.size());
    for (std::string_view name : stored) {
      EXPECT_EQ(listed.count(name), 1u) << name << " has no cell";
    }
  }
}

TEST(StuckJobTableTest, WritesDecideAsTheTableSays) {
  for (ResourceKind kind : kAllKinds) {
    for (const Cell& cell : CellsOf(kind)) {
      for (const auto& [job, rule] : cell.writes) {
        SCOPED_TRACE(std::string(KindName(kind)) + " " + std::string(cell.stored) + " / " +
                     std::string(OperationName(job)));
        const ResourceState same = StateOfStored(kind, cell.stored, true);
        const ResourceState other = StateOfStored(kind, cell.stored, false);
        EXPECT_EQ(DecideJob(same, job).rule, rule) << "same id";
        EXPECT_EQ(DecideJob(same, job, kW).rule, rule) << "same id";
        EXPECT_EQ(DecideJob(other, job).rule, WithOtherId(rule)) << "other id";
        EXPECT_EQ(DecideJob(same, job).action, Row(rule).action);
      }
    }
  }
}

// A read depends on the resource's state only: whichever operation reads, with whatever id, it
// is never the resource's own operation.
TEST(StuckJobTableTest, ReadsDecideAsTheTableSays) {
  for (ResourceKind kind : kAllKinds) {
    for (const Cell& cell : CellsOf(kind)) {
      for (Operation job : kAllOperations) {
        for (bool same_id : {false, true}) {
          SCOPED_TRACE(std::string(KindName(kind)) + " " + std::string(cell.stored) + " read by " +
                       std::string(OperationName(job)) + (same_id ? ", same id" : ", other id"));
          const JobDecision decision =
              DecideJob(StateOfStored(kind, cell.stored, same_id), job, kR);
          EXPECT_EQ(decision.rule, cell.read);
          EXPECT_EQ(decision.action, Row(cell.read).action);
        }
      }
    }
  }
}

TEST(StuckJobTableTest, ReadsOnlyLandOnReadRowsAndWritesOnlyOnWriteRows) {
  const std::set<int> read_rows = {3, 6, 8, 10, 12};
  const std::set<int> write_rows = {1, 2, 4, 5, 6, 7, 9, 11};
  for (ResourceKind kind : kAllKinds) {
    for (std::string_view stored : StoredNamesOf(kind)) {
      const Phase phase = DescribeStored(kind, stored).value().phase;
      for (bool same_id : {false, true}) {
        const ResourceState state = StateOfStored(kind, stored, same_id);
        for (Operation job : kAllOperations) {
          const int read = DecideJob(state, job, kR).rule;
          EXPECT_EQ(read_rows.count(read), 1u) << stored << " read, rule " << read;
          EXPECT_EQ(Row(read).phase, phase) << stored;
          if (TargetKindOf(job) == kind) {
            const int write = DecideJob(state, job).rule;
            EXPECT_EQ(write_rows.count(write), 1u) << stored << " write, rule " << write;
            EXPECT_EQ(Row(write).phase, phase) << stored;
          }
        }
      }
    }
  }
}

// ---- Scenarios a worker meets. ----

TEST(StuckJobScenarioTest, FreshCreateJobProceeds) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kCreatingQueued, true), O::kCreateVolume);
  EXPECT_EQ(decision.action, JobAction::kProceed);
  EXPECT_EQ(decision.rule, 1);
}

TEST(StuckJobScenarioTest, RedeliveredCreateOfAVolumeStillCreatingSetsErrorAndDrops) {
  // A node died between setting 'creating' and finishing: half a volume cannot be trusted.
  const JobDecision decision = DecideJob(StateOf(VolumeStatus::kCreating, true), O::kCreateVolume);
  EXPECT_EQ(decision.action, JobAction::kSetErrorThenDrop);
  EXPECT_EQ(decision.rule, 7);
}

TEST(StuckJobScenarioTest, RedeliveredDeleteOfAVolumeStillDeletingIsRedone) {
  const JobDecision decision = DecideJob(StateOf(VolumeStatus::kDeleting, true), O::kDeleteVolume);
  EXPECT_EQ(decision.action, JobAction::kRedo);
  EXPECT_EQ(decision.rule, 5);
}

TEST(StuckJobScenarioTest, RedeliveredExtendOfAVolumeStillExtendingIsRedone) {
  // Growing to a given size converges; an error would leave the back-end larger than recorded.
  const JobDecision decision = DecideJob(StateOf(VolumeStatus::kExtending, true), O::kExtendVolume);
  EXPECT_EQ(decision.action, JobAction::kRedo);
  EXPECT_EQ(decision.rule, 5);
}

TEST(StuckJobScenarioTest, CloneOfAVolumeWhoseExtendWasInterruptedFails) {
  // The extend will be redone: the clone must not read a volume half grown.
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kExtending, false), O::kCreateVolume, kR);
  EXPECT_EQ(decision.action, JobAction::kFailJob);
  EXPECT_EQ(decision.rule, 6);
}

TEST(StuckJobScenarioTest, RedeliveredSnapshotDeleteIsRedoneAndSnapshotCreateIsNot) {
  EXPECT_EQ(DecideJob(StateOf(SnapshotStatus::kDeleting, true), O::kDeleteSnapshot).action,
            JobAction::kRedo);
  EXPECT_EQ(DecideJob(StateOf(SnapshotStatus::kCreating, true), O::kCreateSnapshot).action,
            JobAction::kSetErrorThenDrop);
}

TEST(StuckJobScenarioTest, DeleteJobForAnAvailableVolumeIsADuplicate) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kAvailable, false), O::kDeleteVolume);
  EXPECT_EQ(decision.action, JobAction::kDropDuplicate);
  EXPECT_EQ(decision.rule, 9);
}

TEST(StuckJobScenarioTest, DeleteJobForADeletedVolumeIsDropped) {
  for (bool same_id : {false, true}) {
    const JobDecision decision =
        DecideJob(StateOf(VolumeStatus::kDeleted, same_id), O::kDeleteVolume);
    EXPECT_EQ(decision.action, JobAction::kDropDuplicate);
    EXPECT_EQ(decision.rule, 11);
  }
}

TEST(StuckJobScenarioTest, CreateJobMeetingAnotherQueuedCreateIsALateDuplicate) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kCreatingQueued, false), O::kCreateVolume);
  EXPECT_EQ(decision.action, JobAction::kDropDuplicate);
  EXPECT_EQ(decision.rule, 2);
}

TEST(StuckJobScenarioTest, CreateJobForAVolumeBeingDeletedFails) {
  const JobDecision decision = DecideJob(StateOf(VolumeStatus::kDeleting, false), O::kCreateVolume);
  EXPECT_EQ(decision.action, JobAction::kFailJob);
  EXPECT_EQ(decision.rule, 6);
}

TEST(StuckJobScenarioTest, FreshDeleteJobProceeds) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kDeletingQueued, true), O::kDeleteVolume);
  EXPECT_EQ(decision.action, JobAction::kProceed);
  EXPECT_EQ(decision.rule, 1);
}

TEST(StuckJobScenarioTest, JobsForAVolumeInErrorAreDuplicates) {
  for (VolumeStatus status :
       {VolumeStatus::kError, VolumeStatus::kErrorDeleting, VolumeStatus::kErrorExtending}) {
    for (Operation job : {O::kCreateVolume, O::kDeleteVolume, O::kExtendVolume}) {
      const JobDecision decision = DecideJob(StateOf(status, false), job);
      EXPECT_EQ(decision.action, JobAction::kDropDuplicate) << StoredName(status);
      EXPECT_EQ(decision.rule, 9) << StoredName(status);
    }
  }
}

TEST(StuckJobScenarioTest, CloneOfAVolumeQueuedForDeletionProceedsAheadOfTheDelete) {
  // The delete waits on the volume's lock; the clone reads the volume as it is now.
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kDeletingQueued, false), O::kCreateVolume, kR);
  EXPECT_EQ(decision.action, JobAction::kProceed);
  EXPECT_EQ(decision.rule, 3);
}

TEST(StuckJobScenarioTest, CloneOfAVolumeBeingDeletedFails) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kDeleting, false), O::kCreateVolume, kR);
  EXPECT_EQ(decision.action, JobAction::kFailJob);
  EXPECT_EQ(decision.rule, 6);
}

TEST(StuckJobScenarioTest, SnapshotOfAVolumeWhoseCreateWasInterruptedMarksItAndProceeds) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kCreating, false), O::kCreateSnapshot, kR);
  EXPECT_EQ(decision.action, JobAction::kSetErrorThenProceed);
  EXPECT_EQ(decision.rule, 8);
}

TEST(StuckJobScenarioTest, VolumeFromADeletedSnapshotFails) {
  const JobDecision decision =
      DecideJob(StateOf(SnapshotStatus::kDeleted, false), O::kCreateVolume, kR);
  EXPECT_EQ(decision.action, JobAction::kFailJob);
  EXPECT_EQ(decision.rule, 12);
}

TEST(StuckJobScenarioTest, RedeliveredAttachOfAnAttachmentStillConnectingIsRedone) {
  const JobDecision decision =
      DecideJob(StateOfStored(ResourceKind::kAttachment, "connecting", true), O::kAttachVolume);
  EXPECT_EQ(decision.action, JobAction::kRedo);
  EXPECT_EQ(decision.rule, 5);
}

TEST(StuckJobScenarioTest, RedeliveredRestoreOfAVolumeStillRestoringSetsErrorAndDrops) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kRestoring, true), O::kRestoreBackup);
  EXPECT_EQ(decision.action, JobAction::kSetErrorThenDrop);
  EXPECT_EQ(decision.rule, 7);
}

TEST(StuckJobScenarioTest, ReadingAnAvailableSourceProceeds) {
  EXPECT_EQ(DecideJob(StateOf(VolumeStatus::kAvailable, false), O::kCreateVolume, kR).rule, 10);
  EXPECT_EQ(DecideJob(StateOf(SnapshotStatus::kAvailable, false), O::kCreateVolume, kR).rule, 10);
  EXPECT_EQ(DecideJob(StateOf(VolumeStatus::kAvailable, false), O::kCreateSnapshot, kR).rule, 10);
}

}  // namespace
}  // namespace clinker::domain
