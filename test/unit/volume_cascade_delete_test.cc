// Goal: check DELETE /volumes/{id}?cascade=true at the API: each of the volume's snapshots is
// queued for deletion as DELETE /snapshots/{id} would do it, and the volume is queued for
// deletion with them; a volume that could not be deleted (attached) or a snapshot that cannot
// be (still being created) stops the cascade with Cinder's 400, and what was refused is left
// as it was. Without cascade, a volume with snapshots is still refused.
//
// Method: test_support::ApiHarness (ApiService over every handler, noauth admin) on a
// MemoryStateStore. Rows are moved to `available` (with a host) directly, as the scheduler and
// the volume manager would; statuses are read back from the store.
#include <string>
#include <variant>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/domain/status.h"

#include "support/api_harness.h"

namespace clinker::services {
namespace {

using nlohmann::json;
using ports::Table;
using test_support::ApiHarness;

class VolumeCascadeDeleteTest : public ::testing::Test {
 protected:
  // Sets a row's status (and more) as the other services would.
  void Set(Table table, const std::string& id, const ports::Row& values) {
    auto updated = store_.ConditionalUpdate(table, id, values, {}, {});
    ASSERT_TRUE(updated && updated->has_value());
  }

  std::string AvailableVolume() {
    ports::HttpResponse created = api_.Post("volumes", {{"volume", {{"size", 1}}}});
    EXPECT_EQ(created.status, 202) << created.body;
    std::string id = ApiHarness::Body(created)["volume"].value("id", "");
    Set(Table::kVolumes,
        id,
        {{"status", std::string("available")}, {"host", std::string("h@file#p")}});
    return id;
  }

  std::string Snapshot(const std::string& volume_id, std::string_view status) {
    ports::HttpResponse created =
        api_.Post("snapshots", {{"snapshot", {{"volume_id", volume_id}}}});
    EXPECT_EQ(created.status, 202) << created.body;
    std::string id = ApiHarness::Body(created)["snapshot"].value("id", "");
    Set(Table::kSnapshots, id, {{"status", std::string(status)}});
    return id;
  }

  std::string StatusOf(Table table, const std::string& id) {
    auto row = store_.Get(table, id);
    EXPECT_TRUE(row.has_value());
    return row ? std::get<std::string>(row->at("status")) : "";
  }

  adapters::MemoryStateStore store_;
  ApiHarness api_{store_};
};

TEST_F(VolumeCascadeDeleteTest, QueuesEverySnapshotAndTheVolume) {
  const std::string volume = AvailableVolume();
  const std::string first = Snapshot(volume, "available");
  const std::string second = Snapshot(volume, "error");

  ports::HttpResponse plain = api_.Delete("volumes/" + volume);
  EXPECT_EQ(plain.status, 400) << plain.body;
  EXPECT_EQ(StatusOf(Table::kSnapshots, first), "available");

  ports::HttpResponse cascade = api_.Delete("volumes/" + volume, {{"cascade", "true"}});
  ASSERT_EQ(cascade.status, 202) << cascade.body;
  EXPECT_EQ(StatusOf(Table::kSnapshots, first), "deleting_queued");
  EXPECT_EQ(StatusOf(Table::kSnapshots, second), "deleting_queued");
  EXPECT_EQ(StatusOf(Table::kVolumes, volume), "deleting_queued");
  // As the API shows them.
  json shown = ApiHarness::Body(api_.Get("snapshots/" + first))["snapshot"];
  EXPECT_EQ(shown["status"], "deleting");
}

TEST_F(VolumeCascadeDeleteTest, ASnapshotStillBeingCreatedStopsTheCascade) {
  const std::string volume = AvailableVolume();
  const std::string creating = Snapshot(volume, "creating");

  ports::HttpResponse cascade = api_.Delete("volumes/" + volume, {{"cascade", "true"}});
  EXPECT_EQ(cascade.status, 400) << cascade.body;
  EXPECT_NE(ApiHarness::FaultMessage(cascade).find(creating), std::string::npos) << cascade.body;
  EXPECT_EQ(StatusOf(Table::kVolumes, volume), "available");
  EXPECT_EQ(StatusOf(Table::kSnapshots, creating), "creating");
}

TEST_F(VolumeCascadeDeleteTest, AVolumeThatCannotBeDeletedKeepsItsSnapshots) {
  const std::string volume = AvailableVolume();
  const std::string snapshot = Snapshot(volume, "available");
  Set(Table::kVolumes,
      volume,
      {{"status", std::string("in-use")}, {"attach_status", std::string("attached")}});

  ports::HttpResponse cascade = api_.Delete("volumes/" + volume, {{"cascade", "true"}});
  EXPECT_EQ(cascade.status, 400) << cascade.body;
  EXPECT_EQ(StatusOf(Table::kSnapshots, snapshot), "available");
  EXPECT_EQ(StatusOf(Table::kVolumes, volume), "in-use");
}

TEST_F(VolumeCascadeDeleteTest, CascadeOfAVolumeWithoutSnapshotsIsAPlainDelete) {
  const std::string volume = AvailableVolume();
  ASSERT_EQ(api_.Delete("volumes/" + volume, {{"cascade", "True"}}).status, 202);
  EXPECT_EQ(StatusOf(Table::kVolumes, volume), "deleting_queued");
}

}  // namespace
}  // namespace clinker::services
