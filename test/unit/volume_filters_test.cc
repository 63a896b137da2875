// Volume list filters (services/volume_filters.h): every filter Cinder lists for volumes is
// applied, and an unknown one is never silently dropped (400 for a member, nothing for an admin).
#include "clinker/services/volume_filters.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_state_store.h"

#include "support/api_harness.h"

namespace clinker::services {
namespace {

using nlohmann::json;
using test_support::ApiHarness;
using Query = std::vector<std::pair<std::string, std::string>>;

ports::HttpRequest ListRequest(Query query) {
  ports::HttpRequest request;
  request.method = "GET";
  request.path = "/v3/p/volumes";
  request.query = std::move(query);
  return request;
}

TEST(ParseVolumeListFiltersTest, AMembersUnknownFilterIsRefusedNamingIt) {
  auto parsed =
      ParseVolumeListFilters(ListRequest({{"name", "a"}, {"nonexistent", "1"}, {"bogus", "2"}}),
                             Microversion{3, 0},
                             false);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(parsed.error().message,
            "Invalid filters nonexistent,bogus are found in query options.");
}

TEST(ParseVolumeListFiltersTest, AnAdminsUnknownFilterMatchesNothing) {
  auto parsed =
      ParseVolumeListFilters(ListRequest({{"nonexistent", "1"}}), Microversion{3, 0}, true);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  EXPECT_TRUE(parsed->matches_nothing);
}

TEST(ParseVolumeListFiltersTest, PagingSortingAndScopeAreNotFilters) {
  auto parsed = ParseVolumeListFilters(ListRequest({{"limit", "1"},
                                                    {"offset", "0"},
                                                    {"marker", "x"},
                                                    {"sort", "id:asc"},
                                                    {"sort_key", "id"},
                                                    {"sort_dir", "asc"},
                                                    {"with_count", "true"},
                                                    {"all_tenants", "1"},
                                                    {"project_id", "p"}}),
                                       Microversion{3, 45},
                                       false);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  EXPECT_FALSE(parsed->matches_nothing);
  EXPECT_TRUE(parsed->where.empty());
  EXPECT_FALSE(parsed->NeedsRowCheck());
}

TEST(ParseVolumeListFiltersTest, BadValuesAreRefused) {
  for (const Query& query : std::vector<Query>{{{"size", "two"}},
                                               {{"size", "-1"}},
                                               {{"metadata", "not a dict"}},
                                               {{"metadata", "[1, 2]"}},
                                               {{"created_at", "2026-01-01T00:00:00"}},
                                               {{"created_at", "after:2026-01-01T00:00:00"}},
                                               {{"created_at", "gt:yesterday"}},
                                               {{"bootable", "perhaps"}},
                                               {{"n\xc3\xa4me", "x"}}}) {
    auto parsed = ParseVolumeListFilters(ListRequest(query), Microversion{3, 60}, false);
    EXPECT_FALSE(parsed.has_value()) << query.front().first << "=" << query.front().second;
  }
}

TEST(ParseVolumeListFiltersTest, FiltersNewerThanTheRequestAreDropped) {
  auto old = ParseVolumeListFilters(
      ListRequest({{"created_at", "gt:2026-01-01T00:00:00"}, {"group_id", "g"}}),
      Microversion{3, 0},
      false);
  ASSERT_TRUE(old.has_value()) << old.error().ToString();
  EXPECT_TRUE(old->times.empty());
  EXPECT_TRUE(old->where.empty());
  auto now = ParseVolumeListFilters(
      ListRequest({{"created_at", "gt:2026-01-01T01:00:00+01:00,lte:2026-02-01T00:00:00.5Z"}}),
      Microversion{3, 60},
      false);
  ASSERT_TRUE(now.has_value()) << now.error().ToString();
  ASSERT_EQ(now->times.size(), 2u);
  EXPECT_EQ(now->times[0].op, "gt");
  EXPECT_EQ(now->times[0].time, "2026-01-01T00:00:00.000000");  // Stored as naive UTC.
  EXPECT_EQ(now->times[1].time, "2026-02-01T00:00:00.500000");
}

class VolumeListFilterApiTest : public ::testing::Test {
 protected:
  std::string Create(const json& volume) {
    ports::HttpResponse response = api_.Post("volumes", {{"volume", volume}});
    EXPECT_EQ(response.status, 202) << response.body;
    api_.clock().Advance(std::chrono::seconds(10));
    return ApiHarness::Body(response)["volume"].value("id", "");
  }

  std::set<std::string> Listed(Query query, std::string_view version = "3.0") {
    ports::HttpRequest request =
        ApiHarness::Request("GET", ApiHarness::Path("volumes/detail"), "", std::move(query));
    request.headers.emplace_back("OpenStack-API-Version", "volume " + std::string(version));
    ports::HttpResponse response = api_.Send(request);
    EXPECT_EQ(response.status, 200) << response.body;
    std::set<std::string> ids;
    const json body = ApiHarness::Body(response);
    for (const json& volume : body["volumes"]) {
      ids.insert(volume.value("id", ""));
    }
    return ids;
  }

  adapters::MemoryStateStore store_;
  ApiHarness api_{store_};
};

TEST_F(VolumeListFilterApiTest, MetadataSizeAndTimesFilterTheList) {
  const std::string work = Create({{"size", 1}, {"metadata", {{"Type", "work"}, {"a", "1"}}}});
  const std::string home = Create({{"size", 2}, {"metadata", {{"Type", "home"}}}});
  const std::string bare = Create({{"size", 2}});
  ASSERT_EQ(Listed({}).size(), 3u);

  EXPECT_EQ(Listed({{"metadata", R"({"Type": "work"})"}}), std::set<std::string>{work});
  // What python-cinderclient and Tempest send: a Python dict literal.
  EXPECT_EQ(Listed({{"metadata", "{'Type': 'home'}"}}), std::set<std::string>{home});
  EXPECT_TRUE(Listed({{"metadata", R"({"nonexistent": "zzz"})"}}).empty());
  EXPECT_EQ(Listed({{"size", "2"}}), (std::set<std::string>{home, bare}));
  EXPECT_TRUE(Listed({{"size", "3"}}).empty());
  EXPECT_EQ(Listed({{"bootable", "false"}}).size(), 3u);
  EXPECT_TRUE(Listed({{"bootable", "true"}}).empty());
  // An admin's unknown filter matches nothing rather than everything.
  EXPECT_TRUE(Listed({{"nonexistent", "zzz"}}).empty());

  // 3.60: created_at comparisons (each volume was made 10 s after the previous one).
  const json shown = ApiHarness::Body(api_.Get("volumes/" + home));
  const std::string home_created = shown["volume"].value("created_at", "");
  ASSERT_FALSE(home_created.empty());
  EXPECT_EQ(Listed({{"created_at", "gte:" + home_created}}, "3.60"),
            (std::set<std::string>{home, bare}));
  EXPECT_EQ(Listed({{"created_at", "lt:" + home_created}}, "3.60"), std::set<std::string>{work});
  // Before 3.60 the filter is dropped, as Cinder drops it.
  EXPECT_EQ(Listed({{"created_at", "lt:" + home_created}}, "3.59").size(), 3u);
}

TEST_F(VolumeListFilterApiTest, PaginationAppliesToTheRowsThatPassAFilterTheStoreCannotMatch) {
  std::vector<std::string> tagged;
  for (int i = 0; i < 6; ++i) {
    std::string id = Create({{"size", 1}, {"metadata", {{"tag", i % 2 == 0 ? "even" : "odd"}}}});
    if (i % 2 == 0) {
      tagged.push_back(id);
    }
  }
  std::set<std::string> seen;
  std::string marker;
  for (int page = 0; page < 5; ++page) {
    Query query = {{"metadata", R"({"tag": "even"})"}, {"limit", "2"}, {"with_count", "true"}};
    if (!marker.empty()) {
      query.emplace_back("marker", marker);
    }
    ports::HttpRequest request =
        ApiHarness::Request("GET", ApiHarness::Path("volumes"), "", std::move(query));
    request.headers.emplace_back("OpenStack-API-Version", "volume 3.45");
    ports::HttpResponse response = api_.Send(request);
    ASSERT_EQ(response.status, 200) << response.body;
    const json body = ApiHarness::Body(response);
    EXPECT_EQ(body.value("count", -1), 3) << body.dump();
    for (const json& volume : body["volumes"]) {
      EXPECT_TRUE(seen.insert(volume.value("id", "")).second) << "listed twice";
    }
    if (!body.contains("volumes_links")) {
      break;
    }
    marker = body["volumes"].back().value("id", "");
  }
  EXPECT_EQ(seen, std::set<std::string>(tagged.begin(), tagged.end()));
  ports::HttpResponse unknown_marker =
      api_.Get("volumes", {{"metadata", R"({"tag": "even"})"}, {"marker", std::string(36, 'f')}});
  EXPECT_EQ(unknown_marker.status, 404) << unknown_marker.body;
}

}  // namespace
}  // namespace clinker::services
