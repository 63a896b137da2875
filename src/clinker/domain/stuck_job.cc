#include "clinker/domain/stuck_job.h"

#include <array>

#include "clinker/core/assert.h"

namespace clinker::domain {
namespace {

constexpr std::array kRules = {
    RuleRow{1,
            Phase::kQueued,
            "same",
            "any",
            "any",
            JobAction::kProceed,
            "queued for this very operation: never started, and the API cannot queue it twice"},
    RuleRow{2,
            Phase::kQueued,
            "same-other-id",
            "any",
            "any",
            JobAction::kDropDuplicate,
            "queued for a later operation of the same kind: this job is an old duplicate"},
    RuleRow{3,
            Phase::kQueued,
            "different",
            "read",
            "any",
            JobAction::kProceed,
            "queued for a write and this job only reads: the writer waits on the lock"},
    RuleRow{4,
            Phase::kQueued,
            "different",
            "write",
            "any",
            JobAction::kDropDuplicate,
            "queued for another operation and this job writes: its effect already happened"},
    RuleRow{5,
            Phase::kInProgress,
            "same",
            "any",
            "redoable",
            JobAction::kRedo,
            "a node died in the middle of this operation, which converges when redone"},
    RuleRow{6,
            Phase::kInProgress,
            "different",
            "any",
            "redoable",
            JobAction::kFailJob,
            "the resource is being deleted, attached or detached by another operation"},
    RuleRow{7,
            Phase::kInProgress,
            "-",
            "write",
            "other",
            JobAction::kSetErrorThenDrop,
            "a node died in the middle of the operation, which cannot be safely redone"},
    RuleRow{8,
            Phase::kInProgress,
            "-",
            "read",
            "other",
            JobAction::kSetErrorThenProceed,
            "a node died in the middle of another operation; this job only reads"},
    RuleRow{9,
            Phase::kAtRest,
            "-",
            "write",
            "any",
            JobAction::kDropDuplicate,
            "the resource is at rest although a write was asked: a duplicate delivery"},
    RuleRow{10,
            Phase::kAtRest,
            "-",
            "read",
            "any",
            JobAction::kProceed,
            "the resource is at rest and this job only reads it"},
    RuleRow{11,
            Phase::kDeleted,
            "-",
            "write",
            "any",
            JobAction::kDropDuplicate,
            "the resource is deleted: nothing left to change"},
    RuleRow{12,
            Phase::kDeleted,
            "-",
            "read",
            "any",
            JobAction::kFailJob,
            "the resource this job reads is deleted"},
};

bool Matches(const RuleRow& row,
             const ResourceState& resource,
             Operation job_operation,
             Access access) {
  if (row.phase != resource.phase) {
    return false;
  }
  if (row.job_access == "read" && access != Access::kRead) {
    return false;
  }
  if (row.job_access == "write" && access != Access::kWrite) {
    return false;
  }
  if (row.resource_operation != "any") {
    bool redoable = resource.operation.has_value() && IsRedoable(*resource.operation);
    if ((row.resource_operation == "redoable") != redoable) {
      return false;
    }
  }
  // A job reading a resource never runs the resource's own operation on it.
  bool same_kind = access == AccessOf(job_operation) && resource.operation.has_value() &&
                   *resource.operation == job_operation;
  if (row.relation == "same") {
    return same_kind && (row.phase != Phase::kQueued || resource.same_operation_id);
  }
  if (row.relation == "same-other-id") {
    return same_kind && !resource.same_operation_id;
  }
  if (row.relation == "different") {
    return !same_kind;
  }
  return true;
}

}  // namespace

std::string_view JobActionName(JobAction action) {
  switch (action) {
    case JobAction::kProceed:
      return "proceed";
    case JobAction::kRedo:
      return "redo";
    case JobAction::kDropDuplicate:
      return "drop_duplicate";
    case JobAction::kFailJob:
      return "fail_job";
    case JobAction::kSetErrorThenDrop:
      return "set_error_then_drop";
    case JobAction::kSetErrorThenProceed:
      return "set_error_then_proceed";
  }
  return "unknown";
}

std::span<const RuleRow> StuckJobRules() {
  return kRules;
}

JobDecision DecideJob(const ResourceState& resource, Operation job_operation) {
  return DecideJob(resource, job_operation, AccessOf(job_operation));
}

JobDecision DecideJob(const ResourceState& resource, Operation job_operation, Access access) {
  for (const RuleRow& row : kRules) {
    if (Matches(row, resource, job_operation, access)) {
      return JobDecision{row.action, row.rule, row.why};
    }
  }
  CLINKER_ASSERT(false, "the stuck-job table covers every phase, relation and access");
}

}  // namespace clinker::domain
