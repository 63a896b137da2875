// AttachmentsApi: volume attachments, the Cinder v3 attachments API (3.27+: create, show, list,
// list detail, update with a connector, os-complete at 3.44+, delete) and the legacy volume
// actions Nova used before it (os-reserve, os-unreserve, os-initialize_connection, os-attach,
// os-begin_detaching, os-roll_detaching, os-terminate_connection, os-detach), transport-free.
//
// Exporting a volume to a host (initialize_connection) and ending it (terminate_connection) are
// back-end work: the API queues an attach or detach job for the volume's back-end and waits for
// a volume node to finish it (bounded by `job_timeout`), then answers with the connection info.
// The jobs follow the stuck-job rules like every other (attach and detach are redone when a node
// died in the middle), so a request that timed out can simply be sent again.
//
// Reservations serialise at the database: a volume that does not allow multiattach is reserved
// with a compare-and-swap from `available`, so of two racing reservations one wins; deleting a
// volume checks that no live attachment references it. The volume's status is derived from its
// attachments (attachment_state.h).
//
// Projects, as Cinder: an attachment belongs to its volume's project (also one an admin made).
// A caller sees (and acts on) its own project's attachments and volumes, an admin any project's
// (CanSee), anything else is 404; lists cross projects only for an admin with all_tenants.
//
// Thread safe (holds no mutable state of its own). Blocks on the StateStore and the JobQueue,
// and for attach and detach on the job's completion.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "clinker/domain/status.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/job_queue.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"
#include "clinker/services/volume_record.h"

namespace clinker::services {

struct AttachmentsApiOptions {
  std::int64_t max_limit = 1000;
  // How long a request waits for the attach or detach job it queued.
  std::chrono::milliseconds job_timeout{60000};
  // First and largest pause between two reads of the attachment while waiting.
  std::chrono::milliseconds poll_min{2};
  std::chrono::milliseconds poll_max{50};
};

class AttachmentsApi {
 public:
  AttachmentsApi(ports::StateStore& store,
                 ports::JobQueue& queue,
                 const ports::Clock& clock,
                 AttachmentsApiOptions options);

  HttpResponse Create(const RequestContext& context, const HttpRequest& request);
  HttpResponse Show(const RequestContext& context, std::string_view attachment_id);
  HttpResponse List(const RequestContext& context, const HttpRequest& request, bool detail);
  HttpResponse Update(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view attachment_id);
  // POST /attachments/{id}/action: os-complete (3.44+).
  HttpResponse Action(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view attachment_id);
  // The same with the body already parsed (discarded when it was not JSON), as the router
  // hands it over.
  HttpResponse Action(const RequestContext& context,
                      const nlohmann::json& body,
                      std::string_view attachment_id);
  HttpResponse Delete(const RequestContext& context, std::string_view attachment_id);

  // True for the volume actions LegacyAction handles.
  static bool IsLegacyAction(std::string_view action);
  HttpResponse LegacyAction(const RequestContext& context,
                            std::string_view action,
                            const nlohmann::json& argument,
                            std::string_view volume_id);

 private:
  struct Attachment {
    std::string id;
    std::string project_id;
    std::string volume_id;
    domain::AttachmentStatus status = domain::AttachmentStatus::kReserved;
    std::optional<std::string> status_reason;
    std::optional<std::string> instance_uuid;
    std::optional<std::string> attached_host;
    std::optional<std::string> mountpoint;
    std::string attach_mode = "null";
    std::optional<std::string> connector;
    std::optional<std::string> connection_info;
    std::optional<std::string> operation_id;
    std::optional<std::string> attach_time;
    std::optional<std::string> detach_time;
    bool deleted = false;
  };

  using Failure = HttpResponse;

  static Result<Attachment> FromRow(const ports::Row& row);
  nlohmann::json View(const Attachment& attachment, bool detail) const;

  tl::expected<Volume, Failure> VisibleVolume(const RequestContext& context,
                                              std::string_view volume_id);
  tl::expected<Attachment, Failure> VisibleAttachment(const RequestContext& context,
                                                      std::string_view attachment_id);
  // Reserves the volume for a new attachment (row inserted, volume CAS): the new attachment.
  tl::expected<Attachment, Failure> Reserve(const RequestContext& context,
                                            const Volume& volume,
                                            std::optional<std::string> instance_uuid,
                                            std::string attach_mode,
                                            domain::AttachmentStatus initial_status);
  // Queues the export of the volume to `connector` and waits for it: the attachment after.
  tl::expected<Attachment, Failure> Connect(const Volume& volume,
                                            const Attachment& attachment,
                                            const nlohmann::json& connector);
  // Ends the attachment: at once when nothing was exported, else through a detach job.
  tl::expected<void, Failure> Disconnect(const Volume& volume, const Attachment& attachment);
  // Publishes a job for the attachment and waits until it left `queued` / `in_progress`.
  tl::expected<Attachment, Failure> RunJob(const Volume& volume,
                                           const Attachment& attachment,
                                           domain::Operation operation);
  // The live attachments of a volume.
  Result<std::vector<Attachment>> AttachmentsOf(std::string_view volume_id);
  void Refresh(std::string_view volume_id);

  ports::StateStore& store_;
  ports::JobQueue& queue_;
  const ports::Clock& clock_;
  AttachmentsApiOptions options_;
};

}  // namespace clinker::services
