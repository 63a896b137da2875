// BackupsApi: the Cinder v3 backup handlers (create full or incremental, show, list, list
// detail, update (3.9+), delete, restore to a new or an existing volume, and the admin actions
// os-reset_status and os-force_delete), transport-free.
//
// Every status change is a compare-and-swap. A backup moves its volume to `backing-up` (from
// `available`, or from `in-use` with force), so a delete of the volume, which needs it available,
// cannot race it; a restore moves the backup to `restoring` and the target volume to its queued
// restore status, each with a compare-and-swap, undone if the other fails. A backup with
// incremental backups built on it cannot be deleted (a guard on parent_id). Jobs go to the
// back-end of the volume the backup was made from, whose nodes reach the backup store.
//
// Projects, as Cinder: a caller sees (and acts on) its own project's backups and volumes, an
// admin any project's (CanSee), anything else is 404; lists cross projects only for an admin with
// all_tenants. A new backup, and a new volume a restore creates, are the caller's, also when an
// admin backs up or restores another project's; an incremental builds on the caller's backups.
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

struct BackupsApiOptions {
  std::int64_t max_limit = 1000;
  std::string availability_zone = "nova";
  // Limits and what counts (services/quotas.h): a backup counts from the write that inserts it
  // (413 past a limit), a volume made by a restore likewise; the node's final delete releases.
  QuotaOptions quota;
  // Admission control (off when null): a create (a restore) is refused with 503 and
  // Retry-After, before anything is written, while the volume's (the backup's) back-end has
  // max_queued_jobs_per_backend jobs not finished (services/admission.h).
  AdmissionControl* admission = nullptr;
};

class BackupsApi {
 public:
  BackupsApi(ports::StateStore& store,
             ports::JobQueue& queue,
             const ports::Clock& clock,
             BackupsApiOptions options);

  HttpResponse Create(const RequestContext& context, const HttpRequest& request);
  HttpResponse Show(const RequestContext& context, std::string_view backup_id);
  HttpResponse List(const RequestContext& context, const HttpRequest& request, bool detail);
  HttpResponse Update(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view backup_id);
  HttpResponse Delete(const RequestContext& context, std::string_view backup_id);
  HttpResponse Restore(const RequestContext& context,
                       const HttpRequest& request,
                       std::string_view backup_id);
  // GET /backups/{id}/export_record (admin, backup:export-import): {"backup-record":
  // {"backup_service", "backup_url"}}, the url base64 of the backup's row as JSON (Cinder's
  // encode_record), naming where its data is in the backup store. 400 unless available.
  HttpResponse ExportRecord(const RequestContext& context, std::string_view backup_id);
  // POST /backups/import_record (admin, backup:backup-import): a new available backup, of the
  // caller's project, with the record's id, that restores from the data the record names (which
  // stays where it is; it is removed with the last live backup naming it). 400 for a record of
  // another backup service, without id, size or host, or whose id is taken (also by a deleted
  // backup); 413 past the backup quotas. Answers 201 with the summary view.
  HttpResponse ImportRecord(const RequestContext& context, const HttpRequest& request);
  // POST /backups/{id}/action: os-reset_status and os-force_delete (admin).
  HttpResponse Action(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view backup_id);
  // The same with the body already parsed (discarded when it was not JSON), as the router
  // hands it over.
  HttpResponse Action(const RequestContext& context,
                      const nlohmann::json& body,
                      std::string_view backup_id);

 private:
  HttpResponse DeleteBackup(const RequestContext& context, std::string_view backup_id, bool force);
  nlohmann::json View(const ports::Row& row, const RequestContext& context, bool detail);

  ports::StateStore& store_;
  ports::JobQueue& queue_;
  const ports::Clock& clock_;
  BackupsApiOptions options_;
  QuotaService quotas_;
};

}  // namespace clinker::services
