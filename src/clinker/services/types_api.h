// TypesApi: Cinder's volume types (GET/POST /types, GET/PUT/DELETE /types/{id}, GET
// /types/default), their extra specs (/types/{id}/extra_specs[/{key}]), encryption types
// (/types/{id}/encryption[/{x}]) and the access lists of private types (addProjectAccess /
// removeProjectAccess actions, GET /types/{id}/os-volume-type-access), transport-free.
//
// As Cinder:
// - Who may call what is the policy (ApiService checks the route's rule first: type create,
//   update and delete, extra spec changes and access lists are admin-only by default); what a
//   response shows is the attribute rules (Allowed): extra_specs (access_types_extra_specs;
//   without types_extra_specs:read_sensitive only the user-visible keys), qos_specs_id
//   (access_types_qos_specs_id), os-volume-type-access:is_public (volume_type_access). Create and
//   update answer with Cinder's older view (extra_specs in full, no qos_specs_id; create adds
//   os-volume-type-access:is_public).
// - Visibility: an admin sees every type; anyone else the public ones and the private ones their
//   project has access to; any other type is 404 as if it did not exist. Lists show public types
//   (and private ones the caller's project has access to); an admin may ask for
//   is_public=false (private only) or is_public=none (all).
// - Names are unique among live types (409); the default type (VolumeTypeCatalog::Default, the
//   configured default_volume_type) cannot be deleted nor renamed (400); a type some live volume
//   has cannot be deleted (400 "Target volume type is still in use."), nor can its extra specs
//   change (400 "Volume Type is currently in use."). Both refusals are guards evaluated in the
//   same atomic update as the change, so a volume taking the type concurrently either blocks
//   the change or sees the type gone (volume_type_record.h).
//
// Thread safe (no mutable state). Blocks on the StateStore.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"
#include "clinker/services/volume_type_record.h"

namespace clinker::services {

struct TypesApiOptions {
  std::int64_t max_limit = 1000;  // osapi_max_limit.
  std::string default_volume_type = "__DEFAULT__";
};

class TypesApi {
 public:
  TypesApi(ports::StateStore& store, const ports::Clock& clock, TypesApiOptions options);

  HttpResponse List(const RequestContext& context, const HttpRequest& request);
  HttpResponse Create(const RequestContext& context, const HttpRequest& request);
  // `type_id` "default" is the default type.
  HttpResponse Show(const RequestContext& context, std::string_view type_id);
  HttpResponse Update(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view type_id);
  HttpResponse Delete(const RequestContext& context, std::string_view type_id);
  // POST /types/{id}/action: addProjectAccess, removeProjectAccess.
  HttpResponse Action(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view type_id);
  // The same with the body already parsed (discarded when it was not JSON), as the router
  // hands it over.
  HttpResponse Action(const RequestContext& context,
                      const nlohmann::json& body,
                      std::string_view type_id);
  // GET /types/{id}/os-volume-type-access.
  HttpResponse ListAccess(const RequestContext& context, std::string_view type_id);

  HttpResponse ListExtraSpecs(const RequestContext& context, std::string_view type_id);
  HttpResponse CreateExtraSpecs(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view type_id);
  HttpResponse ShowExtraSpec(const RequestContext& context,
                             std::string_view type_id,
                             std::string_view key);
  HttpResponse UpdateExtraSpec(const RequestContext& context,
                               const HttpRequest& request,
                               std::string_view type_id,
                               std::string_view key);
  HttpResponse DeleteExtraSpec(const RequestContext& context,
                               std::string_view type_id,
                               std::string_view key);

  // Volume type encryption (/types/{id}/encryption[/{key}]), as Cinder's: the spec is kept and
  // shown, and cannot change while a live volume has the type. This release cannot encrypt a
  // volume, so a volume create (or retype) with an encrypted type is refused (400).
  HttpResponse ShowEncryption(const RequestContext& context, std::string_view type_id);
  HttpResponse CreateEncryption(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view type_id);
  HttpResponse ShowEncryptionItem(const RequestContext& context,
                                  std::string_view type_id,
                                  std::string_view key);
  HttpResponse UpdateEncryption(const RequestContext& context,
                                const HttpRequest& request,
                                std::string_view type_id);
  HttpResponse DeleteEncryption(const RequestContext& context, std::string_view type_id);

  VolumeTypeCatalog& catalog() { return catalog_; }

 private:
  // Merges `changes` into the type's extra specs (a null value in `erase` mode removes the key)
  // by compare-and-swap on the stored text, refused while a live volume has the type.
  HttpResponse ChangeExtraSpecs(const RequestContext& context,
                                std::string_view type_id,
                                const nlohmann::json& changes,
                                bool erase,
                                const nlohmann::json& answer);
  // Sets the type's encryption spec (nullopt: removes it) by compare-and-swap on the stored
  // text, refused while a live volume has the type (`in_use` is the 400's message).
  // `change` computes the new spec from the type as read, or the fault to answer.
  using EncryptionChange = std::function<tl::expected<std::optional<nlohmann::json>, HttpResponse>(
      const VolumeType& type)>;
  HttpResponse ChangeEncryption(const RequestContext& context,
                                std::string_view type_id,
                                const EncryptionChange& change,
                                std::string_view in_use,
                                const HttpResponse& answer);
  HttpResponse AddAccess(const RequestContext& context,
                         std::string_view type_id,
                         const std::string& project_id);
  HttpResponse RemoveAccess(const RequestContext& context,
                            std::string_view type_id,
                            const std::string& project_id);

  ports::StateStore& store_;
  const ports::Clock& clock_;
  TypesApiOptions options_;
  VolumeTypeCatalog catalog_;
};

}  // namespace clinker::services
