// Goal: check the Cinder v3 backup API as a client sees it through ApiService::Handle, together
// with the jobs a volume node runs for it: a create answers 202 with the summary and holds the
// volume backing-up until the backup is done (then available, or in-use again for a forced
// backup of an attached volume); the refusals (unknown volume, volume not available, in-use
// without force, a snapshot, an incremental without a full backup) change nothing; an
// incremental stores only the chunks that changed and shows in both views (is_incremental,
// has_dependent_backups); a parent cannot be deleted while an incremental depends on it; a
// restore writes the backup's bytes into a new or an existing volume, refuses a target that is
// too small or not available, and ends error_restoring, naming the chunk, when a stored object
// is corrupt, with the backup available again; os-reset_status and os-force_delete are guarded by
// their policy rules only (admin by default). Projects, as in Cinder: an admin of another project
// shows, updates, restores, resets and deletes a backup and backs up a volume (the new backup, and
// a restore's new volume, being the admin's); a member of another project gets 404 for all of it
// and changes nothing; lists show other projects only to an admin asking with all_tenants.
//
// Method: ApiService over the real API services on a MemoryStateStore and a MemoryBroker. The
// volume node is a real VolumeManager with a FileStorageDriver and a FileBackupStore (1 MiB
// chunks) in a TempDir, because backups read and write the volume through its local path. The
// test runs the node's jobs itself, on its own thread, from a queue session subscribed to the
// back-end's topic (RunJobs), so "before the job" and "after the job" are exact points, with no
// waiting. Volumes are written straight to the store and created in the driver, as the
// scheduler and the volume manager leave them; their data is written and compared through the
// driver's volume files. A FakeClock is advanced after each backup so "the latest backup" is
// well defined. Handlers are called directly with a RequestContext for a non-admin caller or one
// of another project (noauth makes every caller an admin of the token's project).
#include "clinker/services/backups_api.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/backup/file_backup_store.h"
#include "clinker/adapters/file/file_storage_driver.h"
#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_lock_manager.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/base64.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/policy.h"
#include "clinker/domain/status.h"
#include "clinker/services/api_service.h"
#include "clinker/services/attachment_state.h"
#include "clinker/services/volume_manager.h"
#include "clinker/services/volume_record.h"

#include "support/fake_clock.h"
#include "support/recording_job_queue.h"
#include "support/temp_dir.h"

namespace clinker::services {
namespace {

using adapters::FileBackupStore;
using adapters::FileStorageDriver;
using adapters::MemoryBroker;
using adapters::MemoryJobQueue;
using adapters::MemoryLockManager;
using adapters::MemoryStateStore;
using domain::VolumeStatus;
using nlohmann::json;
using test_support::FakeClock;
using test_support::RecordingJobQueue;
using test_support::TempDir;

constexpr std::string_view kProject = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kOtherProject = "fedcba9876543210fedcba9876543210";
constexpr std::string_view kBaseUrl = "http://clinker.test:8776";
constexpr std::string_view kHost = "node1@file#pool";
constexpr std::string_view kTopic = "volume.node1@file";
constexpr std::int64_t kChunk = std::int64_t{1} << 20;
// Every byte the tests write lies in the first kCompared bytes of a volume.
constexpr std::int64_t kCompared = 16 * kChunk;
// Far more jobs than any test queues: a bound for RunJobs.
constexpr int kMaxJobs = 100;

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

// `length` bytes of a recognisable pattern, different for each `seed`.
std::string Pattern(std::size_t length, int seed) {
  std::string data(length, '\0');
  for (std::size_t i = 0; i < length; ++i) {
    data[i] = static_cast<char>(
        'a' + static_cast<int>((i * 7 + static_cast<std::size_t>(seed) * 13) % 26));
  }
  return data;
}

class BackupsApiTest : public ::testing::Test {
 protected:
  BackupsApiTest()
      : broker_(std::make_shared<MemoryBroker>()),
        session_(broker_),
        publisher_(session_),
        consumer_(broker_),
        volumes_(store_, publisher_, clock_, VolumesApiOptions{}),
        snapshots_(store_, publisher_, clock_, SnapshotsApiOptions{}),
        attachments_(store_, publisher_, clock_, AttachmentsApiOptions{}),
        backups_(store_, publisher_, clock_, BackupsApiOptions{}),
        services_api_(store_, clock_, ServicesApiOptions{}),
        types_(store_, clock_, TypesApiOptions{}),
        service_(volumes_, snapshots_, attachments_, backups_, services_api_, types_) {
    FileStorageDriver::Options driver_options;
    driver_options.volume_dir = dir_.path() + "/volumes";
    auto driver = FileStorageDriver::Create(driver_options);
    EXPECT_TRUE(driver.has_value()) << driver.error().ToString();
    if (driver) {
      driver_ = std::move(*driver);
    }
    FileBackupStore::Options store_options;
    store_options.backup_dir = dir_.path() + "/backups";
    store_options.chunk_size_bytes = kChunk;
    auto backup_store = FileBackupStore::Create(store_options);
    EXPECT_TRUE(backup_store.has_value()) << backup_store.error().ToString();
    if (backup_store) {
      backup_store_ = std::move(*backup_store);
    }
    VolumeManagerOptions options;
    options.backup_store = backup_store_.get();
    options.lock_timeout = std::chrono::milliseconds(1000);
    options.final_write_backoff = std::chrono::milliseconds(5);
    if (driver_) {
      manager_ = std::make_unique<VolumeManager>(store_, locks_, *driver_, clock_, options);
    }
    EXPECT_TRUE(consumer_.Subscribe({std::string(kTopic)}).has_value());
  }

  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    ASSERT_NE(manager_, nullptr);
  }

  static std::string ProjectPath() { return "/v3/" + std::string(kProject); }

  static std::string BackupsPath() { return ProjectPath() + "/backups"; }

  static std::string BackupPath(const std::string& id) { return BackupsPath() + "/" + id; }

  static std::string VolumePath(const std::string& id) { return ProjectPath() + "/volumes/" + id; }

  static ports::HttpRequest Request(std::string method,
                                    std::string path,
                                    std::string body = "",
                                    std::string_view version = "3.44") {
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

  ports::HttpResponse Send(const ports::HttpRequest& request) { return service_.Handle(request); }

  // Runs every job queued for the back-end, as its volume node would; returns how many ran.
  int RunJobs() {
    int ran = 0;
    for (; ran < kMaxJobs; ++ran) {
      auto received = consumer_.Receive(std::chrono::milliseconds(0));
      EXPECT_TRUE(received.has_value());
      if (!received || !received->has_value()) {
        break;
      }
      JobOutcome outcome = manager_->Handle(**received);
      EXPECT_EQ(outcome, JobOutcome::kDone) << (*received)->payload;
      EXPECT_TRUE(consumer_.Ack(**received).has_value());
    }
    return ran;
  }

  // A volume as the scheduler and the volume manager leave it: on kHost, in the driver.
  std::string AvailableVolume(std::int64_t size_gib = 1,
                              VolumeStatus status = VolumeStatus::kAvailable,
                              std::string_view project = kProject) {
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = std::string(project);
    volume.user_id = "user";
    volume.status = status;
    volume.size_gib = size_gib;
    volume.name = "vol";
    volume.availability_zone = "nova";
    volume.host = std::string(kHost);
    volume.created_at = FormatTimestamp(clock_.WallNow());
    auto inserted = store_.Insert(ports::Table::kVolumes, VolumeToRow(volume));
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    auto created = driver_->CreateVolume(ports::VolumeSpec{volume.id, size_gib, NewUuid(), 0, {}});
    EXPECT_TRUE(created.has_value()) << created.error().ToString();
    return volume.id;
  }

  // An available volume with one attached attachment: in-use.
  std::string InUseVolume(std::int64_t size_gib = 1) {
    std::string volume = AvailableVolume(size_gib);
    auto attachment = store_.Insert(ports::Table::kAttachments,
                                    {{"id", NewUuid()},
                                     {"project_id", std::string(kProject)},
                                     {"user_id", "user"},
                                     {"volume_id", volume},
                                     {"status", "attached"},
                                     {"created_at", FormatTimestamp(clock_.WallNow())}});
    EXPECT_TRUE(attachment.has_value());
    EXPECT_TRUE(RefreshVolumeAttachState(store_, clock_, volume).has_value());
    EXPECT_EQ(TextColumn(VolumeRow(volume), "status"), "in-use");
    return volume;
  }

  void WriteVolume(const std::string& volume_id, std::int64_t offset, const std::string& data) {
    std::fstream file(driver_->VolumePath(volume_id),
                      std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(file.is_open()) << driver_->VolumePath(volume_id);
    file.seekp(offset);
    file.write(data.data(), static_cast<std::streamsize>(data.size()));
    ASSERT_TRUE(file.good());
  }

  std::string ReadVolume(const std::string& volume_id, std::int64_t length = kCompared) {
    std::ifstream file(driver_->VolumePath(volume_id), std::ios::binary);
    EXPECT_TRUE(file.is_open()) << driver_->VolumePath(volume_id);
    std::string data(static_cast<std::size_t>(length), '\0');
    file.read(data.data(), static_cast<std::streamsize>(length));
    EXPECT_EQ(file.gcount(), length);
    return data;
  }

  std::int64_t VolumeFileSize(const std::string& volume_id) {
    std::ifstream file(driver_->VolumePath(volume_id), std::ios::binary | std::ios::ate);
    return static_cast<std::int64_t>(file.tellg());
  }

  ports::HttpResponse CreateBackup(const std::string& volume_id,
                                   const json& extra = json::object()) {
    json spec = {{"volume_id", volume_id}, {"name", "backup-of-" + volume_id}};
    spec.update(extra);
    ports::HttpResponse response =
        Send(Request("POST", BackupsPath(), json{{"backup", spec}}.dump()));
    clock_.Advance(std::chrono::seconds(1));
    return response;
  }

  // Creates a backup (as `context`, else as the noauth caller) and runs its job: its id.
  std::string MadeBackup(const std::string& volume_id,
                         const json& extra = json::object(),
                         const std::optional<RequestContext>& context = std::nullopt) {
    ports::HttpResponse response;
    if (context) {
      json spec = {{"volume_id", volume_id}};
      spec.update(extra);
      response =
          backups_.Create(*context, Request("POST", BackupsPath(), json{{"backup", spec}}.dump()));
      clock_.Advance(std::chrono::seconds(1));
    } else {
      response = CreateBackup(volume_id, extra);
    }
    EXPECT_EQ(response.status, 202) << response.body;
    EXPECT_EQ(RunJobs(), 1);
    std::string id = Body(response)["backup"].value("id", "");
    EXPECT_EQ(TextColumn(BackupRow(id), "status"), "available")
        << TextColumn(BackupRow(id), "status_reason").value_or("");
    return id;
  }

  ports::HttpResponse Restore(const std::string& backup_id, const json& restore) {
    return Send(
        Request("POST", BackupPath(backup_id) + "/restore", json{{"restore", restore}}.dump()));
  }

  ports::Row VolumeRow(const std::string& id) {
    auto row = store_.Get(ports::Table::kVolumes, id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  ports::Row BackupRow(const std::string& id) {
    auto row = store_.Get(ports::Table::kBackups, id);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : ports::Row{};
  }

  std::size_t BackupRowCount() {
    ports::ListQuery query;
    query.include_deleted = true;
    auto rows = store_.List(ports::Table::kBackups, query);
    EXPECT_TRUE(rows.has_value());
    return rows ? rows->size() : 0;
  }

  json BackupView(const std::string& id) {
    ports::HttpResponse response = Send(Request("GET", BackupPath(id)));
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response)["backup"];
  }

  json VolumeView(const std::string& id) {
    ports::HttpResponse response = Send(Request("GET", VolumePath(id)));
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response)["volume"];
  }

  std::string VolumeStatusOf(const std::string& id) {
    return TextColumn(VolumeRow(id), "status").value_or("");
  }

  std::size_t JobsPublished() const { return publisher_.PublishedTopics().size(); }

  TempDir dir_{"clinker_backups_api"};
  MemoryStateStore store_;
  FakeClock clock_;
  MemoryLockManager locks_;
  std::unique_ptr<FileStorageDriver> driver_;
  std::unique_ptr<FileBackupStore> backup_store_;
  std::unique_ptr<VolumeManager> manager_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue session_;
  RecordingJobQueue publisher_;
  MemoryJobQueue consumer_;
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

TEST_F(BackupsApiTest, CreateAnswersTheSummaryAndHoldsTheVolumeBackingUpUntilTheJobIsDone) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));

  ports::HttpResponse response = CreateBackup(volume);

  ASSERT_EQ(response.status, 202) << response.body;
  json summary = Body(response)["backup"];
  std::string id = summary.value("id", "");
  EXPECT_TRUE(IsUuid(id)) << id;
  EXPECT_EQ(summary.size(), 3u) << summary.dump();
  EXPECT_EQ(summary.value("name", ""), "backup-of-" + volume);
  ASSERT_TRUE(summary["links"].is_array());
  EXPECT_EQ(summary["links"][0].value("href", ""), std::string(kBaseUrl) + BackupPath(id));
  EXPECT_EQ(VolumeStatusOf(volume), "backing-up");
  EXPECT_EQ(VolumeView(volume).value("status", ""), "backing-up");
  EXPECT_EQ(BackupView(id).value("status", ""), "creating");
  EXPECT_EQ(publisher_.PublishedTopics(), std::vector<std::string>{std::string(kTopic)});
  // Backing up, the volume cannot be deleted.
  ExpectFault(Send(Request("DELETE", VolumePath(volume))), 400, "badRequest");

  ASSERT_EQ(RunJobs(), 1);

  EXPECT_EQ(VolumeStatusOf(volume), "available");
  json view = BackupView(id);
  EXPECT_EQ(view.value("status", ""), "available");
  EXPECT_EQ(view.value("volume_id", ""), volume);
  EXPECT_EQ(view.value("size", 0), 1);
  EXPECT_EQ(view.value("object_count", -1), 1);
  EXPECT_FALSE(view.value("is_incremental", true));
  EXPECT_FALSE(view.value("has_dependent_backups", true));
  EXPECT_TRUE(view["fail_reason"].is_null());
  EXPECT_TRUE(view["snapshot_id"].is_null());
  EXPECT_EQ(view.value("os-backup-project-attr:project_id", ""), kProject);
}

TEST_F(BackupsApiTest, AnInUseVolumeNeedsForceAndIsInUseAgainAfterTheBackup) {
  std::string volume = InUseVolume();
  ports::Row before = VolumeRow(volume);

  ports::HttpResponse refused = CreateBackup(volume);
  ExpectFault(refused, 400, "badRequest");
  EXPECT_NE(FaultMessage(refused).find("force"), std::string::npos) << refused.body;
  EXPECT_EQ(VolumeRow(volume), before);
  EXPECT_EQ(BackupRowCount(), 0u);

  ports::HttpResponse forced = CreateBackup(volume, {{"force", true}});
  ASSERT_EQ(forced.status, 202) << forced.body;
  EXPECT_EQ(VolumeStatusOf(volume), "backing-up");
  ASSERT_EQ(RunJobs(), 1);

  EXPECT_EQ(VolumeStatusOf(volume), "in-use");
  EXPECT_EQ(TextColumn(VolumeRow(volume), "attach_status"), "attached");
  EXPECT_EQ(BackupView(Body(forced)["backup"].value("id", "")).value("status", ""), "available");
}

TEST_F(BackupsApiTest, RefusedCreatesChangeNothing) {
  std::string in_error = AvailableVolume(1, VolumeStatus::kError);
  std::string reserved = AvailableVolume(1, VolumeStatus::kReserved);
  std::string available = AvailableVolume();
  ports::Row in_error_before = VolumeRow(in_error);
  ports::Row reserved_before = VolumeRow(reserved);
  ports::Row available_before = VolumeRow(available);

  ExpectFault(CreateBackup(NewUuid()), 404, "itemNotFound");
  ExpectFault(CreateBackup(in_error), 400, "badRequest");
  ExpectFault(CreateBackup(reserved, {{"force", true}}), 400, "badRequest");
  ExpectFault(CreateBackup(available, {{"snapshot_id", NewUuid()}}), 404, "itemNotFound");
  ExpectFault(CreateBackup(available, {{"snapshot_id", 7}}), 400, "badRequest");
  ports::HttpResponse no_parent = CreateBackup(available, {{"incremental", true}});
  ExpectFault(no_parent, 400, "badRequest");
  EXPECT_NE(FaultMessage(no_parent).find("incremental"), std::string::npos) << no_parent.body;
  ExpectFault(
      Send(Request("POST", BackupsPath(), R"({"backup": {"name": "x"}})")), 400, "badRequest");

  EXPECT_EQ(VolumeRow(in_error), in_error_before);
  EXPECT_EQ(VolumeRow(reserved), reserved_before);
  EXPECT_EQ(VolumeRow(available), available_before);
  EXPECT_EQ(BackupRowCount(), 0u);
  EXPECT_EQ(JobsPublished(), 0u);
}

TEST_F(BackupsApiTest, ABackupOfASnapshotHoldsTheSnapshotsBytesAndLeavesTheVolumeAlone) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 10, Pattern(6000, 1));
  ports::HttpResponse snapshotted = Send(Request(
      "POST", ProjectPath() + "/snapshots", json{{"snapshot", {{"volume_id", volume}}}}.dump()));
  ASSERT_EQ(snapshotted.status, 202) << snapshotted.body;
  const std::string snapshot = Body(snapshotted)["snapshot"].value("id", "");
  ASSERT_EQ(RunJobs(), 1);
  const std::string snapshot_path = ProjectPath() + "/snapshots/" + snapshot;
  auto snapshot_status = [&] {
    return Body(Send(Request("GET", snapshot_path)))["snapshot"].value("status", "");
  };
  ASSERT_EQ(snapshot_status(), "available");
  const std::string expected = ReadVolume(volume);
  WriteVolume(volume, 10, Pattern(6000, 9));  // The volume changes after the snapshot.

  // The snapshot must be the volume's.
  std::string other = AvailableVolume();
  ports::HttpResponse mismatched = CreateBackup(other, {{"snapshot_id", snapshot}});
  ExpectFault(mismatched, 400, "badRequest");
  EXPECT_NE(FaultMessage(mismatched).find("does not match"), std::string::npos) << mismatched.body;
  EXPECT_EQ(BackupRowCount(), 0u);

  ports::HttpResponse response = CreateBackup(volume, {{"snapshot_id", snapshot}});
  ASSERT_EQ(response.status, 202) << response.body;
  const std::string backup = Body(response)["backup"].value("id", "");
  // The snapshot is read, not the volume: the volume stays available.
  EXPECT_EQ(VolumeStatusOf(volume), "available");
  EXPECT_EQ(snapshot_status(), "backing-up");
  // Backing up, the snapshot can neither be deleted nor backed up again.
  ExpectFault(Send(Request("DELETE", snapshot_path)), 400, "badRequest");
  ExpectFault(CreateBackup(volume, {{"snapshot_id", snapshot}}), 400, "badRequest");
  EXPECT_EQ(BackupRowCount(), 1u);

  ASSERT_EQ(RunJobs(), 1);

  EXPECT_EQ(snapshot_status(), "available");
  EXPECT_EQ(VolumeStatusOf(volume), "available");
  json view = BackupView(backup);
  EXPECT_EQ(view.value("status", ""), "available") << view.dump();
  EXPECT_EQ(view.value("snapshot_id", ""), snapshot);
  EXPECT_EQ(view.value("volume_id", ""), volume);
  // The data is as old as the snapshot.
  EXPECT_EQ(view.value("data_timestamp", ""),
            Body(Send(Request("GET", snapshot_path)))["snapshot"].value("created_at", "x"));
  // The temporary volume the backup read the snapshot through is gone.
  EXPECT_FALSE(std::filesystem::exists(driver_->VolumePath(backup)));

  ports::HttpResponse restored = Restore(backup, json{{"volume_id", nullptr}});
  ASSERT_EQ(restored.status, 202) << restored.body;
  const std::string target = Body(restored)["restore"].value("volume_id", "");
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(VolumeStatusOf(target), "available");
  EXPECT_TRUE(ReadVolume(target) == expected) << "the restored bytes are not the snapshot's";
}

// ---------------------------------------------------------------------------------------------
// Incremental backups

TEST_F(BackupsApiTest, AnIncrementalStoresOnlyTheChunksThatChanged) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(5000, 1));
  WriteVolume(volume, 3 * kChunk + 100, Pattern(3000, 2));
  std::string full = MadeBackup(volume);
  EXPECT_EQ(IntegerColumn(BackupRow(full), "object_count"), 2);

  WriteVolume(volume, 3 * kChunk + 100, Pattern(3000, 3));  // Chunk 3 changes.
  WriteVolume(volume, 7 * kChunk, Pattern(100, 4));         // Chunk 7 gets data.
  std::string incremental = MadeBackup(volume, {{"incremental", true}});
  EXPECT_EQ(IntegerColumn(BackupRow(incremental), "object_count"), 2);
  EXPECT_EQ(TextColumn(BackupRow(incremental), "parent_id"), full);

  std::string unchanged = MadeBackup(volume, {{"incremental", true}});
  EXPECT_EQ(IntegerColumn(BackupRow(unchanged), "object_count"), 0);
  EXPECT_EQ(TextColumn(BackupRow(unchanged), "parent_id"), incremental);

  json full_view = BackupView(full);
  EXPECT_FALSE(full_view.value("is_incremental", true));
  EXPECT_TRUE(full_view.value("has_dependent_backups", false));
  json incremental_view = BackupView(incremental);
  EXPECT_TRUE(incremental_view.value("is_incremental", false));
  EXPECT_TRUE(incremental_view.value("has_dependent_backups", false));
  EXPECT_EQ(incremental_view.value("object_count", -1), 2);
  json unchanged_view = BackupView(unchanged);
  EXPECT_TRUE(unchanged_view.value("is_incremental", false));
  EXPECT_FALSE(unchanged_view.value("has_dependent_backups", true));

  // The newest incremental restores the newest data, through its chain.
  std::string expected = ReadVolume(volume);
  ports::HttpResponse restored = Restore(unchanged, json{{"volume_id", nullptr}});
  ASSERT_EQ(restored.status, 202) << restored.body;
  ASSERT_EQ(RunJobs(), 1);
  std::string target = Body(restored)["restore"].value("volume_id", "");
  EXPECT_EQ(VolumeStatusOf(target), "available");
  EXPECT_TRUE(ReadVolume(target) == expected) << "the restored bytes differ";
}

TEST_F(BackupsApiTest, AParentWithAnIncrementalCannotBeDeleted) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));
  std::string full = MadeBackup(volume);
  std::string incremental = MadeBackup(volume, {{"incremental", true}});

  ports::HttpResponse refused = Send(Request("DELETE", BackupPath(full)));

  ExpectFault(refused, 400, "badRequest");
  EXPECT_NE(FaultMessage(refused).find("Incremental"), std::string::npos) << refused.body;
  EXPECT_EQ(TextColumn(BackupRow(full), "status"), "available");
  EXPECT_EQ(JobsPublished(), 2u) << "two creates and nothing else";
  EXPECT_TRUE(BackupView(incremental).value("is_incremental", false));
}

TEST_F(BackupsApiTest, DeletingTheIncrementalRemovesItFromTheStoreAndTheParentsView) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));
  std::string full = MadeBackup(volume);
  std::string incremental = MadeBackup(volume, {{"incremental", true}});

  ports::HttpResponse deleted = Send(Request("DELETE", BackupPath(incremental)));
  ASSERT_EQ(deleted.status, 202) << deleted.body;
  EXPECT_EQ(BackupView(incremental).value("status", ""), "deleting");
  ASSERT_EQ(RunJobs(), 1);

  EXPECT_EQ(TextColumn(BackupRow(incremental), "status"), "deleted");
  EXPECT_FALSE(backup_store_->DescribeBackup(incremental).has_value());
  EXPECT_TRUE(backup_store_->DescribeBackup(full).has_value());
}

// PRODUCTION BUG (volume_manager.cc, FinalValues: `deleted` = 1 is set for delete_volume,
// delete_snapshot and detach_volume only, not for delete_backup). A deleted backup keeps
// deleted = 0: it still shows (status "deleted") in show and list, and it is still a live row
// for the parent_id guard, so its parent can never be deleted.
TEST_F(BackupsApiTest, DeletingTheIncrementalThenTheParentWorks) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));
  std::string full = MadeBackup(volume);
  std::string incremental = MadeBackup(volume, {{"incremental", true}});

  ASSERT_EQ(Send(Request("DELETE", BackupPath(incremental))).status, 202);
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(IntegerColumn(BackupRow(incremental), "deleted"), 1);
  ExpectFault(Send(Request("GET", BackupPath(incremental))), 404, "itemNotFound");
  EXPECT_FALSE(BackupView(full).value("has_dependent_backups", true));

  ports::HttpResponse parent = Send(Request("DELETE", BackupPath(full)));
  ASSERT_EQ(parent.status, 202) << parent.body;
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(IntegerColumn(BackupRow(full), "deleted"), 1);
  EXPECT_FALSE(backup_store_->DescribeBackup(full).has_value());
}

// ---------------------------------------------------------------------------------------------
// Restore

TEST_F(BackupsApiTest, RestoreToANewVolumeWritesTheBackupsBytes) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 10, Pattern(6000, 1));
  WriteVolume(volume, 5 * kChunk - 50, Pattern(200, 2));  // Across a chunk boundary.
  std::string backup = MadeBackup(volume);
  std::string expected = ReadVolume(volume);
  WriteVolume(volume, 10, Pattern(6000, 9));  // The volume changes after the backup.

  ports::HttpResponse response = Restore(backup, json{{"volume_id", nullptr}, {"name", "back"}});

  ASSERT_EQ(response.status, 202) << response.body;
  json restore = Body(response)["restore"];
  std::string target = restore.value("volume_id", "");
  EXPECT_EQ(restore.value("backup_id", ""), backup);
  EXPECT_EQ(restore.value("volume_name", ""), "back");
  EXPECT_TRUE(IsUuid(target)) << target;
  EXPECT_EQ(VolumeView(target).value("status", ""), "restoring-backup");
  EXPECT_EQ(BackupView(backup).value("status", ""), "restoring");
  ExpectFault(Send(Request("DELETE", BackupPath(backup))), 400, "badRequest");

  ASSERT_EQ(RunJobs(), 1);

  EXPECT_EQ(VolumeStatusOf(target), "available")
      << TextColumn(VolumeRow(target), "status_reason").value_or("");
  EXPECT_EQ(IntegerColumn(VolumeRow(target), "size_gib"), 1);
  EXPECT_EQ(BackupView(backup).value("status", ""), "available");
  EXPECT_EQ(VolumeFileSize(target), VolumeFileSize(volume));
  EXPECT_TRUE(ReadVolume(target) == expected) << "the restored bytes differ";
}

TEST_F(BackupsApiTest, RestoreToAnExistingVolumeReplacesItsBytes) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));
  std::string backup = MadeBackup(volume);
  std::string expected = ReadVolume(volume);
  std::string target = AvailableVolume(2);
  WriteVolume(target, 0, Pattern(8192, 5));
  WriteVolume(target, 9 * kChunk, Pattern(4096, 6));  // A chunk that is zero in the backup.

  ports::HttpResponse response = Restore(backup, json{{"volume_id", target}});

  ASSERT_EQ(response.status, 202) << response.body;
  EXPECT_EQ(Body(response)["restore"].value("volume_id", ""), target);
  EXPECT_EQ(VolumeStatusOf(target), "restoring_queued");
  ASSERT_EQ(RunJobs(), 1);

  EXPECT_EQ(VolumeStatusOf(target), "available")
      << TextColumn(VolumeRow(target), "status_reason").value_or("");
  EXPECT_EQ(IntegerColumn(VolumeRow(target), "size_gib"), 2);
  EXPECT_TRUE(ReadVolume(target) == expected) << "the restored bytes differ";
  EXPECT_EQ(BackupView(backup).value("status", ""), "available");
}

// Cinder keeps the volume's metadata with the backup and puts it on the volume a restore writes:
// all of it on a new volume, merged over an existing volume's own (the backup's values win).
TEST_F(BackupsApiTest, RestoreGivesBackTheBackedUpVolumesMetadata) {
  std::string volume = AvailableVolume();
  auto set_metadata = [&](const std::string& id, const json& metadata) {
    auto updated = store_.ConditionalUpdate(
        ports::Table::kVolumes, id, {{"metadata", metadata.dump()}}, {}, {});
    ASSERT_TRUE(updated && updated->has_value());
  };
  set_metadata(volume, {{"vol-meta1", "value1"}, {"vol-meta2", "value2"}});
  std::string backup = MadeBackup(volume);
  EXPECT_EQ(json::parse(TextColumn(BackupRow(backup), "volume_metadata").value_or("")),
            (json{{"vol-meta1", "value1"}, {"vol-meta2", "value2"}}));
  set_metadata(volume, {{"later", "x"}});  // Changed after the backup: not restored.

  ports::HttpResponse to_new = Restore(backup, json{{"volume_id", nullptr}});
  ASSERT_EQ(to_new.status, 202) << to_new.body;
  std::string restored = Body(to_new)["restore"].value("volume_id", "");
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(VolumeView(restored)["metadata"],
            (json{{"vol-meta1", "value1"}, {"vol-meta2", "value2"}}));

  std::string target = AvailableVolume();
  set_metadata(target, {{"own", "kept"}, {"vol-meta1", "replaced"}});
  ports::HttpResponse to_existing = Restore(backup, json{{"volume_id", target}});
  ASSERT_EQ(to_existing.status, 202) << to_existing.body;
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(VolumeView(target)["metadata"],
            (json{{"own", "kept"}, {"vol-meta1", "value1"}, {"vol-meta2", "value2"}}));
}

TEST_F(BackupsApiTest, RestoreRefusesATargetTooSmallOrNotAvailableAndReleasesTheBackup) {
  std::string volume = AvailableVolume(2);
  std::string backup = MadeBackup(volume);
  std::string small = AvailableVolume(1);
  std::string busy = InUseVolume(2);
  std::string broken = AvailableVolume(2, VolumeStatus::kError);
  ports::Row small_before = VolumeRow(small);
  ports::Row busy_before = VolumeRow(busy);
  ports::Row broken_before = VolumeRow(broken);
  const std::size_t jobs_before = JobsPublished();

  ports::HttpResponse too_small = Restore(backup, json{{"volume_id", small}});
  ExpectFault(too_small, 400, "badRequest");
  EXPECT_NE(FaultMessage(too_small).find("too small"), std::string::npos) << too_small.body;
  ExpectFault(Restore(backup, json{{"volume_id", busy}}), 400, "badRequest");
  ExpectFault(Restore(backup, json{{"volume_id", broken}}), 400, "badRequest");
  ExpectFault(Restore(backup, json{{"volume_id", NewUuid()}}), 404, "itemNotFound");

  EXPECT_EQ(VolumeRow(small), small_before);
  EXPECT_EQ(VolumeRow(busy), busy_before);
  EXPECT_EQ(VolumeRow(broken), broken_before);
  EXPECT_EQ(TextColumn(BackupRow(backup), "status"), "available");
  EXPECT_EQ(JobsPublished(), jobs_before);
}

TEST_F(BackupsApiTest, ACorruptChunkEndsTheRestoreInErrorNamingTheChunk) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));
  WriteVolume(volume, 2 * kChunk, Pattern(4096, 2));
  std::string backup = MadeBackup(volume);
  const std::string object = backup_store_->BackupPath(backup) + "/chunk-2.z";
  {
    std::fstream file(object, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(file.is_open()) << object;
    file.seekg(0, std::ios::end);
    const std::streamoff size = file.tellg();
    ASSERT_GT(size, 4);
    file.seekg(size / 2);
    char byte = 0;
    file.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x5a);
    file.seekp(size / 2);
    file.write(&byte, 1);
    ASSERT_TRUE(file.good());
  }

  ports::HttpResponse response = Restore(backup, json{{"volume_id", nullptr}});
  ASSERT_EQ(response.status, 202) << response.body;
  std::string target = Body(response)["restore"].value("volume_id", "");
  ASSERT_EQ(RunJobs(), 1);

  ports::Row row = VolumeRow(target);
  EXPECT_EQ(TextColumn(row, "status"), "error_restoring");
  std::string reason = TextColumn(row, "status_reason").value_or("");
  EXPECT_NE(reason.find("chunk 2"), std::string::npos) << reason;
  EXPECT_EQ(VolumeView(target).value("status", ""), "error_restoring");
  EXPECT_EQ(TextColumn(BackupRow(backup), "status"), "available");
  EXPECT_FALSE(TextColumn(BackupRow(backup), "restore_volume_id").has_value());
}

// PRODUCTION BUG (volumes_api.cc, kDeletableStatuses: available, error, error_extending). A
// volume whose restore failed is left error_restoring, which Cinder deletes without force and
// which the refusal message itself lists ("must be available or error or error_restoring ..."),
// yet the delete is refused: the failed restore's volume can only be force-deleted.
TEST_F(BackupsApiTest, AVolumeWhoseRestoreFailedCanBeDeleted) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));
  std::string backup = MadeBackup(volume);
  std::filesystem::remove(backup_store_->BackupPath(backup) + "/chunk-0.z");
  ports::HttpResponse response = Restore(backup, json{{"volume_id", nullptr}});
  ASSERT_EQ(response.status, 202) << response.body;
  std::string target = Body(response)["restore"].value("volume_id", "");
  ASSERT_EQ(RunJobs(), 1);
  ASSERT_EQ(VolumeStatusOf(target), "error_restoring");

  ports::HttpResponse deleted = Send(Request("DELETE", VolumePath(target)));

  EXPECT_EQ(deleted.status, 202) << deleted.body;
}

// ---------------------------------------------------------------------------------------------
// Show, list, update

TEST_F(BackupsApiTest, ListsAndUpdateShowTheBackup) {
  std::string volume = AvailableVolume();
  std::string backup = MadeBackup(volume);

  ports::HttpResponse summary = Send(Request("GET", BackupsPath()));
  ASSERT_EQ(summary.status, 200) << summary.body;
  json items = Body(summary)["backups"];
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].value("id", ""), backup);
  EXPECT_FALSE(items[0].contains("status"));
  ports::HttpResponse detail = Send(Request("GET", BackupsPath() + "/detail"));
  ASSERT_EQ(detail.status, 200) << detail.body;
  EXPECT_EQ(Body(detail)["backups"][0].value("status", ""), "available");

  ExpectFault(Send(Request("PUT", BackupPath(backup), R"({"backup": {"name": "x"}})", "3.8")),
              405,
              "badMethod");
  ports::HttpResponse updated =
      Send(Request("PUT", BackupPath(backup), R"({"backup": {"name": "renamed"}})"));
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(Body(updated)["backup"].value("name", ""), "renamed");
  // Cinder's summary view: Tempest's update_backup schema refuses any other key.
  const json answered = Body(updated)["backup"];
  std::vector<std::string> keys;
  for (const auto& [key, value] : answered.items()) {
    keys.push_back(key);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"id", "links", "name"}));
  EXPECT_EQ(BackupView(backup).value("name", ""), "renamed");
  ExpectFault(Send(Request("GET", BackupPath(NewUuid()))), 404, "itemNotFound");
}

// ---------------------------------------------------------------------------------------------
// export_record / import_record (admin)

// As Tempest's test_volume_backup_export_import: the exported record, with another id, imports as
// a new available backup that restores the same bytes from the data left where it is; the data
// goes with the last of the two backups deleted, not the first.
TEST_F(BackupsApiTest, AnImportedRecordRestoresFromTheExportedBackupsData) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 3));
  std::string backup = MadeBackup(volume);
  std::string expected = ReadVolume(volume);
  const RequestContext admin = Context(/*is_admin=*/true);

  ports::HttpResponse exported = backups_.ExportRecord(admin, backup);
  ASSERT_EQ(exported.status, 200) << exported.body;
  json record = Body(exported)["backup-record"];
  const std::string service = record.value("backup_service", "");
  EXPECT_EQ(service.rfind("cinder.backup.drivers", 0), 0u) << service;
  auto decoded = Base64Decode(record.value("backup_url", ""));
  ASSERT_TRUE(decoded.has_value());
  json fields = json::parse(*decoded);
  EXPECT_EQ(fields.value("id", ""), backup);
  EXPECT_EQ(fields.value("size", 0), 1);

  const std::string new_id = NewUuid();
  fields["id"] = new_id;
  const std::size_t jobs_before = JobsPublished();
  const json import_body = {
      {"backup-record",
       {{"backup_service", service}, {"backup_url", Base64Encode(fields.dump())}}}};
  ports::HttpResponse imported = backups_.ImportRecord(
      admin, Request("POST", BackupsPath() + "/import_record", import_body.dump()));
  ASSERT_EQ(imported.status, 201) << imported.body;
  EXPECT_EQ(Body(imported)["backup"].value("id", ""), new_id);
  EXPECT_EQ(BackupView(new_id).value("status", ""), "available");
  EXPECT_EQ(JobsPublished(), jobs_before) << "an import queues nothing";

  // The same record again: the id is taken.
  ExpectFault(backups_.ImportRecord(
                  admin, Request("POST", BackupsPath() + "/import_record", import_body.dump())),
              400,
              "badRequest");
  // Another service's record, and a url that is not a record.
  json other = import_body;
  other["backup-record"]["backup_service"] = "cinder.backup.drivers.swift.SwiftBackupDriver";
  ExpectFault(
      backups_.ImportRecord(admin, Request("POST", BackupsPath() + "/import_record", other.dump())),
      400,
      "badRequest");
  json garbage = import_body;
  garbage["backup-record"]["backup_url"] = Base64Encode("not json");
  ExpectFault(backups_.ImportRecord(
                  admin, Request("POST", BackupsPath() + "/import_record", garbage.dump())),
              400,
              "badRequest");

  // The imported backup restores the exported one's bytes.
  ports::HttpResponse restored = Restore(new_id, json{{"volume_id", nullptr}});
  ASSERT_EQ(restored.status, 202) << restored.body;
  std::string target = Body(restored)["restore"].value("volume_id", "");
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(VolumeStatusOf(target), "available")
      << TextColumn(VolumeRow(target), "status_reason").value_or("");
  EXPECT_TRUE(ReadVolume(target) == expected) << "the restored bytes differ";

  // Deleting the imported backup keeps the data the original still names; deleting the
  // original then removes it.
  ASSERT_EQ(Send(Request("DELETE", BackupPath(new_id))).status, 202);
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_TRUE(backup_store_->DescribeBackup(backup).has_value());
  ports::HttpResponse again = Restore(backup, json{{"volume_id", nullptr}});
  ASSERT_EQ(again.status, 202) << again.body;
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(VolumeStatusOf(Body(again)["restore"].value("volume_id", "")), "available");
  ASSERT_EQ(Send(Request("DELETE", BackupPath(backup))).status, 202);
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_FALSE(backup_store_->DescribeBackup(backup).has_value());
}

TEST_F(BackupsApiTest, ExportNeedsAnAvailableBackup) {
  std::string volume = AvailableVolume();
  std::string backup = MadeBackup(volume);
  const RequestContext admin = Context(/*is_admin=*/true);
  ASSERT_EQ(backups_
                .Action(admin,
                        Request("POST",
                                BackupPath(backup) + "/action",
                                R"({"os-reset_status": {"status": "error"}})"),
                        backup)
                .status,
            202);
  ports::HttpResponse exported = backups_.ExportRecord(admin, backup);
  ExpectFault(exported, 400, "badRequest");
  EXPECT_EQ(FaultMessage(exported),
            "Invalid backup: Backup status must be available and not error.");
  ExpectFault(backups_.ExportRecord(admin, NewUuid()), 404, "itemNotFound");
}

// ---------------------------------------------------------------------------------------------
// Projects: an admin acts on every project's backups, anyone else on their own project's only

TEST_F(BackupsApiTest, AnAdminOfAnotherProjectShowsUpdatesRestoresResetsAndDeletesABackup) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));
  std::string backup = MadeBackup(volume);
  std::string expected = ReadVolume(volume);
  const RequestContext admin = Context(/*is_admin=*/true, kOtherProject);

  ports::HttpResponse shown = backups_.Show(admin, backup);
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["backup"].value("os-backup-project-attr:project_id", ""), kProject);

  ports::HttpResponse updated = backups_.Update(
      admin, Request("PUT", BackupPath(backup), R"({"backup": {"name": "renamed"}})"), backup);
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(TextColumn(BackupRow(backup), "display_name"), "renamed");

  // Into a new volume, which is the admin's (as Cinder), and into the owner's existing volume.
  ports::HttpResponse to_new = backups_.Restore(
      admin,
      Request("POST", BackupPath(backup) + "/restore", R"({"restore": {"volume_id": null}})"),
      backup);
  ASSERT_EQ(to_new.status, 202) << to_new.body;
  std::string restored = Body(to_new)["restore"].value("volume_id", "");
  EXPECT_EQ(TextColumn(VolumeRow(restored), "project_id"), kOtherProject);
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(VolumeStatusOf(restored), "available")
      << TextColumn(VolumeRow(restored), "status_reason").value_or("");
  EXPECT_TRUE(ReadVolume(restored) == expected) << "the restored bytes differ";
  std::string owners = AvailableVolume();
  ports::HttpResponse to_existing =
      backups_.Restore(admin,
                       Request("POST",
                               BackupPath(backup) + "/restore",
                               json{{"restore", {{"volume_id", owners}}}}.dump()),
                       backup);
  ASSERT_EQ(to_existing.status, 202) << to_existing.body;
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(VolumeStatusOf(owners), "available")
      << TextColumn(VolumeRow(owners), "status_reason").value_or("");
  EXPECT_TRUE(ReadVolume(owners) == expected) << "the restored bytes differ";
  EXPECT_EQ(TextColumn(VolumeRow(owners), "project_id"), kProject);

  ports::HttpResponse reset = backups_.Action(
      admin,
      Request(
          "POST", BackupPath(backup) + "/action", R"({"os-reset_status": {"status": "error"}})"),
      backup);
  ASSERT_EQ(reset.status, 202) << reset.body;
  EXPECT_EQ(TextColumn(BackupRow(backup), "status"), "error");

  ports::HttpResponse deleted = backups_.Delete(admin, backup);
  ASSERT_EQ(deleted.status, 202) << deleted.body;
  EXPECT_EQ(TextColumn(BackupRow(backup), "status"), "deleting_queued");
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(TextColumn(BackupRow(backup), "status"), "deleted");
  EXPECT_EQ(TextColumn(BackupRow(backup), "project_id"), kProject);
  EXPECT_FALSE(backup_store_->DescribeBackup(backup).has_value());
}

TEST_F(BackupsApiTest, AnAdminsBackupOfAnotherProjectsVolumeIsTheAdminsAndBuildsOnItsOwnOnly) {
  std::string volume = AvailableVolume();
  WriteVolume(volume, 0, Pattern(4096, 1));
  std::string owners = MadeBackup(volume);
  const RequestContext admin = Context(/*is_admin=*/true, kOtherProject);
  auto create = [&](const json& spec) {
    ports::HttpResponse response =
        backups_.Create(admin, Request("POST", BackupsPath(), json{{"backup", spec}}.dump()));
    clock_.Advance(std::chrono::seconds(1));
    return response;
  };

  // The owner's backup is not the admin's to build on (as Cinder: the caller's backups only).
  ports::HttpResponse no_parent = create({{"volume_id", volume}, {"incremental", true}});
  ExpectFault(no_parent, 400, "badRequest");
  EXPECT_NE(FaultMessage(no_parent).find("incremental"), std::string::npos) << no_parent.body;
  EXPECT_EQ(VolumeStatusOf(volume), "available");

  std::string full = MadeBackup(volume, json::object(), admin);
  EXPECT_EQ(TextColumn(BackupRow(full), "project_id"), kOtherProject);
  EXPECT_EQ(TextColumn(BackupRow(full), "volume_id"), volume);
  std::string incremental = MadeBackup(volume, {{"incremental", true}}, admin);
  EXPECT_EQ(TextColumn(BackupRow(incremental), "project_id"), kOtherProject);
  EXPECT_EQ(TextColumn(BackupRow(incremental), "parent_id"), full);
  EXPECT_EQ(TextColumn(BackupRow(owners), "project_id"), kProject);
}

TEST_F(BackupsApiTest, AMemberOfAnotherProjectGetsNotFoundForEverythingAndChangesNothing) {
  std::string volume = AvailableVolume();
  std::string backup = MadeBackup(volume);
  const RequestContext member = Context(/*is_admin=*/false, kOtherProject);
  // The member's own backup, to restore into the other project's volume.
  std::string own_volume = AvailableVolume(1, VolumeStatus::kAvailable, kOtherProject);
  std::string own_backup = MadeBackup(own_volume, json::object(), member);
  ports::Row volume_before = VolumeRow(volume);
  ports::Row backup_before = BackupRow(backup);
  const std::size_t rows_before = BackupRowCount();
  const std::size_t jobs_before = JobsPublished();
  const std::string restore_to_new = R"({"restore": {"volume_id": null}})";

  ports::HttpResponse shown = backups_.Show(member, backup);
  ExpectFault(shown, 404, "itemNotFound");
  EXPECT_EQ(FaultMessage(shown), "Backup " + backup + " could not be found.")
      << "the same answer as for a backup that does not exist";
  ExpectFault(
      backups_.Update(
          member, Request("PUT", BackupPath(backup), R"({"backup": {"name": "x"}})"), backup),
      404,
      "itemNotFound");
  ExpectFault(backups_.Restore(
                  member, Request("POST", BackupPath(backup) + "/restore", restore_to_new), backup),
              404,
              "itemNotFound");
  ExpectFault(backups_.Restore(member,
                               Request("POST",
                                       BackupPath(own_backup) + "/restore",
                                       json{{"restore", {{"volume_id", volume}}}}.dump()),
                               own_backup),
              404,
              "itemNotFound");
  ExpectFault(backups_.Delete(member, backup), 404, "itemNotFound");
  ExpectFault(
      backups_.Create(
          member, Request("POST", BackupsPath(), json{{"backup", {{"volume_id", volume}}}}.dump())),
      404,
      "itemNotFound");
  // The backup actions' rules are checked by the route (ResetStatusAndForceDelete... below); a
  // caller they admit still does not see another project's backup.
  ExpectFault(backups_.Action(member,
                              Request("POST",
                                      BackupPath(backup) + "/action",
                                      R"({"os-reset_status": {"status": "error"}})"),
                              backup),
              404,
              "itemNotFound");

  EXPECT_EQ(VolumeRow(volume), volume_before);
  EXPECT_EQ(BackupRow(backup), backup_before);
  EXPECT_EQ(TextColumn(BackupRow(own_backup), "status"), "available")
      << "the refused restore released the member's own backup";
  EXPECT_EQ(BackupRowCount(), rows_before);
  EXPECT_EQ(JobsPublished(), jobs_before);
}

TEST_F(BackupsApiTest, ListsShowOtherProjectsOnlyToAnAdminAskingForAllTenants) {
  std::string mine = MadeBackup(AvailableVolume());
  std::string theirs = MadeBackup(AvailableVolume(1, VolumeStatus::kAvailable, kOtherProject),
                                  json::object(),
                                  Context(/*is_admin=*/false, kOtherProject));
  // The ids the summary list shows, checked against the detail list.
  auto listed = [&](const RequestContext& context,
                    const std::vector<std::pair<std::string, std::string>>& query) {
    std::set<std::string> ids;
    for (bool detail : {false, true}) {
      ports::HttpRequest request = Request("GET", BackupsPath());
      request.query = query;
      ports::HttpResponse response = backups_.List(context, request, detail);
      EXPECT_EQ(response.status, 200) << response.body;
      // Named: a range over a member of a temporary would dangle.
      const json body = Body(response);
      std::set<std::string> shown;
      for (const json& item : body["backups"]) {
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

// ---------------------------------------------------------------------------------------------
// Admin actions

// Who may reset or force-delete a backup is the policy's business
// (volume_extension:backup_admin_actions:reset_status,
// volume_extension:backup_admin_actions:force_delete, admin-only by default): no admin check hides
// in the handler, so a policy file decides. One that refuses them refuses even noauth's admin,
// before the backup is looked at.
TEST_F(BackupsApiTest, ResetStatusAndForceDeleteAreGuardedByTheirPolicyRules) {
  std::string volume = AvailableVolume();
  std::string backup = MadeBackup(volume);
  ports::HttpRequest reset = Request(
      "POST", BackupPath(backup) + "/action", R"({"os-reset_status": {"status": "error"}})");
  ports::HttpRequest force =
      Request("POST", BackupPath(backup) + "/action", R"({"os-force_delete": {}})");

  auto closed =
      domain::Policy::Create({{"volume_extension:backup_admin_actions:reset_status", "!"},
                              {"volume_extension:backup_admin_actions:force_delete", "!"}});
  ASSERT_TRUE(closed.has_value()) << closed.error().ToString();
  ApiAuthOptions options;
  options.policy = std::move(*closed);
  ApiService guarded(
      volumes_, snapshots_, attachments_, backups_, services_api_, types_, std::move(options));
  ports::HttpResponse refused = guarded.Handle(reset);
  ExpectFault(refused, 403, "forbidden");
  EXPECT_NE(refused.body.find("volume_extension:backup_admin_actions:reset_status"),
            std::string::npos)
      << refused.body;
  refused = guarded.Handle(force);
  ExpectFault(refused, 403, "forbidden");
  EXPECT_NE(refused.body.find("volume_extension:backup_admin_actions:force_delete"),
            std::string::npos)
      << refused.body;
  EXPECT_EQ(TextColumn(BackupRow(backup), "status"), "available");

  ExpectFault(Send(Request("POST",
                           BackupPath(backup) + "/action",
                           R"({"os-reset_status": {"status": "creating"}})")),
              400,
              "badRequest");
  ASSERT_EQ(Send(reset).status, 202);
  EXPECT_EQ(TextColumn(BackupRow(backup), "status"), "error");
  EXPECT_EQ(BackupView(backup).value("status", ""), "error");

  ASSERT_EQ(Send(force).status, 202);
  EXPECT_EQ(BackupView(backup).value("status", ""), "deleting");
  ASSERT_EQ(RunJobs(), 1);
  EXPECT_EQ(TextColumn(BackupRow(backup), "status"), "deleted");
  EXPECT_FALSE(backup_store_->DescribeBackup(backup).has_value());
}

}  // namespace
}  // namespace clinker::services
