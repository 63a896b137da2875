// VolumeType: the typed view of a `volume_types` row, and VolumeTypeCatalog: the lookups every
// handler shares (by id, by name, Cinder's name-or-id, the default type) under Cinder's
// visibility rules, and the pin that makes "delete a type" and "give a volume that type"
// exclude each other.
//
// Visibility (Cinder's _volume_type_get_query): an admin sees every live type; anyone else the
// public ones and the private ones their project has been given access to (a live
// volume_type_projects row). A type the caller may not see is answered as if it did not exist.
//
// Deleting a type while a volume takes it (create with the type, retype to it). The delete is
// one conditional update of the type row (deleted = 1) guarded by "no live volume has this
// volume_type_id". The volume side first writes the volume row with the type's id, then pins
// the type: a conditional update of the type row (no values) that holds only while the type is
// live and still public or private as it was read (and, for a private type reached through an
// access grant, one of the grant's row too). Both sides write the type row, and each store
// serialises two writes of one row (SQLite has one writer, PostgreSQL's SERIALIZABLE
// transactions refuse the second of two concurrent updates of a row and the adapter retries it,
// the memory store holds one mutex), so exactly one wins:
// - the delete first: the pin finds the type deleted, and the volume side takes its write back
//   (a create withdraws its row, a retype restores the old type) and answers 404;
// - the pin first (or the volume row before the delete's guard looked): the guard sees the
//   volume, and the delete is refused as in use.
//
// Thread safe (no mutable state). Blocks on the StateStore.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "clinker/core/error.h"
#include "clinker/ports/clock.h"
#include "clinker/ports/state_store.h"
#include "clinker/services/api_common.h"

namespace clinker::services {

struct VolumeType {
  std::string id;
  std::string name;
  std::optional<std::string> description;
  bool is_public = true;
  // A JSON object whose values are strings or null (Cinder allows a null value).
  nlohmann::json extra_specs = nlohmann::json::object();
  // The column as stored: a change of the extra specs is a compare-and-swap on it.
  std::string extra_specs_text = "{}";
  std::optional<std::string> qos_specs_id;
  // The encryption spec (Cinder's volume type encryption), a JSON object, and its column as
  // stored (a change is a compare-and-swap on it); nullopt when the type is not encrypted.
  std::optional<nlohmann::json> encryption;
  std::optional<std::string> encryption_text;
  std::string created_at;
  std::optional<std::string> updated_at;
  bool deleted = false;
};

// kInternal if the row does not hold a well-formed type (extra_specs or encryption not a JSON
// object).
Result<VolumeType> VolumeTypeFromRow(const ports::Row& row);
ports::Row VolumeTypeToRow(const VolumeType& type);

// The id of the access row of (type, project): "<type_id>:<project_id>".
std::string VolumeTypeAccessId(std::string_view type_id, std::string_view project_id);

// Cinder's messages for a type that is not there (or not visible).
std::string VolumeTypeNotFound(std::string_view id);
std::string VolumeTypeNotFoundByName(std::string_view name);

// The extra spec value as a string ("" for null or absent).
std::string ExtraSpec(const VolumeType& type, std::string_view key);

// Whether the type makes multiattach volumes (extra spec multiattach = "<is> True").
bool IsMultiattachType(const VolumeType& type);

class VolumeTypeCatalog {
 public:
  // `default_name`: the configured default type (Cinder's default_volume_type).
  VolumeTypeCatalog(ports::StateStore& store, const ports::Clock& clock, std::string default_name);

  const std::string& default_name() const { return default_name_; }

  // The live type with this id, if the caller may see it (`elevated`: as an admin would).
  Result<std::optional<VolumeType>> ById(const RequestContext& context,
                                         std::string_view id,
                                         bool elevated);
  Result<std::optional<VolumeType>> ByName(const RequestContext& context,
                                           std::string_view name,
                                           bool elevated);

  // Cinder's get_by_name_or_id: a UUID-like text is tried as an id, then as a name; anything
  // else as a name. When none is visible, the 404 Cinder answers ("Volume type <x> could not be
  // found." or "Volume type with name <x> could not be found.").
  tl::expected<VolumeType, HttpResponse> Resolve(const RequestContext& context,
                                                 const std::string& name_or_id,
                                                 bool elevated);

  // The default type, created (public, "Default Volume Type") when no live type has its name:
  // the daemon calls it at start; a request that needs the default calls it too.
  Result<VolumeType> Default();

  // Whether `project_id` holds a live access grant to the type.
  Result<bool> HasAccess(std::string_view type_id, std::string_view project_id);

  // Whether `context` may see the type (admin, public, or an access grant).
  Result<bool> Visible(const RequestContext& context, const VolumeType& type);

  // The pin described above: true while the type is live, with the visibility it was read
  // with, and (when `access_project` is given) that project's grant still live.
  Result<bool> Pin(const VolumeType& type, const std::optional<std::string>& access_project);

  // The type name a volume view shows for a volume_type_id (NULL: the default type's name);
  // a deleted type still shows its name. Looks each id up once per catalog call site: pass a
  // NameCache per request.
  class NameCache {
   public:
    explicit NameCache(VolumeTypeCatalog& catalog) : catalog_(catalog) {}

    std::string NameOf(const std::optional<std::string>& type_id);
    // The id a volume view shows (3.63+): the volume's, or the default type's for NULL.
    std::string IdOf(const std::optional<std::string>& type_id);

   private:
    VolumeTypeCatalog& catalog_;
    std::map<std::string, std::string, std::less<>> names_;
    std::optional<std::string> default_id_;
  };

 private:
  ports::StateStore& store_;
  const ports::Clock& clock_;
  std::string default_name_;
};

}  // namespace clinker::services
