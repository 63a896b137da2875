// GroupsApi: Cinder's generic volume groups (/groups, 3.13+) and group snapshots
// (/group_snapshots, 3.14+), transport-free.
//
// A generic group holds volumes of the types it names; a group snapshot is one snapshot of each
// of its volumes. On the file back-end (as Cinder's generic group implementation) a group needs
// no storage work of its own: what the back-end does is the members' ordinary volume and
// snapshot jobs, made through VolumesApi and SnapshotsApi (the same checks, conditional updates
// and job topics as a client's request), each member naming its group (volumes.group_id) or
// group snapshot (snapshots.group_snapshot_id). So:
// - A group made from nothing is `available` at once (one insert: no job, no window).
// - A group made from a source (create-from-src: a group snapshot or another group) and a
//   group snapshot are inserted first as `creating_queued` (shown `creating`: the API is
//   queuing the members), then the members are made and queued, then the API moves the row to
//   `creating` and tries to complete it; each member's job completes it when it is the last
//   (group_completion.h). A member the API could not make sets the row to `error`.
// - A group delete (delete-volumes) and a group snapshot delete move the row to
//   `deleting_queued` (shown `deleting`; a conditional update guarded as Cinder's: no group
//   snapshot of the group, no group being created from it), queue each member's delete, move it
//   to `deleting` and try to complete; the last member's delete job soft-deletes the row (or
//   sets `error_deleting` when a member could not be deleted).
//
// Cinder's checks and messages (cinder/group/api.py, api/v3/groups.py, group_snapshots.py):
// groups of the caller's project (an admin's: any, lists with all_tenants); update changes name
// and description and adds (available or in-use volumes of one of the group's types, in no
// group) or removes (available, in-use, error or error_deleting) member volumes, each with a
// conditional update of the volume, the group staying `available` throughout; reset_status
// (admin) sets any of Cinder's statuses. Policy rules group:* (api_policy.cc).
//
// Thread safe (no mutable state of its own). Blocks on the StateStore and the JobQueue.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"
#include "clinker/services/quotas.h"
#include "clinker/services/snapshots_api.h"
#include "clinker/services/volumes_api.h"

namespace clinker::services {

// Cinder's microversions for groups.
inline constexpr Microversion kGroupsMicroversion{3, 13};
inline constexpr Microversion kGroupSnapshotsMicroversion{3, 14};  // Also create-from-src.
inline constexpr Microversion kGroupSnapshotResetMicroversion{3, 19};
inline constexpr Microversion kGroupResetMicroversion{3, 20};
inline constexpr Microversion kGroupVolumeListMicroversion{3, 25};
inline constexpr Microversion kGroupReplicationMicroversion{3, 38};
inline constexpr Microversion kGroupProjectIdMicroversion{3, 58};

// The stored statuses of a group or group snapshot whose members' creates (deletes) the API is
// still queuing; shown as "creating" ("deleting"). Group completion never touches them
// (group_completion.h): a member that finishes while the API still queues the others must not
// complete the parent.
inline constexpr std::string_view kGroupCreatingQueued = "creating_queued";
inline constexpr std::string_view kGroupDeletingQueued = "deleting_queued";

struct Group {
  std::string id;
  std::string project_id;
  std::string user_id;
  std::string status;  // Stored.
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::string availability_zone;
  std::string group_type_id;
  std::vector<std::string> volume_type_ids;
  std::optional<std::string> group_snapshot_id;
  std::optional<std::string> source_group_id;
  std::string created_at;
  bool deleted = false;
};

struct GroupSnapshot {
  std::string id;
  std::string project_id;
  std::string user_id;
  std::string group_id;
  std::string group_type_id;
  std::string status;  // Stored.
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::string created_at;
  bool deleted = false;
};

Result<Group> GroupFromRow(const ports::Row& row);
ports::Row GroupToRow(const Group& group);
Result<GroupSnapshot> GroupSnapshotFromRow(const ports::Row& row);
ports::Row GroupSnapshotToRow(const GroupSnapshot& snapshot);

// The status a group or group snapshot shows for its stored one.
std::string_view ShownGroupStatus(std::string_view stored);

struct GroupsApiOptions {
  std::int64_t max_limit = 1000;  // osapi_max_limit.
  std::string availability_zone = "nova";
  // The `groups` quota: a group create (and create-from-src) charges groups 1 with the insert of
  // its row (413 overLimit past the limit, nothing written); the write that soft-deletes the
  // group releases it (group_completion.h).
  QuotaOptions quota;
};

class GroupsApi {
 public:
  GroupsApi(ports::StateStore& store,
            const ports::Clock& clock,
            VolumesApi& volumes,
            SnapshotsApi& snapshots,
            GroupsApiOptions options);

  HttpResponse Create(const RequestContext& context, const HttpRequest& request);
  // `list_volume=true` (3.25+) adds the member volumes' ids.
  HttpResponse Show(const RequestContext& context,
                    const HttpRequest& request,
                    std::string_view group_id);
  HttpResponse List(const RequestContext& context, const HttpRequest& request, bool detail);
  HttpResponse Update(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view group_id);
  // POST /groups/{id}/action: delete, reset_status (3.20).
  HttpResponse Action(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view group_id);
  // The same with the body already parsed (discarded when it was not JSON), as the router
  // hands it over.
  HttpResponse Action(const RequestContext& context,
                      const nlohmann::json& body,
                      std::string_view group_id);
  // POST /groups/action: create-from-src (3.14).
  HttpResponse CreateFromSource(const RequestContext& context, const HttpRequest& request);

  HttpResponse CreateSnapshot(const RequestContext& context, const HttpRequest& request);
  HttpResponse ShowSnapshot(const RequestContext& context, std::string_view group_snapshot_id);
  HttpResponse ListSnapshots(const RequestContext& context,
                             const HttpRequest& request,
                             bool detail);
  HttpResponse DeleteSnapshot(const RequestContext& context, std::string_view group_snapshot_id);
  // POST /group_snapshots/{id}/action: reset_status (3.19).
  HttpResponse SnapshotAction(const RequestContext& context,
                              const HttpRequest& request,
                              std::string_view group_snapshot_id);
  // The same with the body already parsed (discarded when it was not JSON), as the router
  // hands it over.
  HttpResponse SnapshotAction(const RequestContext& context,
                              const nlohmann::json& body,
                              std::string_view group_snapshot_id);

 private:
  tl::expected<Group, HttpResponse> VisibleGroup(const RequestContext& context,
                                                 std::string_view group_id);
  tl::expected<GroupSnapshot, HttpResponse> VisibleSnapshot(const RequestContext& context,
                                                            std::string_view group_snapshot_id);
  // The live rows of `table` whose `column` names `id`, oldest first.
  Result<std::vector<ports::Row>> Members(ports::Table table,
                                          std::string_view column,
                                          const std::string& id);
  HttpResponse DeleteGroup(const RequestContext& context,
                           const nlohmann::json& argument,
                           std::string_view group_id);
  HttpResponse ResetStatus(ports::Table table,
                           const RequestContext& context,
                           const nlohmann::json& argument,
                           std::string_view id);
  // Inserts the group's row charging its project's `groups` quota in the same write
  // (kQuotaExceeded, nothing written, past the limit).
  Result<void> InsertCharged(const Group& group);
  // Moves a row from `from` (creating_queued, deleting_queued) to `to` once every member's job
  // is queued, and (unless `to` is error) tries to complete it.
  void FinishQueuing(ports::Table table,
                     const std::string& id,
                     std::string_view from,
                     std::string_view to);
  nlohmann::json GroupView(const RequestContext& context,
                           const HttpRequest* request,
                           const Group& group);
  nlohmann::json SnapshotView(const RequestContext& context, const GroupSnapshot& snapshot);

  ports::StateStore& store_;
  const ports::Clock& clock_;
  VolumesApi& volumes_;
  SnapshotsApi& snapshots_;
  GroupsApiOptions options_;
  QuotaService quotas_;
};

}  // namespace clinker::services
