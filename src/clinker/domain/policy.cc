#include "clinker/domain/policy.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "clinker/core/assert.h"
#include "clinker/core/error.h"

namespace clinker::domain {

namespace {

// Persona check strings, by reference to Cinder's base rules.
constexpr std::string_view kReader = "rule:xena_system_admin_or_project_reader";
constexpr std::string_view kMember = "rule:xena_system_admin_or_project_member";
constexpr std::string_view kAdmin = "rule:admin_api";

// The defaults table. Check strings are Cinder's (2023.1; unchanged since Xena): base.py's
// legacy and Xena rules, which Cinder's list_rules() still registers, and the
// DocumentedRuleDefaults of the per-resource files. Only the rules for what Clinker serves or is
// about to serve are here.
constexpr auto kDefaults = std::to_array<PolicyDefault>({
    // Base rules.
    {policies::kContextIsAdmin,
     "role:admin",
     "Decides what is required for the 'is_admin:True' check to succeed."},
    {policies::kAdminOrOwner,
     "is_admin:True or (role:admin and is_admin_project:True) or project_id:%(project_id)s",
     "Legacy rule for most non-admin APIs (no Clinker default uses it)."},
    {policies::kAdminApi,
     "is_admin:True or (role:admin and is_admin_project:True)",
     "Default rule for most admin APIs."},
    {policies::kSystemOrDomainOrProjectAdmin,
     "(role:admin and system_scope:all) or (role:admin and domain_id:%(domain_id)s) or "
     "(role:admin and project_id:%(project_id)s)",
     "Legacy rule for admins of the cloud, a domain or a project (no Clinker default uses it)."},
    {policies::kProjectReaderOrAdmin,
     "(role:admin) or (role:reader and project_id:%(project_id)s)",
     "Personas system-admin (role admin in any project) and project-reader or better."},
    {policies::kProjectMemberOrAdmin,
     "(role:admin) or (role:member and project_id:%(project_id)s)",
     "Personas system-admin (role admin in any project) and project-member or better."},

    // Volumes.
    {policies::kVolumeCreate, kMember, "Create volume. POST /volumes"},
    {policies::kVolumeGet, kReader, "Show volume. GET /volumes/{volume_id}"},
    {policies::kVolumeGetAll,
     kReader,
     "List volumes or get summary of volumes. GET /volumes, /volumes/detail, /volumes/summary"},
    {policies::kVolumeUpdate,
     kMember,
     "Update volume or its bootable flag. PUT /volumes/{volume_id}, os-set_bootable"},
    {policies::kVolumeDelete, kMember, "Delete volume. DELETE /volumes/{volume_id}"},
    {policies::kVolumeForceDelete,
     kAdmin,
     "Force delete a volume. DELETE /volumes/{volume_id}?force=true (3.23)"},
    {policies::kVolumeExtend,
     kMember,
     "Extend a volume. POST /volumes/{volume_id}/action os-extend"},
    {policies::kVolumeExtendAttached,
     kMember,
     "Extend an attached volume (3.42). POST /volumes/{volume_id}/action os-extend"},
    {policies::kVolumeMultiattach, kMember, "Create a multiattach capable volume. POST /volumes"},
    {policies::kVolumeResetStatus,
     kAdmin,
     "Reset status of a volume. POST /volumes/{volume_id}/action os-reset_status"},
    {policies::kVolumeAdminForceDelete,
     kAdmin,
     "Force delete a volume. POST /volumes/{volume_id}/action os-force_delete"},
    {policies::kVolumeTenantAttribute,
     kReader,
     "Show os-vol-tenant-attr:tenant_id in volume show and detail."},
    {policies::kVolumeHostAttribute,
     kAdmin,
     "Show os-vol-host-attr:host in volume show and detail."},
    {policies::kVolumeMigStatusAttribute,
     kAdmin,
     "Show os-vol-mig-status-attr:* in volume show and detail."},
    {policies::kVolumeInitializeConnection,
     kMember,
     "Initialize volume attachment. POST /volumes/{volume_id}/action os-initialize_connection"},
    {policies::kVolumeTerminateConnection,
     kMember,
     "Terminate volume attachment. POST /volumes/{volume_id}/action os-terminate_connection"},
    {policies::kVolumeReserve,
     kMember,
     "Mark volume as reserved. POST /volumes/{volume_id}/action os-reserve"},
    {policies::kVolumeUnreserve,
     kMember,
     "Unmark volume as reserved. POST /volumes/{volume_id}/action os-unreserve"},
    {policies::kVolumeBeginDetaching,
     kMember,
     "Begin detach volumes. POST /volumes/{volume_id}/action os-begin_detaching"},
    {policies::kVolumeRollDetaching,
     kMember,
     "Roll back volume status to in-use. POST /volumes/{volume_id}/action os-roll_detaching"},
    {policies::kVolumeAttach,
     kMember,
     "Add attachment metadata. POST /volumes/{volume_id}/action os-attach"},
    {policies::kVolumeDetach,
     kMember,
     "Clear attachment metadata. POST /volumes/{volume_id}/action os-detach"},
    {policies::kVolumeRetype,
     kMember,
     "Retype a volume. POST /volumes/{volume_id}/action os-retype"},
    {policies::kVolumeUpdateReadonly,
     kMember,
     "Update a volume's readonly flag. POST /volumes/{volume_id}/action "
     "os-update_readonly_flag"},

    // Volume metadata, image metadata and admin metadata.
    {policies::kVolumeMetadataGet,
     kReader,
     "Show volume's metadata or one specified metadata with a given key. GET "
     "/volumes/{volume_id}/metadata[/{key}], POST /volumes/{volume_id}/action "
     "os-show_image_metadata"},
    {policies::kVolumeMetadataCreate,
     kMember,
     "Create volume metadata. POST /volumes/{volume_id}/metadata"},
    {policies::kVolumeMetadataUpdate,
     kMember,
     "Replace a volume's metadata dictionary or update a single metadatum with a given key. PUT "
     "/volumes/{volume_id}/metadata[/{key}]"},
    {policies::kVolumeMetadataDelete,
     kMember,
     "Delete a volume's metadatum with the given key. DELETE /volumes/{volume_id}/metadata/{key}"},
    {policies::kVolumeImageMetadataShow,
     kReader,
     "Include a volume's image metadata in volume detail responses. GET /volumes/detail, "
     "/volumes/{volume_id}"},
    {policies::kVolumeImageMetadataSet,
     kMember,
     "Set image metadata for a volume. POST /volumes/{volume_id}/action os-set_image_metadata"},
    {policies::kVolumeImageMetadataRemove,
     kMember,
     "Remove specific image metadata from a volume. POST /volumes/{volume_id}/action "
     "os-unset_image_metadata"},
    {policies::kVolumeUpdateAdminMetadata,
     kAdmin,
     "Update volume admin metadata (os-update_readonly_flag, os-attach). Cinder checks it with an "
     "elevated context, so it never refuses a caller the other rules let through."},

    // Snapshots.
    {policies::kSnapshotCreate, kMember, "Create snapshot. POST /snapshots"},
    {policies::kSnapshotGet, kReader, "Show snapshot. GET /snapshots/{snapshot_id}"},
    {policies::kSnapshotGetAll, kReader, "List snapshots. GET /snapshots, /snapshots/detail"},
    {policies::kSnapshotUpdate, kMember, "Update snapshot. PUT /snapshots/{snapshot_id}"},
    {policies::kSnapshotDelete, kMember, "Delete snapshot. DELETE /snapshots/{snapshot_id}"},
    {policies::kSnapshotExtendedAttributes,
     kReader,
     "Show os-extended-snapshot-attributes:* in snapshot show and detail."},
    {policies::kSnapshotUpdateStatus,
     kMember,
     "Update database fields of snapshot. POST /snapshots/{snapshot_id}/action "
     "os-update_snapshot_status"},
    {policies::kSnapshotResetStatus,
     kAdmin,
     "Reset status of a snapshot. POST /snapshots/{snapshot_id}/action os-reset_status"},
    {policies::kSnapshotForceDelete,
     kAdmin,
     "Force delete a snapshot. POST /snapshots/{snapshot_id}/action os-force_delete"},
    {policies::kSnapshotMetadataGet,
     kReader,
     "Show snapshot's metadata or one specified metadata with a given key. GET "
     "/snapshots/{snapshot_id}/metadata[/{key}]"},
    {policies::kSnapshotMetadataUpdate,
     kMember,
     "Update snapshot's metadata or one specified metadata with a given key. POST, PUT "
     "/snapshots/{snapshot_id}/metadata, PUT /snapshots/{snapshot_id}/metadata/{key}"},
    {policies::kSnapshotMetadataDelete,
     kMember,
     "Delete snapshot's specified metadata with a given key. DELETE "
     "/snapshots/{snapshot_id}/metadata/{key}"},

    // Backups.
    {policies::kBackupCreate, kMember, "Create backup. POST /backups"},
    {policies::kBackupGet, kReader, "Show backup. GET /backups/{backup_id}"},
    {policies::kBackupGetAll, kReader, "List backups. GET /backups, /backups/detail"},
    {policies::kBackupUpdate, kMember, "Update backup (3.9). PUT /backups/{backup_id}"},
    {policies::kBackupDelete, kMember, "Delete backup. DELETE /backups/{backup_id}"},
    {policies::kBackupRestore, kMember, "Restore backup. POST /backups/{backup_id}/restore"},
    {policies::kBackupProjectAttribute,
     kAdmin,
     "Show os-backup-project-attr:project_id in backup show and detail (3.18)."},
    {policies::kBackupImport, kAdmin, "Import backup. POST /backups/{backup_id}/import_record"},
    {policies::kBackupExport, kAdmin, "Export backup. GET /backups/{backup_id}/export_record"},
    {policies::kBackupResetStatus,
     kAdmin,
     "Reset status of a backup. POST /backups/{backup_id}/action os-reset_status"},
    {policies::kBackupForceDelete,
     kAdmin,
     "Force delete a backup. POST /backups/{backup_id}/action os-force_delete"},

    // Volume transfers (volume_transfer.py). Accepting is a member's right in any project: the
    // transfer belongs to the giving project, and the auth key is what authorizes the taker.
    {policies::kTransferGetAll,
     kReader,
     "List volume transfer. GET /os-volume-transfer, /os-volume-transfer/detail, "
     "/volume-transfers, /volume-transfers/detail"},
    {policies::kTransferCreate,
     kMember,
     "Create a volume transfer. POST /os-volume-transfer, /volume-transfers"},
    {policies::kTransferGet,
     kReader,
     "Show one specified volume transfer. GET /os-volume-transfer/{transfer_id}, "
     "/volume-transfers/{transfer_id}"},
    {policies::kTransferAccept,
     kMember,
     "Accept a volume transfer. POST /os-volume-transfer/{transfer_id}/accept, "
     "/volume-transfers/{transfer_id}/accept"},
    {policies::kTransferDelete,
     kMember,
     "Delete volume transfer. DELETE /os-volume-transfer/{transfer_id}, "
     "/volume-transfers/{transfer_id}"},

    // Attachments (3.27+).
    {policies::kAttachmentCreate, kMember, "Create attachment. POST /attachments"},
    {policies::kAttachmentUpdate, kMember, "Update attachment. PUT /attachments/{attachment_id}"},
    {policies::kAttachmentDelete,
     kMember,
     "Delete attachment. DELETE /attachments/{attachment_id}"},
    {policies::kAttachmentComplete,
     kMember,
     "Mark an attachment completed (3.44). POST /attachments/{attachment_id}/action os-complete"},
    {policies::kMultiattachBootableVolume,
     kMember,
     "Allow multiattach of bootable volumes. POST /attachments"},

    // Services and clusters.
    {policies::kServicesIndex, kAdmin, "List all services. GET /os-services"},
    {policies::kServicesUpdate,
     kAdmin,
     "Update service: enable, disable, freeze, thaw, failover, set-log, get-log. "
     "PUT /os-services/{action}"},
    {policies::kClustersGet, kAdmin, "Show cluster (3.7). GET /clusters/{cluster_id}"},
    {policies::kClustersGetAll, kAdmin, "List clusters (3.7). GET /clusters, /clusters/detail"},
    {policies::kClustersUpdate, kAdmin, "Update cluster (3.7). PUT /clusters/{cluster_id}"},
    {policies::kFreezeHost, kAdmin, "Freeze a backend host. PUT /os-services/freeze"},
    {policies::kThawHost, kAdmin, "Thaw a backend host. PUT /os-services/thaw"},
    {policies::kFailoverHost,
     kAdmin,
     "Failover a backend host. PUT /os-services/failover_host, /os-services/failover (3.26)"},

    // Admin information and user messages.
    {policies::kHostsManage, kAdmin, "List, update or show hosts for a project. GET /os-hosts"},
    {policies::kCapabilities, kAdmin, "Show backend capabilities. GET /capabilities/{host_name}"},
    {policies::kSchedulerStatsGetPools,
     kAdmin,
     "List all backend pools. GET /scheduler-stats/get_pools"},
    {policies::kMessageGetAll, kReader, "List messages (3.3). GET /messages"},
    {policies::kMessageGet, kReader, "Show message (3.3). GET /messages/{message_id}"},
    {policies::kMessageDelete, kMember, "Delete message (3.3). DELETE /messages/{message_id}"},

    // Quotas and limits.
    {policies::kQuotasShow,
     kReader,
     "Show project quota, usage and defaults. GET /os-quota-sets/{project_id}[/default]"},
    {policies::kQuotasUpdate, kAdmin, "Update project quota. PUT /os-quota-sets/{project_id}"},
    {policies::kQuotasDelete, kAdmin, "Delete project quota. DELETE /os-quota-sets/{project_id}"},
    {policies::kUsedLimits, kReader, "Show limits with used limit attributes. GET /limits"},
    {policies::kQuotaClassesManage, kAdmin, "Show and update quota classes (the older policy)."},
    {policies::kQuotaClassesGet,
     kAdmin,
     "Show project quota class. GET /os-quota-class-sets/{class}"},
    {policies::kQuotaClassesUpdate,
     kAdmin,
     "Update project quota class. PUT /os-quota-class-sets/{class}"},

    // Generic volume groups. As for volume types, the group type and group spec rules point
    // at their deprecated single rules, so an override of the old name stays in force.
    {policies::kGroupTypesManage,
     kAdmin,
     "Create, update and delete group types (the older single policy)."},
    {policies::kGroupTypeCreate,
     "rule:group:group_types_manage",
     "Create a group type. POST /group_types"},
    {policies::kGroupTypeUpdate,
     "rule:group:group_types_manage",
     "Update a group type. PUT /group_types/{group_type_id}"},
    {policies::kGroupTypeDelete,
     "rule:group:group_types_manage",
     "Delete a group type. DELETE /group_types/{group_type_id}"},
    {policies::kGroupTypeSpecsAttribute, kAdmin, "Show group_specs in group type show and list."},
    {policies::kGroupTypeSpecs, kAdmin, "Manage group type specs (the older single policy)."},
    {policies::kGroupTypeSpecsGet,
     "rule:group:group_types_specs",
     "Show one group spec. GET /group_types/{group_type_id}/group_specs/{key}"},
    {policies::kGroupTypeSpecsGetAll,
     "rule:group:group_types_specs",
     "List group specs. GET /group_types/{group_type_id}/group_specs"},
    {policies::kGroupTypeSpecsCreate,
     "rule:group:group_types_specs",
     "Create group specs. POST /group_types/{group_type_id}/group_specs"},
    {policies::kGroupTypeSpecsUpdate,
     "rule:group:group_types_specs",
     "Update one group spec. PUT /group_types/{group_type_id}/group_specs/{key}"},
    {policies::kGroupTypeSpecsDelete,
     "rule:group:group_types_specs",
     "Delete one group spec. DELETE /group_types/{group_type_id}/group_specs/{key}"},
    {policies::kGroupGetAll, kReader, "List groups. GET /groups, /groups/detail"},
    {policies::kGroupCreate,
     kMember,
     "Create a group, or one from a source. POST /groups, POST /groups/action"},
    {policies::kGroupGet, kReader, "Show a group. GET /groups/{group_id}"},
    {policies::kGroupUpdate, kMember, "Update a group. PUT /groups/{group_id}"},
    {policies::kGroupProjectAttribute, kAdmin, "Show project_id in group views (3.58)."},
    {policies::kGroupDelete, kMember, "Delete a group. POST /groups/{group_id}/action (delete)"},
    {policies::kGroupResetStatus,
     kAdmin,
     "Reset the status of a group. POST /groups/{group_id}/action (reset_status)"},
    {policies::kGroupSnapshotGetAll,
     kReader,
     "List group snapshots. GET /group_snapshots, /group_snapshots/detail"},
    {policies::kGroupSnapshotCreate, kMember, "Create a group snapshot. POST /group_snapshots"},
    {policies::kGroupSnapshotGet,
     kReader,
     "Show a group snapshot. GET /group_snapshots/{group_snapshot_id}"},
    {policies::kGroupSnapshotDelete,
     kMember,
     "Delete a group snapshot. DELETE /group_snapshots/{group_snapshot_id}"},
    {policies::kGroupSnapshotUpdate,
     kMember,
     "Update a group snapshot. PUT /group_snapshots/{group_snapshot_id}"},
    {policies::kGroupSnapshotProjectAttribute,
     kAdmin,
     "Show project_id in group snapshot views (3.58)."},
    {policies::kGroupSnapshotResetStatus,
     kAdmin,
     "Reset the status of a group snapshot. POST /group_snapshots/{id}/action (reset_status)"},

    // Volume types. Cinder split types_manage into create/update/delete (all admin_api) and
    // kept types_manage as their deprecated rule; pointing them at it keeps an operator's
    // override of the old name in force, as oslo's deprecated-rule fallback would.
    {policies::kTypesManage,
     kAdmin,
     "Create, update and delete volume types (the older single policy)."},
    {policies::kTypeCreate,
     "rule:volume_extension:types_manage",
     "Create volume type. POST /types"},
    {policies::kTypeUpdate,
     "rule:volume_extension:types_manage",
     "Update volume type. PUT /types/{type_id}"},
    {policies::kTypeDelete,
     "rule:volume_extension:types_manage",
     "Delete volume type. DELETE /types/{type_id}"},
    {policies::kTypeGet, kReader, "Show one volume type. GET /types/{type_id}"},
    {policies::kTypeGetAll, kReader, "List volume types. GET /types"},
    {policies::kTypeExtraSpecsAttribute,
     kReader,
     "Include extra_specs in volume type show and list."},
    {policies::kTypeQosSpecsIdAttribute,
     kAdmin,
     "Include qos_specs_id in volume type show and list."},
    {policies::kTypeExtraSpecsIndex,
     kReader,
     "List type extra specs. GET /types/{type_id}/extra_specs"},
    {policies::kTypeExtraSpecsShow,
     kReader,
     "Show one type extra spec. GET /types/{type_id}/extra_specs/{key}"},
    {policies::kTypeExtraSpecsCreate,
     kAdmin,
     "Create type extra specs. POST /types/{type_id}/extra_specs"},
    {policies::kTypeExtraSpecsUpdate,
     kAdmin,
     "Update type extra spec. PUT /types/{type_id}/extra_specs/{key}"},
    {policies::kTypeExtraSpecsDelete,
     kAdmin,
     "Delete type extra spec. DELETE /types/{type_id}/extra_specs/{key}"},
    {policies::kQosSpecsGetAll,
     kAdmin,
     "List qos specs or list all associations. GET /qos-specs, GET "
     "/qos-specs/{qos_id}/associations"},
    {policies::kQosSpecsGet, kAdmin, "Show qos specs. GET /qos-specs/{qos_id}"},
    {policies::kQosSpecsCreate, kAdmin, "Create qos specs. POST /qos-specs"},
    {policies::kQosSpecsUpdate,
     kAdmin,
     "Update qos specs (including updating association). PUT /qos-specs/{qos_id}, GET "
     "/qos-specs/{qos_id}/associate, /disassociate, /disassociate_all"},
    {policies::kQosSpecsDelete,
     kAdmin,
     "delete qos specs or unset one specified qos key. DELETE /qos-specs/{qos_id}, PUT "
     "/qos-specs/{qos_id}/delete_keys"},
    {policies::kTypeExtraSpecsReadSensitive,
     kAdmin,
     "Include extra specs that reveal deployment details in volume type responses."},

    // Volume type encryption: Cinder's four rules, each admin_api with the older single rule as
    // its deprecated name (pointed at, as for types_manage above).
    {policies::kTypeEncryption,
     kAdmin,
     "Create, show, update and delete volume type encryption (the older single policy)."},
    {policies::kTypeEncryptionCreate,
     "rule:volume_extension:volume_type_encryption",
     "Create volume type encryption. POST /types/{type_id}/encryption"},
    {policies::kTypeEncryptionGet,
     "rule:volume_extension:volume_type_encryption",
     "Show a volume type's encryption type, or one of its items. GET "
     "/types/{type_id}/encryption[/{key}]"},
    {policies::kTypeEncryptionUpdate,
     "rule:volume_extension:volume_type_encryption",
     "Update volume type encryption. PUT /types/{type_id}/encryption/{encryption_id}"},
    {policies::kTypeEncryptionDelete,
     "rule:volume_extension:volume_type_encryption",
     "Delete volume type encryption. DELETE /types/{type_id}/encryption/{encryption_id}"},

    // Volume type access (private types).
    {policies::kTypeAccessAttribute,
     kMember,
     "Include os-volume-type-access:is_public in volume type show, list and create."},
    {policies::kTypeAccessAddProject,
     kAdmin,
     "Add volume type access for a project. POST /types/{type_id}/action addProjectAccess"},
    {policies::kTypeAccessRemoveProject,
     kAdmin,
     "Remove volume type access for a project. POST /types/{type_id}/action "
     "removeProjectAccess"},
    {policies::kTypeAccessList,
     kAdmin,
     "List the projects with access to a private volume type. "
     "GET /types/{type_id}/os-volume-type-access"},
});

// ---- The compiled form of a rule ----------------------------------------------------------------

// A right-hand side: text with %(field)s holes filled from the target.
struct TemplatePart {
  bool is_field = false;
  std::string text;  // Literal text, or the target field's name.
};

using Template = std::vector<TemplatePart>;

struct Check {
  enum class Kind { kAlways, kNever, kRole, kRule, kGeneric, kAnd, kOr, kNot };
  Kind kind = Kind::kNever;
  // kRule: the rule's name. kGeneric: the credential attribute, or the literal when `literal`.
  std::string name;
  bool literal = false;
  Template match;               // kRole, kGeneric.
  std::vector<Check> operands;  // kAnd, kOr: two or more. kNot: one.

  static Check Of(Kind kind) {
    Check check;
    check.kind = kind;
    return check;
  }
};

// ---- Tokens -------------------------------------------------------------------------------------

enum class TokenType { kOpen, kClose, kAnd, kOr, kNot, kCheck, kQuoted };

struct Token {
  TokenType type;
  std::string_view text;
  std::size_t column;  // 1-based, in the rule's text.
};

// One allocation, and no `"literal" + std::string`, which trips GCC 12's -Wrestrict false
// positive at -O3 (GCC bug 105329).
std::string Join(std::initializer_list<std::string_view> parts) {
  std::size_t size = 0;
  for (const std::string_view part : parts) {
    size += part.size();
  }
  std::string joined;
  joined.reserve(size);
  for (const std::string_view part : parts) {
    joined.append(part);
  }
  return joined;
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string Lower(std::string_view text) {
  std::string lowered(text);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return lowered;
}

// oslo's tokenizer: split on whitespace, then peel '(' off the front and ')' off the back of each
// piece; what is left is a keyword, a quoted string (never valid in a rule) or a check.
std::vector<Token> Tokenize(std::string_view text) {
  std::vector<Token> tokens;
  std::size_t at = 0;
  while (at < text.size()) {
    if (IsSpace(text[at])) {
      ++at;
      continue;
    }
    std::size_t end = at;
    while (end < text.size() && !IsSpace(text[end])) {
      ++end;
    }
    std::string_view piece = text.substr(at, end - at);
    std::size_t column = at + 1;
    while (!piece.empty() && piece.front() == '(') {
      tokens.push_back({TokenType::kOpen, piece.substr(0, 1), column});
      piece.remove_prefix(1);
      ++column;
    }
    std::size_t closing = 0;
    while (closing < piece.size() && piece[piece.size() - 1 - closing] == ')') {
      ++closing;
    }
    std::string_view word = piece.substr(0, piece.size() - closing);
    if (!word.empty()) {
      const std::string lowered = Lower(word);
      TokenType type = TokenType::kCheck;
      if (lowered == "and") {
        type = TokenType::kAnd;
      } else if (lowered == "or") {
        type = TokenType::kOr;
      } else if (lowered == "not") {
        type = TokenType::kNot;
      } else if (word.size() >= 2 && (word.front() == '"' || word.front() == '\'') &&
                 word.back() == word.front()) {
        type = TokenType::kQuoted;
      }
      tokens.push_back({type, word, column});
    }
    for (std::size_t i = 0; i < closing; ++i) {
      tokens.push_back(
          {TokenType::kClose, piece.substr(word.size() + i, 1), column + word.size() + i});
    }
    at = end;
  }
  return tokens;
}

// ---- Parser -------------------------------------------------------------------------------------

// Grammar (oslo's precedence): or := and ('or' and)* ; and := unary ('and' unary)* ;
// unary := 'not' unary | '(' or ')' | check.
class Parser {
 public:
  Parser(std::string_view rule_name, std::string_view source, std::string_view text)
      : rule_name_(rule_name), source_(source), text_(text), tokens_(Tokenize(text)) {}

  Result<Check> Parse() {
    if (text_.empty()) {
      return Check::Of(Check::Kind::kAlways);  // oslo: an empty rule always passes.
    }
    if (tokens_.empty()) {
      return ErrorAt(1, "the rule is blank (an empty string \"\" allows everyone)");
    }
    CLINKER_ASSIGN_OR_RETURN(Check check, ParseOr(0));
    if (next_ < tokens_.size()) {
      const Token& token = tokens_[next_];
      if (token.type == TokenType::kClose) {
        return ErrorAt(token.column, "')' closes no '('");
      }
      return ErrorAt(token.column, Join({"expected 'and' or 'or' before '", token.text, "'"}));
    }
    return check;
  }

 private:
  tl::unexpected<Error> ErrorAt(std::size_t column, const std::string& what) const {
    return MakeError(ErrorCode::kInvalidArgument,
                     Join({"policy rule \"",
                           rule_name_,
                           "\" (",
                           source_,
                           "): ",
                           what,
                           " at column ",
                           std::to_string(column),
                           " of \"",
                           text_,
                           "\""}));
  }

  std::size_t EndColumn() const { return text_.size() + 1; }

  bool Peek(TokenType type) const { return next_ < tokens_.size() && tokens_[next_].type == type; }

  Result<Check> ParseBinary(Check::Kind kind, TokenType keyword, int nesting) {
    auto operand = [&]() -> Result<Check> {
      return kind == Check::Kind::kOr ? ParseBinary(Check::Kind::kAnd, TokenType::kAnd, nesting)
                                      : ParseUnary(nesting);
    };
    CLINKER_ASSIGN_OR_RETURN(Check first, operand());
    if (!Peek(keyword)) {
      return first;
    }
    Check combined = Check::Of(kind);
    combined.operands.push_back(std::move(first));
    while (Peek(keyword)) {
      ++next_;
      CLINKER_ASSIGN_OR_RETURN(Check next, operand());
      combined.operands.push_back(std::move(next));
    }
    return combined;
  }

  Result<Check> ParseOr(int nesting) {
    return ParseBinary(Check::Kind::kOr, TokenType::kOr, nesting);
  }

  Result<Check> ParseUnary(int nesting) {
    if (next_ >= tokens_.size()) {
      return ErrorAt(EndColumn(), "expected a check, found the end of the rule");
    }
    const Token& token = tokens_[next_];
    switch (token.type) {
      case TokenType::kNot: {
        ++next_;
        if (nesting + 1 > kMaxRuleNesting) {
          return ErrorAt(token.column, "nested too deeply");
        }
        CLINKER_ASSIGN_OR_RETURN(Check operand, ParseUnary(nesting + 1));
        Check negation = Check::Of(Check::Kind::kNot);
        negation.operands.push_back(std::move(operand));
        return negation;
      }
      case TokenType::kOpen: {
        ++next_;
        if (nesting + 1 > kMaxRuleNesting) {
          return ErrorAt(token.column, "nested too deeply");
        }
        CLINKER_ASSIGN_OR_RETURN(Check inner, ParseOr(nesting + 1));
        if (!Peek(TokenType::kClose)) {
          const std::size_t column = next_ < tokens_.size() ? tokens_[next_].column : EndColumn();
          return ErrorAt(
              column,
              Join({"expected ')' to close the '(' at column ", std::to_string(token.column)}));
        }
        ++next_;
        return inner;
      }
      case TokenType::kCheck:
        ++next_;
        return ParseCheck(token);
      case TokenType::kQuoted:
        return ErrorAt(token.column, "a quoted string is not a check");
      case TokenType::kClose:
      case TokenType::kAnd:
      case TokenType::kOr:
        return ErrorAt(token.column, Join({"expected a check, found '", token.text, "'"}));
    }
    return ErrorAt(token.column, "unexpected token");  // Unreachable: the switch is exhaustive.
  }

  // <kind>:<match>, @ or !.
  Result<Check> ParseCheck(const Token& token) {
    const std::string_view text = token.text;
    if (text == "@") {
      return Check::Of(Check::Kind::kAlways);
    }
    if (text == "!") {
      return Check::Of(Check::Kind::kNever);
    }
    const std::size_t colon = text.find(':');
    if (colon == std::string_view::npos) {
      return ErrorAt(token.column,
                     Join({"'", text, "' is not a check (expected kind:value, @ or !)"}));
    }
    const std::string_view kind = text.substr(0, colon);
    const std::string_view match = text.substr(colon + 1);
    if (kind.empty()) {
      return ErrorAt(token.column, "a check needs a kind before ':'");
    }
    if (match.empty()) {
      return ErrorAt(token.column + colon + 1, "a check needs a value after ':'");
    }
    if (kind == "rule") {
      Check reference = Check::Of(Check::Kind::kRule);
      reference.name = std::string(match);
      return reference;
    }
    if (kind == "http" || kind == "https") {
      return ErrorAt(token.column, "remote (http/https) checks are not supported");
    }
    CLINKER_ASSIGN_OR_RETURN(Template parsed, ParseTemplate(match, token.column + colon + 1));
    Check check = Check::Of(kind == "role" ? Check::Kind::kRole : Check::Kind::kGeneric);
    check.match = std::move(parsed);
    if (check.kind == Check::Kind::kRole) {
      return check;
    }
    CLINKER_RETURN_IF_ERROR(ParseGenericKind(kind, token.column, &check));
    return check;
  }

  // The left side of a generic check: a literal as Python's ast.literal_eval would read it (the
  // forms a policy uses), else a credential attribute's name.
  Result<void> ParseGenericKind(std::string_view kind, std::size_t column, Check* check) const {
    const char first = kind.front();
    if (first == '\'' || first == '"') {
      if (kind.size() < 2 || kind.back() != first) {
        return ErrorAt(column, Join({"unterminated quote in '", kind, "'"}));
      }
      check->literal = true;
      check->name = std::string(kind.substr(1, kind.size() - 2));
      return {};
    }
    std::string_view digits = kind;
    if (digits.front() == '-') {
      digits.remove_prefix(1);
    }
    const bool integer =
        !digits.empty() && (digits == "0" || digits.front() != '0') &&
        std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    check->literal = integer || kind == "True" || kind == "False" || kind == "None";
    check->name = std::string(kind);
    return {};
  }

  // Python %-formatting with a mapping, %(name)s and %% only.
  Result<Template> ParseTemplate(std::string_view match, std::size_t column) const {
    Template parts;
    std::string literal;
    std::size_t at = 0;
    while (at < match.size()) {
      if (match[at] != '%') {
        literal.push_back(match[at]);
        ++at;
        continue;
      }
      if (at + 1 < match.size() && match[at + 1] == '%') {
        literal.push_back('%');
        at += 2;
        continue;
      }
      const std::size_t close = match.find(')', at);
      if (at + 1 >= match.size() || match[at + 1] != '(' || close == std::string_view::npos ||
          close + 1 >= match.size() || match[close + 1] != 's' || close == at + 2) {
        return ErrorAt(column + at, "'%' must start %(field)s or be doubled (%%)");
      }
      if (!literal.empty()) {
        parts.push_back({false, std::move(literal)});
        literal.clear();
      }
      parts.push_back({true, std::string(match.substr(at + 2, close - at - 2))});
      at = close + 2;
    }
    if (!literal.empty()) {
      parts.push_back({false, std::move(literal)});
    }
    return parts;
  }

  std::string_view rule_name_;
  std::string_view source_;
  std::string_view text_;
  std::vector<Token> tokens_;
  std::size_t next_ = 0;
};

void CollectReferences(const Check& check, std::vector<std::string_view>* references) {
  if (check.kind == Check::Kind::kRule) {
    references->push_back(check.name);
  }
  for (const Check& operand : check.operands) {
    CollectReferences(operand, references);
  }
}

// ---- Evaluation ---------------------------------------------------------------------------------

// A target field's value; absent when missing or empty (oslo: KeyError, so the check is false).
std::optional<std::string_view> TargetField(const PolicyTarget& target, std::string_view field) {
  std::string_view value;
  if (field == "project_id") {
    value = target.project_id;
  } else if (field == "user_id") {
    value = target.user_id;
  } else if (auto it = target.attributes.find(field); it != target.attributes.end()) {
    value = it->second;
  }
  if (value.empty()) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> Expand(const Template& parts, const PolicyTarget& target) {
  std::string out;
  for (const TemplatePart& part : parts) {
    if (!part.is_field) {
      out += part.text;
      continue;
    }
    const std::optional<std::string_view> value = TargetField(target, part.text);
    if (!value) {
      return std::nullopt;
    }
    out += *value;
  }
  return out;
}

// oslo's GenericCheck on the credentials: str(creds[attribute]) == match; a list matches if any
// element does. Booleans print as Python does ("True", "False").
bool CredentialMatches(const PolicyCredentials& credentials,
                       std::string_view attribute,
                       std::string_view match) {
  if (attribute == "roles") {
    return std::find(credentials.roles.begin(), credentials.roles.end(), match) !=
           credentials.roles.end();
  }
  if (attribute == "is_admin") {
    return match == (credentials.is_admin ? "True" : "False");
  }
  if (attribute == "is_admin_project") {
    return match == (credentials.is_admin_project ? "True" : "False");
  }
  const std::string* value = nullptr;
  if (attribute == "user_id") {
    value = &credentials.user_id;
  } else if (attribute == "project_id") {
    value = &credentials.project_id;
  } else if (attribute == "domain_id") {
    value = &credentials.domain_id;
  } else if (attribute == "user_domain_id") {
    value = &credentials.user_domain_id;
  } else if (attribute == "project_domain_id") {
    value = &credentials.project_domain_id;
  } else if (attribute == "system_scope") {
    value = &credentials.system_scope;
  } else if (auto it = credentials.attributes.find(attribute); it != credentials.attributes.end()) {
    value = &it->second;
  }
  return value != nullptr && !value->empty() && *value == match;
}

}  // namespace

struct Policy::Rules {
  struct Rule {
    std::string text;
    Check check;
    bool from_defaults = false;
  };

  std::map<std::string, Rule, std::less<>> by_name;
};

namespace {

class Evaluator {
 public:
  Evaluator(const Policy::Rules& rules,
            const PolicyCredentials& credentials,
            const PolicyTarget& target)
      : rules_(rules), credentials_(credentials), target_(target) {}

  // `depth` counts rule references followed; Create rejected chains deeper than kMaxRuleDepth
  // and loops, so it stays bounded.
  bool Eval(const Check& check, int depth) const {
    switch (check.kind) {
      case Check::Kind::kAlways:
        return true;
      case Check::Kind::kNever:
        return false;
      case Check::Kind::kRole: {
        const std::optional<std::string> match = Expand(check.match, target_);
        if (!match) {
          return false;
        }
        const std::string wanted = Lower(*match);
        return std::any_of(credentials_.roles.begin(),
                           credentials_.roles.end(),
                           [&](const std::string& role) { return Lower(role) == wanted; });
      }
      case Check::Kind::kRule: {
        CLINKER_ASSERT(depth < kMaxRuleDepth, "Policy::Create bounds rule reference chains");
        const auto it = rules_.by_name.find(check.name);
        CLINKER_ASSERT(it != rules_.by_name.end(), "Policy::Create rejects undefined rules");
        return Eval(it->second.check, depth + 1);
      }
      case Check::Kind::kGeneric: {
        const std::optional<std::string> match = Expand(check.match, target_);
        if (!match) {
          return false;
        }
        if (check.literal) {
          return check.name == *match;
        }
        return CredentialMatches(credentials_, check.name, *match);
      }
      case Check::Kind::kAnd:
        return std::all_of(check.operands.begin(), check.operands.end(), [&](const Check& operand) {
          return Eval(operand, depth);
        });
      case Check::Kind::kOr:
        return std::any_of(check.operands.begin(), check.operands.end(), [&](const Check& operand) {
          return Eval(operand, depth);
        });
      case Check::Kind::kNot:
        CLINKER_ASSERT(check.operands.size() == 1, "the parser gives 'not' one operand");
        return !Eval(check.operands.front(), depth);
    }
    return false;  // Unreachable: the switch is exhaustive.
  }

 private:
  const Policy::Rules& rules_;
  const PolicyCredentials& credentials_;
  const PolicyTarget& target_;
};

// Every rule:<name> must exist, with no loop and no chain deeper than kMaxRuleDepth. Iterative
// depth-first search (the explicit stack lives on the heap, so a long chain in a hostile file
// cannot overflow the call stack).
Result<void> CheckReferences(const Policy::Rules& rules) {
  enum class Mark { kOnPath, kDone };
  std::map<std::string_view, Mark> marks;
  std::map<std::string_view, int> depths;  // Longest chain of rules from here, itself included.

  struct Frame {
    std::string_view name;
    std::vector<std::string_view> references;
    std::size_t next = 0;
  };

  for (const auto& [root_name, root_rule] : rules.by_name) {
    if (marks.contains(root_name)) {
      continue;
    }
    std::vector<Frame> stack;
    auto push = [&](std::string_view name, const Check& check) {
      Frame frame;
      frame.name = name;
      CollectReferences(check, &frame.references);
      marks[name] = Mark::kOnPath;
      stack.push_back(std::move(frame));
    };
    push(root_name, root_rule.check);
    while (!stack.empty()) {
      Frame& top = stack.back();
      if (top.next < top.references.size()) {
        const std::string_view reference = top.references[top.next++];
        const auto target = rules.by_name.find(reference);
        if (target == rules.by_name.end()) {
          return MakeError(
              ErrorCode::kInvalidArgument,
              Join({"policy rule \"", top.name, "\": rule:", reference, " names no rule"}));
        }
        const auto mark = marks.find(reference);
        if (mark == marks.end()) {
          push(target->first, target->second.check);
        } else if (mark->second == Mark::kOnPath) {
          std::string loop;
          bool in_loop = false;
          for (const Frame& frame : stack) {
            in_loop = in_loop || frame.name == reference;
            if (in_loop) {
              loop.append(frame.name).append(" -> ");
            }
          }
          return MakeError(ErrorCode::kInvalidArgument,
                           Join({"policy rules refer to each other in a loop: ", loop, reference}));
        }
        continue;
      }
      int depth = 1;
      for (const std::string_view reference : top.references) {
        depth = std::max(depth, depths[reference] + 1);
      }
      if (depth > kMaxRuleDepth) {
        return MakeError(ErrorCode::kInvalidArgument,
                         Join({"policy rule \"",
                               top.name,
                               "\": rule references chain ",
                               std::to_string(depth),
                               " deep, more than the limit of ",
                               std::to_string(kMaxRuleDepth)}));
      }
      depths[top.name] = depth;
      marks[top.name] = Mark::kDone;
      stack.pop_back();
    }
  }
  return {};
}

}  // namespace

std::span<const PolicyDefault> PolicyDefaults() {
  return kDefaults;
}

PolicyTarget PolicyTarget::ForProject(std::string project_id) {
  PolicyTarget target;
  target.project_id = std::move(project_id);
  return target;
}

PolicyTarget PolicyTarget::OfCaller(const PolicyCredentials& credentials) {
  PolicyTarget target;
  target.project_id = credentials.project_id;
  target.user_id = credentials.user_id;
  return target;
}

Policy::Policy(std::shared_ptr<const Rules> rules) : rules_(std::move(rules)) {}

Result<Policy> Policy::Create(const std::map<std::string, std::string>& overrides) {
  auto rules = std::make_shared<Rules>();
  for (const PolicyDefault& row : kDefaults) {
    Rules::Rule rule;
    rule.text = std::string(row.check);
    rule.from_defaults = true;
    const bool added = rules->by_name.emplace(std::string(row.name), std::move(rule)).second;
    CLINKER_ASSERT(added, "each default policy rule is listed once");
  }
  for (const auto& [name, text] : overrides) {
    Rules::Rule& rule = rules->by_name[name];
    rule.text = text;
  }
  for (auto& [name, rule] : rules->by_name) {
    const bool overridden = overrides.contains(name);
    Parser parser(name, overridden ? "policy file" : "default", rule.text);
    CLINKER_ASSIGN_OR_RETURN(rule.check, parser.Parse());
  }
  CLINKER_RETURN_IF_ERROR(CheckReferences(*rules));
  return Policy(std::move(rules));
}

Policy Policy::Default() {
  Result<Policy> policy = Create({});
  CLINKER_ASSERT(policy.has_value(), "the default policy table builds");
  return *std::move(policy);
}

bool Policy::Enforce(std::string_view action,
                     const PolicyCredentials& credentials,
                     const PolicyTarget& target) const {
  const auto it = rules_->by_name.find(action);
  if (it == rules_->by_name.end()) {
    const std::string why = Join({"enforcing a policy rule that does not exist: ", action});
    CLINKER_ASSERT(false, why.c_str());
  }
  return Evaluator(*rules_, credentials, target).Eval(it->second.check, 0);
}

bool Policy::IsAdmin(const PolicyCredentials& credentials) const {
  return Enforce(policies::kContextIsAdmin, credentials, PolicyTarget::OfCaller(credentials));
}

bool Policy::Has(std::string_view name) const {
  return rules_->by_name.contains(name);
}

std::string Policy::RuleText(std::string_view name) const {
  const auto it = rules_->by_name.find(name);
  return it == rules_->by_name.end() ? std::string() : it->second.text;
}

std::vector<std::string> Policy::ExtraRuleNames() const {
  std::vector<std::string> names;
  for (const auto& [name, rule] : rules_->by_name) {
    if (!rule.from_defaults) {
      names.push_back(name);
    }
  }
  return names;
}

}  // namespace clinker::domain
