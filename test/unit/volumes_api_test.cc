// Goal: check the Cinder v3 volume API as a client sees it, through ApiService::Handle: status
// codes, fault bodies, the fields of each view, pagination and sorting, the microversion and
// request-id headers, and the side effects behind each answer (the row in the StateStore, the
// job on the queue) — including that a refused request leaves no row and no job, and that racing
// deletes queue exactly one job. Also creates from a snapshot or a source volume (size, back-end,
// job topic), deletes refused while snapshots or clones being created depend on the volume, and
// the actions os-extend, os-reset_status and os-force_delete (and DELETE ?force=true at 3.23).
//
// Method: ApiService over VolumesApi over MemoryStateStore, a MemoryBroker (the API publishes
// through a MemoryJobQueue session wrapped in a recorder that counts every publish, whatever its
// topic) and a FakeClock advanced between creates so created_at order is known. Requests are
// plain ports::HttpRequest values with a noauth token "user:<project>". Jobs are checked by a
// second MemoryJobQueue session subscribed to the expected topic, and rows by reading the store.
// What the scheduler and the volume manager would do (placing a volume, finishing a snapshot) is
// written straight to the store. The handler is called directly, with a RequestContext, only for
// microversions above kMaxMicroversion (ApiService answers 406) and for non-admin callers (noauth
// makes every caller admin, and an admin sees every project's volumes, as in Cinder). The races
// between a create from a source and a delete of that source are in snapshots_api_test.cc.
#include "clinker/services/volumes_api.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_lock_manager.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/policy.h"
#include "clinker/domain/status.h"
#include "clinker/services/api_service.h"
#include "clinker/services/job_message.h"
#include "clinker/services/lock_names.h"
#include "clinker/services/microversion.h"

#include "support/fake_clock.h"
#include "support/recording_job_queue.h"

namespace clinker::services {
namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryStateStore;
using domain::VolumeStatus;
using nlohmann::json;
using test_support::FakeClock;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kOtherProject = "fedcba9876543210fedcba9876543210";
constexpr std::string_view kBaseUrl = "http://clinker.test:8776";
constexpr std::string_view kHost = "h@file#default";

using Query = std::vector<std::pair<std::string, std::string>>;

using test_support::RecordingJobQueue;

std::string ResponseHeader(const ports::HttpResponse& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key.size() == name.size() &&
        std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return value;
    }
  }
  return "";
}

json Body(const ports::HttpResponse& response) {
  json body = json::parse(response.body, nullptr, false);
  EXPECT_FALSE(body.is_discarded()) << "response body is not JSON: " << response.body;
  return body;
}

std::optional<std::string> TextColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::string>(it->second)) {
    return std::nullopt;
  }
  return std::get<std::string>(it->second);
}

std::int64_t IntegerColumn(const ports::Row& row, std::string_view column) {
  auto it = row.find(column);
  if (it == row.end() || !std::holds_alternative<std::int64_t>(it->second)) {
    ADD_FAILURE() << "column " << column << " is not an integer";
    return -1;
  }
  return std::get<std::int64_t>(it->second);
}

// The marker of a "next" link, which must point back at the same collection with the limit.
std::optional<std::string> NextMarker(const json& body, const std::string& expected_prefix) {
  if (!body.contains("volumes_links")) {
    return std::nullopt;
  }
  const json& links = body["volumes_links"];
  EXPECT_TRUE(links.is_array() && links.size() == 1) << links.dump();
  if (!links.is_array() || links.empty()) {
    return std::nullopt;
  }
  EXPECT_EQ(links[0].value("rel", ""), "next");
  std::string href = links[0].value("href", "");
  EXPECT_EQ(href.rfind(expected_prefix, 0), 0u) << href;
  std::size_t question = href.find('?');
  if (question == std::string::npos) {
    ADD_FAILURE() << "next link without a query: " << href;
    return std::nullopt;
  }
  std::string query = href.substr(question + 1);
  std::optional<std::string> marker;
  bool has_limit = false;
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t amp = query.find('&', start);
    if (amp == std::string::npos) {
      amp = query.size();
    }
    std::string item = query.substr(start, amp - start);
    if (item.rfind("marker=", 0) == 0) {
      marker = item.substr(7);
    }
    if (item == "limit=2") {
      has_limit = true;
    }
    start = amp + 1;
  }
  EXPECT_TRUE(has_limit) << "the next link lost the page size: " << href;
  EXPECT_TRUE(marker.has_value()) << href;
  return marker;
}

// Decodes an application/x-www-form-urlencoded query string, as a client library does before it
// sends the parameters back.
Query DecodeQuery(std::string_view text) {
  auto decode = [](std::string_view raw) {
    std::string out;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        out += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size() &&
                 std::isxdigit(static_cast<unsigned char>(raw[i + 1])) != 0 &&
                 std::isxdigit(static_cast<unsigned char>(raw[i + 2])) != 0) {
        out += static_cast<char>(std::stoi(std::string(raw.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        out += raw[i];
      }
    }
    return out;
  };
  Query query;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t amp = text.find('&', start);
    if (amp == std::string_view::npos) {
      amp = text.size();
    }
    std::string_view item = text.substr(start, amp - start);
    std::size_t equals = item.find('=');
    query.emplace_back(decode(item.substr(0, equals)),
                       equals == std::string_view::npos ? "" : decode(item.substr(equals + 1)));
    start = amp + 1;
  }
  return query;
}

class VolumesApiTest : public ::testing::Test {
 protected:
  VolumesApiTest()
      : broker_(std::make_shared<MemoryBroker>()),
        session_(broker_),
        publisher_(session_),
        volumes_(store_, publisher_, clock_, VolumesApiOptions{}),
        snapshots_(store_, publisher_, clock_, SnapshotsApiOptions{}),
        attachments_(store_, publisher_, clock_, AttachmentsApiOptions{}),
        backups_(store_, publisher_, clock_, BackupsApiOptions{}),
        services_api_(store_, clock_, ServicesApiOptions{}),
        types_(store_, clock_, TypesApiOptions{}),
        service_(volumes_, snapshots_, attachments_, backups_, services_api_, types_) {}

  static std::string VolumesPath(std::string_view project = kProject) {
    return "/v3/" + std::string(project) + "/volumes";
  }

  static ports::HttpRequest Request(std::string method,
                                    std::string path,
                                    std::string body = "",
                                    Query query = {},
                                    std::string_view project = kProject) {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.query = std::move(query);
    request.body = std::move(body);
    request.base_url = std::string(kBaseUrl);
    request.headers = {{"X-Auth-Token", "user:" + std::string(project)},
                       {"Content-Type", "application/json"}};
    return request;
  }

  // Every response, whatever its status, must carry a request id.
  ports::HttpResponse Send(const ports::HttpRequest& request) {
    ports::HttpResponse response = service_.Handle(request);
    EXPECT_EQ(ResponseHeader(response, "x-openstack-request-id").rfind("req-", 0), 0u)
        << request.method << " " << request.path << " -> " << response.status;
    return response;
  }

  ports::HttpResponse Get(const std::string& path, Query query = {}) {
    return Send(Request("GET", path, "", std::move(query)));
  }

  std::string CreateVolume(const std::string& name, std::int64_t size_gib = 1) {
    json body = {{"volume", {{"name", name}, {"size", size_gib}}}};
    ports::HttpResponse response = Send(Request("POST", VolumesPath(), body.dump()));
    EXPECT_EQ(response.status, 202) << response.body;
    json created = Body(response);
    clock_.Advance(std::chrono::seconds(1));
    return created["volume"].value("id", "");
  }

  ports::Row ReadRow(const std::string& id) {
    auto row = store_.Get(ports::Table::kVolumes, id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  // What the volume manager and scheduler would have done: the volume is on a back-end.
  void SetStatus(const std::string& id,
                 VolumeStatus status,
                 std::optional<std::string> host = std::string(kHost)) {
    ports::Row values = {{"status", std::string(domain::StoredName(status))},
                         {"host", host ? ports::Value(*host) : ports::Value(std::monostate{})}};
    auto updated = store_.ConditionalUpdate(ports::Table::kVolumes, id, values, {}, {});
    ASSERT_TRUE(updated.has_value()) << updated.error().ToString();
    ASSERT_TRUE(updated->has_value());
  }

  std::size_t RowCount() {
    ports::ListQuery query;
    query.include_deleted = true;
    auto rows = store_.List(ports::Table::kVolumes, query);
    EXPECT_TRUE(rows.has_value());
    return rows ? rows->size() : 0;
  }

  // A snapshot row as the volume manager leaves it; returns its id.
  std::string InsertSnapshot(const std::string& volume_id,
                             bool deleted,
                             std::int64_t size_gib = 1,
                             std::string_view status = "available",
                             std::string_view project = kProject) {
    std::string id = NewUuid();
    ports::Row row = {{"id", id},
                      {"project_id", std::string(project)},
                      {"user_id", "user"},
                      {"volume_id", volume_id},
                      {"status", deleted ? std::string("deleted") : std::string(status)},
                      {"size_gib", size_gib},
                      {"created_at", FormatTimestamp(clock_.WallNow())},
                      {"deleted", std::int64_t{deleted ? 1 : 0}}};
    auto inserted = store_.Insert(ports::Table::kSnapshots, row);
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    return id;
  }

  // Sets columns of a volume row directly, as a node would.
  void SetColumns(const std::string& id, const ports::Row& values) {
    auto updated = store_.ConditionalUpdate(ports::Table::kVolumes, id, values, {}, {});
    ASSERT_TRUE(updated.has_value()) << updated.error().ToString();
    ASSERT_TRUE(updated->has_value()) << id;
  }

  // A volume of `size_gib` the scheduler placed on kHost and the volume manager made available.
  std::string AvailableVolume(const std::string& name, std::int64_t size_gib = 1) {
    std::string id = CreateVolume(name, size_gib);
    SetStatus(id, VolumeStatus::kAvailable);
    return id;
  }

  // What ApiService builds for a noauth caller, at a version it may not negotiate itself (above
  // kMaxMicroversion it answers 406) or for a non-admin (noauth makes every caller admin).
  static RequestContext Context(Microversion version,
                                bool is_admin = true,
                                std::string_view project = kProject) {
    RequestContext context;
    context.user_id = "user";
    context.project_id = std::string(project);
    context.is_admin = is_admin;
    context.version = version;
    context.link_base = std::string(kBaseUrl) + "/v3/" + std::string(project);
    context.bookmark_base = std::string(kBaseUrl) + "/" + std::string(project);
    return context;
  }

  // A member (not admin) of kOtherProject.
  static RequestContext OtherMember() { return Context(kMinMicroversion, false, kOtherProject); }

  ports::HttpResponse Action(const std::string& id, const json& body) {
    return Send(Request("POST", VolumesPath() + "/" + id + "/action", body.dump()));
  }

  // A fresh consumer session on `topic`; its next job, if any is ready.
  std::optional<ports::Delivery> TakeJob(const std::string& topic) {
    MemoryJobQueue consumer(broker_);
    EXPECT_TRUE(consumer.Subscribe({topic}).has_value());
    auto received = consumer.Receive(std::chrono::milliseconds(0));
    EXPECT_TRUE(received.has_value());
    if (!received || !received->has_value()) {
      return std::nullopt;
    }
    EXPECT_TRUE(consumer.Ack(**received).has_value());
    return **received;
  }

  static void ExpectFault(const ports::HttpResponse& response, int status, std::string_view name) {
    EXPECT_EQ(response.status, status) << response.body;
    json body = json::parse(response.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << response.body;
    ASSERT_EQ(body.size(), 1u) << response.body;
    ASSERT_TRUE(body.contains(name)) << response.body;
    EXPECT_EQ(body[std::string(name)].value("code", 0), status);
    ASSERT_TRUE(body[std::string(name)].contains("message"));
    ASSERT_TRUE(body[std::string(name)]["message"].is_string());
    EXPECT_FALSE(body[std::string(name)]["message"].get<std::string>().empty());
  }

  MemoryStateStore store_;
  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue session_;
  RecordingJobQueue publisher_;
  VolumesApi volumes_;
  SnapshotsApi snapshots_;
  AttachmentsApi attachments_;
  BackupsApi backups_;
  ServicesApi services_api_;
  TypesApi types_;
  ApiService service_;
};

// ---------------------------------------------------------------------------------------------
// Create

TEST_F(VolumesApiTest, CreateAcceptsAVolumeQueuesItsJobAndStoresItQueued) {
  json request = {{"volume", {{"name", "vol-a"}, {"size", 3}, {"description", "first"}}}};
  ports::HttpResponse response = Send(Request("POST", VolumesPath(), request.dump()));

  ASSERT_EQ(response.status, 202) << response.body;
  json volume = Body(response)["volume"];
  std::string id = volume.value("id", "");
  EXPECT_TRUE(IsUuid(id)) << id;
  EXPECT_EQ(volume.value("status", ""), "creating");
  EXPECT_EQ(volume.value("size", 0), 3);
  EXPECT_EQ(volume.value("name", ""), "vol-a");
  EXPECT_EQ(volume.value("description", ""), "first");
  EXPECT_EQ(volume.value("availability_zone", ""), "nova");
  // Cinder's attribute extensions extend show and list only.
  EXPECT_FALSE(volume.contains("os-vol-tenant-attr:tenant_id")) << volume.dump();
  EXPECT_FALSE(volume.contains("os-vol-host-attr:host")) << volume.dump();
  EXPECT_EQ(Body(Get(VolumesPath() + "/" + id))["volume"]["os-vol-tenant-attr:tenant_id"],
            std::string(kProject));
  EXPECT_EQ(volume.value("user_id", ""), "user");
  EXPECT_EQ(volume.value("created_at", ""), FormatTimestamp(FakeClock().WallNow()));
  ASSERT_TRUE(volume["links"].is_array());
  ASSERT_EQ(volume["links"].size(), 2u);
  EXPECT_EQ(volume["links"][0]["rel"], "self");
  EXPECT_EQ(volume["links"][0]["href"], std::string(kBaseUrl) + VolumesPath() + "/" + id);
  EXPECT_EQ(volume["links"][1]["rel"], "bookmark");
  EXPECT_EQ(volume["links"][1]["href"],
            std::string(kBaseUrl) + "/" + std::string(kProject) + "/volumes/" + id);

  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "creating_queued");
  EXPECT_EQ(TextColumn(row, "host"), std::nullopt);
  EXPECT_EQ(IntegerColumn(row, "size_gib"), 3);
  std::optional<std::string> operation_id = TextColumn(row, "operation_id");
  ASSERT_TRUE(operation_id.has_value());

  EXPECT_EQ(publisher_.PublishedTopics(), std::vector<std::string>{"scheduler"});
  std::optional<ports::Delivery> job = TakeJob("scheduler");
  ASSERT_TRUE(job.has_value());
  auto message = JobMessage::FromJson(job->payload);
  ASSERT_TRUE(message.has_value()) << job->payload;
  EXPECT_EQ(message->operation, domain::Operation::kCreateVolume);
  EXPECT_EQ(message->resource_id, id);
  EXPECT_EQ(message->operation_id, *operation_id);
  EXPECT_EQ(message->project_id, kProject);
  EXPECT_FALSE(TakeJob("scheduler").has_value()) << "one create queued two jobs";
}

TEST_F(VolumesApiTest, CreateRefusesBadInputWithBadRequestAndStoresNothing) {
  const std::vector<std::string> bodies = {
      "{not json",
      R"({"volumes": {"size": 1}})",
      R"({"volume": 1})",
      R"({"volume": {"size": 0}})",
      R"({"volume": {"size": -1}})",
      R"({"volume": {"size": "abc"}})",
      R"({"volume": {"size": 1.5}})",
      R"({"volume": {"size": true}})",
      R"({"volume": {"size": 1000000000000}})",
      R"({"volume": {"name": "no size"}})",
      R"({"volume": {"size": 1, "name": 5}})",
      R"({"volume": {"size": 1, "metadata": "not an object"}})",
      R"({"volume": {"size": 1, "metadata": ["a"]}})",
      R"({"volume": {"size": 1, "metadata": {"bad!key": "v"}}})",
      R"({"volume": {"size": 1, "availability_zone": "mars"}})",
      R"({"volume": {"size": 1, "multiattach": true}})",
  };
  for (const std::string& body : bodies) {
    SCOPED_TRACE(body);
    ExpectFault(Send(Request("POST", VolumesPath(), body)), 400, "badRequest");
  }
  EXPECT_EQ(RowCount(), 0u);
  EXPECT_TRUE(publisher_.PublishedTopics().empty());
  EXPECT_EQ(broker_->ReadyCount("scheduler"), 0u);
}

// ---------------------------------------------------------------------------------------------
// Create from a snapshot or a source volume

// The new volume lives where its source's data is: it takes the source's host and cluster, and
// its job goes straight to that back-end's topic (the cluster's here), never to the scheduler.
TEST_F(VolumesApiTest, CreateFromASnapshotTakesItsSizeAndGoesStraightToItsBackEnd) {
  std::string source = AvailableVolume("source", 3);
  SetColumns(source, {{"cluster_name", "c1@file#default"}});
  std::string snapshot_id = InsertSnapshot(source, /*deleted=*/false, 3);
  std::size_t published_before = publisher_.PublishedTopics().size();
  std::size_t scheduled_before = broker_->ReadyCount("scheduler");

  json request = {{"volume", {{"snapshot_id", snapshot_id}, {"name", "from-snapshot"}}}};
  ports::HttpResponse response = Send(Request("POST", VolumesPath(), request.dump()));

  ASSERT_EQ(response.status, 202) << response.body;
  json volume = Body(response)["volume"];
  std::string id = volume.value("id", "");
  EXPECT_EQ(volume.value("size", 0), 3) << "the size defaults to the snapshot's";
  EXPECT_EQ(volume["snapshot_id"], json(snapshot_id));
  EXPECT_TRUE(volume["source_volid"].is_null());
  EXPECT_EQ(volume.value("status", ""), "creating");
  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "creating_queued");
  EXPECT_EQ(TextColumn(row, "snapshot_id"), snapshot_id);
  EXPECT_EQ(TextColumn(row, "host"), std::string(kHost));
  EXPECT_EQ(TextColumn(row, "cluster_name"), "c1@file#default");
  EXPECT_EQ(IntegerColumn(row, "size_gib"), 3);

  std::vector<std::string> topics = publisher_.PublishedTopics();
  ASSERT_EQ(topics.size(), published_before + 1);
  EXPECT_EQ(topics.back(), "volume.c1@file");
  EXPECT_EQ(broker_->ReadyCount("scheduler"), scheduled_before);
  std::optional<ports::Delivery> job = TakeJob("volume.c1@file");
  ASSERT_TRUE(job.has_value());
  auto message = JobMessage::FromJson(job->payload);
  ASSERT_TRUE(message.has_value()) << job->payload;
  EXPECT_EQ(message->operation, domain::Operation::kCreateVolume);
  EXPECT_EQ(message->resource_id, id);
  EXPECT_EQ(TextColumn(row, "operation_id"), message->operation_id);
  // Shown in the detail view and on a later show too.
  EXPECT_EQ(Body(Get(VolumesPath() + "/" + id))["volume"]["snapshot_id"], json(snapshot_id));

  // A larger size is fine.
  json larger = {{"volume", {{"snapshot_id", snapshot_id}, {"size", 5}}}};
  ports::HttpResponse grown = Send(Request("POST", VolumesPath(), larger.dump()));
  ASSERT_EQ(grown.status, 202) << grown.body;
  EXPECT_EQ(Body(grown)["volume"].value("size", 0), 5);
}

TEST_F(VolumesApiTest, CreateFromASourceVolumeTakesItsSizeAndGoesStraightToItsBackEnd) {
  std::string source = AvailableVolume("source", 4);
  std::size_t published_before = publisher_.PublishedTopics().size();
  std::size_t scheduled_before = broker_->ReadyCount("scheduler");

  json request = {{"volume", {{"source_volid", source}}}};
  ports::HttpResponse response = Send(Request("POST", VolumesPath(), request.dump()));

  ASSERT_EQ(response.status, 202) << response.body;
  json volume = Body(response)["volume"];
  std::string id = volume.value("id", "");
  EXPECT_EQ(volume.value("size", 0), 4);
  EXPECT_EQ(volume["source_volid"], json(source));
  EXPECT_TRUE(volume["snapshot_id"].is_null());
  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "source_volid"), source);
  EXPECT_EQ(TextColumn(row, "host"), std::string(kHost));
  EXPECT_EQ(TextColumn(row, "cluster_name"), std::nullopt);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
  EXPECT_EQ(publisher_.PublishedTopics().back(), "volume.h@file");
  EXPECT_EQ(broker_->ReadyCount("scheduler"), scheduled_before);
  std::optional<ports::Delivery> job = TakeJob("volume.h@file");
  ASSERT_TRUE(job.has_value());
  auto message = JobMessage::FromJson(job->payload);
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->resource_id, id);
  // Cloning reads the source; it does not change it.
  EXPECT_EQ(TextColumn(ReadRow(source), "status"), "available");
}

TEST_F(VolumesApiTest, CloneAndVolumeFromSnapshotReserveTheirSizeOnTheSourcesPool) {
  std::string source = AvailableVolume("source", 4);
  std::string snapshot_id = InsertSnapshot(source, /*deleted=*/false, 4);
  auto allocated = [this]() -> std::int64_t {
    auto pool = store_.Get(ports::Table::kPoolCapacity, std::string(kHost));
    return pool ? IntegerOr(*pool, "allocated_capacity_gb", 0) : 0;
  };
  const std::int64_t before = allocated();

  ports::HttpResponse clone =
      Send(Request("POST", VolumesPath(), json({{"volume", {{"source_volid", source}}}}).dump()));
  ASSERT_EQ(clone.status, 202) << clone.body;
  ports::HttpResponse from_snapshot =
      Send(Request("POST",
                   VolumesPath(),
                   json({{"volume", {{"snapshot_id", snapshot_id}, {"size", 6}}}}).dump()));
  ASSERT_EQ(from_snapshot.status, 202) << from_snapshot.body;

  // In the write that created them; each row records what to give back.
  EXPECT_EQ(allocated(), before + 4 + 6);
  EXPECT_EQ(IntegerOr(ReadRow(Body(clone)["volume"].value("id", "")), "capacity_reserved_gib", 0),
            4);
  EXPECT_EQ(
      IntegerOr(ReadRow(Body(from_snapshot)["volume"].value("id", "")), "capacity_reserved_gib", 0),
      6);
}

TEST_F(VolumesApiTest, CreateSmallerThanItsSnapshotIsRefusedWithCindersMessage) {
  std::string source = AvailableVolume("source", 3);
  std::string snapshot_id = InsertSnapshot(source, /*deleted=*/false, 3);
  std::size_t rows_before = RowCount();
  std::size_t published_before = publisher_.PublishedTopics().size();

  json request = {{"volume", {{"snapshot_id", snapshot_id}, {"size", 2}}}};
  ports::HttpResponse response = Send(Request("POST", VolumesPath(), request.dump()));

  ExpectFault(response, 400, "badRequest");
  EXPECT_EQ(Body(response)["badRequest"].value("message", ""),
            "Invalid input received: Volume size '2'GB cannot be smaller than the snapshot size "
            "3GB. They must be >= original snapshot size.");
  EXPECT_EQ(RowCount(), rows_before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

// Cinder's text (cinder/volume/flows/api/create_volume.py, validate_source_size) has no "the"
// and two spaces before the size.
TEST_F(VolumesApiTest, CreateSmallerThanItsSourceVolumeIsRefusedWithCindersMessage) {
  std::string source = AvailableVolume("source", 3);
  std::size_t rows_before = RowCount();
  std::size_t published_before = publisher_.PublishedTopics().size();

  json request = {{"volume", {{"source_volid", source}, {"size", 2}}}};
  ports::HttpResponse response = Send(Request("POST", VolumesPath(), request.dump()));

  ExpectFault(response, 400, "badRequest");
  EXPECT_EQ(Body(response)["badRequest"].value("message", ""),
            "Invalid input received: Volume size '2'GB cannot be smaller than original volume "
            "size  3GB. They must be >= original volume size.");
  EXPECT_EQ(RowCount(), rows_before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

TEST_F(VolumesApiTest, CreateFromAnUnknownOrAnotherProjectsSourceIsNotFound) {
  std::string theirs = CreateVolume("theirs");
  SetColumns(theirs,
             {{"project_id", std::string(kOtherProject)},
              {"status", "available"},
              {"host", std::string(kHost)}});
  std::string their_snapshot =
      InsertSnapshot(theirs, /*deleted=*/false, 1, "available", kOtherProject);
  std::string gone = AvailableVolume("gone");
  SetColumns(gone, {{"status", "deleted"}, {"deleted", std::int64_t{1}}});
  std::string gone_snapshot = InsertSnapshot(AvailableVolume("has-gone-snapshot"), true);
  std::size_t rows_before = RowCount();
  std::size_t published_before = publisher_.PublishedTopics().size();
  // A member, not an admin: an admin may use any project's source.
  RequestContext member = Context(kMinMicroversion, /*is_admin=*/false);

  for (const std::string& id : {NewUuid(), their_snapshot, gone_snapshot}) {
    SCOPED_TRACE("snapshot " + id);
    json request = {{"volume", {{"size", 1}, {"snapshot_id", id}}}};
    ports::HttpResponse response =
        volumes_.Create(member, Request("POST", VolumesPath(), request.dump()));
    ExpectFault(response, 404, "itemNotFound");
    EXPECT_EQ(Body(response)["itemNotFound"].value("message", ""),
              "Snapshot " + id + " could not be found.");
  }
  for (const std::string& id : {NewUuid(), theirs, gone}) {
    SCOPED_TRACE("volume " + id);
    json request = {{"volume", {{"source_volid", id}}}};
    ports::HttpResponse response =
        volumes_.Create(member, Request("POST", VolumesPath(), request.dump()));
    ExpectFault(response, 404, "itemNotFound");
    EXPECT_EQ(Body(response)["itemNotFound"].value("message", ""),
              "Volume " + id + " could not be found.");
  }
  for (const char* body :
       {R"({"volume": {"snapshot_id": 5}})", R"({"volume": {"source_volid": ["x"]}})"}) {
    SCOPED_TRACE(body);
    ExpectFault(Send(Request("POST", VolumesPath(), body)), 400, "badRequest");
  }
  EXPECT_EQ(RowCount(), rows_before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

TEST_F(VolumesApiTest, CreateFromASourceThatIsNotAvailableIsRefused) {
  std::string source = AvailableVolume("source", 2);
  std::vector<std::string> snapshots = {
      InsertSnapshot(source, /*deleted=*/false, 2, "creating_queued"),
      InsertSnapshot(source, /*deleted=*/false, 2, "creating"),
      InsertSnapshot(source, /*deleted=*/false, 2, "error"),
      InsertSnapshot(source, /*deleted=*/false, 2, "deleting_queued"),
  };
  std::vector<std::string> volumes = {CreateVolume("unscheduled")};
  for (VolumeStatus status : {VolumeStatus::kCreating,
                              VolumeStatus::kError,
                              VolumeStatus::kExtendingQueued,
                              VolumeStatus::kDeletingQueued}) {
    std::string id = CreateVolume("not-available");
    SetStatus(id, status);
    volumes.push_back(id);
  }
  std::size_t rows_before = RowCount();
  std::size_t published_before = publisher_.PublishedTopics().size();

  for (const std::string& id : snapshots) {
    SCOPED_TRACE("snapshot " + id);
    json request = {{"volume", {{"snapshot_id", id}}}};
    ports::HttpResponse response = Send(Request("POST", VolumesPath(), request.dump()));
    ExpectFault(response, 400, "badRequest");
    EXPECT_EQ(Body(response)["badRequest"].value("message", "").rfind("Invalid snapshot: ", 0), 0u)
        << response.body;
  }
  for (const std::string& id : volumes) {
    SCOPED_TRACE("volume " + id);
    json request = {{"volume", {{"source_volid", id}, {"size", 5}}}};
    ports::HttpResponse response = Send(Request("POST", VolumesPath(), request.dump()));
    ExpectFault(response, 400, "badRequest");
    EXPECT_EQ(Body(response)["badRequest"].value("message", "").rfind("Invalid volume: ", 0), 0u)
        << response.body;
  }
  EXPECT_EQ(RowCount(), rows_before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

// ---------------------------------------------------------------------------------------------
// Show and list

TEST_F(VolumesApiTest, ShowReturnsTheVolumeOfTheCallersProjectOnly) {
  std::string id = CreateVolume("mine", 2);

  ports::HttpResponse shown = Get(VolumesPath() + "/" + id);
  ASSERT_EQ(shown.status, 200) << shown.body;
  json volume = Body(shown)["volume"];
  EXPECT_EQ(volume.value("id", ""), id);
  EXPECT_EQ(volume.value("name", ""), "mine");
  EXPECT_EQ(volume.value("size", 0), 2);
  EXPECT_EQ(volume.value("status", ""), "creating");

  ExpectFault(Get(VolumesPath() + "/" + NewUuid()), 404, "itemNotFound");
  // Another project's member (noauth callers are admins, who see every project's volumes).
  ExpectFault(volumes_.Show(OtherMember(), id), 404, "itemNotFound");
}

TEST_F(VolumesApiTest, ListShowsSummariesAndDetailShowsFullViews) {
  std::string first = CreateVolume("one");
  std::string second = CreateVolume("two");
  // Another project's volume must not show up.
  json other = {{"volume", {{"name", "theirs"}, {"size", 1}}}};
  ASSERT_EQ(
      Send(Request("POST", VolumesPath(kOtherProject), other.dump(), {}, kOtherProject)).status,
      202);

  ports::HttpResponse listed = Get(VolumesPath());
  ASSERT_EQ(listed.status, 200) << listed.body;
  json items = Body(listed)["volumes"];
  ASSERT_EQ(items.size(), 2u) << items.dump();
  std::set<std::string> ids;
  for (const json& item : items) {
    EXPECT_EQ(item.size(), 3u) << item.dump();
    EXPECT_TRUE(item.contains("id") && item.contains("name") && item.contains("links"))
        << item.dump();
    ids.insert(item.value("id", ""));
  }
  EXPECT_EQ(ids, (std::set<std::string>{first, second}));

  ports::HttpResponse detailed = Get(VolumesPath() + "/detail");
  ASSERT_EQ(detailed.status, 200) << detailed.body;
  json details = Body(detailed)["volumes"];
  ASSERT_EQ(details.size(), 2u);
  for (const json& item : details) {
    EXPECT_EQ(item.value("status", ""), "creating");
    EXPECT_EQ(item.value("size", 0), 1);
    EXPECT_TRUE(item.contains("created_at") && item.contains("metadata") &&
                item.contains("os-vol-host-attr:host"))
        << item.dump();
  }
  EXPECT_FALSE(Body(detailed).contains("volumes_links"));
}

TEST_F(VolumesApiTest, PaginationWithMarkersVisitsEveryVolumeOnce) {
  constexpr int kVolumes = 5;
  std::vector<std::string> created;
  created.reserve(kVolumes);
  for (int i = 0; i < kVolumes; ++i) {
    created.push_back(CreateVolume("vol-" + std::to_string(i)));
  }
  const std::string prefix = std::string(kBaseUrl) + VolumesPath() + "?";

  std::vector<std::string> seen;
  std::optional<std::string> marker;
  int pages = 0;
  do {
    ASSERT_LT(++pages, 10) << "pagination does not end";
    Query query = {{"limit", "2"}};
    if (marker) {
      query.emplace_back("marker", *marker);
    }
    ports::HttpResponse page = Get(VolumesPath(), query);
    ASSERT_EQ(page.status, 200) << page.body;
    json body = Body(page);
    EXPECT_LE(body["volumes"].size(), 2u);
    for (const json& item : body["volumes"]) {
      seen.push_back(item.value("id", ""));
    }
    marker = NextMarker(body, prefix);
    if (marker) {
      EXPECT_EQ(*marker, seen.back());
    }
  } while (marker);

  // Default order: newest first.
  std::vector<std::string> expected(created.rbegin(), created.rend());
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(pages, 3);
}

// A next link is followed verbatim by clients (cinderclient), so the parameters it repeats must
// be URL-encoded: a name filter holding '&' must come back as the same filter, as Cinder's
// urlencode-built links do.
TEST_F(VolumesApiTest, NextLinkEncodesTheFiltersItRepeats) {
  const std::string name = "R&D 100%";
  std::string first = CreateVolume(name);
  std::string second = CreateVolume(name);
  CreateVolume("other");

  ports::HttpResponse page = Get(VolumesPath(), {{"name", name}, {"limit", "1"}});
  ASSERT_EQ(page.status, 200) << page.body;
  json body = Body(page);
  ASSERT_EQ(body["volumes"].size(), 1u);
  EXPECT_EQ(body["volumes"][0].value("id", ""), second);
  ASSERT_TRUE(body.contains("volumes_links")) << page.body;
  std::string href = body["volumes_links"][0].value("href", "");
  std::size_t question = href.find('?');
  ASSERT_NE(question, std::string::npos) << href;
  Query next_query = DecodeQuery(std::string_view(href).substr(question + 1));

  std::string name_param;
  for (const auto& [key, value] : next_query) {
    if (key == "name") {
      name_param = value;
    }
  }
  EXPECT_EQ(name_param, name) << "next link: " << href;
  ports::HttpResponse next = Get(VolumesPath(), next_query);
  ASSERT_EQ(next.status, 200) << next.body;
  json next_body = Body(next);
  ASSERT_EQ(next_body["volumes"].size(), 1u) << "next link: " << href << "\n" << next.body;
  EXPECT_EQ(next_body["volumes"][0].value("id", ""), first);
}

TEST_F(VolumesApiTest, ListRefusesBadLimitsAndUnknownMarkers) {
  CreateVolume("one");
  ExpectFault(Get(VolumesPath(), {{"limit", "-1"}}), 400, "badRequest");
  ExpectFault(Get(VolumesPath(), {{"limit", "abc"}}), 400, "badRequest");
  ExpectFault(Get(VolumesPath() + "/detail", {{"limit", "-1"}}), 400, "badRequest");
  ExpectFault(Get(VolumesPath(), {{"marker", NewUuid()}}), 404, "itemNotFound");
}

TEST_F(VolumesApiTest, ListSortsAndRefusesBadSortParameters) {
  CreateVolume("charlie");
  CreateVolume("alpha");
  CreateVolume("bravo");

  ports::HttpResponse ascending = Get(VolumesPath(), {{"sort", "name:asc"}});
  ASSERT_EQ(ascending.status, 200) << ascending.body;
  std::vector<std::string> names;
  json ascending_body = Body(ascending);
  for (const json& item : ascending_body["volumes"]) {
    names.push_back(item.value("name", ""));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"alpha", "bravo", "charlie"}));

  ports::HttpResponse descending = Get(VolumesPath(), {{"sort", "name:desc"}});
  ASSERT_EQ(descending.status, 200);
  ASSERT_EQ(Body(descending)["volumes"].size(), 3u);
  EXPECT_EQ(Body(descending)["volumes"][0].value("name", ""), "charlie");

  ExpectFault(Get(VolumesPath(), {{"sort", "name:asc"}, {"sort_key", "name"}}), 400, "badRequest");
  ExpectFault(Get(VolumesPath(), {{"sort", "bogus:asc"}}), 400, "badRequest");
  ExpectFault(Get(VolumesPath(), {{"sort_key", "bogus"}}), 400, "badRequest");
}

TEST_F(VolumesApiTest, StatusFilterUsesTheApiStatusName) {
  std::string queued_a = CreateVolume("a");
  std::string queued_b = CreateVolume("b");
  std::string ready = CreateVolume("c");
  SetStatus(ready, VolumeStatus::kAvailable);

  std::set<std::string> creating;
  json creating_body = Body(Get(VolumesPath(), {{"status", "creating"}}));
  for (const json& item : creating_body["volumes"]) {
    creating.insert(item.value("id", ""));
  }
  EXPECT_EQ(creating, (std::set<std::string>{queued_a, queued_b}));

  json available = Body(Get(VolumesPath(), {{"status", "available"}}))["volumes"];
  ASSERT_EQ(available.size(), 1u);
  EXPECT_EQ(available[0].value("id", ""), ready);
}

// ---------------------------------------------------------------------------------------------
// Update

TEST_F(VolumesApiTest, UpdateChangesNameDescriptionAndMetadata) {
  std::string id = CreateVolume("before");
  json request = {
      {"volume", {{"name", "after"}, {"description", "desc"}, {"metadata", {{"k", "v"}}}}}};

  ports::HttpResponse updated = Send(Request("PUT", VolumesPath() + "/" + id, request.dump()));
  ASSERT_EQ(updated.status, 200) << updated.body;
  json volume = Body(updated)["volume"];
  EXPECT_EQ(volume.value("name", ""), "after");
  EXPECT_EQ(volume.value("description", ""), "desc");
  EXPECT_EQ(volume["metadata"], json({{"k", "v"}}));

  json shown = Body(Get(VolumesPath() + "/" + id))["volume"];
  EXPECT_EQ(shown.value("name", ""), "after");
  EXPECT_EQ(shown.value("description", ""), "desc");
  EXPECT_EQ(shown["metadata"], json({{"k", "v"}}));
  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "display_name"), "after");
  EXPECT_EQ(TextColumn(row, "status"), "creating_queued") << "an update must not touch status";
}

TEST_F(VolumesApiTest, UpdateOfAnotherProjectsVolumeIsNotFound) {
  std::string id = CreateVolume("mine");
  ports::Row before = ReadRow(id);
  json request = {{"volume", {{"name", "stolen"}}}};

  ExpectFault(
      volumes_.Update(
          OtherMember(),
          Request("PUT", VolumesPath(kOtherProject) + "/" + id, request.dump(), {}, kOtherProject),
          id),
      404,
      "itemNotFound");

  EXPECT_TRUE(ReadRow(id) == before);
}

// ---------------------------------------------------------------------------------------------
// Delete

TEST_F(VolumesApiTest, DeleteQueuesOneJobOnTheVolumesBackEnd) {
  std::string id = CreateVolume("doomed");
  SetStatus(id, VolumeStatus::kAvailable);
  std::size_t published_before = publisher_.PublishedTopics().size();

  ports::HttpResponse deleted = Send(Request("DELETE", VolumesPath() + "/" + id));
  EXPECT_EQ(deleted.status, 202) << deleted.body;

  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "deleting_queued");
  EXPECT_EQ(IntegerColumn(row, "deleted"), 0);
  std::optional<std::string> operation_id = TextColumn(row, "operation_id");
  ASSERT_TRUE(operation_id.has_value());
  std::vector<std::string> topics = publisher_.PublishedTopics();
  ASSERT_EQ(topics.size(), published_before + 1);
  EXPECT_EQ(topics.back(), "volume.h@file");
  std::optional<ports::Delivery> job = TakeJob("volume.h@file");
  ASSERT_TRUE(job.has_value());
  auto message = JobMessage::FromJson(job->payload);
  ASSERT_TRUE(message.has_value()) << job->payload;
  EXPECT_EQ(message->operation, domain::Operation::kDeleteVolume);
  EXPECT_EQ(message->resource_id, id);
  EXPECT_EQ(message->operation_id, *operation_id);

  // The API shows the volume as deleting; a second delete is refused and queues nothing.
  EXPECT_EQ(Body(Get(VolumesPath() + "/" + id))["volume"].value("status", ""), "deleting");
  ExpectFault(Send(Request("DELETE", VolumesPath() + "/" + id)), 400, "badRequest");
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
  EXPECT_EQ(TextColumn(ReadRow(id), "operation_id"), operation_id);
}

TEST_F(VolumesApiTest, RacingDeletesQueueExactlyOneJob) {
  constexpr int kThreads = 16;
  std::string id = CreateVolume("contended");
  SetStatus(id, VolumeStatus::kAvailable);
  std::size_t published_before = publisher_.PublishedTopics().size();

  std::latch start(kThreads);
  std::vector<int> statuses(kThreads, 0);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ports::HttpRequest request = Request("DELETE", VolumesPath() + "/" + id);
      start.arrive_and_wait();
      statuses[static_cast<std::size_t>(i)] = Send(request).status;
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }

  int accepted = 0;
  int refused = 0;
  for (int status : statuses) {
    accepted += status == 202 ? 1 : 0;
    refused += status == 400 ? 1 : 0;
  }
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(refused, kThreads - 1);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
  EXPECT_EQ(broker_->ReadyCount("volume.h@file"), 1u);
  EXPECT_EQ(TextColumn(ReadRow(id), "status"), "deleting_queued");
}

// Fast-fail: with a lock manager given, a DELETE of a volume whose write lock is held (a job runs
// on it) is refused with 409 and changes nothing; once the lock is free it queues as usual.
// (Without one, the default, the API takes no lock: DeleteQueuesOneJobOnTheVolumesBackEnd.)
TEST_F(VolumesApiTest, FailFastRefusesADeleteWhileTheVolumesWriteLockIsHeld) {
  adapters::MemoryLockManager locks;
  VolumesApiOptions options;
  options.fail_fast_locks = &locks;
  VolumesApi fast_volumes(store_, publisher_, clock_, options);
  ApiService fast(fast_volumes, snapshots_, attachments_, backups_, services_api_, types_);
  std::string id = CreateVolume("busy");
  SetStatus(id, VolumeStatus::kAvailable);
  ports::Row before = ReadRow(id);
  std::size_t published_before = publisher_.PublishedTopics().size();
  auto job = locks.TryAcquire(ports::LockRequest::Exclusive(VolumeLockName(id)));
  ASSERT_TRUE(job.has_value());

  ports::HttpResponse refused = fast.Handle(Request("DELETE", VolumesPath() + "/" + id));
  ExpectFault(refused, 409, "conflictingRequest");
  EXPECT_TRUE(ReadRow(id) == before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);

  (*job)->Release();
  EXPECT_EQ(fast.Handle(Request("DELETE", VolumesPath() + "/" + id)).status, 202);
  EXPECT_FALSE(locks.IsHeld(VolumeLockName(id))) << "the probe must not keep the lock";
}

TEST_F(VolumesApiTest, DeleteOfAVolumeWithALiveSnapshotIsRefused) {
  std::string id = CreateVolume("has-snapshot");
  SetStatus(id, VolumeStatus::kAvailable);
  InsertSnapshot(id, /*deleted=*/false);
  ports::Row before = ReadRow(id);
  std::size_t published_before = publisher_.PublishedTopics().size();

  ports::HttpResponse refused = Send(Request("DELETE", VolumesPath() + "/" + id));

  ExpectFault(refused, 400, "badRequest");
  EXPECT_NE(Body(refused)["badRequest"].value("message", "").find("dependent snapshots"),
            std::string::npos)
      << refused.body;
  EXPECT_TRUE(ReadRow(id) == before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

// A snapshot still being created depends on the volume as much as an available one.
TEST_F(VolumesApiTest, DeleteOfAVolumeWithASnapshotBeingCreatedIsRefused) {
  std::string id = AvailableVolume("snapshot-underway");
  InsertSnapshot(id, /*deleted=*/false, 1, "creating_queued");
  ports::Row before = ReadRow(id);

  ExpectFault(Send(Request("DELETE", VolumesPath() + "/" + id)), 400, "badRequest");

  EXPECT_TRUE(ReadRow(id) == before);
}

TEST_F(VolumesApiTest, DeleteIgnoresDeletedSnapshots) {
  std::string id = CreateVolume("old-snapshot");
  SetStatus(id, VolumeStatus::kAvailable);
  InsertSnapshot(id, /*deleted=*/true);

  EXPECT_EQ(Send(Request("DELETE", VolumesPath() + "/" + id)).status, 202);
  EXPECT_EQ(TextColumn(ReadRow(id), "status"), "deleting_queued");
}

TEST_F(VolumesApiTest, DeleteOfAnUnscheduledErrorVolumeRetiresItAtOnce) {
  std::string id = CreateVolume("never-scheduled");
  SetStatus(id, VolumeStatus::kError, std::nullopt);
  std::size_t published_before = publisher_.PublishedTopics().size();

  EXPECT_EQ(Send(Request("DELETE", VolumesPath() + "/" + id)).status, 202);

  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "deleted");
  EXPECT_EQ(IntegerColumn(row, "deleted"), 1);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
  ExpectFault(Get(VolumesPath() + "/" + id), 404, "itemNotFound");
}

TEST_F(VolumesApiTest, DeleteIsRefusedWhileACloneIsBeingCreatedAndAllowedOnceItIsAvailable) {
  std::string source = AvailableVolume("source", 2);
  ports::HttpResponse cloned =
      Send(Request("POST", VolumesPath(), json({{"volume", {{"source_volid", source}}}}).dump()));
  ASSERT_EQ(cloned.status, 202) << cloned.body;
  std::string clone = Body(cloned)["volume"].value("id", "");

  for (VolumeStatus status : {VolumeStatus::kCreatingQueued, VolumeStatus::kCreating}) {
    SCOPED_TRACE(std::string(domain::StoredName(status)));
    SetStatus(clone, status);
    ports::Row before = ReadRow(source);
    std::size_t published_before = publisher_.PublishedTopics().size();
    ports::HttpResponse refused = Send(Request("DELETE", VolumesPath() + "/" + source));
    ExpectFault(refused, 400, "badRequest");
    EXPECT_NE(Body(refused)["badRequest"].value("message", "").find("being created"),
              std::string::npos)
        << refused.body;
    // Forcing does not skip it: the clone would read a volume being deleted.
    ExpectFault(Action(source, {{"os-force_delete", json::object()}}), 400, "badRequest");
    EXPECT_TRUE(ReadRow(source) == before);
    EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
  }

  SetStatus(clone, VolumeStatus::kAvailable);
  EXPECT_EQ(Send(Request("DELETE", VolumesPath() + "/" + source)).status, 202);
  EXPECT_EQ(TextColumn(ReadRow(source), "status"), "deleting_queued");
}

// ---------------------------------------------------------------------------------------------
// Actions: os-extend

TEST_F(VolumesApiTest, ExtendQueuesAJobAndShowsTheVolumeExtending) {
  std::string id = AvailableVolume("grow", 2);
  std::optional<std::string> create_operation = TextColumn(ReadRow(id), "operation_id");
  std::size_t published_before = publisher_.PublishedTopics().size();

  ports::HttpResponse extended = Action(id, {{"os-extend", {{"new_size", 5}}}});

  EXPECT_EQ(extended.status, 202) << extended.body;
  EXPECT_TRUE(extended.body.empty()) << extended.body;
  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "extending_queued");
  EXPECT_EQ(IntegerColumn(row, "pending_size_gib"), 5);
  EXPECT_EQ(IntegerColumn(row, "size_gib"), 2) << "the size changes when the back-end is done";
  std::optional<std::string> operation_id = TextColumn(row, "operation_id");
  ASSERT_TRUE(operation_id.has_value());
  EXPECT_NE(operation_id, create_operation);
  json shown = Body(Get(VolumesPath() + "/" + id))["volume"];
  EXPECT_EQ(shown.value("status", ""), "extending");
  EXPECT_EQ(shown.value("size", 0), 2);

  ASSERT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
  EXPECT_EQ(publisher_.PublishedTopics().back(), "volume.h@file");
  std::optional<ports::Delivery> job = TakeJob("volume.h@file");
  ASSERT_TRUE(job.has_value());
  auto message = JobMessage::FromJson(job->payload);
  ASSERT_TRUE(message.has_value()) << job->payload;
  EXPECT_EQ(message->operation, domain::Operation::kExtendVolume);
  EXPECT_EQ(message->resource_id, id);
  EXPECT_EQ(message->operation_id, *operation_id);

  // A second extend while the first is queued is refused and queues nothing.
  ExpectFault(Action(id, {{"os-extend", {{"new_size", 6}}}}), 400, "badRequest");
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
  EXPECT_EQ(IntegerColumn(ReadRow(id), "pending_size_gib"), 5);
}

TEST_F(VolumesApiTest, ExtendToASizeNotLargerIsRefusedWithCindersMessage) {
  std::string id = AvailableVolume("same", 2);
  ports::Row before = ReadRow(id);
  std::size_t published_before = publisher_.PublishedTopics().size();

  ports::HttpResponse same = Action(id, {{"os-extend", {{"new_size", 2}}}});
  ExpectFault(same, 400, "badRequest");
  EXPECT_EQ(Body(same)["badRequest"].value("message", ""),
            "Invalid input received: New size for extend must be greater than current size. "
            "(current: 2, extended: 2).");
  ExpectFault(Action(id, {{"os-extend", {{"new_size", 1}}}}), 400, "badRequest");

  EXPECT_TRUE(ReadRow(id) == before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

TEST_F(VolumesApiTest, ExtendRefusesSizesThatAreNotPositiveIntegers) {
  std::string id = AvailableVolume("bad-size", 2);
  ports::Row before = ReadRow(id);
  std::size_t published_before = publisher_.PublishedTopics().size();

  for (const json& argument : {json({{"new_size", "abc"}}),
                               json({{"new_size", 2.5}}),
                               json({{"new_size", true}}),
                               json({{"new_size", nullptr}}),
                               json({{"new_size", 0}}),
                               json({{"new_size", -3}}),
                               json({{"new_size", 1000000000000}}),
                               json({{"size", 5}}),
                               json::object(),
                               json(nullptr)}) {
    SCOPED_TRACE(argument.dump());
    ExpectFault(Action(id, {{"os-extend", argument}}), 400, "badRequest");
  }
  EXPECT_TRUE(ReadRow(id) == before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

TEST_F(VolumesApiTest, ExtendRefusesAVolumeThatIsNotAvailable) {
  std::vector<std::string> volumes = {CreateVolume("unscheduled")};
  for (VolumeStatus status : {VolumeStatus::kCreating,
                              VolumeStatus::kError,
                              VolumeStatus::kErrorExtending,
                              VolumeStatus::kExtending,
                              VolumeStatus::kDeletingQueued}) {
    std::string id = CreateVolume("busy");
    SetStatus(id, status);
    volumes.push_back(id);
  }
  std::size_t published_before = publisher_.PublishedTopics().size();

  for (const std::string& id : volumes) {
    SCOPED_TRACE(id);
    ports::Row before = ReadRow(id);
    ports::HttpResponse refused = Action(id, {{"os-extend", {{"new_size", 9}}}});
    ExpectFault(refused, 400, "badRequest");
    EXPECT_NE(Body(refused)["badRequest"].value("message", "").find("must be available"),
              std::string::npos)
        << refused.body;
    EXPECT_TRUE(ReadRow(id) == before);
  }
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

TEST_F(VolumesApiTest, ExtendOfAnUnknownOrAnotherProjectsVolumeIsNotFound) {
  std::string theirs = CreateVolume("theirs");
  SetColumns(theirs,
             {{"project_id", std::string(kOtherProject)},
              {"status", "available"},
              {"host", std::string(kHost)}});
  ports::Row before = ReadRow(theirs);
  std::size_t published_before = publisher_.PublishedTopics().size();
  RequestContext member = Context(kMinMicroversion, /*is_admin=*/false);
  const std::string extend = json({{"os-extend", {{"new_size", 9}}}}).dump();

  for (const std::string& id : {theirs, NewUuid()}) {
    SCOPED_TRACE(id);
    ExpectFault(
        volumes_.Action(member, Request("POST", VolumesPath() + "/" + id + "/action", extend), id),
        404,
        "itemNotFound");
  }

  EXPECT_TRUE(ReadRow(theirs) == before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

// ---------------------------------------------------------------------------------------------
// Actions: os-reset_status, os-force_delete, unknown actions

TEST_F(VolumesApiTest, ResetStatusSetsStatusesAtRestAndAttachAndMigrationStatus) {
  std::string id = AvailableVolume("stuck", 2);
  ASSERT_EQ(Action(id, {{"os-extend", {{"new_size", 4}}}}).status, 202);
  std::size_t published_before = publisher_.PublishedTopics().size();

  ports::HttpResponse reset = Action(id, {{"os-reset_status", {{"status", "error_extending"}}}});
  EXPECT_EQ(reset.status, 202) << reset.body;
  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "error_extending");
  EXPECT_TRUE(std::holds_alternative<std::monostate>(row.at("pending_size_gib")))
      << "a reset ends the pending extend";
  EXPECT_EQ(IntegerColumn(row, "size_gib"), 2);

  for (const char* status : {"available", "error", "error_deleting", "error_extending"}) {
    SCOPED_TRACE(status);
    EXPECT_EQ(Action(id, {{"os-reset_status", {{"status", status}}}}).status, 202);
    EXPECT_EQ(TextColumn(ReadRow(id), "status"), status);
  }

  EXPECT_EQ(Action(id, {{"os-reset_status", {{"attach_status", "attached"}}}}).status, 202);
  EXPECT_EQ(TextColumn(ReadRow(id), "attach_status"), "attached");
  EXPECT_EQ(TextColumn(ReadRow(id), "status"), "error_extending") << "status left alone";
  ExpectFault(Send(Request("DELETE", VolumesPath() + "/" + id)), 400, "badRequest");
  EXPECT_EQ(Action(id, {{"os-reset_status", {{"attach_status", "detached"}}}}).status, 202);
  EXPECT_EQ(TextColumn(ReadRow(id), "attach_status"), "detached");

  EXPECT_EQ(Action(id, {{"os-reset_status", {{"migration_status", "migrating"}}}}).status, 202);
  EXPECT_EQ(TextColumn(ReadRow(id), "migration_status"), "migrating");
  ExpectFault(Send(Request("DELETE", VolumesPath() + "/" + id)), 400, "badRequest");
  EXPECT_EQ(Action(id, {{"os-reset_status", {{"migration_status", "none"}}}}).status, 202);
  EXPECT_EQ(TextColumn(ReadRow(id), "migration_status"), std::nullopt) << "none clears it";

  ports::HttpResponse all = Action(
      id,
      {{"os-reset_status",
        {{"status", "available"}, {"attach_status", "detached"}, {"migration_status", "error"}}}});
  EXPECT_EQ(all.status, 202) << all.body;
  row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "available");
  EXPECT_EQ(TextColumn(row, "migration_status"), "error");
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before) << "a reset queues no job";
}

TEST_F(VolumesApiTest, ResetStatusRefusesValuesItCannotSet) {
  std::string id = AvailableVolume("kept");
  ports::Row before = ReadRow(id);

  // Stored names are not API names: a queued or in-progress status is never set by hand.
  for (const json& argument : {json({{"status", "creating_queued"}}),
                               json({{"status", "creating_by_admin"}}),
                               json({{"status", "restoring"}}),
                               json({{"status", "deleted"}}),
                               json({{"status", "bogus"}}),
                               json({{"status", 1}}),
                               json({{"attach_status", "attaching"}}),
                               json({{"migration_status", "bogus"}}),
                               json({{"status", "error"}, {"size", "5"}}),
                               json({{"status", "error"}, {"attach_status", "bogus"}}),
                               json::object(),
                               json(nullptr)}) {
    SCOPED_TRACE(argument.dump());
    ExpectFault(Action(id, {{"os-reset_status", argument}}), 400, "badRequest");
  }
  EXPECT_TRUE(ReadRow(id) == before);
  ExpectFault(Action(NewUuid(), {{"os-reset_status", {{"status", "error"}}}}), 404, "itemNotFound");
}

// Cinder lets an admin set any status, "creating" included (Tempest resets a volume to creating
// or maintenance, then force-deletes it). An operation's status is stored as its at-rest by-admin
// variant: shown the same, but no job, and a job still around for the old operation drops.
TEST_F(VolumesApiTest, ResetStatusToAnOperationsStatusStoresItAtRestAndForceDeleteRemovesIt) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"creating", "creating_by_admin"},
      {"deleting", "deleting_by_admin"},
      {"extending", "extending_by_admin"},
      {"restoring-backup", "restoring_by_admin"},
      {"maintenance", "maintenance"},
      {"attaching", "attaching"},
      {"in-use", "in-use"}};
  for (const auto& [api, stored] : cases) {
    SCOPED_TRACE(api);
    std::string id = AvailableVolume("reset-" + api);
    std::size_t published_before = publisher_.PublishedTopics().size();
    ports::HttpResponse reset = Action(id, {{"os-reset_status", {{"status", api}}}});
    ASSERT_EQ(reset.status, 202) << reset.body;
    ports::Row row = ReadRow(id);
    EXPECT_EQ(TextColumn(row, "status"), stored);
    EXPECT_EQ(TextColumn(row, "operation_id"), std::nullopt) << "no operation is under way";
    auto status = domain::ParseStoredVolumeStatus(stored);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(domain::Describe(*status).phase, domain::Phase::kAtRest);
    EXPECT_EQ(Body(Send(Request("GET", VolumesPath() + "/" + id)))["volume"]["status"], api);
    EXPECT_EQ(publisher_.PublishedTopics().size(), published_before) << "a reset queues no job";

    ports::HttpResponse deleted = Action(id, {{"os-force_delete", json::object()}});
    EXPECT_EQ(deleted.status, 202) << deleted.body;
    EXPECT_EQ(TextColumn(ReadRow(id), "status"), "deleting_queued");
  }
}

// Who may reset or force-delete a volume (the actions, and DELETE ?force=true from 3.23) is the
// policy's business (volume_extension:volume_admin_actions:*, volume:force_delete; admin by
// default): no admin check hides in the handler, so a policy file decides. One that refuses them
// refuses even noauth's admin, before the volume is looked at; api_auth_test opens them to a
// member.
TEST_F(VolumesApiTest, AdminActionsAreGuardedByTheirPolicyRules) {
  std::string id = AvailableVolume("guarded");
  SetStatus(id, VolumeStatus::kError);
  ports::Row before = ReadRow(id);
  RequestContext member = Context(kMinMicroversion, /*is_admin=*/false);
  auto closed = domain::Policy::Create({{"volume_extension:volume_admin_actions:reset_status", "!"},
                                        {"volume_extension:volume_admin_actions:force_delete", "!"},
                                        {"volume:force_delete", "!"}});
  ASSERT_TRUE(closed.has_value()) << closed.error().ToString();
  ApiAuthOptions options;
  options.policy = std::move(*closed);
  ApiService guarded(
      volumes_, snapshots_, attachments_, backups_, services_api_, types_, std::move(options));

  for (const json& body : {json({{"os-reset_status", {{"status", "available"}}}}),
                           json({{"os-force_delete", json::object()}})}) {
    SCOPED_TRACE(body.dump());
    ports::HttpResponse refused =
        guarded.Handle(Request("POST", VolumesPath() + "/" + id + "/action", body.dump()));
    ExpectFault(refused, 403, "forbidden");
    EXPECT_NE(
        refused.body.find("volume_extension:volume_admin_actions:" + body.begin().key().substr(3)),
        std::string::npos)
        << refused.body;
  }
  ports::HttpRequest forced = Request("DELETE", VolumesPath() + "/" + id, "", {{"force", "true"}});
  forced.headers.emplace_back("OpenStack-API-Version", "volume 3.23");
  ports::HttpResponse refused = guarded.Handle(forced);
  ExpectFault(refused, 403, "forbidden");
  EXPECT_NE(refused.body.find("volume:force_delete"), std::string::npos) << refused.body;
  EXPECT_TRUE(ReadRow(id) == before);
  // os-extend is not an admin action.
  SetStatus(id, VolumeStatus::kAvailable);
  EXPECT_EQ(volumes_
                .Action(member,
                        Request("POST",
                                VolumesPath() + "/" + id + "/action",
                                json({{"os-extend", {{"new_size", 2}}}}).dump()),
                        id)
                .status,
            202);
}

TEST_F(VolumesApiTest, ForceDeleteTakesAVolumeInAnyStatusButDeleting) {
  for (VolumeStatus status : {VolumeStatus::kCreating,
                              VolumeStatus::kExtendingQueued,
                              VolumeStatus::kExtending,
                              VolumeStatus::kErrorExtending,
                              VolumeStatus::kErrorDeleting,
                              VolumeStatus::kAvailable}) {
    SCOPED_TRACE(std::string(domain::StoredName(status)));
    std::string id = CreateVolume("forced");
    SetStatus(id, status);
    std::size_t published_before = publisher_.PublishedTopics().size();
    // Action bodies without parameters take any value: cinderclient sends {}, openstacksdk null.
    ports::HttpResponse forced = Action(
        id,
        {{"os-force_delete", status == VolumeStatus::kCreating ? json(nullptr) : json::object()}});
    EXPECT_EQ(forced.status, 202) << forced.body;
    ports::Row row = ReadRow(id);
    EXPECT_EQ(TextColumn(row, "status"), "deleting_queued");
    ASSERT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
    std::optional<ports::Delivery> job = TakeJob("volume.h@file");
    ASSERT_TRUE(job.has_value());
    auto message = JobMessage::FromJson(job->payload);
    ASSERT_TRUE(message.has_value());
    EXPECT_EQ(message->operation, domain::Operation::kDeleteVolume);
    EXPECT_EQ(message->resource_id, id);
    EXPECT_EQ(TextColumn(row, "operation_id"), message->operation_id);
  }

  // Never scheduled: retired at once, as a plain delete would.
  std::string unscheduled = CreateVolume("unscheduled");
  EXPECT_EQ(Action(unscheduled, {{"os-force_delete", json::object()}}).status, 202);
  EXPECT_EQ(IntegerColumn(ReadRow(unscheduled), "deleted"), 1);

  for (VolumeStatus status : {VolumeStatus::kDeletingQueued, VolumeStatus::kDeleting}) {
    SCOPED_TRACE(std::string(domain::StoredName(status)));
    std::string id = CreateVolume("deleting");
    SetStatus(id, status);
    ports::Row before = ReadRow(id);
    std::size_t published_before = publisher_.PublishedTopics().size();
    ExpectFault(Action(id, {{"os-force_delete", json::object()}}), 400, "badRequest");
    EXPECT_TRUE(ReadRow(id) == before);
    EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
  }

  // Nor does force skip the snapshots check.
  std::string with_snapshot = CreateVolume("with-snapshot");
  SetStatus(with_snapshot, VolumeStatus::kError);
  InsertSnapshot(with_snapshot, /*deleted=*/false);
  ExpectFault(Action(with_snapshot, {{"os-force_delete", json::object()}}), 400, "badRequest");
  EXPECT_EQ(TextColumn(ReadRow(with_snapshot), "status"), "error");
}

// DELETE ?force=true is a forced delete from 3.23 (admin); below it the parameter is ignored.
TEST_F(VolumesApiTest, DeleteWithForceIsAForceDeleteFromThreeTwentyThree) {
  auto at = [this](const std::string& id, const std::string& force, const char* version) {
    ports::HttpRequest request =
        Request("DELETE", VolumesPath() + "/" + id, "", {{"force", force}});
    request.headers.emplace_back("OpenStack-API-Version", version);
    return Send(request);
  };
  std::string id = CreateVolume("forced-by-query");
  SetStatus(id, VolumeStatus::kCreating);
  ports::Row before = ReadRow(id);
  std::size_t published_before = publisher_.PublishedTopics().size();

  ExpectFault(at(id, "true", "volume 3.0"), 400, "badRequest");
  ExpectFault(at(id, "true", "volume 3.22"), 400, "badRequest");
  ExpectFault(at(id, "false", "volume 3.23"), 400, "badRequest");
  EXPECT_TRUE(ReadRow(id) == before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);

  ports::HttpResponse forced = at(id, "true", "volume 3.23");
  EXPECT_EQ(forced.status, 202) << forced.body;
  EXPECT_EQ(TextColumn(ReadRow(id), "status"), "deleting_queued");
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
  // Refused once deleting, like os-force_delete.
  ExpectFault(at(id, "true", "volume 3.23"), 400, "badRequest");
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
}

TEST_F(VolumesApiTest, UnknownOrMalformedActionsAreBadRequests) {
  std::string id = AvailableVolume("acted-on");
  ports::Row before = ReadRow(id);
  const std::string path = VolumesPath() + "/" + id + "/action";
  for (const char* body : {"{not json",
                           "[]",
                           "{}",
                           R"({"os-bogus": {}})",
                           R"({"os-extend": {"new_size": 5}, "os-force_delete": {}})"}) {
    SCOPED_TRACE(body);
    ExpectFault(Send(Request("POST", path, body)), 400, "badRequest");
  }
  ports::HttpResponse unknown = Send(Request("POST", path, R"({"os-bogus": {}})"));
  EXPECT_EQ(Body(unknown)["badRequest"].value("message", ""), "There is no such action: os-bogus");
  EXPECT_TRUE(ReadRow(id) == before);
  EXPECT_EQ(Send(Request("GET", path)).status, 405);
}

// ---------------------------------------------------------------------------------------------
// Projects: an admin acts on every project's volumes, anyone else on their own project's only

TEST_F(VolumesApiTest, AnAdminOfAnotherProjectShowsUpdatesExtendsResetsAndDeletesAVolume) {
  std::string id = AvailableVolume("theirs", 2);
  RequestContext admin = Context(kMinMicroversion, /*is_admin=*/true, kOtherProject);
  const std::string path = VolumesPath(kOtherProject) + "/" + id;
  auto action = [&](const json& body) {
    return volumes_.Action(
        admin, Request("POST", path + "/action", body.dump(), {}, kOtherProject), id);
  };

  ports::HttpResponse shown = volumes_.Show(admin, id);
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["volume"].value("id", ""), id);
  EXPECT_EQ(Body(shown)["volume"].value("os-vol-tenant-attr:tenant_id", ""), kProject);

  ports::HttpResponse updated = volumes_.Update(
      admin,
      Request("PUT", path, json({{"volume", {{"name", "renamed"}}}}).dump(), {}, kOtherProject),
      id);
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(Body(updated)["volume"].value("name", ""), "renamed");
  EXPECT_EQ(TextColumn(ReadRow(id), "display_name"), "renamed");

  std::size_t published_before = publisher_.PublishedTopics().size();
  ports::HttpResponse extended = action({{"os-extend", {{"new_size", 3}}}});
  ASSERT_EQ(extended.status, 202) << extended.body;
  EXPECT_EQ(TextColumn(ReadRow(id), "status"), "extending_queued");
  EXPECT_EQ(IntegerColumn(ReadRow(id), "pending_size_gib"), 3);
  ASSERT_EQ(publisher_.PublishedTopics().size(), published_before + 1);
  std::optional<ports::Delivery> job = TakeJob("volume.h@file");
  ASSERT_TRUE(job.has_value());
  auto message = JobMessage::FromJson(job->payload);
  ASSERT_TRUE(message.has_value()) << job->payload;
  EXPECT_EQ(message->resource_id, id);
  EXPECT_EQ(message->project_id, kProject) << "a job names the volume's project";

  ports::HttpResponse reset = action({{"os-reset_status", {{"status", "available"}}}});
  ASSERT_EQ(reset.status, 202) << reset.body;
  EXPECT_EQ(TextColumn(ReadRow(id), "status"), "available");

  ports::HttpResponse deleted =
      volumes_.Delete(admin, Request("DELETE", path, "", {}, kOtherProject), id);
  EXPECT_EQ(deleted.status, 202) << deleted.body;
  ports::Row row = ReadRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "deleting_queued");
  EXPECT_EQ(TextColumn(row, "project_id"), kProject) << "the volume stays in its project";
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before + 2);
}

TEST_F(VolumesApiTest, AnAdminsCloneOfAnotherProjectsVolumeIsInTheAdminsProject) {
  std::string source = AvailableVolume("theirs", 2);
  RequestContext admin = Context(kMinMicroversion, /*is_admin=*/true, kOtherProject);

  ports::HttpResponse cloned =
      volumes_.Create(admin,
                      Request("POST",
                              VolumesPath(kOtherProject),
                              json({{"volume", {{"source_volid", source}}}}).dump(),
                              {},
                              kOtherProject));

  ASSERT_EQ(cloned.status, 202) << cloned.body;
  std::string clone = Body(cloned)["volume"].value("id", "");
  EXPECT_EQ(TextColumn(ReadRow(clone), "project_id"), kOtherProject);
  EXPECT_EQ(TextColumn(ReadRow(clone), "source_volid"), source);
  EXPECT_EQ(IntegerColumn(ReadRow(clone), "size_gib"), 2);
}

TEST_F(VolumesApiTest, AMemberOfAnotherProjectGetsNotFoundForEverythingAndChangesNothing) {
  std::string id = AvailableVolume("mine", 2);
  ports::Row before = ReadRow(id);
  std::size_t rows_before = RowCount();
  std::size_t published_before = publisher_.PublishedTopics().size();
  RequestContext member = OtherMember();
  const std::string path = VolumesPath(kOtherProject) + "/" + id;
  const std::string not_found = "Volume " + id + " could not be found.";

  ports::HttpResponse shown = volumes_.Show(member, id);
  ExpectFault(shown, 404, "itemNotFound");
  EXPECT_EQ(Body(shown)["itemNotFound"].value("message", ""), not_found)
      << "the same answer as for a volume that does not exist";
  ExpectFault(
      volumes_.Update(
          member,
          Request("PUT", path, json({{"volume", {{"name", "stolen"}}}}).dump(), {}, kOtherProject),
          id),
      404,
      "itemNotFound");
  ExpectFault(volumes_.Action(member,
                              Request("POST",
                                      path + "/action",
                                      json({{"os-extend", {{"new_size", 3}}}}).dump(),
                                      {},
                                      kOtherProject),
                              id),
              404,
              "itemNotFound");
  ports::HttpResponse deleted =
      volumes_.Delete(member, Request("DELETE", path, "", {}, kOtherProject), id);
  ExpectFault(deleted, 404, "itemNotFound");
  EXPECT_EQ(Body(deleted)["itemNotFound"].value("message", ""), not_found);
  ExpectFault(volumes_.Create(member,
                              Request("POST",
                                      VolumesPath(kOtherProject),
                                      json({{"volume", {{"source_volid", id}}}}).dump(),
                                      {},
                                      kOtherProject)),
              404,
              "itemNotFound");

  EXPECT_TRUE(ReadRow(id) == before);
  EXPECT_EQ(RowCount(), rows_before);
  EXPECT_EQ(publisher_.PublishedTopics().size(), published_before);
}

TEST_F(VolumesApiTest, ListsShowOtherProjectsOnlyToAnAdminAskingForAllTenants) {
  std::string mine = CreateVolume("mine");
  std::string theirs = CreateVolume("theirs");
  SetColumns(theirs, {{"project_id", std::string(kOtherProject)}});
  // The ids the summary list shows, checked against the detail list.
  auto listed = [&](const RequestContext& context, const Query& query) {
    std::set<std::string> ids;
    for (bool detail : {false, true}) {
      ports::HttpResponse response =
          volumes_.List(context, Request("GET", VolumesPath(), "", query), detail);
      EXPECT_EQ(response.status, 200) << response.body;
      // Named: a range over a member of a temporary would dangle.
      const json body = Body(response);
      std::set<std::string> shown;
      for (const json& item : body["volumes"]) {
        shown.insert(item.value("id", ""));
      }
      if (detail) {
        EXPECT_EQ(shown, ids) << "list and list detail agree";
      } else {
        ids = shown;
      }
    }
    return ids;
  };
  const RequestContext member = Context(kMinMicroversion, /*is_admin=*/false);
  const RequestContext admin = Context(kMinMicroversion, /*is_admin=*/true);
  const std::set<std::string> own = {mine};
  const Query all = {{"all_tenants", "1"}};
  const Query all_of_theirs = {{"all_tenants", "1"}, {"project_id", std::string(kOtherProject)}};
  const Query of_theirs = {{"project_id", std::string(kOtherProject)}};

  EXPECT_EQ(listed(member, {}), own);
  EXPECT_EQ(listed(member, all), own) << "all_tenants is for admins only";
  EXPECT_EQ(listed(member, all_of_theirs), own);
  EXPECT_EQ(listed(member, of_theirs), own);
  EXPECT_EQ(listed(admin, {}), own) << "without all_tenants an admin lists its own project";
  EXPECT_EQ(listed(admin, of_theirs), own) << "project_id filters only with all_tenants";
  EXPECT_EQ(listed(admin, all), (std::set<std::string>{mine, theirs}));
  EXPECT_EQ(listed(admin, all_of_theirs), std::set<std::string>{theirs});
}

// ---------------------------------------------------------------------------------------------
// Microversions, versions documents, routing, noauth

TEST_F(VolumesApiTest, MicroversionIsNegotiatedAndEchoed) {
  ports::HttpResponse plain = Get(VolumesPath());
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(ResponseHeader(plain, "OpenStack-API-Version"), "volume 3.0");
  EXPECT_EQ(ResponseHeader(plain, "Vary"), "OpenStack-API-Version");

  auto with_version = [this](const std::string& value) {
    ports::HttpRequest request = Request("GET", VolumesPath());
    request.headers.emplace_back("OpenStack-API-Version", value);
    return Send(request);
  };
  ports::HttpResponse v35 = with_version("volume 3.5");
  EXPECT_EQ(v35.status, 200);
  EXPECT_EQ(ResponseHeader(v35, "OpenStack-API-Version"), "volume 3.5");

  ports::HttpResponse latest = with_version("volume latest");
  EXPECT_EQ(latest.status, 200);
  EXPECT_EQ(ResponseHeader(latest, "OpenStack-API-Version"),
            "volume " + kMaxMicroversion.ToString());

  ports::HttpResponse too_new = with_version("volume 3.999");
  EXPECT_EQ(too_new.status, 406) << too_new.body;
  EXPECT_EQ(ResponseHeader(too_new, "OpenStack-API-Version").rfind("volume ", 0), 0u);
  EXPECT_EQ(ResponseHeader(too_new, "Vary"), "OpenStack-API-Version");

  ports::HttpResponse malformed = with_version("volume 3.x");
  ExpectFault(malformed, 400, "badRequest");
  EXPECT_EQ(ResponseHeader(malformed, "OpenStack-API-Version"), "volume 3.0");
}

TEST_F(VolumesApiTest, VersionDocumentsAreServedAtTheRootAndAtV3) {
  ports::HttpResponse root = Send(Request("GET", "/"));
  EXPECT_EQ(root.status, 300);
  json versions = Body(root)["versions"];
  ASSERT_TRUE(versions.is_array() && versions.size() == 1) << root.body;
  EXPECT_EQ(versions[0].value("version", ""), kMaxMicroversion.ToString());
  EXPECT_EQ(versions[0].value("min_version", ""), kMinMicroversion.ToString());
  EXPECT_EQ(versions[0].value("id", ""), "v3.0");

  ports::HttpResponse v3 = Send(Request("GET", "/v3/"));
  EXPECT_EQ(v3.status, 200);
  EXPECT_EQ(Body(v3)["versions"][0].value("version", ""), kMaxMicroversion.ToString());
}

TEST_F(VolumesApiTest, ProjectInTheUrlMustBeHexAndMatchTheToken) {
  ports::HttpResponse mismatch = Send(Request("GET", VolumesPath(kOtherProject), "", {}, kProject));
  ExpectFault(mismatch, 400, "badRequest");
  EXPECT_EQ(Body(mismatch)["badRequest"].value("message", ""), "Malformed request url");

  ExpectFault(Send(Request("GET", "/v3/not-a-project!/volumes")), 404, "itemNotFound");
  ExpectFault(Send(Request("GET", "/v3/NOTHEX/volumes")), 404, "itemNotFound");
}

TEST_F(VolumesApiTest, RequestWithoutATokenGetsOneFromNoauth) {
  ports::HttpRequest request = Request("GET", VolumesPath());
  request.headers.clear();

  ports::HttpResponse response = Send(request);

  EXPECT_EQ(response.status, 204);
  EXPECT_FALSE(ResponseHeader(response, "X-Auth-Token").empty());
  EXPECT_EQ(RowCount(), 0u);
}

TEST_F(VolumesApiTest, EveryResponseCarriesAFreshRequestId) {
  std::string id = CreateVolume("x");
  std::vector<ports::HttpRequest> requests = {
      Request("GET", "/"),
      Request("GET", "/v3/"),
      Request("GET", VolumesPath()),
      Request("GET", VolumesPath() + "/" + id),
      Request("GET", VolumesPath() + "/" + NewUuid()),
      Request("POST", VolumesPath(), "{bad"),
      Request("DELETE", VolumesPath() + "/" + id),
      Request("GET", "/nowhere"),
  };
  std::set<std::string> request_ids;
  for (const ports::HttpRequest& request : requests) {
    ports::HttpResponse response = Send(request);
    std::string request_id = ResponseHeader(response, "x-openstack-request-id");
    EXPECT_FALSE(request_id.empty()) << request.method << " " << request.path;
    request_ids.insert(request_id);
  }
  EXPECT_EQ(request_ids.size(), requests.size()) << "request ids repeat";
}

}  // namespace
}  // namespace clinker::services
