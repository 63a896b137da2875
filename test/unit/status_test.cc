// Goal: pin down the status model of domain/status.h: which API status every internal status is
// shown as, that "queued" and "in progress" differ inside but look the same through the API, and
// that stored names parse back exactly (and nothing else parses).
//
// Method: an explicit expected table written here, independent of the table in status.cc, so a
// changed or added status fails a test until this file is updated on purpose.
#include "clinker/domain/status.h"

#include <algorithm>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clinker::domain {

// Readable failure messages instead of byte dumps.
static void PrintTo(VolumeStatus status, std::ostream* out) {
  *out << StoredName(status);
}

static void PrintTo(Operation operation, std::ostream* out) {
  *out << OperationName(operation);
}

namespace {

using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr Operation kAllOperations[] = {Operation::kCreateVolume, Operation::kDeleteVolume};

struct Expected {
  std::string_view stored;
  std::string_view api;
  Phase phase;
  std::optional<Operation> operation;
};

const std::map<VolumeStatus, Expected>& ExpectedStatuses() {
  static const auto* const kExpected = new std::map<VolumeStatus, Expected>{
      {VolumeStatus::kCreatingQueued,
       {"creating_queued", "creating", Phase::kQueued, Operation::kCreateVolume}},
      {VolumeStatus::kCreating,
       {"creating", "creating", Phase::kInProgress, Operation::kCreateVolume}},
      {VolumeStatus::kAvailable, {"available", "available", Phase::kAtRest, std::nullopt}},
      {VolumeStatus::kDeletingQueued,
       {"deleting_queued", "deleting", Phase::kQueued, Operation::kDeleteVolume}},
      {VolumeStatus::kDeleting,
       {"deleting", "deleting", Phase::kInProgress, Operation::kDeleteVolume}},
      {VolumeStatus::kDeleted, {"deleted", "deleted", Phase::kDeleted, std::nullopt}},
      {VolumeStatus::kError, {"error", "error", Phase::kAtRest, std::nullopt}},
      {VolumeStatus::kErrorDeleting,
       {"error_deleting", "error_deleting", Phase::kAtRest, std::nullopt}},
  };
  return *kExpected;
}

TEST(VolumeStatusTest, EveryStatusIsDescribedExactlyAsExpected) {
  ASSERT_EQ(AllVolumeStatuses().size(), ExpectedStatuses().size())
      << "a status was added or removed: update this test and the API mapping";
  for (const VolumeStatusInfo& info : AllVolumeStatuses()) {
    auto it = ExpectedStatuses().find(info.status);
    ASSERT_NE(it, ExpectedStatuses().end()) << info.stored;
    const Expected& expected = it->second;
    EXPECT_EQ(info.stored, expected.stored);
    EXPECT_EQ(info.api, expected.api) << info.stored;
    EXPECT_EQ(info.phase, expected.phase) << info.stored;
    EXPECT_EQ(info.operation, expected.operation) << info.stored;
  }
}

TEST(VolumeStatusTest, DescribeAndNameHelpersAgreeWithTheTable) {
  for (const auto& [status, expected] : ExpectedStatuses()) {
    EXPECT_EQ(Describe(status).status, status);
    EXPECT_EQ(StoredName(status), expected.stored);
    EXPECT_EQ(ApiName(status), expected.api) << expected.stored;
  }
}

TEST(VolumeStatusTest, QueuedAndInProgressLookTheSameThroughTheApi) {
  const std::map<Operation, std::string_view> api_names = {{Operation::kCreateVolume, "creating"},
                                                           {Operation::kDeleteVolume, "deleting"}};
  for (Operation operation : kAllOperations) {
    const VolumeStatus queued = QueuedStatusFor(operation);
    const VolumeStatus in_progress = InProgressStatusFor(operation);
    EXPECT_NE(queued, in_progress);
    EXPECT_NE(StoredName(queued), StoredName(in_progress)) << "the database must tell them apart";
    EXPECT_EQ(ApiName(queued), api_names.at(operation));
    EXPECT_EQ(ApiName(in_progress), api_names.at(operation));
    EXPECT_EQ(Describe(queued).phase, Phase::kQueued);
    EXPECT_EQ(Describe(in_progress).phase, Phase::kInProgress);
    EXPECT_EQ(Describe(queued).operation, operation);
    EXPECT_EQ(Describe(in_progress).operation, operation);
  }
}

TEST(VolumeStatusTest, StatusesShownAsCollectsEveryInternalStatus) {
  EXPECT_THAT(StatusesShownAs("creating"),
              UnorderedElementsAre(VolumeStatus::kCreatingQueued, VolumeStatus::kCreating));
  EXPECT_THAT(StatusesShownAs("deleting"),
              UnorderedElementsAre(VolumeStatus::kDeletingQueued, VolumeStatus::kDeleting));
  EXPECT_THAT(StatusesShownAs("available"), UnorderedElementsAre(VolumeStatus::kAvailable));
  EXPECT_THAT(StatusesShownAs("error"), UnorderedElementsAre(VolumeStatus::kError));
  // Internal names are not API statuses, and the match is exact.
  EXPECT_THAT(StatusesShownAs("creating_queued"), IsEmpty());
  EXPECT_THAT(StatusesShownAs("Creating"), IsEmpty());
  EXPECT_THAT(StatusesShownAs("in-use"), IsEmpty());
  EXPECT_THAT(StatusesShownAs(""), IsEmpty());
}

TEST(VolumeStatusTest, StatusesShownAsInvertsApiName) {
  for (const VolumeStatusInfo& info : AllVolumeStatuses()) {
    const std::vector<VolumeStatus> shown = StatusesShownAs(info.api);
    EXPECT_EQ(std::count(shown.begin(), shown.end(), info.status), 1) << info.stored;
    for (VolumeStatus other : shown) {
      EXPECT_EQ(ApiName(other), info.api);
    }
  }
}

TEST(VolumeStatusTest, StoredNamesRoundTrip) {
  for (const VolumeStatusInfo& info : AllVolumeStatuses()) {
    const std::optional<VolumeStatus> parsed = ParseStoredVolumeStatus(info.stored);
    ASSERT_TRUE(parsed.has_value()) << info.stored;
    EXPECT_EQ(*parsed, info.status);
  }
}

TEST(VolumeStatusTest, UnknownStoredNamesAreRejected) {
  for (std::string_view name : {"",
                                "Creating",
                                "CREATING_QUEUED",
                                "creating ",
                                " available",
                                "queued",
                                "in-use",
                                "creating-queued",
                                "deleted\n"}) {
    EXPECT_EQ(ParseStoredVolumeStatus(name), std::nullopt) << "'" << name << "'";
  }
}

TEST(OperationTest, NamesRoundTripAndUnknownNamesAreRejected) {
  EXPECT_EQ(OperationName(Operation::kCreateVolume), "create_volume");
  EXPECT_EQ(OperationName(Operation::kDeleteVolume), "delete_volume");
  for (Operation operation : kAllOperations) {
    EXPECT_EQ(ParseOperation(OperationName(operation)), operation);
  }
  for (std::string_view name : {"", "create", "Create_Volume", "delete_volume ", "unknown"}) {
    EXPECT_EQ(ParseOperation(name), std::nullopt) << "'" << name << "'";
  }
}

TEST(OperationTest, AccessAndRedoability) {
  EXPECT_EQ(AccessOf(Operation::kCreateVolume), Access::kWrite);
  EXPECT_EQ(AccessOf(Operation::kDeleteVolume), Access::kWrite);
  // Deleting converges when redone; creating half a volume does not.
  EXPECT_TRUE(IsRedoable(Operation::kDeleteVolume));
  EXPECT_FALSE(IsRedoable(Operation::kCreateVolume));
}

}  // namespace
}  // namespace clinker::domain
