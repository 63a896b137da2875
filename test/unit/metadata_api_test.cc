// Goal: check, as a client sees them through ApiService::Handle, the metadata sub-resources of
// volumes and snapshots (merge, replace, item show / update / delete, Cinder's status codes and
// messages, the 255-character limits, the ETag and If-Match of 3.15), the volume actions
// os-set_bootable, os-update_readonly_flag (readonly shown in the volume's metadata, and its
// effect on attaching), the image metadata actions and volume_image_metadata in the views,
// GET /os-availability-zone and GET /extensions; and that concurrent metadata changes of one
// volume lose nothing.
//
// Method: ApiService over the API classes over MemoryStateStore, a MemoryBroker and a FakeClock,
// with noauth tokens (every caller admin). Volume rows are written straight to the store as the
// scheduler and volume manager leave them (available on a back-end); service rows as the
// registry writes them. Non-admin callers are checked by calling the handler with a
// RequestContext, as ApiService would build it from a keystone token.
#include <cctype>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "clinker/adapters/memory/memory_job_queue.h"
#include "clinker/adapters/memory/memory_state_store.h"
#include "clinker/core/time_format.h"
#include "clinker/core/uuid.h"
#include "clinker/domain/status.h"
#include "clinker/services/api_service.h"
#include "clinker/services/metadata_rules.h"

#include "support/fake_clock.h"

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

std::string Header(const ports::HttpResponse& response, std::string_view name) {
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
  EXPECT_FALSE(body.is_discarded()) << "not JSON: " << response.body;
  return body;
}

// The message of a Cinder fault, checking its shape.
std::string FaultMessage(const ports::HttpResponse& response, int status) {
  EXPECT_EQ(response.status, status) << response.body;
  json body = Body(response);
  if (!body.is_object() || body.size() != 1 || !body.begin()->is_object()) {
    ADD_FAILURE() << "not a fault: " << response.body;
    return "";
  }
  EXPECT_EQ(body.begin()->value("code", 0), status);
  return body.begin()->value("message", "");
}

class MetadataApiTest : public ::testing::Test {
 protected:
  MetadataApiTest()
      : broker_(std::make_shared<MemoryBroker>()),
        session_(broker_),
        volumes_(store_, session_, clock_, VolumesApiOptions{}),
        snapshots_(store_, session_, clock_, SnapshotsApiOptions{}),
        attachments_(store_, session_, clock_, AttachmentsApiOptions{}),
        backups_(store_, session_, clock_, BackupsApiOptions{}),
        services_api_(store_, clock_, ServicesApiOptions{}),
        types_(store_, clock_, TypesApiOptions{}),
        service_(volumes_, snapshots_, attachments_, backups_, services_api_, types_) {}

  static std::string Path(std::string_view rest) {
    return "/v3/" + std::string(kProject) + "/" + std::string(rest);
  }

  ports::HttpResponse Send(std::string method,
                           std::string path,
                           const std::string& body = "",
                           std::string version = "",
                           std::vector<std::pair<std::string, std::string>> headers = {}) {
    ports::HttpRequest request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.body = body;
    request.base_url = std::string(kBaseUrl);
    request.headers = {{"X-Auth-Token", "user:" + std::string(kProject)},
                       {"Content-Type", "application/json"}};
    if (!version.empty()) {
      request.headers.emplace_back("OpenStack-API-Version", "volume " + version);
    }
    for (auto& header : headers) {
      request.headers.push_back(std::move(header));
    }
    return service_.Handle(request);
  }

  ports::HttpResponse Action(const std::string& volume_id, const json& body) {
    return Send("POST", Path("volumes/" + volume_id + "/action"), body.dump());
  }

  // A volume as the scheduler and volume manager leave it: available on kHost.
  std::string AvailableVolume(std::string_view project = kProject) {
    Volume volume;
    volume.id = NewUuid();
    volume.project_id = std::string(project);
    volume.user_id = "user";
    volume.status = VolumeStatus::kAvailable;
    volume.size_gib = 1;
    volume.availability_zone = "nova";
    volume.host = std::string(kHost);
    volume.created_at = FormatTimestamp(clock_.WallNow());
    auto inserted = store_.Insert(ports::Table::kVolumes, VolumeToRow(volume));
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    return volume.id;
  }

  std::string AvailableSnapshot(const std::string& volume_id) {
    std::string id = NewUuid();
    auto inserted = store_.Insert(ports::Table::kSnapshots,
                                  {{"id", id},
                                   {"project_id", std::string(kProject)},
                                   {"user_id", "user"},
                                   {"volume_id", volume_id},
                                   {"status", "available"},
                                   {"size_gib", std::int64_t{1}},
                                   {"created_at", FormatTimestamp(clock_.WallNow())}});
    EXPECT_TRUE(inserted.has_value()) << inserted.error().ToString();
    return id;
  }

  void SetVolumeStatus(const std::string& id, VolumeStatus status) {
    auto updated = store_.ConditionalUpdate(
        ports::Table::kVolumes, id, {{"status", std::string(domain::StoredName(status))}}, {}, {});
    ASSERT_TRUE(updated.has_value() && updated->has_value());
  }

  json ShowVolume(const std::string& id) {
    ports::HttpResponse response = Send("GET", Path("volumes/" + id));
    EXPECT_EQ(response.status, 200) << response.body;
    return Body(response)["volume"];
  }

  static RequestContext Member(std::string_view project) {
    RequestContext context;
    context.user_id = "user";
    context.project_id = std::string(project);
    context.roles = {"member"};
    context.version = kMinMicroversion;
    context.link_base = std::string(kBaseUrl) + "/v3/" + std::string(project);
    context.bookmark_base = std::string(kBaseUrl) + "/" + std::string(project);
    return context;
  }

  MemoryStateStore store_;
  FakeClock clock_;
  std::shared_ptr<MemoryBroker> broker_;
  MemoryJobQueue session_;
  VolumesApi volumes_;
  SnapshotsApi snapshots_;
  AttachmentsApi attachments_;
  BackupsApi backups_;
  ServicesApi services_api_;
  TypesApi types_;
  ApiService service_;
};

// ---------------------------------------------------------------------------------------------
// Volume metadata

TEST_F(MetadataApiTest, VolumeMetadataCrudAsTempestDrivesIt) {
  const std::string id = AvailableVolume();
  const std::string base = Path("volumes/" + id + "/metadata");
  json metadata = {{"key1", "value1"},
                   {"key2", "value2"},
                   {"key3", "value3"},
                   {"key4", "<value&special_chars>"}};

  ports::HttpResponse created = Send("POST", base, json{{"metadata", metadata}}.dump());
  ASSERT_EQ(created.status, 200) << created.body;
  EXPECT_EQ(Body(created), json({{"metadata", metadata}}));

  // POST merges: the answer is the whole metadata.
  created = Send("POST", base, R"({"metadata": {"key5": "value5", "key1": "one"}})");
  ASSERT_EQ(created.status, 200) << created.body;
  metadata["key5"] = "value5";
  metadata["key1"] = "one";
  EXPECT_EQ(Body(created)["metadata"], metadata);

  ports::HttpResponse shown = Send("GET", base);
  ASSERT_EQ(shown.status, 200);
  EXPECT_EQ(Body(shown), json({{"metadata", metadata}}));
  EXPECT_EQ(Header(shown, "Etag"), "") << "no ETag below 3.15";
  EXPECT_EQ(ShowVolume(id)["metadata"], metadata);

  // PUT replaces all.
  json update = {{"key4", "value4"}, {"key1", "value1_update"}};
  ports::HttpResponse replaced = Send("PUT", base, json{{"metadata", update}}.dump());
  ASSERT_EQ(replaced.status, 200) << replaced.body;
  EXPECT_EQ(Body(replaced), json({{"metadata", update}}));
  EXPECT_EQ(Body(Send("GET", base))["metadata"], update);

  // One item.
  ports::HttpResponse item = Send("PUT", base + "/key4", R"({"meta": {"key4": "v4"}})");
  ASSERT_EQ(item.status, 200) << item.body;
  EXPECT_EQ(Body(item), json({{"meta", {{"key4", "v4"}}}}));
  item = Send("PUT", base + "/key9", R"({"meta": {"key9": "v9"}})");
  ASSERT_EQ(item.status, 200) << item.body;
  EXPECT_EQ(Body(Send("GET", base + "/key9")), json({{"meta", {{"key9", "v9"}}}}));

  ports::HttpResponse deleted = Send("DELETE", base + "/key1");
  EXPECT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(deleted.body, "");
  EXPECT_EQ(Body(Send("GET", base))["metadata"], json({{"key4", "v4"}, {"key9", "v9"}}));

  EXPECT_EQ(FaultMessage(Send("GET", base + "/key1"), 404),
            "Volume " + id + " has no metadata with key key1.");
  EXPECT_EQ(FaultMessage(Send("DELETE", base + "/key1"), 404),
            "Volume " + id + " has no metadata with key key1.");

  // Tempest's tearDown.
  replaced = Send("PUT", base, R"({"metadata": {}})");
  ASSERT_EQ(replaced.status, 200);
  EXPECT_EQ(Body(replaced), json({{"metadata", json::object()}}));
  EXPECT_EQ(ShowVolume(id)["metadata"], json::object());
}

TEST_F(MetadataApiTest, VolumeMetadataBodiesAreCheckedWithCindersMessages) {
  const std::string id = AvailableVolume();
  const std::string base = Path("volumes/" + id + "/metadata");
  const std::string long_value(256, 'v');
  const std::string long_key(256, 'k');

  struct Case {
    std::string method;
    std::string path;
    std::string body;
    std::string message;
  };

  const std::vector<Case> cases = {
      {"POST", base, "{not json", "Malformed request body"},
      {"POST", base, "", "None is not of type 'object'"},
      {"POST", base, "[]", "[] is not of type 'object'"},
      {"POST", base, R"({"meta": {"a": "b"}})", "'metadata' is a required property"},
      {"PUT",
       base,
       R"({"metadata": "x"})",
       "Invalid input for field/attribute metadata. Value: x. 'x' is not of type 'object'"},
      {"POST",
       base,
       R"({"metadata": {"a": 1}})",
       "Invalid input for field/attribute a. Value: 1. 1 is not of type 'string'"},
      {"POST",
       base,
       R"({"metadata": {"a": null}})",
       "Invalid input for field/attribute a. Value: None. None is not of type 'string'"},
      {"POST",
       base,
       json{{"metadata", {{"a", long_value}}}}.dump(),
       "Invalid input for field/attribute a. Value: " + long_value + ". '" + long_value +
           "' is too long"},
      {"POST",
       base,
       R"({"metadata": {"bad!key": "v"}})",
       "Invalid input for field/attribute metadata. Value: {'bad!key': 'v'}. 'bad!key' does not "
       "match any of the regexes: '^[a-zA-Z0-9-_:. /]{1,255}$'"},
      {"POST",
       base,
       json{{"metadata", {{long_key, "v"}}}}.dump(),
       "Invalid input for field/attribute metadata. Value: {'" + long_key + "': 'v'}. '" +
           long_key + "' does not match any of the regexes: '^[a-zA-Z0-9-_:. /]{1,255}$'"},
      {"POST",
       base,
       R"({"metadata": {}, "extra": 1})",
       "Additional properties are not allowed ('extra' was unexpected)"},
      {"PUT",
       base + "/k",
       R"({"meta": {}})",
       "Invalid input for field/attribute meta. Value: {}. {} does not have enough properties"},
      {"PUT",
       base + "/k",
       R"({"meta": {"k": "1", "l": "2"}})",
       "Invalid input for field/attribute meta. Value: {'k': '1', 'l': '2'}. {'k': '1', 'l': "
       "'2'} has too many properties"},
      {"PUT", base + "/k", R"({"meta": {"other": "v"}})", "Request body and URI mismatch"},
      {"PUT", base + "/k", R"({"metadata": {"k": "v"}})", "'meta' is a required property"},
  };
  for (const Case& row : cases) {
    SCOPED_TRACE(row.method + " " + row.path + " " + row.body);
    EXPECT_EQ(FaultMessage(Send(row.method, row.path, row.body), 400), row.message);
  }
  EXPECT_EQ(Body(Send("GET", base))["metadata"], json::object()) << "a refused body stored";

  // The limits are inclusive: 255 characters (not bytes) of key and value are fine.
  const std::string key(255, 'k');
  std::string value;
  for (int i = 0; i < 255; ++i) {
    value += "\xc3\xa9";  // U+00E9, two bytes.
  }
  ports::HttpResponse accepted =
      Send("POST", base, json{{"metadata", {{key, value}, {"a-Z_9:. /", "x"}}}}.dump());
  EXPECT_EQ(accepted.status, 200) << accepted.body;
}

TEST_F(MetadataApiTest, VolumeMetadataOfAnUnknownOrUnseenVolumeIsNotFound) {
  const std::string missing = NewUuid();
  for (const auto& [method, suffix, body] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"GET", "", ""},
           {"POST", "", R"({"metadata": {"a": "b"}})"},
           {"PUT", "", R"({"metadata": {"a": "b"}})"},
           {"GET", "/a", ""},
           {"PUT", "/a", R"({"meta": {"a": "b"}})"},
           {"DELETE", "/a", ""}}) {
    SCOPED_TRACE(method + suffix);
    EXPECT_EQ(
        FaultMessage(Send(method, Path("volumes/" + missing + "/metadata" + suffix), body), 404),
        "Volume " + missing + " could not be found.");
  }
  // Another project's volume is as good as absent for a member.
  const std::string theirs = AvailableVolume(kOtherProject);
  EXPECT_EQ(volumes_.ShowMetadata(Member(kProject), theirs).status, 404);
  ports::HttpRequest request;
  request.body = R"({"metadata": {"a": "b"}})";
  EXPECT_EQ(volumes_.CreateMetadata(Member(kProject), request, theirs).status, 404);
  EXPECT_EQ(volumes_.ShowMetadata(Member(kOtherProject), theirs).status, 200);
}

TEST_F(MetadataApiTest, EtagAndIfMatchFromMicroversion315) {
  const std::string id = AvailableVolume();
  const std::string base = Path("volumes/" + id + "/metadata");
  ASSERT_EQ(Send("POST", base, R"({"metadata": {"a": "1"}})").status, 200);

  ports::HttpResponse shown = Send("GET", base, "", "3.15");
  ASSERT_EQ(shown.status, 200);
  const std::string etag = Header(shown, "Etag");
  ASSERT_EQ(etag.size(), 32u) << etag;
  // Cinder's: MD5 of json.dumps({"metadata": {...}}) (values from Python's hashlib).
  EXPECT_EQ(etag, "f4e52f163c86f262780f0c8b8670b3e6");
  EXPECT_EQ(MetadataEtag({{"k", "\u00e9\U0001F600\n\"x"}}), "7b10077217a17b2b0a0459c76380069d");

  // A stale ETag: 412 and nothing written; the current one (quoted or not): written.
  ports::HttpResponse refused =
      Send("PUT", base, R"({"metadata": {"b": "2"}})", "3.15", {{"If-Match", "\"0123456789\""}});
  EXPECT_EQ(refused.status, 412);
  EXPECT_EQ(refused.body, "");
  refused = Send("PUT", base + "/a", R"({"meta": {"a": "9"}})", "3.15", {{"If-Match", "stale"}});
  EXPECT_EQ(refused.status, 412);
  EXPECT_EQ(Body(Send("GET", base))["metadata"], json({{"a", "1"}}));

  ports::HttpResponse written =
      Send("PUT", base, R"({"metadata": {"b": "2"}})", "3.15", {{"If-Match", "\"" + etag + "\""}});
  EXPECT_EQ(written.status, 200) << written.body;
  const std::string next = Header(Send("GET", base, "", "3.15"), "Etag");
  EXPECT_NE(next, etag);
  written = Send("PUT", base + "/b", R"({"meta": {"b": "3"}})", "3.15", {{"If-Match", next}});
  EXPECT_EQ(written.status, 200) << written.body;
  written = Send("PUT", base + "/b", R"({"meta": {"b": "4"}})", "3.15", {{"If-Match", "*"}});
  EXPECT_EQ(written.status, 200) << written.body;

  // Below 3.15 If-Match is not looked at.
  written = Send("PUT", base, R"({"metadata": {"c": "5"}})", "3.14", {{"If-Match", "stale"}});
  EXPECT_EQ(written.status, 200) << written.body;
}

TEST_F(MetadataApiTest, ConcurrentMetadataChangesOfOneVolumeLoseNothing) {
  const std::string id = AvailableVolume();
  const std::string base = Path("volumes/" + id + "/metadata");
  constexpr int kWriters = 8;
  constexpr int kKeysEach = 10;
  std::vector<std::thread> writers;
  for (int writer = 0; writer < kWriters; ++writer) {
    writers.emplace_back([&, writer] {
      for (int i = 0; i < kKeysEach; ++i) {
        const std::string key = "w" + std::to_string(writer) + "k" + std::to_string(i);
        ports::HttpResponse response =
            (i % 2 == 0) ? Send("POST", base, json{{"metadata", {{key, "v"}}}}.dump())
                         : Send("PUT", base + "/" + key, json{{"meta", {{key, "v"}}}}.dump());
        EXPECT_EQ(response.status, 200) << response.body;
      }
    });
  }
  for (std::thread& writer : writers) {
    writer.join();
  }
  EXPECT_EQ(Body(Send("GET", base))["metadata"].size(),
            static_cast<std::size_t>(kWriters * kKeysEach));
}

// ---------------------------------------------------------------------------------------------
// Flags

TEST_F(MetadataApiTest, SetBootableAcceptsCindersBooleansAndAnswers200) {
  const std::string id = AvailableVolume();
  for (const auto& [value, shown] : std::vector<std::pair<json, std::string>>{
           {true, "true"}, {false, "false"}, {"True", "true"}, {"off", "false"}, {"y", "true"}}) {
    SCOPED_TRACE(value.dump());
    ports::HttpResponse response = Action(id, {{"os-set_bootable", {{"bootable", value}}}});
    EXPECT_EQ(response.status, 200) << response.body;
    EXPECT_EQ(response.body, "");
    EXPECT_EQ(ShowVolume(id)["bootable"], shown);
  }
  EXPECT_EQ(FaultMessage(Action(id, {{"os-set_bootable", {{"bootable", "maybe"}}}}), 400),
            "Invalid input for field/attribute bootable. Value: maybe. 'maybe' is not one of "
            "[True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', 'y', 't', "
            "False, 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no', 'n', "
            "'f']");
  EXPECT_EQ(FaultMessage(Action(id, {{"os-set_bootable", {{"bootable", 1}}}}), 400),
            "Invalid input for field/attribute bootable. Value: 1. 1 is not of type 'boolean', "
            "'string'");
  EXPECT_EQ(FaultMessage(Action(id, {{"os-set_bootable", json::object()}}), 400),
            "Invalid input for field/attribute os-set_bootable. Value: {}. 'bootable' is a "
            "required property");
  EXPECT_EQ(FaultMessage(Action(id, {{"os-set_bootable", {{"bootable", true}, {"x", 1}}}}), 400),
            "Invalid input for field/attribute os-set_bootable. Value: {'bootable': True, 'x': "
            "1}. Additional properties are not allowed ('x' was unexpected)");
  const std::string missing = NewUuid();
  EXPECT_EQ(FaultMessage(Action(missing, {{"os-set_bootable", {{"bootable", true}}}}), 404),
            "Volume " + missing + " could not be found.");
}

TEST_F(MetadataApiTest, ReadonlyFlagShowsInTheVolumesMetadataAndNeedsAvailable) {
  const std::string id = AvailableVolume();
  ASSERT_EQ(Send("POST", Path("volumes/" + id + "/metadata"), R"({"metadata": {"k": "v"}})").status,
            200);
  for (bool readonly : {true, false}) {
    ports::HttpResponse response =
        Action(id, {{"os-update_readonly_flag", {{"readonly", readonly}}}});
    EXPECT_EQ(response.status, 202) << response.body;
    json volume = ShowVolume(id);
    EXPECT_EQ(volume["metadata"], json({{"k", "v"}, {"readonly", readonly ? "True" : "False"}}));
    // Detail lists show it too; the metadata sub-resource (user metadata) does not.
    json listed = Body(Send("GET", Path("volumes/detail")))["volumes"][0];
    EXPECT_EQ(listed["metadata"]["readonly"], readonly ? "True" : "False");
    EXPECT_EQ(Body(Send("GET", Path("volumes/" + id + "/metadata")))["metadata"],
              json({{"k", "v"}}));
  }
  SetVolumeStatus(id, VolumeStatus::kInUse);
  EXPECT_EQ(FaultMessage(Action(id, {{"os-update_readonly_flag", {{"readonly", "true"}}}}), 400),
            "Invalid volume: Volume " + id +
                " status must be available to update readonly flag, but current status is: "
                "in-use.");
  EXPECT_EQ(FaultMessage(Action(id, {{"os-update_readonly_flag", {{"readonly", "no way"}}}}), 400)
                .rfind("Invalid input for field/attribute readonly. Value: no way.", 0),
            0u);
}

TEST_F(MetadataApiTest, ReadonlyVolumeAttachesReadOnlyAndShowsItsAttachedMode) {
  const std::string id = AvailableVolume();
  ASSERT_EQ(Action(id, {{"os-update_readonly_flag", {{"readonly", true}}}}).status, 202);
  const json attach = {{"os-attach", {{"instance_uuid", NewUuid()}, {"mountpoint", "/dev/vdb"}}}};
  EXPECT_EQ(FaultMessage(Action(id, attach), 400),
            "Invalid attaching mode 'rw' for volume " + id + ".");
  json read_only = attach;
  read_only["os-attach"]["mode"] = "ro";
  ports::HttpResponse attached = Action(id, read_only);
  ASSERT_EQ(attached.status, 202) << attached.body;
  json volume = ShowVolume(id);
  EXPECT_EQ(volume["status"], "in-use");
  EXPECT_EQ(volume["metadata"], json({{"readonly", "True"}, {"attached_mode", "ro"}}));

  ports::HttpResponse detached = Action(id, {{"os-detach", json::object()}});
  ASSERT_EQ(detached.status, 202) << detached.body;
  volume = ShowVolume(id);
  EXPECT_EQ(volume["status"], "available");
  EXPECT_EQ(volume["metadata"], json({{"readonly", "True"}})) << "attached_mode outlived detach";

  // An attachment (3.27) of a readonly volume is read-only whatever it asked for.
  ports::HttpResponse created =
      Send("POST",
           Path("attachments"),
           json{{"attachment", {{"volume_uuid", id}, {"instance_uuid", NewUuid()}}}}.dump(),
           "3.27");
  ASSERT_EQ(created.status, 200) << created.body;
  EXPECT_EQ(Body(created)["attachment"]["attach_mode"], "ro");
}

TEST_F(MetadataApiTest, FirstAttachOfAWritableVolumeSetsReadonlyFalse) {
  const std::string id = AvailableVolume();
  ASSERT_EQ(Action(id,
                   {{"os-attach",
                     {{"host_name", "compute1"}, {"mountpoint", "/dev/vdb"}, {"mode", "rw"}}}})
                .status,
            202);
  EXPECT_EQ(ShowVolume(id)["metadata"], json({{"readonly", "False"}, {"attached_mode", "rw"}}));
}

// ---------------------------------------------------------------------------------------------
// Image metadata

TEST_F(MetadataApiTest, ImageMetadataActionsAndTheVolumeImageMetadataField) {
  const std::string id = AvailableVolume();
  EXPECT_FALSE(ShowVolume(id).contains("volume_image_metadata")) << "none yet: no field";

  json image = {{"image_id", "5137a025-3c5f-43c1-bc64-5f41270040a5"},
                {"image_name", "image"},
                {"kernel_id", "6ff710d2-942b-4d6b-9168-8c9cc2404ab1"},
                {"ramdisk_id", "somedisk"}};
  ports::HttpResponse set = Action(id, {{"os-set_image_metadata", {{"metadata", image}}}});
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(Body(set), json({{"metadata", image}}));
  set = Action(id, {{"os-set_image_metadata", {{"metadata", {{"min_ram", "512"}}}}}});
  ASSERT_EQ(set.status, 200) << set.body;
  image["min_ram"] = "512";
  EXPECT_EQ(Body(set)["metadata"], image) << "set merges and answers all of it";

  EXPECT_EQ(ShowVolume(id)["volume_image_metadata"], image);
  EXPECT_EQ(Body(Send("GET", Path("volumes/detail")))["volumes"][0]["volume_image_metadata"],
            image);
  EXPECT_FALSE(Body(Send("GET", Path("volumes")))["volumes"][0].contains("volume_image_metadata"));
  EXPECT_EQ(ShowVolume(id)["metadata"], json::object()) << "image metadata is not user metadata";

  ports::HttpResponse unset = Action(id, {{"os-unset_image_metadata", {{"key", "ramdisk_id"}}}});
  EXPECT_EQ(unset.status, 200) << unset.body;
  EXPECT_EQ(unset.body, "");
  image.erase("ramdisk_id");
  ports::HttpResponse shown = Action(id, {{"os-show_image_metadata", json::object()}});
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown), json({{"metadata", image}}));

  EXPECT_EQ(FaultMessage(Action(id, {{"os-unset_image_metadata", {{"key", "ramdisk_id"}}}}), 404),
            "Glance metadata for volume/snapshot " + id + " cannot be found.");
  EXPECT_EQ(FaultMessage(Action(id, {{"os-unset_image_metadata", {{"key", ""}}}}), 400),
            "Invalid input for field/attribute key. Value: . '' is too short");
  EXPECT_EQ(FaultMessage(Action(id, {{"os-set_image_metadata", {{"metadata", {{"a", 1}}}}}}), 400),
            "Invalid input for field/attribute a. Value: 1. 1 is not of type 'string'");
  EXPECT_EQ(FaultMessage(Action(id, {{"os-set_image_metadata", json::object()}}), 400),
            "Invalid input for field/attribute os-set_image_metadata. Value: {}. 'metadata' is a "
            "required property");
}

TEST_F(MetadataApiTest, CloneOfABootableVolumeIsBootableWithItsImageMetadata) {
  const std::string source = AvailableVolume();
  ASSERT_EQ(Action(source, {{"os-set_bootable", {{"bootable", true}}}}).status, 200);
  ASSERT_EQ(Action(source, {{"os-set_image_metadata", {{"metadata", {{"image_name", "cirros"}}}}}})
                .status,
            200);
  ports::HttpResponse created =
      Send("POST", Path("volumes"), json{{"volume", {{"source_volid", source}}}}.dump());
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string clone = Body(created)["volume"]["id"];
  EXPECT_EQ(Body(created)["volume"]["bootable"], "true");
  SetVolumeStatus(clone, VolumeStatus::kAvailable);
  EXPECT_EQ(ShowVolume(clone)["volume_image_metadata"], json({{"image_name", "cirros"}}));
}

// ---------------------------------------------------------------------------------------------
// Snapshot metadata

TEST_F(MetadataApiTest, SnapshotMetadataCrudAndCindersChecks) {
  const std::string snapshot = AvailableSnapshot(AvailableVolume());
  const std::string base = Path("snapshots/" + snapshot + "/metadata");
  json metadata = {{"key1", "value1"}, {"key2", "value2"}, {"key3", "value3"}};
  ports::HttpResponse created = Send("POST", base, json{{"metadata", metadata}}.dump());
  ASSERT_EQ(created.status, 200) << created.body;
  EXPECT_EQ(Body(created)["metadata"], metadata);
  EXPECT_EQ(Body(Send("GET", base)), json({{"metadata", metadata}}));

  json update = {{"key3", "value3_update"}, {"key4", "value4"}};
  ports::HttpResponse replaced = Send("PUT", base, json{{"metadata", update}}.dump());
  ASSERT_EQ(replaced.status, 200) << replaced.body;
  EXPECT_EQ(Body(replaced)["metadata"], update);
  EXPECT_EQ(Body(Send("GET", Path("snapshots/" + snapshot)))["snapshot"]["metadata"], update);

  ports::HttpResponse item = Send("PUT", base + "/key3", R"({"meta": {"key3": "v"}})");
  ASSERT_EQ(item.status, 200) << item.body;
  EXPECT_EQ(Body(item), json({{"meta", {{"key3", "v"}}}}));
  EXPECT_EQ(Body(Send("GET", base + "/key3")), json({{"meta", {{"key3", "v"}}}}));
  EXPECT_EQ(Send("DELETE", base + "/key3").status, 200);
  EXPECT_EQ(Body(Send("GET", base))["metadata"], json({{"key4", "value4"}}));
  EXPECT_EQ(FaultMessage(Send("GET", base + "/key3"), 404),
            "Snapshot " + snapshot + " has no metadata with key key3.");
  EXPECT_EQ(FaultMessage(Send("DELETE", base + "/key3"), 404),
            "Snapshot " + snapshot + " has no metadata with key key3.");

  // Snapshot metadata keys are not pattern-checked (Cinder checks them in its volume API).
  EXPECT_EQ(Send("POST", base, R"({"metadata": {"odd!key": "v"}})").status, 200);

  EXPECT_EQ(FaultMessage(Send("POST", base, R"({"metadata": "x"})"), 400),
            "Missing required element 'metadata' in request body.");
  EXPECT_EQ(FaultMessage(Send("PUT", base + "/k", R"({"metadata": {"k": "v"}})"), 400),
            "Missing required element 'meta' in request body.");
  EXPECT_EQ(FaultMessage(Send("PUT", base + "/k", R"({"meta": {"j": "v"}})"), 400),
            "Request body and URI mismatch");
  EXPECT_EQ(FaultMessage(Send("PUT", base + "/k", R"({"meta": {"k": "v", "j": "w"}})"), 400),
            "Request body contains too many items");
  EXPECT_EQ(FaultMessage(Send("POST", base, R"({"metadata": {"k": 5}})"), 400),
            "Invalid metadata: Invalid input received: Value for metadata key: k is not a string "
            "or unicode");
  EXPECT_EQ(FaultMessage(Send("POST", base, R"({"metadata": {"": "v"}})"), 400),
            "Invalid metadata: Invalid input received: Metadata key:  has 0 characters, less "
            "than 1.");
  const std::string long_text(256, 'x');
  EXPECT_EQ(FaultMessage(Send("POST", base, json{{"metadata", {{long_text, "v"}}}}.dump()), 413),
            "Invalid metadata size: Metadata property key " + long_text +
                " greater than 255 characters.");
  EXPECT_EQ(FaultMessage(Send("POST", base, json{{"metadata", {{"k", long_text}}}}.dump()), 413),
            "Invalid metadata size: Metadata property key k value greater than 255 characters.");
  EXPECT_EQ(Body(Send("GET", base))["metadata"], json({{"key4", "value4"}, {"odd!key", "v"}}));

  const std::string missing = NewUuid();
  EXPECT_EQ(FaultMessage(Send("GET", Path("snapshots/" + missing + "/metadata")), 404),
            "Snapshot " + missing + " could not be found.");
}

// ---------------------------------------------------------------------------------------------
// Availability zones and extensions

TEST_F(MetadataApiTest, AvailabilityZonesComeFromTheVolumeServices) {
  ports::HttpResponse none = Send("GET", Path("os-availability-zone"));
  ASSERT_EQ(none.status, 200) << none.body;
  EXPECT_EQ(Body(none), json({{"availabilityZoneInfo", json::array()}}));

  auto add = [&](std::string binary, std::string host, std::string zone, bool disabled) {
    auto inserted = store_.Insert(ports::Table::kServices,
                                  {{"id", binary + ":" + host},
                                   {"binary", binary},
                                   {"host", host},
                                   {"availability_zone", zone},
                                   {"disabled", std::int64_t{disabled ? 1 : 0}},
                                   {"created_at", FormatTimestamp(clock_.WallNow())}});
    ASSERT_TRUE(inserted.has_value()) << inserted.error().ToString();
    clock_.Advance(std::chrono::seconds(1));
  };
  add("cinder-volume", "a@file", "nova", false);
  add("cinder-volume", "b@file", "nova", true);
  add("cinder-volume", "c@file", "zone2", true);
  add("cinder-scheduler", "a", "zone3", false);

  ports::HttpResponse zones = Send("GET", Path("os-availability-zone"));
  ASSERT_EQ(zones.status, 200) << zones.body;
  EXPECT_EQ(Body(zones), json::parse(R"({"availabilityZoneInfo": [
                {"zoneName": "nova", "zoneState": {"available": true}},
                {"zoneName": "zone2", "zoneState": {"available": false}}]})"));
  // Project-less too, and only GET.
  ports::HttpRequest request;
  request.method = "GET";
  request.path = "/v3/os-availability-zone";
  request.base_url = std::string(kBaseUrl);
  request.headers = {{"X-Auth-Token", "user:" + std::string(kProject)}};
  EXPECT_EQ(service_.Handle(request).status, 200);
  EXPECT_EQ(Send("POST", Path("os-availability-zone"), "{}").status, 405);
}

TEST_F(MetadataApiTest, ExtensionsListWhatIsServedInCindersShape) {
  ports::HttpResponse listed = Send("GET", Path("extensions"));
  ASSERT_EQ(listed.status, 200) << listed.body;
  json extensions = Body(listed)["extensions"];
  ASSERT_TRUE(extensions.is_array());
  std::vector<std::string> aliases;
  for (const json& extension : extensions) {
    EXPECT_EQ(extension.size(), 5u) << extension.dump();
    for (const char* key : {"name", "alias", "description", "updated"}) {
      EXPECT_TRUE(extension[key].is_string()) << key;
    }
    EXPECT_EQ(extension["links"], json::array());
    aliases.push_back(extension["alias"]);
  }
  for (const char* served : {"os-availability-zone",
                             "os-vol-image-meta",
                             "os-volume-actions",
                             "os-admin-actions",
                             "backups",
                             "os-vol-tenant-attr",
                             "os-quota-sets",
                             "os-quota-class-sets",
                             "os-used-limits"}) {
    EXPECT_NE(std::find(aliases.begin(), aliases.end(), served), aliases.end()) << served;
  }
  // Tempest's test_list_extensions with api_extensions = all looks for the name "Hosts".
  EXPECT_NE(std::find(aliases.begin(), aliases.end(), "os-hosts"), aliases.end());
  for (const char* not_served : {"os-snapshot-actions", "os-volume-manage"}) {
    EXPECT_EQ(std::find(aliases.begin(), aliases.end(), not_served), aliases.end())
        << not_served << " is not served: not listed";
  }

  ports::HttpResponse shown = Send("GET", Path("extensions/os-availability-zone"));
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown), json::parse(R"({"extension": {"name": "AvailabilityZones",
                "alias": "os-availability-zone", "description": "Describe Availability Zones.",
                "updated": "2013-06-27T00:00:00+00:00", "links": []}})"));
  EXPECT_EQ(Send("GET", Path("extensions/os-snapshot-actions")).status, 404);
  EXPECT_EQ(Send("POST", Path("extensions"), "{}").status, 404);
}

// ---------------------------------------------------------------------------------------------
// Python's printing of values, which the messages above rely on

TEST(PythonReprTest, PrintsValuesAsPython) {
  EXPECT_EQ(PythonRepr(json(nullptr)), "None");
  EXPECT_EQ(PythonRepr(json(true)), "True");
  EXPECT_EQ(PythonRepr(json("it's")), "\"it's\"");
  EXPECT_EQ(PythonRepr(json("a'b\"c")), "'a\\'b\"c'");
  EXPECT_EQ(PythonRepr(json::parse(R"({"a": [1, "x", null]})")), "{'a': [1, 'x', None]}");
  EXPECT_EQ(PythonStr(json("text")), "text");
  EXPECT_EQ(CharacterCount("\xc3\xa9t\xc3\xa9"), 3u);
  EXPECT_TRUE(IfMatchAdmits("", "abc"));
  EXPECT_TRUE(IfMatchAdmits("*", "abc"));
  EXPECT_TRUE(IfMatchAdmits("\"x\", \"abc\"", "abc"));
  EXPECT_FALSE(IfMatchAdmits("W/\"abc\"", "abc"));
  EXPECT_FALSE(IfMatchAdmits("\"x\"", "abc"));
}

}  // namespace
}  // namespace clinker::services
