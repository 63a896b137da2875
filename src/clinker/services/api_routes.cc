#include "clinker/services/api_routes.h"

#include <algorithm>

#include "clinker/domain/policy.h"
#include "clinker/services/attachments_api.h"
#include "clinker/services/backups_api.h"
#include "clinker/services/extensions.h"
#include "clinker/services/group_types_api.h"
#include "clinker/services/groups_api.h"
#include "clinker/services/messages_api.h"
#include "clinker/services/qos_api.h"
#include "clinker/services/quotas_api.h"
#include "clinker/services/services_api.h"
#include "clinker/services/snapshots_api.h"
#include "clinker/services/transfers_api.h"
#include "clinker/services/types_api.h"
#include "clinker/services/volumes_api.h"

namespace clinker::services {
namespace {

namespace p = domain::policies;
using P = RoutePart;
using H = const ApiHandlers&;
using C = const RouteCall&;

constexpr Microversion kSummaryMicroversion{3, 12};
constexpr Microversion kAttachmentsMicroversion{3, 27};

// DELETE /volumes/{id}?force=true is Cinder's volume:force_delete, whatever the microversion
// (the handler ignores `force` below 3.23).
std::string_view VolumeDeleteRule(const HttpRequest& request) {
  std::string force;
  if (request.QueryValue("force", &force) && TruthyParameter(force)) {
    return p::kVolumeForceDelete;
  }
  return p::kVolumeDelete;
}

// Routes Cinder has that are not served here but whose rule the router always checked before
// answering 405 (kept so that a caller the policy refuses still learns it with 403).
HttpResponse NotServed(H /*handlers*/, C /*call*/) {
  return Fault(405, "The method is not allowed for this resource.");
}

// Cinder's extensions resource answers 404 to create and delete.
HttpResponse ExtensionNotFound(H /*handlers*/, C /*call*/) {
  return Fault(404, "The resource could not be found.");
}

// Legacy attach actions on a volume belong to the attachments.
HttpResponse LegacyAttachAction(H h, C c) {
  return h.attachments->LegacyAction(c.context, c.action, c.body.begin().value(), c.params[0]);
}

// os-services/{action}: the action is the last segment.
HttpResponse UpdateService(H h, C c) {
  return h.services->UpdateService(c.context, c.request, c.segments[1]);
}

// A POST .../action row: `name` is the body's key ("*": any other).
constexpr Route ActionRow(std::string_view path,
                          std::string_view name,
                          std::string_view rule,
                          RoutePart part,
                          RouteHandler handler,
                          Microversion min_version = kMinMicroversion) {
  return {.method = "POST",
          .path = path,
          .action = name,
          .min_version = min_version,
          .rule = rule,
          .part = part,
          .handler = handler};
}

HttpResponse VolumeAction(H h, C c) {
  return h.volumes->Action(c.context, c.body, c.params[0]);
}

HttpResponse SnapshotAction(H h, C c) {
  return h.snapshots->Action(c.context, c.body, c.params[0]);
}

HttpResponse BackupAction(H h, C c) {
  return h.backups->Action(c.context, c.body, c.params[0]);
}

HttpResponse TypeAction(H h, C c) {
  return h.types->Action(c.context, c.body, c.params[0]);
}

HttpResponse GroupAction(H h, C c) {
  return h.groups->Action(c.context, c.body, c.params[0]);
}

HttpResponse GroupSnapshotAction(H h, C c) {
  return h.groups->SnapshotAction(c.context, c.body, c.params[0]);
}

template <TransferRoute Kind>
HttpResponse ListTransfers(H h, C c) {
  return h.transfers->List(c.context, c.request, /*detail=*/false, Kind);
}

template <TransferRoute Kind>
HttpResponse ListTransfersDetail(H h, C c) {
  return h.transfers->List(c.context, c.request, /*detail=*/true, Kind);
}

template <TransferRoute Kind>
HttpResponse CreateTransfer(H h, C c) {
  return h.transfers->Create(c.context, c.request, Kind);
}

HttpResponse ShowTransfer(H h, C c) {
  return h.transfers->Show(c.context, c.params[0]);
}

HttpResponse DeleteTransfer(H h, C c) {
  return h.transfers->Delete(c.context, c.params[0]);
}

HttpResponse AcceptTransfer(H h, C c) {
  return h.transfers->Accept(c.context, c.request, c.params[0]);
}

constexpr Route kRoutes[] = {
    // Volumes.
    {.method = "GET",
     .path = "/volumes",
     .rule = p::kVolumeGetAll,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->List(c.context, c.request, false);
         }},
    {.method = "POST",
     .path = "/volumes",
     .rule = p::kVolumeCreate,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->Create(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/volumes/detail",
     .rule = p::kVolumeGetAll,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->List(c.context, c.request, true);
         }},
    {.method = "GET",
     .path = "/volumes/summary",
     .min_version = kSummaryMicroversion,
     .rule = p::kVolumeGetAll,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->Summary(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/volumes/{volume_id}",
     .rule = p::kVolumeGet,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->Show(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/volumes/{volume_id}",
     .rule = p::kVolumeUpdate,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->Update(c.context, c.request, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/volumes/{volume_id}",
     .rule = p::kVolumeDelete,
     .rule_for = VolumeDeleteRule,
     .part = P::kVolumes,
     .handler = [](H h, C c) { return h.volumes->Delete(c.context, c.request, c.params[0]); },
     .note = "`?force=true`: volume:force_delete"},
    {.method = "GET",
     .path = "/volumes/{volume_id}/metadata",
     .rule = p::kVolumeMetadataGet,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->ShowMetadata(c.context, c.params[0]);
         }},
    {.method = "POST",
     .path = "/volumes/{volume_id}/metadata",
     .rule = p::kVolumeMetadataCreate,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->CreateMetadata(c.context, c.request, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/volumes/{volume_id}/metadata",
     .rule = p::kVolumeMetadataUpdate,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->ReplaceMetadata(c.context, c.request, c.params[0]);
         }},
    {.method = "GET",
     .path = "/volumes/{volume_id}/metadata/{key}",
     .rule = p::kVolumeMetadataGet,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->ShowMetadataItem(c.context, c.params[0], c.params[1]);
         }},
    {.method = "PUT",
     .path = "/volumes/{volume_id}/metadata/{key}",
     .rule = p::kVolumeMetadataUpdate,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->UpdateMetadataItem(c.context, c.request, c.params[0], c.params[1]);
         }},
    {.method = "DELETE",
     .path = "/volumes/{volume_id}/metadata/{key}",
     .rule = p::kVolumeMetadataDelete,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->DeleteMetadataItem(c.context, c.params[0], c.params[1]);
         }},
    ActionRow(
        "/volumes/{volume_id}/action", "os-extend", p::kVolumeExtend, P::kVolumes, VolumeAction),
    ActionRow(
        "/volumes/{volume_id}/action", "os-retype", p::kVolumeRetype, P::kVolumes, VolumeAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-reset_status",
              p::kVolumeResetStatus,
              P::kVolumes,
              VolumeAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-force_delete",
              p::kVolumeAdminForceDelete,
              P::kVolumes,
              VolumeAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-set_bootable",
              p::kVolumeUpdate,
              P::kVolumes,
              VolumeAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-update_readonly_flag",
              p::kVolumeUpdateReadonly,
              P::kVolumes,
              VolumeAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-show_image_metadata",
              p::kVolumeMetadataGet,
              P::kVolumes,
              VolumeAction),
    // Cinder's image metadata calls also check the volume metadata rules.
    {.method = "POST",
     .path = "/volumes/{volume_id}/action",
     .action = "os-set_image_metadata",
     .rule = p::kVolumeImageMetadataSet,
     .second_rule = p::kVolumeMetadataUpdate,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->Action(c.context, c.body, c.params[0]);
         }},
    {.method = "POST",
     .path = "/volumes/{volume_id}/action",
     .action = "os-unset_image_metadata",
     .rule = p::kVolumeImageMetadataRemove,
     .second_rule = p::kVolumeMetadataDelete,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->Action(c.context, c.body, c.params[0]);
         }},
    ActionRow("/volumes/{volume_id}/action",
              "os-reserve",
              p::kVolumeReserve,
              P::kAttachments,
              LegacyAttachAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-unreserve",
              p::kVolumeUnreserve,
              P::kAttachments,
              LegacyAttachAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-initialize_connection",
              p::kVolumeInitializeConnection,
              P::kAttachments,
              LegacyAttachAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-terminate_connection",
              p::kVolumeTerminateConnection,
              P::kAttachments,
              LegacyAttachAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-attach",
              p::kVolumeAttach,
              P::kAttachments,
              LegacyAttachAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-detach",
              p::kVolumeDetach,
              P::kAttachments,
              LegacyAttachAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-begin_detaching",
              p::kVolumeBeginDetaching,
              P::kAttachments,
              LegacyAttachAction),
    ActionRow("/volumes/{volume_id}/action",
              "os-roll_detaching",
              p::kVolumeRollDetaching,
              P::kAttachments,
              LegacyAttachAction),
    // Any other action (or a malformed body): the update rule, so no action is left unguarded;
    // the handler answers 400.
    {.method = "POST",
     .path = "/volumes/{volume_id}/action",
     .action = "*",
     .rule = p::kVolumeUpdate,
     .part = P::kVolumes,
     .handler =
         [](H h, C c) {
           return h.volumes->Action(c.context, c.body, c.params[0]);
         }},

    // Snapshots.
    {.method = "GET",
     .path = "/snapshots",
     .rule = p::kSnapshotGetAll,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->List(c.context, c.request, false);
         }},
    {.method = "POST",
     .path = "/snapshots",
     .rule = p::kSnapshotCreate,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->Create(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/snapshots/detail",
     .rule = p::kSnapshotGetAll,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->List(c.context, c.request, true);
         }},
    {.method = "GET",
     .path = "/snapshots/{snapshot_id}",
     .rule = p::kSnapshotGet,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->Show(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/snapshots/{snapshot_id}",
     .rule = p::kSnapshotUpdate,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->Update(c.context, c.request, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/snapshots/{snapshot_id}",
     .rule = p::kSnapshotDelete,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->Delete(c.context, c.params[0]);
         }},
    {.method = "GET",
     .path = "/snapshots/{snapshot_id}/metadata",
     .rule = p::kSnapshotMetadataGet,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->ShowMetadata(c.context, c.params[0]);
         }},
    // Cinder's POST (merge) is an update of the snapshot's metadata.
    {.method = "POST",
     .path = "/snapshots/{snapshot_id}/metadata",
     .rule = p::kSnapshotMetadataUpdate,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->ChangeMetadata(c.context, c.request, c.params[0], /*replace=*/false);
         }},
    {.method = "PUT",
     .path = "/snapshots/{snapshot_id}/metadata",
     .rule = p::kSnapshotMetadataUpdate,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->ChangeMetadata(c.context, c.request, c.params[0], /*replace=*/true);
         }},
    {.method = "GET",
     .path = "/snapshots/{snapshot_id}/metadata/{key}",
     .rule = p::kSnapshotMetadataGet,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->ShowMetadataItem(c.context, c.params[0], c.params[1]);
         }},
    {.method = "PUT",
     .path = "/snapshots/{snapshot_id}/metadata/{key}",
     .rule = p::kSnapshotMetadataUpdate,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->UpdateMetadataItem(c.context, c.request, c.params[0], c.params[1]);
         }},
    {.method = "DELETE",
     .path = "/snapshots/{snapshot_id}/metadata/{key}",
     .rule = p::kSnapshotMetadataDelete,
     .part = P::kSnapshots,
     .handler =
         [](H h, C c) {
           return h.snapshots->DeleteMetadataItem(c.context, c.params[0], c.params[1]);
         }},
    ActionRow("/snapshots/{snapshot_id}/action",
              "os-update_snapshot_status",
              p::kSnapshotUpdateStatus,
              P::kSnapshots,
              SnapshotAction),
    ActionRow("/snapshots/{snapshot_id}/action",
              "os-reset_status",
              p::kSnapshotResetStatus,
              P::kSnapshots,
              SnapshotAction),
    ActionRow("/snapshots/{snapshot_id}/action",
              "os-force_delete",
              p::kSnapshotForceDelete,
              P::kSnapshots,
              SnapshotAction),
    ActionRow(
        "/snapshots/{snapshot_id}/action", "*", p::kSnapshotUpdate, P::kSnapshots, SnapshotAction),

    // Attachments (3.27+). Reads have no rule of their own in Cinder: a caller sees its
    // project's attachments.
    {.method = "GET",
     .path = "/attachments",
     .min_version = kAttachmentsMicroversion,
     .part = P::kAttachments,
     .handler =
         [](H h, C c) {
           return h.attachments->List(c.context, c.request, false);
         }},
    {.method = "POST",
     .path = "/attachments",
     .min_version = kAttachmentsMicroversion,
     .rule = p::kAttachmentCreate,
     .part = P::kAttachments,
     .handler =
         [](H h, C c) {
           return h.attachments->Create(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/attachments/detail",
     .min_version = kAttachmentsMicroversion,
     .part = P::kAttachments,
     .handler =
         [](H h, C c) {
           return h.attachments->List(c.context, c.request, true);
         }},
    {.method = "GET",
     .path = "/attachments/{attachment_id}",
     .min_version = kAttachmentsMicroversion,
     .part = P::kAttachments,
     .handler =
         [](H h, C c) {
           return h.attachments->Show(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/attachments/{attachment_id}",
     .min_version = kAttachmentsMicroversion,
     .rule = p::kAttachmentUpdate,
     .part = P::kAttachments,
     .handler =
         [](H h, C c) {
           return h.attachments->Update(c.context, c.request, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/attachments/{attachment_id}",
     .min_version = kAttachmentsMicroversion,
     .rule = p::kAttachmentDelete,
     .part = P::kAttachments,
     .handler =
         [](H h, C c) {
           return h.attachments->Delete(c.context, c.params[0]);
         }},
    // os-complete (3.44+, checked by the handler), the only attachment action.
    {.method = "POST",
     .path = "/attachments/{attachment_id}/action",
     .action = "*",
     .min_version = kAttachmentsMicroversion,
     .rule = p::kAttachmentComplete,
     .part = P::kAttachments,
     .handler = [](H h, C c) { return h.attachments->Action(c.context, c.body, c.params[0]); },
     .note = "`os-complete` (3.44+)"},

    // Backups.
    {.method = "GET",
     .path = "/backups",
     .rule = p::kBackupGetAll,
     .part = P::kBackups,
     .handler =
         [](H h, C c) {
           return h.backups->List(c.context, c.request, false);
         }},
    {.method = "POST",
     .path = "/backups",
     .rule = p::kBackupCreate,
     .part = P::kBackups,
     .handler =
         [](H h, C c) {
           return h.backups->Create(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/backups/detail",
     .rule = p::kBackupGetAll,
     .part = P::kBackups,
     .handler =
         [](H h, C c) {
           return h.backups->List(c.context, c.request, true);
         }},
    {.method = "POST",
     .path = "/backups/import_record",
     .rule = p::kBackupImport,
     .part = P::kBackups,
     .handler = [](H h, C c) { return h.backups->ImportRecord(c.context, c.request); },
     .exclusive = false},
    {.method = "GET",
     .path = "/backups/{backup_id}",
     .rule = p::kBackupGet,
     .part = P::kBackups,
     .handler =
         [](H h, C c) {
           return h.backups->Show(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/backups/{backup_id}",
     .rule = p::kBackupUpdate,
     .part = P::kBackups,
     .handler = [](H h, C c) { return h.backups->Update(c.context, c.request, c.params[0]); },
     .note = "3.9+ (checked by the handler)"},
    {.method = "DELETE",
     .path = "/backups/{backup_id}",
     .rule = p::kBackupDelete,
     .part = P::kBackups,
     .handler =
         [](H h, C c) {
           return h.backups->Delete(c.context, c.params[0]);
         }},
    {.method = "POST",
     .path = "/backups/{backup_id}/restore",
     .rule = p::kBackupRestore,
     .part = P::kBackups,
     .handler =
         [](H h, C c) {
           return h.backups->Restore(c.context, c.request, c.params[0]);
         }},
    {.method = "GET",
     .path = "/backups/{backup_id}/export_record",
     .rule = p::kBackupExport,
     .part = P::kBackups,
     .handler =
         [](H h, C c) {
           return h.backups->ExportRecord(c.context, c.params[0]);
         }},
    ActionRow("/backups/{backup_id}/action",
              "os-reset_status",
              p::kBackupResetStatus,
              P::kBackups,
              BackupAction),
    ActionRow("/backups/{backup_id}/action",
              "os-force_delete",
              p::kBackupForceDelete,
              P::kBackups,
              BackupAction),
    ActionRow("/backups/{backup_id}/action", "*", p::kBackupUpdate, P::kBackups, BackupAction),

    // Volume transfers: Cinder's extension (/os-volume-transfer) and its v3 controller
    // (/volume-transfers, routed at every microversion as Cinder's router does; clients use it
    // from 3.55).
    {.method = "GET",
     .path = "/os-volume-transfer",
     .rule = p::kTransferGetAll,
     .part = P::kTransfers,
     .handler = ListTransfers<TransferRoute::kExtension>},
    {.method = "POST",
     .path = "/os-volume-transfer",
     .rule = p::kTransferCreate,
     .part = P::kTransfers,
     .handler = CreateTransfer<TransferRoute::kExtension>},
    {.method = "GET",
     .path = "/os-volume-transfer/detail",
     .rule = p::kTransferGetAll,
     .part = P::kTransfers,
     .handler = ListTransfersDetail<TransferRoute::kExtension>},
    {.method = "GET",
     .path = "/os-volume-transfer/{transfer_id}",
     .rule = p::kTransferGet,
     .part = P::kTransfers,
     .handler = ShowTransfer},
    {.method = "DELETE",
     .path = "/os-volume-transfer/{transfer_id}",
     .rule = p::kTransferDelete,
     .part = P::kTransfers,
     .handler = DeleteTransfer},
    {.method = "POST",
     .path = "/os-volume-transfer/{transfer_id}/accept",
     .rule = p::kTransferAccept,
     .part = P::kTransfers,
     .handler = AcceptTransfer},
    {.method = "GET",
     .path = "/volume-transfers",
     .rule = p::kTransferGetAll,
     .part = P::kTransfers,
     .handler = ListTransfers<TransferRoute::kV3>},
    {.method = "POST",
     .path = "/volume-transfers",
     .rule = p::kTransferCreate,
     .part = P::kTransfers,
     .handler = CreateTransfer<TransferRoute::kV3>},
    {.method = "GET",
     .path = "/volume-transfers/detail",
     .rule = p::kTransferGetAll,
     .part = P::kTransfers,
     .handler = ListTransfersDetail<TransferRoute::kV3>},
    {.method = "GET",
     .path = "/volume-transfers/{transfer_id}",
     .rule = p::kTransferGet,
     .part = P::kTransfers,
     .handler = ShowTransfer},
    {.method = "DELETE",
     .path = "/volume-transfers/{transfer_id}",
     .rule = p::kTransferDelete,
     .part = P::kTransfers,
     .handler = DeleteTransfer},
    {.method = "POST",
     .path = "/volume-transfers/{transfer_id}/accept",
     .rule = p::kTransferAccept,
     .part = P::kTransfers,
     .handler = AcceptTransfer},

    // Volume types, their extra specs, encryption and access lists (/types/default is a show).
    {.method = "GET",
     .path = "/types",
     .rule = p::kTypeGetAll,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->List(c.context, c.request);
         }},
    {.method = "POST",
     .path = "/types",
     .rule = p::kTypeCreate,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->Create(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/types/{type_id}",
     .rule = p::kTypeGet,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->Show(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/types/{type_id}",
     .rule = p::kTypeUpdate,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->Update(c.context, c.request, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/types/{type_id}",
     .rule = p::kTypeDelete,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->Delete(c.context, c.params[0]);
         }},
    ActionRow("/types/{type_id}/action",
              "addProjectAccess",
              p::kTypeAccessAddProject,
              P::kTypes,
              TypeAction),
    ActionRow("/types/{type_id}/action",
              "removeProjectAccess",
              p::kTypeAccessRemoveProject,
              P::kTypes,
              TypeAction),
    ActionRow("/types/{type_id}/action", "*", p::kTypeUpdate, P::kTypes, TypeAction),
    {.method = "GET",
     .path = "/types/{type_id}/os-volume-type-access",
     .rule = p::kTypeAccessList,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->ListAccess(c.context, c.params[0]);
         }},
    {.method = "GET",
     .path = "/types/{type_id}/extra_specs",
     .rule = p::kTypeExtraSpecsIndex,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->ListExtraSpecs(c.context, c.params[0]);
         }},
    {.method = "POST",
     .path = "/types/{type_id}/extra_specs",
     .rule = p::kTypeExtraSpecsCreate,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->CreateExtraSpecs(c.context, c.request, c.params[0]);
         }},
    {.method = "GET",
     .path = "/types/{type_id}/extra_specs/{key}",
     .rule = p::kTypeExtraSpecsShow,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->ShowExtraSpec(c.context, c.params[0], c.params[1]);
         }},
    {.method = "PUT",
     .path = "/types/{type_id}/extra_specs/{key}",
     .rule = p::kTypeExtraSpecsUpdate,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->UpdateExtraSpec(c.context, c.request, c.params[0], c.params[1]);
         }},
    {.method = "DELETE",
     .path = "/types/{type_id}/extra_specs/{key}",
     .rule = p::kTypeExtraSpecsDelete,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->DeleteExtraSpec(c.context, c.params[0], c.params[1]);
         }},
    {.method = "GET",
     .path = "/types/{type_id}/encryption",
     .rule = p::kTypeEncryptionGet,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->ShowEncryption(c.context, c.params[0]);
         }},
    {.method = "POST",
     .path = "/types/{type_id}/encryption",
     .rule = p::kTypeEncryptionCreate,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->CreateEncryption(c.context, c.request, c.params[0]);
         }},
    // GET .../encryption/{key} shows one item; PUT and DELETE name the encryption (by any id:
    // a type has one).
    {.method = "GET",
     .path = "/types/{type_id}/encryption/{key}",
     .rule = p::kTypeEncryptionGet,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->ShowEncryptionItem(c.context, c.params[0], c.params[1]);
         }},
    {.method = "PUT",
     .path = "/types/{type_id}/encryption/{encryption_id}",
     .rule = p::kTypeEncryptionUpdate,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->UpdateEncryption(c.context, c.request, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/types/{type_id}/encryption/{encryption_id}",
     .rule = p::kTypeEncryptionDelete,
     .part = P::kTypes,
     .handler =
         [](H h, C c) {
           return h.types->DeleteEncryption(c.context, c.params[0]);
         }},

    // QoS specs. Cinder serves the association changes as GETs.
    {.method = "GET",
     .path = "/qos-specs",
     .rule = p::kQosSpecsGetAll,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->List(c.context, c.request);
         }},
    {.method = "POST",
     .path = "/qos-specs",
     .rule = p::kQosSpecsCreate,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->Create(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/qos-specs/{qos_id}",
     .rule = p::kQosSpecsGet,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->Show(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/qos-specs/{qos_id}",
     .rule = p::kQosSpecsUpdate,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->SetKeys(c.context, c.request, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/qos-specs/{qos_id}",
     .rule = p::kQosSpecsDelete,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->Delete(c.context, c.request, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/qos-specs/{qos_id}/delete_keys",
     .rule = p::kQosSpecsDelete,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->UnsetKeys(c.context, c.request, c.params[0]);
         }},
    {.method = "GET",
     .path = "/qos-specs/{qos_id}/associations",
     .rule = p::kQosSpecsGetAll,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->ListAssociations(c.context, c.params[0]);
         }},
    {.method = "GET",
     .path = "/qos-specs/{qos_id}/associate",
     .rule = p::kQosSpecsUpdate,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->Associate(c.context, c.request, c.params[0]);
         }},
    {.method = "GET",
     .path = "/qos-specs/{qos_id}/disassociate",
     .rule = p::kQosSpecsUpdate,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->Disassociate(c.context, c.request, c.params[0]);
         }},
    {.method = "GET",
     .path = "/qos-specs/{qos_id}/disassociate_all",
     .rule = p::kQosSpecsUpdate,
     .part = P::kQos,
     .handler =
         [](H h, C c) {
           return h.qos->DisassociateAll(c.context, c.params[0]);
         }},

    // Group types and group specs (3.11+). Showing and listing group types has no rule in
    // Cinder (what a caller sees is filtered by is_public).
    {.method = "GET",
     .path = "/group_types",
     .min_version = kGroupTypesMicroversion,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->List(c.context, c.request);
         }},
    {.method = "POST",
     .path = "/group_types",
     .min_version = kGroupTypesMicroversion,
     .rule = p::kGroupTypeCreate,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->Create(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/group_types/{group_type_id}",
     .min_version = kGroupTypesMicroversion,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->Show(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/group_types/{group_type_id}",
     .min_version = kGroupTypesMicroversion,
     .rule = p::kGroupTypeUpdate,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->Update(c.context, c.request, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/group_types/{group_type_id}",
     .min_version = kGroupTypesMicroversion,
     .rule = p::kGroupTypeDelete,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->Delete(c.context, c.params[0]);
         }},
    {.method = "GET",
     .path = "/group_types/{group_type_id}/group_specs",
     .min_version = kGroupTypesMicroversion,
     .rule = p::kGroupTypeSpecsGetAll,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->ListSpecs(c.context, c.params[0]);
         }},
    {.method = "POST",
     .path = "/group_types/{group_type_id}/group_specs",
     .min_version = kGroupTypesMicroversion,
     .rule = p::kGroupTypeSpecsCreate,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->CreateSpecs(c.context, c.request, c.params[0]);
         }},
    {.method = "GET",
     .path = "/group_types/{group_type_id}/group_specs/{key}",
     .min_version = kGroupTypesMicroversion,
     .rule = p::kGroupTypeSpecsGet,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->ShowSpec(c.context, c.params[0], c.params[1]);
         }},
    {.method = "PUT",
     .path = "/group_types/{group_type_id}/group_specs/{key}",
     .min_version = kGroupTypesMicroversion,
     .rule = p::kGroupTypeSpecsUpdate,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->UpdateSpec(c.context, c.request, c.params[0], c.params[1]);
         }},
    {.method = "DELETE",
     .path = "/group_types/{group_type_id}/group_specs/{key}",
     .min_version = kGroupTypesMicroversion,
     .rule = p::kGroupTypeSpecsDelete,
     .part = P::kGroupTypes,
     .handler =
         [](H h, C c) {
           return h.group_types->DeleteSpec(c.context, c.params[0], c.params[1]);
         }},

    // Groups (3.13+); POST /groups/action is create-from-src (3.14+, checked by the handler).
    {.method = "GET",
     .path = "/groups",
     .min_version = kGroupsMicroversion,
     .rule = p::kGroupGetAll,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->List(c.context, c.request, false);
         }},
    {.method = "POST",
     .path = "/groups",
     .min_version = kGroupsMicroversion,
     .rule = p::kGroupCreate,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->Create(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/groups/detail",
     .min_version = kGroupsMicroversion,
     .rule = p::kGroupGetAll,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->List(c.context, c.request, true);
         }},
    {.method = "POST",
     .path = "/groups/action",
     .min_version = kGroupsMicroversion,
     .rule = p::kGroupCreate,
     .part = P::kGroups,
     .handler = [](H h, C c) { return h.groups->CreateFromSource(c.context, c.request); },
     .note = "`create-from-src` (3.14+)"},
    {.method = "GET",
     .path = "/groups/{group_id}",
     .min_version = kGroupsMicroversion,
     .rule = p::kGroupGet,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->Show(c.context, c.request, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/groups/{group_id}",
     .min_version = kGroupsMicroversion,
     .rule = p::kGroupUpdate,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->Update(c.context, c.request, c.params[0]);
         }},
    ActionRow("/groups/{group_id}/action",
              "delete",
              p::kGroupDelete,
              P::kGroups,
              GroupAction,
              kGroupsMicroversion),
    ActionRow("/groups/{group_id}/action",
              "reset_status",
              p::kGroupResetStatus,
              P::kGroups,
              GroupAction,
              kGroupsMicroversion),
    ActionRow("/groups/{group_id}/action",
              "*",
              p::kGroupUpdate,
              P::kGroups,
              GroupAction,
              kGroupsMicroversion),

    // Group snapshots (3.14+).
    {.method = "GET",
     .path = "/group_snapshots",
     .min_version = kGroupSnapshotsMicroversion,
     .rule = p::kGroupSnapshotGetAll,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->ListSnapshots(c.context, c.request, false);
         }},
    {.method = "POST",
     .path = "/group_snapshots",
     .min_version = kGroupSnapshotsMicroversion,
     .rule = p::kGroupSnapshotCreate,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->CreateSnapshot(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/group_snapshots/detail",
     .min_version = kGroupSnapshotsMicroversion,
     .rule = p::kGroupSnapshotGetAll,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->ListSnapshots(c.context, c.request, true);
         }},
    {.method = "GET",
     .path = "/group_snapshots/{group_snapshot_id}",
     .min_version = kGroupSnapshotsMicroversion,
     .rule = p::kGroupSnapshotGet,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->ShowSnapshot(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/group_snapshots/{group_snapshot_id}",
     .min_version = kGroupSnapshotsMicroversion,
     .rule = p::kGroupSnapshotUpdate,
     .handler = NotServed,
     .note = "not served: 405"},
    {.method = "DELETE",
     .path = "/group_snapshots/{group_snapshot_id}",
     .min_version = kGroupSnapshotsMicroversion,
     .rule = p::kGroupSnapshotDelete,
     .part = P::kGroups,
     .handler =
         [](H h, C c) {
           return h.groups->DeleteSnapshot(c.context, c.params[0]);
         }},
    ActionRow("/group_snapshots/{group_snapshot_id}/action",
              "reset_status",
              p::kGroupSnapshotResetStatus,
              P::kGroups,
              GroupSnapshotAction,
              kGroupSnapshotsMicroversion),
    ActionRow("/group_snapshots/{group_snapshot_id}/action",
              "*",
              p::kGroupSnapshotUpdate,
              P::kGroups,
              GroupSnapshotAction,
              kGroupSnapshotsMicroversion),

    // Services and clusters. Freeze, thaw and failover pass a second rule of their own, as in
    // Cinder.
    {.method = "GET",
     .path = "/os-services",
     .rule = p::kServicesIndex,
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->ListServices(c.context, c.request);
         }},
    {.method = "PUT",
     .path = "/os-services/freeze",
     .rule = p::kServicesUpdate,
     .second_rule = p::kFreezeHost,
     .part = P::kServices,
     .handler = UpdateService,
     .exclusive = false},
    {.method = "PUT",
     .path = "/os-services/thaw",
     .rule = p::kServicesUpdate,
     .second_rule = p::kThawHost,
     .part = P::kServices,
     .handler = UpdateService,
     .exclusive = false},
    {.method = "PUT",
     .path = "/os-services/failover_host",
     .rule = p::kServicesUpdate,
     .second_rule = p::kFailoverHost,
     .part = P::kServices,
     .handler = UpdateService,
     .exclusive = false},
    {.method = "PUT",
     .path = "/os-services/failover",
     .rule = p::kServicesUpdate,
     .second_rule = p::kFailoverHost,
     .part = P::kServices,
     .handler = UpdateService,
     .note = "3.26+ (checked by the handler)",
     .exclusive = false},
    {.method = "PUT",
     .path = "/os-services/{action}",
     .rule = p::kServicesUpdate,
     .part = P::kServices,
     .handler = UpdateService,
     .note = "`enable`, `disable`, `disable-log-reason`",
     .other_methods_not_found = true},
    {.method = "GET",
     .path = "/clusters",
     .min_version = kClustersMicroversion,
     .rule = p::kClustersGetAll,
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->ListClusters(c.context, c.request, false);
         }},
    {.method = "GET",
     .path = "/clusters/detail",
     .min_version = kClustersMicroversion,
     .rule = p::kClustersGetAll,
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->ListClusters(c.context, c.request, true);
         }},
    {.method = "PUT",
     .path = "/clusters/enable",
     .min_version = kClustersMicroversion,
     .rule = p::kClustersUpdate,
     .handler = NotServed,
     .note = "not served: 405",
     .exclusive = false},
    {.method = "PUT",
     .path = "/clusters/disable",
     .min_version = kClustersMicroversion,
     .rule = p::kClustersUpdate,
     .handler = NotServed,
     .note = "not served: 405",
     .exclusive = false},
    {.method = "GET",
     .path = "/clusters/{cluster_name}",
     .min_version = kClustersMicroversion,
     .rule = p::kClustersGet,
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->ShowCluster(c.context, c.request, c.params[0]);
         }},

    // Admin information and user messages.
    {.method = "GET",
     .path = "/os-hosts",
     .rule = p::kHostsManage,
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->ListHosts(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/os-hosts/{host}",
     .rule = p::kHostsManage,
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->ShowHost(c.context, c.params[0]);
         }},
    {.method = "GET",
     .path = "/scheduler-stats/get_pools",
     .rule = p::kSchedulerStatsGetPools,
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->GetPools(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/capabilities/{host}",
     .rule = p::kCapabilities,
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->ShowCapabilities(c.context, c.params[0]);
         }},
    {.method = "GET",
     .path = "/messages",
     .min_version = kMessagesMicroversion,
     .rule = p::kMessageGetAll,
     .part = P::kMessages,
     .handler =
         [](H h, C c) {
           return h.messages->List(c.context, c.request);
         }},
    {.method = "GET",
     .path = "/messages/{message_id}",
     .min_version = kMessagesMicroversion,
     .rule = p::kMessageGet,
     .part = P::kMessages,
     .handler =
         [](H h, C c) {
           return h.messages->Show(c.context, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/messages/{message_id}",
     .min_version = kMessagesMicroversion,
     .rule = p::kMessageDelete,
     .part = P::kMessages,
     .handler =
         [](H h, C c) {
           return h.messages->Delete(c.context, c.params[0]);
         }},

    // Quotas and limits. Shows are checked by the handler against the target project (a member
    // may show its own project's quota), as Cinder's authorize with a target.
    {.method = "GET",
     .path = "/os-quota-sets/{project_id}",
     .part = P::kQuotas,
     .handler = [](H h, C c) { return h.quotas->Show(c.context, c.request, c.params[0]); },
     .note = "volume_extension:quotas:show (by the handler, with the target project)"},
    {.method = "PUT",
     .path = "/os-quota-sets/{project_id}",
     .rule = p::kQuotasUpdate,
     .part = P::kQuotas,
     .handler =
         [](H h, C c) {
           return h.quotas->Update(c.context, c.request, c.params[0]);
         }},
    {.method = "DELETE",
     .path = "/os-quota-sets/{project_id}",
     .rule = p::kQuotasDelete,
     .part = P::kQuotas,
     .handler =
         [](H h, C c) {
           return h.quotas->Delete(c.context, c.params[0]);
         }},
    {.method = "GET",
     .path = "/os-quota-sets/{project_id}/defaults",
     .part = P::kQuotas,
     .handler = [](H h, C c) { return h.quotas->Defaults(c.context, c.params[0]); },
     .note = "volume_extension:quotas:show (by the handler, with the target project)"},
    {.method = "GET",
     .path = "/os-quota-class-sets/{class_name}",
     .rule = p::kQuotaClassesGet,
     .part = P::kQuotas,
     .handler =
         [](H h, C c) {
           return h.quotas->ShowClass(c.context, c.params[0]);
         }},
    {.method = "PUT",
     .path = "/os-quota-class-sets/{class_name}",
     .rule = p::kQuotaClassesUpdate,
     .part = P::kQuotas,
     .handler =
         [](H h, C c) {
           return h.quotas->UpdateClass(c.context, c.request, c.params[0]);
         }},
    {.method = "GET",
     .path = "/limits",
     .part = P::kQuotas,
     .handler =
         [](H h, C c) {
           return h.quotas->Limits(c.context, c.request);
         }},

    // Availability zones and extensions: any caller, as in Cinder.
    {.method = "GET",
     .path = "/os-availability-zone",
     .part = P::kServices,
     .handler =
         [](H h, C c) {
           return h.services->ListAvailabilityZones(c.context);
         }},
    {.method = "GET",
     .path = "/extensions",
     .handler =
         [](H /*h*/, C /*c*/) {
           return ListExtensions();
         }},
    {.method = "GET",
     .path = "/extensions/{alias}",
     .handler =
         [](H /*h*/, C c) {
           return ShowExtension(c.params[0]);
         }},
    {.method = "POST", .path = "/extensions", .handler = ExtensionNotFound, .note = "404"},
    {.method = "DELETE", .path = "/extensions", .handler = ExtensionNotFound, .note = "404"},
    {.method = "POST", .path = "/extensions/{alias}", .handler = ExtensionNotFound, .note = "404"},
    {.method = "DELETE",
     .path = "/extensions/{alias}",
     .handler = ExtensionNotFound,
     .note = "404"},
};

bool IsParameter(std::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

// The next segment of a pattern from `*pos` (which it advances); empty at the end.
std::string_view NextSegment(std::string_view pattern, std::size_t* pos) {
  while (*pos < pattern.size() && pattern[*pos] == '/') {
    ++*pos;
  }
  std::size_t end = pattern.find('/', *pos);
  if (end == std::string_view::npos) {
    end = pattern.size();
  }
  std::string_view segment = pattern.substr(*pos, end - *pos);
  *pos = end;
  return segment;
}

// Whether `segments` matches the pattern; fills `params` with the parameter segments. Walks the
// pattern in place: it runs for every row on every request.
bool MatchPath(std::string_view pattern,
               const std::vector<std::string>& segments,
               std::vector<std::string_view>* params) {
  params->clear();
  std::size_t pos = 0;
  for (const std::string& segment : segments) {
    std::string_view part = NextSegment(pattern, &pos);
    if (part.empty()) {
      return false;
    }
    if (IsParameter(part)) {
      params->emplace_back(segment);
    } else if (part != segment) {
      return false;
    }
  }
  return NextSegment(pattern, &pos).empty();
}

// Whether two patterns name the same paths ("{key}" and "{encryption_id}" are alike).
bool SameShape(std::string_view a, std::string_view b) {
  std::vector<std::string_view> left = PathSegments(a);
  std::vector<std::string_view> right = PathSegments(b);
  if (left.size() != right.size()) {
    return false;
  }
  for (std::size_t i = 0; i < left.size(); ++i) {
    if (IsParameter(left[i]) != IsParameter(right[i]) ||
        (!IsParameter(left[i]) && left[i] != right[i])) {
      return false;
    }
  }
  return true;
}

bool InRange(const Route& route, const Microversion& version) {
  return route.min_version <= version && version <= route.max_version;
}

}  // namespace

std::span<const Route> Routes() {
  return kRoutes;
}

RouteMatch MatchRoute(std::string_view method,
                      const std::vector<std::string>& segments,
                      const std::string& body,
                      const Microversion* version,
                      nlohmann::json* parsed_body) {
  RouteMatch match;
  nlohmann::json ignored;
  nlohmann::json& parsed = parsed_body != nullptr ? *parsed_body : ignored;
  bool body_parsed = false;
  const Route* claimed = nullptr;  // The exclusive route whose path the request names.
  const Route* version_miss = nullptr;
  std::vector<std::string_view> params;
  std::vector<std::string_view> version_miss_params;
  for (const Route& route : kRoutes) {
    if ((claimed != nullptr && !SameShape(route.path, claimed->path)) ||
        !MatchPath(route.path, segments, &params)) {
      continue;
    }
    const bool in_range = version == nullptr || InRange(route, *version);
    bool method_matches = route.method == method;
    if (method_matches && !route.action.empty()) {
      // The body is parsed once, for the first action row of the path; the handler gets it.
      if (!body_parsed) {
        parsed = nlohmann::json::parse(body, nullptr, false);
        if (parsed.is_object() && parsed.size() == 1) {
          match.action = parsed.begin().key();
        }
        body_parsed = true;
      }
      method_matches = route.action == "*" || route.action == match.action;
    }
    if (!in_range) {
      if (method_matches && version_miss == nullptr) {
        version_miss = &route;
        version_miss_params = params;
      }
      continue;
    }
    if (method_matches) {
      match.route = &route;
      match.params = std::move(params);
      match.outcome = RouteMatch::Outcome::kMatched;
      return match;
    }
    if (claimed == nullptr && route.exclusive) {
      claimed = &route;
    }
  }
  if (version_miss != nullptr) {
    match.route = version_miss;
    match.params = std::move(version_miss_params);
    match.outcome = RouteMatch::Outcome::kVersionNotFound;
  } else if (claimed != nullptr && !claimed->other_methods_not_found) {
    match.outcome = RouteMatch::Outcome::kMethodNotAllowed;
  } else {
    match.outcome = RouteMatch::Outcome::kNotFound;
  }
  return match;
}

std::vector<std::string_view> PathSegments(std::string_view path) {
  std::vector<std::string_view> segments;
  std::size_t start = 0;
  while (start < path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      slash = path.size();
    }
    if (slash > start) {
      segments.push_back(path.substr(start, slash - start));
    }
    start = slash + 1;
  }
  return segments;
}

bool IsRouteCollection(std::string_view segment) {
  return std::any_of(std::begin(kRoutes), std::end(kRoutes), [segment](const Route& route) {
    std::size_t pos = 0;
    return NextSegment(route.path, &pos) == segment;
  });
}

std::vector<std::string> RouteListing() {
  std::vector<std::string> rows;
  rows.reserve(std::size(kRoutes));
  for (const Route& route : kRoutes) {
    std::string versions = route.max_version == kMaxMicroversion
                               ? route.min_version.ToString() + "+"
                               : route.min_version.ToString() + "-" + route.max_version.ToString();
    std::string rules;
    if (!route.rule.empty()) {
      rules = "`" + std::string(route.rule) + "`";
    }
    if (!route.second_rule.empty()) {
      rules += " and `" + std::string(route.second_rule) + "`";
    }
    std::string row = "| `";
    row.append(route.method).append("` | `").append(route.path).append("` | ");
    if (!route.action.empty()) {
      row.append("`").append(route.action).append("`");
    }
    row.append(" | ").append(versions).append(" | ").append(rules).append(" | ");
    row.append(route.note).append(" |");
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace clinker::services
