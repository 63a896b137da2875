// Hostile request bodies: the nesting bound (core/json_depth.h) that keeps a small, deeply nested
// body from overflowing a thread's stack, checked on its own and through the whole API.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/json_depth.h"

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
