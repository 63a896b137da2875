// SnapshotsApi: the Cinder v3 snapshot handlers (create, show, list, list detail, update,
// delete, and the admin actions os-reset_status and os-force_delete), transport-free.
//
// As for volumes, every status change is a compare-and-swap in the StateStore. Snapshot create
// and volume delete race safely without a lock at the API: the snapshot row is inserted first,
// then the volume's status is checked with a conditional update; a volume delete checks (in its
// own conditional update) that no live snapshot references the volume. Whichever commits first,
// the other sees it, so a deleted volume never has a live snapshot. Deleting a snapshot likewise
// checks that no volume is still being created from it.
//
// Projects, as Cinder: a caller sees (and acts on) its own project's snapshots, an admin any
// project's (CanSee), anything else is 404; lists cross projects only for an admin with
// all_tenants. A new snapshot is the caller's, also of another project's volume an admin sees.
//
// Thread safe (holds no mutable state of its own). Blocks on the StateStore and the JobQueue.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/admission.h"
#include "clinker/services/api_common.h"
#include "clinker/services/quotas.h"

namespace clinker::services {

struct SnapshotsApiOptions {
  std::int64_t max_limit = 1000;  // osapi_max_limit: page size cap and default.
  // Limits and what counts (services/quotas.h): a create counts in the write that inserts the
  // snapshot (413 past a limit); the node's final delete releases it.
  QuotaOptions quota;
  // Admission control (off when null): a create (not of a group snapshot's member) is refused
  // with 503 and Retry-After, before anything is written, while the volume's back-end has
  // max_queued_jobs_per_backend jobs not finished (services/admission.h).
  AdmissionControl* admission = nullptr;
};

class SnapshotsApi {
 public:
  SnapshotsApi(ports::StateStore& store,
               ports::JobQueue& queue,
               const ports::Clock& clock,
               SnapshotsApiOptions options);

  HttpResponse Create(const RequestContext& context, const HttpRequest& request);
  // For GroupsApi: a snapshot (`spec` as the body's "snapshot") that is a member of the group
  // snapshot `group_snapshot_id`, made and queued as any other.
  HttpResponse CreateGroupMember(const RequestContext& context,
                                 const nlohmann::json& spec,
                                 const std::string& group_snapshot_id);
  // For GroupsApi: queues the delete of a member of the group snapshot `group_snapshot_id` (a
  // plain delete refuses members, as Cinder does).
  HttpResponse DeleteGroupMember(const RequestContext& context,
                                 std::string_view snapshot_id,
                                 const std::string& group_snapshot_id);
  HttpResponse Show(const RequestContext& context, std::string_view snapshot_id);
  HttpResponse List(const RequestContext& context, const HttpRequest& request, bool detail);
  HttpResponse Update(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view snapshot_id);
  HttpResponse Delete(const RequestContext& context, std::string_view snapshot_id);
  // POST /snapshots/{id}/action: os-reset_status and os-force_delete (admin).
  HttpResponse Action(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view snapshot_id);
  // The same with the body already parsed (discarded when it was not JSON), as the router
  // hands it over.
  HttpResponse Action(const RequestContext& context,
                      const nlohmann::json& body,
                      std::string_view snapshot_id);

  // The metadata sub-resource (snapshot_metadata.cc), as Cinder: GET /snapshots/{id}/metadata,
  // POST (merges, `replace` false), PUT (replaces all), GET / PUT / DELETE
  // /snapshots/{id}/metadata/{key} (the PUT body {"meta": {"<key>": "<value>"}} names exactly
  // the URL's key). Keys of any length from 1 are accepted, then over 255 characters (key or
  // value) is 413, as Cinder's check_metadata_properties answers.
  HttpResponse ShowMetadata(const RequestContext& context, std::string_view snapshot_id);
  HttpResponse ChangeMetadata(const RequestContext& context,
                              const HttpRequest& request,
                              std::string_view snapshot_id,
                              bool replace);
  HttpResponse ShowMetadataItem(const RequestContext& context,
                                std::string_view snapshot_id,
                                std::string_view key);
  HttpResponse UpdateMetadataItem(const RequestContext& context,
                                  const HttpRequest& request,
                                  std::string_view snapshot_id,
                                  std::string_view key);
  HttpResponse DeleteMetadataItem(const RequestContext& context,
                                  std::string_view snapshot_id,
                                  std::string_view key);

 private:
  // os-update_snapshot_status (any member by default): Cinder's transitions for a snapshot made
  // or deleted out of band (creating -> creating, available, error; deleting -> deleting,
  // error_deleting) and its progress ("80%").
  HttpResponse UpdateStatus(const RequestContext& context,
                            const nlohmann::json& argument,
                            std::string_view snapshot_id);
  HttpResponse CreateSnapshot(const RequestContext& context,
                              const nlohmann::json& spec,
                              const std::optional<std::string>& group_snapshot_id);
  // `group_snapshot_id`: the member delete of that group snapshot; none: a plain delete, which
  // refuses a member of a group snapshot.
  HttpResponse DeleteSnapshot(const RequestContext& context,
                              std::string_view snapshot_id,
                              bool force,
                              const std::optional<std::string>& group_snapshot_id = std::nullopt);

  ports::StateStore& store_;
  ports::JobQueue& queue_;
  const ports::Clock& clock_;
  SnapshotsApiOptions options_;
  QuotaService quotas_;
};

}  // namespace clinker::services
