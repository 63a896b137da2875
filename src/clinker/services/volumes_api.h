// VolumesApi: the Cinder v3 volume handlers (create, show, list, list detail, summary, update,
// delete), transport-free.
//
// Every status change is a conditional update in the StateStore (compare-and-swap), so
// concurrent requests from any number of API servers are serialised by the database: of 20
// racing deletes exactly one moves the volume to its queued delete status and queues a job; the
// others get 400 and queue nothing.
//
// Projects, as Cinder: a caller shows, updates, deletes and acts on the volumes of its own
// project, an admin those of any project (CanSee); any other volume answers 404 as if it did not
// exist. Lists show other projects' volumes only to an admin asking with all_tenants. A new
// volume (also a clone or a volume from a snapshot of another project) is the caller's.
//
// Volume types: a create names its type by name or id (404 with Cinder's message when the caller
// may not see it), else takes its source's, else the default type; the row stores the type's id
// and views show its name (volume_type) and, from 3.63, its id (volume_type_id). A type being
// deleted while a volume takes it: see volume_type_record.h.
//
// Thread safe (holds no mutable state of its own). Blocks on the StateStore and the JobQueue.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/ports/lock_manager.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/admission.h"
#include "clinker/services/api_common.h"
#include "clinker/services/quotas.h"
#include "clinker/services/volume_record.h"
#include "clinker/services/volume_type_record.h"

namespace clinker::services {

// From 3.63 volume views carry volume_type_id next to the type's name (Cinder's
// VOLUME_TYPE_ID_IN_VOLUME_DETAIL). Above kMaxMicroversion today: only handlers called directly
// (tests) reach it.
inline constexpr Microversion kVolumeTypeIdMicroversion{3, 63};

struct VolumesApiOptions {
  std::int64_t max_limit = 1000;             // osapi_max_limit: page size cap and default.
  std::int64_t max_volume_size_gib = 16384;  // Larger sizes are refused with 400.
  std::string availability_zone = "nova";
  // The type of a volume created without one (and not from a source): Cinder's
  // default_volume_type, created at start when missing (VolumeTypeCatalog::Default).
  std::string default_volume_type = "__DEFAULT__";
  // Fast-fail (off when null): a request that would queue a write job on a volume whose write
  // lock is held right now (a job is running on it) is refused with 409 instead of queuing
  // behind it. The check takes and at once releases the lock (TryAcquire); it is advisory: the
  // compare-and-swap on the status still decides, and a job may start just after the check.
  ports::LockManager* fail_fast_locks = nullptr;
  // Limits and what counts (services/quotas.h): a create, an extend and a retype change the
  // project's usage in the same write as the volume (413 past a limit).
  QuotaOptions quota;
  // Admission control (off when null): a create (not of a group's member) and an extend are
  // refused with 503 and Retry-After, before anything is written, while the back-end the work
  // would go to has max_queued_jobs_per_backend jobs not finished (services/admission.h).
  AdmissionControl* admission = nullptr;
};

// Which answer a volume view goes into. Cinder adds its "extended attributes" (tenant, host,
// migration status) only to GET answers (show and list detail): the create and update answers
// are the bare view, and Tempest's schemas for them refuse the extra keys. Tempest's update
// schema also stays that of 3.0 at every microversion (no cluster_name, volume_type_id,
// consumes_quota), and Tempest's schemas are the contract.
enum class VolumeViewFor { kGet, kCreate, kUpdate };

class VolumesApi {
 public:
  VolumesApi(ports::StateStore& store,
             ports::JobQueue& queue,
             const ports::Clock& clock,
             VolumesApiOptions options);

  // From 3.13 `group_id` puts the new volume in a generic group: the group must be `available`
  // and take the volume's type (which must then be named), as Cinder checks; the group is
  // pinned (a conditional update expecting it available) once the volume row exists, so a group
  // delete racing the create either sees the volume or makes the create fail.
  HttpResponse Create(const RequestContext& context, const HttpRequest& request);
  // For GroupsApi (a group created from a source): a volume (`spec` as the body's "volume")
  // that is a member of the group `group_id`, not checked against the group (which the caller
  // makes), made and queued as any other.
  HttpResponse CreateGroupMember(const RequestContext& context,
                                 const nlohmann::json& spec,
                                 const std::string& group_id);
  // For GroupsApi: queues the delete of a member of the group `group_id` (a plain delete
  // refuses a volume in a group, as Cinder does).
  HttpResponse DeleteGroupMember(const RequestContext& context,
                                 std::string_view volume_id,
                                 const std::string& group_id);
  HttpResponse Show(const RequestContext& context, std::string_view volume_id);
  HttpResponse List(const RequestContext& context, const HttpRequest& request, bool detail);
  HttpResponse Summary(const RequestContext& context, const HttpRequest& request);
  HttpResponse Update(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view volume_id);
  // DELETE /volumes/{id}; `force=true` (3.23+, admin) is os-force_delete. `cascade=true` deletes
  // the volume's snapshots too, as Cinder: each is deleted as DELETE /snapshots/{id} would (the
  // deleter below; refused, it stops the cascade with its answer), then the volume's delete
  // tolerates snapshots that are being deleted, and the volume node deletes the volume once they
  // are gone (a snapshot that fails to delete fails the volume's delete).
  HttpResponse Delete(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view volume_id);

  // How a cascade deletes one snapshot (ApiService wires SnapshotsApi::Delete at construction;
  // without one, cascade=true is refused with 400).
  using SnapshotDeleter =
      std::function<HttpResponse(const RequestContext& context, std::string_view snapshot_id)>;

  void SetSnapshotDeleter(SnapshotDeleter deleter) { delete_snapshot_ = std::move(deleter); }

  // POST /volumes/{id}/action: os-extend, os-retype, os-reset_status (admin), os-force_delete
  // (admin), and the flag and image metadata actions below.
  HttpResponse Action(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view volume_id);
  // The same with the body already parsed (discarded when it was not JSON), as the router
  // hands it over.
  HttpResponse Action(const RequestContext& context,
                      const nlohmann::json& body,
                      std::string_view volume_id);

  // The metadata sub-resource (volume_metadata.cc), as Cinder: GET /volumes/{id}/metadata (an
  // Etag header from 3.15), POST (merges), PUT (replaces all; If-Match from 3.15, 412 when it
  // names another Etag), GET / PUT / DELETE /volumes/{id}/metadata/{key} (the PUT body
  // {"meta": {"<key>": "<value>"}} names exactly the URL's key). Every change is a
  // compare-and-swap on the metadata, retried when another writer got in between.
  HttpResponse ShowMetadata(const RequestContext& context, std::string_view volume_id);
  HttpResponse CreateMetadata(const RequestContext& context,
                              const HttpRequest& request,
                              std::string_view volume_id);
  HttpResponse ReplaceMetadata(const RequestContext& context,
                               const HttpRequest& request,
                               std::string_view volume_id);
  HttpResponse ShowMetadataItem(const RequestContext& context,
                                std::string_view volume_id,
                                std::string_view key);
  HttpResponse UpdateMetadataItem(const RequestContext& context,
                                  const HttpRequest& request,
                                  std::string_view volume_id,
                                  std::string_view key);
  HttpResponse DeleteMetadataItem(const RequestContext& context,
                                  std::string_view volume_id,
                                  std::string_view key);

  // os-set_bootable (200), os-update_readonly_flag (202; `available` volumes only; shown as
  // metadata "readonly": "True"/"False"), os-set_image_metadata (200, the volume's image
  // metadata after the merge), os-unset_image_metadata (200), os-show_image_metadata (200).
  static bool IsFlagOrImageMetadataAction(std::string_view action);
  HttpResponse FlagOrImageMetadataAction(const RequestContext& context,
                                         std::string_view action,
                                         const nlohmann::json& argument,
                                         std::string_view volume_id);

 private:
  // The volume or snapshot a new volume is created from.
  struct VolumeSourceRef {
    bool is_snapshot = false;
    std::string id;
    std::int64_t size_gib = 0;
    std::optional<std::string> host;
    std::optional<std::string> cluster_name;
    std::optional<std::string> volume_type_id;  // The source volume's type.
    // Copied to the new volume, as Cinder does: the bootable flag, and with it (a bootable
    // source only) the image metadata.
    bool bootable = false;
    std::map<std::string, std::string> image_metadata;
  };

  // The usable source, or the fault to answer (404 unknown, 400 not available).
  tl::expected<VolumeSourceRef, HttpResponse> FindSource(const RequestContext& context,
                                                         bool is_snapshot,
                                                         const std::string& id);
  // The volume's attached attachments, as the volume view shows them.
  nlohmann::json AttachmentsView(const Volume& volume, const RequestContext& context);
  // Soft-deletes a volume whose create was not queued after all, releasing what it counted.
  void WithdrawCreate(const std::string& volume_id, const std::vector<ports::UsageChange>& release);
  // `member_of`: set for a member created by GroupsApi; none for a client's create.
  HttpResponse CreateVolume(const RequestContext& context,
                            const nlohmann::json& spec,
                            const std::optional<std::string>& member_of);
  // `group_id`: the member delete of that group; none: a plain delete, which refuses a volume
  // in a group. `cascade`: DELETE ?cascade=true (Delete).
  HttpResponse DeleteVolume(const RequestContext& context,
                            std::string_view volume_id,
                            bool force,
                            const std::optional<std::string>& group_id = std::nullopt,
                            bool cascade = false);
  HttpResponse Extend(const RequestContext& context,
                      const nlohmann::json& body,
                      std::string_view volume_id);
  HttpResponse ResetStatus(const RequestContext& context,
                           const nlohmann::json& body,
                           std::string_view volume_id);
  // os-retype without migration: one back-end holds every type, so the volume only takes the
  // new type (a conditional update), at once.
  HttpResponse Retype(const RequestContext& context,
                      const nlohmann::json& body,
                      std::string_view volume_id);
  using ViewFor = VolumeViewFor;
  // The volume view, with its attachments and the type's name (and id from 3.63) looked up
  // through `names`.
  nlohmann::json View(const Volume& volume,
                      const RequestContext& context,
                      VolumeTypeCatalog::NameCache& names,
                      ViewFor view_for);
  // Why a delete's compare-and-swap did not apply, as Cinder words it, with the cause when it
  // is one this release can name (snapshots, volumes being created from it).
  std::string WhyNotDeletable(const std::string& volume_id);

  ports::StateStore& store_;
  ports::JobQueue& queue_;
  const ports::Clock& clock_;
  VolumesApiOptions options_;
  VolumeTypeCatalog types_;
  QuotaService quotas_;
  SnapshotDeleter delete_snapshot_;
};

}  // namespace clinker::services
