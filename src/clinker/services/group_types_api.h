// GroupTypesApi: Cinder's group types (GET/POST /group_types, GET/PUT/DELETE
// /group_types/{id}, GET /group_types/default) and their group specs
// (/group_types/{id}/group_specs[/{key}]), microversion 3.11+, transport-free.
//
// As Cinder (api/v3/group_types.py, group_specs.py, views/group_types.py):
// - Who may call what is the policy (ApiService checks the route's rule first: create, update,
//   delete and every group spec route are admin-only by default; show and list have no rule).
//   group_specs are shown only with group:access_group_types_specs (admin).
// - Visibility: an admin sees every group type, anyone else the public ones; any other is 404.
//   Lists: public ones; an admin may ask for is_public=false (private only), is_public=true
//   (public only) or is_public=none (all).
// - Names are unique among live group types (409, a live-unique column of the store). A group
//   type a live group has cannot be deleted (400 "Target group type is still in use."): a guard
//   in the same atomic update as the delete, and a group create pins the type after writing its
//   row (GroupsApi), so exactly one of a racing delete and create wins.
// - There is no default group type (Cinder's default_group_type is unset by default): GET
//   /group_types/default is 404 "Default group type can not be found.".
//
// Thread safe (no mutable state). Blocks on the StateStore.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"

namespace clinker::services {

// Group types and group specs exist from 3.11 (Cinder's GROUP_TYPE); below, 404.
inline constexpr Microversion kGroupTypesMicroversion{3, 11};

struct GroupType {
  std::string id;
  std::string name;
  std::optional<std::string> description;
  bool is_public = true;
  std::map<std::string, std::string> group_specs;
  std::string created_at;
  bool deleted = false;
};

Result<GroupType> GroupTypeFromRow(const ports::Row& row);

// The live group type `id_or_name` (a name when it is not one of an id's rows) the caller may
// see, or the 404 to answer (Cinder's "Group type <x> could not be found." / "Group type with
// name <x> could not be found.").
tl::expected<GroupType, HttpResponse> FindGroupType(ports::StateStore& store,
                                                    const RequestContext& context,
                                                    const std::string& id_or_name);

struct GroupTypesApiOptions {
  std::int64_t max_limit = 1000;  // osapi_max_limit.
};

class GroupTypesApi {
 public:
  GroupTypesApi(ports::StateStore& store, const ports::Clock& clock, GroupTypesApiOptions options);

  HttpResponse List(const RequestContext& context, const HttpRequest& request);
  HttpResponse Create(const RequestContext& context, const HttpRequest& request);
  // `type_id` "default" is the default group type (none: 404).
  HttpResponse Show(const RequestContext& context, std::string_view type_id);
  HttpResponse Update(const RequestContext& context,
                      const HttpRequest& request,
                      std::string_view type_id);
  HttpResponse Delete(const RequestContext& context, std::string_view type_id);

  HttpResponse ListSpecs(const RequestContext& context, std::string_view type_id);
  // POST .../group_specs {"group_specs": {...}}: merged; answers the keys given.
  HttpResponse CreateSpecs(const RequestContext& context,
                           const HttpRequest& request,
                           std::string_view type_id);
  HttpResponse ShowSpec(const RequestContext& context,
                        std::string_view type_id,
                        std::string_view key);
  // PUT .../group_specs/{key} {"<key>": "<value>"}: exactly the URL's key.
  HttpResponse UpdateSpec(const RequestContext& context,
                          const HttpRequest& request,
                          std::string_view type_id,
                          std::string_view key);
  HttpResponse DeleteSpec(const RequestContext& context,
                          std::string_view type_id,
                          std::string_view key);

 private:
  // Sets the type's group specs to `change(specs)` by compare-and-swap on the stored text,
  // retried when another writer got in between. `change` answers a fault to refuse.
  using SpecsChange =
      std::function<std::optional<HttpResponse>(std::map<std::string, std::string>& specs)>;
  HttpResponse ChangeSpecs(const RequestContext& context,
                           std::string_view type_id,
                           const SpecsChange& change,
                           const HttpResponse& answer);

  ports::StateStore& store_;
  const ports::Clock& clock_;
  GroupTypesApiOptions options_;
};

}  // namespace clinker::services
