// Goal: check the Cinder v3 attachments API (3.27+) and the legacy attach actions as a client
// sees them through ApiService::Handle: status codes, views, and the rows and back-end calls
// behind each answer. Reservations: a non-multiattach volume takes one (a second, sequential or
// racing, is refused and changes nothing), a multiattach volume takes several. Exports: an update
// with a connector waits for a volume node to export the volume and answers with the driver's
// connection_info; os-complete (3.44+) attaches; a delete ends the export through the back-end
// only when there was one, and answers with the attachments left. The volume's status follows
// (reserved, attaching, in-use, detaching, available), and a volume with a live attachment cannot
// be deleted. With no volume node the wait ends in 503 and the attachment waits for one.
// Projects, as in Cinder: an attachment belongs to its volume's project; an admin of another
// project attaches, shows, exports, completes and deletes; a member of another project gets 404
// for all of it and changes nothing; lists show other projects only to an admin with all_tenants.
//
// Method: ApiService over the real API services on a MemoryStateStore and a MemoryBroker, with a
// real volume node: a VolumeManager (MemoryLockManager, MemoryStorageDriver) behind a
// JobWorkerPool consuming the back-end's topic. The attachments API runs on the system clock,
// because its wait for a job is bounded by the monotonic clock and a fake one would never reach
// the deadline; every other wait here is bounded by kWaitBound and polled. Volumes are written
// straight to the store as the scheduler and the volume manager leave them, and created in the
// driver. Where a race needs one precise interleaving, HookedStore runs the other party at a
// chosen store call. Handlers are called directly with a RequestContext for a non-admin caller or
// one of another project (noauth makes every caller an admin of the token's project).
#include "clinker/services/attachments_api.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_lock_manager.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/adapters/memory/memory_storage_driver.h"
#include "clinker/adapters/os/system_clock.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/api_service.h"
#include "clinker/services/attachment_state.h"
#include "clinker/services/job_worker_pool.h"
#include "clinker/services/volume_manager.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"
#include "support/recording_job_queue.h"

namespace clinker::services {
namespace {

using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryLockManager;
using adapters::MemoryStateStore;
using adapters::MemoryStorageDriver;
using adapters::SystemClock;
using domain::VolumeStatus;
using nlohmann::json;
using test_support::FakeClock;
using test_support::RecordingJobQueue;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kOtherProject = "fedcba9876543210fedcba9876543210";
constexpr std::string_view kBaseUrl = "http://clinker.test:8776";
constexpr std::string_view kHost = "node1@memory#pool";
constexpr std::string_view kTopic = "volume.node1@memory";
constexpr std::string_view kInstance = "6d1b5bbf-6fa5-4d41-9e4c-1f2c43a3a9d3";
constexpr std::string_view kLatest = "3.44";
// Bounds every wait for a job; only reached when the code under test is broken.
constexpr std::chrono::seconds kWaitBound{20};

// ---- Helpers. ----

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
    return -1;
  }
  return std::get<std::int64_t>(it->second);
}

void ExpectFault(const ports::HttpResponse& response, int status, std::string_view name) {
  EXPECT_EQ(response.status, status) << response.body;
  json body = json::parse(response.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << response.body;
  ASSERT_TRUE(body.contains(name)) << response.body;
  EXPECT_EQ(body[std::string(name)].value("code", 0), status);
  EXPECT_FALSE(body[std::string(name)].value("message", "").empty()) << response.body;
}

std::string FaultMessage(const ports::HttpResponse& response) {
  json body = json::parse(response.body, nullptr, false);
  if (!body.is_object() || body.empty() || !body.begin()->is_object()) {
    return "";
  }
  return body.begin()->value("message", "");
}

// What a compute host sends.
json Connector() {
  return {{"host", "compute-1"},
          {"initiator", "iqn.1993-08.org.debian:01:compute-1"},
          {"ip", "192.0.2.10"},
          {"platform", "x86_64"},
          {"os_type", "linux"},
          {"multipath", false},
          {"mountpoint", "/dev/vdb"}};
}

// Polls `done` until it holds or kWaitBound passed.
bool WaitUntil(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kWaitBound;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return done();
}

// A volume service of kHost: a VolumeManager behind a worker pool on its own queue session.
class VolumeNode {
 public:
  VolumeNode(std::shared_ptr<MemoryBroker> broker,
             ports::StateStore& store,
             ports::LockManager& locks,
             ports::StorageDriver& driver,
             const ports::Clock& clock)
      : queue_(std::move(broker)),
        manager_(store, locks, driver, clock, ManagerOptions()),
        pool_(
            queue_,
            [this](const ports::Delivery& delivery) { return manager_.Handle(delivery); },
            PoolOptions()) {
    subscribed_ = queue_.Subscribe({std::string(kTopic)}).has_value();
    pool_.Start();
  }

  VolumeNode(const VolumeNode&) = delete;
  VolumeNode& operator=(const VolumeNode&) = delete;
  VolumeNode(VolumeNode&&) = delete;
  VolumeNode& operator=(VolumeNode&&) = delete;

  ~VolumeNode() { pool_.Stop(); }

  bool subscribed() const { return subscribed_; }

 private:
  static VolumeManagerOptions ManagerOptions() {
    VolumeManagerOptions options;
    options.lock_timeout = std::chrono::milliseconds(5000);
    options.final_write_backoff = std::chrono::milliseconds(5);
    return options;
  }

  static JobWorkerPool::Options PoolOptions() {
    JobWorkerPool::Options options;
    options.name = "volume";
    options.workers = 2;
    options.receive_wait = std::chrono::milliseconds(10);
    options.retry_delay = std::chrono::milliseconds(10);
    return options;
  }

  MemoryJobQueue queue_;
  VolumeManager manager_;
  JobWorkerPool pool_;
  bool subscribed_ = false;
};

// A StateStore decorator that runs a test hook before each call, so a test can put another
// party's requests at one precise point of a request under test.
class HookedStore final : public ports::StateStore {
 public:
  Result<void> Insert(ports::Table table, const ports::Row& row) override {
    return InsertWithUsage(table, row, {});
  }

  Result<std::optional<ports::Row>> ConditionalUpdate(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards) override {
    return ConditionalUpdateWithUsage(table, id, values, expected, guards, {});
  }
  enum class Call { kInsert, kGet, kList, kConditionalUpdate };
  using Hook = std::function<void(Call, ports::Table)>;

  explicit HookedStore(ports::StateStore& inner) : inner_(inner) {}

  void SetHook(Hook hook) { hook_ = std::move(hook); }

  Result<void> InsertWithUsage(ports::Table table,
                               const ports::Row& row,
                               const std::vector<ports::UsageChange>& usage) override {
    Before(Call::kInsert, table);
    return inner_.InsertWithUsage(table, row, usage);
  }

  Result<ports::Row> Get(ports::Table table, std::string_view id) override {
    Before(Call::kGet, table);
    return inner_.Get(table, id);
  }

  Result<std::vector<ports::Row>> List(ports::Table table, const ports::ListQuery& query) override {
    Before(Call::kList, table);
    return inner_.List(table, query);
  }

  Result<std::optional<ports::Row>> ConditionalUpdateWithUsage(
      ports::Table table,
      std::string_view id,
      const ports::Row& values,
      const std::vector<ports::Expectation>& expected,
      const std::vector<ports::Guard>& guards,
      const std::vector<ports::UsageChange>& usage) override {
    Before(Call::kConditionalUpdate, table);
    return inner_.ConditionalUpdateWithUsage(table, id, values, expected, guards, usage);
  }

 private:
  void Before(Call call, ports::Table table) {
    if (hook_) {
      hook_(call, table);
    }
  }

  ports::StateStore& inner_;
  Hook hook_;
};

AttachmentsApiOptions FastPolling(std::chrono::milliseconds job_timeout) {
  AttachmentsApiOptions options;
  options.job_timeout = job_timeout;
  options.poll_min = std::chrono::milliseconds(1);
  options.poll_max = std::chrono::milliseconds(5);
  return options;
}

class AttachmentsApiTest : public ::testing::Test {
 protected:
  AttachmentsApiTest()
      : broker_(std::make_shared<MemoryBroker>()),
        session_(broker_),
        publisher_(session_),
        volumes_(store_, publisher_, clock_, VolumesApiOptions{}),
        snapshots_(store_, publisher_, clock_, SnapshotsApiOptions{}),
        attachments_(store_, publisher_, system_clock_, FastPolling(kWaitBound)),
        backups_(store_, publisher_, clock_, BackupsApiOptions{}),
        services_api_(store_, clock_, ServicesApiOptions{}),
        types_(store_, clock_, TypesApiOptions{}),
        service_(volumes_, snapshots_, attachments_, backups_, services_api_, types_) {
    StartVolumeNode();
  }

  void StartVolumeNode() {
    node_ = std::make_unique<VolumeNode>(broker_, store_, locks_, driver_, clock_);
    EXPECT_TRUE(node_->subscribed());
  }

  void StopVolumeNode() { node_.reset(); }

  static std::string ProjectPath() { return "/v3/" + std::string(kProject); }

  static std::string AttachmentsPath() { return ProjectPath() + "/attachments"; }

  static std::string AttachmentPath(const std::string& id) { return AttachmentsPath() + "/" + id; }

  static std::string VolumePath(const std::string& id) { return ProjectPath() + "/volumes/" + id; }

  static ports::HttpRequest Request(std::string method,
                                    std::string path,
                                    std::string body = "",
                                    std::string_view version = kLatest) {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.body = std::move(body);
    request.base_url = std::string(kBaseUrl);
    request.headers = {{"X-Auth-Token", "user:" + std::string(kProject)},
                       {"Content-Type", "application/json"},
                       {"OpenStack-API-Version", "volume " + std::string(version)}};
    return request;
  }

  ports::HttpResponse Send(const ports::HttpRequest& request) { return service_.Handle(request); }

  // What ApiService would build for a keystone caller (noauth makes every caller admin).
  static RequestContext Context(bool is_admin, std::string_view project = kProject) {
    RequestContext context;
    context.user_id = "user";
    context.project_id = std::string(project);
    context.is_admin = is_admin;
    context.version = Microversion{3, 44};
    context.link_base = std::string(kBaseUrl) + "/v3/" + std::string(project);
    context.bookmark_base = std::string(kBaseUrl) + "/" + std::string(project);
    return context;
  }

  // POST /attachments for `volume_id` as `context`.
  ports::HttpResponse CreateAs(const RequestContext& context, const std::string& volume_id) {
    return attachments_.Create(
        context,
        Request("POST",
                AttachmentsPath(),
                json{{"attachment",
                      {{"volume_uuid", volume_id}, {"instance_uuid", std::string(kInstance)}}}}
                    .dump()));
  }

  // A volume as the scheduler and the volume manager leave it: on kHost, in the driver.
  std::string AvailableVolume(bool multiattach = false,
                              VolumeStatus status = VolumeStatus::kAvailable,
                              std::string_view project = kProject) {
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = std::string(project);
    volume.user_id = "user";
    volume.status = status;
    volume.size_gib = 1;
    volume.name = "vol";
    volume.availability_zone = "nova";
    volume.host = std::string(kHost);
    volume.multiattach = multiattach;
    volume.created_at = FormatTimestamp(clock_.WallNow());
    auto inserted = store_.Insert(ports::Table::kVolumes, VolumeToRow(volume));
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    auto created = driver_.CreateVolume(ports::VolumeSpec{volume.id, 1, NewUuid(), 0, {}});
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return volume.id;
  }

  ports::HttpResponse CreateAttachment(const std::string& volume_id,
                                       std::optional<json> connector = std::nullopt,
                                       std::string_view version = kLatest) {
    json spec = {{"volume_uuid", volume_id}, {"instance_uuid", std::string(kInstance)}};
    if (connector) {
      spec["connector"] = *connector;
    }
    return Send(Request("POST", AttachmentsPath(), json{{"attachment", spec}}.dump(), version));
  }

  // Creates a reservation and returns its id (empty on failure).
  std::string Reserve(const std::string& volume_id) {
    ports::HttpResponse response = CreateAttachment(volume_id);
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response)["attachment"].value("id", "");
  }

  ports::HttpResponse Update(const std::string& attachment_id, const json& connector) {
    return Send(Request("PUT",
                        AttachmentPath(attachment_id),
                        json{{"attachment", {{"connector", connector}}}}.dump()));
  }

  ports::HttpResponse Complete(const std::string& attachment_id,
                               std::string_view version = kLatest) {
    return Send(Request(
        "POST", AttachmentPath(attachment_id) + "/action", R"({"os-complete": {}})", version));
  }

  ports::HttpResponse Action(const std::string& volume_id, const json& body) {
    return Send(Request("POST", VolumePath(volume_id) + "/action", body.dump()));
  }

  // Reserves, exports and completes: the attachment id of an attached volume.
  std::string Attach(const std::string& volume_id) {
    std::string id = Reserve(volume_id);
    ports::HttpResponse updated = Update(id, Connector());
    EXPECT_EQ(updated.status, 200) << updated.body;
    ports::HttpResponse completed = Complete(id);
    EXPECT_EQ(completed.status, 204) << completed.body;
    return id;
  }

  ports::Row VolumeRow(const std::string& id) {
    auto row = store_.Get(ports::Table::kVolumes, id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  ports::Row AttachmentRow(const std::string& id) {
    auto row = store_.Get(ports::Table::kAttachments, id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  std::vector<ports::Row> AttachmentRows(const std::string& volume_id,
                                         bool include_deleted = false) {
    ports::ListQuery query;
    query.filters = {ports::Expectation::Equals("volume_id", volume_id)};
    query.include_deleted = include_deleted;
    auto rows = store_.List(ports::Table::kAttachments, query);
    EXPECT_TRUE(rows.has_value());
    return rows ? *rows : std::vector<ports::Row>{};
  }

  // The volume's stored status and attach_status.
  void ExpectVolume(const std::string& id, VolumeStatus status, std::string_view attach_status) {
    ports::Row row = VolumeRow(id);
    EXPECT_EQ(TextColumn(row, "status"), std::string(domain::StoredName(status)));
    EXPECT_EQ(TextColumn(row, "attach_status"), std::string(attach_status));
  }

  json VolumeView(const std::string& id) {
    ports::HttpResponse response = Send(Request("GET", VolumePath(id)));
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response)["volume"];
  }

  json AttachmentView(const std::string& id) {
    ports::HttpResponse response = Send(Request("GET", AttachmentPath(id)));
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response)["attachment"];
  }

  std::size_t JobsPublished() const { return publisher_.PublishedTopics().size(); }

  MemoryStateStore store_;
  FakeClock clock_;
  SystemClock system_clock_;
  MemoryLockManager locks_;
  MemoryStorageDriver driver_{"memory"};
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
  std::unique_ptr<VolumeNode> node_;
};

// ---------------------------------------------------------------------------------------------
// Create

TEST_F(AttachmentsApiTest, CreateReservesTheVolumeAndShowsTheAttachment) {
  std::string volume = AvailableVolume();

  ports::HttpResponse response = CreateAttachment(volume);

  ASSERT_EQ(response.status, 200) << response.body;
  json view = Body(response)["attachment"];
  std::string id = view.value("id", "");
  EXPECT_TRUE(IsUuid(id)) << id;
  std::vector<std::string> keys;
  for (const auto& item : view.items()) {
    keys.push_back(item.key());
  }
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys,
            (std::vector<std::string>{"attach_mode",
                                      "attached_at",
                                      "connection_info",
                                      "detached_at",
                                      "id",
                                      "instance",
                                      "status",
                                      "volume_id"}));
  EXPECT_EQ(view.value("status", ""), "reserved");
  EXPECT_EQ(view.value("instance", ""), kInstance);
  EXPECT_EQ(view.value("volume_id", ""), volume);
  EXPECT_EQ(view.value("attached_at", "x"), "");
  EXPECT_EQ(view.value("detached_at", "x"), "");
  EXPECT_EQ(view.value("attach_mode", ""), "null");
  EXPECT_EQ(view["connection_info"], json::object());

  ports::Row row = AttachmentRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "reserved");
  EXPECT_EQ(TextColumn(row, "volume_id"), volume);
  ExpectVolume(volume, VolumeStatus::kReserved, "reserved");
  EXPECT_EQ(VolumeView(volume).value("status", ""), "reserved");
  EXPECT_EQ(AttachmentView(id), view);
  EXPECT_EQ(JobsPublished(), 0u) << "a reservation needs no back-end";
}

TEST_F(AttachmentsApiTest, CreateBelowMicroversion327IsNotFoundAndStoresNothing) {
  std::string volume = AvailableVolume();
  ports::Row before = VolumeRow(volume);

  ExpectFault(CreateAttachment(volume, std::nullopt, "3.26"), 404, "itemNotFound");

  EXPECT_EQ(VolumeRow(volume), before);
  EXPECT_TRUE(AttachmentRows(volume, /*include_deleted=*/true).empty());
}

TEST_F(AttachmentsApiTest, CreateForAnUnknownVolumeIsNotFound) {
  ports::HttpResponse response = CreateAttachment(NewUuid());
  ExpectFault(response, 404, "itemNotFound");
  EXPECT_EQ(JobsPublished(), 0u);
}

TEST_F(AttachmentsApiTest, CreateForAVolumeInErrorIsRefusedAndChangesNothing) {
  std::string volume = AvailableVolume(false, VolumeStatus::kError);
  ports::Row before = VolumeRow(volume);

  ports::HttpResponse response = CreateAttachment(volume);

  ExpectFault(response, 400, "badRequest");
  EXPECT_NE(FaultMessage(response).find("error"), std::string::npos) << response.body;
  EXPECT_EQ(VolumeRow(volume), before);
  EXPECT_TRUE(AttachmentRows(volume, /*include_deleted=*/true).empty());
}

TEST_F(AttachmentsApiTest, ASecondReservationOfANonMultiattachVolumeIsRefusedAndChangesNothing) {
  std::string volume = AvailableVolume();
  std::string first = Reserve(volume);
  ports::Row volume_before = VolumeRow(volume);
  ports::Row attachment_before = AttachmentRow(first);

  ports::HttpResponse response = CreateAttachment(volume);

  ExpectFault(response, 400, "badRequest");
  EXPECT_EQ(VolumeRow(volume), volume_before);
  EXPECT_EQ(AttachmentRow(first), attachment_before);
  std::vector<ports::Row> rows = AttachmentRows(volume, /*include_deleted=*/true);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(TextColumn(rows[0], "id"), first);
  EXPECT_EQ(JobsPublished(), 0u);
}

TEST_F(AttachmentsApiTest, AMultiattachVolumeTakesSeveralAttachments) {
  std::string volume = AvailableVolume(/*multiattach=*/true);

  std::string first = Reserve(volume);
  std::string second = Reserve(volume);

  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());
  EXPECT_NE(first, second);
  EXPECT_EQ(AttachmentRows(volume).size(), 2u);
  ExpectVolume(volume, VolumeStatus::kReserved, "reserved");

  // One of them attached: the volume is in use, and still takes another reservation.
  ASSERT_EQ(Update(first, Connector()).status, 200);
  ASSERT_EQ(Complete(first).status, 204);
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
  std::string third = Reserve(volume);
  ASSERT_FALSE(third.empty());
  EXPECT_EQ(AttachmentRows(volume).size(), 3u);
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
}

TEST_F(AttachmentsApiTest, EightRacingReservationsOfANonMultiattachVolumeHaveOneWinner) {
  constexpr int kRacers = 8;
  std::string volume = AvailableVolume();
  std::vector<ports::HttpResponse> responses(kRacers);
  std::latch start(kRacers);
  std::vector<std::thread> racers;
  racers.reserve(kRacers);
  for (int i = 0; i < kRacers; ++i) {
    racers.emplace_back([&, i] {
      ports::HttpRequest request = Request(
          "POST",
          AttachmentsPath(),
          json{{"attachment", {{"volume_uuid", volume}, {"instance_uuid", NewUuid()}}}}.dump());
      start.arrive_and_wait();
      responses[static_cast<std::size_t>(i)] = service_.Handle(request);
    });
  }
  for (std::thread& racer : racers) {
    racer.join();
  }

  std::vector<std::string> winners;
  for (const ports::HttpResponse& response : responses) {
    if (response.status == 200) {
      winners.push_back(Body(response)["attachment"].value("id", ""));
    } else {
      ExpectFault(response, 400, "badRequest");
    }
  }
  ASSERT_EQ(winners.size(), 1u);
  std::vector<ports::Row> live = AttachmentRows(volume);
  ASSERT_EQ(live.size(), 1u) << "a losing reservation left a live attachment";
  EXPECT_EQ(TextColumn(live[0], "id"), winners[0]);
  ExpectVolume(volume, VolumeStatus::kReserved, "reserved");
}

// ---------------------------------------------------------------------------------------------
// Update (export) and os-complete

TEST_F(AttachmentsApiTest, UpdateWithAConnectorWaitsForTheExportAndReturnsTheConnectionInfo) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);

  ports::HttpResponse response = Update(id, Connector());

  ASSERT_EQ(response.status, 200) << response.body;
  json view = Body(response)["attachment"];
  EXPECT_EQ(view.value("id", ""), id);
  EXPECT_EQ(view.value("status", ""), "attaching");
  EXPECT_EQ(view["connection_info"],
            (json{{"driver_volume_type", "memory"}, {"data", {{"volume_id", volume}}}}));
  ports::Row row = AttachmentRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "attaching");
  EXPECT_EQ(TextColumn(row, "attached_host"), "compute-1");
  EXPECT_EQ(TextColumn(row, "mountpoint"), "/dev/vdb");
  std::optional<std::string> connector = TextColumn(row, "connector");
  ASSERT_TRUE(connector.has_value());
  EXPECT_EQ(json::parse(*connector, nullptr, false), Connector());
  ExpectVolume(volume, VolumeStatus::kAttaching, "attaching");
  EXPECT_EQ(VolumeView(volume).value("status", ""), "attaching");
  EXPECT_EQ(driver_.CallCount("initialize_connection"), 1);
  EXPECT_EQ(publisher_.PublishedTopics(), std::vector<std::string>{std::string(kTopic)});
}

TEST_F(AttachmentsApiTest, CreateWithAConnectorExportsAtOnce) {
  std::string volume = AvailableVolume();

  ports::HttpResponse response = CreateAttachment(volume, Connector());

  ASSERT_EQ(response.status, 200) << response.body;
  json view = Body(response)["attachment"];
  EXPECT_EQ(view.value("status", ""), "attaching");
  EXPECT_EQ(view["connection_info"].value("driver_volume_type", ""), "memory");
  ExpectVolume(volume, VolumeStatus::kAttaching, "attaching");
}

TEST_F(AttachmentsApiTest, UpdateWithoutAConnectorOrOfAnUnknownAttachmentIsRefused) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);

  ExpectFault(Send(Request("PUT", AttachmentPath(id), R"({"attachment": {}})")), 400, "badRequest");
  ExpectFault(Update(NewUuid(), Connector()), 404, "itemNotFound");
  ExpectFault(Send(Request("PUT",
                           AttachmentPath(id),
                           json{{"attachment", {{"connector", Connector()}}}}.dump(),
                           "3.26")),
              404,
              "itemNotFound");
  EXPECT_EQ(TextColumn(AttachmentRow(id), "status"), "reserved");
  EXPECT_EQ(JobsPublished(), 0u);
}

TEST_F(AttachmentsApiTest, CompleteAttachesAndPutsTheVolumeInUse) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);
  ASSERT_EQ(Update(id, Connector()).status, 200);

  ports::HttpResponse response = Complete(id);

  EXPECT_EQ(response.status, 204) << response.body;
  json view = AttachmentView(id);
  EXPECT_EQ(view.value("status", ""), "attached");
  EXPECT_FALSE(view.value("attached_at", "").empty());
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");

  json volume_view = VolumeView(volume);
  EXPECT_EQ(volume_view.value("status", ""), "in-use");
  ASSERT_TRUE(volume_view["attachments"].is_array());
  ASSERT_EQ(volume_view["attachments"].size(), 1u) << volume_view.dump();
  const json& attachment = volume_view["attachments"][0];
  EXPECT_EQ(attachment.value("attachment_id", ""), id);
  EXPECT_EQ(attachment.value("id", ""), volume);
  EXPECT_EQ(attachment.value("volume_id", ""), volume);
  EXPECT_EQ(attachment.value("server_id", ""), kInstance);
  EXPECT_EQ(attachment.value("host_name", ""), "compute-1");
  EXPECT_EQ(attachment.value("device", ""), "/dev/vdb");
  EXPECT_EQ(attachment.value("attached_at", ""), view.value("attached_at", "x"));
}

TEST_F(AttachmentsApiTest, CompleteBelowMicroversion344IsRefused) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);
  ASSERT_EQ(Update(id, Connector()).status, 200);

  ExpectFault(Complete(id, "3.43"), 400, "badRequest");

  EXPECT_EQ(TextColumn(AttachmentRow(id), "status"), "attaching");
  ExpectVolume(volume, VolumeStatus::kAttaching, "attaching");
}

TEST_F(AttachmentsApiTest, CompleteOfAReservationWithoutAConnectionIsRefused) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);

  ExpectFault(Complete(id), 400, "badRequest");

  EXPECT_EQ(TextColumn(AttachmentRow(id), "status"), "reserved");
  ExpectVolume(volume, VolumeStatus::kReserved, "reserved");
}

// The back-end refuses the export (here: it does not know the volume): the update answers 500
// with the back-end's reason, the attachment is error_attaching, and it may be sent again once
// the back-end can export.
TEST_F(AttachmentsApiTest, AnExportTheBackEndRefusesIsAServerErrorAndCanBeRetried) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);
  ASSERT_TRUE(driver_.DeleteVolume(volume, NewUuid(), 0).has_value());

  ports::HttpResponse failed = Update(id, Connector());

  ExpectFault(failed, 500, "computeFault");
  EXPECT_NE(FaultMessage(failed).find("does not exist"), std::string::npos) << failed.body;
  EXPECT_EQ(TextColumn(AttachmentRow(id), "status"), "error_attaching");
  EXPECT_EQ(AttachmentView(id).value("status", ""), "error_attaching");

  ASSERT_TRUE(driver_.CreateVolume(ports::VolumeSpec{volume, 1, NewUuid(), 0, {}}).has_value());
  ports::HttpResponse retried = Update(id, Connector());
  ASSERT_EQ(retried.status, 200) << retried.body;
  ASSERT_EQ(Complete(id).status, 204);
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
}

// PRODUCTION BUG (attachment_state.cc, DeriveAttachState: error_attaching counts for nothing,
// together with attachments_api.cc, Connect: an error_attaching attachment may be connected
// again). A failed export leaves the non-multiattach volume available while its attachment
// stays live and retryable, so a second host reserves it, and both attachments then attach.
// (Cinder's _get_statuses_from_attachments also ignores error_attaching; Cinder documents that
// such a volume shows available with attachments.)
TEST_F(AttachmentsApiTest, AFailedExportDoesNotLetASecondHostAttachTheVolume) {
  std::string volume = AvailableVolume();
  std::string first = Reserve(volume);
  ASSERT_TRUE(driver_.DeleteVolume(volume, NewUuid(), 0).has_value());
  ExpectFault(Update(first, Connector()), 500, "computeFault");
  ASSERT_TRUE(driver_.CreateVolume(ports::VolumeSpec{volume, 1, NewUuid(), 0, {}}).has_value());

  ports::HttpResponse second = CreateAttachment(volume);
  if (second.status == 200) {
    std::string second_id = Body(second)["attachment"].value("id", "");
    json other_host = Connector();
    other_host["host"] = "compute-2";
    Update(first, Connector());
    Complete(first);
    Update(second_id, other_host);
    Complete(second_id);
  }

  int attached = 0;
  for (const ports::Row& row : AttachmentRows(volume)) {
    attached += TextColumn(row, "status") == "attached" ? 1 : 0;
  }
  EXPECT_LE(attached, 1) << "a non-multiattach volume is attached to two hosts";
  ExpectFault(second, 400, "badRequest");
}

TEST_F(AttachmentsApiTest, ListsShowSummariesAndDetailsFilteredByVolume) {
  std::string volume = AvailableVolume();
  std::string other = AvailableVolume();
  std::string id = Reserve(volume);
  std::string other_id = Reserve(other);

  ports::HttpResponse summary = Send(Request("GET", AttachmentsPath()));
  ASSERT_EQ(summary.status, 200) << summary.body;
  ASSERT_EQ(Body(summary)["attachments"].size(), 2u);
  EXPECT_FALSE(Body(summary)["attachments"][0].contains("connection_info"));

  ports::HttpRequest filtered = Request("GET", AttachmentsPath() + "/detail");
  filtered.query = {{"volume_id", volume}};
  ports::HttpResponse detail = Send(filtered);
  ASSERT_EQ(detail.status, 200) << detail.body;
  json items = Body(detail)["attachments"];
  ASSERT_EQ(items.size(), 1u) << items.dump();
  EXPECT_EQ(items[0].value("id", ""), id);
  EXPECT_TRUE(items[0].contains("connection_info"));
  EXPECT_NE(id, other_id);
}

// ---------------------------------------------------------------------------------------------
// Delete

TEST_F(AttachmentsApiTest, DeleteOfAnExportedAttachmentTerminatesTheConnection) {
  std::string volume = AvailableVolume();
  std::string id = Attach(volume);
  ASSERT_EQ(driver_.CallCount("terminate_connection"), 0);

  ports::HttpResponse response = Send(Request("DELETE", AttachmentPath(id)));

  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Body(response), (json{{"attachments", json::array()}}));
  EXPECT_EQ(driver_.CallCount("terminate_connection"), 1);
  ports::Row row = AttachmentRow(id);
  EXPECT_EQ(TextColumn(row, "status"), "detached");
  EXPECT_EQ(IntegerColumn(row, "deleted"), 1);
  EXPECT_TRUE(TextColumn(row, "detach_time").has_value());
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
  EXPECT_EQ(VolumeView(volume)["attachments"], json::array());
  ExpectFault(Send(Request("GET", AttachmentPath(id))), 404, "itemNotFound");
}

TEST_F(AttachmentsApiTest, DeleteOfAReservationEndsItWithoutTheBackEnd) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);

  ports::HttpResponse response = Send(Request("DELETE", AttachmentPath(id)));

  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Body(response), (json{{"attachments", json::array()}}));
  EXPECT_EQ(driver_.CallCount("terminate_connection"), 0);
  EXPECT_EQ(JobsPublished(), 0u);
  EXPECT_EQ(IntegerColumn(AttachmentRow(id), "deleted"), 1);
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
}

TEST_F(AttachmentsApiTest, DeleteAnswersWithTheAttachmentsLeft) {
  std::string volume = AvailableVolume(/*multiattach=*/true);
  std::string attached = Attach(volume);
  std::string reserved = Reserve(volume);

  ports::HttpResponse response = Send(Request("DELETE", AttachmentPath(attached)));

  ASSERT_EQ(response.status, 200) << response.body;
  json items = Body(response)["attachments"];
  ASSERT_EQ(items.size(), 1u) << items.dump();
  EXPECT_EQ(items[0].value("id", ""), reserved);
  EXPECT_EQ(items[0].value("status", ""), "reserved");
  EXPECT_EQ(items[0].value("volume_id", ""), volume);
  EXPECT_EQ(items[0].value("instance", ""), kInstance);
  ExpectVolume(volume, VolumeStatus::kReserved, "reserved");

  response = Send(Request("DELETE", AttachmentPath(reserved)));
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Body(response), (json{{"attachments", json::array()}}));
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
  EXPECT_EQ(driver_.CallCount("terminate_connection"), 1);
}

TEST_F(AttachmentsApiTest, AVolumeWithALiveAttachmentCannotBeDeleted) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);

  ports::HttpResponse refused = Send(Request("DELETE", VolumePath(volume)));

  ExpectFault(refused, 400, "badRequest");
  EXPECT_NE(FaultMessage(refused).find("attach"), std::string::npos) << refused.body;
  ExpectVolume(volume, VolumeStatus::kReserved, "reserved");

  // Attached: refused too.
  ASSERT_EQ(Update(id, Connector()).status, 200);
  ASSERT_EQ(Complete(id).status, 204);
  refused = Send(Request("DELETE", VolumePath(volume)));
  ExpectFault(refused, 400, "badRequest");
  EXPECT_NE(FaultMessage(refused).find("attach"), std::string::npos) << refused.body;
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");

  ASSERT_EQ(Send(Request("DELETE", AttachmentPath(id))).status, 200);
  EXPECT_EQ(Send(Request("DELETE", VolumePath(volume))).status, 202);
}

// An attachment whose export failed keeps the volume reserved (a second host cannot take it),
// and the delete's guard sees the attachment too.
TEST_F(AttachmentsApiTest, AVolumeWithAFailedAttachmentStaysReservedAndCannotBeDeleted) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);
  auto failed = store_.ConditionalUpdate(
      ports::Table::kAttachments, id, {{"status", "error_attaching"}}, {}, {});
  ASSERT_TRUE(failed.has_value() && failed->has_value());
  ASSERT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
  ExpectVolume(volume, VolumeStatus::kReserved, "reserved");

  ports::HttpResponse refused = Send(Request("DELETE", VolumePath(volume)));

  ExpectFault(refused, 400, "badRequest");
  EXPECT_NE(FaultMessage(refused).find("attach"), std::string::npos) << refused.body;
  EXPECT_EQ(IntegerColumn(VolumeRow(volume), "deleted"), 0);
}

// ---------------------------------------------------------------------------------------------
// Legacy volume actions

TEST_F(AttachmentsApiTest, LegacyAttachAndDetachSequence) {
  std::string volume = AvailableVolume();

  ASSERT_EQ(Action(volume, {{"os-reserve", {}}}).status, 202);
  ExpectVolume(volume, VolumeStatus::kAttaching, "attaching");
  EXPECT_EQ(VolumeView(volume).value("status", ""), "attaching");
  ASSERT_EQ(AttachmentRows(volume).size(), 1u);

  ports::HttpResponse initialized =
      Action(volume, {{"os-initialize_connection", {{"connector", Connector()}}}});
  ASSERT_EQ(initialized.status, 200) << initialized.body;
  EXPECT_EQ(Body(initialized),
            (json{{"connection_info",
                   {{"driver_volume_type", "memory"}, {"data", {{"volume_id", volume}}}}}}));
  EXPECT_EQ(driver_.CallCount("initialize_connection"), 1);
  ASSERT_EQ(AttachmentRows(volume).size(), 1u) << "initialize made a second attachment";

  ports::HttpResponse attached = Action(
      volume,
      {{"os-attach",
        {{"instance_uuid", std::string(kInstance)}, {"mountpoint", "/dev/vdc"}, {"mode", "rw"}}}});
  ASSERT_EQ(attached.status, 202) << attached.body;
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
  json view = VolumeView(volume);
  EXPECT_EQ(view.value("status", ""), "in-use");
  ASSERT_EQ(view["attachments"].size(), 1u) << view.dump();
  EXPECT_EQ(view["attachments"][0].value("device", ""), "/dev/vdc");
  EXPECT_EQ(view["attachments"][0].value("server_id", ""), kInstance);

  ASSERT_EQ(Action(volume, {{"os-begin_detaching", {}}}).status, 202);
  EXPECT_EQ(TextColumn(VolumeRow(volume), "status"), "detaching");

  ports::HttpResponse terminated =
      Action(volume, {{"os-terminate_connection", {{"connector", Connector()}}}});
  ASSERT_EQ(terminated.status, 202) << terminated.body;
  EXPECT_EQ(driver_.CallCount("terminate_connection"), 1);

  ASSERT_EQ(Action(volume, {{"os-detach", {}}}).status, 202);
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
  EXPECT_TRUE(AttachmentRows(volume).empty());
  EXPECT_EQ(VolumeView(volume)["attachments"], json::array());
}

TEST_F(AttachmentsApiTest, LegacyUnreserveEndsTheReservation) {
  std::string volume = AvailableVolume();
  ASSERT_EQ(Action(volume, {{"os-reserve", nullptr}}).status, 202);
  ExpectVolume(volume, VolumeStatus::kAttaching, "attaching");
  // A second reserve of the non-multiattach volume is refused.
  ExpectFault(Action(volume, {{"os-reserve", {}}}), 400, "badRequest");

  ASSERT_EQ(Action(volume, {{"os-unreserve", {}}}).status, 202);

  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
  EXPECT_TRUE(AttachmentRows(volume).empty());
  EXPECT_EQ(driver_.CallCount("terminate_connection"), 0);
  EXPECT_EQ(JobsPublished(), 0u);
  // Unreserve of a volume that is not reserved is a no-op.
  EXPECT_EQ(Action(volume, {{"os-unreserve", {}}}).status, 202);
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
}

TEST_F(AttachmentsApiTest, LegacyRollDetachingPutsTheVolumeBackInUse) {
  std::string volume = AvailableVolume();
  ExpectFault(Action(volume, {{"os-begin_detaching", {}}}), 400, "badRequest");
  std::string id = Attach(volume);

  ASSERT_EQ(Action(volume, {{"os-begin_detaching", {}}}).status, 202);
  EXPECT_EQ(TextColumn(VolumeRow(volume), "status"), "detaching");
  ASSERT_EQ(Action(volume, {{"os-roll_detaching", {}}}).status, 202);

  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
  EXPECT_EQ(TextColumn(AttachmentRow(id), "status"), "attached");
  EXPECT_EQ(driver_.CallCount("terminate_connection"), 0);
  // Rolling back a detach that is not under way changes nothing.
  ASSERT_EQ(Action(volume, {{"os-roll_detaching", {}}}).status, 202);
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
}

// ---------------------------------------------------------------------------------------------
// No volume node: the bounded wait

TEST_F(AttachmentsApiTest, WithoutAVolumeNodeTheUpdateTimesOutAndARetryAfterANodeStartedWorks) {
  StopVolumeNode();
  AttachmentsApi quick(
      store_, publisher_, system_clock_, FastPolling(std::chrono::milliseconds(50)));
  ApiService quick_service(volumes_, snapshots_, quick, backups_, services_api_, types_);
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);
  auto update = [&] {
    return quick_service.Handle(Request(
        "PUT", AttachmentPath(id), json{{"attachment", {{"connector", Connector()}}}}.dump()));
  };

  ExpectFault(update(), 503, "serviceUnavailable");

  EXPECT_EQ(TextColumn(AttachmentRow(id), "status"), "attaching_queued");
  EXPECT_EQ(AttachmentView(id).value("status", ""), "attaching");
  ExpectVolume(volume, VolumeStatus::kAttaching, "attaching");
  EXPECT_EQ(driver_.CallCount("initialize_connection"), 0);
  EXPECT_EQ(broker_->ReadyCount(kTopic), 1u) << "the job should stay queued for a node";

  StartVolumeNode();
  // The node takes the queued job and exports the volume.
  ASSERT_TRUE(WaitUntil([&] { return TextColumn(AttachmentRow(id), "status") == "attaching"; }));
  ports::HttpResponse retried = update();
  ASSERT_EQ(retried.status, 200) << retried.body;
  EXPECT_EQ(Body(retried)["attachment"]["connection_info"].value("driver_volume_type", ""),
            "memory");
  ASSERT_EQ(Complete(id).status, 204);
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
}

// PRODUCTION BUG (attachments_api.cc, Connect: the CAS accepts only reserved / attaching /
// error_attaching): the 503 says "the job stays queued, retry the request" and the header says
// a request that timed out "can simply be sent again", but a retry while the job is still
// queued finds the attachment attaching_queued and is refused with 409.
TEST_F(AttachmentsApiTest, ARetryWhileTheAttachJobIsStillQueuedWaitsAgain) {
  StopVolumeNode();
  AttachmentsApi quick(
      store_, publisher_, system_clock_, FastPolling(std::chrono::milliseconds(50)));
  ApiService quick_service(volumes_, snapshots_, quick, backups_, services_api_, types_);
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);
  auto update = [&] {
    return quick_service.Handle(Request(
        "PUT", AttachmentPath(id), json{{"attachment", {{"connector", Connector()}}}}.dump()));
  };
  ExpectFault(update(), 503, "serviceUnavailable");

  ports::HttpResponse retried = update();

  EXPECT_NE(retried.status, 409) << retried.body;
  ExpectFault(retried, 503, "serviceUnavailable");
}

// PRODUCTION BUG (attachments_api.cc, Reserve: a losing reservation withdraws its attachment row
// without refreshing the volume's derived status). A losing request's row is live between its
// insert and its withdrawal; a refresh in that window (here: the winner's attachment deleted)
// counts it, so the volume stays reserved once the loser withdrew: no live attachment, yet the
// volume can be neither reserved nor deleted.
TEST_F(AttachmentsApiTest, ALosingReservationDoesNotLeaveTheVolumeReserved) {
  std::string volume = AvailableVolume();
  HookedStore hooked(store_);
  AttachmentsApi loser_api(hooked, publisher_, system_clock_, FastPolling(kWaitBound));
  ApiService loser(volumes_, snapshots_, loser_api, backups_, services_api_, types_);
  bool interleaved = false;
  hooked.SetHook([&](HookedStore::Call call, ports::Table table) {
    // The loser read the volume available and inserted its row; before its reservation CAS,
    // the winner reserves and lets go again.
    if (call == HookedStore::Call::kConditionalUpdate && table == ports::Table::kVolumes &&
        !interleaved) {
      interleaved = true;
      std::string winner = Reserve(volume);
      ASSERT_FALSE(winner.empty());
      ASSERT_EQ(Send(Request("DELETE", AttachmentPath(winner))).status, 200);
    }
  });

  ports::HttpResponse response = loser.Handle(Request(
      "POST",
      AttachmentsPath(),
      json{{"attachment", {{"volume_uuid", volume}, {"instance_uuid", NewUuid()}}}}.dump()));

  ASSERT_TRUE(interleaved);
  ExpectFault(response, 400, "badRequest");
  EXPECT_TRUE(AttachmentRows(volume).empty());
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
}

// ---------------------------------------------------------------------------------------------
// Projects: an admin acts on every project's attachments, anyone else on their own project's only

TEST_F(AttachmentsApiTest, AnAdminOfAnotherProjectAttachesShowsCompletesAndDeletes) {
  std::string volume = AvailableVolume();
  const RequestContext admin = Context(/*is_admin=*/true, kOtherProject);

  ports::HttpResponse created = CreateAs(admin, volume);
  ASSERT_EQ(created.status, 200) << created.body;
  std::string id = Body(created)["attachment"].value("id", "");
  // As in Cinder, an attachment's project is its volume's: the owner sees it and can end it.
  EXPECT_EQ(TextColumn(AttachmentRow(id), "project_id"), kProject);
  ExpectVolume(volume, VolumeStatus::kReserved, "reserved");

  ports::HttpResponse shown = attachments_.Show(admin, id);
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["attachment"].value("volume_id", ""), volume);

  ports::HttpResponse exported = attachments_.Update(
      admin,
      Request("PUT", AttachmentPath(id), json{{"attachment", {{"connector", Connector()}}}}.dump()),
      id);
  ASSERT_EQ(exported.status, 200) << exported.body;
  EXPECT_EQ(Body(exported)["attachment"].value("status", ""), "attaching");

  ports::HttpResponse completed = attachments_.Action(
      admin, Request("POST", AttachmentPath(id) + "/action", R"({"os-complete": {}})"), id);
  EXPECT_EQ(completed.status, 204) << completed.body;
  ExpectVolume(volume, VolumeStatus::kInUse, "attached");
  EXPECT_EQ(AttachmentView(id).value("status", ""), "attached") << "the owner sees it";

  ports::HttpResponse deleted = attachments_.Delete(admin, id);
  ASSERT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(Body(deleted), (json{{"attachments", json::array()}}));
  EXPECT_EQ(IntegerColumn(AttachmentRow(id), "deleted"), 1);
  ExpectVolume(volume, VolumeStatus::kAvailable, "detached");
  EXPECT_EQ(driver_.CallCount("terminate_connection"), 1);
}

TEST_F(AttachmentsApiTest, AMemberOfAnotherProjectGetsNotFoundForEverythingAndChangesNothing) {
  std::string volume = AvailableVolume();
  std::string id = Reserve(volume);
  ports::Row volume_before = VolumeRow(volume);
  ports::Row attachment_before = AttachmentRow(id);
  const std::size_t rows_before = AttachmentRows(volume, /*include_deleted=*/true).size();
  const RequestContext member = Context(/*is_admin=*/false, kOtherProject);

  ports::HttpResponse shown = attachments_.Show(member, id);
  ExpectFault(shown, 404, "itemNotFound");
  EXPECT_EQ(FaultMessage(shown),
            "Volume attachment could not be found with filter: attachment_id = " + id + ".")
      << "the same answer as for an attachment that does not exist";
  ExpectFault(
      attachments_.Update(
          member,
          Request(
              "PUT", AttachmentPath(id), json{{"attachment", {{"connector", Connector()}}}}.dump()),
          id),
      404,
      "itemNotFound");
  ExpectFault(
      attachments_.Action(
          member, Request("POST", AttachmentPath(id) + "/action", R"({"os-complete": {}})"), id),
      404,
      "itemNotFound");
  ExpectFault(attachments_.Delete(member, id), 404, "itemNotFound");
  ExpectFault(CreateAs(member, volume), 404, "itemNotFound");
  ExpectFault(
      attachments_.LegacyAction(member, "os-reserve", json::object(), volume), 404, "itemNotFound");
  ExpectFault(attachments_.LegacyAction(
                  member, "os-initialize_connection", {{"connector", Connector()}}, volume),
              404,
              "itemNotFound");

  EXPECT_EQ(VolumeRow(volume), volume_before);
  EXPECT_EQ(AttachmentRow(id), attachment_before);
  EXPECT_EQ(AttachmentRows(volume, /*include_deleted=*/true).size(), rows_before);
  EXPECT_EQ(JobsPublished(), 0u);
  EXPECT_EQ(driver_.CallCount("initialize_connection"), 0);
}

TEST_F(AttachmentsApiTest, ListsShowOtherProjectsOnlyToAnAdminAskingForAllTenants) {
  std::string mine = Reserve(AvailableVolume());
  ports::HttpResponse created =
      CreateAs(Context(/*is_admin=*/false, kOtherProject),
               AvailableVolume(false, VolumeStatus::kAvailable, kOtherProject));
  ASSERT_EQ(created.status, 200) << created.body;
  std::string theirs = Body(created)["attachment"].value("id", "");
  // The ids the summary list shows, checked against the detail list.
  auto listed = [&](const RequestContext& context,
                    const std::vector<std::pair<std::string, std::string>>& query) {
    std::set<std::string> ids;
    for (bool detail : {false, true}) {
      ports::HttpRequest request = Request("GET", AttachmentsPath());
      request.query = query;
      ports::HttpResponse response = attachments_.List(context, request, detail);
      EXPECT_EQ(response.status, 200) << response.body;
      // Named: a range over a member of a temporary would dangle.
      const json body = Body(response);
      std::set<std::string> shown;
      for (const json& item : body["attachments"]) {
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
  const RequestContext member = Context(/*is_admin=*/false);
  const RequestContext admin = Context(/*is_admin=*/true);
  const std::set<std::string> own = {mine};
  const std::vector<std::pair<std::string, std::string>> all = {{"all_tenants", "1"}};
  const std::vector<std::pair<std::string, std::string>> all_of_theirs = {
      {"all_tenants", "1"}, {"project_id", std::string(kOtherProject)}};
  const std::vector<std::pair<std::string, std::string>> of_theirs = {
      {"project_id", std::string(kOtherProject)}};

  EXPECT_EQ(listed(member, {}), own);
  EXPECT_EQ(listed(member, all), own) << "all_tenants is for admins only";
  EXPECT_EQ(listed(member, all_of_theirs), own);
  EXPECT_EQ(listed(member, of_theirs), own);
  EXPECT_EQ(listed(admin, {}), own) << "without all_tenants an admin lists its own project";
  EXPECT_EQ(listed(admin, of_theirs), own) << "project_id filters only with all_tenants";
  EXPECT_EQ(listed(admin, all), (std::set<std::string>{mine, theirs}));
  EXPECT_EQ(listed(admin, all_of_theirs), std::set<std::string>{theirs});
}

}  // namespace
}  // namespace clinker::services
