// Goal: check os-update_snapshot_status as Cinder has it: a creating snapshot may become
// available or error (or stay creating) and a deleting one error_deleting, each with an optional
// progress ("80%") shown as os-extended-snapshot-attributes:progress; any other transition and a
// malformed progress are 400; moving to rest clears the operation id, so a job still queued for
// the snapshot no longer matches it.
//
// Method: test_support::ApiHarness (ApiService over every handler, noauth admin) on a
// MemoryStateStore; rows are put in the wanted status directly, as other services would.
#include <string>
#include <variant>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_state_store.h"

#include "support/api_harness.h"

namespace clinker::services {
namespace {

using nlohmann::json;
using ports::Table;
using test_support::ApiHarness;

constexpr std::string_view kProgress = "os-extended-snapshot-attributes:progress";

class SnapshotUpdateStatusTest : public ::testing::Test {
 protected:
  void Set(Table table, const std::string& id, const ports::Row& values) {
    auto updated = store_.ConditionalUpdate(table, id, values, {}, {});
    ASSERT_TRUE(updated && updated->has_value());
  }

  // A snapshot of an available volume, left in `stored_status` with an operation id.
  std::string SnapshotIn(std::string_view stored_status) {
    ports::HttpResponse volume = api_.Post("volumes", {{"volume", {{"size", 1}}}});
    EXPECT_EQ(volume.status, 202) << volume.body;
    const std::string volume_id = ApiHarness::Body(volume)["volume"].value("id", "");
    Set(Table::kVolumes,
        volume_id,
        {{"status", std::string("available")}, {"host", std::string("h@file#p")}});
    ports::HttpResponse created =
        api_.Post("snapshots", {{"snapshot", {{"volume_id", volume_id}}}});
    EXPECT_EQ(created.status, 202) << created.body;
    std::string id = ApiHarness::Body(created)["snapshot"].value("id", "");
    Set(Table::kSnapshots,
        id,
        {{"status", std::string(stored_status)}, {"operation_id", std::string("op-1")}});
    return id;
  }

  ports::HttpResponse Update(const std::string& id, const json& argument) {
    return api_.Post("snapshots/" + id + "/action", {{"os-update_snapshot_status", argument}});
  }

  json Shown(const std::string& id) {
    return ApiHarness::Body(api_.Get("snapshots/" + id))["snapshot"];
  }

  adapters::MemoryStateStore store_;
  ApiHarness api_{store_};
};

TEST_F(SnapshotUpdateStatusTest, ACreatingSnapshotBecomesErrorWithItsProgress) {
  const std::string id = SnapshotIn("creating_by_admin");  // os-reset_status to creating.
  ASSERT_EQ(Update(id, {{"status", "error"}, {"progress", "80%"}}).status, 202);
  json shown = Shown(id);
  EXPECT_EQ(shown["status"], "error");
  EXPECT_EQ(shown[std::string(kProgress)], "80%");
  auto row = store_.Get(Table::kSnapshots, id);
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE(std::holds_alternative<std::monostate>(row->at("operation_id")));
}

TEST_F(SnapshotUpdateStatusTest, ASnapshotBeingCreatedByANodeMayBeFinishedOrOnlyReportProgress) {
  const std::string id = SnapshotIn("creating");
  ASSERT_EQ(Update(id, {{"status", "creating"}, {"progress", "40%"}}).status, 202);
  EXPECT_EQ(Shown(id)["status"], "creating");
  EXPECT_EQ(Shown(id)[std::string(kProgress)], "40%");
  ASSERT_EQ(Update(id, {{"status", "available"}}).status, 202);
  EXPECT_EQ(Shown(id)["status"], "available");
}

TEST_F(SnapshotUpdateStatusTest, ADeletingSnapshotMayOnlyBecomeErrorDeleting) {
  const std::string id = SnapshotIn("deleting_by_admin");
  EXPECT_EQ(Update(id, {{"status", "available"}}).status, 400);
  ASSERT_EQ(Update(id, {{"status", "error_deleting"}}).status, 202);
  EXPECT_EQ(Shown(id)["status"], "error_deleting");
}

TEST_F(SnapshotUpdateStatusTest, OtherTransitionsAndBadInputAreRefused) {
  const std::string available = SnapshotIn("available");
  ports::HttpResponse refused = Update(available, {{"status", "error"}});
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(ApiHarness::FaultMessage(refused),
            "Snapshot status available not allowed for update_snapshot_status");

  const std::string creating = SnapshotIn("creating_by_admin");
  refused = Update(creating, {{"status", "deleting"}});
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(ApiHarness::FaultMessage(refused),
            "Provided snapshot status deleting not allowed for snapshot with status creating.");
  for (const char* progress : {"101%", "80", "abc%", "-1%"}) {
    EXPECT_EQ(Update(creating, {{"status", "error"}, {"progress", progress}}).status, 400)
        << progress;
  }
  EXPECT_EQ(Update(creating, json::object()).status, 400);
  EXPECT_EQ(Update(creating, {{"status", "error"}, {"other", 1}}).status, 400);
  EXPECT_EQ(Update("no-such-snapshot", {{"status", "error"}}).status, 404);
  EXPECT_EQ(Shown(creating)["status"], "creating");
}

}  // namespace
}  // namespace clinker::services
