// /healthcheck: oslo.middleware's answers (200 "OK", 503 with the failing probes' reasons, the
// JSON form when asked, HEAD without a body, 405 otherwise), probes asked on every request, and
// the detailed form served through ApiService only to an authenticated admin.
#include "clinker/services/healthcheck.h"

#include <atomic>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_state_store.h"

#include "support/api_harness.h"

namespace clinker::services {
namespace {

ports::HttpRequest Probe(std::string method = "GET", std::string accept = "") {
  ports::HttpRequest request;
  request.method = std::move(method);
  request.path = "/healthcheck";
  if (!accept.empty()) {
    request.headers.emplace_back("Accept", std::move(accept));
  }
  return request;
}

struct Switch {
  std::optional<std::string> failure;
  int asked = 0;
};

std::vector<HealthProbe> Probes(Switch& database, Switch& volume) {
  return {{"database",
           [&database] {
             ++database.asked;
             return database.failure;
           }},
          {"volume service host@file", [&volume] {
             ++volume.asked;
             return volume.failure;
           }}};
}

TEST(HealthcheckTest, AllWellIsOkAsPlainText) {
  Switch database;
  Switch volume;
  Healthcheck health(Probes(database, volume));
  ports::HttpResponse response = health.Answer(Probe(), false);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "text/plain");
  EXPECT_EQ(response.body, "OK");
  EXPECT_EQ(database.asked, 1);
  EXPECT_EQ(volume.asked, 1);
}

TEST(HealthcheckTest, AFailingProbeIs503WithItsReasonAndEveryProbeIsAskedEachTime) {
  Switch database;
  Switch volume;
  Healthcheck health(Probes(database, volume));
  volume.failure = "its lock lease was lost";
  ports::HttpResponse response = health.Answer(Probe(), false);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body, "volume service host@file: its lock lease was lost");
  database.failure = "unavailable: connection refused";
  response = health.Answer(Probe(), false);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body,
            "database: unavailable: connection refused\n"
            "volume service host@file: its lock lease was lost");
  // Well again: no answer is kept from before.
  database.failure.reset();
  volume.failure.reset();
  EXPECT_EQ(health.Answer(Probe(), false).status, 200);
  EXPECT_EQ(database.asked, 3);
  EXPECT_EQ(volume.asked, 3);
}

TEST(HealthcheckTest, JsonWhenAcceptNamesItFirst) {
  Switch database;
  Switch volume;
  Healthcheck health(Probes(database, volume));
  ports::HttpResponse response = health.Answer(Probe("GET", "application/json"), false);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(response.body),
            (nlohmann::json{{"detailed", false}, {"reasons", {"OK"}}}));
  // Text named first wins, as in oslo.
  response = health.Answer(Probe("GET", "text/plain, application/json"), false);
  EXPECT_EQ(response.content_type, "text/plain");
  database.failure = "down";
  response = health.Answer(Probe("GET", "application/json"), false);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(nlohmann::json::parse(response.body)["reasons"],
            nlohmann::json::array({"database: down"}));
}

TEST(HealthcheckTest, DetailedNamesEveryProbeWithItsOutcome) {
  Switch database;
  Switch volume;
  Healthcheck health(Probes(database, volume));
  volume.failure = "fenced";
  ports::HttpResponse response = health.Answer(Probe(), true);
  EXPECT_EQ(response.status, 503);
  const nlohmann::json body = nlohmann::json::parse(response.body);
  EXPECT_EQ(body["detailed"], true);
  ASSERT_EQ(body["reasons"].size(), 2U);
  EXPECT_EQ(body["reasons"][0],
            (nlohmann::json{{"class", "database"}, {"reason", "OK"}, {"details", "passing"}}));
  EXPECT_EQ(
      body["reasons"][1],
      (nlohmann::json{
          {"class", "volume service host@file"}, {"reason", "fenced"}, {"details", "failing"}}));
}

TEST(HealthcheckTest, HeadHasTheStatusWithoutABodyAndOtherMethodsAre405) {
  Switch database;
  Switch volume;
  Healthcheck health(Probes(database, volume));
  database.failure = "down";
  ports::HttpResponse response = health.Answer(Probe("HEAD"), false);
  EXPECT_EQ(response.status, 503);
  EXPECT_TRUE(response.body.empty());
  response = health.Answer(Probe("POST"), false);
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(database.asked, 1);  // A refused method asks nothing.
}

TEST(HealthcheckTest, ApiServiceServesItOutsideV3AndTheDetailNeedsAToken) {
  adapters::MemoryStateStore store;
  test_support::ApiHarness harness(store);
  ports::HttpRequest request = test_support::ApiHarness::Request("GET", "/healthcheck");
  EXPECT_EQ(harness.Send(request).status, 404);  // Not wired: nothing answers.

  Switch database;
  Switch volume;
  Healthcheck health(Probes(database, volume));
  harness.api().ServeHealthcheck(&health);
  request.headers.clear();  // A load balancer's probe carries no token.
  ports::HttpResponse response = harness.Send(request);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "OK");

  // ?detail without a token: refused (noauth hands out a token, as Cinder's noauth does).
  request.query = {{"detail", ""}};
  response = harness.Send(request);
  EXPECT_EQ(response.status, 204);
  EXPECT_EQ(volume.asked, 1);
  // With an (admin, under noauth) token: the detailed form.
  request.headers = {{"X-Auth-Token", "admin:" + std::string(test_support::kHarnessProject)}};
  response = harness.Send(request);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(nlohmann::json::parse(response.body)["detailed"], true);
}

}  // namespace
}  // namespace clinker::services
