// Goal: pin down the stuck-job decision table of domain/stuck_job.h, row by row and through the
// scenarios a worker actually meets (fresh job, redelivery after a node died, late duplicate).
//
// Method: for every row of StuckJobRules() a hand-built ResourceState that matches that row and
// no earlier one, asserting DecideJob returns that row's number and action; a guard test makes a
// new row fail until it gets its own case. Rows for jobs that only read cannot be reached yet,
// because every domain::Operation writes (AccessOf is kWrite for all of them): those rows are
// checked through their RuleRow data instead, and the guard notes it. Scenario tests build the
// ResourceState from a real VolumeStatus (its phase and operation), so they also tie the table to
// the status model.
#include "clinker/domain/stuck_job.h"

#include <map>
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

namespace {

constexpr Operation kAllOperations[] = {Operation::kCreateVolume, Operation::kDeleteVolume};

// What a worker sees after taking the lock on a volume in `status`; `same_operation_id` says
// whether the id stored with the volume is the job's.
ResourceState StateOf(VolumeStatus status, bool same_operation_id) {
  const VolumeStatusInfo& info = Describe(status);
  return ResourceState{info.phase, info.operation, same_operation_id};
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

struct RowCase {
  int rule;
  ResourceState resource;
  Operation job;
  std::string description;
};

// One or more reachable cases per row whose job_access is not "read".
std::vector<RowCase> WriteRowCases() {
  using O = Operation;
  return {
      {1, {Phase::kQueued, O::kCreateVolume, true}, O::kCreateVolume, "queued create, same id"},
      {1, {Phase::kQueued, O::kDeleteVolume, true}, O::kDeleteVolume, "queued delete, same id"},
      {2, {Phase::kQueued, O::kCreateVolume, false}, O::kCreateVolume, "queued create, other id"},
      {2, {Phase::kQueued, O::kDeleteVolume, false}, O::kDeleteVolume, "queued delete, other id"},
      {4, {Phase::kQueued, O::kDeleteVolume, false}, O::kCreateVolume, "create job, delete queued"},
      {4, {Phase::kQueued, O::kCreateVolume, false}, O::kDeleteVolume, "delete job, create queued"},
      {5, {Phase::kInProgress, O::kDeleteVolume, true}, O::kDeleteVolume, "delete in progress"},
      {5,
       {Phase::kInProgress, O::kDeleteVolume, false},
       O::kDeleteVolume,
       "delete in progress, the id does not matter"},
      {6, {Phase::kInProgress, O::kDeleteVolume, false}, O::kCreateVolume, "create job, deleting"},
      {7, {Phase::kInProgress, O::kCreateVolume, true}, O::kCreateVolume, "create in progress"},
      {7, {Phase::kInProgress, O::kCreateVolume, false}, O::kDeleteVolume, "delete job, creating"},
      {9, {Phase::kAtRest, std::nullopt, false}, O::kCreateVolume, "create job, at rest"},
      {9, {Phase::kAtRest, std::nullopt, false}, O::kDeleteVolume, "delete job, at rest"},
      {11, {Phase::kDeleted, std::nullopt, false}, O::kCreateVolume, "create job, deleted"},
      {11, {Phase::kDeleted, std::nullopt, false}, O::kDeleteVolume, "delete job, deleted"},
  };
}

TEST(StuckJobRulesTest, RowsAreNumberedInOrderAndExplained) {
  int expected_rule = 1;
  for (const RuleRow& row : StuckJobRules()) {
    EXPECT_EQ(row.rule, expected_rule);
    ++expected_rule;
    EXPECT_FALSE(row.why.empty()) << "row " << row.rule;
    EXPECT_TRUE(row.job_access == "read" || row.job_access == "write" || row.job_access == "any")
        << "row " << row.rule;
    EXPECT_TRUE(row.relation == "same" || row.relation == "same-other-id" ||
                row.relation == "different" || row.relation == "-")
        << "row " << row.rule;
    EXPECT_TRUE(row.resource_operation == "redoable" || row.resource_operation == "other" ||
                row.resource_operation == "any")
        << "row " << row.rule;
  }
  EXPECT_EQ(expected_rule, 13) << "a row was added or removed: give it a case in this file";
}

TEST(StuckJobRulesTest, EveryWriteRowHasACaseAndNoReadRowIsReachableYet) {
  std::set<int> covered;
  for (const RowCase& row_case : WriteRowCases()) {
    covered.insert(row_case.rule);
  }
  for (const RuleRow& row : StuckJobRules()) {
    if (row.job_access == "read") {
      // No domain::Operation reads yet; ReadRowsSayWhatTheDesignSays checks these rows' data.
      EXPECT_EQ(covered.count(row.rule), 0u);
    } else {
      EXPECT_EQ(covered.count(row.rule), 1u) << "row " << row.rule << " has no case";
    }
  }
  for (Operation operation : kAllOperations) {
    EXPECT_EQ(AccessOf(operation), Access::kWrite)
        << OperationName(operation) << " reads: add DecideJob cases for rows 3, 8, 10 and 12";
  }
}

TEST(StuckJobRulesTest, EachWriteRowDecidesAsItsRowSays) {
  for (const RowCase& row_case : WriteRowCases()) {
    const JobDecision decision = DecideJob(row_case.resource, row_case.job);
    const RuleRow& row = Row(row_case.rule);
    EXPECT_EQ(decision.rule, row_case.rule) << row_case.description;
    EXPECT_EQ(decision.action, row.action) << row_case.description;
    EXPECT_EQ(decision.why, row.why) << row_case.description;
    EXPECT_EQ(row.phase, row_case.resource.phase) << row_case.description;
  }
}

// The write rows' actions, stated independently of the table in stuck_job.cc.
TEST(StuckJobRulesTest, WriteRowsTakeTheDesignsActions) {
  const std::map<int, JobAction> expected = {
      {1, JobAction::kProceed},
      {2, JobAction::kDropDuplicate},
      {4, JobAction::kDropDuplicate},
      {5, JobAction::kRedo},
      {6, JobAction::kFailJob},
      {7, JobAction::kSetErrorThenDrop},
      {9, JobAction::kDropDuplicate},
      {11, JobAction::kDropDuplicate},
  };
  for (const auto& [rule, action] : expected) {
    EXPECT_EQ(Row(rule).action, action) << "row " << rule;
  }
}

TEST(StuckJobRulesTest, ReadRowsSayWhatTheDesignSays) {
  struct ReadRow {
    int rule;
    Phase phase;
    std::string_view relation;
    std::string_view resource_operation;
    JobAction action;
  };

  const ReadRow expected[] = {
      {3, Phase::kQueued, "different", "any", JobAction::kProceed},
      {8, Phase::kInProgress, "-", "other", JobAction::kSetErrorThenProceed},
      {10, Phase::kAtRest, "-", "any", JobAction::kProceed},
      {12, Phase::kDeleted, "-", "any", JobAction::kFailJob},
  };
  for (const ReadRow& read_row : expected) {
    const RuleRow& row = Row(read_row.rule);
    EXPECT_EQ(row.job_access, "read") << "row " << read_row.rule;
    EXPECT_EQ(row.phase, read_row.phase) << "row " << read_row.rule;
    EXPECT_EQ(row.relation, read_row.relation) << "row " << read_row.rule;
    EXPECT_EQ(row.resource_operation, read_row.resource_operation) << "row " << read_row.rule;
    EXPECT_EQ(row.action, read_row.action) << "row " << read_row.rule;
  }
}

// Every state a volume can be in, with either id relation, and every job: DecideJob always finds
// a row (it asserts otherwise) and the row it returns is one for that phase.
TEST(StuckJobRulesTest, EveryStatusAndJobGetsADecisionForItsPhase) {
  for (const VolumeStatusInfo& info : AllVolumeStatuses()) {
    for (bool same_id : {false, true}) {
      for (Operation job : kAllOperations) {
        const JobDecision decision = DecideJob(StateOf(info.status, same_id), job);
        EXPECT_EQ(Row(decision.rule).phase, info.phase)
            << info.stored << " / " << OperationName(job) << " same_id=" << same_id;
      }
    }
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
}

// ---- Scenarios a worker meets. ----

TEST(StuckJobScenarioTest, FreshCreateJobProceeds) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kCreatingQueued, true), Operation::kCreateVolume);
  EXPECT_EQ(decision.action, JobAction::kProceed);
  EXPECT_EQ(decision.rule, 1);
}

TEST(StuckJobScenarioTest, RedeliveredCreateOfAVolumeStillCreatingSetsErrorAndDrops) {
  // A node died between setting 'creating' and finishing: half a volume cannot be trusted.
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kCreating, true), Operation::kCreateVolume);
  EXPECT_EQ(decision.action, JobAction::kSetErrorThenDrop);
  EXPECT_EQ(decision.rule, 7);
}

TEST(StuckJobScenarioTest, RedeliveredDeleteOfAVolumeStillDeletingIsRedone) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kDeleting, true), Operation::kDeleteVolume);
  EXPECT_EQ(decision.action, JobAction::kRedo);
  EXPECT_EQ(decision.rule, 5);
}

TEST(StuckJobScenarioTest, DeleteJobForAnAvailableVolumeIsADuplicate) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kAvailable, false), Operation::kDeleteVolume);
  EXPECT_EQ(decision.action, JobAction::kDropDuplicate);
  EXPECT_EQ(decision.rule, 9);
}

TEST(StuckJobScenarioTest, DeleteJobForADeletedVolumeIsDropped) {
  for (bool same_id : {false, true}) {
    const JobDecision decision =
        DecideJob(StateOf(VolumeStatus::kDeleted, same_id), Operation::kDeleteVolume);
    EXPECT_EQ(decision.action, JobAction::kDropDuplicate);
    EXPECT_EQ(decision.rule, 11);
  }
}

TEST(StuckJobScenarioTest, CreateJobMeetingAnotherQueuedCreateIsALateDuplicate) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kCreatingQueued, false), Operation::kCreateVolume);
  EXPECT_EQ(decision.action, JobAction::kDropDuplicate);
  EXPECT_EQ(decision.rule, 2);
}

TEST(StuckJobScenarioTest, CreateJobForAVolumeBeingDeletedFails) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kDeleting, false), Operation::kCreateVolume);
  EXPECT_EQ(decision.action, JobAction::kFailJob);
  EXPECT_EQ(decision.rule, 6);
}

TEST(StuckJobScenarioTest, FreshDeleteJobProceeds) {
  const JobDecision decision =
      DecideJob(StateOf(VolumeStatus::kDeletingQueued, true), Operation::kDeleteVolume);
  EXPECT_EQ(decision.action, JobAction::kProceed);
  EXPECT_EQ(decision.rule, 1);
}

TEST(StuckJobScenarioTest, JobsForAVolumeInErrorAreDuplicates) {
  for (VolumeStatus status : {VolumeStatus::kError, VolumeStatus::kErrorDeleting}) {
    for (Operation job : kAllOperations) {
      const JobDecision decision = DecideJob(StateOf(status, false), job);
      EXPECT_EQ(decision.action, JobAction::kDropDuplicate) << StoredName(status);
      EXPECT_EQ(decision.rule, 9) << StoredName(status);
    }
  }
}

}  // namespace
}  // namespace clinker::domain
