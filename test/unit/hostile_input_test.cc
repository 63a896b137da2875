// Hostile request bodies: the nesting bound (core/json_depth.h) that keeps a small, deeply nested
// body from overflowing a thread's stack, checked on its own and through the whole API.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/json_depth.h"
#include "clinker/services/api_common.h"
#include "clinker/services/metadata_rules.h"

#include "support/api_harness.h"

namespace clinker {
namespace {

using nlohmann::json;
using test_support::ApiHarness;

std::string Nested(std::size_t levels, char open = '[', char close = ']') {
  return std::string(levels, open) + std::string(levels, close);
}

TEST(JsonNestingDepthTest, CountsBracketsOutsideStringsOnly) {
  EXPECT_EQ(JsonNestingDepth("", 10), 0u);
  EXPECT_EQ(JsonNestingDepth("1", 10), 0u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": [1, {"b": 2}], "c": {}})", 10), 3u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": "[[[[{{{{"})", 10), 1u);
  // An escaped quote does not end the string; an escaped backslash does not escape the quote.
  EXPECT_EQ(JsonNestingDepth(R"({"a": "x\"[[[["})", 10), 1u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": "x\\", "b": [[1]]})", 10), 3u);
  EXPECT_EQ(JsonNestingDepth(Nested(5), 10), 5u);
  EXPECT_EQ(JsonNestingDepth(Nested(10), 10), 10u);
}

TEST(JsonNestingDepthTest, StopsAsSoonAsTheBoundIsPassed) {
  EXPECT_EQ(JsonNestingDepth(Nested(11), 10), 11u);
  EXPECT_EQ(JsonNestingDepth(Nested(1000000, '{', '}'), 32), 33u);
  // Unbalanced or malformed text still gets a number (the parser refuses it afterwards).
  EXPECT_EQ(JsonNestingDepth("]]]][[", 10), 2u);
  EXPECT_EQ(JsonNestingDepth(std::string(100, '['), 10), 11u);
}

class HostileBodyTest : public ::testing::Test {
 protected:
  adapters::MemoryStateStore store_;
  ApiHarness api_{store_};
};

TEST_F(HostileBodyTest, DeeplyNestedBodiesAreRefusedWithBadRequestAndWriteNothing) {
  for (std::size_t levels : {33u, 1000u, 100000u, 1000000u}) {
    // The volume and its root are two levels; the metadata makes up the rest.
    const std::string body =
        R"({"volume": {"size": 1, "metadata": )" + Nested(levels - 2, '{', '}') + "}}";
    for (const char* rest : {"volumes", "snapshots", "backups", "attachments"}) {
      ports::HttpResponse response = api_.Send(ApiHarness::Request("POST", api_.Path(rest), body));
      EXPECT_EQ(response.status, 400) << levels << " " << rest << ": " << response.body;
      EXPECT_NE(ApiHarness::FaultMessage(response).find("nests deeper than 32"), std::string::npos)
          << response.body;
    }
    ports::HttpResponse action = api_.Send(ApiHarness::Request(
        "POST", api_.Path("volumes/" + std::string(36, 'a') + "/action"), body));
    EXPECT_EQ(action.status, 400) << action.body;
  }
  ports::HttpResponse listed = api_.Get("volumes");
  ASSERT_EQ(listed.status, 200) << listed.body;
  EXPECT_TRUE(ApiHarness::Body(listed)["volumes"].empty());
}

TEST_F(HostileBodyTest, ANulByteIsAMalformedBodyNotTheEndOfIt) {
  std::string body = R"({"volume": {"size": 1}})";
  body += std::string(1, '\0') + "garbage";
  ports::HttpResponse response = api_.Send(ApiHarness::Request("POST", api_.Path("volumes"), body));
  EXPECT_EQ(response.status, 400) << response.body;
  EXPECT_EQ(ApiHarness::FaultMessage(response), "Malformed request body");
  EXPECT_TRUE(ApiHarness::Body(api_.Get("volumes"))["volumes"].empty());
  // Escaped, a NUL is an ordinary character of a string.
  ports::HttpResponse escaped = api_.Send(ApiHarness::Request(
      "POST", api_.Path("volumes"), R"({"volume": {"size": 1, "description": "a\u0000b"}})"));
  EXPECT_EQ(escaped.status, 202) << escaped.body;
}

// Cinder's request schemas have additionalProperties: false: a misspelt or unknown field is a
// 400 naming it, never silently ignored.
TEST_F(HostileBodyTest, UnknownPropertiesAreRefusedAsCindersSchemasRefuseThem) {
  auto send = [&](const std::string& method,
                  const std::string& rest,
                  const json& body,
                  std::string_view version) {
    ports::HttpRequest request = ApiHarness::Request(method, api_.Path(rest), body.dump());
    request.headers.emplace_back("OpenStack-API-Version", "volume " + std::string(version));
    return api_.Send(request);
  };
  ports::HttpResponse created = api_.Post("volumes", {{"volume", {{"size", 1}}}});
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string volume = ApiHarness::Body(created)["volume"].value("id", "");

  struct Case {
    std::string method;
    std::string rest;
    json body;
    std::string version;
    std::string unexpected;
  };

  const std::vector<Case> cases = {
      {"POST", "volumes", {{"volume", {{"size", 1}, {"bogus", 1}}}}, "3.53", "bogus"},
      {"POST", "volumes", {{"volume", {{"size", 1}}}, {"bogus", 1}}, "3.0", "bogus"},
      {"PUT", "volumes/" + volume, {{"volume", {{"name", "n"}, {"bogus", 1}}}}, "3.0", "bogus"},
      {"POST", "snapshots", {{"snapshot", {{"volume_id", volume}, {"bogus", 1}}}}, "3.0", "bogus"},
      {"POST", "backups", {{"backup", {{"volume_id", volume}, {"bogus", 1}}}}, "3.0", "bogus"},
      // metadata and availability_zone arrive with 3.43 and 3.51.
      {"POST",
       "backups",
       {{"backup", {{"volume_id", volume}, {"metadata", json::object()}}}},
       "3.42",
       "metadata"},
      {"POST",
       "attachments",
       {{"attachment", {{"volume_uuid", volume}, {"bogus", 1}}}},
       "3.27",
       "bogus"},
      // mode arrives with 3.54.
      {"POST",
       "attachments",
       {{"attachment", {{"volume_uuid", volume}, {"mode", "zz"}}}},
       "3.27",
       "mode"},
  };
  for (const Case& c : cases) {
    ports::HttpResponse response = send(c.method, c.rest, c.body, c.version);
    EXPECT_EQ(response.status, 400) << c.method << " " << c.rest << " " << response.body;
    EXPECT_NE(ApiHarness::FaultMessage(response).find("'" + c.unexpected + "' was unexpected"),
              std::string::npos)
        << response.body;
  }
  // Before 3.53 a volume create ignores what it does not know, as Cinder's schema allows.
  ports::HttpResponse lenient =
      send("POST", "volumes", {{"volume", {{"size", 1}, {"bogus", 1}}}}, "3.52");
  EXPECT_EQ(lenient.status, 202) << lenient.body;
  // Scheduler hints ride beside the volume.
  ports::HttpResponse hinted =
      send("POST",
           "volumes",
           {{"volume", {{"size", 1}}}, {"OS-SCH-HNT:scheduler_hints", json::object()}},
           "3.53");
  EXPECT_EQ(hinted.status, 202) << hinted.body;
}

TEST(UuidFormatTest, IsOslosIsUuidLike) {
  using services::IsUuidLike;
  EXPECT_TRUE(IsUuidLike("c0ffee00-0000-4000-8000-000000000001"));
  EXPECT_TRUE(IsUuidLike("C0FFEE00-0000-4000-8000-000000000001"));
  EXPECT_TRUE(IsUuidLike("c0ffee0000004000800000000000000a"));
  EXPECT_TRUE(IsUuidLike("{c0ffee00-0000-4000-8000-000000000001}"));
  EXPECT_TRUE(IsUuidLike("urn:uuid:c0ffee00-0000-4000-8000-000000000001"));
  EXPECT_TRUE(IsUuidLike("c0ff-ee00-0000-4000-8000-0000-0000-0001"));
  EXPECT_FALSE(IsUuidLike(""));
  EXPECT_FALSE(IsUuidLike("xyz"));
  EXPECT_FALSE(IsUuidLike("c0ffee00-0000-4000-8000-00000000000"));
  EXPECT_FALSE(IsUuidLike("c0ffee00-0000-4000-8000-0000000000001"));
  EXPECT_FALSE(IsUuidLike("g0ffee00-0000-4000-8000-000000000001"));
  EXPECT_FALSE(IsUuidLike(" c0ffee00-0000-4000-8000-000000000001"));
}

class HostileValidationTest : public HostileBodyTest {
 protected:
  ports::HttpResponse Send(const std::string& method,
                           const std::string& rest,
                           const json& body,
                           std::string_view version = "3.0") {
    ports::HttpRequest request = ApiHarness::Request(method, api_.Path(rest), body.dump());
    request.headers.emplace_back("OpenStack-API-Version", "volume " + std::string(version));
    return api_.Send(request);
  }

  std::string NewVolume() {
    ports::HttpResponse created = api_.Post("volumes", {{"volume", {{"size", 1}}}});
    EXPECT_EQ(created.status, 202) << created.body;
    return ApiHarness::Body(created)["volume"].value("id", "");
  }

  // No worker runs here: a volume is made as one would leave it (on a back-end, available), a
  // snapshot by an admin's os-reset_status.
  void MakeAvailable(const std::string& collection, const std::string& id) {
    if (collection == "volumes") {
      auto written =
          store_.ConditionalUpdate(ports::Table::kVolumes,
                                   id,
                                   {{"status", "available"}, {"host", "node1@file#pool"}},
                                   {},
                                   {});
      ASSERT_TRUE(written && written->has_value());
      return;
    }
    ports::HttpResponse reset = api_.Post(collection + "/" + id + "/action",
                                          {{"os-reset_status", {{"status", "available"}}}});
    EXPECT_EQ(reset.status, 202) << reset.body;
  }

  static void ExpectFault(const ports::HttpResponse& response,
                          int status,
                          const std::string& message) {
    EXPECT_EQ(response.status, status) << response.body;
    EXPECT_EQ(ApiHarness::FaultMessage(response), message) << response.body;
  }
};

// Body ids are held to Cinder's uuid schemas with jsonschema's words (checked against Cinder's
// own validator), before any lookup: a 400, never the lookup's 404.
TEST_F(HostileValidationTest, BodyIdsThatAreNotUuidsAreCindersSchemaErrors) {
  const std::string volume = NewVolume();
  const std::string one_of = "'xyz' is not valid under any of the given schemas";
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"snapshot_id", "xyz"}}}}),
              400,
              "Invalid input for field/attribute snapshot_id. Value: xyz. " + one_of);
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"source_volid", "xyz"}}}}),
              400,
              "Invalid input for field/attribute source_volid. Value: xyz. " + one_of);
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"snapshot_id", 5}}}}),
              400,
              "Invalid input for field/attribute snapshot_id. Value: 5. 5 is not valid under any "
              "of the given schemas");
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"consistencygroup_id", "xyz"}}}}),
              400,
              "Invalid input for field/attribute consistencygroup_id. Value: xyz. " + one_of);
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"backup_id", "xyz"}}}}, "3.47"),
              400,
              "Invalid input for field/attribute backup_id. Value: xyz. " + one_of);
  ExpectFault(Send("POST", "snapshots", {{"snapshot", {{"volume_id", "xyz"}}}}),
              400,
              "Invalid input for field/attribute volume_id. Value: xyz. " + one_of);
  ExpectFault(Send("POST", "backups", {{"backup", {{"volume_id", "xyz"}}}}),
              400,
              "Invalid input for field/attribute volume_id. Value: xyz. 'xyz' is not a 'uuid'");
  ExpectFault(Send("POST", "backups", {{"backup", {{"volume_id", 5}}}}),
              400,
              "Invalid input for field/attribute volume_id. Value: 5. 5 is not of type 'string'");
  ExpectFault(
      Send("POST", "backups", {{"backup", {{"volume_id", volume}, {"snapshot_id", "xyz"}}}}),
      400,
      "Invalid input for field/attribute snapshot_id. Value: xyz. " + one_of);
  ExpectFault(Send("POST", "attachments", {{"attachment", {{"volume_uuid", "xyz"}}}}, "3.27"),
              400,
              "Invalid input for field/attribute volume_uuid. Value: xyz. 'xyz' is not a 'uuid'");
  ExpectFault(Send("POST",
                   "attachments",
                   {{"attachment", {{"volume_uuid", volume}, {"instance_uuid", "xyz"}}}},
                   "3.27"),
              400,
              "Invalid input for field/attribute instance_uuid. Value: xyz. 'xyz' is not a 'uuid'");
  // Nothing was made by any of them.
  EXPECT_EQ(ApiHarness::Body(api_.Get("volumes"))["volumes"].size(), 1u);
  EXPECT_TRUE(ApiHarness::Body(api_.Get("snapshots"))["snapshots"].empty());
  EXPECT_TRUE(ApiHarness::Body(api_.Get("backups"))["backups"].empty());
  // A well-formed id that names nothing is still the lookup's 404.
  EXPECT_EQ(Send("POST",
                 "snapshots",
                 {{"snapshot", {{"volume_id", "c0ffee00-0000-4000-8000-000000000001"}}}})
                .status,
            404);
}

// Cinder answers an id in the URL that is not a UUID as one that names nothing: 404.
TEST_F(HostileValidationTest, PathIdsThatAreNotUuidsAreNotFound) {
  for (const char* rest : {"volumes/xyz", "snapshots/xyz", "backups/xyz", "volumes/xyz/metadata"}) {
    EXPECT_EQ(api_.Get(rest).status, 404) << rest;
  }
  EXPECT_EQ(Send("GET", "attachments/xyz", nullptr, "3.27").status, 404);
  EXPECT_EQ(Send("PUT", "volumes/xyz", {{"volume", {{"name", "n"}}}}).status, 404);
  EXPECT_EQ(Send("DELETE", "volumes/xyz", nullptr).status, 404);
}

// Lengths are Python's len(): characters, not UTF-8 bytes.
TEST_F(HostileValidationTest, NameAndDescriptionLimitsCountCharacters) {
  std::string at_limit;
  for (int i = 0; i < 255; ++i) {
    at_limit += "\u4e2d";
  }
  const std::string over = at_limit + "\u4e2d";
  ports::HttpResponse created =
      Send("POST",
           "volumes",
           {{"volume", {{"size", 1}, {"name", at_limit}, {"description", at_limit}}}});
  ASSERT_EQ(created.status, 202) << created.body;
  const json volume = ApiHarness::Body(created)["volume"];
  EXPECT_EQ(volume.value("name", ""), at_limit);
  const std::string id = volume.value("id", "");
  MakeAvailable("volumes", id);
  // Volumes: the name format checker's words.
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"name", over}}}}),
              400,
              "Invalid input received: name has 256 characters, more than 255.");
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"display_description", over}}}}),
              400,
              "Invalid input received: description has 256 characters, more than 255.");
  ExpectFault(Send("PUT", "volumes/" + id, {{"volume", {{"name", over}}}}),
              400,
              "Invalid input received: name has 256 characters, more than 255.");
  EXPECT_EQ(Send("PUT", "volumes/" + id, {{"volume", {{"description", at_limit}}}}).status, 200);
  // Snapshots and backups: jsonschema's maxLength.
  const std::string too_long =
      "Invalid input for field/attribute name. Value: " + over + ". '" + over + "' is too long";
  ExpectFault(Send("POST", "snapshots", {{"snapshot", {{"volume_id", id}, {"name", over}}}}),
              400,
              too_long);
  ExpectFault(
      Send("POST", "backups", {{"backup", {{"volume_id", id}, {"name", over}}}}), 400, too_long);
  ports::HttpResponse snapshot =
      Send("POST", "snapshots", {{"snapshot", {{"volume_id", id}, {"name", at_limit}}}});
  EXPECT_EQ(snapshot.status, 202) << snapshot.body;
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"name", 5}}}}),
              400,
              "Invalid input for field/attribute name. Value: 5. 5 is not of type 'string', "
              "'null'");
}

json ManyKeys(std::size_t count, const std::string& value = "v") {
  json metadata = json::object();
  for (std::size_t i = 0; i < count; ++i) {
    metadata["k" + std::to_string(i)] = value;
  }
  return metadata;
}

TEST_F(HostileValidationTest, MetadataValuesAndKeysFollowCindersSchema) {
  std::string at_limit;
  for (int i = 0; i < 255; ++i) {
    at_limit += "\u4e2d";
  }
  EXPECT_EQ(
      Send("POST", "volumes", {{"volume", {{"size", 1}, {"metadata", {{"k", at_limit}}}}}}).status,
      202);
  const std::string over = at_limit + "\u4e2d";
  ExpectFault(
      Send("POST", "volumes", {{"volume", {{"size", 1}, {"metadata", {{"k", over}}}}}}),
      400,
      "Invalid input for field/attribute k. Value: " + over + ". '" + over + "' is too long");
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"metadata", {{"k", 5}}}}}}),
              400,
              "Invalid input for field/attribute k. Value: 5. 5 is not of type 'string'");
  ExpectFault(Send("POST", "volumes", {{"volume", {{"size", 1}, {"metadata", {{"", "v"}}}}}}),
              400,
              "Invalid input for field/attribute metadata. Value: {'': 'v'}. '' does not match "
              "any of the regexes: '^[a-zA-Z0-9-_:. /]{1,255}$'");
}

// Clinker's bound on one metadata map: 413 when a request would create or grow a map past it,
// on every path that writes one.
TEST_F(HostileValidationTest, MetadataMapsAreBoundedInItemsAndBytes) {
  const std::size_t most = services::kMaxMetadataItems;
  const std::string items_message = "Invalid metadata size: " + std::to_string(most + 1) +
                                    " metadata items, more than " + std::to_string(most) + ".";
  ports::HttpResponse full =
      Send("POST", "volumes", {{"volume", {{"size", 1}, {"metadata", ManyKeys(most)}}}});
  ASSERT_EQ(full.status, 202) << full.body;
  const std::string id = ApiHarness::Body(full)["volume"].value("id", "");
  MakeAvailable("volumes", id);
  ExpectFault(
      Send("POST", "volumes", {{"volume", {{"size", 1}, {"metadata", ManyKeys(most + 1)}}}}),
      413,
      items_message);
  ExpectFault(Send("PUT", "volumes/" + id, {{"volume", {{"metadata", ManyKeys(most + 1)}}}}),
              413,
              items_message);
  ExpectFault(
      Send("POST", "volumes", {{"volume", {{"size", 1}, {"metadata", ManyKeys(200000)}}}}),
      413,
      "Invalid metadata size: 200000 metadata items, more than " + std::to_string(most) + ".");
  // Bytes: 255 items of 255 + 4 bytes each stay under the item count but not the byte bound.
  const json big = ManyKeys(255, std::string(255, 'v'));
  ports::HttpResponse too_big =
      Send("POST", "volumes", {{"volume", {{"size", 1}, {"metadata", big}}}});
  EXPECT_EQ(too_big.status, 413) << too_big.body;
  EXPECT_NE(ApiHarness::FaultMessage(too_big).find("bytes of metadata keys and values, more than"),
            std::string::npos)
      << too_big.body;
  // The metadata sub-resource: a POST that adds one more key to a full map, a PUT of too many.
  ExpectFault(Send("POST", "volumes/" + id + "/metadata", {{"metadata", {{"extra", "v"}}}}),
              413,
              items_message);
  ExpectFault(Send("PUT", "volumes/" + id + "/metadata", {{"metadata", ManyKeys(most + 1)}}),
              413,
              items_message);
  ExpectFault(Send("PUT", "volumes/" + id + "/metadata/extra", {{"meta", {{"extra", "v"}}}}),
              413,
              items_message);
  // Replacing a value or removing a key of a full map is fine.
  EXPECT_EQ(Send("POST", "volumes/" + id + "/metadata", {{"metadata", {{"k0", "w"}}}}).status, 200);
  EXPECT_EQ(Send("DELETE", "volumes/" + id + "/metadata/k0", nullptr).status, 200);
  // Snapshots and backups.
  ports::HttpResponse snapshot =
      Send("POST", "snapshots", {{"snapshot", {{"volume_id", id}, {"metadata", ManyKeys(most)}}}});
  ASSERT_EQ(snapshot.status, 202) << snapshot.body;
  const std::string snapshot_id = ApiHarness::Body(snapshot)["snapshot"].value("id", "");
  MakeAvailable("snapshots", snapshot_id);
  ExpectFault(Send("POST",
                   "snapshots",
                   {{"snapshot", {{"volume_id", id}, {"metadata", ManyKeys(most + 1)}}}}),
              413,
              items_message);
  ExpectFault(
      Send("POST", "snapshots/" + snapshot_id + "/metadata", {{"metadata", {{"extra", "v"}}}}),
      413,
      items_message);
  ExpectFault(Send("POST",
                   "backups",
                   {{"backup", {{"volume_id", id}, {"metadata", ManyKeys(most + 1)}}}},
                   "3.43"),
              413,
              items_message);
}

TEST_F(HostileBodyTest, OrdinaryNestingStillWorks) {
  // The deepest body Cinder's API takes (metadata in a volume in the root) is well inside.
  ports::HttpResponse created =
      api_.Post("volumes", {{"volume", {{"size", 1}, {"metadata", {{"k", "v"}}}}}});
  EXPECT_EQ(created.status, 202) << created.body;
  // Brackets inside strings are not nesting.
  ports::HttpResponse named =
      api_.Post("volumes", {{"volume", {{"size", 1}, {"name", std::string(200, '[')}}}});
  EXPECT_EQ(named.status, 202) << named.body;
}

}  // namespace
}  // namespace clinker
