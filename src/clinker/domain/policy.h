// Policy: who may call which API action, in oslo.policy's rule language and with Cinder's rule
// names and default check strings (Cinder 2023.1 "Antelope"; the same strings hold from Xena).
//
// The defaults give Cinder's three personas:
// - admin (Keystone role "admin" in any project): everything, in every project;
// - member (role "member" on the resource's project): manages its project's resources;
// - reader (role "reader" on the resource's project): reads them only.
// Admin-only actions (reset-status, force-delete, os-services, clusters, quota updates, volume
// type management) use `rule:admin_api`, so members and readers are refused (403).
//
// How the API uses it (Cinder's RequestContext.authorize and volume/api.py do the same):
// 1. Build PolicyCredentials from the validated token, then set `is_admin` once per request:
//    keystone mode `credentials.is_admin = policy.IsAdmin(credentials)` (the rule
//    "context_is_admin", role:admin by default); noauth mode `true` (Cinder's noauth middleware
//    makes every caller admin) and also add the role "admin" if missing, as Cinder's
//    RequestContext does for an is_admin context: the persona rules test role:admin, not
//    is_admin, so without it a noauth caller could not even list its volumes.
// 2. Actions on one existing resource (show, update, delete, actions, attach): look the resource
//    up scoped to the caller's project unless credentials.is_admin, so another project's
//    resource is 404 for a non-admin, as in Cinder (its DB queries are project-scoped); then
//    Enforce with PolicyTarget::ForProject(<the resource's project_id>) and answer 403 when
//    denied: "Policy doesn't allow <action> to be performed.".
// 3. Creates, lists and admin endpoints: Enforce with PolicyTarget::OfCaller(credentials), the
//    target Cinder uses when it has no object (the caller's own project and user).
// 4. `all_tenants` on lists is not a policy rule in Cinder: after "volume:get_all" (or
//    "volume:get_all_snapshots", "backup:get_all", ...) allowed the list, it is honoured only
//    when credentials.is_admin, and silently ignored otherwise (the list stays the caller's
//    project).
// 5. Attribute rules (volume_extension:volume_host_attribute, ..._tenant_attribute,
//    backup:backup_project_attribute, ...) decide whether a field is shown; enforce them like
//    the action, with the resource's project as the target, and drop the field when denied.
//
// Rule language (a subset of oslo.policy, same meaning):
//   ""                        always allowed (an empty rule)
//   @ / !                     always / never
//   role:<name>               the credentials hold the role; case-insensitive as in oslo
//   rule:<name>               the named rule
//   <attr>:%(<field>)s        credential attribute equals the target's field (project_id:...);
//                             the right side may mix text and %(field)s, %% is a '%'
//   <attr>:<literal>          credential attribute equals the text (is_admin:True)
//   '<text>':%(<field>)s      a quoted (or True/False/None/integer) left side is a literal
//   not X, X and Y, X or Y, ( ... )   precedence not > and > or; keywords case-insensitive
// Credential attributes: user_id, project_id, domain_id, user_domain_id, project_domain_id,
// system_scope, roles (matches any role, exactly), is_admin and is_admin_project ("True" or
// "False"), then PolicyCredentials::attributes. Target fields: project_id, user_id, then
// PolicyTarget::attributes. An empty string counts as absent, and a check on an absent value is
// false (oslo's KeyError): an unset target project can never match an unscoped token.
//
// Stricter than oslo, on purpose (a silently wrong policy is a security hole):
// - A rule oslo cannot parse is denied with a log line there; here Create fails naming the rule
//   and the column, so the service refuses to start on a bad policy file.
// - A reference to an undefined rule is false in oslo (and `not rule:typo` then allows);
//   here it is an error, as is a loop of rule references or a chain deeper than kMaxRuleDepth.
// - http:/https: checks (remote policy servers) are not supported: an error.
// - Enforcing an action the table does not know is a bug in the caller: CLINKER_ASSERT aborts
//   (oslo would deny quietly through its default rule).
// Not emulated: oslo's deprecated-rule fallback, except that the volume type create / update /
// delete rules default to `rule:volume_extension:types_manage` (and the encryption type rules
// to `rule:volume_extension:volume_type_encryption`), so an override of the old name still
// governs them, as oslo does with the deprecated name.
//
// Pure code: no I/O. A Policy is immutable after Create and safe to share between threads;
// copies share the compiled rules.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "clinker/core/error.h"

namespace clinker::domain {

// What the caller is: oslo.context's policy values, as Cinder's RequestContext gives them.
struct PolicyCredentials {
  std::string user_id;
  std::string project_id;  // The token's project (empty for a domain- or system-scoped token).
  std::string domain_id;   // The token's domain, for a domain-scoped token.
  std::string user_domain_id;
  std::string project_domain_id;
  std::string system_scope;  // "all" for a system-scoped token.
  std::vector<std::string> roles;
  // Cinder's context.is_admin: set by the API (see above), not derived here.
  bool is_admin = false;
  // keystonemiddleware's X-Is-Admin-Project; true unless Keystone names an admin project.
  bool is_admin_project = true;
  // Any other credential attribute a custom rule may name.
  std::map<std::string, std::string, std::less<>> attributes;
};

// What the action is on: the resource's owner, for %(...)s on the right of a check.
struct PolicyTarget {
  std::string project_id;
  std::string user_id;
  std::map<std::string, std::string, std::less<>> attributes;  // e.g. "domain_id".

  static PolicyTarget ForProject(std::string project_id);
  // Cinder's target when there is no object: the caller's own project and user.
  static PolicyTarget OfCaller(const PolicyCredentials& credentials);
};

// One row of the defaults table.
struct PolicyDefault {
  std::string_view name;
  std::string_view check;        // oslo check string; "" = always allowed.
  std::string_view description;  // What it governs (the API call), for docs and samples.
};

// The defaults, in one table: base rules first, then one group per resource.
std::span<const PolicyDefault> PolicyDefaults();

// Rule references may chain at most this deep (context: Cinder's deepest chain is 2).
inline constexpr int kMaxRuleDepth = 32;
// Parentheses and `not` may nest at most this deep inside one rule.
inline constexpr int kMaxRuleNesting = 64;

class Policy {
 public:
  // The defaults with `overrides` (rule name -> check string, from a policy file) applied: an
  // override replaces a default of the same name or adds a rule a check may refer to.
  // Errors (all kInvalidArgument): a rule that does not parse (message names the rule and the
  // column), an undefined rule:<name>, a loop of references, a chain deeper than kMaxRuleDepth.
  static Result<Policy> Create(const std::map<std::string, std::string>& overrides);

  // The defaults alone; they are code, so failing to build them is a bug (asserted).
  static Policy Default();

  // Whether `credentials` may do `action` on `target`. `action` must be a rule this policy has
  // (a default name, see policies:: below); anything else is a bug and aborts.
  bool Enforce(std::string_view action,
               const PolicyCredentials& credentials,
               const PolicyTarget& target) const;

  // Cinder's check_is_admin: the rule "context_is_admin" with the credentials' own project and
  // user as the target.
  bool IsAdmin(const PolicyCredentials& credentials) const;

  bool Has(std::string_view name) const;
  // The effective check string of a rule (the override if any); empty if there is no such rule.
  std::string RuleText(std::string_view name) const;
  // Names defined only by overrides (not in the defaults), sorted: worth a log line, as a typo in
  // an action's name in the policy file leaves the real action at its default.
  std::vector<std::string> ExtraRuleNames() const;

  struct Rules;  // Compiled rules; defined in policy.cc.

 private:
  explicit Policy(std::shared_ptr<const Rules> rules);

  std::shared_ptr<const Rules> rules_;
};

// The rule names Clinker enforces (Cinder's names). Use these constants, not literals: a typo
// then fails to compile instead of aborting at run time.
namespace policies {

// Base rules (cinder/policies/base.py).
inline constexpr std::string_view kContextIsAdmin = "context_is_admin";
inline constexpr std::string_view kAdminOrOwner = "admin_or_owner";
inline constexpr std::string_view kAdminApi = "admin_api";
inline constexpr std::string_view kSystemOrDomainOrProjectAdmin =
    "system_or_domain_or_project_admin";
inline constexpr std::string_view kProjectReaderOrAdmin = "xena_system_admin_or_project_reader";
inline constexpr std::string_view kProjectMemberOrAdmin = "xena_system_admin_or_project_member";

// Volumes (volumes.py, volume_actions.py).
inline constexpr std::string_view kVolumeCreate = "volume:create";
inline constexpr std::string_view kVolumeGet = "volume:get";
inline constexpr std::string_view kVolumeGetAll = "volume:get_all";
inline constexpr std::string_view kVolumeUpdate = "volume:update";
inline constexpr std::string_view kVolumeDelete = "volume:delete";
inline constexpr std::string_view kVolumeForceDelete = "volume:force_delete";
inline constexpr std::string_view kVolumeExtend = "volume:extend";
inline constexpr std::string_view kVolumeExtendAttached = "volume:extend_attached_volume";
inline constexpr std::string_view kVolumeMultiattach = "volume:multiattach";
inline constexpr std::string_view kVolumeResetStatus =
    "volume_extension:volume_admin_actions:reset_status";
inline constexpr std::string_view kVolumeAdminForceDelete =
    "volume_extension:volume_admin_actions:force_delete";
inline constexpr std::string_view kVolumeTenantAttribute =
    "volume_extension:volume_tenant_attribute";
inline constexpr std::string_view kVolumeHostAttribute = "volume_extension:volume_host_attribute";
inline constexpr std::string_view kVolumeMigStatusAttribute =
    "volume_extension:volume_mig_status_attribute";
// The legacy attach actions (POST /volumes/{id}/action).
inline constexpr std::string_view kVolumeInitializeConnection =
    "volume_extension:volume_actions:initialize_connection";
inline constexpr std::string_view kVolumeTerminateConnection =
    "volume_extension:volume_actions:terminate_connection";
inline constexpr std::string_view kVolumeReserve = "volume_extension:volume_actions:reserve";
inline constexpr std::string_view kVolumeUnreserve = "volume_extension:volume_actions:unreserve";
inline constexpr std::string_view kVolumeBeginDetaching =
    "volume_extension:volume_actions:begin_detaching";
inline constexpr std::string_view kVolumeRollDetaching =
    "volume_extension:volume_actions:roll_detaching";
inline constexpr std::string_view kVolumeAttach = "volume_extension:volume_actions:attach";
inline constexpr std::string_view kVolumeDetach = "volume_extension:volume_actions:detach";
inline constexpr std::string_view kVolumeRetype = "volume:retype";
inline constexpr std::string_view kVolumeUpdateReadonly = "volume:update_readonly_flag";

// Volume metadata, image metadata and admin metadata (volume_metadata.py).
inline constexpr std::string_view kVolumeMetadataGet = "volume:get_volume_metadata";
inline constexpr std::string_view kVolumeMetadataCreate = "volume:create_volume_metadata";
inline constexpr std::string_view kVolumeMetadataUpdate = "volume:update_volume_metadata";
inline constexpr std::string_view kVolumeMetadataDelete = "volume:delete_volume_metadata";
inline constexpr std::string_view kVolumeImageMetadataShow =
    "volume_extension:volume_image_metadata:show";
inline constexpr std::string_view kVolumeImageMetadataSet =
    "volume_extension:volume_image_metadata:set";
inline constexpr std::string_view kVolumeImageMetadataRemove =
    "volume_extension:volume_image_metadata:remove";
inline constexpr std::string_view kVolumeUpdateAdminMetadata =
    "volume:update_volume_admin_metadata";

// Snapshots (snapshots.py, snapshot_actions.py).
inline constexpr std::string_view kSnapshotCreate = "volume:create_snapshot";
inline constexpr std::string_view kSnapshotGet = "volume:get_snapshot";
inline constexpr std::string_view kSnapshotGetAll = "volume:get_all_snapshots";
inline constexpr std::string_view kSnapshotUpdate = "volume:update_snapshot";
inline constexpr std::string_view kSnapshotDelete = "volume:delete_snapshot";
inline constexpr std::string_view kSnapshotExtendedAttributes =
    "volume_extension:extended_snapshot_attributes";
// os-update_snapshot_status (snapshot_actions.py): what an out-of-band snapshot creator (Nova's
// assisted snapshots) reports; any project member by default.
inline constexpr std::string_view kSnapshotUpdateStatus =
    "snapshot_extension:snapshot_actions:update_snapshot_status";
inline constexpr std::string_view kSnapshotResetStatus =
    "volume_extension:snapshot_admin_actions:reset_status";
inline constexpr std::string_view kSnapshotForceDelete =
    "volume_extension:snapshot_admin_actions:force_delete";
// Snapshot metadata (snapshot_metadata.py); POST .../metadata is an update in Cinder.
inline constexpr std::string_view kSnapshotMetadataGet = "volume:get_snapshot_metadata";
inline constexpr std::string_view kSnapshotMetadataUpdate = "volume:update_snapshot_metadata";
inline constexpr std::string_view kSnapshotMetadataDelete = "volume:delete_snapshot_metadata";

// Backups (backups.py, backup_actions.py).
inline constexpr std::string_view kBackupCreate = "backup:create";
inline constexpr std::string_view kBackupGet = "backup:get";
inline constexpr std::string_view kBackupGetAll = "backup:get_all";
inline constexpr std::string_view kBackupUpdate = "backup:update";
inline constexpr std::string_view kBackupDelete = "backup:delete";
inline constexpr std::string_view kBackupRestore = "backup:restore";
inline constexpr std::string_view kBackupProjectAttribute = "backup:backup_project_attribute";
inline constexpr std::string_view kBackupImport = "backup:backup-import";
inline constexpr std::string_view kBackupExport = "backup:export-import";  // Cinder's name.
inline constexpr std::string_view kBackupResetStatus =
    "volume_extension:backup_admin_actions:reset_status";
inline constexpr std::string_view kBackupForceDelete =
    "volume_extension:backup_admin_actions:force_delete";

// Volume transfers (volume_transfer.py).
inline constexpr std::string_view kTransferCreate = "volume:create_transfer";
inline constexpr std::string_view kTransferAccept = "volume:accept_transfer";
inline constexpr std::string_view kTransferDelete = "volume:delete_transfer";
inline constexpr std::string_view kTransferGet = "volume:get_transfer";
inline constexpr std::string_view kTransferGetAll = "volume:get_all_transfers";

// Attachments, 3.27+ (attachments.py). Show and list have no policy in Cinder: they are only
// scoped to the caller's project (all projects for an admin).
inline constexpr std::string_view kAttachmentCreate = "volume:attachment_create";
inline constexpr std::string_view kAttachmentUpdate = "volume:attachment_update";
inline constexpr std::string_view kAttachmentDelete = "volume:attachment_delete";
inline constexpr std::string_view kAttachmentComplete = "volume:attachment_complete";
inline constexpr std::string_view kMultiattachBootableVolume = "volume:multiattach_bootable_volume";

// Services and clusters (services.py, clusters.py).
inline constexpr std::string_view kServicesIndex = "volume_extension:services:index";
inline constexpr std::string_view kServicesUpdate = "volume_extension:services:update";
inline constexpr std::string_view kClustersGet = "clusters:get";
inline constexpr std::string_view kClustersGetAll = "clusters:get_all";
inline constexpr std::string_view kClustersUpdate = "clusters:update";
inline constexpr std::string_view kFreezeHost = "volume:freeze_host";
inline constexpr std::string_view kThawHost = "volume:thaw_host";
inline constexpr std::string_view kFailoverHost = "volume:failover_host";
inline constexpr std::string_view kHostsManage = "volume_extension:hosts";
inline constexpr std::string_view kCapabilities = "volume_extension:capabilities";
inline constexpr std::string_view kSchedulerStatsGetPools =
    "scheduler_extension:scheduler_stats:get_pools";
inline constexpr std::string_view kMessageGetAll = "message:get_all";
inline constexpr std::string_view kMessageGet = "message:get";
inline constexpr std::string_view kMessageDelete = "message:delete";

// Quotas and limits (quotas.py, limits.py).
inline constexpr std::string_view kQuotasShow = "volume_extension:quotas:show";
inline constexpr std::string_view kQuotasUpdate = "volume_extension:quotas:update";
inline constexpr std::string_view kQuotasDelete = "volume_extension:quotas:delete";
inline constexpr std::string_view kUsedLimits = "limits_extension:used_limits";
// Quota classes (quota_class.py).
inline constexpr std::string_view kQuotaClassesManage = "volume_extension:quota_classes";
inline constexpr std::string_view kQuotaClassesGet = "volume_extension:quota_classes:get";
inline constexpr std::string_view kQuotaClassesUpdate = "volume_extension:quota_classes:update";

// Volume types (volume_type.py, type_extra_specs.py).
inline constexpr std::string_view kTypesManage = "volume_extension:types_manage";
inline constexpr std::string_view kTypeCreate = "volume_extension:type_create";
inline constexpr std::string_view kTypeUpdate = "volume_extension:type_update";
inline constexpr std::string_view kTypeDelete = "volume_extension:type_delete";
inline constexpr std::string_view kTypeGet = "volume_extension:type_get";
inline constexpr std::string_view kTypeGetAll = "volume_extension:type_get_all";
inline constexpr std::string_view kTypeExtraSpecsAttribute =
    "volume_extension:access_types_extra_specs";
inline constexpr std::string_view kTypeQosSpecsIdAttribute =
    "volume_extension:access_types_qos_specs_id";
inline constexpr std::string_view kTypeExtraSpecsIndex = "volume_extension:types_extra_specs:index";
inline constexpr std::string_view kTypeExtraSpecsShow = "volume_extension:types_extra_specs:show";
inline constexpr std::string_view kTypeExtraSpecsCreate =
    "volume_extension:types_extra_specs:create";
inline constexpr std::string_view kTypeExtraSpecsUpdate =
    "volume_extension:types_extra_specs:update";
inline constexpr std::string_view kTypeExtraSpecsDelete =
    "volume_extension:types_extra_specs:delete";
inline constexpr std::string_view kTypeExtraSpecsReadSensitive =
    "volume_extension:types_extra_specs:read_sensitive";
inline constexpr std::string_view kTypeEncryption = "volume_extension:volume_type_encryption";
inline constexpr std::string_view kTypeEncryptionCreate =
    "volume_extension:volume_type_encryption:create";
inline constexpr std::string_view kTypeEncryptionGet =
    "volume_extension:volume_type_encryption:get";
inline constexpr std::string_view kTypeEncryptionUpdate =
    "volume_extension:volume_type_encryption:update";
inline constexpr std::string_view kTypeEncryptionDelete =
    "volume_extension:volume_type_encryption:delete";

// Private volume types' access lists (volume_access.py).
inline constexpr std::string_view kTypeAccessAttribute = "volume_extension:volume_type_access";
inline constexpr std::string_view kTypeAccessAddProject =
    "volume_extension:volume_type_access:addProjectAccess";
inline constexpr std::string_view kTypeAccessRemoveProject =
    "volume_extension:volume_type_access:removeProjectAccess";
inline constexpr std::string_view kTypeAccessList =
    "volume_extension:volume_type_access:get_all_for_type";

// QoS specs (qos_specs.py).
inline constexpr std::string_view kQosSpecsGetAll = "volume_extension:qos_specs_manage:get_all";
inline constexpr std::string_view kQosSpecsGet = "volume_extension:qos_specs_manage:get";
inline constexpr std::string_view kQosSpecsCreate = "volume_extension:qos_specs_manage:create";
inline constexpr std::string_view kQosSpecsUpdate = "volume_extension:qos_specs_manage:update";
inline constexpr std::string_view kQosSpecsDelete = "volume_extension:qos_specs_manage:delete";
// Generic volume groups (group_types.py, groups.py, group_actions.py, group_snapshots.py,
// group_snapshot_actions.py).
inline constexpr std::string_view kGroupTypesManage = "group:group_types_manage";
inline constexpr std::string_view kGroupTypeCreate = "group:group_types:create";
inline constexpr std::string_view kGroupTypeUpdate = "group:group_types:update";
inline constexpr std::string_view kGroupTypeDelete = "group:group_types:delete";
inline constexpr std::string_view kGroupTypeSpecsAttribute = "group:access_group_types_specs";
inline constexpr std::string_view kGroupTypeSpecs = "group:group_types_specs";
inline constexpr std::string_view kGroupTypeSpecsGet = "group:group_types_specs:get";
inline constexpr std::string_view kGroupTypeSpecsGetAll = "group:group_types_specs:get_all";
inline constexpr std::string_view kGroupTypeSpecsCreate = "group:group_types_specs:create";
inline constexpr std::string_view kGroupTypeSpecsUpdate = "group:group_types_specs:update";
inline constexpr std::string_view kGroupTypeSpecsDelete = "group:group_types_specs:delete";
inline constexpr std::string_view kGroupCreate = "group:create";
inline constexpr std::string_view kGroupUpdate = "group:update";
inline constexpr std::string_view kGroupGet = "group:get";
inline constexpr std::string_view kGroupGetAll = "group:get_all";
inline constexpr std::string_view kGroupProjectAttribute = "group:group_project_attribute";
inline constexpr std::string_view kGroupDelete = "group:delete";
inline constexpr std::string_view kGroupResetStatus = "group:reset_status";
inline constexpr std::string_view kGroupSnapshotCreate = "group:create_group_snapshot";
inline constexpr std::string_view kGroupSnapshotDelete = "group:delete_group_snapshot";
inline constexpr std::string_view kGroupSnapshotUpdate = "group:update_group_snapshot";
inline constexpr std::string_view kGroupSnapshotGet = "group:get_group_snapshot";
inline constexpr std::string_view kGroupSnapshotGetAll = "group:get_all_group_snapshots";
inline constexpr std::string_view kGroupSnapshotProjectAttribute =
    "group:group_snapshot_project_attribute";
inline constexpr std::string_view kGroupSnapshotResetStatus = "group:reset_group_snapshot_status";

}  // namespace policies

}  // namespace clinker::domain
