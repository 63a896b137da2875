// Goal: check which Cinder policy rule PolicyActionFor (the rule of the route table's row that
// serves the request, api_routes.h) names for each API route: every
// collection's list, detail, summary, create, show, update and delete; DELETE ?force=true; each
// listed action of volumes, snapshots and backups and that an unlisted (or unreadable) action
// falls back to the resource's update rule, so no action is left unguarded; backup restore;
// attachments (writes guarded, reads not, as in Cinder); os-services and clusters; the metadata
// sub-resources of volumes and snapshots and the flag and image metadata actions; none for
// availability zones and extensions; and "" for routes that do not exist. Then that every rule it
// can name is a rule of Policy::Default(): ApiService enforces what it names, and Enforce aborts on
// a rule the policy does not have.
//
// Method: a table of (method, path after /v3/{project_id}, query, body) -> rule name, run through
// PolicyActionFor; the second test sweeps every collection, path shape, method and action key
// (including ones no table lists) and checks each non-empty answer with Policy::Has.
#include "clinker/services/api_policy.h"

#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "clinker/domain/policy.h"
#include "clinker/services/api_routes.h"

namespace clinker::services {
namespace {

namespace p = domain::policies;

// "volumes/v1/action" -> {"volumes", "v1", "action"}, as ApiService splits the path after
// /v3/{project_id}.
std::vector<std::string> Rest(std::string_view path) {
  const std::vector<std::string_view> segments = PathSegments(path);
  return {segments.begin(), segments.end()};
}

ports::HttpRequest Request(std::string_view method, std::string_view query, std::string_view body) {
  ports::HttpRequest request;
  request.method = std::string(method);
  request.body = std::string(body);
  if (!query.empty()) {
    std::size_t equals = query.find('=');
    request.query.emplace_back(
        std::string(query.substr(0, equals)),
        equals == std::string_view::npos ? std::string() : std::string(query.substr(equals + 1)));
  }
  return request;
}

struct Case {
  std::string_view method;
  std::string_view path;   // After /v3/{project_id}.
  std::string_view query;  // One "name=value", or empty.
  std::string_view body;
  std::string_view rule;  // "" = no rule of its own.
};

constexpr std::string_view kNoRule;

const Case kCases[] = {
    // Volumes.
    {"GET", "volumes", "", "", p::kVolumeGetAll},
    {"GET", "volumes/detail", "", "", p::kVolumeGetAll},
    {"GET", "volumes/summary", "", "", p::kVolumeGetAll},
    {"POST", "volumes", "", R"({"volume": {"size": 1}})", p::kVolumeCreate},
    {"GET", "volumes/v1", "", "", p::kVolumeGet},
    {"PUT", "volumes/v1", "", R"({"volume": {"name": "x"}})", p::kVolumeUpdate},
    {"DELETE", "volumes/v1", "", "", p::kVolumeDelete},
    {"DELETE", "volumes/v1", "force=true", "", p::kVolumeForceDelete},
    {"DELETE", "volumes/v1", "force=True", "", p::kVolumeForceDelete},
    {"DELETE", "volumes/v1", "force=false", "", p::kVolumeDelete},
    {"DELETE", "volumes/v1", "cascade=true", "", p::kVolumeDelete},
    {"POST", "volumes/v1/action", "", R"({"os-extend": {"new_size": 2}})", p::kVolumeExtend},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-reset_status": {"status": "error"}})",
     p::kVolumeResetStatus},
    {"POST", "volumes/v1/action", "", R"({"os-force_delete": {}})", p::kVolumeAdminForceDelete},
    {"POST", "volumes/v1/action", "", R"({"os-reserve": {}})", p::kVolumeReserve},
    {"POST", "volumes/v1/action", "", R"({"os-unreserve": {}})", p::kVolumeUnreserve},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-initialize_connection": {"connector": {}}})",
     p::kVolumeInitializeConnection},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-terminate_connection": {"connector": {}}})",
     p::kVolumeTerminateConnection},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-attach": {"mountpoint": "/dev/vdb"}})",
     p::kVolumeAttach},
    {"POST", "volumes/v1/action", "", R"({"os-detach": {}})", p::kVolumeDetach},
    {"POST", "volumes/v1/action", "", R"({"os-begin_detaching": {}})", p::kVolumeBeginDetaching},
    {"POST", "volumes/v1/action", "", R"({"os-roll_detaching": {}})", p::kVolumeRollDetaching},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-set_bootable": {"bootable": true}})",
     p::kVolumeUpdate},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-update_readonly_flag": {"readonly": true}})",
     p::kVolumeUpdateReadonly},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-set_image_metadata": {"metadata": {}}})",
     p::kVolumeImageMetadataSet},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-unset_image_metadata": {"key": "k"}})",
     p::kVolumeImageMetadataRemove},
    {"POST", "volumes/v1/action", "", R"({"os-show_image_metadata": {}})", p::kVolumeMetadataGet},
    // Volume metadata.
    {"GET", "volumes/v1/metadata", "", "", p::kVolumeMetadataGet},
    {"POST", "volumes/v1/metadata", "", R"({"metadata": {}})", p::kVolumeMetadataCreate},
    {"PUT", "volumes/v1/metadata", "", R"({"metadata": {}})", p::kVolumeMetadataUpdate},
    {"DELETE", "volumes/v1/metadata", "", "", kNoRule},
    {"GET", "volumes/v1/metadata/k", "", "", p::kVolumeMetadataGet},
    {"PUT", "volumes/v1/metadata/k", "", R"({"meta": {"k": "v"}})", p::kVolumeMetadataUpdate},
    {"DELETE", "volumes/v1/metadata/k", "", "", p::kVolumeMetadataDelete},
    {"POST", "volumes/v1/metadata/k", "", "", kNoRule},
    // Unlisted or unreadable actions: the update rule, never no rule.
    {"POST", "volumes/v1/action", "", R"({"os-migrate_volume": {"host": "h"}})", p::kVolumeUpdate},
    {"POST",
     "volumes/v1/action",
     "",
     R"({"os-extend": {}, "os-reset_status": {}})",
     p::kVolumeUpdate},
    {"POST", "volumes/v1/action", "", "not json", p::kVolumeUpdate},
    {"POST", "volumes/v1/action", "", "", p::kVolumeUpdate},
    {"POST", "volumes/v1/action", "", R"(["os-extend"])", p::kVolumeUpdate},
    // Routes that do not exist (the router answers 404 / 405).
    {"PUT", "volumes", "", "", kNoRule},
    {"POST", "volumes/detail", "", "", kNoRule},
    {"GET", "volumes/v1/action", "", "", kNoRule},
    {"GET", "volumes/v1/extra/deeper", "", "", kNoRule},

    // Snapshots.
    {"GET", "snapshots", "", "", p::kSnapshotGetAll},
    {"GET", "snapshots/detail", "", "", p::kSnapshotGetAll},
    {"POST", "snapshots", "", R"({"snapshot": {"volume_id": "v1"}})", p::kSnapshotCreate},
    {"GET", "snapshots/s1", "", "", p::kSnapshotGet},
    {"PUT", "snapshots/s1", "", R"({"snapshot": {"name": "x"}})", p::kSnapshotUpdate},
    {"DELETE", "snapshots/s1", "", "", p::kSnapshotDelete},
    {"POST",
     "snapshots/s1/action",
     "",
     R"({"os-reset_status": {"status": "error"}})",
     p::kSnapshotResetStatus},
    {"POST", "snapshots/s1/action", "", R"({"os-force_delete": {}})", p::kSnapshotForceDelete},
    {"POST",
     "snapshots/s1/action",
     "",
     R"({"os-update_snapshot_status": {"status": "available"}})",
     p::kSnapshotUpdateStatus},
    {"POST", "snapshots/s1/action", "", "{}", p::kSnapshotUpdate},
    {"PUT", "snapshots", "", "", kNoRule},
    // Snapshot metadata: Cinder's POST (merge) is an update.
    {"GET", "snapshots/s1/metadata", "", "", p::kSnapshotMetadataGet},
    {"POST", "snapshots/s1/metadata", "", R"({"metadata": {}})", p::kSnapshotMetadataUpdate},
    {"PUT", "snapshots/s1/metadata", "", R"({"metadata": {}})", p::kSnapshotMetadataUpdate},
    {"GET", "snapshots/s1/metadata/k", "", "", p::kSnapshotMetadataGet},
    {"PUT", "snapshots/s1/metadata/k", "", R"({"meta": {"k": "v"}})", p::kSnapshotMetadataUpdate},
    {"DELETE", "snapshots/s1/metadata/k", "", "", p::kSnapshotMetadataDelete},

    // Backups.
    {"GET", "backups", "", "", p::kBackupGetAll},
    {"GET", "backups/detail", "", "", p::kBackupGetAll},
    {"POST", "backups", "", R"({"backup": {"volume_id": "v1"}})", p::kBackupCreate},
    {"GET", "backups/b1", "", "", p::kBackupGet},
    {"PUT", "backups/b1", "", R"({"backup": {"name": "x"}})", p::kBackupUpdate},
    {"DELETE", "backups/b1", "", "", p::kBackupDelete},
    {"POST", "backups/b1/restore", "", R"({"restore": {}})", p::kBackupRestore},
    {"GET", "backups/b1/export_record", "", "", p::kBackupExport},
    {"POST", "backups/import_record", "", R"({"backup-record": {}})", p::kBackupImport},
    {"POST",
     "backups/b1/action",
     "",
     R"({"os-reset_status": {"status": "error"}})",
     p::kBackupResetStatus},
    {"POST", "backups/b1/action", "", R"({"os-force_delete": {}})", p::kBackupForceDelete},
    {"POST", "backups/b1/action", "", R"({"os-unknown": {}})", p::kBackupUpdate},
    {"GET", "backups/b1/restore", "", "", kNoRule},

    // Volume transfers, under both of Cinder's URLs.
    {"GET", "os-volume-transfer", "", "", p::kTransferGetAll},
    {"GET", "os-volume-transfer/detail", "", "", p::kTransferGetAll},
    {"POST", "os-volume-transfer", "", R"({"transfer": {"volume_id": "v1"}})", p::kTransferCreate},
    {"GET", "os-volume-transfer/t1", "", "", p::kTransferGet},
    {"DELETE", "os-volume-transfer/t1", "", "", p::kTransferDelete},
    {"POST",
     "os-volume-transfer/t1/accept",
     "",
     R"({"accept": {"auth_key": "k"}})",
     p::kTransferAccept},
    {"GET", "volume-transfers", "", "", p::kTransferGetAll},
    {"GET", "volume-transfers/detail", "", "", p::kTransferGetAll},
    {"POST", "volume-transfers", "", R"({"transfer": {"volume_id": "v1"}})", p::kTransferCreate},
    {"GET", "volume-transfers/t1", "", "", p::kTransferGet},
    {"DELETE", "volume-transfers/t1", "", "", p::kTransferDelete},
    {"POST",
     "volume-transfers/t1/accept",
     "",
     R"({"accept": {"auth_key": "k"}})",
     p::kTransferAccept},
    {"PUT", "volume-transfers/t1", "", "{}", kNoRule},

    // Attachments: writes are guarded, reads have no rule (project scoping decides).
    {"POST", "attachments", "", R"({"attachment": {"volume_uuid": "v1"}})", p::kAttachmentCreate},
    {"PUT", "attachments/a1", "", R"({"attachment": {"connector": {}}})", p::kAttachmentUpdate},
    {"DELETE", "attachments/a1", "", "", p::kAttachmentDelete},
    {"POST", "attachments/a1/action", "", R"({"os-complete": {}})", p::kAttachmentComplete},
    {"GET", "attachments", "", "", kNoRule},
    {"GET", "attachments/detail", "", "", kNoRule},
    {"GET", "attachments/a1", "", "", kNoRule},

    // os-services and clusters: admin endpoints.
    {"GET", "os-services", "", "", p::kServicesIndex},
    {"GET", "os-services", "binary=cinder-volume", "", p::kServicesIndex},
    {"PUT",
     "os-services/disable",
     "",
     R"({"host": "h", "binary": "cinder-volume"})",
     p::kServicesUpdate},
    {"PUT",
     "os-services/enable",
     "",
     R"({"host": "h", "binary": "cinder-volume"})",
     p::kServicesUpdate},
    {"GET", "clusters", "", "", p::kClustersGetAll},
    {"GET", "clusters/detail", "", "", p::kClustersGetAll},
    {"GET", "clusters/c1", "", "", p::kClustersGet},
    {"PUT", "clusters/enable", "", R"({"name": "c1"})", p::kClustersUpdate},
    {"PUT", "clusters/disable", "", R"({"name": "c1"})", p::kClustersUpdate},
    {"PUT", "os-services/freeze", "", R"({"host": "h"})", p::kServicesUpdate},

    // Admin information and user messages.
    {"GET", "os-hosts", "", "", p::kHostsManage},
    {"GET", "os-hosts/h1", "", "", p::kHostsManage},
    {"GET", "scheduler-stats/get_pools", "detail=True", "", p::kSchedulerStatsGetPools},
    {"GET", "capabilities/h1@file", "", "", p::kCapabilities},
    {"GET", "messages", "", "", p::kMessageGetAll},
    {"GET", "messages/m1", "", "", p::kMessageGet},
    {"DELETE", "messages/m1", "", "", p::kMessageDelete},

    // Volume types, their extra specs and access lists.
    {"GET", "types", "", "", p::kTypeGetAll},
    {"GET", "types", "is_public=none", "", p::kTypeGetAll},
    {"POST", "types", "", R"({"volume_type": {"name": "t"}})", p::kTypeCreate},
    {"GET", "types/t1", "", "", p::kTypeGet},
    {"GET", "types/default", "", "", p::kTypeGet},
    {"PUT", "types/t1", "", R"({"volume_type": {"name": "x"}})", p::kTypeUpdate},
    {"DELETE", "types/t1", "", "", p::kTypeDelete},
    {"GET", "types/t1/extra_specs", "", "", p::kTypeExtraSpecsIndex},
    {"POST",
     "types/t1/extra_specs",
     "",
     R"({"extra_specs": {"k": "v"}})",
     p::kTypeExtraSpecsCreate},
    {"GET", "types/t1/extra_specs/k", "", "", p::kTypeExtraSpecsShow},
    {"PUT", "types/t1/extra_specs/k", "", R"({"k": "v"})", p::kTypeExtraSpecsUpdate},
    {"DELETE", "types/t1/extra_specs/k", "", "", p::kTypeExtraSpecsDelete},
    {"GET", "types/t1/os-volume-type-access", "", "", p::kTypeAccessList},
    {"GET", "qos-specs", "", "", p::kQosSpecsGetAll},
    {"POST", "qos-specs", "", R"({"qos_specs": {"name": "q"}})", p::kQosSpecsCreate},
    {"GET", "qos-specs/q1", "", "", p::kQosSpecsGet},
    {"PUT", "qos-specs/q1", "", R"({"qos_specs": {"k": "v"}})", p::kQosSpecsUpdate},
    {"DELETE", "qos-specs/q1", "force=true", "", p::kQosSpecsDelete},
    {"PUT", "qos-specs/q1/delete_keys", "", R"({"keys": ["k"]})", p::kQosSpecsDelete},
    {"GET", "qos-specs/q1/associations", "", "", p::kQosSpecsGetAll},
    {"GET", "qos-specs/q1/associate", "vol_type_id=t1", "", p::kQosSpecsUpdate},
    {"GET", "qos-specs/q1/disassociate", "vol_type_id=t1", "", p::kQosSpecsUpdate},
    {"GET", "qos-specs/q1/disassociate_all", "", "", p::kQosSpecsUpdate},
    {"GET", "types/t1/encryption", "", "", p::kTypeEncryptionGet},
    {"POST",
     "types/t1/encryption",
     "",
     R"({"encryption": {"provider": "p", "control_location": "front-end"}})",
     p::kTypeEncryptionCreate},
    {"GET", "types/t1/encryption/cipher", "", "", p::kTypeEncryptionGet},
    {"PUT", "types/t1/encryption/e1", "", R"({"encryption": {}})", p::kTypeEncryptionUpdate},
    {"DELETE", "types/t1/encryption/e1", "", "", p::kTypeEncryptionDelete},
    {"POST",
     "types/t1/action",
     "",
     R"({"addProjectAccess": {"project": "p"}})",
     p::kTypeAccessAddProject},
    {"POST",
     "types/t1/action",
     "",
     R"({"removeProjectAccess": {"project": "p"}})",
     p::kTypeAccessRemoveProject},
    {"POST", "types/t1/action", "", R"({"unknown": {}})", p::kTypeUpdate},
    {"POST", "volumes/v1/action", "", R"({"os-retype": {"new_type": "t"}})", p::kVolumeRetype},
    {"PUT", "types", "", "", kNoRule},
    {"PUT", "types/t1/extra_specs", "", "", kNoRule},
    // Availability zones and extensions: any caller, as in Cinder.
    {"GET", "os-availability-zone", "", "", kNoRule},
    {"GET", "extensions", "", "", kNoRule},
    {"GET", "extensions/os-vol-image-meta", "", "", kNoRule},

    // Group types and group specs (show and list have no rule in Cinder), groups and their
    // actions (create-from-src is POST /groups/action), group snapshots.
    {"GET", "group_types", "", "", kNoRule},
    {"GET", "group_types/g1", "", "", kNoRule},
    {"POST", "group_types", "", R"({"group_type": {"name": "n"}})", p::kGroupTypeCreate},
    {"PUT", "group_types/g1", "", R"({"group_type": {}})", p::kGroupTypeUpdate},
    {"DELETE", "group_types/g1", "", "", p::kGroupTypeDelete},
    {"GET", "group_types/g1/group_specs", "", "", p::kGroupTypeSpecsGetAll},
    {"POST", "group_types/g1/group_specs", "", "{}", p::kGroupTypeSpecsCreate},
    {"GET", "group_types/g1/group_specs/k", "", "", p::kGroupTypeSpecsGet},
    {"PUT", "group_types/g1/group_specs/k", "", "{}", p::kGroupTypeSpecsUpdate},
    {"DELETE", "group_types/g1/group_specs/k", "", "", p::kGroupTypeSpecsDelete},
    {"GET", "groups", "", "", p::kGroupGetAll},
    {"GET", "groups/detail", "", "", p::kGroupGetAll},
    {"POST", "groups", "", R"({"group": {}})", p::kGroupCreate},
    {"POST", "groups/action", "", R"({"create-from-src": {}})", p::kGroupCreate},
    {"GET", "groups/g1", "", "", p::kGroupGet},
    {"PUT", "groups/g1", "", R"({"group": {}})", p::kGroupUpdate},
    {"DELETE", "groups/g1", "", "", kNoRule},
    {"POST", "groups/g1/action", "", R"({"delete": {}})", p::kGroupDelete},
    {"POST", "groups/g1/action", "", R"({"reset_status": {}})", p::kGroupResetStatus},
    {"POST", "groups/g1/action", "", R"({"unknown": {}})", p::kGroupUpdate},
    {"GET", "group_snapshots", "", "", p::kGroupSnapshotGetAll},
    {"GET", "group_snapshots/detail", "", "", p::kGroupSnapshotGetAll},
    {"POST", "group_snapshots", "", R"({"group_snapshot": {}})", p::kGroupSnapshotCreate},
    {"GET", "group_snapshots/s1", "", "", p::kGroupSnapshotGet},
    {"PUT", "group_snapshots/s1", "", "{}", p::kGroupSnapshotUpdate},
    {"DELETE", "group_snapshots/s1", "", "", p::kGroupSnapshotDelete},
    {"POST",
     "group_snapshots/s1/action",
     "",
     R"({"reset_status": {}})",
     p::kGroupSnapshotResetStatus},

    // Collections that do not exist, and no collection at all.
    {"POST", "no-such-collection", "", "{}", kNoRule},
    {"DELETE", "unknown/x", "", "", kNoRule},
    {"GET", "", "", "", kNoRule},
};

TEST(ApiPolicyTest, EachRouteNamesCindersRule) {
  for (const Case& row : kCases) {
    SCOPED_TRACE(std::string(row.method) + " " + std::string(row.path) + "?" +
                 std::string(row.query) + " " + std::string(row.body));
    ports::HttpRequest request = Request(row.method, row.query, row.body);
    EXPECT_EQ(PolicyActionFor(request, Rest(row.path)), row.rule);
  }
}

// Setting and removing image metadata also pass the volume metadata rules, as in Cinder (its
// volume API checks them inside the image metadata handlers).
TEST(ApiPolicyTest, ImageMetadataChangesHaveASecondRule) {
  EXPECT_EQ(SecondaryPolicyActionFor(
                Request("POST", "", R"({"os-set_image_metadata": {"metadata": {}}})"),
                Rest("volumes/v1/action")),
            p::kVolumeMetadataUpdate);
  EXPECT_EQ(
      SecondaryPolicyActionFor(Request("POST", "", R"({"os-unset_image_metadata": {"key": "k"}})"),
                               Rest("volumes/v1/action")),
      p::kVolumeMetadataDelete);
  EXPECT_EQ(SecondaryPolicyActionFor(Request("POST", "", R"({"os-show_image_metadata": {}})"),
                                     Rest("volumes/v1/action")),
            "");
  EXPECT_EQ(SecondaryPolicyActionFor(Request("POST", "", R"({"os-extend": {}})"),
                                     Rest("volumes/v1/action")),
            "");
}

// Freeze, thaw and failover pass a second rule of their own, as in Cinder.
TEST(ApiPolicyTest, FreezeThawAndFailoverHaveASecondRule) {
  EXPECT_EQ(SecondaryPolicyActionFor(Request("PUT", "", "{}"), Rest("os-services/freeze")),
            p::kFreezeHost);
  EXPECT_EQ(SecondaryPolicyActionFor(Request("PUT", "", "{}"), Rest("os-services/thaw")),
            p::kThawHost);
  EXPECT_EQ(SecondaryPolicyActionFor(Request("PUT", "", "{}"), Rest("os-services/failover_host")),
            p::kFailoverHost);
  EXPECT_EQ(SecondaryPolicyActionFor(Request("PUT", "", "{}"), Rest("os-services/disable")), "");
  EXPECT_EQ(SecondaryPolicyActionFor(Request("GET", "", ""), Rest("os-services")), "");
  const domain::Policy policy = domain::Policy::Default();
  for (std::string_view rule : {p::kFreezeHost, p::kThawHost, p::kFailoverHost}) {
    EXPECT_TRUE(policy.Has(rule)) << rule;
  }
}

TEST(ApiPolicyTest, EveryRuleItNamesIsADefaultRule) {
  const domain::Policy policy = domain::Policy::Default();

  // The table's rules first: each must exist.
  for (const Case& row : kCases) {
    if (!row.rule.empty()) {
      EXPECT_TRUE(policy.Has(row.rule)) << row.rule;
    }
  }

  // Then a sweep of every shape the router knows, and some it does not, so a rule added to
  // api_policy.cc without a default is caught even if the table above misses its route.
  const std::vector<std::string_view> collections = {"volumes",
                                                     "snapshots",
                                                     "backups",
                                                     "attachments",
                                                     "os-services",
                                                     "clusters",
                                                     "types",
                                                     "os-volume-transfer",
                                                     "volume-transfers",
                                                     "os-hosts",
                                                     "scheduler-stats",
                                                     "capabilities",
                                                     "messages",
                                                     "qos-specs",

                                                     "group_types",
                                                     "groups",
                                                     "group_snapshots"};
  const std::vector<std::string_view> shapes = {"",
                                                "/detail",
                                                "/summary",
                                                "/x1",
                                                "/x1/action",
                                                "/x1/restore",
                                                "/x1/export_record",
                                                "/import_record",
                                                "/x1/accept",
                                                "/x1/a/b",
                                                "/enable",
                                                "/x1/extra_specs",
                                                "/x1/extra_specs/k",
                                                "/x1/os-volume-type-access",
                                                "/x1/encryption",
                                                "/x1/encryption/e1",
                                                "/x1/metadata",
                                                "/x1/metadata/k",
                                                "/x1/associations",
                                                "/x1/associate",
                                                "/x1/disassociate",
                                                "/x1/disassociate_all",
                                                "/x1/delete_keys",

                                                "/action",
                                                "/get_pools",
                                                "/freeze",
                                                "/x1/group_specs",
                                                "/x1/group_specs/k"};
  const std::vector<std::string_view> methods = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"};
  const std::vector<std::string_view> bodies = {"",
                                                "{}",
                                                R"({"os-extend": {}})",
                                                R"({"os-reset_status": {}})",
                                                R"({"os-update_snapshot_status": {}})",
                                                R"({"os-force_delete": {}})",
                                                R"({"os-reserve": {}})",
                                                R"({"os-unreserve": {}})",
                                                R"({"os-initialize_connection": {}})",
                                                R"({"os-terminate_connection": {}})",
                                                R"({"os-attach": {}})",
                                                R"({"os-detach": {}})",
                                                R"({"os-begin_detaching": {}})",
                                                R"({"os-roll_detaching": {}})",
                                                R"({"os-complete": {}})",
                                                R"({"os-retype": {}})",
                                                R"({"addProjectAccess": {}})",
                                                R"({"removeProjectAccess": {}})",
                                                R"({"os-set_bootable": {}})",
                                                R"({"os-update_readonly_flag": {}})",
                                                R"({"os-set_image_metadata": {}})",
                                                R"({"os-unset_image_metadata": {}})",
                                                R"({"os-show_image_metadata": {}})",
                                                R"({"delete": {}})",
                                                R"({"reset_status": {}})",
                                                R"({"create-from-src": {}})"};
  const std::vector<std::string_view> queries = {"", "force=true", "force=0"};

  std::set<std::string> named;
  for (std::string_view collection : collections) {
    for (std::string_view shape : shapes) {
      std::vector<std::string> rest = Rest(std::string(collection) + std::string(shape));
      for (std::string_view method : methods) {
        for (std::string_view body : bodies) {
          for (std::string_view query : queries) {
            std::string_view rule = PolicyActionFor(Request(method, query, body), rest);
            if (!rule.empty()) {
              named.emplace(rule);
            }
          }
        }
      }
    }
  }
  for (const std::string& rule : named) {
    EXPECT_TRUE(policy.Has(rule)) << rule << " is named by PolicyActionFor but has no default";
  }
  // The sweep reaches every rule of the table (so it is not vacuous).
  for (const Case& row : kCases) {
    if (!row.rule.empty()) {
      EXPECT_EQ(named.count(std::string(row.rule)), 1u) << row.rule << " not reached by the sweep";
    }
  }
}

}  // namespace
}  // namespace clinker::services
