// Goal: check Cinder's QoS specs API as a client sees it: create (consumer default and
// validation, duplicate names), show, list (filters, pagination), set and unset keys, the
// associations with volume types (and the type's qos_specs_id), delete (refused while
// associated, forced), with Cinder's status codes and messages; and that associating a type and
// deleting the QoS specs exclude each other: in fixed interleavings (the delete runs just after
// the association's write of the type row, before its pin) and with real threads on SQLite, a
// type never ends up pointing at a deleted QoS specs.
//
// Method: test_support::ApiHarness (ApiService over every handler, noauth admin) on a
// MemoryStateStore, or a SqliteStateStore in a temporary directory for the threaded race. A
// StateStore decorator runs a hook once, after the next write of a volume type's qos_specs_id.
#include "clinker/services/qos_api.h"

#include <atomic>
#include <barrier>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/sqlite/sqlite_state_store.h"

#include "support/api_harness.h"
#include "support/forwarding_state_store.h"
#include "support/temp_dir.h"

namespace clinker::services {
namespace {

using adapters::MemoryStateStore;
using nlohmann::json;
using ports::Table;
using test_support::ApiHarness;

// Runs a hook once, just after the next ConditionalUpdate of a volume type that sets
// qos_specs_id. Not thread safe: armed before the request.
class AfterAssociationWrite final : public test_support::ForwardingStateStore {
 public:
  explicit AfterAssociationWrite(ports::StateStore& inner) : ForwardingStateStore(inner) {}

  void Arm(std::function<void()> hook) { hook_ = std::move(hook); }

  Result<std::optional<ports::Row>> ConditionalUpdateWithUsage(
      Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override {
    auto updated = ForwardingStateStore::ConditionalUpdateWithUsage(
        table, id, values, expected, guards, usage);
    if (hook_ && table == Table::kVolumeTypes && values.contains("qos_specs_id")) {
      std::function<void()> hook = std::move(hook_);
      hook_ = nullptr;
      hook();
    }
    return updated;
  }

 private:
  std::function<void()> hook_;
};

std::optional<std::string> TextColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::string>(it->second)) {
    return std::nullopt;
  }
  return std::get<std::string>(it->second);
}

class QosApiTest : public ::testing::Test {
 protected:
  json CreateQos(const json& spec) {
    ports::HttpResponse response = api_.Post("qos-specs", {{"qos_specs", spec}});
    EXPECT_EQ(response.status, 200) << response.body;
    api_.clock().Advance(std::chrono::seconds(1));
    return ApiHarness::Body(response);
  }

  std::optional<std::string> QosOfType(const std::string& type_id) {
    auto row = store_.Get(Table::kVolumeTypes, type_id);
    EXPECT_TRUE(row.has_value());
    return row ? TextColumn(*row, "qos_specs_id") : std::nullopt;
  }

  MemoryStateStore store_;
  ApiHarness api_{store_};
};

TEST_F(QosApiTest, CreateAnswersTheDetailViewWithLinksAndBackEndAsTheDefaultConsumer) {
  json body = CreateQos({{"name", "  gold  "}, {"read_iops_sec", "2000"}});
  const json& qos = body["qos_specs"];
  EXPECT_EQ(qos["name"], "gold");  // Cinder strips the name.
  EXPECT_EQ(qos["consumer"], "back-end");
  EXPECT_EQ(qos["specs"], json({{"read_iops_sec", "2000"}}));
  ASSERT_EQ(body["links"].size(), 2U);
  EXPECT_EQ(body["links"][0]["href"],
            std::string(test_support::kHarnessBaseUrl) + ApiHarness::Path("qos-specs/") +
                qos["id"].get<std::string>());

  ports::HttpResponse shown = api_.Get("qos-specs/" + qos["id"].get<std::string>());
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(ApiHarness::Body(shown)["qos_specs"], qos);
}

TEST_F(QosApiTest, CreateRefusesBadInputAndDuplicateNames) {
  auto create = [this](const json& spec) {
    return api_.Post("qos-specs", {{"qos_specs", spec}});
  };
  EXPECT_EQ(create({{"consumer", "both"}}).status, 400);  // No name.
  EXPECT_EQ(create({{"name", "   "}}).status, 400);
  EXPECT_EQ(create({{"name", 7}}).status, 400);
  ports::HttpResponse consumer = create({{"name", "q"}, {"consumer", "middle"}});
  EXPECT_EQ(consumer.status, 400);
  EXPECT_NE(ApiHarness::FaultMessage(consumer).find("Valid consumer of QoS specs are"),
            std::string::npos);
  EXPECT_EQ(create({{"name", "q"}, {"iops", 5}}).status, 400);  // Values are strings.
  EXPECT_EQ(create({{"name", "q"}, {"iops", std::string(256, 'x')}}).status, 400);
  EXPECT_EQ(api_.Post("qos-specs", {{"qos", {{"name", "q"}}}}).status, 400);

  EXPECT_EQ(create({{"name", "q"}, {"consumer", "front-end"}}).status, 200);
  ports::HttpResponse again = create({{"name", "q"}});
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(ApiHarness::FaultMessage(again), "QoS Specs q already exists.");
}

TEST_F(QosApiTest, ListShowsEverySpecsAndFiltersByNameAndConsumer) {
  json gold = CreateQos({{"name", "gold"}, {"consumer", "front-end"}})["qos_specs"];
  json silver = CreateQos({{"name", "silver"}, {"consumer", "both"}, {"k", "v"}})["qos_specs"];

  json all = ApiHarness::Body(api_.Get("qos-specs"))["qos_specs"];
  ASSERT_EQ(all.size(), 2U);
  EXPECT_EQ(all[0], silver);  // Newest first.
  EXPECT_EQ(all[1], gold);

  json named = ApiHarness::Body(api_.Get("qos-specs", {{"name", "gold"}}))["qos_specs"];
  ASSERT_EQ(named.size(), 1U);
  EXPECT_EQ(named[0]["id"], gold["id"]);
  json both = ApiHarness::Body(api_.Get("qos-specs", {{"consumer", "both"}}))["qos_specs"];
  ASSERT_EQ(both.size(), 1U);
  EXPECT_EQ(both[0]["id"], silver["id"]);

  json page = ApiHarness::Body(api_.Get("qos-specs", {{"limit", "1"}}));
  ASSERT_EQ(page["qos_specs"].size(), 1U);
  ASSERT_TRUE(page.contains("qos_specs_links"));
  json next = ApiHarness::Body(api_.Get("qos-specs", {{"limit", "1"}, {"marker", silver["id"]}}));
  ASSERT_EQ(next["qos_specs"].size(), 1U);
  EXPECT_EQ(next["qos_specs"][0]["id"], gold["id"]);
}

TEST_F(QosApiTest, SetKeysMergesAndAnswersTheRequestAndUnsetIsAllOrNothing) {
  const std::string id =
      CreateQos({{"name", "gold"}, {"read_iops_sec", "2000"}})["qos_specs"]["id"];
  const std::string path = "qos-specs/" + id;

  ports::HttpResponse set = api_.Put(path, {{"qos_specs", {{"iops_bytes", "500"}}}});
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(ApiHarness::Body(set), json({{"qos_specs", {{"iops_bytes", "500"}}}}));
  ASSERT_EQ(api_.Put(path, {{"qos_specs", {{"consumer", "both"}}}}).status, 200);
  json shown = ApiHarness::Body(api_.Get(path))["qos_specs"];
  EXPECT_EQ(shown["specs"], json({{"read_iops_sec", "2000"}, {"iops_bytes", "500"}}));
  EXPECT_EQ(shown["consumer"], "both");
  EXPECT_EQ(api_.Put(path, {{"qos_specs", {{"consumer", "nobody"}}}}).status, 400);
  EXPECT_EQ(api_.Put(path, {{"qos_specs", {{"bad key!", "1"}}}}).status, 400);
  EXPECT_EQ(api_.Put("qos-specs/missing", {{"qos_specs", {{"k", "v"}}}}).status, 404);

  ports::HttpResponse missing =
      api_.Put(path + "/delete_keys", {{"keys", {"iops_bytes", "no_such_key"}}});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(ApiHarness::FaultMessage(missing),
            "QoS spec " + id + " has no spec with key no_such_key.");
  // Nothing was removed.
  EXPECT_TRUE(ApiHarness::Body(api_.Get(path))["qos_specs"]["specs"].contains("iops_bytes"));

  ASSERT_EQ(api_.Put(path + "/delete_keys", {{"keys", {"iops_bytes"}}}).status, 202);
  EXPECT_EQ(ApiHarness::Body(api_.Get(path))["qos_specs"]["specs"],
            json({{"read_iops_sec", "2000"}}));
  EXPECT_EQ(api_.Put(path + "/delete_keys", {{"keys", "iops_bytes"}}).status, 400);
}

TEST_F(QosApiTest, AssociationsShowInTheTypeAndInTheAssociationList) {
  const std::string qos = CreateQos({{"name", "gold"}})["qos_specs"]["id"];
  const std::string other = CreateQos({{"name", "silver"}})["qos_specs"]["id"];
  const std::string t1 = api_.CreateType("t1")["id"];
  const std::string t2 = api_.CreateType("t2")["id"];
  const std::string base = "qos-specs/" + qos;

  EXPECT_EQ(api_.Get(base + "/associate").status, 400);  // No vol_type_id.
  EXPECT_EQ(api_.Get(base + "/associate", {{"vol_type_id", "no-such-type"}}).status, 404);
  EXPECT_EQ(api_.Get("qos-specs/no-such-qos/associate", {{"vol_type_id", t1}}).status, 404);
  ASSERT_EQ(api_.Get(base + "/associate", {{"vol_type_id", t1}}).status, 202);
  ASSERT_EQ(api_.Get(base + "/associate", {{"vol_type_id", t1}}).status, 202);  // Again: no-op.
  ASSERT_EQ(api_.Get(base + "/associate", {{"vol_type_id", t2}}).status, 202);
  ports::HttpResponse taken = api_.Get("qos-specs/" + other + "/associate", {{"vol_type_id", t1}});
  EXPECT_EQ(taken.status, 400);
  EXPECT_NE(ApiHarness::FaultMessage(taken).find("already associated with another qos specs"),
            std::string::npos);

  json type = ApiHarness::Body(api_.Get("types/" + t1))["volume_type"];
  EXPECT_EQ(type["qos_specs_id"], qos);
  json associations = ApiHarness::Body(api_.Get(base + "/associations"))["qos_associations"];
  ASSERT_EQ(associations.size(), 2U);
  EXPECT_EQ(associations[0],
            json({{"association_type", "volume_type"}, {"name", "t1"}, {"id", t1}}));

  // Disassociating from another QoS specs leaves the association alone, as Cinder.
  ASSERT_EQ(api_.Get("qos-specs/" + other + "/disassociate", {{"vol_type_id", t1}}).status, 202);
  EXPECT_EQ(QosOfType(t1), qos);
  ASSERT_EQ(api_.Get(base + "/disassociate", {{"vol_type_id", t1}}).status, 202);
  EXPECT_EQ(QosOfType(t1), std::nullopt);
  ASSERT_EQ(api_.Get(base + "/disassociate_all").status, 202);
  EXPECT_EQ(QosOfType(t2), std::nullopt);
  EXPECT_TRUE(ApiHarness::Body(api_.Get(base + "/associations"))["qos_associations"].empty());
}

TEST_F(QosApiTest, DeleteIsRefusedWhileAssociatedUnlessForced) {
  const std::string qos = CreateQos({{"name", "gold"}})["qos_specs"]["id"];
  const std::string type = api_.CreateType("t1")["id"];
  ASSERT_EQ(api_.Get("qos-specs/" + qos + "/associate", {{"vol_type_id", type}}).status, 202);

  ports::HttpResponse refused = api_.Delete("qos-specs/" + qos);
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(ApiHarness::FaultMessage(refused), "Qos specs still in use.");
  EXPECT_EQ(api_.Get("qos-specs/" + qos).status, 200);

  ASSERT_EQ(api_.Delete("qos-specs/" + qos, {{"force", "True"}}).status, 202);
  ports::HttpResponse gone = api_.Get("qos-specs/" + qos);
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(ApiHarness::FaultMessage(gone), "No such QoS spec " + qos + ".");
  EXPECT_EQ(QosOfType(type), std::nullopt);
  EXPECT_EQ(api_.Delete("qos-specs/" + qos).status, 404);
  // The name is free again.
  CreateQos({{"name", "gold"}});
}

TEST(QosApiRace, DeleteBetweenTheAssociationAndItsPinTakesTheAssociationBack) {
  MemoryStateStore memory;
  AfterAssociationWrite store(memory);
  ApiHarness api(store);
  const std::string qos =
      ApiHarness::Body(api.Post("qos-specs", {{"qos_specs", {{"name", "q"}}}}))["qos_specs"]["id"];
  const std::string type = api.CreateType("t1")["id"];

  ports::HttpResponse deleted;
  store.Arm([&] { deleted = api.Delete("qos-specs/" + qos); });
  ports::HttpResponse associated =
      api.Get("qos-specs/" + qos + "/associate", {{"vol_type_id", type}});

  // The type row held the association when the delete's guard looked: refused as in use.
  EXPECT_EQ(deleted.status, 400) << deleted.body;
  EXPECT_EQ(associated.status, 202) << associated.body;
  EXPECT_EQ(TextColumn(*memory.Get(Table::kVolumeTypes, type), "qos_specs_id"), qos);
}

TEST(QosApiRace, ForcedDeleteBetweenTheAssociationAndItsPinWins) {
  MemoryStateStore memory;
  AfterAssociationWrite store(memory);
  ApiHarness api(store);
  const std::string qos =
      ApiHarness::Body(api.Post("qos-specs", {{"qos_specs", {{"name", "q"}}}}))["qos_specs"]["id"];
  const std::string type = api.CreateType("t1")["id"];

  ports::HttpResponse deleted;
  store.Arm([&] { deleted = api.Delete("qos-specs/" + qos, {{"force", "true"}}); });
  ports::HttpResponse associated =
      api.Get("qos-specs/" + qos + "/associate", {{"vol_type_id", type}});

  // The forced delete cleared the association and deleted the specs; the pin then failed.
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  EXPECT_EQ(associated.status, 404) << associated.body;
  EXPECT_EQ(TextColumn(*memory.Get(Table::kVolumeTypes, type), "qos_specs_id"), std::nullopt);
}

// Real threads on SQLite: associate and force-delete race, round after round. Whatever the
// order, the type never points at the deleted QoS specs.
TEST(QosApiRace, ThreadsNeverLeaveATypeOnADeletedQosSpecs) {
  test_support::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  adapters::sqlite::Database::Options options;
  options.path = dir.path() + "/state.db";
  auto store = adapters::SqliteStateStore::Open(options);
  ASSERT_TRUE(store.has_value()) << store.error().ToString();
  ApiHarness api(**store);
  const std::string type = api.CreateType("t1")["id"];
  constexpr int kRounds = 30;
  for (int round = 0; round < kRounds; ++round) {
    ports::HttpResponse created =
        api.Post("qos-specs", {{"qos_specs", {{"name", "q" + std::to_string(round)}}}});
    ASSERT_EQ(created.status, 200) << created.body;
    const std::string qos = ApiHarness::Body(created)["qos_specs"]["id"];
    std::barrier start(2);
    ports::HttpResponse associated;
    ports::HttpResponse deleted;
    std::thread associate([&] {
      start.arrive_and_wait();
      associated = api.Get("qos-specs/" + qos + "/associate", {{"vol_type_id", type}});
    });
    std::thread remove([&] {
      start.arrive_and_wait();
      deleted = api.Delete("qos-specs/" + qos, {{"force", "true"}});
    });
    associate.join();
    remove.join();
    ASSERT_EQ(deleted.status, 202) << deleted.body;
    ASSERT_TRUE(associated.status == 202 || associated.status == 404) << associated.body;
    // The forced delete always wins; an association made before it is cleared by it, one made
    // after it finds the specs gone (or its pin fails and it is taken back).
    auto row = (*store)->Get(Table::kVolumeTypes, type);
    ASSERT_TRUE(row.has_value());
    ASSERT_EQ(TextColumn(*row, "qos_specs_id"), std::nullopt)
        << "round " << round << ": the type points at a deleted QoS specs";
  }
}

}  // namespace
}  // namespace clinker::services
