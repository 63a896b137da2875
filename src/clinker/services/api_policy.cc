#include "clinker/services/api_policy.h"

#include <nlohmann/json.hpp>

#include "clinker/domain/policy.h"
#include "clinker/services/api_common.h"

namespace clinker::services {
namespace {

namespace p = domain::policies;

// The action named by a POST .../action body ({"os-extend": {...}}); empty when the body is not
// one such object (the handler refuses it with 400).
std::string ActionKey(const ports::HttpRequest& request) {
  nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
  if (!body.is_object() || body.size() != 1) {
    return {};
  }
  return body.begin().key();
}

struct ActionRule {
  std::string_view action;
  std::string_view rule;
};

constexpr ActionRule kVolumeActions[] = {
    {"os-extend", p::kVolumeExtend},
    {"os-reset_status", p::kVolumeResetStatus},
    {"os-force_delete", p::kVolumeAdminForceDelete},
    {"os-reserve", p::kVolumeReserve},
    {"os-unreserve", p::kVolumeUnreserve},
    {"os-initialize_connection", p::kVolumeInitializeConnection},
    {"os-terminate_connection", p::kVolumeTerminateConnection},
    {"os-attach", p::kVolumeAttach},
    {"os-detach", p::kVolumeDetach},
    {"os-begin_detaching", p::kVolumeBeginDetaching},
    {"os-roll_detaching", p::kVolumeRollDetaching},
    {"os-retype", p::kVolumeRetype},
    {"os-set_bootable", p::kVolumeUpdate},
    {"os-update_readonly_flag", p::kVolumeUpdateReadonly},
    {"os-set_image_metadata", p::kVolumeImageMetadataSet},
    {"os-unset_image_metadata", p::kVolumeImageMetadataRemove},
    {"os-show_image_metadata", p::kVolumeMetadataGet},
};

constexpr ActionRule kTypeActions[] = {
    {"addProjectAccess", p::kTypeAccessAddProject},
    {"removeProjectAccess", p::kTypeAccessRemoveProject},
};

constexpr ActionRule kSnapshotActions[] = {
    {"os-update_snapshot_status", p::kSnapshotUpdateStatus},
    {"os-reset_status", p::kSnapshotResetStatus},
    {"os-force_delete", p::kSnapshotForceDelete},
};

constexpr ActionRule kGroupActions[] = {
    {"delete", p::kGroupDelete},
    {"reset_status", p::kGroupResetStatus},
};

constexpr ActionRule kGroupSnapshotActions[] = {
    {"reset_status", p::kGroupSnapshotResetStatus},
};

constexpr ActionRule kBackupActions[] = {
    {"os-reset_status", p::kBackupResetStatus},
    {"os-force_delete", p::kBackupForceDelete},
};

template <std::size_t N>
std::string_view RuleOfAction(const ActionRule (&table)[N],
                              const std::string& action,
                              std::string_view otherwise) {
  for (const ActionRule& row : table) {
    if (row.action == action) {
      return row.rule;
    }
  }
  return otherwise;
}

// The rules of a collection: list, create, show, update, delete.
struct CollectionRules {
  std::string_view get_all;
  std::string_view create;
  std::string_view get;
  std::string_view update;
  std::string_view remove;
};

std::string_view CollectionRule(const CollectionRules& rules,
                                const std::string& method,
                                const std::vector<std::string>& rest) {
  if (rest.size() == 1) {
    return method == "GET" ? rules.get_all : method == "POST" ? rules.create : "";
  }
  if (rest.size() == 2 && (rest[1] == "detail" || rest[1] == "summary")) {
    return method == "GET" ? rules.get_all : "";
  }
  if (rest.size() == 2) {
    return method == "GET"      ? rules.get
           : method == "PUT"    ? rules.update
           : method == "DELETE" ? rules.remove
                                : "";
  }
  return "";
}

// /types[/{id}[/action | /extra_specs[/{key}] | /encryption[/{x}] | /os-volume-type-access]].
// GET /types/default is a show. Unknown actions are guarded by the type update rule, unknown
// sub-resources by none (the router answers 404).
std::string_view TypeRule(const std::string& method, const std::vector<std::string>& rest) {
  if (rest.size() <= 2) {
    return CollectionRule(
        {p::kTypeGetAll, p::kTypeCreate, p::kTypeGet, p::kTypeUpdate, p::kTypeDelete},
        method,
        rest);
  }
  const std::string& sub = rest[2];
  if (sub == "extra_specs") {
    if (rest.size() == 3) {
      return method == "GET"    ? p::kTypeExtraSpecsIndex
             : method == "POST" ? p::kTypeExtraSpecsCreate
                                : "";
    }
    if (rest.size() == 4) {
      return method == "GET"      ? p::kTypeExtraSpecsShow
             : method == "PUT"    ? p::kTypeExtraSpecsUpdate
             : method == "DELETE" ? p::kTypeExtraSpecsDelete
                                  : "";
    }
    return "";
  }
  if (sub == "encryption") {
    if (rest.size() == 3) {
      return method == "GET"    ? p::kTypeEncryptionGet
             : method == "POST" ? p::kTypeEncryptionCreate
                                : "";
    }
    if (rest.size() == 4) {
      return method == "GET"      ? p::kTypeEncryptionGet
             : method == "PUT"    ? p::kTypeEncryptionUpdate
             : method == "DELETE" ? p::kTypeEncryptionDelete
                                  : "";
    }
    return "";
  }
  if (sub == "os-volume-type-access" && rest.size() == 3) {
    return method == "GET" ? p::kTypeAccessList : "";
  }
  return "";
}

// /group_types[/{id}[/group_specs[/{key}]]]. Showing and listing group types has no rule in
// Cinder (what a caller sees is filtered by is_public).
std::string_view GroupTypeRule(const std::string& method, const std::vector<std::string>& rest) {
  if (rest.size() <= 2) {
    return CollectionRule(
        {"", p::kGroupTypeCreate, "", p::kGroupTypeUpdate, p::kGroupTypeDelete}, method, rest);
  }
  if (rest[2] != "group_specs") {
    return "";
  }
  if (rest.size() == 3) {
    return method == "GET"    ? p::kGroupTypeSpecsGetAll
           : method == "POST" ? p::kGroupTypeSpecsCreate
                              : "";
  }
  if (rest.size() == 4) {
    return method == "GET"      ? p::kGroupTypeSpecsGet
           : method == "PUT"    ? p::kGroupTypeSpecsUpdate
           : method == "DELETE" ? p::kGroupTypeSpecsDelete
                                : "";
  }
  return "";
}

// The rules of a metadata sub-resource: .../{id}/metadata (GET, POST, PUT) and
// .../{id}/metadata/{key} (GET, PUT, DELETE). `rest` is known to name one of them.
struct MetadataRules {
  std::string_view get;
  std::string_view create;
  std::string_view update;
  std::string_view remove;
};

std::string_view MetadataRule(const MetadataRules& rules,
                              const std::string& method,
                              const std::vector<std::string>& rest) {
  if (rest.size() == 3) {
    return method == "GET"    ? rules.get
           : method == "POST" ? rules.create
           : method == "PUT"  ? rules.update
                              : "";
  }
  return method == "GET"      ? rules.get
         : method == "PUT"    ? rules.update
         : method == "DELETE" ? rules.remove
                              : "";
}

bool IsMetadataPath(const std::vector<std::string>& rest) {
  return (rest.size() == 3 || rest.size() == 4) && rest[2] == "metadata";
}

}  // namespace

std::string_view PolicyActionFor(const ports::HttpRequest& request,
                                 const std::vector<std::string>& rest) {
  if (rest.empty()) {
    return "";
  }
  const std::string& method = request.method;
  const std::string& collection = rest[0];
  if (collection == "volumes") {
    if (rest.size() == 3 && rest[2] == "action" && method == "POST") {
      return RuleOfAction(kVolumeActions, ActionKey(request), p::kVolumeUpdate);
    }
    if (IsMetadataPath(rest)) {
      return MetadataRule({p::kVolumeMetadataGet,
                           p::kVolumeMetadataCreate,
                           p::kVolumeMetadataUpdate,
                           p::kVolumeMetadataDelete},
                          method,
                          rest);
    }
    if (rest.size() == 2 && method == "DELETE") {
      std::string force;
      if (request.QueryValue("force", &force) && TruthyParameter(force)) {
        return p::kVolumeForceDelete;
      }
    }
    return CollectionRule(
        {p::kVolumeGetAll, p::kVolumeCreate, p::kVolumeGet, p::kVolumeUpdate, p::kVolumeDelete},
        method,
        rest);
  }
  if (collection == "snapshots") {
    if (rest.size() == 3 && rest[2] == "action" && method == "POST") {
      return RuleOfAction(kSnapshotActions, ActionKey(request), p::kSnapshotUpdate);
    }
    if (IsMetadataPath(rest)) {
      // Cinder's POST (merge) is an update of the snapshot's metadata.
      return MetadataRule({p::kSnapshotMetadataGet,
                           p::kSnapshotMetadataUpdate,
                           p::kSnapshotMetadataUpdate,
                           p::kSnapshotMetadataDelete},
                          method,
                          rest);
    }
    return CollectionRule({p::kSnapshotGetAll,
                           p::kSnapshotCreate,
                           p::kSnapshotGet,
                           p::kSnapshotUpdate,
                           p::kSnapshotDelete},
                          method,
                          rest);
  }
  if (collection == "backups") {
    if (rest.size() == 3 && rest[2] == "restore" && method == "POST") {
      return p::kBackupRestore;
    }
    if (rest.size() == 3 && rest[2] == "export_record" && method == "GET") {
      return p::kBackupExport;
    }
    if (rest.size() == 2 && rest[1] == "import_record" && method == "POST") {
      return p::kBackupImport;
    }
    if (rest.size() == 3 && rest[2] == "action" && method == "POST") {
      return RuleOfAction(kBackupActions, ActionKey(request), p::kBackupUpdate);
    }
    return CollectionRule(
        {p::kBackupGetAll, p::kBackupCreate, p::kBackupGet, p::kBackupUpdate, p::kBackupDelete},
        method,
        rest);
  }
  if (collection == "attachments") {
    if (rest.size() == 3 && rest[2] == "action" && method == "POST") {
      return p::kAttachmentComplete;  // os-complete, the only attachment action.
    }
    // Reads have no rule of their own in Cinder: a caller sees its project's attachments.
    return CollectionRule(
        {"", p::kAttachmentCreate, "", p::kAttachmentUpdate, p::kAttachmentDelete}, method, rest);
  }
  if (collection == "os-volume-transfer" || collection == "volume-transfers") {
    if (rest.size() == 3 && rest[2] == "accept") {
      return method == "POST" ? p::kTransferAccept : "";
    }
    return CollectionRule(
        {p::kTransferGetAll, p::kTransferCreate, p::kTransferGet, "", p::kTransferDelete},
        method,
        rest);
  }
  if (collection == "types") {
    if (rest.size() == 3 && rest[2] == "action" && method == "POST") {
      return RuleOfAction(kTypeActions, ActionKey(request), p::kTypeUpdate);
    }
    return TypeRule(method, rest);
  }
  if (collection == "qos-specs") {
    if (rest.size() == 3) {
      const std::string& sub = rest[2];
      if (sub == "associations") {
        return method == "GET" ? p::kQosSpecsGetAll : "";
      }
      if (sub == "associate" || sub == "disassociate" || sub == "disassociate_all") {
        return method == "GET" ? p::kQosSpecsUpdate : "";
      }
      if (sub == "delete_keys") {
        return method == "PUT" ? p::kQosSpecsDelete : "";
      }
      return "";
    }
    return CollectionRule({p::kQosSpecsGetAll,
                           p::kQosSpecsCreate,
                           p::kQosSpecsGet,
                           p::kQosSpecsUpdate,
                           p::kQosSpecsDelete},
                          method,
                          rest);
  }
  if (collection == "group_types") {
    return GroupTypeRule(method, rest);
  }
  if (collection == "groups") {
    // POST /groups/action is create-from-src (group:create); POST /groups/{id}/action names its
    // action (unknown ones are guarded by group:update, the handler answers 400).
    if (rest.size() == 2 && rest[1] == "action") {
      return method == "POST" ? p::kGroupCreate : "";
    }
    if (rest.size() == 3 && rest[2] == "action" && method == "POST") {
      return RuleOfAction(kGroupActions, ActionKey(request), p::kGroupUpdate);
    }
    return CollectionRule(
        {p::kGroupGetAll, p::kGroupCreate, p::kGroupGet, p::kGroupUpdate, ""}, method, rest);
  }
  if (collection == "group_snapshots") {
    if (rest.size() == 3 && rest[2] == "action" && method == "POST") {
      return RuleOfAction(kGroupSnapshotActions, ActionKey(request), p::kGroupSnapshotUpdate);
    }
    return CollectionRule({p::kGroupSnapshotGetAll,
                           p::kGroupSnapshotCreate,
                           p::kGroupSnapshotGet,
                           p::kGroupSnapshotUpdate,
                           p::kGroupSnapshotDelete},
                          method,
                          rest);
  }
  // Quotas are not served yet (404 after the check), but their admin-only changes are refused
  // to others with 403 first, as Cinder does.
  // Quota changes are admin-only; shows are checked by the handler against the target project
  // (a member may show its own project's quota), as Cinder's authorize with a target.
  if (collection == "os-quota-sets" && method == "PUT") {
    return p::kQuotasUpdate;
  }
  if (collection == "os-quota-sets" && method == "DELETE") {
    return p::kQuotasDelete;
  }
  if (collection == "os-quota-class-sets") {
    return method == "PUT" ? p::kQuotaClassesUpdate : p::kQuotaClassesGet;
  }
  if (collection == "os-services") {
    return method == "GET" ? p::kServicesIndex : p::kServicesUpdate;
  }
  if (collection == "os-hosts") {
    return p::kHostsManage;
  }
  if (collection == "scheduler-stats") {
    return p::kSchedulerStatsGetPools;
  }
  if (collection == "capabilities") {
    return p::kCapabilities;
  }
  if (collection == "messages") {
    return rest.size() == 1     ? p::kMessageGetAll
           : method == "DELETE" ? p::kMessageDelete
                                : p::kMessageGet;
  }
  if (collection == "clusters") {
    if (method != "GET") {
      return p::kClustersUpdate;
    }
    return rest.size() == 1 || (rest.size() == 2 && rest[1] == "detail") ? p::kClustersGetAll
                                                                         : p::kClustersGet;
  }
  return "";
}

std::string_view SecondaryPolicyActionFor(const ports::HttpRequest& request,
                                          const std::vector<std::string>& rest) {
  // Image metadata goes through Cinder's volume metadata calls, which check their own rules.
  if (rest.size() == 3 && rest[0] == "volumes" && rest[2] == "action" && request.method == "POST") {
    const std::string action = ActionKey(request);
    if (action == "os-set_image_metadata") {
      return p::kVolumeMetadataUpdate;
    }
    if (action == "os-unset_image_metadata") {
      return p::kVolumeMetadataDelete;
    }
    return "";
  }
  if (rest.size() != 2 || rest[0] != "os-services" || request.method != "PUT") {
    return "";
  }
  if (rest[1] == "freeze") {
    return p::kFreezeHost;
  }
  if (rest[1] == "thaw") {
    return p::kThawHost;
  }
  if (rest[1] == "failover_host" || rest[1] == "failover") {
    return p::kFailoverHost;
  }
  return "";
}

}  // namespace clinker::services
