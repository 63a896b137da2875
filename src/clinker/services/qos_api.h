// QosApi: Cinder's QoS specs (/qos-specs), transport-free: list, create, show, set keys (PUT),
// unset keys (PUT .../delete_keys), delete (?force), and the association with volume types
// (GET .../associations, .../associate?vol_type_id=, .../disassociate?vol_type_id=,
// .../disassociate_all).
//
// As Cinder:
// - Every route is admin-only by default (volume_extension:qos_specs_manage:*; ApiService checks
//   the rule before calling here).
// - A QoS specs has a live-unique name (409 on a second), a consumer ("front-end", "back-end",
//   the default, or "both"; anything else 400) and string specs. A volume type has at most one
//   QoS specs (volume_types.qos_specs_id, shown in the type's view); associating a type that has
//   another one is 400.
// - Delete refuses (400 "Qos specs still in use.") while a live type is associated, unless
//   force, which disassociates every type first.
//
// Association vs delete, from any number of API servers: the delete is one conditional update of
// the QoS row (deleted = 1) guarded by "no live volume type has this qos_specs_id". Associate
// first sets the type's qos_specs_id by compare-and-swap (expecting NULL or this id), then pins
// the QoS row (a conditional update without values that holds only while it is live). Both
// sides write the QoS row, which every store serialises, so exactly one wins: the delete first,
// and the pin fails, the association is taken back and answered 404; the pin first (or the type
// row written before the guard looked), and the delete is refused as in use (a forced delete
// disassociates again and retries, a bounded number of times).
//
// Unlike Cinder, unsetting several keys where one is missing changes nothing (404 names it):
// Cinder removes the keys before the missing one.
//
// Thread safe (no mutable state). Blocks on the StateStore.
#pragma once

#include <string_view>

#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"
#include "clinker/services/volume_type_record.h"

namespace clinker::services {

class QosApi {
 public:
  QosApi(ports::StateStore& store, const ports::Clock& clock, VolumeTypeCatalog& types);

  HttpResponse List(const RequestContext& context, const HttpRequest& request);
  HttpResponse Create(const RequestContext& context, const HttpRequest& request);
  HttpResponse Show(const RequestContext& context, std::string_view qos_id);
  // PUT /qos-specs/{id}: sets keys (and the consumer); answers the request's body.
  HttpResponse SetKeys(const RequestContext& context,
                       const HttpRequest& request,
                       std::string_view qos_id);
  // PUT /qos-specs/{id}/delete_keys {"keys": [...]}.
  HttpResponse UnsetKeys(const RequestContext& context,
                         const HttpRequest& request,
                         std::string_view qos_id);
  HttpResponse Delete(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view qos_id);
  HttpResponse ListAssociations(const RequestContext& context, std::string_view qos_id);
  HttpResponse Associate(const RequestContext& context,
                         const HttpRequest& request,
                         std::string_view qos_id);
  HttpResponse Disassociate(const RequestContext& context,
                            const HttpRequest& request,
                            std::string_view qos_id);
  HttpResponse DisassociateAll(const RequestContext& context, std::string_view qos_id);

 private:
  // Sets qos_specs_id of every live type associated with `qos_id` to NULL.
  Result<void> DisassociateEveryType(std::string_view qos_id);

  ports::StateStore& store_;
  const ports::Clock& clock_;
  VolumeTypeCatalog& types_;
};

}  // namespace clinker::services
