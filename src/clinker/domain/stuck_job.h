// The stuck-job rules of the design ("A Cinder Road to Active/Active HA"), as one decision table.
//
// A node that picks a job up takes the resource's lock, reads the resource, and asks DecideJob
// what to do. Jobs are acknowledged only after they finish, so the job in hand may be fresh, a
// redelivery of a job a dead node was running, or a duplicate of a job already done; the
// resource's phase (queued / in progress / at rest / deleted) tells which.
// Pure code: no I/O, thread safe.
#pragma once

#include <optional>
#include <span>
#include <string_view>

#include "clinker/domain/status.h"

namespace clinker::domain {

enum class JobAction {
  kProceed,              // Run the operation as a fresh one.
  kRedo,                 // A node died in the middle of it; run it again from the start.
  kDropDuplicate,        // Its effect already happened (or never can): ack without doing it.
  kFailJob,              // The resource is in a state this job cannot work on: fail the job.
  kSetErrorThenDrop,     // Stuck mid-operation: set the resource to error with a reason; ack.
  kSetErrorThenProceed,  // Stuck mid-operation: set it to error, then run this (reading) job.
};

std::string_view JobActionName(JobAction action);

// What the node sees of the resource when it holds its lock.
struct ResourceState {
  Phase phase = Phase::kAtRest;
  std::optional<Operation> operation;  // Queued or under way, if any.
  // The operation id stored with the resource equals the job's. A queued operation of the same
  // kind with another id means this job is a late duplicate of an earlier, finished one.
  bool same_operation_id = false;
};

struct JobDecision {
  JobAction action;
  int rule;              // Row number in the table (docs/ARCHITECTURE.md lists them).
  std::string_view why;  // Human-readable; goes to logs and error reasons.
};

// The decision for the job's target (the resource it writes): access is AccessOf(operation).
JobDecision DecideJob(const ResourceState& resource, Operation job_operation);
// The decision for a resource the job uses with `access`: for its source (a volume cloned, a
// snapshot a volume is made from, a volume snapshotted), which it only reads, pass kRead. The
// resource's operation is then never "the same" as the job's, so the rows for reads apply.
JobDecision DecideJob(const ResourceState& resource, Operation job_operation, Access access);

// One row of the table, for documentation and tests. `relation` is how the resource's operation
// relates to the job's: "same", "same-other-id", "different", or "-" (none / not considered).
struct RuleRow {
  int rule;
  Phase phase;
  std::string_view relation;
  std::string_view job_access;          // "read", "write" or "any"
  std::string_view resource_operation;  // "redoable", "other" or "any"
  JobAction action;
  std::string_view why;
};

std::span<const RuleRow> StuckJobRules();

}  // namespace clinker::domain
